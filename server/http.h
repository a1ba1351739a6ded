/*
 * http.h - the libmicrohttpd glue: one connection's requests from their
 * header to their reply.  serve.c starts the daemon with these callbacks
 * (cd_http_start) and owns the rest of the process: engine, keys, TLS,
 * signals.
 *
 * A request flows one way: its header is checked (framing, Host), its
 * route matched once (route.h), its key checked (auth.h), its body read
 * up to the route's limit, and its handler run; the reply is sent,
 * counted (metrics.h) and logged (log.h).
 */
#ifndef CD_HTTP_H
#define CD_HTTP_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>

#include "api.h"
#include "metrics.h"

struct sockaddr;
struct MHD_Daemon;
struct MHD_OptionItem;

/*
 * Connections beyond --max-connections that libmicrohttpd still accepts.
 * While more than --max-connections are open, only the probes and requests
 * with a key the daemon accepts are answered (others get 503 and are
 * closed), so that clients without keys holding every ordinary slot cannot
 * lock out Kubernetes or the operators.
 */
#define CD_HTTP_RESERVED_CONNECTIONS 8

/* What the request threads share; serve.c fills the settings, the
 * counters start at 0. */
typedef struct cd_http {
    cd_api api;
    cd_metrics *metrics;
    size_t max_body;                /* bytes of a body (--max-body) */
    size_t max_eval_body;           /* bytes of a CD_BODY_EVAL body (--max-eval-body) */
    unsigned idle_timeout_s;        /* --idle-timeout; 0: never */
    unsigned header_timeout_s;      /* --header-timeout; 0: never */
    unsigned max_connections;       /* --max-connections: the ordinary slots */
    atomic_int in_flight;   /* requests between their headers and their end */
    atomic_bool draining;   /* stopping: replies close their connection */
    atomic_uint open_connections;   /* counted by on_connection */
} cd_http;

/*
 * Starts libmicrohttpd with flags (MHD_USE_*) on addr with threads
 * threads, max_connections + CD_HTTP_RESERVED_CONNECTIONS connections at
 * most, and the options of extra (an MHD_OPTION_END-terminated array: TLS),
 * serving through h, which must outlive the daemon.  Returns the daemon,
 * or NULL (errno set) when it cannot listen.
 */
struct MHD_Daemon *cd_http_start(cd_http *h, unsigned flags, const struct sockaddr *addr,
                                 unsigned threads, struct MHD_OptionItem *extra);

#endif
