/*
 * client.c - the command line's HTTP client (see client.h).
 *
 * One CURL easy handle per client, reused for every request so that
 * libcurl keeps the connection alive.  The Authorization header is built
 * once, into a curl_slist the client owns; the buffer that held the key
 * text is cleared before it is freed.  Replies grow in one malloc'd buffer
 * that becomes the caller's.
 */
#include "client.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>

#define CONNECT_TIMEOUT_S 10L
#define ERROR_BODY_MAX 200      /* bytes of a non-JSON error body quoted */

struct cd_client {
    CURL *curl;                 /* the kept-alive handle */
    struct curl_slist *headers; /* Content-Type, Accept, Authorization */
    char *url;                  /* base URL without a trailing '/' */
    bool has_key;               /* an Authorization header is sent */
};

/* A reply body as it arrives. */
typedef struct reply_buf {
    char *data;
    size_t len, cap;
    bool oom;
} reply_buf;

static size_t on_data(char *ptr, size_t size, size_t nmemb, void *userdata)
{
    reply_buf *b = userdata;
    size_t n = size * nmemb;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->len + n + 1)
            cap *= 2;
        char *grown = realloc(b->data, cap);
        if (!grown) {
            b->oom = true;
            return 0;   /* makes curl fail the transfer */
        }
        b->data = grown;
        b->cap = cap;
    }
    memcpy(b->data + b->len, ptr, n);
    b->len += n;
    b->data[b->len] = '\0';
    return n;
}

/* curl_global_init once per process: the command line is single-threaded. */
static bool curl_ready(void)
{
    static bool done;
    if (!done)
        done = curl_global_init(CURL_GLOBAL_DEFAULT) == CURLE_OK;
    return done;
}

cd_err cd_client_create(const char *url, const char *key, const char *cacert,
                        cd_client **out, cd_error *err)
{
    cd_client *c = NULL;
    char *auth = NULL;
    cd_err rc = CD_ENOMEM;
    *out = NULL;
    if (!url || (strncmp(url, "http://", 7) != 0 && strncmp(url, "https://", 8) != 0))
        return cd__fail(err, CD_EINVAL, "URL \"%s\" does not start with http:// or https://",
                        url ? url : "");
    if (!curl_ready())
        return cd__fail(err, CD_ENOMEM, "libcurl cannot be initialised");
    c = calloc(1, sizeof *c);
    if (!c)
        goto fail;
    c->url = strdup(url);
    if (!c->url)
        goto fail;
    size_t n = strlen(c->url);
    while (n > 0 && c->url[n - 1] == '/')
        c->url[--n] = '\0';
    c->curl = curl_easy_init();
    if (!c->curl)
        goto fail;
    struct curl_slist *h = curl_slist_append(NULL, "Accept: application/json");
    if (!h)
        goto fail;
    c->headers = h;
    /* An empty Expect stops curl waiting for "100 Continue" on big bodies. */
    if (!(h = curl_slist_append(c->headers, "Expect:")))
        goto fail;
    if (key && *key) {
        if (asprintf(&auth, "Authorization: Bearer %s", key) < 0) {
            auth = NULL;
            goto fail;
        }
        if (!(h = curl_slist_append(c->headers, auth)))
            goto fail;
        c->has_key = true;
    }
    curl_easy_setopt(c->curl, CURLOPT_HTTPHEADER, c->headers);
    curl_easy_setopt(c->curl, CURLOPT_WRITEFUNCTION, on_data);
    curl_easy_setopt(c->curl, CURLOPT_CONNECTTIMEOUT, CONNECT_TIMEOUT_S);
    curl_easy_setopt(c->curl, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c->curl, CURLOPT_ACCEPT_ENCODING, "");
    curl_easy_setopt(c->curl, CURLOPT_PROTOCOLS_STR, "http,https");
    if (cacert && *cacert)
        curl_easy_setopt(c->curl, CURLOPT_CAINFO, cacert);
    rc = CD_OK;
    *out = c;
    c = NULL;
fail:
    if (auth) {
        /* The key text; curl_slist_append copied it. */
        explicit_bzero(auth, strlen(auth));
        free(auth);
    }
    cd_client_destroy(c);
    if (rc != CD_OK)
        return cd__fail(err, rc, "out of memory creating the HTTP client");
    return CD_OK;
}

void cd_client_destroy(cd_client *c)
{
    if (!c)
        return;
    for (struct curl_slist *h = c->headers; h; h = h->next)
        if (h->data && strncmp(h->data, "Authorization:", 14) == 0)
            explicit_bzero(h->data, strlen(h->data));
    curl_slist_free_all(c->headers);
    if (c->curl)
        curl_easy_cleanup(c->curl);
    free(c->url);
    free(c);
}

const char *cd_client_url(const cd_client *c)
{
    return c->url;
}

bool cd_client_has_key(const cd_client *c)
{
    return c->has_key;
}

/* cd_client_request with a body of content_type. */
static cd_err request_typed(cd_client *c, const char *method, const char *path,
                            const char *content_type, const char *body, size_t len,
                            long *status, char **reply, size_t *reply_len, cd_error *err)
{
    char errbuf[CURL_ERROR_SIZE] = "";
    reply_buf b = {0};
    char *url = NULL;
    cd_err rc = CD_OK;
    *status = 0;
    if (reply)
        *reply = NULL;
    if (reply_len)
        *reply_len = 0;
    if (asprintf(&url, "%s%s", c->url, path) < 0)
        return cd__fail(err, CD_ENOMEM, "out of memory");
    CURL *h = c->curl;
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_ERRORBUFFER, errbuf);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, &b);
    curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, method);
    if (body) {
        curl_easy_setopt(h, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len);
    } else {
        curl_easy_setopt(h, CURLOPT_HTTPGET, 1L);
        curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, method);
    }
    /* Content-Type only with a body: the header list is shared. */
    char ctype_line[128];
    snprintf(ctype_line, sizeof ctype_line, "Content-Type: %s", content_type);
    struct curl_slist ctype = {.data = ctype_line, .next = c->headers};
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, body ? &ctype : c->headers);
    CURLcode cc = curl_easy_perform(h);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, c->headers);
    curl_easy_setopt(h, CURLOPT_ERRORBUFFER, NULL);
    curl_easy_setopt(h, CURLOPT_POSTFIELDS, NULL);
    if (cc != CURLE_OK) {
        if (b.oom)
            rc = cd__fail(err, CD_ENOMEM, "out of memory reading the reply of %s %s", method,
                          url);
        else
            rc = cd__fail(err, CD_EIO, "cannot reach %s: %s", c->url,
                          errbuf[0] ? errbuf : curl_easy_strerror(cc));
        goto out;
    }
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, status);
    if (!b.data && !(b.data = calloc(1, 1))) {
        *status = 0;
        rc = cd__fail(err, CD_ENOMEM, "out of memory");
        goto out;
    }
    if (reply) {
        *reply = b.data;
        b.data = NULL;
    }
    if (reply_len)
        *reply_len = b.len;
out:
    free(b.data);
    free(url);
    return rc;
}

cd_err cd_client_request(cd_client *c, const char *method, const char *path,
                         const char *body, size_t len, long *status,
                         char **reply, size_t *reply_len, cd_error *err)
{
    return request_typed(c, method, path, "application/json", body, len, status, reply,
                         reply_len, err);
}

/* The cd_err of a non-2xx status. */
static cd_err status_error(long status)
{
    static const struct {
        long status;
        cd_err code;
    } table[] = {
        {400, CD_EINVAL},    {401, CD_EINVAL},         {403, CD_EINVAL},
        {404, CD_ENOTFOUND}, {409, CD_ECONFLICT},      {413, CD_ETOOLARGE},
        {422, CD_EUNPROCESSABLE}, {503, CD_EBUSY},
    };
    for (size_t i = 0; i < sizeof table / sizeof table[0]; i++)
        if (table[i].status == status)
            return table[i].code;
    return CD_EIO;
}

/* The first line of a non-JSON body, at most ERROR_BODY_MAX bytes. */
static int first_line_len(const char *s)
{
    size_t n = strcspn(s, "\r\n");
    return (int)(n > ERROR_BODY_MAX ? ERROR_BODY_MAX : n);
}

cd_err cd_client_call(cd_client *c, const char *method, const char *path,
                      const char *body, long *status, cJSON **json,
                      char **text, cd_error *err)
{
    return cd_client_call_body(c, method, path, "application/json", body,
                               body ? strlen(body) : 0, status, json, text, err);
}

cd_err cd_client_call_body(cd_client *c, const char *method, const char *path,
                           const char *content_type, const char *body, size_t body_len,
                           long *status, cJSON **json, char **text, cd_error *err)
{
    long st = 0;
    char *reply = NULL;
    size_t len = 0;
    *json = NULL;
    if (text)
        *text = NULL;
    cd_err rc = request_typed(c, method, path, content_type, body, body_len, &st, &reply, &len,
                              err);
    if (status)
        *status = st;
    if (rc != CD_OK)
        return rc;
    cJSON *j = len ? cJSON_ParseWithLength(reply, len) : NULL;
    if (st < 200 || st > 299) {
        const cJSON *e = cJSON_GetObjectItemCaseSensitive(j, "error");
        const cJSON *m = cJSON_GetObjectItemCaseSensitive(e, "message");
        if (cJSON_IsString(m))
            rc = cd__fail(err, status_error(st), "HTTP %ld: %s", st, m->valuestring);
        else
            rc = cd__fail(err, status_error(st), "HTTP %ld from %s %s%s%.*s", st, method, path,
                          len ? ": " : "", first_line_len(reply), reply);
        cJSON_Delete(j);
        free(reply);
        return rc;
    }
    if (len && !j) {
        free(reply);
        return cd__fail(err, CD_ECORRUPT, "the reply to %s %s is not JSON", method, path);
    }
    *json = j;
    if (text)
        *text = reply;
    else
        free(reply);
    return CD_OK;
}

char *cd_client_escape(const char *s)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t n = strlen(s);
    char *out = malloc(3 * n + 1), *o = out;
    if (!out)
        return NULL;
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        unsigned char ch = *p;
        if ((ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') ||
            ch == '-' || ch == '.' || ch == '_' || ch == '~') {
            *o++ = (char)ch;
        } else {
            *o++ = '%';
            *o++ = hex[ch >> 4];
            *o++ = hex[ch & 15];
        }
    }
    *o = '\0';
    return out;
}
