/*
 * http.c - libmicrohttpd glue (see http.h).  Reads each request body
 * whole into memory, up to its route's limit (413 beyond, after the rest
 * of a body already on its way was read and dropped), runs its handler,
 * sends the reply, logs one line per request and feeds the /metrics
 * counters.
 *
 * Keys are checked as soon as a request's headers are in, before its body
 * is read: the Authorization header is parsed here and auth.c decides
 * (cd_auth_request), so a client without a valid key cannot make the
 * daemon buffer a body.
 */
#include "http.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>

#include <microhttpd.h>

#include "auth.h"
#include "log.h"
#include "reply.h"
#include "request.h"
#include "route.h"

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
    bool answered;          /* replied before the body came (401, 404, ...) */
    cd_route_match match;   /* the request's route, matched once */
    size_t limit;           /* body limit of its route */
    size_t drained;         /* bytes of a too large body read and dropped */
    struct timespec start, drain_start;
} request_ctx;

static double seconds_since(const struct timespec *t0)
{
    struct timespec t1;
    clock_gettime(CLOCK_MONOTONIC, &t1);
    return (double)(t1.tv_sec - t0->tv_sec) + (double)(t1.tv_nsec - t0->tv_nsec) / 1e9;
}

static enum MHD_Result send_reply(cd_http *s, struct MHD_Connection *conn,
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
    int level = rep->status >= 500 ? CD_LOG_ERROR : CD_LOG_INFO;
    if (rep->status == 503 && strcmp(route, "/readyz") == 0)
        level = CD_LOG_DEBUG;
    cd_log(level, "%s %s %d %.3fms in=%zu out=%zu", method, url, rep->status, secs * 1e3,
           rc->len, rep->len);
    return ok;
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
    const char *why = NULL;
    cd_http_err code = CD_HTTP_MALFORMED_REQUEST;
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
            code = CD_HTTP_INVALID_PATH;
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
    cd_reply_error(rep, code, "malformed HTTP/1.1 request: %s", why);
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
static bool check_host(cd_http *s, struct MHD_Connection *conn, cd_reply *rep)
{
    const char *host = MHD_lookup_connection_value(conn, MHD_HEADER_KIND,
                                                   MHD_HTTP_HEADER_HOST);
    bool required;
    cd_error err;
    if (!host || cd_host_is_loopback(host))
        return true;
    rep->route = "other";
    if (cd_auth_keys_required(&s->api, &required, &err) != CD_OK) {
        cd_reply_core_error(rep, &err);
        return false;
    }
    if (required)
        return true;
    /* The Host is not echoed: it may be any bytes. */
    cd_reply_error(rep, CD_HTTP_MISDIRECTED_REQUEST,
                   "this daemon has no API keys and answers only requests for "
                   "localhost, 127.0.0.1 or [::1] (the Host header)");
    return false;
}

/*
 * When more than --max-connections are open, this request holds one of
 * the RESERVED_CONNECTIONS: only the probes and requests with a key the
 * daemon accepted (cd_auth_request ran first) are served there; others
 * get 503 and their connection is closed.
 */
static bool check_reserve(cd_http *s, const cd_request *head, const cd_route_match *m,
                          cd_reply *rep)
{
    if (atomic_load(&s->open_connections) <= s->max_connections || head->api_key ||
        (m->route && (m->route->flags & CD_ROUTE_PROBE)))
        return true;
    cd_reply_error(rep, CD_HTTP_TOO_MANY_CONNECTIONS,
                   "more than --max-connections %u connections are open; the rest are "
                   "kept for probes and requests with an API key", s->max_connections);
    rep->close = true;
    return false;
}

/*
 * A body over its route's limit, sent whole without waiting for
 * "100 Continue" (Python's urllib and requests, Go's net/http do that),
 * is read and dropped before the 413 goes out: a connection closed with
 * unread bytes is reset, and the reset discards the 413 before the client
 * reads it.  As nginx's lingering close, up to this many bytes past the
 * limit and this long; beyond either the connection is closed.
 */
#define DRAIN_BYTES ((size_t)64 << 20)
#define DRAIN_SECONDS 30.0

static const char *query_arg(void *conn, const char *name)
{
    return MHD_lookup_connection_value(conn, MHD_GET_ARGUMENT_KIND, name);
}

/* Whether the client waits for "100 Continue" before it sends the body. */
static bool expects_continue(struct MHD_Connection *conn)
{
    const char *e = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_EXPECT);
    return e && strcasecmp(e, "100-continue") == 0;
}

static void reply_too_large(const request_ctx *rc, cd_reply *rep)
{
    *rep = (cd_reply){.route = cd_route_pattern(&rc->match)};
    cd_reply_error(rep, CD_HTTP_BODY_TOO_LARGE,
                   "request body is larger than the limit of %zu bytes", rc->limit);
}

/*
 * The request's header is whole: checks it, matches its route, checks its
 * key and its Content-Length against the route's limit, all before any
 * of the body is read.  Replies at once (and reads no body) to a request
 * that cannot go on.
 */
static enum MHD_Result on_header(cd_http *s, struct MHD_Connection *conn, request_ctx *rc,
                                 const char *url, const char *method, const char *version)
{
    cd_request head = {.method = method, .path = url, .conn = conn};
    cd_reply rep = {0};
    read_authorization(conn, &head);
    bool go = check_protocol(conn, rc, method, version, &rep) && check_host(s, conn, &rep);
    if (go && cd_route_find(method, url, &rc->match) != CD_OK) {
        rep.route = "other";
        cd_reply_error(&rep, CD_HTTP_OUT_OF_MEMORY, "out of memory");
        go = false;
    }
    go = go && cd_auth_request(&s->api, &rc->match, &head, &rep) &&
         check_reserve(s, &head, &rc->match, &rep) &&
         cd_route_accept(&rc->match, method, url, &rep);
    if (!go) {
        /* Answer before reading: the body is not wanted. */
        rc->answered = true;
        return send_reply(s, conn, method, url, rc, &rep);
    }
    free(rep.body);
    rc->limit = cd_route_body_limit(&rc->match, s->max_body, s->max_eval_body);
    const char *cl = MHD_lookup_connection_value(conn, MHD_HEADER_KIND,
                                                 MHD_HTTP_HEADER_CONTENT_LENGTH);
    if (!cl)
        return MHD_YES;
    char *end;
    errno = 0;
    unsigned long long n = strtoull(cl, &end, 10);
    if (!errno && !*end && n <= rc->limit) {
        /* The whole body's room at once: growing it by doubling would
         * copy a large batch several times over.  Without the memory,
         * on_body grows it as it comes. */
        if (n > 0 && (rc->body = malloc((size_t)n + 1)))
            rc->cap = (size_t)n + 1;
        return MHD_YES;
    }
    rc->too_large = true;
    if (!errno && !*end && n - rc->limit <= DRAIN_BYTES && !expects_continue(conn)) {
        /* On its way already: read it, then answer (on_body, on_end). */
        clock_gettime(CLOCK_MONOTONIC, &rc->drain_start);
        return MHD_YES;
    }
    /* Answer before reading: the client need not send it all. */
    reply_too_large(rc, &rep);
    return send_reply(s, conn, method, url, rc, &rep);
}

/* The next n bytes of the body: kept up to the limit; past it all are
 * dropped, up to the limit and DRAIN_BYTES in all and for DRAIN_SECONDS. */
static enum MHD_Result on_body(request_ctx *rc, const char *data, size_t n)
{
    if (!rc->too_large && rc->len + n > rc->limit) {
        rc->too_large = true;
        clock_gettime(CLOCK_MONOTONIC, &rc->drain_start);
        free(rc->body);
        rc->body = NULL;
        rc->cap = 0;
    }
    if (rc->too_large) {
        rc->drained += n;
        return rc->drained <= rc->limit + DRAIN_BYTES && seconds_since(&rc->drain_start) <= DRAIN_SECONDS
               ? MHD_YES : MHD_NO;
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
    memcpy(rc->body + rc->len, data, n);
    rc->len += n;
    return MHD_YES;
}

/* The body is whole: runs the route's handler. */
static enum MHD_Result on_end(cd_http *s, struct MHD_Connection *conn, request_ctx *rc,
                              const char *url, const char *method)
{
    cd_reply rep = {0};
    if (rc->too_large) {
        reply_too_large(rc, &rep);
        rep.close = true;
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
        .arg = query_arg,
        .conn = conn,
    };
    if (rc->match.method->body == CD_BODY_NONE && rc->len > 0) {
        rep.route = cd_route_pattern(&rc->match);
        cd_reply_error(&rep, CD_HTTP_UNEXPECTED_BODY, "%s requests take no body", method);
    } else {
        cd_route_dispatch(&s->api, &rc->match, &req, &rep);
    }
    return send_reply(s, conn, method, url, rc, &rep);
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn,
                                  const char *url, const char *method,
                                  const char *version, const char *upload_data,
                                  size_t *upload_size, void **con_cls)
{
    cd_http *s = cls;
    request_ctx *rc = *con_cls;

    if (!rc)
        return MHD_NO;  /* log_uri ran out of memory */
    if (!rc->started) {
        rc->started = true;
        atomic_fetch_add(&s->in_flight, 1);
        /* The header is whole: from now on the idle timeout applies. */
        if (s->header_timeout_s)
            MHD_set_connection_option(conn, MHD_CONNECTION_OPTION_TIMEOUT,
                                      s->idle_timeout_s);
        return on_header(s, conn, rc, url, method, version);
    }
    if (rc->answered) {
        *upload_size = 0;
        return MHD_YES;
    }
    if (*upload_size) {
        size_t n = *upload_size;
        *upload_size = 0;
        return on_body(rc, upload_data, n);
    }
    return on_end(s, conn, rc, url, method);
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
    cd_http *s = cls;
    if (toe == MHD_CONNECTION_NOTIFY_STARTED) {
        atomic_fetch_add(&s->open_connections, 1);
        if (s->header_timeout_s)
            MHD_set_connection_option(conn, MHD_CONNECTION_OPTION_TIMEOUT,
                                      s->header_timeout_s);
    } else {
        atomic_fetch_sub(&s->open_connections, 1);
    }
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
    cd_http *s = cls;
    request_ctx *rc = *con_cls;
    if (!rc)
        return;
    if (rc->started)
        atomic_fetch_sub(&s->in_flight, 1);
    cd_route_match_finish(&rc->match);
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
    cd_log(CD_LOG_WARN, "libmicrohttpd: %s", buf);
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

/*
 * Each connection's memory pool (request line, headers, read buffer):
 * libmicrohttpd zeroes all of it again before every request on a kept-
 * alive connection, so its size is a cost per request (at 256 KB, a fifth
 * of the daemon's time on a small search, measured by bench_http).  32 KB
 * (the library's default) holds any header a client of this API sends;
 * bodies are copied out of it as they arrive, in reads of up to half of
 * it.
 */
#define CONNECTION_POOL ((size_t)(32 * 1024))

struct MHD_Daemon *cd_http_start(cd_http *h, unsigned flags, const struct sockaddr *addr,
                                 unsigned threads, struct MHD_OptionItem *extra)
{
    return MHD_start_daemon(flags, 0, NULL, NULL, on_request, h,
                            MHD_OPTION_EXTERNAL_LOGGER, mhd_log, NULL,
                            MHD_OPTION_SOCK_ADDR, addr,
                            MHD_OPTION_THREAD_POOL_SIZE, threads,
                            MHD_OPTION_NOTIFY_COMPLETED, on_completed, h,
                            MHD_OPTION_NOTIFY_CONNECTION, on_connection, h,
                            MHD_OPTION_URI_LOG_CALLBACK, log_uri, NULL,
                            MHD_OPTION_UNESCAPE_CALLBACK, unescape, NULL,
                            MHD_OPTION_CONNECTION_TIMEOUT, h->idle_timeout_s,
                            MHD_OPTION_CONNECTION_LIMIT,
                            h->max_connections + CD_HTTP_RESERVED_CONNECTIONS,
                            MHD_OPTION_CONNECTION_MEMORY_LIMIT, CONNECTION_POOL,
                            MHD_OPTION_ARRAY, extra,
                            MHD_OPTION_END);
}
