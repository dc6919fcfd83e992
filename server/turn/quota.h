/* quota.h - what every worker must agree on about how much one user holds: allocations per user
 * and in total (RFC 8656 §7.2: 486 Allocation Quota Reached per user, 508 Insufficient Capacity
 * when the server is full), and RFC 6062 peer connections per user (user-peer-connection-quota).
 *
 * Each table sits behind its own pthread mutex, taken only when allocations or peer connections
 * start or end (never per packet). The limits are read at every take from the live config snapshot
 * the owner gives (`live`), so a reload takes effect at the next allocation. Any thread.
 */
#ifndef UTURN_QUOTA_H
#define UTURN_QUOTA_H

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "cfg.h"
#include "siphash.h"

typedef struct quota_count quota_count_t;

typedef struct {
    _Atomic(const cfg_t *) *live; /* the owner's current snapshot (user-quota, total-quota, ...) */
    pthread_mutex_t lock;         /* users, total */
    quota_count_t **users;        /* hash buckets: allocations per user */
    size_t nbuckets;
    uint8_t key[SIPHASH_KEY_LEN]; /* keys the hash of users and peers (client-chosen names) */
    _Atomic long total;           /* allocations (and reservations holding a unit) in all */
    /* RFC 6062 peer connections per user, a table of their own: they come and go without
     * allocations doing so, and may outlive their allocation's quota entry. */
    pthread_mutex_t peer_lock;
    quota_count_t **peers; /* hash buckets, nbuckets of them */
} quota_t;

/* Empty tables whose limits come from *live (read at every take; the pointer must outlive q).
 * Returns 0 or -ENOMEM (nothing to close). */
int quota_init(quota_t *q, _Atomic(const cfg_t *) *live);
/* Free both tables and every entry (whatever is still counted). */
void quota_close(quota_t *q);

/* Quotas (RFC 8656 §7.2: 486 per user, 508 when the server is full). Returns 0 and counts the
 * allocation, or -EDQUOT (user-quota) / -ENOSPC (total-quota) / -ENOMEM. */
int quota_take(quota_t *q, const char *user, size_t ulen);
void quota_release(quota_t *q, const char *user, size_t ulen);
/* Allocations counted now (every user together). */
long quota_total(quota_t *q);

/* Would quota_take refuse now? -EDQUOT / -ENOSPC as it would, else 0; counts nothing (a cheap
 * refusal before asking the fleet, whose answer may take a round trip). */
int quota_check(quota_t *q, const char *user, size_t ulen);

/* Count one RFC 6062 peer connection (accepted or made by Connect) for `user`, on any worker:
 * 0, -EDQUOT when the user holds user-peer-connection-quota of them already, or -ENOMEM. */
int quota_peer_conn_take(quota_t *q, const char *user, size_t ulen);
void quota_peer_conn_release(quota_t *q, const char *user, size_t ulen);

/* Cluster-wide user-quota (issue 13): how many allocations `user` holds on every node of the fleet
 * is known only to Redis, which the engine never waits for. Its owner (the worker:
 * core/cluster_quota.h) gives it this table; an Allocate whose answer must wait is parked like a
 * credential lookup and replayed with the answer. Called on the thread that owns the dispatch_t.
 */
enum quota_cluster_answer {
    QUOTA_CLUSTER_OK = 0,      /* a fleet-wide unit is taken: give it back with release() */
    QUOTA_CLUSTER_REFUSED = 1, /* the user holds user-quota allocations fleet-wide: 486 */
    QUOTA_CLUSTER_LOCAL = 2,   /* no fleet answer (Redis away or slow, or off): the node's own
                                * count decides; nothing to give back */
    QUOTA_CLUSTER_PENDING = 3, /* asking Redis: cb(arg, answer) comes once later, unless cancel */
};
/* Called once with QUOTA_CLUSTER_OK, _REFUSED or _LOCAL for a take that answered PENDING. */
typedef void (*quota_cluster_cb)(void *arg, int answer);
typedef struct {
    /* Take one fleet-wide unit for `user` (bytes as in USERNAME; the owner adds the realm).
     * Returns an enum quota_cluster_answer; on PENDING, cb(arg, answer) comes exactly once later
     * on this thread (never from inside take) unless cancel(env, arg) comes first. */
    int (*take)(void *env, const char *user, size_t ulen, quota_cluster_cb cb, void *arg);
    /* Give back a unit an OK answer took (the allocation ended or was never made). */
    void (*release)(void *env, const char *user, size_t ulen);
    /* Forget the pending take registered with `arg` (its owner is going away); a unit it takes
     * after all is given back by the owner of the table, not by the engine. */
    void (*cancel)(void *env, void *arg);
    void *env;
} quota_cluster_ops_t;

#endif
