#!/bin/sh
# Installs what is missing, builds compatd twice (plain, and with
# AddressSanitizer + UndefinedBehaviorSanitizer) and runs the whole test
# suite in both; then builds the libFuzzer harnesses with clang
# (build-fuzz) and runs each for FUZZ_SECONDS (default 60), one test each.
# Ends with one line: "N passed, N failed".
set -u
cd "$(dirname "$0")/.."
sh deploy/setup.sh || exit 1

export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0:strict_string_checks=1}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"
export LSAN_OPTIONS="${LSAN_OPTIONS:-suppressions=$(pwd)/tests/lsan.supp:print_suppressions=0}"

status=0
for dir in build build-asan; do
    if [ ! -f "$dir/build.ninja" ]; then
        if [ "$dir" = build-asan ]; then
            meson setup "$dir" -Db_sanitize=address,undefined -Db_lundef=false || exit 1
        else
            meson setup "$dir" || exit 1
        fi
    fi
    rm -f "$dir/meson-logs/testlog.json"
    echo "== meson test in $dir"
    meson test -C "$dir" --print-errorlogs --num-processes 2 || status=1
done

# A crash, leak, sanitizer report or timeout fails its harness; a build
# dir that cannot be set up counts as one failure (no testlog.json).
rm -f build-fuzz/meson-logs/testlog.json
if [ -f build-fuzz/build.ninja ] ||
   CC=clang meson setup build-fuzz -Dfuzz=true -Dtests=false -Db_lundef=false; then
    echo "== fuzzing in build-fuzz, ${FUZZ_SECONDS:-60}s per harness"
    meson test -C build-fuzz --suite fuzz --print-errorlogs --num-processes 2 || status=1
else
    status=1
fi

/usr/bin/python3 - build/meson-logs/testlog.json build-asan/meson-logs/testlog.json \
    build-fuzz/meson-logs/testlog.json <<'PY'
import json, sys
passed = failed = 0
for path in sys.argv[1:]:
    try:
        lines = open(path).read().splitlines()
    except OSError:
        failed += 1
        continue
    for line in lines:
        if not line.strip():
            continue
        r = json.loads(line)["result"]
        if r in ("OK", "EXPECTEDFAIL"):
            passed += 1
        elif r != "SKIP":
            failed += 1
print(f"{passed} passed, {failed} failed")
PY
exit $status
