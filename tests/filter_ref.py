"""filter_ref.py - the reference of test_http_filter: filtered top-k by
brute force in numpy, with its own reading of the filter language
(SPEC.md 3.9), written apart from compatd's.

usage: filter_ref.py DIR N DIM NQ K

DIR holds, written by the test:
  x.f32        N x DIM float32, each item's gallery-model vector
  x2.f32       N x DIM float32, each item's second-model vector
  has2.u8      N bytes: 1 when the item has its second-model vector
  alive.u8     N bytes: 1 when the item is in the gallery
  items.jsonl  N lines {"label": str or null, "metadata": object or null}
  q.f32        NQ x DIM float32 queries
  filters.jsonl one filter per line
and gets, per filter f (in order), for the gallery model ("base") and for
a hot-refresh query of the second model ("hot": items with a second-model
vector in that space, the others in the gallery model's):
  base.i64 / hot.i64   F x NQ x K item numbers, best first, -1 padded
  base.f32 / hot.f32   their cosine scores
  matched.i64          F: how many live items each filter matches
Ranking: cosine (vectors normalised), higher first, ties by item number.
"""
import json
import sys

import numpy as np


def field_value(item, field):
    """(present, value) of field "label" or "metadata.<name>"."""
    if field == "label":
        return item["label"] is not None, item["label"]
    name = field[len("metadata."):]
    meta = item["metadata"] or {}
    return name in meta, meta.get(name)


def same(a, b):
    """Equality as the language means it: same JSON type and value."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return float(a) == float(b)
    return type(a) is type(b) and a == b


def label_value(v):
    return str(v) if isinstance(v, int) and not isinstance(v, bool) else v


def holds(item, flt):
    for key, val in flt.items():
        if key == "and":
            ok = all(holds(item, f) for f in val)
        elif key == "or":
            ok = any(holds(item, f) for f in val)
        elif key == "not":
            ok = not holds(item, val)
        elif key == "exists":
            present, v = field_value(item, val)
            ok = present and v is not None
        else:
            present, v = field_value(item, key)
            ops = val if isinstance(val, dict) else {"eq": val}
            ok = present
            for op, arg in ops.items():
                if not ok:
                    break
                if key == "label":
                    arg = [label_value(a) for a in arg] if op == "in" else label_value(arg)
                number = isinstance(v, (int, float)) and not isinstance(v, bool)
                if op == "eq":
                    ok = same(v, arg)
                elif op == "in":
                    ok = any(same(v, a) for a in arg)
                elif op == "gt":
                    ok = number and v > arg
                elif op == "gte":
                    ok = number and v >= arg
                elif op == "lt":
                    ok = number and v < arg
                elif op == "lte":
                    ok = number and v <= arg
                else:
                    raise ValueError(op)
        if not ok:
            return False
    return True


def normalise(a):
    return a / np.linalg.norm(a, axis=1, keepdims=True)


def top_k(space, mask, q, k):
    ids = np.full((q.shape[0], k), -1, dtype=np.int64)
    sc = np.zeros((q.shape[0], k), dtype=np.float32)
    rows = np.nonzero(mask)[0]
    if rows.size == 0:
        return ids, sc
    s = q.astype(np.float64) @ space[rows].astype(np.float64).T
    for i in range(q.shape[0]):
        order = np.lexsort((rows, -s[i]))[:k]
        ids[i, :order.size] = rows[order]
        sc[i, :order.size] = s[i, order]
    return ids, sc


def main():
    d, n, dim, nq, k = sys.argv[1], *map(int, sys.argv[2:6])
    x = normalise(np.fromfile(f"{d}/x.f32", dtype=np.float32).reshape(n, dim))
    x2 = normalise(np.fromfile(f"{d}/x2.f32", dtype=np.float32).reshape(n, dim))
    has2 = np.fromfile(f"{d}/has2.u8", dtype=np.uint8).astype(bool)
    alive = np.fromfile(f"{d}/alive.u8", dtype=np.uint8).astype(bool)
    q = normalise(np.fromfile(f"{d}/q.f32", dtype=np.float32).reshape(nq, dim))
    with open(f"{d}/items.jsonl") as f:
        items = [json.loads(line) for line in f]
    with open(f"{d}/filters.jsonl") as f:
        filters = [json.loads(line) for line in f]
    hot = np.where(has2[:, None], x2, x)
    out = {"base": ([], []), "hot": ([], [])}
    matched = []
    for flt in filters:
        mask = alive & np.array([holds(it, flt) for it in items])
        matched.append(int(mask.sum()))
        for name, space in (("base", x), ("hot", hot)):
            ids, sc = top_k(space, mask, q, k)
            out[name][0].append(ids)
            out[name][1].append(sc)
    for name, (ids, sc) in out.items():
        np.array(ids, dtype=np.int64).tofile(f"{d}/{name}.i64")
        np.array(sc, dtype=np.float32).tofile(f"{d}/{name}.f32")
    np.array(matched, dtype=np.int64).tofile(f"{d}/matched.i64")


if __name__ == "__main__":
    main()
