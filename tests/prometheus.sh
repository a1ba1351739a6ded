#!/bin/sh
# prometheus.sh COMPATD PROMETHEUS CHECK DASHBOARD - Debian's prometheus
# scrapes a real daemon every second (both on ports of their own) while
# the test keeps a little traffic going; CHECK (prometheus_check.py) then
# reads the series back through Prometheus's HTTP API and runs every
# expression of the Grafana dashboard DASHBOARD.
set -u

if [ $# -ne 4 ]; then
    echo "usage: $0 COMPATD PROMETHEUS CHECK DASHBOARD" >&2
    exit 2
fi
compatd=$1
prometheus=$2
check=$3
dashboard=$4

name=prometheus
. "$(dirname "$0")/daemon.sh"

mkdir "$tmp/data" "$tmp/prom"
td_start "$compatd" "$tmp/data" --snapshot-interval 1
url=http://127.0.0.1:$port

# post PATH JSON WANT - POSTs JSON to the daemon, which must answer WANT.
post() {
    got=$(curl -s -o "$tmp/reply" -w '%{http_code}' -XPOST "$url$1" \
        -H 'Content-Type: application/json' -d "$2")
    [ "$got" = "$3" ] || fail "POST $1: $got $(cat "$tmp/reply"), want $3"
}

# Two people on the axes; demo-v2 embeds half the items (a backfill at
# 50%).  The first evaluation's baseline misses every probe and demo-v2
# finds them (compatible); the second's probes are the other way round
# (failed).
post /v1/models '{"name":"demo-v1","dim":2,"metric":"cosine"}' 201
post /v1/models '{"name":"demo-v2","dim":2,"metric":"cosine","compatible_with":"demo-v1"}' 201
post /v1/galleries '{"name":"demo","model":"demo-v1"}' 201
post /v1/galleries/demo/items '{"items":[
  {"id":"a","label":"p0","vector":[1,0]},{"id":"b","label":"p1","vector":[0,1]},
  {"id":"c","label":"p0","vector":[1,0.1]},{"id":"d","label":"p1","vector":[0.1,1]}]}' 200
post /v1/galleries/demo/items '{"model":"demo-v2","items":[
  {"id":"a","vector":[1,0]},{"id":"b","vector":[0,1]}]}' 200
post /v1/galleries/demo/evaluations '{"query_model":"demo-v2",
  "queries":[{"id":"q0","label":"p0","vector":[1,0.05]},{"id":"q1","label":"p1","vector":[0.05,1]}],
  "baseline":[{"id":"q0","vector":[0,1]},{"id":"q1","vector":[1,0]}]}' 201
post /v1/galleries/demo/evaluations '{"query_model":"demo-v2",
  "queries":[{"id":"q0","label":"p0","vector":[0,1]},{"id":"q1","label":"p1","vector":[1,0]}],
  "baseline":[{"id":"q0","vector":[1,0.05]},{"id":"q1","vector":[0.05,1]}]}' 201

# Live agreement: demo-v2 (let in by its compatible_with chain) searches
# with its query embedded by demo-v1 as the shadow.  Both top-2 are c, a
# (c scored in demo-v1's space, a in demo-v2's): overlap 1, top-1 kept.
shadowed='{"model":"demo-v2","k":2,"vector":[1,0.2],"shadow":{"vector":[1,0.2]}}'
curl -s -o /dev/null -XPATCH "$url/v1/galleries/demo" -H 'Content-Type: application/json' \
    -d '{"query_policy":"declared"}'
post /v1/galleries/demo/search "$shadowed" 200

# Traffic for the rates, until the end: searches (shadowed ones too) and
# GETs of a missing gallery (404s).
(
    while :; do
        curl -s -o /dev/null -XPOST "$url/v1/galleries/demo/search" \
            -H 'Content-Type: application/json' -d '{"k":2,"vector":[1,0.2]}'
        curl -s -o /dev/null -XPOST "$url/v1/galleries/demo/search" \
            -H 'Content-Type: application/json' -d "$shadowed"
        curl -s -o /dev/null "$url/v1/galleries/missing"
        sleep 0.1
    done
) &
td_pids="$td_pids $!"

cat > "$tmp/prometheus.yml" <<CONF
global:
  scrape_interval: 1s
  evaluation_interval: 1s
scrape_configs:
  - job_name: compatd
    static_configs:
      - targets: ["127.0.0.1:$port"]
CONF

# Prometheus takes a port, not 0: a free one, again if another process
# took it before Prometheus bound it.
for attempt in 1 2 3 4 5; do
    pport=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    "$prometheus" --config.file="$tmp/prometheus.yml" --storage.tsdb.path="$tmp/prom" \
        --web.listen-address="127.0.0.1:$pport" > "$tmp/prometheus.log" 2>&1 &
    ppid=$!
    td_pids="$td_pids $ppid"
    if td_wait 300 curl -fs -o /dev/null "http://127.0.0.1:$pport/-/ready"; then
        break
    fi
    kill "$ppid" 2>/dev/null
    wait "$ppid" 2>/dev/null
    pport=
done
[ -n "$pport" ] || { cat "$tmp/prometheus.log" >&2; fail "prometheus did not start"; }

python3 "$check" "http://127.0.0.1:$pport" "$dashboard" ||
    { tail -n 20 "$tmp/prometheus.log" >&2; fail "the series or the dashboard's queries are wrong"; }
