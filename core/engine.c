/*
 * engine.c - the store and the in-memory indexes kept in step.
 *
 * Invariants:
 * - SQLite is the truth.  A gallery's indexes hold exactly the embeddings
 *   the store holds for that gallery, as of the gallery's `seq`: every
 *   write commits, then is applied to the indexes, both under the
 *   gallery's write lock, so no reader sees the index between the two and
 *   two writers cannot apply in another order than they committed.
 * - Lock order: the engine's rwlock (gallery list), then one gallery's
 *   rwlock.  Creating or deleting a gallery takes the engine lock for
 *   writing, which waits until no call is inside any gallery.  The engine
 *   lock prefers writers so that a stream of searches cannot starve them,
 *   so nothing may hold it for long: a snapshot pass holds it only to
 *   copy the list (each gallery held by a reference, `refs`) and then
 *   writes one gallery at a time under that gallery's lock alone.  A
 *   promotion, which changes a gallery model that calls read under the
 *   engine lock alone, takes snap_mu, the engine lock for writing, then
 *   the gallery's (engine_lifecycle.c).
 *   The live-agreement table (core/live.c) has a mutex of its own, taken
 *   last and held for no other call.
 * - A snapshot file is DATA/index/g<gallery id>-m<model id>-s<seq>.faiss:
 *   the index of that model as of gallery seq <seq>.  The name is written
 *   by an atomic rename, so a file that exists is complete (or, if the
 *   disk lied, fails to load and is rebuilt).
 *
 * This file holds the engine's life (open, load, snapshot, close), models
 * and galleries; items, search and evaluations have a file each
 * (engine_items.c, engine_search.c, engine_eval.c), sharing engine_int.h.
 */
#include "engine_int.h"

#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "eval.h"
#include "idset.h"
#include "index.h"
#include "text.h"


/*
 * What a snapshot is bound to, saved with it as cd_index_save's meta:
 * SNAP_MAGIC, the store identity, gallery id, model id, seq and row count
 * (int64 each, native order like FAISS's own data), then per row its rowid
 * and cd_index_row_hash, in rowid order.  index_load serves a snapshot only
 * when all of it matches the store (snapshot_check).
 */
#define SNAP_MAGIC "cdsnap01"
#define SNAP_HEADER (8 + CD_STORE_ID_LEN + 4 * 8)

/* One (gallery, model) index. */

void cd__elog(cd_engine *e, int level, const char *fmt, ...)
{
    if (!e->cfg.log)
        return;
    char buf[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    e->cfg.log(e->cfg.log_ctx, level, buf);
}

char *cd__str_printf(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *s = NULL;
    if (vasprintf(&s, fmt, ap) < 0)
        s = NULL;
    va_end(ap);
    return s;
}

/* mkdir -p, the last directory private (0700), the ones above it 0755. */
static int mkdir_p(const char *path)
{
    char *tmp = strdup(path);
    if (!tmp)
        return -1;
    for (char *p = tmp + 1; *p; p++) {
        if (*p == '/') {
            *p = '\0';
            if (mkdir(tmp, 0755) != 0 && errno != EEXIST) {
                free(tmp);
                return -1;
            }
            *p = '/';
        }
    }
    int rc = mkdir(tmp, 0700);
    free(tmp);
    return rc != 0 && errno != EEXIST ? -1 : 0;
}

/* --- the model cache (models never change once created) -------------- */

cd_err cd__model_by_name(cd_engine *e, const char *name, cd_model *out,
                         cd_error *err)
{
    pthread_mutex_lock(&e->models_mu);
    for (size_t i = 0; i < e->n_models; i++) {
        if (strcmp(e->models[i].name, name) == 0) {
            *out = e->models[i];
            pthread_mutex_unlock(&e->models_mu);
            return CD_OK;
        }
    }
    pthread_mutex_unlock(&e->models_mu);
    cd_err rc = cd_store_model_get(e->st, name, out, err);
    if (rc != CD_OK)
        return rc;
    pthread_mutex_lock(&e->models_mu);
    cd_model *grown = realloc(e->models, (e->n_models + 1) * sizeof *grown);
    if (grown) {
        e->models = grown;
        e->models[e->n_models++] = *out;
    }
    pthread_mutex_unlock(&e->models_mu);
    return CD_OK;
}

/* --- galleries in memory --------------------------------------------- */

static void gallery_free(gallery *g)
{
    if (!g)
        return;
    for (size_t i = 0; i < g->n_indexes; i++) {
        cd_index_destroy(g->indexes[i].ix);
        cd__idset_finish(&g->indexes[i].members);
    }
    free(g->indexes);
    cd__traffic_finish(&g->traffic);
    cd_fields_destroy(g->fields);
    pthread_rwlock_destroy(&g->lock);
    pthread_mutex_destroy(&g->overlap_mu);
    pthread_mutex_destroy(&g->traffic_mu);
    pthread_mutex_destroy(&g->recall_mu);
    free(g);
}

static gallery *gallery_new(cd_engine *e, const cd_gallery *info,
                            cd_error *err)
{
    gallery *g = calloc(1, sizeof *g);
    if (!g) {
        cd__fail(err, CD_ENOMEM, "out of memory");
        return NULL;
    }
    g->info = *info;
    g->seq = info->seq;
    atomic_init(&g->refs, 1);
    atomic_init(&g->deleted, false);
    pthread_rwlock_init(&g->lock, NULL);
    pthread_mutex_init(&g->overlap_mu, NULL);
    pthread_mutex_init(&g->traffic_mu, NULL);
    g->fields = cd_fields_create();
    if (!g->fields) {
        cd__fail(err, CD_ENOMEM, "out of memory");
        gallery_free(g);
        return NULL;
    }
    pthread_mutex_init(&g->recall_mu, NULL);
    atomic_init(&g->changes, 0);
    atomic_init(&g->rebuilt, false);
    if (cd__model_by_name(e, info->model, &g->model, err) != CD_OK) {
        gallery_free(g);
        return NULL;
    }
    return g;
}

/* Drops a reference to g, freeing it with the last. */
static void gallery_unref(gallery *g)
{
    if (g && atomic_fetch_sub(&g->refs, 1) == 1)
        gallery_free(g);
}

/* The gallery called name; the caller holds e->lock. */
gallery *cd__gallery_find(cd_engine *e, const char *name)
{
    for (size_t i = 0; i < e->n_gals; i++)
        if (strcmp(e->gals[i]->info.name, name) == 0)
            return e->gals[i];
    return NULL;
}

/*
 * Takes the engine lock for reading and returns the gallery, or fails with
 * CD_ENOTFOUND (and releases the lock).  On success the caller must
 * pthread_rwlock_unlock(&e->lock) when done.
 */
cd_err cd__gallery_enter(cd_engine *e, const char *name, gallery **out,
                         cd_error *err)
{
    *out = NULL;
    pthread_rwlock_rdlock(&e->lock);
    gallery *g = cd__gallery_find(e, name);
    if (!g) {
        pthread_rwlock_unlock(&e->lock);
        return cd__fail(err, CD_ENOTFOUND, "gallery \"%s\" not found", name);
    }
    *out = g;
    return CD_OK;
}

/* CD_EUNAVAILABLE when g is; the caller holds g's lock. */
cd_err cd__gallery_check(const gallery *g, cd_error *err)
{
    if (!g->unavailable)
        return CD_OK;
    return cd__fail(err, CD_EUNAVAILABLE, "gallery \"%s\" is unavailable: %s",
                    g->info.name, g->why);
}

/*
 * Makes g unavailable because of what failed (why), frees its indexes, and
 * fails with CD_EUNAVAILABLE naming the gallery and the cause.  The caller
 * holds g's write lock (or is loading).  Searches and writes then fail the
 * same way (cd__gallery_check); reads of the store, evaluations and deleting
 * the gallery still work, and the next start tries to build it again.
 */
cd_err cd__gallery_fail(cd_engine *e, gallery *g, const char *why,
                        cd_error *err)
{
    if (!g->unavailable) {
        snprintf(g->why, sizeof g->why, "%s", why);
        g->unavailable = true;
        cd__elog(e, CD_LOG_ERROR, "gallery %s is unavailable: %s", g->info.name,
             g->why);
    }
    for (size_t i = 0; i < g->n_indexes; i++) {
        cd_index_destroy(g->indexes[i].ix);
        g->indexes[i].ix = NULL;
    }
    return cd__gallery_check(g, err);
}

/* The index slot of model_id in g, or NULL. */
gal_index *cd__index_slot(gallery *g, int64_t model_id)
{
    for (size_t i = 0; i < g->n_indexes; i++)
        if (g->indexes[i].model.id == model_id)
            return &g->indexes[i];
    return NULL;
}

/* The slot for model m, added (with no index yet) when missing. */
gal_index *cd__index_slot_add(gallery *g, const cd_model *m)
{
    gal_index *gi = cd__index_slot(g, m->id);
    if (gi)
        return gi;
    gal_index *grown = realloc(g->indexes, (g->n_indexes + 1) * sizeof *grown);
    if (!grown)
        return NULL;
    g->indexes = grown;
    gi = &g->indexes[g->n_indexes++];
    memset(gi, 0, sizeof *gi);
    gi->model = *m;
    gi->saved_seq = -1;
    return gi;
}

/* --- snapshots and rebuilds ------------------------------------------ */

static char *snapshot_path(cd_engine *e, const gallery *g,
                           const gal_index *gi, int64_t seq)
{
    return cd__str_printf("%s/g%" PRId64 "-m%" PRId64 "-s%" PRId64 ".faiss",
                      e->index_dir, g->info.id, gi->model.id, seq);
}

/*
 * Calls fn(path, seq) for each snapshot file of (gallery_id, model_id)
 * (model_id < 0: any model).
 */
static void snapshot_files(cd_engine *e, int64_t gallery_id, int64_t model_id,
                           void (*fn)(void *ctx, const char *path,
                                      int64_t model, int64_t seq),
                           void *ctx)
{
    DIR *d = opendir(e->index_dir);
    if (!d)
        return;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        int64_t gid, mid, seq;
        int used = 0;
        if (sscanf(de->d_name, "g%" SCNd64 "-m%" SCNd64 "-s%" SCNd64 ".faiss%n",
                   &gid, &mid, &seq, &used) != 3 ||
            de->d_name[used] != '\0' || used == 0)
            continue;
        if (gid != gallery_id || (model_id >= 0 && mid != model_id))
            continue;
        char *path = cd__str_printf("%s/%s", e->index_dir, de->d_name);
        if (path)
            fn(ctx, path, mid, seq);
        free(path);
    }
    closedir(d);
}

typedef struct newest_ctx {
    int64_t seq;
    char *path;
} newest_ctx;

static void pick_newest(void *ctx, const char *path, int64_t model,
                        int64_t seq)
{
    newest_ctx *n = ctx;
    if (seq > n->seq) {
        free(n->path);
        n->path = strdup(path);
        n->seq = seq;
    }
}

/* Removes the snapshot files of a (gallery, model) other than keep. */
typedef struct prune_ctx {
    const char *keep;
} prune_ctx;

static void remove_other(void *ctx, const char *path, int64_t model,
                         int64_t seq)
{
    prune_ctx *p = ctx;
    if (!p->keep || strcmp(path, p->keep) != 0)
        unlink(path);
}

/* Removes a snapshot of a model the gallery (ctx) has no index of: one a
 * retirement left when the daemon stopped between its commit and the
 * removal of the files. */
static void remove_orphan(void *ctx, const char *path, int64_t model, int64_t seq)
{
    if (!cd__index_slot(ctx, model))
        unlink(path);
}

void cd__snapshot_remove(cd_engine *e, int64_t gallery_id, int64_t model_id)
{
    prune_ctx p = {NULL};
    snapshot_files(e, gallery_id, model_id, remove_other, &p);
}

static cd_err add_batch(void *ctx, const int64_t *rowids,
                        const float *vectors, size_t n)
{
    cd_index *ix = ctx;
    cd_error err;
    return cd_index_add(ix, rowids, vectors, n, &err);
}

/*
 * Builds gi's index afresh from the store.  The caller holds the gallery's
 * write lock (or is loading).  On failure the old index stays.
 */
cd_err cd__index_rebuild(cd_engine *e, gallery *g, gal_index *gi,
                         cd_error *err)
{
    cd_index *ix = NULL;
    cd_err rc = cd_index_create(g->info.index_spec, gi->model.dim,
                                gi->model.metric, &ix, err);
    if (rc != CD_OK)
        return rc;
    rc = cd_store_scan_vectors(e->st, g->info.id, gi->model.id, gi->model.dim,
                               0, SCAN_BATCH, add_batch, ix, NULL, err);
    if (rc != CD_OK) {
        cd_index_destroy(ix);
        char why[CD_ERRMSG_MAX]; /* cd__fail writes over err->message */
        snprintf(why, sizeof why, "%s", err ? err->message : cd_strerror(rc));
        return cd__fail(err, rc, "rebuilding index of gallery \"%s\" model \"%s\": %s",
                        g->info.name, gi->model.name, why);
    }
    cd_index_destroy(gi->ix);
    gi->ix = ix;
    gi->dirty = true;
    gi->hidden = false;
    atomic_fetch_add(&e->rebuilds, 1);
    if (gi->model.id == g->model.id)
        atomic_store(&g->rebuilt, true);
    cd__elog(e, CD_LOG_INFO, "rebuilt index of gallery %s model %s: %" PRId64 " vectors",
         g->info.name, gi->model.name, cd_index_count(ix));
    return CD_OK;
}

/*
 * Brings a snapshot loaded at snap_seq up to the store's state: removes
 * tombstoned and rewritten rows, adds rows written since.  Only for index
 * types that can really remove.
 */
typedef struct catchup_ctx {
    cd_index *ix;
    cd_error *err;
} catchup_ctx;

static cd_err catchup_batch(void *ctx, const int64_t *rowids,
                            const float *vectors, size_t n)
{
    catchup_ctx *c = ctx;
    cd_err rc = cd_index_remove(c->ix, rowids, n, c->err);
    if (rc == CD_OK)
        rc = cd_index_add(c->ix, rowids, vectors, n, c->err);
    return rc;
}

static cd_err index_catch_up(cd_engine *e, gallery *g, gal_index *gi,
                             int64_t snap_seq, cd_error *err)
{
    int64_t *dead = NULL;
    size_t n_dead = 0;
    cd_err rc = cd_store_tombstones(e->st, g->info.id, snap_seq, &dead,
                                    &n_dead, err);
    if (rc != CD_OK)
        return rc;
    if (n_dead)
        rc = cd_index_remove(gi->ix, dead, n_dead, err);
    gi->hidden |= n_dead && !cd_index_can_remove(gi->ix);
    free(dead);
    if (rc != CD_OK)
        return rc;
    catchup_ctx c = {gi->ix, err};
    return cd_store_scan_vectors(e->st, g->info.id, gi->model.id,
                                 gi->model.dim, snap_seq, SCAN_BATCH,
                                 catchup_batch, &c, NULL, err);
}

cd_err cd__members_batch(void *ctx, const int64_t *rowids,
                         const float *vectors, size_t n)
{
    cd__idset *members = ctx;
    if (!cd__idset_reserve(members, n))
        return CD_ENOMEM;
    for (size_t i = 0; i < n; i++)
        cd__idset_put(members, rowids[i]);
    return CD_OK;
}

/*
 * Checks the store's file (cd_store_check) and, when it is damaged, logs
 * each problem found and fails CD_ECORRUPT with a message that names the
 * file and says what to do: nothing is served from a damaged database.
 */
static cd_err store_check(cd_engine *e, cd_error *err)
{
    cd_store_check_report r;
    cd_err rc = cd_store_check(e->db_path, &r, err);
    if (rc != CD_ECORRUPT)
        return rc;
    for (size_t i = 0; i < r.n_problems; i++)
        cd__elog(e, CD_LOG_ERROR, "%s is damaged: %s", e->db_path, r.problems[i]);
    return cd__fail(err, CD_ECORRUPT,
                    "DATABASE DAMAGED: %s is damaged: it fails its integrity check "
                    "(%.200s%s); refusing to serve it. `compatd check --data %s` lists the "
                    "problems; restore the data directory from a backup "
                    "(`compatd backup`)", e->db_path, r.problems[0],
                    r.n_problems > 1 ? ", ..." : "", e->data_dir);
}

/*
 * The store's check, run at most once per open (the verdict is kept):
 * before an index is rebuilt from the store, since a damaged b-tree can
 * end a scan early without an error and a rebuild would then serve part
 * of a gallery as the whole.
 */
static cd_err store_checked(cd_engine *e, cd_error *err)
{
    pthread_mutex_lock(&e->check_mu);
    if (!e->checked) {
        store_check(e, &e->check_err);
        e->checked = true;
    }
    cd_err rc = e->check_err.code;
    if (rc != CD_OK)
        cd__fail(err, rc, "%s", e->check_err.message);
    pthread_mutex_unlock(&e->check_mu);
    return rc;
}

/*
 * Row hashes of one scan of the store: their sum and count, and (keep) the
 * rows themselves, in scan (rowid) order, or (ids) the set of rowids.
 */
typedef struct row_hashes {
    int dim;
    bool keep;
    unsigned char *rows;    /* n * 16 bytes: rowid, hash */
    size_t n, cap;
    uint64_t sum;           /* modulo 2^64 */
    cd__idset *ids;         /* when not NULL, gets every rowid */
} row_hashes;

static cd_err hash_batch(void *ctx, const int64_t *rowids,
                         const float *vectors, size_t n)
{
    row_hashes *rh = ctx;
    if (rh->keep && rh->n + n > rh->cap) {
        size_t cap = rh->cap ? rh->cap * 2 : SCAN_BATCH;
        while (cap < rh->n + n)
            cap *= 2;
        unsigned char *grown = realloc(rh->rows, cap * 16);
        if (!grown)
            return CD_ENOMEM;
        rh->rows = grown;
        rh->cap = cap;
    }
    if (rh->ids && !cd__idset_reserve(rh->ids, n))
        return CD_ENOMEM;
    for (size_t i = 0; i < n; i++) {
        uint64_t h = cd_index_row_hash(rowids[i], vectors + i * (size_t)rh->dim,
                                       rh->dim);
        rh->sum += h;
        if (rh->keep) {
            memcpy(rh->rows + rh->n * 16, &rowids[i], 8);
            memcpy(rh->rows + rh->n * 16 + 8, &h, 8);
        }
        if (rh->ids)
            cd__idset_put(rh->ids, rowids[i]);
        rh->n++;
    }
    return CD_OK;
}

/* Hashes gi's rows in the store written after after_seq into rh. */
static cd_err hash_rows(cd_engine *e, gallery *g, gal_index *gi,
                        int64_t after_seq, row_hashes *rh, cd_error *err)
{
    rh->dim = gi->model.dim;
    return cd_store_scan_vectors(e->st, g->info.id, gi->model.id,
                                 gi->model.dim, after_seq, SCAN_BATCH,
                                 hash_batch, rh, NULL, err);
}

/*
 * Builds the meta saved with gi's snapshot at g->seq (see SNAP_MAGIC): the
 * store's rows are what the index holds, since the caller holds g's lock.
 * *out is malloc'd.
 */
static cd_err snapshot_meta(cd_engine *e, gallery *g, gal_index *gi,
                            unsigned char **out, size_t *len, cd_error *err)
{
    row_hashes rh = {.keep = true};
    *out = NULL;
    unsigned char *m = NULL;
    cd_err rc = hash_rows(e, g, gi, -1, &rh, err);
    if (rc != CD_OK)
        goto out;
    m = malloc(SNAP_HEADER + rh.n * 16);
    if (!m) {
        rc = cd__fail(err, CD_ENOMEM, "out of memory");
        goto out;
    }
    int64_t fields[4] = {g->info.id, gi->model.id, g->seq, (int64_t)rh.n};
    memcpy(m, SNAP_MAGIC, 8);
    memcpy(m + 8, e->store_id, CD_STORE_ID_LEN);
    memcpy(m + 8 + CD_STORE_ID_LEN, fields, sizeof fields);
    if (rh.n)
        memcpy(m + SNAP_HEADER, rh.rows, rh.n * 16);
    *out = m;
    *len = SNAP_HEADER + rh.n * 16;
out:
    free(rh.rows);
    return rc;
}

/*
 * Checks a snapshot of gi taken at snap_seq, holding `held` vectors,
 * against its meta and the store: the same store identity, gallery,
 * model and seq, and rows that are exactly the store's, where rows the
 * store changed since snap_seq (rewritten or deleted, which catch-up
 * replaces) are left out on both sides.  So a snapshot copied from another
 * gallery or data directory, or left from another history of a restored
 * database, is refused.  CD_ECORRUPT with what differs, CD_EIO/CD_ENOMEM
 * when the store cannot be read.
 */
static cd_err snapshot_check(cd_engine *e, gallery *g, gal_index *gi,
                             const unsigned char *meta, size_t len,
                             int64_t snap_seq, int64_t held, cd_error *err)
{
    int64_t f[4];
    if (len < SNAP_HEADER || memcmp(meta, SNAP_MAGIC, 8) != 0)
        return cd__fail(err, CD_ECORRUPT, "snapshot has no binding to a store");
    memcpy(f, meta + 8 + CD_STORE_ID_LEN, sizeof f);
    if (memcmp(meta + 8, e->store_id, CD_STORE_ID_LEN) != 0)
        return cd__fail(err, CD_ECORRUPT, "snapshot was written for store %.*s, "
                        "this is store %s", CD_STORE_ID_LEN, (const char *)meta + 8,
                        e->store_id);
    if (f[0] != g->info.id || f[1] != gi->model.id || f[2] != snap_seq)
        return cd__fail(err, CD_ECORRUPT, "snapshot was written for gallery id %"
                        PRId64 " model id %" PRId64 " seq %" PRId64, f[0], f[1], f[2]);
    if (f[3] < 0 || (len - SNAP_HEADER) % 16 != 0 ||
        (size_t)f[3] != (len - SNAP_HEADER) / 16 || f[3] != held)
        return cd__fail(err, CD_ECORRUPT, "snapshot holds %" PRId64 " vectors, "
                        "its binding lists %" PRId64, held, f[3]);

    cd__idset changed = CD__IDSET_INIT;
    row_hashes all = {0}, since = {.ids = &changed};
    int64_t *dead = NULL;
    size_t n_dead = 0;
    cd_err rc = hash_rows(e, g, gi, -1, &all, err);
    if (rc == CD_OK)
        rc = hash_rows(e, g, gi, snap_seq, &since, err);
    if (rc == CD_OK)
        rc = cd_store_tombstones(e->st, g->info.id, snap_seq, &dead, &n_dead, err);
    if (rc == CD_OK && !cd__idset_reserve(&changed, n_dead))
        rc = cd__fail(err, CD_ENOMEM, "out of memory");
    if (rc != CD_OK)
        goto out;
    for (size_t i = 0; i < n_dead; i++)
        cd__idset_put(&changed, dead[i]);
    /* The snapshot's rows the store did not change since must be exactly
     * the store's rows written up to snap_seq. */
    uint64_t sum = 0;
    size_t kept = 0;
    for (size_t i = 0; i < (size_t)f[3]; i++) {
        int64_t id;
        uint64_t h;
        memcpy(&id, meta + SNAP_HEADER + i * 16, 8);
        memcpy(&h, meta + SNAP_HEADER + i * 16 + 8, 8);
        if (cd__idset_contains(&changed, id))
            continue;
        sum += h;
        kept++;
    }
    if (sum != all.sum - since.sum || kept != all.n - since.n)
        rc = cd__fail(err, CD_ECORRUPT, "snapshot rows differ from the store's "
                      "(%zu unchanged rows in it, %zu in the store): another "
                      "history or another gallery's file", kept, all.n - since.n);
out:
    free(dead);
    cd__idset_finish(&changed);
    return rc;
}

/* One batch of flat_load's scan: the rows into the index and members. */
typedef struct flat_ctx {
    cd_index *ix;
    cd__idset *members;
    cd_error *err;
} flat_ctx;

static cd_err flat_batch(void *ctx, const int64_t *rowids,
                         const float *vectors, size_t n)
{
    flat_ctx *f = ctx;
    cd_err rc = cd__members_batch(f->members, rowids, NULL, n);
    return rc == CD_OK ? cd_index_add(f->ix, rowids, vectors, n, f->err) : rc;
}

/*
 * Loads gi's Flat index (ix, empty, of g's spec) straight from the store:
 * one scan in rowid order fills it and gi->members.  A Flat index is the
 * stored vectors as they are, so a snapshot of it would be a second copy
 * of every vector on disk and reading it is no faster than this scan:
 * none is kept (index_snapshot), and a file left by an older compatd is
 * removed here.  With no file read, nothing needs the binding checks of
 * snapshot_check: no other gallery's, store's or history's rows can get
 * in, and the index is this store's rows at this open.  What the scan
 * must still rule out is a damaged b-tree ending it early without an
 * error (see store_checked).  Every page of the file passed quick_check
 * or the full check at this open (unclean_check), and quick_check
 * verifies the structure of every b-tree, the embeddings table's own
 * primary-key b-tree that this scan walks included; what it leaves out
 * (index entries against their tables, UNIQUE constraints) this scan
 * does not read.  (A count(*) of the rows beside the scan, as a snapshot
 * gets, would walk the same b-tree again: 0.3 s a million, no new
 * evidence.)  Without that check at this open, the full check runs
 * first, as before any rebuild.  The rows come as one batch when the
 * gallery's item count holds them (a Flat index grows by copying, and
 * one add sizes it once).  Takes ix; on failure gi keeps no index.
 */
static cd_err flat_load(cd_engine *e, gallery *g, gal_index *gi,
                        cd_index *ix, cd_error *err)
{
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    cd_err rc = e->pages_checked ? CD_OK : store_checked(e, err);
    flat_ctx f = {ix, &gi->members, err};
    if (rc == CD_OK)
        rc = cd_store_scan_vectors(e->st, g->info.id, gi->model.id,
                                   gi->model.dim, 0,
                                   g->info.count > SCAN_BATCH
                                       ? (size_t)g->info.count : SCAN_BATCH,
                                   flat_batch, &f, NULL, err);
    if (rc != CD_OK) {
        cd_index_destroy(ix);
        return rc;
    }
    prune_ctx none = {NULL};
    snapshot_files(e, g->info.id, gi->model.id, remove_other, &none);
    gi->ix = ix;
    gi->saved_seq = g->seq;
    gi->dirty = false;
    clock_gettime(CLOCK_MONOTONIC, &t1);
    cd__elog(e, CD_LOG_INFO, "gallery %s model %s: %" PRId64 " vectors read from "
             "the store in %.0f ms", g->info.name, gi->model.name, cd_index_count(ix),
             (double)(t1.tv_sec - t0.tv_sec) * 1e3 + (double)(t1.tv_nsec - t0.tv_nsec) / 1e6);
    return CD_OK;
}

/* Loads gi's index: a Flat one from the store (flat_load), others from
 * their newest snapshot, caught up, or rebuilt; reads which items have an
 * embedding of gi's model. */
static cd_err index_load(cd_engine *e, gallery *g, gal_index *gi,
                         cd_error *err)
{
    cd__idset_finish(&gi->members);
    cd_index *flat = NULL;
    if (cd_index_create(g->info.index_spec, gi->model.dim, gi->model.metric,
                        &flat, NULL) == CD_OK && !cd_index_is_flat(flat)) {
        cd_index_destroy(flat);
        flat = NULL;
    }
    if (flat)
        return flat_load(e, g, gi, flat, err);
    cd_err mrc = cd_store_scan_rowids(e->st, g->info.id, gi->model.id,
                                      SCAN_BATCH, cd__members_batch,
                                      &gi->members, err);
    if (mrc != CD_OK)
        return mrc;
    newest_ctx newest = {-1, NULL};
    snapshot_files(e, g->info.id, gi->model.id, pick_newest, &newest);
    void *meta = NULL;  /* before the first goto out, which frees it */
    int64_t stored = 0;
    cd_err rc = cd_store_count_vectors(e->st, g->info.id, gi->model.id,
                                       &stored, err);
    if (rc != CD_OK)
        goto out;

    const char *why = NULL;
    cd_error lerr;
    size_t meta_len = 0;
    cd_error_clear(&lerr);
    if (!newest.path) {
        why = "no snapshot";
    } else if (newest.seq > g->seq) {
        why = "snapshot is newer than the store";
    } else if (cd_index_load(newest.path, g->info.index_spec, gi->model.dim,
                             gi->model.metric, &gi->ix, &meta, &meta_len,
                             &lerr) != CD_OK) {
        why = lerr.message;
    } else if (snapshot_check(e, g, gi, meta, meta_len, newest.seq,
                              cd_index_count(gi->ix), &lerr) != CD_OK) {
        why = lerr.message;
    } else if (newest.seq < g->seq && !cd_index_can_remove(gi->ix)) {
        why = "snapshot is behind and the index type cannot remove";
    } else if (newest.seq < g->seq &&
               index_catch_up(e, g, gi, newest.seq, &lerr) != CD_OK) {
        why = lerr.message;
    } else if (cd_index_count(gi->ix) != stored) {
        why = "snapshot does not match the store";
    }

    if (why) {
        if (stored > 0 || newest.path)
            cd__elog(e, CD_LOG_WARN, "gallery %s model %s: %s%s%s; rebuilding from the store",
                 g->info.name, gi->model.name, newest.path ? newest.path : "",
                 newest.path ? ": " : "", why);
        cd_index_destroy(gi->ix);
        gi->ix = NULL;
        if ((rc = store_checked(e, err)) == CD_OK)
            rc = cd__index_rebuild(e, g, gi, err);
        if (rc != CD_OK)
            goto out;
        gi->saved_seq = -1;
        gi->dirty = true;
    } else {
        gi->saved_seq = newest.seq;
        gi->dirty = newest.seq != g->seq;
    }
out:
    free(meta);
    free(newest.path);
    return rc;
}

/* Writes the snapshot of gi if it changed.  Caller holds g's lock. */
static cd_err index_snapshot(cd_engine *e, gallery *g, gal_index *gi,
                             cd_error *err)
{
    if (!gi->ix || (!gi->dirty && gi->saved_seq == g->seq) || atomic_load(&g->deleted))
        return CD_OK;
    if (cd_index_is_flat(gi->ix)) {
        /* Read from the store at load (flat_load): nothing to write, and
         * no tombstone is needed to catch up. */
        gi->saved_seq = g->seq;
        gi->dirty = false;
        return CD_OK;
    }
    if (gi->hidden) {
        /* The caller holds the write lock (see cd_engine_snapshot). */
        cd_err rc = cd__index_rebuild(e, g, gi, err);
        if (rc != CD_OK)
            return rc;
    }
    unsigned char *meta = NULL;
    size_t meta_len = 0;
    cd_err rc = snapshot_meta(e, g, gi, &meta, &meta_len, err);
    if (rc != CD_OK)
        return rc;
    char *path = snapshot_path(e, g, gi, g->seq);
    if (!path) {
        free(meta);
        return cd__fail(err, CD_ENOMEM, "out of memory");
    }
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    cd__elog(e, CD_LOG_DEBUG, "snapshot of gallery %s model %s: writing %" PRId64 " vectors",
         g->info.name, gi->model.name, cd_index_count(gi->ix));
    rc = cd_index_save(gi->ix, path, meta, meta_len, err);
    free(meta);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    if (rc == CD_OK) {
        cd__elog(e, CD_LOG_DEBUG, "snapshot of gallery %s model %s: %s written in %.0f ms",
             g->info.name, gi->model.name, path,
             (double)(t1.tv_sec - t0.tv_sec) * 1e3 + (double)(t1.tv_nsec - t0.tv_nsec) / 1e6);
        prune_ctx p = {path};
        snapshot_files(e, g->info.id, gi->model.id, remove_other, &p);
        gi->saved_seq = g->seq;
        gi->dirty = false;
        atomic_fetch_add(&e->snapshots, 1);
    } else if (rc == CD_ECONFLICT) {
        rc = CD_OK; /* hidden ids: the next load rebuilds instead */
    }
    free(path);
    return rc;
}

/* Snapshots every changed index of g and prunes applied tombstones. */
static cd_err gallery_snapshot(cd_engine *e, gallery *g, cd_error *err)
{
    cd_err rc = CD_OK;
    int64_t min_saved = g->seq;
    if (g->unavailable || atomic_load(&g->deleted))
        return CD_OK;   /* nothing to save; keep the tombstones */
    for (size_t i = 0; i < g->n_indexes && rc == CD_OK; i++) {
        rc = index_snapshot(e, g, &g->indexes[i], err);
        if (g->indexes[i].ix && g->indexes[i].saved_seq < min_saved)
            min_saved = g->indexes[i].saved_seq;
    }
    if (rc == CD_OK && min_saved > 0)
        rc = cd_store_tombstones_prune(e->st, g->info.id, min_saved, err);
    if (rc == CD_OK)
        rc = cd__traffic_save(e, g, err);
    return rc;
}

/* --- open / load / close --------------------------------------------- */

static void *snapshot_loop(void *arg)
{
    cd_engine *e = arg;
    pthread_mutex_lock(&e->stop_mu);
    while (!e->stopping) {
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_sec += e->cfg.snapshot_interval_s;
        int rc = 0;
        while (!e->stopping && rc != ETIMEDOUT)
            rc = pthread_cond_timedwait(&e->stop_cv, &e->stop_mu, &until);
        if (e->stopping)
            break;
        pthread_mutex_unlock(&e->stop_mu);
        cd_error err;
        if (cd_engine_snapshot(e, &err) != CD_OK)
            cd__elog(e, CD_LOG_ERROR, "periodic snapshot failed: %s", err.message);
        pthread_mutex_lock(&e->stop_mu);
    }
    pthread_mutex_unlock(&e->stop_mu);
    return NULL;
}

/* Fails when dir (a path made by cd_engine_open) is writable by group or
 * others: they could replace the database or a snapshot. */
static cd_err dir_private(const char *dir, cd_error *err)
{
    struct stat sb;
    if (stat(dir, &sb) != 0)
        return cd__fail(err, CD_EIO, "cannot read %s: %s", dir, strerror(errno));
    if (!S_ISDIR(sb.st_mode))
        return cd__fail(err, CD_EIO, "%s is not a directory", dir);
    if (sb.st_mode & (S_IWGRP | S_IWOTH))
        return cd__fail(err, CD_EINVAL, "refusing %s: it is writable by group or others "
                        "(mode %04o), who could replace the database or the index "
                        "snapshots; chmod go-w %s", dir, (unsigned)(sb.st_mode & 07777), dir);
    return CD_OK;
}

/* index/STORE_MARK holds the identity of the store the directory has
 * held since its first open: a Flat gallery keeps no snapshot, so without
 * it a directory of Flat galleries that lost its database would look new
 * (db_present). */
#define STORE_MARK "store.id"

/* Writes index/STORE_MARK when it does not hold this store's identity. */
static cd_err store_mark(cd_engine *e, cd_error *err)
{
    char *path = cd__str_printf("%s/%s", e->index_dir, STORE_MARK);
    char *tmp = cd__str_printf("%s/%s.tmp", e->index_dir, STORE_MARK);
    char have[CD_STORE_ID_LEN + 1] = "";
    cd_err rc = CD_OK;
    if (!path || !tmp) {
        rc = cd__fail(err, CD_ENOMEM, "out of memory");
        goto out;
    }
    FILE *f = fopen(path, "r");
    if (f) {
        size_t got = fread(have, 1, CD_STORE_ID_LEN, f);
        have[got] = '\0';
        fclose(f);
    }
    if (strcmp(have, e->store_id) == 0)
        goto out;
    f = fopen(tmp, "w");
    bool written = f && fputs(e->store_id, f) >= 0 && fflush(f) == 0 && fsync(fileno(f)) == 0;
    if (f && fclose(f) != 0)
        written = false;
    if (!written || rename(tmp, path) != 0) {
        rc = cd__fail(err, CD_EIO, "cannot write %s: %s", path, strerror(errno));
        unlink(tmp);
    }
out:
    free(path);
    free(tmp);
    return rc;
}

/* Fails when the database is missing or empty while index/ holds
 * snapshots or the store's mark: the data directory lost its database,
 * and starting empty would hide that. */
static cd_err db_present(cd_engine *e, cd_error *err)
{
    struct stat sb;
    bool missing = stat(e->db_path, &sb) != 0;
    if (!missing && sb.st_size > 0)
        return CD_OK;
    char *mark = cd__str_printf("%s/%s", e->index_dir, STORE_MARK);
    bool marked = mark && stat(mark, &sb) == 0;
    free(mark);
    size_t snapshots = 0;
    DIR *d = opendir(e->index_dir);
    struct dirent *de;
    while (d && (de = readdir(d)) != NULL) {
        size_t n = strlen(de->d_name);
        snapshots += n > 6 && strcmp(de->d_name + n - 6, ".faiss") == 0;
    }
    if (d)
        closedir(d);
    if (snapshots == 0 && !marked)
        return CD_OK;
    return cd__fail(err, CD_ENOTFOUND, "refusing to start: %s is %s but %s holds %zu index "
                    "snapshot%s%s, so the data directory has lost its database; restore "
                    "compatd.db from a backup (`compatd backup`), or remove %s to start "
                    "over empty", e->db_path, missing ? "missing" : "empty",
                    e->index_dir, snapshots, snapshots == 1 ? "" : "s",
                    marked ? " and the mark of the database it held (" STORE_MARK ")" : "",
                    e->index_dir);
}

/* The background check (cd_engine_config.check_in_background): the full
 * check after an unclean stop; else quick_check, and the full check when
 * that finds damage or cannot run. */
static void *background_check(void *arg)
{
    cd_engine *e = arg;
    cd_error err, qerr;
    cd_error_clear(&err);
    cd_err rc = e->bg_full ? CD_ECORRUPT : cd_store_quick_check(e->db_path, NULL, &qerr);
    if (rc != CD_OK)
        rc = store_checked(e, &err);
    if (rc == CD_OK && e->bg_full)
        cd__elog(e, CD_LOG_INFO, "%s passed its integrity check", e->db_path);
    e->bg_rc = rc;
    e->bg_err = err;
    atomic_store(&e->bg_passed, rc == CD_OK);
    return NULL;
}

/*
 * Starts the background check unclean_check chose, once cd_store_open has
 * opened the store: the check's own connection must not be the first or
 * the last one on the file, since a connection that finds itself the
 * last at its close checkpoints the WAL and removes it, and the store's
 * connections, opened meanwhile, would write to a removed file.  Without
 * a thread the check runs here and now.
 */
static cd_err background_start(cd_engine *e, cd_error *err)
{
    if (!e->bg_wanted)
        return CD_OK;
    if (pthread_create(&e->bg_thread, NULL, background_check, e) == 0) {
        e->bg_joinable = true;
        return CD_OK;
    }
    background_check(e);
    return cd_engine_wait_checked(e, err);
}

bool cd_engine_checked(cd_engine *e)
{
    return atomic_load(&e->bg_passed);
}

cd_err cd_engine_wait_checked(cd_engine *e, cd_error *err)
{
    if (e->bg_joinable) {
        pthread_join(e->bg_thread, NULL);
        e->bg_joinable = false;
    }
    if (e->bg_rc != CD_OK)
        return cd__fail(err, e->bg_rc, "%s", e->bg_err.message);
    return CD_OK;
}

/*
 * DATA/compatd.running exists while an engine has the directory open;
 * finding it at open means the last run did not close (a crash, kill -9,
 * power loss), and the store is checked before anything is served.
 * Then it is written anew.  With check_in_background the check of a
 * current-schema store is only chosen here: it runs on its own thread
 * from background_start on, and the loads that follow read the store
 * beside it as if it had passed (pages_checked); their result is only
 * served once it has (cd_engine_load_indexes).
 */
static cd_err unclean_check(cd_engine *e, cd_error *err)
{
    e->marker_path = cd__str_printf("%s/compatd.running", e->data_dir);
    if (!e->marker_path)
        return cd__fail(err, CD_ENOMEM, "out of memory");
    struct stat sb;
    cd_err rc = CD_OK;
    bool unclean = stat(e->marker_path, &sb) == 0;
    if (unclean)
        cd__elog(e, CD_LOG_WARN, "the last run on %s did not stop cleanly; checking %s",
                 e->data_dir, e->db_path);
    if (e->cfg.check_in_background && stat(e->db_path, &sb) == 0 && sb.st_size > 0 &&
        cd_store_schema_current(e->db_path)) {
        /* started by background_start once the store is open */
        e->bg_wanted = true;
        e->bg_full = unclean;
        e->pages_checked = true;
        atomic_store(&e->bg_passed, false);
    } else if (unclean) {
        if ((rc = store_checked(e, err)) != CD_OK)
            goto fail;
        e->pages_checked = true;
        cd__elog(e, CD_LOG_INFO, "%s passed its integrity check", e->db_path);
    } else {
        /* After a clean stop the file can still have been damaged at rest
         * (the disk, a copy, a hand): every start reads each page once
         * (quick_check, O(pages)); what it finds gets the full check,
         * whose report the refusal gives. */
        cd_error qerr;
        if (stat(e->db_path, &sb) == 0 && sb.st_size > 0) {
            cd_err q = cd_store_quick_check(e->db_path, NULL, &qerr);
            if (q == CD_ECORRUPT && (rc = store_checked(e, err)) != CD_OK)
                goto fail;
            e->pages_checked = q == CD_OK || q == CD_ECORRUPT;
        }
    }
    FILE *f = fopen(e->marker_path, "w");
    bool written = f && fprintf(f, "%ld\n", (long)getpid()) > 0 && fflush(f) == 0 &&
                   fsync(fileno(f)) == 0;
    if (f && fclose(f) != 0)
        written = false;
    if (written)
        return CD_OK;
    rc = cd__fail(err, CD_EIO, "cannot write %s: %s", e->marker_path, strerror(errno));
fail:
    free(e->marker_path);
    e->marker_path = NULL;
    return rc;
}

cd_err cd_engine_open(const cd_engine_config *cfg, cd_engine **out,
                      cd_error *err)
{
    *out = NULL;
    cd_err rc = CD_OK;
    cd_gallery *rows = NULL;
    size_t n_rows = 0;

    cd_engine *e = calloc(1, sizeof *e);
    if (!e)
        return cd__fail(err, CD_ENOMEM, "out of memory");
    e->cfg = *cfg;
    atomic_init(&e->bg_passed, true);
    pthread_rwlockattr_t attr;
    pthread_rwlockattr_init(&attr);
    pthread_rwlockattr_setkind_np(&attr, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
    pthread_rwlock_init(&e->lock, &attr);
    pthread_rwlockattr_destroy(&attr);
    pthread_mutex_init(&e->models_mu, NULL);
    pthread_mutex_init(&e->stop_mu, NULL);
    pthread_mutex_init(&e->snap_mu, NULL);
    pthread_cond_init(&e->stop_cv, NULL);
    pthread_mutex_init(&e->check_mu, NULL);
    pthread_mutex_init(&e->adapters_mu, NULL);

    e->data_dir = strdup(cfg->data_dir ? cfg->data_dir : "./data");
    e->index_dir = e->data_dir ? cd__str_printf("%s/index", e->data_dir) : NULL;
    e->db_path = e->data_dir ? cd__str_printf("%s/compatd.db", e->data_dir) : NULL;
    e->live = cd_live_create();
    if (!e->index_dir || !e->db_path || !e->live) {
        rc = cd__fail(err, CD_ENOMEM, "out of memory");
        goto fail;
    }
    e->cfg.data_dir = e->data_dir;
    if (mkdir_p(e->data_dir) != 0 || mkdir_p(e->index_dir) != 0) {
        rc = cd__fail(err, CD_EIO, "cannot create data directory %s: %s",
                      e->data_dir, strerror(errno));
        goto fail;
    }
    if ((rc = dir_private(e->data_dir, err)) != CD_OK ||
        (rc = dir_private(e->index_dir, err)) != CD_OK ||
        (rc = db_present(e, err)) != CD_OK || (rc = unclean_check(e, err)) != CD_OK)
        goto fail;
    rc = cd_store_open(e->db_path, &e->st, err);
    if (rc == CD_OK)
        rc = background_start(e, err);
    if (rc == CD_OK)
        rc = cd_store_identity(e->st, e->store_id, err);
    if (rc == CD_OK)
        rc = store_mark(e, err);
    if (rc != CD_OK)
        goto fail;
    rc = cd_store_gallery_list(e->st, &rows, &n_rows, err);
    if (rc != CD_OK)
        goto fail;
    e->gals = calloc(n_rows ? n_rows : 1, sizeof *e->gals);
    if (!e->gals) {
        rc = cd__fail(err, CD_ENOMEM, "out of memory");
        goto fail;
    }
    for (size_t i = 0; i < n_rows; i++) {
        gallery *g = gallery_new(e, &rows[i], err);
        if (!g) {
            rc = err ? err->code : CD_ENOMEM;
            goto fail;
        }
        e->gals[e->n_gals++] = g;
    }
    free(rows);
    *out = e;
    return CD_OK;
fail:
    free(rows);
    free(e->marker_path); /* kept: the next open checks the store */
    e->marker_path = NULL;
    cd_engine_close(e);
    return rc;
}

/* Removes temporary files a crash left behind in the index directory. */
static void remove_temporaries(cd_engine *e)
{
    DIR *d = opendir(e->index_dir);
    if (!d)
        return;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        if (!strstr(de->d_name, ".tmp"))
            continue;
        char *path = cd__str_printf("%s/%s", e->index_dir, de->d_name);
        if (path)
            unlink(path);
        free(path);
    }
    closedir(d);
}

/* A gallery's filter fields, read beside its index loads. */
typedef struct fields_job {
    cd_engine *e;
    gallery *g;
    cd_err rc;
    cd_error err;
} fields_job;

static void *fields_thread(void *arg)
{
    fields_job *j = arg;
    j->rc = cd__fields_read(j->e, j->g, NULL, 0, &j->err);
    return NULL;
}

/* Loads g's indexes, and its filter fields on another thread meanwhile
 * (two reads of different tables; on two cores the load takes the longer
 * of them, not their sum).  The caller holds g's write lock. */
static cd_err gallery_load(cd_engine *e, gallery *g, cd_error *err)
{
    cd_model_count *counts = NULL;
    size_t n = 0;
    /* A spec accepted by an older compatd may be one we refuse now. */
    cd_err rc = cd_index_spec_check(g->info.index_spec, g->model.dim, err);
    if (rc != CD_OK) {
        char why[CD_ERRMSG_MAX]; /* cd__fail writes over err->message */
        snprintf(why, sizeof why, "%s", err->message);
        return cd__fail(err, rc, "index \"%s\" is not accepted (%s); delete "
                        "the gallery and create it again with another index",
                        g->info.index_spec, why);
    }
    fields_job job = {e, g, CD_OK, {0}};
    pthread_t fields;
    bool threaded = pthread_create(&fields, NULL, fields_thread, &job) == 0;
    rc = cd_store_gallery_models(e->st, g->info.id, &counts, &n, err);
    for (size_t j = 0; j < n && rc == CD_OK; j++) {
        cd_model m;
        rc = cd__model_by_name(e, counts[j].model, &m, err);
        gal_index *gi = rc == CD_OK ? cd__index_slot_add(g, &m) : NULL;
        if (rc == CD_OK && !gi)
            rc = cd__fail(err, CD_ENOMEM, "out of memory");
        if (rc == CD_OK)
            rc = index_load(e, g, gi, err);
    }
    free(counts);
    if (threaded)
        pthread_join(fields, NULL);
    else
        fields_thread(&job);
    if (rc == CD_OK && job.rc != CD_OK)
        rc = cd__fail(err, job.rc, "%s", job.err.message);
    return rc;
}

cd_err cd_engine_load_indexes(cd_engine *e, cd_error *err)
{
    cd_err rc = CD_OK;
    remove_temporaries(e);
    pthread_rwlock_rdlock(&e->lock);
    for (size_t i = 0; i < e->n_gals && rc == CD_OK; i++) {
        gallery *g = e->gals[i];
        cd_error gerr;
        pthread_rwlock_wrlock(&g->lock);
        cd_err grc = gallery_load(e, g, &gerr);
        /* Damage read from the database is the whole database's, not this
         * gallery's: confirmed by the store's check, nothing is served. */
        if (grc == CD_ECORRUPT || grc == CD_EIO) {
            rc = cd_engine_wait_checked(e, err);
            if (rc == CD_OK)
                rc = store_checked(e, err);
        }
        /* One gallery that cannot be built must not take the others (or
         * the daemon, restart after restart) down with it. */
        if (grc != CD_OK && rc == CD_OK)
            cd__gallery_fail(e, g, gerr.message, NULL);
        if (grc == CD_OK)
            snapshot_files(e, g->info.id, -1, remove_orphan, g);
        cd__traffic_load(e, g);
        pthread_rwlock_unlock(&g->lock);
    }
    pthread_rwlock_unlock(&e->lock);
    /* What was loaded beside a background check is served only once it
     * has passed. */
    if (rc == CD_OK)
        rc = cd_engine_wait_checked(e, err);
    if (rc != CD_OK)
        return rc;
    atomic_store(&e->ready, true);
    if (e->cfg.snapshot_interval_s > 0) {
        if (pthread_create(&e->snap_thread, NULL, snapshot_loop, e) == 0)
            e->snap_running = true;
        else
            cd__elog(e, CD_LOG_WARN, "cannot start the snapshot thread; snapshots only on close");
    }
    return CD_OK;
}

bool cd_engine_ready(cd_engine *e)
{
    return atomic_load(&e->ready);
}

cd_err cd_engine_snapshot(cd_engine *e, cd_error *err)
{
    cd_err rc = CD_OK;
    if (!cd_engine_ready(e))
        return CD_OK;
    /* gal_index.saved_seq/dirty change under a gallery's read lock here,
     * so passes are serialised by snap_mu.  The engine lock is held only
     * to take the list: a create or delete waiting for it would hold up
     * every call behind it for as long as the pass writes.  A gallery
     * deleted meanwhile is skipped (gallery_delete removes its files once
     * its lock is free). */
    pthread_mutex_lock(&e->snap_mu);
    pthread_rwlock_rdlock(&e->lock);
    size_t n = e->n_gals;
    gallery **gals = malloc((n ? n : 1) * sizeof *gals);
    for (size_t i = 0; gals && i < n; i++) {
        gals[i] = e->gals[i];
        atomic_fetch_add(&gals[i]->refs, 1);
    }
    pthread_rwlock_unlock(&e->lock);
    if (!gals) {
        pthread_mutex_unlock(&e->snap_mu);
        return cd__fail(err, CD_ENOMEM, "out of memory");
    }
    for (size_t i = 0; i < n; i++) {
        gallery *g = gals[i];
        /* Saving only reads the index, so searches may go on beside it;
         * an index with hidden ids is rebuilt first, which needs the
         * write lock. */
        bool rebuild = false;
        pthread_rwlock_rdlock(&g->lock);
        for (size_t j = 0; j < g->n_indexes; j++)
            rebuild |= g->indexes[j].hidden;
        if (rebuild) {
            pthread_rwlock_unlock(&g->lock);
            pthread_rwlock_wrlock(&g->lock);
        }
        cd_err one = gallery_snapshot(e, g, err);
        pthread_rwlock_unlock(&g->lock);
        gallery_unref(g);
        if (one != CD_OK && rc == CD_OK)
            rc = one;
    }
    free(gals);
    /* What a restart reads is current as of this pass: the snapshots it
     * wrote, and the store itself for Flat indexes, which have none. */
    if (rc == CD_OK)
        atomic_store(&e->last_snapshot, (long long)time(NULL));
    pthread_mutex_unlock(&e->snap_mu);
    return rc;
}

void cd_engine_close(cd_engine *e)
{
    if (!e)
        return;
    cd_error cerr;
    cd_engine_wait_checked(e, &cerr);
    if (e->snap_running) {
        pthread_mutex_lock(&e->stop_mu);
        e->stopping = true;
        pthread_cond_broadcast(&e->stop_cv);
        pthread_mutex_unlock(&e->stop_mu);
        pthread_join(e->snap_thread, NULL);
    }
    cd_error err;
    if (cd_engine_snapshot(e, &err) != CD_OK)
        cd__elog(e, CD_LOG_ERROR, "final snapshot failed: %s", err.message);
    for (size_t i = 0; i < e->n_gals; i++)
        gallery_unref(e->gals[i]);
    free(e->gals);
    free(e->models);
    cd__adapters_forget(e, 0);
    cd_live_destroy(e->live);
    cd_store_close(e->st);
    /* Stopped cleanly: the next open need not check the store, unless
     * this run found it damaged. */
    if (e->marker_path && e->check_err.code == CD_OK)
        unlink(e->marker_path);
    pthread_rwlock_destroy(&e->lock);
    pthread_mutex_destroy(&e->models_mu);
    pthread_mutex_destroy(&e->stop_mu);
    pthread_mutex_destroy(&e->snap_mu);
    pthread_cond_destroy(&e->stop_cv);
    pthread_mutex_destroy(&e->check_mu);
    pthread_mutex_destroy(&e->adapters_mu);
    free(e->marker_path);
    free(e->db_path);
    free(e->index_dir);
    free(e->data_dir);
    free(e);
}

/* --- models ---------------------------------------------------------- */

cd_err cd_engine_model_create(cd_engine *e, const cd_model *m, cd_model *out,
                              cd_error *err)
{
    /* Models never change and each names an older one, so the chain from
     * compatible_with on is the one it will always have, and has no loop
     * (in a damaged table one would end at the bound): count its links
     * now.  The store checks that the target exists, and its dim and
     * metric. */
    cd_model t;
    char next[CD_NAME_MAX + 1];
    size_t links = 1;
    snprintf(next, sizeof next, "%s", m->compatible_with);
    while (next[0]) {
        cd_err rc = cd__model_by_name(e, next, &t, err);
        if (rc == CD_ENOTFOUND)
            break;      /* the store's message names the missing model */
        if (rc != CD_OK)
            return rc;
        if (!t.compatible_with[0])
            break;
        if (++links > CD_COMPAT_CHAIN_MAX)
            return cd__fail(err, CD_EINVAL,
                            "compatible_with %s: model %s would have a chain of more than %d "
                            "compatible_with links",
                            m->compatible_with, m->name, CD_COMPAT_CHAIN_MAX);
        memcpy(next, t.compatible_with, sizeof next);
    }
    return cd_store_model_create(e->st, m, out, err);
}

cd_err cd_engine_model_get(cd_engine *e, const char *name, cd_model *out,
                           cd_error *err)
{
    return cd__model_by_name(e, name, out, err);
}

cd_err cd_engine_model_list(cd_engine *e, cd_model **out, size_t *n,
                            cd_error *err)
{
    return cd_store_model_list(e->st, out, n, err);
}

/* --- galleries ------------------------------------------------------- */

cd_err cd_engine_gallery_create(cd_engine *e, const char *name,
                                const char *model, const char *index_spec,
                                cd_gallery *out, cd_error *err)
{
    cd_model m;
    cd_gallery row;
    cd_index *probe = NULL;
    const char *spec = index_spec ? index_spec : "Flat";

    if (!cd_name_valid(name))
        return cd__fail(err, CD_EINVAL, "gallery name must match [A-Za-z0-9._-]{1,64}");
    cd_err rc = cd__model_by_name(e, model, &m, err);
    if (rc != CD_OK)
        return rc;
    /* FAISS must accept the spec for this dimension now, not at the first
     * upsert. */
    cd_error why;
    rc = cd_index_create(spec, m.dim, m.metric, &probe, &why);
    cd_index_destroy(probe);
    if (rc != CD_OK)
        return cd__fail(err, CD_EINVAL, "index \"%s\" is not usable for model %s (dim %d): %s",
                        spec, m.name, m.dim, why.message);
    if (!cd_engine_ready(e))
        return cd__fail(err, CD_EBUSY, "indexes are still loading");

    /* The row is committed before the engine lock is taken: the commit
     * waits for its fsync (which a snapshot being written can make long),
     * and every call would wait behind the lock.  Until the gallery is in
     * the list, calls on it answer that it is not found. */
    rc = cd_store_gallery_create(e->st, name, model, spec, &row, err);
    if (rc != CD_OK)
        return rc;
    gallery *g = gallery_new(e, &row, err);
    gallery **grown = NULL;
    pthread_rwlock_wrlock(&e->lock);
    if (g && (grown = realloc(e->gals, (e->n_gals + 1) * sizeof *grown)) != NULL) {
        e->gals = grown;
        e->gals[e->n_gals++] = g;
    }
    pthread_rwlock_unlock(&e->lock);
    if (!grown) {
        rc = g ? cd__fail(err, CD_ENOMEM, "out of memory") : err ? err->code : CD_ENOMEM;
        gallery_free(g);
        cd_error ignored;
        cd_store_gallery_delete(e->st, row.id, &ignored);
        return rc;
    }
    if (out)
        *out = row;
    return CD_OK;
}

cd_err cd_engine_request_model(cd_engine *e, const char *gallery_name,
                               const char *model, cd_model *out,
                               cd_error *err)
{
    gallery *g;
    cd_err rc = cd__gallery_enter(e, gallery_name, &g, err);
    if (rc != CD_OK)
        return rc;
    if (!model)
        *out = g->model; /* changes only under the engine's write lock
                            (cd_engine_gallery_promote) */
    else
        rc = cd__model_by_name(e, model, out, err);
    pthread_rwlock_unlock(&e->lock);
    return rc;
}

bool cd_engine_gallery_unavailable(cd_engine *e, const char *name,
                                   cd_error *why)
{
    gallery *g;
    cd_error ignored;
    if (cd__gallery_enter(e, name, &g, &ignored) != CD_OK)
        return false;
    pthread_rwlock_rdlock(&g->lock);
    bool unavailable = cd__gallery_check(g, why) != CD_OK;
    pthread_rwlock_unlock(&g->lock);
    pthread_rwlock_unlock(&e->lock);
    return unavailable;
}

cd_err cd_engine_gallery_get(cd_engine *e, const char *name, cd_gallery *out,
                             cd_error *err)
{
    return cd_store_gallery_get(e->st, name, out, err);
}

cd_err cd_engine_gallery_list(cd_engine *e, cd_gallery **out, size_t *n,
                              cd_error *err)
{
    return cd_store_gallery_list(e->st, out, n, err);
}

static int model_count_by_name(const void *a, const void *b)
{
    return strcmp(((const cd_model_count *)a)->model, ((const cd_model_count *)b)->model);
}

/*
 * Once the indexes are loaded, the counts come from the member sets the
 * engine keeps per (gallery, model) in step with the store, so that the
 * dashboard's polling and /metrics do not count a large gallery's
 * embeddings in SQLite each time (about 0.13 s per million).
 */
cd_err cd_engine_gallery_embeddings(cd_engine *e, const char *name,
                                    cd_model_count **out, size_t *n,
                                    cd_error *err)
{
    *out = NULL;
    *n = 0;
    /* An unavailable gallery's member sets may be incomplete. */
    if (!cd_engine_ready(e) || cd_engine_gallery_unavailable(e, name, NULL)) {
        cd_gallery row;
        cd_err rc = cd_store_gallery_get(e->st, name, &row, err);
        if (rc != CD_OK)
            return rc;
        return cd_store_gallery_embeddings(e->st, row.id, out, n, err);
    }
    gallery *g;
    cd_err rc = cd__gallery_enter(e, name, &g, err);
    if (rc != CD_OK)
        return rc;
    pthread_rwlock_rdlock(&g->lock);
    cd_model_count *counts = calloc(g->n_indexes ? g->n_indexes : 1, sizeof *counts);
    size_t k = 0;
    if (!counts) {
        rc = cd__fail(err, CD_ENOMEM, "out of memory");
    } else {
        for (size_t i = 0; i < g->n_indexes; i++) {
            const gal_index *gi = &g->indexes[i];
            if (gi->members.len == 0)
                continue;
            counts[k].model_id = gi->model.id;
            snprintf(counts[k].model, sizeof counts[k].model, "%s", gi->model.name);
            counts[k].items = (int64_t)gi->members.len;
            k++;
        }
    }
    pthread_rwlock_unlock(&g->lock);
    pthread_rwlock_unlock(&e->lock);
    if (rc != CD_OK)
        return rc;
    qsort(counts, k, sizeof *counts, model_count_by_name);
    *out = counts;
    *n = k;
    return CD_OK;
}

cd_err cd_engine_gallery_set_policy(cd_engine *e, const char *name,
                                    cd_query_policy policy, cd_error *err)
{
    return cd_engine_gallery_update(e, name, &policy, NULL, 0, err);
}

cd_err cd_engine_gallery_delete(cd_engine *e, const char *name, cd_error *err)
{
    cd_err rc = CD_OK;
    if (!cd_engine_ready(e))
        return cd__fail(err, CD_EBUSY, "indexes are still loading");
    pthread_rwlock_wrlock(&e->lock);
    size_t i = 0;
    while (i < e->n_gals && strcmp(e->gals[i]->info.name, name) != 0)
        i++;
    if (i == e->n_gals) {
        rc = cd__fail(err, CD_ENOTFOUND, "gallery \"%s\" not found", name);
        goto out;
    }
    gallery *g = e->gals[i];
    rc = cd_store_gallery_delete(e->st, g->info.id, err);
    if (rc != CD_OK)
        goto out;
    e->gals[i] = e->gals[--e->n_gals];
    atomic_store(&g->deleted, true);
    cd_live_forget(e->live, name);
    pthread_rwlock_unlock(&e->lock);
    /* No call can reach g now, but a snapshot pass may be writing it: its
     * files go once it is done (it writes none after `deleted`). */
    pthread_rwlock_wrlock(&g->lock);
    cd__snapshot_remove(e, g->info.id, -1);
    cd__traffic_remove(e, g->info.id);
    pthread_rwlock_unlock(&g->lock);
    gallery_unref(g);
    return CD_OK;
out:
    pthread_rwlock_unlock(&e->lock);
    return rc;
}

/* --- observability --------------------------------------------------- */

void cd_engine_get_stats(cd_engine *e, cd_engine_stats *out)
{
    out->index_rebuilds = atomic_load(&e->rebuilds);
    out->snapshots_written = atomic_load(&e->snapshots);
    out->last_snapshot_unix = atomic_load(&e->last_snapshot);
    out->evaluations_run = atomic_load(&e->evaluations);
    out->evaluations_failed = atomic_load(&e->evaluations_failed);
    out->evaluations_adapted = atomic_load(&e->evaluations_adapted);
}

cd_store *cd_engine_store(cd_engine *e)
{
    return e->st;
}
