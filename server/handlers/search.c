/*
 * search.c - POST /v1/galleries/{g}/search: one or many query vectors of
 * a model, k nearest items each, and with shadows (the same queries
 * embedded by the gallery model) their agreement (SPEC 3.8).  The reply is
 * written as text, not as a cJSON tree, so that a large one costs its own
 * size.
 */
#include "handlers.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "text.h"

/*
 * A reply body written as it goes, for replies too large to build as a
 * cJSON tree first (a search's rows cost ~500 bytes each as nodes, ~60 as
 * text).  A failed allocation sets failed and ends the appending.
 */
typedef struct text_buf {
    char *s;
    size_t len, cap;
    bool failed;
} text_buf;

static void put_bytes(text_buf *b, const char *s, size_t n)
{
    if (b->failed)
        return;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->len + n + 1)
            cap *= 2;
        char *grown = realloc(b->s, cap);
        if (!grown) {
            b->failed = true;
            return;
        }
        b->s = grown;
        b->cap = cap;
    }
    memcpy(b->s + b->len, s, n);
    b->len += n;
    b->s[b->len] = '\0';
}

static void put_text(text_buf *b, const char *s)
{
    put_bytes(b, s, strlen(s));
}

/* s as a JSON string, escaped as cJSON escapes (s is valid UTF-8). */
static void put_string(text_buf *b, const char *s)
{
    put_bytes(b, "\"", 1);
    for (;;) {
        size_t run = 0;
        while (s[run] && s[run] != '"' && s[run] != '\\' && (unsigned char)s[run] >= 0x20)
            run++;
        put_bytes(b, s, run);
        s += run;
        if (!*s)
            break;
        char esc[8];
        switch (*s) {
        case '"': snprintf(esc, sizeof esc, "\\\""); break;
        case '\\': snprintf(esc, sizeof esc, "\\\\"); break;
        case '\b': snprintf(esc, sizeof esc, "\\b"); break;
        case '\f': snprintf(esc, sizeof esc, "\\f"); break;
        case '\n': snprintf(esc, sizeof esc, "\\n"); break;
        case '\r': snprintf(esc, sizeof esc, "\\r"); break;
        case '\t': snprintf(esc, sizeof esc, "\\t"); break;
        default: snprintf(esc, sizeof esc, "\\u%04x", (unsigned char)*s); break;
        }
        put_text(b, esc);
        s++;
    }
    put_bytes(b, "\"", 1);
}

/* d as cJSON prints a number: the shortest of 15 or 17 digits that reads
 * back the same; null when not finite. */
static void put_number(text_buf *b, double d)
{
    char num[32];
    double back = 0;
    if (!isfinite(d)) {
        put_text(b, "null");
        return;
    }
    snprintf(num, sizeof num, "%1.15g", d);
    if (sscanf(num, "%lg", &back) != 1 || back != d)
        snprintf(num, sizeof num, "%1.17g", d);
    put_text(b, num);
}

/* A float32 score: 9 significant digits read back as the same float (a
 * double's 17, and the check put_number makes, cost three conversions a
 * hit); null when not finite. */
static void put_score(text_buf *b, float f)
{
    char num[32];
    if (!isfinite(f)) {
        put_text(b, "null");
        return;
    }
    snprintf(num, sizeof num, "%.9g", (double)f);
    put_text(b, num);
}

/* Hands b's text to rep as a 200 JSON reply (or 503 when it failed). */
static void reply_text_buf(cd_reply *rep, text_buf *b)
{
    if (b->failed || !b->s) {
        free(b->s);
        cd_reply_error(rep, CD_HTTP_OUT_OF_MEMORY, "out of memory rendering the reply");
        return;
    }
    cd_reply_take(rep, "application/json", b->s, b->len);
}

/* ,"agreement":[{"overlap","top1_retained"}, ...] for n queries. */
static void put_agreement(text_buf *b, const cd_agreement *agr, size_t n)
{
    put_text(b, ",\"agreement\":[");
    for (size_t i = 0; i < n && !b->failed; i++) {
        put_text(b, i ? ",{\"overlap\":" : "{\"overlap\":");
        put_number(b, agr[i].overlap);
        put_text(b, agr[i].top1_retained ? ",\"top1_retained\":true}" : ",\"top1_retained\":false}");
    }
    put_text(b, "]");
}

/* The vectors of array `many` (arrays of numbers or base64 strings) of
 * model m into out, row after row; false with the 400 in rep, naming the
 * row as "<what> <i>". */
static bool read_vector_list(const cJSON *many, const cd_model *m, float *out, const char *what,
                             cd_reply *rep)
{
    size_t i = 0;
    const cJSON *v;
    cJSON_ArrayForEach(v, many) {
        char where[48];
        snprintf(where, sizeof where, "%s %zu: ", what, i);
        if (!cd_json_vector_value(v, cJSON_IsString(v), m, out + i * (size_t)m->dim, where, rep))
            return false;
        i++;
    }
    return true;
}

/*
 * The request's shadow queries (SPEC 3.8), one per query vector, into
 * *out (nq x the gallery model's dim, free()d by the caller): "shadow"
 * {"vector"|"vector_b64"} for a single query, "shadow_vectors" (arrays or
 * base64 strings) for any number.  *out stays NULL when the request has
 * none.  False, with the 400 in rep, when they do not fit the queries or
 * the gallery model, or when the query model is the gallery model itself
 * (nothing to compare).
 */
static bool read_shadow(cd_api *api, const cJSON *j, const char *gallery, const cd_model *m,
                        size_t nq, float **out, cd_reply *rep)
{
    static const char *const shadow_fields[] = {"vector", "vector_b64", NULL};
    const cJSON *one = cJSON_GetObjectItemCaseSensitive(j, "shadow");
    const cJSON *many = cJSON_GetObjectItemCaseSensitive(j, "shadow_vectors");
    cd_model gm;
    *out = NULL;
    if (!one && !many)
        return true;
    if (one && many) {
        cd_reply_error(rep, CD_HTTP_INVALID_VECTOR, "give shadow or shadow_vectors, not both");
        return false;
    }
    if (one && !cJSON_IsObject(one)) {
        cd_reply_error(rep, CD_HTTP_INVALID_VECTOR, "shadow must be an object with vector or vector_b64");
        return false;
    }
    if (one && nq != 1) {
        cd_reply_error(rep, CD_HTTP_INVALID_VECTOR,
                       "shadow is for a single query vector; give shadow_vectors for %zu", nq);
        return false;
    }
    if (many && !cJSON_IsArray(many)) {
        cd_reply_error(rep, CD_HTTP_INVALID_VECTOR, "shadow_vectors must be an array");
        return false;
    }
    if (many && (size_t)cJSON_GetArraySize(many) != nq) {
        cd_reply_error(rep, CD_HTTP_INVALID_VECTOR,
                       "shadow_vectors needs one shadow per query vector: %zu queries, %d shadows",
                       nq, cJSON_GetArraySize(many));
        return false;
    }
    if (!cd_api_model(api, gallery, NULL, &gm, rep))
        return false;
    if (gm.id == m->id) {
        cd_reply_error(rep, CD_HTTP_INVALID_ARGUMENT,
                       "model %s is the gallery model: a shadow (the query embedded by the gallery "
                       "model) would be the query itself", m->name);
        return false;
    }
    float *s = malloc(nq * (size_t)gm.dim * sizeof *s);
    if (!s) {
        cd_reply_error(rep, CD_HTTP_OUT_OF_MEMORY, "out of memory for %zu shadow queries", nq);
        return false;
    }
    if (one) {
        if (!cd_json_only_fields(one, shadow_fields, "shadow.", rep) ||
            !cd_json_vector(one, &gm, s, "shadow: ", rep))
            goto fail;
    } else if (!read_vector_list(many, &gm, s, "shadow", rep)) {
        goto fail;
    }
    *out = s;
    return true;
fail:
    free(s);
    return false;
}

/* The search reply of SPEC 3.4, written as text (text_buf), with the
 * agreement of its shadow queries (SPEC 3.8) when agr is not NULL. */
static void render_search(const cd_search_result *res, unsigned include,
                          const cd_agreement *agr, cd_reply *rep)
{
    text_buf b = {0};
    put_text(&b, "{\"model\":");
    put_string(&b, res->model);
    if (res->adapter[0]) {
        put_text(&b, ",\"adapter\":");
        put_string(&b, res->adapter);
    }
    put_text(&b, ",\"results\":[");
    for (size_t i = 0; i < res->nq && !b.failed; i++) {
        put_text(&b, i ? ",[" : "[");
        for (size_t h = 0; h < res->counts[i]; h++) {
            const cd_hit *hit = &res->hits[i * res->k + h];
            put_text(&b, h ? ",{\"id\":" : "{\"id\":");
            put_string(&b, hit->item.id);
            put_text(&b, ",\"score\":");
            put_score(&b, hit->score);
            if (include & CD_INCLUDE_LABEL) {
                put_text(&b, ",\"label\":");
                if (hit->item.label)
                    put_string(&b, hit->item.label);
                else
                    put_text(&b, "null");
            }
            if (include & CD_INCLUDE_METADATA) {
                put_text(&b, ",\"metadata\":");
                put_text(&b, cd_json_metadata_valid(hit->item.metadata) ? hit->item.metadata : "null");
            }
            put_text(&b, "}");
        }
        put_text(&b, "]");
    }
    put_text(&b, "],\"searched\":[");
    for (size_t i = 0; i < res->n_searched; i++) {
        put_text(&b, i ? ",{\"model\":" : "{\"model\":");
        put_string(&b, res->searched[i].model);
        put_text(&b, ",\"items\":");
        put_number(&b, (double)res->searched[i].items);
        if (res->searched[i].adapter[0]) {
            put_text(&b, ",\"adapter\":");
            put_string(&b, res->searched[i].adapter);
        }
        put_text(&b, "}");
    }
    put_text(&b, "]");
    if (agr)
        put_agreement(&b, agr, res->nq);
    if (res->filtered) {
        put_text(&b, ",\"matched\":");
        put_number(&b, (double)res->matched);
    }
    put_text(&b, "}");
    reply_text_buf(rep, &b);
}

/*
 * Refuses a search whose reply could be too large to hold: more than
 * max_results rows (queries x k), or, with metadata, more rows than
 * max_result_metadata bytes of max_metadata-byte metadata.
 */
static bool result_size_ok(const cd_limits *lim, size_t nq, size_t k, unsigned include,
                           cd_reply *rep)
{
    size_t rows = nq * k;   /* both are bounded far below overflow */
    if (rows > lim->max_results) {
        cd_reply_error(rep, CD_HTTP_RESULT_TOO_LARGE,
                       "a search returns at most %zu results (--max-results); "
                       "this one asks for %zu queries x k %zu = %zu",
                       lim->max_results, nq, k, rows);
        return false;
    }
    size_t meta_rows = lim->max_result_metadata / lim->max_metadata;
    if ((include & CD_INCLUDE_METADATA) && rows > meta_rows) {
        cd_reply_error(rep, CD_HTTP_RESULT_TOO_LARGE,
                       "with metadata a search returns at most %zu results (--max-result-metadata "
                       "%zu bytes / --max-metadata %zu bytes); this one asks for %zu queries x k %zu = %zu",
                       meta_rows, lim->max_result_metadata, lim->max_metadata, nq, k, rows);
        return false;
    }
    return true;
}

/*
 * Reads "params" ({"ef_search", "nprobe"}: integers, the index checks
 * which apply and their bounds) and "exact" (a boolean) into opt.
 */
static bool search_options(const cJSON *j, cd_search_options *opt, cd_reply *rep)
{
    static const char *const fields[] = {"ef_search", "nprobe", NULL};
    const cJSON *p = cJSON_GetObjectItemCaseSensitive(j, "params");
    const cJSON *exact = cJSON_GetObjectItemCaseSensitive(j, "exact");
    long v;
    memset(opt, 0, sizeof *opt);
    if (exact && !cJSON_IsBool(exact)) {
        cd_reply_error(rep, CD_HTTP_INVALID_ARGUMENT, "exact must be true or false");
        return false;
    }
    opt->exact = cJSON_IsTrue(exact);
    if (!p)
        return true;
    if (!cJSON_IsObject(p)) {
        cd_reply_error(rep, CD_HTTP_INVALID_ARGUMENT, "params must be an object");
        return false;
    }
    if (!cd_json_only_fields(p, fields, "params: ", rep))
        return false;
    const cJSON *ef = cJSON_GetObjectItemCaseSensitive(p, "ef_search");
    if (ef && !cd_json_int(ef, 1, CD_EF_SEARCH_MAX, &v)) {
        cd_reply_error(rep, CD_HTTP_INVALID_ARGUMENT, "params.ef_search must be an integer 1..%d",
                       CD_EF_SEARCH_MAX);
        return false;
    }
    opt->ef_search = ef ? (int)v : 0;
    const cJSON *np = cJSON_GetObjectItemCaseSensitive(p, "nprobe");
    if (np && !cd_json_int(np, 1, INT32_MAX, &v)) {
        cd_reply_error(rep, CD_HTTP_INVALID_ARGUMENT, "params.nprobe must be an integer 1..nlist");
        return false;
    }
    opt->nprobe = np ? (int)v : 0;
    return true;
}

void cd__search(cd_api *api, const cd_request *req, cd_reply *rep)
{
    const char *gallery = req->params[0];
    static const char *const fields[] = {"model", "adapter", "k", "vector", "vector_b64",
                                         "vectors", "include", "shadow", "shadow_vectors",
                                         "params", "exact", "filter", NULL};
    cJSON *j = cd_json_body(req, rep);
    float *q = NULL, *shadow = NULL;
    cd_search_result *res = NULL;
    cd_agreement *agr = NULL;
    cd_filter *filter = NULL;
    if (!j)
        return;
    const char *model, *adapter;
    cd_model m;
    long k = 10;
    unsigned include = 0;
    cd_limits lim = cd_api_limits(api);
    if (!cd_json_only_fields(j, fields, "", rep) || !cd_json_string(j, "model", &model, "", rep) ||
        !cd_json_string(j, "adapter", &adapter, "", rep))
        goto out;
    if ((model && !cd_name_valid(model)) || (adapter && !cd_name_valid(adapter))) {
        cd_reply_error(rep, CD_HTTP_INVALID_NAME, "%s must match [A-Za-z0-9._-]{1,64}",
                       model && !cd_name_valid(model) ? "model" : "adapter");
        goto out;
    }
    const cJSON *kf = cJSON_GetObjectItemCaseSensitive(j, "k");
    if (kf && !cd_json_int(kf, 1, lim.max_k, &k)) {
        cd_reply_error(rep, CD_HTTP_INVALID_K, "k must be an integer 1..%d", lim.max_k);
        goto out;
    }
    cd_search_options opt;
    if (!search_options(j, &opt, rep))
        goto out;
    const cJSON *inc = cJSON_GetObjectItemCaseSensitive(j, "include");
    if (inc) {
        const cJSON *x;
        if (!cJSON_IsArray(inc))
            goto bad_include;
        cJSON_ArrayForEach(x, inc) {
            if (cJSON_IsString(x) && strcmp(x->valuestring, "label") == 0)
                include |= CD_INCLUDE_LABEL;
            else if (cJSON_IsString(x) && strcmp(x->valuestring, "metadata") == 0)
                include |= CD_INCLUDE_METADATA;
            else
                goto bad_include;
        }
    }
    const cJSON *one = cJSON_GetObjectItemCaseSensitive(j, "vector");
    const cJSON *one_b64 = cJSON_GetObjectItemCaseSensitive(j, "vector_b64");
    const cJSON *many = cJSON_GetObjectItemCaseSensitive(j, "vectors");
    if ((one != NULL) + (one_b64 != NULL) + (many != NULL) != 1) {
        cd_reply_error(rep, CD_HTTP_INVALID_VECTOR, "give exactly one of vector, vector_b64 or vectors");
        goto out;
    }
    size_t nq = 1;
    if (many) {
        if (!cJSON_IsArray(many) || cJSON_GetArraySize(many) == 0) {
            cd_reply_error(rep, CD_HTTP_INVALID_VECTOR, "vectors must be a non-empty array");
            goto out;
        }
        nq = (size_t)cJSON_GetArraySize(many);
        if (nq > lim.max_queries) {
            cd_reply_error(rep, CD_HTTP_BATCH_TOO_LARGE, "at most %zu query vectors per request, got %zu",
                           lim.max_queries, nq);
            goto out;
        }
    }
    if (!cd_json_filter(j, "filter", &filter, rep) ||
        !result_size_ok(&lim, nq, (size_t)k, include, rep) ||
        !cd_api_model(api, gallery, model, &m, rep))
        goto out;
    q = malloc(nq * (size_t)m.dim * sizeof *q);
    if (!q) {
        cd_reply_error(rep, CD_HTTP_OUT_OF_MEMORY, "out of memory for %zu queries", nq);
        goto out;
    }
    if (many) {
        if (!read_vector_list(many, &m, q, "query", rep))
            goto out;
    } else if (!cd_json_vector_value(one ? one : one_b64, one_b64 != NULL, &m, q, "", rep)) {
        goto out;
    }
    if (!read_shadow(api, j, gallery, &m, nq, &shadow, rep))
        goto out;
    cd_error err;
    opt.adapter = adapter;
    opt.filter = filter;
    cd_err rc = cd_engine_search_with(api->engine, gallery, m.name, q, nq, (size_t)k, include,
                                      &opt, &res, &err);
    if (rc != CD_OK) {
        cd_reply_core_error(rep, &err);
        goto out;
    }
    if (res->adapter[0])
        cd_metrics_adapter_search(api->metrics, res->adapter);
    if (shadow && cd_engine_shadow_search(api->engine, gallery, res,
                                          res->adapter[0] ? res->adapter : NULL, filter,
                                          shadow, &agr, &err) != CD_OK) {
        cd_reply_core_error(rep, &err);
        goto out;
    }
    render_search(res, include, agr, rep);
    goto out;
bad_include:
    cd_reply_error(rep, CD_HTTP_INVALID_ARGUMENT, "include must be an array of \"label\" and \"metadata\"");
out:
    cd_filter_destroy(filter);
    cd_search_result_destroy(res);
    free(agr);
    free(shadow);
    free(q);
    cJSON_Delete(j);
}
