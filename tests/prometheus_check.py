"""prometheus_check.py PROM_URL DASHBOARD - reads compatd's series back
through a real Prometheus's HTTP API (tests/prometheus.sh has it scrape a
daemon holding a known gallery every second) and runs every expression
of the Grafana dashboard DASHBOARD against it.

The values asked for are the ones the test's requests make certain: two
upserts, two evaluations of which one failed, four items of which two have
an embedding of the second model.  Every dashboard expression must return
at least one sample, each a finite number."""
import json
import math
import sys
import time
import urllib.parse
import urllib.request

prom, dashboard = sys.argv[1], sys.argv[2]
failures = 0


def query(expr):
    """The instant vector (or scalar) EXPR gives now, as [(labels, value)]."""
    url = prom + "/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    with urllib.request.urlopen(url, timeout=10) as r:
        reply = json.load(r)
    if reply["status"] != "success":
        raise RuntimeError("%s: %s" % (expr, reply))
    data = reply["data"]
    if data["resultType"] == "scalar":
        return [({}, float(data["result"][1]))]
    return [(s["metric"], float(s["value"][1])) for s in data["result"]]


def check(ok, what):
    global failures
    if not ok:
        print("prometheus_check: FAILED: " + what, file=sys.stderr)
        failures += 1


def value(expr):
    got = query(expr)
    return got[0][1] if len(got) == 1 else None


# Prometheus has what the requests made once a scrape after them landed
# and the rates over 10s have two samples of the traffic still running.
RATE = 'sum(rate(compatd_http_requests_total{route="/v1/galleries/{g}/search"}[10s]))'
deadline = time.monotonic() + 60
while True:
    try:
        ready = value("compatd_evaluations_total") == 2 and (value(RATE) or 0) > 0 and \
            value("compatd_snapshot_age_seconds") is not None
    except (OSError, RuntimeError):
        ready = False
    if ready:
        break
    if time.monotonic() > deadline:
        print("prometheus_check: the scraped series never showed the test's requests", file=sys.stderr)
        for e in ("up", "compatd_evaluations_total", RATE, "compatd_snapshot_age_seconds"):
            print("  %s -> %s" % (e, query(e)), file=sys.stderr)
        sys.exit(1)
    time.sleep(0.2)

check(value('up{job="compatd"}') == 1, "up is 1")
expect = [
    ('sum(compatd_http_requests_total{method="POST",route="/v1/galleries/{g}/items",status="200"})', 2),
    ('sum(compatd_http_requests_total{method="POST",route="/v1/galleries/{g}/evaluations",status="201"})', 2),
    ('sum(compatd_http_requests_total{method="POST",route="/v1/models",status="201"})', 2),
    ('compatd_gallery_items{gallery="demo"}', 4),
    ('compatd_gallery_embeddings{gallery="demo",model="demo-v1"}', 4),
    ('compatd_gallery_embeddings{gallery="demo",model="demo-v2"}', 2),
    ('compatd_evaluations_total', 2),
    ('compatd_evaluations_failed_total', 1),
    ('compatd_ready', 1),
    ('compatd_live_overlap_at_k{gallery="demo",model="demo-v2",adapter=""}', 1),
    ('compatd_live_top1_retained{gallery="demo",model="demo-v2",adapter=""}', 1),
]
for expr, want in expect:
    got = value(expr)
    check(got == want, "%s is %s, want %s" % (expr, got, want))
# The traffic's GETs of a missing gallery are 404s.
got = value('sum(compatd_http_requests_total{route="/v1/galleries/{g}",status="404"})')
check(got is not None and got >= 1, "404s of the missing gallery counted (%s)" % got)
got = value('compatd_live_queries_total{gallery="demo",model="demo-v2",adapter=""}')
check(got is not None and got >= 1, "shadowed searches counted (%s)" % got)
# Latency quantiles: a finite number of seconds within the buckets.
for q in ("0.5", "0.99"):
    expr = ('histogram_quantile(%s, sum by (le) (rate(compatd_http_request_duration_seconds_bucket'
            '{route="/v1/galleries/{g}/search"}[10s])))' % q)
    got = value(expr)
    check(got is not None and math.isfinite(got) and 0 < got <= 10, "%s is %s" % (expr, got))

# Every expression of every dashboard panel, as Grafana sends it with the
# instance variable at "All" and a rate interval of 10s (1s scrapes).
with open(dashboard, encoding="utf-8") as f:
    board = json.load(f)
exprs = 0
for panel in board["panels"]:
    for t in panel.get("targets", []):
        expr = t["expr"].replace("$__rate_interval", "10s").replace("$instance", ".+")
        exprs += 1
        got = query(expr)
        check(got and all(math.isfinite(v) for _, v in got),
              "panel %r: %s returns %s" % (panel["title"], expr, got))
check(exprs >= 10, "the dashboard has %d expressions" % exprs)
titles = [p["title"] for p in board["panels"] if p["type"] != "row"]
print("prometheus_check: %d series checks, %d dashboard expressions over %d panels, %d failures"
      % (len(expect) + 5, exprs, len(titles), failures))
sys.exit(1 if failures else 0)
