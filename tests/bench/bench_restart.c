/*
 * bench_restart.c - time from start to ready for a gallery of N x 128
 * (cosine, Flat), and what it costs on disk.
 *
 *   bench_restart [N [DIR]]      (default N 200000; DIR a fresh temporary,
 *                                 kept when given, and not filled again
 *                                 when it holds a database)
 *
 * Fills DIR through the core (cd_engine_items_upsert, batches of 10,000),
 * closes it (which writes whatever snapshots the engine keeps), then
 * opens it again several times and prints the time of cd_engine_open and
 * of cd_engine_load_indexes (to ready): a clean restart, and one after a
 * simulated kill -9 (the running marker left in place, as a killed
 * daemon leaves it, so the start takes its unclean path).  Then the bytes
 * on disk (database, WAL, index directory) per vector next to the raw
 * 4 x dim + 8 bytes of a vector and its id.
 */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "engine.h"
#include "store.h"

#define BATCH 10000
#define DIM 128

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* CPU seconds of this process so far (all threads): on a shared machine
 * the wall time also holds waits for a core. */
static double cpu(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
           (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

static void fail(const char *what, const cd_error *err)
{
    fprintf(stderr, "bench_restart: %s: %s\n", what, err->message);
    exit(1);
}

static unsigned long long rng_state = 42;

static float rnd(void)
{
    rng_state = rng_state * 6364136223846793005ULL + 1442695040888963407ULL;
    return (float)((rng_state >> 40) & 0xffffff) / 16777216.0f - 0.5f;
}

static void fill(const char *dir, size_t n)
{
    cd_engine_config cfg = {.data_dir = dir};
    cd_engine *e = NULL;
    cd_error err;
    if (cd_engine_open(&cfg, &e, &err) != CD_OK || cd_engine_load_indexes(e, &err) != CD_OK)
        fail("open", &err);
    cd_model m = {.dim = DIM, .metric = CD_METRIC_COSINE};
    snprintf(m.name, sizeof m.name, "bench-cos");
    if (cd_engine_model_create(e, &m, NULL, &err) != CD_OK ||
        cd_engine_gallery_create(e, "bench", "bench-cos", "Flat", NULL, &err) != CD_OK)
        fail("create", &err);
    float *x = malloc((size_t)BATCH * DIM * sizeof *x);
    cd_item_in *items = calloc(BATCH, sizeof *items);
    char (*ids)[32] = calloc(BATCH, sizeof *ids);
    if (!x || !items || !ids)
        exit(1);
    double t0 = now();
    for (size_t from = 0; from < n; from += BATCH) {
        size_t k = n - from < BATCH ? n - from : BATCH;
        for (size_t i = 0; i < k * DIM; i++)
            x[i] = rnd();
        for (size_t i = 0; i < k; i++) {
            snprintf(ids[i], sizeof ids[i], "item-%zu", from + i);
            items[i] = (cd_item_in){.id = ids[i], .vector = x + i * DIM};
        }
        if (cd_engine_items_upsert(e, "bench", NULL, items, k, &err) != CD_OK)
            fail("upsert", &err);
    }
    double t1 = now();
    cd_engine_close(e);
    printf("filled %zu x %d in %.1f s, closed (with its snapshot pass) in %.2f s\n",
           n, DIM, t1 - t0, now() - t1);
    free(x);
    free(items);
    free(ids);
}

/* One start: open, load to ready; prints both times.  kill9 leaves the
 * running marker, so the next start is an unclean one. */
static double restart(const char *dir, const char *label, int kill9)
{
    cd_engine_config cfg = {.data_dir = dir, .check_in_background = true};
    cd_engine *e = NULL;
    cd_error err;
    double t0 = now(), c0 = cpu();
    if (cd_engine_open(&cfg, &e, &err) != CD_OK)
        fail("open", &err);
    double t1 = now(), c1 = cpu();
    if (cd_engine_load_indexes(e, &err) != CD_OK)
        fail("load", &err);
    double t2 = now(), c2 = cpu();
    cd_gallery g;
    if (cd_engine_gallery_get(e, "bench", &g, &err) != CD_OK)
        fail("gallery", &err);
    printf("  %-26s open %6.0f ms (cpu %5.0f)  load %6.0f ms (cpu %5.0f)  ready %6.0f ms "
           "(cpu %5.0f)  %lld items\n", label, (t1 - t0) * 1e3, (c1 - c0) * 1e3,
           (t2 - t1) * 1e3, (c2 - c1) * 1e3, (t2 - t0) * 1e3, (c2 - c0) * 1e3,
           (long long)g.count);
    if (kill9) {
        /* What kill -9 leaves: the marker; the indexes are dropped
         * without the close's snapshot pass (the memory is leaked, the
         * process would have ended). */
        char marker[1024];
        snprintf(marker, sizeof marker, "%s/compatd.running", dir);
        char keep[1100];
        snprintf(keep, sizeof keep, "%s.keep", marker);
        if (rename(marker, keep) != 0)
            perror("rename");
        cd_engine_close(e);
        if (rename(keep, marker) != 0)
            perror("rename");
    } else {
        cd_engine_close(e);
    }
    return t2 - t0;
}

static long long dir_bytes(const char *dir)
{
    long long total = 0;
    DIR *d = opendir(dir);
    if (!d)
        return 0;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        if (de->d_name[0] == '.')
            continue;
        char path[2048];
        snprintf(path, sizeof path, "%s/%s", dir, de->d_name);
        struct stat sb;
        if (stat(path, &sb) != 0)
            continue;
        total += S_ISDIR(sb.st_mode) ? dir_bytes(path) : (long long)sb.st_size;
    }
    closedir(d);
    return total;
}

int main(int argc, char **argv)
{
    size_t n = argc > 1 ? strtoul(argv[1], NULL, 10) : 200000;
    char tmpl[] = "/tmp/bench_restart.XXXXXX";
    const char *dir = argc > 2 ? argv[2] : mkdtemp(tmpl);
    if (n < 1 || !dir)
        return 2;
    printf("restart benchmark: %zu x %d float32, cosine, Flat, data in %s\n", n, DIM, dir);
    char db[1024];
    snprintf(db, sizeof db, "%s/compatd.db", dir);
    if (access(db, F_OK) == 0)
        printf("(%s holds a database already: not filled again)\n", dir);
    else
        fill(dir, n);
    restart(dir, "first start after the fill", 0);
    restart(dir, "clean restart", 0);
    double clean = restart(dir, "clean restart", 1);
    double unclean = restart(dir, "restart after kill -9", 0);
    char idx[1024];
    snprintf(idx, sizeof idx, "%s/index", dir);
    long long all = dir_bytes(dir), snaps = dir_bytes(idx);
    double raw = 4.0 * DIM + 8;
    printf("ready: clean %.0f ms, after kill -9 %.0f ms (%.2f s per million)\n",
           clean * 1e3, unclean * 1e3, unclean * 1e6 / (double)n);
    printf("disk: %lld bytes (%lld in index/) = %.0f bytes a vector, "
           "%.2fx the raw %.0f (4 x dim + 8 for the id)\n",
           all, snaps, (double)all / (double)n, (double)all / (double)n / raw, raw);
    /* What `compatd compact` makes of it, and a clean restart after. */
    int64_t before = 0, after = 0;
    cd_error err;
    double t0 = now();
    if (cd_store_compact(db, &before, &after, &err) != CD_OK)
        fail("compact", &err);
    printf("compacted in %.1f s: %lld -> %lld bytes\n", now() - t0, (long long)before,
           (long long)after);
    restart(dir, "clean restart, compacted", 0);
    all = dir_bytes(dir);
    printf("disk after compact: %lld bytes = %.0f bytes a vector, %.2fx the raw %.0f\n",
           all, (double)all / (double)n, (double)all / (double)n / raw, raw);
    if (argc <= 2) {
        char cmd[1100];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
        if (system(cmd) != 0)
            fprintf(stderr, "cannot remove %s\n", dir);
    }
    return 0;
}
