/*
 * test_adapter.c - adapter fits against numpy, and what a fit refuses.
 *
 *     test_adapter ADAPTER_REF_PY
 *
 * Each fit case writes its pairs and queries to a temporary directory,
 * runs the independent reference (tests/adapter_ref.py, Debian's numpy)
 * on them, and compares weights, bias, mapped queries, mean cosine and
 * the 5-fold cross-validated mean cosine.  The other cases need no
 * reference: Procrustes maps are orthogonal, a rotation hidden in noisy
 * pairs is recovered, and bad input is refused with the right code and
 * a message that says what is needed.
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "adapter.h"
#include "check.h"

static const char *ref_script;

/* ---- deterministic random numbers ---- */

static uint64_t rng_state = 88172645463325252ull;

static double uniform(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return ((rng_state >> 11) + 0.5) / 9007199254740992.0;
}

static double gauss(void)
{
    return sqrt(-2 * log(uniform())) * cos(6.283185307179586 * uniform());
}

static float *gauss_matrix(size_t rows, size_t cols, double scale)
{
    float *m = malloc(rows * cols * sizeof *m);
    REQUIRE(m);
    for (size_t i = 0; i < rows * cols; i++)
        m[i] = (float)(gauss() * scale);
    return m;
}

/* c = a (r x k) · b (k x c), naive, in double. */
static float *matmul(const float *a, const float *b, size_t r, size_t k, size_t c)
{
    float *out = malloc(r * c * sizeof *out);
    REQUIRE(out);
    for (size_t i = 0; i < r; i++)
        for (size_t j = 0; j < c; j++) {
            double s = 0;
            for (size_t t = 0; t < k; t++)
                s += (double)a[i * k + t] * b[t * c + j];
            out[i * c + j] = (float)s;
        }
    return out;
}

/* Pairs where B depends on A: B = A M + offset + noise. */
static void make_pairs(size_t n, int df, int dt, double offset, double noise,
                       float **a, float **b)
{
    float *m = gauss_matrix((size_t)df, (size_t)dt, 1.0 / sqrt(df));
    *a = gauss_matrix(n, (size_t)df, 1.0);
    *b = matmul(*a, m, n, (size_t)df, (size_t)dt);
    for (size_t i = 0; i < n * (size_t)dt; i++)
        (*b)[i] += (float)(noise * gauss() + offset * ((i % (size_t)dt) % 3));
    free(m);
}

/* ---- the numpy reference ---- */

static void write_floats(const char *dir, const char *name, const float *v, size_t n)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    REQUIRE(f);
    REQUIRE(fwrite(v, sizeof *v, n, f) == n);
    REQUIRE(fclose(f) == 0);
}

static double *read_doubles(const char *dir, const char *name, size_t n)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    double *v = malloc(n * sizeof *v);
    FILE *f = fopen(path, "rb");
    REQUIRE(v && f);
    REQUIRE(fread(v, sizeof *v, n, f) == n);
    fclose(f);
    unlink(path);
    return v;
}

typedef struct ref_fit {
    double *w, *bias, *mapped;
    double mean_cosine, cv_mean_cosine;
} ref_fit;

static void run_reference(const cd_adapter_params *p, const float *a, const float *b,
                          size_t n, const float *q, size_t nq, ref_fit *r)
{
    char dir[] = "/tmp/test_adapter.XXXXXX", cmd[1024], line[256];
    REQUIRE(mkdtemp(dir));
    write_floats(dir, "a.f32", a, n * (size_t)p->dim_from);
    write_floats(dir, "b.f32", b, n * (size_t)p->dim_to);
    write_floats(dir, "q.f32", q, nq * (size_t)p->dim_from);
    snprintf(cmd, sizeof cmd, "/usr/bin/python3 '%s' '%s' %s %d %d %s %s %.17g", ref_script,
             dir, cd_adapter_kind_name(p->kind), p->dim_from, p->dim_to,
             cd_metric_name(p->metric_from), cd_metric_name(p->metric_to), p->ridge);
    FILE *pipe = popen(cmd, "r");
    REQUIRE(pipe);
    int seen = 0;
    while (fgets(line, sizeof line, pipe)) {
        if (sscanf(line, "mean_cosine %lf", &r->mean_cosine) == 1)
            seen |= 1;
        else if (sscanf(line, "cv_mean_cosine %lf", &r->cv_mean_cosine) == 1)
            seen |= 2;
    }
    REQUIRE(pclose(pipe) == 0 && seen == 3);
    r->w = read_doubles(dir, "w.f64", (size_t)p->dim_from * (size_t)p->dim_to);
    r->bias = p->kind == CD_ADAPTER_AFFINE ? read_doubles(dir, "bias.f64", (size_t)p->dim_to)
                                           : NULL;
    r->mapped = read_doubles(dir, "mapped.f64", nq * (size_t)p->dim_to);
    static const char *const inputs[] = {"a.f32", "b.f32", "q.f32"};
    for (size_t i = 0; i < 3; i++) {
        snprintf(line, sizeof line, "%s/%s", dir, inputs[i]);
        unlink(line);
    }
    REQUIRE(rmdir(dir) == 0);
}

static double max_abs_diff_f(const float *x, const double *y, size_t n)
{
    double m = 0;
    for (size_t i = 0; i < n; i++)
        if (fabs(x[i] - y[i]) > m || isnan(x[i]))
            m = isnan(x[i]) ? INFINITY : fabs(x[i] - y[i]);
    return m;
}

/* max |WᵀW - I| of a d x d row-major W. */
static double orthogonality_error(const float *w, int d)
{
    double m = 0;
    for (int i = 0; i < d; i++)
        for (int j = 0; j < d; j++) {
            double s = 0;
            for (int t = 0; t < d; t++)
                s += (double)w[t * d + i] * w[t * d + j];
            double e = fabs(s - (i == j));
            if (e > m)
                m = e;
        }
    return m;
}

/* ---- each kind against numpy ---- */

static void test_against_numpy(void)
{
    static const struct {
        cd_adapter_kind kind;
        int df, dt;
        cd_metric mf, mt;
        double ridge, offset;
        size_t n;
        bool cv;            /* a CV number is expected */
    } cases[] = {
        {CD_ADAPTER_ORTHOGONAL, 64, 64, CD_METRIC_COSINE, CD_METRIC_COSINE, 0, 0, 500, true},
        {CD_ADAPTER_ORTHOGONAL, 32, 32, CD_METRIC_IP, CD_METRIC_L2, 0, 0, 200, true},
        /* orthogonal cases have n >= dim: with fewer pairs U Vᵀ is not unique */
        {CD_ADAPTER_ORTHOGONAL, 8, 8, CD_METRIC_COSINE, CD_METRIC_IP, 0, 0, 9, false},
        {CD_ADAPTER_LINEAR, 48, 96, CD_METRIC_COSINE, CD_METRIC_COSINE, 0.1, 0, 300, true},
        {CD_ADAPTER_LINEAR, 96, 48, CD_METRIC_IP, CD_METRIC_L2, 0, 0, 400, true},
        {CD_ADAPTER_LINEAR, 96, 48, CD_METRIC_COSINE, CD_METRIC_COSINE, 2.5, 0, 60, true},
        /* ridge 0 and 50 pairs: each training set (40) is under 48 */
        {CD_ADAPTER_LINEAR, 48, 48, CD_METRIC_IP, CD_METRIC_IP, 0, 0, 50, false},
        {CD_ADAPTER_AFFINE, 48, 96, CD_METRIC_IP, CD_METRIC_COSINE, 0.5, 0.7, 300, true},
        {CD_ADAPTER_AFFINE, 96, 48, CD_METRIC_COSINE, CD_METRIC_IP, 0, 1.5, 400, true},
        {CD_ADAPTER_AFFINE, 8, 4, CD_METRIC_L2, CD_METRIC_L2, 1, 3, 7, false},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        cd_adapter_params p = {cases[c].kind, cases[c].df, cases[c].mf, cases[c].dt,
                               cases[c].mt, cases[c].ridge};
        float *a, *b;
        make_pairs(cases[c].n, p.dim_from, p.dim_to, cases[c].offset, 0.3, &a, &b);
        size_t nq = 7;
        float *q = gauss_matrix(nq, (size_t)p.dim_from, 2.0);
        cd_adapter *ad = NULL;
        cd_error err;
        CHECK_OK(cd_adapter_fit(&p, a, b, cases[c].n, &ad, &err), &err);
        REQUIRE(ad);
        ref_fit r;
        run_reference(&p, a, b, cases[c].n, q, nq, &r);
        size_t nw = (size_t)p.dim_from * (size_t)p.dim_to;
        double dw = max_abs_diff_f(cd_adapter_weights(ad), r.w, nw);
        if (dw > 1e-4)
            fprintf(stderr, "case %zu (%s %d -> %d): max weight difference %g\n", c,
                    cd_adapter_kind_name(p.kind), p.dim_from, p.dim_to, dw);
        CHECK(dw <= 1e-4);
        if (p.kind == CD_ADAPTER_AFFINE) {
            REQUIRE(cd_adapter_bias(ad));
            CHECK(max_abs_diff_f(cd_adapter_bias(ad), r.bias, (size_t)p.dim_to) <= 1e-4);
        } else {
            CHECK(cd_adapter_bias(ad) == NULL);
        }
        if (p.kind == CD_ADAPTER_ORTHOGONAL)
            CHECK(orthogonality_error(cd_adapter_weights(ad), p.dim_from) <= 1e-4);

        float *mapped = malloc(nq * (size_t)p.dim_to * sizeof *mapped);
        REQUIRE(mapped);
        CHECK_OK(cd_adapter_map(ad, q, nq, mapped, &err), &err);
        CHECK(max_abs_diff_f(mapped, r.mapped, nq * (size_t)p.dim_to) <= 1e-4);
        /* One query at a time (sgemv) maps as the batch (sgemm) does. */
        float one[96];
        for (size_t i = 0; i < nq; i++) {
            CHECK_OK(cd_adapter_map(ad, q + i * (size_t)p.dim_from, 1, one, &err), &err);
            for (int j = 0; j < p.dim_to; j++)
                CHECK_NEAR(one[j], mapped[i * (size_t)p.dim_to + (size_t)j], 1e-5);
        }

        cd_adapter_info info;
        cd_adapter_info_get(ad, &info);
        CHECK_EQ(info.pairs, cases[c].n);
        CHECK_EQ(info.params.kind, p.kind);
        CHECK_EQ(info.params.dim_from, p.dim_from);
        CHECK_EQ(info.params.dim_to, p.dim_to);
        CHECK_NEAR(info.params.ridge, p.ridge, 0);
        CHECK_NEAR(info.mean_cosine, r.mean_cosine, 1e-4);
        CHECK_EQ(isnan(r.cv_mean_cosine), !cases[c].cv);
        CHECK_EQ(isnan(info.cv_mean_cosine), !cases[c].cv);
        if (cases[c].cv) {
            CHECK_NEAR(info.cv_mean_cosine, r.cv_mean_cosine, 1e-4);
            CHECK(info.cv_mean_cosine <= info.mean_cosine + 1e-9);
        }

        /* Stored and loaded again, it maps the same. */
        cd_adapter *back = NULL;
        float *again = malloc(nq * (size_t)p.dim_to * sizeof *again);
        REQUIRE(again);
        CHECK_OK(cd_adapter_from_weights(&info, cd_adapter_weights(ad), cd_adapter_bias(ad),
                                         &back, &err), &err);
        REQUIRE(back);
        CHECK_OK(cd_adapter_map(back, q, nq, again, &err), &err);
        CHECK(memcmp(again, mapped, nq * (size_t)p.dim_to * sizeof *again) == 0);
        cd_adapter_info binfo;
        cd_adapter_info_get(back, &binfo);
        CHECK_EQ(binfo.pairs, info.pairs);
        CHECK_EQ(binfo.params.kind, info.params.kind);
        CHECK(binfo.mean_cosine == info.mean_cosine);
        CHECK(binfo.cv_mean_cosine == info.cv_mean_cosine ||
              (isnan(binfo.cv_mean_cosine) && isnan(info.cv_mean_cosine)));

        cd_adapter_destroy(back);
        free(again);
        free(mapped);
        free(r.w);
        free(r.bias);
        free(r.mapped);
        cd_adapter_destroy(ad);
        free(q);
        free(a);
        free(b);
    }
}

/* ---- a rotation hidden in noisy pairs is recovered ---- */

/* A random orthogonal d x d matrix: a product of d Householder reflections. */
static float *random_rotation(int d)
{
    double *r = calloc((size_t)d * (size_t)d, sizeof *r), *v = malloc((size_t)d * sizeof *v);
    REQUIRE(r && v);
    for (int i = 0; i < d; i++)
        r[i * d + i] = 1;
    for (int h = 0; h < d; h++) {
        double nn = 0;
        for (int i = 0; i < d; i++) {
            v[i] = gauss();
            nn += v[i] * v[i];
        }
        for (int i = 0; i < d; i++) {       /* r = r (I - 2 v vᵀ / |v|²) */
            double s = 0;
            for (int j = 0; j < d; j++)
                s += r[i * d + j] * v[j];
            for (int j = 0; j < d; j++)
                r[i * d + j] -= 2 * s * v[j] / nn;
        }
    }
    float *out = malloc((size_t)d * (size_t)d * sizeof *out);
    REQUIRE(out);
    for (int i = 0; i < d * d; i++)
        out[i] = (float)r[i];
    free(v);
    free(r);
    return out;
}

static void test_recovers_rotation(void)
{
    static const struct {
        int d;
        size_t n;
        double noise, tol;
        cd_metric metric;
    } cases[] = {
        {64, 2000, 0.01, 2e-3, CD_METRIC_IP},
        {32, 1000, 0.0, 1e-5, CD_METRIC_IP},
        {48, 3000, 0.001, 2e-3, CD_METRIC_COSINE},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        int d = cases[c].d;
        float *rot = random_rotation(d);
        CHECK(orthogonality_error(rot, d) < 1e-5);
        float *a = gauss_matrix(cases[c].n, (size_t)d, 1.0);
        float *b = matmul(a, rot, cases[c].n, (size_t)d, (size_t)d);
        for (size_t i = 0; i < cases[c].n * (size_t)d; i++)
            b[i] += (float)(cases[c].noise * gauss());
        cd_adapter_params p = {CD_ADAPTER_ORTHOGONAL, d, cases[c].metric, d,
                               cases[c].metric, 0};
        cd_adapter *ad = NULL;
        cd_error err;
        CHECK_OK(cd_adapter_fit(&p, a, b, cases[c].n, &ad, &err), &err);
        REQUIRE(ad);
        double m = 0;
        for (int i = 0; i < d * d; i++)
            if (fabs(cd_adapter_weights(ad)[i] - rot[i]) > m)
                m = fabs(cd_adapter_weights(ad)[i] - rot[i]);
        if (m > cases[c].tol)
            fprintf(stderr, "rotation case %zu: max |W - R| %g\n", c, m);
        CHECK(m <= cases[c].tol);
        cd_adapter_info info;
        cd_adapter_info_get(ad, &info);
        CHECK(info.mean_cosine > 0.99);
        CHECK(info.cv_mean_cosine > 0.99);
        cd_adapter_destroy(ad);
        free(b);
        free(a);
        free(rot);
    }
}

/* ---- what a fit refuses ---- */

static void expect_fit_error(const cd_adapter_params *p, const float *a, const float *b,
                             size_t n, cd_err code, const char *needle, int which)
{
    cd_adapter *ad = (cd_adapter *)&ad;   /* must come back NULL */
    cd_error err;
    cd_err rc = cd_adapter_fit(p, a, b, n, &ad, &err);
    CHECK_EQ(rc, code);
    CHECK(ad == NULL);
    if (rc != code || ad != NULL || !strstr(err.message, needle)) {
        fprintf(stderr, "  (case %d: code %d, message \"%s\", wanted \"%s\")\n",
                which, (int)rc, err.message, needle);
        CHECK(strstr(err.message, needle) != NULL);
    }
    cd_adapter_destroy(rc == CD_OK ? ad : NULL);
}

static void test_refusals(void)
{
    size_t n = 200;
    float *a, *b, *a96, *b48;
    make_pairs(n, 48, 96, 0, 0.1, &a, &b);
    make_pairs(n, 96, 48, 0, 0.1, &a96, &b48);

    /* Rank deficient: 48-dim from vectors in a 40-dim subspace. */
    float *x = gauss_matrix(n, 40, 1.0), *proj = gauss_matrix(40, 48, 1.0);
    float *low = matmul(x, proj, n, 40, 48);
    /* Affine rank deficient: every from vector has the same first value,
     * so centring leaves that column zero. */
    float *flat = malloc(n * 48 * sizeof *flat);
    REQUIRE(flat);
    memcpy(flat, a, n * 48 * sizeof *flat);
    for (size_t i = 0; i < n; i++)
        flat[i * 48] = 0.5f;
    float *bad = malloc(n * 48 * sizeof *bad);
    REQUIRE(bad);
    memcpy(bad, a, n * 48 * sizeof *bad);

    typedef struct {
        cd_adapter_params p;
        const float *a, *b;
        size_t n;
        cd_err code;
        const char *needle;
    } refusal;
    const cd_metric C = CD_METRIC_COSINE, I = CD_METRIC_IP;
    const refusal cases[] = {
        {{CD_ADAPTER_ORTHOGONAL, 48, C, 96, C, 0}, a, b, n, CD_EINVAL, "equal dims"},
        {{CD_ADAPTER_ORTHOGONAL, 48, C, 48, C, 0.5}, a, a, n, CD_EINVAL, "ridge"},
        {{CD_ADAPTER_LINEAR, 48, C, 96, C, -1}, a, b, n, CD_EINVAL, "ridge"},
        {{CD_ADAPTER_LINEAR, 48, C, 96, C, NAN}, a, b, n, CD_EINVAL, "ridge"},
        {{CD_ADAPTER_AFFINE, 48, C, 96, C, INFINITY}, a, b, n, CD_EINVAL, "ridge"},
        {{CD_ADAPTER_LINEAR, 0, C, 96, C, 0}, a, b, n, CD_EINVAL, "dims"},
        {{CD_ADAPTER_LINEAR, 48, C, CD_DIM_MAX + 1, C, 0}, a, b, n, CD_EINVAL, "dims"},
        {{(cd_adapter_kind)7, 48, C, 96, C, 0}, a, b, n, CD_EINVAL, "kind"},
        /* too few pairs */
        {{CD_ADAPTER_ORTHOGONAL, 48, C, 48, C, 0}, a, a, 1, CD_EUNPROCESSABLE,
         "at least 2 pairs, got 1"},
        {{CD_ADAPTER_ORTHOGONAL, 48, C, 48, C, 0}, a, a, 0, CD_EUNPROCESSABLE,
         "at least 2 pairs, got 0"},
        {{CD_ADAPTER_LINEAR, 48, C, 96, C, 0}, a, b, 47, CD_EUNPROCESSABLE,
         "at least 48 pairs, got 47"},
        {{CD_ADAPTER_AFFINE, 48, C, 96, C, 0}, a, b, 48, CD_EUNPROCESSABLE,
         "at least 49 pairs, got 48"},
        {{CD_ADAPTER_AFFINE, 96, C, 48, C, 0}, a96, b48, 60, CD_EUNPROCESSABLE,
         "at least 97 pairs, got 60"},
        {{CD_ADAPTER_LINEAR, 48, C, 96, C, 1}, a, b, 0, CD_EUNPROCESSABLE,
         "at least 1 pairs, got 0"},
        /* singular */
        {{CD_ADAPTER_LINEAR, 48, C, 96, C, 0}, low, b, n, CD_EUNPROCESSABLE,
         "needs at least 48 linearly independent pairs"},
        {{CD_ADAPTER_LINEAR, 48, I, 96, I, 0}, low, b, n, CD_EUNPROCESSABLE, "singular"},
        {{CD_ADAPTER_AFFINE, 48, I, 96, C, 0}, flat, b, n, CD_EUNPROCESSABLE,
         "needs at least 49 linearly independent pairs"},
        {{CD_ADAPTER_LINEAR, 48, I, 96, I, 1e-300}, low, b, n, CD_EUNPROCESSABLE, "singular"},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++)
        expect_fit_error(&cases[c].p, cases[c].a, cases[c].b, cases[c].n, cases[c].code,
                         cases[c].needle, (int)c);

    /* The same rank-deficient pairs fit with a ridge, and linear fits the
     * flat-column pairs that only affine's centring makes singular. */
    static const struct {
        cd_adapter_kind kind;
        double ridge;
        int which;      /* 0: low, 1: flat */
    } fits[] = {{CD_ADAPTER_LINEAR, 0.1, 0}, {CD_ADAPTER_AFFINE, 0.1, 0},
                {CD_ADAPTER_AFFINE, 0.1, 1}, {CD_ADAPTER_LINEAR, 0, 1}};
    for (size_t c = 0; c < sizeof fits / sizeof fits[0]; c++) {
        cd_adapter_params p = {fits[c].kind, 48, I, 96, I, fits[c].ridge};
        cd_adapter *ad = NULL;
        cd_error err;
        CHECK_OK(cd_adapter_fit(&p, fits[c].which ? flat : low, b, n, &ad, &err), &err);
        CHECK(ad != NULL);
        cd_adapter_destroy(ad);
    }

    /* Bad vectors: NaN, Inf, a zero vector under cosine (fine under ip). */
    cd_adapter_params lin = {CD_ADAPTER_LINEAR, 48, C, 48, C, 0.1};
    bad[5 * 48 + 3] = NAN;
    expect_fit_error(&lin, bad, a, n, CD_EVECTOR, "pair 5: from vector", __LINE__);
    expect_fit_error(&lin, a, bad, n, CD_EVECTOR, "pair 5: to vector", __LINE__);
    bad[5 * 48 + 3] = INFINITY;
    expect_fit_error(&lin, bad, a, n, CD_EVECTOR, "NaN or Inf", __LINE__);
    memset(bad + 9 * 48, 0, 48 * sizeof *bad);
    bad[5 * 48 + 3] = 1;
    expect_fit_error(&lin, bad, a, n, CD_EVECTOR, "pair 9: from vector is zero", __LINE__);
    cd_adapter_params lin_ip = {CD_ADAPTER_LINEAR, 48, I, 48, C, 0.1};
    cd_adapter *ad = NULL;
    cd_error err;
    CHECK_OK(cd_adapter_fit(&lin_ip, bad, a, n, &ad, &err), &err);
    CHECK(ad != NULL);

    /* Mapping refuses what it cannot map, and a short batch is fine. */
    float out[2 * 48], q[2 * 48];
    memcpy(q, a, sizeof q);
    CHECK_OK(cd_adapter_map(ad, q, 0, out, &err), &err);
    q[48 + 1] = NAN;
    CHECK_EQ(cd_adapter_map(ad, q, 2, out, &err), CD_EVECTOR);
    CHECK(strstr(err.message, "query 1") != NULL);
    cd_adapter_destroy(ad);
    cd_adapter_params cos = {CD_ADAPTER_ORTHOGONAL, 48, C, 48, C, 0};
    CHECK_OK(cd_adapter_fit(&cos, a, a, n, &ad, &err), &err);
    REQUIRE(ad);
    memcpy(q, a, sizeof q);
    memset(q + 48, 0, 48 * sizeof *q);
    CHECK_EQ(cd_adapter_map(ad, q, 2, out, &err), CD_EVECTOR);
    CHECK(strstr(err.message, "query 1: a zero vector") != NULL);

    /* from_weights: the bias goes with affine only, weights are finite. */
    cd_adapter_info info;
    cd_adapter_info_get(ad, &info);
    cd_adapter *back = (cd_adapter *)&back;
    float bias[48] = {0};
    CHECK_EQ(cd_adapter_from_weights(&info, cd_adapter_weights(ad), bias, &back, &err),
             CD_EINVAL);
    CHECK(back == NULL);
    info.params.kind = CD_ADAPTER_AFFINE;
    CHECK_EQ(cd_adapter_from_weights(&info, cd_adapter_weights(ad), NULL, &back, &err),
             CD_EINVAL);
    CHECK(strstr(err.message, "needs a bias") != NULL);
    bias[7] = NAN;
    CHECK_EQ(cd_adapter_from_weights(&info, cd_adapter_weights(ad), bias, &back, &err),
             CD_EINVAL);
    info.params.dim_to = 96;
    info.params.kind = CD_ADAPTER_ORTHOGONAL;
    CHECK_EQ(cd_adapter_from_weights(&info, cd_adapter_weights(ad), NULL, &back, &err),
             CD_EINVAL);
    CHECK(back == NULL);
    cd_adapter_destroy(ad);
    cd_adapter_destroy(NULL);

    free(bad);
    free(flat);
    free(low);
    free(proj);
    free(x);
    free(a96);
    free(b48);
    free(a);
    free(b);
}

static void test_kinds(void)
{
    static const struct {
        const char *name;
        cd_adapter_kind kind;
    } names[] = {{"orthogonal", CD_ADAPTER_ORTHOGONAL}, {"linear", CD_ADAPTER_LINEAR},
                 {"affine", CD_ADAPTER_AFFINE}};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        cd_adapter_kind k;
        CHECK(cd_adapter_kind_parse(names[i].name, &k));
        CHECK_EQ(k, names[i].kind);
        CHECK_STREQ(cd_adapter_kind_name(k), names[i].name);
    }
    cd_adapter_kind k;
    CHECK(!cd_adapter_kind_parse("Linear", &k));
    CHECK(!cd_adapter_kind_parse("", &k));
    CHECK_EQ(cd_adapter_default_kind(768, 768), CD_ADAPTER_ORTHOGONAL);
    CHECK_EQ(cd_adapter_default_kind(384, 768), CD_ADAPTER_LINEAR);

    static const struct {
        cd_adapter_params p;
        size_t need;
    } mins[] = {
        {{CD_ADAPTER_ORTHOGONAL, 64, CD_METRIC_COSINE, 64, CD_METRIC_COSINE, 0}, 2},
        {{CD_ADAPTER_LINEAR, 64, CD_METRIC_COSINE, 32, CD_METRIC_COSINE, 0}, 64},
        {{CD_ADAPTER_AFFINE, 64, CD_METRIC_COSINE, 32, CD_METRIC_COSINE, 0}, 65},
        {{CD_ADAPTER_LINEAR, 64, CD_METRIC_COSINE, 32, CD_METRIC_COSINE, 0.01}, 1},
        {{CD_ADAPTER_AFFINE, 64, CD_METRIC_COSINE, 32, CD_METRIC_COSINE, 0.01}, 1},
    };
    for (size_t i = 0; i < sizeof mins / sizeof mins[0]; i++)
        CHECK_EQ(cd_adapter_min_pairs(&mins[i].p), mins[i].need);
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: test_adapter ADAPTER_REF_PY\n");
        return 2;
    }
    ref_script = argv[1];
    test_kinds();
    test_against_numpy();
    test_recovers_rotation();
    test_refusals();
    return check_exit();
}
