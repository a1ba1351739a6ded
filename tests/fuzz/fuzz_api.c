/*
 * fuzz_api.c - the engine fixture and the reply checks of the request-body
 * fuzzers (see fuzz_api.h).
 */
#include "fuzz_api.h"

#include <ftw.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "api.h"
#include "route.h"
#include "engine.h"
#include "text.h"
#include "vec.h"

static cd_engine *engine;
static cd_metrics *metrics;
static cd_api api;
static char data_dir[4096];
static unsigned long replies[6];    /* by status class: [2] 2xx, [4] 4xx */

static void die(const char *what, const cd_error *err)
{
    fprintf(stderr, "fuzz fixture: %s: %s\n", what, err ? err->message : "");
    exit(1);
}

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    return remove(path);
}

static void cleanup(void)
{
    /* How deep the bodies got: a 2xx ran the engine. */
    fprintf(stderr, "fuzz_api: %lu requests: %lu 2xx, %lu 4xx\n",
            replies[2] + replies[4], replies[2], replies[4]);
    cd_engine_close(engine);
    engine = NULL;
    cd_metrics_destroy(metrics);
    metrics = NULL;
    if (data_dir[0])
        nftw(data_dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
}

/* A fixed, well spread vector for item i of a model (salt). */
static void item_vector(int i, int salt, float *v, int dim)
{
    for (int c = 0; c < dim; c++)
        v[c] = sinf((float)i * 1.3f + (float)c * 0.7f + (float)salt * 0.05f) +
               (c == i % dim ? 1.0f : 0.0f);
}

static void build_gallery(void)
{
    cd_error err;
    cd_gallery g;
    if (cd_engine_gallery_create(engine, FUZZ_GALLERY, "m1", NULL, &g, &err) != CD_OK)
        die("gallery", &err);
    if (cd_engine_gallery_set_policy(engine, FUZZ_GALLERY, CD_POLICY_DECLARED, &err) != CD_OK)
        die("policy", &err);

    char ids[FUZZ_ITEMS][8], labels[FUZZ_ITEMS][8];
    float vecs[FUZZ_ITEMS][4], vecs2[FUZZ_LABELLED][4];
    cd_item_in items[FUZZ_ITEMS];
    memset(items, 0, sizeof items);
    for (int i = 0; i < FUZZ_ITEMS; i++) {
        snprintf(ids[i], sizeof ids[i], "i%d", i);
        snprintf(labels[i], sizeof labels[i], "l%d", i % 6);
        item_vector(i, 0, vecs[i], 4);
        items[i].id = ids[i];
        items[i].label = i < FUZZ_LABELLED ? labels[i] : NULL;
        items[i].metadata = i % 3 == 0 ? "{\"file\":\"a.jpg\",\"n\":1}" : NULL;
        items[i].vector = vecs[i];
    }
    if (cd_engine_items_upsert(engine, FUZZ_GALLERY, "m1", items, FUZZ_ITEMS, &err) != CD_OK)
        die("items of m1", &err);
    for (int i = 0; i < FUZZ_LABELLED; i++) {
        item_vector(i, 1, vecs2[i], 4);
        items[i].label = NULL;
        items[i].metadata = NULL;
        items[i].vector = vecs2[i];
    }
    if (cd_engine_items_upsert(engine, FUZZ_GALLERY, "m2", items, FUZZ_LABELLED, &err) != CD_OK)
        die("items of m2", &err);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    const char *tmp = getenv("TMPDIR");
    cd_error err;
    snprintf(data_dir, sizeof data_dir, "%s/compatd-fuzz-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp(data_dir)) {
        perror(data_dir);
        exit(1);
    }
    atexit(cleanup);
    cd_engine_config cfg = {.data_dir = data_dir, .snapshot_interval_s = 0};
    if (cd_engine_open(&cfg, &engine, &err) != CD_OK)
        die("engine open", &err);
    if (cd_engine_load_indexes(engine, &err) != CD_OK)
        die("load indexes", &err);
    metrics = cd_metrics_create();
    if (!metrics)
        die("metrics", NULL);

    static const struct {
        const char *name;
        int dim;
        cd_metric metric;
        const char *compatible_with;
    } models[] = {
        {"m1", 4, CD_METRIC_COSINE, ""},
        {"m2", 4, CD_METRIC_COSINE, "m1"},
        {"m3", 4, CD_METRIC_L2, ""},
        {"m4", 8, CD_METRIC_IP, ""},
    };
    for (size_t i = 0; i < sizeof models / sizeof models[0]; i++) {
        cd_model m, out;
        memset(&m, 0, sizeof m);
        snprintf(m.name, sizeof m.name, "%s", models[i].name);
        m.dim = models[i].dim;
        m.metric = models[i].metric;
        snprintf(m.compatible_with, sizeof m.compatible_with, "%s", models[i].compatible_with);
        if (cd_engine_model_create(engine, &m, &out, &err) != CD_OK)
            die("model", &err);
    }
    build_gallery();
    api.engine = engine;
    api.max_body = 1 << 20;
    api.metrics = metrics;
    return 0;
}

/* The number of items in gallery g now. */
static long gallery_items(void)
{
    cd_error err;
    cd_gallery g;
    if (cd_engine_gallery_get(engine, FUZZ_GALLERY, &g, &err) != CD_OK)
        die("gallery get", &err);
    return (long)g.count;
}

void fuzz_api_end_run(unsigned long reset_runs, long max_items)
{
    static unsigned long runs;
    runs++;
    if (runs % reset_runs == 0 ||
        (max_items && runs % FUZZ_CHECK_RUNS == 0 && gallery_items() > max_items)) {
        cd_error err;
        if (cd_engine_gallery_delete(engine, FUZZ_GALLERY, &err) != CD_OK)
            die("gallery delete", &err);
        build_gallery();
    }
}

/* Prints the request and reply and aborts: libFuzzer saves the input. */
static void finding(const char *why, const char *path, const cd_reply *rep)
{
    fprintf(stderr, "fuzz: POST %s: %s\nfuzz: reply %d: %.*s\n", path, why, rep->status,
            (int)(rep->len > 4000 ? 4000 : rep->len), rep->body ? rep->body : "(none)");
    abort();
}

int fuzz_api_post(const char *path, const uint8_t *data, size_t size)
{
    return fuzz_api_post_typed(path, "application/json", data, size);
}

int fuzz_api_post_typed(const char *path, const char *content_type, const uint8_t *data,
                        size_t size)
{
    /* The daemon hands handlers a NUL-terminated copy (http.c). */
    char *body = malloc(size + 1);
    if (!body)
        abort();
    if (size)
        memcpy(body, data, size);
    body[size] = '\0';
    cd_request req;
    memset(&req, 0, sizeof req);
    req.method = "POST";
    req.path = path;
    req.body = body;
    req.body_len = size;
    req.content_type = content_type;
    req.conn = NULL;
    cd_reply rep;
    memset(&rep, 0, sizeof rep);

    /* As http.c: match once, refuse what has no handler, dispatch. */
    cd_route_match match;
    if (cd_route_find(req.method, path, &match) != CD_OK)
        abort();
    if (cd_route_accept(&match, req.method, path, &rep))
        cd_route_dispatch(&api, &match, &req, &rep);
    cd_route_match_finish(&match);

    int status = rep.status;
    if (status < 200 || status > 599)
        finding("status out of range", path, &rep);
    if (status >= 500)
        finding("5xx for a request body (500 is never for bad input)", path, &rep);
    if (status == 204) {
        if (rep.len != 0)
            finding("204 with a body", path, &rep);
    } else {
        if (!rep.body || rep.len != strlen(rep.body))
            finding("reply body missing or with a NUL byte", path, &rep);
        if (!cd_utf8_valid(rep.body, rep.len))
            finding("reply body is not valid UTF-8", path, &rep);
        cJSON *j = cJSON_ParseWithLength(rep.body, rep.len);
        if (!cJSON_IsObject(j))
            finding("reply body is not a JSON object", path, &rep);
        if (status >= 400) {
            const cJSON *e = cJSON_GetObjectItemCaseSensitive(j, "error");
            const cJSON *s = cJSON_GetObjectItemCaseSensitive(e, "status");
            if (!cJSON_IsObject(e) || !cJSON_IsNumber(s) || s->valuedouble != status ||
                !cJSON_IsString(cJSON_GetObjectItemCaseSensitive(e, "code")) ||
                !cJSON_IsString(cJSON_GetObjectItemCaseSensitive(e, "message")))
                finding("error reply is not {\"error\":{status,code,message}}", path, &rep);
        }
        cJSON_Delete(j);
    }
    replies[status / 100]++;
    free(rep.body);
    free(body);
    return status;
}
