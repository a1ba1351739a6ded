/*
 * test_eval_mixed.c - the mixed view of eval.h (SPEC.md §3.8) against a
 * naive reference written here: every probe scores every item in double
 * precision, an item with has_own by the probe's own-space vector against
 * its own-space embedding, every other item by the probe's gallery-space
 * vector against its gallery-model embedding (for l2 both as -|q - x|^2,
 * the true squared distance in each space), then one sort by score, ties
 * by lower position.  Top-k, mAP, flips and NFR must agree to 1e-6 at
 * coverages 0, ~0.3, ~0.7 and 1 for cosine, ip and l2, with an own space
 * of another dim (the gallery-space probes then come from a fixed linear
 * map, as an adapter's would) and of the same dim.
 *
 * Every vector lies on a grid (1/16 for ip and l2, 1/1024 for the nearly
 * unit cosine vectors) with small components, so float scores are exact
 * and ties are ties on both sides.
 */
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "eval.h"

static uint64_t rng = 0x9E3779B97F4A7C15ULL;

static double unif(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (double)(rng >> 11) / 9007199254740992.0;
}

static double gauss(void)
{
    double u = unif() + 1e-12, v = unif();
    return sqrt(-2.0 * log(u)) * cos(6.283185307179586 * v);
}

static void *xcalloc(size_t n, size_t size)
{
    void *p = calloc(n ? n : 1, size);
    if (!p) {
        fprintf(stderr, "out of memory\n");
        exit(1);
    }
    return p;
}

/* Puts v (dim values) on the metric's grid: normalised first for cosine. */
static void to_grid(cd_metric metric, float *v, const double *x, int dim)
{
    double norm = 0.0, step = metric == CD_METRIC_COSINE ? 1024.0 : 16.0;
    for (int d = 0; d < dim; d++)
        norm += x[d] * x[d];
    norm = metric == CD_METRIC_COSINE && norm > 0 ? sqrt(norm) : 1.0;
    for (int d = 0; d < dim; d++) {
        double c = x[d] / norm;
        if (c > 2.0)
            c = 2.0;
        if (c < -2.0)
            c = -2.0;
        v[d] = (float)(round(c * step) / step);
    }
}

typedef struct world {
    cd_metric metric;
    int dim, own_dim;
    size_t n, nq;
    double *map;            /* own_dim -> dim, the "adapter" */
    float *gallery, *own;   /* n rows each */
    unsigned char *has_own;
    float *probes, *own_probes, *baseline;      /* nq rows */
    char **gids, **glabels, **pids, **plabels;
} world;

/* y = x map (own_dim -> dim), or x itself when the dims agree. */
static void apply_map(const world *w, const double *x, double *y)
{
    for (int j = 0; j < w->dim; j++) {
        y[j] = 0.0;
        for (int i = 0; i < w->own_dim; i++)
            y[j] += x[i] * w->map[(size_t)i * w->dim + j];
    }
}

static char *fmt(const char *prefix, size_t i)
{
    char *s = xcalloc(32, 1);
    snprintf(s, 32, "%s%zu", prefix, i);
    return s;
}

/*
 * Labelled items around one centre per label in the own space; the
 * gallery model sees them through the map with more noise, so the two
 * spaces rank differently.  A fifth of the probes carry a gallery item's
 * id (leave-one-out), one label of probes the gallery lacks (skipped).
 */
static void build(world *w, cd_metric metric, int dim, int own_dim, double coverage)
{
    enum { LABELS = 9 };
    memset(w, 0, sizeof *w);
    w->metric = metric;
    w->dim = dim;
    w->own_dim = own_dim;
    w->n = 240;
    w->nq = 70;
    w->map = xcalloc((size_t)own_dim * dim, sizeof *w->map);
    for (int i = 0; i < own_dim; i++)
        for (int j = 0; j < dim; j++)
            w->map[(size_t)i * dim + j] = own_dim == dim ? (i == j) : gauss() / sqrt(own_dim);
    double centre[LABELS][64], x[64], y[64];
    for (int l = 0; l < LABELS; l++)
        for (int d = 0; d < own_dim; d++)
            centre[l][d] = gauss() * 0.6;
    w->gallery = xcalloc(w->n * dim, sizeof(float));
    w->own = xcalloc(w->n * own_dim, sizeof(float));
    w->has_own = xcalloc(w->n, 1);
    w->gids = xcalloc(w->n, sizeof(char *));
    w->glabels = xcalloc(w->n, sizeof(char *));
    size_t want_own = (size_t)llround(coverage * (double)w->n), owned = 0;
    for (size_t i = 0; i < w->n; i++) {
        int l = (int)(i % LABELS);
        for (int d = 0; d < own_dim; d++)
            x[d] = centre[l][d] + gauss() * 0.5;
        to_grid(metric, w->own + i * own_dim, x, own_dim);
        apply_map(w, x, y);
        for (int d = 0; d < dim; d++)
            y[d] += gauss() * 0.5;
        to_grid(metric, w->gallery + i * dim, y, dim);
        /* Exactly the asked share, spread at random over the gallery. */
        bool take = unif() * (double)(w->n - i) < (double)(want_own - owned);
        w->has_own[i] = take;
        owned += take;
        if (!take && unif() < 0.5)      /* rows without the flag: unread */
            for (int d = 0; d < own_dim; d++)
                w->own[i * own_dim + d] = 1e30f;
        w->gids[i] = fmt("g", i);
        w->glabels[i] = fmt("L", (size_t)l);
    }
    w->probes = xcalloc(w->nq * dim, sizeof(float));
    w->own_probes = xcalloc(w->nq * own_dim, sizeof(float));
    w->baseline = xcalloc(w->nq * dim, sizeof(float));
    w->pids = xcalloc(w->nq, sizeof(char *));
    w->plabels = xcalloc(w->nq, sizeof(char *));
    for (size_t q = 0; q < w->nq; q++) {
        int l = (int)(q % (LABELS + 1));     /* label LABELS: not in the gallery */
        for (int d = 0; d < own_dim; d++)
            x[d] = (l < LABELS ? centre[l][d] : gauss() * 0.6) + gauss() * 0.5;
        to_grid(metric, w->own_probes + q * own_dim, x, own_dim);
        apply_map(w, x, y);
        to_grid(metric, w->probes + q * dim, y, dim);
        for (int d = 0; d < dim; d++)
            y[d] += gauss() * 0.3;
        to_grid(metric, w->baseline + q * dim, y, dim);
        w->pids[q] = q % 5 == 0 ? fmt("g", (q * 7) % w->n) : fmt("p", q);
        w->plabels[q] = fmt("L", (size_t)l);
    }
}

static void unbuild(world *w)
{
    for (size_t i = 0; i < w->n; i++) {
        free(w->gids[i]);
        free(w->glabels[i]);
    }
    for (size_t q = 0; q < w->nq; q++) {
        free(w->pids[q]);
        free(w->plabels[q]);
    }
    free(w->gids);
    free(w->glabels);
    free(w->pids);
    free(w->plabels);
    free(w->map);
    free(w->gallery);
    free(w->own);
    free(w->has_own);
    free(w->probes);
    free(w->own_probes);
    free(w->baseline);
}

static double score(cd_metric metric, const float *a, const float *b, int dim)
{
    double s = 0.0;
    for (int d = 0; d < dim; d++)
        s += metric == CD_METRIC_L2 ? -((double)a[d] - b[d]) * ((double)a[d] - b[d])
                                    : (double)a[d] * b[d];
    return s;
}

typedef struct scored {
    double s;
    size_t pos;
} scored;

static int by_score(const void *x, const void *y)
{
    const scored *a = x, *b = y;
    if (a->s != b->s)
        return a->s > b->s ? -1 : 1;
    return (a->pos > b->pos) - (a->pos < b->pos);
}

/* One probe's outcome: skipped, 1-based rank of the first hit, AP. */
typedef struct outcome {
    bool skipped;
    size_t first;
    double ap;
} outcome;

/* Ranks probe q; mixed: items with has_own in the own space. */
static outcome rank_probe(const world *w, size_t q, const float *gq, bool mixed, scored *buf)
{
    size_t m = 0, R = 0, hits = 0;
    for (size_t i = 0; i < w->n; i++) {
        if (strcmp(w->gids[i], w->pids[q]) == 0)
            continue;
        buf[m].s = mixed && w->has_own[i]
                       ? score(w->metric, w->own_probes + q * w->own_dim,
                               w->own + i * w->own_dim, w->own_dim)
                       : score(w->metric, gq, w->gallery + i * w->dim, w->dim);
        buf[m].pos = i;
        R += strcmp(w->glabels[i], w->plabels[q]) == 0;
        m++;
    }
    qsort(buf, m, sizeof *buf, by_score);
    outcome o = {R == 0, 0, 0.0};
    for (size_t r = 0; r < m && R > 0; r++) {
        if (strcmp(w->glabels[buf[r].pos], w->plabels[q]) != 0)
            continue;
        hits++;
        if (!o.first)
            o.first = r + 1;
        o.ap += (double)hits / (double)(r + 1);
    }
    if (R > 0)
        o.ap /= (double)R;
    return o;
}

static const int ks[] = {1, 5, 10};
#define N_KS 3

/* The reference numbers of one world. */
typedef struct ref {
    int64_t queries, negative, positive;
    double top[N_KS], map, base_top1, nfr, coverage;
} ref;

static ref reference(const world *w)
{
    ref r = {0};
    scored *buf = xcalloc(w->n, sizeof *buf);
    size_t hits[N_KS] = {0}, base_hits = 0, own = 0;
    for (size_t q = 0; q < w->nq; q++) {
        outcome c = rank_probe(w, q, w->probes + q * w->dim, true, buf);
        outcome b = rank_probe(w, q, w->baseline + q * w->dim, false, buf);
        if (c.skipped)
            continue;
        r.queries++;
        for (int k = 0; k < N_KS; k++)
            hits[k] += c.first <= (size_t)ks[k];
        r.map += c.ap;
        base_hits += b.first == 1;
        r.negative += b.first == 1 && c.first != 1;
        r.positive += b.first != 1 && c.first == 1;
    }
    for (int k = 0; k < N_KS; k++)
        r.top[k] = (double)hits[k] / (double)r.queries;
    r.map /= (double)r.queries;
    r.base_top1 = (double)base_hits / (double)r.queries;
    r.nfr = (double)r.negative / (double)r.queries;
    for (size_t i = 0; i < w->n; i++)
        own += w->has_own[i];
    r.coverage = (double)own / (double)w->n;
    free(buf);
    return r;
}

static cd_eval_input input_of(const world *w, bool mixed)
{
    cd_eval_input in = {
        .dim = w->dim,
        .metric = w->metric,
        .probes = {w->nq, w->probes, (const char *const *)w->pids,
                   (const char *const *)w->plabels},
        .baseline = {w->nq, w->baseline, (const char *const *)w->pids, NULL},
        .gallery = {w->n, w->gallery, (const char *const *)w->gids,
                    (const char *const *)w->glabels},
        .ks = ks,
        .n_ks = N_KS,
        .primary_k = 1,
        .own_dim = w->own_dim,
        .own_probes = mixed ? w->own_probes : NULL,
        .own = w->own,
        .has_own = w->has_own,
    };
    return in;
}

static void run_case(cd_metric metric, int dim, int own_dim, double coverage)
{
    world w;
    build(&w, metric, dim, own_dim, coverage);
    ref want = reference(&w);
    cd_eval_input in = input_of(&w, true);
    cd_eval_report *got = NULL;
    cd_error err;
    CHECK_OK(cd_eval_run(&in, &got, &err), &err);
    if (!got) {
        unbuild(&w);
        return;
    }
    CHECK_EQ(got->queries, want.queries);
    CHECK_NEAR(got->coverage, want.coverage, 1e-12);
    CHECK_NEAR(got->coverage, coverage, 0.5 / (double)w.n);
    for (int k = 0; k < N_KS; k++)
        CHECK_NEAR(got->cross.top[k], want.top[k], 1e-6);
    CHECK_NEAR(got->cross.map, want.map, 1e-6);
    CHECK_NEAR(got->baseline.top[0], want.base_top1, 1e-6);
    CHECK_EQ(got->negative_flips, want.negative);
    CHECK_EQ(got->positive_flips, want.positive);
    CHECK_NEAR(got->nfr, want.nfr, 1e-6);

    /* At coverage 0 the mixed view is the gallery model's. */
    if (coverage == 0.0) {
        cd_eval_input plain = input_of(&w, false);
        cd_eval_report *g = NULL;
        CHECK_OK(cd_eval_run(&plain, &g, &err), &err);
        if (g) {
            CHECK(isnan(g->coverage));
            for (int k = 0; k < N_KS; k++)
                CHECK_EQ(g->cross.top[k], got->cross.top[k]);
            CHECK_EQ(g->cross.map, got->cross.map);
        }
        cd_eval_report_destroy(g);
    }
    fprintf(stderr, "%s dim %d own %d coverage %.3f: top1 %.4f map %.4f nfr %.4f\n",
            cd_metric_name(metric), dim, own_dim, got->coverage, got->cross.top[0],
            got->cross.map, got->nfr);
    cd_eval_report_destroy(got);
    unbuild(&w);
}

/* A hand-made l2 case: the own space's distances are far smaller than the
 * gallery space's, so a mix that compared 2q.x - |x|^2 without each
 * space's |q|^2 would rank them wrongly. */
static void test_l2_by_hand(void)
{
    /* Gallery space (dim 1): items at 10 and 11; the probe at 0.
     * Own space (dim 2): item 1 at (1, 0), probe at (0.5, 0). */
    float gal[] = {10.0f, 11.0f}, own[] = {0.0f, 0.0f, 1.0f, 0.0f};
    float probe[] = {0.0f}, own_probe[] = {0.5f, 0.0f};
    unsigned char has[] = {0, 1};
    const char *gids[] = {"a", "b"}, *glab[] = {"x", "y"};
    const char *pids[] = {"p"}, *plab[] = {"y"};
    int k1[] = {1};
    cd_eval_input in = {
        .dim = 1, .metric = CD_METRIC_L2,
        .probes = {1, probe, pids, plab},
        .gallery = {2, gal, gids, glab},
        .ks = k1, .n_ks = 1, .primary_k = 1,
        .own_dim = 2, .own_probes = own_probe, .own = own, .has_own = has,
    };
    cd_eval_report *r = NULL;
    cd_error err;
    CHECK_OK(cd_eval_run(&in, &r, &err), &err);
    /* b at squared distance 0.25 in its space beats a at 100. */
    if (r) {
        CHECK_EQ(r->cross.top[0], 1.0);
        CHECK_EQ(r->coverage, 0.5);
    }
    cd_eval_report_destroy(r);
    /* Moved to 20 in its own space, b (400) loses to a (100). */
    own[2] = 20.5f;
    CHECK_OK(cd_eval_run(&in, &r, &err), &err);
    if (r)
        CHECK_EQ(r->cross.top[0], 0.0);
    cd_eval_report_destroy(r);
}

int main(void)
{
    static const cd_metric metrics[] = {CD_METRIC_COSINE, CD_METRIC_IP, CD_METRIC_L2};
    static const double coverages[] = {0.0, 0.3, 0.7, 1.0};
    static const int own_dims[][2] = {{16, 24}, {12, 12}};
    test_l2_by_hand();
    for (size_t m = 0; m < 3; m++)
        for (size_t d = 0; d < 2; d++)
            for (size_t c = 0; c < 4; c++)
                run_case(metrics[m], own_dims[d][0], own_dims[d][1], coverages[c]);
    return check_exit();
}
