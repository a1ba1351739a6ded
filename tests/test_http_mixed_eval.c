/*
 * test_http_mixed_eval.c - mixed evaluations (SPEC.md §3.8) over HTTP
 * against the real daemon, checked against tests/mixed_eval_ref.py (numpy,
 * Debian's /usr/bin/python3).
 *
 * Synthetic data: label centres in a 24-dim space; model o_<metric> (dim
 * 16) sees an item through one random projection, n_<metric> (dim 16)
 * through another, w (dim 24, cosine) directly; every vector lies on a
 * grid of 1/16, so ip and l2 scores are exact in float32 and float64 alike
 * (cosine ones differ by rounding: the reference's gap must exceed it).
 * For each metric a gallery g_<metric> of o_<metric> is backfilled with
 * n_<metric> embeddings in a random order, and evaluated mixed at coverage
 * 0, 0.3, 0.7 and 1; gallery ga (of o_cosine) likewise with w's, evaluated
 * mixed through an adapter w-to-o_cosine (fitted on given pairs) whose
 * weights GET ?weights=true gives the reference.
 *
 * Checked: each report's coverage, top-1/5/10, mAP, negative and positive
 * flips and NFR equal numpy's (1e-6); gallery_view is "mixed", and
 * "gallery_model" with a null coverage by default; mixed evaluations do
 * not become the pair's verdict in the matrix nor let a model through the
 * `verified` gate; bad input (an unknown view,
 * a view that is not a string, a mixed view across metrics, raw or
 * through an adapter that the gallery_model view accepts) is 400 and
 * stores nothing; the reports survive kill -9 with view and coverage.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "daemon.h"

#define TRUE_DIM 24
#define DIM 16
#define W_DIM 24
#define N_LABELS 12
#define N_ITEMS 150             /* item i has label i % N_LABELS */
#define N_PROBES 50
#define N_STEPS 4

static const double coverages[N_STEPS] = {0.0, 0.3, 0.7, 1.0};
static const char *const metrics[] = {"cosine", "ip", "l2"};

static const char *ref_script;
static float old_items[N_ITEMS][DIM], new_items[N_ITEMS][DIM], w_items[N_ITEMS][W_DIM];
static float old_probes[N_PROBES][DIM], new_probes[N_PROBES][DIM];
static float w_probes[N_PROBES][W_DIM];
static int probe_label[N_PROBES];
static int order[N_ITEMS];      /* the backfill order */

static float on_grid(double x)
{
    if (x > 2.0)
        x = 2.0;
    if (x < -2.0)
        x = -2.0;
    return (float)(round(x * 16.0) / 16.0);
}

/* out = grid(x p) for a TRUE_DIM x dim projection p, or grid(x). */
static void project(const double *x, const double *p, int dim, float *out)
{
    for (int j = 0; j < dim; j++) {
        double s = 0.0;
        for (int i = 0; p && i < TRUE_DIM; i++)
            s += x[i] * p[i * dim + j];
        out[j] = on_grid(p ? s : x[j]);
    }
}

static void make_data(void)
{
    td_rng rng = {td_seed(47)};
    static double c[N_LABELS][TRUE_DIM], po[TRUE_DIM * DIM], pn[TRUE_DIM * DIM];
    for (int l = 0; l < N_LABELS; l++)
        for (int j = 0; j < TRUE_DIM; j++)
            c[l][j] = 0.5 * td_rng_gauss(&rng);
    for (int i = 0; i < TRUE_DIM * DIM; i++) {
        po[i] = td_rng_gauss(&rng) / sqrt(TRUE_DIM);
        pn[i] = td_rng_gauss(&rng) / sqrt(TRUE_DIM);
    }
    double x[TRUE_DIM];
    for (int n = 0; n < N_ITEMS + N_PROBES; n++) {
        bool item = n < N_ITEMS;
        int p = n - N_ITEMS;
        int l = item ? n % N_LABELS : (probe_label[p] = (int)(td_rng_next(&rng) % N_LABELS));
        for (int j = 0; j < TRUE_DIM; j++)
            x[j] = c[l][j] + 0.35 * td_rng_gauss(&rng);
        project(x, pn, DIM, item ? new_items[n] : new_probes[p]);
        project(x, NULL, W_DIM, item ? w_items[n] : w_probes[p]);
        for (int j = 0; j < TRUE_DIM; j++)     /* the old model is noisier */
            x[j] += 0.3 * td_rng_gauss(&rng);
        project(x, po, DIM, item ? old_items[n] : old_probes[p]);
    }
    for (int i = 0; i < N_ITEMS; i++)
        order[i] = i;
    for (int i = N_ITEMS - 1; i > 0; i--) {
        int j = (int)(td_rng_next(&rng) % (uint64_t)(i + 1)), t = order[i];
        order[i] = order[j];
        order[j] = t;
    }
}

static void post(td_http *h, long want, const char *path, const char *body)
{
    td_reply r;
    CHECK_EQ(td_http_call(h, &r, want, "POST", path, body), want);
    td_reply_finish(&r);
}

/* Posts items order[from..to) of v (dim floats each) as model's to
 * gallery g; all N_ITEMS with labels when from is -1. */
static void post_items(td_http *h, const char *g, const char *model, const float *v, int dim,
                       int from, int to)
{
    td_text t = {0};
    td_text_append(&t, "{\"model\":\"%s\",\"items\":[", model);
    for (int k = from < 0 ? 0 : from; k < to; k++) {
        int i = from < 0 ? k : order[k];
        char *b64 = td_b64_floats(v + (size_t)i * dim, (size_t)dim);
        td_text_append(&t, "%s{\"id\":\"i%d\",\"label\":\"l%d\",\"vector_b64\":\"%s\"}",
                       k > (from < 0 ? 0 : from) ? "," : "", i, i % N_LABELS, b64);
        free(b64);
    }
    td_text_append(&t, "]}");
    char *path = td_fmt("/v1/galleries/%s/items", g);
    post(h, 200, path, t.s);
    free(path);
    free(t.s);
}

/* The evaluation body of query model qm's probes (dim floats each) with
 * o's baseline; view NULL: none given; adapter NULL: raw. */
static char *eval_body(const char *qm, const float *probes, int dim, const char *view,
                       const char *adapter)
{
    td_text t = {0};
    td_text_append(&t, "{\"query_model\":\"%s\"", qm);
    if (view)
        td_text_append(&t, ",\"gallery_view\":%s", view);
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

enum { R_TOP1, R_TOP5, R_TOP10, R_MAP, R_NEG, R_POS, R_NFR, R_COV, R_GAP, R_COUNT };
static const char *const ref_names[R_COUNT] = {"top1", "top5", "top10", "map", "negative",
                                               "positive", "nfr", "coverage", "gap"};

/* Runs the reference for the query-model embeddings own (of the first
 * `covered` items of the backfill order; dim qdim) and probes, through
 * adapter's weights when adapter is not NULL. */
static void reference(td_http *h, const char *metric, const float *own, const float *probes,
                      int qdim, int covered, const char *adapter, double out[R_COUNT])
{
    char dir[] = "/tmp/test_http_mixed_eval.XXXXXX";
    REQUIRE(mkdtemp(dir));
    static unsigned char has[N_ITEMS];
    memset(has, 0, sizeof has);
    for (int k = 0; k < covered; k++)
        has[order[k]] = 1;
    write_file(dir, "gallery.f32", old_items, sizeof old_items);
    write_file(dir, "own.f32", own, (size_t)N_ITEMS * qdim * sizeof(float));
    write_file(dir, "has_own.u8", has, sizeof has);
    write_file(dir, "probes.f32", probes, (size_t)N_PROBES * qdim * sizeof(float));
    write_file(dir, "baseline.f32", old_probes, sizeof old_probes);
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
        const cJSON *rows = td_json_at(r.json, "weights"), *bias = td_json_at(r.json, "bias");
        REQUIRE(cJSON_GetArraySize(rows) == qdim);
        static double w[W_DIM * DIM], b[DIM];
        for (int i = 0; i < qdim; i++) {
            const cJSON *row = cJSON_GetArrayItem(rows, i);
            REQUIRE(cJSON_GetArraySize(row) == DIM);
            for (int j = 0; j < DIM; j++)
                w[i * DIM + j] = cJSON_GetArrayItem(row, j)->valuedouble;
        }
        write_file(dir, "weights.f64", w, (size_t)qdim * DIM * sizeof *w);
        if (cJSON_IsArray(bias)) {
            REQUIRE(cJSON_GetArraySize(bias) == DIM);
            for (int j = 0; j < DIM; j++)
                b[j] = cJSON_GetArrayItem(bias, j)->valuedouble;
            write_file(dir, "bias.f64", b, sizeof b);
        }
        td_reply_finish(&r);
    }
    char *cmd = td_fmt("/usr/bin/python3 '%s' '%s' %s 1,5,10", ref_script, dir, metric);
    FILE *pipe = popen(cmd, "r");
    REQUIRE(pipe);
    for (int i = 0; i < R_COUNT; i++)
        out[i] = NAN;
    char line[256], key[32];
    double v;
    while (fgets(line, sizeof line, pipe))
        for (int i = 0; sscanf(line, "%31s %lf", key, &v) == 2 && i < R_COUNT; i++)
            if (strcmp(key, ref_names[i]) == 0)
                out[i] = v;
    REQUIRE(pclose(pipe) == 0);
    free(cmd);
    static const char *const files[] = {"gallery.f32", "own.f32", "has_own.u8", "probes.f32",
                                        "baseline.f32", "gallery_labels.txt",
                                        "probe_labels.txt", "weights.f64", "bias.f64"};
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++)
        remove_file(dir, files[i]);
    REQUIRE(rmdir(dir) == 0);
}

/* The report's numbers equal the reference's. */
static void check_report(const cJSON *rep, const double ref[R_COUNT], const char *metric,
                         const char *what)
{
    static const char *const keys[R_COUNT] = {"cross.top1", "cross.top5", "cross.top10",
                                              "cross.map", "flips.negative", "flips.positive",
                                              "flips.nfr", "coverage", NULL};
    /* Cosine scores are rounded differently by float32 and float64: no
     * item of the probe's label may be that close to one of another. */
    if (strcmp(metric, "cosine") == 0) {
        if (!(ref[R_GAP] > 1e-6))
            fprintf(stderr, "%s: the data has a gap of %g only\n", what, ref[R_GAP]);
        REQUIRE(ref[R_GAP] > 1e-6);
    }
    CHECK_STREQ(td_json_str(rep, "gallery_view"), "mixed");
    for (int i = 0; i < R_GAP; i++) {
        double got = td_json_num(rep, keys[i]);
        if (!(fabs(got - ref[i]) <= 1e-6))
            fprintf(stderr, "%s: %s is %.9g, numpy says %.9g\n", what, keys[i], got, ref[i]);
        CHECK(fabs(got - ref[i]) <= 1e-6);
    }
}

static char *get_body(td_http *h, const char *path)
{
    td_reply r;
    CHECK_EQ(td_http_call(h, &r, 200, "GET", path, NULL), 200);
    char *s = strdup(r.body ? r.body : "");
    td_reply_finish(&r);
    return s;
}

/* Each stored mixed evaluation: its id, gallery_view and coverage. */
typedef struct stored {
    long id;
    double coverage;
} stored;

static stored kept[64];
static int n_kept;

/* Evaluates mixed at every coverage step, backfilling gallery g with
 * query model qm's embeddings in between; adapter NULL: raw. */
static void run_backfill(td_http *h, const char *metric, const char *g, const char *qm,
                         const float *own, const float *probes, int qdim, const char *adapter)
{
    int covered = 0;
    char *path = td_fmt("/v1/galleries/%s/evaluations", g);
    for (int s = 0; s < N_STEPS; s++) {
        int target = (int)lround(coverages[s] * N_ITEMS);
        if (target > covered)
            post_items(h, g, qm, own, qdim, covered, target);
        covered = target;
        double ref[R_COUNT];
        reference(h, metric, own, probes, qdim, covered, adapter, ref);
        char *body = eval_body(qm, probes, qdim, "\"mixed\"", adapter);
        td_reply r;
        CHECK_EQ(td_http_call(h, &r, 201, "POST", path, body), 201);
        char what[96];
        snprintf(what, sizeof what, "%s%s%s at coverage %.2f", g, adapter ? " via " : "",
                 adapter ? adapter : "", coverages[s]);
        if (r.json) {
            check_report(r.json, ref, metric, what);
            fprintf(stderr, "%s: top1 %.4f map %.4f nfr %.4f\n", what,
                    td_json_num(r.json, "cross.top1"), td_json_num(r.json, "cross.map"),
                    td_json_num(r.json, "flips.nfr"));
            if (n_kept < 64)
                kept[n_kept++] = (stored){(long)td_json_num(r.json, "id"),
                                          td_json_num(r.json, "coverage")};
        }
        td_reply_finish(&r);
        free(body);
    }
    free(path);
}

/* Fits adapter name from model `from` (w's vectors) into o_cosine on
 * every item's pair. */
static void fit_adapter(td_http *h, const char *name, const char *from)
{
    td_text t = {0};
    td_text_append(&t, "{\"name\":\"%s\",\"from\":\"%s\",\"to\":\"o_cosine\",\"pairs\":[",
                   name, from);
    for (int i = 0; i < N_ITEMS; i++) {
        char *a = td_b64_floats(w_items[i], W_DIM), *b = td_b64_floats(old_items[i], DIM);
        td_text_append(&t, "%s{\"from_b64\":\"%s\",\"to_b64\":\"%s\"}", i ? "," : "", a, b);
        free(a);
        free(b);
    }
    td_text_append(&t, "]}");
    post(h, 201, "/v1/adapters", t.s);
    free(t.s);
}

/* Bad input: 400 and nothing stored. */
static void test_bad_input(td_http *h)
{
    const struct {
        const char *qm, *view;
    } cases[] = {
        {"n_cosine", "\"sideways\""},
        {"n_cosine", "3"},
        {"n_ip", "\"mixed\""},          /* ip probes on a cosine gallery */
    };
    char *before = get_body(h, "/v1/galleries/g_cosine/evaluations");
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *body = eval_body(cases[i].qm, &new_probes[0][0], DIM, cases[i].view, NULL);
        td_reply r;
        long st = td_http_json(h, "POST", "/v1/galleries/g_cosine/evaluations", body, &r);
        const char *code = td_reply_error_code(&r);
        if (st != 400)
            fprintf(stderr, "bad case %zu: got %ld: %s\n", i, st, r.body);
        CHECK_EQ(st, 400);
        CHECK(code && strcmp(code, "invalid_argument") == 0);
        td_reply_finish(&r);
        free(body);
    }
    char *after = get_body(h, "/v1/galleries/g_cosine/evaluations");
    CHECK_STREQ(after, before);
    free(after);
    free(before);
}

/* The matrix's pair (g_cosine, n_cosine) is evaluation want. */
static void check_matrix(td_http *h, long want)
{
    td_reply r;
    CHECK_EQ(td_http_call(h, &r, 200, "GET", "/v1/compatibility", NULL), 200);
    long found = -1;
    const cJSON *g, *p;
    cJSON_ArrayForEach(g, td_json_at(r.json, "galleries")) {
        if (strcmp(td_json_str(g, "gallery"), "g_cosine") != 0)
            continue;
        cJSON_ArrayForEach(p, td_json_at(g, "pairs"))
            if (strcmp(td_json_str(p, "query_model"), "n_cosine") == 0)
                found = (long)td_json_num(p, "evaluation");
    }
    CHECK_EQ(found, want);
    td_reply_finish(&r);
}

int main(int argc, char **argv)
{
    REQUIRE(argc == 2);
    ref_script = argv[1];
    make_data();
    td_daemon *d;
    td_http *h;
    REQUIRE(td_daemon_start_client(NULL, &d, &h));

    for (int m = 0; m < 3; m++) {
        char *o = td_fmt("{\"name\":\"o_%s\",\"dim\":%d,\"metric\":\"%s\"}", metrics[m], DIM,
                         metrics[m]);
        char *n = td_fmt("{\"name\":\"n_%s\",\"dim\":%d,\"metric\":\"%s\"}", metrics[m], DIM,
                         metrics[m]);
        char *g = td_fmt("{\"name\":\"g_%s\",\"model\":\"o_%s\"}", metrics[m], metrics[m]);
        post(h, 201, "/v1/models", o);
        post(h, 201, "/v1/models", n);
        post(h, 201, "/v1/galleries", g);
        free(o);
        free(n);
        free(g);
        char *gname = td_fmt("g_%s", metrics[m]), *oname = td_fmt("o_%s", metrics[m]);
        post_items(h, gname, oname, &old_items[0][0], DIM, -1, N_ITEMS);
        free(gname);
        free(oname);
    }
    post(h, 201, "/v1/models", "{\"name\":\"w\",\"dim\":24,\"metric\":\"cosine\"}");
    post(h, 201, "/v1/galleries", "{\"name\":\"ga\",\"model\":\"o_cosine\"}");
    post_items(h, "ga", "o_cosine", &old_items[0][0], DIM, -1, N_ITEMS);
    fit_adapter(h, "w-to-o", "w");

    /* The default view before any backfill: gallery_model, no coverage. */
    char *body = eval_body("n_cosine", &new_probes[0][0], DIM, NULL, NULL);
    td_reply plain;
    CHECK_EQ(td_http_call(h, &plain, 201, "POST", "/v1/galleries/g_cosine/evaluations", body),
             201);
    free(body);
    long plain_id = (long)td_json_num(plain.json, "id");
    CHECK_STREQ(td_json_str(plain.json, "gallery_view"), "gallery_model");
    CHECK(cJSON_IsNull(td_json_at(plain.json, "coverage")));
    test_bad_input(h);

    for (int m = 0; m < 3; m++) {
        char *g = td_fmt("g_%s", metrics[m]), *qm = td_fmt("n_%s", metrics[m]);
        run_backfill(h, metrics[m], g, qm, &new_items[0][0], &new_probes[0][0], DIM, NULL);
        free(g);
        free(qm);
    }
    run_backfill(h, "cosine", "ga", "w", &w_items[0][0], &w_probes[0][0], W_DIM, "w-to-o");
    CHECK_EQ(n_kept, 4 * N_STEPS);

    /* Through an adapter the dims may differ, the metrics may not: an ip
     * query model's probes mapped into the cosine gallery model are fine
     * for the gallery_model view, refused for the mixed one. */
    post(h, 201, "/v1/models", "{\"name\":\"w_ip\",\"dim\":24,\"metric\":\"ip\"}");
    fit_adapter(h, "wip-to-o", "w_ip");
    char *before = get_body(h, "/v1/galleries/ga/evaluations");
    body = eval_body("w_ip", &w_probes[0][0], W_DIM, "\"mixed\"", "wip-to-o");
    td_reply mm;
    CHECK_EQ(td_http_json(h, "POST", "/v1/galleries/ga/evaluations", body, &mm), 400);
    CHECK_STREQ(td_reply_error_code(&mm), "invalid_argument");
    const char *msg = td_reply_error_message(&mm);
    CHECK(msg && strstr(msg, "metrics must agree"));
    td_reply_finish(&mm);
    free(body);
    char *after = get_body(h, "/v1/galleries/ga/evaluations");
    CHECK_STREQ(after, before);
    free(after);
    free(before);
    body = eval_body("w_ip", &w_probes[0][0], W_DIM, NULL, "wip-to-o");
    CHECK_EQ(td_http_call(h, &mm, 201, "POST", "/v1/galleries/ga/evaluations", body), 201);
    td_reply_finish(&mm);
    free(body);
    /* Mixed evaluations verify nothing: the pair's verdict stays, and a
     * model with only mixed evaluations is not let through the gate. */
    check_matrix(h, plain_id);
    td_reply gate;
    CHECK_EQ(td_http_call(h, &gate, 200, "PATCH", "/v1/galleries/g_ip",
                          "{\"query_policy\":\"verified\"}"), 200);
    td_reply_finish(&gate);
    /* fully backfilled, g_ip needs no comparison across models: one item
     * without an n_ip embedding makes it need one */
    char *v = td_b64_floats(old_items[0], DIM);
    char *extra = td_fmt("{\"model\":\"o_ip\",\"items\":[{\"id\":\"x0\",\"vector_b64\":\"%s\"}]}",
                         v);
    post(h, 200, "/v1/galleries/g_ip/items", extra);
    free(extra);
    free(v);
    v = td_b64_floats(new_probes[0], DIM);
    char *search = td_fmt("{\"model\":\"n_ip\",\"k\":5,\"vector_b64\":\"%s\"}", v);
    CHECK_EQ(td_http_json(h, "POST", "/v1/galleries/g_ip/search", search, &gate), 409);
    CHECK_STREQ(td_reply_error_code(&gate), "model_not_verified");
    td_reply_finish(&gate);
    free(search);
    free(v);

    /* kill -9: every report comes back with its view and coverage. */
    CHECK_EQ(td_daemon_kill(d), 0);
    REQUIRE(td_daemon_start(d, NULL));
    td_http_destroy(h);
    h = td_http_create(d);
    for (int i = 0; i < n_kept; i++) {
        char *path = td_fmt("/v1/evaluations/%ld", kept[i].id);
        td_reply r;
        CHECK_EQ(td_http_call(h, &r, 200, "GET", path, NULL), 200);
        CHECK_STREQ(td_json_str(r.json, "gallery_view"), "mixed");
        CHECK_EQ(td_json_num(r.json, "coverage"), kept[i].coverage);
        CHECK_NEAR(kept[i].coverage, coverages[i % N_STEPS], 0.5 / N_ITEMS);
        td_reply_finish(&r);
        free(path);
    }
    char *path = td_fmt("/v1/evaluations/%ld", plain_id);
    td_reply r;
    CHECK_EQ(td_http_call(h, &r, 200, "GET", path, NULL), 200);
    CHECK_STREQ(td_json_str(r.json, "gallery_view"), "gallery_model");
    CHECK(cJSON_IsNull(td_json_at(r.json, "coverage")));
    td_reply_finish(&r);
    free(path);
    check_matrix(h, plain_id);

    td_reply_finish(&plain);
    td_http_destroy(h);
    CHECK_EQ(td_daemon_stop(d), 0);
    td_daemon_destroy(d);
    return check_exit();
}
