/*
 * bench_eval.c - what a compatibility report costs next to the matrix
 * product it cannot avoid, and whether an independent numpy + faiss
 * implementation (eval_ref.py) gets the same numbers.
 *
 *   bench_eval [path/to/eval_ref.py]     (or EVAL_REF=...; none: skip it)
 *
 * For 10, 100 and 1,000 labels it generates (seeded) a cosine gallery of
 * 100,000 x 128 and 10,000 labelled probes with baseline probes; the
 * query-model probes lie closer to their label's centre than the baseline
 * ones, 5% of the probes carry a gallery item's id (leave-one-out) and 1%
 * a label the gallery lacks (skipped).  It times, interleaved, the bare
 * sgemm of the same shapes, blocked the way cd_eval_run blocks it (64 MB
 * of scores a block, so 167 probes x 100,000 items; once for the cross
 * probes and once for the baseline ones), and cd_eval_run itself (cross +
 * baseline, no paragon), keeping the better of two rounds of each.  Then
 * it writes the inputs as .npy files to a temporary directory, runs
 * `/usr/bin/python3 eval_ref.py DIR`, times it, and compares its numbers
 * (top-1/5/10 and map of cross and baseline, query, skip and flip counts)
 * with the report's: counts exactly, rates within 1e-6.
 *
 * BENCH_EVAL_SCALE=0.1 scales gallery and probes down for a quick look.
 * Nothing here asserts a time; the exit status is 1 only when the numbers
 * differ or something fails.
 */
#include <cblas.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "eval.h"

#define DIM 128
#define SCORE_BLOCK_BYTES ((size_t)64 << 20)  /* as in core/eval.c */
#define ROUNDS 2

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void *xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (!p) {
        fprintf(stderr, "bench_eval: out of memory\n");
        exit(1);
    }
    return p;
}

static uint64_t rng_state = 0x9E3779B97F4A7C15ULL;

static uint64_t rnd(void)
{
    uint64_t z = (rng_state += 0x9E3779B97F4A7C15ULL);    /* splitmix64 */
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

static double gauss(void)
{
    double u = ((double)(rnd() >> 11) + 1.0) / 9007199254740993.0;
    double v = (double)(rnd() >> 11) / 9007199254740992.0;
    return sqrt(-2.0 * log(u)) * cos(6.283185307179586 * v);
}

/* out = normalise(centre + sigma * unit-ish noise). */
static void noisy(const float *centre, double sigma, float *out)
{
    double s = 0.0;
    for (int d = 0; d < DIM; d++) {
        out[d] = (float)(centre[d] + sigma * gauss() / sqrt(DIM));
        s += (double)out[d] * out[d];
    }
    for (int d = 0; d < DIM; d++)
        out[d] = (float)(out[d] / sqrt(s));
}

typedef struct data {
    size_t n, nq;
    float *gallery, *probes, *baseline;      /* baseline in probe order */
    float *baseline_rev;                     /* the same, reversed */
    int32_t *glab, *plab;
    int64_t *self;                           /* gallery index or -1 */
    char **gids, **glabels, **pids, **plabels, **bids_rev;
} data;

/* "g17", "L3": a prefix and a number, malloc'd. */
static char *name_of(const char *prefix, long v)
{
    char buf[32];
    snprintf(buf, sizeof buf, "%s%ld", prefix, v);
    char *s = strdup(buf);
    if (!s) {
        fprintf(stderr, "bench_eval: out of memory\n");
        exit(1);
    }
    return s;
}

static void generate(data *D, size_t n, size_t nq, int n_labels)
{
    D->n = n;
    D->nq = nq;
    float *centres = xmalloc((size_t)n_labels * DIM * sizeof(float));
    float zero[DIM] = {0};
    for (int l = 0; l < n_labels; l++)
        noisy(zero, 1.0, centres + (size_t)l * DIM);
    D->gallery = xmalloc(n * DIM * sizeof(float));
    D->glab = xmalloc(n * sizeof *D->glab);
    D->gids = xmalloc(n * sizeof *D->gids);
    D->glabels = xmalloc(n * sizeof *D->glabels);
    for (size_t i = 0; i < n; i++) {
        D->glab[i] = (int32_t)(rnd() % (uint64_t)n_labels);
        D->gids[i] = name_of("g", (long)i);
        D->glabels[i] = name_of("L", D->glab[i]);
        noisy(centres + (size_t)D->glab[i] * DIM, 2.2, D->gallery + i * DIM);
    }
    D->probes = xmalloc(nq * DIM * sizeof(float));
    D->baseline = xmalloc(nq * DIM * sizeof(float));
    D->baseline_rev = xmalloc(nq * DIM * sizeof(float));
    D->plab = xmalloc(nq * sizeof *D->plab);
    D->self = xmalloc(nq * sizeof *D->self);
    D->pids = xmalloc(nq * sizeof *D->pids);
    D->plabels = xmalloc(nq * sizeof *D->plabels);
    D->bids_rev = xmalloc(nq * sizeof *D->bids_rev);
    for (size_t q = 0; q < nq; q++) {
        uint64_t kind = rnd() % 100;
        int32_t l = (int32_t)(rnd() % (uint64_t)n_labels);
        D->self[q] = -1;
        if (kind < 5 && q < n) {            /* a gallery item's own id */
            D->self[q] = (int64_t)q;
            l = D->glab[q];
            D->pids[q] = name_of("g", (long)q);
        } else {
            D->pids[q] = name_of("q", (long)q);
        }
        const float *c = centres + (size_t)l * DIM;
        if (kind == 99)                     /* a label the gallery lacks */
            l = n_labels;
        D->plab[q] = l;
        D->plabels[q] = name_of("L", l);
        noisy(c, 1.9, D->probes + q * DIM);
        noisy(c, 2.3, D->baseline + q * DIM);
    }
    for (size_t i = 0; i < nq; i++) {
        memcpy(D->baseline_rev + i * DIM, D->baseline + (nq - 1 - i) * DIM,
               DIM * sizeof(float));
        D->bids_rev[i] = D->pids[nq - 1 - i];
    }
    free(centres);
}

static void release(data *D)
{
    for (size_t i = 0; i < D->n; i++) {
        free(D->gids[i]);
        free(D->glabels[i]);
    }
    for (size_t q = 0; q < D->nq; q++) {
        free(D->pids[q]);
        free(D->plabels[q]);
    }
    free(D->gids);
    free(D->glabels);
    free(D->pids);
    free(D->plabels);
    free(D->bids_rev);
    free(D->gallery);
    free(D->probes);
    free(D->baseline);
    free(D->baseline_rev);
    free(D->glab);
    free(D->plab);
    free(D->self);
}

/* The sgemm cd_eval_run cannot avoid: every probe against every item,
 * in blocks of 64 MB of scores, for the cross and the baseline probes. */
static double time_sgemm(const data *D)
{
    size_t rows = SCORE_BLOCK_BYTES / (D->n * sizeof(float));
    rows = rows < 1 ? 1 : rows > D->nq ? D->nq : rows;
    float *c = xmalloc(rows * D->n * sizeof(float));
    double t0 = now();
    for (int set = 0; set < 2; set++) {
        const float *q = set ? D->baseline : D->probes;
        for (size_t b = 0; b < D->nq; b += rows) {
            size_t r = D->nq - b < rows ? D->nq - b : rows;
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)r,
                        (int)D->n, DIM, 1.0f, q + b * DIM, DIM, D->gallery,
                        DIM, 0.0f, c, (int)D->n);
        }
    }
    double t = now() - t0;
    free(c);
    return t;
}

static const int KS[] = {1, 5, 10};

static double time_report(const data *D, cd_eval_report **out)
{
    cd_eval_input in = {
        .dim = DIM, .metric = CD_METRIC_COSINE,
        .probes = {D->nq, D->probes, (const char *const *)D->pids,
                   (const char *const *)D->plabels},
        .baseline = {D->nq, D->baseline_rev,
                     (const char *const *)D->bids_rev, NULL},
        .gallery = {D->n, D->gallery, (const char *const *)D->gids,
                    (const char *const *)D->glabels},
        .paragon = NULL, .ks = KS, .n_ks = 3, .primary_k = 1,
    };
    cd_error err;
    double t0 = now();
    cd_err rc = cd_eval_run(&in, out, &err);
    double t = now() - t0;
    if (rc != CD_OK) {
        fprintf(stderr, "bench_eval: cd_eval_run: %s\n", err.message);
        exit(1);
    }
    return t;
}

/* Writes a C-order .npy file (format 1.0) of the given dtype and shape. */
static int write_npy(const char *dir, const char *name, const char *descr,
                     const void *p, size_t elem, size_t rows, size_t cols)
{
    char path[4096], header[256];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    int len = cols ? snprintf(header, sizeof header,
                              "{'descr': '%s', 'fortran_order': False, "
                              "'shape': (%zu, %zu), }", descr, rows, cols)
                   : snprintf(header, sizeof header,
                              "{'descr': '%s', 'fortran_order': False, "
                              "'shape': (%zu,), }", descr, rows);
    /* Pad with spaces and a newline so that data starts at a multiple
     * of 64 bytes (10 bytes of magic, version and length come first). */
    int total = (10 + len + 1 + 63) / 64 * 64;
    int pad = total - 10 - len - 1;
    FILE *f = fopen(path, "wb");
    if (!f)
        return -1;
    unsigned char pre[10] = {0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0,
                             (unsigned char)((total - 10) & 0xff),
                             (unsigned char)((total - 10) >> 8)};
    size_t count = rows * (cols ? cols : 1);
    int ok = fwrite(pre, 1, 10, f) == 10 &&
             fwrite(header, 1, (size_t)len, f) == (size_t)len &&
             fprintf(f, "%*s\n", pad, "") == pad + 1 &&
             fwrite(p, elem, count, f) == count;
    return fclose(f) == 0 && ok ? 0 : -1;
}

static int write_inputs(const data *D, const char *dir)
{
    int32_t ks[3] = {KS[0], KS[1], KS[2]};
    return write_npy(dir, "gallery.npy", "<f4", D->gallery, 4, D->n, DIM) ||
           write_npy(dir, "probes.npy", "<f4", D->probes, 4, D->nq, DIM) ||
           write_npy(dir, "baseline.npy", "<f4", D->baseline, 4, D->nq,
                     DIM) ||
           write_npy(dir, "gallery_labels.npy", "<i4", D->glab, 4, D->n, 0) ||
           write_npy(dir, "probe_labels.npy", "<i4", D->plab, 4, D->nq, 0) ||
           write_npy(dir, "probe_self.npy", "<i8", D->self, 8, D->nq, 0) ||
           write_npy(dir, "ks.npy", "<i4", ks, 4, 3, 0);
}

/* The reference's answer: "name value" lines. */
typedef struct ref_numbers {
    double queries, skipped, nf, pf;
    double cross[4], base[4];       /* top-1, top-5, top-10, map */
    int seen;
} ref_numbers;

static int run_reference(const char *script, const char *dir,
                         ref_numbers *r, double *secs)
{
    char cmd[8192];
    snprintf(cmd, sizeof cmd, "/usr/bin/python3 '%s' '%s'", script, dir);
    double t0 = now();
    FILE *p = popen(cmd, "r");
    if (!p)
        return -1;
    char line[256], name[64];
    double v;
    memset(r, 0, sizeof *r);
    static const char *const names[] = {
        "queries", "skipped", "negative_flips", "positive_flips",
        "cross_top1", "cross_top5", "cross_top10", "cross_map",
        "baseline_top1", "baseline_top5", "baseline_top10", "baseline_map"};
    double *slots[] = {&r->queries, &r->skipped, &r->nf, &r->pf,
                       &r->cross[0], &r->cross[1], &r->cross[2],
                       &r->cross[3], &r->base[0], &r->base[1], &r->base[2],
                       &r->base[3]};
    while (fgets(line, sizeof line, p)) {
        if (sscanf(line, "%63s %lf", name, &v) != 2)
            continue;
        for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
            if (strcmp(name, names[i]) == 0) {
                *slots[i] = v;
                r->seen |= 1 << i;
            }
    }
    int status = pclose(p);
    *secs = now() - t0;
    return status == 0 && r->seen == (1 << 12) - 1 ? 0 : -1;
}

static bool same_numbers(const cd_eval_report *rep, const ref_numbers *r)
{
    bool same = rep->queries == (int64_t)r->queries &&
                rep->skipped == (int64_t)r->skipped &&
                rep->negative_flips == (int64_t)r->nf &&
                rep->positive_flips == (int64_t)r->pf;
    for (int i = 0; i < 3; i++)
        same = same && fabs(rep->cross.top[i] - r->cross[i]) <= 1e-6 &&
               fabs(rep->baseline.top[i] - r->base[i]) <= 1e-6;
    same = same && fabs(rep->cross.map - r->cross[3]) <= 1e-6 &&
           fabs(rep->baseline.map - r->base[3]) <= 1e-6;
    if (!same)
        fprintf(stderr,
                "  compatd:   queries %lld skipped %lld nf %lld pf %lld "
                "cross %.9f %.9f %.9f %.9f baseline %.9f %.9f %.9f %.9f\n"
                "  reference: queries %.0f skipped %.0f nf %.0f pf %.0f "
                "cross %.9f %.9f %.9f %.9f baseline %.9f %.9f %.9f %.9f\n",
                (long long)rep->queries, (long long)rep->skipped,
                (long long)rep->negative_flips,
                (long long)rep->positive_flips, rep->cross.top[0],
                rep->cross.top[1], rep->cross.top[2], rep->cross.map,
                rep->baseline.top[0], rep->baseline.top[1],
                rep->baseline.top[2], rep->baseline.map, r->queries,
                r->skipped, r->nf, r->pf, r->cross[0], r->cross[1],
                r->cross[2], r->cross[3], r->base[0], r->base[1], r->base[2],
                r->base[3]);
    return same;
}

static void remove_dir(const char *dir)
{
    static const char *const files[] = {
        "gallery.npy", "probes.npy", "baseline.npy", "gallery_labels.npy",
        "probe_labels.npy", "probe_self.npy", "ks.npy"};
    char path[4096];
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        snprintf(path, sizeof path, "%s/%s", dir, files[i]);
        unlink(path);
    }
    rmdir(dir);
}

int main(int argc, char **argv)
{
    const char *script = argc > 1 ? argv[1] : getenv("EVAL_REF");
    const char *scale_s = getenv("BENCH_EVAL_SCALE");
    double scale = scale_s ? atof(scale_s) : 1.0;
    if (!(scale > 0.0) || scale > 10.0) {
        fprintf(stderr, "bench_eval: BENCH_EVAL_SCALE must be in (0, 10]\n");
        return 1;
    }
    size_t n = (size_t)(100000 * scale), nq = (size_t)(10000 * scale);
    if (n < 100)
        n = 100;
    if (nq < 10)
        nq = 10;
    static const int label_counts[] = {10, 100, 1000};
    int failures = 0;

    printf("compatd evaluation benchmark: %zu x %d gallery, %zu probes with "
           "baseline, cosine, ks 1/5/10\n", n, DIM, nq);
    printf("sgemm: the two bare products (cross, baseline) blocked as "
           "cd_eval_run blocks them; best of %d rounds each\n", ROUNDS);
    /* Idle OpenBLAS workers spin for a while after each product and take
     * CPU from the row walk that follows; say how they were told to. */
    const char *timeout = getenv("OPENBLAS_THREAD_TIMEOUT");
    const char *policy = getenv("OMP_WAIT_POLICY");
    printf("OPENBLAS_THREAD_TIMEOUT=%s OMP_WAIT_POLICY=%s\n\n",
           timeout ? timeout : "(unset)", policy ? policy : "(unset)");
    printf("%6s | %8s | %9s | %6s | %13s | %s\n", "labels", "sgemm s",
           "report s", "ratio", "numpy+faiss s", "same numbers");
    printf("-------+----------+-----------+--------+---------------+---------"
           "-----\n");
    fflush(stdout);
    for (size_t li = 0; li < sizeof label_counts / sizeof label_counts[0];
         li++) {
        data D;
        generate(&D, n, nq, label_counts[li]);
        double t_sgemm = INFINITY, t_report = INFINITY;
        cd_eval_report *rep = NULL;
        for (int round = 0; round < ROUNDS; round++) {
            double t = time_sgemm(&D);
            t_sgemm = t < t_sgemm ? t : t_sgemm;
            cd_eval_report_destroy(rep);
            rep = NULL;
            t = time_report(&D, &rep);
            t_report = t < t_report ? t : t_report;
        }

        char ref_time[32] = "-", same[16] = "not run";
        if (script && *script) {
            char dir[] = "/tmp/bench_eval.XXXXXX";
            ref_numbers r;
            double t_ref;
            if (!mkdtemp(dir) || write_inputs(&D, dir) != 0) {
                fprintf(stderr, "bench_eval: cannot write the inputs\n");
                failures++;
            } else if (run_reference(script, dir, &r, &t_ref) != 0) {
                fprintf(stderr, "bench_eval: %s failed\n", script);
                failures++;
                snprintf(same, sizeof same, "failed");
            } else {
                snprintf(ref_time, sizeof ref_time, "%.2f", t_ref);
                bool ok = same_numbers(rep, &r);
                snprintf(same, sizeof same, "%s", ok ? "yes" : "NO");
                failures += !ok;
            }
            remove_dir(dir);
        }
        printf("%6d | %8.2f | %9.2f | %5.2fx | %13s | %s\n",
               label_counts[li], t_sgemm, t_report, t_report / t_sgemm,
               ref_time, same);
        printf("       | cross top-1 %.4f map %.4f, baseline top-1 %.4f "
               "map %.4f, flips -%lld +%lld, %lld skipped\n",
               rep->cross.top[0], rep->cross.map, rep->baseline.top[0],
               rep->baseline.map, (long long)rep->negative_flips,
               (long long)rep->positive_flips, (long long)rep->skipped);
        fflush(stdout);
        cd_eval_report_destroy(rep);
        release(&D);
    }
    return failures ? 1 : 0;
}
