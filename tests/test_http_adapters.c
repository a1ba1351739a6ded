/*
 * test_http_adapters.c - adapters over HTTP (SPEC.md §3.7): POST, GET,
 * GET ?weights=true and DELETE against the real daemon.
 *
 * Synthetic pairs: model a (dim 8) embeds each item as a random vector x,
 * model b (dim 8) as x R + noise with R a random rotation-like matrix,
 * model c (dim 12) as x M + noise.  Each kind is fitted from the gallery
 * and from inline pairs, and the weights the daemon returns are compared
 * with tests/adapter_ref.py (numpy, Debian's /usr/bin/python3) run on the
 * same pairs, to 1e-4.  Every bad input of the contract is refused with
 * its status and code, and nothing is stored; an adapter survives kill -9
 * byte for byte; a deleted one is gone.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check.h"
#include "daemon.h"

#define N_PAIRS 60      /* items with a, b and c embeddings */
#define N_ALONE 5       /* items with an a embedding only */
#define DA 8
#define DC 12

static const char *ref_script;
static float va[N_PAIRS][DA], vb[N_PAIRS][DA], vc[N_PAIRS][DC];

/* Fills va, vb, vc: b = a R + noise, c = a M + noise. */
static void make_pairs(void)
{
    td_rng rng = {td_seed(12)};
    float r[DA][DA], m[DA][DC];
    for (int i = 0; i < DA; i++) {
        for (int j = 0; j < DA; j++)
            r[i][j] = (float)td_rng_gauss(&rng);
        for (int j = 0; j < DC; j++)
            m[i][j] = (float)td_rng_gauss(&rng);
    }
    for (int n = 0; n < N_PAIRS; n++) {
        for (int i = 0; i < DA; i++)
            va[n][i] = (float)td_rng_gauss(&rng);
        for (int j = 0; j < DA; j++) {
            double s = 0.05 * td_rng_gauss(&rng);
            for (int i = 0; i < DA; i++)
                s += va[n][i] * r[i][j];
            vb[n][j] = (float)s;
        }
        for (int j = 0; j < DC; j++) {
            double s = 0.05 * td_rng_gauss(&rng);
            for (int i = 0; i < DA; i++)
                s += va[n][i] * m[i][j];
            vc[n][j] = (float)s;
        }
    }
}

static const float *vectors_of(const char *model, int *dim)
{
    *dim = strcmp(model, "c") == 0 ? DC : DA;
    return strcmp(model, "a") == 0 ? &va[0][0] : strcmp(model, "b") == 0 ? &vb[0][0]
                                                                          : &vc[0][0];
}

/* Models a, b (dim 8) and c (dim 12), all cosine; the gallery g of a with
 * every pair, and N_ALONE items of a alone; the gallery lone of a alone. */
static void build(td_http *h)
{
    static const char *const setup[][2] = {
        {"/v1/models", "{\"name\":\"a\",\"dim\":8,\"metric\":\"cosine\"}"},
        {"/v1/models", "{\"name\":\"b\",\"dim\":8,\"metric\":\"cosine\"}"},
        {"/v1/models", "{\"name\":\"c\",\"dim\":12,\"metric\":\"cosine\"}"},
        {"/v1/galleries", "{\"name\":\"g\",\"model\":\"a\"}"},
        {"/v1/galleries", "{\"name\":\"lone\",\"model\":\"a\"}"},
    };
    td_reply r;
    for (size_t i = 0; i < sizeof setup / sizeof setup[0]; i++) {
        CHECK_EQ(td_http_call(h, &r, 201, "POST", setup[i][0], setup[i][1]), 201);
        td_reply_finish(&r);
    }
    static const char *const models[] = {"a", "b", "c"};
    for (size_t k = 0; k < 3; k++) {
        int dim;
        const float *v = vectors_of(models[k], &dim);
        td_text t = {0};
        td_text_append(&t, "{\"model\":\"%s\",\"items\":[", models[k]);
        for (int n = 0; n < N_PAIRS; n++) {
            char *b64 = td_b64_floats(v + (size_t)n * dim, (size_t)dim);
            td_text_append(&t, "%s{\"id\":\"i%d\",\"vector_b64\":\"%s\"}", n ? "," : "", n, b64);
            free(b64);
        }
        for (int n = 0; k == 0 && n < N_ALONE; n++)
            td_text_append(&t, ",{\"id\":\"alone%d\",\"vector\":[1,0,0,0,0,0,0,%d]}", n, n);
        td_text_append(&t, "]}");
        CHECK_EQ(td_http_call(h, &r, 200, "POST", "/v1/galleries/g/items", t.s), 200);
        td_reply_finish(&r);
        free(t.s);
    }
    CHECK_EQ(td_http_call(h, &r, 200, "POST", "/v1/galleries/lone/items",
                          "{\"items\":[{\"id\":\"x\",\"vector\":[1,0,0,0,0,0,0,0]},"
                          "{\"id\":\"y\",\"vector\":[0,1,0,0,0,0,0,0]}]}"), 200);
    td_reply_finish(&r);
}

/* Reads n doubles from dir/name (then removes it); malloc'd. */
static double *read_doubles(const char *dir, const char *name, size_t n)
{
    double *v = malloc(n * sizeof *v);
    REQUIRE(v && td_read_file(dir, name, v, n * sizeof *v));
    return v;
}

/* The max difference between the adapter's weights and bias (GET
 * ?weights=true of name) and numpy's fit of the same pairs. */
static double diff_from_reference(td_http *h, const char *name, const char *from,
                                  const char *to, const char *kind, double ridge,
                                  double *mean_cosine_diff)
{
    int df, dt;
    const float *a = vectors_of(from, &df), *b = vectors_of(to, &dt);
    char dir[] = "/tmp/test_http_adapters.XXXXXX", cmd[1024], line[256];
    REQUIRE(mkdtemp(dir));
    REQUIRE(td_write_file(dir, "a.f32", a, (size_t)N_PAIRS * df * sizeof *a));
    REQUIRE(td_write_file(dir, "b.f32", b, (size_t)N_PAIRS * dt * sizeof *b));
    REQUIRE(td_write_file(dir, "q.f32", a, (size_t)df * sizeof *a));
    snprintf(cmd, sizeof cmd, "/usr/bin/python3 '%s' '%s' %s %d %d cosine cosine %.17g",
             ref_script, dir, kind, df, dt, ridge);
    FILE *pipe = popen(cmd, "r");
    REQUIRE(pipe);
    double ref_mean = NAN;
    while (fgets(line, sizeof line, pipe))
        sscanf(line, "mean_cosine %lf", &ref_mean);
    REQUIRE(pclose(pipe) == 0);
    double *w = read_doubles(dir, "w.f64", (size_t)df * dt);
    bool affine = strcmp(kind, "affine") == 0;
    double *bias = affine ? read_doubles(dir, "bias.f64", (size_t)dt) : NULL;
    free(read_doubles(dir, "mapped.f64", (size_t)dt));
    static const char *const inputs[] = {"a.f32", "b.f32", "q.f32"};
    for (size_t i = 0; i < 3; i++) {
        snprintf(line, sizeof line, "%s/%s", dir, inputs[i]);
        unlink(line);
    }
    REQUIRE(rmdir(dir) == 0);

    td_reply r;
    char *path = td_fmt("/v1/adapters/%s?weights=true", name);
    CHECK_EQ(td_http_call(h, &r, 200, "GET", path, NULL), 200);
    free(path);
    double m = INFINITY;
    const cJSON *jw = td_json_at(r.json, "weights");
    const cJSON *jb = td_json_at(r.json, "bias");
    if (cJSON_GetArraySize(jw) == df && (affine ? cJSON_GetArraySize(jb) == dt
                                                : cJSON_IsNull(jb))) {
        m = 0;
        for (int i = 0; i < df; i++) {
            const cJSON *row = cJSON_GetArrayItem(jw, i);
            CHECK_EQ(cJSON_GetArraySize(row), dt);
            for (int j = 0; j < dt && j < cJSON_GetArraySize(row); j++)
                m = fmax(m, fabs(cJSON_GetArrayItem(row, j)->valuedouble - w[(size_t)i * dt + j]));
        }
        for (int j = 0; affine && j < dt; j++)
            m = fmax(m, fabs(cJSON_GetArrayItem(jb, j)->valuedouble - bias[j]));
    }
    *mean_cosine_diff = fabs(td_json_num(r.json, "fit.mean_cosine") - ref_mean);
    td_reply_finish(&r);
    free(w);
    free(bias);
    return m;
}

/* {"pairs":[...]} of the first n pairs of from and to, as JSON arrays or
 * base64; malloc'd. */
static char *pairs_json(const char *from, const char *to, int n, bool b64)
{
    int df, dt;
    const float *a = vectors_of(from, &df), *b = vectors_of(to, &dt);
    td_text t = {0};
    td_text_append(&t, "[");
    for (int i = 0; i < n; i++) {
        const float *v[2] = {a + (size_t)i * df, b + (size_t)i * dt};
        int d[2] = {df, dt};
        td_text_append(&t, "%s{", i ? "," : "");
        for (int s = 0; s < 2; s++) {
            const char *side = s ? "to" : "from";
            if (b64) {
                char *e = td_b64_floats(v[s], (size_t)d[s]);
                td_text_append(&t, "%s\"%s_b64\":\"%s\"", s ? "," : "", side, e);
                free(e);
                continue;
            }
            td_text_append(&t, "%s\"%s\":[", s ? "," : "", side);
            for (int j = 0; j < d[s]; j++)
                td_text_append(&t, "%s%.9g", j ? "," : "", v[s][j]);
            td_text_append(&t, "]");
        }
        td_text_append(&t, "}");
    }
    td_text_append(&t, "]");
    return t.s;
}

/* Each kind, from the gallery and from pairs, against numpy. */
static void test_fits(td_http *h)
{
    static const struct {
        const char *name, *from, *to, *kind;  /* kind NULL: the default */
        const char *want_kind;
        double ridge;
        int source;                             /* 0 gallery, 1 JSON pairs, 2 base64 pairs */
    } fits[] = {
        {"ab-orth", "a", "b", NULL, "orthogonal", 0, 0},
        {"ab-orth-pairs", "a", "b", "orthogonal", "orthogonal", 0, 1},
        {"ac-lin", "a", "c", NULL, "linear", 0, 0},
        {"ac-ridge", "a", "c", "linear", "linear", 0.5, 2},
        {"ca-aff", "c", "a", "affine", "affine", 0, 0},
        {"ab-aff-pairs", "a", "b", "affine", "affine", 0.1, 1},
    };
    for (size_t i = 0; i < sizeof fits / sizeof fits[0]; i++) {
        td_text body = {0};
        td_text_append(&body, "{\"name\":\"%s\",\"from\":\"%s\",\"to\":\"%s\"", fits[i].name,
                       fits[i].from, fits[i].to);
        if (fits[i].kind)
            td_text_append(&body, ",\"kind\":\"%s\"", fits[i].kind);
        if (fits[i].ridge != 0)
            td_text_append(&body, ",\"ridge\":%g", fits[i].ridge);
        if (fits[i].source == 0) {
            td_text_append(&body, ",\"gallery\":\"g\"}");
        } else {
            char *p = pairs_json(fits[i].from, fits[i].to, N_PAIRS, fits[i].source == 2);
            td_text_append(&body, ",\"pairs\":%s}", p);
            free(p);
        }
        td_reply r;
        CHECK_EQ(td_http_call(h, &r, 201, "POST", "/v1/adapters", body.s), 201);
        free(body.s);
        CHECK_STREQ(td_json_str(r.json, "kind"), fits[i].want_kind);
        CHECK_EQ(td_json_num(r.json, "pairs"), N_PAIRS);  /* not the items of a alone */
        CHECK_EQ(td_json_num(r.json, "ridge"), fits[i].ridge);
        /* R is no rotation: orthogonal fits it less well than linear. */
        CHECK(td_json_num(r.json, "fit.cv_mean_cosine") > 0.8);
        CHECK(td_json_at(r.json, "weights") == NULL);
        td_reply_finish(&r);
        double dmean;
        double d = diff_from_reference(h, fits[i].name, fits[i].from, fits[i].to,
                                       fits[i].want_kind, fits[i].ridge, &dmean);
        if (d > 1e-4 || dmean > 1e-4)
            fprintf(stderr, "%s: weights differ by %g, mean cosine by %g\n", fits[i].name, d,
                    dmean);
        CHECK(d <= 1e-4);
        CHECK(dmean <= 1e-4);
    }
}

/* The adapters' listing, as text. */
static char *listing(td_http *h)
{
    td_reply r;
    CHECK_EQ(td_http_call(h, &r, 200, "GET", "/v1/adapters", NULL), 200);
    char *s = strdup(r.body);
    td_reply_finish(&r);
    return s;
}

/* Every bad input of the contract: its status and code, nothing stored. */
static void test_bad_input(td_http *h)
{
    char *p_ab3 = pairs_json("a", "c", 3, false);
    char *p_ab = pairs_json("a", "b", 4, false);
    float same[8][DA + DC];
    for (int i = 0; i < 8; i++)
        for (int j = 0; j < DA + DC; j++)
            same[i][j] = (float)(j + 1);
    td_text dup = {0};
    td_text_append(&dup, "[");
    for (int i = 0; i < 8; i++) {
        char *x = td_b64_floats(same[i], DA), *y = td_b64_floats(same[i] + DA, DC);
        td_text_append(&dup, "%s{\"from_b64\":\"%s\",\"to_b64\":\"%s\"}", i ? "," : "", x, y);
        free(x);
        free(y);
    }
    td_text_append(&dup, "]");
    float nan8[DA] = {1, 0, 0, 0, 0, 0, 0, NAN};
    char *nan_b64 = td_b64_floats(nan8, DA);
    float zero8[DA] = {0};
    char *zero_b64 = td_b64_floats(zero8, DA);
    const struct {
        char *body;
        long status;
        const char *code;
    } cases[] = {
        {td_fmt("{\"name\":\"x\",\"from\":\"nope\",\"to\":\"b\",\"gallery\":\"g\"}"), 404, "not_found"},
        {td_fmt("{\"name\":\"x\",\"from\":\"a\",\"to\":\"nope\",\"pairs\":%s}", p_ab), 404, "not_found"},
        {td_fmt("{\"name\":\"x\",\"from\":\"a\",\"to\":\"b\",\"gallery\":\"nope\"}"), 404, "not_found"},
        {td_fmt("{\"name\":\"ab-orth\",\"from\":\"a\",\"to\":\"b\",\"gallery\":\"g\"}"), 409, "already_exists"},
        {td_fmt("{\"name\":\"x\",\"from\":\"a\",\"to\":\"c\",\"kind\":\"orthogonal\",\"gallery\":\"g\"}"), 400, "invalid_argument"},
        {td_fmt("{\"name\":\"x\",\"from\":\"a\",\"to\":\"b\",\"kind\":\"orthogonal\",\"ridge\":1,\"gallery\":\"g\"}"), 400, "invalid_argument"},
        {td_fmt("{\"name\":\"x\",\"from\":\"a\",\"to\":\"b\",\"gallery\":\"g\",\"pairs\":%s}", p_ab), 400, "invalid_argument"},
        {td_fmt("{\"name\":\"x\",\"from\":\"a\",\"to\":\"b\"}"), 400, "invalid_argument"},
        {td_fmt("{\"name\":\"x\",\"from\":\"a\",\"to\":\"b\",\"pairs\":[]}"), 400, "invalid_argument"},
        {td_fmt("{\"name\":\"x\",\"from\":\"b\",\"to\":\"a\",\"pairs\":[{\"from\":[1,2],\"to\":[1,0,0,0,0,0,0,0]}]}"), 400, "dimension_mismatch"},
        {td_fmt("{\"name\":\"x\",\"from\":\"a\",\"to\":\"b\",\"pairs\":[{\"from_b64\":\"%s\",\"to\":[1,0,0,0,0,0,0,0]},{\"from\":[1,0,0,0,0,0,0,0],\"to\":[0,1,0,0,0,0,0,0]}]}", nan_b64), 400, "invalid_vector"},
        {td_fmt("{\"name\":\"x\",\"from\":\"a\",\"to\":\"b\",\"pairs\":[{\"from_b64\":\"%s\",\"to\":[1,0,0,0,0,0,0,0]},{\"from\":[1,0,0,0,0,0,0,0],\"to\":[0,1,0,0,0,0,0,0]}]}", zero_b64), 400, "invalid_vector"},
        {td_fmt("{\"name\":\"x\",\"from\":\"a\",\"to\":\"b\",\"pairs\":[{\"from\":[1,0,0,0,0,0,0,0]}]}"), 400, "invalid_vector"},
        {td_fmt("{\"name\":\"x\",\"from\":\"a\",\"to\":\"b\",\"pairs\":[{\"from\":[1,0,0,0,0,0,0,0],\"to\":[1,0,0,0,0,0,0,0],\"extra\":1}]}"), 400, "unknown_field"},
        {td_fmt("{\"name\":\"x\",\"from\":\"a\",\"to\":\"c\",\"ridge\":-1,\"gallery\":\"g\"}"), 400, "invalid_argument"},
        {td_fmt("{\"name\":\"x\",\"from\":\"a\",\"to\":\"c\",\"ridge\":\"1\",\"gallery\":\"g\"}"), 400, "invalid_argument"},
        {td_fmt("{\"name\":\"x\",\"from\":\"a\",\"to\":\"c\",\"ridge\":1e999,\"gallery\":\"g\"}"), 400, "invalid_argument"},
        {td_fmt("{\"name\":\"x\",\"from\":\"a\",\"to\":\"c\",\"kind\":\"cubic\",\"gallery\":\"g\"}"), 400, "invalid_argument"},
        {td_fmt("{\"name\":\"x y\",\"from\":\"a\",\"to\":\"c\",\"gallery\":\"g\"}"), 400, "invalid_name"},
        {td_fmt("{\"name\":\"x\",\"from\":\"a\",\"to\":\"c\",\"gallery\":\"g\",\"other\":1}"), 400, "unknown_field"},
        {td_fmt("{\"name\":\"x\",\"from\":\"a\",\"to\":\"c\",\"pairs\":%s}", p_ab3), 422, "too_few_pairs"},
        {td_fmt("{\"name\":\"x\",\"from\":\"a\",\"to\":\"b\",\"gallery\":\"lone\"}"), 422, "too_few_pairs"},
        {td_fmt("{\"name\":\"x\",\"from\":\"a\",\"to\":\"c\",\"pairs\":%s}", dup.s), 422, "unprocessable"},
    };
    char *before = listing(h);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        td_reply r;
        long st = td_http_json(h, "POST", "/v1/adapters", cases[i].body, &r);
        const char *code = td_reply_error_code(&r);
        if (st != cases[i].status || !code || strcmp(code, cases[i].code) != 0)
            fprintf(stderr, "case %zu: want %ld %s, got %ld: %s\n", i, cases[i].status,
                    cases[i].code, st, r.body);
        CHECK_EQ(st, cases[i].status);
        CHECK(code && strcmp(code, cases[i].code) == 0);
        if (cases[i].status == 422)     /* says how many pairs are needed */
            CHECK(strstr(td_reply_error_message(&r), "at least") != NULL);
        td_reply_finish(&r);
        free(cases[i].body);
    }
    char *after = listing(h);
    CHECK_STREQ(after, before);
    free(before);
    free(after);
    free(p_ab3);
    free(p_ab);
    free(dup.s);
    free(nan_b64);
    free(zero_b64);
}

int main(int argc, char **argv)
{
    REQUIRE(argc == 2);
    ref_script = argv[1];
    make_pairs();
    td_daemon *d;
    td_http *h;
    REQUIRE(td_daemon_start_client(NULL, &d, &h));
    build(h);
    test_fits(h);
    test_bad_input(h);

    /* kill -9 after a fit: the adapter and its weights are the same. */
    td_reply r;
    CHECK_EQ(td_http_call(h, &r, 200, "GET", "/v1/adapters/ca-aff?weights=true", NULL), 200);
    char *before = strdup(r.body);
    td_reply_finish(&r);
    char *list_before = listing(h);
    CHECK_EQ(td_daemon_kill(d), 0);
    REQUIRE(td_daemon_start(d, NULL));
    CHECK_EQ(td_http_call(h, &r, 200, "GET", "/v1/adapters/ca-aff?weights=true", NULL), 200);
    CHECK_STREQ(r.body, before);
    td_reply_finish(&r);
    char *list_after = listing(h);
    CHECK_STREQ(list_after, list_before);
    free(before);
    free(list_before);
    free(list_after);

    /* Deleted: gone, and a second delete is 404. */
    CHECK_EQ(td_http_call(h, &r, 204, "DELETE", "/v1/adapters/ab-orth", NULL), 204);
    td_reply_finish(&r);
    CHECK_EQ(td_http_call(h, &r, 404, "GET", "/v1/adapters/ab-orth", NULL), 404);
    td_reply_finish(&r);
    CHECK_EQ(td_http_call(h, &r, 404, "DELETE", "/v1/adapters/ab-orth", NULL), 404);
    td_reply_finish(&r);
    CHECK_EQ(td_http_call(h, &r, 400, "GET", "/v1/adapters/ac-lin?weights=maybe", NULL), 400);
    td_reply_finish(&r);

    td_http_destroy(h);
    CHECK_EQ(td_daemon_stop(d), 0);
    td_daemon_destroy(d);
    return check_exit();
}
