/* quota.c - per-user and total allocation counts, and RFC 6062 peer connections per user, shared by
 * every worker (see quota.h). One hash table of user names per count, keyed with SipHash.
 */
#include "quota.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "rand.h"

struct quota_count {
    char *user;
    size_t ulen;
    long count;
    quota_count_t *next;
};

#define QUOTA_BUCKETS 4096

int quota_init(quota_t *q, _Atomic(const cfg_t *) *live)
{
    memset(q, 0, sizeof(*q));
    q->live = live;
    q->nbuckets = QUOTA_BUCKETS;
    rand_bytes(q->key, sizeof(q->key));
    q->users = calloc(QUOTA_BUCKETS, sizeof(*q->users));
    q->peers = calloc(QUOTA_BUCKETS, sizeof(*q->peers));
    if (!q->users || !q->peers) {
        free(q->users);
        free(q->peers);
        memset(q, 0, sizeof(*q));
        return -ENOMEM;
    }
    pthread_mutex_init(&q->lock, NULL);
    pthread_mutex_init(&q->peer_lock, NULL);
    return 0;
}

/* A per-user count table (quotas, peer connections) and every entry in it; NULL is fine. */
static void free_counts(quota_count_t **buckets, size_t n)
{
    for (size_t i = 0; buckets && i < n; i++) {
        quota_count_t *next;
        for (quota_count_t *u = buckets[i]; u; u = next) {
            next = u->next;
            free(u->user);
            free(u);
        }
    }
    free(buckets);
}

void quota_close(quota_t *q)
{
    if (!q->users)
        return;
    free_counts(q->users, q->nbuckets);
    free_counts(q->peers, q->nbuckets);
    pthread_mutex_destroy(&q->lock);
    pthread_mutex_destroy(&q->peer_lock);
    memset(q, 0, sizeof(*q));
}

/* The link that points at `user`'s entry in a count table, or the chain's last link (NULL). */
static quota_count_t **count_link(const quota_t *q, quota_count_t **buckets, const char *user,
                                  size_t ulen)
{
    quota_count_t **pp = &buckets[siphash(q->key, user, ulen) % q->nbuckets];
    while (*pp && !((*pp)->ulen == ulen && memcmp((*pp)->user, user, ulen) == 0))
        pp = &(*pp)->next;
    return pp;
}

/* A new entry for `user` at the end of its chain (*pp NULL): 0 or -ENOMEM. */
static int count_add(quota_count_t **pp, const char *user, size_t ulen)
{
    quota_count_t *u = calloc(1, sizeof(*u));
    if (!u || !(u->user = malloc(ulen ? ulen : 1))) {
        free(u);
        return -ENOMEM;
    }
    memcpy(u->user, user, ulen);
    u->ulen = ulen;
    *pp = u;
    return 0;
}

/* One fewer for the entry at *pp (when there is one); an entry at 0 is freed. 1 when it was found.
 */
static int count_drop(quota_count_t **pp)
{
    quota_count_t *u = *pp;
    if (!u)
        return 0;
    if (--u->count <= 0) {
        *pp = u->next;
        free(u->user);
        free(u);
    }
    return 1;
}

int quota_take(quota_t *q, const char *user, size_t ulen)
{
    const cfg_t *c = atomic_load(q->live);
    if (c->total_quota > 0 && atomic_load(&q->total) >= c->total_quota)
        return -ENOSPC;
    int rc = 0;
    pthread_mutex_lock(&q->lock);
    quota_count_t **pp = count_link(q, q->users, user, ulen);
    if (*pp && c->user_quota > 0 && (*pp)->count >= c->user_quota)
        rc = -EDQUOT;
    else if (!*pp)
        rc = count_add(pp, user, ulen);
    if (rc == 0) {
        (*pp)->count++;
        atomic_fetch_add(&q->total, 1);
    }
    pthread_mutex_unlock(&q->lock);
    return rc;
}

int quota_check(quota_t *q, const char *user, size_t ulen)
{
    const cfg_t *c = atomic_load(q->live);
    if (c->total_quota > 0 && atomic_load(&q->total) >= c->total_quota)
        return -ENOSPC;
    if (c->user_quota <= 0)
        return 0;
    pthread_mutex_lock(&q->lock);
    quota_count_t **pp = count_link(q, q->users, user, ulen);
    int rc = *pp && (*pp)->count >= c->user_quota ? -EDQUOT : 0;
    pthread_mutex_unlock(&q->lock);
    return rc;
}

void quota_release(quota_t *q, const char *user, size_t ulen)
{
    pthread_mutex_lock(&q->lock);
    if (count_drop(count_link(q, q->users, user, ulen)))
        atomic_fetch_sub(&q->total, 1);
    pthread_mutex_unlock(&q->lock);
}

long quota_total(quota_t *q) { return atomic_load(&q->total); }

int quota_peer_conn_take(quota_t *q, const char *user, size_t ulen)
{
    const cfg_t *c = atomic_load(q->live);
    int rc = 0;
    pthread_mutex_lock(&q->peer_lock);
    quota_count_t **pp = count_link(q, q->peers, user, ulen);
    if (*pp && c->user_peer_conn_quota > 0 && (*pp)->count >= c->user_peer_conn_quota)
        rc = -EDQUOT;
    else if (!*pp)
        rc = count_add(pp, user, ulen);
    if (rc == 0)
        (*pp)->count++;
    pthread_mutex_unlock(&q->peer_lock);
    return rc;
}

void quota_peer_conn_release(quota_t *q, const char *user, size_t ulen)
{
    pthread_mutex_lock(&q->peer_lock);
    (void)count_drop(count_link(q, q->peers, user, ulen));
    pthread_mutex_unlock(&q->peer_lock);
}
