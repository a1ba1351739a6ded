-- 009_eval_filter.sql - an evaluation of part of a gallery (SPEC.md §3.9):
-- the filter that chose its gallery items.
--
-- Invariants:
--   * evaluations.filter is the request's filter as compact JSON text,
--     NULL when the evaluation ranked the whole gallery.  It is a record
--     of what was asked, kept as given (not re-evaluated later: the items
--     it matched then are the ones the stored numbers describe).

ALTER TABLE evaluations ADD COLUMN filter TEXT;
