#!/bin/sh
# generated_client.sh NPMDIR OPENAPI COMPATD - an application team's
# client: generates TypeScript types from the OpenAPI description with
# openapi-typescript, compiles tests/npm/client_session.ts against them
# with tsc (strict) and runs it with openapi-fetch (all pinned in
# NPMDIR/package-lock.json) against a real daemon started here on a port
# of its own.  Skips (77) only when node is not installed.
set -u

if [ $# -ne 3 ]; then
    echo "usage: $0 NPMDIR OPENAPI COMPATD" >&2
    exit 2
fi
npmdir=$1
openapi=$2
compatd=$3

if ! command -v node >/dev/null 2>&1; then
    echo "generated_client: no node on PATH (deploy/setup.sh installs nodejs): skipped"
    exit 77
fi
if [ ! -d "$npmdir/node_modules/openapi-fetch" ]; then
    echo "generated_client: no $npmdir/node_modules: run \`npm ci\` in $npmdir (deploy/setup.sh does)" >&2
    exit 1
fi

name=generated_client
. "$(dirname "$0")/daemon.sh"

# The client: generated types (request fields with a default stay
# optional), the session, compiled where node finds the packages.
mkdir "$tmp/client" "$tmp/data"
ln -s "$(cd "$npmdir" && pwd)/node_modules" "$tmp/client/node_modules"
cp "$npmdir/client_session.ts" "$npmdir/tsconfig.json" "$tmp/client/"
"$npmdir/node_modules/.bin/openapi-typescript" "$openapi" --default-non-nullable false \
    -o "$tmp/client/schema.d.ts" > "$tmp/gen.log" 2>&1 ||
    { cat "$tmp/gen.log" >&2; fail "openapi-typescript failed"; }
"$npmdir/node_modules/.bin/tsc" -p "$tmp/client" || fail "the session does not compile against the generated types"

td_start "$compatd" "$tmp/data"
node "$tmp/client/client_session.js" "http://127.0.0.1:$port" ||
    { cat "$tmp/daemon.log" >&2; fail "the session failed"; }
