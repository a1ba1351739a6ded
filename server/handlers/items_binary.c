/*
 * items_binary.c - POST /v1/galleries/{g}/items with an
 * application/octet-stream body: the binary item batch of vec.h
 * (CD_BATCH_*), so that a batch costs no per-float text.  The model is
 * the query argument ?model= (default: the gallery's).
 *
 * The body is read whole and checked before anything is stored: the
 * framing here (magic, count, dim, record lengths, padding, the exact
 * body size), ids and labels by request.c's rules (the JSON body's), and
 * the vectors by the engine like every upsert's (finite, in range,
 * normalised for cosine).  The rows are used where they lie in the body
 * when it is 4-byte aligned and the host little-endian, as the daemon's
 * bodies are; otherwise they are copied first.
 */
#include "handlers.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "text.h"
#include "vec.h"

/* A body being read: where the next byte is, and how many remain. */
typedef struct reader {
    const unsigned char *p;
    size_t left;
} reader;

static bool read_u16(reader *r, unsigned *out)
{
    if (r->left < 2)
        return false;
    *out = (unsigned)r->p[0] | (unsigned)r->p[1] << 8;
    r->p += 2;
    r->left -= 2;
    return true;
}

static uint32_t u32_at(const unsigned char *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/*
 * Reads item i's record into *it, its id and label copied NUL-terminated
 * into *arena (advanced past them).  False with rep set when the record
 * is cut short or its text breaks the id and label rules.
 */
static bool read_record(reader *r, size_t i, char **arena, cd_item_in *it, cd_reply *rep)
{
    char where[48];
    unsigned len;
    snprintf(where, sizeof where, "item %zu: ", i);
    if (!read_u16(r, &len) || len > r->left) {
        cd_reply_error(rep, CD_HTTP_INVALID_ARGUMENT, "%sthe body ends inside the id", where);
        return false;
    }
    if (!cd_request_id((const char *)r->p, len, where, rep))
        return false;
    memcpy(*arena, r->p, len);
    (*arena)[len] = '\0';
    it->id = *arena;
    *arena += len + 1;
    r->p += len;
    r->left -= len;
    if (!read_u16(r, &len)) {
        cd_reply_error(rep, CD_HTTP_INVALID_ARGUMENT, "%sthe body ends before the label's length",
                       where);
        return false;
    }
    if (len == CD_BATCH_NO_LABEL)
        return true;
    if (len > r->left) {
        cd_reply_error(rep, CD_HTTP_INVALID_ARGUMENT, "%sthe body ends inside the label", where);
        return false;
    }
    if (!cd_request_label((const char *)r->p, len, true, where, rep))
        return false;
    memcpy(*arena, r->p, len);
    (*arena)[len] = '\0';
    it->label = *arena;
    *arena += len + 1;
    r->p += len;
    r->left -= len;
    return true;
}

/* True when the rows at p can be used in place as floats. */
static bool rows_in_place(const unsigned char *p)
{
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    (void)p;
    return false;
#else
    return (uintptr_t)p % _Alignof(float) == 0;
#endif
}

/* The n floats at p as a malloc'd array (the caller frees it), or NULL. */
static float *rows_copy(const unsigned char *p, size_t n)
{
    float *out = malloc(n ? n * sizeof *out : 1);
    for (size_t i = 0; out && i < n; i++) {
        uint32_t u = u32_at(p + 4 * i);
        memcpy(&out[i], &u, sizeof u);
    }
    return out;
}

void cd__items_upsert_binary(cd_api *api, const cd_request *req, cd_reply *rep)
{
    const char *gallery = req->params[0];
    const char *model = cd_request_arg(req, "model");
    reader r = {(const unsigned char *)req->body, req->body_len};
    cd_item_in *items = NULL;
    char *arena = NULL;
    float *copied = NULL;
    cd_model m;
    if (model && !cd_name_valid(model)) {
        cd_reply_error(rep, CD_HTTP_INVALID_NAME, "model must match [A-Za-z0-9._-]{1,64}");
        return;
    }
    if (r.left < CD_BATCH_HEADER || memcmp(r.p, CD_BATCH_MAGIC, 4) != 0) {
        cd_reply_error(rep, CD_HTTP_INVALID_ARGUMENT,
                       "an application/octet-stream body must start with \"%s\", count and "
                       "dim (%d bytes)", CD_BATCH_MAGIC, CD_BATCH_HEADER);
        return;
    }
    size_t n = u32_at(r.p + 4), dim = u32_at(r.p + 8);
    r.p += CD_BATCH_HEADER;
    r.left -= CD_BATCH_HEADER;
    if (n == 0) {
        cd_reply_error(rep, CD_HTTP_INVALID_ARGUMENT, "the batch's count must be at least 1");
        return;
    }
    if (!cd_api_batch_fits(api, n, rep) || !cd_api_model(api, gallery, model, &m, rep))
        return;
    if (dim != (size_t)m.dim) {
        cd_reply_error(rep, CD_HTTP_DIMENSION_MISMATCH, "the batch's dim is %zu, model %s has "
                       "dim %d", dim, m.name, m.dim);
        return;
    }
    /* Each record takes at least 4 bytes of the body: a count the body
     * cannot hold is refused before anything is allocated for it. */
    if (n > r.left / 4) {
        cd_reply_error(rep, CD_HTTP_INVALID_ARGUMENT,
                       "a body of %zu bytes cannot hold %zu items", req->body_len, n);
        return;
    }
    items = calloc(n, sizeof *items);
    arena = malloc(r.left + 2 * n); /* every id and label, NUL-terminated */
    if (!items || !arena) {
        cd_reply_error(rep, CD_HTTP_OUT_OF_MEMORY, "out of memory for %zu items", n);
        goto out;
    }
    char *next = arena;
    for (size_t i = 0; i < n; i++)
        if (!read_record(&r, i, &next, &items[i], rep))
            goto out;
    size_t pad = (size_t)(-(req->body_len - r.left)) % 4;
    for (size_t k = 0; k < pad; k++) {
        if (k >= r.left || r.p[k] != 0) {
            cd_reply_error(rep, CD_HTTP_INVALID_ARGUMENT,
                           "the records must be followed by %zu zero bytes, so that the rows "
                           "start at a multiple of 4", pad);
            goto out;
        }
    }
    r.p += pad;
    r.left -= pad;
    size_t want = n * dim * sizeof(float);
    if (r.left != want) {
        cd_reply_error(rep, CD_HTTP_INVALID_ARGUMENT,
                       "the rows take %zu bytes after the records, %zu items x dim %zu need %zu",
                       r.left, n, dim, want);
        goto out;
    }
    const float *rows = (const float *)(const void *)r.p;
    if (!rows_in_place(r.p) && !(rows = copied = rows_copy(r.p, n * dim))) {
        cd_reply_error(rep, CD_HTTP_OUT_OF_MEMORY, "out of memory for %zu items", n);
        goto out;
    }
    for (size_t i = 0; i < n; i++)
        items[i].vector = rows + i * dim;
    cd_api_items_store(api, gallery, m.name, items, n, rep);
out:
    free(copied);
    free(arena);
    free(items);
}
