/*
 * engine_adapters.c - adapters as the engine serves them (engine.h,
 * SPEC.md §3.7): fitted from a gallery's paired items or from pairs the
 * caller gives, then stored, immutable.
 *
 * Only the store is touched, through engine.h's public calls: a fit reads
 * its pairs in one read transaction of its own and then runs (seconds for
 * 100,000 pairs at 768 dims) with no engine or gallery lock held, so that
 * searches and writes carry on beside it.  The name is looked up before
 * the fit, to spare a long fit that could not be stored, and the insert
 * checks it again.
 */
#include "engine.h"

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

cd_err cd_engine_adapter_delete(cd_engine *e, const char *name, cd_error *err)
{
    /* The store refuses, in the delete's own transaction, while a gallery
     * routes a model through it (a route set meanwhile cannot be left
     * pointing at nothing). */
    return cd_store_adapter_delete(cd_engine_store(e), name, err);
}
