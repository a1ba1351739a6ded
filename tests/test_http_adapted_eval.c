/*
 * test_http_adapted_eval.c - evaluations through an adapter (SPEC.md §3.5,
 * §3.7) over HTTP against the real daemon.
 *
 * Synthetic data, all cosine, dim 16: N_LABELS centres c; the old model
 * embeds an item of label l as c_l + noise; the new model is an
 * independent one, (c_l + less noise) R with R a random rotation, so its
 * vectors share no axis with the old model's.  Gallery g (of old) has
 * every item's old embedding and, for the first 30 %, its new one (the
 * start of a backfill); adapter new-to-old is fitted on those pairs.
 *
 * Checked: the raw evaluation of new fails the criterion and the adapted
 * one passes; a linear adapter from a model of another dim (small: 8,
 * a random projection of new's space) maps into old too; every adapted
 * report's top-k and mAP equal those of
 * tests/adapted_eval_ref.py (numpy, Debian's /usr/bin/python3), computed
 * from the probes and the weights GET /v1/adapters/{name}?weights=true
 * returns, to 1e-6 (and the raw report's, as a check of the reference);
 * the report, the gallery's listing, the matrix and
 * GET /v1/adapters/{name}/evaluations name the adapter, and the matrix
 * counts the adapted pair as a pair of its own; bad input (unknown
 * adapter 404, wrong from 400, to not the gallery model 409, a bad name)
 * stores nothing; the report survives kill -9 with its adapter, and after
 * the adapter is deleted; a new adapter of the same name has no
 * evaluations.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "daemon.h"

#define DIM 16
#define N_LABELS 20
#define N_ITEMS 200             /* item i has label i % N_LABELS */
#define N_BACKFILL 60           /* items with a new embedding too: 30 % */
#define N_PROBES 60
#define SMALL_DIM 8             /* model small: new's vectors projected */

static const char *ref_script;
static float old_items[N_ITEMS][DIM], new_items[N_BACKFILL][DIM];
static float new_probes[N_PROBES][DIM], old_probes[N_PROBES][DIM];
static float small_items[N_BACKFILL][SMALL_DIM], small_probes[N_PROBES][SMALL_DIM];
static int probe_label[N_PROBES];

/* A random rotation: Gram-Schmidt on a Gaussian matrix, in double. */
static void random_rotation(td_rng *rng, double r[DIM][DIM])
{
    for (int i = 0; i < DIM; i++) {
        for (int j = 0; j < DIM; j++)
            r[i][j] = td_rng_gauss(rng);
        for (int k = 0; k < i; k++) {
            double dot = 0;
            for (int j = 0; j < DIM; j++)
                dot += r[i][j] * r[k][j];
            for (int j = 0; j < DIM; j++)
                r[i][j] -= dot * r[k][j];
        }
        double norm = 0;
        for (int j = 0; j < DIM; j++)
            norm += r[i][j] * r[i][j];
        for (int j = 0; j < DIM; j++)
            r[i][j] /= sqrt(norm);
    }
}

/* out = (c + noise * N(0, I)) R, or without R when r is NULL. */
static void embed(td_rng *rng, const double *c, double noise, double r[DIM][DIM],
                  float *out)
{
    double x[DIM];
    for (int j = 0; j < DIM; j++)
        x[j] = c[j] + noise * td_rng_gauss(rng);
    for (int j = 0; j < DIM; j++) {
        double s = 0;
        for (int i = 0; r && i < DIM; i++)
            s += x[i] * r[i][j];
        out[j] = (float)(r ? s : x[j]);
    }
}

static void make_data(void)
{
    td_rng rng = {td_seed(31)};
    double c[N_LABELS][DIM], r[DIM][DIM];
    for (int l = 0; l < N_LABELS; l++)
        for (int j = 0; j < DIM; j++)
            c[l][j] = td_rng_gauss(&rng);
    random_rotation(&rng, r);
    for (int i = 0; i < N_ITEMS; i++)
        embed(&rng, c[i % N_LABELS], 1.0, NULL, old_items[i]);
    for (int i = 0; i < N_BACKFILL; i++)
        embed(&rng, c[i % N_LABELS], 0.4, r, new_items[i]);
    for (int p = 0; p < N_PROBES; p++) {
        probe_label[p] = (int)(td_rng_next(&rng) % N_LABELS);
        embed(&rng, c[probe_label[p]], 0.4, r, new_probes[p]);
        embed(&rng, c[probe_label[p]], 1.3, NULL, old_probes[p]);
    }
    double proj[DIM][SMALL_DIM];
    for (int i = 0; i < DIM; i++)
        for (int j = 0; j < SMALL_DIM; j++)
            proj[i][j] = td_rng_gauss(&rng);
    for (int n = 0; n < N_BACKFILL + N_PROBES; n++) {
        const float *x = n < N_BACKFILL ? new_items[n] : new_probes[n - N_BACKFILL];
        float *y = n < N_BACKFILL ? small_items[n] : small_probes[n - N_BACKFILL];
        for (int j = 0; j < SMALL_DIM; j++) {
            double sum = 0;
            for (int i = 0; i < DIM; i++)
                sum += x[i] * proj[i][j];
            y[j] = (float)sum;
        }
    }
}

static void post(td_http *h, long want, const char *path, const char *body)
{
    td_reply r;
    CHECK_EQ(td_http_call(h, &r, want, "POST", path, body), want);
    td_reply_finish(&r);
}

/* Posts the first n items, labelled, with v's vectors of model (dim
 * floats each) to gallery g. */
static void post_items(td_http *h, const char *model, const float *v, int dim, int n)
{
    td_text t = {0};
    td_text_append(&t, "{\"model\":\"%s\",\"items\":[", model);
    for (int i = 0; i < n; i++) {
        char *b64 = td_b64_floats(v + (size_t)i * dim, (size_t)dim);
        td_text_append(&t, "%s{\"id\":\"i%d\",\"label\":\"l%d\",\"vector_b64\":\"%s\"}",
                       i ? "," : "", i, i % N_LABELS, b64);
        free(b64);
    }
    td_text_append(&t, "]}");
    post(h, 200, "/v1/galleries/g/items", t.s);
    free(t.s);
}

/* Models old, new (created after old: a newer model), other and small;
 * gallery g of old with the backfills of new and small; gallery h of
 * other; adapters new-to-old (fitted on g's pairs), old-to-new and
 * small-to-old (linear). */
static void build(td_http *h)
{
    static const char *const models[] = {"old", "new", "other", "small"};
    for (size_t i = 0; i < 4; i++) {
        char *b = td_fmt("{\"name\":\"%s\",\"dim\":%d,\"metric\":\"cosine\"}", models[i],
                         i == 3 ? SMALL_DIM : DIM);
        post(h, 201, "/v1/models", b);
        free(b);
    }
    post(h, 201, "/v1/galleries", "{\"name\":\"g\",\"model\":\"old\"}");
    post(h, 201, "/v1/galleries", "{\"name\":\"h\",\"model\":\"other\"}");
    post_items(h, "old", &old_items[0][0], DIM, N_ITEMS);
    post_items(h, "new", &new_items[0][0], DIM, N_BACKFILL);
    post_items(h, "small", &small_items[0][0], SMALL_DIM, N_BACKFILL);
    post(h, 201, "/v1/adapters", "{\"name\":\"new-to-old\",\"from\":\"new\",\"to\":\"old\","
                                 "\"gallery\":\"g\"}");
    post(h, 201, "/v1/adapters", "{\"name\":\"old-to-new\",\"from\":\"old\",\"to\":\"new\","
                                 "\"gallery\":\"g\"}");
    post(h, 201, "/v1/adapters", "{\"name\":\"small-to-old\",\"from\":\"small\","
                                 "\"to\":\"old\",\"gallery\":\"g\"}");
}

/* The probes of query model `model`: new's or small's. */
static const float *probes_of(const char *model, int *dim)
{
    bool small = strcmp(model, "small") == 0;
    *dim = small ? SMALL_DIM : DIM;
    return small ? &small_probes[0][0] : &new_probes[0][0];
}

/* The evaluation body: query_model's probes (new's for every model but
 * small) with old's baseline, through adapter (NULL: raw). */
static char *eval_body(const char *query_model, const char *adapter)
{
    int dim;
    const float *probes = probes_of(query_model, &dim);
    td_text t = {0};
    td_text_append(&t, "{\"query_model\":\"%s\"", query_model);
    if (adapter)
        td_text_append(&t, ",\"adapter\":\"%s\"", adapter);
    td_text_append(&t, ",\"ks\":[1,5,10],\"queries\":[");
    for (int p = 0; p < N_PROBES; p++) {
        char *b64 = td_b64_floats(probes + (size_t)p * dim, (size_t)dim);
        td_text_append(&t, "%s{\"id\":\"q%d\",\"label\":\"l%d\",\"vector_b64\":\"%s\"}",
                       p ? "," : "", p, probe_label[p], b64);
        free(b64);
    }
    td_text_append(&t, "],\"baseline\":[");
    for (int p = 0; p < N_PROBES; p++) {
        char *b64 = td_b64_floats(old_probes[p], DIM);
        td_text_append(&t, "%s{\"id\":\"q%d\",\"vector_b64\":\"%s\"}", p ? "," : "", p, b64);
        free(b64);
    }
    td_text_append(&t, "]}");
    return t.s;
}

static void write_file(const char *dir, const char *name, const void *bytes, size_t n)
{
    char *path = td_fmt("%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    REQUIRE(f);
    REQUIRE(fwrite(bytes, 1, n, f) == n);
    REQUIRE(fclose(f) == 0);
    free(path);
}

static void remove_file(const char *dir, const char *name)
{
    char *path = td_fmt("%s/%s", dir, name);
    unlink(path);
    free(path);
}

/* The reference's numbers: top1, top5, top10, map, gap. */
typedef struct ref_numbers {
    double top[3], map, gap;
} ref_numbers;

/* Runs adapted_eval_ref.py on g's items and model's probes, mapped by the
 * weights of adapter (GET ?weights=true) or raw when adapter is NULL. */
static ref_numbers reference(td_http *h, const char *model, const char *adapter)
{
    int dim;
    const float *probes = probes_of(model, &dim);
    char dir[] = "/tmp/test_http_adapted_eval.XXXXXX";
    REQUIRE(mkdtemp(dir));
    write_file(dir, "gallery.f32", old_items, sizeof old_items);
    write_file(dir, "probes.f32", probes, (size_t)N_PROBES * dim * sizeof *probes);
    td_text gl = {0}, pl = {0};
    for (int i = 0; i < N_ITEMS; i++)
        td_text_append(&gl, "l%d\n", i % N_LABELS);
    for (int p = 0; p < N_PROBES; p++)
        td_text_append(&pl, "l%d\n", probe_label[p]);
    write_file(dir, "gallery_labels.txt", gl.s, gl.len);
    write_file(dir, "probe_labels.txt", pl.s, pl.len);
    free(gl.s);
    free(pl.s);
    if (adapter) {
        td_reply r;
        char *path = td_fmt("/v1/adapters/%s?weights=true", adapter);
        CHECK_EQ(td_http_call(h, &r, 200, "GET", path, NULL), 200);
        free(path);
        const cJSON *rows = td_json_at(r.json, "weights");
        REQUIRE(cJSON_GetArraySize(rows) == dim);
        CHECK(cJSON_IsNull(td_json_at(r.json, "bias")));     /* orthogonal, linear */
        double w[DIM * DIM];
        for (int i = 0; i < dim; i++) {
            const cJSON *row = cJSON_GetArrayItem(rows, i);
            REQUIRE(cJSON_GetArraySize(row) == DIM);
            for (int j = 0; j < DIM; j++)
                w[i * DIM + j] = cJSON_GetArrayItem(row, j)->valuedouble;
        }
        td_reply_finish(&r);
        write_file(dir, "weights.f64", w, (size_t)dim * DIM * sizeof *w);
    }
    char *cmd = td_fmt("/usr/bin/python3 '%s' '%s' 1,5,10", ref_script, dir);
    FILE *pipe = popen(cmd, "r");
    REQUIRE(pipe);
    ref_numbers out = {{NAN, NAN, NAN}, NAN, NAN};
    static const char *const names[] = {"top1", "top5", "top10", "map", "gap"};
    double *slots[] = {&out.top[0], &out.top[1], &out.top[2], &out.map, &out.gap};
    char line[256], key[32];
    double v;
    while (fgets(line, sizeof line, pipe))
        for (size_t i = 0; sscanf(line, "%31s %lf", key, &v) == 2 && i < 5; i++)
            if (strcmp(key, names[i]) == 0)
                *slots[i] = v;
    REQUIRE(pclose(pipe) == 0);
    free(cmd);
    static const char *const files[] = {"gallery.f32", "probes.f32", "gallery_labels.txt",
                                        "probe_labels.txt", "weights.f64"};
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++)
        remove_file(dir, files[i]);
    REQUIRE(rmdir(dir) == 0);
    return out;
}

/* The report's cross numbers equal the reference's to 1e-6. */
static void check_cross(const cJSON *report, const ref_numbers *ref, const char *what)
{
    static const char *const keys[] = {"cross.top1", "cross.top5", "cross.top10"};
    /* The daemon scores in float32 (unit vectors of dim 16: errors of a
     * few 1e-8), the reference in double: a relevant and an irrelevant
     * item closer than 1e-6 could swap between the two, so the data must
     * have no such pair for the comparison to be exact. */
    if (!(ref->gap > 1e-6))
        fprintf(stderr, "%s: the data has a gap of %g only\n", what, ref->gap);
    REQUIRE(ref->gap > 1e-6);
    for (int i = 0; i < 3; i++) {
        double got = td_json_num(report, keys[i]);
        if (!(fabs(got - ref->top[i]) <= 1e-6))
            fprintf(stderr, "%s: %s is %.9g, numpy says %.9g\n", what, keys[i], got,
                    ref->top[i]);
        CHECK(fabs(got - ref->top[i]) <= 1e-6);
    }
    double got = td_json_num(report, "cross.map");
    if (!(fabs(got - ref->map) <= 1e-6))
        fprintf(stderr, "%s: cross.map is %.9g, numpy says %.9g\n", what, got, ref->map);
    CHECK(fabs(got - ref->map) <= 1e-6);
}

static char *get_body(td_http *h, const char *path)
{
    td_reply r;
    CHECK_EQ(td_http_call(h, &r, 200, "GET", path, NULL), 200);
    char *s = strdup(r.body ? r.body : "");
    td_reply_finish(&r);
    return s;
}

/* The matrix row of g for query model qm through adapter (NULL: raw). */
static const cJSON *matrix_row(const cJSON *matrix, const char *qm, const char *adapter)
{
    const cJSON *g;
    cJSON_ArrayForEach(g, td_json_at(matrix, "galleries")) {
        if (strcmp(td_json_str(g, "gallery"), "g") != 0)
            continue;
        const cJSON *p;
        cJSON_ArrayForEach(p, td_json_at(g, "pairs")) {
            const cJSON *a = td_json_at(p, "adapter");
            if (strcmp(td_json_str(p, "query_model"), qm) == 0 &&
                (adapter ? cJSON_IsString(a) && strcmp(a->valuestring, adapter) == 0
                         : cJSON_IsNull(a)))
                return p;
        }
    }
    return NULL;
}

/* Bad input: status and code, and nothing stored anywhere. */
static void test_bad_input(td_http *h)
{
    const struct {
        const char *gallery, *query_model, *adapter;
        long status;
        const char *code;
    } cases[] = {
        {"g", "new", "nope", 404, "not_found"},
        {"g", "new", "old-to-new", 400, "invalid_argument"},   /* from is old */
        {"g", "old", "old-to-new", 409, "conflict"},           /* to is new */
        {"h", "new", "new-to-old", 409, "conflict"},           /* h is of other */
        {"g", "new", "bad name", 400, "invalid_name"},
    };
    char *matrix = get_body(h, "/v1/compatibility");
    char *list_g = get_body(h, "/v1/galleries/g/evaluations");
    char *list_h = get_body(h, "/v1/galleries/h/evaluations");
    char *by_adapter = get_body(h, "/v1/adapters/new-to-old/evaluations");
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *body = eval_body(cases[i].query_model, cases[i].adapter);
        char *path = td_fmt("/v1/galleries/%s/evaluations", cases[i].gallery);
        td_reply r;
        long st = td_http_json(h, "POST", path, body, &r);
        const char *code = td_reply_error_code(&r);
        if (st != cases[i].status || !code || strcmp(code, cases[i].code) != 0)
            fprintf(stderr, "case %zu: want %ld %s, got %ld: %s\n", i, cases[i].status,
                    cases[i].code, st, r.body);
        CHECK_EQ(st, cases[i].status);
        CHECK(code && strcmp(code, cases[i].code) == 0);
        td_reply_finish(&r);
        free(path);
        free(body);
    }
    char *after[4] = {get_body(h, "/v1/compatibility"), get_body(h, "/v1/galleries/g/evaluations"),
                      get_body(h, "/v1/galleries/h/evaluations"),
                      get_body(h, "/v1/adapters/new-to-old/evaluations")};
    CHECK_STREQ(after[0], matrix);
    CHECK_STREQ(after[1], list_g);
    CHECK_STREQ(after[2], list_h);
    CHECK_STREQ(after[3], by_adapter);
    td_reply r;
    CHECK_EQ(td_http_call(h, &r, 404, "GET", "/v1/adapters/nope/evaluations", NULL), 404);
    td_reply_finish(&r);
    for (int i = 0; i < 4; i++)
        free(after[i]);
    free(matrix);
    free(list_g);
    free(list_h);
    free(by_adapter);
}

/* Searches gallery g with the first new probe as model new, through
 * adapter (NULL: raw), and checks the status (and 409's code). */
static void gate_search(td_http *h, const char *adapter, long want)
{
    char *b64 = td_b64_floats(&new_probes[0][0], DIM);
    char *body = adapter
        ? td_fmt("{\"model\":\"new\",\"adapter\":\"%s\",\"k\":3,\"vector_b64\":\"%s\"}",
                 adapter, b64)
        : td_fmt("{\"model\":\"new\",\"k\":3,\"vector_b64\":\"%s\"}", b64);
    td_reply r;
    CHECK_EQ(td_http_call(h, &r, want, "POST", "/v1/galleries/g/search", body), want);
    if (want == 409)
        CHECK_STREQ(td_reply_error_code(&r), "model_not_verified");
    else
        CHECK_EQ(cJSON_GetArraySize(td_json_at(r.json, "results.0")), 3);
    td_reply_finish(&r);
    free(body);
    free(b64);
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

    /* Raw: the independent model fails the criterion. */
    td_reply raw, adapted, r;
    char *body = eval_body("new", NULL);
    CHECK_EQ(td_http_call(h, &raw, 201, "POST", "/v1/galleries/g/evaluations", body), 201);
    free(body);
    CHECK(cJSON_IsFalse(td_json_at(raw.json, "compatible")));
    CHECK(cJSON_IsNull(td_json_at(raw.json, "adapter")));
    ref_numbers ref_raw = reference(h, "new", NULL);
    check_cross(raw.json, &ref_raw, "raw");

    /* The gate (policy verified, the default) before: neither the raw
     * model nor the pair (new, new-to-old) has a passing evaluation. */
    gate_search(h, NULL, 409);
    gate_search(h, "new-to-old", 409);

    /* Through the adapter: it passes, and its numbers are numpy's. */
    test_bad_input(h);
    body = eval_body("new", "new-to-old");
    CHECK_EQ(td_http_call(h, &adapted, 201, "POST", "/v1/galleries/g/evaluations", body), 201);
    free(body);
    CHECK(cJSON_IsTrue(td_json_at(adapted.json, "compatible")));
    CHECK_STREQ(td_json_str(adapted.json, "adapter"), "new-to-old");
    CHECK_STREQ(td_json_str(adapted.json, "query_model"), "new");
    CHECK_STREQ(td_json_str(adapted.json, "gallery_model"), "old");
    CHECK(cJSON_IsNull(td_json_at(adapted.json, "paragon")));
    /* The baseline is the same probes either way. */
    CHECK_EQ(td_json_num(adapted.json, "baseline.top1"), td_json_num(raw.json, "baseline.top1"));
    CHECK(td_json_num(adapted.json, "cross.top1") > td_json_num(adapted.json, "baseline.top1"));
    ref_numbers ref = reference(h, "new", "new-to-old");
    check_cross(adapted.json, &ref, "adapted");
    /* The gate after: the pair is verified and serves; raw queries of
     * the same model are still refused (their own evaluation failed). */
    gate_search(h, "new-to-old", 200);
    gate_search(h, NULL, 409);
    double id = td_json_num(adapted.json, "id");
    fprintf(stderr, "raw top1 %.4f, adapted top1 %.4f, baseline top1 %.4f\n",
            td_json_num(raw.json, "cross.top1"), td_json_num(adapted.json, "cross.top1"),
            td_json_num(adapted.json, "baseline.top1"));

    /* Across dims: small (8) through a linear map into old (16). */
    body = eval_body("small", "small-to-old");
    CHECK_EQ(td_http_call(h, &r, 201, "POST", "/v1/galleries/g/evaluations", body), 201);
    free(body);
    CHECK_STREQ(td_json_str(r.json, "adapter"), "small-to-old");
    ref_numbers ref_small = reference(h, "small", "small-to-old");
    check_cross(r.json, &ref_small, "small");
    double small_id = td_json_num(r.json, "id");
    td_reply_finish(&r);
    /* raw, small's dim is not the gallery's */
    body = eval_body("small", NULL);
    CHECK_EQ(td_http_call(h, &r, 400, "POST", "/v1/galleries/g/evaluations", body), 400);
    CHECK_STREQ(td_reply_error_code(&r), "dimension_mismatch");
    td_reply_finish(&r);
    free(body);

    /* Stored: by id, in the gallery's listing, by adapter. */
    char *path = td_fmt("/v1/evaluations/%.0f", id);
    char *stored = get_body(h, path);
    CHECK_STREQ(stored, adapted.body);
    CHECK_EQ(td_http_call(h, &r, 200, "GET", "/v1/galleries/g/evaluations", NULL), 200);
    CHECK_EQ(td_json_num(r.json, "evaluations.0.id"), small_id);
    CHECK_STREQ(td_json_str(r.json, "evaluations.0.adapter"), "small-to-old");
    CHECK_EQ(td_json_num(r.json, "evaluations.1.id"), id);
    CHECK_STREQ(td_json_str(r.json, "evaluations.1.adapter"), "new-to-old");
    CHECK(cJSON_IsNull(td_json_at(r.json, "evaluations.2.adapter")));
    td_reply_finish(&r);
    CHECK_EQ(td_http_call(h, &r, 200, "GET", "/v1/adapters/new-to-old/evaluations", NULL), 200);
    CHECK_EQ(cJSON_GetArraySize(td_json_at(r.json, "evaluations")), 1);
    CHECK_EQ(td_json_num(r.json, "evaluations.0.id"), id);
    CHECK_STREQ(td_json_str(r.json, "evaluations.0.gallery"), "g");
    CHECK_STREQ(td_json_str(r.json, "evaluations.0.query_model"), "new");
    CHECK(cJSON_IsTrue(td_json_at(r.json, "evaluations.0.compatible")));
    td_reply_finish(&r);

    /* The matrix: the adapted pair is a row of its own, and a pair. */
    CHECK_EQ(td_http_call(h, &r, 200, "GET", "/v1/compatibility", NULL), 200);
    const cJSON *row_raw = matrix_row(r.json, "new", NULL);
    const cJSON *row_ad = matrix_row(r.json, "new", "new-to-old");
    const cJSON *row_small = matrix_row(r.json, "small", "small-to-old");
    CHECK_EQ(td_json_num(row_small, "evaluation"), small_id);
    CHECK(row_raw && row_ad);
    if (row_raw && row_ad) {
        CHECK_STREQ(td_json_str(row_raw, "verdict"), "fail");
        CHECK_EQ(td_json_num(row_raw, "evaluation"), td_json_num(raw.json, "id"));
        CHECK_STREQ(td_json_str(row_ad, "verdict"), "pass");
        CHECK_EQ(td_json_num(row_ad, "evaluation"), id);
    }
    const cJSON *g0 = td_json_at(r.json, "galleries.0");
    CHECK_STREQ(td_json_str(g0, "gallery"), "g");
    /* new raw (fail), new via new-to-old (pass), small via small-to-old */
    CHECK_EQ(td_json_num(g0, "ac.pairs"), 3);
    CHECK_EQ(cJSON_GetArraySize(td_json_at(g0, "pairs")), 3);
    int passed = 1 + cJSON_IsTrue(td_json_at(row_small, "compatible"));
    CHECK_EQ(td_json_num(g0, "ac.passed"), passed);
    CHECK_NEAR(td_json_num(g0, "ac.share"), passed / 3.0, 1e-12);
    char *matrix = strdup(r.body);
    td_reply_finish(&r);

    /* The gate's view of the raw model is its raw evaluation: an adapted
     * pass does not verify raw queries. */
    CHECK_EQ(td_http_call(h, &r, 200, "GET", "/v1/galleries/g", NULL), 200);
    const cJSON *q;
    cJSON_ArrayForEach(q, td_json_at(r.json, "query_models"))
        if (strcmp(td_json_str(q, "model"), "new") == 0) {
            CHECK_STREQ(td_json_str(q, "status"), "failed");
            CHECK_EQ(td_json_num(q, "evaluation.id"), td_json_num(raw.json, "id"));
        }
    td_reply_finish(&r);

    CHECK_EQ(td_http_call(h, &r, 200, "GET", "/metrics", NULL), 200);
    CHECK(strstr(r.body, "\ncompatd_evaluations_adapted_total 2\n") != NULL);
    td_reply_finish(&r);

    /* kill -9: the report, with its adapter, and the matrix survive. */
    CHECK_EQ(td_daemon_kill(d), 0);
    REQUIRE(td_daemon_start(d, NULL));
    char *again = get_body(h, path);
    CHECK_STREQ(again, adapted.body);
    free(again);
    again = get_body(h, "/v1/compatibility");
    CHECK_STREQ(again, matrix);
    free(again);

    /* Deleted, the adapter stays named in its reports; a new adapter of
     * the same name has none of them. */
    CHECK_EQ(td_http_call(h, &r, 204, "DELETE", "/v1/adapters/new-to-old", NULL), 204);
    td_reply_finish(&r);
    again = get_body(h, path);
    CHECK_STREQ(again, adapted.body);
    free(again);
    again = get_body(h, "/v1/compatibility");
    CHECK_STREQ(again, matrix);
    free(again);
    post(h, 201, "/v1/adapters", "{\"name\":\"new-to-old\",\"from\":\"new\",\"to\":\"old\","
                                 "\"gallery\":\"g\"}");
    CHECK_EQ(td_http_call(h, &r, 200, "GET", "/v1/adapters/new-to-old/evaluations", NULL), 200);
    CHECK_EQ(cJSON_GetArraySize(td_json_at(r.json, "evaluations")), 0);
    td_reply_finish(&r);

    free(matrix);
    free(stored);
    free(path);
    td_reply_finish(&raw);
    td_reply_finish(&adapted);
    td_http_destroy(h);
    CHECK_EQ(td_daemon_stop(d), 0);
    td_daemon_destroy(d);
    return check_exit();
}
