-- 008_eval_view.sql - the gallery view of an evaluation (SPEC.md §3.8).
--
-- gallery_view is how the evaluation ranked the gallery: 'gallery_model'
-- (every item in the gallery model's space, as every evaluation before
-- this migration did) or 'mixed' (hot refresh: items with a query-model
-- embedding in that space, the others in the gallery model's).  coverage
-- is the share of the evaluation gallery that had a query-model embedding
-- when a mixed evaluation ran, in [0, 1]; NULL for a gallery_model view.
--
-- Invariants:
--   * coverage IS NULL exactly when gallery_view = 'gallery_model'.

ALTER TABLE evaluations ADD COLUMN gallery_view TEXT NOT NULL
    DEFAULT 'gallery_model' CHECK (gallery_view IN ('gallery_model', 'mixed'));
ALTER TABLE evaluations ADD COLUMN coverage REAL
    CHECK (coverage IS NULL OR (coverage >= 0 AND coverage <= 1));
