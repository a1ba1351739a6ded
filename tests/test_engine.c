/*
 * test_engine.c - the engine keeps the store and its indexes in step:
 * writes, searches against a naive reference, restarts from snapshots,
 * damaged and stale snapshots, catch-up from the change sequence, the
 * index types that cannot remove, and evaluations run, stored and read
 * back.
 */
#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "check.h"
#include "engine.h"
#include "eval_check.h"

#define DIM 16
#define N_ITEMS 600
/* An exact index type that keeps snapshots, for the tests of snapshots
 * (a Flat index is read from the store and keeps none). */
#define SNAP_EXACT "IVF1,Flat"

static char data_dir[256];

/* A reproducible generator, so a failure can be replayed. */
static unsigned long long rng_state = 0x9E3779B97F4A7C15ull;

static float frand(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (float)((rng_state >> 11) * (1.0 / 9007199254740992.0)) * 2.0f - 1.0f;
}

/* The gallery as the test believes it is: id i alive with vector v[i]. */
typedef struct model_state {
    float v[N_ITEMS + 100][DIM];
    bool alive[N_ITEMS + 100];
    cd_metric metric;
} model_state;

static double score_of(const model_state *s, const float *q, size_t i)
{
    double dot = 0, qq = 0, vv = 0, l2 = 0;
    for (int d = 0; d < DIM; d++) {
        dot += (double)q[d] * s->v[i][d];
        qq += (double)q[d] * q[d];
        vv += (double)s->v[i][d] * s->v[i][d];
        l2 += ((double)q[d] - s->v[i][d]) * ((double)q[d] - s->v[i][d]);
    }
    if (s->metric == CD_METRIC_COSINE)
        return dot / sqrt(qq * vv);
    return s->metric == CD_METRIC_IP ? dot : l2;
}

/* The naive top-k of q: ids written to out, returns how many. */
static size_t reference_topk(const model_state *s, const float *q, size_t k, size_t *out)
{
    bool higher = s->metric != CD_METRIC_L2;
    double best[64];
    size_t n = 0;
    for (size_t i = 0; i < N_ITEMS + 100; i++) {
        if (!s->alive[i])
            continue;
        double sc = score_of(s, q, i);
        size_t pos = n;
        while (pos > 0 && (higher ? sc > best[pos - 1] : sc < best[pos - 1]))
            pos--;
        if (pos >= k)
            continue;
        size_t last = n < k ? n : k - 1;
        for (size_t j = last; j > pos; j--) {
            best[j] = best[j - 1];
            out[j] = out[j - 1];
        }
        best[pos] = sc;
        out[pos] = i;
        if (n < k)
            n++;
    }
    return n;
}

static void item_name(size_t i, char *buf, size_t len)
{
    snprintf(buf, len, "item-%zu", i);
}

static void upsert_range(cd_engine *e, const char *gallery, const char *model,
                         model_state *s, size_t from, size_t to)
{
    size_t n = to - from;
    cd_item_in *items = calloc(n, sizeof *items);
    char (*ids)[32] = calloc(n, sizeof *ids);
    REQUIRE(items && ids);
    for (size_t i = 0; i < n; i++) {
        for (int d = 0; d < DIM; d++)
            s->v[from + i][d] = frand();
        s->alive[from + i] = true;
        item_name(from + i, ids[i], sizeof ids[i]);
        items[i].id = ids[i];
        items[i].label = "L";
        items[i].vector = s->v[from + i];
    }
    cd_error err;
    CHECK_OK(cd_engine_items_upsert(e, gallery, model, items, n, &err), &err);
    free(items);
    free(ids);
}

/*
 * 20 fixed queries against the reference top 10: with exact (Flat) the
 * same ids in the same order and the same scores; otherwise (approximate
 * index types) a recall of at least 0.9.  Never a dead item.
 */
static void check_search(cd_engine *e, const char *gallery, const char *model,
                         const model_state *s, bool exact, const char *when)
{
    size_t found = 0, wanted = 0;
    for (int qi = 0; qi < 20; qi++) {
        float q[DIM];
        for (int d = 0; d < DIM; d++)
            q[d] = sinf((float)(qi * DIM + d));
        size_t want[10];
        size_t n_want = reference_topk(s, q, 10, want);
        cd_search_result *r = NULL;
        cd_error err;
        cd_err rc = cd_engine_search(e, gallery, model, q, 1, 10, CD_INCLUDE_LABEL, &r, &err);
        CHECK_OK(rc, &err);
        if (rc != CD_OK)
            return;
        CHECK_EQ(r->counts[0], n_want);
        wanted += n_want;
        for (size_t j = 0; j < r->counts[0]; j++) {
            size_t idx = 0;
            CHECK(sscanf(r->hits[j].item.id, "item-%zu", &idx) == 1);
            CHECK(idx < N_ITEMS + 100 && s->alive[idx]);
            CHECK_STREQ(r->hits[j].item.label, "L");
            for (size_t w = 0; w < n_want; w++)
                found += want[w] == idx;
            if (!exact || j >= n_want)
                continue;
            if (idx != want[j]) {
                fprintf(stderr, "%s: query %d rank %zu: %s, reference item-%zu\n", when, qi, j,
                        r->hits[j].item.id, want[j]);
                check_failures++;
                break;
            }
            CHECK_NEAR(r->hits[j].score, score_of(s, q, want[j]), 1e-4);
        }
        cd_search_result_destroy(r);
    }
    if (!exact && (double)found < 0.9 * (double)wanted) {
        fprintf(stderr, "%s: recall %zu/%zu below 0.9\n", when, found, wanted);
        check_failures++;
    }
}

static cd_engine *open_engine(int snapshot_interval)
{
    cd_engine_config cfg = {.data_dir = data_dir, .snapshot_interval_s = snapshot_interval};
    cd_engine *e = NULL;
    cd_error err;
    CHECK_OK(cd_engine_open(&cfg, &e, &err), &err);
    REQUIRE(e);
    CHECK(!cd_engine_ready(e));
    CHECK_OK(cd_engine_load_indexes(e, &err), &err);
    CHECK(cd_engine_ready(e));
    return e;
}

static size_t count_snapshots(void)
{
    char path[300];
    snprintf(path, sizeof path, "%s/index", data_dir);
    DIR *d = opendir(path);
    size_t n = 0;
    struct dirent *de;
    while (d && (de = readdir(d)) != NULL)
        n += strstr(de->d_name, ".faiss") != NULL;
    if (d)
        closedir(d);
    return n;
}

/* Applies fn to every snapshot file. */
static void each_snapshot(void (*fn)(const char *path))
{
    char dir[300];
    snprintf(dir, sizeof dir, "%s/index", data_dir);
    DIR *d = opendir(dir);
    struct dirent *de;
    while (d && (de = readdir(d)) != NULL) {
        if (!strstr(de->d_name, ".faiss"))
            continue;
        char path[600];
        snprintf(path, sizeof path, "%s/%s", dir, de->d_name);
        fn(path);
    }
    if (d)
        closedir(d);
}

static void truncate_file(const char *path)
{
    CHECK_EQ(truncate(path, 100), 0);
}

static void remove_file(const char *path)
{
    CHECK_EQ(unlink(path), 0);
}

static void garble_file(const char *path)
{
    FILE *f = fopen(path, "r+");
    REQUIRE(f);
    fseek(f, 0, SEEK_SET);
    fputs("this is not a faiss index at all", f);
    fclose(f);
}

/*
 * The gallery's embedding count of its model, as the engine answers it
 * (from memory once loaded), equals the items the test keeps alive and
 * what the store counts in SQLite.
 */
static void check_counts(cd_engine *e, const char *gallery, const model_state *s,
                         const char *when)
{
    size_t alive = 0;
    for (size_t i = 0; i < N_ITEMS + 100; i++)
        alive += s->alive[i];
    cd_error err;
    cd_model_count *mem = NULL, *sql = NULL;
    size_t n_mem = 0, n_sql = 0;
    cd_gallery row;
    CHECK_OK(cd_engine_gallery_embeddings(e, gallery, &mem, &n_mem, &err), &err);
    CHECK_OK(cd_engine_gallery_get(e, gallery, &row, &err), &err);
    CHECK_OK(cd_store_gallery_embeddings(cd_engine_store(e), row.id, &sql, &n_sql, &err), &err);
    CHECK_EQ(n_mem, 1);
    CHECK_EQ(n_sql, 1);
    if (n_mem == 1 && n_sql == 1) {
        if (mem[0].items != (int64_t)alive || sql[0].items != (int64_t)alive)
            fprintf(stderr, "counts %s: engine %lld, store %lld, alive %zu\n", when,
                    (long long)mem[0].items, (long long)sql[0].items, alive);
        CHECK_EQ(mem[0].items, alive);
        CHECK_EQ(sql[0].items, alive);
        CHECK_STREQ(mem[0].model, sql[0].model);
        CHECK_EQ(mem[0].model_id, sql[0].model_id);
    }
    free(mem);
    free(sql);
}

static void test_lifecycle(const char *spec, cd_metric metric)
{
    static model_state s;
    memset(&s, 0, sizeof s);
    s.metric = metric;
    char model[32], gallery[48];
    snprintf(model, sizeof model, "m-%s", cd_metric_name(metric));
    snprintf(gallery, sizeof gallery, "g-%s-%c", cd_metric_name(metric), spec[0]);
    bool exact = strcmp(spec, "Flat") == 0;
    fprintf(stderr, "lifecycle: %s %s\n", spec, cd_metric_name(metric));

    cd_engine *e = open_engine(0);
    cd_error err;
    cd_model m = {.dim = DIM, .metric = metric};
    snprintf(m.name, sizeof m.name, "%s", model);
    cd_model got;
    cd_err rc = cd_engine_model_create(e, &m, &got, &err);
    CHECK(rc == CD_OK || rc == CD_EEXISTS);
    CHECK_OK(cd_engine_gallery_create(e, gallery, model, spec, NULL, &err), &err);

    upsert_range(e, gallery, NULL, &s, 0, N_ITEMS);
    check_search(e, gallery, NULL, &s, exact, "after upsert");

    /* Update 50 vectors, delete 30 items. */
    upsert_range(e, gallery, NULL, &s, 100, 150);
    for (size_t i = 200; i < 230; i++) {
        char name[32];
        item_name(i, name, sizeof name);
        CHECK_OK(cd_engine_item_delete(e, gallery, name, &err), &err);
        s.alive[i] = false;
    }
    CHECK_EQ(cd_engine_item_delete(e, gallery, "item-200", &err), CD_ENOTFOUND);
    check_search(e, gallery, NULL, &s, exact, "after update and delete");
    check_counts(e, gallery, &s, "after update and delete");
    cd_engine_close(e);
    /* Flat is read from the store at open and keeps no snapshot. */
    if (exact)
        CHECK_EQ(count_snapshots(), 0);
    else
        CHECK(count_snapshots() > 0);

    /* Clean restart: loads the snapshot (Flat: the store). */
    e = open_engine(0);
    check_search(e, gallery, NULL, &s, exact, "after restart");
    check_counts(e, gallery, &s, "after restart");
    cd_engine_stats st;
    cd_engine_get_stats(e, &st);
    if (strcmp(spec, "HNSW32") != 0)
        CHECK_EQ(st.index_rebuilds, 0);
    upsert_range(e, gallery, NULL, &s, N_ITEMS, N_ITEMS + 50);
    cd_engine_close(e);

    /* Damaged snapshots are rebuilt from the store. */
    each_snapshot(truncate_file);
    e = open_engine(0);
    cd_engine_get_stats(e, &st);
    CHECK(exact || st.index_rebuilds >= 1);
    check_search(e, gallery, NULL, &s, exact, "after truncated snapshot");
    cd_engine_close(e);

    each_snapshot(garble_file);
    e = open_engine(0);
    check_search(e, gallery, NULL, &s, exact, "after garbled snapshot");
    cd_engine_close(e);

    each_snapshot(remove_file);
    CHECK_EQ(count_snapshots(), 0);
    e = open_engine(0);
    check_search(e, gallery, NULL, &s, exact, "after deleted snapshot");
    check_counts(e, gallery, &s, "after a rebuild");
    CHECK_OK(cd_engine_gallery_delete(e, gallery, &err), &err);
    CHECK_EQ(cd_engine_gallery_delete(e, gallery, &err), CD_ENOTFOUND);
    cd_engine_close(e);
}

/*
 * A snapshot behind the store: changes made after it reach the store
 * without the engine (as if it crashed after the commit), and the next
 * open must replay them.
 */
static void test_catch_up(void)
{
    static model_state s;
    memset(&s, 0, sizeof s);
    s.metric = CD_METRIC_L2;
    cd_error err;
    cd_engine *e = open_engine(0);
    cd_model m = {.dim = DIM, .metric = CD_METRIC_L2};
    snprintf(m.name, sizeof m.name, "catchup-model");
    CHECK_OK(cd_engine_model_create(e, &m, NULL, &err), &err);
    /* An exact type that keeps snapshots (Flat keeps none, see
     * test_flat_from_store). */
    CHECK_OK(cd_engine_gallery_create(e, "catchup", "catchup-model", SNAP_EXACT, NULL, &err), &err);
    upsert_range(e, "catchup", NULL, &s, 0, 300);
    cd_engine_close(e);

    char db[300];
    snprintf(db, sizeof db, "%s/compatd.db", data_dir);
    cd_store *st = NULL;
    CHECK_OK(cd_store_open(db, &st, &err), &err);
    cd_gallery g;
    CHECK_OK(cd_store_gallery_get(st, "catchup", &g, &err), &err);
    cd_model mm;
    CHECK_OK(cd_store_model_get(st, "catchup-model", &mm, &err), &err);
    /* Rewrite 20, add 20, delete 10 straight in the store. */
    cd_item_in items[40];
    char ids[40][32];
    int64_t rowids[40], seq;
    for (size_t i = 0; i < 40; i++) {
        size_t idx = i < 20 ? 10 + i : 300 + i - 20;
        for (int d = 0; d < DIM; d++)
            s.v[idx][d] = frand();
        s.alive[idx] = true;
        item_name(idx, ids[i], sizeof ids[i]);
        items[i] = (cd_item_in){.id = ids[i], .label = "L", .vector = s.v[idx]};
    }
    CHECK_OK(cd_store_items_upsert(st, g.id, mm.id, DIM, items, 40, &seq, rowids, NULL, &err), &err);
    for (size_t i = 100; i < 110; i++) {
        char name[32];
        int64_t rowid;
        item_name(i, name, sizeof name);
        CHECK_OK(cd_store_item_delete(st, g.id, name, &rowid, &seq, &err), &err);
        s.alive[i] = false;
    }
    cd_store_close(st);

    e = open_engine(0);
    cd_engine_stats stats;
    cd_engine_get_stats(e, &stats);
    CHECK_EQ(stats.index_rebuilds, 0); /* caught up, not rebuilt */
    check_search(e, "catchup", NULL, &s, true, "after catch-up");
    cd_engine_close(e);
}

/* The index files of gallery_id in data_dir/index: *n of them, and
 * (when first is not NULL) the path of one. */
static size_t files_of(int64_t gallery_id, char *first, size_t size)
{
    char dir[300], prefix[32];
    snprintf(dir, sizeof dir, "%s/index", data_dir);
    snprintf(prefix, sizeof prefix, "g%lld-", (long long)gallery_id);
    DIR *d = opendir(dir);
    struct dirent *de;
    size_t n = 0;
    while (d && (de = readdir(d)) != NULL) {
        if (strncmp(de->d_name, prefix, strlen(prefix)) != 0 || !strstr(de->d_name, ".faiss"))
            continue;
        if (first && n == 0)
            snprintf(first, size, "%s/%s", dir, de->d_name);
        n++;
    }
    if (d)
        closedir(d);
    return n;
}

/* The top 10 of 20 fixed queries: ids and scores, in rank order. */
typedef struct top_lists {
    char id[20][10][CD_ITEM_ID_MAX + 1];
    float score[20][10];
    size_t n[20];
} top_lists;

static void top_record(cd_engine *e, const char *gallery, top_lists *t)
{
    memset(t, 0, sizeof *t);
    for (int qi = 0; qi < 20; qi++) {
        float q[DIM];
        for (int d = 0; d < DIM; d++)
            q[d] = cosf((float)(qi * DIM + d));
        cd_search_result *r = NULL;
        cd_error err;
        CHECK_OK(cd_engine_search(e, gallery, NULL, q, 1, 10, 0, &r, &err), &err);
        if (!r)
            return;
        t->n[qi] = r->counts[0];
        for (size_t j = 0; j < r->counts[0] && j < 10; j++) {
            snprintf(t->id[qi][j], sizeof t->id[qi][j], "%s", r->hits[j].item.id);
            t->score[qi][j] = r->hits[j].score;
        }
        cd_search_result_destroy(r);
    }
}

/* Leaves the running marker as a killed process leaves it: the engine is
 * closed (a Flat index writes nothing then) but the next open takes the
 * unclean path, as after kill -9. */
static void close_as_killed_in(cd_engine *e, const char *dir)
{
    char marker[300], kept[320];
    snprintf(marker, sizeof marker, "%s/compatd.running", dir);
    snprintf(kept, sizeof kept, "%s.kept", marker);
    CHECK_EQ(rename(marker, kept), 0);
    cd_engine_close(e);
    CHECK_EQ(rename(kept, marker), 0);
}

static void close_as_killed(cd_engine *e)
{
    close_as_killed_in(e, data_dir);
}

/*
 * A Flat index is read straight from the store at open and keeps no
 * snapshot: a restart gives the very same results (ids and scores) as
 * before it; a snapshot file under its name (left by an older compatd, or
 * another gallery's copied in) is never served and is removed; rows
 * written to the store that the engine never applied (a crash after the
 * commit) are there after a restart as after kill -9.
 */
static void test_flat_from_store(void)
{
    static model_state s;
    memset(&s, 0, sizeof s);
    s.metric = CD_METRIC_L2;
    static top_lists before, after;
    cd_error err;
    cd_engine *e = open_engine(0);
    CHECK_OK(cd_engine_gallery_create(e, "flatstore", "catchup-model", "Flat", NULL, &err), &err);
    upsert_range(e, "flatstore", NULL, &s, 0, 300);
    for (size_t i = 50; i < 60; i++) {
        char name[32];
        item_name(i, name, sizeof name);
        CHECK_OK(cd_engine_item_delete(e, "flatstore", name, &err), &err);
        s.alive[i] = false;
    }
    check_search(e, "flatstore", NULL, &s, true, "flat before the restart");
    top_record(e, "flatstore", &before);
    cd_gallery g, other;
    CHECK_OK(cd_engine_gallery_get(e, "flatstore", &g, &err), &err);
    CHECK_OK(cd_engine_gallery_get(e, "catchup", &other, &err), &err);
    cd_model m;
    CHECK_OK(cd_engine_model_get(e, "catchup-model", &m, &err), &err);
    CHECK_OK(cd_engine_snapshot(e, &err), &err);
    cd_engine_close(e);
    CHECK_EQ(files_of(g.id, NULL, 0), 0);

    /* Clean restart: the same results. */
    e = open_engine(0);
    top_record(e, "flatstore", &after);
    CHECK(memcmp(&before, &after, sizeof before) == 0);
    check_search(e, "flatstore", NULL, &s, true, "flat after a restart");
    cd_engine_close(e);

    /* Another gallery's snapshot (same model, a valid file) under this
     * gallery's name and seq: never served, removed at open. */
    char foreign[600], planted[600];
    REQUIRE(files_of(other.id, foreign, sizeof foreign) == 1);
    snprintf(planted, sizeof planted, "%s/index/g%lld-m%lld-s%lld.faiss", data_dir,
             (long long)g.id, (long long)m.id, (long long)g.seq);
    unlink(planted);
    CHECK(link(foreign, planted) == 0);
    e = open_engine(0);
    top_record(e, "flatstore", &after);
    CHECK(memcmp(&before, &after, sizeof before) == 0);
    CHECK_EQ(files_of(g.id, NULL, 0), 0);

    /* Killed: rows committed to the store but never applied to the
     * index (written behind the engine's back), and the marker left. */
    close_as_killed(e);
    char db[300];
    snprintf(db, sizeof db, "%s/compatd.db", data_dir);
    cd_store *st = NULL;
    CHECK_OK(cd_store_open(db, &st, &err), &err);
    cd_item_in items[20];
    char ids[20][32];
    int64_t rowids[20], seq;
    for (size_t i = 0; i < 20; i++) {
        size_t idx = i < 10 ? 5 + i : 300 + i;
        for (int d = 0; d < DIM; d++)
            s.v[idx][d] = frand();
        s.alive[idx] = true;
        item_name(idx, ids[i], sizeof ids[i]);
        items[i] = (cd_item_in){.id = ids[i], .label = "L", .vector = s.v[idx]};
    }
    CHECK_OK(cd_store_items_upsert(st, g.id, m.id, DIM, items, 20, &seq, rowids, NULL, &err), &err);
    int64_t rowid;
    CHECK_OK(cd_store_item_delete(st, g.id, "item-0", &rowid, &seq, &err), &err);
    s.alive[0] = false;
    cd_store_close(st);
    e = open_engine(0);
    check_search(e, "flatstore", NULL, &s, true, "flat after kill -9 and writes behind it");
    cd_gallery now;
    CHECK_OK(cd_engine_gallery_get(e, "flatstore", &now, &err), &err);
    size_t alive = 0;
    for (size_t i = 0; i < N_ITEMS + 100; i++)
        alive += s.alive[i];
    CHECK_EQ((size_t)now.count, alive);
    CHECK_OK(cd_engine_gallery_delete(e, "flatstore", &err), &err);
    cd_engine_close(e);
}

static cd_engine *open_sub(const char *sub, void (*log)(void *, int, const char *), void *ctx);

/* Overwrites the start of the store's page that holds vector v (the
 * page's header: its b-tree then fails SQLite's checks). */
static void damage_page_of(const char *db, const float *v, size_t bytes)
{
    FILE *f = fopen(db, "r+b");
    REQUIRE(f);
    REQUIRE(fseek(f, 0, SEEK_END) == 0);
    long size = ftell(f);
    REQUIRE(size > 100);
    char *all = malloc((size_t)size);
    REQUIRE(all);
    rewind(f);
    REQUIRE(fread(all, 1, (size_t)size, f) == (size_t)size);
    long page = ((unsigned char)all[16] << 8) | (unsigned char)all[17];
    if (page == 1)
        page = 65536;
    char *at = memmem(all, (size_t)size, v, bytes);
    REQUIRE(at);
    long start = (long)(at - all) / page * page;
    free(all);
    char junk[64];
    memset(junk, 0xA5, sizeof junk);
    REQUIRE(fseek(f, start, SEEK_SET) == 0);
    REQUIRE(fwrite(junk, 1, sizeof junk, f) == sizeof junk);
    REQUIRE(fclose(f) == 0);
}

/*
 * check_in_background: the start's check runs beside the loads and the
 * engine is ready only once it has passed.  A healthy store, after a
 * clean stop and after kill -9, gives the same results as before; with a
 * page of its embeddings overwritten (after either stop) the load fails
 * CD_ECORRUPT with the refusal, and the engine is never ready nor says
 * checked.
 */
static void test_background_check(void)
{
    static model_state s;
    static top_lists before, after;
    memset(&s, 0, sizeof s);
    s.metric = CD_METRIC_L2;
    cd_error err;
    char dir[300], db[320];
    snprintf(dir, sizeof dir, "%s/bgcheck", data_dir);
    snprintf(db, sizeof db, "%s/compatd.db", dir);
    cd_engine *e = open_sub("bgcheck", NULL, NULL);
    cd_model m = {.dim = DIM, .metric = CD_METRIC_L2};
    snprintf(m.name, sizeof m.name, "bg-model");
    CHECK_OK(cd_engine_model_create(e, &m, NULL, &err), &err);
    CHECK_OK(cd_engine_gallery_create(e, "bg", "bg-model", "Flat", NULL, &err), &err);
    upsert_range(e, "bg", NULL, &s, 0, N_ITEMS);
    top_record(e, "bg", &before);
    cd_engine_close(e);

    cd_engine_config cfg = {.data_dir = dir, .check_in_background = true};
    for (int killed = 0; killed < 2; killed++) {
        e = NULL;
        CHECK_OK(cd_engine_open(&cfg, &e, &err), &err);
        REQUIRE(e);
        CHECK(!cd_engine_ready(e));
        CHECK_OK(cd_engine_load_indexes(e, &err), &err);
        CHECK(cd_engine_ready(e));
        CHECK(cd_engine_checked(e));
        /* The check's connection closed beside the store's without taking
         * the WAL away from them (another process's writes would go to a
         * new one, unseen). */
        char wal[340], shm[340];
        snprintf(wal, sizeof wal, "%s-wal", db);
        snprintf(shm, sizeof shm, "%s-shm", db);
        CHECK_EQ(access(wal, F_OK), 0);
        CHECK_EQ(access(shm, F_OK), 0);
        top_record(e, "bg", &after);
        CHECK(memcmp(&before, &after, sizeof before) == 0);
        if (killed)
            cd_engine_close(e);
        else
            close_as_killed_in(e, dir);
    }

    char good[340];
    snprintf(good, sizeof good, "%s.good", db);
    REQUIRE(link(db, good) == 0 || errno == EEXIST);
    for (int killed = 0; killed < 2; killed++) {
        /* A copy of the good file, damaged; the marker as the stop left it. */
        char cmd[1400];
        snprintf(cmd, sizeof cmd, "cp %s %s.tmp && mv %s.tmp %s", good, db, db, db);
        REQUIRE(system(cmd) == 0);
        damage_page_of(db, s.v[N_ITEMS / 2], sizeof s.v[0]);
        char marker[320];
        snprintf(marker, sizeof marker, "%s/compatd.running", dir);
        if (killed) {
            FILE *f = fopen(marker, "w");
            REQUIRE(f && fclose(f) == 0);
        } else {
            unlink(marker);
        }
        e = NULL;
        CHECK_OK(cd_engine_open(&cfg, &e, &err), &err);
        REQUIRE(e);
        CHECK_EQ(cd_engine_load_indexes(e, &err), CD_ECORRUPT);
        CHECK(strstr(err.message, "DATABASE DAMAGED") != NULL);
        CHECK(!cd_engine_ready(e));
        CHECK(!cd_engine_checked(e));
        CHECK_EQ(cd_engine_wait_checked(e, &err), CD_ECORRUPT);
        cd_engine_close(e);
    }
    unlink(good);
}

/* Refusals that must leave everything as it was. */
static void test_refusals(void)
{
    cd_error err;
    cd_engine_config cfg = {.data_dir = data_dir};
    cd_engine *e = NULL;
    CHECK_OK(cd_engine_open(&cfg, &e, &err), &err);
    REQUIRE(e);
    float q[DIM] = {1};
    cd_search_result *r = NULL;
    CHECK_EQ(cd_engine_search(e, "catchup", NULL, q, 1, 5, 0, &r, &err), CD_EBUSY);
    CHECK(r == NULL);
    CHECK_OK(cd_engine_load_indexes(e, &err), &err);

    cd_model m = {.dim = 100, .metric = CD_METRIC_IP};
    snprintf(m.name, sizeof m.name, "dim100");
    CHECK_OK(cd_engine_model_create(e, &m, NULL, &err), &err);
    static const struct {
        const char *name, *model, *spec;
        cd_err want;
    } cases[] = {
        {"pq-bad", "dim100", "IVF256,PQ16", CD_EINVAL},
        {"bogus", "dim100", "Bogus", CD_EINVAL},
        {"no-model", "nope", "Flat", CD_ENOTFOUND},
        {"bad/name", "dim100", "Flat", CD_EINVAL},
        {"catchup", "dim100", "Flat", CD_EEXISTS},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        cd_err rc = cd_engine_gallery_create(e, cases[i].name, cases[i].model, cases[i].spec, NULL, &err);
        CHECK_EQ(rc, cases[i].want);
        CHECK(err.message[0] != '\0');
    }
    cd_gallery g;
    CHECK_EQ(cd_engine_gallery_get(e, "pq-bad", &g, &err), CD_ENOTFOUND);

    /* A batch with one bad vector stores nothing. */
    float good[DIM] = {1, 2, 3}, nan_vec[DIM] = {NAN};
    cd_item_in items[3] = {{.id = "x0", .vector = good}, {.id = "x1", .vector = good},
                           {.id = "x2", .vector = nan_vec}};
    CHECK_OK(cd_engine_gallery_get(e, "catchup", &g, &err), &err);
    int64_t before = g.count;
    CHECK_EQ(cd_engine_items_upsert(e, "catchup", NULL, items, 3, &err), CD_EVECTOR);
    CHECK(strstr(err.message, "item 2") != NULL);
    CHECK_OK(cd_engine_gallery_get(e, "catchup", &g, &err), &err);
    CHECK_EQ(g.count, before);

    /* Queries: k out of range, unknown model, another dim. */
    CHECK_EQ(cd_engine_search(e, "catchup", NULL, q, 1, 0, 0, &r, &err), CD_EINVAL);
    CHECK_EQ(cd_engine_search(e, "catchup", NULL, q, 1, 1001, 0, &r, &err), CD_EINVAL);
    CHECK_EQ(cd_engine_search(e, "catchup", "nope", q, 1, 5, 0, &r, &err), CD_ENOTFOUND);
    CHECK_EQ(cd_engine_search(e, "nope", NULL, q, 1, 5, 0, &r, &err), CD_ENOTFOUND);
    float q100[100] = {1};
    CHECK_EQ(cd_engine_search(e, "catchup", "dim100", q100, 1, 5, 0, &r, &err), CD_EDIM);
    CHECK(r == NULL);
    cd_engine_close(e);
}

/* An engine on data_dir/sub, loaded, logging to log (may be NULL). */
static cd_engine *open_sub(const char *sub, void (*log)(void *, int, const char *), void *ctx)
{
    char dir[300];
    snprintf(dir, sizeof dir, "%s/%s", data_dir, sub);
    cd_engine_config cfg = {.data_dir = dir, .log = log, .log_ctx = ctx};
    cd_engine *e = NULL;
    cd_error err;
    CHECK_OK(cd_engine_open(&cfg, &e, &err), &err);
    REQUIRE(e);
    CHECK_OK(cd_engine_load_indexes(e, &err), &err);
    return e;
}

/*
 * ip and l2 vectors whose scores would overflow float32 (vec.h) are
 * refused by the engine itself, for items and queries, and store
 * nothing; cosine normalises any finite vector; one just within the bound
 * is served.
 */
static void test_vector_range(void)
{
    cd_engine *e = open_sub("range", NULL, NULL);
    static const struct {
        cd_metric metric;
        float v[4];
        cd_err want;
    } cases[] = {
        {CD_METRIC_IP, {1e19f, 1e19f, 0, 0}, CD_EVECTOR},
        {CD_METRIC_L2, {1e19f, 1e19f, 0, 0}, CD_EVECTOR},
        {CD_METRIC_L2, {0, 0, 0, -3.2e18f}, CD_EVECTOR},
        {CD_METRIC_COSINE, {1e19f, 1e19f, 0, 0}, CD_OK},
        {CD_METRIC_IP, {3e18f, 0, 0, 0}, CD_OK},
        {CD_METRIC_L2, {0, 1e18f, 2e18f, 2e18f}, CD_OK},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        cd_error err;
        char name[32];
        snprintf(name, sizeof name, "range%zu", i);
        cd_model m = {.dim = 4, .metric = cases[i].metric};
        snprintf(m.name, sizeof m.name, "%s", name);
        CHECK_OK(cd_engine_model_create(e, &m, NULL, &err), &err);
        CHECK_OK(cd_engine_gallery_create(e, name, name, "Flat", NULL, &err), &err);
        float small[4] = {1, 0, 0, 0};
        cd_item_in items[2] = {{.id = "fine", .vector = small}, {.id = "x", .vector = cases[i].v}};
        CHECK_EQ(cd_engine_items_upsert(e, name, NULL, items, 2, &err), cases[i].want);
        if (cases[i].want != CD_OK)
            CHECK(strstr(err.message, "item 1: vector's squared L2 norm") != NULL);
        cd_gallery g;
        CHECK_OK(cd_engine_gallery_get(e, name, &g, &err), &err);
        CHECK_EQ(g.count, cases[i].want == CD_OK ? 2 : 0);
        cd_search_result *r = NULL;
        CHECK_EQ(cd_engine_search(e, name, NULL, cases[i].v, 1, 2, 0, &r, &err), cases[i].want);
        if (cases[i].want != CD_OK)
            CHECK(strstr(err.message, "query 0: vector's squared L2 norm") != NULL);
        CHECK((r != NULL) == (cases[i].want == CD_OK));
        cd_search_result_destroy(r);
    }
    cd_engine_close(e);
}

static double now_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec * 1e3 + (double)t.tv_nsec / 1e6;
}

/*
 * What the snapshot test watches: the engine's log says when the big
 * gallery's index starts being written, and the snapshot is held there
 * (in the log call) until the test releases it, or for at most
 * HOLD_MAX_S, so that the create and the searches surely land inside it.
 */
#define HOLD_MAX_S 20

typedef struct snap_watch {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool writing, release;
    double writing_at, released_at;
} snap_watch;

static void snap_log(void *ctx, int level, const char *msg)
{
    snap_watch *w = ctx;
    (void)level;
    if (strncmp(msg, "snapshot of gallery big ", 24) != 0 || !strstr(msg, ": writing "))
        return;
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += HOLD_MAX_S;
    pthread_mutex_lock(&w->mu);
    w->writing = true;
    w->writing_at = now_ms();
    pthread_cond_broadcast(&w->cv);
    int rc = 0;
    while (!w->release && rc == 0)
        rc = pthread_cond_timedwait(&w->cv, &w->mu, &until);
    w->released_at = now_ms();
    pthread_mutex_unlock(&w->mu);
}

/* An engine call run on its own thread: when it returned, and what. */
typedef struct bg_call {
    cd_engine *e;
    cd_err (*fn)(cd_engine *e, cd_error *err);
    cd_err rc;
    cd_error err;
    double returned_at;
    atomic_bool done;
} bg_call;

static void *bg_call_run(void *arg)
{
    bg_call *c = arg;
    c->rc = c->fn(c->e, &c->err);
    c->returned_at = now_ms();
    atomic_store(&c->done, true);
    return NULL;
}

static cd_err create_late(cd_engine *e, cd_error *err)
{
    return cd_engine_gallery_create(e, "late", "snap64", "Flat", NULL, err);
}

/* n random dim-64 items named <prefix><i> into gallery, in batches. */
static void upsert_random(cd_engine *e, const char *gallery, const char *prefix, size_t n)
{
    enum { BATCH = 5000, SDIM = 64 };
    cd_item_in *items = calloc(BATCH, sizeof *items);
    char (*ids)[24] = calloc(BATCH, sizeof *ids);
    float *v = malloc((size_t)BATCH * SDIM * sizeof *v);
    REQUIRE(items && ids && v);
    for (size_t from = 0; from < n; from += BATCH) {
        size_t m = n - from < BATCH ? n - from : BATCH;
        for (size_t i = 0; i < m; i++) {
            for (size_t d = 0; d < SDIM; d++)
                v[i * SDIM + d] = frand();
            snprintf(ids[i], sizeof ids[i], "%s%zu", prefix, from + i);
            items[i] = (cd_item_in){.id = ids[i], .vector = v + i * SDIM};
        }
        cd_error err;
        CHECK_OK(cd_engine_items_upsert(e, gallery, NULL, items, m, &err), &err);
    }
    free(items);
    free(ids);
    free(v);
}

/*
 * A snapshot of a large gallery does not stall the API: once its index
 * is being written (the snapshot held there until the create has
 * returned and 500 searches more have run, then written), a gallery
 * create arrives, which needs the engine's write lock, and searches on
 * another gallery go on.  The create must return, and 500 searches run
 * after it, while the snapshot is held.  Were the engine lock held across
 * the whole pass, the create would wait for it and every search behind
 * the create with it.
 */
static void test_snapshot_beside_searches(size_t n_big)
{
    snap_watch w = {.mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER};
    cd_engine *e = open_sub("snap", snap_log, &w);
    cd_error err;
    cd_model m = {.dim = 64, .metric = CD_METRIC_L2};
    snprintf(m.name, sizeof m.name, "snap64");
    CHECK_OK(cd_engine_model_create(e, &m, NULL, &err), &err);
    CHECK_OK(cd_engine_gallery_create(e, "small", "snap64", SNAP_EXACT, NULL, &err), &err);
    CHECK_OK(cd_engine_gallery_create(e, "big", "snap64", SNAP_EXACT, NULL, &err), &err);
    upsert_random(e, "small", "s", 1000);
    upsert_random(e, "big", "b", n_big);
    CHECK_OK(cd_engine_gallery_create(e, "gone", "snap64", SNAP_EXACT, NULL, &err), &err);
    upsert_random(e, "gone", "g", 100);
    cd_gallery gone;
    CHECK_OK(cd_engine_gallery_get(e, "gone", &gone, &err), &err);

    bg_call s = {.e = e, .fn = cd_engine_snapshot};
    bg_call c = {.e = e, .fn = create_late};
    pthread_t st, ct;
    REQUIRE(pthread_create(&st, NULL, bg_call_run, &s) == 0);
    pthread_mutex_lock(&w.mu);
    while (!w.writing)
        pthread_cond_wait(&w.cv, &w.mu);
    pthread_mutex_unlock(&w.mu);
    REQUIRE(pthread_create(&ct, NULL, bg_call_run, &c) == 0);
    /* Next in the pass after big, deleted before the pass reaches it. */
    CHECK_OK(cd_engine_gallery_delete(e, "gone", &err), &err);
    double deleted_at = now_ms();

    float q[64];
    for (int d = 0; d < 64; d++)
        q[d] = sinf((float)d);
    double longest = 0;
    size_t searches = 0, after_create = 0;
    while (!atomic_load(&s.done)) {
        cd_search_result *r = NULL;
        double t0 = now_ms();
        cd_err rc = cd_engine_search(e, "small", NULL, q, 1, 10, 0, &r, &err);
        double took = now_ms() - t0;
        CHECK_OK(rc, &err);
        CHECK(r && r->counts[0] == 10);
        cd_search_result_destroy(r);
        longest = took > longest ? took : longest;
        searches++;
        if (atomic_load(&c.done) && ++after_create == 500) {
            pthread_mutex_lock(&w.mu);
            w.release = true;
            pthread_cond_broadcast(&w.cv);
            pthread_mutex_unlock(&w.mu);
        }
    }
    pthread_join(st, NULL);
    pthread_join(ct, NULL);
    CHECK_OK(s.rc, &s.err);
    CHECK_OK(c.rc, &c.err);

    double snap_ms = s.returned_at - w.writing_at;
    printf("snapshot of %zu x 64 (" SNAP_EXACT "): %.0f ms from the start of its write (held %.0f ms, "
           "written in %.0f ms); a gallery create returned after %.1f ms; %zu searches of "
           "another gallery beside it, the longest %.2f ms\n",
           n_big, snap_ms, w.released_at - w.writing_at, s.returned_at - w.released_at,
           c.returned_at - w.writing_at, searches, longest);
    CHECK(w.release);
    CHECK(c.returned_at < w.released_at);
    CHECK(deleted_at < w.released_at);
    char prefix[32], index_dir[320];
    snprintf(prefix, sizeof prefix, "g%lld-", (long long)gone.id);
    snprintf(index_dir, sizeof index_dir, "%s/snap/index", data_dir);
    DIR *d = opendir(index_dir);
    struct dirent *de;
    size_t gone_files = 0, files = 0;
    while (d && (de = readdir(d)) != NULL) {
        gone_files += strncmp(de->d_name, prefix, strlen(prefix)) == 0;
        files += strstr(de->d_name, ".faiss") != NULL;
    }
    if (d)
        closedir(d);
    CHECK_EQ(gone_files, 0);
    CHECK_EQ(files, 2); /* small's and big's */
    /* No bound on the latencies themselves (printed above): on a shared
     * machine one search can wait for a core as long as the snapshot
     * lasts.  The proof is structural: w.release is set only by this
     * loop, after 500 searches that ran once the create had returned,
     * all while the snapshot was held; with the engine lock held across
     * the pass the create never returns, the hold times out and
     * w.release stays false. */
    cd_engine_close(e);
}

#define EVAL_ITEMS 40
#define EVAL_PROBES 12

/*
 * cd_engine_evaluation_run evaluates and stores in one call: what it
 * returns is what cd_eval_run computes from the same probes, gallery and
 * paragon, and what get, list and latest read back, before and after a
 * restart.  A failed run stores nothing.
 */
static void test_evaluation_run(void)
{
    static float old_v[EVAL_ITEMS][DIM], new_v[EVAL_ITEMS][DIM];
    static float probe_v[EVAL_PROBES][DIM], base_v[EVAL_PROBES][DIM];
    char item_ids[EVAL_ITEMS][16], probe_ids[EVAL_PROBES][16], labels[5][4];
    const char *gallery_ids[EVAL_ITEMS], *gallery_labels[EVAL_ITEMS];
    const char *pids[EVAL_PROBES], *plabels[EVAL_PROBES];
    cd_item_in old_items[EVAL_ITEMS], new_items[EVAL_ITEMS];
    for (int l = 0; l < 5; l++)
        snprintf(labels[l], sizeof labels[l], "L%d", l);
    for (int i = 0; i < EVAL_ITEMS; i++) {
        snprintf(item_ids[i], sizeof item_ids[i], "e%d", i);
        for (int d = 0; d < DIM; d++) {
            old_v[i][d] = frand() + (d == i % 5 ? 2.0f : 0.0f);
            new_v[i][d] = frand() + (d == i % 5 + 5 ? 2.0f : 0.0f);
        }
        gallery_ids[i] = item_ids[i];
        gallery_labels[i] = labels[i % 5];
        old_items[i] = (cd_item_in){.id = item_ids[i], .label = labels[i % 5],
                                    .vector = old_v[i]};
        new_items[i] = (cd_item_in){.id = item_ids[i], .vector = new_v[i]};
    }
    for (int i = 0; i < EVAL_PROBES; i++) {
        snprintf(probe_ids[i], sizeof probe_ids[i], "p%d", i);
        pids[i] = probe_ids[i];
        plabels[i] = labels[i % 5];
        for (int d = 0; d < DIM; d++) {
            probe_v[i][d] = frand() + (d == i % 5 + 5 ? 1.5f : 0.0f);
            base_v[i][d] = frand() + (d == i % 5 ? 1.5f : 0.0f);
        }
    }

    cd_engine *e = open_engine(0);
    cd_error err;
    cd_model old_m = {.name = "eval-old", .dim = DIM, .metric = CD_METRIC_IP};
    cd_model new_m = {.name = "eval-new", .dim = DIM, .metric = CD_METRIC_IP};
    CHECK_OK(cd_engine_model_create(e, &old_m, NULL, &err), &err);
    CHECK_OK(cd_engine_model_create(e, &new_m, NULL, &err), &err);
    CHECK_OK(cd_engine_gallery_create(e, "evals", "eval-old", "Flat", NULL, &err), &err);
    CHECK_OK(cd_engine_items_upsert(e, "evals", NULL, old_items, EVAL_ITEMS, &err), &err);
    CHECK_OK(cd_engine_items_upsert(e, "evals", "eval-new", new_items, EVAL_ITEMS, &err), &err);

    static const int ks[] = {1, 5};
    cd_eval_request req = {
        .gallery = "evals",
        .query_model = "eval-new",
        .probes = {EVAL_PROBES, &probe_v[0][0], pids, plabels},
        .baseline = {EVAL_PROBES, &base_v[0][0], pids, NULL},
        .ks = ks,
        .n_ks = 2,
        .primary_k = 5,
    };
    cd_evaluation ev;
    CHECK_OK(cd_engine_evaluation_run(e, &req, &ev, &err), &err);
    REQUIRE(ev.report != NULL);

    /* The numbers: those of cd_eval_run on the same input. */
    cd_eval_input in = {
        .dim = DIM, .metric = CD_METRIC_IP,
        .probes = req.probes, .baseline = req.baseline,
        .gallery = {EVAL_ITEMS, &old_v[0][0], gallery_ids, gallery_labels},
        .paragon = &new_v[0][0], .ks = ks, .n_ks = 2, .primary_k = 5,
    };
    cd_eval_report *want = NULL;
    CHECK_OK(cd_eval_run(&in, &want, &err), &err);
    REQUIRE(want != NULL);
    CHECK(want->has_baseline && want->has_paragon);
    CHECK(reports_equal(ev.report, want, "run"));
    CHECK(ev.id > 0 && ev.created_at[0] == '2');
    CHECK_STREQ(ev.gallery, "evals");
    CHECK_STREQ(ev.query_model, "eval-new");
    CHECK_STREQ(ev.gallery_model, "eval-old");
    CHECK_EQ(ev.compatible, want->compatible);
    CHECK(strncmp(ev.criterion, "top5 new->old ", 14) == 0);
    CHECK(ev.cross_top1 == want->cross.top[0] && ev.baseline_map == want->baseline.map);
    cd_engine_stats stats;
    cd_engine_get_stats(e, &stats);
    CHECK_EQ(stats.evaluations_run, 1);

    /* A failed run stores nothing. */
    cd_evaluation none;
    cd_eval_request bad = req;
    bad.gallery = "no-such";
    CHECK_EQ(cd_engine_evaluation_run(e, &bad, &none, &err), CD_ENOTFOUND);
    CHECK(none.report == NULL && none.id == 0);
    bad = req;
    bad.baseline.n = 1;     /* p1.. have no baseline entry */
    CHECK_EQ(cd_engine_evaluation_run(e, &bad, &none, &err), CD_EINVAL);
    CHECK(none.report == NULL);
    cd_engine_get_stats(e, &stats);
    CHECK_EQ(stats.evaluations_run, 1);

    /* Read back now, and after a restart. */
    for (int pass = 0; pass < 2; pass++) {
        const char *when = pass ? "after restart" : "read back";
        cd_evaluation got;
        CHECK_OK(cd_engine_evaluation_get(e, ev.id, &got, &err), &err);
        CHECK(reports_equal(got.report, ev.report, when));
        CHECK_STREQ(got.created_at, ev.created_at);
        CHECK_STREQ(got.criterion, ev.criterion);
        cd_evaluation_finish(&got);
        cd_evaluation *list = NULL;
        size_t n = 0;
        CHECK_OK(cd_engine_evaluation_list(e, "evals", NULL, 0, 10, &list, &n, &err), &err);
        CHECK_EQ(n, 1);
        if (n == 1 && list[0].report) {
            CHECK_EQ(list[0].id, ev.id);
            CHECK(same_metrics(&list[0].report->update_gain, &want->update_gain, 2));
            CHECK_EQ(list[0].report->n_labels, 0);
        }
        cd_evaluations_destroy(list, n);
        CHECK_OK(cd_engine_evaluation_latest(e, "evals", &list, &n, &err), &err);
        CHECK(n == 1 && list[0].id == ev.id && list[0].report == NULL);
        cd_evaluations_destroy(list, n);
        cd_engine_close(e);
        e = open_engine(0);
    }
    CHECK_OK(cd_engine_gallery_delete(e, "evals", &err), &err);
    CHECK_EQ(cd_engine_evaluation_get(e, ev.id, &none, &err), CD_ENOTFOUND);
    cd_engine_close(e);
    cd_eval_report_destroy(want);
    cd_evaluation_finish(&ev);
}

static int rm_tree(const char *path)
{
    DIR *d = opendir(path);
    if (!d)
        return unlink(path);
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        char sub[1024];
        snprintf(sub, sizeof sub, "%s/%s", path, de->d_name);
        rm_tree(sub);
    }
    closedir(d);
    return rmdir(path);
}

/* COMPATD_LONG=1 (meson option long_tests) runs every spec x metric. */
static bool long_run(void)
{
    const char *v = getenv("COMPATD_LONG");
    return v && strcmp(v, "1") == 0;
}

int main(void)
{
    snprintf(data_dir, sizeof data_dir, "/tmp/compatd-test-engine-XXXXXX");
    REQUIRE(mkdtemp(data_dir));
    static const char *const specs[] = {"Flat", "HNSW32", "IVF16,Flat"};
    static const cd_metric metrics[] = {CD_METRIC_COSINE, CD_METRIC_IP, CD_METRIC_L2};
    for (size_t i = 0; i < 3; i++)
        for (size_t j = 0; j < 3; j++)
            if (i == 0 || j == 0 || long_run())
                test_lifecycle(specs[i], metrics[j]);
    test_catch_up();
    test_flat_from_store();
    test_refusals();
    test_background_check();
    test_vector_range();
    test_snapshot_beside_searches(200000);
    test_evaluation_run();
    CHECK_EQ(rm_tree(data_dir), 0);
    return check_exit();
}
