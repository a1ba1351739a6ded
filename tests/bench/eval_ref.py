#!/usr/bin/python3
"""eval_ref.py - compatd's compatibility report numbers, computed again
with numpy and faiss from schema/concepts.md section 4 alone (nothing from compatd).

    /usr/bin/python3 eval_ref.py DIR

DIR holds what tests/bench/bench_eval.c writes: gallery.npy (n x d
float32, insertion order), probes.npy and baseline.npy (nq x d float32,
the baseline row q is probe q's), gallery_labels.npy and probe_labels.npy
(int32 label codes), probe_self.npy (int64: the gallery index whose id is
the probe's, or -1) and ks.npy (int32).  The metric is the inner product
(cosine vectors arrive normalised).  Prints "name value" lines: queries,
skipped, negative_flips, positive_flips, then top-k for each k and map of
cross and baseline.

Definitions.  A probe's gallery is every item but the one with its own id;
items rank by score, ties by lower gallery position.  R = items of the
probe's label in its gallery; R = 0: skipped.  top-k: the first item of
the label is within the first k.  AP = (1/R) * sum over those items of
(their number so far) / (their rank).

How.  Top-k and top-1 correctness come from faiss.knn (exact inner-product
search) over the first max(ks) + 2 neighbours, own item dropped and equal
scores put in position order; when the k-th and (k+1)-th scores tie, the
cut is not known from the list, and the row takes the numpy rank instead.
AP comes from numpy: per row, the other items' scores are sorted once and
every item of the label finds by binary search how many of them rank
above it.  The two ranks of the first positive are checked against each
other.
"""
import sys

import faiss
import numpy as np

BLOCK = 256     # probes per score block


def ordered_keys(scores):
    """int32 keys ordered like the float32 scores (-0.0 equal to 0.0)."""
    bits = (scores + np.float32(0.0)).view(np.int32)
    return np.where(bits < 0, bits ^ np.int32(0x7FFFFFFF), bits)


def numpy_ranks(keys, glab, label, own):
    """First positive's rank (1-based) and AP of one row, or None."""
    n = keys.shape[0]
    pos_mask = glab == label
    if own >= 0:
        pos_mask[own] = False
    positions = np.flatnonzero(pos_mask)
    R = positions.shape[0]
    if R == 0:
        return None
    neg_mask = ~pos_mask
    if own >= 0:
        neg_mask[own] = False
    neg_sorted = np.sort(keys[neg_mask])
    pk = keys[positions]
    # Negatives strictly above each positive ...
    right = np.searchsorted(neg_sorted, pk, side="right")
    above = neg_sorted.shape[0] - right
    # ... and those with an equal score at a lower position.
    left = np.searchsorted(neg_sorted, pk, side="left")
    for i in np.flatnonzero(right > left):
        p = positions[i]
        before = np.zeros(n, dtype=bool)
        before[:p] = True
        above[i] += np.count_nonzero((keys == pk[i]) & neg_mask & before)
    # Positives among themselves: by key desc, position asc (stable).
    order = np.argsort(-pk.astype(np.int64), kind="stable")
    ranks = np.arange(1, R + 1) + above[order]
    ap = float(np.sum(np.arange(1, R + 1) / ranks) / R)
    return int(ranks[0]), ap


def faiss_first(D, I, glab, label, own, kmax):
    """First positive's rank if within kmax, kmax + 1 if beyond, or None
    when equal scores straddle the cut."""
    keep = I != own
    d, i = D[keep], I[keep]
    if d.shape[0] < kmax + 1 or not d[kmax - 1] > d[kmax]:
        return None
    order = np.lexsort((i[:kmax], -d[:kmax]))
    hits = np.flatnonzero(glab[i[:kmax][order]] == label)
    return int(hits[0]) + 1 if hits.shape[0] else kmax + 1


def evaluate(queries, gallery, glab, plab, own, ks):
    """Per probe: first positive's rank (0: skipped) and AP."""
    nq = queries.shape[0]
    kmax = int(max(ks))
    first = np.zeros(nq, dtype=np.int64)
    ap = np.zeros(nq)
    dists, knn = faiss.knn(queries, gallery,
                           min(kmax + 2, gallery.shape[0]),
                           metric=faiss.METRIC_INNER_PRODUCT)
    for b0 in range(0, nq, BLOCK):
        keys = ordered_keys(queries[b0:b0 + BLOCK] @ gallery.T)
        for r in range(keys.shape[0]):
            q = b0 + r
            got = numpy_ranks(keys[r], glab, plab[q], own[q])
            if got is None:
                continue
            rank, ap[q] = got
            f = faiss_first(dists[q], knn[q], glab, plab[q], own[q], kmax)
            if f is not None and f != min(rank, kmax + 1):
                sys.exit("eval_ref: probe %d: faiss puts its first hit at "
                         "%d, numpy at %d" % (q, f, rank))
            first[q] = f if f is not None and f <= kmax else rank
    return first, ap


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: eval_ref.py DIR")
    d = sys.argv[1]
    gallery = np.load(d + "/gallery.npy")
    probes = np.load(d + "/probes.npy")
    baseline = np.load(d + "/baseline.npy")
    glab = np.load(d + "/gallery_labels.npy")
    plab = np.load(d + "/probe_labels.npy")
    own = np.load(d + "/probe_self.npy")
    ks = np.load(d + "/ks.npy")

    cross_first, cross_ap = evaluate(probes, gallery, glab, plab, own, ks)
    base_first, base_ap = evaluate(baseline, gallery, glab, plab, own, ks)
    evaluated = cross_first > 0
    n = int(np.count_nonzero(evaluated))
    cross_ok = evaluated & (cross_first == 1)
    base_ok = evaluated & (base_first == 1)
    print("queries", n)
    print("skipped", probes.shape[0] - n)
    print("negative_flips", int(np.count_nonzero(base_ok & ~cross_ok)))
    print("positive_flips", int(np.count_nonzero(~base_ok & cross_ok
                                                 & evaluated)))
    for name, first, ap in (("cross", cross_first, cross_ap),
                            ("baseline", base_first, base_ap)):
        for k in ks:
            hits = np.count_nonzero(evaluated & (first <= k))
            print("%s_top%d %r" % (name, k, hits / n))
        print("%s_map %r" % (name, float(np.sum(ap[evaluated]) / n)))


if __name__ == "__main__":
    main()
