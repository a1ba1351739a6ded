# adapter_search_ref.py - the reference for test_http_adapter_search.c: a
# search through an adapter, brute force in numpy (float64), written from
# SPEC.md §3.7 and not from compatd's code.  Every model is cosine.
#
#   adapter_search_ref.py DIR N NQ K DIM_Q DIM_T HAS_BIAS FROM_COSINE
#
# DIR holds float32 files: gallery.f32 (N x DIM_T, the gallery-model
# embeddings), queries.f32 (NQ x DIM_Q), w.f32 (DIM_Q x DIM_T), bias.f32
# (DIM_T, when HAS_BIAS is 1), own.f32 (N x DIM_Q) with own.u8 (N bytes,
# 1 where item i has an embedding of the query model: hot refresh).
# A query q is normalised when FROM_COSINE is 1 (the query model is
# cosine; else l2 and taken as given), mapped as qW (+ bias) and
# normalised again (the to model is cosine);
# item i scores cos(q, own_i) when it has an own embedding, else
# cos(mapped q, gallery_i).  Writes scores.f64 (NQ x N, every item's
# score) and top.f64 (NQ x min(K, N), the best scores, best first).
import sys

import numpy as np


def unit(x):
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def main():
    d = sys.argv[1]
    n, nq, k, dq, dt, has_bias, from_cosine = (int(a) for a in sys.argv[2:9])

    def load(name, shape):
        return np.fromfile(f"{d}/{name}", dtype=np.float32).astype(np.float64).reshape(shape)

    gallery = unit(load("gallery.f32", (n, dt)))
    q = load("queries.f32", (nq, dq))
    if from_cosine:
        q = unit(q)
    w = load("w.f32", (dq, dt))
    mapped = q @ w
    if has_bias:
        mapped = mapped + load("bias.f32", (dt,))
    mapped = unit(mapped)
    own_mask = np.fromfile(f"{d}/own.u8", dtype=np.uint8).astype(bool)
    own = load("own.f32", (n, dq))
    own[~own_mask] = 1.0            # rows never used; keeps unit() finite
    own = unit(own)
    scores = np.where(own_mask[None, :], q @ own.T, mapped @ gallery.T)
    top = -np.sort(-scores, axis=1)[:, :min(k, n)]
    scores.astype(np.float64).tofile(f"{d}/scores.f64")
    np.ascontiguousarray(top).astype(np.float64).tofile(f"{d}/top.f64")


if __name__ == "__main__":
    main()
