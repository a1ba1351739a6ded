/*
 * scan.c - exact top-k over in-memory rows, split between threads.
 *
 * The caller and up to threads-1 helpers (a small pool started on first
 * use, idle threads asleep on a condition variable) take chunks of rows
 * in turn; a chunk is read in blocks small enough to stay in the core's
 * L2 cache, each block scored for each query and the scores offered to
 * that query's heap of the participant.  Chunks rather than one range per
 * thread, and a caller that does not wait for helpers yet to start: on
 * a shared machine one of the cores is often busy, and a fixed split
 * (OpenMP's) made a two-thread scan wait for it, at 3x one thread's time.  A heap holds the k best seen so far
 * with the worst on top, keyed so that higher is better (L2 distances are
 * negated, which is exact); a row is only looked up in the skip set when
 * it would enter a heap, so a filter costs little.  The heaps of all
 * threads are merged into thread 0's and sorted best first.
 *
 * With half rows (cd_scan.x16, inner product only) a scan reads 2 bytes a
 * value instead of 4, which is what bounds it on a memory-bound machine,
 * and stays exact.  Let s be a row's score from x (the fp32 kernel) and h
 * its score from the half row.  Rounding a value to half changes it by
 * at most 2^-11 of itself, or 2^-25 below half's normal range; each of
 * the two fp32 sums of dim products is off from the true one by at most
 * about dim * 2^-24 of the sum of |q_i x_i|; so |h - s| <= delta with
 * delta = (2^-11 + 2 dim 2^-24) |q| N + 2^-25 |q|_1 (N the largest row
 * norm, by Cauchy-Schwarz), taken twice over here for margin.  If t is
 * the k-th best half score, the k rows at or above it have s >= t - delta,
 * so the k-th best s is at least t - delta, and a row among the true top
 * k has h >= t - 2 delta.  The scan therefore keeps, besides the heap of
 * half scores, every row whose h is within 2 delta of its heap's top at
 * that moment (the top only rises, and a thread's k-th is at most the
 * merged one), drops those below t - 2 delta once t is known, and scores
 * the rest from x into a second heap: the same rows and scores as a scan
 * of x alone, ties included.  Rows within 2 delta of the k-th are few
 * (delta is about 1e-3 for cosine), unless many rows are near-equal.
 */
#include "scan.h"

#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sys/sysinfo.h>

#include <omp.h>

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#include <immintrin.h>
#define SCAN_X86 1
#endif

#define BLOCK_BYTES (64 * 1024)             /* rows scored per query at once */
#define MIN_FLOATS_PER_THREAD (64 * 1024)   /* 256 KB: below, a thread costs more than it saves */
#define CHUNKS_PER_THREAD 16                /* so that a late thread takes less */
#define POOL_MAX 63                         /* helper threads at most */

typedef struct entry {
    float key;          /* score, negated for L2: higher is better */
    int64_t id;
} entry;

typedef struct heap {
    entry *e;           /* k slots; e[0] the worst kept */
    size_t len;
} heap;

typedef void (*score_fn)(const float *x, size_t rows, const float *q,
                         size_t dim, bool l2, float *out);

/* Rows kept for the exact pass of a half scan: row index and half score. */
typedef struct cands {
    size_t *row;
    float *key;
    size_t len, cap;
    bool failed;            /* out of memory: the scan fails */
} cands;

/* ---- kernels ------------------------------------------------------------ */

static void score_portable(const float *x, size_t rows, const float *q,
                           size_t dim, bool l2, float *out)
{
    for (size_t r = 0; r < rows; r++, x += dim) {
        float acc[8] = {0};
        size_t d = 0;
        for (; d + 8 <= dim; d += 8)
            for (int l = 0; l < 8; l++) {
                float v = l2 ? x[d + l] - q[d + l] : x[d + l];
                acc[l] += v * (l2 ? v : q[d + l]);
            }
        float s = ((acc[0] + acc[4]) + (acc[1] + acc[5])) +
                  ((acc[2] + acc[6]) + (acc[3] + acc[7]));
        for (; d < dim; d++) {
            float v = l2 ? x[d] - q[d] : x[d];
            s += v * (l2 ? v : q[d]);
        }
        out[r] = s;
    }
}

#ifdef SCAN_X86
__attribute__((target("avx2,fma")))
static float hsum256(__m256 v)
{
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* Four 8-lane accumulators: 32 floats a step, enough loads in flight. */
__attribute__((target("avx2,fma")))
static void score_avx2(const float *x, size_t rows, const float *q,
                       size_t dim, bool l2, float *out)
{
    for (size_t r = 0; r < rows; r++, x += dim) {
        __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
        __m256 a2 = _mm256_setzero_ps(), a3 = _mm256_setzero_ps();
        size_t d = 0;
        if (l2) {
            for (; d + 32 <= dim; d += 32) {
                __m256 v0 = _mm256_sub_ps(_mm256_loadu_ps(x + d), _mm256_loadu_ps(q + d));
                __m256 v1 = _mm256_sub_ps(_mm256_loadu_ps(x + d + 8), _mm256_loadu_ps(q + d + 8));
                __m256 v2 = _mm256_sub_ps(_mm256_loadu_ps(x + d + 16), _mm256_loadu_ps(q + d + 16));
                __m256 v3 = _mm256_sub_ps(_mm256_loadu_ps(x + d + 24), _mm256_loadu_ps(q + d + 24));
                a0 = _mm256_fmadd_ps(v0, v0, a0);
                a1 = _mm256_fmadd_ps(v1, v1, a1);
                a2 = _mm256_fmadd_ps(v2, v2, a2);
                a3 = _mm256_fmadd_ps(v3, v3, a3);
            }
            for (; d + 8 <= dim; d += 8) {
                __m256 v = _mm256_sub_ps(_mm256_loadu_ps(x + d), _mm256_loadu_ps(q + d));
                a0 = _mm256_fmadd_ps(v, v, a0);
            }
        } else {
            for (; d + 32 <= dim; d += 32) {
                a0 = _mm256_fmadd_ps(_mm256_loadu_ps(x + d), _mm256_loadu_ps(q + d), a0);
                a1 = _mm256_fmadd_ps(_mm256_loadu_ps(x + d + 8), _mm256_loadu_ps(q + d + 8), a1);
                a2 = _mm256_fmadd_ps(_mm256_loadu_ps(x + d + 16), _mm256_loadu_ps(q + d + 16), a2);
                a3 = _mm256_fmadd_ps(_mm256_loadu_ps(x + d + 24), _mm256_loadu_ps(q + d + 24), a3);
            }
            for (; d + 8 <= dim; d += 8)
                a0 = _mm256_fmadd_ps(_mm256_loadu_ps(x + d), _mm256_loadu_ps(q + d), a0);
        }
        float s = hsum256(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)));
        for (; d < dim; d++) {
            float v = l2 ? x[d] - q[d] : x[d];
            s += v * (l2 ? v : q[d]);
        }
        out[r] = s;
    }
}

/* score_avx2 for inner product over half rows. */
__attribute__((target("avx2,fma,f16c")))
static void score_half(const uint16_t *x, size_t rows, const float *q,
                       size_t dim, float *out)
{
    for (size_t r = 0; r < rows; r++, x += dim) {
        __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
        __m256 a2 = _mm256_setzero_ps(), a3 = _mm256_setzero_ps();
        size_t d = 0;
        for (; d + 32 <= dim; d += 32) {
            a0 = _mm256_fmadd_ps(_mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(x + d))),
                                 _mm256_loadu_ps(q + d), a0);
            a1 = _mm256_fmadd_ps(_mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(x + d + 8))),
                                 _mm256_loadu_ps(q + d + 8), a1);
            a2 = _mm256_fmadd_ps(_mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(x + d + 16))),
                                 _mm256_loadu_ps(q + d + 16), a2);
            a3 = _mm256_fmadd_ps(_mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(x + d + 24))),
                                 _mm256_loadu_ps(q + d + 24), a3);
        }
        for (; d + 8 <= dim; d += 8)
            a0 = _mm256_fmadd_ps(_mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(x + d))),
                                 _mm256_loadu_ps(q + d), a0);
        float s = hsum256(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)));
        for (; d < dim; d++)
            s += _cvtsh_ss(x[d]) * q[d];
        out[r] = s;
    }
}

/* One row of cd_scan_to_half; its squared norm (float sums) in *sq. */
__attribute__((target("avx2,fma,f16c")))
static bool row_to_half(const float *x, size_t dim, uint16_t *out, float *sq)
{
    const __m256 limit = _mm256_set1_ps(65504.0f);
    const __m256 abs_mask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
    __m256 acc = _mm256_setzero_ps();
    size_t i = 0;
    for (; i + 8 <= dim; i += 8) {
        __m256 v = _mm256_loadu_ps(x + i);
        /* NaN compares false: not below the limit either. */
        __m256 ok = _mm256_cmp_ps(_mm256_and_ps(v, abs_mask), limit, _CMP_LT_OQ);
        if (_mm256_movemask_ps(ok) != 0xff)
            return false;
        acc = _mm256_fmadd_ps(v, v, acc);
        _mm_storeu_si128((__m128i *)(out + i), _mm256_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT));
    }
    float s = hsum256(acc);
    for (; i < dim; i++) {
        if (!(x[i] < 65504.0f && x[i] > -65504.0f))
            return false;
        s += x[i] * x[i];
        out[i] = _cvtss_sh(x[i], _MM_FROUND_TO_NEAREST_INT);
    }
    *sq = s;
    return true;
}
#endif

bool cd_scan_has_half(void)
{
#ifdef SCAN_X86
    /* CPUID leaf 1, ECX bit 29 (clang's __builtin_cpu_supports does not
     * know "f16c"); AVX2's check covers the OS saving the registers. */
    unsigned a, b, c, d;
    return cd_scan_has_avx2() && __get_cpuid(1, &a, &b, &c, &d) && (c & bit_F16C);
#else
    return false;
#endif
}

bool cd_scan_to_half(const float *x, size_t rows, size_t dim, uint16_t *out,
                     float *norm_max)
{
#ifdef SCAN_X86
    if (!cd_scan_has_half())
        return false;
    float best = 0;
    for (size_t r = 0; r < rows; r++) {
        float sq;
        if (!row_to_half(x + r * dim, dim, out + r * dim, &sq))
            return false;
        if (sq > best)
            best = sq;
    }
    /* A float sum of dim squares is off by at most about dim 2^-24 of it. */
    float norm = sqrtf(best) * (1.0f + (float)(dim + 4) * 0x1p-23f);
    if (norm > *norm_max)
        *norm_max = norm;
    return true;
#else
    (void)x;
    (void)rows;
    (void)dim;
    (void)out;
    (void)norm_max;
    return false;
#endif
}

bool cd_scan_has_avx2(void)
{
#ifdef SCAN_X86
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#else
    return false;
#endif
}

/* ---- heaps -------------------------------------------------------------- */

/* a is worse than b: lower key, or the same key and a larger id. */
static inline bool worse(entry a, entry b)
{
    return a.key < b.key || (a.key == b.key && a.id > b.id);
}

static void sift_down(entry *e, size_t len, size_t i)
{
    entry v = e[i];
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= len)
            break;
        if (c + 1 < len && worse(e[c + 1], e[c]))
            c++;
        if (!worse(e[c], v))
            break;
        e[i] = e[c];
        i = c;
    }
    e[i] = v;
}

/* Offers v to h (capacity k); the caller has checked it beats a full heap's top. */
static void heap_offer(heap *h, size_t k, entry v)
{
    if (h->len < k) {
        size_t i = h->len++;
        while (i > 0 && worse(v, h->e[(i - 1) / 2])) {
            h->e[i] = h->e[(i - 1) / 2];
            i = (i - 1) / 2;
        }
        h->e[i] = v;
        return;
    }
    h->e[0] = v;
    sift_down(h->e, h->len, 0);
}

static inline bool beats_top(const heap *h, size_t k, entry v)
{
    return h->len < k || worse(h->e[0], v);
}

/* ---- scan --------------------------------------------------------------- */

int cd_scan_threads(size_t n, size_t dim)
{
    int t = omp_get_max_threads();
    size_t by_work = n / (MIN_FLOATS_PER_THREAD / dim + 1);
    if (by_work < (size_t)t)
        t = (int)by_work;
    return t < 1 ? 1 : t;
}

/* Scans rows [lo, hi) into heaps[0..nq). */
static void scan_range(const cd_scan *s, score_fn score, const float *queries,
                       size_t nq, size_t k, size_t lo, size_t hi,
                       heap *heaps, float *buf, size_t block)
{
    for (size_t r0 = lo; r0 < hi; r0 += block) {
        size_t rows = hi - r0 < block ? hi - r0 : block;
        const float *x = s->x + r0 * s->dim;
        for (size_t qi = 0; qi < nq; qi++) {
            heap *h = &heaps[qi];
            score(x, rows, queries + qi * s->dim, s->dim, s->l2, buf);
            for (size_t r = 0; r < rows; r++) {
                float key = s->l2 ? -buf[r] : buf[r];
                if (h->len == k && key < h->e[0].key)
                    continue;   /* the common case, decided in one compare */
                entry v = {key, s->ids ? s->ids[r0 + r] : (int64_t)(r0 + r)};
                if (!beats_top(h, k, v))
                    continue;
                if (s->skip && s->skip(s->skip_ctx, v.id))
                    continue;
                heap_offer(h, k, v);
            }
        }
    }
}

/* Keeps row (half score key) in c; when c is full, first drops the rows
 * below floor (the heap's top less 2 delta now: they can no longer be
 * within reach). */
static void cands_push(cands *c, size_t row, float key, float floor)
{
    if (c->len == c->cap) {
        size_t w = 0;
        for (size_t i = 0; i < c->len; i++)
            if (c->key[i] >= floor) {
                c->row[w] = c->row[i];
                c->key[w] = c->key[i];
                w++;
            }
        c->len = w;
        if (2 * c->len >= c->cap) {
            size_t cap = c->cap ? 2 * c->cap : 64;
            size_t *rows = realloc(c->row, cap * sizeof *rows);
            if (rows)
                c->row = rows;
            float *keys = rows ? realloc(c->key, cap * sizeof *keys) : NULL;
            if (!keys) {
                c->failed = true;
                return;
            }
            c->key = keys;
            c->cap = cap;
        }
    }
    c->row[c->len] = row;
    c->key[c->len] = key;
    c->len++;
}

#ifdef SCAN_X86
/* Scans half rows [lo, hi) into heaps[0..nq) (half scores) and keeps the
 * rows within twodelta[q] of a heap's top in cs[q] (see the file comment). */
static void scan_range_half(const cd_scan *s, const float *queries, size_t nq,
                            size_t k, size_t lo, size_t hi, heap *heaps,
                            cands *cs, const float *twodelta, float *buf,
                            size_t block)
{
    for (size_t r0 = lo; r0 < hi; r0 += block) {
        size_t rows = hi - r0 < block ? hi - r0 : block;
        const uint16_t *x = s->x16 + r0 * s->dim;
        for (size_t qi = 0; qi < nq; qi++) {
            heap *h = &heaps[qi];
            score_half(x, rows, queries + qi * s->dim, s->dim, buf);
            for (size_t r = 0; r < rows; r++) {
                float key = buf[r];
                float floor = h->len == k ? h->e[0].key - twodelta[qi] : -INFINITY;
                if (key < floor)
                    continue;
                entry v = {key, s->ids ? s->ids[r0 + r] : (int64_t)(r0 + r)};
                if (s->skip && s->skip(s->skip_ctx, v.id))
                    continue;
                cands_push(&cs[qi], r0 + r, key, floor);
                if (beats_top(h, k, v))
                    heap_offer(h, k, v);
            }
        }
    }
}
#endif

/* Sorts h best first into ids/scores (k entries, -1 padded); empties h. */
static void heap_emit(heap *h, bool l2, size_t k, int64_t *ids, float *scores)
{
    /* h->len <= k: a heap never holds more than the rows there are. */
    size_t len = h->len;
    for (size_t c = len; c < k; c++) {
        ids[c] = -1;
        scores[c] = 0.0f;
    }
    while (h->len > 0) {
        entry worst = h->e[0];
        size_t at = --h->len;
        h->e[0] = h->e[at];
        if (h->len > 0)
            sift_down(h->e, h->len, 0);
        ids[at] = worst.id;
        scores[at] = l2 ? -worst.key : worst.key;
    }
}

/* ---- the helper threads ---------------------------------------------- */

/*
 * One cd_scan_search call, shared with the helpers that join it.  Rows go
 * in chunks handed out by next_chunk, so a participant that starts late
 * (the other core is busy) takes fewer, and the caller never waits for a
 * helper that has not started: it withdraws the job and waits only for
 * those inside (refs).
 */
typedef struct job {
    const cd_scan *s;
    score_fn score;
    const float *queries;
    size_t nq, kh, block;
    heap *heaps;            /* slots x nq */
    cands *cands;           /* slots x nq, for a half scan; else NULL */
    const float *twodelta;  /* nq: 2 delta of each query (half scan) */
    float *bufs;            /* slots x block */
    size_t chunk_rows, nchunks;
    atomic_size_t next_chunk;
    atomic_int next_slot;   /* the caller has slot 0 */
    int slots;
    int refs;               /* helpers inside, under pool.lock */
    pthread_cond_t done;    /* refs fell to 0 */
    struct job *next;       /* in pool.jobs */
} job;

static struct {
    pthread_mutex_t lock;
    pthread_cond_t work;    /* a job was posted */
    job *jobs;              /* posted and not withdrawn */
    int helpers;            /* started; they live as long as the process */
} pool = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, NULL, 0};

static void participate(job *j, int slot)
{
    heap *h = j->heaps + (size_t)slot * j->nq;
    float *buf = j->bufs + (size_t)slot * j->block;
    for (;;) {
        size_t c = atomic_fetch_add(&j->next_chunk, 1);
        if (c >= j->nchunks)
            break;
        size_t lo = c * j->chunk_rows;
        size_t hi = lo + j->chunk_rows < j->s->n ? lo + j->chunk_rows : j->s->n;
#ifdef SCAN_X86
        if (j->cands) {
            scan_range_half(j->s, j->queries, j->nq, j->kh, lo, hi, h,
                            j->cands + (size_t)slot * j->nq, j->twodelta, buf,
                            j->block);
            continue;
        }
#endif
        scan_range(j->s, j->score, j->queries, j->nq, j->kh, lo, hi, h, buf,
                   j->block);
    }
}

/* Removes j from pool.jobs if it is there; pool.lock held. */
static void withdraw(job *j)
{
    for (job **p = &pool.jobs; *p; p = &(*p)->next)
        if (*p == j) {
            *p = j->next;
            return;
        }
}

static void *helper_main(void *arg)
{
    (void)arg;
    pthread_mutex_lock(&pool.lock);
    for (;;) {
        job *j = pool.jobs;
        if (!j) {
            pthread_cond_wait(&pool.work, &pool.lock);
            continue;
        }
        int slot = atomic_fetch_add(&j->next_slot, 1);
        if (slot >= j->slots || atomic_load(&j->next_chunk) >= j->nchunks) {
            withdraw(j);    /* nothing left in it for a helper */
            continue;
        }
        j->refs++;
        pthread_mutex_unlock(&pool.lock);
        participate(j, slot);
        pthread_mutex_lock(&pool.lock);
        if (--j->refs == 0)
            pthread_cond_signal(&j->done);
    }
    return NULL;
}

/* Starts helpers up to `want` (fewer when threads cannot be made); pool.lock held. */
static void grow_pool(int want)
{
    if (pool.helpers >= want)
        return;
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);   /* signals stay the caller's */
    pthread_attr_t attr;
    if (pthread_attr_init(&attr) == 0) {
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        pthread_t t;
        while (pool.helpers < want &&
               pthread_create(&t, &attr, helper_main, NULL) == 0)
            pool.helpers++;
        pthread_attr_destroy(&attr);
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
}

/*
 * want, or fewer when the machine's other cores are busy: a helper that
 * starts its chunk and is then preempted holds the whole scan up (the
 * caller must not return while a helper still reads the rows), so on a
 * loaded machine one thread is faster.  /proc/loadavg's runnable count is
 * read at the moment of the call (it includes this thread).
 */
static int idle_cores(int want)
{
    FILE *f = fopen("/proc/loadavg", "re");
    if (!f)
        return want;
    double l1, l5, l15;
    int running = 0, total = 0;
    int got = fscanf(f, "%lf %lf %lf %d/%d", &l1, &l5, &l15, &running, &total);
    fclose(f);
    if (got != 5 || running < 1)
        return want;
    int free_cores = get_nprocs() - running;   /* besides this thread's */
    if (free_cores < 0)
        free_cores = 0;
    return want < free_cores + 1 ? want : free_cores + 1;
}

cd_err cd_scan_search(const cd_scan *s, const float *queries, size_t nq,
                      size_t k, int64_t *ids_out, float *scores_out,
                      cd_error *err)
{
    if (nq == 0 || k == 0)
        return CD_OK;
    size_t kh = k < s->n ? k : s->n;    /* heap capacity; the rest is padding */
    int nt = s->threads > 0 ? s->threads : cd_scan_threads(s->n, s->dim);
    if (s->threads <= 0 && nt > 1)
        nt = idle_cores(nt);
    if (nt > POOL_MAX + 1)
        nt = POOL_MAX + 1;
    size_t block = BLOCK_BYTES / (s->dim * sizeof(float));
    if (block == 0)
        block = 1;
    score_fn score = score_portable;
    bool half = false;
#ifdef SCAN_X86
    if (!s->portable && cd_scan_has_avx2())
        score = score_avx2;
    half = s->x16 && !s->l2 && !s->portable && cd_scan_has_half();
#endif

    size_t slots = (size_t)nt * nq;
    heap *heaps = calloc(slots, sizeof *heaps);
    entry *pool_e = kh > 0 ? malloc(slots * kh * sizeof *pool_e) : NULL;
    float *bufs = malloc((size_t)nt * block * sizeof *bufs);
    cands *cs = half ? calloc(slots, sizeof *cs) : NULL;
    float *twodelta = half ? malloc(nq * sizeof *twodelta) : NULL;
    cd_err rc = CD_OK;
    if (!heaps || (kh > 0 && !pool_e) || !bufs || (half && (!cs || !twodelta))) {
        rc = cd__fail(err, CD_ENOMEM, "out of memory for a scan's heaps");
        goto out;
    }
    for (size_t i = 0; i < slots; i++)
        heaps[i].e = pool_e + i * kh;
    for (size_t qi = 0; half && qi < nq; qi++) {
        /* The file comment's delta, taken twice over, and doubled. */
        const float *q = queries + qi * s->dim;
        double q2 = 0, q1 = 0;
        for (size_t d = 0; d < s->dim; d++) {
            q2 += (double)q[d] * q[d];
            q1 += fabs((double)q[d]);
        }
        double delta = (ldexp(1, -11) + 2.0 * (double)s->dim * ldexp(1, -24)) * sqrt(q2) *
                       (double)s->x16_norm + ldexp(1, -25) * q1;
        twodelta[qi] = (float)(4.0 * delta);
    }

    if (kh > 0) {
        job j = {.s = s, .score = score, .queries = queries, .nq = nq,
                 .kh = kh, .block = block, .heaps = heaps, .bufs = bufs,
                 .cands = cs, .twodelta = twodelta, .slots = nt};
        j.chunk_rows = s->n / ((size_t)nt * CHUNKS_PER_THREAD);
        if (j.chunk_rows < block)
            j.chunk_rows = block;
        j.nchunks = (s->n + j.chunk_rows - 1) / j.chunk_rows;
        atomic_init(&j.next_chunk, 0);
        atomic_init(&j.next_slot, 1);
        bool shared = nt > 1 && j.nchunks > 1 &&
                      pthread_cond_init(&j.done, NULL) == 0;
        if (shared) {
            pthread_mutex_lock(&pool.lock);
            grow_pool(nt - 1);
            j.next = pool.jobs;
            pool.jobs = &j;
            for (int i = 1; i < nt; i++)
                pthread_cond_signal(&pool.work);
            pthread_mutex_unlock(&pool.lock);
        }
        participate(&j, 0);
        if (shared) {
            pthread_mutex_lock(&pool.lock);
            withdraw(&j);
            while (j.refs > 0)
                pthread_cond_wait(&j.done, &pool.lock);
            pthread_mutex_unlock(&pool.lock);
            pthread_cond_destroy(&j.done);
        }
    }

    /* Slots no helper took hold empty heaps; merging them is a no-op. */
    for (size_t qi = 0; qi < nq; qi++) {
        heap *h = &heaps[qi];
        for (int t = 1; t < nt; t++) {
            const heap *o = &heaps[(size_t)t * nq + qi];
            for (size_t e = 0; e < o->len; e++)
                if (beats_top(h, kh, o->e[e]))
                    heap_offer(h, kh, o->e[e]);
        }
    }
    for (size_t i = 0; half && i < slots; i++)
        if (cs[i].failed)
            rc = cd__fail(err, CD_ENOMEM, "out of memory for a scan's candidates");
    /* A half scan's exact pass: the kept rows at or above the merged k-th
     * half score less 2 delta, scored from x into the same heap. */
    for (size_t qi = 0; half && rc == CD_OK && qi < nq && kh > 0; qi++) {
        heap *h = &heaps[qi];
        float floor = h->len == kh ? h->e[0].key - twodelta[qi] : -INFINITY;
        const float *q = queries + qi * s->dim;
        h->len = 0;
        for (int t = 0; t < nt; t++) {
            const cands *c = &cs[(size_t)t * nq + qi];
            for (size_t i = 0; i < c->len; i++) {
                if (c->key[i] < floor)
                    continue;
                size_t row = c->row[i];
                float sc;
                score(s->x + row * s->dim, 1, q, s->dim, false, &sc);
                entry v = {sc, s->ids ? s->ids[row] : (int64_t)row};
                if (beats_top(h, kh, v))
                    heap_offer(h, kh, v);
            }
        }
    }
out:
    if (rc == CD_OK)
        for (size_t qi = 0; qi < nq; qi++)
            heap_emit(&heaps[qi], s->l2, k, ids_out + qi * k, scores_out + qi * k);
    for (size_t i = 0; cs && i < slots; i++) {
        free(cs[i].row);
        free(cs[i].key);
    }
    free(cs);
    free(twodelta);
    free(bufs);
    free(pool_e);
    free(heaps);
    return rc;
}
