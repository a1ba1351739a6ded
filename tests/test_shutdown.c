/*
 * test_shutdown.c - a clean stop, every time (SPEC: SIGTERM finishes the
 * requests in flight, snapshots and exits 0).
 *
 * CYCLES times: start the daemon, put it under load from LOADERS client
 * threads, hold one request in flight, send SIGTERM, and check that
 * - the daemon exits with status 0 (never a signal: libmicrohttpd's
 *   "Failed to remove listen FD from epoll set" abort was one) and a
 *   clean log;
 * - the held request, whose headers the daemon had read before the signal
 *   ("100 Continue" says so) and whose body is sent only once the daemon
 *   logged that it is draining, gets its whole 200 reply;
 * - every reply a loader saw begin is whole and right: a request the
 *   stopping daemon did not take may fail before any reply (refused,
 *   reset), never in the middle of one.
 * Then the data written by the held requests is all there.  Last, the
 * start that has to rebuild its indexes logs its /readyz 503s at debug
 * level, not as errors; and paths too long for PATH_MAX are refused at
 * start rather than cut.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>

#include "check.h"
#include "daemon.h"

/* Under the sanitizers a start costs several times as much; 50 cycles
 * still hit the old abort (it came within the first 20 plain cycles). */
#if defined(__SANITIZE_ADDRESS__)
#define CYCLES 50
#else
#define CYCLES 200
#endif
#define LOADERS 3
#define LOAD_BEFORE_STOP 30     /* whole replies the loaders get before SIGTERM */
#define THREADS "8"             /* a worker pool: the abort was in its quiesce loop */

/* --- the loaders ------------------------------------------------------ */

typedef struct loader {
    const td_daemon *d;
    int id;
    atomic_bool *stop;
    atomic_long *whole;         /* whole replies, all loaders */
    long refused;               /* failed before any reply */
    long broken;                /* a reply begun but not whole, or wrong */
    char first_broken[512];
    pthread_t thread;
} loader;

typedef struct sink {
    char data[4096];
    size_t len;
} sink;

static size_t on_body(char *p, size_t size, size_t n, void *userdata)
{
    sink *s = userdata;
    size_t len = size * n, room = sizeof s->data - 1 - s->len;
    memcpy(s->data + s->len, p, len < room ? len : room);
    s->len += len < room ? len : room;
    s->data[s->len] = '\0';
    return len;
}

/* The loaders' requests, in turn; each answers 200 with a JSON object. */
static void loader_request(CURL *c, int id, long i, char *url, size_t cap, char *body,
                           size_t body_cap, int port)
{
    switch (i % 3) {
    case 0:
        snprintf(url, cap, "http://127.0.0.1:%d/v1/galleries/g", port);
        curl_easy_setopt(c, CURLOPT_HTTPGET, 1L);
        return;
    case 1:
        snprintf(url, cap, "http://127.0.0.1:%d/v1/galleries/g/search", port);
        snprintf(body, body_cap, "{\"k\":3,\"vector\":[%ld,1,0,1]}", i % 7);
        break;
    default:
        snprintf(url, cap, "http://127.0.0.1:%d/v1/galleries/g/items", port);
        snprintf(body, body_cap, "{\"items\":[{\"id\":\"l%d-%ld\",\"vector\":[1,%ld,0,1]}]}",
                 id, i % 50, i % 5);
        break;
    }
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
}

static void *loader_run(void *arg)
{
    loader *l = arg;
    CURL *c = curl_easy_init();
    struct curl_slist *headers = curl_slist_append(NULL, "Content-Type: application/json");
    if (!c || !headers) {
        snprintf(l->first_broken, sizeof l->first_broken, "no curl handle");
        l->broken++;
        goto out;
    }
    for (long i = 0; !atomic_load(l->stop); i++) {
        char url[128], body[256];
        sink s = {.len = 0};
        curl_easy_reset(c);
        loader_request(c, l->id, i, url, sizeof url, body, sizeof body, td_daemon_port(l->d));
        curl_easy_setopt(c, CURLOPT_URL, url);
        curl_easy_setopt(c, CURLOPT_HTTPHEADER, headers);
        curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
        curl_easy_setopt(c, CURLOPT_TIMEOUT, 60L);
        curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
        curl_easy_setopt(c, CURLOPT_WRITEDATA, &s);
        CURLcode rc = curl_easy_perform(c);
        long status = 0;
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
        if (status == 0) {
            l->refused++;
            continue;
        }
        cJSON *j = cJSON_Parse(s.data);
        if (rc != CURLE_OK || status != 200 || !cJSON_IsObject(j)) {
            if (!l->broken++)
                snprintf(l->first_broken, sizeof l->first_broken, "%s: %s, status %ld: %.120s",
                         url, curl_easy_strerror(rc), status, s.data);
        } else {
            atomic_fetch_add(l->whole, 1);
        }
        cJSON_Delete(j);
    }
out:
    curl_slist_free_all(headers);
    curl_easy_cleanup(c);
    return NULL;
}

/* --- the held request ------------------------------------------------- */

/* A connection to the daemon, or -1. */
static int connect_to(int port)
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd >= 0 && connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
        close(fd);
        fd = -1;
    }
    return fd;
}

/* Sends the n bytes of s at once: a few hundred bytes on a fresh
 * loopback connection, which the kernel takes whole. */
static bool send_all(int fd, const char *s, size_t n)
{
    return send(fd, s, n, MSG_NOSIGNAL) == (ssize_t)n;
}

/* Reads into buf (cap) until it holds until, the peer closes or 30 s
 * pass; returns the bytes read. */
static size_t recv_until(int fd, char *buf, size_t cap, const char *until)
{
    struct timeval tv = {30, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    size_t len = 0;
    buf[0] = '\0';
    while (len + 1 < cap && !strstr(buf, until)) {
        ssize_t r = recv(fd, buf + len, cap - 1 - len, 0);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        len += (size_t)r;
        buf[len] = '\0';
    }
    return len;
}

/* True once the log at path holds text; waits up to 30 s for it. */
static bool log_says(const char *path, const char *text)
{
    for (int i = 0; i < 30000; i++) {
        FILE *f = fopen(path, "r");
        char line[1024];
        bool found = false;
        while (f && !found && fgets(line, sizeof line, f))
            found = strstr(line, text) != NULL;
        if (f)
            fclose(f);
        if (found)
            return true;
        struct timespec ts = {0, 1000000};
        nanosleep(&ts, NULL);
    }
    return false;
}

/* The whole reply has come: headers, and as many body bytes as
 * Content-Length says. */
static bool reply_whole(const char *buf, size_t len)
{
    const char *end = strstr(buf, "\r\n\r\n");
    const char *cl = strstr(buf, "Content-Length: ");
    return end && cl && cl < end && len - (size_t)(end + 4 - buf) == (size_t)atol(cl + 16);
}

/* --- the cycles ------------------------------------------------------- */

/* One start, load, SIGTERM, exit; false when the daemon would not start.
 * Sets *held_ok when the held request was answered 200. */
static bool cycle(td_daemon *d, int run, int n, bool *held_ok)
{
    static const char *const args[] = {"--threads", THREADS, NULL};
    if (!td_daemon_start(d, args))
        return false;
    atomic_bool stop = false;
    atomic_long whole = 0;
    loader l[LOADERS];
    for (int i = 0; i < LOADERS; i++) {
        l[i] = (loader){.d = d, .id = i, .stop = &stop, .whole = &whole};
        REQUIRE(pthread_create(&l[i].thread, NULL, loader_run, &l[i]) == 0);
    }

    /* The held request: its headers are in once 100 Continue came. */
    char body[128], head[512], buf[4096];
    int body_len = snprintf(body, sizeof body,
                            "{\"items\":[{\"id\":\"held-%d\",\"vector\":[%d,0,1,1]}]}", n, n);
    snprintf(head, sizeof head,
             "POST /v1/galleries/g/items HTTP/1.1\r\nHost: 127.0.0.1\r\n"
             "Content-Type: application/json\r\nContent-Length: %d\r\n"
             "Expect: 100-continue\r\n\r\n", body_len);
    int fd = connect_to(td_daemon_port(d));
    CHECK(fd >= 0);
    CHECK(fd >= 0 && send_all(fd, head, strlen(head)));
    size_t got = fd >= 0 ? recv_until(fd, buf, sizeof buf, "\r\n\r\n") : 0;
    CHECK(got > 0 && strncmp(buf, "HTTP/1.1 100", 12) == 0);

    while (atomic_load(&whole) < LOAD_BEFORE_STOP && td_daemon_running(d))
        sched_yield();
    kill(td_daemon_pid(d), SIGTERM);
    char *log = td_fmt("%s/daemon-%d.log", td_daemon_dir(d), run);
    CHECK(log_says(log, "draining"));
    free(log);
    CHECK(fd >= 0 && send_all(fd, body, (size_t)body_len));
    got = fd >= 0 ? recv_until(fd, buf, sizeof buf, "}}") : 0;
    *held_ok = got > 12 && strncmp(buf, "HTTP/1.1 200", 12) == 0 && reply_whole(buf, got);
    CHECK(*held_ok);
    if (!*held_ok)
        fprintf(stderr, "cycle %d: the held request got %zu bytes: %.300s\n", n, got, buf);
    if (fd >= 0)
        close(fd);

    int st = td_daemon_stop(d);
    CHECK_EQ(st, 0);
    atomic_store(&stop, true);
    for (int i = 0; i < LOADERS; i++) {
        pthread_join(l[i].thread, NULL);
        CHECK_EQ(l[i].broken, 0);
        if (l[i].broken)
            fprintf(stderr, "cycle %d, loader %d: %ld broken replies, the first: %s\n", n, i,
                    l[i].broken, l[i].first_broken);
    }
    if (st != 0)
        fprintf(stderr, "cycle %d: the daemon did not stop cleanly\n", n);
    return true;
}

/* --- /readyz while the indexes load ---------------------------------- */

#define BIG_ITEMS 20000
#define BIG_BATCH 10000

/*
 * Starts the daemon on an HNSW gallery of BIG_ITEMS items whose index
 * snapshots are gone, so it rebuilds before it is ready; the harness asks
 * /readyz every 20 ms meanwhile.  Those 503s are the expected answer of a
 * loading daemon: at --log-level debug they are debug lines, never error
 * lines (there were hundreds per start).
 */
static void test_readyz_log(td_daemon *d, td_http *h, int *run)
{
    REQUIRE(td_daemon_start(d, NULL));
    ++*run;
    td_reply r;
    CHECK_EQ(td_http_call(h, &r, 201, "POST", "/v1/galleries",
                          "{\"name\":\"big\",\"model\":\"m\",\"index\":\"HNSW32\"}"), 201);
    td_reply_finish(&r);
    for (int b = 0; b < BIG_ITEMS; b += BIG_BATCH) {
        td_text t = {0};
        td_text_append(&t, "{\"items\":[");
        for (int i = b; i < b + BIG_BATCH; i++)
            td_text_append(&t, "%s{\"id\":\"b%d\",\"vector\":[%d,%d,%d,1]}", i > b ? "," : "",
                           i, i % 97, i % 89, i % 83);
        td_text_append(&t, "]}");
        CHECK_EQ(td_http_call(h, &r, 200, "POST", "/v1/galleries/big/items", t.s), 200);
        td_reply_finish(&r);
        free(t.s);
    }
    CHECK_EQ(td_daemon_kill(d), 0);
    char *rm = td_fmt("rm -rf '%s/index'", td_daemon_data_dir(d));
    CHECK_EQ(system(rm), 0);
    free(rm);
    static const char *const debug[] = {"--log-level", "debug", NULL};
    REQUIRE(td_daemon_start(d, debug));
    CHECK_EQ(td_daemon_stop(d), 0);

    char *log = td_fmt("%s/daemon-%d.log", td_daemon_dir(d), ++*run);
    FILE *f = fopen(log, "r");
    CHECK(f != NULL);
    char line[1024];
    int as_debug = 0, as_other = 0;
    while (f && fgets(line, sizeof line, f)) {
        if (!strstr(line, "GET /readyz 503"))
            continue;
        if (strstr(line, " debug GET /readyz"))
            as_debug++;
        else if (!as_other++)
            fprintf(stderr, "%s: %s", log, line);
    }
    if (f)
        fclose(f);
    fprintf(stderr, "/readyz answered 503 %d times while loading\n", as_debug + as_other);
    /* The rebuild takes well over the probes' 20 ms, so some came. */
    CHECK(as_debug + as_other > 0);
    CHECK_EQ(as_other, 0);
    free(log);
}

/* Paths longer than PATH_MAX allows are refused at start, not cut. */
static void test_long_paths(const td_daemon *d)
{
    char *long_path = malloc(PATH_MAX + 16);
    REQUIRE(long_path != NULL);
    memset(long_path, 'a', PATH_MAX + 15);
    long_path[0] = '/';
    long_path[PATH_MAX + 15] = '\0';
    static const char *const flags[] = {"--data", "--port-file"};
    for (size_t i = 0; i < sizeof flags / sizeof flags[0]; i++) {
        const char *args[] = {flags[i], long_path, NULL};
        char *says = td_fmt("%s is %d bytes long: at most", flags[i], PATH_MAX + 15);
        CHECK(td_serve_refused(d, args, 2, says));
        free(says);
    }
    free(long_path);
}

int main(void)
{
    REQUIRE(curl_global_init(CURL_GLOBAL_DEFAULT) == CURLE_OK);
    td_daemon *d = NULL;
    td_http *h = NULL;
    REQUIRE(td_daemon_start_client(NULL, &d, &h));
    test_long_paths(d);
    td_reply r;
    CHECK_EQ(td_http_call(h, &r, 201, "POST", "/v1/models",
                          "{\"name\":\"m\",\"dim\":4,\"metric\":\"l2\"}"), 201);
    td_reply_finish(&r);
    CHECK_EQ(td_http_call(h, &r, 201, "POST", "/v1/galleries",
                          "{\"name\":\"g\",\"model\":\"m\"}"), 201);
    td_reply_finish(&r);
    CHECK_EQ(td_daemon_stop(d), 0);

    double t0 = td_now();
    int run = 1, done = 0;
    bool held[CYCLES] = {false};
    for (int n = 0; n < CYCLES && check_failures == 0; n++, done++)
        REQUIRE(cycle(d, ++run, n, &held[n]));
    fprintf(stderr, "%d start-load-SIGTERM cycles in %.1f s\n", done, td_now() - t0);

    /* Each held request answered 200 stored its item. */
    REQUIRE(td_daemon_start(d, NULL));
    run++;
    for (int n = 0; n < done; n++) {
        if (!held[n])
            continue;
        char *path = td_fmt("/v1/galleries/g/items/held-%d", n);
        CHECK_EQ(td_http_call(h, &r, 200, "GET", path, NULL), 200);
        td_reply_finish(&r);
        free(path);
    }
    CHECK_EQ(td_daemon_stop(d), 0);

    test_readyz_log(d, h, &run);
    td_http_destroy(h);
    td_daemon_destroy(d);
    curl_global_cleanup();
    return check_exit();
}
