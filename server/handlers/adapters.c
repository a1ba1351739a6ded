/*
 * adapters.c - POST and GET /v1/adapters, GET and DELETE
 * /v1/adapters/{name} (SPEC.md §3.7).  A fit's pairs come inline, as
 * [{"from"|"from_b64", "to"|"to_b64"}], read with the vector readers of
 * request.c against the two models, or from a gallery the engine reads.
 */
#include "handlers.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A number of the fit that may be absent (NaN): null in JSON. */
static void add_fit_number(cJSON *obj, const char *name, double v)
{
    if (isnan(v))
        cJSON_AddNullToObject(obj, name);
    else
        cJSON_AddNumberToObject(obj, name, v);
}

/* The adapter as JSON; with its weights (dim_from rows) and bias when
 * the record holds them. */
static cJSON *adapter_json(const cd_adapter_record *a)
{
    const cd_adapter_params *p = &a->info.params;
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "name", a->name);
    cJSON_AddStringToObject(j, "from", a->from);
    cJSON_AddStringToObject(j, "to", a->to);
    cJSON_AddStringToObject(j, "kind", cd_adapter_kind_name(p->kind));
    cJSON_AddNumberToObject(j, "dim_from", p->dim_from);
    cJSON_AddNumberToObject(j, "dim_to", p->dim_to);
    cJSON_AddNumberToObject(j, "ridge", p->ridge);
    cJSON_AddNumberToObject(j, "pairs", (double)a->info.pairs);
    cJSON *fit = cJSON_AddObjectToObject(j, "fit");
    add_fit_number(fit, "mean_cosine", a->info.mean_cosine);
    add_fit_number(fit, "cv_mean_cosine", a->info.cv_mean_cosine);
    cJSON_AddStringToObject(j, "created_at", a->created_at);
    if (a->weights) {
        cJSON *w = cJSON_AddArrayToObject(j, "weights");
        for (int r = 0; r < p->dim_from; r++)
            cJSON_AddItemToArray(w, cJSON_CreateFloatArray(a->weights + (size_t)r * p->dim_to,
                                                           p->dim_to));
        if (a->bias)
            cJSON_AddItemToObject(j, "bias", cJSON_CreateFloatArray(a->bias, p->dim_to));
        else
            cJSON_AddNullToObject(j, "bias");
    }
    return j;
}

/*
 * Reads "pairs", an array of 1..max objects {"from"|"from_b64",
 * "to"|"to_b64"}, into *a (n x from's dim) and *b (n x to's dim),
 * malloc'd (the caller frees both, also on failure).
 */
static bool read_pairs(const cJSON *pairs, const cd_model *from, const cd_model *to,
                       size_t max, float **a, float **b, size_t *n, cd_reply *rep)
{
    static const char *const fields[] = {"from", "from_b64", "to", "to_b64", NULL};
    if (!cJSON_IsArray(pairs) || cJSON_GetArraySize(pairs) == 0) {
        cd_reply_error(rep, CD_HTTP_INVALID_ARGUMENT, "pairs must be a non-empty array");
        return false;
    }
    *n = (size_t)cJSON_GetArraySize(pairs);
    if (*n > max) {
        cd_reply_error(rep, CD_HTTP_BATCH_TOO_LARGE, "at most %zu pairs per request, got %zu",
                       max, *n);
        return false;
    }
    *a = malloc(*n * (size_t)from->dim * sizeof **a);
    *b = malloc(*n * (size_t)to->dim * sizeof **b);
    if (!*a || !*b) {
        cd_reply_error(rep, CD_HTTP_OUT_OF_MEMORY, "out of memory for %zu pairs", *n);
        return false;
    }
    size_t i = 0;
    const cJSON *pair;
    cJSON_ArrayForEach(pair, pairs) {
        char where[48];
        snprintf(where, sizeof where, "pair %zu: ", i);
        if (!cJSON_IsObject(pair)) {
            cd_reply_error(rep, CD_HTTP_INVALID_ARGUMENT, "%sa pair must be an object", where);
            return false;
        }
        if (!cd_json_only_fields(pair, fields, where, rep))
            return false;
        const cd_model *m[2] = {from, to};
        const char *names[2][2] = {{"from", "from_b64"}, {"to", "to_b64"}};
        float *out[2] = {*a + i * (size_t)from->dim, *b + i * (size_t)to->dim};
        for (int side = 0; side < 2; side++) {
            const cJSON *v = cJSON_GetObjectItemCaseSensitive(pair, names[side][0]);
            const cJSON *v64 = cJSON_GetObjectItemCaseSensitive(pair, names[side][1]);
            if ((v != NULL) == (v64 != NULL)) {
                cd_reply_error(rep, CD_HTTP_INVALID_VECTOR, "%sgive exactly one of %s and %s",
                               where, names[side][0], names[side][1]);
                return false;
            }
            if (!cd_json_vector_value(v ? v : v64, v64 != NULL, m[side], out[side], where, rep))
                return false;
        }
        i++;
    }
    return true;
}

void cd__adapters_create(cd_api *api, const cd_request *req, cd_reply *rep)
{
    static const char *const fields[] = {"name", "from", "to", "kind", "gallery", "pairs",
                                         "ridge", NULL};
    cJSON *j = cd_json_body(req, rep);
    if (!j)
        return;
    cd_adapter_fit_request fr;
    memset(&fr, 0, sizeof fr);
    float *a = NULL, *b = NULL;
    const char *kind;
    if (!cd_json_only_fields(j, fields, "", rep) || !cd_json_name(j, "name", &fr.name, rep) ||
        !cd_json_name(j, "from", &fr.from, rep) || !cd_json_name(j, "to", &fr.to, rep) ||
        !cd_json_string(j, "kind", &kind, "", rep) ||
        !cd_json_string(j, "gallery", &fr.gallery, "", rep))
        goto out;
    if (kind && !cd_adapter_kind_parse(kind, &fr.kind)) {
        cd_reply_error(rep, CD_HTTP_INVALID_ARGUMENT, "kind must be orthogonal, linear or affine");
        goto out;
    }
    fr.kind_given = kind != NULL;
    const cJSON *ridge = cJSON_GetObjectItemCaseSensitive(j, "ridge");
    if (ridge && !cJSON_IsNull(ridge)) {
        if (!cJSON_IsNumber(ridge) || !isfinite(ridge->valuedouble) || ridge->valuedouble < 0) {
            cd_reply_error(rep, CD_HTTP_INVALID_ARGUMENT, "ridge must be a finite number >= 0");
            goto out;
        }
        fr.ridge = ridge->valuedouble;
    }
    const cJSON *pairs = cJSON_GetObjectItemCaseSensitive(j, "pairs");
    if (pairs && cJSON_IsNull(pairs))
        pairs = NULL;
    if ((fr.gallery != NULL) == (pairs != NULL)) {
        cd_reply_error(rep, CD_HTTP_INVALID_ARGUMENT, "give exactly one of gallery and pairs");
        goto out;
    }
    if (fr.gallery && !cd_name_valid(fr.gallery)) {
        cd_reply_error(rep, CD_HTTP_INVALID_NAME, "gallery must match [A-Za-z0-9._-]{1,64}");
        goto out;
    }
    cd_error err;
    cd_err rc;
    if (pairs) {
        /* The models first: the pairs are read against their dims. */
        cd_model from, to;
        rc = cd_engine_model_get(api->engine, fr.from, &from, &err);
        if (rc == CD_OK)
            rc = cd_engine_model_get(api->engine, fr.to, &to, &err);
        if (rc != CD_OK) {
            cd_reply_core_error(rep, &err);
            goto out;
        }
        if (!read_pairs(pairs, &from, &to, cd_api_limits(api).max_eval_probes, &a, &b,
                        &fr.n_pairs, rep))
            goto out;
        fr.from_vectors = a;
        fr.to_vectors = b;
    }
    cd_adapter_record rec;
    size_t needed;
    rc = cd_engine_adapter_fit(api->engine, &fr, &rec, &needed, &err);
    if (rc == CD_OK)
        cd_reply_json(rep, 201, adapter_json(&rec));
    else if (needed)
        cd_reply_error(rep, CD_HTTP_TOO_FEW_PAIRS, "%s", err.message);
    else
        cd_reply_core_error(rep, &err);
    cd_adapter_record_finish(&rec);
out:
    free(a);
    free(b);
    cJSON_Delete(j);
}

void cd__adapters_list(cd_api *api, const cd_request *req, cd_reply *rep)
{
    cd_adapter_record *as = NULL;
    size_t n = 0;
    cd_error err;
    cd_err rc = cd_engine_adapter_list(api->engine, &as, &n, &err);
    if (rc == CD_OK) {
        cJSON *root = cJSON_CreateObject();
        cJSON *arr = cJSON_AddArrayToObject(root, "adapters");
        for (size_t i = 0; i < n; i++)
            cJSON_AddItemToArray(arr, adapter_json(&as[i]));
        cd_reply_json(rep, 200, root);
    }
    cd_reply_failed(rep, rc, &err);
    cd_adapter_records_destroy(as, n);
}

void cd__adapter_get(cd_api *api, const cd_request *req, cd_reply *rep)
{
    const char *weights = cd_request_arg(req, "weights");
    bool with_weights = weights && (strcmp(weights, "true") == 0 || strcmp(weights, "1") == 0);
    if (weights && !with_weights && strcmp(weights, "false") != 0 &&
        strcmp(weights, "0") != 0) {
        cd_reply_error(rep, CD_HTTP_INVALID_ARGUMENT, "weights must be true or false");
        return;
    }
    cd_adapter_record a;
    cd_error err;
    cd_err rc = cd_engine_adapter_get(api->engine, req->params[0], with_weights, &a, &err);
    if (rc == CD_OK)
        cd_reply_json(rep, 200, adapter_json(&a));
    cd_reply_failed(rep, rc, &err);
    cd_adapter_record_finish(&a);
}

void cd__adapter_delete(cd_api *api, const cd_request *req, cd_reply *rep)
{
    cd_error err;
    cd_err rc = cd_engine_adapter_delete(api->engine, req->params[0], &err);
    if (rc == CD_OK)
        cd_reply_text(rep, 204, NULL, "", 0);
    cd_reply_failed(rep, rc, &err);
}
