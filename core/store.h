/*
 * store.h - the SQLite source of truth.
 *
 * A cd_store owns one data directory's SQLite database (WAL mode): models,
 * galleries, items with their labels and metadata, and every embedding
 * vector as a BLOB of little-endian float32.  An item's rowid (items.rowid,
 * never reused: AUTOINCREMENT) is its id in every FAISS index.
 *
 * Change sequence: each gallery has a counter `seq`.  Every write that
 * changes a gallery's vectors (an upsert batch, an item delete) takes the
 * next value in the same transaction; embeddings rows carry the seq that
 * last wrote them and deletes leave a tombstone with theirs.  An index
 * snapshot taken at seq S is brought up to date by replaying the rows and
 * tombstones with seq > S.
 *
 * Thread safety: every function may be called from any thread.  Writes are
 * serialised on one connection; reads use a small pool of read connections
 * and so run beside writes (WAL).  All results are copies owned by the
 * caller.  On failure, out-parameters are set to NULL/0 and nothing stored
 * changes (each write is one transaction).
 */
#ifndef CD_STORE_H
#define CD_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "adapter.h"
#include "error.h"
#include "filter.h"
#include "eval.h"
#include "text.h"
#include "vec.h"

typedef struct cd_store cd_store;

/* The schema version this binary writes (schema/NNN_*.sql, highest NNN). */
#define CD_SCHEMA_VERSION 9

typedef enum cd_query_policy {
    CD_POLICY_VERIFIED = 0, /* latest evaluation passed (the default) */
    CD_POLICY_DECLARED,     /* compatible_with chain reaches the gallery model */
    CD_POLICY_ANY           /* same dim and metric is enough */
} cd_query_policy;

const char *cd_policy_name(cd_query_policy p);
bool cd_policy_parse(const char *s, cd_query_policy *out);

typedef struct cd_model {
    int64_t id;                                 /* rowid in models */
    char name[CD_NAME_MAX + 1];
    int dim;                                    /* 1..CD_DIM_MAX */
    cd_metric metric;
    char compatible_with[CD_NAME_MAX + 1];      /* "" when none */
    char description[CD_DESCRIPTION_MAX + 1];   /* "" when none */
    char created_at[32];                        /* RFC 3339 UTC */
} cd_model;

typedef struct cd_gallery {
    int64_t id;                         /* rowid in galleries, never reused */
    char name[CD_NAME_MAX + 1];
    int64_t model_id;                   /* the gallery model */
    char model[CD_NAME_MAX + 1];        /* its name */
    char index_spec[CD_SPEC_MAX + 1];   /* FAISS index-factory string */
    cd_query_policy policy;
    int64_t count;                      /* items in the gallery */
    int64_t seq;                        /* last change sequence number */
    char created_at[32];
} cd_gallery;

/* One item of an upsert batch.  Strings are NUL-terminated UTF-8. */
typedef struct cd_item_in {
    const char *id;         /* 1..CD_ITEM_ID_MAX bytes */
    const char *label;      /* NULL: keep the stored label (none if new) */
    const char *metadata;   /* JSON object text; NULL: keep the stored one */
    const float *vector;    /* dim floats, already validated/normalised */
} cd_item_in;

/* Number of a gallery's items that have an embedding of one model. */
typedef struct cd_model_count {
    int64_t model_id;
    char model[CD_NAME_MAX + 1];
    int64_t items;
} cd_model_count;

/* One of an item's embeddings. */
typedef struct cd_item_embedding {
    int64_t model_id;
    char model[CD_NAME_MAX + 1];
    int dim;
    float *vector;          /* dim floats; NULL unless vectors were asked for */
} cd_item_embedding;

/* An item as stored.  Free with cd_item_destroy(). */
typedef struct cd_item {
    int64_t rowid;
    char *id;
    char *label;                    /* NULL when none */
    char *metadata;                 /* JSON object text, NULL when none */
    size_t n_embeddings;
    cd_item_embedding *embeddings;  /* ordered by model name */
} cd_item;

/* Frees an item and everything it points to.  Accepts NULL. */
void cd_item_destroy(cd_item *item);

/* What a search result needs to show of an item. */
typedef struct cd_item_ref {
    char *id;
    char *label;        /* NULL when none or not asked for */
    char *metadata;     /* NULL when none or not asked for */
} cd_item_ref;

/*
 * Opens (creating when missing, mode 0600) the database at path, sets WAL mode and
 * migrates an older schema forward.  Fails with CD_EVERSION when the file
 * was written by a newer schema, CD_EIO when it cannot be opened and
 * CD_ECORRUPT when it is not a compatd database.  *out is NULL on failure;
 * on success the caller closes it with cd_store_close().
 */
cd_err cd_store_open(const char *path, cd_store **out, cd_error *err);

/* Closes every connection.  Accepts NULL. */
void cd_store_close(cd_store *st);

/* The schema version of the open database. */
int cd_store_schema_version(cd_store *st);

#define CD_STORE_ID_LEN 32  /* hex characters of a store identity */

/*
 * Copies the store's identity (schema/004_identity.sql: 32 hex characters,
 * made with the database, never changed) to out.  CD_EIO or CD_ECORRUPT
 * when it cannot be read; out is "" then.
 */
cd_err cd_store_identity(cd_store *st, char out[CD_STORE_ID_LEN + 1],
                         cd_error *err);

/* --- models ----------------------------------------------------------- */

/*
 * Creates a model from m's name, dim, metric, compatible_with and
 * description (other fields ignored).  Fails with CD_EINVAL on a bad name,
 * dim or compatible_with name, CD_ENOTFOUND when compatible_with names no
 * model, CD_EEXISTS when the name is taken.  *out (may be NULL) receives
 * the stored model.
 */
cd_err cd_store_model_create(cd_store *st, const cd_model *m, cd_model *out,
                             cd_error *err);

/* Looks a model up by name (CD_ENOTFOUND when none). */
cd_err cd_store_model_get(cd_store *st, const char *name, cd_model *out,
                          cd_error *err);

/* Looks a model up by id (CD_ENOTFOUND when none). */
cd_err cd_store_model_get_by_id(cd_store *st, int64_t id, cd_model *out,
                                cd_error *err);

/* All models by name; *out is malloc'd (free()), *n its length. */
cd_err cd_store_model_list(cd_store *st, cd_model **out, size_t *n,
                           cd_error *err);

/* --- galleries -------------------------------------------------------- */

/*
 * Creates an empty gallery bound to model `model` with index_spec (the
 * caller has checked that FAISS accepts it).  CD_EINVAL on a bad name,
 * CD_ENOTFOUND when the model is unknown, CD_EEXISTS when taken.
 */
cd_err cd_store_gallery_create(cd_store *st, const char *name,
                               const char *model, const char *index_spec,
                               cd_gallery *out, cd_error *err);

cd_err cd_store_gallery_get(cd_store *st, const char *name, cd_gallery *out,
                            cd_error *err);

/* All galleries by name; *out is malloc'd (free()), *n its length. */
cd_err cd_store_gallery_list(cd_store *st, cd_gallery **out, size_t *n,
                             cd_error *err);

cd_err cd_store_gallery_set_policy(cd_store *st, int64_t gallery_id,
                                   cd_query_policy policy, cd_error *err);

/*
 * Makes model_id the gallery model of gallery_id (store_lifecycle.c), in
 * one transaction and only when every item of the gallery has an
 * embedding of it: otherwise CD_ECONFLICT with *missing (may be NULL) the
 * number of items that have none, and nothing changes.  CD_ENOTFOUND for
 * an unknown gallery or model.
 */
cd_err cd_store_gallery_promote(cd_store *st, int64_t gallery_id,
                                int64_t model_id, int64_t *missing,
                                cd_error *err);

/*
 * Deletes every embedding of model_id in gallery_id in one transaction;
 * *deleted (may be NULL) is how many.  CD_ECONFLICT, changing nothing,
 * when model_id is the gallery model or an adapter route of the gallery
 * needs it (routes that model's queries, or its adapter maps from or to
 * it); CD_ENOTFOUND for an unknown gallery.  The pages freed stay in the
 * file until cd_store_reclaim.
 */
cd_err cd_store_embeddings_retire(cd_store *st, int64_t gallery_id,
                                  int64_t model_id, int64_t *deleted,
                                  cd_error *err);

/*
 * Gives the database's free pages back to the file system: an
 * incremental vacuum (the first time on a database made before
 * auto_vacuum, a VACUUM that converts it), then a truncating checkpoint.
 * Takes the write connection for as long as it runs.
 */
cd_err cd_store_reclaim(cd_store *st, cd_error *err);

/*
 * Rewrites the database at db_path, which no process may have open, with
 * full pages (SQLite's VACUUM: b-tree pages filled by appends keep about
 * a tenth of their room free; free pages go too).  Needs the file's size
 * again in free disk while it runs.  The content, rowids included, stays
 * as it was.  *bytes_before / *bytes_after: the file and its WAL.
 * CD_EBUSY, changing nothing, when another connection has it open (a
 * daemon serving it); CD_ENOTFOUND when there is no file.
 */
cd_err cd_store_compact(const char *db_path, int64_t *bytes_before,
                        int64_t *bytes_after, cd_error *err);

/* Deletes a gallery with all its items, embeddings and tombstones. */
cd_err cd_store_gallery_delete(cd_store *st, int64_t gallery_id,
                               cd_error *err);

/*
 * Per model, how many of the gallery's items have an embedding of it,
 * ordered by model name.  *out is malloc'd (free()).  Counts the rows, so
 * it reads all of the gallery's embeddings.
 */
cd_err cd_store_gallery_embeddings(cd_store *st, int64_t gallery_id,
                                   cd_model_count **out, size_t *n,
                                   cd_error *err);

/*
 * The models of which the gallery has embeddings, as
 * cd_store_gallery_embeddings gives them but with items 0 (not counted):
 * one key probe per model, whatever the gallery's size.
 */
cd_err cd_store_gallery_models(cd_store *st, int64_t gallery_id,
                               cd_model_count **out, size_t *n, cd_error *err);

/* --- items ------------------------------------------------------------ */

/*
 * Stores n items' embeddings of model_id (dim floats each) in one
 * transaction, creating items that do not exist and updating label and
 * metadata where given.  All or nothing: on any failure nothing is stored
 * and the message names the first offending item by index ("item 500:
 * ...").  An id given twice in one batch is CD_EINVAL.
 *
 * On success: *seq_out is the batch's change sequence number, rowids
 * (caller-allocated, n entries) the items' rowids, and replaced (caller-
 * allocated, n entries, may be NULL) tells which items already had an
 * embedding of this model (so an index must drop the old vector).
 */
cd_err cd_store_items_upsert(cd_store *st, int64_t gallery_id,
                             int64_t model_id, int dim,
                             const cd_item_in *items, size_t n,
                             int64_t *seq_out, int64_t *rowids,
                             bool *replaced, cd_error *err);

/*
 * Reads one item by its id; with_vectors also loads its embeddings.
 * CD_ENOTFOUND when absent.  Free *out with cd_item_destroy().
 */
cd_err cd_store_item_get(cd_store *st, int64_t gallery_id, const char *id,
                         bool with_vectors, cd_item **out, cd_error *err);

/*
 * Deletes an item, its embeddings, and writes a tombstone.  *rowid_out is
 * the deleted rowid and *seq_out the change sequence number.
 */
cd_err cd_store_item_delete(cd_store *st, int64_t gallery_id, const char *id,
                            int64_t *rowid_out, int64_t *seq_out,
                            cd_error *err);

/*
 * Deletes the items of gallery_id named by ids (n of them) in one
 * transaction: their embeddings and rows, a tombstone each, all at one
 * change sequence number.  Ids that are not in the gallery (or named
 * twice) are skipped, not errors.  On success *deleted is how many were
 * deleted, rowids (caller-allocated, n entries) their rowids in its first
 * *deleted entries, and *seq_out the change sequence number (0 when
 * nothing was deleted: then nothing changed).  CD_ENOTFOUND when the
 * gallery is gone; on any failure nothing is deleted.
 */
cd_err cd_store_items_delete(cd_store *st, int64_t gallery_id,
                             const char *const *ids, size_t n,
                             int64_t *rowids, size_t *deleted,
                             int64_t *seq_out, cd_error *err);

/*
 * Which items a listing keeps (a filter): keep() sees each candidate's
 * rowid, id, label and metadata (no embeddings yet) and returns true to
 * list it.  It runs inside the listing's read transaction and must not
 * call the store.
 */
typedef struct cd_item_pred {
    bool (*keep)(void *ctx, const cd_item *item);
    void *ctx;
} cd_item_pred;

/*
 * One page of a gallery's items in id order (bytewise), those whose id is
 * greater than `after` (NULL or "": from the start), at most limit (>= 1)
 * of them, each with its label, metadata and embeddings' models (no
 * vectors); only those pred keeps when pred is not NULL.  Read in one
 * transaction.  Keyset paging on the unique id: an item that exists for
 * the whole of a listing is listed exactly once, whatever is written
 * meanwhile.  *more is true when items follow the page.  *out is an array
 * of *n items; free it with cd_items_destroy().
 */
cd_err cd_store_items_page(cd_store *st, int64_t gallery_id,
                           const char *after, size_t limit,
                           const cd_item_pred *pred, cd_item ***out,
                           size_t *n, bool *more, cd_error *err);

/* Frees n items from cd_store_items_page and the array.  Accepts NULL. */
void cd_items_destroy(cd_item **items, size_t n);

/*
 * For each rowid, the item's id (and label / metadata when asked);
 * refs[i].id is NULL for a rowid that no longer exists.  refs is caller-
 * allocated (n entries); free its strings with cd_item_refs_finish().
 */
cd_err cd_store_item_refs(cd_store *st, const int64_t *rowids, size_t n,
                          bool with_label, bool with_metadata,
                          cd_item_ref *refs, cd_error *err);

void cd_item_refs_finish(cd_item_ref *refs, size_t n);

/*
 * Called once per item with its label (NULL when none) and its metadata
 * object's top-level members (n may be 0; strings valid during the call
 * only).  A non-zero return stops the read and is passed back.
 */
typedef cd_err (*cd_item_fields_fn)(void *ctx, int64_t rowid,
                                     const char *label,
                                     const cd_field_value *values, size_t n);

/*
 * Reads what filters need (filter.h) of the gallery's items: of every
 * item (in no given order) when rowids is NULL, else of the n given rowids
 * (absent ones skipped).  SQLite's JSON functions parse the metadata;
 * text that is not a JSON object reads as no members.  One read
 * transaction.
 */
cd_err cd_store_item_fields(cd_store *st, int64_t gallery_id,
                            const int64_t *rowids, size_t n,
                            cd_item_fields_fn fn, void *ctx, cd_error *err);

/*
 * The embeddings of model_id (dim floats each) of the n given rowids of
 * the gallery into vectors (n * dim, caller-allocated); found[i] (caller-
 * allocated) tells whether rowid i has one.  One read transaction.
 */
cd_err cd_store_vectors_of(cd_store *st, int64_t gallery_id, int64_t model_id,
                           int dim, const int64_t *rowids, size_t n,
                           float *vectors, bool *found, cd_error *err);

/* --- the change sequence: feeding indexes ------------------------------ */

/*
 * Called with up to `batch` vectors at a time: rowids[i] and the dim
 * floats at vectors + i*dim.  A non-zero return stops the scan and is
 * passed back as the scan's result.
 */
typedef cd_err (*cd_scan_fn)(void *ctx, const int64_t *rowids,
                             const float *vectors, size_t n);

/*
 * Calls fn over every embedding of model_id in the gallery whose seq is
 * greater than after_seq (0: all of them), in rowid order, up to `batch`
 * at a time.  Runs on one read transaction, so it sees one consistent
 * state.  *max_seq_out (may be NULL) is the gallery's seq in that state.
 * Embeddings are stored in (gallery, model, rowid) order, so the scan
 * reads all of the gallery's vectors of model_id whatever after_seq is:
 * a catch-up reads as much as a rebuild (and only feeds fn less).
 */
cd_err cd_store_scan_vectors(cd_store *st, int64_t gallery_id,
                             int64_t model_id, int dim, int64_t after_seq,
                             size_t batch, cd_scan_fn fn, void *ctx,
                             int64_t *max_seq_out, cd_error *err);

/*
 * Rowids deleted from the gallery with seq greater than after_seq.
 * *out is malloc'd (free()), NULL with *n = 0 when none.
 */
cd_err cd_store_tombstones(cd_store *st, int64_t gallery_id,
                           int64_t after_seq, int64_t **out, size_t *n,
                           cd_error *err);

/* Drops tombstones with seq <= upto (every index has applied them). */
cd_err cd_store_tombstones_prune(cd_store *st, int64_t gallery_id,
                                 int64_t upto, cd_error *err);

/* How many embeddings of model_id the gallery has (a consistency check).
 * Counts the rows, so it reads them as a full scan would. */
cd_err cd_store_count_vectors(cd_store *st, int64_t gallery_id,
                              int64_t model_id, int64_t *out, cd_error *err);

/* --- evaluations --------------------------------------------------------- */

/*
 * A stored evaluation: its row (the numbers the gate, the gallery listing
 * and the matrix read) and, when asked for, its report (schema 005 keeps
 * it as rows).  Reals are NaN where the report has no value.
 */
typedef struct cd_evaluation {
    int64_t id;
    int64_t gallery_id;
    char gallery[CD_NAME_MAX + 1];
    int64_t query_model_id;
    char query_model[CD_NAME_MAX + 1];
    int64_t gallery_model_id;
    char gallery_model[CD_NAME_MAX + 1];
    int64_t adapter_id;             /* the adapter that mapped the probes
                                       (kept after it is deleted); 0: raw */
    char adapter[CD_NAME_MAX + 1];  /* its name; "" when raw */
    bool mixed;                     /* gallery_view: mixed (true) or
                                       gallery_model */
    double coverage;                /* mixed: share of the gallery with a
                                       query-model embedding; else NaN */
    char created_at[32];            /* RFC 3339 UTC */
    int compatible;                 /* 1 passed, 0 failed, -1 no verdict */
    char criterion[256];
    int64_t queries;
    double cross_top1, baseline_top1, cross_map, baseline_map, nfr;
    cd_eval_report *report;         /* NULL unless asked for; freed by
                                       cd_evaluation_finish */
    char *filter;                   /* the filter of its gallery as JSON
                                       text, NULL: the whole gallery;
                                       freed by cd_evaluation_finish */
} cd_evaluation;

/*
 * Stores ev (gallery_id, query_model_id, gallery_model_id, adapter_id and
 * adapter, compatible, criterion, queries, the reals and the report, which must not be NULL,
 * are read) in one transaction and sets ev->id and ev->created_at.
 * CD_ENOTFOUND when the gallery no longer exists; on failure nothing is
 * stored and ev is unchanged.
 */
cd_err cd_store_evaluation_insert(cd_store *st, cd_evaluation *ev,
                                  cd_error *err);

/*
 * Reads evaluation id with its whole report (free with
 * cd_evaluation_finish).  CD_ENOTFOUND when there is none, CD_ECORRUPT
 * when its report rows are damaged or missing (a report of schema 2 that
 * was not JSON).  On failure *out holds nothing to free.
 */
cd_err cd_store_evaluation_get(cd_store *st, int64_t id, cd_evaluation *out,
                               cd_error *err);

/*
 * A gallery's evaluations, newest first: at most limit of them with id <
 * before (0: no bound), of query_model_id only when it is not 0.  With
 * with_report, each has its report's numbers and flips but not its long
 * lists (n_labels and n_negative_flips are 0: a listing is a summary);
 * CD_ECORRUPT as for cd_store_evaluation_get.  *out is freed with
 * cd_evaluations_destroy().
 */
cd_err cd_store_evaluation_list(cd_store *st, int64_t gallery_id,
                                int64_t query_model_id, int64_t before,
                                size_t limit, bool with_report,
                                cd_evaluation **out, size_t *n,
                                cd_error *err);

/*
 * The latest evaluation of each (gallery, query model, adapter) pair, an
 * adapter's evaluations being a pair of their own (SPEC.md §3.7), without
 * reports, of the gallery_model view only (a mixed evaluation describes
 * one moment of a backfill, not whether the query model can search the
 * gallery model's embeddings; it verifies nothing):
 * of one gallery when gallery_id is not 0; when query_model_id
 * is not 0, only of that query model mapped by adapter_id (0: raw
 * probes).  Ordered by gallery name, query model name, then adapter name
 * (raw first).  *out is freed with cd_evaluations_destroy().
 */
cd_err cd_store_evaluation_latest(cd_store *st, int64_t gallery_id,
                                  int64_t query_model_id, int64_t adapter_id,
                                  cd_evaluation **out, size_t *n,
                                  cd_error *err);

/*
 * The evaluations whose probes adapter_id mapped, on every gallery,
 * newest first, at most limit, without reports.  *out is freed with
 * cd_evaluations_destroy().
 */
cd_err cd_store_evaluation_by_adapter(cd_store *st, int64_t adapter_id,
                                      size_t limit, cd_evaluation **out,
                                      size_t *n, cd_error *err);

/*
 * The latest evaluation of query model query_model_id on gallery_id whose
 * probes were mapped by adapter adapter_id (evaluations.adapter_id), or,
 * with adapter_id 0, whose probes were not mapped (adapter_id NULL): the
 * pair the gate of a search reads.  *n is 1 with it in *out, or 0 when
 * there is none.  Without report; *out is freed with
 * cd_evaluations_destroy().
 */
cd_err cd_store_evaluation_latest_pair(cd_store *st, int64_t gallery_id,
                                       int64_t query_model_id,
                                       int64_t adapter_id,
                                       cd_evaluation **out, size_t *n,
                                       cd_error *err);

/* Frees ev->report (and sets it NULL).  Accepts NULL. */
void cd_evaluation_finish(cd_evaluation *ev);

/* Frees n evaluations and the array.  Accepts NULL. */
void cd_evaluations_destroy(cd_evaluation *evs, size_t n);

/*
 * The gallery of an evaluation: every labelled item that has an embedding
 * of model_id, in rowid (insertion) order, and, when own_model_id is not
 * 0, the items' embeddings of own_model_id (own_dim floats each) read in
 * the same transaction: own row i and has_own[i] for item i, a zero row
 * when it has none.  Free with cd_eval_items_finish().
 */
typedef struct cd_eval_items {
    size_t n;
    int64_t *rowids;
    char **ids;
    char **labels;
    float *vectors;         /* n * dim of model_id */
    float *own;             /* n * own_dim of own_model_id, or NULL */
    unsigned char *has_own; /* n flags, or NULL with own */
    size_t n_own;           /* items with an own_model_id embedding */
} cd_eval_items;

cd_err cd_store_eval_items(cd_store *st, int64_t gallery_id, int64_t model_id,
                           int dim, int64_t own_model_id, int own_dim,
                           cd_eval_items *out, cd_error *err);

/* Frees what cd_store_eval_items filled in and zeroes it.  Accepts NULL. */
void cd_eval_items_finish(cd_eval_items *items);

/* Each rowid of one gallery's embeddings of model_id, via fn (vectors NULL). */
cd_err cd_store_scan_rowids(cd_store *st, int64_t gallery_id,
                            int64_t model_id, size_t batch, cd_scan_fn fn,
                            void *ctx, cd_error *err);

/* --- integrity check ---------------------------------------------------- */

/* A check lists at most this many problems. */
#define CD_CHECK_PROBLEMS_MAX 10

/* What cd_store_check found. */
typedef struct cd_store_check_report {
    int schema_version;     /* PRAGMA user_version; 0 when unreadable */
    int64_t galleries, items, embeddings;   /* rows, counted when healthy */
    size_t n_problems;      /* problems listed below, 0 when healthy */
    bool more;              /* more problems were found than listed */
    char problems[CD_CHECK_PROBLEMS_MAX][256];  /* one line each */
} cd_store_check_report;

/*
 * Checks the compatd database at db_path without changing it: opens it
 * read-only (no migration; a daemon may serve it meanwhile) and, in one
 * read transaction, runs SQLite's PRAGMA integrity_check and then the
 * rules SQLite does not know: every embedding is 4 x dim bytes of an
 * existing model and belongs to an item of its gallery, every item to an
 * existing gallery, galleries' item counts and seqs agree with their
 * rows, every adapter's weights are 4 x dim_from x dim_to bytes, and
 * PRAGMA foreign_key_check is empty.  The bytes of a vector
 * are not checksummed: damage inside one is not seen.
 *
 * Returns CD_OK when healthy; CD_ECORRUPT when damaged (an empty file, a
 * foreign one, or problems found: report lists the first ones, and err's
 * message names db_path and the first); CD_ENOTFOUND when db_path does
 * not exist; CD_EVERSION for a newer schema; CD_EIO when it cannot be
 * opened.  report (may be NULL) is filled in every case.
 */
cd_err cd_store_check(const char *db_path, cd_store_check_report *report,
                      cd_error *err);

/*
 * The fast part of cd_store_check alone: SQLite's PRAGMA quick_check (every
 * page well formed, O(pages); no index-against-table comparison and none
 * of the rules), for every start.  Same returns as cd_store_check; a
 * report's row counts stay 0.
 */
cd_err cd_store_quick_check(const char *db_path, cd_store_check_report *report,
                            cd_error *err);

/* True when the database at db_path opens read-only and its schema is
 * this binary's (CD_SCHEMA_VERSION): opening it migrates nothing. */
bool cd_store_schema_current(const char *db_path);

/* --- backup ------------------------------------------------------------ */

/*
 * Copies the compatd database at db_path, which a running daemon may be
 * writing meanwhile, to the new file dest_path: one consistent state (the
 * one of the moment the copy starts), so that a daemon started on the copy
 * serves every write acknowledged before then.  db_path is only read.
 *
 * The copy runs under one read transaction on its own connection, so in
 * WAL mode it blocks no writer (WAL checkpoints cannot pass it until it
 * ends, so the WAL may grow meanwhile); pages are copied in bounded steps
 * through SQLite's backup API into dest_path.tmp-<pid>, which is checked
 * (cd_store_check's checks), fsynced and then linked to dest_path, so that
 * dest_path, once it exists, is complete.  Index snapshots are not
 * copied: a daemon rebuilds missing ones from the database.
 *
 * Fails with CD_EEXISTS when dest_path (or a -wal or -journal beside it)
 * exists, CD_ENOTFOUND when db_path does not, CD_ECORRUPT when db_path is
 * not a compatd database or the copy does not check, CD_EIO when a file
 * cannot be read or written.  On failure nothing is left at the temporary
 * name, and dest_path exists only when what failed was the last step, the
 * fsync of its directory.  *bytes_out (may be NULL) is the copy's size.
 */
cd_err cd_store_backup(const char *db_path, const char *dest_path,
                       int64_t *bytes_out, cd_error *err);

/* --- API keys ------------------------------------------------------------ */

/*
 * What a key may do (schema/concepts.md §5).  Ordered: a larger scope includes every
 * smaller one (admin includes write includes read).
 */
typedef enum cd_scope {
    CD_SCOPE_NONE = 0,  /* no key needed (for routes); never stored */
    CD_SCOPE_READ,      /* GET, search */
    CD_SCOPE_WRITE,     /* items, running evaluations */
    CD_SCOPE_ADMIN      /* models, galleries, keys */
} cd_scope;

/* "read", "write" or "admin" ("none" for CD_SCOPE_NONE). */
const char *cd_scope_name(cd_scope s);

/* Parses "read", "write" or "admin"; false for anything else. */
bool cd_scope_parse(const char *s, cd_scope *out);

#define CD_KEY_HASH_SIZE 32     /* SHA-256 of the key text */
#define CD_KEY_PREFIX_LEN 8     /* characters of the key text kept to list it */

/* A stored key: never its text. */
typedef struct cd_api_key {
    int64_t id;                             /* rowid, never reused */
    char name[CD_NAME_MAX + 1];             /* [A-Za-z0-9._-]{1,64}, unique */
    cd_scope scope;
    char prefix[CD_KEY_PREFIX_LEN + 1];     /* first characters of the text */
    char created_at[32];                    /* RFC 3339 UTC */
    char revoked_at[32];                    /* RFC 3339 UTC; "" while active */
    unsigned char hash[CD_KEY_HASH_SIZE];   /* SHA-256 of the text */
} cd_api_key;

/*
 * Stores a key: name, scope (read, write or admin), the hash of its text
 * and its prefix (at most CD_KEY_PREFIX_LEN characters).  CD_EINVAL on a
 * bad name, scope or prefix, CD_EEXISTS when the name is taken (also by a
 * revoked key: names are never reused), CD_ECONFLICT when a key of the
 * same hash is stored (under another name).  *out (may be NULL) receives
 * the stored key.
 */
cd_err cd_store_key_insert(cd_store *st, const char *name, cd_scope scope,
                           const unsigned char hash[CD_KEY_HASH_SIZE],
                           const char *prefix, cd_api_key *out,
                           cd_error *err);

/* The key of that name (CD_ENOTFOUND when none). */
cd_err cd_store_key_get(cd_store *st, const char *name, cd_api_key *out,
                        cd_error *err);

/* The key of that id (CD_ENOTFOUND when none). */
cd_err cd_store_key_get_by_id(cd_store *st, int64_t id, cd_api_key *out,
                              cd_error *err);

/*
 * The key whose text hashes to hash, revoked or not (CD_ENOTFOUND when
 * none).  One look-up in the hash index, on a read connection: it sees
 * every key committed before it began, by any process.
 */
cd_err cd_store_key_find(cd_store *st,
                         const unsigned char hash[CD_KEY_HASH_SIZE],
                         cd_api_key *out, cd_error *err);

/* Every key, by id; *out is malloc'd (free()), *n its length. */
cd_err cd_store_key_list(cd_store *st, cd_api_key **out, size_t *n,
                         cd_error *err);

/*
 * Revokes key id: sets its revoked_at, unless it is revoked already
 * (then nothing changes and *was_revoked, which may be NULL, is true).
 * CD_ENOTFOUND when there is no such key.  *out (may be NULL) receives
 * the key as stored afterwards.
 */
cd_err cd_store_key_revoke(cd_store *st, int64_t id, cd_api_key *out,
                           bool *was_revoked, cd_error *err);

/* Whether any key row exists, revoked ones included. */
cd_err cd_store_keys_exist(cd_store *st, bool *out, cd_error *err);

/* --- adapters (SPEC.md §3.7) ---------------------------------------------- */

/* An adapter as stored.  Free what it points to with cd_adapter_record_finish(). */
typedef struct cd_adapter_record {
    int64_t id;                         /* rowid, never reused */
    char name[CD_NAME_MAX + 1];         /* unique */
    int64_t from_id;                    /* the model it maps from */
    char from[CD_NAME_MAX + 1];
    int64_t to_id;                      /* the model it maps into */
    char to[CD_NAME_MAX + 1];
    cd_adapter_info info;               /* kind, dims, metrics (the models'),
                                           ridge, pairs, fit numbers */
    char created_at[32];                /* RFC 3339 UTC */
    float *weights;                     /* dim_from x dim_to row-major, or NULL
                                           unless asked for */
    float *bias;                        /* dim_to floats for affine when the
                                           weights were asked for, else NULL */
} cd_adapter_record;

/*
 * Stores the adapter a (name, from_id, to_id, info, weights and, for
 * affine, bias are read) in one transaction; *out (may be NULL) gets the
 * stored row, without weights.  CD_EINVAL on a bad name or parts that do
 * not fit info (cd_adapter_from_weights' checks), CD_ENOTFOUND when a
 * model id is unknown or its dim is not info's, CD_EEXISTS when the name
 * is taken.  On failure nothing is stored.
 */
cd_err cd_store_adapter_create(cd_store *st, const cd_adapter_record *a,
                               cd_adapter_record *out, cd_error *err);

/*
 * The adapter called name, with its weights and bias when with_weights
 * (CD_ECORRUPT when they do not fit the row).  CD_ENOTFOUND when there is
 * none.  Free with cd_adapter_record_finish(); on failure *out holds
 * nothing to free.
 */
cd_err cd_store_adapter_get(cd_store *st, const char *name, bool with_weights,
                            cd_adapter_record *out, cd_error *err);

/* Every adapter by name, without weights; free with
 * cd_adapter_records_destroy(). */
cd_err cd_store_adapter_list(cd_store *st, cd_adapter_record **out, size_t *n,
                             cd_error *err);

/* Deletes the adapter called name: CD_ENOTFOUND when there is none,
 * CD_ECONFLICT (naming the gallery and model) while a gallery routes a
 * model through it, checked in the delete's own transaction. */
cd_err cd_store_adapter_delete(cd_store *st, const char *name, cd_error *err);

/* A gallery's route (schema 007, gallery_adapters): its queries of model
 * model_id go through adapter adapter_id unless they name one. */
typedef struct cd_gallery_route {
    int64_t model_id;
    char model[CD_NAME_MAX + 1];
    int64_t adapter_id;
    char adapter[CD_NAME_MAX + 1];
} cd_gallery_route;

/* Every route of gallery_id by model name; *out is free()d (NULL when
 * *n is 0). */
cd_err cd_store_routes(cd_store *st, int64_t gallery_id, cd_gallery_route **out,
                       size_t *n, cd_error *err);

/* One change to a gallery's routes: adapter_id 0 removes model_id's. */
typedef struct cd_route_change {
    int64_t model_id;
    int64_t adapter_id;
} cd_route_change;

/*
 * Changes gallery_id in one transaction: its query policy when policy is
 * not NULL, then each of the n route changes in order.  CD_ENOTFOUND when
 * the gallery or a change's adapter no longer exists; on failure nothing
 * changes.  The caller has checked each route (from model, to model).
 */
cd_err cd_store_gallery_update(cd_store *st, int64_t gallery_id,
                               const cd_query_policy *policy,
                               const cd_route_change *changes, size_t n,
                               cd_error *err);

/* Frees a->weights and a->bias (and sets them NULL).  Accepts NULL. */
void cd_adapter_record_finish(cd_adapter_record *a);

/* Frees n records and the array.  Accepts NULL. */
void cd_adapter_records_destroy(cd_adapter_record *a, size_t n);

/*
 * The paired embeddings of a gallery: for every item that has an
 * embedding of from_id (dim_from floats) and one of to_id (dim_to), in
 * rowid (insertion) order, the two vectors, read in one transaction.
 * *a (n x dim_from) and *b (n x dim_to) are malloc'd (free()), NULL when
 * n is 0.  CD_ECORRUPT when a vector has the wrong size.  (store_items.c)
 */
cd_err cd_store_paired_vectors(cd_store *st, int64_t gallery_id,
                               int64_t from_id, int dim_from, int64_t to_id,
                               int dim_to, float **a, float **b, size_t *n,
                               cd_error *err);

#endif
