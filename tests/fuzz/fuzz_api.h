/*
 * fuzz_api.h - what the request-body fuzzers share: a real engine in a
 * temporary data directory, with models and a labelled, partly
 * backfilled gallery, and one call that posts a body to a route through
 * the route table (cd_route_find, cd_route_dispatch) and checks the reply.  Linking fuzz_api.c gives a harness
 * its LLVMFuzzerInitialize (harness.h), which opens the engine and builds
 * the fixture, exiting the process on failure (a harness that cannot
 * start has nothing to report); the harness defines only
 * LLVMFuzzerTestOneInput.
 *
 * The data directory lives under $TMPDIR (tests/fuzz/run.sh points it at a
 * directory of its own, on /dev/shm when there is one, and removes it) and
 * is removed at exit.
 *
 * Fixture, set up by LLVMFuzzerInitialize and again by fuzz_api_end_run:
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

#include "harness.h"

#define FUZZ_GALLERY "g"
#define FUZZ_ITEMS 24
#define FUZZ_LABELLED 16
#define FUZZ_CHECK_RUNS 50

/*
 * POSTs the size bytes at data (any bytes) as an application/json body to
 * path, through the route table with no connection (POST bodies read no
 * query arguments).  Aborts (a finding) when the reply breaks the API's
 * contract: a 5xx, a body that is not valid UTF-8 JSON, or an error
 * document whose status differs from the reply's.  Returns the status.
 */
int fuzz_api_post(const char *path, const uint8_t *data, size_t size);

/* fuzz_api_post with a body of content_type ("application/octet-stream"). */
int fuzz_api_post_typed(const char *path, const char *content_type, const uint8_t *data,
                        size_t size);

/*
 * Ends a run of a harness whose bodies write to gallery g: counts it, and
 * every reset_runs (>= 1) runs, or sooner when the gallery has grown past
 * max_items items (0: no limit; looked at every FUZZ_CHECK_RUNS runs, as
 * counting costs a query), deletes gallery g (its items and evaluations)
 * and builds it again, to keep runs fast and findings reproducible from a
 * fresh fixture.  A harness whose bodies write nothing need not call it.
 */
void fuzz_api_end_run(unsigned long reset_runs, long max_items);

#endif
