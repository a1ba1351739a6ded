/*
 * auth.c - API keys on the server side (see auth.h): checking a request's
 * key against its route's scope, reading a key file, and the `compatd
 * keys` command line.  Key text is a secret: it is never
 * logged, it is printed once (by `keys create`, on stdout and nothing
 * else there), and buffers that held it are cleared with explicit_bzero
 * (a memset there is a dead store the optimiser may drop) before they are
 * freed.  Also which addresses and Host names are loopback: a daemon
 * without keys serves only those.
 */
#include "auth.h"

#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "keys.h"
#include "log.h"
#include "text.h"

/* --- checking a request's key ------------------------------------------ */

/*
 * Whether requests need a key: yes once any key row exists (revoked ones
 * too).  Rows are never deleted, so a yes is kept for good; until then
 * each request asks the store, so that the first key made with
 * `compatd keys create` while the daemon serves counts at once.
 */
cd_err cd_auth_keys_required(cd_api *api, bool *out, cd_error *err)
{
    if (atomic_load(&api->keys_seen)) {
        *out = true;
        return CD_OK;
    }
    cd_err rc = cd_store_keys_exist(cd_engine_store(api->engine), out, err);
    if (rc == CD_OK && *out)
        atomic_store(&api->keys_seen, true);
    return rc;
}

static const char authenticate_bearer[] = "Bearer realm=\"compatd\"";
static const char authenticate_invalid[] =
    "Bearer realm=\"compatd\", error=\"invalid_token\"";

bool cd_auth_request(cd_api *api, const cd_route_match *m, const cd_request *req,
                     cd_reply *rep)
{
    cd_error err;
    rep->route = cd_route_pattern(m);
    cd_scope need = cd_route_scope(m, api->metrics_public);
    if (need == CD_SCOPE_NONE)
        return true;
    bool required;
    if (cd_auth_keys_required(api, &required, &err) != CD_OK) {
        cd_reply_core_error(rep, &err);
        return false;
    }
    if (!required)
        return true;
    if (!req->api_key) {
        rep->authenticate = authenticate_bearer;
        if (req->auth_invalid)
            cd_reply_error(rep, CD_HTTP_UNAUTHORIZED,
                           "the Authorization header must be \"Bearer <key>\"");
        else
            cd_reply_error(rep, CD_HTTP_UNAUTHORIZED,
                           "an API key is required: send \"Authorization: Bearer <key>\"");
        return false;
    }
    cd_key_status status;
    cd_api_key key;
    if (cd_keys_verify(cd_engine_store(api->engine), req->api_key, &status, &key,
                       &err) != CD_OK) {
        cd_reply_core_error(rep, &err);
        return false;
    }
    if (status != CD_KEY_ACTIVE) {
        rep->authenticate = authenticate_invalid;
        if (status == CD_KEY_REVOKED)
            cd_reply_error(rep, CD_HTTP_UNAUTHORIZED, "API key %s was revoked at %s",
                           key.name, key.revoked_at);
        else
            cd_reply_error(rep, CD_HTTP_UNAUTHORIZED, "unknown API key");
        return false;
    }
    if (key.scope < need) {
        cd_reply_error(rep, CD_HTTP_FORBIDDEN, "API key %s has scope %s; %s %s needs %s",
                       key.name, cd_scope_name(key.scope), req->method, rep->route,
                       cd_scope_name(need));
        return false;
    }
    return true;
}

/* --- the key file ------------------------------------------------------- */

#define KEY_FILE_LINE_MAX 4096

typedef struct key_line {
    int line;
    char name[CD_NAME_MAX + 1];
    cd_scope scope;
    char key[CD_KEY_MAX + 1];
} key_line;

/* Splits s at spaces and tabs into at most max fields; returns how many
 * there were (max + 1 when there were more). */
static int split_fields(char *s, char **field, int max)
{
    int n = 0;
    for (;;) {
        while (*s == ' ' || *s == '\t' || *s == '\r' || *s == '\n')
            *s++ = '\0';
        if (!*s)
            return n;
        if (n == max)
            return max + 1;
        field[n++] = s;
        while (*s && *s != ' ' && *s != '\t' && *s != '\r' && *s != '\n')
            s++;
    }
}

/* Reads and checks every line of the file into *out (malloc'd). */
static int key_file_read(const char *path, key_line **out, size_t *n_out)
{
    char buf[KEY_FILE_LINE_MAX + 2];
    key_line *lines = NULL;
    size_t n = 0, cap = 0;
    int lineno = 0, rc = -1;
    *out = NULL;
    *n_out = 0;
    FILE *f = fopen(path, "r");
    if (!f) {
        cd_log(CD_LOG_ERROR, "cannot read --key-file %s: %s", path, strerror(errno));
        return -1;
    }
    while (fgets(buf, sizeof buf, f)) {
        char *field[3];
        lineno++;
        size_t len = strlen(buf);
        if (len > KEY_FILE_LINE_MAX || (len && buf[len - 1] != '\n' && !feof(f))) {
            cd_log(CD_LOG_ERROR, "key file %s:%d: line longer than %d bytes", path, lineno,
                   KEY_FILE_LINE_MAX);
            goto out;
        }
        int nf = split_fields(buf, field, 3);
        if (nf == 0 || field[0][0] == '#')
            continue;
        if (nf != 3) {
            cd_log(CD_LOG_ERROR, "key file %s:%d: expected \"name scope key\" (%s fields)", path,
                   lineno, nf < 3 ? "too few" : "too many");
            goto out;
        }
        key_line k = {.line = lineno};
        if (!cd_name_valid(field[0])) {
            cd_log(CD_LOG_ERROR, "key file %s:%d: the name must be 1 to %d of [A-Za-z0-9._-]",
                   path, lineno, CD_NAME_MAX);
            goto out;
        }
        if (!cd_scope_parse(field[1], &k.scope)) {
            cd_log(CD_LOG_ERROR, "key file %s:%d: the scope must be read, write or admin", path,
                   lineno);
            goto out;
        }
        if (!cd_key_text_valid(field[2])) {
            cd_log(CD_LOG_ERROR, "key file %s:%d: the key must be %d to %d characters of "
                   "A-Z a-z 0-9 . _ ~ + / = - (e.g. openssl rand -base64 32)", path, lineno,
                   CD_KEY_MIN, CD_KEY_MAX);
            goto out;
        }
        snprintf(k.name, sizeof k.name, "%s", field[0]);
        snprintf(k.key, sizeof k.key, "%s", field[2]);
        for (size_t i = 0; i < n; i++) {
            if (strcmp(lines[i].name, k.name) == 0 || strcmp(lines[i].key, k.key) == 0) {
                cd_log(CD_LOG_ERROR, "key file %s:%d: the same %s as line %d", path, lineno,
                       strcmp(lines[i].name, k.name) == 0 ? "name" : "key", lines[i].line);
                explicit_bzero(&k, sizeof k);
                goto out;
            }
        }
        if (n == cap) {
            size_t ncap = cap ? cap * 2 : 8;
            key_line *grown = calloc(ncap, sizeof *grown);
            if (!grown) {
                cd_log(CD_LOG_ERROR, "key file %s: out of memory", path);
                explicit_bzero(&k, sizeof k);
                goto out;
            }
            if (n)
                memcpy(grown, lines, n * sizeof *lines);
            if (lines)
                explicit_bzero(lines, n * sizeof *lines);
            free(lines);
            lines = grown;
            cap = ncap;
        }
        lines[n++] = k;
        explicit_bzero(&k, sizeof k);
    }
    if (ferror(f)) {
        cd_log(CD_LOG_ERROR, "cannot read --key-file %s: %s", path, strerror(errno));
        goto out;
    }
    rc = 0;
out:
    explicit_bzero(buf, sizeof buf);
    fclose(f);
    if (rc != 0) {
        if (lines)
            explicit_bzero(lines, n * sizeof *lines);
        free(lines);
        lines = NULL;
        n = 0;
    }
    *out = lines;
    *n_out = n;
    return rc;
}

int cd_key_file_load(cd_store *st, const char *path)
{
    key_line *lines;
    size_t n, added = 0;
    int rc = key_file_read(path, &lines, &n);
    for (size_t i = 0; rc == 0 && i < n; i++) {
        const key_line *k = &lines[i];
        cd_api_key stored;
        cd_error err;
        cd_err e = cd_store_key_get(st, k->name, &stored, &err);
        if (e == CD_OK) {
            unsigned char hash[CD_KEY_HASH_SIZE];
            cd_key_hash(k->key, hash);
            if (memcmp(hash, stored.hash, sizeof hash) != 0 || stored.scope != k->scope)
                cd_log(CD_LOG_WARN, "key file %s:%d: API key %s is stored already with another "
                       "key or scope; the stored one stays (names are never reused: give "
                       "a new key a new name)", path, k->line, k->name);
            else if (stored.revoked_at[0])
                cd_log(CD_LOG_WARN, "key file %s:%d: API key %s was revoked at %s; it stays "
                       "revoked", path, k->line, k->name, stored.revoked_at);
            continue;
        }
        if (e == CD_ENOTFOUND)
            e = cd_keys_add(st, k->name, k->scope, k->key, NULL, &err);
        if (e != CD_OK) {
            cd_log(CD_LOG_ERROR, "key file %s:%d: cannot store API key %s: %s", path, k->line,
                   k->name, err.message);
            rc = -1;
        } else {
            added++;
        }
    }
    if (rc == 0)
        cd_log(CD_LOG_INFO, "key file %s: %zu keys, %zu of them new", path, n, added);
    if (lines)
        explicit_bzero(lines, n * sizeof *lines);
    free(lines);
    return rc;
}

/* --- loopback names -------------------------------------------------------- */

bool cd_ip_is_loopback(int family, const void *addr)
{
    if (family == AF_INET)
        return (ntohl(((const struct in_addr *)addr)->s_addr) >> 24) == 127;
    const struct in6_addr *a = addr;
    return IN6_IS_ADDR_LOOPBACK(a) || (IN6_IS_ADDR_V4MAPPED(a) && a->s6_addr[12] == 127);
}

bool cd_host_is_loopback(const char *host)
{
    char name[INET6_ADDRSTRLEN + 1];
    const char *port;
    bool bracketed = host[0] == '[';
    if (bracketed) {
        const char *close = strchr(host, ']');
        if (!close)
            return false;
        port = close + 1;
        host++;
    } else {
        port = strchr(host, ':');
        if (!port)
            port = host + strlen(host);
    }
    size_t len = (size_t)(port - host) - bracketed;
    if (len == 0 || len >= sizeof name)
        return false;
    memcpy(name, host, len);
    name[len] = '\0';
    if (*port == ':')
        port++;
    else if (*port)
        return false;
    if (strlen(port) > 5 || strspn(port, "0123456789") != strlen(port))
        return false;
    unsigned char addr[sizeof(struct in6_addr)];
    if (bracketed)
        return inet_pton(AF_INET6, name, addr) == 1 && cd_ip_is_loopback(AF_INET6, addr);
    if (inet_pton(AF_INET, name, addr) == 1)
        return cd_ip_is_loopback(AF_INET, addr);
    return strcasecmp(name, "localhost") == 0;
}

/* --- compatd keys -------------------------------------------------------- */

static const char keys_usage[] =
    "usage: compatd keys create --scope read|write|admin --name NAME [--data DIR]\n"
    "       compatd keys list [--data DIR]\n"
    "       compatd keys revoke NAME|ID [--data DIR]\n"
    "\n"
    "Manages the API keys of a data directory, also while a daemon serves\n"
    "from it (a change counts from the daemon's next request on).  Once a\n"
    "data directory has a key, every request but /healthz and /readyz needs\n"
    "one: \"Authorization: Bearer <key>\".  Scopes: read (GET, search), write\n"
    "(also items and evaluations), admin (also models and galleries).\n"
    "\n"
    "  create   makes a key and prints it on stdout, once: only its hash is\n"
    "           stored.  Names are [A-Za-z0-9._-]{1,64} and never reused.\n"
    "  list     id, name, scope, prefix (the key's first characters),\n"
    "           created_at and revoked_at of every key; never the keys\n"
    "  revoke   revokes a key by name (or id); it is refused from then on\n"
    "\n"
    "options:\n"
    "  --scope SCOPE   read, write or admin (create)\n"
    "  --name NAME     the key's name (create)\n"
    "  --data DIR      data directory (default ./data)\n"
    "  -h, --help      this text\n";

/* Opens DIR/compatd.db; create makes the directory when missing. */
static cd_store *keys_open(const char *data, bool create)
{
    char path[4096];
    cd_store *st = NULL;
    cd_error err;
    if ((size_t)snprintf(path, sizeof path, "%s/compatd.db", data) >= sizeof path) {
        fprintf(stderr, "compatd: --data path is too long\n");
        return NULL;
    }
    if (create) {
        if (mkdir(data, 0700) != 0 && errno != EEXIST) {
            fprintf(stderr, "compatd: cannot create %s: %s\n", data, strerror(errno));
            return NULL;
        }
    } else if (access(path, F_OK) != 0) {
        fprintf(stderr, "compatd: no compatd database in %s (%s); is --data right?\n", data,
                strerror(errno));
        return NULL;
    }
    if (cd_store_open(path, &st, &err) != CD_OK) {
        fprintf(stderr, "compatd: cannot open %s: %s\n", path, err.message);
        return NULL;
    }
    return st;
}

static int keys_create(const char *data, const char *name, const char *scope_s)
{
    cd_scope scope;
    if (!name || !scope_s) {
        fprintf(stderr, "compatd: keys create needs --scope and --name\n%s", keys_usage);
        return 2;
    }
    if (!cd_scope_parse(scope_s, &scope)) {
        fprintf(stderr, "compatd: --scope must be read, write or admin (not \"%s\")\n", scope_s);
        return 2;
    }
    if (!cd_name_valid(name)) {
        fprintf(stderr, "compatd: --name must be 1 to %d of [A-Za-z0-9._-]\n", CD_NAME_MAX);
        return 2;
    }
    cd_store *st = keys_open(data, true);
    if (!st)
        return 1;
    char *key = NULL;
    cd_api_key k;
    cd_error err;
    int status = 1;
    if (cd_keys_create(st, name, scope, &key, &k, &err) != CD_OK) {
        fprintf(stderr, "compatd: cannot create API key %s: %s\n", name, err.message);
    } else if (printf("%s\n", key) < 0 || fflush(stdout) != 0) {
        /* The key is stored but nobody saw it: take it back. */
        fprintf(stderr, "compatd: cannot write the key to stdout: %s; revoking it\n",
                strerror(errno));
        cd_store_key_revoke(st, k.id, NULL, NULL, NULL);
    } else {
        fprintf(stderr, "compatd: created API key %s (id %lld, scope %s). This is the only "
                "time it is shown: keep it secret. Clients send it as "
                "\"Authorization: Bearer <key>\".\n", k.name, (long long)k.id,
                cd_scope_name(k.scope));
        status = 0;
    }
    if (key) {
        explicit_bzero(key, strlen(key));
        free(key);
    }
    cd_store_close(st);
    return status;
}

static int keys_list(const char *data)
{
    cd_store *st = keys_open(data, false);
    if (!st)
        return 1;
    cd_api_key *keys = NULL;
    size_t n = 0;
    cd_error err;
    int status = 1;
    if (cd_store_key_list(st, &keys, &n, &err) != CD_OK) {
        fprintf(stderr, "compatd: cannot list API keys: %s\n", err.message);
        goto out;
    }
    int w = 4;
    for (size_t i = 0; i < n; i++)
        if ((int)strlen(keys[i].name) > w)
            w = (int)strlen(keys[i].name);
    printf("%-4s  %-*s  %-5s  %-8s  %-20s  %s\n", "id", w, "name", "scope", "prefix",
           "created_at", "revoked_at");
    for (size_t i = 0; i < n; i++)
        printf("%-4lld  %-*s  %-5s  %-8s  %-20s  %s\n", (long long)keys[i].id, w, keys[i].name,
               cd_scope_name(keys[i].scope), keys[i].prefix, keys[i].created_at,
               keys[i].revoked_at[0] ? keys[i].revoked_at : "-");
    status = fflush(stdout) == 0 ? 0 : 1;
out:
    free(keys);
    cd_store_close(st);
    return status;
}

static int keys_revoke(const char *data, const char *which)
{
    cd_store *st = keys_open(data, false);
    if (!st)
        return 1;
    cd_api_key k;
    cd_error err;
    bool was_revoked;
    int status = 1;
    if (cd_keys_revoke(st, which, &k, &was_revoked, &err) != CD_OK) {
        fprintf(stderr, "compatd: cannot revoke: %s\n", err.message);
    } else {
        if (was_revoked)
            printf("API key %s (id %lld) was already revoked at %s\n", k.name,
                   (long long)k.id, k.revoked_at);
        else
            printf("revoked API key %s (id %lld) at %s\n", k.name, (long long)k.id,
                   k.revoked_at);
        status = 0;
    }
    cd_store_close(st);
    return status;
}

int cd_keys_main(int argc, char **argv)
{
    enum { OPT_SCOPE = 256, OPT_NAME, OPT_DATA };
    static const struct option keys_options[] = {
        {"scope", required_argument, NULL, OPT_SCOPE},
        {"name", required_argument, NULL, OPT_NAME},
        {"data", required_argument, NULL, OPT_DATA},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *scope = NULL, *name = NULL, *data = "./data";
    if (argc < 2 || strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0) {
        fputs(keys_usage, argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    const char *cmd = argv[1];
    if (strcmp(cmd, "create") != 0 && strcmp(cmd, "list") != 0 && strcmp(cmd, "revoke") != 0) {
        fprintf(stderr, "compatd: unknown keys command \"%s\"\n%s", cmd, keys_usage);
        return 2;
    }
    int opt;
    optind = 1;
    opterr = 1;
    while ((opt = getopt_long(argc - 1, argv + 1, "h", keys_options, NULL)) != -1) {
        if (opt == 'h') {
            fputs(keys_usage, stdout);
            return 0;
        } else if (opt == OPT_SCOPE) {
            scope = optarg;
        } else if (opt == OPT_NAME) {
            name = optarg;
        } else if (opt == OPT_DATA) {
            data = optarg;
        } else {
            fputs(keys_usage, stderr);
            return 2;
        }
    }
    int rest = argc - 1 - optind;
    char **args = argv + 1 + optind;
    if (!*data) {
        fprintf(stderr, "compatd: --data must not be empty\n");
        return 2;
    }
    bool is_revoke = strcmp(cmd, "revoke") == 0;
    if ((is_revoke && rest != 1) || (!is_revoke && rest != 0)) {
        fprintf(stderr, "compatd: keys %s takes %s\n%s", cmd,
                is_revoke ? "one NAME or ID" : "no arguments besides options", keys_usage);
        return 2;
    }
    if (!is_revoke && strcmp(cmd, "list") == 0 && (scope || name)) {
        fprintf(stderr, "compatd: keys list takes only --data\n");
        return 2;
    }
    if (is_revoke && (scope || name)) {
        fprintf(stderr, "compatd: keys revoke takes NAME|ID and --data only\n");
        return 2;
    }
    if (strcmp(cmd, "create") == 0)
        return keys_create(data, name, scope);
    if (strcmp(cmd, "list") == 0)
        return keys_list(data);
    return keys_revoke(data, args[0]);
}
