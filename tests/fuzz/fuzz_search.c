/*
 * fuzz_search.c - libFuzzer harness: the input is the JSON body of
 * POST /v1/galleries/g/search, handled through the route table against a real
 * engine (fuzz_api.h).  Searches of m1 go to the gallery model's index,
 * of m2 (declared compatible) to the mixed, partly backfilled gallery,
 * of m3 / m4 to the dim and metric checks.  Searches write nothing.
 */
#include "fuzz_api.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_api_post("/v1/galleries/" FUZZ_GALLERY "/search", data, size);
    return 0;
}
