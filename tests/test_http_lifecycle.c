/*
 * test_http_lifecycle.c - finishing an upgrade (SPEC.md §3.8): the
 * backfill queue, promotion and retirement, over HTTP against the real
 * daemon.
 *
 * Models "old" and "new" (cosine, DIM each; "new" is let in with
 * query_policy "any").  Every item's vectors are made here from a seed,
 * so the test knows each answer without asking the daemon:
 *   - queue: paged with small limits in both orders while a writer thread
 *     adds, deletes and backfills other items, every item that lacks "new"
 *     throughout appears exactly once, none twice, and in order;
 *   - traffic: items searched a known number of times (k = 1 with their own
 *     vector, so each search returns exactly that item) come first, by
 *     count, then in insertion order, with `hits` equal to the counts, and
 *     so again after a clean restart;
 *   - promotion: 409 backfill_incomplete with the exact missing count;
 *     under searcher threads, every reply is 200 and ranks exactly as
 *     either the old or the new gallery model does (a brute-force
 *     reference here), the one the reply names; across kill -9 at random
 *     moments, the gallery model after restart is the last acknowledged
 *     one or the one in flight, and searches, counts and the queue agree;
 *     racing the last upserts of a backfill, each refusal counts exactly
 *     the items missing at its moment and the promotion comes only once
 *     none is;
 *   - retirement: 409 for the gallery model, for items that would be left
 *     with no embedding and while an adapter route needs the model, then the old model's embeddings go, the
 *     database file (with its WAL) shrinks by most of their bytes, and
 *     their index snapshot is removed;
 *   - bad input: 400 and 404 with the error table's codes.
 */
#include <dirent.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sqlite3.h>

#include "check.h"
#include "daemon.h"

#define DIM 16
#define N_ITEMS 600
#define SEARCHERS 3

/* The vector of item i of a model (seed 1: old, 2: new), unit length. */
static void item_vector(int model_seed, size_t i, float *out, size_t dim)
{
    td_rng r = {((uint64_t)model_seed << 40) ^ (uint64_t)(i + 1) * 7919u};
    double n2 = 0;
    for (size_t d = 0; d < dim; d++) {
        out[d] = (float)td_rng_gauss(&r);
        n2 += (double)out[d] * out[d];
    }
    for (size_t d = 0; d < dim; d++)
        out[d] = (float)(out[d] / sqrt(n2));
}

static void call_ok(td_http *h, long want, const char *method, const char *path,
                    const char *body)
{
    td_reply r;
    CHECK_EQ(td_http_call(h, &r, want, method, path, body), want);
    td_reply_finish(&r);
}

/* Upserts items "<prefix><i>" for i in [from, to) with vectors of model
 * (seed) into gallery g, dim values each. */
static long upsert_range(td_http *h, const char *g, const char *model, int seed,
                         const char *prefix, size_t from, size_t to, size_t dim)
{
    td_text t = {0};
    float *v = malloc(dim * sizeof *v);
    td_text_append(&t, "{\"model\":\"%s\",\"items\":[", model);
    for (size_t i = from; i < to; i++) {
        item_vector(seed, i, v, dim);
        char *b64 = td_b64_floats(v, dim);
        td_text_append(&t, "%s{\"id\":\"%s%zu\",\"label\":\"l%zu\",\"vector_b64\":\"%s\"}",
                       i > from ? "," : "", prefix, i, i % 7, b64);
        free(b64);
    }
    td_text_append(&t, "]}");
    char *path = td_fmt("/v1/galleries/%s/items", g);
    td_reply r;
    long st = td_http_call(h, &r, 200, "POST", path, t.s);
    td_reply_finish(&r);
    free(path);
    free(t.s);
    free(v);
    return st;
}

/* Models old and new of dim, gallery g of old with query_policy any. */
static void setup(td_http *h, const char *g, size_t dim, bool models)
{
    if (models) {
        char *b = td_fmt("{\"name\":\"old\",\"dim\":%zu,\"metric\":\"cosine\"}", dim);
        call_ok(h, 201, "POST", "/v1/models", b);
        free(b);
        b = td_fmt("{\"name\":\"new\",\"dim\":%zu,\"metric\":\"cosine\"}", dim);
        call_ok(h, 201, "POST", "/v1/models", b);
        free(b);
    }
    char *b = td_fmt("{\"name\":\"%s\",\"model\":\"old\"}", g);
    call_ok(h, 201, "POST", "/v1/galleries", b);
    free(b);
    char *p = td_fmt("/v1/galleries/%s", g);
    call_ok(h, 200, "PATCH", p, "{\"query_policy\":\"any\"}");
    free(p);
}

/* "v<i>" -> i, or -1 for another id. */
static long item_index(const char *id, const char *prefix)
{
    size_t n = strlen(prefix);
    if (!id || strncmp(id, prefix, n) != 0)
        return -1;
    char *end;
    long v = strtol(id + n, &end, 10);
    return *end ? -1 : v;
}

/* --- the queue under concurrent writes -------------------------------- */

typedef struct writer_arg {
    td_daemon *d;
    const char *g;
    atomic_bool stop;
    long failures;
} writer_arg;

/* Adds items "w<j>" (old only), deletes "v<i>" for i % 10 == 3 and
 * backfills "v<i>" for i % 10 == 5, a little at a time, until stopped. */
static void *writer(void *p)
{
    writer_arg *w = p;
    td_http *h = td_http_create(w->d);
    size_t j = 0, i = 0;
    while (!atomic_load(&w->stop) && i < N_ITEMS) {
        if (upsert_range(h, w->g, "old", 1, "w", j, j + 3, DIM) != 200)
            w->failures++;
        j += 3;
        for (; i < N_ITEMS && i % 10 != 9; i++) {
            td_reply r;
            if (i % 10 == 3) {
                char *path = td_fmt("/v1/galleries/%s/items/v%zu", w->g, i);
                if (td_http_json(h, "DELETE", path, NULL, &r) != 204)
                    w->failures++;
                td_reply_finish(&r);
                free(path);
            } else if (i % 10 == 5 && upsert_range(h, w->g, "new", 2, "v", i, i + 1, DIM) != 200) {
                w->failures++;
            }
        }
        i++;
    }
    td_http_destroy(h);
    return NULL;
}

/* An item's place in insertion order: the v items were all made before
 * any w item, each series in index order. */
static long insertion_rank(const char *id)
{
    long v = item_index(id, "v");
    if (v >= 0)
        return v;
    long w = item_index(id, "w");
    return w >= 0 ? 1000000 + w : -1;
}

/* Pages the queue of model new on g in order (limit per page), checking
 * the order as it goes; seen[i] counts appearances of "v<i>". */
static void page_queue(td_http *h, const char *g, const char *order, int limit, int *seen)
{
    char *cursor = NULL;
    bool traffic = strcmp(order, "traffic") == 0;
    double last_hits = INFINITY;
    long last_rank = -1;
    for (int pages = 0; pages < 100000; pages++) {
        char *path = cursor ? td_fmt("/v1/galleries/%s/backfill?model=new&order=%s&limit=%d&after=%s",
                                     g, order, limit, cursor)
                            : td_fmt("/v1/galleries/%s/backfill?model=new&order=%s&limit=%d",
                                     g, order, limit);
        td_reply r;
        CHECK_EQ(td_http_call(h, &r, 200, "GET", path, NULL), 200);
        free(path);
        free(cursor);
        cursor = NULL;
        const cJSON *items = td_json_at(r.json, "items");
        CHECK(cJSON_GetArraySize(items) <= limit);
        const cJSON *it;
        cJSON_ArrayForEach(it, items) {
            long rank = insertion_rank(td_json_str(it, "id"));
            double hits = td_json_num(it, "hits");
            CHECK(rank >= 0);
            /* id: insertion order; traffic: hits never rise, and equal
             * hits go in insertion order. */
            if (traffic && hits < last_hits)
                last_rank = -1;
            CHECK(!traffic || hits <= last_hits);
            CHECK(rank > last_rank);
            last_rank = rank;
            last_hits = hits;
            if (rank < N_ITEMS)
                seen[rank]++;
        }
        const char *next = td_json_str(r.json, "next");
        if (next)
            cursor = strdup(next);
        td_reply_finish(&r);
        if (!cursor)
            break;
    }
    free(cursor);
}

static void test_queue_concurrent(td_daemon *d, td_http *h)
{
    const char *g = "queue";
    setup(h, g, DIM, false);
    upsert_range(h, g, "old", 1, "v", 0, N_ITEMS, DIM);
    /* A third backfilled before the listing starts. */
    for (size_t i = 0; i < N_ITEMS; i += 3)
        upsert_range(h, g, "new", 2, "v", i, i + 1, DIM);
    /* Some traffic, so that the traffic order is not insertion order. */
    float v[DIM];
    for (size_t i = 1; i < N_ITEMS; i += 17) {
        item_vector(1, i, v, DIM);
        char *b64 = td_b64_floats(v, DIM);
        char *body = td_fmt("{\"k\":1,\"vector_b64\":\"%s\"}", b64);
        char *path = td_fmt("/v1/galleries/%s/search", g);
        for (size_t rep = 0; rep < 1 + i % 3; rep++)
            call_ok(h, 200, "POST", path, body);
        free(path);
        free(body);
        free(b64);
    }
    static const struct {
        const char *order;
        int limit;
    } cases[] = {{"id", 7}, {"traffic", 5}, {"traffic", 64}, {"id", 1000}};
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        char gname[32];
        snprintf(gname, sizeof gname, "queue%zu", c);
        if (c > 0) {
            g = gname;
            setup(h, g, DIM, false);
            upsert_range(h, g, "old", 1, "v", 0, N_ITEMS, DIM);
            for (size_t i = 0; i < N_ITEMS; i += 3)
                upsert_range(h, g, "new", 2, "v", i, i + 1, DIM);
        }
        writer_arg w = {.d = d, .g = g};
        atomic_init(&w.stop, false);
        pthread_t t;
        REQUIRE(pthread_create(&t, NULL, writer, &w) == 0);
        int seen[N_ITEMS] = {0};
        page_queue(h, g, cases[c].order, cases[c].limit, seen);
        atomic_store(&w.stop, true);
        pthread_join(t, NULL);
        CHECK_EQ(w.failures, 0);
        size_t steady = 0, twice = 0, missed = 0;
        for (size_t i = 0; i < N_ITEMS; i++) {
            bool lacking_throughout = i % 3 != 0 && i % 10 != 3 && i % 10 != 5;
            twice += seen[i] > 1;
            if (lacking_throughout) {
                steady++;
                missed += seen[i] != 1;
            } else if (i % 3 == 0) {
                CHECK_EQ(seen[i], 0);   /* had new embeddings throughout */
            }
        }
        if (missed || twice)
            fprintf(stderr, "order %s limit %d: %zu of %zu steady items missed, %zu seen twice\n",
                    cases[c].order, cases[c].limit, missed, steady, twice);
        CHECK_EQ(missed, 0);
        CHECK_EQ(twice, 0);
    }
}

/* --- traffic order, across a clean restart ---------------------------- */

/* The queue of model new on g, order traffic, one page: ids into idx[],
 * hits into hits[]; returns how many. */
static size_t queue_page(td_http *h, const char *g, size_t limit, long *idx, double *hits)
{
    char *path = td_fmt("/v1/galleries/%s/backfill?model=new&limit=%zu", g, limit);
    td_reply r;
    CHECK_EQ(td_http_call(h, &r, 200, "GET", path, NULL), 200);
    free(path);
    size_t n = 0;
    const cJSON *it;
    cJSON_ArrayForEach(it, td_json_at(r.json, "items")) {
        idx[n] = item_index(td_json_str(it, "id"), "t");
        hits[n] = td_json_num(it, "hits");
        n++;
    }
    td_reply_finish(&r);
    return n;
}

static void test_traffic(td_daemon *d, td_http *h)
{
    enum { N = 80 };
    const char *g = "traffic";
    setup(h, g, DIM, false);
    upsert_range(h, g, "old", 1, "t", 0, N, DIM);
    upsert_range(h, g, "new", 2, "t", 0, 10, DIM);  /* t0..t9 not queued */
    long count[N] = {0};
    td_rng rng = {td_seed(1234)};
    float v[DIM];
    char *path = td_fmt("/v1/galleries/%s/search", g);
    for (size_t s = 0; s < 150; s++) {
        size_t i = (size_t)(td_rng_uniform(&rng) * 30);  /* among t0..t29 */
        item_vector(1, i, v, DIM);
        char *b64 = td_b64_floats(v, DIM);
        char *body = td_fmt("{\"k\":1,\"vector_b64\":\"%s\"}", b64);
        td_reply r;
        CHECK_EQ(td_http_call(h, &r, 200, "POST", path, body), 200);
        char want_id[32];
        snprintf(want_id, sizeof want_id, "t%zu", i);
        CHECK_STREQ(td_json_str(r.json, "results.0.0.id"), want_id);
        td_reply_finish(&r);
        count[i]++;
        free(body);
        free(b64);
    }
    free(path);
    /* The reference order: t10..t79 by count descending, then index. */
    long want[N];
    size_t nw = 0;
    for (long c = 150; c >= 0; c--)
        for (size_t i = 10; i < N; i++)
            if (count[i] == c)
                want[nw++] = (long)i;
    for (int round = 0; round < 2; round++) {
        long got[N];
        double hits[N];
        size_t n = queue_page(h, g, N, got, hits);
        CHECK_EQ(n, nw);
        for (size_t i = 0; i < n && i < nw; i++) {
            CHECK_EQ(got[i], want[i]);
            CHECK_EQ((long)hits[i], count[want[i]]);
        }
        if (round == 0) {
            CHECK_EQ(td_daemon_stop(d), 0);
            REQUIRE(td_daemon_start(d, NULL));
        }
    }
}

/* --- the command line -------------------------------------------------- */

/* Runs compatd with args (after the port's --url) and returns its status;
 * *out (may be NULL) gets its output. */
static int run_cli(td_daemon *d, const char *const *args, char **out)
{
    char *url = td_fmt("http://127.0.0.1:%d", td_daemon_port(d));
    const char *argv[16];
    size_t n = 0;
    for (; args[n]; n++)
        argv[n] = args[n];
    argv[n++] = "--url";
    argv[n++] = url;
    argv[n] = NULL;
    int rc = td_run_compatd(argv, out);
    free(url);
    return rc;
}

/* The lines of file path, malloc'd each, into lines[max]; how many. */
static size_t read_lines(const char *path, char **lines, size_t max)
{
    FILE *f = fopen(path, "r");
    size_t n = 0;
    char buf[512];
    while (f && n < max && fgets(buf, sizeof buf, f)) {
        buf[strcspn(buf, "\n")] = '\0';
        lines[n++] = strdup(buf);
    }
    if (f)
        fclose(f);
    return n;
}

/* compatd backfill writes the queue the API gives, in its order, paged
 * past a page of 10000 when asked; promote and retire answer as the API. */
static void test_cli(td_daemon *d, td_http *h)
{
    char *file = td_fmt("%s/ids.txt", td_daemon_dir(d));
    static const struct {
        const char *order, *limit;
    } cases[] = {{NULL, "5"}, {NULL, NULL}, {"id", "33"}, {"id", NULL}};
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        const char *args[16] = {"backfill", "--gallery", "traffic", "--model", "new", "--out",
                                file};
        size_t n = 7;
        if (cases[c].order) {
            args[n++] = "--order";
            args[n++] = cases[c].order;
        }
        if (cases[c].limit) {
            args[n++] = "--limit";
            args[n++] = cases[c].limit;
        }
        args[n] = NULL;
        CHECK_EQ(run_cli(d, args, NULL), 0);
        char *path = td_fmt("/v1/galleries/traffic/backfill?model=new&limit=1000&order=%s",
                            cases[c].order ? cases[c].order : "traffic");
        td_reply r;
        CHECK_EQ(td_http_call(h, &r, 200, "GET", path, NULL), 200);
        char *lines[200];
        size_t got = read_lines(file, lines, 200);
        size_t want = (size_t)cJSON_GetArraySize(td_json_at(r.json, "items"));
        if (cases[c].limit && (size_t)atoi(cases[c].limit) < want)
            want = (size_t)atoi(cases[c].limit);
        CHECK_EQ(got, want);
        for (size_t i = 0; i < got && i < want; i++) {
            char *key = td_fmt("items.%zu.id", i);
            CHECK_STREQ(lines[i], td_json_str(r.json, key));
            free(key);
        }
        for (size_t i = 0; i < got; i++)
            free(lines[i]);
        td_reply_finish(&r);
        free(path);
    }
    char *out = NULL;
    static const char *const promote[] = {"promote", "--gallery", "traffic", "--model", "new",
                                          NULL};
    CHECK_EQ(run_cli(d, (const char *const *)promote, &out), 1);
    CHECK(out && strstr(out, "70 items have no new embedding"));
    free(out);
    static const char *const retire[] = {"retire", "--gallery", "traffic", "--model", "new",
                                         NULL};
    CHECK_EQ(run_cli(d, retire, &out), 0);
    CHECK(out && strstr(out, "10 embeddings of new retired"));
    free(out);
    static const char *const bad[] = {"backfill", "--gallery", "traffic", "--model", "new", NULL};
    CHECK_EQ(run_cli(d, bad, NULL), 2);     /* no --out */
    free(file);
}

/* --- promotion --------------------------------------------------------- */

/* The reference top-k of query q over items 0..n-1 of model seed. */
static void reference_topk(int seed, size_t n, const float *q, size_t k, size_t *idx)
{
    double score[16];
    size_t got = 0;
    float v[DIM];
    for (size_t i = 0; i < n; i++) {
        item_vector(seed, i, v, DIM);
        td_ref_topk_offer(TD_METRIC_COSINE, k, idx, score, &got, i,
                          td_ref_score(TD_METRIC_COSINE, v, q, DIM));
    }
}

typedef struct searcher_arg {
    td_daemon *d;
    const char *g;
    size_t n_items;
    atomic_bool stop;
    long replies, as_old, as_new, wrong, bad_status;
} searcher_arg;

#define K 5

/* Searches with no model (the gallery model) until stopped; each reply
 * must rank as the model it names does. */
static void *searcher(void *p)
{
    searcher_arg *s = p;
    td_http *h = td_http_create(s->d);
    td_rng rng = {(uint64_t)(uintptr_t)p};
    char *path = td_fmt("/v1/galleries/%s/search", s->g);
    float q[DIM];
    while (!atomic_load(&s->stop)) {
        for (size_t d = 0; d < DIM; d++)
            q[d] = (float)td_rng_gauss(&rng);
        char *b64 = td_b64_floats(q, DIM);
        char *body = td_fmt("{\"k\":%d,\"vector_b64\":\"%s\"}", K, b64);
        td_reply r;
        long st = td_http_json(h, "POST", path, body, &r);
        s->replies++;
        if (st != 200) {
            s->bad_status++;
        } else {
            const char *model = td_json_str(r.json, "model");
            int seed = model && strcmp(model, "old") == 0 ? 1 : 2;
            s->as_old += seed == 1;
            s->as_new += seed == 2;
            /* cosine: normalise the query as the server does */
            double n2 = 0;
            for (size_t d = 0; d < DIM; d++)
                n2 += (double)q[d] * q[d];
            for (size_t d = 0; d < DIM; d++)
                q[d] = (float)(q[d] / sqrt(n2));
            size_t idx[K];
            reference_topk(seed, s->n_items, q, K, idx);
            for (size_t j = 0; j < K; j++) {
                char *key = td_fmt("results.0.%zu.id", j);
                long got = item_index(td_json_str(r.json, key), "p");
                s->wrong += got != (long)idx[j];
                free(key);
            }
        }
        td_reply_finish(&r);
        free(body);
        free(b64);
    }
    free(path);
    td_http_destroy(h);
    return NULL;
}

/* The gallery's model, from GET. */
static char *gallery_model(td_http *h, const char *g)
{
    char *path = td_fmt("/v1/galleries/%s", g);
    td_reply r;
    CHECK_EQ(td_http_call(h, &r, 200, "GET", path, NULL), 200);
    const char *m = td_json_str(r.json, "model");
    char *out = strdup(m ? m : "");
    td_reply_finish(&r);
    free(path);
    return out;
}

static void test_promote(td_daemon *d, td_http *h)
{
    enum { N = 300 };
    const char *g = "promo";
    setup(h, g, DIM, false);
    upsert_range(h, g, "old", 1, "p", 0, N, DIM);
    upsert_range(h, g, "new", 2, "p", 0, N - 37, DIM);
    td_reply r;
    /* Incomplete: 409 with the exact count, nothing changes. */
    CHECK_EQ(td_http_call(h, &r, 409, "POST", "/v1/galleries/promo/promote",
                          "{\"model\":\"new\"}"), 409);
    CHECK_STREQ(td_reply_error_code(&r), "backfill_incomplete");
    CHECK_EQ(td_json_num(r.json, "error.missing"), 37);
    td_reply_finish(&r);
    char *m = gallery_model(h, g);
    CHECK_STREQ(m, "old");
    free(m);
    /* An item of old alone counts too; backfilled, the promotion goes. */
    upsert_range(h, g, "new", 2, "p", N - 37, N, DIM);
    upsert_range(h, g, "old", 1, "p", N, N + 1, DIM);
    CHECK_EQ(td_http_call(h, &r, 409, "POST", "/v1/galleries/promo/promote",
                          "{\"model\":\"new\"}"), 409);
    CHECK_EQ(td_json_num(r.json, "error.missing"), 1);
    td_reply_finish(&r);
    call_ok(h, 204, "DELETE", "/v1/galleries/promo/items/p300", NULL);

    /* Under search load. */
    searcher_arg s[SEARCHERS];
    pthread_t t[SEARCHERS];
    for (size_t i = 0; i < SEARCHERS; i++) {
        memset(&s[i], 0, sizeof s[i]);
        s[i].d = d;
        s[i].g = g;
        s[i].n_items = N;
        atomic_init(&s[i].stop, false);
        REQUIRE(pthread_create(&t[i], NULL, searcher, &s[i]) == 0);
    }
    usleep(300 * 1000);
    CHECK_EQ(td_http_call(h, &r, 200, "POST", "/v1/galleries/promo/promote",
                          "{\"model\":\"new\"}"), 200);
    CHECK_STREQ(td_json_str(r.json, "model"), "new");
    /* The former gallery model stays, as a query model not yet verified. */
    const cJSON *qm;
    bool old_listed = false;
    cJSON_ArrayForEach(qm, td_json_at(r.json, "query_models")) {
        if (strcmp(td_json_str(qm, "model"), "old") == 0) {
            old_listed = true;
            CHECK_STREQ(td_json_str(qm, "status"), "unverified");
        }
    }
    CHECK(old_listed);
    CHECK_EQ(td_json_num(r.json, "embeddings.old"), N);
    td_reply_finish(&r);
    usleep(300 * 1000);
    long replies = 0, as_old = 0, as_new = 0;
    for (size_t i = 0; i < SEARCHERS; i++) {
        atomic_store(&s[i].stop, true);
        pthread_join(t[i], NULL);
        CHECK_EQ(s[i].bad_status, 0);
        CHECK_EQ(s[i].wrong, 0);
        replies += s[i].replies;
        as_old += s[i].as_old;
        as_new += s[i].as_new;
    }
    fprintf(stderr, "promotion under load: %ld searches, %ld as old, %ld as new\n", replies,
            as_old, as_new);
    CHECK(as_old > 0 && as_new > 0);
    /* Promoting the gallery model again changes nothing. */
    call_ok(h, 200, "POST", "/v1/galleries/promo/promote", "{\"model\":\"new\"}");

    /* Across kill -9: back and forth, the daemon killed at a random moment
     * while promotions are being sent. */
    td_rng rng = {td_seed(99)};
    const char *acked = "new";
    int rounds = td_long_tests() ? 12 : 5;
    for (int round = 0; round < rounds; round++) {
        unsigned delay = 5 + (unsigned)(td_rng_uniform(&rng) * 60);
        REQUIRE(td_daemon_kill_later(d, delay));
        const char *in_flight = NULL;
        for (int i = 0; i < 1000; i++) {
            const char *target = strcmp(acked, "new") == 0 ? "old" : "new";
            char *body = td_fmt("{\"model\":\"%s\"}", target);
            in_flight = target;
            long st = td_http_json(h, "POST", "/v1/galleries/promo/promote", body, &r);
            td_reply_finish(&r);
            free(body);
            if (st != 200)
                break;
            acked = target;
            in_flight = NULL;
        }
        CHECK_EQ(td_daemon_kill(d), 0);
        REQUIRE(td_daemon_start(d, NULL));
        char *now = gallery_model(h, g);
        CHECK(strcmp(now, acked) == 0 || (in_flight && strcmp(now, in_flight) == 0));
        acked = strcmp(now, "old") == 0 ? "old" : "new";
        /* Invariants: both models full, no item missing either, and
         * search ranks as the gallery model. */
        CHECK_EQ(td_gallery_count(h, g), N);
        for (int k = 0; k < 2; k++) {
            char *path = td_fmt("/v1/galleries/promo/backfill?model=%s", k ? "new" : "old");
            CHECK_EQ(td_http_call(h, &r, 200, "GET", path, NULL), 200);
            CHECK_EQ(td_json_num(r.json, "missing"), 0);
            CHECK_NEAR(td_json_num(r.json, "coverage"), 1.0, 1e-12);
            td_reply_finish(&r);
            free(path);
        }
        float q[DIM];
        item_vector(3, (size_t)round, q, DIM);
        char *b64 = td_b64_floats(q, DIM);
        char *body = td_fmt("{\"k\":%d,\"vector_b64\":\"%s\"}", K, b64);
        CHECK_EQ(td_http_call(h, &r, 200, "POST", "/v1/galleries/promo/search", body), 200);
        CHECK_STREQ(td_json_str(r.json, "model"), now);
        size_t idx[K];
        reference_topk(strcmp(now, "old") == 0 ? 1 : 2, N, q, K, idx);
        for (size_t j = 0; j < K; j++) {
            char *key = td_fmt("results.0.%zu.id", j);
            CHECK_EQ(item_index(td_json_str(r.json, key), "p"), (long)idx[j]);
            free(key);
        }
        td_reply_finish(&r);
        free(body);
        free(b64);
        free(now);
    }
}

/* --- promotion racing the last of a backfill ---------------------------- */

typedef struct filler_arg {
    td_daemon *d;
    size_t from, to;
    atomic_long acked;      /* upserts answered 200 */
    long failures;
} filler_arg;

/* Backfills new for "c<from>".."c<to - 1>", one item per request. */
static void *filler(void *p)
{
    filler_arg *f = p;
    td_http *h = td_http_create(f->d);
    for (size_t i = f->from; i < f->to; i++) {
        if (upsert_range(h, "race", "new", 2, "c", i, i + 1, DIM) == 200)
            atomic_fetch_add(&f->acked, 1);
        else
            f->failures++;
    }
    td_http_destroy(h);
    return NULL;
}

/*
 * Promotions sent while the last items are being backfilled: each 409
 * counts exactly the items that lacked new at that moment, so it lies
 * between what the writer had acknowledged before the request and after
 * the reply (one more may be committed but not yet answered), and the
 * 200 comes only once every item has new.
 */
static void test_promote_race(td_daemon *d, td_http *h)
{
    enum { N = 200, LEFT = 60 };
    call_ok(h, 201, "POST", "/v1/galleries", "{\"name\":\"race\",\"model\":\"old\"}");
    upsert_range(h, "race", "old", 1, "c", 0, N, DIM);
    upsert_range(h, "race", "new", 2, "c", 0, N - LEFT, DIM);
    filler_arg f = {.d = d, .from = N - LEFT, .to = N};
    atomic_init(&f.acked, 0);
    pthread_t t;
    REQUIRE(pthread_create(&t, NULL, filler, &f) == 0);
    long promoted = 0, refused = 0, last_missing = LEFT, out_of_bounds = 0;
    while (!promoted) {
        long before = atomic_load(&f.acked);
        td_reply r;
        long st = td_http_json(h, "POST", "/v1/galleries/race/promote", "{\"model\":\"new\"}",
                               &r);
        long after = atomic_load(&f.acked);
        if (st == 409) {
            long m = (long)td_json_num(r.json, "error.missing");
            CHECK_STREQ(td_reply_error_code(&r), "backfill_incomplete");
            out_of_bounds += m > LEFT - before || m < LEFT - after - 1 || m > last_missing;
            last_missing = m;
            refused++;
        } else {
            CHECK_EQ(st, 200);
            CHECK(after >= LEFT - 1);
            promoted = 1;
        }
        td_reply_finish(&r);
    }
    pthread_join(t, NULL);
    CHECK_EQ(f.failures, 0);
    CHECK_EQ(out_of_bounds, 0);
    fprintf(stderr, "promotion race: %ld refusals before the promotion\n", refused);
    char *m = gallery_model(h, "race");
    CHECK_STREQ(m, "new");
    free(m);
}

/* --- retirement ------------------------------------------------------- */

static long long file_size(const char *dir, const char *name)
{
    char *p = td_fmt("%s/%s", dir, name);
    struct stat sb;
    long long n = stat(p, &sb) == 0 ? (long long)sb.st_size : 0;
    free(p);
    return n;
}

/* Snapshot files in DATA/index of gallery id gid. */
static int snapshots_of(const char *data, long gid)
{
    char *p = td_fmt("%s/index", data);
    char *prefix = td_fmt("g%ld-m", gid);
    DIR *dir = opendir(p);
    int n = 0;
    struct dirent *de;
    while (dir && (de = readdir(dir)) != NULL)
        n += strncmp(de->d_name, prefix, strlen(prefix)) == 0 &&
             strstr(de->d_name, ".faiss") != NULL;
    if (dir)
        closedir(dir);
    free(prefix);
    free(p);
    return n;
}

/* Runs sql on the database at path (beside the daemon: WAL lets both). */
static void sql_exec(const char *path, const char *sql)
{
    sqlite3 *db = NULL;
    char *msg = NULL;
    REQUIRE(sqlite3_open(path, &db) == SQLITE_OK);
    sqlite3_busy_timeout(db, 5000);
    int rc = sqlite3_exec(db, sql, NULL, NULL, &msg);
    if (rc != SQLITE_OK)
        fprintf(stderr, "%s: %s\n", sql, msg ? msg : "?");
    CHECK_EQ(rc, SQLITE_OK);
    sqlite3_free(msg);
    CHECK_EQ(sqlite3_close(db), SQLITE_OK);
}

/* The integer the query sql gives on the database at path. */
static long long sql_int(const char *path, const char *sql)
{
    sqlite3 *db = NULL;
    sqlite3_stmt *st = NULL;
    long long v = -1;
    REQUIRE(sqlite3_open(path, &db) == SQLITE_OK);
    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) == SQLITE_OK && sqlite3_step(st) == SQLITE_ROW)
        v = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    CHECK_EQ(sqlite3_close(db), SQLITE_OK);
    return v;
}

/* Fills gallery g (made here, of old128) with n items of old128 and
 * new128 each, and promotes new128. */
static void fill_both(td_http *h, const char *g, size_t n)
{
    /* IVF1,Flat: exact, and snapshotted (a Flat index is read from the
     * store instead), so that retiring a model shows in its files. */
    char *b = td_fmt("{\"name\":\"%s\",\"model\":\"old128\",\"index\":\"IVF1,Flat\"}", g);
    call_ok(h, 201, "POST", "/v1/galleries", b);
    free(b);
    for (size_t i = 0; i < n; i += 500) {
        CHECK_EQ(upsert_range(h, g, "old128", 1, "r", i, i + 500, 128), 200);
        CHECK_EQ(upsert_range(h, g, "new128", 2, "r", i, i + 500, 128), 200);
    }
}

/* Retires old128 from g (n embeddings): the database file with its WAL
 * must shrink by most of their bytes. */
static void retire_shrinks(td_daemon *d, td_http *h, const char *g, size_t n)
{
    const char *data = td_daemon_data_dir(d);
    long long before = file_size(data, "compatd.db") + file_size(data, "compatd.db-wal");
    char *path = td_fmt("/v1/galleries/%s/embeddings/old128", g);
    td_reply r;
    CHECK_EQ(td_http_call(h, &r, 200, "DELETE", path, NULL), 200);
    CHECK_EQ(td_json_num(r.json, "deleted"), n);
    td_reply_finish(&r);
    free(path);
    long long after = file_size(data, "compatd.db") + file_size(data, "compatd.db-wal");
    long long vector_bytes = (long long)n * 128 * 4;
    fprintf(stderr, "retirement from %s: %lld -> %lld bytes (%lld bytes of vectors retired)\n",
            g, before, after, vector_bytes);
    CHECK(after < before - vector_bytes * 3 / 4);
}

static void test_retire(td_daemon *d, td_http *h)
{
    enum { N = 3000, RDIM = 128 };
    const char *g = "retire";
    char *b = td_fmt("{\"name\":\"old%d\",\"dim\":%d,\"metric\":\"cosine\"}", RDIM, RDIM);
    call_ok(h, 201, "POST", "/v1/models", b);
    free(b);
    b = td_fmt("{\"name\":\"new%d\",\"dim\":%d,\"metric\":\"cosine\"}", RDIM, RDIM);
    call_ok(h, 201, "POST", "/v1/models", b);
    free(b);
    fill_both(h, g, N);
    /* An item of new128 alone: old128 can still go, new128 could not. */
    CHECK_EQ(upsert_range(h, g, "new128", 2, "x", 0, 1, RDIM), 200);
    td_reply r;
    CHECK_EQ(td_http_call(h, &r, 409, "DELETE", "/v1/galleries/retire/embeddings/new128", NULL),
             409);
    CHECK(strstr(td_reply_error_message(&r), "1 items") != NULL);
    td_reply_finish(&r);
    CHECK_EQ(td_http_call(h, &r, 409, "DELETE", "/v1/galleries/retire/embeddings/old128", NULL),
             409);
    CHECK_STREQ(td_reply_error_code(&r), "conflict");
    td_reply_finish(&r);
    call_ok(h, 200, "POST", "/v1/galleries/retire/promote", "{\"model\":\"new128\"}");
    CHECK_EQ(td_http_call(h, &r, 409, "DELETE", "/v1/galleries/retire/embeddings/new128", NULL),
             409);
    td_reply_finish(&r);
    /* Snapshots are written at a clean stop; this gallery, made last,
     * has the highest id among those with snapshot files. */
    CHECK_EQ(td_daemon_stop(d), 0);
    REQUIRE(td_daemon_start(d, NULL));
    const char *data = td_daemon_data_dir(d);
    long gid = -1;
    for (long id = 200; id > 0 && gid < 0; id--)
        if (snapshots_of(data, id) > 0)
            gid = id;
    CHECK_EQ(snapshots_of(data, gid), 2);
    /* An adapter route that needs old128 (its adapter maps into it)
     * blocks the retirement until it is gone. */
    call_ok(h, 201, "POST", "/v1/adapters",
            "{\"name\":\"rt\",\"from\":\"new128\",\"to\":\"old128\",\"gallery\":\"retire\"}");
    char *db = td_fmt("%s/compatd.db", data);
    sql_exec(db, "INSERT INTO gallery_adapters SELECT g.id, m.id, a.id FROM galleries g,"
                 " models m, adapters a WHERE g.name = 'retire' AND m.name = 'new128'"
                 " AND a.name = 'rt'");
    CHECK_EQ(td_http_call(h, &r, 409, "DELETE", "/v1/galleries/retire/embeddings/old128", NULL),
             409);
    CHECK(strstr(td_reply_error_message(&r), "adapter route") != NULL);
    td_reply_finish(&r);
    sql_exec(db, "DELETE FROM gallery_adapters");
    retire_shrinks(d, h, g, N);
    CHECK_EQ(snapshots_of(data, gid), 1);
    CHECK_EQ(td_http_call(h, &r, 200, "GET", "/v1/galleries/retire", NULL), 200);
    CHECK(td_json_at(r.json, "embeddings.old128") == NULL);
    CHECK_EQ(td_json_num(r.json, "embeddings.new128"), N + 1);
    td_reply_finish(&r);
    /* Retiring it again deletes nothing; after a kill and restart the
     * gallery serves the promoted model's index alone. */
    CHECK_EQ(td_http_call(h, &r, 200, "DELETE", "/v1/galleries/retire/embeddings/old128", NULL),
             200);
    CHECK_EQ(td_json_num(r.json, "deleted"), 0);
    td_reply_finish(&r);
    CHECK_EQ(td_daemon_kill(d), 0);
    REQUIRE(td_daemon_start(d, NULL));
    CHECK_EQ(td_gallery_count(h, g), N + 1);
    float q[RDIM];
    item_vector(2, 17, q, RDIM);
    char *b64 = td_b64_floats(q, RDIM);
    char *body = td_fmt("{\"k\":1,\"vector_b64\":\"%s\"}", b64);
    CHECK_EQ(td_http_call(h, &r, 200, "POST", "/v1/galleries/retire/search", body), 200);
    CHECK_STREQ(td_json_str(r.json, "results.0.0.id"), "r17");
    td_reply_finish(&r);
    free(body);
    free(b64);

    /* A database made before auto_vacuum (as older versions made them):
     * the first retirement converts it, and the file shrinks too. */
    fill_both(h, "retire2", N);
    call_ok(h, 200, "POST", "/v1/galleries/retire2/promote", "{\"model\":\"new128\"}");
    CHECK_EQ(td_daemon_stop(d), 0);
    sql_exec(db, "PRAGMA auto_vacuum = NONE; VACUUM");
    CHECK_EQ(sql_int(db, "PRAGMA auto_vacuum"), 0);
    REQUIRE(td_daemon_start(d, NULL));
    retire_shrinks(d, h, "retire2", N);
    CHECK_EQ(sql_int(db, "PRAGMA auto_vacuum"), 2);
    free(db);
}

/* --- AM beside AC ------------------------------------------------------ */

/* Evaluates model (seed) on gallery am with 20 probes (vectors of items
 * 0..19 of that seed, plus noise) and the old model's baseline; returns
 * the reply's cross top-1. */
static double evaluate(td_http *h, const char *model, int seed, bool baseline)
{
    td_text t = {0};
    float v[DIM];
    td_rng rng = {(uint64_t)seed * 31u};
    td_text_append(&t, "{\"query_model\":\"%s\",\"queries\":[", model);
    for (size_t i = 0; i < 20; i++) {
        item_vector(seed, i, v, DIM);
        for (size_t d = 0; d < DIM; d++)
            v[d] += (float)(0.4 * td_rng_gauss(&rng));
        char *b64 = td_b64_floats(v, DIM);
        td_text_append(&t, "%s{\"id\":\"q%zu\",\"label\":\"l%zu\",\"vector_b64\":\"%s\"}",
                       i ? "," : "", i, i % 7, b64);
        free(b64);
    }
    td_text_append(&t, "]");
    if (baseline) {
        td_text_append(&t, ",\"baseline\":[");
        for (size_t i = 0; i < 20; i++) {
            item_vector(1, i + 1, v, DIM);
            char *b64 = td_b64_floats(v, DIM);
            td_text_append(&t, "%s{\"id\":\"q%zu\",\"vector_b64\":\"%s\"}", i ? "," : "", i,
                           b64);
            free(b64);
        }
        td_text_append(&t, "]");
    }
    td_text_append(&t, "}");
    td_reply r;
    CHECK_EQ(td_http_call(h, &r, 201, "POST", "/v1/galleries/am/evaluations", t.s), 201);
    double top1 = td_json_num(r.json, "cross.top1");
    td_reply_finish(&r);
    free(t.s);
    return top1;
}

/* AM is the mean cross top-1 of the newer -> older pairs that AC counts
 * (those with a verdict); the gallery model's own evaluation, an older
 * model's and one without baseline are left out, and only the latest
 * evaluation of each query model counts. */
static void test_am(td_http *h)
{
    call_ok(h, 201, "POST", "/v1/models", "{\"name\":\"v3\",\"dim\":16,\"metric\":\"cosine\"}");
    call_ok(h, 201, "POST", "/v1/models", "{\"name\":\"v4\",\"dim\":16,\"metric\":\"cosine\"}");
    call_ok(h, 201, "POST", "/v1/galleries", "{\"name\":\"am\",\"model\":\"old\"}");
    upsert_range(h, "am", "old", 1, "a", 0, 200, DIM);
    evaluate(h, "old", 1, true);            /* the gallery model: not a pair */
    evaluate(h, "new", 5, true);            /* superseded by the next one */
    double a = evaluate(h, "new", 2, true);
    double b = evaluate(h, "v3", 3, true);
    evaluate(h, "v4", 4, false);            /* no verdict: not counted */
    td_reply r;
    CHECK_EQ(td_http_call(h, &r, 200, "GET", "/v1/compatibility", NULL), 200);
    const cJSON *g;
    bool found = false;
    cJSON_ArrayForEach(g, td_json_at(r.json, "galleries")) {
        if (strcmp(td_json_str(g, "gallery"), "am") != 0)
            continue;
        found = true;
        CHECK_EQ(td_json_num(g, "ac.pairs"), 2);
        CHECK_NEAR(td_json_num(g, "am"), (a + b) / 2, 1e-12);
    }
    CHECK(found);
    td_reply_finish(&r);
}

/* --- bad input --------------------------------------------------------- */

static void test_bad_input(td_http *h)
{
    /* An empty gallery misses nothing, but its index spec (PQ4) cannot
     * hold a model of dim 6. */
    call_ok(h, 201, "POST", "/v1/models", "{\"name\":\"odd\",\"dim\":6,\"metric\":\"cosine\"}");
    call_ok(h, 201, "POST", "/v1/galleries", "{\"name\":\"pq\",\"model\":\"old\",\"index\":\"PQ4\"}");
    static const struct {
        const char *method, *path, *body;
        long status;
        const char *code;
    } cases[] = {
        {"GET", "/v1/galleries/queue/backfill?model=no%20such", NULL, 400, "invalid_name"},
        {"GET", "/v1/galleries/queue/backfill?model=nosuch", NULL, 404, "not_found"},
        {"GET", "/v1/galleries/nosuch/backfill?model=new", NULL, 404, "not_found"},
        {"GET", "/v1/galleries/queue/backfill?model=new&limit=0", NULL, 400, "invalid_argument"},
        {"GET", "/v1/galleries/queue/backfill?model=new&limit=x", NULL, 400, "invalid_argument"},
        {"GET", "/v1/galleries/queue/backfill?model=new&limit=10001", NULL, 400,
         "invalid_argument"},
        {"GET", "/v1/galleries/queue/backfill?model=new&limit=-1", NULL, 400, "invalid_argument"},
        {"GET", "/v1/galleries/queue/backfill?model=new&order=random", NULL, 400,
         "invalid_argument"},
        {"GET", "/v1/galleries/queue/backfill?model=new&after=abc", NULL, 400,
         "invalid_argument"},
        {"GET", "/v1/galleries/queue/backfill?model=new&after=t.1.2.00000000", NULL, 400,
         "invalid_argument"},
        {"POST", "/v1/galleries/queue/promote", "{}", 400, "invalid_argument"},
        {"POST", "/v1/galleries/queue/promote", "{\"model\":\"new\",\"x\":1}", 400,
         "unknown_field"},
        {"POST", "/v1/galleries/queue/promote", "{\"model\":7}", 400, "invalid_argument"},
        {"POST", "/v1/galleries/queue/promote", "{\"model\":\"nosuch\"}", 404, "not_found"},
        {"POST", "/v1/galleries/nosuch/promote", "{\"model\":\"new\"}", 404, "not_found"},
        {"POST", "/v1/galleries/queue/promote", "[", 400, "invalid_json"},
        {"POST", "/v1/galleries/pq/promote", "{\"model\":\"odd\"}", 400, "invalid_argument"},
        {"DELETE", "/v1/galleries/queue/embeddings/nosuch", NULL, 404, "not_found"},
        {"DELETE", "/v1/galleries/nosuch/embeddings/new", NULL, 404, "not_found"},
        {"DELETE", "/v1/galleries/queue/embeddings/old", NULL, 409, "conflict"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        td_reply r;
        long st = td_http_call(h, &r, cases[i].status, cases[i].method, cases[i].path,
                               cases[i].body);
        CHECK_EQ(st, cases[i].status);
        CHECK_STREQ(td_reply_error_code(&r), cases[i].code);
        td_reply_finish(&r);
    }
    /* A cursor of one listing is refused by another. */
    td_reply r;
    CHECK_EQ(td_http_call(h, &r, 200, "GET",
                          "/v1/galleries/queue/backfill?model=new&order=id&limit=2", NULL), 200);
    const char *next = td_json_str(r.json, "next");
    REQUIRE(next);
    char *wrong[] = {
        td_fmt("/v1/galleries/queue/backfill?model=new&order=traffic&after=%s", next),
        td_fmt("/v1/galleries/queue/backfill?model=old&order=id&after=%s", next),
        td_fmt("/v1/galleries/queue1/backfill?model=new&order=id&after=%s", next),
    };
    char *right = td_fmt("/v1/galleries/queue/backfill?model=new&order=id&after=%s", next);
    td_reply_finish(&r);
    for (size_t i = 0; i < 3; i++) {
        CHECK_EQ(td_http_call(h, &r, 400, "GET", wrong[i], NULL), 400);
        td_reply_finish(&r);
        free(wrong[i]);
    }
    call_ok(h, 200, "GET", right, NULL);
    free(right);
}

int main(void)
{
    td_daemon *d;
    td_http *h;
    REQUIRE(td_daemon_start_client(NULL, &d, &h));
    setup(h, "base", DIM, true);
    test_queue_concurrent(d, h);
    test_bad_input(h);
    test_traffic(d, h);
    test_cli(d, h);
    test_promote(d, h);
    test_promote_race(d, h);
    test_retire(d, h);
    test_am(h);
    td_http_destroy(h);
    CHECK_EQ(td_daemon_stop(d), 0);
    td_daemon_destroy(d);
    return check_exit();
}
