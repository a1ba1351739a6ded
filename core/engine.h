/*
 * engine.h - compatd's core as the server sees it.
 *
 * A cd_engine owns a data directory: the store (SQLite, the source of
 * truth) and, per gallery and per model the gallery has embeddings of, one
 * cd_index kept in memory and snapshotted to DATA/index/.  Writes commit
 * to SQLite first and are applied to the indexes before the call returns,
 * under the gallery's write lock, so an index never runs ahead of or
 * behind what was acknowledged.  Searches take the gallery's read lock.
 *
 * On open the engine loads each index's newest snapshot and replays the
 * change sequence after it, or rebuilds from SQLite when the snapshot is
 * missing, unreadable or does not match the store.  A snapshot is bound to
 * the store's identity, its gallery, model and seq, and the hashes of the
 * rows it holds; any difference is logged with the file's name and the
 * index rebuilt.
 *
 * A gallery whose index cannot be built (a spec this compatd refuses, a
 * rebuild or an add that FAISS fails) is unavailable: its searches and
 * writes fail with CD_EUNAVAILABLE saying why, the other galleries serve
 * on, deleting it works, and the next open tries again.
 *
 * Thread safety: every function may be called from any thread once
 * cd_engine_open has returned.  Vectors passed in are validated here too
 * (length, finiteness) and normalised for cosine models.
 */
#ifndef CD_ENGINE_H
#define CD_ENGINE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "error.h"
#include "eval.h"
#include "live.h"
#include "filter.h"
#include "store.h"
#include "vec.h"

typedef struct cd_engine cd_engine;

typedef struct cd_engine_config {
    const char *data_dir;       /* created when missing */
    int snapshot_interval_s;    /* 0: only on close */
    void (*log)(void *ctx, int level, const char *msg); /* may be NULL */
    void *log_ctx;
    /* The start's check of the store (quick_check after a clean stop, the
     * full check after an unclean one) runs on its own thread, beside
     * cd_engine_load_indexes, which waits for its verdict before the
     * engine is ready; until then cd_engine_checked() is false and the
     * caller must not write or serve the store.  Only when the store's
     * schema is current (a migration waits for the check).  false: the
     * check runs inside cd_engine_open. */
    bool check_in_background;
} cd_engine_config;

/* Levels passed to cd_engine_config.log. */
enum { CD_LOG_ERROR = 0, CD_LOG_WARN, CD_LOG_INFO, CD_LOG_DEBUG };

/*
 * Opens the data directory (creating it), opens and migrates the store.
 * Indexes are not loaded yet: call cd_engine_load_indexes().  Fails with
 * CD_EVERSION for a data directory of a newer schema, CD_EIO when it
 * cannot be created or opened.  Close with cd_engine_close().
 */
cd_err cd_engine_open(const cd_engine_config *cfg, cd_engine **out,
                      cd_error *err);

/*
 * Loads or rebuilds every gallery's indexes.  Until it returns, calls that
 * need an index fail with CD_EBUSY.  A gallery that cannot be loaded is
 * made unavailable (logged), not an error of the call, unless the cause
 * is damage in the database (confirmed by cd_store_check): then the call
 * fails with CD_ECORRUPT, nothing is served, and the engine stays not
 * ready.  Starts the periodic snapshot thread.
 */
cd_err cd_engine_load_indexes(cd_engine *e, cd_error *err);

/* True once cd_engine_load_indexes has finished. */
bool cd_engine_ready(cd_engine *e);

/* False while a background check of the store (check_in_background) has
 * not passed; true otherwise. */
bool cd_engine_checked(cd_engine *e);

/*
 * Waits for the background check of the store, if one runs, and returns
 * its verdict (CD_ECORRUPT with the message that refuses a damaged
 * store); CD_OK at once without one.
 */
cd_err cd_engine_wait_checked(cd_engine *e, cd_error *err);

/* Snapshots every index that changed since its last snapshot. */
cd_err cd_engine_snapshot(cd_engine *e, cd_error *err);

/* Stops the snapshot thread, snapshots, frees everything.  Accepts NULL. */
void cd_engine_close(cd_engine *e);

/* --- models ----------------------------------------------------------- */

/* The most compatible_with links a model's chain may have (the model's own
 * link and those after it); cd_engine_declared_compatible follows them all. */
#define CD_COMPAT_CHAIN_MAX 64

/*
 * Creates model m (cd_store_model_create).  Refuses, with CD_EINVAL, a
 * compatible_with whose chain already has CD_COMPAT_CHAIN_MAX links (the
 * new model's chain would be longer).
 */
cd_err cd_engine_model_create(cd_engine *e, const cd_model *m, cd_model *out,
                              cd_error *err);
cd_err cd_engine_model_get(cd_engine *e, const char *name, cd_model *out,
                           cd_error *err);
/* *out is malloc'd; free with free(). */
cd_err cd_engine_model_list(cd_engine *e, cd_model **out, size_t *n,
                            cd_error *err);

/* True when following compatible_with from `from`, at most
 * CD_COMPAT_CHAIN_MAX links, reaches model `to`. */
bool cd_engine_declared_compatible(cd_engine *e, const cd_model *from,
                                   const char *to);

/*
 * The model a request on gallery means: `model`, or the gallery model when
 * model is NULL.  Answered from memory (no SQLite read), since it runs
 * before every upsert and search.  CD_ENOTFOUND for an unknown gallery or
 * model.
 */
cd_err cd_engine_request_model(cd_engine *e, const char *gallery,
                               const char *model, cd_model *out,
                               cd_error *err);

/* --- galleries -------------------------------------------------------- */

/*
 * Creates a gallery for model with an index spec (NULL: "Flat").  A spec
 * outside cd_index_spec_check's forms and bounds, or that FAISS rejects
 * for the model's dimension, is CD_EINVAL.
 */
cd_err cd_engine_gallery_create(cd_engine *e, const char *name,
                                const char *model, const char *index_spec,
                                cd_gallery *out, cd_error *err);
cd_err cd_engine_gallery_get(cd_engine *e, const char *name, cd_gallery *out,
                             cd_error *err);
/*
 * True when gallery name exists and is unavailable; why (may be NULL)
 * then gets CD_EUNAVAILABLE and the reason.  False for a gallery that
 * serves or does not exist.
 */
bool cd_engine_gallery_unavailable(cd_engine *e, const char *name,
                                   cd_error *why);
/* *out is malloc'd; free with free(). */
cd_err cd_engine_gallery_list(cd_engine *e, cd_gallery **out, size_t *n,
                              cd_error *err);
/*
 * Per-model embedding counts of the gallery (models with none left out),
 * ordered by model name; *out is malloc'd, free with free().  Reads the
 * engine's memory once the indexes are loaded, the store before.
 */
cd_err cd_engine_gallery_embeddings(cd_engine *e, const char *name,
                                    cd_model_count **out, size_t *n,
                                    cd_error *err);
cd_err cd_engine_gallery_set_policy(cd_engine *e, const char *name,
                                    cd_query_policy policy, cd_error *err);

/* One route to set on a gallery: queries of `model` go through `adapter`
 * (NULL: the model's route is removed). */
typedef struct cd_route_request {
    const char *model;
    const char *adapter;
} cd_route_request;

/*
 * Changes gallery name's query policy (when policy is not NULL) and its
 * routes (SPEC.md §3.7), all or nothing, in one store transaction.  Each
 * route is checked under the new policy: CD_ENOTFOUND for an unknown
 * model or adapter; CD_EINVAL when the model is the gallery model or is
 * not the adapter's from model; CD_ECONFLICT when the gallery cannot
 * search the adapter's to model (it is not the gallery model and the
 * gallery holds none of its embeddings, or its other items could not be
 * searched as its queries: dim, metric) and CD_ENOTVERIFIED when the
 * policy refuses the (model, adapter) pair or the to model.  Removing a
 * route that is not there is no error.  On failure nothing changes.
 */
cd_err cd_engine_gallery_update(cd_engine *e, const char *name,
                                const cd_query_policy *policy,
                                const cd_route_request *routes, size_t n,
                                cd_error *err);

/* The routes of gallery name by model name; *out is free()d. */
cd_err cd_engine_gallery_routes(cd_engine *e, const char *name, cd_gallery_route **out,
                                size_t *n, cd_error *err);
/* Deletes the gallery, its items and its index snapshots. */
cd_err cd_engine_gallery_delete(cd_engine *e, const char *name,
                                cd_error *err);

/* --- items ------------------------------------------------------------ */

/*
 * Upserts n items' embeddings of `model` (NULL: the gallery model).  Each
 * item's vector must have the model's dim floats, which the engine reads
 * during the call only (for cosine it normalises a copy; ip and l2
 * vectors that lie row after row, as a binary batch's do, are read where
 * they are).  All or nothing; the error names the first
 * bad item by index.  Acknowledged (CD_OK) only after the SQLite commit
 * and once the index holds the batch.  CD_EUNAVAILABLE when the gallery
 * is unavailable, or becomes so because its index cannot take the batch
 * (which the store then holds; see engine.c).
 */
cd_err cd_engine_items_upsert(cd_engine *e, const char *gallery,
                              const char *model, const cd_item_in *items,
                              size_t n, cd_error *err);

/* Reads an item; free *out with cd_item_destroy(). */
cd_err cd_engine_item_get(cd_engine *e, const char *gallery, const char *id,
                          bool with_vectors, cd_item **out, cd_error *err);

/* Deletes an item from the store and from every index of the gallery. */
cd_err cd_engine_item_delete(cd_engine *e, const char *gallery,
                             const char *id, cd_error *err);

/*
 * Deletes the items of gallery named by ids (n of them, each 1..
 * CD_ITEM_ID_MAX bytes, else CD_EINVAL) in one transaction and from every
 * index of the gallery.  Ids not in the gallery are skipped; *deleted is
 * how many were deleted.  All or nothing, as an upsert batch.
 */
cd_err cd_engine_items_delete(cd_engine *e, const char *gallery,
                              const char *const *ids, size_t n,
                              size_t *deleted, cd_error *err);

#define CD_LIST_LIMIT_MAX 1000  /* items per listing page */
#define CD_CURSOR_MAX 400       /* characters of a listing cursor */

/*
 * One page of gallery's items in id order (cd_store_items_page), after
 * cursor (NULL or "": from the start), at most limit (1..
 * CD_LIST_LIMIT_MAX) of them, those pred keeps (NULL: all).  next gets
 * the cursor of the following page, "" when this is the last.  A cursor
 * is opaque: CD_EINVAL for one that is damaged, made by another store or
 * for another gallery (a gallery deleted and made again is another).
 * Free *out with cd_items_destroy().
 */
cd_err cd_engine_items_list(cd_engine *e, const char *gallery,
                            const char *cursor, size_t limit,
                            const cd_item_pred *pred, cd_item ***out,
                            size_t *n, char next[CD_CURSOR_MAX + 1],
                            cd_error *err);

/*
 * cd_engine_items_list of the items filter matches (NULL: every item),
 * evaluated on the gallery's filter fields under its read lock, so the
 * page and the fields agree.  CD_EINVAL for a filter cd_filter_check
 * refuses; otherwise as cd_engine_items_list.
 */
cd_err cd_engine_items_list_filtered(cd_engine *e, const char *gallery,
                                     const char *cursor, size_t limit,
                                     const cd_filter *filter, cd_item ***out,
                                     size_t *n, char next[CD_CURSOR_MAX + 1],
                                     cd_error *err);

/*
 * Deletes every item of gallery that filter matches, in one transaction
 * and from every index, under the gallery's write lock (so no write comes
 * between the match and the delete); *deleted is how many.  All or
 * nothing, as cd_engine_items_delete.
 */
cd_err cd_engine_items_delete_filtered(cd_engine *e, const char *gallery,
                                       const cd_filter *filter,
                                       size_t *deleted, cd_error *err);

/* --- search ----------------------------------------------------------- */

enum {
    CD_INCLUDE_LABEL = 1,
    CD_INCLUDE_METADATA = 2,
    CD_SEARCH_UNCOUNTED = 4,    /* not search traffic (a shadow search):
                                   its hits do not count for the backfill
                                   queue's traffic order */
};

typedef struct cd_hit {
    cd_item_ref item;   /* id, and label / metadata when asked for */
    float score;        /* similarity (cosine, ip) or squared L2 (l2) */
} cd_hit;

/* How many items were searched in one model's space. */
typedef struct cd_searched {
    char model[CD_NAME_MAX + 1];
    int64_t items;
    char adapter[CD_NAME_MAX + 1];  /* the queries were mapped by it; ""
                                       when they were searched as given */
} cd_searched;

typedef struct cd_search_result {
    char model[CD_NAME_MAX + 1];    /* the query model */
    char adapter[CD_NAME_MAX + 1];  /* the adapter asked for or routed
                                       through, "" none */
    size_t nq;                      /* number of queries */
    size_t k;                       /* hits asked for per query */
    size_t *counts;                 /* hits found for query i (<= k) */
    cd_hit *hits;                   /* query i's hits at hits[i*k ...] */
    size_t n_searched;
    cd_searched *searched;
    bool filtered;                  /* a filter was given */
    int64_t matched;                /* then: the gallery's items it matches */
} cd_search_result;

/*
 * Searches nq query vectors of `model` (NULL: the gallery model) for the k
 * (1..CD_K_MAX) closest items, through the gallery's route for `model`
 * when it has one (cd_engine_search_via with no adapter named).  The
 * queries are copied (and normalised for cosine).  *out is freed with
 * cd_search_result_destroy().  CD_EBUSY before the indexes are loaded.
 */
cd_err cd_engine_search(cd_engine *e, const char *gallery, const char *model,
                        const float *queries, size_t nq, size_t k,
                        unsigned include, cd_search_result **out,
                        cd_error *err);

/*
 * cd_engine_search restricted to the items filter matches (NULL: every
 * item; filter.h says how fields compare).  For a Flat index (and any
 * index still staging) the hits are exactly the top k of the matching
 * items; an ANN index answers with its recall on the matching subset,
 * from the index with the filter applied to its candidates, or, when the
 * matching items are few, from an exact pass over their stored vectors
 * (engine_search.c's plan).  A hot-refresh search filters both spaces.
 * CD_EINVAL for a filter cd_filter_check refuses.
 */
cd_err cd_engine_search_filtered(cd_engine *e, const char *gallery,
                                 const char *model, const float *queries,
                                 size_t nq, size_t k, unsigned include,
                                 const cd_filter *filter,
                                 cd_search_result **out, cd_error *err);
/* How one search is answered; zero-initialised: a plain search, as the
 * index is tuned. */
typedef struct cd_search_options {
    const char *adapter;    /* the adapter its queries go through (SPEC.md
                               §3.7); NULL: the gallery's route for the
                               query model, if any.  Its from model must
                               be the query model (CD_EINVAL; CD_ENOTFOUND
                               for an unknown adapter).  Each query is
                               mapped (cd_adapter_map) and searched as a
                               query of its to model, except on the items
                               that have an embedding of the query model:
                               those are searched with the query as given,
                               in its own space, when that space's metric
                               is the to model's (hot refresh).
                               CD_ECONFLICT when the gallery cannot search
                               the to model; CD_ENOTVERIFIED when its
                               policy refuses the (query model, adapter)
                               pair. */
    int ef_search;      /* HNSW candidates explored, 1..4096; 0: the index's */
    int nprobe;         /* IVF lists probed, 1..nlist; 0: the index's */
    bool exact;         /* brute force over the stored vectors (a Flat
                           index's own answer, which is exact already) */
    const cd_filter *filter;    /* only the items it matches (NULL: all);
                                   see cd_engine_search_filtered */
} cd_search_options;

/*
 * cd_engine_search with options (NULL: none).  A parameter the gallery's
 * index does not have, or out of its range, is CD_EINVAL
 * (cd_index_params_check); it applies to this search alone.  An exact
 * search reads every stored vector of the models searched.
 */
cd_err cd_engine_search_with(cd_engine *e, const char *gallery,
                             const char *model, const float *queries,
                             size_t nq, size_t k, unsigned include,
                             const cd_search_options *opt,
                             cd_search_result **out, cd_error *err);

/*
 * The recall@10 of gallery's index over its gallery-model vectors
 * against exact search (SPEC.md §3.9 index_recall): up to
 * CD_RECALL_SAMPLE stored vectors, evenly spread in rowid order, are the
 * queries; 1.0 for an exact index (Flat, or any type still staging) or an
 * empty gallery.  Measured when first asked for and again after the index
 * is rebuilt or a tenth as many items as it held have been written or
 * deleted; otherwise the last measurement, cheaply.  A measurement reads
 * the gallery's vectors twice under its read lock.  CD_EUNAVAILABLE,
 * CD_ENOTFOUND, CD_EBUSY as for a search.
 */
#define CD_RECALL_SAMPLE 100
#define CD_RECALL_K 10
cd_err cd_engine_index_recall(cd_engine *e, const char *gallery, double *out,
                              cd_error *err);

void cd_search_result_destroy(cd_search_result *r);

/* --- live agreement (SPEC.md §3.8, core/engine_live.c) ----------------- */

/*
 * Runs res's queries again as `shadow` (res->nq vectors of the gallery
 * model, in the same order) on the gallery model's index with res->k
 * and the query's filter (NULL: none), so that both rank the same items,
 * compares each pair (overlap@k, top-1 retained), and adds them to the rolling
 * numbers of (gallery, res->model, adapter; NULL is "").  *out gets
 * res->nq agreements (free()d by the caller), NULL on failure.
 * CD_EINVAL when res->model is the gallery model (nothing to compare);
 * CD_ENOTFOUND when the gallery is gone (nothing recorded then); the
 * shadow search's own errors otherwise.  Nothing is recorded on failure.
 */
cd_err cd_engine_shadow_search(cd_engine *e, const char *gallery,
                               const cd_search_result *res,
                               const char *adapter, const cd_filter *filter,
                               const float *shadow, cd_agreement **out,
                               cd_error *err);

/*
 * The live numbers of gallery (NULL: of every gallery), sorted, into *out
 * (free()d by the caller; NULL when none).  Returns their count.
 */
size_t cd_engine_live_list(cd_engine *e, const char *gallery,
                           cd_live_stats **out);

/* --- evaluations (schema/concepts.md §4) ------------------------------ */

/* What to evaluate; everything is the caller's and only read. */
typedef struct cd_eval_request {
    const char *gallery;
    const char *query_model;
    const char *adapter;        /* NULL: raw probes; else the adapter that
                                   maps them into the gallery model */
    bool mixed;                 /* gallery_view mixed (SPEC.md §3.8): items
                                   with a query-model embedding ranked in
                                   that space with the raw probes */
    cd_eval_set probes;         /* query-model probes, labelled */
    cd_eval_set baseline;       /* gallery-model vectors of the same probes,
                                   matched by id; n == 0: no baseline */
    const int *ks;              /* as cd_eval_input's */
    size_t n_ks;
    int primary_k;              /* the criterion's metric: k, or 0 for map */
    const cd_filter *filter;    /* the evaluation gallery is the items it
                                   matches; NULL: every item */
    const char *filter_text;    /* stored with the evaluation (JSON) */
} cd_eval_request;

/*
 * Evaluates req->query_model on req->gallery (schema/concepts.md §4) and
 * stores the evaluation.  The probes (and the baseline) are ranked against
 * every labelled item's gallery-model embedding, exactly (whatever index
 * serves search), with the paragon when every such item has a query-model
 * embedding too.  Vectors are copied, checked and normalised for cosine
 * here.  With req->adapter the probes are mapped through it (SPEC.md
 * §3.7) and ranked as probes of its `to` model, which must be the gallery
 * model; the report then has no paragon (the paragon ranks raw probes in
 * the query model's space, another space than the mapped ones).  On
 * success *out is the stored evaluation as
 * cd_engine_evaluation_get reads it back: id, created_at, names, verdict,
 * criterion ("<metric> new->old ..."), summary and the whole report; free
 * it with cd_evaluation_finish().  Errors: CD_EBUSY while indexes load,
 * CD_ENOTFOUND (gallery, model; or the gallery deleted meanwhile),
 * CD_EDIM / CD_EINVAL (dim or metric differ from the gallery model's),
 * for an adapter CD_ENOTFOUND (no such adapter), CD_EINVAL (its `from`
 * is not the query model), CD_ECONFLICT (its `to` is not the gallery
 * model),
 * With req->mixed, the items that have a query-model embedding are ranked
 * by it against the raw probes and the others by their gallery-model
 * embedding against the (mapped) probes, together (cd_eval_input's mixed
 * view); the report's coverage is the share of the former.  CD_EINVAL
 * when the two models' metrics differ.
 * CD_EVECTOR, cd_eval_run's CD_EINVAL, CD_EUNPROCESSABLE when the gallery
 * has no labelled item; then *out holds nothing and nothing is stored.
 */
cd_err cd_engine_evaluation_run(cd_engine *e, const cd_eval_request *req,
                                cd_evaluation *out, cd_error *err);

/* Evaluation id with its whole report; free with cd_evaluation_finish(). */
cd_err cd_engine_evaluation_get(cd_engine *e, int64_t id, cd_evaluation *out,
                                cd_error *err);

/*
 * A gallery's evaluations with reports, newest first, at most limit with
 * id < before (0: none), of query_model only when not NULL.  A listing is
 * a summary: the reports have no by-label lines or flip ids (n_labels and
 * n_negative_flips are 0).  Free *out with cd_evaluations_destroy().
 */
cd_err cd_engine_evaluation_list(cd_engine *e, const char *gallery,
                                 const char *query_model, int64_t before,
                                 size_t limit, cd_evaluation **out, size_t *n,
                                 cd_error *err);

/*
 * The latest evaluation of each query model, and of each (query model,
 * adapter) pair, on gallery (NULL: on every gallery), without reports
 * (cd_store_evaluation_latest).  Free *out with cd_evaluations_destroy().
 */
cd_err cd_engine_evaluation_latest(cd_engine *e, const char *gallery,
                                   cd_evaluation **out, size_t *n,
                                   cd_error *err);

/* --- adapters (SPEC.md §3.7; engine_adapters.c) ------------------------- */

/* What to fit; everything is the caller's and only read. */
typedef struct cd_adapter_fit_request {
    const char *name;           /* the new adapter's name */
    const char *from, *to;      /* model names */
    bool kind_given;            /* false: cd_adapter_default_kind */
    cd_adapter_kind kind;
    double ridge;               /* λ: finite, >= 0 */
    const char *gallery;        /* fit on its paired items; or NULL and: */
    const float *from_vectors;  /* n_pairs x dim of from, row-major */
    const float *to_vectors;    /* n_pairs x dim of to */
    size_t n_pairs;
} cd_adapter_fit_request;

/*
 * Fits and stores an adapter (cd_adapter_fit on the pairs, then
 * cd_store_adapter_create): on the pairs of req->gallery (every item with
 * embeddings of both models, in insertion order) or on req's own pairs,
 * exactly one of the two.  The fit runs without any engine or gallery
 * lock held, so searches and writes go on meanwhile.  On success *out is
 * the stored adapter without weights (free with cd_adapter_record_finish).
 * Errors, with nothing stored: CD_EINVAL (a bad name, both or neither of
 * gallery and pairs, a negative or non-finite ridge, orthogonal with
 * different dims or with a ridge), CD_ENOTFOUND (model, gallery),
 * CD_EEXISTS (name taken, also when taken while fitting), CD_EVECTOR
 * (a pair that is not finite, or zero under cosine), CD_EUNPROCESSABLE
 * (too few pairs: then *pairs_needed, which may be NULL, is the least
 * number the fit takes, and 0 in every other case; or a singular
 * system), CD_ENOMEM.
 */
cd_err cd_engine_adapter_fit(cd_engine *e, const cd_adapter_fit_request *req,
                             cd_adapter_record *out, size_t *pairs_needed,
                             cd_error *err);

/* The adapter called name, with its weights and bias when with_weights;
 * CD_ENOTFOUND when none.  Free with cd_adapter_record_finish(). */
cd_err cd_engine_adapter_get(cd_engine *e, const char *name, bool with_weights,
                             cd_adapter_record *out, cd_error *err);

/* Every adapter by name, without weights; free with
 * cd_adapter_records_destroy(). */
cd_err cd_engine_adapter_list(cd_engine *e, cd_adapter_record **out, size_t *n,
                              cd_error *err);

/*
 * The evaluations that mapped their probes through the adapter called
 * name (this adapter, not an earlier one of the same name), newest first,
 * at most limit, without reports; CD_ENOTFOUND when there is no such
 * adapter.  Free *out with cd_evaluations_destroy().
 */
cd_err cd_engine_adapter_evaluations(cd_engine *e, const char *name, size_t limit,
                                     cd_evaluation **out, size_t *n, cd_error *err);

/* Deletes the adapter called name: CD_ENOTFOUND when none, CD_ECONFLICT
 * while a gallery routes queries through it (cd_store_adapter_delete). */
cd_err cd_engine_adapter_delete(cd_engine *e, const char *name, cd_error *err);

/* --- finishing an upgrade (SPEC.md §3.8; engine_lifecycle.c) ---------- */

typedef enum cd_backfill_order {
    CD_BACKFILL_TRAFFIC,    /* most often returned by searches first, then
                               insertion order */
    CD_BACKFILL_ID,         /* insertion order */
} cd_backfill_order;

/* Where a page of the backfill queue starts: after the item with this
 * rowid (and, in traffic order, this count).  rowid 0: at the start. */
typedef struct cd_backfill_cursor {
    int64_t hits;
    int64_t rowid;
} cd_backfill_cursor;

typedef struct cd_backfill_item {
    char *id;
    char *label;            /* NULL when none */
    int64_t rowid;
    int64_t hits;           /* appearances in search results */
} cd_backfill_item;

typedef struct cd_backfill_page {
    int64_t items;          /* the gallery's items */
    int64_t missing;        /* of which have no embedding of the model */
    cd_backfill_item *list; /* up to limit of those, next first */
    size_t n;
    bool more;              /* further items follow the last one */
    cd_backfill_cursor last;    /* the last one's position, when n > 0 */
} cd_backfill_page;

/*
 * A page of gallery's backfill queue for model: the items with no
 * embedding of model, after `after` in the given order, at most limit
 * (1..CD_BACKFILL_LIMIT_MAX).  In id order a listing is exact under
 * concurrent writes (every item lacking the model throughout appears
 * once); in traffic order too while no search moves an item's count past
 * the cursor.  Free *out with cd_backfill_page_finish().  CD_ENOTFOUND
 * (gallery, model), CD_EINVAL (limit), CD_EBUSY while loading.
 */
#define CD_BACKFILL_LIMIT_MAX 10000
cd_err cd_engine_backfill(cd_engine *e, const char *gallery, const char *model,
                          cd_backfill_order order, const cd_backfill_cursor *after,
                          size_t limit, cd_backfill_page *out, cd_error *err);
void cd_backfill_page_finish(cd_backfill_page *p);

/*
 * Makes model the gallery model, when every item has an embedding of it:
 * at once for every call (under the engine's write lock) and in one store
 * transaction.  The former gallery model stays a query model.  Promoting
 * the gallery model again is a no-op.  CD_ECONFLICT with *missing (may be
 * NULL) the number of items without one; CD_EINVAL when the gallery's
 * index spec cannot hold the model's dim (cd_index_spec_check);
 * CD_ENOTFOUND, CD_EUNAVAILABLE, CD_EBUSY.  On failure nothing changes.
 */
cd_err cd_engine_gallery_promote(cd_engine *e, const char *gallery,
                                 const char *model, int64_t *missing,
                                 cd_error *err);

/*
 * Retires model's embeddings from gallery: deletes them, its index and
 * the index's snapshots, and gives the space back to the file system
 * (cd_store_reclaim).  *deleted (may be NULL): how many.  CD_ECONFLICT
 * for the gallery model, while an adapter route of the gallery needs the
 * model, or when some items have no embedding of any other model (they
 * would be left with none); CD_ENOTFOUND, CD_EUNAVAILABLE, CD_EBUSY.
 */
cd_err cd_engine_embeddings_retire(cd_engine *e, const char *gallery,
                                   const char *model, int64_t *deleted,
                                   cd_error *err);

/* --- observability ---------------------------------------------------- */

typedef struct cd_engine_stats {
    int64_t index_rebuilds;         /* since open */
    int64_t snapshots_written;      /* since open */
    int64_t last_snapshot_unix;     /* 0: none yet */
    int64_t evaluations_run;        /* evaluations stored since open */
    int64_t evaluations_failed;     /* of which failed the criterion */
    int64_t evaluations_adapted;    /* of which mapped their probes */
} cd_engine_stats;

void cd_engine_get_stats(cd_engine *e, cd_engine_stats *out);

/* The store, for read-only listings the engine does not wrap. */
cd_store *cd_engine_store(cd_engine *e);

#endif
