-- 005_eval_report.sql - the compatibility report kept as rows
-- (concepts.md §4), no longer as the text the server rendered.
--
-- An evaluation's report is its evaluations row (the scalars; 002's
-- summary columns stay, they are what the gate and the matrix read) and
-- its rows in three tables:
--   * evaluation_metrics: one value per (ranking, metric), k >= 1 for
--     top-k and 0 for map.  The cross ranking always has every k of the
--     evaluation (its ks are the cross ranking's k >= 1); baseline,
--     paragon and update_gain have the same keys, or no row at all when
--     the report has none of them (no baseline, no paragon).
--   * evaluation_labels: the by-label breakdown, in the report's order.
--   * evaluation_flip_ids: the negatively flipped probes, in probe order.
-- A value that is not defined is NULL (NaN in memory, null in JSON).
--
-- Reports stored by 002 as JSON text are converted here, so an older
-- data directory keeps them; a text that is not JSON converts to no
-- rows, and reading that evaluation fails as reading its text did.
--
-- Invariants:
--   * An evaluation's rows go with it (ON DELETE CASCADE; the store
--     deletes evaluations with their gallery).
--   * primary_k is one of the evaluation's ks, or 0 for map.
--   * negative_flips, positive_flips, nfr, nfi and pfr are NULL exactly
--     when there is no baseline (nfi also when no probe is wrong).

ALTER TABLE evaluations ADD COLUMN primary_k INTEGER NOT NULL DEFAULT 1
    CHECK (primary_k >= 0);
ALTER TABLE evaluations ADD COLUMN skipped INTEGER NOT NULL DEFAULT 0;
ALTER TABLE evaluations ADD COLUMN gallery_items INTEGER NOT NULL DEFAULT 0;
ALTER TABLE evaluations ADD COLUMN negative_flips INTEGER;
ALTER TABLE evaluations ADD COLUMN positive_flips INTEGER;
ALTER TABLE evaluations ADD COLUMN nfi REAL;
ALTER TABLE evaluations ADD COLUMN pfr REAL;

CREATE TABLE evaluation_metrics (
    evaluation_id INTEGER NOT NULL REFERENCES evaluations (id) ON DELETE CASCADE,
    ranking       TEXT NOT NULL
                  CHECK (ranking IN ('cross', 'baseline', 'paragon', 'update_gain')),
    k             INTEGER NOT NULL CHECK (k >= 0),      -- top-k; 0: map
    value         REAL,
    PRIMARY KEY (evaluation_id, ranking, k)
);

CREATE TABLE evaluation_labels (
    evaluation_id  INTEGER NOT NULL REFERENCES evaluations (id) ON DELETE CASCADE,
    position       INTEGER NOT NULL,
    label          TEXT NOT NULL,
    queries        INTEGER NOT NULL,
    cross_top1     REAL,
    baseline_top1  REAL,
    negative_flips INTEGER NOT NULL,
    positive_flips INTEGER NOT NULL,
    PRIMARY KEY (evaluation_id, position)
);

CREATE TABLE evaluation_flip_ids (
    evaluation_id INTEGER NOT NULL REFERENCES evaluations (id) ON DELETE CASCADE,
    position      INTEGER NOT NULL,
    probe_id      TEXT NOT NULL,
    PRIMARY KEY (evaluation_id, position)
);

-- The conversion of 002's texts ("top<k>" keys and primary_metric as
-- cd_eval_metric_name spells them).  A text that is not JSON reads as
-- '{}': its evaluation keeps its row and gets no report rows.
UPDATE evaluations SET
    primary_k = CASE json_extract(report, '$.primary_metric')
                WHEN 'map' THEN 0
                ELSE CAST(substr(json_extract(report, '$.primary_metric'), 4) AS INTEGER)
                END,
    skipped = json_extract(report, '$.skipped'),
    gallery_items = json_extract(report, '$.gallery_items'),
    negative_flips = json_extract(report, '$.flips.negative'),
    positive_flips = json_extract(report, '$.flips.positive'),
    nfi = json_extract(report, '$.flips.nfi'),
    pfr = json_extract(report, '$.flips.pfr')
WHERE json_valid(report);

INSERT INTO evaluation_metrics (evaluation_id, ranking, k, value)
SELECT e.id, r.ranking,
       CASE m.key WHEN 'map' THEN 0 ELSE CAST(substr(m.key, 4) AS INTEGER) END,
       m.value
FROM evaluations e
CROSS JOIN (SELECT 'cross' AS ranking UNION ALL SELECT 'baseline'
            UNION ALL SELECT 'paragon' UNION ALL SELECT 'update_gain') r
CROSS JOIN json_each(iif(json_valid(e.report), e.report, '{}'), '$.' || r.ranking) m
WHERE m.key IS NOT NULL;            -- a null ranking (no baseline): no rows

INSERT INTO evaluation_labels (evaluation_id, position, label, queries,
                               cross_top1, baseline_top1, negative_flips,
                               positive_flips)
SELECT e.id, l.key, json_extract(l.value, '$.label'),
       json_extract(l.value, '$.queries'), json_extract(l.value, '$.cross_top1'),
       json_extract(l.value, '$.baseline_top1'),
       json_extract(l.value, '$.negative_flips'),
       json_extract(l.value, '$.positive_flips')
FROM evaluations e
CROSS JOIN json_each(iif(json_valid(e.report), e.report, '{}'), '$.by_label') l;

INSERT INTO evaluation_flip_ids (evaluation_id, position, probe_id)
SELECT e.id, f.key, f.value
FROM evaluations e
CROSS JOIN json_each(iif(json_valid(e.report), e.report, '{}'),
                     '$.negative_flip_ids') f;

ALTER TABLE evaluations DROP COLUMN report;
