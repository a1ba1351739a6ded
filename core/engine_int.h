/*
 * engine_int.h - what the engine's own files share: the engine and its
 * galleries in memory, and the helpers more than one of them calls.
 * Included only by core/engine*.c (the public face is engine.h).  The
 * invariants and lock order are in engine.c's header comment.
 */
#ifndef CD_ENGINE_INT_H
#define CD_ENGINE_INT_H

#include "engine.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>

#include "adapter.h"
#include "filter.h"
#include "idset.h"
#include "index.h"
#include "live.h"

#define SCAN_BATCH 4096

/* Adapters kept built for searches (engine_adapters.c). */
#define ADAPTER_CACHE 16

/* A built adapter shared by the searches through it; freed by the last
 * of the cache and its users to let go (cd__adapter_release). */
typedef struct cd__adapter_ref {
    int64_t id;             /* its row id: never reused, so a cached
                               adapter never goes stale */
    cd_adapter *ad;
    atomic_int refs;        /* the cache's one, and each user's */
} cd__adapter_ref;

typedef struct gal_index {
    cd_model model;         /* the model whose embeddings it holds */
    cd_index *ix;           /* NULL until the first embedding arrives */
    int64_t saved_seq;      /* gallery seq of its newest snapshot, -1 none */
    bool dirty;             /* changed since that snapshot */
    bool hidden;            /* has ids hidden, not removed (HNSW): it must
                               be rebuilt before it can be saved */
    cd__idset members;      /* rowids with an embedding of this model in
                               the store (what the index should hold) */
} gal_index;

/* How often each item was returned by a search: rowid -> count, open
 * addressing (keys -1 where free, load <= 1/2). */
typedef struct cd__traffic {
    int64_t *keys;
    int64_t *counts;
    size_t cap;             /* 0 or a power of two */
    size_t len;
    bool dirty;             /* changed since saved */
} cd__traffic;

typedef struct gallery {
    cd_gallery info;        /* cached row; count is not kept up to date */
    cd_model model;         /* the gallery model */
    atomic_int refs;        /* the engine's list, and a snapshot pass that
                               holds it without the engine lock */
    atomic_bool deleted;    /* out of the list: nothing more is saved */
    pthread_rwlock_t lock;
    gal_index *indexes;
    size_t n_indexes;
    int64_t seq;            /* last change applied to the indexes */
    bool unavailable;       /* an index cannot be built: no search, no
                               write until a restart rebuilds it */
    char why[CD_ERRMSG_MAX];    /* what failed, when unavailable */
    pthread_mutex_t overlap_mu; /* guards the two fields below, which
                                   searches (read lock) fill in */
    int64_t overlap_model;  /* model whose overlap is cached, 0: none */
    int64_t overlap_seq;    /* gallery seq it was counted at */
    size_t overlap;         /* gallery-model items that also have one of
                               overlap_model */
    pthread_mutex_t traffic_mu; /* guards traffic, which searches (read
                                   lock) count into */
    cd__traffic traffic;    /* appearances in search results per rowid
                               (engine_lifecycle.c) */
    cd_fields *fields;      /* every item's label and metadata members,
                               for filters; kept with the indexes */
    atomic_llong changes;   /* items written or deleted since open */
    atomic_bool rebuilt;    /* the gallery-model index was rebuilt since
                               its recall was measured */
    pthread_mutex_t recall_mu;  /* one measurement at a time; guards: */
    bool recall_known;      /* recall holds a measurement */
    double recall;          /* index_recall (engine_search.c) */
    int64_t recall_changes; /* `changes` when it was measured */
    int64_t recall_items;   /* vectors the index held then */
} gallery;

struct cd_engine {
    char *data_dir;
    char *index_dir;
    char *db_path;          /* DATA/compatd.db */
    char *marker_path;      /* DATA/compatd.running while open, else NULL */
    cd_store *st;
    char store_id[CD_STORE_ID_LEN + 1]; /* bound into every snapshot */
    cd_engine_config cfg;

    pthread_rwlock_t lock;  /* guards gals / n_gals */
    gallery **gals;
    size_t n_gals;

    pthread_mutex_t models_mu;  /* guards the model cache */
    cd_model *models;
    size_t n_models;

    atomic_bool ready;
    atomic_llong rebuilds;
    atomic_llong snapshots;
    atomic_llong last_snapshot;
    atomic_llong evaluations;
    atomic_llong evaluations_failed;
    atomic_llong evaluations_adapted;

    pthread_mutex_t snap_mu;    /* one snapshot pass at a time */
    pthread_t snap_thread;
    bool snap_running;
    pthread_mutex_t stop_mu;
    pthread_cond_t stop_cv;
    bool stopping;

    pthread_mutex_t adapters_mu;    /* guards the adapter cache below */
    cd__adapter_ref *adapters[ADAPTER_CACHE];   /* most recent first */
    cd_live *live;              /* live agreement per (gallery, query
                                   model, adapter); its own lock */

    pthread_mutex_t check_mu;   /* guards the two fields below */
    bool checked;               /* the store was checked in this run */
    cd_error check_err;         /* its verdict (code CD_OK: healthy) */
    bool pages_checked;         /* every page of the store passed
                                   quick_check or the full check at this
                                   open, or will have before the engine
                                   is ready (a background check: set
                                   before any load; flat_load) */
    bool bg_wanted;             /* a background check is to run */
    pthread_t bg_thread;        /* the background check, while bg_joinable */
    bool bg_joinable;
    bool bg_full;               /* it runs the full check, not quick_check */
    cd_err bg_rc;               /* its verdict, once joined */
    cd_error bg_err;
    atomic_bool bg_passed;      /* no background check, or it passed */
};

void cd__elog(cd_engine *e, int level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
cd_err cd__adapter_acquire(cd_engine *e, const cd_adapter_record *rec,
                           cd__adapter_ref **out, cd_error *err);
void cd__adapter_release(cd__adapter_ref *ref);
void cd__adapters_forget(cd_engine *e, int64_t id);
cd_err cd__gallery_check(const gallery *g, cd_error *err);
cd_err cd__gallery_enter(cd_engine *e, const char *name, gallery **out,
                         cd_error *err);
cd_err cd__gallery_fail(cd_engine *e, gallery *g, const char *why,
                        cd_error *err);
cd_err cd__index_rebuild(cd_engine *e, gallery *g, gal_index *gi,
                         cd_error *err);
gal_index *cd__index_slot(gallery *g, int64_t model_id);
gal_index *cd__index_slot_add(gallery *g, const cd_model *m);
cd_err cd__fields_read(cd_engine *e, gallery *g, const int64_t *rowids,
                       size_t n, cd_error *err);
cd_err cd__members_batch(void *ctx, const int64_t *rowids,
                         const float *vectors, size_t n);
cd_err cd__model_by_name(cd_engine *e, const char *name, cd_model *out,
                         cd_error *err);
gallery *cd__gallery_find(cd_engine *e, const char *name);
char *cd__str_printf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Removes the snapshot files of (gallery_id, model_id), model_id < 0: all. */
void cd__snapshot_remove(cd_engine *e, int64_t gallery_id, int64_t model_id);

/* engine_lifecycle.c: the traffic counts of a gallery. */
/* Counts one appearance of each of ids (n, -1 ignored); takes traffic_mu. */
void cd__traffic_note(gallery *g, const int64_t *ids, size_t n);
/* Frees g's counts. */
void cd__traffic_finish(cd__traffic *t);
/* Reads g's counts file, when there is one that belongs to this store and
 * gallery (a missing or foreign file: counts start at zero). */
void cd__traffic_load(cd_engine *e, gallery *g);
/* Writes g's counts when they changed (the caller holds g's lock). */
cd_err cd__traffic_save(cd_engine *e, gallery *g, cd_error *err);
/* Removes g's counts file. */
void cd__traffic_remove(cd_engine *e, int64_t gallery_id);

cd_err cd__vector_ready(const cd_model *m, float *v, const char *what,
                        size_t i, cd_error *err);

#endif
