/*
 * engine_items.c - items as the engine writes and reads them: an upsert
 * commits to the store, then applies to the gallery's indexes under the
 * gallery's write lock (the invariants are in engine.c's header).
 */
#include "engine_int.h"

#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <nettle/sha2.h>

#include "eval.h"
#include "idset.h"
#include "index.h"
#include "text.h"

/* --- items ----------------------------------------------------------- */

/* The checks of cd__vector_ready, which leave v as it is: all of them
 * for ip and l2. */
static cd_err vector_check(const cd_model *m, const float *v, const char *what,
                           size_t i, cd_error *err)
{
    size_t dim = (size_t)m->dim;
    double norm2;
    if (!cd_vec_finite(v, dim))
        return cd__fail(err, CD_EVECTOR, "%s %zu: vector has a NaN or infinite value", what, i);
    if (m->metric != CD_METRIC_COSINE && !cd_vec_in_range(v, dim, &norm2))
        return cd__fail(err, CD_EVECTOR, "%s %zu: vector's squared L2 norm %g is above %g: "
                        "its scores would overflow float32", what, i, norm2, CD_VEC_NORM2_MAX);
    return CD_OK;
}

static cd_err fields_item(void *ctx, int64_t rowid, const char *label,
                          const cd_field_value *values, size_t n)
{
    gallery *g = ctx;
    return cd_fields_set(g->fields, rowid, label, values, n, NULL);
}

/*
 * Reads into g's filter fields the label and metadata of the n items
 * rowids as stored (rowids NULL: of every item).  The caller holds g's
 * write lock (or has it to itself).
 */
cd_err cd__fields_read(cd_engine *e, gallery *g, const int64_t *rowids,
                       size_t n, cd_error *err)
{
    cd_err rc = cd_store_item_fields(e->st, g->info.id, rowids, n, fields_item,
                                     g, err);
    if (rc == CD_ENOMEM)
        return cd__fail(err, CD_ENOMEM, "out of memory for the filter fields");
    return rc;
}

/*
 * Readies vector v of model m in place: refuses (CD_EVECTOR) one not
 * finite, or for ip and l2 one whose scores could overflow float32
 * (cd_vec_in_range), and normalises it for cosine.  Messages start with
 * "<what> <i>: ".
 */
cd_err cd__vector_ready(const cd_model *m, float *v, const char *what,
                        size_t i, cd_error *err)
{
    cd_err rc = vector_check(m, v, what, i, err);
    if (rc == CD_OK && m->metric == CD_METRIC_COSINE && !cd_vec_normalize(v, (size_t)m->dim))
        return cd__fail(err, CD_EVECTOR, "%s %zu: zero vector has no direction for cosine "
                        "model %s", what, i, m->name);
    return rc;
}

/*
 * The n vectors of item-sized input as one row-major array in *rows,
 * each readied by cd__vector_ready.  When they lie row after row already
 * (a binary batch's body) and m is not cosine, they are only checked and
 * *rows points at them; otherwise they are copied into *owned (free()),
 * which is NULL in the first case.  Messages name the item.
 */
static cd_err ready_vectors(const cd_model *m, const cd_item_in *items,
                            size_t n, float **owned, const float **rows,
                            cd_error *err)
{
    size_t dim = (size_t)m->dim;
    bool in_place = m->metric != CD_METRIC_COSINE;
    *owned = NULL;
    *rows = NULL;
    for (size_t i = 0; i < n; i++) {
        if (!items[i].vector)
            return cd__fail(err, CD_EVECTOR, "item %zu: no vector", i);
        in_place = in_place && items[i].vector == items[0].vector + i * dim;
    }
    if (in_place) {
        for (size_t i = 0; i < n; i++) {
            cd_err rc = vector_check(m, items[i].vector, "item", i, err);
            if (rc != CD_OK)
                return rc;
        }
        *rows = items[0].vector;
        return CD_OK;
    }
    float *buf = malloc(n * dim * sizeof *buf);
    if (!buf)
        return cd__fail(err, CD_ENOMEM, "out of memory for %zu vectors", n);
    for (size_t i = 0; i < n; i++) {
        float *v = buf + i * dim;
        memcpy(v, items[i].vector, dim * sizeof *v);
        cd_err rc = cd__vector_ready(m, v, "item", i, err);
        if (rc != CD_OK) {
            free(buf);
            return rc;
        }
    }
    *owned = buf;
    *rows = buf;
    return CD_OK;
}

/*
 * Rebuilds gi when its index asks for it or is gone (an add or remove
 * failed half-way).  When that fails too the gallery becomes unavailable
 * (CD_EUNAVAILABLE): its index no longer holds what the store does, so it
 * must not answer.  The caller holds g's write lock.
 */
static cd_err index_settle(cd_engine *e, gallery *g, gal_index *gi,
                           cd_error *err)
{
    if (gi->ix && !cd_index_needs_rebuild(gi->ix))
        return CD_OK;
    cd_error rerr;
    if (cd__index_rebuild(e, g, gi, &rerr) != CD_OK)
        return cd__gallery_fail(e, g, rerr.message, err);
    return CD_OK;
}

cd_err cd_engine_items_upsert(cd_engine *e, const char *gallery_name,
                              const char *model, const cd_item_in *items,
                              size_t n, cd_error *err)
{
    gallery *g = NULL;
    cd_model m;
    float *vecs = NULL;         /* the readied copy, when one is made */
    const float *rows = NULL;   /* the batch's vectors, row after row */
    int64_t *rowids = NULL;
    bool *replaced = NULL;
    cd_item_in *copy = NULL;
    cd_err rc;

    if (!cd_engine_ready(e))
        return cd__fail(err, CD_EBUSY, "indexes are still loading");
    if (n == 0)
        return cd__fail(err, CD_EINVAL, "items is empty");
    rc = cd__gallery_enter(e, gallery_name, &g, err);
    if (rc != CD_OK)
        return rc;
    rc = cd__model_by_name(e, model ? model : g->model.name, &m, err);
    if (rc != CD_OK)
        goto out;
    rc = ready_vectors(&m, items, n, &vecs, &rows, err);
    if (rc != CD_OK)
        goto out;
    rowids = malloc(n * sizeof *rowids);
    replaced = malloc(n * sizeof *replaced);
    copy = malloc(n * sizeof *copy);
    if (!rowids || !replaced || !copy) {
        rc = cd__fail(err, CD_ENOMEM, "out of memory");
        goto out;
    }
    for (size_t i = 0; i < n; i++) {
        copy[i] = items[i];
        copy[i].vector = rows + i * (size_t)m.dim;
    }

    pthread_rwlock_wrlock(&g->lock);
    /* What can fail before the commit does, so that nothing is stored. */
    gal_index *gi = NULL;
    rc = cd__gallery_check(g, err);
    if (rc == CD_OK && !(gi = cd__index_slot_add(g, &m)))
        rc = cd__fail(err, CD_ENOMEM, "out of memory");
    if (rc == CD_OK && !gi->ix)
        rc = cd_index_create(g->info.index_spec, m.dim, m.metric, &gi->ix, err);
    int64_t seq = 0;
    if (rc == CD_OK)
        rc = cd_store_items_upsert(e->st, g->info.id, m.id, m.dim, copy, n,
                                   &seq, rowids, replaced, err);
    if (rc != CD_OK) {
        pthread_rwlock_unlock(&g->lock);
        goto out;
    }
    /*
     * Committed.  The call succeeds only once the index holds the batch
     * too: when applying it fails (out of memory in FAISS), the index is
     * rebuilt from the store, and when that fails the gallery becomes
     * unavailable and the call fails with CD_EUNAVAILABLE.  The batch
     * stays stored (the store cannot take back the vectors it replaced);
     * nothing answers from an index without it, and an upsert is
     * idempotent, so the client's retry after a restart is safe.
     */
    cd_error ierr;
    cd_err irc = CD_OK;
    size_t n_old = 0;
    for (size_t i = 0; i < n; i++)
        if (replaced[i])
            n_old++;
    if (n_old) {
        int64_t *old = malloc(n_old * sizeof *old);
        n_old = 0;
        for (size_t i = 0; old && i < n; i++)
            if (replaced[i])
                old[n_old++] = rowids[i];
        irc = old ? cd_index_remove(gi->ix, old, n_old, &ierr)
                  : cd__fail(&ierr, CD_ENOMEM, "out of memory");
        gi->hidden |= !cd_index_can_remove(gi->ix);
        free(old);
    }
    if (irc == CD_OK)
        irc = cd_index_add(gi->ix, rowids, rows, n, &ierr);
    /* Filters read the stored label and metadata of the items given
     * either (absent ones keep what they had); a new item given neither
     * has none. */
    int64_t *fresh = malloc(n * sizeof *fresh);
    size_t n_fresh = 0;
    cd_error ferr;
    cd_err frc = fresh ? CD_OK : cd__fail(&ferr, CD_ENOMEM, "out of memory");
    for (size_t i = 0; frc == CD_OK && i < n; i++) {
        if (items[i].label || items[i].metadata)
            fresh[n_fresh++] = rowids[i];
        else if (!cd_fields_contains(g->fields, rowids[i]))
            frc = cd_fields_set(g->fields, rowids[i], NULL, NULL, 0, &ferr);
    }
    if (frc == CD_OK)
        frc = cd__fields_read(e, g, fresh, n_fresh, &ferr);
    free(fresh);
    if (cd__members_batch(&gi->members, rowids, NULL, n) != CD_OK)
        cd__elog(e, CD_LOG_ERROR, "gallery %s: out of memory noting the items of model %s",
             g->info.name, m.name);
    g->seq = seq;
    gi->dirty = true;
    atomic_fetch_add(&g->changes, (long long)n);
    if (irc != CD_OK) {
        cd__elog(e, CD_LOG_ERROR, "gallery %s: applying a committed batch to the index failed (%s); rebuilding",
             g->info.name, ierr.message);
        cd_index_destroy(gi->ix);
        gi->ix = NULL;
    }
    rc = index_settle(e, g, gi, err);
    if (rc == CD_OK && frc != CD_OK)
        rc = cd__gallery_fail(e, g, ferr.message, err);
    pthread_rwlock_unlock(&g->lock);
out:
    pthread_rwlock_unlock(&e->lock);
    free(copy);
    free(replaced);
    free(rowids);
    free(vecs);
    return rc;
}

cd_err cd_engine_item_get(cd_engine *e, const char *gallery_name,
                          const char *id, bool with_vectors, cd_item **out,
                          cd_error *err)
{
    cd_gallery row;
    *out = NULL;
    cd_err rc = cd_store_gallery_get(e->st, gallery_name, &row, err);
    if (rc != CD_OK)
        return rc;
    return cd_store_item_get(e->st, row.id, id, with_vectors, out, err);
}

/*
 * Drops the deleted rowids (n of them, committed at seq; none: nothing
 * was committed) from every index of g and from its filter fields,
 * rebuilding an index that cannot take it; CD_EUNAVAILABLE when that
 * fails too.  The caller holds g's write lock.
 */
static cd_err indexes_drop(cd_engine *e, gallery *g, const int64_t *rowids,
                           size_t n, int64_t seq, cd_error *err)
{
    if (n == 0)
        return CD_OK;
    g->seq = seq;
    atomic_fetch_add(&g->changes, (long long)n);
    for (size_t j = 0; j < n; j++)
        cd_fields_remove(g->fields, rowids[j]);
    for (size_t i = 0; i < g->n_indexes; i++) {
        gal_index *gi = &g->indexes[i];
        cd_error ierr;
        for (size_t j = 0; j < n; j++)
            cd__idset_remove(&gi->members, rowids[j]);
        if (!gi->ix)
            continue;
        gi->dirty = true;
        if (cd_index_remove(gi->ix, rowids, n, &ierr) != CD_OK) {
            cd_index_destroy(gi->ix);
            gi->ix = NULL;
        } else {
            gi->hidden |= !cd_index_can_remove(gi->ix);
        }
        if (index_settle(e, g, gi, err) != CD_OK)
            return CD_EUNAVAILABLE;
    }
    return CD_OK;
}

cd_err cd_engine_item_delete(cd_engine *e, const char *gallery_name,
                             const char *id, cd_error *err)
{
    gallery *g;
    if (!cd_engine_ready(e))
        return cd__fail(err, CD_EBUSY, "indexes are still loading");
    cd_err rc = cd__gallery_enter(e, gallery_name, &g, err);
    if (rc != CD_OK)
        return rc;
    pthread_rwlock_wrlock(&g->lock);
    int64_t rowid = 0, seq = 0;
    rc = cd__gallery_check(g, err);
    if (rc == CD_OK)
        rc = cd_store_item_delete(e->st, g->info.id, id, &rowid, &seq, err);
    if (rc == CD_OK)
        rc = indexes_drop(e, g, &rowid, 1, seq, err);
    pthread_rwlock_unlock(&g->lock);
    pthread_rwlock_unlock(&e->lock);
    return rc;
}

cd_err cd_engine_items_delete(cd_engine *e, const char *gallery_name,
                              const char *const *ids, size_t n,
                              size_t *deleted, cd_error *err)
{
    gallery *g;
    *deleted = 0;
    if (!cd_engine_ready(e))
        return cd__fail(err, CD_EBUSY, "indexes are still loading");
    for (size_t i = 0; i < n; i++) {
        size_t len;
        if (!ids[i] || (len = strlen(ids[i])) == 0 || len > CD_ITEM_ID_MAX)
            return cd__fail(err, CD_EINVAL, "id %zu: must be 1..%d bytes", i,
                            CD_ITEM_ID_MAX);
    }
    int64_t *rowids = malloc((n ? n : 1) * sizeof *rowids);
    if (!rowids)
        return cd__fail(err, CD_ENOMEM, "out of memory for %zu ids", n);
    cd_err rc = cd__gallery_enter(e, gallery_name, &g, err);
    if (rc != CD_OK) {
        free(rowids);
        return rc;
    }
    pthread_rwlock_wrlock(&g->lock);
    int64_t seq = 0;
    size_t count = 0;
    rc = cd__gallery_check(g, err);
    if (rc == CD_OK)
        rc = cd_store_items_delete(e->st, g->info.id, ids, n, rowids, &count,
                                   &seq, err);
    if (rc == CD_OK)
        rc = indexes_drop(e, g, rowids, count, seq, err);
    if (rc == CD_OK)
        *deleted = count;
    pthread_rwlock_unlock(&g->lock);
    pthread_rwlock_unlock(&e->lock);
    free(rowids);
    return rc;
}

/* --- listing cursors --------------------------------------------------- */

/*
 * A cursor is base64url of: the gallery id (8 bytes, little-endian), the
 * last listed item id, and CURSOR_TAG bytes of SHA-256 over the store
 * identity and those bytes.  Not a secret: the tag tells a cursor made by
 * this store for this gallery from a damaged, edited or foreign one.
 */
#define CURSOR_TAG 12
#define CURSOR_BYTES_MAX (8 + CD_ITEM_ID_MAX + CURSOR_TAG)

static void cursor_tag(const cd_engine *e, const unsigned char *b, size_t n,
                       unsigned char tag[CURSOR_TAG])
{
    struct sha256_ctx h;
    unsigned char d[SHA256_DIGEST_SIZE];
    sha256_init(&h);
    sha256_update(&h, CD_STORE_ID_LEN, (const uint8_t *)e->store_id);
    sha256_update(&h, n, b);
    sha256_digest(&h, sizeof d, d);
    memcpy(tag, d, CURSOR_TAG);
}

static void cursor_encode(const cd_engine *e, int64_t gallery_id,
                          const char *last, char out[CD_CURSOR_MAX + 1])
{
    unsigned char b[CURSOR_BYTES_MAX];
    size_t len = strlen(last);
    uint64_t gid = (uint64_t)gallery_id;
    for (int i = 0; i < 8; i++)
        b[i] = (unsigned char)(gid >> (8 * i));
    memcpy(b + 8, last, len);
    cursor_tag(e, b, 8 + len, b + 8 + len);
    cd__b64_encode(b, 8 + len + CURSOR_TAG, true, out);
}

/* The last id of cursor, which must be one of this store for gallery_id;
 * CD_EINVAL saying which part is wrong. */
static cd_err cursor_decode(const cd_engine *e, int64_t gallery_id,
                            const char *cursor, char last[CD_ITEM_ID_MAX + 1],
                            cd_error *err)
{
    unsigned char b[CURSOR_BYTES_MAX], tag[CURSOR_TAG];
    size_t n = 0;
    if (strlen(cursor) > CD_CURSOR_MAX ||
        !cd__b64url_decode(cursor, b, sizeof b, &n) || n < 8 + 1 + CURSOR_TAG)
        return cd__fail(err, CD_EINVAL, "cursor is not one this server made");
    size_t len = n - 8 - CURSOR_TAG;
    cursor_tag(e, b, 8 + len, tag);
    if (memcmp(tag, b + 8 + len, CURSOR_TAG) != 0)
        return cd__fail(err, CD_EINVAL, "cursor is damaged or not one this server made");
    uint64_t gid = 0;
    for (int i = 0; i < 8; i++)
        gid |= (uint64_t)b[i] << (8 * i);
    if ((int64_t)gid != gallery_id)
        return cd__fail(err, CD_EINVAL, "cursor belongs to another gallery");
    memcpy(last, b + 8, len);
    last[len] = '\0';
    if (strlen(last) != len)
        return cd__fail(err, CD_EINVAL, "cursor is not one this server made");
    return CD_OK;
}

cd_err cd_engine_items_list(cd_engine *e, const char *gallery_name,
                            const char *cursor, size_t limit,
                            const cd_item_pred *pred, cd_item ***out,
                            size_t *n, char next[CD_CURSOR_MAX + 1],
                            cd_error *err)
{
    cd_gallery row;
    char last[CD_ITEM_ID_MAX + 1] = "";
    bool more = false;
    *out = NULL;
    *n = 0;
    next[0] = '\0';
    if (limit < 1 || limit > CD_LIST_LIMIT_MAX)
        return cd__fail(err, CD_EINVAL, "limit must be 1..%d", CD_LIST_LIMIT_MAX);
    cd_err rc = cd_store_gallery_get(e->st, gallery_name, &row, err);
    if (rc == CD_OK && cursor && cursor[0])
        rc = cursor_decode(e, row.id, cursor, last, err);
    if (rc == CD_OK)
        rc = cd_store_items_page(e->st, row.id, last, limit, pred, out, n,
                                 &more, err);
    if (rc == CD_OK && more && *n > 0)
        cursor_encode(e, row.id, (*out)[*n - 1]->id, next);
    return rc;
}

/* --- filters on listing and bulk delete ---------------------------------- */

static bool match_keep(void *ctx, const cd_item *item)
{
    return cd_match_has(ctx, item->rowid);
}

/*
 * Enters gallery name and locks it (for writing when write), then
 * matches filter in its fields into *m.  On success the caller ends with
 * gallery_leave; on failure nothing is held.
 */
static cd_err gallery_match(cd_engine *e, const char *name, bool write,
                            const cd_filter *filter, gallery **g, cd_match **m,
                            cd_error *err)
{
    *m = NULL;
    if (!cd_engine_ready(e))
        return cd__fail(err, CD_EBUSY, "indexes are still loading");
    cd_err rc = cd__gallery_enter(e, name, g, err);
    if (rc != CD_OK)
        return rc;
    if (write)
        pthread_rwlock_wrlock(&(*g)->lock);
    else
        pthread_rwlock_rdlock(&(*g)->lock);
    rc = cd__gallery_check(*g, err);
    if (rc == CD_OK)
        rc = cd_fields_match((*g)->fields, filter, m, err);
    if (rc != CD_OK) {
        pthread_rwlock_unlock(&(*g)->lock);
        pthread_rwlock_unlock(&e->lock);
    }
    return rc;
}

static void gallery_leave(cd_engine *e, gallery *g, cd_match *m)
{
    pthread_rwlock_unlock(&g->lock);
    pthread_rwlock_unlock(&e->lock);
    cd_match_destroy(m);
}

cd_err cd_engine_items_list_filtered(cd_engine *e, const char *gallery_name,
                                     const char *cursor, size_t limit,
                                     const cd_filter *filter, cd_item ***out,
                                     size_t *n, char next[CD_CURSOR_MAX + 1],
                                     cd_error *err)
{
    gallery *g;
    cd_match *m = NULL;
    *out = NULL;
    *n = 0;
    next[0] = '\0';
    if (!filter)
        return cd_engine_items_list(e, gallery_name, cursor, limit, NULL, out,
                                    n, next, err);
    cd_err rc = gallery_match(e, gallery_name, false, filter, &g, &m, err);
    if (rc != CD_OK)
        return rc;
    cd_item_pred pred = {match_keep, m};
    rc = cd_engine_items_list(e, gallery_name, cursor, limit, &pred, out, n,
                              next, err);
    gallery_leave(e, g, m);
    return rc;
}

cd_err cd_engine_items_delete_filtered(cd_engine *e, const char *gallery_name,
                                       const cd_filter *filter,
                                       size_t *deleted, cd_error *err)
{
    gallery *g;
    cd_match *m = NULL;
    int64_t *rowids = NULL;
    cd_item_ref *refs = NULL;
    const char **ids = NULL;
    size_t n = 0, count = 0;
    int64_t seq = 0;
    *deleted = 0;
    cd_err rc = gallery_match(e, gallery_name, true, filter, &g, &m, err);
    if (rc != CD_OK)
        return rc;
    rc = cd_match_rowids(m, &rowids, &n, err);
    if (rc == CD_OK && n > 0) {
        refs = calloc(n, sizeof *refs);
        ids = calloc(n, sizeof *ids);
        if (!refs || !ids)
            rc = cd__fail(err, CD_ENOMEM, "out of memory for %zu items", n);
    }
    if (rc == CD_OK && n > 0)
        rc = cd_store_item_refs(e->st, rowids, n, false, false, refs, err);
    size_t n_ids = 0;
    for (size_t i = 0; rc == CD_OK && i < n; i++)
        if (refs[i].id)
            ids[n_ids++] = refs[i].id;
    if (rc == CD_OK && n_ids > 0)
        rc = cd_store_items_delete(e->st, g->info.id, ids, n_ids, rowids, &count,
                                   &seq, err);
    if (rc == CD_OK)
        rc = indexes_drop(e, g, rowids, count, seq, err);
    if (rc == CD_OK)
        *deleted = count;
    gallery_leave(e, g, m);
    if (refs)
        cd_item_refs_finish(refs, n);
    free(refs);
    free(ids);
    free(rowids);
    return rc;
}
