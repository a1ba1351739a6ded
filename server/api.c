/*
 * api.c - the helpers every handler shares on cd_api (see api.h).
 */
#include "api.h"

cd_limits cd_api_limits(const cd_api *api)
{
    cd_limits l = api->limits;
    if (l.max_batch == 0)
        l.max_batch = CD_DEFAULT_MAX_BATCH;
    if (l.max_queries == 0)
        l.max_queries = CD_DEFAULT_MAX_QUERIES;
    if (l.max_k <= 0 || l.max_k > CD_K_MAX)
        l.max_k = l.max_k <= 0 ? CD_DEFAULT_MAX_K : CD_K_MAX;
    if (l.max_dim <= 0 || l.max_dim > CD_DIM_MAX)
        l.max_dim = l.max_dim <= 0 ? CD_DEFAULT_MAX_DIM : CD_DIM_MAX;
    if (l.max_metadata == 0 || l.max_metadata > CD_METADATA_MAX)
        l.max_metadata = l.max_metadata == 0 ? CD_DEFAULT_MAX_METADATA : CD_METADATA_MAX;
    if (l.max_eval_probes == 0)
        l.max_eval_probes = CD_DEFAULT_MAX_EVAL_PROBES;
    if (l.max_results == 0)
        l.max_results = CD_DEFAULT_MAX_RESULTS;
    if (l.max_result_metadata == 0)
        l.max_result_metadata = CD_DEFAULT_MAX_RESULT_METADATA;
    return l;
}

bool cd_api_model(cd_api *api, const char *gallery, const char *model, cd_model *out,
                  cd_reply *rep)
{
    cd_error err;
    cd_err rc = cd_engine_request_model(api->engine, gallery, model, out, &err);
    if (rc != CD_OK) {
        cd_reply_core_error(rep, &err);
        return false;
    }
    return true;
}

bool cd_api_batch_fits(cd_api *api, size_t n, cd_reply *rep)
{
    cd_limits lim = cd_api_limits(api);
    if (n <= lim.max_batch)
        return true;
    cd_reply_error(rep, CD_HTTP_BATCH_TOO_LARGE, "a batch holds at most %zu items, got %zu",
                   lim.max_batch, n);
    return false;
}

void cd_api_items_store(cd_api *api, const char *gallery, const char *model,
                        const cd_item_in *items, size_t n, cd_reply *rep)
{
    cd_error err;
    cd_err rc = cd_engine_items_upsert(api->engine, gallery, model, items, n, &err);
    if (rc == CD_OK) {
        cJSON *root = cJSON_CreateObject();
        cJSON_AddNumberToObject(root, "upserted", (double)n);
        cd_reply_json(rep, 200, root);
    }
    cd_reply_failed(rep, rc, &err);
}
