/*
 * fuzz_api.h - what the request-body fuzzers share: a real engine in a
 * temporary data directory, with models and a labelled, partly
 * backfilled gallery, and one call that posts a body to a route through
 * cd_api_handle and checks the reply.
 *
 * The data directory lives under $TMPDIR (tests/fuzz/run.sh points it at a
 * directory of its own, on /dev/shm when there is one, and removes it) and
 * is removed at exit.
 *
 * Fixture, set up by fuzz_api_init and again by fuzz_api_reset:
 *   models   m1 (dim 4, cosine), m2 (dim 4, cosine, compatible_with m1),
 *            m3 (dim 4, l2), m4 (dim 8, ip)
 *   gallery  g of m1, Flat, query_policy "declared"; items i0..i23, the
 *            first FUZZ_LABELLED labelled l0..l5 and with an m2 embedding
 *            too (so evaluations have a paragon and m2 searches a mixed
 *            gallery), the rest unlabelled with m1 only.
 */
#ifndef CD_FUZZ_API_H
#define CD_FUZZ_API_H

#include <stddef.h>
#include <stdint.h>

#define FUZZ_GALLERY "g"
#define FUZZ_ITEMS 24
#define FUZZ_LABELLED 16

/* Opens the engine and builds the fixture; exits the process on failure
 * (a harness that cannot start has nothing to report). */
void fuzz_api_init(void);

/* The number of items in gallery g now. */
long fuzz_api_items(void);

/* Deletes gallery g (its items and evaluations) and builds it again. */
void fuzz_api_reset(void);

/*
 * POSTs the size bytes at data (any bytes) as an application/json body to
 * path, through cd_api_handle with no connection (POST bodies read no
 * query arguments).  Aborts (a finding) when the reply breaks the API's
 * contract: a 5xx, a body that is not valid UTF-8 JSON, or an error
 * document whose status differs from the reply's.  Returns the status.
 */
int fuzz_api_post(const char *path, const uint8_t *data, size_t size);

#endif
