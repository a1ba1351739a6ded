#!/usr/bin/python3
"""mixed_eval_ref.py - a mixed evaluation (SPEC.md section 3.8) computed
again with numpy from the specification alone (nothing from compatd).

    /usr/bin/python3 mixed_eval_ref.py DIR METRIC KS

DIR holds what tests/test_http_mixed_eval.c writes, every matrix float32
row-major:
  gallery.f32         n x d: the gallery model's embeddings of the labelled
                      items, in insertion order
  own.f32, has_own.u8 n x d_q and n bytes: the items' query-model
                      embeddings (rows whose byte is 0 are not used)
  gallery_labels.txt  one label a line
  probes.f32          m x d_q: the probes embedded by the query model
  baseline.f32        m x d: the same probes embedded by the gallery model
  probe_labels.txt
  weights.f64, bias.f64  (optional) an adapter d_q x d and its bias: the
                      gallery-space probe is qW + b (normalised for cosine);
                      absent: the raw probe itself
METRIC is cosine, ip or l2; KS a comma-separated list of k.

Definitions.  For cosine every vector is L2-normalised first.  A probe
scores an item that has a query-model embedding by the raw probe against
that embedding, every other item by its gallery-space probe against the
item's gallery-model embedding: the inner product for cosine and ip, minus
the squared euclidean distance for l2.  Items are ranked by score,
descending, ties by lower insertion index.  top-k: the share of probes
with an item of their label among the first k; AP: (1/R) times the sum,
over ranks r holding an item of the probe's label, of precision at r; map:
their mean.  The baseline ranks the baseline probes against the gallery
embeddings alone.  A negative flip: the baseline's first item has the
probe's label and the mixed ranking's has not (positive: the reverse);
nfr: negative flips / probes.  coverage: the share of items with a
query-model embedding.  No probe id is an item id here and every probe's
label has items.

Prints "top<k> X", "map X", "negative N", "positive N", "nfr X",
"coverage X", and "gap X": the smallest difference, over every probe, of
the score of an item of its label and one of another label (the float32
daemon and this float64 reference rank alike while it exceeds their
rounding).
"""
import os
import sys

import numpy as np


def unit(x):
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def lines(path):
    with open(path) as f:
        return [ln.rstrip("\n") for ln in f]


def load(d, name, rows):
    x = np.fromfile(os.path.join(d, name), dtype=np.float32).astype(np.float64)
    return x.reshape(rows, -1)


def scores_of(metric, q, x):
    """rows: probes, columns: items."""
    if metric == "l2":
        return -(((q[:, None, :] - x[None, :, :]) ** 2).sum(axis=2))
    return q @ x.T


def first_and_ap(s, glabels, label):
    order = sorted(range(len(s)), key=lambda j: (-s[j], j))
    rel = glabels[order] == label
    ranks = np.nonzero(rel)[0] + 1
    return int(ranks[0]), float(np.mean(np.arange(1, len(ranks) + 1) / ranks))


def main():
    d, metric = sys.argv[1], sys.argv[2]
    ks = [int(k) for k in sys.argv[3].split(",")]
    glabels = np.array(lines(os.path.join(d, "gallery_labels.txt")))
    plabels = lines(os.path.join(d, "probe_labels.txt"))
    n, m = len(glabels), len(plabels)
    g = load(d, "gallery.f32", n)
    own = load(d, "own.f32", n)
    has = np.fromfile(os.path.join(d, "has_own.u8"), dtype=np.uint8).astype(bool)
    q = load(d, "probes.f32", m)
    b = load(d, "baseline.f32", m)
    if metric == "cosine":
        g, q, b = unit(g), unit(q), unit(b)
        own[has] = unit(own[has])
    qg = q
    wpath = os.path.join(d, "weights.f64")
    if os.path.exists(wpath):
        qg = q @ np.fromfile(wpath, dtype=np.float64).reshape(q.shape[1], g.shape[1])
        bpath = os.path.join(d, "bias.f64")
        if os.path.exists(bpath):
            qg = qg + np.fromfile(bpath, dtype=np.float64)
        if metric == "cosine":
            qg = unit(qg)
    mixed = np.where(has[None, :], scores_of(metric, q, own), scores_of(metric, qg, g))
    base = scores_of(metric, b, g)
    hits = {k: 0 for k in ks}
    aps, neg, pos, gap = [], 0, 0, np.inf
    for i in range(m):
        first, ap = first_and_ap(mixed[i], glabels, plabels[i])
        bfirst, _ = first_and_ap(base[i], glabels, plabels[i])
        for k in ks:
            hits[k] += first <= k
        aps.append(ap)
        neg += bfirst == 1 and first != 1
        pos += bfirst != 1 and first == 1
        mine = glabels == plabels[i]
        for s in (mixed[i], base[i]):
            gap = min(gap, np.min(np.abs(s[mine][:, None] - s[~mine][None, :])))
    for k in ks:
        print("top%d %.17g" % (k, hits[k] / m))
    print("map %.17g" % np.mean(aps))
    print("negative %d" % neg)
    print("positive %d" % pos)
    print("nfr %.17g" % (neg / m))
    print("coverage %.17g" % (has.sum() / n))
    print("gap %.17g" % gap)


main()
