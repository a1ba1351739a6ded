/*
 * test_http_search.c - search over HTTP against a naive brute force
 * written here, in double precision.
 *
 * Exact search: for cosine, ip and l2, a Flat gallery of N_FLAT vectors
 * (ingested as base64 batches) answers N_QUERIES queries with the same
 * top-K as the reference: same order, except that items whose reference
 * scores tie may come in either order, and scores within 1e-4 (relative
 * above 1).  The same queries in one "vectors" batch give the same
 * answers; deleted items leave the results and the reference alike.
 *
 * Approximate indexes: HNSW32, IVF256,Flat and IVF256,PQ16 galleries
 * (l2 and cosine; PQ with l2 only, its training is slow) must be exact
 * while the IVF types stage their vectors untrained, reach a recall@10
 * floor after training, and never return a deleted item.  Specs FAISS
 * refuses are 400 at gallery creation.
 *
 * Data are clustered Gaussian vectors, as embeddings are; COMPATD_LONG=1
 * uses N_FLAT = 20,000 (else 5,000).  The trained types always get
 * N_TRAINED vectors, over the 9,984 IVF256 needs to train.
 */
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "check.h"
#include "daemon.h"

#define DIM 32
#define K 10
#define N_QUERIES 50
#define CLUSTERS 64
#define N_FLAT_LONG 20000
#define N_FLAT_SHORT 5000
#define N_STAGED 2000       /* below every training threshold */
#define N_TRAINED 12000     /* above IVF256's 256 * 39 */
#define BATCH 1000          /* items per upsert request */
#define N_DELETE 100        /* items deleted from each gallery */

/* The vectors of one gallery as the test knows them. */
typedef struct dataset {
    td_metric metric;
    size_t n;           /* vectors made; ids "v<i>" */
    size_t sent;        /* of which the first `sent` were upserted */
    float *x;           /* n * DIM */
    bool *live;         /* sent and not deleted */
    const float *q;     /* N_QUERIES * DIM queries */
} dataset;

/* One query's reference answer. */
typedef struct ref_hits {
    size_t n;
    size_t idx[K];
    double score[K];
} ref_hits;

/* ---- data ------------------------------------------------------------ */

static float *make_centres(td_rng *rng)
{
    float *c = malloc(CLUSTERS * DIM * sizeof *c);
    REQUIRE(c != NULL);
    for (size_t i = 0; i < CLUSTERS * DIM; i++)
        c[i] = (float)td_rng_gauss(rng);
    return c;
}

/* n points around random centres. */
static float *make_points(td_rng *rng, const float *centres, size_t n)
{
    float *x = malloc(n * DIM * sizeof *x);
    REQUIRE(x != NULL);
    for (size_t i = 0; i < n; i++) {
        const float *c = centres + (td_rng_next(rng) % CLUSTERS) * DIM;
        for (size_t d = 0; d < DIM; d++)
            x[i * DIM + d] = c[d] + 0.35f * (float)td_rng_gauss(rng);
    }
    return x;
}

/* ---- the reference --------------------------------------------------- */

/* The K best live items for q, best first, by a plain scan (the
 * harness's td_ref_score, in double; cosine normalises both). */
static void ref_search(const dataset *ds, const float *q, ref_hits *out)
{
    out->n = 0;
    for (size_t i = 0; i < ds->sent; i++)
        if (ds->live[i])
            td_ref_topk_offer(ds->metric, K, out->idx, out->score, &out->n, i,
                              td_ref_score(ds->metric, ds->x + i * DIM, q, DIM));
}

/* The item index of an id "v<i>", or SIZE_MAX. */
static size_t id_index(const char *id, const dataset *ds)
{
    if (!id || id[0] != 'v')
        return SIZE_MAX;
    char *end;
    unsigned long i = strtoul(id + 1, &end, 10);
    return *end || i >= ds->n ? SIZE_MAX : (size_t)i;
}

/*
 * Compares one result list with the reference: as many hits, each a live
 * item, no repeats, the item at rank r scoring (by the reference) what
 * the reference's rank r scores up to a tie, and the reported score
 * within 1e-4.  Returns the number of problems, printing the first.
 */
static int compare_exact(const cJSON *hits, const dataset *ds, const float *q,
                         const ref_hits *ref, const char *what)
{
    int bad = 0;
    size_t n = (size_t)cJSON_GetArraySize(hits);
    if (n != ref->n) {
        fprintf(stderr, "%s: %zu hits, reference has %zu\n", what, n, ref->n);
        return 1;
    }
    for (size_t r = 0; r < n; r++) {
        const cJSON *hit = cJSON_GetArrayItem(hits, (int)r);
        size_t i = id_index(td_json_str(hit, "id"), ds);
        double got = td_json_num(hit, "score");
        if (i == SIZE_MAX || !ds->live[i]) {
            if (!bad++)
                fprintf(stderr, "%s: rank %zu is %s, not a live item\n", what, r,
                        td_json_str(hit, "id") ? td_json_str(hit, "id") : "(none)");
            continue;
        }
        for (size_t p = 0; p < r; p++)
            if (id_index(td_json_str(cJSON_GetArrayItem(hits, (int)p), "id"), ds) == i &&
                !bad++)
                fprintf(stderr, "%s: v%zu twice\n", what, i);
        double want = td_ref_score(ds->metric, ds->x + i * DIM, q, DIM);
        if (fabs(want - ref->score[r]) > td_tie_eps(ref->score[r])) {
            if (!bad++)
                fprintf(stderr, "%s: rank %zu is v%zu (reference score %.9g), reference "
                        "has v%zu (%.9g)\n", what, r, i, want, ref->idx[r], ref->score[r]);
        } else if (!(fabs(got - want) <= 1e-4 * fmax(1, fabs(want)))) {
            if (!bad++)
                fprintf(stderr, "%s: rank %zu v%zu score %.9g, reference %.9g\n", what, r,
                        i, got, want);
        }
    }
    return bad;
}

/* Share of the reference's top K found in hits. */
static double recall(const cJSON *hits, const dataset *ds, const ref_hits *ref)
{
    size_t found = 0;
    const cJSON *hit;
    cJSON_ArrayForEach(hit, hits) {
        size_t i = id_index(td_json_str(hit, "id"), ds);
        for (size_t r = 0; r < ref->n; r++)
            found += ref->idx[r] == i;
    }
    return ref->n ? (double)found / (double)ref->n : 1;
}

/* True when any hit is an item that is not live. */
static bool has_dead(const cJSON *hits, const dataset *ds)
{
    const cJSON *hit;
    cJSON_ArrayForEach(hit, hits) {
        size_t i = id_index(td_json_str(hit, "id"), ds);
        if (i == SIZE_MAX || !ds->live[i])
            return true;
    }
    return false;
}

/* ---- HTTP ------------------------------------------------------------ */

typedef td_text text;

static void post(td_http *h, td_reply *r, long want, const char *path, const char *body)
{
    td_http_json(h, "POST", path, body, r);
    if (r->status != want)
        fprintf(stderr, "POST %s: want %ld, got %ld: %.400s%s\n", path, want, r->status,
                r->status ? r->body : r->error, "");
}

/* Upserts vectors [from, to) of ds into gallery as base64 batches. */
static void upsert(td_http *h, const char *gallery, dataset *ds, size_t from, size_t to)
{
    char path[128];
    snprintf(path, sizeof path, "/v1/galleries/%s/items", gallery);
    for (size_t b = from; b < to; b += BATCH) {
        size_t end = b + BATCH < to ? b + BATCH : to;
        text body = {0};
        td_text_append(&body, "{\"items\":[");
        for (size_t i = b; i < end; i++) {
            char *v = td_b64_floats(ds->x + i * DIM, DIM);
            REQUIRE(v != NULL);
            td_text_append(&body, "%s{\"id\":\"v%zu\",\"vector_b64\":\"%s\"}", i > b ? "," : "", i, v);
            free(v);
        }
        td_text_append(&body, "]}");
        td_reply r;
        post(h, &r, 200, path, body.s);
        CHECK_EQ(r.status, 200);
        CHECK_EQ(td_json_num(r.json, "upserted"), end - b);
        td_reply_finish(&r);
        free(body.s);
    }
    for (size_t i = from; i < to; i++)
        ds->live[i] = true;
    if (to > ds->sent)
        ds->sent = to;
}

/* One query, alternately as a JSON array and as base64. */
static void search_one(td_http *h, const char *gallery, const float *q, size_t qi,
                       td_reply *r)
{
    char path[128];
    text body = {0};
    snprintf(path, sizeof path, "/v1/galleries/%s/search", gallery);
    if (qi % 2) {
        char *v = td_b64_floats(q, DIM);
        REQUIRE(v != NULL);
        td_text_append(&body, "{\"k\":%d,\"vector_b64\":\"%s\"}", K, v);
        free(v);
    } else {
        td_text_append(&body, "{\"k\":%d,\"vector\":[", K);
        for (size_t d = 0; d < DIM; d++)
            td_text_append(&body, "%s%.9g", d ? "," : "", q[d]);
        td_text_append(&body, "]}");
    }
    post(h, r, 200, path, body.s);
    free(body.s);
}

/* All queries in one "vectors" request, as base64 strings. */
static void search_batch(td_http *h, const char *gallery, const float *qs, size_t nq,
                         td_reply *r)
{
    char path[128];
    text body = {0};
    snprintf(path, sizeof path, "/v1/galleries/%s/search", gallery);
    td_text_append(&body, "{\"k\":%d,\"vectors\":", K);
    td_text_append_b64_rows(&body, qs, nq, DIM);
    td_text_append(&body, "}");
    post(h, r, 200, path, body.s);
    free(body.s);
}

static void create_model(td_http *h, const char *name, int dim, const char *metric_name)
{
    td_reply r;
    td_http_jsonf(h, &r, "POST", "/v1/models",
                  "{\"name\":\"%s\",\"dim\":%d,\"metric\":\"%s\"}", name, dim, metric_name);
    CHECK_EQ(r.status, 201);
    td_reply_finish(&r);
}

static long create_gallery(td_http *h, const char *name, const char *model,
                           const char *spec, td_reply *r)
{
    return td_http_jsonf(h, r, "POST", "/v1/galleries",
                         "{\"name\":\"%s\",\"model\":\"%s\",\"index\":\"%s\"}", name, model,
                         spec);
}

/* Deletes the top hit of the first queries and then random items. */
static size_t delete_some(td_http *h, const char *gallery, dataset *ds, td_rng *rng)
{
    size_t deleted = 0;
    for (size_t t = 0; deleted < N_DELETE && t < 100 * N_DELETE; t++) {
        size_t i;
        if (t < N_QUERIES / 2) {
            ref_hits ref;
            ref_search(ds, ds->q + t * DIM, &ref);
            if (ref.n == 0)
                continue;
            i = ref.idx[0];
        } else {
            i = (size_t)(td_rng_next(rng) % ds->sent);
        }
        if (!ds->live[i])
            continue;
        char path[128];
        td_reply r;
        snprintf(path, sizeof path, "/v1/galleries/%s/items/v%zu", gallery, i);
        td_http_json(h, "DELETE", path, NULL, &r);
        CHECK_EQ(r.status, 204);
        td_reply_finish(&r);
        ds->live[i] = false;
        deleted++;
    }
    return deleted;
}

static size_t live_count(const dataset *ds)
{
    size_t n = 0;
    for (size_t i = 0; i < ds->sent; i++)
        n += ds->live[i];
    return n;
}

/* ---- exact search ---------------------------------------------------- */

/* Every query, one by one, against the reference; returns problems. */
static int check_all_exact(td_http *h, const char *gallery, const dataset *ds,
                           const char *phase)
{
    int bad = 0;
    for (size_t qi = 0; qi < N_QUERIES; qi++) {
        td_reply r;
        const float *q = ds->q + qi * DIM;
        ref_hits ref;
        char what[160];
        snprintf(what, sizeof what, "%s %s query %zu", gallery, phase, qi);
        search_one(h, gallery, q, qi, &r);
        CHECK_EQ(r.status, 200);
        ref_search(ds, q, &ref);
        bad += compare_exact(td_json_at(r.json, "results.0"), ds, q, &ref, what);
        td_reply_finish(&r);
    }
    return bad;
}

static void test_flat(td_http *h, td_metric m, const float *centres, const float *queries,
                      size_t n, td_rng *rng)
{
    char gallery[32], model[32];
    snprintf(gallery, sizeof gallery, "flat-%s", td_metric_names[m]);
    snprintf(model, sizeof model, "m-%s", td_metric_names[m]);
    dataset ds = {.metric = m, .n = n, .q = queries};
    ds.x = make_points(rng, centres, n);
    ds.live = calloc(n, sizeof *ds.live);
    REQUIRE(ds.live != NULL);
    double t0 = td_now();

    td_reply r;
    CHECK_EQ(create_gallery(h, gallery, model, "Flat", &r), 201);
    td_reply_finish(&r);
    upsert(h, gallery, &ds, 0, n);
    CHECK_EQ(td_gallery_count(h, gallery), n);
    double t1 = td_now();

    CHECK_EQ(check_all_exact(h, gallery, &ds, "exact"), 0);

    /* The batch form: the same answers, and each one exact. */
    search_batch(h, gallery, queries, N_QUERIES, &r);
    CHECK_EQ(r.status, 200);
    CHECK_EQ(cJSON_GetArraySize(td_json_at(r.json, "results")), N_QUERIES);
    CHECK_EQ(td_json_num(r.json, "searched.0.items"), n);
    int bad = 0;
    for (size_t qi = 0; qi < N_QUERIES && r.status == 200; qi++) {
        const float *q = queries + qi * DIM;
        ref_hits ref;
        char what[160];
        snprintf(what, sizeof what, "%s batch query %zu", gallery, qi);
        ref_search(&ds, q, &ref);
        const cJSON *batch_hits = cJSON_GetArrayItem(td_json_at(r.json, "results"), (int)qi);
        bad += compare_exact(batch_hits, &ds, q, &ref, what);
        td_reply one;
        search_one(h, gallery, q, qi, &one);
        const cJSON *single = td_json_at(one.json, "results.0");
        CHECK_EQ(cJSON_GetArraySize(single), cJSON_GetArraySize(batch_hits));
        for (int p = 0; p < cJSON_GetArraySize(single); p++) {
            const cJSON *a = cJSON_GetArrayItem(single, p), *b = cJSON_GetArrayItem(batch_hits, p);
            double sa = td_json_num(a, "score"), sb = td_json_num(b, "score");
            if (strcmp(td_json_str(a, "id"), td_json_str(b, "id")) != 0 &&
                fabs(sa - sb) > td_tie_eps(sa)) {
                if (!bad++)
                    fprintf(stderr, "%s: rank %d single %s, batch %s\n", what, p,
                            td_json_str(a, "id"), td_json_str(b, "id"));
            }
            CHECK_NEAR(sa, sb, 1e-4 * fmax(1, fabs(sa)));
        }
        td_reply_finish(&one);
    }
    CHECK_EQ(bad, 0);
    td_reply_finish(&r);

    /* Deleted items leave the results; the rest is still exact. */
    size_t deleted = delete_some(h, gallery, &ds, rng);
    CHECK_EQ(td_gallery_count(h, gallery), n - deleted);
    CHECK_EQ(check_all_exact(h, gallery, &ds, "after deletes"), 0);

    fprintf(stderr, "flat %-6s %zu vectors: ingest %.1f s, %d queries x2 + batch + deletes %.1f s\n",
            td_metric_names[m], n, t1 - t0, N_QUERIES, td_now() - t1);
    free(ds.x);
    free(ds.live);
}

/* ---- approximate indexes --------------------------------------------- */

typedef struct spec_case {
    const char *spec;
    bool staged;        /* exact until trained (IVF types) */
    double min_recall;  /* recall@10 after training */
} spec_case;

static const spec_case spec_cases[] = {
    {"HNSW32", false, 0.9},
    {"IVF256,Flat", true, 0.9},
    {"IVF256,PQ16", true, 0.5},
};

/* Mean recall@10 of the queries; checks no deleted item shows up. */
static double mean_recall(td_http *h, const char *gallery, const dataset *ds)
{
    double sum = 0;
    for (size_t qi = 0; qi < N_QUERIES; qi++) {
        td_reply r;
        ref_hits ref;
        search_one(h, gallery, ds->q + qi * DIM, qi, &r);
        CHECK_EQ(r.status, 200);
        const cJSON *hits = td_json_at(r.json, "results.0");
        ref_search(ds, ds->q + qi * DIM, &ref);
        CHECK_EQ(cJSON_GetArraySize(hits), ref.n);
        CHECK(!has_dead(hits, ds));
        sum += recall(hits, ds, &ref);
        td_reply_finish(&r);
    }
    return sum / N_QUERIES;
}

static void test_spec(td_http *h, const spec_case *c, td_metric m, const float *centres,
                      const float *queries, td_rng *rng)
{
    char gallery[64], model[32];
    snprintf(gallery, sizeof gallery, "%s-%s", c->spec, td_metric_names[m]);
    for (char *p = gallery; *p; p++)
        if (*p == ',')
            *p = '_';
    snprintf(model, sizeof model, "m-%s", td_metric_names[m]);
    dataset ds = {.metric = m, .n = N_TRAINED, .q = queries};
    ds.x = make_points(rng, centres, N_TRAINED);
    ds.live = calloc(N_TRAINED, sizeof *ds.live);
    REQUIRE(ds.live != NULL);
    double t0 = td_now();

    td_reply r;
    CHECK_EQ(create_gallery(h, gallery, model, c->spec, &r), 201);
    CHECK_STREQ(td_json_str(r.json, "index"), c->spec);
    td_reply_finish(&r);

    /* Empty: no hits, no error. */
    search_one(h, gallery, queries, 0, &r);
    CHECK_EQ(r.status, 200);
    CHECK_EQ(cJSON_GetArraySize(td_json_at(r.json, "results.0")), 0);
    td_reply_finish(&r);

    upsert(h, gallery, &ds, 0, N_STAGED);
    double staged_recall = mean_recall(h, gallery, &ds);
    if (c->staged)
        CHECK_EQ(check_all_exact(h, gallery, &ds, "staged"), 0);
    else
        CHECK(staged_recall >= c->min_recall);

    upsert(h, gallery, &ds, N_STAGED, N_TRAINED);
    CHECK_EQ(td_gallery_count(h, gallery), N_TRAINED);
    double trained_recall = mean_recall(h, gallery, &ds);
    CHECK(trained_recall >= c->min_recall);

    size_t deleted = delete_some(h, gallery, &ds, rng);
    CHECK_EQ(td_gallery_count(h, gallery), live_count(&ds));
    double after_recall = mean_recall(h, gallery, &ds);
    CHECK(after_recall >= c->min_recall);

    fprintf(stderr, "%-12s %-6s recall@10 staged %.3f, trained %.3f, after %zu deletes %.3f "
            "(floor %.2f) in %.1f s\n", c->spec, td_metric_names[m], staged_recall,
            trained_recall, deleted, after_recall, c->min_recall, td_now() - t0);
    free(ds.x);
    free(ds.live);
}

/* Specs FAISS refuses for the model's dim are refused at creation. */
static void test_bad_specs(td_http *h)
{
    static const struct {
        const char *model, *spec;
    } bad[] = {
        {"m-100", "IVF256,PQ16"},   /* 100 is not a multiple of 16 */
        {"m-l2", "Bogus"},
        {"m-l2", "PQ7"},            /* 32 is not a multiple of 7 */
    };
    create_model(h, "m-100", 100, "l2");
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        td_reply r;
        create_gallery(h, "refused", bad[i].model, bad[i].spec, &r);
        if (r.status != 400)
            fprintf(stderr, "spec %s on %s: got %ld: %s\n", bad[i].spec, bad[i].model,
                    r.status, r.body);
        CHECK_EQ(r.status, 400);
        CHECK_STREQ(td_reply_error_code(&r), "invalid_index");
        td_reply_finish(&r);
        td_http_json(h, "GET", "/v1/galleries/refused", NULL, &r);
        CHECK_EQ(r.status, 404);
        td_reply_finish(&r);
    }
    /* The same spec where the dim suits it is fine. */
    td_reply r;
    CHECK_EQ(create_gallery(h, "accepted", "m-l2", "PQ8", &r), 201);
    td_reply_finish(&r);
}

int main(void)
{
    td_rng rng = {td_seed(42)};
    size_t n_flat = td_long_tests() ? N_FLAT_LONG : N_FLAT_SHORT;
    td_daemon *d;
    td_http *h;
    const char *args[] = {"--log-level", "warn", NULL};
    REQUIRE(td_daemon_start_client(args, &d, &h));

    float *centres = make_centres(&rng);
    float *queries = make_points(&rng, centres, N_QUERIES);
    for (int m = TD_METRIC_COSINE; m <= TD_METRIC_L2; m++) {
        char model[32];
        snprintf(model, sizeof model, "m-%s", td_metric_names[m]);
        create_model(h, model, DIM, td_metric_names[m]);
    }

    for (int m = TD_METRIC_COSINE; m <= TD_METRIC_L2; m++)
        test_flat(h, (td_metric)m, centres, queries, n_flat, &rng);
    /* Training PQ is the slow part (~25 s, 60 s under ASan on two cores):
     * it runs for l2 only, the IVF path is the same for cosine. */
    for (size_t i = 0; i < sizeof spec_cases / sizeof spec_cases[0]; i++) {
        test_spec(h, &spec_cases[i], TD_METRIC_L2, centres, queries, &rng);
        if (!strstr(spec_cases[i].spec, "PQ"))
            test_spec(h, &spec_cases[i], TD_METRIC_COSINE, centres, queries, &rng);
    }
    test_bad_specs(h);

    free(queries);
    free(centres);
    td_http_destroy(h);
    CHECK_EQ(td_daemon_stop(d), 0);
    td_daemon_destroy(d);
    return check_exit();
}
