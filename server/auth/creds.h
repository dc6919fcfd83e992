/* creds.h - where long-term credential keys come from: static users from the config, TURN REST
 * shared secrets (static and from Redis), and Redis users in coturn's key layout.
 *
 * RFC 8489 §9.2 (long-term keys, MD5 and SHA-256), draft-uberti-behave-turn-rest-00 and coturn's
 * use-auth-secret (ephemeral usernames "expiry[:id]"), coturn's Redis schema
 * (turn/realm/<realm>/user/<user>/key = hex MD5 key, turn/realm/<realm>/secret = set of secrets)
 * plus our extensions beside it. A lookup never blocks the loop: static and REST answers come at
 * once; a Redis user is looked up with hiredis' async API on the worker's loop, and the caller is
 * told when to ask again (the answer is then in the worker's cache).
 *
 * Threading: a creds_shared_t is built at start and then read-only (any thread). A creds_t belongs
 * to one worker and is used only on that worker's loop thread.
 */
#ifndef UTURN_CREDS_H
#define UTURN_CREDS_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "cfg.h"
#include "creds_ops.h"

struct uv_loop_s;

/* Redis key names (our extensions sit beside coturn's). `%s` are realm and user / hex hash. */
#define CREDS_REDIS_KEY_MD5 "turn/realm/%s/user/%s/key"
#define CREDS_REDIS_KEY_SHA256 "turn/realm/%s/user/%s/key-sha256"
#define CREDS_REDIS_SECRETS "turn/realm/%s/secret"
#define CREDS_REDIS_USERHASH "turn/realm/%s/userhash/%s"
#define CREDS_REDIS_REVOKED "turn/realm/%s/revoked/%s"

typedef struct creds_shared creds_shared_t;
typedef struct creds creds_t;

/* Parse the credential settings of `cfg` (user lines, secrets, redis-userdb connection string) into
 * a read-only structure. Returns 0, or -1 with a message naming the key and the problem in `err`
 * (e.g. "'user' line 2: missing ':'", "'redis-userdb': unknown field 'hots'"). */
int creds_shared_new(const cfg_t *cfg, creds_shared_t **out, char *err, size_t errlen);
void creds_shared_free(creds_shared_t *s);
/* 1 when any source exists (static users, REST secrets or Redis). */
int creds_shared_any(const creds_shared_t *s);

struct redis_sentinel_cfg;

/* The parsed `redis-userdb` settings, for another client of the same store (the admin API's own
 * synchronous connection). Strings are borrowed from `s` (NULL when absent). Any thread. */
typedef struct {
    const char *host; /* NULL with Sentinel */
    int port;
    int db;
    const char *user;     /* ACL user for AUTH, or NULL */
    const char *password; /* NULL: no AUTH */
    int connect_timeout_ms;
    /* The sentinels to ask for the master (redis_sentinel.h), or NULL: connect to host:port. */
    const struct redis_sentinel_cfg *sentinel;
} creds_redis_settings_t;
/* 0 and the settings when redis-userdb is set; -1 (out zeroed) when it is not. */
int creds_shared_redis(const creds_shared_t *s, creds_redis_settings_t *out);

typedef struct creds_stats creds_stats_t;

/* A worker's view: its Redis connection (if configured) on `loop`, its cache. Counters go to
 * `stats` (caller's storage, so other threads may read it after creds_close), or to storage of its
 * own when NULL. `cb` given to lookups must not be NULL. 0 or -errno. */
int creds_new(struct uv_loop_s *loop, const creds_shared_t *shared, creds_stats_t *stats,
              creds_t **out);
/* Close the Redis connection and free (on the worker's thread, before its loop ends). Pending
 * callbacks are never called after this. */
void creds_close(creds_t *c);

/* Keys for `user` (bytes as received in USERNAME, not NUL-terminated) at `now_ms` (the loop's
 * clock) with `unix_now` for REST expiry, asked by `who` (NULL: the built-in bounds, no source). On
 * CREDS_PENDING, cb(arg) is called exactly once later (unless creds_cancel or creds_close come
 * first); the caller then calls creds_lookup again and gets a final status. */
enum creds_status creds_lookup(creds_t *c, const creds_asker_t *who, const char *user, size_t ulen,
                               uint64_t now_ms, int64_t unix_now, creds_keys_t *out,
                               creds_ready_cb cb, void *arg);

/* USERHASH (RFC 8489 §14.4) to username: static users are hashed at start, Redis users through
 * turn/realm/<realm>/userhash/<hex>. Same PENDING protocol. On FOUND the NUL-terminated name is in
 * `user` (cap bytes) and its keys in `out`. */
enum creds_status creds_lookup_userhash(creds_t *c, const creds_asker_t *who,
                                        const uint8_t hash[32], uint64_t now_ms, int64_t unix_now,
                                        char *user, size_t cap, creds_keys_t *out,
                                        creds_ready_cb cb, void *arg);

/* Forget what the cache holds for `user` (its Redis answer and USERHASH entries naming it), so the
 * next lookup asks the store again: a deleted or revoked user is refused at once instead of after
 * the 30 s cache time. An answer still in flight is discarded when it comes (its waiters ask
 * again). With `user` NULL, forget the realm's REST secret set instead (a deleted secret). On the
 * worker's loop thread (post it with worker_post). */
void creds_forget(creds_t *c, const char *user, size_t ulen);

/* Forget every pending callback registered with `arg` (its owner is going away). */
void creds_cancel(creds_t *c, void *arg);

/* The engine's view of `c` (creds_lookup, creds_lookup_userhash, creds_cancel with env = c), for
 * dispatch_init: filled into `out`, valid while c lives. Worker thread only, like c. */
void creds_ops(creds_t *c, creds_ops_t *out);

/* Counters, single writer (the worker), read by any thread. */
struct creds_stats {
    _Atomic uint64_t lookups, cache_hits, redis_queries, redis_errors, redis_reconnects;
    _Atomic uint64_t redis_latency_us_sum, redis_replies;
    _Atomic uint64_t refused_per_ip, refused_total; /* CREDS_BUSY: over a pending bound */
    _Atomic uint64_t pending;                       /* lookups waiting for Redis now */
    _Atomic int redis_state;                        /* -1 not configured, 0 down, 1 up */
};
const creds_stats_t *creds_stats(const creds_t *c);

#endif
