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
static int post(cd_api *api, const char *path, const char *body, cd_reply *rep)
{
    cd_request req = {.method = "POST", .path = path, .body = body,
                      .body_len = strlen(body), .content_type = "application/json"};
    cd_route_match m;
    memset(rep, 0, sizeof *rep);
    if (cd_route_find(req.method, path, &m) != CD_OK)
        return -1;
    if (cd_route_accept(&m, req.method, path, rep))
        cd_route_dispatch(api, &m, &req, rep);
    cd_route_match_finish(&m);
    return rep->status;
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
    cd_engine_close(e);
    nftw(dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
    return check_exit();
}
