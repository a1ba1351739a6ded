/*
 * models.c - GET and POST /v1/models, GET /v1/models/{name}.
 */
#include "handlers.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "text.h"

static cJSON *model_json(const cd_model *m)
{
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "name", m->name);
    cJSON_AddNumberToObject(j, "dim", m->dim);
    cJSON_AddStringToObject(j, "metric", cd_metric_name(m->metric));
    if (m->compatible_with[0])
        cJSON_AddStringToObject(j, "compatible_with", m->compatible_with);
    else
        cJSON_AddNullToObject(j, "compatible_with");
    cJSON_AddStringToObject(j, "description", m->description);
    cJSON_AddStringToObject(j, "created_at", m->created_at);
    return j;
}

void cd__models_create(cd_api *api, const cd_request *req, cd_reply *rep)
{
    static const char *const fields[] = {"name", "dim", "metric", "compatible_with",
                                         "description", NULL};
    cJSON *j = cd_json_body(req, rep);
    if (!j)
        return;
    cd_model m;
    memset(&m, 0, sizeof m);
    const char *name, *metric, *compat, *desc;
    long dim;
    int max_dim = cd_api_limits(api).max_dim;
    if (!cd_json_only_fields(j, fields, "", rep) || !cd_json_name(j, "name", &name, rep))
        goto out;
    if (!cd_json_int(cJSON_GetObjectItemCaseSensitive(j, "dim"), 1, max_dim, &dim)) {
        cd_reply_error(rep, CD_HTTP_INVALID_ARGUMENT, "dim must be an integer 1..%d", max_dim);
        goto out;
    }
    if (!cd_json_string(j, "metric", &metric, "", rep))
        goto out;
    if (!metric || !cd_metric_parse(metric, &m.metric)) {
        cd_reply_error(rep, CD_HTTP_INVALID_ARGUMENT, "metric must be cosine, ip or l2");
        goto out;
    }
    if (!cd_json_string(j, "compatible_with", &compat, "", rep) ||
        !cd_json_string(j, "description", &desc, "", rep))
        goto out;
    if (compat && !cd_name_valid(compat)) {
        cd_reply_error(rep, CD_HTTP_INVALID_NAME, "compatible_with must match [A-Za-z0-9._-]{1,64}");
        goto out;
    }
    if (desc && strlen(desc) > CD_DESCRIPTION_MAX) {
        cd_reply_error(rep, CD_HTTP_INVALID_ARGUMENT, "description is longer than %d bytes",
                       CD_DESCRIPTION_MAX);
        goto out;
    }
    snprintf(m.name, sizeof m.name, "%s", name);
    m.dim = (int)dim;
    snprintf(m.compatible_with, sizeof m.compatible_with, "%s", compat ? compat : "");
    snprintf(m.description, sizeof m.description, "%s", desc ? desc : "");
    cd_model out;
    cd_error err;
    cd_err rc = cd_engine_model_create(api->engine, &m, &out, &err);
    if (rc == CD_OK)
        cd_reply_json(rep, 201, model_json(&out));
    cd_reply_failed(rep, rc, &err);
out:
    cJSON_Delete(j);
}

void cd__models_list(cd_api *api, const cd_request *req, cd_reply *rep)
{
    cd_model *ms = NULL;
    size_t n = 0;
    cd_error err;
    cd_err rc = cd_engine_model_list(api->engine, &ms, &n, &err);
    if (rc == CD_OK) {
        cJSON *root = cJSON_CreateObject();
        cJSON *arr = cJSON_AddArrayToObject(root, "models");
        for (size_t i = 0; i < n; i++)
            cJSON_AddItemToArray(arr, model_json(&ms[i]));
        cd_reply_json(rep, 200, root);
    }
    cd_reply_failed(rep, rc, &err);
    free(ms);
}

void cd__model_get(cd_api *api, const cd_request *req, cd_reply *rep)
{
    const char *name = req->params[0];
    cd_model m;
    cd_error err;
    cd_err rc = cd_engine_model_get(api->engine, name, &m, &err);
    if (rc == CD_OK)
        cd_reply_json(rep, 200, model_json(&m));
    cd_reply_failed(rep, rc, &err);
}
