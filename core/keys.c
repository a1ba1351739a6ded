/*
 * keys.c - API keys over the store (see keys.h for the contract): random
 * key text, its SHA-256, and the check of a client's key.  The SQL is the
 * store's (cd_store_key_*); this file never sees a connection.
 */
#include "keys.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include <nettle/memops.h>
#include <nettle/sha2.h>

#include "text.h"

#define KEY_RANDOM_BYTES 32

#if SHA256_DIGEST_SIZE != CD_KEY_HASH_SIZE
#error "CD_KEY_HASH_SIZE must be the size of a SHA-256 digest"
#endif

static bool key_char(char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
           (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '~' ||
           c == '+' || c == '/' || c == '=' || c == '-';
}

bool cd_key_text_valid(const char *key)
{
    if (!key)
        return false;
    size_t n = 0;
    for (; key[n]; n++)
        if (n >= CD_KEY_MAX || !key_char(key[n]))
            return false;
    return n >= CD_KEY_MIN;
}

void cd_key_hash(const char *key, unsigned char hash[CD_KEY_HASH_SIZE])
{
    struct sha256_ctx ctx;
    sha256_init(&ctx);
    sha256_update(&ctx, strlen(key), (const uint8_t *)key);
    sha256_digest(&ctx, SHA256_DIGEST_SIZE, hash);
}

/* n bytes from the kernel's random source (blocks only before it is
 * seeded, early at boot). */
static cd_err random_bytes(unsigned char *buf, size_t n, cd_error *err)
{
    size_t got = 0;
    while (got < n) {
        ssize_t r = getrandom(buf + got, n - got, 0);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            return cd__fail(err, CD_EIO, "no random bytes for a key: %s",
                            strerror(errno));
        got += (size_t)r;
    }
    return CD_OK;
}

/* Stores the hash and prefix of key, a valid key text. */
static cd_err store_key(cd_store *st, const char *name, cd_scope scope,
                        const char *key, cd_api_key *out, cd_error *err)
{
    unsigned char hash[CD_KEY_HASH_SIZE];
    char prefix[CD_KEY_PREFIX_LEN + 1];
    cd_key_hash(key, hash);
    memcpy(prefix, key, CD_KEY_PREFIX_LEN);     /* keys are longer */
    prefix[CD_KEY_PREFIX_LEN] = '\0';
    return cd_store_key_insert(st, name, scope, hash, prefix, out, err);
}

cd_err cd_keys_create(cd_store *st, const char *name, cd_scope scope,
                      char **key_out, cd_api_key *out, cd_error *err)
{
    static const size_t pre = sizeof CD_KEY_TEXT_PREFIX - 1;
    unsigned char random[KEY_RANDOM_BYTES];
    if (out)
        memset(out, 0, sizeof *out);
    if (!key_out)
        return cd__fail(err, CD_EINVAL, "cd_keys_create: key_out is NULL");
    *key_out = NULL;
    char *key = malloc(pre + KEY_RANDOM_BYTES * 4 / 3 + 3);
    if (!key)
        return cd__fail(err, CD_ENOMEM, "out of memory making a key");
    cd_err rc = random_bytes(random, sizeof random, err);
    if (rc == CD_OK) {
        memcpy(key, CD_KEY_TEXT_PREFIX, pre);
        cd__b64_encode(random, sizeof random, true, key + pre);
        rc = store_key(st, name, scope, key, out, err);
    }
    /* explicit_bzero: a memset before the end of their life is a dead
     * store the optimiser may drop. */
    explicit_bzero(random, sizeof random);
    if (rc != CD_OK) {
        explicit_bzero(key, pre + KEY_RANDOM_BYTES * 4 / 3 + 3);
        free(key);
        return rc;
    }
    *key_out = key;
    return CD_OK;
}

cd_err cd_keys_add(cd_store *st, const char *name, cd_scope scope,
                   const char *key, cd_api_key *out, cd_error *err)
{
    if (out)
        memset(out, 0, sizeof *out);
    if (!cd_key_text_valid(key))
        return cd__fail(err, CD_EINVAL,
                        "a key is %d to %d characters of A-Z a-z 0-9 . _ ~ + / = -",
                        CD_KEY_MIN, CD_KEY_MAX);
    return store_key(st, name, scope, key, out, err);
}

/* The positive decimal number s, or 0. */
static int64_t key_id(const char *s)
{
    int64_t id = 0;
    if (!s || !*s || strlen(s) > 18)
        return 0;
    for (; *s; s++) {
        if (*s < '0' || *s > '9')
            return 0;
        id = id * 10 + (*s - '0');
    }
    return id;
}

cd_err cd_keys_revoke(cd_store *st, const char *name_or_id, cd_api_key *out,
                      bool *was_revoked, cd_error *err)
{
    cd_api_key k;
    if (out)
        memset(out, 0, sizeof *out);
    if (was_revoked)
        *was_revoked = false;
    cd_err rc = cd_store_key_get(st, name_or_id, &k, err);
    if (rc == CD_ENOTFOUND && key_id(name_or_id) > 0)
        rc = cd_store_key_get_by_id(st, key_id(name_or_id), &k, err);
    if (rc == CD_ENOTFOUND)
        return cd__fail(err, CD_ENOTFOUND, "no API key named %.*s%s",
                        CD_NAME_MAX, name_or_id ? name_or_id : "(null)",
                        key_id(name_or_id) > 0 ? " or with that id" : "");
    if (rc != CD_OK)
        return rc;
    return cd_store_key_revoke(st, k.id, out, was_revoked, err);
}

cd_err cd_keys_verify(cd_store *st, const char *key, cd_key_status *status,
                      cd_api_key *out, cd_error *err)
{
    unsigned char hash[CD_KEY_HASH_SIZE];
    cd_api_key k;
    *status = CD_KEY_UNKNOWN;
    if (out)
        memset(out, 0, sizeof *out);
    if (!cd_key_text_valid(key))
        return CD_OK;
    cd_key_hash(key, hash);
    cd_err rc = cd_store_key_find(st, hash, &k, err);
    if (rc == CD_ENOTFOUND) {
        cd_error_clear(err);
        return CD_OK;
    }
    if (rc != CD_OK)
        return rc;
    /* The index found it by this hash; the comparison that decides takes
     * the same time whatever the bytes. */
    if (!memeql_sec(k.hash, hash, CD_KEY_HASH_SIZE))
        return CD_OK;
    *status = k.revoked_at[0] ? CD_KEY_REVOKED : CD_KEY_ACTIVE;
    if (out)
        *out = k;
    return CD_OK;
}
