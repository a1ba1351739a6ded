/*
 * test_http_limits.c - the per-request limits and the connection limits of
 * `compatd serve`, each set low, against the real daemon on loopback.
 *
 * Per-request limits (--max-batch, --max-queries, --max-k, --max-dim,
 * --max-metadata, --max-eval-probes): one over the limit gets its 4xx
 * with the JSON error body and stores nothing (a fingerprint of listings
 * and an item is the same before and after); exactly at the limit is
 * accepted.  Connections: --header-timeout closes a connection that has
 * not sent a whole request header, --idle-timeout one that stalled in its
 * body, after about the timeout; --max-connections (here from a --config
 * file, as every limit may be) plus 8 reserved connections, where only
 * probes and clients with a key are served, keep connections over that
 * from being served until one closes.  Slow clients: 200
 * connections trickling one byte a second for about 10 s do not slow a
 * normal client's requests past a couple of seconds each.  Bad values
 * are startup errors with status 2.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "check.h"
#include "daemon.h"

#define SLOW_CLIENTS 200
#define SLOW_SECONDS 10.0
#define NORMAL_MAX_SECONDS 2.0

/* n copies of c, malloc'd. */
static char *repeat(char c, size_t n)
{
    char *s = malloc(n + 1);
    REQUIRE(s != NULL);
    memset(s, c, n);
    s[n] = '\0';
    return s;
}

/* ---- the per-request limits ----------------------------------------- */

/* Listings and one item, to compare before and after refused requests. */
static char *fingerprint(td_http *h)
{
    static const char *const paths[] = {"/v1/models", "/v1/galleries", "/v1/galleries/g",
                                        "/v1/galleries/g/items/a?vectors=true",
                                        "/v1/galleries/g/evaluations", "/v1/compatibility"};
    char *all = strdup("");
    for (size_t i = 0; i < sizeof paths / sizeof paths[0]; i++) {
        td_reply r;
        CHECK_EQ(td_http_json(h, "GET", paths[i], NULL, &r), 200);
        char *next = td_fmt("%s\n%s", all, r.body);
        free(all);
        all = next;
        td_reply_finish(&r);
    }
    return all;
}

#define ITEM(id, label, x) "{\"id\":\"" id "\",\"label\":\"" label "\",\"vector\":[" x "]}"
#define PROBE(id, label, x) "{\"id\":\"" id "\",\"label\":\"" label "\",\"vector\":[" x "]}"

static void test_request_limits(td_daemon *d)
{
    const char *args[] = {"--max-batch", "3", "--max-queries", "2", "--max-k", "5",
                          "--max-dim", "8", "--max-metadata", "64", "--max-eval-probes", "3",
                          "--idle-timeout", "4", "--header-timeout", "2", NULL};
    REQUIRE(td_daemon_start(d, args));
    td_http *h = td_http_create(d);
    REQUIRE(h != NULL);
    td_http_set_timeout(h, 30);
    td_reply r;
    CHECK_EQ(td_http_json(h, "POST", "/v1/models", "{\"name\":\"m\",\"dim\":4,\"metric\":\"ip\"}",
                          &r), 201);
    td_reply_finish(&r);
    CHECK_EQ(td_http_json(h, "POST", "/v1/galleries", "{\"name\":\"g\",\"model\":\"m\"}", &r),
             201);
    td_reply_finish(&r);
    CHECK_EQ(td_http_json(h, "POST", "/v1/galleries/g/items",
                          "{\"items\":[" ITEM("a", "x", "1,0,0,0") "," ITEM("b", "y", "0,1,0,0")
                          "," ITEM("c", "x", "0.9,0.1,0,0") "]}", &r), 200);
    td_reply_finish(&r);

    char *meta_65 = repeat('m', 57), *meta_64 = repeat('m', 56);
    char *over_meta = td_fmt("{\"items\":[{\"id\":\"d\",\"metadata\":{\"k\":\"%s\"},"
                          "\"vector\":[0,0,1,0]}]}", meta_65);
    char *at_meta = td_fmt("{\"items\":[{\"id\":\"d\",\"metadata\":{\"k\":\"%s\"},"
                        "\"vector\":[0,0,1,0]}]}", meta_64);
    const struct {
        const char *what;
        const char *path;
        const char *over, *at;      /* one over the limit; exactly at it */
        long status;
        const char *code;
        const char *says;
    } cases[] = {
        {"--max-dim", "/v1/models", "{\"name\":\"big\",\"dim\":9,\"metric\":\"ip\"}",
         "{\"name\":\"m8\",\"dim\":8,\"metric\":\"ip\"}", 400, "invalid_argument", "1..8"},
        {"--max-batch", "/v1/galleries/g/items",
         "{\"items\":[" ITEM("e", "x", "1,0,0,0") "," ITEM("f", "x", "1,0,0,0") ","
         ITEM("g", "x", "1,0,0,0") "," ITEM("h", "x", "1,0,0,0") "]}",
         "{\"items\":[" ITEM("a", "x", "1,0,0,0") "," ITEM("b", "y", "0,1,0,0") ","
         ITEM("c", "x", "0.9,0.1,0,0") "]}", 413, "batch_too_large", "at most 3 items, got 4"},
        {"--max-metadata", "/v1/galleries/g/items", over_meta, at_meta, 400,
         "invalid_metadata", "65 bytes, the limit is 64"},
        {"--max-queries", "/v1/galleries/g/search",
         "{\"vectors\":[[1,0,0,0],[0,1,0,0],[0,0,1,0]]}",
         "{\"vectors\":[[1,0,0,0],[0,1,0,0]]}", 413, "batch_too_large",
         "at most 2 query vectors per request, got 3"},
        {"--max-k", "/v1/galleries/g/search", "{\"vector\":[1,0,0,0],\"k\":6}",
         "{\"vector\":[1,0,0,0],\"k\":5}", 400, "invalid_k", "1..5"},
        {"--max-eval-probes (queries)", "/v1/galleries/g/evaluations",
         "{\"query_model\":\"m\",\"queries\":[" PROBE("q1", "x", "1,0,0,0") ","
         PROBE("q2", "y", "0,1,0,0") "," PROBE("q3", "x", "1,0.1,0,0") ","
         PROBE("q4", "y", "0,1,0.1,0") "]}",
         "{\"query_model\":\"m\",\"queries\":[" PROBE("q1", "x", "1,0,0,0") ","
         PROBE("q2", "y", "0,1,0,0") "," PROBE("q3", "x", "1,0.1,0,0") "]}",
         413, "batch_too_large", "at most 3 probes per evaluation, got 4"},
        {"--max-eval-probes (baseline)", "/v1/galleries/g/evaluations",
         "{\"query_model\":\"m\",\"queries\":[" PROBE("q1", "x", "1,0,0,0") "],"
         "\"baseline\":[{\"id\":\"q1\",\"vector\":[1,0,0,0]},{\"id\":\"q2\",\"vector\":[1,0,0,0]},"
         "{\"id\":\"q3\",\"vector\":[1,0,0,0]},{\"id\":\"q4\",\"vector\":[1,0,0,0]}]}",
         NULL, 413, "batch_too_large", "baseline holds at most 3 probes"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *before = fingerprint(h);
        long st = td_http_json(h, "POST", cases[i].path, cases[i].over, &r);
        const char *code = td_reply_error_code(&r), *msg = td_reply_error_message(&r);
        if (st != cases[i].status || !code || strcmp(code, cases[i].code) != 0 || !msg ||
            !strstr(msg, cases[i].says))
            fprintf(stderr, "%s: %ld %s\n", cases[i].what, st, r.body);
        CHECK_EQ(st, cases[i].status);
        CHECK_STREQ(code, cases[i].code);
        CHECK_EQ(td_json_num(r.json, "error.status"), cases[i].status);
        CHECK(msg && strstr(msg, cases[i].says));
        td_reply_finish(&r);
        char *after = fingerprint(h);
        CHECK_STREQ(after, before);
        free(after);
        free(before);
        if (cases[i].at) {
            st = td_http_json(h, "POST", cases[i].path, cases[i].at, &r);
            if (st != 200 && st != 201)
                fprintf(stderr, "%s at the limit: %ld %s\n", cases[i].what, st, r.body);
            CHECK(st == 200 || st == 201);
            td_reply_finish(&r);
        }
    }
    CHECK_EQ(td_gallery_count(h, "g"), 4);
    CHECK_EQ(td_http_json(h, "GET", "/v1/models/big", NULL, &r), 404);
    td_reply_finish(&r);
    free(meta_65);
    free(meta_64);
    free(over_meta);
    free(at_meta);
    td_http_destroy(h);
}

/* --header-timeout 2 and --idle-timeout 4 (the daemon of
 * test_request_limits): a connection stalled before its request header is
 * whole is closed after about 2 s, one stalled in a body after about 4 s. */
static void test_idle_timeout(td_daemon *d)
{
    static const struct {
        const char *sent;
        double secs;    /* the timeout that applies */
    } stalls[] = {
        {"", 2},                                                        /* nothing at all */
        {"GET /v1/models HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Half: ", 2},   /* half the headers */
        {"POST /v1/models HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
         "Content-Length: 100\r\n\r\n{\"name\":", 4},                    /* half the body */
    };
    enum { N = sizeof stalls / sizeof stalls[0] };
    int fds[N];
    double t0 = td_now(), closed_at[N];
    for (size_t i = 0; i < N; i++) {
        fds[i] = td_raw_connect(td_daemon_port(d));
        REQUIRE(fds[i] >= 0);
        CHECK(td_raw_sends(fds[i], stalls[i].sent));
        closed_at[i] = 0;
    }
    size_t open = N;
    while (open && td_now() - t0 < 10) {
        for (size_t i = 0; i < N; i++) {
            if (closed_at[i] == 0 && td_raw_wait_closed(fds[i], 0.05, NULL, 0)) {
                closed_at[i] = td_now() - t0;
                open--;
            }
        }
    }
    for (size_t i = 0; i < N; i++) {
        fprintf(stderr, "stall %zu closed after %.2f s\n", i, closed_at[i]);
        CHECK(closed_at[i] >= stalls[i].secs - 1.0 && closed_at[i] <= stalls[i].secs + 3.0);
        close(fds[i]);
    }
    /* And the daemon answers as before. */
    td_http *h = td_http_create(d);
    REQUIRE(h != NULL);
    td_reply r;
    CHECK_EQ(td_http_json(h, "GET", "/v1/galleries/g", NULL, &r), 200);
    td_reply_finish(&r);
    td_http_destroy(h);
    CHECK_EQ(td_daemon_stop(d), 0);
}

/* Writes text to a --config file in d's directory; returns its path
 * (free()). */
static char *write_conf(const td_daemon *d, const char *name, const char *text)
{
    char *path = td_fmt("%s/%s", td_daemon_dir(d), name);
    FILE *f = fopen(path, "w");
    REQUIRE(f != NULL);
    fputs(text, f);
    CHECK_EQ(fclose(f), 0);
    return path;
}

/* --max-connections (and --max-batch, --threads) from a --config file. */
static void test_connection_limit(td_daemon *d)
{
    char *conf = write_conf(d, "limits.conf", "# limits\nthreads = 1\nmax-connections = 4\n"
                                              "max-batch = 2\nidle-timeout = 0\n");
    const char *args[] = {"--config", conf, NULL};
    REQUIRE(td_daemon_start(d, args));
    td_http *h = td_http_create(d);
    REQUIRE(h != NULL);
    td_reply r;
    CHECK_EQ(td_http_json(h, "POST", "/v1/galleries/g/items",
                          "{\"items\":[" ITEM("p", "x", "1,0,0,0") "," ITEM("q", "x", "1,0,0,0")
                          "," ITEM("r", "x", "1,0,0,0") "]}", &r), 413);
    CHECK_STREQ(td_reply_error_code(&r), "batch_too_large");
    td_reply_finish(&r);
    td_http_destroy(h);     /* closes its connection */

    /* Four connections, each served once and kept open. */
    int fds[4], extra = -1;
    char buf[8192];
    for (int i = 0; i < 4; i++) {
        fds[i] = td_raw_connect(td_daemon_port(d));
        REQUIRE(fds[i] >= 0);
        CHECK(td_raw_get(fds[i], "/healthz", buf, sizeof buf));
    }
    /* A fifth is one of the reserved connections: a probe is answered
     * there, a request without a key is refused with 503 and closed. */
    extra = td_raw_connect(td_daemon_port(d));
    REQUIRE(extra >= 0);
    CHECK(td_raw_get(extra, "/healthz", buf, sizeof buf));
    buf[0] = '\0';
    td_raw_sends(extra, "GET /v1/galleries/g HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
    CHECK_EQ(td_raw_wait_closed(extra, 5, buf, sizeof buf), 1);
    CHECK(strncmp(buf, "HTTP/1.1 503", 12) == 0);
    CHECK(strstr(buf, "\"too_many_connections\"") != NULL);
    close(extra);
    /* With the reserve taken too, one more gets no answer. */
    int reserve[8];
    for (int i = 0; i < 8; i++) {
        reserve[i] = td_raw_connect(td_daemon_port(d));
        REQUIRE(reserve[i] >= 0);
        CHECK(td_raw_get(reserve[i], "/healthz", buf, sizeof buf));
    }
    extra = td_raw_connect(td_daemon_port(d));
    if (extra >= 0) {
        buf[0] = '\0';
        td_raw_sends(extra, "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
        td_raw_wait_closed(extra, 1.5, buf, sizeof buf);
        CHECK(strncmp(buf, "HTTP/1.1 200", 12) != 0);
        close(extra);
    }
    for (int i = 0; i < 8; i++)
        close(reserve[i]);
    /* The four still work; once they close, new clients are served. */
    CHECK(td_raw_get(fds[0], "/healthz", buf, sizeof buf));
    for (int i = 0; i < 4; i++)
        close(fds[i]);
    h = td_http_create(d);
    REQUIRE(h != NULL);
    td_http_set_timeout(h, 10);
    double t0 = td_now();
    long st = 0;
    while (st != 200 && td_now() - t0 < 10) {
        st = td_http_json(h, "GET", "/v1/galleries/g", NULL, &r);
        td_reply_finish(&r);
    }
    CHECK_EQ(st, 200);
    td_http_destroy(h);
    CHECK_EQ(td_daemon_stop(d), 0);
    free(conf);
}

/*
 * 200 slow clients, each trickling one byte of a never-ending header a
 * second, while a normal client keeps asking: each of its requests must
 * be answered within NORMAL_MAX_SECONDS.
 */
static void test_slow_clients(td_daemon *d)
{
    REQUIRE(td_daemon_start(d, NULL));
    td_http *h = td_http_create(d);
    REQUIRE(h != NULL);
    td_http_set_timeout(h, 10);
    int fds[SLOW_CLIENTS];
    for (int i = 0; i < SLOW_CLIENTS; i++) {
        fds[i] = td_raw_connect(td_daemon_port(d));
        REQUIRE(fds[i] >= 0);
        fcntl(fds[i], F_SETFL, fcntl(fds[i], F_GETFL) | O_NONBLOCK);
        CHECK(td_raw_sends(fds[i], "GET /v1/models HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: "));
    }
    double t0 = td_now(), next_trickle = t0, worst = 0;
    int requests = 0, answered = 0, trickles = 0;
    while (td_now() - t0 < SLOW_SECONDS) {
        if (td_now() >= next_trickle) {
            for (int i = 0; i < SLOW_CLIENTS; i++)
                send(fds[i], "a", 1, MSG_NOSIGNAL | MSG_DONTWAIT);
            trickles++;
            next_trickle += 1.0;
        }
        static const char *const paths[] = {"/v1/models", "/v1/galleries/g",
                                            "/v1/galleries/g/items/a", "/healthz"};
        td_reply r;
        double s = td_now();
        long st;
        if (requests % 5 == 4)
            st = td_http_json(h, "POST", "/v1/galleries/g/search",
                              "{\"vector\":[1,0,0,0],\"k\":3}", &r);
        else
            st = td_http_json(h, "GET", paths[requests % 4], NULL, &r);
        double took = td_now() - s;
        td_reply_finish(&r);
        requests++;
        answered += st == 200;
        if (took > worst)
            worst = took;
        if (took > NORMAL_MAX_SECONDS)
            fprintf(stderr, "request %d took %.2f s\n", requests, took);
        struct timespec nap = {0, 50 * 1000 * 1000};
        nanosleep(&nap, NULL);
    }
    fprintf(stderr, "slow clients: %d trickles, %d requests (%d answered 200), worst %.3f s\n",
            trickles, requests, answered, worst);
    CHECK(trickles >= (int)SLOW_SECONDS - 1);
    CHECK(requests >= 20);
    CHECK_EQ(answered, requests);
    CHECK(worst <= NORMAL_MAX_SECONDS);
    /* The slow clients were kept, not dropped: most are still open. */
    int still_open = 0;
    for (int i = 0; i < SLOW_CLIENTS; i++) {
        char c;
        ssize_t got = recv(fds[i], &c, 1, MSG_DONTWAIT);
        still_open += got < 0 && (errno == EAGAIN || errno == EWOULDBLOCK);
        close(fds[i]);
    }
    fprintf(stderr, "%d of %d slow clients still open\n", still_open, SLOW_CLIENTS);
    td_reply r;
    CHECK_EQ(td_http_json(h, "GET", "/readyz", NULL, &r), 200);
    td_reply_finish(&r);
    td_http_destroy(h);
    CHECK_EQ(td_daemon_stop(d), 0);
}

/* Bad values are startup errors, from flags and from a config file. */
static void test_bad_values(td_daemon *d)
{
    char *conf = write_conf(d, "bad.conf", "max-k = 2000\n");
    const struct {
        const char *args[6];
        const char *says;
    } cases[] = {
        {{"--max-k", "1001"}, "--max-k must be an integer 1..1000"},
        {{"--max-k", "0"}, "--max-k must be"},
        {{"--max-dim", "4097"}, "--max-dim must be an integer 1..4096"},
        {{"--max-metadata", "16385"}, "--max-metadata must be 1..16384 bytes"},
        {{"--max-metadata", "0"}, "--max-metadata must be"},
        {{"--max-batch", "0"}, "--max-batch must be"},
        {{"--max-queries", "ten"}, "--max-queries must be"},
        {{"--max-eval-probes", "-1"}, "--max-eval-probes must be"},
        {{"--max-results", "0"}, "--max-results must be an integer 1..1000000000"},
        {{"--max-result-metadata", "0"}, "--max-result-metadata must be a positive number"},
        {{"--idle-timeout", "-1"}, "--idle-timeout must be"},
        {{"--max-connections", "2", "--threads", "4"}, "--max-connections 2 is less than"},
        {{"--config", conf}, "--max-k must be an integer 1..1000"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        CHECK(td_serve_refused(d, cases[i].args, 2, cases[i].says));
    free(conf);
}

/*
 * The body limit is the route's, checked before the body is read
 * (--max-body 64K, --max-eval-body 1M): a path of no route is a 404 at
 * once, whatever it ends with; and a body over the limit sent whole,
 * without waiting for "100 Continue" (Python's urllib and requests, Go's
 * net/http), is read and dropped so that the client reads its 413 rather
 * than a connection reset.  Declared far over the limit, or with Expect,
 * the 413 comes at once.
 */
static void test_body_limits(td_daemon *d)
{
    const char *args[] = {"--max-body", "64K", "--max-eval-body", "1M", NULL};
    REQUIRE(td_daemon_start(d, args));
    const struct {
        const char *what;
        const char *line;       /* request line and headers but Content-Length */
        size_t length;          /* Content-Length */
        size_t send;            /* body bytes sent */
        const char *status, *code;
    } cases[] = {
        {"no route ending in /evaluations", "POST /nowhere/evaluations HTTP/1.1\r\n",
         512 << 10, 0, "404", "no_route"},
        {"no route", "POST /nowhere HTTP/1.1\r\n", 512 << 10, 0, "404", "no_route"},
        {"over --max-body, sent whole", "POST /v1/models HTTP/1.1\r\n", 4 << 20, 4 << 20,
         "413", "body_too_large"},
        {"over --max-eval-body, sent whole", "POST /v1/galleries/g/evaluations HTTP/1.1\r\n",
         2 << 20, 2 << 20, "413", "body_too_large"},
        {"far over --max-body", "POST /v1/models HTTP/1.1\r\n", (size_t)1 << 30, 0, "413",
         "body_too_large"},
        {"over --max-body with Expect", "POST /v1/models HTTP/1.1\r\nExpect: 100-continue\r\n",
         4 << 20, 0, "413", "body_too_large"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int fd = td_raw_connect(td_daemon_port(d));
        REQUIRE(fd >= 0);
        char *head = td_fmt("%sHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                            "Content-Length: %zu\r\n\r\n", cases[i].line, cases[i].length);
        char *body = cases[i].send ? repeat(' ', cases[i].send) : NULL;
        char buf[4096] = "";
        bool sent = td_raw_sends(fd, head) && (!body || td_raw_send(fd, body, cases[i].send));
        td_raw_wait_closed(fd, 10, buf, sizeof buf);
        char *status_line = td_fmt("HTTP/1.1 %s ", cases[i].status);
        char *code = td_fmt("\"code\":\"%s\"", cases[i].code);
        bool ok = sent && strncmp(buf, status_line, strlen(status_line)) == 0 && strstr(buf, code);
        if (!ok)
            fprintf(stderr, "%s: %s, got \"%.200s\"\n", cases[i].what,
                    sent ? "sent" : "the daemon stopped reading", buf);
        CHECK(ok);
        free(code);
        free(status_line);
        free(body);
        free(head);
        close(fd);
    }
    CHECK_EQ(td_daemon_stop(d), 0);
}

int main(void)
{
    td_daemon *d = td_daemon_create();
    REQUIRE(d != NULL);
    test_request_limits(d);
    test_idle_timeout(d);
    test_connection_limit(d);
    test_slow_clients(d);
    test_bad_values(d);
    test_body_limits(d);
    td_daemon_destroy(d);
    return check_exit();
}
