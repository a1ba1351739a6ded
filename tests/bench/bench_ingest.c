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
 * engine: the same batches of 10,000 through cd_engine_items_upsert in
 * this process (a fresh gallery of an engine of its own per round): the
 * store and index without HTTP, the command line or the body's checks,
 * so that compatd / engine is what the transport costs and engine /
 * SQLite what compatd's store and index cost over bare inserts.
 *
 * SQLite: a fresh database with the settings core/store.c gives its own
 * (16 KiB pages, WAL, synchronous = FULL, 64 MiB cache, a checkpoint every
 * 40 MiB of WAL), a rowid table of (gallery, id, vector) with a unique
 * (gallery, id) index (what an upsert needs to find an item), 10,000-row
 * transactions of one prepared INSERT.  Then the same rows again into
 * compatd's own two tables (schema/001_init.sql's items and embeddings,
 * their DDL copied here), with the store's statements, in SQL alone: what
 * the schema costs, apart from the engine's code around it.
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
#include "engine.h"

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

/* Items per second of the same batches through the engine in-process. */
static double engine_rate(cd_engine *e, int round, const float *v, char *const *ids, size_t n)
{
    char gallery[32];
    cd_error err;
    snprintf(gallery, sizeof gallery, "bench-%d", round);
    if (cd_engine_gallery_create(e, gallery, "b128", NULL, NULL, &err) != CD_OK)
        die("engine gallery", err.message);
    cd_item_in *items = calloc(TX_ROWS, sizeof *items);
    if (!items)
        die("out of memory", NULL);
    double t0 = td_now();
    for (size_t from = 0; from < n; from += TX_ROWS) {
        size_t m = n - from < TX_ROWS ? n - from : TX_ROWS;
        for (size_t i = 0; i < m; i++)
            items[i] = (cd_item_in){.id = ids[from + i], .vector = v + (from + i) * DIM};
        if (cd_engine_items_upsert(e, gallery, NULL, items, m, &err) != CD_OK)
            die("engine upsert", err.message);
    }
    double t = td_now() - t0;
    free(items);
    return (double)n / t;
}

static void exec_sql(sqlite3 *db, const char *sql)
{
    char *msg = NULL;
    if (sqlite3_exec(db, sql, NULL, NULL, &msg) != SQLITE_OK)
        die(sql, msg);
}

/* The tables of the SQLite references: the bare rows, or compatd's. */
static const char bare_schema[] =
    "CREATE TABLE items (gallery INTEGER NOT NULL, id TEXT NOT NULL,"
    " vector BLOB NOT NULL, UNIQUE (gallery, id))";
static const char compatd_schema[] =
    "CREATE TABLE items (rowid INTEGER PRIMARY KEY AUTOINCREMENT, gallery_id INTEGER NOT NULL,"
    " ext_id TEXT NOT NULL, label TEXT, metadata TEXT, UNIQUE (gallery_id, ext_id));"
    "CREATE TABLE embeddings (gallery_id INTEGER NOT NULL, model_id INTEGER NOT NULL,"
    " item_rowid INTEGER NOT NULL, seq INTEGER NOT NULL, vector BLOB NOT NULL,"
    " PRIMARY KEY (gallery_id, model_id, item_rowid)) WITHOUT ROWID";

static sqlite3_stmt *prepare(sqlite3 *db, const char *sql)
{
    sqlite3_stmt *s;
    if (sqlite3_prepare_v2(db, sql, -1, &s, NULL) != SQLITE_OK)
        die("prepare", sqlite3_errmsg(db));
    return s;
}

static void step(sqlite3 *db, sqlite3_stmt *s)
{
    if (sqlite3_step(s) != SQLITE_DONE)
        die("insert", sqlite3_errmsg(db));
    sqlite3_reset(s);
}

/* Items per second of SQLite inserts of the same rows: into one table of
 * (gallery, id, vector) rows, or (two_tables) into compatd's items and
 * embeddings with the store's statements. */
static double sqlite_rate(const char *path, const float *v, char *const *ids, size_t n,
                          bool two_tables)
{
    sqlite3 *db;
    sqlite3_stmt *item, *emb = NULL;
    unlink(path);
    if (sqlite3_open(path, &db) != SQLITE_OK)
        die("cannot open", path);
    exec_sql(db, "PRAGMA page_size = 16384; PRAGMA journal_mode = WAL;"
                 " PRAGMA synchronous = FULL; PRAGMA cache_size = -65536;"
                 " PRAGMA wal_autocheckpoint = 2560; PRAGMA journal_size_limit = 67108864");
    exec_sql(db, two_tables ? compatd_schema : bare_schema);
    if (two_tables) {
        item = prepare(db, "INSERT INTO items (gallery_id, ext_id, label, metadata)"
                           " VALUES (1, ?1, NULL, NULL) ON CONFLICT (gallery_id, ext_id)"
                           " DO UPDATE SET label = coalesce(excluded.label, label),"
                           " metadata = coalesce(excluded.metadata, metadata)");
        emb = prepare(db, "INSERT INTO embeddings (gallery_id, model_id, item_rowid, seq,"
                          " vector) VALUES (1, 1, ?1, 1, ?2)");
    } else {
        item = prepare(db, "INSERT INTO items (gallery, id, vector) VALUES (1, ?1, ?2)");
    }
    double t0 = td_now();
    for (size_t i = 0; i < n; i++) {
        const float *row = v + i * DIM;
        if (i % TX_ROWS == 0)
            exec_sql(db, "BEGIN");
        sqlite3_bind_text(item, 1, ids[i], -1, SQLITE_STATIC);
        if (!two_tables)
            sqlite3_bind_blob(item, 2, row, DIM * sizeof(float), SQLITE_STATIC);
        step(db, item);
        if (two_tables) {
            sqlite3_bind_int64(emb, 1, sqlite3_last_insert_rowid(db));
            sqlite3_bind_blob(emb, 2, row, DIM * sizeof(float), SQLITE_STATIC);
            step(db, emb);
        }
        if ((i + 1) % TX_ROWS == 0 || i + 1 == n)
            exec_sql(db, "COMMIT");
    }
    double t = td_now() - t0;
    sqlite3_finalize(item);
    sqlite3_finalize(emb);
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
    char *core_dir = td_fmt("%s/inprocess", dir);
    cd_engine_config cfg = {.data_dir = core_dir};
    cd_engine *e = NULL;
    cd_error err;
    cd_model m = {.dim = DIM, .metric = CD_METRIC_IP};
    snprintf(m.name, sizeof m.name, "b128");
    if (cd_engine_open(&cfg, &e, &err) != CD_OK || cd_engine_load_indexes(e, &err) != CD_OK ||
        cd_engine_model_create(e, &m, NULL, &err) != CD_OK)
        die("engine", err.message);
    printf("durable ingest of %zu x %d float32 (10,000 rows a transaction or batch), "
           "items/s\n", n, DIM);
    printf("%-6s %9s %9s %9s %9s %15s %14s %14s\n", "round", "compatd", "engine", "SQLite",
           "SQLite2", "compatd/SQLite", "engine/SQLite", "SQLite2/SQLite");
    double sum_ratio = 0, sum_engine = 0, sum_two = 0, sum_compatd = 0;
    for (int r = 0; r < rounds; r++) {
        double c = compatd_rate(d, h, r, vec, idpath, n);
        double g = engine_rate(e, r, v, ids, n);
        double s = sqlite_rate(db, v, ids, n, false);
        double s2 = sqlite_rate(db, v, ids, n, true);
        printf("%-6d %9.0f %9.0f %9.0f %9.0f %14.2fx %13.2fx %13.2fx\n", r + 1, c, g, s, s2,
               c / s, g / s, s2 / s);
        sum_ratio += c / s;
        sum_engine += g / s;
        sum_two += s2 / s;
        sum_compatd += c;
        unlink(db);
    }
    printf("SQLite: one table of (gallery, id, vector); SQLite2: compatd's items and "
           "embeddings tables\n");
    printf("mean of %d, against raw SQLite inserts: compatd import %.2fx, engine in-process "
           "%.2fx, SQL alone into compatd's tables %.2fx\n", rounds, sum_ratio / rounds,
           sum_engine / rounds, sum_two / rounds);
    cd_engine_close(e);
    free(core_dir);
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
