/*
 * route.c - the route table (see route.h) and matching a path against it.
 *
 * The scopes (concepts.md §5): read to read and search, write for items
 * and running evaluations, admin for models, galleries and adapters.  The probes
 * need no key (Kubernetes asks them without one); GET /metrics needs read
 * unless --metrics-public.  The dashboard's page and assets need none:
 * they hold no data, and the page must load to ask for a key.
 */
#include "route.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif

#include "handlers/handlers.h"
#include "text.h"

static const cd_route routes[] = {
    {"/", CD_ROUTE_STORELESS, {{"GET", CD_SCOPE_NONE, CD_BODY_NONE, cd__dashboard_get}}},
    {"/ui/{file}", CD_ROUTE_STORELESS, {{"GET", CD_SCOPE_NONE, CD_BODY_NONE, cd__asset_get}}},
    {"/healthz", CD_ROUTE_PROBE | CD_ROUTE_STORELESS,
     {{"GET", CD_SCOPE_NONE, CD_BODY_NONE, cd__healthz_get}}},
    {"/readyz", CD_ROUTE_PROBE | CD_ROUTE_STORELESS,
     {{"GET", CD_SCOPE_NONE, CD_BODY_NONE, cd__readyz_get}}},
    {"/metrics", CD_ROUTE_METRICS | CD_ROUTE_STORELESS,
     {{"GET", CD_SCOPE_READ, CD_BODY_NONE, cd__metrics_get}}},
    {"/v1/openapi.yaml", CD_ROUTE_STORELESS,
     {{"GET", CD_SCOPE_READ, CD_BODY_NONE, cd__openapi_get}}},
    {"/v1/models", 0, {
        {"GET", CD_SCOPE_READ, CD_BODY_NONE, cd__models_list},
        {"POST", CD_SCOPE_ADMIN, CD_BODY_JSON, cd__models_create}}},
    {"/v1/models/{name}", 0, {{"GET", CD_SCOPE_READ, CD_BODY_NONE, cd__model_get}}},
    {"/v1/galleries", 0, {
        {"GET", CD_SCOPE_READ, CD_BODY_NONE, cd__galleries_list},
        {"POST", CD_SCOPE_ADMIN, CD_BODY_JSON, cd__galleries_create}}},
    {"/v1/galleries/{g}", 0, {
        {"GET", CD_SCOPE_READ, CD_BODY_NONE, cd__gallery_get},
        {"PATCH", CD_SCOPE_ADMIN, CD_BODY_JSON, cd__gallery_patch},
        {"DELETE", CD_SCOPE_ADMIN, CD_BODY_NONE, cd__gallery_delete}}},
    {"/v1/galleries/{g}/items", 0, {
        {"GET", CD_SCOPE_READ, CD_BODY_NONE, cd__items_list},
        {"POST", CD_SCOPE_WRITE, CD_BODY_BATCH, cd__items_upsert}}},
    /* Before {id}: an item called "delete" is read by listing and
     * deleted in bulk. */
    {"/v1/galleries/{g}/items/delete", 0, {
        {"POST", CD_SCOPE_WRITE, CD_BODY_JSON, cd__items_delete}}},
    {"/v1/galleries/{g}/items/{id}", 0, {
        {"GET", CD_SCOPE_READ, CD_BODY_NONE, cd__item_get},
        {"DELETE", CD_SCOPE_WRITE, CD_BODY_NONE, cd__item_delete}}},
    {"/v1/galleries/{g}/search", 0, {
        {"POST", CD_SCOPE_READ, CD_BODY_JSON, cd__search}}},
    {"/v1/galleries/{g}/backfill", 0, {
        {"GET", CD_SCOPE_READ, CD_BODY_NONE, cd__backfill_get}}},
    {"/v1/galleries/{g}/promote", 0, {
        {"POST", CD_SCOPE_ADMIN, CD_BODY_JSON, cd__gallery_promote}}},
    {"/v1/galleries/{g}/embeddings/{model}", 0, {
        {"DELETE", CD_SCOPE_ADMIN, CD_BODY_NONE, cd__embeddings_retire}}},
    {"/v1/galleries/{g}/evaluations", 0, {
        {"GET", CD_SCOPE_READ, CD_BODY_NONE, cd__evaluations_list},
        {"POST", CD_SCOPE_WRITE, CD_BODY_EVAL, cd__evaluations_create}}},
    {"/v1/evaluations/{id}", 0, {{"GET", CD_SCOPE_READ, CD_BODY_NONE, cd__evaluation_get}}},
    {"/v1/adapters", 0, {
        {"GET", CD_SCOPE_READ, CD_BODY_NONE, cd__adapters_list},
        {"POST", CD_SCOPE_ADMIN, CD_BODY_EVAL, cd__adapters_create}}},
    {"/v1/adapters/{name}", 0, {
        {"GET", CD_SCOPE_READ, CD_BODY_NONE, cd__adapter_get},
        {"DELETE", CD_SCOPE_ADMIN, CD_BODY_NONE, cd__adapter_delete}}},
    {"/v1/adapters/{name}/evaluations", 0, {
        {"GET", CD_SCOPE_READ, CD_BODY_NONE, cd__adapter_evaluations}}},
    {"/v1/compatibility", 0, {{"GET", CD_SCOPE_READ, CD_BODY_NONE, cd__compatibility_get}}},
};

#define N_ROUTES (sizeof routes / sizeof routes[0])

/* Each row's pattern and methods as "GET, POST": the Allow of a 405 and
 * cd_routes, made from the rows once. */
static cd_route_info infos[N_ROUTES];
static char allows[N_ROUTES][CD_ROUTE_METHODS_MAX * 8];
static pthread_once_t infos_once = PTHREAD_ONCE_INIT;

static void make_infos(void)
{
    for (size_t r = 0; r < N_ROUTES; r++) {
        size_t len = 0;
        for (size_t i = 0; i < CD_ROUTE_METHODS_MAX && routes[r].methods[i].name; i++)
            len += (size_t)snprintf(allows[r] + len, sizeof allows[r] - len, "%s%s",
                                    i ? ", " : "", routes[r].methods[i].name);
        infos[r] = (cd_route_info){routes[r].pattern, allows[r]};
    }
}

size_t cd_routes(const cd_route_info **out)
{
    pthread_once(&infos_once, make_infos);
    *out = infos;
    return N_ROUTES;
}

#define MAX_SEGMENTS 5

/* Splits path at '/' into at most max segments; the last one keeps the
 * rest of the path (item ids may hold '/').  Returns the count, or -1. */
static int split_path(char *path, char **seg, int max)
{
    int n = 0;
    char *p = path;
    if (*p != '/')
        return -1;
    p++;
    while (*p && n < max) {
        seg[n++] = p;
        if (n == max)
            break;
        char *slash = strchr(p, '/');
        if (!slash)
            break;
        *slash = '\0';
        p = slash + 1;
        if (*p == '\0')
            return -1; /* trailing slash */
    }
    return n;
}

/* Whether the n segments seg match pattern; its {parameters} go to params. */
static bool pattern_matches(const char *pattern, char **seg, int n, const char **params)
{
    const char *p = pattern + 1;
    int i = 0, k = 0;
    while (*p) {
        size_t len = strcspn(p, "/");
        if (i == n)
            return false;
        if (p[0] == '{') {
            if (k == CD_ROUTE_PARAMS_MAX)
                return false;
            params[k++] = seg[i];
        } else if (strlen(seg[i]) != len || memcmp(seg[i], p, len) != 0) {
            return false;
        }
        i++;
        p += len + (p[len] == '/');
    }
    return i == n;
}

/* The method a request is routed as: HEAD is GET without the body
 * (RFC 9110 9.3.2; libmicrohttpd sends the headers only). */
static const char *routed_method(const char *method)
{
    return strcmp(method, "HEAD") == 0 ? "GET" : method;
}

cd_err cd_route_find(const char *method, const char *path, cd_route_match *out)
{
    char *seg[MAX_SEGMENTS];
    memset(out, 0, sizeof *out);
    out->path = strdup(path);
    if (!out->path)
        return CD_ENOMEM;
    out->path_invalid = !cd_utf8_valid(path, strlen(path));
    int n = split_path(out->path, seg, MAX_SEGMENTS);
    for (size_t r = 0; n >= 0 && r < N_ROUTES && !out->route; r++)
        if (pattern_matches(routes[r].pattern, seg, n, out->params))
            out->route = &routes[r];
    const char *m = routed_method(method);
    for (size_t i = 0; out->route && i < CD_ROUTE_METHODS_MAX && !out->method; i++)
        if (out->route->methods[i].name && strcmp(out->route->methods[i].name, m) == 0)
            out->method = &out->route->methods[i];
    return CD_OK;
}

void cd_route_match_finish(cd_route_match *m)
{
    free(m->path);
    memset(m, 0, sizeof *m);
}

const char *cd_route_pattern(const cd_route_match *m)
{
    return m->route ? m->route->pattern : "other";
}

cd_scope cd_route_scope(const cd_route_match *m, bool metrics_public)
{
    if (!m->route)
        return CD_SCOPE_READ;
    if ((m->route->flags & CD_ROUTE_PROBE) ||
        ((m->route->flags & CD_ROUTE_METRICS) && metrics_public))
        return CD_SCOPE_NONE;
    return m->method ? m->method->scope : CD_SCOPE_READ;
}

size_t cd_route_body_limit(const cd_route_match *m, size_t max_body, size_t max_eval_body)
{
    if (m->method && m->method->body == CD_BODY_EVAL && max_eval_body > max_body)
        return max_eval_body;
    return max_body;
}

bool cd_route_accept(const cd_route_match *m, const char *method, const char *path,
                     cd_reply *rep)
{
    if (m->path_invalid) {
        /* Also how a %00 arrives (see http.c): never echo such bytes. */
        cd_reply_error(rep, CD_HTTP_INVALID_PATH, "request path is not valid UTF-8 or holds %%00");
        return false;
    }
    if (!m->route) {
        cd_reply_error(rep, CD_HTTP_NO_ROUTE, "no route %s %s", routed_method(method), path);
        return false;
    }
    if (!m->method) {
        const cd_route_info *all;
        cd_routes(&all);
        rep->allow = all[m->route - routes].methods;
        cd_reply_error(rep, CD_HTTP_METHOD_NOT_ALLOWED, "%s is not allowed here (allowed: %s)",
                       routed_method(method), rep->allow);
        return false;
    }
    return true;
}

/* Requests whose body and reply together are this large return the
 * memory they used to the system afterwards (return_memory). */
#define TRIM_AFTER_BYTES (4u << 20)

/*
 * After a large request, gives the memory its handler freed back to the
 * system: glibc keeps freed pages of its arenas (one per thread) for
 * reuse, so without this one large search would leave the daemon at its
 * peak size for good.  The reply body, allocated whole, is unmapped when
 * it is freed after sending.
 */
static void return_memory(const cd_request *req, const cd_reply *rep)
{
#ifdef __GLIBC__
    if (req->body_len + rep->len >= TRIM_AFTER_BYTES)
        malloc_trim(0);
#else
    (void)req;
    (void)rep;
#endif
}

void cd_route_dispatch(cd_api *api, const cd_route_match *m, const cd_request *req,
                       cd_reply *rep)
{
    cd_request r = *req;
    r.params = m->params;
    rep->route = cd_route_pattern(m);
    /* A JSON-only route's reader refuses any other body (415) itself. */
    const char *ct = req->content_type;
    /* While the start's check of the store runs beside the loads (serve.c),
     * only the routes that do not touch the store are served. */
    if (!(m->route->flags & CD_ROUTE_STORELESS) && !cd_engine_checked(api->engine))
        cd_reply_error(rep, CD_HTTP_NOT_READY, "the store is being checked at start; "
                       "try again once /readyz answers 200");
    else if (m->method->body == CD_BODY_BATCH && !cd_request_content_type_is(req, "application/json") &&
        !cd_request_content_type_is(req, "application/octet-stream"))
        cd_reply_error(rep, CD_HTTP_UNSUPPORTED_MEDIA_TYPE,
                       "Content-Type must be application/json or application/octet-stream "
                       "(got %s)", !ct ? "none" : cd_utf8_valid(ct, strlen(ct)) ? ct
                                                                               : "not UTF-8");
    else
        m->method->handler(api, &r, rep);
    return_memory(req, rep);
}
