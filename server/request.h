/*
 * request.h - a request as handlers see it, and the one set of readers of
 * its JSON body: the body itself (content type, UTF-8, duplicate keys),
 * fields, names, integers, and the values several routes share: an item
 * id, a label, a vector (JSON or base64) and metadata (kept as the
 * client's own text).  Each reader either fills its out-parameter and
 * returns true, or sets a 4xx (503 when out of memory) error reply and
 * returns false.  `where` prefixes messages ("item 3: "), "" for none.
 */
#ifndef CD_REQUEST_H
#define CD_REQUEST_H

#include <stdbool.h>
#include <stddef.h>

#include <cjson/cJSON.h>

#include "store.h"
#include "reply.h"

/* A request as handlers see it: read-only. */
typedef struct cd_request {
    const char *method;
    const char *path;           /* percent-decoded, without the query */
    const char *body;           /* NUL-terminated copy of the body */
    size_t body_len;
    const char *content_type;   /* NULL when absent */
    const char *const *params;  /* the route's path parameters, in the order
                                   of its pattern ("{g}", "{id}") */
    /* Query argument name, or NULL; NULL itself when there is no query
     * (a request made without a connection). */
    const char *(*arg)(void *conn, const char *name);
    void *conn;                 /* arg's first argument */
    const char *api_key;        /* from "Authorization: Bearer <key>", or NULL */
    bool auth_invalid;          /* an Authorization header that is not that */
} cd_request;

/* The value of query argument name, or NULL. */
const char *cd_request_arg(const cd_request *req, const char *name);

/* True when the request's Content-Type is type (case aside), with or
 * without parameters ("application/json; charset=utf-8"). */
bool cd_request_content_type_is(const cd_request *req, const char *type);

/*
 * The item id and label rules, for ids and labels of len bytes at s
 * however they came (JSON strings, the binary batch): an id of
 * 1..CD_ITEM_ID_MAX bytes (invalid_id), a label of at most CD_LABEL_MAX
 * (and, unless allow_empty, at least 1) bytes (invalid_label), both UTF-8
 * without NUL (invalid_utf8).
 */
bool cd_request_id(const char *s, size_t len, const char *where, cd_reply *rep);
bool cd_request_label(const char *s, size_t len, bool allow_empty, const char *where,
                      cd_reply *rep);
/* Parses a positive decimal integer (a query argument, an id) of at most
 * 18 digits, no sign or spaces; false for anything else. */
bool cd_parse_positive(const char *s, int64_t *out);

/* The body as a JSON object (Content-Type application/json, UTF-8, no
 * \u0000, no two members of one name anywhere), or NULL with rep set.
 * Free with cJSON_Delete(). */
cJSON *cd_json_body(const cd_request *req, cd_reply *rep);

/* Refuses members of obj not in allowed (NULL-terminated): unknown_field. */
bool cd_json_only_fields(const cJSON *obj, const char *const *allowed, const char *where,
                         cd_reply *rep);

/* obj's string member name into *out: NULL when absent or null. */
bool cd_json_string(const cJSON *obj, const char *name, const char **out, const char *where,
                    cd_reply *rep);

/* obj's required member field, a name of cd_name_valid (invalid_name). */
bool cd_json_name(const cJSON *obj, const char *field, const char **out, cd_reply *rep);

/* True when f is an integral number in [lo, hi], then in *out; sets no
 * reply (callers say what the number is for). */
bool cd_json_int(const cJSON *f, long lo, long hi, long *out);

/* obj's "id": a string of 1..CD_ITEM_ID_MAX bytes (invalid_id). */
bool cd_json_id(const cJSON *obj, const char *where, const char **out, cd_reply *rep);

/*
 * obj's "label": a string, or an integer (below 1e15) written in decimal;
 * NULL in *out when absent or null.  allow_empty: whether "" is a label.
 * An integer's text is malloc'd into *owned (the caller frees it), which
 * is NULL otherwise.  invalid_label, or out_of_memory.
 */
bool cd_json_label(const cJSON *obj, const char *where, bool allow_empty, char **owned,
                   const char **out, cd_reply *rep);

/*
 * Reads one vector of m's dim into out from v, an array of numbers or
 * (b64) a base64 string of little-endian float32; refuses values that
 * are not finite float32 and ip/l2 vectors whose scores could overflow.
 */
bool cd_json_vector_value(const cJSON *v, bool b64, const cd_model *m, float *out,
                          const char *where, cd_reply *rep);

/* obj's "vector" or "vector_b64" (exactly one) into out, as above. */
bool cd_json_vector(const cJSON *obj, const cd_model *m, float *out, const char *where,
                    cd_reply *rep);

/*
 * The source text of a body cd_json_body accepted, walked alongside its
 * cJSON tree, so that a value keeps the client's bytes where cJSON would
 * round them.  cd_json_source_member: the text of the index-th member of
 * the object (or element of the array) at p; cd_json_source_next: the
 * text of the element after the one at p; cd_json_child_index: where
 * child sits among parent's children.
 */
const char *cd_json_source_member(const char *p, size_t index);
const char *cd_json_source_next(const char *p);
size_t cd_json_child_index(const cJSON *parent, const cJSON *child);

/*
 * obj's "metadata", whose source text is at obj_text: a JSON object of at
 * most max bytes (minified), its numbers finite doubles.  *out is its
 * minified source text, malloc'd (the caller frees it), or NULL when
 * absent or null.  invalid_metadata, or out_of_memory.
 */
bool cd_json_metadata(const cJSON *obj, const char *obj_text, size_t max, const char *where,
                      char **out, cd_reply *rep);

/* Adds stored metadata text to obj as its own bytes ("metadata": null when
 * absent or not one JSON object): cJSON would print numbers as doubles. */
void cd_json_add_metadata(cJSON *obj, const char *text);

/* True when stored metadata text is one JSON object and nothing else. */
bool cd_json_metadata_valid(const char *text);

/*
 * obj's member (e.g. "filter"), a filter (server/filter_json.c says the
 * language), into *out: NULL when absent or null; free with
 * cd_filter_destroy().  invalid_filter, its message starting with the
 * position of the problem ("filter.and[1].metadata.year.gte: ..."), or
 * out_of_memory.
 */
bool cd_json_filter(const cJSON *obj, const char *member, cd_filter **out, cd_reply *rep);

/* The same for a filter given as JSON text (a query argument). */
bool cd_json_filter_text(const char *text, const char *member, cd_filter **out,
                         cd_reply *rep);

#endif
