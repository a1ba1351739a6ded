/*
 * reply.h - a reply as a handler builds it, and the one table of errors:
 * every {"error":{"status","code","message"}} the server sends names a
 * row of cd_http_err, which holds its status and code, and each core
 * error code (error.h) answers as one of those rows.  Handlers name a row
 * and a message, never a status and a code of their own.
 */
#ifndef CD_REPLY_H
#define CD_REPLY_H

#include <stdbool.h>
#include <stddef.h>

#include <cjson/cJSON.h>

#include "error.h"

/* The rows of the error table (reply.c), by status.  Adding one: a row
 * here, its status and code in reply.c, and the code in
 * schema/openapi.yaml. */
typedef enum cd_http_err {
    CD_HTTP_INVALID_ARGUMENT,       /* 400 */
    CD_HTTP_DIMENSION_MISMATCH,
    CD_HTTP_INVALID_VECTOR,
    CD_HTTP_DUPLICATE_KEY,
    CD_HTTP_INVALID_FILTER,
    CD_HTTP_INVALID_ID,
    CD_HTTP_INVALID_INDEX,
    CD_HTTP_INVALID_JSON,
    CD_HTTP_INVALID_K,
    CD_HTTP_INVALID_LABEL,
    CD_HTTP_INVALID_METADATA,
    CD_HTTP_INVALID_NAME,
    CD_HTTP_INVALID_PATH,
    CD_HTTP_INVALID_UTF8,
    CD_HTTP_RESULT_TOO_LARGE,
    CD_HTTP_UNEXPECTED_BODY,
    CD_HTTP_UNKNOWN_FIELD,
    CD_HTTP_MALFORMED_REQUEST,
    CD_HTTP_UNAUTHORIZED,           /* 401 */
    CD_HTTP_FORBIDDEN,              /* 403 */
    CD_HTTP_NOT_FOUND,              /* 404 */
    CD_HTTP_NO_ROUTE,
    CD_HTTP_METHOD_NOT_ALLOWED,     /* 405 */
    CD_HTTP_ALREADY_EXISTS,         /* 409 */
    CD_HTTP_CONFLICT,
    CD_HTTP_MODEL_NOT_VERIFIED,
    CD_HTTP_BACKFILL_INCOMPLETE,
    CD_HTTP_TOO_LARGE,              /* 413 */
    CD_HTTP_BATCH_TOO_LARGE,
    CD_HTTP_BODY_TOO_LARGE,
    CD_HTTP_UNSUPPORTED_MEDIA_TYPE, /* 415 */
    CD_HTTP_MISDIRECTED_REQUEST,    /* 421 */
    CD_HTTP_UNPROCESSABLE,          /* 422 */
    CD_HTTP_TOO_FEW_PAIRS,
    CD_HTTP_IO_ERROR,               /* 500 */
    CD_HTTP_CORRUPT_DATA,
    CD_HTTP_UNSUPPORTED_VERSION,
    CD_HTTP_INTERNAL_ERROR,
    CD_HTTP_NOT_READY,              /* 503 */
    CD_HTTP_GALLERY_UNAVAILABLE,
    CD_HTTP_OUT_OF_MEMORY,
    CD_HTTP_TOO_MANY_CONNECTIONS,
    CD_HTTP_ERR_COUNT
} cd_http_err;

/* A reply being built by a handler. */
typedef struct cd_reply {
    int status;
    char *body;                 /* malloc'd; owned by the reply */
    size_t len;
    const char *content_type;   /* static string */
    const char *route;          /* route pattern for logs and metrics */
    const char *authenticate;   /* WWW-Authenticate value (static), or NULL */
    const char *allow;          /* Allow value of a 405 (static), or NULL */
    bool close;                 /* send Connection: close and end the connection
                                   (a request whose framing cannot be trusted) */
} cd_reply;

/* Sets a JSON reply from j (which it frees); 503 out_of_memory when j is
 * NULL or cannot be printed. */
void cd_reply_json(cd_reply *rep, int status, cJSON *j);

/* Sets a plain reply with a copy of text. */
void cd_reply_text(cd_reply *rep, int status, const char *content_type,
                   const char *text, size_t len);

/* Hands body (malloc'd, len bytes; the reply frees it) to rep as a 200
 * reply of content_type. */
void cd_reply_take(cd_reply *rep, const char *content_type, char *body, size_t len);

/*
 * Sets the error reply (schema/openapi.yaml, Error)
 * {"error":{"status","code","message"}} of row e; message is printf-style
 * and cut, at a whole character, when very long.
 */
void cd_reply_error(cd_reply *rep, cd_http_err e, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Sets the error reply of a core failure: the row err->code answers as,
 * with err's message. */
void cd_reply_core_error(cd_reply *rep, const cd_error *err);

/* Adds the number `name` to the error object of an error reply rep (which
 * says, e.g., how many items are missing); nothing for another reply. */
void cd_reply_error_detail(cd_reply *rep, const char *name, double value);

/* cd_reply_core_error when rc is not CD_OK; nothing otherwise. */
void cd_reply_failed(cd_reply *rep, cd_err rc, const cd_error *err);

/* The status of row e. */
int cd_http_status(cd_http_err e);

#endif
