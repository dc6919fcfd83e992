/* alloc.c - the per-worker allocation table, permissions and channel bindings (see alloc.h).
 *
 * RFC 8656 §2.2, §7, §9, §12. Permissions and channels live in small arrays inside their
 * allocation: a call has one or two peers, so a linear scan of a few entries beats any index, and
 * memory per allocation stays small.
 */
#include "alloc.h"

#include <assert.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "sockaddr_util.h"

#define ALLOC_INITIAL_BUCKETS 1024

/* The 5-tuple's hash: transport, the listening socket (by address: one per worker), and the
 * client's IP and port, under the table's SipHash key. */
static uint64_t tuple_hash(const alloc_table_t *t, enum turn_transport transport,
                           const struct sockaddr *remote, const struct sockaddr *local)
{
    uint8_t buf[1 + sizeof(uintptr_t) + 2 + 16];
    size_t n = 0, iplen;
    const uint8_t *ip = sa_ip_bytes(remote, &iplen);
    uintptr_t l = (uintptr_t)local;
    uint16_t port = sa_port(remote);
    buf[n++] = (uint8_t)transport;
    memcpy(buf + n, &l, sizeof(l));
    n += sizeof(l);
    memcpy(buf + n, &port, sizeof(port));
    n += sizeof(port);
    memcpy(buf + n, ip, iplen);
    return siphash(t->key, buf, n + iplen);
}

int alloc_table_init(alloc_table_t *t, const uint8_t key[SIPHASH_KEY_LEN], uint64_t id_base)
{
    memset(t, 0, sizeof(*t));
    list_init(&t->all);
    t->buckets = calloc(ALLOC_INITIAL_BUCKETS, sizeof(*t->buckets));
    if (!t->buckets)
        return -ENOMEM;
    t->nbuckets = ALLOC_INITIAL_BUCKETS;
    memcpy(t->key, key, sizeof(t->key));
    t->next_id = id_base + 1;
    return 0;
}

void alloc_free(alloc_t *a)
{
    free(a->alloc_resp);
    free(a->perms);
    free(a->chans);
    free(a);
}

void alloc_table_free(alloc_table_t *t)
{
    LIST_FOREACH_SAFE(n, tmp, &t->all) { alloc_free(container_of(n, alloc_t, link)); }
    free(t->buckets);
    memset(t, 0, sizeof(*t));
}

static int same_tuple(const alloc_t *a, enum turn_transport transport,
                      const struct sockaddr *remote, const struct sockaddr *local)
{
    return a->client.transport == transport && a->client.local == local &&
           sa_equal(a->client.remote, remote);
}

alloc_t *alloc_find(const alloc_table_t *t, enum turn_transport transport,
                    const struct sockaddr *remote, const struct sockaddr *local)
{
    uint64_t h = tuple_hash(t, transport, remote, local);
    for (alloc_t *a = t->buckets[h & (t->nbuckets - 1)]; a; a = a->hnext)
        if (same_tuple(a, transport, remote, local)) {
            assert(!a->dead); /* alloc_remove takes it out of its chain */
            return a;
        }
    return NULL;
}

/* Double the buckets when the table is full; on failure keep the old (longer chains, still OK). */
static void grow(alloc_table_t *t)
{
    size_t n = t->nbuckets * 2;
    alloc_t **nb = calloc(n, sizeof(*nb));
    if (!nb)
        return;
    for (size_t i = 0; i < t->nbuckets; i++) {
        alloc_t *next;
        for (alloc_t *a = t->buckets[i]; a; a = next) {
            next = a->hnext;
            uint64_t h = tuple_hash(t, a->client.transport, a->client.remote, a->client.local);
            a->hnext = nb[h & (n - 1)];
            nb[h & (n - 1)] = a;
        }
    }
    free(t->buckets);
    t->buckets = nb;
    t->nbuckets = n;
}

alloc_t *alloc_insert(alloc_table_t *t, const turn_conn_t *client, uint64_t now_ms)
{
    alloc_t *a = calloc(1, sizeof(*a));
    if (!a)
        return NULL;
    a->client = *client;
    memset(&a->client_addr, 0, sizeof(a->client_addr));
    memcpy(&a->client_addr, client->remote, sa_len(client->remote));
    a->client.remote = &a->client_addr.sa;
    a->id = t->next_id++;
    a->created_ms = now_ms;
    if (t->count >= t->nbuckets)
        grow(t);
    uint64_t h = tuple_hash(t, client->transport, client->remote, client->local);
    size_t b = h & (t->nbuckets - 1);
    a->hnext = t->buckets[b];
    t->buckets[b] = a;
    list_insert_head(&t->all, &a->link);
    t->count++;
    return a;
}

void alloc_remove(alloc_table_t *t, alloc_t *a)
{
    if (a->dead)
        return;
    uint64_t h = tuple_hash(t, a->client.transport, a->client.remote, a->client.local);
    for (alloc_t **pp = &t->buckets[h & (t->nbuckets - 1)]; *pp; pp = &(*pp)->hnext)
        if (*pp == a) {
            *pp = a->hnext;
            break;
        }
    list_remove(&a->link);
    a->hnext = NULL;
    a->dead = true;
    t->count--;
}

static void peer_ip(const struct sockaddr *sa, uint8_t *family, uint8_t ip[16])
{
    size_t n;
    const uint8_t *p = sa_ip_bytes(sa, &n);
    memset(ip, 0, 16);
    memcpy(ip, p, n);
    *family = (uint8_t)sa->sa_family;
}

/* The next capacity of a table holding `cap` (< max) entries: doubled, at least `first`, at most
 * `max` (no slot past the cap is ever allocated). Always > cap, so realloc never gets 0. */
static uint32_t next_cap(uint32_t cap, uint32_t first, unsigned max)
{
    uint64_t next = cap ? (uint64_t)cap * 2 : first;
    if (next > max)
        next = max;
    return next > cap ? (uint32_t)next : cap + 1;
}

static uint64_t perm_ms(const alloc_t *a) { return a->perm_ms ? a->perm_ms : ALLOC_PERMISSION_MS; }

static uint64_t chan_ms(const alloc_t *a) { return a->chan_ms ? a->chan_ms : ALLOC_CHANNEL_MS; }

/* Index of the slot holding this IP (live or expired), or -1. */
static long perm_slot(const alloc_t *a, uint8_t fam, const uint8_t ip[16])
{
    for (uint32_t i = 0; i < a->nperms; i++)
        if (a->perms[i].family == fam && memcmp(a->perms[i].ip, ip, 16) == 0)
            return (long)i;
    return -1;
}

int alloc_perm_install(alloc_t *a, const struct sockaddr *peer, uint64_t now_ms, unsigned max)
{
    assert(!a->dead); /* a removed allocation waits only for its sockets to close */
    uint8_t fam, ip[16];
    peer_ip(peer, &fam, ip);
    long held = perm_slot(a, fam, ip);
    if (held >= 0) {
        a->perms[held].expires_ms = now_ms + perm_ms(a);
        return 0;
    }
    /* Reuse an expired slot before growing. */
    for (uint32_t i = 0; i < a->nperms; i++)
        if (a->perms[i].expires_ms <= now_ms) {
            a->perms[i].family = fam;
            memcpy(a->perms[i].ip, ip, 16);
            a->perms[i].expires_ms = now_ms + perm_ms(a);
            return 0;
        }
    if (a->nperms >= max)
        return -ENOSPC;
    if (a->nperms == a->capperms) {
        uint32_t cap = next_cap(a->capperms, 2, max);
        alloc_perm_t *np = realloc(a->perms, (size_t)cap * sizeof(*np));
        if (!np)
            return -ENOMEM;
        a->perms = np;
        a->capperms = cap;
    }
    alloc_perm_t *p = &a->perms[a->nperms++];
    p->family = fam;
    memcpy(p->ip, ip, 16);
    p->expires_ms = now_ms + perm_ms(a);
    return 0;
}

int alloc_perm_fits(const alloc_t *a, const sa_any_t *peers, int n, uint64_t now_ms, unsigned max)
{
    uint64_t spare = a->nperms < max ? max - a->nperms : 0, need = 0;
    for (int i = 0; i < n; i++) {
        uint8_t fam, ip[16], fk, ipk[16];
        peer_ip(&peers[i].sa, &fam, ip);
        int repeat = 0;
        for (int k = 0; k < i && !repeat; k++) {
            peer_ip(&peers[k].sa, &fk, ipk);
            repeat = fk == fam && memcmp(ipk, ip, 16) == 0;
        }
        need += !repeat && perm_slot(a, fam, ip) < 0;
    }
    /* An expired slot is reused by a new peer, unless one of the peers is its own IP. */
    for (uint32_t j = 0; j < a->nperms && spare < need; j++) {
        if (a->perms[j].expires_ms > now_ms)
            continue;
        int mine = 0;
        for (int i = 0; i < n && !mine; i++) {
            uint8_t fam, ip[16];
            peer_ip(&peers[i].sa, &fam, ip);
            mine = a->perms[j].family == fam && memcmp(a->perms[j].ip, ip, 16) == 0;
        }
        spare += !mine;
    }
    return need <= spare ? 0 : -ENOSPC;
}

int alloc_perm_check(const alloc_t *a, const struct sockaddr *peer, uint64_t now_ms)
{
    size_t n;
    const uint8_t *ip = sa_ip_bytes(peer, &n);
    for (uint32_t i = 0; i < a->nperms; i++) {
        const alloc_perm_t *p = &a->perms[i];
        if (p->family == peer->sa_family && p->expires_ms > now_ms && memcmp(p->ip, ip, n) == 0)
            return 1;
    }
    return 0;
}

alloc_chan_t *alloc_chan_by_number(const alloc_t *a, uint16_t number, uint64_t now_ms)
{
    for (uint32_t i = 0; i < a->nchans; i++)
        if (a->chans[i].number == number && a->chans[i].expires_ms > now_ms)
            return &a->chans[i];
    return NULL;
}

alloc_chan_t *alloc_chan_by_peer(const alloc_t *a, const struct sockaddr *peer, uint64_t now_ms)
{
    for (uint32_t i = 0; i < a->nchans; i++)
        if (a->chans[i].expires_ms > now_ms && sa_equal(&a->chans[i].peer.sa, peer))
            return &a->chans[i];
    return NULL;
}

int alloc_chan_bind(alloc_t *a, uint16_t number, const struct sockaddr *peer, uint64_t now_ms,
                    unsigned max)
{
    assert(!a->dead);
    alloc_chan_t *by_num = alloc_chan_by_number(a, number, now_ms);
    alloc_chan_t *by_peer = alloc_chan_by_peer(a, peer, now_ms);
    /* RFC 8656 §12.2: a number bound to another peer, or a peer bound to another number, is 400. */
    if (by_num != by_peer)
        return -EINVAL;
    if (by_num) {
        by_num->expires_ms = now_ms + chan_ms(a);
        return 0;
    }
    alloc_chan_t *slot = NULL;
    for (uint32_t i = 0; i < a->nchans && !slot; i++)
        if (a->chans[i].expires_ms <= now_ms)
            slot = &a->chans[i];
    if (!slot) {
        if (a->nchans >= max)
            return -ENOSPC;
        if (a->nchans == a->capchans) {
            uint32_t cap = next_cap(a->capchans, 1, max);
            alloc_chan_t *nc = realloc(a->chans, (size_t)cap * sizeof(*nc));
            if (!nc)
                return -ENOMEM;
            a->chans = nc;
            a->capchans = cap;
        }
        slot = &a->chans[a->nchans++];
    }
    memset(slot, 0, sizeof(*slot));
    slot->number = number;
    memcpy(&slot->peer, peer, sa_len(peer));
    slot->expires_ms = now_ms + chan_ms(a);
    return 0;
}

int alloc_expire(alloc_t *a, uint64_t now_ms)
{
    uint32_t n = 0;
    for (uint32_t i = 0; i < a->nperms; i++)
        if (a->perms[i].expires_ms > now_ms)
            a->perms[n++] = a->perms[i];
    a->nperms = n;
    n = 0;
    for (uint32_t i = 0; i < a->nchans; i++)
        if (a->chans[i].expires_ms > now_ms)
            a->chans[n++] = a->chans[i];
    a->nchans = n;
    return a->expires_ms <= now_ms;
}

alloc_relay_t *alloc_relay_for(alloc_t *a, int family)
{
    for (int i = 0; i < a->nrelay; i++)
        if (a->relay[i].addr.sa.sa_family == family)
            return &a->relay[i];
    return NULL;
}
