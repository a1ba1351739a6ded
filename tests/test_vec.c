/*
 * test_vec.c - metrics, normalisation and the base64 float32 codec.
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "vec.h"

static void test_metrics(void)
{
    static const char *const names[] = {"cosine", "ip", "l2"};
    for (size_t i = 0; i < 3; i++) {
        cd_metric m;
        CHECK(cd_metric_parse(names[i], &m));
        CHECK_STREQ(cd_metric_name(m), names[i]);
    }
    cd_metric m;
    CHECK(!cd_metric_parse("L2", &m));
    CHECK(!cd_metric_parse("", &m));
    CHECK(cd_metric_higher_is_better(CD_METRIC_IP));
    CHECK(!cd_metric_higher_is_better(CD_METRIC_L2));
}

static void test_normalize(void)
{
    float v[3] = {3, 0, 4};
    CHECK(cd_vec_normalize(v, 3));
    CHECK_NEAR(v[0], 0.6, 1e-7);
    CHECK_NEAR(v[2], 0.8, 1e-7);
    float z[2] = {0, 0};
    CHECK(!cd_vec_normalize(z, 2));
    CHECK_EQ(z[0], 0);
    float bad[2] = {1, NAN};
    CHECK(!cd_vec_finite(bad, 2));
    CHECK(cd_vec_finite(v, 3));
}

/* The squared-norm bound that keeps ip and l2 scores finite in float32. */
static void test_in_range(void)
{
    static const struct {
        float v[3];
        bool ok;
    } cases[] = {
        {{3, 0, 4}, true},
        {{2.2e18f, 2.2e18f, 0}, true},      /* 9.68e36 */
        {{3.2e18f, 0, 0}, false},           /* 1.02e37 */
        {{3e38f, 0, 0}, false},
        {{INFINITY, 0, 0}, false},
        {{NAN, 0, 0}, false},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        double norm2 = -1;
        CHECK_EQ(cd_vec_in_range(cases[i].v, 3, &norm2), cases[i].ok);
        CHECK(norm2 >= 0 || isnan(norm2));
    }
}

static void test_b64_roundtrip(void)
{
    /* 1..5 floats cover every padding case. */
    for (size_t n = 1; n <= 5; n++) {
        float v[5] = {1.5f, -2.25f, 3e-38f, 65504.0f, -0.0f};
        char *text = cd_b64_encode_floats(v, n);
        REQUIRE(text);
        float *back = NULL;
        size_t nb = 0;
        cd_error err;
        CHECK_OK(cd_b64_decode_floats(text, strlen(text), &back, &nb, &err), &err);
        CHECK_EQ(nb, n);
        for (size_t i = 0; back && i < n; i++)
            CHECK(memcmp(&back[i], &v[i], sizeof v[i]) == 0);
        free(back);
        free(text);
    }
    /* A known encoding: 1.0f is 00 00 80 3f. */
    float *one = NULL;
    size_t n1 = 0;
    cd_error err;
    CHECK_OK(cd_b64_decode_floats("AACAPw==", 8, &one, &n1, &err), &err);
    CHECK_EQ(n1, 1);
    if (one)
        CHECK(one[0] == 1.0f);
    free(one);
}

static void test_b64_rejects(void)
{
    float nan = NAN, inf = INFINITY;
    char *nan_text = cd_b64_encode_floats(&nan, 1);
    char *inf_text = cd_b64_encode_floats(&inf, 1);
    REQUIRE(nan_text && inf_text);
    const struct {
        const char *text;
        const char *why;
    } cases[] = {
        {"", "empty"},
        {"AAA", "length not a multiple of 4 characters"},
        {"AAAAAAA=", "5 bytes: not a multiple of 4"},
        {"AACA", "3 bytes"},
        {"AAC*Pw==", "not base64"},
        {"AA=APw==", "padding in the middle"},
        {nan_text, "NaN"},
        {inf_text, "Inf"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        float *out = (float *)&out;
        size_t n = 99;
        cd_error err;
        cd_err rc = cd_b64_decode_floats(cases[i].text, strlen(cases[i].text), &out, &n, &err);
        if (rc != CD_EVECTOR)
            fprintf(stderr, "case %zu (%s) gave %d\n", i, cases[i].why, rc);
        CHECK_EQ(rc, CD_EVECTOR);
        CHECK(out == NULL);
        CHECK_EQ(n, 0);
        CHECK(err.message[0] != '\0');
    }
    free(nan_text);
    free(inf_text);
}

int main(void)
{
    test_metrics();
    test_normalize();
    test_in_range();
    test_b64_roundtrip();
    test_b64_rejects();
    return check_exit();
}
