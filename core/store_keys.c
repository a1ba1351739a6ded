/*
 * store_keys.c - API keys: their scopes, and the rows that hold a key's
 * name, scope, display prefix and hash, never the key itself (see store.h
 * for the contract, store_int.h for what the store_*.c files share).
 *
 * Key names are never reused, revoked keys included; a revoked key keeps
 * its row, with revoked_at set once.
 */
#include "store_int.h"

#include <string.h>

/* --- API keys ------------------------------------------------------------ */

const char *cd_scope_name(cd_scope s)
{
    switch (s) {
    case CD_SCOPE_NONE: return "none";
    case CD_SCOPE_READ: return "read";
    case CD_SCOPE_WRITE: return "write";
    case CD_SCOPE_ADMIN: return "admin";
    }
    return "?";
}

bool cd_scope_parse(const char *s, cd_scope *out)
{
    static const cd_scope all[] = {CD_SCOPE_READ, CD_SCOPE_WRITE,
                                   CD_SCOPE_ADMIN};
    for (size_t i = 0; s && i < sizeof all / sizeof all[0]; i++) {
        if (strcmp(s, cd_scope_name(all[i])) == 0) {
            *out = all[i];
            return true;
        }
    }
    return false;
}

/* Fills *k from a KEY_SELECT row. */
static cd_err key_from_row(sqlite3_stmt *s, cd_api_key *k, cd_error *err)
{
    memset(k, 0, sizeof *k);
    k->id = sqlite3_column_int64(s, 0);
    const void *hash = sqlite3_column_blob(s, 6);
    if (!cd__copy_column(s, 1, k->name, sizeof k->name) ||
        !cd_scope_parse((const char *)sqlite3_column_text(s, 2), &k->scope) ||
        !cd__copy_column(s, 3, k->prefix, sizeof k->prefix) ||
        !cd__copy_column(s, 4, k->created_at, sizeof k->created_at) ||
        !cd__copy_column(s, 5, k->revoked_at, sizeof k->revoked_at) || !hash ||
        sqlite3_column_bytes(s, 6) != CD_KEY_HASH_SIZE)
        return cd__fail(err, CD_ECORRUPT, "API key %lld has a damaged row",
                        (long long)k->id);
    memcpy(k->hash, hash, CD_KEY_HASH_SIZE);
    return CD_OK;
}

static cd_err key_fill(sqlite3_stmt *s, void *elem, cd_error *err)
{
    return key_from_row(s, elem, err);
}

/*
 * Reads the API key named name (ST_KEY_BY_NAME), with id key_id
 * (ST_KEY_BY_ID) or hash (ST_KEY_BY_HASH) on c into *out, zeroed on
 * failure; the other two arguments are NULL or 0.
 */
static cd_err key_read(cd_conn *c, stmt_id id, const char *name, int64_t key_id,
                       const unsigned char *hash, cd_api_key *out,
                       cd_error *err)
{
    cd_err rc = cd__read_row(c, id, name, hash, key_id, key_fill, out, err);
    if (rc == CD_ENOTFOUND && name)
        rc = cd__fail(err, CD_ENOTFOUND, "no API key named %s", name);
    else if (rc == CD_ENOTFOUND && !hash)
        rc = cd__fail(err, CD_ENOTFOUND, "no API key with id %lld",
                      (long long)key_id);
    else if (rc == CD_ENOTFOUND)
        rc = cd__fail(err, CD_ENOTFOUND, "unknown API key");
    if (rc != CD_OK)
        memset(out, 0, sizeof *out);
    return rc;
}

cd_err cd_store_key_insert(cd_store *st, const char *name, cd_scope scope,
                           const unsigned char hash[CD_KEY_HASH_SIZE],
                           const char *prefix, cd_api_key *out,
                           cd_error *err)
{
    size_t len;
    if (out)
        memset(out, 0, sizeof *out);
    if (!st || !hash || !prefix)
        return cd__fail(err, CD_EINVAL, "cd_store_key_insert: NULL argument");
    if (!cd_name_valid(name))
        return cd__fail(err, CD_EINVAL,
                        "key name \"%.*s\" is not 1 to %d of [A-Za-z0-9._-]",
                        CD_NAME_MAX, name ? name : "(null)", CD_NAME_MAX);
    if (scope != CD_SCOPE_READ && scope != CD_SCOPE_WRITE &&
        scope != CD_SCOPE_ADMIN)
        return cd__fail(err, CD_EINVAL, "unknown key scope %d", (int)scope);
    if (!cd__text_ok(prefix, CD_KEY_PREFIX_LEN, &len))
        return cd__fail(err, CD_EINVAL, "key prefix is not UTF-8 of at most %d bytes",
                        CD_KEY_PREFIX_LEN);

    char created_at[32];
    cd__now_rfc3339(created_at);
    cd_conn *c = cd__writer_acquire(st);
    sqlite3_stmt *s = NULL;
    cd_api_key same;
    cd_err rc = cd__tx_begin(c, true, err);
    if (rc != CD_OK)
        goto unlock;
    /* Names first, so that a taken name is reported as such even when the
     * key text is the same too. */
    rc = key_read(c, ST_KEY_BY_NAME, name, 0, NULL, &same, err);
    if (rc == CD_OK) {
        rc = cd__fail(err, CD_EEXISTS, "an API key named %s already exists%s",
                      name, same.revoked_at[0] ? " (revoked; names are not reused)" : "");
        goto end;
    }
    if (rc != CD_ENOTFOUND)
        goto end;
    rc = key_read(c, ST_KEY_BY_HASH, NULL, 0, hash, &same, err);
    if (rc == CD_OK) {
        rc = cd__fail(err, CD_ECONFLICT,
                      "this key is already stored, as API key %s", same.name);
        goto end;
    }
    if (rc != CD_ENOTFOUND)
        goto end;
    rc = cd__conn_stmt(c, ST_KEY_INSERT, &s, err);
    if (rc != CD_OK)
        goto end;
    sqlite3_bind_text(s, 1, name, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 2, cd_scope_name(scope), -1, SQLITE_STATIC);
    sqlite3_bind_blob(s, 3, hash, CD_KEY_HASH_SIZE, SQLITE_STATIC);
    sqlite3_bind_text(s, 4, prefix, (int)len, SQLITE_STATIC);
    sqlite3_bind_text(s, 5, created_at, -1, SQLITE_STATIC);
    /* Name and hash were looked up above, in this transaction. */
    rc = cd__step_write(c, s, NULL, NULL, err);
    if (rc == CD_OK && out)
        rc = key_read(c, ST_KEY_BY_ID, NULL, sqlite3_last_insert_rowid(c->db),
                      NULL, out, err);
end:
    rc = cd__tx_end(c, rc, err);
unlock:
    cd__conn_release(c);
    if (rc != CD_OK && out)
        memset(out, 0, sizeof *out);
    return rc;
}

cd_err cd_store_key_get(cd_store *st, const char *name, cd_api_key *out,
                        cd_error *err)
{
    if (!st || !out)
        return cd__fail(err, CD_EINVAL, "cd_store_key_get: NULL argument");
    memset(out, 0, sizeof *out);
    if (!cd_name_valid(name))
        return cd__fail(err, CD_ENOTFOUND, "no API key named %.*s",
                        CD_NAME_MAX, name ? name : "(null)");
    cd_conn *c = cd__reader_acquire(st);
    cd_err rc = key_read(c, ST_KEY_BY_NAME, name, 0, NULL, out, err);
    cd__conn_release(c);
    return rc;
}

cd_err cd_store_key_get_by_id(cd_store *st, int64_t id, cd_api_key *out,
                              cd_error *err)
{
    if (!st || !out)
        return cd__fail(err, CD_EINVAL, "cd_store_key_get_by_id: NULL argument");
    cd_conn *c = cd__reader_acquire(st);
    cd_err rc = key_read(c, ST_KEY_BY_ID, NULL, id, NULL, out, err);
    cd__conn_release(c);
    return rc;
}

cd_err cd_store_key_find(cd_store *st,
                         const unsigned char hash[CD_KEY_HASH_SIZE],
                         cd_api_key *out, cd_error *err)
{
    if (!st || !hash || !out)
        return cd__fail(err, CD_EINVAL, "cd_store_key_find: NULL argument");
    cd_conn *c = cd__reader_acquire(st);
    cd_err rc = key_read(c, ST_KEY_BY_HASH, NULL, 0, hash, out, err);
    cd__conn_release(c);
    return rc;
}

cd_err cd_store_key_list(cd_store *st, cd_api_key **out, size_t *n,
                         cd_error *err)
{
    if (!st || !out || !n)
        return cd__fail(err, CD_EINVAL, "cd_store_key_list: NULL argument");
    void *rows;
    cd_err rc = cd__list_rows(st, ST_KEY_LIST, 0, 0, sizeof(cd_api_key),
                              key_fill, &rows, n, err);
    *out = rows;
    return rc;
}

cd_err cd_store_key_revoke(cd_store *st, int64_t id, cd_api_key *out,
                           bool *was_revoked, cd_error *err)
{
    cd_api_key k;
    if (out)
        memset(out, 0, sizeof *out);
    if (was_revoked)
        *was_revoked = false;
    if (!st)
        return cd__fail(err, CD_EINVAL, "cd_store_key_revoke: NULL store");
    char now[32];
    cd__now_rfc3339(now);
    cd_conn *c = cd__writer_acquire(st);
    sqlite3_stmt *s = NULL;
    cd_err rc = cd__tx_begin(c, true, err);
    if (rc != CD_OK)
        goto unlock;
    rc = key_read(c, ST_KEY_BY_ID, NULL, id, NULL, &k, err);
    if (rc != CD_OK)
        goto end;
    if (k.revoked_at[0]) {
        if (was_revoked)
            *was_revoked = true;
        goto end;
    }
    rc = cd__conn_stmt(c, ST_KEY_REVOKE, &s, err);
    if (rc != CD_OK)
        goto end;
    sqlite3_bind_int64(s, 1, id);
    sqlite3_bind_text(s, 2, now, -1, SQLITE_STATIC);
    rc = cd__step_write(c, s, NULL, NULL, err);
    if (rc == CD_OK)
        rc = key_read(c, ST_KEY_BY_ID, NULL, id, NULL, &k, err);
end:
    rc = cd__tx_end(c, rc, err);
unlock:
    cd__conn_release(c);
    if (rc == CD_OK && out)
        *out = k;
    return rc;
}

cd_err cd_store_keys_exist(cd_store *st, bool *out, cd_error *err)
{
    if (!st || !out)
        return cd__fail(err, CD_EINVAL, "cd_store_keys_exist: NULL argument");
    int64_t any = 0;
    cd_conn *c = cd__reader_acquire(st);
    cd_err rc = cd__run_i64(c, ST_KEY_ANY, 0, 0, 0, NULL, &any, err);
    cd__conn_release(c);
    *out = rc == CD_OK && any != 0;
    return rc;
}
