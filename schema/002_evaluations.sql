-- 002_evaluations.sql - stored compatibility reports (concepts.md §4).
--
-- One row per evaluation.  The columns are what the verified-model gate,
-- the gallery listing and the compatibility matrix read; `report` is the
-- whole report document as the server rendered it (opaque to the store,
-- like items.metadata), returned as it was by GET /v1/evaluations/{id}.
-- 005_eval_report.sql turns it into rows.
--
-- Invariants:
--   * id is AUTOINCREMENT: a larger id is a later evaluation, so "latest
--     for (gallery, query model)" is the largest id of the pair.
--   * A gallery's evaluations go with it (store.c deletes them in the
--     gallery's delete transaction; the foreign key says the same).
--   * compatible is 1 (passed), 0 (failed) or NULL (no baseline: no
--     verdict); the REAL columns are NULL where the report has no value.

CREATE TABLE evaluations (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    gallery_id       INTEGER NOT NULL REFERENCES galleries (id) ON DELETE CASCADE,
    query_model_id   INTEGER NOT NULL REFERENCES models (id),
    gallery_model_id INTEGER NOT NULL REFERENCES models (id),
    created_at       TEXT NOT NULL,                 -- RFC 3339 UTC
    compatible       INTEGER CHECK (compatible IN (0, 1)),
    criterion        TEXT NOT NULL,
    queries          INTEGER NOT NULL,
    cross_top1       REAL,
    baseline_top1    REAL,
    cross_map        REAL,
    baseline_map     REAL,
    nfr              REAL,
    report           TEXT NOT NULL
);

CREATE INDEX evaluations_by_pair
    ON evaluations (gallery_id, query_model_id, id);
