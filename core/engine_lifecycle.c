/*
 * engine_lifecycle.c - finishing an upgrade (SPEC.md §3.8): the backfill
 * queue and the traffic counts that order it, promotion of a backfilled
 * model to gallery model, and retirement of a model's embeddings.
 *
 * Traffic counts: per gallery, how many times each item (rowid) was in a
 * search's results, counted by the searches themselves under the
 * gallery's read lock and its own small mutex (one lock per search, a
 * hash-table increment per hit).  They are kept in memory and written
 * with the snapshots to DATA/index/g<gallery id>-traffic.bin (atomic
 * rename; bound to the store's identity and the gallery id), so they
 * survive a clean stop; a kill loses what was counted since the last
 * snapshot, which only shifts the queue's order.
 *
 * Every item has at least one embedding (an upsert writes one, and a
 * retirement refuses to take an item's last), so a gallery's items are
 * the union of its indexes' member sets, and the items lacking model M
 * are that union less M's members: the queue is read from memory.
 *
 * Promotion changes the gallery model, which search and upsert read under
 * the engine lock alone (cd_engine_request_model), so it swaps it under
 * the engine's write lock and the gallery's: no call sees it half done.
 * Lock order there: snap_mu, the engine lock, the gallery's lock, the
 * order a snapshot pass takes them in (it holds the engine lock only
 * while it copies the gallery list).
 */
#include "engine_int.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "idset.h"
#include "index.h"

#define TRAFFIC_MAGIC "cdtraf01"
#define TRAFFIC_HEADER (8 + CD_STORE_ID_LEN + 2 * 8)

/* --- traffic counts -------------------------------------------------- */

static size_t traffic_slot(const cd__traffic *t, int64_t rowid)
{
    uint64_t h = (uint64_t)rowid * 0x9E3779B97F4A7C15u;
    size_t at = (size_t)(h >> 17) & (t->cap - 1);
    while (t->keys[at] >= 0 && t->keys[at] != rowid)
        at = (at + 1) & (t->cap - 1);
    return at;
}

/* Room for one more key; false when out of memory (t unchanged). */
static bool traffic_reserve(cd__traffic *t)
{
    if (t->cap && (t->len + 1) * 2 <= t->cap)
        return true;
    size_t cap = t->cap ? t->cap * 2 : 1024;
    cd__traffic grown = {calloc(cap, sizeof(int64_t)), calloc(cap, sizeof(int64_t)),
                         cap, t->len, t->dirty};
    if (!grown.keys || !grown.counts) {
        free(grown.keys);
        free(grown.counts);
        return false;
    }
    memset(grown.keys, 0xff, cap * sizeof(int64_t));   /* -1: free */
    for (size_t i = 0; i < t->cap; i++) {
        if (t->keys[i] < 0)
            continue;
        size_t at = traffic_slot(&grown, t->keys[i]);
        grown.keys[at] = t->keys[i];
        grown.counts[at] = t->counts[i];
    }
    free(t->keys);
    free(t->counts);
    *t = grown;
    return true;
}

/* Adds n to rowid's count; false when out of memory. */
static bool traffic_add(cd__traffic *t, int64_t rowid, int64_t n)
{
    if (!traffic_reserve(t))
        return false;
    size_t at = traffic_slot(t, rowid);
    if (t->keys[at] < 0) {
        t->keys[at] = rowid;
        t->len++;
    }
    t->counts[at] += n;
    t->dirty = true;
    return true;
}

static int64_t traffic_get(const cd__traffic *t, int64_t rowid)
{
    if (!t->cap)
        return 0;
    size_t at = traffic_slot(t, rowid);
    return t->keys[at] == rowid ? t->counts[at] : 0;
}

void cd__traffic_finish(cd__traffic *t)
{
    if (!t)
        return;
    free(t->keys);
    free(t->counts);
    memset(t, 0, sizeof *t);
}

void cd__traffic_note(gallery *g, const int64_t *ids, size_t n)
{
    pthread_mutex_lock(&g->traffic_mu);
    for (size_t i = 0; i < n; i++)
        if (ids[i] >= 0)
            traffic_add(&g->traffic, ids[i], 1);    /* a count lost to OOM
                                                       only shifts order */
    pthread_mutex_unlock(&g->traffic_mu);
}

static char *traffic_path(cd_engine *e, int64_t gallery_id)
{
    return cd__str_printf("%s/g%" PRId64 "-traffic.bin", e->index_dir, gallery_id);
}

void cd__traffic_remove(cd_engine *e, int64_t gallery_id)
{
    char *path = traffic_path(e, gallery_id);
    if (path)
        unlink(path);
    free(path);
}

/* True when rowid is an item of g (has an embedding of some model). */
static bool is_item(const gallery *g, int64_t rowid)
{
    for (size_t i = 0; i < g->n_indexes; i++)
        if (cd__idset_contains(&g->indexes[i].members, rowid))
            return true;
    return false;
}

/* Writes n (rowid, count) rows to path atomically (tmp file, rename). */
static cd_err traffic_write(cd_engine *e, int64_t gallery_id, const char *path,
                            const int64_t *rows, int64_t n, cd_error *err)
{
    char *tmp = cd__str_printf("%s.tmp", path);
    FILE *f = tmp ? fopen(tmp, "wb") : NULL;
    if (!f) {
        cd_err rc = tmp ? cd__fail(err, CD_EIO, "cannot write %s: %s", tmp, strerror(errno))
                        : cd__fail(err, CD_ENOMEM, "out of memory");
        free(tmp);
        return rc;
    }
    int64_t head[2] = {gallery_id, n};
    bool ok = fwrite(TRAFFIC_MAGIC, 1, 8, f) == 8 &&
              fwrite(e->store_id, 1, CD_STORE_ID_LEN, f) == CD_STORE_ID_LEN &&
              fwrite(head, sizeof head, 1, f) == 1 &&
              (n == 0 || fwrite(rows, 2 * sizeof *rows, (size_t)n, f) == (size_t)n);
    ok = ok && fflush(f) == 0 && fsync(fileno(f)) == 0;
    ok = fclose(f) == 0 && ok;
    cd_err rc = CD_OK;
    if (!ok || rename(tmp, path) != 0) {
        rc = cd__fail(err, CD_EIO, "cannot write %s: %s", path, strerror(errno));
        unlink(tmp);
    }
    free(tmp);
    return rc;
}

cd_err cd__traffic_save(cd_engine *e, gallery *g, cd_error *err)
{
    /* The counts are copied under the mutex and written without it, so
     * that searches go on counting while the file is synced.  Deleted
     * items' counts are dropped here: rowids are never reused. */
    pthread_mutex_lock(&g->traffic_mu);
    if (!g->traffic.dirty) {
        pthread_mutex_unlock(&g->traffic_mu);
        return CD_OK;
    }
    int64_t *rows = malloc((g->traffic.len ? g->traffic.len : 1) * 2 * sizeof *rows);
    int64_t n = 0;
    for (size_t i = 0; rows && i < g->traffic.cap; i++) {
        if (g->traffic.keys[i] < 0 || !is_item(g, g->traffic.keys[i]))
            continue;
        rows[2 * n] = g->traffic.keys[i];
        rows[2 * n + 1] = g->traffic.counts[i];
        n++;
    }
    g->traffic.dirty = !rows;
    pthread_mutex_unlock(&g->traffic_mu);
    if (!rows)
        return cd__fail(err, CD_ENOMEM, "out of memory");
    char *path = traffic_path(e, g->info.id);
    cd_err rc = path ? traffic_write(e, g->info.id, path, rows, n, err)
                     : cd__fail(err, CD_ENOMEM, "out of memory");
    if (rc != CD_OK) {
        pthread_mutex_lock(&g->traffic_mu);
        g->traffic.dirty = true;    /* the next pass tries again */
        pthread_mutex_unlock(&g->traffic_mu);
    }
    free(path);
    free(rows);
    return rc;
}

void cd__traffic_load(cd_engine *e, gallery *g)
{
    char *path = traffic_path(e, g->info.id);
    FILE *f = path ? fopen(path, "rb") : NULL;
    if (!f) {
        free(path);
        return;
    }
    unsigned char head[TRAFFIC_HEADER];
    int64_t fields[2];
    bool ok = fread(head, sizeof head, 1, f) == 1 && memcmp(head, TRAFFIC_MAGIC, 8) == 0 &&
              memcmp(head + 8, e->store_id, CD_STORE_ID_LEN) == 0;
    if (ok) {
        memcpy(fields, head + 8 + CD_STORE_ID_LEN, sizeof fields);
        ok = fields[0] == g->info.id && fields[1] >= 0;
    }
    pthread_mutex_lock(&g->traffic_mu);
    for (int64_t i = 0; ok && i < fields[1]; i++) {
        int64_t row[2];
        ok = fread(row, sizeof row, 1, f) == 1 && row[0] >= 0 && row[1] >= 0 &&
             traffic_add(&g->traffic, row[0], row[1]);
    }
    if (!ok) {
        cd__elog(e, CD_LOG_WARN, "gallery %s: %s is not this gallery's traffic counts; "
                 "they start from zero", g->info.name, path);
        cd__traffic_finish(&g->traffic);
    }
    g->traffic.dirty = false;
    pthread_mutex_unlock(&g->traffic_mu);
    fclose(f);
    free(path);
}

/* --- the backfill queue ---------------------------------------------- */

void cd_backfill_page_finish(cd_backfill_page *p)
{
    if (!p)
        return;
    for (size_t i = 0; i < p->n; i++) {
        free(p->list[i].id);
        free(p->list[i].label);
    }
    free(p->list);
    memset(p, 0, sizeof *p);
}

/* An item lacking the model, as the queue orders it. */
typedef struct queued {
    int64_t rowid;
    int64_t hits;
} queued;

static int by_traffic(const void *a, const void *b)
{
    const queued *x = a, *y = b;
    if (x->hits != y->hits)
        return x->hits > y->hits ? -1 : 1;
    return (x->rowid > y->rowid) - (x->rowid < y->rowid);
}

static int by_rowid(const void *a, const void *b)
{
    const queued *x = a, *y = b;
    return (x->rowid > y->rowid) - (x->rowid < y->rowid);
}

/* True when q comes after the cursor in the order. */
static bool after_cursor(const queued *q, cd_backfill_order order,
                         const cd_backfill_cursor *c)
{
    if (!c || c->rowid <= 0)
        return true;
    if (order == CD_BACKFILL_ID || q->hits == c->hits)
        return q->rowid > c->rowid;
    return q->hits < c->hits;
}

/* A bounded selection of the first `cap` items in queue order: a heap
 * whose top is the last of those kept. */
typedef struct selection {
    queued *heap;
    size_t len, cap;
    int (*cmp)(const void *, const void *);
} selection;

static void sift_down(selection *s, size_t i)
{
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, top = i;
        if (l < s->len && s->cmp(&s->heap[l], &s->heap[top]) > 0)
            top = l;
        if (r < s->len && s->cmp(&s->heap[r], &s->heap[top]) > 0)
            top = r;
        if (top == i)
            return;
        queued t = s->heap[i];
        s->heap[i] = s->heap[top];
        s->heap[top] = t;
        i = top;
    }
}

static void select_offer(selection *s, queued q)
{
    if (s->len < s->cap) {
        size_t i = s->len++;
        s->heap[i] = q;
        while (i > 0 && s->cmp(&s->heap[(i - 1) / 2], &s->heap[i]) < 0) {
            queued t = s->heap[i];
            s->heap[i] = s->heap[(i - 1) / 2];
            s->heap[(i - 1) / 2] = t;
            i = (i - 1) / 2;
        }
    } else if (s->cap > 0 && s->cmp(&q, &s->heap[0]) < 0) {
        s->heap[0] = q;
        sift_down(s, 0);
    }
}

/*
 * The items of g lacking model_id: *missing of them in all (*items: the
 * gallery's items), *after of them after the cursor, of which the first
 * `keep` in order go to *out (malloc'd, sorted, *n of them).  O(items +
 * after x log keep).  The caller holds g's lock.
 */
static cd_err collect_missing(gallery *g, int64_t model_id, cd_backfill_order order,
                              const cd_backfill_cursor *cursor, size_t keep, queued **out,
                              size_t *n, int64_t *after, int64_t *missing, int64_t *items,
                              cd_error *err)
{
    const gal_index *own = cd__index_slot(g, model_id);
    cd__idset seen = CD__IDSET_INIT;
    size_t others = 0;
    selection sel = {calloc(keep ? keep : 1, sizeof(queued)), 0, keep,
                     order == CD_BACKFILL_ID ? by_rowid : by_traffic};
    cd_err rc = sel.heap ? CD_OK : cd__fail(err, CD_ENOMEM, "out of memory");
    *missing = *after = 0;
    *items = own ? (int64_t)own->members.len : 0;
    for (size_t i = 0; i < g->n_indexes; i++)
        others += g->indexes[i].model.id != model_id;
    pthread_mutex_lock(&g->traffic_mu);
    for (size_t i = 0; i < g->n_indexes && rc == CD_OK; i++) {
        const cd__idset *m = &g->indexes[i].members;
        if (g->indexes[i].model.id == model_id)
            continue;
        for (size_t j = 0; j < m->cap && rc == CD_OK; j++) {
            int64_t rowid = m->slots[j];
            if (rowid < 0 || (own && cd__idset_contains(&own->members, rowid)))
                continue;
            /* With two other models an item may be in both sets. */
            if (others > 1 && !cd__idset_reserve(&seen, 1)) {
                rc = cd__fail(err, CD_ENOMEM, "out of memory");
                break;
            }
            if (others > 1 && !cd__idset_put(&seen, rowid))
                continue;
            (*missing)++;
            queued q = {rowid, traffic_get(&g->traffic, rowid)};
            if (!after_cursor(&q, order, cursor))
                continue;
            (*after)++;
            select_offer(&sel, q);
        }
    }
    pthread_mutex_unlock(&g->traffic_mu);
    cd__idset_finish(&seen);
    if (rc != CD_OK) {
        free(sel.heap);
        return rc;
    }
    qsort(sel.heap, sel.len, sizeof *sel.heap, sel.cmp);
    *items += *missing;
    *out = sel.heap;
    *n = sel.len;
    return CD_OK;
}

/*
 * cd__gallery_enter for a call on (gallery, model) once the indexes are
 * loaded: on success the caller holds the engine lock for reading (to
 * release), *g is the gallery and *m the model.
 */
static cd_err enter_with_model(cd_engine *e, const char *gallery_name, const char *model,
                               gallery **g, cd_model *m, cd_error *err)
{
    if (!cd_engine_ready(e))
        return cd__fail(err, CD_EBUSY, "indexes are still loading");
    cd_err rc = cd__gallery_enter(e, gallery_name, g, err);
    if (rc != CD_OK)
        return rc;
    rc = cd__model_by_name(e, model, m, err);
    if (rc != CD_OK)
        pthread_rwlock_unlock(&e->lock);
    return rc;
}

cd_err cd_engine_backfill(cd_engine *e, const char *gallery_name, const char *model,
                          cd_backfill_order order, const cd_backfill_cursor *after,
                          size_t limit, cd_backfill_page *out, cd_error *err)
{
    gallery *g;
    cd_model m;
    queued *list = NULL;
    size_t n = 0, take = 0;
    int64_t following = 0;
    int64_t *rowids = NULL;
    cd_item_ref *refs = NULL;
    memset(out, 0, sizeof *out);
    if (limit < 1 || limit > CD_BACKFILL_LIMIT_MAX)
        return cd__fail(err, CD_EINVAL, "limit must be 1..%d", CD_BACKFILL_LIMIT_MAX);
    cd_err rc = enter_with_model(e, gallery_name, model, &g, &m, err);
    if (rc != CD_OK)
        return rc;
    pthread_rwlock_rdlock(&g->lock);
    rc = cd__gallery_check(g, err);
    if (rc == CD_OK)
        rc = collect_missing(g, m.id, order, after, limit, &list, &n, &following,
                             &out->missing, &out->items, err);
    if (rc != CD_OK)
        goto out;
    take = n;
    out->more = following > (int64_t)take;
    rowids = malloc((take ? take : 1) * sizeof *rowids);
    refs = calloc(take ? take : 1, sizeof *refs);
    out->list = calloc(take ? take : 1, sizeof *out->list);
    if (!rowids || !refs || !out->list) {
        rc = cd__fail(err, CD_ENOMEM, "out of memory");
        goto out;
    }
    for (size_t i = 0; i < take; i++)
        rowids[i] = list[i].rowid;
    if (take)
        rc = cd_store_item_refs(e->st, rowids, take, true, false, refs, err);
    for (size_t i = 0; rc == CD_OK && i < take; i++) {
        if (!refs[i].id)
            continue;   /* the store holds every item the indexes do */
        cd_backfill_item *it = &out->list[out->n++];
        it->id = refs[i].id;
        it->label = refs[i].label;
        it->rowid = list[i].rowid;
        it->hits = list[i].hits;
        refs[i].id = refs[i].label = NULL;
    }
    if (take) {
        out->last.rowid = list[take - 1].rowid;
        out->last.hits = list[take - 1].hits;
    }
out:
    pthread_rwlock_unlock(&g->lock);
    pthread_rwlock_unlock(&e->lock);
    if (refs)
        cd_item_refs_finish(refs, take);
    free(refs);
    free(rowids);
    free(list);
    if (rc != CD_OK)
        cd_backfill_page_finish(out);
    return rc;
}

/* --- promotion and retirement ---------------------------------------- */

/* Items of g without an embedding of model_id, from memory; the caller
 * holds g's lock. */
static cd_err count_missing(gallery *g, int64_t model_id, int64_t *missing,
                            cd_error *err)
{
    queued *list = NULL;
    size_t n = 0;
    int64_t items, after;
    cd_err rc = collect_missing(g, model_id, CD_BACKFILL_ID, NULL, 0, &list, &n, &after,
                                missing, &items, err);
    free(list);
    return rc;
}

cd_err cd_engine_gallery_promote(cd_engine *e, const char *gallery_name,
                                 const char *model, int64_t *missing,
                                 cd_error *err)
{
    gallery *g;
    cd_model m;
    int64_t lacking = 0;
    if (missing)
        *missing = 0;
    /* The common refusal first, without stopping every call: a gallery
     * still being backfilled. */
    cd_err rc = enter_with_model(e, gallery_name, model, &g, &m, err);
    if (rc != CD_OK)
        return rc;
    pthread_rwlock_rdlock(&g->lock);
    rc = cd__gallery_check(g, err);
    if (rc == CD_OK)
        rc = count_missing(g, m.id, &lacking, err);
    /* The gallery's index spec must serve the new model's dim, or the
     * next start would find the gallery unbuildable. */
    cd_error why;
    if (rc == CD_OK && cd_index_spec_check(g->info.index_spec, m.dim, &why) != CD_OK)
        rc = cd__fail(err, CD_EINVAL, "gallery %s's index \"%s\" cannot hold model %s (dim %d): "
                      "%s", g->info.name, g->info.index_spec, m.name, m.dim, why.message);
    pthread_rwlock_unlock(&g->lock);
    pthread_rwlock_unlock(&e->lock);
    if (rc == CD_OK && lacking > 0)
        rc = cd__fail(err, CD_ECONFLICT, "backfill of model %s on gallery %s is incomplete: "
                      "%" PRId64 " items have no %s embedding", m.name, gallery_name, lacking,
                      m.name);
    if (rc != CD_OK)
        goto out;

    /* The swap: no call is inside any gallery while the engine lock is
     * held for writing.  A snapshot pass holds galleries' locks without
     * it, for as long as writing takes: waiting for the pass to end
     * before taking the engine lock keeps every call from waiting too. */
    pthread_mutex_lock(&e->snap_mu);
    pthread_rwlock_wrlock(&e->lock);
    g = cd__gallery_find(e, gallery_name);
    if (!g) {
        pthread_rwlock_unlock(&e->lock);
        pthread_mutex_unlock(&e->snap_mu);
        return cd__fail(err, CD_ENOTFOUND, "gallery \"%s\" not found", gallery_name);
    }
    pthread_rwlock_wrlock(&g->lock);
    rc = cd__gallery_check(g, err);
    if (rc == CD_OK && g->model.id != m.id) {
        /* The store counts again inside its transaction: it, not memory,
         * is what a restart reads. */
        rc = cd_store_gallery_promote(e->st, g->info.id, m.id, &lacking, err);
        if (rc == CD_OK) {
            cd__elog(e, CD_LOG_INFO, "gallery %s: model %s promoted to gallery model (was %s)",
                     g->info.name, m.name, g->model.name);
            g->model = m;
            g->info.model_id = m.id;
            snprintf(g->info.model, sizeof g->info.model, "%s", m.name);
            pthread_mutex_lock(&g->overlap_mu);
            g->overlap_model = 0;   /* counted against the former model */
            pthread_mutex_unlock(&g->overlap_mu);
            /* Live agreement compared with the former gallery model's
             * answers: it starts over against the new one. */
            cd_live_forget(e->live, gallery_name);
        } else if (rc == CD_ECONFLICT) {
            rc = cd__fail(err, CD_ECONFLICT, "backfill of model %s on gallery %s is "
                          "incomplete: %" PRId64 " items have no %s embedding", m.name,
                          gallery_name, lacking, m.name);
        }
    }
    pthread_rwlock_unlock(&g->lock);
    pthread_rwlock_unlock(&e->lock);
    pthread_mutex_unlock(&e->snap_mu);
out:
    if (missing && rc == CD_ECONFLICT)
        *missing = lacking;
    return rc;
}

/* Items of g whose only embedding is of gi's model; the caller holds g's
 * lock. */
static int64_t only_in(const gallery *g, const gal_index *gi)
{
    int64_t n = 0;
    for (size_t j = 0; j < gi->members.cap; j++) {
        int64_t rowid = gi->members.slots[j];
        if (rowid < 0)
            continue;
        bool elsewhere = false;
        for (size_t i = 0; i < g->n_indexes && !elsewhere; i++)
            elsewhere = &g->indexes[i] != gi &&
                        cd__idset_contains(&g->indexes[i].members, rowid);
        n += !elsewhere;
    }
    return n;
}

cd_err cd_engine_embeddings_retire(cd_engine *e, const char *gallery_name,
                                   const char *model, int64_t *deleted,
                                   cd_error *err)
{
    gallery *g;
    cd_model m;
    int64_t n = 0;
    if (deleted)
        *deleted = 0;
    cd_err rc = enter_with_model(e, gallery_name, model, &g, &m, err);
    if (rc != CD_OK)
        return rc;
    pthread_rwlock_wrlock(&g->lock);
    gal_index *gi = cd__index_slot(g, m.id);
    int64_t alone = gi ? only_in(g, gi) : 0;
    rc = cd__gallery_check(g, err);
    if (rc == CD_OK && m.id == g->model.id)
        rc = cd__fail(err, CD_ECONFLICT, "model %s is the gallery model of %s: promote "
                      "another model first", m.name, g->info.name);
    else if (rc == CD_OK && alone > 0)
        rc = cd__fail(err, CD_ECONFLICT, "%" PRId64 " items of gallery %s have no embedding "
                      "but of model %s: upsert their %s embeddings or delete them first",
                      alone, g->info.name, m.name, g->model.name);
    if (rc == CD_OK) {
        rc = cd_store_embeddings_retire(e->st, g->info.id, m.id, &n, err);
        if (rc == CD_ECONFLICT) {
            char why[CD_ERRMSG_MAX]; /* cd__fail writes over err->message */
            snprintf(why, sizeof why, "%s", err ? err->message : "");
            rc = cd__fail(err, CD_ECONFLICT, "model %s is needed by gallery %s's adapter "
                          "routes (%s): remove the route first", m.name, g->info.name, why);
        }
    }
    if (rc == CD_OK && gi) {
        cd_index_destroy(gi->ix);
        cd__idset_finish(&gi->members);
        *gi = g->indexes[--g->n_indexes];
        cd__snapshot_remove(e, g->info.id, m.id);
        pthread_mutex_lock(&g->overlap_mu);
        g->overlap_model = 0;
        pthread_mutex_unlock(&g->overlap_mu);
    }
    if (rc == CD_OK)
        cd__elog(e, CD_LOG_INFO, "gallery %s: %" PRId64 " embeddings of model %s retired",
                 g->info.name, n, m.name);
    pthread_rwlock_unlock(&g->lock);
    pthread_rwlock_unlock(&e->lock);
    if (rc != CD_OK)
        return rc;
    if (deleted)
        *deleted = n;
    /* Committed: a failure to shrink the file is logged, not the call's
     * (the space is free for SQLite to reuse either way). */
    cd_error rerr;
    if (n > 0 && cd_store_reclaim(e->st, &rerr) != CD_OK)
        cd__elog(e, CD_LOG_WARN, "retiring model %s from gallery %s: space not given back: %s",
                 m.name, gallery_name, rerr.message);
    return CD_OK;
}
