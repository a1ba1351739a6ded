/*
 * metrics.c - the counters behind /metrics.  Series are few (routes x
 * methods x statuses), so they live in one array under one mutex; a
 * request pays one lock and a short scan.
 *
 * Nothing a client sends can add series: methods outside a fixed list
 * count as "other", routes are the router's patterns, and the arrays stop
 * growing at MAX_SERIES whatever comes.  Every label value is escaped as
 * the text format wants (backslash, double quote, newline).
 */
#include "metrics.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const double buckets[] = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
                                 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10};
#define N_BUCKETS (sizeof buckets / sizeof buckets[0])

/* The method label: one of these, the last for every other method. */
static const char *const methods[] = {"GET", "HEAD", "POST", "PUT", "PATCH",
                                      "DELETE", "OPTIONS", "other"};
#define N_METHODS (sizeof methods / sizeof methods[0])

/* A bound well above routes x methods x the statuses the server answers,
 * there only so that no mistake elsewhere can grow /metrics without end. */
#define MAX_SERIES 4096

typedef struct series {
    size_t method;              /* index in methods */
    char route[64];
    int status;
    unsigned long long count;
} series;

/* Adapters with a series of their own; the rest count as "(other)", a
 * value no adapter name can take. */
#define MAX_ADAPTER_SERIES 256

typedef struct adapter_count {
    char name[64 + 1];          /* an adapter name (<= 64 bytes) */
    unsigned long long count;
} adapter_count;

typedef struct histogram {
    size_t method;              /* index in methods */
    char route[64];
    unsigned long long counts[N_BUCKETS + 1];   /* last: +Inf */
    unsigned long long total;
    double sum;
} histogram;

struct cd_metrics {
    pthread_mutex_t mu;
    series *series;
    size_t n_series, cap_series;
    histogram *hists;
    size_t n_hists, cap_hists;
    adapter_count adapters[MAX_ADAPTER_SERIES];
    size_t n_adapters;
    unsigned long long adapter_other;   /* searches of adapters past them */
};

static size_t method_index(const char *method)
{
    for (size_t i = 0; i + 1 < N_METHODS; i++)
        if (strcmp(method, methods[i]) == 0)
            return i;
    return N_METHODS - 1;
}

cd_metrics *cd_metrics_create(void)
{
    cd_metrics *m = calloc(1, sizeof *m);
    if (m)
        pthread_mutex_init(&m->mu, NULL);
    return m;
}

void cd_metrics_destroy(cd_metrics *m)
{
    if (!m)
        return;
    pthread_mutex_destroy(&m->mu);
    free(m->series);
    free(m->hists);
    free(m);
}

/* p with room for n + 1 elements of size (doubling *cap), p itself when
 * there is room, or NULL when out of memory or at MAX_SERIES. */
static void *grow(void *p, size_t *cap, size_t n, size_t size)
{
    if (n < *cap)
        return p;
    if (n >= MAX_SERIES)
        return NULL;
    size_t ncap = *cap ? *cap * 2 : 32;
    void *q = realloc(p, ncap * size);
    if (q)
        *cap = ncap;
    return q;
}

void cd_metrics_observe(cd_metrics *m, const char *method, const char *route,
                        int status, double seconds)
{
    size_t mi = method_index(method);
    pthread_mutex_lock(&m->mu);
    size_t i;
    for (i = 0; i < m->n_series; i++)
        if (m->series[i].status == status && m->series[i].method == mi &&
            strcmp(m->series[i].route, route) == 0)
            break;
    if (i == m->n_series) {
        series *s = grow(m->series, &m->cap_series, m->n_series, sizeof *s);
        if (s) {
            m->series = s;
            memset(&s[i], 0, sizeof s[i]);
            s[i].method = mi;
            snprintf(s[i].route, sizeof s[i].route, "%s", route);
            s[i].status = status;
            m->n_series++;
        }
    }
    if (i < m->n_series)
        m->series[i].count++;

    for (i = 0; i < m->n_hists; i++)
        if (m->hists[i].method == mi && strcmp(m->hists[i].route, route) == 0)
            break;
    if (i == m->n_hists) {
        histogram *h = grow(m->hists, &m->cap_hists, m->n_hists, sizeof *h);
        if (h) {
            m->hists = h;
            memset(&h[i], 0, sizeof h[i]);
            h[i].method = mi;
            snprintf(h[i].route, sizeof h[i].route, "%s", route);
            m->n_hists++;
        }
    }
    if (i < m->n_hists) {
        histogram *h = &m->hists[i];
        size_t b = 0;
        while (b < N_BUCKETS && seconds > buckets[b])
            b++;
        h->counts[b]++;
        h->total++;
        h->sum += seconds;
    }
    pthread_mutex_unlock(&m->mu);
}

void cd_metrics_adapter_search(cd_metrics *m, const char *adapter)
{
    pthread_mutex_lock(&m->mu);
    size_t i = 0;
    while (i < m->n_adapters && strcmp(m->adapters[i].name, adapter) != 0)
        i++;
    if (i == m->n_adapters && i < MAX_ADAPTER_SERIES) {
        snprintf(m->adapters[i].name, sizeof m->adapters[i].name, "%s", adapter);
        m->n_adapters++;
    }
    if (i < m->n_adapters)
        m->adapters[i].count++;
    else
        m->adapter_other++;
    pthread_mutex_unlock(&m->mu);
}

/* A growing text buffer. */
typedef struct text {
    char *s;
    size_t len, cap;
    int failed;
} text;

static void put(text *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void put(text *t, const char *fmt, ...)
{
    if (t->failed)
        return;
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(t->s ? t->s + t->len : NULL, t->s ? t->cap - t->len : 0, fmt, ap);
        va_end(ap);
        if (n < 0) {
            t->failed = 1;
            return;
        }
        if (t->s && t->len + (size_t)n < t->cap) {
            t->len += (size_t)n;
            return;
        }
        size_t ncap = (t->cap ? t->cap * 2 : 4096) + (size_t)n;
        char *s = realloc(t->s, ncap);
        if (!s) {
            t->failed = 1;
            return;
        }
        t->s = s;
        t->cap = ncap;
    }
}

/* A label value escaped for the text format. */
typedef struct label {
    char s[2 * 64 + 1];     /* room for any name or route (<= 64 bytes) escaped */
} label;

/* v escaped into l (backslash, double quote and newline get a backslash);
 * a value too long for l is cut before the escape that would not fit. */
static const char *esc(label *l, const char *v)
{
    size_t n = 0;
    for (; *v; v++) {
        const char *e = *v == '\\' ? "\\\\" : *v == '"' ? "\\\"" : *v == '\n' ? "\\n" : NULL;
        size_t k = e ? 2 : 1;
        if (n + k >= sizeof l->s)
            break;
        if (e)
            memcpy(l->s + n, e, 2);
        else
            l->s[n] = *v;
        n += k;
    }
    l->s[n] = '\0';
    return l->s;
}

/*
 * The live agreement of SPEC 3.8 per gallery, query model and adapter:
 * keys exist only for galleries and models of the catalog (and go with
 * their gallery), so the series stay as few as the per-gallery ones.
 */
static void put_live(text *t, cd_engine *e)
{
    static const struct {
        const char *name, *type, *help;
    } families[] = {
        {"compatd_live_queries_total", "counter",
         "Searches with a shadow query (the same query embedded by the gallery model) since start."},
        {"compatd_live_overlap_at_k", "gauge",
         "Mean overlap of a query's top-k with its shadow's top-k, over the last 10000 shadowed queries."},
        {"compatd_live_top1_retained", "gauge",
         "Share of the last 10000 shadowed queries whose shadow top-1 is in the query's top-k."},
    };
    cd_live_stats *ls = NULL;
    size_t n = cd_engine_live_list(e, NULL, &ls);
    for (size_t f = 0; f < sizeof families / sizeof families[0]; f++) {
        put(t, "# HELP %s %s\n# TYPE %s %s\n", families[f].name, families[f].help,
            families[f].name, families[f].type);
        for (size_t i = 0; i < n; i++) {
            label l1, l2, l3;
            double v = f == 0 ? (double)ls[i].queries
                     : f == 1 ? ls[i].overlap_at_k : ls[i].top1_retained;
            put(t, "%s{gallery=\"%s\",model=\"%s\",adapter=\"%s\"} %.17g\n", families[f].name,
                esc(&l1, ls[i].gallery), esc(&l2, ls[i].model), esc(&l3, ls[i].adapter), v);
        }
    }
    free(ls);
}

char *cd_metrics_render(cd_metrics *m, cd_engine *e, size_t *len)
{
    label l1, l2;
    text t = {0};
    pthread_mutex_lock(&m->mu);
    put(&t, "# HELP compatd_http_requests_total HTTP requests by method, route and status.\n"
            "# TYPE compatd_http_requests_total counter\n");
    for (size_t i = 0; i < m->n_series; i++)
        put(&t, "compatd_http_requests_total{method=\"%s\",route=\"%s\",status=\"%d\"} %llu\n",
            esc(&l1, methods[m->series[i].method]), esc(&l2, m->series[i].route),
            m->series[i].status, m->series[i].count);
    put(&t, "# HELP compatd_http_request_duration_seconds HTTP request latency by method and route.\n"
            "# TYPE compatd_http_request_duration_seconds histogram\n");
    for (size_t i = 0; i < m->n_hists; i++) {
        const histogram *h = &m->hists[i];
        const char *method = esc(&l1, methods[h->method]), *route = esc(&l2, h->route);
        unsigned long long cum = 0;
        for (size_t b = 0; b < N_BUCKETS; b++) {
            cum += h->counts[b];
            put(&t, "compatd_http_request_duration_seconds_bucket{method=\"%s\",route=\"%s\",le=\"%g\"} %llu\n",
                method, route, buckets[b], cum);
        }
        put(&t, "compatd_http_request_duration_seconds_bucket{method=\"%s\",route=\"%s\",le=\"+Inf\"} %llu\n",
            method, route, h->total);
        put(&t, "compatd_http_request_duration_seconds_sum{method=\"%s\",route=\"%s\"} %.9f\n",
            method, route, h->sum);
        put(&t, "compatd_http_request_duration_seconds_count{method=\"%s\",route=\"%s\"} %llu\n",
            method, route, h->total);
    }
    put(&t, "# HELP compatd_adapter_searches_total Searches answered through an adapter, by adapter.\n"
            "# TYPE compatd_adapter_searches_total counter\n");
    for (size_t i = 0; i < m->n_adapters; i++)
        put(&t, "compatd_adapter_searches_total{adapter=\"%s\"} %llu\n",
            esc(&l1, m->adapters[i].name), m->adapters[i].count);
    if (m->adapter_other)
        put(&t, "compatd_adapter_searches_total{adapter=\"(other)\"} %llu\n", m->adapter_other);
    pthread_mutex_unlock(&m->mu);

    if (e) {
        cd_gallery *gals = NULL;
        size_t n = 0;
        cd_error err;
        put(&t, "# HELP compatd_gallery_items Items per gallery.\n# TYPE compatd_gallery_items gauge\n");
        /* The galleries come from the store: not while its start's check
         * runs (the route is served then, route.c). */
        if (cd_engine_checked(e) && cd_engine_gallery_list(e, &gals, &n, &err) == CD_OK) {
            for (size_t i = 0; i < n; i++)
                put(&t, "compatd_gallery_items{gallery=\"%s\"} %lld\n", esc(&l1, gals[i].name),
                    (long long)gals[i].count);
            put(&t, "# HELP compatd_gallery_embeddings Embeddings per gallery and model.\n"
                    "# TYPE compatd_gallery_embeddings gauge\n");
            for (size_t i = 0; i < n; i++) {
                cd_model_count *counts = NULL;
                size_t nc = 0;
                if (cd_engine_gallery_embeddings(e, gals[i].name, &counts, &nc, &err) != CD_OK)
                    continue;
                for (size_t j = 0; j < nc; j++)
                    put(&t, "compatd_gallery_embeddings{gallery=\"%s\",model=\"%s\"} %lld\n",
                        esc(&l1, gals[i].name), esc(&l2, counts[j].model),
                        (long long)counts[j].items);
                free(counts);
            }
            put(&t, "# HELP compatd_index_recall Recall@10 of the gallery's index against exact "
                    "search on a sample of its vectors.\n# TYPE compatd_index_recall gauge\n");
            for (size_t i = 0; i < n; i++) {
                double recall;
                if (cd_engine_index_recall(e, gals[i].name, &recall, &err) == CD_OK)
                    put(&t, "compatd_index_recall{gallery=\"%s\"} %.6g\n",
                        esc(&l1, gals[i].name), recall);
            }
        }
        free(gals);
        put_live(&t, e);
        cd_engine_stats st;
        cd_engine_get_stats(e, &st);
        put(&t, "# HELP compatd_index_rebuilds_total Index rebuilds from the store since start.\n"
                "# TYPE compatd_index_rebuilds_total counter\ncompatd_index_rebuilds_total %lld\n",
            (long long)st.index_rebuilds);
        put(&t, "# HELP compatd_evaluations_total Evaluations run and stored since start.\n"
                "# TYPE compatd_evaluations_total counter\ncompatd_evaluations_total %lld\n",
            (long long)st.evaluations_run);
        put(&t, "# HELP compatd_evaluations_failed_total Stored evaluations that failed the criterion.\n"
                "# TYPE compatd_evaluations_failed_total counter\ncompatd_evaluations_failed_total %lld\n",
            (long long)st.evaluations_failed);
        put(&t, "# HELP compatd_evaluations_adapted_total Stored evaluations whose probes an adapter mapped.\n"
                "# TYPE compatd_evaluations_adapted_total counter\ncompatd_evaluations_adapted_total %lld\n",
            (long long)st.evaluations_adapted);
        put(&t, "# HELP compatd_snapshots_total Index snapshots written since start.\n"
                "# TYPE compatd_snapshots_total counter\ncompatd_snapshots_total %lld\n",
            (long long)st.snapshots_written);
        if (st.last_snapshot_unix > 0)
            put(&t, "# HELP compatd_snapshot_age_seconds Seconds since the last snapshot pass that succeeded (what a restart reads is current as of it).\n"
                    "# TYPE compatd_snapshot_age_seconds gauge\ncompatd_snapshot_age_seconds %lld\n",
                (long long)(time(NULL) - st.last_snapshot_unix));
        put(&t, "# HELP compatd_ready Whether the indexes are loaded.\n"
                "# TYPE compatd_ready gauge\ncompatd_ready %d\n", cd_engine_ready(e) ? 1 : 0);
    }
    if (t.failed) {
        free(t.s);
        return NULL;
    }
    *len = t.len;
    return t.s;
}
