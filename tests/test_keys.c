/*
 * test_keys.c - API keys in core: keys.c (making, hashing, checking key
 * text) over the store's api_keys table (schema 3).  Cases are tables
 * where they can be; SHA-256 is checked against the FIPS 180-2 test
 * vectors, not against itself.  Everything happens in a fresh temporary
 * directory, removed at the end.
 */
#include <dirent.h>
#include <sqlite3.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "keys.h"
#include "old_schema.h"
#include "store.h"

static char tmpdir[64];
static char db_path[128];

static cd_store *open_ok(void)
{
    cd_store *st = NULL;
    cd_error err = {0};
    CHECK_OK(cd_store_open(db_path, &st, &err), &err);
    REQUIRE(st != NULL);
    return st;
}

static void hex(const unsigned char *b, size_t n, char *out)
{
    for (size_t i = 0; i < n; i++)
        sprintf(out + 2 * i, "%02x", b[i]);
}

static void test_text_and_hash(void)
{
    static const struct {
        const char *text;
        bool valid;
    } texts[] = {
        {"0123456789abcdef0123456789abcdef", true},         /* 32: the least */
        {"0123456789abcdef0123456789abcde", false},         /* 31 */
        {"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._~+/=-", true},
        {"0123456789abcdef0123456789abcdef ", false},       /* space */
        {"0123456789abcdef0123456789abcdef\n", false},
        {"0123456789abcdef0123456789abcde\xc3\xa9", false}, /* not ASCII */
        {"0123456789abcdef0123456789abcdef:", false},
        {"", false},
    };
    for (size_t i = 0; i < sizeof texts / sizeof texts[0]; i++) {
        if (cd_key_text_valid(texts[i].text) != texts[i].valid)
            fprintf(stderr, "text case %zu\n", i);
        CHECK_EQ(cd_key_text_valid(texts[i].text), texts[i].valid);
    }
    CHECK(!cd_key_text_valid(NULL));
    char longest[CD_KEY_MAX + 2];
    memset(longest, 'k', sizeof longest);
    longest[CD_KEY_MAX] = '\0';
    CHECK(cd_key_text_valid(longest));
    longest[CD_KEY_MAX] = 'k';
    longest[CD_KEY_MAX + 1] = '\0';
    CHECK(!cd_key_text_valid(longest));

    /* FIPS 180-2 SHA-256 test vectors. */
    static const struct {
        const char *text, *sha256;
    } vectors[] = {
        {"abc", "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"},
        {"", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"},
        {"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq",
         "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"},
    };
    for (size_t i = 0; i < sizeof vectors / sizeof vectors[0]; i++) {
        unsigned char h[CD_KEY_HASH_SIZE];
        char text[2 * CD_KEY_HASH_SIZE + 1];
        cd_key_hash(vectors[i].text, h);
        hex(h, sizeof h, text);
        CHECK_STREQ(text, vectors[i].sha256);
    }

    static const struct {
        const char *name;
        bool ok;
        cd_scope scope;
    } scopes[] = {
        {"read", true, CD_SCOPE_READ}, {"write", true, CD_SCOPE_WRITE},
        {"admin", true, CD_SCOPE_ADMIN}, {"none", false, CD_SCOPE_NONE},
        {"Admin", false, CD_SCOPE_NONE}, {"", false, CD_SCOPE_NONE},
    };
    for (size_t i = 0; i < sizeof scopes / sizeof scopes[0]; i++) {
        cd_scope s = CD_SCOPE_NONE;
        CHECK_EQ(cd_scope_parse(scopes[i].name, &s), scopes[i].ok);
        if (scopes[i].ok) {
            CHECK_EQ(s, scopes[i].scope);
            CHECK_STREQ(cd_scope_name(s), scopes[i].name);
        }
    }
    CHECK(!cd_scope_parse(NULL, &(cd_scope){0}));
    /* Ordered: a larger scope includes the smaller ones. */
    CHECK(CD_SCOPE_NONE < CD_SCOPE_READ && CD_SCOPE_READ < CD_SCOPE_WRITE &&
          CD_SCOPE_WRITE < CD_SCOPE_ADMIN);
}

static void test_keys(void)
{
    cd_store *st = open_ok();
    cd_error err = {0};
    bool any = true;
    CHECK_OK(cd_store_keys_exist(st, &any, &err), &err);
    CHECK(!any);

    /* Made keys: cdk_ and 43 base64url characters, stored as a hash. */
    char *key = NULL, *key2 = NULL;
    cd_api_key k, k2;
    CHECK_OK(cd_keys_create(st, "ci", CD_SCOPE_WRITE, &key, &k, &err), &err);
    REQUIRE(key != NULL);
    CHECK_EQ(strlen(key), 47);
    CHECK_EQ(strncmp(key, CD_KEY_TEXT_PREFIX, 4), 0);
    CHECK_EQ(strspn(key + 4, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"),
             43);
    CHECK(cd_key_text_valid(key));
    CHECK(k.id > 0);
    CHECK_STREQ(k.name, "ci");
    CHECK_EQ(k.scope, CD_SCOPE_WRITE);
    CHECK_EQ(strlen(k.prefix), CD_KEY_PREFIX_LEN);
    CHECK_EQ(strncmp(k.prefix, key, CD_KEY_PREFIX_LEN), 0);
    CHECK_EQ(strlen(k.created_at), 20);
    CHECK_STREQ(k.revoked_at, "");
    unsigned char h[CD_KEY_HASH_SIZE];
    cd_key_hash(key, h);
    CHECK_EQ(memcmp(h, k.hash, sizeof h), 0);
    CHECK_OK(cd_store_keys_exist(st, &any, &err), &err);
    CHECK(any);
    CHECK_OK(cd_keys_create(st, "ci-2", CD_SCOPE_READ, &key2, &k2, &err), &err);
    REQUIRE(key2 != NULL);
    CHECK(strcmp(key, key2) != 0);
    CHECK(k2.id > k.id);

    /* The database holds no key text. */
    sqlite3 *db;
    REQUIRE(sqlite3_open_v2(db_path, &db, SQLITE_OPEN_READONLY, NULL) == SQLITE_OK);
    sqlite3_stmt *s;
    REQUIRE(sqlite3_prepare_v2(db, "SELECT count(*) FROM api_keys WHERE instr(name || scope"
                               " || prefix || created_at || coalesce(revoked_at, ''), ?1) > 0"
                               " OR instr(hash, ?1) > 0", -1, &s, NULL) == SQLITE_OK);
    sqlite3_bind_text(s, 1, key + 8, -1, SQLITE_STATIC);
    CHECK_EQ(sqlite3_step(s), SQLITE_ROW);
    CHECK_EQ(sqlite3_column_int(s, 0), 0);
    sqlite3_finalize(s);
    CHECK_EQ(sqlite3_close(db), SQLITE_OK);

    /* Checking. */
    static const char *const unknown[] = {
        "cdk_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", "short", "", NULL,
    };
    cd_key_status status;
    cd_api_key got;
    CHECK_OK(cd_keys_verify(st, key, &status, &got, &err), &err);
    CHECK_EQ(status, CD_KEY_ACTIVE);
    CHECK_EQ(got.id, k.id);
    CHECK_EQ(got.scope, CD_SCOPE_WRITE);
    for (size_t i = 0; i < sizeof unknown / sizeof unknown[0]; i++) {
        got.id = 99;
        CHECK_OK(cd_keys_verify(st, unknown[i], &status, &got, &err), &err);
        CHECK_EQ(status, CD_KEY_UNKNOWN);
        CHECK_EQ(got.id, 0);
    }
    char almost[64];
    snprintf(almost, sizeof almost, "%s", key);
    almost[46] = almost[46] == 'A' ? 'B' : 'A';
    CHECK_OK(cd_keys_verify(st, almost, &status, NULL, &err), &err);
    CHECK_EQ(status, CD_KEY_UNKNOWN);

    /* Adding key text chosen elsewhere, and what is refused. */
    const char *given = "given-key-0123456789abcdefghijklmnopqrstuvwxyz";
    CHECK_OK(cd_keys_add(st, "given", CD_SCOPE_ADMIN, given, &got, &err), &err);
    CHECK_STREQ(got.prefix, "given-ke");
    CHECK_OK(cd_keys_verify(st, given, &status, &got, &err), &err);
    CHECK_EQ(status, CD_KEY_ACTIVE);
    CHECK_EQ(got.scope, CD_SCOPE_ADMIN);
    static const struct {
        const char *name;
        cd_scope scope;
        const char *text;
        cd_err expect;
    } refused[] = {
        {"ci", CD_SCOPE_READ, "another-key-0123456789abcdefghijklmnopqrstuvw", CD_EEXISTS},
        {"other", CD_SCOPE_READ, "given-key-0123456789abcdefghijklmnopqrstuvwxyz", CD_ECONFLICT},
        {"ci", CD_SCOPE_READ, "given-key-0123456789abcdefghijklmnopqrstuvwxyz", CD_EEXISTS},
        {"other", CD_SCOPE_READ, "too-short", CD_EINVAL},
        {"bad name", CD_SCOPE_READ, "another-key-0123456789abcdefghijklmnopqrstuvw", CD_EINVAL},
        {"", CD_SCOPE_READ, "another-key-0123456789abcdefghijklmnopqrstuvw", CD_EINVAL},
        {"other", CD_SCOPE_NONE, "another-key-0123456789abcdefghijklmnopqrstuvw", CD_EINVAL},
        {"other", (cd_scope)9, "another-key-0123456789abcdefghijklmnopqrstuvw", CD_EINVAL},
    };
    for (size_t i = 0; i < sizeof refused / sizeof refused[0]; i++) {
        memset(&got, 0xff, sizeof got);
        cd_err rc = cd_keys_add(st, refused[i].name, refused[i].scope, refused[i].text, &got,
                                &err);
        if (rc != refused[i].expect)
            fprintf(stderr, "refused case %zu: %d %s\n", i, rc, err.message);
        CHECK_EQ(rc, refused[i].expect);
        CHECK_EQ(got.id, 0);
    }
    char *none = (char *)1;
    CHECK_EQ(cd_keys_create(st, "ci", CD_SCOPE_READ, &none, &got, &err), CD_EEXISTS);
    CHECK(none == NULL);
    CHECK(strstr(err.message, "already exists") != NULL);

    /* A key named with digits is found by name before by id. */
    char *digits = NULL;
    CHECK_OK(cd_keys_create(st, "1", CD_SCOPE_READ, &digits, &got, &err), &err);
    int64_t digits_id = got.id;
    CHECK(digits_id != 1);

    /* Listing. */
    cd_api_key *all = NULL;
    size_t n = 0;
    CHECK_OK(cd_store_key_list(st, &all, &n, &err), &err);
    CHECK_EQ(n, 4);
    for (size_t i = 1; i < n; i++)
        CHECK(all[i - 1].id < all[i].id);
    CHECK_STREQ(all[0].name, "ci");
    free(all);

    /* Revoking: by name, by id, twice, unknown. */
    bool was = true;
    CHECK_OK(cd_keys_revoke(st, "1", &got, &was, &err), &err);
    CHECK_EQ(got.id, digits_id);
    CHECK(!was);
    CHECK_EQ(strlen(got.revoked_at), 20);
    CHECK_OK(cd_keys_verify(st, digits, &status, NULL, &err), &err);
    CHECK_EQ(status, CD_KEY_REVOKED);
    CHECK_OK(cd_keys_verify(st, key, &status, NULL, &err), &err);
    CHECK_EQ(status, CD_KEY_ACTIVE);
    /* "1" is a name; the key of id 1 (ci) is untouched by it. */
    CHECK_EQ(k.id, 1);
    CHECK_OK(cd_keys_verify(st, key, &status, NULL, &err), &err);
    CHECK_EQ(status, CD_KEY_ACTIVE);
    cd_api_key given_key;
    CHECK_OK(cd_store_key_get(st, "given", &given_key, &err), &err);
    char id_text[32];
    snprintf(id_text, sizeof id_text, "%lld", (long long)given_key.id);
    CHECK_OK(cd_keys_revoke(st, id_text, &got, &was, &err), &err);
    CHECK_STREQ(got.name, "given");
    CHECK(!was);
    CHECK_OK(cd_keys_verify(st, given, &status, NULL, &err), &err);
    CHECK_EQ(status, CD_KEY_REVOKED);
    CHECK_OK(cd_keys_revoke(st, "ci", &got, &was, &err), &err);
    CHECK(!was);
    char revoked_at[32];
    snprintf(revoked_at, sizeof revoked_at, "%s", got.revoked_at);
    CHECK_OK(cd_keys_revoke(st, "ci", &got, &was, &err), &err);
    CHECK(was);
    CHECK_STREQ(got.revoked_at, revoked_at);
    CHECK_OK(cd_keys_verify(st, key, &status, &got, &err), &err);
    CHECK_EQ(status, CD_KEY_REVOKED);
    CHECK_STREQ(got.name, "ci");
    static const char *const no_such[] = {"nobody", "999", "0", "-1", ""};
    for (size_t i = 0; i < sizeof no_such / sizeof no_such[0]; i++)
        CHECK_EQ(cd_keys_revoke(st, no_such[i], &got, &was, &err), CD_ENOTFOUND);
    CHECK_EQ(cd_store_key_revoke(st, 999, NULL, NULL, &err), CD_ENOTFOUND);
    /* A revoked name is not free again. */
    CHECK_EQ(cd_keys_add(st, "ci", CD_SCOPE_READ, "another-key-0123456789abcdefghijklmnopqrstuvw",
                         NULL, &err), CD_EEXISTS);
    CHECK(strstr(err.message, "revoked") != NULL);
    cd_store_close(st);

    /* Everything survives a reopen. */
    st = open_ok();
    CHECK_OK(cd_keys_verify(st, key2, &status, &got, &err), &err);
    CHECK_EQ(status, CD_KEY_ACTIVE);
    CHECK_STREQ(got.name, "ci-2");
    CHECK_OK(cd_keys_verify(st, key, &status, NULL, &err), &err);
    CHECK_EQ(status, CD_KEY_REVOKED);
    CHECK_OK(cd_store_key_get(st, "given", &got, &err), &err);
    CHECK_EQ(got.scope, CD_SCOPE_ADMIN);
    CHECK_EQ(cd_store_key_get(st, "nobody", &got, &err), CD_ENOTFOUND);
    cd_store_close(st);
    free(key);
    free(key2);
    free(digits);
}

/* A schema 2 database gets the keys table on open. */
static void test_migration(void)
{
    char path[160];
    snprintf(path, sizeof path, "%s/v2.db", tmpdir);
    cd_store *st = NULL;
    cd_error err = {0};
    cd_model m;
    old_schema_create(path, 2,
                      "INSERT INTO models (name, dim, metric, created_at)"
                      " VALUES ('m', 2, 'ip', '2024-01-01T00:00:00Z')");

    CHECK_OK(cd_store_open(path, &st, &err), &err);
    REQUIRE(st != NULL);
    CHECK_EQ(cd_store_schema_version(st), CD_SCHEMA_VERSION);
    CHECK_OK(cd_store_model_get(st, "m", &m, &err), &err);
    char *key = NULL;
    CHECK_OK(cd_keys_create(st, "after", CD_SCOPE_READ, &key, NULL, &err), &err);
    free(key);
    cd_store_close(st);
    unlink(path);
    char side[200];
    snprintf(side, sizeof side, "%s-wal", path);
    unlink(side);
    snprintf(side, sizeof side, "%s-shm", path);
    unlink(side);
}

static void remove_tmpdir(void)
{
    DIR *d = opendir(tmpdir);
    struct dirent *e;
    char path[512];
    while (d && (e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0) {
            snprintf(path, sizeof path, "%s/%s", tmpdir, e->d_name);
            CHECK_EQ(unlink(path), 0);
        }
    }
    if (d)
        closedir(d);
    CHECK_EQ(rmdir(tmpdir), 0);
}

int main(void)
{
    snprintf(tmpdir, sizeof tmpdir, "/tmp/compatd-keys-XXXXXX");
    REQUIRE(mkdtemp(tmpdir) != NULL);
    snprintf(db_path, sizeof db_path, "%s/compatd.db", tmpdir);
    test_text_and_hash();
    test_keys();
    test_migration();
    remove_tmpdir();
    return check_exit();
}
