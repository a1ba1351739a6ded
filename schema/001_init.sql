-- 001_init.sql - compatd's first schema: models, galleries, items, their
-- embeddings and the tombstones of deleted items.
--
-- Migrations are applied by core/store.c, each file in one transaction
-- with foreign keys off, followed by PRAGMA foreign_key_check; the runner
-- then sets PRAGMA user_version to the file's number.  A migration file
-- therefore holds no BEGIN/COMMIT and no PRAGMA user_version of its own.
-- On a new database store.c sets the page size (16 KiB) before this file
-- runs, since it is fixed once the first table exists.
--
-- Invariants the store keeps:
--   * AUTOINCREMENT on galleries and items: an id is never reused, so an
--     index snapshot named by gallery id, or holding item rowids, can never
--     be mistaken for a later gallery or item.
--   * galleries.item_count = number of the gallery's items, kept in the
--     same transaction as every insert and delete of items.
--   * galleries.seq is the gallery's last change sequence number; each
--     embeddings row carries the seq of the write that last set it and
--     each tombstone the seq of the delete that made it.
--   * embeddings.gallery_id = the gallery of the row's item (denormalised
--     so that an index can be fed from embeddings alone).
--   * vector is dim little-endian float32 values of the row's model.
--   * items and embeddings, the tables every upsert writes, carry no
--     foreign keys: checking a parent row per item cost a b-tree search
--     each.  store.c keeps them instead: an upsert checks its gallery and
--     model once per batch, and deleting an item or a gallery deletes its
--     embeddings (and items) by hand in the same transaction.

CREATE TABLE models (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    name            TEXT NOT NULL UNIQUE,
    dim             INTEGER NOT NULL CHECK (dim BETWEEN 1 AND 4096),
    metric          TEXT NOT NULL CHECK (metric IN ('cosine', 'ip', 'l2')),
    compatible_with INTEGER REFERENCES models (id),   -- NULL when none
    description     TEXT NOT NULL DEFAULT '',
    created_at      TEXT NOT NULL                     -- RFC 3339 UTC
);

CREATE TABLE galleries (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    name         TEXT NOT NULL UNIQUE,
    model_id     INTEGER NOT NULL REFERENCES models (id),
    index_spec   TEXT NOT NULL DEFAULT 'Flat',
    query_policy TEXT NOT NULL DEFAULT 'verified'
                 CHECK (query_policy IN ('verified', 'declared', 'any')),
    seq          INTEGER NOT NULL DEFAULT 0,
    item_count   INTEGER NOT NULL DEFAULT 0,
    created_at   TEXT NOT NULL
);

CREATE TABLE items (
    rowid      INTEGER PRIMARY KEY AUTOINCREMENT,
    gallery_id INTEGER NOT NULL,        -- galleries.id (kept by store.c)
    ext_id     TEXT NOT NULL,           -- the id clients give
    label      TEXT,
    metadata   TEXT,                    -- JSON object text
    UNIQUE (gallery_id, ext_id)
);

-- Keyed the way an index is fed: one gallery's vectors of one model are
-- one range of the primary key, in rowid order.  There is no other index
-- on the table: every upsert writes one b-tree entry per item here.
CREATE TABLE embeddings (
    gallery_id INTEGER NOT NULL,        -- = the item's gallery
    model_id   INTEGER NOT NULL,        -- models.id
    item_rowid INTEGER NOT NULL,        -- items.rowid
    seq        INTEGER NOT NULL,
    vector     BLOB NOT NULL,
    PRIMARY KEY (gallery_id, model_id, item_rowid)
) WITHOUT ROWID;

CREATE TABLE tombstones (
    gallery_id INTEGER NOT NULL REFERENCES galleries (id) ON DELETE CASCADE,
    seq        INTEGER NOT NULL,
    item_rowid INTEGER NOT NULL,
    PRIMARY KEY (gallery_id, seq, item_rowid)
) WITHOUT ROWID;
