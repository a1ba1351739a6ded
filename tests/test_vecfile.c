/*
 * test_vecfile.c - the .npy, .fvecs, raw float32 and line readers.
 *
 * Every file is made here, byte by byte, and read twice: from memory
 * (cd_vecfile_parse) and from a file in a temporary directory
 * (cd_vecfile_load), which must agree.  Real-world .npy files come from
 * Debian's numpy (/usr/bin/python3), so the reader is checked against the
 * writer people use, not only against this file's idea of the format.
 */
#include <dirent.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "check.h"
#include "vecfile.h"

static char tmpdir[64];

/* A growable byte string. */
typedef struct bytes {
    unsigned char *p;
    size_t len, cap;
} bytes;

static void put(bytes *b, const void *src, size_t n)
{
    if (b->len + n > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + n)
            cap *= 2;
        b->p = realloc(b->p, cap);
        REQUIRE(b->p);
        b->cap = cap;
    }
    if (n)
        memcpy(b->p + b->len, src, n);
    b->len += n;
}

static void put_u32(bytes *b, uint32_t v)
{
    unsigned char le[4] = {(unsigned char)v, (unsigned char)(v >> 8), (unsigned char)(v >> 16),
                           (unsigned char)(v >> 24)};
    put(b, le, 4);
}

static void put_f32(bytes *b, float f)
{
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    put_u32(b, u);
}

/* The value the test files hold at float index i. */
static float value_at(size_t i)
{
    return (float)i * 0.5f - 3.0f;
}

static const char *tmp_path(char *buf, size_t cap, const char *name)
{
    snprintf(buf, cap, "%s/%s", tmpdir, name);
    return buf;
}

static void write_file(const char *path, const bytes *b)
{
    FILE *f = fopen(path, "wb");
    REQUIRE(f);
    REQUIRE(b->len == 0 || fwrite(b->p, 1, b->len, f) == b->len);
    REQUIRE(fclose(f) == 0);
}

/* Checks one read's outcome: code, shape, values or message. */
static void check_result(const char *what, cd_err rc, const cd_vecfile *v, const cd_error *err,
                         cd_err want, size_t want_n, size_t want_dim, const char *name,
                         const char *want_msg)
{
    if (rc != want)
        fprintf(stderr, "case \"%s\": got %d (%s), want %d\n", what, rc, err->message, want);
    CHECK_EQ(rc, want);
    if (rc == CD_OK && want == CD_OK) {
        CHECK_EQ(v->n, want_n);
        CHECK_EQ(v->dim, want_dim);
        REQUIRE(v->data);
        /* The files number their floats from 0, skipping .fvecs dims. */
        for (size_t r = 0; r < v->n; r++)
            for (size_t c = 0; c < v->dim; c++) {
                size_t at = r * v->dim + c;
                if (v->data[r * v->dim + c] != value_at(at)) {
                    CHECK_FAILED_("case \"%s\": value [%zu][%zu] is %g, want %g", what, r, c,
                                  (double)v->data[r * v->dim + c], (double)value_at(at));
                    return;
                }
            }
    } else if (rc != CD_OK) {
        CHECK(v->data == NULL && v->n == 0 && v->dim == 0);
        CHECK_EQ(err->code, rc);
        /* Every message names the file first. */
        CHECK(strncmp(err->message, name, strlen(name)) == 0);
        if (want_msg && !strstr(err->message, want_msg))
            CHECK_FAILED_("case \"%s\": message \"%s\" lacks \"%s\"", what, err->message,
                          want_msg);
    }
}

/* Parses b from memory as name, then from a file of that name. */
static void check_both(const char *what, const bytes *b, cd_vecfile_format fmt, size_t dim,
                       const char *name, cd_err want, size_t want_n, size_t want_dim,
                       const char *want_msg)
{
    cd_vecfile v;
    cd_error err;
    cd_error_clear(&err);
    cd_err rc = cd_vecfile_parse(b->p, b->len, fmt, dim, name, &v, &err);
    check_result(what, rc, &v, &err, want, want_n, want_dim, name, want_msg);
    cd_vecfile_finish(&v);
    CHECK(v.data == NULL);

    char path[512];
    tmp_path(path, sizeof path, name);
    write_file(path, b);
    rc = cd_vecfile_load(path, fmt, dim, &v, &err);
    check_result(what, rc, &v, &err, want, want_n, want_dim, path, want_msg);
    cd_vecfile_finish(&v);
    CHECK_EQ(unlink(path), 0);
}

/* --- .npy -------------------------------------------------------------- */

/* A .npy file: magic, version, header padded to 64 bytes, n_floats values. */
static void make_npy(bytes *b, int major, int minor, const char *header, size_t n_floats)
{
    static const unsigned char magic[6] = {0x93, 'N', 'U', 'M', 'P', 'Y'};
    size_t pre = major == 1 ? 10 : 12;
    size_t hlen = strlen(header) + 1; /* the final '\n' */
    size_t pad = (64 - (pre + hlen) % 64) % 64;
    b->len = 0;
    put(b, magic, 6);
    unsigned char ver[2] = {(unsigned char)major, (unsigned char)minor};
    put(b, ver, 2);
    if (major == 1) {
        unsigned char le[2] = {(unsigned char)(hlen + pad), (unsigned char)((hlen + pad) >> 8)};
        put(b, le, 2);
    } else {
        put_u32(b, (uint32_t)(hlen + pad));
    }
    put(b, header, strlen(header));
    for (size_t i = 0; i < pad; i++)
        put(b, " ", 1);
    put(b, "\n", 1);
    for (size_t i = 0; i < n_floats; i++)
        put_f32(b, value_at(i));
}

static void test_npy(void)
{
    static const char h34[] = "{'descr': '<f4', 'fortran_order': False, 'shape': (3, 4), }";
    static const struct {
        const char *what;
        int major, minor;
        const char *header;
        size_t n_floats;
        long adjust;            /* bytes cut (< 0) or added (> 0) at the end */
        long bad_at;            /* float index made NaN / Inf, or -1 */
        float bad;
        size_t dim;             /* given dim, 0: any */
        cd_err want;
        size_t want_n, want_dim;
        const char *want_msg;
    } cases[] = {
        {"2-D, version 1.0", 1, 0, h34, 12, 0, -1, 0, 0, CD_OK, 3, 4, NULL},
        {"2-D, version 2.0", 2, 0, h34, 12, 0, -1, 0, 0, CD_OK, 3, 4, NULL},
        {"2-D, version 3.0", 3, 0, h34, 12, 0, -1, 0, 0, CD_OK, 3, 4, NULL},
        {"1-D is one vector", 1, 0, "{'descr': '<f4', 'fortran_order': False, 'shape': (5,), }",
         5, 0, -1, 0, 0, CD_OK, 1, 5, NULL},
        {"keys in another order, double quotes, long ints, no trailing comma", 1, 0,
         "{\"shape\": (2L, 3L), \"fortran_order\": False, \"descr\": \"<f4\"}", 6, 0, -1, 0, 0,
         CD_OK, 2, 3, NULL},
        {"given dim agrees", 1, 0, h34, 12, 0, -1, 0, 4, CD_OK, 3, 4, NULL},
        {"given dim differs", 1, 0, h34, 12, 0, -1, 0, 8, CD_EINVAL, 0, 0,
         "vectors have dim 4, expected 8"},
        {"float64", 1, 0, "{'descr': '<f8', 'fortran_order': False, 'shape': (3, 4), }", 24, 0,
         -1, 0, 0, CD_EINVAL, 0, 0, "x.npy: dtype <f8 is not float32 (<f4)"},
        {"big-endian float32", 1, 0, "{'descr': '>f4', 'fortran_order': False, 'shape': (3, 4), }",
         12, 0, -1, 0, 0, CD_EINVAL, 0, 0, "dtype >f4 is not float32 (<f4)"},
        {"uint8", 1, 0, "{'descr': '|u1', 'fortran_order': False, 'shape': (3, 4), }", 3, 0, -1,
         0, 0, CD_EINVAL, 0, 0, "dtype |u1 is not float32"},
        {"structured dtype", 1, 0,
         "{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (3,), }", 3, 0, -1, 0, 0,
         CD_EINVAL, 0, 0, "structured"},
        {"Fortran order", 1, 0, "{'descr': '<f4', 'fortran_order': True, 'shape': (3, 4), }", 12,
         0, -1, 0, 0, CD_EINVAL, 0, 0, "Fortran order"},
        {"3-D", 1, 0, "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3, 2), }", 12, 0,
         -1, 0, 0, CD_EINVAL, 0, 0, "3 dimensions"},
        {"0-D scalar", 1, 0, "{'descr': '<f4', 'fortran_order': False, 'shape': (), }", 1, 0, -1,
         0, 0, CD_EINVAL, 0, 0, "0 dimensions"},
        {"no vectors", 1, 0, "{'descr': '<f4', 'fortran_order': False, 'shape': (0, 4), }", 0, 0,
         -1, 0, 0, CD_EINVAL, 0, 0, "no vectors"},
        {"dim 0", 1, 0, "{'descr': '<f4', 'fortran_order': False, 'shape': (4, 0), }", 0, 0, -1,
         0, 0, CD_EINVAL, 0, 0, "dim 0"},
        {"data truncated", 1, 0, h34, 12, -4, -1, 0, 0, CD_ECORRUPT, 0, 0, "truncated"},
        {"data truncated mid-value", 1, 0, h34, 12, -1, -1, 0, 0, CD_ECORRUPT, 0, 0, "truncated"},
        {"no data at all", 1, 0, h34, 0, 0, -1, 0, 0, CD_ECORRUPT, 0, 0, "truncated"},
        {"bytes after the data", 1, 0, h34, 12, 3, -1, 0, 0, CD_ECORRUPT, 0, 0, "3 bytes follow"},
        {"huge shape", 1, 0,
         "{'descr': '<f4', 'fortran_order': False, 'shape': (4611686018427387904, 4), }", 12, 0,
         -1, 0, 0, CD_ECORRUPT, 0, 0, "truncated"},
        {"shape overflows 64 bits", 1, 0,
         "{'descr': '<f4', 'fortran_order': False, 'shape': (99999999999999999999, 4), }", 12, 0,
         -1, 0, 0, CD_ECORRUPT, 0, 0, "header"},
        {"version 4.0", 4, 0, h34, 12, 0, -1, 0, 0, CD_EINVAL, 0, 0, "version 4.0"},
        {"version 1.1", 1, 1, h34, 12, 0, -1, 0, 0, CD_EINVAL, 0, 0, "version 1.1"},
        {"header is not a dict", 1, 0, "['descr', '<f4']", 12, 0, -1, 0, 0, CD_ECORRUPT, 0, 0,
         "header"},
        {"header lacks shape", 1, 0, "{'descr': '<f4', 'fortran_order': False}", 12, 0, -1, 0, 0,
         CD_ECORRUPT, 0, 0, "lacks 'shape'"},
        {"unknown key", 1, 0,
         "{'descr': '<f4', 'fortran_order': False, 'shape': (3, 4), 'x': 1}", 12, 0, -1, 0, 0,
         CD_ECORRUPT, 0, 0, "'x'"},
        {"repeated key", 1, 0,
         "{'descr': '<f4', 'descr': '<f4', 'fortran_order': False, 'shape': (3, 4)}", 12, 0, -1,
         0, 0, CD_ECORRUPT, 0, 0, "'descr'"},
        {"fortran_order not a bool", 1, 0,
         "{'descr': '<f4', 'fortran_order': 0, 'shape': (3, 4)}", 12, 0, -1, 0, 0, CD_ECORRUPT, 0,
         0, "header"},
        {"text after the dict", 1, 0, "{'descr': '<f4', 'fortran_order': False, 'shape': (3, 4)} x",
         12, 0, -1, 0, 0, CD_ECORRUPT, 0, 0, "header"},
        {"unterminated string", 1, 0, "{'descr': '<f4", 12, 0, -1, 0, 0, CD_ECORRUPT, 0, 0,
         "header"},
        {"NaN", 1, 0, h34, 12, 0, 6, NAN, 0, CD_EVECTOR, 0, 0, "vector 1, value 2 is NaN"},
        {"Inf", 1, 0, h34, 12, 0, 11, INFINITY, 0, CD_EVECTOR, 0, 0, "vector 2, value 3 is inf"},
        {"-Inf", 1, 0, h34, 12, 0, 0, -INFINITY, 0, CD_EVECTOR, 0, 0, "vector 0, value 0 is -inf"},
    };
    bytes b = {0};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        make_npy(&b, cases[i].major, cases[i].minor, cases[i].header, cases[i].n_floats);
        if (cases[i].adjust < 0)
            b.len -= (size_t)-cases[i].adjust;
        for (long a = 0; a < cases[i].adjust; a++)
            put(&b, "\0", 1);
        if (cases[i].bad_at >= 0) {
            size_t at = b.len - 4 * (cases[i].n_floats - (size_t)cases[i].bad_at);
            memcpy(b.p + at, &cases[i].bad, 4);
        }
        check_both(cases[i].what, &b, CD_VECFILE_NPY, cases[i].dim, "x.npy", cases[i].want,
                   cases[i].want_n, cases[i].want_dim, cases[i].want_msg);
    }

    /* Damage before the header is even read. */
    static const struct {
        const char *what;
        size_t len;
        const char *want_msg;
    } cut[] = {
        {"empty file", 0, "not a .npy file"},
        {"magic only", 6, "not a .npy file"},
        {"version 1.0 without the header", 10, "truncated"},
        {"version 1.0, half the header", 40, "truncated"},
    };
    for (size_t i = 0; i < sizeof cut / sizeof cut[0]; i++) {
        make_npy(&b, 1, 0, h34, 12);
        b.len = cut[i].len;
        check_both(cut[i].what, &b, CD_VECFILE_NPY, 0, "x.npy", CD_ECORRUPT, 0, 0,
                   cut[i].want_msg);
    }
    make_npy(&b, 2, 0, h34, 12);
    b.len = 11;
    check_both("version 2.0 cut in the header length", &b, CD_VECFILE_NPY, 0, "x.npy",
               CD_ECORRUPT, 0, 0, "truncated");
    make_npy(&b, 1, 0, h34, 12);
    b.p[1] = 'n';
    check_both("bad magic", &b, CD_VECFILE_NPY, 0, "x.npy", CD_ECORRUPT, 0, 0, "magic");
    free(b.p);
}

/*
 * Files written by numpy itself (Debian's python3-numpy), for the layout
 * numpy really produces: header padding, versions, Fortran order, dtypes.
 */
static void test_npy_from_numpy(void)
{
    static const char script[] =
        "import sys, numpy as np\n"
        "d = sys.argv[1]\n"
        "a = (np.arange(35, dtype=np.float32) * np.float32(0.5) - np.float32(3)).reshape(7, 5)\n"
        "np.save(d + '/c.npy', a)\n"
        "np.save(d + '/one.npy', a[0])\n"
        "np.save(d + '/f.npy', np.asfortranarray(a))\n"
        "np.save(d + '/d.npy', a.astype(np.float64))\n"
        "np.save(d + '/big.npy', a.astype('>f4'))\n"
        "np.save(d + '/t.npy', a.T.copy())\n"
        "a.tofile(d + '/raw.f32')\n"
        "fv = np.empty((7, 6), dtype='<i4')\n"
        "fv[:, 0] = 5\n"
        "fv[:, 1:] = a.view('<i4')\n"
        "fv.tofile(d + '/v.fvecs')\n"
        "np.savetxt(d + '/ids.txt', ['id%d' % i for i in range(7)], fmt='%s')\n";
    char script_path[512];
    tmp_path(script_path, sizeof script_path, "write.py");
    bytes s = {0};
    put(&s, script, strlen(script));
    write_file(script_path, &s);
    free(s.p);
    pid_t pid = fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
        execl("/usr/bin/python3", "python3", script_path, tmpdir, (char *)NULL);
        _exit(127);
    }
    int status = 0;
    REQUIRE(waitpid(pid, &status, 0) == pid);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        CHECK_FAILED_("/usr/bin/python3 with numpy failed (status %d): is python3-numpy "
                      "installed?", status);
        return;
    }

    static const struct {
        const char *file;
        cd_vecfile_format fmt;
        size_t dim;
        cd_err want;
        size_t want_n, want_dim;
        const char *want_msg;
    } cases[] = {
        {"c.npy", CD_VECFILE_NPY, 0, CD_OK, 7, 5, NULL},
        {"one.npy", CD_VECFILE_NPY, 0, CD_OK, 1, 5, NULL},
        {"raw.f32", CD_VECFILE_RAW, 5, CD_OK, 7, 5, NULL},
        {"v.fvecs", CD_VECFILE_FVECS, 0, CD_OK, 7, 5, NULL},
        {"f.npy", CD_VECFILE_NPY, 0, CD_EINVAL, 0, 0, "Fortran order"},
        {"d.npy", CD_VECFILE_NPY, 0, CD_EINVAL, 0, 0, "dtype <f8 is not float32 (<f4)"},
        {"big.npy", CD_VECFILE_NPY, 0, CD_EINVAL, 0, 0, "dtype >f4 is not float32 (<f4)"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char path[512];
        cd_vecfile v;
        cd_error err;
        tmp_path(path, sizeof path, cases[i].file);
        cd_err rc = cd_vecfile_load(path, cases[i].fmt, cases[i].dim, &v, &err);
        check_result(cases[i].file, rc, &v, &err, cases[i].want, cases[i].want_n,
                     cases[i].want_dim, path, cases[i].want_msg);
        cd_vecfile_finish(&v);
    }

    /* The transpose is C-ordered again: 5 vectors of dim 7, a[r][c] at [c][r]. */
    char path[512];
    cd_vecfile v;
    cd_error err;
    CHECK_OK(cd_vecfile_load(tmp_path(path, sizeof path, "t.npy"), CD_VECFILE_NPY, 0, &v, &err),
             &err);
    CHECK_EQ(v.n, 5);
    CHECK_EQ(v.dim, 7);
    for (size_t r = 0; v.data && r < 7; r++)
        for (size_t c = 0; c < 5; c++)
            CHECK(v.data[c * 7 + r] == value_at(r * 5 + c));
    cd_vecfile_finish(&v);

    cd_lines l;
    CHECK_OK(cd_lines_load(tmp_path(path, sizeof path, "ids.txt"), 7, 256, &l, &err), &err);
    CHECK_EQ(l.n, 7);
    if (l.n == 7) {
        CHECK_STREQ(l.lines[0], "id0");
        CHECK_STREQ(l.lines[6], "id6");
    }
    cd_lines_finish(&l);
}

/* --- .fvecs ------------------------------------------------------------- */

static void test_fvecs(void)
{
    static const struct {
        const char *what;
        int dims[4];            /* the dim field of each record */
        size_t n_recs;
        size_t floats_per_rec;  /* floats actually written per record */
        long adjust;            /* bytes cut (< 0) or added (> 0) at the end */
        long bad_at;            /* float index made NaN, or -1 */
        size_t dim;             /* given dim, 0: any */
        cd_err want;
        size_t want_n, want_dim;
        const char *want_msg;
    } cases[] = {
        {"3 vectors of dim 4", {4, 4, 4}, 3, 4, 0, -1, 0, CD_OK, 3, 4, NULL},
        {"one vector of dim 1", {1}, 1, 1, 0, -1, 0, CD_OK, 1, 1, NULL},
        {"given dim agrees", {4, 4, 4}, 3, 4, 0, -1, 4, CD_OK, 3, 4, NULL},
        {"given dim differs", {4, 4, 4}, 3, 4, 0, -1, 3, CD_EINVAL, 0, 0,
         "vectors have dim 4, expected 3"},
        {"last vector truncated", {4, 4, 4}, 3, 4, -4, -1, 0, CD_ECORRUPT, 0, 0,
         "vector 2 is truncated"},
        {"last dim truncated", {4, 4}, 2, 4, 2, -1, 0, CD_ECORRUPT, 0, 0,
         "vector 2 is truncated"},
        {"unequal dims", {4, 3, 4}, 3, 4, 0, -1, 0, CD_ECORRUPT, 0, 0,
         "vector 1 has dim 3, vector 0 has dim 4"},
        {"dim 0", {0}, 1, 0, 0, -1, 0, CD_ECORRUPT, 0, 0, "dim 0"},
        {"negative dim", {-4}, 1, 4, 0, -1, 0, CD_ECORRUPT, 0, 0, "dim -4"},
        {"dim larger than the file", {1000000}, 1, 4, 0, -1, 0, CD_ECORRUPT, 0, 0,
         "truncated"},
        {"empty file", {0}, 0, 0, 0, -1, 0, CD_EINVAL, 0, 0, "no vectors"},
        {"NaN", {4, 4, 4}, 3, 4, 0, 9, 0, CD_EVECTOR, 0, 0, "vector 2, value 1 is NaN"},
    };
    bytes b = {0};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        size_t k = 0;
        b.len = 0;
        for (size_t r = 0; r < cases[i].n_recs; r++) {
            put_u32(&b, (uint32_t)cases[i].dims[r]);
            for (size_t c = 0; c < cases[i].floats_per_rec; c++, k++)
                put_f32(&b, (long)k == cases[i].bad_at ? NAN : value_at(k));
        }
        if (cases[i].adjust < 0)
            b.len -= (size_t)-cases[i].adjust;
        for (long a = 0; a < cases[i].adjust; a++)
            put(&b, "\1", 1);
        check_both(cases[i].what, &b, CD_VECFILE_FVECS, cases[i].dim, "x.fvecs", cases[i].want,
                   cases[i].want_n, cases[i].want_dim, cases[i].want_msg);
    }
    b.len = 0;
    put(&b, "\4\0", 2);
    check_both("two bytes", &b, CD_VECFILE_FVECS, 0, "x.fvecs", CD_ECORRUPT, 0, 0, "truncated");
    free(b.p);
}

/* --- raw float32 ------------------------------------------------------- */

static void test_raw(void)
{
    static const struct {
        const char *what;
        size_t n_floats;
        long adjust;
        long bad_at;
        size_t dim;
        cd_err want;
        size_t want_n, want_dim;
        const char *want_msg;
    } cases[] = {
        {"12 floats as dim 4", 12, 0, -1, 4, CD_OK, 3, 4, NULL},
        {"12 floats as dim 3", 12, 0, -1, 3, CD_OK, 4, 3, NULL},
        {"12 floats as dim 12", 12, 0, -1, 12, CD_OK, 1, 12, NULL},
        {"no dim given", 12, 0, -1, 0, CD_EINVAL, 0, 0, "needs the dim"},
        {"not a multiple of the dim", 12, 0, -1, 5, CD_ECORRUPT, 0, 0, "48 bytes"},
        {"cut mid-value", 12, -2, -1, 4, CD_ECORRUPT, 0, 0, "46 bytes"},
        {"empty", 0, 0, -1, 4, CD_EINVAL, 0, 0, "no vectors"},
        {"Inf", 12, 0, 4, 4, CD_EVECTOR, 0, 0, "vector 1, value 0 is inf"},
    };
    bytes b = {0};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        b.len = 0;
        for (size_t k = 0; k < cases[i].n_floats; k++)
            put_f32(&b, (long)k == cases[i].bad_at ? INFINITY : value_at(k));
        if (cases[i].adjust < 0)
            b.len -= (size_t)-cases[i].adjust;
        check_both(cases[i].what, &b, CD_VECFILE_RAW, cases[i].dim, "x.f32", cases[i].want,
                   cases[i].want_n, cases[i].want_dim, cases[i].want_msg);
    }
    free(b.p);
}

/* --- lines ------------------------------------------------------------- */

static void test_lines(void)
{
    static const struct {
        const char *what;
        const char *text;
        size_t len;             /* 0: strlen(text) */
        size_t expect, max_len;
        cd_err want_rc;
        const char *want[4];    /* the lines, or want[0] a message part */
    } cases[] = {
        {"trailing newline", "a\nb\nc\n", 0, 3, 0, CD_OK, {"a", "b", "c"}},
        {"no trailing newline", "a\nb\nc", 0, 3, 0, CD_OK, {"a", "b", "c"}},
        {"CRLF", "a\r\nb\r\nc\r\n", 0, 3, 0, CD_OK, {"a", "b", "c"}},
        {"CRLF, last without", "a\r\nb\r\nc", 0, 3, 0, CD_OK, {"a", "b", "c"}},
        {"byte order mark", "\xef\xbb\xbfid 1\nid 2\n", 0, 2, 0, CD_OK, {"id 1", "id 2"}},
        {"UTF-8 and spaces kept", " caf\xc3\xa9 \n7\n", 0, CD_LINES_ANY, 0, CD_OK,
         {" caf\xc3\xa9 ", "7"}},
        {"at the length limit", "abcd\n", 0, 1, 4, CD_OK, {"abcd"}},
        {"empty file, none expected", "", 0, 0, 0, CD_OK, {NULL}},
        {"empty line inside", "a\n\nc\n", 0, 3, 0, CD_EINVAL, {"line 2 is empty"}},
        {"blank line at the end", "a\nb\n\n", 0, 2, 0, CD_EINVAL, {"line 3 is empty"}},
        {"CR only line", "a\n\r\n", 0, 2, 0, CD_EINVAL, {"line 2 is empty"}},
        {"first line empty", "\na\n", 0, 2, 0, CD_EINVAL, {"line 1 is empty"}},
        {"too few lines", "a\nb\n", 0, 3, 0, CD_EINVAL, {"2 lines, expected 3"}},
        {"too many lines", "a\nb\nc\nd", 0, 3, 0, CD_EINVAL, {"4 lines, expected 3"}},
        {"empty file, one expected", "", 0, 1, 0, CD_EINVAL, {"0 lines, expected 1"}},
        {"NUL byte", "a\nb\0c\n", 6, 2, 0, CD_EINVAL, {"line 2 holds a NUL byte"}},
        {"invalid UTF-8", "a\n\xff\n", 0, 2, 0, CD_EINVAL, {"line 2 is not valid UTF-8"}},
        {"over the length limit", "abcde\n", 0, 1, 4, CD_EINVAL, {"line 1 is 5 bytes long"}},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        size_t len = cases[i].len ? cases[i].len : strlen(cases[i].text);
        for (int from_file = 0; from_file < 2; from_file++) {
            cd_lines l;
            cd_error err;
            cd_err rc;
            char path[512];
            const char *name = from_file ? tmp_path(path, sizeof path, "ids.txt") : "ids.txt";
            if (from_file) {
                bytes b = {0};
                put(&b, cases[i].text, len);
                write_file(path, &b);
                free(b.p);
                rc = cd_lines_load(path, cases[i].expect, cases[i].max_len, &l, &err);
            } else {
                rc = cd_lines_parse(cases[i].text, len, cases[i].expect, cases[i].max_len,
                                    name, &l, &err);
            }
            if (rc != cases[i].want_rc)
                fprintf(stderr, "lines case \"%s\": got %d (%s)\n", cases[i].what, rc,
                        rc ? err.message : "");
            CHECK_EQ(rc, cases[i].want_rc);
            if (rc == CD_OK && cases[i].want_rc == CD_OK) {
                size_t n = 0;
                while (n < 4 && cases[i].want[n])
                    n++;
                CHECK_EQ(l.n, n);
                for (size_t k = 0; k < n && k < l.n; k++)
                    CHECK_STREQ(l.lines[k], cases[i].want[k]);
            } else if (rc != CD_OK) {
                CHECK(l.n == 0 && l.lines == NULL && l.text == NULL);
                CHECK(strncmp(err.message, name, strlen(name)) == 0);
                if (!strstr(err.message, cases[i].want[0]))
                    CHECK_FAILED_("lines case \"%s\": message \"%s\" lacks \"%s\"",
                                  cases[i].what, err.message, cases[i].want[0]);
            }
            cd_lines_finish(&l);
            if (from_file)
                CHECK_EQ(unlink(path), 0);
        }
    }
}

/* --- paths ------------------------------------------------------------- */

static void test_paths(void)
{
    static const struct {
        const char *path;
        cd_err want;
        cd_vecfile_format fmt;
    } cases[] = {
        {"a/b/x.npy", CD_OK, CD_VECFILE_NPY},
        {"X.NPY", CD_OK, CD_VECFILE_NPY},
        {"sift_base.fvecs", CD_OK, CD_VECFILE_FVECS},
        {"emb.f32", CD_OK, CD_VECFILE_RAW},
        {"emb.raw", CD_OK, CD_VECFILE_RAW},
        {"emb.bin", CD_OK, CD_VECFILE_RAW},
        {"emb.csv", CD_EINVAL, 0},
        {"npy", CD_EINVAL, 0},
        {"dir.npy/emb", CD_EINVAL, 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        cd_vecfile_format fmt = (cd_vecfile_format)99;
        cd_error err;
        CHECK_EQ(cd_vecfile_format_from_path(cases[i].path, &fmt, &err), cases[i].want);
        CHECK_EQ(fmt, cases[i].want == CD_OK ? cases[i].fmt : (cd_vecfile_format)99);
    }

    /* Files that are not there or not files. */
    cd_vecfile v;
    cd_lines l;
    cd_error err;
    char path[512];
    CHECK_EQ(cd_vecfile_load(tmp_path(path, sizeof path, "missing.npy"), CD_VECFILE_NPY, 0, &v,
                             &err), CD_EIO);
    CHECK(strstr(err.message, "missing.npy") != NULL);
    CHECK(v.data == NULL);
    CHECK_EQ(cd_lines_load(path, 1, 0, &l, &err), CD_EIO);
    CHECK(l.lines == NULL);
    CHECK_EQ(cd_vecfile_load(tmpdir, CD_VECFILE_RAW, 4, &v, &err), CD_EINVAL);
    CHECK(strstr(err.message, "not a regular file") != NULL);

    cd_vecfile_finish(NULL);
    cd_lines_finish(NULL);
}

static void remove_tmpdir(void)
{
    DIR *d = opendir(tmpdir);
    REQUIRE(d);
    struct dirent *e;
    while ((e = readdir(d))) {
        char path[512];
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        CHECK_EQ(unlink(tmp_path(path, sizeof path, e->d_name)), 0);
    }
    closedir(d);
    CHECK_EQ(rmdir(tmpdir), 0);
}

int main(void)
{
    const char *t = getenv("TMPDIR");
    snprintf(tmpdir, sizeof tmpdir, "%s/vecfile-XXXXXX",
             t && *t && strlen(t) < sizeof tmpdir - 20 ? t : "/tmp");
    REQUIRE(mkdtemp(tmpdir) != NULL);
    test_npy();
    test_npy_from_numpy();
    test_fvecs();
    test_raw();
    test_lines();
    test_paths();
    remove_tmpdir();
    return check_exit();
}
