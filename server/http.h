/*
 * http.h - the HTTP side of compatd: libmicrohttpd daemon, request bodies,
 * JSON responses, the error table, request logs and /metrics counters.
 *
 * A request flows one way: http.c reads the whole body (up to the limit),
 * api.c routes and parses it, calls core, and renders a reply through the
 * cd_reply helpers below.  Handlers never touch libmicrohttpd.
 */
#ifndef CD_HTTP_H
#define CD_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>

#include "engine.h"
#include "error.h"

enum { LOG_ERROR = CD_LOG_ERROR, LOG_WARN, LOG_INFO, LOG_DEBUG };

struct cd_limits;   /* api.h */

typedef struct cd_server_config {
    const char *listen;     /* "127.0.0.1:8080", "[::1]:0", ":8080" */
    const char *data_dir;
    int threads;
    size_t max_body;        /* bytes */
    size_t max_eval_body;   /* bytes, for POST .../evaluations */
    int log_level;
    int snapshot_interval_s;
    const char *port_file;  /* where to write the bound port, or NULL */
    const char *tls_cert;   /* PEM certificate (chain) file, or NULL: plain HTTP */
    const char *tls_key;    /* PEM private key file; set with tls_cert */
    const char *key_file;   /* "name scope key" lines stored at start, or NULL */
    bool metrics_public;    /* GET /metrics needs no key */
    unsigned max_connections;   /* open connections at once (>= threads) */
    unsigned idle_timeout_s;    /* close a connection idle this long; 0: never */
    unsigned header_timeout_s;  /* close a new connection silent this long before
                                   its first request header is whole; 0: never */
    const struct cd_limits *limits; /* per-request limits (api.h); NULL: defaults */
} cd_server_config;

/* A request as handlers see it: read-only. */
typedef struct cd_request {
    const char *method;
    const char *path;           /* percent-decoded, without the query */
    const char *body;           /* NUL-terminated copy of the body */
    size_t body_len;
    const char *content_type;   /* NULL when absent */
    void *conn;                 /* for query arguments (cd_request_arg) */
    const char *api_key;        /* from "Authorization: Bearer <key>", or NULL */
    bool auth_invalid;          /* an Authorization header that is not that */
} cd_request;

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

/* The value of query argument name, or NULL. */
const char *cd_request_arg(const cd_request *req, const char *name);

/* Sets a JSON reply from j (which it frees). */
void cd_reply_json(cd_reply *rep, int status, cJSON *j);

/* Sets a plain reply with a copy of text. */
void cd_reply_text(cd_reply *rep, int status, const char *content_type,
                   const char *text, size_t len);

/*
 * Sets the error reply (schema/openapi.yaml, Error) {"error":{"status","code","message"}}.
 * message is printf-style.
 */
void cd_reply_error(cd_reply *rep, int status, const char *code,
                    const char *fmt, ...) __attribute__((format(printf, 4, 5)));

/* Sets the error reply for a core failure, status and code from the one
 * error table. */
void cd_reply_core_error(cd_reply *rep, const cd_error *err);

/* HTTP status for a core error code (the error table). */
int cd_http_status(cd_err code);

/*
 * Runs the daemon until SIGTERM/SIGINT: opens the engine, listens, loads
 * indexes, serves; then stops accepting, lets in-flight requests finish,
 * snapshots and returns 0 (non-zero when it could not start).
 */
int cd_serve(const cd_server_config *cfg);

/* Writes a log line at level when the configured level allows it. */
void cd_log(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Sets the level cd_log prints up to (LOG_ERROR..LOG_DEBUG). */
void cd_log_set_level(int level);

/* Parses "error", "warn", "info" or "debug". */
bool cd_log_level_parse(const char *s, int *out);

#endif
