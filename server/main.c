/*
 * main.c - the compatd command line.  `compatd serve` (the default) runs
 * the daemon; flags may also come from a config file of `key = value`
 * lines with the flags' names (`listen = 127.0.0.1:8080`), read first so
 * that flags on the command line win.
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "http.h"

#define DEFAULT_MAX_BODY (64u * 1024 * 1024)
/* 50,000 probes x 256 dims with a baseline is ~140 MB as vector_b64. */
#define DEFAULT_MAX_EVAL_BODY (512u * 1024 * 1024)

static const char usage[] =
    "usage: compatd [serve] [options]\n"
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
    "  --config FILE             read options from FILE (key = value lines)\n"
    "  -h, --help                this text\n"
    "  --version                 print the version\n";

enum { OPT_LISTEN = 256, OPT_DATA, OPT_THREADS, OPT_MAX_BODY, OPT_MAX_EVAL_BODY, OPT_LOG_LEVEL,
       OPT_SNAPSHOT, OPT_PORT_FILE, OPT_CONFIG, OPT_VERSION };

static const struct option options[] = {
    {"listen", required_argument, NULL, OPT_LISTEN},
    {"data", required_argument, NULL, OPT_DATA},
    {"threads", required_argument, NULL, OPT_THREADS},
    {"max-body", required_argument, NULL, OPT_MAX_BODY},
    {"max-eval-body", required_argument, NULL, OPT_MAX_EVAL_BODY},
    {"log-level", required_argument, NULL, OPT_LOG_LEVEL},
    {"snapshot-interval", required_argument, NULL, OPT_SNAPSHOT},
    {"port-file", required_argument, NULL, OPT_PORT_FILE},
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
        } else if (opt != OPT_CONFIG && set_value(&s, opt, optarg) != 0) {
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
        .log_level = LOG_INFO,
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
    cd_log_set_level(cfg.log_level);
    status = cd_serve(&cfg);
out:
    for (size_t i = 0; i < sizeof s.values / sizeof s.values[0]; i++)
        free(s.values[i]);
    return status;
}

int main(int argc, char **argv)
{
    if (argc >= 2 && strcmp(argv[1], "serve") == 0)
        return serve_main(argc - 1, argv + 1);
    if (argc >= 2 && argv[1][0] != '-') {
        fprintf(stderr, "compatd: unknown command \"%s\"\n%s", argv[1], usage);
        return 2;
    }
    return serve_main(argc, argv);
}
