/*
 * test_http_integrity.c - a damaged or incomplete data directory is named
 * and refused, never served.
 *
 * A daemon fills one Flat gallery with N_ITEMS vectors (the database grows
 * past 1.5 MB) and stops cleanly; that directory is kept as the good copy.
 * Then, each case on a fresh copy of it:
 *   - random bytes (a fixed seed) are written into compatd.db's table pages,
 *     after a clean stop or after kill -9 (the unclean-stop marker left
 *     behind).  `compatd serve` must exit non-zero naming the file, and
 *     `compatd check` must say damaged (exit 1) where it says healthy
 *     (exit 0) on the good copy; `compatd backup` of it must fail and leave
 *     no file;
 *   - the data directory or index/ writable by group or others, and
 *     compatd.db missing or empty beside index/ snapshots: refused, naming
 *     what is wrong.
 * The good copy still serves all N_ITEMS afterwards, and a new data
 * directory is made 0700 with a 0600 database.
 */
#include <fcntl.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check.h"
#include "daemon.h"

#define DIM 64
#define N_ITEMS 5000
#define BATCH 1000
#define DAMAGE_BYTES 64

static char *path_join(const char *dir, const char *name)
{
    return td_fmt("%s/%s", dir, name);
}

static bool exists(const char *path)
{
    struct stat sb;
    return stat(path, &sb) == 0;
}

static int mode_of(const char *path)
{
    struct stat sb;
    return stat(path, &sb) == 0 ? (int)(sb.st_mode & 07777) : -1;
}

/* Runs argv (a program on PATH) and expects exit status 0. */
static void run_ok(const char *const *argv)
{
    char *err = NULL;
    int status = td_run(argv, NULL, &err);
    if (status != 0)
        fprintf(stderr, "%s %s: status %d: %s\n", argv[0], argv[1], status, err ? err : "");
    REQUIRE(status == 0);
    free(err);
}

/* Makes the data directory data a copy of good (files, modes and all). */
static void restore(const char *good, const char *data)
{
    run_ok((const char *const[]){"rm", "-rf", data, NULL});
    run_ok((const char *const[]){"cp", "-a", good, data, NULL});
}

/* Writes n bytes of rng into the file at offset. */
static void damage(const char *path, long offset, size_t n, td_rng *rng)
{
    unsigned char bytes[DAMAGE_BYTES];
    REQUIRE(n <= sizeof bytes);
    for (size_t i = 0; i < n; i++)
        bytes[i] = (unsigned char)td_rng_next(rng);
    int fd = open(path, O_WRONLY);
    REQUIRE(fd >= 0);
    REQUIRE(pwrite(fd, bytes, n, offset) == (ssize_t)n);
    REQUIRE(fsync(fd) == 0);
    close(fd);
}

/* `compatd check --data data`: expects status want and says in its output. */
static void check_says(const char *data, int want, const char *says)
{
    char *out = NULL;
    int status = td_run_compatd((const char *const[]){"check", "--data", data, NULL}, &out);
    bool said = out && strstr(out, says);
    if (status != want || !said)
        fprintf(stderr, "compatd check --data %s: status %d (want %d and \"%s\"):\n%s", data,
                status, want, says, out ? out : "");
    CHECK_EQ(status, want);
    CHECK(said);
    free(out);
}

/* The vector of item it<MARK_ITEM>, kept to find its page in the file. */
#define MARK_ITEM (N_ITEMS / 2)
static float mark[DIM];

/* Fills gallery g with N_ITEMS vectors of model a. */
static void fill(td_http *h, td_rng *rng)
{
    td_reply r;
    CHECK_EQ(td_http_call(h, &r, 201, "POST", "/v1/models",
                          "{\"name\":\"a\",\"dim\":64,\"metric\":\"l2\"}"), 201);
    td_reply_finish(&r);
    CHECK_EQ(td_http_call(h, &r, 201, "POST", "/v1/galleries", "{\"name\":\"g\",\"model\":\"a\"}"),
             201);
    td_reply_finish(&r);
    float *v = malloc(sizeof(float) * BATCH * DIM);
    REQUIRE(v != NULL);
    for (size_t from = 0; from < N_ITEMS; from += BATCH) {
        td_text t = {0};
        td_text_append(&t, "{\"model\":\"a\",\"items\":[");
        for (size_t i = 0; i < BATCH * DIM; i++)
            v[i] = (float)td_rng_gauss(rng);
        if (MARK_ITEM >= from && MARK_ITEM < from + BATCH)
            memcpy(mark, v + (MARK_ITEM - from) * DIM, sizeof mark);
        for (size_t i = 0; i < BATCH; i++) {
            char *b64 = td_b64_floats(v + i * DIM, DIM);
            REQUIRE(b64 != NULL);
            td_text_append(&t, "%s{\"id\":\"it%zu\",\"label\":\"L%zu\",\"vector_b64\":\"%s\"}",
                           i ? "," : "", from + i, (from + i) % 7, b64);
            free(b64);
        }
        td_text_append(&t, "]}");
        CHECK_EQ(td_http_call(h, &r, 200, "POST", "/v1/galleries/g/items", t.s), 200);
        td_reply_finish(&r);
        free(t.s);
    }
    free(v);
}

/*
 * The first byte of the page of db that holds item it<MARK_ITEM>'s vector
 * (a leaf page of the embeddings table), found by its bytes, so that the
 * damage lands in a table's pages whatever the file's layout.
 */
static long mark_page(const char *db)
{
    struct stat sb;
    REQUIRE(stat(db, &sb) == 0 && sb.st_size > 100);
    size_t n = (size_t)sb.st_size;
    char *bytes = malloc(n);
    REQUIRE(bytes != NULL);
    FILE *f = fopen(db, "rb");
    REQUIRE(f != NULL);
    REQUIRE(fread(bytes, 1, n, f) == n);
    fclose(f);
    long page = ((unsigned char)bytes[16] << 8) | (unsigned char)bytes[17];
    if (page == 1)
        page = 65536;
    void *at = memmem(bytes, n, mark, sizeof mark);
    REQUIRE(at != NULL);
    long offset = (long)((char *)at - bytes);
    free(bytes);
    return offset / page * page;
}

/* One way to damage compatd.db. */
typedef struct damage_case {
    const char *what;
    long offset;        /* where DAMAGE_BYTES random bytes go */
    bool kill;          /* stopped with kill -9 (else SIGTERM) before */
} damage_case;

int main(void)
{
    td_rng rng = {td_seed(20261204)};
    td_daemon *d = NULL;
    td_http *h = NULL;
    REQUIRE(td_daemon_start_client(NULL, &d, &h));
    const char *data = td_daemon_data_dir(d);
    char *db = path_join(data, "compatd.db"), *index = path_join(data, "index");
    char *marker = path_join(data, "compatd.running");
    char *good = path_join(td_daemon_dir(d), "good");
    char *saved = path_join(td_daemon_dir(d), "compatd.db.saved");

    /* A new data directory is private. */
    CHECK_EQ(mode_of(data), 0700);
    CHECK_EQ(mode_of(index), 0700);
    CHECK_EQ(mode_of(db), 0600);
    fill(h, &rng);
    char *wal = path_join(data, "compatd.db-wal");
    CHECK_EQ(mode_of(wal), 0600);
    free(wal);
    CHECK(exists(marker));
    CHECK_EQ(td_daemon_stop(d), 0);
    CHECK(!exists(marker));
    struct stat sb;
    REQUIRE(stat(db, &sb) == 0);
    CHECK(sb.st_size > 1600 * 1000 + DAMAGE_BYTES);
    check_says(data, 0, "is healthy");
    check_says(data, 0, "5000 embeddings");
    restore(data, good);

    /* The page that holds a known vector, a leaf of the embeddings
     * table: its header, and its cell pointers (from byte 8 of a leaf
     * page), which a scan follows without an error to the wrong cells. */
    long page = mark_page(db);
    fprintf(stderr, "item it%d's vector is on the page at %ld\n", MARK_ITEM, page);
    const damage_case cases[] = {
        {"page header, clean stop", page, false},
        {"page header, kill -9", page, true},
        {"cell pointers, clean stop", page + 8, false},
        {"cell pointers, kill -9", page + 8, true},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const damage_case *c = &cases[i];
        fprintf(stderr, "damage: %s\n", c->what);
        restore(good, data);
        if (c->kill) {
            REQUIRE(td_daemon_start(d, NULL));
            CHECK_EQ(td_daemon_kill(d), 0);
            CHECK(exists(marker));
        }
        td_rng dr = {0x5eed0000u + i};
        damage(db, c->offset, DAMAGE_BYTES, &dr);
        /* Never ready (a daemon that serves would hang td_serve_refused). */
        bool ready = td_daemon_start(d, NULL);
        CHECK(!ready);
        if (ready) {
            fprintf(stderr, "served a damaged database: %ld items\n", td_gallery_count(h, "g"));
            CHECK_EQ(td_daemon_stop(d), 0);
        } else {
            CHECK(td_serve_refused(d, NULL, 1, "compatd.db is damaged"));
            CHECK(td_serve_refused(d, NULL, 1, "compatd check"));
        }
        check_says(data, 1, "is DAMAGED");
        /* A backup of it does not pass the same check and leaves nothing. */
        char *to = path_join(td_daemon_dir(d), "backup");
        char *to_db = path_join(to, "compatd.db");
        char *out = NULL;
        int status = td_run_compatd((const char *const[]){"backup", "--data", data, "--to", to,
                                                          NULL}, &out);
        if (status != 1 || !out || !strstr(out, "does not pass the check"))
            fprintf(stderr, "backup of a damaged database: status %d: %s\n", status,
                    out ? out : "");
        CHECK_EQ(status, 1);
        CHECK(out && strstr(out, "does not pass the check"));
        CHECK(!exists(to_db));
        free(out);
        run_ok((const char *const[]){"rm", "-rf", to, NULL});
        free(to);
        free(to_db);
        /* Nor is it compacted: refused, the file as it was. */
        struct stat was, now;
        REQUIRE(stat(db, &was) == 0);
        status = td_run_compatd((const char *const[]){"compact", "--data", data, NULL}, &out);
        CHECK_EQ(status, 1);
        CHECK(out && strstr(out, "not compacted") && strstr(out, "DAMAGED"));
        free(out);
        REQUIRE(stat(db, &now) == 0);
        CHECK_EQ(now.st_size, was.st_size);
        CHECK_EQ(now.st_mtim.tv_nsec, was.st_mtim.tv_nsec);
    }

    /* Directories others could write into. */
    restore(good, data);
    const struct {
        const char *dir;
        int mode;
    } open_dirs[] = {{data, 0770}, {data, 0707}, {index, 0777}};
    for (size_t i = 0; i < sizeof open_dirs / sizeof open_dirs[0]; i++) {
        REQUIRE(chmod(open_dirs[i].dir, (mode_t)open_dirs[i].mode) == 0);
        CHECK(td_serve_refused(d, NULL, 1, "writable by group or others"));
        REQUIRE(chmod(open_dirs[i].dir, 0700) == 0);
    }

    /* A database lost beside the index snapshots. */
    REQUIRE(rename(db, saved) == 0);
    CHECK(td_serve_refused(d, NULL, 1, "compatd.db is missing but"));
    CHECK(!exists(db));
    int fd = open(db, O_WRONLY | O_CREAT | O_EXCL, 0600);
    REQUIRE(fd >= 0);
    close(fd);
    CHECK(td_serve_refused(d, NULL, 1, "compatd.db is empty but"));
    REQUIRE(rename(saved, db) == 0);

    /* The good copy serves everything. */
    REQUIRE(td_daemon_start(d, NULL));
    CHECK_EQ(td_gallery_count(h, "g"), N_ITEMS);
    CHECK_EQ(td_daemon_stop(d), 0);

    td_http_destroy(h);
    td_daemon_destroy(d);
    free(db);
    free(index);
    free(marker);
    free(good);
    free(saved);
    return check_exit();
}
