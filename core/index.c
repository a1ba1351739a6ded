/*
 * index.c - one FAISS index for one (gallery, model), through FAISS's C API.
 *
 * A cd_index owns at most two FAISS indexes.  `main` is built by
 * faiss_index_factory from the spec and always takes caller ids: IVF
 * indexes (also under a pre-transform) and spec-made IDMaps do natively,
 * anything else is wrapped in an IndexIDMap that owns it.  While `main`'s
 * type is untrained, `staging` (an IndexIDMap over an IndexFlat of the
 * same metric) holds every vector and answers searches exactly; `main`
 * is then an empty untrained instance kept for its facts (nlist, whether
 * it can remove).  When the staged count reaches the threshold a fresh
 * `main` is trained on all staged vectors, they are added under their
 * ids, and staging is dropped: `staging == NULL` exactly when the index is
 * trained.
 *
 * Ids are item rowids, never negative (FAISS pads results with -1).
 * Removal is real where FAISS can remove; otherwise (HNSW) removed ids go
 * into `hidden` and `hidden_vectors` counts the stored vectors carrying a
 * hidden id, so the live count is ntotal - hidden_vectors.  An id added
 * again while hidden stays hidden (neither its old nor its new vector is
 * ever returned) and the index asks for a rebuild.  Staging removes for
 * real, so `hidden` is empty while staging.
 *
 * Search tuning, set on every main index built or loaded: IVF probes
 * nprobe = max(32, nlist / 16) lists (capped at nlist): 1/8 of the lists
 * at IVF256, where recall@10 stays above 0.99 on clustered data (FAISS's
 * default of 1 gives about 0.5); HNSW explores 64 candidates (FAISS's
 * default is 16).  Plain PQ components of the spec are built without
 * polysemous training (see spec_without_polysemous).
 *
 * A search's own parameters (cd_index_search_params): FAISS 1.7.3's C API
 * has no per-call search parameters, so such a search sets efSearch or
 * nprobe on the index itself, searches and sets the default back, holding
 * the index's params_lock for writing; every other search of the main
 * index holds it for reading.  Searches with the defaults run side by
 * side; one with its own parameters runs alone on its index, and no
 * search ever sees another's parameters.
 *
 * Every mutating call leaves the index as it was when it fails, except
 * when FAISS itself fails half-way through an add or remove (out of
 * memory), which the caller treats as "rebuild".
 */
#include "index.h"

#include <errno.h>
#include <pthread.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <faiss/c_api/AutoTune_c.h>
#include <faiss/c_api/IndexFlat_c.h>
#include <faiss/c_api/IndexIVFFlat_c.h>
#include <faiss/c_api/IndexIVF_c.h>
#include <faiss/c_api/IndexPreTransform_c.h>
#include <faiss/c_api/Index_c.h>
#include <faiss/c_api/MetaIndexes_c.h>
#include <faiss/c_api/error_c.h>
#include <faiss/c_api/impl/AuxIndexStructures_c.h>
#include <faiss/c_api/index_factory_c.h>
#include <faiss/c_api/index_io_c.h>

#include "idset.h"
#include "scan.h"

#define TRAIN_POINTS_PER_LIST 39   /* FAISS k-means warns below this */
#define TRAIN_PQ_MIN (256 * TRAIN_POINTS_PER_LIST) /* 256 centroids per PQ
                                                      sub-quantizer */
#define TRAIN_OTHER 10000          /* untrained types that are not IVF */
#define NPROBE_MIN 32
#define HNSW_EF_SEARCH 64

struct cd_index {
    char spec[CD_SPEC_MAX + 1];
    int dim;
    FaissMetricType metric;
    FaissIndex *main;       /* takes ids; untrained while staging != NULL */
    FaissIndex *staging;    /* IDMap(Flat) holding all vectors, or NULL */
    int64_t threshold;      /* staged count that triggers training; 0: none */
    size_t nlist;           /* IVF lists of main, 0 when not IVF */
    bool can_remove;        /* main's type removes for real */
    bool hnsw;              /* main is an HNSW */
    pthread_rwlock_t params_lock;   /* read: a search with the default
                               parameters; write: one with its own */
    cd__idset hidden;          /* removed ids main could not remove */
    int64_t hidden_vectors; /* stored vectors whose id is in hidden */
    bool readded;           /* a hidden id was added again */
    /* A Flat inner-product main's rows as half floats, row for row, for
     * the scan (cd_scan.x16: half the bytes read, the same results); kept
     * by every add and remove (half_sync).  x16_rows 0 when there is none:
     * another type, L2, or x16_off. */
    uint16_t *x16;
    size_t x16_rows, x16_cap;
    float x16_norm;         /* largest row norm seen, rounded up */
    bool x16_off;           /* a value no half holds, or out of memory:
                               no half rows for this index from then on */
};

/* ---- FAISS helpers -------------------------------------------------- */

/*
 * Fails with code and FAISS's last message after `what`, without the
 * "Error in <C++ signature> at <file>:<line>: " that FAISS puts first:
 * the message may reach an API client.
 */
static cd_err faiss_fail(cd_error *err, cd_err code, const char *what)
{
    const char *msg = faiss_get_last_error();
    if (!msg)
        msg = "unknown error";
    if (strncmp(msg, "Error in ", 9) == 0) {
        const char *at = strstr(msg, " at ");
        const char *colon = at ? strstr(at, ": ") : NULL;
        if (colon && colon[2] != '\0')
            msg = colon + 2;
    }
    return cd__fail(err, code, "%s: %s", what, msg);
}

/* The IVF under ix's id map or pre-transforms, or NULL. */
static FaissIndexIVF *find_ivf(FaissIndex *ix)
{
    while (ix) {
        FaissIndexIVF *ivf = faiss_IndexIVF_cast(ix);
        if (ivf)
            return ivf;
        if (faiss_IndexIDMap_cast(ix))
            ix = faiss_IndexIDMap_sub_index(faiss_IndexIDMap_cast(ix));
        else if (faiss_IndexPreTransform_cast(ix))
            ix = faiss_IndexPreTransform_index(faiss_IndexPreTransform_cast(ix));
        else
            return NULL;
    }
    return NULL;
}

/* True when ix implements add_with_ids itself. */
static bool takes_ids(FaissIndex *ix)
{
    if (faiss_IndexIDMap_cast(ix) || faiss_IndexIVF_cast(ix))
        return true;
    FaissIndexPreTransform *pt = faiss_IndexPreTransform_cast(ix);
    return pt && takes_ids(faiss_IndexPreTransform_index(pt));
}

/*
 * Writes a short description of ix's wrapper chain ("IDMap>Flat",
 * "IVFFlat256") to buf, to tell whether a loaded index has the shape the
 * spec makes.  The C API cannot name every class; "?" stands for the rest.
 */
static void index_shape(FaissIndex *ix, char *buf, size_t size)
{
    size_t used = 0;
    buf[0] = '\0';
    while (ix && used < size) {
        const char *sep = used ? ">" : "";
        FaissIndexIVF *ivf = faiss_IndexIVF_cast(ix);
        FaissIndex *next = NULL;
        int w;
        if (faiss_IndexIDMap2_cast(ix)) {
            w = snprintf(buf + used, size - used, "%sIDMap2", sep);
            next = faiss_IndexIDMap2_sub_index(faiss_IndexIDMap2_cast(ix));
        } else if (faiss_IndexIDMap_cast(ix)) {
            w = snprintf(buf + used, size - used, "%sIDMap", sep);
            next = faiss_IndexIDMap_sub_index(faiss_IndexIDMap_cast(ix));
        } else if (faiss_IndexPreTransform_cast(ix)) {
            w = snprintf(buf + used, size - used, "%sPT", sep);
            next = faiss_IndexPreTransform_index(
                faiss_IndexPreTransform_cast(ix));
        } else if (ivf) {
            w = snprintf(buf + used, size - used, "%sIVF%s%zu", sep,
                         faiss_IndexIVFFlat_cast(ix) ? "Flat" : "",
                         faiss_IndexIVF_nlist(ivf));
        } else if (faiss_IndexFlat_cast(ix)) {
            w = snprintf(buf + used, size - used, "%sFlat", sep);
        } else {
            w = snprintf(buf + used, size - used, "%s?", sep);
        }
        if (w < 0)
            return;
        used += (size_t)w;
        ix = next;
    }
}

/* The lists an IVF index of nlist lists probes unless a search asks for
 * another number; see the file comment. */
static size_t default_nprobe(size_t nlist)
{
    size_t nprobe = nlist / 16 > NPROBE_MIN ? nlist / 16 : NPROBE_MIN;
    return nprobe > nlist ? nlist : nprobe;
}

/* Sets nprobe (IVF) and efSearch (HNSW) on ix; see the file comment. */
static cd_err tune(FaissIndex *ix, size_t nlist, cd_error *err)
{
    FaissParameterSpace *ps = NULL;
    if (faiss_ParameterSpace_new(&ps) != 0)
        return faiss_fail(err, CD_ENOMEM, "faiss parameter space");
    cd_err rc = CD_OK;
    if (nlist > 0) {
        if (faiss_ParameterSpace_set_index_parameter(ps, ix, "nprobe",
                                                     (double)default_nprobe(nlist)) != 0)
            rc = faiss_fail(err, CD_EINTERNAL, "faiss set nprobe");
    }
    /* Fails for every index without an HNSW in it; that is expected. */
    (void)faiss_ParameterSpace_set_index_parameter(ps, ix, "efSearch",
                                                   HNSW_EF_SEARCH);
    faiss_ParameterSpace_free(ps);
    return rc;
}

/* An empty IndexIDMap over an IndexFlat: the staging index. */
static cd_err new_staging(int dim, FaissMetricType metric, FaissIndex **out,
                          cd_error *err)
{
    FaissIndexFlat *flat = NULL;
    FaissIndexIDMap *map = NULL;
    *out = NULL;
    if (faiss_IndexFlat_new_with(&flat, dim, metric) != 0)
        return faiss_fail(err, CD_ENOMEM, "faiss flat index");
    if (faiss_IndexIDMap_new(&map, flat) != 0) {
        faiss_Index_free(flat);
        return faiss_fail(err, CD_ENOMEM, "faiss id map");
    }
    faiss_IndexIDMap_set_own_fields(map, 1);
    *out = map;
    return CD_OK;
}

/* True when component [s, s + n) is exactly PQ<M> or PQ<M>x<nbits>. */
static bool plain_pq(const char *s, size_t n)
{
    size_t i = 2;
    if (n < 3 || s[0] != 'P' || s[1] != 'Q')
        return false;
    while (i < n && s[i] >= '0' && s[i] <= '9')
        i++;
    if (i == 2)
        return false;
    if (i < n && s[i] == 'x') {
        size_t j = ++i;
        while (i < n && s[i] >= '0' && s[i] <= '9')
            i++;
        if (i == j)
            return false;
    }
    return i == n;
}

/*
 * Copies spec to buf (size >= 2 * CD_SPEC_MAX) with "np" after every
 * plain PQ component: FAISS's polysemous training only serves
 * Hamming-filtered search (polysemous_ht), which we never turn on, and
 * costs about 2 s per sub-quantizer whatever the data size.  False when
 * nothing was rewritten.
 */
static bool spec_without_polysemous(const char *spec, char *buf, size_t size)
{
    size_t used = 0;
    bool changed = false;
    const char *p = spec;
    for (;;) {
        size_t n = strcspn(p, ",");
        bool pq = plain_pq(p, n);
        if (used + n + 4 > size)
            return false;
        memcpy(buf + used, p, n);
        used += n;
        if (pq) {
            memcpy(buf + used, "np", 2);
            used += 2;
            changed = true;
        }
        if (p[n] == '\0')
            break;
        buf[used++] = ',';
        p += n + 1;
    }
    buf[used] = '\0';
    return changed;
}

/* ---- the spec grammar ------------------------------------------------ */

/*
 * The factory strings compatd accepts, with bounds that keep FAISS away
 * from what it does not survive:
 *   HNSW M in 2..256: M 0 makes faiss::add_link write out of bounds on the
 *     first add, M 1 sets the level multiplier 1/ln(M) to infinity so every
 *     vector gets an enormous level; 256 (512 level-0 links, 2 KiB a
 *     vector) is well past what recall needs.
 *   IVF nlist in 1..65536: FAISS allocates the nlist inverted lists when
 *     the index is made (IVF999999999 grew to 13.7 GB), and training waits
 *     for 39 * nlist vectors (2.5 million at the bound), staged exactly.
 *   PQ m dividing dim, nbits in 1..16: each sub-quantizer is a k-means of
 *     2^nbits centroids trained on 39 * 2^nbits vectors, the same ceiling
 *     of 65536 centroids as IVF; behind IVF, nbits 1..8 (FAISS's IVF-PQ
 *     aborts the process on more: found by fuzz_index_spec).
 *   SQ4, SQ6, SQ8, SQfp16: the scalar quantizers that need no parameter.
 * No pre-transform (PCA, OPQ, ...) and no other type: FAISS judges those
 * only by crashing or allocating.
 */
#define HNSW_M_MIN 2
#define HNSW_M_MAX 256
#define IVF_NLIST_MAX 65536
#define PQ_NBITS_MAX 16
#define IVF_PQ_NBITS_MAX 8    /* IndexIVFPQ asserts nbits_per_idx <= 8 */
#define SPEC_FORMS "Flat, HNSW<M>, HNSW<M>,Flat, IVF<nlist>,Flat, " \
    "IVF<nlist>,PQ<m>[x<nbits 1..8>], IVF<nlist>,SQ<4|6|8|fp16>, " \
    "PQ<m>[x<nbits>], SQ<4|6|8|fp16>"

/*
 * Reads the decimal number at *p and moves *p past it; values above
 * 999999999 read as 1000000000 (out of every bound).  False when *p is
 * not a digit.
 */
static bool read_number(const char **p, long *out)
{
    const char *s = *p;
    long v = 0;
    if (*s < '0' || *s > '9')
        return false;
    for (; *s >= '0' && *s <= '9'; s++)
        v = v < 100000000 ? v * 10 + (*s - '0') : 1000000000;
    *p = s;
    *out = v;
    return true;
}

static cd_err spec_form_fail(cd_error *err)
{
    return cd__fail(err, CD_EINVAL, "not one of the accepted forms: %s",
                    SPEC_FORMS);
}

/* Checks that p is exactly PQ<m>[x<nbits>] for dim, nbits at most
 * max_nbits. */
static cd_err check_pq(const char *p, int dim, long max_nbits, cd_error *err)
{
    long m, nbits = 8;
    p += 2;
    if (!read_number(&p, &m))
        return spec_form_fail(err);
    if (*p == 'x') {
        p++;
        if (!read_number(&p, &nbits))
            return spec_form_fail(err);
    }
    if (*p != '\0')
        return spec_form_fail(err);
    if (m < 1 || m > dim || dim % m != 0)
        return cd__fail(err, CD_EINVAL, "PQ m is %ld, must divide the "
                        "dimension %d", m, dim);
    if (nbits < 1 || nbits > max_nbits)
        return cd__fail(err, CD_EINVAL, "PQ nbits is %ld, must be 1..%ld "
                        "(2^nbits centroids per sub-quantizer%s)", nbits,
                        max_nbits, max_nbits == IVF_PQ_NBITS_MAX
                        ? "; FAISS's IVF-PQ codes hold at most 8 bits" : "");
    return CD_OK;
}

/* Checks that p is exactly SQ4, SQ6, SQ8 or SQfp16. */
static cd_err check_sq(const char *p, cd_error *err)
{
    static const char *const ok[] = {"SQ4", "SQ6", "SQ8", "SQfp16"};
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++)
        if (strcmp(p, ok[i]) == 0)
            return CD_OK;
    return spec_form_fail(err);
}

cd_err cd_index_spec_check(const char *spec, int dim, cd_error *err)
{
    const char *p = spec;
    long v;
    if (!spec || spec[0] == '\0')
        return cd__fail(err, CD_EINVAL, "index spec is empty");
    if (strnlen(spec, CD_SPEC_MAX + 1) > CD_SPEC_MAX)
        return cd__fail(err, CD_EINVAL, "index spec is longer than %d bytes",
                        CD_SPEC_MAX);
    if (dim <= 0 || dim > CD_DIM_MAX)
        return cd__fail(err, CD_EINVAL, "dimension %d is not in 1..%d", dim,
                        CD_DIM_MAX);
    if (strcmp(p, "Flat") == 0)
        return CD_OK;
    if (strncmp(p, "HNSW", 4) == 0) {
        p += 4;
        if (!read_number(&p, &v) || (*p != '\0' && strcmp(p, ",Flat") != 0))
            return spec_form_fail(err);
        if (v < HNSW_M_MIN || v > HNSW_M_MAX)
            return cd__fail(err, CD_EINVAL, "HNSW M is %ld, must be %d..%d",
                            v, HNSW_M_MIN, HNSW_M_MAX);
        return CD_OK;
    }
    if (strncmp(p, "IVF", 3) == 0) {
        p += 3;
        if (!read_number(&p, &v) || *p != ',')
            return spec_form_fail(err);
        p++;
        if (v < 1 || v > IVF_NLIST_MAX)
            return cd__fail(err, CD_EINVAL, "IVF nlist is %ld, must be 1..%d "
                            "(training waits for 39 vectors per list)", v,
                            IVF_NLIST_MAX);
        if (strcmp(p, "Flat") == 0)
            return CD_OK;
        if (strncmp(p, "PQ", 2) == 0)
            return check_pq(p, dim, IVF_PQ_NBITS_MAX, err);
    }
    if (strncmp(p, "PQ", 2) == 0)
        return check_pq(p, dim, PQ_NBITS_MAX, err);
    if (strncmp(p, "SQ", 2) == 0)
        return check_sq(p, err);
    return spec_form_fail(err);
}

cd_err cd_index_params_check(const char *spec, const cd_index_params *p,
                             cd_error *err)
{
    long nlist = 0;
    const char *s = spec;
    bool hnsw = strncmp(spec, "HNSW", 4) == 0;
    if (strncmp(s, "IVF", 3) == 0) {
        s += 3;
        if (!read_number(&s, &nlist))
            nlist = 0;
    }
    if (p->ef_search != 0 && !hnsw)
        return cd__fail(err, CD_EINVAL, "params.ef_search applies to HNSW indexes; "
                        "this gallery's index is %s", spec);
    if (p->ef_search != 0 && (p->ef_search < 1 || p->ef_search > CD_EF_SEARCH_MAX))
        return cd__fail(err, CD_EINVAL, "params.ef_search is %d, must be 1..%d",
                        p->ef_search, CD_EF_SEARCH_MAX);
    if (p->nprobe != 0 && nlist == 0)
        return cd__fail(err, CD_EINVAL, "params.nprobe applies to IVF indexes; "
                        "this gallery's index is %s", spec);
    if (p->nprobe != 0 && (p->nprobe < 1 || p->nprobe > nlist))
        return cd__fail(err, CD_EINVAL, "params.nprobe is %d, must be 1..%ld "
                        "(the index's nlist)", p->nprobe, nlist);
    return CD_OK;
}

/*
 * Builds an empty main index for spec: factory, metric check, id map when
 * the type cannot take ids, search tuning.  *nlist_out gets its IVF list
 * count (0: not IVF).
 */
static cd_err new_main(const char *spec, int dim, FaissMetricType metric,
                       FaissIndex **out, size_t *nlist_out, cd_error *err)
{
    FaissIndex *ix = NULL;
    FaissIndexIVF *ivf = NULL;
    size_t nlist = 0;
    char np_spec[2 * CD_SPEC_MAX + 8];
    cd_err rc = CD_OK;
    *out = NULL;
    /* Without polysemous training where FAISS takes the suffix there. */
    if (!spec_without_polysemous(spec, np_spec, sizeof np_spec) ||
        faiss_index_factory(&ix, dim, np_spec, metric) != 0) {
        ix = NULL;
        if (faiss_index_factory(&ix, dim, spec, metric) != 0)
            return faiss_fail(err, CD_EINVAL, "index spec rejected");
    }
    if (faiss_Index_metric_type(ix) != metric) {
        rc = cd__fail(err, CD_EINVAL,
                      "index spec \"%s\" does not support the %s metric",
                      spec, metric == METRIC_L2 ? "l2" : "inner product");
        goto fail;
    }
    if (!takes_ids(ix)) {
        FaissIndexIDMap *map = NULL;
        if (faiss_IndexIDMap_new(&map, ix) != 0) {
            rc = faiss_fail(err, CD_ENOMEM, "faiss id map");
            goto fail;
        }
        faiss_IndexIDMap_set_own_fields(map, 1);
        ix = map;
    }
    ivf = find_ivf(ix);
    nlist = ivf ? faiss_IndexIVF_nlist(ivf) : 0;
    rc = tune(ix, nlist, err);
    if (rc != CD_OK)
        goto fail;
    *out = ix;
    *nlist_out = nlist;
    return CD_OK;
fail:
    faiss_Index_free(ix);
    return rc;
}

/* Asks ix to remove ids; *removed gets the count.  Non-zero from FAISS
 * is reported as-is so the caller can tell "cannot remove" apart. */
static int remove_ids(FaissIndex *ix, const int64_t *ids, size_t n,
                      size_t *removed)
{
    FaissIDSelectorBatch *sel = NULL;
    *removed = 0;
    int frc = faiss_IDSelectorBatch_new(&sel, n, ids);
    if (frc != 0)
        return frc;
    frc = faiss_Index_remove_ids(ix, (const FaissIDSelector *)sel, removed);
    faiss_IDSelector_free((FaissIDSelector *)sel);
    return frc;
}

static FaissMetricType faiss_metric(cd_metric m)
{
    return m == CD_METRIC_L2 ? METRIC_L2 : METRIC_INNER_PRODUCT;
}

/* The index searches and adds go to. */
static FaissIndex *active(const cd_index *ix)
{
    return ix->staging ? ix->staging : ix->main;
}

/*
 * Training vectors the spec's PQ needs: 39 per centroid of a sub-quantizer,
 * 256 centroids unless a plain PQ<M>x<nbits> says otherwise; 0 without PQ.
 */
static int64_t pq_train_min(const char *spec)
{
    int64_t need = strstr(spec, "PQ") ? TRAIN_PQ_MIN : 0;
    for (const char *p = spec;; p++) {
        size_t n = strcspn(p, ",");
        const char *x = memchr(p, 'x', n);
        if (plain_pq(p, n) && x) {
            long nbits = strtol(x + 1, NULL, 10);
            if (nbits > 0 && nbits <= 16 &&
                ((int64_t)TRAIN_POINTS_PER_LIST << nbits) > need)
                need = (int64_t)TRAIN_POINTS_PER_LIST << nbits;
        }
        p += n;
        if (*p == '\0')
            break;
    }
    return need;
}

/* ---- create / destroy ----------------------------------------------- */

cd_err cd_index_create(const char *spec, int dim, cd_metric metric,
                       cd_index **out, cd_error *err)
{
    cd_index *ix = NULL;
    int64_t probe = -1;
    size_t removed = 0;
    cd_err rc = CD_OK;
    *out = NULL;
    rc = cd_index_spec_check(spec, dim, err);
    if (rc != CD_OK)
        return rc;
    if (metric != CD_METRIC_COSINE && metric != CD_METRIC_IP &&
        metric != CD_METRIC_L2)
        return cd__fail(err, CD_EINVAL, "unknown metric %d", (int)metric);

    ix = calloc(1, sizeof *ix);
    if (!ix)
        return cd__fail(err, CD_ENOMEM, "out of memory");
    pthread_rwlock_init(&ix->params_lock, NULL);
    snprintf(ix->spec, sizeof ix->spec, "%s", spec);
    ix->dim = dim;
    ix->metric = faiss_metric(metric);

    rc = new_main(spec, dim, ix->metric, &ix->main, &ix->nlist, err);
    if (rc != CD_OK)
        goto fail;

    /* An empty probe: only the type decides whether remove_ids throws. */
    ix->can_remove = remove_ids(ix->main, &probe, 1, &removed) == 0;
    ix->hnsw = strncmp(spec, "HNSW", 4) == 0;

    if (!faiss_Index_is_trained(ix->main)) {
        rc = new_staging(dim, ix->metric, &ix->staging, err);
        if (rc != CD_OK)
            goto fail;
        if (ix->nlist > 0)
            ix->threshold = (int64_t)ix->nlist * TRAIN_POINTS_PER_LIST;
        else
            ix->threshold = TRAIN_OTHER;
        int64_t pq = pq_train_min(spec);
        if (ix->threshold < pq)
            ix->threshold = pq;
    }
    *out = ix;
    return CD_OK;
fail:
    cd_index_destroy(ix);
    return rc;
}

void cd_index_destroy(cd_index *ix)
{
    if (!ix)
        return;
    if (ix->staging)
        faiss_Index_free(ix->staging);
    if (ix->main)
        faiss_Index_free(ix->main);
    cd__idset_finish(&ix->hidden);
    pthread_rwlock_destroy(&ix->params_lock);
    free(ix->x16);
    free(ix);
}

/* ---- add / remove --------------------------------------------------- */

static bool flat_rows(const FaissIndex *fx, cd_scan *s);

/*
 * Brings ix->x16 up to main's rows: the rows past x16_rows when main only
 * grew (appended), else all of them (a remove moves rows).  Gives the
 * half rows up for good when a value does not fit in a half (the scan
 * then reads main's floats, as without them).
 */
static void half_sync(cd_index *ix, bool appended)
{
    cd_scan s;
    if (ix->x16_off || ix->staging || !flat_rows(ix->main, &s) || s.l2 ||
        !cd_scan_has_half()) {
        free(ix->x16);
        ix->x16 = NULL;
        ix->x16_rows = ix->x16_cap = 0;
        return;
    }
    size_t from = appended && ix->x16_rows <= s.n ? ix->x16_rows : 0;
    if (from == 0)
        ix->x16_norm = 0;
    ix->x16_rows = 0;   /* not usable until complete */
    if (s.n > ix->x16_cap) {
        size_t cap = ix->x16_cap + ix->x16_cap / 2;
        if (cap < s.n)
            cap = s.n;
        uint16_t *grown = cap <= SIZE_MAX / s.dim / sizeof *grown
                              ? realloc(ix->x16, cap * s.dim * sizeof *grown) : NULL;
        if (!grown) {
            ix->x16_off = true;
            half_sync(ix, false);
            return;
        }
        ix->x16 = grown;
        ix->x16_cap = cap;
    }
    if (!cd_scan_to_half(s.x + from * s.dim, s.n - from, s.dim, ix->x16 + from * s.dim,
                         &ix->x16_norm)) {
        ix->x16_off = true;
        half_sync(ix, false);
        return;
    }
    ix->x16_rows = s.n;
}

/*
 * Trains a fresh main index on everything staged plus the n new vectors,
 * adds them all under their ids, and replaces main and staging with it.
 */
static cd_err train_and_swap(cd_index *ix, const int64_t *ids,
                             const float *vectors, size_t n, cd_error *err)
{
    FaissIndexIDMap *map = faiss_IndexIDMap_cast(ix->staging);
    FaissIndexFlat *flat = faiss_IndexFlat_cast(faiss_IndexIDMap_sub_index(map));
    float *xb = NULL;
    int64_t *id_map = NULL;
    size_t n_floats = 0, staged = 0;
    faiss_IndexFlat_xb(flat, &xb, &n_floats);
    faiss_IndexIDMap_id_map(map, &id_map, &staged);
    if (n_floats != staged * (size_t)ix->dim)
        return cd__fail(err, CD_EINTERNAL, "staging index holds %zu floats "
                        "for %zu ids", n_floats, staged);

    size_t total = staged + n;
    size_t dim = (size_t)ix->dim;
    float *x = NULL;
    int64_t *xids = NULL;
    FaissIndex *fresh = NULL;
    size_t nlist = 0;
    cd_err rc = CD_OK;

    if (total > SIZE_MAX / sizeof(float) / dim) {
        rc = cd__fail(err, CD_ENOMEM, "too many vectors to train on");
        goto out;
    }
    x = malloc(total * dim * sizeof *x);
    xids = malloc(total * sizeof *xids);
    if (!x || !xids) {
        rc = cd__fail(err, CD_ENOMEM, "out of memory");
        goto out;
    }
    if (staged) {
        memcpy(x, xb, staged * dim * sizeof *x);
        memcpy(xids, id_map, staged * sizeof *xids);
    }
    memcpy(x + staged * dim, vectors, n * dim * sizeof *x);
    memcpy(xids + staged, ids, n * sizeof *xids);

    rc = new_main(ix->spec, ix->dim, ix->metric, &fresh, &nlist, err);
    if (rc != CD_OK)
        goto out;
    if (faiss_Index_train(fresh, (idx_t)total, x) != 0) {
        rc = faiss_fail(err, CD_EINTERNAL, "faiss train");
        goto out;
    }
    if (faiss_Index_add_with_ids(fresh, (idx_t)total, x, xids) != 0) {
        rc = faiss_fail(err, CD_ENOMEM, "faiss add");
        goto out;
    }
    faiss_Index_free(ix->main);
    faiss_Index_free(ix->staging);
    ix->main = fresh;
    half_sync(ix, false);
    ix->staging = NULL;
    ix->nlist = nlist;
    fresh = NULL;
out:
    if (fresh)
        faiss_Index_free(fresh);
    free(xids);
    free(x);
    return rc;
}

cd_err cd_index_add(cd_index *ix, const int64_t *ids, const float *vectors,
                    size_t n, cd_error *err)
{
    if (n == 0)
        return CD_OK;
    if (n > (size_t)INT64_MAX / (size_t)ix->dim)
        return cd__fail(err, CD_EINVAL, "too many vectors");
    for (size_t i = 0; i < n; i++)
        if (ids[i] < 0)
            return cd__fail(err, CD_EINVAL, "vector %zu: negative id %lld",
                            i, (long long)ids[i]);

    if (ix->staging) {
        if (faiss_Index_ntotal(ix->staging) + (int64_t)n >= ix->threshold)
            return train_and_swap(ix, ids, vectors, n, err);
        if (faiss_Index_add_with_ids(ix->staging, (idx_t)n, vectors, ids) != 0)
            return faiss_fail(err, CD_ENOMEM, "faiss add");
        return CD_OK;
    }

    int64_t again = 0;
    for (size_t i = 0; ix->hidden.len && i < n; i++)
        if (cd__idset_contains(&ix->hidden, ids[i]))
            again++;
    if (faiss_Index_add_with_ids(ix->main, (idx_t)n, vectors, ids) != 0)
        return faiss_fail(err, CD_ENOMEM, "faiss add");
    half_sync(ix, true);
    if (again) {
        /* The id stays hidden until the engine rebuilds: its old vector
         * must never come back and the new one cannot be told apart. */
        ix->hidden_vectors += again;
        ix->readded = true;
    }
    return CD_OK;
}

/* Hides the present, not yet hidden ids among ids[0..n). */
static cd_err hide_ids(cd_index *ix, const int64_t *ids, size_t n,
                       cd_error *err)
{
    cd__idset want = CD__IDSET_INIT, found = CD__IDSET_INIT;
    FaissIndexIDMap *map = faiss_IndexIDMap_cast(ix->main);
    int64_t *stored = NULL;
    size_t n_stored = 0;
    int64_t vectors = 0;
    cd_err rc = CD_OK;
    if (!cd__idset_reserve(&want, n)) {
        rc = cd__fail(err, CD_ENOMEM, "out of memory");
        goto out;
    }
    for (size_t i = 0; i < n; i++)
        if (ids[i] >= 0 && !cd__idset_contains(&ix->hidden, ids[i]))
            cd__idset_put(&want, ids[i]);
    if (want.len == 0)
        goto out;

    /* Which of them are stored, and how many vectors each carries. */
    if (map)
        faiss_IndexIDMap_id_map(map, &stored, &n_stored);
    if (!cd__idset_reserve(&found, want.len) ||
        !cd__idset_reserve(&ix->hidden, want.len)) {
        rc = cd__fail(err, CD_ENOMEM, "out of memory");
        goto out;
    }
    if (map) {
        for (size_t i = 0; i < n_stored; i++) {
            if (cd__idset_contains(&want, stored[i])) {
                cd__idset_put(&found, stored[i]);
                vectors++;
            }
        }
    } else {
        /* No id map to look in (never seen in practice: every type that
         * cannot remove gets one); trust that each id is stored once. */
        for (size_t i = 0; i < want.cap; i++)
            if (want.slots[i] >= 0)
                cd__idset_put(&found, want.slots[i]);
        vectors = (int64_t)found.len;
    }
    for (size_t i = 0; i < found.cap; i++)
        if (found.slots[i] >= 0)
            cd__idset_put(&ix->hidden, found.slots[i]);
    ix->hidden_vectors += vectors;
out:
    cd__idset_finish(&found);
    cd__idset_finish(&want);
    return rc;
}

cd_err cd_index_remove(cd_index *ix, const int64_t *ids, size_t n,
                       cd_error *err)
{
    if (n == 0)
        return CD_OK;
    if (!ix->staging && !ix->can_remove)
        return hide_ids(ix, ids, n, err);
    size_t removed;
    if (remove_ids(active(ix), ids, n, &removed) != 0)
        return faiss_fail(err, CD_ENOMEM, "faiss remove");
    if (removed > 0 && !ix->staging)
        half_sync(ix, false);
    return CD_OK;
}

/* ---- search --------------------------------------------------------- */

/*
 * Copies row (fetched entries) to (ids_out, scores_out) (k entries),
 * skipping -1 and hidden ids, padding with id -1 and score 0.  Works in
 * place when the row is the output and fetched == k.
 */
static void compact_row(const cd_index *ix, const int64_t *ids,
                        const float *scores, size_t fetched,
                        int64_t *ids_out, float *scores_out, size_t k)
{
    size_t c = 0;
    for (size_t j = 0; j < fetched && c < k; j++) {
        if (ids[j] < 0 || cd__idset_contains(&ix->hidden, ids[j]))
            continue;
        ids_out[c] = ids[j];
        scores_out[c] = scores[j];
        c++;
    }
    for (; c < k; c++) {
        ids_out[c] = -1;
        scores_out[c] = 0.0f;
    }
}

/*
 * Points s at the flat codes and ids of fx when fx is an IndexIDMap over
 * an IndexFlat of inner product or L2 (every Flat index and every staging
 * index is); false for any other shape.
 */
static bool flat_rows(const FaissIndex *fx, cd_scan *s)
{
    FaissIndexIDMap *map = faiss_IndexIDMap_cast((FaissIndex *)fx);
    if (!map)
        return false;
    FaissIndex *sub = faiss_IndexIDMap_sub_index(map);
    FaissIndexFlat *flat = faiss_IndexFlat_cast(sub);
    if (!flat)
        return false;
    FaissMetricType mt = faiss_Index_metric_type(sub);
    if (mt != METRIC_INNER_PRODUCT && mt != METRIC_L2)
        return false;
    float *xb = NULL;
    idx_t *ids = NULL;
    size_t nx = 0, nids = 0;
    faiss_IndexFlat_xb(flat, &xb, &nx);
    faiss_IndexIDMap_id_map(map, &ids, &nids);
    size_t dim = (size_t)faiss_Index_d(sub);
    if (dim == 0 || nids != (size_t)faiss_Index_ntotal(sub) || nx != nids * dim)
        return false;
    memset(s, 0, sizeof *s);
    s->x = xb;
    s->ids = ids;
    s->n = nids;
    s->dim = dim;
    s->l2 = mt == METRIC_L2;
    return true;
}

bool cd_index_scans(const cd_index *ix, size_t nq)
{
    cd_scan s;
    return nq <= CD_SCAN_NQ_MAX && flat_rows(active(ix), &s);
}

/* The skip test of a scan: hidden ids, then the caller's. */
typedef struct skip_sets {
    const cd__idset *hidden;
    bool (*skip)(const void *ctx, int64_t id);
    const void *ctx;
} skip_sets;

static bool skip_either(const void *ctx, int64_t id)
{
    const skip_sets *ss = ctx;
    return (ss->hidden && cd__idset_contains(ss->hidden, id)) ||
           (ss->skip && ss->skip(ss->ctx, id));
}

cd_err cd_index_search_skipping(const cd_index *ix, const float *queries,
                                size_t nq, size_t k,
                                bool (*skip)(const void *ctx, int64_t id),
                                const void *skip_ctx, int64_t *ids_out,
                                float *scores_out, cd_error *err)
{
    cd_scan s;
    if (nq > CD_SCAN_NQ_MAX || !flat_rows(active(ix), &s))
        return cd__fail(err, CD_EINVAL, "this index is not scanned");
    if (!ix->staging && ix->x16_rows == s.n && s.n > 0) {
        s.x16 = ix->x16;
        s.x16_norm = ix->x16_norm;
    }
    skip_sets ss = {ix->hidden.len > 0 ? &ix->hidden : NULL, skip, skip_ctx};
    if (ss.hidden || ss.skip) {
        s.skip = skip_either;
        s.skip_ctx = &ss;
    }
    return cd_scan_search(&s, queries, nq, k, ids_out, scores_out, err);
}

/*
 * faiss_Index_search on fx, with p's parameter when one is set and fx is
 * the trained main index (staging is exact: nothing to tune), under the
 * index's params_lock (see the file comment).
 */
static cd_err faiss_search(const cd_index *ix, const FaissIndex *fx,
                           const cd_index_params *p, size_t nq,
                           const float *queries, size_t k, float *scores,
                           int64_t *ids, cd_error *err)
{
    const char *name = NULL;
    double value = 0, back = 0;
    if (fx == ix->main && ix->hnsw && p && p->ef_search > 0) {
        name = "efSearch";
        value = p->ef_search;
        back = HNSW_EF_SEARCH;
    } else if (fx == ix->main && p && p->nprobe > 0) {
        name = "nprobe";
        value = p->nprobe;
        back = (double)default_nprobe(ix->nlist);
    }
    /* The lock guards the index's parameters, not its contents: taking it
     * changes nothing a const caller can see. */
    pthread_rwlock_t *lock = (pthread_rwlock_t *)&ix->params_lock;
    if (!name) {
        pthread_rwlock_rdlock(lock);
        int frc = faiss_Index_search(fx, (idx_t)nq, queries, (idx_t)k, scores, ids);
        pthread_rwlock_unlock(lock);
        return frc != 0 ? faiss_fail(err, CD_EINTERNAL, "faiss search") : CD_OK;
    }
    FaissParameterSpace *ps = NULL;
    if (faiss_ParameterSpace_new(&ps) != 0)
        return faiss_fail(err, CD_ENOMEM, "faiss parameter space");
    cd_err rc = CD_OK;
    pthread_rwlock_wrlock(lock);
    if (faiss_ParameterSpace_set_index_parameter(ps, (FaissIndex *)fx, name, value) != 0)
        rc = faiss_fail(err, CD_EINTERNAL, "faiss set search parameter");
    else if (faiss_Index_search(fx, (idx_t)nq, queries, (idx_t)k, scores, ids) != 0)
        rc = faiss_fail(err, CD_EINTERNAL, "faiss search");
    /* Setting the default back cannot fail where setting it worked. */
    (void)faiss_ParameterSpace_set_index_parameter(ps, (FaissIndex *)fx, name, back);
    pthread_rwlock_unlock(lock);
    faiss_ParameterSpace_free(ps);
    return rc;
}

cd_err cd_index_search(const cd_index *ix, const float *queries, size_t nq,
                       size_t k, int64_t *ids_out, float *scores_out,
                       cd_error *err)
{
    return cd_index_search_params(ix, queries, nq, k, NULL, ids_out,
                                  scores_out, err);
}

bool cd_index_is_exact(const cd_index *ix)
{
    cd_scan s;
    return flat_rows(active(ix), &s);
}

cd_err cd_index_search_params(const cd_index *ix, const float *queries,
                              size_t nq, size_t k, const cd_index_params *p,
                              int64_t *ids_out, float *scores_out,
                              cd_error *err)
{
    if (nq == 0 || k == 0)
        return CD_OK;
    if (k > (size_t)INT64_MAX || nq > SIZE_MAX / sizeof(int64_t) / k)
        return cd__fail(err, CD_EINVAL, "too many results asked for");
    if (cd_index_scans(ix, nq))
        return cd_index_search_skipping(ix, queries, nq, k, NULL, NULL,
                                        ids_out, scores_out, err);

    const FaissIndex *fx = active(ix);
    int64_t ntotal = faiss_Index_ntotal(fx);
    if (ntotal == 0) {
        for (size_t i = 0; i < nq * k; i++) {
            ids_out[i] = -1;
            scores_out[i] = 0.0f;
        }
        return CD_OK;
    }

    /* Over-fetch so that k live hits remain after dropping hidden ones. */
    size_t fetch = k;
    if (ix->hidden_vectors > 0) {
        fetch = k + (size_t)ix->hidden_vectors;
        if (fetch > (size_t)ntotal)
            fetch = (size_t)ntotal;
    }
    int64_t *ids = ids_out;
    float *scores = scores_out;
    cd_err rc = CD_OK;
    if (fetch != k) {
        if (nq > SIZE_MAX / sizeof(int64_t) / fetch)
            return cd__fail(err, CD_EINVAL, "too many results asked for");
        ids = malloc(nq * fetch * sizeof *ids);
        scores = malloc(nq * fetch * sizeof *scores);
        if (!ids || !scores) {
            rc = cd__fail(err, CD_ENOMEM, "out of memory");
            goto out;
        }
    }
    rc = faiss_search(ix, fx, p, nq, queries, fetch, scores, ids, err);
    if (rc != CD_OK)
        goto out;
    for (size_t i = 0; i < nq; i++)
        compact_row(ix, ids + i * fetch, scores + i * fetch, fetch,
                    ids_out + i * k, scores_out + i * k, k);
out:
    if (ids != ids_out) {
        free(ids);
        free(scores);
    }
    return rc;
}

/* ---- facts ------------------------------------------------------------ */

int64_t cd_index_count(const cd_index *ix)
{
    return faiss_Index_ntotal(active(ix)) - ix->hidden_vectors;
}

bool cd_index_is_trained(const cd_index *ix)
{
    return ix->staging == NULL;
}

int64_t cd_index_train_threshold(const cd_index *ix)
{
    return ix->threshold;
}

bool cd_index_needs_rebuild(const cd_index *ix)
{
    if (ix->readded)
        return true;
    int64_t stored = faiss_Index_ntotal(active(ix));
    return ix->hidden_vectors > 0 && ix->hidden_vectors * 10 > stored;
}

bool cd_index_can_remove(const cd_index *ix)
{
    return ix->can_remove;
}

bool cd_index_is_flat(const cd_index *ix)
{
    cd_scan s;
    return !ix->staging && flat_rows(ix->main, &s);
}

/* ---- save / load -------------------------------------------------------- */

/*
 * A saved file is FAISS's own serialisation, the caller's meta bytes, and
 * a trailer: TRAILER_MAGIC, the FAISS byte count, the meta byte count and
 * a 64-bit hash of both parts, little-endian.  FAISS ignores what follows
 * its data, so the file still opens with faiss_read_index_fname; the
 * trailer lets load reject a truncated, garbage or bit-flipped file before
 * FAISS parses it (FAISS 1.7.3 leaks on a failed read, and trusts offsets
 * inside HNSW graphs).  Files of the first format ("cdindex1", no meta)
 * read as not ours, so they are rebuilt once.
 */
#define TRAILER_MAGIC "cdindex2"
#define TRAILER_SIZE 32
#define HASH_CHUNK 65536

/* 64-bit hash of a byte stream, fed in pieces. */
typedef struct stream_hash {
    uint64_t h;
    uint64_t len;
    unsigned char tail[8];  /* bytes not yet making a full word */
    size_t n_tail;
} stream_hash;

static uint64_t rotl64(uint64_t x, int r)
{
    return (x << r) | (x >> (64 - r));
}

static uint64_t load_le64(const unsigned char *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}

static void store_le64(unsigned char *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}

static void hash_word(stream_hash *sh, uint64_t w)
{
    sh->h = rotl64(sh->h ^ (w * 0x87c37b91114253d5ULL), 31) *
            0x4cf5ad432745937fULL;
}

static void hash_update(stream_hash *sh, const unsigned char *p, size_t n)
{
    sh->len += n;
    while (n > 0 && sh->n_tail > 0 && sh->n_tail < 8) {
        sh->tail[sh->n_tail++] = *p++;
        n--;
        if (sh->n_tail == 8) {
            hash_word(sh, load_le64(sh->tail));
            sh->n_tail = 0;
        }
    }
    for (; n >= 8; p += 8, n -= 8)
        hash_word(sh, load_le64(p));
    memcpy(sh->tail + sh->n_tail, p, n);
    sh->n_tail += n;
}

static uint64_t hash_final(stream_hash *sh)
{
    unsigned char last[8] = {0};
    memcpy(last, sh->tail, sh->n_tail);
    hash_word(sh, load_le64(last));
    uint64_t h = sh->h ^ sh->len;
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdULL;
    h ^= h >> 33;
    return h;
}

uint64_t cd_index_row_hash(int64_t id, const float *v, int dim)
{
    stream_hash sh = {0x9e3779b97f4a7c15ULL, 0, {0}, 0};
    unsigned char idb[8];
    store_le64(idb, (uint64_t)id);
    hash_update(&sh, idb, sizeof idb);
    hash_update(&sh, (const unsigned char *)v, (size_t)dim * sizeof *v);
    return hash_final(&sh);
}

/* Hashes the first n bytes of f from its start; false on a short read. */
static bool hash_file(FILE *f, uint64_t n, uint64_t *out)
{
    stream_hash sh = {0x9e3779b97f4a7c15ULL, 0, {0}, 0};
    unsigned char *buf = malloc(HASH_CHUNK);
    bool ok = buf && fseeko(f, 0, SEEK_SET) == 0;
    while (ok && n > 0) {
        size_t want = n < HASH_CHUNK ? (size_t)n : HASH_CHUNK;
        ok = fread(buf, 1, want, f) == want;
        if (ok)
            hash_update(&sh, buf, want);
        n -= want;
    }
    free(buf);
    *out = hash_final(&sh);
    return ok;
}

/* fsyncs the directory holding path, so a rename in it is durable. */
static cd_err sync_dir(const char *path, cd_error *err)
{
    const char *slash = strrchr(path, '/');
    char *dir = NULL;
    if (!slash)
        dir = strdup(".");
    else if (slash == path)
        dir = strdup("/");
    else
        dir = strndup(path, (size_t)(slash - path));
    if (!dir)
        return cd__fail(err, CD_ENOMEM, "out of memory");
    cd_err rc = CD_OK;
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) {
        rc = cd__fail(err, CD_EIO, "%s: %s", dir, strerror(errno));
        goto out;
    }
    if (fsync(fd) != 0)
        rc = cd__fail(err, CD_EIO, "fsync %s: %s", dir, strerror(errno));
    close(fd);
out:
    free(dir);
    return rc;
}

/* Writes FAISS's data, meta and the trailer to f, open for update and
 * empty. */
static cd_err write_contents(const cd_index *ix, FILE *f, const char *name,
                             const void *meta, size_t meta_len,
                             cd_error *err)
{
    unsigned char trailer[TRAILER_SIZE];
    uint64_t hash;
    off_t len;
    if (faiss_write_index(active(ix), f) != 0)
        return faiss_fail(err, CD_EIO, name);
    if (fflush(f) != 0 || (len = ftello(f)) < 0 ||
        (meta_len && fwrite(meta, 1, meta_len, f) != meta_len) ||
        fflush(f) != 0)
        return cd__fail(err, CD_EIO, "%s: %s", name, strerror(errno));
    if (!hash_file(f, (uint64_t)len + meta_len, &hash))
        return cd__fail(err, CD_EIO, "%s: cannot read back what was written",
                        name);
    memcpy(trailer, TRAILER_MAGIC, 8);
    store_le64(trailer + 8, (uint64_t)len);
    store_le64(trailer + 16, meta_len);
    store_le64(trailer + 24, hash);
    if (fseeko(f, len + (off_t)meta_len, SEEK_SET) != 0 ||
        fwrite(trailer, 1, sizeof trailer, f) != sizeof trailer ||
        fflush(f) != 0 || fsync(fileno(f)) != 0)
        return cd__fail(err, CD_EIO, "%s: %s", name, strerror(errno));
    return CD_OK;
}

cd_err cd_index_save(const cd_index *ix, const char *path, const void *meta,
                     size_t meta_len, cd_error *err)
{
    if (ix->hidden.len > 0)
        return cd__fail(err, CD_ECONFLICT, "index has %zu hidden ids; "
                        "rebuild it before saving", ix->hidden.len);

    size_t len = strlen(path) + 32;
    char *tmp = malloc(len);
    if (!tmp)
        return cd__fail(err, CD_ENOMEM, "out of memory");
    snprintf(tmp, len, "%s.tmp.%ld", path, (long)getpid());

    cd_err rc = CD_OK;
    FILE *f = NULL;
    int crc;
    int fd = open(tmp, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        rc = cd__fail(err, CD_EIO, "%s: %s", tmp, strerror(errno));
        goto out;
    }
    f = fdopen(fd, "w+b");
    if (!f) {
        rc = cd__fail(err, CD_EIO, "%s: %s", tmp, strerror(errno));
        close(fd);
        goto fail;
    }
    rc = write_contents(ix, f, tmp, meta, meta_len, err);
    if (rc != CD_OK)
        goto fail;
    crc = fclose(f);
    f = NULL;
    if (crc != 0) {
        rc = cd__fail(err, CD_EIO, "%s: %s", tmp, strerror(errno));
        goto fail;
    }
    if (rename(tmp, path) != 0) {
        rc = cd__fail(err, CD_EIO, "rename to %s: %s", path, strerror(errno));
        goto fail;
    }
    rc = sync_dir(path, err);
    goto out;
fail:
    if (f)
        fclose(f);
    unlink(tmp);
out:
    free(tmp);
    return rc;
}

/*
 * Checks f's trailer and hash, reads the meta bytes into *meta (malloc'd,
 * NULL when there are none) and the FAISS index before them into *out.
 * Every failure is CD_ECORRUPT except a failing read (CD_EIO) or
 * allocation (CD_ENOMEM); *out and *meta are NULL then.
 */
static cd_err read_contents(FILE *f, const char *path, FaissIndex **out,
                            void **meta, size_t *meta_len, cd_error *err)
{
    struct stat st;
    unsigned char trailer[TRAILER_SIZE];
    uint64_t len, mlen, hash;
    *out = NULL;
    *meta = NULL;
    *meta_len = 0;
    if (fstat(fileno(f), &st) != 0)
        return cd__fail(err, CD_EIO, "%s: %s", path, strerror(errno));
    if (st.st_size < TRAILER_SIZE)
        return cd__fail(err, CD_ECORRUPT, "%s: %lld bytes is too short for "
                        "an index", path, (long long)st.st_size);
    if (fseeko(f, st.st_size - TRAILER_SIZE, SEEK_SET) != 0 ||
        fread(trailer, 1, sizeof trailer, f) != sizeof trailer)
        return cd__fail(err, CD_EIO, "%s: cannot read", path);
    len = load_le64(trailer + 8);
    mlen = load_le64(trailer + 16);
    if (memcmp(trailer, TRAILER_MAGIC, 8) != 0 ||
        len > (uint64_t)st.st_size - TRAILER_SIZE ||
        mlen != (uint64_t)st.st_size - TRAILER_SIZE - len)
        return cd__fail(err, CD_ECORRUPT, "%s: no index trailer (truncated "
                        "or not written by this compatd)", path);
    if (!hash_file(f, len + mlen, &hash))
        return cd__fail(err, CD_EIO, "%s: cannot read", path);
    if (hash != load_le64(trailer + 24))
        return cd__fail(err, CD_ECORRUPT, "%s: checksum mismatch", path);
    if (mlen > 0) {
        *meta = malloc((size_t)mlen);
        if (!*meta)
            return cd__fail(err, CD_ENOMEM, "%s: out of memory", path);
        if (fseeko(f, (off_t)len, SEEK_SET) != 0 ||
            fread(*meta, 1, (size_t)mlen, f) != (size_t)mlen) {
            free(*meta);
            *meta = NULL;
            return cd__fail(err, CD_EIO, "%s: cannot read", path);
        }
        *meta_len = (size_t)mlen;
    }
    if (fseeko(f, 0, SEEK_SET) != 0 || faiss_read_index(f, 0, out) != 0) {
        *out = NULL;
        free(*meta);
        *meta = NULL;
        *meta_len = 0;
        return faiss_fail(err, CD_ECORRUPT, path);
    }
    return CD_OK;
}

/*
 * Missing file: CD_ENOTFOUND.  File that cannot be opened or read:
 * CD_EIO.  Truncated, damaged, not ours, or an index of another
 * dimension, metric or type than spec makes: CD_ECORRUPT.
 */
cd_err cd_index_load(const char *path, const char *spec, int dim,
                     cd_metric metric, cd_index **out, void **meta,
                     size_t *meta_len, cd_error *err)
{
    cd_index *ix = NULL;
    FaissIndex *loaded = NULL;
    FILE *f = NULL;
    void *m = NULL;
    size_t m_len = 0;
    char want[128], got[128];
    *out = NULL;
    *meta = NULL;
    *meta_len = 0;

    cd_err rc = cd_index_create(spec, dim, metric, &ix, err);
    if (rc != CD_OK)
        return rc;

    f = fopen(path, "rbe");
    if (!f) {
        rc = cd__fail(err, errno == ENOENT ? CD_ENOTFOUND : CD_EIO, "%s: %s",
                      path, strerror(errno));
        goto fail;
    }
    rc = read_contents(f, path, &loaded, &m, &m_len, err);
    fclose(f);
    if (rc != CD_OK)
        goto fail;
    if (faiss_Index_d(loaded) != dim) {
        rc = cd__fail(err, CD_ECORRUPT, "%s: index has dim %d, want %d", path,
                      faiss_Index_d(loaded), dim);
        goto fail;
    }
    if (faiss_Index_metric_type(loaded) != ix->metric) {
        rc = cd__fail(err, CD_ECORRUPT, "%s: index has another metric", path);
        goto fail;
    }

    /* Staging file: the spec's type is untrained and this is IDMap>Flat. */
    index_shape(loaded, got, sizeof got);
    if (ix->staging) {
        index_shape(ix->staging, want, sizeof want);
        if (strcmp(got, want) == 0) {
            faiss_Index_free(ix->staging);
            ix->staging = loaded;
            goto done;
        }
    }
    index_shape(ix->main, want, sizeof want);
    if (strcmp(got, want) != 0) {
        rc = cd__fail(err, CD_ECORRUPT, "%s: index is %s, spec \"%s\" makes %s",
                      path, got, spec, want);
        goto fail;
    }
    if (!faiss_Index_is_trained(loaded)) {
        rc = cd__fail(err, CD_ECORRUPT, "%s: index is not trained", path);
        goto fail;
    }
    rc = tune(loaded, ix->nlist, err);
    if (rc != CD_OK)
        goto fail;
    faiss_Index_free(ix->main);
    ix->main = loaded;
    half_sync(ix, false);
    if (ix->staging) {
        faiss_Index_free(ix->staging);
        ix->staging = NULL;
    }
done:
    *out = ix;
    *meta = m;
    *meta_len = m_len;
    return CD_OK;
fail:
    if (loaded)
        faiss_Index_free(loaded);
    free(m);
    cd_index_destroy(ix);
    return rc;
}
