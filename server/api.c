/*
 * api.c - the /v1 routes of schema/openapi.yaml and the operational endpoints.
 *
 * Each handler: check the body (content type, UTF-8, JSON, fields), turn it
 * into core arguments, call the engine once, render the result.  Nothing
 * is stored unless the whole request is valid: every field and vector is
 * checked here before the engine is called (and the engine checks again).
 */
#include "api.h"

#include <float.h>
#include <inttypes.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "embed.h"
#include "eval.h"
#include "keys.h"
#include "text.h"
#include "vec.h"

/* Files compiled into the binary by core/embedgen.c (server/meson.build):
 * the dashboard's page and assets (server/web/), and the API description
 * (schema/openapi.yaml). */
extern const cd_embedded_file cd__web_assets[];
extern const size_t cd__web_assets_count;
extern const cd_embedded_file cd__openapi[];
extern const size_t cd__openapi_count;

/* --- limits ----------------------------------------------------------- */

/* Requests whose body and reply together are this large return the
 * memory they used to the system afterwards (return_memory). */
#define TRIM_AFTER_BYTES (4u << 20)

/* api->limits with defaults for the fields left 0 and the caps applied. */
static cd_limits limits_of(const cd_api *api)
{
    cd_limits l = api->limits;
    if (l.max_batch == 0)
        l.max_batch = CD_DEFAULT_MAX_BATCH;
    if (l.max_queries == 0)
        l.max_queries = CD_DEFAULT_MAX_QUERIES;
    if (l.max_k <= 0 || l.max_k > CD_K_MAX)
        l.max_k = l.max_k <= 0 ? CD_DEFAULT_MAX_K : CD_K_MAX;
    if (l.max_dim <= 0 || l.max_dim > CD_DIM_MAX)
        l.max_dim = l.max_dim <= 0 ? CD_DEFAULT_MAX_DIM : CD_DIM_MAX;
    if (l.max_metadata == 0 || l.max_metadata > CD_METADATA_MAX)
        l.max_metadata = l.max_metadata == 0 ? CD_DEFAULT_MAX_METADATA : CD_METADATA_MAX;
    if (l.max_eval_probes == 0)
        l.max_eval_probes = CD_DEFAULT_MAX_EVAL_PROBES;
    if (l.max_results == 0)
        l.max_results = CD_DEFAULT_MAX_RESULTS;
    if (l.max_result_metadata == 0)
        l.max_result_metadata = CD_DEFAULT_MAX_RESULT_METADATA;
    return l;
}

/* --- request bodies --------------------------------------------------- */

/* Appends ".name" or "[i]" to the key path in buf (cut when full). */
static void path_push(char *buf, size_t cap, size_t len, const cJSON *parent,
                      const cJSON *child, size_t i)
{
    if (len >= cap - 1)
        return;
    if (cJSON_IsObject(parent))
        snprintf(buf + len, cap - len, ".%s", child->string);
    else
        snprintf(buf + len, cap - len, "[%zu]", i);
    buf[cd_utf8_cut(buf, strlen(buf))] = '\0';
}

static int key_cmp(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* The first name that two members of obj share, or NULL. */
static const char *repeated_key(const cJSON *obj, bool *oom)
{
    size_t n = 0;
    const cJSON *c;
    cJSON_ArrayForEach(c, obj)
        n++;
    if (n <= 16) {      /* the usual case: compare each pair */
        for (const cJSON *a = obj->child; a; a = a->next)
            for (const cJSON *b = a->next; b; b = b->next)
                if (strcmp(a->string, b->string) == 0)
                    return a->string;
        return NULL;
    }
    /* Sorted, so that a large object costs n log n, not n^2. */
    const char **keys = malloc(n * sizeof *keys);
    const char *dup = NULL;
    if (!keys) {
        *oom = true;
        return NULL;
    }
    n = 0;
    cJSON_ArrayForEach(c, obj)
        keys[n++] = c->string;
    qsort(keys, n, sizeof *keys, key_cmp);
    for (size_t i = 1; i < n && !dup; i++)
        if (strcmp(keys[i - 1], keys[i]) == 0)
            dup = keys[i];
    free(keys);
    return dup;
}

/*
 * Refuses an object anywhere in j with two members of the same name: JSON
 * leaves open which one counts, and cJSON would silently keep the first.
 * path holds j's key path ("$.items[3]"), len its length.  The recursion
 * is as deep as the document, which cJSON bounds (CJSON_NESTING_LIMIT).
 */
static bool keys_unique(const cJSON *j, char *path, size_t cap, size_t len,
                        cd_reply *rep)
{
    if (!cJSON_IsObject(j) && !cJSON_IsArray(j))
        return true;
    bool oom = false;
    const char *dup = cJSON_IsObject(j) ? repeated_key(j, &oom) : NULL;
    if (oom) {
        cd_reply_error(rep, 503, "out_of_memory", "out of memory checking the request body");
        return false;
    }
    if (dup) {
        cd_reply_error(rep, 400, "duplicate_key", "duplicate key \"%s\" in the object at %s",
                       dup, path);
        return false;
    }
    size_t i = 0;
    const cJSON *c;
    cJSON_ArrayForEach(c, j) {
        if (cJSON_IsObject(c) || cJSON_IsArray(c)) {
            path_push(path, cap, len, j, c, i);
            if (!keys_unique(c, path, cap, strlen(path), rep))
                return false;
            path[len] = '\0';
        }
        i++;
    }
    return true;
}

/* Parses the body as a JSON object, or sets an error reply and returns
 * NULL.  The caller frees the result with cJSON_Delete(). */
static cJSON *parse_body(const cd_request *req, cd_reply *rep)
{
    const char *ct = req->content_type;
    if (!ct || strncasecmp(ct, "application/json", 16) != 0 ||
        (ct[16] != '\0' && ct[16] != ';' && ct[16] != ' ')) {
        cd_reply_error(rep, 415, "unsupported_media_type",
                       "Content-Type must be application/json (got %s)", ct ? ct : "none");
        return NULL;
    }
    if (req->body_len == 0) {
        cd_reply_error(rep, 400, "invalid_json", "request body is empty");
        return NULL;
    }
    if (!cd_utf8_valid(req->body, req->body_len)) {
        cd_reply_error(rep, 400, "invalid_utf8", "request body is not valid UTF-8");
        return NULL;
    }
    /* JSON's white space is space, tab, LF and CR, and a string holds no
     * raw control character (RFC 8259); cJSON lets every byte up to 0x20,
     * NUL included, pass as white space, which would put the text out of
     * step with the scanner that keeps metadata's own text (member_text). */
    for (size_t at = 0; at < req->body_len; at++) {
        unsigned char c = (unsigned char)req->body[at];
        if (c < 0x20 && c != ' ' && c != '\t' && c != '\n' && c != '\r') {
            cd_reply_error(rep, 400, "invalid_json",
                           "request body has a control character (0x%02x) at byte %zu; "
                           "JSON allows only space, tab, LF and CR between tokens, and "
                           "none in strings", c, at);
            return NULL;
        }
    }
    /* cJSON keeps strings NUL-terminated, so an escaped NUL would cut a
     * name or id short without a word: refuse it. */
    size_t i = 0;
    while (i + 5 < req->body_len) {
        const char *bs = memchr(req->body + i, '\\', req->body_len - i);
        if (!bs)
            break;
        i = (size_t)(bs - req->body);
        if (i + 5 < req->body_len && memcmp(req->body + i + 1, "u0000", 5) == 0) {
            cd_reply_error(rep, 400, "invalid_json",
                           "strings must not contain \\u0000 (byte %zu)", i);
            return NULL;
        }
        i += 2; /* past the backslash and the escaped character, e.g. "\\\\" */
    }
    const char *end = NULL;
    cJSON *j = cJSON_ParseWithLengthOpts(req->body, req->body_len, &end, 0);
    if (!j) {
        size_t at = end && end >= req->body ? (size_t)(end - req->body) : 0;
        cd_reply_error(rep, 400, "invalid_json",
                       "request body is not valid JSON (near byte %zu) or nests deeper than %d",
                       at, CJSON_NESTING_LIMIT);
        return NULL;
    }
    /* Only white space may follow the value. */
    for (const char *p = end; p && p < req->body + req->body_len; p++) {
        if (*p != ' ' && *p != '\n' && *p != '\r' && *p != '\t') {
            cJSON_Delete(j);
            cd_reply_error(rep, 400, "invalid_json",
                           "request body has data after the JSON value (byte %zu)",
                           (size_t)(p - req->body));
            return NULL;
        }
    }
    if (!cJSON_IsObject(j)) {
        cJSON_Delete(j);
        cd_reply_error(rep, 400, "invalid_json", "request body must be a JSON object");
        return NULL;
    }
    char path[256] = "$";
    if (!keys_unique(j, path, sizeof path, 1, rep)) {
        cJSON_Delete(j);
        return NULL;
    }
    return j;
}

/*
 * Scanning the text of a body parse_body accepted (so well-formed, and
 * NUL-terminated), to keep a value's own bytes where cJSON would round
 * them: its numbers are doubles.  Each takes p at a value (or white space
 * before it) and returns the first byte after it.
 */
static const char *skip_ws(const char *p)
{
    while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r')
        p++;
    return p;
}

static const char *skip_string(const char *p)
{
    for (p++; *p != '"'; p++)
        if (*p == '\\')
            p++;
    return p + 1;
}

static const char *skip_value(const char *p)
{
    p = skip_ws(p);
    if (*p == '"')
        return skip_string(p);
    if (*p != '{' && *p != '[') {
        while (*p && !strchr(",}] \t\r\n", *p))
            p++;
        return p;
    }
    size_t depth = 0;
    do {
        if (*p == '"') {
            p = skip_string(p);
            continue;
        }
        if (*p == '{' || *p == '[')
            depth++;
        else if (*p == '}' || *p == ']')
            depth--;
        p++;
    } while (depth > 0);
    return p;
}

/* The value of the index-th member (0-based, cJSON's order is the text's)
 * of the object at p; p may also be an array, then its index-th element. */
static const char *member_text(const char *p, size_t index)
{
    bool object = *(p = skip_ws(p)) == '{';
    p++;
    for (size_t i = 0;; i++) {
        if (object)
            p = skip_ws(skip_value(p)) + 1;     /* the name and ':' */
        if (i == index)
            return skip_ws(p);
        p = skip_ws(skip_value(p)) + 1;         /* the value and ',' */
    }
}

/* Where child sits among parent's children. */
static size_t child_index(const cJSON *parent, const cJSON *child)
{
    size_t i = 0;
    for (const cJSON *c = parent->child; c && c != child; c = c->next)
        i++;
    return i;
}

/* A malloc'd copy of the value at p without white space between tokens;
 * numbers and strings keep their bytes.  NULL when out of memory. */
static char *minified_text(const char *p)
{
    p = skip_ws(p);
    const char *end = skip_value(p);
    char *out = malloc((size_t)(end - p) + 1), *o = out;
    while (out && p < end) {
        if (*p == '"') {
            const char *s = skip_string(p);
            memcpy(o, p, (size_t)(s - p));
            o += s - p;
            p = s;
        } else if (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r') {
            p++;
        } else {
            *o++ = *p++;
        }
    }
    if (out)
        *o = '\0';
    return out;
}

/* True when no number in j overflowed a double (1e400 parses as inf). */
static bool numbers_finite(const cJSON *j)
{
    if (cJSON_IsNumber(j))
        return isfinite(j->valuedouble);
    const cJSON *c;
    cJSON_ArrayForEach(c, j)
        if (!numbers_finite(c))
            return false;
    return true;
}

/* Refuses fields of obj not in allowed (NULL-terminated). */
static bool only_fields(const cJSON *obj, const char *const *allowed,
                        const char *where, cd_reply *rep)
{
    const cJSON *f;
    cJSON_ArrayForEach(f, obj) {
        bool ok = false;
        for (size_t i = 0; allowed[i] && !ok; i++)
            ok = f->string && strcmp(f->string, allowed[i]) == 0;
        if (!ok) {
            cd_reply_error(rep, 400, "unknown_field", "%sunknown field \"%s\"", where,
                           f->string ? f->string : "");
            return false;
        }
    }
    return true;
}

/* The string field name of obj: NULL when absent (ok), sets an error reply
 * when present but not a string. */
static bool opt_string(const cJSON *obj, const char *name, const char **out,
                       const char *where, cd_reply *rep)
{
    const cJSON *f = cJSON_GetObjectItemCaseSensitive(obj, name);
    *out = NULL;
    if (!f || cJSON_IsNull(f))
        return true;
    if (!cJSON_IsString(f)) {
        cd_reply_error(rep, 400, "invalid_argument", "%s%s must be a string", where, name);
        return false;
    }
    *out = f->valuestring;
    return true;
}

static bool req_name(const cJSON *obj, const char *field, const char **out,
                     cd_reply *rep)
{
    if (!opt_string(obj, field, out, "", rep))
        return false;
    if (!*out) {
        cd_reply_error(rep, 400, "invalid_argument", "%s is required", field);
        return false;
    }
    if (!cd_name_valid(*out)) {
        cd_reply_error(rep, 400, "invalid_name", "%s must match [A-Za-z0-9._-]{1,64}", field);
        return false;
    }
    return true;
}

/* An integral JSON number in [lo, hi]. */
static bool int_in(const cJSON *f, long lo, long hi, long *out)
{
    if (!cJSON_IsNumber(f))
        return false;
    double d = f->valuedouble;
    if (!(d >= (double)lo && d <= (double)hi) || d != floor(d))
        return false;
    *out = (long)d;
    return true;
}

/* Refuses an ip or l2 vector whose scores could overflow float32 (vec.h);
 * cosine vectors are normalised in double, so any finite one will do. */
static bool vector_in_range(const float *v, const cd_model *m, const char *where,
                            cd_reply *rep)
{
    double norm2;
    if (m->metric == CD_METRIC_COSINE || cd_vec_in_range(v, (size_t)m->dim, &norm2))
        return true;
    cd_reply_error(rep, 400, "invalid_vector",
                   "%svector's squared L2 norm %g is above %g: its scores would overflow float32",
                   where, norm2, CD_VEC_NORM2_MAX);
    return false;
}

/*
 * Reads one vector of dim floats into out from obj's "vector" (array of
 * numbers) or "vector_b64" field; exactly one must be present.  where
 * prefixes messages ("item 3: ").
 */
static bool read_vector_value(const cJSON *v, bool b64, const cd_model *m, float *out,
                              const char *where, cd_reply *rep)
{
    int dim = m->dim;
    const char *model = m->name;
    if (b64) {
        if (!cJSON_IsString(v)) {
            cd_reply_error(rep, 400, "invalid_vector", "%svector_b64 must be a string", where);
            return false;
        }
        size_t n = 0, len = strlen(v->valuestring);
        cd_error err;
        if (cd_b64_float_count(v->valuestring, len, &n, &err) != CD_OK) {
            cd_reply_error(rep, 400, "invalid_vector", "%s%s", where, err.message);
            return false;
        }
        if (n != (size_t)dim) {
            cd_reply_error(rep, 400, "dimension_mismatch",
                           "%svector has %zu values, model %s has dim %d", where, n, model, dim);
            return false;
        }
        if (cd_b64_decode_floats_into(v->valuestring, len, out, &err) != CD_OK) {
            cd_reply_error(rep, 400, "invalid_vector", "%s%s", where, err.message);
            return false;
        }
        return vector_in_range(out, m, where, rep);
    }
    if (!cJSON_IsArray(v)) {
        cd_reply_error(rep, 400, "invalid_vector", "%svector must be an array of numbers", where);
        return false;
    }
    int n = cJSON_GetArraySize(v);
    if (n != dim) {
        cd_reply_error(rep, 400, "dimension_mismatch",
                       "%svector has %d values, model %s has dim %d", where, n, model, dim);
        return false;
    }
    const cJSON *x;
    int i = 0;
    cJSON_ArrayForEach(x, v) {
        if (!cJSON_IsNumber(x)) {
            cd_reply_error(rep, 400, "invalid_vector", "%svector value %d is not a number", where, i);
            return false;
        }
        double d = x->valuedouble;
        if (!isfinite(d) || fabs(d) > FLT_MAX) {
            cd_reply_error(rep, 400, "invalid_vector",
                           "%svector value %d is not a finite float32", where, i);
            return false;
        }
        out[i++] = (float)d;
    }
    return vector_in_range(out, m, where, rep);
}

static bool read_vector(const cJSON *obj, const cd_model *m, float *out, const char *where,
                        cd_reply *rep)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, "vector");
    const cJSON *b = cJSON_GetObjectItemCaseSensitive(obj, "vector_b64");
    if ((v != NULL) == (b != NULL)) {
        cd_reply_error(rep, 400, "invalid_vector", "%sgive exactly one of vector or vector_b64",
                       where);
        return false;
    }
    return read_vector_value(v ? v : b, b != NULL, m, out, where, rep);
}

/* --- rendering -------------------------------------------------------- */

static cJSON *model_json(const cd_model *m)
{
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "name", m->name);
    cJSON_AddNumberToObject(j, "dim", m->dim);
    cJSON_AddStringToObject(j, "metric", cd_metric_name(m->metric));
    if (m->compatible_with[0])
        cJSON_AddStringToObject(j, "compatible_with", m->compatible_with);
    else
        cJSON_AddNullToObject(j, "compatible_with");
    cJSON_AddStringToObject(j, "description", m->description);
    cJSON_AddStringToObject(j, "created_at", m->created_at);
    return j;
}

static cJSON *gallery_json(const cd_gallery *g)
{
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "name", g->name);
    cJSON_AddStringToObject(j, "model", g->model);
    cJSON_AddStringToObject(j, "index", g->index_spec);
    cJSON_AddNumberToObject(j, "count", (double)g->count);
    cJSON_AddStringToObject(j, "query_policy", cd_policy_name(g->policy));
    cJSON_AddStringToObject(j, "created_at", g->created_at);
    return j;
}

/* True when stored metadata text is one JSON object and nothing else. */
static bool metadata_valid(const char *text)
{
    cJSON *m = text ? cJSON_ParseWithOpts(text, NULL, 1) : NULL;
    bool ok = cJSON_IsObject(m);
    cJSON_Delete(m);
    return ok;
}

/* Adds metadata text as its own bytes (null when absent or unparsable):
 * cJSON would print its numbers as doubles. */
static void add_metadata(cJSON *obj, const char *text)
{
    if (metadata_valid(text))
        cJSON_AddRawToObject(obj, "metadata", text);
    else
        cJSON_AddNullToObject(obj, "metadata");
}

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

/* Hands b's text to rep as a 200 JSON reply (or 503 when it failed). */
static void reply_text_buf(cd_reply *rep, text_buf *b)
{
    if (b->failed || !b->s) {
        free(b->s);
        cd_reply_error(rep, 503, "out_of_memory", "out of memory rendering the reply");
        return;
    }
    free(rep->body);
    rep->body = b->s;
    rep->len = b->len;
    rep->status = 200;
    rep->content_type = "application/json";
}

static void reply_error_or(cd_reply *rep, cd_err rc, const cd_error *err)
{
    if (rc != CD_OK)
        cd_reply_core_error(rep, err);
}

static cJSON *evaluation_brief(const cd_evaluation *ev);

/* --- models ----------------------------------------------------------- */

static void models_create(cd_api *api, const cd_request *req, cd_reply *rep)
{
    static const char *const fields[] = {"name", "dim", "metric", "compatible_with",
                                         "description", NULL};
    cJSON *j = parse_body(req, rep);
    if (!j)
        return;
    cd_model m;
    memset(&m, 0, sizeof m);
    const char *name, *metric, *compat, *desc;
    long dim;
    int max_dim = limits_of(api).max_dim;
    if (!only_fields(j, fields, "", rep) || !req_name(j, "name", &name, rep))
        goto out;
    if (!int_in(cJSON_GetObjectItemCaseSensitive(j, "dim"), 1, max_dim, &dim)) {
        cd_reply_error(rep, 400, "invalid_argument", "dim must be an integer 1..%d", max_dim);
        goto out;
    }
    if (!opt_string(j, "metric", &metric, "", rep))
        goto out;
    if (!metric || !cd_metric_parse(metric, &m.metric)) {
        cd_reply_error(rep, 400, "invalid_argument", "metric must be cosine, ip or l2");
        goto out;
    }
    if (!opt_string(j, "compatible_with", &compat, "", rep) ||
        !opt_string(j, "description", &desc, "", rep))
        goto out;
    if (compat && !cd_name_valid(compat)) {
        cd_reply_error(rep, 400, "invalid_name", "compatible_with must match [A-Za-z0-9._-]{1,64}");
        goto out;
    }
    if (desc && strlen(desc) > CD_DESCRIPTION_MAX) {
        cd_reply_error(rep, 400, "invalid_argument", "description is longer than %d bytes",
                       CD_DESCRIPTION_MAX);
        goto out;
    }
    snprintf(m.name, sizeof m.name, "%s", name);
    m.dim = (int)dim;
    snprintf(m.compatible_with, sizeof m.compatible_with, "%s", compat ? compat : "");
    snprintf(m.description, sizeof m.description, "%s", desc ? desc : "");
    cd_model out;
    cd_error err;
    cd_err rc = cd_engine_model_create(api->engine, &m, &out, &err);
    if (rc == CD_OK)
        cd_reply_json(rep, 201, model_json(&out));
    reply_error_or(rep, rc, &err);
out:
    cJSON_Delete(j);
}

static void models_list(cd_api *api, cd_reply *rep)
{
    cd_model *ms = NULL;
    size_t n = 0;
    cd_error err;
    cd_err rc = cd_engine_model_list(api->engine, &ms, &n, &err);
    if (rc == CD_OK) {
        cJSON *root = cJSON_CreateObject();
        cJSON *arr = cJSON_AddArrayToObject(root, "models");
        for (size_t i = 0; i < n; i++)
            cJSON_AddItemToArray(arr, model_json(&ms[i]));
        cd_reply_json(rep, 200, root);
    }
    reply_error_or(rep, rc, &err);
    free(ms);
}

static void models_get(cd_api *api, const char *name, cd_reply *rep)
{
    cd_model m;
    cd_error err;
    cd_err rc = cd_engine_model_get(api->engine, name, &m, &err);
    if (rc == CD_OK)
        cd_reply_json(rep, 200, model_json(&m));
    reply_error_or(rep, rc, &err);
}

/* --- galleries -------------------------------------------------------- */

static void galleries_create(cd_api *api, const cd_request *req, cd_reply *rep)
{
    static const char *const fields[] = {"name", "model", "index", NULL};
    cJSON *j = parse_body(req, rep);
    if (!j)
        return;
    const char *name, *model, *spec;
    if (!only_fields(j, fields, "", rep) || !req_name(j, "name", &name, rep) ||
        !req_name(j, "model", &model, rep) || !opt_string(j, "index", &spec, "", rep))
        goto out;
    if (spec && (spec[0] == '\0' || strlen(spec) > CD_SPEC_MAX)) {
        cd_reply_error(rep, 400, "invalid_index", "index must be a FAISS index-factory string of 1..%d bytes",
                       CD_SPEC_MAX);
        goto out;
    }
    cd_gallery g;
    cd_error err;
    cd_err rc = cd_engine_gallery_create(api->engine, name, model, spec, &g, &err);
    if (rc == CD_OK)
        cd_reply_json(rep, 201, gallery_json(&g));
    else if (rc == CD_EINVAL)
        cd_reply_error(rep, 400, "invalid_index", "%s", err.message);
    else
        cd_reply_core_error(rep, &err);
out:
    cJSON_Delete(j);
}

static void galleries_list(cd_api *api, cd_reply *rep)
{
    cd_gallery *gs = NULL;
    size_t n = 0;
    cd_error err;
    cd_err rc = cd_engine_gallery_list(api->engine, &gs, &n, &err);
    if (rc == CD_OK) {
        cJSON *root = cJSON_CreateObject();
        cJSON *arr = cJSON_AddArrayToObject(root, "galleries");
        for (size_t i = 0; i < n; i++)
            cJSON_AddItemToArray(arr, gallery_json(&gs[i]));
        cd_reply_json(rep, 200, root);
    }
    reply_error_or(rep, rc, &err);
    free(gs);
}

static void galleries_get(cd_api *api, const char *name, cd_reply *rep)
{
    cd_gallery g;
    cd_error err;
    cd_model_count *counts = NULL;
    size_t n = 0;
    cd_err rc = cd_engine_gallery_get(api->engine, name, &g, &err);
    if (rc == CD_OK)
        rc = cd_engine_gallery_embeddings(api->engine, name, &counts, &n, &err);
    if (rc != CD_OK) {
        cd_reply_core_error(rep, &err);
        return;
    }
    cJSON *root = gallery_json(&g);
    cd_error why;
    bool down = cd_engine_gallery_unavailable(api->engine, name, &why);
    cJSON_AddStringToObject(root, "state", down ? "unavailable" : "ready");
    if (down)
        cJSON_AddStringToObject(root, "error", why.message);
    cJSON *emb = cJSON_AddObjectToObject(root, "embeddings");
    cJSON *qm = cJSON_AddArrayToObject(root, "query_models");
    for (size_t i = 0; i < n; i++) {
        cJSON_AddNumberToObject(emb, counts[i].model, (double)counts[i].items);
    }
    /* Every other model of the same dim and metric could query it; its
     * status comes from its latest evaluation here, else from its
     * compatible_with chain. */
    cd_model gm, *all = NULL;
    cd_evaluation *evs = NULL;
    size_t n_all = 0, n_evs = 0;
    if (cd_engine_model_get(api->engine, g.model, &gm, &err) == CD_OK &&
        cd_engine_model_list(api->engine, &all, &n_all, &err) == CD_OK &&
        cd_engine_evaluation_latest(api->engine, name, &evs, &n_evs, &err) == CD_OK) {
        for (size_t i = 0; i < n_all; i++) {
            if (all[i].id == gm.id || all[i].dim != gm.dim || all[i].metric != gm.metric)
                continue;
            const cd_evaluation *ev = NULL;
            for (size_t e = 0; e < n_evs && !ev; e++)
                if (evs[e].query_model_id == all[i].id)
                    ev = &evs[e];
            const char *status;
            if (ev && ev->compatible == 1)
                status = "verified";
            else if (ev && ev->compatible == 0)
                status = "failed";
            else if (cd_engine_declared_compatible(api->engine, &all[i], gm.name))
                status = "declared";
            else
                status = "unverified";
            cJSON *o = cJSON_CreateObject();
            cJSON_AddStringToObject(o, "model", all[i].name);
            cJSON_AddStringToObject(o, "status", status);
            if (ev)
                cJSON_AddItemToObject(o, "evaluation", evaluation_brief(ev));
            else
                cJSON_AddNullToObject(o, "evaluation");
            cJSON_AddItemToArray(qm, o);
        }
    }
    cd_evaluations_destroy(evs, n_evs);
    free(all);
    free(counts);
    cd_reply_json(rep, 200, root);
}

static void galleries_patch(cd_api *api, const cd_request *req, const char *name,
                            cd_reply *rep)
{
    static const char *const fields[] = {"query_policy", NULL};
    cJSON *j = parse_body(req, rep);
    if (!j)
        return;
    const char *policy;
    cd_query_policy p;
    if (!only_fields(j, fields, "", rep) || !opt_string(j, "query_policy", &policy, "", rep))
        goto out;
    if (!policy || !cd_policy_parse(policy, &p)) {
        cd_reply_error(rep, 400, "invalid_argument",
                       "query_policy must be verified, declared or any");
        goto out;
    }
    cd_error err;
    cd_err rc = cd_engine_gallery_set_policy(api->engine, name, p, &err);
    if (rc == CD_OK)
        galleries_get(api, name, rep);
    reply_error_or(rep, rc, &err);
out:
    cJSON_Delete(j);
}

static void galleries_delete(cd_api *api, const char *name, cd_reply *rep)
{
    cd_error err;
    cd_err rc = cd_engine_gallery_delete(api->engine, name, &err);
    if (rc == CD_OK)
        cd_reply_text(rep, 204, NULL, "", 0);
    reply_error_or(rep, rc, &err);
}

/* --- items ------------------------------------------------------------ */

/* The model a request names (or the gallery's), with its dim. */
static bool request_model(cd_api *api, const char *gallery, const char *model,
                          cd_model *out, cd_reply *rep)
{
    cd_error err;
    cd_err rc = cd_engine_request_model(api->engine, gallery, model, out, &err);
    if (rc != CD_OK) {
        cd_reply_core_error(rep, &err);
        return false;
    }
    return true;
}

static void items_upsert(cd_api *api, const cd_request *req, const char *gallery,
                         cd_reply *rep)
{
    static const char *const fields[] = {"model", "items", NULL};
    static const char *const item_fields[] = {"id", "label", "metadata", "vector",
                                              "vector_b64", NULL};
    cJSON *j = parse_body(req, rep);
    cd_item_in *items = NULL;
    char **texts = NULL;    /* labels from numbers and metadata, to free */
    float *vecs = NULL;
    size_t n = 0, n_texts = 0;
    cd_limits lim = limits_of(api);
    if (!j)
        return;
    const char *model;
    cd_model m;
    if (!only_fields(j, fields, "", rep) || !opt_string(j, "model", &model, "", rep))
        goto out;
    if (model && !cd_name_valid(model)) {
        cd_reply_error(rep, 400, "invalid_name", "model must match [A-Za-z0-9._-]{1,64}");
        goto out;
    }
    const cJSON *arr = cJSON_GetObjectItemCaseSensitive(j, "items");
    if (!cJSON_IsArray(arr) || cJSON_GetArraySize(arr) == 0) {
        cd_reply_error(rep, 400, "invalid_argument", "items must be a non-empty array");
        goto out;
    }
    n = (size_t)cJSON_GetArraySize(arr);
    if (n > lim.max_batch) {
        cd_reply_error(rep, 413, "batch_too_large", "a batch holds at most %zu items, got %zu",
                       lim.max_batch, n);
        goto out;
    }
    if (!request_model(api, gallery, model, &m, rep))
        goto out;
    items = calloc(n, sizeof *items);
    texts = calloc(2 * n, sizeof *texts);
    vecs = malloc(n * (size_t)m.dim * sizeof *vecs);
    if (!items || !texts || !vecs) {
        cd_reply_error(rep, 503, "out_of_memory", "out of memory for %zu items", n);
        goto out;
    }
    size_t i = 0;
    const cJSON *it;
    const char *it_text = member_text(req->body, child_index(j, arr));
    it_text = member_text(it_text, 0);
    cJSON_ArrayForEach(it, arr) {
        char where[48];
        snprintf(where, sizeof where, "item %zu: ", i);
        if (i > 0)      /* past the previous item and its ',' */
            it_text = skip_ws(skip_ws(skip_value(it_text)) + 1);
        if (!cJSON_IsObject(it)) {
            cd_reply_error(rep, 400, "invalid_argument", "%smust be an object", where);
            goto out;
        }
        if (!only_fields(it, item_fields, where, rep))
            goto out;
        const cJSON *id = cJSON_GetObjectItemCaseSensitive(it, "id");
        if (!cJSON_IsString(id) || id->valuestring[0] == '\0' ||
            strlen(id->valuestring) > CD_ITEM_ID_MAX) {
            cd_reply_error(rep, 400, "invalid_id", "%sid must be a string of 1..%d bytes", where,
                           CD_ITEM_ID_MAX);
            goto out;
        }
        items[i].id = id->valuestring;
        const cJSON *label = cJSON_GetObjectItemCaseSensitive(it, "label");
        if (label && cJSON_IsString(label)) {
            items[i].label = label->valuestring;
        } else if (label && cJSON_IsNumber(label) && label->valuedouble == floor(label->valuedouble) &&
                   fabs(label->valuedouble) < 1e15) {
            char buf[32];
            snprintf(buf, sizeof buf, "%.0f", label->valuedouble);
            items[i].label = texts[n_texts++] = strdup(buf);
        } else if (label && !cJSON_IsNull(label)) {
            cd_reply_error(rep, 400, "invalid_label", "%slabel must be a string or an integer", where);
            goto out;
        }
        if (items[i].label && strlen(items[i].label) > CD_LABEL_MAX) {
            cd_reply_error(rep, 400, "invalid_label", "%slabel is longer than %d bytes", where,
                           CD_LABEL_MAX);
            goto out;
        }
        const cJSON *meta = cJSON_GetObjectItemCaseSensitive(it, "metadata");
        if (meta && !cJSON_IsNull(meta)) {
            if (!cJSON_IsObject(meta)) {
                cd_reply_error(rep, 400, "invalid_metadata", "%smetadata must be a JSON object", where);
                goto out;
            }
            if (!numbers_finite(meta)) {
                cd_reply_error(rep, 400, "invalid_metadata",
                               "%smetadata has a number too large for a double", where);
                goto out;
            }
            /* Its own text, not cJSON's print: that rounds every number
             * to a double (2^53 + 1, 12345678901234567891, -0). */
            char *text = minified_text(member_text(it_text, child_index(it, meta)));
            if (!text) {
                cd_reply_error(rep, 503, "out_of_memory", "%sout of memory", where);
                goto out;
            }
            texts[n_texts++] = text;
            if (strlen(text) > lim.max_metadata) {
                cd_reply_error(rep, 400, "invalid_metadata", "%smetadata is %zu bytes, the limit is %zu",
                               where, strlen(text), lim.max_metadata);
                goto out;
            }
            items[i].metadata = text;
        }
        float *v = vecs + i * (size_t)m.dim;
        if (!read_vector(it, &m, v, where, rep))
            goto out;
        items[i].vector = v;
        i++;
    }
    cd_error err;
    cd_err rc = cd_engine_items_upsert(api->engine, gallery, m.name, items, n, &err);
    if (rc == CD_OK) {
        cJSON *root = cJSON_CreateObject();
        cJSON_AddNumberToObject(root, "upserted", (double)n);
        cd_reply_json(rep, 200, root);
    }
    reply_error_or(rep, rc, &err);
out:
    for (size_t t = 0; texts && t < n_texts; t++)
        free(texts[t]);
    free(texts);
    free(items);
    free(vecs);
    cJSON_Delete(j);
}

static void items_get(cd_api *api, const cd_request *req, const char *gallery,
                      const char *id, cd_reply *rep)
{
    const char *vectors = cd_request_arg(req, "vectors");
    bool with_vectors = vectors && (strcmp(vectors, "true") == 0 || strcmp(vectors, "1") == 0);
    if (vectors && !with_vectors && strcmp(vectors, "false") != 0 && strcmp(vectors, "0") != 0) {
        cd_reply_error(rep, 400, "invalid_argument", "vectors must be true or false");
        return;
    }
    cd_item *item = NULL;
    cd_error err;
    cd_err rc = cd_engine_item_get(api->engine, gallery, id, with_vectors, &item, &err);
    if (rc != CD_OK) {
        cd_reply_core_error(rep, &err);
        return;
    }
    cJSON *root = cJSON_CreateObject();
    cJSON_AddStringToObject(root, "id", item->id);
    if (item->label)
        cJSON_AddStringToObject(root, "label", item->label);
    else
        cJSON_AddNullToObject(root, "label");
    add_metadata(root, item->metadata);
    cJSON *models = cJSON_AddArrayToObject(root, "models");
    cJSON *vecs = with_vectors ? cJSON_AddObjectToObject(root, "vectors") : NULL;
    for (size_t i = 0; i < item->n_embeddings; i++) {
        const cd_item_embedding *em = &item->embeddings[i];
        cJSON_AddItemToArray(models, cJSON_CreateString(em->model));
        if (vecs && em->vector) {
            cJSON *a = cJSON_CreateArray();
            for (int d = 0; d < em->dim; d++)
                cJSON_AddItemToArray(a, cJSON_CreateNumber(em->vector[d]));
            cJSON_AddItemToObject(vecs, em->model, a);
        }
    }
    cd_item_destroy(item);
    cd_reply_json(rep, 200, root);
}

static void items_delete(cd_api *api, const char *gallery, const char *id, cd_reply *rep)
{
    cd_error err;
    cd_err rc = cd_engine_item_delete(api->engine, gallery, id, &err);
    if (rc == CD_OK)
        cd_reply_text(rep, 204, NULL, "", 0);
    reply_error_or(rep, rc, &err);
}

/* --- search ----------------------------------------------------------- */

/* The search reply of SPEC 3.4, written as text (text_buf). */
static void render_search(const cd_search_result *res, unsigned include, cd_reply *rep)
{
    text_buf b = {0};
    put_text(&b, "{\"model\":");
    put_string(&b, res->model);
    put_text(&b, ",\"results\":[");
    for (size_t i = 0; i < res->nq && !b.failed; i++) {
        put_text(&b, i ? ",[" : "[");
        for (size_t h = 0; h < res->counts[i]; h++) {
            const cd_hit *hit = &res->hits[i * res->k + h];
            put_text(&b, h ? ",{\"id\":" : "{\"id\":");
            put_string(&b, hit->item.id);
            put_text(&b, ",\"score\":");
            put_number(&b, hit->score);
            if (include & CD_INCLUDE_LABEL) {
                put_text(&b, ",\"label\":");
                if (hit->item.label)
                    put_string(&b, hit->item.label);
                else
                    put_text(&b, "null");
            }
            if (include & CD_INCLUDE_METADATA) {
                put_text(&b, ",\"metadata\":");
                put_text(&b, metadata_valid(hit->item.metadata) ? hit->item.metadata : "null");
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
        put_text(&b, "}");
    }
    put_text(&b, "]}");
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
        cd_reply_error(rep, 400, "result_too_large",
                       "a search returns at most %zu results (--max-results); "
                       "this one asks for %zu queries x k %zu = %zu",
                       lim->max_results, nq, k, rows);
        return false;
    }
    size_t meta_rows = lim->max_result_metadata / lim->max_metadata;
    if ((include & CD_INCLUDE_METADATA) && rows > meta_rows) {
        cd_reply_error(rep, 400, "result_too_large",
                       "with metadata a search returns at most %zu results (--max-result-metadata "
                       "%zu bytes / --max-metadata %zu bytes); this one asks for %zu queries x k %zu = %zu",
                       meta_rows, lim->max_result_metadata, lim->max_metadata, nq, k, rows);
        return false;
    }
    return true;
}

static void search(cd_api *api, const cd_request *req, const char *gallery, cd_reply *rep)
{
    static const char *const fields[] = {"model", "k", "vector", "vector_b64", "vectors",
                                         "include", NULL};
    cJSON *j = parse_body(req, rep);
    float *q = NULL;
    cd_search_result *res = NULL;
    if (!j)
        return;
    const char *model;
    cd_model m;
    long k = 10;
    unsigned include = 0;
    cd_limits lim = limits_of(api);
    if (!only_fields(j, fields, "", rep) || !opt_string(j, "model", &model, "", rep))
        goto out;
    if (model && !cd_name_valid(model)) {
        cd_reply_error(rep, 400, "invalid_name", "model must match [A-Za-z0-9._-]{1,64}");
        goto out;
    }
    const cJSON *kf = cJSON_GetObjectItemCaseSensitive(j, "k");
    if (kf && !int_in(kf, 1, lim.max_k, &k)) {
        cd_reply_error(rep, 400, "invalid_k", "k must be an integer 1..%d", lim.max_k);
        goto out;
    }
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
        cd_reply_error(rep, 400, "invalid_vector", "give exactly one of vector, vector_b64 or vectors");
        goto out;
    }
    size_t nq = 1;
    if (many) {
        if (!cJSON_IsArray(many) || cJSON_GetArraySize(many) == 0) {
            cd_reply_error(rep, 400, "invalid_vector", "vectors must be a non-empty array");
            goto out;
        }
        nq = (size_t)cJSON_GetArraySize(many);
        if (nq > lim.max_queries) {
            cd_reply_error(rep, 413, "batch_too_large", "at most %zu query vectors per request, got %zu",
                           lim.max_queries, nq);
            goto out;
        }
    }
    if (!result_size_ok(&lim, nq, (size_t)k, include, rep) ||
        !request_model(api, gallery, model, &m, rep))
        goto out;
    q = malloc(nq * (size_t)m.dim * sizeof *q);
    if (!q) {
        cd_reply_error(rep, 503, "out_of_memory", "out of memory for %zu queries", nq);
        goto out;
    }
    if (many) {
        size_t i = 0;
        const cJSON *v;
        cJSON_ArrayForEach(v, many) {
            char where[48];
            snprintf(where, sizeof where, "query %zu: ", i);
            if (!read_vector_value(v, cJSON_IsString(v), &m, q + i * (size_t)m.dim, where, rep))
                goto out;
            i++;
        }
    } else if (!read_vector_value(one ? one : one_b64, one_b64 != NULL, &m, q, "", rep)) {
        goto out;
    }
    cd_error err;
    cd_err rc = cd_engine_search(api->engine, gallery, m.name, q, nq, (size_t)k, include, &res, &err);
    if (rc != CD_OK) {
        cd_reply_core_error(rep, &err);
        goto out;
    }
    render_search(res, include, rep);
    goto out;
bad_include:
    cd_reply_error(rep, 400, "invalid_argument", "include must be an array of \"label\" and \"metadata\"");
out:
    cd_search_result_destroy(res);
    free(q);
    cJSON_Delete(j);
}

/* --- evaluations ------------------------------------------------------ */

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
    cJSON_AddStringToObject(j, "created_at", ev->created_at);
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
        if (!int_in(x, 1, CD_K_MAX, &k))
            goto bad;
        bool seen = false;
        for (size_t i = 0; i < n && !seen; i++)
            seen = ks[i] == (int)k;
        if (seen)
            continue;
        if (n == CD_EVAL_KS_MAX) {
            cd_reply_error(rep, 400, "invalid_k", "ks holds at most %d distinct values",
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
    cd_reply_error(rep, 400, "invalid_k", "ks must be a non-empty array of integers 1..%d",
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
    cd_reply_error(rep, 400, "invalid_argument",
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

/* A label given as a string or an integer; NULL in *out for none. */
static bool read_label(const cJSON *it, const char *where, probe_buf *p,
                       const char **out, cd_reply *rep)
{
    const cJSON *label = cJSON_GetObjectItemCaseSensitive(it, "label");
    *out = NULL;
    if (!label || cJSON_IsNull(label))
        return true;
    if (cJSON_IsString(label)) {
        *out = label->valuestring;
    } else if (cJSON_IsNumber(label) && label->valuedouble == floor(label->valuedouble) &&
               fabs(label->valuedouble) < 1e15) {
        char buf[32];
        snprintf(buf, sizeof buf, "%.0f", label->valuedouble);
        char *copy = strdup(buf);
        if (!copy) {
            cd_reply_error(rep, 503, "out_of_memory", "%sout of memory", where);
            return false;
        }
        p->owned[p->n_owned++] = copy;
        *out = copy;
    } else {
        cd_reply_error(rep, 400, "invalid_label", "%slabel must be a string or an integer", where);
        return false;
    }
    if ((*out)[0] == '\0' || strlen(*out) > CD_LABEL_MAX) {
        cd_reply_error(rep, 400, "invalid_label", "%slabel must be 1..%d bytes", where,
                       CD_LABEL_MAX);
        return false;
    }
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
        cd_reply_error(rep, 400, "invalid_argument", "%s must be a non-empty array", what);
        return false;
    }
    size_t n = (size_t)cJSON_GetArraySize(arr), dim = (size_t)m->dim;
    if (n > max_probes) {
        cd_reply_error(rep, 413, "batch_too_large",
                       "%s holds at most %zu probes per evaluation, got %zu", what,
                       max_probes, n);
        return false;
    }
    p->ids = calloc(n, sizeof *p->ids);
    p->labels = calloc(n, sizeof *p->labels);
    p->owned = calloc(n, sizeof *p->owned);
    p->vectors = malloc(n * dim * sizeof *p->vectors);
    if (!p->ids || !p->labels || !p->owned || !p->vectors) {
        cd_reply_error(rep, 503, "out_of_memory", "out of memory for %zu %s", n, what);
        return false;
    }
    const char *single = strcmp(what, "queries") == 0 ? "query" : what;
    const cJSON *it;
    cJSON_ArrayForEach(it, arr) {
        char where[64];
        size_t i = p->n;
        snprintf(where, sizeof where, "%s %zu: ", single, i);
        if (!cJSON_IsObject(it)) {
            cd_reply_error(rep, 400, "invalid_argument", "%smust be an object", where);
            return false;
        }
        if (!only_fields(it, fields, where, rep))
            return false;
        const cJSON *id = cJSON_GetObjectItemCaseSensitive(it, "id");
        if (!cJSON_IsString(id) || id->valuestring[0] == '\0' ||
            strlen(id->valuestring) > CD_ITEM_ID_MAX) {
            cd_reply_error(rep, 400, "invalid_id", "%sid must be a string of 1..%d bytes", where,
                           CD_ITEM_ID_MAX);
            return false;
        }
        p->ids[i] = id->valuestring;
        if (!read_label(it, where, p, &p->labels[i], rep))
            return false;
        if (need_label && !p->labels[i]) {
            cd_reply_error(rep, 400, "invalid_label", "%slabel is required", where);
            return false;
        }
        if (!read_vector(it, m, p->vectors + i * dim, where, rep))
            return false;
        p->n++;
    }
    return true;
}

static void evaluations_create(cd_api *api, const cd_request *req, const char *gallery,
                               cd_reply *rep)
{
    static const char *const fields[] = {"query_model", "queries", "baseline", "ks",
                                         "primary_metric", NULL};
    cJSON *j = parse_body(req, rep);
    probe_buf probes = {0}, base = {0};
    cd_evaluation ev = {0};
    if (!j)
        return;
    const char *qname, *primary_s;
    int ks[CD_EVAL_KS_MAX], primary;
    size_t n_ks;
    cd_model qm, gm;
    if (!only_fields(j, fields, "", rep) || !req_name(j, "query_model", &qname, rep) ||
        !read_ks(cJSON_GetObjectItemCaseSensitive(j, "ks"), ks, &n_ks, rep) ||
        !opt_string(j, "primary_metric", &primary_s, "", rep) ||
        !read_primary(primary_s, ks, n_ks, &primary, rep))
        goto out;
    if (!request_model(api, gallery, NULL, &gm, rep) ||
        !request_model(api, gallery, qname, &qm, rep))
        goto out;
    if (qm.dim != gm.dim) {
        cd_reply_error(rep, 400, "dimension_mismatch",
                       "query model %s has dim %d, gallery %s is of model %s with dim %d",
                       qm.name, qm.dim, gallery, gm.name, gm.dim);
        goto out;
    }
    const cJSON *b = cJSON_GetObjectItemCaseSensitive(j, "baseline");
    size_t max_probes = limits_of(api).max_eval_probes;
    if (!read_probes(cJSON_GetObjectItemCaseSensitive(j, "queries"), "queries", &qm, true,
                     max_probes, &probes, rep) ||
        (b && !cJSON_IsNull(b) &&
         !read_probes(b, "baseline", &gm, false, max_probes, &base, rep)))
        goto out;

    cd_eval_request er = {
        .gallery = gallery,
        .query_model = qm.name,
        .probes = {probes.n, probes.vectors, probes.ids, probes.labels},
        .baseline = {base.n, base.vectors, base.ids, base.labels},
        .ks = ks,
        .n_ks = n_ks,
        .primary_k = primary,
    };
    cd_error err;
    if (cd_engine_evaluation_run(api->engine, &er, &ev, &err) != CD_OK) {
        cd_reply_core_error(rep, &err);
        goto out;
    }
    cd_reply_json(rep, 201, report_json(&ev, true));
out:
    cd_evaluation_finish(&ev);
    probe_buf_finish(&probes);
    probe_buf_finish(&base);
    cJSON_Delete(j);
}

/* Parses a positive decimal id; false for anything else. */
static bool parse_id(const char *s, int64_t *out)
{
    if (!s || *s < '1' || *s > '9' || strlen(s) > 18)
        return false;
    char *end;
    long long v = strtoll(s, &end, 10);
    if (*end)
        return false;
    *out = v;
    return true;
}

static void evaluations_get(cd_api *api, const char *id_s, cd_reply *rep)
{
    int64_t id;
    if (!parse_id(id_s, &id)) {
        cd_reply_error(rep, 400, "invalid_argument", "evaluation id must be a positive integer");
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
    if (limit_s && (!parse_id(limit_s, &limit) || limit > MAX_LIST_LIMIT)) {
        cd_reply_error(rep, 400, "invalid_argument", "limit must be an integer 1..%d",
                       MAX_LIST_LIMIT);
        return;
    }
    if (before_s && !parse_id(before_s, &before)) {
        cd_reply_error(rep, 400, "invalid_argument", "before must be an evaluation id");
        return;
    }
    if (model && !cd_name_valid(model)) {
        cd_reply_error(rep, 400, "invalid_name", "query_model must match [A-Za-z0-9._-]{1,64}");
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
static cJSON *evaluation_brief(const cd_evaluation *ev)
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
        int64_t ac_pairs = 0, ac_passed = 0;
        for (size_t e = 0; e < n_evs; e++) {
            const cd_evaluation *ev = &evs[e];
            if (ev->gallery_id != gs[i].id)
                continue;
            cJSON *p = evaluation_brief(ev);
            cJSON_AddStringToObject(p, "query_model", ev->query_model);
            cJSON_AddStringToObject(p, "gallery_model", ev->gallery_model);
            cJSON_AddNumberToObject(p, "evaluation", (double)ev->id);
            cJSON_AddStringToObject(p, "verdict", ev->compatible < 0 ? "none"
                                                  : ev->compatible ? "pass" : "fail");
            cJSON_AddItemToArray(pairs, p);
            /* Backward compatibility of a later model with an earlier one. */
            if (ev->query_model_id > ev->gallery_model_id && ev->compatible >= 0) {
                ac_pairs++;
                ac_passed += ev->compatible;
            }
        }
        cJSON *ac = cJSON_AddObjectToObject(g, "ac");
        cJSON_AddNumberToObject(ac, "pairs", (double)ac_pairs);
        cJSON_AddNumberToObject(ac, "passed", (double)ac_passed);
        add_real(ac, "share", ac_pairs ? (double)ac_passed / (double)ac_pairs : NAN);
        cJSON_AddItemToArray(arr, g);
    }
    cd_reply_json(rep, 200, root);
    free(gs);
    cd_evaluations_destroy(evs, n_evs);
}

/* --- operations ------------------------------------------------------- */

static void metrics_get(cd_api *api, cd_reply *rep)
{
    size_t len = 0;
    char *text = cd_metrics_render(api->metrics, api->engine, &len);
    if (!text) {
        cd_reply_error(rep, 503, "out_of_memory", "out of memory rendering metrics");
        return;
    }
    free(rep->body);
    rep->body = text;
    rep->len = len;
    rep->status = 200;
    rep->content_type = "text/plain; version=0.0.4";
}

/* Content type of an embedded file, by its name's ending. */
static const char *content_type_of(const char *name)
{
    static const struct {
        const char *ending, *type;
    } types[] = {
        {".html", "text/html; charset=utf-8"},
        {".js", "text/javascript; charset=utf-8"},
        {".css", "text/css; charset=utf-8"},
        {".svg", "image/svg+xml"},
        {".yaml", "application/yaml; charset=utf-8"},
    };
    size_t n = strlen(name);
    for (size_t i = 0; i < sizeof types / sizeof types[0]; i++) {
        size_t e = strlen(types[i].ending);
        if (n >= e && strcmp(name + n - e, types[i].ending) == 0)
            return types[i].type;
    }
    return "application/octet-stream";
}

/* Replies with the embedded file name of table, or 404. */
static void embedded_get(cd_reply *rep, const cd_embedded_file *table, size_t count,
                         const char *name)
{
    for (size_t i = 0; i < count; i++) {
        if (strcmp(table[i].name, name) == 0) {
            cd_reply_text(rep, 200, content_type_of(name), (const char *)table[i].data,
                          table[i].len);
            return;
        }
    }
    cd_reply_error(rep, 404, "not_found", "no dashboard file %s", name);
}

static void simple_status(cd_reply *rep, int status, const char *state)
{
    cJSON *root = cJSON_CreateObject();
    cJSON_AddStringToObject(root, "status", state);
    cd_reply_json(rep, status, root);
}

/* --- routing ---------------------------------------------------------- */

#define MAX_SEGMENTS 8

/* Splits path at '/' into at most max segments; the last one keeps the
 * rest of the path (item ids may hold '/').  Returns the count, or -1. */
static int split_path(char *path, char **seg, int max)
{
    int n = 0;
    char *p = path;
    if (*p != '/')
        return -1;
    p++;
    while (*p && n < max) {
        seg[n++] = p;
        if (n == max)
            break;
        char *slash = strchr(p, '/');
        if (!slash)
            break;
        *slash = '\0';
        p = slash + 1;
        if (*p == '\0')
            return -1; /* trailing slash */
    }
    return n;
}

static void method_not_allowed(cd_reply *rep, const char *method, const char *allow)
{
    cd_reply_error(rep, 405, "method_not_allowed", "%s is not allowed here (allowed: %s)",
                   method, allow);
    rep->allow = allow;
}

static bool is(const char *a, const char *b)
{
    return strcmp(a, b) == 0;
}

/* Whether method is one of methods, a list like "GET, PATCH, DELETE". */
static bool method_listed(const char *methods, const char *method)
{
    size_t n = strlen(method);
    for (const char *p = methods; *p;) {
        size_t len = strcspn(p, ",");
        if (len == n && strncmp(p, method, n) == 0)
            return true;
        p += len;
        while (*p == ',' || *p == ' ')
            p++;
    }
    return false;
}

/*
 * Every route, found by match_route() for both the scope check and the
 * dispatch, so that the two always agree on what a path is.
 */
typedef enum route_id {
    R_NONE = 0,         /* no route: 404 */
    R_DASHBOARD,
    R_ASSET,
    R_HEALTHZ,
    R_READYZ,
    R_METRICS,
    R_OPENAPI,
    R_MODELS,
    R_MODEL,
    R_GALLERIES,
    R_GALLERY,
    R_ITEMS,
    R_ITEM,
    R_SEARCH,
    R_EVALUATIONS,
    R_EVALUATION,
    R_COMPATIBILITY,
    R_COUNT
} route_id;

/* Each route's pattern (for logs, metrics and schema/openapi.yaml) and the
 * methods it answers: cd_api_handle answers any other with 405 and this
 * list as Allow before it dispatches. */
static const cd_route_info routes[R_COUNT] = {
    [R_NONE] = {"other", ""},
    [R_DASHBOARD] = {"/", "GET"},
    [R_ASSET] = {"/ui/{file}", "GET"},
    [R_HEALTHZ] = {"/healthz", "GET"},
    [R_READYZ] = {"/readyz", "GET"},
    [R_METRICS] = {"/metrics", "GET"},
    [R_OPENAPI] = {"/v1/openapi.yaml", "GET"},
    [R_MODELS] = {"/v1/models", "GET, POST"},
    [R_MODEL] = {"/v1/models/{name}", "GET"},
    [R_GALLERIES] = {"/v1/galleries", "GET, POST"},
    [R_GALLERY] = {"/v1/galleries/{g}", "GET, PATCH, DELETE"},
    [R_ITEMS] = {"/v1/galleries/{g}/items", "POST"},
    [R_ITEM] = {"/v1/galleries/{g}/items/{id}", "GET, DELETE"},
    [R_SEARCH] = {"/v1/galleries/{g}/search", "POST"},
    [R_EVALUATIONS] = {"/v1/galleries/{g}/evaluations", "GET, POST"},
    [R_EVALUATION] = {"/v1/evaluations/{id}", "GET"},
    [R_COMPATIBILITY] = {"/v1/compatibility", "GET"},
};

size_t cd_api_routes(const cd_route_info **out)
{
    *out = routes + 1;
    return R_COUNT - 1;
}

/*
 * The key scope each route and method needs (concepts.md §5): read to read and
 * search, write for items and running evaluations, admin for models and
 * galleries.  The probes need no key (Kubernetes asks them without one);
 * GET /metrics needs read unless --metrics-public.  The dashboard's page
 * and assets need none: they hold no data, and the page must load to ask
 * for a key.  Whatever is not listed (another method, a path of no route)
 * needs read: a client without a key learns nothing, not even which
 * routes exist.
 */
static const struct {
    route_id route;
    const char *method;     /* NULL: every method */
    cd_scope scope;         /* CD_SCOPE_NONE: no key needed */
} route_scopes[] = {
    {R_DASHBOARD, "GET", CD_SCOPE_NONE},
    {R_ASSET, "GET", CD_SCOPE_NONE},
    {R_HEALTHZ, NULL, CD_SCOPE_NONE},
    {R_READYZ, NULL, CD_SCOPE_NONE},
    {R_OPENAPI, "GET", CD_SCOPE_READ},
    {R_METRICS, NULL, CD_SCOPE_READ},
    {R_MODELS, "GET", CD_SCOPE_READ},
    {R_MODELS, "POST", CD_SCOPE_ADMIN},
    {R_MODEL, "GET", CD_SCOPE_READ},
    {R_GALLERIES, "GET", CD_SCOPE_READ},
    {R_GALLERIES, "POST", CD_SCOPE_ADMIN},
    {R_GALLERY, "GET", CD_SCOPE_READ},
    {R_GALLERY, "PATCH", CD_SCOPE_ADMIN},
    {R_GALLERY, "DELETE", CD_SCOPE_ADMIN},
    {R_ITEMS, "POST", CD_SCOPE_WRITE},
    {R_ITEM, "GET", CD_SCOPE_READ},
    {R_ITEM, "DELETE", CD_SCOPE_WRITE},
    {R_SEARCH, "POST", CD_SCOPE_READ},
    {R_EVALUATIONS, "GET", CD_SCOPE_READ},
    {R_EVALUATIONS, "POST", CD_SCOPE_WRITE},
    {R_EVALUATION, "GET", CD_SCOPE_READ},
    {R_COMPATIBILITY, "GET", CD_SCOPE_READ},
};

/* The route of path, which is split in place into seg (MAX_SEGMENTS). */
static route_id match_route(char *path, char **seg)
{
    int n = split_path(path, seg, 5);
    if (n == 0)
        return R_DASHBOARD;
    if (n == 2 && is(seg[0], "ui"))
        return R_ASSET;
    if (n == 1 && is(seg[0], "healthz"))
        return R_HEALTHZ;
    if (n == 1 && is(seg[0], "readyz"))
        return R_READYZ;
    if (n == 1 && is(seg[0], "metrics"))
        return R_METRICS;
    if (n < 2 || !is(seg[0], "v1"))
        return R_NONE;
    if (n == 2 && is(seg[1], "openapi.yaml"))
        return R_OPENAPI;
    if (is(seg[1], "models"))
        return n == 2 ? R_MODELS : n == 3 ? R_MODEL : R_NONE;
    if (is(seg[1], "galleries")) {
        if (n == 2)
            return R_GALLERIES;
        if (n == 3)
            return R_GALLERY;
        if (n == 4 && is(seg[3], "items"))
            return R_ITEMS;
        if (n == 5 && is(seg[3], "items"))
            return R_ITEM;
        if (n == 4 && is(seg[3], "search"))
            return R_SEARCH;
        if (n == 4 && is(seg[3], "evaluations"))
            return R_EVALUATIONS;
        return R_NONE;
    }
    if (n == 3 && is(seg[1], "evaluations"))
        return R_EVALUATION;
    if (n == 2 && is(seg[1], "compatibility"))
        return R_COMPATIBILITY;
    return R_NONE;
}

/* The method a request is routed as: HEAD is GET without the body
 * (RFC 9110 9.3.2; libmicrohttpd sends the headers only). */
static const char *routed_method(const char *method)
{
    return is(method, "HEAD") ? "GET" : method;
}

static cd_scope route_scope(const cd_api *api, route_id r, const char *method)
{
    if (r == R_METRICS && api->metrics_public)
        return CD_SCOPE_NONE;
    for (size_t i = 0; i < sizeof route_scopes / sizeof route_scopes[0]; i++)
        if (route_scopes[i].route == r &&
            (!route_scopes[i].method || is(route_scopes[i].method, method)))
            return route_scopes[i].scope;
    return CD_SCOPE_READ;
}

/*
 * Whether requests need a key: yes once any key row exists (revoked ones
 * too).  Rows are never deleted, so a yes is kept for good; until then
 * each request asks the store, so that the first key made with
 * `compatd keys create` while the daemon serves counts at once.
 */
cd_err cd_api_keys_required(cd_api *api, bool *out, cd_error *err)
{
    if (atomic_load(&api->keys_seen)) {
        *out = true;
        return CD_OK;
    }
    cd_err rc = cd_store_keys_exist(cd_engine_store(api->engine), out, err);
    if (rc == CD_OK && *out)
        atomic_store(&api->keys_seen, true);
    return rc;
}

static const char authenticate_bearer[] = "Bearer realm=\"compatd\"";
static const char authenticate_invalid[] =
    "Bearer realm=\"compatd\", error=\"invalid_token\"";

bool cd_api_authorize(cd_api *api, const cd_request *req, cd_reply *rep)
{
    char *seg[MAX_SEGMENTS];
    char *path = strdup(req->path);
    cd_error err;
    if (!path) {
        rep->route = "other";
        cd_reply_error(rep, 503, "out_of_memory", "out of memory");
        return false;
    }
    route_id r = match_route(path, seg);
    free(path);
    rep->route = routes[r].pattern;
    cd_scope need = route_scope(api, r, routed_method(req->method));
    if (need == CD_SCOPE_NONE)
        return true;
    bool required;
    if (cd_api_keys_required(api, &required, &err) != CD_OK) {
        cd_reply_core_error(rep, &err);
        return false;
    }
    if (!required)
        return true;
    if (!req->api_key) {
        rep->authenticate = authenticate_bearer;
        if (req->auth_invalid)
            cd_reply_error(rep, 401, "unauthorized",
                           "the Authorization header must be \"Bearer <key>\"");
        else
            cd_reply_error(rep, 401, "unauthorized",
                           "an API key is required: send \"Authorization: Bearer <key>\"");
        return false;
    }
    cd_key_status status;
    cd_api_key key;
    if (cd_keys_verify(cd_engine_store(api->engine), req->api_key, &status, &key,
                       &err) != CD_OK) {
        cd_reply_core_error(rep, &err);
        return false;
    }
    if (status != CD_KEY_ACTIVE) {
        rep->authenticate = authenticate_invalid;
        if (status == CD_KEY_REVOKED)
            cd_reply_error(rep, 401, "unauthorized", "API key %s was revoked at %s",
                           key.name, key.revoked_at);
        else
            cd_reply_error(rep, 401, "unauthorized", "unknown API key");
        return false;
    }
    if (key.scope < need) {
        cd_reply_error(rep, 403, "forbidden", "API key %s has scope %s; %s %s needs %s",
                       key.name, cd_scope_name(key.scope), req->method, rep->route,
                       cd_scope_name(need));
        return false;
    }
    return true;
}

/*
 * After a large request, gives the memory its handler freed back to the
 * system: glibc keeps freed pages of its arenas (one per thread) for
 * reuse, so without this one large search would leave the daemon at its
 * peak size for good.  The reply body, allocated whole, is unmapped when
 * it is freed after sending.
 */
static void return_memory(const cd_request *req, const cd_reply *rep)
{
#ifdef __GLIBC__
    if (req->body_len + rep->len >= TRIM_AFTER_BYTES)
        malloc_trim(0);
#else
    (void)req;
    (void)rep;
#endif
}

void cd_api_handle(cd_api *api, const cd_request *req, cd_reply *rep)
{
    char *path = strdup(req->path);
    char *seg[MAX_SEGMENTS];
    const char *M = routed_method(req->method);
    if (!path) {
        cd_reply_error(rep, 503, "out_of_memory", "out of memory");
        return;
    }
    rep->route = "other";
    if (!cd_utf8_valid(req->path, strlen(req->path))) {
        /* Also how a %00 arrives (see http.c): never echo such bytes. */
        cd_reply_error(rep, 400, "invalid_path", "request path is not valid UTF-8 or holds %%00");
        free(path);
        return;
    }
    route_id r = match_route(path, seg);
    rep->route = routes[r].pattern;
    if (r != R_NONE && !method_listed(routes[r].methods, M)) {
        method_not_allowed(rep, M, routes[r].methods);
        free(path);
        return;
    }
    /* From here on M is one of the route's methods. */
    switch (r) {
    case R_DASHBOARD:
    case R_ASSET:
        embedded_get(rep, cd__web_assets, cd__web_assets_count,
                     r == R_DASHBOARD ? "index.html" : seg[1]);
        break;
    case R_OPENAPI:
        embedded_get(rep, cd__openapi, cd__openapi_count, "openapi.yaml");
        break;
    case R_HEALTHZ:
        simple_status(rep, 200, "ok");
        break;
    case R_READYZ: {
        bool ready = cd_engine_ready(api->engine);
        simple_status(rep, ready ? 200 : 503, ready ? "ready" : "loading");
        break;
    }
    case R_METRICS:
        metrics_get(api, rep);
        break;
    case R_MODELS:
        if (is(M, "GET"))
            models_list(api, rep);
        else
            models_create(api, req, rep);
        break;
    case R_MODEL:
        models_get(api, seg[2], rep);
        break;
    case R_GALLERIES:
        if (is(M, "GET"))
            galleries_list(api, rep);
        else
            galleries_create(api, req, rep);
        break;
    case R_GALLERY:
        if (is(M, "GET"))
            galleries_get(api, seg[2], rep);
        else if (is(M, "PATCH"))
            galleries_patch(api, req, seg[2], rep);
        else
            galleries_delete(api, seg[2], rep);
        break;
    case R_ITEMS:
        items_upsert(api, req, seg[2], rep);
        break;
    case R_ITEM:
        if (is(M, "GET"))
            items_get(api, req, seg[2], seg[4], rep);
        else
            items_delete(api, seg[2], seg[4], rep);
        break;
    case R_SEARCH:
        search(api, req, seg[2], rep);
        break;
    case R_EVALUATIONS:
        if (is(M, "POST"))
            evaluations_create(api, req, seg[2], rep);
        else
            evaluations_list(api, req, seg[2], rep);
        break;
    case R_EVALUATION:
        evaluations_get(api, seg[2], rep);
        break;
    case R_COMPATIBILITY:
        compatibility_get(api, rep);
        break;
    case R_NONE:
    case R_COUNT:
        cd_reply_error(rep, 404, "no_route", "no route %s %s", M, req->path);
        break;
    }
    free(path);
    return_memory(req, rep);
}
