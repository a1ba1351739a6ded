/*
 * store_lifecycle.c - the end of an upgrade in the store (SPEC.md §3.8):
 * promoting a fully backfilled model to gallery model, retiring a model's
 * embeddings, and giving the pages a retirement freed back to the file
 * system.
 *
 * Promotion and retirement are one transaction each, checked inside it,
 * so a kill at any moment leaves either the old state or the new one and
 * a refused call changes nothing.
 *
 * Reclaiming space: databases made by this compatd have auto_vacuum =
 * INCREMENTAL (set in store.c before the first table), so freed pages are
 * given back by PRAGMA incremental_vacuum, which moves only the pages
 * past the new end of the file.  A database made before has auto_vacuum
 * NONE, which only a VACUUM can change: the first reclaim on it converts
 * it (one rewrite of the file, needing its size again in free disk for
 * the time it runs), every later one is incremental.  Doing it at the
 * first retirement, which an operator asks for and which frees the most,
 * rather than at every start of an old data directory, keeps the cost
 * where it is expected.  A truncating checkpoint then moves the result
 * from the WAL into the file, so the file shrinks now and not at some
 * later checkpoint.
 */
#include "store_int.h"

#include <stdio.h>
#include <sys/stat.h>

cd_err cd_store_gallery_promote(cd_store *st, int64_t gallery_id,
                                int64_t model_id, int64_t *missing,
                                cd_error *err)
{
    if (missing)
        *missing = 0;
    if (!st)
        return cd__fail(err, CD_EINVAL, "cd_store_gallery_promote: NULL store");
    cd_conn *c = cd__writer_acquire(st);
    bool found;
    int64_t lacking = 0;
    cd_err rc = cd__tx_begin(c, true, err);
    if (rc != CD_OK)
        goto unlock;
    rc = cd__run_i64(c, ST_GALLERY_MODEL_ID, 1, gallery_id, 0, &found, NULL, err);
    if (rc == CD_OK && !found)
        rc = cd__fail(err, CD_ENOTFOUND, "gallery %lld not found", (long long)gallery_id);
    if (rc == CD_OK)
        rc = cd__run_i64(c, ST_MODEL_DIM, 1, model_id, 0, &found, NULL, err);
    if (rc == CD_OK && !found)
        rc = cd__fail(err, CD_ENOTFOUND, "model %lld not found", (long long)model_id);
    if (rc == CD_OK)
        rc = cd__run_i64(c, ST_GALLERY_MISSING, 2, gallery_id, model_id, NULL, &lacking, err);
    if (rc == CD_OK && lacking > 0)
        rc = cd__fail(err, CD_ECONFLICT, "%lld items have no embedding of model %lld",
                      (long long)lacking, (long long)model_id);
    if (rc == CD_OK)
        rc = cd__run_i64(c, ST_GALLERY_SET_MODEL, 2, gallery_id, model_id, NULL, NULL, err);
    rc = cd__tx_end(c, rc, err);
unlock:
    cd__conn_release(c);
    if (missing && rc == CD_ECONFLICT)
        *missing = lacking;
    return rc;
}

cd_err cd_store_embeddings_retire(cd_store *st, int64_t gallery_id,
                                  int64_t model_id, int64_t *deleted,
                                  cd_error *err)
{
    if (deleted)
        *deleted = 0;
    if (!st)
        return cd__fail(err, CD_EINVAL, "cd_store_embeddings_retire: NULL store");
    cd_conn *c = cd__writer_acquire(st);
    bool found;
    int64_t gallery_model = 0, routes = 0, n = 0;
    cd_err rc = cd__tx_begin(c, true, err);
    if (rc != CD_OK)
        goto unlock;
    rc = cd__run_i64(c, ST_GALLERY_MODEL_ID, 1, gallery_id, 0, &found, &gallery_model, err);
    if (rc == CD_OK && !found)
        rc = cd__fail(err, CD_ENOTFOUND, "gallery %lld not found", (long long)gallery_id);
    if (rc == CD_OK && gallery_model == model_id)
        rc = cd__fail(err, CD_ECONFLICT, "model %lld is the gallery model", (long long)model_id);
    if (rc == CD_OK)
        rc = cd__run_i64(c, ST_ROUTES_USING, 2, gallery_id, model_id, NULL, &routes, err);
    if (rc == CD_OK && routes > 0)
        rc = cd__fail(err, CD_ECONFLICT, "%lld adapter route%s of the gallery need%s model %lld",
                      (long long)routes, routes == 1 ? "" : "s", routes == 1 ? "s" : "",
                      (long long)model_id);
    if (rc == CD_OK) {
        rc = cd__run_i64(c, ST_RETIRE_EMBEDDINGS, 2, gallery_id, model_id, NULL, NULL, err);
        n = sqlite3_changes64(c->db);
    }
    rc = cd__tx_end(c, rc, err);
unlock:
    cd__conn_release(c);
    if (deleted && rc == CD_OK)
        *deleted = n;
    return rc;
}

/* Runs sql (PRAGMAs, VACUUM) on c outside any transaction. */
static cd_err run_plain(cd_conn *c, const char *sql, cd_error *err)
{
    char *msg = NULL;
    int rc = sqlite3_exec(c->db, sql, NULL, NULL, &msg);
    if (rc == SQLITE_OK)
        return CD_OK;
    cd_err code = cd__fail(err, cd__store_code_of(rc), "%s: %s", sql,
                           msg ? msg : sqlite3_errstr(rc));
    sqlite3_free(msg);
    return code;
}

/* The bytes of db_path and its WAL. */
static int64_t file_bytes(const char *db_path)
{
    struct stat sb;
    int64_t n = stat(db_path, &sb) == 0 ? (int64_t)sb.st_size : 0;
    char wal[4096];
    if (snprintf(wal, sizeof wal, "%s-wal", db_path) < (int)sizeof wal && stat(wal, &sb) == 0)
        n += (int64_t)sb.st_size;
    return n;
}

cd_err cd_store_compact(const char *db_path, int64_t *bytes_before,
                        int64_t *bytes_after, cd_error *err)
{
    *bytes_before = *bytes_after = file_bytes(db_path);
    cd__sqlite_setup();
    sqlite3 *db = NULL;
    int src = sqlite3_open_v2(db_path, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, NULL);
    if (src != SQLITE_OK) {
        cd_err rc = cd__fail(err, src == SQLITE_CANTOPEN ? CD_ENOTFOUND : CD_EIO,
                             "cannot open %s: %s", db_path,
                             db ? sqlite3_errmsg(db) : sqlite3_errstr(src));
        sqlite3_close(db);
        return rc;
    }
    sqlite3_extended_result_codes(db, 1);
    /* The file to itself, or refused at once: a daemon serving it holds
     * it open, and one starting meanwhile waits for the lock. */
    cd_err rc = CD_OK;
    char *msg = NULL;
    src = sqlite3_exec(db, "PRAGMA locking_mode = EXCLUSIVE; BEGIN EXCLUSIVE; COMMIT",
                       NULL, NULL, &msg);
    if ((src & 0xff) == SQLITE_BUSY || (src & 0xff) == SQLITE_LOCKED)
        rc = cd__fail(err, CD_EBUSY, "%s is open in another process (a daemon serving "
                      "it?): stop it first", db_path);
    else if (src != SQLITE_OK)
        rc = cd__fail(err, cd__store_code_of(src), "cannot lock %s: %s", db_path,
                      msg ? msg : sqlite3_errstr(src));
    sqlite3_free(msg);
    msg = NULL;
    /* VACUUM writes every table and index anew, in key order with full
     * pages, through the WAL; the checkpoint moves the result into the
     * file. */
    if (rc == CD_OK &&
        (src = sqlite3_exec(db, "VACUUM; PRAGMA wal_checkpoint(TRUNCATE)", NULL, NULL,
                            &msg)) != SQLITE_OK)
        rc = cd__fail(err, cd__store_code_of(src), "compacting %s: %s", db_path,
                      msg ? msg : sqlite3_errstr(src));
    sqlite3_free(msg);
    if (sqlite3_close(db) != SQLITE_OK && rc == CD_OK)
        rc = cd__fail(err, CD_EIO, "cannot close %s", db_path);
    *bytes_after = file_bytes(db_path);
    return rc;
}

cd_err cd_store_reclaim(cd_store *st, cd_error *err)
{
    if (!st)
        return cd__fail(err, CD_EINVAL, "cd_store_reclaim: NULL store");
    cd_conn *c = cd__writer_acquire(st);
    sqlite3_stmt *s = NULL;
    int64_t mode = -1;
    int src = sqlite3_prepare_v2(c->db, "PRAGMA auto_vacuum", -1, &s, NULL);
    if (src == SQLITE_OK && sqlite3_step(s) == SQLITE_ROW)
        mode = sqlite3_column_int64(s, 0);
    sqlite3_finalize(s);
    cd_err rc = mode < 0 ? cd__db_fail(err, c, src == SQLITE_OK ? SQLITE_ERROR : src) : CD_OK;
    if (rc == CD_OK && mode == 2)
        rc = run_plain(c, "PRAGMA incremental_vacuum", err);
    else if (rc == CD_OK)
        rc = run_plain(c, "PRAGMA auto_vacuum = INCREMENTAL; VACUUM", err);
    if (rc == CD_OK) {
        /* Readers still on an older snapshot can keep it from finishing;
         * then the file shrinks at a later checkpoint instead. */
        int log = 0, done = 0;
        sqlite3_wal_checkpoint_v2(c->db, NULL, SQLITE_CHECKPOINT_TRUNCATE, &log, &done);
    }
    cd__conn_release(c);
    return rc;
}
