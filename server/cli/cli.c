/*
 * cli.c - the operator commands that talk to a server over HTTP (see
 * cli.h): import, eval, models, galleries, status, adapter, and the end of an
 * upgrade: backfill, promote, retire.
 *
 * The shape of every command: parse options (one option table per
 * command, over one enum of every option, so one parser serves all), make
 * a client (client.h), ask the server, print.  Files are read with
 * vecfile.h and checked against the model the server describes
 * before anything is written, so a bad file sends nothing.
 *
 * An import sends batches in file order as binary item batches (vec.h's
 * CD_BATCH layout), two at a time on two kept-alive connections, so that
 * the server reads one while it commits the other.  Each batch is atomic
 * on the server, so after an interruption the items stored are whole
 * batches: a prefix of the files, give or take the batch that was in
 * flight beside the last one.  That is what makes resuming cheap and
 * sound: a batch whose first and last items already hold the files'
 * vectors of the model (and their labels) is stored whole, and is
 * skipped; one whose data changed since, or that never arrived, is sent
 * again.  Files that give an id twice are sent one batch at a time, so
 * that the later line wins as it would in file order.
 */
#include "cli.h"

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "client.h"
#include "vec.h"
#include "vecfile.h"

#define DEFAULT_URL "http://127.0.0.1:8080"
#define DEFAULT_BATCH 10000
#define MAX_BATCH 1000000
/* Largest request body an import builds: half the daemon's default limit. */
#define BATCH_BODY_MAX (32u * 1024 * 1024)
/* Per item of a batch, besides its float32 row: id, label, their lengths. */
#define ITEM_OVERHEAD (CD_ITEM_ID_MAX + CD_LABEL_MAX + 4)
/* Batches an import keeps in flight (files without repeated ids). */
#define IN_FLIGHT 2
#define PROGRESS_BAR_WIDTH 30
#define REGRESSIONS_SHOWN 10

/* Every option of every command; each command's table takes a subset. */
enum {
    OPT_URL = 256, OPT_KEY, OPT_CACERT, OPT_JSON,
    OPT_GALLERY, OPT_MODEL, OPT_VECTORS, OPT_IDS, OPT_LABELS, OPT_FORMAT, OPT_DIM, OPT_BATCH,
    OPT_NO_RESUME, OPT_QUIET,
    OPT_QUERY_MODEL, OPT_QUERIES, OPT_BASELINE, OPT_BASELINE_IDS, OPT_KS, OPT_PRIMARY,
    OPT_SHOW, OPT_FILTER,
    OPT_NAME, OPT_FROM, OPT_TO, OPT_KIND, OPT_RIDGE, OPT_WEIGHTS, OPT_ADAPTER, OPT_NONE,
    OPT_OUT, OPT_LIMIT, OPT_ORDER, OPT_MIXED, OPT_ALL,
    OPT_END
};

#define CONNECTION_OPTIONS                                  \
    {"url", required_argument, NULL, OPT_URL},              \
    {"key", required_argument, NULL, OPT_KEY},              \
    {"cacert", required_argument, NULL, OPT_CACERT},        \
    {"help", no_argument, NULL, 'h'}

#define CONNECTION_HELP                                                                    \
    "connection:\n"                                                                        \
    "  --url URL           the server (default $COMPATD_URL, else " DEFAULT_URL ")\n"      \
    "  --key KEY           API key, sent as \"Authorization: Bearer KEY\" (default\n"      \
    "                      $COMPATD_KEY; prefer the variable: arguments show in ps)\n"     \
    "  --cacert FILE       PEM CA certificate(s) an https server must chain to (default\n" \
    "                      $COMPATD_CACERT, else the system's trust store)\n"              \
    "  -h, --help          this text\n"

/* The values of a command line, by option; flags hold "true". */
typedef struct args {
    const char *v[OPT_END - OPT_URL];
} args;

static const char *arg(const args *a, int opt)
{
    return a->v[opt - OPT_URL];
}

/*
 * Parses argv (argv[0] is the command's name) with table into *a.
 * Returns -1 to go on, else the exit status to return now (0 after
 * --help, 2 after a bad command line, with the usage printed).
 */
static int parse_args(const char *cmd, int argc, char **argv, const struct option *table,
                      const char *usage, args *a)
{
    int opt;
    memset(a, 0, sizeof *a);
    optind = 1;
    opterr = 1;
    while ((opt = getopt_long(argc, argv, "h", table, NULL)) != -1) {
        if (opt == 'h') {
            fputs(usage, stdout);
            return 0;
        }
        if (opt < OPT_URL || opt >= OPT_END) {
            fputs(usage, stderr);
            return 2;
        }
        a->v[opt - OPT_URL] = optarg ? optarg : "true";
    }
    if (optind < argc) {
        fprintf(stderr, "compatd %s: unexpected argument \"%s\"\n%s", cmd, argv[optind], usage);
        return 2;
    }
    return -1;
}

/* Prints "compatd <cmd>: <message>" on stderr; returns 1 (an exit status). */
static int fail(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int fail(const char *cmd, const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "compatd %s: ", cmd);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    return 1;
}

/* An integer option lo..hi into *out; false (after saying so) otherwise. */
static bool int_arg(const char *cmd, const char *name, const char *s, long lo, long hi,
                    long *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi) {
        fprintf(stderr, "compatd %s: --%s must be an integer %ld..%ld\n", cmd, name, lo, hi);
        return false;
    }
    *out = v;
    return true;
}

/* The option's value, else the environment variable's, else dflt. */
static const char *arg_or_env(const args *a, int opt, const char *env, const char *dflt)
{
    const char *v = arg(a, opt);
    if (!v)
        v = getenv(env);
    return v && *v ? v : dflt;
}

/* A client from --url/--key/--cacert and the environment; NULL after
 * printing why. */
static cd_client *connect_to(const char *cmd, const args *a)
{
    cd_client *c;
    cd_error err;
    if (cd_client_create(arg_or_env(a, OPT_URL, "COMPATD_URL", DEFAULT_URL),
                         arg_or_env(a, OPT_KEY, "COMPATD_KEY", NULL),
                         arg_or_env(a, OPT_CACERT, "COMPATD_CACERT", NULL), &c, &err) != CD_OK) {
        fail(cmd, "%s", err.message);
        return NULL;
    }
    return c;
}

/* Prints a failed call's error (context, when not NULL, first); a 401
 * without a key says how to give one. */
static void call_failed(const char *cmd, const cd_client *c, long status, const cd_error *err,
                        const char *context)
{
    if (status == 401 && !cd_client_has_key(c))
        fail(cmd, "the server at %s needs an API key: give --key KEY or set COMPATD_KEY (%s)",
             cd_client_url(c), err->message);
    else
        fail(cmd, "%s%s%s%s", context ? context : "", context ? ": " : "", err->message,
             context && status == 413 ? " (try a smaller --batch)" : "");
}

/* One API call (see cd_client_call); prints the error and returns false
 * when it fails. */
static bool call(const char *cmd, cd_client *c, const char *method, const char *path,
                 const char *body, cJSON **json, char **text)
{
    cd_error err;
    long status = 0;
    if (cd_client_call(c, method, path, body, &status, json, text, &err) == CD_OK)
        return true;
    call_failed(cmd, c, status, &err, NULL);
    return false;
}

/* call() with req as the body; false after printing why (out of memory
 * included). */
static bool call_with(const char *cmd, cd_client *c, const char *method, const char *path,
                      const cJSON *req, cJSON **json, char **text)
{
    char *body = req ? cJSON_PrintUnformatted(req) : NULL;
    bool ok = body && path ? call(cmd, c, method, path, body, json, text)
                           : (fail(cmd, "out of memory"), false);
    free(body);
    return ok;
}

/*
 * A request path from literal parts and segments, alternating: part, seg,
 * part, seg, ..., NULL.  Segments are percent-encoded (item ids may hold
 * '/', spaces, UTF-8).  malloc'd (free()); NULL when out of memory.
 */
static char *api_path(const char *part, ...)
{
    va_list ap;
    char *out = NULL;
    size_t len = 0;
    bool is_seg = false, ok = true;
    FILE *f = open_memstream(&out, &len);
    if (!f)
        return NULL;
    va_start(ap, part);
    for (const char *s = part; s; s = va_arg(ap, const char *), is_seg = !is_seg) {
        char *esc = is_seg ? cd_client_escape(s) : NULL;
        ok = ok && (!is_seg || esc);
        fputs(is_seg ? (esc ? esc : "") : s, f);
        free(esc);
    }
    va_end(ap);
    if (fclose(f) != 0 || !ok) {
        free(out);
        return NULL;
    }
    return out;
}

/* GET of a path built by api_path; prints the error when it fails. */
static cJSON *get_json(const char *cmd, cd_client *c, char *path, char **text)
{
    cJSON *j = NULL;
    if (!path) {
        fail(cmd, "out of memory");
        return NULL;
    }
    call(cmd, c, "GET", path, NULL, &j, text);
    free(path);
    return j;
}

/* --- JSON and text helpers ---------------------------------------------- */

static const char *jstr(const cJSON *o, const char *name, const char *dflt)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, name);
    return cJSON_IsString(v) ? v->valuestring : dflt;
}

/* The number o.name, or NAN when it is absent, null or not a number. */
static double jnum(const cJSON *o, const char *name)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, name);
    return cJSON_IsNumber(v) ? v->valuedouble : NAN;
}

/* v with 4 decimals, "-" for NaN (null in the JSON). */
static const char *fmt_real(char *buf, size_t size, double v)
{
    if (isnan(v))
        snprintf(buf, size, "-");
    else
        snprintf(buf, size, "%.4f", v);
    return buf;
}

/* An integer count, "-" for NaN. */
static const char *fmt_count(char *buf, size_t size, double v)
{
    if (isnan(v))
        snprintf(buf, size, "-");
    else
        snprintf(buf, size, "%.0f", v);
    return buf;
}

static void print_json_text(const char *text)
{
    size_t n = strlen(text);
    fputs(text, stdout);
    if (n == 0 || text[n - 1] != '\n')
        fputc('\n', stdout);
}

/* Prints j unformatted on one line; false when out of memory. */
static bool print_json(const cJSON *j)
{
    char *s = cJSON_PrintUnformatted(j);
    if (!s)
        return false;
    print_json_text(s);
    free(s);
    return true;
}

/*
 * An aligned text table: columns padded to their widest cell, two spaces
 * apart, left- or right-aligned by column ('l' or 'r' in align).  Cells
 * are copied.  A table without heads prints only its rows.
 */
typedef struct table {
    size_t cols, rows, cap;
    const char *align;      /* cols characters of 'l' and 'r' */
    char **cells;           /* rows x cols malloc'd strings */
    bool oom;               /* a row could not be added */
} table;

static bool table_row(table *t, const char *const *cells)
{
    if (t->rows == t->cap) {
        size_t cap = t->cap ? 2 * t->cap : 16;
        char **grown = realloc(t->cells, cap * t->cols * sizeof *grown);
        if (!grown) {
            t->oom = true;
            return false;
        }
        t->cells = grown;
        t->cap = cap;
    }
    char **row = t->cells + t->rows * t->cols;
    for (size_t i = 0; i < t->cols; i++) {
        row[i] = strdup(cells[i] ? cells[i] : "-");
        if (!row[i]) {
            while (i > 0)
                free(row[--i]);
            t->oom = true;
            return false;
        }
    }
    t->rows++;
    return true;
}

static void table_init(table *t, size_t cols, const char *align, const char *const *heads)
{
    *t = (table){.cols = cols, .align = align};
    if (heads)
        table_row(t, heads);
}

/* Prints t to f with indent spaces before each row; false when out of
 * memory struck while it was filled. */
static bool table_print(const table *t, FILE *f, int indent)
{
    size_t width[16] = {0};
    if (t->oom || t->cols > sizeof width / sizeof width[0])
        return false;
    for (size_t r = 0; r < t->rows; r++)
        for (size_t c = 0; c < t->cols; c++) {
            size_t n = strlen(t->cells[r * t->cols + c]);
            if (n > width[c])
                width[c] = n;
        }
    for (size_t r = 0; r < t->rows; r++) {
        fprintf(f, "%*s", indent, "");
        for (size_t c = 0; c < t->cols; c++) {
            const char *s = t->cells[r * t->cols + c];
            bool last = c + 1 == t->cols;
            if (t->align[c] == 'r')
                fprintf(f, "%*s", (int)width[c], s);
            else
                fprintf(f, "%-*s", last ? 0 : (int)width[c], s);
            fputs(last ? "\n" : "  ", f);
        }
    }
    return true;
}

static void table_finish(table *t)
{
    for (size_t i = 0; t->cells && i < t->rows * t->cols; i++)
        free(t->cells[i]);
    free(t->cells);
    memset(t, 0, sizeof *t);
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* "42s", "3m05s", "2h07m". */
static const char *fmt_duration(char *buf, size_t size, double s)
{
    long t = s < 0 ? 0 : s > 1e8 ? 100000000L : (long)(s + 0.5);
    if (s < 10)
        snprintf(buf, size, "%.1fs", s < 0 ? 0 : s);
    else if (t < 60)
        snprintf(buf, size, "%lds", t);
    else if (t < 3600)
        snprintf(buf, size, "%ldm%02lds", t / 60, t % 60);
    else
        snprintf(buf, size, "%ldh%02ldm", t / 3600, t % 3600 / 60);
    return buf;
}

/* --- vector files ------------------------------------------------------ */

/*
 * Loads path as fmt_name ("npy", "fvecs", "raw"; NULL: from the file's
 * name, raw for anything but .npy and .fvecs) with the model's dim:
 * required for raw files (raw_dim, or the model's when 0), checked for the
 * others.  Prints one line and returns false when the file is unusable.
 */
static bool load_vectors(const char *cmd, const char *path, const char *fmt_name,
                         size_t raw_dim, const char *model, size_t model_dim,
                         cd_vecfile *out)
{
    static const struct {
        const char *name;
        cd_vecfile_format fmt;
    } formats[] = {{"npy", CD_VECFILE_NPY}, {"fvecs", CD_VECFILE_FVECS}, {"raw", CD_VECFILE_RAW}};
    cd_vecfile_format fmt = CD_VECFILE_RAW;
    cd_error err;
    memset(out, 0, sizeof *out);
    if (fmt_name) {
        size_t i = 0;
        while (i < sizeof formats / sizeof formats[0] && strcmp(formats[i].name, fmt_name) != 0)
            i++;
        if (i == sizeof formats / sizeof formats[0]) {
            fail(cmd, "--format must be npy, fvecs or raw, not \"%s\"", fmt_name);
            return false;
        }
        fmt = formats[i].fmt;
    } else if (cd_vecfile_format_from_path(path, &fmt, NULL) != CD_OK) {
        fmt = CD_VECFILE_RAW;
    }
    if (fmt == CD_VECFILE_RAW && raw_dim && raw_dim != model_dim) {
        fail(cmd, "%s: --dim %zu differs from model %s's dim %zu", path, raw_dim, model,
             model_dim);
        return false;
    }
    if (cd_vecfile_load(path, fmt, fmt == CD_VECFILE_RAW ? model_dim : 0, out, &err) != CD_OK) {
        fail(cmd, "%s", err.message);
        return false;
    }
    if (out->dim != model_dim) {
        fail(cmd, "%s: vectors have dim %zu, model %s has dim %zu", path, out->dim, model,
             model_dim);
        cd_vecfile_finish(out);
        return false;
    }
    return true;
}

/* A lines file with one line per vector; prints one line when unusable. */
static bool load_lines(const char *cmd, const char *path, size_t n, size_t max_len,
                       cd_lines *out)
{
    cd_error err;
    if (cd_lines_load(path, n, max_len, out, &err) != CD_OK) {
        fail(cmd, "%s", err.message);
        return false;
    }
    return true;
}

/* The model's dim from GET /v1/models/{name}, and in *cosine (when not
 * NULL) whether its metric is cosine; 0 after printing why. */
static size_t model_dim(const char *cmd, cd_client *c, const char *model, bool *cosine)
{
    cJSON *m = get_json(cmd, c, api_path("/v1/models/", model, NULL), NULL);
    double dim = jnum(m, "dim");
    const cJSON *metric = cJSON_GetObjectItemCaseSensitive(m, "metric");
    if (cosine)
        *cosine = cJSON_IsString(metric) && strcmp(metric->valuestring, "cosine") == 0;
    cJSON_Delete(m);
    if (m && !(dim >= 1 && dim <= CD_DIM_MAX)) {
        fail(cmd, "the server describes model %s without a valid dim", model);
        return 0;
    }
    return m ? (size_t)dim : 0;
}

/* --- compatd import ------------------------------------------------------ */

static const char import_usage[] =
    "usage: compatd import --gallery G --model M --vectors FILE --ids FILE [options]\n"
    "\n"
    "Imports embeddings into gallery G over the HTTP API, in batches.  Line i of\n"
    "the ids file (and of the labels file) belongs to vector i.  Vectors come from\n"
    "a NumPy .npy file (float32 <f4, C order, n x dim), an .fvecs file, or raw\n"
    "little-endian float32 (dim from --dim or the model).  The files are checked\n"
    "against model M before anything is sent.  Batches go as binary item batches,\n"
    "two at a time on two connections (one at a time when an id repeats).\n"
    "\n"
    "Resumable: run it again after an interruption and the batches already stored\n"
    "(their first and last items hold the files' vectors for M, and labels; a\n"
    "batch is stored atomically) are skipped.  Progress goes to stderr: a bar on a terminal, plain lines\n"
    "otherwise; a summary line to stdout.\n"
    "\n"
    "options:\n"
    "  --gallery G         the gallery (it must exist)\n"
    "  --model M           model of the vectors: the gallery's, or another to backfill\n"
    "  --vectors FILE      the vectors (.npy, .fvecs or raw float32)\n"
    "  --ids FILE          item ids, one per line\n"
    "  --labels FILE       labels, one per line (optional; existing labels are kept\n"
    "                      when absent)\n"
    "  --format FMT        npy, fvecs or raw (default: from FILE's name; raw unless it\n"
    "                      ends in .npy or .fvecs)\n"
    "  --dim N             floats per vector of a raw file (default: the model's dim)\n"
    "  --batch N           items per request (default 10000; fewer when a request\n"
    "                      would pass 32 MiB)\n"
    "  --no-resume         send every batch, even those already stored\n"
    "  --quiet             no progress, only the summary and errors\n"
    "\n" CONNECTION_HELP;

/* Where an import stands, and how it shows it on stderr. */
typedef struct progress {
    bool tty;               /* redraw one bar line with \r */
    bool quiet;             /* show nothing */
    size_t total;           /* items in the files */
    size_t done;            /* items sent or skipped so far */
    size_t sent;            /* items sent by this run */
    double t0;              /* when sending began */
    double last;            /* when the last line or bar was shown */
    int last_tenth;         /* the last 10% step a plain line showed */
    size_t shown;           /* `done` when last shown */
} progress;

static void progress_show(progress *p, bool final)
{
    double t = now_s();
    int tenth = p->total ? (int)(p->done * 10 / p->total) : 10;
    if (p->quiet)
        return;
    if (!final && (p->tty ? t - p->last < 0.1 : t - p->last < 1.0 && tenth == p->last_tenth))
        return;
    if (final && !p->tty && p->last > 0 && p->shown == p->done)
        return;     /* that line is out already */
    p->last = t;
    p->last_tenth = tenth;
    p->shown = p->done;
    double rate = t > p->t0 ? (double)p->sent / (t - p->t0) : 0;
    double pct = p->total ? 100.0 * (double)p->done / (double)p->total : 100;
    char eta[32];
    if (p->done == p->total)
        fmt_duration(eta, sizeof eta, 0);
    else if (rate > 0)
        fmt_duration(eta, sizeof eta, (double)(p->total - p->done) / rate);
    else
        snprintf(eta, sizeof eta, "?");
    if (p->tty) {
        char bar[PROGRESS_BAR_WIDTH + 1];
        int full = (int)(pct / 100 * PROGRESS_BAR_WIDTH);
        for (int i = 0; i < PROGRESS_BAR_WIDTH; i++)
            bar[i] = i < full ? '#' : '.';
        bar[PROGRESS_BAR_WIDTH] = '\0';
        fprintf(stderr, "\rimport [%s] %3.0f%%  %zu/%zu items  %.0f items/s  eta %-8s", bar, pct,
                p->done, p->total, rate, eta);
        if (final)
            fputc('\n', stderr);
    } else {
        fprintf(stderr, "import: %zu/%zu items (%.0f%%), %.0f items/s, eta %s\n", p->done,
                p->total, pct, rate, eta);
    }
    fflush(stderr);
}

/* Ends a bar line so that a message starts on a line of its own. */
static void progress_break(const progress *p)
{
    if (p->tty && !p->quiet && p->last > 0)
        fputc('\n', stderr);
}

/* The file's vector as the server stores it: L2-normalised for cosine
 * (core/vec.c does the same on ingest). */
static void as_stored(const float *v, size_t dim, bool cosine, double *out)
{
    double norm = 0;
    for (size_t d = 0; d < dim; d++)
        norm += (double)v[d] * v[d];
    norm = cosine && norm > 0 ? sqrt(norm) : 1;
    for (size_t d = 0; d < dim; d++)
        out[d] = v[d] / norm;
}

/*
 * Whether item id of gallery already holds what line i of the files would
 * write: an embedding of model equal to the file's vector (within float
 * rounding of the normalisation, for cosine) and, when labels are given,
 * the same label.  1 yes, 0 no (or no such item), -1 after printing an
 * error.
 */
static int item_stored(const char *cmd, cd_client *c, const char *gallery, const char *model,
                       bool cosine, const cd_vecfile *v, const cd_lines *ids,
                       const cd_lines *labels, size_t i)
{
    char *path = api_path("/v1/galleries/", gallery, "/items/", ids->lines[i], "?vectors=true",
                          NULL);
    double *want = malloc(v->dim * sizeof *want);
    cJSON *j = NULL;
    cd_error err;
    long status = 0;
    int rc = -1;
    if (!path || !want) {
        fail(cmd, "out of memory");
        goto out;
    }
    if (cd_client_call(c, "GET", path, NULL, &status, &j, NULL, &err) != CD_OK) {
        if (status == 404)
            rc = 0;
        else
            fail(cmd, "%s", err.message);
        goto out;
    }
    rc = 0;
    const cJSON *label = cJSON_GetObjectItemCaseSensitive(j, "label");
    if (labels && !(cJSON_IsString(label) && strcmp(label->valuestring, labels->lines[i]) == 0))
        goto out;
    const cJSON *got = cJSON_GetObjectItemCaseSensitive(
        cJSON_GetObjectItemCaseSensitive(j, "vectors"), model);
    if (!cJSON_IsArray(got) || (size_t)cJSON_GetArraySize(got) != v->dim)
        goto out;
    as_stored(v->data + i * v->dim, v->dim, cosine, want);
    size_t d = 0;
    const cJSON *x;
    cJSON_ArrayForEach(x, got) {
        float tol = cosine ? 1e-6f : 0;
        /* The reply's numbers are float32 values printed as doubles, not
         * always to the last digit (cJSON): compare them as float32. */
        if (!cJSON_IsNumber(x) || fabsf((float)x->valuedouble - (float)want[d]) > tol)
            goto out;
        d++;
    }
    rc = 1;
out:
    cJSON_Delete(j);
    free(want);
    free(path);
    return rc;
}

static unsigned char *put_u16(unsigned char *p, size_t v)
{
    p[0] = (unsigned char)v;
    p[1] = (unsigned char)(v >> 8);
    return p + 2;
}

static unsigned char *put_u32(unsigned char *p, uint32_t v)
{
    for (int k = 0; k < 4; k++)
        p[k] = (unsigned char)(v >> (8 * k));
    return p + 4;
}

/* The binary item batch (vec.h's CD_BATCH layout) of items [from, to):
 * malloc'd, its size in *len; NULL when out of memory. */
static char *batch_body(const cd_vecfile *v, const cd_lines *ids, const cd_lines *labels,
                        size_t from, size_t to, size_t *len)
{
    size_t size = CD_BATCH_HEADER;
    for (size_t i = from; i < to; i++)
        size += 4 + strlen(ids->lines[i]) + (labels ? strlen(labels->lines[i]) : 0);
    size_t rows_at = size + (size_t)(-size) % 4;
    size_t n_floats = (to - from) * v->dim;
    *len = rows_at + n_floats * sizeof(float);
    unsigned char *b = calloc(1, *len), *p = b;
    if (!b)
        return NULL;
    memcpy(p, CD_BATCH_MAGIC, 4);
    p = put_u32(p + 4, (uint32_t)(to - from));
    p = put_u32(p, (uint32_t)v->dim);
    for (size_t i = from; i < to; i++) {
        size_t n = strlen(ids->lines[i]);
        memcpy(p = put_u16(p, n), ids->lines[i], n);
        p += n;
        if (!labels) {
            p = put_u16(p, CD_BATCH_NO_LABEL);
            continue;
        }
        n = strlen(labels->lines[i]);
        memcpy(p = put_u16(p, n), labels->lines[i], n);
        p += n;
    }
    p = b + rows_at;    /* past the zero padding */
    const float *x = v->data + from * v->dim;
    for (size_t k = 0; k < n_floats; k++) {
        uint32_t u;
        memcpy(&u, &x[k], sizeof u);
        p = put_u32(p, u);
    }
    return (char *)b;
}

static int str_cmp(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Whether no id of the file repeats; -1 when out of memory. */
static int ids_unique(const cd_lines *ids)
{
    const char **sorted = malloc((ids->n ? ids->n : 1) * sizeof *sorted);
    if (!sorted)
        return -1;
    memcpy(sorted, ids->lines, ids->n * sizeof *sorted);
    qsort(sorted, ids->n, sizeof *sorted, str_cmp);
    size_t i = 1;
    while (i < ids->n && strcmp(sorted[i - 1], sorted[i]) != 0)
        i++;
    free(sorted);
    return i >= ids->n;
}

/* A batch on its way to the server, on a connection of its own. */
typedef struct sender {
    cd_client *c;           /* this sender's client (one thread at a time) */
    const char *path;       /* POST .../items?model=M */
    char *body;             /* the batch (malloc'd; freed once answered) */
    size_t len;
    size_t batch, from, to; /* its number and lines */
    bool busy, threaded;    /* sent and not yet waited for; on a thread */
    pthread_t thread;
    long status;            /* the answer */
    cd_err rc;
    cd_error err;
} sender;

static void *sender_run(void *arg)
{
    sender *s = arg;
    cJSON *reply = NULL;
    s->rc = cd_client_call_body(s->c, "POST", s->path, "application/octet-stream", s->body,
                                s->len, &s->status, &reply, NULL, &s->err);
    cJSON_Delete(reply);
    return NULL;
}

/* Sends s's batch on a thread (or here, when no thread can start). */
static void sender_start(sender *s)
{
    s->busy = true;
    s->threaded = pthread_create(&s->thread, NULL, sender_run, s) == 0;
    if (!s->threaded)
        sender_run(s);
}

/* Waits for s's batch, if any; its body is freed.  s->rc tells. */
static void sender_join(sender *s)
{
    if (s->busy && s->threaded)
        pthread_join(s->thread, NULL);
    if (s->busy) {
        free(s->body);
        s->body = NULL;
    }
    s->busy = false;
}

/* Waits for the batch s has in flight, if any, and counts it done; false
 * after printing why when the server refused it. */
static bool import_answered(const char *cmd, sender *s, progress *p)
{
    if (!s->busy)
        return true;
    sender_join(s);
    if (s->rc != CD_OK) {
        char context[96];
        progress_break(p);
        snprintf(context, sizeof context, "batch %zu (lines %zu-%zu)", s->batch + 1, s->from + 1,
                 s->to);
        call_failed(cmd, s->c, s->status, &s->err, context);
        return false;
    }
    p->sent += s->to - s->from;
    if (s->to > p->done)
        p->done = s->to;
    progress_show(p, false);
    return true;
}

/* Prints the resume notice for a run of skipped batches and resets it. */
static void report_skipped(const progress *p, size_t *run_batches, size_t *run_items,
                           size_t first_batch)
{
    if (*run_batches && !p->quiet) {
        progress_break(p);
        fprintf(stderr, "import: resuming: skipped %zu batch%s (%zu items, from batch %zu) "
                "already stored\n", *run_batches, *run_batches == 1 ? "" : "es", *run_items,
                first_batch + 1);
    }
    *run_batches = *run_items = 0;
}

int cd_import_main(int argc, char **argv)
{
    static const char cmd[] = "import";
    static const struct option options[] = {
        CONNECTION_OPTIONS,
        {"gallery", required_argument, NULL, OPT_GALLERY},
        {"model", required_argument, NULL, OPT_MODEL},
        {"vectors", required_argument, NULL, OPT_VECTORS},
        {"ids", required_argument, NULL, OPT_IDS},
        {"labels", required_argument, NULL, OPT_LABELS},
        {"format", required_argument, NULL, OPT_FORMAT},
        {"dim", required_argument, NULL, OPT_DIM},
        {"batch", required_argument, NULL, OPT_BATCH},
        {"no-resume", no_argument, NULL, OPT_NO_RESUME},
        {"quiet", no_argument, NULL, OPT_QUIET},
        {NULL, 0, NULL, 0},
    };
    args a;
    int rc = parse_args(cmd, argc, argv, options, import_usage, &a);
    if (rc >= 0)
        return rc;
    const char *gallery = arg(&a, OPT_GALLERY), *model = arg(&a, OPT_MODEL);
    const char *vectors = arg(&a, OPT_VECTORS), *ids_path = arg(&a, OPT_IDS);
    const char *labels_path = arg(&a, OPT_LABELS);
    long batch = DEFAULT_BATCH, raw_dim = 0;
    if (!gallery || !model || !vectors || !ids_path) {
        fprintf(stderr, "compatd import: --gallery, --model, --vectors and --ids are required\n%s",
                import_usage);
        return 2;
    }
    if ((arg(&a, OPT_BATCH) && !int_arg(cmd, "batch", arg(&a, OPT_BATCH), 1, MAX_BATCH, &batch)) ||
        (arg(&a, OPT_DIM) && !int_arg(cmd, "dim", arg(&a, OPT_DIM), 1, CD_DIM_MAX, &raw_dim)))
        return 2;

    cd_client *c = NULL;
    cd_vecfile v = {0};
    cd_lines ids = {0}, labels = {0};
    char *items_path = NULL;
    cJSON *g = NULL;
    sender senders[IN_FLIGHT] = {0};
    rc = 1;
    if (!(c = connect_to(cmd, &a)))
        goto out;
    bool cosine = false;
    size_t dim = model_dim(cmd, c, model, &cosine);
    if (!dim || !(g = get_json(cmd, c, api_path("/v1/galleries/", gallery, NULL), NULL)))
        goto out;
    if (!load_vectors(cmd, vectors, arg(&a, OPT_FORMAT), (size_t)raw_dim, model, dim, &v) ||
        !load_lines(cmd, ids_path, v.n, CD_ITEM_ID_MAX, &ids) ||
        (labels_path && !load_lines(cmd, labels_path, v.n, CD_LABEL_MAX, &labels)))
        goto out;
    int unique = ids_unique(&ids);
    if (unique < 0 || !(items_path = api_path("/v1/galleries/", gallery, "/items?model=", model,
                                              NULL))) {
        fail(cmd, "out of memory");
        goto out;
    }
    size_t in_flight = unique ? IN_FLIGHT : 1;
    for (size_t k = 0; k < in_flight; k++) {
        if (!(senders[k].c = connect_to(cmd, &a)))
            goto out;
        senders[k].path = items_path;
    }

    size_t per_item = dim * sizeof(float) + ITEM_OVERHEAD;
    size_t size = (size_t)batch;
    if (size > BATCH_BODY_MAX / per_item)
        size = BATCH_BODY_MAX / per_item ? BATCH_BODY_MAX / per_item : 1;
    size_t n_batches = (v.n + size - 1) / size;
    bool resume = !arg(&a, OPT_NO_RESUME);
    progress p = {.tty = isatty(STDERR_FILENO) == 1, .quiet = arg(&a, OPT_QUIET) != NULL,
                  .total = v.n, .t0 = now_s(), .last_tenth = 0};
    size_t sent_batches = 0, skipped_batches = 0, skipped_items = 0;
    size_t run_batches = 0, run_items = 0, run_first = 0;
    for (size_t b = 0; b < n_batches; b++) {
        size_t from = b * size, to = from + size < v.n ? from + size : v.n;
        if (resume) {
            const cd_lines *l = labels_path ? &labels : NULL;
            int first = item_stored(cmd, c, gallery, model, cosine, &v, &ids, l, from);
            int last = first == 1 ? item_stored(cmd, c, gallery, model, cosine, &v, &ids, l, to - 1)
                                  : 0;
            if (first < 0 || last < 0)
                goto out;
            if (first && last) {
                if (!run_batches++)
                    run_first = b;
                run_items += to - from;
                skipped_batches++;
                skipped_items += to - from;
                p.done = to;
                progress_show(&p, false);
                continue;
            }
        }
        report_skipped(&p, &run_batches, &run_items, run_first);
        /* The sender whose batch went out longest ago: its answer first. */
        sender *s = &senders[sent_batches % in_flight];
        if (!import_answered(cmd, s, &p))
            goto out;
        s->body = batch_body(&v, &ids, labels_path ? &labels : NULL, from, to, &s->len);
        if (!s->body) {
            fail(cmd, "out of memory building batch %zu", b + 1);
            goto out;
        }
        s->batch = b;
        s->from = from;
        s->to = to;
        sender_start(s);
        sent_batches++;
    }
    for (size_t k = 0; k < in_flight; k++)
        if (!import_answered(cmd, &senders[(sent_batches + k) % in_flight], &p))
            goto out;
    report_skipped(&p, &run_batches, &run_items, run_first);
    progress_show(&p, true);
    double secs = now_s() - p.t0;
    char took[32];
    printf("import: %zu items of model %s into gallery %s: %zu sent in %zu batch%s, "
           "%zu skipped (%zu batch%s already stored), %s, %.0f items/s\n",
           v.n, model, gallery, p.sent, sent_batches, sent_batches == 1 ? "" : "es",
           skipped_items, skipped_batches, skipped_batches == 1 ? "" : "es",
           fmt_duration(took, sizeof took, secs), secs > 0 ? (double)p.sent / secs : 0.0);
    rc = 0;
out:
    for (size_t k = 0; k < IN_FLIGHT; k++) {
        sender_join(&senders[k]);
        cd_client_destroy(senders[k].c);
    }
    free(items_path);
    cJSON_Delete(g);
    cd_lines_finish(&labels);
    cd_lines_finish(&ids);
    cd_vecfile_finish(&v);
    cd_client_destroy(c);
    return rc;
}

/* --- compatd eval -------------------------------------------------------- */

static const char eval_usage[] =
    "usage: compatd eval --gallery G --query-model M --queries FILE --labels FILE [options]\n"
    "       compatd eval --show ID [--json]\n"
    "\n"
    "Runs an evaluation of query model M against gallery G (POST\n"
    "/v1/galleries/G/evaluations) from probe files, and prints the stored report\n"
    "as a table: the verdict and criterion, cross / baseline / paragon accuracy\n"
    "for each top-k and mAP, the update gain and the flips.  --show prints a\n"
    "stored evaluation.  Vector files are .npy, .fvecs or raw float32, as for\n"
    "`compatd import`; line i of a lines file belongs to vector i.\n"
    "\n"
    "options:\n"
    "  --gallery G          the gallery; its labelled items are the evaluation gallery\n"
    "  --query-model M      the model the queries were embedded with\n"
    "  --adapter NAME       map the queries through adapter NAME (from M into the\n"
    "                       gallery's model) first: evaluates M via the adapter, a\n"
    "                       pair of its own in the compatibility matrix\n"
    "  --mixed              rank the gallery as hot-refresh search does mid-backfill\n"
    "                       (gallery_view mixed): items with an M embedding in M's\n"
    "                       space with the raw queries, the others in the gallery\n"
    "                       model's; the report gives the coverage (the share of\n"
    "                       the former)\n"
    "  --queries FILE       the probes embedded by M\n"
    "  --labels FILE        the probes' labels, one per line\n"
    "  --ids FILE           the probes' ids, one per line (default q1, q2, ...: the line\n"
    "                       numbers); a probe never retrieves the item of its own id\n"
    "  --baseline FILE      the same probes embedded by the gallery's model: gives the\n"
    "                       old->old reference, the verdict and the flips\n"
    "  --baseline-ids FILE  ids of the baseline probes (default: the probes' ids, in\n"
    "                       the same order)\n"
    "  --ks LIST            the k of top-k, e.g. 1,5,10 (the server's default: 1,5,10)\n"
    "  --primary METRIC     the criterion's metric: top<k> or map (default top1)\n"
    "  --filter JSON        evaluate against the labelled items this filter matches,\n"
    "                       e.g. '{\"metadata.album\": \"paris\"}' (README, Filters)\n"
    "  --format FMT         npy, fvecs or raw, for both vector files (default: from the\n"
    "                       files' names)\n"
    "  --show ID            print stored evaluation ID instead of running one\n"
    "  --json               print the server's JSON instead of the table\n"
    "\n" CONNECTION_HELP;

/* Adds one metric row (top<k> or map) of the report to t. */
static void report_metric_row(table *t, const cJSON *r, const char *key)
{
    static const char *const parts[] = {"cross", "baseline", "paragon", "update_gain"};
    char buf[4][32];
    const char *cells[5] = {key};
    for (size_t i = 0; i < 4; i++)
        cells[i + 1] = fmt_real(buf[i], sizeof buf[i],
                                jnum(cJSON_GetObjectItemCaseSensitive(r, parts[i]), key));
    table_row(t, cells);
}

/* Prints a report (schema/concepts.md §4) as tables; false when out of memory. */
static bool print_report(const cJSON *r)
{
    char id[32], created[96], gal[256], probes[96], nb[4][32];
    const cJSON *compatible = cJSON_GetObjectItemCaseSensitive(r, "compatible");
    const char *verdict = cJSON_IsTrue(compatible) ? "compatible"
                          : cJSON_IsFalse(compatible) ? "NOT compatible"
                                                      : "none (no baseline)";
    snprintf(id, sizeof id, "%s", fmt_count(nb[0], sizeof nb[0], jnum(r, "id")));
    snprintf(created, sizeof created, "%s", jstr(r, "created_at", "-"));
    snprintf(gal, sizeof gal, "%s (model %s, %s labelled items)", jstr(r, "gallery", "-"),
             jstr(r, "gallery_model", "-"), fmt_count(nb[1], sizeof nb[1], jnum(r, "gallery_items")));
    snprintf(probes, sizeof probes, "%s (%s skipped)",
             fmt_count(nb[2], sizeof nb[2], jnum(r, "queries")),
             fmt_count(nb[3], sizeof nb[3], jnum(r, "skipped")));
    table head, metrics, flips, regress;
    bool ok;
    table_init(&head, 2, "ll", NULL);
    table_row(&head, (const char *const[]){"evaluation", id});
    table_row(&head, (const char *const[]){"created", created});
    table_row(&head, (const char *const[]){"gallery", gal});
    table_row(&head, (const char *const[]){"query model", jstr(r, "query_model", "-")});
    if (jstr(r, "adapter", NULL))
        table_row(&head, (const char *const[]){"adapter", jstr(r, "adapter", NULL)});
    const char *view = jstr(r, "gallery_view", "gallery_model");
    char view_text[64], cov[32];
    if (strcmp(view, "mixed") == 0)
        snprintf(view_text, sizeof view_text, "mixed, coverage %s",
                 fmt_real(cov, sizeof cov, jnum(r, "coverage")));
    else
        snprintf(view_text, sizeof view_text, "%s", view);
    table_row(&head, (const char *const[]){"view", view_text});
    table_row(&head, (const char *const[]){"probes", probes});
    table_row(&head, (const char *const[]){"primary", jstr(r, "primary_metric", "-")});
    table_row(&head, (const char *const[]){"verdict", verdict});
    table_row(&head, (const char *const[]){"criterion", jstr(r, "criterion", "-")});
    const cJSON *filter = cJSON_GetObjectItemCaseSensitive(r, "filter");
    char *filter_text = cJSON_IsObject(filter) ? cJSON_PrintUnformatted(filter) : NULL;
    if (filter_text)
        table_row(&head, (const char *const[]){"filter", filter_text});

    table_init(&metrics, 5, "lrrrr",
               (const char *const[]){"metric", "cross", "baseline", "paragon", "update_gain"});
    const cJSON *k;
    cJSON_ArrayForEach(k, cJSON_GetObjectItemCaseSensitive(r, "ks")) {
        char key[32];
        snprintf(key, sizeof key, "top%.0f", cJSON_IsNumber(k) ? k->valuedouble : 0);
        report_metric_row(&metrics, r, key);
    }
    report_metric_row(&metrics, r, "map");

    const cJSON *f = cJSON_GetObjectItemCaseSensitive(r, "flips");
    table_init(&flips, 2, "ll", NULL);
    if (cJSON_IsObject(f)) {
        char text[96], v[3][32];
        snprintf(text, sizeof text, "%s negative, %s positive",
                 fmt_count(nb[0], sizeof nb[0], jnum(f, "negative")),
                 fmt_count(nb[1], sizeof nb[1], jnum(f, "positive")));
        table_row(&flips, (const char *const[]){"flips", text});
        table_row(&flips, (const char *const[]){"nfr", fmt_real(v[0], sizeof v[0], jnum(f, "nfr"))});
        table_row(&flips, (const char *const[]){"nfi", fmt_real(v[1], sizeof v[1], jnum(f, "nfi"))});
        table_row(&flips, (const char *const[]){"pfr", fmt_real(v[2], sizeof v[2], jnum(f, "pfr"))});
    } else {
        table_row(&flips, (const char *const[]){"flips", "- (no baseline)"});
    }

    /* The labels that regressed most: by negative flips, then by name. */
    table_init(&regress, 5, "lrrrr",
               (const char *const[]){"label", "queries", "baseline_top1", "cross_top1",
                                     "negative_flips"});
    const cJSON *by = cJSON_GetObjectItemCaseSensitive(r, "by_label");
    size_t shown = 0;
    for (double want = INFINITY; shown < REGRESSIONS_SHOWN;) {
        /* The largest count below `want`, then every label with it. */
        double next = 0;
        const cJSON *l;
        cJSON_ArrayForEach(l, by) {
            double n = jnum(l, "negative_flips");
            if (n < want && n > next)
                next = n;
        }
        if (next <= 0)
            break;
        cJSON_ArrayForEach(l, by) {
            if (jnum(l, "negative_flips") != next || shown == REGRESSIONS_SHOWN)
                continue;
            char q[32], bt[32], ct[32], nf[32];
            table_row(&regress, (const char *const[]){
                jstr(l, "label", "-"), fmt_count(q, sizeof q, jnum(l, "queries")),
                fmt_real(bt, sizeof bt, jnum(l, "baseline_top1")),
                fmt_real(ct, sizeof ct, jnum(l, "cross_top1")),
                fmt_count(nf, sizeof nf, next)});
            shown++;
        }
        want = next;
    }

    ok = table_print(&head, stdout, 0);
    fputc('\n', stdout);
    ok = table_print(&metrics, stdout, 0) && ok;
    fputc('\n', stdout);
    ok = table_print(&flips, stdout, 0) && ok;
    if (shown) {
        printf("\nregressions by label (most negative flips first, at most %d):\n",
               REGRESSIONS_SHOWN);
        ok = table_print(&regress, stdout, 2) && ok;
    }
    table_finish(&regress);
    table_finish(&flips);
    table_finish(&metrics);
    table_finish(&head);
    free(filter_text);
    return ok;
}

/* "1,5,10" as a JSON array of integers; NULL after printing why. */
static cJSON *parse_ks(const char *cmd, const char *s)
{
    cJSON *arr = cJSON_CreateArray();
    const char *p = s;
    while (arr) {
        char *end;
        errno = 0;
        long k = strtol(p, &end, 10);
        if (errno || end == p || k < 1 || k > CD_K_MAX || (*end && *end != ',')) {
            fail(cmd, "--ks must be a comma-separated list of integers 1..%d, not \"%s\"",
                 CD_K_MAX, s);
            cJSON_Delete(arr);
            return NULL;
        }
        cJSON_AddItemToArray(arr, cJSON_CreateNumber((double)k));
        if (!*end)
            return arr;
        p = end + 1;
    }
    fail(cmd, "out of memory");
    return NULL;
}

/* Adds probes [{id, label?, vector_b64}] of v to arr; false when out of
 * memory. */
static bool add_probes(cJSON *arr, const cd_vecfile *v, const char *const *ids,
                       const cd_lines *labels)
{
    for (size_t i = 0; i < v->n; i++) {
        cJSON *it = cJSON_CreateObject();
        if (!it)
            return false;
        cJSON_AddItemToArray(arr, it);
        char *b64 = cd_b64_encode_floats(v->data + i * v->dim, v->dim);
        cJSON *s = b64 ? cJSON_CreateString(b64) : NULL;
        free(b64);
        if (!s || !cJSON_AddStringToObject(it, "id", ids[i]) ||
            (labels && !cJSON_AddStringToObject(it, "label", labels->lines[i]))) {
            cJSON_Delete(s);
            return false;
        }
        cJSON_AddItemToObject(it, "vector_b64", s);
    }
    return true;
}

/* Prints a report reply: its text with --json, else the table. */
static int show_report(const char *cmd, const args *a, const cJSON *report, const char *text)
{
    if (arg(a, OPT_JSON)) {
        print_json_text(text);
        return 0;
    }
    if (!print_report(report))
        return fail(cmd, "out of memory");
    return 0;
}

/* `compatd eval --show ID`. */
static int eval_show(const char *cmd, const args *a)
{
    const char *id = arg(a, OPT_SHOW);
    long n;
    if (!int_arg(cmd, "show", id, 1, LONG_MAX, &n))
        return 2;
    cd_client *c = connect_to(cmd, a);
    char *text = NULL;
    cJSON *r = c ? get_json(cmd, c, api_path("/v1/evaluations/", id, NULL), &text) : NULL;
    int rc = r ? show_report(cmd, a, r, text) : 1;
    free(text);
    cJSON_Delete(r);
    cd_client_destroy(c);
    return rc;
}

int cd_eval_main(int argc, char **argv)
{
    static const char cmd[] = "eval";
    static const struct option options[] = {
        CONNECTION_OPTIONS,
        {"json", no_argument, NULL, OPT_JSON},
        {"gallery", required_argument, NULL, OPT_GALLERY},
        {"query-model", required_argument, NULL, OPT_QUERY_MODEL},
        {"adapter", required_argument, NULL, OPT_ADAPTER},
        {"mixed", no_argument, NULL, OPT_MIXED},
        {"queries", required_argument, NULL, OPT_QUERIES},
        {"labels", required_argument, NULL, OPT_LABELS},
        {"ids", required_argument, NULL, OPT_IDS},
        {"baseline", required_argument, NULL, OPT_BASELINE},
        {"baseline-ids", required_argument, NULL, OPT_BASELINE_IDS},
        {"ks", required_argument, NULL, OPT_KS},
        {"primary", required_argument, NULL, OPT_PRIMARY},
        {"filter", required_argument, NULL, OPT_FILTER},
        {"format", required_argument, NULL, OPT_FORMAT},
        {"show", required_argument, NULL, OPT_SHOW},
        {NULL, 0, NULL, 0},
    };
    args a;
    int rc = parse_args(cmd, argc, argv, options, eval_usage, &a);
    if (rc >= 0)
        return rc;
    if (arg(&a, OPT_SHOW)) {
        for (int o = OPT_GALLERY; o < OPT_END; o++)
            if (o != OPT_SHOW && arg(&a, o)) {
                fprintf(stderr, "compatd eval: --show takes only --json and the connection "
                        "options\n");
                return 2;
            }
        return eval_show(cmd, &a);
    }
    const char *gallery = arg(&a, OPT_GALLERY), *qmodel = arg(&a, OPT_QUERY_MODEL);
    const char *queries = arg(&a, OPT_QUERIES), *labels_path = arg(&a, OPT_LABELS);
    const char *ids_path = arg(&a, OPT_IDS), *baseline = arg(&a, OPT_BASELINE);
    const char *base_ids_path = arg(&a, OPT_BASELINE_IDS), *fmt = arg(&a, OPT_FORMAT);
    if (!gallery || !qmodel || !queries || !labels_path) {
        fprintf(stderr, "compatd eval: --gallery, --query-model, --queries and --labels are "
                "required (or --show ID)\n%s", eval_usage);
        return 2;
    }
    if (base_ids_path && !baseline) {
        fprintf(stderr, "compatd eval: --baseline-ids goes with --baseline\n");
        return 2;
    }

    cd_client *c = NULL;
    cd_vecfile qv = {0}, bv = {0};
    cd_lines labels = {0}, ids = {0}, base_ids = {0};
    char **made_ids = NULL, *path = NULL, *body = NULL, *text = NULL;
    cJSON *g = NULL, *req = NULL, *report = NULL, *ks = NULL;
    rc = 1;
    if (arg(&a, OPT_KS) && !(ks = parse_ks(cmd, arg(&a, OPT_KS))))
        return 2;
    cJSON *filter = NULL;
    if (arg(&a, OPT_FILTER) && !(filter = cJSON_Parse(arg(&a, OPT_FILTER)))) {
        cJSON_Delete(ks);
        fprintf(stderr, "compatd eval: --filter must be JSON, not \"%s\"\n", arg(&a, OPT_FILTER));
        return 2;
    }
    if (!(c = connect_to(cmd, &a)) ||
        !(g = get_json(cmd, c, api_path("/v1/galleries/", gallery, NULL), NULL)))
        goto out;
    const char *gmodel = jstr(g, "model", NULL);
    if (!gmodel) {
        fail(cmd, "the server describes gallery %s without its model", gallery);
        goto out;
    }
    size_t qdim = model_dim(cmd, c, qmodel, NULL),
           gdim = qdim ? model_dim(cmd, c, gmodel, NULL) : 0;
    if (!qdim || !gdim)
        goto out;
    if (!load_vectors(cmd, queries, fmt, 0, qmodel, qdim, &qv) ||
        !load_lines(cmd, labels_path, qv.n, CD_LABEL_MAX, &labels) ||
        (ids_path && !load_lines(cmd, ids_path, qv.n, CD_ITEM_ID_MAX, &ids)))
        goto out;
    if (!ids_path) {
        if (!(made_ids = calloc(qv.n, sizeof *made_ids)))
            goto oom;
        for (size_t i = 0; i < qv.n; i++)
            if (asprintf(&made_ids[i], "q%zu", i + 1) < 0) {
                made_ids[i] = NULL;
                goto oom;
            }
    }
    const char *const *qids = ids_path ? (const char *const *)ids.lines
                                       : (const char *const *)made_ids;
    if (baseline) {
        if (!load_vectors(cmd, baseline, fmt, 0, gmodel, gdim, &bv) ||
            (base_ids_path && !load_lines(cmd, base_ids_path, bv.n, CD_ITEM_ID_MAX, &base_ids)))
            goto out;
        if (!base_ids_path && bv.n != qv.n) {
            fail(cmd, "%s: %zu vectors, %s has %zu: give --baseline-ids to match them by id",
                 baseline, bv.n, queries, qv.n);
            goto out;
        }
    }

    cJSON *arr;
    if (!(req = cJSON_CreateObject()) || !cJSON_AddStringToObject(req, "query_model", qmodel) ||
        !(arr = cJSON_AddArrayToObject(req, "queries")) || !add_probes(arr, &qv, qids, &labels))
        goto oom;
    if (arg(&a, OPT_ADAPTER) && !cJSON_AddStringToObject(req, "adapter", arg(&a, OPT_ADAPTER)))
        goto oom;
    if (arg(&a, OPT_MIXED) && !cJSON_AddStringToObject(req, "gallery_view", "mixed"))
        goto oom;
    if (baseline && (!(arr = cJSON_AddArrayToObject(req, "baseline")) ||
                     !add_probes(arr, &bv,
                                 base_ids_path ? (const char *const *)base_ids.lines : qids,
                                 NULL)))
        goto oom;
    if (ks) {
        cJSON_AddItemToObject(req, "ks", ks);
        ks = NULL;
    }
    if (arg(&a, OPT_PRIMARY) && !cJSON_AddStringToObject(req, "primary_metric",
                                                         arg(&a, OPT_PRIMARY)))
        goto oom;
    if (filter) {
        cJSON_AddItemToObject(req, "filter", filter);
        filter = NULL;
    }
    if (!(body = cJSON_PrintUnformatted(req)) ||
        !(path = api_path("/v1/galleries/", gallery, "/evaluations", NULL)))
        goto oom;
    cJSON_Delete(req);      /* the body text is all that is needed now */
    req = NULL;
    if (!call(cmd, c, "POST", path, body, &report, &text))
        goto out;
    rc = show_report(cmd, &a, report, text);
    goto out;
oom:
    fail(cmd, "out of memory");
out:
    free(text);
    cJSON_Delete(report);
    free(body);
    free(path);
    cJSON_Delete(req);
    cJSON_Delete(ks);
    cJSON_Delete(filter);
    for (size_t i = 0; made_ids && i < qv.n; i++)
        free(made_ids[i]);
    free(made_ids);
    cd_lines_finish(&base_ids);
    cd_lines_finish(&ids);
    cd_lines_finish(&labels);
    cd_vecfile_finish(&bv);
    cd_vecfile_finish(&qv);
    cJSON_Delete(g);
    cd_client_destroy(c);
    return rc;
}

/* --- compatd models, galleries, status --------------------------------- */

/* The options of the listing commands. */
static const struct option listing_options[] = {
    CONNECTION_OPTIONS,
    {"json", no_argument, NULL, OPT_JSON},
    {NULL, 0, NULL, 0},
};

#define LISTING_HELP                                                         \
    "options:\n"                                                             \
    "  --json              print the server's JSON instead of the table\n"  \
    "\n" CONNECTION_HELP

/* What a listing command does once connected: asks c, prints (the
 * server's JSON with json) and returns the exit status. */
typedef int listing_fn(const char *cmd, cd_client *c, bool json);

/*
 * The frame every listing command shares: parses argv with
 * listing_options (usage for --help and errors), connects, runs list and
 * destroys the client.  Returns the exit status: parse_args's, 1 when the
 * client cannot be made, else list's.
 */
static int listing_main(const char *cmd, int argc, char **argv, const char *usage,
                        listing_fn *list)
{
    args a;
    int rc = parse_args(cmd, argc, argv, listing_options, usage, &a);
    if (rc >= 0)
        return rc;
    cd_client *c = connect_to(cmd, &a);
    rc = c ? list(cmd, c, arg(&a, OPT_JSON) != NULL) : 1;
    cd_client_destroy(c);
    return rc;
}

/* Prints t after a blank line and title (NULL: none), indented by indent,
 * when it has rows besides its heads; false when out of memory. */
static bool table_print_section(const table *t, const char *title, int indent)
{
    if (t->rows <= 1)
        return true;
    fputc('\n', stdout);
    if (title)
        printf("%s:\n", title);
    return table_print(t, stdout, indent);
}

static const char models_usage[] =
    "usage: compatd models [--json]\n"
    "\n"
    "Lists the server's models: name, dim, metric, the model each was trained to\n"
    "be compatible with, and when it was created (GET /v1/models).\n"
    "\n" LISTING_HELP;

static int models_list(const char *cmd, cd_client *c, bool json)
{
    char *text = NULL;
    cJSON *j = get_json(cmd, c, api_path("/v1/models", NULL), &text);
    int rc = 1;
    if (j && json) {
        print_json_text(text);
        rc = 0;
    } else if (j) {
        table t;
        table_init(&t, 6, "lrllll",
                   (const char *const[]){"NAME", "DIM", "METRIC", "COMPATIBLE_WITH", "CREATED",
                                         "DESCRIPTION"});
        const cJSON *m;
        cJSON_ArrayForEach(m, cJSON_GetObjectItemCaseSensitive(j, "models")) {
            char dim[32];
            const char *desc = jstr(m, "description", "");
            table_row(&t, (const char *const[]){
                jstr(m, "name", "-"), fmt_count(dim, sizeof dim, jnum(m, "dim")),
                jstr(m, "metric", "-"), jstr(m, "compatible_with", "-"),
                jstr(m, "created_at", "-"), *desc ? desc : "-"});
        }
        rc = table_print(&t, stdout, 0) ? 0 : fail(cmd, "out of memory");
        table_finish(&t);
    }
    free(text);
    cJSON_Delete(j);
    return rc;
}

int cd_models_main(int argc, char **argv)
{
    return listing_main("models", argc, argv, models_usage, models_list);
}

static const char galleries_usage[] =
    "usage: compatd galleries [--json]\n"
    "\n"
    "Lists the server's galleries (model, index, query policy, items), then the\n"
    "embeddings each holds per model with the backfill coverage (share of its\n"
    "items), then the models that may query each one with their status\n"
    "(verified, failed, declared, unverified) and latest evaluation.  --json\n"
    "prints {\"galleries\": [GET /v1/galleries/{g} of each]}.\n"
    "\n" LISTING_HELP;

static int galleries_list(const char *cmd, cd_client *c, bool json)
{
    cJSON *list = get_json(cmd, c, api_path("/v1/galleries", NULL), NULL);
    cJSON *all = cJSON_CreateObject(), *arr = cJSON_AddArrayToObject(all, "galleries");
    table main_t, emb_t, qm_t;
    table_init(&main_t, 5, "lllrl",
               (const char *const[]){"GALLERY", "MODEL", "INDEX", "ITEMS", "POLICY"});
    table_init(&emb_t, 4, "llrr",
               (const char *const[]){"GALLERY", "EMBEDDINGS_OF", "ITEMS", "COVERAGE"});
    table_init(&qm_t, 5, "llllr",
               (const char *const[]){"GALLERY", "QUERY_MODEL", "STATUS", "CROSS_TOP1",
                                     "EVALUATION"});
    int rc = 1;
    if (!list)
        goto out;
    if (!arr) {
        fail(cmd, "out of memory");
        goto out;
    }
    const cJSON *brief;
    cJSON_ArrayForEach(brief, cJSON_GetObjectItemCaseSensitive(list, "galleries")) {
        const char *name = jstr(brief, "name", "");
        cJSON *g = get_json(cmd, c, api_path("/v1/galleries/", name, NULL), NULL);
        if (!g)
            goto out;
        cJSON_AddItemToArray(arr, g);
        double count = jnum(g, "count");
        char items[32];
        table_row(&main_t, (const char *const[]){
            name, jstr(g, "model", "-"), jstr(g, "index", "-"),
            fmt_count(items, sizeof items, count), jstr(g, "query_policy", "-")});
        const cJSON *e;
        cJSON_ArrayForEach(e, cJSON_GetObjectItemCaseSensitive(g, "embeddings")) {
            char n[32], cov[32];
            double v = cJSON_IsNumber(e) ? e->valuedouble : NAN;
            if (count > 0 && !isnan(v))
                snprintf(cov, sizeof cov, "%.1f%%", 100.0 * v / count);
            else
                snprintf(cov, sizeof cov, "-");
            table_row(&emb_t, (const char *const[]){name, e->string, fmt_count(n, sizeof n, v),
                                                    cov});
        }
        const cJSON *q;
        cJSON_ArrayForEach(q, cJSON_GetObjectItemCaseSensitive(g, "query_models")) {
            const cJSON *ev = cJSON_GetObjectItemCaseSensitive(q, "evaluation");
            char top1[32], id[32];
            table_row(&qm_t, (const char *const[]){
                name, jstr(q, "model", "-"), jstr(q, "status", "-"),
                fmt_real(top1, sizeof top1, jnum(ev, "cross_top1")),
                fmt_count(id, sizeof id, jnum(ev, "id"))});
        }
    }
    if (json) {
        rc = print_json(all) ? 0 : fail(cmd, "out of memory");
        goto out;
    }
    bool ok = table_print(&main_t, stdout, 0);
    ok = table_print_section(&emb_t, NULL, 0) && ok;
    ok = table_print_section(&qm_t, NULL, 0) && ok;
    rc = ok ? 0 : fail(cmd, "out of memory");
out:
    table_finish(&qm_t);
    table_finish(&emb_t);
    table_finish(&main_t);
    cJSON_Delete(all);
    cJSON_Delete(list);
    return rc;
}

int cd_galleries_main(int argc, char **argv)
{
    return listing_main("galleries", argc, argv, galleries_usage, galleries_list);
}

static const char status_usage[] =
    "usage: compatd status [--json]\n"
    "\n"
    "Shows whether the server is alive and ready (GET /healthz, /readyz), how\n"
    "many models, galleries and items it holds, and the compatibility summary\n"
    "(GET /v1/compatibility): each evaluated (query model, gallery model) pair of\n"
    "each gallery with its verdict, and the share of newer->older pairs that\n"
    "pass.  Exits 0 when the server is ready, 1 otherwise.  --json prints\n"
    "{\"url\", \"health\", \"ready\", \"models\", \"galleries\", \"compatibility\"}\n"
    "with the server's replies.\n"
    "\n" LISTING_HELP;

/* GET of a probe (/healthz, /readyz): its "status" word ("loading" for
 * 503); NULL after printing why. */
static cJSON *probe(const char *cmd, cd_client *c, const char *path)
{
    cJSON *j = NULL;
    cd_error err;
    long status = 0;
    if (cd_client_call(c, "GET", path, NULL, &status, &j, NULL, &err) == CD_OK)
        return j ? j : cJSON_CreateObject();
    if (status == 503)
        return cJSON_Parse("{\"status\":\"loading\"}");
    fail(cmd, "%s", err.message);
    return NULL;
}

static int status_list(const char *cmd, cd_client *c, bool json)
{
    cJSON *all = cJSON_CreateObject();
    table head, pairs, share;
    table_init(&head, 2, "ll", NULL);
    table_init(&pairs, 8, "llllrrrr",
               (const char *const[]){"GALLERY", "QUERY_MODEL", "GALLERY_MODEL", "VERDICT",
                                     "CROSS_TOP1", "BASELINE_TOP1", "NFR", "EVALUATION"});
    table_init(&share, 4, "lrrr", (const char *const[]){"GALLERY", "PASSED", "PAIRS", "SHARE"});
    int rc = 1;
    cJSON *health = probe(cmd, c, "/healthz"), *ready = health ? probe(cmd, c, "/readyz") : NULL;
    cJSON_AddItemToObject(all, "health", health);
    cJSON_AddItemToObject(all, "ready", ready);
    cJSON *models = NULL, *galleries = NULL, *compat = NULL;
    if (!ready || !(models = get_json(cmd, c, api_path("/v1/models", NULL), NULL)))
        goto out;
    cJSON_AddItemToObject(all, "models", models);
    if (!(galleries = get_json(cmd, c, api_path("/v1/galleries", NULL), NULL)))
        goto out;
    cJSON_AddItemToObject(all, "galleries", galleries);
    if (!(compat = get_json(cmd, c, api_path("/v1/compatibility", NULL), NULL)))
        goto out;
    cJSON_AddItemToObject(all, "compatibility", compat);
    cJSON_AddStringToObject(all, "url", cd_client_url(c));
    bool is_ready = strcmp(jstr(ready, "status", ""), "ready") == 0;
    if (json) {
        rc = !print_json(all) ? fail(cmd, "out of memory") : is_ready ? 0 : 1;
        goto out;
    }

    char n_models[32], n_galleries[32], n_items[32];
    double items = 0;
    const cJSON *x;
    cJSON_ArrayForEach(x, cJSON_GetObjectItemCaseSensitive(galleries, "galleries"))
        items += isnan(jnum(x, "count")) ? 0 : jnum(x, "count");
    snprintf(n_models, sizeof n_models, "%d",
             cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(models, "models")));
    snprintf(n_galleries, sizeof n_galleries, "%d",
             cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(galleries, "galleries")));
    snprintf(n_items, sizeof n_items, "%.0f", items);
    table_row(&head, (const char *const[]){"server", cd_client_url(c)});
    table_row(&head, (const char *const[]){"health", jstr(health, "status", "-")});
    table_row(&head, (const char *const[]){"ready", jstr(ready, "status", "-")});
    table_row(&head, (const char *const[]){"models", n_models});
    table_row(&head, (const char *const[]){"galleries", n_galleries});
    table_row(&head, (const char *const[]){"items", n_items});

    const cJSON *g;
    cJSON_ArrayForEach(g, cJSON_GetObjectItemCaseSensitive(compat, "galleries")) {
        const char *name = jstr(g, "gallery", "-");
        const cJSON *p;
        cJSON_ArrayForEach(p, cJSON_GetObjectItemCaseSensitive(g, "pairs")) {
            char ct[32], bt[32], nfr[32], id[32], qm[160];
            /* An adapted pair is a row of its own: "v3 via v3-to-v1". */
            snprintf(qm, sizeof qm, "%s%s%s", jstr(p, "query_model", "-"),
                     jstr(p, "adapter", NULL) ? " via " : "", jstr(p, "adapter", ""));
            table_row(&pairs, (const char *const[]){
                name, qm, jstr(p, "gallery_model", "-"),
                jstr(p, "verdict", "-"), fmt_real(ct, sizeof ct, jnum(p, "cross_top1")),
                fmt_real(bt, sizeof bt, jnum(p, "baseline_top1")),
                fmt_real(nfr, sizeof nfr, jnum(p, "nfr")),
                fmt_count(id, sizeof id, jnum(p, "evaluation"))});
        }
        const cJSON *ac = cJSON_GetObjectItemCaseSensitive(g, "ac");
        char passed[32], n[32], pct[32];
        double s = jnum(ac, "share");
        if (isnan(s))
            snprintf(pct, sizeof pct, "-");
        else
            snprintf(pct, sizeof pct, "%.1f%%", 100 * s);
        table_row(&share, (const char *const[]){
            name, fmt_count(passed, sizeof passed, jnum(ac, "passed")),
            fmt_count(n, sizeof n, jnum(ac, "pairs")), pct});
    }
    bool ok = table_print(&head, stdout, 0);
    ok = table_print_section(&pairs, "compatibility (latest evaluation of each pair)", 2) && ok;
    ok = table_print_section(&share, "newer->older pairs that pass, per gallery", 2) && ok;
    rc = !ok ? fail(cmd, "out of memory") : is_ready ? 0 : 1;
out:
    table_finish(&share);
    table_finish(&pairs);
    table_finish(&head);
    cJSON_Delete(all);
    return rc;
}

int cd_status_main(int argc, char **argv)
{
    return listing_main("status", argc, argv, status_usage, status_list);
}

/* --- compatd adapter ---------------------------------------------------- */

static const char adapter_usage[] =
    "usage: compatd adapter fit --name N --from M1 --to M2 [--kind K] [--ridge R]\n"
    "                           (--gallery G | --pairs FROM.npy TO.npy) [--json]\n"
    "       compatd adapter list [--json]\n"
    "       compatd adapter show NAME [--weights]\n"
    "       compatd adapter delete NAME\n"
    "       compatd adapter route --gallery G --model M (--adapter A | --none)\n"
    "\n"
    "Adapters map model M1's embeddings into model M2's space, so that M1 can\n"
    "query a gallery of M2 without a backfill.  fit: on every item of gallery G\n"
    "with embeddings of both models, or on the pairs of two vector files (.npy,\n"
    ".fvecs or raw float32; row i of each is the same item), with kind\n"
    "orthogonal (the default for equal dims), linear (the default otherwise) or\n"
    "affine, and ridge R (default 0); prints the fit's mean cosine and its\n"
    "5-fold cross-validated one (POST /v1/adapters).  list: every adapter.\n"
    "show: one adapter as the server's JSON, with its weights and bias given\n"
    "--weights.  delete: removes it (refused while a gallery routes through\n"
    "it).  route: searches of gallery G by model M that name no adapter go\n"
    "through adapter A from then on, or, with --none, through none (PATCH\n"
    "/v1/galleries/G {\"adapters\": {\"M\": \"A\" | null}}).\n"
    "\n"
    "options:\n"
    "  --json              print the server's JSON\n"
    "\n" CONNECTION_HELP;

/* The pairs of two vector files as [{"from_b64", "to_b64"}]; NULL after
 * printing why. */
static cJSON *adapter_pairs(const char *cmd, cd_client *c, const char *from, const char *to,
                            const char *from_path, const char *to_path)
{
    cd_vecfile fv = {0}, tv = {0};
    cJSON *arr = NULL;
    size_t fdim = model_dim(cmd, c, from, NULL), tdim = fdim ? model_dim(cmd, c, to, NULL) : 0;
    if (!tdim || !load_vectors(cmd, from_path, NULL, 0, from, fdim, &fv) ||
        !load_vectors(cmd, to_path, NULL, 0, to, tdim, &tv))
        goto out;
    if (fv.n != tv.n) {
        fail(cmd, "%s has %zu vectors but %s has %zu: a pair is one row of each", from_path,
             fv.n, to_path, tv.n);
        goto out;
    }
    arr = cJSON_CreateArray();
    for (size_t i = 0; arr && i < fv.n; i++) {
        char *x = cd_b64_encode_floats(fv.data + i * fv.dim, fv.dim);
        char *y = cd_b64_encode_floats(tv.data + i * tv.dim, tv.dim);
        cJSON *pair = cJSON_CreateObject();
        bool ok = x && y && pair && cJSON_AddStringToObject(pair, "from_b64", x) &&
                  cJSON_AddStringToObject(pair, "to_b64", y);
        free(x);
        free(y);
        if (!ok || !cJSON_AddItemToArray(arr, pair)) {
            cJSON_Delete(pair);
            cJSON_Delete(arr);
            arr = NULL;
            fail(cmd, "out of memory");
        }
    }
out:
    cd_vecfile_finish(&fv);
    cd_vecfile_finish(&tv);
    return arr;
}

/* Prints one adapter's line of numbers. */
static void adapter_print(const cJSON *ad)
{
    char mean[32], cv[32], pairs[32];
    const cJSON *fit = cJSON_GetObjectItemCaseSensitive(ad, "fit");
    printf("adapter %s: %s -> %s, %s, %s pairs, mean cosine %s, cross-validated %s\n",
           jstr(ad, "name", "-"), jstr(ad, "from", "-"), jstr(ad, "to", "-"),
           jstr(ad, "kind", "-"), fmt_count(pairs, sizeof pairs, jnum(ad, "pairs")),
           fmt_real(mean, sizeof mean, jnum(fit, "mean_cosine")),
           fmt_real(cv, sizeof cv, jnum(fit, "cv_mean_cosine")));
}

static int adapter_fit(const char *cmd, int argc, char **argv)
{
    static const struct option options[] = {
        CONNECTION_OPTIONS,
        {"name", required_argument, NULL, OPT_NAME},
        {"from", required_argument, NULL, OPT_FROM},
        {"to", required_argument, NULL, OPT_TO},
        {"kind", required_argument, NULL, OPT_KIND},
        {"ridge", required_argument, NULL, OPT_RIDGE},
        {"gallery", required_argument, NULL, OPT_GALLERY},
        {"json", no_argument, NULL, OPT_JSON},
        {NULL, 0, NULL, 0},
    };
    /* --pairs takes two files: taken out of argv before getopt sees it. */
    const char *pairs[2] = {NULL, NULL};
    char **rest = calloc((size_t)argc + 1, sizeof *rest);
    if (!rest)
        return fail(cmd, "out of memory");
    int n = 0;
    for (int i = 0; i < argc; i++) {
        if (strcmp(argv[i], "--pairs") == 0 && i + 2 < argc && !pairs[0]) {
            pairs[0] = argv[++i];
            pairs[1] = argv[++i];
        } else if (strcmp(argv[i], "--pairs") == 0) {
            free(rest);
            fprintf(stderr, "compatd %s: --pairs takes two files, FROM and TO\n%s", cmd,
                    adapter_usage);
            return 2;
        } else {
            rest[n++] = argv[i];
        }
    }
    args a;
    int rc = parse_args(cmd, n, rest, options, adapter_usage, &a);
    free(rest);
    if (rc >= 0)
        return rc;
    const char *name = arg(&a, OPT_NAME), *from = arg(&a, OPT_FROM), *to = arg(&a, OPT_TO);
    const char *gallery = arg(&a, OPT_GALLERY), *ridge = arg(&a, OPT_RIDGE);
    if (!name || !from || !to || !gallery == !pairs[0]) {
        fprintf(stderr, "compatd %s: --name, --from, --to and one of --gallery and --pairs "
                "are required\n%s", cmd, adapter_usage);
        return 2;
    }
    char *end = NULL;
    double r = ridge ? strtod(ridge, &end) : 0;
    if (ridge && (end == ridge || *end || !isfinite(r) || r < 0)) {
        fprintf(stderr, "compatd %s: --ridge must be a number >= 0\n", cmd);
        return 2;
    }
    cd_client *c = connect_to(cmd, &a);
    cJSON *req = cJSON_CreateObject(), *reply = NULL;
    char *text = NULL;
    rc = 1;
    if (!c || !req)
        goto out;
    cJSON_AddStringToObject(req, "name", name);
    cJSON_AddStringToObject(req, "from", from);
    cJSON_AddStringToObject(req, "to", to);
    if (arg(&a, OPT_KIND))
        cJSON_AddStringToObject(req, "kind", arg(&a, OPT_KIND));
    if (ridge)
        cJSON_AddNumberToObject(req, "ridge", r);
    if (gallery) {
        cJSON_AddStringToObject(req, "gallery", gallery);
    } else {
        cJSON *p = adapter_pairs(cmd, c, from, to, pairs[0], pairs[1]);
        if (!p)
            goto out;
        cJSON_AddItemToObject(req, "pairs", p);
    }
    if (!call_with(cmd, c, "POST", "/v1/adapters", req, &reply, &text))
        goto out;
    if (arg(&a, OPT_JSON))
        print_json_text(text);
    else
        adapter_print(reply);
    rc = 0;
out:
    free(text);
    cJSON_Delete(reply);
    cJSON_Delete(req);
    cd_client_destroy(c);
    return rc;
}

static int adapter_route(const char *cmd, int argc, char **argv)
{
    static const struct option options[] = {
        CONNECTION_OPTIONS,
        {"gallery", required_argument, NULL, OPT_GALLERY},
        {"model", required_argument, NULL, OPT_MODEL},
        {"adapter", required_argument, NULL, OPT_ADAPTER},
        {"none", no_argument, NULL, OPT_NONE},
        {NULL, 0, NULL, 0},
    };
    args a;
    int rc = parse_args(cmd, argc, argv, options, adapter_usage, &a);
    if (rc >= 0)
        return rc;
    const char *gallery = arg(&a, OPT_GALLERY), *model = arg(&a, OPT_MODEL);
    const char *adapter = arg(&a, OPT_ADAPTER);
    if (!gallery || !model || !adapter == !arg(&a, OPT_NONE)) {
        fprintf(stderr, "compatd %s: --gallery, --model and one of --adapter and --none are "
                "required\n%s", cmd, adapter_usage);
        return 2;
    }
    /* {"adapters": {model: adapter or null}} */
    cJSON *req = cJSON_CreateObject(), *routes = cJSON_AddObjectToObject(req, "adapters");
    if (routes && adapter)
        cJSON_AddStringToObject(routes, model, adapter);
    else if (routes)
        cJSON_AddNullToObject(routes, model);
    cd_client *c = connect_to(cmd, &a);
    char *path = api_path("/v1/galleries/", gallery, NULL), *text = NULL;
    cJSON *reply = NULL;
    bool ok = c && call_with(cmd, c, "PATCH", path, routes ? req : NULL, &reply, &text);
    if (ok)
        printf("gallery %s: searches by model %s go through %s%s\n", gallery, model,
               adapter ? "adapter " : "no adapter", adapter ? adapter : "");
    free(path);
    free(text);
    cJSON_Delete(reply);
    cJSON_Delete(req);
    cd_client_destroy(c);
    return ok ? 0 : 1;
}

static int adapters_list(const char *cmd, cd_client *c, bool json)
{
    char *text = NULL;
    cJSON *j = get_json(cmd, c, api_path("/v1/adapters", NULL), &text);
    int rc = 1;
    if (j && json) {
        print_json_text(text);
        rc = 0;
    } else if (j) {
        table t;
        table_init(&t, 8, "lllllrrr",
                   (const char *const[]){"NAME", "FROM", "TO", "KIND", "CREATED", "PAIRS",
                                         "MEAN_COS", "CV_COS"});
        const cJSON *ad;
        cJSON_ArrayForEach(ad, cJSON_GetObjectItemCaseSensitive(j, "adapters")) {
            char pairs[32], mean[32], cv[32];
            const cJSON *fit = cJSON_GetObjectItemCaseSensitive(ad, "fit");
            table_row(&t, (const char *const[]){
                jstr(ad, "name", "-"), jstr(ad, "from", "-"), jstr(ad, "to", "-"),
                jstr(ad, "kind", "-"), jstr(ad, "created_at", "-"),
                fmt_count(pairs, sizeof pairs, jnum(ad, "pairs")),
                fmt_real(mean, sizeof mean, jnum(fit, "mean_cosine")),
                fmt_real(cv, sizeof cv, jnum(fit, "cv_mean_cosine"))});
        }
        rc = table_print(&t, stdout, 0) ? 0 : fail(cmd, "out of memory");
        table_finish(&t);
    }
    free(text);
    cJSON_Delete(j);
    return rc;
}

/* show NAME [--weights] and delete NAME (name NULL when not given);
 * argv holds the options. */
static int adapter_one(const char *cmd, bool show, const char *name, int argc, char **argv)
{
    static const struct option show_options[] = {
        CONNECTION_OPTIONS,
        {"weights", no_argument, NULL, OPT_WEIGHTS},
        {NULL, 0, NULL, 0},
    };
    static const struct option delete_options[] = {CONNECTION_OPTIONS, {NULL, 0, NULL, 0}};
    if (!name) {
        fprintf(stderr, "compatd %s: which adapter?\n%s", cmd, adapter_usage);
        return 2;
    }
    args a;
    int rc = parse_args(cmd, argc, argv, show ? show_options : delete_options, adapter_usage, &a);
    if (rc >= 0)
        return rc;
    cd_client *c = connect_to(cmd, &a);
    char *path = api_path("/v1/adapters/", name, arg(&a, OPT_WEIGHTS) ? "?weights=true" : "",
                          NULL);
    char *text = NULL;
    cJSON *j = NULL;
    rc = 1;
    if (c && !path)
        fail(cmd, "out of memory");
    else if (c && call(cmd, c, show ? "GET" : "DELETE", path, NULL, &j, &text))
        rc = 0;
    if (rc == 0 && show)
        print_json_text(text);
    else if (rc == 0)
        printf("deleted adapter %s\n", name);
    free(text);
    free(path);
    cJSON_Delete(j);
    cd_client_destroy(c);
    return rc;
}

/* Where the subcommand of a command with subcommands is: after the
 * options that may come first ("--url URL", or one of flags, which take
 * no value), at 1 when there are none. */
static int sub_at(int argc, char **argv, const char *const *flags)
{
    int i = 1;
    while (i < argc && argv[i][0] == '-') {
        bool flag = strchr(argv[i], '=') || strcmp(argv[i], "-h") == 0 ||
                    strcmp(argv[i], "--help") == 0;
        for (size_t f = 0; flags[f] && !flag; f++)
            flag = strcmp(argv[i], flags[f]) == 0;
        i += flag ? 1 : 2;
    }
    return i;
}

/* argv without its entries at..at+skip-1, NULL-terminated in a malloc'd
 * array (free()) of *n entries; NULL when out of memory. */
static char **argv_without(int argc, char **argv, int at, int skip, int *n)
{
    char **rest = calloc((size_t)argc + 1, sizeof *rest);
    *n = 0;
    for (int i = 0; rest && i < argc; i++)
        if (i < at || i >= at + skip)
            rest[(*n)++] = argv[i];
    return rest;
}

int cd_adapter_main(int argc, char **argv)
{
    int at = sub_at(argc, argv, (const char *const[]){"--json", "--weights", NULL});
    const char *sub = at < argc ? argv[at] : "";
    bool fit = strcmp(sub, "fit") == 0, list = strcmp(sub, "list") == 0;
    bool show = strcmp(sub, "show") == 0, del = strcmp(sub, "delete") == 0;
    bool route = strcmp(sub, "route") == 0;
    if (!fit && !list && !show && !del && !route) {
        for (int i = 1; i < argc; i++)
            if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
                fputs(adapter_usage, stdout);
                return 0;
            }
        fprintf(stderr, "compatd adapter: fit, list, show, delete or route?\n%s", adapter_usage);
        return 2;
    }
    /* show and delete name the adapter right after the subcommand. */
    const char *name = (show || del) && at + 1 < argc && argv[at + 1][0] != '-' ? argv[at + 1]
                                                                               : NULL;
    int n;
    char **rest = argv_without(argc, argv, at, name ? 2 : 1, &n);
    if (!rest)
        return fail("adapter", "out of memory");
    int rc;
    if (fit)
        rc = adapter_fit("adapter fit", n, rest);
    else if (route)
        rc = adapter_route("adapter route", n, rest);
    else if (list)
        rc = listing_main("adapter list", n, rest, adapter_usage, adapters_list);
    else
        rc = adapter_one(show ? "adapter show" : "adapter delete", show, name, n, rest);
    free(rest);
    return rc;
}

/* --- finishing an upgrade: backfill, promote, retire ------------------- */

static const char backfill_usage[] =
    "usage: compatd backfill --gallery G --model M --out FILE [--limit N] [--order O]\n"
    "\n"
    "Writes the ids of the gallery's items that have no embedding of model M yet,\n"
    "next first, one per line, for the job that embeds them; `compatd import\n"
    "--model M --ids FILE ...` then stores their vectors.  Run it again for the next\n"
    "ones: the items filled meanwhile are no longer listed.\n"
    "\n"
    "options:\n"
    "  --gallery G         the gallery\n"
    "  --model M           the model to backfill\n"
    "  --out FILE          where to write the ids (- for standard output)\n"
    "  --limit N           at most N ids (default: all)\n"
    "  --order O           traffic (default: the items searches return most, first)\n"
    "                      or id (insertion order)\n"
    CONNECTION_HELP;

/* Writes one page's ids to out; false (after saying so) for an id a line
 * cannot hold or a write that fails. */
static bool write_ids(const char *cmd, const cJSON *items, FILE *out, long *written)
{
    const cJSON *it;
    cJSON_ArrayForEach(it, items) {
        const cJSON *id = cJSON_GetObjectItemCaseSensitive(it, "id");
        if (!cJSON_IsString(id) || strpbrk(id->valuestring, "\r\n")) {
            fail(cmd, "item id %s cannot be written as one line",
                 cJSON_IsString(id) ? id->valuestring : "(none)");
            return false;
        }
        if (fprintf(out, "%s\n", id->valuestring) < 0) {
            fail(cmd, "cannot write: %s", strerror(errno));
            return false;
        }
        (*written)++;
    }
    return true;
}

int cd_backfill_main(int argc, char **argv)
{
    static const struct option options[] = {
        CONNECTION_OPTIONS,
        {"gallery", required_argument, NULL, OPT_GALLERY},
        {"model", required_argument, NULL, OPT_MODEL},
        {"out", required_argument, NULL, OPT_OUT},
        {"limit", required_argument, NULL, OPT_LIMIT},
        {"order", required_argument, NULL, OPT_ORDER},
        {NULL, 0, NULL, 0},
    };
    const char *cmd = "backfill";
    args a;
    int rc = parse_args(cmd, argc, argv, options, backfill_usage, &a);
    if (rc >= 0)
        return rc;
    const char *gallery = arg(&a, OPT_GALLERY), *model = arg(&a, OPT_MODEL);
    const char *out_name = arg(&a, OPT_OUT), *order = arg(&a, OPT_ORDER);
    long limit = LONG_MAX;
    if (!gallery || !model || !out_name) {
        fprintf(stderr, "compatd %s: --gallery, --model and --out are required\n%s", cmd,
                backfill_usage);
        return 2;
    }
    if (arg(&a, OPT_LIMIT) && !int_arg(cmd, "limit", arg(&a, OPT_LIMIT), 1, LONG_MAX, &limit))
        return 2;
    if (order && strcmp(order, "traffic") != 0 && strcmp(order, "id") != 0) {
        fprintf(stderr, "compatd %s: --order must be traffic or id\n%s", cmd, backfill_usage);
        return 2;
    }
    cd_client *c = connect_to(cmd, &a);
    if (!c)
        return 1;
    bool to_stdout = strcmp(out_name, "-") == 0;
    FILE *out = to_stdout ? stdout : fopen(out_name, "w");
    if (!out) {
        cd_client_destroy(c);
        return fail(cmd, "cannot write %s: %s", out_name, strerror(errno));
    }
    char *model_q = cd_client_escape(model), *cursor = NULL;
    long written = 0;
    double missing = 0, coverage = 0;
    bool ok = model_q != NULL;
    while (ok && written < limit) {
        long page = limit - written < 10000 ? limit - written : 10000;
        char *query = NULL;
        if (asprintf(&query, "/backfill?model=%s&limit=%ld%s%s%s%s", model_q, page,
                     order ? "&order=" : "", order ? order : "", cursor ? "&after=" : "",
                     cursor ? cursor : "") < 0)
            query = NULL;
        /* get_json frees the path and says when it is NULL */
        cJSON *j = get_json(cmd, c, query ? api_path("/v1/galleries/", gallery, query, NULL)
                                          : NULL, NULL);
        free(query);
        ok = j != NULL;
        if (ok) {
            missing = jnum(j, "missing");
            coverage = jnum(j, "coverage");
            ok = write_ids(cmd, cJSON_GetObjectItemCaseSensitive(j, "items"), out, &written);
            const cJSON *next = cJSON_GetObjectItemCaseSensitive(j, "next");
            free(cursor);
            cursor = cJSON_IsString(next) ? cd_client_escape(next->valuestring) : NULL;
        }
        cJSON_Delete(j);
        if (!cursor)
            break;
    }
    if ((!to_stdout && fclose(out) != 0) || (to_stdout && fflush(out) != 0))
        ok = ok && fail(cmd, "cannot write %s: %s", out_name, strerror(errno)) == 0;
    if (ok)
        fprintf(stderr, "%ld of %.0f items without %s embeddings written to %s (coverage %.1f%%)\n",
                written, missing, model, to_stdout ? "standard output" : out_name,
                coverage * 100);
    free(cursor);
    free(model_q);
    cd_client_destroy(c);
    return ok ? 0 : 1;
}

static const char promote_usage[] =
    "usage: compatd promote --gallery G --model M\n"
    "\n"
    "Makes model M the gallery model of G, once every item has an M embedding\n"
    "(`compatd backfill` lists those that do not).  The former gallery model stays\n"
    "a query model, unverified until evaluated against M.\n"
    "\n"
    "options:\n"
    "  --gallery G         the gallery\n"
    "  --model M           the model to promote\n"
    CONNECTION_HELP;

static const char retire_usage[] =
    "usage: compatd retire --gallery G --model M\n"
    "\n"
    "Deletes model M's embeddings from gallery G, its index and snapshots, and gives\n"
    "the disk space back.  Refused for the gallery model (promote another first)\n"
    "and while an adapter route of the gallery needs M.\n"
    "\n"
    "options:\n"
    "  --gallery G         the gallery\n"
    "  --model M           the model to retire\n"
    CONNECTION_HELP;

/* promote (POST .../promote) or retire (DELETE .../embeddings/M). */
static int lifecycle_main(const char *cmd, bool promote, int argc, char **argv)
{
    static const struct option options[] = {
        CONNECTION_OPTIONS,
        {"gallery", required_argument, NULL, OPT_GALLERY},
        {"model", required_argument, NULL, OPT_MODEL},
        {NULL, 0, NULL, 0},
    };
    const char *usage = promote ? promote_usage : retire_usage;
    args a;
    int rc = parse_args(cmd, argc, argv, options, usage, &a);
    if (rc >= 0)
        return rc;
    const char *gallery = arg(&a, OPT_GALLERY), *model = arg(&a, OPT_MODEL);
    if (!gallery || !model) {
        fprintf(stderr, "compatd %s: --gallery and --model are required\n%s", cmd, usage);
        return 2;
    }
    cd_client *c = connect_to(cmd, &a);
    if (!c)
        return 1;
    char *path = promote ? api_path("/v1/galleries/", gallery, "/promote", NULL)
                         : api_path("/v1/galleries/", gallery, "/embeddings/", model, NULL);
    cJSON *body = cJSON_CreateObject();
    char *text = body && cJSON_AddStringToObject(body, "model", model)
                     ? cJSON_PrintUnformatted(body) : NULL;
    cJSON *j = NULL;
    rc = 1;
    if (!path || !text)
        fail(cmd, "out of memory");
    else if (call(cmd, c, promote ? "POST" : "DELETE", path, promote ? text : NULL, &j, NULL))
        rc = 0;
    if (rc == 0 && promote)
        printf("gallery %s: %s is the gallery model\n", gallery, jstr(j, "model", "?"));
    else if (rc == 0)
        printf("gallery %s: %.0f embeddings of %s retired\n", gallery, jnum(j, "deleted"), model);
    cJSON_Delete(j);
    cJSON_Delete(body);
    free(text);
    free(path);
    cd_client_destroy(c);
    return rc;
}

int cd_promote_main(int argc, char **argv)
{
    return lifecycle_main("promote", true, argc, argv);
}

int cd_retire_main(int argc, char **argv)
{
    return lifecycle_main("retire", false, argc, argv);
}

/* --- compatd items list|delete ------------------------------------------- */

#define LIST_PAGE_MAX 1000      /* the server's largest page */
#define DEFAULT_LIST 100

static const char items_usage[] =
    "usage: compatd items list --gallery G [--limit N | --all] [--json] [--filter JSON]\n"
    "       compatd items delete --gallery G (--ids FILE [--batch N] | --filter JSON)\n"
    "\n"
    "list prints the gallery's items in id order, one a line: id, label (\"-\"\n"
    "when none) and the models it has embeddings of, tab-separated; --json\n"
    "prints each item as one line of the server's JSON instead.  It follows the\n"
    "listing's cursors (GET /v1/galleries/{g}/items), so an item stored for the\n"
    "whole run is printed exactly once whatever is written meanwhile.\n"
    "\n"
    "delete deletes the items whose ids FILE holds, one a line (POST\n"
    "/v1/galleries/{g}/items/delete), in batches; each batch is atomic, and ids\n"
    "not in the gallery are not errors.  Prints how many were deleted.\n"
    "\n"
    "--filter takes a filter as the API does (e.g. '{\"metadata.album\": \"x\"}'):\n"
    "list prints only the items it matches; delete deletes every item it matches,\n"
    "in one atomic request.\n"
    "\n"
    "options:\n"
    "  --gallery G         the gallery\n"
    "  --limit N           list at most N items (default 100)\n"
    "  --all               list every item\n"
    "  --json              list as JSON lines\n"
    "  --ids FILE          the ids to delete, one a line\n"
    "  --batch N           ids per delete request (default 10000)\n"
    "  --filter JSON       only the items this filter matches\n"
    "\n" CONNECTION_HELP;

static const struct option items_options[] = {
    CONNECTION_OPTIONS,
    {"gallery", required_argument, NULL, OPT_GALLERY},
    {"limit", required_argument, NULL, OPT_LIMIT},
    {"all", no_argument, NULL, OPT_ALL},
    {"json", no_argument, NULL, OPT_JSON},
    {"ids", required_argument, NULL, OPT_IDS},
    {"batch", required_argument, NULL, OPT_BATCH},
    {"filter", required_argument, NULL, OPT_FILTER},
    {NULL, 0, NULL, 0},
};

/* --filter's JSON, parsed (the server checks what it says); NULL after
 * saying so when it is not JSON. */
static cJSON *filter_arg(const char *cmd, const char *text)
{
    cJSON *f = cJSON_Parse(text);
    if (!f)
        fprintf(stderr, "compatd %s: --filter must be JSON, not \"%s\"\n", cmd, text);
    return f;
}

/* Prints one listed item: JSON, or id, label and models tab-separated. */
static void item_line(const cJSON *it, bool json)
{
    if (json) {
        char *text = cJSON_PrintUnformatted(it);
        if (text)
            puts(text);
        free(text);
        return;
    }
    printf("%s\t%s\t", jstr(it, "id", "-"), jstr(it, "label", "-"));
    const cJSON *m;
    int i = 0;
    cJSON_ArrayForEach(m, cJSON_GetObjectItemCaseSensitive(it, "models"))
        printf("%s%s", i++ ? "," : "", cJSON_IsString(m) ? m->valuestring : "?");
    putchar('\n');
}

static int items_list(const char *cmd, cd_client *c, const args *a)
{
    const char *gallery = arg(a, OPT_GALLERY);
    bool all = arg(a, OPT_ALL) != NULL, json = arg(a, OPT_JSON) != NULL;
    long want = DEFAULT_LIST;
    if (all && arg(a, OPT_LIMIT))
        return fail(cmd, "give --limit or --all, not both"), 2;
    if (arg(a, OPT_LIMIT) && !int_arg(cmd, "limit", arg(a, OPT_LIMIT), 1, LONG_MAX, &want))
        return 2;
    char *filter_q = NULL;
    if (arg(a, OPT_FILTER)) {
        cJSON *f = filter_arg(cmd, arg(a, OPT_FILTER));
        filter_q = f ? cJSON_PrintUnformatted(f) : NULL;    /* api_path escapes it */
        cJSON_Delete(f);
        if (!filter_q)
            return 2;
    }
    char *cursor = NULL;
    long printed = 0;
    int rc = 0;
    do {
        long left = want - printed;
        char page[32];
        snprintf(page, sizeof page, "%ld", all || left > LIST_PAGE_MAX ? LIST_PAGE_MAX : left);
        /* api_path stops at the first NULL, so the filter, there or not
         * alike on every page, goes before the cursor. */
        cJSON *j = get_json(cmd, c, api_path("/v1/galleries/", gallery, "/items?limit=", page,
                                             filter_q ? "&filter=" : "", filter_q ? filter_q : "",
                                             cursor ? "&after=" : NULL, cursor, NULL),
                            NULL);
        free(cursor);
        cursor = NULL;
        if (!j) {
            rc = 1;
            break;
        }
        const cJSON *it;
        cJSON_ArrayForEach(it, cJSON_GetObjectItemCaseSensitive(j, "items")) {
            item_line(it, json);
            printed++;
        }
        const char *next = jstr(j, "next", NULL);
        if (next && !(cursor = strdup(next)))
            rc = fail(cmd, "out of memory");
        cJSON_Delete(j);
    } while (cursor && (all || printed < want));
    free(cursor);
    free(filter_q);
    if (fflush(stdout) != 0)
        rc = fail(cmd, "writing the listing: %s", strerror(errno));
    return rc;
}

/* Deletes every item of gallery that filter matches, in one request. */
static int items_delete_filter(const char *cmd, cd_client *c, const char *gallery,
                               const char *filter)
{
    cJSON *f = filter_arg(cmd, filter);
    if (!f)
        return 2;
    cJSON *body = cJSON_CreateObject();
    char *text = NULL, *path = api_path("/v1/galleries/", gallery, "/items/delete", NULL);
    if (body && cJSON_AddItemToObject(body, "filter", f))
        text = cJSON_PrintUnformatted(body);
    else
        cJSON_Delete(f);
    cJSON_Delete(body);
    cJSON *reply = NULL;
    int rc = 0;
    if (!text || !path)
        rc = fail(cmd, "out of memory");
    else if (!call(cmd, c, "POST", path, text, &reply, NULL))
        rc = 1;
    else
        printf("items delete: %.0f items matched the filter and were deleted from gallery %s\n",
               jnum(reply, "deleted"), gallery);
    cJSON_Delete(reply);
    free(text);
    free(path);
    return rc;
}

static int items_delete(const char *cmd, cd_client *c, const args *a)
{
    const char *gallery = arg(a, OPT_GALLERY), *file = arg(a, OPT_IDS);
    long batch = DEFAULT_BATCH;
    if (!file == !arg(a, OPT_FILTER))
        return fail(cmd, "give --ids FILE or --filter JSON\n%s", items_usage), 2;
    if (!file)
        return items_delete_filter(cmd, c, gallery, arg(a, OPT_FILTER));
    if (arg(a, OPT_BATCH) && !int_arg(cmd, "batch", arg(a, OPT_BATCH), 1, MAX_BATCH, &batch))
        return 2;
    cd_lines ids;
    cd_error err;
    if (cd_lines_load(file, CD_LINES_ANY, CD_ITEM_ID_MAX, &ids, &err) != CD_OK)
        return fail(cmd, "%s", err.message);
    char *path = api_path("/v1/galleries/", gallery, "/items/delete", NULL);
    double deleted = 0;
    int rc = path ? 0 : fail(cmd, "out of memory");
    for (size_t from = 0; rc == 0 && from < ids.n; from += (size_t)batch) {
        size_t to = from + (size_t)batch < ids.n ? from + (size_t)batch : ids.n;
        cJSON *body = cJSON_CreateObject();
        cJSON *arr = body ? cJSON_AddArrayToObject(body, "ids") : NULL;
        for (size_t i = from; arr && i < to; i++)
            cJSON_AddItemToArray(arr, cJSON_CreateString(ids.lines[i]));
        char *text = arr ? cJSON_PrintUnformatted(body) : NULL;
        cJSON_Delete(body);
        cJSON *reply = NULL;
        if (!text)
            rc = fail(cmd, "out of memory");
        else if (!call(cmd, c, "POST", path, text, &reply, NULL))
            rc = 1;
        else
            deleted += jnum(reply, "deleted");
        cJSON_Delete(reply);
        free(text);
        if (rc != 0 && from > 0)
            fprintf(stderr, "compatd %s: the first %zu ids were handled (%.0f deleted)\n",
                    cmd, from, deleted);
    }
    if (rc == 0)
        printf("items delete: %.0f of %zu ids deleted from gallery %s\n", deleted, ids.n,
               gallery);
    free(path);
    cd_lines_finish(&ids);
    return rc;
}

int cd_items_main(int argc, char **argv)
{
    int at = sub_at(argc, argv, (const char *const[]){"--json", "--all", NULL});
    const char *sub = at < argc ? argv[at] : "";
    bool list = strcmp(sub, "list") == 0, del = strcmp(sub, "delete") == 0;
    if (!list && !del) {
        for (int i = 1; i < argc; i++)
            if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
                fputs(items_usage, stdout);
                return 0;
            }
        fprintf(stderr, "compatd items: list or delete?\n%s", items_usage);
        return 2;
    }
    const char *cmd = list ? "items list" : "items delete";
    int n;
    char **rest = argv_without(argc, argv, at, 1, &n);
    if (!rest)
        return fail(cmd, "out of memory");
    args a;
    int rc = parse_args(cmd, n, rest, items_options, items_usage, &a);
    free(rest);
    if (rc >= 0)
        return rc;
    if (!arg(&a, OPT_GALLERY)) {
        fprintf(stderr, "compatd %s: --gallery G is required\n%s", cmd, items_usage);
        return 2;
    }
    cd_client *c = connect_to(cmd, &a);
    rc = !c ? 1 : list ? items_list(cmd, c, &a) : items_delete(cmd, c, &a);
    cd_client_destroy(c);
    return rc;
}
