-- 007_adapter_routes.sql - adapters in use (SPEC.md §3.7): the routes a
-- gallery sends a query model through, and the adapter an evaluation
-- mapped its probes with.
--
-- Invariants:
--   * A gallery routes a query model through at most one adapter, whose
--     from model is that query model (checked when the route is set).
--   * An adapter a route names cannot be deleted (the store refuses
--     while a gallery_adapters row names it; the key below backs that).
--   * evaluations.adapter_id is the adapter the probes were mapped with,
--     NULL for raw probes.  It is kept, with the adapter's name in
--     evaluations.adapter, when the adapter is deleted (AUTOINCREMENT:
--     ids are never reused), so that the report still names it and the
--     gate never takes an evaluation of a deleted adapter for one of a
--     new adapter of the same name.

CREATE TABLE gallery_adapters (
    gallery_id  INTEGER NOT NULL REFERENCES galleries (id) ON DELETE CASCADE,
    model_id    INTEGER NOT NULL REFERENCES models (id),
    adapter_id  INTEGER NOT NULL REFERENCES adapters (id),
    PRIMARY KEY (gallery_id, model_id)
);

ALTER TABLE evaluations ADD COLUMN adapter_id INTEGER;
ALTER TABLE evaluations ADD COLUMN adapter TEXT;

CREATE INDEX evaluations_pair
    ON evaluations (gallery_id, query_model_id, adapter_id, id);
