/* test_dispatch.c - the TURN dispatcher driven directly, with fake relay sockets and a test clock.
 *
 * What a real-time integration test cannot show quickly: permissions expiring after exactly 300 s,
 * channels after 600 s, allocations at their lifetime, all through the one sweep; plus the
 * authentication ladder (401 challenge, 438 stale nonce, 441), and the relay paths framing Data
 * indications and ChannelData in place.
 */
#include "dispatch_fixture.h"

/* ---- tests ---- */

UNIT_TEST(auth_ladder)
{
    env_setup(NULL);
    CHECK_INT(request(STUN_METHOD_ALLOCATE, NULL, NULL, add_transport, NULL), 401);
    CHECK(nonce_len > 9 && memcmp(nonce, "obMatJos2", 9) == 0);
    CHECK_INT(request(STUN_METHOD_ALLOCATE, "alice", "wrong", add_transport, NULL), 401);
    CHECK_INT(request(STUN_METHOD_ALLOCATE, "nobody", "x", add_transport, NULL), 401);
    CHECK_INT((long)atomic_load(&stats.alloc_created), 0);
    uint8_t tcp = 6, sctp = 132;
    CHECK_INT(request(STUN_METHOD_ALLOCATE, "alice", "secret", add_transport, &sctp), 442);
    /* RFC 6062 §5.1: a TCP relay only over a TCP/TLS control connection. */
    CHECK_INT(request(STUN_METHOD_ALLOCATE, "alice", "secret", add_transport, &tcp), 400);
    CHECK_INT(request(STUN_METHOD_ALLOCATE, "alice", "secret", add_transport, NULL), 0);
    CHECK_INT(request(STUN_METHOD_ALLOCATE, "alice", "secret", add_transport, NULL), 437);
    /* Another user on alice's 5-tuple. */
    uint32_t lt = 600;
    CHECK_INT(request(STUN_METHOD_REFRESH, "bob", "other", add_lifetime, &lt), 441);
    /* The nonce goes stale after stale-nonce seconds (600 by default): 438 with a fresh one. */
    d.unix_ms += 601 * 1000;
    CHECK_INT(request(STUN_METHOD_REFRESH, "alice", "secret", add_lifetime, &lt), 438);
    CHECK_INT(request(STUN_METHOD_REFRESH, "alice", "secret", add_lifetime, &lt), 0);
    /* A nonce made for another client address is not accepted. */
    client.sin_port = htons(40001);
    CHECK_INT(request(STUN_METHOD_ALLOCATE, "alice", "secret", add_transport, NULL), 438);
    /* Every error response above counts once, under its own code (the admin's errors_by_code). */
    uint64_t sum = 0;
    for (int i = 0; i < STATS_NERR; i++)
        sum += atomic_load(&stats.errors_by_code[i]);
    CHECK_INT((long)sum, (long)atomic_load(&stats.stun_error_responses));
    CHECK_INT((long)atomic_load(&stats.errors_by_code[stats_error_slot(437)]), 1);
    CHECK_INT((long)atomic_load(&stats.errors_by_code[stats_error_slot(441)]), 1);
    CHECK_INT((long)atomic_load(&stats.errors_by_code[stats_error_slot(442)]), 1);
    CHECK_INT((long)atomic_load(&stats.errors_by_code[stats_error_slot(438)]), 2);
    CHECK(atomic_load(&stats.errors_by_code[stats_error_slot(401)]) >= 3);
    CHECK_INT((long)atomic_load(&stats.errors_by_code[STATS_NERR - 1]), 0);
    CHECK_INT(stats_error_slot(499), STATS_NERR - 1);
    CHECK_INT(stats_error_code(STATS_NERR - 1), 0);
    CHECK_INT(stats_error_code(stats_error_slot(508)), 508);
    env_teardown();
}

UNIT_TEST(expiry)
{
    env_setup(NULL);
    CHECK_INT(allocate("alice", "secret"), 0);
    struct sockaddr_in p1 = peer_addr("203.0.113.50", 5000);
    struct sockaddr_in p2 = peer_addr("203.0.113.51", 5001);
    CHECK_INT(request(STUN_METHOD_CREATE_PERMISSION, "alice", "secret", add_peer, &p1), 0);
    chan_arg_t ch = {0x4001, &p2};
    CHECK_INT(request(STUN_METHOD_CHANNEL_BIND, "alice", "secret", add_channel, &ch), 0);
    alloc_t *a = LIST_FIRST(&d.allocs.all, alloc_t, link);
    CHECK(a != NULL);
    if (!a)
        return;
    CHECK(alloc_perm_check(a, (struct sockaddr *)&p1, d.now_ms));
    CHECK(alloc_perm_check(a, (struct sockaddr *)&p2, d.now_ms)); /* ChannelBind installs it */
    advance(299 * 1000);
    CHECK(alloc_perm_check(a, (struct sockaddr *)&p1, d.now_ms));
    advance(2 * 1000);
    CHECK(!alloc_perm_check(a, (struct sockaddr *)&p1, d.now_ms)); /* 300 s, exactly */
    CHECK(alloc_chan_by_number(a, 0x4001, d.now_ms) != NULL);
    /* Refresh keeps the allocation (600 s lifetime from now) but not channels. */
    uint32_t lt = 900;
    CHECK_INT(request(STUN_METHOD_REFRESH, "alice", "secret", add_lifetime, &lt), 0);
    advance(300 * 1000);
    CHECK(alloc_chan_by_number(a, 0x4001, d.now_ms) == NULL); /* 600 s after the bind */
    CHECK_INT((long)d.allocs.count, 1);
    advance(601 * 1000); /* past the 900 s lifetime */
    CHECK_INT((long)d.allocs.count, 0);
    CHECK_INT((long)atomic_load(&stats.alloc_expired), 1);
    env_teardown();
}

UNIT_TEST(relay_paths)
{
    env_setup(NULL);
    CHECK_INT(allocate("alice", "secret"), 0);
    alloc_t *a = LIST_FIRST(&d.allocs.all, alloc_t, link);
    if (!a)
        return;
    struct sockaddr_in p1 = peer_addr("203.0.113.50", 5000);
    uint8_t buf[256];
    uint8_t *data = buf + DISPATCH_HEADROOM;
    /* No permission: dropped. */
    memcpy(data, "hello", 5);
    last_len = 0;
    dispatch_relay_input(&d, a, &a->relay[0], (struct sockaddr *)&p1, data, 5);
    CHECK_INT((long)last_len, 0);
    CHECK_INT(request(STUN_METHOD_CREATE_PERMISSION, "alice", "secret", add_peer, &p1), 0);
    /* Permission: a Data indication with XOR-PEER-ADDRESS and DATA. */
    memcpy(data, "hello", 5);
    dispatch_relay_input(&d, a, &a->relay[0], (struct sockaddr *)&p1, data, 5);
    stun_msg_t m;
    CHECK_INT(stun_msg_decode(last, last_len, &m), 0);
    CHECK_INT(m.method, STUN_METHOD_DATA);
    CHECK_INT(m.cls, STUN_CLASS_INDICATION);
    const stun_attr_t *da = stun_msg_find(&m, STUN_ATTR_DATA);
    CHECK(da && da->len == 5 && memcmp(stun_attr_value(&m, da), "hello", 5) == 0);
    struct sockaddr_storage got;
    const stun_attr_t *pa = stun_msg_find(&m, STUN_ATTR_XOR_PEER_ADDRESS);
    CHECK(pa && stun_attr_get_xor_addr(&m, pa, &got) == 0 &&
          ((struct sockaddr_in *)&got)->sin_port == p1.sin_port);
    /* Channel: ChannelData both ways. */
    chan_arg_t ch = {0x4abc, &p1};
    CHECK_INT(request(STUN_METHOD_CHANNEL_BIND, "alice", "secret", add_channel, &ch), 0);
    memcpy(data, "abc", 3);
    dispatch_relay_input(&d, a, &a->relay[0], (struct sockaddr *)&p1, data, 3);
    CHECK_INT((long)last_len, 7); /* UDP: no padding */
    CHECK(last[0] == 0x4a && last[1] == 0xbc && last[2] == 0 && last[3] == 3);
    uint8_t cd[8] = {0x4a, 0xbc, 0, 3, 'x', 'y', 'z', 0};
    relay_sends = 0;
    deliver(cd, sizeof(cd));
    CHECK_INT(relay_sends, 1);
    CHECK(last_peer.in.sin_port == p1.sin_port);
    /* Unbound and reserved channel numbers are dropped. */
    uint8_t cd2[8] = {0x40, 0x02, 0, 3, 'x', 'y', 'z', 0};
    uint8_t cd3[8] = {0x50, 0x00, 0, 3, 'x', 'y', 'z', 0};
    deliver(cd2, sizeof(cd2));
    deliver(cd3, sizeof(cd3));
    CHECK_INT(relay_sends, 1);
    /* ChannelBind rules: number in range, one peer per number. */
    struct sockaddr_in p2 = peer_addr("203.0.113.51", 5001);
    chan_arg_t bad = {0x3fff, &p2};
    CHECK_INT(request(STUN_METHOD_CHANNEL_BIND, "alice", "secret", add_channel, &bad), 400);
    chan_arg_t taken = {0x4abc, &p2};
    CHECK_INT(request(STUN_METHOD_CHANNEL_BIND, "alice", "secret", add_channel, &taken), 400);
    env_teardown();
}

UNIT_TEST(policy_and_quota)
{
    static const char *const extra[] = {"allow-loopback-peers", "false", "user-quota", "1", NULL};
    env_setup(extra);
    CHECK_INT(allocate("alice", "secret"), 0);
    struct sockaddr_in lo = peer_addr("127.0.0.1", 5000);
    struct sockaddr_in zero = peer_addr("0.0.0.0", 5000);
    struct sockaddr_in meta = peer_addr("169.254.169.254", 80);
    struct sockaddr_in priv = peer_addr("10.1.2.3", 80);
    CHECK_INT(request(STUN_METHOD_CREATE_PERMISSION, "alice", "secret", add_peer, &lo), 403);
    CHECK_INT(request(STUN_METHOD_CREATE_PERMISSION, "alice", "secret", add_peer, &zero), 403);
    CHECK_INT(request(STUN_METHOD_CREATE_PERMISSION, "alice", "secret", add_peer, &meta), 403);
    CHECK_INT(request(STUN_METHOD_CREATE_PERMISSION, "alice", "secret", add_peer, &priv), 403);
    struct sockaddr_in6 mapped = {.sin6_family = AF_INET6, .sin6_port = htons(5000)};
    inet_pton(AF_INET6, "::ffff:127.0.0.1", &mapped.sin6_addr);
    CHECK_INT(request(STUN_METHOD_CREATE_PERMISSION, "alice", "secret", add_peer, &mapped), 403);
    struct sockaddr_in6 v6 = {.sin6_family = AF_INET6, .sin6_port = htons(5000)};
    inet_pton(AF_INET6, "2001:db8::5", &v6.sin6_addr);
    CHECK_INT(request(STUN_METHOD_CREATE_PERMISSION, "alice", "secret", add_peer, &v6), 443);
    /* user-quota = 1: alice's second allocation (another 5-tuple) gets 486. */
    client.sin_port = htons(40002);
    CHECK_INT(allocate("alice", "secret"), 486);
    CHECK_INT(allocate("bob", "other"), 0);
    env_teardown();
}

/* Issue 11 defect 9: an EVEN-PORT reservation is one unit of its user's quota until it expires. */
UNIT_TEST(reservation_quota)
{
    static const char *const extra[] = {"user-quota", "2", NULL};
    uint32_t zero = 0;
    env_setup(extra);
    CHECK_INT(allocate_r1(40010), 0);
    CHECK_INT(request(STUN_METHOD_REFRESH, "alice", "secret", add_lifetime, &zero), 0);
    CHECK_INT(allocate_r1(40011), 486); /* needs two units, the reservation holds one */
    client.sin_port = htons(40012);
    CHECK_INT(allocate("alice", "secret"), 0); /* one plain allocation still fits */
    client.sin_port = htons(40013);
    CHECK_INT(allocate("alice", "secret"), 486);
    advance(31000); /* reservation-lifetime (30 s) ends: the sweep gives the unit back */
    client.sin_port = htons(40014);
    CHECK_INT(allocate("alice", "secret"), 0);
    env_teardown();
}

UNIT_TEST(max_bps)
{
    static const char *const extra[] = {"max-bps", "1000", NULL};
    env_setup(extra);
    CHECK_INT(allocate("alice", "secret"), 0);
    struct sockaddr_in p1 = peer_addr("203.0.113.50", 5000);
    chan_arg_t ch = {0x4001, &p1};
    CHECK_INT(request(STUN_METHOD_CHANNEL_BIND, "alice", "secret", add_channel, &ch), 0);
    uint8_t cd[4 + 600];
    memset(cd, 'x', sizeof(cd));
    cd[0] = 0x40, cd[1] = 0x01, cd[2] = (600 >> 8), cd[3] = 600 & 0xff;
    relay_sends = 0;
    deliver(cd, sizeof(cd)); /* 600 of the 1000 bytes this second */
    deliver(cd, sizeof(cd)); /* over: dropped */
    CHECK_INT(relay_sends, 1);
    CHECK_INT((long)atomic_load(&stats.drop_bps_limit), 1);
    advance(1000); /* a second later the bucket has refilled */
    deliver(cd, sizeof(cd));
    CHECK_INT(relay_sends, 2);
    env_teardown();
}

static void add_connection_id(stun_build_t *b, void *arg)
{
    if (arg)
        stun_build_u32(b, STUN_ATTR_CONNECTION_ID, *(uint32_t *)arg);
}

/* RFC 6062 §5.4: ConnectionBind only over TCP/TLS, with a CONNECTION-ID, and never on a 5-tuple
 * that holds an allocation (a control connection is no data connection). */
UNIT_TEST(connection_bind_rules)
{
    env_setup(NULL);
    uint32_t id = 0x00123456;
    tcp_binds = 0;
    CHECK_INT(request(STUN_METHOD_CONNECTION_BIND, NULL, NULL, add_connection_id, &id), 400);
    transport = TURN_TCP;
    CHECK_INT(request(STUN_METHOD_CONNECTION_BIND, NULL, NULL, add_connection_id, NULL), 400);
    CHECK_INT(tcp_binds, 0);
    CHECK_INT(request(STUN_METHOD_CONNECTION_BIND, NULL, NULL, add_connection_id, &id), -1);
    CHECK_INT(tcp_binds, 1); /* a new connection: handed to the relay */
    CHECK_INT(allocate("alice", "secret"), 0);
    CHECK_INT(request(STUN_METHOD_CONNECTION_BIND, "alice", "secret", add_connection_id, &id), 400);
    transport = TURN_TLS; /* the same addresses over TLS are another 5-tuple */
    CHECK_INT(request(STUN_METHOD_CONNECTION_BIND, NULL, NULL, add_connection_id, &id), -1);
    CHECK_INT(tcp_binds, 2);
    transport = TURN_UDP;
    env_teardown();
}

/* user-peer-connection-quota: counted per user, on any thread, given back on release. */
UNIT_TEST(peer_connection_quota)
{
    static const char *const extra[] = {"user-peer-connection-quota", "2", NULL};
    env_setup(extra);
    CHECK_INT(quota_peer_conn_take(&shared.quota, "alice", 5), 0);
    CHECK_INT(quota_peer_conn_take(&shared.quota, "alice", 5), 0);
    CHECK_INT(quota_peer_conn_take(&shared.quota, "alice", 5), -EDQUOT);
    CHECK_INT(quota_peer_conn_take(&shared.quota, "bob", 3), 0);
    quota_peer_conn_release(&shared.quota, "alice", 5);
    CHECK_INT(quota_peer_conn_take(&shared.quota, "alice", 5), 0);
    CHECK_INT(quota_peer_conn_take(&shared.quota, "alice", 5), -EDQUOT);
    quota_peer_conn_release(&shared.quota, "alice", 5);
    quota_peer_conn_release(&shared.quota, "bob", 3);
    quota_peer_conn_take(&shared.quota, "bob", 3);
    quota_peer_conn_release(&shared.quota, "bob",
                            3); /* an entry at 0 is gone: taken again from 0 */
    CHECK_INT(quota_peer_conn_take(&shared.quota, "alice", 5), 0);
    CHECK_INT(quota_peer_conn_take(&shared.quota, "alice", 5), -EDQUOT);
    env_teardown(); /* alice's two still counted: turn_shared_close frees the table (LeakSanitizer)
                     */
    static const char *const unlimited[] = {"user-peer-connection-quota", "0", NULL};
    env_setup(unlimited);
    for (int i = 0; i < 1000; i++)
        CHECK_INT(quota_peer_conn_take(&shared.quota, "alice", 5), 0);
    env_teardown();
    cfg_init(&cfg); /* the shipped default */
    CHECK_INT(cfg.user_peer_conn_quota, 256);
    CHECK_INT(cfg.max_peer_connections, 64);
    cfg_free(&cfg);
}

/* Unauthenticated answers over UDP (dispatch_limit_ok): up to DISPATCH_UNAUTH_RATIO x the request
 * is the request's own, so a spoofer sharing the victim's IP cannot use it up; the bytes beyond
 * are metered per source IP (a 2048-byte burst); all of them against max-unauth-answer-bps. */
UNIT_TEST(unauth_limit)
{
    static const char *const extra[] = {"max-unauth-answer-bps", "20000", NULL};
    env_setup(extra);
    /* Bare 20-byte Allocates: the 401 (no reason phrase: it would not fit 4 x 20 either way) is 96
     * bytes, 16 beyond the request's 80: 2048 / 16 = 128 answers, then the IP's meter is empty. */
    uint8_t bare[20] = {0x00, 0x03, 0x00, 0x00, 0x21, 0x12, 0xA4, 0x42};
    int answered = 0;
    for (int i = 0; i < 200; i++) {
        bare[8] = (uint8_t)i;
        deliver(bare, sizeof(bare));
        if (last_len)
            CHECK_INT((long)last_len, 96);
        answered += last_len > 0;
    }
    CHECK_INT(answered, 128);
    CHECK_INT((long)atomic_load(&stats.drop_amplification), 72);
    /* The victim on the same IP (another port): a browser's 28-byte first Allocate still gets its
     * 401, reason phrase included, within 4 x 28 bytes. */
    client.sin_port = htons(40001);
    CHECK_INT(request(STUN_METHOD_ALLOCATE, NULL, NULL, add_transport, NULL), 401);
    CHECK(last_len > 96 && last_len <= 4 * 28);
    /* The worker's budget: 20000 bytes a second, whatever the sources. */
    advance(1000);
    size_t bytes = 0;
    for (int i = 0; i < 400; i++) {
        client.sin_addr.s_addr = htonl(0xCB007100u + (uint32_t)i); /* 203.0.113.x and on */
        if (request(STUN_METHOD_ALLOCATE, NULL, NULL, add_transport, NULL) == 401)
            bytes += last_len;
    }
    CHECK(bytes > 20000 - 200 && bytes <= 20000);
    CHECK(atomic_load(&stats.drop_unauth_budget) > 0);
    inet_pton(AF_INET, "203.0.113.7", &client.sin_addr);
    client.sin_port = htons(40000);
    env_teardown();
}

/* An Allocate whose relay cannot be opened counts as failed only: created, deleted and expired
 * stay as they were, so created - deleted - expired is always the number of live allocations. */
UNIT_TEST(failed_allocate_counters)
{
    env_setup(NULL);
    uint64_t created = atomic_load(&stats.alloc_created),
             deleted = atomic_load(&stats.alloc_deleted);
    open_fails = 1;
    CHECK(allocate("alice", "secret") != 0);
    open_fails = 0;
    CHECK_INT((long)atomic_load(&stats.alloc_failed), 1);
    CHECK_INT((long)(atomic_load(&stats.alloc_created) - created), 0);
    CHECK_INT((long)(atomic_load(&stats.alloc_deleted) - deleted), 0);
    CHECK_INT((long)atomic_load(&stats.allocations), 0);
    CHECK_INT(allocate("alice", "secret"), 0);
    CHECK_INT((long)(atomic_load(&stats.alloc_created) - created), 1);
    CHECK_INT((long)atomic_load(&stats.allocations), 1);
    env_teardown();
}

/* The usage ledger's events (turn/usage.h): created, periodic every usage-interval, refreshed,
 * deleted with the relayed totals and the reason (deleted, expired); none for an Allocate whose
 * relay could not be opened; the ended totals per user. */
UNIT_TEST(usage_events)
{
    static const char *const extra[] = {"usage-interval", "10", NULL};
    env_setup(extra);
    nevents = 0;
    d.usage.event = on_usage;
    open_fails = 1;
    CHECK(allocate("alice", "secret") != 0);
    open_fails = 0;
    CHECK_INT(nevents, 0); /* a failed Allocate makes no event */
    CHECK_INT(allocate("alice", "secret"), 0);
    CHECK_INT(nevents, 1);
    alloc_t *a = LIST_FIRST(&d.allocs.all, alloc_t, link);
    if (!a)
        return;
    CHECK_INT(events[0].kind, USAGE_CREATED);
    CHECK_INT((long)events[0].id, (long)a->id);
    CHECK_INT(events[0].ulen, 5);
    CHECK_STR(events[0].user, "alice");
    CHECK_INT(events[0].nrelay, 1);
    CHECK_INT((long)events[0].lifetime, 600);
    CHECK_INT((long)events[0].ts_ms, (long)d.unix_ms);
    struct sockaddr_in p1 = peer_addr("203.0.113.50", 5000);
    CHECK_INT(request(STUN_METHOD_CREATE_PERMISSION, "alice", "secret", add_peer, &p1), 0);
    chan_arg_t ch = {0x4001, &p1};
    CHECK_INT(request(STUN_METHOD_CHANNEL_BIND, "alice", "secret", add_channel, &ch), 0);
    uint8_t buf[256];
    uint8_t *data = buf + DISPATCH_HEADROOM;
    memset(data, 'p', 100);
    dispatch_relay_input(&d, a, &a->relay[0], (struct sockaddr *)&p1, data, 100);
    dispatch_relay_input(&d, a, &a->relay[0], (struct sockaddr *)&p1, data, 20);
    uint8_t cd[12] = {0x40, 0x01, 0, 7, 'a', 'b', 'c', 'd', 'e', 'f', 'g', 0};
    deliver(cd, sizeof(cd));
    advance(9000);
    CHECK_INT(nevents, 1); /* not yet 10 s */
    advance(1000);
    CHECK_INT(nevents, 2);
    CHECK_INT(events[1].kind, USAGE_PERIODIC);
    CHECK_INT((long)events[1].c.to_peer_bytes, 7);
    CHECK_INT((long)events[1].c.to_peer_packets, 1);
    CHECK_INT((long)events[1].c.from_peer_bytes, 120);
    CHECK_INT((long)events[1].c.from_peer_packets, 2);
    advance(1000);
    CHECK_INT(nevents, 2); /* the next one is 10 s after this one */
    uint32_t lt = 900, zero = 0;
    CHECK_INT(request(STUN_METHOD_REFRESH, "alice", "secret", add_lifetime, &lt), 0);
    CHECK_INT(nevents, 3);
    CHECK_INT(events[2].kind, USAGE_REFRESHED);
    CHECK_INT((long)events[2].lifetime, 900);
    deliver(cd, sizeof(cd));
    CHECK_INT(request(STUN_METHOD_REFRESH, "alice", "secret", add_lifetime, &zero), 0);
    CHECK_INT(nevents, 4);
    CHECK_INT(events[3].kind, USAGE_DELETED);
    CHECK_INT(events[3].reason, USAGE_REASON_DELETED);
    CHECK_INT((long)events[3].c.to_peer_bytes, 14);
    CHECK_INT((long)events[3].c.to_peer_packets, 2);
    CHECK_INT((long)events[3].c.from_peer_bytes, 120);
    /* Expiry: deleted with reason expired. */
    client.sin_port = htons(40100);
    CHECK_INT(allocate("alice", "secret"), 0);
    CHECK_INT(nevents, 5);
    advance(601 * 1000);
    CHECK_INT(events[nevents - 1].kind, USAGE_DELETED);
    CHECK_INT(events[nevents - 1].reason, USAGE_REASON_EXPIRED);
    /* The ended totals of alice's two allocations. */
    usage_sum_t live, ended;
    dispatch_usage_user(&d, "alice", 5, &live, &ended);
    CHECK_INT((long)live.allocations, 0);
    CHECK_INT((long)ended.allocations, 2);
    CHECK_INT((long)ended.c.to_peer_bytes, 14);
    CHECK_INT((long)ended.c.from_peer_packets, 2);
    env_teardown();
}

UNIT_MAIN("test_dispatch")
