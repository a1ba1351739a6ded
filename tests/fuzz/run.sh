#!/bin/sh
# Runs one libFuzzer harness for a bounded time on a copy of its seed
# corpus, so the source tree is never written:
#
#   sh tests/fuzz/run.sh FUZZER SEED_DIR ARTIFACT_DIR [libFuzzer flags...]
#
# FUZZ_SECONDS (default 60) bounds the run; a harness still running well
# after that is killed.  Work files (the corpus copy, and through TMPDIR
# the harness's data directory) go to a fresh directory on /dev/shm when
# there is one, removed at the end.  libFuzzer's output goes to
# ARTIFACT_DIR/NAME.log, of which the end (the statistics, or the report)
# is printed.  A crash, leak, sanitizer report or timeout leaves its input
# in ARTIFACT_DIR and makes the exit status 1 (libFuzzer's own default,
# 77, is what meson reads as a skipped test: a finding would pass).
set -u
if [ $# -lt 3 ]; then
    echo "usage: run.sh FUZZER SEED_DIR ARTIFACT_DIR [libFuzzer flags...]" >&2
    exit 2
fi
fuzzer=$1 seeds=$2 artifacts=$3
shift 3
seconds=${FUZZ_SECONDS:-60}
case $seconds in
    ''|*[!0-9]*) echo "run.sh: FUZZ_SECONDS must be a number of seconds" >&2; exit 2 ;;
esac

base=${TMPDIR:-/tmp}
if [ -d /dev/shm ] && [ -w /dev/shm ]; then base=/dev/shm; fi
work=$(mktemp -d "$base/compatd-fuzz.XXXXXX") || exit 1
trap 'rm -rf "$work"' EXIT
trap 'rm -rf "$work"; exit 130' INT TERM
mkdir -p "$work/corpus" "$artifacts" || exit 1
if [ -d "$seeds" ]; then
    cp "$seeds"/* "$work/corpus/" 2>/dev/null
fi
seeded=$(ls "$work/corpus" | wc -l)

name=$(basename "$fuzzer")
log=$artifacts/$name.log
echo "$name: fuzzing for ${seconds}s, log in $log"
TMPDIR=$work timeout -s KILL $((seconds + 120)) "$fuzzer" \
    -max_total_time="$seconds" -rss_limit_mb=2048 -timeout=10 \
    -error_exitcode=1 -timeout_exitcode=1 \
    -print_final_stats=1 -artifact_prefix="$artifacts/$name-" \
    "$@" "$work/corpus" >"$log" 2>&1
rc=$?
tail -n 150 "$log"
echo "$name: ${seconds}s, corpus $seeded seeds -> $(ls "$work/corpus" | wc -l) inputs, exit $rc"
exit $rc
