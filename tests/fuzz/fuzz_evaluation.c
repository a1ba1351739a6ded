/*
 * fuzz_evaluation.c - libFuzzer harness: the input is the JSON body of
 * POST /v1/galleries/g/evaluations, handled through the route table against a
 * real engine (fuzz_api.h) whose gallery has 16 labelled items with m1
 * and m2 embeddings, so a body can reach the exact ranking, the flips and
 * the paragon.  Each evaluation that succeeds is stored; the gallery (and
 * with it its evaluations) is rebuilt every RESET_RUNS runs.
 */
#include "fuzz_api.h"

#define RESET_RUNS 1000

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_api_post("/v1/galleries/" FUZZ_GALLERY "/evaluations", data, size);
    fuzz_api_end_run(RESET_RUNS, 0);
    return 0;
}
