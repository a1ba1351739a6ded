/*
 * vecfile.c - the .npy, .fvecs and raw float32 readers and the line reader
 * behind bulk import.
 *
 * The parsers only ever look at the bytes they are given, check every size
 * against what is left before reading (so a truncated or lying header is
 * an error, never a read past the end), and copy the floats out with their
 * byte order fixed, so the caller's buffer may be a read-only mapping of
 * any alignment.  Nothing is allocated until the whole layout is known to
 * fit the file: the allocation is bounded by the file's size.
 */
#include "vecfile.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "text.h"
#include "vec.h"

#define NPY_MAX_NDIM 32     /* numpy's own limit */

static const char *name_or_input(const char *name)
{
    return name ? name : "input";
}

static uint32_t le32(const unsigned char *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
           (uint32_t)p[3] << 24;
}

/*
 * Copies n rows of dim little-endian float32 into out->data: row r starts
 * at src + r * row_bytes + skip.  The caller has checked that every row
 * lies inside the file.  Fails on the first value that is not finite.
 */
static cd_err take_floats(const unsigned char *src, size_t n, size_t dim,
                          size_t row_bytes, size_t skip, const char *name,
                          cd_vecfile *out, cd_error *err)
{
    float *data = malloc(n * dim * sizeof *data);
    if (!data)
        return cd__fail(err, CD_ENOMEM, "%s: out of memory for %zu vectors of dim %zu",
                        name, n, dim);
    for (size_t r = 0; r < n; r++) {
        const unsigned char *row = src + r * row_bytes + skip;
        float *dst = data + r * dim;
        memcpy(dst, row, dim * sizeof *dst);
        for (size_t c = 0; c < dim; c++) {
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
            uint32_t u = le32(row + 4 * c);
            memcpy(&dst[c], &u, sizeof u);
#endif
            if (!isfinite(dst[c])) {
                const char *what = isnan(dst[c]) ? "NaN" : dst[c] > 0 ? "inf" : "-inf";
                free(data);
                return cd__fail(err, CD_EVECTOR,
                                "%s: vector %zu, value %zu is %s (values must be finite)",
                                name, r, c, what);
            }
        }
    }
    out->n = n;
    out->dim = dim;
    out->data = data;
    return CD_OK;
}

/* --- .npy -------------------------------------------------------------- */

/* A cursor over the header text, which is not NUL-terminated. */
typedef struct npy_cursor {
    const char *p;
    const char *end;
} npy_cursor;

static void npy_skip_space(npy_cursor *c)
{
    while (c->p < c->end && (*c->p == ' ' || *c->p == '\t' || *c->p == '\n' || *c->p == '\r'))
        c->p++;
}

static bool npy_take(npy_cursor *c, char ch)
{
    npy_skip_space(c);
    if (c->p < c->end && *c->p == ch) {
        c->p++;
        return true;
    }
    return false;
}

/* A '...' or "..." literal without escapes; *s and *n point into it. */
static bool npy_string(npy_cursor *c, const char **s, size_t *n)
{
    npy_skip_space(c);
    if (c->p >= c->end || (*c->p != '\'' && *c->p != '"'))
        return false;
    char q = *c->p++;
    const char *start = c->p;
    while (c->p < c->end && *c->p != q) {
        if (*c->p == '\\')
            return false;
        c->p++;
    }
    if (c->p >= c->end)
        return false;
    *s = start;
    *n = (size_t)(c->p - start);
    c->p++;
    return true;
}

static bool npy_word(npy_cursor *c, const char *word)
{
    size_t n = strlen(word);
    npy_skip_space(c);
    if ((size_t)(c->end - c->p) < n || memcmp(c->p, word, n) != 0)
        return false;
    c->p += n;
    return true;
}

/* A Python tuple of non-negative ints, "()", "(5,)", "(3, 4)" or "(3L, 4L)". */
static bool npy_shape(npy_cursor *c, uint64_t *dims, size_t *ndim)
{
    *ndim = 0;
    if (!npy_take(c, '('))
        return false;
    for (;;) {
        npy_skip_space(c);
        if (c->p < c->end && *c->p == ')') {
            c->p++;
            return true;
        }
        if (c->p >= c->end || *c->p < '0' || *c->p > '9' || *ndim == NPY_MAX_NDIM)
            return false;
        uint64_t v = 0;
        while (c->p < c->end && *c->p >= '0' && *c->p <= '9') {
            unsigned d = (unsigned)(*c->p++ - '0');
            if (v > (UINT64_MAX - d) / 10)
                return false;
            v = v * 10 + d;
        }
        if (c->p < c->end && *c->p == 'L')
            c->p++;
        dims[(*ndim)++] = v;
        npy_skip_space(c);
        if (c->p < c->end && *c->p == ',') {
            c->p++;
        } else if (!(c->p < c->end && *c->p == ')')) {
            return false;
        }
    }
}

/* The header dict: {'descr': '<f4', 'fortran_order': False, 'shape': (n, d), } */
typedef struct npy_header {
    const char *descr;
    size_t descr_len;
    bool descr_is_string;   /* false: a structured dtype (a list) */
    bool fortran;
    uint64_t dims[NPY_MAX_NDIM];
    size_t ndim;
} npy_header;

static cd_err npy_parse_header(const char *text, size_t len, const char *name,
                               npy_header *h, cd_error *err)
{
    enum { DESCR = 1, FORTRAN = 2, SHAPE = 4 };
    npy_cursor c = {text, text + len};
    unsigned seen = 0;
    if (!npy_take(&c, '{'))
        goto bad;
    for (;;) {
        if (npy_take(&c, '}'))
            break;
        const char *key;
        size_t key_len;
        if (!npy_string(&c, &key, &key_len) || !npy_take(&c, ':'))
            goto bad;
        if (key_len == 5 && memcmp(key, "descr", 5) == 0 && !(seen & DESCR)) {
            seen |= DESCR;
            npy_skip_space(&c);
            if (c.p < c.end && *c.p == '[') {
                /* A structured dtype: refused below, no need to parse it. */
                h->descr_is_string = false;
                break;
            }
            if (!npy_string(&c, &h->descr, &h->descr_len))
                goto bad;
            h->descr_is_string = true;
        } else if (key_len == 13 && memcmp(key, "fortran_order", 13) == 0 &&
                   !(seen & FORTRAN)) {
            seen |= FORTRAN;
            if (npy_word(&c, "True"))
                h->fortran = true;
            else if (npy_word(&c, "False"))
                h->fortran = false;
            else
                goto bad;
        } else if (key_len == 5 && memcmp(key, "shape", 5) == 0 && !(seen & SHAPE)) {
            seen |= SHAPE;
            if (!npy_shape(&c, h->dims, &h->ndim))
                goto bad;
        } else {
            return cd__fail(err, CD_ECORRUPT,
                            "%s: .npy header has an unknown or repeated key '%.*s'", name,
                            (int)(key_len > 32 ? 32 : key_len), key);
        }
        if (npy_take(&c, ','))
            continue;
        if (npy_take(&c, '}'))
            break;
        goto bad;
    }
    if (!h->descr_is_string && (seen & DESCR))
        return cd__fail(err, CD_EINVAL, "%s: dtype is a structured type, not float32 (<f4)",
                        name);
    npy_skip_space(&c);
    if (c.p != c.end)
        goto bad;
    if (seen != (DESCR | FORTRAN | SHAPE))
        return cd__fail(err, CD_ECORRUPT,
                        "%s: .npy header lacks %s", name,
                        !(seen & DESCR) ? "'descr'" : !(seen & FORTRAN) ? "'fortran_order'"
                                                                        : "'shape'");
    return CD_OK;
bad:
    return cd__fail(err, CD_ECORRUPT,
                    "%s: .npy header is not a dict of descr, fortran_order and shape "
                    "(near byte %zu of the header)", name, (size_t)(c.p - text));
}

static cd_err parse_npy(const unsigned char *b, size_t len, size_t want_dim,
                        const char *name, cd_vecfile *out, cd_error *err)
{
    static const unsigned char magic[6] = {0x93, 'N', 'U', 'M', 'P', 'Y'};
    size_t hstart, hlen;
    if (len < 10 || memcmp(b, magic, sizeof magic) != 0)
        return cd__fail(err, CD_ECORRUPT, "%s: not a .npy file (no \\x93NUMPY magic)", name);
    unsigned major = b[6], minor = b[7];
    if (major == 1 && minor == 0) {
        hlen = (size_t)b[8] | (size_t)b[9] << 8;
        hstart = 10;
    } else if ((major == 2 || major == 3) && minor == 0) {
        if (len < 12)
            return cd__fail(err, CD_ECORRUPT, "%s: .npy header is truncated", name);
        hlen = le32(b + 8);
        hstart = 12;
    } else {
        return cd__fail(err, CD_EINVAL,
                        "%s: .npy format version %u.%u is not supported (1.0, 2.0 or 3.0)",
                        name, major, minor);
    }
    if (hlen > len - hstart)
        return cd__fail(err, CD_ECORRUPT,
                        "%s: .npy header of %zu bytes is truncated (the file has %zu bytes)",
                        name, hlen, len);

    npy_header h;
    memset(&h, 0, sizeof h);
    cd_err rc = npy_parse_header((const char *)b + hstart, hlen, name, &h, err);
    if (rc != CD_OK)
        return rc;
    if (h.descr_len != 3 || memcmp(h.descr, "<f4", 3) != 0)
        return cd__fail(err, CD_EINVAL, "%s: dtype %.*s is not float32 (<f4)", name,
                        (int)(h.descr_len > 16 ? 16 : h.descr_len), h.descr);
    if (h.fortran)
        return cd__fail(err, CD_EINVAL,
                        "%s: array is in Fortran order; save a C-order array "
                        "(numpy.ascontiguousarray)", name);
    if (h.ndim != 1 && h.ndim != 2)
        return cd__fail(err, CD_EINVAL,
                        "%s: array has %zu dimensions; want 2-D (n, dim) or 1-D (dim)",
                        name, h.ndim);
    uint64_t n = h.ndim == 2 ? h.dims[0] : 1;
    uint64_t dim = h.dims[h.ndim - 1];
    if (dim == 0)
        return cd__fail(err, CD_EINVAL, "%s: vectors have dim 0", name);
    if (n == 0)
        return cd__fail(err, CD_EINVAL, "%s: holds no vectors", name);

    size_t data_len = len - hstart - hlen;
    if (n > SIZE_MAX / 4 / dim)
        return cd__fail(err, CD_ECORRUPT,
                        "%s: data is truncated: %" PRIu64 " vectors of dim %" PRIu64
                        " are larger than any file", name, n, dim);
    size_t need = (size_t)(n * dim * 4);
    if (data_len < need)
        return cd__fail(err, CD_ECORRUPT,
                        "%s: data is truncated: %" PRIu64 " vectors of dim %" PRIu64
                        " need %zu bytes, %zu follow the header", name, n, dim, need, data_len);
    if (data_len != need)
        return cd__fail(err, CD_ECORRUPT,
                        "%s: %zu bytes follow the %" PRIu64 " x %" PRIu64 " float32 data",
                        name, data_len - need, n, dim);
    if (want_dim && want_dim != dim)
        return cd__fail(err, CD_EINVAL, "%s: vectors have dim %" PRIu64 ", expected %zu", name,
                        dim, want_dim);
    return take_floats(b + hstart + hlen, (size_t)n, (size_t)dim, (size_t)dim * 4, 0, name,
                       out, err);
}

/* --- .fvecs and raw ---------------------------------------------------- */

static cd_err parse_fvecs(const unsigned char *b, size_t len, size_t want_dim,
                          const char *name, cd_vecfile *out, cd_error *err)
{
    if (len == 0)
        return cd__fail(err, CD_EINVAL, "%s: holds no vectors", name);
    if (len < 4)
        return cd__fail(err, CD_ECORRUPT, "%s: truncated: %zu bytes, not even a dim", name, len);
    int32_t d = (int32_t)le32(b);
    if (d <= 0)
        return cd__fail(err, CD_ECORRUPT, "%s: vector 0 has dim %" PRId32 " (not an .fvecs file?)",
                        name, d);
    size_t dim = (size_t)d, rec = 4 + 4 * dim, n = 0;
    for (size_t off = 0; off < len; off += rec, n++) {
        if (len - off < 4)
            return cd__fail(err, CD_ECORRUPT, "%s: vector %zu is truncated (%zu bytes left)",
                            name, n, len - off);
        int32_t di = (int32_t)le32(b + off);
        if (di != d)
            return cd__fail(err, CD_ECORRUPT, "%s: vector %zu has dim %" PRId32
                            ", vector 0 has dim %" PRId32, name, n, di, d);
        if (len - off < rec)
            return cd__fail(err, CD_ECORRUPT,
                            "%s: vector %zu is truncated (%zu of %zu bytes)", name, n,
                            len - off, rec);
    }
    if (want_dim && want_dim != dim)
        return cd__fail(err, CD_EINVAL, "%s: vectors have dim %zu, expected %zu", name, dim,
                        want_dim);
    return take_floats(b, n, dim, rec, 4, name, out, err);
}

static cd_err parse_raw(const unsigned char *b, size_t len, size_t dim, const char *name,
                        cd_vecfile *out, cd_error *err)
{
    if (dim == 0)
        return cd__fail(err, CD_EINVAL, "%s: raw float32 needs the dim to be given", name);
    if (dim > SIZE_MAX / 4)
        return cd__fail(err, CD_EINVAL, "%s: dim %zu is too large", name, dim);
    if (len == 0)
        return cd__fail(err, CD_EINVAL, "%s: holds no vectors", name);
    if (len % (4 * dim) != 0)
        return cd__fail(err, CD_ECORRUPT,
                        "%s: %zu bytes is not a whole number of dim %zu float32 vectors "
                        "(%zu bytes each): truncated, or another dim?", name, len, dim, 4 * dim);
    return take_floats(b, len / (4 * dim), dim, 4 * dim, 0, name, out, err);
}

cd_err cd_vecfile_parse(const void *buf, size_t len, cd_vecfile_format fmt,
                        size_t dim, const char *name, cd_vecfile *out,
                        cd_error *err)
{
    const unsigned char *b = buf ? buf : (const unsigned char *)"";
    memset(out, 0, sizeof *out);
    name = name_or_input(name);
    if (!buf)
        len = 0;
    switch (fmt) {
    case CD_VECFILE_NPY: return parse_npy(b, len, dim, name, out, err);
    case CD_VECFILE_FVECS: return parse_fvecs(b, len, dim, name, out, err);
    case CD_VECFILE_RAW: return parse_raw(b, len, dim, name, out, err);
    }
    return cd__fail(err, CD_EINVAL, "%s: unknown vector file format %d", name, (int)fmt);
}

void cd_vecfile_finish(cd_vecfile *v)
{
    if (!v)
        return;
    free(v->data);
    memset(v, 0, sizeof *v);
}

cd_err cd_vecfile_format_from_path(const char *path, cd_vecfile_format *out,
                                   cd_error *err)
{
    static const struct {
        const char *ext;
        cd_vecfile_format fmt;
    } exts[] = {
        {".npy", CD_VECFILE_NPY},
        {".fvecs", CD_VECFILE_FVECS},
        {".f32", CD_VECFILE_RAW},
        {".raw", CD_VECFILE_RAW},
        {".bin", CD_VECFILE_RAW},
    };
    const char *slash = strrchr(path, '/');
    const char *dot = strrchr(slash ? slash : path, '.');
    for (size_t i = 0; dot && i < sizeof exts / sizeof exts[0]; i++)
        if (strcasecmp(dot, exts[i].ext) == 0) {
            *out = exts[i].fmt;
            return CD_OK;
        }
    return cd__fail(err, CD_EINVAL,
                    "%s: unknown vector file type (want .npy, .fvecs, or raw float32 as "
                    ".f32, .raw or .bin)", path);
}

/* --- files ------------------------------------------------------------- */

/* Maps path read-only; an empty file maps to "" with *len 0. */
static cd_err map_file(const char *path, const void **buf, size_t *len, cd_error *err)
{
    struct stat st;
    void *p;
    cd_err rc = CD_OK;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    *buf = NULL;
    *len = 0;
    if (fd < 0)
        return cd__fail(err, CD_EIO, "%s: cannot open: %s", path, strerror(errno));
    if (fstat(fd, &st) != 0) {
        rc = cd__fail(err, CD_EIO, "%s: cannot stat: %s", path, strerror(errno));
        goto out;
    }
    if (!S_ISREG(st.st_mode)) {
        rc = cd__fail(err, CD_EINVAL, "%s: not a regular file", path);
        goto out;
    }
    if (st.st_size == 0) {
        *buf = "";
        goto out;
    }
    if ((uint64_t)st.st_size > SIZE_MAX) {
        rc = cd__fail(err, CD_ETOOLARGE, "%s: too large to map", path);
        goto out;
    }
    p = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
    if (p == MAP_FAILED) {
        rc = cd__fail(err, CD_EIO, "%s: cannot map: %s", path, strerror(errno));
        goto out;
    }
    *buf = p;
    *len = (size_t)st.st_size;
out:
    close(fd);
    return rc;
}

static void unmap_file(const void *buf, size_t len)
{
    if (len)
        munmap((void *)buf, len);
}

/*
 * What a path form reads: vectors (vecs set) or lines (lines set), with the
 * arguments of the memory form it calls.
 */
typedef struct load_spec {
    cd_vecfile *vecs;           /* cd_vecfile_load's out, or NULL */
    cd_vecfile_format fmt;
    size_t dim;
    cd_lines *lines;            /* cd_lines_load's out, or NULL */
    size_t expect;
    size_t max_len;
} load_spec;

/*
 * The path forms: zeroes the result, maps path and hands the bytes to the
 * memory form, with path as the name its messages start with.
 */
static cd_err load_file(const char *path, const load_spec *s, cd_error *err)
{
    const void *buf;
    size_t len;
    if (s->vecs)
        memset(s->vecs, 0, sizeof *s->vecs);
    else
        memset(s->lines, 0, sizeof *s->lines);
    cd_err rc = map_file(path, &buf, &len, err);
    if (rc != CD_OK)
        return rc;
    if (s->vecs)
        rc = cd_vecfile_parse(buf, len, s->fmt, s->dim, path, s->vecs, err);
    else
        rc = cd_lines_parse(buf, len, s->expect, s->max_len, path, s->lines, err);
    unmap_file(buf, len);
    return rc;
}

cd_err cd_vecfile_load(const char *path, cd_vecfile_format fmt, size_t dim,
                       cd_vecfile *out, cd_error *err)
{
    return load_file(path, &(load_spec){.vecs = out, .fmt = fmt, .dim = dim}, err);
}

/* --- lines ------------------------------------------------------------- */

cd_err cd_lines_parse(const void *buf, size_t len, size_t expect,
                      size_t max_len, const char *name, cd_lines *out,
                      cd_error *err)
{
    const unsigned char *b = buf ? buf : (const unsigned char *)"";
    char *text = NULL;
    char **lines = NULL;
    size_t n = 0, cap = 1, pos = 0;
    cd_err rc = CD_OK;
    memset(out, 0, sizeof *out);
    name = name_or_input(name);
    if (!buf)
        len = 0;
    if (len >= 3 && b[0] == 0xEF && b[1] == 0xBB && b[2] == 0xBF) {
        b += 3;
        len -= 3;
    }
    for (size_t i = 0; i < len; i++)
        cap += b[i] == '\n';
    text = malloc(len + 1);
    lines = malloc(cap * sizeof *lines);
    if (!text || !lines) {
        rc = cd__fail(err, CD_ENOMEM, "%s: out of memory for %zu lines", name, cap);
        goto fail;
    }
    memcpy(text, b, len);
    text[len] = '\0';
    while (pos < len) {
        char *start = text + pos;
        char *nl = memchr(start, '\n', len - pos);
        size_t end = nl ? (size_t)(nl - text) : len;
        size_t n_bytes = end - pos;
        if (n_bytes > 0 && start[n_bytes - 1] == '\r')
            n_bytes--;
        if (n_bytes == 0) {
            rc = cd__fail(err, CD_EINVAL, "%s: line %zu is empty", name, n + 1);
            goto fail;
        }
        if (memchr(start, '\0', n_bytes)) {
            rc = cd__fail(err, CD_EINVAL, "%s: line %zu holds a NUL byte", name, n + 1);
            goto fail;
        }
        if (!cd_utf8_valid(start, n_bytes)) {
            rc = cd__fail(err, CD_EINVAL, "%s: line %zu is not valid UTF-8", name, n + 1);
            goto fail;
        }
        if (max_len && n_bytes > max_len) {
            rc = cd__fail(err, CD_EINVAL, "%s: line %zu is %zu bytes long, the limit is %zu",
                          name, n + 1, n_bytes, max_len);
            goto fail;
        }
        start[n_bytes] = '\0';
        lines[n++] = start;
        pos = end + 1;
    }
    if (expect != CD_LINES_ANY && n != expect) {
        rc = cd__fail(err, CD_EINVAL, "%s: %zu lines, expected %zu (one per vector)", name, n,
                      expect);
        goto fail;
    }
    out->n = n;
    out->lines = lines;
    out->text = text;
    return CD_OK;
fail:
    free(lines);
    free(text);
    return rc;
}

cd_err cd_lines_load(const char *path, size_t expect, size_t max_len,
                     cd_lines *out, cd_error *err)
{
    return load_file(path, &(load_spec){.lines = out, .expect = expect, .max_len = max_len},
                     err);
}

void cd_lines_finish(cd_lines *l)
{
    if (!l)
        return;
    free(l->lines);
    free(l->text);
    memset(l, 0, sizeof *l);
}
