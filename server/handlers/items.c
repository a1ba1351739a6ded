/*
 * items.c - POST /v1/galleries/{g}/items (an upsert of a batch, all or
 * nothing), GET /v1/galleries/{g}/items (a listing, page by page), POST
 * /v1/galleries/{g}/items/delete (a batch of deletes, all or nothing) and
 * GET and DELETE /v1/galleries/{g}/items/{id}.  The binary form of the
 * upsert's body is items_binary.c's; both end in cd_api_items_store.
 */
#include "handlers.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "text.h"

void cd__items_upsert(cd_api *api, const cd_request *req, cd_reply *rep)
{
    if (cd_request_content_type_is(req, "application/octet-stream")) {
        cd__items_upsert_binary(api, req, rep);
        return;
    }
    const char *gallery = req->params[0];
    static const char *const fields[] = {"model", "items", NULL};
    static const char *const item_fields[] = {"id", "label", "metadata", "vector",
                                              "vector_b64", NULL};
    cJSON *j = cd_json_body(req, rep);
    cd_item_in *items = NULL;
    char **texts = NULL;    /* labels from numbers and metadata, to free */
    float *vecs = NULL;
    size_t n = 0, n_texts = 0;
    cd_limits lim = cd_api_limits(api);
    if (!j)
        return;
    const char *model;
    cd_model m;
    if (!cd_json_only_fields(j, fields, "", rep) || !cd_json_string(j, "model", &model, "", rep))
        goto out;
    const char *query_model = cd_request_arg(req, "model");
    if (query_model && !cd_name_valid(query_model)) {
        cd_reply_error(rep, CD_HTTP_INVALID_NAME, "model must match [A-Za-z0-9._-]{1,64}");
        goto out;
    }
    if (model && query_model && strcmp(model, query_model) != 0) {
        cd_reply_error(rep, CD_HTTP_INVALID_ARGUMENT,
                       "the body names model %s, the query model %s: name one", model,
                       query_model);
        goto out;
    }
    if (!model)
        model = query_model;
    if (model && !cd_name_valid(model)) {
        cd_reply_error(rep, CD_HTTP_INVALID_NAME, "model must match [A-Za-z0-9._-]{1,64}");
        goto out;
    }
    const cJSON *arr = cJSON_GetObjectItemCaseSensitive(j, "items");
    if (!cJSON_IsArray(arr) || cJSON_GetArraySize(arr) == 0) {
        cd_reply_error(rep, CD_HTTP_INVALID_ARGUMENT, "items must be a non-empty array");
        goto out;
    }
    n = (size_t)cJSON_GetArraySize(arr);
    if (!cd_api_batch_fits(api, n, rep))
        goto out;
    if (!cd_api_model(api, gallery, model, &m, rep))
        goto out;
    items = calloc(n, sizeof *items);
    texts = calloc(2 * n, sizeof *texts);
    vecs = malloc(n * (size_t)m.dim * sizeof *vecs);
    if (!items || !texts || !vecs) {
        cd_reply_error(rep, CD_HTTP_OUT_OF_MEMORY, "out of memory for %zu items", n);
        goto out;
    }
    size_t i = 0;
    const cJSON *it;
    const char *it_text = cd_json_source_member(req->body, cd_json_child_index(j, arr));
    it_text = cd_json_source_member(it_text, 0);
    cJSON_ArrayForEach(it, arr) {
        char where[48];
        snprintf(where, sizeof where, "item %zu: ", i);
        if (i > 0)      /* past the previous item and its ',' */
            it_text = cd_json_source_next(it_text);
        if (!cJSON_IsObject(it)) {
            cd_reply_error(rep, CD_HTTP_INVALID_ARGUMENT, "%smust be an object", where);
            goto out;
        }
        if (!cd_json_only_fields(it, item_fields, where, rep))
            goto out;
        char *label_text, *meta_text;
        if (!cd_json_id(it, where, &items[i].id, rep) ||
            !cd_json_label(it, where, true, &label_text, &items[i].label, rep))
            goto out;
        if (label_text)
            texts[n_texts++] = label_text;
        if (!cd_json_metadata(it, it_text, lim.max_metadata, where, &meta_text, rep))
            goto out;
        if (meta_text)
            items[i].metadata = texts[n_texts++] = meta_text;
        float *v = vecs + i * (size_t)m.dim;
        if (!cd_json_vector(it, &m, v, where, rep))
            goto out;
        items[i].vector = v;
        i++;
    }
    cd_api_items_store(api, gallery, m.name, items, n, rep);
out:
    for (size_t t = 0; texts && t < n_texts; t++)
        free(texts[t]);
    free(texts);
    free(items);
    free(vecs);
    cJSON_Delete(j);
}

/* Adds item's id, label, metadata and models to obj. */
static void item_fields_json(cJSON *obj, const cd_item *item)
{
    cJSON_AddStringToObject(obj, "id", item->id);
    if (item->label)
        cJSON_AddStringToObject(obj, "label", item->label);
    else
        cJSON_AddNullToObject(obj, "label");
    cd_json_add_metadata(obj, item->metadata);
    cJSON *models = cJSON_AddArrayToObject(obj, "models");
    for (size_t i = 0; i < item->n_embeddings; i++)
        cJSON_AddItemToArray(models, cJSON_CreateString(item->embeddings[i].model));
}

#define DEFAULT_LIST_LIMIT 100

void cd__items_list(cd_api *api, const cd_request *req, cd_reply *rep)
{
    const char *gallery = req->params[0];
    const char *limit_s = cd_request_arg(req, "limit");
    const char *after = cd_request_arg(req, "after");
    int64_t limit = DEFAULT_LIST_LIMIT;
    if (limit_s && (!cd_parse_positive(limit_s, &limit) || limit > CD_LIST_LIMIT_MAX)) {
        cd_reply_error(rep, CD_HTTP_INVALID_ARGUMENT, "limit must be an integer 1..%d",
                       CD_LIST_LIMIT_MAX);
        return;
    }
    /* ?filter=: URL-encoded JSON (README, Filters). */
    const char *filter_text = cd_request_arg(req, "filter");
    cd_filter *filter = NULL;
    if (filter_text && !cd_json_filter_text(filter_text, "filter", &filter, rep))
        return;
    cd_item **items = NULL;
    size_t n = 0;
    char next[CD_CURSOR_MAX + 1];
    cd_error err;
    cd_err rc = cd_engine_items_list_filtered(api->engine, gallery, after, (size_t)limit,
                                              filter, &items, &n, next, &err);
    cd_filter_destroy(filter);
    if (rc != CD_OK) {
        cd_reply_core_error(rep, &err);
        return;
    }
    cJSON *root = cJSON_CreateObject();
    cJSON *arr = cJSON_AddArrayToObject(root, "items");
    for (size_t i = 0; i < n; i++) {
        cJSON *o = cJSON_CreateObject();
        item_fields_json(o, items[i]);
        cJSON_AddItemToArray(arr, o);
    }
    if (next[0])
        cJSON_AddStringToObject(root, "next", next);
    else
        cJSON_AddNullToObject(root, "next");
    cd_items_destroy(items, n);
    cd_reply_json(rep, 200, root);
}

void cd__items_delete(cd_api *api, const cd_request *req, cd_reply *rep)
{
    const char *gallery = req->params[0];
    static const char *const fields[] = {"ids", "filter", NULL};
    cJSON *j = cd_json_body(req, rep);
    const char **ids = NULL;
    cd_filter *filter = NULL;
    cd_limits lim = cd_api_limits(api);
    if (!j)
        return;
    if (!cd_json_only_fields(j, fields, "", rep))
        goto out;
    const cJSON *arr = cJSON_GetObjectItemCaseSensitive(j, "ids");
    if (cJSON_GetObjectItemCaseSensitive(j, "filter")) {
        /* A filter selects the items, matched and deleted in one call. */
        if (arr) {
            cd_reply_error(rep, CD_HTTP_INVALID_ARGUMENT, "give ids or filter, not both");
            goto out;
        }
        if (!cd_json_filter(j, "filter", &filter, rep))
            goto out;
        if (!filter) {
            cd_reply_error(rep, CD_HTTP_INVALID_FILTER, "filter: a filter is a JSON object");
            goto out;
        }
        size_t deleted = 0;
        cd_error ferr;
        cd_err frc = cd_engine_items_delete_filtered(api->engine, gallery, filter, &deleted,
                                                     &ferr);
        if (frc == CD_OK) {
            cJSON *root = cJSON_CreateObject();
            cJSON_AddNumberToObject(root, "deleted", (double)deleted);
            cd_reply_json(rep, 200, root);
        }
        cd_reply_failed(rep, frc, &ferr);
        goto out;
    }
    if (!cJSON_IsArray(arr)) {
        cd_reply_error(rep, CD_HTTP_INVALID_ARGUMENT, "ids must be an array of item ids");
        goto out;
    }
    size_t n = (size_t)cJSON_GetArraySize(arr);
    if (n > lim.max_batch) {
        cd_reply_error(rep, CD_HTTP_BATCH_TOO_LARGE, "a batch holds at most %zu ids, got %zu",
                       lim.max_batch, n);
        goto out;
    }
    ids = calloc(n ? n : 1, sizeof *ids);
    if (!ids) {
        cd_reply_error(rep, CD_HTTP_OUT_OF_MEMORY, "out of memory for %zu ids", n);
        goto out;
    }
    size_t i = 0;
    const cJSON *it;
    cJSON_ArrayForEach(it, arr) {
        char where[48];
        snprintf(where, sizeof where, "ids %zu: ", i);
        size_t len = cJSON_IsString(it) ? strlen(it->valuestring) : 0;
        if (len == 0 || len > CD_ITEM_ID_MAX || !cd_utf8_valid(it->valuestring, len)) {
            cd_reply_error(rep, CD_HTTP_INVALID_ID, "%smust be an item id: a string of 1..%d "
                           "bytes of UTF-8", where, CD_ITEM_ID_MAX);
            goto out;
        }
        ids[i++] = it->valuestring;
    }
    size_t deleted = 0;
    cd_error err;
    cd_err rc = cd_engine_items_delete(api->engine, gallery, ids, n, &deleted, &err);
    if (rc == CD_OK) {
        cJSON *root = cJSON_CreateObject();
        cJSON_AddNumberToObject(root, "deleted", (double)deleted);
        cd_reply_json(rep, 200, root);
    }
    cd_reply_failed(rep, rc, &err);
out:
    cd_filter_destroy(filter);
    free(ids);
    cJSON_Delete(j);
}

void cd__item_get(cd_api *api, const cd_request *req, cd_reply *rep)
{
    const char *gallery = req->params[0], *id = req->params[1];
    const char *vectors = cd_request_arg(req, "vectors");
    bool with_vectors = vectors && (strcmp(vectors, "true") == 0 || strcmp(vectors, "1") == 0);
    if (vectors && !with_vectors && strcmp(vectors, "false") != 0 && strcmp(vectors, "0") != 0) {
        cd_reply_error(rep, CD_HTTP_INVALID_ARGUMENT, "vectors must be true or false");
        return;
    }
    cd_item *item = NULL;
    cd_error err;
    cd_err rc = cd_engine_item_get(api->engine, gallery, id, with_vectors, &item, &err);
    if (rc != CD_OK) {
        cd_reply_core_error(rep, &err);
        return;
    }
    cJSON *root = cJSON_CreateObject();
    item_fields_json(root, item);
    cJSON *vecs = with_vectors ? cJSON_AddObjectToObject(root, "vectors") : NULL;
    for (size_t i = 0; i < item->n_embeddings; i++) {
        const cd_item_embedding *em = &item->embeddings[i];
        if (vecs && em->vector) {
            cJSON *a = cJSON_CreateArray();
            for (int d = 0; d < em->dim; d++)
                cJSON_AddItemToArray(a, cJSON_CreateNumber(em->vector[d]));
            cJSON_AddItemToObject(vecs, em->model, a);
        }
    }
    cd_item_destroy(item);
    cd_reply_json(rep, 200, root);
}

void cd__item_delete(cd_api *api, const cd_request *req, cd_reply *rep)
{
    const char *gallery = req->params[0], *id = req->params[1];
    cd_error err;
    cd_err rc = cd_engine_item_delete(api->engine, gallery, id, &err);
    if (rc == CD_OK)
        cd_reply_text(rep, 204, NULL, "", 0);
    cd_reply_failed(rep, rc, &err);
}
