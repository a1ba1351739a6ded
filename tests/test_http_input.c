/*
 * test_http_input.c - request bodies that are valid JSON but hostile, and
 * searches whose replies would be huge, against the real daemon.
 *
 * Duplicate keys, at any depth, are refused with 400 duplicate_key naming
 * the key and its object's path, and store nothing.  Metadata keeps its
 * own text: numbers a double cannot hold (2^53 + 1, 12345678901234567891,
 * -0, 1e-400) come back byte for byte from GET item and from search; a
 * number a double overflows (1e400) is refused.  Vector components whose
 * ip or l2 scores would overflow float32 (3e38) are refused; just inside
 * the bound the scores are finite and right; cosine takes any finite
 * value.  compatible_with chains stop at 64 links, and a 64-link chain is
 * followed to its end.  A search asking for more than --max-results rows
 * (or, with metadata, more than --max-result-metadata allows) gets 400
 * result_too_large before any work; a large one that is allowed leaves
 * the daemon's peak and resident memory within stated bounds (checked
 * when the daemon runs without a sanitizer, whose allocator keeps its
 * own books).
 */
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>

#include "check.h"
#include "daemon.h"

/* --- duplicate keys ----------------------------------------------------- */

static void test_duplicate_keys(td_http *h)
{
    td_reply r;
    td_http_call(h, &r, 201, "POST", "/v1/models", "{\"name\":\"dk\",\"dim\":2,\"metric\":\"ip\"}");
    td_reply_finish(&r);
    td_http_call(h, &r, 201, "POST", "/v1/galleries", "{\"name\":\"dk\",\"model\":\"dk\"}");
    td_reply_finish(&r);
    /* An object of 20 members, the last one repeating the first: the
     * sorted path of the check. */
    td_text wide = {0};
    td_text_append(&wide, "{\"items\":[{\"id\":\"w\",\"vector\":[1,0],\"metadata\":{");
    for (int i = 0; i < 19; i++)
        td_text_append(&wide, "\"k%02d\":%d,", i, i);
    td_text_append(&wide, "\"k00\":0}}]}");
    const struct {
        const char *path, *body;
        const char *says;       /* in the message */
    } cases[] = {
        {"/v1/models", "{\"name\":\"a\",\"name\":\"b\",\"dim\":2,\"metric\":\"ip\"}",
         "\"name\" in the object at $"},
        {"/v1/galleries/dk/items", "{\"items\":[{\"id\":\"x\",\"id\":\"y\",\"vector\":[1,0]}]}",
         "\"id\" in the object at $.items[0]"},
        {"/v1/galleries/dk/items",
         "{\"items\":[{\"id\":\"x\",\"vector\":[1,0]},{\"id\":\"y\",\"vector\":[1,0],"
         "\"metadata\":{\"a\":{\"b\":1,\"b\":2}}}]}",
         "\"b\" in the object at $.items[1].metadata.a"},
        {"/v1/galleries/dk/items", wide.s, "\"k00\" in the object at $.items[0].metadata"},
        /* The same name spelled with an escape. */
        {"/v1/galleries/dk/items",
         "{\"items\":[{\"id\":\"x\",\"vector\":[1,0],\"metadata\":{\"a\":1,\"\\u0061\":2}}]}",
         "\"a\" in the object at $.items[0].metadata"},
        {"/v1/galleries/dk/search", "{\"vector\":[1,0],\"k\":1,\"k\":2}", "\"k\""},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        long st = td_http_call(h, &r, 400, "POST", cases[i].path, cases[i].body);
        const char *msg = td_reply_error_message(&r);
        CHECK_EQ(st, 400);
        CHECK_STREQ(td_reply_error_code(&r), "duplicate_key");
        if (!msg || !strstr(msg, cases[i].says))
            fprintf(stderr, "case %zu: message %s, want \"%s\" in it\n", i,
                    msg ? msg : "(none)", cases[i].says);
        CHECK(msg && strstr(msg, cases[i].says));
        td_reply_finish(&r);
    }
    CHECK_EQ(td_gallery_count(h, "dk"), 0);
    CHECK_EQ(td_http_json(h, "GET", "/v1/models/a", NULL, &r), 404);
    td_reply_finish(&r);
    /* Distinct names, and the same name in sibling objects, are fine. */
    td_http_call(h, &r, 200, "POST", "/v1/galleries/dk/items",
                 "{\"items\":[{\"id\":\"x\",\"vector\":[1,0],\"metadata\":{\"a\":{\"b\":1},"
                 "\"c\":{\"b\":2}}}]}");
    CHECK_EQ(r.status, 200);
    td_reply_finish(&r);
    free(wide.s);
}

/* --- control characters ------------------------------------------------ */

/* Raw control bytes between tokens or inside strings (cJSON would take
 * them for white space) are refused, NUL included: the fuzzer's finding
 * was such a body, which put the metadata scanner past the buffer. */
static void test_control_bytes(td_http *h)
{
    static const struct {
        const char *body;
        size_t len;
        const char *says;
    } cases[] = {
#define BODY(s, says) {s, sizeof s - 1, says}
        BODY("{\"items\":\x19\0[{\"id\":\"x0\",\"metadata\":{\"n\":0},\"vector\":[1,0]}]}",
             "(0x19) at byte 9"),
        BODY("{\"items\":[{\"id\":\"x0\",\"metadata\":\x01{\"n\":0},\"vector\":[1,0]}]}",
             "(0x01) at byte 32"),
        BODY("{\"items\":[{\"id\":\"x\x7f\x02\",\"vector\":[1,0]}]}", "(0x02) at byte 19"),
        BODY("{\"items\":[{\"id\":\"x0\",\"vector\":[1,0]}]}\0", "(0x00) at byte 38"),
#undef BODY
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        td_request req = {"POST", "/v1/galleries/dk/items", "application/json",
                          cases[i].body, cases[i].len, false};
        td_reply r;
        long st = td_http_send(h, &req, &r);
        const char *msg = td_reply_error_message(&r);
        CHECK_EQ(st, 400);
        CHECK_STREQ(td_reply_error_code(&r), "invalid_json");
        if (!msg || !strstr(msg, cases[i].says))
            fprintf(stderr, "case %zu: message %s, want \"%s\" in it\n", i,
                    msg ? msg : "(none)", cases[i].says);
        CHECK(msg && strstr(msg, cases[i].says));
        td_reply_finish(&r);
    }
    /* JSON's own white space is still white space. */
    td_request ok = {"POST", "/v1/galleries/dk/items", "application/json",
                     "{\"items\":\t[\r\n{\"id\":\"cw\", \"vector\":[1,0]}]}", 0, false};
    ok.len = strlen(ok.body);
    td_reply r;
    CHECK_EQ(td_http_send(h, &ok, &r), 200);
    td_reply_finish(&r);
}

/* --- metadata text ------------------------------------------------------ */

/* The text of "metadata": in body, up to its matching brace; malloc'd. */
static char *metadata_text(const char *body)
{
    const char *p = body ? strstr(body, "\"metadata\":{") : NULL;
    if (!p)
        return NULL;
    p += strlen("\"metadata\":");
    int depth = 0;
    const char *q = p;
    do {
        if (*q == '"') {
            for (q++; *q != '"'; q++)
                if (*q == '\\')
                    q++;
        } else if (*q == '{') {
            depth++;
        } else if (*q == '}') {
            depth--;
        }
        q++;
    } while (depth > 0 && *q);
    return td_fmt("%.*s", (int)(q - p), p);
}

static void test_metadata_exact(td_http *h)
{
    td_reply r;
    td_http_call(h, &r, 201, "POST", "/v1/models", "{\"name\":\"md\",\"dim\":2,\"metric\":\"l2\"}");
    td_reply_finish(&r);
    td_http_call(h, &r, 201, "POST", "/v1/galleries", "{\"name\":\"md\",\"model\":\"md\"}");
    td_reply_finish(&r);
    const struct {
        const char *sent;   /* the metadata as sent */
        const char *kept;   /* as every reply must show it */
    } cases[] = {
        {"{\"big\":9007199254740993,\"huge\":12345678901234567891,\"neg0\":-0,"
         "\"tiny\":1e-400,\"f\":0.10,\"e\":2E+3,\"s\":\"\\u00e9\\n\",\"n\":[-0.0,1.0e0]}",
         "{\"big\":9007199254740993,\"huge\":12345678901234567891,\"neg0\":-0,"
         "\"tiny\":1e-400,\"f\":0.10,\"e\":2E+3,\"s\":\"\\u00e9\\n\",\"n\":[-0.0,1.0e0]}"},
        /* White space between tokens goes; inside strings it stays. */
        {"{ \"a\" :\n [ 18446744073709551617 , { \"b c\" : true } ] ,\t\"d\": null }",
         "{\"a\":[18446744073709551617,{\"b c\":true}],\"d\":null}"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *body = td_fmt("{\"items\":[{\"id\":\"m%zu\",\"label\":\"x\",\"vector\":[%zu,0],"
                            "\"metadata\":%s}]}", i, i, cases[i].sent);
        td_http_call(h, &r, 200, "POST", "/v1/galleries/md/items", body);
        CHECK_EQ(r.status, 200);
        td_reply_finish(&r);
        free(body);

        char *path = td_fmt("/v1/galleries/md/items/m%zu", i);
        td_http_call(h, &r, 200, "GET", path, NULL);
        char *got = metadata_text(r.body);
        CHECK_STREQ(got, cases[i].kept);
        free(got);
        td_reply_finish(&r);
        free(path);

        body = td_fmt("{\"vector\":[%zu,0],\"k\":1,\"include\":[\"metadata\"]}", i);
        td_http_call(h, &r, 200, "POST", "/v1/galleries/md/search", body);
        char *id = td_fmt("m%zu", i);
        CHECK_STREQ(td_json_str(r.json, "results.0.0.id"), id);
        free(id);
        got = metadata_text(r.body);
        CHECK_STREQ(got, cases[i].kept);
        free(got);
        td_reply_finish(&r);
        free(body);
    }
    /* A number beyond a double's range has no value to keep. */
    td_http_call(h, &r, 400, "POST", "/v1/galleries/md/items",
                 "{\"items\":[{\"id\":\"inf\",\"vector\":[1,0],\"metadata\":{\"x\":1e400}}]}");
    CHECK_EQ(r.status, 400);
    CHECK_STREQ(td_reply_error_code(&r), "invalid_metadata");
    td_reply_finish(&r);
    CHECK_EQ(td_gallery_count(h, "md"), 2);
}

/* --- huge vector components --------------------------------------------- */

static void test_huge_components(td_http *h)
{
    /* 2.2e18^2 * 2 = 9.68e36, within the 1e37 bound; 3e38 squares to
     * infinity in float32. */
    static const char *const metrics[] = {"ip", "l2", "cosine"};
    const double a = 2.2e18, norm2 = 2 * a * a;
    td_reply r;
    for (size_t m = 0; m < 3; m++) {
        const char *metric = metrics[m];
        bool bounded = strcmp(metric, "cosine") != 0;
        char *path = td_fmt("/v1/galleries/hc-%s/items", metric);
        char *search = td_fmt("/v1/galleries/hc-%s/search", metric);
        td_http_jsonf(h, &r, "POST", "/v1/models",
                      "{\"name\":\"hc-%s\",\"dim\":4,\"metric\":\"%s\"}", metric, metric);
        CHECK_EQ(r.status, 201);
        td_reply_finish(&r);
        td_http_jsonf(h, &r, "POST", "/v1/galleries",
                      "{\"name\":\"hc-%s\",\"model\":\"hc-%s\"}", metric, metric);
        CHECK_EQ(r.status, 201);
        td_reply_finish(&r);

        /* 3e38: refused for ip and l2 (upsert, search, base64 too). */
        const float big[4] = {3e38f, 0, 0, 0};
        char *b64 = td_b64_floats(big, 4);
        char *bodies[3] = {
            td_fmt("{\"items\":[{\"id\":\"big\",\"vector\":[3e38,0,0,0]}]}"),
            td_fmt("{\"items\":[{\"id\":\"big\",\"vector_b64\":\"%s\"}]}", b64),
            td_fmt("{\"vector\":[3e38,1,0,0],\"k\":2}"),
        };
        for (int b = 0; b < 3; b++) {
            td_http_json(h, "POST", b < 2 ? path : search, bodies[b], &r);
            if (bounded) {
                CHECK_EQ(r.status, 400);
                CHECK_STREQ(td_reply_error_code(&r), "invalid_vector");
            } else {
                /* Cosine normalises in double: any finite value works;
                 * the search finds nothing yet but must not fail. */
                CHECK_EQ(r.status, 200);
            }
            td_reply_finish(&r);
            free(bodies[b]);
        }
        free(b64);
        if (!bounded) {
            char *del = td_fmt("/v1/galleries/hc-%s/items/big", metric);
            td_http_call(h, &r, 204, "DELETE", del, NULL);
            td_reply_finish(&r);
            free(del);
        }

        /* Just inside the bound: accepted, and every score is a finite
         * number matching the reference. */
        td_http_jsonf(h, &r, "POST", path,
                      "{\"items\":[{\"id\":\"p\",\"vector\":[%.17g,%.17g,0,0]},"
                      "{\"id\":\"n\",\"vector\":[%.17g,%.17g,0,0]}]}", a, a, -a, -a);
        CHECK_EQ(r.status, 200);
        td_reply_finish(&r);
        td_http_jsonf(h, &r, "POST", search, "{\"vector\":[%.17g,%.17g,0,0],\"k\":2}", a, a);
        CHECK_EQ(r.status, 200);
        const cJSON *row = td_json_at(r.json, "results.0");
        CHECK_EQ(cJSON_GetArraySize(row), 2);
        double want_p = m == 0 ? norm2 : m == 1 ? 0 : 1;
        double want_n = m == 0 ? -norm2 : m == 1 ? 4 * norm2 : -1;
        CHECK_STREQ(td_json_str(r.json, "results.0.0.id"), "p");
        CHECK_STREQ(td_json_str(r.json, "results.0.1.id"), "n");
        CHECK(cJSON_IsNumber(td_json_at(r.json, "results.0.0.score")));
        CHECK(cJSON_IsNumber(td_json_at(r.json, "results.0.1.score")));
        double sp = td_json_num(r.json, "results.0.0.score");
        double sn = td_json_num(r.json, "results.0.1.score");
        CHECK(isfinite(sp) && isfinite(sn));
        CHECK(fabs(sp - want_p) <= 1e-5 * fmax(1, fabs(want_p)));
        CHECK(fabs(sn - want_n) <= 1e-5 * fmax(1, fabs(want_n)));
        if (!(fabs(sn - want_n) <= 1e-5 * fmax(1, fabs(want_n))))
            fprintf(stderr, "%s: scores %s\n", metric, r.body);
        td_reply_finish(&r);
        free(path);
        free(search);
    }
}

/* --- compatible_with chains --------------------------------------------- */

static void test_compat_chain(td_http *h)
{
    td_reply r;
    td_http_call(h, &r, 404, "POST", "/v1/models",
                 "{\"name\":\"orphan\",\"dim\":2,\"metric\":\"ip\",\"compatible_with\":\"nobody\"}");
    CHECK_EQ(r.status, 404);
    CHECK(td_reply_error_message(&r) && strstr(td_reply_error_message(&r), "does not exist"));
    td_reply_finish(&r);

    /* c0 <- c1 <- ... <- c64: c64's chain has 64 links, the most. */
    td_http_call(h, &r, 201, "POST", "/v1/models", "{\"name\":\"c0\",\"dim\":2,\"metric\":\"ip\"}");
    td_reply_finish(&r);
    for (int i = 1; i <= 64; i++) {
        td_http_jsonf(h, &r, "POST", "/v1/models",
                      "{\"name\":\"c%d\",\"dim\":2,\"metric\":\"ip\",\"compatible_with\":\"c%d\"}",
                      i, i - 1);
        td_reply_show_if(&r, 201, "chain model");
        CHECK_EQ(r.status, 201);
        td_reply_finish(&r);
    }
    td_http_call(h, &r, 400, "POST", "/v1/models",
                 "{\"name\":\"c65\",\"dim\":2,\"metric\":\"ip\",\"compatible_with\":\"c64\"}");
    CHECK_EQ(r.status, 400);
    CHECK_STREQ(td_reply_error_code(&r), "invalid_argument");
    CHECK(td_reply_error_message(&r) && strstr(td_reply_error_message(&r), "more than 64"));
    td_reply_finish(&r);
    CHECK_EQ(td_http_json(h, "GET", "/v1/models/c65", NULL, &r), 404);
    td_reply_finish(&r);

    /* The walk follows all 64 links: c64 is declared compatible with c0,
     * so a declared-policy gallery of c0 takes its queries. */
    td_http_call(h, &r, 201, "POST", "/v1/galleries", "{\"name\":\"cg\",\"model\":\"c0\"}");
    td_reply_finish(&r);
    td_http_call(h, &r, 200, "GET", "/v1/galleries/cg", NULL);
    const cJSON *qm = td_json_at(r.json, "query_models"), *o;
    int seen = 0;
    cJSON_ArrayForEach(o, qm) {
        const char *name = td_json_str(o, "model");
        if (name && strcmp(name, "c64") == 0) {
            CHECK_STREQ(td_json_str(o, "status"), "declared");
            seen++;
        }
    }
    CHECK_EQ(seen, 1);
    td_reply_finish(&r);
}

/* --- result size -------------------------------------------------------- */

/* A search body of nq copies of a dim-4 query. */
static char *queries_body(size_t nq, int k, const char *include)
{
    td_text t = {0};
    td_text_append(&t, "{\"k\":%d,%s\"vectors\":[", k, include);
    for (size_t i = 0; i < nq; i++)
        td_text_append(&t, "%s[%zu,1,0,0]", i ? "," : "", i % 7);
    td_text_append(&t, "]}");
    return t.s;
}

/* The daemon here runs with --max-results 100, --max-metadata 256 and
 * --max-result-metadata 2560 (10 rows with metadata). */
static void test_result_limits(td_http *h)
{
    td_reply r;
    td_http_call(h, &r, 201, "POST", "/v1/models", "{\"name\":\"rl\",\"dim\":4,\"metric\":\"ip\"}");
    td_reply_finish(&r);
    td_http_call(h, &r, 201, "POST", "/v1/galleries", "{\"name\":\"rl\",\"model\":\"rl\"}");
    td_reply_finish(&r);
    td_text items = {0};
    td_text_append(&items, "{\"items\":[");
    for (int i = 0; i < 60; i++)
        td_text_append(&items, "%s{\"id\":\"i%d\",\"metadata\":{\"n\":%d},\"vector\":[%d,1,0,0]}",
                       i ? "," : "", i, i, i % 5);
    td_text_append(&items, "]}");
    td_http_call(h, &r, 200, "POST", "/v1/galleries/rl/items", items.s);
    td_reply_finish(&r);
    free(items.s);

    const struct {
        size_t nq;
        int k;
        const char *include;
        long status;
        const char *says;
    } cases[] = {
        {2, 50, "", 200, NULL},
        {3, 34, "", 400, "at most 100 results (--max-results); this one asks for 3 queries x k 34 = 102"},
        {2, 5, "\"include\":[\"metadata\"],", 200, NULL},
        {1, 11, "\"include\":[\"metadata\"],", 400,
         "with metadata a search returns at most 10 results"},
        {1, 11, "\"include\":[\"label\"],", 200, NULL},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *body = queries_body(cases[i].nq, cases[i].k, cases[i].include);
        td_http_call(h, &r, cases[i].status, "POST", "/v1/galleries/rl/search", body);
        CHECK_EQ(r.status, cases[i].status);
        if (cases[i].says) {
            CHECK_STREQ(td_reply_error_code(&r), "result_too_large");
            const char *msg = td_reply_error_message(&r);
            if (!msg || !strstr(msg, cases[i].says))
                fprintf(stderr, "case %zu: %s\n", i, msg ? msg : r.body);
            CHECK(msg && strstr(msg, cases[i].says));
        } else {
            CHECK_EQ(cJSON_GetArraySize(td_json_at(r.json, "results")), (int)cases[i].nq);
            CHECK_EQ(cJSON_GetArraySize(td_json_at(r.json, "results.0")), cases[i].k);
        }
        td_reply_finish(&r);
        free(body);
    }
}

/* A field of /proc/PID/status in kB ("VmHWM", "VmRSS"), or -1. */
static long proc_kb(pid_t pid, const char *field)
{
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
    FILE *f = fopen(path, "r");
    long kb = -1;
    size_t n = strlen(field);
    while (f && fgets(line, sizeof line, f))
        if (strncmp(line, field, n) == 0 && line[n] == ':')
            kb = atol(line + n + 1);
    if (f)
        fclose(f);
    return kb;
}

/* True when the daemon has a sanitizer's runtime mapped. */
static bool sanitized(pid_t pid)
{
    char path[64], line[512];
    snprintf(path, sizeof path, "/proc/%d/maps", (int)pid);
    FILE *f = fopen(path, "r");
    bool found = false;
    while (f && !found && fgets(line, sizeof line, f))
        found = strstr(line, "libasan") || strstr(line, "libtsan");
    if (f)
        fclose(f);
    return found;
}

#define MEM_ITEMS 2000
#define MEM_QUERIES 300     /* x k 1000: 300,000 rows */
#define MEM_PEAK_MB 100     /* peak growth allowed for them (about 45 seen) */
#define MEM_KEEP_MB 8       /* growth allowed to stay after (none seen; before
                               the fix: 10000 x 1000 was answered, 5.5 GB) */

/*
 * Default limits: 10,000 queries x k 1000 is refused before it costs
 * memory; 300 x 1000 with labels is answered, the peak stays within
 * MEM_PEAK_MB over the start and the resident size comes back to within
 * MEM_KEEP_MB of it.
 */
static void test_result_memory(void)
{
    td_daemon *d;
    td_http *h;
    const char *args[] = {NULL};
    REQUIRE(td_daemon_start_client(args, &d, &h));
    td_http_set_timeout(h, 120);
    pid_t pid = td_daemon_pid(d);
    td_reply r;
    td_http_call(h, &r, 201, "POST", "/v1/models", "{\"name\":\"mm\",\"dim\":4,\"metric\":\"l2\"}");
    td_reply_finish(&r);
    td_http_call(h, &r, 201, "POST", "/v1/galleries", "{\"name\":\"mm\",\"model\":\"mm\"}");
    td_reply_finish(&r);
    td_text items = {0};
    td_text_append(&items, "{\"items\":[");
    for (int i = 0; i < MEM_ITEMS; i++)
        td_text_append(&items, "%s{\"id\":\"item-%05d\",\"label\":\"label-%d\",\"vector\":[%d,%d,0,1]}",
                       i ? "," : "", i, i % 97, i % 41, i % 43);
    td_text_append(&items, "]}");
    td_http_call(h, &r, 200, "POST", "/v1/galleries/mm/items", items.s);
    td_reply_finish(&r);
    free(items.s);
    /* A small search first, so that what every search needs once is in
     * the baseline. */
    char *body = queries_body(10, 1000, "\"include\":[\"label\"],");
    td_http_call(h, &r, 200, "POST", "/v1/galleries/mm/search", body);
    td_reply_finish(&r);
    free(body);
    long base_rss = proc_kb(pid, "VmRSS"), base_hwm = proc_kb(pid, "VmHWM");
    REQUIRE(base_rss > 0 && base_hwm > 0);

    body = queries_body(10000, 1000, "\"include\":[\"label\",\"metadata\"],");
    td_http_call(h, &r, 400, "POST", "/v1/galleries/mm/search", body);
    CHECK_STREQ(td_reply_error_code(&r), "result_too_large");
    CHECK(td_reply_error_message(&r) &&
          strstr(td_reply_error_message(&r), "10000 queries x k 1000 = 10000000"));
    td_reply_finish(&r);
    free(body);

    body = queries_body(MEM_QUERIES, 1000, "\"include\":[\"label\"],");
    td_http_call(h, &r, 200, "POST", "/v1/galleries/mm/search", body);
    CHECK_EQ(cJSON_GetArraySize(td_json_at(r.json, "results")), MEM_QUERIES);
    CHECK_EQ(cJSON_GetArraySize(td_json_at(r.json, "results.299")), 1000);
    CHECK(td_json_str(r.json, "results.299.999.label") != NULL);
    td_reply_finish(&r);
    free(body);
    /* The connection is kept alive: the daemon has freed the reply once
     * it answers the next request on it. */
    td_http_call(h, &r, 200, "GET", "/healthz", NULL);
    td_reply_finish(&r);
    long hwm = proc_kb(pid, "VmHWM"), rss = proc_kb(pid, "VmRSS");
    fprintf(stderr, "daemon memory: start %ld kB (peak %ld kB), after %d x 1000 rows: "
            "peak %ld kB, resident %ld kB\n", base_rss, base_hwm, MEM_QUERIES, hwm, rss);
    if (sanitized(pid)) {
        fprintf(stderr, "daemon runs under a sanitizer: memory bounds not checked\n");
    } else {
        CHECK(hwm - base_rss < MEM_PEAK_MB * 1024L);
        CHECK(rss - base_rss < MEM_KEEP_MB * 1024L);
    }
    td_http_destroy(h);
    CHECK_EQ(td_daemon_stop(d), 0);
    td_daemon_destroy(d);
}

int main(void)
{
    td_daemon *d;
    td_http *h;
    const char *args[] = {"--max-results", "100", "--max-metadata", "256",
                          "--max-result-metadata", "2560", NULL};
    REQUIRE(td_daemon_start_client(args, &d, &h));
    test_duplicate_keys(h);
    test_metadata_exact(h);
    test_control_bytes(h);
    test_huge_components(h);
    test_compat_chain(h);
    test_result_limits(h);
    td_http_destroy(h);
    CHECK_EQ(td_daemon_stop(d), 0);
    td_daemon_destroy(d);
    test_result_memory();
    return check_exit();
}
