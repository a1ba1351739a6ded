#!/bin/sh
# Installs everything compatd needs to build, run and test on Debian 12,
# and builds FAISS with its C API once (into FAISS_PREFIX) when the system
# has no libfaiss_c.  Idempotent: a second run installs nothing and builds
# nothing.  Needs root (or sudo) for apt-get.
#
# COMPATD_SETUP=run installs only what building and running need (and the
# README walkthrough's numpy and curl), for deploy/run.sh and container
# builds; the default, test, adds what the test suite needs.
set -eu

# The repository, found before any cd (FAISS is built elsewhere).
REPO=$(cd "$(dirname "$0")/.." && pwd)
FAISS_PREFIX=${FAISS_PREFIX:-/opt/compatd/faiss}
FAISS_SRC=${FAISS_SRC:-/var/cache/compatd/faiss-src}

if [ "$(id -u)" -eq 0 ]; then SUDO=; else SUDO=sudo; fi

PACKAGES="build-essential pkg-config meson ninja-build cmake dpkg-dev
  libmicrohttpd-dev libcjson-dev libsqlite3-dev libcurl4-gnutls-dev
  libopenblas-dev liblapack-dev libgnutls28-dev nettle-dev
  python3 python3-numpy curl sqlite3"
# valgrind; clang and its runtimes for the fuzzers; certtool for the TLS
# tests; Chromium for the dashboard's browser test; PyYAML for the OpenAPI
# test; FAISS's Python module for the evaluation benchmark's reference,
# hnswlib's for the peers benchmark's (tests/bench/bench_peers.py).
# Prometheus for the monitoring test; debhelper and patchelf for the
# Debian package's (deploy/debian).  Node and npm (unless some npm is
# installed already) for the npm tools pinned in tests/npm (the OpenAPI
# lint, a generated client).
TEST_PACKAGES="valgrind clang libclang-rt-dev libomp-dev gnutls-bin
  chromium fonts-dejavu-core python3-yaml python3-faiss python3-hnswlib prometheus
  debhelper patchelf"

case ${COMPATD_SETUP:-test} in
test)
    PACKAGES="$PACKAGES $TEST_PACKAGES"
    command -v npm >/dev/null 2>&1 || PACKAGES="$PACKAGES nodejs npm"
    ;;
run) ;;
*) echo "setup: COMPATD_SETUP must be run or test" >&2; exit 2 ;;
esac

missing=
for p in $PACKAGES; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed'; then
        missing="$missing $p"
    fi
done

apt_updated=
apt_update() {
    if [ -z "$apt_updated" ]; then
        $SUDO apt-get update -q
        apt_updated=1
    fi
}

if [ -n "$missing" ]; then
    echo "setup: installing$missing"
    apt_update
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $missing
fi

# FAISS with the C API.  A system libfaiss_c wins; otherwise our own build.
have_system_faiss_c() {
    for d in /usr/lib /usr/local/lib /usr/lib/x86_64-linux-gnu; do
        [ -e "$d/libfaiss_c.so" ] && [ -e /usr/include/faiss/c_api/Index_c.h -o -e /usr/local/include/faiss/c_api/Index_c.h ] && return 0
    done
    return 1
}

if have_system_faiss_c; then
    echo "setup: using the system libfaiss_c"
elif [ -e "$FAISS_PREFIX/.complete" ]; then
    echo "setup: FAISS already built in $FAISS_PREFIX"
else
    echo "setup: building FAISS with the C API into $FAISS_PREFIX (once, a few minutes)"
    if ! grep -rqs '^Types: deb-src' /etc/apt/sources.list.d/ && ! grep -qs '^deb-src' /etc/apt/sources.list; then
        $SUDO sh -c 'cat > /etc/apt/sources.list.d/compatd-deb-src.sources' <<'SRC'
Types: deb-src
URIs: http://deb.debian.org/debian
Suites: bookworm
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
        apt_updated=
    fi
    apt_update
    $SUDO mkdir -p "$FAISS_SRC"
    cd "$FAISS_SRC"
    if ! ls -d faiss-*/ >/dev/null 2>&1; then
        $SUDO apt-get source -q faiss
    fi
    srcdir=$(ls -d "$FAISS_SRC"/faiss-*/ | head -n1)
    flags="-O3"
    if grep -qw avx2 /proc/cpuinfo && grep -qw fma /proc/cpuinfo && grep -qw f16c /proc/cpuinfo; then
        flags="$flags -mavx2 -mfma -mf16c -mpopcnt"
    fi
    $SUDO cmake -S "$srcdir" -B "$FAISS_SRC/build" -G Ninja \
        -DCMAKE_BUILD_TYPE=Release \
        -DCMAKE_INSTALL_PREFIX="$FAISS_PREFIX" \
        -DCMAKE_INSTALL_LIBDIR=lib \
        -DCMAKE_CXX_FLAGS="$flags" \
        -DBUILD_SHARED_LIBS=ON \
        -DBUILD_TESTING=OFF \
        -DFAISS_ENABLE_GPU=OFF \
        -DFAISS_ENABLE_PYTHON=OFF \
        -DFAISS_ENABLE_C_API=ON \
        -DFAISS_OPT_LEVEL=generic \
        -DCMAKE_BUILD_WITH_INSTALL_RPATH=ON \
        -DCMAKE_INSTALL_RPATH="$FAISS_PREFIX/lib"
    $SUDO cmake --build "$FAISS_SRC/build" --target faiss faiss_c -j "$(nproc)"
    $SUDO cmake --install "$FAISS_SRC/build"
    # FAISS 1.7.3 installs neither libfaiss_c nor the C API headers.
    $SUDO install -m 0644 "$FAISS_SRC/build/c_api/libfaiss_c.so" "$FAISS_PREFIX/lib/"
    for h in $(cd "$srcdir/c_api" && find . -name '*.h'); do
        $SUDO install -D -m 0644 "$srcdir/c_api/$h" "$FAISS_PREFIX/include/faiss/c_api/$h"
    done
    $SUDO touch "$FAISS_PREFIX/.complete"
fi
# The test suite's npm tools, as tests/npm/package-lock.json pins them
# (again only when the lock file changed since).
npm_dir=$REPO/tests/npm
if [ "${COMPATD_SETUP:-test}" = test ] &&
   ! [ "$npm_dir/node_modules/.package-lock.json" -nt "$npm_dir/package-lock.json" ]; then
    echo "setup: installing the test suite's npm packages in $npm_dir"
    (cd "$npm_dir" && npm ci --no-audit --no-fund)
fi
echo "setup: done"
