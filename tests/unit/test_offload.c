/* test_offload.c - core/offload.c against a fake kernel: kpath.h's map writers are replaced by
 * tables in this file, so every entry the control plane writes, rewrites and deletes is seen,
 * with a test clock. What the integration test (test_kernel_control.py) cannot reach in seconds:
 * a channel number rebound to another peer after 600 s, a channel whose peer has no permission,
 * a full map (-E2BIG) and no free slot (counted, left in user space, retried at the next
 * change), and the fold's deltas.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "alloc.h"
#include "kpath.h"
#include "kpath_abi.h"
#include "offload.h"
#include "unit.h"

/* ---- the fake kernel: three small hash maps, a slot table ---- */

#define FAKE_MAX 64
/* Room for the largest key and value of the three maps (kpath_abi.h). */
#define FAKE_VAL                                                                                   \
    (sizeof(struct kpath_p2c_val) > sizeof(struct kpath_c2p_val) ? sizeof(struct kpath_p2c_val)    \
                                                                 : sizeof(struct kpath_c2p_val))
_Static_assert(sizeof(struct kpath_c2p_key) <= 40 && sizeof(struct kpath_p2c_key) <= 40 &&
                   sizeof(struct kpath_perm_key) <= 40 && sizeof(struct kpath_perm_val) <= FAKE_VAL,
               "the fake map's entries hold every key and value");
typedef struct {
    uint8_t key[40], val[FAKE_VAL];
    size_t klen;
    int used;
} fake_entry_t;
typedef struct {
    fake_entry_t e[FAKE_MAX];
    int n, cap; /* cap: -E2BIG past it (0: FAKE_MAX) */
} fake_map_t;

static fake_map_t c2p, p2c, perms;
static uint64_t slot_bps[4];
static int slot_resets;
static struct kpath_count counts;

static fake_entry_t *find(fake_map_t *m, const void *key, size_t klen)
{
    for (int i = 0; i < FAKE_MAX; i++)
        if (m->e[i].used && m->e[i].klen == klen && memcmp(m->e[i].key, key, klen) == 0)
            return &m->e[i];
    return NULL;
}

static int fake_set(fake_map_t *m, const void *key, size_t klen, const void *val, size_t vlen)
{
    fake_entry_t *e = find(m, key, klen);
    if (!e) {
        if (m->n >= (m->cap ? m->cap : FAKE_MAX))
            return -E2BIG;
        for (int i = 0; i < FAKE_MAX && !e; i++)
            if (!m->e[i].used)
                e = &m->e[i];
        e->used = 1;
        e->klen = klen;
        memcpy(e->key, key, klen);
        m->n++;
    }
    memset(e->val, 0, sizeof(e->val));
    CHECK(vlen <= sizeof(e->val) && klen <= sizeof(e->key));
    memcpy(e->val, val, vlen < sizeof(e->val) ? vlen : sizeof(e->val));
    return 0;
}

static int fake_del(fake_map_t *m, const void *key, size_t klen)
{
    fake_entry_t *e = find(m, key, klen);
    if (!e)
        return -ENOENT;
    e->used = 0;
    m->n--;
    return 0;
}

int kpath_c2p_set(kpath_t *k, const struct kpath_c2p_key *key, const struct kpath_c2p_val *val)
{
    (void)k;
    return fake_set(&c2p, key, sizeof(*key), val, sizeof(*val));
}
int kpath_c2p_del(kpath_t *k, const struct kpath_c2p_key *key)
{
    (void)k;
    return fake_del(&c2p, key, sizeof(*key));
}
int kpath_p2c_set(kpath_t *k, const struct kpath_p2c_key *key, const struct kpath_p2c_val *val)
{
    (void)k;
    return fake_set(&p2c, key, sizeof(*key), val, sizeof(*val));
}
int kpath_p2c_del(kpath_t *k, const struct kpath_p2c_key *key)
{
    (void)k;
    return fake_del(&p2c, key, sizeof(*key));
}
int kpath_perm_set(kpath_t *k, const struct kpath_perm_key *key, uint64_t expires_ns)
{
    (void)k;
    return fake_set(&perms, key, sizeof(*key), &expires_ns, sizeof(expires_ns));
}
int kpath_perm_del(kpath_t *k, const struct kpath_perm_key *key)
{
    (void)k;
    return fake_del(&perms, key, sizeof(*key));
}
int kpath_slot_reset(kpath_t *k, uint32_t slot, uint64_t bps)
{
    (void)k;
    slot_bps[slot % 4] = bps;
    slot_resets++;
    memset(&counts, 0, sizeof(counts));
    return 0;
}
static uint32_t charge_slot;
static uint64_t charge_bytes;
static int charge_rc = 1;
int kpath_charge(kpath_t *k, uint32_t slot, uint64_t bytes)
{
    (void)k;
    charge_slot = slot;
    charge_bytes = bytes;
    return charge_rc;
}
int kpath_slot_counts(kpath_t *k, uint32_t slot, struct kpath_count *sum)
{
    (void)k, (void)slot;
    *sum = counts;
    return 0;
}

/* ---- lookups in the fake maps ---- */

static struct kpath_c2p_val *c2p_get(const alloc_t *a, uint16_t channel)
{
    struct kpath_c2p_key k;
    memset(&k, 0, sizeof(k));
    const struct sockaddr_in *cl = (const struct sockaddr_in *)a->client.remote;
    const struct sockaddr_in *lo = (const struct sockaddr_in *)a->client.local;
    memcpy(k.client_ip, &cl->sin_addr, 4);
    memcpy(k.server_ip, &lo->sin_addr, 4);
    k.client_port = cl->sin_port;
    k.server_port = lo->sin_port;
    k.channel = channel;
    k.family = 4;
    fake_entry_t *e = find(&c2p, &k, sizeof(k));
    return e ? (struct kpath_c2p_val *)(void *)e->val : NULL;
}

static struct kpath_p2c_val *p2c_get(const alloc_t *a, const struct sockaddr_in *peer)
{
    struct kpath_p2c_key k;
    memset(&k, 0, sizeof(k));
    memcpy(k.relay_ip, &a->relay[0].addr.in.sin_addr, 4);
    k.relay_port = a->relay[0].addr.in.sin_port;
    if (peer) {
        memcpy(k.peer_ip, &peer->sin_addr, 4);
        k.peer_port = peer->sin_port;
    }
    k.family = 4;
    fake_entry_t *e = find(&p2c, &k, sizeof(k));
    return e ? (struct kpath_p2c_val *)(void *)e->val : NULL;
}

static uint64_t perm_get(uint32_t slot, const struct sockaddr_in *peer)
{
    struct kpath_perm_key k;
    memset(&k, 0, sizeof(k));
    k.slot = slot;
    k.family = 4;
    memcpy(k.peer_ip, &peer->sin_addr, 4);
    fake_entry_t *e = find(&perms, &k, sizeof(k));
    uint64_t ns = 0;
    if (e)
        memcpy(&ns, e->val, sizeof(ns));
    return ns;
}

/* ---- an allocation of the engine's, without the engine ---- */

static cfg_t cfg;
static stats_t stats;
static alloc_table_t table;
static offload_t *off;
static uint64_t now = 1000000;
static struct sockaddr_in client, local;

static struct sockaddr_in sin_of(const char *ip, uint16_t port)
{
    struct sockaddr_in s = {.sin_family = AF_INET, .sin_port = htons(port)};
    inet_pton(AF_INET, ip, &s.sin_addr);
    return s;
}

static void setup(int nworkers)
{
    memset(&c2p, 0, sizeof(c2p));
    memset(&p2c, 0, sizeof(p2c));
    memset(&perms, 0, sizeof(perms));
    memset(&stats, 0, sizeof(stats));
    slot_resets = 0;
    cfg_init(&cfg);
    cfg.max_bps = 64000;
    uint8_t key[SIPHASH_KEY_LEN] = {0};
    CHECK_INT(alloc_table_init(&table, key, 0), 0);
    static int fake_kpath;
    CHECK_INT(offload_new((kpath_t *)(void *)&fake_kpath, 0, nworkers, &stats, &off), 0);
    client = sin_of("127.0.0.1", 40000);
    local = sin_of("127.0.0.1", 3478);
}

static void teardown(void)
{
    offload_free(off);
    alloc_table_free(&table);
    cfg_free(&cfg);
}

static alloc_t *new_alloc(enum turn_transport tr, uint16_t cport, uint16_t rport)
{
    client.sin_port = htons(cport);
    turn_conn_t conn = {tr, (struct sockaddr *)&client, (struct sockaddr *)&local, NULL, NULL};
    alloc_t *a = alloc_insert(&table, &conn, now);
    CHECK(a != NULL);
    a->relay[0].addr.in = sin_of("127.0.0.1", rport);
    a->nrelay = 1;
    a->expires_ms = now + 600 * 1000;
    return a;
}

static void osync(alloc_t *a) { offload_sync(off, &cfg, a, now, 0); }

static void gone(alloc_t *a)
{
    offload_sync(off, &cfg, a, now, 1);
    alloc_remove(&table, a);
    alloc_free(a);
}

static long gauge(_Atomic int64_t *g) { return (long)atomic_load(g); }

#define NS(ms) ((uint64_t)(ms)*1000000ULL)

UNIT_TEST(entries_and_expiry)
{
    setup(2);
    alloc_t *a = new_alloc(TURN_UDP, 40000, 50000);
    osync(a);
    struct kpath_c2p_val *cv = c2p_get(a, 0);
    struct kpath_p2c_val *pv = p2c_get(a, NULL);
    CHECK(cv && pv);
    if (!cv || !pv)
        return;
    CHECK_INT((long)cv->expires_ns, (long)NS(a->expires_ms));
    CHECK_INT(cv->relay_port, htons(50000));
    CHECK_INT((long)slot_bps[cv->slot % 4], 64000); /* the bucket holds max-bps */
    CHECK_INT(pv->client_port, htons(40000));
    CHECK_INT(pv->server_port, htons(3478));
    CHECK(a->kernel);
    CHECK_INT(gauge(&stats.kpath_entries), 2);
    CHECK_INT(gauge(&stats.kpath_slots), 1);
    uint32_t slot = cv->slot;
    /* A channel whose peer has no permission: client -> peer only (RFC 8656 §9). */
    struct sockaddr_in p1 = sin_of("127.0.0.2", 5001), p2 = sin_of("127.0.0.3", 5002);
    CHECK_INT(alloc_chan_bind(a, 0x4001, (struct sockaddr *)&p1, now, 16), 0);
    osync(a);
    CHECK(c2p_get(a, 0x4001) != NULL && p2c_get(a, &p1) == NULL);
    CHECK_INT(alloc_perm_install(a, (struct sockaddr *)&p1, now, 16), 0);
    osync(a);
    CHECK(p2c_get(a, &p1) != NULL);
    CHECK_INT((long)perm_get(slot, &p1), (long)NS(now + 300 * 1000));
    if (p2c_get(a, &p1)) {
        CHECK_INT((long)p2c_get(a, &p1)->expires_ns, (long)NS(now + 300 * 1000)); /* the perm's */
        CHECK_INT(p2c_get(a, &p1)->channel, 0x4001);
    }
    CHECK_INT((long)c2p_get(a, 0x4001)->expires_ns, (long)NS(a->expires_ms)); /* min(600, 600) */
    CHECK_INT(gauge(&stats.kpath_entries), 5);
    /* A shorter lifetime pulls every expiry down to it. */
    a->expires_ms = now + 10 * 1000;
    osync(a);
    CHECK_INT((long)perm_get(slot, &p1), (long)NS(a->expires_ms));
    CHECK_INT((long)c2p_get(a, 0x4001)->expires_ns, (long)NS(a->expires_ms));
    CHECK_INT((long)p2c_get(a, NULL)->expires_ns, (long)NS(a->expires_ms));
    a->expires_ms = now + 3600 * 1000;
    osync(a);
    /* 600 s later the channel and permission expire (the sweep's alloc_expire, then sync). */
    now += 601 * 1000;
    alloc_expire(a, now);
    osync(a);
    CHECK(c2p_get(a, 0x4001) == NULL && p2c_get(a, &p1) == NULL && perm_get(slot, &p1) == 0);
    CHECK_INT(gauge(&stats.kpath_entries), 2);
    /* The number rebound to another peer: the old peer's keys are gone, the new one's set. */
    CHECK_INT(alloc_chan_bind(a, 0x4001, (struct sockaddr *)&p2, now, 16), 0);
    CHECK_INT(alloc_perm_install(a, (struct sockaddr *)&p2, now, 16), 0);
    osync(a);
    CHECK(c2p_get(a, 0x4001) && c2p_get(a, 0x4001)->peer_port == htons(5002));
    CHECK(p2c_get(a, &p2) != NULL && p2c_get(a, &p1) == NULL);
    /* The same number rebound without a sweep between (the old one expired in place). */
    now += 601 * 1000;
    CHECK_INT(alloc_chan_bind(a, 0x4001, (struct sockaddr *)&p1, now, 16), 0);
    CHECK_INT(alloc_perm_install(a, (struct sockaddr *)&p1, now, 16), 0);
    osync(a);
    CHECK(c2p_get(a, 0x4001) && c2p_get(a, 0x4001)->peer_port == htons(5001));
    CHECK(p2c_get(a, &p1) != NULL && p2c_get(a, &p2) == NULL && perm_get(slot, &p2) == 0);
    CHECK_INT(gauge(&stats.kpath_entries), 5);
    gone(a);
    CHECK_INT(c2p.n + p2c.n + perms.n, 0);
    CHECK_INT(gauge(&stats.kpath_entries), 0);
    CHECK_INT(gauge(&stats.kpath_slots), 0);
    teardown();
}

UNIT_TEST(not_offloaded)
{
    setup(1);
    alloc_t *t = new_alloc(TURN_TCP, 40001, 50001);
    osync(t);
    CHECK(t->offload == NULL && !t->kernel);
    alloc_t *a = new_alloc(TURN_UDP, 40002, 50002);
    a->relay[0].addr.in6 = (struct sockaddr_in6){.sin6_family = AF_INET6, .sin6_port = 1};
    osync(a); /* RFC 6156: an IPv4 client with an IPv6 relayed address */
    CHECK(a->offload == NULL);
    CHECK_INT(c2p.n + p2c.n + perms.n, 0);
    gone(t);
    gone(a);
    teardown();
}

UNIT_TEST(full_and_no_slot)
{
    /* 65536 workers: one slot each. */
    setup(KPATH_MAX_SLOTS);
    alloc_t *a = new_alloc(TURN_UDP, 40003, 50003);
    alloc_t *b = new_alloc(TURN_UDP, 40004, 50004);
    osync(a);
    osync(b);
    CHECK(a->kernel && !b->kernel);
    CHECK_INT((long)atomic_load(&stats.kpath_refused_slot), 1);
    CHECK(c2p_get(b, 0) == NULL);
    osync(b); /* refused for its life: counted once */
    CHECK_INT((long)atomic_load(&stats.kpath_refused_slot), 1);
    /* A full map: that entry stays in user space, counted, and is tried again at the next
     * change. */
    c2p.cap = c2p.n;
    struct sockaddr_in p = sin_of("127.0.0.4", 5004);
    CHECK_INT(alloc_chan_bind(a, 0x4005, (struct sockaddr *)&p, now, 16), 0);
    CHECK_INT(alloc_perm_install(a, (struct sockaddr *)&p, now, 16), 0);
    osync(a);
    CHECK(c2p_get(a, 0x4005) == NULL && p2c_get(a, &p) != NULL);
    CHECK_INT((long)atomic_load(&stats.kpath_refused_full), 1);
    c2p.cap = 0;
    now += 1000;
    CHECK_INT(alloc_chan_bind(a, 0x4005, (struct sockaddr *)&p, now, 16), 0); /* refreshed */
    osync(a);
    CHECK(c2p_get(a, 0x4005) != NULL);
    gone(a);
    gone(b);
    CHECK_INT(c2p.n + p2c.n + perms.n, 0);
    /* The slot is free again. */
    alloc_t *c = new_alloc(TURN_UDP, 40005, 50005);
    osync(c);
    CHECK(c->kernel);
    gone(c);
    teardown();
}

UNIT_TEST(fold_deltas)
{
    setup(1);
    alloc_t *a = new_alloc(TURN_UDP, 40006, 50006);
    osync(a);
    a->traffic.to_peer_packets = 2; /* what user space relayed */
    a->traffic.to_peer_bytes = 20;
    counts = (struct kpath_count){
        .to_peer_packets = 5, .to_peer_bytes = 500, .from_peer_packets = 7, .from_peer_bytes = 700};
    offload_fold(off, a);
    offload_fold(off, a); /* nothing new: nothing added */
    CHECK_INT((long)a->traffic.to_peer_packets, 7);
    CHECK_INT((long)a->traffic.to_peer_bytes, 520);
    CHECK_INT((long)a->traffic.from_peer_packets, 7);
    counts.from_peer_packets = 9;
    counts.from_peer_bytes = 900;
    offload_fold(off, a);
    CHECK_INT((long)a->traffic.from_peer_packets, 9);
    CHECK_INT((long)a->traffic.from_peer_bytes, 900);
    counts.to_peer_packets = 6; /* counted after the last read: folded by the delete */
    offload_sync(off, &cfg, a, now, 1);
    CHECK_INT((long)a->traffic.to_peer_packets, 8);
    CHECK(a->offload == NULL);
    alloc_remove(&table, a);
    alloc_free(a);
    teardown();
}

/* User space's datagrams of an offloaded allocation are charged to its kernel bucket (one max-bps
 * for both paths); one without a slot, or a failed call, leaves it to the engine's own bucket. */
UNIT_TEST(charge_shares_the_kernel_bucket)
{
    setup(KPATH_MAX_SLOTS); /* one slot: the second allocation gets none */
    alloc_t *a = new_alloc(TURN_UDP, 40007, 50007);
    alloc_t *b = new_alloc(TURN_UDP, 40008, 50008);
    osync(a);
    osync(b);
    CHECK(a->kernel && !b->kernel);
    uint32_t slot = c2p_get(a, 0)->slot;
    charge_rc = 1;
    CHECK_INT(offload_charge(off, a, 1200), 1);
    CHECK_INT((long)charge_slot, (long)slot);
    CHECK_INT((long)charge_bytes, 1200);
    charge_rc = 0;
    CHECK_INT(offload_charge(off, a, 1300), 0);
    CHECK_INT((long)charge_bytes, 1300);
    charge_bytes = 0;
    CHECK_INT(offload_charge(off, b, 100), -1);
    CHECK_INT((long)charge_bytes, 0); /* no slot: the kernel is not asked */
    long errs = (long)atomic_load(&stats.kpath_errors);
    charge_rc = -EPERM;
    CHECK_INT(offload_charge(off, a, 100), -1);
    CHECK_INT((long)atomic_load(&stats.kpath_errors), errs + 1);
    charge_rc = 1;
    gone(a);
    gone(b);
    teardown();
}

UNIT_TEST(wildcard_listener)
{
    setup(1);
    local = sin_of("0.0.0.0", 3478);
    alloc_t *a = new_alloc(TURN_UDP, 40007, 50007);
    osync(a);
    struct kpath_p2c_val *pv = p2c_get(a, NULL);
    CHECK(c2p_get(a, 0) != NULL && pv != NULL); /* c2p key: server all zero */
    uint8_t lo[16] = {127, 0, 0, 1};
    if (pv) /* the source the kernel picks towards 127.0.0.1 */
        CHECK_MEM(pv->server_ip, lo, 16);
    gone(a);
    teardown();
}

UNIT_MAIN("test_offload")
