#!/bin/sh
# Installs what is missing, builds compatd and runs it on its defaults
# (data in ./data, http://127.0.0.1:8080).  Extra arguments go to
# `compatd serve`, e.g. deploy/run.sh --listen 127.0.0.1:9000.
set -eu
cd "$(dirname "$0")/.."
COMPATD_SETUP=run sh deploy/setup.sh
if [ ! -f build-release/build.ninja ]; then
    meson setup build-release --buildtype=release -Dtests=false
fi
ninja -C build-release
# FAISS runs OpenMP threads and OpenBLAS its own; spinning while idle
# starves a small machine (both are read when the libraries load).
export OMP_WAIT_POLICY="${OMP_WAIT_POLICY:-passive}"
export OPENBLAS_THREAD_TIMEOUT="${OPENBLAS_THREAD_TIMEOUT:-4}"
exec ./build-release/server/compatd serve "$@"
