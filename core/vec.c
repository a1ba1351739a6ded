/*
 * vec.c - metrics, names, UTF-8 and base64 float32 helpers.
 */
#include "vec.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

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

bool cd_name_valid(const char *s)
{
    size_t n = 0;
    if (!s)
        return false;
    for (; s[n]; n++) {
        char c = s[n];
        bool ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
                  (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-';
        if (!ok || n >= CD_NAME_MAX)
            return false;
    }
    return n > 0;
}

bool cd_utf8_valid(const char *str, size_t n)
{
    const unsigned char *s = (const unsigned char *)str;
    size_t i = 0;
    while (i < n) {
        /* Bodies are mostly ASCII: skip eight such bytes at a time. */
        while (i + 8 <= n) {
            uint64_t w;
            memcpy(&w, s + i, sizeof w);
            if (w & 0x8080808080808080ull)
                break;
            i += 8;
        }
        if (i >= n)
            break;
        unsigned c = s[i];
        size_t len;
        unsigned cp;
        if (c < 0x80) {
            i++;
            continue;
        } else if ((c & 0xE0) == 0xC0) {
            len = 2;
            cp = c & 0x1F;
        } else if ((c & 0xF0) == 0xE0) {
            len = 3;
            cp = c & 0x0F;
        } else if ((c & 0xF8) == 0xF0) {
            len = 4;
            cp = c & 0x07;
        } else {
            return false;
        }
        if (i + len > n)
            return false;
        for (size_t j = 1; j < len; j++) {
            if ((s[i + j] & 0xC0) != 0x80)
                return false;
            cp = (cp << 6) | (s[i + j] & 0x3F);
        }
        if ((len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) ||
            (len == 4 && cp < 0x10000) || cp > 0x10FFFF ||
            (cp >= 0xD800 && cp <= 0xDFFF))
            return false;
        i += len;
    }
    return true;
}

size_t cd_utf8_cut(const char *str, size_t n)
{
    const unsigned char *s = (const unsigned char *)str;
    size_t i = n, cont = 0;
    while (i > 0 && cont < 3 && (s[i - 1] & 0xC0) == 0x80) {
        i--;
        cont++;
    }
    if (i == 0)
        return n;
    unsigned lead = s[i - 1];
    size_t len = (lead & 0xE0) == 0xC0 ? 2 : (lead & 0xF0) == 0xE0 ? 3
                 : (lead & 0xF8) == 0xF0 ? 4 : 1;
    return cont + 1 < len ? i - 1 : n;
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

/* Value of each base64 character, -1 for the rest ('=' included). */
static const signed char b64_values[256] = {
    ['A'] = 0, ['B'] = 1, ['C'] = 2, ['D'] = 3, ['E'] = 4, ['F'] = 5,
    ['G'] = 6, ['H'] = 7, ['I'] = 8, ['J'] = 9, ['K'] = 10, ['L'] = 11,
    ['M'] = 12, ['N'] = 13, ['O'] = 14, ['P'] = 15, ['Q'] = 16, ['R'] = 17,
    ['S'] = 18, ['T'] = 19, ['U'] = 20, ['V'] = 21, ['W'] = 22, ['X'] = 23,
    ['Y'] = 24, ['Z'] = 25, ['a'] = 26, ['b'] = 27, ['c'] = 28, ['d'] = 29,
    ['e'] = 30, ['f'] = 31, ['g'] = 32, ['h'] = 33, ['i'] = 34, ['j'] = 35,
    ['k'] = 36, ['l'] = 37, ['m'] = 38, ['n'] = 39, ['o'] = 40, ['p'] = 41,
    ['q'] = 42, ['r'] = 43, ['s'] = 44, ['t'] = 45, ['u'] = 46, ['v'] = 47,
    ['w'] = 48, ['x'] = 49, ['y'] = 50, ['z'] = 51, ['0'] = 52, ['1'] = 53,
    ['2'] = 54, ['3'] = 55, ['4'] = 56, ['5'] = 57, ['6'] = 58, ['7'] = 59,
    ['8'] = 60, ['9'] = 61, ['+'] = 62, ['/'] = 63,
};

/* b64_values is zero for unlisted characters; this tells 'A' from them. */
static int b64_value(unsigned char c)
{
    return b64_values[c] != 0 || c == 'A' ? b64_values[c] : -1;
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
        int a = b64_value(t[i]), b = b64_value(t[i + 1]);
        int c = b64_value(t[i + 2]), d = b64_value(t[i + 3]);
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
            v[j] = j >= 4 - pad && t[i + j] == '=' ? 0 : b64_value(t[i + j]);
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

size_t cd__b64_encode(const unsigned char *b, size_t n, bool url, char *out)
{
    const char *alphabet = url
        ? "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
        : "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    size_t o = 0;
    for (size_t i = 0; i < n; i += 3) {
        size_t take = n - i < 3 ? n - i : 3;
        uint32_t t = (uint32_t)b[i] << 16;
        if (take > 1)
            t |= (uint32_t)b[i + 1] << 8;
        if (take > 2)
            t |= b[i + 2];
        out[o++] = alphabet[t >> 18 & 63];
        out[o++] = alphabet[t >> 12 & 63];
        if (take > 1)
            out[o++] = alphabet[t >> 6 & 63];
        else if (!url)
            out[o++] = '=';
        if (take > 2)
            out[o++] = alphabet[t & 63];
        else if (!url)
            out[o++] = '=';
    }
    out[o] = '\0';
    return o;
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
