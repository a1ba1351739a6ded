/*
 * fuzz_fvecs.c - libFuzzer harness for the .fvecs and raw float32 readers
 * of vecfile.h, from memory.  The input is read as .fvecs, and as raw
 * float32 with a dim taken from the input's length (so that many inputs
 * are whole vectors).  Besides memory errors it checks the readers'
 * contract: on success the vectors fit in the input and are finite, and
 * .fvecs and raw agree on the floats; on failure the result is zeroed and
 * the message names the file.
 */
#include <string.h>

#include "harness.h"
#include "vec.h"
#include "vecfile.h"

static void check(cd_err rc, const cd_vecfile *v, size_t size, const char *name,
                  const cd_error *err)
{
    if (rc == CD_OK) {
        if (!v->data || v->n == 0 || v->dim == 0 || v->n * v->dim * 4 > size)
            fuzz_finding("success with an impossible shape", err);
        if (!cd_vec_finite(v->data, v->n * v->dim))
            fuzz_finding("success with a value that is not finite", err);
    } else {
        if (v->data || v->n || v->dim)
            fuzz_finding("failure left a result", err);
        if (strncmp(err->message, name, strlen(name)) != 0 || err->code != rc)
            fuzz_finding("failure message does not name the file", err);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    cd_vecfile fv, raw;
    cd_error err;
    cd_err rc = cd_vecfile_parse(data, size, CD_VECFILE_FVECS, 0, "fuzz.fvecs", &fv, &err);
    check(rc, &fv, size, "fuzz.fvecs", &err);

    size_t dim = size >= 4 ? size / 4 % 7 + 1 : 1;
    if (rc == CD_OK)
        dim = fv.dim;
    cd_err rc_raw = cd_vecfile_parse(data, size, CD_VECFILE_RAW, dim, "fuzz.f32", &raw, &err);
    check(rc_raw, &raw, size, "fuzz.f32", &err);

    /* A good .fvecs file is raw float32 with a dim in front of each row. */
    if (rc == CD_OK) {
        for (size_t r = 0; r < fv.n; r++) {
            const uint8_t *row = data + r * (4 + 4 * fv.dim) + 4;
            for (size_t c = 0; c < fv.dim; c++) {
                float f;
                memcpy(&f, row + 4 * c, sizeof f);
                if (memcmp(&f, &fv.data[r * fv.dim + c], sizeof f) != 0)
                    fuzz_finding(".fvecs values differ from the file's bytes", &err);
            }
        }
    }
    cd_vecfile_finish(&raw);
    cd_vecfile_finish(&fv);
    return 0;
}
