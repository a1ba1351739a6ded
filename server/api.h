/*
 * api.h - what every handler can reach (cd_api: the engine, the metrics,
 * the per-request limits) and the helpers they share on it.  Built once
 * by serve.c, read by every request thread.
 */
#ifndef CD_API_H
#define CD_API_H

#include <stdatomic.h>
#include <stdbool.h>

#include "engine.h"
#include "metrics.h"
#include "reply.h"

/* Defaults of cd_limits (and of the serve flags of the same names). */
#define CD_DEFAULT_MAX_BATCH 100000         /* --max-batch */
#define CD_DEFAULT_MAX_QUERIES 10000        /* --max-queries */
#define CD_DEFAULT_MAX_K CD_K_MAX           /* --max-k */
#define CD_DEFAULT_MAX_DIM CD_DIM_MAX       /* --max-dim */
#define CD_DEFAULT_MAX_METADATA CD_METADATA_MAX /* --max-metadata */
#define CD_DEFAULT_MAX_EVAL_PROBES 100000   /* --max-eval-probes */
#define CD_DEFAULT_MAX_RESULTS 1000000      /* --max-results */
#define CD_DEFAULT_MAX_RESULT_METADATA (256u << 20) /* --max-result-metadata */

/*
 * What one request may ask for.  A field left 0 takes its default above;
 * max_k, max_dim and max_metadata above their CD_*_MAX are capped there.
 */
typedef struct cd_limits {
    size_t max_batch;       /* items per upsert (413 batch_too_large) */
    size_t max_queries;     /* vectors per search (413 batch_too_large) */
    int max_k;              /* k of a search (400 invalid_k) */
    int max_dim;            /* dim of a new model (400 invalid_argument) */
    size_t max_metadata;    /* bytes of an item's metadata (400 invalid_metadata) */
    size_t max_eval_probes; /* queries, and baseline probes, per evaluation (413) */
    size_t max_results;     /* queries x k of a search (400 result_too_large) */
    size_t max_result_metadata; /* bytes of metadata a search may return, counted
                               as queries x k x max_metadata (400 result_too_large) */
} cd_limits;

/* What every handler can reach. */
typedef struct cd_api {
    cd_engine *engine;
    size_t max_body;
    cd_metrics *metrics;    /* for GET /metrics */
    cd_limits limits;
    bool metrics_public;    /* GET /metrics needs no key */
    atomic_bool keys_seen;  /* a key row exists: from then on keys are
                               required for good (rows are never deleted) */
} cd_api;

/* api->limits with the defaults for the fields left 0 and the caps
 * applied. */
cd_limits cd_api_limits(const cd_api *api);

/*
 * Sets *out to the model a request names (model, or the gallery's own
 * when NULL) for gallery.  Returns true, or false with rep set to the
 * core error (unknown gallery or model, a model the gallery's policy
 * refuses).
 */
bool cd_api_model(cd_api *api, const char *gallery, const char *model, cd_model *out,
                  cd_reply *rep);

/* What both upsert bodies (JSON, binary) share: whether n items fit in a
 * batch (413 batch_too_large), and the upsert itself, replying
 * {"upserted": n} or the core error. */
bool cd_api_batch_fits(cd_api *api, size_t n, cd_reply *rep);
void cd_api_items_store(cd_api *api, const char *gallery, const char *model,
                        const cd_item_in *items, size_t n, cd_reply *rep);

#endif
