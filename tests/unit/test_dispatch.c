/* test_dispatch.c - the TURN dispatcher driven directly, with fake relay sockets and a test clock.
 *
 * What a real-time integration test cannot show quickly: permissions expiring after exactly 300 s,
 * channels after 600 s, allocations at their lifetime, all through the one sweep; plus the
 * authentication ladder (401 challenge, 438 stale nonce, 441), and the relay paths framing Data
 * indications and ChannelData in place.
 */
#include <arpa/inet.h>
#include <fcntl.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "alloc_view.h"
#include "dispatch.h"
#include "frame.h"
#include "stun_auth.h"
#include "stun_build.h"
#include "static_creds.h"
#include "stun_msg.h"
#include "unit.h"

/* ---- environment ---- */

static uint8_t last[4096];
static size_t last_len;
static int sent_count;
static int relay_sends;
static sa_any_t last_peer;

static int sink(void *ctx, const struct sockaddr *to, const uint8_t *buf, size_t len)
{
    (void)ctx;
    (void)to;
    memcpy(last, buf, len < sizeof(last) ? len : sizeof(last));
    last_len = len;
    sent_count++;
    return 0;
}

static int open_fails; /* fake_open refuses while set (ports exhausted, fds out) */

static int fake_open(void *env, alloc_t *a, alloc_relay_t *r, int fd, int df)
{
    (void)env, (void)a, (void)df;
    if (fd >= 0)
        close(fd); /* a redeemed reservation's socket: the fake relay has no use for it */
    if (open_fails)
        return -EMFILE;
    r->handle = r;
    return 0;
}
/* Holds port N+1 for an EVEN-PORT reservation: any descriptor will do (the reservation closes
 * it). */
static int fake_hold(void *env, const struct sockaddr *addr)
{
    (void)env, (void)addr;
    int fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    return fd >= 0 ? fd : -errno;
}
static int fake_send(void *env, alloc_relay_t *r, const struct sockaddr *peer, const uint8_t *buf,
                     size_t len)
{
    (void)env, (void)r, (void)buf, (void)len;
    memcpy(&last_peer, peer,
           peer->sa_family == AF_INET ? sizeof(struct sockaddr_in) : sizeof(struct sockaddr_in6));
    relay_sends++;
    return 0;
}
static void fake_close(void *env, alloc_t *a)
{
    (void)env;
    alloc_free(a);
}
static int tcp_binds;
static void fake_tcp_bind(void *env, const turn_conn_t *conn, const stun_msg_t *req, uint32_t id)
{
    (void)env, (void)conn, (void)req, (void)id;
    tcp_binds++; /* the worker would answer; here nothing comes back */
}

static cfg_t cfg;
static turn_shared_t shared;
static stats_t stats;
static dispatch_t d;
static struct sockaddr_in client, local;

static void env_setup(const char *const *extra)
{
    char err[256];
    cfg_init(&cfg);
    cfg.allow_loopback_peers = true;
    cfg_set(&cfg, "user", "alice:secret", "t", err, sizeof(err));
    cfg_set(&cfg, "user", "bob:other", "t", err, sizeof(err));
    cfg_set(&cfg, "realm", "example.org", "t", err, sizeof(err));
    cfg_set(&cfg, "relay-ip", "198.51.100.1", "t", err, sizeof(err));
    /* The peers below are documentation addresses, not globally reachable: opt in to them. */
    cfg_set(&cfg, "allowed-peer-ip", "203.0.113.0/24", "t", err, sizeof(err));
    cfg_set(&cfg, "allowed-peer-ip", "2001:db8::/32", "t", err, sizeof(err));
    for (; extra && *extra; extra += 2)
        if (cfg_set(&cfg, extra[0], extra[1], "t", err, sizeof(err)) != 0)
            fprintf(stderr, "setup: %s\n", err);
    if (turn_shared_init(&shared, &cfg, NULL, 0, err, sizeof(err)) != 0)
        fprintf(stderr, "turn_shared_init: %s\n", err);
    creds_ops_t creds;
    static_creds_ops(&cfg, &creds);
    dispatch_relay_ops_t ops = {.open = fake_open,
                                .hold = fake_hold,
                                .send = fake_send,
                                .close = fake_close,
                                .tcp_bind = fake_tcp_bind};
    memset(&stats, 0, sizeof(stats));
    CHECK_INT(dispatch_init(&d, &cfg, &shared, &stats, &creds, &ops, 0), 0);
    dispatch_clock(&d, 1000000, 1700000000000ULL);
    client.sin_family = AF_INET;
    client.sin_port = htons(40000);
    inet_pton(AF_INET, "203.0.113.7", &client.sin_addr);
    local.sin_family = AF_INET;
    local.sin_port = htons(3478);
    inet_pton(AF_INET, "198.51.100.1", &local.sin_addr);
}

static void env_teardown(void)
{
    dispatch_close(&d);
    turn_shared_close(&shared);
    cfg_free(&cfg);
}

static void advance(uint64_t ms)
{
    d.now_ms += ms;
    d.unix_ms += ms;
    dispatch_sweep(&d);
}

/* ---- a tiny client ---- */

static char nonce[128];
static size_t nonce_len;
static enum turn_transport transport = TURN_UDP;

static int deliver(const uint8_t *buf, size_t len)
{
    turn_conn_t conn = {transport, (struct sockaddr *)&client, (struct sockaddr *)&local, sink,
                        NULL};
    last_len = 0;
    return dispatch_message(&d, &conn, buf, len);
}

typedef void (*attrs_fn)(stun_build_t *b, void *arg);

/* Send a request as `user` (NULL: unauthenticated) and return the response code: 0 success, or the
 * error code; -1 when nothing came back. */
static int request(uint16_t method, const char *user, const char *pass, attrs_fn fn, void *arg)
{
    uint8_t buf[1024], tid[12];
    static uint32_t counter;
    memset(tid, 0, sizeof(tid));
    counter++;
    memcpy(tid, &counter, sizeof(counter));
    stun_build_t b;
    stun_build_init(&b, buf, sizeof(buf), stun_type(method, STUN_CLASS_REQUEST), tid);
    if (fn)
        fn(&b, arg);
    if (user) {
        uint8_t key[16];
        stun_auth_key_md5(user, strlen(user), "example.org", 11, pass, strlen(pass), key);
        stun_build_attr(&b, STUN_ATTR_USERNAME, user, strlen(user));
        stun_build_attr(&b, STUN_ATTR_REALM, "example.org", 11);
        stun_build_attr(&b, STUN_ATTR_NONCE, nonce, nonce_len);
        stun_build_integrity(&b, key, sizeof(key));
    }
    int len = stun_build_finish(&b);
    CHECK(len > 0);
    deliver(buf, (size_t)len);
    if (last_len == 0)
        return -1;
    stun_msg_t m;
    CHECK_INT(stun_msg_decode(last, last_len, &m), 0);
    const stun_attr_t *na = stun_msg_find(&m, STUN_ATTR_NONCE);
    if (na && na->len < sizeof(nonce)) {
        memcpy(nonce, stun_attr_value(&m, na), na->len);
        nonce_len = na->len;
    }
    if (m.cls == STUN_CLASS_SUCCESS)
        return 0;
    const stun_attr_t *ea = stun_msg_find(&m, STUN_ATTR_ERROR_CODE);
    int code = 0;
    const uint8_t *reason;
    size_t rlen;
    CHECK(ea && stun_attr_get_error(&m, ea, &code, &reason, &rlen) == 0);
    return code;
}

static void add_transport(stun_build_t *b, void *arg)
{
    stun_build_byte_attr(b, STUN_ATTR_REQUESTED_TRANSPORT, arg ? *(uint8_t *)arg : 17);
}

static void add_lifetime(stun_build_t *b, void *arg)
{
    stun_build_u32(b, STUN_ATTR_LIFETIME, *(uint32_t *)arg);
}

static struct sockaddr_in peer_addr(const char *ip, uint16_t port)
{
    struct sockaddr_in p = {.sin_family = AF_INET, .sin_port = htons(port)};
    inet_pton(AF_INET, ip, &p.sin_addr);
    return p;
}

static void add_peer(stun_build_t *b, void *arg)
{
    stun_build_xor_addr(b, STUN_ATTR_XOR_PEER_ADDRESS, arg);
}

typedef struct {
    uint16_t number;
    struct sockaddr_in *peer;
} chan_arg_t;

static void add_channel(stun_build_t *b, void *arg)
{
    chan_arg_t *c = arg;
    stun_build_channel(b, c->number);
    stun_build_xor_addr(b, STUN_ATTR_XOR_PEER_ADDRESS, (struct sockaddr *)c->peer);
}

static int allocate(const char *user, const char *pass)
{
    int code = request(STUN_METHOD_ALLOCATE, NULL, NULL, add_transport, NULL);
    CHECK_INT(code, 401); /* the challenge hands out the nonce */
    return request(STUN_METHOD_ALLOCATE, user, pass, add_transport, NULL);
}

static void add_even_port_r(stun_build_t *b, void *arg)
{
    (void)arg;
    add_transport(b, NULL);
    stun_build_even_port(b, 1);
}

/* Allocate with EVEN-PORT R=1 from a fresh 5-tuple (client port `port`). */
static int allocate_r1(uint16_t port)
{
    client.sin_port = htons(port);
    CHECK_INT(request(STUN_METHOD_ALLOCATE, NULL, NULL, add_even_port_r, NULL), 401);
    return request(STUN_METHOD_ALLOCATE, "alice", "secret", add_even_port_r, NULL);
}

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
static usage_event_t events[16];
static int nevents;

static void on_usage(void *env, const usage_event_t *ev)
{
    (void)env;
    if (nevents < 16)
        events[nevents] = *ev;
    nevents++;
}

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

/* Cluster-wide user-quota through quota_cluster_ops_t (issue 13), with a fake fleet: an Allocate
 * that must wait is parked and replayed with the answer; a refusal is 486; every unit the fleet
 * gave is given back once: Refresh 0, expiry, a failed Allocate, a replay that no longer needs
 * it, and a parked request whose connection goes is cancelled. */
static int cq_mode; /* what take answers: an enum quota_cluster_answer */
static int cq_takes, cq_releases, cq_cancels;
static quota_cluster_cb cq_cb;
static void *cq_arg;

static int cq_take(void *env, const char *user, size_t ulen, quota_cluster_cb cb, void *arg)
{
    (void)env;
    CHECK(ulen == 5 && memcmp(user, "alice", 5) == 0);
    cq_takes++;
    cq_cb = cb;
    cq_arg = arg;
    return cq_mode;
}

static void cq_release(void *env, const char *user, size_t ulen)
{
    (void)env;
    CHECK(ulen == 5 && memcmp(user, "alice", 5) == 0);
    cq_releases++;
}

static void cq_cancel(void *env, void *arg)
{
    (void)env;
    cq_cancels += arg == cq_arg;
}

/* The code of the last answer sent: 0 success, an error code, -1 none. */
static int last_code(void)
{
    if (last_len == 0)
        return -1;
    stun_msg_t m;
    CHECK_INT(stun_msg_decode(last, last_len, &m), 0);
    if (m.cls == STUN_CLASS_SUCCESS)
        return 0;
    const stun_attr_t *ea = stun_msg_find(&m, STUN_ATTR_ERROR_CODE);
    int code = 0;
    const uint8_t *reason;
    size_t rlen;
    CHECK(ea && stun_attr_get_error(&m, ea, &code, &reason, &rlen) == 0);
    return code;
}

/* The parked Allocate gets the fleet's `answer`: the code of what the replay sent. */
static int cq_answer(int answer)
{
    last_len = 0;
    quota_cluster_cb cb = cq_cb;
    cq_cb = NULL;
    CHECK(cb != NULL);
    if (cb)
        cb(cq_arg, answer);
    return last_code();
}

UNIT_TEST(cluster_quota)
{
    static const char *const extra[] = {"user-quota", "2", NULL};
    uint32_t zero = 0;
    env_setup(extra);
    d.cquota = (quota_cluster_ops_t){cq_take, cq_release, cq_cancel, NULL};
    cq_takes = cq_releases = cq_cancels = 0;
    /* Pending, then OK: parked (no answer yet), replayed with the unit; Refresh 0 gives it back. */
    cq_mode = QUOTA_CLUSTER_PENDING;
    CHECK_INT(allocate("alice", "secret"), -1);
    CHECK_INT((int)d.npending, 1);
    CHECK_INT((int)quota_total(&shared.quota), 0); /* a parked request holds no local unit */
    CHECK_INT(cq_answer(QUOTA_CLUSTER_OK), 0);
    CHECK_INT((int)d.npending, 0);
    CHECK_INT(cq_takes, 1); /* the replay used the answer: no second take */
    CHECK_INT((int)quota_total(&shared.quota), 1);
    CHECK_INT(request(STUN_METHOD_REFRESH, "alice", "secret", add_lifetime, &zero), 0);
    CHECK_INT(cq_releases, 1);
    CHECK_INT((int)quota_total(&shared.quota), 0);
    /* Pending, then refused: 486, nothing held anywhere. */
    client.sin_port = htons(40201);
    CHECK_INT(allocate("alice", "secret"), -1);
    CHECK_INT(cq_answer(QUOTA_CLUSTER_REFUSED), 486);
    CHECK_INT((int)quota_total(&shared.quota), 0);
    CHECK_INT(cq_releases, 1);
    /* Refused at once: 486. LOCAL (Redis away): the node's own count decides, nothing to give
     * back when the allocation goes (here by expiry). */
    cq_mode = QUOTA_CLUSTER_REFUSED;
    client.sin_port = htons(40202);
    CHECK_INT(allocate("alice", "secret"), 486);
    cq_mode = QUOTA_CLUSTER_LOCAL;
    client.sin_port = htons(40203);
    CHECK_INT(allocate("alice", "secret"), 0);
    advance(601 * 1000);
    CHECK_INT((int)quota_total(&shared.quota), 0);
    CHECK_INT(cq_releases, 1);
    /* OK at once, then expiry: given back. */
    cq_mode = QUOTA_CLUSTER_OK;
    client.sin_port = htons(40204);
    CHECK_INT(allocate("alice", "secret"), 0);
    advance(601 * 1000);
    CHECK_INT(cq_releases, 2);
    /* A failed Allocate (no relay port) after the unit was taken: given back. */
    open_fails = 1;
    client.sin_port = htons(40205);
    CHECK(allocate("alice", "secret") > 0);
    open_fails = 0;
    CHECK_INT(cq_releases, 3);
    /* A parked request whose connection goes: cancelled (the owner gives a late unit back). */
    cq_mode = QUOTA_CLUSTER_PENDING;
    client.sin_port = htons(40211);
    CHECK_INT(allocate("alice", "secret"), -1);
    CHECK_INT((int)d.npending, 1);
    turn_conn_t conn = {transport, (struct sockaddr *)&client, (struct sockaddr *)&local, sink,
                        NULL};
    dispatch_conn_gone(&d, &conn);
    CHECK_INT((int)d.npending, 0);
    CHECK_INT(cq_cancels, 1);
    cq_mode = QUOTA_CLUSTER_OK;
    /* The local quota first: at user-quota here, the fleet is not asked. */
    client.sin_port = htons(40206);
    CHECK_INT(allocate("alice", "secret"), 0);
    client.sin_port = htons(40207);
    CHECK_INT(allocate("alice", "secret"), 0);
    int takes = cq_takes;
    client.sin_port = htons(40208);
    CHECK_INT(allocate("alice", "secret"), 486);
    CHECK_INT(cq_takes, takes);
    /* A replay that no longer needs its unit (the node filled up meanwhile): 486, given back. */
    client.sin_port = htons(40207);
    /* A nonce is bound to the client's address: this 5-tuple's own first (438 hands it out). */
    CHECK_INT(request(STUN_METHOD_REFRESH, "alice", "secret", add_lifetime, &zero), 438);
    CHECK_INT(request(STUN_METHOD_REFRESH, "alice", "secret", add_lifetime, &zero), 0);
    CHECK_INT(cq_releases, 4);
    cq_mode = QUOTA_CLUSTER_PENDING;
    client.sin_port = htons(40209);
    CHECK_INT(allocate("alice", "secret"), -1);
    quota_cluster_cb parked_cb = cq_cb;
    void *parked_arg = cq_arg;
    cq_mode = QUOTA_CLUSTER_OK;
    client.sin_port = htons(40210);
    CHECK_INT(allocate("alice", "secret"), 0); /* alice at 2 on this node again */
    client.sin_port = htons(40209);
    cq_cb = parked_cb;
    cq_arg = parked_arg;
    CHECK_INT(cq_answer(QUOTA_CLUSTER_OK), 486);
    CHECK_INT(cq_releases, 5);
    /* Teardown deletes alice's two allocations: both units go back. */
    int before = cq_releases;
    env_teardown();
    CHECK_INT(cq_releases - before, 2);
}

/* The kernel path's hook (dispatch_relay_ops_t.offload/fold) with a fake that records the calls:
 * every change the kernel must know of makes one call, a refused request none, and each deletion,
 * whatever its reason, one gone=1 call before the final usage event, whose totals include what the
 * fake "kernel" counted. */
static int off_calls, off_gone, off_folds;
static int off_state; /* what a->offload points at */

static void fake_offload(void *env, alloc_t *a, int gone)
{
    (void)env;
    if (gone) {
        CHECK(a->dead); /* out of the table already: nothing can reach it again */
        off_gone++;
        if (a->offload) {
            a->traffic.to_peer_packets += 1000; /* the kernel's last counts */
            a->traffic.to_peer_bytes += 100000;
        }
        a->offload = NULL;
        a->kernel = false;
        return;
    }
    off_calls++;
    a->offload = &off_state;
    a->kernel = true;
}

static void fake_fold(void *env, alloc_t *a)
{
    (void)env;
    CHECK(a->offload == &off_state);
    off_folds++;
    a->traffic.from_peer_packets += 1;
    a->traffic.from_peer_bytes += 10;
}

static int off_expect(int calls, int gone)
{
    int ok = off_calls == calls && off_gone == gone;
    if (!ok)
        fprintf(stderr, "offload calls %d (want %d), gone %d (want %d)\n", off_calls, calls,
                off_gone, gone);
    return ok;
}

UNIT_TEST(offload_hook)
{
    static const char *const extra[] = {"usage-interval", "10", NULL};
    env_setup(extra);
    nevents = 0;
    off_calls = off_gone = off_folds = 0;
    d.relay.offload = fake_offload;
    d.relay.fold = fake_fold;
    d.usage.event = on_usage;
    open_fails = 1;
    CHECK(allocate("alice", "secret") != 0);
    open_fails = 0;
    CHECK(off_expect(0, 1)); /* a failed Allocate: nothing installed, the one gone call */
    CHECK_INT(allocate("alice", "secret"), 0);
    CHECK(off_expect(1, 1)); /* created */
    alloc_t *a = LIST_FIRST(&d.allocs.all, alloc_t, link);
    if (!a)
        return;
    CHECK(a->kernel);
    struct sockaddr_in p1 = peer_addr("203.0.113.50", 5000);
    struct sockaddr_in p2 = peer_addr("203.0.113.51", 5001);
    CHECK_INT(request(STUN_METHOD_CREATE_PERMISSION, "alice", "secret", add_peer, &p1), 0);
    CHECK(off_expect(2, 1)); /* permission installed */
    advance(1000);
    CHECK_INT(request(STUN_METHOD_CREATE_PERMISSION, "alice", "secret", add_peer, &p1), 0);
    CHECK(off_expect(3, 1)); /* refreshed */
    chan_arg_t ch = {0x4001, &p2};
    CHECK_INT(request(STUN_METHOD_CHANNEL_BIND, "alice", "secret", add_channel, &ch), 0);
    CHECK(off_expect(4, 1)); /* channel bound (and its permission) */
    CHECK_INT(request(STUN_METHOD_CHANNEL_BIND, "alice", "secret", add_channel, &ch), 0);
    CHECK(off_expect(5, 1)); /* refreshed */
    chan_arg_t other = {0x4001, &p1};
    CHECK_INT(request(STUN_METHOD_CHANNEL_BIND, "alice", "secret", add_channel, &other), 400);
    struct sockaddr_in bad = peer_addr("10.0.0.1", 5000);
    CHECK_INT(request(STUN_METHOD_CREATE_PERMISSION, "alice", "secret", add_peer, &bad), 403);
    CHECK(off_expect(5, 1)); /* refused requests change nothing */
    uint32_t lt = 900;
    CHECK_INT(request(STUN_METHOD_REFRESH, "alice", "secret", add_lifetime, &lt), 0);
    CHECK(off_expect(6, 1)); /* lifetime refreshed */
    /* The usage events fold the kernel's counts first: created (0), refreshed (1). */
    CHECK_INT(nevents, 2);
    CHECK_INT(events[1].kind, USAGE_REFRESHED);
    CHECK_INT((long)events[1].c.from_peer_packets, (long)off_folds);
    advance(5000);
    CHECK(off_expect(6, 1)); /* a sweep that expires nothing says nothing */
    advance(295 * 1000);     /* p1 (refreshed at +1 s) and p2 (bound at +1 s): 300 s */
    CHECK(!alloc_perm_check(a, (struct sockaddr *)&p1, d.now_ms));
    CHECK(off_expect(7, 1)); /* the sweep expired both permissions: one call */
    advance(300 * 1000);
    CHECK(alloc_chan_by_number(a, 0x4001, d.now_ms) == NULL);
    CHECK(off_expect(8, 1)); /* the channel expired */
    /* The admin's views fold before they copy. */
    int folds = off_folds;
    CHECK(alloc_view_find(&d, a->id) == a);
    CHECK_INT(off_folds, folds + 1);
    alloc_view_t v;
    alloc_view_fill(&d, a, &v);
    CHECK(v.kernel);
    CHECK_INT((long)v.traffic.from_peer_packets, (long)off_folds);
    usage_sum_t live, ended;
    dispatch_usage_user(&d, "alice", 5, &live, &ended);
    CHECK_INT(off_folds, folds + 2);
    CHECK_INT((long)live.c.from_peer_packets, (long)off_folds);
    /* Refresh 0: one gone call, before the deleted event, whose totals hold its last counts. */
    uint32_t zero = 0;
    CHECK_INT(request(STUN_METHOD_REFRESH, "alice", "secret", add_lifetime, &zero), 438);
    CHECK(off_expect(8, 1)); /* a stale nonce (600 s) changes nothing */
    CHECK_INT(request(STUN_METHOD_REFRESH, "alice", "secret", add_lifetime, &zero), 0);
    CHECK(off_expect(8, 2));
    CHECK_INT(events[nevents - 1].kind, USAGE_DELETED);
    CHECK_INT((long)events[nevents - 1].c.to_peer_packets, 1000);
    CHECK_INT((long)events[nevents - 1].c.from_peer_packets, (long)off_folds);
    dispatch_usage_user(&d, "alice", 5, &live, &ended);
    CHECK_INT((long)ended.c.to_peer_packets, 1000);
    /* Expiry, the admin's kill, and shutdown: one gone call each. */
    client.sin_port = htons(40300);
    CHECK_INT(allocate("alice", "secret"), 0);
    advance(601 * 1000);
    CHECK(off_expect(9, 3));
    CHECK_INT(events[nevents - 1].reason, USAGE_REASON_EXPIRED);
    CHECK_INT((long)events[nevents - 1].c.to_peer_packets, 1000);
    client.sin_port = htons(40301);
    CHECK_INT(allocate("alice", "secret"), 0);
    a = LIST_FIRST(&d.allocs.all, alloc_t, link);
    if (a)
        dispatch_alloc_delete(&d, a, DISPATCH_GONE_KILLED);
    CHECK(off_expect(10, 4));
    CHECK_INT(events[nevents - 1].reason, USAGE_REASON_KILLED);
    client.sin_port = htons(40302);
    CHECK_INT(allocate("alice", "secret"), 0);
    CHECK(off_expect(11, 4));
    dispatch_close(&d);
    CHECK(off_expect(11, 5));
    turn_shared_close(&shared);
    cfg_free(&cfg);
}

/* Without the hook (no kernel path) nothing changes: the existing tests above run that way. */

UNIT_MAIN("test_dispatch")
