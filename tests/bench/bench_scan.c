/*
 * bench_scan.c - one exact query at the memory limit: the machine's read
 * bandwidth, then single queries (k 10, cosine, dim 128) over 100,000
 * and 1,000,000 rows through
 * - cd_scan_search on one thread and on all of them (core/scan.c),
 * - FAISS's IndexFlatIP, nq 1, through its C API (what compatd's Flat
 *   search ran before the scan),
 * - cd_index_search on a Flat cd_index (compatd's own path today),
 * each as the median of alternating rounds (the machine is shared), in
 * microseconds and as the fraction of the all-threads read bandwidth its
 * rows/time reaches; the ratios compare against FAISS in the same run.
 * It also checks that the scan and FAISS return the same top-k.
 *
 *   bench_scan [ROUNDS]     (default 15; BENCH_SCAN_SMALL=1 skips 1 M)
 *
 * Nothing here asserts a time.
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <omp.h>

#include <faiss/c_api/IndexFlat_c.h>
#include <faiss/c_api/Index_c.h>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

#include "index.h"
#include "scan.h"

#define K 10
#define DIM 128
#define BW_FLOATS ((size_t)1 << 27)     /* 512 MB: far beyond any cache */

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void *xmalloc(size_t n)
{
    void *p = malloc(n);
    if (!p) {
        fprintf(stderr, "bench_scan: out of memory\n");
        exit(1);
    }
    return p;
}

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;

static float frand(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (float)((double)(rng_state >> 11) / 9007199254740992.0) * 2.0f - 1.0f;
}

static void fill_unit(float *x, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        double norm = 0;
        for (size_t d = 0; d < DIM; d++) {
            x[i * DIM + d] = frand();
            norm += (double)x[i * DIM + d] * x[i * DIM + d];
        }
        for (size_t d = 0; d < DIM; d++)
            x[i * DIM + d] = (float)(x[i * DIM + d] / sqrt(norm));
    }
}

/* ---- bandwidth ------------------------------------------------------- */

#if defined(__x86_64__)
__attribute__((target("avx2")))
static float read_sum_avx2(const float *x, size_t n)
{
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    for (size_t i = 0; i + 32 <= n; i += 32) {
        a0 = _mm256_add_ps(a0, _mm256_loadu_ps(x + i));
        a1 = _mm256_add_ps(a1, _mm256_loadu_ps(x + i + 8));
        a2 = _mm256_add_ps(a2, _mm256_loadu_ps(x + i + 16));
        a3 = _mm256_add_ps(a3, _mm256_loadu_ps(x + i + 24));
    }
    float out[8];
    _mm256_storeu_ps(out, _mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)));
    return out[0] + out[1] + out[2] + out[3] + out[4] + out[5] + out[6] + out[7];
}
#endif

/* Sums x (n floats, a multiple of 32) with 8-lane accumulators. */
static float read_sum(const float *x, size_t n)
{
#if defined(__x86_64__)
    if (cd_scan_has_avx2())
        return read_sum_avx2(x, n);
#endif
    float acc[8] = {0};
    for (size_t i = 0; i + 8 <= n; i += 8)
        for (int l = 0; l < 8; l++)
            acc[l] += x[i + l];
    return acc[0] + acc[1] + acc[2] + acc[3] + acc[4] + acc[5] + acc[6] + acc[7];
}

static volatile float sink;

/* Best read bandwidth (bytes/s) over `rounds` passes of x with `threads`. */
static double read_bw(const float *x, size_t n, int threads, int rounds)
{
    double best = 0;
    for (int r = 0; r < rounds; r++) {
        float total = 0;
        double t0 = now();
#pragma omp parallel num_threads(threads) reduction(+ : total)
        {
            size_t t = (size_t)omp_get_thread_num(), T = (size_t)omp_get_num_threads();
            size_t lo = n / 32 * t / T * 32, hi = n / 32 * (t + 1) / T * 32;
            total += read_sum(x + lo, hi - lo);
        }
        double bw = (double)n * sizeof(float) / (now() - t0);
        sink = total;
        if (bw > best)
            best = bw;
    }
    return best;
}

static double copy_bw(float *dst, const float *src, size_t n, int rounds)
{
    double best = 0;
    for (int r = 0; r < rounds; r++) {
        double t0 = now();
        memcpy(dst, src, n * sizeof(float));
        double bw = 2.0 * (double)n * sizeof(float) / (now() - t0);
        if (bw > best)
            best = bw;
    }
    return best;
}

/* ---- single queries -------------------------------------------------- */

enum { SCAN_1, SCAN_ALL, HALF_1, HALF_ALL, FAISS, CD_INDEX, METHODS };
static const char *method_name[METHODS] = {
    "scan, 1 thread", "scan, all threads", "half rows, 1 thread", "half rows, all threads",
    "FAISS IndexFlatIP nq=1", "cd_index_search (Flat)",
};

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static void run(size_t n, int rounds, double bw_all)
{
    float *x = xmalloc(n * DIM * sizeof *x);
    float *q = xmalloc((size_t)rounds * DIM * sizeof *q);
    fill_unit(x, n);
    fill_unit(q, (size_t)rounds);
    int64_t *ids = xmalloc(n * sizeof *ids);
    for (size_t i = 0; i < n; i++)
        ids[i] = (int64_t)i;

    FaissIndexFlat *fl = NULL;
    cd_index *cix = NULL;
    cd_error err = {0};
    if (faiss_IndexFlat_new_with(&fl, DIM, METRIC_INNER_PRODUCT) != 0 ||
        faiss_Index_add(fl, (idx_t)n, x) != 0 ||
        cd_index_create("Flat", DIM, CD_METRIC_COSINE, &cix, &err) != CD_OK ||
        cd_index_add(cix, ids, x, n, &err) != CD_OK) {
        fprintf(stderr, "bench_scan: building the indexes failed: %s\n", err.message);
        exit(1);
    }
    int all = cd_scan_threads(n, DIM);
    uint16_t *x16 = xmalloc(n * DIM * sizeof *x16);
    float x16_norm = 0;
    if (!cd_scan_to_half(x, n, DIM, x16, &x16_norm)) {
        fprintf(stderr, "bench_scan: no half-float scan on this CPU\n");
        exit(1);
    }
    double *t[METHODS];
    for (int m = 0; m < METHODS; m++)
        t[m] = xmalloc((size_t)rounds * sizeof *t[m]);
    int64_t id_m[METHODS][K];
    float sc_m[METHODS][K];
    int mismatches = 0;
    for (int r = 0; r < rounds; r++) {
        const float *qr = q + (size_t)r * DIM;
        for (int m0 = 0; m0 < METHODS; m0++) {
            int m = (m0 + r) % METHODS;     /* alternate who goes first */
            bool half = m == HALF_1 || m == HALF_ALL;
            cd_scan s = {.x = x, .n = n, .dim = DIM,
                         .threads = m == SCAN_1 || m == HALF_1 ? 1 : all,
                         .x16 = half ? x16 : NULL, .x16_norm = x16_norm};
            double t0 = now();
            int rc = 0;
            if (m == SCAN_1 || m == SCAN_ALL || half)
                rc = cd_scan_search(&s, qr, 1, K, id_m[m], sc_m[m], &err);
            else if (m == FAISS)
                rc = faiss_Index_search(fl, 1, qr, K, sc_m[m], id_m[m]);
            else
                rc = cd_index_search(cix, qr, 1, K, id_m[m], sc_m[m], &err);
            t[m][r] = now() - t0;
            if (rc != 0) {
                fprintf(stderr, "bench_scan: %s failed\n", method_name[m]);
                exit(1);
            }
        }
        for (int m = 0; m < METHODS; m++)
            for (int j = 0; j < K; j++)
                if (id_m[m][j] != id_m[FAISS][j] &&
                    fabsf(sc_m[m][j] - sc_m[FAISS][j]) > 1e-5f)
                    mismatches++;
    }
    double med[METHODS];
    for (int m = 0; m < METHODS; m++) {
        qsort(t[m], (size_t)rounds, sizeof *t[m], cmp_double);
        med[m] = t[m][rounds / 2];
    }
    double bytes = (double)n * DIM * sizeof(float);
    printf("\n%zu x %d cosine, k %d, %d rounds (%.0f MB of rows), all threads = %d:\n",
           n, DIM, K, rounds, bytes / 1e6, all);
    printf("  %-26s %10s %12s %16s\n", "", "p50 us", "of read bw", "FAISS / this");
    for (int m = 0; m < METHODS; m++)
        printf("  %-26s %10.0f %11.0f%% %15.2fx\n", method_name[m], med[m] * 1e6,
               100.0 * (m == HALF_1 || m == HALF_ALL || m == CD_INDEX ? bytes / 2 : bytes) /
                   med[m] / bw_all, med[FAISS] / med[m]);
    printf("  top-%d the same as FAISS's (ties aside): %s\n", K,
           mismatches ? "NO" : "yes");
    for (int m = 0; m < METHODS; m++)
        free(t[m]);
    free(x16);
    cd_index_destroy(cix);
    faiss_Index_free(fl);
    free(ids);
    free(q);
    free(x);
}

int main(int argc, char **argv)
{
    int rounds = argc > 1 ? atoi(argv[1]) : 15;
    if (rounds < 1)
        rounds = 1;
    int threads = omp_get_max_threads();
    float *a = xmalloc(BW_FLOATS * sizeof *a);
    float *b = xmalloc(BW_FLOATS * sizeof *b);
    for (size_t i = 0; i < BW_FLOATS; i++)
        a[i] = b[i] = (float)(i & 1023);
    double bw1 = read_bw(a, BW_FLOATS, 1, 10);
    double bwn = read_bw(a, BW_FLOATS, threads, 10);
    double cp = copy_bw(b, a, BW_FLOATS, 3);
    free(a);
    free(b);
    printf("kernel: %s\n", cd_scan_has_avx2() ? "AVX2+FMA" : "portable");
    printf("memory read bandwidth (512 MB, best of 10): 1 thread %.1f GB/s, %d threads %.1f GB/s; "
           "memcpy %.1f GB/s (read+write)\n", bw1 / 1e9, threads, bwn / 1e9, cp / 1e9);
    run(100000, rounds * 4, bwn);
    const char *small = getenv("BENCH_SCAN_SMALL");
    if (!small || strcmp(small, "1") != 0)
        run(1000000, rounds, bwn);
    return 0;
}
