/*
 * index.h - one FAISS index for one (gallery, model), through FAISS's C API.
 *
 * A cd_index is built with faiss_index_factory from the gallery's index
 * spec and answers searches over item rowids (FAISS ids = item rowids).
 * Index types that need training (IVF..., PQ...) keep their vectors in an
 * exact flat staging index until enough exist to train (see
 * cd_index_train_threshold); searches before that are exact, so results
 * are correct from the first vector on.  Index types that cannot remove
 * vectors (HNSW) hide removed ids from results and report that they want
 * a rebuild once too many are hidden, or at once when an id is added
 * again after being removed.
 *
 * Thread safety: searches (const functions) may run concurrently with each
 * other; everything else needs the caller's exclusive lock.
 */
#ifndef CD_INDEX_H
#define CD_INDEX_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "error.h"
#include "idset.h"
#include "vec.h"

typedef struct cd_index cd_index;

/*
 * Checks spec against the factory strings compatd accepts for dimension
 * dim, before FAISS sees it: Flat; HNSW<M>[,Flat] with M in 2..256;
 * IVF<nlist>,Flat|PQ..|SQ.. with nlist in 1..65536; PQ<m>[x<nbits>] with
 * m dividing dim and nbits in 1..16; SQ4, SQ6, SQ8, SQfp16 (index.c says
 * why each bound).  CD_EINVAL with a message naming the bound or the
 * accepted forms; nothing is allocated.
 */
cd_err cd_index_spec_check(const char *spec, int dim, cd_error *err);

/*
 * Creates an empty index.  For CD_METRIC_COSINE and CD_METRIC_IP the FAISS
 * metric is inner product (cosine vectors arrive normalised), for
 * CD_METRIC_L2 squared L2.  Fails with CD_EINVAL when cd_index_spec_check
 * or FAISS rejects the spec for this dimension (message says why), leaving
 * *out NULL.  Free with
 * cd_index_destroy().
 */
cd_err cd_index_create(const char *spec, int dim, cd_metric metric,
                       cd_index **out, cd_error *err);

/* Frees the index.  Accepts NULL. */
void cd_index_destroy(cd_index *ix);

/*
 * Adds n vectors (dim floats each, row-major) under the given ids.  The
 * ids must not be present and not be negative (CD_EINVAL).  Trains the
 * index when the staged count reaches the threshold.  An id that is
 * hidden (see cd_index_remove) is added but stays hidden, old and new
 * vector alike, and cd_index_needs_rebuild turns true.  n == 0 does
 * nothing.  On failure the index is unchanged.
 */
cd_err cd_index_add(cd_index *ix, const int64_t *ids, const float *vectors,
                    size_t n, cd_error *err);

/*
 * Removes ids (absent ones are ignored).  For an index that cannot remove,
 * the ids are hidden from searches instead.
 */
cd_err cd_index_remove(cd_index *ix, const int64_t *ids, size_t n,
                       cd_error *err);

/*
 * Searches nq queries (dim floats each) for the k closest vectors.
 * ids_out and scores_out are caller-allocated with nq*k entries; row i
 * holds query i's results best first, padded with id -1 (score 0) when
 * fewer than k vectors exist.  Scores: inner product for cosine/ip (higher is closer),
 * squared L2 distance for l2 (lower is closer).
 */
cd_err cd_index_search(const cd_index *ix, const float *queries, size_t nq,
                       size_t k, int64_t *ids_out, float *scores_out,
                       cd_error *err);

/* Per-search parameters of an ANN index; 0 leaves the index's own. */
typedef struct cd_index_params {
    int ef_search;  /* HNSW: candidates explored, 1..CD_EF_SEARCH_MAX (at
                       least k are, whatever it is) */
    int nprobe;     /* IVF: lists probed, 1..nlist */
} cd_index_params;

/*
 * Checks p against an index of spec (one cd_index_spec_check accepts):
 * ef_search only for HNSW, nprobe only for IVF, each in its range.
 * CD_EINVAL naming the parameter and its bound.  Needs no index, so an
 * empty gallery answers the same.
 */
cd_err cd_index_params_check(const char *spec, const cd_index_params *p,
                             cd_error *err);

/*
 * cd_index_search with p (NULL: none) applied to this search alone; the
 * index's own settings, which concurrent searches read, are not touched.
 * Exact indexes (Flat, or any type while staging) ignore p.  p must have
 * passed cd_index_params_check for the index's spec.
 */
cd_err cd_index_search_params(const cd_index *ix, const float *queries,
                              size_t nq, size_t k, const cd_index_params *p,
                              int64_t *ids_out, float *scores_out,
                              cd_error *err);

/* True when the index answers exactly: a Flat index, or any type while it
 * is still staging. */
bool cd_index_is_exact(const cd_index *ix);

/*
 * True when cd_index_search answers nq queries with one exact scan of the
 * index's own flat codes over all cores (cd_scan_search): a Flat index,
 * or any type while it is still staging, and nq <= CD_SCAN_NQ_MAX.
 * Batches go to FAISS.
 */
bool cd_index_scans(const cd_index *ix, size_t nq);

/*
 * cd_index_search for an index where cd_index_scans(ix, nq) holds, never
 * returning an id for which skip(skip_ctx, id) is true (skip NULL: none):
 * one exact pass, however many ids skip refuses (it is asked only about
 * rows that would enter the top k).  CD_EINVAL when cd_index_scans(ix,
 * nq) is false.
 */
cd_err cd_index_search_skipping(const cd_index *ix, const float *queries,
                                size_t nq, size_t k,
                                bool (*skip)(const void *ctx, int64_t id),
                                const void *skip_ctx, int64_t *ids_out,
                                float *scores_out, cd_error *err);

/* Number of live (not removed or hidden) vectors. */
int64_t cd_index_count(const cd_index *ix);

/* True once the index type is trained (always true for Flat, HNSW). */
bool cd_index_is_trained(const cd_index *ix);

/* Vectors needed before an untrained index type is trained (0: none). */
int64_t cd_index_train_threshold(const cd_index *ix);

/*
 * True when the index should be rebuilt from the store: too many hidden
 * ids, or an id added again after being hidden.
 */
bool cd_index_needs_rebuild(const cd_index *ix);

/* True when removals are real (not hidden). */
bool cd_index_can_remove(const cd_index *ix);

/*
 * True for an exact Flat index: its rows are the stored vectors as they
 * are, so the engine reads it straight from the store and keeps no
 * snapshot of it (one copy on disk).
 */
bool cd_index_is_flat(const cd_index *ix);

/*
 * Writes the index to path atomically (a temporary file in the same
 * directory, fsync, rename, fsync of the directory).  The file is FAISS's
 * serialisation, then meta_len bytes of the caller's meta (what the index
 * is bound to; may be NULL with 0), then a 32-byte trailer (magic, both
 * lengths, a hash of both parts) that cd_index_load checks.  An index with
 * hidden ids is not saved and gives CD_ECONFLICT (rebuild it first);
 * CD_EIO when writing fails.
 */
cd_err cd_index_save(const cd_index *ix, const char *path, const void *meta,
                     size_t meta_len, cd_error *err);

/*
 * Reads an index saved by cd_index_save.  spec, dim and metric are what
 * the gallery says it must be; a file that is truncated, damaged, not
 * written by cd_index_save, or of another dimension, metric or index type
 * fails with CD_ECORRUPT.  A missing file gives CD_ENOTFOUND, one that
 * cannot be opened or read CD_EIO, a bad spec CD_EINVAL.  On success
 * *meta (malloc'd, free with free(); NULL when empty) and *meta_len are
 * the meta bytes saved with it, checked by the file's hash but not
 * interpreted.  *out and *meta are NULL on failure; free the index with
 * cd_index_destroy().
 */
cd_err cd_index_load(const char *path, const char *spec, int dim,
                     cd_metric metric, cd_index **out, void **meta,
                     size_t *meta_len, cd_error *err);

/*
 * A 64-bit hash of one row (id and dim floats), for callers that bind a
 * saved index to the rows it holds.  Not cryptographic.
 */
uint64_t cd_index_row_hash(int64_t id, const float *v, int dim);

#endif
