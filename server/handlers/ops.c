/*
 * ops.c - what operators and their tools ask: the probes (/healthz,
 * /readyz), /metrics, the dashboard's page and files (/, /ui/{file}) and
 * the API description (/v1/openapi.yaml), the last two compiled into the
 * binary.
 */
#include "handlers.h"

#include <stdlib.h>
#include <string.h>

#include "embed.h"

/* Files compiled into the binary by core/embedgen.c (server/meson.build):
 * the dashboard's page and assets (server/web/), and the API description
 * (schema/openapi.yaml). */
extern const cd_embedded_file cd__web_assets[];
extern const size_t cd__web_assets_count;
extern const cd_embedded_file cd__openapi[];
extern const size_t cd__openapi_count;

void cd__metrics_get(cd_api *api, const cd_request *req, cd_reply *rep)
{
    size_t len = 0;
    char *text = cd_metrics_render(api->metrics, api->engine, &len);
    if (!text) {
        cd_reply_error(rep, CD_HTTP_OUT_OF_MEMORY, "out of memory rendering metrics");
        return;
    }
    cd_reply_take(rep, "text/plain; version=0.0.4", text, len);
}

/* Content type of an embedded file, by its name's ending. */
static const char *content_type_of(const char *name)
{
    static const struct {
        const char *ending, *type;
    } types[] = {
        {".html", "text/html; charset=utf-8"},
        {".js", "text/javascript; charset=utf-8"},
        {".css", "text/css; charset=utf-8"},
        {".svg", "image/svg+xml"},
        {".yaml", "application/yaml; charset=utf-8"},
    };
    size_t n = strlen(name);
    for (size_t i = 0; i < sizeof types / sizeof types[0]; i++) {
        size_t e = strlen(types[i].ending);
        if (n >= e && strcmp(name + n - e, types[i].ending) == 0)
            return types[i].type;
    }
    return "application/octet-stream";
}

/* Replies with the embedded file name of table, or 404. */
static void embedded_get(cd_reply *rep, const cd_embedded_file *table, size_t count,
                         const char *name)
{
    for (size_t i = 0; i < count; i++) {
        if (strcmp(table[i].name, name) == 0) {
            cd_reply_text(rep, 200, content_type_of(name), (const char *)table[i].data,
                          table[i].len);
            return;
        }
    }
    cd_reply_error(rep, CD_HTTP_NOT_FOUND, "no dashboard file %s", name);
}

static void simple_status(cd_reply *rep, int status, const char *state)
{
    cJSON *root = cJSON_CreateObject();
    cJSON_AddStringToObject(root, "status", state);
    cd_reply_json(rep, status, root);
}


void cd__dashboard_get(cd_api *api, const cd_request *req, cd_reply *rep)
{
    embedded_get(rep, cd__web_assets, cd__web_assets_count, "index.html");
}

void cd__asset_get(cd_api *api, const cd_request *req, cd_reply *rep)
{
    embedded_get(rep, cd__web_assets, cd__web_assets_count, req->params[0]);
}

void cd__openapi_get(cd_api *api, const cd_request *req, cd_reply *rep)
{
    embedded_get(rep, cd__openapi, cd__openapi_count, "openapi.yaml");
}

void cd__healthz_get(cd_api *api, const cd_request *req, cd_reply *rep)
{
    simple_status(rep, 200, "ok");
}

void cd__readyz_get(cd_api *api, const cd_request *req, cd_reply *rep)
{
    bool ready = cd_engine_ready(api->engine);
    simple_status(rep, ready ? 200 : 503, ready ? "ready" : "loading");
}
