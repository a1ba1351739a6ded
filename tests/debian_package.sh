#!/bin/sh
# debian_package.sh SOURCE_ROOT - builds the Debian package from a copy of
# the source tree (deploy/debian as debian/) with dpkg-buildpackage,
# installs it with apt-get, runs the installed compatd as its user on its
# configured data directory, and purges it.  Installs into this machine,
# so it runs only as root and only when no compatd package is installed;
# skips (77) otherwise, or without Debian's packaging tools
# (dpkg-buildpackage, debhelper: deploy/setup.sh installs them).
set -u

if [ $# -ne 1 ]; then
    echo "usage: $0 SOURCE_ROOT" >&2
    exit 2
fi
src=$1

skip() {
    echo "debian_package: $*: skipped"
    exit 77
}
[ "$(id -u)" -eq 0 ] || skip "not root (the test installs the package)"
command -v dpkg-buildpackage >/dev/null 2>&1 && command -v dh >/dev/null 2>&1 ||
    skip "no dpkg-buildpackage or dh (dpkg-dev, debhelper)"
if dpkg-query -W -f='${Status}' compatd 2>/dev/null | grep -q 'ok installed'; then
    skip "a compatd package is installed already"
fi

name=debian_package
. "$(dirname "$0")/daemon.sh"
installed=
purge() {
    [ -n "$installed" ] && apt-get purge -y -q compatd > "$tmp/purge.log" 2>&1
}
trap 'purge; td_cleanup' EXIT

# The source tree without build directories, packaging where Debian's
# tools look for it.
mkdir "$tmp/compatd"
tar -C "$src" --exclude='./build*' --exclude=./.git --exclude=node_modules -cf - . |
    tar -C "$tmp/compatd" -xf - || fail "cannot copy $src"
mv "$tmp/compatd/deploy/debian" "$tmp/compatd/debian"
(cd "$tmp/compatd" && dpkg-buildpackage -b -us -uc -j2) > "$tmp/build.log" 2>&1 ||
    { tail -n 40 "$tmp/build.log" >&2; fail "dpkg-buildpackage failed"; }
deb=$(ls "$tmp"/compatd_*.deb) || fail "no .deb built"

installed=1
DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$deb" > "$tmp/install.log" 2>&1 ||
    { cat "$tmp/install.log" >&2; fail "apt-get install failed"; }

# What the package installed.
[ -x /usr/bin/compatd ] || fail "no /usr/bin/compatd"
[ -f /etc/compatd/compatd.conf ] || fail "no /etc/compatd/compatd.conf"
unit=$(ls /lib/systemd/system/compatd.service /usr/lib/systemd/system/compatd.service 2>/dev/null | head -n1)
[ -n "$unit" ] || fail "no compatd.service"
grep -qx 'ExecStart=/usr/bin/compatd serve --config /etc/compatd/compatd.conf' "$unit" ||
    fail "the unit does not run /usr/bin/compatd on /etc/compatd/compatd.conf"
getent passwd compatd >/dev/null || fail "no compatd user"
[ "$(stat -c '%a %U %G' /var/lib/compatd)" = "700 compatd compatd" ] ||
    fail "/var/lib/compatd is $(stat -c '%a %U %G' /var/lib/compatd), want 700 compatd compatd"
if ldd /usr/bin/compatd | grep -q 'not found'; then
    ldd /usr/bin/compatd >&2
    fail "the installed binary misses libraries"
fi
/usr/bin/compatd --version > /dev/null || fail "compatd --version failed"
# FAISS: the system's, or the copy the package carries, never the build's.
ldd /usr/bin/compatd | grep -E 'libfaiss_c\.so => (/usr/lib/compatd/|/(usr/)?lib/x86_64-linux-gnu/)' >/dev/null ||
    { ldd /usr/bin/compatd >&2; fail "the installed binary's libfaiss_c is not the package's or the system's"; }

# The installed binary as its user, on the package's configuration (its
# data directory), on a port of its own.
chown compatd "$tmp"
chmod 0755 "$tmp"
setpriv --reuid=compatd --regid=compatd --init-groups /usr/bin/compatd serve --config /etc/compatd/compatd.conf \
    --listen 127.0.0.1:0 --port-file "$tmp/port" > "$tmp/daemon.log" 2>&1 &
td_pids="$td_pids $!"
td_wait 300 test -s "$tmp/port" || { cat "$tmp/daemon.log" >&2; fail "the installed daemon did not start"; }
port=$(cat "$tmp/port")
td_wait 300 curl -fs -o /dev/null "http://127.0.0.1:$port/readyz" ||
    { cat "$tmp/daemon.log" >&2; fail "the installed daemon never became ready"; }
got=$(curl -s -o "$tmp/reply" -w '%{http_code}' -XPOST "http://127.0.0.1:$port/v1/models" \
    -H 'Content-Type: application/json' -d '{"name":"demo-v1","dim":4,"metric":"cosine"}')
[ "$got" = 201 ] || fail "POST /v1/models: $got $(cat "$tmp/reply")"
[ -n "$(find /var/lib/compatd -mindepth 1 -user compatd -print -quit)" ] ||
    fail "the daemon wrote nothing of its own in /var/lib/compatd"
# SIGTERM: a clean stop, exit 0.
kill $td_pids && wait $td_pids || { cat "$tmp/daemon.log" >&2; fail "the daemon did not stop cleanly"; }
td_pids=

installed=
DEBIAN_FRONTEND=noninteractive apt-get purge -y -q compatd > "$tmp/purge.log" 2>&1 ||
    { cat "$tmp/purge.log" >&2; fail "apt-get purge failed"; }
for f in /usr/bin/compatd /usr/lib/compatd /etc/compatd /var/lib/compatd "$unit"; do
    [ ! -e "$f" ] || fail "$f is left after the purge"
done
echo "debian_package: $(basename "$deb") built, installed, run and purged"
