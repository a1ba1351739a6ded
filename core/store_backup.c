/*
 * store_backup.c - an online copy of a compatd database into a new file
 * (see store.h for the contract).
 *
 * It opens the database by path with a connection of its own, not the
 * store's, so that it works beside a running daemon: the copy is one
 * read transaction's state, checked as `compatd check` checks (store_check.c), fsynced, and
 * only then given its name, which it never takes from an existing file.
 */
#include "store_int.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* --- backup ------------------------------------------------------------ */

/* The copy goes in steps of this many pages (4 MiB of 16 KiB pages), so
 * that a step that meets SQLITE_BUSY (another connection recovering the
 * WAL) is retried alone after a pause, not the whole copy. */
#define BACKUP_STEP_PAGES 256
#define BACKUP_BUSY_SLEEP_MS 10

/* True when path exists (as anything); errno other than ENOENT counts as
 * existing, so that a file we cannot see into is not overwritten. */
static bool path_exists(const char *path)
{
    struct stat sb;
    return lstat(path, &sb) == 0 || errno != ENOENT;
}

/* fsync of a file or directory by name. */
static cd_err fsync_path(const char *path, bool is_dir, cd_error *err)
{
    int fd = open(path, (is_dir ? O_RDONLY | O_DIRECTORY : O_RDONLY) | O_CLOEXEC);
    if (fd < 0)
        return cd__fail(err, CD_EIO, "cannot open %s: %s", path, strerror(errno));
    int rc = fsync(fd);
    int saved = errno;
    close(fd);
    if (rc != 0)
        return cd__fail(err, CD_EIO, "cannot fsync %s: %s", path, strerror(saved));
    return CD_OK;
}

/* The directory part of path ("." when it has none); malloc'd. */
static char *dir_of(const char *path)
{
    const char *slash = strrchr(path, '/');
    if (!slash)
        return strdup(".");
    size_t n = slash == path ? 1 : (size_t)(slash - path);
    char *dir = malloc(n + 1);
    if (dir) {
        memcpy(dir, path, n);
        dir[n] = '\0';
    }
    return dir;
}

/*
 * Opens db_path read-only and starts the read transaction the copy is
 * taken in, after checking that it is a compatd database.
 */
static cd_err backup_source_open(const char *db_path, sqlite3 **out,
                                 cd_error *err)
{
    sqlite3 *db = NULL;
    sqlite3_stmt *s = NULL;
    cd_err rc = CD_OK;
    *out = NULL;
    int src = sqlite3_open_v2(db_path, &db, SQLITE_OPEN_READONLY | SQLITE_OPEN_NOMUTEX, NULL);
    if (src != SQLITE_OK) {
        rc = cd__fail(err, src == SQLITE_NOMEM ? CD_ENOMEM : CD_EIO, "cannot open %s: %s",
                      db_path, db ? sqlite3_errmsg(db) : sqlite3_errstr(src));
        goto fail;
    }
    sqlite3_extended_result_codes(db, 1);
    sqlite3_busy_timeout(db, STORE_BUSY_TIMEOUT_MS);
    /* The read transaction begins at the first read, here; every step of
     * the copy then reads this one state. */
    src = sqlite3_exec(db, "BEGIN", NULL, NULL, NULL);
    if (src == SQLITE_OK)
        src = sqlite3_prepare_v2(db, "SELECT (SELECT application_id FROM pragma_application_id),"
                                 " (SELECT count(*) FROM sqlite_schema)", -1, &s, NULL);
    if (src == SQLITE_OK)
        src = sqlite3_step(s);
    if ((src & 0xff) == SQLITE_NOTADB) {
        rc = cd__fail(err, CD_ECORRUPT, "%s is not a compatd database: %s", db_path,
                      sqlite3_errmsg(db));
        goto fail;
    }
    if (src != SQLITE_ROW) {
        rc = cd__fail(err, cd__store_code_of(src), "cannot read %s: %s", db_path, sqlite3_errmsg(db));
        goto fail;
    }
    if (sqlite3_column_int64(s, 0) != STORE_APPLICATION_ID || sqlite3_column_int64(s, 1) == 0) {
        rc = cd__fail(err, CD_ECORRUPT, "%s is not a compatd database", db_path);
        goto fail;
    }
    sqlite3_finalize(s);
    s = NULL;
    if (sqlite3_txn_state(db, "main") != SQLITE_TXN_READ) {
        rc = cd__fail(err, CD_EINTERNAL, "no read transaction on %s", db_path);
        goto fail;
    }
    *out = db;
    return CD_OK;
fail:
    sqlite3_finalize(s);
    sqlite3_close(db);
    return rc;
}

/* Copies src into the (empty) database file tmp_path and checks it. */
static cd_err backup_copy(sqlite3 *src, const char *tmp_path, cd_error *err)
{
    sqlite3 *dst = NULL;
    sqlite3_backup *b = NULL;
    cd_err rc = CD_OK;
    int drc = sqlite3_open_v2(tmp_path, &dst, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, NULL);
    if (drc != SQLITE_OK) {
        rc = cd__fail(err, drc == SQLITE_NOMEM ? CD_ENOMEM : CD_EIO, "cannot open %s: %s",
                      tmp_path, dst ? sqlite3_errmsg(dst) : sqlite3_errstr(drc));
        goto done;
    }
    sqlite3_extended_result_codes(dst, 1);
    /* The whole file is fsynced once at the end instead. */
    drc = sqlite3_exec(dst, "PRAGMA synchronous = OFF", NULL, NULL, NULL);
    if (drc != SQLITE_OK) {
        rc = cd__fail(err, cd__store_code_of(drc), "%s: %s", tmp_path, sqlite3_errmsg(dst));
        goto done;
    }
    b = sqlite3_backup_init(dst, "main", src, "main");
    if (!b) {
        rc = cd__fail(err, cd__store_code_of(sqlite3_errcode(dst)), "cannot start the copy: %s",
                      sqlite3_errmsg(dst));
        goto done;
    }
    do {
        drc = sqlite3_backup_step(b, BACKUP_STEP_PAGES);
        if (drc == SQLITE_BUSY || drc == SQLITE_LOCKED)
            sqlite3_sleep(BACKUP_BUSY_SLEEP_MS);
    } while (drc == SQLITE_OK || drc == SQLITE_BUSY || drc == SQLITE_LOCKED);
    int frc = sqlite3_backup_finish(b);
    if (drc != SQLITE_DONE || frc != SQLITE_OK) {
        rc = cd__fail(err, cd__store_code_of(drc != SQLITE_DONE ? drc : frc), "copying into %s: %s",
                      tmp_path, sqlite3_errmsg(dst));
        goto done;
    }
    cd_store_check_report report;
    rc = cd__store_check_db(dst, tmp_path, false, &report, err);
    if (rc == CD_ECORRUPT)
        rc = cd__fail(err, CD_ECORRUPT, "the copy does not pass the check (the "
                      "database is damaged; `compatd check` lists how): %s",
                      report.problems[0]);
done:
    if (dst && sqlite3_close(dst) != SQLITE_OK && rc == CD_OK)
        rc = cd__fail(err, CD_EIO, "cannot close %s: %s", tmp_path, sqlite3_errmsg(dst));
    return rc;
}

/*
 * Gives tmp_path the name dest_path unless that exists: link() fails
 * rather than replace, where rename() would replace.  File systems
 * without hard links get a rename after a last look.
 */
static cd_err backup_publish(const char *tmp_path, const char *dest_path,
                             cd_error *err)
{
    if (link(tmp_path, dest_path) == 0) {
        unlink(tmp_path);
        return CD_OK;
    }
    if (errno == EEXIST)
        return cd__fail(err, CD_EEXISTS, "%s already exists", dest_path);
    if (errno != EPERM && errno != ENOTSUP && errno != ENOSYS)
        return cd__fail(err, CD_EIO, "cannot link %s to %s: %s", tmp_path, dest_path,
                        strerror(errno));
    if (path_exists(dest_path))
        return cd__fail(err, CD_EEXISTS, "%s already exists", dest_path);
    if (rename(tmp_path, dest_path) != 0)
        return cd__fail(err, CD_EIO, "cannot rename %s to %s: %s", tmp_path, dest_path,
                        strerror(errno));
    return CD_OK;
}

cd_err cd_store_backup(const char *db_path, const char *dest_path,
                       int64_t *bytes_out, cd_error *err)
{
    static const char *const beside[] = {"", "-wal", "-journal"};
    sqlite3 *src = NULL;
    char *tmp_path = NULL, *tmp_journal = NULL, *dir = NULL;
    bool tmp_made = false;
    cd_err rc = CD_OK;
    if (bytes_out)
        *bytes_out = 0;
    if (!db_path || !*db_path || !dest_path || !*dest_path)
        return cd__fail(err, CD_EINVAL, "cd_store_backup: no path");
    cd__sqlite_setup();

    for (size_t i = 0; i < sizeof beside / sizeof beside[0]; i++) {
        char *p = sqlite3_mprintf("%s%s", dest_path, beside[i]);
        bool taken = !p || path_exists(p);
        sqlite3_free(p);
        if (taken)
            return cd__fail(err, CD_EEXISTS, "%s%s already exists", dest_path, beside[i]);
    }
    if (!path_exists(db_path))
        return cd__fail(err, CD_ENOTFOUND, "no database at %s", db_path);

    tmp_path = sqlite3_mprintf("%s.tmp-%ld", dest_path, (long)getpid());
    tmp_journal = sqlite3_mprintf("%s-journal", tmp_path ? tmp_path : "");
    dir = dir_of(dest_path);
    if (!tmp_path || !tmp_journal || !dir) {
        rc = cd__fail(err, CD_ENOMEM, "out of memory");
        goto done;
    }
    rc = backup_source_open(db_path, &src, err);
    if (rc != CD_OK)
        goto done;
    /* A file left by a crashed backup of a process with our pid is ours
     * to replace; O_EXCL then makes sure no one else writes this name. */
    unlink(tmp_path);
    unlink(tmp_journal);
    int fd = open(tmp_path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0) {
        rc = cd__fail(err, CD_EIO, "cannot create %s: %s", tmp_path, strerror(errno));
        goto done;
    }
    close(fd);
    tmp_made = true;
    rc = backup_copy(src, tmp_path, err);
    /* The read transaction ends here: the WAL may be checkpointed again. */
    sqlite3_close(src);
    src = NULL;
    if (rc == CD_OK)
        rc = fsync_path(tmp_path, false, err);
    if (rc == CD_OK && bytes_out) {
        struct stat sb;
        if (stat(tmp_path, &sb) == 0)
            *bytes_out = (int64_t)sb.st_size;
    }
    if (rc == CD_OK)
        rc = backup_publish(tmp_path, dest_path, err);
    if (rc == CD_OK) {
        tmp_made = false;
        rc = fsync_path(dir, true, err);
    }
done:
    sqlite3_close(src);
    if (tmp_made) {
        unlink(tmp_path);
        unlink(tmp_journal);
    }
    sqlite3_free(tmp_path);
    sqlite3_free(tmp_journal);
    free(dir);
    return rc;
}
