/*
 * metrics.h - request counters and latency histograms for /metrics, in
 * Prometheus text format.  Safe to call from every request thread.
 */
#ifndef CD_METRICS_H
#define CD_METRICS_H

#include <stddef.h>

#include "engine.h"

typedef struct cd_metrics cd_metrics;

/* Returns a new, empty set of counters, or NULL when out of memory.
 * Free with cd_metrics_destroy(). */
cd_metrics *cd_metrics_create(void);

/* Accepts NULL. */
void cd_metrics_destroy(cd_metrics *m);

/* Counts one request of method on route pattern (e.g. "/v1/models/{name}",
 * a string of the router's, not the client's) that answered status after
 * seconds.  Methods other than GET, HEAD, POST, PUT, PATCH, DELETE and
 * OPTIONS count as "other". */
void cd_metrics_observe(cd_metrics *m, const char *method, const char *route,
                        int status, double seconds);

/* Counts one search through adapter name (compatd_adapter_searches_total).
 * Names past the first 256 seen count as "(other)", so that the series
 * stay bounded whatever adapters come and go. */
void cd_metrics_adapter_search(cd_metrics *m, const char *adapter);

/*
 * Renders every counter, plus items per gallery and model and index
 * statistics from e (may be NULL), as Prometheus text.  Returns a malloc'd
 * string (free()) and its length in *len, or NULL when out of memory.
 */
char *cd_metrics_render(cd_metrics *m, cd_engine *e, size_t *len);

#endif
