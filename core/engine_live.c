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
    if (!a || cd_live_agreement(res, sres, a) != CD_OK) {
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
