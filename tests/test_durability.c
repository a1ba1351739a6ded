/*
 * test_durability.c - nothing acknowledged is lost, whatever kills the
 * daemon, and nothing in the index snapshots can make it answer wrongly.
 *
 * Two daemons get the same acknowledged operations: the victim, which is
 * killed with SIGKILL at a random moment in every round (mostly in the
 * middle of a request; every other run has --snapshot-interval 1 and
 * lives past its first periodic snapshots), and a reference that never
 * crashes.  Operations are batches of BATCH_ITEMS upserts over a fixed id
 * space (so new items and updates mix) and single deletes, on two exact
 * galleries (l2 and ip models, so stored vectors come back bit for bit):
 * a Flat one, which is read from the store at every start and keeps no
 * snapshot, and an IVF1,Flat one, which keeps snapshots.
 *
 * After each restart: every acknowledged item is there with its exact
 * vector and label, deleted ones are 404, counts match, and fixed queries
 * give the reference's results.  The one request in flight when the
 * daemon died was either applied whole or not at all; if applied, the
 * reference gets it too.
 *
 * Then the snapshot files are damaged between a clean stop (SIGTERM
 * writes them) and a start: truncated, emptied, overwritten with garbage,
 * deleted, replaced by an older snapshot under its own name, and an older
 * snapshot's bytes under the newest name.  Results must still equal the
 * reference's.
 *
 * COMPATD_LONG=1: ROUNDS_LONG kill rounds over N_IDS_LONG ids per gallery.
 */
#include <dirent.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check.h"
#include "daemon.h"

#define DIM 16
#define BATCH_ITEMS 200
#define N_IDS_LONG 1000
#define N_IDS_SHORT 500
#define ROUNDS_LONG 20
#define ROUNDS_SHORT 6
#define KILL_MIN_MS 20
#define KILL_SPAN_MS 400    /* kills land KILL_MIN_MS + [0, KILL_SPAN_MS) in */
#define SNAPPY_MIN_MS 1100  /* ... or this + [0, KILL_SPAN_MS) with snapshots */
#define MAX_OPS_PER_ROUND 2000
#define DELETE_SHARE 5      /* one op in DELETE_SHARE is a delete */
#define N_QUERIES 20
#define K 10
#define SNAPSHOTTED 1   /* galleries whose index keeps snapshots */

typedef struct gallery_state {
    const char *name;
    const char *model;
    const char *metric;
    const char *index;  /* Flat: read from the store, no snapshot */
    size_t n_ids;
    bool *live;         /* acknowledged and not deleted */
    float *vec;         /* n_ids * DIM: the last acknowledged vector */
    unsigned *label;    /* its label is "L<label>" */
} gallery_state;

typedef struct op {
    size_t g;           /* gallery */
    bool is_delete;
    size_t n;           /* items (1 for a delete) */
    size_t ids[BATCH_ITEMS];
    float vec[BATCH_ITEMS * DIM];
    unsigned serial;    /* labels of its items: "L<serial>" */
} op;

typedef struct world {
    td_daemon *victim, *ref;
    td_http *hv, *hr;
    gallery_state g[2];
    size_t n_galleries;
    float queries[N_QUERIES * DIM];
    unsigned next_serial;
    td_rng rng;
} world;

/* ---- operations ------------------------------------------------------ */

static void make_op(world *w, op *o)
{
    o->g = (size_t)(td_rng_next(&w->rng) % w->n_galleries);
    gallery_state *gs = &w->g[o->g];
    o->serial = w->next_serial++;
    o->is_delete = td_rng_next(&w->rng) % DELETE_SHARE == 0;
    if (o->is_delete) {
        /* A live id if there is one (a try or two suffices mostly). */
        for (int t = 0; t < 64; t++) {
            o->ids[0] = (size_t)(td_rng_next(&w->rng) % gs->n_ids);
            if (gs->live[o->ids[0]])
                break;
        }
        o->n = 1;
        if (gs->live[o->ids[0]])
            return;
        o->is_delete = false;   /* nothing live: upsert instead */
    }
    /* BATCH_ITEMS distinct ids: a partial shuffle of the id space. */
    size_t *perm = malloc(gs->n_ids * sizeof *perm);
    REQUIRE(perm != NULL);
    for (size_t i = 0; i < gs->n_ids; i++)
        perm[i] = i;
    o->n = BATCH_ITEMS < gs->n_ids ? BATCH_ITEMS : gs->n_ids;
    for (size_t i = 0; i < o->n; i++) {
        size_t j = i + (size_t)(td_rng_next(&w->rng) % (gs->n_ids - i));
        size_t t = perm[i];
        perm[i] = perm[j];
        perm[j] = t;
        o->ids[i] = perm[i];
        for (size_t d = 0; d < DIM; d++)
            o->vec[i * DIM + d] = (float)td_rng_gauss(&w->rng);
    }
    free(perm);
}

static void append(char **s, size_t *len, size_t *cap, const char *f, ...)
    __attribute__((format(printf, 4, 5)));
static void append(char **s, size_t *len, size_t *cap, const char *f, ...)
{
    for (;;) {
        va_list ap;
        va_start(ap, f);
        int n = vsnprintf(*s + *len, *cap - *len, f, ap);
        va_end(ap);
        REQUIRE(n >= 0);
        if ((size_t)n < *cap - *len) {
            *len += (size_t)n;
            return;
        }
        *cap = (*cap + (size_t)n + 1) * 2;
        *s = realloc(*s, *cap);
        REQUIRE(*s != NULL);
    }
}

/* Sends o; returns the HTTP status (0: the request failed in transport). */
static long send_op(td_http *h, const gallery_state *gs, const op *o, td_reply *r)
{
    char path[160];
    if (o->is_delete) {
        snprintf(path, sizeof path, "/v1/galleries/%s/items/k%zu", gs->name, o->ids[0]);
        return td_http_json(h, "DELETE", path, NULL, r);
    }
    size_t cap = 4096, len = 0;
    char *body = malloc(cap);
    REQUIRE(body != NULL);
    append(&body, &len, &cap, "{\"items\":[");
    for (size_t i = 0; i < o->n; i++) {
        const float *v = o->vec + i * DIM;
        append(&body, &len, &cap, "%s{\"id\":\"k%zu\",\"label\":\"L%u\",", i ? "," : "",
               o->ids[i], o->serial);
        if (i % 8 == 0) {   /* some as JSON numbers, printed exactly */
            append(&body, &len, &cap, "\"vector\":[");
            for (size_t d = 0; d < DIM; d++)
                append(&body, &len, &cap, "%s%.9g", d ? "," : "", v[d]);
            append(&body, &len, &cap, "]}");
        } else {
            char *b = td_b64_floats(v, DIM);
            REQUIRE(b != NULL);
            append(&body, &len, &cap, "\"vector_b64\":\"%s\"}", b);
            free(b);
        }
    }
    append(&body, &len, &cap, "]}");
    snprintf(path, sizeof path, "/v1/galleries/%s/items", gs->name);
    long status = td_http_json(h, "POST", path, body, r);
    free(body);
    return status;
}

static void apply_op(gallery_state *gs, const op *o)
{
    for (size_t i = 0; i < o->n; i++) {
        size_t id = o->ids[i];
        if (o->is_delete) {
            gs->live[id] = false;
        } else {
            gs->live[id] = true;
            memcpy(gs->vec + id * DIM, o->vec + i * DIM, DIM * sizeof(float));
            gs->label[id] = o->serial;
        }
    }
}

/* The reference gets every operation the victim acknowledged. */
static void send_to_ref(world *w, const op *o)
{
    td_reply r;
    long status = send_op(w->hr, &w->g[o->g], o, &r);
    if (status != (o->is_delete ? 204 : 200))
        fprintf(stderr, "reference refused op %u: %ld %s%s\n", o->serial, status, r.body, r.error);
    CHECK_EQ(status, o->is_delete ? 204 : 200);
    td_reply_finish(&r);
}

/* Sends o to both daemons; no daemon is expected to die. */
static void send_both(world *w, const op *o)
{
    td_reply r;
    long status = send_op(w->hv, &w->g[o->g], o, &r);
    CHECK_EQ(status, o->is_delete ? 204 : 200);
    td_reply_finish(&r);
    if (status == (o->is_delete ? 204 : 200)) {
        apply_op(&w->g[o->g], o);
        send_to_ref(w, o);
    }
}

/* ---- checks ---------------------------------------------------------- */

/* What the daemon holds for an item, compared with an expectation. */
enum { ITEM_ABSENT, ITEM_MATCHES, ITEM_DIFFERS };

/* GETs item k<id> with its vectors: absent (404), matching vec and
 * "L<label>" bit for bit, or different.  Any other status sets *failed. */
static int item_state(td_http *h, const gallery_state *gs, size_t id, const float *vec,
                      unsigned label, bool *failed)
{
    char path[160];
    td_reply r;
    snprintf(path, sizeof path, "/v1/galleries/%s/items/k%zu?vectors=true", gs->name, id);
    td_http_json(h, "GET", path, NULL, &r);
    int state = ITEM_DIFFERS;
    if (r.status == 404) {
        state = ITEM_ABSENT;
    } else if (r.status == 200) {
        char key[96], want_label[32];
        snprintf(key, sizeof key, "vectors.%s", gs->model);
        snprintf(want_label, sizeof want_label, "L%u", label);
        const cJSON *v = td_json_at(r.json, key);
        const char *got_label = td_json_str(r.json, "label");
        bool same = cJSON_GetArraySize(v) == DIM && got_label && strcmp(got_label, want_label) == 0;
        for (int d = 0; same && d < DIM; d++) {
            float f = (float)cJSON_GetArrayItem(v, d)->valuedouble;
            same = memcmp(&f, &vec[d], sizeof f) == 0;
        }
        state = same ? ITEM_MATCHES : ITEM_DIFFERS;
    } else {
        fprintf(stderr, "GET %s: %ld %s%s\n", path, r.status, r.body, r.error);
        *failed = true;
    }
    td_reply_finish(&r);
    return state;
}

static size_t live_count(const gallery_state *gs)
{
    size_t n = 0;
    for (size_t i = 0; i < gs->n_ids; i++)
        n += gs->live[i];
    return n;
}

/*
 * After a restart: decides whether the request in flight when the victim
 * died was applied, checking that it was all or nothing, and if so
 * applies it to the expected state and to the reference.  Returns 1 when
 * applied, 0 when not.
 */
static int resolve_in_flight(world *w, const op *o)
{
    gallery_state *gs = &w->g[o->g];
    size_t as_new = 0, as_old = 0, other = 0;
    bool failed = false;
    for (size_t i = 0; i < o->n; i++) {
        size_t id = o->ids[i];
        int s;
        if (o->is_delete) {
            s = item_state(w->hv, gs, id, gs->vec + id * DIM, gs->label[id], &failed);
            as_new += s == ITEM_ABSENT;
            as_old += s == ITEM_MATCHES;
            other += s == ITEM_DIFFERS;
            continue;
        }
        s = item_state(w->hv, gs, id, o->vec + i * DIM, o->serial, &failed);
        if (s == ITEM_MATCHES) {
            as_new++;
        } else if (!gs->live[id]) {
            as_old += s == ITEM_ABSENT;
            other += s != ITEM_ABSENT;
        } else {
            s = item_state(w->hv, gs, id, gs->vec + id * DIM, gs->label[id], &failed);
            as_old += s == ITEM_MATCHES;
            other += s != ITEM_MATCHES;
        }
    }
    if (other || (as_new && as_old) || failed)
        fprintf(stderr, "in-flight %s of %zu items (op %u): %zu applied, %zu not, %zu neither\n",
                o->is_delete ? "delete" : "upsert", o->n, o->serial, as_new, as_old, other);
    CHECK_EQ(other, 0);
    CHECK(as_new == 0 || as_old == 0);
    CHECK(!failed);
    if (as_new == o->n && o->n > 0) {
        apply_op(gs, o);
        send_to_ref(w, o);
        return 1;
    }
    return 0;
}

/* Victim and reference answer the fixed queries alike. */
static int compare_searches(world *w, const gallery_state *gs)
{
    char path[128];
    int bad = 0;
    snprintf(path, sizeof path, "/v1/galleries/%s/search", gs->name);
    for (size_t qi = 0; qi < N_QUERIES; qi++) {
        char *b = td_b64_floats(w->queries + qi * DIM, DIM);
        REQUIRE(b != NULL);
        td_reply rv, rr;
        td_http_jsonf(w->hv, &rv, "POST", path, "{\"k\":%d,\"vector_b64\":\"%s\"}", K, b);
        td_http_jsonf(w->hr, &rr, "POST", path, "{\"k\":%d,\"vector_b64\":\"%s\"}", K, b);
        free(b);
        CHECK_EQ(rv.status, 200);
        CHECK_EQ(rr.status, 200);
        const cJSON *hv = td_json_at(rv.json, "results.0"), *hr = td_json_at(rr.json, "results.0");
        int n = cJSON_GetArraySize(hv);
        size_t live = live_count(gs);
        bool same = n == cJSON_GetArraySize(hr) && (size_t)n == (live < K ? live : K);
        /* Rank by rank the same score; the same id too, unless the
         * reference has the victim's id at a tied score elsewhere. */
        for (int p = 0; same && p < n; p++) {
            const cJSON *a = cJSON_GetArrayItem(hv, p), *c = cJSON_GetArrayItem(hr, p);
            double sc = td_json_num(c, "score"), tol = 1e-6 * fmax(1, fabs(sc));
            same = fabs(td_json_num(a, "score") - sc) <= tol;
            if (same && strcmp(td_json_str(a, "id"), td_json_str(c, "id")) != 0) {
                same = false;
                for (int q = 0; q < n && !same; q++) {
                    const cJSON *e = cJSON_GetArrayItem(hr, q);
                    same = strcmp(td_json_str(e, "id"), td_json_str(a, "id")) == 0 &&
                           fabs(td_json_num(e, "score") - sc) <= tol;
                }
            }
        }
        if (!same) {
            if (!bad)
                fprintf(stderr, "%s query %zu differs:\n victim    %s\n reference %s\n", gs->name,
                        qi, rv.body, rr.body);
            bad++;
        }
        td_reply_finish(&rv);
        td_reply_finish(&rr);
    }
    return bad;
}

/* The victim holds exactly the expected state and searches like the
 * reference. */
static void verify(world *w, const char *when)
{
    for (size_t g = 0; g < w->n_galleries; g++) {
        gallery_state *gs = &w->g[g];
        size_t missing = 0, wrong = 0, undead = 0;
        bool failed = false;
        CHECK_EQ(td_gallery_count(w->hv, gs->name), live_count(gs));
        CHECK_EQ(td_gallery_count(w->hr, gs->name), live_count(gs));
        for (size_t id = 0; id < gs->n_ids; id++) {
            int s = item_state(w->hv, gs, id, gs->vec + id * DIM, gs->label[id], &failed);
            if (gs->live[id]) {
                missing += s == ITEM_ABSENT;
                wrong += s == ITEM_DIFFERS;
            } else {
                undead += s != ITEM_ABSENT;
            }
        }
        if (missing || wrong || undead || failed)
            fprintf(stderr, "%s, gallery %s: %zu acknowledged items missing, %zu with another "
                    "vector or label, %zu deleted or never written but present\n", when,
                    gs->name, missing, wrong, undead);
        CHECK_EQ(missing, 0);
        CHECK_EQ(wrong, 0);
        CHECK_EQ(undead, 0);
        CHECK(!failed);
        int bad = compare_searches(w, gs);
        if (bad)
            fprintf(stderr, "%s, gallery %s: %d of %d queries differ from the reference\n", when,
                    gs->name, bad, N_QUERIES);
        CHECK_EQ(bad, 0);
    }
}

/* ---- set-up ---------------------------------------------------------- */

static void setup_daemon(td_http *h, const world *w)
{
    for (size_t g = 0; g < w->n_galleries; g++) {
        td_reply r;
        td_http_jsonf(h, &r, "POST", "/v1/models", "{\"name\":\"%s\",\"dim\":%d,\"metric\":\"%s\"}",
                      w->g[g].model, DIM, w->g[g].metric);
        CHECK_EQ(r.status, 201);
        td_reply_finish(&r);
        td_http_jsonf(h, &r, "POST", "/v1/galleries",
                      "{\"name\":\"%s\",\"model\":\"%s\",\"index\":\"%s\"}",
                      w->g[g].name, w->g[g].model, w->g[g].index);
        CHECK_EQ(r.status, 201);
        td_reply_finish(&r);
    }
}

/* Victim runs alternate between the default snapshot period (none in
 * a round's time) and one second. */
static const char *const *victim_args(int run)
{
    static const char *const quiet[] = {"--log-level", "warn", NULL};
    static const char *const snappy[] = {"--log-level", "warn", "--snapshot-interval", "1", NULL};
    return run % 2 ? snappy : quiet;
}

/* ---- kill -9 rounds -------------------------------------------------- */

/* The snapshot files (*.faiss) of a data directory; *n of them, each
 * name malloc'd, the array too. */
static char **snapshot_files(const char *index_dir, size_t *n)
{
    char **names = NULL;
    *n = 0;
    DIR *dir = opendir(index_dir);
    if (!dir)
        return NULL;
    struct dirent *e;
    while ((e = readdir(dir)) != NULL) {
        size_t len = strlen(e->d_name);
        if (len < 6 || strcmp(e->d_name + len - 6, ".faiss") != 0)
            continue;
        names = realloc(names, (*n + 1) * sizeof *names);
        REQUIRE(names != NULL);
        names[(*n)++] = strdup(e->d_name);
    }
    closedir(dir);
    return names;
}

static void free_names(char **names, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(names[i]);
    free(names);
}


static void kill_rounds(world *w, int rounds)
{
    int in_flight_applied = 0, in_flight_lost = 0, snapshotted_rounds = 0;
    size_t acked = 0;
    char index_dir[4096];
    snprintf(index_dir, sizeof index_dir, "%s/index", td_daemon_data_dir(w->victim));
    double t0 = td_now();
    for (int round = 0; round < rounds; round++) {
        op *o = malloc(sizeof *o);
        REQUIRE(o != NULL);
        /* This run was started with victim_args(round); with snapshots
         * every second it lives long enough for one or two. */
        bool snappy = round % 2 == 1;
        unsigned delay = (snappy ? SNAPPY_MIN_MS : KILL_MIN_MS) +
                         (unsigned)(td_rng_next(&w->rng) % KILL_SPAN_MS);
        REQUIRE(td_daemon_kill_later(w->victim, delay));
        bool in_flight = false;
        char why[256] = "";
        for (int n = 0; n < MAX_OPS_PER_ROUND; n++) {
            make_op(w, o);
            td_reply r;
            long status = send_op(w->hv, &w->g[o->g], o, &r);
            if (status == (o->is_delete ? 204 : 200)) {
                apply_op(&w->g[o->g], o);
                send_to_ref(w, o);
                acked++;
            } else if (status == 0) {
                in_flight = true;
                snprintf(why, sizeof why, "%s", r.error);
            } else {
                fprintf(stderr, "round %d: op %u got %ld: %s\n", round, o->serial, status, r.body);
                CHECK(!"unexpected status while the victim was alive");
            }
            td_reply_finish(&r);
            if (status != (o->is_delete ? 204 : 200))
                break;
        }
        CHECK_EQ(td_daemon_kill(w->victim), 0);
        /* Only periodic snapshots write files before a clean stop. */
        size_t n_snap = 0;
        char **snaps = snapshot_files(index_dir, &n_snap); /* sets n_snap */
        free_names(snaps, n_snap);
        snapshotted_rounds += snappy && n_snap > 0;
        REQUIRE(td_daemon_start(w->victim, victim_args(round + 1)));
        int applied = in_flight ? resolve_in_flight(w, o) : 0;
        in_flight_applied += applied;
        in_flight_lost += in_flight && !applied;
        char when[64];
        snprintf(when, sizeof when, "after kill %d (%u ms)", round + 1, delay);
        verify(w, when);
        if (getenv("COMPATD_VERBOSE"))
            fprintf(stderr, "%s: in flight %s (%s)\n", when,
                    !in_flight ? "nothing" : applied ? "applied" : "lost", why);
        free(o);
    }
    fprintf(stderr, "%d kill -9 rounds, %zu acknowledged ops, in-flight requests: %d applied, "
            "%d not; periodic snapshots before %d kills; %.1f s\n", rounds, acked,
            in_flight_applied, in_flight_lost, snapshotted_rounds, td_now() - t0);
    if (rounds >= 2)
        CHECK(snapshotted_rounds > 0);
}

/* ---- damaged snapshots ----------------------------------------------- */

enum damage {
    DAMAGE_TRUNCATE,    /* cut to half */
    DAMAGE_EMPTY,       /* zero bytes */
    DAMAGE_GARBAGE,     /* same size, random bytes */
    DAMAGE_DELETE,      /* gone */
    DAMAGE_OLDER,       /* an older snapshot back under its own name */
    DAMAGE_OLDER_BYTES, /* an older snapshot's bytes under the newest name */
};

static const char *const damage_names[] = {
    "truncated", "emptied", "overwritten with garbage", "deleted",
    "replaced by older ones", "holding older bytes under the newest name",
};

/* The "g<G>-m<M>-" prefix of a snapshot name (what it is a snapshot of). */
static size_t snapshot_key_len(const char *name)
{
    const char *s = strstr(name, "-s");
    return s ? (size_t)(s - name) + 1 : strlen(name);
}

static void damage_file(const char *path, enum damage how, td_rng *rng)
{
    struct stat st;
    REQUIRE(stat(path, &st) == 0);
    if (how == DAMAGE_TRUNCATE || how == DAMAGE_EMPTY) {
        REQUIRE(truncate(path, how == DAMAGE_EMPTY ? 0 : st.st_size / 2) == 0);
    } else if (how == DAMAGE_GARBAGE) {
        FILE *f = fopen(path, "r+b");
        REQUIRE(f != NULL);
        for (off_t i = 0; i < st.st_size; i++)
            fputc((int)(td_rng_next(rng) & 0xff), f);
        REQUIRE(fclose(f) == 0);
    } else if (how == DAMAGE_DELETE) {
        REQUIRE(unlink(path) == 0);
    }
}

/* A few operations on both daemons, including deletes, so that the
 * store moves past any snapshot taken before. */
static void more_ops(world *w, int n)
{
    op *o = malloc(sizeof *o);
    REQUIRE(o != NULL);
    for (int i = 0; i < n; i++) {
        make_op(w, o);
        send_both(w, o);
    }
    /* A delete in every gallery, so that counts differ from before. */
    for (size_t g = 0; g < w->n_galleries; g++) {
        for (size_t id = 0; id < w->g[g].n_ids; id++) {
            if (!w->g[g].live[id])
                continue;
            o->g = g;
            o->is_delete = true;
            o->n = 1;
            o->ids[0] = id;
            o->serial = w->next_serial++;
            send_both(w, o);
            break;
        }
    }
    free(o);
}

/*
 * Deletes items until no gallery has as many as it had then.  A snapshot's
 * bytes under a newer name can only be told from the newer snapshot by
 * the number of vectors (the seq is in the name only), so the test makes
 * sure that differs.
 */
static void differ_in_count(world *w, const size_t *then)
{
    op *o = malloc(sizeof *o);
    REQUIRE(o != NULL);
    for (size_t g = 0; g < w->n_galleries; g++) {
        for (size_t id = 0; id < w->g[g].n_ids && live_count(&w->g[g]) == then[g]; id++) {
            if (!w->g[g].live[id])
                continue;
            o->g = g;
            o->is_delete = true;
            o->n = 1;
            o->ids[0] = id;
            o->serial = w->next_serial++;
            send_both(w, o);
        }
    }
    free(o);
}

static void damaged_snapshots(world *w)
{
    char index_dir[4096], old_dir[4096];
    snprintf(index_dir, sizeof index_dir, "%s/index", td_daemon_data_dir(w->victim));
    snprintf(old_dir, sizeof old_dir, "%s/old-snapshots", td_daemon_dir(w->victim));
    REQUIRE(mkdir(old_dir, 0755) == 0);

    /* The older snapshots: what a clean stop writes now. */
    more_ops(w, 5);
    CHECK_EQ(td_daemon_stop(w->victim), 0);
    size_t n_old = 0;
    char **old = snapshot_files(index_dir, &n_old);
    CHECK(n_old >= SNAPSHOTTED);
    for (size_t i = 0; i < n_old; i++) {
        char from[8192], to[8192];
        snprintf(from, sizeof from, "%s/%s", index_dir, old[i]);
        snprintf(to, sizeof to, "%s/%s", old_dir, old[i]);
        REQUIRE(td_copy_file(from, to));
    }
    size_t old_live[2];
    for (size_t g = 0; g < w->n_galleries; g++)
        old_live[g] = live_count(&w->g[g]);
    REQUIRE(td_daemon_start(w->victim, victim_args(0)));
    verify(w, "after a clean restart");

    for (int how = DAMAGE_TRUNCATE; how <= DAMAGE_OLDER_BYTES; how++) {
        more_ops(w, 5);
        if (how == DAMAGE_OLDER_BYTES)
            differ_in_count(w, old_live);
        CHECK_EQ(td_daemon_stop(w->victim), 0);
        size_t n = 0;
        char **names = snapshot_files(index_dir, &n);
        CHECK(n >= SNAPSHOTTED);
        for (size_t i = 0; i < n; i++) {
            char path[8192];
            snprintf(path, sizeof path, "%s/%s", index_dir, names[i]);
            if (how == DAMAGE_OLDER) {
                REQUIRE(unlink(path) == 0);
                continue;
            }
            if (how == DAMAGE_OLDER_BYTES) {
                /* The older file of the same (gallery, model). */
                for (size_t j = 0; j < n_old; j++) {
                    size_t key = snapshot_key_len(names[i]);
                    if (strncmp(old[j], names[i], key) == 0 && snapshot_key_len(old[j]) == key) {
                        char from[8192];
                        snprintf(from, sizeof from, "%s/%s", old_dir, old[j]);
                        REQUIRE(td_copy_file(from, path));
                    }
                }
                continue;
            }
            damage_file(path, (enum damage)how, &w->rng);
        }
        if (how == DAMAGE_OLDER) {
            for (size_t j = 0; j < n_old; j++) {
                char from[8192], to[8192];
                snprintf(from, sizeof from, "%s/%s", old_dir, old[j]);
                snprintf(to, sizeof to, "%s/%s", index_dir, old[j]);
                REQUIRE(td_copy_file(from, to));
            }
        }
        free_names(names, n);
        REQUIRE(td_daemon_start(w->victim, victim_args(how)));
        char when[96];
        snprintf(when, sizeof when, "restart, snapshots %s", damage_names[how]);
        verify(w, when);
        fprintf(stderr, "%s: checked (%d failed checks so far)\n", when, check_failures);
    }
    free_names(old, n_old);
}

int main(void)
{
    bool long_run = td_long_tests();
    size_t n_ids = long_run ? N_IDS_LONG : N_IDS_SHORT;
    int rounds = long_run ? ROUNDS_LONG : ROUNDS_SHORT;
    world *w = calloc(1, sizeof *w);
    REQUIRE(w != NULL);
    w->rng.state = td_seed(7);
    w->n_galleries = 2;
    w->g[0] = (gallery_state){.name = "dur-l2", .model = "m-l2", .metric = "l2",
                              .index = "Flat"};
    w->g[1] = (gallery_state){.name = "dur-ip", .model = "m-ip", .metric = "ip",
                              .index = "IVF1,Flat"};
    for (size_t g = 0; g < w->n_galleries; g++) {
        w->g[g].n_ids = n_ids;
        w->g[g].live = calloc(n_ids, sizeof *w->g[g].live);
        w->g[g].vec = calloc(n_ids * DIM, sizeof *w->g[g].vec);
        w->g[g].label = calloc(n_ids, sizeof *w->g[g].label);
        REQUIRE(w->g[g].live && w->g[g].vec && w->g[g].label);
    }
    for (size_t i = 0; i < N_QUERIES * DIM; i++)
        w->queries[i] = (float)td_rng_gauss(&w->rng);

    w->victim = td_daemon_create();
    w->ref = td_daemon_create();
    REQUIRE(w->victim && w->ref);
    REQUIRE(td_daemon_start(w->victim, victim_args(0)));
    static const char *const ref_args[] = {"--log-level", "warn", NULL};
    REQUIRE(td_daemon_start(w->ref, ref_args));
    w->hv = td_http_create(w->victim);
    w->hr = td_http_create(w->ref);
    REQUIRE(w->hv && w->hr);
    setup_daemon(w->hv, w);
    setup_daemon(w->hr, w);

    kill_rounds(w, rounds);
    damaged_snapshots(w);

    td_http_destroy(w->hv);
    td_http_destroy(w->hr);
    CHECK_EQ(td_daemon_stop(w->victim), 0);
    CHECK_EQ(td_daemon_stop(w->ref), 0);
    td_daemon_destroy(w->victim);
    td_daemon_destroy(w->ref);
    for (size_t g = 0; g < w->n_galleries; g++) {
        free(w->g[g].live);
        free(w->g[g].vec);
        free(w->g[g].label);
    }
    free(w);
    return check_exit();
}
