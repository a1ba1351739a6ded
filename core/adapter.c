/*
 * adapter.c - fitting and applying the linear maps of adapter.h.
 *
 * A fit reads the pairs once, in blocks converted to double (normalised
 * for cosine models), and keeps only sufficient statistics per fold: AᵀA
 * (upper triangle; linear and affine), AᵀB, and the row sums of A and B
 * (affine).  Every solve works from those: the full fit from the totals,
 * fold f's cross-validation fit from the totals minus fold f's share, so
 * the five extra fits cost five small dense solves, not five more passes.
 * The folds' statistics are kept when they fit in FOLD_STATS_BYTES, and
 * otherwise recomputed one fold at a time (a second pass over the pairs).
 *
 * LAPACK comes from OpenBLAS, which exports the reference Fortran
 * routines (dgesdd_, dpotrf_, dpocon_, dpotrs_); Debian ships no LAPACKE
 * header with it, so the prototypes are declared here, with the hidden
 * length arguments gfortran expects after the others for CHARACTER
 * arguments (passing them keeps the calls correct when gfortran's callee
 * tail-calls with them).  Matrices are row-major in C; a row-major matrix
 * handed to Fortran is read as its transpose, and every call below says
 * how that is accounted for.
 *
 * Invariant: an adapter's weights and bias are finite float32 values and
 * never change after it is made.
 */
#include "adapter.h"

#include <cblas.h>
#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

extern void dgesdd_(const char *jobz, const int *m, const int *n, double *a,
                    const int *lda, double *s, double *u, const int *ldu,
                    double *vt, const int *ldvt, double *work,
                    const int *lwork, int *iwork, int *info, size_t jobz_len);
extern void dpotrf_(const char *uplo, const int *n, double *a, const int *lda,
                    int *info, size_t uplo_len);
extern void dpocon_(const char *uplo, const int *n, const double *a,
                    const int *lda, const double *anorm, double *rcond,
                    double *work, int *iwork, int *info, size_t uplo_len);
extern void dpotrs_(const char *uplo, const int *n, const int *nrhs,
                    const double *a, const int *lda, double *b,
                    const int *ldb, int *info, size_t uplo_len);

/* Pairs converted to double at once while reading them. */
#define BLOCK_ROWS 1024
/* Memory the five folds' statistics may take before they are recomputed
 * per fold instead of kept. */
#define FOLD_STATS_BYTES ((size_t)256 << 20)

struct cd_adapter {
    cd_adapter_info info;
    float *weights;             /* dim_from x dim_to, row-major */
    float *bias;                /* dim_to, affine only; else NULL */
};

/* Sufficient statistics of a range of pairs (normalised, in double). */
typedef struct stats {
    double *ata;                /* dim_from², upper triangle; NULL for
                                   orthogonal */
    double *atb;                /* dim_from x dim_to */
    double *sum_a;              /* dim_from; affine only, else NULL */
    double *sum_b;              /* dim_to; affine only, else NULL */
    size_t count;
} stats;

/* What a fit reads: the pairs and its parameters. */
typedef struct fit_ctx {
    const cd_adapter_params *p;
    const float *a, *b;
    size_t n;
    double *block_a;            /* BLOCK_ROWS x dim_from scratch */
    double *block_b;            /* BLOCK_ROWS x dim_to scratch */
} fit_ctx;

const char *cd_adapter_kind_name(cd_adapter_kind kind)
{
    switch (kind) {
    case CD_ADAPTER_ORTHOGONAL: return "orthogonal";
    case CD_ADAPTER_LINEAR: return "linear";
    case CD_ADAPTER_AFFINE: return "affine";
    }
    return "?";
}

bool cd_adapter_kind_parse(const char *s, cd_adapter_kind *out)
{
    static const cd_adapter_kind kinds[] = {
        CD_ADAPTER_ORTHOGONAL, CD_ADAPTER_LINEAR, CD_ADAPTER_AFFINE};
    for (size_t i = 0; s && i < sizeof kinds / sizeof kinds[0]; i++)
        if (strcmp(s, cd_adapter_kind_name(kinds[i])) == 0) {
            *out = kinds[i];
            return true;
        }
    return false;
}

cd_adapter_kind cd_adapter_default_kind(int dim_from, int dim_to)
{
    return dim_from == dim_to ? CD_ADAPTER_ORTHOGONAL : CD_ADAPTER_LINEAR;
}

size_t cd_adapter_min_pairs(const cd_adapter_params *p)
{
    if (p->kind == CD_ADAPTER_ORTHOGONAL)
        return 2;
    if (p->ridge > 0)
        return 1;
    return (size_t)p->dim_from + (p->kind == CD_ADAPTER_AFFINE ? 1 : 0);
}

static bool metric_known(cd_metric m)
{
    return m == CD_METRIC_COSINE || m == CD_METRIC_IP || m == CD_METRIC_L2;
}

static cd_err check_params(const cd_adapter_params *p, cd_error *err)
{
    if (p->kind != CD_ADAPTER_ORTHOGONAL && p->kind != CD_ADAPTER_LINEAR &&
        p->kind != CD_ADAPTER_AFFINE)
        return cd__fail(err, CD_EINVAL, "unknown adapter kind %d", (int)p->kind);
    if (p->dim_from < 1 || p->dim_from > CD_DIM_MAX || p->dim_to < 1 ||
        p->dim_to > CD_DIM_MAX)
        return cd__fail(err, CD_EINVAL, "adapter dims %d -> %d: each must be 1..%d",
                        p->dim_from, p->dim_to, CD_DIM_MAX);
    if (!metric_known(p->metric_from) || !metric_known(p->metric_to))
        return cd__fail(err, CD_EINVAL, "unknown metric");
    if (!isfinite(p->ridge) || p->ridge < 0)
        return cd__fail(err, CD_EINVAL, "ridge must be a finite number >= 0");
    if (p->kind == CD_ADAPTER_ORTHOGONAL) {
        if (p->dim_from != p->dim_to)
            return cd__fail(err, CD_EINVAL,
                            "orthogonal adapter needs equal dims, not %d -> %d "
                            "(linear or affine maps between different dims)",
                            p->dim_from, p->dim_to);
        if (p->ridge != 0)
            return cd__fail(err, CD_EINVAL,
                            "ridge applies to linear and affine adapters, not orthogonal");
    }
    return CD_OK;
}

/* The squared L2 norm of n floats, summed in double. */
static double norm2(const float *v, size_t n)
{
    double s = 0;
    for (size_t i = 0; i < n; i++)
        s += (double)v[i] * v[i];
    return s;
}

/* Checks one side of the pairs: finite, and nonzero under cosine. */
static cd_err check_side(const float *v, size_t n, int dim, cd_metric metric,
                         const char *side, cd_error *err)
{
    for (size_t i = 0; i < n; i++) {
        const float *row = v + i * (size_t)dim;
        if (!cd_vec_finite(row, (size_t)dim))
            return cd__fail(err, CD_EVECTOR, "pair %zu: %s vector has a NaN or Inf value",
                            i, side);
        if (metric == CD_METRIC_COSINE && norm2(row, (size_t)dim) == 0)
            return cd__fail(err, CD_EVECTOR,
                            "pair %zu: %s vector is zero, which has no direction for cosine",
                            i, side);
    }
    return CD_OK;
}

/*
 * Maps nq rows without checks: out = q W, each row divided by |q| when
 * `from` is cosine, plus the bias, normalised when `to` is cosine.
 * Returns the index of the first row that is zero where it must be
 * normalised (left as it is), or nq when there is none.
 */
static size_t map_rows(const cd_adapter *a, const float *q, size_t nq, float *out)
{
    const cd_adapter_params *p = &a->info.params;
    size_t df = (size_t)p->dim_from, dt = (size_t)p->dim_to, bad = nq;
    /* One query is a matrix-vector product, which OpenBLAS's sgemv does
     * three to eight times faster than its sgemm with one row. */
    if (nq == 1)
        cblas_sgemv(CblasRowMajor, CblasTrans, (int)df, (int)dt, 1.0f, a->weights,
                    (int)dt, q, 1, 0.0f, out, 1);
    else
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)nq, (int)dt,
                    (int)df, 1.0f, q, (int)df, a->weights, (int)dt, 0.0f, out, (int)dt);
    for (size_t i = 0; i < nq; i++) {
        float *row = out + i * dt;
        if (p->metric_from == CD_METRIC_COSINE) {
            double nq2 = norm2(q + i * df, df);
            if (nq2 > 0) {
                float s = (float)(1.0 / sqrt(nq2));
                for (size_t j = 0; j < dt; j++)
                    row[j] *= s;
            } else if (bad == nq) {
                bad = i;
            }
        }
        if (a->bias)
            for (size_t j = 0; j < dt; j++)
                row[j] += a->bias[j];
        if (p->metric_to == CD_METRIC_COSINE && !cd_vec_normalize(row, dt) && bad == nq)
            bad = i;
    }
    return bad;
}

cd_err cd_adapter_map(const cd_adapter *a, const float *q, size_t nq,
                      float *out, cd_error *err)
{
    const cd_adapter_params *p = &a->info.params;
    size_t df = (size_t)p->dim_from, dt = (size_t)p->dim_to;
    if (nq == 0)
        return CD_OK;
    for (size_t i = 0; i < nq; i++)
        if (!cd_vec_finite(q + i * df, df))
            return cd__fail(err, CD_EVECTOR, "query %zu has a NaN or Inf value", i);
    size_t bad = map_rows(a, q, nq, out);
    if (bad < nq)
        return cd__fail(err, CD_EVECTOR,
                        "query %zu: a zero vector has no direction for cosine "
                        "(before or after the adapter)", bad);
    if (p->metric_to != CD_METRIC_COSINE)
        for (size_t i = 0; i < nq; i++) {
            double n2;
            if (!cd_vec_in_range(out + i * dt, dt, &n2))
                return cd__fail(err, CD_EVECTOR,
                                "query %zu: the adapter maps it out of float32 range", i);
        }
    return CD_OK;
}

/* Row i of a side as double, normalised when the metric is cosine. */
static void row_to_double(const float *v, size_t dim, cd_metric metric, double *out)
{
    double s = 1;
    if (metric == CD_METRIC_COSINE)
        s = 1.0 / sqrt(norm2(v, dim));
    for (size_t j = 0; j < dim; j++)
        out[j] = v[j] * s;
}

static void stats_zero(stats *s, const cd_adapter_params *p)
{
    size_t df = (size_t)p->dim_from, dt = (size_t)p->dim_to;
    if (s->ata)
        memset(s->ata, 0, df * df * sizeof *s->ata);
    memset(s->atb, 0, df * dt * sizeof *s->atb);
    if (s->sum_a) {
        memset(s->sum_a, 0, df * sizeof *s->sum_a);
        memset(s->sum_b, 0, dt * sizeof *s->sum_b);
    }
    s->count = 0;
}

/* Sets s to the statistics of pairs [lo, hi). */
static void stats_of_range(const fit_ctx *c, size_t lo, size_t hi, stats *s)
{
    const cd_adapter_params *p = c->p;
    size_t df = (size_t)p->dim_from, dt = (size_t)p->dim_to;
    stats_zero(s, p);
    for (size_t r0 = lo; r0 < hi; r0 += BLOCK_ROWS) {
        size_t rows = hi - r0 < BLOCK_ROWS ? hi - r0 : BLOCK_ROWS;
        for (size_t i = 0; i < rows; i++) {
            row_to_double(c->a + (r0 + i) * df, df, p->metric_from, c->block_a + i * df);
            row_to_double(c->b + (r0 + i) * dt, dt, p->metric_to, c->block_b + i * dt);
        }
        if (s->ata)
            cblas_dsyrk(CblasRowMajor, CblasUpper, CblasTrans, (int)df, (int)rows,
                        1.0, c->block_a, (int)df, 1.0, s->ata, (int)df);
        cblas_dgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)df, (int)dt,
                    (int)rows, 1.0, c->block_a, (int)df, c->block_b, (int)dt, 1.0,
                    s->atb, (int)dt);
        if (s->sum_a)
            for (size_t i = 0; i < rows; i++) {
                for (size_t j = 0; j < df; j++)
                    s->sum_a[j] += c->block_a[i * df + j];
                for (size_t j = 0; j < dt; j++)
                    s->sum_b[j] += c->block_b[i * dt + j];
            }
    }
    s->count = hi - lo;
}

/* dst += src over the statistics. */
static void stats_add(stats *dst, const stats *src, const cd_adapter_params *p)
{
    size_t df = (size_t)p->dim_from, dt = (size_t)p->dim_to;
    if (dst->ata)
        for (size_t i = 0; i < df * df; i++)
            dst->ata[i] += src->ata[i];
    for (size_t i = 0; i < df * dt; i++)
        dst->atb[i] += src->atb[i];
    if (dst->sum_a) {
        for (size_t i = 0; i < df; i++)
            dst->sum_a[i] += src->sum_a[i];
        for (size_t i = 0; i < dt; i++)
            dst->sum_b[i] += src->sum_b[i];
    }
    dst->count += src->count;
}

static bool stats_alloc(stats *s, const cd_adapter_params *p)
{
    size_t df = (size_t)p->dim_from, dt = (size_t)p->dim_to;
    memset(s, 0, sizeof *s);
    if (p->kind != CD_ADAPTER_ORTHOGONAL && !(s->ata = malloc(df * df * sizeof *s->ata)))
        return false;
    if (!(s->atb = malloc(df * dt * sizeof *s->atb)))
        return false;
    if (p->kind == CD_ADAPTER_AFFINE &&
        (!(s->sum_a = malloc(df * sizeof *s->sum_a)) ||
         !(s->sum_b = malloc(dt * sizeof *s->sum_b))))
        return false;
    return true;
}

static void stats_free(stats *s)
{
    free(s->ata);
    free(s->atb);
    free(s->sum_a);
    free(s->sum_b);
}

/* Rounds n doubles to float into out; false when one overflows. */
static bool to_float(const double *v, size_t n, float *out)
{
    for (size_t i = 0; i < n; i++) {
        if (!(fabs(v[i]) <= FLT_MAX))
            return false;
        out[i] = (float)v[i];
    }
    return true;
}

/*
 * Orthogonal Procrustes on M = AᵀB (d x d, row-major).  Fortran reads the
 * buffer as Mᵀ and factorises Mᵀ = U' Σ VT', so M = VT'ᵀ Σ U'ᵀ: M's U is
 * vt read row-major and its Vᵀ is u read row-major, and W = U Vᵀ is the
 * row-major product vt · u.
 */
static cd_err solve_orthogonal(int d, double *m, double *w, cd_error *err)
{
    cd_err rc = CD_ENOMEM;
    size_t dd = (size_t)d * (size_t)d;
    double *s = malloc((size_t)d * sizeof *s), *u = malloc(dd * sizeof *u);
    double *vt = malloc(dd * sizeof *vt), *work = NULL, wq;
    int *iwork = malloc(8 * (size_t)d * sizeof *iwork), lwork = -1, info = 0;
    if (!s || !u || !vt || !iwork)
        goto out;
    dgesdd_("S", &d, &d, m, &d, s, u, &d, vt, &d, &wq, &lwork, iwork, &info, 1);
    if (info != 0) {
        rc = cd__fail(err, CD_EINTERNAL, "dgesdd workspace query failed (info %d)", info);
        goto out;
    }
    lwork = (int)wq;
    if (!(work = malloc((size_t)lwork * sizeof *work)))
        goto out;
    dgesdd_("S", &d, &d, m, &d, s, u, &d, vt, &d, work, &lwork, iwork, &info, 1);
    if (info != 0) {
        rc = cd__fail(err, CD_EUNPROCESSABLE,
                      "the SVD of A^T B did not converge (LAPACK dgesdd info %d)", info);
        goto out;
    }
    cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, d, d, d, 1.0, vt, d,
                u, d, 0.0, w, d);
    rc = CD_OK;
out:
    free(work);
    free(iwork);
    free(vt);
    free(u);
    free(s);
    return rc;
}

/*
 * Ridge least squares from statistics g = AᵀA (full, symmetric, centred
 * for affine) and r = AᵀB (row-major df x dt): solves (g + λI) W = r by
 * Cholesky.  g is overwritten.  The right-hand side goes to Fortran in
 * column-major order (x[i + j·df] = r[i][j]) and W comes back the same
 * way; g is symmetric, so its storage order does not matter.
 */
static cd_err solve_ridge(const cd_adapter_params *p, double *g, const double *r,
                          double *w, cd_error *err)
{
    int df = p->dim_from, dt = p->dim_to, info = 0;
    size_t udf = (size_t)df, udt = (size_t)dt;
    cd_err rc = CD_ENOMEM;
    double *x = malloc(udf * udt * sizeof *x), *work = malloc(3 * udf * sizeof *work);
    int *iwork = malloc(udf * sizeof *iwork);
    if (!x || !work || !iwork)
        goto out;
    double anorm = 0, rcond = 0;
    for (size_t i = 0; i < udf; i++) {
        g[i * udf + i] += p->ridge;
        double col = 0;
        for (size_t j = 0; j < udf; j++)
            col += fabs(g[j * udf + i]);
        if (col > anorm)
            anorm = col;
    }
    dpotrf_("U", &df, g, &df, &info, 1);
    if (info == 0)
        dpocon_("U", &df, g, &df, &anorm, &rcond, work, iwork, &info, 1);
    if (info != 0 || !(rcond >= CD_ADAPTER_RCOND_MIN)) {
        rc = cd__fail(err, CD_EUNPROCESSABLE,
                      "singular: A^T A + ridge I has no usable inverse (reciprocal "
                      "condition %.3g); the fit needs at least %zu linearly independent "
                      "pairs, or a ridge > 0", info != 0 ? 0.0 : rcond,
                      udf + (p->kind == CD_ADAPTER_AFFINE ? 1 : 0));
        goto out;
    }
    for (size_t i = 0; i < udf; i++)
        for (size_t j = 0; j < udt; j++)
            x[i + j * udf] = r[i * udt + j];
    dpotrs_("U", &df, &dt, g, &df, x, &df, &info, 1);
    if (info != 0) {
        rc = cd__fail(err, CD_EINTERNAL, "dpotrs failed (info %d)", info);
        goto out;
    }
    for (size_t i = 0; i < udf; i++)
        for (size_t j = 0; j < udt; j++)
            w[i * udt + j] = x[i + j * udf];
    rc = CD_OK;
out:
    free(iwork);
    free(work);
    free(x);
    return rc;
}

/*
 * Fits on the pairs of tot minus those of minus (NULL: none) into
 * dst->weights and dst->bias.  dst's info.params must be set; nothing
 * else of it is read.
 */
static cd_err solve(const cd_adapter_params *p, const stats *tot,
                    const stats *minus, cd_adapter *dst, cd_error *err)
{
    size_t df = (size_t)p->dim_from, dt = (size_t)p->dim_to;
    size_t n = tot->count - (minus ? minus->count : 0);
    cd_err rc = CD_ENOMEM;
    double *g = NULL, *r = malloc(df * dt * sizeof *r), *w = malloc(df * dt * sizeof *w);
    double *mean_a = NULL, *mean_b = NULL;
    if (!r || !w)
        goto out;
    for (size_t i = 0; i < df * dt; i++)
        r[i] = tot->atb[i] - (minus ? minus->atb[i] : 0);
    if (p->kind == CD_ADAPTER_ORTHOGONAL) {
        rc = solve_orthogonal(p->dim_from, r, w, err);
        if (rc != CD_OK)
            goto out;
    } else {
        if (!(g = malloc(df * df * sizeof *g)))
            goto out;
        for (size_t i = 0; i < df; i++)
            for (size_t j = i; j < df; j++)
                g[i * df + j] = g[j * df + i] =
                    tot->ata[i * df + j] - (minus ? minus->ata[i * df + j] : 0);
        if (p->kind == CD_ADAPTER_AFFINE) {
            /* Centring: Σ(a-ā)ᵀ(a-ā) = AᵀA - n āᵀā, Σ(a-ā)ᵀ(b-b̄) = AᵀB - n āᵀb̄. */
            if (!(mean_a = malloc(df * sizeof *mean_a)) ||
                !(mean_b = malloc(dt * sizeof *mean_b)))
                goto out;
            for (size_t i = 0; i < df; i++)
                mean_a[i] = (tot->sum_a[i] - (minus ? minus->sum_a[i] : 0)) / (double)n;
            for (size_t j = 0; j < dt; j++)
                mean_b[j] = (tot->sum_b[j] - (minus ? minus->sum_b[j] : 0)) / (double)n;
            for (size_t i = 0; i < df; i++) {
                for (size_t j = 0; j < df; j++)
                    g[i * df + j] -= (double)n * mean_a[i] * mean_a[j];
                for (size_t j = 0; j < dt; j++)
                    r[i * dt + j] -= (double)n * mean_a[i] * mean_b[j];
            }
        }
        rc = solve_ridge(p, g, r, w, err);
        if (rc != CD_OK)
            goto out;
    }
    if (!to_float(w, df * dt, dst->weights)) {
        rc = cd__fail(err, CD_EUNPROCESSABLE, "the fitted weights overflow float32");
        goto out;
    }
    if (p->kind == CD_ADAPTER_AFFINE) {
        /* b = b̄ - ā W, in double; mean_b becomes b. */
        for (size_t i = 0; i < df; i++)
            for (size_t j = 0; j < dt; j++)
                mean_b[j] -= mean_a[i] * w[i * dt + j];
        if (!to_float(mean_b, dt, dst->bias)) {
            rc = cd__fail(err, CD_EUNPROCESSABLE, "the fitted bias overflows float32");
            goto out;
        }
    }
    rc = CD_OK;
out:
    free(mean_b);
    free(mean_a);
    free(g);
    free(w);
    free(r);
    return rc;
}

/* Sum over pairs [lo, hi) of the cosine between mapped A row and B row
 * (0 where either is zero); buf has BLOCK_ROWS x dim_to floats. */
static double cosine_sum(const cd_adapter *ad, const fit_ctx *c, size_t lo,
                         size_t hi, float *buf)
{
    size_t df = (size_t)c->p->dim_from, dt = (size_t)c->p->dim_to;
    double sum = 0;
    for (size_t r0 = lo; r0 < hi; r0 += BLOCK_ROWS) {
        size_t rows = hi - r0 < BLOCK_ROWS ? hi - r0 : BLOCK_ROWS;
        map_rows(ad, c->a + r0 * df, rows, buf);
        for (size_t i = 0; i < rows; i++) {
            const float *m = buf + i * dt, *b = c->b + (r0 + i) * dt;
            double dot = 0, mm = 0, bb = 0;
            for (size_t j = 0; j < dt; j++) {
                dot += (double)m[j] * b[j];
                mm += (double)m[j] * m[j];
                bb += (double)b[j] * b[j];
            }
            if (mm > 0 && bb > 0)
                sum += dot / sqrt(mm * bb);
        }
    }
    return sum;
}

static cd_adapter *adapter_alloc(const cd_adapter_params *p)
{
    cd_adapter *a = calloc(1, sizeof *a);
    if (!a)
        return NULL;
    a->info.params = *p;
    a->weights = malloc((size_t)p->dim_from * (size_t)p->dim_to * sizeof *a->weights);
    if (p->kind == CD_ADAPTER_AFFINE)
        a->bias = malloc((size_t)p->dim_to * sizeof *a->bias);
    if (!a->weights || (p->kind == CD_ADAPTER_AFFINE && !a->bias)) {
        cd_adapter_destroy(a);
        return NULL;
    }
    return a;
}

/* Fold f's pairs: [f·n/5, (f+1)·n/5). */
static size_t fold_start(size_t f, size_t n)
{
    return f * n / CD_ADAPTER_FOLDS;
}

/*
 * The cross-validated mean cosine into *cv (NaN when a fold's training
 * pairs are too few or cannot be fitted).  folds holds the five folds'
 * statistics, or (when fold_kept is false) one slot to compute each in.
 */
static cd_err cross_validate(const fit_ctx *c, const stats *tot, stats *folds,
                             bool fold_kept, float *buf, double *cv, cd_error *err)
{
    cd_adapter_params trainp = *c->p;
    cd_adapter *tmp = adapter_alloc(c->p);
    double sum = 0;
    cd_err rc = CD_OK;
    *cv = NAN;
    if (!tmp)
        return cd__fail(err, CD_ENOMEM, "out of memory");
    for (size_t f = 0; f < CD_ADAPTER_FOLDS; f++) {
        size_t lo = fold_start(f, c->n), hi = fold_start(f + 1, c->n);
        stats *fs = fold_kept ? &folds[f] : &folds[0];
        if (!fold_kept)
            stats_of_range(c, lo, hi, fs);
        if (c->n - (hi - lo) < cd_adapter_min_pairs(&trainp))
            goto out;
        cd_error ferr;
        rc = solve(&trainp, tot, fs, tmp, &ferr);
        if (rc == CD_ENOMEM) {
            rc = cd__fail(err, CD_ENOMEM, "out of memory");
            goto out;
        }
        if (rc != CD_OK) {
            rc = CD_OK;     /* a fold that cannot be fitted: no CV number */
            goto out;
        }
        sum += cosine_sum(tmp, c, lo, hi, buf);
    }
    *cv = sum / (double)c->n;
out:
    cd_adapter_destroy(tmp);
    return rc;
}

cd_err cd_adapter_fit(const cd_adapter_params *p, const float *a,
                      const float *b, size_t n, cd_adapter **out,
                      cd_error *err)
{
    *out = NULL;
    cd_err rc = check_params(p, err);
    if (rc != CD_OK)
        return rc;
    if ((rc = check_side(a, n, p->dim_from, p->metric_from, "from", err)) != CD_OK ||
        (rc = check_side(b, n, p->dim_to, p->metric_to, "to", err)) != CD_OK)
        return rc;
    size_t need = cd_adapter_min_pairs(p);
    if (n < need)
        return cd__fail(err, CD_EUNPROCESSABLE,
                        "too few pairs: %s %d -> %d%s needs at least %zu pairs, got %zu",
                        cd_adapter_kind_name(p->kind), p->dim_from, p->dim_to,
                        p->kind != CD_ADAPTER_ORTHOGONAL && p->ridge == 0 ? " with ridge 0" : "",
                        need, n);

    size_t df = (size_t)p->dim_from, dt = (size_t)p->dim_to;
    bool cv = n >= CD_ADAPTER_CV_MIN_PAIRS;
    size_t fold_bytes = ((p->kind != CD_ADAPTER_ORTHOGONAL ? df * df : 0) + df * dt +
                         df + dt) * sizeof(double);
    bool fold_kept = cv && CD_ADAPTER_FOLDS * fold_bytes <= FOLD_STATS_BYTES;
    size_t nfolds = !cv ? 0 : fold_kept ? CD_ADAPTER_FOLDS : 1;
    fit_ctx c = {.p = p, .a = a, .b = b, .n = n};
    stats tot, folds[CD_ADAPTER_FOLDS];
    cd_adapter *ad = NULL;
    float *buf = NULL;
    bool ok = stats_alloc(&tot, p);
    memset(folds, 0, sizeof folds);
    for (size_t f = 0; f < nfolds; f++)
        ok = ok && stats_alloc(&folds[f], p);
    c.block_a = malloc(BLOCK_ROWS * df * sizeof *c.block_a);
    c.block_b = malloc(BLOCK_ROWS * dt * sizeof *c.block_b);
    buf = malloc(BLOCK_ROWS * dt * sizeof *buf);
    ad = adapter_alloc(p);
    if (!ok || !c.block_a || !c.block_b || !buf || !ad) {
        rc = cd__fail(err, CD_ENOMEM, "out of memory");
        goto fail;
    }

    if (fold_kept) {
        stats_zero(&tot, p);
        for (size_t f = 0; f < CD_ADAPTER_FOLDS; f++) {
            stats_of_range(&c, fold_start(f, n), fold_start(f + 1, n), &folds[f]);
            stats_add(&tot, &folds[f], p);
        }
    } else {
        stats_of_range(&c, 0, n, &tot);
    }
    if ((rc = solve(p, &tot, NULL, ad, err)) != CD_OK)
        goto fail;
    ad->info.pairs = n;
    ad->info.mean_cosine = cosine_sum(ad, &c, 0, n, buf) / (double)n;
    ad->info.cv_mean_cosine = NAN;
    if (cv && (rc = cross_validate(&c, &tot, folds, fold_kept, buf,
                                   &ad->info.cv_mean_cosine, err)) != CD_OK)
        goto fail;
    *out = ad;
    ad = NULL;
fail:
    cd_adapter_destroy(ad);
    free(buf);
    free(c.block_b);
    free(c.block_a);
    for (size_t f = 0; f < nfolds; f++)
        stats_free(&folds[f]);
    stats_free(&tot);
    return rc;
}

cd_err cd_adapter_from_weights(const cd_adapter_info *info,
                               const float *weights, const float *bias,
                               cd_adapter **out, cd_error *err)
{
    const cd_adapter_params *p = &info->params;
    *out = NULL;
    cd_err rc = check_params(p, err);
    if (rc != CD_OK)
        return rc;
    size_t nw = (size_t)p->dim_from * (size_t)p->dim_to;
    bool affine = p->kind == CD_ADAPTER_AFFINE;
    if (affine != (bias != NULL))
        return cd__fail(err, CD_EINVAL, "%s adapter %s a bias",
                        cd_adapter_kind_name(p->kind), affine ? "needs" : "has no");
    if (!weights || !cd_vec_finite(weights, nw) ||
        (bias && !cd_vec_finite(bias, (size_t)p->dim_to)))
        return cd__fail(err, CD_EINVAL, "adapter weights or bias missing or not finite");
    if (isnan(info->mean_cosine))
        return cd__fail(err, CD_EINVAL, "adapter mean_cosine is not a number");
    cd_adapter *a = adapter_alloc(p);
    if (!a)
        return cd__fail(err, CD_ENOMEM, "out of memory");
    a->info = *info;
    memcpy(a->weights, weights, nw * sizeof *weights);
    if (bias)
        memcpy(a->bias, bias, (size_t)p->dim_to * sizeof *bias);
    *out = a;
    return CD_OK;
}

void cd_adapter_destroy(cd_adapter *a)
{
    if (!a)
        return;
    free(a->bias);
    free(a->weights);
    free(a);
}

void cd_adapter_info_get(const cd_adapter *a, cd_adapter_info *out)
{
    *out = a->info;
}

const float *cd_adapter_weights(const cd_adapter *a)
{
    return a->weights;
}

const float *cd_adapter_bias(const cd_adapter *a)
{
    return a->bias;
}
