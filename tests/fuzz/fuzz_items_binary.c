/*
 * fuzz_items_binary.c - libFuzzer harness: the input is the binary item
 * batch (application/octet-stream) of POST /v1/galleries/g/items, the
 * gallery's model m1 of dim 4 (vec.h's CD_BATCH layout), handled through
 * the route table against a real engine (fuzz_api.h).  Batches that
 * succeed are committed, so the gallery is rebuilt as fuzz_items.c's is.
 */
#include "fuzz_api.h"

#define RESET_RUNS 1000
#define MAX_ITEMS 2000

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_api_post_typed("/v1/galleries/" FUZZ_GALLERY "/items", "application/octet-stream", data,
                        size);
    fuzz_api_end_run(RESET_RUNS, MAX_ITEMS);
    return 0;
}
