/*
 * bench_adapter.c - what an adapter costs: fitting it, and mapping a
 * query through it next to the search the mapping precedes.
 *
 *   bench_adapter [N]      (default 100000; BENCH_ADAPTER_SCALE=0.1 in the
 *                           environment shrinks N for a quick look)
 *
 * Prints:
 * - fit time for N pairs at 768 -> 768, orthogonal and linear (ridge
 *   0.01), with the fit's mean and cross-validated cosine;
 * - per-query mapping cost at 128 and 768 dims (orthogonal, cosine), for
 *   batches of 1 and of 100 queries, next to one exact Flat search (k 10)
 *   of an N-vector gallery of that dim through FAISS in the same process,
 *   and their ratio.  The machine is shared and noisy, so the two are
 *   timed in alternating rounds and the medians compared.
 * Nothing here asserts a time.
 */
#include <cblas.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "adapter.h"
#include "index.h"

#define K 10
#define ROUNDS 7
#define ROUND_SECONDS 0.1

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void *xmalloc(size_t n)
{
    void *p = malloc(n);
    if (!p) {
        fprintf(stderr, "bench_adapter: out of memory\n");
        exit(1);
    }
    return p;
}

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;

static double gauss(void)
{
    double u[2];
    for (int i = 0; i < 2; i++) {
        rng_state ^= rng_state << 13;
        rng_state ^= rng_state >> 7;
        rng_state ^= rng_state << 17;
        u[i] = ((rng_state >> 11) + 0.5) / 9007199254740992.0;
    }
    return sqrt(-2 * log(u[0])) * cos(6.283185307179586 * u[1]);
}

static float *gauss_matrix(size_t rows, size_t cols, double scale)
{
    float *m = xmalloc(rows * cols * sizeof *m);
    for (size_t i = 0; i < rows * cols; i++)
        m[i] = (float)(gauss() * scale);
    return m;
}

static void fail(const char *what, const cd_error *err)
{
    fprintf(stderr, "bench_adapter: %s: %s\n", what, err->message);
    exit(1);
}

static int by_value(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *v, size_t n)
{
    qsort(v, n, sizeof *v, by_value);
    return v[n / 2];
}

static void bench_fit(size_t n)
{
    const int d = 768;
    float *a = gauss_matrix(n, d, 1.0), *m = gauss_matrix(d, d, 1.0 / sqrt(d));
    float *b = xmalloc(n * d * sizeof *b);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)n, d, d, 1.0f, a, d, m, d,
                0.0f, b, d);
    for (size_t i = 0; i < n * d; i++)
        b[i] += (float)(0.5 * gauss());
    static const struct {
        cd_adapter_kind kind;
        double ridge;
    } fits[] = {{CD_ADAPTER_ORTHOGONAL, 0}, {CD_ADAPTER_LINEAR, 0.01}};
    printf("fit: %zu pairs, %d -> %d, cosine -> cosine\n", n, d, d);
    printf("  %-11s %10s %12s %14s\n", "kind", "seconds", "mean_cosine", "cv_mean_cosine");
    for (size_t f = 0; f < sizeof fits / sizeof fits[0]; f++) {
        cd_adapter_params p = {fits[f].kind, d, CD_METRIC_COSINE, d, CD_METRIC_COSINE,
                               fits[f].ridge};
        cd_adapter *ad = NULL;
        cd_error err;
        double t0 = now();
        if (cd_adapter_fit(&p, a, b, n, &ad, &err) != CD_OK)
            fail("fit", &err);
        double secs = now() - t0;
        cd_adapter_info info;
        cd_adapter_info_get(ad, &info);
        printf("  %-11s %10.2f %12.4f %14.4f\n", cd_adapter_kind_name(p.kind), secs,
               info.mean_cosine, info.cv_mean_cosine);
        cd_adapter_destroy(ad);
    }
    free(b);
    free(m);
    free(a);
}

/* Seconds per query of one call of map (batch queries) or search, run for
 * about ROUND_SECONDS. */
static double time_map(const cd_adapter *ad, const float *q, size_t batch, float *out)
{
    cd_error err;
    size_t calls = 0;
    double t0 = now(), t;
    do {
        if (cd_adapter_map(ad, q, batch, out, &err) != CD_OK)
            fail("map", &err);
        calls++;
    } while ((t = now() - t0) < ROUND_SECONDS);
    return t / (double)(calls * batch);
}

static double time_search(const cd_index *ix, const float *q, size_t batch, int64_t *ids,
                          float *scores)
{
    cd_error err;
    size_t calls = 0;
    double t0 = now(), t;
    do {
        if (cd_index_search(ix, q, batch, K, ids, scores, &err) != CD_OK)
            fail("search", &err);
        calls++;
    } while ((t = now() - t0) < ROUND_SECONDS);
    return t / (double)(calls * batch);
}

static void bench_map(size_t n)
{
    static const int dims[] = {128, 768};
    static const size_t batches[] = {1, 100};
    printf("\nmapping (orthogonal, cosine) vs one exact Flat search of %zu vectors, k %d\n", n, K);
    printf("  %5s %6s %14s %14s %8s\n", "dim", "batch", "map us/query", "search us/q", "ratio");
    for (size_t di = 0; di < sizeof dims / sizeof dims[0]; di++) {
        int d = dims[di];
        cd_error err;
        float *gallery = gauss_matrix(n, (size_t)d, 1.0);
        for (size_t i = 0; i < n; i++) {
            float *row = gallery + i * (size_t)d;
            double s = 0;
            for (int j = 0; j < d; j++)
                s += (double)row[j] * row[j];
            for (int j = 0; j < d; j++)
                row[j] = (float)(row[j] / sqrt(s));
        }
        int64_t *ids = xmalloc(n * sizeof *ids);
        for (size_t i = 0; i < n; i++)
            ids[i] = (int64_t)i;
        cd_index *ix = NULL;
        if (cd_index_create("Flat", d, CD_METRIC_COSINE, &ix, &err) != CD_OK ||
            cd_index_add(ix, ids, gallery, n, &err) != CD_OK)
            fail("index", &err);
        free(ids);

        /* An adapter fitted on a few thousand pairs of a random rotation. */
        size_t np = 4 * (size_t)d;
        float *a = gauss_matrix(np, (size_t)d, 1.0), *b = gauss_matrix(np, (size_t)d, 1.0);
        for (size_t i = 0; i < np * (size_t)d; i++)
            b[i] = 0.5f * b[i] + a[(i + 1) % (np * (size_t)d)];
        cd_adapter_params p = {CD_ADAPTER_ORTHOGONAL, d, CD_METRIC_COSINE, d,
                               CD_METRIC_COSINE, 0};
        cd_adapter *ad = NULL;
        if (cd_adapter_fit(&p, a, b, np, &ad, &err) != CD_OK)
            fail("fit", &err);

        size_t maxb = batches[sizeof batches / sizeof batches[0] - 1];
        float *q = gauss_matrix(maxb, (size_t)d, 1.0);
        float *mapped = xmalloc(maxb * (size_t)d * sizeof *mapped);
        int64_t *rid = xmalloc(maxb * K * sizeof *rid);
        float *rscore = xmalloc(maxb * K * sizeof *rscore);
        for (size_t bi = 0; bi < sizeof batches / sizeof batches[0]; bi++) {
            size_t batch = batches[bi];
            double tm[ROUNDS], ts[ROUNDS];
            for (int r = 0; r < ROUNDS; r++) {
                tm[r] = time_map(ad, q, batch, mapped);
                ts[r] = time_search(ix, mapped, batch, rid, rscore);
            }
            double m = median(tm, ROUNDS), s = median(ts, ROUNDS);
            printf("  %5d %6zu %14.2f %14.2f %7.4f\n", d, batch, m * 1e6, s * 1e6, m / s);
        }
        free(rscore);
        free(rid);
        free(mapped);
        free(q);
        cd_adapter_destroy(ad);
        free(b);
        free(a);
        cd_index_destroy(ix);
        free(gallery);
    }
}

int main(int argc, char **argv)
{
    size_t n = argc > 1 ? (size_t)strtoull(argv[1], NULL, 10) : 100000;
    const char *scale = getenv("BENCH_ADAPTER_SCALE");
    if (scale && atof(scale) > 0)
        n = (size_t)((double)n * atof(scale));
    if (n < 1000)
        n = 1000;
    bench_fit(n);
    bench_map(n);
    return 0;
}
