/*
 * test_http_binary.c - the binary item batch (POST .../items with an
 * application/octet-stream body; schema/openapi.yaml gives the layout,
 * which this test writes with its own encoder).
 *
 *  - round trip: the same items upserted as a binary batch into one
 *    gallery and as JSON into another read back (GET ?vectors=true)
 *    with equal labels and vectors, and equal to the vectors sent (l2:
 *    bit for bit; cosine: normalised here in double, to float32 rounding);
 *    an item without a label keeps its stored one; ?model= backfills
 *    another model;
 *  - bad bodies (truncated anywhere, wrong magic, wrong dim, counts that
 *    disagree with the records or rows, bad padding, bad UTF-8 ids and
 *    labels, ids too long or empty, NaN and infinity, a zero cosine
 *    vector, duplicate ids, a batch above --max-batch, other content
 *    types, an unknown or invalid model) get their 4xx code and store
 *    nothing;
 *  - kill -9: batches acknowledged before a SIGKILL, and one in flight
 *    when it lands, are all there after a restart, bit for bit.
 */
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "daemon.h"

#define DIM 8
#define N_ITEMS 50
#define ITEMS_PATH(g) "/v1/galleries/" g "/items"

/* An item as the tests send it: label NULL for none. */
typedef struct item {
    char id[300];
    const char *label;
    float v[DIM];
} item;

/* A byte buffer growing as a batch is written. */
typedef struct bytes {
    unsigned char *p;
    size_t len, cap;
} bytes;

static void put(bytes *b, const void *data, size_t n)
{
    if (b->len + n > b->cap) {
        b->cap = (b->len + n) * 2 + 64;
        b->p = realloc(b->p, b->cap);
        REQUIRE(b->p != NULL);
    }
    memcpy(b->p + b->len, data, n);
    b->len += n;
}

static void put_u16(bytes *b, unsigned v)
{
    unsigned char x[2] = {(unsigned char)v, (unsigned char)(v >> 8)};
    put(b, x, 2);
}

static void put_u32(bytes *b, uint32_t v)
{
    unsigned char x[4] = {(unsigned char)v, (unsigned char)(v >> 8), (unsigned char)(v >> 16),
                          (unsigned char)(v >> 24)};
    put(b, x, 4);
}

static void put_f32(bytes *b, float f)
{
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    put_u32(b, u);
}

/* The batch of items[0..n) with dim floats each (the header says
 * count and dim). */
static bytes encode(const item *items, size_t n, uint32_t count, uint32_t dim)
{
    bytes b = {0};
    put(&b, "CDB1", 4);
    put_u32(&b, count);
    put_u32(&b, dim);
    for (size_t i = 0; i < n; i++) {
        put_u16(&b, (unsigned)strlen(items[i].id));
        put(&b, items[i].id, strlen(items[i].id));
        if (items[i].label) {
            put_u16(&b, (unsigned)strlen(items[i].label));
            put(&b, items[i].label, strlen(items[i].label));
        } else {
            put_u16(&b, 0xFFFF);
        }
    }
    while (b.len % 4)
        put(&b, "", 1);
    for (size_t i = 0; i < n; i++)
        for (size_t d = 0; d < dim; d++)
            put_f32(&b, d < DIM ? items[i].v[d] : 0.5f);
    return b;
}

static long post_binary(td_http *h, const char *path, const bytes *b, td_reply *r)
{
    td_request req = {"POST", path, "application/octet-stream", (const char *)b->p, b->len,
                      false};
    return td_http_send(h, &req, r);
}

static void make_items(td_rng *rng, item *items, size_t n, const char *prefix)
{
    static const char *const labels[] = {"alice", "bob", "", "ünïcödé", NULL};
    for (size_t i = 0; i < n; i++) {
        snprintf(items[i].id, sizeof items[i].id, "%s-%zu/é", prefix, i);
        items[i].label = labels[i % 5];
        for (size_t d = 0; d < DIM; d++)
            items[i].v[d] = (float)td_rng_gauss(rng);
    }
}

/* The JSON upsert of the same items: vectors as %.9g numbers (exact for
 * float32). */
static long post_json(td_http *h, const char *path, const item *items, size_t n, td_reply *r)
{
    td_text t = {0};
    td_text_append(&t, "{\"items\":[");
    for (size_t i = 0; i < n; i++) {
        td_text_append(&t, "%s{\"id\":\"%s\",", i ? "," : "", items[i].id);
        if (items[i].label)
            td_text_append(&t, "\"label\":\"%s\",", items[i].label);
        td_text_append(&t, "\"vector\":[");
        for (size_t d = 0; d < DIM; d++)
            td_text_append(&t, "%s%.9g", d ? "," : "", (double)items[i].v[d]);
        td_text_append(&t, "]}");
    }
    td_text_append(&t, "]}");
    long st = td_http_json(h, "POST", path, t.s, r);
    free(t.s);
    return st;
}

/* GET of item id with its vectors; the reply in *r (status returned). */
static long get_item(td_http *h, const char *gallery, const char *id, td_reply *r)
{
    td_text path = {0};
    td_text_append(&path, "/v1/galleries/%s/items/", gallery);
    for (const unsigned char *p = (const unsigned char *)id; *p; p++)
        if (*p >= 0x80 || *p == '/')
            td_text_append(&path, "%%%02X", *p);
        else
            td_text_append(&path, "%c", *p);
    td_text_append(&path, "?vectors=true");
    long st = td_http_json(h, "GET", path.s, NULL, r);
    free(path.s);
    return st;
}

/* The stored vector of model in reply r into out; false when absent. */
static bool stored_vector(const td_reply *r, const char *model, float *out)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(
        cJSON_GetObjectItemCaseSensitive(r->json, "vectors"), model);
    if (cJSON_GetArraySize(v) != DIM)
        return false;
    for (int d = 0; d < DIM; d++)
        out[d] = (float)cJSON_GetArrayItem(v, d)->valuedouble;
    return true;
}

/* The vector as stored: the input, L2-normalised in double for cosine. */
static void expected(const float *v, bool cosine, float *out)
{
    double n2 = 0;
    for (int d = 0; d < DIM; d++)
        n2 += (double)v[d] * v[d];
    double s = cosine ? 1 / sqrt(n2) : 1;
    for (int d = 0; d < DIM; d++)
        out[d] = (float)(v[d] * s);
}

/* POSTs a JSON body that must create something (201). */
static void create(td_http *h, const char *path, const char *body)
{
    td_reply r;
    CHECK_EQ(td_http_json(h, "POST", path, body, &r), 201);
    td_reply_finish(&r);
}

static void setup(td_http *h)
{
    create(h, "/v1/models", "{\"name\":\"mc\",\"dim\":8,\"metric\":\"cosine\"}");
    create(h, "/v1/models", "{\"name\":\"ml\",\"dim\":8,\"metric\":\"l2\"}");
    create(h, "/v1/models", "{\"name\":\"m4\",\"dim\":4,\"metric\":\"l2\"}");
    static const char *const galleries[][2] = {
        {"bin-c", "mc"}, {"json-c", "mc"}, {"bin-l", "ml"}, {"json-l", "ml"}, {"bad", "ml"},
        {"badc", "mc"}};
    for (size_t i = 0; i < sizeof galleries / sizeof galleries[0]; i++) {
        char body[160];
        snprintf(body, sizeof body, "{\"name\":\"%s\",\"model\":\"%s\"}",
                 galleries[i][0], galleries[i][1]);
        create(h, "/v1/galleries", body);
    }
}

/* Both forms of one batch into gallery pair (bin, json) of model. */
static void round_trip(td_http *h, const char *bin, const char *json, const char *model,
                       bool cosine, td_rng *rng)
{
    item items[N_ITEMS];
    make_items(rng, items, N_ITEMS, model);
    bytes b = encode(items, N_ITEMS, N_ITEMS, DIM);
    td_reply r;
    char path[128];
    snprintf(path, sizeof path, "/v1/galleries/%s/items", bin);
    CHECK_EQ(post_binary(h, path, &b, &r), 200);
    CHECK_EQ(td_json_num(r.json, "upserted"), N_ITEMS);
    td_reply_finish(&r);
    snprintf(path, sizeof path, "/v1/galleries/%s/items", json);
    CHECK_EQ(post_json(h, path, items, N_ITEMS, &r), 200);
    td_reply_finish(&r);
    CHECK_EQ(td_gallery_count(h, bin), N_ITEMS);
    for (size_t i = 0; i < N_ITEMS; i++) {
        td_reply rb, rj;
        float vb[DIM], vj[DIM], want[DIM];
        CHECK_EQ(get_item(h, bin, items[i].id, &rb), 200);
        CHECK_EQ(get_item(h, json, items[i].id, &rj), 200);
        CHECK(stored_vector(&rb, model, vb) && stored_vector(&rj, model, vj));
        CHECK(memcmp(vb, vj, sizeof vb) == 0);
        expected(items[i].v, cosine, want);
        for (int d = 0; d < DIM; d++) {
            if (cosine)
                CHECK_NEAR(vb[d], want[d], 2e-7);
            else
                CHECK(vb[d] == want[d]);
        }
        const char *lb = td_json_str(rb.json, "label"), *lj = td_json_str(rj.json, "label");
        CHECK((lb == NULL) == (items[i].label == NULL) && (lj == NULL) == (lb == NULL));
        if (lb && lj && items[i].label) {
            CHECK_STREQ(lb, items[i].label);
            CHECK_STREQ(lj, lb);
        }
        td_reply_finish(&rb);
        td_reply_finish(&rj);
    }
    /* No label in a later batch keeps the stored one, in both forms. */
    items[0].label = NULL;
    items[0].v[0] += 1;
    bytes b2 = encode(items, 1, 1, DIM);
    snprintf(path, sizeof path, "/v1/galleries/%s/items", bin);
    CHECK_EQ(post_binary(h, path, &b2, &r), 200);
    td_reply_finish(&r);
    CHECK_EQ(get_item(h, bin, items[0].id, &r), 200);
    CHECK_STREQ(td_json_str(r.json, "label"), "alice");
    float v[DIM], want[DIM];
    expected(items[0].v, cosine, want);
    CHECK(stored_vector(&r, model, v) && fabsf(v[0] - want[0]) < 2e-7f);
    td_reply_finish(&r);
    free(b.p);
    free(b2.p);
}

/* ?model= writes another model's embeddings (a backfill of dim 4). */
static void backfill(td_http *h, td_rng *rng)
{
    item it[2];
    make_items(rng, it, 2, "ml");   /* ids round_trip stored in bin-l, new vectors */
    bytes b = encode(it, 2, 2, 4);
    td_reply r;
    CHECK_EQ(post_binary(h, ITEMS_PATH("bin-l") "?model=m4", &b, &r), 200);
    td_reply_finish(&r);
    CHECK_EQ(get_item(h, "bin-l", it[1].id, &r), 200);
    const cJSON *v = td_json_at(r.json, "vectors.m4");
    CHECK_EQ(cJSON_GetArraySize(v), 4);
    for (int d = 0; d < 4 && v; d++)
        CHECK((float)cJSON_GetArrayItem(v, d)->valuedouble == it[1].v[d]);
    CHECK(td_json_at(r.json, "vectors.ml") != NULL);
    td_reply_finish(&r);
    /* The JSON body takes ?model= too, and refuses two different ones. */
    CHECK_EQ(td_http_json(h, "POST", ITEMS_PATH("bin-l") "?model=m4",
                          "{\"model\":\"ml\",\"items\":[{\"id\":\"x\",\"vector\":[1,2,3,4]}]}", &r),
             400);
    CHECK_STREQ(td_reply_error_code(&r), "invalid_argument");
    td_reply_finish(&r);
    CHECK_EQ(td_http_json(h, "POST", ITEMS_PATH("bin-l") "?model=m4",
                          "{\"items\":[{\"id\":\"q4\",\"vector\":[1,2,3,4]}]}", &r), 200);
    td_reply_finish(&r);
    free(b.p);
}

/* Bodies made by editing a good batch of three items. */
typedef enum edit {
    E_NONE, E_CUT, E_MAGIC, E_COUNT_MORE, E_COUNT_LESS, E_TRAILING, E_PAD, E_COUNT_ZERO,
    E_COUNT_HUGE
} edit;

static const struct bad_case {
    const char *name;
    const char *gallery;
    const char *query;      /* "" or "?model=..." */
    const char *ctype;
    edit ed;
    size_t cut;             /* E_CUT: bytes kept */
    uint32_t dim;
    const char *id1;        /* item 1's id (NULL: "b1") */
    const char *label1;     /* item 1's label (NULL: none) */
    float v1;               /* item 1's first value */
    long status;
    const char *code;
} bad_cases[] = {
    {"empty body", "bad", "", NULL, E_CUT, 0, DIM, NULL, NULL, 1, 400, "invalid_argument"},
    {"header cut", "bad", "", NULL, E_CUT, 10, DIM, NULL, NULL, 1, 400, "invalid_argument"},
    {"cut in an id", "bad", "", NULL, E_CUT, 15, DIM, NULL, NULL, 1, 400, "invalid_argument"},
    {"cut in a label length", "bad", "", NULL, E_CUT, 17, DIM, NULL, NULL, 1, 400,
     "invalid_argument"},
    {"cut in the rows", "bad", "", NULL, E_CUT, 30 + 40, DIM, NULL, NULL, 1, 400,
     "invalid_argument"},
    {"last byte cut", "bad", "", NULL, E_CUT, (size_t)-1, DIM, NULL, NULL, 1, 400,
     "invalid_argument"},
    {"wrong magic", "bad", "", NULL, E_MAGIC, 0, DIM, NULL, NULL, 1, 400, "invalid_argument"},
    {"wrong dim", "bad", "", NULL, E_NONE, 0, DIM + 1, NULL, NULL, 1, 400,
     "dimension_mismatch"},
    /* The rows are then read as a fourth record: its code depends on them. */
    {"count above the records", "bad", "", NULL, E_COUNT_MORE, 0, DIM, NULL, NULL, 1, 400,
     NULL},
    {"count below the records", "bad", "", NULL, E_COUNT_LESS, 0, DIM, NULL, NULL, 1, 400,
     "invalid_argument"},
    {"bytes after the rows", "bad", "", NULL, E_TRAILING, 0, DIM, NULL, NULL, 1, 400,
     "invalid_argument"},
    {"padding not zero", "bad", "", NULL, E_PAD, 0, DIM, NULL, NULL, 1, 400,
     "invalid_argument"},
    {"count zero", "bad", "", NULL, E_COUNT_ZERO, 0, DIM, NULL, NULL, 1, 400,
     "invalid_argument"},
    {"count above --max-batch", "bad", "", NULL, E_COUNT_HUGE, 0, DIM, NULL, NULL, 1, 413,
     "batch_too_large"},
    {"id not UTF-8", "bad", "", NULL, E_NONE, 0, DIM, "b\xff", NULL, 1, 400, "invalid_utf8"},
    {"id overlong UTF-8", "bad", "", NULL, E_NONE, 0, DIM, "\xc0\xaf", NULL, 1, 400,
     "invalid_utf8"},
    {"empty id", "bad", "", NULL, E_NONE, 0, DIM, "", NULL, 1, 400, "invalid_id"},
    {"label not UTF-8", "bad", "", NULL, E_NONE, 0, DIM, NULL, "\xe2\x82", 1, 400,
     "invalid_utf8"},
    {"duplicate id", "bad", "", NULL, E_NONE, 0, DIM, "b0", NULL, 1, 400, "invalid_argument"},
    {"NaN", "bad", "", NULL, E_NONE, 0, DIM, NULL, NULL, NAN, 400, "invalid_vector"},
    {"infinity", "bad", "", NULL, E_NONE, 0, DIM, NULL, NULL, INFINITY, 400,
     "invalid_vector"},
    {"l2 norm too large", "bad", "", NULL, E_NONE, 0, DIM, NULL, NULL, 3e38f, 400,
     "invalid_vector"},
    {"zero cosine vector", "badc", "", NULL, E_NONE, 0, DIM, NULL, NULL, 0, 400,
     "invalid_vector"},
    {"unknown model", "bad", "?model=nope", NULL, E_NONE, 0, DIM, NULL, NULL, 1, 404,
     "not_found"},
    {"invalid model name", "bad", "?model=a%20b", NULL, E_NONE, 0, DIM, NULL, NULL, 1, 400,
     "invalid_name"},
    {"unknown gallery", "nope", "", NULL, E_NONE, 0, DIM, NULL, NULL, 1, 404, "not_found"},
    {"text/plain", "bad", "", "text/plain", E_NONE, 0, DIM, NULL, NULL, 1, 415,
     "unsupported_media_type"},
    {"no content type", "bad", "", "", E_NONE, 0, DIM, NULL, NULL, 1, 415,
     "unsupported_media_type"},
    {"binary as JSON", "bad", "", "application/json", E_NONE, 0, DIM, NULL, NULL, 1, 400,
     NULL},
};

static void bad_bodies(td_http *h)
{
    for (size_t c = 0; c < sizeof bad_cases / sizeof bad_cases[0]; c++) {
        const struct bad_case *bc = &bad_cases[c];
        item it[3];
        for (size_t i = 0; i < 3; i++) {
            snprintf(it[i].id, sizeof it[i].id, "b%zu", i);
            it[i].label = i == 2 ? "two" : NULL;
            for (size_t d = 0; d < DIM; d++)
                it[i].v[d] = (float)(d + i + 1) * (bc->v1 == 0 && i == 1 ? 0 : 1);
        }
        if (bc->id1)
            snprintf(it[1].id, sizeof it[1].id, "%s", bc->id1);
        it[1].label = bc->label1;
        if (bc->v1 != 1)
            it[1].v[0] = bc->v1;
        bytes b = encode(it, 3, 3, bc->dim);
        switch (bc->ed) {
        case E_CUT:
            b.len = bc->cut == (size_t)-1 ? b.len - 1 : bc->cut;
            break;
        case E_MAGIC:
            memcpy(b.p, "CDB2", 4);
            break;
        case E_COUNT_MORE:
            b.p[4] = 4;
            break;
        case E_COUNT_LESS:
            b.p[4] = 2;
            break;
        case E_COUNT_ZERO:
            b.p[4] = 0;
            break;
        case E_COUNT_HUGE:
            b.p[4] = 0xe8, b.p[5] = 0x03;       /* 1000 */
            break;
        case E_TRAILING:
            put(&b, "\0\0\0\0", 4);
            break;
        case E_PAD: {
            /* Records of "b0","b1","b2" + labels: 12 + 3 * 4 + 6 + 3 = 33 bytes,
             * so three bytes of padding follow; make the first one 1. */
            b.p[33] = 1;
            break;
        }
        default:
            break;
        }
        char *path = td_fmt("/v1/galleries/%s/items%s", bc->gallery, bc->query);
        td_request req = {"POST", path, bc->ctype ? (*bc->ctype ? bc->ctype : NULL)
                                                  : "application/octet-stream",
                          (const char *)b.p, b.len, false};
        td_reply r;
        long st = td_http_send(h, &req, &r);
        const char *code = td_reply_error_code(&r);
        bool ok = st == bc->status && (!bc->code || (code && strcmp(code, bc->code) == 0));
        if (!ok)
            fprintf(stderr, "case \"%s\": got %ld %s\n", bc->name, st, r.body);
        CHECK(ok);
        td_reply_finish(&r);
        free(path);
        free(b.p);
        /* Nothing stored, not even the good items before the bad one. */
        CHECK_EQ(td_gallery_count(h, "bad"), 0);
        CHECK_EQ(td_gallery_count(h, "badc"), 0);
        CHECK_EQ(get_item(h, "bad", "b0", &r), 404);
        td_reply_finish(&r);
    }
}

/*
 * Batches acknowledged before a SIGKILL - sent back to back, and one more
 * racing a kill that lands while it may be in flight - are all there
 * after the restart, bit for bit; the racing one whole or not at all.
 */
static void kill_after_acknowledged(td_rng *rng)
{
    enum { BATCHES = 12, PER = 200 };
    td_daemon *d;
    td_http *h;
    REQUIRE(td_daemon_start_client(NULL, &d, &h));
    td_reply r;
    create(h, "/v1/models", "{\"name\":\"ml\",\"dim\":8,\"metric\":\"l2\"}");
    create(h, "/v1/galleries", "{\"name\":\"k\",\"model\":\"ml\"}");
    item *items = malloc((BATCHES + 1) * PER * sizeof *items);
    REQUIRE(items != NULL);
    make_items(rng, items, (BATCHES + 1) * PER, "k");
    for (size_t b = 0; b < BATCHES; b++) {
        bytes body = encode(items + b * PER, PER, PER, DIM);
        CHECK_EQ(post_binary(h, ITEMS_PATH("k"), &body, &r), 200);
        td_reply_finish(&r);
        free(body.p);
    }
    /* The last batch races a kill; its fate is read after the restart. */
    REQUIRE(td_daemon_kill_later(d, 2));
    bytes body = encode(items + BATCHES * PER, PER, PER, DIM);
    long last = post_binary(h, ITEMS_PATH("k"), &body, &r);
    td_reply_finish(&r);
    free(body.p);
    CHECK_EQ(td_daemon_kill(d), 0);
    REQUIRE(td_daemon_start(d, NULL));
    size_t have = 0;
    for (size_t i = 0; i < (BATCHES + 1) * PER; i++) {
        long st = get_item(h, "k", items[i].id, &r);
        float v[DIM];
        if (i < BATCHES * PER || last == 200)
            CHECK_EQ(st, 200);
        if (st == 200) {
            have += i >= BATCHES * PER;
            CHECK(stored_vector(&r, "ml", v) && memcmp(v, items[i].v, sizeof v) == 0);
        }
        td_reply_finish(&r);
    }
    CHECK(have == 0 || have == PER);
    CHECK_EQ(td_gallery_count(h, "k"), (long)(BATCHES * PER + have));
    fprintf(stderr, "kill -9: %d acknowledged batches kept; the racing one %s (status %ld)\n",
            BATCHES, have ? "stored" : "not stored", last);
    free(items);
    td_http_destroy(h);
    CHECK_EQ(td_daemon_stop(d), 0);
    td_daemon_destroy(d);
}

int main(void)
{
    td_rng rng = {td_seed(16)};
    td_daemon *d;
    td_http *h;
    const char *args[] = {"--max-batch", "500", NULL};
    REQUIRE(td_daemon_start_client(args, &d, &h));
    setup(h);
    round_trip(h, "bin-c", "json-c", "mc", true, &rng);
    round_trip(h, "bin-l", "json-l", "ml", false, &rng);
    backfill(h, &rng);
    bad_bodies(h);
    td_http_destroy(h);
    CHECK_EQ(td_daemon_stop(d), 0);
    td_daemon_destroy(d);
    kill_after_acknowledged(&rng);
    return check_exit();
}
