# daemon.sh - sourced by the shell tests after they set $name (for
# messages): a temporary directory $tmp, removed at exit together with
# the processes started in it (their ids in $td_pids), fail, and td_start.

tmp=$(mktemp -d) || exit 1
td_pids=
td_cleanup() {
    for p in $td_pids; do
        kill "$p" 2>/dev/null
        wait "$p" 2>/dev/null
    done
    rm -rf "$tmp"
}
trap td_cleanup EXIT

fail() {
    echo "$name: $*" >&2
    exit 1
}

# td_start COMPATD DATA [FLAG...] - starts `COMPATD serve` on
# 127.0.0.1:0 with its data in DATA (and FLAGs), its log in
# $tmp/daemon.log; returns once /readyz answers 200, with $port set.
td_start() {
    td_compatd=$1
    td_data=$2
    shift 2
    rm -f "$tmp/port"
    "$td_compatd" serve --data "$td_data" --listen 127.0.0.1:0 --port-file "$tmp/port" "$@" \
        > "$tmp/daemon.log" 2>&1 &
    td_pids="$td_pids $!"
    td_wait 300 test -s "$tmp/port" || { cat "$tmp/daemon.log" >&2; fail "the daemon did not start"; }
    port=$(cat "$tmp/port")
    td_wait 300 curl -fs -o /dev/null "http://127.0.0.1:$port/readyz" ||
        { cat "$tmp/daemon.log" >&2; fail "the daemon never became ready"; }
}

# td_wait TENTHS COMMAND... - runs COMMAND every tenth of a second until
# it succeeds (0) or TENTHS tries failed (1).
td_wait() {
    td_tries=$1
    shift
    while ! "$@"; do
        td_tries=$((td_tries - 1))
        [ "$td_tries" -gt 0 ] || return 1
        sleep 0.1
    done
}
