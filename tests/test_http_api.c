/*
 * test_http_api.c - the /v1 routes of models, galleries, items and search end to end against the
 * real daemon, then every kind of bad input from a table.
 *
 * The first half builds the fixtures through the API and checks each
 * route's reply: models, galleries, upserts by JSON array and by base64,
 * exact round trips of stored vectors (normalised ones for cosine), item
 * deletion, the query-policy gate, gallery deletion, the operational
 * endpoints.  The second half sends each bad request of `bad_cases` and
 * checks the status, the {"error":{"status","code","message"}} reply, that
 * the daemon still answers and that nothing stored changed: a fingerprint
 * of listings, an item and two searches is identical before and after.
 *
 * The daemon runs with a small --max-body so that the 413 cases are cheap;
 * a body of exactly that size must still be accepted.
 */
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "check.h"
#include "daemon.h"

#define DIM 4
#define MAX_BODY 262144             /* passed as --max-body */
#define N_ITEMS 8                   /* per fixture gallery */
#define BATCH 1000                  /* the all-or-nothing batch */
#define BAD_ITEM 500                /* its bad item, unless a case says */

/* The fixture galleries: one per metric, all dim 4. */
static const struct {
    const char *gallery;
    const char *model;
    const char *metric;
} fixtures[] = {
    {"g-l2", "m-l2", "l2"},
    {"g-ip", "m-ip", "ip"},
    {"g-cos", "m-cos", "cosine"},
};
#define N_FIXTURES (sizeof fixtures / sizeof fixtures[0])

/* Vectors as the test sent them, to compare with what comes back. */
static float item_vectors[N_FIXTURES][N_ITEMS][DIM];

/* ---- small helpers --------------------------------------------------- */

/* n copies of unit, malloc'd. */
static char *repeat(const char *unit, size_t n)
{
    size_t u = strlen(unit);
    char *s = malloc(u * n + 1);
    REQUIRE(s != NULL);
    for (size_t i = 0; i < n; i++)
        memcpy(s + i * u, unit, u);
    s[u * n] = '\0';
    return s;
}

/* A JSON array of the floats, printed so that they parse back exactly. */
static char *json_floats(const float *v, size_t n)
{
    size_t cap = 32 * n + 3, len = 0;
    char *s = malloc(cap);
    REQUIRE(s != NULL);
    s[len++] = '[';
    for (size_t i = 0; i < n; i++)
        len += (size_t)snprintf(s + len, cap - len, "%s%.9g", i ? "," : "", v[i]);
    s[len++] = ']';
    s[len] = '\0';
    return s;
}

/* Base64 of the given floats (test's own encoder). */
static char *b64_of(const float *v, size_t n)
{
    char *s = td_b64_floats(v, n);
    REQUIRE(s != NULL);
    return s;
}

static bool bits_equal(float a, float b)
{
    return memcmp(&a, &b, sizeof a) == 0;
}

/* True when the n bytes at s are well-formed UTF-8 (RFC 3629), checked
 * here rather than with core's validator. */
static bool utf8_ok(const char *str, size_t n)
{
    const unsigned char *s = (const unsigned char *)str;
    for (size_t i = 0; i < n;) {
        unsigned c = s[i], cp, need;
        if (c < 0x80) {
            i++;
            continue;
        } else if (c >= 0xc2 && c <= 0xdf) {
            need = 1, cp = c & 0x1f;
        } else if (c >= 0xe0 && c <= 0xef) {
            need = 2, cp = c & 0x0f;
        } else if (c >= 0xf0 && c <= 0xf4) {
            need = 3, cp = c & 0x07;
        } else {
            return false;
        }
        if (i + need >= n)
            return false;   /* truncated sequence */
        for (unsigned k = 1; k <= need; k++) {
            if ((s[i + k] & 0xc0) != 0x80)
                return false;
            cp = cp << 6 | (s[i + k] & 0x3f);
        }
        if ((need == 2 && cp < 0x800) || (need == 3 && cp < 0x10000) || cp > 0x10ffff ||
            (cp >= 0xd800 && cp <= 0xdfff))
            return false;
        i += need + 1;
    }
    return true;
}

/* The reply's error object is the documented one with the given status/code. */
static void check_error_reply(const td_reply *r, long status, const char *code)
{
    CHECK_EQ(td_json_num(r->json, "error.status"), status);
    const char *msg = td_reply_error_message(r);
    CHECK(msg != NULL && msg[0] != '\0');
    if (code)
        CHECK_STREQ(td_reply_error_code(r), code);
    else
        CHECK(td_reply_error_code(r) != NULL);
}

/* ---- routes ---------------------------------------------------------- */

static void test_health(td_http *h)
{
    td_reply r;
    CHECK_EQ(td_http_call(h, &r, 200, "GET", "/healthz", NULL), 200);
    CHECK_STREQ(td_json_str(r.json, "status"), "ok");
    td_reply_finish(&r);
    CHECK_EQ(td_http_call(h, &r, 200, "GET", "/readyz", NULL), 200);
    CHECK_STREQ(td_json_str(r.json, "status"), "ready");
    td_reply_finish(&r);
}

static void test_models(td_http *h)
{
    td_reply r;
    for (size_t i = 0; i < N_FIXTURES; i++) {
        char *body = td_fmt("{\"name\":\"%s\",\"dim\":%d,\"metric\":\"%s\","
                         "\"description\":\"fixture %zu\"}",
                         fixtures[i].model, DIM, fixtures[i].metric, i);
        CHECK_EQ(td_http_call(h, &r, 201, "POST", "/v1/models", body), 201);
        CHECK_STREQ(td_json_str(r.json, "name"), fixtures[i].model);
        CHECK_EQ(td_json_num(r.json, "dim"), DIM);
        CHECK_STREQ(td_json_str(r.json, "metric"), fixtures[i].metric);
        CHECK(cJSON_IsNull(td_json_at(r.json, "compatible_with")));
        CHECK(td_json_str(r.json, "created_at") != NULL);
        td_reply_finish(&r);
        free(body);
    }
    /* A newer model trained against m-l2, and one of another shape. */
    CHECK_EQ(td_http_call(h, &r, 201, "POST", "/v1/models",
                          "{\"name\":\"m-l2-v2\",\"dim\":4,\"metric\":\"l2\",\"compatible_with\":\"m-l2\"}"),
             201);
    CHECK_STREQ(td_json_str(r.json, "compatible_with"), "m-l2");
    td_reply_finish(&r);
    CHECK_EQ(td_http_call(h, &r, 201, "POST", "/v1/models",
                          "{\"name\":\"m-wide\",\"dim\":8,\"metric\":\"l2\"}"), 201);
    td_reply_finish(&r);

    /* The longest name there may be, and the content type with a charset. */
    char *name64 = repeat("n", 64);
    char *body = td_fmt("{\"name\":\"%s\",\"dim\":1,\"metric\":\"ip\"}", name64);
    td_request req = {"POST", "/v1/models", "application/json; charset=utf-8", body,
                      strlen(body), false};
    CHECK_EQ(td_http_send(h, &req, &r), 201);
    CHECK_STREQ(td_json_str(r.json, "name"), name64);
    td_reply_finish(&r);
    free(body);

    CHECK_EQ(td_http_call(h, &r, 200, "GET", "/v1/models", NULL), 200);
    const cJSON *models = td_json_at(r.json, "models");
    CHECK_EQ(cJSON_GetArraySize(models), N_FIXTURES + 3);
    size_t found = 0;
    const cJSON *m;
    cJSON_ArrayForEach(m, models) {
        for (size_t i = 0; i < N_FIXTURES; i++)
            if (strcmp(td_json_str(m, "name"), fixtures[i].model) == 0)
                found++;
    }
    CHECK_EQ(found, N_FIXTURES);
    td_reply_finish(&r);

    CHECK_EQ(td_http_call(h, &r, 200, "GET", "/v1/models/m-l2-v2", NULL), 200);
    CHECK_STREQ(td_json_str(r.json, "name"), "m-l2-v2");
    CHECK_STREQ(td_json_str(r.json, "compatible_with"), "m-l2");
    CHECK_EQ(td_json_num(r.json, "dim"), 4);
    td_reply_finish(&r);
    char *path = td_fmt("/v1/models/%s", name64);
    CHECK_EQ(td_http_call(h, &r, 200, "GET", path, NULL), 200);
    td_reply_finish(&r);
    free(path);
    free(name64);
}

static void test_galleries(td_http *h)
{
    td_reply r;
    for (size_t i = 0; i < N_FIXTURES; i++) {
        /* The default index, and "Flat" given explicitly. */
        char *body = i == 1
            ? td_fmt("{\"name\":\"%s\",\"model\":\"%s\",\"index\":\"Flat\"}",
                  fixtures[i].gallery, fixtures[i].model)
            : td_fmt("{\"name\":\"%s\",\"model\":\"%s\"}", fixtures[i].gallery,
                  fixtures[i].model);
        CHECK_EQ(td_http_call(h, &r, 201, "POST", "/v1/galleries", body), 201);
        CHECK_STREQ(td_json_str(r.json, "name"), fixtures[i].gallery);
        CHECK_STREQ(td_json_str(r.json, "model"), fixtures[i].model);
        CHECK_STREQ(td_json_str(r.json, "index"), "Flat");
        CHECK_EQ(td_json_num(r.json, "count"), 0);
        td_reply_finish(&r);
        free(body);
    }
    CHECK_EQ(td_http_call(h, &r, 200, "GET", "/v1/galleries", NULL), 200);
    CHECK_EQ(cJSON_GetArraySize(td_json_at(r.json, "galleries")), N_FIXTURES);
    td_reply_finish(&r);

    CHECK_EQ(td_http_call(h, &r, 200, "GET", "/v1/galleries/g-l2", NULL), 200);
    CHECK_STREQ(td_json_str(r.json, "name"), "g-l2");
    CHECK_STREQ(td_json_str(r.json, "model"), "m-l2");
    CHECK_STREQ(td_json_str(r.json, "index"), "Flat");
    CHECK_EQ(td_json_num(r.json, "count"), 0);
    CHECK(cJSON_IsObject(td_json_at(r.json, "embeddings")));
    /* m-l2-v2 declares compatibility; m-wide has another dim. */
    const cJSON *qm = td_json_at(r.json, "query_models");
    CHECK(cJSON_IsArray(qm));
    bool v2 = false, wide = false;
    const cJSON *q;
    cJSON_ArrayForEach(q, qm) {
        const char *name = td_json_str(q, "model");
        if (name && strcmp(name, "m-l2-v2") == 0) {
            v2 = true;
            CHECK_STREQ(td_json_str(q, "status"), "declared");
        }
        wide |= name && strcmp(name, "m-wide") == 0;
    }
    CHECK(v2);
    CHECK(!wide);
    td_reply_finish(&r);
}

/* Upserts the fixture items: the first half as JSON arrays, the rest as
 * base64, with labels and metadata. */
static void test_upsert(td_http *h, td_rng *rng)
{
    td_reply r;
    for (size_t g = 0; g < N_FIXTURES; g++) {
        char *parts[N_ITEMS];
        size_t total = 0;
        for (size_t i = 0; i < N_ITEMS; i++) {
            float *v = item_vectors[g][i];
            for (int d = 0; d < DIM; d++)
                v[d] = (float)td_rng_gauss(rng);
            char *vec = i < N_ITEMS / 2 ? json_floats(v, DIM) : b64_of(v, DIM);
            parts[i] = td_fmt("%s{\"id\":\"i%zu\",\"label\":\"L%zu\",\"metadata\":{\"n\":%zu,"
                           "\"tags\":[\"x\",\"\\u00e9\"]},\"%s\":%s%s%s}",
                           i ? "," : "", i, i % 3, i, i < N_ITEMS / 2 ? "vector" : "vector_b64",
                           i < N_ITEMS / 2 ? "" : "\"", vec, i < N_ITEMS / 2 ? "" : "\"");
            total += strlen(parts[i]);
            free(vec);
        }
        char *items = malloc(total + 1);
        REQUIRE(items != NULL);
        items[0] = '\0';
        for (size_t i = 0; i < N_ITEMS; i++) {
            strcat(items, parts[i]);
            free(parts[i]);
        }
        char *body = td_fmt("{\"items\":[%s]}", items);
        char *path = td_fmt("/v1/galleries/%s/items", fixtures[g].gallery);
        CHECK_EQ(td_http_call(h, &r, 200, "POST", path, body), 200);
        CHECK_EQ(td_json_num(r.json, "upserted"), N_ITEMS);
        td_reply_finish(&r);
        free(path);
        free(body);
        free(items);

        path = td_fmt("/v1/galleries/%s", fixtures[g].gallery);
        CHECK_EQ(td_http_call(h, &r, 200, "GET", path, NULL), 200);
        CHECK_EQ(td_json_num(r.json, "count"), N_ITEMS);
        char *key = td_fmt("embeddings.%s", fixtures[g].model);
        CHECK_EQ(td_json_num(r.json, key), N_ITEMS);
        free(key);
        td_reply_finish(&r);
        free(path);
    }
}

/* The item as stored equals what was sent: bit for bit for ip and l2,
 * normalised (in double, here) for cosine. */
static void check_item(td_http *h, size_t g, size_t i, const char *label)
{
    td_reply r;
    char *path = td_fmt("/v1/galleries/%s/items/i%zu?vectors=true", fixtures[g].gallery, i);
    CHECK_EQ(td_http_call(h, &r, 200, "GET", path, NULL), 200);
    char *id = td_fmt("i%zu", i);
    CHECK_STREQ(td_json_str(r.json, "id"), id);
    CHECK_STREQ(td_json_str(r.json, "label"), label);
    CHECK_EQ(td_json_num(r.json, "metadata.n"), i);
    CHECK_STREQ(td_json_str(r.json, "metadata.tags.1"), "\xc3\xa9");
    CHECK_EQ(cJSON_GetArraySize(td_json_at(r.json, "models")), 1);
    CHECK_STREQ(td_json_str(r.json, "models.0"), fixtures[g].model);
    char *key = td_fmt("vectors.%s", fixtures[g].model);
    const cJSON *vec = td_json_at(r.json, key);
    CHECK_EQ(cJSON_GetArraySize(vec), DIM);
    const float *sent = item_vectors[g][i];
    double norm = 0;
    for (int d = 0; d < DIM; d++)
        norm += (double)sent[d] * sent[d];
    norm = sqrt(norm);
    for (int d = 0; d < DIM && cJSON_GetArraySize(vec) == DIM; d++) {
        double got = cJSON_GetArrayItem(vec, d)->valuedouble;
        if (strcmp(fixtures[g].metric, "cosine") == 0) {
            CHECK_NEAR(got, sent[d] / norm, 1e-6);
        } else {
            CHECK(bits_equal((float)got, sent[d]));
        }
    }
    td_reply_finish(&r);
    free(key);
    free(id);
    free(path);
}

static void test_items_get(td_http *h)
{
    td_reply r;
    for (size_t g = 0; g < N_FIXTURES; g++)
        for (size_t i = 0; i < N_ITEMS; i++) {
            char label[8];
            snprintf(label, sizeof label, "L%zu", i % 3);
            check_item(h, g, i, label);
        }
    /* Without vectors, and with vectors=false: no "vectors" key. */
    CHECK_EQ(td_http_call(h, &r, 200, "GET", "/v1/galleries/g-l2/items/i1", NULL), 200);
    CHECK(td_json_at(r.json, "vectors") == NULL);
    CHECK_STREQ(td_json_str(r.json, "models.0"), "m-l2");
    td_reply_finish(&r);
    CHECK_EQ(td_http_call(h, &r, 200, "GET", "/v1/galleries/g-l2/items/i1?vectors=false", NULL), 200);
    CHECK(td_json_at(r.json, "vectors") == NULL);
    td_reply_finish(&r);

    /* An update without label or metadata keeps them and replaces the
     * vector; the count stays. */
    float *v = item_vectors[0][2];
    for (int d = 0; d < DIM; d++)
        v[d] = (float)(d + 1) / 3.0f;
    char *vec = json_floats(v, DIM);
    char *body = td_fmt("{\"model\":\"m-l2\",\"items\":[{\"id\":\"i2\",\"vector\":%s}]}", vec);
    CHECK_EQ(td_http_call(h, &r, 200, "POST", "/v1/galleries/g-l2/items", body), 200);
    CHECK_EQ(td_json_num(r.json, "upserted"), 1);
    td_reply_finish(&r);
    check_item(h, 0, 2, "L2");
    CHECK_EQ(td_http_call(h, &r, 200, "GET", "/v1/galleries/g-l2", NULL), 200);
    CHECK_EQ(td_json_num(r.json, "count"), N_ITEMS);
    td_reply_finish(&r);
    free(body);
    free(vec);
}

/* One search of g with body; returns the reply for the caller to check. */
static long search(td_http *h, td_reply *r, const char *gallery, const char *body)
{
    char *path = td_fmt("/v1/galleries/%s/search", gallery);
    long status = td_http_call(h, r, 200, "POST", path, body);
    free(path);
    return status;
}

static void test_search(td_http *h)
{
    td_reply r, r2;
    for (size_t g = 0; g < N_FIXTURES; g++) {
        const float *v = item_vectors[g][3];
        char *vec = json_floats(v, DIM), *b64 = b64_of(v, DIM);
        char *body = td_fmt("{\"k\":%d,\"vector\":%s,\"include\":[\"label\",\"metadata\"]}",
                         N_ITEMS, vec);
        CHECK_EQ(search(h, &r, fixtures[g].gallery, body), 200);
        CHECK_STREQ(td_json_str(r.json, "model"), fixtures[g].model);
        CHECK_EQ(cJSON_GetArraySize(td_json_at(r.json, "results")), 1);
        CHECK_EQ(cJSON_GetArraySize(td_json_at(r.json, "results.0")), N_ITEMS);
        CHECK_STREQ(td_json_str(r.json, "searched.0.model"), fixtures[g].model);
        CHECK_EQ(td_json_num(r.json, "searched.0.items"), N_ITEMS);
        /* Scores against every item, independently. */
        double qn = 0;
        for (int d = 0; d < DIM; d++)
            qn += (double)v[d] * v[d];
        const cJSON *hit;
        double prev = 0;
        int rank = 0;
        cJSON_ArrayForEach(hit, td_json_at(r.json, "results.0")) {
            const char *id = td_json_str(hit, "id");
            REQUIRE(id != NULL && id[0] == 'i');
            const float *x = item_vectors[g][atoi(id + 1)];
            double dot = 0, xn = 0, l2 = 0;
            for (int d = 0; d < DIM; d++) {
                dot += (double)x[d] * v[d];
                xn += (double)x[d] * x[d];
                l2 += ((double)x[d] - v[d]) * ((double)x[d] - v[d]);
            }
            double want = strcmp(fixtures[g].metric, "l2") == 0 ? l2
                        : strcmp(fixtures[g].metric, "ip") == 0 ? dot
                        : dot / sqrt(xn * qn);
            double score = td_json_num(hit, "score");
            CHECK_NEAR(score, want, 1e-5);
            if (rank > 0) {
                if (strcmp(fixtures[g].metric, "l2") == 0)
                    CHECK(score >= prev - 1e-6);
                else
                    CHECK(score <= prev + 1e-6);
            }
            prev = score;
            rank++;
        }
        /* Itself first, for l2 and cosine (ip ranks by length too). */
        if (strcmp(fixtures[g].metric, "ip") != 0) {
            CHECK_STREQ(td_json_str(r.json, "results.0.0.id"), "i3");
            CHECK_STREQ(td_json_str(r.json, "results.0.0.label"), "L0");
            CHECK_EQ(td_json_num(r.json, "results.0.0.metadata.n"), 3);
        }

        /* The same query as base64 finds the same. */
        char *body2 = td_fmt("{\"k\":%d,\"vector_b64\":\"%s\",\"include\":[\"label\",\"metadata\"]}",
                          N_ITEMS, b64);
        CHECK_EQ(search(h, &r2, fixtures[g].gallery, body2), 200);
        CHECK_STREQ(r.body, r2.body);
        td_reply_finish(&r2);
        free(body2);

        /* A batch of two: the same query in both forms. */
        body2 = td_fmt("{\"k\":%d,\"vectors\":[%s,\"%s\"],\"include\":[\"label\",\"metadata\"]}",
                    N_ITEMS, vec, b64);
        CHECK_EQ(search(h, &r2, fixtures[g].gallery, body2), 200);
        CHECK_EQ(cJSON_GetArraySize(td_json_at(r2.json, "results")), 2);
        char *one = cJSON_PrintUnformatted(td_json_at(r.json, "results.0"));
        char *a = cJSON_PrintUnformatted(td_json_at(r2.json, "results.0"));
        char *b = cJSON_PrintUnformatted(td_json_at(r2.json, "results.1"));
        CHECK_STREQ(a, one);
        CHECK_STREQ(b, one);
        free(one);
        free(a);
        free(b);
        td_reply_finish(&r2);
        free(body2);

        /* k larger than the gallery: every item, once; default k is 10;
         * without include, no label key. */
        body2 = td_fmt("{\"k\":1000,\"vector\":%s}", vec);
        CHECK_EQ(search(h, &r2, fixtures[g].gallery, body2), 200);
        CHECK_EQ(cJSON_GetArraySize(td_json_at(r2.json, "results.0")), N_ITEMS);
        CHECK(td_json_at(r2.json, "results.0.0.label") == NULL);
        td_reply_finish(&r2);
        free(body2);
        body2 = td_fmt("{\"k\":1,\"vector\":%s}", vec);
        CHECK_EQ(search(h, &r2, fixtures[g].gallery, body2), 200);
        CHECK_EQ(cJSON_GetArraySize(td_json_at(r2.json, "results.0")), 1);
        CHECK_STREQ(td_json_str(r2.json, "results.0.0.id"), td_json_str(r.json, "results.0.0.id"));
        td_reply_finish(&r2);
        free(body2);

        td_reply_finish(&r);
        free(body);
        free(vec);
        free(b64);
    }
}

static bool results_have(const td_reply *r, const char *id)
{
    const cJSON *hit;
    cJSON_ArrayForEach(hit, td_json_at(r->json, "results.0")) {
        const char *got = td_json_str(hit, "id");
        if (got && strcmp(got, id) == 0)
            return true;
    }
    return false;
}

static void test_item_delete(td_http *h)
{
    td_reply r;
    char *vec = json_floats(item_vectors[0][5], DIM);
    char *body = td_fmt("{\"k\":100,\"vector\":%s}", vec);
    CHECK_EQ(search(h, &r, "g-l2", body), 200);
    CHECK(results_have(&r, "i5"));
    td_reply_finish(&r);

    CHECK_EQ(td_http_call(h, &r, 204, "DELETE", "/v1/galleries/g-l2/items/i5", NULL), 204);
    CHECK_EQ(r.len, 0);
    td_reply_finish(&r);
    CHECK_EQ(td_http_call(h, &r, 404, "GET", "/v1/galleries/g-l2/items/i5", NULL), 404);
    check_error_reply(&r, 404, "not_found");
    td_reply_finish(&r);
    CHECK_EQ(td_http_call(h, &r, 404, "DELETE", "/v1/galleries/g-l2/items/i5", NULL), 404);
    check_error_reply(&r, 404, "not_found");
    td_reply_finish(&r);

    CHECK_EQ(search(h, &r, "g-l2", body), 200);
    CHECK(!results_have(&r, "i5"));
    CHECK_EQ(cJSON_GetArraySize(td_json_at(r.json, "results.0")), N_ITEMS - 1);
    CHECK_EQ(td_json_num(r.json, "searched.0.items"), N_ITEMS - 1);
    td_reply_finish(&r);
    CHECK_EQ(td_http_call(h, &r, 200, "GET", "/v1/galleries/g-l2", NULL), 200);
    CHECK_EQ(td_json_num(r.json, "count"), N_ITEMS - 1);
    td_reply_finish(&r);
    /* The other galleries' i5 is untouched. */
    CHECK_EQ(td_http_call(h, &r, 200, "GET", "/v1/galleries/g-ip/items/i5", NULL), 200);
    td_reply_finish(&r);
    free(body);
    free(vec);
}

/* PATCH query_policy opens and closes the gate for m-l2-v2 on g-l2. */
static void test_policy(td_http *h)
{
    td_reply r;
    char *vec = json_floats(item_vectors[0][1], DIM);
    char *body = td_fmt("{\"model\":\"m-l2-v2\",\"vector\":%s}", vec);

    CHECK_EQ(td_http_call(h, &r, 409, "POST", "/v1/galleries/g-l2/search", body), 409);
    check_error_reply(&r, 409, "model_not_verified");
    td_reply_finish(&r);

    CHECK_EQ(td_http_call(h, &r, 200, "PATCH", "/v1/galleries/g-l2", "{\"query_policy\":\"declared\"}"),
             200);
    CHECK_STREQ(td_json_str(r.json, "query_policy"), "declared");
    CHECK_STREQ(td_json_str(r.json, "name"), "g-l2");
    td_reply_finish(&r);
    CHECK_EQ(td_http_call(h, &r, 200, "GET", "/v1/galleries/g-l2", NULL), 200);
    CHECK_STREQ(td_json_str(r.json, "query_policy"), "declared");
    td_reply_finish(&r);

    /* Allowed now: it has no embeddings of its own, so the gallery
     * model's are searched. */
    CHECK_EQ(td_http_call(h, &r, 200, "POST", "/v1/galleries/g-l2/search", body), 200);
    if (r.status == 200) {
        CHECK_STREQ(td_json_str(r.json, "model"), "m-l2-v2");
        CHECK_STREQ(td_json_str(r.json, "results.0.0.id"), "i1");
        CHECK_STREQ(td_json_str(r.json, "searched.0.model"), "m-l2");
        CHECK_EQ(td_json_num(r.json, "searched.0.items"), N_ITEMS - 1);
    }
    td_reply_finish(&r);

    CHECK_EQ(td_http_call(h, &r, 200, "PATCH", "/v1/galleries/g-l2", "{\"query_policy\":\"any\"}"), 200);
    CHECK_STREQ(td_json_str(r.json, "query_policy"), "any");
    td_reply_finish(&r);
    CHECK_EQ(td_http_call(h, &r, 200, "PATCH", "/v1/galleries/g-l2", "{\"query_policy\":\"verified\"}"),
             200);
    td_reply_finish(&r);
    CHECK_EQ(td_http_call(h, &r, 409, "POST", "/v1/galleries/g-l2/search", body), 409);
    check_error_reply(&r, 409, "model_not_verified");
    td_reply_finish(&r);
    free(body);
    free(vec);
}

static void test_gallery_delete(td_http *h)
{
    td_reply r;
    CHECK_EQ(td_http_call(h, &r, 201, "POST", "/v1/galleries", "{\"name\":\"g-tmp\",\"model\":\"m-ip\"}"),
             201);
    td_reply_finish(&r);
    CHECK_EQ(td_http_call(h, &r, 200, "POST", "/v1/galleries/g-tmp/items",
                          "{\"items\":[{\"id\":\"a\",\"label\":7,\"vector\":[1,0,0,0]},"
                          "{\"id\":\"b/c d\\u00e9\",\"vector\":[0,1,0,0]}]}"),
             200);
    td_reply_finish(&r);
    /* An integer label is kept as its decimal text; an id with '/', a
     * space and a non-ASCII letter is reached percent-encoded. */
    CHECK_EQ(td_http_call(h, &r, 200, "GET", "/v1/galleries/g-tmp/items/a", NULL), 200);
    CHECK_STREQ(td_json_str(r.json, "label"), "7");
    td_reply_finish(&r);
    CHECK_EQ(td_http_call(h, &r, 200, "GET", "/v1/galleries/g-tmp/items/b%2Fc%20d%C3%A9", NULL), 200);
    CHECK_STREQ(td_json_str(r.json, "id"), "b/c d\xc3\xa9");
    td_reply_finish(&r);
    CHECK_EQ(td_http_call(h, &r, 204, "DELETE", "/v1/galleries/g-tmp", NULL), 204);
    CHECK_EQ(r.len, 0);
    td_reply_finish(&r);
    CHECK_EQ(td_http_call(h, &r, 404, "GET", "/v1/galleries/g-tmp", NULL), 404);
    check_error_reply(&r, 404, "not_found");
    td_reply_finish(&r);
    CHECK_EQ(td_http_call(h, &r, 404, "POST", "/v1/galleries/g-tmp/search", "{\"vector\":[1,0,0,0]}"),
             404);
    td_reply_finish(&r);
    CHECK_EQ(td_http_call(h, &r, 404, "DELETE", "/v1/galleries/g-tmp", NULL), 404);
    td_reply_finish(&r);
    CHECK_EQ(td_http_call(h, &r, 200, "GET", "/v1/galleries", NULL), 200);
    const cJSON *g;
    cJSON_ArrayForEach(g, td_json_at(r.json, "galleries"))
        CHECK(strcmp(td_json_str(g, "name"), "g-tmp") != 0);
    td_reply_finish(&r);

    /* The name is free again, and nothing of the old gallery comes back. */
    CHECK_EQ(td_http_call(h, &r, 201, "POST", "/v1/galleries", "{\"name\":\"g-tmp\",\"model\":\"m-ip\"}"),
             201);
    CHECK_EQ(td_json_num(r.json, "count"), 0);
    td_reply_finish(&r);
    CHECK_EQ(td_http_call(h, &r, 404, "GET", "/v1/galleries/g-tmp/items/a", NULL), 404);
    td_reply_finish(&r);
    CHECK_EQ(td_http_call(h, &r, 200, "POST", "/v1/galleries/g-tmp/search", "{\"vector\":[1,0,0,0]}"),
             200);
    CHECK_EQ(cJSON_GetArraySize(td_json_at(r.json, "results.0")), 0);
    td_reply_finish(&r);
    CHECK_EQ(td_http_call(h, &r, 204, "DELETE", "/v1/galleries/g-tmp", NULL), 204);
    td_reply_finish(&r);
}

static void test_metrics(td_http *h)
{
    td_reply r;
    CHECK_EQ(td_http_call(h, &r, 200, "GET", "/metrics", NULL), 200);
    CHECK(strstr(r.body, "compatd_http_requests_total") != NULL);
    CHECK(strstr(r.body, "route=\"/v1/galleries/{g}/search\"") != NULL);
    CHECK(strstr(r.body, "status=\"201\"") != NULL);
    td_reply_finish(&r);
}

/* A body of exactly --max-body bytes is accepted (white space pads it). */
static void test_body_limit_edge(td_http *h)
{
    td_reply r;
    const char *json = "{\"items\":[{\"id\":\"edge\",\"vector\":[1,2,3,4]}]}";
    char *body = malloc(MAX_BODY + 1);
    REQUIRE(body != NULL);
    memset(body, ' ', MAX_BODY);
    memcpy(body, json, strlen(json));
    body[MAX_BODY] = '\0';
    CHECK_EQ(td_http_call(h, &r, 200, "POST", "/v1/galleries/g-ip/items", body), 200);
    td_reply_finish(&r);
    CHECK_EQ(td_http_call(h, &r, 204, "DELETE", "/v1/galleries/g-ip/items/edge", NULL), 204);
    td_reply_finish(&r);
    free(body);
}

/* ---- bad input ------------------------------------------------------- */

/*
 * Bodies of the table are templates: each @NAME@ is replaced by the
 * generated text below, so the table shows the request's shape while
 * long or binary values are made here.
 */
static char *macro_text(const char *name)
{
    static const float nan_v[DIM] = {0.5f, NAN, 1, 2};
    static const float inf_v[DIM] = {INFINITY, 0.5f, 1, 2};
    static const float ninf_v[DIM] = {0.5f, 1, 2, -INFINITY};
    static const float dim3[3] = {0.5f, 1, 2};
    static const float dim5[5] = {0.5f, 1, 2, 3, 4};
    static const float ok[DIM] = {0.5f, 1, 2, 3};
    static const unsigned char bytes15[15] = {0};
    if (strcmp(name, "NAME65") == 0) return repeat("a", 65);
    if (strcmp(name, "ID257") == 0) return repeat("i", 257);
    if (strcmp(name, "ID256") == 0) return repeat("i", 256);
    if (strcmp(name, "UTF8ID258") == 0) return repeat("\xc3\xa9", 129);
    if (strcmp(name, "LABEL257") == 0) return repeat("l", 257);
    if (strcmp(name, "SPEC129") == 0) return repeat("F", 129);
    if (strcmp(name, "META17K") == 0) {
        char *s = repeat("m", 17000);
        char *m = td_fmt("{\"s\":\"%s\"}", s);
        free(s);
        return m;
    }
    if (strcmp(name, "META16K1") == 0) {
        /* {"s":"..."} of 16385 bytes: one over the limit. */
        char *s = repeat("m", 16385 - 8);
        char *m = td_fmt("{\"s\":\"%s\"}", s);
        free(s);
        return m;
    }
    if (strcmp(name, "B64NAN") == 0) return b64_of(nan_v, DIM);
    if (strcmp(name, "B64INF") == 0) return b64_of(inf_v, DIM);
    if (strcmp(name, "B64NINF") == 0) return b64_of(ninf_v, DIM);
    if (strcmp(name, "B64DIM3") == 0) return b64_of(dim3, 3);
    if (strcmp(name, "B64DIM5") == 0) return b64_of(dim5, 5);
    if (strcmp(name, "B64OK") == 0) return b64_of(ok, DIM);
    if (strcmp(name, "B64BYTES15") == 0) return td_b64_bytes(bytes15, 15);
    fprintf(stderr, "unknown template macro @%s@\n", name);
    exit(1);
}

static char *expand(const char *tmpl)
{
    size_t cap = strlen(tmpl) + 1, len = 0;
    char *out = malloc(cap);
    REQUIRE(out != NULL);
    for (const char *p = tmpl; *p;) {
        const char *end = p[0] == '@' ? strchr(p + 1, '@') : NULL;
        const char *piece = p;
        size_t n = 1;
        char *made = NULL;
        if (end && end > p + 1) {
            char name[32];
            snprintf(name, sizeof name, "%.*s", (int)(end - p - 1), p + 1);
            made = macro_text(name);
            piece = made;
            n = strlen(made);
            p = end + 1;
        } else {
            p++;
        }
        if (len + n + 1 > cap) {
            cap = (len + n + 1) * 2;
            out = realloc(out, cap);
            REQUIRE(out != NULL);
        }
        memcpy(out + len, piece, n);
        len += n;
        free(made);
    }
    out[len] = '\0';
    return out;
}

/* Generated bodies: deep nesting, the size limit, the 1000-item batch. */
static char *deep_arrays(void)
{
    return repeat("[", 100000);
}

static char *deep_in_items(void)
{
    char *deep = repeat("[", 100000);
    char *s = td_fmt("{\"items\":%s", deep);
    free(deep);
    return s;
}

static char *deep_objects(void)
{
    return repeat("{\"a\":", 50000);
}

static char *over_limit(void)
{
    const char *json = "{\"items\":[{\"id\":\"big\",\"vector\":[1,2,3,4]}]}";
    char *body = malloc(MAX_BODY + 2);
    REQUIRE(body != NULL);
    memset(body, ' ', MAX_BODY + 1);
    memcpy(body, json, strlen(json));
    body[MAX_BODY + 1] = '\0';
    return body;
}

/* A batch of BATCH new items "batch-<i>" whose item `bad` is broken in
 * the given way. */
static char *batch_with(size_t bad, const char *how)
{
    size_t cap = BATCH * 160 + 20000, len = 0;
    char *s = malloc(cap);
    REQUIRE(s != NULL);
    len += (size_t)snprintf(s + len, cap - len, "{\"items\":[");
    for (size_t i = 0; i < BATCH; i++) {
        const char *sep = i ? "," : "";
        if (i != bad) {
            len += (size_t)snprintf(s + len, cap - len,
                                    "%s{\"id\":\"batch-%zu\",\"label\":\"b\",\"vector\":[%zu,1,2,3]}",
                                    sep, i, i);
        } else {
            char *item = expand(how);
            len += (size_t)snprintf(s + len, cap - len, "%s%s", sep, item);
            free(item);
        }
        REQUIRE(len < cap);
    }
    len += (size_t)snprintf(s + len, cap - len, "]}");
    return s;
}

static char *batch_dim(void) { return batch_with(BAD_ITEM, "{\"id\":\"batch-500\",\"vector\":[1,2,3]}"); }
static char *batch_nan(void) { return batch_with(BAD_ITEM, "{\"id\":\"batch-500\",\"vector_b64\":\"@B64NAN@\"}"); }
static char *batch_inf(void) { return batch_with(BAD_ITEM, "{\"id\":\"batch-500\",\"vector\":[1,1e999,2,3]}"); }
static char *batch_id(void) { return batch_with(BAD_ITEM, "{\"id\":\"@ID257@\",\"vector\":[1,2,3,4]}"); }
static char *batch_meta(void) { return batch_with(BAD_ITEM, "{\"id\":\"batch-500\",\"metadata\":[1],\"vector\":[1,2,3,4]}"); }
static char *batch_b64(void) { return batch_with(BAD_ITEM, "{\"id\":\"batch-500\",\"vector_b64\":\"@B64BYTES15@\"}"); }
static char *batch_first(void) { return batch_with(0, "{\"id\":\"batch-0\",\"vector\":[1,2,3,4,5]}"); }
static char *batch_repeat(void) { return batch_with(BAD_ITEM, "{\"id\":\"batch-0\",\"vector\":[1,2,3,4]}"); }
static char *batch_last(void) { return batch_with(BATCH - 1, "{\"id\":\"batch-999\",\"vector\":[]}"); }

typedef struct bad_case {
    const char *what;
    const char *method;
    const char *path;
    const char *content_type;   /* NULL: no Content-Type */
    const char *body;           /* template (see expand); NULL: make() or none */
    char *(*make)(void);        /* generated body, malloc'd */
    bool chunked;
    long status;
    const char *code;           /* NULL: any code */
    const char *message_has;    /* NULL: any message */
} bad_case;

#define J "application/json"
#define MODELS "/v1/models"
#define GALLERIES "/v1/galleries"
#define ITEMS "/v1/galleries/g-l2/items"
#define SEARCH "/v1/galleries/g-l2/search"
#define V "[0.5,1,2,3]"
#define ITEM(x) "{\"items\":[" x "]}"

static const bad_case bad_cases[] = {
    /* JSON syntax */
    {"malformed JSON", "POST", MODELS, J, "{\"name\":\"x\",\"dim\":4,,\"metric\":\"l2\"}", NULL, false, 400, "invalid_json", NULL},
    {"truncated JSON", "POST", MODELS, J, "{\"name\":\"x\",\"dim\":4,\"metric\":\"l2\"", NULL, false, 400, "invalid_json", NULL},
    {"truncated batch", "POST", ITEMS, J, "{\"items\":[{\"id\":\"t1\",\"vector\":[0.5,0.25", NULL, false, 400, "invalid_json", NULL},
    {"truncated string", "POST", ITEMS, J, "{\"items\":[{\"id\":\"t1", NULL, false, 400, "invalid_json", NULL},
    {"data after the value", "POST", MODELS, J, "{\"name\":\"x\",\"dim\":4,\"metric\":\"l2\"} {}", NULL, false, 400, "invalid_json", NULL},
    {"empty body", "POST", MODELS, J, "", NULL, false, 400, "invalid_json", NULL},
    {"only white space", "POST", MODELS, J, "  \n ", NULL, false, 400, "invalid_json", NULL},
    {"array, not object", "POST", MODELS, J, "[{\"name\":\"x\",\"dim\":4,\"metric\":\"l2\"}]", NULL, false, 400, "invalid_json", NULL},
    {"bare string", "POST", ITEMS, J, "\"items\"", NULL, false, 400, "invalid_json", NULL},
    {"single quotes", "POST", MODELS, J, "{'name':'x','dim':4,'metric':'l2'}", NULL, false, 400, "invalid_json", NULL},
    {"literal NaN token", "POST", ITEMS, J, ITEM("{\"id\":\"t1\",\"vector\":[NaN,0,0,0]}"), NULL, false, 400, "invalid_json", NULL},
    {"literal Infinity token", "POST", ITEMS, J, ITEM("{\"id\":\"t1\",\"vector\":[0,Infinity,0,0]}"), NULL, false, 400, "invalid_json", NULL},
    {"NaN token in search", "POST", SEARCH, J, "{\"vector\":[0,0,nan,0]}", NULL, false, 400, "invalid_json", NULL},
    {"lone surrogate escape", "POST", ITEMS, J, ITEM("{\"id\":\"\\ud800\",\"vector\":" V "}"), NULL, false, 400, "invalid_json", NULL},
    {"NUL escape in an id", "POST", ITEMS, J, ITEM("{\"id\":\"i1\\u0000x\",\"vector\":" V "}"), NULL, false, 400, NULL, NULL},
    {"NUL escape in a name", "POST", MODELS, J, "{\"name\":\"m-l2\\u0000x\",\"dim\":4,\"metric\":\"l2\"}", NULL, false, 400, NULL, NULL},
    {"100000 nested arrays", "POST", ITEMS, J, NULL, deep_arrays, false, 400, "invalid_json", NULL},
    {"nested arrays in items", "POST", ITEMS, J, NULL, deep_in_items, false, 400, "invalid_json", NULL},
    {"50000 nested objects", "POST", SEARCH, J, NULL, deep_objects, false, 400, "invalid_json", NULL},

    /* content type and size */
    {"text/plain", "POST", MODELS, "text/plain", "{\"name\":\"x\",\"dim\":4,\"metric\":\"l2\"}", NULL, false, 415, "unsupported_media_type", NULL},
    {"no content type", "POST", ITEMS, NULL, ITEM("{\"id\":\"t1\",\"vector\":" V "}"), NULL, false, 415, "unsupported_media_type", NULL},
    {"application/jsonx", "POST", SEARCH, "application/jsonx", "{\"vector\":" V "}", NULL, false, 415, "unsupported_media_type", NULL},
    {"form content type", "PATCH", "/v1/galleries/g-l2", "application/x-www-form-urlencoded", "{\"query_policy\":\"any\"}", NULL, false, 415, "unsupported_media_type", NULL},
    {"body over the limit", "POST", ITEMS, J, NULL, over_limit, false, 413, "body_too_large", NULL},
    {"chunked body over the limit", "POST", ITEMS, J, NULL, over_limit, true, 413, "body_too_large", NULL},

    /* UTF-8 */
    {"invalid UTF-8 in a model name", "POST", MODELS, J, "{\"name\":\"\xff\xfe\",\"dim\":4,\"metric\":\"l2\"}", NULL, false, 400, "invalid_utf8", NULL},
    {"overlong UTF-8 in a gallery name", "POST", GALLERIES, J, "{\"name\":\"g\xc0\xaf\",\"model\":\"m-l2\"}", NULL, false, 400, "invalid_utf8", NULL},
    {"UTF-8 surrogate in an id", "POST", ITEMS, J, ITEM("{\"id\":\"a\xed\xa0\x80\",\"vector\":" V "}"), NULL, false, 400, "invalid_utf8", NULL},
    {"truncated UTF-8 in an id", "POST", ITEMS, J, ITEM("{\"id\":\"ab\xe2\x82\",\"vector\":" V "}"), NULL, false, 400, "invalid_utf8", NULL},
    {"UTF-8 above U+10FFFF in metadata", "POST", ITEMS, J, ITEM("{\"id\":\"t1\",\"metadata\":{\"s\":\"\xf4\x90\x80\x80\"},\"vector\":" V "}"), NULL, false, 400, "invalid_utf8", NULL},
    {"invalid UTF-8 in a label", "POST", ITEMS, J, ITEM("{\"id\":\"t1\",\"label\":\"\x80\",\"vector\":" V "}"), NULL, false, 400, "invalid_utf8", NULL},

    /* names */
    {"empty model name", "POST", MODELS, J, "{\"name\":\"\",\"dim\":4,\"metric\":\"l2\"}", NULL, false, 400, "invalid_name", NULL},
    {"65-char model name", "POST", MODELS, J, "{\"name\":\"@NAME65@\",\"dim\":4,\"metric\":\"l2\"}", NULL, false, 400, "invalid_name", NULL},
    {"model name a/b", "POST", MODELS, J, "{\"name\":\"a/b\",\"dim\":4,\"metric\":\"l2\"}", NULL, false, 400, "invalid_name", NULL},
    {"model name \xc3\xa9", "POST", MODELS, J, "{\"name\":\"\xc3\xa9\",\"dim\":4,\"metric\":\"l2\"}", NULL, false, 400, "invalid_name", NULL},
    {"model name with a space", "POST", MODELS, J, "{\"name\":\"a b\",\"dim\":4,\"metric\":\"l2\"}", NULL, false, 400, "invalid_name", NULL},
    {"model name missing", "POST", MODELS, J, "{\"dim\":4,\"metric\":\"l2\"}", NULL, false, 400, "invalid_argument", NULL},
    {"model name a number", "POST", MODELS, J, "{\"name\":7,\"dim\":4,\"metric\":\"l2\"}", NULL, false, 400, "invalid_argument", NULL},
    {"empty gallery name", "POST", GALLERIES, J, "{\"name\":\"\",\"model\":\"m-l2\"}", NULL, false, 400, "invalid_name", NULL},
    {"65-char gallery name", "POST", GALLERIES, J, "{\"name\":\"@NAME65@\",\"model\":\"m-l2\"}", NULL, false, 400, "invalid_name", NULL},
    {"gallery name a/b", "POST", GALLERIES, J, "{\"name\":\"a/b\",\"model\":\"m-l2\"}", NULL, false, 400, "invalid_name", NULL},
    {"gallery name \xc3\xa9", "POST", GALLERIES, J, "{\"name\":\"\xc3\xa9\",\"model\":\"m-l2\"}", NULL, false, 400, "invalid_name", NULL},
    {"gallery model a/b", "POST", GALLERIES, J, "{\"name\":\"g-new\",\"model\":\"a/b\"}", NULL, false, 400, "invalid_name", NULL},
    {"gallery model missing", "POST", GALLERIES, J, "{\"name\":\"g-new\"}", NULL, false, 400, "invalid_argument", NULL},
    {"upsert model \xc3\xa9", "POST", ITEMS, J, "{\"model\":\"\xc3\xa9\",\"items\":[{\"id\":\"t1\",\"vector\":" V "}]}", NULL, false, 400, "invalid_name", NULL},
    {"search model a/b", "POST", SEARCH, J, "{\"model\":\"a/b\",\"vector\":" V "}", NULL, false, 400, "invalid_name", NULL},
    {"compatible_with a b", "POST", MODELS, J, "{\"name\":\"x\",\"dim\":4,\"metric\":\"l2\",\"compatible_with\":\"a b\"}", NULL, false, 400, "invalid_name", NULL},

    /* model fields */
    {"dim 0", "POST", MODELS, J, "{\"name\":\"x\",\"dim\":0,\"metric\":\"l2\"}", NULL, false, 400, "invalid_argument", NULL},
    {"dim 4097", "POST", MODELS, J, "{\"name\":\"x\",\"dim\":4097,\"metric\":\"l2\"}", NULL, false, 400, "invalid_argument", NULL},
    {"dim 1.5", "POST", MODELS, J, "{\"name\":\"x\",\"dim\":1.5,\"metric\":\"l2\"}", NULL, false, 400, "invalid_argument", NULL},
    {"dim a string", "POST", MODELS, J, "{\"name\":\"x\",\"dim\":\"4\",\"metric\":\"l2\"}", NULL, false, 400, "invalid_argument", NULL},
    {"dim missing", "POST", MODELS, J, "{\"name\":\"x\",\"metric\":\"l2\"}", NULL, false, 400, "invalid_argument", NULL},
    {"metric cos", "POST", MODELS, J, "{\"name\":\"x\",\"dim\":4,\"metric\":\"cos\"}", NULL, false, 400, "invalid_argument", NULL},
    {"metric missing", "POST", MODELS, J, "{\"name\":\"x\",\"dim\":4}", NULL, false, 400, "invalid_argument", NULL},
    {"unknown model field", "POST", MODELS, J, "{\"name\":\"x\",\"dim\":4,\"metric\":\"l2\",\"dims\":4}", NULL, false, 400, "unknown_field", "dims"},
    {"compatible_with unknown", "POST", MODELS, J, "{\"name\":\"x\",\"dim\":4,\"metric\":\"l2\",\"compatible_with\":\"nope\"}", NULL, false, 404, "not_found", NULL},
    {"compatible_with other dim", "POST", MODELS, J, "{\"name\":\"x\",\"dim\":4,\"metric\":\"l2\",\"compatible_with\":\"m-wide\"}", NULL, false, 400, "invalid_argument", NULL},

    /* ids, labels, metadata */
    {"id of 257 bytes", "POST", ITEMS, J, ITEM("{\"id\":\"@ID257@\",\"vector\":" V "}"), NULL, false, 400, "invalid_id", "item 0"},
    {"id of 129 two-byte chars", "POST", ITEMS, J, ITEM("{\"id\":\"@UTF8ID258@\",\"vector\":" V "}"), NULL, false, 400, "invalid_id", NULL},
    {"empty id", "POST", ITEMS, J, ITEM("{\"id\":\"\",\"vector\":" V "}"), NULL, false, 400, "invalid_id", NULL},
    {"id a number", "POST", ITEMS, J, ITEM("{\"id\":5,\"vector\":" V "}"), NULL, false, 400, "invalid_id", NULL},
    {"id missing", "POST", ITEMS, J, ITEM("{\"vector\":" V "}"), NULL, false, 400, "invalid_id", NULL},
    {"label an object", "POST", ITEMS, J, ITEM("{\"id\":\"t1\",\"label\":{},\"vector\":" V "}"), NULL, false, 400, "invalid_label", NULL},
    {"label 1.5", "POST", ITEMS, J, ITEM("{\"id\":\"t1\",\"label\":1.5,\"vector\":" V "}"), NULL, false, 400, "invalid_label", NULL},
    {"label of 257 bytes", "POST", ITEMS, J, ITEM("{\"id\":\"t1\",\"label\":\"@LABEL257@\",\"vector\":" V "}"), NULL, false, 400, "invalid_label", NULL},
    {"metadata an array", "POST", ITEMS, J, ITEM("{\"id\":\"t1\",\"metadata\":[1],\"vector\":" V "}"), NULL, false, 400, "invalid_metadata", NULL},
    {"metadata a string", "POST", ITEMS, J, ITEM("{\"id\":\"t1\",\"metadata\":\"{}\",\"vector\":" V "}"), NULL, false, 400, "invalid_metadata", NULL},
    {"metadata a number", "POST", ITEMS, J, ITEM("{\"id\":\"t1\",\"metadata\":5,\"vector\":" V "}"), NULL, false, 400, "invalid_metadata", NULL},
    {"metadata true", "POST", ITEMS, J, ITEM("{\"id\":\"t1\",\"metadata\":true,\"vector\":" V "}"), NULL, false, 400, "invalid_metadata", NULL},
    {"metadata of 17000 bytes", "POST", ITEMS, J, ITEM("{\"id\":\"t1\",\"metadata\":@META17K@,\"vector\":" V "}"), NULL, false, 400, "invalid_metadata", NULL},
    {"metadata of 16385 bytes", "POST", ITEMS, J, ITEM("{\"id\":\"t1\",\"metadata\":@META16K1@,\"vector\":" V "}"), NULL, false, 400, "invalid_metadata", NULL},

    /* vectors in an upsert */
    {"3 values for dim 4", "POST", ITEMS, J, ITEM("{\"id\":\"t1\",\"vector\":[1,2,3]}"), NULL, false, 400, "dimension_mismatch", "3"},
    {"5 values for dim 4", "POST", ITEMS, J, ITEM("{\"id\":\"t1\",\"vector\":[1,2,3,4,5]}"), NULL, false, 400, "dimension_mismatch", NULL},
    {"empty vector", "POST", ITEMS, J, ITEM("{\"id\":\"t1\",\"vector\":[]}"), NULL, false, 400, "dimension_mismatch", NULL},
    {"base64 of 3 floats", "POST", ITEMS, J, ITEM("{\"id\":\"t1\",\"vector_b64\":\"@B64DIM3@\"}"), NULL, false, 400, "dimension_mismatch", NULL},
    {"base64 of 5 floats", "POST", ITEMS, J, ITEM("{\"id\":\"t1\",\"vector_b64\":\"@B64DIM5@\"}"), NULL, false, 400, "dimension_mismatch", NULL},
    {"1e999", "POST", ITEMS, J, ITEM("{\"id\":\"t1\",\"vector\":[1,1e999,2,3]}"), NULL, false, 400, "invalid_vector", NULL},
    {"-1e999", "POST", ITEMS, J, ITEM("{\"id\":\"t1\",\"vector\":[-1e999,1,2,3]}"), NULL, false, 400, "invalid_vector", NULL},
    {"1e39, beyond float32", "POST", ITEMS, J, ITEM("{\"id\":\"t1\",\"vector\":[1,2,3,1e39]}"), NULL, false, 400, "invalid_vector", NULL},
    {"a string value", "POST", ITEMS, J, ITEM("{\"id\":\"t1\",\"vector\":[1,\"2\",3,4]}"), NULL, false, 400, "invalid_vector", NULL},
    {"a null value", "POST", ITEMS, J, ITEM("{\"id\":\"t1\",\"vector\":[1,2,null,4]}"), NULL, false, 400, "invalid_vector", NULL},
    {"vector an object", "POST", ITEMS, J, ITEM("{\"id\":\"t1\",\"vector\":{\"0\":1}}"), NULL, false, 400, "invalid_vector", NULL},
    {"base64 NaN", "POST", ITEMS, J, ITEM("{\"id\":\"t1\",\"vector_b64\":\"@B64NAN@\"}"), NULL, false, 400, "invalid_vector", NULL},
    {"base64 +Inf", "POST", ITEMS, J, ITEM("{\"id\":\"t1\",\"vector_b64\":\"@B64INF@\"}"), NULL, false, 400, "invalid_vector", NULL},
    {"base64 -Inf", "POST", ITEMS, J, ITEM("{\"id\":\"t1\",\"vector_b64\":\"@B64NINF@\"}"), NULL, false, 400, "invalid_vector", NULL},
    {"base64 of 15 bytes", "POST", ITEMS, J, ITEM("{\"id\":\"t1\",\"vector_b64\":\"@B64BYTES15@\"}"), NULL, false, 400, "invalid_vector", NULL},
    {"base64 of 2 bytes", "POST", ITEMS, J, ITEM("{\"id\":\"t1\",\"vector_b64\":\"AAA=\"}"), NULL, false, 400, "invalid_vector", NULL},
    {"base64 of 5 chars", "POST", ITEMS, J, ITEM("{\"id\":\"t1\",\"vector_b64\":\"AAAAA\"}"), NULL, false, 400, "invalid_vector", NULL},
    {"not base64", "POST", ITEMS, J, ITEM("{\"id\":\"t1\",\"vector_b64\":\"!!!!!!!!\"}"), NULL, false, 400, "invalid_vector", NULL},
    {"empty base64", "POST", ITEMS, J, ITEM("{\"id\":\"t1\",\"vector_b64\":\"\"}"), NULL, false, 400, "invalid_vector", NULL},
    {"base64 a number", "POST", ITEMS, J, ITEM("{\"id\":\"t1\",\"vector_b64\":5}"), NULL, false, 400, "invalid_vector", NULL},
    {"zero vector for cosine", "POST", "/v1/galleries/g-cos/items", J, ITEM("{\"id\":\"t1\",\"vector\":[0,0,0,0]}"), NULL, false, 400, "invalid_vector", NULL},
    {"vector and vector_b64", "POST", ITEMS, J, ITEM("{\"id\":\"t1\",\"vector\":" V ",\"vector_b64\":\"@B64OK@\"}"), NULL, false, 400, "invalid_vector", NULL},
    {"no vector", "POST", ITEMS, J, ITEM("{\"id\":\"t1\"}"), NULL, false, 400, "invalid_vector", NULL},

    /* the shape of an upsert */
    {"items missing", "POST", ITEMS, J, "{}", NULL, false, 400, "invalid_argument", NULL},
    {"items empty", "POST", ITEMS, J, "{\"items\":[]}", NULL, false, 400, "invalid_argument", NULL},
    {"items an object", "POST", ITEMS, J, "{\"items\":{\"id\":\"t1\"}}", NULL, false, 400, "invalid_argument", NULL},
    {"an item a number", "POST", ITEMS, J, ITEM("5"), NULL, false, 400, "invalid_argument", "item 0"},
    {"unknown item field", "POST", ITEMS, J, ITEM("{\"id\":\"t1\",\"vector\":" V ",\"colour\":1}"), NULL, false, 400, "unknown_field", "colour"},
    {"unknown upsert field", "POST", ITEMS, J, "{\"items\":[{\"id\":\"t1\",\"vector\":" V "}],\"mode\":1}", NULL, false, 400, "unknown_field", NULL},

    /* search */
    {"k 0", "POST", SEARCH, J, "{\"k\":0,\"vector\":" V "}", NULL, false, 400, "invalid_k", NULL},
    {"k 1001", "POST", SEARCH, J, "{\"k\":1001,\"vector\":" V "}", NULL, false, 400, "invalid_k", NULL},
    {"k -1", "POST", SEARCH, J, "{\"k\":-1,\"vector\":" V "}", NULL, false, 400, "invalid_k", NULL},
    {"k 1.5", "POST", SEARCH, J, "{\"k\":1.5,\"vector\":" V "}", NULL, false, 400, "invalid_k", NULL},
    {"k a string", "POST", SEARCH, J, "{\"k\":\"10\",\"vector\":" V "}", NULL, false, 400, "invalid_k", NULL},
    {"k 1e999", "POST", SEARCH, J, "{\"k\":1e999,\"vector\":" V "}", NULL, false, 400, "invalid_k", NULL},
    {"search 3 values", "POST", SEARCH, J, "{\"vector\":[1,2,3]}", NULL, false, 400, "dimension_mismatch", NULL},
    {"search base64 of 5 floats", "POST", SEARCH, J, "{\"vector_b64\":\"@B64DIM5@\"}", NULL, false, 400, "dimension_mismatch", NULL},
    {"search 1e999", "POST", SEARCH, J, "{\"vector\":[1e999,1,2,3]}", NULL, false, 400, "invalid_vector", NULL},
    {"search base64 NaN", "POST", SEARCH, J, "{\"vector_b64\":\"@B64NAN@\"}", NULL, false, 400, "invalid_vector", NULL},
    {"search base64 of 15 bytes", "POST", SEARCH, J, "{\"vector_b64\":\"@B64BYTES15@\"}", NULL, false, 400, "invalid_vector", NULL},
    {"search zero vector, cosine", "POST", "/v1/galleries/g-cos/search", J, "{\"vector\":[0,0,0,0]}", NULL, false, 400, "invalid_vector", NULL},
    {"search batch, second bad", "POST", SEARCH, J, "{\"vectors\":[" V ",[1,2]]}", NULL, false, 400, "dimension_mismatch", "query 1"},
    {"search batch, base64 Inf", "POST", SEARCH, J, "{\"vectors\":[\"@B64OK@\",\"@B64INF@\"]}", NULL, false, 400, "invalid_vector", "query 1"},
    {"search batch empty", "POST", SEARCH, J, "{\"vectors\":[]}", NULL, false, 400, "invalid_vector", NULL},
    {"search no vector", "POST", SEARCH, J, "{\"k\":3}", NULL, false, 400, "invalid_vector", NULL},
    {"search vector and vectors", "POST", SEARCH, J, "{\"vector\":" V ",\"vectors\":[" V "]}", NULL, false, 400, "invalid_vector", NULL},
    {"search include labels", "POST", SEARCH, J, "{\"vector\":" V ",\"include\":[\"labels\"]}", NULL, false, 400, "invalid_argument", NULL},
    {"search include a string", "POST", SEARCH, J, "{\"vector\":" V ",\"include\":\"label\"}", NULL, false, 400, "invalid_argument", NULL},
    {"search unknown field", "POST", SEARCH, J, "{\"vector\":" V ",\"nprobe\":4}", NULL, false, 400, "unknown_field", NULL},

    /* unknown things */
    {"unknown model", "GET", "/v1/models/nope", NULL, NULL, NULL, false, 404, "not_found", NULL},
    {"gallery of an unknown model", "POST", GALLERIES, J, "{\"name\":\"g-new\",\"model\":\"nope\"}", NULL, false, 404, "not_found", NULL},
    {"upsert of an unknown model", "POST", ITEMS, J, "{\"model\":\"nope\",\"items\":[{\"id\":\"t1\",\"vector\":" V "}]}", NULL, false, 404, "not_found", NULL},
    {"search of an unknown model", "POST", SEARCH, J, "{\"model\":\"nope\",\"vector\":" V "}", NULL, false, 404, "not_found", NULL},
    {"unknown gallery", "GET", "/v1/galleries/nope", NULL, NULL, NULL, false, 404, "not_found", NULL},
    {"PATCH unknown gallery", "PATCH", "/v1/galleries/nope", J, "{\"query_policy\":\"any\"}", NULL, false, 404, "not_found", NULL},
    {"DELETE unknown gallery", "DELETE", "/v1/galleries/nope", NULL, NULL, NULL, false, 404, "not_found", NULL},
    {"upsert to unknown gallery", "POST", "/v1/galleries/nope/items", J, ITEM("{\"id\":\"t1\",\"vector\":" V "}"), NULL, false, 404, "not_found", NULL},
    {"search unknown gallery", "POST", "/v1/galleries/nope/search", J, "{\"vector\":" V "}", NULL, false, 404, "not_found", NULL},
    {"item of unknown gallery", "GET", "/v1/galleries/nope/items/i1", NULL, NULL, NULL, false, 404, "not_found", NULL},
    {"unknown item", "GET", "/v1/galleries/g-l2/items/nope", NULL, NULL, NULL, false, 404, "not_found", NULL},
    {"DELETE unknown item", "DELETE", "/v1/galleries/g-l2/items/nope", NULL, NULL, NULL, false, 404, "not_found", NULL},
    {"deleted item", "GET", "/v1/galleries/g-l2/items/i5", NULL, NULL, NULL, false, 404, "not_found", NULL},

    /* conflicts */
    {"duplicate model", "POST", MODELS, J, "{\"name\":\"m-l2\",\"dim\":4,\"metric\":\"l2\"}", NULL, false, 409, "already_exists", NULL},
    {"duplicate model, other shape", "POST", MODELS, J, "{\"name\":\"m-ip\",\"dim\":8,\"metric\":\"l2\"}", NULL, false, 409, "already_exists", NULL},
    {"duplicate gallery", "POST", GALLERIES, J, "{\"name\":\"g-l2\",\"model\":\"m-l2\"}", NULL, false, 409, "already_exists", NULL},
    {"duplicate gallery, other model", "POST", GALLERIES, J, "{\"name\":\"g-l2\",\"model\":\"m-ip\"}", NULL, false, 409, "already_exists", NULL},
    {"unverified query model", "POST", SEARCH, J, "{\"model\":\"m-l2-v2\",\"vector\":" V "}", NULL, false, 409, "model_not_verified", NULL},

    /* PATCH and index specs */
    {"policy sometimes", "PATCH", "/v1/galleries/g-l2", J, "{\"query_policy\":\"sometimes\"}", NULL, false, 400, "invalid_argument", NULL},
    {"policy missing", "PATCH", "/v1/galleries/g-l2", J, "{}", NULL, false, 400, "invalid_argument", NULL},
    {"policy a number", "PATCH", "/v1/galleries/g-l2", J, "{\"query_policy\":1}", NULL, false, 400, "invalid_argument", NULL},
    {"PATCH unknown field", "PATCH", "/v1/galleries/g-l2", J, "{\"query_policy\":\"any\",\"name\":\"x\"}", NULL, false, 400, "unknown_field", NULL},
    {"index Bogus", "POST", GALLERIES, J, "{\"name\":\"g-new\",\"model\":\"m-l2\",\"index\":\"Bogus\"}", NULL, false, 400, "invalid_index", NULL},
    {"index empty", "POST", GALLERIES, J, "{\"name\":\"g-new\",\"model\":\"m-l2\",\"index\":\"\"}", NULL, false, 400, "invalid_index", NULL},
    {"index of 129 bytes", "POST", GALLERIES, J, "{\"name\":\"g-new\",\"model\":\"m-l2\",\"index\":\"@SPEC129@\"}", NULL, false, 400, "invalid_index", NULL},
    {"index a number", "POST", GALLERIES, J, "{\"name\":\"g-new\",\"model\":\"m-l2\",\"index\":5}", NULL, false, 400, "invalid_argument", NULL},
    {"PQ3 for dim 4", "POST", GALLERIES, J, "{\"name\":\"g-new\",\"model\":\"m-l2\",\"index\":\"PQ3\"}", NULL, false, 400, "invalid_index", NULL},

    /* routing */
    {"unknown route", "GET", "/v1/nothing", NULL, NULL, NULL, false, 404, "no_route", NULL},
    {"trailing slash", "GET", "/v1/models/", NULL, NULL, NULL, false, 404, "no_route", NULL},
    {"PUT models", "PUT", MODELS, J, "{}", NULL, false, 405, "method_not_allowed", NULL},
    {"PUT items", "PUT", ITEMS, J, "{}", NULL, false, 405, "method_not_allowed", NULL},
    {"GET search", "GET", SEARCH, NULL, NULL, NULL, false, 405, "method_not_allowed", NULL},
    {"GET with a body", "GET", "/v1/models", J, "{}", NULL, false, 400, "unexpected_body", NULL},
    {"vectors=maybe", "GET", "/v1/galleries/g-l2/items/i1?vectors=maybe", NULL, NULL, NULL, false, 400, "invalid_argument", NULL},

    /* what the path says */
    {"NUL in an item's path", "DELETE", "/v1/galleries/g-l2/items/i1%00x", NULL, NULL, NULL, false, 400, "invalid_path", NULL},
    {"NUL in an item's path, GET", "GET", "/v1/galleries/g-l2/items/i1%00x", NULL, NULL, NULL, false, 400, "invalid_path", NULL},
    {"NUL in a gallery's path", "GET", "/v1/galleries/g-l2%00x", NULL, NULL, NULL, false, 400, "invalid_path", NULL},
    {"NUL in a search path", "POST", "/v1/galleries/g-l2%00x/search", J, "{\"vector\":" V "}", NULL, false, 400, "invalid_path", NULL},
    {"invalid UTF-8 in an item's path", "GET", "/v1/galleries/g-l2/items/%ff%fe", NULL, NULL, NULL, false, 400, "invalid_path", NULL},
    {"invalid UTF-8 in a route", "GET", "/v1/%c0%af", NULL, NULL, NULL, false, 400, "invalid_path", NULL},

    /* the all-or-nothing batch of 1000 */
    {"batch: item 500 dim 3", "POST", ITEMS, J, NULL, batch_dim, false, 400, "dimension_mismatch", "item 500"},
    {"batch: item 500 base64 NaN", "POST", ITEMS, J, NULL, batch_nan, false, 400, "invalid_vector", "item 500"},
    {"batch: item 500 1e999", "POST", ITEMS, J, NULL, batch_inf, false, 400, "invalid_vector", "item 500"},
    {"batch: item 500 id too long", "POST", ITEMS, J, NULL, batch_id, false, 400, "invalid_id", "item 500"},
    {"batch: item 500 metadata array", "POST", ITEMS, J, NULL, batch_meta, false, 400, "invalid_metadata", "item 500"},
    {"batch: item 500 base64 of 15 bytes", "POST", ITEMS, J, NULL, batch_b64, false, 400, "invalid_vector", "item 500"},
    {"batch: item 0 dim 5", "POST", ITEMS, J, NULL, batch_first, false, 400, "dimension_mismatch", "item 0"},
    {"batch: item 999 empty", "POST", ITEMS, J, NULL, batch_last, false, 400, "dimension_mismatch", "item 999"},
    {"batch: item 500 repeats item 0's id", "POST", ITEMS, J, NULL, batch_repeat, false, 400, "invalid_argument", "item 500"},
};

/*
 * What must not change when a request is refused: the model and gallery
 * listings, the fixture galleries, an item with its vector, and searches.
 * Returns a malloc'd string.
 */
static char *fingerprint(td_http *h)
{
    static const struct {
        const char *method, *path, *body;
    } reads[] = {
        {"GET", "/v1/models", NULL},
        {"GET", "/v1/galleries", NULL},
        {"GET", "/v1/galleries/g-l2", NULL},
        {"GET", "/v1/galleries/g-l2/items/i1?vectors=true", NULL},
        {"GET", "/v1/galleries/g-l2/items/t1", NULL},
        {"GET", "/v1/galleries/g-cos/items/t1", NULL},
        {"GET", "/v1/galleries/g-l2/items/batch-0", NULL},
        {"GET", "/v1/galleries/g-l2/items/batch-999", NULL},
        {"POST", "/v1/galleries/g-l2/search", "{\"k\":1000,\"vector\":[0.5,1,2,3],\"include\":[\"label\",\"metadata\"]}"},
        {"POST", "/v1/galleries/g-cos/search", "{\"k\":5,\"vector\":[0.5,1,2,3]}"},
    };
    char *all = strdup("");
    for (size_t i = 0; i < sizeof reads / sizeof reads[0]; i++) {
        td_reply r;
        td_http_json(h, reads[i].method, reads[i].path, reads[i].body, &r);
        char *next = td_fmt("%s%s %s -> %ld %s\n", all, reads[i].method, reads[i].path,
                         r.status, r.body);
        free(all);
        all = next;
        td_reply_finish(&r);
    }
    return all;
}

static void test_bad_input(td_http *h)
{
    char *before = fingerprint(h);
    size_t n = sizeof bad_cases / sizeof bad_cases[0];
    for (size_t i = 0; i < n; i++) {
        const bad_case *c = &bad_cases[i];
        char *body = c->make ? c->make() : c->body ? expand(c->body) : NULL;
        td_request req = {c->method, c->path, c->content_type, body, body ? strlen(body) : 0,
                          c->chunked};
        td_reply r;
        td_http_send(h, &req, &r);
        const char *code = td_reply_error_code(&r);
        const char *msg = td_reply_error_message(&r);
        bool ok = r.status == c->status && (!c->code || (code && strcmp(code, c->code) == 0)) &&
                  (!c->message_has || (msg && strstr(msg, c->message_has)));
        if (!ok)
            fprintf(stderr, "case \"%s\": want %ld %s, got %ld: %.300s%s\n", c->what, c->status,
                    c->code ? c->code : "", r.status, r.status ? r.body : r.error,
                    r.len > 300 ? "..." : "");
        CHECK_EQ(r.status, c->status);
        if (!utf8_ok(r.body, r.len))
            fprintf(stderr, "case \"%s\": the reply is not valid UTF-8: %s\n", c->what, r.body);
        CHECK(utf8_ok(r.body, r.len));
        if (r.status == c->status) {
            check_error_reply(&r, c->status, c->code);
            if (c->message_has)
                CHECK(msg && strstr(msg, c->message_has));
        }
        td_reply_finish(&r);
        free(body);

        /* Still up, and nothing changed. */
        td_reply health;
        CHECK_EQ(td_http_json(h, "GET", "/healthz", NULL, &health), 200);
        td_reply_finish(&health);
        char *after = fingerprint(h);
        if (strcmp(before, after) != 0) {
            fprintf(stderr, "case \"%s\" changed stored data:\n--- before\n%s--- after\n%s",
                    c->what, before, after);
            CHECK(!"stored data changed");
            free(before);
            before = after;
        } else {
            free(after);
        }
    }
    fprintf(stderr, "%zu bad-input cases sent\n", n);
    free(before);
}

int main(void)
{
    td_rng rng = {td_seed(20260101)};
    td_daemon *d = td_daemon_create();
    REQUIRE(d != NULL);
    const char *args[] = {"--max-body", "256K", NULL};
    REQUIRE(td_daemon_start(d, args));
    td_http *h = td_http_create(d);
    REQUIRE(h != NULL);
    double t0 = td_now();

    test_health(h);
    test_models(h);
    test_galleries(h);
    test_upsert(h, &rng);
    test_items_get(h);
    test_search(h);
    test_item_delete(h);
    test_policy(h);
    test_gallery_delete(h);
    test_body_limit_edge(h);
    test_bad_input(h);
    test_metrics(h);

    fprintf(stderr, "API checks took %.1f s\n", td_now() - t0);
    td_http_destroy(h);
    CHECK_EQ(td_daemon_stop(d), 0);
    td_daemon_destroy(d);
    return check_exit();
}
