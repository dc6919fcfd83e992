/* creds_ops.h - how the engine asks for long-term credential keys (RFC 8489 §9.2), without knowing
 * where they come from: the types of an answer (candidate keys, a status), the bounds that apply to
 * the asker, and the ops table dispatch_init takes.
 *
 * The daemon fills the table from its worker's credential store (auth/creds.h: creds_ops), whose
 * Redis answers come later on the worker's loop (CREDS_PENDING, then cb(arg)); tests and fuzzers
 * fill it with a function of their own that answers at once, and need no loop. Everything here is
 * called on the thread that owns the dispatch_t.
 */
#ifndef UTURN_CREDS_OPS_H
#define UTURN_CREDS_OPS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

/* Candidate keys for one username: every source that knows the name contributes, and every REST
 * secret gives its own key (rotation); the dispatcher tries each against the message integrity. */
#define CREDS_MAX_KEYS 8

typedef struct {
    uint8_t md5[16];
    uint8_t sha256[32];
    bool has_md5, has_sha256;
} creds_key_t;

typedef struct {
    int n;
    creds_key_t k[CREDS_MAX_KEYS];
} creds_keys_t;

enum creds_status {
    CREDS_FOUND = 0,   /* out holds >= 1 key */
    CREDS_UNKNOWN = 1, /* no source knows this user (or it was revoked) */
    CREDS_EXPIRED = 2, /* a REST username whose timestamp has passed, and no other source */
    CREDS_PENDING = 3, /* asking Redis: cb(arg) comes once, later, on this loop; then ask again */
    CREDS_UNAVAILABLE =
        4,          /* the answer depends on Redis, which is unreachable, and nothing cached */
    CREDS_BUSY = 5, /* too many lookups in flight on this worker: refuse, do not queue */
};

/* Called once when a CREDS_PENDING lookup may be asked again (its answer is then cached). */
typedef void (*creds_ready_cb)(void *arg);

/* Who asks, and the bounds that apply (from the caller's live config, so a reload takes effect at
 * the next lookup). Lookups that must wait for Redis are what an unauthenticated sender can make
 * us hold: each one parks a request and may start a query. Beyond a bound the lookup is refused
 * with CREDS_BUSY (nothing is queued; the caller drops the request and counts it, and a UDP client
 * retransmits). The cache keeps known users and unknown names apart: a name Redis does not know
 * (or whose answer is not in yet) only ever evicts another such name, never a known user. */
typedef struct {
    const struct sockaddr *addr; /* the request's source; NULL: bounded only in total */
    unsigned pending_per_ip;     /* lookups of one source IP waiting for Redis (and queries it
                                  * started), per worker; redis-pending-per-ip */
    unsigned pending_max;        /* lookups waiting (and queries in flight) per worker */
    unsigned cache_users;        /* known users (and USERHASH names) cached per worker */
    unsigned cache_unknown;      /* unknown names and answers not in yet; at least
                                  * pending_max + 1 are kept so a query always has a slot */
} creds_asker_t;

/* The built-in bounds (what `who` NULL means): the config keys' defaults. */
#define CREDS_PENDING_PER_IP 32
#define CREDS_PENDING_MAX 256
#define CREDS_CACHE_USERS 4096
#define CREDS_CACHE_UNKNOWN 1024

/* The credential source as the engine sees it (members NULL: no source; every lookup then answers
 * CREDS_UNAVAILABLE, 500). */
typedef struct {
    /* Keys for `user` (bytes as received in USERNAME, not NUL-terminated) at `now_ms` (the engine's
     * monotonic clock) with `unix_now` (seconds) for REST expiry, asked by `who`. On CREDS_PENDING,
     * cb(arg) is called exactly once later unless cancel(env, arg) comes first; then ask again. */
    enum creds_status (*lookup)(void *env, const creds_asker_t *who, const char *user, size_t ulen,
                                uint64_t now_ms, int64_t unix_now, creds_keys_t *out,
                                creds_ready_cb cb, void *arg);
    /* USERHASH (RFC 8489 §14.4) to username and keys; same protocol. On CREDS_FOUND the
     * NUL-terminated name is in `user` (cap bytes). */
    enum creds_status (*lookup_userhash)(void *env, const creds_asker_t *who,
                                         const uint8_t hash[32], uint64_t now_ms, int64_t unix_now,
                                         char *user, size_t cap, creds_keys_t *out,
                                         creds_ready_cb cb, void *arg);
    /* Forget every pending callback registered with `arg` (its owner is going away). */
    void (*cancel)(void *env, void *arg);
    void *env;
} creds_ops_t;

#endif
