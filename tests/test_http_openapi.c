/*
 * test_http_openapi.c - schema/openapi.yaml against the router it
 * describes and the daemon that serves it.
 *
 * The test reads the source tree's schema/openapi.yaml (found from this
 * file's own path, __FILE__, or COMPATD_SOURCE_ROOT when set) with a line
 * parser for the layout the file's header comment fixes, and checks:
 *
 *  - GET /v1/openapi.yaml answers exactly those bytes as application/yaml;
 *  - the (path, method) pairs of `paths:` are exactly those of the route
 *    table, cd_routes(), with the same path templates, and every {x}
 *    of a template is a declared path parameter;
 *  - when python3 has PyYAML, an independent parser agrees with the line
 *    parser (operations, status codes, request examples), every $ref
 *    resolves and the operations' security matches their stated scope;
 *  - every operation is answered by a daemon holding a model, a gallery,
 *    items and an evaluation: its request example (sent as the body) or
 *    a plain request succeeds with a 2xx status the operation lists, never
 *    404 `no_route` or 405; every query parameter it declares is sent too;
 *  - paths of no route answer 404 `no_route`, and every method a path
 *    does not list answers 405 `method_not_allowed`;
 *  - the scope each operation states (x-compatd-scope) is the one the
 *    daemon asks for: a key of the scope below gets 401 or 403, a key of
 *    that scope does not;
 *  - with PyYAML again, the request examples and every JSON reply of the
 *    passes above match the schemas the description gives for them, with
 *    no field the schemas do not name.
 */
#include <ctype.h>
#include <fcntl.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "route.h"
#include "check.h"
#include "daemon.h"

/* Debian's python3, with python3-yaml from deploy/setup.sh (not whatever
 * python3 comes first in PATH). */
#define PYTHON "/usr/bin/python3"

#define MAX_OPS 64
#define MAX_CODES 16
#define MAX_PARAMS 8

/* One parameter: its name and where it goes ("path", "query"), or a
 * reference to components/parameters, resolved after the parse. */
typedef struct param {
    char name[32];
    char in[16];
    char ref[64];
} param;

/* One operation of `paths:`. */
typedef struct op {
    char path[128];
    char method[8];             /* upper case, as in the route table */
    int codes[MAX_CODES];       /* the status codes it lists, in order */
    size_t n_codes;
    bool has_body;              /* it has a requestBody */
    char *example;              /* the body's one-line JSON example; malloc'd */
    char scope[8];              /* x-compatd-scope: none, read, write, admin */
    param params[MAX_PARAMS];   /* its own and its path's */
    size_t n_params;
} op;

static op ops[MAX_OPS];
static size_t n_ops;

/* The fixture every operation is sent against (see build_fixture). */
#define GALLERY "photos"
#define MODEL "faces-v1"
#define ADAPTER "faces-v2-to-v1"   /* made by POST /v1/adapters' example */
#define ITEM_ID "img-1"
#define ASSET "app.js"
static long eval_id;

/* Every JSON reply of the passes against the daemon, one a line:
 * "METHOD template status compact-JSON", for test_python_schemas. */
static td_text replies;

static void record(const op *o, const td_reply *r)
{
    char *j = r->json ? cJSON_PrintUnformatted(r->json) : NULL;
    if (j)
        td_text_append(&replies, "%s %s %ld %s\n", o->method, o->path, r->status, j);
    free(j);
}

/* ---- files ------------------------------------------------------------ */

/* The whole file at path, malloc'd and NUL-terminated, or NULL. */
static char *read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    size_t cap = 65536, n = 0;
    char *s = malloc(cap);
    while (s) {
        n += fread(s + n, 1, cap - n - 1, f);
        if (n < cap - 1)
            break;
        char *t = realloc(s, cap * 2);
        if (!t) {
            free(s);
            s = NULL;
        }
        s = t;
        cap *= 2;
    }
    bool bad = ferror(f);
    fclose(f);
    if (!s || bad) {
        free(s);
        return NULL;
    }
    s[n] = '\0';
    *len = n;
    return s;
}

static bool is_file(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

/*
 * The source tree's root, malloc'd: COMPATD_SOURCE_ROOT when set, else
 * two levels above this file.  Meson compiles it under a path relative to
 * the build directory (or an absolute one), and the test runs in the build
 * directory or one of its subdirectories, so __FILE__ is tried as it is,
 * then from the directory of the executable and the one above it.
 */
static char *source_root(void)
{
    const char *env = getenv("COMPATD_SOURCE_ROOT");
    if (env && *env)
        return td_fmt("%s", env);
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    exe[n > 0 ? n : 0] = '\0';
    char *slash = strrchr(exe, '/');
    if (slash)
        *slash = '\0';
    char *tries[] = {
        td_fmt("%s", __FILE__),
        td_fmt("%s/%s", exe, __FILE__),
        td_fmt("%s/../%s", exe, __FILE__),
    };
    char *root = NULL;
    for (size_t i = 0; i < sizeof tries / sizeof tries[0]; i++) {
        char real[PATH_MAX];
        if (!root && is_file(tries[i]) && realpath(tries[i], real)) {
            for (int up = 0; up < 2; up++) {
                char *s = strrchr(real, '/');
                if (s)
                    *s = '\0';
            }
            root = td_fmt("%s", real);
        }
        free(tries[i]);
    }
    return root;
}

/* ---- the line parser -------------------------------------------------- */

static size_t indent_of(const char *line)
{
    size_t n = 0;
    while (line[n] == ' ')
        n++;
    return n;
}

/* Copies the text after "key:" in s (trimmed, unquoted) to out. */
static bool value_of(const char *s, const char *key, char *out, size_t cap)
{
    size_t k = strlen(key);
    if (strncmp(s, key, k) != 0 || s[k] != ':')
        return false;
    s += k + 1;
    while (*s == ' ')
        s++;
    size_t n = strlen(s);
    while (n && (s[n - 1] == ' ' || s[n - 1] == '\r'))
        n--;
    if (n >= 2 && (s[0] == '"' || s[0] == '\'') && s[n - 1] == s[0]) {
        s++;
        n -= 2;
    }
    snprintf(out, cap, "%.*s", (int)n, s);
    return true;
}

/* Copies src into dst of cap bytes, cut short when it is longer. */
static void set_str(char *dst, size_t cap, const char *src)
{
    size_t n = strlen(src);
    if (n >= cap)
        n = cap - 1;
    memcpy(dst, src, n);
    dst[n] = '\0';
}

static bool is_method(const char *key)
{
    static const char *const methods[] = {"get", "put", "post", "delete", "options",
                                          "head", "patch", "trace"};
    for (size_t i = 0; i < sizeof methods / sizeof methods[0]; i++)
        if (strcmp(key, methods[i]) == 0)
            return true;
    return false;
}

static param *add_param(param *ps, size_t *n)
{
    REQUIRE(*n < MAX_PARAMS);
    memset(&ps[*n], 0, sizeof ps[*n]);
    return &ps[(*n)++];
}

/* Reads one parameter line ("- name: x", "in: path", "- $ref: ...") of a
 * parameters list into ps. */
static void param_line(const char *t, param *ps, size_t *n)
{
    char v[128];
    bool item = t[0] == '-';
    if (item)
        t += 2;
    if (item && value_of(t, "$ref", v, sizeof v)) {
        const char *prefix = "#/components/parameters/";
        CHECK(strncmp(v, prefix, strlen(prefix)) == 0);
        set_str(add_param(ps, n)->ref, sizeof ps->ref, v + strlen(prefix));
    } else if (value_of(t, "name", v, sizeof v)) {
        set_str(add_param(ps, n)->name, sizeof ps->name, v);
    } else if (!item && *n > 0 && value_of(t, "in", v, sizeof v)) {
        set_str(ps[*n - 1].in, sizeof ps->in, v);
    }
}

/*
 * Fills ops from the YAML text (which it changes: lines are cut at '\n').
 * The layout is the one schema/openapi.yaml's header comment states.
 */
static void parse_openapi(char *text)
{
    enum { NONE, PATH_PARAMS, OP_PARAMS, BODY, RESPONSES } section = NONE;
    enum { OTHER, PATHS, COMPONENTS, COMPONENT_PARAMS } top = OTHER;
    char path[128] = "";
    param path_params[MAX_PARAMS], comp[MAX_PARAMS];
    size_t n_path_params = 0, n_comp = 0, first_op = 0;
    op *o = NULL;

    for (char *line = text, *next; line; line = next) {
        next = strchr(line, '\n');
        if (next)
            *next++ = '\0';
        size_t ind = indent_of(line);
        const char *t = line + ind;
        if (*t == '\0' || *t == '#')
            continue;
        char v[4096];
        if (ind == 0) {
            top = strcmp(t, "paths:") == 0 ? PATHS : strcmp(t, "components:") == 0 ? COMPONENTS
                                                                                   : OTHER;
            continue;
        }
        if (top == COMPONENTS || top == COMPONENT_PARAMS) {
            if (ind == 2)
                top = strcmp(t, "parameters:") == 0 ? COMPONENT_PARAMS : COMPONENTS;
            else if (top == COMPONENT_PARAMS && ind == 4 && t[strlen(t) - 1] == ':')
                snprintf(add_param(comp, &n_comp)->ref, sizeof comp->ref, "%.*s",
                         (int)strlen(t) - 1, t);
            else if (top == COMPONENT_PARAMS && ind == 6 && n_comp > 0 &&
                     !value_of(t, "name", comp[n_comp - 1].name, sizeof comp->name))
                value_of(t, "in", comp[n_comp - 1].in, sizeof comp->in);
            continue;
        }
        if (top != PATHS)
            continue;
        if (ind == 2) {
            /* A new path: its parameters go to every one of its methods. */
            for (size_t i = first_op; i < n_ops; i++)
                for (size_t p = 0; p < n_path_params; p++)
                    *add_param(ops[i].params, &ops[i].n_params) = path_params[p];
            first_op = n_ops;
            n_path_params = 0;
            CHECK(t[strlen(t) - 1] == ':');
            snprintf(path, sizeof path, "%.*s", (int)strlen(t) - 1, t);
            o = NULL;
            section = NONE;
        } else if (ind == 4) {
            char key[32];
            snprintf(key, sizeof key, "%.*s", (int)strcspn(t, ":"), t);
            section = NONE;
            o = NULL;
            if (strcmp(key, "parameters") == 0) {
                section = PATH_PARAMS;
            } else if (is_method(key)) {
                REQUIRE(n_ops < MAX_OPS);
                o = &ops[n_ops++];
                snprintf(o->path, sizeof o->path, "%s", path);
                for (size_t i = 0; key[i]; i++)
                    o->method[i] = (char)toupper((unsigned char)key[i]);
            } else {
                fprintf(stderr, "openapi.yaml: %s has a key %s\n", path, key);
                CHECK(!"an unknown key under a path");
            }
        } else if (section == PATH_PARAMS) {
            param_line(t, path_params, &n_path_params);
        } else if (o && ind == 6) {
            section = NONE;
            if (strcmp(t, "parameters:") == 0)
                section = OP_PARAMS;
            else if (strcmp(t, "requestBody:") == 0)
                section = BODY, o->has_body = true;
            else if (strcmp(t, "responses:") == 0)
                section = RESPONSES;
            else if (value_of(t, "x-compatd-scope", v, sizeof v))
                set_str(o->scope, sizeof o->scope, v);
        } else if (o && section == OP_PARAMS) {
            param_line(t, o->params, &o->n_params);
        } else if (o && section == BODY && value_of(t, "example", v, sizeof v)) {
            CHECK(o->example == NULL);
            free(o->example);
            o->example = td_fmt("%s", v);
        } else if (o && section == RESPONSES && ind == 8) {
            int code = 0;
            CHECK(sscanf(t, "\"%d\":", &code) == 1 && code >= 100 && code <= 599);
            REQUIRE(o->n_codes < MAX_CODES);
            o->codes[o->n_codes++] = code;
        }
    }
    for (size_t i = first_op; i < n_ops; i++)
        for (size_t p = 0; p < n_path_params; p++)
            *add_param(ops[i].params, &ops[i].n_params) = path_params[p];

    /* Resolve the references to components/parameters. */
    for (size_t i = 0; i < n_ops; i++) {
        for (size_t p = 0; p < ops[i].n_params; p++) {
            param *pp = &ops[i].params[p];
            if (!pp->ref[0])
                continue;
            bool found = false;
            for (size_t c = 0; c < n_comp && !found; c++) {
                if (strcmp(comp[c].ref, pp->ref) == 0) {
                    *pp = comp[c];
                    found = true;
                }
            }
            if (!found)
                fprintf(stderr, "%s %s: no components/parameters/%s\n", ops[i].method,
                        ops[i].path, pp->ref);
            CHECK(found);
        }
    }
}

static op *find_op(const char *method, const char *path)
{
    for (size_t i = 0; i < n_ops; i++)
        if (strcmp(ops[i].method, method) == 0 && strcmp(ops[i].path, path) == 0)
            return &ops[i];
    return NULL;
}

static bool lists_code(const op *o, long code)
{
    for (size_t i = 0; i < o->n_codes; i++)
        if (o->codes[i] == code)
            return true;
    return false;
}

/* The operation's parameter name in where, or NULL. */
static const param *find_param(const op *o, const char *in, const char *name)
{
    for (size_t p = 0; p < o->n_params; p++)
        if (strcmp(o->params[p].in, in) == 0 && strcmp(o->params[p].name, name) == 0)
            return &o->params[p];
    return NULL;
}

/* ---- the description itself -------------------------------------------- */

/* Every operation is well-formed: codes, a scope, its path parameters
 * declared exactly, a JSON example for a body. */
static void test_operations_wellformed(void)
{
    REQUIRE(n_ops > 0);
    for (size_t i = 0; i < n_ops; i++) {
        const op *o = &ops[i];
        CHECK(o->n_codes > 0);
        bool has_2xx = false;
        for (size_t c = 0; c < o->n_codes; c++)
            has_2xx |= o->codes[c] >= 200 && o->codes[c] < 300;
        CHECK(has_2xx);
        CHECK(strcmp(o->scope, "none") == 0 || strcmp(o->scope, "read") == 0 ||
              strcmp(o->scope, "write") == 0 || strcmp(o->scope, "admin") == 0);

        /* {x} of the template <=> a path parameter x. */
        size_t n_template = 0, n_declared = 0;
        for (const char *s = strchr(o->path, '{'); s; s = strchr(s + 1, '{')) {
            char name[32];
            snprintf(name, sizeof name, "%.*s", (int)strcspn(s + 1, "}"), s + 1);
            n_template++;
            if (!find_param(o, "path", name)) {
                fprintf(stderr, "%s %s: no path parameter %s\n", o->method, o->path, name);
                CHECK(!"a path parameter is not declared");
            }
        }
        for (size_t p = 0; p < o->n_params; p++)
            n_declared += strcmp(o->params[p].in, "path") == 0;
        CHECK_EQ(n_declared, n_template);

        if (o->has_body) {
            cJSON *j = o->example ? cJSON_Parse(o->example) : NULL;
            if (!cJSON_IsObject(j))
                fprintf(stderr, "%s %s: the example is not one line of JSON\n", o->method,
                        o->path);
            CHECK(cJSON_IsObject(j));
            cJSON_Delete(j);
        }
    }
}

/* The (pattern, method) pairs of cd_routes() (methods as "GET, POST")
 * are exactly the operations. */
static void test_routes_match(void)
{
    const cd_route_info *routes = NULL;
    size_t n = cd_routes(&routes), pairs = 0;
    bool covered[MAX_OPS] = {false};
    REQUIRE(n > 0 && routes != NULL);
    for (size_t r = 0; r < n; r++) {
        char methods[64];
        snprintf(methods, sizeof methods, "%s", routes[r].methods);
        for (char *save = NULL, *m = strtok_r(methods, ", ", &save); m;
             m = strtok_r(NULL, ", ", &save)) {
            op *o = find_op(m, routes[r].pattern);
            pairs++;
            if (!o)
                fprintf(stderr, "route %s %s is not in openapi.yaml\n", m, routes[r].pattern);
            CHECK(o != NULL);
            if (o)
                covered[o - ops] = true;
        }
    }
    for (size_t i = 0; i < n_ops; i++) {
        if (!covered[i])
            fprintf(stderr, "openapi.yaml's %s %s is no route of the server\n", ops[i].method,
                    ops[i].path);
        CHECK(covered[i]);
    }
    CHECK_EQ(pairs, n_ops);
    fprintf(stderr, "%zu routes, %zu operations\n", n, n_ops);
}

/*
 * Runs argv (td_run) and returns its exit status, its standard output in
 * *out (malloc'd); its standard error is printed, for the failure's why.
 */
static int run_python(const char *const argv[], char **out)
{
    char *err = NULL;
    int st = td_run(argv, out, &err);
    if (err && *err)
        fputs(err, stderr);
    free(err);
    return st;
}

/*
 * PyYAML's reading of the file, printed one operation a line:
 * "METHOD path code,code,... example-as-compact-JSON-or-null".  It also
 * checks what a line parser cannot: the whole file is YAML, every $ref
 * resolves, operationIds are unique, path parameters are required, and
 * `security: []` is on exactly the operations of scope none.
 */
static const char python_check[] =
    "import json, re, sys\n"
    "try:\n"
    "    import yaml\n"
    "except ImportError:\n"
    "    sys.exit(77)\n"
    "d = yaml.safe_load(open(sys.argv[1], encoding='utf-8'))\n"
    "assert d['openapi'] == '3.0.3', d['openapi']\n"
    "def resolve(ref):\n"
    "    assert ref.startswith('#/'), ref\n"
    "    x = d\n"
    "    for part in ref[2:].split('/'):\n"
    "        x = x[part]\n"
    "    return x\n"
    "def walk(x):\n"
    "    if isinstance(x, dict):\n"
    "        for k, v in x.items():\n"
    "            if k == '$ref':\n"
    "                resolve(v)\n"
    "            walk(v)\n"
    "    elif isinstance(x, list):\n"
    "        for v in x:\n"
    "            walk(v)\n"
    "walk(d)\n"
    "ids = set()\n"
    "for path, item in d['paths'].items():\n"
    "    for m, o in item.items():\n"
    "        if m == 'parameters':\n"
    "            continue\n"
    "        assert o['operationId'] not in ids, o['operationId']\n"
    "        ids.add(o['operationId'])\n"
    "        ps = [resolve(p['$ref']) if '$ref' in p else p\n"
    "              for p in item.get('parameters', []) + o.get('parameters', [])]\n"
    "        inpath = [p for p in ps if p['in'] == 'path']\n"
    "        assert all(p.get('required') is True for p in inpath), path\n"
    "        assert sorted(p['name'] for p in inpath) == sorted(re.findall('{([^}]+)}', path)), path\n"
    "        assert (o.get('security') == []) == (o['x-compatd-scope'] == 'none'), (m, path)\n"
    "        body = o.get('requestBody', {}).get('content', {}).get('application/json', {})\n"
    "        ex = body.get('example') if body else None\n"
    "        codes = ','.join(sorted(str(c) for c in o['responses']))\n"
    "        print(m.upper(), path, codes, json.dumps(ex, separators=(',', ':')))\n";

static int cmp_int(const void *a, const void *b)
{
    return *(const int *)a - *(const int *)b;
}

static void test_python_agrees(const char *yaml_path)
{
    const char *const argv[] = {PYTHON, "-c", python_check, yaml_path, NULL};
    char *out = NULL;
    int st = run_python(argv, &out);
    if (st == 127 || st == 77)
        fprintf(stderr, "the PyYAML cross-check cannot run: %s\n",
                st == 127 ? "no " PYTHON : PYTHON " has no yaml module (python3-yaml)");
    CHECK_EQ(st, 0);
    size_t lines = 0;
    for (char *line = out, *next; st == 0 && line && *line; line = next) {
        next = strchr(line, '\n');
        if (next)
            *next++ = '\0';
        char method[16], path[128], codes[256];
        int used = 0;
        lines++;
        if (sscanf(line, "%15s %127s %255s %n", method, path, codes, &used) != 3) {
            CHECK(!"python3 printed a line of another form");
            continue;
        }
        const op *o = find_op(method, path);
        if (!o)
            fprintf(stderr, "PyYAML sees %s %s, the line parser does not\n", method, path);
        CHECK(o != NULL);
        if (!o)
            continue;
        int sorted[MAX_CODES];
        memcpy(sorted, o->codes, o->n_codes * sizeof *sorted);
        qsort(sorted, o->n_codes, sizeof *sorted, cmp_int);
        td_text mine = {0};
        for (size_t c = 0; c < o->n_codes; c++)
            td_text_append(&mine, "%s%d", c ? "," : "", sorted[c]);
        CHECK_STREQ(mine.s, codes);
        free(mine.s);
        cJSON *theirs = cJSON_Parse(line + used);
        cJSON *ours = o->example ? cJSON_Parse(o->example) : cJSON_CreateNull();
        if (!cJSON_Compare(theirs, ours, true))
            fprintf(stderr, "%s %s: the examples differ: %s vs %s\n", method, path, line + used,
                    o->example ? o->example : "null");
        CHECK(cJSON_Compare(theirs, ours, true));
        cJSON_Delete(theirs);
        cJSON_Delete(ours);
    }
    CHECK_EQ(lines, n_ops);
    fprintf(stderr, "PyYAML agrees on %zu operations\n", lines);
    free(out);
}

/*
 * Checks JSON against the description's schemas, with PyYAML: each
 * request example against its requestBody schema, and each reply that
 * replies (argv[2]) holds against the schema of its operation's status.
 * The schema subset the file uses: $ref, allOf, oneOf, nullable, type,
 * enum, required, properties, additionalProperties, items.  Objects are
 * closed: a field no schema names (through allOf too) is an error, unless
 * additionalProperties allows it, so that undocumented fields show.
 */
static const char python_schemas[] =
    "import json, sys\n"
    "try:\n"
    "    import yaml\n"
    "except ImportError:\n"
    "    sys.exit(77)\n"
    "d = yaml.safe_load(open(sys.argv[1], encoding='utf-8'))\n"
    "def res(s):\n"
    "    while '$ref' in s:\n"
    "        x = d\n"
    "        for p in s['$ref'][2:].split('/'):\n"
    "            x = x[p]\n"
    "        s = x\n"
    "    return s\n"
    "def props(s):\n"
    "    s = res(s)\n"
    "    names = set(s.get('properties', {}))\n"
    "    isopen = s.get('additionalProperties', False) is not False\n"
    "    for b in s.get('allOf', []):\n"
    "        n, o = props(b)\n"
    "        names |= n\n"
    "        isopen = isopen or o\n"
    "    return names, isopen\n"
    "TYPES = {'object': dict, 'array': list, 'string': str, 'boolean': bool}\n"
    "def typed(t, v):\n"
    "    if t == 'integer':\n"
    "        return isinstance(v, int) and not isinstance(v, bool)\n"
    "    if t == 'number':\n"
    "        return isinstance(v, (int, float)) and not isinstance(v, bool)\n"
    "    return t is None or isinstance(v, TYPES[t])\n"
    "def check(s, v, at, closed=True):\n"
    "    s = res(s)\n"
    "    if v is None:\n"
    "        ok = s.get('nullable') or any(res(b).get('nullable') for b in s.get('oneOf', []))\n"
    "        return [] if ok else [at + ': null']\n"
    "    errs = []\n"
    "    for b in s.get('allOf', []):\n"
    "        errs += check(b, v, at, False)\n"
    "    if 'oneOf' in s:\n"
    "        n = sum(1 for b in s['oneOf'] if not check(b, v, at, False))\n"
    "        if n != 1:\n"
    "            errs.append('%s: matches %d of oneOf' % (at, n))\n"
    "    if not typed(s.get('type'), v):\n"
    "        return errs + ['%s: not of type %s: %.60r' % (at, s.get('type'), v)]\n"
    "    if 'enum' in s and v not in s['enum']:\n"
    "        errs.append('%s: %r not in %r' % (at, v, s['enum']))\n"
    "    if isinstance(v, dict):\n"
    "        ps = s.get('properties', {})\n"
    "        ap = s.get('additionalProperties')\n"
    "        errs += ['%s: no %s' % (at, k) for k in s.get('required', []) if k not in v]\n"
    "        for k, x in v.items():\n"
    "            if k in ps:\n"
    "                errs += check(ps[k], x, at + '.' + k)\n"
    "            elif isinstance(ap, dict):\n"
    "                errs += check(ap, x, at + '.' + k)\n"
    "        names, isopen = props(s)\n"
    "        extra = sorted(set(v) - names)\n"
    "        if closed and extra and not isopen:\n"
    "            errs.append('%s: undocumented %s' % (at, ', '.join(extra)))\n"
    "    if isinstance(v, list) and 'items' in s:\n"
    "        for i, x in enumerate(v):\n"
    "            errs += check(s['items'], x, '%s[%d]' % (at, i))\n"
    "    return errs\n"
    "errs, n = [], 0\n"
    "for path, item in d['paths'].items():\n"
    "    for m, o in item.items():\n"
    "        if m == 'parameters':\n"
    "            continue\n"
    "        body = o.get('requestBody', {}).get('content', {}).get('application/json')\n"
    "        if body and 'example' in body:\n"
    "            errs += check(body['schema'], body['example'], '%s %s example' % (m.upper(), path))\n"
    "            n += 1\n"
    "for line in open(sys.argv[2], encoding='utf-8'):\n"
    "    m, path, status, doc = line.split(' ', 3)\n"
    "    at = '%s %s %s' % (m, path, status)\n"
    "    r = d['paths'][path][m.lower()]['responses'].get(status)\n"
    "    js = res(r).get('content', {}).get('application/json') if r else None\n"
    "    if js is None:\n"
    "        errs.append(at + ': a JSON reply the description does not give')\n"
    "    else:\n"
    "        errs += check(js['schema'], json.loads(doc), at)\n"
    "    n += 1\n"
    "for e in errs:\n"
    "    print(e, file=sys.stderr)\n"
    "print(n)\n"
    "sys.exit(1 if errs else 0)\n";

static void test_python_schemas(const td_daemon *d, const char *yaml_path)
{
    char *file = td_fmt("%s/replies.txt", td_daemon_dir(d));
    FILE *f = fopen(file, "w");
    REQUIRE(f != NULL);
    if (replies.s)
        fputs(replies.s, f);
    CHECK(fclose(f) == 0);
    const char *const argv[] = {PYTHON, "-c", python_schemas, yaml_path, file, NULL};
    char *out = NULL;
    int st = run_python(argv, &out);
    if (st == 127 || st == 77) {
        fprintf(stderr, "the schema check of replies cannot run: %s\n",
                st == 127 ? "no " PYTHON : PYTHON " has no yaml module (python3-yaml)");
        CHECK_EQ(st, 0);
    } else {
        CHECK_EQ(st, 0);
        if (st == 0)
            fprintf(stderr, "%ld examples and replies match their schemas\n",
                    strtol(out, NULL, 10));
    }
    free(out);
    free(file);
}

/* ---- against the daemon ------------------------------------------------ */

/* The value of header name in r (its first line of that name), malloc'd,
 * or NULL. */
static char *header_of(const td_reply *r, const char *name)
{
    size_t n = strlen(name);
    for (const char *l = r->headers; l && *l; l = strchr(l, '\n') ? strchr(l, '\n') + 1 : NULL) {
        if (strncasecmp(l, name, n) == 0 && l[n] == ':') {
            const char *v = l + n + 1;
            while (*v == ' ')
                v++;
            return td_fmt("%.*s", (int)strcspn(v, "\r\n"), v);
        }
    }
    return NULL;
}

static void test_served(td_http *h, const char *yaml, size_t len)
{
    td_reply r;
    CHECK_EQ(td_http_json(h, "GET", "/v1/openapi.yaml", NULL, &r), 200);
    CHECK_EQ(r.len, len);
    CHECK(r.len == len && memcmp(r.body, yaml, len) == 0);
    char *ct = header_of(&r, "Content-Type");
    CHECK(ct && strncmp(ct, "application/yaml", 16) == 0 &&
          (ct[16] == '\0' || ct[16] == ';'));
    free(ct);
    td_reply_finish(&r);
}

static long must(td_http *h, long want, const char *method, const char *path,
                 const char *body, td_reply *r)
{
    long st = td_http_json(h, method, path, body, r);
    if (st != want)
        fprintf(stderr, "%s %s: want %ld, got %ld: %s\n", method, path, want, st,
                st ? r->body : r->error);
    CHECK_EQ(st, want);
    return st;
}

/*
 * Two models of dim 4 (faces-v2 trained against faces-v1), the gallery
 * photos of faces-v1 with items of the labels alice and bob (and faces-v2
 * embeddings of two of them), and one evaluation of faces-v2 there.
 */
static void build_fixture(td_http *h)
{
    static const struct {
        const char *method, *path, *body;
        long status;
    } steps[] = {
        {"POST", "/v1/models", "{\"name\":\"faces-v1\",\"dim\":4,\"metric\":\"cosine\"}", 201},
        {"POST", "/v1/models",
         "{\"name\":\"faces-v2\",\"dim\":4,\"metric\":\"cosine\",\"compatible_with\":\"faces-v1\"}",
         201},
        {"POST", "/v1/galleries", "{\"name\":\"photos\",\"model\":\"faces-v1\"}", 201},
        {"POST", "/v1/galleries/photos/items",
         "{\"items\":["
         "{\"id\":\"img-1\",\"label\":\"alice\",\"metadata\":{\"file\":\"a.jpg\"},\"vector\":[1,0.1,0,0]},"
         "{\"id\":\"img-2\",\"label\":\"alice\",\"vector\":[0.9,0.2,0.1,0]},"
         "{\"id\":\"img-3\",\"label\":\"bob\",\"vector\":[0.1,1,0,0.1]},"
         "{\"id\":\"img-4\",\"label\":\"bob\",\"vector\":[0,0.9,0.2,0]},"
         "{\"id\":\"img-5\",\"vector\":[0,0,1,0]}]}",
         200},
        {"POST", "/v1/galleries/photos/items",
         "{\"model\":\"faces-v2\",\"items\":["
         "{\"id\":\"img-1\",\"vector\":[1,0,0.1,0]},"
         "{\"id\":\"img-3\",\"vector\":[0,1,0,0.2]}]}",
         200},
    };
    td_reply r;
    for (size_t i = 0; i < sizeof steps / sizeof steps[0]; i++) {
        must(h, steps[i].status, steps[i].method, steps[i].path, steps[i].body, &r);
        td_reply_finish(&r);
    }
    must(h, 201, "POST", "/v1/galleries/photos/evaluations",
         "{\"query_model\":\"faces-v2\","
         "\"queries\":[{\"id\":\"p1\",\"label\":\"alice\",\"vector\":[1,0.2,0,0]},"
         "{\"id\":\"p2\",\"label\":\"bob\",\"vector\":[0.2,1,0,0]}],"
         "\"baseline\":[{\"id\":\"p1\",\"vector\":[1,0,0,0.1]},"
         "{\"id\":\"p2\",\"vector\":[0,1,0.1,0]}]}",
         &r);
    eval_id = (long)td_json_num(r.json, "id");
    td_reply_finish(&r);
    REQUIRE(eval_id > 0);
    /* a search with shadows: its agreement, and query_models[].live in
     * the gallery's replies from now on, are checked against the schema */
    static const op search = {.path = "/v1/galleries/{g}/search", .method = "POST"};
    must(h, 200, "PATCH", "/v1/galleries/photos", "{\"query_policy\":\"declared\"}", &r);
    td_reply_finish(&r);
    must(h, 200, "POST", "/v1/galleries/photos/search",
         "{\"model\":\"faces-v2\",\"k\":2,\"vectors\":[[1,0.2,0,0],[0.2,1,0,0]],"
         "\"shadow_vectors\":[[1,0,0,0.1],[0,1,0.1,0]]}",
         &r);
    CHECK_EQ(cJSON_GetArraySize(td_json_at(r.json, "agreement")), 2);
    record(&search, &r);
    td_reply_finish(&r);
    must(h, 200, "PATCH", "/v1/galleries/photos", "{\"query_policy\":\"verified\"}", &r);
    td_reply_finish(&r);
}

/* o's path with the fixture's values for its parameters, malloc'd. */
static char *concrete_path(const char *tmpl)
{
    td_text t = {0};
    for (const char *s = tmpl; *s;) {
        if (*s != '{') {
            size_t n = strcspn(s, "{");
            td_text_append(&t, "%.*s", (int)n, s);
            s += n;
            continue;
        }
        size_t n = strcspn(s, "}");
        char name[32];
        snprintf(name, sizeof name, "%.*s", (int)n - 1, s + 1);
        if (strcmp(name, "g") == 0)
            td_text_append(&t, "%s", GALLERY);
        else if (strcmp(name, "name") == 0 && strstr(tmpl, "/adapters/"))
            td_text_append(&t, "%s", ADAPTER);
        else if (strcmp(name, "name") == 0)
            td_text_append(&t, "%s", MODEL);
        else if (strcmp(name, "file") == 0)
            td_text_append(&t, "%s", ASSET);
        else if (strcmp(name, "id") == 0 && strstr(tmpl, "/items/"))
            td_text_append(&t, "%s", ITEM_ID);
        else if (strcmp(name, "id") == 0)
            td_text_append(&t, "%ld", eval_id);
        else if (strcmp(name, "model") == 0)
            td_text_append(&t, "%s", "faces-v2");
        else
            CHECK(!"a path parameter the test has no value for");
        s += n + (s[n] == '}');
    }
    return t.s;
}

/* Sends o (its example as the body) with query ("" for none); returns the
 * status, the reply in *r. */
static long send_op(td_http *h, const op *o, const char *query, td_reply *r)
{
    char *p = concrete_path(o->path);
    char *full = td_fmt("%s%s%s", p, *query ? "?" : "", query);
    char *hole = strstr(full, "&after={next}");
    if (hole) {
        /* A cursor: the `next` of the listing's first page. */
        td_reply first;
        *hole = '\0';
        CHECK_EQ(td_http_json(h, "GET", full, NULL, &first), 200);
        const char *next = td_json_str(first.json, "next");
        CHECK(next != NULL);
        char *with = td_fmt("%s&after=%s", full, next ? next : "");
        td_reply_finish(&first);
        free(full);
        full = with;
    }
    long st = td_http_json(h, o->method, full, o->has_body ? o->example : NULL, r);
    free(full);
    free(p);
    return st;
}

/* The reply answered the route: neither "no route" nor "no such method". */
static bool routed(const td_reply *r)
{
    const char *code = td_reply_error_code(r);
    return r->status != 405 &&
           !(r->status == 404 && code && strcmp(code, "no_route") == 0) && r->status != 0;
}

static void check_answer(const op *o, const char *query, const td_reply *r)
{
    record(o, r);
    bool listed = lists_code(o, r->status);
    bool ok = routed(r) && listed && r->status >= 200 && r->status < 300;
    if (!ok)
        fprintf(stderr, "%s %s%s%s: got %ld (%s): %s\n", o->method, o->path, *query ? "?" : "",
                query, r->status, listed ? "listed" : "NOT listed",
                r->status ? (r->len > 300 ? "(long body)" : r->body) : r->error);
    CHECK(routed(r));
    CHECK(listed);
    CHECK(r->status >= 200 && r->status < 300);
    /* A JSON reply is JSON; so is every error. */
    char *ct = header_of(r, "Content-Type");
    if (ct && strncmp(ct, "application/json", 16) == 0)
        CHECK(r->json != NULL);
    free(ct);
}

/*
 * Query parameters the test sends for the operations that declare them:
 * every declared one must be here, every one here declared.
 */
static const struct {
    const char *method, *path, *query;
} queries[] = {
    {"POST", "/v1/galleries/{g}/items", "model=faces-v1"},
    {"GET", "/v1/galleries/{g}/items/{id}", "vectors=true"},
    {"GET", "/v1/galleries/{g}/items", "limit=2&after=&filter=%7B%22label%22%3A%22alice%22%7D"},
    {"GET", "/v1/galleries/{g}/evaluations", "limit=1&before=1000000&query_model=faces-v2"},
    {"GET", "/v1/adapters/{name}", "weights=true"},
    {"GET", "/v1/adapters/{name}/evaluations", "limit=5"},
    /* {next}: the cursor the same listing's first page gives */
    {"GET", "/v1/galleries/{g}/backfill", "model=faces-v2&order=id&limit=1&after={next}"},
};

/* Order of the main pass: every operation but DELETE in file order, then
 * the DELETEs, the longest path first (the item before its gallery). */
static int delete_order(const void *a, const void *b)
{
    const op *x = *(const op *const *)a, *y = *(const op *const *)b;
    bool dx = strcmp(x->method, "DELETE") == 0, dy = strcmp(y->method, "DELETE") == 0;
    if (dx != dy)
        return dx - dy;
    if (dx)
        return (int)strlen(y->path) - (int)strlen(x->path);
    return (int)(x - y);
}

static void test_every_operation(td_http *h)
{
    const op *order[MAX_OPS];
    for (size_t i = 0; i < n_ops; i++)
        order[i] = &ops[i];
    qsort(order, n_ops, sizeof order[0], delete_order);
    for (size_t i = 0; i < n_ops; i++) {
        const op *o = order[i];
        td_reply r;
        /* With its query parameters first (before a DELETE removes it). */
        for (size_t q = 0; q < sizeof queries / sizeof queries[0]; q++) {
            if (strcmp(queries[q].method, o->method) != 0 || strcmp(queries[q].path, o->path) != 0)
                continue;
            char names[256];
            snprintf(names, sizeof names, "%s", queries[q].query);
            for (char *save = NULL, *kv = strtok_r(names, "&", &save); kv;
                 kv = strtok_r(NULL, "&", &save)) {
                kv[strcspn(kv, "=")] = '\0';
                if (!find_param(o, "query", kv))
                    fprintf(stderr, "%s %s: query parameter %s is not declared\n", o->method,
                            o->path, kv);
                CHECK(find_param(o, "query", kv) != NULL);
            }
            send_op(h, o, queries[q].query, &r);
            check_answer(o, queries[q].query, &r);
            td_reply_finish(&r);
        }
        for (size_t p = 0; p < o->n_params; p++) {
            if (strcmp(o->params[p].in, "query") != 0)
                continue;
            bool sent = false;
            for (size_t q = 0; q < sizeof queries / sizeof queries[0]; q++)
                sent |= strcmp(queries[q].method, o->method) == 0 &&
                        strcmp(queries[q].path, o->path) == 0 &&
                        strstr(queries[q].query, o->params[p].name) != NULL;
            if (!sent)
                fprintf(stderr, "%s %s: the test sends no query parameter %s\n", o->method,
                        o->path, o->params[p].name);
            CHECK(sent);
        }
        send_op(h, o, "", &r);
        check_answer(o, "", &r);
        td_reply_finish(&r);
    }
}

/* Does concrete path p match template t ({x}: one non-empty segment)? */
static bool path_matches(const char *t, const char *p)
{
    while (*t && *p) {
        if (*t == '{') {
            size_t n = strcspn(p, "/");
            if (n == 0)
                return false;
            p += n;
            t += strcspn(t, "}") + 1;
        } else if (*t++ != *p++) {
            return false;
        }
    }
    return *t == '\0' && *p == '\0';
}

static void test_no_route(td_http *h)
{
    static const char *const paths[] = {
        "/v1", "/v1/", "/v1/nothing", "/v1/models/", "/v1/models/faces-v1/extra",
        "/v1/galleries/photos/other", "/v1/galleries/photos/items/", "/v1/evaluations",
        "/v1/evaluations/1/report", "/v1/compatibility/x", "/ui", "/ui/a/b",
        "/healthz/x", "/openapi.yaml", "/v2/models", "/nope",
    };
    for (size_t i = 0; i < sizeof paths / sizeof paths[0]; i++) {
        for (size_t o = 0; o < n_ops; o++)
            CHECK(!path_matches(ops[o].path, paths[i]));
        td_reply r;
        td_http_json(h, "GET", paths[i], NULL, &r);
        if (r.status != 404 || !td_reply_error_code(&r) ||
            strcmp(td_reply_error_code(&r), "no_route") != 0)
            fprintf(stderr, "GET %s: want 404 no_route, got %ld: %s\n", paths[i], r.status,
                    r.body);
        CHECK_EQ(r.status, 404);
        CHECK_STREQ(td_reply_error_code(&r), "no_route");
        td_reply_finish(&r);
    }
}

static void test_other_methods(td_http *h)
{
    static const char *const methods[] = {"GET", "POST", "PUT", "PATCH", "DELETE"};
    size_t sent = 0;
    for (size_t i = 0; i < n_ops; i++) {
        /* Once per path: at its first operation. */
        bool first = true;
        for (size_t j = 0; j < i; j++)
            first &= strcmp(ops[j].path, ops[i].path) != 0;
        if (!first)
            continue;
        char *p = concrete_path(ops[i].path);
        for (size_t m = 0; m < sizeof methods / sizeof methods[0]; m++) {
            if (find_op(methods[m], ops[i].path))
                continue;
            bool body = strcmp(methods[m], "GET") != 0 && strcmp(methods[m], "DELETE") != 0;
            td_reply r;
            td_http_json(h, methods[m], p, body ? "{}" : NULL, &r);
            sent++;
            if (r.status != 405)
                fprintf(stderr, "%s %s (not in openapi.yaml): want 405, got %ld: %.200s\n",
                        methods[m], p, r.status, r.body);
            CHECK_EQ(r.status, 405);
            if (r.status == 405)
                CHECK_STREQ(td_reply_error_code(&r), "method_not_allowed");
            td_reply_finish(&r);
        }
        free(p);
    }
    fprintf(stderr, "%zu requests of methods no operation has\n", sent);
}

/* ---- scopes ------------------------------------------------------------ */

static int scope_rank(const char *s)
{
    return strcmp(s, "read") == 0 ? 1 : strcmp(s, "write") == 0 ? 2 : strcmp(s, "admin") == 0 ? 3 : 0;
}

/*
 * With keys made: each operation refused (401/403) with a key of the
 * scope below its x-compatd-scope (no key below read), and let in with
 * one of its scope.  Runs after the main pass, so repeated writes may
 * answer 404 or 409: only "let in or not" is looked at.
 */
static void test_scopes(td_daemon *d, td_http *h)
{
    static const char *const scopes[] = {"read", "write", "admin"};
    char keys[3][128];
    for (size_t s = 0; s < 3; s++) {
        char name[32];
        snprintf(name, sizeof name, "openapi-%s", scopes[s]);
        REQUIRE(td_create_key(d, name, scopes[s], keys[s], sizeof keys[s]) == 0);
    }
    for (size_t i = 0; i < n_ops; i++) {
        const op *o = &ops[i];
        int need = scope_rank(o->scope);
        td_reply r;
        /* Below: no key for read, the next lower key otherwise. */
        td_http_set_key(h, need >= 2 ? keys[need - 2] : NULL);
        send_op(h, o, "", &r);
        bool refused = r.status == 401 || r.status == 403;
        record(o, &r);
        if (need > 0 && !refused)
            fprintf(stderr, "%s %s (scope %s) let in below it: %ld\n", o->method, o->path,
                    o->scope, r.status);
        if (need == 0 && refused)
            fprintf(stderr, "%s %s (scope none) refused without a key: %ld\n", o->method,
                    o->path, r.status);
        CHECK(need > 0 ? refused : !refused);
        if (refused)
            CHECK(lists_code(o, r.status));
        td_reply_finish(&r);
        if (need > 0) {
            td_http_set_key(h, keys[need - 1]);
            send_op(h, o, "", &r);
            if (r.status == 401 || r.status == 403)
                fprintf(stderr, "%s %s (scope %s) refused with a %s key: %ld\n", o->method,
                        o->path, o->scope, o->scope, r.status);
            CHECK(r.status != 401 && r.status != 403 && routed(&r));
            td_reply_finish(&r);
        }
    }
    td_http_set_key(h, NULL);
}

int main(void)
{
    char *root = source_root();
    if (!root)
        fprintf(stderr, "cannot find the source tree from %s; set COMPATD_SOURCE_ROOT\n",
                __FILE__);
    REQUIRE(root != NULL);
    char *yaml_path = td_fmt("%s/schema/openapi.yaml", root);
    size_t len = 0;
    char *yaml = read_file(yaml_path, &len);
    if (!yaml)
        fprintf(stderr, "cannot read %s\n", yaml_path);
    REQUIRE(yaml != NULL);
    char *copy = td_fmt("%s", yaml);
    parse_openapi(copy);

    test_operations_wellformed();
    test_routes_match();
    test_python_agrees(yaml_path);

    td_daemon *d = td_daemon_create();
    REQUIRE(d != NULL);
    REQUIRE(td_daemon_start(d, NULL));
    td_http *h = td_http_create(d);
    REQUIRE(h != NULL);

    test_served(h, yaml, len);
    build_fixture(h);
    test_no_route(h);
    test_other_methods(h);
    test_every_operation(h);
    test_scopes(d, h);
    test_python_schemas(d, yaml_path);

    td_http_destroy(h);
    CHECK_EQ(td_daemon_stop(d), 0);
    td_daemon_destroy(d);
    for (size_t i = 0; i < n_ops; i++)
        free(ops[i].example);
    free(replies.s);
    free(copy);
    free(yaml);
    free(yaml_path);
    free(root);
    return check_exit();
}
