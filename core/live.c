/*
 * live.c - the rolling agreement numbers of live.h.  One mutex guards a
 * small array of keys (galleries x query models x adapters: every key
 * names a gallery and a model that exist, so the array stays as small as
 * the catalog); each key owns a ring of the last CD_LIVE_WINDOW
 * agreements.  The means are summed afresh when read, so they are exact
 * over the window and never drift as a running sum would.
 */
#include "live.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct live_key {
    cd_live_stats id;           /* gallery, model, adapter, queries */
    double *overlap;            /* ring of CD_LIVE_WINDOW */
    unsigned char *top1;        /* ring of CD_LIVE_WINDOW */
    size_t next;                /* slot the next agreement goes to */
    size_t filled;              /* slots in use, <= CD_LIVE_WINDOW */
} live_key;

struct cd_live {
    pthread_mutex_t mu;
    live_key *keys;
    size_t n, cap;
};

cd_live *cd_live_create(void)
{
    cd_live *l = calloc(1, sizeof *l);
    if (l)
        pthread_mutex_init(&l->mu, NULL);
    return l;
}

static void key_finish(live_key *k)
{
    free(k->overlap);
    free(k->top1);
}

void cd_live_destroy(cd_live *l)
{
    if (!l)
        return;
    for (size_t i = 0; i < l->n; i++)
        key_finish(&l->keys[i]);
    free(l->keys);
    pthread_mutex_destroy(&l->mu);
    free(l);
}

/* The key's slot, added when missing; NULL when out of memory.  The
 * caller holds l->mu. */
static live_key *key_slot(cd_live *l, const char *gallery, const char *model,
                          const char *adapter)
{
    for (size_t i = 0; i < l->n; i++) {
        const cd_live_stats *id = &l->keys[i].id;
        if (strcmp(id->gallery, gallery) == 0 && strcmp(id->model, model) == 0 &&
            strcmp(id->adapter, adapter) == 0)
            return &l->keys[i];
    }
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 8;
        live_key *keys = realloc(l->keys, cap * sizeof *keys);
        if (!keys)
            return NULL;
        l->keys = keys;
        l->cap = cap;
    }
    live_key *k = &l->keys[l->n];
    memset(k, 0, sizeof *k);
    k->overlap = malloc(CD_LIVE_WINDOW * sizeof *k->overlap);
    k->top1 = malloc(CD_LIVE_WINDOW * sizeof *k->top1);
    if (!k->overlap || !k->top1) {
        key_finish(k);
        return NULL;
    }
    snprintf(k->id.gallery, sizeof k->id.gallery, "%s", gallery);
    snprintf(k->id.model, sizeof k->id.model, "%s", model);
    snprintf(k->id.adapter, sizeof k->id.adapter, "%s", adapter);
    l->n++;
    return k;
}

cd_err cd_live_record(cd_live *l, const char *gallery, const char *model,
                      const char *adapter, const cd_agreement *a, size_t n)
{
    pthread_mutex_lock(&l->mu);
    live_key *k = key_slot(l, gallery, model, adapter ? adapter : "");
    if (!k) {
        pthread_mutex_unlock(&l->mu);
        return CD_ENOMEM;
    }
    for (size_t i = 0; i < n; i++) {
        k->overlap[k->next] = a[i].overlap;
        k->top1[k->next] = a[i].top1_retained;
        k->next = (k->next + 1) % CD_LIVE_WINDOW;
        if (k->filled < CD_LIVE_WINDOW)
            k->filled++;
    }
    k->id.queries += (int64_t)n;
    pthread_mutex_unlock(&l->mu);
    return CD_OK;
}

void cd_live_forget(cd_live *l, const char *gallery)
{
    pthread_mutex_lock(&l->mu);
    for (size_t i = 0; i < l->n;) {
        if (strcmp(l->keys[i].id.gallery, gallery) == 0) {
            key_finish(&l->keys[i]);
            l->keys[i] = l->keys[--l->n];
        } else {
            i++;
        }
    }
    pthread_mutex_unlock(&l->mu);
}

static int stats_order(const void *a, const void *b)
{
    const cd_live_stats *x = a, *y = b;
    int c = strcmp(x->gallery, y->gallery);
    if (c == 0)
        c = strcmp(x->model, y->model);
    return c ? c : strcmp(x->adapter, y->adapter);
}

size_t cd_live_list(cd_live *l, const char *gallery, cd_live_stats **out)
{
    *out = NULL;
    pthread_mutex_lock(&l->mu);
    cd_live_stats *s = l->n ? malloc(l->n * sizeof *s) : NULL;
    size_t n = 0;
    for (size_t i = 0; s && i < l->n; i++) {
        const live_key *k = &l->keys[i];
        if (gallery && strcmp(k->id.gallery, gallery) != 0)
            continue;
        double overlap = 0, top1 = 0;
        for (size_t j = 0; j < k->filled; j++) {
            overlap += k->overlap[j];
            top1 += k->top1[j];
        }
        s[n] = k->id;
        s[n].window = k->filled;
        s[n].overlap_at_k = k->filled ? overlap / (double)k->filled : 0;
        s[n].top1_retained = k->filled ? top1 / (double)k->filled : 0;
        n++;
    }
    pthread_mutex_unlock(&l->mu);
    if (n == 0) {
        free(s);
        return 0;
    }
    qsort(s, n, sizeof *s, stats_order);
    *out = s;
    return n;
}
