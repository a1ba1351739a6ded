/*
 * api.h - the /v1 routes: JSON in, core calls, JSON out.
 */
#ifndef CD_API_H
#define CD_API_H

#include "engine.h"
#include "http.h"
#include "metrics.h"

/* What every handler can reach. */
typedef struct cd_api {
    cd_engine *engine;
    size_t max_body;
    cd_metrics *metrics;    /* for GET /metrics */
} cd_api;

/* Routes req and fills rep.  Never fails: every problem becomes a reply. */
void cd_api_handle(cd_api *api, const cd_request *req, cd_reply *rep);

#endif
