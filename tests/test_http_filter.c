/*
 * test_http_filter.c - filtered search (SPEC.md §3.9) over HTTP, against
 * tests/filter_ref.py: numpy's brute force over the items its own reading
 * of the filter language matches.
 *
 * One data set (N items of DIM dims, cosine; labels and metadata made so
 * that the filters below match from all to none, 0.1 % among them; some
 * items then re-upserted with other metadata and their label kept, some
 * deleted; half of them given a second model's vector) goes into three
 * galleries: Flat, HNSW16 and IVF64,Flat.  For every filter (every
 * operator, and implicit and, and/or/not nested):
 *   - Flat: the hits are exactly the reference's top k (ids, and scores
 *     to float precision), for the gallery model and for a hot-refresh
 *     query of the second model, in batches of 6 queries;
 *   - HNSW and IVF: every query gets min(k, matching) hits, all matching,
 *     with recall@k against the reference of at least 0.8 (HNSW16 on
 *     clustered data; 0.1 %: exact);
 *   - "matched" is the reference's count.
 * Then bad filters: 400 invalid_filter whose message starts with the
 * position.  Then a restart, and kill -9 and restart: the fields are
 * rebuilt from the store and the Flat answers are still exact.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <curl/curl.h>

#include "check.h"
#include "daemon.h"

#define N 30000
#define CLUSTERS 300
#define DIM 128
#define NQ 6
#define K 10

static const char *ref_script;
static float *x, *x2, *q;
static unsigned char has2[N], alive[N];
static char dir[] = "/tmp/test_http_filter.XXXXXX";

/* Every operator; selectivities from none to all, 0.1 % (rare). */
static const char *const filters[] = {
    "{\"label\":\"u3\"}",
    "{\"label\":{\"in\":[\"u1\",\"u2\",\"u39\"]}}",
    "{\"label\":39}",
    "{\"metadata.album\":\"a2\"}",
    "{\"metadata.year\":{\"gte\":2010,\"lt\":2020}}",
    "{\"metadata.year\":{\"gt\":2025}}",
    "{\"metadata.year\":{\"lte\":2003}}",
    "{\"metadata.year\":{\"eq\":\"2020\"}}",
    "{\"metadata.fav\":true}",
    "{\"metadata.score\":{\"in\":[1.5,2.5,\"1.5\"]}}",
    "{\"exists\":\"metadata.gps\"}",
    "{\"exists\":\"label\"}",
    "{\"not\":{\"metadata.album\":\"a2\"}}",
    "{\"and\":[{\"metadata.fav\":true},{\"or\":[{\"label\":\"u1\"},"
        "{\"metadata.year\":{\"gte\":2025}}]}]}",
    "{\"metadata.rare\":true}",
    "{\"or\":[{\"metadata.album\":\"a1\"},{\"metadata.album\":\"a2\"},"
        "{\"metadata.album\":\"a3\"},{\"metadata.album\":\"a4\"}]}",
    "{\"metadata.album\":\"nope\"}",
    "{\"metadata.year\":{\"gte\":2000},\"label\":\"u4\"}",
    "{\"metadata.album\":\"moved\"}",
};
#define N_FILTERS (sizeof filters / sizeof filters[0])
#define RARE 14

/* Item i's label as sent (JSON), or NULL when it has none. */
static const char *label_json(int i, char *buf, size_t size)
{
    if (i % 97 == 5)
        return NULL;
    if (i % 40 == 39)
        snprintf(buf, size, "39");       /* an integer label: read as "39" */
    else
        snprintf(buf, size, "\"u%d\"", i % 40);
    return buf;
}

/* Item i's metadata as first sent (JSON), or NULL. */
static const char *metadata_json(int i, char *buf, size_t size)
{
    if (i % 11 == 0)
        return NULL;
    int n = snprintf(buf, size, "{\"album\":\"a%d\",\"fav\":%s,\"score\":%g", i % 7,
                     i % 3 == 0 ? "true" : "false", (i % 100) / 10.0);
    if (i % 50 == 3)
        n += snprintf(buf + n, size - (size_t)n, ",\"year\":\"2020\"");
    else
        n += snprintf(buf + n, size - (size_t)n, ",\"year\":%d", 2000 + i % 30);
    if (i % 10 == 1)
        n += snprintf(buf + n, size - (size_t)n, ",\"gps\":[1,2]");
    if (i % 10 == 2)
        n += snprintf(buf + n, size - (size_t)n, ",\"gps\":null");
    if (i % 1000 == 7)
        n += snprintf(buf + n, size - (size_t)n, ",\"rare\":true");
    snprintf(buf + n, size - (size_t)n, "}");
    return buf;
}

/* Items re-upserted with this metadata and no label (which keeps it). */
#define MOVED 200
static const char moved_json[] = "{\"album\":\"moved\",\"year\":1999}";

static bool deleted(int i)
{
    return i % 500 == 250;
}

static void make_data(void)
{
    td_rng rng = {td_seed(14)};
    x = malloc((size_t)N * DIM * sizeof *x);
    x2 = malloc((size_t)N * DIM * sizeof *x2);
    q = malloc((size_t)NQ * DIM * sizeof *q);
    REQUIRE(x && x2 && q);
    /* Clustered, as embeddings are: random points in 128 dims give every
     * ANN index a poor recall, filtered or not. */
    float *centers = malloc((size_t)CLUSTERS * DIM * sizeof *centers);
    REQUIRE(centers);
    for (size_t i = 0; i < (size_t)CLUSTERS * DIM; i++)
        centers[i] = (float)td_rng_gauss(&rng);
    for (size_t i = 0; i < N; i++) {
        const float *c = centers + (td_rng_next(&rng) % CLUSTERS) * DIM;
        for (size_t j = 0; j < DIM; j++) {
            x[i * DIM + j] = c[j] + 0.4f * (float)td_rng_gauss(&rng);
            x2[i * DIM + j] = x[i * DIM + j] + 0.2f * (float)td_rng_gauss(&rng);
        }
    }
    for (size_t i = 0; i < NQ; i++) {
        const float *c = centers + (td_rng_next(&rng) % CLUSTERS) * DIM;
        for (size_t j = 0; j < DIM; j++)
            q[i * DIM + j] = c[j] + 0.4f * (float)td_rng_gauss(&rng);
    }
    free(centers);
    for (int i = 0; i < N; i++) {
        has2[i] = i % 2 == 0;
        alive[i] = !deleted(i);
    }
}

/* Upserts items [lo, hi) of model (vectors v) with labels and metadata
 * (what: 0 none, 1 as first made, 2 moved, 3 as they end: label as
 * made, metadata moved below MOVED). */
static void upsert(td_http *h, const char *gallery, const char *model, const float *v,
                   int lo, int hi, int what, int step)
{
    td_text t = {0};
    char lb[32], mb[256];
    td_text_append(&t, "{\"model\":\"%s\",\"items\":[", model);
    for (int i = lo; i < hi; i += step) {
        char *b64 = td_b64_floats(v + (size_t)i * DIM, DIM);
        REQUIRE(b64);
        td_text_append(&t, "%s{\"id\":\"i%d\",\"vector_b64\":\"%s\"", i > lo ? "," : "", i, b64);
        free(b64);
        const char *l = what == 1 || what == 3 ? label_json(i, lb, sizeof lb) : NULL;
        const char *m = what == 1 || (what == 3 && i >= MOVED) ? metadata_json(i, mb, sizeof mb)
                        : what >= 2 ? moved_json : NULL;
        if (l)
            td_text_append(&t, ",\"label\":%s", l);
        if (m)
            td_text_append(&t, ",\"metadata\":%s", m);
        td_text_append(&t, "}");
    }
    td_text_append(&t, "]}");
    char *path = td_fmt("/v1/galleries/%s/items", gallery);
    td_reply r;
    CHECK_EQ(td_http_call(h, &r, 200, "POST", path, t.s), 200);
    td_reply_finish(&r);
    free(path);
    free(t.s);
}

/*
 * Makes gallery name of index and fills it.  stepwise: as writes come
 * (metadata replaced with the label kept, in a second upsert); else in
 * one upsert of the end state, which an ANN index takes without the
 * rebuild that re-adding ids asks of it.
 */
static void build_gallery(td_http *h, const char *name, const char *index, bool stepwise)
{
    td_reply r;
    char *body = td_fmt("{\"name\":\"%s\",\"model\":\"m1\",\"index\":\"%s\"}", name, index);
    CHECK_EQ(td_http_call(h, &r, 201, "POST", "/v1/galleries", body), 201);
    td_reply_finish(&r);
    free(body);
    char *path = td_fmt("/v1/galleries/%s", name);
    CHECK_EQ(td_http_call(h, &r, 200, "PATCH", path, "{\"query_policy\":\"any\"}"), 200);
    td_reply_finish(&r);
    free(path);
    for (int lo = 0; lo < N; lo += 10000)
        upsert(h, name, "m1", x, lo, lo + 10000, stepwise ? 1 : 3, 1);
    if (stepwise)
        upsert(h, name, "m1", x, 0, MOVED, 2, 1);
    upsert(h, name, "m2", x2, 0, N, 0, 2);
    for (int i = 0; i < N; i++) {
        if (!deleted(i))
            continue;
        path = td_fmt("/v1/galleries/%s/items/i%d", name, i);
        CHECK_EQ(td_http_call(h, &r, 204, "DELETE", path, NULL), 204);
        td_reply_finish(&r);
        free(path);
    }
}

static void write_file(const char *name, const void *p, size_t bytes)
{
    char *path = td_fmt("%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    REQUIRE(f && fwrite(p, 1, bytes, f) == bytes && fclose(f) == 0);
    free(path);
}

static void *read_file(const char *name, size_t bytes)
{
    char *path = td_fmt("%s/%s", dir, name);
    FILE *f = fopen(path, "rb");
    void *p = malloc(bytes);
    REQUIRE(f && p && fread(p, 1, bytes, f) == bytes);
    fclose(f);
    unlink(path);
    free(path);
    return p;
}

static int64_t *ref_base, *ref_hot, *ref_matched;
static float *ref_base_sc, *ref_hot_sc;

/* Writes the final state and runs the reference. */
static void run_reference(void)
{
    REQUIRE(mkdtemp(dir));
    write_file("x.f32", x, (size_t)N * DIM * sizeof *x);
    write_file("x2.f32", x2, (size_t)N * DIM * sizeof *x2);
    write_file("q.f32", q, (size_t)NQ * DIM * sizeof *q);
    write_file("has2.u8", has2, N);
    write_file("alive.u8", alive, N);
    td_text t = {0};
    char lb[32], mb[256];
    for (int i = 0; i < N; i++) {
        const char *l = label_json(i, lb, sizeof lb);
        const char *m = i < MOVED ? moved_json : metadata_json(i, mb, sizeof mb);
        if (l && l[0] != '"')
            td_text_append(&t, "{\"label\":\"%s\"", l);   /* stored as text */
        else
            td_text_append(&t, "{\"label\":%s", l ? l : "null");
        td_text_append(&t, ",\"metadata\":%s}\n", m ? m : "null");
    }
    write_file("items.jsonl", t.s, t.len);
    free(t.s);
    t = (td_text){0};
    for (size_t f = 0; f < N_FILTERS; f++)
        td_text_append(&t, "%s\n", filters[f]);
    write_file("filters.jsonl", t.s, t.len);
    free(t.s);
    char *cmd = td_fmt("/usr/bin/python3 '%s' '%s' %d %d %d %d", ref_script, dir, N, DIM, NQ, K);
    REQUIRE(system(cmd) == 0);
    free(cmd);
    size_t rows = N_FILTERS * NQ * K;
    ref_base = read_file("base.i64", rows * sizeof *ref_base);
    ref_hot = read_file("hot.i64", rows * sizeof *ref_hot);
    ref_base_sc = read_file("base.f32", rows * sizeof *ref_base_sc);
    ref_hot_sc = read_file("hot.f32", rows * sizeof *ref_hot_sc);
    ref_matched = read_file("matched.i64", N_FILTERS * sizeof *ref_matched);
    static const char *const inputs[] = {"x.f32", "x2.f32", "q.f32", "has2.u8", "alive.u8",
                                         "items.jsonl", "filters.jsonl"};
    for (size_t i = 0; i < sizeof inputs / sizeof inputs[0]; i++) {
        char *path = td_fmt("%s/%s", dir, inputs[i]);
        unlink(path);
        free(path);
    }
    REQUIRE(rmdir(dir) == 0);
}

/* The item number of id "i<n>". */
static int item_number(const char *id)
{
    return id && id[0] == 'i' ? atoi(id + 1) : -1;
}

typedef struct verdict {
    double recall;      /* mean over queries of |hits ∩ ref| / |ref| */
    bool exact;         /* hits == ref, scores within 1e-4 */
    bool counts_ok;     /* every query has min(K, matched) hits */
    bool matched_ok;    /* "matched" is the reference's */
} verdict;

/* Added to every search body (",\"exact\":true"), "" for none. */
static const char *search_extra = "";

static verdict search(td_http *h, const char *gallery, const char *model, size_t f)
{
    const int64_t *ref = strcmp(model, "m1") == 0 ? ref_base : ref_hot;
    const float *ref_sc = strcmp(model, "m1") == 0 ? ref_base_sc : ref_hot_sc;
    td_text t = {0};
    td_text_append(&t, "{\"model\":\"%s\",\"k\":%d%s,\"filter\":%s,\"vectors\":", model, K,
                   search_extra, filters[f]);
    td_text_append_b64_rows(&t, q, NQ, DIM);
    td_text_append(&t, "}");
    char *path = td_fmt("/v1/galleries/%s/search", gallery);
    td_reply r;
    verdict v = {0, true, true, false};
    if (td_http_call(h, &r, 200, "POST", path, t.s) != 200) {
        v.exact = v.counts_ok = false;
        goto out;
    }
    v.matched_ok = td_json_num(r.json, "matched") == (double)ref_matched[f];
    size_t want = ref_matched[f] < K ? (size_t)ref_matched[f] : K;
    for (int i = 0; i < NQ; i++) {
        const int64_t *row = ref + (f * NQ + (size_t)i) * K;
        const float *rsc = ref_sc + (f * NQ + (size_t)i) * K;
        const cJSON *hits = cJSON_GetArrayItem(td_json_at(r.json, "results"), i);
        size_t got = (size_t)cJSON_GetArraySize(hits), found = 0;
        if (got != want)
            v.counts_ok = v.exact = false;
        for (size_t j = 0; j < got; j++) {
            const cJSON *hit = cJSON_GetArrayItem(hits, (int)j);
            int id = item_number(td_json_str(hit, "id"));
            for (size_t m = 0; m < want; m++)
                found += row[m] == id;
            if (j >= want || row[j] != id ||
                fabs(td_json_num(hit, "score") - rsc[j]) > 1e-4)
                v.exact = false;
        }
        v.recall += want ? (double)found / (double)want : 1.0;
    }
    v.recall /= NQ;
out:
    if (!v.exact && strcmp(gallery, "flat") == 0)
        fprintf(stderr, "%s %s filter %zu %s: not exact\n", gallery, model, f, filters[f]);
    td_reply_finish(&r);
    free(path);
    free(t.s);
    return v;
}

static void check_all(td_http *h, const char *gallery, double min_recall)
{
    for (size_t f = 0; f < N_FILTERS; f++) {
        for (int hot = 0; hot < 2; hot++) {
            verdict v = search(h, gallery, hot ? "m2" : "m1", f);
            CHECK(v.matched_ok);
            CHECK(v.counts_ok);
            if (min_recall >= 1.0 || f == RARE) {
                CHECK(v.exact);
            } else {
                CHECK(v.recall >= min_recall);
                if (v.recall < min_recall)
                    fprintf(stderr, "%s filter %zu %s recall %.3f\n", gallery, f,
                            filters[f], v.recall);
            }
        }
    }
}

/* Bad filters: 400 invalid_filter, the message starting with where. */
static void test_bad_input(td_http *h)
{
    static const struct {
        const char *filter, *where;
    } cases[] = {
        {"[1]", "filter: "},
        {"\"label\"", "filter: "},
        {"{}", "filter: "},
        {"{\"and\":[]}", "filter.and: "},
        {"{\"or\":{}}", "filter.or: "},
        {"{\"and\":[{\"label\":\"a\"},{\"metadata.year\":{\"gte\":\"2020\"}}]}",
         "filter.and[1].metadata.year.gte: "},
        {"{\"metadata.year\":{\"near\":3}}", "filter.metadata.year.near: "},
        {"{\"label\":{\"lt\":3}}", "filter.label.lt: "},
        {"{\"colour\":\"red\"}", "filter.colour: "},
        {"{\"metadata.\":1}", "filter.metadata.: "},
        {"{\"metadata.a\":null}", "filter.metadata.a: "},
        {"{\"metadata.a\":{\"in\":[]}}", "filter.metadata.a.in: "},
        {"{\"metadata.a\":{\"in\":[1,[2]]}}", "filter.metadata.a.in[1]: "},
        {"{\"metadata.a\":{}}", "filter.metadata.a: "},
        {"{\"exists\":\"size\"}", "filter.exists: "},
        {"{\"not\":[{\"label\":\"a\"}]}", "filter.not: "},
        {"{\"label\":true}", "filter.label: "},
        {"{\"or\":[{\"label\":\"a\"},{\"not\":{\"and\":[{\"label\":{\"in\":[\"x\",{}]}}]}}]}",
         "filter.or[1].not.and[0].label.in[1]: "},
    };
    td_reply r;
    char *qb64 = td_b64_floats(q, DIM);
    REQUIRE(qb64);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        td_text t = {0};
        td_text_append(&t, "{\"filter\":%s,\"vector_b64\":\"%s\"}", cases[i].filter, qb64);
        CHECK_EQ(td_http_json(h, "POST", "/v1/galleries/flat/search", t.s, &r), 400);
        const char *code = td_reply_error_code(&r), *msg = td_reply_error_message(&r);
        CHECK(code && strcmp(code, "invalid_filter") == 0);
        CHECK(msg && strncmp(msg, cases[i].where, strlen(cases[i].where)) == 0);
        if (!msg || strncmp(msg, cases[i].where, strlen(cases[i].where)) != 0)
            fprintf(stderr, "filter %s: message %s, want it to start with %s\n",
                    cases[i].filter, msg ? msg : "(none)", cases[i].where);
        td_reply_finish(&r);
        free(t.s);
    }
    free(qb64);
    /* Nesting: 16 objects deep is the limit, 17 is refused at its place. */
    for (int depth = 16; depth <= 17; depth++) {
        td_text t = {0}, where = {0};
        td_text_append(&t, "{\"k\":1,\"filter\":");
        td_text_append(&where, "filter");
        for (int d = 1; d < depth; d++) {
            td_text_append(&t, "{\"not\":");
            td_text_append(&where, ".not");
        }
        td_text_append(&t, "{\"label\":\"u1\"}");
        for (int d = 1; d < depth; d++)
            td_text_append(&t, "}");
        td_text_append(&t, ",\"vectors\":");
        td_text_append_b64_rows(&t, q, 1, DIM);
        td_text_append(&t, "}");
        long status = td_http_json(h, "POST", "/v1/galleries/flat/search", t.s, &r);
        CHECK_EQ(status, depth <= 16 ? 200 : 400);
        const char *msg = td_reply_error_message(&r);
        if (depth > 16)
            CHECK(msg && strncmp(msg, where.s, where.len) == 0 && msg[where.len] == ':');
        td_reply_finish(&r);
        free(t.s);
        free(where.s);
    }
}

/* The evaluation filter of test_evaluation and the items it matches. */
static const char eval_filter[] = "{\"metadata.album\":{\"in\":[\"a2\",\"a5\"]}}";

static bool eval_matches(int i)
{
    return alive[i] && i >= MOVED && i % 11 != 0 && (i % 7 == 2 || i % 7 == 5) &&
           label_json(i, (char[32]){0}, 32) != NULL;
}

/* {"query_model":"m1","ks":[1,5],"queries":[...]} of 60 probes near
 * items, labelled as they are, plus extra (",\"filter\":..." or ""). */
static char *eval_body(const char *extra)
{
    td_text t = {0};
    td_rng rng = {99};
    char lb[32];
    td_text_append(&t, "{\"query_model\":\"m1\",\"ks\":[1,5]%s,\"queries\":[", extra);
    int n = 0;
    for (int i = 1000; n < 60; i += 37) {
        const char *l = label_json(i, lb, sizeof lb);
        if (!l)
            continue;
        float v[DIM];
        for (int j = 0; j < DIM; j++)
            v[j] = x[(size_t)i * DIM + j] + 0.3f * (float)td_rng_gauss(&rng);
        char *b64 = td_b64_floats(v, DIM);
        td_text_append(&t, "%s{\"id\":\"p%d\",\"label\":%s,\"vector_b64\":\"%s\"}",
                       n ? "," : "", i, l, b64);
        free(b64);
        n++;
    }
    td_text_append(&t, "]}");
    return t.s;
}

/*
 * An evaluation of the flat gallery with a filter equals one of a gallery
 * holding only the matching items (no filter), and says its filter.
 * Returns the evaluation's id.
 */
static long test_evaluation(td_http *h)
{
    td_reply r, s;
    CHECK_EQ(td_http_call(h, &r, 201, "POST", "/v1/galleries",
                          "{\"name\":\"sub\",\"model\":\"m1\"}"), 201);
    td_reply_finish(&r);
    td_text t = {0};
    char lb[32];
    td_text_append(&t, "{\"items\":[");
    int n = 0;
    for (int i = 0; i < N; i++) {
        if (!eval_matches(i))
            continue;
        char *b64 = td_b64_floats(x + (size_t)i * DIM, DIM);
        td_text_append(&t, "%s{\"id\":\"i%d\",\"label\":%s,\"vector_b64\":\"%s\"}",
                       n++ ? "," : "", i, label_json(i, lb, sizeof lb), b64);
        free(b64);
    }
    td_text_append(&t, "]}");
    CHECK_EQ(td_http_call(h, &r, 200, "POST", "/v1/galleries/sub/items", t.s), 200);
    td_reply_finish(&r);
    free(t.s);

    char *extra = td_fmt(",\"filter\":%s", eval_filter);
    char *with = eval_body(extra), *without = eval_body("");
    CHECK_EQ(td_http_call(h, &r, 201, "POST", "/v1/galleries/flat/evaluations", with), 201);
    CHECK_EQ(td_http_call(h, &s, 201, "POST", "/v1/galleries/sub/evaluations", without), 201);
    CHECK_EQ(td_json_num(r.json, "gallery_items"), (double)n);
    CHECK_EQ(td_json_num(s.json, "gallery_items"), (double)n);
    CHECK(cJSON_Compare(td_json_at(r.json, "cross"), td_json_at(s.json, "cross"), true));
    cJSON *want = cJSON_Parse(eval_filter);
    CHECK(cJSON_Compare(td_json_at(r.json, "filter"), want, true));
    CHECK(cJSON_IsNull(td_json_at(s.json, "filter")));
    long id = (long)td_json_num(r.json, "id");
    td_reply_finish(&r);
    td_reply_finish(&s);

    /* A filter matching nothing: 422; a bad one: 400 at its place. */
    char *none = eval_body(",\"filter\":{\"label\":\"nobody\"}");
    CHECK_EQ(td_http_json(h, "POST", "/v1/galleries/flat/evaluations", none, &r), 422);
    td_reply_finish(&r);
    char *bad = eval_body(",\"filter\":{\"or\":[{\"label\":{\"gte\":1}}]}");
    CHECK_EQ(td_http_json(h, "POST", "/v1/galleries/flat/evaluations", bad, &r), 400);
    const char *msg = td_reply_error_message(&r);
    CHECK(msg && strncmp(msg, "filter.or[0].label.gte: ", 24) == 0);
    td_reply_finish(&r);
    cJSON_Delete(want);
    free(none);
    free(bad);
    free(extra);
    free(with);
    free(without);
    return id;
}

/* The items of the flat gallery whose album is a2 or a5 (eval_filter). */
static bool list_matches(int i)
{
    return alive[i] && i >= MOVED && i % 11 != 0 && (i % 7 == 2 || i % 7 == 5);
}

/*
 * GET .../items?filter= pages through exactly the matching items; a bad
 * filter there is 400 at its place.
 */
static void test_listing(td_http *h)
{
    CURL *curl = curl_easy_init();
    REQUIRE(curl);
    char *enc = curl_easy_escape(curl, eval_filter, 0);
    REQUIRE(enc);
    unsigned char *seen = calloc(N, 1);
    REQUIRE(seen);
    char *after = strdup("");
    bool ok = true;
    td_reply r;
    for (int page = 0; ok && page < 100; page++) {
        char *a = curl_easy_escape(curl, after, 0);
        char *path = td_fmt("/v1/galleries/flat/items?limit=700&filter=%s&after=%s", enc, a);
        curl_free(a);
        ok = td_http_call(h, &r, 200, "GET", path, NULL) == 200;
        free(path);
        const cJSON *it;
        cJSON_ArrayForEach(it, td_json_at(r.json, "items")) {
            int i = item_number(td_json_str(it, "id"));
            if (i < 0 || i >= N || seen[i]++)
                ok = false;
        }
        const char *next = td_json_str(r.json, "next");
        free(after);
        after = next ? strdup(next) : NULL;
        td_reply_finish(&r);
        if (!after)
            break;
    }
    CHECK(ok && !after);
    size_t wrong = 0;
    for (int i = 0; i < N; i++)
        wrong += (seen[i] != 0) != list_matches(i);
    CHECK_EQ(wrong, 0);
    char *bad = curl_easy_escape(curl, "{\"or\":[{\"label\":{\"gt\":1}}]}", 0);
    char *path = td_fmt("/v1/galleries/flat/items?filter=%s", bad);
    CHECK_EQ(td_http_json(h, "GET", path, NULL, &r), 400);
    const char *msg = td_reply_error_message(&r);
    CHECK(msg && strncmp(msg, "filter.or[0].label.gt: ", 23) == 0);
    td_reply_finish(&r);
    free(path);
    curl_free(bad);
    free(after);
    free(seen);
    curl_free(enc);
    curl_easy_cleanup(curl);
}

/* POST .../items/delete {"filter"} on the sub gallery: the a2 items go,
 * from the store and the filters; returns the count left. */
static long test_delete_by_filter(td_http *h)
{
    td_reply r;
    long before = td_gallery_count(h, "sub"), want = 0;
    for (int i = 0; i < N; i++)
        want += eval_matches(i) && i % 7 == 2;
    CHECK_EQ(td_http_call(h, &r, 200, "POST", "/v1/galleries/sub/items/delete",
                          "{\"filter\":{\"metadata.album\":\"a2\"}}"), 200);
    /* sub was filled without metadata: nothing matches there. */
    CHECK_EQ(td_json_num(r.json, "deleted"), 0);
    td_reply_finish(&r);
    CHECK_EQ(td_http_call(h, &r, 200, "POST", "/v1/galleries/sub/items/delete",
                          "{\"filter\":{\"label\":{\"in\":[\"u2\",\"u9\"]}}}"), 200);
    want = 0;
    for (int i = 0; i < N; i++)
        want += eval_matches(i) && (i % 40 == 2 || i % 40 == 9);
    CHECK_EQ(td_json_num(r.json, "deleted"), (double)want);
    td_reply_finish(&r);
    CHECK_EQ(td_gallery_count(h, "sub"), before - want);
    /* The filters see it at once: nothing of u2 or u9 is left to match. */
    td_text t = {0};
    td_text_append(&t, "{\"k\":5,\"filter\":{\"label\":{\"in\":[\"u2\",\"u9\"]}},\"vectors\":");
    td_text_append_b64_rows(&t, q, 1, DIM);
    td_text_append(&t, "}");
    CHECK_EQ(td_http_call(h, &r, 200, "POST", "/v1/galleries/sub/search", t.s), 200);
    CHECK_EQ(td_json_num(r.json, "matched"), 0);
    td_reply_finish(&r);
    free(t.s);
    /* Both or a bad filter: 400, nothing deleted. */
    CHECK_EQ(td_http_json(h, "POST", "/v1/galleries/sub/items/delete",
                          "{\"ids\":[\"i1\"],\"filter\":{\"label\":\"u1\"}}", &r), 400);
    td_reply_finish(&r);
    CHECK_EQ(td_http_json(h, "POST", "/v1/galleries/sub/items/delete",
                          "{\"filter\":{\"label\":{\"lt\":1}}}", &r), 400);
    CHECK_STREQ(td_reply_error_code(&r), "invalid_filter");
    td_reply_finish(&r);
    CHECK_EQ(td_gallery_count(h, "sub"), before - want);
    return before - want;
}

/* GET /v1/evaluations/{id} still says the filter. */
static void check_stored_filter(td_http *h, long id)
{
    td_reply r;
    char *path = td_fmt("/v1/evaluations/%ld", id);
    CHECK_EQ(td_http_call(h, &r, 200, "GET", path, NULL), 200);
    cJSON *want = cJSON_Parse(eval_filter);
    CHECK(cJSON_Compare(td_json_at(r.json, "filter"), want, true));
    cJSON_Delete(want);
    td_reply_finish(&r);
    free(path);
}

int main(int argc, char **argv)
{
    REQUIRE(argc == 2);
    ref_script = argv[1];
    make_data();
    run_reference();
    fprintf(stderr, "reference: rare filter matches %lld of %d\n",
            (long long)ref_matched[RARE], N);
    CHECK(ref_matched[RARE] > K && ref_matched[RARE] * 1000 <= N);

    td_daemon *d;
    td_http *h;
    REQUIRE(td_daemon_start_client(NULL, &d, &h));
    td_reply r;
    CHECK_EQ(td_http_call(h, &r, 201, "POST", "/v1/models",
                          "{\"name\":\"m1\",\"dim\":128,\"metric\":\"cosine\"}"), 201);
    td_reply_finish(&r);
    CHECK_EQ(td_http_call(h, &r, 201, "POST", "/v1/models",
                          "{\"name\":\"m2\",\"dim\":128,\"metric\":\"cosine\"}"), 201);
    td_reply_finish(&r);
    double t0 = td_now();
    build_gallery(h, "flat", "Flat", true);
    build_gallery(h, "hnsw", "HNSW16", false);
    build_gallery(h, "ivf", "IVF64,Flat", false);
    fprintf(stderr, "built in %.1f s\n", td_now() - t0);

    check_all(h, "flat", 1.0);
    check_all(h, "hnsw", 0.8);
    check_all(h, "ivf", 0.8);
    /* "exact": true with a filter is exact on any index. */
    search_extra = ",\"exact\":true";
    for (size_t f = 0; f < N_FILTERS; f += 3) {
        verdict v = search(h, "hnsw", f % 2 ? "m2" : "m1", f);
        CHECK(v.exact && v.matched_ok);
        v = search(h, "ivf", "m1", f);
        CHECK(v.exact && v.matched_ok);
    }
    search_extra = "";
    test_bad_input(h);
    long eval_id = test_evaluation(h);
    test_listing(h);
    long sub_left = test_delete_by_filter(h);

    /* A stop (which snapshots the indexes, not the fields), then kill -9:
     * the fields come back from the store each time. */
    CHECK_EQ(td_daemon_stop(d), 0);
    REQUIRE(td_daemon_start(d, NULL));
    check_all(h, "flat", 1.0);
    CHECK_EQ(td_daemon_kill(d), 0);
    REQUIRE(td_daemon_start(d, NULL));
    check_all(h, "flat", 1.0);
    verdict v = search(h, "hnsw", "m1", RARE);
    CHECK(v.exact && v.matched_ok);
    check_stored_filter(h, eval_id);
    CHECK_EQ(td_gallery_count(h, "sub"), sub_left);

    td_http_destroy(h);
    CHECK_EQ(td_daemon_stop(d), 0);
    td_daemon_destroy(d);
    free(x);
    free(x2);
    free(q);
    free(ref_base);
    free(ref_hot);
    free(ref_base_sc);
    free(ref_hot_sc);
    free(ref_matched);
    return check_exit();
}
