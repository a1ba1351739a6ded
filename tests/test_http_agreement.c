/*
 * test_http_agreement.c - live agreement without labels (SPEC.md §3.8):
 * searches that carry a shadow (the same query embedded by the gallery
 * model) against an independent brute force written here.
 *
 * A Flat gallery of model g (cosine) holds N_ITEMS items with g vectors
 * only; query model q (same dim and metric) may query it (query_policy
 * "any").  A query is its shadow plus noise, so agreement lies between 0
 * and 1.  For every shadowed query the reference scans every item twice
 * (query with the q vector, shadow with the g vector), and overlap =
 * |top-k ∩ top-k| / k, top1_retained = shadow top-1 in the query's top-k,
 * must equal the reply's agreement (queries whose k-th and (k+1)-th
 * reference scores tie within float error are left out; they must be
 * rare).  Then N_WINDOW_RUN > 10,000 shadowed queries in batches: the
 * gallery's live numbers and /metrics must be the count of all, and the
 * means over the last 10,000 of the agreements the replies gave (and of
 * the reference's, up to the ties).  A gallery smaller than k divides by
 * k.  Bad input is 400 and leaves the numbers as they were; deleting the
 * gallery drops them.  Searches from THREADS connections at once are all
 * counted, and their means are those of every reply.
 */
#include <math.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "daemon.h"

#define DIM 16
#define N_ITEMS 600
#define K 10
#define WINDOW 10000
#define N_EXACT 300         /* shadowed queries checked one by one */
#define N_WINDOW_RUN 12500  /* shadowed queries for the rolling means */
#define BATCH 2500
#define NOISE 0.35

static const td_metric metric = TD_METRIC_COSINE;
static float items[N_ITEMS * DIM];

typedef struct agreement {
    double overlap;
    bool top1;
    bool tie;               /* the reference cannot tell (a tie at rank k) */
} agreement;

static void gauss_vector(td_rng *rng, float *v)
{
    for (size_t j = 0; j < DIM; j++)
        v[j] = (float)td_rng_gauss(rng);
}

/* The reference top-(K+1) of v over every item; *tie when ranks K and
 * K+1 score the same within float error. */
static void ref_top(const float *v, size_t k, size_t *idx, bool *tie)
{
    double score[K + 1];
    size_t n = 0;
    for (size_t i = 0; i < N_ITEMS; i++)
        td_ref_topk_offer(metric, k + 1 < N_ITEMS ? k + 1 : k, idx, score, &n, i,
                          td_ref_score(metric, items + i * DIM, v, DIM));
    *tie = n > k && fabs(score[k - 1] - score[k]) <= td_tie_eps(score[k - 1]);
}

/* The reference agreement of query qv with its shadow sv. */
static agreement ref_agreement(const float *qv, const float *sv)
{
    size_t qi[K + 1], si[K + 1];
    bool qt, st;
    agreement a = {0};
    ref_top(qv, K, qi, &qt);
    ref_top(sv, K, si, &st);
    size_t common = 0;
    for (size_t s = 0; s < K; s++)
        for (size_t j = 0; j < K; j++)
            if (si[s] == qi[j]) {
                common++;
                a.top1 |= s == 0;
            }
    a.overlap = (double)common / K;
    a.tie = qt || st;
    return a;
}

/* Searches n queries of q with their n shadows (as "shadow" when single,
 * else as shadow_vectors of base64 strings or of arrays of numbers); the
 * reply's agreements into got. */
static void shadowed_search(td_http *h, const char *gallery, const float *qv, const float *sv,
                            size_t n, bool single, bool base64, agreement *got)
{
    td_text body = {0};
    if (single) {
        char *a = td_b64_floats(qv, DIM), *b = td_b64_floats(sv, DIM);
        td_text_append(&body, "{\"model\":\"q\",\"k\":%d,\"vector_b64\":\"%s\","
                       "\"shadow\":{\"vector_b64\":\"%s\"}}", K, a, b);
        free(a);
        free(b);
    } else {
        td_text_append(&body, "{\"model\":\"q\",\"k\":%d,\"vectors\":", K);
        td_text_append_b64_rows(&body, qv, n, DIM);
        td_text_append(&body, ",\"shadow_vectors\":");
        if (base64) {
            td_text_append_b64_rows(&body, sv, n, DIM);
            td_text_append(&body, "}");
        }
        for (size_t i = 0; !base64 && i < n; i++) {
            td_text_append(&body, i ? ",[" : "[[");
            for (size_t j = 0; j < DIM; j++)
                td_text_append(&body, "%s%.9g", j ? "," : "", (double)sv[i * DIM + j]);
            td_text_append(&body, "]");
        }
        if (!base64)
            td_text_append(&body, "]}");
    }
    char *path = td_fmt("/v1/galleries/%s/search", gallery);
    td_reply r;
    CHECK_EQ(td_http_call(h, &r, 200, "POST", path, body.s), 200);
    const cJSON *agr = cJSON_GetObjectItemCaseSensitive(r.json, "agreement");
    REQUIRE(cJSON_IsArray(agr) && (size_t)cJSON_GetArraySize(agr) == n);
    const cJSON *results = cJSON_GetObjectItemCaseSensitive(r.json, "results");
    REQUIRE((size_t)cJSON_GetArraySize(results) == n);
    for (size_t i = 0; i < n; i++) {
        const cJSON *a = cJSON_GetArrayItem(agr, (int)i);
        const cJSON *t = cJSON_GetObjectItemCaseSensitive(a, "top1_retained");
        REQUIRE(cJSON_IsBool(t));
        got[i].overlap = td_json_num(a, "overlap");
        got[i].top1 = cJSON_IsTrue(t);
    }
    td_reply_finish(&r);
    free(path);
    free(body.s);
}

/* The gallery's live numbers for q: *queries -1 when live is null. */
static void live_of(td_http *h, const char *gallery, double *queries, double *overlap,
                    double *top1)
{
    char *path = td_fmt("/v1/galleries/%s", gallery);
    td_reply r;
    CHECK_EQ(td_http_call(h, &r, 200, "GET", path, NULL), 200);
    const cJSON *qm = cJSON_GetObjectItemCaseSensitive(r.json, "query_models"), *e;
    const cJSON *live = NULL;
    size_t entries = 0;
    cJSON_ArrayForEach(e, qm) {
        if (strcmp(td_json_str(e, "model"), "q") == 0) {
            live = cJSON_GetObjectItemCaseSensitive(e, "live");
            entries++;
        }
    }
    CHECK_EQ(entries, 1);
    REQUIRE(live != NULL);
    *queries = cJSON_IsNull(live) ? -1 : td_json_num(live, "queries");
    *overlap = cJSON_IsNull(live) ? NAN : td_json_num(live, "overlap_at_k");
    *top1 = cJSON_IsNull(live) ? NAN : td_json_num(live, "top1_retained");
    td_reply_finish(&r);
    free(path);
}

/* The value of /metrics series `name` for gallery g, model q; NAN when absent. */
static double metric_of(td_http *h, const char *name, const char *gallery)
{
    td_reply r;
    CHECK_EQ(td_http_call(h, &r, 200, "GET", "/metrics", NULL), 200);
    char *key = td_fmt("%s{gallery=\"%s\",model=\"q\",adapter=\"\"} ", name, gallery);
    const char *at = r.body ? strstr(r.body, key) : NULL;
    double v = at ? strtod(at + strlen(key), NULL) : NAN;
    free(key);
    td_reply_finish(&r);
    return v;
}

static void create(td_http *h, const char *gallery, size_t n)
{
    td_reply r;
    char *body = td_fmt("{\"name\":\"%s\",\"model\":\"g\",\"index\":\"Flat\"}", gallery);
    CHECK_EQ(td_http_call(h, &r, 201, "POST", "/v1/galleries", body), 201);
    td_reply_finish(&r);
    free(body);
    char *path = td_fmt("/v1/galleries/%s", gallery);
    CHECK_EQ(td_http_call(h, &r, 200, "PATCH", path, "{\"query_policy\":\"any\"}"), 200);
    td_reply_finish(&r);
    free(path);
    path = td_fmt("/v1/galleries/%s/items", gallery);
    td_text t = {0};
    td_text_append(&t, "{\"model\":\"g\",\"items\":[");
    for (size_t i = 0; i < n; i++) {
        char *v = td_b64_floats(items + i * DIM, DIM);
        td_text_append(&t, "%s{\"id\":\"i%zu\",\"vector_b64\":\"%s\"}", i ? "," : "", i, v);
        free(v);
    }
    td_text_append(&t, "]}");
    CHECK_EQ(td_http_call(h, &r, 200, "POST", path, t.s), 200);
    td_reply_finish(&r);
    free(t.s);
    free(path);
}

/* Each reply's agreement equals the reference's. */
static void test_exact(td_http *h, td_rng *rng, float *qv, float *sv)
{
    agreement got[N_EXACT];
    size_t ties = 0, checked = 0, partial = 0;
    for (size_t i = 0; i < N_EXACT; i++) {
        gauss_vector(rng, sv + i * DIM);
        for (size_t j = 0; j < DIM; j++)
            qv[i * DIM + j] = sv[i * DIM + j] + (float)(NOISE * td_rng_gauss(rng));
    }
    /* ten one by one with "shadow", then batches of arrays and of base64 */
    for (size_t i = 0; i < 10; i++)
        shadowed_search(h, "live", qv + i * DIM, sv + i * DIM, 1, true, false, got + i);
    shadowed_search(h, "live", qv + 10 * DIM, sv + 10 * DIM, 100, false, false, got + 10);
    shadowed_search(h, "live", qv + 110 * DIM, sv + 110 * DIM, N_EXACT - 110, false, true,
                    got + 110);
    for (size_t i = 0; i < N_EXACT; i++) {
        agreement want = ref_agreement(qv + i * DIM, sv + i * DIM);
        if (want.tie) {
            ties++;
            continue;
        }
        checked++;
        partial += want.overlap > 0 && want.overlap < 1;
        CHECK_NEAR(got[i].overlap, want.overlap, 1e-12);
        CHECK_EQ(got[i].top1, want.top1);
    }
    CHECK(ties * 50 < N_EXACT);
    CHECK(partial * 4 > checked);  /* the noise leaves something to measure */
    double queries, overlap, top1;
    live_of(h, "live", &queries, &overlap, &top1);
    CHECK_EQ(queries, N_EXACT);
    double so = 0, st = 0;
    for (size_t i = 0; i < N_EXACT; i++) {
        so += got[i].overlap;
        st += got[i].top1;
    }
    CHECK_NEAR(overlap, so / N_EXACT, 1e-9);
    CHECK_NEAR(top1, st / N_EXACT, 1e-9);
}

/* The rolling means cover the last WINDOW queries; the count all of them. */
static void test_window(td_http *h, td_rng *rng, float *qv, float *sv)
{
    agreement *got = calloc(N_WINDOW_RUN, sizeof *got);
    REQUIRE(got != NULL);
    for (size_t i = 0; i < N_WINDOW_RUN; i++) {
        gauss_vector(rng, sv + i * DIM);
        /* the noise grows along the run, so that the window's mean differs
         * from the mean of every query */
        double noise = NOISE * (0.3 + 2.0 * (double)i / N_WINDOW_RUN);
        for (size_t j = 0; j < DIM; j++)
            qv[i * DIM + j] = sv[i * DIM + j] + (float)(noise * td_rng_gauss(rng));
    }
    for (size_t b = 0; b < N_WINDOW_RUN; b += BATCH) {
        size_t n = b + BATCH <= N_WINDOW_RUN ? BATCH : N_WINDOW_RUN - b;
        shadowed_search(h, "live", qv + b * DIM, sv + b * DIM, n, false, true, got + b);
    }
    double so = 0, st = 0, ro = 0, rt = 0, all_o = 0;
    size_t ties = 0;
    for (size_t i = 0; i < N_WINDOW_RUN; i++) {
        all_o += got[i].overlap;
        if (i < N_WINDOW_RUN - WINDOW)
            continue;
        so += got[i].overlap;
        st += got[i].top1;
        agreement want = ref_agreement(qv + i * DIM, sv + i * DIM);
        ties += want.tie;
        ro += want.overlap;
        rt += want.top1;
    }
    double queries, overlap, top1;
    live_of(h, "live", &queries, &overlap, &top1);
    CHECK_EQ(queries, N_EXACT + N_WINDOW_RUN);
    CHECK_NEAR(overlap, so / WINDOW, 1e-9);
    CHECK_NEAR(top1, st / WINDOW, 1e-9);
    /* the reference's own means, up to what ties can move */
    double slack = (double)ties / WINDOW + 1e-9;
    CHECK_NEAR(overlap, ro / WINDOW, slack);
    CHECK_NEAR(top1, rt / WINDOW, slack);
    CHECK(fabs(overlap - all_o / N_WINDOW_RUN) > 0.01);   /* not the mean of all */
    CHECK_NEAR(metric_of(h, "compatd_live_queries_total", "live"), N_EXACT + N_WINDOW_RUN, 0);
    CHECK_NEAR(metric_of(h, "compatd_live_overlap_at_k", "live"), so / WINDOW, 1e-9);
    CHECK_NEAR(metric_of(h, "compatd_live_top1_retained", "live"), st / WINDOW, 1e-9);
    free(got);
}

/* Every bad request is 400 and changes no number. */
static void test_bad_input(td_http *h)
{
    double q0, o0, t0;
    live_of(h, "live", &q0, &o0, &t0);
    float nan_v[DIM];
    for (size_t j = 0; j < DIM; j++)
        nan_v[j] = j == 3 ? NAN : 0.5f;
    char *nan_b64 = td_b64_floats(nan_v, DIM);
    char *inf_b64 = td_b64_floats((float[DIM]){[0] = INFINITY, [1] = 1}, DIM);
    char *ok_b64 = td_b64_floats(items, DIM);
    char *short_b64 = td_b64_floats(items, DIM - 1);
    struct {
        const char *what, *code;
        char *body;
    } cases[] = {
        {"fewer shadows than queries", "invalid_vector",
         td_fmt("{\"model\":\"q\",\"vectors\":[\"%s\",\"%s\"],\"shadow_vectors\":[\"%s\"]}",
                ok_b64, ok_b64, ok_b64)},
        {"more shadows than queries", "invalid_vector",
         td_fmt("{\"model\":\"q\",\"vector_b64\":\"%s\",\"shadow_vectors\":[\"%s\",\"%s\"]}",
                ok_b64, ok_b64, ok_b64)},
        {"one shadow for two queries", "invalid_vector",
         td_fmt("{\"model\":\"q\",\"vectors\":[\"%s\",\"%s\"],\"shadow\":{\"vector_b64\":\"%s\"}}",
                ok_b64, ok_b64, ok_b64)},
        {"shadow and shadow_vectors", "invalid_vector",
         td_fmt("{\"model\":\"q\",\"vector_b64\":\"%s\",\"shadow\":{\"vector_b64\":\"%s\"},"
                "\"shadow_vectors\":[\"%s\"]}", ok_b64, ok_b64, ok_b64)},
        {"shadow of the wrong dim", "dimension_mismatch",
         td_fmt("{\"model\":\"q\",\"vector_b64\":\"%s\",\"shadow\":{\"vector_b64\":\"%s\"}}",
                ok_b64, short_b64)},
        {"shadow array of the wrong dim", "dimension_mismatch",
         td_fmt("{\"model\":\"q\",\"vector_b64\":\"%s\",\"shadow_vectors\":[[1,2,3]]}", ok_b64)},
        {"NaN shadow", "invalid_vector",
         td_fmt("{\"model\":\"q\",\"vector_b64\":\"%s\",\"shadow\":{\"vector_b64\":\"%s\"}}",
                ok_b64, nan_b64)},
        {"Inf shadow", "invalid_vector",
         td_fmt("{\"model\":\"q\",\"vectors\":[\"%s\"],\"shadow_vectors\":[\"%s\"]}",
                ok_b64, inf_b64)},
        {"shadow not an object", "invalid_vector",
         td_fmt("{\"model\":\"q\",\"vector_b64\":\"%s\",\"shadow\":[1]}", ok_b64)},
        {"shadow_vectors not an array", "invalid_vector",
         td_fmt("{\"model\":\"q\",\"vector_b64\":\"%s\",\"shadow_vectors\":\"%s\"}", ok_b64,
                ok_b64)},
        {"unknown field in shadow", "unknown_field",
         td_fmt("{\"model\":\"q\",\"vector_b64\":\"%s\",\"shadow\":{\"vector_b64\":\"%s\","
                "\"model\":\"g\"}}", ok_b64, ok_b64)},
        {"shadow with neither vector", "invalid_vector",
         td_fmt("{\"model\":\"q\",\"vector_b64\":\"%s\",\"shadow\":{}}", ok_b64)},
        {"query model is the gallery model", "invalid_argument",
         td_fmt("{\"model\":\"g\",\"vector_b64\":\"%s\",\"shadow\":{\"vector_b64\":\"%s\"}}",
                ok_b64, ok_b64)},
        {"gallery model by default", "invalid_argument",
         td_fmt("{\"vector_b64\":\"%s\",\"shadow\":{\"vector_b64\":\"%s\"}}", ok_b64, ok_b64)},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        td_reply r;
        long st = td_http_call(h, &r, 400, "POST", "/v1/galleries/live/search", cases[c].body);
        if (st != 400 || !td_reply_error_code(&r) ||
            strcmp(td_reply_error_code(&r), cases[c].code) != 0)
            fprintf(stderr, "case \"%s\": %ld %s, want 400 %s\n", cases[c].what, st,
                    td_reply_error_code(&r) ? td_reply_error_code(&r) : "-", cases[c].code);
        CHECK_EQ(st, 400);
        CHECK_STREQ(td_reply_error_code(&r), cases[c].code);
        td_reply_finish(&r);
        free(cases[c].body);
    }
    double q1, o1, t1;
    live_of(h, "live", &q1, &o1, &t1);
    CHECK_EQ(q1, q0);
    CHECK_EQ(o1, o0);
    CHECK_EQ(t1, t0);
    CHECK_NEAR(metric_of(h, "compatd_live_queries_total", "live"), q0, 0);
    free(nan_b64);
    free(inf_b64);
    free(ok_b64);
    free(short_b64);
}

#define THREADS 4
#define PER_THREAD 20       /* requests of CONC_BATCH shadowed queries each */
#define CONC_BATCH 10

typedef struct worker {
    td_http *h;
    const float *qv, *sv;   /* THREADS * PER_THREAD * CONC_BATCH rows */
    agreement *got;
} worker;

static void *work(void *arg)
{
    worker *w = arg;
    for (size_t i = 0; i < PER_THREAD; i++) {
        size_t at = i * CONC_BATCH;
        shadowed_search(w->h, "busy", w->qv + at * DIM, w->sv + at * DIM, CONC_BATCH, false,
                        i % 2 == 0, w->got + at);
    }
    return NULL;
}

/* Searches from several connections at once: every query counted once,
 * the means (fewer than WINDOW) those of every reply. */
static void test_concurrent(td_daemon *d, td_http *h, td_rng *rng, float *qv, float *sv)
{
    enum { N = THREADS * PER_THREAD * CONC_BATCH };
    static agreement got[N];
    create(h, "busy", N_ITEMS);
    for (size_t i = 0; i < N; i++) {
        gauss_vector(rng, sv + i * DIM);
        for (size_t j = 0; j < DIM; j++)
            qv[i * DIM + j] = sv[i * DIM + j] + (float)(NOISE * td_rng_gauss(rng));
    }
    worker w[THREADS];
    pthread_t t[THREADS];
    for (size_t i = 0; i < THREADS; i++) {
        size_t at = i * PER_THREAD * CONC_BATCH;
        w[i] = (worker){td_http_create(d), qv + at * DIM, sv + at * DIM, got + at};
        REQUIRE(w[i].h != NULL);
    }
    for (size_t i = 0; i < THREADS; i++)
        REQUIRE(pthread_create(&t[i], NULL, work, &w[i]) == 0);
    for (size_t i = 0; i < THREADS; i++) {
        pthread_join(t[i], NULL);
        td_http_destroy(w[i].h);
    }
    double so = 0, st = 0;
    for (size_t i = 0; i < N; i++) {
        so += got[i].overlap;
        st += got[i].top1;
    }
    double queries, overlap, top1;
    live_of(h, "busy", &queries, &overlap, &top1);
    CHECK_EQ(queries, N);
    CHECK_NEAR(overlap, so / N, 1e-9);
    CHECK_NEAR(top1, st / N, 1e-9);
}

/* A gallery smaller than k: overlap is divided by k.  Its numbers go
 * with it when it is deleted. */
static void test_small_gallery(td_http *h, td_rng *rng)
{
    create(h, "tiny", 4);
    double q, o, t;
    live_of(h, "tiny", &q, &o, &t);
    CHECK_EQ(q, -1);
    float qv[DIM], sv[DIM];
    gauss_vector(rng, sv);
    gauss_vector(rng, qv);
    agreement got;
    shadowed_search(h, "tiny", qv, sv, 1, true, false, &got);
    CHECK_NEAR(got.overlap, 4.0 / K, 1e-12);    /* both find all 4 items */
    CHECK(got.top1);
    live_of(h, "tiny", &q, &o, &t);
    CHECK_EQ(q, 1);
    CHECK_NEAR(o, 0.4, 1e-12);
    td_reply r;
    CHECK_EQ(td_http_call(h, &r, 204, "DELETE", "/v1/galleries/tiny", NULL), 204);
    td_reply_finish(&r);
    CHECK(isnan(metric_of(h, "compatd_live_queries_total", "tiny")));
    create(h, "tiny", 4);
    live_of(h, "tiny", &q, &o, &t);
    CHECK_EQ(q, -1);
}

/*
 * A filtered search's shadow is filtered the same way: with the shadow
 * equal to the query (q has no embeddings in the gallery, so both rank
 * the gallery model's), the two top-k lists are the same, overlap 1,
 * while an unfiltered shadow would share about half of them.
 */
static void test_filtered_shadow(td_http *h, td_rng *rng)
{
    enum { N = 200 };
    td_reply r;
    CHECK_EQ(td_http_call(h, &r, 201, "POST", "/v1/galleries",
                          "{\"name\":\"halves\",\"model\":\"g\",\"index\":\"Flat\"}"), 201);
    td_reply_finish(&r);
    CHECK_EQ(td_http_call(h, &r, 200, "PATCH", "/v1/galleries/halves",
                          "{\"query_policy\":\"any\"}"), 200);
    td_reply_finish(&r);
    td_text t = {0};
    td_text_append(&t, "{\"items\":[");
    for (size_t i = 0; i < N; i++) {
        char *v = td_b64_floats(items + i * DIM, DIM);
        td_text_append(&t, "%s{\"id\":\"h%zu\",\"label\":\"%s\",\"vector_b64\":\"%s\"}",
                       i ? "," : "", i, i % 2 ? "b" : "a", v);
        free(v);
    }
    td_text_append(&t, "]}");
    CHECK_EQ(td_http_call(h, &r, 200, "POST", "/v1/galleries/halves/items", t.s), 200);
    td_reply_finish(&r);
    free(t.s);
    for (int round = 0; round < 5; round++) {
        float v[DIM];
        gauss_vector(rng, v);
        char *b64 = td_b64_floats(v, DIM);
        char *body = td_fmt("{\"model\":\"q\",\"k\":%d,\"vector_b64\":\"%s\","
                            "\"shadow\":{\"vector_b64\":\"%s\"},\"filter\":{\"label\":\"a\"},"
                            "\"include\":[\"label\"]}", K, b64, b64);
        CHECK_EQ(td_http_call(h, &r, 200, "POST", "/v1/galleries/halves/search", body), 200);
        CHECK_EQ(td_json_num(r.json, "agreement.0.overlap"), 1.0);
        CHECK(cJSON_IsTrue(td_json_at(r.json, "agreement.0.top1_retained")));
        const cJSON *hit;
        int n = 0;
        cJSON_ArrayForEach(hit, td_json_at(r.json, "results.0")) {
            CHECK_STREQ(td_json_str(hit, "label"), "a");
            n++;
        }
        CHECK_EQ(n, K);
        td_reply_finish(&r);
        free(body);
        free(b64);
    }
}

int main(void)
{
    td_rng rng = {td_seed(13)};
    td_daemon *d;
    td_http *h;
    const char *args[] = {"--log-level", "warn", NULL};
    REQUIRE(td_daemon_start_client(args, &d, &h));
    for (const char *const *name = (const char *const[]){"g", "q", NULL}; *name; name++) {
        td_reply r;
        char *body = td_fmt("{\"name\":\"%s\",\"dim\":%d,\"metric\":\"cosine\"}", *name, DIM);
        CHECK_EQ(td_http_call(h, &r, 201, "POST", "/v1/models", body), 201);
        td_reply_finish(&r);
        free(body);
    }
    for (size_t i = 0; i < N_ITEMS; i++)
        gauss_vector(&rng, items + i * DIM);
    create(h, "live", N_ITEMS);

    float *qv = malloc(N_WINDOW_RUN * DIM * sizeof *qv);
    float *sv = malloc(N_WINDOW_RUN * DIM * sizeof *sv);
    REQUIRE(qv && sv);
    double q, o, t;
    live_of(h, "live", &q, &o, &t);
    CHECK_EQ(q, -1);
    CHECK(isnan(metric_of(h, "compatd_live_queries_total", "live")));
    test_exact(h, &rng, qv, sv);
    test_bad_input(h);
    test_window(h, &rng, qv, sv);
    test_small_gallery(h, &rng);
    test_filtered_shadow(h, &rng);
    test_concurrent(d, h, &rng, qv, sv);
    free(qv);
    free(sv);

    td_http_destroy(h);
    CHECK_EQ(td_daemon_stop(d), 0);
    td_daemon_destroy(d);
    return check_exit();
}
