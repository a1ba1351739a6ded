/*
 * http.c - libmicrohttpd glue.  Owns the daemon, reads each request body
 * whole into memory (refusing more than max_body with 413), hands the
 * request to api.c, sends the reply, logs one line per request and feeds
 * the /metrics counters.  Also the one table mapping core errors to HTTP
 * status and error codes, and the serve loop with its signal handling.
 *
 * Keys are checked as soon as a request's headers are in, before its body
 * is read: the Authorization header is parsed here and api.c decides
 * (cd_api_authorize), so a client without a valid key cannot make the
 * daemon buffer a body.  With TLS, libmicrohttpd runs GnuTLS on the
 * certificate and key read into memory at start (checked here first for
 * a clear error).
 */
#include "http.h"

#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <gnutls/gnutls.h>
#include <microhttpd.h>

#include "api.h"
#include "auth.h"
#include "metrics.h"
#include "text.h"

/* --- logging ---------------------------------------------------------- */

static atomic_int log_level = LOG_INFO;

void cd_log_set_level(int level)
{
    atomic_store(&log_level, level);
}

bool cd_log_level_parse(const char *s, int *out)
{
    static const char *const names[] = {"error", "warn", "info", "debug"};
    for (int i = 0; i < 4; i++)
        if (strcmp(s, names[i]) == 0) {
            *out = i;
            return true;
        }
    return false;
}

/*
 * Copies in[0..n) to out (cap bytes, NUL-terminated, cut at a whole
 * escape) with every byte a reader could mistake for something else as
 * \xHH, as nginx writes its logs: control bytes (a "\n" in a URL must not
 * start a forged log line, an ESC must not reach a terminal), DEL, the
 * backslash itself (so that an escape is never ambiguous) and bytes that
 * are not part of valid UTF-8.  Valid UTF-8 stays as it is.
 */
static void log_escape(char *out, size_t cap, const char *in, size_t n)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t o = 0;
    for (size_t i = 0; i < n;) {
        unsigned char c = (unsigned char)in[i];
        size_t seq = c >= 0xF0 && c <= 0xF4 ? 4 : c >= 0xE0 && c <= 0xEF ? 3
                     : c >= 0xC2 && c <= 0xDF ? 2 : 1;
        if (c >= 0x80 && (seq == 1 || seq > n - i || !cd_utf8_valid(in + i, seq)))
            seq = 0;    /* not valid UTF-8 here: escape this one byte */
        if (seq == 0 || c < 0x20 || c == 0x7f || c == '\\') {
            if (o + 4 >= cap)
                break;
            out[o++] = '\\';
            out[o++] = 'x';
            out[o++] = hex[c >> 4];
            out[o++] = hex[c & 15];
            i++;
        } else {
            if (o + seq >= cap)
                break;
            memcpy(out + o, in + i, seq);
            o += seq;
            i += seq;
        }
    }
    out[o] = '\0';
}

void cd_log(int level, const char *fmt, ...)
{
    static const char *const names[] = {"error", "warn", "info", "debug"};
    if (level > atomic_load(&log_level))
        return;
    /* A level out of range is logged, as the nearest one, not read past
     * the table. */
    if (level < LOG_ERROR)
        level = LOG_ERROR;
    if (level > LOG_DEBUG)
        level = LOG_DEBUG;
    char stamp[64];
    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    snprintf(stamp, sizeof stamp, "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ %s ",
                     tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
                     tm.tm_min, tm.tm_sec, ts.tv_nsec / 1000000, names[level]);
    char msg[2048], escaped[4 * sizeof msg];
    va_list ap;
    va_start(ap, fmt);
    int len = vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (len < 0)
        len = 0;
    log_escape(escaped, sizeof escaped, msg, (size_t)len < sizeof msg ? (size_t)len
                                                                       : sizeof msg - 1);
    fprintf(stderr, "%s%s\n", stamp, escaped);
}

static void engine_log(void *ctx, int level, const char *msg)
{
    cd_log(level, "%s", msg);
}

/* --- the error table -------------------------------------------------- */

static const struct {
    cd_err code;
    int status;
    const char *name;
} error_table[] = {
    {CD_EINVAL, 400, "invalid_argument"},
    {CD_EDIM, 400, "dimension_mismatch"},
    {CD_EVECTOR, 400, "invalid_vector"},
    {CD_ENOTFOUND, 404, "not_found"},
    {CD_EEXISTS, 409, "already_exists"},
    {CD_ECONFLICT, 409, "conflict"},
    {CD_ENOTVERIFIED, 409, "model_not_verified"},
    {CD_ETOOLARGE, 413, "too_large"},
    {CD_EUNPROCESSABLE, 422, "unprocessable"},
    {CD_EBUSY, 503, "not_ready"},
    {CD_EUNAVAILABLE, 503, "gallery_unavailable"},
    {CD_ENOMEM, 503, "out_of_memory"},
    {CD_EIO, 500, "io_error"},
    {CD_ECORRUPT, 500, "corrupt_data"},
    {CD_EVERSION, 500, "unsupported_version"},
    {CD_EINTERNAL, 500, "internal_error"},
};

static size_t error_row(cd_err code)
{
    size_t n = sizeof error_table / sizeof error_table[0];
    for (size_t i = 0; i < n; i++)
        if (error_table[i].code == code)
            return i;
    return n - 1;
}

int cd_http_status(cd_err code)
{
    return error_table[error_row(code)].status;
}

/* --- replies ---------------------------------------------------------- */

const char *cd_request_arg(const cd_request *req, const char *name)
{
    return MHD_lookup_connection_value(req->conn, MHD_GET_ARGUMENT_KIND, name);
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

void cd_reply_error(cd_reply *rep, int status, const char *code,
                    const char *fmt, ...)
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
    cJSON *e = cJSON_AddObjectToObject(root, "error");
    cJSON_AddNumberToObject(e, "status", status);
    cJSON_AddStringToObject(e, "code", code);
    cJSON_AddStringToObject(e, "message", msg);
    cd_reply_json(rep, status, root);
}

void cd_reply_core_error(cd_reply *rep, const cd_error *err)
{
    size_t row = error_row(err->code);
    cd_reply_error(rep, error_table[row].status, error_table[row].name, "%s",
                   err->message[0] ? err->message : cd_strerror(err->code));
}

/* --- the daemon ------------------------------------------------------- */

/*
 * Connections beyond --max-connections that libmicrohttpd still accepts.
 * While more than --max-connections are open, only the probes and requests
 * with a key the daemon accepts are answered (others get 503 and are
 * closed), so that clients without keys holding every ordinary slot cannot
 * lock out Kubernetes or the operators.
 */
#define RESERVED_CONNECTIONS 8

typedef struct server {
    const cd_server_config *cfg;
    cd_api api;
    cd_metrics *metrics;
    atomic_int in_flight;   /* requests between their headers and their end */
    atomic_bool draining;   /* stopping: replies close their connection */
    atomic_uint open_connections;   /* counted by on_connection */
    unsigned max_connections;       /* --max-connections: the ordinary slots */
} server;

/* One connection's request, made when its request line is in (log_uri),
 * freed by on_completed. */
typedef struct request_ctx {
    const char *uri;        /* the request line's target, as received */
    size_t uri_len;         /* strlen(uri) then: less than the target's
                               length when it held a NUL */
    bool started;           /* on_request saw the whole header: counted
                               in in_flight until on_completed */
    char *body;
    size_t len, cap;
    bool too_large;
    bool answered;          /* replied before the body came (401, 403) */
    size_t limit;           /* body limit of this request's route */
    const char *route;      /* its route pattern (static), for the replies
                               made here: 413, unexpected body */
    struct timespec start;
} request_ctx;

static double seconds_since(const struct timespec *t0)
{
    struct timespec t1;
    clock_gettime(CLOCK_MONOTONIC, &t1);
    return (double)(t1.tv_sec - t0->tv_sec) + (double)(t1.tv_nsec - t0->tv_nsec) / 1e9;
}

static enum MHD_Result send_reply(server *s, struct MHD_Connection *conn,
                                  const char *method, const char *url,
                                  request_ctx *rc, cd_reply *rep)
{
    struct MHD_Response *resp = MHD_create_response_from_buffer(
        rep->len, rep->body ? rep->body : (char *)"", rep->body ? MHD_RESPMEM_MUST_FREE
                                                                 : MHD_RESPMEM_PERSISTENT);
    if (!resp) {
        free(rep->body);
        return MHD_NO;
    }
    rep->body = NULL;
    if (rep->content_type)
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, rep->content_type);
    if (rep->authenticate)
        MHD_add_response_header(resp, MHD_HTTP_HEADER_WWW_AUTHENTICATE, rep->authenticate);
    if (rep->allow)
        MHD_add_response_header(resp, MHD_HTTP_HEADER_ALLOW, rep->allow);
    /* While draining, a kept-alive client would otherwise send more and
     * hold the drain. */
    if (rep->close || atomic_load(&s->draining))
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CONNECTION, "close");
    enum MHD_Result ok = MHD_queue_response(conn, (unsigned)rep->status, resp);
    MHD_destroy_response(resp);

    double secs = seconds_since(&rc->start);
    const char *route = rep->route ? rep->route : "other";
    cd_metrics_observe(s->metrics, method, route, rep->status, secs);
    /* /readyz answers 503 until the indexes are loaded, to every probe:
     * that is its job, not an error. */
    int level = rep->status >= 500 ? LOG_ERROR : LOG_INFO;
    if (rep->status == 503 && strcmp(route, "/readyz") == 0)
        level = LOG_DEBUG;
    cd_log(level, "%s %s %d %.3fms in=%zu out=%zu", method, url, rep->status, secs * 1e3,
           rc->len, rep->len);
    return ok;
}

static bool method_has_body(const char *method)
{
    return strcmp(method, "POST") == 0 || strcmp(method, "PUT") == 0 ||
           strcmp(method, "PATCH") == 0;
}

/* Evaluations carry whole probe sets, so they have a limit of their own. */
static size_t body_limit(const cd_server_config *cfg, const char *method,
                         const char *url)
{
    static const char suffix[] = "/evaluations";
    size_t n = strlen(url), m = sizeof suffix - 1;
    if (strcmp(method, "POST") == 0 && n > m && strcmp(url + n - m, suffix) == 0 &&
        cfg->max_eval_body > cfg->max_body)
        return cfg->max_eval_body;
    return cfg->max_body;
}

/*
 * Reads "Authorization: Bearer <key>" into req->api_key (pointing into the
 * connection's header, which lives as long as the request); any other
 * Authorization header sets req->auth_invalid.  The scheme is case-
 * insensitive (RFC 7235); the key is whatever follows the spaces after it.
 */
static void read_authorization(struct MHD_Connection *conn, cd_request *req)
{
    static const char scheme[] = "Bearer";
    const size_t n = sizeof scheme - 1;
    const char *h = MHD_lookup_connection_value(conn, MHD_HEADER_KIND,
                                                MHD_HTTP_HEADER_AUTHORIZATION);
    req->api_key = NULL;
    req->auth_invalid = false;
    if (!h)
        return;
    if (strncasecmp(h, scheme, n) == 0 && (h[n] == ' ' || h[n] == '\t')) {
        const char *key = h + n;
        while (*key == ' ' || *key == '\t')
            key++;
        if (*key) {
            req->api_key = key;
            return;
        }
    }
    req->auth_invalid = true;
}

/* Counts of the headers that frame a request (MHD_KeyValueIterator). */
typedef struct framing {
    int content_length, transfer_encoding, host;
    const char *coding;     /* the Transfer-Encoding value */
} framing;

static enum MHD_Result count_framing(void *cls, enum MHD_ValueKind kind, const char *key,
                                     const char *value)
{
    framing *f = cls;
    if (strcasecmp(key, MHD_HTTP_HEADER_CONTENT_LENGTH) == 0) {
        f->content_length++;
    } else if (strcasecmp(key, MHD_HTTP_HEADER_TRANSFER_ENCODING) == 0) {
        f->transfer_encoding++;
        f->coding = value;
    } else if (strcasecmp(key, MHD_HTTP_HEADER_HOST) == 0) {
        f->host++;
    }
    return MHD_YES;
}

/*
 * What libmicrohttpd lets through but HTTP/1.1 (RFC 9112) refuses, so
 * that this daemon and a proxy in front of it never read one request two
 * ways: a NUL in the request line (libmicrohttpd's strings end there, so
 * "/galleries/g\0/items/b" would be "/galleries/g"), more than one
 * Content-Length (it takes the first), Transfer-Encoding with
 * Content-Length (it takes the first, a proxy may take the other), a
 * coding other than chunked, more than one Host.  Fills rep with 400 and
 * Connection: close, and returns false, for any of these.
 */
static bool check_protocol(struct MHD_Connection *conn, const request_ctx *rc,
                           const char *method, const char *version, cd_reply *rep)
{
    const char *why = NULL, *code = "malformed_request";
    framing f = {0};
    if (rc->uri) {
        /* libmicrohttpd ended the method and the target with a NUL in
         * place of the space after each: a NUL before is one sent. */
        const char *p = method + strlen(method) + 1;
        while (p < rc->uri && *p == ' ')
            p++;
        if (p != rc->uri)
            why = "the request method holds a NUL byte";
        else if (version[0] && rc->uri + rc->uri_len + 1 != version) {
            why = "the request target holds a NUL byte";
            code = "invalid_path";
        }
    }
    MHD_get_connection_values(conn, MHD_HEADER_KIND, count_framing, &f);
    if (why)
        ;
    else if (f.content_length > 1)
        why = "more than one Content-Length header";
    else if (f.transfer_encoding > 1)
        why = "more than one Transfer-Encoding header";
    else if (f.transfer_encoding && f.content_length)
        why = "Transfer-Encoding and Content-Length together";
    else if (f.transfer_encoding && strcasecmp(f.coding, "chunked") != 0)
        why = "the only Transfer-Encoding accepted is chunked";
    else if (f.host > 1)
        why = "more than one Host header";
    if (!why)
        return true;
    rep->route = "other";
    cd_reply_error(rep, 400, code, "malformed HTTP/1.1 request: %s", why);
    rep->close = true;
    return false;
}

/*
 * A daemon without API keys listens on loopback only; a browser can still
 * be made to reach it by a page whose name resolves to 127.0.0.1 (DNS
 * rebinding), but it then sends that name as Host.  So such a daemon
 * answers only Hosts that name the loopback: 421, the status for a
 * request sent to a server that does not serve that authority, for
 * others.  A request without Host (HTTP/1.0) comes from no browser.
 */
static bool check_host(server *s, struct MHD_Connection *conn, cd_reply *rep)
{
    const char *host = MHD_lookup_connection_value(conn, MHD_HEADER_KIND,
                                                   MHD_HTTP_HEADER_HOST);
    bool required;
    cd_error err;
    if (!host || cd_host_is_loopback(host))
        return true;
    rep->route = "other";
    if (cd_api_keys_required(&s->api, &required, &err) != CD_OK) {
        cd_reply_core_error(rep, &err);
        return false;
    }
    if (required)
        return true;
    /* The Host is not echoed: it may be any bytes. */
    cd_reply_error(rep, 421, "misdirected_request",
                   "this daemon has no API keys and answers only requests for "
                   "localhost, 127.0.0.1 or [::1] (the Host header)");
    return false;
}

/*
 * When more than --max-connections are open, this request holds one of
 * the RESERVED_CONNECTIONS: only the probes and requests with a key the
 * daemon accepted (cd_api_authorize ran first) are served there; others
 * get 503 and their connection is closed.
 */
static bool check_reserve(server *s, const cd_request *head, cd_reply *rep)
{
    if (atomic_load(&s->open_connections) <= s->max_connections || head->api_key ||
        strcmp(rep->route, "/healthz") == 0 || strcmp(rep->route, "/readyz") == 0)
        return true;
    cd_reply_error(rep, 503, "too_many_connections",
                   "more than --max-connections %u connections are open; the rest are "
                   "kept for probes and requests with an API key", s->max_connections);
    rep->close = true;
    return false;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn,
                                  const char *url, const char *method,
                                  const char *version, const char *upload_data,
                                  size_t *upload_size, void **con_cls)
{
    server *s = cls;
    request_ctx *rc = *con_cls;

    if (!rc)
        return MHD_NO;  /* log_uri ran out of memory */
    if (!rc->started) {
        rc->started = true;
        atomic_fetch_add(&s->in_flight, 1);
        /* The header is whole: from now on the idle timeout applies. */
        if (s->cfg->header_timeout_s)
            MHD_set_connection_option(conn, MHD_CONNECTION_OPTION_TIMEOUT,
                                      s->cfg->idle_timeout_s);
        cd_request head = {.method = method, .path = url, .conn = conn};
        cd_reply rep = {0};
        read_authorization(conn, &head);
        if (!check_protocol(conn, rc, method, version, &rep) ||
            !check_host(s, conn, &rep) ||
            !cd_api_authorize(&s->api, &head, &rep) ||
            !check_reserve(s, &head, &rep)) {
            /* Answer before reading: the body is not wanted. */
            rc->answered = true;
            return send_reply(s, conn, method, url, rc, &rep);
        }
        free(rep.body);
        rc->route = rep.route;
        rc->limit = body_limit(s->cfg, method, url);
        const char *cl = MHD_lookup_connection_value(conn, MHD_HEADER_KIND,
                                                     MHD_HTTP_HEADER_CONTENT_LENGTH);
        if (cl) {
            char *end;
            errno = 0;
            unsigned long long n = strtoull(cl, &end, 10);
            if (errno || *end || n > rc->limit)
                rc->too_large = true;
        }
        if (rc->too_large) {
            /* Answer before reading: the client need not send it all. */
            rep = (cd_reply){0};
            rep.route = rc->route;
            cd_reply_error(&rep, 413, "body_too_large",
                           "request body is larger than the limit of %zu bytes",
                           rc->limit);
            return send_reply(s, conn, method, url, rc, &rep);
        }
        return MHD_YES;
    }

    if (rc->answered) {
        *upload_size = 0;
        return MHD_YES;
    }
    if (*upload_size) {
        size_t n = *upload_size;
        *upload_size = 0;
        if (rc->too_large)
            return MHD_YES;
        if (rc->len + n > rc->limit) {
            rc->too_large = true;
            free(rc->body);
            rc->body = NULL;
            rc->cap = 0;
            return MHD_YES;
        }
        if (rc->len + n + 1 > rc->cap) {
            size_t ncap = rc->cap ? rc->cap : 4096;
            while (ncap < rc->len + n + 1)
                ncap *= 2;
            char *b = realloc(rc->body, ncap);
            if (!b)
                return MHD_NO;
            rc->body = b;
            rc->cap = ncap;
        }
        memcpy(rc->body + rc->len, upload_data, n);
        rc->len += n;
        return MHD_YES;
    }

    cd_reply rep = {0};
    if (rc->too_large) {
        rep.route = rc->route;
        cd_reply_error(&rep, 413, "body_too_large",
                       "request body is larger than the limit of %zu bytes", rc->limit);
        return send_reply(s, conn, method, url, rc, &rep);
    }
    if (!rc->body) {
        rc->body = malloc(1);
        if (!rc->body)
            return MHD_NO;
    }
    rc->body[rc->len] = '\0';
    cd_request req = {
        .method = method,
        .path = url,
        .body = rc->body,
        .body_len = rc->len,
        .content_type = MHD_lookup_connection_value(conn, MHD_HEADER_KIND,
                                                    MHD_HTTP_HEADER_CONTENT_TYPE),
        .conn = conn,
    };
    read_authorization(conn, &req);
    if (!method_has_body(method) && rc->len > 0) {
        rep.route = rc->route;
        cd_reply_error(&rep, 400, "unexpected_body", "%s requests take no body", method);
    } else {
        cd_api_handle(&s->api, &req, &rep);
    }
    return send_reply(s, conn, method, url, rc, &rep);
}

/*
 * libmicrohttpd's URI log callback: runs once the request line is in,
 * before the target is split at '?' and percent-decoded.  Makes the
 * request's context (the con_cls of on_request and on_completed) and
 * notes the target's length, to see later whether a NUL cut it short.
 */
static void *log_uri(void *cls, const char *uri, struct MHD_Connection *conn)
{
    request_ctx *rc = calloc(1, sizeof *rc);
    if (!rc)
        return NULL;
    clock_gettime(CLOCK_MONOTONIC, &rc->start);
    rc->uri = uri;
    rc->uri_len = uri ? strlen(uri) : 0;
    return rc;
}

/* Counts the open connections (for the reserve) and gives a new one
 * --header-timeout to send its first request header. */
static void on_connection(void *cls, struct MHD_Connection *conn, void **socket_context,
                          enum MHD_ConnectionNotificationCode toe)
{
    server *s = cls;
    if (toe == MHD_CONNECTION_NOTIFY_STARTED) {
        atomic_fetch_add(&s->open_connections, 1);
        if (s->cfg->header_timeout_s)
            MHD_set_connection_option(conn, MHD_CONNECTION_OPTION_TIMEOUT,
                                      s->cfg->header_timeout_s);
    } else {
        atomic_fetch_sub(&s->open_connections, 1);
    }
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
    server *s = cls;
    request_ctx *rc = *con_cls;
    if (!rc)
        return;
    if (rc->started)
        atomic_fetch_sub(&s->in_flight, 1);
    free(rc->body);
    free(rc);
    *con_cls = NULL;
}

static void mhd_log(void *cls, const char *fmt, va_list ap)
{
    char buf[1024];
    vsnprintf(buf, sizeof buf, fmt, ap);
    size_t n = strlen(buf);
    while (n && (buf[n - 1] == '\n' || buf[n - 1] == '\r'))
        buf[--n] = '\0';
    cd_log(LOG_WARN, "libmicrohttpd: %s", buf);
}

static int hex_value(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/*
 * Percent-decodes the path and query arguments in place.  A %00 would end
 * the C string early and turn "/items/a%00b" into "/items/a", so it
 * becomes the byte 0xFF instead, which is never valid UTF-8 and makes
 * api.c refuse the request.
 */
static size_t unescape(void *cls, struct MHD_Connection *conn, char *s)
{
    char *out = s;
    for (const char *in = s; *in; in++) {
        int hi, lo;
        if (in[0] == '%' && (hi = hex_value(in[1])) >= 0 && (lo = hex_value(in[2])) >= 0) {
            int byte = hi * 16 + lo;
            *out++ = (char)(byte == 0 ? 0xFF : byte);
            in += 2;
        } else {
            *out++ = *in;
        }
    }
    *out = '\0';
    return (size_t)(out - s);
}

/* Parses "host:port", "[v6]:port" or ":port" into a socket address. */
static bool parse_listen(const char *listen, struct sockaddr_storage *ss,
                         socklen_t *len, bool *v6)
{
    char host[256];
    const char *colon;
    memset(ss, 0, sizeof *ss);
    if (listen[0] == '[') {
        const char *close = strchr(listen, ']');
        if (!close || close[1] != ':' || (size_t)(close - listen - 1) >= sizeof host)
            return false;
        memcpy(host, listen + 1, (size_t)(close - listen - 1));
        host[close - listen - 1] = '\0';
        colon = close + 1;
    } else {
        colon = strrchr(listen, ':');
        if (!colon || (size_t)(colon - listen) >= sizeof host)
            return false;
        memcpy(host, listen, (size_t)(colon - listen));
        host[colon - listen] = '\0';
    }
    char *end;
    long port = strtol(colon + 1, &end, 10);
    if (colon[1] == '\0' || *end || port < 0 || port > 65535)
        return false;
    struct sockaddr_in *in4 = (struct sockaddr_in *)ss;
    struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)ss;
    if (host[0] == '\0') {
        in4->sin_family = AF_INET;
        in4->sin_addr.s_addr = htonl(INADDR_ANY);
        in4->sin_port = htons((uint16_t)port);
        *len = sizeof *in4;
        *v6 = false;
    } else if (inet_pton(AF_INET, host, &in4->sin_addr) == 1) {
        in4->sin_family = AF_INET;
        in4->sin_port = htons((uint16_t)port);
        *len = sizeof *in4;
        *v6 = false;
    } else if (inet_pton(AF_INET6, host, &in6->sin6_addr) == 1) {
        in6->sin6_family = AF_INET6;
        in6->sin6_port = htons((uint16_t)port);
        *len = sizeof *in6;
        *v6 = true;
    } else if (strcmp(host, "localhost") == 0) {
        in4->sin_family = AF_INET;
        in4->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        in4->sin_port = htons((uint16_t)port);
        *len = sizeof *in4;
        *v6 = false;
    } else {
        return false;
    }
    return true;
}

/* True for 127.0.0.0/8, ::1 and ::ffff:127.0.0.0/104 ("localhost" was
 * parsed as 127.0.0.1). */
static bool is_loopback(const struct sockaddr_storage *ss, bool v6)
{
    if (!v6)
        return cd_ip_is_loopback(AF_INET, &((const struct sockaddr_in *)ss)->sin_addr);
    return cd_ip_is_loopback(AF_INET6, &((const struct sockaddr_in6 *)ss)->sin6_addr);
}

#define TLS_FILE_MAX (1 << 20)

/* The whole of a PEM file, malloc'd and NUL-terminated, or NULL after
 * logging why. */
static char *read_pem(const char *flag, const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    char *buf = NULL;
    if (!f) {
        cd_log(LOG_ERROR, "cannot read %s %s: %s", flag, path, strerror(errno));
        return NULL;
    }
    buf = malloc(TLS_FILE_MAX + 1);
    size_t n = buf ? fread(buf, 1, TLS_FILE_MAX + 1, f) : 0;
    if (!buf || ferror(f) || n == 0 || n > TLS_FILE_MAX) {
        cd_log(LOG_ERROR, "cannot read %s %s: %s", flag, path,
               !buf ? "out of memory" : ferror(f) ? strerror(errno)
               : n == 0 ? "the file is empty" : "the file is larger than 1 MiB");
        free(buf);
        buf = NULL;
    } else {
        buf[n] = '\0';
        *len = n;
    }
    fclose(f);
    return buf;
}

/*
 * Loads the certificate and key as libmicrohttpd will, so that a wrong
 * file is one clear line at start rather than its generic failure.
 */
static bool tls_check(const cd_server_config *cfg, const char *cert, size_t cert_len,
                      const char *key, size_t key_len)
{
    gnutls_certificate_credentials_t cred;
    if (!MHD_is_feature_supported(MHD_FEATURE_TLS)) {
        cd_log(LOG_ERROR, "this libmicrohttpd was built without TLS: --tls-cert cannot be used");
        return false;
    }
    if (gnutls_certificate_allocate_credentials(&cred) < 0) {
        cd_log(LOG_ERROR, "cannot set TLS up: out of memory");
        return false;
    }
    gnutls_datum_t c = {(unsigned char *)cert, (unsigned)cert_len};
    gnutls_datum_t k = {(unsigned char *)key, (unsigned)key_len};
    int r = gnutls_certificate_set_x509_key_mem(cred, &c, &k, GNUTLS_X509_FMT_PEM);
    gnutls_certificate_free_credentials(cred);
    if (r < 0) {
        cd_log(LOG_ERROR, "cannot use --tls-cert %s with --tls-key %s: %s", cfg->tls_cert,
               cfg->tls_key, gnutls_strerror(r));
        return false;
    }
    return true;
}

/* Raises the open files limit towards what max_connections needs (each
 * connection is a descriptor; the store, indexes and logs need some). */
static void raise_fd_limit(unsigned max_connections)
{
    struct rlimit rl;
    rlim_t want = (rlim_t)max_connections + 256;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur >= want)
        return;
    rlim_t old = rl.rlim_cur;
    rl.rlim_cur = rl.rlim_max == RLIM_INFINITY || rl.rlim_max > want ? want : rl.rlim_max;
    if (setrlimit(RLIMIT_NOFILE, &rl) != 0)
        rl.rlim_cur = old;
    if (rl.rlim_cur < want)
        cd_log(LOG_WARN, "open files limit is %llu: fewer than --max-connections %u "
               "connections may be served", (unsigned long long)rl.rlim_cur, max_connections);
}

/* The one line that explains why the daemon will not start open. */
static void log_refuse_open(const cd_server_config *cfg)
{
    cd_log(LOG_ERROR, "refusing to listen on %s without API keys: anyone who can reach it "
           "could change the data; create a key (compatd keys create --scope admin "
           "--name NAME --data %s, or --key-file) or listen on 127.0.0.1",
           cfg->listen, cfg->data_dir);
}

static int write_port_file(const char *path, unsigned port)
{
    char tmp[PATH_MAX];
    if ((size_t)snprintf(tmp, sizeof tmp, "%s.tmp", path) >= sizeof tmp) {
        errno = ENAMETOOLONG;
        return -1;
    }
    FILE *f = fopen(tmp, "w");
    if (!f)
        return -1;
    fprintf(f, "%u\n", port);
    if (fclose(f) != 0)
        return -1;
    return rename(tmp, path);
}

/* The thread of cd_serve, which waits for SIGTERM and SIGINT. */
static pid_t waiting_thread;

/*
 * Runs in a thread that does not block the stop signals (one a library
 * started before cd_serve blocked them), where the default action would
 * end the process without draining: sends the signal on to the waiting
 * thread, which blocks it until its sigwait takes it.  Only raw system
 * calls here: it is a signal handler.
 */
static void forward_stop_signal(int sig)
{
    int saved = errno;
    syscall(SYS_tgkill, (pid_t)syscall(SYS_getpid), waiting_thread, sig);
    errno = saved;
}

int cd_serve(const cd_server_config *cfg)
{
    int status = 1;
    cd_engine *engine = NULL;
    struct MHD_Daemon *d = NULL;
    MHD_socket lsock = MHD_INVALID_SOCKET;
    server s = {.cfg = cfg};
    cd_error err;
    sigset_t stop_signals;
    char *tls_cert = NULL, *tls_key = NULL;
    size_t tls_cert_len = 0, tls_key_len = 0;
    struct MHD_OptionItem tls_opts[3] = {{MHD_OPTION_END, 0, NULL}};

    /* Block the stop signals in every thread; the main thread waits.
     * Threads started before this (OpenBLAS starts its pool when it is
     * loaded) do not block them: there the handler passes them on. */
    sigemptyset(&stop_signals);
    sigaddset(&stop_signals, SIGTERM);
    sigaddset(&stop_signals, SIGINT);
    pthread_sigmask(SIG_BLOCK, &stop_signals, NULL);
    signal(SIGPIPE, SIG_IGN);
    waiting_thread = (pid_t)syscall(SYS_gettid);
    struct sigaction forward = {.sa_handler = forward_stop_signal, .sa_flags = SA_RESTART};
    sigfillset(&forward.sa_mask);
    sigaction(SIGTERM, &forward, NULL);
    sigaction(SIGINT, &forward, NULL);

    struct sockaddr_storage addr;
    socklen_t addr_len;
    bool v6;
    if (!parse_listen(cfg->listen, &addr, &addr_len, &v6)) {
        cd_log(LOG_ERROR, "cannot parse --listen \"%s\" (want HOST:PORT, e.g. 127.0.0.1:8080)",
               cfg->listen);
        return 2;
    }
    unsigned max_connections = cfg->max_connections ? cfg->max_connections : 1024;
    if (max_connections < (unsigned)cfg->threads) {
        cd_log(LOG_ERROR, "--max-connections %u is less than --threads %d: each thread "
               "needs at least one", max_connections, cfg->threads);
        return 2;
    }
    if (!cfg->tls_cert != !cfg->tls_key) {
        cd_log(LOG_ERROR, "--tls-cert and --tls-key go together: give both or neither");
        return 2;
    }
    status = 2;
    if (cfg->tls_cert) {
        tls_cert = read_pem("--tls-cert", cfg->tls_cert, &tls_cert_len);
        tls_key = tls_cert ? read_pem("--tls-key", cfg->tls_key, &tls_key_len) : NULL;
        if (!tls_key || !tls_check(cfg, tls_cert, tls_cert_len, tls_key, tls_key_len))
            goto out;
        tls_opts[0] = (struct MHD_OptionItem){MHD_OPTION_HTTPS_MEM_CERT, 0, tls_cert};
        tls_opts[1] = (struct MHD_OptionItem){MHD_OPTION_HTTPS_MEM_KEY, 0, tls_key};
        tls_opts[2] = (struct MHD_OptionItem){MHD_OPTION_END, 0, NULL};
    }
    status = 1;
    raise_fd_limit(max_connections + RESERVED_CONNECTIONS);
    if (!is_loopback(&addr, v6) && !cfg->key_file) {
        /* Without a database there are no keys: say so before making one. */
        char db[PATH_MAX];
        int n = snprintf(db, sizeof db, "%s/compatd.db", cfg->data_dir);
        if (n < 0 || (size_t)n >= sizeof db || access(db, F_OK) != 0) {
            log_refuse_open(cfg);
            status = 2;
            goto out;
        }
    }

    s.metrics = cd_metrics_create();
    if (!s.metrics)
        goto out;
    cd_engine_config ecfg = {
        .data_dir = cfg->data_dir,
        .snapshot_interval_s = cfg->snapshot_interval_s,
        .log = engine_log,
    };
    if (cd_engine_open(&ecfg, &engine, &err) != CD_OK) {
        cd_log(LOG_ERROR, "cannot open data directory %s: %s", cfg->data_dir, err.message);
        goto out;
    }
    s.api.engine = engine;
    s.api.max_body = cfg->max_body;
    s.api.metrics = s.metrics;
    if (cfg->limits)
        s.api.limits = *cfg->limits;
    s.api.metrics_public = cfg->metrics_public;
    s.max_connections = max_connections;

    /* Keys: those of the key file first, then the loopback rule. */
    bool have_keys = false;
    if (cfg->key_file && cd_key_file_load(cd_engine_store(engine), cfg->key_file) != 0) {
        status = 2;
        goto out;
    }
    if (cd_store_keys_exist(cd_engine_store(engine), &have_keys, &err) != CD_OK) {
        cd_log(LOG_ERROR, "cannot read the API keys: %s", err.message);
        goto out;
    }
    if (!have_keys && !is_loopback(&addr, v6)) {
        log_refuse_open(cfg);
        status = 2;
        goto out;
    }

    /* poll(), not epoll: with epoll, MHD_quiesce_daemon (0.9.75) and a
     * worker thread both take the listen socket out of the worker's epoll
     * set, and the one that loses aborts the process ("Failed to remove
     * listen FD from epoll set").  With poll() quiescing only flags the
     * workers and wakes them through their ITC. */
    unsigned flags = MHD_USE_POLL_INTERNAL_THREAD | MHD_USE_ERROR_LOG | MHD_USE_ITC |
                     MHD_USE_TURBO | MHD_USE_SUPPRESS_DATE_NO_CLOCK;
    if (v6)
        flags |= MHD_USE_IPv6;
    if (tls_cert)
        flags |= MHD_USE_TLS;
    d = MHD_start_daemon(flags, 0, NULL, NULL, on_request, &s,
                         MHD_OPTION_EXTERNAL_LOGGER, mhd_log, NULL,
                         MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&addr,
                         MHD_OPTION_THREAD_POOL_SIZE, (unsigned)cfg->threads,
                         MHD_OPTION_NOTIFY_COMPLETED, on_completed, &s,
                         MHD_OPTION_NOTIFY_CONNECTION, on_connection, &s,
                         MHD_OPTION_URI_LOG_CALLBACK, log_uri, NULL,
                         MHD_OPTION_UNESCAPE_CALLBACK, unescape, NULL,
                         MHD_OPTION_CONNECTION_TIMEOUT, cfg->idle_timeout_s,
                         MHD_OPTION_CONNECTION_LIMIT,
                         max_connections + RESERVED_CONNECTIONS,
                         MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)(256 * 1024),
                         MHD_OPTION_ARRAY, tls_opts,
                         MHD_OPTION_END);
    if (!d) {
        cd_log(LOG_ERROR, "cannot listen on %s: %s", cfg->listen, strerror(errno));
        goto out;
    }
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(d, MHD_DAEMON_INFO_BIND_PORT);
    unsigned port = info ? info->port : 0;
    char host[INET6_ADDRSTRLEN] = "";
    if (v6)
        inet_ntop(AF_INET6, &((struct sockaddr_in6 *)&addr)->sin6_addr, host, sizeof host);
    else
        inet_ntop(AF_INET, &((struct sockaddr_in *)&addr)->sin_addr, host, sizeof host);
    cd_log(LOG_INFO, "listening on %s://%s%s%s:%u (data %s, %d threads, %s)",
           tls_cert ? "https" : "http", v6 ? "[" : "", host, v6 ? "]" : "", port,
           cfg->data_dir, cfg->threads,
           have_keys ? "API keys required" : "no API keys: open to local clients");
    if (cfg->port_file && write_port_file(cfg->port_file, port) != 0)
        cd_log(LOG_WARN, "cannot write port file %s: %s", cfg->port_file, strerror(errno));

    if (cd_engine_load_indexes(engine, &err) != CD_OK) {
        cd_log(LOG_ERROR, "cannot load indexes: %s", err.message);
        goto out;
    }
    cd_log(LOG_INFO, "ready");

    int sig = 0;
    sigwait(&stop_signals, &sig);
    cd_log(LOG_INFO, "received %s: draining", sig == SIGTERM ? "SIGTERM" : "SIGINT");
    /* No new connections, and every reply from now on closes its own, so
     * the requests in flight are the last ones.  The threads drop the
     * listen socket only later: it is closed after MHD_stop_daemon
     * (libmicrohttpd's contract for MHD_quiesce_daemon). */
    atomic_store(&s.draining, true);
    lsock = MHD_quiesce_daemon(d);
    for (int i = 0; i < 30000 && atomic_load(&s.in_flight) > 0; i++)
        usleep(1000);
    if (atomic_load(&s.in_flight) > 0)
        cd_log(LOG_WARN, "%d requests still running after 30 s: stopping anyway",
               atomic_load(&s.in_flight));
    status = 0;
out:
    if (d)
        MHD_stop_daemon(d);
    if (lsock != MHD_INVALID_SOCKET)
        close(lsock);
    cd_engine_close(engine);
    cd_metrics_destroy(s.metrics);
    free(tls_cert);
    if (tls_key) {
        explicit_bzero(tls_key, tls_key_len);   /* memset could be dropped */
        free(tls_key);
    }
    if (status == 0)
        cd_log(LOG_INFO, "stopped");
    return status;
}
