/*
 * serve.h - `compatd serve`: the daemon's settings and its run from start
 * to stop.
 */
#ifndef CD_SERVE_H
#define CD_SERVE_H

#include <stdbool.h>
#include <stddef.h>

#include "api.h"

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
    const cd_limits *limits; /* per-request limits (api.h); NULL: defaults */
} cd_server_config;

/*
 * Runs the daemon until SIGTERM/SIGINT: opens the engine, listens, loads
 * indexes, serves; then stops accepting, lets in-flight requests finish,
 * snapshots and returns 0 (non-zero when it could not start: 2 for a bad
 * configuration).
 */
int cd_serve(const cd_server_config *cfg);

#endif
