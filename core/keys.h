/*
 * keys.h - API keys: making them and checking them (schema/concepts.md §5).
 *
 * A key is the text a client sends as `Authorization: Bearer <key>`.  Keys
 * made here are "cdk_" and 43 base64url characters: 32 bytes from
 * getrandom(), too many to guess.  Keys brought in as text (a key file
 * from a Kubernetes Secret) may be any CD_KEY_MIN..CD_KEY_MAX characters
 * of [A-Za-z0-9._~+/=-] (RFC 7235's token68 characters), so that e.g.
 * `openssl rand -base64 32` makes one.
 *
 * The store keeps a key's SHA-256 (nettle) and its first
 * CD_KEY_PREFIX_LEN characters, never its text: a made key is shown once.
 * Checking a key hashes it, looks the hash up (one index search) and
 * compares the stored hash in constant time.  Every check reads the store,
 * so a key made or revoked by another process (`compatd keys` while the
 * daemon serves) counts from that process's commit on.
 *
 * These functions take the store and do what the store does: safe from
 * any thread, nothing changed when they fail.
 */
#ifndef CD_KEYS_H
#define CD_KEYS_H

#include <stdbool.h>

#include "error.h"
#include "store.h"

#define CD_KEY_MIN 32       /* characters of a key brought in as text */
#define CD_KEY_MAX 256
#define CD_KEY_TEXT_PREFIX "cdk_"   /* starts every key made here */

/* True when key is CD_KEY_MIN..CD_KEY_MAX characters of [A-Za-z0-9._~+/=-]. */
bool cd_key_text_valid(const char *key);

/* The SHA-256 of the key text. */
void cd_key_hash(const char *key, unsigned char hash[CD_KEY_HASH_SIZE]);

/*
 * Makes a new key called name with scope and stores its hash.  On success
 * *key_out is the key text, malloc'd (the caller frees it with free()):
 * the only copy there will ever be.  Fails as cd_store_key_insert (a taken
 * name: CD_EEXISTS), or with CD_EIO when no random bytes can be had;
 * *key_out is then NULL.  *out (may be NULL) receives the stored key.
 */
cd_err cd_keys_create(cd_store *st, const char *name, cd_scope scope,
                      char **key_out, cd_api_key *out, cd_error *err);

/*
 * Stores key (text chosen elsewhere) under name with scope.  CD_EINVAL
 * when key is not cd_key_text_valid; otherwise as cd_store_key_insert.
 */
cd_err cd_keys_add(cd_store *st, const char *name, cd_scope scope,
                   const char *key, cd_api_key *out, cd_error *err);

/*
 * Revokes the key named name_or_id, or, when no key has that name and it
 * is a decimal number, the key with that id.  Revoking a revoked key
 * changes nothing and succeeds with *was_revoked (may be NULL) true.
 * CD_ENOTFOUND when there is no such key.  *out (may be NULL) receives
 * the key as stored afterwards.
 */
cd_err cd_keys_revoke(cd_store *st, const char *name_or_id, cd_api_key *out,
                      bool *was_revoked, cd_error *err);

typedef enum cd_key_status {
    CD_KEY_UNKNOWN = 0,     /* malformed, or no stored key has this text */
    CD_KEY_REVOKED,
    CD_KEY_ACTIVE
} cd_key_status;

/*
 * Checks the key text a client sent.  Returns CD_OK with *status saying
 * what the key is, and *out (may be NULL) the stored key when it is known;
 * fails only when the store cannot be read (*status is then
 * CD_KEY_UNKNOWN).
 */
cd_err cd_keys_verify(cd_store *st, const char *key, cd_key_status *status,
                      cd_api_key *out, cd_error *err);

#endif
