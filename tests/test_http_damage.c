/*
 * test_http_damage.c - hostile index specs and damaged or mismatched
 * files, against the real daemon, with a restart after each.
 *
 * - Index specs outside the accepted forms or bounds (HNSW0 segfaulted
 *   the daemon on the first upsert, IVF999999999 grew to 13.7 GB, HNSW1
 *   ran out of memory) are 400 invalid_index naming the bound.
 * - A gallery already stored with such a spec (edited into SQLite, as an
 *   older version let it in) does not stop the daemon: it starts, that
 *   gallery is unavailable (503 gallery_unavailable for search and
 *   upsert, GET shows state and error), the other gallery serves, and
 *   DELETE recovers.
 * - One gallery's snapshot copied over another's, and a snapshot of
 *   another history of a restored database under the current name, are
 *   detected and rebuilt: every item's own vector finds that item.
 */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sqlite3.h>

#include "check.h"
#include "daemon.h"

#define DIM 16
#define N_ITEMS 50
/* An exact index type that keeps snapshots, for the snapshot binding
 * tests (a Flat index is read from the store and keeps none). */
#define SNAP_EXACT "IVF1,Flat"

typedef struct set {
    const char *prefix;     /* item ids are prefix + index */
    size_t n;
    float x[N_ITEMS * DIM];
} set;

static td_rng rng;

static void set_make(set *s, const char *prefix, size_t n)
{
    s->prefix = prefix;
    s->n = n;
    for (size_t i = 0; i < n * DIM; i++)
        s->x[i] = (float)td_rng_gauss(&rng);
}

static void upsert(td_http *h, const char *gallery, const set *s, long want)
{
    td_text body = {0};
    td_text_append(&body, "{\"items\":[");
    for (size_t i = 0; i < s->n; i++) {
        char *v = td_b64_floats(s->x + i * DIM, DIM);
        REQUIRE(v != NULL);
        td_text_append(&body, "%s{\"id\":\"%s%zu\",\"vector_b64\":\"%s\"}",
                       i ? "," : "", s->prefix, i, v);
        free(v);
    }
    td_text_append(&body, "]}");
    char *path = td_fmt("/v1/galleries/%s/items", gallery);
    td_reply r;
    CHECK_EQ(td_http_call(h, &r, want, "POST", path, body.s), want);
    if (want != 200)
        CHECK_STREQ(td_reply_error_code(&r), "gallery_unavailable");
    td_reply_finish(&r);
    free(path);
    free(body.s);
}

/* Every item's own vector must find that item first (l2, exact). */
static void check_self(td_http *h, const char *gallery, const set *s,
                       const char *what)
{
    td_text body = {0};
    td_text_append(&body, "{\"k\":1,\"vectors\":");
    td_text_append_b64_rows(&body, s->x, s->n, DIM);
    td_text_append(&body, "}");
    char *path = td_fmt("/v1/galleries/%s/search", gallery);
    td_reply r;
    CHECK_EQ(td_http_call(h, &r, 200, "POST", path, body.s), 200);
    size_t wrong = 0;
    for (size_t i = 0; r.status == 200 && i < s->n; i++) {
        char want[64], at[64];
        snprintf(want, sizeof want, "%s%zu", s->prefix, i);
        snprintf(at, sizeof at, "results.%zu.0.id", i);
        const char *got = td_json_str(r.json, at);
        if (!got || strcmp(got, want) != 0)
            wrong++;
    }
    if (wrong)
        fprintf(stderr, "%s: %zu of %zu items of %s not found by their own "
                "vector\n", what, wrong, s->n, gallery);
    CHECK_EQ(wrong, 0);
    td_reply_finish(&r);
    free(path);
    free(body.s);
}

static void restart(td_daemon *d, td_http **h)
{
    td_http_destroy(*h);
    *h = NULL;
    CHECK_EQ(td_daemon_stop(d), 0);
    REQUIRE(td_daemon_start(d, NULL));
    *h = td_http_create(d);
    REQUIRE(*h != NULL);
}

static void setup_model(td_http *h)
{
    td_reply r;
    CHECK_EQ(td_http_call(h, &r, 201, "POST", "/v1/models",
                          "{\"name\":\"m\",\"dim\":16,\"metric\":\"l2\"}"), 201);
    td_reply_finish(&r);
}

static void create_gallery(td_http *h, const char *name, const char *spec)
{
    td_reply r;
    char *body = td_fmt("{\"name\":\"%s\",\"model\":\"m\",\"index\":\"%s\"}",
                        name, spec);
    CHECK_EQ(td_http_call(h, &r, 201, "POST", "/v1/galleries", body), 201);
    td_reply_finish(&r);
    free(body);
}

/* The path of gallery_id's only snapshot file; malloc'd, NULL when none. */
static char *snapshot_of(td_daemon *d, long gallery_id)
{
    char *dir = td_fmt("%s/index", td_daemon_data_dir(d));
    char *found = NULL;
    char prefix[32];
    snprintf(prefix, sizeof prefix, "g%ld-", gallery_id);
    DIR *dp = opendir(dir);
    REQUIRE(dp != NULL);
    struct dirent *de;
    while ((de = readdir(dp)) != NULL) {
        if (strncmp(de->d_name, prefix, strlen(prefix)) == 0 &&
            strstr(de->d_name, ".faiss") && !strstr(de->d_name, ".tmp")) {
            CHECK(found == NULL);
            free(found);
            found = td_fmt("%s/%s", dir, de->d_name);
        }
    }
    closedir(dp);
    free(dir);
    return found;
}

static void sql(td_daemon *d, const char *stmt)
{
    CHECK(td_daemon_sql(d, stmt));
}

/* --- specs ---------------------------------------------------------------- */

static void test_specs(void)
{
    static const struct {
        const char *spec;
        const char *says;   /* the message names the bound */
    } cases[] = {
        {"HNSW0", "HNSW M is 0, must be 2..256"},
        {"HNSW1", "HNSW M is 1"},
        {"HNSW100000", "HNSW M"},
        {"IVF999999999,Flat", "IVF nlist is 999999999, must be 1..65536"},
        {"IVF0,Flat", "IVF nlist"},
        {"PQ3", "PQ m is 3, must divide the dimension 16"},
        {"IVF16,PQ4x17", "PQ nbits is 17"},
        {"PCA8,Flat", "accepted forms"},
        {"HNSW32,PQ4", "accepted forms"},
    };
    td_daemon *d = NULL;
    td_http *h = NULL;
    REQUIRE(td_daemon_start_client(NULL, &d, &h));
    setup_model(h);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        td_reply r;
        char *body = td_fmt("{\"name\":\"g%zu\",\"model\":\"m\",\"index\":\"%s\"}",
                            i, cases[i].spec);
        CHECK_EQ(td_http_call(h, &r, 400, "POST", "/v1/galleries", body), 400);
        CHECK_STREQ(td_reply_error_code(&r), "invalid_index");
        const char *msg = td_reply_error_message(&r);
        if (!msg || !strstr(msg, cases[i].says))
            fprintf(stderr, "%s: message \"%s\" does not say \"%s\"\n",
                    cases[i].spec, msg ? msg : "", cases[i].says);
        CHECK(msg && strstr(msg, cases[i].says));
        td_reply_finish(&r);
        free(body);
    }
    /* The edges are usable: made, filled, searched, kept over a restart. */
    set s;
    set_make(&s, "e", N_ITEMS);
    create_gallery(h, "edge", "HNSW256");
    upsert(h, "edge", &s, 200);
    check_self(h, "edge", &s, "HNSW256");
    restart(d, &h);
    check_self(h, "edge", &s, "HNSW256 after a restart");
    td_http_destroy(h);
    CHECK_EQ(td_daemon_stop(d), 0);
    td_daemon_destroy(d);
}

/* --- a stored gallery that cannot be built -------------------------------- */

static void check_state(td_http *h, const char *gallery, const char *state,
                        const char *error_says)
{
    td_reply r;
    char *path = td_fmt("/v1/galleries/%s", gallery);
    CHECK_EQ(td_http_call(h, &r, 200, "GET", path, NULL), 200);
    CHECK_STREQ(td_json_str(r.json, "state"), state);
    const char *error = td_json_str(r.json, "error");
    if (error_says)
        CHECK(error && strstr(error, error_says));
    else
        CHECK(error == NULL);
    td_reply_finish(&r);
    free(path);
}

static void test_unbuildable_gallery(void)
{
    td_daemon *d = NULL;
    td_http *h = NULL;
    set good, bad, more;
    set_make(&good, "g", N_ITEMS);
    set_make(&bad, "b", N_ITEMS);
    set_make(&more, "x", 3);
    REQUIRE(td_daemon_start_client(NULL, &d, &h));
    setup_model(h);
    create_gallery(h, "good", "Flat");
    create_gallery(h, "bad", "HNSW32");
    upsert(h, "good", &good, 200);
    upsert(h, "bad", &bad, 200);
    td_http_destroy(h);
    h = NULL;
    CHECK_EQ(td_daemon_stop(d), 0);

    /* What an older compatd let in, with its batch already committed. */
    sql(d, "UPDATE galleries SET index_spec = 'HNSW0' WHERE name = 'bad'");
    REQUIRE(td_daemon_start(d, NULL));  /* /readyz answers 200 */
    h = td_http_create(d);
    REQUIRE(h != NULL);
    for (int round = 0; round < 2; round++) {
        td_reply r;
        CHECK_EQ(td_http_call(h, &r, 503, "POST", "/v1/galleries/bad/search",
                              "{\"k\":1,\"vector\":[1,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0]}"), 503);
        CHECK_STREQ(td_reply_error_code(&r), "gallery_unavailable");
        const char *msg = td_reply_error_message(&r);
        CHECK(msg && strstr(msg, "HNSW M is 0"));
        td_reply_finish(&r);
        upsert(h, "bad", &more, 503);
        check_state(h, "bad", "unavailable", "HNSW M is 0");
        check_state(h, "good", "ready", NULL);
        check_self(h, "good", &good, "beside an unavailable gallery");
        CHECK_EQ(td_http_call(h, &r, 200, "GET", "/readyz", NULL), 200);
        td_reply_finish(&r);
        restart(d, &h);
    }
    td_reply r;
    long st = td_http_call(h, &r, 204, "DELETE", "/v1/galleries/bad", NULL);
    CHECK(st == 204 || st == 200);
    td_reply_finish(&r);
    restart(d, &h);
    CHECK_EQ(td_http_call(h, &r, 404, "GET", "/v1/galleries/bad", NULL), 404);
    td_reply_finish(&r);
    check_self(h, "good", &good, "after deleting the unavailable gallery");
    td_http_destroy(h);
    CHECK_EQ(td_daemon_stop(d), 0);
    td_daemon_destroy(d);
}

/* --- snapshots that belong elsewhere -------------------------------------- */

static void test_swapped_snapshot(void)
{
    td_daemon *d = NULL;
    td_http *h = NULL;
    set a, b;
    set_make(&a, "a", N_ITEMS);
    set_make(&b, "b", N_ITEMS);
    REQUIRE(td_daemon_start_client(NULL, &d, &h));
    setup_model(h);
    create_gallery(h, "ga", SNAP_EXACT); /* gallery id 1 */
    create_gallery(h, "gb", SNAP_EXACT); /* gallery id 2 */
    upsert(h, "ga", &a, 200);         /* the same seq and count */
    upsert(h, "gb", &b, 200);
    td_http_destroy(h);
    h = NULL;
    CHECK_EQ(td_daemon_stop(d), 0);

    char *fa = snapshot_of(d, 1), *fb = snapshot_of(d, 2);
    REQUIRE(fa && fb);
    CHECK(td_copy_file(fa, fb));
    REQUIRE(td_daemon_start(d, NULL));
    h = td_http_create(d);
    REQUIRE(h != NULL);
    check_self(h, "gb", &b, "gallery gb with ga's snapshot");
    check_self(h, "ga", &a, "gallery ga");
    restart(d, &h);
    check_self(h, "gb", &b, "gallery gb after a restart");
    free(fa);
    free(fb);
    td_http_destroy(h);
    CHECK_EQ(td_daemon_stop(d), 0);
    td_daemon_destroy(d);
}

static void test_other_history(void)
{
    td_daemon *d = NULL;
    td_http *h = NULL;
    set base, one, two;
    set_make(&base, "a", N_ITEMS);
    set_make(&one, "b", 20);
    set_make(&two, "c", 20);
    REQUIRE(td_daemon_start_client(NULL, &d, &h));
    setup_model(h);
    create_gallery(h, "gh", SNAP_EXACT);
    upsert(h, "gh", &base, 200);
    td_http_destroy(h);
    h = NULL;
    CHECK_EQ(td_daemon_stop(d), 0);
    char *db = td_fmt("%s/compatd.db", td_daemon_data_dir(d));
    char *db_copy = td_fmt("%s/backup.db", td_daemon_dir(d));
    char *wal = td_fmt("%s-wal", db);
    char *shm = td_fmt("%s-shm", db);
    REQUIRE(access(wal, F_OK) != 0); /* a clean stop checkpoints */
    CHECK(td_copy_file(db, db_copy));

    /* History one: the batch "b", snapshotted at the gallery's seq 2. */
    REQUIRE(td_daemon_start(d, NULL));
    h = td_http_create(d);
    upsert(h, "gh", &one, 200);
    td_http_destroy(h);
    h = NULL;
    CHECK_EQ(td_daemon_stop(d), 0);
    char *snap = snapshot_of(d, 1);
    char *held = td_fmt("%s/held.faiss", td_daemon_dir(d));
    REQUIRE(snap != NULL);
    CHECK(td_copy_file(snap, held));
    free(snap);

    /* The database restored; history two writes the batch "c" instead. */
    CHECK(td_copy_file(db_copy, db));
    unlink(shm);
    REQUIRE(td_daemon_start(d, NULL));
    h = td_http_create(d);
    upsert(h, "gh", &two, 200);
    td_http_destroy(h);
    h = NULL;
    CHECK_EQ(td_daemon_stop(d), 0);

    /* History one's snapshot back under the name history two gave its own
     * (same seq, same count). */
    snap = snapshot_of(d, 1);
    REQUIRE(snap != NULL);
    CHECK(td_copy_file(held, snap));
    REQUIRE(td_daemon_start(d, NULL));
    h = td_http_create(d);
    check_self(h, "gh", &two, "history two with history one's snapshot");
    check_self(h, "gh", &base, "the rows both histories share");
    restart(d, &h);
    check_self(h, "gh", &two, "history two after a restart");
    free(snap);
    free(held);
    free(shm);
    free(wal);
    free(db_copy);
    free(db);
    td_http_destroy(h);
    CHECK_EQ(td_daemon_stop(d), 0);
    td_daemon_destroy(d);
}

int main(void)
{
    rng = (td_rng){td_seed(20261121)};
    test_specs();
    test_unbuildable_gallery();
    test_swapped_snapshot();
    test_other_history();
    return check_exit();
}
