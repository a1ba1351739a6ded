/*
 * bench_search.c - what HTTP costs on top of the core, measured side by
 * side in one run (the machine is shared and noisy, so every number that
 * matters is a ratio of two runs interleaved in time).
 *
 *   bench_search [N [DIM]]        (defaults 100000 128; COMPATD = daemon)
 *
 * Prints, for an inner-product Flat gallery of N x DIM vectors:
 * - single-query latency p50/p99 over HTTP (JSON body, keep-alive) and of
 *   the same search in-process through cd_engine_search, and their ratio;
 * - batch (100 queries a request) throughput over HTTP and in-process;
 * - durable ingest rate over HTTP with vector_b64 and with JSON arrays
 *   (batches of 10,000, each acknowledged after its SQLite commit), next
 *   to the in-process ingest rate.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "../daemon.h"
#include "engine.h"

#define BATCH 10000
#define ROUNDS 10
#define SINGLE_PER_ROUND 100
#define MULTI_PER_REQUEST 100
#define MULTI_PER_ROUND 5

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int by_value(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double percentile(double *v, size_t n, double p)
{
    qsort(v, n, sizeof *v, by_value);
    size_t i = (size_t)ceil(p * (double)n) - 1;
    return v[i < n ? i : n - 1];
}

static void die(const char *what, const td_reply *r)
{
    fprintf(stderr, "bench: %s failed: HTTP %ld %s%s\n", what, r ? r->status : 0,
            r && r->body ? r->body : "", r ? r->error : "");
    exit(1);
}

/* Appends text to a growing buffer. */
typedef struct buf {
    char *s;
    size_t len, cap;
} buf;

static void put(buf *b, const char *text, size_t n)
{
    if (b->len + n + 1 > b->cap) {
        b->cap = (b->len + n + 1) * 2;
        b->s = realloc(b->s, b->cap);
        if (!b->s) {
            fprintf(stderr, "bench: out of memory\n");
            exit(1);
        }
    }
    memcpy(b->s + b->len, text, n);
    b->len += n;
    b->s[b->len] = '\0';
}

static void puts_(buf *b, const char *text)
{
    put(b, text, strlen(text));
}

static void put_floats_json(buf *b, const float *v, int dim)
{
    char num[32];
    puts_(b, "[");
    for (int d = 0; d < dim; d++) {
        int n = snprintf(num, sizeof num, d ? ",%.9g" : "%.9g", v[d]);
        put(b, num, (size_t)n);
    }
    puts_(b, "]");
}

/* One upsert body of items [from, from+n). */
static void items_body(buf *b, const float *x, int dim, size_t from, size_t n, bool b64)
{
    char head[64];
    b->len = 0;
    puts_(b, "{\"items\":[");
    for (size_t i = from; i < from + n; i++) {
        snprintf(head, sizeof head, "%s{\"id\":\"item-%zu\",", i > from ? "," : "", i);
        puts_(b, head);
        if (b64) {
            char *text = td_b64_floats(x + i * (size_t)dim, (size_t)dim);
            puts_(b, "\"vector_b64\":\"");
            puts_(b, text);
            puts_(b, "\"}");
            free(text);
        } else {
            puts_(b, "\"vector\":");
            put_floats_json(b, x + i * (size_t)dim, dim);
            puts_(b, "}");
        }
    }
    puts_(b, "]}");
}

/* Ingests n vectors into gallery over HTTP; returns vectors per second.
 * Building the bodies is not timed: only the requests are. */
static double ingest_http(td_http *h, const char *gallery, const float *x, int dim, size_t n,
                          bool b64)
{
    char path[128];
    snprintf(path, sizeof path, "/v1/galleries/%s/items", gallery);
    double spent = 0;
    buf b = {0};
    for (size_t from = 0; from < n; from += BATCH) {
        size_t m = n - from < BATCH ? n - from : BATCH;
        items_body(&b, x, dim, from, m, b64);
        td_reply r = {0};
        double t0 = now();
        if (td_http_json(h, "POST", path, b.s, &r) != 200)
            die("ingest", &r);
        spent += now() - t0;
        td_reply_finish(&r);
    }
    free(b.s);
    return (double)n / spent;
}

static double ingest_core(cd_engine *e, const char *gallery, const float *x, int dim, size_t n)
{
    cd_item_in *items = calloc(BATCH, sizeof *items);
    char (*ids)[32] = calloc(BATCH, sizeof *ids);
    double spent = 0;
    for (size_t from = 0; from < n; from += BATCH) {
        size_t m = n - from < BATCH ? n - from : BATCH;
        for (size_t i = 0; i < m; i++) {
            snprintf(ids[i], sizeof ids[i], "item-%zu", from + i);
            items[i] = (cd_item_in){.id = ids[i], .vector = x + (from + i) * (size_t)dim};
        }
        cd_error err;
        double t0 = now();
        if (cd_engine_items_upsert(e, gallery, NULL, items, m, &err) != CD_OK) {
            fprintf(stderr, "bench: in-process ingest: %s\n", err.message);
            exit(1);
        }
        spent += now() - t0;
    }
    free(items);
    free(ids);
    return (double)n / spent;
}

static void search_body(buf *b, const float *q, int dim, size_t nq)
{
    b->len = 0;
    puts_(b, nq == 1 ? "{\"k\":10,\"vector\":" : "{\"k\":10,\"vectors\":[");
    for (size_t i = 0; i < nq; i++) {
        if (i)
            puts_(b, ",");
        put_floats_json(b, q + i * (size_t)dim, dim);
    }
    puts_(b, nq == 1 ? "}" : "]}");
}

/* One HTTP search of nq queries; returns seconds. */
static double search_http(td_http *h, const float *q, int dim, size_t nq, buf *b)
{
    search_body(b, q, dim, nq);
    td_reply r = {0};
    double t0 = now();
    if (td_http_json(h, "POST", "/v1/galleries/bench/search", b->s, &r) != 200)
        die("search", &r);
    double t = now() - t0;
    td_reply_finish(&r);
    return t;
}

static double search_core(cd_engine *e, const float *q, size_t nq)
{
    cd_search_result *res = NULL;
    cd_error err;
    double t0 = now();
    if (cd_engine_search(e, "bench", NULL, q, nq, 10, 0, &res, &err) != CD_OK) {
        fprintf(stderr, "bench: in-process search: %s\n", err.message);
        exit(1);
    }
    double t = now() - t0;
    cd_search_result_destroy(res);
    return t;
}

static void setup_http(td_http *h)
{
    td_reply r = {0};
    if (td_http_json(h, "POST", "/v1/models", "{\"name\":\"bench-ip\",\"dim\":128,\"metric\":\"ip\"}", &r) != 201)
        die("create model", &r);
    td_reply_finish(&r);
    static const char *const galleries[] = {"bench", "bench-json"};
    for (size_t i = 0; i < 2; i++) {
        char body[128];
        snprintf(body, sizeof body, "{\"name\":\"%s\",\"model\":\"bench-ip\"}", galleries[i]);
        if (td_http_json(h, "POST", "/v1/galleries", body, &r) != 201)
            die("create gallery", &r);
        td_reply_finish(&r);
    }
}

int main(int argc, char **argv)
{
    size_t n = argc > 1 ? strtoul(argv[1], NULL, 10) : 100000;
    int dim = argc > 2 ? atoi(argv[2]) : 128;
    if (n < 1000 || dim != 128) {
        fprintf(stderr, "usage: bench_search [N>=1000 [128]]\n");
        return 2;
    }
    size_t n_json = n / 5;
    td_rng rng = {42};
    float *x = malloc(n * (size_t)dim * sizeof *x);
    size_t nq_total = ROUNDS * SINGLE_PER_ROUND;
    float *q = malloc(nq_total * (size_t)dim * sizeof *q);
    if (!x || !q)
        return 1;
    for (size_t i = 0; i < n * (size_t)dim; i++)
        x[i] = (float)td_rng_gauss(&rng);
    for (size_t i = 0; i < nq_total * (size_t)dim; i++)
        q[i] = (float)td_rng_gauss(&rng);

    printf("compatd benchmark: %zu x %d float32, inner product, Flat index\n", n, dim);
    td_daemon *d = td_daemon_create();
    if (!d || !td_daemon_start(d, (const char *const[]){"--log-level", "warn", NULL}))
        return 1;
    td_http *h = td_http_create(d);
    setup_http(h);

    char core_dir[512];
    snprintf(core_dir, sizeof core_dir, "%s/inprocess", td_daemon_dir(d));
    cd_engine_config cfg = {.data_dir = core_dir};
    cd_engine *e = NULL;
    cd_error err;
    if (cd_engine_open(&cfg, &e, &err) != CD_OK || cd_engine_load_indexes(e, &err) != CD_OK) {
        fprintf(stderr, "bench: engine: %s\n", err.message);
        return 1;
    }
    cd_model m = {.dim = dim, .metric = CD_METRIC_IP};
    snprintf(m.name, sizeof m.name, "bench-ip");
    if (cd_engine_model_create(e, &m, NULL, &err) != CD_OK ||
        cd_engine_gallery_create(e, "bench", "bench-ip", NULL, NULL, &err) != CD_OK) {
        fprintf(stderr, "bench: engine: %s\n", err.message);
        return 1;
    }

    double rate_b64 = ingest_http(h, "bench", x, dim, n, true);
    double rate_json = ingest_http(h, "bench-json", x, dim, n_json, false);
    double rate_core = ingest_core(e, "bench", x, dim, n);

    /* Latency: rounds alternate HTTP and in-process on the same queries. */
    double *lat_http = malloc(nq_total * sizeof *lat_http);
    double *lat_core = malloc(nq_total * sizeof *lat_core);
    buf b = {0};
    for (int i = 0; i < 20; i++) { /* warm both paths up */
        search_http(h, q, dim, 1, &b);
        search_core(e, q, 1);
    }
    for (size_t r = 0; r < ROUNDS; r++) {
        for (size_t i = 0; i < SINGLE_PER_ROUND; i++) {
            size_t at = r * SINGLE_PER_ROUND + i;
            lat_http[at] = search_http(h, q + at * (size_t)dim, dim, 1, &b);
        }
        for (size_t i = 0; i < SINGLE_PER_ROUND; i++) {
            size_t at = r * SINGLE_PER_ROUND + i;
            lat_core[at] = search_core(e, q + at * (size_t)dim, 1);
        }
    }
    double http_p50 = percentile(lat_http, nq_total, 0.5), http_p99 = percentile(lat_http, nq_total, 0.99);
    double core_p50 = percentile(lat_core, nq_total, 0.5), core_p99 = percentile(lat_core, nq_total, 0.99);

    /* Batch throughput: requests of 100 queries, alternating. */
    double t_http = 0, t_core = 0;
    size_t batches = 0;
    for (size_t r = 0; r < ROUNDS; r++) {
        for (size_t i = 0; i < MULTI_PER_ROUND; i++) {
            const float *qq = q + ((r * MULTI_PER_ROUND + i) * MULTI_PER_REQUEST % (nq_total - MULTI_PER_REQUEST)) * (size_t)dim;
            t_http += search_http(h, qq, dim, MULTI_PER_REQUEST, &b);
            t_core += search_core(e, qq, MULTI_PER_REQUEST);
            batches++;
        }
    }
    double qps_http = (double)(batches * MULTI_PER_REQUEST) / t_http;
    double qps_core = (double)(batches * MULTI_PER_REQUEST) / t_core;

    printf("\n%-44s %12s %12s %8s\n", "measure", "HTTP", "in-process", "ratio");
    printf("%-44s %10.3fms %10.3fms %7.2fx\n", "single query latency p50", http_p50 * 1e3,
           core_p50 * 1e3, http_p50 / core_p50);
    printf("%-44s %10.3fms %10.3fms %7.2fx\n", "single query latency p99", http_p99 * 1e3,
           core_p99 * 1e3, http_p99 / core_p99);
    printf("%-44s %10.0f/s %10.0f/s %7.2fx\n", "batch of 100 queries: queries per second", qps_http,
           qps_core, qps_core / qps_http);
    printf("%-44s %10.0f/s %10.0f/s %7.2fx\n", "durable ingest, vector_b64: vectors per second",
           rate_b64, rate_core, rate_core / rate_b64);
    printf("%-44s %10.0f/s %10s %8s\n", "durable ingest, JSON arrays: vectors per second", rate_json,
           "", "");
    printf("\ntargets: HTTP single-query p50 within 1.15x of in-process: %s (%.2fx); "
           "ingest with vector_b64 >= 100,000 vectors/s: %s (%.0f/s)\n",
           http_p50 / core_p50 <= 1.15 ? "met" : "NOT met", http_p50 / core_p50,
           rate_b64 >= 100000 ? "met" : "NOT met", rate_b64);

    free(b.s);
    free(lat_http);
    free(lat_core);
    cd_engine_close(e);
    td_http_destroy(h);
    int stopped = td_daemon_stop(d);
    td_daemon_destroy(d);
    free(x);
    free(q);
    return stopped == 0 ? 0 : 1;
}
