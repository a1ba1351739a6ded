/*
 * store_eval.c - stored evaluations (one row per evaluation run, with
 * its JSON report) and the labelled items an evaluation reads (see
 * store.h for the contract, store_int.h for what the store_*.c files
 * share).
 *
 * A metric that could not be computed is NaN in memory and NULL in the
 * table; evaluations of a gallery are deleted with it (store_catalog.c).
 */
#include "store_int.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* --- evaluations -------------------------------------------------------- */

static void bind_real(sqlite3_stmt *s, int col, double v)
{
    if (isnan(v))
        sqlite3_bind_null(s, col);
    else
        sqlite3_bind_double(s, col, v);
}

static double column_real(sqlite3_stmt *s, int col)
{
    return sqlite3_column_type(s, col) == SQLITE_NULL ? NAN
                                                      : sqlite3_column_double(s, col);
}

/* Fills *ev from an EVAL_SELECT row. */
static cd_err evaluation_from_row(sqlite3_stmt *s, cd_evaluation *ev,
                                  cd_error *err)
{
    memset(ev, 0, sizeof *ev);
    ev->id = sqlite3_column_int64(s, 0);
    ev->gallery_id = sqlite3_column_int64(s, 1);
    ev->query_model_id = sqlite3_column_int64(s, 3);
    ev->gallery_model_id = sqlite3_column_int64(s, 5);
    ev->compatible = sqlite3_column_type(s, 8) == SQLITE_NULL
                         ? -1 : sqlite3_column_int(s, 8) != 0;
    ev->queries = sqlite3_column_int64(s, 10);
    ev->cross_top1 = column_real(s, 11);
    ev->baseline_top1 = column_real(s, 12);
    ev->cross_map = column_real(s, 13);
    ev->baseline_map = column_real(s, 14);
    ev->nfr = column_real(s, 15);
    if (!cd__copy_column(s, 2, ev->gallery, sizeof ev->gallery) ||
        !cd__copy_column(s, 4, ev->query_model, sizeof ev->query_model) ||
        !cd__copy_column(s, 6, ev->gallery_model, sizeof ev->gallery_model) ||
        !cd__copy_column(s, 7, ev->created_at, sizeof ev->created_at) ||
        !cd__copy_column(s, 9, ev->criterion, sizeof ev->criterion))
        return cd__fail(err, CD_ECORRUPT, "evaluation %lld has a damaged row",
                        (long long)ev->id);
    return cd__dup_column(s, 16, &ev->report, err);
}

void cd_evaluation_finish(cd_evaluation *ev)
{
    if (!ev)
        return;
    free(ev->report);
    ev->report = NULL;
}

void cd_evaluations_destroy(cd_evaluation *evs, size_t n)
{
    for (size_t i = 0; evs && i < n; i++)
        cd_evaluation_finish(&evs[i]);
    free(evs);
}

cd_err cd_store_evaluation_insert(cd_store *st, cd_evaluation *ev,
                                  cd_error *err)
{
    if (!st || !ev || !ev->report)
        return cd__fail(err, CD_EINVAL, "cd_store_evaluation_insert: NULL argument");
    char created[32];
    cd__now_rfc3339(created);
    sqlite3_stmt *s = NULL;
    bool found;
    cd_conn *c = cd__writer_acquire(st);
    cd_err rc = cd__tx_begin(c, true, err);
    if (rc != CD_OK)
        goto unlock;
    rc = cd__run_i64(c, ST_GALLERY_SEQ, 1, ev->gallery_id, 0, &found, NULL, err);
    if (rc == CD_OK && !found)
        rc = cd__fail(err, CD_ENOTFOUND, "gallery %lld no longer exists",
                      (long long)ev->gallery_id);
    if (rc == CD_OK)
        rc = cd__conn_stmt(c, ST_EVAL_INSERT, &s, err);
    if (rc == CD_OK) {
        sqlite3_bind_int64(s, 1, ev->gallery_id);
        sqlite3_bind_int64(s, 2, ev->query_model_id);
        sqlite3_bind_int64(s, 3, ev->gallery_model_id);
        sqlite3_bind_text(s, 4, created, -1, SQLITE_STATIC);
        if (ev->compatible >= 0)
            sqlite3_bind_int(s, 5, ev->compatible);
        else
            sqlite3_bind_null(s, 5);
        sqlite3_bind_text(s, 6, ev->criterion, -1, SQLITE_STATIC);
        sqlite3_bind_int64(s, 7, ev->queries);
        bind_real(s, 8, ev->cross_top1);
        bind_real(s, 9, ev->baseline_top1);
        bind_real(s, 10, ev->cross_map);
        bind_real(s, 11, ev->baseline_map);
        bind_real(s, 12, ev->nfr);
        sqlite3_bind_text(s, 13, ev->report, -1, SQLITE_STATIC);
        rc = cd__step_write(c, s, NULL, NULL, err);
    }
    int64_t id = sqlite3_last_insert_rowid(c->db);
    rc = cd__tx_end(c, rc, err);
unlock:
    cd__conn_release(c);
    if (rc == CD_OK) {
        ev->id = id;
        memcpy(ev->created_at, created, sizeof created);
    }
    return rc;
}

/*
 * Runs an EVAL_SELECT statement bound by bind (with ctx) on a read
 * connection and collects its rows into a malloc'd array.
 */
static cd_err evaluation_rows(cd_store *st, stmt_id id,
                              const int64_t *args, int nargs,
                              cd_evaluation **out, size_t *n, cd_error *err)
{
    cd_evaluation *rows = NULL;
    size_t count = 0, cap = 0;
    sqlite3_stmt *s = NULL;
    *out = NULL;
    *n = 0;
    cd_conn *c = cd__reader_acquire(st);
    cd_err rc = cd__conn_stmt(c, id, &s, err);
    if (rc != CD_OK)
        goto done;
    for (int a = 0; a < nargs; a++)
        sqlite3_bind_int64(s, a + 1, args[a]);
    int step;
    while ((step = sqlite3_step(s)) == SQLITE_ROW) {
        if (count == cap) {
            size_t ncap = cap ? cap * 2 : 16;
            cd_evaluation *grown = realloc(rows, ncap * sizeof *grown);
            if (!grown) {
                rc = cd__fail(err, CD_ENOMEM, "out of memory listing evaluations");
                goto done;
            }
            rows = grown;
            cap = ncap;
        }
        rc = evaluation_from_row(s, &rows[count], err);
        if (rc != CD_OK) {
            cd_evaluation_finish(&rows[count]);
            goto done;
        }
        count++;
    }
    if (step != SQLITE_DONE)
        rc = cd__db_fail(err, c, step);
done:
    cd__stmt_done(s);
    cd__conn_release(c);
    if (rc != CD_OK) {
        cd_evaluations_destroy(rows, count);
        return rc;
    }
    *out = rows;
    *n = count;
    return CD_OK;
}

cd_err cd_store_evaluation_get(cd_store *st, int64_t id, cd_evaluation *out,
                               cd_error *err)
{
    cd_evaluation *rows = NULL;
    size_t n = 0;
    memset(out, 0, sizeof *out);
    cd_err rc = evaluation_rows(st, ST_EVAL_GET, &id, 1, &rows, &n, err);
    if (rc != CD_OK)
        return rc;
    if (n == 0) {
        free(rows);
        return cd__fail(err, CD_ENOTFOUND, "evaluation %lld not found", (long long)id);
    }
    *out = rows[0];
    free(rows);
    return CD_OK;
}

cd_err cd_store_evaluation_list(cd_store *st, int64_t gallery_id,
                                int64_t query_model_id, int64_t before,
                                size_t limit, bool with_report,
                                cd_evaluation **out, size_t *n,
                                cd_error *err)
{
    int64_t args[] = {gallery_id, query_model_id, before,
                      (int64_t)(limit > INT64_MAX ? INT64_MAX : limit),
                      with_report};
    return evaluation_rows(st, ST_EVAL_LIST, args, 5, out, n, err);
}

cd_err cd_store_evaluation_latest(cd_store *st, int64_t gallery_id,
                                  int64_t query_model_id,
                                  cd_evaluation **out, size_t *n,
                                  cd_error *err)
{
    int64_t args[] = {gallery_id, query_model_id};
    return evaluation_rows(st, ST_EVAL_LATEST, args, 2, out, n, err);
}

void cd_eval_items_finish(cd_eval_items *items)
{
    if (!items)
        return;
    for (size_t i = 0; i < items->n; i++) {
        if (items->ids)
            free(items->ids[i]);
        if (items->labels)
            free(items->labels[i]);
    }
    free(items->ids);
    free(items->labels);
    free(items->vectors);
    free(items->paragon);
    memset(items, 0, sizeof *items);
}

/* Grows every array of it to hold cap items. */
static bool eval_items_grow(cd_eval_items *it, size_t cap, size_t bytes)
{
    char **ids = realloc(it->ids, cap * sizeof *ids);
    if (!ids)
        return false;
    it->ids = ids;
    char **labels = realloc(it->labels, cap * sizeof *labels);
    if (!labels)
        return false;
    it->labels = labels;
    float *v = realloc(it->vectors, cap * bytes);
    if (!v)
        return false;
    it->vectors = v;
    if (it->paragon) {
        float *p = realloc(it->paragon, cap * bytes);
        if (!p)
            return false;
        it->paragon = p;
    }
    return true;
}

cd_err cd_store_eval_items(cd_store *st, int64_t gallery_id, int64_t model_id,
                           int dim, int64_t paragon_model_id,
                           cd_eval_items *out, cd_error *err)
{
    memset(out, 0, sizeof *out);
    if (!st || dim < 1 || dim > CD_DIM_MAX)
        return cd__fail(err, CD_EINVAL, "cd_store_eval_items: bad argument");
    size_t bytes = (size_t)dim * sizeof(float), cap = 0;
    bool paragon = paragon_model_id != 0;   /* still possible */
    cd_eval_items it = {0};
    sqlite3_stmt *s = NULL;
    cd_conn *c = cd__reader_acquire(st);
    cd_err rc = cd__tx_begin(c, false, err);
    if (rc != CD_OK)
        goto unlock;
    rc = cd__conn_stmt(c, ST_EVAL_ITEMS, &s, err);
    if (rc != CD_OK)
        goto end;
    sqlite3_bind_int64(s, 1, gallery_id);
    sqlite3_bind_int64(s, 2, model_id);
    sqlite3_bind_int64(s, 3, paragon_model_id);
    int step;
    while ((step = sqlite3_step(s)) == SQLITE_ROW) {
        if (it.n == cap) {
            cap = cap ? 2 * cap : 1024;
            if (paragon && !it.paragon && !(it.paragon = malloc(bytes))) {
                rc = cd__fail(err, CD_ENOMEM, "out of memory loading the gallery");
                break;
            }
            if (!eval_items_grow(&it, cap, bytes)) {
                rc = cd__fail(err, CD_ENOMEM, "out of memory loading the gallery");
                break;
            }
        }
        size_t i = it.n;
        const void *v = sqlite3_column_blob(s, 2);
        const void *p = sqlite3_column_blob(s, 3);
        if (!v || (size_t)sqlite3_column_bytes(s, 2) != bytes ||
            (p && (size_t)sqlite3_column_bytes(s, 3) != bytes)) {
            rc = cd__fail(err, CD_ECORRUPT, "an embedding of gallery %lld has the wrong size",
                          (long long)gallery_id);
            break;
        }
        it.ids[i] = it.labels[i] = NULL;
        it.n++;
        rc = cd__dup_column(s, 0, &it.ids[i], err);
        if (rc == CD_OK)
            rc = cd__dup_column(s, 1, &it.labels[i], err);
        if (rc != CD_OK)
            break;
        memcpy(it.vectors + i * (size_t)dim, v, bytes);
        if (paragon && p) {
            memcpy(it.paragon + i * (size_t)dim, p, bytes);
        } else if (paragon) {
            paragon = false;    /* an item without one: no paragon */
            free(it.paragon);
            it.paragon = NULL;
        }
    }
    if (rc == CD_OK && step != SQLITE_DONE)
        rc = cd__db_fail(err, c, step);
end:
    cd__stmt_done(s);
    rc = cd__tx_end(c, rc, err);
unlock:
    cd__conn_release(c);
    if (rc != CD_OK) {
        cd_eval_items_finish(&it);
        return rc;
    }
    if (!paragon) {
        free(it.paragon);
        it.paragon = NULL;
    }
    *out = it;
    return CD_OK;
}
