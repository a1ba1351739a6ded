/*
 * store_items.c - a gallery's items and their embeddings, item refs for
 * search results, and the change sequence the indexes follow: scans of
 * the vectors written after a seq, tombstones of deleted items, counts
 * (see store.h for the contract, store_int.h for what the store_*.c
 * files share).
 *
 * An upsert or an item delete takes the gallery's next seq
 * (galleries.seq), which scans and tombstones are read against, and in
 * the same transaction keeps galleries.item_count equal to the number of
 * the gallery's items.  Item rowids are AUTOINCREMENT: a rowid is never
 * handed out twice, so an index built before a delete can never mistake
 * a new item for it.  items and embeddings have no foreign keys, so an
 * upsert checks its gallery and model once per batch and an item's
 * delete deletes its embeddings itself.
 *
 * Upsert speed: embeddings are keyed (gallery_id, model_id, item_rowid)
 * with no other index, so a new item costs one entry in items, one in
 * its (gallery_id, ext_id) index and one appended embeddings entry.
 */
#include "store_int.h"

#include <stdlib.h>
#include <string.h>

/* cd__db_fail for item i of a batch: every batch message starts "item N: ". */
static cd_err db_fail_item(cd_error *err, cd_conn *c, int rc, size_t i)
{
    return cd__fail(err, cd__store_code_of(rc), "item %zu: sqlite: %s", i,
                    sqlite3_errmsg(c->db));
}

/* --- items -------------------------------------------------------------- */

/* Checks one item of a batch; messages start "item i: ". */
static cd_err item_check(const cd_item_in *it, size_t i, int dim,
                         cd_error *err)
{
    size_t len;
    if (!it->id || !cd__text_ok(it->id, CD_ITEM_ID_MAX, &len) || len == 0)
        return cd__fail(err, CD_EINVAL,
                        "item %zu: id is not UTF-8 of 1 to %d bytes", i,
                        CD_ITEM_ID_MAX);
    if (it->label && !cd__text_ok(it->label, CD_LABEL_MAX, &len))
        return cd__fail(err, CD_EINVAL,
                        "item %zu: label is not UTF-8 of at most %d bytes", i,
                        CD_LABEL_MAX);
    if (it->metadata && !cd__text_ok(it->metadata, CD_METADATA_MAX, &len))
        return cd__fail(err, CD_EINVAL,
                        "item %zu: metadata is not UTF-8 of at most %d bytes",
                        i, CD_METADATA_MAX);
    if (!it->vector)
        return cd__fail(err, CD_EVECTOR, "item %zu: no vector", i);
    if (!cd_vec_finite(it->vector, (size_t)dim))
        return cd__fail(err, CD_EVECTOR,
                        "item %zu: vector has a NaN or infinite value", i);
    return CD_OK;
}

static uint64_t hash_text(const char *s)
{
    uint64_t h = 14695981039346656037u; /* FNV-1a */
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211u;
    return h;
}

/* Fails naming the later item when an id appears twice in the batch. */
static cd_err check_duplicates(const cd_item_in *items, size_t n,
                               cd_error *err)
{
    size_t cap = 16;
    while (cap < n * 2)
        cap *= 2;
    size_t *slots = calloc(cap, sizeof *slots); /* item index + 1, 0: free */
    if (!slots)
        return cd__fail(err, CD_ENOMEM, "out of memory checking the batch");
    cd_err rc = CD_OK;
    for (size_t i = 0; i < n && rc == CD_OK; i++) {
        size_t at = (size_t)hash_text(items[i].id) & (cap - 1);
        while (slots[at] && strcmp(items[slots[at] - 1].id, items[i].id) != 0)
            at = (at + 1) & (cap - 1);
        if (slots[at])
            rc = cd__fail(err, CD_EINVAL,
                          "item %zu: id \"%s\" appears twice in the batch", i,
                          items[i].id);
        else
            slots[at] = i + 1;
    }
    free(slots);
    return rc;
}

/*
 * The statements of an upsert batch, with the batch's gallery, model and
 * seq bound once: sqlite3_reset keeps bindings, so each item binds only
 * its own values.  upsert_end clears them, so that no statement keeps a
 * pointer into the caller's items.
 */
typedef struct upsert_stmts {
    sqlite3_stmt *item;         /* ST_ITEM_UPSERT: ?1 gallery */
    sqlite3_stmt *rowid;        /* ST_ITEM_ROWID: ?1 gallery */
    sqlite3_stmt *update;       /* ST_EMBEDDING_UPDATE: ?1 gallery, ?2 model, ?4 seq */
    sqlite3_stmt *insert;       /* ST_EMBEDDING_INSERT: same */
} upsert_stmts;

static cd_err upsert_begin(cd_conn *c, int64_t gallery_id, int64_t model_id,
                           int64_t seq, upsert_stmts *u, cd_error *err)
{
    cd_err rc = cd__conn_stmt(c, ST_ITEM_UPSERT, &u->item, err);
    if (rc == CD_OK)
        rc = cd__conn_stmt(c, ST_ITEM_ROWID, &u->rowid, err);
    if (rc == CD_OK)
        rc = cd__conn_stmt(c, ST_EMBEDDING_UPDATE, &u->update, err);
    if (rc == CD_OK)
        rc = cd__conn_stmt(c, ST_EMBEDDING_INSERT, &u->insert, err);
    if (rc != CD_OK)
        return rc;
    sqlite3_bind_int64(u->item, 1, gallery_id);
    sqlite3_bind_int64(u->rowid, 1, gallery_id);
    sqlite3_stmt *const emb[] = {u->update, u->insert};
    for (size_t k = 0; k < 2; k++) {
        sqlite3_bind_int64(emb[k], 1, gallery_id);
        sqlite3_bind_int64(emb[k], 2, model_id);
        sqlite3_bind_int64(emb[k], 4, seq);
    }
    return CD_OK;
}

static void upsert_end(upsert_stmts *u)
{
    cd__stmt_done(u->item);
    cd__stmt_done(u->rowid);
    cd__stmt_done(u->update);
    cd__stmt_done(u->insert);
}

/* Steps s, which yields no row, for item i of the batch. */
static cd_err step_item(cd_conn *c, sqlite3_stmt *s, size_t i, cd_error *err)
{
    int step = sqlite3_step(s);
    cd_err rc = step == SQLITE_DONE ? CD_OK : db_fail_item(err, c, step, i);
    sqlite3_reset(s);
    return rc;
}

/*
 * Writes item i's row and embedding inside the upsert transaction;
 * *created tells whether the item is new, *replaced whether it had an
 * embedding of the batch's model.  A new item costs two statements, an
 * existing one three.  The item statement does not say which rowid it
 * wrote (RETURNING would, at a third of the batch's speed), so: an insert
 * sets the connection's last insert rowid, which is cleared before it.
 */
static cd_err upsert_one(cd_conn *c, const upsert_stmts *u, int dim,
                         const cd_item_in *it, size_t i, int64_t *rowid,
                         bool *replaced, bool *created, cd_error *err)
{
    int blob_bytes = dim * (int)sizeof(float);
    *created = *replaced = false;
    sqlite3_bind_text(u->item, 2, it->id, -1, SQLITE_STATIC);
    if (it->label)
        sqlite3_bind_text(u->item, 3, it->label, -1, SQLITE_STATIC);
    else
        sqlite3_bind_null(u->item, 3);
    if (it->metadata)
        sqlite3_bind_text(u->item, 4, it->metadata, -1, SQLITE_STATIC);
    else
        sqlite3_bind_null(u->item, 4);
    sqlite3_set_last_insert_rowid(c->db, 0);
    cd_err rc = step_item(c, u->item, i, err);
    if (rc != CD_OK)
        return rc;
    *rowid = sqlite3_last_insert_rowid(c->db);
    *created = *rowid != 0;

    if (!*created) {
        sqlite3_bind_text(u->rowid, 2, it->id, -1, SQLITE_STATIC);
        int step = sqlite3_step(u->rowid);
        if (step == SQLITE_ROW)
            *rowid = sqlite3_column_int64(u->rowid, 0);
        else if (step == SQLITE_DONE)
            rc = cd__fail(err, CD_EINTERNAL,
                          "item %zu: neither inserted nor found", i);
        else
            rc = db_fail_item(err, c, step, i);
        sqlite3_reset(u->rowid);
        if (rc != CD_OK)
            return rc;

        sqlite3_bind_int64(u->update, 3, *rowid);
        sqlite3_bind_blob(u->update, 5, it->vector, blob_bytes, SQLITE_STATIC);
        rc = step_item(c, u->update, i, err);
        if (rc != CD_OK)
            return rc;
        *replaced = sqlite3_changes(c->db) > 0;
        if (*replaced)
            return CD_OK;
    }
    sqlite3_bind_int64(u->insert, 3, *rowid);
    sqlite3_bind_blob(u->insert, 5, it->vector, blob_bytes, SQLITE_STATIC);
    return step_item(c, u->insert, i, err);
}

cd_err cd_store_items_upsert(cd_store *st, int64_t gallery_id,
                             int64_t model_id, int dim,
                             const cd_item_in *items, size_t n,
                             int64_t *seq_out, int64_t *rowids,
                             bool *replaced, cd_error *err)
{
    if (seq_out)
        *seq_out = 0;
    if (!st || !items || !rowids)
        return cd__fail(err, CD_EINVAL, "cd_store_items_upsert: NULL argument");
    if (n == 0)
        return cd__fail(err, CD_EINVAL, "the batch has no items");
    if (dim < 1 || dim > CD_DIM_MAX)
        return cd__fail(err, CD_EINVAL, "dim %d is not within 1..%d", dim,
                        CD_DIM_MAX);
    cd_err rc = CD_OK;
    for (size_t i = 0; i < n && rc == CD_OK; i++)
        rc = item_check(&items[i], i, dim, err);
    if (rc == CD_OK)
        rc = check_duplicates(items, n, err);
    if (rc != CD_OK)
        return rc;

    cd_conn *c = cd__writer_acquire(st);
    upsert_stmts u = {NULL, NULL, NULL, NULL};
    int64_t model_dim, seq = 0, created_count = 0;
    bool found;
    rc = cd__tx_begin(c, true, err);
    if (rc != CD_OK)
        goto unlock;
    /* items and embeddings have no foreign keys: the batch's model and
     * gallery are checked here, once. */
    rc = cd__run_i64(c, ST_MODEL_DIM, 1, model_id, 0, &found, &model_dim, err);
    if (rc == CD_OK && !found)
        rc = cd__fail(err, CD_ENOTFOUND, "model %lld not found",
                      (long long)model_id);
    else if (rc == CD_OK && model_dim != dim)
        rc = cd__fail(err, CD_EDIM, "model %lld has dim %lld, not %d",
                      (long long)model_id, (long long)model_dim, dim);
    if (rc == CD_OK)
        rc = cd__run_i64(c, ST_GALLERY_NEXT_SEQ, 1, gallery_id, 0, &found, &seq,
                         err);
    if (rc == CD_OK && !found)
        rc = cd__fail(err, CD_ENOTFOUND, "gallery %lld not found",
                      (long long)gallery_id);
    if (rc == CD_OK)
        rc = upsert_begin(c, gallery_id, model_id, seq, &u, err);
    for (size_t i = 0; i < n && rc == CD_OK; i++) {
        bool was_replaced, created;
        rc = upsert_one(c, &u, dim, &items[i], i, &rowids[i], &was_replaced,
                        &created, err);
        if (replaced)
            replaced[i] = was_replaced;
        created_count += created;
    }
    upsert_end(&u);
    if (rc == CD_OK && created_count)
        rc = cd__run_i64(c, ST_GALLERY_ADD_COUNT, 2, gallery_id, created_count,
                         NULL, NULL, err);
    rc = cd__tx_end(c, rc, err);
unlock:
    cd__conn_release(c);
    if (rc != CD_OK) {
        memset(rowids, 0, n * sizeof *rowids);
        if (replaced)
            memset(replaced, 0, n * sizeof *replaced);
    } else if (seq_out) {
        *seq_out = seq;
    }
    return rc;
}

void cd_item_destroy(cd_item *item)
{
    if (!item)
        return;
    for (size_t i = 0; i < item->n_embeddings; i++)
        free(item->embeddings[i].vector);
    free(item->embeddings);
    free(item->id);
    free(item->label);
    free(item->metadata);
    free(item);
}

/* Loads the embeddings of item->rowid, an item of gallery_id (with their
 * vectors when asked). */
static cd_err item_load_embeddings(cd_conn *c, int64_t gallery_id,
                                   cd_item *item, bool with_vectors,
                                   cd_error *err)
{
    sqlite3_stmt *s;
    size_t cap = 0;
    cd_err rc = cd__conn_stmt(c, ST_ITEM_EMBEDDINGS, &s, err);
    if (rc != CD_OK)
        return rc;
    sqlite3_bind_int64(s, 1, gallery_id);
    sqlite3_bind_int64(s, 2, item->rowid);
    int step;
    while ((step = sqlite3_step(s)) == SQLITE_ROW) {
        if (item->n_embeddings == cap) {
            size_t ncap = cap ? cap * 2 : 4;
            cd_item_embedding *grown =
                realloc(item->embeddings, ncap * sizeof *grown);
            if (!grown) {
                rc = cd__fail(err, CD_ENOMEM, "out of memory reading an item");
                goto done;
            }
            item->embeddings = grown;
            cap = ncap;
        }
        cd_item_embedding *e = &item->embeddings[item->n_embeddings];
        memset(e, 0, sizeof *e);
        e->model_id = sqlite3_column_int64(s, 0);
        e->dim = sqlite3_column_int(s, 2);
        size_t bytes = (size_t)sqlite3_column_bytes(s, 3);
        if (!cd__copy_column(s, 1, e->model, sizeof e->model) || e->dim < 1 ||
            e->dim > CD_DIM_MAX || bytes != (size_t)e->dim * sizeof(float)) {
            rc = cd__fail(err, CD_ECORRUPT,
                          "item %s: embedding of model %lld is damaged",
                          item->id, (long long)e->model_id);
            goto done;
        }
        item->n_embeddings++;
        if (with_vectors) {
            e->vector = malloc(bytes);
            if (!e->vector) {
                rc = cd__fail(err, CD_ENOMEM, "out of memory reading an item");
                goto done;
            }
            memcpy(e->vector, sqlite3_column_blob(s, 3), bytes);
        }
    }
    if (step != SQLITE_DONE)
        rc = cd__db_fail(err, c, step);
done:
    cd__stmt_done(s);
    return rc;
}

cd_err cd_store_item_get(cd_store *st, int64_t gallery_id, const char *id,
                         bool with_vectors, cd_item **out, cd_error *err)
{
    if (!out)
        return cd__fail(err, CD_EINVAL, "cd_store_item_get: out is NULL");
    *out = NULL;
    if (!st || !id)
        return cd__fail(err, CD_EINVAL, "cd_store_item_get: NULL argument");
    cd_item *item = calloc(1, sizeof *item);
    if (!item)
        return cd__fail(err, CD_ENOMEM, "out of memory reading an item");
    cd_conn *c = cd__reader_acquire(st);
    sqlite3_stmt *s = NULL;
    cd_err rc = cd__tx_begin(c, false, err);
    if (rc != CD_OK)
        goto unlock;
    rc = cd__conn_stmt(c, ST_ITEM_BY_ID, &s, err);
    if (rc != CD_OK)
        goto end;
    sqlite3_bind_int64(s, 1, gallery_id);
    sqlite3_bind_text(s, 2, id, -1, SQLITE_STATIC);
    int step = sqlite3_step(s);
    if (step == SQLITE_ROW) {
        item->rowid = sqlite3_column_int64(s, 0);
        rc = cd__dup_column(s, 1, &item->id, err);
        if (rc == CD_OK)
            rc = cd__dup_column(s, 2, &item->label, err);
        if (rc == CD_OK)
            rc = cd__dup_column(s, 3, &item->metadata, err);
    } else if (step == SQLITE_DONE) {
        rc = cd__fail(err, CD_ENOTFOUND, "item \"%.*s\" not found",
                      CD_ITEM_ID_MAX, id);
    } else {
        rc = cd__db_fail(err, c, step);
    }
    cd__stmt_done(s);
    if (rc == CD_OK)
        rc = item_load_embeddings(c, gallery_id, item, with_vectors, err);
end:
    rc = cd__tx_end(c, rc, err);
unlock:
    cd__conn_release(c);
    if (rc != CD_OK) {
        cd_item_destroy(item);
        return rc;
    }
    *out = item;
    return CD_OK;
}

/*
 * Deletes the item at rowid of gallery_id (its embeddings, its row and the
 * gallery's count) and writes its tombstone at seq, inside the caller's
 * write transaction.
 */
static cd_err delete_rowid(cd_conn *c, int64_t gallery_id, int64_t rowid,
                           int64_t seq, cd_error *err)
{
    sqlite3_stmt *s = NULL;
    cd_err rc = cd__run_i64(c, ST_ITEM_DELETE_EMBEDDINGS, 2, gallery_id, rowid,
                            NULL, NULL, err);
    if (rc == CD_OK)
        rc = cd__run_i64(c, ST_ITEM_DELETE, 1, rowid, 0, NULL, NULL, err);
    if (rc == CD_OK)
        rc = cd__run_i64(c, ST_GALLERY_ADD_COUNT, 2, gallery_id, -1, NULL, NULL,
                         err);
    if (rc == CD_OK)
        rc = cd__conn_stmt(c, ST_TOMBSTONE_INSERT, &s, err);
    if (rc == CD_OK) {
        sqlite3_bind_int64(s, 1, gallery_id);
        sqlite3_bind_int64(s, 2, seq);
        sqlite3_bind_int64(s, 3, rowid);
        rc = cd__step_write(c, s, NULL, NULL, err);
    }
    return rc;
}

/* The rowid of item id in gallery_id: *found false when there is none. */
static cd_err rowid_of(cd_conn *c, int64_t gallery_id, const char *id,
                       bool *found, int64_t *rowid, cd_error *err)
{
    sqlite3_stmt *s = NULL;
    *found = false;
    cd_err rc = cd__conn_stmt(c, ST_ITEM_BY_ID, &s, err);
    if (rc != CD_OK)
        return rc;
    sqlite3_bind_int64(s, 1, gallery_id);
    sqlite3_bind_text(s, 2, id, -1, SQLITE_STATIC);
    int step = sqlite3_step(s);
    if (step == SQLITE_ROW) {
        *rowid = sqlite3_column_int64(s, 0);
        *found = true;
    } else if (step != SQLITE_DONE) {
        rc = cd__db_fail(err, c, step);
    }
    cd__stmt_done(s);
    return rc;
}

/*
 * Deletes the items named by ids in one transaction (cd_store_items_delete);
 * when each_needed, an id not in the gallery fails the whole call with
 * CD_ENOTFOUND instead of being skipped.
 */
static cd_err delete_ids(cd_store *st, int64_t gallery_id,
                         const char *const *ids, size_t n, bool each_needed,
                         int64_t *rowids, size_t *deleted, int64_t *seq_out,
                         cd_error *err)
{
    *deleted = 0;
    *seq_out = 0;
    if (!st || (n > 0 && (!ids || !rowids)))
        return cd__fail(err, CD_EINVAL, "deleting items: NULL argument");
    cd_conn *c = cd__writer_acquire(st);
    int64_t seq = 0;
    size_t count = 0;
    bool found;
    cd_err rc = cd__tx_begin(c, true, err);
    if (rc != CD_OK)
        goto unlock;
    rc = cd__run_i64(c, ST_GALLERY_NEXT_SEQ, 1, gallery_id, 0, &found, &seq, err);
    if (rc == CD_OK && !found)
        rc = cd__fail(err, CD_ENOTFOUND, "gallery %lld not found",
                      (long long)gallery_id);
    for (size_t i = 0; rc == CD_OK && i < n; i++) {
        int64_t rowid = 0;
        if (!ids[i]) {
            rc = cd__fail(err, CD_EINVAL, "id %zu is NULL", i);
            break;
        }
        rc = rowid_of(c, gallery_id, ids[i], &found, &rowid, err);
        if (rc == CD_OK && !found && each_needed)
            rc = cd__fail(err, CD_ENOTFOUND, "item \"%.*s\" not found",
                          CD_ITEM_ID_MAX, ids[i]);
        if (rc == CD_OK && found) {
            rc = delete_rowid(c, gallery_id, rowid, seq, err);
            rowids[count++] = rowid;
        }
    }
    if (rc == CD_OK && count == 0) {
        /* Nothing to delete: nothing changes, not even the seq. */
        cd__tx_end(c, CD_ENOTFOUND, NULL);
        seq = 0;
    } else {
        rc = cd__tx_end(c, rc, err);
    }
unlock:
    cd__conn_release(c);
    if (rc == CD_OK) {
        *deleted = count;
        *seq_out = seq;
    }
    return rc;
}

cd_err cd_store_items_delete(cd_store *st, int64_t gallery_id,
                             const char *const *ids, size_t n,
                             int64_t *rowids, size_t *deleted,
                             int64_t *seq_out, cd_error *err)
{
    return delete_ids(st, gallery_id, ids, n, false, rowids, deleted, seq_out,
                      err);
}

cd_err cd_store_item_delete(cd_store *st, int64_t gallery_id, const char *id,
                            int64_t *rowid_out, int64_t *seq_out,
                            cd_error *err)
{
    int64_t rowid = 0, seq = 0;
    size_t deleted = 0;
    if (!id)
        return cd__fail(err, CD_EINVAL, "cd_store_item_delete: NULL argument");
    cd_err rc = delete_ids(st, gallery_id, &id, 1, true, &rowid, &deleted,
                           &seq, err);
    if (rowid_out)
        *rowid_out = rowid;
    if (seq_out)
        *seq_out = seq;
    return rc;
}

void cd_items_destroy(cd_item **items, size_t n)
{
    for (size_t i = 0; items && i < n; i++)
        cd_item_destroy(items[i]);
    free(items);
}

#define PAGE_CHUNK 256  /* rows read per step while a predicate drops some */

cd_err cd_store_items_page(cd_store *st, int64_t gallery_id,
                           const char *after, size_t limit,
                           const cd_item_pred *pred, cd_item ***out,
                           size_t *n, bool *more, cd_error *err)
{
    *out = NULL;
    *n = 0;
    *more = false;
    if (!st || limit == 0)
        return cd__fail(err, CD_EINVAL, "cd_store_items_page: bad argument");
    /* One more than asked for tells whether another page follows. */
    size_t want = limit + 1;
    cd_item **items = calloc(want, sizeof *items);
    if (!items)
        return cd__fail(err, CD_ENOMEM, "out of memory for %zu items", want);
    char *cursor = strdup(after ? after : "");
    size_t got = 0;
    bool exhausted = false;
    cd_conn *c = cd__reader_acquire(st);
    sqlite3_stmt *s = NULL;
    cd_err rc = cursor ? cd__tx_begin(c, false, err)
                       : cd__fail(err, CD_ENOMEM, "out of memory");
    if (rc != CD_OK)
        goto unlock;
    while (rc == CD_OK && got < want && !exhausted) {
        size_t step_rows = pred ? PAGE_CHUNK : want - got;
        size_t seen = 0;
        rc = cd__conn_stmt(c, ST_ITEM_PAGE, &s, err);
        if (rc != CD_OK)
            break;
        sqlite3_bind_int64(s, 1, gallery_id);
        sqlite3_bind_text(s, 2, cursor, -1, SQLITE_TRANSIENT);
        sqlite3_bind_int64(s, 3, (sqlite3_int64)step_rows);
        int step = SQLITE_DONE;
        while (rc == CD_OK && got < want && (step = sqlite3_step(s)) == SQLITE_ROW) {
            cd_item *it = calloc(1, sizeof *it);
            seen++;
            if (!it) {
                rc = cd__fail(err, CD_ENOMEM, "out of memory listing items");
                break;
            }
            it->rowid = sqlite3_column_int64(s, 0);
            rc = cd__dup_column(s, 1, &it->id, err);
            if (rc == CD_OK)
                rc = cd__dup_column(s, 2, &it->label, err);
            if (rc == CD_OK)
                rc = cd__dup_column(s, 3, &it->metadata, err);
            if (rc == CD_OK && !it->id)
                rc = cd__fail(err, CD_ECORRUPT, "item row %lld has no id",
                              (long long)it->rowid);
            if (rc == CD_OK) {
                char *next = strdup(it->id);
                if (!next)
                    rc = cd__fail(err, CD_ENOMEM, "out of memory");
                free(cursor);
                cursor = next;
            }
            if (rc != CD_OK || (pred && !pred->keep(pred->ctx, it))) {
                cd_item_destroy(it);
                continue;
            }
            items[got++] = it;
        }
        if (rc == CD_OK && got < want && step != SQLITE_DONE && step != SQLITE_ROW)
            rc = cd__db_fail(err, c, step);
        cd__stmt_done(s);
        s = NULL;
        if (seen < step_rows)
            exhausted = true;
    }
    for (size_t i = 0; rc == CD_OK && i < got && i < limit; i++)
        rc = item_load_embeddings(c, gallery_id, items[i], false, err);
    rc = cd__tx_end(c, rc, err);
unlock:
    cd__conn_release(c);
    free(cursor);
    if (rc != CD_OK) {
        cd_items_destroy(items, got);
        return rc;
    }
    if (got > limit) {
        cd_item_destroy(items[limit]);
        got = limit;
        *more = true;
    }
    *out = items;
    *n = got;
    return CD_OK;
}

void cd_item_refs_finish(cd_item_ref *refs, size_t n)
{
    for (size_t i = 0; refs && i < n; i++) {
        free(refs[i].id);
        free(refs[i].label);
        free(refs[i].metadata);
        refs[i].id = refs[i].label = refs[i].metadata = NULL;
    }
}

cd_err cd_store_item_refs(cd_store *st, const int64_t *rowids, size_t n,
                          bool with_label, bool with_metadata,
                          cd_item_ref *refs, cd_error *err)
{
    if (refs)
        memset(refs, 0, n * sizeof *refs);
    if (n == 0)
        return CD_OK;
    if (!st || !rowids || !refs)
        return cd__fail(err, CD_EINVAL, "cd_store_item_refs: NULL argument");
    cd_conn *c = cd__reader_acquire(st);
    sqlite3_stmt *s = NULL;
    cd_err rc = cd__tx_begin(c, false, err);
    if (rc != CD_OK)
        goto unlock;
    rc = cd__conn_stmt(c, ST_ITEM_REF, &s, err);
    for (size_t i = 0; i < n && rc == CD_OK; i++) {
        sqlite3_bind_int64(s, 1, rowids[i]);
        int step = sqlite3_step(s);
        if (step == SQLITE_ROW) {
            rc = cd__dup_column(s, 0, &refs[i].id, err);
            if (rc == CD_OK && with_label)
                rc = cd__dup_column(s, 1, &refs[i].label, err);
            if (rc == CD_OK && with_metadata)
                rc = cd__dup_column(s, 2, &refs[i].metadata, err);
        } else if (step != SQLITE_DONE) {
            rc = cd__db_fail(err, c, step);
        }
        sqlite3_reset(s);
    }
    cd__stmt_done(s);
    rc = cd__tx_end(c, rc, err);
unlock:
    cd__conn_release(c);
    if (rc != CD_OK)
        cd_item_refs_finish(refs, n);
    return rc;
}

/* --- the change sequence ------------------------------------------------ */

/*
 * Steps the scan statement s (bound) and hands fn its rows up to `batch`
 * at a time.  The buffers grow with the rows seen, so a large batch for
 * a small gallery costs no more than the gallery.
 */
static cd_err scan_rows(cd_conn *c, sqlite3_stmt *s, int64_t model_id,
                        int dim, size_t batch, cd_scan_fn fn, void *ctx,
                        cd_error *err)
{
    size_t bytes = (size_t)dim * sizeof(float);
    int64_t *rowids = NULL;
    float *vectors = NULL;
    size_t n = 0, cap = 0;
    cd_err rc = CD_OK;
    int step = SQLITE_DONE;
    while (rc == CD_OK && (step = sqlite3_step(s)) == SQLITE_ROW) {
        if (n == cap) {
            size_t ncap = cap ? cap * 2 : 256;
            if (ncap > batch)
                ncap = batch;
            int64_t *r = realloc(rowids, ncap * sizeof *r);
            if (r)
                rowids = r;
            float *v = r ? realloc(vectors, ncap * bytes) : NULL;
            if (!v) {
                rc = cd__fail(err, CD_ENOMEM, "out of memory for a scan batch");
                break;
            }
            vectors = v;
            cap = ncap;
        }
        int64_t rowid = sqlite3_column_int64(s, 0);
        const void *blob = sqlite3_column_blob(s, 1);
        size_t have = (size_t)sqlite3_column_bytes(s, 1);
        if (!blob || have != bytes) {
            rc = cd__fail(err, CD_ECORRUPT,
                          "embedding of item rowid %lld, model %lld has %zu "
                          "bytes, not %zu",
                          (long long)rowid, (long long)model_id, have, bytes);
            break;
        }
        rowids[n] = rowid;
        memcpy(vectors + n * (size_t)dim, blob, bytes);
        if (++n == batch) {
            rc = fn(ctx, rowids, vectors, n);
            n = 0;
        }
    }
    if (rc == CD_OK && step != SQLITE_DONE)
        rc = cd__db_fail(err, c, step);
    else if (rc == CD_OK && n)
        rc = fn(ctx, rowids, vectors, n);
    free(rowids);
    free(vectors);
    return rc;
}

cd_err cd_store_scan_vectors(cd_store *st, int64_t gallery_id,
                             int64_t model_id, int dim, int64_t after_seq,
                             size_t batch, cd_scan_fn fn, void *ctx,
                             int64_t *max_seq_out, cd_error *err)
{
    if (max_seq_out)
        *max_seq_out = 0;
    /* Cleared so that a failing fn's code can be told from ours below. */
    cd_error_clear(err);
    if (!st || !fn)
        return cd__fail(err, CD_EINVAL, "cd_store_scan_vectors: NULL argument");
    if (dim < 1 || dim > CD_DIM_MAX)
        return cd__fail(err, CD_EINVAL, "dim %d is not within 1..%d", dim,
                        CD_DIM_MAX);
    if (batch == 0 || batch > SIZE_MAX / sizeof(float) / (size_t)dim)
        return cd__fail(err, CD_EINVAL, "scan batch %zu is out of range", batch);

    int64_t seq = 0;
    bool found;
    sqlite3_stmt *s = NULL;
    cd_conn *c = cd__reader_acquire(st);
    cd_err rc = cd__tx_begin(c, false, err);
    if (rc != CD_OK)
        goto unlock;
    rc = cd__run_i64(c, ST_GALLERY_SEQ, 1, gallery_id, 0, &found, &seq, err);
    if (rc == CD_OK && !found)
        rc = cd__fail(err, CD_ENOTFOUND, "gallery %lld not found",
                      (long long)gallery_id);
    if (rc == CD_OK)
        rc = cd__conn_stmt(c, ST_SCAN, &s, err);
    if (rc == CD_OK) {
        sqlite3_bind_int64(s, 1, gallery_id);
        sqlite3_bind_int64(s, 2, model_id);
        sqlite3_bind_int64(s, 3, after_seq);
        rc = scan_rows(c, s, model_id, dim, batch, fn, ctx, err);
        if (rc != CD_OK && err && err->code == CD_OK)
            cd__fail(err, rc, "scan stopped: %s", cd_strerror(rc));
        cd__stmt_done(s);
    }
    rc = cd__tx_end(c, rc, err);
unlock:
    cd__conn_release(c);
    if (rc == CD_OK && max_seq_out)
        *max_seq_out = seq;
    return rc;
}

cd_err cd_store_tombstones(cd_store *st, int64_t gallery_id,
                           int64_t after_seq, int64_t **out, size_t *n,
                           cd_error *err)
{
    if (!out || !n)
        return cd__fail(err, CD_EINVAL, "cd_store_tombstones: NULL argument");
    *out = NULL;
    *n = 0;
    if (!st)
        return cd__fail(err, CD_EINVAL, "cd_store_tombstones: NULL store");
    int64_t *rows = NULL;
    size_t count = 0, cap = 0;
    cd_conn *c = cd__reader_acquire(st);
    sqlite3_stmt *s;
    cd_err rc = cd__conn_stmt(c, ST_TOMBSTONES, &s, err);
    if (rc != CD_OK)
        goto unlock;
    sqlite3_bind_int64(s, 1, gallery_id);
    sqlite3_bind_int64(s, 2, after_seq);
    int step;
    while ((step = sqlite3_step(s)) == SQLITE_ROW) {
        if (count == cap) {
            size_t ncap = cap ? cap * 2 : 64;
            int64_t *grown = realloc(rows, ncap * sizeof *grown);
            if (!grown) {
                rc = cd__fail(err, CD_ENOMEM, "out of memory reading tombstones");
                break;
            }
            rows = grown;
            cap = ncap;
        }
        rows[count++] = sqlite3_column_int64(s, 0);
    }
    if (rc == CD_OK && step != SQLITE_DONE)
        rc = cd__db_fail(err, c, step);
    cd__stmt_done(s);
unlock:
    cd__conn_release(c);
    if (rc != CD_OK) {
        free(rows);
        return rc;
    }
    *out = rows;
    *n = count;
    return CD_OK;
}

cd_err cd_store_tombstones_prune(cd_store *st, int64_t gallery_id,
                                 int64_t upto, cd_error *err)
{
    if (!st)
        return cd__fail(err, CD_EINVAL, "cd_store_tombstones_prune: NULL store");
    cd_conn *c = cd__writer_acquire(st);
    cd_err rc = cd__run_i64(c, ST_TOMBSTONES_PRUNE, 2, gallery_id, upto, NULL,
                            NULL, err);
    cd__conn_release(c);
    return rc;
}

cd_err cd_store_count_vectors(cd_store *st, int64_t gallery_id,
                              int64_t model_id, int64_t *out, cd_error *err)
{
    if (!out)
        return cd__fail(err, CD_EINVAL, "cd_store_count_vectors: out is NULL");
    *out = 0;
    if (!st)
        return cd__fail(err, CD_EINVAL, "cd_store_count_vectors: NULL store");
    cd_conn *c = cd__reader_acquire(st);
    cd_err rc = cd__run_i64(c, ST_COUNT_VECTORS, 2, gallery_id, model_id, NULL,
                            out, err);
    cd__conn_release(c);
    return rc;
}

cd_err cd_store_scan_rowids(cd_store *st, int64_t gallery_id,
                            int64_t model_id, size_t batch, cd_scan_fn fn,
                            void *ctx, cd_error *err)
{
    if (!st || !fn || batch == 0)
        return cd__fail(err, CD_EINVAL, "cd_store_scan_rowids: bad argument");
    int64_t *rowids = malloc(batch * sizeof *rowids);
    if (!rowids)
        return cd__fail(err, CD_ENOMEM, "out of memory for a scan batch");
    sqlite3_stmt *s = NULL;
    cd_conn *c = cd__reader_acquire(st);
    cd_err rc = cd__tx_begin(c, false, err);
    if (rc != CD_OK)
        goto unlock;
    rc = cd__conn_stmt(c, ST_SCAN_ROWIDS, &s, err);
    if (rc == CD_OK) {
        sqlite3_bind_int64(s, 1, gallery_id);
        sqlite3_bind_int64(s, 2, model_id);
        size_t n = 0;
        int step;
        while (rc == CD_OK && (step = sqlite3_step(s)) == SQLITE_ROW) {
            rowids[n++] = sqlite3_column_int64(s, 0);
            if (n == batch) {
                rc = fn(ctx, rowids, NULL, n);
                n = 0;
            }
        }
        if (rc == CD_OK && step != SQLITE_DONE)
            rc = cd__db_fail(err, c, step);
        else if (rc == CD_OK && n)
            rc = fn(ctx, rowids, NULL, n);
        cd__stmt_done(s);
    }
    rc = cd__tx_end(c, rc, err);
unlock:
    cd__conn_release(c);
    free(rowids);
    return rc;
}

/* --- paired embeddings (adapters) ---------------------------------------- */

/* Grows *a and *b to cap rows of abytes and bbytes each; false when out of
 * memory (both stay valid). */
static bool pairs_grow(float **a, float **b, size_t cap, size_t abytes, size_t bbytes)
{
    float *na = realloc(*a, cap * abytes);
    if (na)
        *a = na;
    float *nb = na ? realloc(*b, cap * bbytes) : NULL;
    if (nb)
        *b = nb;
    return na && nb;
}

cd_err cd_store_paired_vectors(cd_store *st, int64_t gallery_id,
                               int64_t from_id, int dim_from, int64_t to_id,
                               int dim_to, float **a, float **b, size_t *n,
                               cd_error *err)
{
    *a = *b = NULL;
    *n = 0;
    if (!st || dim_from < 1 || dim_from > CD_DIM_MAX || dim_to < 1 || dim_to > CD_DIM_MAX)
        return cd__fail(err, CD_EINVAL, "cd_store_paired_vectors: bad argument");
    size_t abytes = (size_t)dim_from * sizeof(float);
    size_t bbytes = (size_t)dim_to * sizeof(float);
    size_t cap = 0, count = 0;
    float *va = NULL, *vb = NULL;
    sqlite3_stmt *s = NULL;
    cd_conn *c = cd__reader_acquire(st);
    cd_err rc = cd__tx_begin(c, false, err);
    if (rc != CD_OK)
        goto unlock;
    rc = cd__conn_stmt(c, ST_PAIRED_VECTORS, &s, err);
    if (rc != CD_OK)
        goto end;
    sqlite3_bind_int64(s, 1, gallery_id);
    sqlite3_bind_int64(s, 2, from_id);
    sqlite3_bind_int64(s, 3, to_id);
    int step;
    while ((step = sqlite3_step(s)) == SQLITE_ROW) {
        if (count == cap) {
            cap = cap ? 2 * cap : 1024;
            if (!pairs_grow(&va, &vb, cap, abytes, bbytes)) {
                rc = cd__fail(err, CD_ENOMEM, "out of memory loading the gallery's pairs");
                break;
            }
        }
        const void *x = sqlite3_column_blob(s, 0);
        const void *y = sqlite3_column_blob(s, 1);
        if (!x || !y || (size_t)sqlite3_column_bytes(s, 0) != abytes ||
            (size_t)sqlite3_column_bytes(s, 1) != bbytes) {
            rc = cd__fail(err, CD_ECORRUPT, "an embedding of gallery %lld has the wrong size",
                          (long long)gallery_id);
            break;
        }
        memcpy(va + count * (size_t)dim_from, x, abytes);
        memcpy(vb + count * (size_t)dim_to, y, bbytes);
        count++;
    }
    if (rc == CD_OK && step != SQLITE_DONE)
        rc = cd__db_fail(err, c, step);
end:
    cd__stmt_done(s);
    rc = cd__tx_end(c, rc, err);
unlock:
    cd__conn_release(c);
    if (rc != CD_OK || count == 0) {
        free(va);
        free(vb);
        return rc;
    }
    *a = va;
    *b = vb;
    *n = count;
    return CD_OK;
}

/* --- what filters read --------------------------------------------------- */

/* Grows *vals to hold one more member. */
static bool fields_room(cd_field_value **vals, char ***texts, size_t n,
                        size_t *cap)
{
    if (n < *cap)
        return true;
    size_t ncap = *cap ? *cap * 2 : 16;
    cd_field_value *v = realloc(*vals, ncap * sizeof *v);
    if (v)
        *vals = v;
    char **t = v ? realloc(*texts, 2 * ncap * sizeof *t) : NULL;
    if (!t)
        return false;
    *texts = t;
    *cap = ncap;
    return true;
}

/*
 * Steps s (bound) over rows (rowid, label, key, type, atom), grouped by
 * rowid, and hands fn each item.
 */
static cd_err fields_rows(cd_conn *c, sqlite3_stmt *s, cd_item_fields_fn fn,
                          void *ctx, cd_error *err)
{
    cd_field_value *vals = NULL;
    char **texts = NULL;        /* the strings vals point to: 2 per member */
    size_t n = 0, cap = 0;
    char *label = NULL;
    int64_t cur = -1;
    cd_err rc = CD_OK;
    int step;
    for (;;) {
        step = sqlite3_step(s);
        int64_t rowid = step == SQLITE_ROW ? sqlite3_column_int64(s, 0) : -1;
        if (cur >= 0 && rowid != cur) {
            rc = fn(ctx, cur, label, vals, n);
            for (size_t i = 0; i < 2 * n; i++)
                free(texts[i]);
            free(label);
            label = NULL;
            n = 0;
            cur = -1;
            if (rc != CD_OK)
                break;
        }
        if (step != SQLITE_ROW)
            break;
        if (cur < 0) {
            cur = rowid;
            rc = cd__dup_column(s, 1, &label, err);
            if (rc != CD_OK)
                break;
        }
        if (sqlite3_column_type(s, 2) == SQLITE_NULL)
            continue;   /* no metadata member */
        if (!fields_room(&vals, &texts, n, &cap)) {
            rc = cd__fail(err, CD_ENOMEM, "out of memory reading metadata");
            break;
        }
        const char *type = (const char *)sqlite3_column_text(s, 3);
        cd_field_value *v = &vals[n];
        memset(v, 0, sizeof *v);
        texts[2 * n] = texts[2 * n + 1] = NULL;
        rc = cd__dup_column(s, 2, &texts[2 * n], err);
        if (rc != CD_OK)
            break;
        v->name = texts[2 * n];
        if (!type || strcmp(type, "null") == 0) {
            v->type = CD_VALUE_NULL;
        } else if (strcmp(type, "true") == 0 || strcmp(type, "false") == 0) {
            v->type = CD_VALUE_BOOL;
            v->b = type[0] == 't';
        } else if (strcmp(type, "integer") == 0 || strcmp(type, "real") == 0) {
            v->type = CD_VALUE_NUMBER;
            v->num = sqlite3_column_double(s, 4);
        } else if (strcmp(type, "text") == 0) {
            v->type = CD_VALUE_STRING;
            rc = cd__dup_column(s, 4, &texts[2 * n + 1], err);
            v->str = texts[2 * n + 1] ? texts[2 * n + 1] : "";
        } else {
            v->type = CD_VALUE_OTHER;
        }
        n++;
        if (rc != CD_OK)
            break;
    }
    if (rc == CD_OK && step != SQLITE_DONE)
        rc = cd__db_fail(err, c, step);
    for (size_t i = 0; i < 2 * n; i++)
        free(texts[i]);
    free(label);
    free(texts);
    free(vals);
    return rc;
}

cd_err cd_store_item_fields(cd_store *st, int64_t gallery_id,
                            const int64_t *rowids, size_t n,
                            cd_item_fields_fn fn, void *ctx, cd_error *err)
{
    cd_conn *c = cd__reader_acquire(st);
    sqlite3_stmt *s = NULL;
    cd_err rc = cd__tx_begin(c, false, err);
    if (rc != CD_OK)
        goto unlock;
    rc = cd__conn_stmt(c, rowids ? ST_ITEM_FIELDS_ONE : ST_ITEM_FIELDS_ALL, &s, err);
    if (rc == CD_OK && !rowids) {
        sqlite3_bind_int64(s, 1, gallery_id);
        rc = fields_rows(c, s, fn, ctx, err);
    }
    for (size_t i = 0; rc == CD_OK && rowids && i < n; i++) {
        sqlite3_bind_int64(s, 1, rowids[i]);
        rc = fields_rows(c, s, fn, ctx, err);
        sqlite3_reset(s);
    }
    cd__stmt_done(s);
    rc = cd__tx_end(c, rc, err);
unlock:
    cd__conn_release(c);
    return rc;
}

cd_err cd_store_vectors_of(cd_store *st, int64_t gallery_id, int64_t model_id,
                           int dim, const int64_t *rowids, size_t n,
                           float *vectors, bool *found, cd_error *err)
{
    size_t bytes = (size_t)dim * sizeof(float);
    cd_conn *c = cd__reader_acquire(st);
    sqlite3_stmt *s = NULL;
    cd_err rc = cd__tx_begin(c, false, err);
    if (rc != CD_OK)
        goto unlock;
    rc = cd__conn_stmt(c, ST_EMBEDDING_ONE, &s, err);
    if (rc == CD_OK) {
        sqlite3_bind_int64(s, 1, gallery_id);
        sqlite3_bind_int64(s, 2, model_id);
    }
    for (size_t i = 0; rc == CD_OK && i < n; i++) {
        sqlite3_bind_int64(s, 3, rowids[i]);
        int step = sqlite3_step(s);
        found[i] = false;
        if (step == SQLITE_ROW) {
            const void *blob = sqlite3_column_blob(s, 0);
            if (!blob || (size_t)sqlite3_column_bytes(s, 0) != bytes)
                rc = cd__fail(err, CD_ECORRUPT, "embedding of item rowid %lld, model %lld "
                              "has %d bytes, not %zu", (long long)rowids[i],
                              (long long)model_id, sqlite3_column_bytes(s, 0), bytes);
            else
                memcpy(vectors + i * (size_t)dim, blob, bytes);
            found[i] = rc == CD_OK;
        } else if (step != SQLITE_DONE) {
            rc = cd__db_fail(err, c, step);
        }
        sqlite3_reset(s);
    }
    cd__stmt_done(s);
    rc = cd__tx_end(c, rc, err);
unlock:
    cd__conn_release(c);
    return rc;
}
