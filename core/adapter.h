/*
 * adapter.h - a linear map from one model's embedding space into another's,
 * fitted from paired embeddings (SPEC.md §3.7).
 *
 * Pure computation over caller-owned arrays: no store, no locks, no I/O,
 * no JSON.  Rows of A are `from` vectors, rows of B the matching `to`
 * vectors.  Both sides are first normalised as their model's metric says
 * (cosine: each row to unit L2 norm; ip and l2: as given).  Then:
 *
 *   orthogonal  W = U Vᵀ where U Σ Vᵀ is the SVD of AᵀB (orthogonal
 *               Procrustes); dim_from must equal dim_to; no ridge.
 *   linear      W = (AᵀA + λI)⁻¹ AᵀB, λ = ridge >= 0, any dims.
 *   affine      the same on [A 1]: W and a bias row b, b not penalised by
 *               λ (solved as the linear fit of the centred pairs, then
 *               b = mean(B) - mean(A) W, which is the same solution).
 *
 * A vector q maps to qW (+ b), with q normalised first when `from` is
 * cosine and the result normalised when `to` is cosine.  W is dim_from x
 * dim_to, row-major float32; the fit itself runs in double.
 *
 * A cd_adapter is immutable once made, so any number of threads may map
 * through one at the same time.
 */
#ifndef CD_ADAPTER_H
#define CD_ADAPTER_H

#include <stdbool.h>
#include <stddef.h>

#include "error.h"
#include "vec.h"

typedef struct cd_adapter cd_adapter;

typedef enum cd_adapter_kind {
    CD_ADAPTER_ORTHOGONAL = 0,
    CD_ADAPTER_LINEAR,
    CD_ADAPTER_AFFINE
} cd_adapter_kind;

/* Folds of the cross-validated fit number, and the pairs it needs. */
#define CD_ADAPTER_FOLDS 5
#define CD_ADAPTER_CV_MIN_PAIRS 10

/*
 * The reciprocal condition number (LAPACK dpocon, 1-norm) below which
 * AᵀA + λI counts as singular: W would then be set by the float32 rounding
 * of the pairs rather than by the pairs.
 */
#define CD_ADAPTER_RCOND_MIN 1e-12

/* What a fit is asked for; caller-owned. */
typedef struct cd_adapter_params {
    cd_adapter_kind kind;
    int dim_from;               /* 1..CD_DIM_MAX */
    cd_metric metric_from;
    int dim_to;                 /* 1..CD_DIM_MAX */
    cd_metric metric_to;
    double ridge;               /* λ: finite, >= 0; 0 for orthogonal */
} cd_adapter_params;

/* What an adapter is: its parameters and its fit, for storage and reports. */
typedef struct cd_adapter_info {
    cd_adapter_params params;
    size_t pairs;               /* pairs it was fitted on */
    double mean_cosine;         /* mean cosine of mapped A rows to B rows */
    double cv_mean_cosine;      /* the same, each pair mapped by the fit on
                                   the other folds; NaN when absent (test
                                   with isnan): fewer than
                                   CD_ADAPTER_CV_MIN_PAIRS pairs, or a fold's
                                   training pairs could not be fitted */
} cd_adapter_info;

/* "orthogonal", "linear" or "affine". */
const char *cd_adapter_kind_name(cd_adapter_kind kind);

/* Parses a kind name; false when s is none of the three. */
bool cd_adapter_kind_parse(const char *s, cd_adapter_kind *out);

/* The kind a fit uses when none is asked for: orthogonal when the dims are
 * equal, linear otherwise. */
cd_adapter_kind cd_adapter_default_kind(int dim_from, int dim_to);

/*
 * The fewest pairs a fit with these parameters accepts: 2 for orthogonal;
 * dim_from for linear and dim_from + 1 for affine when ridge is 0; 1 with
 * a positive ridge.  (With fewer, AᵀA + λI is singular for certain.)
 */
size_t cd_adapter_min_pairs(const cd_adapter_params *p);

/*
 * Fits an adapter on n pairs: a is n x dim_from floats, b is n x dim_to
 * floats, both row-major, row i of each is pair i.  The fit numbers are
 * computed with the adapter as cd_adapter_map applies it (float32 W);
 * folds go by pair order: fold f holds pairs [f·n/5, (f+1)·n/5).
 *
 * On success *out is a new adapter the caller frees with
 * cd_adapter_destroy().  On failure *out is NULL and err says why:
 *   CD_EINVAL          a dim out of 1..CD_DIM_MAX, an unknown kind or
 *                      metric, orthogonal with different dims or a nonzero
 *                      ridge, a negative or non-finite ridge;
 *   CD_EVECTOR         a NaN or Inf value, or a zero vector where the
 *                      model is cosine (the message names the pair);
 *   CD_EUNPROCESSABLE  fewer than cd_adapter_min_pairs pairs ("needs at
 *                      least N pairs"), or AᵀA + λI singular ("singular:
 *                      ... needs at least N linearly independent pairs"),
 *                      or the weights overflow float32;
 *   CD_ENOMEM.
 */
cd_err cd_adapter_fit(const cd_adapter_params *p, const float *a,
                      const float *b, size_t n, cd_adapter **out,
                      cd_error *err);

/*
 * Makes an adapter from stored parts (what cd_adapter_info,
 * cd_adapter_weights and cd_adapter_bias returned), copying them:
 * weights is dim_from x dim_to row-major, bias dim_to floats for affine
 * and NULL otherwise.  The same parameter checks as cd_adapter_fit
 * (CD_EINVAL), and CD_EINVAL when the bias is missing or extra, a weight
 * or bias is not finite, or mean_cosine is NaN.  On success *out is a new
 * adapter the caller frees with cd_adapter_destroy(); on failure NULL.
 */
cd_err cd_adapter_from_weights(const cd_adapter_info *info,
                               const float *weights, const float *bias,
                               cd_adapter **out, cd_error *err);

/* Frees the adapter.  Accepts NULL. */
void cd_adapter_destroy(cd_adapter *a);

/*
 * Maps nq vectors q (nq x dim_from, row-major) into out (nq x dim_to),
 * with one sgemm for the batch (one sgemv for a single query).  Fails
 * with CD_EVECTOR when a query is not finite or is the zero vector under
 * a cosine `from`, or when a mapped vector is zero under a cosine `to` or
 * out of cd_vec_in_range under ip/l2 (the message names the query's
 * index); out's contents are then unspecified.  nq == 0 does nothing.
 */
cd_err cd_adapter_map(const cd_adapter *a, const float *q, size_t nq,
                      float *out, cd_error *err);

/* Fills *out with the adapter's parameters and fit numbers. */
void cd_adapter_info_get(const cd_adapter *a, cd_adapter_info *out);

/* The weights, dim_from x dim_to row-major; owned by the adapter, valid
 * until cd_adapter_destroy. */
const float *cd_adapter_weights(const cd_adapter *a);

/* The bias, dim_to floats, for affine; NULL for the other kinds.  Owned
 * by the adapter, valid until cd_adapter_destroy. */
const float *cd_adapter_bias(const cd_adapter *a);

#endif
