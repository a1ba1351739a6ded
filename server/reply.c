/*
 * reply.c - building replies (see reply.h) and the error table: one row
 * per error the server answers, with the core error code that answers as
 * that row (CD_OK for rows only the server uses).
 */
#include "reply.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "text.h"

static const struct {
    int status;
    const char *code;
    cd_err core;        /* the core error that answers as this row, or CD_OK */
} errors[CD_HTTP_ERR_COUNT] = {
    [CD_HTTP_INVALID_ARGUMENT] = {400, "invalid_argument", CD_EINVAL},
    [CD_HTTP_DIMENSION_MISMATCH] = {400, "dimension_mismatch", CD_EDIM},
    [CD_HTTP_INVALID_VECTOR] = {400, "invalid_vector", CD_EVECTOR},
    [CD_HTTP_DUPLICATE_KEY] = {400, "duplicate_key", CD_OK},
    [CD_HTTP_INVALID_FILTER] = {400, "invalid_filter", CD_OK},
    [CD_HTTP_INVALID_ID] = {400, "invalid_id", CD_OK},
    [CD_HTTP_INVALID_INDEX] = {400, "invalid_index", CD_OK},
    [CD_HTTP_INVALID_JSON] = {400, "invalid_json", CD_OK},
    [CD_HTTP_INVALID_K] = {400, "invalid_k", CD_OK},
    [CD_HTTP_INVALID_LABEL] = {400, "invalid_label", CD_OK},
    [CD_HTTP_INVALID_METADATA] = {400, "invalid_metadata", CD_OK},
    [CD_HTTP_INVALID_NAME] = {400, "invalid_name", CD_OK},
    [CD_HTTP_INVALID_PATH] = {400, "invalid_path", CD_OK},
    [CD_HTTP_INVALID_UTF8] = {400, "invalid_utf8", CD_OK},
    [CD_HTTP_RESULT_TOO_LARGE] = {400, "result_too_large", CD_OK},
    [CD_HTTP_UNEXPECTED_BODY] = {400, "unexpected_body", CD_OK},
    [CD_HTTP_UNKNOWN_FIELD] = {400, "unknown_field", CD_OK},
    [CD_HTTP_MALFORMED_REQUEST] = {400, "malformed_request", CD_OK},
    [CD_HTTP_UNAUTHORIZED] = {401, "unauthorized", CD_OK},
    [CD_HTTP_FORBIDDEN] = {403, "forbidden", CD_OK},
    [CD_HTTP_NOT_FOUND] = {404, "not_found", CD_ENOTFOUND},
    [CD_HTTP_NO_ROUTE] = {404, "no_route", CD_OK},
    [CD_HTTP_METHOD_NOT_ALLOWED] = {405, "method_not_allowed", CD_OK},
    [CD_HTTP_ALREADY_EXISTS] = {409, "already_exists", CD_EEXISTS},
    [CD_HTTP_CONFLICT] = {409, "conflict", CD_ECONFLICT},
    [CD_HTTP_MODEL_NOT_VERIFIED] = {409, "model_not_verified", CD_ENOTVERIFIED},
    [CD_HTTP_BACKFILL_INCOMPLETE] = {409, "backfill_incomplete", CD_OK},
    [CD_HTTP_TOO_LARGE] = {413, "too_large", CD_ETOOLARGE},
    [CD_HTTP_BATCH_TOO_LARGE] = {413, "batch_too_large", CD_OK},
    [CD_HTTP_BODY_TOO_LARGE] = {413, "body_too_large", CD_OK},
    [CD_HTTP_UNSUPPORTED_MEDIA_TYPE] = {415, "unsupported_media_type", CD_OK},
    [CD_HTTP_MISDIRECTED_REQUEST] = {421, "misdirected_request", CD_OK},
    [CD_HTTP_UNPROCESSABLE] = {422, "unprocessable", CD_EUNPROCESSABLE},
    [CD_HTTP_TOO_FEW_PAIRS] = {422, "too_few_pairs", CD_OK},
    [CD_HTTP_IO_ERROR] = {500, "io_error", CD_EIO},
    [CD_HTTP_CORRUPT_DATA] = {500, "corrupt_data", CD_ECORRUPT},
    [CD_HTTP_UNSUPPORTED_VERSION] = {500, "unsupported_version", CD_EVERSION},
    [CD_HTTP_INTERNAL_ERROR] = {500, "internal_error", CD_EINTERNAL},
    [CD_HTTP_NOT_READY] = {503, "not_ready", CD_EBUSY},
    [CD_HTTP_GALLERY_UNAVAILABLE] = {503, "gallery_unavailable", CD_EUNAVAILABLE},
    [CD_HTTP_OUT_OF_MEMORY] = {503, "out_of_memory", CD_ENOMEM},
    [CD_HTTP_TOO_MANY_CONNECTIONS] = {503, "too_many_connections", CD_OK},
};

int cd_http_status(cd_http_err e)
{
    return errors[e].status;
}

/* The row a core error answers as: internal_error for a code of none. */
static cd_http_err core_row(cd_err code)
{
    for (size_t i = 0; code != CD_OK && i < CD_HTTP_ERR_COUNT; i++)
        if (errors[i].core == code)
            return (cd_http_err)i;
    return CD_HTTP_INTERNAL_ERROR;
}

void cd_reply_json(cd_reply *rep, int status, cJSON *j)
{
    free(rep->body);
    rep->body = j ? cJSON_PrintUnformatted(j) : NULL;
    cJSON_Delete(j);
    if (!rep->body) {
        static const char oom[] = "{\"error\":{\"status\":503,\"code\":\"out_of_memory\","
                                  "\"message\":\"out of memory rendering the reply\"}}";
        rep->body = strdup(oom);
        status = 503;
    }
    rep->status = status;
    rep->len = rep->body ? strlen(rep->body) : 0;
    rep->content_type = "application/json";
}

void cd_reply_text(cd_reply *rep, int status, const char *content_type,
                   const char *text, size_t len)
{
    free(rep->body);
    rep->body = malloc(len + 1);
    if (rep->body) {
        memcpy(rep->body, text, len);
        rep->body[len] = '\0';
    }
    rep->len = rep->body ? len : 0;
    rep->status = status;
    rep->content_type = content_type;
}

void cd_reply_take(cd_reply *rep, const char *content_type, char *body, size_t len)
{
    free(rep->body);
    rep->body = body;
    rep->len = len;
    rep->status = 200;
    rep->content_type = content_type;
}

void cd_reply_error(cd_reply *rep, cd_http_err e, const char *fmt, ...)
{
    char msg[CD_ERRMSG_MAX + 256];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    /* Messages quote the client's text: a cut must not split a character. */
    if (n >= (int)sizeof msg)
        msg[cd_utf8_cut(msg, sizeof msg - 1)] = '\0';
    cJSON *root = cJSON_CreateObject();
    cJSON *o = cJSON_AddObjectToObject(root, "error");
    cJSON_AddNumberToObject(o, "status", errors[e].status);
    cJSON_AddStringToObject(o, "code", errors[e].code);
    cJSON_AddStringToObject(o, "message", msg);
    cd_reply_json(rep, errors[e].status, root);
}

void cd_reply_core_error(cd_reply *rep, const cd_error *err)
{
    cd_reply_error(rep, core_row(err->code), "%s",
                   err->message[0] ? err->message : cd_strerror(err->code));
}

void cd_reply_error_detail(cd_reply *rep, const char *name, double value)
{
    cJSON *root = rep->body ? cJSON_Parse(rep->body) : NULL;
    cJSON *o = cJSON_GetObjectItemCaseSensitive(root, "error");
    if (o && cJSON_AddNumberToObject(o, name, value))
        cd_reply_json(rep, rep->status, root);
    else
        cJSON_Delete(root);
}

void cd_reply_failed(cd_reply *rep, cd_err rc, const cd_error *err)
{
    if (rc != CD_OK)
        cd_reply_core_error(rep, err);
}
