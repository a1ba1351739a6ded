/*
 * test_idset.c - core/idset: random adds and removes checked against a
 * plain boolean array, over sizes that make the table grow and wrap, so
 * backward-shift deletion meets runs that cross the end of the table.
 */
#include "check.h"
#include "idset.h"

#include <stdbool.h>
#include <stdint.h>

static uint64_t rng_state = 0x9e3779b97f4a7c15ULL;

static uint64_t rng(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}

int main(void)
{
    static const struct {
        int64_t universe;   /* ids are 0..universe-1 */
        int ops;
        int add_percent;
    } cases[] = {
        {8, 2000, 50},
        {100, 20000, 60},
        {5000, 200000, 70},
        {5000, 200000, 30},
        {1 << 20, 100000, 90},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        int64_t u = cases[c].universe;
        bool *ref = calloc((size_t)u, sizeof *ref);
        size_t ref_len = 0;
        cd__idset s = CD__IDSET_INIT;
        CHECK(ref != NULL);
        for (int op = 0; ref && op < cases[c].ops; op++) {
            int64_t id = (int64_t)(rng() % (uint64_t)u);
            if ((int)(rng() % 100) < cases[c].add_percent) {
                CHECK(cd__idset_add(&s, id));
                ref_len += !ref[id];
                ref[id] = true;
            } else {
                CHECK_EQ(cd__idset_remove(&s, id), ref[id]);
                ref_len -= ref[id];
                ref[id] = false;
            }
            if (op % 97 == 0) {
                int64_t probe = (int64_t)(rng() % (uint64_t)u);
                CHECK_EQ(cd__idset_contains(&s, probe), ref[probe]);
            }
        }
        CHECK_EQ(s.len, ref_len);
        size_t mismatches = 0;
        for (int64_t id = 0; ref && id < u && id < 200000; id++)
            mismatches += cd__idset_contains(&s, id) != ref[id];
        CHECK_EQ(mismatches, 0);
        CHECK(!cd__idset_contains(&s, -1));
        CHECK(!cd__idset_remove(&s, -5));
        cd__idset_finish(&s);
        CHECK(s.slots == NULL && s.len == 0);
        free(ref);
    }
    cd__idset_finish(NULL);
    return check_exit();
}
