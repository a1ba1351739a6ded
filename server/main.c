/*
 * main.c - the compatd command line.  `compatd serve` (the default) runs
 * the daemon; flags may also come from a config file of `key = value`
 * lines with the flags' names (`listen = 127.0.0.1:8080`), read first so
 * that flags on the command line win.  `compatd backup` copies a data
 * directory's database while a daemon serves from it (core/store.h,
 * cd_store_backup), `compatd check` checks one for damage (cd_store_check),
 * `compatd compact` rewrites a stopped one with full pages (cd_store_compact).
 * `compatd keys` manages API keys (server/auth.c).
 * `compatd import`, `eval`, `models`, `galleries`, `status`, `adapter`, `backfill`,
 * `promote` and `retire` talk to a
 * server over HTTP (server/cli/).  Commands are rows of the `commands`
 * table at the end.
 */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "api.h"
#include "auth.h"
#include "cli.h"
#include "log.h"
#include "serve.h"
#include "store.h"

#define DEFAULT_MAX_BODY (64u * 1024 * 1024)
/* 50,000 probes x 256 dims with a baseline is ~140 MB as vector_b64. */
#define DEFAULT_MAX_EVAL_BODY (512u * 1024 * 1024)

static const char usage[] =
    "usage: compatd [serve] [options]\n"
    "       compatd backup --to DIR [--data DIR]\n"
    "       compatd check [--data DIR]\n"
    "       compatd compact [--data DIR]\n"
    "       compatd keys create|list|revoke ... (compatd keys --help)\n"
    "       compatd import --gallery G --model M --vectors FILE --ids FILE [--labels FILE] ...\n"
    "       compatd eval --gallery G --query-model M --queries FILE --labels FILE ...\n"
    "       compatd eval --show ID\n"
    "       compatd models|galleries|status [--json]\n"
    "       compatd adapter fit|list|show|delete|route ... (compatd adapter --help)\n"
    "       compatd backfill --gallery G --model M --out FILE [--limit N] [--order O]\n"
    "       compatd promote|retire --gallery G --model M\n"
    "       compatd items list|delete --gallery G ... (compatd items --help)\n"
    "  (the client commands take --url URL, --key KEY, --cacert FILE; compatd <command> --help)\n"
    "\n"
    "Serves a backward-compatible embedding gallery over HTTP.\n"
    "\n"
    "options:\n"
    "  --listen HOST:PORT        address to listen on (default 127.0.0.1:8080; port 0 picks one)\n"
    "  --data DIR                data directory (default ./data)\n"
    "  --threads N               request threads (default: 2 x CPUs, at least 4)\n"
    "  --max-body BYTES          largest request body (default 67108864); K, M, G suffixes\n"
    "  --max-eval-body BYTES     largest evaluation request body (default 536870912)\n"
    "  --log-level LEVEL         error, warn, info or debug (default info)\n"
    "  --snapshot-interval SECS  index snapshot period (default 300; 0: only at shutdown)\n"
    "  --port-file FILE          write the bound port to FILE once listening\n"
    "\n"
    "  --key-file FILE           store the API keys of FILE's \"name scope key\" lines at start\n"
    "                            (names already stored are left alone)\n"
    "  --metrics-public          GET /metrics needs no API key (the probes never do)\n"
    "  --tls-cert FILE           serve HTTPS with this PEM certificate (chain); needs --tls-key\n"
    "  --tls-key FILE            the PEM private key of --tls-cert\n"
    "\n"
    "  --max-batch N             items per upsert request (default 100000)\n"
    "  --max-queries N           query vectors per search request (default 10000)\n"
    "  --max-k N                 largest k of a search (default and at most 1000)\n"
    "  --max-dim N               largest dim of a new model (default and at most 4096)\n"
    "  --max-metadata BYTES      largest metadata of an item (default and at most 16384)\n"
    "  --max-eval-probes N       probes per evaluation, queries and baseline each (default 100000)\n"
    "  --max-results N           results (queries x k) per search request (default 1000000)\n"
    "  --max-result-metadata BYTES  metadata per search request, counted as queries x k x\n"
    "                            --max-metadata (default 268435456)\n"
    "  --max-connections N       open connections at once, at least --threads (default 1024)\n"
    "  --idle-timeout SECS       close connections idle this long (default 30; 0: never)\n"
    "  --header-timeout SECS     close a new connection silent this long before its first\n"
    "                            request's header is complete (default 10; 0: never)\n"
    "\n"
    "  --config FILE             read options from FILE (key = value lines, the option names\n"
    "                            without --; metrics-public = true)\n"
    "  -h, --help                this text\n"
    "  --version                 print the version\n";

enum { OPT_LISTEN = 256, OPT_DATA, OPT_THREADS, OPT_MAX_BODY, OPT_MAX_EVAL_BODY, OPT_LOG_LEVEL,
       OPT_SNAPSHOT, OPT_PORT_FILE, OPT_KEY_FILE, OPT_METRICS_PUBLIC, OPT_TLS_CERT, OPT_TLS_KEY,
       OPT_MAX_BATCH, OPT_MAX_QUERIES, OPT_MAX_K, OPT_MAX_DIM, OPT_MAX_METADATA,
       OPT_MAX_EVAL_PROBES, OPT_MAX_RESULTS, OPT_MAX_RESULT_METADATA, OPT_MAX_CONNECTIONS,
       OPT_IDLE_TIMEOUT, OPT_HEADER_TIMEOUT, OPT_CONFIG, OPT_VERSION };

static const struct option options[] = {
    {"listen", required_argument, NULL, OPT_LISTEN},
    {"data", required_argument, NULL, OPT_DATA},
    {"threads", required_argument, NULL, OPT_THREADS},
    {"max-body", required_argument, NULL, OPT_MAX_BODY},
    {"max-eval-body", required_argument, NULL, OPT_MAX_EVAL_BODY},
    {"log-level", required_argument, NULL, OPT_LOG_LEVEL},
    {"snapshot-interval", required_argument, NULL, OPT_SNAPSHOT},
    {"port-file", required_argument, NULL, OPT_PORT_FILE},
    {"key-file", required_argument, NULL, OPT_KEY_FILE},
    {"metrics-public", no_argument, NULL, OPT_METRICS_PUBLIC},
    {"tls-cert", required_argument, NULL, OPT_TLS_CERT},
    {"tls-key", required_argument, NULL, OPT_TLS_KEY},
    {"max-batch", required_argument, NULL, OPT_MAX_BATCH},
    {"max-queries", required_argument, NULL, OPT_MAX_QUERIES},
    {"max-k", required_argument, NULL, OPT_MAX_K},
    {"max-dim", required_argument, NULL, OPT_MAX_DIM},
    {"max-metadata", required_argument, NULL, OPT_MAX_METADATA},
    {"max-eval-probes", required_argument, NULL, OPT_MAX_EVAL_PROBES},
    {"max-results", required_argument, NULL, OPT_MAX_RESULTS},
    {"max-result-metadata", required_argument, NULL, OPT_MAX_RESULT_METADATA},
    {"max-connections", required_argument, NULL, OPT_MAX_CONNECTIONS},
    {"idle-timeout", required_argument, NULL, OPT_IDLE_TIMEOUT},
    {"header-timeout", required_argument, NULL, OPT_HEADER_TIMEOUT},
    {"config", required_argument, NULL, OPT_CONFIG},
    {"help", no_argument, NULL, 'h'},
    {"version", no_argument, NULL, OPT_VERSION},
    {NULL, 0, NULL, 0},
};

/* Option values as strings until all sources are read. */
typedef struct settings {
    char *values[OPT_VERSION - OPT_LISTEN];
} settings;

static int set_value(settings *s, int opt, const char *value)
{
    char *copy = strdup(value);
    if (!copy)
        return -1;
    free(s->values[opt - OPT_LISTEN]);
    s->values[opt - OPT_LISTEN] = copy;
    return 0;
}

static const char *get_value(const settings *s, int opt, const char *dflt)
{
    const char *v = s->values[opt - OPT_LISTEN];
    return v ? v : dflt;
}

static char *trim(char *s)
{
    while (*s == ' ' || *s == '\t')
        s++;
    size_t n = strlen(s);
    while (n && (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\n' || s[n - 1] == '\r'))
        s[--n] = '\0';
    return s;
}

static int read_config(settings *s, const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        fprintf(stderr, "compatd: cannot read config %s: %s\n", path, strerror(errno));
        return -1;
    }
    char line[4096];
    int lineno = 0, rc = 0;
    while (rc == 0 && fgets(line, sizeof line, f)) {
        lineno++;
        char *p = trim(line);
        if (*p == '\0' || *p == '#')
            continue;
        char *eq = strchr(p, '=');
        if (!eq) {
            fprintf(stderr, "compatd: %s:%d: expected key = value\n", path, lineno);
            rc = -1;
            break;
        }
        *eq = '\0';
        char *key = trim(p), *value = trim(eq + 1);
        const struct option *o = options;
        while (o->name && (strcmp(o->name, key) != 0 || o->val < OPT_LISTEN || o->val >= OPT_CONFIG))
            o++;
        if (!o->name) {
            fprintf(stderr, "compatd: %s:%d: unknown setting \"%s\"\n", path, lineno, key);
            rc = -1;
        } else {
            rc = set_value(s, o->val, value);
        }
    }
    fclose(f);
    return rc;
}

static int parse_size(const char *s, size_t *out)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || end == s)
        return -1;
    unsigned long long mult = 1;
    if (*end == 'K' || *end == 'k')
        mult = 1024ull, end++;
    else if (*end == 'M' || *end == 'm')
        mult = 1024ull * 1024, end++;
    else if (*end == 'G' || *end == 'g')
        mult = 1024ull * 1024 * 1024, end++;
    if (*end || v == 0 || v > (1ull << 40) / mult)
        return -1;
    *out = (size_t)(v * mult);
    return 0;
}

static int parse_int(const char *s, int lo, int hi, int *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi)
        return -1;
    *out = (int)v;
    return 0;
}

/* The long name of option opt. */
static const char *opt_name(int opt)
{
    const struct option *o = options;
    while (o->name && o->val != opt)
        o++;
    return o->name ? o->name : "?";
}

static int parse_bool(const char *s, bool *out)
{
    static const char *const yes[] = {"true", "yes", "on", "1"}, *const no[] = {"false", "no",
                                                                              "off", "0"};
    for (size_t i = 0; i < sizeof yes / sizeof yes[0]; i++) {
        if (strcmp(s, yes[i]) == 0 || strcmp(s, no[i]) == 0) {
            *out = strcmp(s, yes[i]) == 0;
            return 0;
        }
    }
    return -1;
}

/* The limits and connection settings (api.h, http.h) from s into cfg and
 * lim; prints which one is wrong and returns -1 on a bad value. */
typedef struct int_option {
    int opt;
    int lo, hi;
} int_option;

/* The row of opt in table (there is one: the table lists every integer
 * option read_limits reads). */
static size_t count_index(const int_option *table, size_t n, int opt)
{
    size_t i = 0;
    while (i + 1 < n && table[i].opt != opt)
        i++;
    return i;
}

static int read_limits(const settings *s, cd_server_config *cfg, cd_limits *lim)
{
    static const int_option counts[] = {
        {OPT_MAX_BATCH, 1, 10000000},
        {OPT_MAX_QUERIES, 1, 1000000},
        {OPT_MAX_K, 1, CD_K_MAX},
        {OPT_MAX_DIM, 1, CD_DIM_MAX},
        {OPT_MAX_EVAL_PROBES, 1, 10000000},
        {OPT_MAX_CONNECTIONS, 1, 1000000},
        {OPT_IDLE_TIMEOUT, 0, 86400},
        {OPT_HEADER_TIMEOUT, 0, 86400},
        {OPT_MAX_RESULTS, 1, 1000000000},
    };
    int val[sizeof counts / sizeof counts[0]];
    for (size_t i = 0; i < sizeof counts / sizeof counts[0]; i++) {
        const char *v = get_value(s, counts[i].opt, NULL);
        val[i] = 0;
        if (v && parse_int(v, counts[i].lo, counts[i].hi, &val[i]) != 0) {
            fprintf(stderr, "compatd: --%s must be an integer %d..%d\n",
                    opt_name(counts[i].opt), counts[i].lo, counts[i].hi);
            return -1;
        }
    }
    /* By option, not by position in counts[]: two flags added side by
     * side must not read each other's value. */
#define VAL(o) val[count_index(counts, sizeof counts / sizeof counts[0], o)]
    *lim = (cd_limits){
        .max_batch = VAL(OPT_MAX_BATCH) ? (size_t)VAL(OPT_MAX_BATCH) : CD_DEFAULT_MAX_BATCH,
        .max_queries = VAL(OPT_MAX_QUERIES) ? (size_t)VAL(OPT_MAX_QUERIES) : CD_DEFAULT_MAX_QUERIES,
        .max_k = VAL(OPT_MAX_K) ? VAL(OPT_MAX_K) : CD_DEFAULT_MAX_K,
        .max_dim = VAL(OPT_MAX_DIM) ? VAL(OPT_MAX_DIM) : CD_DEFAULT_MAX_DIM,
        .max_metadata = CD_DEFAULT_MAX_METADATA,
        .max_eval_probes = VAL(OPT_MAX_EVAL_PROBES) ? (size_t)VAL(OPT_MAX_EVAL_PROBES)
                                                    : CD_DEFAULT_MAX_EVAL_PROBES,
        .max_results = VAL(OPT_MAX_RESULTS) ? (size_t)VAL(OPT_MAX_RESULTS) : CD_DEFAULT_MAX_RESULTS,
        .max_result_metadata = CD_DEFAULT_MAX_RESULT_METADATA,
    };
    cfg->max_connections = VAL(OPT_MAX_CONNECTIONS) ? (unsigned)VAL(OPT_MAX_CONNECTIONS) : 1024;
    cfg->idle_timeout_s = get_value(s, OPT_IDLE_TIMEOUT, NULL) ? (unsigned)VAL(OPT_IDLE_TIMEOUT) : 30;
    cfg->header_timeout_s =
        get_value(s, OPT_HEADER_TIMEOUT, NULL) ? (unsigned)VAL(OPT_HEADER_TIMEOUT) : 10;
#undef VAL
    const char *v = get_value(s, OPT_MAX_METADATA, NULL);
    if (v && (parse_size(v, &lim->max_metadata) != 0 || lim->max_metadata > CD_METADATA_MAX)) {
        fprintf(stderr, "compatd: --max-metadata must be 1..%d bytes\n", CD_METADATA_MAX);
        return -1;
    }
    v = get_value(s, OPT_MAX_RESULT_METADATA, NULL);
    if (v && parse_size(v, &lim->max_result_metadata) != 0) {
        fprintf(stderr, "compatd: --max-result-metadata must be a positive number of bytes\n");
        return -1;
    }
    if ((v = get_value(s, OPT_METRICS_PUBLIC, NULL)) && parse_bool(v, &cfg->metrics_public) != 0) {
        fprintf(stderr, "compatd: metrics-public must be true or false\n");
        return -1;
    }
    cfg->tls_cert = get_value(s, OPT_TLS_CERT, NULL);
    cfg->tls_key = get_value(s, OPT_TLS_KEY, NULL);
    if (!cfg->tls_cert != !cfg->tls_key) {
        fprintf(stderr, "compatd: --tls-cert and --tls-key go together: give both or neither\n");
        return -1;
    }
    cfg->key_file = get_value(s, OPT_KEY_FILE, NULL);
    cfg->limits = lim;
    return 0;
}

static int serve_main(int argc, char **argv)
{
    settings s = {0};
    int status = 2;
    int opt;
    /* First pass: the config file, so that flags override it. */
    optind = 1;
    opterr = 0;
    while ((opt = getopt_long(argc, argv, "h", options, NULL)) != -1)
        if (opt == OPT_CONFIG && read_config(&s, optarg) != 0)
            goto out;
    optind = 1;
    opterr = 1;
    while ((opt = getopt_long(argc, argv, "h", options, NULL)) != -1) {
        if (opt == 'h') {
            fputs(usage, stdout);
            status = 0;
            goto out;
        } else if (opt == OPT_VERSION) {
            printf("compatd %s\n", COMPATD_VERSION);
            status = 0;
            goto out;
        } else if (opt == '?') {
            fputs(usage, stderr);
            goto out;
        } else if (opt != OPT_CONFIG && set_value(&s, opt, optarg ? optarg : "true") != 0) {
            goto out;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "compatd: unexpected argument \"%s\"\n%s", argv[optind], usage);
        goto out;
    }

    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    int default_threads = ncpu > 2 ? (int)ncpu * 2 : 4;
    cd_server_config cfg = {
        .listen = get_value(&s, OPT_LISTEN, "127.0.0.1:8080"),
        .data_dir = get_value(&s, OPT_DATA, "./data"),
        .threads = default_threads,
        .max_body = DEFAULT_MAX_BODY,
        .max_eval_body = DEFAULT_MAX_EVAL_BODY,
        .log_level = CD_LOG_INFO,
        .snapshot_interval_s = 300,
        .port_file = get_value(&s, OPT_PORT_FILE, NULL),
    };
    const char *v;
    if ((v = get_value(&s, OPT_THREADS, NULL)) && parse_int(v, 1, 1024, &cfg.threads) != 0) {
        fprintf(stderr, "compatd: --threads must be 1..1024\n");
        goto out;
    }
    if ((v = get_value(&s, OPT_MAX_BODY, NULL)) && parse_size(v, &cfg.max_body) != 0) {
        fprintf(stderr, "compatd: --max-body must be a positive size in bytes (K, M, G allowed)\n");
        goto out;
    }
    if ((v = get_value(&s, OPT_MAX_EVAL_BODY, NULL)) && parse_size(v, &cfg.max_eval_body) != 0) {
        fprintf(stderr, "compatd: --max-eval-body must be a positive size in bytes (K, M, G allowed)\n");
        goto out;
    }
    if ((v = get_value(&s, OPT_LOG_LEVEL, NULL)) && !cd_log_level_parse(v, &cfg.log_level)) {
        fprintf(stderr, "compatd: --log-level must be error, warn, info or debug\n");
        goto out;
    }
    if ((v = get_value(&s, OPT_SNAPSHOT, NULL)) &&
        parse_int(v, 0, 7 * 24 * 3600, &cfg.snapshot_interval_s) != 0) {
        fprintf(stderr, "compatd: --snapshot-interval must be 0..604800 seconds\n");
        goto out;
    }
    /* The daemon makes DATA/compatd.db-wal and PORT_FILE.tmp: a path too
     * long for them is refused here rather than cut or failed later. */
    if (strlen(cfg.data_dir) + sizeof "/compatd.db-wal" > PATH_MAX) {
        fprintf(stderr, "compatd: --data is %zu bytes long: at most %zu\n", strlen(cfg.data_dir),
                (size_t)PATH_MAX - sizeof "/compatd.db-wal");
        goto out;
    }
    if (cfg.port_file && strlen(cfg.port_file) + sizeof ".tmp" > PATH_MAX) {
        fprintf(stderr, "compatd: --port-file is %zu bytes long: at most %zu\n",
                strlen(cfg.port_file), (size_t)PATH_MAX - sizeof ".tmp");
        goto out;
    }
    cd_limits limits;
    if (read_limits(&s, &cfg, &limits) != 0)
        goto out;
    if (cfg.max_connections < (unsigned)cfg.threads) {
        fprintf(stderr, "compatd: --max-connections %u is less than --threads %d\n",
                cfg.max_connections, cfg.threads);
        goto out;
    }
    cd_log_set_level(cfg.log_level);
#ifdef __GLIBC__
    /* Blocks of 1 MiB and more (request bodies, large replies) get a
     * mapping of their own, unmapped when freed.  By default glibc raises
     * this threshold after each such free, and from then on a large reply
     * freed after sending stays in the heap (api.c trims the rest). */
    mallopt(M_MMAP_THRESHOLD, 1 << 20);
#endif
    status = cd_serve(&cfg);
out:
    for (size_t i = 0; i < sizeof s.values / sizeof s.values[0]; i++)
        free(s.values[i]);
    return status;
}

/* --- compatd backup ----------------------------------------------------- */

static const char backup_usage[] =
    "usage: compatd backup --to DIR [--data DIR]\n"
    "\n"
    "Copies the data directory's database to DIR/compatd.db while a daemon\n"
    "may keep serving from it.  The copy holds one consistent state, with\n"
    "every write acknowledged before the backup began; `compatd serve --data\n"
    "DIR` serves it (index snapshots are not copied: they are rebuilt from\n"
    "the database on the first start).\n"
    "\n"
    "options:\n"
    "  --to DIR      destination directory, created (mode 0700) when missing;\n"
    "                refused when it already holds a compatd.db\n"
    "  --data DIR    data directory to copy (default ./data)\n"
    "  -h, --help    this text\n";

static int backup_main(int argc, char **argv)
{
    enum { OPT_TO = 256, OPT_FROM };
    static const struct option backup_options[] = {
        {"to", required_argument, NULL, OPT_TO},
        {"data", required_argument, NULL, OPT_FROM},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *to = NULL, *data = "./data";
    int opt;
    optind = 1;
    opterr = 1;
    while ((opt = getopt_long(argc, argv, "h", backup_options, NULL)) != -1) {
        if (opt == 'h') {
            fputs(backup_usage, stdout);
            return 0;
        } else if (opt == OPT_TO) {
            to = optarg;
        } else if (opt == OPT_FROM) {
            data = optarg;
        } else {
            fputs(backup_usage, stderr);
            return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "compatd: unexpected argument \"%s\"\n%s", argv[optind], backup_usage);
        return 2;
    }
    if (!to || !*to || !*data) {
        fprintf(stderr, "compatd: backup needs --to DIR\n%s", backup_usage);
        return 2;
    }

    char *src = NULL, *dest = NULL;
    int status = 1;
    /* asprintf leaves its pointer undefined when it fails. */
    if (asprintf(&src, "%s/compatd.db", data) < 0)
        src = NULL;
    if (asprintf(&dest, "%s/compatd.db", to) < 0)
        dest = NULL;
    if (!src || !dest) {
        fprintf(stderr, "compatd: out of memory\n");
        goto out;
    }
    if (mkdir(to, 0700) != 0 && errno != EEXIST) {
        fprintf(stderr, "compatd: cannot create %s: %s\n", to, strerror(errno));
        goto out;
    }
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    cd_error err = {0};
    int64_t bytes = 0;
    cd_err rc = cd_store_backup(src, dest, &bytes, &err);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    if (rc == CD_EEXISTS) {
        fprintf(stderr, "compatd: backup refused: %s; back up into a new or empty directory\n",
                err.message);
        goto out;
    }
    if (rc != CD_OK) {
        fprintf(stderr, "compatd: backup failed: %s\n", err.message);
        goto out;
    }
    double secs = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
    printf("compatd: backed up %s to %s (%lld bytes, %.2f s)\n", src, dest, (long long)bytes,
           secs);
    status = 0;
out:
    free(src);
    free(dest);
    return status;
}

/* --- compatd check ------------------------------------------------------ */

static const char check_usage[] =
    "usage: compatd check [--data DIR]\n"
    "\n"
    "Checks the data directory's database for damage without changing it (a\n"
    "daemon may keep serving from it): SQLite's integrity check, then that\n"
    "every embedding has its model's size and an item of its gallery, every\n"
    "item a gallery, and that the galleries' counts agree with their rows.\n"
    "Exit status 0: healthy; 1: damaged (or unreadable); 2: usage error.\n"
    "\n"
    "options:\n"
    "  --data DIR    data directory to check (default ./data)\n"
    "  -h, --help    this text\n";

/*
 * The command line of a command whose only option is --data DIR (check,
 * compact): sets *db to DIR/compatd.db (free()) and returns -1 to go on,
 * or the exit status to end with (help 0, usage error 2, out of memory 1).
 */
static int data_dir_args(int argc, char **argv, const char *help, char **db)
{
    static const struct option data_options[] = {
        {"data", required_argument, NULL, 'd'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *data = "./data";
    int opt;
    *db = NULL;
    optind = 1;
    opterr = 1;
    while ((opt = getopt_long(argc, argv, "h", data_options, NULL)) != -1) {
        if (opt == 'h') {
            fputs(help, stdout);
            return 0;
        } else if (opt == 'd') {
            data = optarg;
        } else {
            fputs(help, stderr);
            return 2;
        }
    }
    if (optind < argc || !*data) {
        fprintf(stderr, "compatd: unexpected argument \"%s\"\n%s",
                optind < argc ? argv[optind] : "--data", help);
        return 2;
    }
    if (asprintf(db, "%s/compatd.db", data) < 0) {
        *db = NULL;
        fprintf(stderr, "compatd: out of memory\n");
        return 1;
    }
    return -1;
}

/* Runs cd_store_check on db and prints its verdict; CD_OK when healthy. */
static cd_err check_print(const char *db, bool quiet_when_healthy)
{
    cd_store_check_report r;
    cd_error err = {0};
    cd_err rc = cd_store_check(db, &r, &err);
    if (rc == CD_OK) {
        if (!quiet_when_healthy)
            printf("compatd: %s is healthy (schema %d): %lld galleries, %lld items, "
                   "%lld embeddings\n", db, r.schema_version, (long long)r.galleries,
                   (long long)r.items, (long long)r.embeddings);
    } else if (rc == CD_ECORRUPT) {
        printf("compatd: %s is DAMAGED:\n", db);
        for (size_t i = 0; i < r.n_problems; i++)
            printf("  %s\n", r.problems[i]);
        if (r.more)
            printf("  (more problems than these)\n");
        printf("Do not serve it: restore the data directory from a backup (compatd backup),\n"
               "keeping this one aside for inspection.\n");
    } else {
        fprintf(stderr, "compatd: cannot check %s: %s\n", db, err.message);
    }
    return rc;
}

static int check_main(int argc, char **argv)
{
    char *db;
    int status = data_dir_args(argc, argv, check_usage, &db);
    if (status < 0)
        status = check_print(db, false) == CD_OK ? 0 : 1;
    free(db);
    return status;
}

/* --- compatd compact ---------------------------------------------------- */

static const char compact_usage[] =
    "usage: compatd compact [--data DIR]\n"
    "\n"
    "Checks a stopped data directory's database (as compatd check) and rewrites\n"
    "it with full pages (SQLite's VACUUM): about a tenth smaller after bulk\n"
    "imports, and without the free pages deletes left.  Refused while a daemon\n"
    "serves the directory.  Needs the database's size again in free disk while\n"
    "it runs (about 10 s per million 128-d vectors).\n"
    "Exit status 0: compacted; 1: refused, damaged or failed (the database is\n"
    "as it was); 2: usage error.\n"
    "\n"
    "options:\n"
    "  --data DIR    data directory to compact (default ./data)\n"
    "  -h, --help    this text\n";

static int compact_main(int argc, char **argv)
{
    char *db;
    int status = data_dir_args(argc, argv, compact_usage, &db);
    if (status >= 0) {
        free(db);
        return status;
    }
    status = 1;
    int64_t before = 0, after = 0;
    cd_error err = {0};
    if (check_print(db, true) != CD_OK) {
        fprintf(stderr, "compatd: %s not compacted\n", db);
    } else if (cd_store_compact(db, &before, &after, &err) != CD_OK) {
        fprintf(stderr, "compatd: %s not compacted: %s\n", db, err.message);
    } else {
        printf("compatd: compacted %s: %lld -> %lld bytes (%.1f%% smaller)\n", db,
               (long long)before, (long long)after,
               before > 0 ? 100.0 * (double)(before - after) / (double)before : 0.0);
        status = 0;
    }
    free(db);
    return status;
}

/* The commands; without one (no argument, or options first) it is serve.
 * Each gets argv from its own name on. */
static const struct command {
    const char *name;
    int (*run)(int argc, char **argv);
} commands[] = {
    {"serve", serve_main},
    {"backup", backup_main},
    {"check", check_main},
    {"compact", compact_main},
    {"keys", cd_keys_main},
    {"import", cd_import_main},
    {"eval", cd_eval_main},
    {"models", cd_models_main},
    {"galleries", cd_galleries_main},
    {"status", cd_status_main},
    {"adapter", cd_adapter_main},
    {"backfill", cd_backfill_main},
    {"promote", cd_promote_main},
    {"retire", cd_retire_main},
    {"items", cd_items_main},
};

/*
 * The thread policy the daemon's speed depends on: OpenMP (FAISS, the
 * evaluation engine, exact scans) and OpenBLAS threads that wait
 * passively and let idle threads go, instead of spinning on a small
 * machine's few cores (batch search throughput swung by 3x without
 * them).  Both libraries read these variables when they are loaded,
 * before main runs, so setting them here is too late for this process:
 * when one is missing, main sets it (keeping any the operator set) and
 * executes itself again, once; REEXEC_MARK in the environment says it
 * already did.
 */
static const struct {
    const char *name, *value;
} thread_policy[] = {
    {"OMP_WAIT_POLICY", "passive"},
    {"OPENBLAS_THREAD_TIMEOUT", "4"},
};

#define REEXEC_MARK "COMPATD_THREAD_POLICY_SET"

static void set_thread_policy(char **argv)
{
    if (getenv(REEXEC_MARK)) {
        unsetenv(REEXEC_MARK);  /* not inherited by anything we start */
        return;
    }
    bool missing = false;
    for (size_t i = 0; i < sizeof thread_policy / sizeof thread_policy[0]; i++)
        if (!getenv(thread_policy[i].name)) {
            missing = true;
            if (setenv(thread_policy[i].name, thread_policy[i].value, 0) != 0)
                return;
        }
    if (!missing || setenv(REEXEC_MARK, "1", 1) != 0)
        return;
    execv("/proc/self/exe", argv);
    /* No /proc: run as we are, at the libraries' default policy. */
    unsetenv(REEXEC_MARK);
    fprintf(stderr, "compatd: cannot re-execute with %s and %s set (%s); "
            "threads keep the libraries' default wait policy\n",
            thread_policy[0].name, thread_policy[1].name, strerror(errno));
}

/* True when argv runs the daemon (serve, the default command). */
static bool runs_daemon(int argc, char **argv)
{
    return argc < 2 || argv[1][0] == '-' || strcmp(argv[1], "serve") == 0;
}

int main(int argc, char **argv)
{
    if (runs_daemon(argc, argv))
        set_thread_policy(argv);
    if (argc >= 2 && argv[1][0] != '-') {
        for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
            if (strcmp(argv[1], commands[i].name) == 0)
                return commands[i].run(argc - 1, argv + 1);
        fprintf(stderr, "compatd: unknown command \"%s\"\n%s", argv[1], usage);
        return 2;
    }
    return serve_main(argc, argv);
}
