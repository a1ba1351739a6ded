#!/bin/sh
# readme_walkthrough.sh COMPATD README - runs the README's walkthrough as a
# new user would: the shell block between the `walkthrough:begin` and
# `walkthrough:end` markers, against a real daemon started here on a port
# of its own (the block's localhost:8080 and the CLI's default URL are
# pointed at it), with `compatd` on PATH and Debian's python3 (numpy).
# Every command of the block must succeed, and every line of the output
# the README quotes after it (each block following a line that ends
# "(numbers from this demo):") must appear in what the commands
# printed, so the README's numbers are the ones a user gets.  The verdicts
# the README tells of are then read back from the stored reports:
# demo-v2 passes, demo-v3 fails raw and passes through adapter v3-to-v1.
set -u

if [ $# -ne 2 ]; then
    echo "usage: $0 COMPATD README" >&2
    exit 2
fi
compatd=$1
readme=$2

name=readme_walkthrough
. "$(dirname "$0")/daemon.sh"

# The block, and the output the README quotes.
awk '/walkthrough:begin/ { on = 1; next } /walkthrough:end/ { on = 0 }
     on && !/^```/' "$readme" > "$tmp/walkthrough.sh"
awk '/\(numbers from this demo\):$/ { want = 1; next }
     want && /^```/ { if (in_block) { in_block = 0; want = 0 } else in_block = 1; next }
     in_block && $0 != "..." && $0 != "" { print }' "$readme" > "$tmp/quoted.txt"
[ -s "$tmp/walkthrough.sh" ] || fail "no walkthrough block between the markers in $readme"
[ -s "$tmp/quoted.txt" ] || fail "no quoted output after \"(numbers from this demo):\" in $readme"

mkdir -p "$tmp/bin" "$tmp/data" "$tmp/home"
ln -s "$(readlink -f "$compatd")" "$tmp/bin/compatd"
td_start "$compatd" "$tmp/data"

sed -e "s/localhost:8080/127.0.0.1:$port/g" -e "s/127\.0\.0\.1:8080/127.0.0.1:$port/g" \
    "$tmp/walkthrough.sh" > "$tmp/run.sh"
(
    cd "$tmp/home" &&
    HOME="$tmp/home" TMPDIR="$tmp/home" PATH="$tmp/bin:/usr/bin:/bin" COMPATD_URL="http://127.0.0.1:$port" \
        sh -e "$tmp/run.sh"
) > "$tmp/out.txt" 2> "$tmp/err.txt"
status=$?
cat "$tmp/out.txt"
if [ $status -ne 0 ]; then
    cat "$tmp/err.txt" >&2
    fail "the walkthrough failed (exit $status)"
fi

missing=0
while IFS= read -r line; do
    if ! grep -qxF -- "$line" "$tmp/out.txt"; then
        echo "readme_walkthrough: the README quotes a line the run did not print: $line" >&2
        missing=$((missing + 1))
    fi
done < "$tmp/quoted.txt"
[ $missing -eq 0 ] || fail "$missing quoted lines differ from the real output"

# The verdicts the README tells of, as the stored reports hold them
# ("gallery model, query model[ via adapter], verdict"): read from the
# gallery's evaluations, not the matrix, because the walkthrough goes on
# to promote demo-v2, after which the matrix shows only pairs against it.
curl -fs "http://127.0.0.1:$port/v1/galleries/demo/evaluations?limit=100" > "$tmp/evals.json" ||
    fail "GET /v1/galleries/demo/evaluations failed"
/usr/bin/python3 -c '
import json, sys
verdict = {True: "pass", False: "fail", None: "none"}
for e in json.load(open(sys.argv[1]))["evaluations"]:
    via = " via " + e["adapter"] if e.get("adapter") else ""
    print(e["gallery_model"], e["query_model"] + via, verdict[e["compatible"]])
' "$tmp/evals.json" > "$tmp/verdicts.txt" || fail "the evaluations are not what was expected"
for want in "demo-v1 demo-v2 pass" "demo-v1 demo-v3 fail" "demo-v1 demo-v3 via v3-to-v1 pass"; do
    grep -qxF -- "$want" "$tmp/verdicts.txt" ||
        fail "the reports do not say \"$want\": $(tr '\n' ';' < "$tmp/verdicts.txt")"
done

# The dashboard the README sends the user to is there.
curl -fs "http://127.0.0.1:$port/" | grep -q '<title>' || fail "GET / is not the dashboard"
echo "readme_walkthrough: the walkthrough ran; $(wc -l < "$tmp/quoted.txt") quoted lines match"
