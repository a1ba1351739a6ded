/*
 * engine_eval.c - evaluations as one core call: read the evaluation
 * gallery, map the probes through an adapter when one is asked for
 * (adapter.c), rank it exactly (eval.c), store the structured report.
 */
#include "engine_int.h"

#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "adapter.h"
#include "eval.h"
#include "idset.h"
#include "index.h"
#include "text.h"

/* --- evaluations ----------------------------------------------------- */

/*
 * Copies n vectors of dim floats, checking finiteness and normalising for
 * cosine; `what` names the set in messages ("query", "baseline").
 */
static cd_err copy_probe_vectors(const cd_model *m, const float *in, size_t n,
                                 const char *what, float **out, cd_error *err)
{
    size_t dim = (size_t)m->dim;
    *out = NULL;
    if (n == 0)
        return CD_OK;
    float *buf = malloc(n * dim * sizeof *buf);
    if (!buf)
        return cd__fail(err, CD_ENOMEM, "out of memory for %zu %s vectors", n, what);
    memcpy(buf, in, n * dim * sizeof *buf);
    for (size_t i = 0; i < n; i++) {
        float *v = buf + i * dim;
        if (!cd_vec_finite(v, dim)) {
            free(buf);
            return cd__fail(err, CD_EVECTOR, "%s %zu: vector has a NaN or infinite value", what, i);
        }
        if (m->metric == CD_METRIC_COSINE && !cd_vec_normalize(v, dim)) {
            free(buf);
            return cd__fail(err, CD_EVECTOR, "%s %zu: zero vector has no direction for cosine model %s",
                            what, i, m->name);
        }
    }
    *out = buf;
    return CD_OK;
}

/* Fills ev's verdict, criterion text and summary numbers from r. */
static void eval_summary(const cd_eval_report *r, cd_evaluation *ev)
{
    char name[CD_EVAL_METRIC_NAME_SIZE];
    cd_eval_metric_name(r->primary_k, name);
    ev->compatible = r->compatible;
    ev->queries = r->queries;
    if (r->compatible < 0)
        snprintf(ev->criterion, sizeof ev->criterion,
                 "%s new->old %.4f; no baseline, so no verdict", name, r->primary_cross);
    else
        snprintf(ev->criterion, sizeof ev->criterion, "%s new->old %.4f %s old->old %.4f",
                 name, r->primary_cross, r->compatible ? ">" : "<=", r->primary_baseline);
    size_t top1 = r->n_ks;
    for (size_t i = 0; i < r->n_ks; i++)
        if (r->ks[i] == 1)
            top1 = i;
    ev->cross_top1 = top1 < r->n_ks ? r->cross.top[top1] : NAN;
    ev->baseline_top1 = top1 < r->n_ks && r->has_baseline ? r->baseline.top[top1] : NAN;
    ev->cross_map = r->cross.map;
    ev->baseline_map = r->has_baseline ? r->baseline.map : NAN;
    ev->nfr = r->has_baseline ? r->nfr : NAN;
}

/*
 * Whether adapter a can map probes of qm for a gallery of model gm:
 * CD_EINVAL when it maps from another model than the query model,
 * CD_ECONFLICT when it maps into another model than the gallery's.
 */
static cd_err adapter_check(const cd_adapter_record *a, const cd_model *qm,
                            const cd_model *gm, const char *gallery_name, cd_error *err)
{
    if (a->from_id != qm->id)
        return cd__fail(err, CD_EINVAL, "adapter %s maps from model %s, not from the query model %s",
                        a->name, a->from, qm->name);
    if (a->to_id != gm->id)
        return cd__fail(err, CD_ECONFLICT,
                        "adapter %s maps into model %s, but gallery %s is of model %s",
                        a->name, a->to, gallery_name, gm->name);
    return CD_OK;
}

/*
 * Maps the n probe vectors *pv (already checked) through adapter a into
 * a new array of a's dim_to floats each, which replaces *pv.
 */
static cd_err map_probes(const cd_adapter_record *a, size_t n, float **pv,
                         cd_error *err)
{
    cd_adapter *ad = NULL;
    float *mapped = NULL;
    if (n == 0)
        return CD_OK;
    cd_err rc = cd_adapter_from_weights(&a->info, a->weights, a->bias, &ad, err);
    if (rc == CD_OK && !(mapped = malloc(n * (size_t)a->info.params.dim_to * sizeof *mapped)))
        rc = cd__fail(err, CD_ENOMEM, "out of memory mapping %zu probes", n);
    if (rc == CD_OK)
        rc = cd_adapter_map(ad, *pv, n, mapped, err);
    cd_adapter_destroy(ad);
    if (rc != CD_OK) {
        free(mapped);
        return rc;
    }
    free(*pv);
    *pv = mapped;
    return CD_OK;
}

/*
 * Keeps of items (read from the store) those filter matches in g's
 * fields, in order, with their query-model embeddings (own_dim each) and
 * flags; n_own counts the kept ones that have one.
 */
static cd_err keep_matching(gallery *g, const cd_filter *filter,
                            cd_eval_items *items, int dim, int own_dim,
                            cd_error *err)
{
    cd_match *m = NULL;
    pthread_rwlock_rdlock(&g->lock);
    cd_err rc = cd__gallery_check(g, err);
    if (rc == CD_OK)
        rc = cd_fields_match(g->fields, filter, &m, err);
    size_t c = 0, d = (size_t)dim, od = (size_t)own_dim, n_own = 0;
    for (size_t i = 0; rc == CD_OK && i < items->n; i++) {
        if (!cd_match_has(m, items->rowids[i])) {
            free(items->ids[i]);
            free(items->labels[i]);
            continue;
        }
        items->rowids[c] = items->rowids[i];
        items->ids[c] = items->ids[i];
        items->labels[c] = items->labels[i];
        if (c != i) {
            memcpy(items->vectors + c * d, items->vectors + i * d, d * sizeof(float));
            if (items->own)
                memcpy(items->own + c * od, items->own + i * od, od * sizeof(float));
        }
        if (items->has_own) {
            items->has_own[c] = items->has_own[i];
            n_own += items->has_own[c] != 0;
        }
        c++;
    }
    if (rc == CD_OK) {
        items->n = c;
        if (items->has_own)
            items->n_own = n_own;
    }
    pthread_rwlock_unlock(&g->lock);
    cd_match_destroy(m);
    return rc;
}

cd_err cd_engine_evaluation_run(cd_engine *e, const cd_eval_request *req,
                                cd_evaluation *out, cd_error *err)
{
    gallery *g = NULL;
    cd_model qm, gm;
    float *pv = NULL, *bv = NULL, *raw = NULL;
    cd_eval_items items = {0};
    cd_gallery info;
    cd_evaluation ev = {0};
    cd_adapter_record ad = {0};
    memset(out, 0, sizeof *out);

    if (!cd_engine_ready(e))
        return cd__fail(err, CD_EBUSY, "indexes are still loading");
    cd_err rc = cd__gallery_enter(e, req->gallery, &g, err);
    if (rc != CD_OK)
        return rc;
    info = g->info;
    gm = g->model;
    rc = cd__model_by_name(e, req->query_model, &qm, err);
    if (rc == CD_OK && req->adapter) {
        rc = cd_store_adapter_get(e->st, req->adapter, true, &ad, err);
        if (rc == CD_OK)
            rc = adapter_check(&ad, &qm, &gm, info.name, err);
    } else if (rc == CD_OK && qm.dim != gm.dim) {
        rc = cd__fail(err, CD_EDIM, "query model %s has dim %d, gallery %s is of model %s with dim %d",
                      qm.name, qm.dim, info.name, gm.name, gm.dim);
    } else if (rc == CD_OK && qm.metric != gm.metric) {
        rc = cd__fail(err, CD_EINVAL, "query model %s uses metric %s, gallery model %s uses %s",
                      qm.name, cd_metric_name(qm.metric), gm.name, cd_metric_name(gm.metric));
    }
    if (rc == CD_OK && req->mixed && qm.metric != gm.metric)
        rc = cd__fail(err, CD_EINVAL, "a mixed view ranks items of query model %s (metric %s) "
                      "together with items of gallery model %s (metric %s): the metrics must agree",
                      qm.name, cd_metric_name(qm.metric), gm.name, cd_metric_name(gm.metric));
    if (rc == CD_OK)
        rc = copy_probe_vectors(&qm, req->probes.vectors, req->probes.n, "query", &pv, err);
    if (rc == CD_OK)
        rc = copy_probe_vectors(&gm, req->baseline.vectors, req->baseline.n, "baseline", &bv,
                                err);
    if (rc == CD_OK && req->filter)
        rc = cd_filter_check(req->filter, err);
    if (rc == CD_OK) {
        /* One read transaction: a consistent gallery, with its query-model
         * embeddings, even while writes go on; the copy is ours, so no lock
         * is held while computing.  Those embeddings serve the mixed view
         * and the paragon (which mapped probes have not: it would rank raw
         * ones). */
        bool own = req->mixed || (qm.id != gm.id && !req->adapter);
        rc = cd_store_eval_items(e->st, info.id, gm.id, gm.dim, own ? qm.id : 0, qm.dim,
                                 &items, err);
    }
    if (rc == CD_OK && req->filter)
        rc = keep_matching(g, req->filter, &items, gm.dim, qm.dim, err);
    pthread_rwlock_unlock(&e->lock);
    /* The mixed view ranks the raw probes in the query model's space. */
    if (rc == CD_OK && req->mixed && req->adapter && req->probes.n > 0) {
        size_t bytes = req->probes.n * (size_t)qm.dim * sizeof *raw;
        if ((raw = malloc(bytes)))
            memcpy(raw, pv, bytes);
        else
            rc = cd__fail(err, CD_ENOMEM, "out of memory for %zu probes", req->probes.n);
    }
    /* The mapping (one sgemm) runs with no lock held, like the ranking. */
    if (rc == CD_OK && req->adapter)
        rc = map_probes(&ad, req->probes.n, &pv, err);
    if (rc != CD_OK)
        goto out;
    if (items.n == 0) {
        rc = cd__fail(err, CD_EUNPROCESSABLE,
                      "gallery %s has no labelled items with %s embeddings%s to evaluate against",
                      info.name, gm.name, req->filter ? " that the filter matches" : "");
        goto out;
    }
    cd_eval_input in = {
        .dim = gm.dim,
        .metric = gm.metric,
        .probes = {req->probes.n, pv, req->probes.ids, req->probes.labels},
        .baseline = {req->baseline.n, bv, req->baseline.ids, req->baseline.labels},
        .gallery = {items.n, items.vectors, (const char *const *)items.ids,
                    (const char *const *)items.labels},
        .paragon = qm.id == gm.id                                ? items.vectors
                   : !req->adapter && items.n_own == items.n ? items.own
                                                             : NULL,
        .ks = req->ks,
        .n_ks = req->n_ks,
        .primary_k = req->primary_k,
        .own_dim = qm.dim,
        .own_probes = req->mixed ? (raw ? raw : pv) : NULL,
        .own = items.own,
        .has_own = items.has_own,
    };
    rc = cd_eval_run(&in, &ev.report, err);
    if (rc != CD_OK)
        goto out;
    ev.gallery_id = info.id;
    snprintf(ev.gallery, sizeof ev.gallery, "%s", info.name);
    ev.query_model_id = qm.id;
    snprintf(ev.query_model, sizeof ev.query_model, "%s", qm.name);
    ev.gallery_model_id = gm.id;
    snprintf(ev.gallery_model, sizeof ev.gallery_model, "%s", gm.name);
    ev.adapter_id = req->adapter ? ad.id : 0;
    snprintf(ev.adapter, sizeof ev.adapter, "%s", req->adapter ? ad.name : "");
    ev.mixed = req->mixed;
    ev.coverage = ev.report->coverage;
    eval_summary(ev.report, &ev);
    if (req->filter && req->filter_text && !(ev.filter = strdup(req->filter_text))) {
        rc = cd__fail(err, CD_ENOMEM, "out of memory");
        goto out;
    }
    rc = cd_store_evaluation_insert(e->st, &ev, err);
    if (rc == CD_OK) {
        atomic_fetch_add(&e->evaluations, 1);
        if (ev.compatible == 0)
            atomic_fetch_add(&e->evaluations_failed, 1);
        if (ev.adapter_id != 0)
            atomic_fetch_add(&e->evaluations_adapted, 1);
        *out = ev;
        ev.report = NULL;
        ev.filter = NULL;
    }
out:
    cd_evaluation_finish(&ev);
    cd_adapter_record_finish(&ad);
    cd_eval_items_finish(&items);
    free(raw);
    free(pv);
    free(bv);
    return rc;
}

cd_err cd_engine_evaluation_get(cd_engine *e, int64_t id, cd_evaluation *out,
                                cd_error *err)
{
    return cd_store_evaluation_get(e->st, id, out, err);
}

cd_err cd_engine_evaluation_list(cd_engine *e, const char *gallery_name,
                                 const char *query_model, int64_t before,
                                 size_t limit, cd_evaluation **out, size_t *n,
                                 cd_error *err)
{
    cd_gallery row;
    cd_model m = {0};
    *out = NULL;
    *n = 0;
    cd_err rc = cd_store_gallery_get(e->st, gallery_name, &row, err);
    if (rc == CD_OK && query_model)
        rc = cd__model_by_name(e, query_model, &m, err);
    if (rc != CD_OK)
        return rc;
    return cd_store_evaluation_list(e->st, row.id, m.id, before, limit, true, out, n, err);
}

cd_err cd_engine_evaluation_latest(cd_engine *e, const char *gallery_name,
                                   cd_evaluation **out, size_t *n,
                                   cd_error *err)
{
    cd_gallery row = {0};
    *out = NULL;
    *n = 0;
    if (gallery_name) {
        cd_err rc = cd_store_gallery_get(e->st, gallery_name, &row, err);
        if (rc != CD_OK)
            return rc;
    }
    return cd_store_evaluation_latest(e->st, row.id, 0, 0, out, n, err);
}
