/*
 * live.h - live agreement without labels (SPEC.md §3.8): how far a query
 * model's search results agree with the same queries embedded by the
 * gallery model (the "shadow"), per query and as rolling means per
 * (gallery, query model, adapter).  Kept in memory only: a restart starts
 * every count at zero.
 */
#ifndef CD_LIVE_H
#define CD_LIVE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "error.h"
#include "text.h"

#define CD_LIVE_WINDOW 10000    /* the rolling means cover this many queries */

typedef struct cd_live cd_live;

/* One query's agreement with its shadow. */
typedef struct cd_agreement {
    double overlap;         /* |top-k(query) ∩ top-k(shadow)| / k */
    bool top1_retained;     /* the shadow's top-1 is in the query's top-k */
} cd_agreement;

/* The numbers kept for one (gallery, query model, adapter). */
typedef struct cd_live_stats {
    char gallery[CD_NAME_MAX + 1];
    char model[CD_NAME_MAX + 1];    /* the query model */
    char adapter[CD_NAME_MAX + 1];  /* "" when the search used none */
    int64_t queries;                /* shadowed queries since start */
    size_t window;                  /* how many the means cover:
                                       min(queries, CD_LIVE_WINDOW) */
    double overlap_at_k;            /* mean overlap over the window */
    double top1_retained;           /* share of top1_retained in it */
} cd_live_stats;

/* A new, empty table, freed with cd_live_destroy(); NULL when out of
 * memory. */
cd_live *cd_live_create(void);
void cd_live_destroy(cd_live *l);

/*
 * Adds n agreements, in order, to the key's count and window (creating the
 * key).  adapter NULL is "".  Thread-safe.  CD_ENOMEM leaves the table as
 * it was.
 */
cd_err cd_live_record(cd_live *l, const char *gallery, const char *model,
                      const char *adapter, const cd_agreement *a, size_t n);

/* Drops every key of the gallery (deleted, or its model changed). */
void cd_live_forget(cd_live *l, const char *gallery);

/*
 * The keys of gallery (NULL: every gallery), sorted by gallery, model and
 * adapter, into *out (free()d by the caller, NULL when none).  Returns the
 * count; 0 with *out NULL when out of memory.
 */
size_t cd_live_list(cd_live *l, const char *gallery, cd_live_stats **out);

#endif
