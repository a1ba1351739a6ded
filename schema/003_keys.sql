-- 003_keys.sql - API keys (concepts.md §5: scopes read, write, admin).
--
-- A key's text is shown once, when it is made; only its SHA-256 is kept,
-- with its first 8 characters (`prefix`) so that a listing can tell keys
-- apart.  A request's key is looked up by its hash (the UNIQUE index).
--
-- Invariants:
--   * Rows are never deleted: revoking sets revoked_at.  So once a data
--     directory has had a key it always asks for one (the daemon caches
--     "some key exists" for good), and a name is never reused.
--   * scope is admin, write or read; admin includes write includes read.

CREATE TABLE api_keys (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    name        TEXT NOT NULL UNIQUE,
    scope       TEXT NOT NULL CHECK (scope IN ('read', 'write', 'admin')),
    hash        BLOB NOT NULL UNIQUE CHECK (length(hash) = 32),
    prefix      TEXT NOT NULL,
    created_at  TEXT NOT NULL,                  -- RFC 3339 UTC
    revoked_at  TEXT                            -- RFC 3339 UTC, NULL: active
);
