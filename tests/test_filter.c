/*
 * test_filter.c - core/filter.c against a naive reference: random sets,
 * replacements and removals of items (so that slots are reused and the
 * rowid map deletes in every position of its runs), then every kind of
 * filter evaluated both ways, and cd_filter_check's refusals.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "filter.h"

#define ROWIDS 3000

/* The reference: what each rowid holds, or present false. */
typedef struct ref_item {
    bool present;
    int label;          /* -1: none, else "L<label>" */
    int album;          /* -1: no member, else "a<album>" */
    double year;        /* NAN: no member */
    int fav;            /* -1: no member, 0/1 */
} ref_item;

static ref_item ref[ROWIDS];

static uint64_t rng = 12345;

static unsigned next(unsigned n)
{
    rng = rng * 6364136223846793005ULL + 1442695040888963407ULL;
    return (unsigned)(rng >> 33) % n;
}

static void set_item(cd_fields *f, int64_t rowid)
{
    ref_item it = {true, next(5) == 0 ? -1 : (int)next(20), next(4) == 0 ? -1 : (int)next(6),
                   next(3) == 0 ? NAN : 2000 + next(30), next(3) == 0 ? -1 : (int)next(2)};
    char label[16], album[16];
    cd_field_value v[3];
    size_t n = 0;
    snprintf(label, sizeof label, "L%d", it.label);
    snprintf(album, sizeof album, "a%d", it.album);
    if (it.album >= 0)
        v[n++] = (cd_field_value){.name = "album", .type = CD_VALUE_STRING, .str = album};
    if (!isnan(it.year))
        v[n++] = (cd_field_value){.name = "year", .type = CD_VALUE_NUMBER, .num = it.year};
    if (it.fav >= 0)
        v[n++] = (cd_field_value){.name = "fav", .type = CD_VALUE_BOOL, .b = it.fav == 1};
    cd_error err;
    CHECK_OK(cd_fields_set(f, rowid, it.label >= 0 ? label : NULL, v, n, &err), &err);
    ref[rowid] = it;
}

static cd_filter *leaf(cd_filter_op op, const char *field)
{
    cd_filter *f = calloc(1, sizeof *f);
    REQUIRE(f);
    f->op = op;
    f->field = field ? strdup(field) : NULL;
    return f;
}

static cd_filter *with_string(cd_filter *f, const char *s)
{
    f->values = realloc(f->values, (f->n_values + 1) * sizeof *f->values);
    REQUIRE(f->values);
    f->values[f->n_values++] = (cd_value){.type = CD_VALUE_STRING, .str = strdup(s)};
    return f;
}

static cd_filter *node(cd_filter_op op, cd_filter *a, cd_filter *b)
{
    cd_filter *f = leaf(op, NULL);
    f->kids = calloc(2, sizeof *f->kids);
    REQUIRE(f->kids);
    f->kids[f->n_kids++] = a;
    if (b)
        f->kids[f->n_kids++] = b;
    return f;
}

/* The filters of the test and their reference predicates. */
static cd_filter *make(int which)
{
    cd_filter *f;
    switch (which) {
    case 0:
        return with_string(leaf(CD_FILTER_EQ, NULL), "L3");
    case 1:
        return with_string(with_string(leaf(CD_FILTER_IN, "album"), "a1"), "a4");
    case 2:
        f = leaf(CD_FILTER_RANGE, "year");
        f->has_lo = f->lo_incl = true;
        f->lo = 2010;
        f->has_hi = true;
        f->hi = 2020;
        return f;
    case 3:
        return leaf(CD_FILTER_EXISTS, "fav");
    case 4:
        f = leaf(CD_FILTER_EQ, "fav");
        f->values = calloc(1, sizeof *f->values);
        f->values[0] = (cd_value){.type = CD_VALUE_BOOL, .b = true};
        f->n_values = 1;
        return node(CD_FILTER_NOT, f, NULL);
    case 5:
        return node(CD_FILTER_OR, leaf(CD_FILTER_EXISTS, NULL),
                    node(CD_FILTER_AND, make(1), make(2)));
    case 6:         /* a year compared with a string: never */
        return with_string(leaf(CD_FILTER_EQ, "year"), "2015");
    default:
        return with_string(leaf(CD_FILTER_EQ, NULL), "nobody");
    }
}

static bool holds(int which, const ref_item *it)
{
    switch (which) {
    case 0:
        return it->label == 3;
    case 1:
        return it->album == 1 || it->album == 4;
    case 2:
        return !isnan(it->year) && it->year >= 2010 && it->year < 2020;
    case 3:
        return it->fav >= 0;
    case 4:
        return it->fav != 1;
    case 5:
        return it->label >= 0 || (holds(1, it) && holds(2, it));
    default:
        return false;
    }
}

static void check_filters(const cd_fields *f)
{
    for (int w = 0; w < 8; w++) {
        cd_filter *flt = make(w);
        cd_match *m = NULL;
        cd_error err;
        CHECK_OK(cd_fields_match(f, flt, &m, &err), &err);
        int64_t *rows = NULL;
        size_t n = 0;
        CHECK_OK(cd_match_rowids(m, &rows, &n, &err), &err);
        size_t want = 0, j = 0;
        bool same = true;
        for (int64_t r = 0; r < ROWIDS; r++) {
            bool in = ref[r].present && holds(w, &ref[r]);
            want += in;
            if (in)
                same &= j < n && rows[j++] == r;
            if (cd_match_has(m, r) != in)
                same = false;
        }
        CHECK_EQ(n, want);
        CHECK_EQ(cd_match_count(m), want);
        CHECK(same);
        free(rows);
        cd_match_destroy(m);
        cd_filter_destroy(flt);
    }
}

int main(void)
{
    cd_fields *f = cd_fields_create();
    REQUIRE(f);
    for (int round = 0; round < 6; round++) {
        for (int i = 0; i < 4000; i++) {
            int64_t r = next(ROWIDS);
            if (next(3) == 0) {
                cd_fields_remove(f, r);
                ref[r].present = false;
            } else {
                set_item(f, r);
            }
        }
        size_t live = 0;
        for (int64_t r = 0; r < ROWIDS; r++) {
            live += ref[r].present;
            CHECK_EQ(cd_fields_contains(f, r), ref[r].present);
        }
        CHECK_EQ(cd_fields_count(f), live);
        check_filters(f);
    }

    /* What cd_filter_check refuses. */
    cd_error err;
    cd_filter *empty_and = leaf(CD_FILTER_AND, NULL);
    CHECK_EQ(cd_filter_check(empty_and, &err), CD_EINVAL);
    cd_filter *no_bound = leaf(CD_FILTER_RANGE, "year");
    CHECK_EQ(cd_filter_check(no_bound, &err), CD_EINVAL);
    cd_filter *no_value = leaf(CD_FILTER_EQ, NULL);
    CHECK_EQ(cd_filter_check(no_value, &err), CD_EINVAL);
    cd_filter *deep = make(0);
    for (int d = 1; d < CD_FILTER_DEPTH_MAX; d++)
        deep = node(CD_FILTER_NOT, deep, NULL);
    CHECK_EQ(cd_filter_check(deep, &err), CD_OK);
    deep = node(CD_FILTER_NOT, deep, NULL);
    CHECK_EQ(cd_filter_check(deep, &err), CD_EINVAL);
    cd_match *m = (cd_match *)1;
    CHECK_EQ(cd_fields_match(f, deep, &m, &err), CD_EINVAL);
    CHECK(m == NULL);
    cd_filter_destroy(empty_and);
    cd_filter_destroy(no_bound);
    cd_filter_destroy(no_value);
    cd_filter_destroy(deep);
    cd_fields_destroy(f);
    cd_fields_destroy(NULL);
    cd_filter_destroy(NULL);
    return check_exit();
}
