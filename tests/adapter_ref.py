#!/usr/bin/python3
"""adapter_ref.py - compatd's adapter fits, computed again with numpy from
SPEC.md section 3.7 alone (nothing from compatd).

    /usr/bin/python3 adapter_ref.py DIR KIND DIM_FROM DIM_TO METRIC_FROM METRIC_TO RIDGE

DIR holds what tests/test_adapter.c writes: a.f32 (n x DIM_FROM float32,
row-major: the `from` vectors), b.f32 (n x DIM_TO: the matching `to`
vectors) and q.f32 (queries, DIM_FROM floats each).  Writes w.f64
(DIM_FROM x DIM_TO), bias.f64 (affine only) and mapped.f64 (the queries
mapped), and prints "mean_cosine X" and "cv_mean_cosine X" (nan when
absent).

Definitions.  Cosine rows are L2-normalised first.  orthogonal: W = U Vt
with U S Vt = svd(A^T B).  linear: the least-squares solution of
[A; sqrt(ridge) I] W = [B; 0].  affine: the same with a column of ones
appended to A and no penalty row for it; the last row of the solution is
the bias.  A query maps to qW + b, normalised when `to` is cosine.
mean_cosine: mean over pairs of cos(mapped a, b).  cv_mean_cosine: fold f
holds pairs [f*n//5, (f+1)*n//5); each pair is mapped by the fit on the
other folds; nan under 10 pairs or when a training set has fewer pairs
than the kind needs (orthogonal 2, ridge > 0 1, otherwise DIM_FROM, +1
for affine).
"""
import math
import os
import sys

import numpy as np


def normalised(x, metric):
    if metric != "cosine":
        return x
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def fit(kind, a, b, ridge):
    """(W, bias or None) in float64 from normalised pairs."""
    if kind == "orthogonal":
        u, _, vt = np.linalg.svd(a.T @ b)
        return u @ vt, None
    d = a.shape[1]
    if kind == "affine":
        a = np.hstack([a, np.ones((a.shape[0], 1))])
    pen = math.sqrt(ridge) * np.eye(a.shape[1])
    if kind == "affine":
        pen = pen[:d]           # no penalty row for the bias column
    lhs = np.vstack([a, pen])
    rhs = np.vstack([b, np.zeros((pen.shape[0], b.shape[1]))])
    sol = np.linalg.lstsq(lhs, rhs, rcond=None)[0]
    if kind == "affine":
        return sol[:d], sol[d]
    return sol, None


def apply(w, bias, q, metric_from, metric_to):
    m = normalised(q, metric_from) @ w
    if bias is not None:
        m = m + bias
    return normalised(m, metric_to)


def cosines(x, y):
    return np.sum(x * y, axis=1) / (np.linalg.norm(x, axis=1) * np.linalg.norm(y, axis=1))


def min_pairs(kind, dim_from, ridge):
    if kind == "orthogonal":
        return 2
    if ridge > 0:
        return 1
    return dim_from + (1 if kind == "affine" else 0)


def main():
    d, kind = sys.argv[1], sys.argv[2]
    df, dt = int(sys.argv[3]), int(sys.argv[4])
    mf, mt, ridge = sys.argv[5], sys.argv[6], float(sys.argv[7])
    a_raw = np.fromfile(os.path.join(d, "a.f32"), dtype="<f4").reshape(-1, df).astype(np.float64)
    b_raw = np.fromfile(os.path.join(d, "b.f32"), dtype="<f4").reshape(-1, dt).astype(np.float64)
    q = np.fromfile(os.path.join(d, "q.f32"), dtype="<f4").reshape(-1, df).astype(np.float64)
    a, b = normalised(a_raw, mf), normalised(b_raw, mt)
    n = a.shape[0]

    w, bias = fit(kind, a, b, ridge)
    w.astype("<f8").tofile(os.path.join(d, "w.f64"))
    if bias is not None:
        bias.astype("<f8").tofile(os.path.join(d, "bias.f64"))
    apply(w, bias, q, mf, mt).astype("<f8").tofile(os.path.join(d, "mapped.f64"))
    print("mean_cosine %.12f" % np.mean(cosines(apply(w, bias, a_raw, mf, mt), b_raw)))

    cv = float("nan")
    if n >= 10:
        total = 0.0
        for f in range(5):
            lo, hi = f * n // 5, (f + 1) * n // 5
            keep = np.r_[0:lo, hi:n]
            if len(keep) < min_pairs(kind, df, ridge):
                total = float("nan")
                break
            wf, bf = fit(kind, a[keep], b[keep], ridge)
            total += np.sum(cosines(apply(wf, bf, a_raw[lo:hi], mf, mt), b_raw[lo:hi]))
        cv = total / n
    print("cv_mean_cosine %.12f" % cv)


if __name__ == "__main__":
    main()
