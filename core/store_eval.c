/*
 * store_eval.c - stored evaluations and the labelled items an
 * evaluation reads (see store.h for the contract, store_int.h for what
 * the store_*.c files share).
 *
 * An evaluation is its evaluations row and its report's rows in
 * evaluation_metrics, evaluation_labels and evaluation_flip_ids (schema
 * 005), written in one transaction and read in one.  A metric that could
 * not be computed is NaN in memory and NULL in the tables; a report that
 * has no baseline (or paragon) has no rows of that ranking.  Evaluations
 * of a gallery are deleted with it (store_catalog.c), their report rows
 * with them (ON DELETE CASCADE).
 */
#include "store_int.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* --- evaluations -------------------------------------------------------- */

/* The report's rankings, by their name in evaluation_metrics.ranking. */
enum { RANK_CROSS, RANK_BASELINE, RANK_PARAGON, RANK_UPDATE_GAIN, RANK_COUNT };
static const char *const ranking_names[RANK_COUNT] = {
    "cross", "baseline", "paragon", "update_gain",
};

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

static cd_err damaged(cd_error *err, int64_t id)
{
    return cd__fail(err, CD_ECORRUPT, "evaluation %lld has a damaged report",
                    (long long)id);
}

/* The report's metrics of r's ranking `rank`, or NULL when it has none. */
static cd_eval_metrics *ranking_of(cd_eval_report *r, int rank)
{
    switch (rank) {
    case RANK_CROSS:
        return &r->cross;
    case RANK_BASELINE:
        return r->has_baseline ? &r->baseline : NULL;
    case RANK_PARAGON:
        return r->has_paragon ? &r->paragon : NULL;
    default:
        return r->has_baseline && r->has_paragon ? &r->update_gain : NULL;
    }
}

/* Inserts the rows of one ranking's metrics m (top-k for each of r's ks,
 * then map as k 0). */
static cd_err insert_metrics(cd_conn *c, int64_t id, const cd_eval_report *r,
                             int rank, const cd_eval_metrics *m, cd_error *err)
{
    cd_err rc = CD_OK;
    for (size_t i = 0; rc == CD_OK && i <= r->n_ks; i++) {
        sqlite3_stmt *s = NULL;
        rc = cd__conn_stmt(c, ST_EVAL_METRIC_INSERT, &s, err);
        if (rc != CD_OK)
            break;
        sqlite3_bind_int64(s, 1, id);
        sqlite3_bind_text(s, 2, ranking_names[rank], -1, SQLITE_STATIC);
        sqlite3_bind_int(s, 3, i < r->n_ks ? r->ks[i] : 0);
        bind_real(s, 4, i < r->n_ks ? m->top[i] : m->map);
        rc = cd__step_write(c, s, NULL, NULL, err);
    }
    return rc;
}

/* Inserts r's rows (metrics, by-label lines, flip ids) for evaluation id. */
static cd_err insert_report(cd_conn *c, int64_t id, const cd_eval_report *r,
                            cd_error *err)
{
    cd_err rc = CD_OK;
    for (int rank = 0; rc == CD_OK && rank < RANK_COUNT; rank++) {
        cd_eval_metrics *m = ranking_of((cd_eval_report *)r, rank);
        if (m)
            rc = insert_metrics(c, id, r, rank, m, err);
    }
    for (size_t i = 0; rc == CD_OK && i < r->n_labels; i++) {
        const cd_eval_label *l = &r->labels[i];
        sqlite3_stmt *s = NULL;
        rc = cd__conn_stmt(c, ST_EVAL_LABEL_INSERT, &s, err);
        if (rc != CD_OK)
            break;
        sqlite3_bind_int64(s, 1, id);
        sqlite3_bind_int64(s, 2, (int64_t)i);
        sqlite3_bind_text(s, 3, l->label, -1, SQLITE_STATIC);
        sqlite3_bind_int64(s, 4, l->queries);
        bind_real(s, 5, l->cross_top1);
        bind_real(s, 6, l->baseline_top1);
        sqlite3_bind_int64(s, 7, l->negative_flips);
        sqlite3_bind_int64(s, 8, l->positive_flips);
        rc = cd__step_write(c, s, NULL, NULL, err);
    }
    for (size_t i = 0; rc == CD_OK && i < r->n_negative_flips; i++) {
        sqlite3_stmt *s = NULL;
        rc = cd__conn_stmt(c, ST_EVAL_FLIP_INSERT, &s, err);
        if (rc != CD_OK)
            break;
        sqlite3_bind_int64(s, 1, id);
        sqlite3_bind_int64(s, 2, (int64_t)i);
        sqlite3_bind_text(s, 3, r->negative_flip_ids[i], -1, SQLITE_STATIC);
        rc = cd__step_write(c, s, NULL, NULL, err);
    }
    return rc;
}

/* A metric row as read, before the ks are known. */
typedef struct metric_row {
    int rank;
    int k;
    double value;
} metric_row;

#define METRIC_ROWS_MAX (RANK_COUNT * (CD_EVAL_KS_MAX + 1))

/* The index of k in r's ks, n_ks for map (k 0), -1 when it is neither. */
static int metric_slot(const cd_eval_report *r, int k)
{
    if (k == 0)
        return (int)r->n_ks;
    for (size_t i = 0; i < r->n_ks; i++)
        if (r->ks[i] == k)
            return (int)i;
    return -1;
}

/*
 * Reads evaluation id's metric rows into r: its ks from the cross
 * ranking, which must be there, and every ranking it has, each with a
 * value for every k and map.
 */
static cd_err read_metrics(cd_conn *c, int64_t id, cd_eval_report *r,
                           cd_error *err)
{
    metric_row rows[METRIC_ROWS_MAX];
    size_t n = 0, count[RANK_COUNT] = {0};
    sqlite3_stmt *s = NULL;
    cd_err rc = cd__conn_stmt(c, ST_EVAL_METRICS, &s, err);
    if (rc != CD_OK)
        return rc;
    sqlite3_bind_int64(s, 1, id);
    int step = SQLITE_DONE;
    while (rc == CD_OK && (step = sqlite3_step(s)) == SQLITE_ROW) {
        const char *name = (const char *)sqlite3_column_text(s, 0);
        int64_t k = sqlite3_column_int64(s, 1);
        metric_row row = {.rank = -1, .k = (int)k, .value = column_real(s, 2)};
        for (int i = 0; name && i < RANK_COUNT; i++)
            if (strcmp(name, ranking_names[i]) == 0)
                row.rank = i;
        bool new_k = row.rank == RANK_CROSS && k > 0;
        if (row.rank < 0 || k < 0 || k > CD_K_MAX || n == METRIC_ROWS_MAX ||
            (new_k && r->n_ks == CD_EVAL_KS_MAX)) {
            rc = damaged(err, id);
            break;
        }
        if (new_k)      /* rows come by k, so the ks ascend */
            r->ks[r->n_ks++] = row.k;
        count[row.rank]++;
        rows[n++] = row;
    }
    if (rc == CD_OK && step != SQLITE_DONE)
        rc = cd__db_fail(err, c, step);
    cd__stmt_done(s);
    if (rc != CD_OK)
        return rc;
    r->has_baseline = count[RANK_BASELINE] > 0;
    r->has_paragon = count[RANK_PARAGON] > 0;
    for (int rank = 0; rank < RANK_COUNT; rank++) {
        cd_eval_metrics *m = ranking_of(r, rank);
        if (r->n_ks == 0 || (m ? count[rank] != r->n_ks + 1 : count[rank] != 0))
            return damaged(err, id);
        if (m)
            for (size_t i = 0; i < r->n_ks; i++)
                m->top[i] = NAN;
    }
    for (size_t i = 0; i < n; i++) {
        int slot = metric_slot(r, rows[i].k);
        if (slot < 0)
            return damaged(err, id);
        cd_eval_metrics *m = ranking_of(r, rows[i].rank);
        if (slot == (int)r->n_ks)
            m->map = rows[i].value;
        else
            m->top[slot] = rows[i].value;
    }
    return CD_OK;
}

/* Reads evaluation id's by-label lines and flip ids into r. */
static cd_err read_lists(cd_conn *c, int64_t id, cd_eval_report *r,
                         cd_error *err)
{
    sqlite3_stmt *s = NULL;
    size_t cap = 0;
    cd_err rc = cd__conn_stmt(c, ST_EVAL_LABELS, &s, err);
    int step = SQLITE_DONE;
    if (rc == CD_OK)
        sqlite3_bind_int64(s, 1, id);
    while (rc == CD_OK && (step = sqlite3_step(s)) == SQLITE_ROW) {
        if (r->n_labels == cap) {
            size_t ncap = cap ? 2 * cap : 16;
            cd_eval_label *grown = realloc(r->labels, ncap * sizeof *grown);
            if (!grown) {
                rc = cd__fail(err, CD_ENOMEM, "out of memory reading evaluation %lld",
                              (long long)id);
                break;
            }
            r->labels = grown;
            cap = ncap;
        }
        cd_eval_label *l = &r->labels[r->n_labels];
        rc = cd__dup_column(s, 0, &l->label, err);
        if (rc != CD_OK)
            break;
        r->n_labels++;
        if (!l->label) {
            rc = damaged(err, id);
            break;
        }
        l->queries = sqlite3_column_int64(s, 1);
        l->cross_top1 = column_real(s, 2);
        l->baseline_top1 = column_real(s, 3);
        l->negative_flips = sqlite3_column_int64(s, 4);
        l->positive_flips = sqlite3_column_int64(s, 5);
    }
    if (rc == CD_OK && step != SQLITE_DONE)
        rc = cd__db_fail(err, c, step);
    cd__stmt_done(s);
    s = NULL;
    cap = 0;
    if (rc == CD_OK) {
        rc = cd__conn_stmt(c, ST_EVAL_FLIP_IDS, &s, err);
        if (rc == CD_OK)
            sqlite3_bind_int64(s, 1, id);
    }
    while (rc == CD_OK && (step = sqlite3_step(s)) == SQLITE_ROW) {
        if (r->n_negative_flips == cap) {
            size_t ncap = cap ? 2 * cap : 16;
            char **grown = realloc(r->negative_flip_ids, ncap * sizeof *grown);
            if (!grown) {
                rc = cd__fail(err, CD_ENOMEM, "out of memory reading evaluation %lld",
                              (long long)id);
                break;
            }
            r->negative_flip_ids = grown;
            cap = ncap;
        }
        char **slot = &r->negative_flip_ids[r->n_negative_flips];
        rc = cd__dup_column(s, 0, slot, err);
        if (rc != CD_OK)
            break;
        r->n_negative_flips++;
        if (!*slot)
            rc = damaged(err, id);
    }
    if (rc == CD_OK && step != SQLITE_DONE)
        rc = cd__db_fail(err, c, step);
    cd__stmt_done(s);
    return rc;
}

/*
 * Reads the report of ev, whose EVAL_SELECT row s is: its scalars from
 * the row, its metrics and, when lists, its by-label lines and flip ids.
 */
static cd_err report_from_rows(cd_conn *c, sqlite3_stmt *s, cd_evaluation *ev,
                               bool lists, cd_error *err)
{
    cd_eval_report *r = calloc(1, sizeof *r);
    if (!r)
        return cd__fail(err, CD_ENOMEM, "out of memory reading evaluation %lld",
                        (long long)ev->id);
    r->primary_k = sqlite3_column_int(s, 16);
    r->queries = ev->queries;
    r->skipped = sqlite3_column_int64(s, 17);
    r->gallery_items = sqlite3_column_int64(s, 18);
    r->compatible = ev->compatible;
    r->negative_flips = sqlite3_column_int64(s, 19);
    r->positive_flips = sqlite3_column_int64(s, 20);
    r->nfr = ev->nfr;
    r->nfi = column_real(s, 21);
    r->pfr = column_real(s, 22);
    r->coverage = ev->coverage;
    cd_err rc = read_metrics(c, ev->id, r, err);
    if (rc == CD_OK && lists)
        rc = read_lists(c, ev->id, r, err);
    int slot = rc == CD_OK ? metric_slot(r, r->primary_k) : -1;
    if (rc == CD_OK && slot < 0)
        rc = damaged(err, ev->id);
    if (rc != CD_OK) {
        cd_eval_report_destroy(r);
        return rc;
    }
    r->primary_cross = slot == (int)r->n_ks ? r->cross.map : r->cross.top[slot];
    r->primary_baseline = !r->has_baseline ? NAN
                          : slot == (int)r->n_ks ? r->baseline.map : r->baseline.top[slot];
    ev->report = r;
    return CD_OK;
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
    ev->adapter_id = sqlite3_column_int64(s, 23);
    const char *view = (const char *)sqlite3_column_text(s, 25);
    ev->mixed = view && strcmp(view, "mixed") == 0;
    ev->coverage = ev->mixed ? column_real(s, 26) : NAN;
    if (!view || (!ev->mixed && strcmp(view, "gallery_model") != 0) ||
        ev->mixed != !isnan(ev->coverage))
        return cd__fail(err, CD_ECORRUPT, "evaluation %lld has a damaged gallery view",
                        (long long)ev->id);
    if ((ev->adapter_id != 0) != (sqlite3_column_type(s, 24) != SQLITE_NULL) ||
        (ev->adapter_id != 0 && !cd__copy_column(s, 24, ev->adapter, sizeof ev->adapter)) ||
        !cd__copy_column(s, 2, ev->gallery, sizeof ev->gallery) ||
        !cd__copy_column(s, 4, ev->query_model, sizeof ev->query_model) ||
        !cd__copy_column(s, 6, ev->gallery_model, sizeof ev->gallery_model) ||
        !cd__copy_column(s, 7, ev->created_at, sizeof ev->created_at) ||
        !cd__copy_column(s, 9, ev->criterion, sizeof ev->criterion))
        return cd__fail(err, CD_ECORRUPT, "evaluation %lld has a damaged row",
                        (long long)ev->id);
    return cd__dup_column(s, 27, &ev->filter, err);
}

void cd_evaluation_finish(cd_evaluation *ev)
{
    if (!ev)
        return;
    cd_eval_report_destroy(ev->report);
    ev->report = NULL;
    free(ev->filter);
    ev->filter = NULL;
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
    const cd_eval_report *r = ev->report;
    char created[32];
    cd__now_rfc3339(created);
    sqlite3_stmt *s = NULL;
    bool found;
    int64_t id = 0;
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
        sqlite3_bind_int(s, 13, r->primary_k);
        sqlite3_bind_int64(s, 14, r->skipped);
        sqlite3_bind_int64(s, 15, r->gallery_items);
        if (r->has_baseline) {
            sqlite3_bind_int64(s, 16, r->negative_flips);
            sqlite3_bind_int64(s, 17, r->positive_flips);
        }
        bind_real(s, 18, r->has_baseline ? r->nfi : NAN);
        bind_real(s, 19, r->has_baseline ? r->pfr : NAN);
        if (ev->adapter_id != 0) {
            sqlite3_bind_int64(s, 20, ev->adapter_id);
            sqlite3_bind_text(s, 21, ev->adapter, -1, SQLITE_STATIC);
        }
        sqlite3_bind_text(s, 22, ev->mixed ? "mixed" : "gallery_model", -1, SQLITE_STATIC);
        bind_real(s, 23, ev->mixed ? ev->coverage : NAN);
        if (ev->filter)
            sqlite3_bind_text(s, 24, ev->filter, -1, SQLITE_STATIC);
        else
            sqlite3_bind_null(s, 24);
        rc = cd__step_write(c, s, NULL, NULL, err);
    }
    if (rc == CD_OK) {
        id = sqlite3_last_insert_rowid(c->db);
        rc = insert_report(c, id, r, err);
    }
    rc = cd__tx_end(c, rc, err);
unlock:
    cd__conn_release(c);
    if (rc == CD_OK) {
        ev->id = id;
        memcpy(ev->created_at, created, sizeof created);
    }
    return rc;
}

/* How much of each report evaluation_rows reads. */
typedef enum report_part {
    REPORT_NONE,        /* the row only */
    REPORT_NUMBERS,     /* metrics and flips, not the long lists */
    REPORT_ALL,
} report_part;

/*
 * Runs an EVAL_SELECT statement with nargs integer arguments on a read
 * connection, in one read transaction, and collects its rows, with the
 * part of their reports asked for, into a malloc'd array.
 */
static cd_err evaluation_rows(cd_store *st, stmt_id id,
                              const int64_t *args, int nargs, report_part part,
                              cd_evaluation **out, size_t *n, cd_error *err)
{
    cd_evaluation *rows = NULL;
    size_t count = 0, cap = 0;
    sqlite3_stmt *s = NULL;
    *out = NULL;
    *n = 0;
    cd_conn *c = cd__reader_acquire(st);
    cd_err rc = cd__tx_begin(c, false, err);
    if (rc != CD_OK)
        goto unlock;
    rc = cd__conn_stmt(c, id, &s, err);
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
        if (rc == CD_OK && part != REPORT_NONE)
            rc = report_from_rows(c, s, &rows[count], part == REPORT_ALL, err);
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
    rc = cd__tx_end(c, rc, err);
unlock:
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
    cd_err rc = evaluation_rows(st, ST_EVAL_GET, &id, 1, REPORT_ALL, &rows, &n, err);
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
                      (int64_t)(limit > INT64_MAX ? INT64_MAX : limit)};
    return evaluation_rows(st, ST_EVAL_LIST, args, 4,
                           with_report ? REPORT_NUMBERS : REPORT_NONE, out, n, err);
}

cd_err cd_store_evaluation_latest(cd_store *st, int64_t gallery_id,
                                  int64_t query_model_id, int64_t adapter_id,
                                  cd_evaluation **out, size_t *n,
                                  cd_error *err)
{
    int64_t args[] = {gallery_id, query_model_id, adapter_id};
    return evaluation_rows(st, ST_EVAL_LATEST, args, 3, REPORT_NONE, out, n, err);
}

cd_err cd_store_evaluation_by_adapter(cd_store *st, int64_t adapter_id,
                                      size_t limit, cd_evaluation **out,
                                      size_t *n, cd_error *err)
{
    int64_t args[] = {adapter_id, (int64_t)(limit > INT64_MAX ? INT64_MAX : limit)};
    return evaluation_rows(st, ST_EVAL_BY_ADAPTER, args, 2, REPORT_NONE, out, n, err);
}

cd_err cd_store_evaluation_latest_pair(cd_store *st, int64_t gallery_id,
                                       int64_t query_model_id,
                                       int64_t adapter_id,
                                       cd_evaluation **out, size_t *n,
                                       cd_error *err)
{
    int64_t args[] = {gallery_id, query_model_id, adapter_id};
    return evaluation_rows(st, ST_EVAL_LATEST_PAIR, args, 3, REPORT_NONE, out, n, err);
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
    free(items->rowids);
    free(items->ids);
    free(items->labels);
    free(items->vectors);
    free(items->own);
    free(items->has_own);
    memset(items, 0, sizeof *items);
}

/* Grows every array of it to hold cap items (own rows of own_bytes). */
static bool eval_items_grow(cd_eval_items *it, size_t cap, size_t bytes,
                            size_t own_bytes)
{
    int64_t *rowids = realloc(it->rowids, cap * sizeof *rowids);
    if (!rowids)
        return false;
    it->rowids = rowids;
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
    if (own_bytes) {
        float *o = realloc(it->own, cap * own_bytes);
        if (!o)
            return false;
        it->own = o;
        unsigned char *h = realloc(it->has_own, cap);
        if (!h)
            return false;
        it->has_own = h;
    }
    return true;
}

cd_err cd_store_eval_items(cd_store *st, int64_t gallery_id, int64_t model_id,
                           int dim, int64_t own_model_id, int own_dim,
                           cd_eval_items *out, cd_error *err)
{
    memset(out, 0, sizeof *out);
    if (!st || dim < 1 || dim > CD_DIM_MAX ||
        (own_model_id != 0 && (own_dim < 1 || own_dim > CD_DIM_MAX)))
        return cd__fail(err, CD_EINVAL, "cd_store_eval_items: bad argument");
    size_t bytes = (size_t)dim * sizeof(float), cap = 0;
    size_t own_bytes = own_model_id ? (size_t)own_dim * sizeof(float) : 0;
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
    sqlite3_bind_int64(s, 3, own_model_id);
    int step;
    while ((step = sqlite3_step(s)) == SQLITE_ROW) {
        if (it.n == cap) {
            cap = cap ? 2 * cap : 1024;
            if (!eval_items_grow(&it, cap, bytes, own_bytes)) {
                rc = cd__fail(err, CD_ENOMEM, "out of memory loading the gallery");
                break;
            }
        }
        size_t i = it.n;
        const void *v = sqlite3_column_blob(s, 2);
        const void *p = own_bytes ? sqlite3_column_blob(s, 3) : NULL;
        if (!v || (size_t)sqlite3_column_bytes(s, 2) != bytes ||
            (p && (size_t)sqlite3_column_bytes(s, 3) != own_bytes)) {
            rc = cd__fail(err, CD_ECORRUPT, "an embedding of gallery %lld has the wrong size",
                          (long long)gallery_id);
            break;
        }
        it.ids[i] = it.labels[i] = NULL;
        it.rowids[i] = sqlite3_column_int64(s, 4);
        it.n++;
        rc = cd__dup_column(s, 0, &it.ids[i], err);
        if (rc == CD_OK)
            rc = cd__dup_column(s, 1, &it.labels[i], err);
        if (rc != CD_OK)
            break;
        memcpy(it.vectors + i * (size_t)dim, v, bytes);
        if (own_bytes) {
            float *row = it.own + i * (size_t)own_dim;
            if (p)
                memcpy(row, p, own_bytes);
            else
                memset(row, 0, own_bytes);
            it.has_own[i] = p != NULL;
            it.n_own += p != NULL;
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
    *out = it;
    return CD_OK;
}
