/*
 * eval_check.h - compares two compatibility reports field by field, for
 * the tests that store one and read it back (test_store, test_engine).
 * A stored report must come back exactly: a real is the same double (or
 * NaN on both sides), a list has the same entries in the same order.
 */
#ifndef CD_EVAL_CHECK_H
#define CD_EVAL_CHECK_H

#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "eval.h"

static bool same_real(double a, double b)
{
    return (isnan(a) && isnan(b)) || a == b;
}

/* Metrics of one ranking; only the first n_ks tops are meaningful. */
static bool same_metrics(const cd_eval_metrics *a, const cd_eval_metrics *b, size_t n_ks)
{
    for (size_t i = 0; i < n_ks; i++)
        if (!same_real(a->top[i], b->top[i]))
            return false;
    return same_real(a->map, b->map);
}

/* True when a and b say the same; names the first difference on stderr. */
static bool reports_equal(const cd_eval_report *a, const cd_eval_report *b, const char *what)
{
    const char *diff = NULL;
    if (!a || !b)
        diff = "a report is missing";
    else if (a->n_ks != b->n_ks || memcmp(a->ks, b->ks, a->n_ks * sizeof a->ks[0]) != 0)
        diff = "ks";
    else if (a->primary_k != b->primary_k)
        diff = "primary_k";
    else if (a->queries != b->queries || a->skipped != b->skipped ||
             a->gallery_items != b->gallery_items)
        diff = "queries, skipped or gallery_items";
    else if (!same_metrics(&a->cross, &b->cross, a->n_ks))
        diff = "cross";
    else if (a->has_baseline != b->has_baseline ||
             (a->has_baseline && !same_metrics(&a->baseline, &b->baseline, a->n_ks)))
        diff = "baseline";
    else if (a->has_paragon != b->has_paragon ||
             (a->has_paragon && !same_metrics(&a->paragon, &b->paragon, a->n_ks)))
        diff = "paragon";
    else if (a->has_baseline && a->has_paragon &&
             !same_metrics(&a->update_gain, &b->update_gain, a->n_ks))
        diff = "update_gain";
    else if (a->compatible != b->compatible || !same_real(a->primary_cross, b->primary_cross) ||
             (a->has_baseline && !same_real(a->primary_baseline, b->primary_baseline)))
        diff = "the criterion";
    else if (a->has_baseline &&
             (a->negative_flips != b->negative_flips || a->positive_flips != b->positive_flips ||
              !same_real(a->nfr, b->nfr) || !same_real(a->nfi, b->nfi) ||
              !same_real(a->pfr, b->pfr)))
        diff = "flips";
    else if (a->n_labels != b->n_labels)
        diff = "the number of labels";
    else if (a->n_negative_flips != b->n_negative_flips)
        diff = "the number of negative flip ids";
    for (size_t i = 0; !diff && i < a->n_labels; i++) {
        const cd_eval_label *x = &a->labels[i], *y = &b->labels[i];
        if (strcmp(x->label, y->label) != 0 || x->queries != y->queries ||
            !same_real(x->cross_top1, y->cross_top1) ||
            !same_real(x->baseline_top1, y->baseline_top1) ||
            x->negative_flips != y->negative_flips || x->positive_flips != y->positive_flips)
            diff = "a by-label line";
    }
    for (size_t i = 0; !diff && i < a->n_negative_flips; i++)
        if (strcmp(a->negative_flip_ids[i], b->negative_flip_ids[i]) != 0)
            diff = "a negative flip id";
    if (diff)
        fprintf(stderr, "%s: the reports differ in %s\n", what, diff);
    return diff == NULL;
}

#endif
