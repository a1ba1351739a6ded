/*
 * bench_http.c - what one request costs over keep-alive, next to nothing
 * but the work it asks for.
 *
 *   bench_http [REQUESTS]        (default 5000; COMPATD = the daemon)
 *
 * Starts the daemon (log level warn), makes a Flat gallery of 1,000 x 128
 * (cosine) and sends, on one reused libcurl handle (one keep-alive
 * connection), REQUESTS times each of: GET /healthz, and a k=10 search
 * with a JSON vector.  Prints requests/s, p50 and p99 of each, and the
 * same k=10 search in-process (cd_engine_search on a gallery of the same
 * rows) so the difference is what HTTP, parsing and rendering add.
 * Client time is in the figures (libcurl, no parsing of the reply).
 */
#include <curl/curl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../daemon.h"
#include "engine.h"

#define N_ITEMS 1000
#define DIM 128
#define N_QUERIES 64

static int by_value(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double pct(double *v, size_t n, double p)
{
    size_t i = (size_t)ceil(p * (double)n) - 1;
    return v[i < n ? i : n - 1];
}

static void report(const char *what, double *t, size_t n, double total)
{
    qsort(t, n, sizeof *t, by_value);
    printf("  %-34s %9.0f req/s   p50 %7.1f us   p99 %7.1f us\n", what, (double)n / total,
           pct(t, n, 0.5) * 1e6, pct(t, n, 0.99) * 1e6);
}

static size_t sink(char *p, size_t size, size_t n, void *ctx)
{
    (void)p;
    *(size_t *)ctx += size * n;
    return size * n;
}

static void die(const char *what, const td_reply *r)
{
    fprintf(stderr, "bench_http: %s: HTTP %ld %s%s\n", what, r->status,
            r->body ? r->body : "", r->error);
    exit(1);
}

static void json_vector(td_text *t, const float *v)
{
    td_text_append(t, "[");
    for (int d = 0; d < DIM; d++)
        td_text_append(t, d ? ",%.9g" : "%.9g", v[d]);
    td_text_append(t, "]");
}

int main(int argc, char **argv)
{
    size_t reps = argc > 1 ? strtoul(argv[1], NULL, 10) : 5000;
    if (reps < 10)
        return 2;
    td_rng rng = {7};
    static float x[N_ITEMS * DIM], q[N_QUERIES * DIM];
    for (size_t i = 0; i < N_ITEMS * DIM; i++)
        x[i] = (float)td_rng_gauss(&rng);
    for (size_t i = 0; i < N_QUERIES * DIM; i++)
        q[i] = (float)td_rng_gauss(&rng);

    td_daemon *d = td_daemon_create();
    if (!d || !td_daemon_start(d, (const char *const[]){"--log-level", "warn", NULL}))
        return 1;
    td_http *h = td_http_create(d);
    td_reply r = {0};
    if (td_http_json(h, "POST", "/v1/models", "{\"name\":\"m\",\"dim\":128,\"metric\":\"cosine\"}", &r) != 201)
        die("model", &r);
    td_reply_finish(&r);
    if (td_http_json(h, "POST", "/v1/galleries", "{\"name\":\"g\",\"model\":\"m\"}", &r) != 201)
        die("gallery", &r);
    td_reply_finish(&r);
    td_text body = {0};
    td_text_append(&body, "{\"items\":[");
    for (size_t i = 0; i < N_ITEMS; i++) {
        td_text_append(&body, "%s{\"id\":\"item-%zu\",\"label\":\"L%zu\",\"vector\":", i ? "," : "", i, i % 10);
        json_vector(&body, x + i * DIM);
        td_text_append(&body, "}");
    }
    td_text_append(&body, "]}");
    if (td_http_json(h, "POST", "/v1/galleries/g/items", body.s, &r) != 200)
        die("upsert", &r);
    td_reply_finish(&r);
    free(body.s);

    char **bodies = calloc(N_QUERIES, sizeof *bodies);
    for (size_t i = 0; i < N_QUERIES; i++) {
        td_text t = {0};
        td_text_append(&t, "{\"k\":10,\"vector\":");
        json_vector(&t, q + i * DIM);
        td_text_append(&t, "}");
        bodies[i] = t.s;
    }

    char base[128];
    snprintf(base, sizeof base, "http://127.0.0.1:%d", td_daemon_port(d));
    char health[160], search[160];
    snprintf(health, sizeof health, "%s/healthz", base);
    snprintf(search, sizeof search, "%s/v1/galleries/g/search", base);
    CURL *c = curl_easy_init();
    size_t got = 0;
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, sink);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &got);
    curl_easy_setopt(c, CURLOPT_TCP_NODELAY, 1L);
    /* No "Expect: 100-continue" (libcurl's default above 1 KB of body):
     * its extra round trip is the client's choice, not the server's cost. */
    struct curl_slist *hdr = curl_slist_append(NULL, "Content-Type: application/json");
    hdr = curl_slist_append(hdr, "Expect:");
    double *t = malloc(reps * sizeof *t);

    printf("HTTP overhead over one keep-alive connection, %zu requests each, "
           "gallery %d x %d cosine Flat\n", reps, N_ITEMS, DIM);
    for (int round = 0; round < 2; round++) {
        curl_easy_setopt(c, CURLOPT_HTTPGET, 1L);
        curl_easy_setopt(c, CURLOPT_URL, health);
        double t0 = td_now();
        for (size_t i = 0; i < reps; i++) {
            double a = td_now();
            long status = 0;
            if (curl_easy_perform(c) != CURLE_OK ||
                curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status) != CURLE_OK || status != 200) {
                fprintf(stderr, "healthz failed\n");
                return 1;
            }
            t[i] = td_now() - a;
        }
        if (round)
            report("GET /healthz", t, reps, td_now() - t0);

        curl_easy_setopt(c, CURLOPT_URL, search);
        curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdr);
        size_t before = got;
        t0 = td_now();
        for (size_t i = 0; i < reps; i++) {
            curl_easy_setopt(c, CURLOPT_POSTFIELDS, bodies[i % N_QUERIES]);
            double a = td_now();
            long status = 0;
            if (curl_easy_perform(c) != CURLE_OK ||
                curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status) != CURLE_OK || status != 200) {
                fprintf(stderr, "search failed: %ld\n", status);
                return 1;
            }
            t[i] = td_now() - a;
        }
        if (round) {
            report("POST search k=10 (JSON vector)", t, reps, td_now() - t0);
            printf("  (reply %zu bytes on average)\n", (got - before) / reps);
        }
        curl_easy_setopt(c, CURLOPT_HTTPHEADER, NULL);
    }

    /* The same search in-process. */
    char dir[600];
    snprintf(dir, sizeof dir, "%s/inprocess", td_daemon_dir(d));
    cd_engine_config cfg = {.data_dir = dir};
    cd_engine *e = NULL;
    cd_error err;
    cd_model m = {.dim = DIM, .metric = CD_METRIC_COSINE};
    snprintf(m.name, sizeof m.name, "m");
    cd_item_in *items = calloc(N_ITEMS, sizeof *items);
    char (*ids)[32] = calloc(N_ITEMS, sizeof *ids);
    for (size_t i = 0; i < N_ITEMS; i++) {
        snprintf(ids[i], sizeof ids[i], "item-%zu", i);
        items[i] = (cd_item_in){.id = ids[i], .vector = x + i * DIM};
    }
    if (cd_engine_open(&cfg, &e, &err) != CD_OK || cd_engine_load_indexes(e, &err) != CD_OK ||
        cd_engine_model_create(e, &m, NULL, &err) != CD_OK ||
        cd_engine_gallery_create(e, "g", "m", "Flat", NULL, &err) != CD_OK ||
        cd_engine_items_upsert(e, "g", NULL, items, N_ITEMS, &err) != CD_OK) {
        fprintf(stderr, "bench_http: engine: %s\n", err.message);
        return 1;
    }
    double t0 = td_now();
    for (size_t i = 0; i < reps; i++) {
        cd_search_result *res = NULL;
        double a = td_now();
        if (cd_engine_search(e, "g", NULL, q + (i % N_QUERIES) * DIM, 1, 10,
                             CD_INCLUDE_LABEL, &res, &err) != CD_OK) {
            fprintf(stderr, "bench_http: search: %s\n", err.message);
            return 1;
        }
        t[i] = td_now() - a;
        cd_search_result_destroy(res);
    }
    report("the same search in-process", t, reps, td_now() - t0);
    cd_engine_close(e);

    curl_slist_free_all(hdr);
    curl_easy_cleanup(c);
    td_http_destroy(h);
    td_daemon_stop(d);
    td_daemon_destroy(d);
    return 0;
}
