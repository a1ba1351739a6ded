/*
 * test_scan.c - core/scan: cd_scan_search against a naive reference in
 * double precision (every score, sorted best first, ties by id), over
 * dims that are and are not multiples of 8, k from 1 to 1000 (also more
 * than the rows), inner product, cosine and L2, a skip set, 1..4 threads
 * and both kernels.  Duplicated rows make exact ties, which must come out
 * smaller id first; and every thread count must give the same bits.
 */
#include "check.h"
#include "scan.h"

#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static uint64_t rng_state = 0x2545f4914f6cdd1dULL;

static float frand(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (float)((double)(rng_state >> 11) / 9007199254740992.0) * 2.0f - 1.0f;
}

enum { IP, COSINE, L2 };

typedef struct ref {
    double score;
    int64_t id;
} ref;

static bool ref_l2;

static int ref_cmp(const void *pa, const void *pb)
{
    const ref *a = pa, *b = pb;
    if (a->score != b->score)
        return (ref_l2 ? a->score < b->score : a->score > b->score) ? -1 : 1;
    return a->id < b->id ? -1 : a->id > b->id;
}

/* Ids of the rows: spread out, so that a row index is never taken for one. */
static int64_t row_id(size_t i) { return 3 * (int64_t)i + 5; }

/* Skips odd rows; ctx non-NULL: the ids are row indexes (cd_scan.ids NULL). */
static bool skip_odd_rows(const void *ctx, int64_t id)
{
    int64_t row = ctx ? id : (id - 5) / 3;
    return row % 2 == 1;
}

static double ref_score(const float *x, const float *q, size_t dim, bool l2)
{
    double s = 0;
    for (size_t d = 0; d < dim; d++)
        s += l2 ? ((double)x[d] - q[d]) * ((double)x[d] - q[d])
                : (double)x[d] * q[d];
    return s;
}

/* Largest L2 norm of the n rows of x. */
static float norm_max(const float *x, size_t n, size_t dim)
{
    double best = 0;
    for (size_t i = 0; i < n; i++) {
        double s = 0;
        for (size_t d = 0; d < dim; d++)
            s += (double)x[i * dim + d] * x[i * dim + d];
        if (s > best)
            best = s;
    }
    return (float)sqrt(best);
}

/*
 * The half-row scan (cd_scan.x16) gives the very ids and score bits of the
 * scan of x alone, for 1 to 4 threads, with s's skip and ids.  Returns
 * false when this CPU has no half scan (nothing checked).
 */
static bool half_same(const cd_scan *s, const float *q, size_t nq, size_t k)
{
    if (!cd_scan_has_half())
        return false;
    uint16_t *x16 = malloc(s->n * s->dim * sizeof *x16);
    int64_t *want_id = malloc(nq * k * sizeof *want_id), *got_id = malloc(nq * k * sizeof *got_id);
    float *want_sc = malloc(nq * k * sizeof *want_sc), *got_sc = malloc(nq * k * sizeof *got_sc);
    REQUIRE(x16 && want_id && got_id && want_sc && got_sc);
    float norm = 0;
    REQUIRE(cd_scan_to_half(s->x, s->n, s->dim, x16, &norm));
    /* The bound it gives covers the largest norm, and not by much. */
    float exact = norm_max(s->x, s->n, s->dim);
    CHECK(norm >= exact && norm <= exact * 1.001f);
    cd_scan full = *s, half = *s;
    full.threads = 1;
    full.portable = false;
    full.x16 = NULL;
    half.x16 = x16;
    half.x16_norm = norm;
    cd_error err = {0};
    CHECK_EQ(cd_scan_search(&full, q, nq, k, want_id, want_sc, &err), CD_OK);
    for (int threads = 1; threads <= 4; threads++) {
        half.threads = threads;
        CHECK_EQ(cd_scan_search(&half, q, nq, k, got_id, got_sc, &err), CD_OK);
        CHECK(memcmp(want_id, got_id, nq * k * sizeof *got_id) == 0);
        CHECK(memcmp(want_sc, got_sc, nq * k * sizeof *got_sc) == 0);
    }
    free(x16);
    free(want_id);
    free(got_id);
    free(want_sc);
    free(got_sc);
    return true;
}

int main(void)
{
    static const struct {
        size_t n, dim, nq, k;
        int metric;
        bool skip, row_ids;
    } cases[] = {
        {1, 1, 1, 1, IP, false, false},
        {10, 7, 1, 20, L2, false, true},        /* n < k */
        {300, 8, 2, 1000, COSINE, false, true},  /* n < k = k max */
        {2000, 13, 4, 10, IP, false, true},
        {2000, 31, 3, 100, L2, true, true},
        {5000, 33, 1, 1000, COSINE, true, false},
        {3000, 128, 4, 50, COSINE, false, true},
        {3000, 130, 1, 7, L2, false, true},
        {20000, 64, 2, 1000, IP, true, true},
        {40000, 128, 1, 10, COSINE, false, true},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        size_t n = cases[c].n, dim = cases[c].dim, nq = cases[c].nq,
               k = cases[c].k;
        bool l2 = cases[c].metric == L2;
        float *x = malloc(n * dim * sizeof *x);
        float *q = malloc(nq * dim * sizeof *q);
        int64_t *ids = malloc(n * sizeof *ids);
        ref *r = malloc(n * sizeof *r);
        int64_t *got_id = malloc(nq * k * sizeof *got_id);
        float *got_sc = malloc(nq * k * sizeof *got_sc);
        int64_t *first_id = malloc(nq * k * sizeof *first_id);
        float *first_sc = malloc(nq * k * sizeof *first_sc);
        REQUIRE(x && q && ids && r && got_id && got_sc && first_id && first_sc);
        for (size_t i = 0; i < n; i++) {
            ids[i] = row_id(i);
            /* every fifth row repeats the one before: exact ties */
            if (i % 5 == 4) {
                memcpy(x + i * dim, x + (i - 1) * dim, dim * sizeof *x);
                continue;
            }
            double norm = 0;
            for (size_t d = 0; d < dim; d++) {
                x[i * dim + d] = frand();
                norm += (double)x[i * dim + d] * x[i * dim + d];
            }
            if (cases[c].metric == COSINE)
                for (size_t d = 0; d < dim; d++)
                    x[i * dim + d] = (float)(x[i * dim + d] / sqrt(norm));
        }
        for (size_t i = 0; i < nq * dim; i++)
            q[i] = frand();

        for (int portable = 0; portable <= 1; portable++)
            for (int threads = 1; threads <= 4; threads++) {
                cd_scan s = {.x = x, .ids = cases[c].row_ids ? ids : NULL,
                             .n = n, .dim = dim, .l2 = l2,
                             .skip = cases[c].skip ? skip_odd_rows : NULL,
                             .skip_ctx = cases[c].row_ids ? NULL : "rows",
                             .threads = threads, .portable = portable};
                cd_error err = {0};
                CHECK_EQ(cd_scan_search(&s, q, nq, k, got_id, got_sc, &err), CD_OK);
                if (!cases[c].row_ids)
                    for (size_t i = 0; i < nq * k; i++)
                        if (got_id[i] >= 0)
                            got_id[i] = row_id((size_t)got_id[i]);
                if (threads == 1) {
                    memcpy(first_id, got_id, nq * k * sizeof *got_id);
                    memcpy(first_sc, got_sc, nq * k * sizeof *got_sc);
                } else {
                    /* the same bits whatever the split */
                    CHECK(memcmp(first_id, got_id, nq * k * sizeof *got_id) == 0);
                    CHECK(memcmp(first_sc, got_sc, nq * k * sizeof *got_sc) == 0);
                }
                for (size_t qi = 0; qi < nq; qi++) {
                    size_t m = 0;
                    for (size_t i = 0; i < n; i++) {
                        if (cases[c].skip && skip_odd_rows(NULL, row_id(i)))
                            continue;
                        r[m].score = ref_score(x + i * dim, q + qi * dim, dim, l2);
                        r[m].id = row_id(i);
                        m++;
                    }
                    ref_l2 = l2;
                    qsort(r, m, sizeof *r, ref_cmp);
                    const int64_t *gi = got_id + qi * k;
                    const float *gs = got_sc + qi * k;
                    for (size_t j = 0; j < k; j++) {
                        if (j >= m) {       /* padding */
                            CHECK_EQ(gi[j], -1);
                            CHECK_EQ(gs[j], 0.0f);
                            continue;
                        }
                        CHECK(gi[j] >= 0);
                        size_t row = (size_t)((gi[j] - 5) / 3);
                        double want = ref_score(x + row * dim, q + qi * dim, dim, l2);
                        double tol = 1e-5 * (1 + fabs(r[j].score));
                        /* the score is this row's, and the rank's up to a tie */
                        CHECK_NEAR(gs[j], want, tol);
                        CHECK_NEAR(want, r[j].score, tol);
                        if (j > 0) {
                            bool ordered = l2 ? gs[j - 1] <= gs[j] : gs[j - 1] >= gs[j];
                            CHECK(ordered);
                            if (gs[j - 1] == gs[j])
                                CHECK(gi[j - 1] < gi[j]);   /* ties: smaller id first */
                            CHECK(gi[j - 1] != gi[j]);
                        }
                        if (cases[c].skip)
                            CHECK(!skip_odd_rows(NULL, gi[j]));
                    }
                    if (check_failures > 0)
                        break;
                }
            }
        if (!l2) {
            cd_scan s = {.x = x, .ids = cases[c].row_ids ? ids : NULL, .n = n, .dim = dim,
                         .skip = cases[c].skip ? skip_odd_rows : NULL,
                         .skip_ctx = cases[c].row_ids ? NULL : "rows"};
            if (!half_same(&s, q, nq, k) && c == 0)
                fprintf(stderr, "no half-float scan on this CPU: not checked\n");
        }
        free(x);
        free(q);
        free(ids);
        free(r);
        free(got_id);
        free(got_sc);
        free(first_id);
        free(first_sc);
    }

    /* Near-ties the half rows cannot tell apart: every row is one of 8
     * directions plus noise far below half's resolution (2^-11), so half
     * scores rank them arbitrarily, thousands within the bound of the
     * k-th; the exact pass must still give the scan of x's answer.  With
     * values near half's range ends too (tiny ones round to subnormals). */
    {
        size_t n = 30000, dim = 96, nq = 3, k = 25;
        float *x = malloc(n * dim * sizeof *x), *q = malloc(nq * dim * sizeof *q);
        float base[8][96];
        REQUIRE(x && q);
        for (int b = 0; b < 8; b++)
            for (size_t d = 0; d < dim; d++)
                base[b][d] = frand();
        for (size_t i = 0; i < n; i++)
            for (size_t d = 0; d < dim; d++)
                x[i * dim + d] = base[i % 8][d] * (1.0f + 1e-5f * frand()) +
                                 (d % 17 == 0 ? 3e-6f * frand() : 0.0f);
        for (size_t i = 0; i < nq * dim; i++)
            q[i] = frand() * (i % 5 == 0 ? 1000.0f : 1.0f);
        cd_scan s = {.x = x, .n = n, .dim = dim};
        half_same(&s, q, nq, k);
        s.skip = skip_odd_rows;
        s.skip_ctx = "rows";
        half_same(&s, q, nq, 1);
        /* A value half cannot hold: no half rows are made. */
        x[77] = 70000.0f;
        uint16_t *x16 = malloc(n * dim * sizeof *x16);
        REQUIRE(x16);
        float norm = 0;
        CHECK(!cd_scan_to_half(x, n, dim, x16, &norm));
        x[77] = NAN;
        CHECK(!cd_scan_to_half(x, n, dim, x16, &norm));
        free(x16);
        free(x);
        free(q);
    }

    /* no rows at all: every slot is padding */
    {
        int64_t id[3] = {7, 7, 7};
        float sc[3] = {1, 1, 1};
        float qv[2] = {1, 2};
        cd_scan s = {.x = NULL, .n = 0, .dim = 2};
        cd_error err = {0};
        CHECK_EQ(cd_scan_search(&s, qv, 1, 3, id, sc, &err), CD_OK);
        for (int j = 0; j < 3; j++) {
            CHECK_EQ(id[j], -1);
            CHECK_EQ(sc[j], 0.0f);
        }
    }
    return check_exit();
}
