/* test_alloc.c - one worker's allocation table (server/turn/alloc.c): the 5-tuple table, ids,
 * permissions, channel bindings and expiry, on a test clock.
 *
 * What alloc.h promises: an allocation is found by its exact 5-tuple (transport, client address and
 * port, the listener it came in on: RFC 8656 §2.2) and no other, also after the table has grown,
 * and not after it was removed; ids are unique and carry the worker's bits; permissions are per
 * peer IP, last exactly 300 s, are refreshed by a new install, and stop at `max` (expired slots
 * reused; alloc_perm_fits agrees with what installing would do); a channel number and a peer
 * transport address are bound one-to-one for 600 s (RFC 8656 §12.2), up to `max`; alloc_expire
 * drops what has expired and says when the allocation has.
 *
 * Out of memory (after nghttp2's failmalloc; the code is ours): the program is linked with
 * -Wl,--wrap=calloc,--wrap=realloc (Makefile.am), so every allocation alloc.c makes can be made to
 * fail. One scenario runs again and again with its k-th allocation failing, for every k: each call
 * must fail as alloc.h says (NULL, -ENOMEM) and leave the table whole (ASan checks the memory).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "alloc.h"
#include "unit.h"

/* ---- failmalloc: the k-th calloc/realloc from now fails ---- */

void *__real_calloc(size_t n, size_t size);
void *__real_realloc(void *p, size_t size);
void *__wrap_calloc(size_t n, size_t size);
void *__wrap_realloc(void *p, size_t size);

static long fail_countdown; /* 0: off; else the allocation that fails (1: the next one) */
static long allocs_seen;

static int fail_now(void)
{
    allocs_seen++;
    return fail_countdown > 0 && --fail_countdown == 0;
}

void *__wrap_calloc(size_t n, size_t size) { return fail_now() ? NULL : __real_calloc(n, size); }

void *__wrap_realloc(void *p, size_t size) { return fail_now() ? NULL : __real_realloc(p, size); }

static const uint8_t KEY[SIPHASH_KEY_LEN] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16};

static sa_any_t v4(const char *ip, uint16_t port)
{
    sa_any_t a;
    memset(&a, 0, sizeof(a));
    a.in.sin_family = AF_INET;
    a.in.sin_port = htons(port);
    inet_pton(AF_INET, ip, &a.in.sin_addr);
    return a;
}

static sa_any_t v6(const char *ip, uint16_t port)
{
    sa_any_t a;
    memset(&a, 0, sizeof(a));
    a.in6.sin6_family = AF_INET6;
    a.in6.sin6_port = htons(port);
    inet_pton(AF_INET6, ip, &a.in6.sin6_addr);
    return a;
}

/* The one place that knows the client struct: insert an allocation for this 5-tuple. */
static alloc_t *insert(alloc_table_t *t, int transport, const sa_any_t *remote,
                       const struct sockaddr *local, uint64_t now_ms)
{
    turn_conn_t c;
    memset(&c, 0, sizeof(c));
    c.transport = (enum turn_transport)transport;
    c.remote = &remote->sa;
    c.local = local;
    return alloc_insert(t, &c, now_ms);
}

/* Two listeners: the table compares them by address of the socket's sockaddr (one per worker). */
static sa_any_t listen_a, listen_b;

static alloc_t *find(const alloc_table_t *t, int transport, const sa_any_t *remote,
                     const struct sockaddr *local)
{
    return alloc_find(t, (enum turn_transport)transport, &remote->sa, local);
}

UNIT_TEST(table_insert_find_remove)
{
    alloc_table_t t;
    listen_a = v4("127.0.0.1", 3478);
    listen_b = v4("127.0.0.1", 3479);
    sa_any_t c1 = v4("192.0.2.1", 50000), c2 = v4("192.0.2.1", 50001),
             c3 = v6("2001:db8::1", 50000);

    CHECK_INT(alloc_table_init(&t, KEY, 0), 0);
    alloc_t *a1 = insert(&t, 0, &c1, &listen_a.sa, 1000);
    alloc_t *a2 = insert(&t, 0, &c2, &listen_a.sa, 1000);
    alloc_t *a3 = insert(&t, 0, &c3, &listen_a.sa, 1000);
    alloc_t *a4 = insert(&t, 1, &c1, &listen_a.sa, 1000); /* same client, other transport */
    alloc_t *a5 = insert(&t, 0, &c1, &listen_b.sa, 1000); /* same client, other listener */
    CHECK(a1 && a2 && a3 && a4 && a5);
    if (!(a1 && a2 && a3 && a4 && a5))
        return;
    CHECK_INT(t.count, 5);
    CHECK_INT(a1->created_ms, 1000);
    CHECK(find(&t, 0, &c1, &listen_a.sa) == a1);
    CHECK(find(&t, 0, &c2, &listen_a.sa) == a2);
    CHECK(find(&t, 0, &c3, &listen_a.sa) == a3);
    CHECK(find(&t, 1, &c1, &listen_a.sa) == a4);
    CHECK(find(&t, 0, &c1, &listen_b.sa) == a5);
    /* Not the same 5-tuple: another port, another address, v4 vs v6 of the "same" bytes. */
    sa_any_t other_port = v4("192.0.2.1", 50002), other_ip = v4("192.0.2.2", 50000);
    sa_any_t mapped = v6("::ffff:192.0.2.1", 50000);
    CHECK(find(&t, 0, &other_port, &listen_a.sa) == NULL);
    CHECK(find(&t, 0, &other_ip, &listen_a.sa) == NULL);
    CHECK(find(&t, 0, &mapped, &listen_a.sa) == NULL);
    CHECK(find(&t, 2, &c1, &listen_a.sa) == NULL);
    /* The list holds all, newest first. */
    CHECK(t.all.next == &a5->link);
    CHECK(t.all.prev == &a1->link);

    alloc_remove(&t, a2);
    CHECK(a2->dead);
    CHECK_INT(t.count, 4);
    CHECK(find(&t, 0, &c2, &listen_a.sa) == NULL);
    CHECK(find(&t, 0, &c1, &listen_a.sa) == a1);
    alloc_remove(&t, a2); /* a second remove is a no-op */
    CHECK_INT(t.count, 4);
    alloc_free(a2);
    /* The tuple may be allocated again at once. */
    alloc_t *again = insert(&t, 0, &c2, &listen_a.sa, 2000);
    CHECK(again && find(&t, 0, &c2, &listen_a.sa) == again);
    CHECK_INT(t.count, 5);
    alloc_table_free(&t); /* frees what is still in it (ASan: no leak) */
}

/* Past the initial 1024 buckets the table doubles; every allocation is still found. */
UNIT_TEST(table_grows)
{
    alloc_table_t t;
    enum { N = 3000 };
    static alloc_t *as[N];
    CHECK_INT(alloc_table_init(&t, KEY, 0), 0);
    size_t initial = t.nbuckets;
    for (int i = 0; i < N; i++) {
        sa_any_t c = v4(i % 2 ? "198.51.100.7" : "203.0.113.9", (uint16_t)(10000 + i));
        as[i] = insert(&t, i % 3, &c, &listen_a.sa, 0);
        CHECK(as[i] != NULL);
    }
    CHECK_INT(t.count, N);
    CHECK(t.nbuckets > initial);
    CHECK_INT(t.nbuckets & (t.nbuckets - 1), 0); /* a power of two */
    int found = 0;
    for (int i = 0; i < N; i++) {
        sa_any_t c = v4(i % 2 ? "198.51.100.7" : "203.0.113.9", (uint16_t)(10000 + i));
        found += find(&t, i % 3, &c, &listen_a.sa) == as[i];
    }
    CHECK_INT(found, N);
    for (int i = 0; i < N; i += 2) {
        alloc_remove(&t, as[i]);
        alloc_free(as[i]);
    }
    CHECK_INT(t.count, N / 2);
    found = 0;
    for (int i = 0; i < N; i++) {
        sa_any_t c = v4(i % 2 ? "198.51.100.7" : "203.0.113.9", (uint16_t)(10000 + i));
        alloc_t *a = find(&t, i % 3, &c, &listen_a.sa);
        found += i % 2 ? a == as[i] : a == NULL;
    }
    CHECK_INT(found, N);
    alloc_table_free(&t);
}

/* Ids: unique, increasing, with the worker's bits (id_base) on top. */
UNIT_TEST(ids)
{
    alloc_table_t t0, t3;
    const uint64_t base3 = (uint64_t)3 << 48;
    CHECK_INT(alloc_table_init(&t0, KEY, 0), 0);
    CHECK_INT(alloc_table_init(&t3, KEY, base3), 0);
    uint64_t last = 0;
    for (int i = 0; i < 100; i++) {
        sa_any_t c = v4("192.0.2.1", (uint16_t)(1000 + i));
        alloc_t *a = insert(&t0, 0, &c, &listen_a.sa, 0);
        alloc_t *b = insert(&t3, 0, &c, &listen_a.sa, 0);
        if (!a || !b) {
            CHECK(a && b);
            break;
        }
        CHECK(a->id != 0 && a->id > last);
        CHECK_INT(a->id >> 48, 0);
        CHECK_INT(b->id >> 48, 3);
        CHECK_INT(b->id & 0xFFFFFFFFFFFFull, a->id);
        last = a->id;
    }
    alloc_table_free(&t0);
    alloc_table_free(&t3);
}

/* A bare allocation for the permission and channel tests. */
static alloc_t *bare(alloc_table_t *t)
{
    sa_any_t c = v4("192.0.2.100", 40000);
    CHECK_INT(alloc_table_init(t, KEY, 0), 0);
    alloc_t *a = insert(t, 0, &c, &listen_a.sa, 0);
    CHECK(a != NULL);
    return a;
}

/* RFC 8656 §9: by IP only (any port), exactly 300 s, refreshed by a new install, per family. */
UNIT_TEST(permission_lifetime)
{
    alloc_table_t t;
    alloc_t *a = bare(&t);
    if (!a)
        return;
    sa_any_t p = v4("198.51.100.1", 1000), p_other_port = v4("198.51.100.1", 2000);
    sa_any_t q = v4("198.51.100.2", 1000), p6 = v6("2001:db8::1", 1000);
    sa_any_t p6_prefix = v6("c633:6401::", 1000); /* 198.51.100.1's bytes first, as IPv6 */
    uint64_t now = 5000;

    CHECK_INT(alloc_perm_check(a, &p.sa, now), 0);
    CHECK_INT(alloc_perm_install(a, &p.sa, now, 10), 0);
    CHECK_INT(alloc_perm_check(a, &p.sa, now), 1);
    CHECK_INT(alloc_perm_check(a, &p_other_port.sa, now), 1);
    CHECK_INT(alloc_perm_check(a, &q.sa, now), 0);
    CHECK_INT(alloc_perm_check(a, &p6_prefix.sa, now), 0);
    CHECK_INT(alloc_perm_check(a, &p.sa, now + ALLOC_PERMISSION_MS - 1), 1);
    CHECK_INT(alloc_perm_check(a, &p.sa, now + ALLOC_PERMISSION_MS), 0);
    CHECK_INT(ALLOC_PERMISSION_MS, 300000);
    /* Refresh: another install (any port) restarts the 300 s; it does not add a slot. */
    CHECK_INT(alloc_perm_install(a, &p_other_port.sa, now + 100000, 10), 0);
    CHECK_INT(a->nperms, 1);
    CHECK_INT(alloc_perm_check(a, &p.sa, now + 100000 + ALLOC_PERMISSION_MS - 1), 1);
    CHECK_INT(alloc_perm_check(a, &p.sa, now + 100000 + ALLOC_PERMISSION_MS), 0);
    /* IPv6 peers have their own permissions. */
    CHECK_INT(alloc_perm_check(a, &p6.sa, now), 0);
    CHECK_INT(alloc_perm_install(a, &p6.sa, now, 10), 0);
    CHECK_INT(alloc_perm_check(a, &p6.sa, now), 1);
    CHECK_INT(a->nperms, 2);
    alloc_table_free(&t);
}

/* At most `max` permissions; an expired slot is reused instead of growing, and the table never
 * holds room for more than `max`. */
/* The testing-only permission-lifetime and channel-lifetime (alloc_t's perm_ms, chan_ms): a
 * shorter life for new and refreshed permissions and channels; 0 keeps RFC 8656's. */
UNIT_TEST(short_lifetimes)
{
    alloc_table_t t;
    alloc_t *a = bare(&t);
    if (!a)
        return;
    sa_any_t p = v4("198.51.100.1", 1000), q = v4("198.51.100.2", 1000);
    uint64_t now = 5000;
    a->perm_ms = 2000;
    a->chan_ms = 4000;
    CHECK_INT(alloc_perm_install(a, &p.sa, now, 10), 0);
    CHECK_INT(alloc_perm_check(a, &p.sa, now + 1999), 1);
    CHECK_INT(alloc_perm_check(a, &p.sa, now + 2000), 0);
    CHECK_INT(alloc_perm_install(a, &p.sa, now + 1000, 10), 0); /* refresh: 2 s from then */
    CHECK_INT(alloc_perm_check(a, &p.sa, now + 2999), 1);
    CHECK_INT(alloc_perm_check(a, &p.sa, now + 3000), 0);
    CHECK_INT(alloc_chan_bind(a, 0x4000, &q.sa, now, 16), 0);
    CHECK(alloc_chan_by_number(a, 0x4000, now + 3999) != NULL);
    CHECK(alloc_chan_by_number(a, 0x4000, now + 4000) == NULL);
    /* Expired: the number is free for another peer. */
    CHECK_INT(alloc_chan_bind(a, 0x4000, &p.sa, now + 4000, 16), 0);
    a->perm_ms = a->chan_ms = 0;
    CHECK_INT(alloc_perm_install(a, &q.sa, now, 10), 0);
    CHECK_INT(alloc_perm_check(a, &q.sa, now + ALLOC_PERMISSION_MS - 1), 1);
    CHECK_INT(alloc_chan_bind(a, 0x4001, &q.sa, now, 16), 0);
    CHECK(alloc_chan_by_number(a, 0x4001, now + ALLOC_CHANNEL_MS - 1) != NULL);
    alloc_table_free(&t);
}

UNIT_TEST(permission_cap)
{
    alloc_table_t t;
    alloc_t *a = bare(&t);
    if (!a)
        return;
    char ip[32];
    for (int i = 0; i < 3; i++) {
        snprintf(ip, sizeof(ip), "203.0.113.%d", i + 1);
        sa_any_t p = v4(ip, 1);
        CHECK_INT(alloc_perm_install(a, &p.sa, 0, 3), 0);
    }
    sa_any_t fourth = v4("203.0.113.4", 1), first = v4("203.0.113.1", 9);
    CHECK_INT(alloc_perm_install(a, &fourth.sa, 0, 3), -ENOSPC);
    CHECK_INT(alloc_perm_check(a, &fourth.sa, 0), 0);
    CHECK_INT(alloc_perm_install(a, &first.sa, 1000, 3), 0); /* a refresh is not a new one */
    CHECK_INT(a->nperms, 3);
    CHECK(a->capperms <= 3);
    /* 203.0.113.2 and .3 expire at 300000, .1 at 301000: the fourth takes an expired slot. */
    CHECK_INT(alloc_perm_install(a, &fourth.sa, ALLOC_PERMISSION_MS, 3), 0);
    CHECK_INT(a->nperms, 3);
    CHECK_INT(alloc_perm_check(a, &fourth.sa, ALLOC_PERMISSION_MS), 1);
    CHECK_INT(alloc_perm_check(a, &first.sa, ALLOC_PERMISSION_MS), 1);
    CHECK(a->capperms <= 3);
    alloc_table_free(&t);

    /* A large cap: capacity grows by doubling but never past the cap. */
    a = bare(&t);
    if (!a)
        return;
    for (int i = 0; i < 37; i++) {
        sa_any_t p = v4("10.0.0.1", 1);
        p.in.sin_addr.s_addr = htonl(0x0A000000u + (uint32_t)i);
        CHECK_INT(alloc_perm_install(a, &p.sa, 0, 37), 0);
        CHECK(a->capperms <= 37 && a->capperms >= a->nperms);
    }
    sa_any_t more = v4("10.0.1.0", 1);
    CHECK_INT(alloc_perm_install(a, &more.sa, 0, 37), -ENOSPC);
    alloc_table_free(&t);
}

/* alloc_perm_fits (RFC 8656 §10.2, all or nothing) says yes exactly when installing every peer of
 * the request, in order, would succeed: checked on seeded random small tables against a copy. */
UNIT_TEST(permission_fits_agrees_with_install)
{
    uint32_t seed = 12345;
    int agreed = 0, tried = 0;
    for (int round = 0; round < 2000; round++) {
        alloc_table_t t;
        alloc_t *a = bare(&t);
        if (!a)
            return;
        seed = seed * 1103515245u + 12345u;
        unsigned max = 1 + (seed >> 16) % 4;
        /* History: a few installs of IPs 1..5 at times 0..2 (ms of 300 s units). */
        int nhist = (int)((seed >> 20) % 6);
        for (int h = 0; h < nhist; h++) {
            seed = seed * 1103515245u + 12345u;
            sa_any_t p = v4("192.0.2.0", 1);
            p.in.sin_addr.s_addr = htonl(0xC0000200u + 1 + (seed >> 16) % 5);
            alloc_perm_install(a, &p.sa, (uint64_t)((seed >> 8) % 3) * ALLOC_PERMISSION_MS, max);
        }
        uint64_t now = 2 * ALLOC_PERMISSION_MS + 1; /* some expired, some live */
        sa_any_t req[4];
        seed = seed * 1103515245u + 12345u;
        int n = 1 + (int)((seed >> 16) % 4);
        for (int i = 0; i < n; i++) {
            seed = seed * 1103515245u + 12345u;
            req[i] = v4("192.0.2.0", 1);
            req[i].in.sin_addr.s_addr = htonl(0xC0000200u + 1 + (seed >> 16) % 6);
        }
        int fits = alloc_perm_fits(a, req, n, now, max);
        int all_ok = 1;
        for (int i = 0; i < n; i++)
            all_ok &= alloc_perm_install(a, &req[i].sa, now, max) == 0;
        tried++;
        if ((fits == 0) == all_ok)
            agreed++;
        else
            fprintf(stderr, "  round %d: fits %d, installs %s (max %u, %d peers)\n", round, fits,
                    all_ok ? "all succeeded" : "failed", max, n);
        alloc_table_free(&t);
    }
    CHECK_INT(agreed, tried);
}

/* RFC 8656 §12.2: number <-> peer transport address one-to-one; the same pair refreshes. */
UNIT_TEST(channel_bind_rules)
{
    alloc_table_t t;
    alloc_t *a = bare(&t);
    if (!a)
        return;
    sa_any_t p1 = v4("198.51.100.1", 1000), p2 = v4("198.51.100.2", 1000);
    sa_any_t p1_port = v4("198.51.100.1", 1001), p6 = v6("2001:db8::5", 1000);
    uint64_t now = 10;

    CHECK_INT(alloc_chan_bind(a, 0x4000, &p1.sa, now, 16), 0);
    alloc_chan_t *c = alloc_chan_by_number(a, 0x4000, now);
    CHECK(c != NULL && alloc_chan_by_peer(a, &p1.sa, now) == c);
    CHECK(alloc_chan_by_peer(a, &p1_port.sa, now) == NULL); /* a peer is address and port */
    CHECK(alloc_chan_by_number(a, 0x4001, now) == NULL);
    /* The number to another peer, the peer to another number: 400 (-EINVAL). */
    CHECK_INT(alloc_chan_bind(a, 0x4000, &p2.sa, now, 16), -EINVAL);
    CHECK_INT(alloc_chan_bind(a, 0x4001, &p1.sa, now, 16), -EINVAL);
    /* Same pair later: refreshed to 600 s from then. */
    CHECK_INT(alloc_chan_bind(a, 0x4000, &p1.sa, now + 500000, 16), 0);
    CHECK_INT(a->nchans, 1);
    CHECK(alloc_chan_by_number(a, 0x4000, now + 500000 + ALLOC_CHANNEL_MS - 1) != NULL);
    CHECK(alloc_chan_by_number(a, 0x4000, now + 500000 + ALLOC_CHANNEL_MS) == NULL);
    CHECK_INT(ALLOC_CHANNEL_MS, 600000);
    /* Another pair, the same port on another IP, an IPv6 peer. */
    CHECK_INT(alloc_chan_bind(a, 0x4001, &p2.sa, now, 16), 0);
    CHECK_INT(alloc_chan_bind(a, 0x4FFF, &p1_port.sa, now, 16), 0);
    CHECK_INT(alloc_chan_bind(a, 0x4002, &p6.sa, now, 16), 0);
    CHECK(alloc_chan_by_peer(a, &p6.sa, now) == alloc_chan_by_number(a, 0x4002, now));
    CHECK_INT(a->nchans, 4);
    /* Once a binding has expired, its number and its peer are free to bind again. */
    uint64_t later = now + ALLOC_CHANNEL_MS;
    CHECK(alloc_chan_by_number(a, 0x4001, later) == NULL);
    CHECK_INT(alloc_chan_bind(a, 0x4001, &p6.sa, later, 16), 0);
    CHECK_INT(alloc_chan_bind(a, 0x4003, &p2.sa, later, 16), 0);
    CHECK(a->nchans <= 4); /* expired slots reused */
    alloc_table_free(&t);
}

/* At most `max` channels; an expired binding's slot is reused. */
UNIT_TEST(channel_cap)
{
    alloc_table_t t;
    alloc_t *a = bare(&t);
    if (!a)
        return;
    for (int i = 0; i < 3; i++) {
        sa_any_t p = v4("198.51.100.1", (uint16_t)(1000 + i));
        CHECK_INT(alloc_chan_bind(a, (uint16_t)(0x4000 + i), &p.sa, (uint64_t)i, 3), 0);
    }
    sa_any_t p = v4("198.51.100.1", 2000);
    CHECK_INT(alloc_chan_bind(a, 0x4010, &p.sa, 5, 3), -ENOSPC);
    CHECK(alloc_chan_by_number(a, 0x4010, 5) == NULL);
    CHECK(a->capchans <= 3);
    /* The first (bound at 0) expires first. */
    CHECK_INT(alloc_chan_bind(a, 0x4010, &p.sa, ALLOC_CHANNEL_MS, 3), 0);
    CHECK_INT(a->nchans, 3);
    CHECK(alloc_chan_by_number(a, 0x4000, ALLOC_CHANNEL_MS) == NULL);
    CHECK(alloc_chan_by_number(a, 0x4001, ALLOC_CHANNEL_MS) != NULL);
    alloc_table_free(&t);
}

/* The sweep: alloc_expire drops expired permissions and channels, keeps live ones, and says when
 * the allocation's own lifetime has run out (expires_ms is the caller's, set on Allocate and
 * Refresh). */
UNIT_TEST(expiry_sweep)
{
    alloc_table_t t;
    alloc_t *a = bare(&t);
    if (!a)
        return;
    uint64_t clock = 0; /* the test's clock, in ms */
    sa_any_t p1 = v4("198.51.100.1", 1), p2 = v4("198.51.100.2", 1), p3 = v4("198.51.100.3", 1);
    a->expires_ms = clock + 700000;
    CHECK_INT(alloc_perm_install(a, &p1.sa, clock, 8), 0);
    CHECK_INT(alloc_chan_bind(a, 0x4000, &p1.sa, clock, 8), 0);
    clock = 100000;
    CHECK_INT(alloc_perm_install(a, &p2.sa, clock, 8), 0);
    CHECK_INT(alloc_chan_bind(a, 0x4001, &p2.sa, clock, 8), 0);
    clock = 200000;
    CHECK_INT(alloc_perm_install(a, &p3.sa, clock, 8), 0);

    CHECK_INT(alloc_expire(a, clock), 0);
    CHECK_INT(a->nperms, 3);
    CHECK_INT(a->nchans, 2);
    clock = ALLOC_PERMISSION_MS; /* p1's permission ends */
    CHECK_INT(alloc_expire(a, clock), 0);
    CHECK_INT(a->nperms, 2);
    CHECK_INT(alloc_perm_check(a, &p1.sa, clock), 0);
    CHECK_INT(alloc_perm_check(a, &p2.sa, clock), 1);
    CHECK_INT(alloc_perm_check(a, &p3.sa, clock), 1);
    CHECK_INT(a->nchans, 2);  /* channels live 600 s */
    clock = ALLOC_CHANNEL_MS; /* 0x4000 ends; p2 and p3's permissions ended already */
    CHECK_INT(alloc_expire(a, clock), 0);
    CHECK_INT(a->nperms, 0);
    CHECK_INT(a->nchans, 1);
    CHECK(alloc_chan_by_number(a, 0x4001, clock) != NULL);
    clock = 700000 - 1; /* 0x4001 (bound at 100000) and the allocation both end at 700000 */
    CHECK_INT(alloc_expire(a, clock), 0);
    CHECK_INT(a->nchans, 1);
    clock = 700000;
    CHECK_INT(alloc_expire(a, clock), 1);
    CHECK_INT(a->nchans, 0);
    /* A Refresh (the caller moves expires_ms) brings it back from the edge. */
    a->expires_ms = clock + 600000;
    CHECK_INT(alloc_expire(a, clock), 0);
    alloc_table_free(&t);
}

/* The relayed address of a family, in a dual-stack allocation. */
UNIT_TEST(relay_for_family)
{
    alloc_table_t t;
    alloc_t *a = bare(&t);
    if (!a)
        return;
    CHECK(alloc_relay_for(a, AF_INET) == NULL);
    a->relay[0].addr = v6("2001:db8::9", 50000);
    a->relay[1].addr = v4("203.0.113.9", 50000);
    a->nrelay = 2;
    CHECK(alloc_relay_for(a, AF_INET6) == &a->relay[0]);
    CHECK(alloc_relay_for(a, AF_INET) == &a->relay[1]);
    a->nrelay = 1;
    CHECK(alloc_relay_for(a, AF_INET) == NULL);
    alloc_table_free(&t);
}

/* One run of the out-of-memory scenario: a table grown past its first 1024 buckets, permissions
 * and channels on some allocations. Every call either works or fails as alloc.h says; whatever
 * worked is all there afterwards. Returns the number of calls that failed; *bad counts what broke
 * those promises (each said on stderr), so the thousand runs cost one check each, not thousands. */
static int oom_scenario(int *bad)
{
    enum { N = 1100, WITH_PEERS = 8 };
    static alloc_t *as[N];
    alloc_table_t t;
    int failed = 0, inserted = 0;
#define OOM_EXPECT(cond)                                                                           \
    do {                                                                                           \
        if (!(cond) && (*bad)++ < 5)                                                               \
            fprintf(stderr, "%s:%d: %s broken\n", __FILE__, __LINE__, #cond);                      \
    } while (0)

    if (alloc_table_init(&t, KEY, 0) != 0)
        return 1; /* -ENOMEM, nothing to free */
    for (int i = 0; i < N; i++) {
        sa_any_t c = v4("192.0.2.1", (uint16_t)(20000 + i));
        as[i] = insert(&t, 0, &c, &listen_a.sa, 0);
        failed += as[i] == NULL;
        inserted += as[i] != NULL;
    }
    int perms_ok[WITH_PEERS][5], chans_ok[WITH_PEERS][3];
    for (int i = 0; i < WITH_PEERS; i++) {
        alloc_t *a = as[i * 100];
        memset(perms_ok[i], 0, sizeof(perms_ok[i]));
        memset(chans_ok[i], 0, sizeof(chans_ok[i]));
        if (!a)
            continue; /* its insert was the failed call */
        for (int k = 0; k < 5; k++) {
            sa_any_t p = v4("198.51.100.1", 1);
            p.in.sin_addr.s_addr = htonl(0xC6336400u + (uint32_t)k);
            int rc = alloc_perm_install(a, &p.sa, 0, 8);
            OOM_EXPECT(rc == 0 || rc == -ENOMEM);
            perms_ok[i][k] = rc == 0;
            failed += rc != 0;
        }
        for (int k = 0; k < 3; k++) {
            sa_any_t p = v4("198.51.100.1", (uint16_t)(1000 + k));
            int rc = alloc_chan_bind(a, (uint16_t)(0x4000 + k), &p.sa, 0, 8);
            OOM_EXPECT(rc == 0 || rc == -ENOMEM);
            chans_ok[i][k] = rc == 0;
            failed += rc != 0;
        }
    }
    /* Everything that worked is there; nothing that failed is. */
    OOM_EXPECT(t.count == (size_t)inserted);
    size_t listed = 0;
    LIST_FOREACH(n, &t.all) { listed++; }
    OOM_EXPECT(listed == (size_t)inserted);
    for (int i = 0; i < N; i++) {
        sa_any_t c = v4("192.0.2.1", (uint16_t)(20000 + i));
        OOM_EXPECT(find(&t, 0, &c, &listen_a.sa) == as[i]);
    }
    for (int i = 0; i < WITH_PEERS; i++) {
        alloc_t *a = as[i * 100];
        if (!a)
            continue;
        for (int k = 0; k < 5; k++) {
            sa_any_t p = v4("198.51.100.1", 1);
            p.in.sin_addr.s_addr = htonl(0xC6336400u + (uint32_t)k);
            OOM_EXPECT(alloc_perm_check(a, &p.sa, 0) == perms_ok[i][k]);
        }
        for (int k = 0; k < 3; k++) {
            sa_any_t p = v4("198.51.100.1", (uint16_t)(1000 + k));
            alloc_chan_t *ch = alloc_chan_by_number(a, (uint16_t)(0x4000 + k), 0);
            OOM_EXPECT((ch != NULL) == chans_ok[i][k]);
            OOM_EXPECT(alloc_chan_by_peer(a, &p.sa, 0) == ch);
        }
    }
#undef OOM_EXPECT
    alloc_table_free(&t);
    return failed;
}

/* The scenario with its k-th allocation failing, for every k until a run needs no failure. A
 * failed grow (the 1025th insert's second allocation) is not a failed call: the table keeps its
 * buckets and its longer chains. */
UNIT_TEST_TIMEOUT(out_of_memory, 300)
{
    int bad = 0;
    allocs_seen = 0;
    fail_countdown = 0;
    CHECK_INT(oom_scenario(&bad), 0);
    CHECK_INT(bad, 0);
    long total = allocs_seen;
    CHECK(total > 1100);
    long runs = 0, quiet = 0, loud = 0;
    for (long k = 1; k <= total && bad == 0; k++) {
        fail_countdown = k;
        int failed = oom_scenario(&bad);
        fail_countdown = 0;
        runs++;
        quiet += failed == 0;
        loud += failed == 1; /* one allocation failed: one call says so */
        if (bad)
            fprintf(stderr, "  with allocation %ld of %ld failing\n", k, total);
    }
    CHECK_INT(bad, 0);
    CHECK_INT(runs, total);
    CHECK_INT(loud, total - 1);
    CHECK_INT(quiet, 1); /* only the bucket doubling fails without a failed call */
}

UNIT_MAIN("test_alloc")
