/*
 * idset.c - the open-addressing id set of idset.h.  Slot i holds an id or
 * -1; every id sits in the run of occupied slots that starts at its home
 * slot (hash & (cap-1)), which is what backward-shift deletion keeps true.
 */
#include "idset.h"

#include <stdlib.h>

#define EMPTY (-1)

static size_t home(const cd__idset *s, int64_t id)
{
    uint64_t x = (uint64_t)id;     /* splitmix64's finaliser */
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ULL;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebULL;
    x ^= x >> 31;
    return (size_t)x & (s->cap - 1);
}

bool cd__idset_contains(const cd__idset *s, int64_t id)
{
    if (s->cap == 0 || id < 0)
        return false;
    for (size_t i = home(s, id);; i = (i + 1) & (s->cap - 1)) {
        if (s->slots[i] == id)
            return true;
        if (s->slots[i] == EMPTY)
            return false;
    }
}

bool cd__idset_put(cd__idset *s, int64_t id)
{
    size_t i = home(s, id);
    while (s->slots[i] != EMPTY) {
        if (s->slots[i] == id)
            return false;
        i = (i + 1) & (s->cap - 1);
    }
    s->slots[i] = id;
    s->len++;
    return true;
}

bool cd__idset_reserve(cd__idset *s, size_t more)
{
    if (more > SIZE_MAX / 4 - s->len)
        return false;
    size_t need = 2 * (s->len + more);
    if (need <= s->cap)
        return true;
    size_t cap = 16;
    while (cap < need)
        cap *= 2;
    int64_t *slots = malloc(cap * sizeof *slots);
    if (!slots)
        return false;
    for (size_t i = 0; i < cap; i++)
        slots[i] = EMPTY;
    cd__idset grown = {slots, cap, 0};
    for (size_t i = 0; i < s->cap; i++)
        if (s->slots[i] != EMPTY)
            cd__idset_put(&grown, s->slots[i]);
    free(s->slots);
    *s = grown;
    return true;
}

bool cd__idset_add(cd__idset *s, int64_t id)
{
    return cd__idset_reserve(s, 1) && (cd__idset_put(s, id) || true);
}

bool cd__idset_remove(cd__idset *s, int64_t id)
{
    if (s->cap == 0 || id < 0)
        return false;
    size_t mask = s->cap - 1, i = home(s, id);
    while (s->slots[i] != id) {
        if (s->slots[i] == EMPTY)
            return false;
        i = (i + 1) & mask;
    }
    /* Shift later members of the run back into the hole when the hole
     * lies between their home slot and where they sit. */
    for (size_t j = (i + 1) & mask; s->slots[j] != EMPTY; j = (j + 1) & mask) {
        size_t h = home(s, s->slots[j]);
        bool movable = i <= j ? (h <= i || h > j) : (h <= i && h > j);
        if (movable) {
            s->slots[i] = s->slots[j];
            i = j;
        }
    }
    s->slots[i] = EMPTY;
    s->len--;
    return true;
}

void cd__idset_finish(cd__idset *s)
{
    if (!s)
        return;
    free(s->slots);
    s->slots = NULL;
    s->cap = s->len = 0;
}
