/*
 * test_cli.c - the operator command line (`compatd import`, `eval`,
 * `models`, `galleries`, `status`) against the real daemon.
 *
 * Every command runs as a child process (td_run_compatd_split,
 * td_compatd_spawn) with its stdout and stderr apart, aimed at a daemon on
 * 127.0.0.1:0 with --url.  What a command claims is checked over HTTP
 * with the harness's own client: every imported item is fetched with its
 * vectors and compared bit for bit with the floats this file wrote (the
 * files are written here, byte by byte, not by the code under test), and
 * the numbers an `eval` table shows are read back and compared with the
 * stored report.
 *
 * Cases, in order: --help and bad command lines; import of each file
 * format; bad files (one line on stderr, exit 1, nothing stored); progress
 * as plain lines and as a bar on a pseudo-terminal; resuming, after an
 * import of a prefix of the files and after kill -9 of the command
 * mid-import; eval (table, --json, --show) and its bad files; the
 * listings; an unreachable server and a bad URL; https with --cacert and
 * COMPATD_CACERT (a second daemon); and last (they lock the
 * daemon) API keys: --key, COMPATD_KEY, a missing or unknown key, a key
 * whose scope is too small.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "check.h"
#include "daemon.h"

#define DIM 8
#define MAX_ARGV 40

/* What every case needs: the daemon, a client, the URL the CLI gets. */
typedef struct ctx {
    td_daemon *d;
    td_http *h;
    char url[64];
    td_rng rng;
} ctx;

/* A set of items as the test files hold them. */
typedef struct dataset {
    size_t n, dim;
    float *v;           /* n x dim */
    char **ids;         /* n */
    char **labels;      /* n, or NULL */
} dataset;

/* --- files ------------------------------------------------------------- */

static char *path_in(const ctx *c, const char *name)
{
    return td_fmt("%s/%s", td_daemon_dir(c->d), name);
}

static void put_le32(FILE *f, uint32_t u)
{
    unsigned char b[4] = {(unsigned char)u, (unsigned char)(u >> 8), (unsigned char)(u >> 16),
                          (unsigned char)(u >> 24)};
    REQUIRE(fwrite(b, 1, 4, f) == 4);
}

static void put_f32(FILE *f, float x)
{
    uint32_t u;
    memcpy(&u, &x, 4);
    put_le32(f, u);
}

static void put_f64(FILE *f, double x)
{
    uint64_t u;
    memcpy(&u, &x, 8);
    put_le32(f, (uint32_t)u);
    put_le32(f, (uint32_t)(u >> 32));
}

/*
 * A .npy 1.0 file of s's vectors with dtype descr ("<f4" or "<f8"), in
 * C order or (claimed) Fortran order, shape (n, dim), dropping the last
 * cut bytes of the data.
 */
static void write_npy(const char *path, const dataset *s, const char *descr, bool fortran,
                      size_t cut)
{
    char header[256];
    int len = snprintf(header, sizeof header,
                       "{'descr': '%s', 'fortran_order': %s, 'shape': (%zu, %zu), }", descr,
                       fortran ? "True" : "False", s->n, s->dim);
    /* Pad magic (6) + version (2) + length (2) + header + '\n' to 64. */
    while ((10 + len + 1) % 64)
        header[len++] = ' ';
    header[len++] = '\n';
    char *tmp = td_fmt("%s.tmp", path);
    FILE *f = fopen(tmp, "wb");
    REQUIRE(f);
    REQUIRE(fwrite("\x93NUMPY\x01\x00", 1, 8, f) == 8);
    unsigned char hl[2] = {(unsigned char)len, (unsigned char)(len >> 8)};
    REQUIRE(fwrite(hl, 1, 2, f) == 2);
    REQUIRE(fwrite(header, 1, (size_t)len, f) == (size_t)len);
    for (size_t i = 0; i < s->n * s->dim; i++) {
        if (strcmp(descr, "<f8") == 0)
            put_f64(f, s->v[i]);
        else
            put_f32(f, s->v[i]);
    }
    long size = ftell(f);
    REQUIRE(fclose(f) == 0);
    REQUIRE(truncate(tmp, size - (long)cut) == 0);
    REQUIRE(rename(tmp, path) == 0);
    free(tmp);
}

static void write_fvecs(const char *path, const dataset *s)
{
    FILE *f = fopen(path, "wb");
    REQUIRE(f);
    for (size_t i = 0; i < s->n; i++) {
        put_le32(f, (uint32_t)s->dim);
        for (size_t j = 0; j < s->dim; j++)
            put_f32(f, s->v[i * s->dim + j]);
    }
    REQUIRE(fclose(f) == 0);
}

static void write_raw(const char *path, const dataset *s)
{
    FILE *f = fopen(path, "wb");
    REQUIRE(f);
    for (size_t i = 0; i < s->n * s->dim; i++)
        put_f32(f, s->v[i]);
    REQUIRE(fclose(f) == 0);
}

/* The first n of lines, one per line. */
static void write_lines(const char *path, char *const *lines, size_t n)
{
    FILE *f = fopen(path, "wb");
    REQUIRE(f);
    for (size_t i = 0; i < n; i++)
        fprintf(f, "%s\n", lines[i]);
    REQUIRE(fclose(f) == 0);
}

/* n random items; ids hold '/', spaces and UTF-8; prefix tells sets apart. */
static void make_dataset(ctx *c, dataset *s, const char *prefix, size_t n, size_t dim,
                         bool labels)
{
    *s = (dataset){.n = n, .dim = dim};
    s->v = malloc(n * dim * sizeof *s->v);
    s->ids = calloc(n, sizeof *s->ids);
    s->labels = labels ? calloc(n, sizeof *s->labels) : NULL;
    REQUIRE(s->v && s->ids && (!labels || s->labels));
    for (size_t i = 0; i < n * dim; i++)
        s->v[i] = (float)td_rng_gauss(&c->rng);
    for (size_t i = 0; i < n; i++) {
        s->ids[i] = td_fmt("%s/%zu é x", prefix, i);
        if (labels)
            s->labels[i] = td_fmt("L%zu", i % 7);
    }
}

static void dataset_finish(dataset *s)
{
    for (size_t i = 0; i < s->n; i++) {
        free(s->ids[i]);
        if (s->labels)
            free(s->labels[i]);
    }
    free(s->ids);
    free(s->labels);
    free(s->v);
    memset(s, 0, sizeof *s);
}

/* --- running the command line ----------------------------------------- */

/* argv for a command: args[0], then --url (unless url is NULL), then the
 * rest of args. */
static void build_argv(const char **argv, const char *url, const char *const *args)
{
    size_t n = 0;
    argv[n++] = args[0];
    if (url) {
        argv[n++] = "--url";
        argv[n++] = url;
    }
    for (size_t i = 1; args[i]; i++) {
        REQUIRE(n < MAX_ARGV - 1);
        argv[n++] = args[i];
    }
    argv[n] = NULL;
}

/* Runs compatd args (with --url of c's daemon); stdout and stderr in
 * *out and *err (free()). */
static int cli(const ctx *c, char **out, char **err, const char *const *args)
{
    const char *argv[MAX_ARGV];
    build_argv(argv, c->url, args);
    return td_run_compatd_split(argv, out, err);
}

static size_t count_char(const char *s, char ch)
{
    size_t n = 0;
    for (; *s; s++)
        n += *s == ch;
    return n;
}

/* err is exactly one line starting "compatd <cmd>: " and holding want. */
static void check_one_line(const char *err, const char *cmd, const char *want, const char *what)
{
    char *prefix = td_fmt("compatd %s: ", cmd);
    size_t len = strlen(err);
    bool ok = len > 0 && err[len - 1] == '\n' && count_char(err, '\n') == 1 &&
              strncmp(err, prefix, strlen(prefix)) == 0 && (!want || strstr(err, want));
    if (!ok)
        CHECK_FAILED_("%s: stderr should be one line \"%s...%s...\", got \"%s\"", what, prefix,
                      want ? want : "", err);
    check_count++;
    free(prefix);
}

/* --- checks over HTTP --------------------------------------------------- */

/* Percent-encoding of an id, written here apart from client.c's. */
static char *escape(const char *s)
{
    td_text t = {0};
    td_text_append(&t, "%s", "");
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9'))
            td_text_append(&t, "%c", *p);
        else
            td_text_append(&t, "%%%02x", *p);
    }
    return t.s;
}

/* Every item of s is in gallery, with model's vector exactly and its
 * label (when s has labels). */
static void check_stored(const ctx *c, const char *gallery, const char *model, const dataset *s,
                         const char *what)
{
    size_t bad = 0;
    for (size_t i = 0; i < s->n && bad < 5; i++) {
        char *id = escape(s->ids[i]);
        char *path = td_fmt("/v1/galleries/%s/items/%s?vectors=true", gallery, id);
        td_reply r;
        long st = td_http_json(c->h, "GET", path, NULL, &r);
        char *vkey = td_fmt("vectors.%s", model);
        const cJSON *vec = td_json_at(r.json, vkey);
        bool ok = st == 200 && cJSON_GetArraySize(vec) == (int)s->dim;
        for (size_t j = 0; ok && j < s->dim; j++) {
            const cJSON *x = cJSON_GetArrayItem(vec, (int)j);
            ok = cJSON_IsNumber(x) && (float)x->valuedouble == s->v[i * s->dim + j];
        }
        if (ok && s->labels)
            ok = td_json_str(r.json, "label") && strcmp(td_json_str(r.json, "label"),
                                                        s->labels[i]) == 0;
        if (!ok) {
            bad++;
            CHECK_FAILED_("%s: item %zu (\"%s\") is not stored as written: %ld %s", what, i,
                          s->ids[i], st, r.body);
        }
        check_count++;
        free(vkey);
        td_reply_finish(&r);
        free(path);
        free(id);
    }
}

static void create_model(const ctx *c, const char *name, int dim, const char *compat)
{
    td_reply r;
    if (compat)
        td_http_jsonf(c->h, &r, "POST", "/v1/models",
                      "{\"name\":\"%s\",\"dim\":%d,\"metric\":\"ip\",\"compatible_with\":\"%s\"}",
                      name, dim, compat);
    else
        td_http_jsonf(c->h, &r, "POST", "/v1/models",
                      "{\"name\":\"%s\",\"dim\":%d,\"metric\":\"ip\"}", name, dim);
    REQUIRE(r.status == 201);
    td_reply_finish(&r);
}

static void create_gallery(const ctx *c, const char *name, const char *model)
{
    td_reply r;
    td_http_jsonf(c->h, &r, "POST", "/v1/galleries", "{\"name\":\"%s\",\"model\":\"%s\"}", name,
                  model);
    REQUIRE(r.status == 201);
    td_reply_finish(&r);
}

static cJSON *get_json(const ctx *c, const char *path)
{
    td_reply r;
    td_http_json(c->h, "GET", path, NULL, &r);
    if (r.status != 200)
        CHECK_FAILED_("GET %s: %ld %s", path, r.status, r.body);
    cJSON *j = r.json;
    r.json = NULL;
    td_reply_finish(&r);
    return j;
}

/* The summary line's numbers: "N sent in B batch(es), S skipped (K batch". */
static bool parse_summary(const char *out, size_t *sent, size_t *batches, size_t *skipped,
                          size_t *skipped_batches)
{
    const char *p = strstr(out, ": ");
    p = p ? strstr(p + 2, ": ") : NULL;
    const char *q = p ? strstr(p, ", ") : NULL;
    return q && sscanf(p, ": %zu sent in %zu batch", sent, batches) == 2 &&
           sscanf(q, ", %zu skipped (%zu batch", skipped, skipped_batches) == 2;
}

/* --- cases --------------------------------------------------------------- */

static void test_help(ctx *c)
{
    static const struct {
        const char *argv[5];
        int want;
        const char *out;        /* stdout starts with it (rc 0) */
        const char *err;        /* stderr holds it (rc 2) */
    } cases[] = {
        {{"import", "--help"}, 0, "usage: compatd import --gallery G", NULL},
        {{"eval", "--help"}, 0, "usage: compatd eval --gallery G", NULL},
        {{"eval", "-h"}, 0, "usage: compatd eval", NULL},
        {{"models", "--help"}, 0, "usage: compatd models", NULL},
        {{"galleries", "--help"}, 0, "usage: compatd galleries", NULL},
        {{"status", "--help"}, 0, "usage: compatd status", NULL},
        {{"import", "--gallery", "g"}, 2, NULL, "are required"},
        {{"eval", "--show", "x"}, 2, NULL, "--show must be an integer"},
        {{"import", "--no-such-option"}, 2, NULL, "usage: compatd import"},
        {{"models", "extra"}, 2, NULL, "unexpected argument \"extra\""},
        {{"status", "--json", "--batch", "3"}, 2, NULL, "usage: compatd status"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *out, *err;
        int rc = cli(c, &out, &err, cases[i].argv);
        if (rc != cases[i].want)
            CHECK_FAILED_("%s %s: exit %d, want %d: %s%s", cases[i].argv[0], cases[i].argv[1],
                          rc, cases[i].want, out, err);
        check_count++;
        if (cases[i].out)
            CHECK(strncmp(out, cases[i].out, strlen(cases[i].out)) == 0);
        if (cases[i].err && !strstr(err, cases[i].err))
            CHECK_FAILED_("%s: stderr lacks \"%s\": %s", cases[i].argv[0], cases[i].err, err);
        free(out);
        free(err);
    }
}

/* Each format into a gallery of its own, checked item by item. */
static void test_formats(ctx *c)
{
    enum { NPY, FVECS, RAW };
    static const struct {
        const char *file;
        int format;
        const char *opt[3];     /* extra options */
        size_t n, batch;
    } cases[] = {
        {"v.npy", NPY, {NULL}, 50, 16},
        {"v.fvecs", FVECS, {NULL}, 50, 7},
        {"v.f32", RAW, {NULL}, 33, 100},
        {"v.dat", RAW, {"--format", "raw"}, 20, 3},
        {"v.bin", RAW, {"--dim", "8"}, 17, 16},
        {"v.vectors", NPY, {"--format", "npy"}, 5, 1},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        dataset s;
        char *gallery = td_fmt("fmt-%zu", i), *prefix = td_fmt("f%zu", i);
        make_dataset(c, &s, prefix, cases[i].n, DIM, i % 2 == 0);
        create_gallery(c, gallery, "m8");
        char *vec = path_in(c, cases[i].file), *ids = path_in(c, "fmt-ids.txt");
        char *labels = path_in(c, "fmt-labels.txt"), *batch = td_fmt("%zu", cases[i].batch);
        if (cases[i].format == NPY)
            write_npy(vec, &s, "<f4", false, 0);
        else if (cases[i].format == FVECS)
            write_fvecs(vec, &s);
        else
            write_raw(vec, &s);
        write_lines(ids, s.ids, s.n);
        if (s.labels)
            write_lines(labels, s.labels, s.n);
        const char *argv[MAX_ARGV] = {"import", "--gallery", gallery, "--model", "m8",
                                      "--vectors", vec, "--ids", ids, "--batch", batch};
        size_t n = 11;
        if (s.labels) {
            argv[n++] = "--labels";
            argv[n++] = labels;
        }
        for (size_t o = 0; o < 2 && cases[i].opt[o]; o++)
            argv[n++] = cases[i].opt[o];
        argv[n] = NULL;
        char *out, *err;
        int rc = cli(c, &out, &err, argv);
        if (rc != 0)
            CHECK_FAILED_("import %s: exit %d: %s", cases[i].file, rc, err);
        check_count++;
        size_t sent = 0, batches = 0, skipped = 1, skipped_batches = 1;
        CHECK(parse_summary(out, &sent, &batches, &skipped, &skipped_batches));
        CHECK_EQ(sent, s.n);
        CHECK_EQ(batches, (s.n + cases[i].batch - 1) / cases[i].batch);
        CHECK_EQ(skipped, 0);
        CHECK_EQ(td_gallery_count(c->h, gallery), s.n);
        check_stored(c, gallery, "m8", &s, cases[i].file);
        free(out);
        free(err);
        free(batch);
        free(labels);
        free(ids);
        free(vec);
        free(prefix);
        free(gallery);
        dataset_finish(&s);
    }
}

/* Bad files: one line on stderr naming the file, exit 1, nothing stored. */
static void test_bad_files(ctx *c)
{
    enum bad { TRUNCATED, F8, FORTRAN, DIM16, FEW_IDS, MANY_LABELS, RAW_ODD, EMPTY_ID,
               NO_FILE, NO_MODEL, NO_GALLERY, RAW_DIM };
    static const struct {
        enum bad bad;
        const char *culprit;    /* the file the message names */
        const char *want;       /* and what it says */
    } cases[] = {
        {TRUNCATED, "bad.npy", "bad.npy: "},
        {F8, "bad.npy", "<f8"},
        {FORTRAN, "bad.npy", "ortran"},
        {DIM16, "bad.npy", "dim 16"},
        {FEW_IDS, "bad-ids.txt", "9 lines, expected 10"},
        {MANY_LABELS, "bad-labels.txt", "11 lines, expected 10"},
        {RAW_ODD, "bad.f32", "bad.f32: "},
        {EMPTY_ID, "bad-ids.txt", "line 4 is empty"},
        {NO_FILE, "no-such.npy", "no-such.npy: "},
        {NO_MODEL, NULL, "model no-such-model not found"},
        {NO_GALLERY, NULL, "gallery no-such-gallery not found"},
        {RAW_DIM, "bad.f32", "--dim 4 differs"},
    };
    create_gallery(c, "bad", "m8");
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        enum bad b = cases[i].bad;
        dataset s, s16;
        make_dataset(c, &s, "bad", 10, DIM, true);
        make_dataset(c, &s16, "bad", 10, 16, false);
        char *npy = path_in(c, "bad.npy"), *raw = path_in(c, "bad.f32");
        char *ids = path_in(c, "bad-ids.txt"), *labels = path_in(c, "bad-labels.txt");
        char *missing = path_in(c, "no-such.npy");
        write_npy(npy, b == DIM16 ? &s16 : &s, b == F8 ? "<f8" : "<f4", b == FORTRAN,
                  b == TRUNCATED ? 6 : 0);
        write_raw(raw, &s);
        if (b == RAW_ODD)
            REQUIRE(truncate(raw, (long)(s.n * DIM * 4 - 4)) == 0);
        if (b == EMPTY_ID) {
            free(s.ids[3]);
            s.ids[3] = td_fmt("%s", "");
        }
        write_lines(ids, s.ids, b == FEW_IDS ? 9 : 10);
        write_lines(labels, s.labels, 10);
        if (b == MANY_LABELS) {
            FILE *f = fopen(labels, "a");
            REQUIRE(f && fputs("extra\n", f) >= 0 && fclose(f) == 0);
        }
        const char *vec = b == RAW_ODD || b == RAW_DIM ? raw : b == NO_FILE ? missing : npy;
        const char *argv[] = {"import", "--gallery", b == NO_GALLERY ? "no-such-gallery" : "bad",
                              "--model", b == NO_MODEL ? "no-such-model" : "m8",
                              "--vectors", vec, "--ids", ids, "--labels", labels,
                              b == RAW_DIM ? "--dim" : NULL, "4", NULL};
        char *out, *err;
        int rc = cli(c, &out, &err, argv);
        char *what = td_fmt("bad case %zu (%s)", i, cases[i].want);
        if (rc != 1)
            CHECK_FAILED_("%s: exit %d, want 1", what, rc);
        check_count++;
        check_one_line(err, "import", cases[i].want, what);
        if (cases[i].culprit && !strstr(err, cases[i].culprit))
            CHECK_FAILED_("%s: the message does not name %s: %s", what, cases[i].culprit, err);
        CHECK_STREQ(out, "");
        CHECK_EQ(td_gallery_count(c->h, "bad"), 0);
        free(what);
        free(out);
        free(err);
        free(missing);
        free(labels);
        free(ids);
        free(raw);
        free(npy);
        dataset_finish(&s16);
        dataset_finish(&s);
    }
}

/* Writes s as name.npy, name-ids.txt, name-labels.txt (the first n). */
static void write_set(const ctx *c, const char *name, const dataset *s, size_t n, char **vec,
                      char **ids, char **labels)
{
    dataset part = *s;
    part.n = n;
    *vec = td_fmt("%s/%s.npy", td_daemon_dir(c->d), name);
    *ids = td_fmt("%s/%s-ids.txt", td_daemon_dir(c->d), name);
    *labels = td_fmt("%s/%s-labels.txt", td_daemon_dir(c->d), name);
    write_npy(*vec, &part, "<f4", false, 0);
    write_lines(*ids, s->ids, n);
    write_lines(*labels, s->labels, n);
}

static void test_progress(ctx *c)
{
    dataset s;
    char *vec, *ids, *labels;
    make_dataset(c, &s, "p", 2000, DIM, true);
    write_set(c, "progress", &s, s.n, &vec, &ids, &labels);
    static const struct {
        const char *gallery;
        bool tty, quiet;
    } cases[] = {
        {"progress-lines", false, false},
        {"progress-bar", true, false},
        {"progress-quiet", false, true},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        create_gallery(c, cases[i].gallery, "m8");
        const char *args[] = {"import", "--gallery", cases[i].gallery, "--model", "m8",
                              "--vectors", vec, "--ids", ids, "--labels", labels, "--batch",
                              "100", cases[i].quiet ? "--quiet" : NULL, NULL};
        const char *argv[MAX_ARGV];
        build_argv(argv, c->url, args);
        td_proc p;
        char *out = NULL, *err = NULL;
        REQUIRE(td_compatd_spawn(argv, cases[i].tty, &p));
        CHECK_EQ(td_compatd_wait(&p, &out, &err), 0);
        CHECK(strncmp(out, "import: 2000 items of model m8 into gallery ", 44) == 0);
        CHECK_EQ(count_char(out, '\n'), 1);
        if (cases[i].quiet) {
            CHECK_STREQ(err, "");
        } else if (cases[i].tty) {
            /* One bar redrawn with \r, ending at 100% and a newline. */
            CHECK(count_char(err, '\r') >= 1);
            CHECK_EQ(count_char(err, '\n'), 1);
            CHECK(strstr(err, "[##############################] 100%  2000/2000 items") != NULL);
            CHECK(strstr(err, "items/s") && strstr(err, "eta"));
        } else {
            /* Plain lines, each "import: d/2000 items (p%), r items/s, eta t". */
            CHECK(strchr(err, '\r') == NULL);
            size_t lines = 0, last_done = 0;
            bool well_formed = true;
            for (char *line = err; *line; line = strchr(line, '\n') + 1) {
                size_t done = 0, total = 0;
                int pct;
                if (!strchr(line, '\n'))
                    break;
                lines++;
                well_formed = well_formed &&
                              sscanf(line, "import: %zu/%zu items (%d%%), ", &done, &total,
                                     &pct) == 3 && total == 2000 && done >= last_done;
                last_done = done;
            }
            CHECK(well_formed);
            CHECK(lines >= 2);
            CHECK_EQ(last_done, 2000);
        }
        CHECK_EQ(td_gallery_count(c->h, cases[i].gallery), 2000);
        free(out);
        free(err);
    }
    free(vec);
    free(ids);
    free(labels);
    dataset_finish(&s);
}

/* A prefix imported first; the full import then sends only the rest. */
static void test_resume_prefix(ctx *c)
{
    dataset s;
    char *vec, *ids, *labels, *pvec, *pids, *plabels;
    make_dataset(c, &s, "rp", 1000, DIM, true);
    write_set(c, "prefix", &s, 300, &pvec, &pids, &plabels);
    write_set(c, "full", &s, s.n, &vec, &ids, &labels);
    create_gallery(c, "resume-prefix", "m8");
    static const struct {
        bool prefix;
        size_t sent, batches, skipped, skipped_batches;
        const char *notice;
    } steps[] = {
        {true, 300, 6, 0, 0, NULL},
        {false, 700, 14, 300, 6, "import: resuming: skipped 6 batches (300 items, from batch 1) "
                                 "already stored\n"},
        {false, 0, 0, 1000, 20, "skipped 20 batches (1000 items"},
    };
    for (size_t i = 0; i < sizeof steps / sizeof steps[0]; i++) {
        const char *argv[] = {"import", "--gallery", "resume-prefix", "--model", "m8",
                              "--vectors", steps[i].prefix ? pvec : vec,
                              "--ids", steps[i].prefix ? pids : ids,
                              "--labels", steps[i].prefix ? plabels : labels, "--batch", "50",
                              NULL};
        char *out, *err;
        CHECK_EQ(cli(c, &out, &err, argv), 0);
        size_t sent = 0, batches = 0, skipped = 0, skipped_batches = 0;
        CHECK(parse_summary(out, &sent, &batches, &skipped, &skipped_batches));
        CHECK_EQ(sent, steps[i].sent);
        CHECK_EQ(batches, steps[i].batches);
        CHECK_EQ(skipped, steps[i].skipped);
        CHECK_EQ(skipped_batches, steps[i].skipped_batches);
        if (steps[i].notice && !strstr(err, steps[i].notice))
            CHECK_FAILED_("step %zu: stderr lacks \"%s\": %s", i, steps[i].notice, err);
        free(out);
        free(err);
    }
    CHECK_EQ(td_gallery_count(c->h, "resume-prefix"), 1000);
    check_stored(c, "resume-prefix", "m8", &s, "resume after a prefix");
    free(vec), free(ids), free(labels), free(pvec), free(pids), free(plabels);
    dataset_finish(&s);
}

/*
 * Resume compares what is stored with the files: the same ids with other
 * vectors (a re-embedding) or other labels are sent again, not skipped;
 * then the unchanged files skip everything.
 */
static void test_resume_changed(ctx *c)
{
    dataset first, second;
    make_dataset(c, &first, "rc", 500, DIM, true);
    make_dataset(c, &second, "rc", 500, DIM, true);   /* same ids, new vectors */
    char *vec1, *ids1, *lab1, *vec2, *ids2, *lab2, *vec3, *ids3, *lab3;
    write_set(c, "changed-1", &first, first.n, &vec1, &ids1, &lab1);
    write_set(c, "changed-2", &second, second.n, &vec2, &ids2, &lab2);
    for (size_t i = 0; i < second.n; i++) {
        free(second.labels[i]);
        second.labels[i] = td_fmt("relabelled-%zu", i % 5);
    }
    write_set(c, "changed-3", &second, second.n, &vec3, &ids3, &lab3);
    create_gallery(c, "resume-changed", "m8");
    static const struct {
        int set;    /* 1: first vectors; 2: new vectors; 3: new vectors and labels */
        size_t sent, skipped;
    } steps[] = {
        {1, 500, 0},
        {2, 500, 0},    /* every vector changed: all sent */
        {3, 500, 0},    /* every label changed: all sent */
        {3, 0, 500},    /* nothing changed: all skipped */
    };
    for (size_t i = 0; i < sizeof steps / sizeof steps[0]; i++) {
        int k = steps[i].set;
        const char *argv[] = {"import", "--gallery", "resume-changed", "--model", "m8",
                              "--vectors", k == 1 ? vec1 : k == 2 ? vec2 : vec3,
                              "--ids", k == 1 ? ids1 : k == 2 ? ids2 : ids3,
                              "--labels", k == 1 ? lab1 : k == 2 ? lab2 : lab3,
                              "--batch", "50", NULL};
        char *out, *err;
        CHECK_EQ(cli(c, &out, &err, argv), 0);
        size_t sent = 0, batches = 0, skipped = 0, skipped_batches = 0;
        CHECK(parse_summary(out, &sent, &batches, &skipped, &skipped_batches));
        if (sent != steps[i].sent || skipped != steps[i].skipped)
            fprintf(stderr, "resume-changed step %zu: %s%s", i, out, err);
        CHECK_EQ(sent, steps[i].sent);
        CHECK_EQ(skipped, steps[i].skipped);
        free(out);
        free(err);
    }
    check_stored(c, "resume-changed", "m8", &second, "resume with changed files");
    free(vec1), free(ids1), free(lab1), free(vec2), free(ids2), free(lab2);
    free(vec3), free(ids3), free(lab3);
    dataset_finish(&first);
    dataset_finish(&second);
}

/* kill -9 of the command once its progress shows 10%, then a re-run. */
static void test_resume_kill(ctx *c)
{
    enum { N = 4000, BATCH = 10 };
    dataset s;
    char *vec, *ids, *labels;
    make_dataset(c, &s, "rk", N, DIM, true);
    write_set(c, "kill", &s, s.n, &vec, &ids, &labels);
    create_gallery(c, "resume-kill", "m8");
    const char *args[] = {"import", "--gallery", "resume-kill", "--model", "m8", "--vectors", vec,
                          "--ids", ids, "--labels", labels, "--batch", "10", NULL};
    const char *argv[MAX_ARGV];
    build_argv(argv, c->url, args);
    td_proc p;
    REQUIRE(td_compatd_spawn(argv, false, &p));
    /* Read progress lines until one shows at least N / 10 items. */
    td_text seen = {0};
    size_t shown = 0;
    td_text_append(&seen, "%s", "");
    while (shown < N / 10) {
        char chunk[512];
        ssize_t got = read(p.err_fd, chunk, sizeof chunk - 1);
        if (got <= 0)
            break;
        chunk[got] = '\0';
        td_text_append(&seen, "%s", chunk);
        for (const char *l = seen.s; (l = strstr(l, "import: ")); l++) {
            size_t done, total;
            if (sscanf(l, "import: %zu/%zu items", &done, &total) == 2 && done > shown)
                shown = done;
        }
    }
    CHECK_EQ(kill(p.pid, SIGKILL), 0);
    char *out, *err;
    CHECK_EQ(td_compatd_wait(&p, &out, &err), 128 + SIGKILL);
    free(out);
    free(err);
    long stored = td_gallery_count(c->h, "resume-kill");
    fprintf(stderr, "resume: killed after %zu items shown, %ld stored\n", shown, stored);
    CHECK(stored >= N / 10 && stored < N);
    CHECK_EQ(stored % BATCH, 0);        /* batches are atomic */

    /* The two batches in flight at the kill may still commit after the
     * count above, and the later of them before the earlier: the re-run
     * skips what is stored, in one run of batches from batch 1 and
     * perhaps one more after a batch it sends. */
    CHECK_EQ(cli(c, &out, &err, args), 0);
    size_t sent = 0, batches = 0, skipped = 0, skipped_batches = 0;
    CHECK(parse_summary(out, &sent, &batches, &skipped, &skipped_batches));
    CHECK(skipped >= (size_t)stored && skipped <= (size_t)stored + 2 * BATCH);
    CHECK_EQ(skipped_batches, skipped / BATCH);
    CHECK_EQ(sent, N - skipped);
    CHECK_EQ(batches, (N - skipped) / BATCH);
    size_t noticed = 0, runs = 0, items, from;
    for (const char *l = err; (l = strstr(l, "resuming: skipped ")); l++) {
        size_t nb;
        if (sscanf(l, "resuming: skipped %zu batch%*[es] (%zu items, from batch %zu)", &nb, &items,
                   &from) == 3) {
            CHECK(runs > 0 || from == 1);
            CHECK_EQ(items, nb * BATCH);
            noticed += items;
            runs++;
        }
    }
    if (noticed != skipped || runs < 1 || runs > 2)
        CHECK_FAILED_("re-run: the resume notices (%zu) do not add up to %zu skipped: %s",
                      runs, skipped, err);
    check_count++;
    CHECK_EQ(td_gallery_count(c->h, "resume-kill"), N);
    check_stored(c, "resume-kill", "m8", &s, "resume after kill -9");
    free(out);
    free(err);
    free(seen.s);
    free(vec), free(ids), free(labels);
    dataset_finish(&s);
}

/* The numbers of a table line "key v1 v2 ..." ("-" reads as NAN). */
static int table_values(const char *table, const char *key, double *v, int max)
{
    char *start = td_fmt("\n%s ", key);
    const char *l = strstr(table, start);
    int n = 0;
    if (l) {
        l += strlen(start);
        while (n < max) {
            while (*l == ' ')
                l++;
            if (*l == '-' && (l[1] == ' ' || l[1] == '\n')) {
                v[n++] = NAN;
                l++;
                continue;
            }
            char *end;
            double x = strtod(l, &end);
            if (end == l)
                break;
            v[n++] = x;
            l = end;
        }
    }
    free(start);
    return n;
}

/* The text after "key" and spaces on a table line, up to the newline. */
static char *table_text(const char *table, const char *key)
{
    char *start = td_fmt("\n%s ", key);
    const char *l = strstr(table, start);
    char *out = NULL;
    if (l) {
        l += strlen(start);
        while (*l == ' ')
            l++;
        out = td_fmt("%.*s", (int)strcspn(l, "\n"), l);
    }
    free(start);
    return out;
}

/* An eval table against the report stored under its id. */
static void check_eval_table(ctx *c, const char *table, long *id_out)
{
    char *with_nl = td_fmt("\n%s", table);
    double id = NAN, top1[4], top3[4], map[4], nfr = NAN;
    CHECK_EQ(table_values(with_nl, "evaluation", &id, 1), 1);
    *id_out = isnan(id) ? 0 : (long)id;
    char *path = td_fmt("/v1/evaluations/%ld", *id_out);
    cJSON *r = get_json(c, path);
    REQUIRE(r);
    CHECK_EQ(table_values(with_nl, "top1", top1, 4), 4);
    CHECK_EQ(table_values(with_nl, "top3", top3, 4), 4);
    CHECK_EQ(table_values(with_nl, "map", map, 4), 4);
    CHECK_EQ(table_values(with_nl, "nfr", &nfr, 1), 1);
    CHECK_NEAR(top1[0], td_json_num(r, "cross.top1"), 5e-5);
    CHECK_NEAR(top1[1], td_json_num(r, "baseline.top1"), 5e-5);
    CHECK_NEAR(top3[0], td_json_num(r, "cross.top3"), 5e-5);
    CHECK_NEAR(map[0], td_json_num(r, "cross.map"), 5e-5);
    CHECK_NEAR(map[1], td_json_num(r, "baseline.map"), 5e-5);
    CHECK(isnan(top1[2]));      /* no paragon: the gallery has no m8b embeddings */
    CHECK_NEAR(nfr, td_json_num(r, "flips.nfr"), 5e-5);
    char *verdict = table_text(with_nl, "verdict");
    const cJSON *comp = td_json_at(r, "compatible");
    CHECK_STREQ(verdict, cJSON_IsTrue(comp) ? "compatible" : "NOT compatible");
    char *criterion = table_text(with_nl, "criterion");
    CHECK_STREQ(criterion, td_json_str(r, "criterion"));
    char *flips = td_fmt("%.0f negative, %.0f positive", td_json_num(r, "flips.negative"),
                         td_json_num(r, "flips.positive"));
    char *flips_line = table_text(with_nl, "flips");
    CHECK_STREQ(flips_line, flips);
    free(flips_line);
    char *view = table_text(with_nl, "view");
    if (strcmp(td_json_str(r, "gallery_view"), "mixed") == 0) {
        char *want = td_fmt("mixed, coverage %.4f", td_json_num(r, "coverage"));
        CHECK_STREQ(view, want);
        free(want);
    } else {
        CHECK_STREQ(view, "gallery_model");
    }
    free(view);
    free(flips);
    free(criterion);
    free(verdict);
    cJSON_Delete(r);
    free(path);
    free(with_nl);
}

static long eval_count(ctx *c, const char *gallery)
{
    char *path = td_fmt("/v1/galleries/%s/evaluations?limit=100", gallery);
    cJSON *j = get_json(c, path);
    long n = cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(j, "evaluations"));
    cJSON_Delete(j);
    free(path);
    return n;
}

/* A gallery of clustered items, probes near the centres: eval runs. */
static void test_eval(ctx *c)
{
    enum { LABELS = 12, PER = 5, PROBES = 2 * LABELS };
    dataset g, q, b;
    make_dataset(c, &g, "face", LABELS * PER, DIM, true);
    make_dataset(c, &q, "q", PROBES, DIM, true);
    make_dataset(c, &b, "q", PROBES, DIM, false);
    float centre[LABELS][DIM];
    for (size_t l = 0; l < LABELS; l++)
        for (size_t j = 0; j < DIM; j++)
            centre[l][j] = (float)td_rng_gauss(&c->rng);
    for (size_t i = 0; i < g.n; i++) {
        free(g.labels[i]);
        g.labels[i] = td_fmt("person-%zu", i % LABELS);
        for (size_t j = 0; j < DIM; j++)
            g.v[i * DIM + j] = centre[i % LABELS][j] + 0.3f * g.v[i * DIM + j];
    }
    for (size_t i = 0; i < PROBES; i++) {
        free(q.labels[i]);
        q.labels[i] = td_fmt("person-%zu", i % LABELS);
        for (size_t j = 0; j < DIM; j++) {
            q.v[i * DIM + j] = centre[i % LABELS][j] + 0.5f * q.v[i * DIM + j];
            b.v[i * DIM + j] = centre[i % LABELS][j] + 0.9f * b.v[i * DIM + j];
        }
    }
    char *gvec, *gids, *glabels;
    write_set(c, "faces", &g, g.n, &gvec, &gids, &glabels);
    create_gallery(c, "faces", "m8");
    const char *imp[] = {"import", "--gallery", "faces", "--model", "m8", "--vectors", gvec,
                         "--ids", gids, "--labels", glabels, "--quiet", NULL};
    char *out, *err;
    REQUIRE(cli(c, &out, &err, imp) == 0);
    free(out);
    free(err);

    char *qvec = path_in(c, "queries.npy"), *qlabels = path_in(c, "queries-labels.txt");
    char *qids = path_in(c, "queries-ids.txt"), *bvec = path_in(c, "baseline.fvecs");
    char *q16 = path_in(c, "queries16.npy");
    write_npy(qvec, &q, "<f4", false, 0);
    write_lines(qlabels, q.labels, q.n);
    write_lines(qids, q.ids, q.n);
    write_fvecs(bvec, &b);
    dataset wide;
    make_dataset(c, &wide, "w", PROBES, 16, false);
    write_npy(q16, &wide, "<f4", false, 0);

    /* --json: the server's report as stored. */
    const char *json_args[] = {"eval", "--gallery", "faces", "--query-model", "m8b",
                               "--queries", qvec, "--labels", qlabels, "--ids", qids,
                               "--baseline", bvec, "--ks", "1,3", "--json", NULL};
    CHECK_EQ(cli(c, &out, &err, json_args), 0);
    CHECK_STREQ(err, "");
    cJSON *posted = cJSON_Parse(out);
    REQUIRE(posted);
    char *path = td_fmt("/v1/evaluations/%.0f", td_json_num(posted, "id"));
    cJSON *stored = get_json(c, path);
    CHECK(cJSON_Compare(posted, stored, true));
    CHECK_EQ(td_json_num(posted, "queries"), PROBES);
    CHECK(td_json_at(posted, "flips.nfr") != NULL);
    cJSON_Delete(stored);
    cJSON_Delete(posted);
    free(path);
    free(out);
    free(err);

    /* The table, read back; then --show of the same id prints it again. */
    const char *table_args[] = {"eval", "--gallery", "faces", "--query-model", "m8b",
                                "--queries", qvec, "--labels", qlabels, "--ids", qids,
                                "--baseline", bvec, "--ks", "1,3", NULL};
    CHECK_EQ(cli(c, &out, &err, table_args), 0);
    CHECK_STREQ(err, "");
    long id = 0;
    check_eval_table(c, out, &id);
    char *id_s = td_fmt("%ld", id);
    const char *show_args[] = {"eval", "--show", id_s, NULL};
    char *shown, *shown_err;
    CHECK_EQ(cli(c, &shown, &shown_err, show_args), 0);
    CHECK_STREQ(shown, out);
    free(shown);
    free(shown_err);
    const char *show_json[] = {"eval", "--show", id_s, "--json", NULL};
    CHECK_EQ(cli(c, &shown, &shown_err, show_json), 0);
    path = td_fmt("/v1/evaluations/%ld", id);
    stored = get_json(c, path);
    posted = cJSON_Parse(shown);
    CHECK(posted && cJSON_Compare(posted, stored, true));
    cJSON_Delete(posted);
    cJSON_Delete(stored);
    free(path);
    free(shown);
    free(shown_err);
    free(out);
    free(err);

    /* --mixed: the mixed view, its coverage in the table (none of the
     * gallery's items has an m8b embedding: 0). */
    const char *mixed_args[] = {"eval", "--gallery", "faces", "--query-model", "m8b",
                                "--queries", qvec, "--labels", qlabels, "--ids", qids,
                                "--baseline", bvec, "--ks", "1,3", "--mixed", NULL};
    CHECK_EQ(cli(c, &out, &err, mixed_args), 0);
    CHECK_STREQ(err, "");
    long mixed_id = 0;
    check_eval_table(c, out, &mixed_id);
    path = td_fmt("/v1/evaluations/%ld", mixed_id);
    stored = get_json(c, path);
    CHECK_STREQ(td_json_str(stored, "gallery_view"), "mixed");
    CHECK_EQ(td_json_num(stored, "coverage"), 0.0);
    CHECK(strstr(out, "mixed, coverage 0.0000") != NULL);
    cJSON_Delete(stored);
    free(path);
    free(out);
    free(err);

    /* Without --ids and --baseline: ids q1.., no verdict. */
    const char *bare[] = {"eval", "--gallery", "faces", "--query-model", "m8b", "--queries",
                          qvec, "--labels", qlabels, "--json", NULL};
    CHECK_EQ(cli(c, &out, &err, bare), 0);
    posted = cJSON_Parse(out);
    CHECK(posted && cJSON_IsNull(td_json_at(posted, "compatible")));
    cJSON_Delete(posted);
    free(out);
    free(err);

    /* --filter: two labels' items are the gallery, and the table says so;
     * a filter that is not JSON is refused before anything is sent. */
    static const char two[] = "{\"label\":{\"in\":[\"person-0\",\"person-1\"]}}";
    const char *filtered[] = {"eval", "--gallery", "faces", "--query-model", "m8b", "--queries",
                              qvec, "--labels", qlabels, "--filter", two, "--json", NULL};
    CHECK_EQ(cli(c, &out, &err, filtered), 0);
    posted = cJSON_Parse(out);
    cJSON *want = cJSON_Parse(two);
    CHECK(posted && td_json_num(posted, "gallery_items") == 2 * PER);
    CHECK(posted && cJSON_Compare(td_json_at(posted, "filter"), want, true));
    cJSON_Delete(want);
    cJSON_Delete(posted);
    free(out);
    free(err);
    const char *filtered_table[] = {"eval", "--gallery", "faces", "--query-model", "m8b",
                                    "--queries", qvec, "--labels", qlabels, "--filter", two,
                                    NULL};
    CHECK_EQ(cli(c, &out, &err, filtered_table), 0);
    CHECK(strstr(out, "filter") && strstr(out, "person-1"));
    free(out);
    free(err);
    long evals = eval_count(c, "faces");
    const char *not_json[] = {"eval", "--gallery", "faces", "--query-model", "m8b", "--queries",
                              qvec, "--labels", qlabels, "--filter", "{label", NULL};
    CHECK_EQ(cli(c, &out, &err, not_json), 2);
    CHECK(strstr(err, "--filter must be JSON") != NULL);
    CHECK_EQ(eval_count(c, "faces"), evals);
    free(out);
    free(err);

    /* Bad input: one line, nothing stored. */
    long before = eval_count(c, "faces");
    static const struct {
        int which;      /* 0 wide queries, 1 short labels, 2 baseline count, 3 no such id */
        const char *want;
    } bad[] = {
        {0, "queries16.npy: vectors have dim 16, model m8b has dim 8"},
        {1, "expected 24"},
        {2, "give --baseline-ids"},
        {3, "HTTP 404"},
    };
    char *short_labels = path_in(c, "short-labels.txt"), *bvec_short = path_in(c, "short.fvecs");
    write_lines(short_labels, q.labels, q.n - 1);
    b.n--;
    write_fvecs(bvec_short, &b);
    b.n++;
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        const char *args[] = {"eval", "--gallery", "faces", "--query-model", "m8b",
                              "--queries", bad[i].which == 0 ? q16 : qvec,
                              "--labels", bad[i].which == 1 ? short_labels : qlabels,
                              "--baseline", bad[i].which == 2 ? bvec_short : bvec, NULL};
        const char *show[] = {"eval", "--show", "999999", NULL};
        CHECK_EQ(cli(c, &out, &err, bad[i].which == 3 ? show : args), 1);
        check_one_line(err, "eval", bad[i].want, bad[i].want);
        CHECK_STREQ(out, "");
        free(out);
        free(err);
    }
    /* --adapter names an adapter the server does not have: its 404. */
    const char *no_adapter[] = {"eval", "--gallery", "faces", "--query-model", "m8b",
                                "--adapter", "nope", "--queries", qvec, "--labels", qlabels,
                                "--baseline", bvec, NULL};
    CHECK_EQ(cli(c, &out, &err, no_adapter), 1);
    check_one_line(err, "eval", "no adapter named nope", "unknown adapter");
    CHECK_STREQ(out, "");
    free(out);
    free(err);
    CHECK_EQ(eval_count(c, "faces"), before);

    free(short_labels), free(bvec_short), free(id_s);
    free(qvec), free(qlabels), free(qids), free(bvec), free(q16);
    free(gvec), free(gids), free(glabels);
    dataset_finish(&wide);
    dataset_finish(&b);
    dataset_finish(&q);
    dataset_finish(&g);
}

/* The line of a listing whose first words are words (space-separated). */
static char *listing_line(const char *text, const char *words)
{
    for (const char *l = text; l && *l; l = strchr(l, '\n') ? strchr(l, '\n') + 1 : NULL) {
        /* Collapse the padding, then compare the start. */
        char buf[512];
        size_t n = 0;
        for (const char *p = l; *p && *p != '\n' && n + 1 < sizeof buf; p++)
            if (*p != ' ' || (n > 0 && buf[n - 1] != ' '))
                buf[n++] = *p;
        buf[n] = '\0';
        if (strncmp(buf, words, strlen(words)) == 0)
            return td_fmt("%s", buf);
    }
    return NULL;
}

static void test_listings(ctx *c)
{
    cJSON *gal = get_json(c, "/v1/galleries/faces");
    cJSON *compat = get_json(c, "/v1/compatibility");
    cJSON *all = get_json(c, "/v1/galleries");
    REQUIRE(gal && compat && all);
    const char *status_m8b = NULL;
    const cJSON *q;
    cJSON_ArrayForEach(q, cJSON_GetObjectItemCaseSensitive(gal, "query_models"))
        if (strcmp(td_json_str(q, "model"), "m8b") == 0)
            status_m8b = td_json_str(q, "status");
    const char *verdict = NULL;
    const cJSON *g;
    cJSON_ArrayForEach(g, cJSON_GetObjectItemCaseSensitive(compat, "galleries"))
        if (strcmp(td_json_str(g, "gallery"), "faces") == 0)
            verdict = td_json_str(g, "pairs.0.verdict");
    REQUIRE(status_m8b && verdict);
    long galleries = cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(all, "galleries"));
    long items = 0;
    cJSON_ArrayForEach(g, cJSON_GetObjectItemCaseSensitive(all, "galleries"))
        items += (long)td_json_num(g, "count");

    char *line_status = td_fmt("faces m8b %s", status_m8b);
    char *line_pair = td_fmt("faces m8b m8 %s", verdict);
    char *line_galleries = td_fmt("galleries %ld", galleries);
    char *line_items = td_fmt("items %ld", items);
    const struct {
        const char *cmd;
        const char *lines[5];    /* each a line's first words */
    } cases[] = {
        {"models", {"NAME DIM METRIC COMPATIBLE_WITH", "m8 8 ip -", "m8b 8 ip m8",
                    "m16 16 ip -"}},
        {"galleries", {"GALLERY MODEL INDEX ITEMS POLICY", "faces m8 Flat 60 verified",
                       "fmt-0 m8 Flat 50 verified", "faces m8 60 100.0%", line_status}},
        {"status", {"health ok", "ready ready", "models 3", line_galleries, line_items}},
        {"status", {line_pair}},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const char *args[] = {cases[i].cmd, NULL};
        char *out, *err;
        CHECK_EQ(cli(c, &out, &err, args), 0);
        CHECK_STREQ(err, "");
        for (size_t l = 0; l < 5 && cases[i].lines[l]; l++) {
            char *line = listing_line(out, cases[i].lines[l]);
            if (!line)
                CHECK_FAILED_("%s: no line \"%s\" in:\n%s", cases[i].cmd, cases[i].lines[l], out);
            check_count++;
            free(line);
        }
        free(out);
        free(err);
    }
    /* --json: what the server said. */
    static const struct {
        const char *cmd;
        const char *path;       /* must be present */
    } json_cases[] = {
        {"models", "models.2.name"},
        {"galleries", "galleries.0.embeddings"},
        {"status", "ready.status"},
        {"status", "compatibility.galleries"},
    };
    for (size_t i = 0; i < sizeof json_cases / sizeof json_cases[0]; i++) {
        const char *args[] = {json_cases[i].cmd, "--json", NULL};
        char *out, *err;
        CHECK_EQ(cli(c, &out, &err, args), 0);
        cJSON *j = cJSON_Parse(out);
        if (!td_json_at(j, json_cases[i].path))
            CHECK_FAILED_("%s --json lacks %s: %s", json_cases[i].cmd, json_cases[i].path, out);
        check_count++;
        cJSON_Delete(j);
        free(out);
        free(err);
    }
    free(line_status), free(line_pair), free(line_galleries), free(line_items);
    cJSON_Delete(all);
    cJSON_Delete(compat);
    cJSON_Delete(gal);
}

/* A loopback port nothing listens on. */
static int dead_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    REQUIRE(fd >= 0 && bind(fd, (struct sockaddr *)&a, sizeof a) == 0 &&
            getsockname(fd, (struct sockaddr *)&a, &len) == 0);
    close(fd);
    return ntohs(a.sin_port);
}

/* compatd adapter fit (from two .npy files) | list | show --weights |
 * delete, against what the server holds; bad lines refused. */
static void test_adapter(ctx *c)
{
    dataset a, b;
    make_dataset(c, &a, "pa", 40, DIM, false);
    make_dataset(c, &b, "pb", 40, 16, false);
    char *fa = path_in(c, "pairs-from.npy"), *fb = path_in(c, "pairs-to.npy");
    write_npy(fa, &a, "<f4", false, 0);
    write_npy(fb, &b, "<f4", false, 0);
    char *out, *err;

    const char *fit[] = {"adapter", "fit", "--name", "m8-to-m16", "--from", "m8", "--to", "m16",
                         "--pairs", fa, fb, "--ridge", "0.5", NULL};
    CHECK_EQ(cli(c, &out, &err, fit), 0);
    CHECK_STREQ(err, "");
    CHECK(strncmp(out, "adapter m8-to-m16: m8 -> m16, linear, 40 pairs, mean cosine 0.", 62) == 0);
    free(out);
    free(err);

    const char *list[] = {"adapter", "list", NULL};
    CHECK_EQ(cli(c, &out, &err, list), 0);
    char *line = listing_line(out, "m8-to-m16 m8 m16 linear");
    if (!line)
        CHECK_FAILED_("adapter list: no line for m8-to-m16 in:\n%s", out);
    check_count++;
    free(line);
    free(out);
    free(err);

    const char *show[] = {"adapter", "show", "m8-to-m16", "--weights", NULL};
    CHECK_EQ(cli(c, &out, &err, show), 0);
    cJSON *shown = cJSON_Parse(out);
    cJSON *served = get_json(c, "/v1/adapters/m8-to-m16?weights=true");
    REQUIRE(shown && served);
    CHECK(cJSON_Compare(shown, served, true));
    CHECK_EQ(cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(shown, "weights")), DIM);
    cJSON_Delete(shown);
    cJSON_Delete(served);
    free(out);
    free(err);

    /* route: a gallery of m16 sends m8's searches through the adapter,
     * which cannot be deleted until --none takes the route away. */
    create_gallery(c, "routed", "m16");
    td_reply r;
    CHECK_EQ(td_http_call(c->h, &r, 200, "PATCH", "/v1/galleries/routed",
                          "{\"query_policy\":\"declared\"}"), 200);
    td_reply_finish(&r);
    const char *route[] = {"adapter", "route", "--gallery", "routed", "--model", "m8",
                           "--adapter", "m8-to-m16", NULL};
    CHECK_EQ(cli(c, &out, &err, route), 0);
    CHECK_STREQ(out, "gallery routed: searches by model m8 go through adapter m8-to-m16\n");
    free(out);
    free(err);
    cJSON *g = get_json(c, "/v1/galleries/routed");
    CHECK_STREQ(td_json_str(g, "adapters.m8"), "m8-to-m16");
    cJSON_Delete(g);
    const char *del[] = {"adapter", "delete", "m8-to-m16", NULL};
    CHECK_EQ(cli(c, &out, &err, del), 1);
    check_one_line(err, "adapter delete", "routes model m8 through it", "delete while routed");
    free(out);
    free(err);
    const char *wrong[] = {"adapter", "route", "--gallery", "routed", "--model", "m8b",
                           "--adapter", "m8-to-m16", NULL};
    CHECK_EQ(cli(c, &out, &err, wrong), 1);
    check_one_line(err, "adapter route", "maps from model m8", "route of the wrong model");
    free(out);
    free(err);
    const char *both_ways[] = {"adapter", "route", "--gallery", "routed", "--model", "m8",
                               "--adapter", "m8-to-m16", "--none", NULL};
    CHECK_EQ(cli(c, &out, &err, both_ways), 2);
    free(out);
    free(err);
    const char *unroute[] = {"adapter", "route", "--gallery", "routed", "--model", "m8", "--none",
                             NULL};
    CHECK_EQ(cli(c, &out, &err, unroute), 0);
    CHECK_STREQ(out, "gallery routed: searches by model m8 go through no adapter\n");
    free(out);
    free(err);
    g = get_json(c, "/v1/galleries/routed");
    CHECK_EQ(cJSON_GetArraySize(td_json_at(g, "adapters")), 0);
    cJSON_Delete(g);

    CHECK_EQ(cli(c, &out, &err, del), 0);
    CHECK_STREQ(out, "deleted adapter m8-to-m16\n");
    free(out);
    free(err);
    CHECK_EQ(cli(c, &out, &err, show), 1);
    check_one_line(err, "adapter show", "no adapter named m8-to-m16", "show after delete");
    free(out);
    free(err);

    /* A server's refusal is one line and 1; a bad command line is 2. */
    const char *no_gallery[] = {"adapter", "fit", "--name", "x", "--from", "m8", "--to", "m8b",
                                "--gallery", "nope", NULL};
    CHECK_EQ(cli(c, &out, &err, no_gallery), 1);
    check_one_line(err, "adapter fit", "nope", "unknown gallery");
    free(out);
    free(err);
    const char *one_file[] = {"adapter", "fit", "--name", "x", "--from", "m8", "--to", "m8b",
                              "--pairs", fa, NULL};
    CHECK_EQ(cli(c, &out, &err, one_file), 2);
    free(out);
    free(err);
    const char *both[] = {"adapter", "fit", "--name", "x", "--from", "m8", "--to", "m16",
                          "--gallery", "faces", "--pairs", fa, fb, NULL};
    CHECK_EQ(cli(c, &out, &err, both), 2);
    free(out);
    free(err);
    free(fa);
    free(fb);
    dataset_finish(&a);
    dataset_finish(&b);
}

/* compatd items list (--all, --limit, --json) prints every item once in
 * id order, as the server holds them; items delete --ids deletes those
 * listed (in batches), counts only present ids; bad lines refused. */
static void test_items(ctx *c)
{
    enum { N = 2500, N_DEL = 1000 };
    create_gallery(c, "listed", "m8");
    for (int b = 0; b < N; b += 500) {
        td_text t = {0};
        td_text_append(&t, "{\"items\":[");
        for (int i = b; i < b + 500; i++) {
            td_text_append(&t, "%s{\"id\":\"it%04d\",\"label\":\"L%d\",\"vector\":[", i > b ? "," : "",
                           i, i % 3);
            for (int d = 0; d < DIM; d++)
                td_text_append(&t, "%s%.4f", d ? "," : "", td_rng_gauss(&c->rng));
            td_text_append(&t, "]}");
        }
        td_text_append(&t, "]}");
        td_reply r;
        CHECK_EQ(td_http_json(c->h, "POST", "/v1/galleries/listed/items", t.s, &r), 200);
        td_reply_finish(&r);
        free(t.s);
    }
    char *out, *err;
    const char *all[] = {"items", "list", "--gallery", "listed", "--all", NULL};
    CHECK_EQ(cli(c, &out, &err, all), 0);
    CHECK_STREQ(err, "");
    CHECK_EQ(count_char(out, '\n'), N);
    int bad = 0, i = 0;
    for (const char *l = out; *l && bad == 0; l = strchr(l, '\n') + 1, i++) {
        char *want = td_fmt("it%04d\tL%d\tm8\n", i, i % 3);
        bad += strncmp(l, want, strlen(want)) != 0;
        if (bad)
            CHECK_FAILED_("items list line %d: want %s got %.40s", i, want, l);
        free(want);
    }
    free(out);
    free(err);

    const char *five[] = {"items", "list", "--gallery", "listed", "--limit", "5", NULL};
    CHECK_EQ(cli(c, &out, &err, five), 0);
    CHECK_EQ(count_char(out, '\n'), 5);
    CHECK(strncmp(out, "it0000\tL0\tm8\n", 13) == 0);
    free(out);
    free(err);

    const char *json[] = {"items", "list", "--gallery", "listed", "--limit", "1500", "--json",
                          NULL};
    CHECK_EQ(cli(c, &out, &err, json), 0);
    CHECK_EQ(count_char(out, '\n'), 1500);
    char *last = strrchr(out, '\n');
    if (last)
        *last = '\0';
    last = strrchr(out, '\n');
    cJSON *j = cJSON_Parse(last ? last + 1 : out);
    CHECK_STREQ(td_json_str(j, "id"), "it1499");
    CHECK_STREQ(td_json_str(j, "models.0"), "m8");
    cJSON_Delete(j);
    free(out);
    free(err);

    /* Delete the first N_DEL in batches of 300, and one id not there. */
    char *ids_path = path_in(c, "delete-ids.txt");
    char **ids = calloc(N_DEL + 1, sizeof *ids);
    REQUIRE(ids);
    for (int k = 0; k < N_DEL; k++)
        ids[k] = td_fmt("it%04d", k);
    ids[N_DEL] = td_fmt("ghost");
    write_lines(ids_path, ids, N_DEL + 1);
    const char *del[] = {"items", "delete", "--gallery", "listed", "--ids", ids_path,
                         "--batch", "300", NULL};
    CHECK_EQ(cli(c, &out, &err, del), 0);
    CHECK_STREQ(out, "items delete: 1000 of 1001 ids deleted from gallery listed\n");
    CHECK_STREQ(err, "");
    free(out);
    free(err);
    td_reply r;
    CHECK_EQ(td_gallery_count(c->h, "listed"), N - N_DEL);
    CHECK_EQ(td_http_json(c->h, "GET", "/v1/galleries/listed/items/it0999", NULL, &r), 404);
    td_reply_finish(&r);
    CHECK_EQ(td_http_json(c->h, "GET", "/v1/galleries/listed/items/it1000", NULL, &r), 200);
    td_reply_finish(&r);
    CHECK_EQ(cli(c, &out, &err, all), 0);
    CHECK_EQ(count_char(out, '\n'), N - N_DEL);
    CHECK(strncmp(out, "it1000\t", 7) == 0);
    free(out);
    free(err);

    /* --filter: the listing of label L1 is every third remaining item,
     * in order, across pages; delete by filter removes exactly those. */
    const char *l1[] = {"items", "list", "--gallery", "listed", "--all",
                        "--filter", "{\"label\": \"L1\"}", NULL};
    CHECK_EQ(cli(c, &out, &err, l1), 0);
    CHECK_STREQ(err, "");
    int want_l1 = 0, seen = 0;
    for (int k = N_DEL; k < N; k++)
        want_l1 += k % 3 == 1;
    bad = 0;
    i = N_DEL;
    for (const char *l = out; *l && bad == 0; l = strchr(l, '\n') + 1, seen++) {
        while (i % 3 != 1)
            i++;
        char *want = td_fmt("it%04d\tL1\tm8\n", i++);
        bad += strncmp(l, want, strlen(want)) != 0;
        if (bad)
            CHECK_FAILED_("items list --filter line %d: want %s got %.40s", seen, want, l);
        free(want);
    }
    CHECK_EQ(seen, want_l1);
    free(out);
    free(err);
    const char *del_l1[] = {"items", "delete", "--gallery", "listed",
                            "--filter", "{\"label\": \"L1\"}", NULL};
    CHECK_EQ(cli(c, &out, &err, del_l1), 0);
    char *said = td_fmt("items delete: %d items matched the filter and were deleted from "
                        "gallery listed\n", want_l1);
    CHECK_STREQ(out, said);
    free(said);
    free(out);
    free(err);
    CHECK_EQ(td_gallery_count(c->h, "listed"), N - N_DEL - want_l1);
    CHECK_EQ(cli(c, &out, &err, l1), 0);
    CHECK_STREQ(out, "");
    free(out);
    free(err);

    /* Bad command lines are 2, a server's refusal one line and 1. */
    const char *const *const bad_lines[] = {
        (const char *const[]){"items", NULL},
        (const char *const[]){"items", "list", "--gallery", "listed", "--filter", "{nope", NULL},
        (const char *const[]){"items", "delete", "--gallery", "listed", "--ids", "x",
                              "--filter", "{}", NULL},
        (const char *const[]){"items", "frob", "--gallery", "listed", NULL},
        (const char *const[]){"items", "list", NULL},
        (const char *const[]){"items", "list", "--gallery", "listed", "--limit", "0", NULL},
        (const char *const[]){"items", "list", "--gallery", "listed", "--limit", "3", "--all",
                              NULL},
        (const char *const[]){"items", "delete", "--gallery", "listed", NULL},
    };
    for (size_t k = 0; k < sizeof bad_lines / sizeof bad_lines[0]; k++) {
        CHECK_EQ(cli(c, &out, &err, bad_lines[k]), 2);
        free(out);
        free(err);
    }
    const char *nope[] = {"items", "list", "--gallery", "nope", NULL};
    CHECK_EQ(cli(c, &out, &err, nope), 1);
    check_one_line(err, "items list", "nope", "unknown gallery");
    free(out);
    free(err);
    /* A filter the server refuses: its message, one line, nothing deleted. */
    const char *bad_filter[] = {"items", "delete", "--gallery", "listed",
                                "--filter", "{\"label\": {\"gt\": \"a\"}}", NULL};
    CHECK_EQ(cli(c, &out, &err, bad_filter), 1);
    CHECK(err && strstr(err, "filter") != NULL);
    CHECK_EQ(td_gallery_count(c->h, "listed"), N - N_DEL - want_l1);
    free(out);
    free(err);
    for (int k = 0; k <= N_DEL; k++)
        free(ids[k]);
    free(ids);
    free(ids_path);
}

static void test_unreachable(ctx *c)
{
    char *dead = td_fmt("http://127.0.0.1:%d", dead_port());
    static const struct {
        const char *cmd;
        bool dead_url;          /* else a URL of no scheme we speak */
        const char *want;
    } cases[] = {
        {"status", true, "cannot reach http://127.0.0.1:"},
        {"models", true, "cannot reach"},
        {"galleries", false, "does not start with http:// or https://"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const char *args[] = {cases[i].cmd, "--url", cases[i].dead_url ? dead : "ftp://x", NULL};
        char *out, *err;
        CHECK_EQ(td_run_compatd_split(args, &out, &err), 1);
        check_one_line(err, cases[i].cmd, cases[i].want, cases[i].want);
        free(out);
        free(err);
    }
    /* An import to nowhere, and COMPATD_URL in place of --url. */
    const char *imp[] = {"import", "--url", dead, "--gallery", "g", "--model", "m", "--vectors",
                         "x.npy", "--ids", "x.txt", NULL};
    char *out, *err;
    CHECK_EQ(td_run_compatd_split(imp, &out, &err), 1);
    check_one_line(err, "import", "cannot reach", "import to nowhere");
    free(out);
    free(err);
    REQUIRE(setenv("COMPATD_URL", c->url, 1) == 0);
    const char *models[] = {"models", NULL};
    CHECK_EQ(td_run_compatd_split(models, &out, &err), 0);
    CHECK(strstr(out, "m8b") != NULL);
    free(out);
    free(err);
    REQUIRE(unsetenv("COMPATD_URL") == 0);
    free(dead);
}

static void test_keys(ctx *c)
{
    char admin[128], reader[128];
    REQUIRE(td_create_key(c->d, "cli-admin", "admin", admin, sizeof admin) == 0);
    REQUIRE(td_create_key(c->d, "cli-read", "read", reader, sizeof reader) == 0);
    static const struct {
        int env;            /* COMPATD_KEY: 0 unset, 1 admin, 2 wrong */
        int arg;            /* --key: the same */
        int want;
        const char *err;    /* the one line on stderr (rc 1) */
    } cases[] = {
        {0, 0, 1, "the server at http://127.0.0.1:"},
        {0, 1, 0, NULL},
        {1, 0, 0, NULL},
        {0, 2, 1, "HTTP 401: unknown API key"},
        {2, 0, 1, "HTTP 401: unknown API key"},
        {2, 1, 0, NULL},
    };
    const char *keys[] = {NULL, admin, "cdk_not_a_key_of_this_server_at_all_0000000000"};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        if (cases[i].env)
            REQUIRE(setenv("COMPATD_KEY", keys[cases[i].env], 1) == 0);
        const char *with_key[] = {"models", "--key", keys[cases[i].arg], NULL};
        const char *without[] = {"models", NULL};
        char *out, *err;
        int rc = cli(c, &out, &err, cases[i].arg ? with_key : without);
        if (rc != cases[i].want)
            CHECK_FAILED_("keys case %zu: exit %d, want %d: %s", i, rc, cases[i].want, err);
        check_count++;
        if (cases[i].err)
            check_one_line(err, "models", cases[i].err, cases[i].err);
        else
            CHECK(strstr(out, "m8b") != NULL);
        if (i == 0)
            CHECK(strstr(err, "needs an API key: give --key KEY or set COMPATD_KEY") != NULL);
        free(out);
        free(err);
        REQUIRE(unsetenv("COMPATD_KEY") == 0);
    }
    /* A read key cannot import: 403, nothing stored. */
    dataset s;
    char *vec, *ids, *labels;
    make_dataset(c, &s, "k", 10, DIM, true);
    write_set(c, "keys", &s, s.n, &vec, &ids, &labels);
    td_http_set_key(c->h, admin);
    create_gallery(c, "keyed", "m8");
    const char *imp[] = {"import", "--key", reader, "--gallery", "keyed", "--model", "m8",
                         "--vectors", vec, "--ids", ids, "--labels", labels, NULL};
    char *out, *err;
    CHECK_EQ(cli(c, &out, &err, imp), 1);
    check_one_line(err, "import", "HTTP 403: API key cli-read has scope read", "read key import");
    CHECK_EQ(td_gallery_count(c->h, "keyed"), 0);
    free(out);
    free(err);
    imp[2] = admin;
    CHECK_EQ(cli(c, &out, &err, imp), 0);
    CHECK_EQ(td_gallery_count(c->h, "keyed"), 10);
    check_stored(c, "keyed", "m8", &s, "import with a key");
    free(out);
    free(err);
    free(vec), free(ids), free(labels);
    dataset_finish(&s);
}

/* A second daemon serving https: --cacert and COMPATD_CACERT. */
static void test_tls(void)
{
    td_daemon *d = td_daemon_create();
    REQUIRE(d);
    if (!td_make_cert(td_daemon_dir(d))) {
        CHECK_FAILED_("cannot make a certificate (certtool or openssl)");
        td_daemon_destroy(d);
        return;
    }
    char *cert = td_fmt("%s/cert.pem", td_daemon_dir(d));
    char *key = td_fmt("%s/key.pem", td_daemon_dir(d));
    const char *args[] = {"--tls-cert", cert, "--tls-key", key, NULL};
    td_daemon_set_tls(d, cert);
    REQUIRE(td_daemon_start(d, args));
    char *url = td_fmt("https://127.0.0.1:%d", td_daemon_port(d));
    static const struct {
        int how;            /* 0 no CA, 1 --cacert, 2 COMPATD_CACERT, 3 plain http */
        int want;
        const char *err;
    } cases[] = {
        {0, 1, "cannot reach https://127.0.0.1:"},
        {1, 0, NULL},
        {2, 0, NULL},
        {3, 1, "cannot reach http://127.0.0.1:"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *plain = td_fmt("http://127.0.0.1:%d", td_daemon_port(d));
        if (cases[i].how == 2)
            REQUIRE(setenv("COMPATD_CACERT", cert, 1) == 0);
        const char *with_ca[] = {"status", "--url", url, "--cacert", cert, NULL};
        const char *without[] = {"status", "--url", cases[i].how == 3 ? plain : url, NULL};
        char *out, *err;
        int rc = td_run_compatd_split(cases[i].how == 1 ? with_ca : without, &out, &err);
        if (rc != cases[i].want)
            CHECK_FAILED_("tls case %zu: exit %d, want %d: %s", i, rc, cases[i].want, err);
        check_count++;
        if (cases[i].err)
            check_one_line(err, "status", cases[i].err, cases[i].err);
        else
            CHECK(strstr(out, "ready") != NULL);
        REQUIRE(unsetenv("COMPATD_CACERT") == 0);
        free(out);
        free(err);
        free(plain);
    }
    CHECK_EQ(td_daemon_stop(d), 0);
    td_daemon_destroy(d);
    free(url);
    free(key);
    free(cert);
}

/*
 * Files that give ids again further down: the later line wins, as in file
 * order, although batches otherwise go two at a time.  Lines 30..39 repeat
 * the ids of lines 0..9 with new vectors, in batches of 10.
 */
static void test_repeated_ids(ctx *c)
{
    dataset s;
    make_dataset(c, &s, "rep", 40, DIM, false);
    for (size_t i = 30; i < 40; i++) {
        free(s.ids[i]);
        s.ids[i] = td_fmt("%s", s.ids[i - 30]);
    }
    create_gallery(c, "repeated", "m8");
    char *vec = path_in(c, "rep.npy"), *ids = path_in(c, "rep-ids.txt");
    write_npy(vec, &s, "<f4", false, 0);
    write_lines(ids, s.ids, s.n);
    const char *argv[] = {"import", "--gallery", "repeated", "--model", "m8", "--vectors", vec,
                          "--ids", ids, "--batch", "10", NULL};
    char *out, *err;
    CHECK_EQ(cli(c, &out, &err, argv), 0);
    CHECK_EQ(td_gallery_count(c->h, "repeated"), 30);
    /* What must be stored: lines 10..39. */
    dataset last = {.n = 30, .dim = DIM, .v = s.v + 10 * DIM, .ids = s.ids + 10};
    check_stored(c, "repeated", "m8", &last, "repeated ids");
    free(out);
    free(err);
    free(ids);
    free(vec);
    dataset_finish(&s);
}

int main(void)
{
    ctx c = {.rng = {td_seed(20261129)}};
    c.d = td_daemon_create();
    if (!c.d)
        return 1;
    REQUIRE(td_daemon_start(c.d, NULL));
    c.h = td_http_create(c.d);
    REQUIRE(c.h);
    snprintf(c.url, sizeof c.url, "http://127.0.0.1:%d", td_daemon_port(c.d));
    create_model(&c, "m8", DIM, NULL);
    create_model(&c, "m8b", DIM, "m8");
    create_model(&c, "m16", 16, NULL);

    double t0 = td_now();
    test_help(&c);
    test_formats(&c);
    test_repeated_ids(&c);
    test_bad_files(&c);
    test_progress(&c);
    test_resume_prefix(&c);
    test_resume_kill(&c);
    test_resume_changed(&c);
    test_eval(&c);
    test_listings(&c);
    test_adapter(&c);
    test_items(&c);
    test_unreachable(&c);
    test_tls();
    test_keys(&c);     /* last: from here on the daemon wants a key */
    fprintf(stderr, "cli cases: %.1f s\n", td_now() - t0);

    td_http_destroy(c.h);
    CHECK_EQ(td_daemon_stop(c.d), 0);
    td_daemon_destroy(c.d);
    return check_exit();
}
