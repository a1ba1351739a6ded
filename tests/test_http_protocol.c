/*
 * test_http_protocol.c - HTTP/1.1 as hostile clients send it, over raw
 * sockets (exact bytes, NULs included) to the real daemon.
 *
 *  - Framing a proxy and the daemon could read two ways (two
 *    Content-Lengths, Transfer-Encoding with Content-Length, a coding
 *    other than chunked, two Hosts) and NUL bytes in the request line get
 *    a JSON 400 with Connection: close, the connection really ends (read
 *    to EOF), and nothing is changed: "DELETE /v1/galleries/nulg\0/items/b"
 *    leaves the gallery nulg alone.
 *  - HEAD answers every GET route with GET's status, Content-Type and
 *    Content-Length, and no body.
 *  - Control bytes, DEL, backslashes and bytes that are not UTF-8 in a
 *    URL reach the log as \xHH: no forged line, no escape sequence.
 *  - Without API keys only loopback Host names are answered (421
 *    misdirected_request otherwise); once a key exists, any Host is.
 *  - More idle connections than --max-connections leave the probes and
 *    clients with a key served at once (the reserve), refuse others with
 *    503 too_many_connections, and are closed after --header-timeout.
 */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "check.h"
#include "daemon.h"

#define REPLY_MAX 65536
/* Room for the largest GET reply (schema/openapi.yaml, the dashboard's
 * script); a reply that fills it is reported, not compared cut short. */
#define GET_REPLY_MAX (1 << 20)

/* Sends n bytes on a new connection and reads the reply to EOF (within
 * 5 s) into buf.  Returns 1 when the daemon closed the connection. */
static int exchange(const td_daemon *d, const void *bytes, size_t n, char *buf, size_t cap)
{
    int fd = td_raw_connect(td_daemon_port(d));
    REQUIRE(fd >= 0);
    buf[0] = '\0';
    CHECK(td_raw_send(fd, bytes, n));
    int closed = td_raw_wait_closed(fd, 5, buf, cap);
    close(fd);
    return closed;
}

/* The body of a raw reply (after the blank line), or NULL. */
static const char *raw_body(const char *reply)
{
    const char *p = strstr(reply, "\r\n\r\n");
    return p ? p + 4 : NULL;
}

/* The value of header name in a raw reply, copied into out ("" when absent). */
static void raw_header(const char *reply, const char *name, char *out, size_t cap)
{
    out[0] = '\0';
    size_t n = strlen(name);
    const char *end = strstr(reply, "\r\n\r\n");
    for (const char *p = strstr(reply, "\r\n"); p && (!end || p < end); p = strstr(p + 2, "\r\n")) {
        if (strncasecmp(p + 2, name, n) == 0 && p[2 + n] == ':') {
            const char *v = p + 3 + n;
            while (*v == ' ')
                v++;
            size_t len = strcspn(v, "\r");
            snprintf(out, cap, "%.*s", (int)len, v);
            return;
        }
    }
}

#define S(lit) lit, sizeof lit - 1

static void test_framing(td_daemon *d, td_http *h)
{
    static const struct {
        const char *what;
        const char *bytes;
        size_t len;
        const char *code;
    } cases[] = {
        {"two Content-Lengths",
         S("POST /v1/models HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
           "Content-Length: 2\r\nContent-Length: 38\r\n\r\n"
           "{\"name\":\"smuggled\",\"dim\":4,\"metric\":\"ip\"}"), "malformed_request"},
        {"Transfer-Encoding and Content-Length",
         S("POST /v1/models HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
           "Content-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n"
           "29\r\n{\"name\":\"smuggled\",\"dim\":4,\"metric\":\"ip\"}\r\n0\r\n\r\n"),
         "malformed_request"},
        {"a coding other than chunked",
         S("POST /v1/models HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
           "Transfer-Encoding: gzip\r\n\r\n{}"), "malformed_request"},
        {"two Transfer-Encodings",
         S("POST /v1/models HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n"
           "Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n"), "malformed_request"},
        {"two Hosts", S("GET /v1/models HTTP/1.1\r\nHost: 127.0.0.1\r\nHost: evil.example\r\n\r\n"),
         "malformed_request"},
        {"a NUL in the path", S("DELETE /v1/galleries/nulg\0/items/b HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"),
         "invalid_path"},
        {"a NUL in the method", S("DELETE\0X /v1/galleries/nulg HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"),
         "malformed_request"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char buf[REPLY_MAX], conn[64];
        int closed = exchange(d, cases[i].bytes, cases[i].len, buf, sizeof buf);
        const char *body = raw_body(buf);
        cJSON *j = body ? cJSON_Parse(body) : NULL;
        raw_header(buf, "Connection", conn, sizeof conn);
        if (!closed || strncmp(buf, "HTTP/1.1 400", 12) != 0 ||
            !td_json_str(j, "error.code") || strcmp(td_json_str(j, "error.code"), cases[i].code))
            fprintf(stderr, "%s: closed %d, reply:\n%s\n", cases[i].what, closed, buf);
        CHECK_EQ(closed, 1);
        CHECK(strncmp(buf, "HTTP/1.1 400", 12) == 0);
        CHECK_STREQ(conn, "close");
        CHECK_STREQ(td_json_str(j, "error.code"), cases[i].code);
        CHECK_EQ(td_json_num(j, "error.status"), 400);
        cJSON_Delete(j);
    }
    /* Nothing came through. */
    td_reply r;
    CHECK_EQ(td_http_call(h, &r, 404, "GET", "/v1/models/smuggled", NULL), 404);
    td_reply_finish(&r);
    CHECK_EQ(td_http_call(h, &r, 200, "GET", "/v1/galleries/nulg", NULL), 200);
    td_reply_finish(&r);
}

/* HEAD of every GET route: GET's status and headers, no body. */
static void test_head(td_daemon *d)
{
    static const char *const paths[] = {"/healthz", "/readyz", "/", "/v1/openapi.yaml",
                                        "/v1/models", "/v1/models/m", "/v1/galleries",
                                        "/v1/galleries/nulg", "/v1/galleries/nulg/evaluations",
                                        "/v1/compatibility", "/v1/models/absent"};
    for (size_t i = 0; i < sizeof paths / sizeof paths[0]; i++) {
        char *get = malloc(GET_REPLY_MAX), head[REPLY_MAX];
        REQUIRE(get != NULL);
        char *req = td_fmt("GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n",
                           paths[i]);
        CHECK_EQ(exchange(d, req, strlen(req), get, GET_REPLY_MAX), 1);
        free(req);
        if (strlen(get) >= GET_REPLY_MAX - 1)
            fprintf(stderr, "GET %s: the reply fills the test's %d-byte buffer\n", paths[i],
                    GET_REPLY_MAX);
        CHECK(strlen(get) < GET_REPLY_MAX - 1);
        req = td_fmt("HEAD %s HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n",
                     paths[i]);
        CHECK_EQ(exchange(d, req, strlen(req), head, sizeof head), 1);
        free(req);
        const char *get_body = raw_body(get), *head_body = raw_body(head);
        char get_len[32], head_len[32], get_type[64], head_type[64];
        raw_header(get, "Content-Length", get_len, sizeof get_len);
        raw_header(head, "Content-Length", head_len, sizeof head_len);
        raw_header(get, "Content-Type", get_type, sizeof get_type);
        raw_header(head, "Content-Type", head_type, sizeof head_type);
        if (strncmp(get, head, 12) != 0 || !head_body || *head_body)
            fprintf(stderr, "HEAD %s:\n%s\nGET:\n%.300s\n", paths[i], head, get);
        CHECK(strncmp(get, "HTTP/1.1 ", 9) == 0);
        CHECK(strncmp(get, head, 12) == 0);            /* the same status */
        CHECK(strncmp(head, "HTTP/1.1 405", 12) != 0);
        CHECK_STREQ(head_len, get_len);
        CHECK(get_body && strlen(get_body) == strtoul(get_len, NULL, 10));
        CHECK_STREQ(head_type, get_type);
        CHECK(head_body && *head_body == '\0');
        free(get);
    }
}

/* Client bytes reach the log escaped. */
static void test_log_escaping(td_daemon *d)
{
    char buf[REPLY_MAX];
    exchange(d, S("GET /v1/galleries/a%0Ab%1B[31mc%7Fd%5Ce HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                  "Connection: close\r\n\r\n"), buf, sizeof buf);
    exchange(d, S("GET /v1/galleries/x\x80y\xc3\xa9z HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                  "Connection: close\r\n\r\n"), buf, sizeof buf);
    char *log = td_daemon_log(d);
    bool raw_control = false;
    for (const unsigned char *p = (const unsigned char *)log; *p; p++)
        if ((*p < 0x20 && *p != '\n') || *p == 0x7f || *p == 0x80)
            raw_control = true;
    CHECK(!raw_control);
    CHECK(strstr(log, "GET /v1/galleries/a\\x0Ab\\x1B[31mc\\x7Fd\\x5Ce 404") != NULL);
    CHECK(strstr(log, "GET /v1/galleries/x\\x80y\xc3\xa9z 400") != NULL);
    /* No line starts with what followed the %0A. */
    CHECK(strstr(log, "\nb") == NULL);
    if (raw_control || !strstr(log, "a\\x0Ab"))
        td_daemon_print_log(d);
    free(log);
}

/* Host on a daemon without keys, then with one. */
static void test_host(td_daemon *d, td_http *h)
{
    static const struct {
        const char *host;
        long status;
    } cases[] = {
        {"localhost", 200}, {"LocalHost:8080", 200}, {"127.0.0.1", 200},
        {"127.1.2.3:80", 200}, {"[::1]", 200}, {"[::1]:8080", 200},
        {"evil.example", 421}, {"evil.example:8080", 421}, {"localhost.evil.example", 421},
        {"127.0.0.1.evil.example", 421}, {"[::2]", 421}, {"10.0.0.1", 421},
        {"localhost:80:80", 421}, {"localhost:http", 421}, {"[::1]x", 421},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *hdr = td_fmt("Host: %s", cases[i].host);
        td_http_set_header(h, hdr);
        td_reply r;
        long st = td_http_call(h, &r, cases[i].status, "GET", "/v1/models", NULL);
        if (st != cases[i].status)
            fprintf(stderr, "Host %s\n", cases[i].host);
        CHECK_EQ(st, cases[i].status);
        if (cases[i].status == 421)
            CHECK_STREQ(td_reply_error_code(&r), "misdirected_request");
        td_reply_finish(&r);
        free(hdr);
    }
    /* With a key, the daemon may listen anywhere: Host is not checked. */
    char key[256];
    REQUIRE(td_create_key(d, "reader", "read", key, sizeof key) == 0);
    td_http_set_header(h, "Host: evil.example");
    td_http_set_key(h, key);
    td_reply r;
    CHECK_EQ(td_http_call(h, &r, 200, "GET", "/v1/models", NULL), 200);
    td_reply_finish(&r);
    td_http_set_header(h, NULL);
    td_http_set_key(h, NULL);
}

/*
 * --max-connections 8 --header-timeout 3: 12 idle connections (more than
 * 8, fewer than 8 + the reserve of 8) leave /healthz and a client with a
 * key served at once, a client without one refused (503, even for the
 * dashboard, which needs no key), and are closed after about 3 s.
 */
static void test_reserve(td_daemon *d)
{
    enum { IDLE = 12 };
    const char *args[] = {"--max-connections", "8", "--threads", "2", "--header-timeout", "3",
                          NULL};
    char key[256];
    REQUIRE(td_daemon_start(d, args));
    REQUIRE(td_create_key(d, "admin", "admin", key, sizeof key) == 0);
    td_http *h = td_http_create(d);
    REQUIRE(h != NULL);
    td_http_set_timeout(h, 10);
    td_http_set_key(h, key);
    int fds[IDLE];
    double t0 = td_now(), closed_at[IDLE];
    for (int i = 0; i < IDLE; i++) {
        fds[i] = td_raw_connect(td_daemon_port(d));
        REQUIRE(fds[i] >= 0);
        closed_at[i] = 0;
    }
    char buf[REPLY_MAX];
    int probe = td_raw_connect(td_daemon_port(d));
    REQUIRE(probe >= 0);
    double s = td_now();
    CHECK(td_raw_get(probe, "/healthz", buf, sizeof buf));
    close(probe);
    td_reply r;
    CHECK_EQ(td_http_call(h, &r, 200, "GET", "/v1/models", NULL), 200);
    td_reply_finish(&r);
    double took = td_now() - s;
    fprintf(stderr, "probe and keyed request with %d idle connections: %.3f s\n", IDLE, took);
    CHECK(took < 2.0);
    /* Without a key, even where none is needed (the dashboard): 503, closed. */
    CHECK_EQ(exchange(d, S("GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"), buf, sizeof buf), 1);
    CHECK(strncmp(buf, "HTTP/1.1 503", 12) == 0);
    CHECK(strstr(buf, "\"too_many_connections\"") != NULL);
    /* The idle ones are closed after the header timeout. */
    int open = IDLE;
    while (open && td_now() - t0 < 10) {
        for (int i = 0; i < IDLE; i++)
            if (closed_at[i] == 0 && td_raw_wait_closed(fds[i], 0.02, NULL, 0)) {
                closed_at[i] = td_now() - t0;
                open--;
            }
    }
    for (int i = 0; i < IDLE; i++) {
        if (closed_at[i] < 2.0 || closed_at[i] > 6.0)
            fprintf(stderr, "idle connection %d closed after %.2f s\n", i, closed_at[i]);
        CHECK(closed_at[i] >= 2.0 && closed_at[i] <= 6.0);
        close(fds[i]);
    }
    td_http_destroy(h);
    CHECK_EQ(td_daemon_stop(d), 0);
}

int main(void)
{
    td_daemon *d;
    td_http *h;
    REQUIRE(td_daemon_start_client(NULL, &d, &h));
    td_reply r;
    CHECK_EQ(td_http_call(h, &r, 201, "POST", "/v1/models",
                          "{\"name\":\"m\",\"dim\":4,\"metric\":\"ip\"}"), 201);
    td_reply_finish(&r);
    CHECK_EQ(td_http_call(h, &r, 201, "POST", "/v1/galleries", "{\"name\":\"nulg\",\"model\":\"m\"}"),
             201);
    td_reply_finish(&r);
    CHECK_EQ(td_http_call(h, &r, 200, "POST", "/v1/galleries/nulg/items",
                          "{\"items\":[{\"id\":\"b\",\"vector\":[1,0,0,0]}]}"), 200);
    td_reply_finish(&r);
    test_framing(d, h);
    test_head(d);
    test_log_escaping(d);
    test_host(d, h);
    td_http_destroy(h);
    CHECK_EQ(td_daemon_stop(d), 0);
    td_daemon_destroy(d);

    d = td_daemon_create();
    REQUIRE(d != NULL);
    test_reserve(d);
    td_daemon_destroy(d);
    return check_exit();
}
