/*
 * filter.c - the filter tree, and the columns it is evaluated over.
 *
 * A cd_fields gives each item a slot (rowid -> slot in an open-addressing
 * map; freed slots are reused).  Per slot it keeps the label as an
 * interned string id and, per metadata member name seen in the gallery,
 * one column: the value's type and its payload (a number, a bool as 0/1,
 * or an interned string id).  Strings are interned once per table and
 * kept until the table is freed, so a string compares as an integer.
 * A filter is evaluated leaf by leaf, each leaf one pass over a column,
 * into a bitmap of slots; and/or/not combine bitmaps word by word.
 */
#include "filter.h"

#include <stdlib.h>
#include <string.h>

#define EMPTY_KEY (-1)
#define NO_STR (-1)

/* --- the tree ---------------------------------------------------------- */

void cd_filter_destroy(cd_filter *f)
{
    if (!f)
        return;
    for (size_t i = 0; i < f->n_kids; i++)
        cd_filter_destroy(f->kids[i]);
    free(f->kids);
    for (size_t i = 0; i < f->n_values; i++)
        free(f->values[i].str);
    free(f->values);
    free(f->field);
    free(f);
}

static cd_err check_node(const cd_filter *f, int depth, cd_error *err)
{
    if (!f)
        return cd__fail(err, CD_EINVAL, "filter: missing node");
    if (depth > CD_FILTER_DEPTH_MAX)
        return cd__fail(err, CD_EINVAL, "filter nests deeper than %d levels",
                        CD_FILTER_DEPTH_MAX);
    switch (f->op) {
    case CD_FILTER_AND:
    case CD_FILTER_OR:
    case CD_FILTER_NOT:
        if (f->n_kids == 0 || (f->op == CD_FILTER_NOT && f->n_kids != 1) ||
            f->n_kids > CD_FILTER_LIST_MAX)
            return cd__fail(err, CD_EINVAL, "filter: and/or need 1..%d "
                            "children, not one", CD_FILTER_LIST_MAX);
        for (size_t i = 0; i < f->n_kids; i++) {
            cd_err rc = check_node(f->kids[i], depth + 1, err);
            if (rc != CD_OK)
                return rc;
        }
        return CD_OK;
    case CD_FILTER_EQ:
    case CD_FILTER_IN:
        if (f->n_values == 0 || f->n_values > CD_FILTER_LIST_MAX ||
            (f->op == CD_FILTER_EQ && f->n_values != 1))
            return cd__fail(err, CD_EINVAL, "filter: eq needs one value, in "
                            "1..%d", CD_FILTER_LIST_MAX);
        for (size_t i = 0; i < f->n_values; i++)
            if (f->values[i].type == CD_VALUE_STRING && !f->values[i].str)
                return cd__fail(err, CD_EINVAL, "filter: string value missing");
        return CD_OK;
    case CD_FILTER_RANGE:
        if (!f->has_lo && !f->has_hi)
            return cd__fail(err, CD_EINVAL, "filter: a range needs a bound");
        return CD_OK;
    case CD_FILTER_EXISTS:
        return CD_OK;
    }
    return cd__fail(err, CD_EINVAL, "filter: unknown operator %d", (int)f->op);
}

cd_err cd_filter_check(const cd_filter *f, cd_error *err)
{
    return check_node(f, 1, err);
}

/* --- the table --------------------------------------------------------- */

typedef struct column {
    char *name;
    unsigned char *type;    /* cd_value_type per slot */
    double *val;            /* number, bool 0/1, or string id */
} column;

struct cd_fields {
    /* rowid -> slot */
    int64_t *keys;          /* EMPTY_KEY or a rowid */
    uint32_t *vals;
    size_t map_cap;         /* power of two, or 0 */
    size_t len;             /* items */
    /* slots */
    int64_t *rowid;         /* per slot, EMPTY_KEY when free */
    int32_t *label;         /* per slot, NO_STR when none */
    size_t n_slots, slot_cap;
    uint32_t *free_slots;
    size_t n_free;
    /* metadata columns, each slot_cap long */
    column *cols;
    size_t n_cols;
    /* interned strings */
    char **strs;
    size_t n_strs, strs_cap;
    int32_t *str_table;     /* open addressing of string ids, NO_STR empty */
    size_t str_cap;
};

static uint64_t mix64(uint64_t x)
{
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ULL;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebULL;
    x ^= x >> 31;
    return x;
}

static uint64_t str_hash(const char *s)
{
    uint64_t h = 0xcbf29ce484222325ULL;    /* FNV-1a */
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 0x100000001b3ULL;
    return h;
}

cd_fields *cd_fields_create(void)
{
    return calloc(1, sizeof(cd_fields));
}

void cd_fields_destroy(cd_fields *f)
{
    if (!f)
        return;
    free(f->keys);
    free(f->vals);
    free(f->rowid);
    free(f->label);
    free(f->free_slots);
    for (size_t i = 0; i < f->n_cols; i++) {
        free(f->cols[i].name);
        free(f->cols[i].type);
        free(f->cols[i].val);
    }
    free(f->cols);
    for (size_t i = 0; i < f->n_strs; i++)
        free(f->strs[i]);
    free(f->strs);
    free(f->str_table);
    free(f);
}

size_t cd_fields_count(const cd_fields *f)
{
    return f->len;
}

/* The id of string s, or NO_STR when it was never interned. */
static int32_t str_find(const cd_fields *f, const char *s)
{
    if (f->str_cap == 0)
        return NO_STR;
    for (size_t i = str_hash(s) & (f->str_cap - 1);; i = (i + 1) & (f->str_cap - 1)) {
        int32_t id = f->str_table[i];
        if (id == NO_STR)
            return NO_STR;
        if (strcmp(f->strs[id], s) == 0)
            return id;
    }
}

static void str_place(int32_t *table, size_t cap, const char *s, int32_t id)
{
    size_t i = str_hash(s) & (cap - 1);
    while (table[i] != NO_STR)
        i = (i + 1) & (cap - 1);
    table[i] = id;
}

/* Interns s; NO_STR when out of memory (or past 2^31 strings). */
static int32_t str_intern(cd_fields *f, const char *s)
{
    int32_t id = str_find(f, s);
    if (id != NO_STR)
        return id;
    if (f->n_strs >= INT32_MAX - 1)
        return NO_STR;
    if (2 * (f->n_strs + 1) > f->str_cap) {
        size_t cap = f->str_cap ? f->str_cap * 2 : 64;
        int32_t *t = malloc(cap * sizeof *t);
        if (!t)
            return NO_STR;
        for (size_t i = 0; i < cap; i++)
            t[i] = NO_STR;
        for (size_t i = 0; i < f->n_strs; i++)
            str_place(t, cap, f->strs[i], (int32_t)i);
        free(f->str_table);
        f->str_table = t;
        f->str_cap = cap;
    }
    if (f->n_strs == f->strs_cap) {
        size_t cap = f->strs_cap ? f->strs_cap * 2 : 64;
        char **grown = realloc(f->strs, cap * sizeof *grown);
        if (!grown)
            return NO_STR;
        f->strs = grown;
        f->strs_cap = cap;
    }
    char *copy = strdup(s);
    if (!copy)
        return NO_STR;
    id = (int32_t)f->n_strs;
    f->strs[f->n_strs++] = copy;
    str_place(f->str_table, f->str_cap, copy, id);
    return id;
}

/* The slot of rowid, or -1. */
static int64_t slot_of(const cd_fields *f, int64_t rowid)
{
    if (f->map_cap == 0 || rowid < 0)
        return -1;
    for (size_t i = mix64((uint64_t)rowid) & (f->map_cap - 1);;
         i = (i + 1) & (f->map_cap - 1)) {
        if (f->keys[i] == rowid)
            return f->vals[i];
        if (f->keys[i] == EMPTY_KEY)
            return -1;
    }
}

static void map_place(int64_t *keys, uint32_t *vals, size_t cap, int64_t rowid,
                      uint32_t slot)
{
    size_t i = mix64((uint64_t)rowid) & (cap - 1);
    while (keys[i] != EMPTY_KEY)
        i = (i + 1) & (cap - 1);
    keys[i] = rowid;
    vals[i] = slot;
}

/* Room in the map for one more key. */
static bool map_reserve(cd_fields *f)
{
    if (2 * (f->len + 1) <= f->map_cap)
        return true;
    size_t cap = f->map_cap ? f->map_cap * 2 : 64;
    int64_t *keys = malloc(cap * sizeof *keys);
    uint32_t *vals = malloc(cap * sizeof *vals);
    if (!keys || !vals) {
        free(keys);
        free(vals);
        return false;
    }
    for (size_t i = 0; i < cap; i++)
        keys[i] = EMPTY_KEY;
    for (size_t i = 0; i < f->map_cap; i++)
        if (f->keys[i] != EMPTY_KEY)
            map_place(keys, vals, cap, f->keys[i], f->vals[i]);
    free(f->keys);
    free(f->vals);
    f->keys = keys;
    f->vals = vals;
    f->map_cap = cap;
    return true;
}

/* Backward-shift deletion, as idset.c does. */
static void map_remove(cd_fields *f, int64_t rowid)
{
    size_t mask = f->map_cap - 1, i = mix64((uint64_t)rowid) & mask;
    while (f->keys[i] != rowid)
        i = (i + 1) & mask;
    for (size_t j = (i + 1) & mask; f->keys[j] != EMPTY_KEY; j = (j + 1) & mask) {
        size_t h = mix64((uint64_t)f->keys[j]) & mask;
        /* Move j into the hole when its home is not in (i, j]. */
        bool stays = i <= j ? (i < h && h <= j) : (i < h || h <= j);
        if (stays)
            continue;
        f->keys[i] = f->keys[j];
        f->vals[i] = f->vals[j];
        i = j;
    }
    f->keys[i] = EMPTY_KEY;
}

/* Grows every per-slot array to hold cap slots. */
static bool slots_grow(cd_fields *f, size_t cap)
{
    int64_t *r = realloc(f->rowid, cap * sizeof *r);
    if (!r)
        return false;
    f->rowid = r;
    int32_t *l = realloc(f->label, cap * sizeof *l);
    if (!l)
        return false;
    f->label = l;
    uint32_t *fr = realloc(f->free_slots, cap * sizeof *fr);
    if (!fr)
        return false;
    f->free_slots = fr;
    for (size_t c = 0; c < f->n_cols; c++) {
        unsigned char *t = realloc(f->cols[c].type, cap);
        if (!t)
            return false;
        f->cols[c].type = t;
        double *v = realloc(f->cols[c].val, cap * sizeof *v);
        if (!v)
            return false;
        f->cols[c].val = v;
        memset(t + f->slot_cap, CD_VALUE_NONE, cap - f->slot_cap);
    }
    f->slot_cap = cap;
    return true;
}

/* The column called name, added (empty) when new; NULL out of memory. */
static column *column_get(cd_fields *f, const char *name)
{
    for (size_t c = 0; c < f->n_cols; c++)
        if (strcmp(f->cols[c].name, name) == 0)
            return &f->cols[c];
    column *grown = realloc(f->cols, (f->n_cols + 1) * sizeof *grown);
    if (!grown)
        return NULL;
    f->cols = grown;
    column col = {strdup(name), calloc(f->slot_cap ? f->slot_cap : 1, 1),
                  malloc((f->slot_cap ? f->slot_cap : 1) * sizeof(double))};
    if (!col.name || !col.type || !col.val) {
        free(col.name);
        free(col.type);
        free(col.val);
        return NULL;
    }
    f->cols[f->n_cols] = col;
    return &f->cols[f->n_cols++];
}

static const column *column_find(const cd_fields *f, const char *name)
{
    for (size_t c = 0; c < f->n_cols; c++)
        if (strcmp(f->cols[c].name, name) == 0)
            return &f->cols[c];
    return NULL;
}

static void slot_clear(cd_fields *f, size_t s)
{
    f->label[s] = NO_STR;
    for (size_t c = 0; c < f->n_cols; c++)
        f->cols[c].type[s] = CD_VALUE_NONE;
}

bool cd_fields_contains(const cd_fields *f, int64_t rowid)
{
    return slot_of(f, rowid) >= 0;
}

void cd_fields_remove(cd_fields *f, int64_t rowid)
{
    int64_t s = slot_of(f, rowid);
    if (s < 0)
        return;
    map_remove(f, rowid);
    slot_clear(f, (size_t)s);
    f->rowid[s] = EMPTY_KEY;
    f->free_slots[f->n_free++] = (uint32_t)s;
    f->len--;
}

cd_err cd_fields_set(cd_fields *f, int64_t rowid, const char *label,
                     const cd_field_value *values, size_t n, cd_error *err)
{
    int64_t s = slot_of(f, rowid);
    if (s < 0) {
        if (f->n_slots >= UINT32_MAX || !map_reserve(f) ||
            (f->n_free == 0 && f->n_slots == f->slot_cap &&
             !slots_grow(f, f->slot_cap ? f->slot_cap * 2 : 64)))
            return cd__fail(err, CD_ENOMEM, "out of memory for the filter fields");
        s = f->n_free ? (int64_t)f->free_slots[--f->n_free] : (int64_t)f->n_slots++;
        map_place(f->keys, f->vals, f->map_cap, rowid, (uint32_t)s);
        f->rowid[s] = rowid;
        f->len++;
    }
    slot_clear(f, (size_t)s);
    bool ok = true;
    if (label) {
        f->label[s] = str_intern(f, label);
        ok = f->label[s] != NO_STR;
    }
    for (size_t i = 0; ok && i < n; i++) {
        column *col = column_get(f, values[i].name);
        if (!col) {
            ok = false;
            break;
        }
        double v = 0;
        if (values[i].type == CD_VALUE_NUMBER) {
            v = values[i].num;
        } else if (values[i].type == CD_VALUE_BOOL) {
            v = values[i].b;
        } else if (values[i].type == CD_VALUE_STRING) {
            int32_t id = str_intern(f, values[i].str ? values[i].str : "");
            ok = id != NO_STR;
            v = id;
        }
        col->type[s] = (unsigned char)values[i].type;
        col->val[s] = v;
    }
    if (!ok) {
        cd_fields_remove(f, rowid);
        return cd__fail(err, CD_ENOMEM, "out of memory for the filter fields");
    }
    return CD_OK;
}

/* --- evaluation -------------------------------------------------------- */

struct cd_match {
    const cd_fields *f;
    uint64_t *bits;         /* one bit per slot */
    size_t words;
    size_t count;
};

static void bit_set(uint64_t *bits, size_t s)
{
    bits[s / 64] |= (uint64_t)1 << (s % 64);
}

static bool bit_get(const uint64_t *bits, size_t s)
{
    return (bits[s / 64] >> (s % 64)) & 1;
}

/* True when the value (type t, payload v) equals filter value fv. */
static bool value_eq(const cd_fields *f, unsigned char t, double v,
                     const cd_value *fv, int32_t str_id)
{
    if (t != fv->type)
        return false;
    if (t == CD_VALUE_STRING)
        return str_id != NO_STR && v == (double)str_id;
    if (t == CD_VALUE_NUMBER)
        return v == fv->num;
    if (t == CD_VALUE_BOOL)
        return (v != 0) == fv->b;
    (void)f;
    return t == CD_VALUE_NULL;
}

static bool in_range(const cd_filter *n, double v)
{
    if (n->has_lo && (n->lo_incl ? v < n->lo : v <= n->lo))
        return false;
    if (n->has_hi && (n->hi_incl ? v > n->hi : v >= n->hi))
        return false;
    return true;
}

/* Sets the bits of the slots leaf n matches in bits (zeroed). */
static void eval_leaf(const cd_fields *f, const cd_filter *n, uint64_t *bits,
                      const int32_t *str_ids)
{
    size_t ns = f->n_slots;
    if (!n->field) {    /* label: strings only */
        for (size_t s = 0; s < ns; s++) {
            if (f->rowid[s] == EMPTY_KEY || f->label[s] == NO_STR)
                continue;
            bool hit = n->op == CD_FILTER_EXISTS;
            for (size_t i = 0; !hit && i < n->n_values; i++)
                hit = n->values[i].type == CD_VALUE_STRING &&
                      str_ids[i] != NO_STR && f->label[s] == str_ids[i];
            if (hit)
                bit_set(bits, s);
        }
        return;
    }
    const column *col = column_find(f, n->field);
    if (!col)
        return;
    for (size_t s = 0; s < ns; s++) {
        unsigned char t = col->type[s];
        if (t == CD_VALUE_NONE || f->rowid[s] == EMPTY_KEY)
            continue;
        bool hit = false;
        if (n->op == CD_FILTER_EXISTS)
            hit = t != CD_VALUE_NULL;
        else if (n->op == CD_FILTER_RANGE)
            hit = t == CD_VALUE_NUMBER && in_range(n, col->val[s]);
        for (size_t i = 0; !hit && i < n->n_values; i++)
            hit = value_eq(f, t, col->val[s], &n->values[i], str_ids[i]);
        if (hit)
            bit_set(bits, s);
    }
}

/* Evaluates n into bits (words long, zeroed). */
static cd_err eval_node(const cd_fields *f, const cd_filter *n, uint64_t *bits,
                        size_t words, cd_error *err)
{
    if (n->op == CD_FILTER_AND || n->op == CD_FILTER_OR || n->op == CD_FILTER_NOT) {
        uint64_t *tmp = calloc(words ? words : 1, sizeof *tmp);
        if (!tmp)
            return cd__fail(err, CD_ENOMEM, "out of memory evaluating a filter");
        cd_err rc = CD_OK;
        for (size_t i = 0; i < n->n_kids && rc == CD_OK; i++) {
            uint64_t *dst = i == 0 ? bits : tmp;
            if (i > 0)
                memset(tmp, 0, words * sizeof *tmp);
            rc = eval_node(f, n->kids[i], dst, words, err);
            for (size_t w = 0; rc == CD_OK && i > 0 && w < words; w++)
                bits[w] = n->op == CD_FILTER_AND ? bits[w] & tmp[w] : bits[w] | tmp[w];
        }
        free(tmp);
        if (rc != CD_OK || n->op != CD_FILTER_NOT)
            return rc;
        for (size_t s = 0; s < f->n_slots; s++) {
            bool live = f->rowid[s] != EMPTY_KEY;
            bool was = bit_get(bits, s);
            if (live != was)
                bits[s / 64] |= (uint64_t)1 << (s % 64);
            else
                bits[s / 64] &= ~((uint64_t)1 << (s % 64));
        }
        return CD_OK;
    }
    int32_t one[1];
    int32_t *ids = n->n_values <= 1 ? one : malloc(n->n_values * sizeof *ids);
    if (!ids)
        return cd__fail(err, CD_ENOMEM, "out of memory evaluating a filter");
    for (size_t i = 0; i < n->n_values; i++)
        ids[i] = n->values[i].type == CD_VALUE_STRING
                     ? str_find(f, n->values[i].str) : NO_STR;
    eval_leaf(f, n, bits, ids);
    if (ids != one)
        free(ids);
    return CD_OK;
}

cd_err cd_fields_match(const cd_fields *f, const cd_filter *filter,
                       cd_match **out, cd_error *err)
{
    *out = NULL;
    cd_err rc = cd_filter_check(filter, err);
    if (rc != CD_OK)
        return rc;
    cd_match *m = calloc(1, sizeof *m);
    size_t words = (f->n_slots + 63) / 64;
    if (!m || !(m->bits = calloc(words ? words : 1, sizeof *m->bits))) {
        free(m);
        return cd__fail(err, CD_ENOMEM, "out of memory evaluating a filter");
    }
    m->f = f;
    m->words = words;
    rc = eval_node(f, filter, m->bits, words, err);
    if (rc != CD_OK) {
        cd_match_destroy(m);
        return rc;
    }
    for (size_t w = 0; w < words; w++)
        m->count += (size_t)__builtin_popcountll(m->bits[w]);
    *out = m;
    return CD_OK;
}

void cd_match_destroy(cd_match *m)
{
    if (!m)
        return;
    free(m->bits);
    free(m);
}

size_t cd_match_count(const cd_match *m)
{
    return m->count;
}

bool cd_match_has(const cd_match *m, int64_t rowid)
{
    int64_t s = slot_of(m->f, rowid);
    return s >= 0 && (size_t)s < m->words * 64 && bit_get(m->bits, (size_t)s);
}

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

cd_err cd_match_rowids(const cd_match *m, int64_t **out, size_t *n,
                       cd_error *err)
{
    *out = NULL;
    *n = 0;
    if (m->count == 0)
        return CD_OK;
    int64_t *r = malloc(m->count * sizeof *r);
    if (!r)
        return cd__fail(err, CD_ENOMEM, "out of memory listing %zu matches", m->count);
    size_t c = 0;
    for (size_t w = 0; w < m->words; w++)
        for (uint64_t b = m->bits[w]; b; b &= b - 1)
            r[c++] = m->f->rowid[w * 64 + (size_t)__builtin_ctzll(b)];
    qsort(r, c, sizeof *r, cmp_i64);
    *out = r;
    *n = c;
    return CD_OK;
}
