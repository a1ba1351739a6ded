/*
 * fuzz_index_spec.c - libFuzzer harness for index specs (index.h).
 * The first byte picks a dimension (1..256, with every divisor PQ needs
 * reachable), the rest is the spec text, copied NUL-terminated.  Every
 * spec cd_index_spec_check accepts must be one FAISS builds, takes
 * vectors into and searches without a crash; a refused one must fail
 * cd_index_create the same way, with a message and no index.
 */
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "index.h"

#define N_VECTORS 64

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1 || size > CD_SPEC_MAX + 2)
        return 0;
    int dim = 1 + data[0];
    char spec[CD_SPEC_MAX + 2];
    memcpy(spec, data + 1, size - 1);
    spec[size - 1] = '\0';

    cd_error err;
    cd_index *ix = (cd_index *)&err;
    cd_err checked = cd_index_spec_check(spec, dim, &err);
    cd_err made = cd_index_create(spec, dim, CD_METRIC_L2, &ix, &err);
    if (checked != CD_OK) {
        if (made != CD_EINVAL || ix != NULL || err.message[0] == '\0')
            fuzz_finding("a refused spec was not refused by cd_index_create", &err);
        return 0;
    }
    if (made != CD_OK || !ix)
        fuzz_finding("FAISS failed a spec cd_index_spec_check accepts", &err);

    float *x = malloc((size_t)N_VECTORS * (size_t)dim * sizeof *x);
    int64_t ids[N_VECTORS], got[4];
    float scores[4];
    if (!x)
        abort();
    for (size_t i = 0; i < (size_t)N_VECTORS * (size_t)dim; i++)
        x[i] = (float)((i * 2654435761u) % 1000) / 1000.0f;
    for (int64_t i = 0; i < N_VECTORS; i++)
        ids[i] = i;
    if (cd_index_add(ix, ids, x, N_VECTORS, &err) != CD_OK)
        fuzz_finding("adding to an accepted spec failed", &err);
    if (cd_index_search(ix, x, 1, 4, got, scores, &err) != CD_OK)
        fuzz_finding("searching an accepted spec failed", &err);
    if (got[0] < 0 || got[0] >= N_VECTORS)
        fuzz_finding("search of an accepted spec found no stored id", NULL);
    free(x);
    cd_index_destroy(ix);
    return 0;
}
