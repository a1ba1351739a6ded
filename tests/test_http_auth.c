/*
 * test_http_auth.c - API keys and scopes (schema/concepts.md §5) against the real daemon.
 *
 * The daemon starts with no key (open mode: everything answers without
 * one).  Keys are then made with `compatd keys create` on its data
 * directory while it serves, and must count from the next request on; the
 * first key, revoked at once, shows that a data directory whose keys are
 * all revoked lets nobody in.  Then every route of api.c's router is sent
 * with every credential (none, a malformed header, an unknown key, a
 * revoked key, a read, a write and an admin key) and must give the documented
 * status: 401 (with WWW-Authenticate: Bearer) without a valid key, 403
 * when the key's scope is below the route's, and otherwise whatever the
 * handler answers, never 401 or 403.  Refused writes store nothing.
 *
 * Then: the `keys` command's errors and exit statuses, revocation by id,
 * keys from --key-file (and its bad lines as startup errors),
 * --metrics-public, and the loopback rule: without a key `serve` refuses
 * 0.0.0.0 with one clear line and status 2, with one it starts.
 */
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "daemon.h"

enum need { OPEN, READ, WRITE, ADMIN };
static const char *const need_name[] = {"open", "read", "write", "admin"};

#define EVAL_BODY                                                            \
    "{\"query_model\":\"m1\",\"queries\":["                                  \
    "{\"id\":\"q1\",\"label\":\"x\",\"vector\":[1,0,0,0]},"                  \
    "{\"id\":\"q2\",\"label\":\"y\",\"vector\":[0,1,0,0]}]}"

/*
 * Every route of server/api.c's router, with what it needs.  `ok` is the
 * status the handler gives when let in (0: any status but 401, 403 and
 * 5xx, for writes whose answer changes as they repeat).  Paths of no route
 * and methods a route does not take need read: a client without a key
 * learns nothing.
 */
static const struct route_case {
    const char *method;
    const char *path;
    const char *body;
    enum need need;
    long ok;
} routes[] = {
    {"GET", "/healthz", NULL, OPEN, 200},
    {"GET", "/readyz", NULL, OPEN, 200},
    {"GET", "/metrics", NULL, READ, 200},
    {"GET", "/v1/models", NULL, READ, 200},
    {"GET", "/v1/models/m1", NULL, READ, 200},
    {"POST", "/v1/models", "{\"name\":\"m-new\",\"dim\":4,\"metric\":\"ip\"}", ADMIN, 0},
    {"GET", "/v1/galleries", NULL, READ, 200},
    {"GET", "/v1/galleries/g1", NULL, READ, 200},
    {"POST", "/v1/galleries", "{\"name\":\"g-new\",\"model\":\"m1\"}", ADMIN, 0},
    {"PATCH", "/v1/galleries/g1", "{\"query_policy\":\"any\"}", ADMIN, 200},
    {"DELETE", "/v1/galleries/no-such", NULL, ADMIN, 404},
    {"POST", "/v1/galleries/g1/items",
     "{\"items\":[{\"id\":\"c\",\"label\":\"x\",\"vector\":[0,0,1,0]}]}", WRITE, 200},
    {"GET", "/v1/galleries/g1/items/a", NULL, READ, 200},
    {"DELETE", "/v1/galleries/g1/items/no-such", NULL, WRITE, 404},
    {"POST", "/v1/galleries/g1/search", "{\"vector\":[1,0,0,0],\"k\":2}", READ, 200},
    {"POST", "/v1/galleries/g1/evaluations", EVAL_BODY, WRITE, 201},
    {"GET", "/v1/galleries/g1/evaluations", NULL, READ, 200},
    {"GET", "/v1/evaluations/1", NULL, READ, 200},
    {"GET", "/v1/compatibility", NULL, READ, 200},
    {"GET", "/", NULL, OPEN, 200},                      /* the dashboard asks for a key */
    {"GET", "/ui/app.js", NULL, OPEN, 200},
    {"GET", "/ui/no-such.js", NULL, OPEN, 404},
    {"GET", "/v1/openapi.yaml", NULL, READ, 200},
    {"GET", "/no/such/route", NULL, READ, 404},
    {"PUT", "/v1/models", "{}", READ, 405},
};
#define N_ROUTES (sizeof routes / sizeof routes[0])

/* The credentials each route is tried with. */
enum cred { C_NONE, C_MALFORMED, C_UNKNOWN, C_REVOKED, C_READ, C_WRITE, C_ADMIN, N_CREDS };
static const char *const cred_name[] = {"no key", "malformed header", "unknown key",
                                        "revoked key", "read key", "write key",
                                        "admin key"};

static char keys[N_CREDS][128];     /* key text of the key credentials */

/* Sets h's credential c. */
static void use_cred(td_http *h, enum cred c)
{
    if (c == C_NONE)
        td_http_set_header(h, NULL);
    else if (c == C_MALFORMED)
        td_http_set_header(h, "Authorization: Basic YWRtaW46YWRtaW4=");
    else
        td_http_set_key(h, keys[c]);
}

/* Whether `compatd keys list` output has a key named name: its second
 * column (a key prefix elsewhere on the line may hold the same letters). */
static bool list_has_name(const char *list, const char *name)
{
    for (const char *line = list; line && *line;) {
        char id[32], got[128];
        if (sscanf(line, "%31s %127s", id, got) == 2 && strcmp(got, name) == 0)
            return true;
        line = strchr(line, '\n');
        if (line)
            line++;
    }
    return false;
}

static long send_route(td_http *h, const struct route_case *rc, td_reply *r)
{
    td_request req = {
        .method = rc->method,
        .path = rc->path,
        .content_type = rc->body ? "application/json" : NULL,
        .body = rc->body,
        .len = rc->body ? strlen(rc->body) : 0,
    };
    return td_http_send(h, &req, r);
}

static bool has_header(const td_reply *r, const char *line)
{
    return r->headers && strcasestr(r->headers, line) != NULL;
}

/* ---- the cases ------------------------------------------------------- */

/* The fixtures, made in open mode: model m1, gallery g1 with labelled
 * items a and b. */
static void make_fixtures(td_http *h)
{
    td_reply r;
    CHECK_EQ(td_http_json(h, "POST", "/v1/models",
                          "{\"name\":\"m1\",\"dim\":4,\"metric\":\"ip\"}", &r), 201);
    td_reply_finish(&r);
    CHECK_EQ(td_http_json(h, "POST", "/v1/galleries", "{\"name\":\"g1\",\"model\":\"m1\"}", &r),
             201);
    td_reply_finish(&r);
    CHECK_EQ(td_http_json(h, "POST", "/v1/galleries/g1/items",
                          "{\"items\":[{\"id\":\"a\",\"label\":\"x\",\"vector\":[1,0,0,0]},"
                          "{\"id\":\"b\",\"label\":\"y\",\"vector\":[0,1,0,0]}]}", &r), 200);
    td_reply_finish(&r);
}

/* Open mode: every route answers without a key, as before keys existed. */
static void test_open_mode(td_http *h)
{
    for (size_t i = 0; i < N_ROUTES; i++) {
        td_reply r;
        long st = send_route(h, &routes[i], &r);
        if (routes[i].ok)
            CHECK_EQ(st, routes[i].ok);
        CHECK(st != 401 && st != 403 && st > 0 && st < 500);
        if (st == 401 || st == 403 || (routes[i].ok && st != routes[i].ok))
            fprintf(stderr, "open mode: %s %s -> %ld %s\n", routes[i].method, routes[i].path,
                    st, r.body);
        td_reply_finish(&r);
    }
}

/*
 * The first key, made while the daemon serves, and revoked at once: from
 * then on a request without a key is refused, and so is the revoked key.
 */
static void test_first_key_revoked(const td_daemon *d, td_http *h)
{
    td_reply r;
    char *out = NULL;
    REQUIRE(td_create_key(d, "first", "admin", keys[C_REVOKED], sizeof keys[C_REVOKED]) == 0);
    CHECK_EQ(strncmp(keys[C_REVOKED], "cdk_", 4), 0);
    CHECK_EQ(strlen(keys[C_REVOKED]), 47);
    td_http_set_header(h, NULL);
    CHECK_EQ(td_http_json(h, "GET", "/v1/models", NULL, &r), 401);
    CHECK_STREQ(td_reply_error_code(&r), "unauthorized");
    CHECK_EQ(td_json_num(r.json, "error.status"), 401);
    CHECK(has_header(&r, "WWW-Authenticate: Bearer"));
    td_reply_finish(&r);
    td_http_set_key(h, keys[C_REVOKED]);
    CHECK_EQ(td_http_json(h, "GET", "/v1/models", NULL, &r), 200);
    td_reply_finish(&r);

    const char *revoke[] = {"keys", "revoke", "first", "--data", td_daemon_data_dir(d), NULL};
    CHECK_EQ(td_run_compatd(revoke, &out), 0);
    CHECK(out && strstr(out, "revoked API key first"));
    free(out);
    /* Every key is revoked: nobody gets in, not even without a key. */
    CHECK_EQ(td_http_json(h, "GET", "/v1/models", NULL, &r), 401);
    CHECK(strstr(r.body, "revoked") != NULL);
    CHECK(has_header(&r, "WWW-Authenticate: Bearer"));
    td_reply_finish(&r);
    td_http_set_header(h, NULL);
    CHECK_EQ(td_http_json(h, "GET", "/v1/models", NULL, &r), 401);
    td_reply_finish(&r);
    CHECK_EQ(td_http_json(h, "GET", "/healthz", NULL, &r), 200);
    td_reply_finish(&r);
}

/* Every route with every credential. */
static void test_matrix(td_http *h)
{
    for (size_t i = 0; i < N_ROUTES; i++) {
        const struct route_case *rc = &routes[i];
        for (int c = 0; c < N_CREDS; c++) {
            enum need have = c == C_READ ? READ : c == C_WRITE ? WRITE : c == C_ADMIN ? ADMIN
                                                                                         : OPEN;
            bool valid = c >= C_READ;
            long want = rc->need == OPEN ? rc->ok : !valid ? 401 : have < rc->need ? 403 : 0;
            td_reply r;
            use_cred(h, (enum cred)c);
            long st = send_route(h, rc, &r);
            bool ok = want ? st == want : (st != 401 && st != 403 && st > 0 && st < 500);
            if (want == 0 && rc->ok)
                ok = st == rc->ok || (rc->ok == 201 && st == 422);
            if (!ok)
                fprintf(stderr, "%s %s (needs %s) with %s: got %ld, want %ld: %s\n", rc->method,
                        rc->path, need_name[rc->need], cred_name[c], st, want ? want : rc->ok,
                        r.body);
            CHECK(ok);
            if (st == 401) {
                CHECK_STREQ(td_reply_error_code(&r), "unauthorized");
                CHECK_EQ(td_json_num(r.json, "error.status"), 401);
                CHECK(has_header(&r, "WWW-Authenticate: Bearer"));
            } else if (st == 403) {
                CHECK_STREQ(td_reply_error_code(&r), "forbidden");
                CHECK_EQ(td_json_num(r.json, "error.status"), 403);
                CHECK(strstr(r.body, need_name[rc->need]) != NULL);
            }
            td_reply_finish(&r);
        }
    }
}

/* Writes refused with 401 or 403 stored nothing. */
static void test_refused_writes_store_nothing(td_http *h)
{
    td_reply r;
    use_cred(h, C_ADMIN);
    long before = td_gallery_count(h, "g1");
    CHECK(before >= 2);
    for (int c = C_NONE; c <= C_READ; c++) {
        use_cred(h, (enum cred)c);
        td_http_json(h, "POST", "/v1/galleries/g1/items",
                     "{\"items\":[{\"id\":\"never\",\"vector\":[1,1,0,0]}]}", &r);
        CHECK(r.status == 401 || r.status == 403);
        td_reply_finish(&r);
        td_http_json(h, "DELETE", "/v1/galleries/g1/items/a", NULL, &r);
        CHECK(r.status == 401 || r.status == 403);
        td_reply_finish(&r);
        td_http_json(h, "POST", "/v1/models", "{\"name\":\"never\",\"dim\":4,\"metric\":\"ip\"}",
                     &r);
        CHECK(r.status == 401 || r.status == 403);
        td_reply_finish(&r);
    }
    use_cred(h, C_ADMIN);
    CHECK_EQ(td_gallery_count(h, "g1"), before);
    CHECK_EQ(td_http_json(h, "GET", "/v1/galleries/g1/items/never", NULL, &r), 404);
    td_reply_finish(&r);
    CHECK_EQ(td_http_json(h, "GET", "/v1/galleries/g1/items/a", NULL, &r), 200);
    td_reply_finish(&r);
    CHECK_EQ(td_http_json(h, "GET", "/v1/models/never", NULL, &r), 404);
    td_reply_finish(&r);

    /* A refused request is answered before its body is read. */
    size_t big = 4u << 20;
    char *body = malloc(big + 1);
    REQUIRE(body != NULL);
    memset(body, ' ', big);
    body[0] = '{';
    body[big - 1] = '}';
    body[big] = '\0';
    use_cred(h, C_UNKNOWN);
    double t0 = td_now();
    CHECK_EQ(td_http_json(h, "POST", "/v1/galleries/g1/items", body, &r), 401);
    td_reply_finish(&r);
    CHECK(td_now() - t0 < 10);
    free(body);
}

/* The keys command: its output, errors and exit statuses. */
static void test_keys_command(const td_daemon *d, td_http *h)
{
    const char *data = td_daemon_data_dir(d);
    char *out = NULL;
    td_reply r;

    /* Only the key on stdout. */
    const char *exe = getenv("COMPATD");
    char *cmd = td_fmt("'%s' keys create --scope read --name stdout-only --data '%s' 2>/dev/null",
                    exe, data);
    FILE *p = popen(cmd, "r");
    REQUIRE(p != NULL);
    char line[512] = "", extra[512];
    CHECK(fgets(line, sizeof line, p) != NULL);
    CHECK(fgets(extra, sizeof extra, p) == NULL);
    CHECK_EQ(pclose(p), 0);
    free(cmd);
    line[strcspn(line, "\n")] = '\0';
    CHECK_EQ(strlen(line), 47);
    CHECK_EQ(strncmp(line, "cdk_", 4), 0);
    td_http_set_key(h, line);
    CHECK_EQ(td_http_json(h, "GET", "/v1/galleries", NULL, &r), 200);
    td_reply_finish(&r);

    static const struct {
        const char *args[8];
        int status;
        const char *says;
    } cases[] = {
        {{"keys", "create", "--scope", "root", "--name", "x"}, 2, "--scope must be"},
        {{"keys", "create", "--scope", "read", "--name", "bad name!"}, 2, "--name must be"},
        {{"keys", "create", "--scope", "read"}, 2, "needs --scope and --name"},
        {{"keys", "create", "--scope", "write", "--name", "writer"}, 1, "already exists"},
        {{"keys", "create", "--scope", "admin", "--name", "first"}, 1, "already exists"},
        {{"keys", "revoke", "no-such-key"}, 1, "no API key named no-such-key"},
        {{"keys", "revoke", "9999"}, 1, "no API key named 9999"},
        {{"keys", "revoke"}, 2, "one NAME or ID"},
        {{"keys", "rotate"}, 2, "unknown keys command"},
        {{"keys"}, 2, "usage"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const char *args[12];
        size_t n = 0;
        for (; cases[i].args[n]; n++)
            args[n] = cases[i].args[n];
        if (n > 1) {
            args[n++] = "--data";
            args[n++] = data;
        }
        args[n] = NULL;
        int st = td_run_compatd(args, &out);
        if (st != cases[i].status || !out || !strstr(out, cases[i].says))
            fprintf(stderr, "keys case %zu: status %d: %s\n", i, st, out ? out : "");
        CHECK_EQ(st, cases[i].status);
        CHECK(out && strstr(out, cases[i].says));
        free(out);
    }
    const char *nodata[] = {"keys", "list", "--data", "/nonexistent/compatd-data", NULL};
    CHECK_EQ(td_run_compatd(nodata, &out), 1);
    CHECK(out && strstr(out, "no compatd database"));
    free(out);

    /* list: every key with its prefix, never a key. */
    const char *list[] = {"keys", "list", "--data", data, NULL};
    CHECK_EQ(td_run_compatd(list, &out), 0);
    REQUIRE(out != NULL);
    CHECK(strstr(out, "id") && strstr(out, "prefix") && strstr(out, "revoked_at"));
    static const char *const names[] = {"first", "reader", "writer", "admin", "stdout-only"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        CHECK(strstr(out, names[i]) != NULL);
    for (int c = C_REVOKED; c <= C_ADMIN; c++) {
        CHECK(strstr(out, keys[c]) == NULL);
        char prefix[9];
        snprintf(prefix, sizeof prefix, "%s", keys[c]);
        CHECK(strstr(out, prefix) != NULL);
    }
    CHECK(strstr(out, line) == NULL);
    free(out);

    /* Revoking by id, while the daemon serves: refused from then on. */
    td_http_set_key(h, line);
    CHECK_EQ(td_http_json(h, "GET", "/v1/galleries", NULL, &r), 200);
    td_reply_finish(&r);
    const char *by_id[] = {"keys", "revoke", "5", "--data", data, NULL};
    CHECK_EQ(td_run_compatd(by_id, &out), 0);
    CHECK(out && strstr(out, "stdout-only"));
    free(out);
    CHECK_EQ(td_http_json(h, "GET", "/v1/galleries", NULL, &r), 401);
    td_reply_finish(&r);
    CHECK_EQ(td_run_compatd(by_id, &out), 0);
    CHECK(out && strstr(out, "already revoked"));
    free(out);
    memset(line, 0, sizeof line);
}

/* --metrics-public opens /metrics and nothing else. */
static void test_metrics_public(td_daemon *d, td_http *h)
{
    td_reply r;
    const char *args[] = {"--metrics-public", NULL};
    CHECK_EQ(td_daemon_stop(d), 0);
    REQUIRE(td_daemon_start(d, args));
    td_http_set_header(h, NULL);
    CHECK_EQ(td_http_json(h, "GET", "/metrics", NULL, &r), 200);
    CHECK(strstr(r.body, "compatd_") != NULL);
    td_reply_finish(&r);
    for (size_t i = 0; i < N_ROUTES; i++) {
        if (routes[i].need == OPEN || strcmp(routes[i].path, "/metrics") == 0)
            continue;
        CHECK_EQ(send_route(h, &routes[i], &r), 401);
        td_reply_finish(&r);
    }
    CHECK_EQ(td_daemon_stop(d), 0);
}

/* Keys from --key-file: stored at start, hashed; bad lines stop the start. */
static void test_key_file(td_daemon *d, td_http *h)
{
    td_reply r;
    char *out = NULL;
    const char *dir = td_daemon_dir(d);
    const char *kf_admin = "kf-admin-0123456789abcdefghijklmnopqrstuvwxyz";
    const char *kf_read = "S2V5c0Zyb21BU2VjcmV0MDEyMzQ1Njc4OWFiY2RlZg==";
    char *path = td_fmt("%s/keys", dir);
    FILE *f = fopen(path, "w");
    REQUIRE(f != NULL);
    fprintf(f, "# name scope key\n\nkf-admin admin %s\n  kf-read\tread   %s  \n"
               "writer write %s\n", kf_admin, kf_read, "another-key-for-an-existing-name-0000");
    CHECK_EQ(fclose(f), 0);
    const char *args[] = {"--key-file", path, NULL};
    REQUIRE(td_daemon_start(d, args));
    td_http_set_key(h, kf_admin);
    CHECK_EQ(td_http_json(h, "POST", "/v1/models",
                          "{\"name\":\"m-kf\",\"dim\":4,\"metric\":\"l2\"}", &r), 201);
    td_reply_finish(&r);
    td_http_set_key(h, kf_read);
    CHECK_EQ(td_http_json(h, "GET", "/v1/models/m-kf", NULL, &r), 200);
    td_reply_finish(&r);
    CHECK_EQ(td_http_json(h, "DELETE", "/v1/galleries/g1", NULL, &r), 403);
    td_reply_finish(&r);
    /* A name already stored keeps its stored key. */
    td_http_set_key(h, "another-key-for-an-existing-name-0000");
    CHECK_EQ(td_http_json(h, "GET", "/v1/models", NULL, &r), 401);
    td_reply_finish(&r);
    use_cred(h, C_WRITE);
    CHECK_EQ(td_http_json(h, "GET", "/v1/models", NULL, &r), 200);
    td_reply_finish(&r);
    CHECK_EQ(td_daemon_stop(d), 0);

    /* The stored rows hold no key text. */
    const char *list[] = {"keys", "list", "--data", td_daemon_data_dir(d), NULL};
    CHECK_EQ(td_run_compatd(list, &out), 0);
    CHECK(out && strstr(out, "kf-admin") && strstr(out, "kf-read"));
    CHECK(out && !strstr(out, kf_admin) && !strstr(out, kf_read));
    free(out);

    /* Started again with the same file: nothing new, nothing fails. */
    REQUIRE(td_daemon_start(d, args));
    td_http_set_key(h, kf_admin);
    CHECK_EQ(td_http_json(h, "GET", "/v1/models", NULL, &r), 200);
    td_reply_finish(&r);
    CHECK_EQ(td_daemon_stop(d), 0);

    static const struct {
        const char *text;
        const char *says;
    } bad[] = {
        {"just-a-name\n", ":1: expected \"name scope key\""},
        {"# ok\nn1 read k-0123456789abcdefghijklmnopqrstuvwxyz extra\n", ":2: expected"},
        {"n1 root k-0123456789abcdefghijklmnopqrstuvwxyz\n", ":1: the scope must be"},
        {"bad/name read k-0123456789abcdefghijklmnopqrstuvwxyz\n", ":1: the name must be"},
        {"n1 read short\n", ":1: the key must be"},
        {"n1 read k-0123456789abcdefghijklmnopqrstuvwxyz\n"
         "n1 write k-0123456789abcdefghijklmnopqrstuvwxyZ\n", ":2: the same name as line 1"},
        {"n1 read k-0123456789abcdefghijklmnopqrstuvwxyz\n"
         "n2 write k-0123456789abcdefghijklmnopqrstuvwxyz\n", ":2: the same key as line 1"},
        {"n9 read kf-admin-0123456789abcdefghijklmnopqrstuvwxyz\n", "already stored"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        f = fopen(path, "w");
        REQUIRE(f != NULL);
        fputs(bad[i].text, f);
        CHECK_EQ(fclose(f), 0);
        const char *serve[] = {"serve", "--listen", "127.0.0.1:0", "--data",
                               td_daemon_data_dir(d), "--key-file", path, NULL};
        int st = td_run_compatd(serve, &out);
        if (st != 2 || !out || !strstr(out, bad[i].says))
            fprintf(stderr, "bad key file %zu: status %d: %s\n", i, st, out ? out : "");
        CHECK_EQ(st, 2);
        CHECK(out && strstr(out, bad[i].says));
        /* Never the key in the message. */
        CHECK(out && !strstr(out, "k-0123456789abcdefghijklmnopqrstuvwxyz"));
        free(out);
    }
    /* Nothing of a bad file was stored. */
    CHECK_EQ(td_run_compatd(list, &out), 0);
    CHECK(out && !list_has_name(out, "n1") && !list_has_name(out, "n2") &&
          !list_has_name(out, "n9"));
    free(out);
    const char *missing[] = {"serve", "--listen", "127.0.0.1:0", "--data",
                             td_daemon_data_dir(d), "--key-file", "/nonexistent/keys", NULL};
    CHECK_EQ(td_run_compatd(missing, &out), 2);
    CHECK(out && strstr(out, "cannot read --key-file /nonexistent/keys"));
    free(out);
    free(path);
}

/* Without a key, serve refuses a non-loopback address; with one it starts. */
static void test_loopback_rule(void)
{
    td_daemon *d = td_daemon_create();
    REQUIRE(d != NULL);
    char *out = NULL;
    td_reply r;
    static const char *const refused[] = {"0.0.0.0:0", ":0", "[::]:0"};
    for (size_t i = 0; i < sizeof refused / sizeof refused[0]; i++) {
        const char *serve[] = {"serve", "--listen", refused[i], "--data",
                               td_daemon_data_dir(d), NULL};
        int st = td_run_compatd(serve, &out);
        CHECK_EQ(st, 2);
        CHECK(out && strstr(out, "refusing to listen on") && strstr(out, "without API keys"));
        /* One line. */
        CHECK(out && strchr(out, '\n') == out + strlen(out) - 1);
        if (st != 2)
            fprintf(stderr, "serve --listen %s: %d: %s\n", refused[i], st, out ? out : "");
        free(out);
    }
    /* A data directory whose keys are all revoked still has keys. */
    REQUIRE(td_create_key(d, "only", "admin", keys[0], sizeof keys[0]) == 0);
    const char *args[] = {"--listen", "0.0.0.0:0", NULL};
    REQUIRE(td_daemon_start(d, args));
    td_http *h = td_http_create(d);
    REQUIRE(h != NULL);
    CHECK_EQ(td_http_json(h, "GET", "/v1/models", NULL, &r), 401);
    td_reply_finish(&r);
    td_http_set_key(h, keys[0]);
    CHECK_EQ(td_http_json(h, "GET", "/v1/models", NULL, &r), 200);
    td_reply_finish(&r);
    td_http_destroy(h);
    CHECK_EQ(td_daemon_stop(d), 0);
    td_daemon_destroy(d);

    /* A key file is how a container gets its keys: a fresh data directory
     * with --key-file may listen on 0.0.0.0. */
    d = td_daemon_create();
    REQUIRE(d != NULL);
    char *path = td_fmt("%s/keys", td_daemon_dir(d));
    FILE *f = fopen(path, "w");
    REQUIRE(f != NULL);
    fputs("ops admin container-key-0123456789abcdefghijklmnop\n", f);
    CHECK_EQ(fclose(f), 0);
    const char *kargs[] = {"--listen", "0.0.0.0:0", "--key-file", path, NULL};
    REQUIRE(td_daemon_start(d, kargs));
    h = td_http_create(d);
    REQUIRE(h != NULL);
    td_http_set_key(h, "container-key-0123456789abcdefghijklmnop");
    CHECK_EQ(td_http_json(h, "GET", "/v1/models", NULL, &r), 200);
    td_reply_finish(&r);
    td_http_destroy(h);
    CHECK_EQ(td_daemon_stop(d), 0);
    td_daemon_destroy(d);
    free(path);
}

int main(void)
{
    td_daemon *d = td_daemon_create();
    REQUIRE(d != NULL);
    REQUIRE(td_daemon_start(d, NULL));
    td_http *h = td_http_create(d);
    REQUIRE(h != NULL);
    td_http_set_timeout(h, 60);

    make_fixtures(h);
    test_open_mode(h);
    test_first_key_revoked(d, h);

    REQUIRE(td_create_key(d, "reader", "read", keys[C_READ], sizeof keys[C_READ]) == 0);
    REQUIRE(td_create_key(d, "writer", "write", keys[C_WRITE], sizeof keys[C_WRITE]) == 0);
    REQUIRE(td_create_key(d, "admin", "admin", keys[C_ADMIN], sizeof keys[C_ADMIN]) == 0);
    /* Valid-looking, never stored. */
    snprintf(keys[C_UNKNOWN], sizeof keys[C_UNKNOWN], "cdk_%s",
             "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA");
    test_matrix(h);
    test_refused_writes_store_nothing(h);
    test_keys_command(d, h);
    test_metrics_public(d, h);
    test_key_file(d, h);
    td_http_destroy(h);
    td_daemon_destroy(d);

    test_loopback_rule();
    return check_exit();
}
