/*
 * test_store.c - the SQLite store: models, galleries, upsert batches and
 * their all-or-nothing failures, items round trip, deletes and tombstones,
 * the change sequence that feeds indexes, reopening, migration and the
 * files it refuses.  Everything happens in a fresh temporary directory,
 * removed at the end; raw sqlite3 is used only to doctor files.
 */
#include <dirent.h>
#include <math.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "embed.h"
#include "eval_check.h"
#include "old_schema.h"
#include "store.h"

#define DIM 4
#define BIG_BATCH 1000

static char tmpdir[64];

/* tmpdir/name in buf. */
static const char *tmp_path(char *buf, size_t cap, const char *name)
{
    snprintf(buf, cap, "%s/%s", tmpdir, name);
    return buf;
}

static bool file_exists(const char *path)
{
    return access(path, F_OK) == 0;
}

static void remove_tmpdir(void)
{
    DIR *d = opendir(tmpdir);
    struct dirent *e;
    char path[512];
    while (d && (e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0)
            CHECK_EQ(unlink(tmp_path(path, sizeof path, e->d_name)), 0);
    }
    if (d)
        closedir(d);
    CHECK_EQ(rmdir(tmpdir), 0);
}

/* Deterministic, varied float values (signs, magnitudes, fractions). */
static void fill_vector(float *v, int dim, uint64_t seed)
{
    uint64_t x = seed * 0x9E3779B97F4A7C15u + 1;
    for (int i = 0; i < dim; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        v[i] = (float)((int64_t)(x >> 11) - (1LL << 52)) / (float)(1LL << 50);
    }
}

static cd_store *open_ok(const char *path)
{
    cd_error err = {0};
    cd_store *st = NULL;
    CHECK_OK(cd_store_open(path, &st, &err), &err);
    REQUIRE(st != NULL);
    CHECK_EQ(cd_store_schema_version(st), CD_SCHEMA_VERSION);
    return st;
}

/* Closes st and checks that it closed cleanly: the last connection to
 * close checkpoints the WAL and deletes it, which only a clean close does. */
static void close_ok(cd_store *st, const char *path)
{
    char wal[512];
    cd_store_close(st);
    snprintf(wal, sizeof wal, "%s-wal", path);
    CHECK(!file_exists(wal));
}

/* Runs a statement on the file directly, as an operator or a bug might. */
static void raw_sql(const char *path, const char *sql)
{
    sqlite3 *db = NULL;
    CHECK_EQ(sqlite3_open(path, &db), SQLITE_OK);
    CHECK_EQ(sqlite3_exec(db, sql, NULL, NULL, NULL), SQLITE_OK);
    CHECK_EQ(sqlite3_close(db), SQLITE_OK);
}

/* The integer sql yields on the file opened directly, read-only: a count
 * the store's own code took no part in. */
static int64_t raw_int(const char *path, const char *sql)
{
    sqlite3 *db = NULL;
    sqlite3_stmt *s = NULL;
    int64_t value = -1;
    CHECK_EQ(sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    CHECK_EQ(sqlite3_prepare_v2(db, sql, -1, &s, NULL), SQLITE_OK);
    if (sqlite3_step(s) == SQLITE_ROW)
        value = sqlite3_column_int64(s, 0);
    CHECK_EQ(sqlite3_finalize(s), SQLITE_OK);
    CHECK_EQ(sqlite3_close(db), SQLITE_OK);
    return value;
}

/* raw_int of a printf-formatted query. */
static int64_t raw_intf(const char *path, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static int64_t raw_intf(const char *path, const char *fmt, ...)
{
    char sql[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(sql, sizeof sql, fmt, ap);
    va_end(ap);
    return raw_int(path, sql);
}

static bool starts_with(const char *s, const char *prefix)
{
    return strncmp(s, prefix, strlen(prefix)) == 0;
}

/* --- models ------------------------------------------------------------- */

static void test_models(cd_store *st)
{
    static const struct {
        const char *name;
        int dim;
        int metric;
        const char *compatible_with;
        const char *description;
        cd_err expect;
    } cases[] = {
        {"m1", DIM, CD_METRIC_COSINE, "", "first", CD_OK},
        {"m2", DIM, CD_METRIC_COSINE, "m1", "", CD_OK},
        {"l2-model", 8, CD_METRIC_L2, "", "caf\xc3\xa9", CD_OK},
        {"m1", DIM, CD_METRIC_COSINE, "", "", CD_EEXISTS},
        {"", DIM, CD_METRIC_COSINE, "", "", CD_EINVAL},
        {"a/b", DIM, CD_METRIC_COSINE, "", "", CD_EINVAL},
        {"a b", DIM, CD_METRIC_COSINE, "", "", CD_EINVAL},
        {"zero", 0, CD_METRIC_COSINE, "", "", CD_EINVAL},
        {"huge", CD_DIM_MAX + 1, CD_METRIC_COSINE, "", "", CD_EINVAL},
        {"maxdim", CD_DIM_MAX, CD_METRIC_IP, "", "", CD_OK},
        {"badmetric", DIM, 7, "", "", CD_EINVAL},
        {"orphan", DIM, CD_METRIC_COSINE, "nope", "", CD_ENOTFOUND},
        {"badcompat", DIM, CD_METRIC_COSINE, "no pe", "", CD_EINVAL},
        {"otherdim", 8, CD_METRIC_COSINE, "m1", "", CD_EINVAL},
        {"othermetric", DIM, CD_METRIC_L2, "m1", "", CD_EINVAL},
        {"baddesc", DIM, CD_METRIC_COSINE, "", "\xff", CD_EINVAL},
    };
    cd_error err = {0};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        cd_model m = {0}, out;
        snprintf(m.name, sizeof m.name, "%s", cases[i].name);
        m.dim = cases[i].dim;
        m.metric = (cd_metric)cases[i].metric;
        snprintf(m.compatible_with, sizeof m.compatible_with, "%s",
                 cases[i].compatible_with);
        snprintf(m.description, sizeof m.description, "%s",
                 cases[i].description);
        cd_err rc = cd_store_model_create(st, &m, &out, &err);
        if (rc != cases[i].expect)
            fprintf(stderr, "model case %zu: %s\n", i, err.message);
        CHECK_EQ(rc, cases[i].expect);
        if (rc == CD_OK) {
            CHECK(out.id > 0);
            CHECK_STREQ(out.name, cases[i].name);
            CHECK_EQ(out.dim, cases[i].dim);
            CHECK_EQ(out.metric, cases[i].metric);
            CHECK_STREQ(out.compatible_with, cases[i].compatible_with);
            CHECK_STREQ(out.description, cases[i].description);
        } else {
            CHECK_EQ(err.code, rc);
            CHECK(err.message[0] != '\0');
            CHECK_EQ(out.id, 0);
        }
    }

    /* out may be the model given. */
    cd_model same = {.name = "maxdim", .dim = CD_DIM_MAX, .metric = CD_METRIC_IP};
    CHECK_EQ(cd_store_model_create(st, &same, &same, &err), CD_EEXISTS);
    CHECK_EQ(same.id, 0);
    same = (cd_model){.name = "l2-compat", .dim = 8, .metric = CD_METRIC_L2,
                      .compatible_with = "l2-model"};
    CHECK_OK(cd_store_model_create(st, &same, &same, &err), &err);
    CHECK(same.id > 0);
    CHECK_STREQ(same.name, "l2-compat");
    CHECK_STREQ(same.compatible_with, "l2-model");

    cd_model m;
    CHECK_OK(cd_store_model_get(st, "m2", &m, &err), &err);
    CHECK_STREQ(m.name, "m2");
    CHECK_STREQ(m.compatible_with, "m1");
    CHECK_EQ(strlen(m.created_at), 20);
    CHECK(m.created_at[10] == 'T' && m.created_at[19] == 'Z');
    CHECK(strncmp(m.created_at, "20", 2) == 0);
    cd_model by_id;
    CHECK_OK(cd_store_model_get_by_id(st, m.id, &by_id, &err), &err);
    CHECK_STREQ(by_id.name, "m2");
    CHECK_EQ(cd_store_model_get(st, "absent", &m, &err), CD_ENOTFOUND);
    CHECK_EQ(m.id, 0);
    CHECK_EQ(cd_store_model_get(st, "not a name", &m, &err), CD_ENOTFOUND);
    CHECK_EQ(cd_store_model_get_by_id(st, 9999, &m, &err), CD_ENOTFOUND);

    cd_model *list = NULL;
    size_t n = 0;
    CHECK_OK(cd_store_model_list(st, &list, &n, &err), &err);
    static const char *const by_name[] = {"l2-compat", "l2-model", "m1", "m2",
                                          "maxdim"};
    CHECK_EQ(n, 5);
    for (size_t i = 0; i < n && i < 5; i++)
        CHECK_STREQ(list[i].name, by_name[i]);
    free(list);
}

/* --- galleries ---------------------------------------------------------- */

static void test_galleries(cd_store *st)
{
    char long_spec[CD_SPEC_MAX + 2];
    memset(long_spec, 'F', sizeof long_spec - 1);
    long_spec[sizeof long_spec - 1] = '\0';
    const struct {
        const char *name;
        const char *model;
        const char *spec;
        cd_err expect;
    } cases[] = {
        {"g1", "m1", "Flat", CD_OK},
        {"g2", "m1", NULL, CD_OK},          /* the default spec */
        {"g3", "l2-model", "HNSW32", CD_OK},
        {"g1", "m1", "Flat", CD_EEXISTS},
        {"bad name", "m1", "Flat", CD_EINVAL},
        {"", "m1", "Flat", CD_EINVAL},
        {"g9", "absent", "Flat", CD_ENOTFOUND},
        {"g9", "bad model", "Flat", CD_EINVAL},
        {"g9", "m1", "", CD_EINVAL},
        {"g9", "m1", long_spec, CD_EINVAL},
    };
    cd_error err = {0};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        cd_gallery g;
        cd_err rc = cd_store_gallery_create(st, cases[i].name, cases[i].model,
                                            cases[i].spec, &g, &err);
        if (rc != cases[i].expect)
            fprintf(stderr, "gallery case %zu: %s\n", i, err.message);
        CHECK_EQ(rc, cases[i].expect);
        if (rc == CD_OK) {
            CHECK(g.id > 0);
            CHECK_STREQ(g.name, cases[i].name);
            CHECK_STREQ(g.model, cases[i].model);
            CHECK_STREQ(g.index_spec, cases[i].spec ? cases[i].spec : "Flat");
            CHECK_EQ(g.policy, CD_POLICY_VERIFIED);
            CHECK_EQ(g.count, 0);
            CHECK_EQ(g.seq, 0);
            CHECK_EQ(strlen(g.created_at), 20);
        } else {
            CHECK_EQ(g.id, 0);
            CHECK_EQ(err.code, rc);
        }
    }

    cd_gallery g;
    CHECK_OK(cd_store_gallery_get(st, "g2", &g, &err), &err);
    CHECK_OK(cd_store_gallery_set_policy(st, g.id, CD_POLICY_ANY, &err), &err);
    CHECK_EQ(cd_store_gallery_set_policy(st, 9999, CD_POLICY_ANY, &err),
             CD_ENOTFOUND);
    CHECK_EQ(cd_store_gallery_set_policy(st, g.id, (cd_query_policy)9, &err),
             CD_EINVAL);
    CHECK_OK(cd_store_gallery_get(st, "g2", &g, &err), &err);
    CHECK_EQ(g.policy, CD_POLICY_ANY);
    CHECK_EQ(cd_store_gallery_get(st, "absent", &g, &err), CD_ENOTFOUND);

    cd_gallery *list = NULL;
    size_t n = 0;
    CHECK_OK(cd_store_gallery_list(st, &list, &n, &err), &err);
    CHECK_EQ(n, 3);
    for (size_t i = 0; i < n && i < 3; i++) {
        static const char *const names[] = {"g1", "g2", "g3"};
        CHECK_STREQ(list[i].name, names[i]);
    }
    free(list);

    static const struct {
        const char *name;
        cd_query_policy p;
        bool ok;
    } policies[] = {
        {"verified", CD_POLICY_VERIFIED, true},
        {"declared", CD_POLICY_DECLARED, true},
        {"any", CD_POLICY_ANY, true},
        {"Any", CD_POLICY_ANY, false},
        {"", CD_POLICY_ANY, false},
    };
    for (size_t i = 0; i < sizeof policies / sizeof policies[0]; i++) {
        cd_query_policy p;
        CHECK_EQ(cd_policy_parse(policies[i].name, &p), policies[i].ok);
        if (policies[i].ok) {
            CHECK_EQ(p, policies[i].p);
            CHECK_STREQ(cd_policy_name(p), policies[i].name);
        }
    }
    CHECK(!cd_policy_parse(NULL, &(cd_query_policy){0}));
}

/* --- upsert -------------------------------------------------------------- */

typedef struct fixture {
    cd_store *st;
    const char *path;       /* the database file */
    int64_t g1, g2;         /* gallery ids */
    int64_t m1, m2, l2;     /* model ids */
} fixture;

static void fixture_load(fixture *f)
{
    cd_error err = {0};
    cd_gallery g;
    cd_model m;
    CHECK_OK(cd_store_gallery_get(f->st, "g1", &g, &err), &err);
    f->g1 = g.id;
    CHECK_OK(cd_store_gallery_get(f->st, "g2", &g, &err), &err);
    f->g2 = g.id;
    CHECK_OK(cd_store_model_get(f->st, "m1", &m, &err), &err);
    f->m1 = m.id;
    CHECK_OK(cd_store_model_get(f->st, "m2", &m, &err), &err);
    f->m2 = m.id;
    CHECK_OK(cd_store_model_get(f->st, "l2-model", &m, &err), &err);
    f->l2 = m.id;
}

static int64_t gallery_seq(cd_store *st, const char *name, int64_t *count)
{
    cd_error err = {0};
    cd_gallery g;
    CHECK_OK(cd_store_gallery_get(st, name, &g, &err), &err);
    if (count)
        *count = g.count;
    return g.seq;
}

static void test_upsert(fixture *f)
{
    cd_error err = {0};
    float v[3][DIM];
    for (int i = 0; i < 3; i++)
        fill_vector(v[i], DIM, (uint64_t)i);
    cd_item_in first[] = {
        {"a", "cat", "{\"n\":1}", v[0]},
        {"b", NULL, NULL, v[1]},
        {"caf\xc3\xa9", "dog", NULL, v[2]},
    };
    int64_t rowids[3], seq;
    bool replaced[3];
    CHECK_OK(cd_store_items_upsert(f->st, f->g1, f->m1, DIM, first, 3, &seq,
                                   rowids, replaced, &err), &err);
    CHECK_EQ(seq, 1);
    CHECK(rowids[0] > 0 && rowids[1] > rowids[0] && rowids[2] > rowids[1]);
    for (int i = 0; i < 3; i++)
        CHECK(!replaced[i]);
    int64_t count;
    CHECK_EQ(gallery_seq(f->st, "g1", &count), 1);
    CHECK_EQ(count, 3);

    /* "a" again without label or metadata keeps both; "b" gets a label;
     * "d" is new. */
    cd_item_in second[] = {
        {"a", NULL, NULL, v[1]},
        {"b", "bird", "{}", v[0]},
        {"d", NULL, NULL, v[2]},
    };
    int64_t rowids2[3];
    CHECK_OK(cd_store_items_upsert(f->st, f->g1, f->m1, DIM, second, 3, &seq,
                                   rowids2, replaced, &err), &err);
    CHECK_EQ(seq, 2);
    CHECK_EQ(rowids2[0], rowids[0]);
    CHECK_EQ(rowids2[1], rowids[1]);
    CHECK(rowids2[2] > rowids[2]);
    CHECK(replaced[0] && replaced[1] && !replaced[2]);
    CHECK_EQ(gallery_seq(f->st, "g1", &count), 2);
    CHECK_EQ(count, 4);

    cd_item *item = NULL;
    CHECK_OK(cd_store_item_get(f->st, f->g1, "a", false, &item, &err), &err);
    if (item) {
        CHECK_STREQ(item->id, "a");
        CHECK_STREQ(item->label, "cat");
        CHECK_STREQ(item->metadata, "{\"n\":1}");
        CHECK_EQ(item->n_embeddings, 1);
        CHECK(item->embeddings[0].vector == NULL);
    }
    cd_item_destroy(item);
    CHECK_OK(cd_store_item_get(f->st, f->g1, "b", false, &item, &err), &err);
    if (item) {
        CHECK_STREQ(item->label, "bird");
        CHECK_STREQ(item->metadata, "{}");
    }
    cd_item_destroy(item);
    CHECK_OK(cd_store_item_get(f->st, f->g1, "d", false, &item, &err), &err);
    if (item) {
        CHECK(item->label == NULL);
        CHECK(item->metadata == NULL);
    }
    cd_item_destroy(item);

    /* A second model's embedding for "a" (a backfill) is not a replacement
     * and adds no item; replaced may be NULL. */
    cd_item_in backfill[] = {{"a", NULL, NULL, v[2]}};
    CHECK_OK(cd_store_items_upsert(f->st, f->g1, f->m2, DIM, backfill, 1, &seq,
                                   rowids, replaced, &err), &err);
    CHECK(!replaced[0]);
    CHECK_EQ(rowids[0], rowids2[0]);
    CHECK_EQ(seq, 3);
    CHECK_OK(cd_store_items_upsert(f->st, f->g1, f->m2, DIM, backfill, 1, &seq,
                                   rowids, NULL, &err), &err);
    CHECK_EQ(seq, 4);
    CHECK_EQ(gallery_seq(f->st, "g1", &count), 4);
    CHECK_EQ(count, 4);

    /* The same id in another gallery is another item. */
    CHECK_OK(cd_store_items_upsert(f->st, f->g2, f->m1, DIM, backfill, 1, &seq,
                                   rowids, replaced, &err), &err);
    CHECK_EQ(seq, 1);
    CHECK(rowids[0] != rowids2[0]);
    CHECK(!replaced[0]);

    cd_model_count *counts = NULL;
    size_t n = 0;
    CHECK_OK(cd_store_gallery_embeddings(f->st, f->g1, &counts, &n, &err), &err);
    CHECK_EQ(n, 2);
    if (n == 2) {
        CHECK_STREQ(counts[0].model, "m1");
        CHECK_EQ(counts[0].model_id, f->m1);
        CHECK_EQ(counts[0].items, 4);
        CHECK_STREQ(counts[1].model, "m2");
        CHECK_EQ(counts[1].items, 1);
    }
    free(counts);
    int64_t nvec;
    CHECK_OK(cd_store_count_vectors(f->st, f->g1, f->m1, &nvec, &err), &err);
    CHECK_EQ(nvec, 4);
    CHECK_OK(cd_store_count_vectors(f->st, f->g1, f->m2, &nvec, &err), &err);
    CHECK_EQ(nvec, 1);
    CHECK_OK(cd_store_count_vectors(f->st, f->g1, f->l2, &nvec, &err), &err);
    CHECK_EQ(nvec, 0);
}

/* How to spoil item 500 of a batch of BIG_BATCH. */
typedef enum spoil {
    SPOIL_EMPTY_ID,
    SPOIL_NULL_ID,
    SPOIL_LONG_ID,
    SPOIL_BAD_UTF8_ID,
    SPOIL_LONG_LABEL,
    SPOIL_BAD_UTF8_LABEL,
    SPOIL_LONG_METADATA,
    SPOIL_NAN,
    SPOIL_INF,
    SPOIL_NULL_VECTOR,
    SPOIL_DUPLICATE,
} spoil;

static void test_upsert_failures(fixture *f)
{
    static const struct {
        spoil how;
        cd_err expect;
        const char *message;        /* the whole message, when fixed */
    } cases[] = {
        {SPOIL_EMPTY_ID, CD_EINVAL, NULL},
        {SPOIL_NULL_ID, CD_EINVAL, NULL},
        {SPOIL_LONG_ID, CD_EINVAL, NULL},
        {SPOIL_BAD_UTF8_ID, CD_EINVAL, NULL},
        {SPOIL_LONG_LABEL, CD_EINVAL, NULL},
        {SPOIL_BAD_UTF8_LABEL, CD_EINVAL, NULL},
        {SPOIL_LONG_METADATA, CD_EINVAL, NULL},
        {SPOIL_NAN, CD_EVECTOR, NULL},
        {SPOIL_INF, CD_EVECTOR, NULL},
        {SPOIL_NULL_VECTOR, CD_EVECTOR, NULL},
        {SPOIL_DUPLICATE, CD_EINVAL,
         "item 500: id \"new-7\" appears twice in the batch"},
    };
    static char ids[BIG_BATCH][16];
    static float vectors[BIG_BATCH][DIM];
    static cd_item_in items[BIG_BATCH];
    static int64_t rowids[BIG_BATCH];
    char long_id[CD_ITEM_ID_MAX + 2], long_label[CD_LABEL_MAX + 2];
    static char long_metadata[CD_METADATA_MAX + 2];
    memset(long_id, 'i', sizeof long_id - 1);
    long_id[sizeof long_id - 1] = '\0';
    memset(long_label, 'l', sizeof long_label - 1);
    long_label[sizeof long_label - 1] = '\0';
    memset(long_metadata, ' ', sizeof long_metadata - 1);
    long_metadata[0] = '{';
    long_metadata[sizeof long_metadata - 2] = '}';
    long_metadata[sizeof long_metadata - 1] = '\0';
    float bad[DIM] = {0};

    int64_t count_before, seq_before = gallery_seq(f->st, "g1", &count_before);
    cd_error err = {0};
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        for (int i = 0; i < BIG_BATCH; i++) {
            /* Item 0 updates an existing item, the rest are new. */
            snprintf(ids[i], sizeof ids[i], i ? "new-%d" : "a", i);
            fill_vector(vectors[i], DIM, 1000u + (uint64_t)i);
            items[i] = (cd_item_in){ids[i], "x", NULL, vectors[i]};
        }
        cd_item_in *it = &items[500];
        switch (cases[c].how) {
        case SPOIL_EMPTY_ID: it->id = ""; break;
        case SPOIL_NULL_ID: it->id = NULL; break;
        case SPOIL_LONG_ID: it->id = long_id; break;
        case SPOIL_BAD_UTF8_ID: it->id = "a\xc3"; break;
        case SPOIL_LONG_LABEL: it->label = long_label; break;
        case SPOIL_BAD_UTF8_LABEL: it->label = "\xed\xa0\x80"; break;
        case SPOIL_LONG_METADATA: it->metadata = long_metadata; break;
        case SPOIL_NAN: bad[1] = NAN; it->vector = bad; break;
        case SPOIL_INF: bad[1] = -INFINITY; it->vector = bad; break;
        case SPOIL_NULL_VECTOR: it->vector = NULL; break;
        case SPOIL_DUPLICATE: it->id = "new-7"; break;
        }
        int64_t seq = -1;
        cd_err rc = cd_store_items_upsert(f->st, f->g1, f->m1, DIM, items,
                                          BIG_BATCH, &seq, rowids, NULL, &err);
        CHECK_EQ(rc, cases[c].expect);
        CHECK_EQ(err.code, cases[c].expect);
        CHECK_EQ(seq, 0);
        if (!starts_with(err.message, "item 500: "))
            fprintf(stderr, "case %zu: message \"%s\"\n", c, err.message);
        CHECK(starts_with(err.message, "item 500: "));
        if (cases[c].message)
            CHECK_STREQ(err.message, cases[c].message);
        bad[1] = 0;
    }

    /* The whole batch is fine once item 500 is: a 0-length label and
     * metadata at the limits are allowed. */
    long_label[CD_LABEL_MAX] = '\0';
    long_metadata[CD_METADATA_MAX - 1] = '}';
    long_metadata[CD_METADATA_MAX] = '\0';
    items[500] = (cd_item_in){ids[500], long_label, long_metadata,
                              vectors[500]};
    items[501].label = "";
    long_id[CD_ITEM_ID_MAX] = '\0';
    items[502].id = long_id;

    /* A failure inside the transaction, after 500 items were written,
     * rolls them back too.  A trigger put in by hand makes item 500 fail. */
    raw_sql(f->path, "CREATE TRIGGER boom BEFORE INSERT ON items"
                     " WHEN NEW.ext_id = 'new-500'"
                     " BEGIN SELECT RAISE(ABORT, 'boom'); END");
    int64_t seq = -1;
    CHECK_EQ(cd_store_items_upsert(f->st, f->g1, f->m1, DIM, items, BIG_BATCH,
                                   &seq, rowids, NULL, &err),
             CD_ECONFLICT);
    CHECK_EQ(seq, 0);
    CHECK_STREQ(err.message, "item 500: sqlite: boom");
    raw_sql(f->path, "DROP TRIGGER boom");

    /* Failures of the batch as a whole. */
    const struct {
        int64_t gallery, model;
        int dim;
        size_t n;
        cd_err expect;
    } whole[] = {
        {f->g1, f->l2, DIM, BIG_BATCH, CD_EDIM},        /* l2-model: dim 8 */
        {f->g1, 9999, DIM, BIG_BATCH, CD_ENOTFOUND},
        {9999, f->m1, DIM, BIG_BATCH, CD_ENOTFOUND},
        {f->g1, f->m1, 0, BIG_BATCH, CD_EINVAL},
        {f->g1, f->m1, DIM, 0, CD_EINVAL},
    };
    for (size_t c = 0; c < sizeof whole / sizeof whole[0]; c++) {
        seq = -1;
        CHECK_EQ(cd_store_items_upsert(f->st, whole[c].gallery, whole[c].model,
                                       whole[c].dim, items, whole[c].n, &seq,
                                       rowids, NULL, &err),
                 whole[c].expect);
        CHECK_EQ(seq, 0);
    }

    /* Nothing of any failed batch was stored. */
    int64_t count;
    CHECK_EQ(gallery_seq(f->st, "g1", &count), seq_before);
    CHECK_EQ(count, count_before);
    cd_item *item = NULL;
    CHECK_EQ(cd_store_item_get(f->st, f->g1, "new-1", false, &item, &err),
             CD_ENOTFOUND);
    CHECK(item == NULL);
    CHECK_OK(cd_store_item_get(f->st, f->g1, "a", false, &item, &err), &err);
    if (item)
        CHECK_STREQ(item->label, "cat");
    cd_item_destroy(item);

    /* Item 0 ("a") exists in g2, the other 999 are new there. */
    int64_t count2_before, seq2_before = gallery_seq(f->st, "g2",
                                                     &count2_before);
    bool replaced[BIG_BATCH];
    CHECK_OK(cd_store_items_upsert(f->st, f->g2, f->m1, DIM, items, BIG_BATCH,
                                   &seq, rowids, replaced, &err), &err);
    CHECK_EQ(seq, seq2_before + 1);
    CHECK_EQ(gallery_seq(f->st, "g2", &count), seq);
    CHECK_EQ(count, count2_before + BIG_BATCH - 1);
    CHECK(replaced[0]);
    int n_replaced = 0;
    for (int i = 0; i < BIG_BATCH; i++)
        n_replaced += replaced[i];
    CHECK_EQ(n_replaced, 1);
    CHECK_OK(cd_store_item_get(f->st, f->g2, long_id, false, &item, &err),
             &err);
    if (item)
        CHECK_EQ(item->rowid, rowids[502]);
    cd_item_destroy(item);
    CHECK_OK(cd_store_item_get(f->st, f->g2, "new-500", false, &item, &err),
             &err);
    if (item) {
        CHECK_EQ(strlen(item->label), CD_LABEL_MAX);
        CHECK_EQ(strlen(item->metadata), CD_METADATA_MAX);
    }
    cd_item_destroy(item);
    CHECK_OK(cd_store_item_get(f->st, f->g2, "new-501", false, &item, &err),
             &err);
    if (item)
        CHECK_STREQ(item->label, "");
    cd_item_destroy(item);
}

/* --- items: round trip, delete, tombstones, refs -------------------------- */

static void test_item_roundtrip(fixture *f)
{
    /* Values whose bits a lossy path would change. */
    static const float special[8] = {
        0.0f, -0.0f, 1e-45f, 3.4028235e38f, -1.17549435e-38f,
        1.0f / 3.0f, 123456.789f, -2.5f,
    };
    float small[DIM];
    fill_vector(small, DIM, 77);
    cd_error err = {0};
    cd_gallery g3;
    CHECK_OK(cd_store_gallery_get(f->st, "g3", &g3, &err), &err);
    cd_item_in l2_item[] = {{"x", "lab", NULL, special}};
    cd_item_in m1_item[] = {{"x", NULL, NULL, small}};
    int64_t seq, rowid, rowid2;
    CHECK_OK(cd_store_items_upsert(f->st, g3.id, f->l2, 8, l2_item, 1, &seq,
                                   &rowid, NULL, &err), &err);
    CHECK_OK(cd_store_items_upsert(f->st, g3.id, f->m1, DIM, m1_item, 1, &seq,
                                   &rowid2, NULL, &err), &err);
    CHECK_EQ(rowid, rowid2);

    static const struct {
        bool with_vectors;
    } cases[] = {{true}, {false}};
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        cd_item *item = NULL;
        CHECK_OK(cd_store_item_get(f->st, g3.id, "x", cases[c].with_vectors,
                                   &item, &err), &err);
        REQUIRE(item != NULL);
        CHECK_EQ(item->rowid, rowid);
        CHECK_STREQ(item->id, "x");
        CHECK_STREQ(item->label, "lab");
        CHECK_EQ(item->n_embeddings, 2);
        if (item->n_embeddings == 2) {
            /* Ordered by model name: "l2-model" before "m1". */
            CHECK_STREQ(item->embeddings[0].model, "l2-model");
            CHECK_EQ(item->embeddings[0].model_id, f->l2);
            CHECK_EQ(item->embeddings[0].dim, 8);
            CHECK_STREQ(item->embeddings[1].model, "m1");
            CHECK_EQ(item->embeddings[1].dim, DIM);
            if (cases[c].with_vectors) {
                REQUIRE(item->embeddings[0].vector && item->embeddings[1].vector);
                CHECK(memcmp(item->embeddings[0].vector, special,
                             sizeof special) == 0);
                CHECK(memcmp(item->embeddings[1].vector, small,
                             sizeof small) == 0);
            } else {
                CHECK(item->embeddings[0].vector == NULL);
                CHECK(item->embeddings[1].vector == NULL);
            }
        }
        cd_item_destroy(item);
    }
    cd_item *item = (cd_item *)1;
    CHECK_EQ(cd_store_item_get(f->st, g3.id, "y", true, &item, &err),
             CD_ENOTFOUND);
    CHECK(item == NULL);
    CHECK_EQ(cd_store_item_get(f->st, 9999, "x", true, &item, &err),
             CD_ENOTFOUND);
    cd_item_destroy(NULL);
}

static int64_t item_rowid(cd_store *st, int64_t gallery, const char *id)
{
    cd_error err = {0};
    cd_item *item = NULL;
    int64_t rowid = 0;
    CHECK_OK(cd_store_item_get(st, gallery, id, false, &item, &err), &err);
    if (item)
        rowid = item->rowid;
    cd_item_destroy(item);
    return rowid;
}

static void check_tombstones(cd_store *st, int64_t gallery, int64_t after,
                             const int64_t *expect, size_t n_expect)
{
    cd_error err = {0};
    int64_t *rows = NULL;
    size_t n = 99;
    CHECK_OK(cd_store_tombstones(st, gallery, after, &rows, &n, &err), &err);
    CHECK_EQ(n, n_expect);
    for (size_t i = 0; i < n && i < n_expect; i++)
        CHECK_EQ(rows[i], expect[i]);
    if (n == 0)
        CHECK(rows == NULL);
    free(rows);
}

static void test_delete(fixture *f)
{
    cd_error err = {0};
    int64_t b = item_rowid(f->st, f->g1, "b");
    int64_t d = item_rowid(f->st, f->g1, "d");
    int64_t count_before, seq_before = gallery_seq(f->st, "g1", &count_before);
    int64_t rowid, seq_b, seq_d, count, nvec;

    CHECK_OK(cd_store_item_delete(f->st, f->g1, "b", &rowid, &seq_b, &err),
             &err);
    CHECK_EQ(rowid, b);
    CHECK_EQ(seq_b, seq_before + 1);
    CHECK_EQ(gallery_seq(f->st, "g1", &count), seq_b);
    CHECK_EQ(count, count_before - 1);
    cd_item *item = NULL;
    CHECK_EQ(cd_store_item_get(f->st, f->g1, "b", false, &item, &err),
             CD_ENOTFOUND);
    CHECK_OK(cd_store_count_vectors(f->st, f->g1, f->m1, &nvec, &err), &err);
    CHECK_EQ(nvec, count_before - 1);

    /* Failed deletes change nothing, not even the seq. */
    static const struct {
        bool bad_gallery;
        const char *id;
    } failing[] = {{false, "b"}, {false, "never"}, {true, "a"}};
    for (size_t c = 0; c < sizeof failing / sizeof failing[0]; c++) {
        int64_t r = -1, s = -1;
        CHECK_EQ(cd_store_item_delete(f->st, failing[c].bad_gallery ? 9999 : f->g1,
                                      failing[c].id, &r, &s, &err),
                 CD_ENOTFOUND);
        CHECK_EQ(r, 0);
        CHECK_EQ(s, 0);
    }
    CHECK_EQ(gallery_seq(f->st, "g1", NULL), seq_b);

    CHECK_OK(cd_store_item_delete(f->st, f->g1, "d", &rowid, &seq_d, &err),
             &err);
    CHECK_EQ(rowid, d);
    CHECK_EQ(seq_d, seq_b + 1);

    const int64_t both[] = {b, d};
    check_tombstones(f->st, f->g1, 0, both, 2);
    check_tombstones(f->st, f->g1, seq_b, both + 1, 1);
    check_tombstones(f->st, f->g1, seq_d, NULL, 0);
    check_tombstones(f->st, f->g2, 0, NULL, 0);
    CHECK_OK(cd_store_tombstones_prune(f->st, f->g1, seq_b, &err), &err);
    check_tombstones(f->st, f->g1, 0, both + 1, 1);
    CHECK_OK(cd_store_tombstones_prune(f->st, f->g1, seq_d, &err), &err);
    check_tombstones(f->st, f->g1, 0, NULL, 0);

    /* A deleted item's id comes back as a new item with a new rowid. */
    float v[DIM];
    fill_vector(v, DIM, 5);
    cd_item_in again[] = {{"b", NULL, NULL, v}};
    bool replaced;
    int64_t seq;
    CHECK_OK(cd_store_items_upsert(f->st, f->g1, f->m1, DIM, again, 1, &seq,
                                   &rowid, &replaced, &err), &err);
    CHECK(rowid > d);
    CHECK(!replaced);
    CHECK_OK(cd_store_item_get(f->st, f->g1, "b", false, &item, &err), &err);
    if (item)
        CHECK(item->label == NULL);
    cd_item_destroy(item);
}

/*
 * Deleting an item deletes its embeddings of every model: nothing cascades
 * (the hot tables have no foreign keys), store.c does it per model.
 */
static void test_delete_models(fixture *f)
{
    cd_error err = {0};
    cd_gallery g3;
    CHECK_OK(cd_store_gallery_get(f->st, "g3", &g3, &err), &err);
    float v8[8], v4[DIM];
    fill_vector(v8, 8, 41);
    fill_vector(v4, DIM, 42);
    cd_item_in l2_item[] = {{"y", NULL, NULL, v8}};
    cd_item_in m1_item[] = {{"y", NULL, NULL, v4}};
    int64_t rowid, rowid2, seq, l2_before, m1_before, n;
    CHECK_OK(cd_store_count_vectors(f->st, g3.id, f->l2, &l2_before, &err),
             &err);
    CHECK_OK(cd_store_count_vectors(f->st, g3.id, f->m1, &m1_before, &err),
             &err);
    CHECK_OK(cd_store_items_upsert(f->st, g3.id, f->l2, 8, l2_item, 1, &seq,
                                   &rowid, NULL, &err), &err);
    CHECK_OK(cd_store_items_upsert(f->st, g3.id, f->m1, DIM, m1_item, 1, &seq,
                                   &rowid2, NULL, &err), &err);
    CHECK_EQ(rowid, rowid2);
    CHECK_EQ(raw_intf(f->path, "SELECT count(*) FROM embeddings"
                               " WHERE gallery_id = %lld AND item_rowid = %lld",
                      (long long)g3.id, (long long)rowid), 2);

    CHECK_OK(cd_store_item_delete(f->st, g3.id, "y", &rowid2, &seq, &err),
             &err);
    CHECK_EQ(rowid2, rowid);
    CHECK_EQ(raw_intf(f->path, "SELECT count(*) FROM embeddings"
                               " WHERE gallery_id = %lld AND item_rowid = %lld",
                      (long long)g3.id, (long long)rowid), 0);
    CHECK_OK(cd_store_count_vectors(f->st, g3.id, f->l2, &n, &err), &err);
    CHECK_EQ(n, l2_before);
    CHECK_OK(cd_store_count_vectors(f->st, g3.id, f->m1, &n, &err), &err);
    CHECK_EQ(n, m1_before);
    const int64_t dead[] = {rowid};
    check_tombstones(f->st, g3.id, seq - 1, dead, 1);

    /* Back as a new item, with nothing of the old one. */
    bool replaced = true;
    CHECK_OK(cd_store_items_upsert(f->st, g3.id, f->m1, DIM, m1_item, 1, &seq,
                                   &rowid2, &replaced, &err), &err);
    CHECK(rowid2 > rowid);
    CHECK(!replaced);
    cd_item *item = NULL;
    CHECK_OK(cd_store_item_get(f->st, g3.id, "y", true, &item, &err), &err);
    if (item) {
        CHECK_EQ(item->n_embeddings, 1);
        if (item->n_embeddings == 1) {
            CHECK_EQ(item->embeddings[0].model_id, f->m1);
            CHECK(memcmp(item->embeddings[0].vector, v4, sizeof v4) == 0);
        }
    }
    cd_item_destroy(item);
    CHECK_OK(cd_store_item_delete(f->st, g3.id, "y", NULL, NULL, &err), &err);
}

/* --- the change sequence ------------------------------------------------- */

#define SCAN_ITEMS 13

typedef struct scan_log {
    int64_t rowids[SCAN_ITEMS * 2];
    float vectors[SCAN_ITEMS * 2][DIM];
    size_t n;               /* vectors seen */
    size_t calls;
    size_t fail_at_call;    /* 1-based; 0: never fail */
} scan_log;

static cd_err scan_collect(void *ctx, const int64_t *rowids,
                           const float *vectors, size_t n)
{
    scan_log *log = ctx;
    if (++log->calls == log->fail_at_call)
        return CD_EBUSY;
    for (size_t i = 0; i < n && log->n < SCAN_ITEMS * 2; i++, log->n++) {
        log->rowids[log->n] = rowids[i];
        memcpy(log->vectors[log->n], vectors + i * DIM, sizeof log->vectors[0]);
    }
    return CD_OK;
}

static void test_scan(fixture *f)
{
    cd_error err = {0};
    cd_gallery g;
    CHECK_OK(cd_store_gallery_create(f->st, "scan", "m1", "Flat", &g, &err),
             &err);

    /* seq 1: items 0..9; seq 2: items 5..12 (5..9 rewritten); seq 3:
     * item 6 deleted.  seed[i] is item i's current vector. */
    char ids[SCAN_ITEMS][8];
    float v[SCAN_ITEMS][DIM];
    cd_item_in items[SCAN_ITEMS];
    int64_t rowids[SCAN_ITEMS], seq;
    for (int i = 0; i < SCAN_ITEMS; i++) {
        snprintf(ids[i], sizeof ids[i], "s%d", i);
        fill_vector(v[i], DIM, 500u + (uint64_t)i);
        items[i] = (cd_item_in){ids[i], NULL, NULL, v[i]};
    }
    CHECK_OK(cd_store_items_upsert(f->st, g.id, f->m1, DIM, items, 10, &seq,
                                   rowids, NULL, &err), &err);
    CHECK_EQ(seq, 1);
    for (int i = 5; i < SCAN_ITEMS; i++)
        fill_vector(v[i], DIM, 600u + (uint64_t)i);
    CHECK_OK(cd_store_items_upsert(f->st, g.id, f->m1, DIM, items + 5, 8, &seq,
                                   rowids + 5, NULL, &err), &err);
    CHECK_EQ(seq, 2);
    int64_t deleted;
    CHECK_OK(cd_store_item_delete(f->st, g.id, "s6", &deleted, &seq, &err),
             &err);
    CHECK_EQ(seq, 3);
    CHECK_EQ(deleted, rowids[6]);

    static const struct {
        int64_t after_seq;
        size_t batch;
        size_t expect_n;
        size_t expect_calls;
        int first_item;     /* items first_item.. except 6 are expected */
    } cases[] = {
        {0, 1, 12, 12, 0},
        {0, 5, 12, 3, 0},
        {0, 12, 12, 1, 0},
        {0, 1000, 12, 1, 0},
        {1, 2, 7, 4, 5},
        {1, 7, 7, 1, 5},
        {2, 10, 0, 0, 0},
        {3, 10, 0, 0, 0},
        {99, 10, 0, 0, 0},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        scan_log log = {.n = 0};
        int64_t max_seq = -1;
        CHECK_OK(cd_store_scan_vectors(f->st, g.id, f->m1, DIM,
                                       cases[c].after_seq, cases[c].batch,
                                       scan_collect, &log, &max_seq, &err),
                 &err);
        CHECK_EQ(max_seq, 3);
        CHECK_EQ(log.n, cases[c].expect_n);
        CHECK_EQ(log.calls, cases[c].expect_calls);
        size_t k = 0;
        for (int i = cases[c].first_item; log.n && i < SCAN_ITEMS; i++) {
            if (i == 6)
                continue;
            CHECK_EQ(log.rowids[k], rowids[i]);     /* rowid order */
            CHECK(memcmp(log.vectors[k], v[i], sizeof v[i]) == 0);
            k++;
        }
    }
    const int64_t six[] = {rowids[6]};
    check_tombstones(f->st, g.id, 2, six, 1);
    int64_t nvec;
    CHECK_OK(cd_store_count_vectors(f->st, g.id, f->m1, &nvec, &err), &err);
    CHECK_EQ(nvec, SCAN_ITEMS - 1);
    CHECK_EQ(raw_intf(f->path, "SELECT count(*) FROM embeddings"
                               " WHERE gallery_id = %lld AND model_id = %lld",
                      (long long)g.id, (long long)f->m1), SCAN_ITEMS - 1);

    /* Other models and galleries are not mixed in. */
    scan_log log = {.n = 0};
    CHECK_OK(cd_store_scan_vectors(f->st, g.id, f->m2, DIM, 0, 10,
                                   scan_collect, &log, NULL, &err), &err);
    CHECK_EQ(log.calls, 0);

    /* A failing callback stops the scan with its code. */
    log = (scan_log){.fail_at_call = 2};
    CHECK_EQ(cd_store_scan_vectors(f->st, g.id, f->m1, DIM, 0, 5, scan_collect,
                                   &log, NULL, &err),
             CD_EBUSY);
    CHECK_EQ(err.code, CD_EBUSY);
    CHECK_EQ(log.calls, 2);

    static const struct {
        int64_t gallery_delta;  /* added to g.id */
        int dim;
        size_t batch;
        bool null_fn;
        cd_err expect;
    } bad[] = {
        {9999, DIM, 10, false, CD_ENOTFOUND},
        {0, 8, 10, false, CD_ECORRUPT},     /* blobs are DIM floats */
        {0, 0, 10, false, CD_EINVAL},
        {0, DIM, 0, false, CD_EINVAL},
        {0, DIM, 10, true, CD_EINVAL},
    };
    for (size_t c = 0; c < sizeof bad / sizeof bad[0]; c++) {
        int64_t max_seq = -1;
        log = (scan_log){.n = 0};
        CHECK_EQ(cd_store_scan_vectors(f->st, g.id + bad[c].gallery_delta,
                                       f->m1, bad[c].dim, 0, bad[c].batch,
                                       bad[c].null_fn ? NULL : scan_collect,
                                       &log, &max_seq, &err),
                 bad[c].expect);
        CHECK_EQ(max_seq, 0);
    }
}

/* Keeps items whose label is "even" (what a filter would do). */
static bool keep_even(void *ctx, const cd_item *item)
{
    (*(int *)ctx)++;
    return item->label && strcmp(item->label, "even") == 0;
}

/*
 * Paging: id order, a page of limit with *more, each item once across
 * pages, models listed; a predicate drops items over more rows than a
 * page; bulk delete skips absent ids, takes one seq, and nothing changes
 * (not the seq) when no id is present.
 */
static void test_pages(fixture *f)
{
    enum { N = 700 };
    cd_error err = {0};
    cd_gallery g;
    CHECK_OK(cd_store_gallery_create(f->st, "pages", "m1", "Flat", &g, &err), &err);
    static char ids[N][8];
    static float v[N][DIM];
    cd_item_in items[N];
    int64_t rowids[N], seq;
    /* Inserted in reverse: id order is not insertion order. */
    for (int i = 0; i < N; i++) {
        snprintf(ids[i], sizeof ids[i], "p%03d", N - 1 - i);
        fill_vector(v[i], DIM, 900u + (uint64_t)i);
        items[i] = (cd_item_in){ids[i], (N - 1 - i) % 2 ? "odd" : "even", NULL, v[i]};
    }
    CHECK_OK(cd_store_items_upsert(f->st, g.id, f->m1, DIM, items, N, &seq, rowids, NULL,
                                   &err), &err);
    CHECK_OK(cd_store_items_upsert(f->st, g.id, f->m2, DIM, items, 1, &seq, rowids, NULL,
                                   &err), &err);

    char after[16] = "";
    int seen = 0, pages = 0;
    bool more = true;
    while (more) {
        cd_item **page;
        size_t n;
        CHECK_OK(cd_store_items_page(f->st, g.id, after, 64, NULL, &page, &n, &more, &err),
                 &err);
        pages++;
        for (size_t k = 0; k < n; k++) {
            char want[16];
            snprintf(want, sizeof want, "p%03d", seen++);
            CHECK_STREQ(page[k]->id, want);
            CHECK_EQ(page[k]->n_embeddings, strcmp(want, "p699") == 0 ? 2 : 1);
        }
        if (n)
            snprintf(after, sizeof after, "%s", page[n - 1]->id);
        CHECK(n == 64 || !more);
        cd_items_destroy(page, n);
    }
    CHECK_EQ(seen, N);
    CHECK_EQ(pages, (N + 63) / 64);

    /* A predicate keeping half: pages fill from more rows than they hold. */
    int asked = 0;
    cd_item_pred even = {keep_even, &asked};
    cd_item **page;
    size_t n;
    CHECK_OK(cd_store_items_page(f->st, g.id, "p100", 200, &even, &page, &n, &more, &err),
             &err);
    CHECK_EQ(n, 200);
    CHECK(more);
    CHECK_STREQ(page[0]->id, "p102");
    CHECK_STREQ(page[199]->id, "p500");
    cd_items_destroy(page, n);
    CHECK(asked >= 400);
    CHECK_OK(cd_store_items_page(f->st, g.id, "p600", 300, &even, &page, &n, &more, &err),
             &err);
    CHECK_EQ(n, 49);
    CHECK(!more);
    cd_items_destroy(page, n);

    /* Bulk delete. */
    const char *del[] = {"p001", "nope", "p002", "p001"};
    int64_t gone[4];
    size_t deleted;
    int64_t before = 0;
    cd_gallery row;
    CHECK_OK(cd_store_gallery_get(f->st, "pages", &row, &err), &err);
    before = row.seq;
    CHECK_OK(cd_store_items_delete(f->st, g.id, del, 4, gone, &deleted, &seq, &err), &err);
    CHECK_EQ(deleted, 2);
    CHECK_EQ(seq, before + 1);
    CHECK_OK(cd_store_gallery_get(f->st, "pages", &row, &err), &err);
    CHECK_EQ(row.count, N - 2);
    int64_t *tomb = NULL;
    size_t n_tomb = 0;
    CHECK_OK(cd_store_tombstones(f->st, g.id, before, &tomb, &n_tomb, &err), &err);
    CHECK_EQ(n_tomb, 2);
    free(tomb);
    const char *absent[] = {"nope", "p001"};
    CHECK_OK(cd_store_items_delete(f->st, g.id, absent, 2, gone, &deleted, &seq, &err), &err);
    CHECK_EQ(deleted, 0);
    CHECK_EQ(seq, 0);
    CHECK_OK(cd_store_gallery_get(f->st, "pages", &row, &err), &err);
    CHECK_EQ(row.seq, before + 1);
    CHECK_EQ(cd_store_items_delete(f->st, 999999, del, 1, gone, &deleted, &seq, &err),
             CD_ENOTFOUND);
}

static void test_refs(fixture *f)
{
    cd_error err = {0};
    int64_t a = item_rowid(f->st, f->g1, "a");
    int64_t c = item_rowid(f->st, f->g1, "caf\xc3\xa9");
    int64_t d = a + 1000000;    /* never handed out */
    const int64_t rowids[] = {c, d, a, 0, -1, a};
    const char *const ids[] = {"caf\xc3\xa9", NULL, "a", NULL, NULL, "a"};
    const char *const labels[] = {"dog", NULL, "cat", NULL, NULL, "cat"};
    const char *const metadata[] = {NULL, NULL, "{\"n\":1}", NULL, NULL,
                                    "{\"n\":1}"};
    enum { N = sizeof rowids / sizeof rowids[0] };

    static const struct {
        bool with_label, with_metadata;
    } cases[] = {{false, false}, {true, false}, {false, true}, {true, true}};
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        cd_item_ref refs[N];
        CHECK_OK(cd_store_item_refs(f->st, rowids, N, cases[k].with_label,
                                    cases[k].with_metadata, refs, &err), &err);
        for (size_t i = 0; i < N; i++) {
            CHECK_STREQ(refs[i].id, ids[i]);
            CHECK_STREQ(refs[i].label, cases[k].with_label ? labels[i] : NULL);
            CHECK_STREQ(refs[i].metadata,
                        cases[k].with_metadata ? metadata[i] : NULL);
        }
        cd_item_refs_finish(refs, N);
        for (size_t i = 0; i < N; i++)
            CHECK(refs[i].id == NULL);
    }
    CHECK_OK(cd_store_item_refs(f->st, NULL, 0, true, true, NULL, &err), &err);
}

static void test_gallery_delete(fixture *f)
{
    cd_error err = {0};
    cd_gallery old;
    CHECK_OK(cd_store_gallery_get(f->st, "g2", &old, &err), &err);
    CHECK(old.count >= BIG_BATCH);
    int64_t some = item_rowid(f->st, f->g2, "new-9");
    cd_gallery scan;
    CHECK_OK(cd_store_gallery_get(f->st, "scan", &scan, &err), &err);
    int64_t newest = item_rowid(f->st, scan.id, "s12");
    CHECK_OK(cd_store_item_delete(f->st, f->g2, "new-8", NULL, NULL, &err),
             &err);

    CHECK_OK(cd_store_gallery_delete(f->st, old.id, &err), &err);
    CHECK_EQ(cd_store_gallery_delete(f->st, old.id, &err), CD_ENOTFOUND);
    cd_gallery g;
    CHECK_EQ(cd_store_gallery_get(f->st, "g2", &g, &err), CD_ENOTFOUND);
    int64_t nvec = -1;
    CHECK_OK(cd_store_count_vectors(f->st, old.id, f->m1, &nvec, &err), &err);
    CHECK_EQ(nvec, 0);
    check_tombstones(f->st, old.id, 0, NULL, 0);
    cd_item_ref ref;
    CHECK_OK(cd_store_item_refs(f->st, &some, 1, true, true, &ref, &err), &err);
    CHECK(ref.id == NULL);
    cd_model_count *counts = (cd_model_count *)1;
    size_t n = 1;
    CHECK_OK(cd_store_gallery_embeddings(f->st, old.id, &counts, &n, &err),
             &err);
    CHECK_EQ(n, 0);
    free(counts);
    /* Nothing is left behind, looked at with the store's back turned; the
     * other galleries keep theirs. */
    static const char *const tables[] = {"items", "embeddings", "tombstones"};
    for (size_t i = 0; i < sizeof tables / sizeof tables[0]; i++)
        CHECK_EQ(raw_intf(f->path, "SELECT count(*) FROM %s WHERE gallery_id = %lld",
                          tables[i], (long long)old.id), 0);
    int64_t g1_count;
    gallery_seq(f->st, "g1", &g1_count);
    CHECK(g1_count > 0);
    CHECK_EQ(raw_intf(f->path, "SELECT count(*) FROM items WHERE gallery_id = %lld",
                      (long long)f->g1), g1_count);

    /* Ids of galleries and items are never reused. */
    CHECK_OK(cd_store_gallery_create(f->st, "g2", "m1", "Flat", &g, &err), &err);
    CHECK(g.id > old.id);
    CHECK_EQ(g.count, 0);
    CHECK_EQ(g.seq, 0);
    float v[DIM];
    fill_vector(v, DIM, 9);
    cd_item_in one[] = {{"new-9", NULL, NULL, v}};
    int64_t rowid, seq;
    CHECK_OK(cd_store_items_upsert(f->st, g.id, f->m1, DIM, one, 1, &seq,
                                   &rowid, NULL, &err), &err);
    CHECK(rowid > some && rowid > newest);
    CHECK_EQ(seq, 1);
    f->g2 = g.id;
}

/* --- evaluations --------------------------------------------------------- */

static char *xstrdup(const char *s)
{
    char *d = strdup(s);
    REQUIRE(d != NULL);
    return d;
}

/*
 * A report told apart by tag (its skipped count), with a baseline (and
 * flips) and a paragon when asked; NaN where a value is not defined, as
 * cd_eval_run leaves it.  Free with cd_eval_report_destroy().
 */
static cd_eval_report *sample_report(int64_t tag, bool baseline, bool paragon)
{
    cd_eval_report *r = calloc(1, sizeof *r);
    REQUIRE(r != NULL);
    r->n_ks = 3;
    r->ks[0] = 1, r->ks[1] = 5, r->ks[2] = 1000;
    r->primary_k = tag % 2 ? 5 : 0;
    r->queries = 10;
    r->skipped = tag;
    r->gallery_items = 40;
    r->cross = (cd_eval_metrics){{0.7, 0.9, 1}, 1.0 / 3.0};
    r->has_baseline = baseline;
    r->baseline = (cd_eval_metrics){{0.5, NAN, 1}, 0.125};
    r->has_paragon = paragon;
    r->paragon = (cd_eval_metrics){{0.8, 1, 1}, 0.1 + 0.2};
    r->update_gain = (cd_eval_metrics){{2.0 / 3.0, NAN, NAN}, NAN};
    r->compatible = baseline ? (int)(tag % 2) : -1;
    r->primary_cross = tag % 2 ? r->cross.top[1] : r->cross.map;
    r->primary_baseline = !baseline ? NAN : tag % 2 ? r->baseline.top[1] : r->baseline.map;
    if (baseline) {
        r->negative_flips = 2;
        r->positive_flips = 3;
        r->nfr = 0.2;
        r->nfi = NAN;
        r->pfr = 0.3;
    } else {
        r->nfr = r->nfi = r->pfr = NAN;
    }
    static const char *const labels[] = {"b", "7", "a"};
    r->labels = calloc(3, sizeof *r->labels);
    REQUIRE(r->labels != NULL);
    r->n_labels = 3;
    for (int i = 0; i < 3; i++) {
        r->labels[i] = (cd_eval_label){xstrdup(labels[i]), 4 - i, 0.25 * i,
                                       baseline ? 0.5 : NAN, baseline ? 2 - i : 0, 0};
    }
    if (baseline) {
        r->negative_flip_ids = calloc(2, sizeof *r->negative_flip_ids);
        REQUIRE(r->negative_flip_ids != NULL);
        r->negative_flip_ids[0] = xstrdup("p7");
        r->negative_flip_ids[1] = xstrdup("p1");
        r->n_negative_flips = 2;
    }
    return r;
}

static cd_evaluation make_eval(int64_t gallery, int64_t qm, int64_t gm,
                               int compatible, double top1, int64_t tag)
{
    cd_evaluation ev;
    memset(&ev, 0, sizeof ev);
    ev.gallery_id = gallery;
    ev.query_model_id = qm;
    ev.gallery_model_id = gm;
    ev.compatible = compatible;
    snprintf(ev.criterion, sizeof ev.criterion, "top1 %.2f", top1);
    ev.queries = 10;
    ev.cross_top1 = top1;
    ev.baseline_top1 = compatible < 0 ? NAN : 0.5;
    ev.cross_map = 0.25;
    ev.baseline_map = compatible < 0 ? NAN : 0.125;
    ev.nfr = compatible < 0 ? NAN : 0.0625;
    ev.report = sample_report(tag, compatible >= 0, tag != 2);
    ev.report->compatible = compatible;
    ev.report->nfr = ev.nfr;
    return ev;
}

static void test_evaluations(fixture *f)
{
    cd_error err = {0};
    cd_gallery g;
    CHECK_OK(cd_store_gallery_create(f->st, "evals", "m1", "Flat", &g, &err), &err);

    /* The evaluation gallery: labelled items with an m1 embedding, in
     * insertion order; the paragon only while every one has an m2 one. */
    float v[6][DIM];
    for (int i = 0; i < 6; i++)
        fill_vector(v[i], DIM, 100 + (uint64_t)i);
    cd_item_in items[] = {
        {"e0", "A", NULL, v[0]}, {"e1", NULL, NULL, v[1]}, {"e2", "B", NULL, v[2]},
        {"e3", "A", NULL, v[3]},
    };
    int64_t seq, rowids[4];
    CHECK_OK(cd_store_items_upsert(f->st, g.id, f->m1, DIM, items, 4, &seq, rowids, NULL,
                                   &err), &err);
    cd_item_in m2_items[] = {{"e0", NULL, NULL, v[4]}, {"e3", NULL, NULL, v[5]},
                             {"only-m2", "C", NULL, v[5]}};
    CHECK_OK(cd_store_items_upsert(f->st, g.id, f->m2, DIM, m2_items, 3, &seq, rowids, NULL,
                                   &err), &err);
    cd_eval_items it;
    CHECK_OK(cd_store_eval_items(f->st, g.id, f->m1, DIM, f->m2, &it, &err), &err);
    CHECK_EQ(it.n, 3);
    if (it.n == 3) {
        CHECK_STREQ(it.ids[0], "e0");
        CHECK_STREQ(it.ids[1], "e2");
        CHECK_STREQ(it.ids[2], "e3");
        CHECK_STREQ(it.labels[1], "B");
        CHECK(memcmp(it.vectors + DIM, v[2], sizeof v[2]) == 0);
    }
    CHECK(it.paragon == NULL);      /* e2 has no m2 embedding */
    cd_eval_items_finish(&it);
    CHECK(it.n == 0 && it.ids == NULL);
    cd_item_in e2_m2[] = {{"e2", NULL, NULL, v[1]}};
    CHECK_OK(cd_store_items_upsert(f->st, g.id, f->m2, DIM, e2_m2, 1, &seq, rowids, NULL,
                                   &err), &err);
    CHECK_OK(cd_store_eval_items(f->st, g.id, f->m1, DIM, f->m2, &it, &err), &err);
    CHECK_EQ(it.n, 3);
    CHECK(it.paragon != NULL);
    if (it.paragon && it.n == 3) {
        CHECK(memcmp(it.paragon, v[4], sizeof v[4]) == 0);
        CHECK(memcmp(it.paragon + DIM, v[1], sizeof v[1]) == 0);
        CHECK(memcmp(it.paragon + 2 * DIM, v[5], sizeof v[5]) == 0);
    }
    cd_eval_items_finish(&it);
    CHECK_OK(cd_store_eval_items(f->st, g.id, f->m1, DIM, 0, &it, &err), &err);
    CHECK(it.n == 3 && it.paragon == NULL);
    cd_eval_items_finish(&it);
    cd_eval_items_finish(NULL);

    /* Rows: insert, get, list newest first with paging, latest per pair. */
    static const struct {
        int64_t *model;
        int compatible;
        double top1;
        int64_t report;     /* the sample report's tag */
    } rows[] = {
        {NULL, 1, 0.9, 1}, {NULL, 0, 0.4, 2}, {NULL, -1, 0.7, 3}, {NULL, 0, 0.3, 4},
    };
    int64_t qm[] = {f->m2, f->m2, f->m1, f->m2};
    int64_t ids[4];
    for (size_t i = 0; i < 4; i++) {
        cd_evaluation ev = make_eval(g.id, qm[i], f->m1, rows[i].compatible, rows[i].top1,
                                     rows[i].report);
        CHECK_OK(cd_store_evaluation_insert(f->st, &ev, &err), &err);
        CHECK(ev.id > 0 && (i == 0 || ev.id > ids[i - 1]));
        CHECK(starts_with(ev.created_at, "20"));
        ids[i] = ev.id;
        /* The whole report comes back as it went in. */
        cd_evaluation back;
        CHECK_OK(cd_store_evaluation_get(f->st, ev.id, &back, &err), &err);
        CHECK(reports_equal(back.report, ev.report, "stored report"));
        CHECK_STREQ(back.created_at, ev.created_at);
        cd_evaluation_finish(&back);
        cd_evaluation_finish(&ev);
    }
    cd_evaluation got;
    CHECK_OK(cd_store_evaluation_get(f->st, ids[2], &got, &err), &err);
    CHECK(got.report != NULL && got.report->skipped == 3);
    CHECK_STREQ(got.gallery, "evals");
    CHECK_STREQ(got.query_model, "m1");
    CHECK_STREQ(got.gallery_model, "m1");
    CHECK_EQ(got.compatible, -1);
    CHECK(isnan(got.baseline_top1) && isnan(got.nfr));
    CHECK_NEAR(got.cross_top1, 0.7, 1e-12);
    CHECK_STREQ(got.criterion, "top1 0.70");
    cd_evaluation_finish(&got);
    CHECK(got.report == NULL);
    cd_evaluation_finish(NULL);
    CHECK_EQ(cd_store_evaluation_get(f->st, ids[3] + 100, &got, &err), CD_ENOTFOUND);

    cd_evaluation *list = NULL;
    size_t n = 0;
    CHECK_OK(cd_store_evaluation_list(f->st, g.id, 0, 0, 2, true, &list, &n, &err), &err);
    CHECK_EQ(n, 2);
    if (n == 2) {
        CHECK_EQ(list[0].id, ids[3]);
        CHECK_EQ(list[1].id, ids[2]);
        CHECK(list[0].report != NULL && list[0].report->skipped == 4);
        /* A listing's reports have their numbers, not the long lists. */
        if (list[0].report) {
            CHECK_EQ(list[0].report->n_labels, 0);
            CHECK_EQ(list[0].report->n_negative_flips, 0);
            CHECK_EQ(list[0].report->negative_flips, 2);
            CHECK(list[0].report->has_paragon && list[0].report->paragon.map == 0.1 + 0.2);
        }
    }
    cd_evaluations_destroy(list, n);
    CHECK_OK(cd_store_evaluation_list(f->st, g.id, f->m2, ids[3], 10, false, &list, &n, &err),
             &err);
    CHECK_EQ(n, 2);
    if (n == 2) {
        CHECK_EQ(list[0].id, ids[1]);
        CHECK_EQ(list[1].id, ids[0]);
        CHECK(list[0].report == NULL);
    }
    cd_evaluations_destroy(list, n);
    cd_evaluations_destroy(NULL, 0);

    CHECK_OK(cd_store_evaluation_latest(f->st, g.id, 0, &list, &n, &err), &err);
    CHECK_EQ(n, 2);   /* (evals, m1) and (evals, m2), by query model name */
    if (n == 2) {
        CHECK_EQ(list[0].id, ids[2]);
        CHECK_EQ(list[1].id, ids[3]);
        CHECK_EQ(list[1].compatible, 0);
        CHECK(list[1].report == NULL);
    }
    cd_evaluations_destroy(list, n);
    CHECK_OK(cd_store_evaluation_latest(f->st, g.id, f->m2, &list, &n, &err), &err);
    CHECK(n == 1 && list[0].id == ids[3]);
    cd_evaluations_destroy(list, n);

    /* A gallery's evaluations go with it; none can be added to it after. */
    CHECK_OK(cd_store_gallery_delete(f->st, g.id, &err), &err);
    CHECK_EQ(raw_intf(f->path, "SELECT count(*) FROM evaluations WHERE gallery_id = %lld",
                      (long long)g.id), 0);
    static const char *const report_tables[] = {"evaluation_metrics", "evaluation_labels",
                                                "evaluation_flip_ids"};
    for (size_t i = 0; i < sizeof report_tables / sizeof report_tables[0]; i++)
        CHECK_EQ(raw_intf(f->path, "SELECT count(*) FROM %s WHERE evaluation_id BETWEEN %lld"
                          " AND %lld", report_tables[i], (long long)ids[0],
                          (long long)ids[3]), 0);
    CHECK_OK(cd_store_evaluation_latest(f->st, g.id, 0, &list, &n, &err), &err);
    CHECK_EQ(n, 0);
    cd_evaluations_destroy(list, n);
    cd_evaluation late = make_eval(g.id, f->m2, f->m1, 1, 0.9, 5);
    CHECK_EQ(cd_store_evaluation_insert(f->st, &late, &err), CD_ENOTFOUND);
    CHECK_EQ(late.id, 0);
    cd_evaluation_finish(&late);
}

/* --- reads beside writes ------------------------------------------------- */

typedef struct reader_ctx {
    cd_store *st;
    int64_t gallery, model;
    atomic_bool stop;       /* set by the writing thread */
    int failures;
    int rounds;
} reader_ctx;

static cd_err scan_count(void *ctx, const int64_t *rowids, const float *vectors,
                         size_t n)
{
    *(size_t *)ctx += n;
    return CD_OK;
}

static void *reader_main(void *arg)
{
    reader_ctx *r = arg;
    cd_error err = {0};
    while (!atomic_load(&r->stop)) {
        size_t seen = 0;
        int64_t max_seq, nvec = 0;
        cd_gallery g = {0};
        if (cd_store_scan_vectors(r->st, r->gallery, r->model, DIM, 0, 64,
                                  scan_count, &seen, &max_seq, &err) != CD_OK ||
            cd_store_count_vectors(r->st, r->gallery, r->model, &nvec, &err) !=
                CD_OK ||
            cd_store_gallery_get(r->st, "busy", &g, &err) != CD_OK)
            r->failures++;
        /* Items are only added: a later read never sees fewer. */
        if ((int64_t)seen > nvec || g.count < nvec)
            r->failures++;
        r->rounds++;
    }
    return NULL;
}

static void test_concurrent_reads(fixture *f)
{
    enum { READERS = 3, BATCHES = 20, PER_BATCH = 50 };
    cd_error err = {0};
    cd_gallery g;
    CHECK_OK(cd_store_gallery_create(f->st, "busy", "m1", "Flat", &g, &err),
             &err);
    reader_ctx r[READERS];
    pthread_t threads[READERS];
    for (int i = 0; i < READERS; i++) {
        r[i] = (reader_ctx){.st = f->st, .gallery = g.id, .model = f->m1};
        atomic_init(&r[i].stop, false);
        CHECK_EQ(pthread_create(&threads[i], NULL, reader_main, &r[i]), 0);
    }
    char ids[PER_BATCH][16];
    float v[PER_BATCH][DIM];
    cd_item_in items[PER_BATCH];
    int64_t rowids[PER_BATCH], seq;
    for (int b = 0; b < BATCHES; b++) {
        for (int i = 0; i < PER_BATCH; i++) {
            snprintf(ids[i], sizeof ids[i], "b%d-%d", b, i);
            fill_vector(v[i], DIM, (uint64_t)(b * PER_BATCH + i));
            items[i] = (cd_item_in){ids[i], NULL, NULL, v[i]};
        }
        CHECK_OK(cd_store_items_upsert(f->st, g.id, f->m1, DIM, items,
                                       PER_BATCH, &seq, rowids, NULL, &err),
                 &err);
    }
    for (int i = 0; i < READERS; i++) {
        atomic_store(&r[i].stop, true);
        CHECK_EQ(pthread_join(threads[i], NULL), 0);
        CHECK_EQ(r[i].failures, 0);
        CHECK(r[i].rounds > 0);
    }
    CHECK_EQ(gallery_seq(f->st, "busy", NULL), BATCHES);
}

/* --- files: reopen, migrate, refuse -------------------------------------- */

static void test_reopen(const char *path)
{
    cd_error err = {0};
    cd_store *st = open_ok(path);
    fixture f = {.st = st};
    fixture_load(&f);
    cd_model *models = NULL;
    size_t n;
    CHECK_OK(cd_store_model_list(st, &models, &n, &err), &err);
    CHECK_EQ(n, 5);
    free(models);
    int64_t count;
    CHECK_EQ(gallery_seq(st, "scan", &count), 3);
    CHECK_EQ(count, SCAN_ITEMS - 1);
    cd_gallery g;
    CHECK_OK(cd_store_gallery_get(st, "g2", &g, &err), &err);
    CHECK_EQ(g.policy, CD_POLICY_VERIFIED);
    CHECK_OK(cd_store_gallery_get(st, "g3", &g, &err), &err);
    CHECK_STREQ(g.index_spec, "HNSW32");
    cd_item *item = NULL;
    CHECK_OK(cd_store_item_get(st, g.id, "x", true, &item, &err), &err);
    if (item && item->n_embeddings == 2) {
        CHECK_STREQ(item->label, "lab");
        CHECK(item->embeddings[0].vector[2] == 1e-45f);
        CHECK(signbit(item->embeddings[0].vector[1]));
    }
    cd_item_destroy(item);
    CHECK_OK(cd_store_item_get(st, f.g1, "a", false, &item, &err), &err);
    if (item)
        CHECK_STREQ(item->metadata, "{\"n\":1}");
    cd_item_destroy(item);
    close_ok(st, path);
}

static void write_file(const char *path, const char *text, size_t times)
{
    FILE *fp = fopen(path, "wb");
    REQUIRE(fp != NULL);
    for (size_t i = 0; i < times; i++)
        fputs(text, fp);
    CHECK_EQ(fclose(fp), 0);
}

/* The first column of the first row of sql on a file opened directly. */
static void raw_text(const char *path, const char *sql, char *out, size_t cap)
{
    sqlite3 *db = NULL;
    sqlite3_stmt *s = NULL;
    out[0] = '\0';
    CHECK_EQ(sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    CHECK_EQ(sqlite3_prepare_v2(db, sql, -1, &s, NULL), SQLITE_OK);
    if (sqlite3_step(s) == SQLITE_ROW && sqlite3_column_text(s, 0))
        snprintf(out, cap, "%s", (const char *)sqlite3_column_text(s, 0));
    CHECK_EQ(sqlite3_finalize(s), SQLITE_OK);
    CHECK_EQ(sqlite3_close(db), SQLITE_OK);
}

static void test_files(void)
{
    char path[512], expect[256], text[64];
    cd_error err = {0};

    /* An empty file and an empty SQLite database are migrated. */
    static const char *const empties[] = {"empty.db", "empty-sqlite.db"};
    write_file(tmp_path(path, sizeof path, "empty.db"), "", 0);
    raw_sql(tmp_path(path, sizeof path, "empty-sqlite.db"),
            "PRAGMA user_version = 0");
    for (size_t i = 0; i < sizeof empties / sizeof empties[0]; i++) {
        cd_store *st = open_ok(tmp_path(path, sizeof path, empties[i]));
        cd_model m = {.name = "fresh", .dim = 3, .metric = CD_METRIC_IP}, out;
        CHECK_OK(cd_store_model_create(st, &m, &out, &err), &err);
        close_ok(st, path);
        raw_text(path, "PRAGMA user_version", text, sizeof text);
        snprintf(expect, sizeof expect, "%d", CD_SCHEMA_VERSION);
        CHECK_STREQ(text, expect);
        raw_text(path, "PRAGMA journal_mode", text, sizeof text);
        CHECK_STREQ(text, "wal");
    }

    /* A new database gets the page size and the hot tables' layout the
     * upsert speed depends on: no foreign keys on items and embeddings,
     * and embeddings with its primary key as its only index. */
    static const struct {
        const char *sql;
        int64_t expect;
    } layout[] = {
        {"PRAGMA page_size", 16384},
        {"SELECT count(*) FROM pragma_foreign_key_list('items')", 0},
        {"SELECT count(*) FROM pragma_foreign_key_list('embeddings')", 0},
        {"SELECT count(*) FROM pragma_index_list('embeddings')", 1},
        {"SELECT count(*) FROM pragma_index_list('embeddings')"
         " WHERE origin = 'pk'", 1},
        {"SELECT group_concat(name) = 'gallery_id,model_id,item_rowid' FROM"
         " (SELECT name FROM pragma_index_info('sqlite_autoindex_embeddings_1')"
         " ORDER BY seqno)", 1},
    };
    tmp_path(path, sizeof path, "layout.db");
    close_ok(open_ok(path), path);
    for (size_t i = 0; i < sizeof layout / sizeof layout[0]; i++) {
        int64_t got = raw_int(path, layout[i].sql);
        if (got != layout[i].expect)
            fprintf(stderr, "layout: %s\n", layout[i].sql);
        CHECK_EQ(got, layout[i].expect);
    }

    /* A newer schema is refused, and so are files compatd did not write. */
    tmp_path(path, sizeof path, "newer.db");
    close_ok(open_ok(path), path);
    char newer[64];
    snprintf(newer, sizeof newer, "PRAGMA user_version = %d", CD_SCHEMA_VERSION + 1);
    raw_sql(path, newer);
    raw_sql(tmp_path(path, sizeof path, "foreign.db"),
            "CREATE TABLE t (x); INSERT INTO t VALUES (1)");
    raw_sql(tmp_path(path, sizeof path, "foreign-id.db"),
            "PRAGMA application_id = 42");
    write_file(tmp_path(path, sizeof path, "garbage.db"),
               "this is not an SQLite database\n", 200);
    write_file(tmp_path(path, sizeof path, "short.db"), "hello", 1);
    static const struct {
        const char *file;
        cd_err expect;
        bool untouched;     /* still in its old journal mode afterwards */
    } cases[] = {
        {"newer.db", CD_EVERSION, false},
        {"foreign.db", CD_ECORRUPT, true},
        {"foreign-id.db", CD_ECORRUPT, true},
        {"garbage.db", CD_ECORRUPT, false},
        {"short.db", CD_ECORRUPT, false},
        {"no-such-dir/x.db", CD_EIO, false},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        cd_store *st = (cd_store *)1;
        cd_err rc = cd_store_open(tmp_path(path, sizeof path, cases[c].file),
                                  &st, &err);
        if (rc != cases[c].expect)
            fprintf(stderr, "%s: %s\n", cases[c].file, err.message);
        CHECK_EQ(rc, cases[c].expect);
        CHECK_EQ(err.code, cases[c].expect);
        CHECK(st == NULL);
        if (cases[c].untouched) {
            raw_text(path, "PRAGMA journal_mode", text, sizeof text);
            CHECK_STREQ(text, "delete");
        }
    }
    CHECK(!file_exists(tmp_path(path, sizeof path, "no-such-dir")));
    CHECK_EQ(cd_store_open(tmp_path(path, sizeof path, "newer.db"),
                           (cd_store *[]){NULL}, &err), CD_EVERSION);
    snprintf(expect, sizeof expect,
             "data directory has schema version %d, this compatd supports up "
             "to %d; upgrade compatd", CD_SCHEMA_VERSION + 1, CD_SCHEMA_VERSION);
    CHECK_STREQ(err.message, expect);
    CHECK_EQ(cd_store_open(NULL, (cd_store *[]){NULL}, &err), CD_EINVAL);
    cd_store_close(NULL);
}

/* --- schema 4 reports (JSON text) migrate to rows ----------------------- */

/* Two reports as schema 2 stored them: the server's text with id 0 and
 * created_at "" (every read put the row's values in). */
#define V4_ROWS                                                                          \
    "INSERT INTO models (name, dim, metric, created_at) VALUES"                          \
    " ('old', 2, 'ip', '2024-01-01T00:00:00Z'), ('new', 2, 'ip', '2024-01-02T00:00:00Z');" \
    "INSERT INTO galleries (name, model_id, created_at)"                                 \
    " VALUES ('g', 1, '2024-01-01T00:00:00Z');"                                          \
    "INSERT INTO evaluations (id, gallery_id, query_model_id, gallery_model_id,"         \
    " created_at, compatible, criterion, queries, cross_top1, baseline_top1,"            \
    " cross_map, baseline_map, nfr, report) VALUES"                                      \
    " (3, 1, 2, 1, '2024-02-03T04:05:06Z', 1, 'top5 new->old 1.0000 > old->old 0.8333',"  \
    " 6, 0.66666666666666663, 0.5, 0.59259259259259256, 0.5, 0.16666666666666666,"        \
    " '{\"id\":0,\"gallery\":\"g\",\"gallery_model\":\"old\",\"query_model\":\"new\","   \
    "\"created_at\":\"\",\"ks\":[1,5],\"primary_metric\":\"top5\",\"queries\":6,"         \
    "\"skipped\":1,\"gallery_items\":9,\"cross\":{\"top1\":0.66666666666666663,"          \
    "\"top5\":1,\"map\":0.59259259259259256},\"baseline\":{\"top1\":0.5,"                 \
    "\"top5\":0.83333333333333337,\"map\":0.5},\"paragon\":{\"top1\":0.83333333333333337," \
    "\"top5\":1,\"map\":0.75},\"compatible\":true,"                                       \
    "\"criterion\":\"top5 new->old 1.0000 > old->old 0.8333\",\"update_gain\":"           \
    "{\"top1\":0.49999999999999989,\"top5\":1,\"map\":0.37037037037037024},"              \
    "\"flips\":{\"negative\":1,\"positive\":2,\"nfr\":0.16666666666666666,\"nfi\":0.5,"   \
    "\"pfr\":0.33333333333333331},\"by_label\":[{\"label\":\"cat\",\"queries\":3,"        \
    "\"cross_top1\":0.33333333333333331,\"baseline_top1\":0.66666666666666663,"           \
    "\"negative_flips\":1,\"positive_flips\":0},{\"label\":\"7\",\"queries\":3,"          \
    "\"cross_top1\":1,\"baseline_top1\":0.33333333333333331,\"negative_flips\":0,"        \
    "\"positive_flips\":2}],\"negative_flip_ids\":[\"q2\"]}'),"                           \
    " (7, 1, 1, 1, '2024-02-04T00:00:00Z', NULL,"                                         \
    " 'map new->old 0.2500; no baseline, so no verdict', 2, NULL, NULL, 0.25, NULL, NULL," \
    " '{\"id\":0,\"gallery\":\"g\",\"gallery_model\":\"old\",\"query_model\":\"old\","   \
    "\"created_at\":\"\",\"ks\":[1],\"primary_metric\":\"map\",\"queries\":2,"            \
    "\"skipped\":0,\"gallery_items\":9,\"cross\":{\"top1\":null,\"map\":0.25},"           \
    "\"baseline\":null,\"paragon\":null,\"compatible\":null,"                             \
    "\"criterion\":\"map new->old 0.2500; no baseline, so no verdict\","                 \
    "\"update_gain\":null,\"flips\":null,\"by_label\":[{\"label\":\"dog\",\"queries\":2," \
    "\"cross_top1\":0.5,\"baseline_top1\":null,\"negative_flips\":0,"                     \
    "\"positive_flips\":0}],\"negative_flip_ids\":[]}'),"                                 \
    " (8, 1, 2, 1, '2024-02-05T00:00:00Z', 0, 'top1', 1, 0, 1, 0, 1, 1, '{not json');"    \
    "DELETE FROM sqlite_sequence WHERE name = 'evaluations';"                             \
    "INSERT INTO sqlite_sequence (name, seq) VALUES ('evaluations', 9);"

/* The reports V4_ROWS holds, as cd_eval_run would have made them. */
static void v4_reports(cd_eval_report *with, cd_eval_report *without)
{
    static cd_eval_label with_labels[] = {
        {"cat", 3, 0.33333333333333331, 0.66666666666666663, 1, 0},
        {"7", 3, 1, 0.33333333333333331, 0, 2},
    };
    static char *with_ids[] = {"q2"};
    *with = (cd_eval_report){
        .n_ks = 2, .ks = {1, 5}, .primary_k = 5, .queries = 6, .skipped = 1,
        .gallery_items = 9,
        .cross = {{0.66666666666666663, 1}, 0.59259259259259256},
        .has_baseline = true, .baseline = {{0.5, 0.83333333333333337}, 0.5},
        .has_paragon = true, .paragon = {{0.83333333333333337, 1}, 0.75},
        .update_gain = {{0.49999999999999989, 1}, 0.37037037037037024},
        .compatible = 1, .primary_cross = 1, .primary_baseline = 0.83333333333333337,
        .negative_flips = 1, .positive_flips = 2, .nfr = 0.16666666666666666, .nfi = 0.5,
        .pfr = 0.33333333333333331,
        .n_labels = 2, .labels = with_labels, .n_negative_flips = 1,
        .negative_flip_ids = with_ids,
    };
    static cd_eval_label without_labels[] = {{"dog", 2, 0.5, NAN, 0, 0}};
    *without = (cd_eval_report){
        .n_ks = 1, .ks = {1}, .primary_k = 0, .queries = 2, .skipped = 0,
        .gallery_items = 9, .cross = {{NAN}, 0.25}, .compatible = -1,
        .primary_cross = 0.25, .primary_baseline = NAN, .nfr = NAN, .nfi = NAN, .pfr = NAN,
        .n_labels = 1, .labels = without_labels,
    };
}

/*
 * A schema 4 database with reports stored as text opens at the current
 * version with the same reports, ids and times; a text that was not
 * JSON stays unreadable (as it was); the converted rows go with their
 * gallery, and a new evaluation never takes an old id.
 */
static void test_report_migration(void)
{
    char path[512];
    cd_error err = {0};
    tmp_path(path, sizeof path, "v4.db");
    old_schema_create(path, 4, V4_ROWS);
    cd_store *st = open_ok(path);
    CHECK_EQ(cd_store_schema_version(st), CD_SCHEMA_VERSION);
    CHECK_EQ(raw_int(path, "SELECT count(*) FROM pragma_table_info('evaluations')"
                           " WHERE name = 'report'"), 0);

    cd_eval_report want[2];
    v4_reports(&want[0], &want[1]);
    static const struct {
        int64_t id;
        const char *created_at, *query_model;
        int compatible;
    } rows[] = {
        {3, "2024-02-03T04:05:06Z", "new", 1},
        {7, "2024-02-04T00:00:00Z", "old", -1},
    };
    for (size_t i = 0; i < 2; i++) {
        cd_evaluation ev;
        CHECK_OK(cd_store_evaluation_get(st, rows[i].id, &ev, &err), &err);
        CHECK_EQ(ev.id, rows[i].id);
        CHECK_STREQ(ev.created_at, rows[i].created_at);
        CHECK_STREQ(ev.query_model, rows[i].query_model);
        CHECK_STREQ(ev.gallery_model, "old");
        CHECK_EQ(ev.compatible, rows[i].compatible);
        CHECK(reports_equal(ev.report, &want[i], rows[i].created_at));
        cd_evaluation_finish(&ev);
    }
    cd_evaluation bad;
    CHECK_EQ(cd_store_evaluation_get(st, 8, &bad, &err), CD_ECORRUPT);
    CHECK(strstr(err.message, "evaluation 8") != NULL);
    CHECK(bad.report == NULL);
    cd_evaluation *list = NULL;
    size_t n = 0;
    CHECK_EQ(cd_store_evaluation_list(st, 1, 0, 8, 10, true, &list, &n, &err), CD_OK);
    CHECK_EQ(n, 2);
    if (n == 2) {
        CHECK_EQ(list[0].id, 7);
        CHECK(list[1].report && list[1].report->n_labels == 0 &&
              list[1].report->negative_flips == 1 && list[1].report->primary_k == 5);
    }
    cd_evaluations_destroy(list, n);

    cd_evaluation ev = make_eval(1, 2, 1, 1, 0.5, 1);
    CHECK_OK(cd_store_evaluation_insert(st, &ev, &err), &err);
    CHECK_EQ(ev.id, 10);
    cd_evaluation_finish(&ev);
    CHECK_OK(cd_store_gallery_delete(st, 1, &err), &err);
    close_ok(st, path);
    CHECK_EQ(raw_int(path, "SELECT (SELECT count(*) FROM evaluation_metrics)"
                           " + (SELECT count(*) FROM evaluation_labels)"
                           " + (SELECT count(*) FROM evaluation_flip_ids)"), 0);
    cd_store_check_report report;
    CHECK_OK(cd_store_check(path, &report, &err), &err);
}

/*
 * Adapters: stored and read back bit for bit, listed, a taken name
 * refused, damage to the weights seen by cd_store_check and by a read,
 * deleted.
 */
static void test_adapters(void)
{
    char path[512];
    tmp_path(path, sizeof path, "adapters.db");
    cd_store *st = open_ok(path);
    cd_error err;
    cd_model m = {.dim = 4, .metric = CD_METRIC_COSINE}, from, to;
    snprintf(m.name, sizeof m.name, "old");
    CHECK_OK(cd_store_model_create(st, &m, &to, &err), &err);
    m.dim = 3;
    snprintf(m.name, sizeof m.name, "new");
    CHECK_OK(cd_store_model_create(st, &m, &from, &err), &err);

    float w[3 * 4], bias[4] = {0.5f, -0.25f, 0, 1};
    for (int i = 0; i < 12; i++)
        w[i] = (float)i / 7.0f - 0.8f;
    cd_adapter_record rec = {.from_id = from.id, .to_id = to.id, .weights = w, .bias = bias};
    rec.info = (cd_adapter_info){
        .params = {.kind = CD_ADAPTER_AFFINE, .dim_from = 3, .metric_from = CD_METRIC_COSINE,
                   .dim_to = 4, .metric_to = CD_METRIC_COSINE, .ridge = 0.25},
        .pairs = 9, .mean_cosine = 0.75, .cv_mean_cosine = NAN};
    snprintf(rec.name, sizeof rec.name, "new-to-old");
    cd_adapter_record out;
    CHECK_OK(cd_store_adapter_create(st, &rec, &out, &err), &err);
    CHECK_STREQ(out.from, "new");
    CHECK_STREQ(out.to, "old");
    CHECK(out.weights == NULL && isnan(out.info.cv_mean_cosine));
    CHECK_EQ(cd_store_adapter_create(st, &rec, NULL, &err), CD_EEXISTS);
    rec.to_id = from.id;    /* dims that do not fit the model */
    snprintf(rec.name, sizeof rec.name, "other");
    CHECK_EQ(cd_store_adapter_create(st, &rec, NULL, &err), CD_ENOTFOUND);

    CHECK_OK(cd_store_adapter_get(st, "new-to-old", true, &out, &err), &err);
    CHECK(out.weights && memcmp(out.weights, w, sizeof w) == 0);
    CHECK(out.bias && memcmp(out.bias, bias, sizeof bias) == 0);
    CHECK_EQ(out.info.params.kind, CD_ADAPTER_AFFINE);
    CHECK_EQ(out.info.pairs, 9);
    CHECK(out.info.params.ridge == 0.25 && out.info.mean_cosine == 0.75);
    cd_adapter_record_finish(&out);
    cd_adapter_record *list;
    size_t n;
    CHECK_OK(cd_store_adapter_list(st, &list, &n, &err), &err);
    CHECK_EQ(n, 1);
    cd_adapter_records_destroy(list, n);
    close_ok(st, path);

    cd_store_check_report report;
    CHECK_OK(cd_store_check(path, &report, &err), &err);
    raw_sql(path, "UPDATE adapters SET weights = substr(weights, 1, 40)");
    CHECK_EQ(cd_store_check(path, &report, &err), CD_ECORRUPT);
    CHECK(report.n_problems == 1 && strstr(report.problems[0], "adapter \"new-to-old\" has 40 "
                                           "bytes of weights, not 48"));
    st = open_ok(path);
    CHECK_EQ(cd_store_adapter_get(st, "new-to-old", true, &out, &err), CD_ECORRUPT);
    CHECK_OK(cd_store_adapter_delete(st, "new-to-old", &err), &err);
    CHECK_EQ(cd_store_adapter_delete(st, "new-to-old", &err), CD_ENOTFOUND);
    CHECK_EQ(cd_store_adapter_get(st, "new-to-old", false, &out, &err), CD_ENOTFOUND);
    close_ok(st, path);
    CHECK_OK(cd_store_check(path, &report, &err), &err);
}

int main(void)
{
    snprintf(tmpdir, sizeof tmpdir, "/tmp/test_store.XXXXXX");
    REQUIRE(mkdtemp(tmpdir) != NULL);
    char path[512];
    tmp_path(path, sizeof path, "compatd.db");

    fixture f = {.st = open_ok(path), .path = path};
    test_models(f.st);
    test_galleries(f.st);
    fixture_load(&f);
    test_upsert(&f);
    test_upsert_failures(&f);
    test_item_roundtrip(&f);
    test_delete(&f);
    test_delete_models(&f);
    test_scan(&f);
    test_pages(&f);
    test_refs(&f);
    test_gallery_delete(&f);
    test_evaluations(&f);
    test_concurrent_reads(&f);
    close_ok(f.st, path);

    test_reopen(path);
    test_files();
    test_report_migration();
    test_adapters();
    remove_tmpdir();
    return check_exit();
}
