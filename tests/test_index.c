/*
 * test_index.c - cd_index against a naive brute-force search written here.
 *
 * The four specs compatd promises run with every metric: exact results
 * for Flat and for the staging phase of trained types, recall@10 for the
 * approximate ones, crossing the training threshold in batches, removal
 * (real or hidden), save/load round trips and damaged files.  Data are
 * clustered Gaussian vectors from a fixed seed, the way embeddings bunch
 * up; uniform noise has no neighbours worth finding.
 *
 * Quick mode, for slow runs (valgrind: FAISS's k-means is most of the
 * time), runs the trained types with the l2 metric only, half the recall
 * queries and no concurrency check.  It is on under valgrind (seen in
 * LD_PRELOAD) or with CD_TEST_QUICK=1, off with CD_TEST_QUICK=0.
 * On a busy machine run it with OMP_WAIT_POLICY=passive: libgomp's
 * spinning threads otherwise slow FAISS's training tenfold.
 */
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check.h"
#include "error.h"
#include "index.h"
#include "vec.h"

#define DIM 32
#define K 10
#define CLUSTERS 64
#define N_SMALL 2000       /* types that need no training */
#define N_TRAINED 12000    /* over the 9984 that IVF256 needs */
#define N_QUERIES 100
#define N_THREADS 4
#ifndef NOISE
#define NOISE 1.0f   /* per coordinate; centres are N(0, 1) */
#endif

/* ---- random data ---------------------------------------------------- */

static uint64_t rng_state;

static uint64_t rng_next(void)
{
    uint64_t z = (rng_state += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static double rng_uniform(void)
{
    return ((double)(rng_next() >> 11) + 0.5) / 9007199254740992.0;
}

static float rng_gauss(void)
{
    return (float)(sqrt(-2.0 * log(rng_uniform())) *
                   cos(6.283185307179586 * rng_uniform()));
}

/* n points around random cluster centres; unit length for cosine. */
static float *make_vectors(size_t n, const float *centres, cd_metric metric)
{
    float *x = malloc(n * DIM * sizeof *x);
    REQUIRE(x != NULL);
    for (size_t i = 0; i < n; i++) {
        const float *c = centres + (rng_next() % CLUSTERS) * DIM;
        for (size_t d = 0; d < DIM; d++)
            x[i * DIM + d] = c[d] + NOISE * rng_gauss();
        if (metric == CD_METRIC_COSINE)
            REQUIRE(cd_vec_normalize(x + i * DIM, DIM));
    }
    return x;
}

/* ---- the reference: what the index holds, searched naively ------------ */

typedef struct dataset {
    size_t n;           /* vectors made */
    size_t added;       /* the first `added` were given to the index */
    int64_t *ids;       /* n ids, not contiguous, to test the id mapping */
    float *x;           /* n * DIM */
    bool *live;         /* added and not removed */
    cd_metric metric;
} dataset;

static int64_t id_of(size_t i)
{
    return 1000 + 3 * (int64_t)i;
}

static float score(cd_metric m, const float *a, const float *b)
{
    double s = 0;
    for (size_t d = 0; d < DIM; d++) {
        if (m == CD_METRIC_L2)
            s += ((double)a[d] - b[d]) * ((double)a[d] - b[d]);
        else
            s += (double)a[d] * b[d];
    }
    return (float)s;
}

static bool better(cd_metric m, float a, float b)
{
    return m == CD_METRIC_L2 ? a < b : a > b;
}

/* Top k of the live vectors for q by insertion into a sorted list. */
static void brute_force(const dataset *ds, const float *q, int64_t *ids,
                        float *scores)
{
    size_t have = 0;
    for (size_t i = 0; i < ds->added; i++) {
        if (!ds->live[i])
            continue;
        float s = score(ds->metric, q, ds->x + i * DIM);
        if (have == K && !better(ds->metric, s, scores[K - 1]))
            continue;
        size_t j = have < K ? have++ : K - 1;
        while (j > 0 && better(ds->metric, s, scores[j - 1])) {
            ids[j] = ids[j - 1];
            scores[j] = scores[j - 1];
            j--;
        }
        ids[j] = ds->ids[i];
        scores[j] = s;
    }
    for (; have < K; have++) {
        ids[have] = -1;
        scores[have] = 0;
    }
}

static bool id_live(const dataset *ds, int64_t id)
{
    if (id < id_of(0) || (id - id_of(0)) % 3 != 0)
        return false;
    size_t i = (size_t)((id - id_of(0)) / 3);
    return i < ds->added && ds->live[i];
}

static size_t n_live(const dataset *ds)
{
    size_t c = 0;
    for (size_t i = 0; i < ds->added; i++)
        c += ds->live[i];
    return c;
}

/* ---- checks ----------------------------------------------------------- */

/* Searches queries; every returned id must be live and rows well formed. */
static void search_checked(const cd_index *ix, const dataset *ds,
                           const float *q, size_t nq, int64_t *ids,
                           float *scores, const char *what)
{
    cd_error eb, *err = &eb;
    CHECK_OK(cd_index_search(ix, q, nq, K, ids, scores, err), err);
    size_t bad = 0, holes = 0, order = 0;
    size_t want = n_live(ds) < K ? n_live(ds) : K;
    for (size_t i = 0; i < nq; i++) {
        const int64_t *row = ids + i * K;
        const float *s = scores + i * K;
        for (size_t j = 0; j < K; j++) {
            if (row[j] < 0) {
                holes += j < want;
                continue;
            }
            bad += !id_live(ds, row[j]);
            if (j > 0 && row[j - 1] >= 0 &&
                better(ds->metric, s[j], s[j - 1]) &&
                fabsf(s[j] - s[j - 1]) > 1e-4f * (1 + fabsf(s[j])))
                order++;
        }
    }
    if (bad || holes || order)
        fprintf(stderr, "  %s: %zu dead ids, %zu holes, %zu out of order\n",
                what, bad, holes, order);
    CHECK_EQ(bad, 0);
    CHECK_EQ(order, 0);
    CHECK_EQ(holes, 0);
}

/* Same ids and scores as brute force, ties (within float noise) aside. */
static void check_exact(const cd_index *ix, const dataset *ds, const float *q,
                        size_t nq, const char *what)
{
    int64_t *ids = malloc(nq * K * sizeof *ids);
    float *scores = malloc(nq * K * sizeof *scores);
    REQUIRE(ids && scores);
    search_checked(ix, ds, q, nq, ids, scores, what);
    size_t id_diff = 0, score_diff = 0;
    for (size_t i = 0; i < nq; i++) {
        int64_t rid[K];
        float rs[K];
        brute_force(ds, q + i * DIM, rid, rs);
        for (size_t j = 0; j < K; j++) {
            float tol = 1e-4f * (1 + fabsf(rs[j]));
            if (fabsf(scores[i * K + j] - rs[j]) > tol)
                score_diff++;
            bool tied = (j > 0 && fabsf(rs[j] - rs[j - 1]) <= tol) ||
                        (j + 1 < K && fabsf(rs[j] - rs[j + 1]) <= tol);
            if (ids[i * K + j] != rid[j] && !tied)
                id_diff++;
        }
    }
    if (id_diff || score_diff)
        fprintf(stderr, "  %s: %zu ids and %zu scores differ from brute force\n",
                what, id_diff, score_diff);
    CHECK_EQ(id_diff, 0);
    CHECK_EQ(score_diff, 0);
    free(scores);
    free(ids);
}

/* Mean recall@K against brute force. */
static double recall(const cd_index *ix, const dataset *ds, const float *q,
                     size_t nq, const char *what)
{
    int64_t *ids = malloc(nq * K * sizeof *ids);
    float *scores = malloc(nq * K * sizeof *scores);
    REQUIRE(ids && scores);
    search_checked(ix, ds, q, nq, ids, scores, what);
    size_t hit = 0, total = 0;
    for (size_t i = 0; i < nq; i++) {
        int64_t rid[K];
        float rs[K];
        brute_force(ds, q + i * DIM, rid, rs);
        for (size_t a = 0; a < K; a++) {
            if (rid[a] < 0)
                continue;
            total++;
            for (size_t b = 0; b < K; b++)
                if (ids[i * K + b] == rid[a]) {
                    hit++;
                    break;
                }
        }
    }
    free(scores);
    free(ids);
    return total ? (double)hit / (double)total : 1.0;
}

static void check_results(const cd_index *ix, const dataset *ds,
                          const float *q, size_t nq, bool exact,
                          double min_recall, const char *what)
{
    if (exact) {
        check_exact(ix, ds, q, nq, what);
        return;
    }
    double r = recall(ix, ds, q, nq, what);
    fprintf(stderr, "  %s: recall@%d %.3f\n", what, K, r);
    CHECK(r >= min_recall);
}

static void check_empty_search(const cd_index *ix, const float *q)
{
    cd_error eb, *err = &eb;
    int64_t ids[2 * K];
    float scores[2 * K];
    for (size_t i = 0; i < 2 * K; i++)
        ids[i] = 12345;
    CHECK_OK(cd_index_search(ix, q, 2, K, ids, scores, err), err);
    for (size_t i = 0; i < 2 * K; i++)
        CHECK_EQ(ids[i], -1);
}

/* Adds vectors [from, to) of ds. */
static void add_range(cd_index *ix, dataset *ds, size_t from, size_t to)
{
    cd_error eb, *err = &eb;
    CHECK_OK(cd_index_add(ix, ds->ids + from, ds->x + from * DIM, to - from,
                          err), err);
    for (size_t i = from; i < to; i++)
        ds->live[i] = true;
    ds->added = to;
}

/*
 * Saves with a meta blob, loads and checks that the meta comes back and
 * the copy answers bit for bit the same.
 */
static void round_trip(const cd_index *ix, const char *spec, cd_metric metric,
                       const char *path, const float *q, size_t nq)
{
    static const char meta[] = "bound to: gallery 7, model 3";
    cd_error eb, *err = &eb;
    cd_index *copy = NULL;
    void *back = NULL;
    size_t back_len = 0;
    CHECK_OK(cd_index_save(ix, path, meta, sizeof meta, err), err);
    CHECK_OK(cd_index_load(path, spec, DIM, metric, &copy, &back, &back_len,
                           err), err);
    CHECK_EQ(back_len, sizeof meta);
    CHECK(back && memcmp(back, meta, sizeof meta) == 0);
    free(back);
    if (!copy)
        return;
    CHECK_EQ(cd_index_count(copy), cd_index_count(ix));
    CHECK_EQ(cd_index_is_trained(copy), cd_index_is_trained(ix));
    CHECK_EQ(cd_index_can_remove(copy), cd_index_can_remove(ix));
    CHECK_EQ(cd_index_train_threshold(copy), cd_index_train_threshold(ix));
    int64_t *a = malloc(nq * K * sizeof *a), *b = malloc(nq * K * sizeof *b);
    float *sa = malloc(nq * K * sizeof *sa), *sb = malloc(nq * K * sizeof *sb);
    REQUIRE(a && b && sa && sb);
    CHECK_OK(cd_index_search(ix, q, nq, K, a, sa, err), err);
    CHECK_OK(cd_index_search(copy, q, nq, K, b, sb, err), err);
    CHECK(memcmp(a, b, nq * K * sizeof *a) == 0);
    CHECK(memcmp(sa, sb, nq * K * sizeof *sa) == 0);
    free(sb);
    free(sa);
    free(b);
    free(a);
    cd_index_destroy(copy);
}

/* Loading must fail with code and leave *out NULL. */
static void check_load_fails(const char *path, const char *spec, int dim,
                             cd_metric metric, cd_err code, const char *what)
{
    cd_error eb, *err = &eb;
    cd_index *ix = (cd_index *)err; /* must be reset to NULL */
    void *meta = err;               /* this one too */
    size_t meta_len = 1;
    cd_err rc = cd_index_load(path, spec, dim, metric, &ix, &meta, &meta_len,
                              err);
    CHECK(meta == NULL);
    CHECK_EQ(meta_len, 0);
    if (rc != code)
        fprintf(stderr, "  load %s: got %d (%s), want %d\n", what, (int)rc,
                err->message, (int)code);
    CHECK_EQ(rc, code);
    CHECK(ix == NULL);
    cd_index_destroy(rc == CD_OK ? ix : NULL);
}

/* Truncated copies of a good file at several lengths, then garbage. */
static void check_damaged(const char *good, const char *dir, const char *spec,
                          cd_metric metric)
{
    FILE *f = fopen(good, "rb");
    REQUIRE(f != NULL);
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    fseek(f, 0, SEEK_SET);
    REQUIRE(size > 0);
    unsigned char *buf = malloc((size_t)size);
    REQUIRE(buf && fread(buf, 1, (size_t)size, f) == (size_t)size);
    fclose(f);

    char bad[512];
    snprintf(bad, sizeof bad, "%s/damaged", dir);
    long cuts[] = {0, 1, 4, 17, 64, size / 3, size / 2, size - 24, size - 8,
                   size - 1};
    for (size_t i = 0; i < sizeof cuts / sizeof cuts[0]; i++) {
        if (cuts[i] < 0 || cuts[i] >= size)
            continue;
        f = fopen(bad, "wb");
        REQUIRE(f && fwrite(buf, 1, (size_t)cuts[i], f) == (size_t)cuts[i]);
        fclose(f);
        check_load_fails(bad, spec, DIM, metric, CD_ECORRUPT, "truncated");
    }
    /* One flipped bit in the middle, then the head overwritten. */
    buf[size / 2] ^= 0x10;
    f = fopen(bad, "wb");
    REQUIRE(f && fwrite(buf, 1, (size_t)size, f) == (size_t)size);
    fclose(f);
    check_load_fails(bad, spec, DIM, metric, CD_ECORRUPT, "bit flip");
    buf[size / 2] ^= 0x10;
    for (long i = 0; i < size && i < 4096; i++)
        buf[i] = (unsigned char)rng_next();
    f = fopen(bad, "wb");
    REQUIRE(f && fwrite(buf, 1, (size_t)size, f) == (size_t)size);
    fclose(f);
    check_load_fails(bad, spec, DIM, metric, CD_ECORRUPT, "garbage");
    unlink(bad);
    free(buf);
}

/* ---- concurrent searches ------------------------------------------------ */

typedef struct search_job {
    const cd_index *ix;
    const float *q;
    size_t nq;
    const int64_t *expect;
    int mismatches;
} search_job;

static void *search_thread(void *arg)
{
    search_job *job = arg;
    int64_t ids[N_QUERIES * K];
    float scores[N_QUERIES * K];
    for (int round = 0; round < 5; round++) {
        if (cd_index_search(job->ix, job->q, job->nq, K, ids, scores, NULL) !=
                CD_OK ||
            memcmp(ids, job->expect, job->nq * K * sizeof *ids) != 0)
            job->mismatches++;
    }
    return NULL;
}

static void check_concurrent(const cd_index *ix, const float *q, size_t nq)
{
    int64_t expect[N_QUERIES * K];
    float scores[N_QUERIES * K];
    REQUIRE(nq <= N_QUERIES);
    cd_error eb, *err = &eb;
    CHECK_OK(cd_index_search(ix, q, nq, K, expect, scores, err), err);
    pthread_t t[N_THREADS];
    search_job jobs[N_THREADS];
    for (int i = 0; i < N_THREADS; i++) {
        jobs[i] = (search_job){ix, q, nq, expect, 0};
        REQUIRE(pthread_create(&t[i], NULL, search_thread, &jobs[i]) == 0);
    }
    for (int i = 0; i < N_THREADS; i++) {
        pthread_join(t[i], NULL);
        CHECK_EQ(jobs[i].mismatches, 0);
    }
}

/* ---- the table ------------------------------------------------------------ */

static const struct spec_case {
    const char *spec;
    bool trains;        /* untrained when fresh: staging first */
    bool exact;         /* results equal brute force once trained */
    bool removes;       /* removals are real, not hidden */
    double min_recall;  /* recall@10 once trained, when not exact */
} spec_cases[] = {
    {"Flat", false, true, true, 1.0},
    {"HNSW32", false, false, false, 0.9},
    {"IVF256,Flat", true, false, true, 0.9},
    {"IVF256,PQ16", true, false, true, 0.5},
};

static const cd_metric metrics[] = {CD_METRIC_COSINE, CD_METRIC_IP,
                                    CD_METRIC_L2};

/* Removes for real: count drops by the present ids, absent ones ignored. */
static void check_remove(cd_index *ix, dataset *ds, const float *q,
                         const struct spec_case *sc, const char *what)
{
    cd_error eb, *err = &eb;
    int64_t before = cd_index_count(ix);
    int64_t rm[600];
    size_t n = 0, present = 0;
    for (size_t i = 0; i < ds->added && n < 590; i += 7) {
        rm[n++] = ds->ids[i];
        present++;
        ds->live[i] = false;
    }
    rm[n++] = 7;            /* never added */
    rm[n++] = id_of(ds->n); /* beyond the data */
    rm[n++] = rm[0];        /* twice in one call */
    CHECK_OK(cd_index_remove(ix, rm, n, err), err);
    CHECK_EQ(cd_index_count(ix), before - (int64_t)present);
    CHECK_OK(cd_index_remove(ix, rm, n, err), err); /* again: no-op */
    CHECK_EQ(cd_index_count(ix), before - (int64_t)present);
    CHECK(!cd_index_needs_rebuild(ix));
    check_results(ix, ds, q, N_QUERIES, sc->exact || !cd_index_is_trained(ix),
                  sc->min_recall, what);
}

/* Hides: never returned, rebuild wanted past 10 % or on re-adding. */
static void check_hide(cd_index *ix, dataset *ds, const float *q,
                       const struct spec_case *sc, const char *path)
{
    cd_error eb, *err = &eb;
    int64_t before = cd_index_count(ix);
    size_t n_rm = ds->added / 20; /* 5 % */
    int64_t *rm = malloc((ds->added / 5 + 2) * sizeof *rm);
    REQUIRE(rm != NULL);
    size_t n = 0;
    for (size_t i = 0; n < n_rm; i += 5) {
        rm[n++] = ds->ids[i];
        ds->live[i] = false;
    }
    rm[n++] = 7; /* never added */
    CHECK_OK(cd_index_remove(ix, rm, n, err), err);
    CHECK_EQ(cd_index_count(ix), before - (int64_t)n_rm);
    CHECK(!cd_index_needs_rebuild(ix));
    check_results(ix, ds, q, N_QUERIES, false, sc->min_recall, "5% hidden");

    /* The hidden ones' own vectors as queries: they must not come back. */
    int64_t ids[K * 8];
    float scores[K * 8];
    float hq[8 * DIM];
    for (size_t i = 0; i < 8; i++)
        memcpy(hq + i * DIM, ds->x + (i * 5) * DIM, sizeof(float) * DIM);
    search_checked(ix, ds, hq, 8, ids, scores, "hidden as queries");

    CHECK_EQ(cd_index_save(ix, path, NULL, 0, err), CD_ECONFLICT);

    /* Past 10 %: another 7 %, with repeats of already hidden ids. */
    n = 0;
    for (size_t i = 1; n < ds->added * 7 / 100; i += 5) {
        rm[n++] = ds->ids[i];
        ds->live[i] = false;
    }
    size_t fresh = n;
    rm[n++] = ds->ids[0];
    CHECK_OK(cd_index_remove(ix, rm, n, err), err);
    CHECK_EQ(cd_index_count(ix), before - (int64_t)(n_rm + fresh));
    CHECK(cd_index_needs_rebuild(ix));
    check_results(ix, ds, q, N_QUERIES, false, sc->min_recall, "12% hidden");
    free(rm);
}

/* A hidden id added again stays hidden and asks for a rebuild. */
static void check_readd(const struct spec_case *sc, cd_metric metric,
                        const float *centres)
{
    cd_error eb, *err = &eb;
    cd_index *ix = NULL;
    dataset ds = {0};
    ds.n = 400;
    ds.metric = metric;
    ds.x = make_vectors(ds.n, centres, metric);
    ds.ids = malloc(ds.n * sizeof *ds.ids);
    ds.live = calloc(ds.n, sizeof *ds.live);
    REQUIRE(ds.ids && ds.live);
    for (size_t i = 0; i < ds.n; i++)
        ds.ids[i] = id_of(i);
    CHECK_OK(cd_index_create(sc->spec, DIM, metric, &ix, err), err);
    REQUIRE(ix != NULL);
    add_range(ix, &ds, 0, ds.n);
    CHECK_OK(cd_index_remove(ix, &ds.ids[3], 1, err), err);
    ds.live[3] = false;
    CHECK(!cd_index_needs_rebuild(ix));
    /* Its new vector is query 0's twin: it would be the top hit. */
    float v[DIM];
    memcpy(v, ds.x + 10 * DIM, sizeof v);
    CHECK_OK(cd_index_add(ix, &ds.ids[3], v, 1, err), err);
    CHECK(cd_index_needs_rebuild(ix));
    CHECK_EQ(cd_index_count(ix), (int64_t)ds.n - 1);
    int64_t ids[2 * K];
    float scores[2 * K];
    float q[2 * DIM];
    memcpy(q, v, sizeof v);
    memcpy(q + DIM, ds.x + 3 * DIM, sizeof v); /* its old vector */
    search_checked(ix, &ds, q, 2, ids, scores, "re-added");
    CHECK_EQ(cd_index_save(ix, "/nonexistent/never", NULL, 0, err), CD_ECONFLICT);
    cd_index_destroy(ix);
    free(ds.live);
    free(ds.ids);
    free(ds.x);
}

static void run_case(const struct spec_case *sc, cd_metric metric,
                     const char *dir, bool quick)
{
    cd_error eb, *err = &eb;
    cd_index *ix = NULL;
    char path[512], what[128];
    snprintf(path, sizeof path, "%s/%s.%s.faiss", dir, sc->spec,
             cd_metric_name(metric));
    fprintf(stderr, "%s %s\n", sc->spec, cd_metric_name(metric));

    float centres[CLUSTERS * DIM];
    for (size_t i = 0; i < CLUSTERS * DIM; i++)
        centres[i] = rng_gauss();

    dataset ds = {0};
    ds.n = sc->trains ? N_TRAINED : N_SMALL;
    ds.metric = metric;
    ds.x = make_vectors(ds.n, centres, metric);
    ds.ids = malloc(ds.n * sizeof *ds.ids);
    ds.live = calloc(ds.n, sizeof *ds.live);
    REQUIRE(ds.ids && ds.live);
    for (size_t i = 0; i < ds.n; i++)
        ds.ids[i] = id_of(i);
    size_t nq = quick && !sc->exact ? N_QUERIES / 2 : N_QUERIES;
    float *q = make_vectors(N_QUERIES, centres, metric);

    CHECK_OK(cd_index_create(sc->spec, DIM, metric, &ix, err), err);
    REQUIRE(ix != NULL);
    CHECK_EQ(cd_index_is_trained(ix), !sc->trains);
    CHECK_EQ(cd_index_train_threshold(ix), sc->trains ? 9984 : 0);
    CHECK_EQ(cd_index_can_remove(ix), sc->removes);
    CHECK_EQ(cd_index_count(ix), 0);
    check_empty_search(ix, q);
    CHECK_OK(cd_index_add(ix, ds.ids, ds.x, 0, err), err);
    CHECK_EQ(cd_index_count(ix), 0);
    int64_t neg = -5;
    CHECK_EQ(cd_index_add(ix, &neg, ds.x, 1, err), CD_EINVAL);
    CHECK_EQ(cd_index_count(ix), 0);

    /* Fewer vectors than k: padded rows. */
    add_range(ix, &ds, 0, 3);
    check_exact(ix, &ds, q, 5, "3 vectors");

    /* Batches; the trained types cross the threshold in the last one. */
    size_t ends_trained[] = {5000, 9000, N_TRAINED};
    size_t ends_small[] = {800, 1500, N_SMALL};
    size_t *ends = sc->trains ? ends_trained : ends_small;
    for (size_t b = 0; b < 3; b++) {
        add_range(ix, &ds, ds.added, ends[b]);
        CHECK_EQ(cd_index_count(ix), (int64_t)ds.added);
        bool staging = sc->trains && b < 2;
        CHECK_EQ(cd_index_is_trained(ix), !staging);
        snprintf(what, sizeof what, "%zu vectors", ds.added);
        check_results(ix, &ds, q, staging ? N_QUERIES : nq,
                      sc->exact || staging, sc->min_recall, what);
        if (staging && b == 1) /* a staging file round trip */
            round_trip(ix, sc->spec, metric, path, q, nq);
    }
    round_trip(ix, sc->spec, metric, path, q, nq);
    if (!quick && !sc->exact)
        check_concurrent(ix, q, nq);

    /* Damaged, missing and mismatched files; path holds a good one. */
    if (metric == CD_METRIC_L2) {
        check_damaged(path, dir, sc->spec, metric);
        check_load_fails(path, sc->spec, DIM / 2, metric, CD_ECORRUPT,
                         "other dim");
        check_load_fails(path, sc->spec, DIM, CD_METRIC_IP, CD_ECORRUPT,
                         "other metric");
        const char *other = strcmp(sc->spec, "Flat") == 0 ? "HNSW32" : "Flat";
        check_load_fails(path, other, DIM, metric, CD_ECORRUPT, "other type");
    }

    if (sc->removes) {
        check_remove(ix, &ds, q, sc, "after removal");
        round_trip(ix, sc->spec, metric, path, q, nq);
    } else {
        check_hide(ix, &ds, q, sc, path);
        check_readd(sc, metric, centres);
    }
    unlink(path);
    cd_index_destroy(ix);
    free(q);
    free(ds.live);
    free(ds.ids);
    free(ds.x);
}

/* Removal in the staging phase is real, and training skips removed ones. */
static void check_staging_remove(const char *spec, const char *dir)
{
    cd_error eb, *err = &eb;
    cd_index *ix = NULL;
    float centres[CLUSTERS * DIM];
    for (size_t i = 0; i < CLUSTERS * DIM; i++)
        centres[i] = rng_gauss();
    dataset ds = {0};
    ds.n = N_TRAINED;
    ds.metric = CD_METRIC_L2;
    ds.x = make_vectors(ds.n, centres, ds.metric);
    ds.ids = malloc(ds.n * sizeof *ds.ids);
    ds.live = calloc(ds.n, sizeof *ds.live);
    REQUIRE(ds.ids && ds.live);
    for (size_t i = 0; i < ds.n; i++)
        ds.ids[i] = id_of(i);
    float *q = make_vectors(N_QUERIES, centres, ds.metric);
    fprintf(stderr, "%s staging remove\n", spec);

    CHECK_OK(cd_index_create(spec, DIM, ds.metric, &ix, err), err);
    REQUIRE(ix != NULL);
    add_range(ix, &ds, 0, 9000);
    check_remove(ix, &ds, q, &spec_cases[0], "staging after removal");
    CHECK(!cd_index_is_trained(ix));
    int64_t count = cd_index_count(ix);
    /* 9984 - count more reach the threshold exactly. */
    add_range(ix, &ds, ds.added, ds.added + (size_t)(9984 - count) - 1);
    CHECK(!cd_index_is_trained(ix));
    add_range(ix, &ds, ds.added, ds.added + 1);
    CHECK(cd_index_is_trained(ix));
    CHECK_EQ(cd_index_count(ix), 9984);
    check_results(ix, &ds, q, N_QUERIES, false, 0.5, "trained after removal");
    char path[512];
    snprintf(path, sizeof path, "%s/staging-remove.faiss", dir);
    round_trip(ix, spec, ds.metric, path, q, N_QUERIES);
    unlink(path);
    cd_index_destroy(ix);
    free(q);
    free(ds.live);
    free(ds.ids);
    free(ds.x);
}

/*
 * The edges of each accepted form: made, given vectors, searched.  Under
 * ASan this is where a bound that lets FAISS misbehave would show.
 */
static void check_accepted_bounds(void)
{
    static const char *const specs[] = {
        "HNSW2", "HNSW2,Flat", "HNSW256", "IVF1,Flat", "IVF65536,Flat",
        "IVF4,SQ8", "IVF4,PQ8x4", "IVF4,PQ8x8", "PQ32x16", "PQ1x1", "SQ4", "SQ6", "SQ8",
        "SQfp16",
    };
    enum { N = 200 };
    static float x[N * DIM];
    int64_t ids[N], got[K];
    float scores[K];
    cd_error eb, *err = &eb;
    for (size_t i = 0; i < N * DIM; i++)
        x[i] = rng_gauss();
    for (size_t i = 0; i < N; i++)
        ids[i] = (int64_t)i;
    for (size_t s = 0; s < sizeof specs / sizeof specs[0]; s++) {
        cd_index *ix = NULL;
        fprintf(stderr, "bound %s\n", specs[s]);
        CHECK_OK(cd_index_spec_check(specs[s], DIM, err), err);
        CHECK_OK(cd_index_create(specs[s], DIM, CD_METRIC_L2, &ix, err), err);
        if (!ix)
            continue;
        CHECK_OK(cd_index_add(ix, ids, x, N, err), err);
        CHECK_EQ(cd_index_count(ix), N);
        CHECK_OK(cd_index_search(ix, x + 7 * DIM, 1, K, got, scores, err), err);
        /* HNSW2's graph is too sparse to promise the exact neighbour. */
        if (strncmp(specs[s], "HNSW2", 5) != 0 ||
            (specs[s][5] != '\0' && specs[s][5] != ','))
            CHECK_EQ(got[0], 7);
        CHECK(got[0] >= 0 && got[0] < N);
        cd_index_destroy(ix);
    }
}

static void check_rejected_specs(void)
{
    static const struct {
        const char *spec;
        int dim;
    } bad[] = {
        {"IVF256,PQ16", 100}, /* 100 % 16 != 0 */
        {"Nonsense", DIM},
        {"", DIM},
        {"Flat", 0},
        {"Flat", CD_DIM_MAX + 1},
        /* Bounds of the spec grammar (index.c says why each). */
        {"HNSW0", DIM},             /* segfaulted in faiss::add_link */
        {"HNSW1", DIM},             /* level multiplier 1/ln(1) */
        {"HNSW257", DIM},
        {"HNSW32,PQ8", DIM},        /* not an accepted form */
        {"IVF0,Flat", DIM},
        {"IVF999999999,Flat", DIM}, /* allocated 13.7 GB */
        {"IVF65537,Flat", DIM},
        {"IVF99999999999999999999,Flat", DIM},
        {"IVF16", DIM},
        {"IVF16,HNSW32", DIM},
        {"PQ0", DIM},
        {"PQ3", DIM},               /* does not divide 32 */
        {"PQ64", DIM},              /* more than dim */
        {"PQ8x0", DIM},
        {"PQ8x17", DIM},
        {"IVF4,PQ8x9", DIM},        /* IVF-PQ codes hold at most 8 bits */
        {"IVF4,PQ8x14", DIM},
        {"PQ8x", DIM},
        {"SQ7", DIM},
        {"PCA16,Flat", DIM},
        {"Flat,Flat", DIM},
        {"flat", DIM},
        {"HNSW32 ", DIM},
        {"IDMap,Flat", DIM},
    };
    cd_error eb, *err = &eb;
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        cd_index *ix = (cd_index *)err;
        cd_error_clear(err);
        CHECK_EQ(cd_index_create(bad[i].spec, bad[i].dim, CD_METRIC_L2, &ix,
                                 err), CD_EINVAL);
        CHECK(ix == NULL);
        CHECK_EQ(err->code, CD_EINVAL);
        CHECK(err->message[0] != '\0');
    }
    char longspec[CD_SPEC_MAX + 2];
    memset(longspec, 'F', sizeof longspec - 1);
    longspec[sizeof longspec - 1] = '\0';
    cd_index *ix = (cd_index *)err;
    CHECK_EQ(cd_index_create(longspec, DIM, CD_METRIC_L2, &ix, err),
             CD_EINVAL);
    CHECK(ix == NULL);
    cd_index_destroy(NULL);
}

int main(void)
{
    const char *env = getenv("CD_TEST_QUICK");
    const char *preload = getenv("LD_PRELOAD");
    bool quick = env ? *env && strcmp(env, "0") != 0
                     : preload && strstr(preload, "vgpreload");
    char dir[] = "/tmp/test_index.XXXXXX";
    REQUIRE(mkdtemp(dir) != NULL);
    rng_state = 20240611;

    check_rejected_specs();
    check_accepted_bounds();
    char missing[600];
    snprintf(missing, sizeof missing, "%s/missing.faiss", dir);
    check_load_fails(missing, "Flat", DIM, CD_METRIC_L2, CD_ENOTFOUND,
                     "missing");
    check_load_fails(missing, "Nonsense", DIM, CD_METRIC_L2, CD_EINVAL,
                     "bad spec");

    for (size_t s = 0; s < sizeof spec_cases / sizeof spec_cases[0]; s++)
        for (size_t m = 0; m < sizeof metrics / sizeof metrics[0]; m++)
            if (!quick || !spec_cases[s].trains || metrics[m] == CD_METRIC_L2)
                run_case(&spec_cases[s], metrics[m], dir, quick);
    check_staging_remove("IVF256,Flat", dir);

    CHECK(rmdir(dir) == 0);
    return check_exit();
}
