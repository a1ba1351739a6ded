/*
 * store_adapters.c - adapters (SPEC.md §3.7): one row each, with its
 * weights as float32 bytes (see store.h for the contract, store_int.h for
 * what the store_*.c files share, schema/006_adapters.sql for the rows).
 *
 * An adapter is written once and never changed; what is stored is checked
 * with cd_adapter_from_weights before it is written, so a row that reads
 * back otherwise is damage.
 */
#include "store_int.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Fills *a from an ADAPTER_SELECT row (no weights). */
static cd_err adapter_fill(sqlite3_stmt *s, void *elem, cd_error *err)
{
    cd_adapter_record *a = elem;
    memset(a, 0, sizeof *a);
    a->id = sqlite3_column_int64(s, 0);
    a->from_id = sqlite3_column_int64(s, 2);
    a->to_id = sqlite3_column_int64(s, 5);
    cd_adapter_params *p = &a->info.params;
    p->dim_from = sqlite3_column_int(s, 9);
    p->dim_to = sqlite3_column_int(s, 10);
    p->ridge = sqlite3_column_double(s, 11);
    a->info.pairs = (size_t)sqlite3_column_int64(s, 12);
    a->info.mean_cosine = sqlite3_column_double(s, 13);
    a->info.cv_mean_cosine = sqlite3_column_type(s, 14) == SQLITE_NULL
                                 ? NAN : sqlite3_column_double(s, 14);
    if (!cd__copy_column(s, 1, a->name, sizeof a->name) ||
        !cd__copy_column(s, 3, a->from, sizeof a->from) ||
        !cd_metric_parse((const char *)sqlite3_column_text(s, 4), &p->metric_from) ||
        !cd__copy_column(s, 6, a->to, sizeof a->to) ||
        !cd_metric_parse((const char *)sqlite3_column_text(s, 7), &p->metric_to) ||
        !cd_adapter_kind_parse((const char *)sqlite3_column_text(s, 8), &p->kind) ||
        !cd__copy_column(s, 15, a->created_at, sizeof a->created_at))
        return cd__fail(err, CD_ECORRUPT, "adapter %lld has a damaged row",
                        (long long)a->id);
    return CD_OK;
}

/* Reads the adapter called name (or with id row_id when name is NULL) on
 * c; CD_ENOTFOUND, worded, when there is none. */
static cd_err adapter_read(cd_conn *c, const char *name, int64_t row_id,
                           cd_adapter_record *out, cd_error *err)
{
    cd_err rc = cd__read_row(c, name ? ST_ADAPTER_BY_NAME : ST_ADAPTER_BY_ID, name,
                             NULL, row_id, adapter_fill, out, err);
    if (rc == CD_ENOTFOUND && name)
        rc = cd__fail(err, CD_ENOTFOUND, "no adapter named %s", name);
    else if (rc == CD_ENOTFOUND)
        rc = cd__fail(err, CD_ENOTFOUND, "no adapter with id %lld", (long long)row_id);
    if (rc != CD_OK)
        memset(out, 0, sizeof *out);
    return rc;
}

/* Reads a's weights and bias (a->id's row) on c into a, checked against
 * a's row as cd_adapter_from_weights checks them. */
static cd_err adapter_weights(cd_conn *c, cd_adapter_record *a, cd_error *err)
{
    const cd_adapter_params *p = &a->info.params;
    size_t wbytes = (size_t)p->dim_from * (size_t)p->dim_to * sizeof(float);
    size_t bbytes = (size_t)p->dim_to * sizeof(float);
    bool affine = p->kind == CD_ADAPTER_AFFINE;
    sqlite3_stmt *s = NULL;
    cd_err rc = cd__conn_stmt(c, ST_ADAPTER_WEIGHTS, &s, err);
    if (rc != CD_OK)
        return rc;
    sqlite3_bind_int64(s, 1, a->id);
    int step = sqlite3_step(s);
    if (step != SQLITE_ROW) {
        rc = step == SQLITE_DONE
                 ? cd__fail(err, CD_ENOTFOUND, "no adapter named %s", a->name)
                 : cd__db_fail(err, c, step);
        goto done;
    }
    const void *w = sqlite3_column_blob(s, 0);
    const void *b = sqlite3_column_blob(s, 1);
    if (!w || (size_t)sqlite3_column_bytes(s, 0) != wbytes || (b != NULL) != affine ||
        (b && (size_t)sqlite3_column_bytes(s, 1) != bbytes)) {
        rc = cd__fail(err, CD_ECORRUPT, "adapter %s: its weights are not %d x %d floats%s",
                      a->name, p->dim_from, p->dim_to, affine ? " with a bias" : "");
        goto done;
    }
    a->weights = malloc(wbytes);
    a->bias = affine ? malloc(bbytes) : NULL;
    if (!a->weights || (affine && !a->bias)) {
        rc = cd__fail(err, CD_ENOMEM, "out of memory reading adapter %s", a->name);
        goto done;
    }
    memcpy(a->weights, w, wbytes);
    if (affine)
        memcpy(a->bias, b, bbytes);
    /* The same checks as on the way in: what does not pass them is damage. */
    cd_adapter *check = NULL;
    cd_error why;
    if (cd_adapter_from_weights(&a->info, a->weights, a->bias, &check, &why) != CD_OK)
        rc = cd__fail(err, CD_ECORRUPT, "adapter %s is damaged: %s", a->name, why.message);
    cd_adapter_destroy(check);
done:
    cd__stmt_done(s);
    if (rc != CD_OK)
        cd_adapter_record_finish(a);
    return rc;
}

cd_err cd_store_adapter_create(cd_store *st, const cd_adapter_record *a,
                               cd_adapter_record *out, cd_error *err)
{
    if (out)
        memset(out, 0, sizeof *out);
    if (!st || !a)
        return cd__fail(err, CD_EINVAL, "cd_store_adapter_create: NULL argument");
    if (!cd_name_valid(a->name))
        return cd__fail(err, CD_EINVAL,
                        "adapter name \"%.*s\" is not 1 to %d of [A-Za-z0-9._-]",
                        CD_NAME_MAX, a->name, CD_NAME_MAX);
    cd_adapter *check = NULL;
    cd_err rc = cd_adapter_from_weights(&a->info, a->weights, a->bias, &check, err);
    cd_adapter_destroy(check);
    if (rc != CD_OK)
        return rc;
    const cd_adapter_params *p = &a->info.params;
    char created_at[32];
    cd__now_rfc3339(created_at);
    cd_conn *c = cd__writer_acquire(st);
    sqlite3_stmt *s = NULL;
    rc = cd__tx_begin(c, true, err);
    if (rc != CD_OK)
        goto unlock;
    const int64_t ids[2] = {a->from_id, a->to_id};
    const int dims[2] = {p->dim_from, p->dim_to};
    for (int i = 0; rc == CD_OK && i < 2; i++) {
        bool found;
        int64_t dim = 0;
        rc = cd__run_i64(c, ST_MODEL_DIM, 1, ids[i], 0, &found, &dim, err);
        if (rc == CD_OK && (!found || dim != dims[i]))
            rc = cd__fail(err, CD_ENOTFOUND, "no model %lld of dim %d",
                          (long long)ids[i], dims[i]);
    }
    if (rc != CD_OK)
        goto end;
    rc = cd__conn_stmt(c, ST_ADAPTER_INSERT, &s, err);
    if (rc != CD_OK)
        goto end;
    size_t wbytes = (size_t)p->dim_from * (size_t)p->dim_to * sizeof(float);
    sqlite3_bind_text(s, 1, a->name, -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, 2, a->from_id);
    sqlite3_bind_int64(s, 3, a->to_id);
    sqlite3_bind_text(s, 4, cd_adapter_kind_name(p->kind), -1, SQLITE_STATIC);
    sqlite3_bind_int(s, 5, p->dim_from);
    sqlite3_bind_int(s, 6, p->dim_to);
    sqlite3_bind_double(s, 7, p->ridge);
    sqlite3_bind_int64(s, 8, (sqlite3_int64)a->info.pairs);
    sqlite3_bind_double(s, 9, a->info.mean_cosine);
    if (isnan(a->info.cv_mean_cosine))
        sqlite3_bind_null(s, 10);
    else
        sqlite3_bind_double(s, 10, a->info.cv_mean_cosine);
    sqlite3_bind_blob64(s, 11, a->weights, wbytes, SQLITE_STATIC);
    if (a->bias)
        sqlite3_bind_blob64(s, 12, a->bias, (size_t)p->dim_to * sizeof(float), SQLITE_STATIC);
    else
        sqlite3_bind_null(s, 12);
    sqlite3_bind_text(s, 13, created_at, -1, SQLITE_STATIC);
    rc = cd__step_write(c, s, "adapter", a->name, err);
    if (rc == CD_OK && out)
        rc = adapter_read(c, NULL, sqlite3_last_insert_rowid(c->db), out, err);
end:
    rc = cd__tx_end(c, rc, err);
unlock:
    cd__conn_release(c);
    if (rc != CD_OK && out)
        memset(out, 0, sizeof *out);
    return rc;
}

cd_err cd_store_adapter_get(cd_store *st, const char *name, bool with_weights,
                            cd_adapter_record *out, cd_error *err)
{
    memset(out, 0, sizeof *out);
    if (!st || !name)
        return cd__fail(err, CD_EINVAL, "cd_store_adapter_get: NULL argument");
    cd_conn *c = cd__reader_acquire(st);
    cd_err rc = cd__tx_begin(c, false, err);
    if (rc != CD_OK)
        goto unlock;
    rc = adapter_read(c, name, 0, out, err);
    if (rc == CD_OK && with_weights)
        rc = adapter_weights(c, out, err);
    rc = cd__tx_end(c, rc, err);
unlock:
    cd__conn_release(c);
    if (rc != CD_OK) {
        cd_adapter_record_finish(out);
        memset(out, 0, sizeof *out);
    }
    return rc;
}

cd_err cd_store_adapter_list(cd_store *st, cd_adapter_record **out, size_t *n,
                             cd_error *err)
{
    if (!st || !out || !n)
        return cd__fail(err, CD_EINVAL, "cd_store_adapter_list: NULL argument");
    void *rows;
    cd_err rc = cd__list_rows(st, ST_ADAPTER_LIST, 0, 0, sizeof(cd_adapter_record),
                              adapter_fill, &rows, n, err);
    *out = rows;
    return rc;
}

/* CD_ECONFLICT, naming one, while a gallery routes a model through the
 * adapter called name (on c, inside the caller's transaction). */
static cd_err route_of_adapter(cd_conn *c, const char *name, cd_error *err)
{
    sqlite3_stmt *s = NULL;
    cd_err rc = cd__conn_stmt(c, ST_ROUTE_OF_ADAPTER, &s, err);
    if (rc != CD_OK)
        return rc;
    sqlite3_bind_text(s, 1, name, -1, SQLITE_STATIC);
    int step = sqlite3_step(s);
    if (step == SQLITE_ROW)
        rc = cd__fail(err, CD_ECONFLICT,
                      "adapter %s is in use: gallery %s routes model %s through it; remove the "
                      "route first (PATCH /v1/galleries/%s {\"adapters\": {\"%s\": null}})",
                      name, sqlite3_column_text(s, 0), sqlite3_column_text(s, 1),
                      sqlite3_column_text(s, 0), sqlite3_column_text(s, 1));
    else if (step != SQLITE_DONE)
        rc = cd__db_fail(err, c, step);
    cd__stmt_done(s);
    return rc;
}

cd_err cd_store_adapter_delete(cd_store *st, const char *name, cd_error *err)
{
    if (!st || !name)
        return cd__fail(err, CD_EINVAL, "cd_store_adapter_delete: NULL argument");
    cd_conn *c = cd__writer_acquire(st);
    sqlite3_stmt *s = NULL;
    cd_err rc = cd__tx_begin(c, true, err);
    if (rc != CD_OK)
        goto unlock;
    rc = route_of_adapter(c, name, err);
    if (rc != CD_OK)
        goto end;
    rc = cd__conn_stmt(c, ST_ADAPTER_DELETE, &s, err);
    if (rc != CD_OK)
        goto end;
    sqlite3_bind_text(s, 1, name, -1, SQLITE_STATIC);
    rc = cd__step_write(c, s, NULL, NULL, err);
    if (rc == CD_OK && sqlite3_changes(c->db) == 0)
        rc = cd__fail(err, CD_ENOTFOUND, "no adapter named %s", name);
end:
    rc = cd__tx_end(c, rc, err);
unlock:
    cd__conn_release(c);
    return rc;
}
