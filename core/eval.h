/*
 * eval.h - the compatibility report's arithmetic (schema/concepts.md §4).
 *
 * Pure computation over caller-owned arrays: no store, no locks, no I/O,
 * no JSON.  Given labelled probes of the query model, optional baseline
 * probes of the gallery model (the same probes, matched by id) and the
 * evaluation gallery (every labelled item's gallery-model embedding, in
 * insertion order), it ranks the whole gallery exactly for every probe
 * and computes top-k, mAP, flips, the BCT criterion and the update gain.
 *
 * Ranking: by the metric's similarity (inner product for cosine and ip,
 * negated squared L2 for l2), ties broken by lower gallery position
 * (insertion order) first.  Leave-one-out: a probe never retrieves the
 * gallery item whose id equals its own; that item is not part of the
 * probe's gallery at all (it counts neither as a hit nor in R).  A probe
 * with no item of its label in its gallery (after leave-one-out) is
 * skipped: counted in `skipped`, in no rate.
 *
 * Scores are computed in blocks of probes with one sgemm per block, so
 * memory stays bounded (a block of scores, not nq x n) and the work is
 * dominated by the matrix product.
 */
#ifndef CD_EVAL_H
#define CD_EVAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "error.h"
#include "vec.h"

#define CD_EVAL_KS_MAX 32   /* distinct k values in one evaluation */

/* A set of vectors with ids and labels; everything is caller-owned. */
typedef struct cd_eval_set {
    size_t n;
    const float *vectors;           /* n * dim floats, row-major; already
                                       normalised for cosine */
    const char *const *ids;         /* n NUL-terminated ids */
    const char *const *labels;      /* n labels (NULL entries not allowed);
                                       may be NULL for the baseline */
} cd_eval_set;

typedef struct cd_eval_input {
    int dim;                    /* of every vector below */
    cd_metric metric;
    cd_eval_set probes;         /* query-model probes: n >= 1, ids unique,
                                   every label non-NULL */
    cd_eval_set baseline;       /* gallery-model probes; n == 0: none.
                                   Otherwise its ids are unique and match
                                   the probes' ids one to one (any order);
                                   labels are taken from the probes */
    cd_eval_set gallery;        /* the labelled items' gallery-model
                                   embeddings in insertion order; ids
                                   unique, labels non-NULL */
    const float *paragon;       /* gallery.n * dim query-model embeddings
                                   of the same items in the same order, or
                                   NULL when not every item has one */
    const int *ks;              /* 1..CD_EVAL_KS_MAX values, each
                                   1..CD_K_MAX, distinct */
    size_t n_ks;
    int primary_k;              /* the criterion's metric: top-k for this
                                   k (one of ks), or 0 for map */
    /*
     * The mixed view (hot refresh, SPEC.md §3.8), when own_probes is not
     * NULL: for the cross ranking, an item with has_own[j] is scored by
     * the probe's own_probes row against own row j (the query model's
     * space, own_dim, the same metric), every other item by the probe's
     * probes row against the gallery as above; the two kinds are ranked
     * together (for l2 by true squared distance, as search merges them).
     * Baseline and paragon rankings are unchanged.
     */
    int own_dim;
    const float *own_probes;    /* probes.n * own_dim, or NULL */
    const float *own;           /* gallery.n * own_dim; rows of items
                                   without has_own are not read */
    const unsigned char *has_own;   /* gallery.n flags */
} cd_eval_input;

/* Retrieval metrics of one probe set against one gallery. */
typedef struct cd_eval_metrics {
    double top[CD_EVAL_KS_MAX]; /* top[i]: top-k accuracy for ks[i] */
    double map;                 /* mean average precision */
} cd_eval_metrics;

/* One label's line of the breakdown. */
typedef struct cd_eval_label {
    char *label;
    int64_t queries;            /* evaluated (not skipped) probes */
    double cross_top1;
    double baseline_top1;       /* NaN without a baseline */
    int64_t negative_flips;     /* 0 without a baseline */
    int64_t positive_flips;     /* 0 without a baseline */
} cd_eval_label;

/*
 * The report.  Rates are over evaluated probes.  A value that is not
 * defined (no baseline, no paragon, a zero denominator) is NaN.
 */
typedef struct cd_eval_report {
    size_t n_ks;
    int ks[CD_EVAL_KS_MAX];     /* ascending */
    int primary_k;              /* as given: k, or 0 for map */
    int64_t queries;            /* probes evaluated */
    int64_t skipped;            /* probes whose label has no gallery item */
    int64_t gallery_items;      /* gallery.n */
    double coverage;            /* mixed view: share of the gallery with
                                   has_own; NaN otherwise */

    cd_eval_metrics cross;      /* probes against the gallery */
    bool has_baseline;
    cd_eval_metrics baseline;   /* baseline probes against the gallery */
    bool has_paragon;
    cd_eval_metrics paragon;    /* probes against the paragon embeddings */
    cd_eval_metrics update_gain;/* (cross-baseline)/(paragon-baseline) */

    int compatible;             /* 1 passed, 0 failed, -1 no baseline */
    double primary_cross;       /* the criterion's two numbers */
    double primary_baseline;    /* NaN without a baseline */

    int64_t negative_flips;     /* 0 without a baseline */
    int64_t positive_flips;
    double nfr, nfi, pfr;       /* NaN without a baseline; nfi NaN when no
                                   probe is wrong in cross */

    size_t n_labels;
    cd_eval_label *labels;      /* labels of the evaluated probes, most
                                   negative flips first, then by label */
    size_t n_negative_flips;
    char **negative_flip_ids;   /* ids of the negatively flipped probes,
                                   in probe order */
} cd_eval_report;

/*
 * Computes the report.  Fails, with *out NULL and a message naming the
 * offending entry, with CD_EINVAL for a probe without a label, a probe id
 * or baseline id given twice, a baseline id that matches no probe or a
 * probe without a baseline entry, bad ks or primary_k (also for a gallery
 * item without an id or label, a gallery id given twice, a missing array,
 * a dim outside 1..CD_DIM_MAX or an unknown metric); CD_EUNPROCESSABLE
 * when the gallery is empty; CD_ETOOLARGE beyond 2^30 probes or items;
 * CD_ENOMEM.  On success the caller frees *out with
 * cd_eval_report_destroy().  Vectors must be finite (non-finite ones give
 * meaningless numbers, never a crash).
 */
cd_err cd_eval_run(const cd_eval_input *in, cd_eval_report **out,
                   cd_error *err);

/* Frees a report and everything it points to.  Accepts NULL. */
void cd_eval_report_destroy(cd_eval_report *r);

/* Room for any metric's name with its NUL ("top1000"). */
#define CD_EVAL_METRIC_NAME_SIZE 16

/*
 * The name of metric k: "top<k>" for k >= 1, "map" for 0.  The one
 * spelling of a metric: the report's keys, primary_metric and the
 * criterion text all use it.  Writes buf and returns it.
 */
const char *cd_eval_metric_name(int k, char buf[CD_EVAL_METRIC_NAME_SIZE]);

#endif
