#!/bin/sh
# secret_wipes.sh NM LIBRARY... - the objects that clear secrets (TLS key,
# key-file lines, API keys, the random bytes of a new key) do it with
# explicit_bzero.  A memset of a buffer that is freed or goes out of scope
# next is a dead store, and at -O2 the compiler drops it: that memset
# leaves no call in the object, explicit_bzero always does (or its
# _FORTIFY_SOURCE form __explicit_bzero_chk).  Fails naming each object
# without the call.
set -u

if [ $# -lt 2 ]; then
    echo "usage: $0 NM LIBRARY..." >&2
    exit 2
fi
nm=$1
shift

symbols=$("$nm" -A "$@") || {
    echo "secret_wipes: $nm -A $* failed" >&2
    exit 1
}
status=0
for obj in serve.c.o auth.c.o client.c.o keys.c.o; do
    if ! printf '%s\n' "$symbols" |
            grep -Eq "[/:]$obj: +U (__)?explicit_bzero(_chk)?\$"; then
        echo "secret_wipes: $obj does not call explicit_bzero" >&2
        status=1
    fi
done
exit $status
