/*
 * fuzz_evaluation.c - libFuzzer harness: the input is the JSON body of
 * POST /v1/galleries/g/evaluations, handled by cd_api_handle against a
 * real engine (fuzz_api.h) whose gallery has 16 labelled items with m1
 * and m2 embeddings, so a body can reach the exact ranking, the flips and
 * the paragon.  Each evaluation that succeeds is stored; the gallery (and
 * with it its evaluations) is rebuilt every RESET_RUNS runs.
 */
#include <stddef.h>
#include <stdint.h>

#include "fuzz_api.h"

#define RESET_RUNS 1000

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    fuzz_api_init();
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static unsigned long runs;
    fuzz_api_post("/v1/galleries/" FUZZ_GALLERY "/evaluations", data, size);
    if (++runs % RESET_RUNS == 0)
        fuzz_api_reset();
    return 0;
}
