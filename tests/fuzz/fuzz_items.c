/*
 * fuzz_items.c - libFuzzer harness: the input is the JSON body of
 * POST /v1/galleries/g/items, handled through the route table against a real
 * engine (fuzz_api.h).  Upserts that succeed are committed, so the gallery
 * is rebuilt every RESET_RUNS runs, or sooner when it grows past
 * MAX_ITEMS (fuzz_api_end_run).
 */
#include "fuzz_api.h"

#define RESET_RUNS 1000
#define MAX_ITEMS 2000

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_api_post("/v1/galleries/" FUZZ_GALLERY "/items", data, size);
    fuzz_api_end_run(RESET_RUNS, MAX_ITEMS);
    return 0;
}
