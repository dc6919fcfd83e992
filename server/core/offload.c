/* offload.c - the kernel fast path's control plane on a worker (offload.h, docs/KERNEL.md).
 *
 * The engine calls the offload hook whenever what the kernel must know about an allocation
 * changes; this file then makes the kernel's maps say exactly what the allocation allows now, by
 * diffing the allocation against what it installed before (kept per allocation), so a refresh
 * rewrites only the entries whose expiry moved and a permission or channel that went (expiry, a
 * channel number rebound to another peer) loses its keys. Entries, per kpath_abi.h:
 *   - the allocation: kp_c2p {client 5-tuple, channel 0} and kp_p2c {relay, peer zero}, expiring
 *     with the allocation;
 *   - each live permission: kp_perm {slot, peer IP}, expiring at min(permission, allocation);
 *   - each live channel: kp_c2p {client 5-tuple, number} at min(channel, allocation), and kp_p2c
 *     {relay, peer IP:port} at min(channel, the peer IP's permission, allocation): user space
 *     relays a peer's datagram only under a permission (RFC 8656 §9, dispatch_relay_input), even
 *     on a bound channel, while ChannelData from the client needs only the channel.
 * Only UDP clients whose family is the relayed address's are offloaded (a TCP, TLS or DTLS client
 * leg, RFC 6062, and RFC 6156's mixed families stay in user space); peers of the other family of a
 * dual-stack allocation too. Only peers that passed the peer policy are ever installed: the
 * engine installs nothing else.
 *
 * Clocks: the engine's now_ms is the worker's libuv loop time, uv_now(): libuv's
 * uv__hrtime(UV_CLOCK_FAST) / 1e6, which on Linux is CLOCK_MONOTONIC, or CLOCK_MONOTONIC_COARSE
 * when that has 1 ms resolution or better: the same clock (the coarse one is the monotonic clock
 * read at the last tick). The program's expiries are CLOCK_MONOTONIC in ns, so an expiry of E ms
 * is E * 1e6 ns for it. The loop time lags the real clock by up to a tick plus a loop iteration,
 * and the program's clock runs up to 10 ms ahead of it (kpath.bpf.c: the coarse clock plus a
 * tick), so the kernel's copy of an expiry can only fall a few ms before user space's: past it,
 * datagrams go to user space, which still decides as before.
 *
 * Server address: the c2p key holds the listener's bound address, all zero for a wildcard
 * listener (the program then matches any). The p2c value must say which source the datagram to
 * the client leaves from: user space sends from the wildcard socket with sendto and no source
 * given, so the kernel picks the source by a route lookup towards the client (the route's
 * preferred source, else the outgoing interface's primary address); connect() on a fresh UDP
 * socket runs that same lookup (ip_route_connect / ip6_dst_lookup) and getsockname() reads what it
 * chose. Done once per allocation.
 *
 * Slots: each worker owns KPATH_MAX_SLOTS / nworkers of the kernel's per-allocation slots (bucket
 * and counters): no lock. No slot free, or a map full (-E2BIG): that allocation, or that entry,
 * stays in user space, counted (kpath_refused_slot, kpath_refused_full). Memory per allocation is
 * bounded by max-permissions and max-channels (what the allocation itself may hold).
 */
#include "offload.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "kpath_abi.h"
#include "log.h"
#include "rand.h"
#include "siphash.h"
#include "sockaddr_util.h"
#include "worker.h"

_Static_assert((int)STATS_KERNEL_N == (int)KPATH_G_N,
               "stats.h's STATS_KERNEL lists kpath_abi.h's KPATH_G_*");

#define NS_PER_MS 1000000ULL
#define NO_SLOT UINT32_MAX

typedef struct {
    uint8_t ip[16];
    uint64_t ns; /* the expiry installed */
    bool live;   /* seen live in the allocation at this sync */
} off_perm_t;

typedef struct {
    uint16_t number;
    uint16_t port; /* network order */
    uint8_t ip[16];
    uint64_t c2p_ns, p2c_ns; /* installed expiries; 0: that entry is not installed */
    bool live;               /* seen live in the allocation at this sync */
} off_chan_t;

/* An open-addressing index (keyed SipHash: peers choose their addresses) from a permission's IP
 * or a channel's (number, peer) to its position in off_alloc_t's table, rebuilt at each sync, so
 * a sync costs O(permissions + channels): max-permissions goes to 65535, and a linear search per
 * entry made one CreatePermission at that size cost billions of comparisons. Positions + 1; 0 is
 * empty. */
typedef struct {
    uint32_t *pos;
    uint32_t mask; /* capacity - 1; capacity a power of two, at least twice the entries */
} off_index_t;

typedef struct {
    uint32_t slot; /* NO_SLOT: refused, user space for the allocation's life */
    uint8_t family;
    int af;
    struct kpath_c2p_key ckey; /* channel 0 */
    struct kpath_c2p_val cval; /* peer zero */
    struct kpath_p2c_key pkey; /* peer zero */
    struct kpath_p2c_val pval; /* channel 0 */
    uint64_t c2p_ns, p2c_ns;   /* the allocation's entries; 0: not installed */
    off_perm_t *perms;
    uint32_t nperms, capperms;
    off_chan_t *chans;
    uint32_t nchans, capchans;
    off_index_t pidx, cidx;
    struct kpath_count folded; /* the kernel's counts already in a->traffic */
} off_alloc_t;

struct offload {
    kpath_t *k;
    stats_t *stats;
    uint32_t lo, hi; /* this worker's slots */
    uint32_t *free;  /* stack of free slots */
    uint32_t nfree;
    log_limit_t errlog;
    uint64_t now_ms;              /* the engine's clock at the last sync (for errlog) */
    uint8_t key[SIPHASH_KEY_LEN]; /* off_index_t's hash */
};

int offload_new(kpath_t *k, int id, int nworkers, stats_t *stats, offload_t **out)
{
    *out = NULL;
    if (!k)
        return 0;
    offload_t *o = calloc(1, sizeof(*o));
    uint32_t per = KPATH_MAX_SLOTS / (uint32_t)(nworkers > 0 ? nworkers : 1);
    if (!o || !(o->free = malloc((per ? per : 1) * sizeof(uint32_t)))) {
        free(o);
        return -ENOMEM;
    }
    o->k = k;
    o->stats = stats;
    rand_bytes(o->key, sizeof(o->key));
    o->lo = (uint32_t)id * per;
    o->hi = o->lo + per;
    /* Lowest slot on top: handed out first. */
    for (uint32_t s = o->hi; s > o->lo; s--)
        o->free[o->nfree++] = s - 1;
    *out = o;
    return 0;
}

void offload_free(offload_t *o)
{
    if (!o)
        return;
    free(o->free);
    free(o);
}

static void entries(offload_t *o, int64_t delta)
{
    stats_gauge_add(&o->stats->kpath_entries, delta);
}

/* A map write's result: 1 installed; 0 refused (full: counted; other errors: counted, logged). */
static int wrote(offload_t *o, int rc, const char *what)
{
    if (rc == 0)
        return 1;
    if (rc == -E2BIG) {
        stats_inc(&o->stats->kpath_refused_full);
    } else {
        stats_inc(&o->stats->kpath_errors);
        if (log_limit_take(&o->errlog, o->now_ms, 0.1, 5))
            LOGW("offload", "kernel path: writing %s: %s (it stays in user space)", what,
                 strerror(-rc));
    }
    return 0;
}

static void removed(offload_t *o, int rc)
{
    if (rc == 0)
        entries(o, -1);
    else if (rc != -ENOENT)
        stats_inc(&o->stats->kpath_errors);
}

static void ip_of(const struct sockaddr *sa, uint8_t ip[16])
{
    size_t n;
    const uint8_t *p = sa_ip_bytes(sa, &n);
    memset(ip, 0, 16);
    memcpy(ip, p, n < 16 ? n : 16);
}

static int is_zero(const uint8_t ip[16])
{
    static const uint8_t zero[16];
    return memcmp(ip, zero, 16) == 0;
}

/* The source the kernel gives a datagram to `to` from an unbound socket (see the top). */
static int route_source(const struct sockaddr *to, uint8_t ip[16])
{
    int fd = socket(to->sa_family, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    sa_any_t me;
    socklen_t len = sizeof(me);
    int rc = 0;
    if (connect(fd, to, sa_len(to)) != 0 || getsockname(fd, &me.sa, &len) != 0)
        rc = -errno;
    else
        ip_of(&me.sa, ip);
    close(fd);
    return rc;
}

/* A new allocation's state, or NULL when it stays in user space (not eligible, or no memory). */
static off_alloc_t *state_new(offload_t *o, const cfg_t *cfg, alloc_t *a)
{
    const struct sockaddr *client = a->client.remote, *local = a->client.local;
    if (a->client.transport != TURN_UDP || a->tcp || !client || !local ||
        (client->sa_family != AF_INET && client->sa_family != AF_INET6) ||
        local->sa_family != client->sa_family)
        return NULL;
    alloc_relay_t *r = alloc_relay_for(a, client->sa_family);
    if (!r)
        return NULL; /* RFC 6156: a relayed address of the other family */
    off_alloc_t *st = calloc(1, sizeof(*st));
    if (!st)
        return NULL;
    st->slot = NO_SLOT;
    st->af = client->sa_family;
    st->family = st->af == AF_INET ? 4 : 6;
    if (o->nfree == 0) {
        stats_inc(&o->stats->kpath_refused_slot);
        return st;
    }
    uint8_t src[16];
    ip_of(local, src);
    struct kpath_c2p_key *ck = &st->ckey;
    ip_of(client, ck->client_ip);
    memcpy(ck->server_ip, src, 16);
    ck->client_port = htons(sa_port(client));
    ck->server_port = htons(sa_port(local));
    ck->family = st->family;
    struct kpath_p2c_key *pk = &st->pkey;
    ip_of(&r->addr.sa, pk->relay_ip);
    pk->relay_port = htons(sa_port(&r->addr.sa));
    pk->family = st->family;
    if (is_zero(src) && route_source(client, src) != 0) {
        stats_inc(&o->stats->kpath_errors);
        return st; /* no source to send from: user space */
    }
    if (is_zero(pk->relay_ip))
        return st; /* a wildcard relay address: peers' datagrams cannot be matched */
    uint32_t slot = o->free[o->nfree - 1];
    long bps = cfg->max_bps > 0 ? cfg->max_bps : 0;
    if (!wrote(o, kpath_slot_reset(o->k, slot, (uint64_t)bps), "a slot"))
        return st;
    o->nfree--;
    st->slot = slot;
    stats_inc(&o->stats->kpath_allocs);
    stats_gauge_add(&o->stats->kpath_slots, 1);
    st->cval.slot = slot;
    memcpy(st->cval.relay_ip, pk->relay_ip, 16);
    st->cval.relay_port = pk->relay_port;
    st->pval.slot = slot;
    st->pval.client_port = ck->client_port;
    st->pval.server_port = ck->server_port;
    memcpy(st->pval.client_ip, ck->client_ip, 16);
    memcpy(st->pval.server_ip, src, 16);
    return st;
}

/* ---- the allocation's own entries ---- */

static void sync_alloc(offload_t *o, off_alloc_t *st, uint64_t ns)
{
    if (st->c2p_ns != ns) {
        struct kpath_c2p_val v = st->cval;
        v.expires_ns = ns;
        int was = st->c2p_ns != 0;
        if (wrote(o, kpath_c2p_set(o->k, &st->ckey, &v), "an allocation (c2p)")) {
            st->c2p_ns = ns;
            entries(o, !was);
        }
    }
    if (st->p2c_ns != ns) {
        struct kpath_p2c_val v = st->pval;
        v.expires_ns = ns;
        int was = st->p2c_ns != 0;
        if (wrote(o, kpath_p2c_set(o->k, &st->pkey, &v), "an allocation (p2c)")) {
            st->p2c_ns = ns;
            entries(o, !was);
        }
    }
}

/* ---- permissions ---- */

static struct kpath_perm_key perm_key(const off_alloc_t *st, const uint8_t ip[16])
{
    struct kpath_perm_key k;
    memset(&k, 0, sizeof(k));
    k.slot = st->slot;
    k.family = st->family;
    memcpy(k.peer_ip, ip, 16);
    return k;
}

/* The live permission of `a` for this IP: its expiry in ms, or 0. */
static uint64_t min_u64(uint64_t x, uint64_t y) { return x < y ? x : y; }

/* `tab` (of *cap elements of `size` bytes), grown to hold at least `need`: the table to use, or
 * NULL (no memory; `tab` unchanged and still the caller's). */
static void *room(void *tab, uint32_t *cap, uint32_t need, size_t size)
{
    if (*cap >= need)
        return tab;
    void *p = realloc(tab, (size_t)need * size);
    if (p)
        *cap = need;
    return p;
}

/* Empty `x` with room for `n` entries. 0 or -ENOMEM. */
static int index_reset(off_index_t *x, uint32_t n)
{
    uint32_t cap = 16;
    while (cap < 2 * n + 2)
        cap <<= 1;
    if (!x->pos || x->mask + 1 < cap || x->mask + 1 > 4 * cap) {
        uint32_t *p = calloc(cap, sizeof(*p));
        if (!p)
            return -ENOMEM;
        free(x->pos);
        x->pos = p;
        x->mask = cap - 1;
        return 0;
    }
    memset(x->pos, 0, (x->mask + 1) * sizeof(*x->pos));
    return 0;
}

/* The position of permission `ip` in st->perms, or -1; with add >= 0, record that position for
 * it when absent. */
static int64_t perm_find(const offload_t *o, off_alloc_t *st, const uint8_t ip[16], int64_t add)
{
    off_index_t *x = &st->pidx;
    for (uint32_t h = (uint32_t)siphash(o->key, ip, 16) & x->mask;; h = (h + 1) & x->mask) {
        if (x->pos[h] == 0) {
            if (add >= 0)
                x->pos[h] = (uint32_t)add + 1;
            return -1;
        }
        if (memcmp(st->perms[x->pos[h] - 1].ip, ip, 16) == 0)
            return x->pos[h] - 1;
    }
}

/* Index st->perms. 0 or -ENOMEM. */
static int perm_index(const offload_t *o, off_alloc_t *st, uint32_t room)
{
    if (index_reset(&st->pidx, room) != 0)
        return -ENOMEM;
    for (uint32_t i = 0; i < st->nperms; i++)
        perm_find(o, st, st->perms[i].ip, i);
    return 0;
}

/* The installed expiry of the permission for `ip`, or 0 (after sync_perms: the index is current).
 */
static uint64_t perm_ns(const offload_t *o, off_alloc_t *st, const uint8_t ip[16])
{
    if (!st->pidx.pos)
        return 0;
    int64_t i = perm_find(o, st, ip, -1);
    return i < 0 ? 0 : st->perms[i].ns;
}

static void sync_perms(offload_t *o, off_alloc_t *st, const alloc_t *a, uint64_t now_ms,
                       uint64_t alloc_ms)
{
    uint32_t need = st->nperms + a->nperms;
    /* No memory: the rest stays as it was until the next change. */
    off_perm_t *perms = room(st->perms, &st->capperms, need, sizeof(*perms));
    if (!perms)
        return;
    st->perms = perms;
    if (perm_index(o, st, need) != 0)
        return;
    /* Mark what is still live; then remove the rest; then set what is new or moved. */
    for (uint32_t i = 0; i < st->nperms; i++)
        st->perms[i].live = false;
    for (uint32_t j = 0; j < a->nperms; j++) {
        const alloc_perm_t *p = &a->perms[j];
        int64_t i;
        if (p->family == st->af && p->expires_ms > now_ms && (i = perm_find(o, st, p->ip, -1)) >= 0)
            st->perms[i].live = true;
    }
    for (uint32_t i = 0; i < st->nperms;) {
        if (st->perms[i].live) {
            i++;
            continue;
        }
        struct kpath_perm_key k = perm_key(st, st->perms[i].ip);
        removed(o, kpath_perm_del(o->k, &k));
        st->perms[i] = st->perms[--st->nperms];
    }
    if (perm_index(o, st, need) != 0)
        return;
    for (uint32_t j = 0; j < a->nperms; j++) {
        const alloc_perm_t *p = &a->perms[j];
        if (p->family != st->af || p->expires_ms <= now_ms)
            continue;
        uint64_t ns = min_u64(p->expires_ms, alloc_ms) * NS_PER_MS;
        int64_t i = perm_find(o, st, p->ip, -1);
        if (i >= 0 && st->perms[i].ns == ns)
            continue;
        struct kpath_perm_key k = perm_key(st, p->ip);
        if (!wrote(o, kpath_perm_set(o->k, &k, ns), "a permission"))
            continue;
        if (i < 0) {
            i = st->nperms++;
            memcpy(st->perms[i].ip, p->ip, 16);
            st->perms[i].live = true;
            perm_find(o, st, p->ip, i);
            entries(o, 1);
        }
        st->perms[i].ns = ns;
    }
}

/* ---- channels ---- */

static struct kpath_c2p_key chan_ckey(const off_alloc_t *st, uint16_t number)
{
    struct kpath_c2p_key k = st->ckey;
    k.channel = number;
    return k;
}

static struct kpath_p2c_key chan_pkey(const off_alloc_t *st, const off_chan_t *c)
{
    struct kpath_p2c_key k = st->pkey;
    memcpy(k.peer_ip, c->ip, 16);
    k.peer_port = c->port;
    return k;
}

static void chan_of(const alloc_chan_t *ac, off_chan_t *c)
{
    memset(c, 0, sizeof(*c));
    c->number = ac->number;
    ip_of(&ac->peer.sa, c->ip);
    c->port = htons(sa_port(&ac->peer.sa));
}

/* The position of channel (number, peer) `c` in st->chans, or -1; with add >= 0, record that
 * position for it when absent. */
static int64_t chan_find(const offload_t *o, off_alloc_t *st, const off_chan_t *c, int64_t add)
{
    uint8_t key[20];
    memcpy(key, &c->number, 2);
    memcpy(key + 2, &c->port, 2);
    memcpy(key + 4, c->ip, 16);
    off_index_t *x = &st->cidx;
    for (uint32_t h = (uint32_t)siphash(o->key, key, sizeof(key)) & x->mask;;
         h = (h + 1) & x->mask) {
        if (x->pos[h] == 0) {
            if (add >= 0)
                x->pos[h] = (uint32_t)add + 1;
            return -1;
        }
        const off_chan_t *y = &st->chans[x->pos[h] - 1];
        if (y->number == c->number && y->port == c->port && memcmp(y->ip, c->ip, 16) == 0)
            return x->pos[h] - 1;
    }
}

static int chan_index(const offload_t *o, off_alloc_t *st, uint32_t room)
{
    if (index_reset(&st->cidx, room) != 0)
        return -ENOMEM;
    for (uint32_t i = 0; i < st->nchans; i++)
        chan_find(o, st, &st->chans[i], i);
    return 0;
}

static void chan_remove(offload_t *o, off_alloc_t *st, off_chan_t *c)
{
    if (c->c2p_ns) {
        struct kpath_c2p_key k = chan_ckey(st, c->number);
        removed(o, kpath_c2p_del(o->k, &k));
    }
    if (c->p2c_ns) {
        struct kpath_p2c_key k = chan_pkey(st, c);
        removed(o, kpath_p2c_del(o->k, &k));
    }
    c->c2p_ns = c->p2c_ns = 0;
}

static void chan_install(offload_t *o, off_alloc_t *st, off_chan_t *c, uint64_t c2p_ns,
                         uint64_t p2c_ns)
{
    if (c->c2p_ns != c2p_ns) {
        struct kpath_c2p_key k = chan_ckey(st, c->number);
        struct kpath_c2p_val v = st->cval;
        v.expires_ns = c2p_ns;
        memcpy(v.peer_ip, c->ip, 16);
        v.peer_port = c->port;
        int was = c->c2p_ns != 0;
        if (wrote(o, kpath_c2p_set(o->k, &k, &v), "a channel (c2p)")) {
            c->c2p_ns = c2p_ns;
            entries(o, !was);
        }
    }
    struct kpath_p2c_key pk = chan_pkey(st, c);
    if (p2c_ns == 0 && c->p2c_ns) {
        removed(o, kpath_p2c_del(o->k, &pk)); /* no permission for the peer any more */
        c->p2c_ns = 0;
    } else if (p2c_ns && c->p2c_ns != p2c_ns) {
        struct kpath_p2c_val v = st->pval;
        v.expires_ns = p2c_ns;
        v.channel = c->number;
        int was = c->p2c_ns != 0;
        if (wrote(o, kpath_p2c_set(o->k, &pk, &v), "a channel (p2c)")) {
            c->p2c_ns = p2c_ns;
            entries(o, !was);
        }
    }
}

static void sync_chans(offload_t *o, off_alloc_t *st, const alloc_t *a, uint64_t now_ms,
                       uint64_t alloc_ms)
{
    uint32_t need = st->nchans + a->nchans;
    off_chan_t *chans = room(st->chans, &st->capchans, need, sizeof(*chans));
    if (!chans)
        return;
    st->chans = chans;
    if (chan_index(o, st, need) != 0)
        return;
    /* Removals first, so a number or a peer rebound elsewhere is free before it is set again. */
    for (uint32_t i = 0; i < st->nchans; i++)
        st->chans[i].live = false;
    for (uint32_t j = 0; j < a->nchans; j++) {
        const alloc_chan_t *ac = &a->chans[j];
        if (ac->expires_ms <= now_ms || ac->peer.sa.sa_family != st->af)
            continue;
        off_chan_t want;
        chan_of(ac, &want);
        int64_t i = chan_find(o, st, &want, -1);
        if (i >= 0)
            st->chans[i].live = true;
    }
    for (uint32_t i = 0; i < st->nchans;) {
        if (st->chans[i].live) {
            i++;
            continue;
        }
        chan_remove(o, st, &st->chans[i]);
        st->chans[i] = st->chans[--st->nchans];
    }
    if (chan_index(o, st, need) != 0)
        return;
    for (uint32_t j = 0; j < a->nchans; j++) {
        const alloc_chan_t *ac = &a->chans[j];
        if (ac->expires_ms <= now_ms || ac->peer.sa.sa_family != st->af)
            continue;
        off_chan_t want;
        chan_of(ac, &want);
        int64_t i = chan_find(o, st, &want, -1);
        if (i < 0) {
            i = st->nchans++;
            st->chans[i] = want;
            st->chans[i].live = true;
            chan_find(o, st, &want, i);
        }
        off_chan_t *have = &st->chans[i];
        uint64_t c2p = min_u64(ac->expires_ms, alloc_ms) * NS_PER_MS;
        /* The peer -> client entry ends with the peer's permission too (user space checks it
         * first): what sync_perms installed for that IP, 0 when none. */
        uint64_t p2c = min_u64(c2p, perm_ns(o, st, want.ip));
        chan_install(o, st, have, c2p, p2c);
    }
    /* Refused both ways: nothing in the kernel to remember (tried again at the next change). */
    for (uint32_t i = 0; i < st->nchans;) {
        if (st->chans[i].c2p_ns || st->chans[i].p2c_ns) {
            i++;
            continue;
        }
        st->chans[i] = st->chans[--st->nchans];
    }
}

/* ---- the hooks ---- */

void offload_fold(offload_t *o, alloc_t *a)
{
    off_alloc_t *st = a->offload;
    if (!o || !st || st->slot == NO_SLOT)
        return;
    struct kpath_count c;
    if (kpath_slot_counts(o->k, st->slot, &c) != 0) {
        stats_inc(&o->stats->kpath_errors);
        return;
    }
    /* Deltas since the last fold: user space's counts and the kernel's add up, once each. */
    a->traffic.to_peer_packets += c.to_peer_packets - st->folded.to_peer_packets;
    a->traffic.to_peer_bytes += c.to_peer_bytes - st->folded.to_peer_bytes;
    a->traffic.from_peer_packets += c.from_peer_packets - st->folded.from_peer_packets;
    a->traffic.from_peer_bytes += c.from_peer_bytes - st->folded.from_peer_bytes;
    st->folded = c;
}

int offload_charge(offload_t *o, alloc_t *a, size_t bytes)
{
    off_alloc_t *st = a->offload;
    if (!o || !st || st->slot == NO_SLOT)
        return -1;
    int rc = kpath_charge(o->k, st->slot, bytes);
    if (rc < 0) {
        stats_inc(&o->stats->kpath_errors);
        return -1;
    }
    return rc;
}

static void state_free(offload_t *o, alloc_t *a, off_alloc_t *st)
{
    for (uint32_t i = 0; i < st->nchans; i++)
        chan_remove(o, st, &st->chans[i]);
    for (uint32_t i = 0; i < st->nperms; i++) {
        struct kpath_perm_key k = perm_key(st, st->perms[i].ip);
        removed(o, kpath_perm_del(o->k, &k));
    }
    if (st->c2p_ns)
        removed(o, kpath_c2p_del(o->k, &st->ckey));
    if (st->p2c_ns)
        removed(o, kpath_p2c_del(o->k, &st->pkey));
    /* After the entries are gone nothing new is counted: the last fold is the total (a packet a
     * CPU is relaying at this very moment may still land, and is not counted). */
    offload_fold(o, a);
    if (st->slot != NO_SLOT) {
        o->free[o->nfree++] = st->slot;
        stats_gauge_add(&o->stats->kpath_slots, -1);
    }
    free(st->perms);
    free(st->chans);
    free(st->pidx.pos);
    free(st->cidx.pos);
    free(st);
    a->offload = NULL;
    a->kernel = false;
}

void offload_sync(offload_t *o, const cfg_t *cfg, alloc_t *a, uint64_t now_ms, int gone)
{
    if (!o)
        return;
    o->now_ms = now_ms;
    off_alloc_t *st = a->offload;
    if (gone) {
        if (st)
            state_free(o, a, st);
        return;
    }
    if (!st) {
        if (!(st = state_new(o, cfg, a)))
            return;
        a->offload = st;
    }
    if (st->slot == NO_SLOT || a->expires_ms <= now_ms)
        return;
    sync_alloc(o, st, a->expires_ms * NS_PER_MS);
    sync_perms(o, st, a, now_ms, a->expires_ms);
    sync_chans(o, st, a, now_ms, a->expires_ms);
    a->kernel = st->c2p_ns || st->p2c_ns || st->nperms || st->nchans;
}

static void hook_offload(void *env, alloc_t *a, int gone)
{
    worker_t *w = env;
    offload_sync(w->offload, w->dispatch.cfg, a, w->dispatch.now_ms, gone);
}

static void hook_fold(void *env, alloc_t *a)
{
    worker_t *w = env;
    offload_fold(w->offload, a);
}

static int hook_charge(void *env, alloc_t *a, size_t bytes)
{
    worker_t *w = env;
    return offload_charge(w->offload, a, bytes);
}

void offload_ops(offload_t *o, dispatch_relay_ops_t *ops)
{
    if (!o)
        return;
    ops->offload = hook_offload;
    ops->fold = hook_fold;
    ops->charge = hook_charge;
}
