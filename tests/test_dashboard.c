/*
 * test_dashboard.c - the web dashboard (server/web/) in Debian's headless
 * Chromium against a real daemon holding an upgrade scenario.
 *
 * The scenario, made over HTTP: models old (the gallery model), new-good
 * (compatible_with old: its probes are the old ones pulled towards their
 * class centre, so it retrieves better than old does and passes) and
 * new-bad (compatible_with old: some probes of each label mapped into a
 * rotated space, a different share per label, so it fails with flips that
 * differ by label); a gallery of 400 items in 40 labels with old
 * embeddings and new-good ones for 30% of them; three evaluations of each
 * new model; adapter good-to-old fitted on that 30% and one evaluation of
 * new-good through it (an adapted pair: a matrix row of its own, and the
 * adapter's page); LIVE_QUERIES searches by new-good with shadows (the
 * gallery page's live agreement).  One label is "<b>&x", which the page
 * must show as text.
 *
 * Two ways of driving Chromium:
 * - `--dump-dom` with `--virtual-time-budget`: virtual time waits for the
 *   page's fetches, so the DOM printed is the rendered view.  The overview
 *   (galleries, coverage, the matrix with AC and AM), a gallery's backfill
 *   panel, a history and an evaluation are
 *   checked against what GET /v1/compatibility, /v1/galleries/{g}/evaluations
 *   and /v1/evaluations/{id} say, read by this test over HTTP; the
 *   matrix's screenshot is taken the same way (--screenshot).
 * - the DevTools protocol over --remote-debugging-pipe, for what happens
 *   in real time: after `compatd keys create` the page asks for a key,
 *   refuses a wrong one, shows the data with the right one; then the
 *   daemon is killed and the page says it is unreachable while keeping
 *   the data it had.
 *
 * Every Chromium run has its own fresh profile directory and a deadline
 * after which its whole process group is killed, so a hang cannot stall
 * the suite.  Environment (set by meson): COMPATD, CHROMIUM, SCREENSHOT,
 * COMPATD_SOURCE_ROOT.
 */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "check.h"
#include "daemon.h"

#define DIM 16
#define LABELS 40
#define PER_LABEL 10                    /* gallery items per label */
#define ITEMS (LABELS * PER_LABEL)
#define BACKFILL (ITEMS * 3 / 10)       /* items with a new-good embedding */
#define PROBES_PER_LABEL 5
#define PROBES (LABELS * PROBES_PER_LABEL)
#define ROUNDS 3                        /* evaluations of each new model */
#define ODD_LABEL 7                     /* the label with markup in its name */
#define ARCHIVE_ITEMS 80                /* items of the second gallery */

#define CHROMIUM_TIMEOUT 90             /* seconds for one Chromium run */

static const char *chromium;
static char tmp_root[PATH_MAX / 2];     /* this test's scratch directory */
static int profiles;                    /* profile directories made */

/* ---- helpers ---------------------------------------------------------- */

static void sleep_ms(unsigned ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

/* A fresh, empty Chromium profile directory (a string that lives until
 * the next call). */
static const char *new_profile(void)
{
    static char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/profile-%d", tmp_root, ++profiles);
    REQUIRE(mkdir(path, 0700) == 0);
    return path;
}

/* The label of class l. */
static void label_of(int l, char *buf, size_t size)
{
    if (l == ODD_LABEL)
        snprintf(buf, size, "<b>&x");
    else
        snprintf(buf, size, "L%02d", l);
}

static long expect(td_http *h, td_reply *r, long want, const char *method, const char *path,
                   const char *body)
{
    td_http_json(h, method, path, body, r);
    if (r->status != want)
        fprintf(stderr, "%s %s: want %ld, got %ld: %.600s%s\n", method, path, want, r->status,
                r->body ? r->body : "", r->status ? "" : r->error);
    return r->status;
}

static void append_vector(td_text *t, const float *v)
{
    td_text_append(t, "[");
    for (int i = 0; i < DIM; i++)
        td_text_append(t, "%s%.9g", i ? "," : "", v[i]);
    td_text_append(t, "]");
}

/* ---- the scenario ----------------------------------------------------- */

#define LIVE_QUERIES 40                 /* shadowed searches by new-good */

typedef struct scenario {
    float centre[LABELS][DIM];
    float item[ITEMS][DIM];
    long long evals_good[ROUNDS], evals_bad[ROUNDS];
    long long eval_adapted;             /* new-good through good-to-old */
} scenario;

static void gauss_vec(td_rng *rng, float *v, double sd)
{
    for (int i = 0; i < DIM; i++)
        v[i] = (float)(td_rng_gauss(rng) * sd);
}

/* Upserts items [from, to) of model (NULL: the gallery's), with labels
 * when labelled. */
static void upsert(td_http *h, const char *gallery, const char *model, int from, int to,
                   const float (*vecs)[DIM], bool labelled)
{
    td_text body = {0};
    td_text_append(&body, "{");
    if (model)
        td_text_append(&body, "\"model\":\"%s\",", model);
    td_text_append(&body, "\"items\":[");
    for (int i = from; i < to; i++) {
        char label[32];
        label_of(i % LABELS, label, sizeof label);
        td_text_append(&body, "%s{\"id\":\"item-%03d\",", i > from ? "," : "", i);
        if (labelled)
            td_text_append(&body, "\"label\":\"%s\",", label);
        td_text_append(&body, "\"vector\":");
        append_vector(&body, vecs[i]);
        td_text_append(&body, "}");
    }
    td_text_append(&body, "]}");
    td_reply r;
    char *path = td_fmt("/v1/galleries/%s/items", gallery);
    CHECK_EQ(expect(h, &r, 200, "POST", path, body.s), 200);
    CHECK_EQ(td_json_num(r.json, "upserted"), to - from);
    td_reply_finish(&r);
    free(path);
    free(body.s);
}

/*
 * One evaluation of model on photos, through adapter unless NULL: probes
 * of round `round`, their old embeddings as the baseline.  new-good's probe is the old one pulled
 * towards its class centre; new-bad maps probe j of label l into a rotated
 * space when j < l % 6.  Returns the evaluation's id.
 */
static long long evaluate_view(td_http *h, const scenario *s, td_rng *rng, const char *model,
                               const char *adapter, int round, bool mixed)
{
    td_text body = {0}, base = {0};
    bool good = strcmp(model, "new-good") == 0;
    td_text_append(&body, "{\"query_model\":\"%s\",", model);
    if (mixed)
        td_text_append(&body, "\"gallery_view\":\"mixed\",");
    if (adapter)
        td_text_append(&body, "\"adapter\":\"%s\",", adapter);
    td_text_append(&body, "\"queries\":[");
    td_text_append(&base, "\"baseline\":[");
    for (int p = 0; p < PROBES; p++) {
        int l = p % LABELS, j = p / LABELS;
        float old[DIM], q[DIM];
        char label[32];
        label_of(l, label, sizeof label);
        gauss_vec(rng, old, 0.8);
        for (int i = 0; i < DIM; i++)
            old[i] += s->centre[l][i];
        for (int i = 0; i < DIM; i++) {
            if (good)
                q[i] = 0.4f * old[i] + 0.6f * s->centre[l][i] + (float)(td_rng_gauss(rng) * 0.05);
            else if (j < l % 6)
                q[i] = old[(i + 5) % DIM] * (i % 2 ? -1.0f : 1.0f);
            else
                q[i] = old[i];
        }
        td_text_append(&body, "%s{\"id\":\"r%d-q%03d\",\"label\":\"%s\",\"vector\":", p ? "," : "",
                       round, p, label);
        append_vector(&body, q);
        td_text_append(&body, "}");
        td_text_append(&base, "%s{\"id\":\"r%d-q%03d\",\"vector\":", p ? "," : "", round, p);
        append_vector(&base, old);
        td_text_append(&base, "}");
    }
    td_text_append(&body, "],%s]}", base.s);
    td_reply r;
    long long id = -1;
    if (expect(h, &r, 201, "POST", "/v1/galleries/photos/evaluations", body.s) == 201)
        id = (long long)td_json_num(r.json, "id");
    CHECK(id > 0);
    td_reply_finish(&r);
    free(body.s);
    free(base.s);
    return id;
}

static long long evaluate(td_http *h, const scenario *s, td_rng *rng, const char *model,
                          const char *adapter, int round)
{
    return evaluate_view(h, s, rng, model, adapter, round, false);
}

static void make_scenario(td_http *h, scenario *s, td_rng *rng)
{
    static const char *const models[] = {
        "{\"name\":\"old\",\"dim\":16,\"metric\":\"cosine\",\"description\":\"the gallery model\"}",
        "{\"name\":\"new-good\",\"dim\":16,\"metric\":\"cosine\",\"compatible_with\":\"old\"}",
        "{\"name\":\"new-bad\",\"dim\":16,\"metric\":\"cosine\",\"compatible_with\":\"old\"}",
    };
    td_reply r;
    for (size_t i = 0; i < sizeof models / sizeof models[0]; i++) {
        CHECK_EQ(expect(h, &r, 201, "POST", "/v1/models", models[i]), 201);
        td_reply_finish(&r);
    }
    CHECK_EQ(expect(h, &r, 201, "POST", "/v1/galleries", "{\"name\":\"photos\",\"model\":\"old\"}"),
             201);
    td_reply_finish(&r);

    for (int l = 0; l < LABELS; l++)
        gauss_vec(rng, s->centre[l], 1.0);
    for (int i = 0; i < ITEMS; i++) {
        gauss_vec(rng, s->item[i], 0.8);
        for (int k = 0; k < DIM; k++)
            s->item[i][k] += s->centre[i % LABELS][k];
    }
    upsert(h, "photos", NULL, 0, ITEMS, (const float (*)[DIM])s->item, true);
    /* the partial backfill: new-good embeddings of the first 30% */
    static float fresh[ITEMS][DIM];
    for (int i = 0; i < BACKFILL; i++)
        for (int k = 0; k < DIM; k++)
            fresh[i][k] = s->item[i][k] + (float)(td_rng_gauss(rng) * 0.05);
    upsert(h, "photos", "new-good", 0, BACKFILL, (const float (*)[DIM])fresh, false);

    for (int round = 0; round < ROUNDS; round++) {
        s->evals_good[round] = evaluate(h, s, rng, "new-good", NULL, round);
        s->evals_bad[round] = evaluate(h, s, rng, "new-bad", NULL, round);
    }

    /* archive: a second gallery, where new-good was evaluated without a
     * baseline (no verdict) and new-bad never was */
    CHECK_EQ(expect(h, &r, 201, "POST", "/v1/galleries", "{\"name\":\"archive\",\"model\":\"old\"}"),
             201);
    td_reply_finish(&r);
    upsert(h, "archive", NULL, 0, ARCHIVE_ITEMS, (const float (*)[DIM])s->item, true);
    td_text body = {0};
    td_text_append(&body, "{\"query_model\":\"new-good\",\"queries\":[");
    for (int p = 0; p < LABELS; p++) {
        char label[32];
        label_of(p, label, sizeof label);
        td_text_append(&body, "%s{\"id\":\"a%d\",\"label\":\"%s\",\"vector\":", p ? "," : "", p,
                       label);
        append_vector(&body, s->centre[p]);
        td_text_append(&body, "}");
    }
    td_text_append(&body, "]}");
    CHECK_EQ(expect(h, &r, 201, "POST", "/v1/galleries/archive/evaluations", body.s), 201);
    td_reply_finish(&r);
    free(body.s);

    /* an adapter fitted on the backfilled 30%, and new-good through it */
    CHECK_EQ(expect(h, &r, 201, "POST", "/v1/adapters",
                    "{\"name\":\"good-to-old\",\"from\":\"new-good\",\"to\":\"old\","
                    "\"gallery\":\"photos\"}"), 201);
    td_reply_finish(&r);
    s->eval_adapted = evaluate(h, s, rng, "new-good", "good-to-old", ROUNDS);

    /* live agreement: searches by new-good that carry their query
     * embedded by old too (the shadow) */
    td_text search = {0}, shadows = {0};
    for (int q = 0; q < LIVE_QUERIES; q++) {
        float old[DIM], fresh_q[DIM];
        gauss_vec(rng, old, 0.8);
        for (int k = 0; k < DIM; k++) {
            old[k] += s->centre[q % LABELS][k];
            fresh_q[k] = 0.4f * old[k] + 0.6f * s->centre[q % LABELS][k];
        }
        td_text_append(&search, q ? "," : "{\"model\":\"new-good\",\"k\":5,\"vectors\":[");
        append_vector(&search, fresh_q);
        td_text_append(&shadows, q ? "," : "[");
        append_vector(&shadows, old);
    }
    td_text_append(&search, "],\"shadow_vectors\":%s]}", shadows.s);
    CHECK_EQ(expect(h, &r, 200, "POST", "/v1/galleries/photos/search", search.s), 200);
    td_reply_finish(&r);
    free(search.s);
    free(shadows.s);
}

/* ---- running Chromium ------------------------------------------------- */

/* Forks Chromium with args (after the program's name; NULL-terminated) in
 * its own process group, stdout into out_fd (-1: /dev/null), stderr into
 * log; extra_in/extra_out become its fds 3 and 4 when >= 0. */
static pid_t spawn_chromium(const char *const *args, int out_fd, const char *log, int extra_in,
                            int extra_out)
{
    const char *argv[48];
    size_t n = 0;
    argv[n++] = chromium;
    for (size_t i = 0; args[i] && n < sizeof argv / sizeof argv[0] - 1; i++)
        argv[n++] = args[i];
    argv[n] = NULL;
    pid_t pid = fork();
    if (pid < 0) {
        fprintf(stderr, "fork: %s\n", strerror(errno));
        return -1;
    }
    if (pid == 0) {
        setpgid(0, 0);
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        int devnull = open("/dev/null", O_RDWR);
        int err = open(log, O_WRONLY | O_CREAT | O_APPEND, 0600);
        /* Move the pipe ends above 4 before they are put on 3 and 4. */
        int in = extra_in >= 0 ? fcntl(extra_in, F_DUPFD, 10) : -1;
        int o = extra_out >= 0 ? fcntl(extra_out, F_DUPFD, 10) : -1;
        int so = out_fd >= 0 ? fcntl(out_fd, F_DUPFD, 10) : -1;
        dup2(devnull, 0);
        dup2(so >= 0 ? so : devnull, 1);
        dup2(err >= 0 ? err : devnull, 2);
        if (in >= 0)
            dup2(in, 3);
        if (o >= 0)
            dup2(o, 4);
        for (int fd = in >= 0 || o >= 0 ? 5 : 3; fd < 1024; fd++)
            close(fd);
        execv(chromium, (char *const *)argv);
        fprintf(stderr, "exec %s: %s\n", chromium, strerror(errno));
        _exit(127);
    }
    return pid;
}

/* Waits for pid until deadline (td_now() seconds), then kills its group.
 * Returns the exit status, or -1 when it had to be killed. */
static int reap_chromium(pid_t pid, double deadline)
{
    int status = 0;
    for (;;) {
        pid_t w = waitpid(pid, &status, WNOHANG);
        if (w == pid)
            break;
        if (w < 0 && errno != EINTR)
            return -1;
        if (td_now() > deadline) {
            kill(-pid, SIGKILL);
            kill(pid, SIGKILL);
            waitpid(pid, &status, 0);
            return -1;
        }
        sleep_ms(50);
    }
    kill(-pid, SIGKILL);    /* helpers left behind in its group */
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

static void print_log_tail(const char *log)
{
    FILE *f = fopen(log, "r");
    if (!f)
        return;
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    fseek(f, size > 4000 ? size - 4000 : 0, SEEK_SET);
    char buf[4001];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    buf[n] = '\0';
    fprintf(stderr, "--- chromium log (tail) ---\n%s\n---\n", buf);
    fclose(f);
}

/*
 * Loads url in headless Chromium with virtual time and returns the DOM it
 * dumps (malloc'd; NULL after printing why).
 */
static char *dump_dom(const char *url)
{
    char log[PATH_MAX];
    snprintf(log, sizeof log, "%s/chromium-%d.log", tmp_root, profiles + 1);
    char *profile = td_fmt("--user-data-dir=%s", new_profile());
    const char *args[] = {
        "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--no-first-run", "--mute-audio", profile, "--virtual-time-budget=10000",
        "--window-size=1400,1000", "--dump-dom", url, NULL};
    int fds[2];
    REQUIRE(pipe(fds) == 0);
    double t0 = td_now();
    pid_t pid = spawn_chromium(args, fds[1], log, -1, -1);
    close(fds[1]);
    free(profile);
    if (pid < 0) {
        close(fds[0]);
        return NULL;
    }
    td_text dom = {0};
    double deadline = t0 + CHROMIUM_TIMEOUT;
    bool timed_out = false;
    for (;;) {
        int left = (int)((deadline - td_now()) * 1000);
        if (left <= 0) {
            timed_out = true;
            break;
        }
        struct pollfd pfd = {fds[0], POLLIN, 0};
        int pr = poll(&pfd, 1, left);
        if (pr < 0 && errno == EINTR)
            continue;
        if (pr <= 0) {
            timed_out = pr == 0;
            break;
        }
        char buf[65536];
        ssize_t got = read(fds[0], buf, sizeof buf - 1);
        if (got < 0 && errno == EINTR)
            continue;
        if (got <= 0)
            break;
        buf[got] = '\0';
        td_text_append(&dom, "%s", buf);
    }
    close(fds[0]);
    int rc = reap_chromium(pid, timed_out ? td_now() : deadline);
    fprintf(stderr, "dump-dom %s: %.1f s, %zu bytes, status %d\n", url, td_now() - t0, dom.len, rc);
    if (timed_out || rc != 0 || dom.len == 0) {
        fprintf(stderr, "chromium failed on %s (%s, status %d)\n", url,
                timed_out ? "timed out" : "exited", rc);
        print_log_tail(log);
        free(dom.s);
        return NULL;
    }
    return dom.s;
}

/* Takes a 1400x1000 screenshot of url into path; true when Chromium says
 * it succeeded. */
static bool screenshot(const char *url, const char *path)
{
    char log[PATH_MAX];
    snprintf(log, sizeof log, "%s/chromium-%d.log", tmp_root, profiles + 1);
    char *profile = td_fmt("--user-data-dir=%s", new_profile());
    char *shot = td_fmt("--screenshot=%s", path);
    const char *args[] = {
        "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--no-first-run", "--mute-audio", "--hide-scrollbars", profile,
        "--virtual-time-budget=10000", "--window-size=1400,1000", shot, url, NULL};
    double t0 = td_now();
    pid_t pid = spawn_chromium(args, -1, log, -1, -1);
    free(profile);
    free(shot);
    if (pid < 0)
        return false;
    int rc = reap_chromium(pid, t0 + CHROMIUM_TIMEOUT);
    fprintf(stderr, "screenshot %s: %.1f s, status %d\n", url, td_now() - t0, rc);
    if (rc != 0)
        print_log_tail(log);
    return rc == 0;
}

/* ---- reading the dumped DOM ------------------------------------------- */

/* Undoes the HTML serializer's escapes in s (in place). */
static void unescape_html(char *s)
{
    static const struct {
        const char *from;
        char to;
    } ents[] = {{"&amp;", '&'}, {"&lt;", '<'}, {"&gt;", '>'}, {"&quot;", '"'}, {"&#39;", '\''},
                {"&nbsp;", ' '}};
    char *w = s;
    for (const char *r = s; *r;) {
        bool done = false;
        for (size_t i = 0; i < sizeof ents / sizeof ents[0] && !done; i++) {
            size_t n = strlen(ents[i].from);
            if (strncmp(r, ents[i].from, n) == 0) {
                *w++ = ents[i].to;
                r += n;
                done = true;
            }
        }
        if (!done)
            *w++ = *r++;
    }
    *w = '\0';
}

/* The start tag holding text at *at (NULL: not found); malloc'd. */
static char *tag_around(const char *dom, const char *at)
{
    if (!at)
        return NULL;
    const char *lt = at;
    while (lt > dom && *lt != '<')
        lt--;
    const char *gt = strchr(at, '>');
    if (*lt != '<' || !gt)
        return NULL;
    return strndup(lt, (size_t)(gt - lt + 1));
}

/* The value of attribute name in tag (unescaped, malloc'd), or NULL. */
static char *attr_of(const char *tag, const char *name)
{
    if (!tag)
        return NULL;
    char *key = td_fmt(" %s=\"", name);
    const char *p = strstr(tag, key);
    size_t klen = strlen(key);
    free(key);
    if (!p)
        return NULL;
    p += klen;
    const char *end = strchr(p, '"');
    if (!end)
        return NULL;
    char *v = strndup(p, (size_t)(end - p));
    unescape_html(v);
    return v;
}

static double attr_num(const char *tag, const char *name)
{
    char *v = attr_of(tag, name);
    char *end = NULL;
    double d = v ? strtod(v, &end) : NAN;
    if (v && (end == v || *end))
        d = NAN;
    free(v);
    return d;
}

/* The data-value of the first data-field="field" element after at (a
 * point in dom), or NAN. */
static double field_num(const char *dom, const char *at, const char *field)
{
    char *needle = td_fmt("data-field=\"%s\"", field);
    char *tag = at ? tag_around(dom, strstr(at, needle)) : NULL;
    double v = attr_num(tag, "data-value");
    free(tag);
    free(needle);
    return v;
}

/* The start tag of the element whose attribute is name="value". */
static char *find_tag(const char *dom, const char *name, const char *value)
{
    char *needle = td_fmt("%s=\"%s\"", name, value);
    const char *at = dom ? strstr(dom, needle) : NULL;
    free(needle);
    return tag_around(dom, at);
}

/* The value of attribute attr of that element (unescaped, malloc'd), or
 * NULL. */
static char *find_attr(const char *dom, const char *name, const char *value, const char *attr)
{
    char *tag = find_tag(dom, name, value);
    char *v = attr_of(tag, attr);
    free(tag);
    return v;
}

/* The text right after the start tag found by marker (up to the next
 * '<'), within [from, limit); unescaped, malloc'd. */
static char *text_after(const char *from, const char *limit, const char *marker)
{
    const char *at = strstr(from, marker);
    if (!at || (limit && at >= limit))
        return NULL;
    const char *gt = strchr(at, '>');
    if (!gt)
        return NULL;
    const char *lt = strchr(gt + 1, '<');
    if (!lt)
        return NULL;
    char *t = strndup(gt + 1, (size_t)(lt - gt - 1));
    unescape_html(t);
    return t;
}

static size_t occurrences(const char *s, const char *needle)
{
    size_t n = 0;
    for (const char *p = s ? strstr(s, needle) : NULL; p; p = strstr(p + 1, needle))
        n++;
    return n;
}

/* "99.5%" as the page prints a rate with digits decimals. */
static void pct_text(double v, int digits, char *buf, size_t size)
{
    snprintf(buf, size, "%.*f%%", digits, v * 100.0);
}

/* ---- the views -------------------------------------------------------- */

static void check_served_assets(td_http *h)
{
    const char *root = getenv("COMPATD_SOURCE_ROOT");
    static const char *const files[] = {"index.html", "app.js", "app.css"};
    for (size_t i = 0; root && i < sizeof files / sizeof files[0]; i++) {
        char *path = td_fmt("%s/server/web/%s", root, files[i]);
        FILE *f = fopen(path, "rb");
        CHECK(f != NULL);
        td_text src = {0};
        char buf[8192];
        size_t n;
        while (f && (n = fread(buf, 1, sizeof buf - 1, f)) > 0) {
            buf[n] = '\0';
            td_text_append(&src, "%s", buf);
        }
        if (f)
            fclose(f);
        char *url = i == 0 ? td_fmt("/") : td_fmt("/ui/%s", files[i]);
        td_reply r;
        td_request req = {.method = "GET", .path = url};
        CHECK_EQ(td_http_send(h, &req, &r), 200);
        CHECK(src.s && r.len == src.len && memcmp(r.body, src.s, src.len) == 0);
        td_reply_finish(&r);
        free(url);
        free(path);
        free(src.s);
    }
}

/* The overview: galleries with coverage, the matrix against
 * GET /v1/compatibility, the refresh stamp. */
static void check_overview(td_http *h, const char *dom, const scenario *s)
{
    REQUIRE(dom != NULL);
    char *conn = find_attr(dom, "data-view", "overview", "data-connection");
    CHECK_STREQ(conn, "ok");
    free(conn);
    CHECK(strstr(dom, "id=\"banner-unreachable\"") == NULL);
    CHECK(strstr(dom, "id=\"banner-auth\"") == NULL);

    /* "updated hh:mm:ss" */
    char *updated = text_after(dom, NULL, "id=\"updated\"");
    int hh, mm, ss;
    char extra;
    CHECK(updated && sscanf(updated, "updated %2d:%2d:%2d%c", &hh, &mm, &ss, &extra) == 3);
    if (updated && strncmp(updated, "updated ", 8) != 0)
        fprintf(stderr, "stamp: \"%s\"\n", updated);
    free(updated);

    /* galleries: items and coverage */
    const char *row = strstr(dom, "data-gallery=\"photos\"");
    CHECK(row != NULL);
    if (row) {
        char *items = tag_around(dom, strstr(row, "data-field=\"items\""));
        CHECK_EQ(attr_num(items, "data-value"), ITEMS);
        free(items);
        char *text = text_after(row, NULL, "data-field=\"items\"");
        CHECK_STREQ(text, "400");
        free(text);
        char *model = text_after(row, NULL, "data-field=\"model\"");
        CHECK_STREQ(model, "old");
        free(model);
    }
    static const struct {
        const char *key;
        int embeddings;
        const char *pct;
    } coverage[] = {{"photos/old", ITEMS, "100.0%"}, {"photos/new-good", BACKFILL, "30.0%"}};
    for (size_t i = 0; i < sizeof coverage / sizeof coverage[0]; i++) {
        char *tag = find_tag(dom, "data-coverage", coverage[i].key);
        CHECK(tag != NULL);
        CHECK_EQ(attr_num(tag, "data-embeddings"), coverage[i].embeddings);
        CHECK_EQ(attr_num(tag, "data-items"), ITEMS);
        free(tag);
        char *needle = td_fmt("data-coverage=\"%s\"", coverage[i].key);
        const char *at = strstr(dom, needle);
        char *p = at ? text_after(at, NULL, "class=\"coverage-pct\"") : NULL;
        CHECK_STREQ(p, coverage[i].pct);
        free(p);
        free(needle);
    }
    CHECK(find_tag(dom, "data-coverage", "photos/new-bad") == NULL);

    /* the matrix, cell by cell, against the API */
    td_reply r;
    CHECK_EQ(td_http_json(h, "GET", "/v1/compatibility", NULL, &r), 200);
    const cJSON *g = NULL, *gi;
    cJSON_ArrayForEach(gi, cJSON_GetObjectItemCaseSensitive(r.json, "galleries"))
        if (td_json_str(gi, "gallery") && strcmp(td_json_str(gi, "gallery"), "photos") == 0)
            g = gi;
    CHECK(g != NULL);
    const cJSON *pairs = cJSON_GetObjectItemCaseSensitive(g, "pairs");
    CHECK_EQ(cJSON_GetArraySize(pairs), 3);
    int seen_pass = 0, seen_fail = 0, seen_adapted = 0;
    const cJSON *p;
    cJSON_ArrayForEach(p, pairs) {
        const char *qm = td_json_str(p, "query_model");
        const char *verdict = td_json_str(p, "verdict");
        const char *adapter = td_json_str(p, "adapter");
        REQUIRE(qm && verdict);
        /* an adapted pair is a row of its own: its cell's key names it */
        char *key = adapter ? td_fmt("photos/%s/%s", qm, adapter) : td_fmt("photos/%s", qm);
        char *cell = find_tag(dom, "data-cell", key);
        CHECK(cell != NULL);
        if (!cell)
            fprintf(stderr, "no matrix cell %s\n", key);
        char *v = attr_of(cell, "data-verdict");
        CHECK_STREQ(v, verdict);
        free(v);
        CHECK(cell && strstr(cell, verdict[0] == 'p' ? "cell-pass" : "cell-fail"));
        CHECK_NEAR(attr_num(cell, "data-cross-top1"), td_json_num(p, "cross_top1"), 1e-12);
        CHECK_NEAR(attr_num(cell, "data-baseline-top1"), td_json_num(p, "baseline_top1"), 1e-12);
        CHECK_NEAR(attr_num(cell, "data-nfr"), td_json_num(p, "nfr"), 1e-12);
        CHECK_EQ(attr_num(cell, "data-evaluation"), td_json_num(p, "evaluation"));
        /* what a person reads, and where the cell leads */
        char *needle = td_fmt("data-cell=\"%s\"", key);
        const char *at = strstr(dom, needle);
        const char *end = at ? strstr(at, "</td>") : NULL;
        char want[32];
        if (at && end) {
            char *t = text_after(at, end, "data-field=\"cross_top1\"");
            pct_text(td_json_num(p, "cross_top1"), 1, want, sizeof want);
            CHECK_STREQ(t, want);
            free(t);
            t = text_after(at, end, "data-field=\"baseline_top1\"");
            pct_text(td_json_num(p, "baseline_top1"), 1, want, sizeof want);
            CHECK_STREQ(t, want);
            free(t);
            t = text_after(at, end, "data-field=\"nfr\"");
            pct_text(td_json_num(p, "nfr"), 2, want, sizeof want);
            CHECK_STREQ(t, want);
            free(t);
            t = text_after(at, end, "class=\"badge");
            CHECK_STREQ(t, verdict[0] == 'p' ? "PASS" : "FAIL");
            free(t);
            char *href = td_fmt("href=\"#/evaluations/%.0f\"", td_json_num(p, "evaluation"));
            CHECK(strstr(at, href) && strstr(at, href) < end);
            free(href);
        } else {
            CHECK(!"matrix cell closed");
        }
        if (adapter) {
            CHECK_STREQ(adapter, "good-to-old");
            CHECK_STREQ(verdict, "pass");
            CHECK_EQ(td_json_num(p, "evaluation"), s->eval_adapted);
            seen_adapted++;
        } else if (strcmp(qm, "new-good") == 0) {
            CHECK_STREQ(verdict, "pass");
            seen_pass++;
        } else if (strcmp(qm, "new-bad") == 0) {
            CHECK_STREQ(verdict, "fail");
            seen_fail++;
        }
        free(needle);
        free(cell);
        free(key);
    }
    CHECK_EQ(seen_pass, 1);
    CHECK_EQ(seen_fail, 1);
    CHECK_EQ(seen_adapted, 1);
    /* the adapted row: "new-good via good-to-old", leading to the adapter */
    char *arow = find_tag(dom, "data-row", "new-good via good-to-old");
    char *aname = attr_of(arow, "data-adapter");
    CHECK_STREQ(aname, "good-to-old");
    free(aname);
    free(arow);
    char *alink = find_tag(dom, "data-adapter-link", "good-to-old");
    char *ahref = attr_of(alink, "href");
    CHECK_STREQ(ahref, "#/adapters/good-to-old");
    free(ahref);
    free(alink);
    /* and the adapters list under the matrix */
    const char *lrow = strstr(dom, "data-adapter-row=\"good-to-old\"");
    CHECK(lrow && strstr(lrow, "href=\"#/adapters/good-to-old\""));
    /* the other kinds of cell */
    static const struct {
        const char *cell, *verdict, *cls;
    } others[] = {{"photos/old", "self", "cell-self"}, {"archive/old", "self", "cell-self"},
                  {"archive/new-good", "none", "cell-none"},
                  {"archive/new-bad", "untested", "cell-untested"},
                  {"archive/new-good/good-to-old", "untested", "cell-untested"}};
    for (size_t i = 0; i < sizeof others / sizeof others[0]; i++) {
        char *tag = find_tag(dom, "data-cell", others[i].cell);
        char *sv = attr_of(tag, "data-verdict");
        CHECK_STREQ(sv, others[i].verdict);
        CHECK(tag && strstr(tag, others[i].cls));
        free(sv);
        free(tag);
    }
    char *none = find_tag(dom, "data-cell", "archive/new-good");
    CHECK(none && isnan(attr_num(none, "data-baseline-top1")));
    free(none);
    char *archive = find_tag(dom, "data-share", "archive");
    CHECK_EQ(attr_num(archive, "data-pairs"), 0);
    free(archive);
    char *cov = find_tag(dom, "data-coverage", "archive/old");
    CHECK_EQ(attr_num(cov, "data-embeddings"), ARCHIVE_ITEMS);
    free(cov);
    char *share = find_tag(dom, "data-share", "photos");
    CHECK_EQ(attr_num(share, "data-pairs"), td_json_num(g, "ac.pairs"));
    CHECK_EQ(attr_num(share, "data-passed"), td_json_num(g, "ac.passed"));
    CHECK_NEAR(attr_num(share, "data-value"), 2.0 / 3.0, 1e-12);    /* the adapted pair counts */
    free(share);
    /* AM beside it: the mean cross top-1 of the same pairs. */
    char *am = find_tag(dom, "data-am", "photos");
    CHECK_NEAR(attr_num(am, "data-value"), td_json_num(g, "am"), 1e-12);
    free(am);
    CHECK(strstr(dom, "id=\"legend\"") != NULL);
    td_reply_finish(&r);
}

/* The history of (photos, model): one chart point per evaluation. */
static void check_history(td_http *h, const char *dom, const char *model)
{
    REQUIRE(dom != NULL);
    td_reply r;
    char *path = td_fmt("/v1/galleries/photos/evaluations?query_model=%s&limit=1000", model);
    CHECK_EQ(td_http_json(h, "GET", path, NULL, &r), 200);
    const cJSON *evs = cJSON_GetObjectItemCaseSensitive(r.json, "evaluations");
    /* the history is the raw model's: an adapter's evaluations are another pair */
    int n = 0;
    const cJSON *e;
    cJSON_ArrayForEach(e, evs) {
        if (td_json_str(e, "adapter")) {
            char *row = td_fmt("data-eval-row=\"%.0f\"", td_json_num(e, "id"));
            CHECK(strstr(dom, row) == NULL);
            free(row);
        } else {
            n++;
        }
    }
    CHECK_EQ(n, ROUNDS);
    CHECK(strstr(dom, "<svg") != NULL);
    char *svg = find_tag(dom, "id", "chart-top1");
    CHECK(svg && strncmp(svg, "<svg", 4) == 0);
    free(svg);
    static const char *const series[] = {"cross_top1", "baseline_top1", "nfr"};
    for (size_t i = 0; i < 3; i++) {
        char *line = find_tag(dom, "data-series", series[i]);
        CHECK(line && strncmp(line, "<polyline", 9) == 0);
        char *points = attr_of(line, "points");
        /* "x,y x,y ...": as many pairs as evaluations */
        CHECK(points != NULL);
        CHECK_EQ(points ? (long long)occurrences(points, ",") : -1, n);
        CHECK_EQ(points ? (long long)occurrences(points, " ") + 1 : -1, n);
        free(points);
        free(line);
    }
    /* the table below: a row per evaluation, newest first, with links */
    const char *last = dom;
    cJSON_ArrayForEach(e, evs) {
        if (td_json_str(e, "adapter"))
            continue;
        char *id = td_fmt("%.0f", td_json_num(e, "id"));
        char *needle = td_fmt("data-eval-row=\"%s\"", id);
        const char *at = strstr(dom, needle);
        CHECK(at != NULL && at > last);
        if (at) {
            last = at;
            char *href = td_fmt("href=\"#/evaluations/%s\"", id);
            CHECK(strstr(at, href) != NULL);
            free(href);
            CHECK_NEAR(field_num(dom, at, "cross_top1"), td_json_num(e, "cross.top1"), 1e-12);
            CHECK_NEAR(field_num(dom, at, "nfr"), td_json_num(e, "flips.nfr"), 1e-12);
        }
        free(needle);
        free(id);
    }
    td_reply_finish(&r);
    free(path);
}

/* The backfill: mixed evaluations of new-good on photos at its 30 %,
 * then after backfilling to 70 % and to every item. */
static void make_backfill(td_http *h, scenario *s, td_rng *rng)
{
    static float fresh[ITEMS][DIM];
    static const int upto[] = {BACKFILL, ITEMS * 7 / 10, ITEMS};
    for (int i = 0; i < ITEMS; i++)
        for (int k = 0; k < DIM; k++)
            fresh[i][k] = s->item[i][k] + (float)(td_rng_gauss(rng) * 0.05);
    for (int step = 0; step < 3; step++) {
        if (step > 0)
            upsert(h, "photos", "new-good", upto[step - 1], upto[step],
                   (const float (*)[DIM])fresh, false);
        CHECK(evaluate_view(h, s, rng, "new-good", NULL, ROUNDS + 1 + step, true) > 0);
    }
}

/* The backfill curve on the history of (photos, new-good): a point per
 * coverage of the mixed evaluations GET .../evaluations lists, at their
 * cross top-1 and NFR, and the trapezoid area under cross top-1.  Returns
 * the newest mixed evaluation's id. */
static long long check_backfill(td_http *h, const char *dom)
{
    REQUIRE(dom != NULL);
    td_reply r;
    CHECK_EQ(td_http_json(h, "GET", "/v1/galleries/photos/evaluations?query_model=new-good"
                          "&limit=1000", NULL, &r), 200);
    double cov[8], top1[8], nfr[8];
    long long ids[8];
    int n = 0;
    const cJSON *e;
    cJSON_ArrayForEach(e, td_json_at(r.json, "evaluations")) {
        if (strcmp(td_json_str(e, "gallery_view"), "mixed") != 0 || td_json_str(e, "adapter"))
            continue;
        REQUIRE(n < 8);
        cov[n] = td_json_num(e, "coverage");
        top1[n] = td_json_num(e, "cross.top1");
        nfr[n] = td_json_num(e, "flips.nfr");
        ids[n++] = (long long)td_json_num(e, "id");
    }
    td_reply_finish(&r);
    CHECK_EQ(n, 3);
    /* newest first, and the backfill only grew: coverage descends */
    for (int i = 1; i < n; i++)
        CHECK(cov[i] < cov[i - 1]);
    CHECK_NEAR(cov[n - 1], (double)BACKFILL / ITEMS, 1e-12);
    CHECK_EQ(cov[0], 1.0);
    double area = 0.0;
    for (int i = n - 1; i > 0; i--)
        area += (cov[i - 1] - cov[i]) * (top1[i - 1] + top1[i]) / 2.0;

    char *svg = find_tag(dom, "id", "chart-backfill");
    CHECK(svg && strncmp(svg, "<svg", 4) == 0);
    CHECK_EQ(attr_num(svg, "data-points"), n);
    free(svg);
    static const char *const series[] = {"backfill-cross", "backfill-nfr"};
    for (size_t s = 0; s < 2; s++) {
        char *line = find_tag(dom, "data-series", series[s]);
        CHECK(line && strncmp(line, "<polyline", 9) == 0);
        CHECK_EQ(attr_num(line, "data-count"), n);
        free(line);
        int seen = 0;
        for (const char *p = strstr(dom, "<circle"); p; p = strstr(p + 1, "<circle")) {
            char *tag = tag_around(dom, p + 1);
            char *ser = attr_of(tag, "data-series");
            if (ser && strcmp(ser, series[s]) == 0) {
                long long id = (long long)attr_num(tag, "data-evaluation");
                int i = 0;
                while (i < n && ids[i] != id)
                    i++;
                CHECK(i < n);
                if (i < n) {
                    seen++;
                    CHECK_NEAR(attr_num(tag, "data-coverage"), cov[i], 1e-12);
                    CHECK_NEAR(attr_num(tag, "data-value"), s ? nfr[i] : top1[i], 1e-12);
                }
            }
            free(ser);
            free(tag);
        }
        CHECK_EQ(seen, n);
    }
    char *auc = find_tag(dom, "id", "backfill-auc");
    CHECK(auc != NULL);
    CHECK_NEAR(attr_num(auc, "data-value"), area, 1e-9);
    CHECK_NEAR(attr_num(auc, "data-from"), cov[n - 1], 1e-12);
    CHECK_NEAR(attr_num(auc, "data-to"), cov[0], 1e-12);
    free(auc);
    fprintf(stderr, "backfill curve: %d points, area %.4f\n", n, area);
    /* the time line charts stay of the gallery_model evaluations */
    char *top = find_tag(dom, "id", "chart-top1");
    CHECK_EQ(attr_num(top, "data-points"), ROUNDS);
    free(top);
    /* the table marks the mixed rows with their coverage */
    for (int i = 0; i < n; i++) {
        char *row = td_fmt("data-eval-row=\"%lld\"", ids[i]);
        const char *at = strstr(dom, row);
        CHECK(at != NULL);
        char *tag = at ? tag_around(dom, strstr(at, "data-mixed=")) : NULL;
        CHECK_NEAR(attr_num(tag, "data-mixed"), cov[i], 1e-12);
        free(tag);
        free(row);
    }
    return n > 0 ? ids[0] : -1;
}

/* The number in the data-value of adapter fact `fact`, or NAN. */
static double fact_num(const char *dom, const char *fact)
{
    char *needle = td_fmt("data-fact=\"%s\"", fact);
    const char *at = strstr(dom, needle);
    free(needle);
    char *tag = at ? tag_around(dom, strstr(at, "data-value=")) : NULL;
    double v = attr_num(tag, "data-value");
    free(tag);
    return v;
}

/* The gallery page's live agreement: new-good's row says what GET
 * /v1/galleries/photos says. */
static void check_gallery_live(td_http *h, const char *dom)
{
    REQUIRE(dom != NULL);
    td_reply r;
    CHECK_EQ(td_http_json(h, "GET", "/v1/galleries/photos", NULL, &r), 200);
    const cJSON *live = NULL, *q;
    cJSON_ArrayForEach(q, td_json_at(r.json, "query_models"))
        if (strcmp(td_json_str(q, "model"), "new-good") == 0)
            live = cJSON_GetObjectItemCaseSensitive(q, "live");
    REQUIRE(cJSON_IsObject(live));
    CHECK_EQ(td_json_num(live, "queries"), LIVE_QUERIES);
    const char *row = strstr(dom, "data-live-model=\"new-good\"");
    CHECK(row != NULL);
    static const char *const fields[] = {"queries", "overlap_at_k", "top1_retained"};
    for (size_t f = 0; row && f < sizeof fields / sizeof fields[0]; f++) {
        char *needle = td_fmt("data-field=\"%s\"", fields[f]);
        char *tag = tag_around(dom, strstr(row, needle));
        CHECK_NEAR(attr_num(tag, "data-value"), td_json_num(live, fields[f]), 1e-12);
        free(tag);
        free(needle);
    }
    CHECK(!strstr(dom, "data-live-model=\"new-bad\""));   /* never shadowed */
    td_reply_finish(&r);
}

/* The adapter's page: its fit numbers as GET /v1/adapters/{name} says,
 * and the evaluations that used it, linked. */
static void check_adapter(td_http *h, const char *dom, long long eval_id)
{
    REQUIRE(dom != NULL);
    td_reply r;
    CHECK_EQ(td_http_json(h, "GET", "/v1/adapters/good-to-old", NULL, &r), 200);
    char *title = find_attr(dom, "id", "adapter-title", "data-adapter");
    CHECK_STREQ(title, "good-to-old");
    free(title);
    const char *kind = strstr(dom, "data-fact=\"kind\"");
    char *k = kind ? text_after(kind, NULL, "<dd") : NULL;
    CHECK_STREQ(k, td_json_str(r.json, "kind"));
    free(k);
    CHECK_EQ(fact_num(dom, "dims"), td_json_num(r.json, "dim_from"));
    CHECK_EQ(fact_num(dom, "pairs"), td_json_num(r.json, "pairs"));
    CHECK_EQ(fact_num(dom, "pairs"), BACKFILL);
    CHECK_NEAR(fact_num(dom, "mean_cosine"), td_json_num(r.json, "fit.mean_cosine"), 1e-12);
    CHECK_NEAR(fact_num(dom, "cv_mean_cosine"), td_json_num(r.json, "fit.cv_mean_cosine"), 1e-12);
    CHECK(strstr(dom, "data-fact=\"created_at\"") != NULL);
    td_reply_finish(&r);
    CHECK_EQ(td_http_json(h, "GET", "/v1/adapters/good-to-old/evaluations", NULL, &r), 200);
    CHECK_EQ(cJSON_GetArraySize(td_json_at(r.json, "evaluations")), 1);
    char *id = td_fmt("%lld", eval_id);
    const char *row = strstr(dom, "data-adapter-evaluation=\"");
    char *rtag = tag_around(dom, row);
    char *rid = attr_of(rtag, "data-adapter-evaluation");
    CHECK_STREQ(rid, id);
    free(rid);
    free(rtag);
    char *href = td_fmt("href=\"#/evaluations/%s\"", id);
    CHECK(row && strstr(row, href));
    CHECK_NEAR(field_num(dom, row, "cross_top1"), td_json_num(r.json, "evaluations.0.cross_top1"),
               1e-12);
    char *verdict = find_attr(dom, "data-adapter-evaluation", id, "data-verdict");
    CHECK_STREQ(verdict, "pass");
    free(verdict);
    free(href);
    free(id);
    td_reply_finish(&r);
}

/* An evaluation's page: every metric, the by-label table sorted by
 * negative flips, the flipped probe ids. */
static void check_evaluation(td_http *h, const char *dom, long long id)
{
    REQUIRE(dom != NULL);
    td_reply r;
    char *path = td_fmt("/v1/evaluations/%lld", id);
    CHECK_EQ(td_http_json(h, "GET", path, NULL, &r), 200);
    const cJSON *rep = r.json;

    char *title = find_tag(dom, "id", "evaluation-title");
    CHECK_EQ(attr_num(title, "data-evaluation"), id);
    free(title);
    char *verdict = find_attr(dom, "id", "evaluation-verdict", "data-verdict");
    CHECK_STREQ(verdict, cJSON_IsTrue(td_json_at(rep, "compatible")) ? "pass" : "fail");
    free(verdict);
    char *crit = text_after(dom, NULL, "id=\"criterion\"");
    CHECK_STREQ(crit, td_json_str(rep, "criterion"));
    free(crit);

    static const char *const metrics[] = {
        "cross.top1", "cross.top5", "cross.top10", "cross.map", "baseline.top1",
        "baseline.top5", "baseline.top10", "baseline.map", "flips.negative",
        "flips.positive", "flips.nfr", "flips.nfi", "flips.pfr"};
    for (size_t i = 0; i < sizeof metrics / sizeof metrics[0]; i++) {
        char *tag = find_tag(dom, "data-metric", metrics[i]);
        CHECK(tag != NULL);
        CHECK_NEAR(attr_num(tag, "data-value"), td_json_num(rep, metrics[i]), 1e-12);
        free(tag);
    }
    static const struct {
        const char *fact;
        const char *field;
    } facts[] = {{"queries", "queries"}, {"skipped", "skipped"}, {"gallery_items", "gallery_items"}};
    for (size_t i = 0; i < sizeof facts / sizeof facts[0]; i++) {
        char *needle = td_fmt("data-fact=\"%s\"", facts[i].fact);
        const char *at = strstr(dom, needle);
        char *tag = at ? tag_around(dom, strstr(at, "data-value=")) : NULL;
        CHECK_EQ(attr_num(tag, "data-value"), td_json_num(rep, facts[i].field));
        free(tag);
        free(needle);
    }
    static const char *const texts[] = {"query_model", "gallery_model", "created_at"};
    for (size_t i = 0; i < 3; i++) {
        char *needle = td_fmt("data-fact=\"%s\"", texts[i]);
        const char *at = strstr(dom, needle);
        char *t = at ? text_after(at, NULL, "<dd") : NULL;
        const char *want = td_json_str(rep, texts[i]);
        char shown[64];
        /* created_at is shown as "2026-11-21 12:00:00 UTC" */
        if (i == 2 && want && strlen(want) == 20)
            snprintf(shown, sizeof shown, "%.10s %.8s UTC", want, want + 11);
        else
            snprintf(shown, sizeof shown, "%s", want ? want : "");
        CHECK_STREQ(t, shown);
        free(t);
        free(needle);
    }

    /* by label: every label once, negative flips non-increasing, values
     * those of the report */
    const cJSON *by = cJSON_GetObjectItemCaseSensitive(rep, "by_label");
    const char *table = strstr(dom, "id=\"by-label\"");
    CHECK(table != NULL);
    int rows = 0, max_flips = 0, distinct = 0;
    double prev = INFINITY;
    int last_flips = -1;
    const cJSON *l;
    cJSON_ArrayForEach(l, by) {
        int nf = (int)td_json_num(l, "negative_flips");
        if (nf > max_flips)
            max_flips = nf;
    }
    for (const char *at = table ? strstr(table, "data-label=\"") : NULL; at;
         at = strstr(at + 1, "data-label=\"")) {
        char *tag = tag_around(dom, at);
        char *label = attr_of(tag, "data-label");
        rows++;
        const cJSON *want = NULL;
        cJSON_ArrayForEach(l, by)
            if (label && strcmp(td_json_str(l, "label"), label) == 0)
                want = l;
        CHECK(want != NULL);
        const char *row_end = strstr(at, "</tr>");
        double nf = field_num(dom, at, "negative_flips");
        CHECK(nf <= prev);
        if (rows == 1)
            CHECK_EQ(nf, max_flips);
        if ((int)nf != last_flips)
            distinct++;
        last_flips = (int)nf;
        prev = nf;
        if (want) {
            CHECK_EQ(nf, td_json_num(want, "negative_flips"));
            CHECK_NEAR(field_num(dom, at, "cross_top1"), td_json_num(want, "cross_top1"), 1e-12);
            CHECK_NEAR(field_num(dom, at, "baseline_top1"), td_json_num(want, "baseline_top1"),
                       1e-12);
            char *q = text_after(at, row_end, "data-field=\"queries\"");
            char qs[32];
            snprintf(qs, sizeof qs, "%.0f", td_json_num(want, "queries"));
            CHECK_STREQ(q, qs);
            free(q);
            char *shown = text_after(at, row_end, "class=\"label-cell\"");
            CHECK_STREQ(shown, label);   /* markup in a label is text */
            free(shown);
        }
        free(label);
        free(tag);
    }
    CHECK_EQ(rows, cJSON_GetArraySize(by));
    fprintf(stderr, "evaluation %lld: %d labels, %d negative flips at most, %d distinct counts, "
            "%d flipped probes\n", id, rows, max_flips, distinct,
            cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(rep, "negative_flip_ids")));
    CHECK(distinct >= 3);   /* the order was put to the test */

    /* the flipped probe ids, all of them */
    const cJSON *ids = cJSON_GetObjectItemCaseSensitive(rep, "negative_flip_ids");
    CHECK(cJSON_GetArraySize(ids) > 0);
    char *list = find_tag(dom, "id", "flip-ids");
    CHECK_EQ(attr_num(list, "data-count"), cJSON_GetArraySize(ids));
    free(list);
    CHECK_EQ(occurrences(dom, "data-flip-id=\""), (size_t)cJSON_GetArraySize(ids));
    const cJSON *fid;
    cJSON_ArrayForEach(fid, ids) {
        char *tag = find_tag(dom, "data-flip-id", fid->valuestring);
        CHECK(tag != NULL);
        free(tag);
    }

    /* server text is never markup */
    CHECK(strstr(dom, "&lt;b&gt;&amp;x") != NULL);
    CHECK(strstr(dom, "<b>&amp;x</b>") == NULL);
    td_reply_finish(&r);
    free(path);
}

static void check_png(const char *path)
{
    FILE *f = fopen(path, "rb");
    CHECK(f != NULL);
    if (!f)
        return;
    unsigned char magic[8] = {0};
    size_t n = fread(magic, 1, sizeof magic, f);
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    fclose(f);
    CHECK_EQ(n, 8);
    CHECK(memcmp(magic, "\x89PNG\r\n\x1a\n", 8) == 0);
    CHECK(size > 20000);
    fprintf(stderr, "screenshot %s: %ld bytes\n", path, size);
}

/* ---- the DevTools protocol over a pipe -------------------------------- */

typedef struct devtools {
    pid_t pid;
    int to, from;           /* our ends: commands out, replies in */
    int next_id;
    char *session;          /* the page's session id */
    td_text buf;            /* bytes read, not yet split */
    size_t used;            /* of buf, consumed */
    double deadline;        /* the whole session's */
    char log[PATH_MAX];
} devtools;

/* Sends method(params) (params: a JSON object text or NULL) on the page's
 * session when it has one; returns the reply's "result" (the caller
 * deletes the returned root with cJSON_Delete(*root)), or NULL. */
static const cJSON *dt_call(devtools *dt, const char *method, cJSON *params, cJSON **root)
{
    *root = NULL;
    cJSON *msg = cJSON_CreateObject();
    int id = ++dt->next_id;
    cJSON_AddNumberToObject(msg, "id", id);
    if (dt->session)
        cJSON_AddStringToObject(msg, "sessionId", dt->session);
    cJSON_AddStringToObject(msg, "method", method);
    cJSON_AddItemToObject(msg, "params", params ? params : cJSON_CreateObject());
    char *text = cJSON_PrintUnformatted(msg);
    cJSON_Delete(msg);
    size_t len = strlen(text) + 1; /* with the NUL that ends a message */
    for (size_t off = 0; off < len;) {
        ssize_t w = write(dt->to, text + off, len - off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            fprintf(stderr, "devtools: write %s: %s\n", method, strerror(errno));
            free(text);
            return NULL;
        }
        off += (size_t)w;
    }
    free(text);
    for (;;) {
        /* a whole message in the buffer? */
        while (dt->buf.s && dt->used < dt->buf.len) {
            char *start = dt->buf.s + dt->used;
            char *nul = memchr(start, '\0', dt->buf.len - dt->used);
            if (!nul)
                break;
            dt->used += (size_t)(nul - start) + 1;
            cJSON *m = cJSON_Parse(start);
            const cJSON *mid = cJSON_GetObjectItemCaseSensitive(m, "id");
            if (cJSON_IsNumber(mid) && (int)mid->valuedouble == id) {
                *root = m;
                const cJSON *err = cJSON_GetObjectItemCaseSensitive(m, "error");
                if (err) {
                    char *e = cJSON_PrintUnformatted(err);
                    fprintf(stderr, "devtools: %s: %s\n", method, e);
                    free(e);
                    return NULL;
                }
                return cJSON_GetObjectItemCaseSensitive(m, "result");
            }
            cJSON_Delete(m);    /* an event, or another reply */
        }
        int left = (int)((dt->deadline - td_now()) * 1000);
        if (left <= 0) {
            fprintf(stderr, "devtools: %s: timed out\n", method);
            return NULL;
        }
        struct pollfd pfd = {dt->from, POLLIN, 0};
        int pr = poll(&pfd, 1, left);
        if (pr < 0 && errno == EINTR)
            continue;
        if (pr <= 0)
            continue;
        /* td_text holds text, but a message never holds a NUL: append raw */
        char chunk[65536];
        ssize_t got = read(dt->from, chunk, sizeof chunk);
        if (got < 0 && errno == EINTR)
            continue;
        if (got <= 0) {
            fprintf(stderr, "devtools: %s: chromium closed the pipe\n", method);
            return NULL;
        }
        if (dt->buf.len + (size_t)got + 1 > dt->buf.cap) {
            size_t cap = (dt->buf.len + (size_t)got + 1) * 2;
            char *s = realloc(dt->buf.s, cap);
            if (!s) {
                fprintf(stderr, "devtools: out of memory\n");
                exit(1);
            }
            dt->buf.s = s;
            dt->buf.cap = cap;
        }
        memcpy(dt->buf.s + dt->buf.len, chunk, (size_t)got);
        dt->buf.len += (size_t)got;
        dt->buf.s[dt->buf.len] = '\0';
    }
}

/* Starts Chromium with a page attached; false after printing why. */
static bool dt_start(devtools *dt, double seconds)
{
    memset(dt, 0, sizeof *dt);
    dt->deadline = td_now() + seconds;
    snprintf(dt->log, sizeof dt->log, "%s/chromium-%d.log", tmp_root, profiles + 1);
    char *profile = td_fmt("--user-data-dir=%s", new_profile());
    const char *args[] = {
        "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--no-first-run", "--mute-audio", profile, "--remote-debugging-pipe",
        "--window-size=1400,1000", "about:blank", NULL};
    int cmd[2], reply[2];
    REQUIRE(pipe(cmd) == 0 && pipe(reply) == 0);
    dt->pid = spawn_chromium(args, -1, dt->log, cmd[0], reply[1]);
    free(profile);
    close(cmd[0]);
    close(reply[1]);
    dt->to = cmd[1];
    dt->from = reply[0];
    signal(SIGPIPE, SIG_IGN);
    if (dt->pid < 0)
        return false;
    cJSON *root;
    cJSON *params = cJSON_CreateObject();
    cJSON_AddStringToObject(params, "url", "about:blank");
    const cJSON *res = dt_call(dt, "Target.createTarget", params, &root);
    const char *target = td_json_str(res, "targetId");
    char *target_id = target ? strdup(target) : NULL;
    cJSON_Delete(root);
    if (!target_id)
        return false;
    params = cJSON_CreateObject();
    cJSON_AddStringToObject(params, "targetId", target_id);
    cJSON_AddBoolToObject(params, "flatten", 1);
    free(target_id);
    res = dt_call(dt, "Target.attachToTarget", params, &root);
    const char *session = td_json_str(res, "sessionId");
    dt->session = session ? strdup(session) : NULL;
    cJSON_Delete(root);
    return dt->session != NULL;
}

static bool dt_navigate(devtools *dt, const char *url)
{
    cJSON *root, *params = cJSON_CreateObject();
    cJSON_AddStringToObject(params, "url", url);
    const cJSON *res = dt_call(dt, "Page.navigate", params, &root);
    bool ok = res != NULL && !td_json_str(res, "errorText");
    cJSON_Delete(root);
    return ok;
}

/* Evaluates expr in the page; its value as a malloc'd string (JSON of
 * the value), or NULL. */
static char *dt_eval(devtools *dt, const char *expr)
{
    cJSON *root, *params = cJSON_CreateObject();
    cJSON_AddStringToObject(params, "expression", expr);
    cJSON_AddBoolToObject(params, "returnByValue", 1);
    const cJSON *res = dt_call(dt, "Runtime.evaluate", params, &root);
    const cJSON *value = td_json_at(res, "result.value");
    char *out = NULL;
    if (cJSON_IsString(value))
        out = strdup(value->valuestring);
    else if (value)
        out = cJSON_PrintUnformatted(value);
    cJSON_Delete(root);
    return out;
}

/* Polls expr (a boolean expression) every 100 ms until it is true or
 * seconds pass. */
static bool dt_wait(devtools *dt, const char *expr, double seconds, const char *what)
{
    double until = td_now() + seconds;
    for (;;) {
        char *v = dt_eval(dt, expr);
        bool yes = v && strcmp(v, "true") == 0;
        free(v);
        if (yes)
            return true;
        if (td_now() > until || td_now() > dt->deadline) {
            fprintf(stderr, "devtools: waited %.0f s in vain for %s\n", seconds, what);
            return false;
        }
        sleep_ms(100);
    }
}

static int dt_stop(devtools *dt)
{
    if (dt->pid > 0) {
        cJSON *root;
        dt->deadline = td_now() + 5;
        dt_call(dt, "Browser.close", NULL, &root);
        cJSON_Delete(root);
    }
    close(dt->to);
    close(dt->from);
    int rc = dt->pid > 0 ? reap_chromium(dt->pid, td_now() + 10) : -1;
    free(dt->session);
    free(dt->buf.s);
    return rc;
}

/* JS: the text of the element with that id, or "". */
#define TEXT_OF(id) "(document.getElementById('" id "')||{}).textContent||''"

/*
 * With keys: the page asks for one, says a wrong one was refused, shows
 * the matrix with the right one (sent as a Bearer token); then the daemon
 * dies and the page says so, keeping what it showed.
 */
static void check_live(td_daemon *d, const char *key)
{
    devtools dt;
    char *url = td_fmt("http://127.0.0.1:%d/", td_daemon_port(d));
    double t0 = td_now();
    bool up = dt_start(&dt, 100);
    CHECK(up);
    if (!up) {
        print_log_tail(dt.log);
        dt_stop(&dt);
        free(url);
        return;
    }
    CHECK(dt_navigate(&dt, url));
    CHECK(dt_wait(&dt, "document.body && document.body.dataset.connection === 'auth' && "
                       "!!document.getElementById('api-key-input')", 30, "the key banner"));
    char *t = dt_eval(&dt, TEXT_OF("banner-auth"));
    CHECK(t && strstr(t, "An API key is needed"));
    free(t);
    CHECK(dt_wait(&dt, "!document.querySelector('[data-cell]')", 1, "no data without a key"));

    /* a wrong key */
    char *submit = td_fmt("(function(){var i=document.getElementById('api-key-input');"
                          "i.value='cdk_not_a_key';"
                          "document.getElementById('api-key-save').click();return true;})()");
    free(dt_eval(&dt, submit));
    free(submit);
    CHECK(dt_wait(&dt, "(" TEXT_OF("banner-auth") ").indexOf('refused') >= 0", 30,
                  "the refused-key banner"));

    /* the right one */
    submit = td_fmt("(function(){var i=document.getElementById('api-key-input');"
                    "i.value='%s';"
                    "document.getElementById('api-key-save').click();return true;})()", key);
    free(dt_eval(&dt, submit));
    free(submit);
    CHECK(dt_wait(&dt, "document.body.dataset.connection === 'ok' && "
                       "!!document.querySelector('[data-cell=\"photos/new-good\"][data-verdict=\"pass\"]')"
                       " && !document.getElementById('banner-auth')",
                  30, "the matrix with a key"));
    char *stored = dt_eval(&dt, "localStorage.getItem('compatd.apiKey')");
    CHECK_STREQ(stored, key);
    free(stored);

    /* the daemon goes away: the banner, and the last data still there */
    CHECK_EQ(td_daemon_kill(d), 0);
    CHECK(dt_wait(&dt, "document.body.dataset.connection === 'unreachable'", 30,
                  "the unreachable banner"));
    t = dt_eval(&dt, TEXT_OF("banner-unreachable"));
    CHECK(t && strstr(t, "Server unreachable — retrying"));
    free(t);
    char *kept = dt_eval(&dt, "(document.querySelector('[data-cell=\"photos/new-bad\"]')||"
                              "{dataset:{}}).dataset.verdict||''");
    CHECK_STREQ(kept, "fail");
    free(kept);
    t = dt_eval(&dt, TEXT_OF("updated"));
    CHECK(t && strncmp(t, "updated ", 8) == 0);
    free(t);
    /* it keeps retrying and keeps saying so */
    sleep_ms(5500);
    char *conn = dt_eval(&dt, "document.body.dataset.connection");
    CHECK_STREQ(conn, "unreachable");
    free(conn);
    CHECK_EQ(dt_stop(&dt), 0);
    fprintf(stderr, "devtools session: %.1f s\n", td_now() - t0);
    free(url);
}

/* ---- main ------------------------------------------------------------- */

int main(void)
{
    chromium = getenv("CHROMIUM");
    const char *shot_path = getenv("SCREENSHOT");
    if (!chromium || access(chromium, X_OK) != 0) {
        fprintf(stderr, "CHROMIUM is not set or not executable: skipped\n");
        return 77;
    }
    const char *tmp = getenv("TMPDIR");
    snprintf(tmp_root, sizeof tmp_root, "%s/compatd-dashboard-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    REQUIRE(mkdtemp(tmp_root) != NULL);

    td_rng rng = {td_seed(20240611)};
    td_daemon *d = td_daemon_create();
    REQUIRE(d != NULL);
    REQUIRE(td_daemon_start(d, NULL));
    td_http *h = td_http_create(d);
    REQUIRE(h != NULL);
    td_http_set_timeout(h, 120);

    double t0 = td_now();
    static scenario s;
    make_scenario(h, &s, &rng);
    fprintf(stderr, "scenario: %.1f s\n", td_now() - t0);
    check_served_assets(h);

    int port = td_daemon_port(d);
    char *base = td_fmt("http://127.0.0.1:%d/", port);

    char *dom = dump_dom(base);
    check_overview(h, dom, &s);
    free(dom);

    char *url = td_fmt("%s#/history/photos/new-good", base);
    dom = dump_dom(url);
    check_history(h, dom, "new-good");
    free(dom);
    free(url);

    /* the gallery page's backfill panel: items still missing per model */
    url = td_fmt("%s#/galleries/photos", base);
    dom = dump_dom(url);
    char *bf = dom ? find_tag(dom, "data-backfill", "photos/new-good") : NULL;
    CHECK_EQ(attr_num(bf, "data-missing"), ITEMS - BACKFILL);
    CHECK(dom && strstr(dom, "compatd backfill --gallery photos --model new-good"));
    free(bf);
    free(dom);
    free(url);

    url = td_fmt("%s#/evaluations/%lld", base, s.evals_bad[ROUNDS - 1]);
    dom = dump_dom(url);
    check_evaluation(h, dom, s.evals_bad[ROUNDS - 1]);
    free(dom);
    free(url);

    url = td_fmt("%s#/galleries/photos", base);
    dom = dump_dom(url);
    check_gallery_live(h, dom);
    free(dom);
    free(url);

    url = td_fmt("%s#/adapters/good-to-old", base);
    dom = dump_dom(url);
    check_adapter(h, dom, s.eval_adapted);
    free(dom);
    free(url);

    /* an evaluation that does not exist: said in the page */
    url = td_fmt("%s#/evaluations/999999", base);
    dom = dump_dom(url);
    CHECK(dom && strstr(dom, "id=\"view-error\""));
    free(dom);
    free(url);

    if (shot_path) {
        unlink(shot_path);
        CHECK(screenshot(base, shot_path));
        check_png(shot_path);
    }

    /* the backfill (after the screenshot, which shows the 30 %): mixed
     * evaluations at three coverages, the curve */
    make_backfill(h, &s, &rng);
    url = td_fmt("%s#/history/photos/new-good", base);
    dom = dump_dom(url);
    long long mixed_id = check_backfill(h, dom);
    free(dom);
    /* the curve's screenshot, beside the matrix's (SCREENSHOT's folder) */
    if (shot_path) {
        const char *slash = strrchr(shot_path, '/');
        char *curve = td_fmt("%.*sbackfill-curve.png", slash ? (int)(slash - shot_path + 1) : 0,
                             shot_path);
        unlink(curve);
        CHECK(screenshot(url, curve));
        check_png(curve);
        free(curve);
    }
    free(url);
    /* its newest point's report says its view and coverage */
    url = td_fmt("%s#/evaluations/%lld", base, mixed_id);
    dom = dump_dom(url);
    CHECK_EQ(fact_num(dom, "gallery_view"), 1.0);
    free(dom);
    free(url);

    /* Keys from now on: the first key counts at once. */
    char key[128] = "";
    CHECK_EQ(td_create_key(d, "dashboard", "read", key, sizeof key), 0);
    CHECK_EQ(strncmp(key, "cdk_", 4), 0);
    td_reply r;
    CHECK_EQ(td_http_json(h, "GET", "/v1/compatibility", NULL, &r), 401);
    td_reply_finish(&r);

    dom = dump_dom(base);
    CHECK(dom != NULL);
    char *conn = find_attr(dom, "data-view", "overview", "data-connection");
    CHECK_STREQ(conn, "auth");
    free(conn);
    CHECK(dom && strstr(dom, "id=\"banner-auth\""));
    CHECK(dom && strstr(dom, "id=\"api-key-input\"") && strstr(dom, "type=\"password\""));
    CHECK(dom && !strstr(dom, "data-cell="));
    free(dom);

    check_live(d, key);

    free(base);
    td_http_destroy(h);
    td_daemon_destroy(d);
    if (!getenv("COMPATD_KEEP") || strcmp(getenv("COMPATD_KEEP"), "1") != 0)
        nftw(tmp_root, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
    fprintf(stderr, "total: %.1f s\n", td_now() - t0);
    return check_exit();
}
