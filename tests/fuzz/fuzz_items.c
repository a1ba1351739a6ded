/*
 * fuzz_items.c - libFuzzer harness: the input is the JSON body of
 * POST /v1/galleries/g/items, handled by cd_api_handle against a real
 * engine (fuzz_api.h).  Upserts that succeed are committed, so the gallery
 * is rebuilt every RESET_RUNS runs, or sooner when it grows past
 * MAX_ITEMS, to keep runs fast and findings reproducible from a fresh
 * fixture.
 */
#include <stddef.h>
#include <stdint.h>

#include "fuzz_api.h"

#define RESET_RUNS 1000
#define CHECK_RUNS 50
#define MAX_ITEMS 2000

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
    fuzz_api_post("/v1/galleries/" FUZZ_GALLERY "/items", data, size);
    runs++;
    if (runs % RESET_RUNS == 0 || (runs % CHECK_RUNS == 0 && fuzz_api_items() > MAX_ITEMS))
        fuzz_api_reset();
    return 0;
}
