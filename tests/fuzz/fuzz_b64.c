/*
 * fuzz_b64.c - libFuzzer harness for the base64 float32 codec of vec.h.
 * The input is the text (not NUL-terminated, so a read past len is an
 * ASan report).  Besides memory errors it checks that the three decoders
 * agree with each other and that what decodes survives an encode/decode
 * round trip bit for bit.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "vec.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *text = (const char *)data;
    float *out = (float *)&out;
    size_t n = 12345, count = 0;
    cd_error err, err2;
    cd_err rc = cd_b64_decode_floats(text, size, &out, &n, &err);
    cd_err rc_count = cd_b64_float_count(text, size, &count, &err2);

    if (rc != CD_OK && (out != NULL || n != 0))
        fuzz_finding("a failed decode left *out or *n_out set", NULL);
    if (rc != CD_OK && (rc != CD_EVECTOR || err.message[0] == '\0'))
        fuzz_finding("a failed decode is not CD_EVECTOR with a message", NULL);
    if (rc == CD_OK && (rc_count != CD_OK || count != n || n == 0))
        fuzz_finding("cd_b64_float_count disagrees with cd_b64_decode_floats", NULL);
    if (rc_count == CD_OK) {
        float *into = malloc(count * sizeof *into);
        if (!into)
            abort();
        cd_err rc_into = cd_b64_decode_floats_into(text, size, into, &err2);
        if ((rc_into == CD_OK) != (rc == CD_OK))
            fuzz_finding("cd_b64_decode_floats_into disagrees with cd_b64_decode_floats", NULL);
        if (rc == CD_OK && memcmp(into, out, n * sizeof *out) != 0)
            fuzz_finding("cd_b64_decode_floats_into decoded other values", NULL);
        free(into);
    }
    if (rc == CD_OK) {
        if (!cd_vec_finite(out, n))
            fuzz_finding("a decoded value is not finite", NULL);
        char *again = cd_b64_encode_floats(out, n);
        if (!again)
            abort();
        if (strlen(again) != size)
            fuzz_finding("re-encoding changed the length", NULL);
        float *back = NULL;
        size_t nb = 0;
        if (cd_b64_decode_floats(again, strlen(again), &back, &nb, &err2) != CD_OK ||
            nb != n || memcmp(back, out, n * sizeof *out) != 0)
            fuzz_finding("encode/decode round trip changed the values", NULL);
        free(back);
        free(again);
        free(out);
    }
    return 0;
}
