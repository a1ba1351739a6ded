/*
 * test_eval.c - the compatibility report against a naive reference.
 *
 * The reference below is written from schema/concepts.md §4 alone and shares no
 * code with core/eval.c: scores in double precision, every probe's whole
 * ranking sorted with qsort by (score desc, position asc), then top-k, AP,
 * flips, the criterion and the per-label lines read straight off the
 * definitions.  Scenarios are a table, each run for cosine, ip and l2.
 * Vectors are small integers (ip, l2) or unit vectors whose components
 * are +-1/4 or +-1/2 (cosine), so float and double scores are exactly
 * equal and ties are real ties; two scenarios use Gaussian floats rounded
 * to a fine dyadic grid, for the same reason (unrounded, a near-tie that
 * float and double order differently moves an AP by 1e-5 now and then).
 *
 * Quick mode (under valgrind, seen in LD_PRELOAD, or with COMPATD_LONG=0)
 * shrinks the large scenario, which otherwise spans several score blocks
 * of the engine (64 MB of scores each) and keeps both cores busy.
 */
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "eval.h"

/* ---- random numbers ---- */

static uint64_t rng_state = 0x2545F4914F6CDD1DULL;

static uint32_t rnd(void)
{
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return (uint32_t)((rng_state * 0x2545F4914F6CDD1DULL) >> 32);
}

/* Uniform in lo..hi, both included. */
static int rnd_int(int lo, int hi)
{
    return lo + (int)(rnd() % (uint32_t)(hi - lo + 1));
}

static bool rnd_pct(int pct)
{
    return (int)(rnd() % 100) < pct;
}

static double rnd_gauss(void)
{
    double u = (rnd() + 1.0) / 4294967297.0, v = rnd() / 4294967296.0;
    return sqrt(-2.0 * log(u)) * cos(6.283185307179586 * v);
}

static void *xcalloc(size_t n, size_t size)
{
    void *p = calloc(n ? n : 1, size);
    REQUIRE(p != NULL);
    return p;
}

static char *xstrdup(const char *s)
{
    char *p = strdup(s);
    REQUIRE(p != NULL);
    return p;
}

static char *fmt_id(const char *prefix, size_t i)
{
    char buf[64];
    snprintf(buf, sizeof buf, "%s%zu", prefix, i);
    return xstrdup(buf);
}

/* ---- the naive reference ---- */

typedef struct ref_item {
    double score;
    size_t pos;
} ref_item;

static int ref_by_rank(const void *x, const void *y)
{
    const ref_item *a = x, *b = y;
    if (a->score != b->score)
        return a->score > b->score ? -1 : 1;
    return (a->pos > b->pos) - (a->pos < b->pos);
}

/* One probe against one gallery: skipped, or the 1-based rank of its
 * first item of the probe's label and its AP. */
typedef struct ref_probe {
    bool skipped;
    size_t first;
    double ap;
} ref_probe;

static double ref_score(cd_metric metric, const float *a, const float *b,
                        int dim)
{
    double s = 0.0;
    for (int d = 0; d < dim; d++) {
        if (metric == CD_METRIC_L2)
            s -= ((double)a[d] - b[d]) * ((double)a[d] - b[d]);
        else
            s += (double)a[d] * b[d];
    }
    return s;
}

static ref_probe ref_rank(cd_metric metric, int dim, const float *q,
                          const char *qid, const char *qlabel,
                          const float *g, const char *const *gids,
                          const char *const *glabels, size_t n,
                          ref_item *items)
{
    size_t m = 0;
    for (size_t i = 0; i < n; i++) {
        if (strcmp(gids[i], qid) == 0)
            continue;       /* leave-one-out */
        items[m].score = ref_score(metric, q, g + i * (size_t)dim, dim);
        items[m].pos = i;
        m++;
    }
    qsort(items, m, sizeof *items, ref_by_rank);
    ref_probe o = {true, 0, 0.0};
    size_t R = 0, hits = 0;
    for (size_t r = 0; r < m; r++)
        R += strcmp(glabels[items[r].pos], qlabel) == 0;
    if (R == 0)
        return o;
    o.skipped = false;
    for (size_t r = 0; r < m; r++) {
        if (strcmp(glabels[items[r].pos], qlabel) != 0)
            continue;
        hits++;
        if (o.first == 0)
            o.first = r + 1;
        o.ap += (double)hits / (double)(r + 1);
    }
    o.ap /= (double)R;
    return o;
}

static void ref_metrics(const ref_probe *p, size_t nq, const int *ks,
                        size_t n_ks, cd_eval_metrics *m)
{
    size_t evaluated = 0;
    double sum = 0.0;
    for (size_t q = 0; q < nq; q++)
        if (!p[q].skipped) {
            evaluated++;
            sum += p[q].ap;
        }
    for (size_t i = 0; i < n_ks; i++) {
        size_t hits = 0;
        for (size_t q = 0; q < nq; q++)
            hits += !p[q].skipped && p[q].first <= (size_t)ks[i];
        m->top[i] = evaluated ? (double)hits / (double)evaluated : NAN;
    }
    m->map = evaluated ? sum / (double)evaluated : NAN;
}

static void ref_nan_metrics(cd_eval_metrics *m)
{
    for (size_t i = 0; i < CD_EVAL_KS_MAX; i++)
        m->top[i] = NAN;
    m->map = NAN;
}

/* The whole report, by the definitions.  Everything in it is malloc'd as
 * core's own reports are, so cd_eval_report_destroy() frees it. */
static cd_eval_report *ref_report(const cd_eval_input *in)
{
    const cd_eval_set *P = &in->probes, *B = &in->baseline,
                      *G = &in->gallery;
    size_t nq = P->n, n = G->n;
    int dim = in->dim;
    cd_eval_report *r = xcalloc(1, sizeof *r);
    ref_item *items = xcalloc(n, sizeof *items);
    ref_probe *cross = xcalloc(nq, sizeof *cross);
    ref_probe *base = xcalloc(nq, sizeof *base);
    ref_probe *para = xcalloc(nq, sizeof *para);

    /* ks ascending, by insertion. */
    r->n_ks = in->n_ks;
    for (size_t i = 0; i < in->n_ks; i++) {
        size_t j = i;
        for (; j > 0 && r->ks[j - 1] > in->ks[i]; j--)
            r->ks[j] = r->ks[j - 1];
        r->ks[j] = in->ks[i];
    }
    r->primary_k = in->primary_k;
    r->gallery_items = (int64_t)n;
    r->has_baseline = B->n > 0;
    r->has_paragon = in->paragon != NULL;

    for (size_t q = 0; q < nq; q++) {
        const float *qv = P->vectors + q * (size_t)dim;
        cross[q] = ref_rank(in->metric, dim, qv, P->ids[q], P->labels[q],
                            G->vectors, G->ids, G->labels, n, items);
        if (r->has_baseline) {
            size_t b = 0;
            while (strcmp(B->ids[b], P->ids[q]) != 0)
                b++;
            base[q] = ref_rank(in->metric, dim, B->vectors + b * (size_t)dim,
                               P->ids[q], P->labels[q], G->vectors, G->ids,
                               G->labels, n, items);
        }
        if (r->has_paragon)
            para[q] = ref_rank(in->metric, dim, qv, P->ids[q], P->labels[q],
                               in->paragon, G->ids, G->labels, n, items);
        if (cross[q].skipped)
            r->skipped++;
        else
            r->queries++;
    }

    ref_metrics(cross, nq, r->ks, r->n_ks, &r->cross);
    for (size_t i = r->n_ks; i < CD_EVAL_KS_MAX; i++)
        r->cross.top[i] = NAN;
    ref_nan_metrics(&r->baseline);
    ref_nan_metrics(&r->paragon);
    ref_nan_metrics(&r->update_gain);
    if (r->has_baseline)
        ref_metrics(base, nq, r->ks, r->n_ks, &r->baseline);
    if (r->has_paragon)
        ref_metrics(para, nq, r->ks, r->n_ks, &r->paragon);
    if (r->has_baseline && r->has_paragon) {
        for (size_t i = 0; i < r->n_ks; i++) {
            double d = r->paragon.top[i] - r->baseline.top[i];
            r->update_gain.top[i] =
                d != 0 ? (r->cross.top[i] - r->baseline.top[i]) / d : NAN;
        }
        double d = r->paragon.map - r->baseline.map;
        r->update_gain.map = d != 0 ? (r->cross.map - r->baseline.map) / d
                                    : NAN;
    }
    size_t pi = 0;
    while (pi < r->n_ks && r->ks[pi] != in->primary_k)
        pi++;
    r->primary_cross = in->primary_k ? r->cross.top[pi] : r->cross.map;
    r->primary_baseline = in->primary_k ? r->baseline.top[pi]
                                        : r->baseline.map;
    r->compatible = r->has_baseline ? r->primary_cross > r->primary_baseline
                                    : -1;

    /* Flips, per label and in total. */
    int64_t wrong = 0;
    r->labels = xcalloc(nq, sizeof *r->labels);
    r->negative_flip_ids = xcalloc(nq, sizeof *r->negative_flip_ids);
    for (size_t q = 0; q < nq; q++) {
        if (cross[q].skipped)
            continue;
        bool cc = cross[q].first == 1;
        bool bc = r->has_baseline && base[q].first == 1;
        bool nf = r->has_baseline && bc && !cc;
        bool pf = r->has_baseline && !bc && cc;
        wrong += !cc;
        r->negative_flips += nf;
        r->positive_flips += pf;
        if (nf)
            r->negative_flip_ids[r->n_negative_flips++] =
                xstrdup(P->ids[q]);
        size_t l = 0;
        while (l < r->n_labels && strcmp(r->labels[l].label, P->labels[q]))
            l++;
        if (l == r->n_labels) {
            r->labels[l].label = xstrdup(P->labels[q]);
            r->n_labels++;
        }
        /* Sums for now, divided below. */
        r->labels[l].queries++;
        r->labels[l].cross_top1 += cc;
        r->labels[l].baseline_top1 += bc;
        r->labels[l].negative_flips += nf;
        r->labels[l].positive_flips += pf;
    }
    for (size_t l = 0; l < r->n_labels; l++) {
        cd_eval_label *x = &r->labels[l];
        x->cross_top1 /= (double)x->queries;
        x->baseline_top1 = r->has_baseline
                               ? x->baseline_top1 / (double)x->queries
                               : NAN;
    }
    /* Most negative flips first, then by label: insertion sort. */
    for (size_t i = 1; i < r->n_labels; i++) {
        cd_eval_label v = r->labels[i];
        size_t j = i;
        while (j > 0 &&
               (r->labels[j - 1].negative_flips < v.negative_flips ||
                (r->labels[j - 1].negative_flips == v.negative_flips &&
                 strcmp(r->labels[j - 1].label, v.label) > 0))) {
            r->labels[j] = r->labels[j - 1];
            j--;
        }
        r->labels[j] = v;
    }
    double nev = (double)r->queries;
    r->nfr = r->has_baseline ? r->negative_flips / nev : NAN;
    r->pfr = r->has_baseline ? r->positive_flips / nev : NAN;
    r->nfi = r->has_baseline && wrong ? r->negative_flips / (double)wrong
                                      : NAN;
    free(para);
    free(base);
    free(cross);
    free(items);
    return r;
}

/* ---- comparing reports ---- */

/* Equal within 1e-6, or both NaN. */
#define CHECK_RATE(a, b)                                                     \
    do {                                                                     \
        double rate_a_ = (a), rate_b_ = (b);                                 \
        if (isnan(rate_a_) || isnan(rate_b_))                                \
            CHECK(isnan(rate_a_) && isnan(rate_b_) && #a);                   \
        else                                                                 \
            CHECK_NEAR(rate_a_, rate_b_, 1e-6);                              \
    } while (0)

static void compare_metrics(const cd_eval_metrics *got,
                            const cd_eval_metrics *want, size_t n_ks)
{
    for (size_t i = 0; i < n_ks; i++)
        CHECK_RATE(got->top[i], want->top[i]);
    CHECK_RATE(got->map, want->map);
}

static void compare(const cd_eval_report *got, const cd_eval_report *want)
{
    CHECK_EQ(got->n_ks, want->n_ks);
    for (size_t i = 0; i < want->n_ks; i++)
        CHECK_EQ(got->ks[i], want->ks[i]);
    CHECK_EQ(got->primary_k, want->primary_k);
    CHECK_EQ(got->queries, want->queries);
    CHECK_EQ(got->skipped, want->skipped);
    CHECK_EQ(got->gallery_items, want->gallery_items);
    compare_metrics(&got->cross, &want->cross, want->n_ks);
    CHECK_EQ(got->has_baseline, want->has_baseline);
    compare_metrics(&got->baseline, &want->baseline, want->n_ks);
    CHECK_EQ(got->has_paragon, want->has_paragon);
    compare_metrics(&got->paragon, &want->paragon, want->n_ks);
    compare_metrics(&got->update_gain, &want->update_gain, want->n_ks);
    CHECK_EQ(got->compatible, want->compatible);
    CHECK_RATE(got->primary_cross, want->primary_cross);
    CHECK_RATE(got->primary_baseline, want->primary_baseline);
    CHECK_EQ(got->negative_flips, want->negative_flips);
    CHECK_EQ(got->positive_flips, want->positive_flips);
    CHECK_RATE(got->nfr, want->nfr);
    CHECK_RATE(got->nfi, want->nfi);
    CHECK_RATE(got->pfr, want->pfr);
    CHECK_EQ(got->n_labels, want->n_labels);
    for (size_t i = 0; i < want->n_labels && i < got->n_labels; i++) {
        const cd_eval_label *a = &got->labels[i], *b = &want->labels[i];
        CHECK_STREQ(a->label, b->label);
        CHECK_EQ(a->queries, b->queries);
        CHECK_RATE(a->cross_top1, b->cross_top1);
        CHECK_RATE(a->baseline_top1, b->baseline_top1);
        CHECK_EQ(a->negative_flips, b->negative_flips);
        CHECK_EQ(a->positive_flips, b->positive_flips);
    }
    CHECK_EQ(got->n_negative_flips, want->n_negative_flips);
    for (size_t i = 0; i < want->n_negative_flips &&
                       i < got->n_negative_flips; i++)
        CHECK_STREQ(got->negative_flip_ids[i], want->negative_flip_ids[i]);
}

/* ---- generated scenarios ---- */

typedef enum vec_kind {
    VK_INT,         /* components in -2..2 (cosine: +-1/4 or +-1/2) */
    VK_FLOAT        /* Gaussian on a grid of 1/16 (cosine: normalised,
                       then on a grid of 1/1024, so nearly unit) */
} vec_kind;

typedef struct scenario {
    const char *name;
    size_t n_gallery, n_probes;
    int dim, n_labels;
    vec_kind kind;
    int keep_pct;           /* chance a component follows its label */
    int dup_every;          /* every dup_every-th item copies an earlier
                               item's vector, maybe of another label */
    int loo_pct;            /* probes whose id is a gallery item's */
    int missing_pct;        /* probes with a label the gallery lacks */
    bool one_per_label;     /* the gallery holds one item per label */
    bool baseline, paragon;
    int ks[4];
    size_t n_ks;
    int primary_k;
    bool large;             /* shrunk in quick mode */
    bool no_ip;             /* skip ip (the same path as cosine) */
    int outlier_every;      /* ip, l2: every such item is 8 times longer,
                               which crowds the others' scores together */
} scenario;

static const scenario scenarios[] = {
    {"random labels", 500, 120, 16, 10, VK_INT, 60, 0, 0, 0, false,
     true, true, {1, 5, 10}, 3, 1, false, false, 0},
    {"exact ties", 400, 100, 4, 5, VK_INT, 50, 3, 10, 0, false,
     true, true, {10, 1, 2}, 3, 0, false, false, 0},
    {"leave-one-out", 300, 150, 8, 20, VK_INT, 70, 0, 100, 0, false,
     true, true, {1, 5}, 2, 5, false, false, 0},
    {"labels missing", 300, 150, 8, 8, VK_INT, 60, 0, 20, 30, false,
     true, false, {1, 3}, 2, 1, false, false, 0},
    {"one item per label", 40, 60, 8, 40, VK_INT, 70, 0, 50, 0, true,
     true, true, {1, 2}, 2, 0, false, false, 0},
    {"k beyond the gallery", 30, 40, 6, 4, VK_INT, 60, 4, 0, 0, false,
     false, false, {1, 31, 1000}, 3, 1000, false, false, 0},
    {"paragon without baseline", 200, 80, 8, 6, VK_INT, 60, 0, 0, 0, false,
     false, true, {1, 5}, 2, 0, false, false, 0},
    {"all labels missing", 50, 20, 4, 5, VK_INT, 60, 0, 0, 100, false,
     true, true, {1}, 1, 1, false, false, 0},
    {"many labels", 1000, 200, 16, 200, VK_INT, 70, 5, 30, 5, false,
     true, true, {1, 5, 10, 50}, 4, 10, false, false, 0},
    {"random floats", 800, 150, 24, 12, VK_FLOAT, 0, 0, 20, 0, false,
     true, true, {1, 5, 20}, 3, 0, false, false, 0},
    {"outliers", 3000, 150, 8, 3, VK_FLOAT, 0, 0, 10, 0, false,
     true, true, {1, 5, 20}, 3, 20, false, false, 97},
    /* 64 MB of scores hold 335 rows of 50,000 items: two blocks.  The
     * reference's 50,000-item sorts are most of the test's time, so ip,
     * which takes cosine's path through the engine, is left out. */
    {"several blocks", 50000, 360, 8, 10, VK_INT, 60, 7, 10, 0, false,
     true, false, {1, 10, 100}, 3, 1, true, true, 0},
};

static const cd_metric all_metrics[] = {CD_METRIC_COSINE, CD_METRIC_IP,
                                        CD_METRIC_L2};

/* Owns everything an input points to. */
typedef struct built {
    cd_eval_input in;
    float *pv, *bv, *gv, *paragon;
    char **pids, **plabels, **bids, **gids, **glabels;
    size_t nq, n;
} built;

/* Components of the exact unit vectors used for cosine: m entries of
 * magnitude 1/sqrt(m), m a power of 4, so every dot product is exact. */
static int unit_entries(int dim)
{
    return dim >= 16 ? 16 : dim >= 4 ? 4 : 1;
}

/* x rounded to a multiple of 1/scale: a grid fine enough to look like
 * any float, coarse enough that sums of products are exact in float. */
static float on_grid(double x, double scale)
{
    return (float)(nearbyint(x * scale) / scale);
}

static void make_centre(vec_kind kind, cd_metric metric, int dim, float *c)
{
    for (int d = 0; d < dim; d++) {
        if (kind == VK_FLOAT)
            c[d] = on_grid(rnd_gauss(), 16);
        else if (metric == CD_METRIC_COSINE)
            c[d] = d < unit_entries(dim) ? (rnd_pct(50) ? 1.0f : -1.0f) : 0;
        else
            c[d] = (float)rnd_int(-2, 2);
    }
}

/* A vector near centre c (keep_pct: how near), ready for the metric. */
static void make_near(vec_kind kind, cd_metric metric, int dim, int keep_pct,
                      const float *c, float *v)
{
    int m = unit_entries(dim);
    for (int d = 0; d < dim; d++) {
        if (kind == VK_FLOAT)
            v[d] = on_grid(c[d] + 0.9 * rnd_gauss(), 16);
        else if (metric == CD_METRIC_COSINE)
            v[d] = d >= m ? 0.0f
                          : (rnd_pct(keep_pct) ? c[d] : -c[d]) /
                                sqrtf((float)m);
        else
            v[d] = rnd_pct(keep_pct) ? c[d] : (float)rnd_int(-2, 2);
    }
    if (kind == VK_FLOAT && metric == CD_METRIC_COSINE) {
        double s = 0;
        for (int d = 0; d < dim; d++)
            s += (double)v[d] * v[d];
        for (int d = 0; d < dim; d++)
            v[d] = on_grid(v[d] / sqrt(s), 1024);
    }
}

static char *label_name(const char *prefix, int i)
{
    char buf[32];
    snprintf(buf, sizeof buf, "%s%d", prefix, i);
    return xstrdup(buf);
}

static void build(const scenario *s, cd_metric metric, bool quick, built *b)
{
    memset(b, 0, sizeof *b);
    size_t n = s->one_per_label ? (size_t)s->n_labels : s->n_gallery;
    size_t nq = s->n_probes;
    if (quick && s->large) {
        n /= 10;
        nq /= 6;
    }
    int dim = s->dim;
    b->n = n;
    b->nq = nq;
    float *centres = xcalloc((size_t)s->n_labels * (size_t)dim,
                             sizeof *centres);
    for (int l = 0; l < s->n_labels; l++)
        make_centre(s->kind, metric, dim, centres + (size_t)l * (size_t)dim);

    b->gv = xcalloc(n * (size_t)dim, sizeof *b->gv);
    b->gids = xcalloc(n, sizeof *b->gids);
    b->glabels = xcalloc(n, sizeof *b->glabels);
    int *glab = xcalloc(n, sizeof *glab);
    for (size_t i = 0; i < n; i++) {
        glab[i] = s->one_per_label ? (int)i : rnd_int(0, s->n_labels - 1);
        b->gids[i] = fmt_id("g", i);
        b->glabels[i] = label_name("L", glab[i]);
        float *v = b->gv + i * (size_t)dim;
        if (s->dup_every && i % (size_t)s->dup_every ==
                                (size_t)s->dup_every - 1)
            memcpy(v, b->gv + (rnd() % i) * (size_t)dim, (size_t)dim * 4);
        else
            make_near(s->kind, metric, dim, s->keep_pct,
                      centres + (size_t)glab[i] * (size_t)dim, v);
        if (s->outlier_every && metric != CD_METRIC_COSINE &&
            i % (size_t)s->outlier_every == 0)
            for (int d = 0; d < dim; d++)
                v[d] *= 8;
    }
    if (s->paragon) {
        b->paragon = xcalloc(n * (size_t)dim, sizeof *b->paragon);
        for (size_t i = 0; i < n; i++)
            make_near(s->kind, metric, dim, s->keep_pct + 10,
                      centres + (size_t)glab[i] * (size_t)dim,
                      b->paragon + i * (size_t)dim);
    }

    b->pv = xcalloc(nq * (size_t)dim, sizeof *b->pv);
    b->bv = xcalloc(nq * (size_t)dim, sizeof *b->bv);
    b->pids = xcalloc(nq, sizeof *b->pids);
    b->plabels = xcalloc(nq, sizeof *b->plabels);
    b->bids = xcalloc(nq, sizeof *b->bids);
    for (size_t q = 0; q < nq; q++) {
        int l = rnd_int(0, s->n_labels - 1);
        bool loo = q < n && rnd_pct(s->loo_pct);
        if (loo && rnd_pct(50))
            l = glab[q];            /* its own item is one of its label */
        b->pids[q] = loo ? fmt_id("g", q) : fmt_id("q", q);
        b->plabels[q] = rnd_pct(s->missing_pct) ? label_name("M", l)
                                                : label_name("L", l);
        const float *c = centres + (size_t)l * (size_t)dim;
        make_near(s->kind, metric, dim, s->keep_pct + 10, c,
                  b->pv + q * (size_t)dim);
    }
    /* The baseline in another order: a rotation of the probes. */
    size_t shift = nq / 3;
    for (size_t i = 0; i < nq; i++) {
        size_t q = (i + shift) % nq;
        b->bids[i] = xstrdup(b->pids[q]);
        int l = atoi(b->plabels[q] + 1);    /* "L7" or "M7": centre 7 */
        make_near(s->kind, metric, dim, s->keep_pct,
                  centres + (size_t)l * (size_t)dim,
                  b->bv + i * (size_t)dim);
    }
    free(glab);
    free(centres);

    cd_eval_input *in = &b->in;
    in->dim = dim;
    in->metric = metric;
    in->probes = (cd_eval_set){nq, b->pv, (const char *const *)b->pids,
                               (const char *const *)b->plabels};
    if (s->baseline)
        in->baseline = (cd_eval_set){nq, b->bv,
                                     (const char *const *)b->bids, NULL};
    in->gallery = (cd_eval_set){n, b->gv, (const char *const *)b->gids,
                                (const char *const *)b->glabels};
    in->paragon = b->paragon;
    in->ks = s->ks;
    in->n_ks = s->n_ks;
    in->primary_k = s->primary_k;
}

static void free_strings(char **v, size_t n)
{
    for (size_t i = 0; v && i < n; i++)
        free(v[i]);
    free(v);
}

static void unbuild(built *b)
{
    free_strings(b->pids, b->nq);
    free_strings(b->plabels, b->nq);
    free_strings(b->bids, b->nq);
    free_strings(b->gids, b->n);
    free_strings(b->glabels, b->n);
    free(b->pv);
    free(b->bv);
    free(b->gv);
    free(b->paragon);
}

static void test_scenarios(bool quick)
{
    for (size_t s = 0; s < sizeof scenarios / sizeof scenarios[0]; s++)
        for (size_t m = 0; m < 3; m++) {
            if (scenarios[s].no_ip && all_metrics[m] == CD_METRIC_IP)
                continue;
            int before = check_failures;
            built b;
            build(&scenarios[s], all_metrics[m], quick, &b);
            cd_error err;
            cd_eval_report *got = NULL;
            CHECK_OK(cd_eval_run(&b.in, &got, &err), &err);
            if (got) {
                cd_eval_report *want = ref_report(&b.in);
                compare(got, want);
                cd_eval_report_destroy(want);
            }
            cd_eval_report_destroy(got);
            unbuild(&b);
            if (check_failures != before)
                fprintf(stderr, "  in scenario \"%s\", metric %s\n",
                        scenarios[s].name, cd_metric_name(all_metrics[m]));
        }
}

/* ---- hand-made cases ---- */

/*
 * Seven probes against two items, a = (1,0) and b = (0,1), inner product.
 * Each probe points at one item in cross and in baseline:
 *   p0 a: cross b, baseline a   negative flip
 *   p1 a: cross a, baseline b   positive flip
 *   p2 b: cross a, baseline b   negative flip
 *   p3 b: cross b, baseline b   right in both
 *   p4 b: cross a, baseline b   negative flip
 *   p5 c: the gallery has no c  skipped
 *   p6 a: cross b, baseline b   wrong in both
 * The paragon swaps the two items.
 */
static void test_flips(void)
{
    static const float gallery[] = {1, 0, 0, 1};
    static const float paragon[] = {0, 1, 1, 0};
    static const char *const gids[] = {"ga", "gb"};
    static const char *const glabels[] = {"a", "b"};
    static const char *const ids[] = {"p0", "p1", "p2", "p3", "p4", "p5",
                                      "p6"};
    static const char *const labels[] = {"a", "a", "b", "b", "b", "c", "a"};
    static const float cross[] = {0, 1, 1, 0, 1, 0, 0, 1, 1, 0, 1, 0, 0, 1};
    /* Baseline in reverse probe order. */
    static const char *const bids[] = {"p6", "p5", "p4", "p3", "p2", "p1",
                                       "p0"};
    static const float base[] = {0, 1, 1, 0, 0, 1, 0, 1, 0, 1, 0, 1, 1, 0};
    static const int ks[] = {2, 1};
    cd_eval_input in = {
        .dim = 2, .metric = CD_METRIC_IP,
        .probes = {7, cross, ids, labels},
        .baseline = {7, base, bids, NULL},
        .gallery = {2, gallery, gids, glabels},
        .paragon = paragon, .ks = ks, .n_ks = 2, .primary_k = 1,
    };
    cd_error err;
    cd_eval_report *r = NULL;
    CHECK_OK(cd_eval_run(&in, &r, &err), &err);
    REQUIRE(r != NULL);
    CHECK_EQ(r->queries, 6);
    CHECK_EQ(r->skipped, 1);
    CHECK_EQ(r->gallery_items, 2);
    CHECK_EQ(r->ks[0], 1);
    CHECK_EQ(r->ks[1], 2);
    CHECK_NEAR(r->cross.top[0], 2.0 / 6, 1e-12);
    CHECK_NEAR(r->cross.top[1], 1.0, 1e-12);
    CHECK_NEAR(r->cross.map, (2 + 4 * 0.5) / 6, 1e-12);
    CHECK_NEAR(r->baseline.top[0], 4.0 / 6, 1e-12);
    CHECK_NEAR(r->baseline.map, (4 + 2 * 0.5) / 6, 1e-12);
    CHECK_NEAR(r->paragon.top[0], 4.0 / 6, 1e-12);
    CHECK(isnan(r->update_gain.top[0]));    /* paragon == baseline */
    CHECK(isnan(r->update_gain.top[1]));    /* every top-2 is 1 */
    CHECK(isnan(r->update_gain.map));
    CHECK_EQ(r->compatible, 0);
    CHECK_NEAR(r->primary_cross, 2.0 / 6, 1e-12);
    CHECK_NEAR(r->primary_baseline, 4.0 / 6, 1e-12);
    CHECK_EQ(r->negative_flips, 3);
    CHECK_EQ(r->positive_flips, 1);
    CHECK_NEAR(r->nfr, 3.0 / 6, 1e-12);
    CHECK_NEAR(r->nfi, 3.0 / 4, 1e-12);
    CHECK_NEAR(r->pfr, 1.0 / 6, 1e-12);
    REQUIRE(r->n_labels == 2);
    CHECK_STREQ(r->labels[0].label, "b");   /* two flips before one */
    CHECK_EQ(r->labels[0].queries, 3);
    CHECK_EQ(r->labels[0].negative_flips, 2);
    CHECK_EQ(r->labels[0].positive_flips, 0);
    CHECK_NEAR(r->labels[0].cross_top1, 1.0 / 3, 1e-12);
    CHECK_NEAR(r->labels[0].baseline_top1, 1.0, 1e-12);
    CHECK_STREQ(r->labels[1].label, "a");
    CHECK_EQ(r->labels[1].queries, 3);
    CHECK_EQ(r->labels[1].negative_flips, 1);
    CHECK_EQ(r->labels[1].positive_flips, 1);
    CHECK_NEAR(r->labels[1].cross_top1, 1.0 / 3, 1e-12);
    CHECK_NEAR(r->labels[1].baseline_top1, 1.0 / 3, 1e-12);
    REQUIRE(r->n_negative_flips == 3);
    CHECK_STREQ(r->negative_flip_ids[0], "p0");
    CHECK_STREQ(r->negative_flip_ids[1], "p2");
    CHECK_STREQ(r->negative_flip_ids[2], "p4");
    cd_eval_report_destroy(r);

    /* Without a baseline the flips are undefined. */
    in.baseline = (cd_eval_set){0, NULL, NULL, NULL};
    CHECK_OK(cd_eval_run(&in, &r, &err), &err);
    REQUIRE(r != NULL);
    CHECK(!r->has_baseline);
    CHECK_EQ(r->compatible, -1);
    CHECK(isnan(r->primary_baseline) && isnan(r->baseline.map));
    CHECK(isnan(r->nfr) && isnan(r->nfi) && isnan(r->pfr));
    CHECK(isnan(r->update_gain.top[0]));
    CHECK_EQ(r->negative_flips, 0);
    CHECK_EQ(r->n_negative_flips, 0);
    CHECK(isnan(r->labels[0].baseline_top1));
    cd_eval_report_destroy(r);
}

/*
 * Ties and leave-one-out by hand: items x = (1,0) "x", y = (1,0) "y",
 * z = (0,1) "y".  A probe (1,0) of label y meets x first (same score,
 * lower position), then y and z: AP (1/2 + 2/3) / 2.  With the id "x" it
 * no longer sees x: y then z, AP 1.  With the id "y" its own item is left
 * out: x then z, R = 1, AP 1/2.
 */
static void test_ties_by_hand(void)
{
    static const float gallery[] = {1, 0, 1, 0, 0, 1};
    static const char *const gids[] = {"x", "y", "z"};
    static const char *const glabels[] = {"x", "y", "y"};
    static const float probe[] = {1, 0};
    static const char *const labels[] = {"y"};
    static const int ks[] = {1};
    static const struct {
        const char *id;
        cd_metric metric;
        double top1, map;
    } cases[] = {
        {"p", CD_METRIC_IP, 0.0, (0.5 + 2.0 / 3) / 2},
        {"p", CD_METRIC_L2, 0.0, (0.5 + 2.0 / 3) / 2},
        {"x", CD_METRIC_IP, 1.0, 1.0},
        {"x", CD_METRIC_COSINE, 1.0, 1.0},
        {"y", CD_METRIC_IP, 0.0, 0.5},  /* own item left out, x first */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const char *ids[] = {cases[i].id};
        cd_eval_input in = {
            .dim = 2, .metric = cases[i].metric,
            .probes = {1, probe, ids, labels},
            .gallery = {3, gallery, gids, glabels},
            .ks = ks, .n_ks = 1, .primary_k = 0,
        };
        cd_error err;
        cd_eval_report *r = NULL;
        CHECK_OK(cd_eval_run(&in, &r, &err), &err);
        REQUIRE(r != NULL);
        CHECK_EQ(r->queries, 1);
        CHECK_NEAR(r->cross.top[0], cases[i].top1, 1e-12);
        CHECK_NEAR(r->cross.map, cases[i].map, 1e-12);
        CHECK_NEAR(r->primary_cross, cases[i].map, 1e-12);
        cd_eval_report_destroy(r);
    }
}

/*
 * Non-finite or overflowing vectors are the caller's to keep out; they
 * must still not crash the engine or leave its counts inconsistent (run
 * under the sanitizers, this is what the test is for).
 */
static void test_nonfinite(void)
{
    enum { N = 64, NQ = 16, DIM = 4 };
    static const float bad[] = {NAN, INFINITY, -INFINITY, 3e38f, -3e38f};
    static const int ks[] = {1, 5};
    float *g = xcalloc(N * DIM, sizeof *g), *q = xcalloc(NQ * DIM, sizeof *q);
    char *gids[N], *glabels[N], *pids[NQ], *plabels[NQ];
    for (size_t i = 0; i < N; i++) {
        gids[i] = fmt_id("g", i);
        glabels[i] = label_name("L", (int)(i % 4));
    }
    for (size_t i = 0; i < NQ; i++) {
        pids[i] = fmt_id(i % 2 ? "g" : "q", i);
        plabels[i] = label_name("L", (int)(i % 5));
    }
    for (cd_metric m = CD_METRIC_COSINE; m <= CD_METRIC_L2; m++)
        for (size_t b = 0; b < sizeof bad / sizeof bad[0]; b++) {
            for (size_t i = 0; i < N * DIM; i++)
                g[i] = i % 7 == 0 ? bad[b] : (float)rnd_int(-2, 2);
            for (size_t i = 0; i < NQ * DIM; i++)
                q[i] = i % 5 == 0 ? bad[(b + 1) % 5] : (float)rnd_int(-2, 2);
            cd_eval_input in = {
                .dim = DIM, .metric = m,
                .probes = {NQ, q, (const char *const *)pids,
                           (const char *const *)plabels},
                .baseline = {NQ, g, (const char *const *)pids, NULL},
                .gallery = {N, g, (const char *const *)gids,
                            (const char *const *)glabels},
                .paragon = g, .ks = ks, .n_ks = 2, .primary_k = 5,
            };
            cd_error err;
            cd_eval_report *r = NULL;
            CHECK_OK(cd_eval_run(&in, &r, &err), &err);
            if (r) {
                CHECK_EQ(r->queries + r->skipped, NQ);
                CHECK(r->n_negative_flips <= (size_t)r->queries);
            }
            cd_eval_report_destroy(r);
        }
    for (size_t i = 0; i < N; i++) {
        free(gids[i]);
        free(glabels[i]);
    }
    for (size_t i = 0; i < NQ; i++) {
        free(pids[i]);
        free(plabels[i]);
    }
    free(g);
    free(q);
}

/* ---- validation ---- */

enum mutation {
    M_NONE_NULL_IN, M_DIM0, M_DIM_BIG, M_METRIC, M_KS_NULL, M_KS_NONE,
    M_KS_MANY, M_K_ZERO, M_K_BIG, M_K_TWICE, M_PRIMARY, M_NO_PROBES,
    M_PROBE_VECTORS, M_PROBE_ID, M_LABELS_NULL, M_LABEL, M_PROBE_TWICE,
    M_BASE_ID, M_BASE_TWICE, M_BASE_STRANGER, M_BASE_SHORT, M_BASE_VECTORS,
    M_GALLERY_EMPTY, M_GALLERY_LABEL, M_GALLERY_TWICE, M_GALLERY_ID,
};

static void test_validation(void)
{
    static const struct {
        enum mutation m;
        cd_err code;
        const char *message;        /* the whole message, or NULL */
    } cases[] = {
        {M_NONE_NULL_IN, CD_EINVAL, NULL},
        {M_DIM0, CD_EINVAL, "dim 0 is outside 1..4096"},
        {M_DIM_BIG, CD_EINVAL, "dim 4097 is outside 1..4096"},
        {M_METRIC, CD_EINVAL, "metric 7 is not cosine, ip or l2"},
        {M_KS_NULL, CD_EINVAL, NULL},
        {M_KS_NONE, CD_EINVAL, "ks: 0 values, expected 1 to 32"},
        {M_KS_MANY, CD_EINVAL, "ks: 33 values, expected 1 to 32"},
        {M_K_ZERO, CD_EINVAL, "ks[1]: 0 is outside 1..1000"},
        {M_K_BIG, CD_EINVAL, "ks[0]: 1001 is outside 1..1000"},
        {M_K_TWICE, CD_EINVAL, "ks: 5 appears twice (ks[1] and ks[2])"},
        {M_PRIMARY, CD_EINVAL, "primary_k 3 is neither 0 (map) nor one of ks"},
        {M_NO_PROBES, CD_EINVAL, NULL},
        {M_PROBE_VECTORS, CD_EINVAL, NULL},
        {M_PROBE_ID, CD_EINVAL, "query 1: id is missing"},
        {M_LABELS_NULL, CD_EINVAL, "query 0: label is missing"},
        {M_LABEL, CD_EINVAL, "query 2: label is missing"},
        {M_PROBE_TWICE, CD_EINVAL,
         "queries: id \"q3\" appears twice (query 3 and query 9)"},
        {M_BASE_ID, CD_EINVAL, "baseline 6: id is missing"},
        {M_BASE_TWICE, CD_EINVAL,
         "baseline: id \"q1\" appears twice (baseline 1 and baseline 4)"},
        {M_BASE_STRANGER, CD_EINVAL, "baseline 4: id \"x\" matches no query"},
        {M_BASE_SHORT, CD_EINVAL,
         "query 5 (id \"q5\") has no baseline entry"},
        {M_BASE_VECTORS, CD_EINVAL, NULL},
        {M_GALLERY_EMPTY, CD_EUNPROCESSABLE,
         "the gallery has no labelled items"},
        {M_GALLERY_LABEL, CD_EINVAL, "gallery item 2: label is missing"},
        {M_GALLERY_TWICE, CD_EINVAL,
         "gallery: id \"g0\" appears twice (item 0 and item 3)"},
        {M_GALLERY_ID, CD_EINVAL, "gallery item 1: id is missing"},
    };
    enum { NQ = 10, NG = 4 };
    static const float vec[NQ * 2] = {0};
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        const char *pids[NQ], *plabels[NQ], *bids[NQ];
        char names[NQ][8];
        for (int i = 0; i < NQ; i++) {
            snprintf(names[i], sizeof names[i], "q%d", i);
            pids[i] = names[i];
            bids[i] = names[i];
            plabels[i] = "a";
        }
        const char *gids[NG] = {"g0", "g1", "g2", "g3"};
        const char *glabels[NG] = {"a", "b", "a", "b"};
        int ks[CD_EVAL_KS_MAX + 1] = {1, 5, 10};
        cd_eval_input in = {
            .dim = 2, .metric = CD_METRIC_IP,
            .probes = {NQ, vec, pids, plabels},
            .baseline = {NQ, vec, bids, NULL},
            .gallery = {NG, vec, gids, glabels},
            .ks = ks, .n_ks = 3, .primary_k = 5,
        };
        const cd_eval_input *inp = &in;
        switch (cases[c].m) {
        case M_NONE_NULL_IN: inp = NULL; break;
        case M_DIM0: in.dim = 0; break;
        case M_DIM_BIG: in.dim = CD_DIM_MAX + 1; break;
        case M_METRIC: in.metric = (cd_metric)7; break;
        case M_KS_NULL: in.ks = NULL; break;
        case M_KS_NONE: in.n_ks = 0; break;
        case M_KS_MANY:
            for (int i = 0; i <= CD_EVAL_KS_MAX; i++)
                ks[i] = i + 1;
            in.n_ks = CD_EVAL_KS_MAX + 1;
            break;
        case M_K_ZERO: ks[1] = 0; break;
        case M_K_BIG: ks[0] = CD_K_MAX + 1; break;
        case M_K_TWICE: ks[2] = 5; break;
        case M_PRIMARY: in.primary_k = 3; break;
        case M_NO_PROBES: in.probes.n = 0; break;
        case M_PROBE_VECTORS: in.probes.vectors = NULL; break;
        case M_PROBE_ID: pids[1] = NULL; break;
        case M_LABELS_NULL: in.probes.labels = NULL; break;
        case M_LABEL: plabels[2] = NULL; break;
        case M_PROBE_TWICE: pids[9] = "q3"; break;
        case M_BASE_ID: bids[6] = NULL; break;
        case M_BASE_TWICE: bids[4] = "q1"; break;
        case M_BASE_STRANGER: bids[4] = "x"; break;
        case M_BASE_SHORT:
            bids[5] = bids[NQ - 1];
            in.baseline.n = NQ - 1;
            break;
        case M_BASE_VECTORS: in.baseline.vectors = NULL; break;
        case M_GALLERY_EMPTY: in.gallery.n = 0; break;
        case M_GALLERY_LABEL: glabels[2] = NULL; break;
        case M_GALLERY_TWICE: gids[3] = "g0"; break;
        case M_GALLERY_ID: gids[1] = NULL; break;
        }
        cd_error err;
        cd_error_clear(&err);
        cd_eval_report *r = (cd_eval_report *)&err;  /* not NULL */
        CHECK_EQ(cd_eval_run(inp, &r, &err), cases[c].code);
        CHECK(r == NULL);
        CHECK_EQ(err.code, cases[c].code);
        if (cases[c].message)
            CHECK_STREQ(err.message, cases[c].message);
        else
            CHECK(err.message[0] != '\0');
        if (r != NULL || err.code != cases[c].code)
            fprintf(stderr, "  in validation case %zu: %s\n", c, err.message);
    }
    /* Nowhere to put the report. */
    CHECK_EQ(cd_eval_run(NULL, NULL, NULL), CD_EINVAL);
}

int main(void)
{
    const char *preload = getenv("LD_PRELOAD");
    const char *lng = getenv("COMPATD_LONG");
    bool quick = (preload && strstr(preload, "vgpreload")) ||
                 (lng && strcmp(lng, "0") == 0);

    test_validation();
    test_flips();
    test_ties_by_hand();
    test_nonfinite();
    test_scenarios(quick);
    return check_exit();
}
