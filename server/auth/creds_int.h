/* creds_int.h - what creds.c (per-worker lookups and cache) and creds_shared.c (the read-only part
 * built from the config: static users, REST secrets, Redis settings) share. Not for use outside
 * server/creds*.c.
 */
#ifndef UTURN_CREDS_INT_H
#define UTURN_CREDS_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "creds.h"
#include "creds_redis.h"
#include "stun.h"
#include "stun_auth.h"

#define REALM_MAX 255

typedef struct {
    char *name;
    size_t len;
    creds_key_t key;
    uint8_t hash[STUN_USERHASH_LEN];
} suser_t;

typedef struct {
    char *s;
    size_t len;
} secret_t;

struct creds_shared {
    char *realm;
    size_t rlen;
    suser_t *users; /* sorted by name */
    size_t nusers;
    const suser_t **by_hash; /* sorted by USERHASH */
    secret_t *secrets;       /* static-auth-secret, only with use-auth-secret */
    size_t nsecrets;
    bool rest;
    bool has_redis;
    creds_redis_cfg_t redis;
};

/* Wipe and free a secret. */
void creds_secret_clear(secret_t *s);
/* The static user `u` (ul bytes), or NULL. */
const suser_t *creds_static_find(const creds_shared_t *sh, const char *u, size_t ul);
/* The static user whose USERHASH is `hash`, or NULL. */
const suser_t *creds_static_find_hash(const creds_shared_t *sh, const uint8_t *hash);

/* What the username itself says about REST. */
typedef struct {
    const char *name;
    size_t len;
    bool rest;    /* REST-shaped and not expired: each secret gives a key */
    bool expired; /* REST-shaped and past its timestamp */
} creds_uinfo_t;

/* What `u` (ul bytes) says about REST at `unix_now`: REST-shaped and live, expired, or neither. */
void creds_uinfo_init(const creds_shared_t *sh, const char *u, size_t ul, int64_t unix_now,
                      creds_uinfo_t *ui);
/* Add `k` to `out` unless it is there already or `out` is full. */
void creds_keys_add(creds_keys_t *out, const creds_key_t *k);
/* The REST key that secret `s` gives the user `ui` (MD5 and SHA-256), added to `out`. */
void creds_rest_key(const creds_shared_t *sh, const creds_uinfo_t *ui, const secret_t *s,
                    creds_keys_t *out);
/* FOUND with keys; EXPIRED for an expired REST name that is not revoked; else `none`. */
enum creds_status creds_verdict(const creds_uinfo_t *ui, bool revoked, const creds_keys_t *out,
                                enum creds_status none);

#endif
