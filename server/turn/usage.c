/* usage.c - the usage ledger's engine side (usage.h): the bounded event queue a worker drains, and
 * the bounded LRU table of ended allocations' totals per user. One thread; no I/O.
 */
#include "usage.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

int usage_queue_init(usage_queue_t *q, size_t cap)
{
    memset(q, 0, sizeof(*q));
    if (cap == 0)
        cap = 1;
    q->ring = calloc(cap, sizeof(*q->ring));
    if (!q->ring)
        return -ENOMEM;
    q->cap = cap;
    return 0;
}

void usage_queue_free(usage_queue_t *q)
{
    free(q->ring);
    memset(q, 0, sizeof(*q));
}

int usage_queue_push(usage_queue_t *q, const usage_event_t *ev)
{
    if (!q->ring || q->count == q->cap) {
        q->dropped++;
        return -ENOSPC;
    }
    usage_event_t *slot = &q->ring[(q->head + q->count) % q->cap];
    /* Copy the fixed part and only the name's bytes: the event is mostly its 513-byte name. */
    memcpy(slot, ev, offsetof(usage_event_t, user));
    memcpy(slot->user, ev->user, ev->ulen);
    slot->user[ev->ulen] = '\0';
    q->count++;
    return 0;
}

const usage_event_t *usage_queue_peek(const usage_queue_t *q, size_t i)
{
    if (i >= q->count)
        return NULL;
    return &q->ring[(q->head + i) % q->cap];
}

void usage_queue_pop(usage_queue_t *q, size_t n)
{
    if (n > q->count)
        n = q->count;
    q->head = (q->head + n) % (q->cap ? q->cap : 1);
    q->count -= n;
}

/* ---- ended allocations per user ---- */

struct usage_ended_ent {
    usage_ended_ent_t *hnext;
    list_t link; /* on usage_ended_t.lru */
    usage_sum_t sum;
    uint16_t ulen;
    char user[]; /* ulen bytes */
};

void usage_ended_init(usage_ended_t *t, size_t cap, const uint8_t key[SIPHASH_KEY_LEN])
{
    memset(t, 0, sizeof(*t));
    t->cap = cap;
    memcpy(t->key, key, SIPHASH_KEY_LEN);
    list_init(&t->lru);
}

void usage_ended_free(usage_ended_t *t)
{
    if (!t->lru.next)
        return; /* never initialised (zeroed) */
    LIST_FOREACH_SAFE(n, tmp, &t->lru) { free(container_of(n, usage_ended_ent_t, link)); }
    free(t->buckets);
    t->buckets = NULL;
    t->count = 0;
    list_init(&t->lru);
}

static usage_ended_ent_t **slot_of(const usage_ended_t *t, const char *user, size_t ulen)
{
    return &t->buckets[siphash(t->key, user, ulen) & (t->nbuckets - 1)];
}

static usage_ended_ent_t *find(const usage_ended_t *t, const char *user, size_t ulen)
{
    if (!t->buckets)
        return NULL;
    for (usage_ended_ent_t *e = *slot_of(t, user, ulen); e; e = e->hnext)
        if (e->ulen == ulen && memcmp(e->user, user, ulen) == 0)
            return e;
    return NULL;
}

static void unhash(usage_ended_t *t, usage_ended_ent_t *e)
{
    for (usage_ended_ent_t **p = slot_of(t, e->user, e->ulen); *p; p = &(*p)->hnext)
        if (*p == e) {
            *p = e->hnext;
            return;
        }
}

void usage_ended_add(usage_ended_t *t, const char *user, size_t ulen, const usage_counts_t *c)
{
    if (t->cap == 0 || ulen > STUN_USERNAME_MAX)
        return;
    if (!t->buckets) {
        size_t nb = 16;
        while (nb < t->cap && nb < ((size_t)1 << 20))
            nb <<= 1;
        if (!(t->buckets = calloc(nb, sizeof(*t->buckets))))
            return;
        t->nbuckets = nb;
    }
    usage_ended_ent_t *e = find(t, user, ulen);
    if (e) {
        list_remove(&e->link);
    } else {
        if (t->count >= t->cap) {
            /* Full: the user updated longest ago goes (LRU). */
            usage_ended_ent_t *old = container_of(t->lru.prev, usage_ended_ent_t, link);
            list_remove(&old->link);
            unhash(t, old);
            free(old);
            t->count--;
            t->evicted++;
        }
        if (!(e = calloc(1, sizeof(*e) + ulen)))
            return;
        e->ulen = (uint16_t)ulen;
        memcpy(e->user, user, ulen);
        usage_ended_ent_t **s = slot_of(t, user, ulen);
        e->hnext = *s;
        *s = e;
        t->count++;
    }
    list_insert_head(&t->lru, &e->link);
    e->sum.allocations++;
    e->sum.c.to_peer_bytes += c->to_peer_bytes;
    e->sum.c.to_peer_packets += c->to_peer_packets;
    e->sum.c.from_peer_bytes += c->from_peer_bytes;
    e->sum.c.from_peer_packets += c->from_peer_packets;
}

bool usage_ended_get(const usage_ended_t *t, const char *user, size_t ulen, usage_sum_t *out)
{
    memset(out, 0, sizeof(*out));
    const usage_ended_ent_t *e = find(t, user, ulen);
    if (!e)
        return false;
    *out = e->sum;
    return true;
}
