/*
 * test_http_metrics.c - GET /metrics read as Prometheus would read it.
 *
 * The exposition is parsed by a strict reader of the text format written
 * here (HELP/TYPE lines, samples with escaped label values, histograms),
 * and every number is checked against what the test itself did: the
 * requests it sent by route and status, the items and embeddings it
 * stored, the evaluations it ran, a rebuild after kill -9 and the
 * snapshot the daemon takes on its timer.  Methods a client makes up
 * count as "other" and cannot grow /metrics (test_odd_methods).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "daemon.h"

/* --- a reader of the Prometheus text format --------------------------- */

#define MAX_LABELS 4

typedef struct sample {
    char name[112];
    int n_labels;
    char key[MAX_LABELS][32];
    char value[MAX_LABELS][96];
    double v;
} sample;

typedef struct family {
    char name[96];
    char type[16];      /* counter, gauge, histogram, ... */
    bool help;          /* a HELP line was seen */
    bool sampled;       /* a sample was seen (TYPE must come before) */
} family;

typedef struct exposition {
    sample *samples;
    size_t n;
    family families[64];
    size_t n_families;
} exposition;

static family *family_find(exposition *x, const char *name)
{
    for (size_t i = 0; i < x->n_families; i++)
        if (strcmp(x->families[i].name, name) == 0)
            return &x->families[i];
    return NULL;
}

/* The family a sample name belongs to: histograms add suffixes. */
static family *family_of(exposition *x, const char *name)
{
    family *f = family_find(x, name);
    if (f)
        return f;
    static const char *const suffixes[] = {"_bucket", "_sum", "_count"};
    for (size_t i = 0; i < 3; i++) {
        size_t n = strlen(name), s = strlen(suffixes[i]);
        if (n > s && strcmp(name + n - s, suffixes[i]) == 0) {
            char base[96];
            snprintf(base, sizeof base, "%.*s", (int)(n - s), name);
            f = family_find(x, base);
            if (f && (strcmp(f->type, "histogram") == 0 || strcmp(f->type, "summary") == 0))
                return f;
        }
    }
    return NULL;
}

static bool is_name_char(char c, bool first)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == ':' ||
           (!first && c >= '0' && c <= '9');
}

/* Reads a metric or label name at *p into out (size cap). */
static bool read_name(const char **p, char *out, size_t cap)
{
    size_t n = 0;
    while (is_name_char(**p, n == 0)) {
        if (n + 1 >= cap)
            return false;
        out[n++] = *(*p)++;
    }
    out[n] = '\0';
    return n > 0;
}

/* Parses one sample line; false when it breaks the format. */
static bool parse_sample(const char *line, sample *s)
{
    const char *p = line;
    memset(s, 0, sizeof *s);
    if (!read_name(&p, s->name, sizeof s->name))
        return false;
    if (*p == '{') {
        p++;
        while (*p != '}') {
            if (s->n_labels == MAX_LABELS)
                return false;
            int i = s->n_labels++;
            if (!read_name(&p, s->key[i], sizeof s->key[i]) || *p++ != '=' || *p++ != '"')
                return false;
            size_t n = 0;
            while (*p != '"') {
                char c = *p++;
                if (c == '\0' || c == '\n')
                    return false;
                if (c == '\\') {
                    c = *p++;
                    if (c == 'n')
                        c = '\n';
                    else if (c != '\\' && c != '"')
                        return false;
                }
                if (n + 1 >= sizeof s->value[i])
                    return false;
                s->value[i][n++] = c;
            }
            s->value[i][n] = '\0';
            p++;
            if (*p == ',')
                p++;
            else if (*p != '}')
                return false;
        }
        p++;
    }
    if (*p++ != ' ')
        return false;
    char *end;
    if (strcmp(p, "+Inf") == 0)
        s->v = INFINITY;
    else if (strcmp(p, "NaN") == 0)
        s->v = NAN;
    else {
        s->v = strtod(p, &end);
        if (end == p || (*end != '\0' && *end != ' ')) /* an optional timestamp follows */
            return false;
    }
    return true;
}

static const char *label_of(const sample *s, const char *key)
{
    for (int i = 0; i < s->n_labels; i++)
        if (strcmp(s->key[i], key) == 0)
            return s->value[i];
    return NULL;
}

/* The same series (name and labels, in order, le aside when skip_le). */
static bool same_series(const sample *a, const sample *b, bool skip_le)
{
    if (strcmp(a->name, b->name) != 0)
        return false;
    int i = 0, j = 0;
    for (;;) {
        while (skip_le && i < a->n_labels && strcmp(a->key[i], "le") == 0)
            i++;
        while (skip_le && j < b->n_labels && strcmp(b->key[j], "le") == 0)
            j++;
        if (i == a->n_labels || j == b->n_labels)
            return i == a->n_labels && j == b->n_labels;
        if (strcmp(a->key[i], b->key[j]) != 0 || strcmp(a->value[i], b->value[j]) != 0)
            return false;
        i++, j++;
    }
}

/*
 * Parses text, checking the format as it goes: every line is a comment,
 * HELP, TYPE or sample; a family's TYPE comes once and before its samples;
 * no series appears twice.  Returns the number of format errors.
 */
static int parse_exposition(const char *text, exposition *x)
{
    int errors = 0, lineno = 0;
    memset(x, 0, sizeof *x);
    const char *p = text;
    while (*p) {
        const char *nl = strchr(p, '\n');
        if (!nl) {
            fprintf(stderr, "metrics: the last line has no newline\n");
            errors++;
            break;
        }
        char line[512];
        size_t len = (size_t)(nl - p);
        lineno++;
        if (len >= sizeof line) {
            fprintf(stderr, "metrics:%d: line too long\n", lineno);
            errors++;
            p = nl + 1;
            continue;
        }
        memcpy(line, p, len);
        line[len] = '\0';
        p = nl + 1;
        if (line[0] == '#') {
            char kind[8], name[96], rest[256] = "";
            if (sscanf(line, "# %7s %95s %255[^\n]", kind, name, rest) < 2)
                continue; /* a plain comment */
            if (strcmp(kind, "TYPE") != 0 && strcmp(kind, "HELP") != 0)
                continue; /* a plain comment */
            family *f = family_find(x, name);
            if (!f && x->n_families < 64) {
                f = &x->families[x->n_families++];
                snprintf(f->name, sizeof f->name, "%s", name);
            }
            if (!f) {
                fprintf(stderr, "metrics:%d: too many families\n", lineno);
                errors++;
            } else if (strcmp(kind, "HELP") == 0) {
                if (f->help) {
                    fprintf(stderr, "metrics:%d: HELP repeated: %s\n", lineno, line);
                    errors++;
                }
                f->help = true;
            } else {
                static const char *const types[] = {"counter", "gauge", "histogram",
                                                    "summary", "untyped"};
                bool known = false;
                for (size_t i = 0; i < 5; i++)
                    known = known || strcmp(rest, types[i]) == 0;
                if (!known || f->type[0] || f->sampled) {
                    fprintf(stderr, "metrics:%d: bad, repeated or late TYPE: %s\n", lineno, line);
                    errors++;
                } else {
                    snprintf(f->type, sizeof f->type, "%s", rest);
                }
            }
            continue;
        }
        if (line[0] == '\0')
            continue;
        sample s;
        if (!parse_sample(line, &s)) {
            fprintf(stderr, "metrics:%d: not a sample line: %s\n", lineno, line);
            errors++;
            continue;
        }
        family *f = family_of(x, s.name);
        if (!f || !f->type[0]) {
            fprintf(stderr, "metrics:%d: sample of a family without TYPE: %s\n", lineno, line);
            errors++;
        } else {
            f->sampled = true;
        }
        for (size_t i = 0; i < x->n; i++) {
            if (same_series(&x->samples[i], &s, false)) {
                fprintf(stderr, "metrics:%d: series repeated: %s\n", lineno, line);
                errors++;
                break;
            }
        }
        sample *grown = realloc(x->samples, (x->n + 1) * sizeof *grown);
        REQUIRE(grown != NULL);
        x->samples = grown;
        x->samples[x->n++] = s;
    }
    return errors;
}

/*
 * Checks every histogram series: buckets in increasing le with counts that
 * never fall, a +Inf bucket equal to _count, and a _sum.  Returns errors.
 */
static int check_histograms(const exposition *x)
{
    int errors = 0;
    for (size_t f = 0; f < x->n_families; f++) {
        if (strcmp(x->families[f].type, "histogram") != 0)
            continue;
        char bucket[112], count[112], sum[112];
        snprintf(bucket, sizeof bucket, "%s_bucket", x->families[f].name);
        snprintf(count, sizeof count, "%s_count", x->families[f].name);
        snprintf(sum, sizeof sum, "%s_sum", x->families[f].name);
        for (size_t i = 0; i < x->n; i++) {
            if (strcmp(x->samples[i].name, count) != 0)
                continue;
            const sample *c = &x->samples[i];
            double last_le = -INFINITY, last_v = 0, inf_v = -1;
            bool has_sum = false;
            for (size_t j = 0; j < x->n; j++) {
                const sample *s = &x->samples[j];
                sample as_bucket = *c, as_sum = *c;
                snprintf(as_bucket.name, sizeof as_bucket.name, "%s", bucket);
                snprintf(as_sum.name, sizeof as_sum.name, "%s", sum);
                if (same_series(s, &as_sum, false))
                    has_sum = true;
                if (!same_series(s, &as_bucket, true))
                    continue;
                const char *le = label_of(s, "le");
                double le_v = le ? (strcmp(le, "+Inf") == 0 ? INFINITY : strtod(le, NULL)) : NAN;
                if (!le || !(le_v > last_le) || s->v < last_v) {
                    fprintf(stderr, "histogram %s: bucket le=%s out of order or falling\n",
                            c->name, le ? le : "(none)");
                    errors++;
                }
                last_le = le_v;
                last_v = s->v;
                if (isinf(le_v))
                    inf_v = s->v;
            }
            if (inf_v != c->v || !has_sum) {
                fprintf(stderr, "histogram %s{route=%s}: +Inf bucket %g, count %g, sum %s\n",
                        c->name, label_of(c, "route"), inf_v, c->v, has_sum ? "yes" : "missing");
                errors++;
            }
        }
    }
    return errors;
}

/*
 * The value of the series name{k1="v1",...} (labels given as "k=v" pairs,
 * NULL-terminated; the sample may have more labels), or -1 when absent.
 */
static double value_of(const exposition *x, const char *name, const char *const *labels)
{
    for (size_t i = 0; i < x->n; i++) {
        const sample *s = &x->samples[i];
        if (strcmp(s->name, name) != 0)
            continue;
        bool match = true;
        for (size_t l = 0; labels && labels[l] && match; l++) {
            const char *eq = strchr(labels[l], '=');
            const char *v = NULL;
            for (int k = 0; k < s->n_labels && !v; k++)
                if (strlen(s->key[k]) == (size_t)(eq - labels[l]) &&
                    strncmp(s->key[k], labels[l], (size_t)(eq - labels[l])) == 0)
                    v = s->value[k];
            match = v && strcmp(v, eq + 1) == 0;
        }
        if (match)
            return s->v;
    }
    return -1;
}

/* The sum over every series of name. */
static double total_of(const exposition *x, const char *name)
{
    double t = 0;
    for (size_t i = 0; i < x->n; i++)
        if (strcmp(x->samples[i].name, name) == 0)
            t += x->samples[i].v;
    return t;
}

/* The sum over the series of name whose label key is value. */
static double total_where(const exposition *x, const char *name, const char *key,
                          const char *value)
{
    double t = 0;
    for (size_t i = 0; i < x->n; i++) {
        const char *v = label_of(&x->samples[i], key);
        if (strcmp(x->samples[i].name, name) == 0 && v && strcmp(v, value) == 0)
            t += x->samples[i].v;
    }
    return t;
}

/* GET /metrics, parsed and checked; the test fails on any format error. */
static size_t scrape(td_http *h, exposition *x)
{
    td_reply r;
    CHECK_EQ(td_http_json(h, "GET", "/metrics", NULL, &r), 200);
    CHECK(r.headers && strstr(r.headers, "Content-Type: text/plain; version=0.0.4"));
    CHECK_EQ(parse_exposition(r.body, x), 0);
    CHECK_EQ(check_histograms(x), 0);
    size_t len = r.len;
    td_reply_finish(&r);
    return len;
}

static void exposition_finish(exposition *x)
{
    free(x->samples);
    memset(x, 0, sizeof *x);
}

/* --- methods a client makes up ---------------------------------------- */

#define N_ODD_METHODS 200

static bool known_method(const char *m)
{
    static const char *const known[] = {"GET", "HEAD", "POST", "PUT", "PATCH",
                                        "DELETE", "OPTIONS", "other"};
    for (size_t i = 0; i < sizeof known / sizeof known[0]; i++)
        if (strcmp(m, known[i]) == 0)
            return true;
    return false;
}

/*
 * Methods of 8 to 23 random capitals, on a route and off any, and one
 * with a double quote and one with a backslash: all count as "other", the
 * exposition stays well-formed, and /metrics grows by a few lines, not a
 * series per method.
 */
static void test_odd_methods(td_http *h)
{
    exposition a, b;
    size_t before = scrape(h, &a);
    double other_before = total_where(&a, "compatd_http_requests_total", "method", "other");
    td_rng rng = {td_seed(11)};
    int answered = 0;
    for (int i = 0; i < N_ODD_METHODS + 2; i++) {
        char method[32];
        if (i == N_ODD_METHODS)
            snprintf(method, sizeof method, "A\"B");
        else if (i == N_ODD_METHODS + 1)
            snprintf(method, sizeof method, "C\\D");
        else {
            size_t n = 8 + td_rng_next(&rng) % 16;
            for (size_t k = 0; k < n; k++)
                method[k] = (char)('A' + td_rng_next(&rng) % 26);
            method[n] = '\0';
        }
        td_request req = {.method = method, .path = i % 2 ? "/v1/models" : "/nope"};
        td_reply r;
        answered += td_http_send(h, &req, &r) >= 400;
        td_reply_finish(&r);
    }
    CHECK_EQ(answered, N_ODD_METHODS + 2);
    size_t after = scrape(h, &b);
    /* The scrape of a counts under GET in b: other moved by exactly these. */
    CHECK_EQ(total_where(&b, "compatd_http_requests_total", "method", "other") - other_before,
             answered);
    size_t unknown = 0;
    for (size_t i = 0; i < b.n; i++) {
        const char *m = label_of(&b.samples[i], "method");
        if (m && !known_method(m) && !unknown++)
            fprintf(stderr, "a series with method \"%s\"\n", m);
    }
    CHECK_EQ(unknown, 0);
    fprintf(stderr, "/metrics: %zu bytes before %d odd methods, %zu after\n", before,
            answered, after);
    /* At most two routes' new "other" series and histograms. */
    CHECK(after < before + 6 * 1024);
    exposition_finish(&a);
    exposition_finish(&b);
}

/* --- the scenario ----------------------------------------------------- */

#define DIM 4
#define N_ITEMS 30      /* labels l0..l5, five items each */
#define N_BACKFILLED 12 /* items with a new-model embedding too */

static const char *const families[] = {
    "compatd_http_requests_total", "compatd_http_request_duration_seconds",
    "compatd_gallery_items", "compatd_gallery_embeddings", "compatd_index_rebuilds_total",
    "compatd_evaluations_total", "compatd_evaluations_failed_total",
    "compatd_snapshots_total", "compatd_snapshot_age_seconds", "compatd_ready",
};

static int sent;    /* requests the scenario sent */

/* Sends one request of the scenario, expecting status; counts it. */
static void step(td_http *h, const char *method, const char *path, const char *body,
                 long status)
{
    td_reply r;
    CHECK_EQ(td_http_json(h, method, path, body, &r), status);
    if (r.status != status)
        fprintf(stderr, "%s %s: %ld %s\n", method, path, r.status, r.body);
    td_reply_finish(&r);
    sent++;
}

/* Items i0..i(n-1) of model `model`, label l(i%6), vectors made from i. */
static char *items_body(const char *model, int n)
{
    td_text t = {0};
    td_text_append(&t, "{\"model\":\"%s\",\"items\":[", model);
    for (int i = 0; i < n; i++)
        td_text_append(&t, "%s{\"id\":\"i%d\",\"label\":\"l%d\",\"vector\":[%d,%d,%d,1]}",
                       i ? "," : "", i, i % 6, i % 6, (i * 7) % 5, i % 3);
    td_text_append(&t, "]}");
    return t.s;
}

/* The requests of the scenario but the items and the evaluation. */
static const struct {
    const char *method, *path, *body;
    long status;
} setup_steps[] = {
    {"POST", "/v1/models", "{\"name\":\"m-old\",\"dim\":4,\"metric\":\"l2\"}", 201},
    {"POST", "/v1/models",
     "{\"name\":\"m-new\",\"dim\":4,\"metric\":\"l2\",\"compatible_with\":\"m-old\"}", 201},
    {"POST", "/v1/galleries", "{\"name\":\"g\",\"model\":\"m-old\",\"index\":\"IVF1,Flat\"}", 201},
}, search_steps[] = {
    {"POST", "/v1/galleries/g/search", "{\"vector\":[1,2,0]}", 400},
    {"POST", "/v1/galleries/g/search", "{\"vector\":[1,2,0,", 400},
    {"POST", "/v1/galleries/nope/search", "{\"vector\":[1,2,0,1]}", 404},
    {"POST", "/v1/galleries/g/search", "{\"vector\":[1,2,0,1],\"k\":3}", 200},
    {"POST", "/v1/galleries/g/search", "{\"vector\":[0,0,0,1],\"k\":1}", 200},
};
#define N_SEARCH_ROUNDS 3   /* search_steps sent this many times */

static char *eval_body(void)
{
    td_text t = {0};
    td_text_append(&t, "{\"query_model\":\"m-new\",\"queries\":[");
    for (int i = 0; i < 6; i++)
        td_text_append(&t, "%s{\"id\":\"q%d\",\"label\":\"l%d\",\"vector\":[%d,1,0,1]}",
                       i ? "," : "", i, i, i);
    td_text_append(&t, "],\"baseline\":[");
    for (int i = 0; i < 6; i++)
        td_text_append(&t, "%s{\"id\":\"q%d\",\"label\":\"l%d\",\"vector\":[%d,0,1,1]}",
                       i ? "," : "", i, i, i);
    td_text_append(&t, "]}");
    return t.s;
}

int main(void)
{
    td_daemon *d = td_daemon_create();
    REQUIRE(d != NULL);
    const char *args[] = {"--snapshot-interval", "1", "--max-body", "64K", NULL};
    REQUIRE(td_daemon_start(d, args));
    td_http *h = td_http_create(d);
    REQUIRE(h != NULL);

    /* Every family is there from the start, but the snapshot age, which
     * needs a snapshot first. */
    exposition a, b;
    scrape(h, &a);
    for (size_t i = 0; i < sizeof families / sizeof families[0]; i++) {
        if (strcmp(families[i], "compatd_snapshot_age_seconds") == 0)
            continue;
        family *f = family_find(&a, families[i]);
        CHECK(f != NULL);
        if (!f)
            fprintf(stderr, "family %s missing\n", families[i]);
        else
            CHECK(f->help);
    }
    CHECK_EQ(value_of(&a, "compatd_ready", NULL), 1);
    double before_total = total_of(&a, "compatd_http_requests_total");

    for (size_t i = 0; i < sizeof setup_steps / sizeof setup_steps[0]; i++)
        step(h, setup_steps[i].method, setup_steps[i].path, setup_steps[i].body,
             setup_steps[i].status);
    char *old_items = items_body("m-old", N_ITEMS), *new_items = items_body("m-new", N_BACKFILLED);
    step(h, "POST", "/v1/galleries/g/items", old_items, 200);
    step(h, "POST", "/v1/galleries/g/items", new_items, 200);
    free(old_items);
    free(new_items);
    for (int round = 0; round < N_SEARCH_ROUNDS; round++)
        for (size_t i = 0; i < sizeof search_steps / sizeof search_steps[0]; i++)
            step(h, search_steps[i].method, search_steps[i].path, search_steps[i].body,
                 search_steps[i].status);
    /* Replies made before the route's handler runs count under the route. */
    char *big = calloc(1, 70 * 1024);
    REQUIRE(big != NULL);
    memset(big, ' ', 70 * 1024 - 1);
    step(h, "POST", "/v1/galleries/g/items", big, 413);
    free(big);
    step(h, "GET", "/v1/models", "{}", 400);
    char *eval = eval_body();
    td_reply r;
    CHECK_EQ(td_http_json(h, "POST", "/v1/galleries/g/evaluations", eval, &r), 201);
    sent++;
    const cJSON *compatible = td_json_at(r.json, "compatible");
    CHECK(compatible != NULL && cJSON_IsBool(compatible));
    bool failed = compatible && cJSON_IsFalse(compatible);
    td_reply_finish(&r);
    free(eval);

    scrape(h, &b);
    /* Every request sent since the first scrape, and that scrape itself
     * (counted once its reply was made), and nothing else. */
    CHECK_EQ(total_of(&b, "compatd_http_requests_total") - before_total, sent + 1);
    const char *search_ok[] = {"method=POST", "route=/v1/galleries/{g}/search", "status=200", NULL};
    const char *search_400[] = {"method=POST", "route=/v1/galleries/{g}/search", "status=400", NULL};
    const char *search_404[] = {"method=POST", "route=/v1/galleries/{g}/search", "status=404", NULL};
    const char *models_201[] = {"method=POST", "route=/v1/models", "status=201", NULL};
    CHECK_EQ(value_of(&b, "compatd_http_requests_total", search_ok), 2 * N_SEARCH_ROUNDS);
    CHECK_EQ(value_of(&b, "compatd_http_requests_total", search_400), 2 * N_SEARCH_ROUNDS);
    CHECK_EQ(value_of(&b, "compatd_http_requests_total", search_404), N_SEARCH_ROUNDS);
    CHECK_EQ(value_of(&b, "compatd_http_requests_total", models_201), 2);
    const char *items_413[] = {"method=POST", "route=/v1/galleries/{g}/items", "status=413", NULL};
    const char *models_400[] = {"method=GET", "route=/v1/models", "status=400", NULL};
    CHECK_EQ(value_of(&b, "compatd_http_requests_total", items_413), 1);
    CHECK_EQ(value_of(&b, "compatd_http_requests_total", models_400), 1);
    const char *search_all[] = {"method=POST", "route=/v1/galleries/{g}/search", NULL};
    CHECK_EQ(value_of(&b, "compatd_http_request_duration_seconds_count", search_all),
             5 * N_SEARCH_ROUNDS);
    CHECK(value_of(&b, "compatd_http_request_duration_seconds_sum", search_all) > 0);
    const char *search_inf[] = {"method=POST", "route=/v1/galleries/{g}/search", "le=+Inf", NULL};
    CHECK_EQ(value_of(&b, "compatd_http_request_duration_seconds_bucket", search_inf),
             5 * N_SEARCH_ROUNDS);

    const char *g[] = {"gallery=g", NULL};
    const char *g_old[] = {"gallery=g", "model=m-old", NULL};
    const char *g_new[] = {"gallery=g", "model=m-new", NULL};
    CHECK_EQ(value_of(&b, "compatd_gallery_items", g), N_ITEMS);
    CHECK_EQ(value_of(&b, "compatd_gallery_embeddings", g_old), N_ITEMS);
    CHECK_EQ(value_of(&b, "compatd_gallery_embeddings", g_new), N_BACKFILLED);
    CHECK_EQ(value_of(&b, "compatd_evaluations_total", NULL) -
                 value_of(&a, "compatd_evaluations_total", NULL), 1);
    CHECK_EQ(value_of(&b, "compatd_evaluations_failed_total", NULL) -
                 value_of(&a, "compatd_evaluations_failed_total", NULL), failed ? 1 : 0);
    exposition_finish(&a);
    exposition_finish(&b);

    /* The snapshot timer (1 s) writes the changed index: the age appears
     * and stays small. */
    exposition c = {0};
    bool snapshot_seen = false;
    for (int tries = 0; tries < 100 && !snapshot_seen; tries++) {
        exposition_finish(&c);
        scrape(h, &c);
        snapshot_seen = value_of(&c, "compatd_snapshots_total", NULL) >= 1 &&
                        value_of(&c, "compatd_snapshot_age_seconds", NULL) >= 0;
        if (!snapshot_seen)
            usleep(100 * 1000);
    }
    CHECK(snapshot_seen);
    double age = value_of(&c, "compatd_snapshot_age_seconds", NULL);
    CHECK(age >= 0 && age < 60);
    exposition_finish(&c);

    /* After kill -9 with the snapshots gone, the indexes are rebuilt from
     * SQLite and each rebuild is counted; items and embeddings read the
     * same. */
    CHECK_EQ(td_daemon_kill(d), 0);
    char *snapdir = td_fmt("rm -rf '%s/index'", td_daemon_data_dir(d));
    CHECK_EQ(system(snapdir), 0);
    free(snapdir);
    REQUIRE(td_daemon_start(d, NULL));
    scrape(h, &c);
    /* One index per (gallery, model) with embeddings: m-old and m-new. */
    CHECK_EQ(value_of(&c, "compatd_index_rebuilds_total", NULL), 2);
    CHECK_EQ(value_of(&c, "compatd_gallery_items", g), N_ITEMS);
    CHECK_EQ(value_of(&c, "compatd_gallery_embeddings", g_new), N_BACKFILLED);
    CHECK_EQ(value_of(&c, "compatd_evaluations_total", NULL), 0); /* since start */
    /* Counters start again at this run's own requests: the scrape itself
     * is the only request counted before its own reply. */
    CHECK(total_of(&c, "compatd_http_requests_total") <= 3);
    exposition_finish(&c);

    test_odd_methods(h);
    td_http_destroy(h);
    CHECK_EQ(td_daemon_stop(d), 0);
    td_daemon_destroy(d);
    return check_exit();
}
