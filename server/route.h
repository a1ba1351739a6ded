/*
 * route.h - the route table: one row per route, with its path pattern,
 * and for each method it answers the key scope it needs, the body it
 * takes and its handler (Redis's command table is the model).  The HTTP
 * layer matches a request once, as soon as its header is in, and carries
 * the match to the end: authorization reads the scope, the body is read
 * up to the row's limit, and the handler runs.  405 and its Allow,
 * the scopes, the limits and the OpenAPI check (cd_routes) all read the
 * same rows.
 *
 * Adding a route: one row in route.c, its handler in handlers/, the path
 * in schema/openapi.yaml, and a test.
 */
#ifndef CD_ROUTE_H
#define CD_ROUTE_H

#include <stdbool.h>
#include <stddef.h>

#include "api.h"
#include "keys.h"
#include "reply.h"
#include "request.h"

/* Handles a request whose route and method matched; never fails: every
 * problem becomes a reply. */
typedef void cd_handler(cd_api *api, const cd_request *req, cd_reply *rep);

/* The body a method of a route takes. */
typedef enum cd_body {
    CD_BODY_NONE,       /* none: one is refused (400 unexpected_body) */
    CD_BODY_JSON,       /* up to --max-body */
    CD_BODY_EVAL,       /* up to --max-eval-body: whole probe sets */
    CD_BODY_BATCH,      /* up to --max-body, JSON or the binary item batch
                           (application/octet-stream, vec.h's CD_BATCH_*);
                           the handler reads either */
} cd_body;

typedef struct cd_route_method {
    const char *name;       /* "GET", "POST", ...; HEAD is routed as GET */
    cd_scope scope;         /* the key scope it needs; CD_SCOPE_NONE: no key */
    cd_body body;
    cd_handler *handler;
} cd_route_method;

#define CD_ROUTE_METHODS_MAX 3
#define CD_ROUTE_PARAMS_MAX 2

/* Flags of a route. */
enum {
    CD_ROUTE_PROBE = 1,     /* a Kubernetes probe: no key for any method, and
                               served on the reserved connections */
    CD_ROUTE_METRICS = 2,   /* no key either with --metrics-public */
    CD_ROUTE_STORELESS = 4, /* reads and writes nothing of the store: also
                               served while the start's check of it runs
                               (cd_engine_checked) */
};

typedef struct cd_route {
    const char *pattern;    /* "/v1/galleries/{g}/items/{id}": literal segments
                               and {parameters}; the last parameter of a
                               five-segment path keeps the rest (ids may
                               hold '/') */
    unsigned flags;
    cd_route_method methods[CD_ROUTE_METHODS_MAX];
} cd_route;

/* A request's route, made once (cd_route_find) and carried to its end. */
typedef struct cd_route_match {
    const cd_route *route;          /* NULL: no route (404) */
    const cd_route_method *method;  /* NULL: the route does not answer it (405) */
    const char *params[CD_ROUTE_PARAMS_MAX];
    bool path_invalid;              /* not UTF-8 or holding %00 (400) */
    char *path;                     /* split copy params point into (owned) */
} cd_route_match;

/*
 * Finds the route of method (HEAD as GET) and path against the table into *out.
 * Returns CD_OK (out->route NULL when no route matches), or CD_ENOMEM.
 * Finish *out with cd_route_match_finish() either way.
 */
cd_err cd_route_find(const char *method, const char *path, cd_route_match *out);

/* Frees what m holds; accepts a zeroed m. */
void cd_route_match_finish(cd_route_match *m);

/* The pattern of m's route for logs and metrics, "other" for none. */
const char *cd_route_pattern(const cd_route_match *m);

/* The key scope m needs: its method's; CD_SCOPE_READ for a method the
 * route does not answer and for no route (a client without a key learns
 * nothing, not even which routes exist). */
cd_scope cd_route_scope(const cd_route_match *m, bool metrics_public);

/* The most body bytes m takes: max_eval_body for CD_BODY_EVAL (when it is
 * the larger), max_body otherwise. */
size_t cd_route_body_limit(const cd_route_match *m, size_t max_body, size_t max_eval_body);

/*
 * Whether a request of m may go on to its handler.  When it may not, fills
 * rep with 400 invalid_path, 404 no_route or 405 method_not_allowed (with
 * Allow) and returns false.  Runs before the body is read.
 */
bool cd_route_accept(const cd_route_match *m, const char *method, const char *path,
                     cd_reply *rep);

/*
 * Runs m's handler on req (whose params it sets from m), which
 * cd_route_accept accepted, and then gives large requests' memory back
 * to the system.
 */
void cd_route_dispatch(cd_api *api, const cd_route_match *m, const cd_request *req,
                       cd_reply *rep);

/* A route as schema/openapi.yaml lists it: its pattern and the methods it
 * answers ("GET, POST"). */
typedef struct cd_route_info {
    const char *pattern;
    const char *methods;
} cd_route_info;

/* Sets *out to every route (static; not freed) and returns how many. */
size_t cd_routes(const cd_route_info **out);

#endif
