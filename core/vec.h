/*
 * vec.h - small facts about embedding vectors shared by every module:
 * metrics, limits, finiteness, normalisation and the base64 float32 form
 * (names, UTF-8 and the base64 alphabet are text.h's).
 * Nothing here allocates except cd_b64_decode_floats and
 * cd_b64_encode_floats.
 */
#ifndef CD_VEC_H
#define CD_VEC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "error.h"

#define CD_ITEM_ID_MAX 256      /* bytes of an item id */
#define CD_EF_SEARCH_MAX 4096   /* HNSW candidates a search may ask for */
#define CD_METADATA_MAX 16384   /* bytes of an item's metadata JSON text */
#define CD_DIM_MAX 4096
#define CD_K_MAX 1000
#define CD_SPEC_MAX 128         /* bytes of a FAISS index-factory string */
#define CD_DESCRIPTION_MAX 4096 /* bytes of a model description */
#define CD_LABEL_MAX 256        /* bytes of an item or probe label */

typedef enum cd_metric {
    CD_METRIC_COSINE = 0,   /* inner product of L2-normalised vectors */
    CD_METRIC_IP,           /* inner product; higher is closer */
    CD_METRIC_L2            /* squared euclidean distance; lower is closer */
} cd_metric;

/* "cosine", "ip" or "l2". */
const char *cd_metric_name(cd_metric m);

/* Parses a metric name; false when s is none of the three. */
bool cd_metric_parse(const char *s, cd_metric *out);

/* True when a higher score is closer (cosine, ip). */
bool cd_metric_higher_is_better(cd_metric m);

/* True when every one of the n floats is finite. */
bool cd_vec_finite(const float *v, size_t n);

/*
 * The largest squared L2 norm an ip or l2 vector may have.  With
 * both vectors within it, |<a,b>| <= 1e37 and |a-b|^2 <= 4e37, so ip and
 * l2 scores stay finite in float32 (FLT_MAX is 3.4e38), whatever order
 * FAISS sums in; a component of 3e38 alone would square to infinity.
 */
#define CD_VEC_NORM2_MAX 1e37

/*
 * True when the n floats are finite and their squared L2 norm (summed in
 * double) is at most CD_VEC_NORM2_MAX; *norm2 gets that sum.
 */
bool cd_vec_in_range(const float *v, size_t n, double *norm2);

/*
 * Scales v to unit L2 norm in place.  Returns false, leaving v as it was,
 * when the norm is zero (a zero vector has no direction).
 */
bool cd_vec_normalize(float *v, size_t dim);

/*
 * Decodes standard base64 (with padding) of little-endian float32 values.
 * On success *out is a malloc'd array the caller frees with free() and
 * *n_out the number of floats.  Fails with CD_EVECTOR when the text is
 * not base64, its byte length is not a multiple of 4, or a value is not
 * finite; *out is then NULL.
 */
cd_err cd_b64_decode_floats(const char *text, size_t len, float **out,
                            size_t *n_out, cd_error *err);

/*
 * The number of floats base64 text of len bytes decodes to; CD_EVECTOR
 * when the length cannot be float32 data (not a multiple of 4 characters,
 * or not a whole number of 4-byte floats).
 */
cd_err cd_b64_float_count(const char *text, size_t len, size_t *n,
                          cd_error *err);

/*
 * Decodes into out, which has room for the cd_b64_float_count floats.
 * Fails with CD_EVECTOR on a non-base64 character or a value that is not
 * finite; out's contents are then unspecified.
 */
cd_err cd_b64_decode_floats_into(const char *text, size_t len, float *out,
                                 cd_error *err);

/*
 * Encodes n floats as base64 of little-endian float32.  Returns a malloc'd
 * NUL-terminated string the caller frees with free(), or NULL when out of
 * memory.
 */
char *cd_b64_encode_floats(const float *v, size_t n);

#endif
