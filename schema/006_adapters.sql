-- 006_adapters.sql - adapters (SPEC.md §3.7): linear maps from one
-- model's space into another's, fitted by compatd from paired embeddings
-- and kept as their weights.
--
-- Invariants:
--   * An adapter is immutable: written once, by one INSERT, then only
--     read or deleted.
--   * weights is 4 x dim_from x dim_to bytes, float32 little-endian,
--     row-major (dim_from rows); bias is 4 x dim_to bytes for affine and
--     NULL otherwise (compatd check tests the first).
--   * dim_from and dim_to are the dims of from_model_id and to_model_id
--     (models are never deleted, so the link cannot dangle).
--   * cv_mean_cosine is NULL when there was none (fewer than 10 pairs).

CREATE TABLE adapters (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    name            TEXT NOT NULL UNIQUE,
    from_model_id   INTEGER NOT NULL REFERENCES models (id),
    to_model_id     INTEGER NOT NULL REFERENCES models (id),
    kind            TEXT NOT NULL
                    CHECK (kind IN ('orthogonal', 'linear', 'affine')),
    dim_from        INTEGER NOT NULL CHECK (dim_from >= 1),
    dim_to          INTEGER NOT NULL CHECK (dim_to >= 1),
    ridge           REAL NOT NULL CHECK (ridge >= 0),
    pairs           INTEGER NOT NULL CHECK (pairs >= 1),
    mean_cosine     REAL NOT NULL,
    cv_mean_cosine  REAL,
    weights         BLOB NOT NULL,
    bias            BLOB,
    created_at      TEXT NOT NULL
);
