/*
 * daemon.h - the HTTP tests' harness: the real compatd as a child process,
 * a keep-alive libcurl client aimed at it, and small helpers the tests
 * share (JSON lookups, an independent base64 float32 encoder, a seeded
 * random generator).
 *
 * A td_daemon owns one fresh temporary directory (mkdtemp) holding the
 * data directory, the port file and one stderr log per run.  The daemon
 * always listens on 127.0.0.1:0 and the harness reads the bound port from
 * --port-file, so tests never use a fixed port.  Each time a run ends
 * (stop, kill) its log is scanned for sanitizer reports ("ERROR:
 * AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:"); a dirty log
 * or an unexpected exit is printed and makes the call fail, so a test
 * notices a daemon that misbehaved even when every reply looked right.
 *
 * The harness does not count check failures itself (check.h's counters are
 * per program): its calls return a verdict that the test CHECKs.  Its
 * names start with td_ ("test daemon"), apart from core's cd_.
 *
 * Environment: COMPATD is the daemon's path (set by meson);
 * COMPATD_KEEP=1 keeps the temporary directories for a post-mortem;
 * COMPATD_START_TIMEOUT is the seconds to wait for a start (default 120).
 */
#ifndef CD_TEST_DAEMON_H
#define CD_TEST_DAEMON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <cjson/cJSON.h>

/* A growing string (a request body): zero it to start, free(t.s) at the
 * end.  td_text_append adds printf-style text; exits when out of memory. */
typedef struct td_text {
    char *s;            /* NUL-terminated once anything was appended */
    size_t len, cap;
} td_text;

void td_text_append(td_text *t, const char *f, ...) __attribute__((format(printf, 2, 3)));

/* A malloc'd printf-style string; exits the test when out of memory. */
char *td_fmt(const char *f, ...) __attribute__((format(printf, 1, 2)));

/* --- the daemon ------------------------------------------------------- */

typedef struct td_daemon td_daemon;

/*
 * Creates the temporary directory of a daemon that is not running yet.
 * Returns NULL (after printing why) when COMPATD is unset or the directory
 * cannot be made.  Free with td_daemon_destroy().
 */
td_daemon *td_daemon_create(void);

/*
 * Starts the daemon on the directory's data and waits (COMPATD_START_TIMEOUT)
 * until its port file exists and GET /readyz answers 200.  args are extra
 * command-line arguments (NULL-terminated; NULL for none), used for this
 * run only, so a restart may change them.  Returns false, having printed
 * the daemon's log and killed it, when it exited or never became ready.
 */
bool td_daemon_start(td_daemon *d, const char *const *args);

/*
 * Sends SIGTERM and waits for the exit.  Returns 0 when the daemon exited
 * with status 0 and its log is clean; otherwise prints the log and returns
 * non-zero (the exit status, or -1 for a signal or a hang it had to kill).
 */
int td_daemon_stop(td_daemon *d);

/*
 * Arranges SIGKILL for the daemon delay_ms from now, from a helper
 * process, so that the caller can keep sending requests meanwhile.  The
 * next td_daemon_kill() waits for it.  Returns false when it cannot fork.
 */
bool td_daemon_kill_later(td_daemon *d, unsigned delay_ms);

/*
 * Kills the daemon with SIGKILL (or waits for a pending td_daemon_kill_later)
 * and reaps it.  Returns 0 when SIGKILL is what ended it and its log is
 * clean, non-zero (after printing the log) when it had died otherwise.
 */
int td_daemon_kill(td_daemon *d);

/* True while a started daemon has not been stopped or killed. */
bool td_daemon_running(const td_daemon *d);

/* The bound port of the current (or last) run. */
int td_daemon_port(const td_daemon *d);

/* The daemon's process id (0 when not running). */
pid_t td_daemon_pid(const td_daemon *d);

/* The data directory (passed as --data); the string lives as long as d. */
const char *td_daemon_data_dir(const td_daemon *d);

/* Writes bytes bytes of v to dir/name; false, printing why, when it
 * fails. */
bool td_write_file(const char *dir, const char *name, const void *v, size_t bytes);

/* Reads exactly bytes bytes of dir/name into v and removes the file;
 * false, printing why, when it fails. */
bool td_read_file(const char *dir, const char *name, void *v, size_t bytes);

/* Runs the SQL stmt on d's database (DATA/compatd.db), which d must not
 * hold open (stopped, or never started); false, printing why, when it
 * fails. */
bool td_daemon_sql(const td_daemon *d, const char *stmt);

/* The temporary directory that holds everything of d. */
const char *td_daemon_dir(const td_daemon *d);

/* Prints the current run's log to stderr (for a failing test's context). */
void td_daemon_print_log(const td_daemon *d);

/*
 * Kills a daemon still running, removes its temporary directory (unless
 * COMPATD_KEEP=1) and frees d.  Accepts NULL.
 */
void td_daemon_destroy(td_daemon *d);

/* --- the HTTP client -------------------------------------------------- */

typedef struct td_http td_http;

/* What came back from one request.  Release with td_reply_finish(). */
typedef struct td_reply {
    long status;        /* HTTP status; 0 when the request failed in transport */
    char *body;         /* NUL-terminated, malloc'd; "" when empty */
    size_t len;         /* bytes of body */
    cJSON *json;        /* body parsed as JSON, NULL when it is not */
    char error[256];    /* the transport error when status is 0 */
    char *headers;      /* the response's header lines as received; malloc'd */
} td_reply;

/* One request, for td_http_send(). */
typedef struct td_request {
    const char *method;         /* "GET", "POST", "PATCH", "DELETE", ... */
    const char *path;           /* with its query string: "/v1/models?x=1" */
    const char *content_type;   /* NULL: no Content-Type header */
    const char *body;           /* NULL: no body */
    size_t len;                 /* bytes of body */
    bool chunked;               /* send with Transfer-Encoding: chunked */
} td_request;

/*
 * Creates a client for d's daemon: one curl handle whose connection is kept
 * alive between requests.  The port is read from d at each request, so the
 * client follows the daemon across restarts.  Returns NULL when out of
 * memory.  Free with td_http_destroy().
 */
td_http *td_http_create(const td_daemon *d);

/* Frees the client.  Accepts NULL. */
void td_http_destroy(td_http *h);

/*
 * The start most HTTP tests make: td_daemon_create, td_daemon_start with
 * args, td_http_create.  Returns true with *d and *h set; on failure
 * prints which step failed, frees what it made and returns false with *d
 * and *h NULL.  The caller ends with td_http_destroy(*h),
 * td_daemon_stop(*d) and td_daemon_destroy(*d).
 */
bool td_daemon_start_client(const char *const *args, td_daemon **d, td_http **h);

/* Sets the whole-request timeout (default 300 s). */
void td_http_set_timeout(td_http *h, long seconds);

/*
 * Sends req and fills *out (which the caller releases with td_reply_finish
 * even when the request failed).  Returns out->status.
 */
long td_http_send(td_http *h, const td_request *req, td_reply *out);

/*
 * Sends method path with body as application/json (body NULL: no body,
 * no Content-Type).  Returns out->status.
 */
long td_http_json(td_http *h, const char *method, const char *path,
                  const char *body, td_reply *out);

/* td_http_json with a printf-style body. */
long td_http_jsonf(td_http *h, td_reply *out, const char *method,
                   const char *path, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));

/* GET /v1/galleries/{name}'s "count", or -1 when the reply has none. */
long td_gallery_count(td_http *h, const char *name);

/* Frees what r holds and zeroes it.  Accepts a zeroed reply. */
void td_reply_finish(td_reply *r);

/* r's error.code, or NULL when r is not a well-formed error reply. */
const char *td_reply_error_code(const td_reply *r);

/* r's error.message, or NULL. */
const char *td_reply_error_message(const td_reply *r);

/*
 * td_http_json, then, when the status is not want, prints path, the status
 * and the reply's body (its first 600 bytes) or transport error, so that a
 * failing CHECK on the returned status has its context.  The caller
 * releases *out with td_reply_finish().  Returns out->status.
 */
long td_http_call(td_http *h, td_reply *out, long want, const char *method, const char *path,
                  const char *body);

/* Prints what, want and r's status and body (or error) when r->status is
 * not want; nothing otherwise. */
void td_reply_show_if(const td_reply *r, long want, const char *what);

/* --- JSON ------------------------------------------------------------- */

/*
 * The value at a dotted path: "error.code", "results.0.2.id" (numbers
 * index arrays).  NULL when any step is missing.
 */
const cJSON *td_json_at(const cJSON *root, const char *path);

/* The string at path, or NULL when absent or not a string. */
const char *td_json_str(const cJSON *root, const char *path);

/* The number at path, or NAN when absent or not a number. */
double td_json_num(const cJSON *root, const char *path);

/* --- vectors and randomness ------------------------------------------ */

/*
 * Base64 (standard, padded) of n little-endian float32 values, written
 * here rather than taken from core so that a bug in core's codec cannot
 * cancel itself out.  Returns a malloc'd string (free()), or NULL.
 */
char *td_b64_floats(const float *v, size_t n);

/* Base64 of n arbitrary bytes; malloc'd (free()), or NULL. */
char *td_b64_bytes(const void *bytes, size_t n);

/*
 * Appends n rows of dim float32 values (x, row after row) to t as a JSON
 * array of td_b64_floats strings: ["..","..."].  Exits when out of memory.
 */
void td_text_append_b64_rows(td_text *t, const float *x, size_t n, size_t dim);

/* A small splitmix64 generator; seed it by setting state. */
typedef struct td_rng {
    uint64_t state;
} td_rng;

uint64_t td_rng_next(td_rng *r);

/* Uniform in (0, 1). */
double td_rng_uniform(td_rng *r);

/* Standard normal (Box-Muller). */
double td_rng_gauss(td_rng *r);

/* The seed a test should use: COMPATD_SEED when set, else dflt.  Printed. */
uint64_t td_seed(uint64_t dflt);

/* True when the long variants were asked for (COMPATD_LONG=1). */
bool td_long_tests(void);

/* Seconds on a monotonic clock, for the tests' timing lines. */
double td_now(void);

/* --- reference search ----------------------------------------------- */

/* The API's metrics; td_metric_names[m] is how the API spells m. */
typedef enum td_metric { TD_METRIC_COSINE, TD_METRIC_IP, TD_METRIC_L2 } td_metric;

extern const char *const td_metric_names[3];

/*
 * The score the API reports for stored vector x against query q (dim
 * values each), computed in double and independently of core: cosine
 * similarity, inner product, or squared L2 distance.  Symmetric in x, q.
 */
double td_ref_score(td_metric m, const float *x, const float *q, size_t dim);

/* True when score a ranks strictly before b: higher for cosine and ip,
 * lower for l2. */
bool td_ref_better(td_metric m, double a, double b);

/*
 * Offers item i, scoring s, to the best-first list idx[0..*n), score[0..*n)
 * of at most k entries.  It goes after every entry scoring better or the
 * same (so ties keep the order of offering) and pushes out the last entry
 * when the list is full; an item no better than a full list's last is
 * dropped.  Offering every item of a scan gives a reference top-k.
 */
void td_ref_topk_offer(td_metric m, size_t k, size_t *idx, double *score, size_t *n,
                       size_t i, double s);

/*
 * Scores of float32 arithmetic closer than this to s are a tie: the server
 * may order such items either way (dims up to a few dozen, scores up to
 * ~50).
 */
double td_tie_eps(double s);

/* --- other compatd commands ------------------------------------------ */

/*
 * Runs $COMPATD with args (NULL-terminated, after the program's name:
 * {"backup", "--to", dir, NULL}) and waits for it.  Its stdout and stderr
 * go together into *output (malloc'd, NUL-terminated; free()), unless
 * output is NULL.  Returns the exit status, or -1 when it could not run
 * or died of a signal.  Output with a sanitizer report is printed and
 * makes it -1 too, as a daemon's log does.
 */
int td_run_compatd(const char *const *args, char **output);

/*
 * Runs `compatd serve --listen 127.0.0.1:0 --data <d's data directory>`
 * with extra (NULL-terminated; NULL for none) to its exit, for settings
 * the daemon must refuse at startup.  Returns true when it exited with
 * status want and its output (stdout and stderr) contains says; otherwise
 * prints extra, the status and the output, and returns false.
 */
bool td_serve_refused(const td_daemon *d, const char *const *extra, int want,
                      const char *says);

/* --- API keys and TLS ------------------------------------------------- */

/*
 * Sends header (a whole line, "Name: value") with every later request of
 * h, until it is set again; NULL sends none (the default).
 */
void td_http_set_header(td_http *h, const char *header);

/* td_http_set_header with "Authorization: Bearer <key>"; NULL for none. */
void td_http_set_key(td_http *h, const char *key);

/*
 * From now on the harness speaks https to d (its readiness probe and every
 * td_http of d), trusting the certificate in ca_file; NULL goes back to
 * http.  The daemon's --tls-cert and --tls-key are the caller's args.
 */
void td_daemon_set_tls(td_daemon *d, const char *ca_file);

/* --- programs with stdout and stderr apart --------------------------- */

/* A program started by td_spawn() or td_compatd_spawn(). */
typedef struct td_proc {
    pid_t pid;          /* 0 once reaped */
    int out_fd;         /* read end of its stdout; -1 once closed */
    int err_fd;         /* read end of its stderr (a pty's master with tty) */
    char name[256];     /* argv[0] and argv[1], for messages */
} td_proc;

/*
 * Starts argv[0] (searched in PATH when it has no '/'; argv NULL-terminated,
 * with the program's name first) without waiting for it.  stdin is
 * /dev/null, stdout a pipe, stderr a pipe too or, with tty, a
 * pseudo-terminal in raw mode (no "\n" to "\r\n"), so that the program
 * sees isatty(2); it is killed if the test dies.  The caller may read
 * p->err_fd itself (to act on progress) and must end with
 * td_compatd_wait().  Returns false, after printing why, when it cannot
 * start (an exec that fails is exit status 127 instead).
 */
bool td_spawn(const char *const *argv, bool tty, td_proc *p);

/* td_spawn of $COMPATD with args (as td_run_compatd). */
bool td_compatd_spawn(const char *const *args, bool tty, td_proc *p);

/*
 * Reads the rest of p's stdout and stderr into *out and *err (malloc'd,
 * NUL-terminated, free(); either pointer may be NULL to drop that stream),
 * waits for the exit and closes p's descriptors.  Serves any td_proc, of
 * compatd or not.  Returns the exit status, 128 + the signal number when a
 * signal ended it (printed unless it was SIGKILL, which only a test sends),
 * or -1 when it cannot wait or its stderr holds a sanitizer report
 * (printed).
 */
int td_compatd_wait(td_proc *p, char **out, char **err);

/* td_spawn without a tty, then td_compatd_wait: runs any program.  -1 when
 * it cannot start. */
int td_run(const char *const *argv, char **out, char **err);

/* td_run of $COMPATD with args (as td_run_compatd). */
int td_run_compatd_split(const char *const *args, char **out, char **err);

/*
 * Runs `compatd keys create --scope scope --name name` on d's data
 * directory and copies the key it printed (its first output line) into out
 * (cap bytes, truncated; "" when nothing came; out may be NULL).  Returns
 * the exit status, having printed the output when it is not 0.
 */
int td_create_key(const td_daemon *d, const char *name, const char *scope, char *out,
                  size_t cap);

/*
 * Makes DIR/key.pem and a self-signed DIR/cert.pem for 127.0.0.1 (CN, IP
 * SAN; DNS SAN localhost), valid 7 days, with certtool (GnuTLS), or
 * openssl when certtool is missing.  Returns false when neither works.
 */
bool td_make_cert(const char *dir);

/* Copies the file from to to (created or truncated); false on any error. */
bool td_copy_file(const char *from, const char *to);

/* --- raw connections: exact bytes, for what libcurl would not send ---- */

/* A connected TCP socket to 127.0.0.1:port (TCP_NODELAY), or -1 after
 * printing why.  close() it. */
int td_raw_connect(int port);

/* Sends n bytes (NULs included) on fd; false when the peer is gone. */
bool td_raw_send(int fd, const void *bytes, size_t n);

/* td_raw_send of a C string. */
bool td_raw_sends(int fd, const char *s);

/*
 * Reads from fd for up to secs: returns 1 when the peer closed (EOF or
 * reset), 0 when it is still open at the end.  What arrived is appended
 * to buf (NUL-terminated, cap bytes) when buf is not NULL.
 */
int td_raw_wait_closed(int fd, double secs, char *buf, size_t cap);

/* Sends a whole GET of path on fd (keep-alive) and reads until its
 * reply's header is in buf; true when that is a 200. */
bool td_raw_get(int fd, const char *path, char *buf, size_t cap);

/* The current (or last) run's log, malloc'd (free()); "" when there is none. */
char *td_daemon_log(const td_daemon *d);

#endif
