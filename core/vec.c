/*
 * vec.c - metrics, finiteness and the base64 float32 form (the alphabet
 * itself is text.c's).
 */
#include "vec.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "text.h"

const char *cd_metric_name(cd_metric m)
{
    switch (m) {
    case CD_METRIC_COSINE: return "cosine";
    case CD_METRIC_IP: return "ip";
    case CD_METRIC_L2: return "l2";
    }
    return "?";
}

bool cd_metric_parse(const char *s, cd_metric *out)
{
    static const cd_metric all[] = {CD_METRIC_COSINE, CD_METRIC_IP, CD_METRIC_L2};
    for (size_t i = 0; s && i < sizeof all / sizeof all[0]; i++) {
        if (strcmp(s, cd_metric_name(all[i])) == 0) {
            *out = all[i];
            return true;
        }
    }
    return false;
}

bool cd_metric_higher_is_better(cd_metric m)
{
    return m != CD_METRIC_L2;
}

bool cd_vec_finite(const float *v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!isfinite(v[i]))
            return false;
    return true;
}

bool cd_vec_in_range(const float *v, size_t n, double *norm2)
{
    double ss = 0.0;
    for (size_t i = 0; i < n; i++)
        ss += (double)v[i] * v[i];
    *norm2 = ss;
    return isfinite(ss) && ss <= CD_VEC_NORM2_MAX;
}

bool cd_vec_normalize(float *v, size_t dim)
{
    double ss = 0.0;
    for (size_t i = 0; i < dim; i++)
        ss += (double)v[i] * v[i];
    if (!(ss > 0.0) || !isfinite(ss))
        return false;
    double inv = 1.0 / sqrt(ss);
    for (size_t i = 0; i < dim; i++)
        v[i] = (float)(v[i] * inv);
    return true;
}

cd_err cd_b64_float_count(const char *text, size_t len, size_t *n,
                          cd_error *err)
{
    *n = 0;
    if (len % 4 != 0)
        return cd__fail(err, CD_EVECTOR, "vector_b64 is not valid base64 (length %zu is not a multiple of 4)", len);
    size_t pad = 0;
    if (len >= 1 && text[len - 1] == '=') pad++;
    if (len >= 2 && text[len - 2] == '=') pad++;
    size_t nbytes = len / 4 * 3 - pad;
    if (nbytes == 0 || nbytes % 4 != 0)
        return cd__fail(err, CD_EVECTOR, "vector_b64 decodes to %zu bytes, not a positive multiple of 4 (float32)", nbytes);
    *n = nbytes / 4;
    return CD_OK;
}

cd_err cd_b64_decode_floats_into(const char *text, size_t len, float *out,
                                 cd_error *err)
{
    size_t n;
    cd_err rc = cd_b64_float_count(text, len, &n, err);
    if (rc != CD_OK)
        return rc;
    size_t nbytes = n * 4, o = 0;
    int pad = (int)(len / 4 * 3 - nbytes);
    unsigned char *bytes = (unsigned char *)out;
    /* Whole quads first; the last one may carry padding. */
    size_t whole = pad ? len - 4 : len;
    const unsigned char *t = (const unsigned char *)text;
    for (size_t i = 0; i < whole; i += 4) {
        int a = cd__b64_value(t[i]), b = cd__b64_value(t[i + 1]);
        int c = cd__b64_value(t[i + 2]), d = cd__b64_value(t[i + 3]);
        if ((a | b | c | d) < 0)
            return cd__fail(err, CD_EVECTOR, "vector_b64 has a character that is not base64 near offset %zu", i);
        unsigned triple = (unsigned)a << 18 | (unsigned)b << 12 | (unsigned)c << 6 | (unsigned)d;
        bytes[o++] = (unsigned char)(triple >> 16);
        bytes[o++] = (unsigned char)(triple >> 8);
        bytes[o++] = (unsigned char)triple;
    }
    if (pad) {
        size_t i = len - 4;
        int v[4];
        for (int j = 0; j < 4; j++) {
            v[j] = j >= 4 - pad && t[i + j] == '=' ? 0 : cd__b64_value(t[i + j]);
            if (v[j] < 0)
                return cd__fail(err, CD_EVECTOR, "vector_b64 has a character that is not base64 at offset %zu", i + j);
        }
        unsigned triple = (unsigned)v[0] << 18 | (unsigned)v[1] << 12 | (unsigned)v[2] << 6 | (unsigned)v[3];
        unsigned char b[3] = {(unsigned char)(triple >> 16), (unsigned char)(triple >> 8), (unsigned char)triple};
        for (int j = 0; j < 3 && o < nbytes; j++)
            bytes[o++] = b[j];
    }
    for (size_t i = 0; i < n; i++) {
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
        unsigned char *p = bytes + 4 * i, t;
        t = p[0], p[0] = p[3], p[3] = t;
        t = p[1], p[1] = p[2], p[2] = t;
#endif
        if (!isfinite(out[i]))
            return cd__fail(err, CD_EVECTOR, "vector_b64 value %zu is not finite", i);
    }
    return CD_OK;
}

cd_err cd_b64_decode_floats(const char *text, size_t len, float **out,
                            size_t *n_out, cd_error *err)
{
    size_t n;
    *out = NULL;
    *n_out = 0;
    cd_err rc = cd_b64_float_count(text, len, &n, err);
    if (rc != CD_OK)
        return rc;
    float *f = malloc(n * sizeof *f);
    if (!f)
        return cd__fail(err, CD_ENOMEM, "out of memory decoding vector_b64");
    rc = cd_b64_decode_floats_into(text, len, f, err);
    if (rc != CD_OK) {
        free(f);
        return rc;
    }
    *out = f;
    *n_out = n;
    return CD_OK;
}

char *cd_b64_encode_floats(const float *v, size_t n)
{
    size_t nbytes = n * 4;
    unsigned char *le = malloc(nbytes ? nbytes : 1);
    char *s = malloc((nbytes + 2) / 3 * 4 + 1);
    if (!le || !s) {
        free(le);
        free(s);
        return NULL;
    }
    for (size_t i = 0; i < n; i++) {
        uint32_t u;
        memcpy(&u, &v[i], sizeof u);
        for (int j = 0; j < 4; j++)
            le[4 * i + (size_t)j] = (unsigned char)(u >> (8 * j));
    }
    cd__b64_encode(le, nbytes, false, s);
    free(le);
    return s;
}
