#!/usr/bin/python3
"""bench_peers.py - exact single-query latency of compatd over HTTP next to
in-process peers, measured in the same run on the same vectors.

    bench_peers.py COMPATD [SIZES] [--svg FILE]

COMPATD is the daemon binary; SIZES a comma-separated list of gallery
sizes (default 10000,100000; add 1000000 for a million).  For each size,
N x 128 float32 (cosine) is loaded into

  - compatd: a Flat gallery, over HTTP on one keep-alive connection
    (http.client, the query as vector_b64, the reply read but not parsed);
  - hnswlib's brute force (BFIndex, in-process), when python3-hnswlib is
    installed;
  - FAISS IndexFlatIP on normalised rows (in-process), when python3-faiss
    is installed;

and each answers the same single queries (k=10) one by one, interleaved
in rounds so machine noise falls on all of them alike.  Prints p50/p99
per engine and the ratio compatd / peer at p50 (below 1: compatd is
faster).  Then the same engines answer batches of 100 queries (compatd:
one request with the 100 as base64 strings in `vectors`; FAISS: one
search of the 100 rows; hnswlib: one knn_query of the 100), again
interleaved in rounds, and it prints each engine's throughput in
queries/s (100 over the median batch time) and the ratio compatd / FAISS
(above 1: compatd is faster).  Also prints the machine's read bandwidth (a STREAM-like pass: numpy dot of
two 128 MB float32 arrays, best of 5) and what fraction of it compatd's
exact scan reaches; and with --svg writes a plot of p50 latency against
gallery size (log-log), drawn here without any plotting library.
Also checks compatd's top 10, single and in a batch, against numpy's
exact ones.
"""
import base64
import http.client
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time

import numpy as np

DIM = 128
K = 10
ROUNDS = 5
PER_ROUND = 40
BATCH = 10000           # items per upsert request while loading
NQ = 100                # queries in one batch search
BATCH_ROUNDS = 5
BATCHES_PER_ROUND = 2

try:
    import hnswlib
except ImportError:
    hnswlib = None
try:
    import faiss
except ImportError:
    faiss = None


def bandwidth():
    a = np.ones(32 << 20, dtype=np.float32)
    b = np.ones(32 << 20, dtype=np.float32)
    best = 1e9
    for _ in range(5):
        t0 = time.perf_counter()
        float(np.dot(a, b))
        best = min(best, time.perf_counter() - t0)
    return 2 * a.nbytes / best / 1e9


class Daemon:
    def __init__(self, binary):
        self.dir = tempfile.mkdtemp(prefix="bench-peers-")
        port_file = os.path.join(self.dir, "port")
        self.proc = subprocess.Popen(
            [binary, "serve", "--listen", "127.0.0.1:0", "--data", os.path.join(self.dir, "data"),
             "--log-level", "warn", "--port-file", port_file],
            stdout=subprocess.DEVNULL)
        for _ in range(600):
            if os.path.exists(port_file) and open(port_file).read().strip():
                break
            time.sleep(0.05)
        self.port = int(open(port_file).read().strip())
        self.connect()
        self.wait_ready()

    def connect(self):
        # One request, one send (no Nagle wait between headers and body).
        self.conn = http.client.HTTPConnection("127.0.0.1", self.port)
        self.conn.connect()
        self.conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def wait_ready(self):
        for _ in range(1200):
            try:
                if self.call("GET", "/readyz")[0] == 200:
                    return
            except OSError:
                time.sleep(0.05)
                self.connect()
            time.sleep(0.05)
        raise SystemExit("compatd did not get ready")

    def call(self, method, path, body=None):
        headers = {"Content-Type": "application/json"} if body is not None else {}
        self.conn.request(method, path, body=body.encode() if body is not None else None,
                          headers=headers)
        r = self.conn.getresponse()
        return r.status, r.read()

    def stop(self):
        self.conn.close()
        self.proc.terminate()
        self.proc.wait(timeout=300)
        shutil.rmtree(self.dir, ignore_errors=True)


def b64(v):
    return base64.b64encode(np.ascontiguousarray(v, dtype="<f4").tobytes()).decode()


def load_compatd(d, name, x):
    st, body = d.call("POST", "/v1/galleries", json.dumps({"name": name, "model": "m"}))
    if st != 201:
        raise SystemExit("gallery: %d %s" % (st, body[:200]))
    for i in range(0, len(x), BATCH):
        items = [{"id": "%d" % j, "vector_b64": b64(x[j])} for j in range(i, min(i + BATCH, len(x)))]
        st, body = d.call("POST", "/v1/galleries/%s/items" % name, json.dumps({"items": items}))
        if st != 200:
            raise SystemExit("upsert: %d %s" % (st, body[:200]))


def pct(v, p):
    v = sorted(v)
    return v[min(len(v) - 1, max(0, int(np.ceil(p * len(v))) - 1))]


def hit_ids(result):
    return [int(h["id"]) for h in result]


def exact_top(xn, qv):
    return list(np.argsort(-(xn @ qv))[:K])


def interleaved(engines, rounds, per_round):
    """Times each engine's calls fn(0 .. rounds*per_round-1), per_round at
    a time, engine after engine in each round, so that machine noise falls
    on all of them alike."""
    times = {e: [] for e in engines}
    for r in range(rounds):
        for e, fn in engines.items():
            for i in range(r * per_round, (r + 1) * per_round):
                t0 = time.perf_counter()
                fn(i)
                times[e].append(time.perf_counter() - t0)
    return times


def run_size(d, n, rng):
    x = rng.standard_normal((n, DIM)).astype(np.float32)
    q = rng.standard_normal((ROUNDS * PER_ROUND, DIM)).astype(np.float32)
    nb = BATCH_ROUNDS * BATCHES_PER_ROUND
    qb = rng.standard_normal((nb * NQ, DIM)).astype(np.float32)
    name = "g%d" % n
    load_compatd(d, name, x)
    xn = x / np.linalg.norm(x, axis=1, keepdims=True)
    qn = q / np.linalg.norm(q, axis=1, keepdims=True)
    qbn = qb / np.linalg.norm(qb, axis=1, keepdims=True)
    engines = {}
    batch_engines = {}
    bodies = [json.dumps({"k": K, "vector_b64": b64(v)}) for v in q]
    batch_bodies = [json.dumps({"k": K, "vectors": [b64(v) for v in qb[b * NQ:(b + 1) * NQ]]})
                    for b in range(nb)]
    path = "/v1/galleries/%s/search" % name

    def compatd_one(i):
        st, body = d.call("POST", path, bodies[i])
        if st != 200:
            raise SystemExit("search: %d %s" % (st, body[:200]))
        return body

    def compatd_batch(b):
        st, body = d.call("POST", path, batch_bodies[b])
        if st != 200:
            raise SystemExit("batch search: %d %s" % (st, body[:200]))
        return body
    engines["compatd (HTTP)"] = compatd_one
    batch_engines["compatd (HTTP)"] = compatd_batch
    if hnswlib is not None:
        bf = hnswlib.BFIndex(space="cosine", dim=DIM)
        bf.init_index(max_elements=n)
        bf.add_items(x, np.arange(n))
        engines["hnswlib BFIndex"] = lambda i: bf.knn_query(q[i:i + 1], k=K)
        batch_engines["hnswlib BFIndex"] = lambda b: bf.knn_query(qb[b * NQ:(b + 1) * NQ], k=K)
    if faiss is not None:
        fx = faiss.IndexFlatIP(DIM)
        fx.add(xn)
        engines["FAISS IndexFlatIP"] = lambda i: fx.search(qn[i:i + 1], K)
        batch_engines["FAISS IndexFlatIP"] = lambda b: fx.search(qbn[b * NQ:(b + 1) * NQ], K)

    # compatd's answers against numpy's exact top 10.
    bad = 0
    for i in range(5):
        res = json.loads(compatd_one(i))["results"]
        if res and isinstance(res[0], list):
            res = res[0]
        bad += hit_ids(res) != exact_top(xn, qn[i])
    # ... and in a batch: 5 rows of the first and of the last batch.
    bad_batch = 0
    for b in (0, nb - 1):
        res = json.loads(compatd_batch(b))["results"]
        if len(res) != NQ:
            raise SystemExit("batch search: %d result lists for %d queries" % (len(res), NQ))
        for j in (0, 1, NQ // 2, NQ - 2, NQ - 1):
            bad_batch += hit_ids(res[j]) != exact_top(xn, qbn[b * NQ + j])
    times = interleaved(engines, ROUNDS, PER_ROUND)
    batch_times = interleaved(batch_engines, BATCH_ROUNDS, BATCHES_PER_ROUND)
    d.call("DELETE", "/v1/galleries/%s" % name)
    return times, batch_times, bad, bad_batch


def svg_plot(path, sizes, p50, bw_line):
    w, h, ml, mr, mt, mb = 640, 420, 70, 190, 30, 50
    ys = [v for e in p50 for v in p50[e] if v > 0]
    xs = [float(s) for s in sizes]
    lx0, lx1 = np.log10(min(xs)) - 0.1, np.log10(max(xs)) + 0.1
    ly0, ly1 = np.floor(np.log10(min(ys) * 1e3)), np.ceil(np.log10(max(ys) * 1e3))
    if ly1 <= ly0:
        ly1 = ly0 + 1

    def px(s):
        return ml + (np.log10(s) - lx0) / (lx1 - lx0) * (w - ml - mr)

    def py(t):
        return h - mb - (np.log10(t * 1e3) - ly0) / (ly1 - ly0) * (h - mt - mb)
    out = ['<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" '
           'font-family="sans-serif" font-size="12">' % (w, h),
           '<rect width="100%" height="100%" fill="white"/>',
           '<text x="%d" y="18" font-size="14">Exact single query (k=10, 128-d cosine), p50</text>' % ml]
    for e in range(int(ly0), int(ly1) + 1):
        y = py(10.0 ** e / 1e3)
        out.append('<line x1="%d" x2="%d" y1="%.1f" y2="%.1f" stroke="#ddd"/>' % (ml, w - mr, y, y))
        out.append('<text x="%d" y="%.1f" text-anchor="end">%g ms</text>' % (ml - 6, y + 4, 10.0 ** e))
    for s in sizes:
        x = px(s)
        out.append('<line x1="%.1f" x2="%.1f" y1="%d" y2="%d" stroke="#ddd"/>' % (x, x, mt, h - mb))
        out.append('<text x="%.1f" y="%d" text-anchor="middle">%s</text>' % (x, h - mb + 18, "{:,}".format(s)))
    out.append('<text x="%d" y="%d" text-anchor="middle">gallery size (vectors)</text>' % ((ml + w - mr) / 2, h - 10))
    colours = ["#c0392b", "#2471a3", "#229954", "#7d3c98"]
    series = list(p50.items())
    if bw_line:
        series.append(bw_line)
    for k, (e, vals) in enumerate(series):
        c = colours[k % len(colours)]
        dash = ' stroke-dasharray="5,4"' if bw_line and e == bw_line[0] else ""
        pts = " ".join("%.1f,%.1f" % (px(s), py(t)) for s, t in zip(sizes, vals) if t > 0)
        out.append('<polyline points="%s" fill="none" stroke="%s" stroke-width="2"%s/>' % (pts, c, dash))
        for s, t in zip(sizes, vals):
            if t > 0 and not dash:
                out.append('<circle cx="%.1f" cy="%.1f" r="3" fill="%s"/>' % (px(s), py(t), c))
        ly = mt + 20 + 20 * k
        out.append('<line x1="%d" x2="%d" y1="%d" y2="%d" stroke="%s" stroke-width="2"%s/>' % (w - mr + 10, w - mr + 30, ly, ly, c, dash))
        out.append('<text x="%d" y="%d">%s</text>' % (w - mr + 36, ly + 4, e))
    out.append("</svg>")
    with open(path, "w") as f:
        f.write("\n".join(out) + "\n")


def main():
    args = sys.argv[1:]
    svg = None
    if "--svg" in args:
        i = args.index("--svg")
        svg = args[i + 1]
        del args[i:i + 2]
    if not args:
        raise SystemExit(__doc__)
    binary = args[0]
    sizes = [int(s) for s in args[1].split(",")] if len(args) > 1 else [10000, 100000]
    if hnswlib is None:
        print("hnswlib: not installed (python3-hnswlib), skipped")
    if faiss is None:
        print("FAISS: not installed (python3-faiss), skipped")
    print("load average at the start: %s" % " ".join(open("/proc/loadavg").read().split()[:3]))
    bw = bandwidth()
    print("read bandwidth (numpy dot of 2 x 128 MB, best of 5): %.1f GB/s" % bw)
    rng = np.random.default_rng(42)
    d = Daemon(binary)
    st, _ = d.call("POST", "/v1/models", json.dumps({"name": "m", "dim": DIM, "metric": "cosine"}))
    assert st == 201
    p50 = {}
    rows = []
    batch_rows = []
    batch_qps = {}
    try:
        for n in sizes:
            t_start = time.time()
            times, batch_times, bad, bad_batch = run_size(d, n, rng)
            print("%s: done in %.0f s; load average %s" % (
                "{:,}".format(n), time.time() - t_start, open("/proc/loadavg").read().split()[0]))
            print("  compatd's top 10 against numpy's: %d of 5 single queries differ, "
                  "%d of 10 batch rows differ" % (bad, bad_batch))
            c50 = pct(times["compatd (HTTP)"], 0.5)
            for e, t in times.items():
                p50.setdefault(e, []).append(pct(t, 0.5))
                ratio = c50 / pct(t, 0.5)
                rows.append((n, e, pct(t, 0.5), pct(t, 0.99), ratio))
            for e, t in batch_times.items():
                batch_qps.setdefault(e, []).append(NQ / pct(t, 0.5))
            for e, t in batch_times.items():
                qps = NQ / pct(t, 0.5)
                batch_rows.append((n, e, qps, NQ / min(t), len(t),
                                   batch_qps["compatd (HTTP)"][-1] / qps))
    finally:
        d.stop()
    print("\n| gallery | engine | p50 | p99 | compatd / engine at p50 |")
    print("|---:|---|---:|---:|---:|")
    for n, e, a, b, r in rows:
        print("| {:,} | {} | {:.3f} ms | {:.3f} ms | {} |".format(
            n, e, a * 1e3, b * 1e3, "" if e.startswith("compatd") else "%.2fx" % r))
    print("\n| gallery | engine | batch of %d: q/s (median batch) | best batch | batches "
          "| compatd / engine in q/s |" % NQ)
    print("|---:|---|---:|---:|---:|---:|")
    for n, e, qps, best, nbatch, r in batch_rows:
        print("| {:,} | {} | {:,.0f} | {:,.0f} | {} | {} |".format(
            n, e, qps, best, nbatch, "" if e.startswith("compatd") else "%.2fx" % r))
    print()
    for i, n in enumerate(sizes):
        floor = n * DIM * 4 / (bw * 1e9)
        print("%s: a scan of %.0f MB at %.1f GB/s takes %.3f ms; compatd's p50 over HTTP "
              "is %.1fx that" % ("{:,}".format(n), n * DIM * 4 / 1e6, bw, floor * 1e3,
                                 p50["compatd (HTTP)"][i] / floor))
        if "hnswlib BFIndex" in p50:
            r = p50["compatd (HTTP)"][i] / p50["hnswlib BFIndex"][i]
            print("  target <= 0.70x hnswlib brute force: %s (%.2fx)" % ("met" if r <= 0.7 else "not met", r))
        if "FAISS IndexFlatIP" in p50:
            r = p50["compatd (HTTP)"][i] / p50["FAISS IndexFlatIP"][i]
            print("  next to FAISS IndexFlatIP nq=1: %.2fx" % r)
            r = batch_qps["compatd (HTTP)"][i] / batch_qps["FAISS IndexFlatIP"][i]
            print("  target batch of %d throughput >= FAISS IndexFlatIP's: %s (%.2fx)" % (
                NQ, "met" if r >= 1 else "not met", r))
    if svg:
        floor = ("memory-bandwidth floor", [n * DIM * 4 / (bw * 1e9) for n in sizes])
        svg_plot(svg, sizes, p50, floor)
        print("plot written to %s" % svg)


if __name__ == "__main__":
    main()
