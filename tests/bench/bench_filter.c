/*
 * bench_filter.c - filtered search latency next to unfiltered, through
 * core's engine (no HTTP): one query (k 10, cosine, dim 128) at a time,
 * with no filter and with filters matching 50 %, 5 % and 0.1 % of the
 * items (a boolean metadata member each), on a Flat gallery and on an
 * HNSW32 gallery of the same vectors (clustered, as embeddings are).
 * Each line is the median of alternating rounds (the machine is
 * shared); for HNSW it adds recall@10 against the Flat gallery's exact
 * filtered answer and how many queries got fewer hits than it ("short").  Between filling and
 * searching it closes and reopens the engine and says how long the
 * start took (snapshots, and the filter fields read from the store).
 *
 *   bench_filter [ROUNDS]   (default 41)
 *   BENCH_FILTER_N (default 1000000: the Flat gallery's items)
 *   BENCH_FILTER_HNSW_N (default 200000: HNSW32 builds at about 2,000
 *   vectors/s on two shared cores, so 1 M would take most of an hour)
 *
 * Nothing here asserts a time.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "engine.h"
#include "filter.h"

#define DIM 128
#define K 10
#define BATCH 10000
#define CLUSTERS 300
#define N_QUERIES 64

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
        fprintf(stderr, "bench_filter: out of memory\n");
        exit(1);
    }
    return p;
}

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;

static double uniform(void)
{
    uint64_t z = (rng_state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z ^= z >> 31;
    return ((double)(z >> 11) + 0.5) / 9007199254740992.0;
}

static float gauss(void)
{
    /* Sum of 4 uniforms, centred: close enough to normal for data. */
    return (float)((uniform() + uniform() + uniform() + uniform() - 2.0) * 1.7);
}

static void die(const char *what, const cd_error *err)
{
    fprintf(stderr, "bench_filter: %s: %s\n", what, err->message);
    exit(1);
}

static float *centers;

static void point(float *v)
{
    const float *c = centers + (size_t)(uniform() * CLUSTERS) * DIM;
    for (size_t j = 0; j < DIM; j++)
        v[j] = c[j] + 0.5f * gauss();
}

/* Fills gallery with n items: item i has metadata members s50, s5, s01,
 * true for 1 in 2, 20 and 1000 of them. */
static void fill(cd_engine *e, const char *gallery, size_t n, uint64_t seed)
{
    float *v = xmalloc((size_t)BATCH * DIM * sizeof *v);
    cd_item_in *items = xmalloc(BATCH * sizeof *items);
    char (*ids)[24] = xmalloc(BATCH * sizeof *ids);
    char (*meta)[80] = xmalloc(BATCH * sizeof *meta);
    cd_error err;
    rng_state = seed;
    double t0 = now();
    for (size_t lo = 0; lo < n; lo += BATCH) {
        size_t b = n - lo < BATCH ? n - lo : BATCH;
        for (size_t i = 0; i < b; i++) {
            size_t id = lo + i;
            point(v + i * DIM);
            snprintf(ids[i], sizeof ids[i], "i%zu", id);
            snprintf(meta[i], sizeof meta[i], "{\"s50\":%s,\"s5\":%s,\"s01\":%s}",
                     id % 2 == 0 ? "true" : "false", id % 20 == 0 ? "true" : "false",
                     id % 1000 == 0 ? "true" : "false");
            items[i] = (cd_item_in){ids[i], NULL, meta[i], v + i * DIM};
        }
        if (cd_engine_items_upsert(e, gallery, NULL, items, b, &err) != CD_OK)
            die("upsert", &err);
    }
    fprintf(stderr, "%s: %zu items in %.1f s\n", gallery, n, now() - t0);
    free(v);
    free(items);
    free(ids);
    free(meta);
}

/* {"metadata.<name>": true} */
static cd_filter *bool_filter(const char *name)
{
    cd_filter *f = calloc(1, sizeof *f);
    cd_value *val = calloc(1, sizeof *val);
    char *field = strdup(name);
    if (!f || !val || !field) {
        fprintf(stderr, "bench_filter: out of memory\n");
        exit(1);
    }
    f->op = CD_FILTER_EQ;
    f->field = field;
    val->type = CD_VALUE_BOOL;
    val->b = true;
    f->values = val;
    f->n_values = 1;
    return f;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

typedef struct line {
    const char *name;
    cd_filter *filter;
    double *t_flat, *t_hnsw;
    double recall;
    size_t hits, short_rows;
} line;

int main(int argc, char **argv)
{
    int rounds = argc > 1 ? atoi(argv[1]) : 41;
    const char *env = getenv("BENCH_FILTER_N");
    size_t n = env ? (size_t)atol(env) : 1000000;
    env = getenv("BENCH_FILTER_HNSW_N");
    size_t n_hnsw = env ? (size_t)atol(env) : 200000;
    if (rounds < 1 || n < 1000 || n_hnsw < 1000)
        return 2;
    char dir[] = "/tmp/bench_filter.XXXXXX";
    if (!mkdtemp(dir))
        return 1;
    cd_engine_config cfg = {.data_dir = dir};
    cd_engine *e;
    cd_error err;
    if (cd_engine_open(&cfg, &e, &err) != CD_OK || cd_engine_load_indexes(e, &err) != CD_OK)
        die("open", &err);
    cd_model m = {.dim = DIM, .metric = CD_METRIC_COSINE};
    snprintf(m.name, sizeof m.name, "bench");
    if (cd_engine_model_create(e, &m, NULL, &err) != CD_OK ||
        cd_engine_gallery_create(e, "flat", "bench", "Flat", NULL, &err) != CD_OK ||
        cd_engine_gallery_create(e, "hnsw", "bench", "HNSW32", NULL, &err) != CD_OK ||
        cd_engine_gallery_create(e, "flat_small", "bench", "Flat", NULL, &err) != CD_OK)
        die("create", &err);
    centers = xmalloc((size_t)CLUSTERS * DIM * sizeof *centers);
    for (size_t i = 0; i < (size_t)CLUSTERS * DIM; i++)
        centers[i] = gauss();
    fill(e, "flat", n, 1);
    fill(e, "hnsw", n_hnsw, 2);
    fill(e, "flat_small", n_hnsw, 2);   /* the HNSW gallery's exact twin */

    /* A restart: indexes from their snapshots, the filters' fields from
     * the store (every item's metadata parsed once). */
    cd_engine_close(e);
    double t_open = now();
    if (cd_engine_open(&cfg, &e, &err) != CD_OK || cd_engine_load_indexes(e, &err) != CD_OK)
        die("reopen", &err);
    fprintf(stderr, "reopened with %zu items in %.1f s\n", n + 2 * n_hnsw, now() - t_open);

    float *q = xmalloc((size_t)N_QUERIES * DIM * sizeof *q);
    rng_state = 3;
    for (size_t i = 0; i < N_QUERIES; i++)
        point(q + i * DIM);
    line lines[] = {
        {"no filter", NULL, 0, 0, 0, 0, 0},
        {"50 %", bool_filter("s50"), 0, 0, 0, 0, 0},
        {"5 %", bool_filter("s5"), 0, 0, 0, 0, 0},
        {"0.1 %", bool_filter("s01"), 0, 0, 0, 0, 0},
    };
    size_t n_lines = sizeof lines / sizeof lines[0];
    for (size_t l = 0; l < n_lines; l++) {
        lines[l].t_flat = xmalloc((size_t)rounds * sizeof(double));
        lines[l].t_hnsw = xmalloc((size_t)rounds * sizeof(double));
    }
    for (int r = 0; r < rounds; r++) {
        const float *qv = q + (size_t)(r % N_QUERIES) * DIM;
        for (size_t l = 0; l < n_lines; l++) {
            cd_search_result *a = NULL, *b = NULL, *c = NULL;
            double t0 = now();
            if (cd_engine_search_filtered(e, "flat", NULL, qv, 1, K, 0, lines[l].filter, &a,
                                          &err) != CD_OK)
                die("search flat", &err);
            double t1 = now();
            if (cd_engine_search_filtered(e, "hnsw", NULL, qv, 1, K, 0, lines[l].filter, &b,
                                          &err) != CD_OK)
                die("search hnsw", &err);
            double t2 = now();
            if (cd_engine_search_filtered(e, "flat_small", NULL, qv, 1, K, 0, lines[l].filter,
                                          &c, &err) != CD_OK)
                die("search flat_small", &err);
            lines[l].t_flat[r] = t1 - t0;
            lines[l].t_hnsw[r] = t2 - t1;
            size_t found = 0;
            for (size_t i = 0; i < b->counts[0]; i++)
                for (size_t j = 0; j < c->counts[0]; j++)
                    found += strcmp(b->hits[i].item.id, c->hits[j].item.id) == 0;
            lines[l].recall += c->counts[0] ? (double)found / (double)c->counts[0] : 1.0;
            lines[l].hits += b->counts[0];
            lines[l].short_rows += b->counts[0] < c->counts[0];
            cd_search_result_destroy(a);
            cd_search_result_destroy(b);
            cd_search_result_destroy(c);
        }
    }
    printf("single query, k %d, dim %d, median of %d rounds\n", K, DIM, rounds);
    printf("%-10s %16s %16s %12s %10s\n", "filter", "Flat us", "HNSW32 us",
           "HNSW rec@10", "short");
    printf("           (Flat %zu items, HNSW32 %zu items)\n", n, n_hnsw);
    for (size_t l = 0; l < n_lines; l++) {
        qsort(lines[l].t_flat, (size_t)rounds, sizeof(double), cmp_double);
        qsort(lines[l].t_hnsw, (size_t)rounds, sizeof(double), cmp_double);
        printf("%-10s %16.0f %16.0f %12.3f %10zu\n", lines[l].name,
               lines[l].t_flat[rounds / 2] * 1e6, lines[l].t_hnsw[rounds / 2] * 1e6,
               lines[l].recall / rounds, lines[l].short_rows);
        free(lines[l].t_flat);
        free(lines[l].t_hnsw);
        cd_filter_destroy(lines[l].filter);
    }
    cd_engine_gallery_delete(e, "flat", &err);
    cd_engine_gallery_delete(e, "hnsw", &err);
    cd_engine_gallery_delete(e, "flat_small", &err);
    cd_engine_close(e);
    char *cmd = xmalloc(sizeof dir + 16);
    snprintf(cmd, sizeof dir + 16, "rm -rf '%s'", dir);
    if (system(cmd) != 0)
        fprintf(stderr, "bench_filter: could not remove %s\n", dir);
    free(cmd);
    free(q);
    free(centers);
    return 0;
}
