/*
 * store_check.c - the integrity check of a compatd database (see store.h
 * for the contract): SQLite's integrity_check, then the rules the store
 * keeps by hand that SQLite cannot see (vector lengths, items of existing
 * galleries, counts and change sequences), all inside one read transaction.
 *
 * It opens the file read-only with a connection of its own, never the
 * store's, so it runs beside a running daemon, on a backup's copy (see
 * store_backup.c) and from `compatd check` without migrating anything.
 */
#include "store_int.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/*
 * What SQLite's integrity_check cannot see: the rules store.c keeps by
 * hand (schema/001_init.sql).  Each query yields one text row per problem.
 */
static const struct {
    int since;              /* the schema version that has its tables */
    const char *sql;
} check_rules[] = {
    {1, "SELECT printf('embedding (gallery %d, model %d, item %d) is %d bytes,"
    " not %d (4 x dim %d)', e.gallery_id, e.model_id, e.item_rowid,"
    " length(e.vector), 4 * m.dim, m.dim)"
    " FROM embeddings e JOIN models m ON m.id = e.model_id"
    " WHERE typeof(e.vector) != 'blob' OR length(e.vector) != 4 * m.dim"},
    {1, "SELECT printf('embedding (gallery %d, model %d, item %d) is of no model',"
    " e.gallery_id, e.model_id, e.item_rowid) FROM embeddings e"
    " WHERE NOT EXISTS (SELECT 1 FROM models m WHERE m.id = e.model_id)"},
    {1, "SELECT printf('embedding (gallery %d, model %d, item %d) has no item in"
    " its gallery', e.gallery_id, e.model_id, e.item_rowid) FROM embeddings e"
    " WHERE NOT EXISTS (SELECT 1 FROM items i WHERE i.rowid = e.item_rowid"
    " AND i.gallery_id = e.gallery_id)"},
    {1, "SELECT printf('item %d (\"%s\") is in gallery %d, which does not exist',"
    " i.rowid, i.ext_id, i.gallery_id) FROM items i"
    " WHERE NOT EXISTS (SELECT 1 FROM galleries g WHERE g.id = i.gallery_id)"},
    {1, "SELECT printf('gallery \"%s\" counts %d items but holds %d', g.name,"
    " g.item_count, n) FROM (SELECT g.name, g.item_count, (SELECT count(*)"
    " FROM items i WHERE i.gallery_id = g.id) AS n FROM galleries g) g"
    " WHERE g.item_count != n"},
    {1, "SELECT printf('gallery \"%s\" is at seq %d but has an embedding of seq"
    " %d', g.name, g.seq, max(e.seq)) FROM galleries g"
    " JOIN embeddings e ON e.gallery_id = g.id GROUP BY g.id"
    " HAVING max(e.seq) > g.seq"},
    {1, "SELECT printf('%s row %d has no %s row its foreign key names', \"table\","
    " rowid, parent) FROM pragma_foreign_key_check"},
    {6, "SELECT printf('adapter \"%s\" has %d bytes of weights, not %d (4 x %d x %d)',"
     " name, length(weights), 4 * dim_from * dim_to, dim_from, dim_to) FROM adapters"
     " WHERE typeof(weights) != 'blob' OR length(weights) != 4 * dim_from * dim_to"},
};

/* Adds each line of text to r as a problem (listed while there is room),
 * but integrity_check's "*** in database main ***" headings. */
static void check_problem(cd_store_check_report *r, const char *text)
{
    while (*text) {
        size_t n = strcspn(text, "\n");
        if (n && strncmp(text, "*** in database", 15) != 0) {
            if (r->n_problems < CD_CHECK_PROBLEMS_MAX)
                snprintf(r->problems[r->n_problems++], sizeof r->problems[0],
                         "%.*s", (int)n, text);
            else
                r->more = true;
        }
        text += n + (text[n] == '\n');
    }
}

/*
 * Runs sql and adds each row's first column to r as a problem, skipping a
 * single "ok" row when ok_means_none (integrity_check's verdict).  A step
 * that fails is a problem too: a damaged page may stop the query itself.
 */
static void check_query(sqlite3 *db, const char *sql, bool ok_means_none,
                        cd_store_check_report *r)
{
    sqlite3_stmt *s = NULL;
    int rc = sqlite3_prepare_v2(db, sql, -1, &s, NULL);
    bool first = true;
    while (rc == SQLITE_OK && (rc = sqlite3_step(s)) == SQLITE_ROW) {
        const char *text = (const char *)sqlite3_column_text(s, 0);
        if (!(first && ok_means_none && text && strcmp(text, "ok") == 0))
            check_problem(r, text ? text : "?");
        first = false;
        rc = SQLITE_OK;
    }
    if (rc != SQLITE_DONE) {
        char msg[256];
        snprintf(msg, sizeof msg, "reading the database failed: %s",
                 sqlite3_errmsg(db));
        check_problem(r, msg);
    }
    sqlite3_finalize(s);
}

cd_err cd__store_check_db(sqlite3 *db, const char *path, bool quick,
                         cd_store_check_report *r, cd_error *err)
{
    cd_err rc = CD_OK;
    memset(r, 0, sizeof *r);
    int src = sqlite3_exec(db, "BEGIN", NULL, NULL, NULL);
    if (src != SQLITE_OK)
        return cd__fail(err, CD_EIO, "cannot read %s: %s", path,
                        sqlite3_errmsg(db));
    sqlite3_stmt *s = NULL;
    src = sqlite3_prepare_v2(db, "SELECT (SELECT application_id FROM"
                             " pragma_application_id), (SELECT user_version"
                             " FROM pragma_user_version)", -1, &s, NULL);
    if (src == SQLITE_OK)
        src = sqlite3_step(s);
    if (src == SQLITE_ROW) {
        int64_t app_id = sqlite3_column_int64(s, 0);
        r->schema_version = sqlite3_column_int(s, 1);
        if (app_id != STORE_APPLICATION_ID)
            check_problem(r, app_id == 0 && r->schema_version == 0
                                 ? "the file is empty: it holds no compatd database"
                                 : "the file is an SQLite database but not a compatd one");
        else if (r->schema_version < 1 || r->schema_version > CD_SCHEMA_VERSION)
            rc = cd__fail(err, CD_EVERSION, "%s has schema version %d; this compatd "
                          "knows 1..%d", path, r->schema_version, CD_SCHEMA_VERSION);
    } else {
        char msg[256];
        snprintf(msg, sizeof msg, "the file cannot be read as a database: %s",
                 sqlite3_errmsg(db));
        check_problem(r, msg);
    }
    sqlite3_finalize(s);
    if (rc == CD_OK && r->n_problems == 0) {
        char sql[64];
        snprintf(sql, sizeof sql, "PRAGMA %s(%d)", quick ? "quick_check" : "integrity_check",
                 CD_CHECK_PROBLEMS_MAX + 1);
        check_query(db, sql, true, r);
    }
    /* The rules read rows a damaged b-tree could hide: only on a sound one. */
    for (size_t i = 0; !quick && rc == CD_OK && r->n_problems == 0 &&
                       i < sizeof check_rules / sizeof check_rules[0]; i++)
        if (r->schema_version >= check_rules[i].since)
            check_query(db, check_rules[i].sql, false, r);
    if (!quick && rc == CD_OK && r->n_problems == 0) {
        s = NULL;
        src = sqlite3_prepare_v2(db, "SELECT (SELECT count(*) FROM galleries),"
                                 " (SELECT count(*) FROM items),"
                                 " (SELECT count(*) FROM embeddings)", -1, &s, NULL);
        if (src == SQLITE_OK && sqlite3_step(s) == SQLITE_ROW) {
            r->galleries = sqlite3_column_int64(s, 0);
            r->items = sqlite3_column_int64(s, 1);
            r->embeddings = sqlite3_column_int64(s, 2);
        } else {
            char msg[256];
            snprintf(msg, sizeof msg, "counting rows failed: %s", sqlite3_errmsg(db));
            check_problem(r, msg);
        }
        sqlite3_finalize(s);
    }
    sqlite3_exec(db, "COMMIT", NULL, NULL, NULL);
    if (rc == CD_OK && r->n_problems)
        rc = cd__fail(err, CD_ECORRUPT, "%s is damaged: %s%s", path, r->problems[0],
                      r->n_problems > 1 ? " (and more)" : "");
    return rc;
}

/* cd_store_check and cd_store_quick_check: the file by path, read-only. */
static cd_err check_file(const char *db_path, bool quick, cd_store_check_report *report,
                         cd_error *err)
{
    cd_store_check_report local;
    cd_store_check_report *r = report ? report : &local;
    memset(r, 0, sizeof *r);
    if (!db_path || !*db_path)
        return cd__fail(err, CD_EINVAL, "cd_store_check: no path");
    cd__sqlite_setup();
    struct stat sb;
    if (stat(db_path, &sb) != 0)
        return cd__fail(err, errno == ENOENT ? CD_ENOTFOUND : CD_EIO,
                        "cannot read %s: %s", db_path, strerror(errno));
    if (sb.st_size == 0) {
        check_problem(r, "the file is empty: it holds no compatd database");
        return cd__fail(err, CD_ECORRUPT, "%s is damaged: %s", db_path, r->problems[0]);
    }
    sqlite3 *db = NULL;
    int src = sqlite3_open_v2(db_path, &db, SQLITE_OPEN_READONLY | SQLITE_OPEN_NOMUTEX,
                              NULL);
    cd_err rc;
    if (src != SQLITE_OK) {
        rc = cd__fail(err, src == SQLITE_NOMEM ? CD_ENOMEM : CD_EIO, "cannot open %s: %s",
                      db_path, db ? sqlite3_errmsg(db) : sqlite3_errstr(src));
    } else {
        sqlite3_extended_result_codes(db, 1);
        sqlite3_busy_timeout(db, STORE_BUSY_TIMEOUT_MS);
        rc = cd__store_check_db(db, db_path, quick, r, err);
    }
    sqlite3_close(db);
    return rc;
}

bool cd_store_schema_current(const char *db_path)
{
    cd__sqlite_setup();
    sqlite3 *db = NULL;
    sqlite3_stmt *s = NULL;
    int version = -1;
    if (sqlite3_open_v2(db_path, &db, SQLITE_OPEN_READONLY | SQLITE_OPEN_NOMUTEX,
                        NULL) == SQLITE_OK) {
        sqlite3_busy_timeout(db, STORE_BUSY_TIMEOUT_MS);
        if (sqlite3_prepare_v2(db, "PRAGMA user_version", -1, &s, NULL) == SQLITE_OK &&
            sqlite3_step(s) == SQLITE_ROW)
            version = sqlite3_column_int(s, 0);
        sqlite3_finalize(s);
    }
    sqlite3_close(db);
    return version == CD_SCHEMA_VERSION;
}

cd_err cd_store_check(const char *db_path, cd_store_check_report *report,
                      cd_error *err)
{
    return check_file(db_path, false, report, err);
}

cd_err cd_store_quick_check(const char *db_path, cd_store_check_report *report,
                            cd_error *err)
{
    return check_file(db_path, true, report, err);
}
