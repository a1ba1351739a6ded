/*
 * index_params.cc - FAISS searches with per-call parameters (index_params.h).
 * A FaissIndex of the C API is a faiss::Index; nothing here keeps state.
 */
#include "index_params.h"

#include <cstdio>
#include <exception>

#include <faiss/Index.h>
#include <faiss/IndexHNSW.h>
#include <faiss/IndexIVF.h>
#include <faiss/impl/HNSW.h>

extern "C" int cd__faiss_search_params(const FaissIndex *ix, int64_t n,
                                       const float *x, int64_t k,
                                       float *distances, int64_t *labels,
                                       int ef_search, size_t nprobe,
                                       char *msg, size_t msg_size)
{
    const faiss::Index *index = reinterpret_cast<const faiss::Index *>(ix);
    try {
        if (ef_search > 0) {
            auto hnsw = dynamic_cast<const faiss::IndexHNSW *>(index);
            if (!hnsw) {
                std::snprintf(msg, msg_size, "the index is not HNSW");
                return -1;
            }
            faiss::SearchParametersHNSW p;
            p.efSearch = ef_search;
            p.check_relative_distance = hnsw->hnsw.check_relative_distance;
            hnsw->search(n, x, k, distances, labels, &p);
            return 0;
        }
        auto ivf = dynamic_cast<const faiss::IndexIVF *>(index);
        if (!ivf || nprobe == 0) {
            std::snprintf(msg, msg_size, "the index is not IVF");
            return -1;
        }
        faiss::SearchParametersIVF p;
        p.nprobe = nprobe;
        p.max_codes = ivf->max_codes;
        ivf->search(n, x, k, distances, labels, &p);
        return 0;
    } catch (const std::exception &e) {
        std::snprintf(msg, msg_size, "%s", e.what());
    } catch (...) {
        std::snprintf(msg, msg_size, "unknown error");
    }
    return -1;
}
