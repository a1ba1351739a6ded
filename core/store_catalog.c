/*
 * store_catalog.c - the store's catalog: query policies, models and
 * galleries with their adapter routes (see store.h for the contract, store_int.h for what the
 * store_*.c files share).
 *
 * Models are never deleted, and a model's compatible_with names an
 * existing model of the same dim and metric.  A gallery's item_count is
 * kept by store_items.c's writes; deleting a gallery deletes, in the same
 * transaction, its embeddings, tombstones, evaluations and items (they
 * have no foreign keys to do it), and gallery ids are AUTOINCREMENT, so
 * a deleted gallery's id is never handed out again.
 */
#include "store_int.h"

#include <stdlib.h>
#include <string.h>

/* --- policies ----------------------------------------------------------- */

const char *cd_policy_name(cd_query_policy p)
{
    switch (p) {
    case CD_POLICY_VERIFIED: return "verified";
    case CD_POLICY_DECLARED: return "declared";
    case CD_POLICY_ANY: return "any";
    }
    return "?";
}

bool cd_policy_parse(const char *s, cd_query_policy *out)
{
    static const cd_query_policy all[] = {CD_POLICY_VERIFIED,
                                          CD_POLICY_DECLARED, CD_POLICY_ANY};
    for (size_t i = 0; s && i < sizeof all / sizeof all[0]; i++) {
        if (strcmp(s, cd_policy_name(all[i])) == 0) {
            *out = all[i];
            return true;
        }
    }
    return false;
}

/* --- models ------------------------------------------------------------- */

/* Fills *m from a MODEL_SELECT row. */
static cd_err model_from_row(sqlite3_stmt *s, cd_model *m, cd_error *err)
{
    memset(m, 0, sizeof *m);
    m->id = sqlite3_column_int64(s, 0);
    m->dim = sqlite3_column_int(s, 2);
    if (!cd__copy_column(s, 1, m->name, sizeof m->name) ||
        !cd_metric_parse((const char *)sqlite3_column_text(s, 3), &m->metric) ||
        !cd__copy_column(s, 4, m->compatible_with, sizeof m->compatible_with) ||
        !cd__copy_column(s, 5, m->description, sizeof m->description) ||
        !cd__copy_column(s, 6, m->created_at, sizeof m->created_at))
        return cd__fail(err, CD_ECORRUPT, "model %lld has a damaged row",
                        (long long)m->id);
    return CD_OK;
}

static cd_err model_fill(sqlite3_stmt *s, void *elem, cd_error *err)
{
    return model_from_row(s, elem, err);
}

/* Reads the model named name (or with id model_id when name is NULL) on c
 * into *out with statement id, ST_MODEL_BY_NAME or ST_MODEL_BY_ID; *out
 * is zeroed on failure. */
static cd_err model_read(cd_conn *c, stmt_id id, const char *name,
                         int64_t model_id, cd_model *out, cd_error *err)
{
    cd_err rc = cd__read_row(c, id, name, NULL, model_id, model_fill, out, err);
    if (rc == CD_ENOTFOUND && name)
        rc = cd__fail(err, CD_ENOTFOUND, "model %s not found", name);
    else if (rc == CD_ENOTFOUND)
        rc = cd__fail(err, CD_ENOTFOUND, "model %lld not found",
                      (long long)model_id);
    if (rc != CD_OK)
        memset(out, 0, sizeof *out);
    return rc;
}

/* Looks a model up by name on c: its id, dim and metric. */
static cd_err model_lookup(cd_conn *c, const char *name, int64_t *id,
                           int *dim, cd_metric *metric, cd_error *err)
{
    sqlite3_stmt *s;
    cd_err rc = cd__conn_stmt(c, ST_MODEL_LOOKUP, &s, err);
    if (rc != CD_OK)
        return rc;
    sqlite3_bind_text(s, 1, name, -1, SQLITE_STATIC);
    int step = sqlite3_step(s);
    if (step == SQLITE_ROW) {
        *id = sqlite3_column_int64(s, 0);
        *dim = sqlite3_column_int(s, 1);
        if (!cd_metric_parse((const char *)sqlite3_column_text(s, 2), metric))
            rc = cd__fail(err, CD_ECORRUPT, "model %s has a damaged row", name);
    } else if (step == SQLITE_DONE) {
        rc = cd__fail(err, CD_ENOTFOUND, "model %s not found", name);
    } else {
        rc = cd__db_fail(err, c, step);
    }
    cd__stmt_done(s);
    return rc;
}

static cd_err model_check(const cd_model *m, cd_error *err)
{
    size_t len;
    if (!cd_name_valid(m->name))
        return cd__fail(err, CD_EINVAL,
                        "model name \"%.*s\" is not 1 to %d of [A-Za-z0-9._-]",
                        CD_NAME_MAX, m->name, CD_NAME_MAX);
    if (m->dim < 1 || m->dim > CD_DIM_MAX)
        return cd__fail(err, CD_EINVAL, "dim %d is not within 1..%d", m->dim,
                        CD_DIM_MAX);
    if (m->metric != CD_METRIC_COSINE && m->metric != CD_METRIC_IP &&
        m->metric != CD_METRIC_L2)
        return cd__fail(err, CD_EINVAL, "unknown metric %d", (int)m->metric);
    if (m->compatible_with[0] && !cd_name_valid(m->compatible_with))
        return cd__fail(err, CD_EINVAL,
                        "compatible_with \"%.*s\" is not a model name",
                        CD_NAME_MAX, m->compatible_with);
    if (!cd__text_ok(m->description, CD_DESCRIPTION_MAX, &len))
        return cd__fail(err, CD_EINVAL,
                        "description is not UTF-8 of at most %d bytes",
                        CD_DESCRIPTION_MAX);
    return CD_OK;
}

cd_err cd_store_model_create(cd_store *st, const cd_model *in, cd_model *out,
                             cd_error *err)
{
    if (!st || !in) {
        if (out)
            memset(out, 0, sizeof *out);
        return cd__fail(err, CD_EINVAL, "cd_store_model_create: NULL argument");
    }
    cd_model copy = *in;    /* out may be in */
    const cd_model *m = &copy;
    if (out)
        memset(out, 0, sizeof *out);
    cd_err rc = model_check(m, err);
    if (rc != CD_OK)
        return rc;

    char created_at[32];
    cd__now_rfc3339(created_at);
    cd_conn *c = cd__writer_acquire(st);
    sqlite3_stmt *s = NULL;
    int64_t compat_id = 0;
    int compat_dim;
    cd_metric compat_metric;

    rc = cd__tx_begin(c, true, err);
    if (rc != CD_OK)
        goto unlock;
    if (m->compatible_with[0]) {
        rc = model_lookup(c, m->compatible_with, &compat_id, &compat_dim,
                          &compat_metric, err);
        if (rc == CD_ENOTFOUND)
            rc = cd__fail(err, CD_ENOTFOUND,
                          "compatible_with names model %s, which does not exist",
                          m->compatible_with);
        else if (rc == CD_OK &&
                 (compat_dim != m->dim || compat_metric != m->metric))
            rc = cd__fail(err, CD_EINVAL,
                          "compatible_with model %s has dim %d and metric %s; "
                          "a compatible model needs the same",
                          m->compatible_with, compat_dim,
                          cd_metric_name(compat_metric));
        if (rc != CD_OK)
            goto end;
    }

    rc = cd__conn_stmt(c, ST_MODEL_INSERT, &s, err);
    if (rc != CD_OK)
        goto end;
    sqlite3_bind_text(s, 1, m->name, -1, SQLITE_STATIC);
    sqlite3_bind_int(s, 2, m->dim);
    sqlite3_bind_text(s, 3, cd_metric_name(m->metric), -1, SQLITE_STATIC);
    if (compat_id)
        sqlite3_bind_int64(s, 4, compat_id);
    sqlite3_bind_text(s, 5, m->description, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 6, created_at, -1, SQLITE_STATIC);
    rc = cd__step_write(c, s, "model", m->name, err);
    if (rc == CD_OK && out)
        rc = model_read(c, ST_MODEL_BY_ID, NULL, sqlite3_last_insert_rowid(c->db),
                        out, err);
end:
    rc = cd__tx_end(c, rc, err);
unlock:
    cd__conn_release(c);
    if (rc != CD_OK && out)
        memset(out, 0, sizeof *out);
    return rc;
}

cd_err cd_store_model_get(cd_store *st, const char *name, cd_model *out,
                          cd_error *err)
{
    if (!st || !out)
        return cd__fail(err, CD_EINVAL, "cd_store_model_get: NULL argument");
    memset(out, 0, sizeof *out);
    if (!cd_name_valid(name))
        return cd__fail(err, CD_ENOTFOUND, "model %.*s not found",
                        CD_NAME_MAX, name ? name : "(null)");
    cd_conn *c = cd__reader_acquire(st);
    cd_err rc = model_read(c, ST_MODEL_BY_NAME, name, 0, out, err);
    cd__conn_release(c);
    return rc;
}

cd_err cd_store_model_get_by_id(cd_store *st, int64_t id, cd_model *out,
                                cd_error *err)
{
    if (!st || !out)
        return cd__fail(err, CD_EINVAL, "cd_store_model_get_by_id: NULL argument");
    cd_conn *c = cd__reader_acquire(st);
    cd_err rc = model_read(c, ST_MODEL_BY_ID, NULL, id, out, err);
    cd__conn_release(c);
    return rc;
}

cd_err cd_store_model_list(cd_store *st, cd_model **out, size_t *n,
                           cd_error *err)
{
    if (!st || !out || !n)
        return cd__fail(err, CD_EINVAL, "cd_store_model_list: NULL argument");
    void *rows;
    cd_err rc = cd__list_rows(st, ST_MODEL_LIST, 0, 0, sizeof(cd_model),
                              model_fill, &rows, n, err);
    *out = rows;
    return rc;
}

/* --- galleries ---------------------------------------------------------- */

/* Fills *g from a GALLERY_SELECT row. */
static cd_err gallery_from_row(sqlite3_stmt *s, cd_gallery *g, cd_error *err)
{
    memset(g, 0, sizeof *g);
    g->id = sqlite3_column_int64(s, 0);
    g->model_id = sqlite3_column_int64(s, 2);
    g->count = sqlite3_column_int64(s, 6);
    g->seq = sqlite3_column_int64(s, 7);
    if (!cd__copy_column(s, 1, g->name, sizeof g->name) ||
        !cd__copy_column(s, 3, g->model, sizeof g->model) ||
        !cd__copy_column(s, 4, g->index_spec, sizeof g->index_spec) ||
        !cd_policy_parse((const char *)sqlite3_column_text(s, 5), &g->policy) ||
        !cd__copy_column(s, 8, g->created_at, sizeof g->created_at))
        return cd__fail(err, CD_ECORRUPT, "gallery %lld has a damaged row",
                        (long long)g->id);
    return CD_OK;
}

static cd_err gallery_fill(sqlite3_stmt *s, void *elem, cd_error *err)
{
    return gallery_from_row(s, elem, err);
}

/* Reads the gallery named name (or with id gallery_id when name is NULL)
 * on c into *out with statement id, ST_GALLERY_BY_NAME or _BY_ID; *out
 * is zeroed on failure. */
static cd_err gallery_read(cd_conn *c, stmt_id id, const char *name,
                           int64_t gallery_id, cd_gallery *out, cd_error *err)
{
    cd_err rc = cd__read_row(c, id, name, NULL, gallery_id, gallery_fill, out,
                             err);
    if (rc == CD_ENOTFOUND && name)
        rc = cd__fail(err, CD_ENOTFOUND, "gallery %s not found", name);
    else if (rc == CD_ENOTFOUND)
        rc = cd__fail(err, CD_ENOTFOUND, "gallery %lld not found",
                      (long long)gallery_id);
    if (rc != CD_OK)
        memset(out, 0, sizeof *out);
    return rc;
}

cd_err cd_store_gallery_create(cd_store *st, const char *name,
                               const char *model, const char *index_spec,
                               cd_gallery *out, cd_error *err)
{
    size_t len;
    if (out)
        memset(out, 0, sizeof *out);
    if (!st)
        return cd__fail(err, CD_EINVAL, "cd_store_gallery_create: NULL store");
    if (!cd_name_valid(name))
        return cd__fail(err, CD_EINVAL,
                        "gallery name \"%.*s\" is not 1 to %d of [A-Za-z0-9._-]",
                        CD_NAME_MAX, name ? name : "(null)", CD_NAME_MAX);
    if (!cd_name_valid(model))
        return cd__fail(err, CD_EINVAL, "model name \"%.*s\" is not valid",
                        CD_NAME_MAX, model ? model : "(null)");
    if (!index_spec)
        index_spec = "Flat";
    if (!cd__text_ok(index_spec, CD_SPEC_MAX, &len) || len == 0)
        return cd__fail(err, CD_EINVAL,
                        "index spec is not UTF-8 of 1 to %d bytes", CD_SPEC_MAX);

    char created_at[32];
    cd__now_rfc3339(created_at);
    cd_conn *c = cd__writer_acquire(st);
    sqlite3_stmt *s = NULL;
    int64_t model_id;
    int dim;
    cd_metric metric;

    cd_err rc = cd__tx_begin(c, true, err);
    if (rc != CD_OK)
        goto unlock;
    rc = model_lookup(c, model, &model_id, &dim, &metric, err);
    if (rc == CD_OK)
        rc = cd__conn_stmt(c, ST_GALLERY_INSERT, &s, err);
    if (rc != CD_OK)
        goto end;
    sqlite3_bind_text(s, 1, name, -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, 2, model_id);
    sqlite3_bind_text(s, 3, index_spec, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 4, created_at, -1, SQLITE_STATIC);
    rc = cd__step_write(c, s, "gallery", name, err);
    if (rc == CD_OK && out)
        rc = gallery_read(c, ST_GALLERY_BY_ID, NULL,
                          sqlite3_last_insert_rowid(c->db), out, err);
end:
    rc = cd__tx_end(c, rc, err);
unlock:
    cd__conn_release(c);
    if (rc != CD_OK && out)
        memset(out, 0, sizeof *out);
    return rc;
}

cd_err cd_store_gallery_get(cd_store *st, const char *name, cd_gallery *out,
                            cd_error *err)
{
    if (!st || !out)
        return cd__fail(err, CD_EINVAL, "cd_store_gallery_get: NULL argument");
    memset(out, 0, sizeof *out);
    if (!cd_name_valid(name))
        return cd__fail(err, CD_ENOTFOUND, "gallery %.*s not found",
                        CD_NAME_MAX, name ? name : "(null)");
    cd_conn *c = cd__reader_acquire(st);
    cd_err rc = gallery_read(c, ST_GALLERY_BY_NAME, name, 0, out, err);
    cd__conn_release(c);
    return rc;
}

cd_err cd_store_gallery_list(cd_store *st, cd_gallery **out, size_t *n,
                             cd_error *err)
{
    if (!st || !out || !n)
        return cd__fail(err, CD_EINVAL, "cd_store_gallery_list: NULL argument");
    void *rows;
    cd_err rc = cd__list_rows(st, ST_GALLERY_LIST, 0, 0, sizeof(cd_gallery),
                              gallery_fill, &rows, n, err);
    *out = rows;
    return rc;
}

cd_err cd_store_gallery_set_policy(cd_store *st, int64_t gallery_id,
                                   cd_query_policy policy, cd_error *err)
{
    return cd_store_gallery_update(st, gallery_id, &policy, NULL, 0, err);
}

cd_err cd_store_gallery_delete(cd_store *st, int64_t gallery_id,
                               cd_error *err)
{
    static const stmt_id steps[] = {
        ST_GALLERY_DELETE_EMBEDDINGS, ST_GALLERY_DELETE_TOMBSTONES,
        ST_GALLERY_DELETE_EVALUATIONS, ST_GALLERY_DELETE_ITEMS,
        ST_GALLERY_DELETE,
    };
    if (!st)
        return cd__fail(err, CD_EINVAL, "cd_store_gallery_delete: NULL store");
    cd_conn *c = cd__writer_acquire(st);
    bool found;
    cd_err rc = cd__tx_begin(c, true, err);
    if (rc != CD_OK)
        goto unlock;
    rc = cd__run_i64(c, ST_GALLERY_SEQ, 1, gallery_id, 0, &found, NULL, err);
    if (rc == CD_OK && !found)
        rc = cd__fail(err, CD_ENOTFOUND, "gallery %lld not found",
                      (long long)gallery_id);
    for (size_t i = 0; rc == CD_OK && i < sizeof steps / sizeof steps[0]; i++)
        rc = cd__run_i64(c, steps[i], 1, gallery_id, 0, NULL, NULL, err);
    rc = cd__tx_end(c, rc, err);
unlock:
    cd__conn_release(c);
    return rc;
}

static cd_err model_count_fill(sqlite3_stmt *s, void *elem, cd_error *err)
{
    cd_model_count *mc = elem;
    memset(mc, 0, sizeof *mc);
    mc->model_id = sqlite3_column_int64(s, 0);
    mc->items = sqlite3_column_int64(s, 2);
    if (!cd__copy_column(s, 1, mc->model, sizeof mc->model))
        return cd__fail(err, CD_ECORRUPT, "model %lld has a damaged row",
                        (long long)mc->model_id);
    return CD_OK;
}

cd_err cd_store_gallery_embeddings(cd_store *st, int64_t gallery_id,
                                   cd_model_count **out, size_t *n,
                                   cd_error *err)
{
    if (!st || !out || !n)
        return cd__fail(err, CD_EINVAL,
                        "cd_store_gallery_embeddings: NULL argument");
    void *rows;
    cd_err rc = cd__list_rows(st, ST_GALLERY_EMBEDDINGS, 1, gallery_id,
                              sizeof(cd_model_count), model_count_fill, &rows, n,
                              err);
    *out = rows;
    return rc;
}

cd_err cd_store_gallery_models(cd_store *st, int64_t gallery_id,
                               cd_model_count **out, size_t *n, cd_error *err)
{
    if (!st || !out || !n)
        return cd__fail(err, CD_EINVAL, "cd_store_gallery_models: NULL argument");
    void *rows;
    cd_err rc = cd__list_rows(st, ST_GALLERY_MODELS, 1, gallery_id,
                              sizeof(cd_model_count), model_count_fill, &rows, n,
                              err);
    *out = rows;
    return rc;
}

/* --- a gallery's adapter routes (schema 007) and its updates --------------- */

/* Fills *r from an ST_ROUTE_LIST row. */
static cd_err route_fill(sqlite3_stmt *s, void *elem, cd_error *err)
{
    cd_gallery_route *r = elem;
    memset(r, 0, sizeof *r);
    r->model_id = sqlite3_column_int64(s, 0);
    r->adapter_id = sqlite3_column_int64(s, 2);
    if (!cd__copy_column(s, 1, r->model, sizeof r->model) ||
        !cd__copy_column(s, 3, r->adapter, sizeof r->adapter))
        return cd__fail(err, CD_ECORRUPT, "a route of model %lld has a damaged row",
                        (long long)r->model_id);
    return CD_OK;
}

cd_err cd_store_routes(cd_store *st, int64_t gallery_id, cd_gallery_route **out,
                       size_t *n, cd_error *err)
{
    if (!st || !out || !n)
        return cd__fail(err, CD_EINVAL, "cd_store_routes: NULL argument");
    void *rows;
    cd_err rc = cd__list_rows(st, ST_ROUTE_LIST, 1, gallery_id, sizeof(cd_gallery_route),
                              route_fill, &rows, n, err);
    *out = rows;
    return rc;
}

/* Runs statement id with the three ids bound (as many as it takes) on c;
 * its changed rows into *changed. */
static cd_err run_ids(cd_conn *c, stmt_id id, int64_t a, int64_t b, int64_t d,
                      int *changed, cd_error *err)
{
    sqlite3_stmt *s = NULL;
    cd_err rc = cd__conn_stmt(c, id, &s, err);
    if (rc != CD_OK)
        return rc;
    const int64_t args[] = {a, b, d};
    for (int i = 0; i < sqlite3_bind_parameter_count(s) && i < 3; i++)
        sqlite3_bind_int64(s, i + 1, args[i]);
    rc = cd__step_write(c, s, NULL, NULL, err);
    *changed = sqlite3_changes(c->db);
    return rc;
}

cd_err cd_store_gallery_update(cd_store *st, int64_t gallery_id,
                               const cd_query_policy *policy,
                               const cd_route_change *changes, size_t n,
                               cd_error *err)
{
    if (!st || (n && !changes))
        return cd__fail(err, CD_EINVAL, "cd_store_gallery_update: NULL argument");
    if (policy && *policy != CD_POLICY_VERIFIED && *policy != CD_POLICY_DECLARED &&
        *policy != CD_POLICY_ANY)
        return cd__fail(err, CD_EINVAL, "unknown query policy %d", (int)*policy);
    cd_conn *c = cd__writer_acquire(st);
    cd_err rc = cd__tx_begin(c, true, err);
    if (rc != CD_OK)
        goto unlock;
    bool found;
    int64_t seq;
    rc = cd__run_i64(c, ST_GALLERY_SEQ, 1, gallery_id, 0, &found, &seq, err);
    if (rc == CD_OK && !found)
        rc = cd__fail(err, CD_ENOTFOUND, "gallery %lld not found", (long long)gallery_id);
    if (rc == CD_OK && policy) {
        sqlite3_stmt *s = NULL;
        rc = cd__conn_stmt(c, ST_GALLERY_SET_POLICY, &s, err);
        if (rc == CD_OK) {
            sqlite3_bind_int64(s, 1, gallery_id);
            sqlite3_bind_text(s, 2, cd_policy_name(*policy), -1, SQLITE_STATIC);
            rc = cd__step_write(c, s, NULL, NULL, err);
        }
    }
    for (size_t i = 0; rc == CD_OK && i < n; i++) {
        int changed = 0;
        if (changes[i].adapter_id == 0) {
            rc = run_ids(c, ST_ROUTE_DELETE, gallery_id, changes[i].model_id, 0, &changed, err);
            continue;
        }
        rc = run_ids(c, ST_ROUTE_SET, gallery_id, changes[i].model_id, changes[i].adapter_id,
                     &changed, err);
        if (rc == CD_OK && changed == 0)
            rc = cd__fail(err, CD_ENOTFOUND, "adapter %lld no longer exists",
                          (long long)changes[i].adapter_id);
    }
    rc = cd__tx_end(c, rc, err);
unlock:
    cd__conn_release(c);
    return rc;
}

void cd_adapter_record_finish(cd_adapter_record *a)
{
    if (!a)
        return;
    free(a->weights);
    free(a->bias);
    a->weights = a->bias = NULL;
}

void cd_adapter_records_destroy(cd_adapter_record *a, size_t n)
{
    for (size_t i = 0; a && i < n; i++)
        cd_adapter_record_finish(&a[i]);
    free(a);
}
