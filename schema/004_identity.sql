-- 004_identity.sql - the store's identity (issue: snapshots bound to it).
--
-- A random id made once, with the database or when an older one is
-- migrated, and never changed.  Index snapshots record it: a snapshot
-- whose id differs was written for another data directory and is rebuilt
-- from the store instead of served.  A copy of the database (backup)
-- keeps the id, so its snapshots stay usable; their content checksum
-- tells a diverged history apart.
--
-- Invariant: exactly one row.

CREATE TABLE store_identity (
    one  INTEGER PRIMARY KEY CHECK (one = 1),
    id   TEXT NOT NULL CHECK (length(id) = 32)
);

INSERT INTO store_identity (one, id) VALUES (1, lower(hex(randomblob(16))));
