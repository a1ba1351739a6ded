/*
 * engine_search.c - search: the gate (SPEC.md §3.4), the plan that routes a
 * query model's probes over the gallery's indexes (hot refresh), and the
 * merge of their answers.
 */
#include "engine_int.h"

#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "eval.h"
#include "idset.h"
#include "index.h"
#include "scan.h"
#include "text.h"

/* --- search ---------------------------------------------------------- */

void cd_search_result_destroy(cd_search_result *r)
{
    if (!r)
        return;
    for (size_t q = 0; r->hits && q < r->nq; q++)
        for (size_t j = 0; j < r->counts[q]; j++) {
            cd_item_ref *ref = &r->hits[q * r->k + j].item;
            free(ref->id);
            free(ref->label);
            free(ref->metadata);
        }
    free(r->hits);
    free(r->counts);
    free(r->searched);
    free(r);
}

bool cd_engine_declared_compatible(cd_engine *e, const cd_model *from,
                                   const char *to)
{
    cd_model m = *from;
    /* Model creation keeps chains within the bound, which also ends a
     * loop in a damaged table. */
    for (int hops = 0; hops < CD_COMPAT_CHAIN_MAX && m.compatible_with[0]; hops++) {
        if (strcmp(m.compatible_with, to) == 0)
            return true;
        /* The name lives in m, which the look-up overwrites. */
        char next[CD_NAME_MAX + 1];
        memcpy(next, m.compatible_with, sizeof next);
        cd_error err;
        if (cd__model_by_name(e, next, &m, &err) != CD_OK)
            return false;
    }
    return false;
}

/*
 * Items of the gallery model that also have an embedding of gi's model,
 * counted by walking the smaller of the two sets; cached per gallery seq
 * (searches hold only the read lock, so the cache has its own mutex).
 */
static size_t overlap_count(gallery *g, const gal_index *base,
                            const gal_index *own)
{
    pthread_mutex_lock(&g->overlap_mu);
    if (g->overlap_model == own->model.id && g->overlap_seq == g->seq) {
        size_t n = g->overlap;
        pthread_mutex_unlock(&g->overlap_mu);
        return n;
    }
    const cd__idset *small = &own->members, *large = &base->members;
    if (small->len > large->len) {
        small = &base->members;
        large = &own->members;
    }
    size_t n = 0;
    for (size_t i = 0; i < small->cap; i++)
        if (small->slots[i] >= 0 && cd__idset_contains(large, small->slots[i]))
            n++;
    g->overlap_model = own->model.id;
    g->overlap_seq = g->seq;
    g->overlap = n;
    pthread_mutex_unlock(&g->overlap_mu);
    return n;
}

/* How a query of one model is answered on one gallery. */
typedef struct query_plan {
    const gal_index *own;   /* the query model's index, for the items that
                               have its embeddings; NULL when none */
    const gal_index *base;  /* the gallery model's index, for the items
                               that have no query-model embedding; NULL
                               when no such item exists */
    int64_t own_items;      /* items searched in each space */
    int64_t base_items;
} query_plan;

/*
 * Whether the gallery's query policy lets model m (not the gallery model)
 * be compared with gallery-model embeddings.  verified: the latest
 * evaluation of m on g passed; declared: that, or m's compatible_with
 * chain reaches the gallery model; any: always (dim and metric are
 * checked before).
 */
static cd_err gate(cd_engine *e, gallery *g, const cd_model *m, cd_error *err)
{
    if (g->info.policy == CD_POLICY_ANY)
        return CD_OK;
    if (g->info.policy == CD_POLICY_DECLARED &&
        cd_engine_declared_compatible(e, m, g->model.name))
        return CD_OK;
    cd_evaluation *ev = NULL;
    size_t n = 0;
    cd_err rc = cd_store_evaluation_latest(e->st, g->info.id, m->id, &ev, &n, err);
    if (rc != CD_OK)
        return rc;
    const char *policy = cd_policy_name(g->info.policy);
    if (n == 1 && ev[0].compatible == 1) {
        rc = CD_OK;
    } else if (n == 1 && ev[0].compatible == 0) {
        rc = cd__fail(err, CD_ENOTVERIFIED,
                      "model %s is not verified on gallery %s: its latest evaluation %" PRId64
                      " failed the criterion (%s); query_policy is %s",
                      m->name, g->info.name, ev[0].id, ev[0].criterion, policy);
    } else if (n == 1) {
        rc = cd__fail(err, CD_ENOTVERIFIED,
                      "model %s is not verified on gallery %s: its latest evaluation %" PRId64
                      " had no baseline, so no verdict; query_policy is %s",
                      m->name, g->info.name, ev[0].id, policy);
    } else {
        rc = cd__fail(err, CD_ENOTVERIFIED,
                      "model %s is not verified on gallery %s: no evaluation of it exists there%s;"
                      " query_policy is %s",
                      m->name, g->info.name,
                      g->info.policy == CD_POLICY_DECLARED
                          ? " and its compatible_with chain does not reach the gallery model" : "",
                      policy);
    }
    cd_evaluations_destroy(ev, n);
    return rc;
}

/*
 * Plans a query of model m on g.  The gallery model's queries use its own
 * index.  Another model (same dim and metric, else 400) searches its own
 * embeddings where items have them and the gallery-model embeddings of
 * the rest (hot refresh); the second part compares two models' spaces, so
 * it needs the gallery's query policy to allow m.  The caller holds g's
 * read lock.
 */
static cd_err plan_query(cd_engine *e, gallery *g, const cd_model *m,
                         query_plan *plan, cd_error *err)
{
    memset(plan, 0, sizeof *plan);
    const gal_index *base = cd__index_slot(g, g->model.id);
    if (m->id == g->model.id) {
        plan->base = base;
        plan->base_items = base ? (int64_t)base->members.len : 0;
        return CD_OK;
    }
    if (m->dim != g->model.dim)
        return cd__fail(err, CD_EDIM, "query model %s has dim %d, gallery %s is of model %s with dim %d",
                        m->name, m->dim, g->info.name, g->model.name, g->model.dim);
    if (m->metric != g->model.metric)
        return cd__fail(err, CD_EINVAL, "query model %s uses metric %s, gallery model %s uses %s",
                        m->name, cd_metric_name(m->metric), g->model.name,
                        cd_metric_name(g->model.metric));
    const gal_index *own = cd__index_slot(g, m->id);
    if (own && own->members.len > 0) {
        plan->own = own;
        plan->own_items = (int64_t)own->members.len;
    }
    size_t base_len = base ? base->members.len : 0;
    size_t overlap = plan->own && base_len ? overlap_count(g, base, own) : 0;
    plan->base_items = (int64_t)(base_len - overlap);
    if (plan->own && plan->base_items == 0)
        return CD_OK;   /* fully backfilled: no cross-model comparison */
    cd_err rc = gate(e, g, m, err);
    if (rc != CD_OK)
        return rc;
    plan->base = plan->base_items > 0 ? base : NULL;
    return CD_OK;
}

#define FILTER_CHUNK_ENTRIES ((size_t)1 << 22) /* queries x candidates */

/*
 * Searches base for each query's k best items that are not in `skip`:
 * in one pass where the index is scanned (Flat, a few queries); otherwise
 * asks FAISS for more candidates than k, drops the skipped ones, and asks
 * again with four times as many for queries left short, up to every
 * vector of the index.  Queries go in chunks so that a chunk's candidates
 * stay bounded.  ids/scores: nq*k, padded with -1.
 */
static cd_err search_excluding(const gal_index *base, const cd__idset *skip,
                               int64_t keep, const cd_index_params *ip,
                               const float *q, size_t nq, size_t dim,
                               size_t k, int64_t *ids, float *scores,
                               cd_error *err)
{
    if (cd_index_scans(base->ix, nq))
        return cd_index_search_skipping(base->ix, q, nq, k, skip, ids, scores,
                                        err);
    size_t total = (size_t)cd_index_count(base->ix);
    size_t want = k < (size_t)keep ? k : (size_t)keep;
    size_t first = k * (total / (size_t)(keep > 0 ? keep : 1) + 1) + 8;
    int64_t *cid = NULL;
    float *csc = NULL;
    cd_err rc = CD_OK;
    for (size_t i = 0; i < nq * k; i++) {
        ids[i] = -1;
        scores[i] = 0;
    }
    for (size_t q0 = 0; q0 < nq && rc == CD_OK;) {
        size_t kk = first < total ? first : total;
        if (kk < k)
            kk = k;
        size_t chunk = FILTER_CHUNK_ENTRIES / kk;
        if (chunk == 0)
            chunk = 1;
        if (chunk > nq - q0)
            chunk = nq - q0;
        bool short_rows = true;
        while (short_rows && rc == CD_OK) {
            free(cid);
            free(csc);
            cid = malloc(chunk * kk * sizeof *cid);
            csc = malloc(chunk * kk * sizeof *csc);
            if (!cid || !csc) {
                rc = cd__fail(err, CD_ENOMEM, "out of memory for %zu candidates", chunk * kk);
                break;
            }
            rc = cd_index_search_params(base->ix, q + q0 * dim, chunk, kk, ip,
                                        cid, csc, err);
            short_rows = false;
            for (size_t i = 0; rc == CD_OK && i < chunk; i++) {
                size_t got = 0;
                for (size_t j = 0; j < kk && got < k; j++) {
                    int64_t id = cid[i * kk + j];
                    if (id < 0 || cd__idset_contains(skip, id))
                        continue;
                    ids[(q0 + i) * k + got] = id;
                    scores[(q0 + i) * k + got] = csc[i * kk + j];
                    got++;
                }
                if (got < want && kk < total)
                    short_rows = true;
            }
            if (short_rows)
                kk = kk > total / 4 ? total : kk * 4;
        }
        q0 += chunk;
    }
    free(cid);
    free(csc);
    return rc;
}

/* Merges row a and row b (k each, best first, -1 padded) into out. */
static void merge_rows(bool higher_better, size_t k, const int64_t *ia,
                       const float *sa, const int64_t *ib, const float *sb,
                       int64_t *io, float *so)
{
    size_t a = 0, b = 0;
    for (size_t o = 0; o < k; o++) {
        bool has_a = a < k && ia[a] >= 0, has_b = b < k && ib[b] >= 0;
        bool take_a;
        if (!has_a && !has_b) {
            io[o] = -1;
            so[o] = 0;
            continue;
        }
        if (!has_b)
            take_a = true;
        else if (!has_a)
            take_a = false;
        else if (sa[a] != sb[b])
            take_a = higher_better ? sa[a] > sb[b] : sa[a] < sb[b];
        else
            take_a = ia[a] < ib[b];   /* ties: earlier item first */
        io[o] = take_a ? ia[a] : ib[b];
        so[o] = take_a ? sa[a++] : sb[b++];
    }
}

/* How one search is answered: the request's options, and what an exact
 * answer reads the stored vectors from. */
typedef struct search_how {
    cd_engine *e;
    const gallery *g;
    cd_index_params ip;     /* zero: the index's own */
    bool exact;
} search_how;

#define EXACT_BATCH 65536   /* stored vectors per scan step, at most */
#define EXACT_BATCH_FLOATS ((size_t)1 << 22)    /* and at most 16 MiB of them */

/* An exact search over the store's vectors of one model, step by step. */
typedef struct exact_ctx {
    const float *q;
    size_t nq, k, dim;
    bool l2, higher;
    const cd__idset *skip;
    int64_t *ids;           /* the best so far, nq*k, -1 padded */
    float *scores;
    int64_t *bid, *mid;     /* one step's best, and the merge's */
    float *bsc, *msc;
    cd_error *err;
} exact_ctx;

static bool exact_skip(const void *ctx, int64_t id)
{
    return cd__idset_contains(ctx, id);
}

static cd_err exact_batch(void *ctx, const int64_t *rowids,
                          const float *vectors, size_t n)
{
    exact_ctx *x = ctx;
    cd_scan s = {.x = vectors, .ids = rowids, .n = n, .dim = x->dim, .l2 = x->l2};
    if (x->skip && x->skip->len > 0) {
        s.skip = exact_skip;
        s.skip_ctx = x->skip;
    }
    cd_err rc = cd_scan_search(&s, x->q, x->nq, x->k, x->bid, x->bsc, x->err);
    for (size_t i = 0; rc == CD_OK && i < x->nq; i++) {
        size_t o = i * x->k;
        merge_rows(x->higher, x->k, x->ids + o, x->scores + o, x->bid + o,
                   x->bsc + o, x->mid, x->msc);
        memcpy(x->ids + o, x->mid, x->k * sizeof *x->mid);
        memcpy(x->scores + o, x->msc, x->k * sizeof *x->msc);
    }
    return rc;
}

/*
 * The exact k best of gi's model's vectors as the store holds them, not
 * in skip (may be NULL), whatever index serves gi: one pass over the
 * stored vectors.  The caller holds g's lock, so the store holds what the
 * indexes do.
 */
static cd_err exact_search(const search_how *h, const gal_index *gi,
                           const cd__idset *skip, const float *q, size_t nq,
                           size_t k, int64_t *ids, float *scores,
                           cd_error *err)
{
    exact_ctx x = {.q = q, .nq = nq, .k = k, .dim = (size_t)gi->model.dim,
                   .l2 = gi->model.metric == CD_METRIC_L2,
                   .higher = cd_metric_higher_is_better(gi->model.metric),
                   .skip = skip, .ids = ids, .scores = scores, .err = err};
    for (size_t i = 0; i < nq * k; i++) {
        ids[i] = -1;
        scores[i] = 0;
    }
    x.bid = malloc(nq * k * sizeof *x.bid);
    x.bsc = malloc(nq * k * sizeof *x.bsc);
    x.mid = malloc(k * sizeof *x.mid);
    x.msc = malloc(k * sizeof *x.msc);
    cd_err rc = CD_OK;
    if (!x.bid || !x.bsc || !x.mid || !x.msc)
        rc = cd__fail(err, CD_ENOMEM, "out of memory");
    size_t batch = EXACT_BATCH_FLOATS / x.dim;
    if (batch > EXACT_BATCH)
        batch = EXACT_BATCH;
    if (rc == CD_OK)
        rc = cd_store_scan_vectors(h->e->st, h->g->info.id, gi->model.id,
                                   gi->model.dim, 0, batch, exact_batch, &x,
                                   NULL, err);
    free(x.bid);
    free(x.bsc);
    free(x.mid);
    free(x.msc);
    return rc;
}

/* One index's answer: exact from the store when asked for and the index
 * is not exact itself, else the index's with the request's parameters. */
static cd_err search_in(const search_how *h, const gal_index *gi,
                        const float *q, size_t nq, size_t k, int64_t *ids,
                        float *scores, cd_error *err)
{
    if (h->exact && !cd_index_is_exact(gi->ix))
        return exact_search(h, gi, NULL, q, nq, k, ids, scores, err);
    return cd_index_search_params(gi->ix, q, nq, k, &h->ip, ids, scores, err);
}

/* Answers the plan's queries into ids/scores (nq*k, -1 padded). */
static cd_err run_plan(const search_how *h, const query_plan *p,
                       const cd_model *m, const float *q, size_t nq, size_t k,
                       int64_t *ids, float *scores, cd_error *err)
{
    size_t dim = (size_t)m->dim;
    const gal_index *own = p->own && p->own->ix ? p->own : NULL;
    const gal_index *base = p->base && p->base->ix ? p->base : NULL;
    if (!own && !base) {
        for (size_t i = 0; i < nq * k; i++)
            ids[i] = -1;
        return CD_OK;
    }
    if (!base)
        return search_in(h, own, q, nq, k, ids, scores, err);
    if (!own)
        return search_in(h, base, q, nq, k, ids, scores, err);

    int64_t *oid = malloc(nq * k * sizeof *oid), *bid = malloc(nq * k * sizeof *bid);
    float *osc = malloc(nq * k * sizeof *osc), *bsc = malloc(nq * k * sizeof *bsc);
    cd_err rc = CD_OK;
    if (!oid || !bid || !osc || !bsc)
        rc = cd__fail(err, CD_ENOMEM, "out of memory");
    if (rc == CD_OK)
        rc = search_in(h, own, q, nq, k, oid, osc, err);
    if (rc == CD_OK && h->exact && !cd_index_is_exact(base->ix))
        rc = exact_search(h, base, &own->members, q, nq, k, bid, bsc, err);
    else if (rc == CD_OK)
        rc = search_excluding(base, &own->members, p->base_items, &h->ip, q,
                              nq, dim, k, bid, bsc, err);
    bool higher = cd_metric_higher_is_better(m->metric);
    for (size_t i = 0; rc == CD_OK && i < nq; i++)
        merge_rows(higher, k, oid + i * k, osc + i * k, bid + i * k, bsc + i * k,
                   ids + i * k, scores + i * k);
    free(oid);
    free(bid);
    free(osc);
    free(bsc);
    return rc;
}

cd_err cd_engine_search(cd_engine *e, const char *gallery_name,
                        const char *model, const float *queries, size_t nq,
                        size_t k, unsigned include, cd_search_result **out,
                        cd_error *err)
{
    return cd_engine_search_with(e, gallery_name, model, queries, nq, k,
                                 include, NULL, out, err);
}

cd_err cd_engine_search_with(cd_engine *e, const char *gallery_name,
                             const char *model, const float *queries,
                             size_t nq, size_t k, unsigned include,
                             const cd_search_options *opt,
                             cd_search_result **out, cd_error *err)
{
    gallery *g = NULL;
    cd_model m;
    float *q = NULL;
    int64_t *ids = NULL;
    float *scores = NULL;
    cd_search_result *r = NULL;
    cd_err rc;

    *out = NULL;
    if (!cd_engine_ready(e))
        return cd__fail(err, CD_EBUSY, "indexes are still loading");
    if (k < 1 || k > CD_K_MAX)
        return cd__fail(err, CD_EINVAL, "k must be 1..%d", CD_K_MAX);
    if (nq == 0)
        return cd__fail(err, CD_EINVAL, "no query vectors");
    rc = cd__gallery_enter(e, gallery_name, &g, err);
    if (rc != CD_OK)
        return rc;
    rc = cd__model_by_name(e, model ? model : g->model.name, &m, err);
    if (rc != CD_OK)
        goto out;
    search_how how = {.e = e, .g = g};
    if (opt) {
        how.ip.ef_search = opt->ef_search;
        how.ip.nprobe = opt->nprobe;
        how.exact = opt->exact;
        rc = cd_index_params_check(g->info.index_spec, &how.ip, err);
        if (rc != CD_OK)
            goto out;
    }

    size_t dim = (size_t)m.dim;
    q = malloc(nq * dim * sizeof *q);
    ids = malloc(nq * k * sizeof *ids);
    scores = malloc(nq * k * sizeof *scores);
    r = calloc(1, sizeof *r);
    if (!q || !ids || !scores || !r) {
        rc = cd__fail(err, CD_ENOMEM, "out of memory");
        goto out;
    }
    memcpy(q, queries, nq * dim * sizeof *q);
    for (size_t i = 0; i < nq && rc == CD_OK; i++)
        rc = cd__vector_ready(&m, q + i * dim, "query", i, err);
    if (rc != CD_OK)
        goto out;
    snprintf(r->model, sizeof r->model, "%s", m.name);
    r->nq = nq;
    r->k = k;
    r->counts = calloc(nq, sizeof *r->counts);
    r->hits = calloc(nq * k, sizeof *r->hits);
    r->searched = calloc(2, sizeof *r->searched);
    if (!r->counts || !r->hits || !r->searched) {
        rc = cd__fail(err, CD_ENOMEM, "out of memory");
        goto out;
    }

    pthread_rwlock_rdlock(&g->lock);
    query_plan plan;
    rc = cd__gallery_check(g, err);
    if (rc == CD_OK)
        rc = plan_query(e, g, &m, &plan, err);
    if (rc == CD_OK)
        rc = run_plan(&how, &plan, &m, q, nq, k, ids, scores, err);
    if (rc == CD_OK) {
        if (plan.own) {
            cd_searched *s = &r->searched[r->n_searched++];
            snprintf(s->model, sizeof s->model, "%s", m.name);
            s->items = plan.own_items;
        }
        if (plan.base || !plan.own) {
            cd_searched *s = &r->searched[r->n_searched++];
            snprintf(s->model, sizeof s->model, "%s", g->model.name);
            s->items = plan.base_items;
        }
    }
    /* Compact each row to its found hits, then resolve ids in one call. */
    size_t total = 0;
    if (rc == CD_OK) {
        for (size_t i = 0; i < nq; i++) {
            size_t c = 0;
            for (size_t j = 0; j < k; j++) {
                if (ids[i * k + j] < 0)
                    continue;
                ids[i * k + c] = ids[i * k + j];
                scores[i * k + c] = scores[i * k + j];
                c++;
            }
            for (size_t j = c; j < k; j++)
                ids[i * k + j] = -1;
            r->counts[i] = c;
            total += c;
        }
    }
    cd_item_ref *refs = NULL;
    if (rc == CD_OK && total > 0) {
        refs = calloc(nq * k, sizeof *refs);
        if (!refs)
            rc = cd__fail(err, CD_ENOMEM, "out of memory");
        else
            rc = cd_store_item_refs(e->st, ids, nq * k,
                                    include & CD_INCLUDE_LABEL,
                                    include & CD_INCLUDE_METADATA, refs, err);
    }
    pthread_rwlock_unlock(&g->lock);
    if (rc == CD_OK && refs) {
        for (size_t i = 0; i < nq; i++) {
            size_t c = 0;
            for (size_t j = 0; j < r->counts[i]; j++) {
                cd_item_ref *ref = &refs[i * k + j];
                if (!ref->id)
                    continue; /* deleted after the index answered */
                r->hits[i * k + c].item = *ref;
                r->hits[i * k + c].score = scores[i * k + j];
                memset(ref, 0, sizeof *ref);
                c++;
            }
            r->counts[i] = c;
        }
    }
    if (refs)
        cd_item_refs_finish(refs, nq * k);
    free(refs);
out:
    pthread_rwlock_unlock(&e->lock);
    free(q);
    free(ids);
    free(scores);
    if (rc != CD_OK) {
        cd_search_result_destroy(r);
        return rc;
    }
    *out = r;
    return CD_OK;
}

/* --- index recall ---------------------------------------------------- */

/* Picks every stride-th stored vector, up to CD_RECALL_SAMPLE. */
typedef struct sample_ctx {
    size_t dim, stride, seen, n;
    float *vectors;         /* CD_RECALL_SAMPLE * dim */
} sample_ctx;

static cd_err sample_batch(void *ctx, const int64_t *rowids,
                           const float *vectors, size_t n)
{
    sample_ctx *sc = ctx;
    for (size_t i = 0; i < n && sc->n < CD_RECALL_SAMPLE; i++, sc->seen++)
        if (sc->seen % sc->stride == 0)
            memcpy(sc->vectors + sc->n++ * sc->dim, vectors + i * sc->dim,
                   sc->dim * sizeof *sc->vectors);
    return CD_OK;
}

/* Measures gi's recall (see cd_engine_index_recall); g's lock is held. */
static cd_err measure_recall(cd_engine *e, const gallery *g,
                             const gal_index *gi, double *out, cd_error *err)
{
    size_t dim = (size_t)gi->model.dim, total = gi->members.len;
    size_t k = total < CD_RECALL_K ? total : CD_RECALL_K;
    sample_ctx sc = {.dim = dim};
    sc.stride = total > CD_RECALL_SAMPLE ? total / CD_RECALL_SAMPLE : 1;
    sc.vectors = malloc(CD_RECALL_SAMPLE * dim * sizeof *sc.vectors);
    int64_t *ann = malloc(CD_RECALL_SAMPLE * CD_RECALL_K * sizeof *ann);
    int64_t *exact = malloc(CD_RECALL_SAMPLE * CD_RECALL_K * sizeof *exact);
    float *scores = malloc(CD_RECALL_SAMPLE * CD_RECALL_K * sizeof *scores);
    search_how h = {.e = e, .g = g, .exact = true};
    cd_err rc = CD_OK;
    if (!sc.vectors || !ann || !exact || !scores)
        rc = cd__fail(err, CD_ENOMEM, "out of memory");
    if (rc == CD_OK)
        rc = cd_store_scan_vectors(e->st, g->info.id, gi->model.id, gi->model.dim,
                                   0, SCAN_BATCH, sample_batch, &sc, NULL, err);
    if (rc == CD_OK && sc.n > 0)
        rc = exact_search(&h, gi, NULL, sc.vectors, sc.n, k, exact, scores, err);
    if (rc == CD_OK && sc.n > 0)
        rc = cd_index_search(gi->ix, sc.vectors, sc.n, k, ann, scores, err);
    if (rc == CD_OK) {
        size_t hit = 0, want = 0;
        for (size_t i = 0; i < sc.n; i++)
            for (size_t a = 0; a < k; a++) {
                int64_t id = exact[i * k + a];
                if (id < 0)
                    continue;
                want++;
                for (size_t b = 0; b < k; b++)
                    if (ann[i * k + b] == id) {
                        hit++;
                        break;
                    }
            }
        *out = want ? (double)hit / (double)want : 1.0;
    }
    free(sc.vectors);
    free(ann);
    free(exact);
    free(scores);
    return rc;
}

cd_err cd_engine_index_recall(cd_engine *e, const char *gallery_name,
                              double *out, cd_error *err)
{
    gallery *g;
    *out = 1.0;
    if (!cd_engine_ready(e))
        return cd__fail(err, CD_EBUSY, "indexes are still loading");
    cd_err rc = cd__gallery_enter(e, gallery_name, &g, err);
    if (rc != CD_OK)
        return rc;
    pthread_rwlock_rdlock(&g->lock);
    rc = cd__gallery_check(g, err);
    const gal_index *gi = cd__index_slot(g, g->model.id);
    if (rc != CD_OK || !gi || !gi->ix || gi->members.len == 0 ||
        cd_index_is_exact(gi->ix))
        goto unlock;
    pthread_mutex_lock(&g->recall_mu);
    int64_t changes = atomic_load(&g->changes);
    int64_t since = changes - g->recall_changes;
    bool stale = !g->recall_known || atomic_load(&g->rebuilt) ||
                 (since > 0 && since * 10 >= g->recall_items);
    if (stale) {
        atomic_store(&g->rebuilt, false);
        rc = measure_recall(e, g, gi, &g->recall, err);
        g->recall_known = rc == CD_OK;
        g->recall_changes = changes;
        g->recall_items = (int64_t)gi->members.len;
    }
    if (rc == CD_OK)
        *out = g->recall;
    pthread_mutex_unlock(&g->recall_mu);
unlock:
    pthread_rwlock_unlock(&g->lock);
    pthread_rwlock_unlock(&e->lock);
    return rc;
}
