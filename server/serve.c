/*
 * serve.c - `compatd serve` as a process (see serve.h): checks the
 * configuration, opens the engine, stores the key file's keys, reads the
 * TLS files, listens (http.c serves the requests), writes the port file,
 * loads the indexes, then waits for SIGTERM or SIGINT and drains.
 *
 * With TLS, libmicrohttpd runs GnuTLS on the certificate and key read into
 * memory at start (checked here first for a clear error).
 */
#include "serve.h"

#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <gnutls/gnutls.h>
#include <microhttpd.h>

#include "auth.h"
#include "http.h"
#include "log.h"

static void engine_log(void *ctx, int level, const char *msg)
{
    cd_log(level, "%s", msg);
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
        cd_log(CD_LOG_ERROR, "cannot read %s %s: %s", flag, path, strerror(errno));
        return NULL;
    }
    buf = malloc(TLS_FILE_MAX + 1);
    size_t n = buf ? fread(buf, 1, TLS_FILE_MAX + 1, f) : 0;
    if (!buf || ferror(f) || n == 0 || n > TLS_FILE_MAX) {
        cd_log(CD_LOG_ERROR, "cannot read %s %s: %s", flag, path,
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
        cd_log(CD_LOG_ERROR, "this libmicrohttpd was built without TLS: --tls-cert cannot be used");
        return false;
    }
    if (gnutls_certificate_allocate_credentials(&cred) < 0) {
        cd_log(CD_LOG_ERROR, "cannot set TLS up: out of memory");
        return false;
    }
    gnutls_datum_t c = {(unsigned char *)cert, (unsigned)cert_len};
    gnutls_datum_t k = {(unsigned char *)key, (unsigned)key_len};
    int r = gnutls_certificate_set_x509_key_mem(cred, &c, &k, GNUTLS_X509_FMT_PEM);
    gnutls_certificate_free_credentials(cred);
    if (r < 0) {
        cd_log(CD_LOG_ERROR, "cannot use --tls-cert %s with --tls-key %s: %s", cfg->tls_cert,
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
        cd_log(CD_LOG_WARN, "open files limit is %llu: fewer than --max-connections %u "
               "connections may be served", (unsigned long long)rl.rlim_cur, max_connections);
}

/* The one line that explains why the daemon will not start open. */
static void log_refuse_open(const cd_server_config *cfg)
{
    cd_log(CD_LOG_ERROR, "refusing to listen on %s without API keys: anyone who can reach it "
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
    cd_http s = {0};
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
        cd_log(CD_LOG_ERROR, "cannot parse --listen \"%s\" (want HOST:PORT, e.g. 127.0.0.1:8080)",
               cfg->listen);
        return 2;
    }
    unsigned max_connections = cfg->max_connections ? cfg->max_connections : 1024;
    if (max_connections < (unsigned)cfg->threads) {
        cd_log(CD_LOG_ERROR, "--max-connections %u is less than --threads %d: each thread "
               "needs at least one", max_connections, cfg->threads);
        return 2;
    }
    if (!cfg->tls_cert != !cfg->tls_key) {
        cd_log(CD_LOG_ERROR, "--tls-cert and --tls-key go together: give both or neither");
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
    raise_fd_limit(max_connections + CD_HTTP_RESERVED_CONNECTIONS);
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
        .check_in_background = true,
    };
    if (cd_engine_open(&ecfg, &engine, &err) != CD_OK) {
        cd_log(CD_LOG_ERROR, "cannot open data directory %s: %s", cfg->data_dir, err.message);
        goto out;
    }
    s.api.engine = engine;
    s.api.max_body = cfg->max_body;
    s.api.metrics = s.metrics;
    if (cfg->limits)
        s.api.limits = *cfg->limits;
    s.api.metrics_public = cfg->metrics_public;
    s.max_body = cfg->max_body;
    s.max_eval_body = cfg->max_eval_body;
    s.idle_timeout_s = cfg->idle_timeout_s;
    s.header_timeout_s = cfg->header_timeout_s;
    s.max_connections = max_connections;

    /* Keys: those of the key file first, then the loopback rule.  Loading
     * them writes the store: not before its check has passed. */
    bool have_keys = false;
    if (cfg->key_file && cd_engine_wait_checked(engine, &err) != CD_OK) {
        cd_log(CD_LOG_ERROR, "%s", err.message);
        goto out;
    }
    if (cfg->key_file && cd_key_file_load(cd_engine_store(engine), cfg->key_file) != 0) {
        status = 2;
        goto out;
    }
    if (cd_store_keys_exist(cd_engine_store(engine), &have_keys, &err) != CD_OK) {
        cd_log(CD_LOG_ERROR, "cannot read the API keys: %s", err.message);
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
    d = cd_http_start(&s, flags, (struct sockaddr *)&addr, (unsigned)cfg->threads, tls_opts);
    if (!d) {
        cd_log(CD_LOG_ERROR, "cannot listen on %s: %s", cfg->listen, strerror(errno));
        goto out;
    }
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(d, MHD_DAEMON_INFO_BIND_PORT);
    unsigned port = info ? info->port : 0;
    char host[INET6_ADDRSTRLEN] = "";
    if (v6)
        inet_ntop(AF_INET6, &((struct sockaddr_in6 *)&addr)->sin6_addr, host, sizeof host);
    else
        inet_ntop(AF_INET, &((struct sockaddr_in *)&addr)->sin_addr, host, sizeof host);
    cd_log(CD_LOG_INFO, "listening on %s://%s%s%s:%u (data %s, %d threads, %s)",
           tls_cert ? "https" : "http", v6 ? "[" : "", host, v6 ? "]" : "", port,
           cfg->data_dir, cfg->threads,
           have_keys ? "API keys required" : "no API keys: open to local clients");
    if (cfg->port_file && write_port_file(cfg->port_file, port) != 0)
        cd_log(CD_LOG_WARN, "cannot write port file %s: %s", cfg->port_file, strerror(errno));

    if (cd_engine_load_indexes(engine, &err) != CD_OK) {
        cd_log(CD_LOG_ERROR, "cannot load indexes: %s", err.message);
        goto out;
    }
    cd_log(CD_LOG_INFO, "ready");

    int sig = 0;
    sigwait(&stop_signals, &sig);
    cd_log(CD_LOG_INFO, "received %s: draining", sig == SIGTERM ? "SIGTERM" : "SIGINT");
    /* No new connections, and every reply from now on closes its own, so
     * the requests in flight are the last ones.  The threads drop the
     * listen socket only later: it is closed after MHD_stop_daemon
     * (libmicrohttpd's contract for MHD_quiesce_daemon). */
    atomic_store(&s.draining, true);
    lsock = MHD_quiesce_daemon(d);
    for (int i = 0; i < 30000 && atomic_load(&s.in_flight) > 0; i++)
        usleep(1000);
    if (atomic_load(&s.in_flight) > 0)
        cd_log(CD_LOG_WARN, "%d requests still running after 30 s: stopping anyway",
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
        cd_log(CD_LOG_INFO, "stopped");
    return status;
}
