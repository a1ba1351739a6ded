/*
 * galleries.c - the /v1/galleries routes but items, search and evaluations.
 * A gallery's reply also says which models may query it and why (its
 * latest evaluations, else the compatible_with chains).
 */
#include "handlers.h"

#include <stdlib.h>
#include <string.h>

#include "eval.h"

static cJSON *gallery_json(const cd_gallery *g)
{
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "name", g->name);
    cJSON_AddStringToObject(j, "model", g->model);
    cJSON_AddStringToObject(j, "index", g->index_spec);
    cJSON_AddNumberToObject(j, "count", (double)g->count);
    cJSON_AddStringToObject(j, "query_policy", cd_policy_name(g->policy));
    cJSON_AddStringToObject(j, "created_at", g->created_at);
    return j;
}

void cd__galleries_create(cd_api *api, const cd_request *req, cd_reply *rep)
{
    static const char *const fields[] = {"name", "model", "index", NULL};
    cJSON *j = cd_json_body(req, rep);
    if (!j)
        return;
    const char *name, *model, *spec;
    if (!cd_json_only_fields(j, fields, "", rep) || !cd_json_name(j, "name", &name, rep) ||
        !cd_json_name(j, "model", &model, rep) || !cd_json_string(j, "index", &spec, "", rep))
        goto out;
    if (spec && (spec[0] == '\0' || strlen(spec) > CD_SPEC_MAX)) {
        cd_reply_error(rep, CD_HTTP_INVALID_INDEX, "index must be a FAISS index-factory string of 1..%d bytes",
                       CD_SPEC_MAX);
        goto out;
    }
    cd_gallery g;
    cd_error err;
    cd_err rc = cd_engine_gallery_create(api->engine, name, model, spec, &g, &err);
    if (rc == CD_OK)
        cd_reply_json(rep, 201, gallery_json(&g));
    else if (rc == CD_EINVAL)
        cd_reply_error(rep, CD_HTTP_INVALID_INDEX, "%s", err.message);
    else
        cd_reply_core_error(rep, &err);
out:
    cJSON_Delete(j);
}

void cd__galleries_list(cd_api *api, const cd_request *req, cd_reply *rep)
{
    cd_gallery *gs = NULL;
    size_t n = 0;
    cd_error err;
    cd_err rc = cd_engine_gallery_list(api->engine, &gs, &n, &err);
    if (rc == CD_OK) {
        cJSON *root = cJSON_CreateObject();
        cJSON *arr = cJSON_AddArrayToObject(root, "galleries");
        for (size_t i = 0; i < n; i++)
            cJSON_AddItemToArray(arr, gallery_json(&gs[i]));
        cd_reply_json(rep, 200, root);
    }
    cd_reply_failed(rep, rc, &err);
    free(gs);
}

static void gallery_reply(cd_api *api, const char *name, cd_reply *rep)
{
    cd_gallery g;
    cd_error err;
    cd_model_count *counts = NULL;
    size_t n = 0;
    cd_err rc = cd_engine_gallery_get(api->engine, name, &g, &err);
    if (rc == CD_OK)
        rc = cd_engine_gallery_embeddings(api->engine, name, &counts, &n, &err);
    if (rc != CD_OK) {
        cd_reply_core_error(rep, &err);
        return;
    }
    cJSON *root = gallery_json(&g);
    cd_error why;
    bool down = cd_engine_gallery_unavailable(api->engine, name, &why);
    cJSON_AddStringToObject(root, "state", down ? "unavailable" : "ready");
    if (down)
        cJSON_AddStringToObject(root, "error", why.message);
    double recall;
    if (!down && cd_engine_index_recall(api->engine, name, &recall, &why) == CD_OK)
        cJSON_AddNumberToObject(root, "index_recall", recall);
    else
        cJSON_AddNullToObject(root, "index_recall");
    cJSON *emb = cJSON_AddObjectToObject(root, "embeddings");
    cJSON *qm = cJSON_AddArrayToObject(root, "query_models");
    for (size_t i = 0; i < n; i++) {
        cJSON_AddNumberToObject(emb, counts[i].model, (double)counts[i].items);
    }
    /* Every other model of the same dim and metric could query it; its
     * status comes from its latest evaluation here, else from its
     * compatible_with chain. */
    cd_model gm, *all = NULL;
    cd_evaluation *evs = NULL;
    size_t n_all = 0, n_evs = 0;
    if (cd_engine_model_get(api->engine, g.model, &gm, &err) == CD_OK &&
        cd_engine_model_list(api->engine, &all, &n_all, &err) == CD_OK &&
        cd_engine_evaluation_latest(api->engine, name, &evs, &n_evs, &err) == CD_OK) {
        for (size_t i = 0; i < n_all; i++) {
            if (all[i].id == gm.id || all[i].dim != gm.dim || all[i].metric != gm.metric)
                continue;
            const cd_evaluation *ev = NULL;
            for (size_t e = 0; e < n_evs && !ev; e++)
                if (evs[e].query_model_id == all[i].id)
                    ev = &evs[e];
            const char *status;
            if (ev && ev->compatible == 1)
                status = "verified";
            else if (ev && ev->compatible == 0)
                status = "failed";
            else if (cd_engine_declared_compatible(api->engine, &all[i], gm.name))
                status = "declared";
            else
                status = "unverified";
            cJSON *o = cJSON_CreateObject();
            cJSON_AddStringToObject(o, "model", all[i].name);
            cJSON_AddStringToObject(o, "status", status);
            if (ev)
                cJSON_AddItemToObject(o, "evaluation", cd__evaluation_brief(ev));
            else
                cJSON_AddNullToObject(o, "evaluation");
            cJSON_AddItemToArray(qm, o);
        }
    }
    cd_evaluations_destroy(evs, n_evs);
    free(all);
    free(counts);
    cd_reply_json(rep, 200, root);
}

void cd__gallery_get(cd_api *api, const cd_request *req, cd_reply *rep)
{
    gallery_reply(api, req->params[0], rep);
}

void cd__gallery_patch(cd_api *api, const cd_request *req, cd_reply *rep)
{
    const char *name = req->params[0];
    static const char *const fields[] = {"query_policy", NULL};
    cJSON *j = cd_json_body(req, rep);
    if (!j)
        return;
    const char *policy;
    cd_query_policy p;
    if (!cd_json_only_fields(j, fields, "", rep) || !cd_json_string(j, "query_policy", &policy, "", rep))
        goto out;
    if (!policy || !cd_policy_parse(policy, &p)) {
        cd_reply_error(rep, CD_HTTP_INVALID_ARGUMENT,
                       "query_policy must be verified, declared or any");
        goto out;
    }
    cd_error err;
    cd_err rc = cd_engine_gallery_set_policy(api->engine, name, p, &err);
    if (rc == CD_OK)
        gallery_reply(api, name, rep);
    cd_reply_failed(rep, rc, &err);
out:
    cJSON_Delete(j);
}

void cd__gallery_delete(cd_api *api, const cd_request *req, cd_reply *rep)
{
    const char *name = req->params[0];
    cd_error err;
    cd_err rc = cd_engine_gallery_delete(api->engine, name, &err);
    if (rc == CD_OK)
        cd_reply_text(rep, 204, NULL, "", 0);
    cd_reply_failed(rep, rc, &err);
}
