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
 */
#include "scan.h"

#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sys/sysinfo.h>

#include <omp.h>

#if defined(__x86_64__) || defined(__i386__)
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
#endif

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
#ifdef SCAN_X86
    if (!s->portable && cd_scan_has_avx2())
        score = score_avx2;
#endif

    size_t slots = (size_t)nt * nq;
    heap *heaps = calloc(slots, sizeof *heaps);
    entry *pool_e = kh > 0 ? malloc(slots * kh * sizeof *pool_e) : NULL;
    float *bufs = malloc((size_t)nt * block * sizeof *bufs);
    cd_err rc = CD_OK;
    if (!heaps || (kh > 0 && !pool_e) || !bufs) {
        rc = cd__fail(err, CD_ENOMEM, "out of memory for a scan's heaps");
        goto out;
    }
    for (size_t i = 0; i < slots; i++)
        heaps[i].e = pool_e + i * kh;

    if (kh > 0) {
        job j = {.s = s, .score = score, .queries = queries, .nq = nq,
                 .kh = kh, .block = block, .heaps = heaps, .bufs = bufs,
                 .slots = nt};
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
out:
    if (rc == CD_OK)
        for (size_t qi = 0; qi < nq; qi++)
            heap_emit(&heaps[qi], s->l2, k, ids_out + qi * k, scores_out + qi * k);
    free(bufs);
    free(pool_e);
    free(heaps);
    return rc;
}
