/*
 * daemon.c - the HTTP tests' harness (see daemon.h).
 *
 * A run's life: fork, point stdout and stderr at the run's log, exec
 * compatd on 127.0.0.1:0; the parent polls for the port file and then for
 * GET /readyz = 200.  Every end of a run goes through reap(), which
 * collects the exit status and scans the log, so no run escapes the
 * sanitizer check.  Every other program (compatd's commands, a test's
 * python3) starts in spawn() and ends in finish(), which scans its stderr
 * the same way.
 */
#include "daemon.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <math.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>
#include <sqlite3.h>

#define MAX_ARGS 64
#define LOG_PRINT_MAX (64 * 1024)   /* bytes of a log printed on failure */

struct td_daemon {
    char dir[PATH_MAX / 2];     /* the mkdtemp directory */
    char data_dir[PATH_MAX];    /* DIR/data */
    char port_file[PATH_MAX];   /* DIR/port */
    char log_path[PATH_MAX];    /* DIR/daemon-<run>.log of the current run */
    const char *exe;            /* $COMPATD */
    pid_t pid;                  /* 0 when not running */
    pid_t killer;               /* pending td_daemon_kill_later helper, or 0 */
    int port;                   /* bound port of the current or last run */
    int runs;                   /* runs started, names the logs */
    char ca_file[PATH_MAX];     /* td_daemon_set_tls: speak https; "" for http */
};

double td_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void sleep_ms(unsigned ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

/* --- logs ------------------------------------------------------------- */

/* The whole file at path, malloc'd and NUL-terminated, or NULL. */
static char *read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    char *buf = NULL;
    size_t n = 0, cap = 0;
    if (!f)
        return NULL;
    for (;;) {
        if (cap - n < 65536) {
            cap = cap ? cap * 2 : 65536;
            char *b = realloc(buf, cap + 1);
            if (!b) {
                free(buf);
                fclose(f);
                return NULL;
            }
            buf = b;
        }
        size_t got = fread(buf + n, 1, cap - n, f);
        n += got;
        if (got == 0)
            break;
    }
    fclose(f);
    buf[n] = '\0';
    if (len)
        *len = n;
    return buf;
}

static const char *const sanitizer_marks[] = {
    "ERROR: AddressSanitizer",
    "ERROR: LeakSanitizer",
    "runtime error:",
    NULL,
};

/* Prints up to LOG_PRINT_MAX bytes of the log from byte `from`. */
static void print_log_from(const td_daemon *d, const char *text, size_t len,
                           size_t from)
{
    size_t n = len - from < LOG_PRINT_MAX ? len - from : LOG_PRINT_MAX;
    fprintf(stderr, "---- %s (%zu bytes%s) ----\n", d->log_path, len,
            from ? ", from the first sanitizer report" : "");
    fwrite(text + from, 1, n, stderr);
    if (n < len - from)
        fprintf(stderr, "\n[... %zu more bytes]\n", len - from - n);
    fprintf(stderr, "---- end of log ----\n");
}

void td_daemon_print_log(const td_daemon *d)
{
    size_t len = 0;
    char *text = read_file(d->log_path, &len);
    if (!text) {
        fprintf(stderr, "(no log at %s)\n", d->log_path);
        return;
    }
    /* The tail is what explains a failure. */
    print_log_from(d, text, len, len > LOG_PRINT_MAX ? len - LOG_PRINT_MAX : 0);
    free(text);
}

/* True when the current run's log has no sanitizer report; prints it
 * from the first report otherwise. */
static bool log_clean(const td_daemon *d, pid_t pid)
{
    size_t len = 0;
    char *text = read_file(d->log_path, &len);
    if (!text)
        return true;
    const char *first = NULL;
    for (size_t i = 0; sanitizer_marks[i]; i++) {
        const char *p = strstr(text, sanitizer_marks[i]);
        if (p && (!first || p < first))
            first = p;
    }
    if (first) {
        size_t from = (size_t)(first - text);
        fprintf(stderr, "daemon pid %d: sanitizer report in its log\n", (int)pid);
        print_log_from(d, text, len, from > 4096 ? from - 4096 : 0);
    }
    free(text);
    return first == NULL;
}

/* --- processes -------------------------------------------------------- */

td_daemon *td_daemon_create(void)
{
    const char *exe = getenv("COMPATD");
    if (!exe || !*exe) {
        fprintf(stderr, "COMPATD is not set (the path of the compatd executable)\n");
        return NULL;
    }
    td_daemon *d = calloc(1, sizeof *d);
    if (!d)
        return NULL;
    d->exe = exe;
    const char *tmp = getenv("TMPDIR");
    snprintf(d->dir, sizeof d->dir, "%s/compatd-test-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp(d->dir)) {
        fprintf(stderr, "mkdtemp %s: %s\n", d->dir, strerror(errno));
        free(d);
        return NULL;
    }
    snprintf(d->data_dir, sizeof d->data_dir, "%s/data", d->dir);
    snprintf(d->port_file, sizeof d->port_file, "%s/port", d->dir);
    snprintf(d->log_path, sizeof d->log_path, "%s/daemon-0.log", d->dir);
    return d;
}

/*
 * Forks and runs argv[0] (searched in PATH when it has no '/') with argv,
 * stdin /dev/null, stdout out_fd and stderr err_fd.  The child dies with
 * the test (a failed REQUIRE, a meson timeout) instead of outliving it.
 * Returns the child's pid, or -1 after printing why when fork fails; the
 * caller still owns (and closes) out_fd and err_fd.
 */
static pid_t fork_exec(const char *const *argv, int out_fd, int err_fd)
{
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) {
        fprintf(stderr, "fork: %s\n", strerror(errno));
        return -1;
    }
    if (pid == 0) {
        pid_t parent = getppid();
        if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0 || getppid() != parent)
            _exit(127);
        int null_fd = open("/dev/null", O_RDONLY);
        if (null_fd >= 0)
            dup2(null_fd, 0);
        dup2(out_fd, 1);
        dup2(err_fd, 2);
        execvp(argv[0], (char *const *)argv);
        fprintf(stderr, "exec %s: %s\n", argv[0], strerror(errno));
        _exit(127);
    }
    return pid;
}

static double start_timeout(void)
{
    const char *s = getenv("COMPATD_START_TIMEOUT");
    double t = s ? atof(s) : 0;
    return t > 0 ? t : 120;
}

/* The port in the port file, or 0 while there is none. */
static int read_port(const td_daemon *d)
{
    char *text = read_file(d->port_file, NULL);
    if (!text)
        return 0;
    int port = atoi(text);
    free(text);
    return port > 0 && port < 65536 ? port : 0;
}

/*
 * Collects the exit of d's process (blocking, or polling when !block) and
 * judges it: returns 1 while it still runs, else 0 when it ended the way
 * `expect` says (a signal number, or 0 for exit status 0) with a clean
 * log, -1 otherwise.
 */
static int reap(td_daemon *d, int expect, bool block)
{
    int status = 0;
    pid_t r;
    do
        r = waitpid(d->pid, &status, block ? 0 : WNOHANG);
    while (r < 0 && errno == EINTR);
    if (r == 0)
        return 1;
    pid_t pid = d->pid;
    d->pid = 0;
    if (r < 0) {
        fprintf(stderr, "waitpid %d: %s\n", (int)pid, strerror(errno));
        return -1;
    }
    bool as_expected = expect ? WIFSIGNALED(status) && WTERMSIG(status) == expect
                              : WIFEXITED(status) && WEXITSTATUS(status) == 0;
    if (!as_expected) {
        if (WIFEXITED(status))
            fprintf(stderr, "daemon pid %d exited with status %d\n", (int)pid,
                    WEXITSTATUS(status));
        else if (WIFSIGNALED(status))
            fprintf(stderr, "daemon pid %d died of signal %d (%s)\n", (int)pid,
                    WTERMSIG(status), strsignal(WTERMSIG(status)));
        td_daemon_print_log(d);
    }
    bool clean = log_clean(d, pid);
    return as_expected && clean ? 0 : -1;
}

/* The scheme, host and port of d's current run, for URLs. */
static void base_url(const td_daemon *d, char *buf, size_t cap)
{
    snprintf(buf, cap, "%s://127.0.0.1:%d", d->ca_file[0] ? "https" : "http", d->port);
}

/* Makes c trust d's certificate when d speaks https. */
static void set_tls(CURL *c, const td_daemon *d)
{
    if (d->ca_file[0])
        curl_easy_setopt(c, CURLOPT_CAINFO, d->ca_file);
}

/* GET /readyz with a throw-away handle; its status or 0. */
static long probe_ready(const td_daemon *d)
{
    CURL *c = curl_easy_init();
    long status = 0;
    char url[PATH_MAX];
    if (!c)
        return 0;
    base_url(d, url, sizeof url - 16);
    strcat(url, "/readyz");
    set_tls(c, d);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 10L);
    FILE *sink = fopen("/dev/null", "w");
    if (sink)
        curl_easy_setopt(c, CURLOPT_WRITEDATA, sink);
    if (curl_easy_perform(c) == CURLE_OK)
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    if (sink)
        fclose(sink);
    curl_easy_cleanup(c);
    return status;
}

bool td_daemon_start(td_daemon *d, const char *const *args)
{
    const char *argv[MAX_ARGS];
    size_t n = 0;
    if (d->pid) {
        fprintf(stderr, "td_daemon_start: daemon %d is still running\n", (int)d->pid);
        return false;
    }
    argv[n++] = d->exe;
    argv[n++] = "--listen";
    argv[n++] = "127.0.0.1:0";
    argv[n++] = "--data";
    argv[n++] = d->data_dir;
    argv[n++] = "--port-file";
    argv[n++] = d->port_file;
    for (size_t i = 0; args && args[i] && n < MAX_ARGS - 1; i++)
        argv[n++] = args[i];
    argv[n] = NULL;

    unlink(d->port_file);
    d->port = 0;
    snprintf(d->log_path, sizeof d->log_path, "%s/daemon-%d.log", d->dir, ++d->runs);
    int log_fd = open(d->log_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (log_fd < 0) {
        fprintf(stderr, "open %s: %s\n", d->log_path, strerror(errno));
        return false;
    }
    pid_t pid = fork_exec(argv, log_fd, log_fd);
    close(log_fd);
    if (pid < 0)
        return false;
    d->pid = pid;

    double deadline = td_now() + start_timeout();
    while (td_now() < deadline) {
        int r = reap(d, 0, false);
        if (r != 1) {
            fprintf(stderr, "daemon exited before it was ready\n");
            if (r == 0)     /* reap() printed the log of any other exit */
                td_daemon_print_log(d);
            return false;
        }
        if (!d->port)
            d->port = read_port(d);
        if (d->port && probe_ready(d) == 200)
            return true;
        sleep_ms(20);
    }
    fprintf(stderr, "daemon not ready after %.0f s (port %d)\n", start_timeout(), d->port);
    kill(d->pid, SIGKILL);
    reap(d, SIGKILL, true);
    td_daemon_print_log(d);
    return false;
}

int td_daemon_stop(td_daemon *d)
{
    if (!d->pid) {
        fprintf(stderr, "td_daemon_stop: daemon is not running\n");
        return -1;
    }
    kill(d->pid, SIGTERM);
    double deadline = td_now() + start_timeout();
    while (td_now() < deadline) {
        int r = reap(d, 0, false);
        if (r != 1)
            return r;
        sleep_ms(10);
    }
    fprintf(stderr, "daemon %d still running %.0f s after SIGTERM; killing it\n",
            (int)d->pid, start_timeout());
    kill(d->pid, SIGKILL);
    reap(d, SIGKILL, true);
    td_daemon_print_log(d);
    return -1;
}

bool td_daemon_kill_later(td_daemon *d, unsigned delay_ms)
{
    if (!d->pid || d->killer)
        return false;
    fflush(NULL);
    pid_t k = fork();
    if (k < 0)
        return false;
    if (k == 0) {
        /* The daemon is the parent's unreaped child, so its pid cannot
         * have been reused before the parent waits for this helper. */
        sleep_ms(delay_ms);
        kill(d->pid, SIGKILL);
        _exit(0);
    }
    d->killer = k;
    return true;
}

int td_daemon_kill(td_daemon *d)
{
    if (d->killer) {
        while (waitpid(d->killer, NULL, 0) < 0 && errno == EINTR)
            ;
        d->killer = 0;
    }
    if (!d->pid) {
        fprintf(stderr, "td_daemon_kill: daemon is not running\n");
        return -1;
    }
    kill(d->pid, SIGKILL);
    return reap(d, SIGKILL, true);
}

bool td_daemon_running(const td_daemon *d)
{
    return d->pid != 0;
}

int td_daemon_port(const td_daemon *d)
{
    return d->port;
}

pid_t td_daemon_pid(const td_daemon *d)
{
    return d->pid;
}

const char *td_daemon_data_dir(const td_daemon *d)
{
    return d->data_dir;
}

bool td_write_file(const char *dir, const char *name, const void *v, size_t bytes)
{
    char *path = td_fmt("%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    bool ok = f && fwrite(v, 1, bytes, f) == bytes;
    if (f && fclose(f) != 0)
        ok = false;
    if (!ok)
        fprintf(stderr, "cannot write %s: %s\n", path, strerror(errno));
    free(path);
    return ok;
}

bool td_read_file(const char *dir, const char *name, void *v, size_t bytes)
{
    char *path = td_fmt("%s/%s", dir, name);
    FILE *f = fopen(path, "rb");
    bool ok = f && fread(v, 1, bytes, f) == bytes && fgetc(f) == EOF;
    if (f)
        fclose(f);
    if (!ok)
        fprintf(stderr, "cannot read %zu bytes from %s\n", bytes, path);
    unlink(path);
    free(path);
    return ok;
}

bool td_daemon_sql(const td_daemon *d, const char *stmt)
{
    char *db_path = td_fmt("%s/compatd.db", d->data_dir);
    sqlite3 *db = NULL;
    char *why = NULL;
    int rc = sqlite3_open_v2(db_path, &db, SQLITE_OPEN_READWRITE, NULL);
    if (rc == SQLITE_OK)
        rc = sqlite3_exec(db, stmt, NULL, NULL, &why);
    if (rc != SQLITE_OK)
        fprintf(stderr, "%s: %s: %s\n", db_path, stmt, why ? why : sqlite3_errmsg(db));
    sqlite3_free(why);
    bool closed = sqlite3_close(db) == SQLITE_OK;
    free(db_path);
    return rc == SQLITE_OK && closed;
}

const char *td_daemon_dir(const td_daemon *d)
{
    return d->dir;
}

static int remove_entry(const char *path, const struct stat *st, int flag,
                        struct FTW *ftw)
{
    if (remove(path) != 0)
        fprintf(stderr, "remove %s: %s\n", path, strerror(errno));
    return 0;
}

void td_daemon_destroy(td_daemon *d)
{
    if (!d)
        return;
    if (d->pid) {
        fprintf(stderr, "td_daemon_destroy: daemon %d still running; killing it\n",
                (int)d->pid);
        td_daemon_kill(d);
    } else if (d->killer) {
        while (waitpid(d->killer, NULL, 0) < 0 && errno == EINTR)
            ;
    }
    const char *keep = getenv("COMPATD_KEEP");
    if (keep && strcmp(keep, "1") == 0)
        fprintf(stderr, "keeping %s\n", d->dir);
    else
        nftw(d->dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
    free(d);
}

/* --- the HTTP client -------------------------------------------------- */

struct td_http {
    CURL *curl;
    const td_daemon *d;
    long timeout;
    char *header;       /* td_http_set_header, or NULL */
};

/* A growing response body. */
typedef struct buffer {
    char *data;
    size_t len, cap;
} buffer;

static size_t on_data(char *ptr, size_t size, size_t nmemb, void *userdata)
{
    buffer *b = userdata;
    size_t n = size * nmemb;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->len + n + 1)
            cap *= 2;
        char *p = realloc(b->data, cap);
        if (!p)
            return 0;
        b->data = p;
        b->cap = cap;
    }
    memcpy(b->data + b->len, ptr, n);
    b->len += n;
    b->data[b->len] = '\0';
    return n;
}

/* The unsent part of a chunked request body. */
typedef struct cursor {
    const char *p;
    size_t left;
} cursor;

static size_t on_read(char *buf, size_t size, size_t nitems, void *userdata)
{
    cursor *c = userdata;
    size_t n = size * nitems;
    if (n > c->left)
        n = c->left;
    if (n > 16384)
        n = 16384;      /* several chunks, as a streaming client sends */
    memcpy(buf, c->p, n);
    c->p += n;
    c->left -= n;
    return n;
}

static bool curl_ready(void)
{
    static bool done;
    if (!done)
        done = curl_global_init(CURL_GLOBAL_DEFAULT) == CURLE_OK;
    return done;
}

td_http *td_http_create(const td_daemon *d)
{
    if (!curl_ready())
        return NULL;
    td_http *h = calloc(1, sizeof *h);
    if (!h)
        return NULL;
    h->curl = curl_easy_init();
    if (!h->curl) {
        free(h);
        return NULL;
    }
    h->d = d;
    h->timeout = 300;
    return h;
}

void td_http_destroy(td_http *h)
{
    if (!h)
        return;
    curl_easy_cleanup(h->curl);
    free(h->header);
    free(h);
}

bool td_daemon_start_client(const char *const *args, td_daemon **d, td_http **h)
{
    *h = NULL;
    if (!(*d = td_daemon_create()))
        return false;
    if (!td_daemon_start(*d, args))
        goto fail;
    if (!(*h = td_http_create(*d))) {
        fprintf(stderr, "td_http_create failed (curl or memory)\n");
        goto fail;
    }
    return true;
fail:
    td_daemon_destroy(*d);
    *d = NULL;
    return false;
}

void td_http_set_timeout(td_http *h, long seconds)
{
    h->timeout = seconds;
}

long td_http_send(td_http *h, const td_request *req, td_reply *out)
{
    CURL *c = h->curl;
    buffer body = {0}, head = {0};
    cursor cur = {req->body, req->len};
    struct curl_slist *headers = NULL;
    char url[4096 + 64];
    char header[512];
    char errbuf[CURL_ERROR_SIZE] = "";

    memset(out, 0, sizeof *out);
    base_url(h->d, url, 64);
    snprintf(url + strlen(url), sizeof url - strlen(url), "%s", req->path);
    /* Reset keeps the live connection: only the options go. */
    curl_easy_reset(c);
    set_tls(c, h->d);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, h->timeout);
    curl_easy_setopt(c, CURLOPT_ERRORBUFFER, errbuf);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_data);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &body);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_data);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, &head);

    /* Without a type of our own curl would send a form's. */
    snprintf(header, sizeof header, "Content-Type:%s%s",
             req->content_type ? " " : "", req->content_type ? req->content_type : "");
    headers = curl_slist_append(headers, header);
    if (h->header)
        headers = curl_slist_append(headers, h->header);
    if (req->body && req->chunked) {
        headers = curl_slist_append(headers, "Transfer-Encoding: chunked");
        curl_easy_setopt(c, CURLOPT_POST, 1L);
        curl_easy_setopt(c, CURLOPT_READFUNCTION, on_read);
        curl_easy_setopt(c, CURLOPT_READDATA, &cur);
    } else if (req->body) {
        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)req->len);
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, req->body);
    } else {
        curl_easy_setopt(c, CURLOPT_HTTPGET, 1L);
    }
    if (strcmp(req->method, req->body ? "POST" : "GET") != 0)
        curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, req->method);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, headers);

    CURLcode rc = curl_easy_perform(c);
    if (rc == CURLE_OK) {
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &out->status);
    } else {
        out->status = 0;
        snprintf(out->error, sizeof out->error, "%s: %s", curl_easy_strerror(rc), errbuf);
    }
    curl_slist_free_all(headers);
    out->body = body.data ? body.data : strdup("");
    out->headers = head.data ? head.data : strdup("");
    out->len = body.len;
    if (out->status && out->len)
        out->json = cJSON_ParseWithLength(out->body, out->len);
    return out->status;
}

long td_http_json(td_http *h, const char *method, const char *path,
                  const char *body, td_reply *out)
{
    td_request req = {
        .method = method,
        .path = path,
        .content_type = body ? "application/json" : NULL,
        .body = body,
        .len = body ? strlen(body) : 0,
    };
    return td_http_send(h, &req, out);
}

void td_reply_show_if(const td_reply *r, long want, const char *what)
{
    if (r->status != want)
        fprintf(stderr, "%s: want %ld, got %ld: %.600s%s\n", what, want, r->status,
                r->status ? r->body : "", r->status ? "" : r->error);
}

long td_http_call(td_http *h, td_reply *out, long want, const char *method, const char *path,
                  const char *body)
{
    td_http_json(h, method, path, body, out);
    td_reply_show_if(out, want, path);
    return out->status;
}

long td_http_jsonf(td_http *h, td_reply *out, const char *method,
                   const char *path, const char *fmt, ...)
{
    char *body = NULL;
    va_list ap;
    va_start(ap, fmt);
    int n = vasprintf(&body, fmt, ap);
    va_end(ap);
    if (n < 0) {
        memset(out, 0, sizeof *out);
        snprintf(out->error, sizeof out->error, "out of memory");
        return 0;
    }
    long status = td_http_json(h, method, path, body, out);
    free(body);
    return status;
}

void td_reply_finish(td_reply *r)
{
    free(r->body);
    free(r->headers);
    cJSON_Delete(r->json);
    memset(r, 0, sizeof *r);
}

const char *td_reply_error_code(const td_reply *r)
{
    return td_json_str(r->json, "error.code");
}

const char *td_reply_error_message(const td_reply *r)
{
    return td_json_str(r->json, "error.message");
}

/* --- JSON ------------------------------------------------------------- */

const cJSON *td_json_at(const cJSON *root, const char *path)
{
    const cJSON *j = root;
    const char *p = path;
    while (j && *p) {
        char key[256];
        size_t n = strcspn(p, ".");
        if (n >= sizeof key)
            return NULL;
        memcpy(key, p, n);
        key[n] = '\0';
        p += n + (p[n] == '.');
        if (cJSON_IsArray(j)) {
            char *end;
            long i = strtol(key, &end, 10);
            if (*end || end == key || i < 0)
                return NULL;
            j = cJSON_GetArrayItem(j, (int)i);
        } else if (cJSON_IsObject(j)) {
            j = cJSON_GetObjectItemCaseSensitive(j, key);
        } else {
            return NULL;
        }
    }
    return j;
}

const char *td_json_str(const cJSON *root, const char *path)
{
    const cJSON *j = td_json_at(root, path);
    return cJSON_IsString(j) ? j->valuestring : NULL;
}

double td_json_num(const cJSON *root, const char *path)
{
    const cJSON *j = td_json_at(root, path);
    return cJSON_IsNumber(j) ? j->valuedouble : NAN;
}

/* --- vectors and randomness ------------------------------------------ */

char *td_b64_bytes(const void *bytes, size_t n)
{
    static const char alphabet[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    const unsigned char *b = bytes;
    char *s = malloc((n + 2) / 3 * 4 + 1);
    char *o = s;
    if (!s)
        return NULL;
    for (size_t i = 0; i < n; i += 3) {
        uint32_t t = (uint32_t)b[i] << 16;
        if (i + 1 < n)
            t |= (uint32_t)b[i + 1] << 8;
        if (i + 2 < n)
            t |= b[i + 2];
        *o++ = alphabet[t >> 18 & 63];
        *o++ = alphabet[t >> 12 & 63];
        *o++ = i + 1 < n ? alphabet[t >> 6 & 63] : '=';
        *o++ = i + 2 < n ? alphabet[t & 63] : '=';
    }
    *o = '\0';
    return s;
}

char *td_b64_floats(const float *v, size_t n)
{
    unsigned char *bytes = malloc(n * 4 + 1);
    if (!bytes)
        return NULL;
    for (size_t i = 0; i < n; i++) {
        uint32_t u;
        memcpy(&u, &v[i], sizeof u);
        bytes[4 * i] = (unsigned char)u;
        bytes[4 * i + 1] = (unsigned char)(u >> 8);
        bytes[4 * i + 2] = (unsigned char)(u >> 16);
        bytes[4 * i + 3] = (unsigned char)(u >> 24);
    }
    char *s = td_b64_bytes(bytes, n * 4);
    free(bytes);
    return s;
}

void td_text_append_b64_rows(td_text *t, const float *x, size_t n, size_t dim)
{
    td_text_append(t, "[");
    for (size_t i = 0; i < n; i++) {
        char *v = td_b64_floats(x + i * dim, dim);
        if (!v) {
            fprintf(stderr, "td_text_append_b64_rows: out of memory\n");
            exit(1);
        }
        td_text_append(t, "%s\"%s\"", i ? "," : "", v);
        free(v);
    }
    td_text_append(t, "]");
}

uint64_t td_rng_next(td_rng *r)
{
    uint64_t z = (r->state += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

double td_rng_uniform(td_rng *r)
{
    return ((double)(td_rng_next(r) >> 11) + 0.5) / 9007199254740992.0;
}

double td_rng_gauss(td_rng *r)
{
    return sqrt(-2.0 * log(td_rng_uniform(r))) * cos(6.283185307179586 * td_rng_uniform(r));
}

uint64_t td_seed(uint64_t dflt)
{
    const char *s = getenv("COMPATD_SEED");
    uint64_t seed = s && *s ? strtoull(s, NULL, 0) : dflt;
    fprintf(stderr, "seed %llu (set COMPATD_SEED to repeat another)\n",
            (unsigned long long)seed);
    return seed;
}

bool td_long_tests(void)
{
    const char *s = getenv("COMPATD_LONG");
    return s && strcmp(s, "1") == 0;
}

long td_gallery_count(td_http *h, const char *name)
{
    char path[128];
    td_reply r;
    snprintf(path, sizeof path, "/v1/galleries/%s", name);
    td_http_json(h, "GET", path, NULL, &r);
    double n = td_json_num(r.json, "count");
    td_reply_finish(&r);
    return isnan(n) ? -1 : (long)n;
}

/* --- reference search ----------------------------------------------- */

const char *const td_metric_names[3] = {"cosine", "ip", "l2"};

double td_ref_score(td_metric m, const float *x, const float *q, size_t dim)
{
    double dot = 0, xx = 0, qq = 0, l2 = 0;
    for (size_t d = 0; d < dim; d++) {
        dot += (double)x[d] * q[d];
        xx += (double)x[d] * x[d];
        qq += (double)q[d] * q[d];
        l2 += ((double)x[d] - q[d]) * ((double)x[d] - q[d]);
    }
    switch (m) {
    case TD_METRIC_COSINE: return dot / (sqrt(xx) * sqrt(qq));
    case TD_METRIC_IP: return dot;
    case TD_METRIC_L2: return l2;
    }
    return NAN;
}

bool td_ref_better(td_metric m, double a, double b)
{
    return m != TD_METRIC_L2 ? a > b : a < b;
}

void td_ref_topk_offer(td_metric m, size_t k, size_t *idx, double *score, size_t *n,
                       size_t i, double s)
{
    if (*n == k && !td_ref_better(m, s, score[k - 1]))
        return;
    size_t p = *n < k ? (*n)++ : k - 1;
    while (p > 0 && td_ref_better(m, s, score[p - 1])) {
        score[p] = score[p - 1];
        idx[p] = idx[p - 1];
        p--;
    }
    score[p] = s;
    idx[p] = i;
}

double td_tie_eps(double s)
{
    return 1e-6 + 1e-5 * fabs(s);
}

/* --- child processes ------------------------------------------------- */

/* Where a spawned program's stderr goes. */
enum err_to {
    ERR_TO_PIPE,    /* a pipe of its own: err_fd */
    ERR_TO_TTY,     /* a pseudo-terminal: err_fd is its master */
    ERR_TO_OUT,     /* stdout's pipe, in order with stdout: err_fd is -1 */
};

/* A pseudo-terminal in raw mode: its master in *master, its slave (open)
 * in *slave. */
static bool open_pty(int *master, int *slave)
{
    struct termios tio;
    *master = posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);
    *slave = -1;
    if (*master < 0 || grantpt(*master) != 0 || unlockpt(*master) != 0)
        goto fail;
    const char *name = ptsname(*master);
    if (!name || (*slave = open(name, O_RDWR | O_NOCTTY | O_CLOEXEC)) < 0)
        goto fail;
    if (tcgetattr(*slave, &tio) != 0)
        goto fail;
    cfmakeraw(&tio);
    if (tcsetattr(*slave, TCSANOW, &tio) != 0)
        goto fail;
    return true;
fail:
    fprintf(stderr, "pseudo-terminal: %s\n", strerror(errno));
    if (*slave >= 0)
        close(*slave);
    if (*master >= 0)
        close(*master);
    return false;
}

/* argv (MAX_ARGS entries) = $COMPATD, then args (NULL for none); false
 * after printing why when COMPATD is unset. */
static bool compatd_argv(const char *const *args, const char **argv)
{
    const char *exe = getenv("COMPATD");
    size_t n = 0;
    if (!exe || !*exe) {
        fprintf(stderr, "COMPATD is not set (the path of the compatd executable)\n");
        return false;
    }
    argv[n++] = exe;
    for (size_t i = 0; args && args[i] && n < MAX_ARGS - 1; i++)
        argv[n++] = args[i];
    argv[n] = NULL;
    return true;
}

/*
 * Starts argv[0] (searched in PATH when it has no '/') with argv, stdin
 * /dev/null, stdout a pipe and stderr where err_to says, killed when the
 * test dies.  Fills *p; false after printing why (p then holds no
 * process and no descriptors).
 */
static bool spawn(const char *const *argv, enum err_to err_to, td_proc *p)
{
    int out[2] = {-1, -1}, err[2] = {-1, -1};
    *p = (td_proc){.out_fd = -1, .err_fd = -1};
    snprintf(p->name, sizeof p->name, "%s%s%s", argv[0], argv[1] ? " " : "",
             argv[1] ? argv[1] : "");
    if (pipe2(out, O_CLOEXEC) != 0) {
        fprintf(stderr, "pipe: %s\n", strerror(errno));
        return false;
    }
    if (err_to == ERR_TO_TTY ? !open_pty(&err[0], &err[1])
        : err_to == ERR_TO_PIPE && pipe2(err, O_CLOEXEC) != 0) {
        if (err_to == ERR_TO_PIPE)
            fprintf(stderr, "pipe: %s\n", strerror(errno));
        close(out[0]);
        close(out[1]);
        return false;
    }
    pid_t pid = fork_exec(argv, out[1], err_to == ERR_TO_OUT ? out[1] : err[1]);
    if (pid < 0) {
        for (int i = 0; i < 2; i++) {
            close(out[i]);
            if (err[i] >= 0)
                close(err[i]);
        }
        return false;
    }
    close(out[1]);
    if (err[1] >= 0)
        close(err[1]);
    p->pid = pid;
    p->out_fd = out[0];
    p->err_fd = err[0];
    return true;
}

/*
 * Reads p's stdout and stderr to their ends into *out and *err (either
 * NULL to drop the stream), reaps p and closes its descriptors.  Returns
 * the exit status; when a signal ended it, 128 + the signal number
 * (printed unless SIGKILL), or with signal_fails -1 (always printed); -1
 * when it cannot wait or its stderr (its stdout when it had no err_fd)
 * holds a sanitizer report (printed).
 */
static int finish(td_proc *p, char **out, char **err, bool signal_fails)
{
    buffer b[2] = {{0}, {0}};
    struct pollfd fds[2] = {{.fd = p->out_fd, .events = POLLIN},
                            {.fd = p->err_fd, .events = POLLIN}};
    bool merged = p->err_fd < 0;
    if (out)
        *out = NULL;
    if (err)
        *err = NULL;
    while (fds[0].fd >= 0 || fds[1].fd >= 0) {
        if (poll(fds, 2, -1) < 0) {
            if (errno == EINTR)
                continue;
            fprintf(stderr, "poll: %s\n", strerror(errno));
            break;
        }
        for (int i = 0; i < 2; i++) {
            if (fds[i].fd < 0 || !fds[i].revents)
                continue;
            char chunk[4096];
            ssize_t got = read(fds[i].fd, chunk, sizeof chunk);
            if (got < 0 && errno == EINTR)
                continue;
            if (got <= 0) {     /* EOF, or EIO from a pty whose slave closed */
                close(fds[i].fd);
                fds[i].fd = -1;
            } else {
                on_data(chunk, 1, (size_t)got, &b[i]);
            }
        }
    }
    p->out_fd = p->err_fd = -1;
    int status = 0, rc = -1;
    pid_t r;
    while ((r = waitpid(p->pid, &status, 0)) < 0 && errno == EINTR)
        ;
    p->pid = 0;
    const char *text = b[merged ? 0 : 1].data ? b[merged ? 0 : 1].data : "";
    if (r < 0)
        fprintf(stderr, "waitpid: %s\n", strerror(errno));
    else if (WIFEXITED(status))
        rc = WEXITSTATUS(status);
    else if (WIFSIGNALED(status))
        rc = signal_fails ? -1 : 128 + WTERMSIG(status);
    if (r >= 0 && WIFSIGNALED(status) && (signal_fails || WTERMSIG(status) != SIGKILL))
        fprintf(stderr, "%s died of signal %d (%s)\n%s", p->name, WTERMSIG(status),
                strsignal(WTERMSIG(status)), text);
    for (size_t i = 0; sanitizer_marks[i]; i++) {
        if (strstr(text, sanitizer_marks[i])) {
            fprintf(stderr, "%s: sanitizer report in its output\n%s", p->name, text);
            rc = -1;
            break;
        }
    }
    for (int i = 0; i < 2; i++) {
        char **dst = i ? err : out;
        if (dst)
            *dst = b[i].data ? b[i].data : strdup("");
        else
            free(b[i].data);
    }
    return rc;
}

/* --- other compatd commands ------------------------------------------ */

int td_run_compatd(const char *const *args, char **output)
{
    const char *argv[MAX_ARGS];
    td_proc p;
    if (output)
        *output = NULL;
    if (!compatd_argv(args, argv) || !spawn(argv, ERR_TO_OUT, &p))
        return -1;
    return finish(&p, output, NULL, true);
}

bool td_serve_refused(const td_daemon *d, const char *const *extra, int want,
                      const char *says)
{
    const char *args[MAX_ARGS] = {"serve", "--listen", "127.0.0.1:0", "--data", d->data_dir};
    size_t n = 5;
    for (size_t i = 0; extra && extra[i] && n < MAX_ARGS - 2; i++)
        args[n++] = extra[i];
    args[n] = NULL;
    char *out = NULL;
    int st = td_run_compatd(args, &out);
    bool ok = st == want && out && strstr(out, says);
    if (!ok) {
        fprintf(stderr, "compatd serve");
        for (size_t i = 5; i < n; i++)
            fprintf(stderr, " %s", args[i]);
        fprintf(stderr, ": status %d, want %d and \"%s\": %s\n", st, want, says,
                out ? out : "");
    }
    free(out);
    return ok;
}

/* --- API keys and TLS ------------------------------------------------- */

void td_http_set_header(td_http *h, const char *header)
{
    free(h->header);
    h->header = header ? strdup(header) : NULL;
}

void td_http_set_key(td_http *h, const char *key)
{
    char header[512];
    if (!key) {
        td_http_set_header(h, NULL);
        return;
    }
    snprintf(header, sizeof header, "Authorization: Bearer %s", key);
    td_http_set_header(h, header);
}

void td_daemon_set_tls(td_daemon *d, const char *ca_file)
{
    snprintf(d->ca_file, sizeof d->ca_file, "%s", ca_file ? ca_file : "");
}

char *td_fmt(const char *f, ...)
{
    char *s = NULL;
    va_list ap;
    va_start(ap, f);
    int n = vasprintf(&s, f, ap);
    va_end(ap);
    if (n < 0) {
        fprintf(stderr, "td_fmt: out of memory\n");
        exit(1);
    }
    return s;
}

void td_text_append(td_text *t, const char *f, ...)
{
    for (;;) {
        va_list ap;
        va_start(ap, f);
        int n = vsnprintf(t->s ? t->s + t->len : NULL, t->s ? t->cap - t->len : 0, f, ap);
        va_end(ap);
        if (n < 0) {
            fprintf(stderr, "td_text_append: bad format\n");
            exit(1);
        }
        if (t->s && (size_t)n < t->cap - t->len) {
            t->len += (size_t)n;
            return;
        }
        size_t cap = (t->cap + (size_t)n + 1) * 2;
        char *grown = realloc(t->s, cap < 4096 ? 4096 : cap);
        if (!grown) {
            fprintf(stderr, "td_text_append: out of memory\n");
            exit(1);
        }
        t->s = grown;
        t->cap = cap < 4096 ? 4096 : cap;
    }
}

/* --- programs with stdout and stderr apart --------------------------- */

bool td_spawn(const char *const *argv, bool tty, td_proc *p)
{
    return spawn(argv, tty ? ERR_TO_TTY : ERR_TO_PIPE, p);
}

bool td_compatd_spawn(const char *const *args, bool tty, td_proc *p)
{
    const char *argv[MAX_ARGS];
    *p = (td_proc){.out_fd = -1, .err_fd = -1};
    return compatd_argv(args, argv) && td_spawn(argv, tty, p);
}

int td_compatd_wait(td_proc *p, char **out, char **err)
{
    return finish(p, out, err, false);
}

int td_run(const char *const *argv, char **out, char **err)
{
    td_proc p;
    if (out)
        *out = NULL;
    if (err)
        *err = NULL;
    if (!td_spawn(argv, false, &p))
        return -1;
    return td_compatd_wait(&p, out, err);
}

int td_run_compatd_split(const char *const *args, char **out, char **err)
{
    const char *argv[MAX_ARGS];
    if (out)
        *out = NULL;
    if (err)
        *err = NULL;
    return compatd_argv(args, argv) ? td_run(argv, out, err) : -1;
}

int td_create_key(const td_daemon *d, const char *name, const char *scope, char *out,
                  size_t cap)
{
    const char *args[] = {"keys", "create", "--scope", scope, "--name", name, "--data",
                          d->data_dir, NULL};
    char *output = NULL;
    int rc = td_run_compatd(args, &output);
    size_t n = output ? strcspn(output, "\n") : 0;
    if (out && cap)
        snprintf(out, cap, "%.*s", (int)(n < cap ? n : cap - 1), output ? output : "");
    if (rc != 0)
        fprintf(stderr, "keys create %s %s: status %d: %s\n", name, scope, rc,
                output ? output : "");
    free(output);
    return rc;
}

bool td_copy_file(const char *from, const char *to)
{
    FILE *in = fopen(from, "rb"), *out = in ? fopen(to, "wb") : NULL;
    char buf[65536];
    size_t n;
    bool ok = in && out;
    while (ok && (n = fread(buf, 1, sizeof buf, in)) > 0)
        ok = fwrite(buf, 1, n, out) == n;
    if (in)
        fclose(in);
    if (out && fclose(out) != 0)
        ok = false;
    return ok;
}

bool td_make_cert(const char *dir)
{
    char *tmpl = td_fmt("%s/cert.cfg", dir);
    FILE *f = fopen(tmpl, "w");
    if (!f) {
        fprintf(stderr, "%s: %s\n", tmpl, strerror(errno));
        free(tmpl);
        return false;
    }
    fputs("cn = \"127.0.0.1\"\nip_address = \"127.0.0.1\"\ndns_name = \"localhost\"\n"
          "expiration_days = 7\ntls_www_server\nsigning_key\nencryption_key\n", f);
    bool ok = fclose(f) == 0;
    char *cmd = td_fmt("command -v certtool >/dev/null 2>&1 && "
                       "certtool --generate-privkey --key-type=ecdsa --outfile '%s/key.pem' "
                       ">/dev/null 2>&1 && "
                       "certtool --generate-self-signed --load-privkey '%s/key.pem' "
                       "--template '%s' --outfile '%s/cert.pem' >/dev/null 2>&1",
                       dir, dir, tmpl, dir);
    int rc = ok ? system(cmd) : -1;
    free(cmd);
    if (ok && rc != 0) {
        fprintf(stderr, "certtool failed or is missing: trying openssl\n");
        cmd = td_fmt("openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes "
                     "-keyout '%s/key.pem' -out '%s/cert.pem' -days 7 -subj /CN=127.0.0.1 "
                     "-addext subjectAltName=IP:127.0.0.1,DNS:localhost >/dev/null 2>&1",
                     dir, dir);
        rc = system(cmd);
        free(cmd);
    }
    free(tmpl);
    return ok && rc == 0;
}

/* --- raw connections ---------------------------------------------- */

int td_raw_connect(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        fprintf(stderr, "socket: %s\n", strerror(errno));
        return -1;
    }
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
        fprintf(stderr, "connect: %s\n", strerror(errno));
        close(fd);
        return -1;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    return fd;
}

bool td_raw_send(int fd, const void *bytes, size_t n)
{
    const char *s = bytes;
    while (n) {
        ssize_t w = send(fd, s, n, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return false;
        s += w;
        n -= (size_t)w;
    }
    return true;
}

int td_raw_wait_closed(int fd, double secs, char *buf, size_t cap)
{
    size_t n = buf ? strlen(buf) : 0;
    double deadline = td_now() + secs;
    while (td_now() < deadline) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        int ms = (int)((deadline - td_now()) * 1000) + 1;
        if (poll(&p, 1, ms) <= 0)
            continue;
        char tmp[4096];
        ssize_t got = recv(fd, tmp, sizeof tmp, 0);
        if (got < 0 && errno == EINTR)
            continue;
        if (got <= 0)
            return 1;
        if (buf && n + 1 < cap) {
            size_t take = (size_t)got < cap - 1 - n ? (size_t)got : cap - 1 - n;
            memcpy(buf + n, tmp, take);
            n += take;
            buf[n] = '\0';
        }
    }
    return 0;
}

bool td_raw_get(int fd, const char *path, char *buf, size_t cap)
{
    char *req = td_fmt("GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", path);
    bool ok = td_raw_sends(fd, req);
    free(req);
    buf[0] = '\0';
    double deadline = td_now() + 10;
    size_t n = 0;
    while (ok && td_now() < deadline && !strstr(buf, "\r\n\r\n")) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (poll(&p, 1, 100) <= 0)
            continue;
        ssize_t got = recv(fd, buf + n, cap - 1 - n, 0);
        if (got <= 0)
            return false;
        n += (size_t)got;
        buf[n] = '\0';
    }
    return ok && strncmp(buf, "HTTP/1.1 200", 12) == 0;
}

bool td_raw_sends(int fd, const char *s)
{
    return td_raw_send(fd, s, strlen(s));
}

char *td_daemon_log(const td_daemon *d)
{
    size_t len;
    char *text = read_file(d->log_path, &len);
    return text ? text : strdup("");
}
