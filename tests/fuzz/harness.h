/*
 * harness.h - what every libFuzzer harness of tests/fuzz shares: the
 * declarations of libFuzzer's entry points and the one way a harness
 * reports a finding.  harness.c is compiled into every harness
 * (meson.build); the request-body harnesses add fuzz_api.c, which
 * defines LLVMFuzzerInitialize for them (fuzz_api.h).
 *
 * Contract of a harness: it defines LLVMFuzzerTestOneInput (and, when it
 * needs set-up before the first input, LLVMFuzzerInitialize), returns 0
 * for every input, and on input that breaks the contract of the code
 * under test calls fuzz_finding, which does not return.
 */
#ifndef CD_FUZZ_HARNESS_H
#define CD_FUZZ_HARNESS_H

#include <stddef.h>
#include <stdint.h>

#include "error.h"

/* libFuzzer's entry points, declared once for every harness. */
int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/*
 * Prints "NAME: why (message)" to stderr, where NAME is the harness's
 * program name (fuzz_npy, ...) and message is err's (err NULL: no
 * parenthesis), then aborts, so that libFuzzer reports the finding and
 * saves the input.
 */
_Noreturn void fuzz_finding(const char *why, const cd_error *err);

#endif
