/*
 * scan.h - exact top-k of a few queries over rows held in memory (a Flat
 * index's codes), one pass over the rows split between threads.
 *
 * One exact query reads n x dim floats once: memory bandwidth bounds it,
 * and FAISS runs a single query on one core (it parallelises over
 * queries).  cd_scan_search splits the rows into one range per thread,
 * keeps a top-k heap per (thread, query) and merges them.  The distance
 * kernel is AVX2+FMA where the CPU has it (checked at run time), else a
 * portable loop.  Results are ordered best first, ties by the smaller id,
 * so they do not depend on the thread count.  Batches belong to FAISS
 * (one sgemm is faster there); CD_SCAN_NQ_MAX says where the line is.
 */
#ifndef CD_SCAN_H
#define CD_SCAN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "error.h"

#define CD_SCAN_NQ_MAX 4    /* queries up to which a scan beats FAISS's sgemm */

typedef struct cd_scan {
    const float *x;         /* n rows of dim floats, row-major */
    const int64_t *ids;     /* n ids (>= 0), or NULL: row i has id i */
    size_t n;
    size_t dim;             /* >= 1 */
    bool l2;                /* squared L2 (lower is closer), else inner product */
    /* Rows whose id skip(skip_ctx, id) says true are never returned; NULL: none. */
    bool (*skip)(const void *skip_ctx, int64_t id);
    const void *skip_ctx;
    int threads;            /* <= 0: cd_scan_threads(n, dim), fewer while
                               other cores are busy */
    bool portable;          /* the portable kernel even where AVX2 runs */
    /* The same rows as IEEE half floats (cd_scan_to_half), or NULL.  With
     * them an inner-product scan reads half the bytes: it ranks by the
     * half rows, keeps every row whose half score could be within the
     * error bound of the k-th, and scores those from x, so the result is
     * the one x alone gives (see scan.c).  Needs AVX2, FMA and F16C; else,
     * for L2, or portable, x alone is read. */
    const uint16_t *x16;
    float x16_norm;         /* at least the largest L2 norm of a row of x */
} cd_scan;

/*
 * Converts rows x dim floats to half floats (round to nearest even) into
 * out, and raises *norm_max to at least the largest L2 norm of a row (for
 * cd_scan.x16_norm): false (out partly written) when a value is not
 * finite or 65504 or more in magnitude (no half holds it), or the CPU
 * cannot run the half scan.
 */
bool cd_scan_to_half(const float *x, size_t rows, size_t dim, uint16_t *out,
                     float *norm_max);

/* True when this CPU can run the half-float scan (AVX2, FMA, F16C). */
bool cd_scan_has_half(void);

/*
 * Writes each of the nq queries' (dim floats each) k best rows to
 * ids_out/scores_out (nq*k entries, caller-allocated), best first, ties
 * by the smaller id, padded with id -1 (score 0) when fewer rows qualify.
 * Scores as FAISS gives them: inner product, or squared L2 distance.
 * CD_ENOMEM when the heaps cannot be allocated (outputs undefined);
 * nq == 0 or k == 0 does nothing.  Safe to call from several threads at
 * once over the same rows.
 */
cd_err cd_scan_search(const cd_scan *s, const float *queries, size_t nq,
                      size_t k, int64_t *ids_out, float *scores_out,
                      cd_error *err);

/*
 * Threads worth splitting a scan of n x dim floats over: the OpenMP
 * thread limit (the cores this process may use, or OMP_NUM_THREADS),
 * fewer when each would get less than a few hundred kilobytes to read.
 */
int cd_scan_threads(size_t n, size_t dim);

/* True when cd_scan_search uses the AVX2+FMA kernel on this CPU. */
bool cd_scan_has_avx2(void);

#endif
