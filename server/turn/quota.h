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

/* Count one RFC 6062 peer connection (accepted or made by Connect) for `user`, on any worker:
 * 0, -EDQUOT when the user holds user-peer-connection-quota of them already, or -ENOMEM. */
int quota_peer_conn_take(quota_t *q, const char *user, size_t ulen);
void quota_peer_conn_release(quota_t *q, const char *user, size_t ulen);

#endif
