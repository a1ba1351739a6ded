/*
 * index_params.h - one FAISS search with per-call parameters, for index.c.
 *
 * FAISS 1.7.3's C API searches with the parameters stored in the index
 * (efSearch, nprobe), which concurrent searches share; its C++ API takes
 * them per call (SearchParametersHNSW, SearchParametersIVF).  This is the
 * one place compatd calls FAISS in C++ (index_params.cc), so that a
 * search's parameters never touch the index other searches read.
 */
#ifndef CD_INDEX_PARAMS_H
#define CD_INDEX_PARAMS_H

#include <stddef.h>
#include <stdint.h>

#include <faiss/c_api/Index_c.h>

#ifdef __cplusplus
extern "C" {
#endif

/*
 * Searches ix (an IndexHNSW when ef_search > 0, an IndexIVF when
 * nprobe > 0; exactly one of the two is set) for the k best of n queries
 * into distances and labels (n*k each, caller-allocated), as
 * faiss_Index_search does, exploring ef_search candidates or probing
 * nprobe lists.  Returns 0, or -1 with a message in msg (msg_size bytes)
 * when ix is not of that type or FAISS fails; never throws.
 */
int cd__faiss_search_params(const FaissIndex *ix, int64_t n, const float *x,
                            int64_t k, float *distances, int64_t *labels,
                            int ef_search, size_t nprobe, char *msg,
                            size_t msg_size);

#ifdef __cplusplus
}
#endif

#endif
