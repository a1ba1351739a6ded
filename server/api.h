/*
 * api.h - the /v1 routes: JSON in, core calls, JSON out; and which key
 * scope each route needs.
 */
#ifndef CD_API_H
#define CD_API_H

#include <stdatomic.h>
#include <stdbool.h>

#include "engine.h"
#include "http.h"
#include "metrics.h"

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

/* A route the server answers: its path pattern ("/v1/models/{name}") and
 * the methods it answers ("GET, POST"). */
typedef struct cd_route_info {
    const char *pattern;
    const char *methods;
} cd_route_info;

/* Sets *out to the table of every route (static; not freed) and returns
 * its length.  schema/openapi.yaml describes exactly these. */
size_t cd_api_routes(const cd_route_info **out);

/* Routes req and fills rep.  Never fails: every problem becomes a reply. */
void cd_api_handle(cd_api *api, const cd_request *req, cd_reply *rep);

/*
 * Decides whether req (its method, path, api_key and auth_invalid; the
 * body is not looked at, so this can run before it arrives) may go on to
 * cd_api_handle.  Returns true when it may: the route needs no key, the
 * data directory has no key at all (open mode), or req's key is active
 * and of a scope that includes the route's.  Otherwise fills rep with 401
 * `unauthorized` (no key, a malformed header, an unknown or revoked key;
 * rep->authenticate set) or 403 `forbidden` (scope too low), or 503 when
 * the keys cannot be read, and returns false.  Sets rep->route either way.
 */
bool cd_api_authorize(cd_api *api, const cd_request *req, cd_reply *rep);

/*
 * Sets *out to whether requests need a key: true once any key row exists
 * (revoked ones too), for good.  Returns CD_OK, or the store's error.
 */
cd_err cd_api_keys_required(cd_api *api, bool *out, cd_error *err);

#endif
