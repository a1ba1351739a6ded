#!/usr/bin/python3
"""adapted_eval_ref.py - an evaluation's cross ranking through an adapter,
computed again with numpy from SPEC.md sections 3.7 and 4.1 alone
(nothing from compatd).

    /usr/bin/python3 adapted_eval_ref.py DIR KS

DIR holds what tests/test_http_adapted_eval.c writes: gallery.f32 (n x d
float32, row-major: the gallery model's embeddings of the labelled items,
in insertion order), gallery_labels.txt (one label a line), probes.f32
(m x d_from float32: the query model's probes), probe_labels.txt, and
optionally weights.f64 (d_from x d rows of the adapter, float64 as the
daemon's JSON gave them; absent: the probes are used raw) and bias.f64.
KS is a comma-separated list of k.  Every model is cosine.

Prints "top<k> X" for each k, "map X", and "gap X": the smallest score
difference, over every probe, between an item of its label and an item
of another label.  Rankings (and so every number) are the same in any
precision while the gap is well above the rounding of a float32 score.

Definitions.  A probe q (L2-normalised) maps to qW + b, normalised again.
Gallery rows are L2-normalised.  Items are ranked by inner product,
descending, ties by lower insertion index.  top-k: the fraction of probes
with an item of their label among the first k.  AP: (1/R) times the sum,
over ranks r holding an item of the probe's label, of precision at r;
map: the mean AP.  No probe id equals an item id here, so nothing is
left out, and every probe's label has items.
"""
import os
import sys

import numpy as np


def unit(x):
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def lines(path):
    with open(path) as f:
        return [ln.rstrip("\n") for ln in f]


def main():
    d, ks = sys.argv[1], [int(k) for k in sys.argv[2].split(",")]
    glabels = np.array(lines(os.path.join(d, "gallery_labels.txt")))
    plabels = lines(os.path.join(d, "probe_labels.txt"))
    n, m = len(glabels), len(plabels)
    g = np.fromfile(os.path.join(d, "gallery.f32"), dtype=np.float32).astype(np.float64)
    g = unit(g.reshape(n, -1))
    q = np.fromfile(os.path.join(d, "probes.f32"), dtype=np.float32).astype(np.float64)
    q = unit(q.reshape(m, -1))
    wpath = os.path.join(d, "weights.f64")
    if os.path.exists(wpath):
        w = np.fromfile(wpath, dtype=np.float64).reshape(q.shape[1], g.shape[1])
        q = q @ w
        bpath = os.path.join(d, "bias.f64")
        if os.path.exists(bpath):
            q = q + np.fromfile(bpath, dtype=np.float64)
        q = unit(q)
    scores = q @ g.T
    hits = {k: 0 for k in ks}
    aps = []
    gap = np.inf
    for i in range(m):
        s = scores[i]
        order = sorted(range(n), key=lambda j: (-s[j], j))
        rel = glabels[order] == plabels[i]
        first = int(np.argmax(rel))
        for k in ks:
            hits[k] += first < k
        ranks = np.nonzero(rel)[0] + 1
        aps.append(np.mean(np.arange(1, len(ranks) + 1) / ranks))
        mine = glabels == plabels[i]
        gap = min(gap, np.min(np.abs(s[mine][:, None] - s[~mine][None, :])))
    for k in ks:
        print("top%d %.17g" % (k, hits[k] / m))
    print("map %.17g" % np.mean(aps))
    print("gap %.17g" % gap)


main()
