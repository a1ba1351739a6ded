/*
 * test_http_tls.c - `compatd serve --tls-cert FILE --tls-key FILE`.
 *
 * A self-signed certificate for 127.0.0.1 is made by td_make_cert (certtool,
 * or openssl when certtool is missing) in the daemon's temporary directory.
 * The daemon serves HTTPS: requests verified against that certificate
 * work, with API keys too.  Plain HTTP sent to the TLS port gets no HTTP
 * answer, the connection just ends, and the daemon keeps serving HTTPS.
 * Bad TLS settings are clear startup errors with exit status 2.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "check.h"
#include "daemon.h"

/*
 * Sends a plain HTTP request to port and reads what comes back for up to
 * 5 s; returns the bytes read (in buf, NUL-terminated), -1 when the
 * connection could not be made.
 */
static long plain_http(int port, char *buf, size_t cap)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    REQUIRE(fd >= 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
        close(fd);
        return -1;
    }
    static const char req[] = "GET /v1/models HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";
    if (send(fd, req, sizeof req - 1, MSG_NOSIGNAL) < 0)
        fprintf(stderr, "send: %s\n", strerror(errno));
    size_t n = 0;
    double deadline = td_now() + 5;
    while (n + 1 < cap && td_now() < deadline) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (poll(&p, 1, 200) <= 0)
            continue;
        ssize_t got = recv(fd, buf + n, cap - 1 - n, 0);
        if (got <= 0)
            break;      /* closed (or reset): the expected end */
        n += (size_t)got;
    }
    buf[n] = '\0';
    close(fd);
    return (long)n;
}

static void test_tls_serving(td_daemon *d, const char *cert, const char *key)
{
    td_reply r;
    const char *args[] = {"--tls-cert", cert, "--tls-key", key, NULL};
    td_daemon_set_tls(d, cert);
    REQUIRE(td_daemon_start(d, args));
    td_http *h = td_http_create(d);
    REQUIRE(h != NULL);
    td_http_set_timeout(h, 30);

    CHECK_EQ(td_http_json(h, "GET", "/v1/models", NULL, &r), 200);
    td_reply_finish(&r);
    CHECK_EQ(td_http_json(h, "POST", "/v1/models", "{\"name\":\"m\",\"dim\":2,\"metric\":\"l2\"}",
                          &r), 201);
    td_reply_finish(&r);
    CHECK_EQ(td_http_json(h, "POST", "/v1/galleries", "{\"name\":\"g\",\"model\":\"m\"}", &r),
             201);
    td_reply_finish(&r);
    CHECK_EQ(td_http_json(h, "POST", "/v1/galleries/g/items",
                          "{\"items\":[{\"id\":\"a\",\"vector\":[1,2]}]}", &r), 200);
    td_reply_finish(&r);
    CHECK_EQ(td_http_json(h, "POST", "/v1/galleries/g/search", "{\"vector\":[1,2],\"k\":1}", &r),
             200);
    CHECK_STREQ(td_json_str(r.json, "results.0.0.id"), "a");
    td_reply_finish(&r);

    /* Plain HTTP to the TLS port: no HTTP answer, then HTTPS still works;
     * many times over, on fresh connections. */
    for (int i = 0; i < 20; i++) {
        char buf[4096];
        long n = plain_http(td_daemon_port(d), buf, sizeof buf);
        CHECK(n >= 0);
        CHECK(strncmp(buf, "HTTP/", 5) != 0);
        CHECK(strstr(buf, "\"models\"") == NULL);
    }
    CHECK(td_daemon_running(d));
    CHECK_EQ(td_http_json(h, "GET", "/v1/galleries/g", NULL, &r), 200);
    CHECK_EQ(td_json_num(r.json, "count"), 1);
    td_reply_finish(&r);
    td_http_destroy(h);

    /* A client that does not trust the certificate is refused by TLS. */
    td_daemon_set_tls(d, key);      /* not a CA certificate */
    h = td_http_create(d);
    REQUIRE(h != NULL);
    CHECK_EQ(td_http_json(h, "GET", "/healthz", NULL, &r), 0);
    td_reply_finish(&r);
    td_http_destroy(h);
    td_daemon_set_tls(d, cert);

    CHECK_EQ(td_daemon_stop(d), 0);
}

/* TLS and API keys together: the key travels encrypted. */
static void test_tls_with_keys(td_daemon *d, const char *cert, const char *key)
{
    td_reply r;
    char reader[128];
    REQUIRE(td_create_key(d, "tls-reader", "read", reader, sizeof reader) == 0);
    const char *args[] = {"--tls-cert", cert, "--tls-key", key, "--listen", "0.0.0.0:0", NULL};
    REQUIRE(td_daemon_start(d, args));
    td_http *h = td_http_create(d);
    REQUIRE(h != NULL);
    CHECK_EQ(td_http_json(h, "GET", "/v1/models", NULL, &r), 401);
    td_reply_finish(&r);
    td_http_set_key(h, reader);
    CHECK_EQ(td_http_json(h, "GET", "/v1/models", NULL, &r), 200);
    td_reply_finish(&r);
    CHECK_EQ(td_http_json(h, "POST", "/v1/models", "{\"name\":\"m2\",\"dim\":2,\"metric\":\"l2\"}",
                          &r), 403);
    td_reply_finish(&r);
    td_http_destroy(h);
    CHECK_EQ(td_daemon_stop(d), 0);
}

/* Bad TLS settings stop the start with one clear line. */
static void test_bad_settings(td_daemon *d, const char *cert, const char *key)
{
    const char *dir = td_daemon_dir(d);
    char *empty = td_fmt("%s/empty.pem", dir), *junk = td_fmt("%s/junk.pem", dir);
    FILE *f = fopen(empty, "w");
    REQUIRE(f != NULL);
    CHECK_EQ(fclose(f), 0);
    f = fopen(junk, "w");
    REQUIRE(f != NULL);
    fputs("-----BEGIN CERTIFICATE-----\nnot base64 at all\n-----END CERTIFICATE-----\n", f);
    CHECK_EQ(fclose(f), 0);
    static const char *const none = NULL;
    const struct {
        const char *cert, *key;
        const char *says;
    } cases[] = {
        {cert, none, "--tls-cert and --tls-key go together"},
        {none, key, "--tls-cert and --tls-key go together"},
        {"/nonexistent/cert.pem", key, "cannot read --tls-cert /nonexistent/cert.pem"},
        {cert, "/nonexistent/key.pem", "cannot read --tls-key /nonexistent/key.pem"},
        {empty, key, "the file is empty"},
        {junk, key, "cannot use --tls-cert"},
        {cert, cert, "cannot use --tls-cert"},     /* a certificate as the key */
        {key, key, "cannot use --tls-cert"},       /* a key as the certificate */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const char *args[5];
        size_t n = 0;
        if (cases[i].cert) {
            args[n++] = "--tls-cert";
            args[n++] = cases[i].cert;
        }
        if (cases[i].key) {
            args[n++] = "--tls-key";
            args[n++] = cases[i].key;
        }
        args[n] = NULL;
        CHECK(td_serve_refused(d, args, 2, cases[i].says));
    }
    free(empty);
    free(junk);
}

int main(void)
{
    td_daemon *d = td_daemon_create();
    REQUIRE(d != NULL);
    char *cert = td_fmt("%s/cert.pem", td_daemon_dir(d));
    char *key = td_fmt("%s/key.pem", td_daemon_dir(d));
    REQUIRE(td_make_cert(td_daemon_dir(d)));

    test_tls_serving(d, cert, key);
    test_tls_with_keys(d, cert, key);
    test_bad_settings(d, cert, key);

    td_daemon_destroy(d);
    free(cert);
    free(key);
    return check_exit();
}
