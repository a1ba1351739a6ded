/*
 * test_http_eval.c - evaluations (schema/concepts.md §4), the verified-model
 * gate (3.2, 3.4) and the compatibility matrix (3.6) over HTTP.
 *
 * Every report the daemon returns is compared, number by number, with a
 * naive reference written here in double precision: a full sort of the
 * evaluation gallery per probe (similarity descending, ties by insertion
 * order, the probe's own id left out), then top-k, AP, flips, the BCT
 * criterion and the update gain exactly as schema/concepts.md §4 defines them.  The
 * reference galleries use vectors whose scores are exact in float32
 * (small integers for ip and l2; four non-zero entries of +-s, s a power
 * of two, for cosine, so normalising is exact too), so that the many
 * ties are real ties on both sides.
 *
 * Cases, in order:
 * - flips: a hand-made dim 2 case whose flips are known by construction;
 * - reference: one gallery per metric, with unlabelled and deleted items,
 *   leave-one-out and skipped probes, int and string labels, reports
 *   without a paragon, without a baseline and with both;
 * - upgrade: an old model, a compatible new one, a rotated one, a legacy
 *   one and models never evaluated; statuses, the gate under every policy
 *   and its messages;
 * - the compatibility matrix against the stored reports;
 * - bad requests from a table: status, JSON error, nothing stored;
 * - storage: GET by id equals the POST's reply, listings newest first
 *   with pagination and a filter, all of it identical after a clean
 *   restart and after kill -9;
 * - COMPATD_LONG=1: a 50,000-probe x 256-dim evaluation body (with its
 *   baseline, ~140 MB) accepted on the daemon's default limits.
 */
#include <ctype.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>
#include <strings.h>

#include "check.h"
#include "daemon.h"

#define MAX_KS 8

/* ---- small helpers --------------------------------------------------- */

typedef td_text text;

/* Appends v as a JSON array (exact: %.9g round-trips float32). */
static void append_floats(text *t, const float *v, size_t n)
{
    td_text_append(t, "[");
    for (size_t i = 0; i < n; i++)
        td_text_append(t, "%s%.9g", i ? "," : "", v[i]);
    td_text_append(t, "]");
}

/* Appends "vector":[..] or "vector_b64":"..", alternately by `which`. */
static void append_vector(text *t, const float *v, size_t n, size_t which)
{
    if (which % 2) {
        char *b = td_b64_floats(v, n);
        REQUIRE(b != NULL);
        td_text_append(t, "\"vector_b64\":\"%s\"", b);
        free(b);
    } else {
        td_text_append(t, "\"vector\":");
        append_floats(t, v, n);
    }
}

static bool all_digits(const char *s)
{
    if (!*s || (s[0] == '0' && s[1]))
        return false;
    for (; *s; s++)
        if (!isdigit((unsigned char)*s))
            return false;
    return true;
}

/* Appends "label":L, as a JSON number when as_int and L is an integer. */
static void append_label(text *t, const char *label, bool as_int)
{
    if (as_int && all_digits(label))
        td_text_append(t, "\"label\":%s", label);
    else
        td_text_append(t, "\"label\":\"%s\"", label);
}

static void create_model(td_http *h, const char *name, int dim, const char *metric_name,
                         const char *compatible_with)
{
    td_reply r;
    char *cw = compatible_with ? td_fmt(",\"compatible_with\":\"%s\"", compatible_with) : td_fmt("%s", "");
    char *body = td_fmt("{\"name\":\"%s\",\"dim\":%d,\"metric\":\"%s\"%s}", name, dim, metric_name, cw);
    CHECK_EQ(td_http_call(h, &r, 201, "POST", "/v1/models", body), 201);
    td_reply_finish(&r);
    free(body);
    free(cw);
}

static void create_gallery(td_http *h, const char *name, const char *model)
{
    td_reply r;
    char *body = td_fmt("{\"name\":\"%s\",\"model\":\"%s\"}", name, model);
    CHECK_EQ(td_http_call(h, &r, 201, "POST", "/v1/galleries", body), 201);
    td_reply_finish(&r);
    free(body);
}

static void set_policy(td_http *h, const char *gallery, const char *policy)
{
    td_reply r;
    char *path = td_fmt("/v1/galleries/%s", gallery);
    char *body = td_fmt("{\"query_policy\":\"%s\"}", policy);
    CHECK_EQ(td_http_call(h, &r, 200, "PATCH", path, body), 200);
    CHECK_STREQ(td_json_str(r.json, "query_policy"), policy);
    td_reply_finish(&r);
    free(body);
    free(path);
}

/*
 * Upserts n items (ids[i], labels[i] or none when labels or labels[i] is
 * NULL, vector x + i * dim) in one request; model NULL: the gallery's.
 * Labels that are integers go as JSON numbers for even i.
 */
static void upsert(td_http *h, const char *gallery, const char *model, size_t n,
                   char *const *ids, char *const *labels, const float *x, int dim)
{
    text body = {0};
    td_text_append(&body, "{");
    if (model)
        td_text_append(&body, "\"model\":\"%s\",", model);
    td_text_append(&body, "\"items\":[");
    for (size_t i = 0; i < n; i++) {
        td_text_append(&body, "%s{\"id\":\"%s\",", i ? "," : "", ids[i]);
        if (labels && labels[i]) {
            append_label(&body, labels[i], i % 2 == 0);
            td_text_append(&body, ",");
        }
        append_vector(&body, x + i * (size_t)dim, (size_t)dim, i);
        td_text_append(&body, "}");
    }
    td_text_append(&body, "]}");
    char *path = td_fmt("/v1/galleries/%s/items", gallery);
    td_reply r;
    CHECK_EQ(td_http_call(h, &r, 200, "POST", path, body.s), 200);
    CHECK_EQ(td_json_num(r.json, "upserted"), n);
    td_reply_finish(&r);
    free(path);
    free(body.s);
}

static void delete_item(td_http *h, const char *gallery, const char *id)
{
    td_reply r;
    char *path = td_fmt("/v1/galleries/%s/items/%s", gallery, id);
    CHECK_EQ(td_http_call(h, &r, 204, "DELETE", path, NULL), 204);
    td_reply_finish(&r);
    free(path);
}

/* An evaluation's id, or -1. */
static long long eval_id(const cJSON *report)
{
    double id = td_json_num(report, "id");
    return isnan(id) ? -1 : (long long)id;
}

/* Text of a label value: strings as they are, integers printed. */
static const char *label_text(const cJSON *j, char *buf, size_t size)
{
    if (cJSON_IsString(j))
        return j->valuestring;
    if (cJSON_IsNumber(j)) {
        snprintf(buf, size, "%.0f", j->valuedouble);
        return buf;
    }
    return NULL;
}

/* A "YYYY-MM-DDTHH:MM:SS...Z" timestamp. */
static bool looks_like_time(const char *s)
{
    if (!s || strlen(s) < 20)
        return false;
    return isdigit((unsigned char)s[0]) && s[4] == '-' && s[7] == '-' && s[10] == 'T' &&
           s[13] == ':' && s[16] == ':' && s[strlen(s) - 1] == 'Z';
}

/* ---- expectations with context --------------------------------------- */

/* The number at path is want (NaN: must be JSON null) within tol. */
static void expect_num(const cJSON *root, const char *path, double want, double tol,
                       const char *what)
{
    const cJSON *j = td_json_at(root, path);
    check_count++;
    if (isnan(want)) {
        if (!cJSON_IsNull(j)) {
            char *s = j ? cJSON_PrintUnformatted(j) : NULL;
            CHECK_FAILED_("%s: %s is %s, want null", what, path, s ? s : "(absent)");
            free(s);
        }
    } else if (!cJSON_IsNumber(j) || !(fabs(j->valuedouble - want) <= tol)) {
        char *s = j ? cJSON_PrintUnformatted(j) : NULL;
        CHECK_FAILED_("%s: %s is %s, want %.9g", what, path, s ? s : "(absent)", want);
        free(s);
    }
}

/* The value at path is true / false, or null for want < 0. */
static void expect_bool(const cJSON *root, const char *path, int want, const char *what)
{
    const cJSON *j = td_json_at(root, path);
    bool ok = want < 0 ? cJSON_IsNull(j) : want ? cJSON_IsTrue(j) : cJSON_IsFalse(j);
    check_count++;
    if (!ok) {
        char *s = j ? cJSON_PrintUnformatted(j) : NULL;
        CHECK_FAILED_("%s: %s is %s, want %s", what, path, s ? s : "(absent)",
                      want < 0 ? "null" : want ? "true" : "false");
        free(s);
    }
}

static void expect_str(const cJSON *root, const char *path, const char *want,
                       const char *what)
{
    const char *got = td_json_str(root, path);
    check_count++;
    if (!got || strcmp(got, want) != 0)
        CHECK_FAILED_("%s: %s is \"%s\", want \"%s\"", what, path, got ? got : "(absent)",
                      want);
}

/* ---- the reference ---------------------------------------------------- */

/* A gallery's state and one evaluation request, as the test knows them. */
typedef struct ref_input {
    td_metric metric;
    int dim;
    size_t n_items;             /* every item ever upserted, insertion order */
    char **item_ids;
    char **item_labels;         /* NULL entries: unlabelled */
    const float *item_g;        /* gallery-model embeddings, n_items * dim */
    const float *item_q;        /* query-model embeddings, n_items * dim */
    const bool *has_q;          /* item has a query-model embedding */
    const bool *live;           /* not deleted */
    size_t n_probes;
    char **probe_ids;
    char **probe_labels;
    const float *probe_q;       /* n_probes * dim, query model */
    const float *probe_b;       /* n_probes * dim, gallery model; NULL: none */
    size_t n_ks;
    int ks[MAX_KS];
    int primary_k;              /* 0: map */
} ref_input;

typedef struct ref_label {
    const char *label;
    long queries, cross_ok, base_ok, neg, pos;
} ref_label;

/* Metric arrays: [0..n_ks) top-k, [n_ks] map. */
typedef struct ref_report {
    size_t n_ks;
    int ks[MAX_KS];
    int primary_k;
    long queries, skipped, gallery_items;
    bool has_baseline, has_paragon;
    double cross[MAX_KS + 1], baseline[MAX_KS + 1], paragon[MAX_KS + 1];
    int compatible;             /* 1, 0, -1 null */
    long neg, pos, wrong;       /* wrong: probes wrong in cross */
    size_t n_labels;
    ref_label *labels;
    size_t n_flip_ids;
    const char **flip_ids;      /* point into the input's probe ids */
} ref_report;

/* One probe against one gallery. */
typedef struct probe_rank {
    bool evaluated;     /* false: no relevant item (skipped) */
    size_t first_hit;   /* 1-based rank of the first relevant item */
    double ap;
} probe_rank;

/* Higher is better: the API's score (the harness's td_ref_score), negated
 * for l2. */
static double similarity(td_metric m, const float *a, const float *b, int dim)
{
    double s = td_ref_score(m, a, b, (size_t)dim);
    return m == TD_METRIC_L2 ? -s : s;
}

static const double *sort_scores;   /* qsort's context */

static int by_score(const void *pa, const void *pb)
{
    size_t a = *(const size_t *)pa, b = *(const size_t *)pb;
    if (sort_scores[a] != sort_scores[b])
        return sort_scores[a] > sort_scores[b] ? -1 : 1;
    return a < b ? -1 : a > b;
}

/*
 * Ranks the n gallery entries gi[] (vectors x + gi * dim, insertion order
 * = order in gi) for query v, leaving out position `exclude`.
 */
static probe_rank rank_probe(td_metric m, int dim, const float *v, const float *x,
                             char *const *labels, const size_t *gi, size_t n,
                             size_t exclude, const char *label)
{
    probe_rank out = {0};
    double *scores = malloc(n * sizeof *scores + 1);
    size_t *order = malloc(n * sizeof *order + 1);
    REQUIRE(scores && order);
    size_t cnt = 0, relevant = 0;
    for (size_t p = 0; p < n; p++) {
        if (p == exclude)
            continue;
        scores[p] = similarity(m, v, x + gi[p] * (size_t)dim, dim);
        order[cnt++] = p;
        relevant += strcmp(labels[gi[p]], label) == 0;
    }
    if (relevant > 0) {
        sort_scores = scores;
        qsort(order, cnt, sizeof *order, by_score);
        size_t hits = 0;
        for (size_t r = 0; r < cnt; r++) {
            if (strcmp(labels[gi[order[r]]], label) != 0)
                continue;
            hits++;
            out.ap += (double)hits / (double)(r + 1);
            if (!out.first_hit)
                out.first_hit = r + 1;
        }
        out.ap /= (double)relevant;
        out.evaluated = true;
    }
    free(scores);
    free(order);
    return out;
}

static void add_rank(double *acc, const probe_rank *pr, const int *ks, size_t n_ks)
{
    for (size_t i = 0; i < n_ks; i++)
        acc[i] += pr->first_hit <= (size_t)ks[i];
    acc[n_ks] += pr->ap;
}

static ref_label *find_label(ref_report *r, const char *label)
{
    for (size_t i = 0; i < r->n_labels; i++)
        if (strcmp(r->labels[i].label, label) == 0)
            return &r->labels[i];
    r->labels = realloc(r->labels, (r->n_labels + 1) * sizeof *r->labels);
    REQUIRE(r->labels != NULL);
    ref_label *l = &r->labels[r->n_labels++];
    memset(l, 0, sizeof *l);
    l->label = label;
    return l;
}

/* The report concepts.md §4 defines for in; free with ref_report_finish(). */
static void ref_evaluate(const ref_input *in, ref_report *r)
{
    memset(r, 0, sizeof *r);
    r->n_ks = in->n_ks;
    memcpy(r->ks, in->ks, sizeof r->ks);
    r->primary_k = in->primary_k;
    r->has_baseline = in->probe_b != NULL;

    /* The evaluation gallery: live labelled items, insertion order. */
    size_t *gi = malloc(in->n_items * sizeof *gi + 1);
    REQUIRE(gi != NULL);
    size_t n = 0;
    bool paragon = true;
    for (size_t i = 0; i < in->n_items; i++) {
        if (!in->live[i] || !in->item_labels[i])
            continue;
        gi[n++] = i;
        paragon = paragon && in->has_q[i];
    }
    r->gallery_items = (long)n;
    r->has_paragon = paragon && n > 0;
    r->flip_ids = malloc(in->n_probes * sizeof *r->flip_ids + 1);
    REQUIRE(r->flip_ids != NULL);

    for (size_t p = 0; p < in->n_probes; p++) {
        const char *label = in->probe_labels[p];
        size_t exclude = SIZE_MAX;
        for (size_t k = 0; k < n; k++)
            if (strcmp(in->item_ids[gi[k]], in->probe_ids[p]) == 0)
                exclude = k;
        const float *pq = in->probe_q + p * (size_t)in->dim;
        probe_rank c = rank_probe(in->metric, in->dim, pq, in->item_g, in->item_labels, gi, n,
                                  exclude, label);
        if (!c.evaluated) {
            r->skipped++;
            continue;
        }
        r->queries++;
        add_rank(r->cross, &c, in->ks, in->n_ks);
        bool cross_ok = c.first_hit == 1;
        r->wrong += !cross_ok;
        ref_label *l = find_label(r, label);
        l->queries++;
        l->cross_ok += cross_ok;
        if (r->has_baseline) {
            probe_rank b = rank_probe(in->metric, in->dim, in->probe_b + p * (size_t)in->dim,
                                      in->item_g, in->item_labels, gi, n, exclude, label);
            add_rank(r->baseline, &b, in->ks, in->n_ks);
            bool base_ok = b.first_hit == 1;
            l->base_ok += base_ok;
            if (base_ok && !cross_ok) {
                r->neg++;
                l->neg++;
                r->flip_ids[r->n_flip_ids++] = in->probe_ids[p];
            } else if (!base_ok && cross_ok) {
                r->pos++;
                l->pos++;
            }
        }
        if (r->has_paragon) {
            probe_rank g = rank_probe(in->metric, in->dim, pq, in->item_q, in->item_labels, gi,
                                      n, exclude, label);
            add_rank(r->paragon, &g, in->ks, in->n_ks);
        }
    }
    for (size_t i = 0; i <= r->n_ks && r->queries > 0; i++) {
        r->cross[i] /= (double)r->queries;
        r->baseline[i] /= (double)r->queries;
        r->paragon[i] /= (double)r->queries;
    }
    r->compatible = -1;
    if (r->has_baseline) {
        size_t pi = r->n_ks;
        for (size_t i = 0; i < r->n_ks; i++)
            if (r->ks[i] == r->primary_k)
                pi = i;
        r->compatible = r->cross[pi] > r->baseline[pi];
    }
    free(gi);
}

static void ref_report_finish(ref_report *r)
{
    free(r->labels);
    free(r->flip_ids);
    memset(r, 0, sizeof *r);
}

static void metric_key(const ref_report *r, size_t i, char *buf, size_t size)
{
    if (i < r->n_ks)
        snprintf(buf, size, "top%d", r->ks[i]);
    else
        snprintf(buf, size, "map");
}

/* Checks one metrics object (cross, baseline or paragon) of a report. */
static void check_metrics(const cJSON *rep, const char *name, const ref_report *ref,
                          const double *want, bool present, const char *what)
{
    const cJSON *obj = td_json_at(rep, name);
    check_count++;
    if (!present) {
        if (!cJSON_IsNull(obj))
            CHECK_FAILED_("%s: %s should be null", what, name);
        return;
    }
    if (!cJSON_IsObject(obj)) {
        CHECK_FAILED_("%s: %s is not an object", what, name);
        return;
    }
    CHECK_EQ(cJSON_GetArraySize(obj), ref->n_ks + 1);
    for (size_t i = 0; i <= ref->n_ks; i++) {
        char key[32], path[64];
        metric_key(ref, i, key, sizeof key);
        snprintf(path, sizeof path, "%s.%s", name, key);
        expect_num(rep, path, want[i], 1e-6, what);
    }
}

/* Compares a report with the reference, number by number. */
static void check_report(const cJSON *rep, const ref_report *ref, const char *gallery,
                         const char *gallery_model, const char *query_model,
                         const char *what)
{
    int failures = check_failures;
    char primary[16];
    if (ref->primary_k)
        snprintf(primary, sizeof primary, "top%d", ref->primary_k);
    else
        snprintf(primary, sizeof primary, "map");

    CHECK(eval_id(rep) > 0);
    expect_str(rep, "gallery", gallery, what);
    expect_str(rep, "gallery_model", gallery_model, what);
    expect_str(rep, "query_model", query_model, what);
    expect_str(rep, "primary_metric", primary, what);
    CHECK(looks_like_time(td_json_str(rep, "created_at")));
    const cJSON *ks = td_json_at(rep, "ks");
    CHECK_EQ(cJSON_GetArraySize(ks), ref->n_ks);
    for (size_t i = 0; i < ref->n_ks && cJSON_IsArray(ks); i++) {
        const cJSON *k = cJSON_GetArrayItem(ks, (int)i);
        CHECK(cJSON_IsNumber(k) && k->valuedouble == ref->ks[i]);
    }
    expect_num(rep, "queries", (double)ref->queries, 0, what);
    expect_num(rep, "skipped", (double)ref->skipped, 0, what);
    expect_num(rep, "gallery_items", (double)ref->gallery_items, 0, what);

    check_metrics(rep, "cross", ref, ref->cross, true, what);
    check_metrics(rep, "baseline", ref, ref->baseline, ref->has_baseline, what);
    check_metrics(rep, "paragon", ref, ref->paragon, ref->has_paragon, what);
    expect_bool(rep, "compatible", ref->compatible, what);
    const char *criterion = td_json_str(rep, "criterion");
    CHECK(criterion != NULL && criterion[0] != '\0');

    /* update_gain: null unless there are both a baseline and a paragon. */
    const cJSON *gain = td_json_at(rep, "update_gain");
    if (!ref->has_baseline || !ref->has_paragon) {
        if (!cJSON_IsNull(gain)) {
            check_count++;
            CHECK_FAILED_("%s: update_gain should be null", what);
        }
    } else {
        CHECK(cJSON_IsObject(gain));
        CHECK_EQ(cJSON_GetArraySize(gain), ref->n_ks + 1);
        for (size_t i = 0; i <= ref->n_ks; i++) {
            char key[32], path[64];
            metric_key(ref, i, key, sizeof key);
            snprintf(path, sizeof path, "update_gain.%s", key);
            double den = ref->paragon[i] - ref->baseline[i];
            double want = den != 0 ? (ref->cross[i] - ref->baseline[i]) / den : NAN;
            expect_num(rep, path, want, 1e-6 * fmax(1, fabs(want)), what);
        }
    }

    /* flips */
    if (!ref->has_baseline) {
        expect_num(rep, "flips", NAN, 0, what);
    } else {
        double q = (double)ref->queries;
        expect_num(rep, "flips.negative", (double)ref->neg, 0, what);
        expect_num(rep, "flips.positive", (double)ref->pos, 0, what);
        expect_num(rep, "flips.nfr", ref->neg / q, 1e-6, what);
        expect_num(rep, "flips.nfi", ref->wrong ? ref->neg / (double)ref->wrong : NAN, 1e-6,
                   what);
        expect_num(rep, "flips.pfr", ref->pos / q, 1e-6, what);
    }

    /* by_label: one entry per label of an evaluated probe, any order. */
    const cJSON *by = td_json_at(rep, "by_label");
    CHECK(cJSON_IsArray(by));
    CHECK_EQ(cJSON_GetArraySize(by), ref->n_labels);
    for (size_t i = 0; i < ref->n_labels; i++) {
        const ref_label *l = &ref->labels[i];
        const cJSON *e, *found = NULL;
        cJSON_ArrayForEach(e, by) {
            char buf[32];
            const char *t = label_text(cJSON_GetObjectItemCaseSensitive(e, "label"), buf,
                                       sizeof buf);
            if (t && strcmp(t, l->label) == 0)
                found = e;
        }
        check_count++;
        if (!found) {
            CHECK_FAILED_("%s: by_label has no entry for label %s", what, l->label);
            continue;
        }
        char ctx[160];
        snprintf(ctx, sizeof ctx, "%s label %s", what, l->label);
        double lq = (double)l->queries;
        expect_num(found, "queries", lq, 0, ctx);
        expect_num(found, "cross_top1", l->cross_ok / lq, 1e-6, ctx);
        if (ref->has_baseline) {
            expect_num(found, "baseline_top1", l->base_ok / lq, 1e-6, ctx);
            expect_num(found, "negative_flips", (double)l->neg, 0, ctx);
            expect_num(found, "positive_flips", (double)l->pos, 0, ctx);
        } else {
            expect_num(found, "baseline_top1", NAN, 0, ctx);
            /* Without a baseline there are no flips: 0 or null. */
            double nf = td_json_num(found, "negative_flips");
            CHECK(isnan(nf) ? cJSON_IsNull(td_json_at(found, "negative_flips")) : nf == 0);
        }
    }

    /* negative_flip_ids, as a set. */
    const cJSON *ids = td_json_at(rep, "negative_flip_ids");
    CHECK(cJSON_IsArray(ids));
    CHECK_EQ(cJSON_GetArraySize(ids), ref->n_flip_ids);
    for (size_t i = 0; i < ref->n_flip_ids; i++) {
        bool found = false;
        const cJSON *e;
        cJSON_ArrayForEach(e, ids) found = found || (cJSON_IsString(e) &&
                                                     strcmp(e->valuestring, ref->flip_ids[i]) == 0);
        check_count++;
        if (!found)
            CHECK_FAILED_("%s: negative_flip_ids lacks %s", what, ref->flip_ids[i]);
    }

    if (check_failures > failures) {
        char *s = cJSON_Print(rep);
        fprintf(stderr, "%s: the report was:\n%.6000s\n", what, s ? s : "(none)");
        fprintf(stderr, "%s: reference queries %ld skipped %ld items %ld cross top1 %.6f map "
                "%.6f baseline top1 %.6f neg %ld pos %ld\n", what, ref->queries, ref->skipped,
                ref->gallery_items, ref->cross[0], ref->cross[ref->n_ks], ref->baseline[0],
                ref->neg, ref->pos);
        free(s);
    }
}

/* ---- evaluation requests -------------------------------------------- */

/*
 * The body of an evaluation of in's probes by query_model.  ks_json and
 * primary are sent when not NULL.  Probes alternate between "vector" and
 * "vector_b64"; every third integer label goes as a number; the baseline
 * comes in reverse order, half of it with its label.
 */
static char *eval_body(const ref_input *in, const char *query_model, const char *ks_json,
                       const char *primary)
{
    text t = {0};
    size_t dim = (size_t)in->dim;
    td_text_append(&t, "{\"query_model\":\"%s\",\"queries\":[", query_model);
    for (size_t p = 0; p < in->n_probes; p++) {
        td_text_append(&t, "%s{\"id\":\"%s\",", p ? "," : "", in->probe_ids[p]);
        append_label(&t, in->probe_labels[p], p % 3 == 0);
        td_text_append(&t, ",");
        append_vector(&t, in->probe_q + p * dim, dim, p);
        td_text_append(&t, "}");
    }
    td_text_append(&t, "]");
    if (in->probe_b) {
        td_text_append(&t, ",\"baseline\":[");
        for (size_t k = 0; k < in->n_probes; k++) {
            size_t p = in->n_probes - 1 - k;
            td_text_append(&t, "%s{\"id\":\"%s\",", k ? "," : "", in->probe_ids[p]);
            if (p % 2) {
                append_label(&t, in->probe_labels[p], false);
                td_text_append(&t, ",");
            }
            append_vector(&t, in->probe_b + p * dim, dim, p + 1);
            td_text_append(&t, "}");
        }
        td_text_append(&t, "]");
    }
    if (ks_json)
        td_text_append(&t, ",\"ks\":%s", ks_json);
    if (primary)
        td_text_append(&t, ",\"primary_metric\":\"%s\"", primary);
    td_text_append(&t, "}");
    return t.s;
}

/* POSTs an evaluation; returns the 201 reply's JSON (caller frees) or NULL. */
static cJSON *post_eval(td_http *h, const char *gallery, const char *body)
{
    td_reply r;
    char *path = td_fmt("/v1/galleries/%s/evaluations", gallery);
    CHECK_EQ(td_http_call(h, &r, 201, "POST", path, body), 201);
    cJSON *out = NULL;
    if (r.status == 201 && r.json) {
        out = r.json;
        r.json = NULL;
    }
    td_reply_finish(&r);
    free(path);
    return out;
}

/* ---- what the test remembers ---------------------------------------- */

#define MAX_EVALS 64

/* Every evaluation the daemon accepted, in the order it was made. */
typedef struct eval_log {
    size_t n;
    cJSON *report[MAX_EVALS];   /* the POST's 201 reply */
} eval_log;

static void log_eval(eval_log *log, cJSON *report)
{
    if (!report)
        return;
    REQUIRE(log->n < MAX_EVALS);
    log->report[log->n++] = report;
}

/* The latest logged report of (gallery, query_model), or NULL. */
static const cJSON *latest_eval(const eval_log *log, const char *gallery,
                                const char *query_model)
{
    for (size_t i = log->n; i-- > 0;) {
        const char *g = td_json_str(log->report[i], "gallery");
        const char *q = td_json_str(log->report[i], "query_model");
        if (g && q && strcmp(g, gallery) == 0 && strcmp(q, query_model) == 0)
            return log->report[i];
    }
    return NULL;
}

/* ---- flips on a constructed case ------------------------------------ */

/*
 * dim 2, ip.  Items a (1,0) A, b (0,1) B, c (-1,0) C, d (0,-1) D; the
 * top-1 item of a probe is the one its largest component points at, and
 * (1,1) ties a and b, which insertion order resolves to a.
 */
static void test_flips(td_http *h, eval_log *log)
{
    static char *ids[] = {"a", "b", "c", "d"};
    static char *labels[] = {"A", "B", "C", "D"};
    static const float items[] = {1, 0, 0, 1, -1, 0, 0, -1};
    static char *pids[] = {"p1", "p2", "p3", "p4", "p5", "p6", "p7"};
    static char *plabels[] = {"A", "A", "B", "C", "D", "B", "B"};
    static const float cross[] = {
        1, 0,   /* p1 A -> a: right */
        0, 1,   /* p2 A -> b: wrong */
        0, 1,   /* p3 B -> b: right */
        0, -1,  /* p4 C -> d: wrong */
        2, 0,   /* p5 D -> a: wrong */
        0, 1,   /* p6 B -> b: right */
        1, 1,   /* p7 B -> a (tie with b, a inserted first): wrong */
    };
    static const float base[] = {
        1, 0,   /* p1 right */
        1, 0,   /* p2 right: negative flip */
        -1, 0,  /* p3 wrong (c): positive flip */
        0, -1,  /* p4 wrong (d) */
        0, -1,  /* p5 right: negative flip */
        0, 1,   /* p6 right */
        0, 1,   /* p7 right: negative flip */
    };
    static const bool yes[4] = {true, true, true, true}, no[4] = {false};
    create_model(h, "f-g", 2, "ip", NULL);
    create_model(h, "f-q", 2, "ip", NULL);
    create_gallery(h, "flips", "f-g");
    upsert(h, "flips", NULL, 4, ids, labels, items, 2);

    ref_input in = {
        .metric = TD_METRIC_IP, .dim = 2, .n_items = 4, .item_ids = ids, .item_labels = labels,
        .item_g = items, .item_q = items, .has_q = no, .live = yes, .n_probes = 7,
        .probe_ids = pids, .probe_labels = plabels, .probe_q = cross, .probe_b = base,
        .n_ks = 2, .ks = {1, 2}, .primary_k = 1,
    };
    ref_report ref;
    ref_evaluate(&in, &ref);
    /* The reference agrees with the construction. */
    CHECK_EQ(ref.queries, 7);
    CHECK_EQ(ref.neg, 3);
    CHECK_EQ(ref.pos, 1);
    CHECK_EQ(ref.wrong, 4);
    CHECK_NEAR(ref.cross[0], 3.0 / 7, 1e-12);
    CHECK_NEAR(ref.baseline[0], 5.0 / 7, 1e-12);
    CHECK_EQ(ref.compatible, 0);

    char *body = eval_body(&in, "f-q", "[1,2]", NULL);
    cJSON *rep = post_eval(h, "flips", body);
    if (rep) {
        check_report(rep, &ref, "flips", "f-g", "f-q", "flips");
        CHECK_EQ(td_json_num(rep, "flips.negative"), 3);
        CHECK_EQ(td_json_num(rep, "flips.positive"), 1);
        CHECK_NEAR(td_json_num(rep, "flips.nfr"), 3.0 / 7, 1e-9);
        CHECK_NEAR(td_json_num(rep, "flips.nfi"), 3.0 / 4, 1e-9);
        CHECK_NEAR(td_json_num(rep, "flips.pfr"), 1.0 / 7, 1e-9);
        const cJSON *fl = td_json_at(rep, "negative_flip_ids");
        CHECK_EQ(cJSON_GetArraySize(fl), 3);
        char *s = cJSON_PrintUnformatted(fl);
        CHECK(s && strstr(s, "\"p2\"") && strstr(s, "\"p5\"") && strstr(s, "\"p7\""));
        free(s);
        expect_bool(rep, "compatible", 0, "flips");
    }
    log_eval(log, rep);
    free(body);
    ref_report_finish(&ref);
}

/* ---- metrics against the reference ---------------------------------- */

#define REF_DIM 16
#define REF_LABELS 8
#define REF_PER_LABEL 8
#define REF_UNLABELLED 10
#define REF_ITEMS (REF_LABELS * REF_PER_LABEL + REF_UNLABELLED + 2)  /* + solo, gone */
#define REF_FRESH 60

static int rand_int(td_rng *rng, int lo, int hi)
{
    return lo + (int)(td_rng_next(rng) % (uint64_t)(hi - lo + 1));
}

/*
 * A random centre: integers in -1..1 for ip and l2; for cosine four
 * entries of +-1 at distinct positions, the rest 0.
 */
static void make_centre(td_metric m, td_rng *rng, float *c)
{
    if (m != TD_METRIC_COSINE) {
        for (int d = 0; d < REF_DIM; d++)
            c[d] = (float)rand_int(rng, -1, 1);
        return;
    }
    memset(c, 0, REF_DIM * sizeof *c);
    for (int placed = 0; placed < 4;) {
        int d = rand_int(rng, 0, REF_DIM - 1);
        if (c[d] == 0) {
            c[d] = td_rng_next(rng) & 1 ? 1.0f : -1.0f;
            placed++;
        }
    }
}

/*
 * A noisy copy of centre c.  ip, l2: each entry moves by +-1 with
 * probability p, clipped to -3..3.  cosine: up to two times, with
 * probability p, one non-zero entry moves to a zero position; then the
 * whole vector is scaled by 0.5, 1, 2 or 4 (its norm stays a power of
 * two, so normalising it is exact).
 */
static void make_noisy(td_metric m, td_rng *rng, const float *c, double p, float *out)
{
    memcpy(out, c, REF_DIM * sizeof *out);
    if (m != TD_METRIC_COSINE) {
        for (int d = 0; d < REF_DIM; d++) {
            if (td_rng_uniform(rng) < p)
                out[d] += td_rng_next(rng) & 1 ? 1.0f : -1.0f;
            out[d] = out[d] < -3 ? -3 : out[d] > 3 ? 3 : out[d];
        }
        return;
    }
    for (int t = 0; t < 2; t++) {
        if (td_rng_uniform(rng) >= p)
            continue;
        int from, to;
        do
            from = rand_int(rng, 0, REF_DIM - 1);
        while (out[from] == 0);
        do
            to = rand_int(rng, 0, REF_DIM - 1);
        while (out[to] != 0);
        out[to] = out[from];
        out[from] = 0;
    }
    static const float scales[] = {0.5f, 1, 2, 4};
    float s = scales[td_rng_next(rng) % 4];
    for (int d = 0; d < REF_DIM; d++)
        out[d] *= s;
}

/* The labelled state of one reference gallery. */
typedef struct ref_gallery {
    char *ids[REF_ITEMS];
    char *labels[REF_ITEMS];
    float g[REF_ITEMS * REF_DIM];
    float q[REF_ITEMS * REF_DIM];
    bool has_q[REF_ITEMS];
    bool live[REF_ITEMS];
} ref_gallery;

#define REF_PROBES (REF_FRESH + 6 + 1 + 1 + 3 + 1)

typedef struct ref_probe_set {
    char *ids[REF_PROBES];
    char *labels[REF_PROBES];
    float q[REF_PROBES * REF_DIM];
    float b[REF_PROBES * REF_DIM];
} ref_probe_set;

static void free_strings(char **s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(s[i]);
}

/* Upserts the query-model embeddings of the items marked in which[]. */
static void backfill(td_http *h, const char *gallery, const char *model, ref_gallery *rg,
                     const bool *which)
{
    char *ids[REF_ITEMS], *labels[REF_ITEMS];
    float x[REF_ITEMS * REF_DIM];
    size_t n = 0;
    for (size_t i = 0; i < REF_ITEMS; i++) {
        if (!which[i])
            continue;
        ids[n] = rg->ids[i];
        labels[n] = rg->labels[i];  /* the same label again */
        memcpy(x + n * REF_DIM, rg->q + i * REF_DIM, REF_DIM * sizeof *x);
        n++;
        rg->has_q[i] = true;
    }
    if (n)
        upsert(h, gallery, model, n, ids, labels, x, REF_DIM);
}

/*
 * Posts in's evaluation of gallery (ks_json and primary as eval_body takes
 * them), compares the report with ref, naming it "<gallery> <name>", and
 * logs it.
 */
static void post_and_check(td_http *h, const char *gallery, const char *gm, const char *qm,
                           const ref_input *in, const char *ks_json, const char *primary,
                           const ref_report *ref, const char *name, eval_log *log)
{
    char what[64];
    char *body = eval_body(in, qm, ks_json, primary);
    cJSON *rep = post_eval(h, gallery, body);
    snprintf(what, sizeof what, "%s %s", gallery, name);
    if (rep)
        check_report(rep, ref, gallery, gm, qm, what);
    log_eval(log, rep);
    free(body);
}

static void test_reference(td_http *h, td_metric m, td_rng *rng, eval_log *log)
{
    char gallery[32], gm[32], qm[32];
    snprintf(gallery, sizeof gallery, "ref-%s", td_metric_names[m]);
    snprintf(gm, sizeof gm, "g-%s", td_metric_names[m]);
    snprintf(qm, sizeof qm, "q-%s", td_metric_names[m]);
    create_model(h, gm, REF_DIM, td_metric_names[m], NULL);
    create_model(h, qm, REF_DIM, td_metric_names[m], NULL);
    create_gallery(h, gallery, gm);

    double item_p = m == TD_METRIC_COSINE ? 0.4 : 0.7;
    double probe_p = m == TD_METRIC_COSINE ? 0.3 : 0.5;
    double base_p = m == TD_METRIC_COSINE ? 0.7 : 0.9;
    float centres[REF_LABELS][REF_DIM];
    for (int l = 0; l < REF_LABELS; l++)
        make_centre(m, rng, centres[l]);

    /* Items in a shuffled insertion order. */
    ref_gallery *rg = calloc(1, sizeof *rg);
    REQUIRE(rg != NULL);
    size_t n = 0;
    for (int l = 0; l < REF_LABELS; l++) {
        for (int k = 0; k < REF_PER_LABEL; k++, n++) {
            rg->ids[n] = td_fmt("it%zu", n);
            rg->labels[n] = td_fmt("%d", l);
            make_noisy(m, rng, centres[l], item_p, rg->g + n * REF_DIM);
            make_noisy(m, rng, centres[l], item_p, rg->q + n * REF_DIM);
        }
    }
    for (int u = 0; u < REF_UNLABELLED; u++, n++) {
        float c[REF_DIM];
        make_centre(m, rng, c);
        rg->ids[n] = td_fmt("u%d", u);
        make_noisy(m, rng, c, 1.0, rg->g + n * REF_DIM);
        make_noisy(m, rng, c, 1.0, rg->q + n * REF_DIM);
    }
    size_t solo = n++, gone = n++;
    rg->ids[solo] = td_fmt("solo-item");
    rg->labels[solo] = td_fmt("solo");
    make_centre(m, rng, rg->g + solo * REF_DIM);
    make_centre(m, rng, rg->q + solo * REF_DIM);
    rg->ids[gone] = td_fmt("gone");
    rg->labels[gone] = td_fmt("3");
    make_noisy(m, rng, centres[3], 0, rg->g + gone * REF_DIM);
    make_noisy(m, rng, centres[3], 0, rg->q + gone * REF_DIM);
    REQUIRE(n == REF_ITEMS);
    for (size_t i = n - 1; i > 0; i--) {
        size_t j = (size_t)(td_rng_next(rng) % (i + 1));
        char *t = rg->ids[i];
        rg->ids[i] = rg->ids[j];
        rg->ids[j] = t;
        t = rg->labels[i];
        rg->labels[i] = rg->labels[j];
        rg->labels[j] = t;
        float tv[REF_DIM];
        memcpy(tv, rg->g + i * REF_DIM, sizeof tv);
        memcpy(rg->g + i * REF_DIM, rg->g + j * REF_DIM, sizeof tv);
        memcpy(rg->g + j * REF_DIM, tv, sizeof tv);
        memcpy(tv, rg->q + i * REF_DIM, sizeof tv);
        memcpy(rg->q + i * REF_DIM, rg->q + j * REF_DIM, sizeof tv);
        memcpy(rg->q + j * REF_DIM, tv, sizeof tv);
    }
    for (size_t i = 0; i < REF_ITEMS; i++) {
        rg->live[i] = true;
        if (strcmp(rg->ids[i], "gone") == 0)
            gone = i;
    }
    /* Two batches: insertion order is the order sent. */
    upsert(h, gallery, NULL, REF_ITEMS / 2, rg->ids, rg->labels, rg->g, REF_DIM);
    upsert(h, gallery, NULL, REF_ITEMS - REF_ITEMS / 2, rg->ids + REF_ITEMS / 2,
           rg->labels + REF_ITEMS / 2, rg->g + (REF_ITEMS / 2) * REF_DIM, REF_DIM);
    delete_item(h, gallery, "gone");
    rg->live[gone] = false;

    /* Probes. */
    ref_probe_set *ps = calloc(1, sizeof *ps);
    REQUIRE(ps != NULL);
    size_t np = 0;
    for (int i = 0; i < REF_FRESH; i++, np++) {
        int l = rand_int(rng, 0, REF_LABELS - 1);
        ps->ids[np] = td_fmt("p%d", i);
        ps->labels[np] = td_fmt("%d", l);
        make_noisy(m, rng, centres[l], probe_p, ps->q + np * REF_DIM);
        make_noisy(m, rng, centres[l], base_p, ps->b + np * REF_DIM);
    }
    /* Leave-one-out: probes named after labelled items. */
    for (int k = 0; k < 6;) {
        size_t i = (size_t)(td_rng_next(rng) % REF_ITEMS);
        if (!rg->labels[i] || i == gone || strcmp(rg->labels[i], "solo") == 0)
            continue;
        bool dup = false;
        for (size_t p = 0; p < np; p++)
            dup = dup || strcmp(ps->ids[p], rg->ids[i]) == 0;
        if (dup)
            continue;
        int l = atoi(rg->labels[i]);
        ps->ids[np] = td_fmt("%s", rg->ids[i]);
        ps->labels[np] = td_fmt("%s", rg->labels[i]);
        make_noisy(m, rng, centres[l], probe_p, ps->q + np * REF_DIM);
        make_noisy(m, rng, centres[l], base_p, ps->b + np * REF_DIM);
        np++;
        k++;
    }
    /* The only item of its label is the probe itself: skipped. */
    ps->ids[np] = td_fmt("solo-item");
    ps->labels[np] = td_fmt("solo");
    memcpy(ps->q + np * REF_DIM, rg->g + solo * REF_DIM, REF_DIM * sizeof(float));
    memcpy(ps->b + np * REF_DIM, rg->g + solo * REF_DIM, REF_DIM * sizeof(float));
    np++;
    /* The deleted item's id: an ordinary probe. */
    ps->ids[np] = td_fmt("gone");
    ps->labels[np] = td_fmt("3");
    make_noisy(m, rng, centres[3], probe_p, ps->q + np * REF_DIM);
    make_noisy(m, rng, centres[3], base_p, ps->b + np * REF_DIM);
    np++;
    /* Labels no item has: skipped. */
    for (int k = 0; k < 3; k++, np++) {
        ps->ids[np] = td_fmt("stranger%d", k);
        ps->labels[np] = td_fmt("%s", k == 2 ? "nobody" : "99");
        make_noisy(m, rng, centres[k], probe_p, ps->q + np * REF_DIM);
        make_noisy(m, rng, centres[k], base_p, ps->b + np * REF_DIM);
    }
    /* An unlabelled item's id: nothing to leave out. */
    ps->ids[np] = td_fmt("u0");
    ps->labels[np] = td_fmt("2");
    make_noisy(m, rng, centres[2], probe_p, ps->q + np * REF_DIM);
    make_noisy(m, rng, centres[2], base_p, ps->b + np * REF_DIM);
    np++;
    REQUIRE(np == REF_PROBES);

    /* Backfill every live labelled item but one, and two unlabelled ones. */
    bool which[REF_ITEMS] = {false};
    size_t held_back = SIZE_MAX;
    int unlabelled_backfilled = 0;
    for (size_t i = 0; i < REF_ITEMS; i++) {
        if (!rg->live[i])
            continue;
        if (rg->labels[i] && held_back == SIZE_MAX && i > REF_ITEMS / 3)
            held_back = i;
        else if (rg->labels[i] || unlabelled_backfilled++ < 2)
            which[i] = true;
    }
    backfill(h, gallery, qm, rg, which);

    ref_input in = {
        .metric = m, .dim = REF_DIM, .n_items = REF_ITEMS, .item_ids = rg->ids,
        .item_labels = rg->labels, .item_g = rg->g, .item_q = rg->q, .has_q = rg->has_q,
        .live = rg->live, .n_probes = REF_PROBES, .probe_ids = ps->ids,
        .probe_labels = ps->labels, .probe_q = ps->q, .probe_b = ps->b,
        .n_ks = 4, .ks = {1, 3, 5, 1000}, .primary_k = 1,
    };

    /* A: with a baseline, no paragon (one labelled item not backfilled). */
    ref_report ref;
    ref_evaluate(&in, &ref);
    CHECK(!ref.has_paragon);
    CHECK_EQ(ref.skipped, 4);
    CHECK(ref.neg > 0 || ref.pos > 0);
    post_and_check(h, gallery, gm, qm, &in, "[1,3,5,1000]", NULL, &ref,
                   "A (baseline, no paragon)", log);
    ref_report_finish(&ref);

    /* C: no baseline, default ks, map as the primary metric. */
    ref_input nb = in;
    nb.probe_b = NULL;
    nb.n_ks = 3;
    memcpy(nb.ks, (int[MAX_KS]){1, 5, 10}, sizeof nb.ks);
    nb.primary_k = 0;
    ref_evaluate(&nb, &ref);
    post_and_check(h, gallery, gm, qm, &nb, NULL, "map", &ref, "C (no baseline)", log);
    ref_report_finish(&ref);

    /* B: the last labelled item backfilled, so the paragon exists. */
    memset(which, 0, sizeof which);
    which[held_back] = true;
    backfill(h, gallery, qm, rg, which);
    in.primary_k = 3;
    ref_evaluate(&in, &ref);
    CHECK(ref.has_paragon);
    post_and_check(h, gallery, gm, qm, &in, "[1,3,5,1000]", "top3", &ref,
                   "B (baseline and paragon)", log);
    fprintf(stderr, "%-11s queries %ld skipped %ld cross top1 %.3f baseline top1 %.3f paragon "
            "top1 %.3f map %.3f/%.3f/%.3f flips -%ld +%ld\n", gallery, ref.queries,
            ref.skipped, ref.cross[0], ref.baseline[0], ref.paragon[0], ref.cross[4],
            ref.baseline[4], ref.paragon[4], ref.neg, ref.pos);
    ref_report_finish(&ref);

    free_strings(rg->ids, REF_ITEMS);
    free_strings(rg->labels, REF_ITEMS);
    free_strings(ps->ids, REF_PROBES);
    free_strings(ps->labels, REF_PROBES);
    free(rg);
    free(ps);
}

/* ---- the upgrade scenario ------------------------------------------- */

#define UP_DIM 32
#define UP_LABELS 40
#define UP_PER_LABEL 10
#define UP_ITEMS (UP_LABELS * UP_PER_LABEL)
#define UP_PROBES_PER_LABEL 5
#define UP_PROBES (UP_LABELS * UP_PROBES_PER_LABEL)

/* The photos gallery and the probe sets of the scenario. */
typedef struct upgrade {
    char *ids[UP_ITEMS];
    char *labels[UP_ITEMS];
    float items[UP_ITEMS * UP_DIM];
    bool yes[UP_ITEMS];
    bool no[UP_ITEMS];
    char *pids[UP_PROBES];
    char *plabels[UP_PROBES];
    float good[UP_PROBES * UP_DIM];     /* new-compat: centre + small noise */
    float weak[UP_PROBES * UP_DIM];     /* worse than the baseline */
    float rot[UP_PROBES * UP_DIM];      /* good, permuted with sign flips */
    float base[UP_PROBES * UP_DIM];     /* old: centre + larger noise */
    long long eval_compat_weak, eval_rot, eval_compat, eval_legacy, eval_chain;
} upgrade;

static void noisy(td_rng *rng, const float *c, double sigma, float *out)
{
    for (int d = 0; d < UP_DIM; d++)
        out[d] = c[d] + (float)(sigma * td_rng_gauss(rng));
}

/* A search of gallery by model with a query of dim values; the status. */
static long search_as(td_http *h, const char *gallery, const char *model, int dim,
                      td_rng *rng, td_reply *r)
{
    text t = {0};
    float v[UP_DIM * 2];
    for (int d = 0; d < dim; d++)
        v[d] = (float)td_rng_gauss(rng);
    td_text_append(&t, "{\"model\":\"%s\",\"k\":5,\"vector\":", model);
    append_floats(&t, v, (size_t)dim);
    td_text_append(&t, "}");
    char *path = td_fmt("/v1/galleries/%s/search", gallery);
    td_http_json(h, "POST", path, t.s, r);
    free(path);
    free(t.s);
    return r->status;
}

/* Searches as model and checks the status (and the 409's code). */
static void expect_search(td_http *h, const char *model, int dim, long want, td_rng *rng,
                          const char *why)
{
    td_reply r;
    search_as(h, "photos", model, dim, rng, &r);
    if (r.status != want)
        fprintf(stderr, "search photos as %s (%s): want %ld, got %ld: %.300s\n", model, why,
                want, r.status, r.body);
    CHECK_EQ(r.status, want);
    if (want == 409 && r.status == 409)
        CHECK_STREQ(td_reply_error_code(&r), "model_not_verified");
    if (want >= 400 && r.status >= 400)
        CHECK_EQ(td_json_num(r.json, "error.status"), r.status);
    td_reply_finish(&r);
}

/* The 409 for model names evaluation `id` (as a whole number) in its message. */
static void expect_refusal_names(td_http *h, const char *model, long long id, td_rng *rng)
{
    td_reply r;
    search_as(h, "photos", model, UP_DIM, rng, &r);
    CHECK_EQ(r.status, 409);
    const char *msg = td_reply_error_message(&r);
    char num[32];
    snprintf(num, sizeof num, "%lld", id);
    bool named = false;
    for (const char *p = msg ? strstr(msg, num) : NULL; p && !named; p = strstr(p + 1, num))
        named = (p == msg || !isdigit((unsigned char)p[-1])) &&
                !isdigit((unsigned char)p[strlen(num)]);
    if (!named)
        fprintf(stderr, "409 for %s should name evaluation %lld: %s\n", model, id,
                msg ? msg : "(no message)");
    CHECK(named);
    td_reply_finish(&r);
}

/* The query_models entry of model in GET /v1/galleries/photos, or NULL. */
static const cJSON *query_model_entry(const cJSON *gallery, const char *model)
{
    const cJSON *e;
    cJSON_ArrayForEach(e, td_json_at(gallery, "query_models")) {
        const char *name = td_json_str(e, "model");
        if (name && strcmp(name, model) == 0)
            return e;
    }
    return NULL;
}

/* Checks model's status on photos and its evaluation (-1: null). */
static void expect_status(const cJSON *gallery, const char *model, const char *status,
                          long long eval)
{
    const cJSON *e = query_model_entry(gallery, model);
    check_count++;
    if (!e) {
        CHECK_FAILED_("photos: query_models has no entry for %s", model);
        return;
    }
    expect_str(e, "status", status, model);
    const cJSON *ev = td_json_at(e, "evaluation");
    if (eval < 0) {
        check_count++;
        if (!cJSON_IsNull(ev))
            CHECK_FAILED_("photos: %s's evaluation should be null", model);
    } else {
        expect_num(ev, "id", (double)eval, 0, model);
    }
}

static cJSON *get_json(td_http *h, const char *path)
{
    td_reply r;
    CHECK_EQ(td_http_call(h, &r, 200, "GET", path, NULL), 200);
    cJSON *j = r.json;
    r.json = NULL;
    td_reply_finish(&r);
    return j;
}

/* The reference report of probes q (and base) against photos. */
static void upgrade_ref(const upgrade *u, const float *q, const float *base, ref_report *ref)
{
    ref_input in = {
        .metric = TD_METRIC_COSINE, .dim = UP_DIM, .n_items = UP_ITEMS,
        .item_ids = (char **)u->ids, .item_labels = (char **)u->labels, .item_g = u->items,
        .item_q = u->items, .has_q = u->no, .live = u->yes, .n_probes = UP_PROBES,
        .probe_ids = (char **)u->pids, .probe_labels = (char **)u->plabels, .probe_q = q,
        .probe_b = base, .n_ks = 3, .ks = {1, 5, 10}, .primary_k = 1,
    };
    ref_evaluate(&in, ref);
}

/* Evaluates probes q as model on photos; expects compatible == want. */
static long long upgrade_eval(td_http *h, const upgrade *u, const char *model,
                              const float *q, const float *base, int want, eval_log *log)
{
    ref_report ref;
    upgrade_ref(u, q, base, &ref);
    /* The scenario is built so that the reference gives this verdict. */
    CHECK_EQ(ref.compatible, want);
    fprintf(stderr, "photos %-10s reference cross top1 %.3f baseline top1 %.3f -> %d\n", model,
            ref.cross[0], ref.baseline[0], ref.compatible);
    ref_input in = {
        .dim = UP_DIM, .n_probes = UP_PROBES, .probe_ids = (char **)u->pids,
        .probe_labels = (char **)u->plabels, .probe_q = q, .probe_b = base,
    };
    char *body = eval_body(&in, model, NULL, NULL);
    cJSON *rep = post_eval(h, "photos", body);
    long long id = -1;
    if (rep) {
        id = eval_id(rep);
        expect_bool(rep, "compatible", want, model);
        expect_num(rep, "queries", UP_PROBES, 0, model);
        expect_num(rep, "gallery_items", UP_ITEMS, 0, model);
        /* Gaussian data: near-ties are possible, so a looser tolerance. */
        expect_num(rep, "cross.top1", ref.cross[0], 2.5 / UP_PROBES, model);
        if (base)
            expect_num(rep, "baseline.top1", ref.baseline[0], 2.5 / UP_PROBES, model);
        expect_num(rep, "paragon", NAN, 0, model);
    }
    log_eval(log, rep);
    free(body);
    ref_report_finish(&ref);
    return id;
}

static upgrade *test_upgrade(td_http *h, td_rng *rng, eval_log *log)
{
    upgrade *u = calloc(1, sizeof *u);
    REQUIRE(u != NULL);
    /* legacy is older than the gallery model, so the matrix's share
     * ignores it. */
    create_model(h, "legacy", UP_DIM, "cosine", NULL);
    create_model(h, "old", UP_DIM, "cosine", NULL);
    create_model(h, "new-compat", UP_DIM, "cosine", "old");
    create_model(h, "new-rot", UP_DIM, "cosine", NULL);
    create_model(h, "new-never", UP_DIM, "cosine", NULL);
    create_model(h, "new-chain", UP_DIM, "cosine", "new-compat");
    create_model(h, "wide", UP_DIM / 2, "cosine", NULL);
    create_model(h, "old-l2", UP_DIM, "l2", NULL);
    create_gallery(h, "photos", "old");

    float centres[UP_LABELS][UP_DIM];
    for (int l = 0; l < UP_LABELS; l++)
        for (int d = 0; d < UP_DIM; d++)
            centres[l][d] = (float)td_rng_gauss(rng);
    for (size_t i = 0; i < UP_ITEMS; i++) {
        int l = (int)(i % UP_LABELS);
        u->ids[i] = td_fmt("ph%zu", i);
        u->labels[i] = td_fmt("L%d", l);
        noisy(rng, centres[l], 1.0, u->items + i * UP_DIM);
        u->yes[i] = true;
    }
    for (size_t b = 0; b < UP_ITEMS; b += 100)
        upsert(h, "photos", NULL, 100, u->ids + b, u->labels + b, u->items + b * UP_DIM,
               UP_DIM);

    int perm[UP_DIM];
    float sign[UP_DIM];
    for (int d = 0; d < UP_DIM; d++) {
        perm[d] = d;
        sign[d] = td_rng_next(rng) & 1 ? 1.0f : -1.0f;
    }
    for (int d = UP_DIM - 1; d > 0; d--) {
        int j = (int)(td_rng_next(rng) % (uint64_t)(d + 1)), t = perm[d];
        perm[d] = perm[j];
        perm[j] = t;
    }
    for (size_t p = 0; p < UP_PROBES; p++) {
        int l = (int)(p % UP_LABELS);
        u->pids[p] = td_fmt("pq%zu", p);
        u->plabels[p] = td_fmt("L%d", l);
        noisy(rng, centres[l], 0.9, u->good + p * UP_DIM);
        noisy(rng, centres[l], 2.2, u->weak + p * UP_DIM);
        noisy(rng, centres[l], 1.4, u->base + p * UP_DIM);
        for (int d = 0; d < UP_DIM; d++)
            u->rot[p * UP_DIM + d] = sign[d] * u->good[p * UP_DIM + perm[d]];
    }

    /* Before any evaluation: the declared model and the rest. */
    cJSON *g = get_json(h, "/v1/galleries/photos");
    expect_status(g, "new-compat", "declared", -1);
    expect_status(g, "new-chain", "declared", -1);
    expect_status(g, "new-rot", "unverified", -1);
    expect_status(g, "legacy", "unverified", -1);
    cJSON_Delete(g);

    /* new-compat first with probes worse than the baseline: failed. */
    u->eval_compat_weak = upgrade_eval(h, u, "new-compat", u->weak, u->base, 0, log);
    u->eval_rot = upgrade_eval(h, u, "new-rot", u->rot, u->base, 0, log);
    g = get_json(h, "/v1/galleries/photos");
    expect_status(g, "new-compat", "failed", u->eval_compat_weak);
    expect_status(g, "new-rot", "failed", u->eval_rot);
    cJSON_Delete(g);
    expect_refusal_names(h, "new-compat", u->eval_compat_weak, rng);
    expect_refusal_names(h, "new-rot", u->eval_rot, rng);

    /* Then with good probes: verified (the latest evaluation counts). */
    u->eval_compat = upgrade_eval(h, u, "new-compat", u->good, u->base, 1, log);
    u->eval_legacy = upgrade_eval(h, u, "legacy", u->good, u->base, 1, log);
    g = get_json(h, "/v1/galleries/photos");
    expect_status(g, "new-compat", "verified", u->eval_compat);
    expect_status(g, "new-rot", "failed", u->eval_rot);
    expect_status(g, "legacy", "verified", u->eval_legacy);
    expect_status(g, "new-never", "unverified", -1);
    expect_status(g, "new-chain", "declared", -1);
    cJSON_Delete(g);

    /* The gate under "verified" (the default). */
    expect_search(h, "old", UP_DIM, 200, rng, "the gallery model");
    expect_search(h, "new-compat", UP_DIM, 200, rng, "verified");
    expect_search(h, "legacy", UP_DIM, 200, rng, "verified");
    expect_search(h, "new-rot", UP_DIM, 409, rng, "failed");
    expect_refusal_names(h, "new-rot", u->eval_rot, rng);
    expect_search(h, "new-chain", UP_DIM, 409, rng, "declared only");
    td_reply r;
    search_as(h, "photos", "new-never", UP_DIM, rng, &r);
    CHECK_EQ(r.status, 409);
    CHECK_STREQ(td_reply_error_code(&r), "model_not_verified");
    const char *msg = td_reply_error_message(&r);
    bool says_none = msg && (strcasestr(msg, "no evaluation") || strcasestr(msg, "never been evaluated") ||
                             strcasestr(msg, "not been evaluated") || strcasestr(msg, "never evaluated"));
    if (!says_none)
        fprintf(stderr, "409 for new-never should say it has no evaluation: %s\n",
                msg ? msg : "(none)");
    CHECK(says_none);
    td_reply_finish(&r);

    /* "any" lets every model of the same dim and metric in. */
    set_policy(h, "photos", "any");
    expect_search(h, "new-rot", UP_DIM, 200, rng, "any");
    expect_search(h, "new-never", UP_DIM, 200, rng, "any");
    expect_search(h, "new-chain", UP_DIM, 200, rng, "any");
    set_policy(h, "photos", "verified");
    expect_search(h, "new-rot", UP_DIM, 409, rng, "back to verified");

    /* "declared": the compatible_with chain (new-chain -> new-compat -> old). */
    set_policy(h, "photos", "declared");
    expect_search(h, "new-chain", UP_DIM, 200, rng, "declared chain");
    expect_search(h, "new-compat", UP_DIM, 200, rng, "declared and verified");
    expect_search(h, "legacy", UP_DIM, 200, rng, "verified, no declaration");
    expect_search(h, "new-rot", UP_DIM, 409, rng, "declared policy, no compatible_with");
    expect_search(h, "new-never", UP_DIM, 409, rng, "declared policy, no compatible_with");

    /* Another dim or metric: 400 whatever the policy. */
    static const char *const policies[] = {"verified", "declared", "any"};
    for (size_t i = 0; i < 3; i++) {
        set_policy(h, "photos", policies[i]);
        expect_search(h, "wide", UP_DIM / 2, 400, rng, policies[i]);
        expect_search(h, "old-l2", UP_DIM, 400, rng, policies[i]);
    }
    set_policy(h, "photos", "verified");

    /* An evaluation without a baseline cannot verify: new-chain stays
     * declared, still refused under "verified", still fine under
     * "declared". */
    ref_input in = {
        .dim = UP_DIM, .n_probes = UP_PROBES, .probe_ids = u->pids,
        .probe_labels = u->plabels, .probe_q = u->good, .probe_b = NULL,
    };
    char *body = eval_body(&in, "new-chain", "[1,5]", NULL);
    cJSON *rep = post_eval(h, "photos", body);
    free(body);
    if (rep) {
        u->eval_chain = eval_id(rep);
        expect_bool(rep, "compatible", -1, "new-chain");
        expect_num(rep, "baseline", NAN, 0, "new-chain");
        expect_num(rep, "flips", NAN, 0, "new-chain");
        expect_num(rep, "update_gain", NAN, 0, "new-chain");
    }
    log_eval(log, rep);
    g = get_json(h, "/v1/galleries/photos");
    const cJSON *chain = query_model_entry(g, "new-chain");
    expect_str(chain, "status", "declared", "new-chain after an evaluation without baseline");
    cJSON_Delete(g);
    expect_search(h, "new-chain", UP_DIM, 409, rng, "verified, no baseline");
    set_policy(h, "photos", "declared");
    expect_search(h, "new-chain", UP_DIM, 200, rng, "declared, no baseline");
    set_policy(h, "photos", "verified");
    return u;
}

static void upgrade_destroy(upgrade *u)
{
    if (!u)
        return;
    free_strings(u->ids, UP_ITEMS);
    free_strings(u->labels, UP_ITEMS);
    free_strings(u->pids, UP_PROBES);
    free_strings(u->plabels, UP_PROBES);
    free(u);
}

/* ---- the compatibility matrix --------------------------------------- */

/* One gallery's expected matrix entry. */
typedef struct matrix_gallery {
    const char *gallery, *gallery_model;
    const char *pairs[8];       /* query models with evaluations */
    const char *older[8];       /* of which created before the gallery model */
} matrix_gallery;

static bool in_list(const char *const *list, const char *s)
{
    for (; *list; list++)
        if (strcmp(*list, s) == 0)
            return true;
    return false;
}

/* A matrix "evaluation" is the id, or an object with that id. */
static double matrix_eval_id(const cJSON *pair)
{
    const cJSON *e = td_json_at(pair, "evaluation");
    return cJSON_IsObject(e) ? td_json_num(e, "id") : td_json_num(pair, "evaluation");
}

static void check_matrix(const cJSON *m, const matrix_gallery *want, size_t n_want,
                         const eval_log *log)
{
    const cJSON *gs = td_json_at(m, "galleries");
    CHECK(cJSON_IsArray(gs));
    for (size_t w = 0; w < n_want; w++) {
        const matrix_gallery *mg = &want[w];
        const cJSON *entry = NULL, *e;
        cJSON_ArrayForEach(e, gs) {
            const char *name = td_json_str(e, "gallery");
            if (name && strcmp(name, mg->gallery) == 0)
                entry = e;
        }
        check_count++;
        if (!entry) {
            CHECK_FAILED_("compatibility: no entry for gallery %s", mg->gallery);
            continue;
        }
        expect_str(entry, "gallery_model", mg->gallery_model, mg->gallery);
        const cJSON *pairs = td_json_at(entry, "pairs");
        size_t n_pairs = 0, ac_pairs = 0, ac_passed = 0;
        for (; mg->pairs[n_pairs]; n_pairs++) {
            const char *qm = mg->pairs[n_pairs];
            const cJSON *rep = latest_eval(log, mg->gallery, qm);
            REQUIRE(rep != NULL);
            const cJSON *pair = NULL;
            cJSON_ArrayForEach(e, pairs) {
                const char *name = td_json_str(e, "query_model");
                if (name && strcmp(name, qm) == 0)
                    pair = e;
            }
            char what[128];
            snprintf(what, sizeof what, "compatibility %s/%s", mg->gallery, qm);
            check_count++;
            if (!pair) {
                CHECK_FAILED_("%s: no pair", what);
                continue;
            }
            expect_str(pair, "gallery_model", mg->gallery_model, what);
            check_count++;
            if (matrix_eval_id(pair) != (double)eval_id(rep))
                CHECK_FAILED_("%s: evaluation %.0f, latest is %lld", what,
                              matrix_eval_id(pair), eval_id(rep));
            expect_str(pair, "created_at", td_json_str(rep, "created_at"), what);
            expect_num(pair, "cross_top1", td_json_num(rep, "cross.top1"), 1e-9, what);
            expect_num(pair, "cross_map", td_json_num(rep, "cross.map"), 1e-9, what);
            expect_num(pair, "baseline_top1", td_json_num(rep, "baseline.top1"), 1e-9, what);
            expect_num(pair, "baseline_map", td_json_num(rep, "baseline.map"), 1e-9, what);
            expect_num(pair, "nfr", td_json_num(rep, "flips.nfr"), 1e-9, what);
            const cJSON *c = td_json_at(rep, "compatible");
            int verdict = cJSON_IsTrue(c) ? 1 : cJSON_IsFalse(c) ? 0 : -1;
            expect_bool(pair, "compatible", verdict, what);
            expect_str(pair, "verdict", verdict < 0 ? "none" : verdict ? "pass" : "fail", what);
            if (verdict >= 0 && !in_list(mg->older, qm)) {
                ac_pairs++;
                ac_passed += (size_t)verdict;
            }
        }
        CHECK_EQ(cJSON_GetArraySize(pairs), n_pairs);
        expect_num(entry, "ac.pairs", (double)ac_pairs, 0, mg->gallery);
        expect_num(entry, "ac.passed", (double)ac_passed, 0, mg->gallery);
        expect_num(entry, "ac.share", ac_pairs ? (double)ac_passed / ac_pairs : NAN, 1e-9,
                   mg->gallery);
    }
}

/* ---- listings --------------------------------------------------------- */

/*
 * Every evaluation id of gallery (filtered by query_model when not NULL),
 * walking the pages of `limit` (0: the default); at most max ids.
 * Returns the count, or -1 when a page was not a 200.  Checks that
 * next_before is null exactly on the last page.
 */
static long list_ids(td_http *h, const char *gallery, const char *query_model, int limit,
                     long long *out, size_t max)
{
    long n = 0;
    long long before = -1;
    for (int page = 0; page < 1000; page++) {
        text path = {0};
        char sep = '?';
        td_text_append(&path, "/v1/galleries/%s/evaluations", gallery);
        if (limit) {
            td_text_append(&path, "%climit=%d", sep, limit);
            sep = '&';
        }
        if (before >= 0) {
            td_text_append(&path, "%cbefore=%lld", sep, before);
            sep = '&';
        }
        if (query_model)
            td_text_append(&path, "%cquery_model=%s", sep, query_model);
        td_reply r;
        td_http_call(h, &r, 200, "GET", path.s, NULL);
        free(path.s);
        if (r.status != 200) {
            td_reply_finish(&r);
            return -1;
        }
        const cJSON *evs = td_json_at(r.json, "evaluations");
        CHECK(cJSON_IsArray(evs));
        if (limit)
            CHECK(cJSON_GetArraySize(evs) <= limit);
        const cJSON *e;
        cJSON_ArrayForEach(e, evs) {
            CHECK(eval_id(e) > 0);
            if (query_model)
                CHECK_STREQ(td_json_str(e, "query_model"), query_model);
            CHECK_STREQ(td_json_str(e, "gallery"), gallery);
            if ((size_t)n < max)
                out[n] = eval_id(e);
            n++;
        }
        const cJSON *next = td_json_at(r.json, "next_before");
        bool more = cJSON_IsNumber(next);
        CHECK(more || cJSON_IsNull(next));
        before = more ? (long long)next->valuedouble : -1;
        td_reply_finish(&r);
        if (!more)
            return n;
    }
    CHECK(!"pagination does not end");
    return -1;
}

/* Ids of gallery's logged evaluations (query model filter), newest first. */
static size_t logged_ids(const eval_log *log, const char *gallery, const char *query_model,
                         long long *out)
{
    size_t n = 0;
    for (size_t i = log->n; i-- > 0;) {
        const char *g = td_json_str(log->report[i], "gallery");
        const char *q = td_json_str(log->report[i], "query_model");
        if (strcmp(g, gallery) == 0 && (!query_model || strcmp(q, query_model) == 0))
            out[n++] = eval_id(log->report[i]);
    }
    return n;
}

static void check_listing(td_http *h, const eval_log *log, const char *gallery,
                          const char *query_model, int limit)
{
    long long want[MAX_EVALS], got[MAX_EVALS];
    size_t n_want = logged_ids(log, gallery, query_model, want);
    long n_got = list_ids(h, gallery, query_model, limit, got, MAX_EVALS);
    if (n_got != (long)n_want)
        fprintf(stderr, "listing %s (query_model %s, limit %d): %ld evaluations, want %zu\n",
                gallery, query_model ? query_model : "-", limit, n_got, n_want);
    CHECK_EQ(n_got, n_want);
    for (size_t i = 0; i < n_want && (long)i < n_got; i++)
        CHECK_EQ(got[i], want[i]);
}

/* The number of stored evaluations of gallery. */
static long eval_count(td_http *h, const char *gallery)
{
    long long ids[MAX_EVALS];
    return list_ids(h, gallery, NULL, 0, ids, MAX_EVALS);
}

/* ---- storage ---------------------------------------------------------- */

/* A snapshot of what must survive a restart. */
typedef struct state {
    cJSON *evaluations;     /* id -> GET /v1/evaluations/{id} */
    cJSON *photos;          /* GET /v1/galleries/photos's query_models */
    cJSON *matrix;          /* GET /v1/compatibility */
} state;

static void check_reports_stored(td_http *h, const eval_log *log, const char *when)
{
    for (size_t i = 0; i < log->n; i++) {
        char *path = td_fmt("/v1/evaluations/%lld", eval_id(log->report[i]));
        td_reply r;
        CHECK_EQ(td_http_call(h, &r, 200, "GET", path, NULL), 200);
        bool same = r.json && cJSON_Compare(r.json, log->report[i], true);
        if (!same) {
            char *want = cJSON_PrintUnformatted(log->report[i]);
            fprintf(stderr, "%s: GET %s differs from the POST's reply\n got  %.3000s\n want "
                    "%.3000s\n", when, path, r.body, want ? want : "");
            free(want);
        }
        CHECK(same);
        td_reply_finish(&r);
        free(path);
    }
}

static void check_same_json(cJSON *before, cJSON *after, const char *what, const char *when)
{
    bool same = before && after && cJSON_Compare(before, after, true);
    if (!same) {
        char *a = before ? cJSON_PrintUnformatted(before) : NULL;
        char *b = after ? cJSON_PrintUnformatted(after) : NULL;
        fprintf(stderr, "%s changed %s:\n before %.3000s\n after  %.3000s\n", what, when,
                a ? a : "(none)", b ? b : "(none)");
        free(a);
        free(b);
    }
    CHECK(same);
}

static void check_persistent(td_http *h, const eval_log *log, const cJSON *photos_before,
                             const cJSON *matrix_before, const char *when, td_rng *rng,
                             const upgrade *u)
{
    /* First, before anything else looks new-compat up: the declared
     * chain new-chain -> new-compat -> old still counts. */
    set_policy(h, "photos", "declared");
    expect_search(h, "new-chain", UP_DIM, 200, rng, when);
    set_policy(h, "photos", "verified");
    check_reports_stored(h, log, when);
    cJSON *g = get_json(h, "/v1/galleries/photos");
    check_same_json((cJSON *)photos_before, cJSON_GetObjectItemCaseSensitive(g, "query_models"),
                    "photos' query_models", when);
    cJSON_Delete(g);
    cJSON *m = get_json(h, "/v1/compatibility");
    check_same_json((cJSON *)matrix_before, m, "the compatibility matrix", when);
    cJSON_Delete(m);
    check_listing(h, log, "photos", NULL, 0);
    check_listing(h, log, "photos", NULL, 2);
    check_listing(h, log, "photos", "new-compat", 1);
    expect_search(h, "new-compat", UP_DIM, 200, rng, when);
    expect_refusal_names(h, "new-rot", u->eval_rot, rng);
}

static void test_storage(td_daemon *d, td_http *h, const eval_log *log, td_rng *rng,
                         const upgrade *u)
{
    check_reports_stored(h, log, "while running");
    check_listing(h, log, "photos", NULL, 0);
    check_listing(h, log, "photos", NULL, 2);
    check_listing(h, log, "photos", NULL, 1);
    check_listing(h, log, "photos", "new-compat", 0);
    check_listing(h, log, "photos", "new-compat", 1);
    check_listing(h, log, "photos", "new-rot", 2);
    check_listing(h, log, "photos", "new-never", 0);
    check_listing(h, log, "ref-ip", NULL, 2);
    check_listing(h, log, "flips", NULL, 0);

    /* The page after ?limit=2 is ?limit=2&before=<next_before>. */
    td_reply r;
    CHECK_EQ(td_http_call(h, &r, 200, "GET", "/v1/galleries/photos/evaluations?limit=2", NULL), 200);
    const cJSON *next = td_json_at(r.json, "next_before");
    CHECK(cJSON_IsNumber(next));
    long long nb = cJSON_IsNumber(next) ? (long long)next->valuedouble : 0;
    CHECK_EQ(cJSON_GetArraySize(td_json_at(r.json, "evaluations")), 2);
    long long second = (long long)td_json_num(r.json, "evaluations.1.id");
    td_reply_finish(&r);
    char *path = td_fmt("/v1/galleries/photos/evaluations?limit=2&before=%lld", nb);
    CHECK_EQ(td_http_call(h, &r, 200, "GET", path, NULL), 200);
    double first_next = td_json_num(r.json, "evaluations.0.id");
    CHECK(first_next < (double)second);
    td_reply_finish(&r);
    free(path);

    /* Unknown and malformed ids. */
    CHECK_EQ(td_http_call(h, &r, 404, "GET", "/v1/evaluations/999999", NULL), 404);
    CHECK_EQ(td_json_num(r.json, "error.status"), 404);
    td_reply_finish(&r);
    CHECK_EQ(td_http_call(h, &r, 400, "GET", "/v1/evaluations/abc", NULL), 400);
    CHECK_EQ(td_json_num(r.json, "error.status"), 400);
    td_reply_finish(&r);
    CHECK_EQ(td_http_call(h, &r, 400, "GET", "/v1/evaluations/12abc", NULL), 400);
    td_reply_finish(&r);
    CHECK_EQ(td_http_call(h, &r, 404, "GET", "/v1/galleries/nope/evaluations", NULL), 404);
    td_reply_finish(&r);

    cJSON *g = get_json(h, "/v1/galleries/photos");
    cJSON *photos = cJSON_DetachItemFromObjectCaseSensitive(g, "query_models");
    cJSON_Delete(g);
    cJSON *matrix = get_json(h, "/v1/compatibility");
    const char *args[] = {"--log-level", "warn", NULL};

    CHECK_EQ(td_daemon_stop(d), 0);
    REQUIRE(td_daemon_start(d, args));
    check_persistent(h, log, photos, matrix, "after a clean restart", rng, u);

    CHECK_EQ(td_daemon_kill(d), 0);
    REQUIRE(td_daemon_start(d, args));
    check_persistent(h, log, photos, matrix, "after kill -9", rng, u);

    cJSON_Delete(photos);
    cJSON_Delete(matrix);
}

/* ---- bad requests ----------------------------------------------------- */

typedef struct bad_case {
    const char *name;
    const char *gallery;        /* the evaluations of which are POSTed to */
    const char *content_type;
    char *body;
    long status;
    const char *code;           /* NULL: any */
} bad_case;

static void test_bad(td_http *h, td_rng *rng)
{
    /* A gallery with no items, and one with no labelled item. */
    create_gallery(h, "empty-g", "old");
    create_gallery(h, "nolabel-g", "old");
    float x[3 * UP_DIM];
    for (size_t i = 0; i < 3 * UP_DIM; i++)
        x[i] = (float)td_rng_gauss(rng);
    char *nl_ids[] = {"n0", "n1", "n2"};
    upsert(h, "nolabel-g", NULL, 3, nl_ids, NULL, x, UP_DIM);

    text v = {0}, v31 = {0}, v16 = {0};
    append_floats(&v, x, UP_DIM);
    append_floats(&v31, x, UP_DIM - 1);
    append_floats(&v16, x, UP_DIM / 2);
    float nan_v[UP_DIM];
    memcpy(nan_v, x, sizeof nan_v);
    nan_v[5] = NAN;
    char *nan_b64 = td_b64_floats(nan_v, UP_DIM);
    REQUIRE(nan_b64 != NULL);
    /* A probe the gallery can evaluate. */
    char *p1 = td_fmt("{\"id\":\"b1\",\"label\":\"L1\",\"vector\":%s}", v.s);
    char *p2 = td_fmt("{\"id\":\"b2\",\"label\":\"L2\",\"vector\":%s}", v.s);
    char *b1 = td_fmt("{\"id\":\"b1\",\"vector\":%s}", v.s);
    char *b2 = td_fmt("{\"id\":\"b2\",\"vector\":%s}", v.s);
    const char *J = "application/json";

    bad_case cases[] = {
        {"unknown gallery", "nope", J, td_fmt("{\"query_model\":\"new-compat\",\"queries\":[%s]}", p1), 404, NULL},
        {"unknown query_model", "photos", J, td_fmt("{\"query_model\":\"nomodel\",\"queries\":[%s]}", p1), 404, NULL},
        {"missing query_model", "photos", J, td_fmt("{\"queries\":[%s]}", p1), 400, NULL},
        {"query_model a number", "photos", J, td_fmt("{\"query_model\":7,\"queries\":[%s]}", p1), 400, NULL},
        {"query model of another dim", "photos", J, td_fmt("{\"query_model\":\"wide\",\"queries\":[{\"id\":\"b1\",\"label\":\"L1\",\"vector\":%s}]}", v16.s), 400, NULL},
        {"query model of another metric", "photos", J, td_fmt("{\"query_model\":\"old-l2\",\"queries\":[%s]}", p1), 400, NULL},
        {"probe of the wrong length", "photos", J, td_fmt("{\"query_model\":\"new-compat\",\"queries\":[%s,{\"id\":\"b3\",\"label\":\"L1\",\"vector\":%s}]}", p1, v31.s), 400, "dimension_mismatch"},
        {"baseline of the wrong length", "photos", J, td_fmt("{\"query_model\":\"new-compat\",\"queries\":[%s],\"baseline\":[{\"id\":\"b1\",\"vector\":%s}]}", p1, v31.s), 400, "dimension_mismatch"},
        {"string in a vector", "photos", J, td_fmt("{\"query_model\":\"new-compat\",\"queries\":[{\"id\":\"b1\",\"label\":\"L1\",\"vector\":[\"a\"%s]}]}", ",1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31"), 400, NULL},
        {"null in a vector", "photos", J, td_fmt("{\"query_model\":\"new-compat\",\"queries\":[{\"id\":\"b1\",\"label\":\"L1\",\"vector\":[null%s]}]}", ",1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31"), 400, NULL},
        {"vector a string", "photos", J, td_fmt("{\"query_model\":\"new-compat\",\"queries\":[{\"id\":\"b1\",\"label\":\"L1\",\"vector\":\"abc\"}]}"), 400, NULL},
        {"NaN in vector_b64", "photos", J, td_fmt("{\"query_model\":\"new-compat\",\"queries\":[{\"id\":\"b1\",\"label\":\"L1\",\"vector_b64\":\"%s\"}]}", nan_b64), 400, NULL},
        {"probe without vector", "photos", J, td_fmt("{\"query_model\":\"new-compat\",\"queries\":[{\"id\":\"b1\",\"label\":\"L1\"}]}"), 400, NULL},
        {"probe without label", "photos", J, td_fmt("{\"query_model\":\"new-compat\",\"queries\":[%s,{\"id\":\"b3\",\"vector\":%s}]}", p1, v.s), 400, NULL},
        {"probe label null", "photos", J, td_fmt("{\"query_model\":\"new-compat\",\"queries\":[{\"id\":\"b1\",\"label\":null,\"vector\":%s}]}", v.s), 400, NULL},
        {"probe label an object", "photos", J, td_fmt("{\"query_model\":\"new-compat\",\"queries\":[{\"id\":\"b1\",\"label\":{},\"vector\":%s}]}", v.s), 400, NULL},
        {"probe without id", "photos", J, td_fmt("{\"query_model\":\"new-compat\",\"queries\":[{\"label\":\"L1\",\"vector\":%s}]}", v.s), 400, NULL},
        {"duplicate probe ids", "photos", J, td_fmt("{\"query_model\":\"new-compat\",\"queries\":[%s,%s,%s]}", p1, p2, p1), 400, NULL},
        {"baseline id matching no probe", "photos", J, td_fmt("{\"query_model\":\"new-compat\",\"queries\":[%s,%s],\"baseline\":[%s,%s,{\"id\":\"b9\",\"vector\":%s}]}", p1, p2, b1, b2, v.s), 400, NULL},
        {"probe without a baseline entry", "photos", J, td_fmt("{\"query_model\":\"new-compat\",\"queries\":[%s,%s],\"baseline\":[%s]}", p1, p2, b1), 400, NULL},
        {"duplicate baseline ids", "photos", J, td_fmt("{\"query_model\":\"new-compat\",\"queries\":[%s,%s],\"baseline\":[%s,%s,%s]}", p1, p2, b1, b2, b1), 400, NULL},
        {"empty queries", "photos", J, td_fmt("{\"query_model\":\"new-compat\",\"queries\":[]}"), 400, NULL},
        {"queries missing", "photos", J, td_fmt("{\"query_model\":\"new-compat\"}"), 400, NULL},
        {"queries an object", "photos", J, td_fmt("{\"query_model\":\"new-compat\",\"queries\":%s}", p1), 400, NULL},
        {"ks empty", "photos", J, td_fmt("{\"query_model\":\"new-compat\",\"queries\":[%s],\"ks\":[]}", p1), 400, NULL},
        {"ks with 0", "photos", J, td_fmt("{\"query_model\":\"new-compat\",\"queries\":[%s],\"ks\":[1,0]}", p1), 400, NULL},
        {"ks with -1", "photos", J, td_fmt("{\"query_model\":\"new-compat\",\"queries\":[%s],\"ks\":[-1,1]}", p1), 400, NULL},
        {"ks with 1001", "photos", J, td_fmt("{\"query_model\":\"new-compat\",\"queries\":[%s],\"ks\":[1,1001]}", p1), 400, NULL},
        {"ks with 2.5", "photos", J, td_fmt("{\"query_model\":\"new-compat\",\"queries\":[%s],\"ks\":[1,2.5]}", p1), 400, NULL},
        {"ks with a string", "photos", J, td_fmt("{\"query_model\":\"new-compat\",\"queries\":[%s],\"ks\":[1,\"5\"]}", p1), 400, NULL},
        {"ks a number", "photos", J, td_fmt("{\"query_model\":\"new-compat\",\"queries\":[%s],\"ks\":5}", p1), 400, NULL},
        {"primary top7, 7 not in ks", "photos", J, td_fmt("{\"query_model\":\"new-compat\",\"queries\":[%s],\"ks\":[1,5],\"primary_metric\":\"top7\"}", p1), 400, NULL},
        {"primary top7, default ks", "photos", J, td_fmt("{\"query_model\":\"new-compat\",\"queries\":[%s],\"primary_metric\":\"top7\"}", p1), 400, NULL},
        {"primary foo", "photos", J, td_fmt("{\"query_model\":\"new-compat\",\"queries\":[%s],\"primary_metric\":\"foo\"}", p1), 400, NULL},
        {"unknown top-level field", "photos", J, td_fmt("{\"query_model\":\"new-compat\",\"queries\":[%s],\"extra\":1}", p1), 400, NULL},
        {"gallery without items", "empty-g", J, td_fmt("{\"query_model\":\"new-compat\",\"queries\":[%s]}", p1), 422, NULL},
        {"gallery without labelled items", "nolabel-g", J, td_fmt("{\"query_model\":\"new-compat\",\"queries\":[%s]}", p1), 422, NULL},
        {"text/plain", "photos", "text/plain", td_fmt("{\"query_model\":\"new-compat\",\"queries\":[%s]}", p1), 415, NULL},
        {"invalid JSON", "photos", J, td_fmt("{\"query_model\":\"new-compat\",\"queries\":[%s", p1), 400, NULL},
        {"a JSON array", "photos", J, td_fmt("[{\"query_model\":\"new-compat\"}]"), 400, NULL},
    };
    static const char *const watched[] = {"photos", "empty-g", "nolabel-g"};
    long before[3];
    for (size_t i = 0; i < 3; i++)
        before[i] = eval_count(h, watched[i]);
    CHECK(before[0] > 0);
    CHECK_EQ(before[1], 0);
    CHECK_EQ(before[2], 0);

    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        const bad_case *bc = &cases[c];
        char *path = td_fmt("/v1/galleries/%s/evaluations", bc->gallery);
        td_request req = {
            .method = "POST", .path = path, .content_type = bc->content_type,
            .body = bc->body, .len = strlen(bc->body),
        };
        td_reply r;
        int failures = check_failures;
        td_http_send(h, &req, &r);
        CHECK_EQ(r.status, bc->status);
        CHECK_EQ(td_json_num(r.json, "error.status"), bc->status);
        const char *msg = td_reply_error_message(&r);
        CHECK(msg != NULL && msg[0] != '\0');
        CHECK(td_reply_error_code(&r) != NULL);
        if (bc->code)
            CHECK_STREQ(td_reply_error_code(&r), bc->code);
        for (size_t i = 0; i < 3; i++)
            CHECK_EQ(eval_count(h, watched[i]), before[i]);
        if (check_failures > failures)
            fprintf(stderr, "  in bad case \"%s\": got %ld %.400s\n", bc->name, r.status,
                    r.body);
        td_reply_finish(&r);
        free(path);
        free(bc->body);
    }
    free(p1);
    free(p2);
    free(b1);
    free(b2);
    free(nan_b64);
    free(v.s);
    free(v31.s);
    free(v16.s);
}

/* ---- a big evaluation body ------------------------------------------ */

#define BIG_DIM 256
#define BIG_ITEMS 500
#define BIG_LABELS 50
#define BIG_PROBES 50000

static void test_big_body(td_http *h, td_rng *rng)
{
    create_model(h, "big-g", BIG_DIM, "ip", NULL);
    create_model(h, "big-q", BIG_DIM, "ip", "big-g");
    create_gallery(h, "big", "big-g");
    float *centres = malloc(BIG_LABELS * BIG_DIM * sizeof *centres);
    float *x = malloc(BIG_ITEMS * BIG_DIM * sizeof *x);
    float *v = malloc(BIG_DIM * sizeof *v);
    REQUIRE(centres && x && v);
    for (size_t i = 0; i < BIG_LABELS * BIG_DIM; i++)
        centres[i] = (float)td_rng_gauss(rng);
    char *ids[BIG_ITEMS], *labels[BIG_ITEMS];
    for (size_t i = 0; i < BIG_ITEMS; i++) {
        ids[i] = td_fmt("b%zu", i);
        labels[i] = td_fmt("%zu", i % BIG_LABELS);
        for (size_t d = 0; d < BIG_DIM; d++)
            x[i * BIG_DIM + d] = centres[(i % BIG_LABELS) * BIG_DIM + d] +
                                 (float)td_rng_gauss(rng);
    }
    upsert(h, "big", NULL, BIG_ITEMS, ids, labels, x, BIG_DIM);

    double t0 = td_now();
    text t = {0};
    td_text_append(&t, "{\"query_model\":\"big-q\",\"ks\":[1,10],\"queries\":[");
    for (int pass = 0; pass < 2; pass++) {
        if (pass)
            td_text_append(&t, "],\"baseline\":[");
        for (size_t p = 0; p < BIG_PROBES; p++) {
            size_t l = p % BIG_LABELS;
            double sigma = pass ? 5.0 : 2.0;
            for (size_t d = 0; d < BIG_DIM; d++)
                v[d] = centres[l * BIG_DIM + d] + (float)(sigma * td_rng_gauss(rng));
            char *b = td_b64_floats(v, BIG_DIM);
            REQUIRE(b != NULL);
            if (pass)
                td_text_append(&t, "%s{\"id\":\"q%zu\",\"vector_b64\":\"%s\"}", p ? "," : "", p, b);
            else
                td_text_append(&t, "%s{\"id\":\"q%zu\",\"label\":%zu,\"vector_b64\":\"%s\"}",
                       p ? "," : "", p, l, b);
            free(b);
        }
    }
    td_text_append(&t, "]}");
    double t1 = td_now();
    td_reply r;
    CHECK_EQ(td_http_call(h, &r, 201, "POST", "/v1/galleries/big/evaluations", t.s), 201);
    double t2 = td_now();
    if (r.status == 201) {
        expect_num(r.json, "queries", BIG_PROBES, 0, "big body");
        expect_num(r.json, "skipped", 0, 0, "big body");
        expect_num(r.json, "gallery_items", BIG_ITEMS, 0, "big body");
        CHECK(td_json_num(r.json, "cross.top1") > td_json_num(r.json, "baseline.top1"));
        expect_bool(r.json, "compatible", 1, "big body");
    }
    fprintf(stderr, "big body: %zu bytes (%d probes x %d dims, with baseline), built in %.1f s, "
            "answered %ld in %.1f s (top1 cross %.3f, baseline %.3f)\n", t.len, BIG_PROBES,
            BIG_DIM, t1 - t0, r.status, t2 - t1, td_json_num(r.json, "cross.top1"),
            td_json_num(r.json, "baseline.top1"));
    td_reply_finish(&r);
    free(t.s);
    free_strings(ids, BIG_ITEMS);
    free_strings(labels, BIG_ITEMS);
    free(centres);
    free(x);
    free(v);
}

int main(void)
{
    td_rng rng = {td_seed(7)};
    td_daemon *d;
    td_http *h;
    const char *args[] = {"--log-level", "warn", NULL};
    REQUIRE(td_daemon_start_client(args, &d, &h));
    eval_log log = {0};
    double t0 = td_now();

    test_flips(h, &log);
    for (int m = TD_METRIC_COSINE; m <= TD_METRIC_L2; m++)
        test_reference(h, (td_metric)m, &rng, &log);
    double t1 = td_now();
    upgrade *u = test_upgrade(h, &rng, &log);
    double t2 = td_now();

    cJSON *matrix = get_json(h, "/v1/compatibility");
    matrix_gallery want[] = {
        {"flips", "f-g", {"f-q", NULL}, {NULL}},
        {"ref-cosine", "g-cosine", {"q-cosine", NULL}, {NULL}},
        {"ref-ip", "g-ip", {"q-ip", NULL}, {NULL}},
        {"ref-l2", "g-l2", {"q-l2", NULL}, {NULL}},
        {"photos", "old", {"new-compat", "new-rot", "legacy", "new-chain", NULL}, {"legacy", NULL}},
    };
    /* photos: new-compat passes, new-rot fails; legacy is older than old
     * and new-chain has no verdict, so its share is 1 of 2. */
    check_matrix(matrix, want, sizeof want / sizeof want[0], &log);
    cJSON_Delete(matrix);

    test_bad(h, &rng);
    double t3 = td_now();
    test_storage(d, h, &log, &rng, u);
    double t4 = td_now();
    if (td_long_tests())
        test_big_body(h, &rng);
    fprintf(stderr, "reference %.1f s, upgrade %.1f s, bad input %.1f s, storage %.1f s, "
            "total %.1f s\n", t1 - t0, t2 - t1, t3 - t2, t4 - t3, td_now() - t0);

    for (size_t i = 0; i < log.n; i++)
        cJSON_Delete(log.report[i]);
    upgrade_destroy(u);
    td_http_destroy(h);
    CHECK_EQ(td_daemon_stop(d), 0);
    td_daemon_destroy(d);
    return check_exit();
}
