/*
 * idset.h - an open-addressing set of non-negative int64 ids (item rowids),
 * shared inside core: index.c keeps the ids it hides in one, engine.c the
 * rowids each (gallery, model) index holds, for hot-refresh routing.
 *
 * Linear probing at load <= 1/2, deletion by backward shift (no
 * tombstones), so lookups stay short however many ids come and go.  A
 * caller-owned struct: zero it (or CD__IDSET_INIT) to start, release with
 * cd__idset_finish().  Not thread-safe: callers hold their own lock.
 */
#ifndef CD_IDSET_H
#define CD_IDSET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct cd__idset {
    int64_t *slots;     /* cap entries, -1 where free */
    size_t cap;         /* 0 or a power of two */
    size_t len;         /* ids present */
} cd__idset;

#define CD__IDSET_INIT {NULL, 0, 0}

/* True when id (< 0: never) is in s. */
bool cd__idset_contains(const cd__idset *s, int64_t id);

/*
 * Makes room for `more` further inserts without growing.  False when out
 * of memory, with s unchanged.
 */
bool cd__idset_reserve(cd__idset *s, size_t more);

/*
 * Inserts id (>= 0) into a set with room reserved; returns false when it
 * was there already.
 */
bool cd__idset_put(cd__idset *s, int64_t id);

/* Reserves room for one and inserts; false when out of memory. */
bool cd__idset_add(cd__idset *s, int64_t id);

/* Removes id; returns false when it was not there. */
bool cd__idset_remove(cd__idset *s, int64_t id);

/* Frees the slots and empties s.  Accepts NULL. */
void cd__idset_finish(cd__idset *s);

#endif
