/*
 * request.c - the readers of request bodies (see request.h).  Nothing
 * here calls core but its checks of names and vectors: the handlers do.
 */
#include "request.h"

#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "text.h"
#include "vec.h"

const char *cd_request_arg(const cd_request *req, const char *name)
{
    return req->arg ? req->arg(req->conn, name) : NULL;
}

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
        cd_reply_error(rep, CD_HTTP_OUT_OF_MEMORY, "out of memory checking the request body");
        return false;
    }
    if (dup) {
        cd_reply_error(rep, CD_HTTP_DUPLICATE_KEY, "duplicate key \"%s\" in the object at %s",
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
cJSON *cd_json_body(const cd_request *req, cd_reply *rep)
{
    const char *ct = req->content_type;
    if (!ct || strncasecmp(ct, "application/json", 16) != 0 ||
        (ct[16] != '\0' && ct[16] != ';' && ct[16] != ' ')) {
        cd_reply_error(rep, CD_HTTP_UNSUPPORTED_MEDIA_TYPE,
                       "Content-Type must be application/json (got %s)", ct ? ct : "none");
        return NULL;
    }
    if (req->body_len == 0) {
        cd_reply_error(rep, CD_HTTP_INVALID_JSON, "request body is empty");
        return NULL;
    }
    if (!cd_utf8_valid(req->body, req->body_len)) {
        cd_reply_error(rep, CD_HTTP_INVALID_UTF8, "request body is not valid UTF-8");
        return NULL;
    }
    /* JSON's white space is space, tab, LF and CR, and a string holds no
     * raw control character (RFC 8259); cJSON lets every byte up to 0x20,
     * NUL included, pass as white space, which would put the text out of
     * step with the scans of the source text (cd_json_source_member). */
    for (size_t at = 0; at < req->body_len; at++) {
        unsigned char c = (unsigned char)req->body[at];
        if (c < 0x20 && c != '\t' && c != '\n' && c != '\r') {
            cd_reply_error(rep, CD_HTTP_INVALID_JSON,
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
            cd_reply_error(rep, CD_HTTP_INVALID_JSON,
                           "strings must not contain \\u0000 (byte %zu)", i);
            return NULL;
        }
        i += 2; /* past the backslash and the escaped character, e.g. "\\\\" */
    }
    const char *end = NULL;
    cJSON *j = cJSON_ParseWithLengthOpts(req->body, req->body_len, &end, 0);
    if (!j) {
        size_t at = end && end >= req->body ? (size_t)(end - req->body) : 0;
        cd_reply_error(rep, CD_HTTP_INVALID_JSON,
                       "request body is not valid JSON (near byte %zu) or nests deeper than %d",
                       at, CJSON_NESTING_LIMIT);
        return NULL;
    }
    /* Only white space may follow the value. */
    for (const char *p = end; p && p < req->body + req->body_len; p++) {
        if (*p != ' ' && *p != '\n' && *p != '\r' && *p != '\t') {
            cJSON_Delete(j);
            cd_reply_error(rep, CD_HTTP_INVALID_JSON,
                           "request body has data after the JSON value (byte %zu)",
                           (size_t)(p - req->body));
            return NULL;
        }
    }
    if (!cJSON_IsObject(j)) {
        cJSON_Delete(j);
        cd_reply_error(rep, CD_HTTP_INVALID_JSON, "request body must be a JSON object");
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
/* White space as cJSON skips it: every byte 1..32 (cd_json_body refuses
 * NUL), so that the two walks agree on where each value starts. */
static bool is_ws(char c)
{
    return c != '\0' && (unsigned char)c <= 32;
}

static const char *skip_ws(const char *p)
{
    while (is_ws(*p))
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
        while (*p && !strchr(",}]", *p) && !is_ws(*p))
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
const char *cd_json_source_member(const char *p, size_t index)
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
size_t cd_json_child_index(const cJSON *parent, const cJSON *child)
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
        } else if (is_ws(*p)) {
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
bool cd_json_only_fields(const cJSON *obj, const char *const *allowed,
                        const char *where, cd_reply *rep)
{
    const cJSON *f;
    cJSON_ArrayForEach(f, obj) {
        bool ok = false;
        for (size_t i = 0; allowed[i] && !ok; i++)
            ok = f->string && strcmp(f->string, allowed[i]) == 0;
        if (!ok) {
            cd_reply_error(rep, CD_HTTP_UNKNOWN_FIELD, "%sunknown field \"%s\"", where,
                           f->string ? f->string : "");
            return false;
        }
    }
    return true;
}

/* The string field name of obj: NULL when absent (ok), sets an error reply
 * when present but not a string. */
bool cd_json_string(const cJSON *obj, const char *name, const char **out,
                       const char *where, cd_reply *rep)
{
    const cJSON *f = cJSON_GetObjectItemCaseSensitive(obj, name);
    *out = NULL;
    if (!f || cJSON_IsNull(f))
        return true;
    if (!cJSON_IsString(f)) {
        cd_reply_error(rep, CD_HTTP_INVALID_ARGUMENT, "%s%s must be a string", where, name);
        return false;
    }
    *out = f->valuestring;
    return true;
}

bool cd_json_name(const cJSON *obj, const char *field, const char **out,
                     cd_reply *rep)
{
    if (!cd_json_string(obj, field, out, "", rep))
        return false;
    if (!*out) {
        cd_reply_error(rep, CD_HTTP_INVALID_ARGUMENT, "%s is required", field);
        return false;
    }
    if (!cd_name_valid(*out)) {
        cd_reply_error(rep, CD_HTTP_INVALID_NAME, "%s must match [A-Za-z0-9._-]{1,64}", field);
        return false;
    }
    return true;
}

/* An integral JSON number in [lo, hi]. */
bool cd_json_int(const cJSON *f, long lo, long hi, long *out)
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
    cd_reply_error(rep, CD_HTTP_INVALID_VECTOR,
                   "%svector's squared L2 norm %g is above %g: its scores would overflow float32",
                   where, norm2, CD_VEC_NORM2_MAX);
    return false;
}

/*
 * Reads one vector of dim floats into out from obj's "vector" (array of
 * numbers) or "vector_b64" field; exactly one must be present.  where
 * prefixes messages ("item 3: ").
 */
bool cd_json_vector_value(const cJSON *v, bool b64, const cd_model *m, float *out,
                              const char *where, cd_reply *rep)
{
    int dim = m->dim;
    const char *model = m->name;
    if (b64) {
        if (!cJSON_IsString(v)) {
            cd_reply_error(rep, CD_HTTP_INVALID_VECTOR, "%svector_b64 must be a string", where);
            return false;
        }
        size_t n = 0, len = strlen(v->valuestring);
        cd_error err;
        if (cd_b64_float_count(v->valuestring, len, &n, &err) != CD_OK) {
            cd_reply_error(rep, CD_HTTP_INVALID_VECTOR, "%s%s", where, err.message);
            return false;
        }
        if (n != (size_t)dim) {
            cd_reply_error(rep, CD_HTTP_DIMENSION_MISMATCH,
                           "%svector has %zu values, model %s has dim %d", where, n, model, dim);
            return false;
        }
        if (cd_b64_decode_floats_into(v->valuestring, len, out, &err) != CD_OK) {
            cd_reply_error(rep, CD_HTTP_INVALID_VECTOR, "%s%s", where, err.message);
            return false;
        }
        return vector_in_range(out, m, where, rep);
    }
    if (!cJSON_IsArray(v)) {
        cd_reply_error(rep, CD_HTTP_INVALID_VECTOR, "%svector must be an array of numbers", where);
        return false;
    }
    int n = cJSON_GetArraySize(v);
    if (n != dim) {
        cd_reply_error(rep, CD_HTTP_DIMENSION_MISMATCH,
                       "%svector has %d values, model %s has dim %d", where, n, model, dim);
        return false;
    }
    const cJSON *x;
    int i = 0;
    cJSON_ArrayForEach(x, v) {
        if (!cJSON_IsNumber(x)) {
            cd_reply_error(rep, CD_HTTP_INVALID_VECTOR, "%svector value %d is not a number", where, i);
            return false;
        }
        double d = x->valuedouble;
        if (!isfinite(d) || fabs(d) > FLT_MAX) {
            cd_reply_error(rep, CD_HTTP_INVALID_VECTOR,
                           "%svector value %d is not a finite float32", where, i);
            return false;
        }
        out[i++] = (float)d;
    }
    return vector_in_range(out, m, where, rep);
}

bool cd_json_vector(const cJSON *obj, const cd_model *m, float *out, const char *where,
                        cd_reply *rep)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, "vector");
    const cJSON *b = cJSON_GetObjectItemCaseSensitive(obj, "vector_b64");
    if ((v != NULL) == (b != NULL)) {
        cd_reply_error(rep, CD_HTTP_INVALID_VECTOR, "%sgive exactly one of vector or vector_b64",
                       where);
        return false;
    }
    return cd_json_vector_value(v ? v : b, b != NULL, m, out, where, rep);
}

/* True when stored metadata text is one JSON object and nothing else. */
bool cd_json_metadata_valid(const char *text)
{
    cJSON *m = text ? cJSON_ParseWithOpts(text, NULL, 1) : NULL;
    bool ok = cJSON_IsObject(m);
    cJSON_Delete(m);
    return ok;
}

/* Adds metadata text as its own bytes (null when absent or unparsable):
 * cJSON would print its numbers as doubles. */
void cd_json_add_metadata(cJSON *obj, const char *text)
{
    if (cd_json_metadata_valid(text))
        cJSON_AddRawToObject(obj, "metadata", text);
    else
        cJSON_AddNullToObject(obj, "metadata");
}

const char *cd_json_source_next(const char *p)
{
    return skip_ws(skip_ws(skip_value(p)) + 1);     /* past the value and its ',' */
}

bool cd_json_id(const cJSON *obj, const char *where, const char **out, cd_reply *rep)
{
    const cJSON *id = cJSON_GetObjectItemCaseSensitive(obj, "id");
    if (!cJSON_IsString(id) || id->valuestring[0] == '\0' ||
        strlen(id->valuestring) > CD_ITEM_ID_MAX) {
        cd_reply_error(rep, CD_HTTP_INVALID_ID, "%sid must be a string of 1..%d bytes", where,
                       CD_ITEM_ID_MAX);
        return false;
    }
    *out = id->valuestring;
    return true;
}

bool cd_json_label(const cJSON *obj, const char *where, bool allow_empty, char **owned,
                   const char **out, cd_reply *rep)
{
    const cJSON *label = cJSON_GetObjectItemCaseSensitive(obj, "label");
    *out = NULL;
    *owned = NULL;
    if (!label || cJSON_IsNull(label))
        return true;
    if (cJSON_IsString(label)) {
        *out = label->valuestring;
    } else if (cJSON_IsNumber(label) && label->valuedouble == floor(label->valuedouble) &&
               fabs(label->valuedouble) < 1e15) {
        char buf[32];
        snprintf(buf, sizeof buf, "%.0f", label->valuedouble);
        *owned = strdup(buf);
        if (!*owned) {
            cd_reply_error(rep, CD_HTTP_OUT_OF_MEMORY, "%sout of memory", where);
            return false;
        }
        *out = *owned;
    } else {
        cd_reply_error(rep, CD_HTTP_INVALID_LABEL, "%slabel must be a string or an integer",
                       where);
        return false;
    }
    if (strlen(*out) <= CD_LABEL_MAX && (allow_empty || (*out)[0] != '\0'))
        return true;
    if (allow_empty)
        cd_reply_error(rep, CD_HTTP_INVALID_LABEL, "%slabel is longer than %d bytes", where,
                       CD_LABEL_MAX);
    else
        cd_reply_error(rep, CD_HTTP_INVALID_LABEL, "%slabel must be 1..%d bytes", where,
                       CD_LABEL_MAX);
    free(*owned);
    *owned = NULL;
    *out = NULL;
    return false;
}

bool cd_json_metadata(const cJSON *obj, const char *obj_text, size_t max, const char *where,
                      char **out, cd_reply *rep)
{
    const cJSON *meta = cJSON_GetObjectItemCaseSensitive(obj, "metadata");
    *out = NULL;
    if (!meta || cJSON_IsNull(meta))
        return true;
    if (!cJSON_IsObject(meta)) {
        cd_reply_error(rep, CD_HTTP_INVALID_METADATA, "%smetadata must be a JSON object", where);
        return false;
    }
    if (!numbers_finite(meta)) {
        cd_reply_error(rep, CD_HTTP_INVALID_METADATA,
                       "%smetadata has a number too large for a double", where);
        return false;
    }
    /* Its own text, not cJSON's print: that rounds every number to a
     * double (2^53 + 1, 12345678901234567891, -0). */
    char *text = minified_text(cd_json_source_member(obj_text, cd_json_child_index(obj, meta)));
    if (!text) {
        cd_reply_error(rep, CD_HTTP_OUT_OF_MEMORY, "%sout of memory", where);
        return false;
    }
    if (strlen(text) > max) {
        cd_reply_error(rep, CD_HTTP_INVALID_METADATA, "%smetadata is %zu bytes, the limit is %zu",
                       where, strlen(text), max);
        free(text);
        return false;
    }
    *out = text;
    return true;
}

bool cd_parse_positive(const char *s, int64_t *out)
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
