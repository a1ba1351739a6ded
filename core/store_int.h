/*
 * store_int.h - what the store's files share and nothing else sees: the
 * handle's fields, the connections, the statement ids and the helpers
 * with the cd__ prefix.  Included only by core/store*.c and not
 * installed; the public contract is store.h.
 *
 * The store is split by concern:
 *   store.c          opening and migrations, the connection pool, the
 *                    statement table and the helpers declared below.
 *                    Every SQL statement the store runs is in that one
 *                    table, stmt_sql in store.c, named by stmt_id here.
 *   store_catalog.c  query policies, models, galleries
 *   store_items.c    items, item refs, the change sequence (scans,
 *                    tombstones, counts), the pairs adapters fit on
 *   store_eval.c     evaluations and the items they read
 *   store_keys.c     API keys and scopes
 *   store_adapters.c adapters (their rows and weights)
 *   store_lifecycle.c the end of an upgrade: promotion, retirement and
 *                    giving the freed pages back
 *   store_backup.c   the online backup (its own connection, by path)
 *
 * Invariants (schema/001_init.sql states them for the tables):
 *   - items and galleries are AUTOINCREMENT, so an item rowid or a
 *     gallery id that was ever handed out is never handed out again (an
 *     index built before a delete can never mistake a new item for it).
 *   - galleries.item_count is the number of the gallery's items; every
 *     write that adds or removes items updates it in its transaction.
 *   - items and embeddings have no foreign keys (a parent look-up per
 *     item was a b-tree search each), so the store keeps them: an upsert
 *     checks its gallery and model once per batch, and the deletes of an
 *     item or a gallery delete its embeddings (and items) themselves, in
 *     the same transaction.  Models are never deleted.
 *   - vectors are stored as the host's float32 bytes, which are
 *     little-endian on every host this builds for (checked below).
 *
 * How a call uses a connection: a write takes the writer
 * (cd__writer_acquire) and runs as one transaction, cd__tx_begin(c, true)
 * to cd__tx_end, which rolls back when the call fails, so a failed call
 * changes nothing; a read takes a reader (cd__reader_acquire), inside
 * cd__tx_begin(c, false) when what it reads must be one state.  Each
 * acquire ends with cd__conn_release, and each statement from
 * cd__conn_stmt is handed back with cd__stmt_done.
 */
#ifndef CD_STORE_INT_H
#define CD_STORE_INT_H

#include <pthread.h>
#include <sqlite3.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "store.h"

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "the store keeps vectors as host float32 bytes: little-endian only"
#endif

#define STORE_READERS 4
#define STORE_BUSY_TIMEOUT_MS 5000
#define STORE_APPLICATION_ID 0x636d7064 /* "cmpd" */

/* Every statement the store runs, prepared once per connection; the SQL
 * of each is stmt_sql[id] in store.c. */
typedef enum stmt_id {
    ST_BEGIN,
    ST_BEGIN_IMMEDIATE,
    ST_COMMIT,
    ST_ROLLBACK,
    ST_MODEL_BY_NAME,
    ST_MODEL_BY_ID,
    ST_MODEL_LIST,
    ST_MODEL_LOOKUP,
    ST_MODEL_DIM,
    ST_MODEL_INSERT,
    ST_GALLERY_BY_NAME,
    ST_GALLERY_BY_ID,
    ST_GALLERY_LIST,
    ST_GALLERY_INSERT,
    ST_GALLERY_SET_POLICY,
    ST_GALLERY_SEQ,
    ST_GALLERY_NEXT_SEQ,
    ST_GALLERY_ADD_COUNT,
    ST_GALLERY_DELETE_EMBEDDINGS,
    ST_GALLERY_DELETE_TOMBSTONES,
    ST_GALLERY_DELETE_ITEMS,
    ST_GALLERY_DELETE,
    ST_GALLERY_EMBEDDINGS,
    ST_GALLERY_MODELS,
    ST_ITEM_UPSERT,
    ST_ITEM_ROWID,
    ST_EMBEDDING_INSERT,
    ST_EMBEDDING_UPDATE,
    ST_ITEM_BY_ID,
    ST_ITEM_EMBEDDINGS,
    ST_ITEM_DELETE_EMBEDDINGS,
    ST_ITEM_DELETE,
    ST_TOMBSTONE_INSERT,
    ST_ITEM_REF,
    ST_ITEM_PAGE,
    ST_SCAN,
    ST_TOMBSTONES,
    ST_TOMBSTONES_PRUNE,
    ST_COUNT_VECTORS,
    ST_SCAN_ROWIDS,
    ST_GALLERY_DELETE_EVALUATIONS,
    ST_EVAL_INSERT,
    ST_EVAL_METRIC_INSERT,
    ST_EVAL_LABEL_INSERT,
    ST_EVAL_FLIP_INSERT,
    ST_EVAL_GET,
    ST_EVAL_LIST,
    ST_EVAL_LATEST,
    ST_EVAL_BY_ADAPTER,
    ST_EVAL_METRICS,
    ST_EVAL_LABELS,
    ST_EVAL_FLIP_IDS,
    ST_EVAL_ITEMS,
    ST_KEY_INSERT,
    ST_KEY_BY_NAME,
    ST_KEY_BY_ID,
    ST_KEY_BY_HASH,
    ST_KEY_LIST,
    ST_KEY_REVOKE,
    ST_KEY_ANY,
    ST_ADAPTER_INSERT,
    ST_ADAPTER_BY_NAME,
    ST_ADAPTER_BY_ID,
    ST_ADAPTER_LIST,
    ST_ADAPTER_WEIGHTS,
    ST_ADAPTER_DELETE,
    ST_PAIRED_VECTORS,
    ST_GALLERY_MISSING,
    ST_GALLERY_SET_MODEL,
    ST_GALLERY_MODEL_ID,
    ST_ROUTES_USING,
    ST_RETIRE_EMBEDDINGS,
    ST_ROUTE_LIST,
    ST_ROUTE_SET,
    ST_ROUTE_DELETE,
    ST_ROUTE_OF_ADAPTER,
    ST_EVAL_LATEST_PAIR,
    ST_ITEM_FIELDS_ALL,
    ST_ITEM_FIELDS_ONE,
    ST_EMBEDDING_ONE,
    ST_COUNT
} stmt_id;

/* One SQLite connection; used by one thread at a time (holding lock). */
typedef struct cd_conn {
    pthread_mutex_t lock;
    bool lock_ready;                /* lock was initialised */
    sqlite3 *db;
    sqlite3_stmt *stmt[ST_COUNT];   /* prepared on first use */
} cd_conn;

struct cd_store {
    cd_conn writer;                     /* every write goes through it */
    cd_conn readers[STORE_READERS];     /* read-only, for concurrent reads */
    atomic_uint next_reader;            /* where the next reader search starts */
    int schema_version;
};

/* --- values and errors (store.c) ----------------------------------------- */

/* The cd_err of an SQLite result code, extended codes included. */
cd_err cd__store_code_of(int rc);

/* Fails with the code matching an SQLite result and SQLite's message. */
cd_err cd__db_fail(cd_error *err, cd_conn *c, int rc);

/* The current time, UTC, as "YYYY-MM-DDTHH:MM:SSZ". */
void cd__now_rfc3339(char out[32]);

/* Copies column col into dst[cap]; false when it does not fit (only a
 * damaged or foreign database holds such a value). */
bool cd__copy_column(sqlite3_stmt *s, int col, char *dst, size_t cap);

/* A malloc'd copy of column col (the caller frees it), NULL in *out when
 * the column is NULL. */
cd_err cd__dup_column(sqlite3_stmt *s, int col, char **out, cd_error *err);

/* True when the NUL-terminated s is UTF-8 of at most max bytes (only
 * max + 1 bytes are looked at); *len gets its length. */
bool cd__text_ok(const char *s, size_t max, size_t *len);

/* Sets SQLite's process-wide options once, before the process's first
 * connection; whatever opens a connection calls it first. */
void cd__sqlite_setup(void);

/*
 * Checks the open database db (path names it in messages) into *r, inside
 * one read transaction; quick: PRAGMA quick_check alone (cd_store_quick_check).  Returns CD_OK when it is healthy, CD_ECORRUPT
 * (message: path and the first problem) when r lists problems, CD_EIO
 * when it cannot be read at all.  (store_check.c)
 */
cd_err cd__store_check_db(sqlite3 *db, const char *path, bool quick,
                         cd_store_check_report *r, cd_error *err);

/* --- connections and statements (store.c) -------------------------------- */

/* The write connection, once no other thread holds it. */
cd_conn *cd__writer_acquire(cd_store *st);

/* A free read connection if there is one, else waits for one. */
cd_conn *cd__reader_acquire(cd_store *st);

/* Hands back a connection from cd__writer_acquire or cd__reader_acquire. */
void cd__conn_release(cd_conn *c);

/* The connection's statement id, prepared when first asked for; c keeps
 * it, and cd__stmt_done hands it back after each use. */
cd_err cd__conn_stmt(cd_conn *c, stmt_id id, sqlite3_stmt **out,
                     cd_error *err);

/* Makes a statement from cd__conn_stmt (or NULL) ready for its next use. */
void cd__stmt_done(sqlite3_stmt *s);

/*
 * Runs statement id with nargs (0..2) integer parameters a, b.  When it
 * yields a row, *found (may be NULL) is true and *col0 (may be NULL) gets
 * the row's first column; further rows are ignored.
 */
cd_err cd__run_i64(cd_conn *c, stmt_id id, int nargs, int64_t a,
                   int64_t b, bool *found, int64_t *col0, cd_error *err);

/* Fills the struct at elem from the current row of s. */
typedef cd_err (*cd__row_fill_fn)(sqlite3_stmt *s, void *elem, cd_error *err);

/*
 * Runs statement id, a look-up of one row by ?1, on c and fills *out from
 * its row with fill.  ?1 is name when that is not NULL, else hash (an API
 * key's CD_KEY_HASH_SIZE bytes) when that is not NULL, else row_id.  When
 * there is no row, returns CD_ENOTFOUND and leaves err and *out alone:
 * the caller knows what it looked for and words the message.
 */
cd_err cd__read_row(cd_conn *c, stmt_id id, const char *name,
                    const unsigned char *hash, int64_t row_id,
                    cd__row_fill_fn fill, void *out, cd_error *err);

/*
 * Reads every row of statement id (no parameters, or one integer a when
 * nargs is 1) on a read connection into a malloc'd array of elements of
 * size `size`, each filled by `fill`.  The caller frees *out; on failure
 * it is NULL and *n is 0.
 */
cd_err cd__list_rows(cd_store *st, stmt_id id, int nargs, int64_t a,
                     size_t size, cd__row_fill_fn fill, void **out, size_t *n,
                     cd_error *err);

/*
 * Steps s, a bound statement that yields no row (an INSERT or UPDATE),
 * and makes it ready for its next use.  When noun is not NULL, breaking a
 * UNIQUE constraint fails CD_EEXISTS, "<noun> <name> already exists";
 * any other failure is SQLite's.
 */
cd_err cd__step_write(cd_conn *c, sqlite3_stmt *s, const char *noun,
                      const char *name, cd_error *err);

/* Begins a transaction on c: BEGIN IMMEDIATE when write, else BEGIN. */
cd_err cd__tx_begin(cd_conn *c, bool write, cd_error *err);

/*
 * Ends the transaction: commits when rc is CD_OK, else rolls back.
 * Returns rc, or the commit's failure (after rolling back).
 */
cd_err cd__tx_end(cd_conn *c, cd_err rc, cd_error *err);

#endif
