/*
 * lifecycle.c - finishing an upgrade on a gallery (SPEC.md §3.8): the
 * backfill queue (GET .../backfill), promotion (POST .../promote) and
 * retirement of a model's embeddings (DELETE .../embeddings/{model}).
 *
 * The queue's cursor is "<order>.<hits>.<rowid>.<check>": the position of
 * the last item of the page (hits only matter in traffic order) and eight
 * hex digits of a hash of the gallery, model and order it was made for,
 * so that one made for another listing is refused (400), not followed.
 * Clients treat it as opaque.
 */
#include "handlers.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "text.h"

#define BACKFILL_DEFAULT_LIMIT 100

static uint32_t cursor_check(const char *gallery, const char *model, char order)
{
    uint32_t h = 2166136261u;   /* FNV-1a */
    const char *parts[] = {gallery, "\n", model, "\n"};
    for (size_t i = 0; i < sizeof parts / sizeof parts[0]; i++)
        for (const char *p = parts[i]; *p; p++)
            h = (h ^ (unsigned char)*p) * 16777619u;
    return (h ^ (unsigned char)order) * 16777619u;
}

/* A non-negative decimal integer of at most 18 digits, up to *end. */
static bool parse_count(const char *s, int64_t *out, const char **end)
{
    int64_t v = 0;
    size_t digits = 0;
    for (; s[digits] >= '0' && s[digits] <= '9'; digits++) {
        if (digits == 18)
            return false;
        v = v * 10 + (s[digits] - '0');
    }
    *out = v;
    *end = s + digits;
    return digits > 0;
}

/* The cursor `after` of a listing of (gallery, model, order) into *c. */
static bool cursor_parse(const char *after, const char *gallery, const char *model,
                         char order, cd_backfill_cursor *c)
{
    const char *p = after;
    unsigned check;
    int used = 0;
    if (p[0] != order || p[1] != '.' || !parse_count(p + 2, &c->hits, &p) || *p != '.' ||
        !parse_count(p + 1, &c->rowid, &p) || *p != '.' || c->rowid < 1 ||
        sscanf(p + 1, "%8x%n", &check, &used) != 1 || used != 8 || p[1 + used] != '\0')
        return false;
    return check == cursor_check(gallery, model, order);
}

void cd__backfill_get(cd_api *api, const cd_request *req, cd_reply *rep)
{
    const char *gallery = req->params[0];
    const char *model = cd_request_arg(req, "model");
    const char *order_s = cd_request_arg(req, "order");
    const char *limit_s = cd_request_arg(req, "limit");
    const char *after = cd_request_arg(req, "after");
    cd_backfill_order order = CD_BACKFILL_TRAFFIC;
    cd_backfill_cursor cursor = {0, 0};
    int64_t limit = BACKFILL_DEFAULT_LIMIT;
    const char *end;

    cd_model gm;
    cd_error err;
    if (model && !cd_name_valid(model)) {
        cd_reply_error(rep, CD_HTTP_INVALID_NAME,
                       "model (the model to backfill) must match [A-Za-z0-9._-]{1,64}");
        return;
    }
    if (!model) {
        /* The gallery model: the items an upsert of another model made. */
        if (cd_engine_request_model(api->engine, gallery, NULL, &gm, &err) != CD_OK) {
            cd_reply_core_error(rep, &err);
            return;
        }
        model = gm.name;
    }
    if (order_s && strcmp(order_s, "id") == 0) {
        order = CD_BACKFILL_ID;
    } else if (order_s && strcmp(order_s, "traffic") != 0) {
        cd_reply_error(rep, CD_HTTP_INVALID_ARGUMENT, "order must be traffic or id");
        return;
    }
    if (limit_s && (!parse_count(limit_s, &limit, &end) || *end || limit < 1 ||
                    limit > CD_BACKFILL_LIMIT_MAX)) {
        cd_reply_error(rep, CD_HTTP_INVALID_ARGUMENT, "limit must be an integer 1..%d",
                       CD_BACKFILL_LIMIT_MAX);
        return;
    }
    char tag = order == CD_BACKFILL_ID ? 'i' : 't';
    if (after && !cursor_parse(after, gallery, model, tag, &cursor)) {
        cd_reply_error(rep, CD_HTTP_INVALID_ARGUMENT,
                       "after is not a cursor of this listing (gallery %s, model %s, order %s): "
                       "pass the next of its previous page", gallery, model,
                       order == CD_BACKFILL_ID ? "id" : "traffic");
        return;
    }
    cd_backfill_page page;
    if (cd_engine_backfill(api->engine, gallery, model, order, &cursor, (size_t)limit, &page,
                           &err) != CD_OK) {
        cd_reply_core_error(rep, &err);
        return;
    }
    cJSON *root = cJSON_CreateObject();
    cJSON_AddStringToObject(root, "model", model);
    cJSON_AddNumberToObject(root, "missing", (double)page.missing);
    cJSON_AddNumberToObject(root, "coverage",
                            page.items ? (double)(page.items - page.missing) / (double)page.items
                                       : 0.0);
    cJSON *arr = cJSON_AddArrayToObject(root, "items");
    for (size_t i = 0; i < page.n; i++) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "id", page.list[i].id);
        if (page.list[i].label)
            cJSON_AddStringToObject(o, "label", page.list[i].label);
        cJSON_AddNumberToObject(o, "hits", (double)page.list[i].hits);
        cJSON_AddItemToArray(arr, o);
    }
    if (page.more) {
        char next[96];
        snprintf(next, sizeof next, "%c.%" PRId64 ".%" PRId64 ".%08x", tag, page.last.hits,
                 page.last.rowid, (unsigned)cursor_check(gallery, model, tag));
        cJSON_AddStringToObject(root, "next", next);
    } else {
        cJSON_AddNullToObject(root, "next");
    }
    cd_backfill_page_finish(&page);
    cd_reply_json(rep, 200, root);
}

void cd__gallery_promote(cd_api *api, const cd_request *req, cd_reply *rep)
{
    static const char *const fields[] = {"model", NULL};
    const char *gallery = req->params[0];
    cJSON *j = cd_json_body(req, rep);
    if (!j)
        return;
    const char *model;
    if (!cd_json_only_fields(j, fields, "", rep) || !cd_json_name(j, "model", &model, rep))
        goto out;
    cd_error err;
    int64_t missing = 0;
    cd_err rc = cd_engine_gallery_promote(api->engine, gallery, model, &missing, &err);
    if (rc == CD_OK) {
        cd__gallery_reply(api, gallery, rep);
    } else if (rc == CD_ECONFLICT && missing > 0) {
        cd_reply_error(rep, CD_HTTP_BACKFILL_INCOMPLETE, "%s", err.message);
        cd_reply_error_detail(rep, "missing", (double)missing);
    } else {
        cd_reply_core_error(rep, &err);
    }
out:
    cJSON_Delete(j);
}

void cd__embeddings_retire(cd_api *api, const cd_request *req, cd_reply *rep)
{
    const char *gallery = req->params[0], *model = req->params[1];
    if (!cd_name_valid(model)) {
        cd_reply_error(rep, CD_HTTP_INVALID_NAME, "model must match [A-Za-z0-9._-]{1,64}");
        return;
    }
    cd_error err;
    int64_t deleted = 0;
    if (cd_engine_embeddings_retire(api->engine, gallery, model, &deleted, &err) != CD_OK) {
        cd_reply_core_error(rep, &err);
        return;
    }
    cJSON *root = cJSON_CreateObject();
    cJSON_AddNumberToObject(root, "deleted", (double)deleted);
    cd_reply_json(rep, 200, root);
}
