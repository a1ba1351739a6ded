/*
 * harness.c - the part every libFuzzer harness shares (see harness.h).
 */
#include "harness.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

_Noreturn void fuzz_finding(const char *why, const cd_error *err)
{
    /* glibc's basename of argv[0]: the executable, fuzz_NAME (meson.build). */
    if (err)
        fprintf(stderr, "%s: %s (%s)\n", program_invocation_short_name, why, err->message);
    else
        fprintf(stderr, "%s: %s\n", program_invocation_short_name, why);
    abort();
}
