/*
 * fuzz_npy.c - libFuzzer harness for the .npy reader of vecfile.h, from
 * memory.  Besides memory errors it checks the reader's contract: on
 * success the vectors fit in the input and are finite; on failure the
 * result is zeroed and the message names the file.
 */
#include <string.h>

#include "harness.h"
#include "vec.h"
#include "vecfile.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    cd_vecfile v;
    cd_error err;
    cd_error_clear(&err);
    cd_err rc = cd_vecfile_parse(data, size, CD_VECFILE_NPY, 0, "fuzz.npy", &v, &err);
    if (rc == CD_OK) {
        if (!v.data || v.n == 0 || v.dim == 0 || v.n * v.dim * 4 > size)
            fuzz_finding("success with an impossible shape", &err);
        if (!cd_vec_finite(v.data, v.n * v.dim))
            fuzz_finding("success with a value that is not finite", &err);
        /* The same bytes with the dim given must agree. */
        cd_vecfile w;
        if (cd_vecfile_parse(data, size, CD_VECFILE_NPY, v.dim, "fuzz.npy", &w, &err) != CD_OK ||
            w.n != v.n || memcmp(w.data, v.data, v.n * v.dim * sizeof *v.data) != 0)
            fuzz_finding("giving the file's own dim changed the result", &err);
        cd_vecfile_finish(&w);
    } else {
        if (v.data || v.n || v.dim)
            fuzz_finding("failure left a result", &err);
        if (strncmp(err.message, "fuzz.npy: ", 10) != 0 || err.code != rc)
            fuzz_finding("failure message does not name the file", &err);
    }
    cd_vecfile_finish(&v);
    return 0;
}
