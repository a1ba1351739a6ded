/*
 * engine_search.c - search: the gate (SPEC.md §3.4), the plan that routes a
 * query model's probes over the gallery's indexes (hot refresh), through
 * an adapter when asked or routed (§3.7), and the merge of their answers;
 * and a gallery's routes, checked as a search through them would plan.
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
#include "filter.h"
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

/* One space a query is answered in. */
typedef struct plan_part {
    const gal_index *gi;    /* its index; NULL when the gallery has none */
    const char *model;      /* the model of that space */
    bool mapped;            /* searched with the adapter's mapped queries,
                               else with the queries as given */
    int64_t items;          /* its items that no earlier part holds */
} plan_part;

/*
 * How a query of one model is answered on one gallery: in each part's
 * space, on the items no earlier part holds, so that an item appears at
 * most once.  Without an adapter: the query model's own index, then the
 * gallery model's (hot refresh).  Through an adapter: the query model's
 * own index with the raw queries, then the to model's index and the
 * gallery model's with the mapped ones.
 */
typedef struct query_plan {
    plan_part parts[3];
    size_t n;
} query_plan;

/* The adapter a search goes through. */
typedef struct via {
    const cd_adapter_record *rec;   /* its row (names, ids) */
    const cd_model *to;             /* its to model */
} via;

static void plan_add(query_plan *p, const gal_index *gi, const char *model,
                     bool mapped, int64_t items)
{
    p->parts[p->n++] = (plan_part){gi, model, mapped, items};
}

/* Members of x that none of the n sets in prev holds. */
static int64_t count_new(const cd__idset *x, const cd__idset *const *prev,
                         size_t n)
{
    int64_t count = 0;
    for (size_t i = 0; x && i < x->cap; i++) {
        if (x->slots[i] < 0)
            continue;
        size_t j = 0;
        while (j < n && !cd__idset_contains(prev[j], x->slots[i]))
            j++;
        count += j == n;
    }
    return count;
}

/*
 * Whether the gallery's query policy lets model m (not the gallery model)
 * be compared with gallery-model embeddings, or, with an adapter ad, m's
 * queries mapped by ad into to's space (the pair (m, ad) is judged on its
 * own).  verified: the latest evaluation of m (of the pair) on g passed;
 * declared: that, or the compatible_with chain of m (of to) reaches the
 * gallery model (to is the gallery model); any: always, but to must have
 * the gallery model's dim and metric (m's are checked before).
 */
static cd_err gate(cd_engine *e, gallery *g, const cd_model *m,
                   const cd_adapter_record *ad, const cd_model *to,
                   cd_error *err)
{
    const cd_model *judged = ad ? to : m;
    char who[2 * CD_NAME_MAX + 32];
    if (ad)
        snprintf(who, sizeof who, "model %s through adapter %s", m->name, ad->name);
    else
        snprintf(who, sizeof who, "model %s", m->name);
    if (g->info.policy == CD_POLICY_ANY) {
        if (judged->dim == g->model.dim && judged->metric == g->model.metric)
            return CD_OK;
        return cd__fail(err, CD_ENOTVERIFIED,
                        "%s is not allowed on gallery %s: its queries are of model %s (dim %d, "
                        "%s), gallery model %s is dim %d, %s; query_policy is any",
                        who, g->info.name, judged->name, judged->dim,
                        cd_metric_name(judged->metric), g->model.name, g->model.dim,
                        cd_metric_name(g->model.metric));
    }
    if (g->info.policy == CD_POLICY_DECLARED &&
        (judged->id == g->model.id ||
         cd_engine_declared_compatible(e, judged, g->model.name)))
        return CD_OK;
    cd_evaluation *ev = NULL;
    size_t n = 0;
    /* A raw query is judged by raw evaluations only, a pair by its own. */
    cd_err rc = cd_store_evaluation_latest_pair(e->st, g->info.id, m->id, ad ? ad->id : 0,
                                                &ev, &n, err);
    if (rc != CD_OK)
        return rc;
    const char *policy = cd_policy_name(g->info.policy);
    if (n == 1 && ev[0].compatible == 1) {
        rc = CD_OK;
    } else if (n == 1 && ev[0].compatible == 0) {
        rc = cd__fail(err, CD_ENOTVERIFIED,
                      "%s is not verified on gallery %s: its latest evaluation %" PRId64
                      " failed the criterion (%s); query_policy is %s",
                      who, g->info.name, ev[0].id, ev[0].criterion, policy);
    } else if (n == 1) {
        rc = cd__fail(err, CD_ENOTVERIFIED,
                      "%s is not verified on gallery %s: its latest evaluation %" PRId64
                      " had no baseline, so no verdict; query_policy is %s",
                      who, g->info.name, ev[0].id, policy);
    } else {
        rc = cd__fail(err, CD_ENOTVERIFIED,
                      "%s is not verified on gallery %s: no evaluation of it exists there%s;"
                      " query_policy is %s",
                      who, g->info.name,
                      g->info.policy == CD_POLICY_DECLARED
                          ? " and its compatible_with chain does not reach the gallery model" : "",
                      policy);
    }
    cd_evaluations_destroy(ev, n);
    return rc;
}

/*
 * Plans a query of model m through adapter v (see query_plan).  Items
 * with an m embedding are searched raw when m's metric is the to model's
 * (so scores compare); the rest with the mapped queries, in the to
 * model's space where they have its embedding, else in the gallery
 * model's.  CD_ECONFLICT when the to model is not the gallery model and
 * the gallery holds none of its embeddings, or when items left for the
 * gallery model's space could not take the to model's queries (dim,
 * metric).  The mapped part needs the gate for (m, adapter), the gallery
 * model's part for a foreign to model also the to model's own gate.
 */
static cd_err plan_via(cd_engine *e, gallery *g, const cd_model *m,
                       const via *v, query_plan *plan, cd_error *err)
{
    const cd_model *to = v->to;
    const gal_index *base = cd__index_slot(g, g->model.id);
    const gal_index *own = cd__index_slot(g, m->id);
    int64_t base_len = base ? (int64_t)base->members.len : 0;
    bool raw = own && own->members.len > 0 && m->metric == to->metric;
    if (raw)
        plan_add(plan, own, m->name, false, (int64_t)own->members.len);
    cd_err rc;
    if (to->id == g->model.id) {
        int64_t items = base_len - (raw && base_len ? (int64_t)overlap_count(g, base, own) : 0);
        if (raw && items == 0)
            return CD_OK;
        if ((rc = gate(e, g, m, v->rec, to, err)) != CD_OK)
            return rc;
        plan_add(plan, base, g->model.name, true, items);
        return CD_OK;
    }
    const gal_index *tix = cd__index_slot(g, to->id);
    if (!tix || tix->members.len == 0)
        return cd__fail(err, CD_ECONFLICT,
                        "gallery %s cannot search model %s, adapter %s's to model: it is not the "
                        "gallery model (%s) and the gallery holds no embeddings of it",
                        g->info.name, to->name, v->rec->name, g->model.name);
    const cd__idset *prev[2] = {raw ? &own->members : NULL, &tix->members};
    int64_t t_items = raw ? count_new(&tix->members, prev, 1) : (int64_t)tix->members.len;
    int64_t g_items = !base_len ? 0
                      : raw ? count_new(&base->members, prev, 2)
                            : base_len - (int64_t)overlap_count(g, base, tix);
    if (g_items > 0 && (to->dim != g->model.dim || to->metric != g->model.metric))
        return cd__fail(err, CD_ECONFLICT,
                        "gallery %s cannot search model %s, adapter %s's to model: %" PRId64
                        " of its items have no %s embedding and model %s (dim %d, %s) cannot "
                        "query their %s embeddings (dim %d, %s)",
                        g->info.name, to->name, v->rec->name, g_items, to->name, to->name,
                        to->dim, cd_metric_name(to->metric), g->model.name, g->model.dim,
                        cd_metric_name(g->model.metric));
    if (g_items > 0 && (rc = gate(e, g, to, NULL, NULL, err)) != CD_OK)
        return rc;
    if (t_items + g_items > 0 && (rc = gate(e, g, m, v->rec, to, err)) != CD_OK)
        return rc;
    if (t_items > 0 || plan->n == 0)
        plan_add(plan, tix, to->name, true, t_items);
    if (g_items > 0)
        plan_add(plan, base, g->model.name, true, g_items);
    return CD_OK;
}

/*
 * Plans a query of model m on g, through adapter v when it is not NULL
 * (plan_via).  The gallery model's queries use its own index.  Another
 * model (same dim and metric, else 400) searches its own embeddings where
 * items have them and the gallery-model embeddings of the rest (hot
 * refresh); the second part compares two models' spaces, so it needs the
 * gallery's query policy to allow m.  The caller holds g's lock.
 */
static cd_err plan_query(cd_engine *e, gallery *g, const cd_model *m,
                         const via *v, query_plan *plan, cd_error *err)
{
    memset(plan, 0, sizeof *plan);
    if (v)
        return plan_via(e, g, m, v, plan, err);
    const gal_index *base = cd__index_slot(g, g->model.id);
    if (m->id == g->model.id) {
        plan_add(plan, base, g->model.name, false, base ? (int64_t)base->members.len : 0);
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
    bool has_own = own && own->members.len > 0;
    if (has_own)
        plan_add(plan, own, m->name, false, (int64_t)own->members.len);
    size_t base_len = base ? base->members.len : 0;
    size_t overlap = has_own && base_len ? overlap_count(g, base, own) : 0;
    int64_t base_items = (int64_t)(base_len - overlap);
    if (has_own && base_items == 0)
        return CD_OK;   /* fully backfilled: no cross-model comparison */
    cd_err rc = gate(e, g, m, NULL, NULL, err);
    if (rc != CD_OK)
        return rc;
    plan_add(plan, base, g->model.name, false, base_items);
    return CD_OK;
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

#define FILTER_CHUNK_ENTRIES ((size_t)1 << 22) /* queries x candidates */
/*
 * The plan of a filtered part (Qdrant's query planner makes the same
 * choice by cardinality, below its full_scan_threshold).  Few matching
 * items (m of an index of n: at most a tenth of n with their vectors at
 * most BRUTE_FLOATS floats, 2 MiB, or m^2 <= k n; and at most BRUTE_MAX,
 * since each costs a read): their vectors are read
 * from the store (about 10 us each) and ranked exactly, which is exact on
 * any index and costs m reads.  Otherwise a Flat index (or one still
 * staging) is scanned once with the filter tested on the rows that would
 * enter the top k (exact), and an ANN index is asked for 2 k n / m
 * candidates, the ones the filter refuses dropped, and queries left
 * short ask again with four times as many.  Past OVERFETCH_MAX candidates,
 * or with every vector asked for and rows still short (the filter and
 * the query disagree, or the graph does not reach the matching items),
 * the batch is ranked exactly instead, chunk by chunk.
 */
#define BRUTE_FLOATS ((size_t)1 << 19)
#define BRUTE_MAX 65536
#define OVERFETCH_MAX ((size_t)1 << 16)
#define BRUTE_CHUNK_FLOATS ((size_t)1 << 22)

/* Which items one part of a search may return. */
typedef struct keep_rule {
    const cd_match *match;      /* the filter's items; NULL: every item */
    const cd__idset *skip;      /* items answered elsewhere; NULL: none */
} keep_rule;

static bool refused(const void *ctx, int64_t id)
{
    const keep_rule *kr = ctx;
    return (kr->skip && cd__idset_contains(kr->skip, id)) ||
           (kr->match && !cd_match_has(kr->match, id));
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
    const keep_rule *kr;    /* what may be returned; NULL: anything */
    int64_t *ids;           /* the best so far, nq*k, -1 padded */
    float *scores;
    int64_t *bid, *mid;     /* one step's best, and the merge's */
    float *bsc, *msc;
    cd_error *err;
} exact_ctx;

static cd_err exact_batch(void *ctx, const int64_t *rowids,
                          const float *vectors, size_t n)
{
    exact_ctx *x = ctx;
    cd_scan s = {.x = vectors, .ids = rowids, .n = n, .dim = x->dim, .l2 = x->l2};
    if (x->kr && (x->kr->match || x->kr->skip)) {
        s.skip = refused;
        s.skip_ctx = x->kr;
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
 * The exact k best of gi's model's vectors as the store holds them that
 * kr keeps (NULL: all), whatever index serves gi: one pass over the
 * stored vectors.  The caller holds g's lock, so the store holds what the
 * indexes do.
 */
static cd_err exact_search(const search_how *h, const gal_index *gi,
                           const keep_rule *kr, const float *q, size_t nq,
                           size_t k, int64_t *ids, float *scores,
                           cd_error *err)
{
    exact_ctx x = {.q = q, .nq = nq, .k = k, .dim = (size_t)gi->model.dim,
                   .l2 = gi->model.metric == CD_METRIC_L2,
                   .higher = cd_metric_higher_is_better(gi->model.metric),
                   .kr = kr, .ids = ids, .scores = scores, .err = err};
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

/*
 * Ranks, exactly, the vectors of gi's model of the items the rule keeps
 * among rows (sorted rowids; NULL: the filter's items), read from the
 * store in chunks, for each query.  ids/scores: nq*k, -1 padded.
 */
static cd_err search_brute(const search_how *h, const gal_index *gi,
                           const keep_rule *kr, const float *q, size_t nq,
                           size_t k, int64_t *ids, float *scores,
                           cd_error *err)
{
    size_t dim = (size_t)gi->model.dim;
    bool higher = cd_metric_higher_is_better(gi->model.metric);
    int64_t *rows = NULL, *cid = NULL, *mid = NULL;
    float *vecs = NULL, *csc = NULL, *msc = NULL;
    bool *found = NULL;
    size_t n_rows = 0;
    for (size_t i = 0; i < nq * k; i++) {
        ids[i] = -1;
        scores[i] = 0;
    }
    cd_err rc = cd_match_rowids(kr->match, &rows, &n_rows, err);
    if (rc != CD_OK)
        return rc;
    size_t n_keep = 0;   /* the rule's items that have a vector of gi */
    for (size_t i = 0; i < n_rows; i++)
        if (cd__idset_contains(&gi->members, rows[i]) &&
            !(kr->skip && cd__idset_contains(kr->skip, rows[i])))
            rows[n_keep++] = rows[i];
    size_t chunk = BRUTE_CHUNK_FLOATS / dim ? BRUTE_CHUNK_FLOATS / dim : 1;
    if (chunk > n_keep)
        chunk = n_keep;
    if (n_keep == 0)
        goto out;
    vecs = malloc(chunk * dim * sizeof *vecs);
    found = malloc(chunk * sizeof *found);
    cid = malloc(nq * k * sizeof *cid);
    csc = malloc(nq * k * sizeof *csc);
    mid = malloc(k * sizeof *mid);
    msc = malloc(k * sizeof *msc);
    if (!vecs || !found || !cid || !csc || !mid || !msc) {
        rc = cd__fail(err, CD_ENOMEM, "out of memory for %zu vectors", chunk);
        goto out;
    }
    for (size_t r0 = 0; r0 < n_keep && rc == CD_OK; r0 += chunk) {
        size_t n = n_keep - r0 < chunk ? n_keep - r0 : chunk;
        rc = cd_store_vectors_of(h->e->st, h->g->info.id, gi->model.id, (int)dim,
                                 rows + r0, n, vecs, found, err);
        size_t c = 0;   /* deleted meanwhile: drop the row */
        for (size_t i = 0; rc == CD_OK && i < n; i++) {
            if (!found[i])
                continue;
            if (c != i) {
                memmove(vecs + c * dim, vecs + i * dim, dim * sizeof *vecs);
                rows[r0 + c] = rows[r0 + i];
            }
            c++;
        }
        cd_scan sc = {.x = vecs, .ids = rows + r0, .n = c, .dim = dim,
                      .l2 = gi->model.metric == CD_METRIC_L2};
        if (rc == CD_OK)
            rc = cd_scan_search(&sc, q, nq, k, cid, csc, err);
        for (size_t i = 0; rc == CD_OK && i < nq; i++) {
            merge_rows(higher, k, ids + i * k, scores + i * k, cid + i * k,
                       csc + i * k, mid, msc);
            memcpy(ids + i * k, mid, k * sizeof *mid);
            memcpy(scores + i * k, msc, k * sizeof *msc);
        }
    }
out:
    free(rows);
    free(vecs);
    free(found);
    free(cid);
    free(csc);
    free(mid);
    free(msc);
    return rc;
}

/*
 * Searches gi for each query's k best items the rule keeps, about `keep`
 * of them: unfiltered, straight from the index; where the index is
 * scanned (Flat, or still staging), in one exact pass per group of
 * queries; otherwise as the plan above FULL_SCAN_FLOATS says.  Queries
 * go in chunks so that a chunk's candidates stay bounded.  ids/scores:
 * nq*k, padded with -1.
 */
static cd_err search_part(const search_how *h, const gal_index *gi,
                          const keep_rule *kr, int64_t keep, const float *q,
                          size_t nq, size_t k, int64_t *ids, float *scores,
                          cd_error *err)
{
    size_t dim = (size_t)gi->model.dim;
    size_t total = (size_t)cd_index_count(gi->ix);
    bool planned_brute = false;
    if (kr->match) {
        double m = (double)cd_match_count(kr->match);
        if (m <= BRUTE_MAX && ((m * (double)dim <= (double)BRUTE_FLOATS &&
                                m * 10 <= (double)total) ||
                               m * m <= (double)k * (double)total))
            planned_brute = true;
    }
    if (planned_brute)
        return search_brute(h, gi, kr, q, nq, k, ids, scores, err);
    if (h->exact && !cd_index_is_exact(gi->ix))
        return exact_search(h, gi, kr, q, nq, k, ids, scores, err);
    if (!kr->match && !kr->skip)
        return cd_index_search_params(gi->ix, q, nq, k, &h->ip, ids, scores, err);
    if (cd_index_scans(gi->ix, 1)) {
        cd_err rc = CD_OK;
        for (size_t q0 = 0; q0 < nq && rc == CD_OK; q0 += CD_SCAN_NQ_MAX) {
            size_t n = nq - q0 < CD_SCAN_NQ_MAX ? nq - q0 : CD_SCAN_NQ_MAX;
            rc = cd_index_search_skipping(gi->ix, q + q0 * dim, n, k, refused,
                                          kr, ids + q0 * k, scores + q0 * k,
                                          err);
        }
        return rc;
    }
    size_t want = k < (size_t)keep ? k : (size_t)keep;
    size_t first = 2 * k * (total / (size_t)(keep > 0 ? keep : 1) + 1) + 8;
    int64_t *cid = NULL;
    float *csc = NULL;
    cd_err rc = CD_OK;
    bool too_far = false;
    for (size_t i = 0; i < nq * k; i++) {
        ids[i] = -1;
        scores[i] = 0;
    }
    for (size_t q0 = 0; q0 < nq && rc == CD_OK && !too_far;) {
        size_t kk = first < total ? first : total;
        if (kk < k)
            kk = k;
        size_t chunk = FILTER_CHUNK_ENTRIES / kk;
        if (chunk == 0)
            chunk = 1;
        if (chunk > nq - q0)
            chunk = nq - q0;
        bool short_rows = true;
        while (short_rows && rc == CD_OK && !too_far) {
            free(cid);
            free(csc);
            cid = malloc(chunk * kk * sizeof *cid);
            csc = malloc(chunk * kk * sizeof *csc);
            if (!cid || !csc) {
                rc = cd__fail(err, CD_ENOMEM, "out of memory for %zu candidates", chunk * kk);
                break;
            }
            rc = cd_index_search_params(gi->ix, q + q0 * dim, chunk, kk, &h->ip,
                                        cid, csc, err);
            short_rows = false;
            for (size_t i = 0; rc == CD_OK && i < chunk; i++) {
                size_t got = 0;
                for (size_t j = 0; j < kk && got < k; j++) {
                    int64_t id = cid[i * kk + j];
                    if (id < 0 || refused(kr, id))
                        continue;
                    ids[(q0 + i) * k + got] = id;
                    scores[(q0 + i) * k + got] = csc[i * kk + j];
                    got++;
                }
                if (got < want && kk < total)
                    short_rows = true;
                else if (got < want && kr->match)
                    too_far = true;     /* every vector asked for */
            }
            if (short_rows && !too_far) {
                kk = kk > total / 4 ? total : kk * 4;
                too_far = kr->match && kk > OVERFETCH_MAX;
            }
        }
        q0 += chunk;
    }
    free(cid);
    free(csc);
    if (rc == CD_OK && too_far)
        return search_brute(h, gi, kr, q, nq, k, ids, scores, err);
    return rc;
}

/* Items of a space of `items` the filter is estimated to keep. */
static int64_t keep_estimate(const gallery *g, const cd_match *match,
                             int64_t items)
{
    size_t all = cd_fields_count(g->fields);
    if (!match || all == 0)
        return items;
    return (int64_t)((double)items * (double)cd_match_count(match) / (double)all);
}

/*
 * Answers the plan's queries into ids/scores (nq*k, -1 padded): each part
 * searched with its queries (raw: the query model's, mapped: the
 * adapter's to model's, nq rows each) by search_part, on the items no earlier part holds and match has (NULL: any), the
 * answers merged best first.
 */
static cd_err run_plan(const search_how *h, const query_plan *p, bool higher,
                       const cd_match *match, const float *raw,
                       const float *mapped, size_t nq, size_t k, int64_t *ids,
                       float *scores, cd_error *err)
{
    int64_t *pid = NULL, *mid = NULL;
    float *psc = NULL, *msc = NULL;
    cd__idset both = CD__IDSET_INIT;    /* two earlier parts' items */
    const cd__idset *earlier = NULL;
    bool found = false;
    cd_err rc = CD_OK;
    for (size_t i = 0; i < nq * k; i++)
        ids[i] = -1;
    if (match && cd_match_count(match) == 0)
        return CD_OK;
    for (size_t i = 0; rc == CD_OK && i < p->n; i++) {
        const plan_part *pt = &p->parts[i];
        const float *q = pt->mapped ? mapped : raw;
        if (pt->gi && pt->gi->ix && pt->items > 0) {
            if (found && !pid) {
                pid = malloc(nq * k * sizeof *pid);
                mid = malloc(nq * k * sizeof *mid);
                psc = malloc(nq * k * sizeof *psc);
                msc = malloc(nq * k * sizeof *msc);
                if (!pid || !mid || !psc || !msc) {
                    rc = cd__fail(err, CD_ENOMEM, "out of memory");
                    break;
                }
            }
            int64_t *oid = found ? pid : ids;
            float *osc = found ? psc : scores;
            keep_rule rule = {match, earlier};
            rc = search_part(h, pt->gi, &rule, keep_estimate(h->g, match, pt->items), q,
                             nq, k, oid, osc, err);
            for (size_t r = 0; rc == CD_OK && found && r < nq; r++) {
                merge_rows(higher, k, ids + r * k, scores + r * k, pid + r * k,
                           psc + r * k, mid + r * k, msc + r * k);
                memcpy(ids + r * k, mid + r * k, k * sizeof *ids);
                memcpy(scores + r * k, msc + r * k, k * sizeof *scores);
            }
            found = true;
        }
        if (rc != CD_OK || i + 1 == p->n || !pt->gi)
            continue;
        if (!earlier) {
            earlier = &pt->gi->members;
        } else {
            const cd__idset *sets[2] = {earlier, &pt->gi->members};
            if (!cd__idset_reserve(&both, sets[0]->len + sets[1]->len)) {
                rc = cd__fail(err, CD_ENOMEM, "out of memory");
                break;
            }
            for (int s = 0; s < 2; s++)
                for (size_t j = 0; j < sets[s]->cap; j++)
                    if (sets[s]->slots[j] >= 0)
                        cd__idset_put(&both, sets[s]->slots[j]);
            earlier = &both;
        }
    }
    cd__idset_finish(&both);
    free(pid);
    free(mid);
    free(psc);
    free(msc);
    return rc;
}

/*
 * The adapter a search by model m on g goes through, its row read into
 * *rec: the one named (NULL: g's route for m, if any).
 * *found is false when there is none to go through.  CD_ENOTFOUND for an
 * unknown adapter, CD_EINVAL when its from model is not m.  The caller
 * holds g's lock, so that a route read stays a route (its adapter cannot
 * be deleted meanwhile).
 */
static cd_err adapter_of(cd_engine *e, gallery *g, const cd_model *m,
                         const char *name, cd_adapter_record *rec,
                         bool *found, cd_error *err)
{
    memset(rec, 0, sizeof *rec);
    *found = false;
    cd_gallery_route *routes = NULL;
    size_t n = 0;
    if (!name && m->id != g->model.id) {
        cd_err rc = cd_store_routes(e->st, g->info.id, &routes, &n, err);
        if (rc != CD_OK)
            return rc;
        for (size_t i = 0; i < n && !name; i++)
            if (routes[i].model_id == m->id)
                name = routes[i].adapter;
    }
    cd_err rc = CD_OK;
    if (name) {
        rc = cd_store_adapter_get(e->st, name, false, rec, err);
        if (rc == CD_OK && rec->from_id != m->id)
            rc = cd__fail(err, CD_EINVAL, "adapter %s maps from model %s, not from the query model %s",
                          rec->name, rec->from, m->name);
        *found = rc == CD_OK;
    }
    free(routes);
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

cd_err cd_engine_search_filtered(cd_engine *e, const char *gallery_name,
                                 const char *model, const float *queries,
                                 size_t nq, size_t k, unsigned include,
                                 const cd_filter *filter,
                                 cd_search_result **out, cd_error *err)
{
    cd_search_options opt = {.filter = filter};
    return cd_engine_search_with(e, gallery_name, model, queries, nq, k,
                                 include, &opt, out, err);
}

cd_err cd_engine_search_with(cd_engine *e, const char *gallery_name,
                             const char *model, const float *queries,
                             size_t nq, size_t k, unsigned include,
                             const cd_search_options *opt,
                             cd_search_result **out, cd_error *err)
{
    const char *adapter = opt ? opt->adapter : NULL;
    const cd_filter *filter = opt ? opt->filter : NULL;
    gallery *g = NULL;
    cd_model m, to;
    cd_adapter_record rec;
    bool through = false;
    cd__adapter_ref *ad = NULL;
    float *q = NULL, *mapped = NULL;
    int64_t *ids = NULL;
    float *scores = NULL;
    cd_search_result *r = NULL;
    cd_err rc;

    *out = NULL;
    memset(&rec, 0, sizeof rec);
    if (!cd_engine_ready(e))
        return cd__fail(err, CD_EBUSY, "indexes are still loading");
    if (k < 1 || k > CD_K_MAX)
        return cd__fail(err, CD_EINVAL, "k must be 1..%d", CD_K_MAX);
    if (nq == 0)
        return cd__fail(err, CD_EINVAL, "no query vectors");
    if (filter && (rc = cd_filter_check(filter, err)) != CD_OK)
        return rc;
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
    r->searched = calloc(3, sizeof *r->searched);
    if (!r->counts || !r->hits || !r->searched) {
        rc = cd__fail(err, CD_ENOMEM, "out of memory");
        goto out;
    }

    pthread_rwlock_rdlock(&g->lock);
    query_plan plan = {.n = 0};
    cd_match *match = NULL;
    via v = {&rec, &to};
    rc = cd__gallery_check(g, err);
    if (rc == CD_OK)
        rc = adapter_of(e, g, &m, adapter, &rec, &through, err);
    if (rc == CD_OK && through) {
        rc = cd__model_by_name(e, rec.to, &to, err);
        if (rc == CD_OK)
            rc = cd__adapter_acquire(e, &rec, &ad, err);
        if (rc == CD_OK && !(mapped = malloc(nq * (size_t)to.dim * sizeof *mapped)))
            rc = cd__fail(err, CD_ENOMEM, "out of memory");
        if (rc == CD_OK)
            rc = cd_adapter_map(ad->ad, q, nq, mapped, err);
        snprintf(r->adapter, sizeof r->adapter, "%s", rec.name);
    }
    if (rc == CD_OK && filter)
        rc = cd_fields_match(g->fields, filter, &match, err);
    if (match) {
        r->filtered = true;
        r->matched = (int64_t)cd_match_count(match);
    }
    if (rc == CD_OK)
        rc = plan_query(e, g, &m, through ? &v : NULL, &plan, err);
    if (rc == CD_OK)
        rc = run_plan(&how, &plan, cd_metric_higher_is_better(through ? to.metric : m.metric),
                      match, q, mapped, nq, k, ids, scores, err);
    cd_match_destroy(match);
    for (size_t i = 0; rc == CD_OK && i < plan.n; i++) {
        cd_searched *s = &r->searched[r->n_searched++];
        snprintf(s->model, sizeof s->model, "%s", plan.parts[i].model);
        s->items = plan.parts[i].items;
        if (plan.parts[i].mapped)
            snprintf(s->adapter, sizeof s->adapter, "%s", rec.name);
    }
    if (rc == CD_OK && !(include & CD_SEARCH_UNCOUNTED))
        cd__traffic_note(g, ids, nq * k);   /* the backfill queue's order */
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
    cd__adapter_release(ad);
    free(mapped);
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

/* --- routes (PATCH /v1/galleries/{g} "adapters") --------------------- */

/*
 * Checks that g can route queries of req->model through req->adapter
 * (under g's policy as it stands in g->info) and fills *change.  The
 * caller holds g's write lock.
 */
static cd_err route_check(cd_engine *e, gallery *g, const cd_route_request *req,
                          cd_route_change *change, cd_error *err)
{
    cd_model m, to;
    cd_adapter_record rec;
    cd_err rc = cd__model_by_name(e, req->model, &m, err);
    if (rc != CD_OK)
        return rc;
    if (m.id == g->model.id)
        return cd__fail(err, CD_EINVAL, "model %s is gallery %s's own model: its queries need "
                        "no adapter", m.name, g->info.name);
    *change = (cd_route_change){m.id, 0};
    if (!req->adapter)
        return CD_OK;
    rc = cd_store_adapter_get(e->st, req->adapter, false, &rec, err);
    if (rc != CD_OK)
        return rc;
    if (rec.from_id != m.id)
        return cd__fail(err, CD_EINVAL, "adapter %s maps from model %s, not from %s",
                        rec.name, rec.from, m.name);
    rc = cd__model_by_name(e, rec.to, &to, err);
    if (rc != CD_OK)
        return rc;
    /* What a search through it would plan, so that a route that is set
     * can be searched (as long as the policy and the gallery stay). */
    query_plan plan;
    via v = {&rec, &to};
    rc = plan_query(e, g, &m, &v, &plan, err);
    change->adapter_id = rec.id;
    return rc;
}

cd_err cd_engine_gallery_update(cd_engine *e, const char *name,
                                const cd_query_policy *policy,
                                const cd_route_request *routes, size_t n,
                                cd_error *err)
{
    gallery *g;
    cd_route_change *changes = NULL;
    if (n && !(changes = calloc(n, sizeof *changes)))
        return cd__fail(err, CD_ENOMEM, "out of memory");
    cd_err rc = cd__gallery_enter(e, name, &g, err);
    if (rc != CD_OK) {
        free(changes);
        return rc;
    }
    pthread_rwlock_wrlock(&g->lock);
    cd_query_policy was = g->info.policy;
    if (policy)
        g->info.policy = *policy;   /* the routes are checked under it */
    for (size_t i = 0; rc == CD_OK && i < n; i++)
        rc = route_check(e, g, &routes[i], &changes[i], err);
    if (rc == CD_OK)
        rc = cd_store_gallery_update(e->st, g->info.id, policy, changes, n, err);
    if (rc != CD_OK)
        g->info.policy = was;
    pthread_rwlock_unlock(&g->lock);
    pthread_rwlock_unlock(&e->lock);
    free(changes);
    return rc;
}

cd_err cd_engine_gallery_routes(cd_engine *e, const char *name, cd_gallery_route **out,
                                size_t *n, cd_error *err)
{
    gallery *g;
    *out = NULL;
    *n = 0;
    cd_err rc = cd__gallery_enter(e, name, &g, err);
    if (rc != CD_OK)
        return rc;
    rc = cd_store_routes(e->st, g->info.id, out, n, err);
    pthread_rwlock_unlock(&e->lock);
    return rc;
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
