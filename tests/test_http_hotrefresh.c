/*
 * test_http_hotrefresh.c - search in a partially backfilled gallery
 * ("hot refresh", schema/concepts.md §3) against an independent merge written here.
 *
 * For each metric a gallery of model g1 holds N_ITEMS items; a query
 * model q1 of the same dim and metric is let in with query_policy "any".
 * Its embeddings are backfilled in stages: none, a random 30 % (plus
 * N_EXTRA items that exist only in q1), then all.  At each stage
 * N_QUERIES q1 queries (k = 10 one by one, k = 50 as one batch) must
 * equal the reference: every live item scored once, with its q1 vector
 * when it has one and its g1 vector otherwise; best first, ids in order
 * up to exact ties, scores within 1e-4.  `searched` must count the items
 * searched in each space (q1 first; entries of 0 items may be left out).
 * g1 queries search only g1 vectors.  Items deleted at 30 % (ones with
 * both embeddings, chosen among the top hits) never come back; the 30 %
 * stage survives a restart.  The gate: q1 is refused under "verified"
 * until it is fully backfilled, then allowed (an empty gallery does not
 * count as fully backfilled).
 */
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "check.h"
#include "daemon.h"

#define DIM 24
#define N_ITEMS 2000
#define N_EXTRA 20          /* items "x<j>" that only have q1 embeddings */
#define N_ALL (N_ITEMS + N_EXTRA)
#define N_QUERIES 50
#define K_SMALL 10
#define K_BIG 50
#define CLUSTERS 32
#define BATCH 500
#define N_DELETE 3

/* A gallery's state as the test knows it. */
typedef struct world {
    td_metric metric;
    char gallery[32], g1[32], q1[32];
    float *g;               /* N_ALL * DIM, rows of the first N_ITEMS used */
    float *q;               /* N_ALL * DIM */
    float *queries;         /* N_QUERIES * DIM */
    bool has_g[N_ALL];
    bool has_q[N_ALL];
    bool live[N_ALL];
    bool deleted[N_ALL];
} world;

/* One query's reference answer. */
typedef struct ref_hits {
    size_t n;
    size_t idx[K_BIG];
    double score[K_BIG];
} ref_hits;

typedef td_text text;

static void set_policy(td_http *h, const world *w, const char *policy)
{
    td_reply r;
    char *path = td_fmt("/v1/galleries/%s", w->gallery);
    char *body = td_fmt("{\"query_policy\":\"%s\"}", policy);
    CHECK_EQ(td_http_call(h, &r, 200, "PATCH", path, body), 200);
    td_reply_finish(&r);
    free(body);
    free(path);
}

/* "v<i>" for the first N_ITEMS, "x<j>" for the extras. */
static void item_id(size_t i, char *buf, size_t size)
{
    if (i < N_ITEMS)
        snprintf(buf, size, "v%zu", i);
    else
        snprintf(buf, size, "x%zu", i - N_ITEMS);
}

static size_t id_index(const char *id)
{
    if (!id || (id[0] != 'v' && id[0] != 'x'))
        return SIZE_MAX;
    char *end;
    unsigned long i = strtoul(id + 1, &end, 10);
    if (*end || end == id + 1)
        return SIZE_MAX;
    if (id[0] == 'v')
        return i < N_ITEMS ? (size_t)i : SIZE_MAX;
    return i < N_EXTRA ? N_ITEMS + (size_t)i : SIZE_MAX;
}

/* Upserts the listed items' vectors of one model (g1 or q1). */
static void upsert(td_http *h, world *w, bool q1, const size_t *which, size_t n)
{
    char *path = td_fmt("/v1/galleries/%s/items", w->gallery);
    for (size_t b = 0; b < n; b += BATCH) {
        size_t end = b + BATCH < n ? b + BATCH : n;
        text body = {0};
        td_text_append(&body, "{\"model\":\"%s\",\"items\":[", q1 ? w->q1 : w->g1);
        for (size_t k = b; k < end; k++) {
            size_t i = which[k];
            char id[32];
            item_id(i, id, sizeof id);
            char *v = td_b64_floats((q1 ? w->q : w->g) + i * DIM, DIM);
            REQUIRE(v != NULL);
            td_text_append(&body, "%s{\"id\":\"%s\",\"vector_b64\":\"%s\"}", k > b ? "," : "", id, v);
            free(v);
        }
        td_text_append(&body, "]}");
        td_reply r;
        CHECK_EQ(td_http_call(h, &r, 200, "POST", path, body.s), 200);
        CHECK_EQ(td_json_num(r.json, "upserted"), end - b);
        td_reply_finish(&r);
        free(body.s);
    }
    for (size_t k = 0; k < n; k++) {
        if (q1)
            w->has_q[which[k]] = true;
        else
            w->has_g[which[k]] = true;
        w->live[which[k]] = true;
    }
    free(path);
}

/* ---- the reference ----------------------------------------------------- */

/*
 * The vector an item is searched with by a query of q1 (q1 true) or g1:
 * q1 queries take the item's q1 vector, else its g1 one; g1 queries only
 * g1 vectors.  NULL when the item is not searched.
 */
static const float *item_vector(const world *w, size_t i, bool q1)
{
    if (!w->live[i])
        return NULL;
    if (q1 && w->has_q[i])
        return w->q + i * DIM;
    return w->has_g[i] ? w->g + i * DIM : NULL;
}

static double item_score(const world *w, size_t i, const float *q, bool q1)
{
    const float *x = item_vector(w, i, q1);
    return x ? td_ref_score(w->metric, x, q, DIM) : NAN;
}

/* The k best items for q by a plain scan over every item once. */
static void ref_search(const world *w, const float *q, bool q1, size_t k, ref_hits *out)
{
    out->n = 0;
    for (size_t i = 0; i < N_ALL; i++) {
        const float *x = item_vector(w, i, q1);
        if (x)
            td_ref_topk_offer(w->metric, k, out->idx, out->score, &out->n, i,
                              td_ref_score(w->metric, x, q, DIM));
    }
}

/*
 * Compares one result list with the reference (see the file comment).
 * Returns the number of problems, printing the first.
 */
static int compare(const cJSON *hits, const world *w, const float *q, bool q1,
                   const ref_hits *ref, const char *what)
{
    int bad = 0;
    size_t n = (size_t)cJSON_GetArraySize(hits);
    if (!cJSON_IsArray(hits) || n != ref->n) {
        fprintf(stderr, "%s: %zu hits, reference has %zu\n", what, n, ref->n);
        return 1;
    }
    for (size_t r = 0; r < n; r++) {
        const cJSON *hit = cJSON_GetArrayItem(hits, (int)r);
        const char *id = td_json_str(hit, "id");
        size_t i = id_index(id);
        double got = td_json_num(hit, "score");
        if (i == SIZE_MAX || !item_vector(w, i, q1)) {
            if (!bad++)
                fprintf(stderr, "%s: rank %zu is %s, which should not be searched%s\n", what,
                        r, id ? id : "(none)",
                        i != SIZE_MAX && w->deleted[i] ? " (deleted)" : "");
            continue;
        }
        for (size_t p = 0; p < r; p++)
            if (id_index(td_json_str(cJSON_GetArrayItem(hits, (int)p), "id")) == i && !bad++)
                fprintf(stderr, "%s: %s twice\n", what, id);
        double want = item_score(w, i, q, q1);
        if (fabs(want - ref->score[r]) > td_tie_eps(ref->score[r])) {
            if (!bad++) {
                char rid[32];
                item_id(ref->idx[r], rid, sizeof rid);
                fprintf(stderr, "%s: rank %zu is %s (reference score %.9g, %s vector), the "
                        "reference has %s (%.9g, %s vector)\n", what, r, id, want,
                        q1 && w->has_q[i] ? "q1" : "g1", rid, ref->score[r],
                        q1 && w->has_q[ref->idx[r]] ? "q1" : "g1");
            }
        } else if (!(fabs(got - want) <= 1e-4 * fmax(1, fabs(want)))) {
            if (!bad++)
                fprintf(stderr, "%s: rank %zu %s score %.9g, reference %.9g (%s vector)\n",
                        what, r, id, got, want, q1 && w->has_q[i] ? "q1" : "g1");
        }
    }
    return bad;
}

/*
 * `searched` is [{q1, n_q}, {g1, n_g}] for q1 queries ([{g1, n_g}] for
 * g1 queries), in that order, where entries of 0 items may be absent.
 */
static int check_searched(const cJSON *reply, const world *w, bool q1, const char *what)
{
    size_t n_q = 0, n_g = 0;
    for (size_t i = 0; i < N_ALL; i++) {
        if (!w->live[i])
            continue;
        if (q1 && w->has_q[i])
            n_q++;
        else if (w->has_g[i])
            n_g++;
    }
    struct {
        const char *model;
        size_t items;
    } want[2] = {{NULL, 0}, {NULL, 0}};
    size_t n_want = 0;
    if (q1 && n_q)
        want[n_want].model = w->q1, want[n_want++].items = n_q;
    if (n_g)
        want[n_want].model = w->g1, want[n_want++].items = n_g;

    const cJSON *s = td_json_at(reply, "searched"), *e;
    size_t k = 0;
    int bad = 0;
    cJSON_ArrayForEach(e, s) {
        double items = td_json_num(e, "items");
        const char *model = td_json_str(e, "model");
        if (items == 0 && model && (strcmp(model, w->q1) == 0 || strcmp(model, w->g1) == 0))
            continue;
        if (k >= n_want || !model || strcmp(model, want[k].model) != 0 ||
            items != (double)want[k].items)
            bad = 1;
        k++;
    }
    if (!cJSON_IsArray(s) || k != n_want)
        bad = 1;
    if (bad) {
        char *got = s ? cJSON_PrintUnformatted(s) : NULL;
        fprintf(stderr, "%s: searched is %s, want %s %zu / %s %zu (q1 first, zeros optional)\n",
                what, got ? got : "(absent)", q1 ? w->q1 : "-", q1 ? n_q : 0, w->g1, n_g);
        free(got);
    }
    return bad;
}

/* ---- searching --------------------------------------------------------- */

static void search(td_http *h, const world *w, bool q1, const float *qs, size_t nq, size_t k,
                   size_t alt, td_reply *r)
{
    text body = {0};
    char *path = td_fmt("/v1/galleries/%s/search", w->gallery);
    td_text_append(&body, "{\"model\":\"%s\",\"k\":%zu,", q1 ? w->q1 : w->g1, k);
    if (nq > 1) {
        td_text_append(&body, "\"vectors\":");
        td_text_append_b64_rows(&body, qs, nq, DIM);
        td_text_append(&body, "}");
    } else if (alt % 2) {
        char *v = td_b64_floats(qs, DIM);
        REQUIRE(v != NULL);
        td_text_append(&body, "\"vector_b64\":\"%s\"}", v);
        free(v);
    } else {
        td_text_append(&body, "\"vector\":[");
        for (size_t d = 0; d < DIM; d++)
            td_text_append(&body, "%s%.9g", d ? "," : "", qs[d]);
        td_text_append(&body, "]}");
    }
    td_http_json(h, "POST", path, body.s, r);
    free(path);
    free(body.s);
}

/*
 * Every query as q1 (or g1) one by one with k = K_SMALL, then all of
 * them in one batch with k = K_BIG, against the reference.
 */
static void check_stage(td_http *h, const world *w, bool q1, const char *stage)
{
    int bad = 0, bad_searched = 0;
    char what[160];
    long refused = 0;
    for (size_t qi = 0; qi < N_QUERIES; qi++) {
        const float *q = w->queries + qi * DIM;
        td_reply r;
        search(h, w, q1, q, 1, K_SMALL, qi, &r);
        snprintf(what, sizeof what, "%s %s as %s query %zu k=%d", w->gallery, stage,
                 q1 ? "q1" : "g1", qi, K_SMALL);
        if (r.status != 200) {
            if (!refused++)
                td_reply_show_if(&r, 200, what);
            td_reply_finish(&r);
            continue;
        }
        ref_hits ref;
        ref_search(w, q, q1, K_SMALL, &ref);
        bad += compare(td_json_at(r.json, "results.0"), w, q, q1, &ref, what);
        if (qi == 0 || bad_searched == 0)
            bad_searched += check_searched(r.json, w, q1, what);
        CHECK_STREQ(td_json_str(r.json, "model"), q1 ? w->q1 : w->g1);
        td_reply_finish(&r);
    }
    CHECK_EQ(refused, 0);

    td_reply r;
    search(h, w, q1, w->queries, N_QUERIES, K_BIG, 0, &r);
    snprintf(what, sizeof what, "%s %s as %s batch k=%d", w->gallery, stage, q1 ? "q1" : "g1",
             K_BIG);
    td_reply_show_if(&r, 200, what);
    CHECK_EQ(r.status, 200);
    if (r.status == 200) {
        CHECK_EQ(cJSON_GetArraySize(td_json_at(r.json, "results")), N_QUERIES);
        bad_searched += check_searched(r.json, w, q1, what);
        for (size_t qi = 0; qi < N_QUERIES; qi++) {
            const float *q = w->queries + qi * DIM;
            ref_hits ref;
            ref_search(w, q, q1, K_BIG, &ref);
            snprintf(what, sizeof what, "%s %s as %s batch query %zu k=%d", w->gallery, stage,
                     q1 ? "q1" : "g1", qi, K_BIG);
            const cJSON *hits = cJSON_GetArrayItem(td_json_at(r.json, "results"), (int)qi);
            bad += compare(hits, w, q, q1, &ref, what);
            /* Deleted items never come back. */
            const cJSON *hit;
            cJSON_ArrayForEach(hit, hits) {
                size_t i = id_index(td_json_str(hit, "id"));
                CHECK(i == SIZE_MAX || !w->deleted[i]);
            }
        }
    }
    td_reply_finish(&r);
    CHECK_EQ(bad, 0);
    CHECK_EQ(bad_searched, 0);
}

/* One q1 search's status under the gallery's current policy. */
static long q1_status(td_http *h, const world *w, td_reply *r)
{
    search(h, w, true, w->queries, 1, K_SMALL, 0, r);
    return r->status;
}

/* ---- the scenario ------------------------------------------------------ */

static float *gaussians(td_rng *rng, size_t n, const float *centres, double sigma)
{
    float *x = malloc(n * DIM * sizeof *x);
    REQUIRE(x != NULL);
    for (size_t i = 0; i < n; i++) {
        const float *c = centres + (td_rng_next(rng) % CLUSTERS) * DIM;
        for (size_t d = 0; d < DIM; d++)
            x[i * DIM + d] = c[d] + (float)(sigma * td_rng_gauss(rng));
    }
    return x;
}

/* Deletes, for the first queries, the best-ranked item with both embeddings. */
static void delete_top_hits(td_http *h, world *w)
{
    for (size_t qi = 0, done = 0; qi < N_QUERIES && done < N_DELETE; qi++) {
        ref_hits ref;
        ref_search(w, w->queries + qi * DIM, true, K_BIG, &ref);
        for (size_t r = 0; r < ref.n; r++) {
            size_t i = ref.idx[r];
            if (!w->has_q[i] || !w->has_g[i])
                continue;
            char id[32];
            item_id(i, id, sizeof id);
            char *path = td_fmt("/v1/galleries/%s/items/%s", w->gallery, id);
            td_reply rep;
            CHECK_EQ(td_http_call(h, &rep, 204, "DELETE", path, NULL), 204);
            td_reply_finish(&rep);
            free(path);
            w->live[i] = false;
            w->deleted[i] = true;
            done++;
            break;
        }
    }
}

static void test_metric(td_daemon *d, td_http *h, td_metric m, td_rng *rng)
{
    world *w = calloc(1, sizeof *w);
    REQUIRE(w != NULL);
    w->metric = m;
    snprintf(w->gallery, sizeof w->gallery, "hr-%s", td_metric_names[m]);
    snprintf(w->g1, sizeof w->g1, "g1-%s", td_metric_names[m]);
    snprintf(w->q1, sizeof w->q1, "q1-%s", td_metric_names[m]);
    double t0 = td_now();

    float centres[CLUSTERS * DIM];
    for (size_t i = 0; i < CLUSTERS * DIM; i++)
        centres[i] = (float)td_rng_gauss(rng);
    w->g = gaussians(rng, N_ALL, centres, 0.5);
    w->q = gaussians(rng, N_ALL, centres, 0.5);
    w->queries = gaussians(rng, N_QUERIES, centres, 0.5);

    td_reply r;
    char *body = td_fmt("{\"name\":\"%s\",\"dim\":%d,\"metric\":\"%s\"}", w->g1, DIM,
                     td_metric_names[m]);
    CHECK_EQ(td_http_call(h, &r, 201, "POST", "/v1/models", body), 201);
    td_reply_finish(&r);
    free(body);
    body = td_fmt("{\"name\":\"%s\",\"dim\":%d,\"metric\":\"%s\"}", w->q1, DIM, td_metric_names[m]);
    CHECK_EQ(td_http_call(h, &r, 201, "POST", "/v1/models", body), 201);
    td_reply_finish(&r);
    free(body);
    body = td_fmt("{\"name\":\"%s\",\"model\":\"%s\"}", w->gallery, w->g1);
    CHECK_EQ(td_http_call(h, &r, 201, "POST", "/v1/galleries", body), 201);
    td_reply_finish(&r);
    free(body);

    size_t order[N_ITEMS];
    for (size_t i = 0; i < N_ITEMS; i++)
        order[i] = i;
    upsert(h, w, false, order, N_ITEMS);

    /* 0 %: q1 is refused under "verified", let in under "any". */
    CHECK_EQ(q1_status(h, w, &r), 409);
    CHECK_STREQ(td_reply_error_code(&r), "model_not_verified");
    td_reply_finish(&r);
    set_policy(h, w, "any");
    check_stage(h, w, true, "0%");

    /* 30 %: a random subset, plus items only q1 has. */
    for (size_t i = N_ITEMS - 1; i > 0; i--) {
        size_t j = (size_t)(td_rng_next(rng) % (i + 1)), t = order[i];
        order[i] = order[j];
        order[j] = t;
    }
    size_t n30 = N_ITEMS * 3 / 10;
    upsert(h, w, true, order, n30);
    size_t extras[N_EXTRA];
    for (size_t j = 0; j < N_EXTRA; j++)
        extras[j] = N_ITEMS + j;
    upsert(h, w, true, extras, N_EXTRA);
    check_stage(h, w, true, "30%");
    check_stage(h, w, false, "30%");

    delete_top_hits(h, w);
    check_stage(h, w, true, "30% after deletes");

    /* Partly backfilled: still refused under "verified". */
    set_policy(h, w, "verified");
    CHECK_EQ(q1_status(h, w, &r), 409);
    td_reply_finish(&r);
    set_policy(h, w, "any");

    const char *args[] = {"--log-level", "warn", NULL};
    CHECK_EQ(td_daemon_stop(d), 0);
    REQUIRE(td_daemon_start(d, args));
    check_stage(h, w, true, "30% after restart");
    check_stage(h, w, false, "30% after restart");

    /* 100 %: every live item has q1, so nothing is compared across
     * models and "verified" lets q1 in. */
    size_t rest[N_ITEMS], n_rest = 0;
    for (size_t k = n30; k < N_ITEMS; k++)
        if (w->live[order[k]])
            rest[n_rest++] = order[k];
    upsert(h, w, true, rest, n_rest);
    check_stage(h, w, true, "100%");
    set_policy(h, w, "verified");
    long st = q1_status(h, w, &r);
    td_reply_show_if(&r, 200, "q1 under verified when fully backfilled");
    CHECK_EQ(st, 200);
    td_reply_finish(&r);
    check_stage(h, w, true, "100% under verified");

    fprintf(stderr, "%-9s %d items (+%d q1-only), stages 0/30/100 %% in %.1f s\n", w->gallery,
            N_ITEMS, N_EXTRA, td_now() - t0);
    free(w->g);
    free(w->q);
    free(w->queries);
    free(w);
}

/*
 * An empty gallery is not "fully backfilled" by every model: with no
 * item at all q1 is still gated under "verified".
 */
static void test_empty_gallery(td_http *h)
{
    td_reply r;
    CHECK_EQ(td_http_call(h, &r, 201, "POST", "/v1/galleries",
                          "{\"name\":\"hr-empty\",\"model\":\"g1-cosine\"}"), 201);
    td_reply_finish(&r);
    char *body = td_fmt("{\"model\":\"q1-cosine\",\"k\":3,\"vector\":[%s1]}",
                     "0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,");
    CHECK_EQ(td_http_call(h, &r, 409, "POST", "/v1/galleries/hr-empty/search", body), 409);
    CHECK_STREQ(td_reply_error_code(&r), "model_not_verified");
    td_reply_finish(&r);
    free(body);
}

int main(void)
{
    td_rng rng = {td_seed(11)};
    td_daemon *d;
    td_http *h;
    const char *args[] = {"--log-level", "warn", NULL};
    REQUIRE(td_daemon_start_client(args, &d, &h));

    for (int m = TD_METRIC_COSINE; m <= TD_METRIC_L2; m++)
        test_metric(d, h, (td_metric)m, &rng);
    test_empty_gallery(h);

    td_http_destroy(h);
    CHECK_EQ(td_daemon_stop(d), 0);
    td_daemon_destroy(d);
    return check_exit();
}
