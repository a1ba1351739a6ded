/*
 * engine_live.c - live agreement without labels (SPEC.md §3.8): a
 * search's shadow queries (the same queries embedded by the gallery model)
 * run on the gallery model's index, each compared with its query's
 * results, and the rolling numbers (core/live.c) kept per gallery, query
 * model and adapter.  A gallery's numbers go with it (engine.c's delete).
 */
#include "engine_int.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

static int id_order(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/*
 * Compares each query of q with the same query of shadow (both of the
 * same nq and k) into out[0..nq-1].  Items are told apart by id.  The
 * overlap is divided by k even when a row holds fewer than k hits (a
 * gallery smaller than k), so that it stays comparable between searches;
 * a shadow with no hit at all retains nothing.  CD_ENOMEM when out of
 * memory (out is then unspecified).
 */
static cd_err agreement(const cd_search_result *q, const cd_search_result *shadow,
                        cd_agreement *out)
{
    /* Each row's ids sorted, then walked together: k log k a row. */
    const char **qs = malloc((q->k + 1) * sizeof *qs);
    const char **ss = malloc((q->k + 1) * sizeof *ss);
    if (!qs || !ss) {
        free(qs);
        free(ss);
        return CD_ENOMEM;
    }
    for (size_t i = 0; i < q->nq; i++) {
        const cd_hit *qh = &q->hits[i * q->k], *sh = &shadow->hits[i * shadow->k];
        size_t qn = q->counts[i], sn = shadow->counts[i], common = 0;
        out[i].top1_retained = false;
        for (size_t j = 0; j < qn; j++) {
            qs[j] = qh[j].item.id;
            if (sn > 0 && strcmp(qs[j], sh[0].item.id) == 0)
                out[i].top1_retained = true;
        }
        for (size_t j = 0; j < sn; j++)
            ss[j] = sh[j].item.id;
        qsort(qs, qn, sizeof *qs, id_order);
        qsort(ss, sn, sizeof *ss, id_order);
        for (size_t a = 0, b = 0; a < qn && b < sn;) {
            int c = strcmp(qs[a], ss[b]);
            common += c == 0;
            a += c <= 0;
            b += c >= 0;
        }
        out[i].overlap = (double)common / (double)q->k;
    }
    free(qs);
    free(ss);
    return CD_OK;
}

cd_err cd_engine_shadow_search(cd_engine *e, const char *gallery_name,
                               const cd_search_result *res,
                               const char *adapter, const cd_filter *filter,
                               const float *shadow, cd_agreement **out,
                               cd_error *err)
{
    *out = NULL;
    cd_model gm;
    cd_err rc = cd_engine_request_model(e, gallery_name, NULL, &gm, err);
    if (rc != CD_OK)
        return rc;
    if (strcmp(gm.name, res->model) == 0)
        return cd__fail(err, CD_EINVAL,
                        "the query model %s is the gallery model: a shadow has nothing to compare with",
                        res->model);
    cd_search_result *sres = NULL;
    /* The query's filter too: both rank the same items. */
    cd_search_options opt = {.filter = filter};
    rc = cd_engine_search_with(e, gallery_name, gm.name, shadow, res->nq, res->k,
                               CD_SEARCH_UNCOUNTED, &opt, &sres, err);
    if (rc != CD_OK)
        return rc;
    cd_agreement *a = calloc(res->nq, sizeof *a);
    if (!a || agreement(res, sres, a) != CD_OK) {
        rc = cd__fail(err, CD_ENOMEM, "out of memory comparing %zu shadow queries", res->nq);
        goto out;
    }
    /* Under the engine lock, so that a gallery deleted meanwhile (whose
     * numbers the delete dropped) gets no numbers back. */
    gallery *g;
    rc = cd__gallery_enter(e, gallery_name, &g, err);
    if (rc != CD_OK)
        goto out;
    if (cd_live_record(e->live, gallery_name, res->model, adapter, a, res->nq) != CD_OK)
        rc = cd__fail(err, CD_ENOMEM, "out of memory recording live agreement");
    pthread_rwlock_unlock(&e->lock);
out:
    cd_search_result_destroy(sres);
    if (rc != CD_OK) {
        free(a);
        return rc;
    }
    *out = a;
    return CD_OK;
}

size_t cd_engine_live_list(cd_engine *e, const char *gallery_name,
                           cd_live_stats **out)
{
    return cd_live_list(e->live, gallery_name, out);
}
