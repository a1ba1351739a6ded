/*
 * client.h - the command line's HTTP client (libcurl) for a compatd
 * server, local or remote.
 *
 * A cd_client is one curl handle aimed at a base URL ("http://host:8080",
 * "https://host/compatd"); its connection is kept alive between requests,
 * so a bulk import pays for one TCP (and TLS) handshake.  It sends the API
 * key, when there is one, as "Authorization: Bearer <key>" with every
 * request, and never prints or logs it.  Transport failures (no route, TLS,
 * a reset connection) are errors; any HTTP reply is not: the caller gets
 * its status and body, and cd_client_call turns a JSON reply into a cJSON
 * tree and a non-2xx status into an error carrying the server's message.
 *
 * A client is for one thread at a time.
 */
#ifndef CD_CLIENT_H
#define CD_CLIENT_H

#include <stdbool.h>
#include <stddef.h>

#include <cjson/cJSON.h>

#include "error.h"

typedef struct cd_client cd_client;

/*
 * Creates a client for the server at url (http:// or https://, optionally
 * with a path prefix; a trailing '/' is dropped).  key (NULL or "": none)
 * is the API key to send; cacert (NULL: the system's trust store) is a PEM
 * file of the certificates an https server's chain must lead to.
 *
 * On success *out is the client (release with cd_client_destroy).
 * Errors, *out NULL: CD_EINVAL for a URL that is not http(s), CD_ENOMEM.
 */
cd_err cd_client_create(const char *url, const char *key, const char *cacert,
                        cd_client **out, cd_error *err);

/* Frees the client and closes its connection.  Accepts NULL. */
void cd_client_destroy(cd_client *c);

/* The base URL the client sends to (without a trailing '/'); lives as
 * long as c. */
const char *cd_client_url(const cd_client *c);

/* True when the client sends an API key. */
bool cd_client_has_key(const cd_client *c);

/*
 * Sends method path (below the base URL: "/v1/models"; segments already
 * percent-encoded, see cd_client_escape) with len bytes of body as
 * application/json (body NULL: no body).
 *
 * On success *status is the HTTP status and *reply (when reply is not
 * NULL) the body, malloc'd and NUL-terminated (free()), with its length in
 * *reply_len (when not NULL).  Errors, *status 0 and *reply NULL: CD_EIO
 * when the server cannot be reached or the transfer fails (the message
 * names the URL and says why, in one line), CD_ENOMEM.
 */
cd_err cd_client_request(cd_client *c, const char *method, const char *path,
                         const char *body, size_t len, long *status,
                         char **reply, size_t *reply_len, cd_error *err);

/*
 * cd_client_request for a JSON API call.  body is JSON text or NULL.
 *
 * On a 2xx reply returns CD_OK with *json the parsed body (NULL for an
 * empty one, e.g. 204; free with cJSON_Delete).  On any other status
 * returns an error whose message is "HTTP <status>: <the server's
 * error.message>" (or the start of the body when it is not a JSON error),
 * with *json NULL: CD_EINVAL (400, 401, 403), CD_ENOTFOUND (404),
 * CD_ECONFLICT (409), CD_ETOOLARGE (413), CD_EUNPROCESSABLE (422),
 * CD_EBUSY (503) and CD_EIO for the rest.  A 2xx body that is not JSON is
 * CD_ECORRUPT.  Transport errors as cd_client_request.
 *
 * *status (when status is not NULL) is the HTTP status, 0 after a
 * transport error.  When text is not NULL, *text is the body as received
 * (malloc'd, free()) on success and NULL on any error.
 */
cd_err cd_client_call(cd_client *c, const char *method, const char *path,
                      const char *body, long *status, cJSON **json,
                      char **text, cd_error *err);

/* cd_client_call with body_len bytes of body (any bytes) sent as
 * content_type ("application/octet-stream"). */
cd_err cd_client_call_body(cd_client *c, const char *method, const char *path,
                           const char *content_type, const char *body, size_t body_len,
                           long *status, cJSON **json, char **text, cd_error *err);

/*
 * Percent-encodes s as one path segment: every byte but the unreserved
 * ones of RFC 3986 (A-Z a-z 0-9 - . _ ~) becomes %XX, so '/', spaces and
 * UTF-8 bytes of an item id reach the server as one segment.  Returns a
 * malloc'd string (free()), or NULL when out of memory.
 */
char *cd_client_escape(const char *s);

#endif
