/*
 * handlers.h - the handlers of the route table (route.c), one file per
 * resource: models.c, galleries.c, items.c, search.c, evaluations.c,
 * adapters.c, lifecycle.c (backfill, promotion, retirement) and ops.c (probes, metrics, the dashboard's files, the API
 * description).
 * Private to server/: only route.c and the handlers include it.
 *
 * Each handler: check the body (request.h's readers), turn it into core
 * arguments, call the engine, render the result into rep (reply.h).
 * Nothing is stored unless the whole request is valid.  The route's path
 * parameters are req->params, in the order of its pattern.
 */
#ifndef CD_HANDLERS_H
#define CD_HANDLERS_H

#include <cjson/cJSON.h>

#include "api.h"
#include "engine.h"
#include "reply.h"
#include "request.h"

/* ops.c */
void cd__dashboard_get(cd_api *api, const cd_request *req, cd_reply *rep);
void cd__asset_get(cd_api *api, const cd_request *req, cd_reply *rep);      /* {file} */
void cd__healthz_get(cd_api *api, const cd_request *req, cd_reply *rep);
void cd__readyz_get(cd_api *api, const cd_request *req, cd_reply *rep);
void cd__metrics_get(cd_api *api, const cd_request *req, cd_reply *rep);
void cd__openapi_get(cd_api *api, const cd_request *req, cd_reply *rep);

/* models.c */
void cd__models_list(cd_api *api, const cd_request *req, cd_reply *rep);
void cd__models_create(cd_api *api, const cd_request *req, cd_reply *rep);
void cd__model_get(cd_api *api, const cd_request *req, cd_reply *rep);      /* {name} */

/* galleries.c; {g} */
void cd__galleries_list(cd_api *api, const cd_request *req, cd_reply *rep);
void cd__galleries_create(cd_api *api, const cd_request *req, cd_reply *rep);
void cd__gallery_get(cd_api *api, const cd_request *req, cd_reply *rep);
void cd__gallery_patch(cd_api *api, const cd_request *req, cd_reply *rep);
void cd__gallery_delete(cd_api *api, const cd_request *req, cd_reply *rep);

/* items.c; {g}, {id} */
void cd__items_upsert(cd_api *api, const cd_request *req, cd_reply *rep);
/* items_binary.c: the upsert with an application/octet-stream body (vec.h's
 * CD_BATCH layout), which cd__items_upsert hands it; {g} */
void cd__items_upsert_binary(cd_api *api, const cd_request *req, cd_reply *rep);
void cd__items_list(cd_api *api, const cd_request *req, cd_reply *rep);
void cd__items_delete(cd_api *api, const cd_request *req, cd_reply *rep);
void cd__item_get(cd_api *api, const cd_request *req, cd_reply *rep);
void cd__item_delete(cd_api *api, const cd_request *req, cd_reply *rep);

/* search.c; {g} */
void cd__search(cd_api *api, const cd_request *req, cd_reply *rep);

/* evaluations.c; {g}, {id} or an adapter's {name} */
void cd__evaluations_create(cd_api *api, const cd_request *req, cd_reply *rep);
void cd__evaluations_list(cd_api *api, const cd_request *req, cd_reply *rep);
void cd__evaluation_get(cd_api *api, const cd_request *req, cd_reply *rep);
void cd__compatibility_get(cd_api *api, const cd_request *req, cd_reply *rep);
void cd__adapter_evaluations(cd_api *api, const cd_request *req, cd_reply *rep);

/* adapters.c; {name} */
void cd__adapters_create(cd_api *api, const cd_request *req, cd_reply *rep);
void cd__adapters_list(cd_api *api, const cd_request *req, cd_reply *rep);
void cd__adapter_get(cd_api *api, const cd_request *req, cd_reply *rep);
void cd__adapter_delete(cd_api *api, const cd_request *req, cd_reply *rep);

/* lifecycle.c; {g}, {model}: finishing an upgrade */
void cd__backfill_get(cd_api *api, const cd_request *req, cd_reply *rep);
void cd__gallery_promote(cd_api *api, const cd_request *req, cd_reply *rep);
void cd__embeddings_retire(cd_api *api, const cd_request *req, cd_reply *rep);

/* The reply of GET /v1/galleries/{g} (galleries.c). */
void cd__gallery_reply(cd_api *api, const char *name, cd_reply *rep);

/* What GET /v1/galleries/{g} and the matrix say of one evaluation
 * (evaluations.c).  Free with cJSON_Delete(). */
cJSON *cd__evaluation_brief(const cd_evaluation *ev);

#endif
