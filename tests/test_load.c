/*
 * test_load.c - the daemon under a bounded mixed load over loopback, and
 * an online backup taken in the middle of it.
 *
 * Threads, each with its own keep-alive client: N_INGEST writers upserting
 * batches of new items (writer t owns ids "i<t>-<n>" and sends them in
 * order, one batch at a time, so what it has had acknowledged is always a
 * prefix 0..acked[t]-1; vectors are a function of the seed and the id, so
 * nothing needs to be remembered), N_SEARCH readers (searches of 1 or 4
 * vectors, and GETs of acknowledged items), and one evaluator (stored
 * compatibility reports on a small labelled gallery, and the matrix).
 * A sampler reads the daemon's VmRSS from /proc meanwhile.
 *
 * Halfway, the acknowledged prefixes are recorded and `compatd backup`
 * runs as a subprocess while the load goes on.  Afterwards:
 *   - no request got a 5xx or failed in transport, and every reply was the
 *     expected one;
 *   - the daemon holds every acknowledged item: the gallery's count is
 *     their number, and SPOT_CHECKS random ones come back with their
 *     vectors bit for bit (l2 model, vector_b64);
 *   - a second daemon on the copy holds, per writer, a prefix of whole
 *     batches that contains everything acknowledged before the backup
 *     began (one consistent state: a backup made of pages from different
 *     moments would not give prefixes whose sum is the count), spot-checked
 *     the same way; its latest evaluation equals the original's;
 *   - searches agree: the copy's top K equals the original's ranking
 *     restricted to the items the copy holds;
 *   - the daemon's peak RSS (VmHWM) stays under a bound derived from what
 *     it has to hold (see rss_bound_kb), and both daemons stop cleanly.
 * Printed: items ingested and the rate, p50/p99/max latency per request
 * kind, the backup's duration and the batches acknowledged during it, RSS.
 *
 * COMPATD_LONG=1 loads for LOAD_LONG_S seconds (about a minute in all),
 * otherwise LOAD_SHORT_S.
 */
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "check.h"
#include "daemon.h"

#define DIM 32
#define BATCH 250
#define N_INGEST 2
#define N_SEARCH 2
#define LOAD_LONG_S 40.0
#define LOAD_SHORT_S 6.0
#define CAP_LONG 300000     /* items per run at most: ingest is paced to */
#define CAP_SHORT 40000     /* reach this at the end, not before */
#define K 10
#define K_WIDE 1000
#define SPOT_CHECKS 200
#define N_COMPARE 20
#define GET_SHARE 10        /* one reader request in GET_SHARE is a GET */
#define EVAL_DIM 16
#define EVAL_ITEMS 1000
#define EVAL_LABELS 20
#define EVAL_PROBES 100
#define EVAL_PAUSE_MS 100
#define MAX_REPORTED 10     /* failed requests printed in full */

#if defined(__SANITIZE_ADDRESS__)
#define SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define SANITIZED 1
#endif
#endif
#ifndef SANITIZED
#define SANITIZED 0
#endif

enum { KIND_INGEST, KIND_SEARCH, KIND_GET, KIND_EVAL, KIND_MATRIX, KIND_COUNT };
static const char *const kind_names[KIND_COUNT] = {"ingest", "search", "get", "evaluate",
                                                   "matrix"};

/* Worker threads stop the program on running out of memory without
 * REQUIRE, whose counters belong to the main thread. */
static void *must(void *p)
{
    if (!p) {
        fprintf(stderr, "out of memory\n");
        abort();
    }
    return p;
}

/* Latencies of one kind, in seconds. */
typedef struct lat {
    double *v;
    size_t n, cap;
} lat;

static void lat_add(lat *l, double secs)
{
    if (l->n == l->cap) {
        l->cap = l->cap ? 2 * l->cap : 1024;
        l->v = must(realloc(l->v, l->cap * sizeof *l->v));
    }
    l->v[l->n++] = secs;
}

typedef td_text text;

/* What every thread shares. */
typedef struct load {
    uint64_t seed;
    double t0, seconds;
    size_t cap_per_writer;
    atomic_bool stop;
    atomic_size_t acked[N_INGEST];  /* writer t's acknowledged prefix */
    atomic_long evaluations;        /* evaluations acknowledged (201) */
    atomic_long failed;             /* unexpected replies */
    atomic_long server_errors;      /* 5xx and transport failures */
    atomic_long reported;
    pid_t pid;                      /* the daemon's */
    atomic_long rss_max_kb;
    atomic_long rss_samples;
    char *eval_body;                /* the evaluator's request */
} load;

typedef struct worker {
    load *L;
    int index;
    td_http *h;
    td_rng rng;
    lat lat[KIND_COUNT];
} worker;

static void sleep_ms(unsigned ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

/* Item n of writer t: its vector, a function of the seed and the id. */
static void item_vector(uint64_t seed, int t, size_t n, float *v)
{
    td_rng r = {seed ^ ((uint64_t)(t + 1) << 48) ^ (n * 0x9e3779b97f4a7c15ULL)};
    for (size_t d = 0; d < DIM; d++)
        v[d] = (float)td_rng_gauss(&r);
}

/* Counts a reply that is not `want`; prints the first few. */
static bool expect(load *L, const char *what, const td_reply *r, long want)
{
    if (r->status == want)
        return true;
    atomic_fetch_add(&L->failed, 1);
    if (r->status == 0 || r->status >= 500)
        atomic_fetch_add(&L->server_errors, 1);
    if (atomic_fetch_add(&L->reported, 1) < MAX_REPORTED)
        fprintf(stderr, "%s: %ld (want %ld) %.300s%s\n", what, r->status, want,
                r->body ? r->body : "", r->error);
    return false;
}

static void *ingest_main(void *arg)
{
    worker *w = arg;
    load *L = w->L;
    int t = w->index;
    char path[] = "/v1/galleries/load/items";
    float v[DIM];
    while (!atomic_load(&L->stop)) {
        size_t n0 = atomic_load(&L->acked[t]);
        /* Paced: the cap is reached at the end of the run. */
        double share = (td_now() - L->t0) / L->seconds;
        if (n0 + BATCH > L->cap_per_writer || (double)n0 > share * (double)L->cap_per_writer) {
            sleep_ms(5);
            continue;
        }
        text body = {0};
        td_text_append(&body, "{\"items\":[");
        for (size_t i = 0; i < BATCH; i++) {
            item_vector(L->seed, t, n0 + i, v);
            char *b64 = must(td_b64_floats(v, DIM));
            td_text_append(&body, "%s{\"id\":\"i%d-%zu\",\"label\":\"L%zu\",\"vector_b64\":\"%s\"}",
                   i ? "," : "", t, n0 + i, (n0 + i) % 64, b64);
            free(b64);
        }
        td_text_append(&body, "]}");
        td_reply r;
        double start = td_now();
        td_http_json(w->h, "POST", path, body.s, &r);
        lat_add(&w->lat[KIND_INGEST], td_now() - start);
        free(body.s);
        bool ok = expect(L, "upsert", &r, 200);
        if (ok && td_json_num(r.json, "upserted") != BATCH) {
            atomic_fetch_add(&L->failed, 1);
            fprintf(stderr, "upsert: %.300s\n", r.body);
            ok = false;
        }
        td_reply_finish(&r);
        if (!ok)
            break;  /* what is acknowledged must stay a prefix: stop writing */
        atomic_store(&L->acked[t], n0 + BATCH);
    }
    return NULL;
}

static void *search_main(void *arg)
{
    worker *w = arg;
    load *L = w->L;
    float v[4 * DIM];
    char path[128];
    while (!atomic_load(&L->stop)) {
        td_reply r;
        if (td_rng_next(&w->rng) % GET_SHARE == 0) {
            int t = (int)(td_rng_next(&w->rng) % N_INGEST);
            size_t acked = atomic_load(&L->acked[t]);
            if (acked == 0) {
                sleep_ms(1);
                continue;
            }
            size_t n = (size_t)(td_rng_next(&w->rng) % acked);
            snprintf(path, sizeof path, "/v1/galleries/load/items/i%d-%zu", t, n);
            double start = td_now();
            td_http_json(w->h, "GET", path, NULL, &r);
            lat_add(&w->lat[KIND_GET], td_now() - start);
            if (expect(L, path, &r, 200)) {
                char want[32];
                snprintf(want, sizeof want, "L%zu", n % 64);
                const char *label = td_json_str(r.json, "label");
                if (!label || strcmp(label, want) != 0) {
                    atomic_fetch_add(&L->failed, 1);
                    fprintf(stderr, "GET %s: label %s, want %s\n", path, label ? label : "(none)",
                            want);
                }
            }
            td_reply_finish(&r);
            continue;
        }
        size_t nq = td_rng_next(&w->rng) % 5 == 0 ? 4 : 1;
        for (size_t i = 0; i < nq * DIM; i++)
            v[i] = (float)td_rng_gauss(&w->rng);
        text body = {0};
        if (nq == 1) {
            char *b64 = td_b64_floats(v, DIM);
            td_text_append(&body, "{\"k\":%d,\"vector_b64\":\"%s\"}", K, b64);
            free(b64);
        } else {
            td_text_append(&body, "{\"k\":%d,\"include\":[\"label\"],\"vectors\":[", K);
            for (size_t q = 0; q < nq; q++) {
                td_text_append(&body, "%s[", q ? "," : "");
                for (size_t d = 0; d < DIM; d++)
                    td_text_append(&body, "%s%.9g", d ? "," : "", v[q * DIM + d]);
                td_text_append(&body, "]");
            }
            td_text_append(&body, "]}");
        }
        double start = td_now();
        td_http_json(w->h, "POST", "/v1/galleries/load/search", body.s, &r);
        lat_add(&w->lat[KIND_SEARCH], td_now() - start);
        free(body.s);
        if (expect(L, "search", &r, 200) &&
            cJSON_GetArraySize(td_json_at(r.json, "results")) != (int)nq) {
            atomic_fetch_add(&L->failed, 1);
            fprintf(stderr, "search: %d result lists for %zu queries\n",
                    cJSON_GetArraySize(td_json_at(r.json, "results")), nq);
        }
        td_reply_finish(&r);
    }
    return NULL;
}

static void *eval_main(void *arg)
{
    worker *w = arg;
    load *L = w->L;
    for (unsigned round = 0; !atomic_load(&L->stop); round++) {
        td_reply r;
        double start = td_now();
        td_http_json(w->h, "POST", "/v1/galleries/evalg/evaluations", L->eval_body, &r);
        lat_add(&w->lat[KIND_EVAL], td_now() - start);
        if (expect(L, "evaluation", &r, 201)) {
            if (td_json_num(r.json, "queries") != EVAL_PROBES) {
                atomic_fetch_add(&L->failed, 1);
                fprintf(stderr, "evaluation: %.300s\n", r.body);
            }
            atomic_fetch_add(&L->evaluations, 1);
        }
        td_reply_finish(&r);
        if (round % 4 == 3) {
            start = td_now();
            td_http_json(w->h, "GET", "/v1/compatibility", NULL, &r);
            lat_add(&w->lat[KIND_MATRIX], td_now() - start);
            expect(L, "compatibility", &r, 200);
            td_reply_finish(&r);
        }
        sleep_ms(EVAL_PAUSE_MS);
    }
    return NULL;
}

/* A "Name:   123 kB" line of /proc/<pid>/status, in kB; -1 when none. */
static long proc_status_kb(pid_t pid, const char *name)
{
    char path[64], line[256];
    size_t len = strlen(name);
    long kb = -1;
    snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    while (fgets(line, sizeof line, f))
        if (strncmp(line, name, len) == 0 && line[len] == ':')
            kb = strtol(line + len + 1, NULL, 10);
    fclose(f);
    return kb;
}

static void *sampler_main(void *arg)
{
    load *L = arg;
    while (!atomic_load(&L->stop)) {
        long kb = proc_status_kb(L->pid, "VmRSS");
        if (kb > 0) {
            atomic_fetch_add(&L->rss_samples, 1);
            long prev = atomic_load(&L->rss_max_kb);
            while (kb > prev && !atomic_compare_exchange_weak(&L->rss_max_kb, &prev, kb))
                ;
        }
        sleep_ms(100);
    }
    return NULL;
}

/*
 * The most the daemon may hold, in kB, for n items: what it must keep is
 * the Flat index (n x DIM x 4 bytes, plus an 8-byte id and an id-set entry
 * per item), and what it may keep is bounded by settings: SQLite's page
 * caches (64 MiB for the writer, 4 x 16 MiB for the readers), request
 * buffers (a few 100-kB bodies and their cJSON trees per thread), and the
 * binary, libraries, thread stacks and OpenBLAS buffers (about 200 MiB).
 * 384 MiB covers the fixed part; the index is allowed 4x for the copies a
 * remove or a snapshot makes.  Under AddressSanitizer every allocation
 * carries redzones and freed memory sits in a 256 MiB quarantine, and
 * shadow memory adds an eighth: twice the plain bound plus 512 MiB.
 */
static long rss_bound_kb(size_t n)
{
    long index_kb = (long)(n * (DIM * 4 + 16) / 1024);
    long plain = 384 * 1024 + 4 * index_kb;
    return SANITIZED ? 2 * plain + 512 * 1024 : plain;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static void print_latencies(worker *ws, size_t n_workers, double seconds)
{
    fprintf(stderr, "%-10s %8s %9s %9s %9s %9s\n", "request", "count", "per s", "p50 ms",
            "p99 ms", "max ms");
    for (int k = 0; k < KIND_COUNT; k++) {
        lat all = {0};
        for (size_t i = 0; i < n_workers; i++)
            for (size_t j = 0; j < ws[i].lat[k].n; j++)
                lat_add(&all, ws[i].lat[k].v[j]);
        if (all.n == 0) {
            fprintf(stderr, "%-10s %8d\n", kind_names[k], 0);
            continue;
        }
        qsort(all.v, all.n, sizeof *all.v, cmp_double);
        fprintf(stderr, "%-10s %8zu %9.1f %9.2f %9.2f %9.2f\n", kind_names[k], all.n,
                (double)all.n / seconds, 1e3 * all.v[(all.n - 1) / 2],
                1e3 * all.v[(size_t)((double)(all.n - 1) * 0.99)], 1e3 * all.v[all.n - 1]);
        free(all.v);
    }
}

/* ---- set-up ---------------------------------------------------------- */

static void call(td_http *h, long want, const char *method, const char *path, const char *body)
{
    td_reply r;
    td_http_json(h, method, path, body, &r);
    if (r.status != want)
        fprintf(stderr, "%s %s: %ld %s%s\n", method, path, r.status, r.body, r.error);
    REQUIRE(r.status == want);
    td_reply_finish(&r);
}

/* A vector near the centre of label c (EVAL_DIM values). */
static void near_centre(td_rng *r, const float *centres, size_t c, float *v)
{
    for (size_t d = 0; d < EVAL_DIM; d++)
        v[d] = centres[c * EVAL_DIM + d] + 0.6f * (float)td_rng_gauss(r);
}

/* Appends the EVAL_PROBES probes "p<i>", each near the centre of label
 * c<i % EVAL_LABELS>, with their labels when labelled (else baseline
 * entries). */
static void append_probes(text *body, td_rng *r, const float *centres, bool labelled)
{
    float v[EVAL_DIM];
    for (size_t p = 0; p < EVAL_PROBES; p++) {
        near_centre(r, centres, p % EVAL_LABELS, v);
        char *b64 = td_b64_floats(v, EVAL_DIM);
        td_text_append(body, "%s{\"id\":\"p%zu\",", p ? "," : "", p);
        if (labelled)
            td_text_append(body, "\"label\":\"c%zu\",", p % EVAL_LABELS);
        td_text_append(body, "\"vector_b64\":\"%s\"}", b64);
        free(b64);
    }
}

/* The load gallery and the labelled evaluation gallery; returns the
 * evaluator's request body (malloc'd). */
static char *set_up(td_http *h, uint64_t seed)
{
    call(h, 201, "POST", "/v1/models", "{\"name\":\"m\",\"dim\":32,\"metric\":\"l2\"}");
    call(h, 201, "POST", "/v1/galleries", "{\"name\":\"load\",\"model\":\"m\"}");
    call(h, 201, "POST", "/v1/models", "{\"name\":\"e1\",\"dim\":16,\"metric\":\"l2\"}");
    call(h, 201, "POST", "/v1/models",
         "{\"name\":\"e2\",\"dim\":16,\"metric\":\"l2\",\"compatible_with\":\"e1\"}");
    call(h, 201, "POST", "/v1/galleries", "{\"name\":\"evalg\",\"model\":\"e1\"}");

    td_rng r = {seed ^ 0xe7a1};
    float centres[EVAL_LABELS * EVAL_DIM], v[EVAL_DIM];
    for (size_t i = 0; i < EVAL_LABELS * EVAL_DIM; i++)
        centres[i] = (float)td_rng_gauss(&r);
    text items = {0};
    td_text_append(&items, "{\"items\":[");
    for (size_t i = 0; i < EVAL_ITEMS; i++) {
        near_centre(&r, centres, i % EVAL_LABELS, v);
        char *b64 = td_b64_floats(v, EVAL_DIM);
        td_text_append(&items, "%s{\"id\":\"e%zu\",\"label\":\"c%zu\",\"vector_b64\":\"%s\"}",
               i ? "," : "", i, i % EVAL_LABELS, b64);
        free(b64);
    }
    td_text_append(&items, "]}");
    call(h, 200, "POST", "/v1/galleries/evalg/items", items.s);
    free(items.s);

    text body = {0};
    td_text_append(&body, "{\"query_model\":\"e2\",\"ks\":[1,5,10],\"queries\":[");
    append_probes(&body, &r, centres, true);
    td_text_append(&body, "],\"baseline\":[");
    append_probes(&body, &r, centres, false);
    td_text_append(&body, "]}");
    return body.s;
}

/* ---- checks afterwards ------------------------------------------------ */

/* GET item n of writer t with its vector: 200 with the right vector and
 * label (1), 404 (0), anything else (-1, printed). */
static int item_state(td_http *h, uint64_t seed, int t, size_t n)
{
    char path[128];
    float want[DIM];
    td_reply r;
    snprintf(path, sizeof path, "/v1/galleries/load/items/i%d-%zu?vectors=true", t, n);
    td_http_json(h, "GET", path, NULL, &r);
    int state = -1;
    if (r.status == 404) {
        state = 0;
    } else if (r.status == 200) {
        item_vector(seed, t, n, want);
        const cJSON *v = td_json_at(r.json, "vectors.m");
        char label[32];
        snprintf(label, sizeof label, "L%zu", n % 64);
        const char *got = td_json_str(r.json, "label");
        bool same = cJSON_GetArraySize(v) == DIM && got && strcmp(got, label) == 0;
        for (int d = 0; same && d < DIM; d++) {
            float f = (float)cJSON_GetArrayItem(v, d)->valuedouble;
            same = memcmp(&f, &want[d], sizeof f) == 0;
        }
        state = same ? 1 : -1;
    }
    if (state < 0)
        fprintf(stderr, "GET %s: %ld, not the item sent: %.300s%s\n", path, r.status, r.body,
                r.error);
    td_reply_finish(&r);
    return state;
}

/* SPOT_CHECKS random items below upto[t] are there, exactly. */
static void spot_check(td_http *h, uint64_t seed, td_rng *rng, const size_t upto[N_INGEST],
                       const char *who)
{
    size_t total = 0, good = 0, done = 0;
    for (int t = 0; t < N_INGEST; t++)
        total += upto[t];
    for (size_t i = 0; i < SPOT_CHECKS && total > 0; i++) {
        size_t k = (size_t)(td_rng_next(rng) % total);
        int t = 0;
        while (k >= upto[t])
            k -= upto[t++];
        good += item_state(h, seed, t, k) == 1;
        done++;
    }
    fprintf(stderr, "%s: %zu of %zu spot-checked items exact\n", who, good, done);
    CHECK_EQ(good, done);
}

/* The copy's top K for random queries equals the original's ranking with
 * the items the copy lacks taken out. */
static void compare_searches(td_http *orig, td_http *copy, td_rng *rng,
                             const size_t in_copy[N_INGEST])
{
    size_t agreed = 0;
    for (size_t q = 0; q < N_COMPARE; q++) {
        float v[DIM];
        for (size_t d = 0; d < DIM; d++)
            v[d] = (float)td_rng_gauss(rng);
        char *b64 = td_b64_floats(v, DIM);
        td_reply ro, rc;
        td_http_jsonf(orig, &ro, "POST", "/v1/galleries/load/search",
                      "{\"k\":%d,\"vector_b64\":\"%s\"}", K_WIDE, b64);
        td_http_jsonf(copy, &rc, "POST", "/v1/galleries/load/search",
                      "{\"k\":%d,\"vector_b64\":\"%s\"}", K, b64);
        free(b64);
        CHECK_EQ(ro.status, 200);
        CHECK_EQ(rc.status, 200);
        const cJSON *wide = td_json_at(ro.json, "results.0");
        const cJSON *narrow = td_json_at(rc.json, "results.0");
        size_t matched = 0;
        bool same = cJSON_GetArraySize(narrow) == K;
        const cJSON *hit;
        cJSON_ArrayForEach(hit, wide) {
            if (!same || matched == K)
                break;
            const char *id = td_json_str(hit, "id");
            int t;
            size_t n;
            if (!id || sscanf(id, "i%d-%zu", &t, &n) != 2 || t < 0 || t >= N_INGEST) {
                same = false;
                break;
            }
            if (n >= in_copy[t])
                continue;   /* written after the copy's moment */
            const cJSON *c = cJSON_GetArrayItem(narrow, (int)matched++);
            double so = td_json_num(hit, "score"), sc = td_json_num(c, "score");
            const char *cid = td_json_str(c, "id");
            same = cid && strcmp(cid, id) == 0 && fabs(so - sc) <= 1e-5 * fmax(1, fabs(so));
            if (!same)
                fprintf(stderr, "query %zu rank %zu: original %s %.9g, copy %s %.9g\n", q,
                        matched - 1, id, so, cid ? cid : "(none)", sc);
        }
        same = same && matched == K;
        agreed += same;
        td_reply_finish(&ro);
        td_reply_finish(&rc);
    }
    fprintf(stderr, "searches: copy and original agree on %zu of %d queries\n", agreed,
            N_COMPARE);
    CHECK_EQ(agreed, N_COMPARE);
}

/* The newest evaluation the copy has reads the same in both. */
static void compare_evaluations(td_http *orig, td_http *copy, long acked_before)
{
    td_reply r;
    td_http_json(copy, "GET", "/v1/galleries/evalg/evaluations?limit=1", NULL, &r);
    CHECK_EQ(r.status, 200);
    double id = td_json_num(r.json, "evaluations.0.id");
    td_reply_finish(&r);
    if (acked_before > 0)
        CHECK(!isnan(id) && id >= (double)acked_before);
    if (isnan(id))
        return;
    char path[64];
    snprintf(path, sizeof path, "/v1/evaluations/%.0f", id);
    td_reply a, b;
    td_http_json(orig, "GET", path, NULL, &a);
    td_http_json(copy, "GET", path, NULL, &b);
    CHECK_EQ(a.status, 200);
    CHECK_EQ(b.status, 200);
    CHECK(a.body && b.body && strcmp(a.body, b.body) == 0);
    td_reply_finish(&a);
    td_reply_finish(&b);
}

int main(void)
{
    static load L;  /* zeroed: the atomics start at 0 */
    L.seed = td_seed(7031);
    bool long_run = td_long_tests();
    L.seconds = long_run ? LOAD_LONG_S : LOAD_SHORT_S;
    L.cap_per_writer = (long_run ? CAP_LONG : CAP_SHORT) / N_INGEST / BATCH * BATCH;

    td_daemon *d = td_daemon_create(), *copy = td_daemon_create();
    REQUIRE(d && copy);
    REQUIRE(td_daemon_start(d, NULL));
    L.pid = td_daemon_pid(d);
    td_http *h = td_http_create(d), *hc = td_http_create(copy);
    REQUIRE(h && hc);
    L.eval_body = set_up(h, L.seed);

    /* Every client is made here, before any thread runs: libcurl's global
     * set-up happens once, in this thread. */
    enum { N_WORKERS = N_INGEST + N_SEARCH + 1 };
    worker ws[N_WORKERS];
    pthread_t th[N_WORKERS], sampler;
    memset(ws, 0, sizeof ws);
    for (int i = 0; i < N_WORKERS; i++) {
        ws[i].L = &L;
        ws[i].index = i < N_INGEST ? i : i - N_INGEST;
        ws[i].h = td_http_create(d);
        ws[i].rng.state = L.seed * 31 + (uint64_t)i;
        REQUIRE(ws[i].h != NULL);
    }
    fprintf(stderr, "load: %d writers (batches of %d, up to %zu items), %d readers, 1 evaluator, "
            "%.0f s%s\n", N_INGEST, BATCH, L.cap_per_writer * N_INGEST, N_SEARCH, L.seconds,
            SANITIZED ? ", sanitized build" : "");
    L.t0 = td_now();
    REQUIRE(pthread_create(&sampler, NULL, sampler_main, &L) == 0);
    for (int i = 0; i < N_WORKERS; i++) {
        void *(*fn)(void *) = i < N_INGEST ? ingest_main : i < N_INGEST + N_SEARCH ? search_main
                                                                                     : eval_main;
        REQUIRE(pthread_create(&th[i], NULL, fn, &ws[i]) == 0);
    }

    /* Halfway: the backup, while the threads go on. */
    while (td_now() < L.t0 + L.seconds / 2)
        sleep_ms(50);
    size_t before[N_INGEST], after[N_INGEST];
    for (int t = 0; t < N_INGEST; t++)
        before[t] = atomic_load(&L.acked[t]);
    long evals_before = atomic_load(&L.evaluations);
    const char *backup_args[] = {"backup", "--data", td_daemon_data_dir(d), "--to",
                                 td_daemon_data_dir(copy), NULL};
    char *out = NULL;
    double b0 = td_now();
    int status = td_run_compatd(backup_args, &out);
    double backup_s = td_now() - b0;
    for (int t = 0; t < N_INGEST; t++)
        after[t] = atomic_load(&L.acked[t]);
    fprintf(stderr, "%s%s", status != 0 ? "backup failed: " : "", out ? out : "");
    CHECK_EQ(status, 0);
    free(out);
    size_t during = 0;
    for (int t = 0; t < N_INGEST; t++)
        during += (after[t] - before[t]) / BATCH;
    fprintf(stderr, "backup: %.2f s at %.1f s into the load; %zu batches acknowledged meanwhile\n",
            backup_s, b0 - L.t0, during);

    while (td_now() < L.t0 + L.seconds)
        sleep_ms(50);
    atomic_store(&L.stop, true);
    for (int i = 0; i < N_WORKERS; i++)
        pthread_join(th[i], NULL);
    pthread_join(sampler, NULL);
    double elapsed = td_now() - L.t0;

    size_t acked[N_INGEST], total = 0;
    for (int t = 0; t < N_INGEST; t++) {
        acked[t] = atomic_load(&L.acked[t]);
        total += acked[t];
    }
    fprintf(stderr, "ingested %zu items in %.1f s (%.0f items/s), %ld evaluations\n", total,
            elapsed, (double)total / elapsed, atomic_load(&L.evaluations));
    print_latencies(ws, N_WORKERS, elapsed);
    long failed = atomic_load(&L.failed), server_errors = atomic_load(&L.server_errors);
    fprintf(stderr, "unexpected replies: %ld (5xx or transport: %ld)\n", failed, server_errors);
    CHECK_EQ(server_errors, 0);
    CHECK_EQ(failed, 0);

    long hwm = proc_status_kb(L.pid, "VmHWM"), bound = rss_bound_kb(total);
    fprintf(stderr, "daemon RSS: sampled max %ld MiB over %ld samples, peak (VmHWM) %ld MiB, "
            "bound %ld MiB\n", atomic_load(&L.rss_max_kb) / 1024, atomic_load(&L.rss_samples),
            hwm / 1024, bound / 1024);
    CHECK(hwm > 0 && hwm < bound);
    CHECK(atomic_load(&L.rss_max_kb) < bound);

    /* The original holds everything acknowledged. */
    td_rng rng = {L.seed ^ 0xc4ec};
    CHECK_EQ(td_gallery_count(h, "load"), (long)total);
    spot_check(h, L.seed, &rng, acked, "original");

    /* The copy: one consistent state, with everything acknowledged before
     * the backup began. */
    REQUIRE(td_daemon_start(copy, NULL));
    size_t in_copy[N_INGEST], copy_total = 0;
    for (int t = 0; t < N_INGEST; t++) {
        size_t n = before[t];
        if (n > 0)
            CHECK_EQ(item_state(hc, L.seed, t, n - 1), 1);
        while (n < acked[t] && item_state(hc, L.seed, t, n) == 1) {
            CHECK_EQ(item_state(hc, L.seed, t, n + BATCH - 1), 1);   /* whole batches */
            n += BATCH;
        }
        if (n < acked[t])
            CHECK_EQ(item_state(hc, L.seed, t, n), 0);
        CHECK(n <= after[t] + BATCH);
        in_copy[t] = n;
        copy_total += n;
        fprintf(stderr, "writer %d: %zu acknowledged before the backup, %zu in the copy, "
                "%zu by its end, %zu in all\n", t, before[t], n, after[t], acked[t]);
    }
    CHECK_EQ(td_gallery_count(hc, "load"), (long)copy_total);
    CHECK_EQ(td_gallery_count(hc, "evalg"), EVAL_ITEMS);
    spot_check(hc, L.seed, &rng, before, "copy");
    compare_searches(h, hc, &rng, in_copy);
    compare_evaluations(h, hc, evals_before);

    CHECK_EQ(td_daemon_stop(copy), 0);
    CHECK_EQ(td_daemon_stop(d), 0);
    for (int i = 0; i < N_WORKERS; i++) {
        td_http_destroy(ws[i].h);
        for (int k = 0; k < KIND_COUNT; k++)
            free(ws[i].lat[k].v);
    }
    free(L.eval_body);
    td_http_destroy(h);
    td_http_destroy(hc);
    td_daemon_destroy(copy);
    td_daemon_destroy(d);
    return check_exit();
}
