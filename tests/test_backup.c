/*
 * test_backup.c - `compatd backup`: what it refuses, and that a daemon
 * started on a copy serves what the original served.
 *
 * A daemon gets two galleries (a Flat l2 one partly backfilled with a
 * second model, and an HNSW one), deletes, and an evaluation.  Then:
 *   - bad invocations and destinations are refused, each with its exit
 *     status and message, and leave no file behind;
 *   - a backup of the running daemon, started as a second daemon, answers
 *     a list of GETs and searches byte for byte as the original does, and
 *     every item with its vectors;
 *   - a second backup into the same directory is refused and leaves the
 *     first copy as it was;
 *   - after kill -9 (the database's newest writes still in its WAL), a
 *     backup of the stopped daemon's directory holds them.
 * test_load.c backs a daemon up while it is under load.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check.h"
#include "daemon.h"

#define DIM 8
#define N_ITEMS 300
#define N_BACKFILL 100
#define N_DELETED 7
#define N_LATE 40           /* items written just before kill -9 */
#define N_QUERIES 10

typedef td_text text;

/* The vector of item i of model m (0 or 1), from the seed. */
static void item_vector(uint64_t seed, int m, size_t i, float *v)
{
    td_rng r = {seed ^ ((uint64_t)m << 56) ^ (i * 0x9e3779b97f4a7c15ULL)};
    for (size_t d = 0; d < DIM; d++)
        v[d] = (float)td_rng_gauss(&r);
}

/* Expects status from method path body; prints the reply otherwise. */
static long call(td_http *h, long want, const char *method, const char *path, const char *body)
{
    td_reply r;
    long status = td_http_json(h, method, path, body, &r);
    if (status != want)
        fprintf(stderr, "%s %s: %ld (want %ld) %s%s\n", method, path, status, want, r.body,
                r.error);
    CHECK_EQ(status, want);
    td_reply_finish(&r);
    return status;
}

/* Upserts items [from, to) of model m ("a" or "b") into gallery g. */
static void upsert(td_http *h, uint64_t seed, const char *g, int m, size_t from, size_t to)
{
    text t = {0};
    float v[DIM];
    td_text_append(&t, "{\"model\":\"%s\",\"items\":[", m ? "b" : "a");
    for (size_t i = from; i < to; i++) {
        item_vector(seed, m, i, v);
        char *b64 = td_b64_floats(v, DIM);
        REQUIRE(b64 != NULL);
        td_text_append(&t, "%s{\"id\":\"it%zu\",\"label\":\"L%zu\",\"metadata\":{\"n\":%zu},"
                   "\"vector_b64\":\"%s\"}", i > from ? "," : "", i, i % 5, i, b64);
        free(b64);
    }
    td_text_append(&t, "]}");
    char path[128];
    snprintf(path, sizeof path, "/v1/galleries/%s/items", g);
    call(h, 200, "POST", path, t.s);
    free(t.s);
}

/* An evaluation of model b on gallery "flat": probes near items 0..49. */
static void evaluate(td_http *h, uint64_t seed)
{
    text t = {0};
    float v[DIM];
    td_text_append(&t, "{\"query_model\":\"b\",\"queries\":[");
    for (size_t i = 0; i < 50; i++) {
        item_vector(seed, 1, i, v);
        v[0] += 0.05f;
        char *b64 = td_b64_floats(v, DIM);
        td_text_append(&t, "%s{\"id\":\"p%zu\",\"label\":\"L%zu\",\"vector_b64\":\"%s\"}", i ? "," : "",
               i, i % 5, b64);
        free(b64);
    }
    td_text_append(&t, "],\"baseline\":[");
    for (size_t i = 0; i < 50; i++) {
        item_vector(seed, 0, i, v);
        v[1] += 0.05f;
        char *b64 = td_b64_floats(v, DIM);
        td_text_append(&t, "%s{\"id\":\"p%zu\",\"vector_b64\":\"%s\"}", i ? "," : "", i, b64);
        free(b64);
    }
    td_text_append(&t, "],\"ks\":[1,5]}");
    call(h, 201, "POST", "/v1/galleries/flat/evaluations", t.s);
    free(t.s);
}

/* Fills a daemon with what the copies must show. */
static void populate(td_http *h, uint64_t seed)
{
    call(h, 201, "POST", "/v1/models", "{\"name\":\"a\",\"dim\":8,\"metric\":\"l2\"}");
    call(h, 201, "POST", "/v1/models",
         "{\"name\":\"b\",\"dim\":8,\"metric\":\"l2\",\"compatible_with\":\"a\","
         "\"description\":\"the new one\"}");
    call(h, 201, "POST", "/v1/galleries", "{\"name\":\"flat\",\"model\":\"a\"}");
    call(h, 201, "POST", "/v1/galleries", "{\"name\":\"hnsw\",\"model\":\"a\",\"index\":\"HNSW32\"}");
    call(h, 200, "PATCH", "/v1/galleries/flat", "{\"query_policy\":\"any\"}");
    for (size_t i = 0; i < N_ITEMS; i += 100) {
        upsert(h, seed, "flat", 0, i, i + 100);
        upsert(h, seed, "hnsw", 0, i, i + 100);
    }
    upsert(h, seed, "flat", 1, 0, N_BACKFILL);
    for (size_t i = 0; i < N_DELETED; i++) {
        char path[96];
        snprintf(path, sizeof path, "/v1/galleries/flat/items/it%zu", 10 + 37 * i);
        call(h, 204, "DELETE", path, NULL);
    }
    evaluate(h, seed);
}

/* The reply body of GET/POST path on h, malloc'd; NULL unless 200. */
static char *body_of(td_http *h, const char *method, const char *path, const char *body)
{
    td_reply r;
    td_http_json(h, method, path, body, &r);
    char *out = NULL;
    if (r.status == 200) {
        out = r.body;
        r.body = NULL;
    } else {
        fprintf(stderr, "%s %s: %ld %s%s\n", method, path, r.status, r.body ? r.body : "",
                r.error);
    }
    td_reply_finish(&r);
    return out;
}

/* The same request gets the same 200 body from a and b. */
static void check_same(td_http *a, td_http *b, const char *method, const char *path,
                       const char *body)
{
    char *x = body_of(a, method, path, body), *y = body_of(b, method, path, body);
    CHECK(x != NULL);
    CHECK(y != NULL);
    if (x && y && strcmp(x, y) != 0)
        fprintf(stderr, "%s %s differs:\n  original: %.600s\n  copy:     %.600s\n", method,
                path, x, y);
    CHECK(x && y && strcmp(x, y) == 0);
    free(x);
    free(y);
}

/* Everything the copy serves equals what the original serves. */
static void compare_daemons(td_http *orig, td_http *copy, uint64_t seed, size_t n_items)
{
    static const char *const gets[] = {
        "/v1/models", "/v1/galleries", "/v1/galleries/flat", "/v1/galleries/hnsw",
        "/v1/galleries/flat/evaluations", "/v1/evaluations/1", "/v1/compatibility", NULL,
    };
    for (size_t i = 0; gets[i]; i++)
        check_same(orig, copy, "GET", gets[i], NULL);
    char path[128];
    for (size_t i = 0; i < n_items; i++) {
        snprintf(path, sizeof path, "/v1/galleries/flat/items/it%zu?vectors=true", i);
        td_reply x, y;
        td_http_json(orig, "GET", path, NULL, &x);
        td_http_json(copy, "GET", path, NULL, &y);
        CHECK_EQ(y.status, x.status);
        if (x.status == 200)
            CHECK_STREQ(y.body, x.body);
        td_reply_finish(&x);
        td_reply_finish(&y);
    }
    /* Flat answers exactly, so alike; half the queries are of model b
     * (hot refresh: the backfilled items in b's space). */
    for (size_t q = 0; q < N_QUERIES; q++) {
        float v[DIM];
        item_vector(seed ^ 0x5eed, 0, q, v);
        char *b64 = td_b64_floats(v, DIM);
        text body = {0};
        td_text_append(&body, "{\"k\":10,\"vector_b64\":\"%s\",\"include\":[\"label\",\"metadata\"]%s}",
               b64, q % 2 ? ",\"model\":\"b\"" : "");
        check_same(orig, copy, "POST", "/v1/galleries/flat/search", body.s);
        free(body.s);
        free(b64);
    }
    /* HNSW is rebuilt on the copy (its graph may differ): an item's own
     * vector finds it first, at distance 0, in both. */
    for (size_t i = 0; i < n_items; i += n_items / N_QUERIES) {
        float v[DIM];
        item_vector(seed, 0, i, v);
        char *b64 = td_b64_floats(v, DIM);
        char want[32];
        snprintf(want, sizeof want, "it%zu", i);
        td_http *hs[2] = {orig, copy};
        for (size_t k = 0; k < 2; k++) {
            td_reply r;
            td_http_jsonf(hs[k], &r, "POST", "/v1/galleries/hnsw/search",
                          "{\"k\":3,\"vector_b64\":\"%s\"}", b64);
            CHECK_EQ(r.status, 200);
            CHECK_STREQ(td_json_str(r.json, "results.0.0.id"), want);
            CHECK_EQ(td_json_num(r.json, "results.0.0.score"), 0);
            td_reply_finish(&r);
        }
        free(b64);
    }
}

static char *path_join(const char *dir, const char *name)
{
    char *p = NULL;
    REQUIRE(asprintf(&p, "%s/%s", dir, name) >= 0);
    return p;
}

static bool exists(const char *path)
{
    struct stat sb;
    return stat(path, &sb) == 0;
}

/* Only compatd.db in dir: no index snapshots, no temporary file. */
static void check_only_db(const char *dir)
{
    char *cmd = NULL;
    REQUIRE(asprintf(&cmd, "ls -A '%s'", dir) >= 0);
    FILE *p = popen(cmd, "r");
    REQUIRE(p != NULL);
    char line[512];
    int n = 0;
    while (fgets(line, sizeof line, p)) {
        n++;
        if (strcmp(line, "compatd.db\n") != 0)
            fprintf(stderr, "unexpected file in %s: %s", dir, line);
        CHECK_STREQ(line, "compatd.db\n");
    }
    pclose(p);
    CHECK_EQ(n, 1);
    free(cmd);
}

/* One refused invocation. */
typedef struct refusal {
    const char *what;
    const char *args[8];    /* after "backup"; "@TO" and "@DATA" are replaced */
    int status;
    const char *message;    /* a part of the output */
} refusal;

int main(void)
{
    uint64_t seed = td_seed(20261121);
    td_daemon *orig = td_daemon_create(), *copy = td_daemon_create();
    REQUIRE(orig && copy);
    REQUIRE(td_daemon_start(orig, NULL));
    td_http *ho = td_http_create(orig), *hc = td_http_create(copy);
    REQUIRE(ho && hc);
    populate(ho, seed);

    /* Scratch directories for the refusals, inside the copy's. */
    const char *scratch = td_daemon_dir(copy);
    char *garbage_dir = path_join(scratch, "garbage"), *empty_dir = path_join(scratch, "empty");
    char *wal_dir = path_join(scratch, "walonly"), *to = path_join(scratch, "refused");
    char *garbage_db = path_join(garbage_dir, "compatd.db");
    char *empty_db = path_join(empty_dir, "compatd.db");
    char *stale_wal = path_join(wal_dir, "compatd.db-wal");
    REQUIRE(mkdir(garbage_dir, 0700) == 0 && mkdir(empty_dir, 0700) == 0 &&
            mkdir(wal_dir, 0700) == 0);
    FILE *f = fopen(garbage_db, "w");
    REQUIRE(f != NULL);
    fputs("this is not an SQLite database, not even close; it just sits here.\n", f);
    for (int i = 0; i < 200; i++)
        fputs("0123456789abcdef0123456789abcdef\n", f);
    fclose(f);
    REQUIRE((f = fopen(empty_db, "w")) != NULL);
    fclose(f);
    REQUIRE((f = fopen(stale_wal, "w")) != NULL);
    fclose(f);

    const char *data = td_daemon_data_dir(orig);
    const refusal refusals[] = {
        {"no --to", {NULL}, 2, "needs --to"},
        {"unknown option", {"--to", "@TO", "--bogus", NULL}, 2, "usage: compatd backup"},
        {"extra argument", {"--to", "@TO", "extra", NULL}, 2, "unexpected argument"},
        {"no database", {"--to", "@TO", "--data", "@SCRATCH/none", NULL}, 1, "no database at"},
        {"not SQLite", {"--to", "@TO", "--data", garbage_dir, NULL}, 1, "not a compatd database"},
        {"empty file", {"--to", "@TO", "--data", empty_dir, NULL}, 1, "not a compatd database"},
        {"onto itself", {"--to", "@DATA", "--data", "@DATA", NULL}, 1, "already exists"},
        {"stale WAL", {"--to", wal_dir, "--data", "@DATA", NULL}, 1, "compatd.db-wal already exists"},
        {"no parent", {"--to", "@SCRATCH/no/such", "--data", "@DATA", NULL}, 1, "cannot create"},
    };
    char *none = path_join(scratch, "none"), *nested = path_join(scratch, "no/such");
    for (size_t i = 0; i < sizeof refusals / sizeof refusals[0]; i++) {
        const refusal *c = &refusals[i];
        const char *args[12] = {"backup"};
        size_t n = 1;
        for (size_t a = 0; c->args[a]; a++) {
            const char *v = c->args[a];
            if (strcmp(v, "@TO") == 0)
                v = to;
            else if (strcmp(v, "@DATA") == 0)
                v = data;
            else if (strcmp(v, "@SCRATCH/none") == 0)
                v = none;
            else if (strcmp(v, "@SCRATCH/no/such") == 0)
                v = nested;
            args[n++] = v;
        }
        args[n] = NULL;
        char *out = NULL;
        int status = td_run_compatd(args, &out);
        bool said = out && strstr(out, c->message);
        if (status != c->status || !said)
            fprintf(stderr, "case \"%s\": status %d (want %d), output:\n%s", c->what, status,
                    c->status, out ? out : "");
        CHECK_EQ(status, c->status);
        CHECK(said);
        free(out);
        /* Nothing written where it was refused. */
        char *db = path_join(to, "compatd.db");
        CHECK(!exists(db));
        free(db);
    }
    CHECK(!exists(nested));

    /* A backup of the running daemon, served by a second daemon. */
    const char *dest = td_daemon_data_dir(copy);
    char *out = NULL;
    const char *args[] = {"backup", "--data", data, "--to", dest, NULL};
    int status = td_run_compatd(args, &out);
    if (status != 0)
        fprintf(stderr, "backup: %s", out ? out : "");
    CHECK_EQ(status, 0);
    CHECK(out && strstr(out, "backed up"));
    fprintf(stderr, "%s", out ? out : "");
    free(out);
    check_only_db(dest);
    char *dest_db = path_join(dest, "compatd.db");
    struct stat before;
    REQUIRE(stat(dest_db, &before) == 0);
    CHECK_EQ(before.st_mode & 0777, 0600);

    /* A second backup into the same directory is refused and leaves the
     * first alone. */
    status = td_run_compatd(args, &out);
    CHECK_EQ(status, 1);
    CHECK(out && strstr(out, "already exists"));
    free(out);
    struct stat after;
    REQUIRE(stat(dest_db, &after) == 0);
    CHECK_EQ(after.st_size, before.st_size);
    CHECK_EQ(after.st_mtim.tv_sec, before.st_mtim.tv_sec);
    CHECK_EQ(after.st_mtim.tv_nsec, before.st_mtim.tv_nsec);
    check_only_db(dest);

    REQUIRE(td_daemon_start(copy, NULL));
    compare_daemons(ho, hc, seed, N_ITEMS);

    /* compatd compact: refused while the copy is served (nothing
     * changed), then run on it stopped; a daemon on it answers as before,
     * from a file no larger. */
    const char *compact_args[] = {"compact", "--data", dest, NULL};
    REQUIRE(stat(dest_db, &before) == 0);
    status = td_run_compatd(compact_args, &out);
    if (status != 1)
        fprintf(stderr, "compact of a served directory: %s", out ? out : "");
    CHECK_EQ(status, 1);
    CHECK(out && strstr(out, "stop it first"));
    free(out);
    REQUIRE(stat(dest_db, &after) == 0);
    CHECK_EQ(after.st_size, before.st_size);
    CHECK_EQ(td_daemon_stop(copy), 0);
    REQUIRE(stat(dest_db, &before) == 0);
    status = td_run_compatd(compact_args, &out);
    if (status != 0)
        fprintf(stderr, "compact: %s", out ? out : "");
    CHECK_EQ(status, 0);
    CHECK(out && strstr(out, "compacted"));
    free(out);
    REQUIRE(stat(dest_db, &after) == 0);
    CHECK(after.st_size <= before.st_size);
    CHECK_EQ(after.st_mode & 0777, 0600);
    REQUIRE(td_daemon_start(copy, NULL));
    compare_daemons(ho, hc, seed, N_ITEMS);
    CHECK_EQ(td_daemon_stop(copy), 0);

    /* kill -9 with the newest writes in the WAL, then a backup of the
     * directory nobody serves. */
    upsert(ho, seed, "flat", 0, N_ITEMS, N_ITEMS + N_LATE);
    upsert(ho, seed, "hnsw", 0, N_ITEMS, N_ITEMS + N_LATE);
    char *wal = path_join(data, "compatd.db-wal");
    struct stat wal_st;
    CHECK(stat(wal, &wal_st) == 0 && wal_st.st_size > 0);
    CHECK_EQ(td_daemon_kill(orig), 0);
    td_daemon *late = td_daemon_create();
    REQUIRE(late != NULL);
    td_http *hl = td_http_create(late);
    REQUIRE(hl != NULL);
    const char *late_args[] = {"backup", "--data", data, "--to", td_daemon_data_dir(late), NULL};
    status = td_run_compatd(late_args, &out);
    if (status != 0)
        fprintf(stderr, "backup after kill -9: %s", out ? out : "");
    CHECK_EQ(status, 0);
    free(out);
    REQUIRE(td_daemon_start(orig, NULL));
    REQUIRE(td_daemon_start(late, NULL));
    CHECK_EQ(td_gallery_count(hl, "flat"), N_ITEMS + N_LATE - N_DELETED);
    CHECK_EQ(td_gallery_count(hl, "hnsw"), N_ITEMS + N_LATE);
    compare_daemons(ho, hl, seed, N_ITEMS + N_LATE);
    CHECK_EQ(td_daemon_stop(late), 0);
    CHECK_EQ(td_daemon_stop(orig), 0);

    td_http_destroy(hl);
    td_http_destroy(ho);
    td_http_destroy(hc);
    td_daemon_destroy(late);
    td_daemon_destroy(orig);
    td_daemon_destroy(copy);
    free(wal);
    free(dest_db);
    free(none);
    free(nested);
    free(garbage_dir);
    free(empty_dir);
    free(wal_dir);
    free(to);
    free(garbage_db);
    free(empty_db);
    free(stale_wal);
    return check_exit();
}
