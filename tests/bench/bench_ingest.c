/*
 * bench_ingest.c - durable ingest through `compatd import` over HTTP next
 * to raw SQLite inserts of the same (gallery, id, vector) rows, in C, in
 * the same run and on the same file system (the machine is shared and
 * noisy, so what matters is the ratio of runs interleaved in time), and
 * pgvector's binary COPY when the machine has PostgreSQL and pgvector.
 *
 *   bench_ingest [N [ROUNDS]]     (defaults 1000000 x 128, 1 round;
 *                                  COMPATD = the daemon)
 *
 * compatd: a fresh Flat ip gallery per round, the vectors and ids as
 * files, `compatd import --batch 10000` (binary batches, two in flight),
 * timed from the command's start to its exit: every batch acknowledged,
 * so committed with synchronous = FULL.
 *
 * SQLite: a fresh database with the settings core/store.c gives its own
 * (16 KiB pages, WAL, synchronous = FULL, 64 MiB cache, a checkpoint every
 * 40 MiB of WAL), a rowid table of (gallery, id, vector) with a unique
 * (gallery, id) index (what an upsert needs to find an item), 10,000-row
 * transactions of one prepared INSERT.
 *
 * pgvector: initdb into a temporary directory, a server on a Unix socket
 * there (fsync and synchronous_commit on, the defaults), a table of
 * (gallery int, id text primary key, vector vector(128)), and `\copy ...
 * (FORMAT binary)` of a file written here.  Skipped, with a message, when
 * PostgreSQL's initdb or pgvector's vector.control is not found, or when
 * running as root (initdb refuses).
 */
#include <glob.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sqlite3.h>

#include "../daemon.h"

#define DIM 128
#define TX_ROWS 10000
#define PG_GLOB "/usr/lib/postgresql/*/bin/initdb"
#define PGVECTOR_GLOB "/usr/share/postgresql/*/extension/vector.control"

static void die(const char *what, const char *detail)
{
    fprintf(stderr, "bench_ingest: %s%s%s\n", what, detail ? ": " : "", detail ? detail : "");
    exit(1);
}

static void write_file(const char *path, const void *data, size_t n)
{
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(data, 1, n, f) != n || fclose(f) != 0)
        die("cannot write", path);
}

static void post(td_http *h, const char *path, const char *body)
{
    td_reply r;
    if (td_http_json(h, "POST", path, body, &r) != 201)
        die("setup request failed", r.body);
    td_reply_finish(&r);
}

/* Items per second of `compatd import` of the files into a new gallery. */
static double compatd_rate(td_daemon *d, td_http *h, int round, const char *vec,
                           const char *ids, size_t n)
{
    char gallery[32], url[64], body[128];
    snprintf(gallery, sizeof gallery, "bench-%d", round);
    snprintf(url, sizeof url, "http://127.0.0.1:%d", td_daemon_port(d));
    snprintf(body, sizeof body, "{\"name\":\"%s\",\"model\":\"b128\",\"index\":\"Flat\"}",
             gallery);
    post(h, "/v1/galleries", body);
    const char *args[] = {"import", "--url", url, "--gallery", gallery, "--model", "b128",
                          "--vectors", vec, "--ids", ids, "--batch", "10000", "--quiet", NULL};
    char *out = NULL;
    double t0 = td_now();
    int rc = td_run_compatd(args, &out);
    double t = td_now() - t0;
    if (rc != 0)
        die("compatd import failed", out);
    free(out);
    if (td_gallery_count(h, gallery) != (long)n)
        die("the gallery does not hold every item", gallery);
    return (double)n / t;
}

static void exec_sql(sqlite3 *db, const char *sql)
{
    char *msg = NULL;
    if (sqlite3_exec(db, sql, NULL, NULL, &msg) != SQLITE_OK)
        die(sql, msg);
}

/* Items per second of raw SQLite inserts of the same rows. */
static double sqlite_rate(const char *path, const float *v, char *const *ids, size_t n)
{
    sqlite3 *db;
    sqlite3_stmt *ins;
    unlink(path);
    if (sqlite3_open(path, &db) != SQLITE_OK)
        die("cannot open", path);
    exec_sql(db, "PRAGMA page_size = 16384; PRAGMA journal_mode = WAL;"
                 " PRAGMA synchronous = FULL; PRAGMA cache_size = -65536;"
                 " PRAGMA wal_autocheckpoint = 2560; PRAGMA journal_size_limit = 67108864");
    exec_sql(db, "CREATE TABLE items (gallery INTEGER NOT NULL, id TEXT NOT NULL,"
                 " vector BLOB NOT NULL, UNIQUE (gallery, id))");
    if (sqlite3_prepare_v2(db, "INSERT INTO items (gallery, id, vector) VALUES (1, ?1, ?2)", -1,
                           &ins, NULL) != SQLITE_OK)
        die("prepare", sqlite3_errmsg(db));
    double t0 = td_now();
    for (size_t i = 0; i < n; i++) {
        if (i % TX_ROWS == 0)
            exec_sql(db, "BEGIN");
        sqlite3_bind_text(ins, 1, ids[i], -1, SQLITE_STATIC);
        sqlite3_bind_blob(ins, 2, v + i * DIM, DIM * sizeof(float), SQLITE_STATIC);
        if (sqlite3_step(ins) != SQLITE_DONE)
            die("insert", sqlite3_errmsg(db));
        sqlite3_reset(ins);
        if ((i + 1) % TX_ROWS == 0 || i + 1 == n)
            exec_sql(db, "COMMIT");
    }
    double t = td_now() - t0;
    sqlite3_finalize(ins);
    if (sqlite3_close(db) != SQLITE_OK)
        die("close", path);
    return (double)n / t;
}

/* The first path matching pattern into out (size cap); false when none. */
static bool first_match(const char *pattern, char *out, size_t cap)
{
    glob_t g;
    bool found = glob(pattern, 0, NULL, &g) == 0 && g.gl_pathc > 0;
    if (found)
        snprintf(out, cap, "%s", g.gl_pathv[0]);
    globfree(&g);
    return found;
}

static void put_be(FILE *f, uint64_t v, int bytes)
{
    for (int k = bytes - 1; k >= 0; k--)
        fputc((int)(v >> (8 * k)) & 0xff, f);
}

/* The rows as PostgreSQL's binary COPY format, pgvector's vector in its
 * binary form (u16 dim, u16 0, float32 values, all big-endian). */
static void write_pgcopy(const char *path, const float *v, char *const *ids, size_t n)
{
    FILE *f = fopen(path, "wb");
    if (!f)
        die("cannot write", path);
    fwrite("PGCOPY\n\377\r\n\0", 1, 11, f);
    put_be(f, 0, 4);    /* flags */
    put_be(f, 0, 4);    /* header extension */
    for (size_t i = 0; i < n; i++) {
        size_t len = strlen(ids[i]);
        put_be(f, 3, 2);
        put_be(f, 4, 4);
        put_be(f, 1, 4);
        put_be(f, len, 4);
        fwrite(ids[i], 1, len, f);
        put_be(f, 4 + 4 * DIM, 4);
        put_be(f, DIM, 2);
        put_be(f, 0, 2);
        for (size_t d = 0; d < DIM; d++) {
            uint32_t u;
            memcpy(&u, &v[i * DIM + d], 4);
            put_be(f, u, 4);
        }
    }
    put_be(f, 0xffff, 2);
    if (fclose(f) != 0)
        die("cannot write", path);
}

/* Runs a shell command; false (having printed it) when it fails. */
static bool run(const char *cmd)
{
    int rc = system(cmd);
    if (rc != 0)
        fprintf(stderr, "bench_ingest: failed (%d): %s\n", rc, cmd);
    return rc == 0;
}

/* Items per second of pgvector's binary COPY, or 0 (with the reason
 * printed) when the machine cannot run it. */
static double pgvector_rate(const char *dir, const float *v, char *const *ids, size_t n)
{
    char initdb[512], control[512], bin[512];
    if (!first_match(PG_GLOB, initdb, sizeof initdb)) {
        printf("pgvector: skipped: no PostgreSQL server (%s)\n", PG_GLOB);
        return 0;
    }
    if (!first_match(PGVECTOR_GLOB, control, sizeof control)) {
        printf("pgvector: skipped: PostgreSQL is here but pgvector is not (%s)\n",
               PGVECTOR_GLOB);
        return 0;
    }
    if (geteuid() == 0) {
        printf("pgvector: skipped: running as root, which initdb refuses\n");
        return 0;
    }
    snprintf(bin, sizeof bin, "%.*s", (int)(strrchr(initdb, '/') - initdb), initdb);
    char *copy = td_fmt("%s/rows.pgcopy", dir), *pgdata = td_fmt("%s/pg", dir);
    write_pgcopy(copy, v, ids, n);
    double rate = 0;
    char *cmd = td_fmt("'%s/initdb' -A trust -D '%s' >/dev/null && '%s/pg_ctl' -D '%s' -w -l "
                       "'%s/pg.log' -o \"-k '%s' -c listen_addresses=''\" start >/dev/null",
                       bin, pgdata, bin, pgdata, dir, dir);
    if (run(cmd)) {
        char *psql = td_fmt("'%s/psql' -h '%s' -d postgres -q -v ON_ERROR_STOP=1", bin, dir);
        char *setup = td_fmt("%s -c 'CREATE EXTENSION vector' -c 'CREATE TABLE items (gallery "
                             "int NOT NULL, id text PRIMARY KEY, vector vector(%d) NOT NULL)'",
                             psql, DIM);
        char *load = td_fmt("%s -c \"\\copy items FROM '%s' WITH (FORMAT binary)\"", psql, copy);
        double t0 = td_now();
        if (run(setup) && (t0 = td_now(), run(load)))
            rate = (double)n / (td_now() - t0);
        free(load);
        free(setup);
        free(psql);
        free(cmd);
        cmd = td_fmt("'%s/pg_ctl' -D '%s' -w stop -m fast >/dev/null", bin, pgdata);
        run(cmd);
    }
    free(cmd);
    free(pgdata);
    free(copy);
    return rate;
}

int main(int argc, char **argv)
{
    size_t n = argc > 1 ? strtoul(argv[1], NULL, 10) : 1000000;
    int rounds = argc > 2 ? atoi(argv[2]) : 1;
    if (n == 0 || rounds < 1)
        die("usage: bench_ingest [N [ROUNDS]]", NULL);
    td_daemon *d = td_daemon_create();
    if (!d)
        die("cannot make a daemon directory", NULL);
    const char *dir = td_daemon_dir(d);
    char *vec = td_fmt("%s/vectors.f32", dir), *idpath = td_fmt("%s/ids.txt", dir);
    char *db = td_fmt("%s/raw.sqlite", dir);
    float *v = malloc(n * DIM * sizeof *v);
    char **ids = malloc(n * sizeof *ids);
    if (!v || !ids)
        die("out of memory", NULL);
    td_rng rng = {td_seed(16)};
    for (size_t i = 0; i < n * DIM; i++)
        v[i] = (float)td_rng_gauss(&rng);
    td_text lines = {0};
    for (size_t i = 0; i < n; i++) {
        ids[i] = td_fmt("item-%zu", i);
        td_text_append(&lines, "%s\n", ids[i]);
    }
    write_file(vec, v, n * DIM * sizeof *v);
    write_file(idpath, lines.s, lines.len);
    free(lines.s);

    if (!td_daemon_start(d, NULL))
        die("the daemon did not start", NULL);
    td_http *h = td_http_create(d);
    post(h, "/v1/models", "{\"name\":\"b128\",\"dim\":128,\"metric\":\"ip\"}");
    printf("durable ingest of %zu x %d float32 (10,000 rows a transaction or batch)\n", n, DIM);
    printf("%-6s %16s %16s %8s\n", "round", "compatd items/s", "SQLite items/s", "ratio");
    double sum_ratio = 0, sum_compatd = 0;
    for (int r = 0; r < rounds; r++) {
        double c = compatd_rate(d, h, r, vec, idpath, n);
        double s = sqlite_rate(db, v, ids, n);
        printf("%-6d %16.0f %16.0f %7.2fx\n", r + 1, c, s, c / s);
        sum_ratio += c / s;
        sum_compatd += c;
        unlink(db);
    }
    printf("compatd import / raw SQLite inserts, mean of %d: %.2fx\n", rounds,
           sum_ratio / rounds);
    td_http_destroy(h);
    if (td_daemon_stop(d) != 0)
        die("the daemon did not stop cleanly", NULL);

    double pg = pgvector_rate(dir, v, ids, n);
    if (pg > 0)
        printf("pgvector binary COPY: %.0f items/s; compatd import / pgvector: %.2fx\n", pg,
               sum_compatd / rounds / pg);
    for (size_t i = 0; i < n; i++)
        free(ids[i]);
    free(ids);
    free(v);
    free(db);
    free(idpath);
    free(vec);
    td_daemon_destroy(d);
    return 0;
}
