/*
 * eval.c - the compatibility report of eval.h (schema/concepts.md §4).
 *
 * cd_eval_run checks the input, then codes the gallery's labels as ints
 * (0..L-1 in order of first appearance) and keeps, per label, the
 * ascending gallery positions that carry it; per probe, its label's code
 * (-1 when the gallery lacks it), the gallery position of its own id (-1
 * when none: leave-one-out) and R, the items of its label it can
 * retrieve (0: skipped).  Each probe set (cross, baseline, paragon) is
 * scored in blocks of evaluated probes with one sgemm per block into a
 * bounded score buffer (64 MB, or one row when a row is larger); the rows
 * of a block are then walked in parallel, each OpenMP thread taking a run
 * of them with its own scratch.  A row is never sorted (see row_metrics):
 * only its R positives are, and every other item is merely placed between
 * two of them.  Threads share read-only input and write disjoint
 * per-probe result slots; nothing in the parallel part can fail, so every
 * allocation happens before it.
 */
#include "eval.h"

#include <cblas.h>
#include <limits.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Bytes of sgemm output kept at once: bounds memory for any gallery. */
#define SCORE_BLOCK_BYTES ((size_t)64 << 20)
/* Gallery and probe counts must fit a BLAS int and a uint32 position. */
#define EVAL_N_MAX ((size_t)INT_MAX / 2)
/* A row's score range is cut into sqrt(BUCKET_BALANCE n R) buckets, at
 * most BUCKETS_MAX (see buckets_for and row_scale). */
#define BUCKET_BALANCE 10.0
#define BUCKETS_MAX ((uint32_t)1 << 20)
/* Positives are counting-sorted by bucket, then by one insertion sort
 * when no bucket holds more than INSERTION_MAX of them (otherwise each
 * crowded one goes to qsort). */
#define INSERTION_MAX 64
/* Items whose buckets are computed at once (vectorised) in a scan. */
#define SCAN_CHUNK 256
/* A lookup entry's flag: its bucket holds a positive. */
#define MIXED ((uint32_t)1 << 31)

/* ---- string -> index map (open addressing over caller-owned keys) ---- */

/* Slots hold index + 1 into keys, 0 when free; keys outlive the map. */
typedef struct strmap {
    uint32_t *slots;
    size_t mask;                /* capacity - 1, a power of two minus 1 */
    const char *const *keys;
} strmap;

static uint64_t hash_str(const char *s)
{
    uint64_t h = 0xcbf29ce484222325ULL;     /* FNV-1a */
    for (; *s; s++) {
        h ^= (unsigned char)*s;
        h *= 0x100000001b3ULL;
    }
    return h ^ (h >> 29);
}

/* Room for n keys at load <= 1/2; false when out of memory. */
static bool strmap_init(strmap *m, const char *const *keys, size_t n)
{
    size_t cap = 16;
    while (cap < 2 * n)
        cap *= 2;
    m->slots = calloc(cap, sizeof *m->slots);
    m->mask = cap - 1;
    m->keys = keys;
    return m->slots != NULL;
}

static void strmap_finish(strmap *m)
{
    free(m->slots);
    m->slots = NULL;
}

/* Index of the key equal to s, or -1. */
static int64_t strmap_get(const strmap *m, const char *s)
{
    for (size_t at = (size_t)hash_str(s) & m->mask; m->slots[at];
         at = (at + 1) & m->mask)
        if (strcmp(m->keys[m->slots[at] - 1], s) == 0)
            return (int64_t)m->slots[at] - 1;
    return -1;
}

/* Adds keys[i] unless an equal key is there; returns that key's index,
 * or i when it was added. */
static size_t strmap_put(strmap *m, size_t i)
{
    size_t at = (size_t)hash_str(m->keys[i]) & m->mask;
    for (; m->slots[at]; at = (at + 1) & m->mask)
        if (strcmp(m->keys[m->slots[at] - 1], m->keys[i]) == 0)
            return m->slots[at] - 1;
    m->slots[at] = (uint32_t)i + 1;
    return i;
}

/* ---- validation ---- */

static cd_err check_ks(const cd_eval_input *in, cd_error *err)
{
    if (!in->ks || in->n_ks < 1 || in->n_ks > CD_EVAL_KS_MAX)
        return cd__fail(err, CD_EINVAL, "ks: %zu values, expected 1 to %d",
                        in->ks ? in->n_ks : 0, CD_EVAL_KS_MAX);
    bool primary_found = in->primary_k == 0;
    for (size_t i = 0; i < in->n_ks; i++) {
        if (in->ks[i] < 1 || in->ks[i] > CD_K_MAX)
            return cd__fail(err, CD_EINVAL, "ks[%zu]: %d is outside 1..%d",
                            i, in->ks[i], CD_K_MAX);
        for (size_t j = 0; j < i; j++)
            if (in->ks[j] == in->ks[i])
                return cd__fail(err, CD_EINVAL,
                                "ks: %d appears twice (ks[%zu] and ks[%zu])",
                                in->ks[i], j, i);
        primary_found |= in->ks[i] == in->primary_k;
    }
    if (!primary_found)
        return cd__fail(err, CD_EINVAL,
                        "primary_k %d is neither 0 (map) nor one of ks",
                        in->primary_k);
    return CD_OK;
}

/* Checks the probes and fills *ids (every probe id), which the caller
 * finishes whatever this returns. */
static cd_err check_probes(const cd_eval_input *in, strmap *ids,
                           cd_error *err)
{
    const cd_eval_set *p = &in->probes;
    if (p->n < 1)
        return cd__fail(err, CD_EINVAL, "queries: none given");
    if (p->n > EVAL_N_MAX)
        return cd__fail(err, CD_ETOOLARGE, "queries: %zu, at most %zu",
                        p->n, EVAL_N_MAX);
    if (!p->vectors || !p->ids)
        return cd__fail(err, CD_EINVAL, "queries: no %s",
                        p->vectors ? "ids" : "vectors");
    for (size_t i = 0; i < p->n; i++) {
        if (!p->ids[i])
            return cd__fail(err, CD_EINVAL, "query %zu: id is missing", i);
        if (!p->labels || !p->labels[i])
            return cd__fail(err, CD_EINVAL, "query %zu: label is missing",
                            i);
    }
    if (!strmap_init(ids, p->ids, p->n))
        return cd__fail(err, CD_ENOMEM, "out of memory checking %zu queries",
                        p->n);
    for (size_t i = 0; i < p->n; i++) {
        size_t first = strmap_put(ids, i);
        if (first != i)
            return cd__fail(err, CD_EINVAL,
                            "queries: id \"%.300s\" appears twice "
                            "(query %zu and query %zu)", p->ids[i], first, i);
    }
    return CD_OK;
}

/* Checks the baseline against the probes (ids: the probes' map) and
 * fills bline[q] with the baseline row of probe q. */
static cd_err check_baseline(const cd_eval_input *in, const strmap *ids,
                             uint32_t *bline, cd_error *err)
{
    const cd_eval_set *b = &in->baseline;
    size_t nq = in->probes.n;
    if (!b->vectors || !b->ids)
        return cd__fail(err, CD_EINVAL, "baseline: no %s",
                        b->vectors ? "ids" : "vectors");
    for (size_t q = 0; q < nq; q++)
        bline[q] = UINT32_MAX;
    for (size_t i = 0; i < b->n; i++) {
        if (!b->ids[i])
            return cd__fail(err, CD_EINVAL, "baseline %zu: id is missing", i);
        int64_t q = strmap_get(ids, b->ids[i]);
        if (q < 0)
            return cd__fail(err, CD_EINVAL,
                            "baseline %zu: id \"%.300s\" matches no query", i,
                            b->ids[i]);
        if (bline[q] != UINT32_MAX)
            return cd__fail(err, CD_EINVAL,
                            "baseline: id \"%.300s\" appears twice "
                            "(baseline %u and baseline %zu)", b->ids[i],
                            bline[q], i);
        bline[q] = (uint32_t)i;
    }
    for (size_t q = 0; q < nq; q++)
        if (bline[q] == UINT32_MAX)
            return cd__fail(err, CD_EINVAL,
                            "query %zu (id \"%.300s\") has no baseline entry",
                            q, in->probes.ids[q]);
    return CD_OK;
}

static cd_err check_gallery_shape(const cd_eval_input *in, cd_error *err)
{
    const cd_eval_set *g = &in->gallery;
    if (g->n == 0)
        return cd__fail(err, CD_EUNPROCESSABLE,
                        "the gallery has no labelled items");
    if (g->n > EVAL_N_MAX)
        return cd__fail(err, CD_ETOOLARGE, "gallery: %zu items, at most %zu",
                        g->n, EVAL_N_MAX);
    if (!g->vectors || !g->ids || !g->labels)
        return cd__fail(err, CD_EINVAL, "gallery: no %s",
                        !g->vectors ? "vectors" : !g->ids ? "ids" : "labels");
    if (in->own_probes && (in->own_dim < 1 || in->own_dim > CD_DIM_MAX ||
                           !in->own || !in->has_own))
        return cd__fail(err, CD_EINVAL, "mixed view: own dim %d outside "
                        "1..%d, or no own embeddings or flags", in->own_dim,
                        CD_DIM_MAX);
    for (size_t i = 0; i < g->n; i++) {
        if (!g->ids[i])
            return cd__fail(err, CD_EINVAL, "gallery item %zu: id is missing",
                            i);
        if (!g->labels[i])
            return cd__fail(err, CD_EINVAL,
                            "gallery item %zu: label is missing", i);
    }
    return CD_OK;
}

/* ---- the prepared evaluation ---- */

/* A positive (an item of the probe's label). */
typedef struct ev_pos {
    float s;                /* score */
    uint32_t p;             /* gallery position */
} ev_pos;

/* One thread's scratch, sized for the largest R and the gallery. */
typedef struct ev_scratch {
    ev_pos *gathered;       /* r_max: positives in position order */
    uint32_t *bucket;       /* r_max: their buckets */
    ev_pos *sorted;         /* r_max: by score desc, position asc */
    uint32_t *hist;         /* r_max + 1: hist[g] = others with exactly g
                               positives ranked above them */
    uint32_t *lut;          /* b_max + 4: per bucket, the positives in
                               earlier buckets, | MIXED if it has one */
    uint64_t *list;         /* n: bucket << 32 | position of the others
                               that fell into buckets with positives */
    uint32_t *chunk;        /* SCAN_CHUNK buckets */
} ev_scratch;

/* Per-probe outcome of one probe set. */
typedef struct ev_outcome {
    uint32_t *rank0;        /* nq: items ranked above the first positive */
    double *ap;             /* nq: average precision */
} ev_outcome;

typedef struct ev_ctx {
    const cd_eval_input *in;
    size_t n;               /* gallery items */
    size_t nq;              /* probes */
    strmap probe_ids;
    strmap gallery_ids;
    strmap label_map;       /* over gallery labels */
    uint32_t *bline;        /* nq: baseline row of each probe */
    int32_t *glab;          /* n: label code of each gallery item */
    uint32_t n_codes;       /* distinct gallery labels */
    uint32_t *code_first;   /* n_codes: first gallery item of each label */
    uint32_t *code_start;   /* n_codes + 1: offsets into code_pos */
    uint32_t *code_pos;     /* n: positions grouped by label, ascending */
    int32_t *pcode;         /* nq: probe label code, -1 absent */
    int32_t *self;          /* nq: position of the probe's own id, -1 */
    uint32_t *R;            /* nq: retrievable positives, 0 = skipped */
    uint32_t *evaluated;    /* n_eval probe indexes, in probe order */
    size_t n_eval;
    uint32_t r_max;
    float *norms;           /* n: |x|^2 for l2, of the vectors norms_of */
    const float *norms_of;
    float *qblock;          /* block_rows * dim: the block's probes */
    float *scores;          /* block_rows * n: the block's sgemm output */
    float *own_qblock;      /* mixed view: block_rows * own_dim */
    float *own_scores;      /* mixed view: block_rows * n */
    float *own_norms;       /* mixed view, l2: n, |own row|^2 */
    size_t block_rows;
    int n_threads;
    ev_scratch *scratch;    /* n_threads */
    void *scratch_mem;      /* one allocation behind every scratch */
    ev_outcome out[3];      /* cross, baseline, paragon */
    void *outcome_mem;
} ev_ctx;

enum { SET_CROSS, SET_BASELINE, SET_PARAGON };

static void ctx_finish(ev_ctx *c)
{
    free(c->outcome_mem);
    free(c->scratch_mem);
    free(c->scratch);
    free(c->scores);
    free(c->qblock);
    free(c->own_scores);
    free(c->own_qblock);
    free(c->own_norms);
    free(c->norms);
    free(c->evaluated);
    free(c->R);
    free(c->self);
    free(c->pcode);
    free(c->code_pos);
    free(c->code_start);
    free(c->code_first);
    free(c->glab);
    free(c->bline);
    strmap_finish(&c->label_map);
    strmap_finish(&c->gallery_ids);
    strmap_finish(&c->probe_ids);
}

/*
 * Buckets for a row of n items with r positives.  The lookup table costs
 * about a quarter of a nanosecond per bucket and row; an item sharing a
 * bucket with a positive costs some 5 ns to place, and about 0.5 n r / nb
 * items do.  The sum is least near sqrt(10 n r) buckets: 10 per positive
 * for 10 labels in 100,000 items, 100 per positive for 1,000 labels.
 * Never fewer than 3 per positive (n >= r), nor more than BUCKETS_MAX.
 */
static uint32_t buckets_for(uint32_t r, size_t n)
{
    double b = sqrt(BUCKET_BALANCE * (double)n * (double)r);
    if (b < 16)
        b = 16;
    return b > BUCKETS_MAX ? BUCKETS_MAX : (uint32_t)b;
}

/* Codes the labels, groups positions by label and finds each probe's
 * label, own position and R. */
static cd_err prepare_labels(ev_ctx *c, cd_error *err)
{
    const cd_eval_set *g = &c->in->gallery, *p = &c->in->probes;
    size_t n = c->n, nq = c->nq;
    c->glab = malloc(n * sizeof *c->glab);
    c->code_first = malloc(n * sizeof *c->code_first);
    c->code_pos = malloc(n * sizeof *c->code_pos);
    c->pcode = malloc(nq * sizeof *c->pcode);
    c->self = malloc(nq * sizeof *c->self);
    c->R = malloc(nq * sizeof *c->R);
    c->evaluated = malloc(nq * sizeof *c->evaluated);
    if (!c->glab || !c->code_first || !c->code_pos || !c->pcode ||
        !c->self || !c->R || !c->evaluated ||
        !strmap_init(&c->gallery_ids, g->ids, n) ||
        !strmap_init(&c->label_map, g->labels, n))
        return cd__fail(err, CD_ENOMEM, "out of memory indexing %zu items",
                        n);

    for (size_t i = 0; i < n; i++) {
        size_t first = strmap_put(&c->gallery_ids, i);
        if (first != i)
            return cd__fail(err, CD_EINVAL,
                            "gallery: id \"%.300s\" appears twice "
                            "(item %zu and item %zu)", g->ids[i], first, i);
        first = strmap_put(&c->label_map, i);
        if (first == i)
            c->code_first[c->n_codes++] = (uint32_t)i;
        c->glab[i] = first == i ? (int32_t)c->n_codes - 1 : c->glab[first];
    }

    c->code_start = calloc((size_t)c->n_codes + 1, sizeof *c->code_start);
    if (!c->code_start)
        return cd__fail(err, CD_ENOMEM, "out of memory indexing %zu labels",
                        (size_t)c->n_codes);
    for (size_t i = 0; i < n; i++)
        c->code_start[c->glab[i] + 1]++;
    for (uint32_t k = 0; k < c->n_codes; k++)
        c->code_start[k + 1] += c->code_start[k];
    /* Fill in position order through a cursor per label (code_first is
     * free to serve as one: it is rebuilt right after). */
    for (uint32_t k = 0; k < c->n_codes; k++)
        c->code_first[k] = c->code_start[k];
    for (size_t i = 0; i < n; i++)
        c->code_pos[c->code_first[c->glab[i]]++] = (uint32_t)i;
    for (uint32_t k = 0; k < c->n_codes; k++)
        c->code_first[k] = c->code_pos[c->code_start[k]];

    for (size_t q = 0; q < nq; q++) {
        int64_t l = strmap_get(&c->label_map, p->labels[q]);
        int64_t s = strmap_get(&c->gallery_ids, p->ids[q]);
        c->pcode[q] = l < 0 ? -1 : c->glab[l];
        c->self[q] = (int32_t)s;
        c->R[q] = 0;
        if (l >= 0) {
            uint32_t k = (uint32_t)c->glab[l];
            c->R[q] = c->code_start[k + 1] - c->code_start[k] -
                      (s >= 0 && c->glab[s] == (int32_t)k);
        }
        if (c->R[q] > 0) {
            c->evaluated[c->n_eval++] = (uint32_t)q;
            if (c->R[q] > c->r_max)
                c->r_max = c->R[q];
        }
    }
    return CD_OK;
}

/* Allocates the score block, the per-thread scratch and the outcomes. */
/* |x|^2 of one vector, summed in double and rounded to float. */
static float sq_norm(const float *x, int dim)
{
    double s = 0.0;
    for (int d = 0; d < dim; d++)
        s += (double)x[d] * (double)x[d];
    return (float)s;
}

static cd_err prepare_work(ev_ctx *c, cd_error *err)
{
    size_t n = c->n, dim = (size_t)c->in->dim;
    size_t rows = SCORE_BLOCK_BYTES / (n * sizeof(float));
    if (rows < 1)
        rows = 1;
    if (rows > c->n_eval)
        rows = c->n_eval;
    c->block_rows = rows;
    /* No more threads than rows in a block: each needs its own scratch. */
    int threads = omp_get_max_threads();
    c->n_threads = threads < 1 ? 1 : (size_t)threads > rows ? (int)rows
                                                              : threads;

    size_t r = c->r_max, nb = (size_t)buckets_for(c->r_max, n) + 3;
    size_t per_thread =
        n * sizeof(uint64_t) + 2 * r * sizeof(ev_pos) +
        r * sizeof(uint32_t) + (r + 1) * sizeof(uint32_t) +
        (nb + 1) * sizeof(uint32_t) + SCAN_CHUNK * sizeof(uint32_t);
    per_thread = (per_thread + 63) & ~(size_t)63;

    c->outcome_mem = malloc(3 * c->nq * (sizeof(uint32_t) + sizeof(double)));
    c->norms = c->in->metric == CD_METRIC_L2 ? malloc(n * sizeof(float))
                                             : NULL;
    c->qblock = malloc(rows * dim * sizeof(float));
    c->scores = malloc(rows * n * sizeof(float));
    c->scratch = calloc((size_t)c->n_threads, sizeof *c->scratch);
    c->scratch_mem = malloc((size_t)c->n_threads * per_thread);
    bool mixed = c->in->own_probes != NULL;
    if (mixed) {
        size_t odim = (size_t)c->in->own_dim;
        c->own_qblock = malloc(rows * odim * sizeof(float));
        c->own_scores = malloc(rows * n * sizeof(float));
        if (c->in->metric == CD_METRIC_L2 && (c->own_norms = malloc(n * sizeof(float))))
            for (size_t j = 0; j < n; j++)
                c->own_norms[j] = c->in->has_own[j]
                    ? sq_norm(c->in->own + j * odim, c->in->own_dim) : 0.0f;
    }
    if (!c->outcome_mem || (c->in->metric == CD_METRIC_L2 && !c->norms) ||
        !c->qblock || !c->scores || !c->scratch || !c->scratch_mem ||
        (mixed && (!c->own_qblock || !c->own_scores ||
                   (c->in->metric == CD_METRIC_L2 && !c->own_norms))))
        return cd__fail(err, CD_ENOMEM,
                        "out of memory scoring %zu queries against %zu items",
                        c->n_eval, n);

    double *aps = c->outcome_mem;
    uint32_t *ranks = (uint32_t *)(aps + 3 * c->nq);
    for (int s = 0; s < 3; s++) {
        c->out[s].ap = aps + (size_t)s * c->nq;
        c->out[s].rank0 = ranks + (size_t)s * c->nq;
    }
    for (int t = 0; t < c->n_threads; t++) {
        /* Widest alignment first, so that every array stays aligned. */
        char *m = (char *)c->scratch_mem + (size_t)t * per_thread;
        ev_scratch *w = &c->scratch[t];
        w->list = (uint64_t *)m;
        m += n * sizeof(uint64_t);
        w->gathered = (ev_pos *)m;
        m += r * sizeof(ev_pos);
        w->bucket = (uint32_t *)m;
        m += r * sizeof(uint32_t);
        w->sorted = (ev_pos *)m;
        m += r * sizeof(ev_pos);
        w->chunk = (uint32_t *)m;
        m += SCAN_CHUNK * sizeof(uint32_t);
        w->hist = (uint32_t *)m;
        m += (r + 1) * sizeof(uint32_t);
        w->lut = (uint32_t *)m;
    }
    return CD_OK;
}

/* ---- one score row ---- */

/* True when positive a ranks above the item (s, p): higher score, or the
 * same score at a lower gallery position. */
static inline bool ranks_above(const ev_pos *a, float s, uint32_t p)
{
    return (a->s > s) | ((a->s == s) & (a->p < p));
}

/* qsort's order: ranks_above, made total for NaN (last) so that even
 * garbage input cannot give qsort an inconsistent comparison. */
static int by_rank(const void *x, const void *y)
{
    const ev_pos *a = x, *b = y;
    bool an = isnan(a->s), bn = isnan(b->s);
    if (an != bn)
        return an ? 1 : -1;
    if (!an && a->s != b->s)
        return a->s > b->s ? -1 : 1;
    return (a->p > b->p) - (a->p < b->p);
}

/*
 * The bucket of a score: monotone non-increasing in s (a higher score
 * never lands in a later bucket), so two items in different buckets are
 * ordered by their buckets and only items sharing a bucket need to be
 * compared.  Bucket 0 holds scores above every positive, the last one
 * (top) scores below them; positives fill 1..top-2 (see row_scale).
 * Plain float operations, the same in every caller and vectorised or
 * not, so an item always gets the same bucket.
 */
static inline uint32_t bucket_of(float s, float hi, float scale, float top)
{
    float x = (hi - s) * scale + 1.0f;
    x = x > 0.0f ? x : 0.0f;
    x = x < top ? x : top;
    return (uint32_t)(int32_t)x;
}

/* Spreads the positives' range [lo, hi] over buckets 1..nb (nb at most
 * 2^20): the slight shrink keeps (hi - lo) * scale + 1 below nb + 1 after
 * float rounding, so no positive reaches the last bucket, nb + 2. */
static float row_scale(float lo, float hi, uint32_t nb)
{
    double scale;
    if (hi > lo)
        scale = (double)nb * (1.0 - 1.0 / (1 << 20)) /
                ((double)hi - (double)lo);
    else                        /* one distinct score: a narrow band */
        scale = (double)(1 << 20) / fmax(fabs((double)hi), 1e-30);
    return (float)fmin(scale, 1e30);
}

static void insertion_sort(ev_pos *a, size_t m)
{
    for (size_t i = 1; i < m; i++) {
        if (!ranks_above(&a[i], a[i - 1].s, a[i - 1].p))
            continue;
        ev_pos v = a[i];
        size_t j = i;
        for (; j > 0 && ranks_above(&v, a[j - 1].s, a[j - 1].p); j--)
            a[j] = a[j - 1];
        a[j] = v;
    }
}

/* Four counts at a time (GCC and clang vector extensions): the lanes'
 * own prefix sums by two shifted adds, plus the running total, kept in
 * every lane so that the loop's only dependency is one add and one
 * shuffle. */
typedef uint32_t ev_v4u __attribute__((vector_size(16)));
#if defined(__clang__)
#define SHUFFLE2(x, y, a, b, c, d) __builtin_shufflevector(x, y, a, b, c, d)
#else
#define SHUFFLE2(x, y, a, b, c, d) __builtin_shuffle(x, y, (ev_v4u){a, b, c, d})
#endif

/* Replaces counts a[0..n) by their inclusive prefix sums, | MIXED where
 * the count was not zero. */
static void prefix_sums(uint32_t *a, size_t n)
{
    const ev_v4u zero = {0, 0, 0, 0}, flag = {MIXED, MIXED, MIXED, MIXED};
    ev_v4u total = zero;
    size_t t = 0;
    for (; t + 4 <= n; t += 4) {
        ev_v4u k, x;
        memcpy(&k, a + t, sizeof k);
        x = k + SHUFFLE2(k, zero, 4, 0, 1, 2);
        x += SHUFFLE2(x, zero, 4, 5, 0, 1);
        x += total;
        total = SHUFFLE2(x, x, 3, 3, 3, 3);
        x |= (ev_v4u)(k != 0) & flag;
        memcpy(a + t, &x, sizeof x);
    }
    uint32_t sum = total[0];
    for (; t < n; t++) {
        uint32_t k = a[t];
        sum += k;
        a[t] = sum | (k ? MIXED : 0);
    }
}

/*
 * Sorts the R gathered positives by rank (score desc, position asc) into
 * w->sorted and fills the lookup table lut[t], t in 0..top+1: the number
 * of positives in buckets before t, | MIXED when bucket t holds one.  A
 * stable counting sort by bucket counts into lut itself: its inclusive
 * prefix sums are each bucket's end, and placing the positives backwards,
 * counting down, leaves each bucket's start there.  Insertion sort then
 * only has to fix the order inside buckets, mostly of one; when a bucket
 * is crowded (scores bunched up by an outlier), each crowded one goes to
 * qsort instead.
 */
static void sort_positives(ev_scratch *w, uint32_t R, float hi,
                           float scale, uint32_t top)
{
    uint32_t *lut = w->lut, *b = w->bucket;
    const ev_pos *g = w->gathered;
    size_t nbk = (size_t)top + 1;
    memset(lut, 0, nbk * sizeof *lut);
    uint32_t most = 0;
    for (uint32_t i = 0; i < R; i++) {
        b[i] = bucket_of(g[i].s, hi, scale, (float)top);
        uint32_t k = ++lut[b[i]];
        most = k > most ? k : most;
    }
    prefix_sums(lut, nbk);
    lut[nbk] = R;
    /* Backwards: stable.  A bucket being filled is MIXED and its count
     * stays above its start, so the decrement never reaches the flag. */
    for (uint32_t i = R; i-- > 0;)
        w->sorted[--lut[b[i]] & ~MIXED] = g[i];
    if (most <= INSERTION_MAX) {
        insertion_sort(w->sorted, R);
        return;
    }
    for (size_t t = 0; t < nbk; t++) {
        size_t begin = lut[t] & ~MIXED, size = (lut[t + 1] & ~MIXED) - begin;
        if (size > INSERTION_MAX)
            qsort(w->sorted + begin, size, sizeof(ev_pos), by_rank);
        else if (size > 1)
            insertion_sort(w->sorted + begin, size);
    }
}

/*
 * Counts every row item at g, the positives in buckets before its own,
 * which is the number ranked above it unless its bucket holds positives;
 * those items are listed too (returns how many), to be moved to their
 * exact place.  Buckets are computed a chunk at a time in a loop the
 * compiler vectorises; the next row is prefetched meanwhile.  Inlined
 * twice, with and without l2 norms, so that neither loop tests the
 * metric.
 */
static inline __attribute__((always_inline)) size_t
scan_row(const float *row, const float *norms, size_t n, float hi,
         float scale, float top, const uint32_t *lut, uint32_t *hist,
         uint64_t *list, uint32_t *chunk, const float *next)
{
    size_t m = 0;
    for (size_t j0 = 0; j0 < n; j0 += SCAN_CHUNK) {
        size_t len = n - j0 < SCAN_CHUNK ? n - j0 : SCAN_CHUNK;
        const float *s = row + j0;
        if (next)
            for (size_t k = 0; k < len; k += 64 / sizeof(float))
                __builtin_prefetch(next + j0 + k);
        if (norms) {
            const float *nx = norms + j0;
#pragma omp simd
            for (size_t k = 0; k < len; k++)
                chunk[k] = bucket_of(s[k] - nx[k], hi, scale, top);
        } else {
#pragma omp simd
            for (size_t k = 0; k < len; k++)
                chunk[k] = bucket_of(s[k], hi, scale, top);
        }
        uint64_t j = j0;
#pragma GCC unroll 4
        for (size_t k = 0; k < len; k++, j++) {
            uint32_t t = chunk[k], e = lut[t];
            hist[e & ~MIXED]++;
            list[m] = (uint64_t)t << 32 | j;
            m += e >> 31;
        }
    }
    return m;
}

/*
 * Ranks one probe's row without sorting it.  The R positives are gathered
 * and sorted.  Every other item only needs g, the number of positives
 * ranked above it: in a bucket without positives g is the count of
 * positives in earlier buckets, read from a lookup table; items in
 * buckets with positives are listed and placed among those exactly.
 * With hist[g] the number of items after exactly g positives, positive i
 * (0-based) has rank i + 1 + hist[0] + ... + hist[i], which gives AP,
 * and hist[0] is the number of items above the first positive.  The
 * probe's positives and own item are first overwritten with -inf in the
 * row (its scratch), so the scan counts them below every positive, from
 * where they are taken out.
 */
static void row_metrics(const ev_ctx *c, ev_scratch *w, float *row,
                        const float *next, const float *norms, size_t q,
                        uint32_t *rank0, double *ap)
{
    size_t n = c->n;
    uint32_t R = c->R[q];
    int32_t self = c->self[q];
    const uint32_t *pos = c->code_pos + c->code_start[c->pcode[q]];
    size_t n_pos = c->code_start[c->pcode[q] + 1] -
                   c->code_start[c->pcode[q]];

    float lo = INFINITY, hi = -INFINITY;
    uint32_t k = 0;
    for (size_t i = 0; i < n_pos; i++) {
        uint32_t p = pos[i];
        float s = norms ? row[p] - norms[p] : row[p];
        row[p] = -INFINITY;
        if ((int32_t)p == self)
            continue;
        w->gathered[k].s = s;
        w->gathered[k].p = p;
        k++;
        lo = s < lo ? s : lo;
        hi = s > hi ? s : hi;
    }
    if (self >= 0)
        row[self] = -INFINITY;

    uint32_t nb = buckets_for(R, n), top = nb + 2;
    float ftop = (float)top;
    float scale = row_scale(lo, hi, nb);
    sort_positives(w, R, hi, scale, top);

    uint32_t *hist = w->hist;
    memset(hist, 0, ((size_t)R + 1) * sizeof *hist);
    size_t m = norms ? scan_row(row, norms, n, hi, scale, ftop, w->lut, hist,
                                w->list, w->chunk, next)
                     : scan_row(row, NULL, n, hi, scale, ftop, w->lut, hist,
                                w->list, w->chunk, next);
    /* The masked positives and own item: in the last bucket, lut R. */
    hist[R] -= R + (self >= 0);

    const ev_pos *sp = w->sorted;
    for (size_t e = 0; e < m; e++) {
        uint32_t j = (uint32_t)w->list[e], t = (uint32_t)(w->list[e] >> 32);
        float s = norms ? row[j] - norms[j] : row[j];
        uint32_t a = w->lut[t] & ~MIXED, b = w->lut[t + 1] & ~MIXED;
        hist[a]--;          /* counted at its bucket's start by the scan */
        while (b - a > 8) {
            uint32_t mid = a + (b - a) / 2;
            if (ranks_above(&sp[mid], s, j))
                a = mid + 1;
            else
                b = mid;
        }
        /* Mostly one positive: count, without a branch on the outcome. */
        uint32_t g = a;
        for (uint32_t i = a; i < b; i++)
            g += ranks_above(&sp[i], s, j);
        hist[g]++;
    }

    /* hist[i] becomes the items above positive i, so that the divisions
     * (the loop's cost) can run two or more at a time. */
    *rank0 = hist[0];
    for (uint32_t i = 1; i < R; i++)
        hist[i] += hist[i - 1];
    double sum = 0.0;
#pragma omp simd reduction(+ : sum)
    for (uint32_t i = 0; i < R; i++)
        sum += (double)(i + 1) / ((double)(i + 1) + (double)hist[i]);
    *ap = sum / (double)R;
}

/* Squared norms of a gallery's vectors, rounded to float. */
static void compute_norms(float *norms, const float *x, size_t n, int dim)
{
    for (size_t i = 0; i < n; i++)
        norms[i] = sq_norm(x + i * (size_t)dim, dim);
}

/*
 * The mixed view's cross rows: the block's own_probes against the own
 * embeddings, written over the score of every item with has_own.  The
 * rows are made final first (for l2, 2 q.x - |x|^2 - |q|^2 in each space,
 * shifted by the gallery-space |q|^2 that every row leaves out), so the
 * caller ranks them without norms.
 */
static void mix_block(ev_ctx *c, size_t b0, size_t rows, const float *norms)
{
    const cd_eval_input *in = c->in;
    size_t n = c->n, odim = (size_t)in->own_dim, dim = (size_t)in->dim;
    bool l2 = in->metric == CD_METRIC_L2;
    for (size_t r = 0; r < rows; r++)
        memcpy(c->own_qblock + r * odim,
               in->own_probes + (size_t)c->evaluated[b0 + r] * odim,
               odim * sizeof(float));
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)rows, (int)n,
                (int)odim, l2 ? 2.0f : 1.0f, c->own_qblock, (int)odim,
                in->own, (int)odim, 0.0f, c->own_scores, (int)n);
    for (size_t r = 0; r < rows; r++) {
        float *row = c->scores + r * n;
        const float *own = c->own_scores + r * n;
        float shift = 0.0f;
        if (l2) {
            size_t q = c->evaluated[b0 + r];
            shift = sq_norm(in->probes.vectors + q * dim, in->dim) -
                    sq_norm(in->own_probes + q * odim, in->own_dim);
        }
        for (size_t j = 0; j < n; j++) {
            if (in->has_own[j])
                row[j] = l2 ? own[j] - c->own_norms[j] + shift : own[j];
            else if (l2)
                row[j] -= norms[j];
        }
    }
}

/* Scores every evaluated probe of one set against gallery vectors x. */
static void score_set(ev_ctx *c, int set, const float *x)
{
    const cd_eval_input *in = c->in;
    size_t n = c->n, dim = (size_t)in->dim;
    const float *norms = NULL;
    if (in->metric == CD_METRIC_L2) {
        if (c->norms_of != x)
            compute_norms(c->norms, x, n, in->dim);
        c->norms_of = x;
        norms = c->norms;
    }
    /* For l2 rank by 2 q.x - |x|^2: -|q - x|^2 less the constant |q|^2. */
    float alpha = in->metric == CD_METRIC_L2 ? 2.0f : 1.0f;
    ev_outcome *o = &c->out[set];

    for (size_t b0 = 0; b0 < c->n_eval; b0 += c->block_rows) {
        size_t rows = c->n_eval - b0 < c->block_rows ? c->n_eval - b0
                                                     : c->block_rows;
        for (size_t r = 0; r < rows; r++) {
            size_t q = c->evaluated[b0 + r];
            const float *v = set == SET_BASELINE
                ? in->baseline.vectors + (size_t)c->bline[q] * dim
                : in->probes.vectors + q * dim;
            memcpy(c->qblock + r * dim, v, dim * sizeof(float));
        }
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)rows,
                    (int)n, (int)dim, alpha, c->qblock, (int)dim, x,
                    (int)dim, 0.0f, c->scores, (int)n);
        const float *row_norms = norms;
        if (set == SET_CROSS && in->own_probes) {
            mix_block(c, b0, rows, norms);
            row_norms = NULL;
        }
        /* Guided: long runs of consecutive rows first, shorter ones at
         * the end to even out (a row costs more or less with its label's
         * R and with where it sits in the caches).  A thread prefetches
         * the row after its current one while it scans, which within a
         * run is its next. */
        long nrows = (long)rows;
#pragma omp parallel for num_threads(c->n_threads) schedule(guided)
        for (long r = 0; r < nrows; r++) {
            size_t q = c->evaluated[b0 + (size_t)r];
            float *row = c->scores + (size_t)r * n;
            row_metrics(c, &c->scratch[omp_get_thread_num()], row,
                        r + 1 < nrows ? row + n : NULL, row_norms, q,
                        &o->rank0[q], &o->ap[q]);
        }
    }
}

/* ---- the report ---- */

static void set_metrics(const ev_ctx *c, const cd_eval_report *r, int set,
                        cd_eval_metrics *m)
{
    const ev_outcome *o = &c->out[set];
    double n = (double)c->n_eval;
    double sum = 0.0;
    for (size_t i = 0; i < r->n_ks; i++) {
        size_t hits = 0;
        for (size_t e = 0; e < c->n_eval; e++)
            hits += o->rank0[c->evaluated[e]] < (uint32_t)r->ks[i];
        m->top[i] = c->n_eval ? (double)hits / n : NAN;
    }
    for (size_t i = r->n_ks; i < CD_EVAL_KS_MAX; i++)
        m->top[i] = NAN;
    for (size_t e = 0; e < c->n_eval; e++)
        sum += o->ap[c->evaluated[e]];
    m->map = c->n_eval ? sum / n : NAN;
}

static double primary_of(const cd_eval_report *r, const cd_eval_metrics *m)
{
    if (r->primary_k == 0)
        return m->map;
    for (size_t i = 0; i < r->n_ks; i++)
        if (r->ks[i] == r->primary_k)
            return m->top[i];
    return NAN;
}

static double gain(double cross, double base, double paragon)
{
    double d = paragon - base;
    return d != 0.0 ? (cross - base) / d : NAN;
}

static int by_int(const void *x, const void *y)
{
    int a = *(const int *)x, b = *(const int *)y;
    return (a > b) - (a < b);
}

static int by_flips_then_label(const void *x, const void *y)
{
    const cd_eval_label *a = x, *b = y;
    if (a->negative_flips != b->negative_flips)
        return a->negative_flips > b->negative_flips ? -1 : 1;
    return strcmp(a->label, b->label);
}

/* Flips, the per-label breakdown and the flipped ids. */
static cd_err fill_flips(const ev_ctx *c, cd_eval_report *r, cd_error *err)
{
    bool base = r->has_baseline;
    int64_t wrong_cross = 0;
    size_t n_used = 0;
    int64_t *per = calloc((size_t)c->n_codes * 5, sizeof *per);
    if (!per)
        return cd__fail(err, CD_ENOMEM, "out of memory counting flips");
    /* per[5k..5k+4]: queries, cross correct, baseline correct, nf, pf */
    for (size_t e = 0; e < c->n_eval; e++) {
        size_t q = c->evaluated[e];
        int64_t *l = per + 5 * (size_t)c->pcode[q];
        bool cc = c->out[SET_CROSS].rank0[q] == 0;
        bool bc = base && c->out[SET_BASELINE].rank0[q] == 0;
        n_used += l[0] == 0;
        l[0]++;
        l[1] += cc;
        l[2] += bc;
        wrong_cross += !cc;
        if (base) {
            l[3] += bc && !cc;
            l[4] += !bc && cc;
            r->negative_flips += bc && !cc;
            r->positive_flips += !bc && cc;
        }
    }
    double nq = (double)c->n_eval;
    r->nfr = base && c->n_eval ? (double)r->negative_flips / nq : NAN;
    r->pfr = base && c->n_eval ? (double)r->positive_flips / nq : NAN;
    r->nfi = base && wrong_cross ? (double)r->negative_flips /
                                       (double)wrong_cross
                                 : NAN;

    cd_err rc = CD_OK;
    r->labels = calloc(n_used ? n_used : 1, sizeof *r->labels);
    r->negative_flip_ids = calloc(r->negative_flips ? (size_t)r->negative_flips
                                                    : 1,
                                  sizeof *r->negative_flip_ids);
    if (!r->labels || !r->negative_flip_ids)
        goto nomem;
    for (uint32_t k = 0; k < c->n_codes; k++) {
        const int64_t *l = per + 5 * (size_t)k;
        if (l[0] == 0)
            continue;
        cd_eval_label *out = &r->labels[r->n_labels];
        out->label = strdup(c->in->gallery.labels[c->code_first[k]]);
        if (!out->label)
            goto nomem;
        r->n_labels++;
        out->queries = l[0];
        out->cross_top1 = (double)l[1] / (double)l[0];
        out->baseline_top1 = base ? (double)l[2] / (double)l[0] : NAN;
        out->negative_flips = l[3];
        out->positive_flips = l[4];
    }
    qsort(r->labels, r->n_labels, sizeof *r->labels, by_flips_then_label);
    for (size_t e = 0; base && e < c->n_eval; e++) {
        size_t q = c->evaluated[e];
        if (c->out[SET_BASELINE].rank0[q] == 0 &&
            c->out[SET_CROSS].rank0[q] != 0) {
            char *id = strdup(c->in->probes.ids[q]);
            if (!id)
                goto nomem;
            r->negative_flip_ids[r->n_negative_flips++] = id;
        }
    }
    goto done;
nomem:
    rc = cd__fail(err, CD_ENOMEM, "out of memory building the report");
done:
    free(per);
    return rc;
}

static cd_err build_report(const ev_ctx *c, cd_eval_report *r,
                           cd_error *err)
{
    const cd_eval_input *in = c->in;
    r->n_ks = in->n_ks;
    memcpy(r->ks, in->ks, in->n_ks * sizeof *in->ks);
    qsort(r->ks, r->n_ks, sizeof *r->ks, by_int);
    r->primary_k = in->primary_k;
    r->queries = (int64_t)c->n_eval;
    r->skipped = (int64_t)(c->nq - c->n_eval);
    r->gallery_items = (int64_t)c->n;
    r->coverage = NAN;
    if (in->own_probes) {
        size_t own = 0;
        for (size_t j = 0; j < c->n; j++)
            own += in->has_own[j] != 0;
        r->coverage = (double)own / (double)c->n;
    }
    r->has_baseline = in->baseline.n > 0;
    r->has_paragon = in->paragon != NULL;

    set_metrics(c, r, SET_CROSS, &r->cross);
    cd_eval_metrics none;
    for (size_t i = 0; i < CD_EVAL_KS_MAX; i++)
        none.top[i] = NAN;
    none.map = NAN;
    r->baseline = none;
    r->paragon = none;
    if (r->has_baseline)
        set_metrics(c, r, SET_BASELINE, &r->baseline);
    if (r->has_paragon)
        set_metrics(c, r, SET_PARAGON, &r->paragon);
    r->update_gain = none;
    if (r->has_baseline && r->has_paragon) {
        for (size_t i = 0; i < r->n_ks; i++)
            r->update_gain.top[i] = gain(r->cross.top[i],
                                         r->baseline.top[i],
                                         r->paragon.top[i]);
        r->update_gain.map = gain(r->cross.map, r->baseline.map,
                                  r->paragon.map);
    }

    r->primary_cross = primary_of(r, &r->cross);
    r->primary_baseline = primary_of(r, &r->baseline);
    r->compatible = r->has_baseline
                        ? r->primary_cross > r->primary_baseline
                        : -1;
    return fill_flips(c, r, err);
}

cd_err cd_eval_run(const cd_eval_input *in, cd_eval_report **out,
                   cd_error *err)
{
    if (!out)
        return cd__fail(err, CD_EINVAL, "no place for the report");
    *out = NULL;
    if (!in)
        return cd__fail(err, CD_EINVAL, "no evaluation input");
    if (in->dim < 1 || in->dim > CD_DIM_MAX)
        return cd__fail(err, CD_EINVAL, "dim %d is outside 1..%d", in->dim,
                        CD_DIM_MAX);
    if (in->metric != CD_METRIC_COSINE && in->metric != CD_METRIC_IP &&
        in->metric != CD_METRIC_L2)
        return cd__fail(err, CD_EINVAL, "metric %d is not cosine, ip or l2",
                        (int)in->metric);
    cd_err rc = check_ks(in, err);
    if (rc != CD_OK)
        return rc;

    ev_ctx c;
    memset(&c, 0, sizeof c);
    c.in = in;
    c.n = in->gallery.n;
    c.nq = in->probes.n;
    cd_eval_report *r = NULL;
    if ((rc = check_probes(in, &c.probe_ids, err)) != CD_OK)
        goto done;
    if (in->baseline.n > 0) {
        c.bline = malloc(c.nq * sizeof *c.bline);
        if (!c.bline) {
            rc = cd__fail(err, CD_ENOMEM, "out of memory matching %zu "
                          "baseline entries", in->baseline.n);
            goto done;
        }
        if ((rc = check_baseline(in, &c.probe_ids, c.bline, err)) != CD_OK)
            goto done;
    }
    if ((rc = check_gallery_shape(in, err)) != CD_OK)
        goto done;
    if ((rc = prepare_labels(&c, err)) != CD_OK)
        goto done;
    if (c.n_eval > 0) {
        if ((rc = prepare_work(&c, err)) != CD_OK)
            goto done;
        score_set(&c, SET_CROSS, in->gallery.vectors);
        if (in->baseline.n > 0)
            score_set(&c, SET_BASELINE, in->gallery.vectors);
        if (in->paragon)
            score_set(&c, SET_PARAGON, in->paragon);
    }
    r = calloc(1, sizeof *r);
    if (!r) {
        rc = cd__fail(err, CD_ENOMEM, "out of memory building the report");
        goto done;
    }
    if ((rc = build_report(&c, r, err)) != CD_OK)
        goto done;
    *out = r;
    r = NULL;
done:
    cd_eval_report_destroy(r);
    ctx_finish(&c);
    return rc;
}

void cd_eval_report_destroy(cd_eval_report *r)
{
    if (!r)
        return;
    for (size_t i = 0; i < r->n_labels; i++)
        free(r->labels[i].label);
    free(r->labels);
    for (size_t i = 0; i < r->n_negative_flips; i++)
        free(r->negative_flip_ids[i]);
    free(r->negative_flip_ids);
    free(r);
}

const char *cd_eval_metric_name(int k, char buf[CD_EVAL_METRIC_NAME_SIZE])
{
    if (k > 0)
        snprintf(buf, CD_EVAL_METRIC_NAME_SIZE, "top%d", k);
    else
        snprintf(buf, CD_EVAL_METRIC_NAME_SIZE, "map");
    return buf;
}
