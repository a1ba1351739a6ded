/*
 * test_http_adapter_search.c - serving through an adapter over HTTP
 * (SPEC.md §3.7): search with "adapter", hot refresh through one, a
 * gallery's default routes (PATCH /v1/galleries/{g} "adapters"), the gate
 * on the (query model, adapter) pair, and DELETE of a routed adapter,
 * against the real daemon.
 *
 * Synthetic data: each item has a latent z (8 floats); model a (dim 8,
 * cosine, the galleries' model) embeds it as z, model c (dim 12, cosine)
 * as z M + noise.  The adapter c2a (affine, so that the bias is used) is
 * fitted from inline (c, a) pairs; its weights, read back with
 * ?weights=true, feed tests/adapter_search_ref.py, which maps the queries
 * and ranks every item by brute force in numpy.  Every search result is
 * compared with that reference (scores to 1e-4, ranks through the scores,
 * so that ties may come in either order).  Also: three spaces through c2b
 * (b embeddings for some items), a query model of another metric (d, l2)
 * whose raw part is left out, the verified gate read from evaluation rows
 * edited in the database, routes set, refused, kept over kill -9 and
 * removed, and a routed adapter's delete refused.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "daemon.h"

#define N 80            /* items of every gallery of model a */
#define N_OWN 25        /* items 0..N_OWN-1 of gallery hot also have c */
#define N_PAIRS 60      /* (c, a) pairs the adapters are fitted on */
#define NQ 6            /* queries per search */
#define K 10
#define DA 8
#define DC 12

static const char *ref_script;
static float va[N][DA], vb[N][DA], vc[N][DC], vq[NQ][DC];

/* Fills va, vc (c = a M + noise), vb (a R: b is a rotated-ish a) and vq
 * (c embeddings of latents near items 0, 13, 26, ...: some near items
 * with a c embedding, some not). */
static void make_data(void)
{
    td_rng rng = {td_seed(31)};
    float m[DA][DC], rot[DA][DA];
    for (int i = 0; i < DA; i++)
        for (int j = 0; j < DA; j++)
            rot[i][j] = (float)(i == j) + (float)(0.3 * td_rng_gauss(&rng));
    for (int i = 0; i < DA; i++)
        for (int j = 0; j < DC; j++)
            m[i][j] = (float)td_rng_gauss(&rng);
    for (int n = 0; n < N + NQ; n++) {
        float z[DA];
        for (int i = 0; i < DA; i++)
            z[i] = n < N ? (float)td_rng_gauss(&rng)
                         : va[(n - N) * 13][i] + (float)(0.3 * td_rng_gauss(&rng));
        float *c = n < N ? vc[n] : vq[n - N];
        for (int j = 0; j < DC; j++) {
            double s = 0.05 * td_rng_gauss(&rng);
            for (int i = 0; i < DA; i++)
                s += z[i] * m[i][j];
            c[j] = (float)s;
        }
        if (n < N)
            memcpy(va[n], z, sizeof z);
        for (int j = 0; n < N && j < DA; j++) {
            double s = 0;
            for (int i = 0; i < DA; i++)
                s += z[i] * rot[i][j];
            vb[n][j] = (float)s;
        }
    }
}

/* The vectors of model a, b, c or d (c's vectors, under l2), and their
 * dim. */
static const float *vectors_of(const char *model, int *dim)
{
    *dim = model[0] == 'c' || model[0] == 'd' ? DC : DA;
    return model[0] == 'a' ? va[0] : model[0] == 'b' ? vb[0] : vc[0];
}

/* v (n floats) as a JSON array, exact for float32. */
static void append_vector(td_text *t, const float *v, int n)
{
    td_text_append(t, "[");
    for (int i = 0; i < n; i++)
        td_text_append(t, "%s%.9g", i ? "," : "", v[i]);
    td_text_append(t, "]");
}

static void call(td_http *h, long want, const char *method, const char *path,
                 const char *body)
{
    td_reply r;
    CHECK_EQ(td_http_call(h, &r, want, method, path, body), want);
    td_reply_finish(&r);
}

/* Writes items first..last-1 of model (a, b, c or d) into gallery g. */
static void put_items(td_http *h, const char *g, const char *model, int first, int last)
{
    int dim;
    const float *v = vectors_of(model, &dim);
    td_text t = {0};
    td_text_append(&t, "{\"model\":\"%s\",\"items\":[", model);
    for (int n = first; n < last; n++) {
        td_text_append(&t, "%s{\"id\":\"i%d\",\"label\":\"l%d\",\"vector\":", n > first ? "," : "",
                       n, n % 7);
        append_vector(&t, v + (size_t)n * dim, dim);
        td_text_append(&t, "}");
    }
    td_text_append(&t, "]}");
    char *path = td_fmt("/v1/galleries/%s/items", g);
    call(h, 200, "POST", path, t.s);
    free(path);
    free(t.s);
}

/* The pairs body of adapter name from `from` (c or d) to `to` (a or b),
 * kind kind. */
static char *adapter_body(const char *name, const char *from, const char *to, const char *kind)
{
    int dim;
    const float *v = vectors_of(to, &dim);
    td_text t = {0};
    td_text_append(&t, "{\"name\":\"%s\",\"from\":\"%s\",\"to\":\"%s\",\"kind\":\"%s\","
                   "\"pairs\":[", name, from, to, kind);
    for (int n = 0; n < N_PAIRS; n++) {
        td_text_append(&t, "%s{\"from\":", n ? "," : "");
        append_vector(&t, vc[n], DC);
        td_text_append(&t, ",\"to\":");
        append_vector(&t, v + (size_t)n * dim, dim);
        td_text_append(&t, "}");
    }
    td_text_append(&t, "]}");
    return t.s;
}

/*
 * Models a, b (dim 8) and c (dim 12), all cosine; galleries plain (a,
 * every item's a embedding), hot (a, the same plus c embeddings of items
 * 0..N_OWN-1), mixed (hot's, plus b embeddings of items N_OWN..2 N_OWN-1)
 * and other (b, three items); adapters c2a (affine) and c2b (linear),
 * both from c.
 */
static void build(td_http *h)
{
    static const char *const setup[][2] = {
        {"/v1/models", "{\"name\":\"a\",\"dim\":8,\"metric\":\"cosine\"}"},
        {"/v1/models", "{\"name\":\"b\",\"dim\":8,\"metric\":\"cosine\"}"},
        {"/v1/models", "{\"name\":\"c\",\"dim\":12,\"metric\":\"cosine\"}"},
        {"/v1/galleries", "{\"name\":\"plain\",\"model\":\"a\"}"},
        {"/v1/galleries", "{\"name\":\"hot\",\"model\":\"a\"}"},
        {"/v1/galleries", "{\"name\":\"other\",\"model\":\"b\"}"},
        {"/v1/galleries", "{\"name\":\"mixed\",\"model\":\"a\"}"},
    };
    for (size_t i = 0; i < sizeof setup / sizeof setup[0]; i++)
        call(h, 201, "POST", setup[i][0], setup[i][1]);
    put_items(h, "plain", "a", 0, N);
    put_items(h, "hot", "a", 0, N);
    put_items(h, "hot", "c", 0, N_OWN);
    put_items(h, "mixed", "a", 0, N);
    put_items(h, "mixed", "c", 0, N_OWN);
    put_items(h, "mixed", "b", N_OWN, 2 * N_OWN);
    call(h, 200, "POST", "/v1/galleries/other/items",
         "{\"items\":[{\"id\":\"x\",\"vector\":[1,0,0,0,0,0,0,0]},"
         "{\"id\":\"y\",\"vector\":[0,1,0,0,0,0,0,0]},{\"id\":\"z\",\"vector\":[0,0,1,0,0,0,0,0]}]}");
    char *body = adapter_body("c2a", "c", "a", "affine");
    call(h, 201, "POST", "/v1/adapters", body);
    free(body);
    body = adapter_body("c2b", "c", "b", "linear");
    call(h, 201, "POST", "/v1/adapters", body);
    free(body);
}

/* The reference: every item's score and the K best per query. */
typedef struct reference {
    double scores[NQ][N];
    double top[NQ][K];
} reference;

/*
 * The reference for a search through adapter (weights read back from the
 * daemon) on a gallery where items 0..n_own-1 have a c embedding and the
 * others are searched by their to_space vector (row i: item i's vector in
 * the space its mapped query meets).
 */
static void reference_of(td_http *h, const char *adapter, int n_own,
                         const float (*to_space)[DA], bool from_cosine, reference *ref)
{
    td_reply r;
    char *path = td_fmt("/v1/adapters/%s?weights=true", adapter);
    CHECK_EQ(td_http_call(h, &r, 200, "GET", path, NULL), 200);
    free(path);
    const cJSON *jw = td_json_at(r.json, "weights"), *jb = td_json_at(r.json, "bias");
    bool has_bias = !cJSON_IsNull(jb);
    REQUIRE(cJSON_GetArraySize(jw) == DC && (!has_bias || cJSON_GetArraySize(jb) == DA));
    float w[DC][DA], bias[DA] = {0};
    for (int i = 0; i < DC; i++) {
        const cJSON *row = cJSON_GetArrayItem(jw, i);
        REQUIRE(cJSON_GetArraySize(row) == DA);
        for (int j = 0; j < DA; j++)
            w[i][j] = (float)cJSON_GetArrayItem(row, j)->valuedouble;
    }
    for (int j = 0; has_bias && j < DA; j++)
        bias[j] = (float)cJSON_GetArrayItem(jb, j)->valuedouble;
    td_reply_finish(&r);

    char dir[] = "/tmp/test_http_adapter_search.XXXXXX", cmd[1024];
    REQUIRE(mkdtemp(dir));
    unsigned char own[N];
    for (int n = 0; n < N; n++)
        own[n] = n < n_own;
    REQUIRE(td_write_file(dir, "gallery.f32", to_space, (size_t)N * DA * sizeof(float)) &&
            td_write_file(dir, "queries.f32", vq, sizeof vq) &&
            td_write_file(dir, "w.f32", w, sizeof w) &&
            td_write_file(dir, "bias.f32", bias, sizeof bias) &&
            td_write_file(dir, "own.f32", vc, sizeof vc) &&
            td_write_file(dir, "own.u8", own, sizeof own));
    snprintf(cmd, sizeof cmd, "/usr/bin/python3 '%s' '%s' %d %d %d %d %d %d %d", ref_script,
             dir, N, NQ, K, DC, DA, has_bias, from_cosine);
    REQUIRE(system(cmd) == 0);
    REQUIRE(td_read_file(dir, "scores.f64", ref->scores, sizeof ref->scores) &&
            td_read_file(dir, "top.f64", ref->top, sizeof ref->top));
    static const char *const files[] = {"gallery.f32", "queries.f32", "w.f32", "bias.f32",
                                        "own.f32", "own.u8"};
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        snprintf(cmd, sizeof cmd, "%s/%s", dir, files[i]);
        unlink(cmd);
    }
    REQUIRE(rmdir(dir) == 0);
}

/* A search body of the NQ queries as vectors of model (c or d), through
 * adapter (NULL: none named). */
static char *search_body_as(const char *model, const char *adapter)
{
    td_text t = {0};
    td_text_append(&t, "{\"model\":\"%s\",\"k\":%d,", model, K);
    if (adapter)
        td_text_append(&t, "\"adapter\":\"%s\",", adapter);
    td_text_append(&t, "\"vectors\":[");
    for (int q = 0; q < NQ; q++) {
        td_text_append(&t, q ? "," : "");
        append_vector(&t, vq[q], DC);
    }
    td_text_append(&t, "]}");
    return t.s;
}

/* search_body_as of model c. */
static char *search_body(const char *adapter)
{
    return search_body_as("c", adapter);
}

/* Checks a search reply's results against ref: K hits per query, each
 * scored as the reference scores its item, the i-th as the i-th best. */
static void check_results(const cJSON *root, const reference *ref)
{
    const cJSON *results = td_json_at(root, "results");
    CHECK_EQ(cJSON_GetArraySize(results), NQ);
    double worst = 0;
    for (int q = 0; q < NQ && q < cJSON_GetArraySize(results); q++) {
        const cJSON *row = cJSON_GetArrayItem(results, q);
        CHECK_EQ(cJSON_GetArraySize(row), K);
        bool seen[N] = {false};
        for (int j = 0; j < K && j < cJSON_GetArraySize(row); j++) {
            const cJSON *hit = cJSON_GetArrayItem(row, j);
            const char *id = td_json_str(hit, "id");
            int item = -1;
            REQUIRE(id && sscanf(id, "i%d", &item) == 1 && item >= 0 && item < N);
            CHECK(!seen[item]);
            seen[item] = true;
            double s = td_json_num(hit, "score");
            worst = fmax(worst, fabs(s - ref->scores[q][item]));
            worst = fmax(worst, fabs(s - ref->top[q][j]));
        }
    }
    if (worst > 1e-4)
        fprintf(stderr, "search differs from the reference by %g\n", worst);
    CHECK(worst <= 1e-4);
}

/* Checks root's "searched": n entries of (model, items, adapter or NULL). */
static void check_searched(const cJSON *root, int n, const char *const *models,
                           const int *items, const char *const *adapters)
{
    const cJSON *s = td_json_at(root, "searched");
    CHECK_EQ(cJSON_GetArraySize(s), n);
    for (int i = 0; i < n && i < cJSON_GetArraySize(s); i++) {
        const cJSON *e = cJSON_GetArrayItem(s, i);
        CHECK_STREQ(td_json_str(e, "model"), models[i]);
        CHECK_EQ((int)td_json_num(e, "items"), items[i]);
        const char *ad = td_json_str(e, "adapter");
        if (adapters[i])
            CHECK(ad && strcmp(ad, adapters[i]) == 0);
        else
            CHECK(ad == NULL);
    }
}

/* What a refused request must leave as it was: the galleries (with their
 * policy and routes) and the adapters. */
static char *state(td_http *h)
{
    td_text t = {0};
    static const char *const paths[] = {"/v1/galleries/plain", "/v1/galleries/hot",
                                        "/v1/galleries/other", "/v1/adapters"};
    for (size_t i = 0; i < sizeof paths / sizeof paths[0]; i++) {
        td_reply r;
        CHECK_EQ(td_http_call(h, &r, 200, "GET", paths[i], NULL), 200);
        td_text_append(&t, "%s\n", r.body);
        td_reply_finish(&r);
    }
    return t.s;
}

/* Searches through c2a on plain and hot; returns the searches made. */
static int test_search(td_http *h, const reference *plain_ref, const reference *hot_ref)
{
    char *through = search_body("c2a");
    td_reply r;

    /* Under verified (the default) the pair has no evaluation: refused. */
    char *before = state(h);
    CHECK_EQ(td_http_call(h, &r, 409, "POST", "/v1/galleries/plain/search", through), 409);
    CHECK_STREQ(td_reply_error_code(&r), "model_not_verified");
    CHECK(strstr(td_reply_error_message(&r), "adapter c2a") != NULL);
    td_reply_finish(&r);
    char *after = state(h);
    CHECK_STREQ(after, before);
    free(before);
    free(after);

    /* declared: c2a maps into the gallery model itself. */
    call(h, 200, "PATCH", "/v1/galleries/plain", "{\"query_policy\":\"declared\"}");
    call(h, 200, "PATCH", "/v1/galleries/hot", "{\"query_policy\":\"declared\"}");
    CHECK_EQ(td_http_call(h, &r, 200, "POST", "/v1/galleries/plain/search", through), 200);
    CHECK_STREQ(td_json_str(r.json, "model"), "c");
    CHECK_STREQ(td_json_str(r.json, "adapter"), "c2a");
    check_results(r.json, plain_ref);
    check_searched(r.json, 1, (const char *[]){"a"}, (const int[]){N}, (const char *[]){"c2a"});
    td_reply_finish(&r);

    /* Hot refresh: items with a c embedding raw, the rest mapped. */
    CHECK_EQ(td_http_call(h, &r, 200, "POST", "/v1/galleries/hot/search", through), 200);
    check_results(r.json, hot_ref);
    check_searched(r.json, 2, (const char *[]){"c", "a"}, (const int[]){N_OWN, N - N_OWN},
                   (const char *[]){NULL, "c2a"});
    td_reply_finish(&r);

    /* any: the to model (a) has the gallery model's dim and metric. */
    call(h, 200, "PATCH", "/v1/galleries/plain", "{\"query_policy\":\"any\"}");
    CHECK_EQ(td_http_call(h, &r, 200, "POST", "/v1/galleries/plain/search", through), 200);
    check_results(r.json, plain_ref);
    td_reply_finish(&r);
    call(h, 200, "PATCH", "/v1/galleries/plain", "{\"query_policy\":\"declared\"}");
    free(through);
    return 3;
}

/* Bad searches and routes: refused with their status and code, and
 * nothing stored changes. */
static void test_bad_input(td_http *h)
{
    char *c2b = search_body("c2b"), *nope = search_body("nope");
    char *bad_name = search_body("no/such");
    char *wrong_from = td_fmt("{\"model\":\"b\",\"adapter\":\"c2a\",\"vector\":[1,0,0,0,0,0,0,0]}");
    struct {
        const char *method, *path, *body;
        long status;
        const char *code;
    } cases[] = {
        {"POST", "/v1/galleries/plain/search", nope, 404, "not_found"},
        {"POST", "/v1/galleries/plain/search", bad_name, 400, "invalid_name"},
        {"POST", "/v1/galleries/plain/search", wrong_from, 400, "invalid_argument"},
        /* plain holds no b embeddings, and b is not its model */
        {"POST", "/v1/galleries/plain/search", c2b, 409, "conflict"},
        {"PATCH", "/v1/galleries/hot", "{\"adapters\":{\"c\":\"nope\"}}", 404, "not_found"},
        {"PATCH", "/v1/galleries/hot", "{\"adapters\":{\"zz\":\"c2a\"}}", 404, "not_found"},
        {"PATCH", "/v1/galleries/hot", "{\"adapters\":{\"b\":\"c2a\"}}", 400, "invalid_argument"},
        {"PATCH", "/v1/galleries/hot", "{\"adapters\":{\"a\":\"c2a\"}}", 400, "invalid_argument"},
        {"PATCH", "/v1/galleries/hot", "{\"adapters\":{\"c\":\"c2b\"}}", 409, "conflict"},
        {"PATCH", "/v1/galleries/other", "{\"adapters\":{\"c\":\"c2a\"}}", 409, "conflict"},
        {"PATCH", "/v1/galleries/hot", "{\"adapters\":[\"c2a\"]}", 400, "invalid_argument"},
        {"PATCH", "/v1/galleries/hot", "{\"adapters\":{\"c\":5}}", 400, "invalid_name"},
        {"PATCH", "/v1/galleries/nope", "{\"adapters\":{\"c\":\"c2a\"}}", 404, "not_found"},
        /* all or nothing: a good policy with a bad route changes neither */
        {"PATCH", "/v1/galleries/hot", "{\"query_policy\":\"any\",\"adapters\":{\"c\":\"c2a\","
                                       "\"b\":\"nope\"}}", 404, "not_found"},
        /* under verified the pair (c, c2a) has no passing evaluation */
        {"PATCH", "/v1/galleries/hot", "{\"query_policy\":\"verified\",\"adapters\":{\"c\":\"c2a\"}}",
         409, "model_not_verified"},
    };
    char *before = state(h);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        td_reply r;
        long st = td_http_json(h, cases[i].method, cases[i].path, cases[i].body, &r);
        const char *code = td_reply_error_code(&r);
        if (st != cases[i].status || !code || strcmp(code, cases[i].code) != 0)
            fprintf(stderr, "case %zu: want %ld %s, got %ld: %s\n", i, cases[i].status,
                    cases[i].code, st, r.body);
        CHECK_EQ(st, cases[i].status);
        CHECK(code && strcmp(code, cases[i].code) == 0);
        td_reply_finish(&r);
    }
    char *after = state(h);
    CHECK_STREQ(after, before);
    free(before);
    free(after);
    free(c2b);
    free(nope);
    free(bad_name);
    free(wrong_from);
}

/*
 * Through c2b on mixed: items with a c embedding raw, those with a b
 * embedding mapped into b's space, the rest mapped against their a
 * embedding (b has a's dim and metric).  Under declared, b is not
 * declared compatible with a: refused.
 */
static void test_three_spaces(td_http *h)
{
    static float to_space[N][DA];
    for (int n = 0; n < N; n++)
        memcpy(to_space[n], n >= N_OWN && n < 2 * N_OWN ? vb[n] : va[n], sizeof to_space[n]);
    static reference ref;
    reference_of(h, "c2b", N_OWN, (const float (*)[DA])to_space, true, &ref);
    char *through = search_body("c2b");
    td_reply r;
    call(h, 200, "PATCH", "/v1/galleries/mixed", "{\"query_policy\":\"declared\"}");
    CHECK_EQ(td_http_call(h, &r, 409, "POST", "/v1/galleries/mixed/search", through), 409);
    CHECK_STREQ(td_reply_error_code(&r), "model_not_verified");
    td_reply_finish(&r);
    call(h, 200, "PATCH", "/v1/galleries/mixed", "{\"query_policy\":\"any\"}");
    CHECK_EQ(td_http_call(h, &r, 200, "POST", "/v1/galleries/mixed/search", through), 200);
    CHECK_STREQ(td_json_str(r.json, "adapter"), "c2b");
    check_results(r.json, &ref);
    check_searched(r.json, 3, (const char *[]){"c", "b", "a"},
                   (const int[]){N_OWN, N_OWN, N - 2 * N_OWN},
                   (const char *[]){NULL, "c2b", "c2b"});
    td_reply_finish(&r);
    free(through);
}

/*
 * A query model of another metric (d: c's vectors under l2) through an
 * adapter into a (cosine): its raw scores would not compare with the
 * mapped ones, so every item, those with a d embedding too, is searched
 * with the mapped query.
 */
static void test_other_metric(td_http *h)
{
    call(h, 201, "POST", "/v1/models", "{\"name\":\"d\",\"dim\":12,\"metric\":\"l2\"}");
    call(h, 201, "POST", "/v1/galleries", "{\"name\":\"metric\",\"model\":\"a\"}");
    call(h, 200, "PATCH", "/v1/galleries/metric", "{\"query_policy\":\"declared\"}");
    put_items(h, "metric", "a", 0, N);
    put_items(h, "metric", "d", 0, N_OWN);
    char *body = adapter_body("d2a", "d", "a", "affine");
    call(h, 201, "POST", "/v1/adapters", body);
    free(body);
    static reference ref;
    reference_of(h, "d2a", 0, (const float (*)[DA])va, false, &ref);
    char *through = search_body_as("d", "d2a");
    td_reply r;
    CHECK_EQ(td_http_call(h, &r, 200, "POST", "/v1/galleries/metric/search", through), 200);
    check_results(r.json, &ref);
    check_searched(r.json, 1, (const char *[]){"a"}, (const int[]){N}, (const char *[]){"d2a"});
    td_reply_finish(&r);
    free(through);
}

/* Runs stmt on d's database while d is stopped, then starts d again. */
static void sql_while_stopped(td_daemon *d, const char *stmt)
{
    CHECK_EQ(td_daemon_stop(d), 0);
    CHECK(td_daemon_sql(d, stmt));
    REQUIRE(td_daemon_start(d, NULL));
}

/*
 * The gate under verified reads the latest evaluation of the pair (c,
 * c2a): an evaluation is run over HTTP (query model b, which has a's
 * dim), then made one of the pair in the database (evaluations written
 * with an adapter come with the evaluations through adapters), passing,
 * failing, and as a raw evaluation of c, which does not count for the
 * pair.
 */
static void test_verified(td_http *h, td_daemon *d, const reference *plain_ref)
{
    td_text t = {0};
    td_text_append(&t, "{\"query_model\":\"b\",\"queries\":[");
    for (int n = 0; n < 14; n++) {
        td_text_append(&t, "%s{\"id\":\"p%d\",\"label\":\"l%d\",\"vector\":", n ? "," : "", n, n % 7);
        append_vector(&t, vb[n], DA);
        td_text_append(&t, "}");
    }
    td_text_append(&t, "]}");
    td_reply r;
    CHECK_EQ(td_http_call(h, &r, 201, "POST", "/v1/galleries/plain/evaluations", t.s), 201);
    int id = (int)td_json_num(r.json, "id");
    td_reply_finish(&r);
    free(t.s);
    call(h, 200, "PATCH", "/v1/galleries/plain", "{\"query_policy\":\"verified\"}");
    char *through = search_body("c2a");
    /* b's raw queries: a's dim and metric, so judged by raw evaluations. */
    char *raw_b = td_fmt("{\"model\":\"b\",\"vector\":[1,0,0,0,0,0,0,0]}");
    const struct {
        const char *set, *body;
        long status;
        const char *says;
    } cases[] = {
        {"query_model_id = (SELECT id FROM models WHERE name = 'c'), adapter_id = (SELECT id"
         " FROM adapters WHERE name = 'c2a'), adapter = 'c2a', compatible = 1", through, 200,
         NULL},
        {"compatible = 0", through, 409, "failed the criterion"},
        {"adapter_id = NULL, adapter = NULL, compatible = 1", through, 409, "no evaluation"},
        /* an evaluation of (b, c2a) is no verdict on b's raw queries */
        {"query_model_id = (SELECT id FROM models WHERE name = 'b'), adapter_id = (SELECT id"
         " FROM adapters WHERE name = 'c2a'), adapter = 'c2a'", raw_b, 409, "no evaluation"},
        {"adapter_id = NULL, adapter = NULL", raw_b, 200, NULL},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *stmt = td_fmt("UPDATE evaluations SET %s WHERE id = %d", cases[i].set, id);
        sql_while_stopped(d, stmt);
        free(stmt);
        CHECK_EQ(td_http_call(h, &r, cases[i].status, "POST", "/v1/galleries/plain/search",
                              cases[i].body), cases[i].status);
        if (cases[i].status == 200 && cases[i].body == through)
            check_results(r.json, plain_ref);
        else if (cases[i].status != 200)
            CHECK(strstr(td_reply_error_message(&r), cases[i].says) != NULL);
        td_reply_finish(&r);
    }
    free(raw_b);
    call(h, 200, "PATCH", "/v1/galleries/plain", "{\"query_policy\":\"declared\"}");
    free(through);
}

/* The "results" of a search reply, as text. */
static char *results_of(td_http *h, const char *gallery, const char *body)
{
    td_reply r;
    char *path = td_fmt("/v1/galleries/%s/search", gallery);
    CHECK_EQ(td_http_call(h, &r, 200, "POST", path, body), 200);
    free(path);
    char *text = cJSON_PrintUnformatted(td_json_at(r.json, "results"));
    td_reply_finish(&r);
    return text;
}

/* The value of the metric line that starts with prefix, -1 when none. */
static double metric(td_http *h, const char *prefix)
{
    td_reply r;
    CHECK_EQ(td_http_call(h, &r, 200, "GET", "/metrics", NULL), 200);
    double v = -1;
    const char *at = strstr(r.body, prefix);
    if (at)
        v = strtod(at + strlen(prefix), NULL);
    td_reply_finish(&r);
    return v;
}

int main(int argc, char **argv)
{
    REQUIRE(argc == 2);
    ref_script = argv[1];
    make_data();
    td_daemon *d;
    td_http *h;
    REQUIRE(td_daemon_start_client(NULL, &d, &h));
    build(h);
    static reference plain_ref, hot_ref;
    reference_of(h, "c2a", 0, (const float (*)[DA])va, true, &plain_ref);
    reference_of(h, "c2a", N_OWN, (const float (*)[DA])va, true, &hot_ref);

    int searches = test_search(h, &plain_ref, &hot_ref);
    test_bad_input(h);

    /* A route: a search by c without "adapter" goes through c2a. */
    td_reply r;
    CHECK_EQ(td_http_call(h, &r, 200, "PATCH", "/v1/galleries/hot",
                          "{\"adapters\":{\"c\":\"c2a\"}}"), 200);
    CHECK_STREQ(td_json_str(r.json, "adapters.c"), "c2a");
    CHECK_STREQ(td_json_str(r.json, "query_policy"), "declared");
    td_reply_finish(&r);
    char *plain_body = search_body(NULL), *through = search_body("c2a");
    char *routed = results_of(h, "hot", plain_body), *named = results_of(h, "hot", through);
    searches += 2;
    CHECK_STREQ(routed, named);
    CHECK_EQ(td_http_call(h, &r, 200, "POST", "/v1/galleries/hot/search", plain_body), 200);
    searches++;
    CHECK_STREQ(td_json_str(r.json, "adapter"), "c2a");
    check_results(r.json, &hot_ref);
    check_searched(r.json, 2, (const char *[]){"c", "a"}, (const int[]){N_OWN, N - N_OWN},
                   (const char *[]){NULL, "c2a"});
    td_reply_finish(&r);
    /* plain has no route: c (dim 12) cannot query it raw. */
    CHECK_EQ(td_http_call(h, &r, 400, "POST", "/v1/galleries/plain/search", plain_body), 400);
    CHECK_STREQ(td_reply_error_code(&r), "dimension_mismatch");
    td_reply_finish(&r);
    CHECK_EQ(metric(h, "compatd_adapter_searches_total{adapter=\"c2a\"} "), searches);

    /* A routed adapter cannot be deleted; the route and the adapter stay. */
    char *before = state(h);
    CHECK_EQ(td_http_call(h, &r, 409, "DELETE", "/v1/adapters/c2a", NULL), 409);
    CHECK_STREQ(td_reply_error_code(&r), "conflict");
    CHECK(strstr(td_reply_error_message(&r), "hot") != NULL);
    td_reply_finish(&r);
    char *after = state(h);
    CHECK_STREQ(after, before);
    free(after);

    /* kill -9 after setting the route: it survives, and still serves. */
    CHECK_EQ(td_daemon_kill(d), 0);
    REQUIRE(td_daemon_start(d, NULL));
    after = state(h);
    CHECK_STREQ(after, before);
    free(after);
    free(before);
    char *again = results_of(h, "hot", plain_body);
    CHECK_STREQ(again, routed);
    free(again);
    test_three_spaces(h);
    test_other_metric(h);
    test_verified(h, d, &plain_ref);

    /* null removes the route; then the adapter can go. */
    CHECK_EQ(td_http_call(h, &r, 200, "PATCH", "/v1/galleries/hot",
                          "{\"adapters\":{\"c\":null}}"), 200);
    CHECK(cJSON_GetArraySize(td_json_at(r.json, "adapters")) == 0);
    td_reply_finish(&r);
    CHECK_EQ(td_http_call(h, &r, 400, "POST", "/v1/galleries/hot/search", plain_body), 400);
    td_reply_finish(&r);
    /* A deleted gallery takes its routes along. */
    call(h, 200, "PATCH", "/v1/galleries/mixed", "{\"adapters\":{\"c\":\"c2a\"}}");
    call(h, 409, "DELETE", "/v1/adapters/c2a", NULL);
    call(h, 204, "DELETE", "/v1/galleries/mixed", NULL);
    call(h, 204, "DELETE", "/v1/adapters/c2a", NULL);
    CHECK_EQ(td_http_call(h, &r, 404, "POST", "/v1/galleries/hot/search", through), 404);
    td_reply_finish(&r);
    /* A new c2a (linear now) is searched with its own weights, not with
     * those the daemon kept built for the old one. */
    char *body = adapter_body("c2a", "c", "a", "linear");
    call(h, 201, "POST", "/v1/adapters", body);
    free(body);
    reference_of(h, "c2a", N_OWN, (const float (*)[DA])va, true, &hot_ref);
    CHECK_EQ(td_http_call(h, &r, 200, "POST", "/v1/galleries/hot/search", through), 200);
    check_results(r.json, &hot_ref);
    td_reply_finish(&r);

    free(routed);
    free(named);
    free(plain_body);
    free(through);
    td_http_destroy(h);
    CHECK_EQ(td_daemon_stop(d), 0);
    td_daemon_destroy(d);
    return check_exit();
}
