/*
 * evaluations.c - POST and GET /v1/galleries/{g}/evaluations, GET
 * /v1/evaluations/{id} and GET /v1/compatibility: running an evaluation
 * of a query model against a gallery, storing its report, and the
 * reports and verdicts read back.
 */
#include "handlers.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "eval.h"
#include "text.h"

#define DEFAULT_LIST_LIMIT 50
#define MAX_LIST_LIMIT 1000

/* A number, or null for NaN (JSON has no NaN). */
static void add_real(cJSON *obj, const char *name, double v)
{
    if (isnan(v))
        cJSON_AddNullToObject(obj, name);
    else
        cJSON_AddNumberToObject(obj, name, v);
}

static void add_verdict(cJSON *obj, const char *name, int compatible)
{
    if (compatible < 0)
        cJSON_AddNullToObject(obj, name);
    else
        cJSON_AddBoolToObject(obj, name, compatible);
}

/* "adapter": the name of the adapter that mapped ev's probes, or null. */
static void add_adapter(cJSON *obj, const cd_evaluation *ev)
{
    if (ev->adapter_id != 0)
        cJSON_AddStringToObject(obj, "adapter", ev->adapter);
    else
        cJSON_AddNullToObject(obj, "adapter");
}

static cJSON *metrics_json(const cd_eval_report *r, const cd_eval_metrics *m)
{
    cJSON *o = cJSON_CreateObject();
    char key[CD_EVAL_METRIC_NAME_SIZE];
    for (size_t i = 0; i < r->n_ks; i++)
        add_real(o, cd_eval_metric_name(r->ks[i], key), m->top[i]);
    add_real(o, "map", m->map);
    return o;
}

/*
 * The report document (schema/concepts.md §4) of a stored evaluation;
 * with lists false (a listing), without by_label and negative_flip_ids.
 */
static cJSON *report_json(const cd_evaluation *ev, bool lists)
{
    const cd_eval_report *r = ev->report;
    cJSON *j = cJSON_CreateObject();
    cJSON_AddNumberToObject(j, "id", (double)ev->id);
    cJSON_AddStringToObject(j, "gallery", ev->gallery);
    cJSON_AddStringToObject(j, "gallery_model", ev->gallery_model);
    cJSON_AddStringToObject(j, "query_model", ev->query_model);
    add_adapter(j, ev);
    cJSON_AddStringToObject(j, "gallery_view", ev->mixed ? "mixed" : "gallery_model");
    add_real(j, "coverage", ev->coverage);
    cJSON_AddStringToObject(j, "created_at", ev->created_at);
    /* The filter as stored: JSON this server printed. */
    cJSON *filter = ev->filter ? cJSON_Parse(ev->filter) : NULL;
    if (filter)
        cJSON_AddItemToObject(j, "filter", filter);
    else
        cJSON_AddNullToObject(j, "filter");
    cJSON *ks = cJSON_AddArrayToObject(j, "ks");
    for (size_t i = 0; i < r->n_ks; i++)
        cJSON_AddItemToArray(ks, cJSON_CreateNumber(r->ks[i]));
    char primary[CD_EVAL_METRIC_NAME_SIZE];
    cJSON_AddStringToObject(j, "primary_metric", cd_eval_metric_name(r->primary_k, primary));
    cJSON_AddNumberToObject(j, "queries", (double)r->queries);
    cJSON_AddNumberToObject(j, "skipped", (double)r->skipped);
    cJSON_AddNumberToObject(j, "gallery_items", (double)r->gallery_items);
    cJSON_AddItemToObject(j, "cross", metrics_json(r, &r->cross));
    if (r->has_baseline)
        cJSON_AddItemToObject(j, "baseline", metrics_json(r, &r->baseline));
    else
        cJSON_AddNullToObject(j, "baseline");
    if (r->has_paragon)
        cJSON_AddItemToObject(j, "paragon", metrics_json(r, &r->paragon));
    else
        cJSON_AddNullToObject(j, "paragon");
    add_verdict(j, "compatible", r->compatible);
    cJSON_AddStringToObject(j, "criterion", ev->criterion);
    if (r->has_baseline && r->has_paragon)
        cJSON_AddItemToObject(j, "update_gain", metrics_json(r, &r->update_gain));
    else
        cJSON_AddNullToObject(j, "update_gain");
    if (r->has_baseline) {
        cJSON *f = cJSON_AddObjectToObject(j, "flips");
        cJSON_AddNumberToObject(f, "negative", (double)r->negative_flips);
        cJSON_AddNumberToObject(f, "positive", (double)r->positive_flips);
        add_real(f, "nfr", r->nfr);
        add_real(f, "nfi", r->nfi);
        add_real(f, "pfr", r->pfr);
    } else {
        cJSON_AddNullToObject(j, "flips");
    }
    if (!lists)
        return j;
    cJSON *by = cJSON_AddArrayToObject(j, "by_label");
    for (size_t i = 0; i < r->n_labels; i++) {
        const cd_eval_label *l = &r->labels[i];
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "label", l->label);
        cJSON_AddNumberToObject(o, "queries", (double)l->queries);
        add_real(o, "cross_top1", l->cross_top1);
        add_real(o, "baseline_top1", l->baseline_top1);
        cJSON_AddNumberToObject(o, "negative_flips", (double)l->negative_flips);
        cJSON_AddNumberToObject(o, "positive_flips", (double)l->positive_flips);
        cJSON_AddItemToArray(by, o);
    }
    cJSON *ids = cJSON_AddArrayToObject(j, "negative_flip_ids");
    for (size_t i = 0; i < r->n_negative_flips; i++)
        cJSON_AddItemToArray(ids, cJSON_CreateString(r->negative_flip_ids[i]));
    return j;
}

/* Reads "ks" into ks (sorted, distinct, 1 always among them). */
static bool read_ks(const cJSON *f, int *ks, size_t *n_ks, cd_reply *rep)
{
    static const int dflt[] = {1, 5, 10};
    size_t n = 0;
    ks[n++] = 1;
    if (!f) {
        for (size_t i = 1; i < sizeof dflt / sizeof dflt[0]; i++)
            ks[n++] = dflt[i];
        *n_ks = n;
        return true;
    }
    if (!cJSON_IsArray(f) || cJSON_GetArraySize(f) == 0)
        goto bad;
    const cJSON *x;
    cJSON_ArrayForEach(x, f) {
        long k;
        if (!cd_json_int(x, 1, CD_K_MAX, &k))
            goto bad;
        bool seen = false;
        for (size_t i = 0; i < n && !seen; i++)
            seen = ks[i] == (int)k;
        if (seen)
            continue;
        if (n == CD_EVAL_KS_MAX) {
            cd_reply_error(rep, CD_HTTP_INVALID_K, "ks holds at most %d distinct values",
                           CD_EVAL_KS_MAX - 1);
            return false;
        }
        ks[n++] = (int)k;
    }
    for (size_t i = 1; i < n; i++)     /* insertion sort: n <= 32 */
        for (size_t j = i; j > 0 && ks[j - 1] > ks[j]; j--) {
            int t = ks[j];
            ks[j] = ks[j - 1];
            ks[j - 1] = t;
        }
    *n_ks = n;
    return true;
bad:
    cd_reply_error(rep, CD_HTTP_INVALID_K, "ks must be a non-empty array of integers 1..%d",
                   CD_K_MAX);
    return false;
}

/* "top<k>" with k among ks, or "map" (0). */
static bool read_primary(const char *s, const int *ks, size_t n_ks, int *out,
                         cd_reply *rep)
{
    if (!s || strcmp(s, "map") == 0) {
        *out = s ? 0 : 1;
        return true;
    }
    char *end = NULL;
    long k = strncmp(s, "top", 3) == 0 && s[3] >= '1' && s[3] <= '9' ? strtol(s + 3, &end, 10) : 0;
    for (size_t i = 0; k > 0 && end && *end == '\0' && i < n_ks; i++)
        if (ks[i] == k) {
            *out = (int)k;
            return true;
        }
    cd_reply_error(rep, CD_HTTP_INVALID_ARGUMENT,
                   "primary_metric must be \"map\" or \"top<k>\" with k among ks (got \"%s\")", s);
    return false;
}

/* Probe texts that outlive the JSON tree: labels given as integers. */
typedef struct probe_buf {
    size_t n;
    const char **ids;
    const char **labels;
    float *vectors;
    char **owned;       /* strings to free, n at most */
    size_t n_owned;
} probe_buf;

static void probe_buf_finish(probe_buf *p)
{
    for (size_t i = 0; i < p->n_owned; i++)
        free(p->owned[i]);
    free(p->owned);
    free(p->ids);
    free(p->labels);
    free(p->vectors);
    memset(p, 0, sizeof *p);
}

/* A label given as a string or an integer (request.h); NULL in *out for
 * none. */
static bool read_label(const cJSON *it, const char *where, probe_buf *p,
                       const char **out, cd_reply *rep)
{
    char *owned;
    if (!cd_json_label(it, where, false, &owned, out, rep))
        return false;
    if (owned)
        p->owned[p->n_owned++] = owned;
    return true;
}

/*
 * Reads an array of probes {id, label, vector|vector_b64} of model m.
 * what is "queries" or "baseline"; labels are required for queries.
 */
static bool read_probes(const cJSON *arr, const char *what, const cd_model *m,
                        bool need_label, size_t max_probes, probe_buf *p,
                        cd_reply *rep)
{
    static const char *const fields[] = {"id", "label", "vector", "vector_b64", NULL};
    if (!cJSON_IsArray(arr) || cJSON_GetArraySize(arr) == 0) {
        cd_reply_error(rep, CD_HTTP_INVALID_ARGUMENT, "%s must be a non-empty array", what);
        return false;
    }
    size_t n = (size_t)cJSON_GetArraySize(arr), dim = (size_t)m->dim;
    if (n > max_probes) {
        cd_reply_error(rep, CD_HTTP_BATCH_TOO_LARGE,
                       "%s holds at most %zu probes per evaluation, got %zu", what,
                       max_probes, n);
        return false;
    }
    p->ids = calloc(n, sizeof *p->ids);
    p->labels = calloc(n, sizeof *p->labels);
    p->owned = calloc(n, sizeof *p->owned);
    p->vectors = malloc(n * dim * sizeof *p->vectors);
    if (!p->ids || !p->labels || !p->owned || !p->vectors) {
        cd_reply_error(rep, CD_HTTP_OUT_OF_MEMORY, "out of memory for %zu %s", n, what);
        return false;
    }
    const char *single = strcmp(what, "queries") == 0 ? "query" : what;
    const cJSON *it;
    cJSON_ArrayForEach(it, arr) {
        char where[64];
        size_t i = p->n;
        snprintf(where, sizeof where, "%s %zu: ", single, i);
        if (!cJSON_IsObject(it)) {
            cd_reply_error(rep, CD_HTTP_INVALID_ARGUMENT, "%smust be an object", where);
            return false;
        }
        if (!cd_json_only_fields(it, fields, where, rep))
            return false;
        if (!cd_json_id(it, where, &p->ids[i], rep))
            return false;
        if (!read_label(it, where, p, &p->labels[i], rep))
            return false;
        if (need_label && !p->labels[i]) {
            cd_reply_error(rep, CD_HTTP_INVALID_LABEL, "%slabel is required", where);
            return false;
        }
        if (!cd_json_vector(it, m, p->vectors + i * dim, where, rep))
            return false;
        p->n++;
    }
    return true;
}

static void evaluations_create(cd_api *api, const cd_request *req, const char *gallery,
                               cd_reply *rep)
{
    static const char *const fields[] = {"query_model", "adapter", "gallery_view", "queries",
                                         "baseline", "ks", "primary_metric", "filter", NULL};
    cJSON *j = cd_json_body(req, rep);
    probe_buf probes = {0}, base = {0};
    cd_evaluation ev = {0};
    cd_filter *filter = NULL;
    char *filter_text = NULL;
    if (!j)
        return;
    const char *qname, *primary_s, *adapter, *view;
    int ks[CD_EVAL_KS_MAX], primary;
    size_t n_ks;
    cd_model qm, gm;
    if (!cd_json_only_fields(j, fields, "", rep) || !cd_json_name(j, "query_model", &qname, rep) ||
        !read_ks(cJSON_GetObjectItemCaseSensitive(j, "ks"), ks, &n_ks, rep) ||
        !cd_json_string(j, "primary_metric", &primary_s, "", rep) ||
        !read_primary(primary_s, ks, n_ks, &primary, rep) ||
        !cd_json_string(j, "adapter", &adapter, "", rep) ||
        !cd_json_string(j, "gallery_view", &view, "", rep) ||
        !cd_json_filter(j, "filter", &filter, rep))
        goto out;
    if (view && strcmp(view, "mixed") != 0 && strcmp(view, "gallery_model") != 0) {
        cd_reply_error(rep, CD_HTTP_INVALID_ARGUMENT,
                       "gallery_view must be \"gallery_model\" or \"mixed\" (got \"%s\")", view);
        goto out;
    }
    if (filter &&
        !(filter_text = cJSON_PrintUnformatted(cJSON_GetObjectItemCaseSensitive(j, "filter")))) {
        cd_reply_error(rep, CD_HTTP_OUT_OF_MEMORY, "out of memory");
        goto out;
    }
    if (adapter && !cd_name_valid(adapter)) {
        cd_reply_error(rep, CD_HTTP_INVALID_NAME, "adapter must match [A-Za-z0-9._-]{1,%d}",
                       CD_NAME_MAX);
        goto out;
    }
    if (!cd_api_model(api, gallery, NULL, &gm, rep) ||
        !cd_api_model(api, gallery, qname, &qm, rep))
        goto out;
    /* An adapter maps the probes into the gallery model's dim: the engine
     * checks that it fits both models. */
    if (!adapter && qm.dim != gm.dim) {
        cd_reply_error(rep, CD_HTTP_DIMENSION_MISMATCH,
                       "query model %s has dim %d, gallery %s is of model %s with dim %d",
                       qm.name, qm.dim, gallery, gm.name, gm.dim);
        goto out;
    }
    const cJSON *b = cJSON_GetObjectItemCaseSensitive(j, "baseline");
    size_t max_probes = cd_api_limits(api).max_eval_probes;
    if (!read_probes(cJSON_GetObjectItemCaseSensitive(j, "queries"), "queries", &qm, true,
                     max_probes, &probes, rep) ||
        (b && !cJSON_IsNull(b) &&
         !read_probes(b, "baseline", &gm, false, max_probes, &base, rep)))
        goto out;

    cd_eval_request er = {
        .gallery = gallery,
        .query_model = qm.name,
        .adapter = adapter,
        .mixed = view && strcmp(view, "mixed") == 0,
        .probes = {probes.n, probes.vectors, probes.ids, probes.labels},
        .baseline = {base.n, base.vectors, base.ids, base.labels},
        .ks = ks,
        .n_ks = n_ks,
        .primary_k = primary,
        .filter = filter,
        .filter_text = filter_text,
    };
    cd_error err;
    if (cd_engine_evaluation_run(api->engine, &er, &ev, &err) != CD_OK) {
        cd_reply_core_error(rep, &err);
        goto out;
    }
    cd_reply_json(rep, 201, report_json(&ev, true));
out:
    cd_filter_destroy(filter);
    free(filter_text);
    cd_evaluation_finish(&ev);
    probe_buf_finish(&probes);
    probe_buf_finish(&base);
    cJSON_Delete(j);
}

static void evaluations_get(cd_api *api, const char *id_s, cd_reply *rep)
{
    int64_t id;
    if (!cd_parse_positive(id_s, &id)) {
        cd_reply_error(rep, CD_HTTP_INVALID_ARGUMENT, "evaluation id must be a positive integer");
        return;
    }
    cd_evaluation ev;
    cd_error err;
    if (cd_engine_evaluation_get(api->engine, id, &ev, &err) != CD_OK) {
        cd_reply_core_error(rep, &err);
        return;
    }
    cd_reply_json(rep, 200, report_json(&ev, true));
    cd_evaluation_finish(&ev);
}

static void evaluations_list(cd_api *api, const cd_request *req, const char *gallery,
                             cd_reply *rep)
{
    const char *limit_s = cd_request_arg(req, "limit");
    const char *before_s = cd_request_arg(req, "before");
    const char *model = cd_request_arg(req, "query_model");
    int64_t limit = DEFAULT_LIST_LIMIT, before = 0;
    if (limit_s && (!cd_parse_positive(limit_s, &limit) || limit > MAX_LIST_LIMIT)) {
        cd_reply_error(rep, CD_HTTP_INVALID_ARGUMENT, "limit must be an integer 1..%d",
                       MAX_LIST_LIMIT);
        return;
    }
    if (before_s && !cd_parse_positive(before_s, &before)) {
        cd_reply_error(rep, CD_HTTP_INVALID_ARGUMENT, "before must be an evaluation id");
        return;
    }
    if (model && !cd_name_valid(model)) {
        cd_reply_error(rep, CD_HTTP_INVALID_NAME, "query_model must match [A-Za-z0-9._-]{1,64}");
        return;
    }
    cd_evaluation *evs = NULL;
    size_t n = 0;
    cd_error err;
    /* One more than asked tells whether a next page exists. */
    if (cd_engine_evaluation_list(api->engine, gallery, model, before, (size_t)limit + 1, &evs,
                                  &n, &err) != CD_OK) {
        cd_reply_core_error(rep, &err);
        return;
    }
    bool more = n > (size_t)limit;
    if (more)
        n = (size_t)limit;
    cJSON *root = cJSON_CreateObject();
    cJSON *arr = cJSON_AddArrayToObject(root, "evaluations");
    /* A listing is a summary: the long lists stay on the report. */
    for (size_t i = 0; i < n; i++)
        cJSON_AddItemToArray(arr, report_json(&evs[i], false));
    if (more)
        cJSON_AddNumberToObject(root, "next_before", (double)evs[n - 1].id);
    else
        cJSON_AddNullToObject(root, "next_before");
    cd_reply_json(rep, 200, root);
    cd_evaluations_destroy(evs, more ? n + 1 : n);
}

/* What GET /v1/galleries/{g} and the matrix say of one evaluation. */
cJSON *cd__evaluation_brief(const cd_evaluation *ev)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "id", (double)ev->id);
    cJSON_AddStringToObject(o, "created_at", ev->created_at);
    add_verdict(o, "compatible", ev->compatible);
    cJSON_AddStringToObject(o, "criterion", ev->criterion);
    add_real(o, "cross_top1", ev->cross_top1);
    add_real(o, "baseline_top1", ev->baseline_top1);
    add_real(o, "cross_map", ev->cross_map);
    add_real(o, "baseline_map", ev->baseline_map);
    add_real(o, "nfr", ev->nfr);
    return o;
}

static void compatibility_get(cd_api *api, cd_reply *rep)
{
    cd_gallery *gs = NULL;
    cd_evaluation *evs = NULL;
    size_t n_gs = 0, n_evs = 0;
    cd_error err;
    if (cd_engine_gallery_list(api->engine, &gs, &n_gs, &err) != CD_OK ||
        cd_engine_evaluation_latest(api->engine, NULL, &evs, &n_evs, &err) != CD_OK) {
        cd_reply_core_error(rep, &err);
        free(gs);
        return;
    }
    cJSON *root = cJSON_CreateObject();
    cJSON *arr = cJSON_AddArrayToObject(root, "galleries");
    for (size_t i = 0; i < n_gs; i++) {
        cJSON *g = cJSON_CreateObject();
        cJSON_AddStringToObject(g, "gallery", gs[i].name);
        cJSON_AddStringToObject(g, "gallery_model", gs[i].model);
        cJSON *pairs = cJSON_AddArrayToObject(g, "pairs");
        int64_t ac_pairs = 0, ac_passed = 0, am_pairs = 0;
        double am_sum = 0;
        for (size_t e = 0; e < n_evs; e++) {
            const cd_evaluation *ev = &evs[e];
            if (ev->gallery_id != gs[i].id)
                continue;
            cJSON *p = cd__evaluation_brief(ev);
            cJSON_AddStringToObject(p, "query_model", ev->query_model);
            add_adapter(p, ev);
            cJSON_AddStringToObject(p, "gallery_model", ev->gallery_model);
            cJSON_AddNumberToObject(p, "evaluation", (double)ev->id);
            cJSON_AddStringToObject(p, "verdict", ev->compatible < 0 ? "none"
                                                  : ev->compatible ? "pass" : "fail");
            cJSON_AddItemToArray(pairs, p);
            /* Backward compatibility of a later model with an earlier one;
             * a model through an adapter is a pair of its own. */
            if (ev->query_model_id > ev->gallery_model_id && ev->compatible >= 0) {
                ac_pairs++;
                ac_passed += ev->compatible;
                if (isfinite(ev->cross_top1)) {
                    am_pairs++;
                    am_sum += ev->cross_top1;
                }
            }
        }
        cJSON *ac = cJSON_AddObjectToObject(g, "ac");
        cJSON_AddNumberToObject(ac, "pairs", (double)ac_pairs);
        cJSON_AddNumberToObject(ac, "passed", (double)ac_passed);
        add_real(ac, "share", ac_pairs ? (double)ac_passed / (double)ac_pairs : NAN);
        /* AM: the mean cross top-1 of the same pairs (those with top-1). */
        add_real(g, "am", am_pairs ? am_sum / (double)am_pairs : NAN);
        cJSON_AddItemToArray(arr, g);
    }
    cd_reply_json(rep, 200, root);
    free(gs);
    cd_evaluations_destroy(evs, n_evs);
}

/* GET /v1/adapters/{name}/evaluations: the evaluations that mapped their
 * probes through this adapter, newest first, as briefs naming gallery and
 * query model. */
static void adapter_evaluations(cd_api *api, const cd_request *req, const char *name,
                                cd_reply *rep)
{
    const char *limit_s = cd_request_arg(req, "limit");
    int64_t limit = DEFAULT_LIST_LIMIT;
    if (limit_s && (!cd_parse_positive(limit_s, &limit) || limit > MAX_LIST_LIMIT)) {
        cd_reply_error(rep, CD_HTTP_INVALID_ARGUMENT, "limit must be an integer 1..%d",
                       MAX_LIST_LIMIT);
        return;
    }
    cd_evaluation *evs = NULL;
    size_t n = 0;
    cd_error err;
    if (cd_engine_adapter_evaluations(api->engine, name, (size_t)limit, &evs, &n, &err) != CD_OK) {
        cd_reply_core_error(rep, &err);
        return;
    }
    cJSON *root = cJSON_CreateObject();
    cJSON_AddStringToObject(root, "adapter", name);
    cJSON *arr = cJSON_AddArrayToObject(root, "evaluations");
    for (size_t i = 0; i < n; i++) {
        cJSON *o = cd__evaluation_brief(&evs[i]);
        cJSON_AddStringToObject(o, "gallery", evs[i].gallery);
        cJSON_AddStringToObject(o, "gallery_model", evs[i].gallery_model);
        cJSON_AddStringToObject(o, "query_model", evs[i].query_model);
        cJSON_AddItemToArray(arr, o);
    }
    cd_reply_json(rep, 200, root);
    cd_evaluations_destroy(evs, n);
}

/* The route table's entries (route.c): the path parameters to the
 * functions above. */

void cd__adapter_evaluations(cd_api *api, const cd_request *req, cd_reply *rep)
{
    adapter_evaluations(api, req, req->params[0], rep);
}

void cd__evaluations_create(cd_api *api, const cd_request *req, cd_reply *rep)
{
    evaluations_create(api, req, req->params[0], rep);
}

void cd__evaluations_list(cd_api *api, const cd_request *req, cd_reply *rep)
{
    evaluations_list(api, req, req->params[0], rep);
}

void cd__evaluation_get(cd_api *api, const cd_request *req, cd_reply *rep)
{
    evaluations_get(api, req->params[0], rep);
}

void cd__compatibility_get(cd_api *api, const cd_request *req, cd_reply *rep)
{
    compatibility_get(api, rep);
}
