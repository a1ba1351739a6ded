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

/* {"queries","overlap_at_k","top1_retained"} of one live key. */
static cJSON *live_json(const cd_live_stats *ls)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "queries", (double)ls->queries);
    cJSON_AddNumberToObject(o, "overlap_at_k", ls->overlap_at_k);
    cJSON_AddNumberToObject(o, "top1_retained", ls->top1_retained);
    return o;
}

/*
 * Gives each query_models entry its live agreement (SPEC 3.8; null when
 * no shadowed search has been seen since start), and adds an entry for
 * the numbers that have none (a pair searched through an adapter).
 */
static void add_live(cd_api *api, const char *gallery, cJSON *qm)
{
    cd_live_stats *ls = NULL;
    size_t n = cd_engine_live_list(api->engine, gallery, &ls);
    bool *used = n ? calloc(n, sizeof *used) : NULL;
    cJSON *o;
    cJSON_ArrayForEach(o, qm) {
        const char *model = cJSON_GetObjectItemCaseSensitive(o, "model")->valuestring;
        const cJSON *ad = cJSON_GetObjectItemCaseSensitive(o, "adapter");
        const char *adapter = cJSON_IsString(ad) ? ad->valuestring : "";
        size_t i = 0;
        while (i < n && (strcmp(ls[i].model, model) != 0 || strcmp(ls[i].adapter, adapter) != 0))
            i++;
        if (i < n && used) {
            used[i] = true;
            cJSON_AddItemToObject(o, "live", live_json(&ls[i]));
        } else {
            cJSON_AddNullToObject(o, "live");
        }
    }
    for (size_t i = 0; used && i < n; i++) {
        if (used[i])
            continue;
        o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "model", ls[i].model);
        if (ls[i].adapter[0])
            cJSON_AddStringToObject(o, "adapter", ls[i].adapter);
        cJSON_AddStringToObject(o, "status", "unverified");
        cJSON_AddNullToObject(o, "evaluation");
        cJSON_AddItemToObject(o, "live", live_json(&ls[i]));
        cJSON_AddItemToArray(qm, o);
    }
    free(used);
    free(ls);
}

void cd__gallery_reply(cd_api *api, const char *name, cd_reply *rep)
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
                if (evs[e].query_model_id == all[i].id && evs[e].adapter_id == 0)
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
    add_live(api, name, qm);
    cd_evaluations_destroy(evs, n_evs);
    free(all);
    free(counts);
    cd_gallery_route *routes = NULL;
    size_t n_routes = 0;
    if (cd_engine_gallery_routes(api->engine, name, &routes, &n_routes, &err) != CD_OK) {
        cJSON_Delete(root);
        cd_reply_core_error(rep, &err);
        return;
    }
    cJSON *ads = cJSON_AddObjectToObject(root, "adapters");
    for (size_t i = 0; i < n_routes; i++)
        cJSON_AddStringToObject(ads, routes[i].model, routes[i].adapter);
    free(routes);
    cd_reply_json(rep, 200, root);
}

void cd__gallery_get(cd_api *api, const cd_request *req, cd_reply *rep)
{
    cd__gallery_reply(api, req->params[0], rep);
}

/*
 * Reads a PATCH's "adapters" object ({"<model>": "<adapter>" | null})
 * into *out (n entries, pointing into a; free() the array).
 */
static bool read_routes(const cJSON *a, cd_route_request **out, size_t *n, cd_reply *rep)
{
    *out = NULL;
    *n = 0;
    if (!cJSON_IsObject(a)) {
        cd_reply_error(rep, CD_HTTP_INVALID_ARGUMENT,
                       "adapters must be an object of model name to adapter name or null");
        return false;
    }
    size_t count = (size_t)cJSON_GetArraySize(a);
    cd_route_request *r = calloc(count ? count : 1, sizeof *r);
    if (!r) {
        cd_reply_error(rep, CD_HTTP_OUT_OF_MEMORY, "out of memory for %zu routes", count);
        return false;
    }
    const cJSON *x;
    size_t i = 0;
    cJSON_ArrayForEach(x, a) {
        if (!cd_name_valid(x->string) ||
            !(cJSON_IsNull(x) || (cJSON_IsString(x) && cd_name_valid(x->valuestring)))) {
            cd_reply_error(rep, CD_HTTP_INVALID_NAME,
                           "adapters: each key is a model name and each value an adapter name "
                           "or null, names matching [A-Za-z0-9._-]{1,%d}", CD_NAME_MAX);
            free(r);
            return false;
        }
        r[i].model = x->string;
        r[i].adapter = cJSON_IsString(x) ? x->valuestring : NULL;
        i++;
    }
    *out = r;
    *n = i;
    return true;
}

void cd__gallery_patch(cd_api *api, const cd_request *req, cd_reply *rep)
{
    const char *name = req->params[0];
    static const char *const fields[] = {"query_policy", "adapters", NULL};
    cJSON *j = cd_json_body(req, rep);
    cd_route_request *routes = NULL;
    size_t n = 0;
    if (!j)
        return;
    const char *policy;
    cd_query_policy p;
    const cJSON *a = cJSON_GetObjectItemCaseSensitive(j, "adapters");
    if (!cd_json_only_fields(j, fields, "", rep) || !cd_json_string(j, "query_policy", &policy, "", rep))
        goto out;
    if ((policy && !cd_policy_parse(policy, &p)) || (!policy && !a)) {
        cd_reply_error(rep, CD_HTTP_INVALID_ARGUMENT,
                       policy ? "query_policy must be verified, declared or any"
                              : "give query_policy (verified, declared or any), adapters, or both");
        goto out;
    }
    if (a && !read_routes(a, &routes, &n, rep))
        goto out;
    cd_error err;
    cd_err rc = cd_engine_gallery_update(api->engine, name, policy ? &p : NULL, routes, n, &err);
    if (rc == CD_OK)
        cd__gallery_reply(api, name, rep);
    cd_reply_failed(rep, rc, &err);
out:
    free(routes);
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
