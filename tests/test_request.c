/*
 * test_request.c - the request readers (server/request.c) through the
 * handlers that use them, called directly on an engine in a temporary
 * directory, with strdup failing on demand (linked with
 * -Wl,--wrap=strdup): a label given as a number is copied, and a copy
 * that fails must refuse the request (503), never store the item without
 * its label.
 */
#include <ftw.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "api.h"
#include "check.h"
#include "route.h"

/* strdup of the text fail_text fails while fail_text is set. */
static const char *fail_text;

char *__real_strdup(const char *s);
char *__wrap_strdup(const char *s);
char *__wrap_strdup(const char *s)
{
    if (fail_text && strcmp(s, fail_text) == 0)
        return NULL;
    return __real_strdup(s);
}

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    return remove(path);
}

/* POSTs body to path through the route table, as http.c does. */
static int post_n(cd_api *api, const char *path, const char *body, size_t len, cd_reply *rep)
{
    cd_request req = {.method = "POST", .path = path, .body = body,
                      .body_len = len, .content_type = "application/json"};
    cd_route_match m;
    memset(rep, 0, sizeof *rep);
    if (cd_route_find(req.method, path, &m) != CD_OK)
        return -1;
    if (cd_route_accept(&m, req.method, path, rep))
        cd_route_dispatch(api, &m, &req, rep);
    cd_route_match_finish(&m);
    return rep->status;
}

static int post(cd_api *api, const char *path, const char *body, cd_reply *rep)
{
    return post_n(api, path, body, strlen(body), rep);
}

/*
 * Bodies whose white space cJSON skips but a plain reading would not
 * (control bytes, NUL): the metadata kept as the client's text must be
 * found where cJSON found it, or the body refused.
 */
static void test_white_space(cd_api *api, cd_engine *e)
{
    static const char nul[] = "\n\0{\"items\":[{\"id\":\"n\",\"vector\":[1,2]},"
                              "{\"id\":\"n2\",\"metadata\":{\"a\":1},\"vector\":[1,2]}]}";
    static const char ctl[] = "\x01{\"items\":\x01[{\"id\":\"c\",\"vector\":[1,2]}\x02,"
                              "{\"id\":\"c2\",\"metadata\":\x03{\"a\":\x04" "1\x05},"
                              "\"vector\":[1,2]}]}";
    cd_reply rep;
    cd_error err;
    CHECK_EQ(post_n(api, "/v1/galleries/g/items", nul, sizeof nul - 1, &rep), 400);
    CHECK(rep.body && strstr(rep.body, "invalid_json"));
    free(rep.body);
    /* Other control bytes are no JSON white space (RFC 8259), though cJSON
     * would take them for it: refused, nothing stored. */
    CHECK_EQ(post(api, "/v1/galleries/g/items", ctl, &rep), 400);
    CHECK(rep.body && strstr(rep.body, "control character (0x01) at byte 0"));
    free(rep.body);
    cd_item *item = NULL;
    CHECK_EQ(cd_engine_item_get(e, "g", "c", false, &item, &err), CD_ENOTFOUND);
    cd_item_destroy(item);
    /* JSON's own white space, before and inside metadata, is kept out of
     * its stored text. */
    static const char ws[] = "\r\n{\"items\":\t[{\"id\":\"w\",\"metadata\": {\"a\":\n1 },"
                             "\"vector\":[1,2]}]}";
    CHECK_EQ(post(api, "/v1/galleries/g/items", ws, &rep), 200);
    free(rep.body);
    item = NULL;
    CHECK_EQ(cd_engine_item_get(e, "g", "w", false, &item, &err), CD_OK);
    CHECK(item && item->metadata && strcmp(item->metadata, "{\"a\":1}") == 0);
    cd_item_destroy(item);
}

int main(void)
{
    char dir[] = "/tmp/compatd-test-request-XXXXXX";
    REQUIRE(mkdtemp(dir) != NULL);
    cd_engine *e = NULL;
    cd_error err;
    cd_engine_config cfg = {.data_dir = dir};
    REQUIRE(cd_engine_open(&cfg, &e, &err) == CD_OK);
    REQUIRE(cd_engine_load_indexes(e, &err) == CD_OK);
    cd_api api = {.engine = e, .max_body = 1 << 20};
    cd_reply rep;
    CHECK_EQ(post(&api, "/v1/models", "{\"name\":\"m\",\"dim\":2,\"metric\":\"l2\"}", &rep), 201);
    free(rep.body);
    CHECK_EQ(post(&api, "/v1/galleries", "{\"name\":\"g\",\"model\":\"m\"}", &rep), 201);
    free(rep.body);

    const struct {
        const char *what;
        const char *id, *label;     /* label as JSON text */
        bool copy_fails;            /* strdup of the label's text fails */
        int status;
        const char *stored;         /* the label stored, NULL: no item */
    } cases[] = {
        {"a string label", "a", "\"x\"", false, 200, "x"},
        {"a number label", "b", "7", false, 200, "7"},
        {"a number label whose copy fails", "c", "8", true, 503, NULL},
        {"an empty string label", "d", "\"\"", false, 200, ""},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char body[256];
        snprintf(body, sizeof body, "{\"items\":[{\"id\":\"%s\",\"label\":%s,\"vector\":[1,2]}]}",
                 cases[i].id, cases[i].label);
        fail_text = cases[i].copy_fails ? cases[i].label : NULL;
        int status = post(&api, "/v1/galleries/g/items", body, &rep);
        fail_text = NULL;
        if (status != cases[i].status)
            fprintf(stderr, "%s: %d %s\n", cases[i].what, status, rep.body ? rep.body : "");
        CHECK_EQ(status, cases[i].status);
        free(rep.body);
        cd_item *item = NULL;
        cd_err rc = cd_engine_item_get(e, "g", cases[i].id, false, &item, &err);
        if (cases[i].stored) {
            CHECK_EQ(rc, CD_OK);
            CHECK(item && item->label && strcmp(item->label, cases[i].stored) == 0);
        } else {
            if (rc == CD_OK)
                fprintf(stderr, "%s: stored with label %s\n", cases[i].what,
                        item->label ? item->label : "null");
            CHECK_EQ(rc, CD_ENOTFOUND);
        }
        cd_item_destroy(item);
    }
    test_white_space(&api, e);
    cd_engine_close(e);
    nftw(dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
    return check_exit();
}
