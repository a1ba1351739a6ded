/*
 * filter.h - filters on items' label and metadata fields (SPEC.md §3.9),
 * and what a gallery keeps in memory to evaluate them fast.
 *
 * A cd_filter is a tree the server builds from a request (core reads no
 * JSON): leaves compare one field, `label` or one top-level member of an
 * item's metadata object, with a value; inner nodes combine them with
 * and, or, not.  A cd_fields holds, per item rowid of one gallery, the
 * label and every scalar metadata member as a typed value (string,
 * number, bool), in columns: evaluating a filter is a pass over the
 * columns into a bitmap (a cd_match), never a JSON parse.  The store
 * parses metadata once per write and once per start (cd_store_item_fields).
 *
 * Comparisons: eq and in are true when the item's value has the given
 * value's type and equals it (numbers compare as doubles); a range (gt,
 * gte, lt, lte) is true only for numeric values; exists is true for a
 * label, and for a metadata member whose value is not null.  An item
 * without the field matches no comparison (and so matches its `not`).
 *
 * Thread safety: a cd_fields is changed under its gallery's write lock
 * and read (cd_fields_match, cd_match_*) under its read lock; a cd_match
 * reads the cd_fields it was made from, which must not change meanwhile.
 */
#ifndef CD_FILTER_H
#define CD_FILTER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "error.h"

/* Deepest nesting of and/or/not a filter may have (the root is depth 1). */
#define CD_FILTER_DEPTH_MAX 16
/* Most values of one `in`, and most children of one and/or. */
#define CD_FILTER_LIST_MAX 1024

typedef enum cd_filter_op {
    CD_FILTER_AND,
    CD_FILTER_OR,
    CD_FILTER_NOT,
    CD_FILTER_EQ,       /* field == values[0] */
    CD_FILTER_IN,       /* field == one of values */
    CD_FILTER_RANGE,    /* lo <(=) field <(=) hi, numbers only */
    CD_FILTER_EXISTS,   /* field is present (and not null) */
} cd_filter_op;

typedef enum cd_value_type {
    CD_VALUE_NONE = 0,  /* absent */
    CD_VALUE_NULL,
    CD_VALUE_BOOL,
    CD_VALUE_NUMBER,
    CD_VALUE_STRING,
    CD_VALUE_OTHER,     /* an array or an object: only `exists` sees it */
} cd_value_type;

typedef struct cd_value {
    cd_value_type type;
    char *str;          /* CD_VALUE_STRING: malloc'd UTF-8 */
    double num;         /* CD_VALUE_NUMBER */
    bool b;             /* CD_VALUE_BOOL */
} cd_value;

/*
 * One node.  Built by the caller with calloc/malloc (every pointer owned
 * by the node), freed with cd_filter_destroy.
 */
typedef struct cd_filter {
    cd_filter_op op;
    char *field;                /* leaves: NULL for label, else the
                                   metadata member's name (malloc'd) */
    cd_value *values;           /* EQ: 1, IN: n_values (>= 1) */
    size_t n_values;
    bool has_lo, lo_incl;       /* RANGE: gt (lo_incl false) / gte */
    bool has_hi, hi_incl;       /* RANGE: lt (hi_incl false) / lte */
    double lo, hi;
    struct cd_filter **kids;    /* AND/OR: n_kids (>= 1), NOT: 1 */
    size_t n_kids;
} cd_filter;

/* Frees f and everything under it.  Accepts NULL. */
void cd_filter_destroy(cd_filter *f);

/*
 * Checks what the server's parser also checks, for callers that build a
 * filter by hand: depth, non-empty lists, a value for each leaf, a range
 * with a bound.  CD_EINVAL saying what is wrong; nothing changes.
 */
cd_err cd_filter_check(const cd_filter *f, cd_error *err);

/* --- what a gallery keeps for filters ---------------------------------- */

typedef struct cd_fields cd_fields;

/* An empty table; NULL when out of memory.  Free with cd_fields_destroy. */
cd_fields *cd_fields_create(void);
void cd_fields_destroy(cd_fields *f);

/* One metadata member as the store parsed it. */
typedef struct cd_field_value {
    const char *name;
    cd_value_type type;
    const char *str;    /* CD_VALUE_STRING */
    double num;         /* CD_VALUE_NUMBER */
    bool b;             /* CD_VALUE_BOOL */
} cd_field_value;

/*
 * Sets item rowid's label (NULL: none) and metadata members (replacing
 * what it had), adding the item when new.  CD_ENOMEM leaves the item
 * absent from the table (the caller must not serve filters from it).
 */
cd_err cd_fields_set(cd_fields *f, int64_t rowid, const char *label,
                     const cd_field_value *values, size_t n,
                     cd_error *err);

/* True when item rowid is in the table. */
bool cd_fields_contains(const cd_fields *f, int64_t rowid);

/* Drops item rowid (absent: nothing happens). */
void cd_fields_remove(cd_fields *f, int64_t rowid);

/* Items in the table. */
size_t cd_fields_count(const cd_fields *f);

/* The items a filter matches, as a bitmap over the table's slots. */
typedef struct cd_match cd_match;

/*
 * Evaluates filter over every item of f into *out (free with
 * cd_match_destroy).  CD_ENOMEM or CD_EINVAL (cd_filter_check) leave *out
 * NULL.
 */
cd_err cd_fields_match(const cd_fields *f, const cd_filter *filter,
                       cd_match **out, cd_error *err);

void cd_match_destroy(cd_match *m);

/* Number of matching items. */
size_t cd_match_count(const cd_match *m);

/* True when item rowid is in the table and matches. */
bool cd_match_has(const cd_match *m, int64_t rowid);

/*
 * The matching rowids in ascending order into *out (malloc'd, free with
 * free(); NULL when none), their number in *n.  CD_ENOMEM.
 */
cd_err cd_match_rowids(const cd_match *m, int64_t **out, size_t *n,
                       cd_error *err);

#endif
