/*
 * filter_json.c - the filter language of SPEC.md §3.9, from JSON to the
 * core's tree (core/filter.h).
 *
 * A filter is an object.  Each member is one condition and the members
 * of one object must all hold (an implicit and):
 *   "label": "alice"                       label equals
 *   "metadata.album": "x" | 3 | true       member equals
 *   "<field>": {"eq": v, "in": [v, ...],   operators, all of which must
 *               "gt": n, "gte": n,         hold; ranges take numbers
 *               "lt": n, "lte": n}
 *   "exists": "<field>"                    label set / member not null
 *   "and": [filter, ...], "or": [filter, ...], "not": filter
 * where <field> is `label` or `metadata.<name>` (a top-level member of
 * the item's metadata object) and values are strings, numbers or
 * booleans (a label compares with strings; an integer is read as its
 * decimal text, as upserts read labels).  Nesting is bounded by
 * CD_FILTER_DEPTH_MAX objects.  Every refusal is a 400 invalid_filter
 * whose message starts with the position of the problem, written as a
 * path from the request's member ("filter.and[1].metadata.year.gte").
 */
#include "request.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "filter.h"
#include "text.h"

#define PATH_MAX_LEN 384
#define CD_XSTR(x) #x
#define CD_STR(x) CD_XSTR(x)
#define FIELD_NAME_MAX 256

typedef struct parse {
    char path[PATH_MAX_LEN];
    size_t len;
    cd_reply *rep;
} parse;

/* Appends a segment to the path; returns the old length to restore. */
static size_t path_add(parse *p, const char *prefix, const char *key, size_t index)
{
    size_t old = p->len;
    size_t room = sizeof p->path - p->len;
    int n = key ? snprintf(p->path + p->len, room, "%s%s", prefix, key)
                : snprintf(p->path + p->len, room, "[%zu]", index);
    if (n > 0)
        p->len += (size_t)n < room ? (size_t)n : room - 1;
    return old;
}

static void path_pop(parse *p, size_t old)
{
    p->len = old;
    p->path[old] = '\0';
}

/* Replies invalid_filter: "<position>: <what>". */
static bool fail(parse *p, const char *what)
{
    cd_reply_error(p->rep, CD_HTTP_INVALID_FILTER, "%s: %s", p->path, what);
    return false;
}

static cd_filter *node_new(parse *p, cd_filter_op op)
{
    cd_filter *f = calloc(1, sizeof *f);
    if (!f)
        cd_reply_error(p->rep, CD_HTTP_OUT_OF_MEMORY, "out of memory reading the filter");
    else
        f->op = op;
    return f;
}

/*
 * Reads a field path: "label" (*name NULL) or "metadata.<name>" (*name
 * malloc'd).  False, with the reply set, for anything else.
 */
static bool read_field(parse *p, const char *s, char **name, bool *ok_field)
{
    *name = NULL;
    *ok_field = true;
    if (strcmp(s, "label") == 0)
        return true;
    if (strncmp(s, "metadata.", 9) == 0 && s[9] != '\0' &&
        strlen(s + 9) <= FIELD_NAME_MAX) {
        *name = strdup(s + 9);
        if (!*name) {
            cd_reply_error(p->rep, CD_HTTP_OUT_OF_MEMORY, "out of memory reading the filter");
            return false;
        }
        return true;
    }
    *ok_field = false;
    return false;
}

/* Reads a compared value; label: strings (or an integer's text) only. */
static bool read_value(parse *p, const cJSON *v, bool label, cd_value *out)
{
    memset(out, 0, sizeof *out);
    if (cJSON_IsString(v)) {
        out->type = CD_VALUE_STRING;
        out->str = strdup(v->valuestring);
    } else if (cJSON_IsNumber(v) && label) {
        double d = v->valuedouble;
        if (d != floor(d) || fabs(d) >= 1e15)
            return fail(p, "a label is a string (or an integer below 1e15)");
        char buf[32];
        snprintf(buf, sizeof buf, "%" PRId64, (int64_t)d);
        out->type = CD_VALUE_STRING;
        out->str = strdup(buf);
    } else if (cJSON_IsNumber(v)) {
        if (!isfinite(v->valuedouble))
            return fail(p, "a number too large for a double");
        out->type = CD_VALUE_NUMBER;
        out->num = v->valuedouble;
        return true;
    } else if (cJSON_IsBool(v) && !label) {
        out->type = CD_VALUE_BOOL;
        out->b = cJSON_IsTrue(v);
        return true;
    } else {
        return fail(p, label ? "a label compares with a string"
                    : "a value to compare must be a string, a number or a boolean "
                      "(use exists for presence)");
    }
    if (!out->str) {
        cd_reply_error(p->rep, CD_HTTP_OUT_OF_MEMORY, "out of memory reading the filter");
        return false;
    }
    return true;
}

/* Adds kid to and-node *all, making it when NULL. */
static bool and_add(parse *p, cd_filter **all, cd_filter *kid)
{
    if (!*all && !(*all = node_new(p, CD_FILTER_AND)))
        return false;
    cd_filter **kids = realloc((*all)->kids, ((*all)->n_kids + 1) * sizeof *kids);
    if (!kids) {
        cd_reply_error(p->rep, CD_HTTP_OUT_OF_MEMORY, "out of memory reading the filter");
        return false;
    }
    (*all)->kids = kids;
    kids[(*all)->n_kids++] = kid;
    return true;
}

/* Reads the condition on one field (v is its value) into *out. */
static bool read_condition(parse *p, const char *key, const cJSON *v, cd_filter **out)
{
    char *name = NULL;
    bool ok_field;
    *out = NULL;
    if (!read_field(p, key, &name, &ok_field)) {
        if (ok_field)
            return false;
        return fail(p, "unknown field or operator: a condition is on label or "
                    "metadata.<name>, or one of and, or, not, exists");
    }
    bool label = name == NULL;
    cd_filter *all = NULL;
    if (!cJSON_IsObject(v)) {   /* shorthand for eq */
        cd_filter *f = node_new(p, CD_FILTER_EQ);
        if (!f)
            goto fail;
        f->field = name;
        name = NULL;
        *out = f;
        if (!(f->values = calloc(1, sizeof *f->values))) {
            cd_reply_error(p->rep, CD_HTTP_OUT_OF_MEMORY, "out of memory reading the filter");
            goto fail;
        }
        f->n_values = 1;
        if (!read_value(p, v, label, &f->values[0]))
            goto fail;
        return true;
    }
    if (!v->child) {
        fail(p, "no operator (eq, in, gt, gte, lt, lte)");
        goto fail;
    }
    cd_filter *range = NULL;
    const cJSON *op;
    cJSON_ArrayForEach(op, v) {
        size_t mark = path_add(p, ".", op->string, 0);
        const char *o = op->string;
        bool is_range = strcmp(o, "gt") == 0 || strcmp(o, "gte") == 0 ||
                        strcmp(o, "lt") == 0 || strcmp(o, "lte") == 0;
        if (is_range) {
            if (label || cJSON_IsString(op)) {
                fail(p, "a range compares numbers, not strings");
                goto fail;
            }
            if (!cJSON_IsNumber(op) || !isfinite(op->valuedouble)) {
                fail(p, "a range bound must be a number");
                goto fail;
            }
            if (!range) {
                if (!(range = node_new(p, CD_FILTER_RANGE)) || !and_add(p, &all, range)) {
                    cd_filter_destroy(range);
                    goto fail;
                }
                if (name && !(range->field = strdup(name))) {
                    cd_reply_error(p->rep, CD_HTTP_OUT_OF_MEMORY, "out of memory reading the filter");
                    goto fail;
                }
            }
            if (o[0] == 'g') {
                range->has_lo = true;
                range->lo_incl = o[2] == 'e';
                range->lo = op->valuedouble;
            } else {
                range->has_hi = true;
                range->hi_incl = o[2] == 'e';
                range->hi = op->valuedouble;
            }
        } else if (strcmp(o, "eq") == 0 || strcmp(o, "in") == 0) {
            bool in = o[0] == 'i';
            size_t n = 1;
            if (in) {
                if (!cJSON_IsArray(op) || cJSON_GetArraySize(op) == 0 ||
                    cJSON_GetArraySize(op) > CD_FILTER_LIST_MAX) {
                    fail(p, "in takes an array of 1.." CD_STR(CD_FILTER_LIST_MAX) " values");
                    goto fail;
                }
                n = (size_t)cJSON_GetArraySize(op);
            }
            cd_filter *f = node_new(p, in ? CD_FILTER_IN : CD_FILTER_EQ);
            if (!f || !and_add(p, &all, f)) {
                cd_filter_destroy(f);
                goto fail;
            }
            f->values = calloc(n, sizeof *f->values);
            if ((name && !(f->field = strdup(name))) || !f->values) {
                cd_reply_error(p->rep, CD_HTTP_OUT_OF_MEMORY, "out of memory reading the filter");
                goto fail;
            }
            if (!in) {
                f->n_values = 1;
                if (!read_value(p, op, label, &f->values[0]))
                    goto fail;
            } else {
                const cJSON *x;
                cJSON_ArrayForEach(x, op) {
                    size_t m2 = path_add(p, "", NULL, f->n_values);
                    bool ok = read_value(p, x, label, &f->values[f->n_values]);
                    f->n_values++;
                    path_pop(p, m2);
                    if (!ok)
                        goto fail;
                }
            }
        } else {
            fail(p, "unknown operator: one of eq, in, gt, gte, lt, lte");
            goto fail;
        }
        path_pop(p, mark);
    }
    free(name);
    if (all->n_kids == 1) {
        *out = all->kids[0];
        all->n_kids = 0;
        cd_filter_destroy(all);
    } else {
        *out = all;
    }
    return true;
fail:
    free(name);
    cd_filter_destroy(all);
    cd_filter_destroy(*out);
    *out = NULL;
    return false;
}

static bool read_node(parse *p, const cJSON *j, int depth, cd_filter **out);

/* Reads "and"/"or": a non-empty array of filters. */
static bool read_list(parse *p, const cJSON *v, cd_filter_op op, int depth,
                      cd_filter **out)
{
    *out = NULL;
    int n = cJSON_IsArray(v) ? cJSON_GetArraySize(v) : -1;
    if (n <= 0 || n > CD_FILTER_LIST_MAX) {
        return fail(p, n == 0 ? "an empty list of conditions (give 1.."
                                    CD_STR(CD_FILTER_LIST_MAX) ")"
                              : "takes an array of 1.." CD_STR(CD_FILTER_LIST_MAX) " filters");
    }
    cd_filter *f = node_new(p, op);
    if (!f)
        return false;
    f->kids = calloc((size_t)n, sizeof *f->kids);
    if (!f->kids) {
        cd_filter_destroy(f);
        cd_reply_error(p->rep, CD_HTTP_OUT_OF_MEMORY, "out of memory reading the filter");
        return false;
    }
    const cJSON *x;
    cJSON_ArrayForEach(x, v) {
        size_t mark = path_add(p, "", NULL, f->n_kids);
        bool ok = read_node(p, x, depth + 1, &f->kids[f->n_kids]);
        if (ok)
            f->n_kids++;
        if (!ok) {
            cd_filter_destroy(f);
            return false;
        }
        path_pop(p, mark);
    }
    *out = f;
    return true;
}

static bool read_member(parse *p, const cJSON *m, int depth, cd_filter **out)
{
    const char *key = m->string;
    *out = NULL;
    if (strcmp(key, "and") == 0 || strcmp(key, "or") == 0)
        return read_list(p, m, key[0] == 'a' ? CD_FILTER_AND : CD_FILTER_OR, depth, out);
    if (strcmp(key, "not") == 0) {
        cd_filter *f = node_new(p, CD_FILTER_NOT);
        if (!f)
            return false;
        f->kids = calloc(1, sizeof *f->kids);
        if (!f->kids || !read_node(p, m, depth + 1, &f->kids[0])) {
            if (!f->kids)
                cd_reply_error(p->rep, CD_HTTP_OUT_OF_MEMORY, "out of memory reading the filter");
            cd_filter_destroy(f);
            return false;
        }
        f->n_kids = 1;
        *out = f;
        return true;
    }
    if (strcmp(key, "exists") == 0) {
        char *name = NULL;
        bool ok_field;
        if (!cJSON_IsString(m))
            return fail(p, "exists takes a field: label or metadata.<name>");
        if (!read_field(p, m->valuestring, &name, &ok_field))
            return ok_field ? false
                            : fail(p, "not a field: label or metadata.<name>");
        cd_filter *f = node_new(p, CD_FILTER_EXISTS);
        if (!f) {
            free(name);
            return false;
        }
        f->field = name;
        *out = f;
        return true;
    }
    return read_condition(p, key, m, out);
}

static bool read_node(parse *p, const cJSON *j, int depth, cd_filter **out)
{
    *out = NULL;
    if (depth > CD_FILTER_DEPTH_MAX) {
        return fail(p, "a filter nests at most " CD_STR(CD_FILTER_DEPTH_MAX) " objects deep");
    }
    if (!cJSON_IsObject(j))
        return fail(p, "a filter is a JSON object");
    if (!j->child)
        return fail(p, "an empty filter (give at least one condition)");
    cd_filter *all = NULL;
    const cJSON *m;
    cJSON_ArrayForEach(m, j) {
        size_t mark = path_add(p, ".", m->string, 0);
        cd_filter *f = NULL;
        if (!read_member(p, m, depth, &f) || !and_add(p, &all, f)) {
            cd_filter_destroy(f);
            cd_filter_destroy(all);
            return false;
        }
        path_pop(p, mark);
    }
    if (all->n_kids == 1) {
        *out = all->kids[0];
        all->n_kids = 0;
        cd_filter_destroy(all);
    } else {
        *out = all;
    }
    return true;
}

bool cd_json_filter(const cJSON *obj, const char *member, cd_filter **out, cd_reply *rep)
{
    parse p = {.rep = rep};
    const cJSON *j = cJSON_GetObjectItemCaseSensitive(obj, member);
    *out = NULL;
    if (!j || cJSON_IsNull(j))
        return true;
    path_add(&p, "", member, 0);
    return read_node(&p, j, 1, out);
}

bool cd_json_filter_text(const char *text, const char *member, cd_filter **out,
                         cd_reply *rep)
{
    *out = NULL;
    cJSON *j = cJSON_Parse(text);
    if (!j) {
        cd_reply_error(rep, CD_HTTP_INVALID_FILTER, "%s: not JSON", member);
        return false;
    }
    cJSON *wrap = cJSON_CreateObject();
    if (!wrap) {
        cJSON_Delete(j);
        cd_reply_error(rep, CD_HTTP_OUT_OF_MEMORY, "out of memory reading the filter");
        return false;
    }
    cJSON_AddItemToObject(wrap, member, j);
    bool ok = cd_json_filter(wrap, member, out, rep);
    cJSON_Delete(wrap);
    return ok;
}
