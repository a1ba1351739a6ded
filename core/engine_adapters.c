/*
 * engine_adapters.c - adapters as the engine serves them (engine.h,
 * SPEC.md §3.7): fitted from a gallery's paired items or from pairs the
 * caller gives, then stored, immutable; and the cache of built adapters
 * that searches through them share (engine_int.h), so that a search does
 * not read megabytes of weights: keyed by row id, which is never reused,
 * it needs no invalidation (a delete only frees the memory sooner).
 *
 * Only the store is touched, through engine.h's public calls: a fit reads
 * its pairs in one read transaction of its own and then runs (seconds for
 * 100,000 pairs at 768 dims) with no engine or gallery lock held, so that
 * searches and writes carry on beside it.  The name is looked up before
 * the fit, to spare a long fit that could not be stored, and the insert
 * checks it again.
 */
#include "engine_int.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "text.h"

/* The checks that need no pairs, with the parameters of the fit into *p
 * and the two models into from and to. */
static cd_err fit_check(cd_engine *e, const cd_adapter_fit_request *req,
                        cd_model *from, cd_model *to, cd_adapter_params *p,
                        cd_error *err)
{
    if (!cd_name_valid(req->name))
        return cd__fail(err, CD_EINVAL, "adapter name must match [A-Za-z0-9._-]{1,%d}",
                        CD_NAME_MAX);
    bool has_pairs = req->from_vectors || req->to_vectors || req->n_pairs;
    if ((req->gallery != NULL) == has_pairs)
        return cd__fail(err, CD_EINVAL, "give exactly one of gallery and pairs");
    if (has_pairs && (!req->from_vectors || !req->to_vectors))
        return cd__fail(err, CD_EINVAL, "pairs need vectors of both models");
    cd_err rc = cd_engine_model_get(e, req->from, from, err);
    if (rc == CD_OK)
        rc = cd_engine_model_get(e, req->to, to, err);
    if (rc != CD_OK)
        return rc;
    if (!isfinite(req->ridge) || req->ridge < 0)
        return cd__fail(err, CD_EINVAL, "ridge must be a finite number >= 0");
    *p = (cd_adapter_params){
        .kind = req->kind_given ? req->kind : cd_adapter_default_kind(from->dim, to->dim),
        .dim_from = from->dim, .metric_from = from->metric,
        .dim_to = to->dim, .metric_to = to->metric,
        .ridge = req->ridge,
    };
    if (p->kind == CD_ADAPTER_ORTHOGONAL && from->dim != to->dim)
        return cd__fail(err, CD_EINVAL,
                        "orthogonal needs equal dims (%s has %d, %s has %d): use linear or affine",
                        from->name, from->dim, to->name, to->dim);
    if (p->kind == CD_ADAPTER_ORTHOGONAL && p->ridge != 0)
        return cd__fail(err, CD_EINVAL, "orthogonal takes no ridge");
    cd_adapter_record same;
    rc = cd_store_adapter_get(cd_engine_store(e), req->name, false, &same, err);
    if (rc == CD_OK)
        return cd__fail(err, CD_EEXISTS, "adapter %s already exists", req->name);
    if (rc != CD_ENOTFOUND)
        return rc;
    cd_error_clear(err);
    return CD_OK;
}

cd_err cd_engine_adapter_fit(cd_engine *e, const cd_adapter_fit_request *req,
                             cd_adapter_record *out, size_t *pairs_needed,
                             cd_error *err)
{
    memset(out, 0, sizeof *out);
    if (pairs_needed)
        *pairs_needed = 0;
    cd_model from, to;
    cd_adapter_params p;
    float *ga = NULL, *gb = NULL;
    cd_adapter *ad = NULL;
    cd_err rc = fit_check(e, req, &from, &to, &p, err);
    if (rc != CD_OK)
        return rc;
    const float *a = req->from_vectors, *b = req->to_vectors;
    size_t n = req->n_pairs;
    if (req->gallery) {
        cd_gallery g;
        rc = cd_engine_gallery_get(e, req->gallery, &g, err);
        if (rc == CD_OK)
            rc = cd_store_paired_vectors(cd_engine_store(e), g.id, from.id, from.dim,
                                         to.id, to.dim, &ga, &gb, &n, err);
        if (rc != CD_OK)
            goto out;
        a = ga;
        b = gb;
    }
    size_t need = cd_adapter_min_pairs(&p);
    if (n < need) {
        if (pairs_needed)
            *pairs_needed = need;
        rc = cd__fail(err, CD_EUNPROCESSABLE,
                      "too few pairs: %s with ridge %g from dim %d needs at least %zu pairs, "
                      "%s%s has %zu", cd_adapter_kind_name(p.kind), p.ridge, p.dim_from,
                      need, req->gallery ? "gallery " : "the request",
                      req->gallery ? req->gallery : "", n);
        goto out;
    }
    rc = cd_adapter_fit(&p, a, b, n, &ad, err);
    if (rc != CD_OK)
        goto out;
    cd_adapter_record rec;
    memset(&rec, 0, sizeof rec);
    snprintf(rec.name, sizeof rec.name, "%s", req->name);
    rec.from_id = from.id;
    rec.to_id = to.id;
    cd_adapter_info_get(ad, &rec.info);
    rec.weights = (float *)cd_adapter_weights(ad);
    rec.bias = (float *)cd_adapter_bias(ad);
    rc = cd_store_adapter_create(cd_engine_store(e), &rec, out, err);
out:
    cd_adapter_destroy(ad);
    free(ga);
    free(gb);
    return rc;
}

cd_err cd_engine_adapter_get(cd_engine *e, const char *name, bool with_weights,
                             cd_adapter_record *out, cd_error *err)
{
    return cd_store_adapter_get(cd_engine_store(e), name, with_weights, out, err);
}

cd_err cd_engine_adapter_list(cd_engine *e, cd_adapter_record **out, size_t *n,
                              cd_error *err)
{
    return cd_store_adapter_list(cd_engine_store(e), out, n, err);
}

cd_err cd_engine_adapter_evaluations(cd_engine *e, const char *name, size_t limit,
                                     cd_evaluation **out, size_t *n, cd_error *err)
{
    cd_adapter_record a;
    *out = NULL;
    *n = 0;
    cd_err rc = cd_store_adapter_get(cd_engine_store(e), name, false, &a, err);
    if (rc != CD_OK)
        return rc;
    return cd_store_evaluation_by_adapter(cd_engine_store(e), a.id, limit, out, n, err);
}

cd_err cd_engine_adapter_delete(cd_engine *e, const char *name, cd_error *err)
{
    /* The store refuses, in the delete's own transaction, while a gallery
     * routes a model through it (a route set meanwhile cannot be left
     * pointing at nothing). */
    cd_adapter_record rec;
    cd_err rc = cd_store_adapter_get(cd_engine_store(e), name, false, &rec, err);
    if (rc == CD_OK)
        rc = cd_store_adapter_delete(cd_engine_store(e), name, err);
    if (rc == CD_OK)
        cd__adapters_forget(e, rec.id);
    return rc;
}

void cd__adapter_release(cd__adapter_ref *ref)
{
    if (ref && atomic_fetch_sub(&ref->refs, 1) == 1) {
        cd_adapter_destroy(ref->ad);
        free(ref);
    }
}

/* Drops the cache's hold on slot i (the caller holds adapters_mu). */
static void cache_drop(cd_engine *e, size_t i)
{
    cd__adapter_ref *ref = e->adapters[i];
    memmove(&e->adapters[i], &e->adapters[i + 1],
            (ADAPTER_CACHE - 1 - i) * sizeof e->adapters[0]);
    e->adapters[ADAPTER_CACHE - 1] = NULL;
    cd__adapter_release(ref);
}

void cd__adapters_forget(cd_engine *e, int64_t id)
{
    pthread_mutex_lock(&e->adapters_mu);
    for (size_t i = ADAPTER_CACHE; i-- > 0;)
        if (e->adapters[i] && (id == 0 || e->adapters[i]->id == id))
            cache_drop(e, i);
    pthread_mutex_unlock(&e->adapters_mu);
}

/* The cached adapter of row id, with a hold for the caller, moved to the
 * front; NULL when it is not cached. */
static cd__adapter_ref *cache_find(cd_engine *e, int64_t id)
{
    cd__adapter_ref *ref = NULL;
    pthread_mutex_lock(&e->adapters_mu);
    for (size_t i = 0; i < ADAPTER_CACHE && e->adapters[i] && !ref; i++) {
        if (e->adapters[i]->id != id)
            continue;
        ref = e->adapters[i];
        memmove(&e->adapters[1], &e->adapters[0], i * sizeof e->adapters[0]);
        e->adapters[0] = ref;
        atomic_fetch_add(&ref->refs, 1);
    }
    pthread_mutex_unlock(&e->adapters_mu);
    return ref;
}

cd_err cd__adapter_acquire(cd_engine *e, const cd_adapter_record *rec,
                           cd__adapter_ref **out, cd_error *err)
{
    *out = cache_find(e, rec->id);
    if (*out)
        return CD_OK;
    /* Built outside the mutex; two searches may build the same one, and
     * the second to finish uses the first's. */
    cd_adapter_record w;
    cd__adapter_ref *ref = NULL;
    cd_err rc = cd_store_adapter_get(cd_engine_store(e), rec->name, true, &w, err);
    if (rc == CD_OK && w.id != rec->id)
        rc = cd__fail(err, CD_ENOTFOUND, "adapter %s was deleted meanwhile", rec->name);
    if (rc == CD_OK && !(ref = calloc(1, sizeof *ref)))
        rc = cd__fail(err, CD_ENOMEM, "out of memory");
    if (rc == CD_OK)
        rc = cd_adapter_from_weights(&w.info, w.weights, w.bias, &ref->ad, err);
    cd_adapter_record_finish(&w);
    if (rc != CD_OK) {
        free(ref);
        return rc;
    }
    ref->id = rec->id;
    atomic_init(&ref->refs, 2);     /* the cache's and the caller's */
    cd__adapter_ref *other = cache_find(e, rec->id);
    if (other) {
        atomic_store(&ref->refs, 1);
        cd__adapter_release(ref);
        *out = other;
        return CD_OK;
    }
    pthread_mutex_lock(&e->adapters_mu);
    if (e->adapters[ADAPTER_CACHE - 1])
        cache_drop(e, ADAPTER_CACHE - 1);
    memmove(&e->adapters[1], &e->adapters[0], (ADAPTER_CACHE - 1) * sizeof e->adapters[0]);
    e->adapters[0] = ref;
    pthread_mutex_unlock(&e->adapters_mu);
    *out = ref;
    return CD_OK;
}
