/* dispatch_fixture.h - the dispatcher under test, shared by test_dispatch.c and
 * test_dispatch_hooks.c: one dispatch_t with fake relay sockets, a fake client sink, static
 * credentials and a test clock (advance), and helpers that build and deliver authenticated
 * requests. Each program includes it once and gets its own copy (static). */
#ifndef UTURN_DISPATCH_FIXTURE_H
#define UTURN_DISPATCH_FIXTURE_H

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

static inline int sink(void *ctx, const struct sockaddr *to, const uint8_t *buf, size_t len)
{
    (void)ctx;
    (void)to;
    memcpy(last, buf, len < sizeof(last) ? len : sizeof(last));
    last_len = len;
    sent_count++;
    return 0;
}

static int open_fails; /* fake_open refuses while set (ports exhausted, fds out) */

static inline int fake_open(void *env, alloc_t *a, alloc_relay_t *r, int fd, int df)
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
static inline int fake_hold(void *env, const struct sockaddr *addr)
{
    (void)env, (void)addr;
    int fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    return fd >= 0 ? fd : -errno;
}
static inline int fake_send(void *env, alloc_relay_t *r, const struct sockaddr *peer,
                            const uint8_t *buf, size_t len)
{
    (void)env, (void)r, (void)buf, (void)len;
    memcpy(&last_peer, peer,
           peer->sa_family == AF_INET ? sizeof(struct sockaddr_in) : sizeof(struct sockaddr_in6));
    relay_sends++;
    return 0;
}
static inline void fake_close(void *env, alloc_t *a)
{
    (void)env;
    alloc_free(a);
}
static int tcp_binds;
static inline void fake_tcp_bind(void *env, const turn_conn_t *conn, const stun_msg_t *req,
                                 uint32_t id)
{
    (void)env, (void)conn, (void)req, (void)id;
    tcp_binds++; /* the worker would answer; here nothing comes back */
}

static cfg_t cfg;
static turn_shared_t shared;
static stats_t stats;
static dispatch_t d;
static struct sockaddr_in client, local;

static inline void env_setup(const char *const *extra)
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

static inline void env_teardown(void)
{
    dispatch_close(&d);
    turn_shared_close(&shared);
    cfg_free(&cfg);
}

static inline void advance(uint64_t ms)
{
    d.now_ms += ms;
    d.unix_ms += ms;
    dispatch_sweep(&d);
}

/* ---- a tiny client ---- */

static char nonce[128];
static size_t nonce_len;
static enum turn_transport transport = TURN_UDP;

static inline int deliver(const uint8_t *buf, size_t len)
{
    turn_conn_t conn = {transport, (struct sockaddr *)&client, (struct sockaddr *)&local, sink,
                        NULL};
    last_len = 0;
    return dispatch_message(&d, &conn, buf, len);
}

typedef void (*attrs_fn)(stun_build_t *b, void *arg);

/* Send a request as `user` (NULL: unauthenticated) and return the response code: 0 success, or the
 * error code; -1 when nothing came back. */
static inline int request(uint16_t method, const char *user, const char *pass, attrs_fn fn,
                          void *arg)
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

static inline void add_transport(stun_build_t *b, void *arg)
{
    stun_build_byte_attr(b, STUN_ATTR_REQUESTED_TRANSPORT, arg ? *(uint8_t *)arg : 17);
}

static inline void add_lifetime(stun_build_t *b, void *arg)
{
    stun_build_u32(b, STUN_ATTR_LIFETIME, *(uint32_t *)arg);
}

static inline struct sockaddr_in peer_addr(const char *ip, uint16_t port)
{
    struct sockaddr_in p = {.sin_family = AF_INET, .sin_port = htons(port)};
    inet_pton(AF_INET, ip, &p.sin_addr);
    return p;
}

static inline void add_peer(stun_build_t *b, void *arg)
{
    stun_build_xor_addr(b, STUN_ATTR_XOR_PEER_ADDRESS, arg);
}

typedef struct {
    uint16_t number;
    struct sockaddr_in *peer;
} chan_arg_t;

static inline void add_channel(stun_build_t *b, void *arg)
{
    chan_arg_t *c = arg;
    stun_build_channel(b, c->number);
    stun_build_xor_addr(b, STUN_ATTR_XOR_PEER_ADDRESS, (struct sockaddr *)c->peer);
}

static inline int allocate(const char *user, const char *pass)
{
    int code = request(STUN_METHOD_ALLOCATE, NULL, NULL, add_transport, NULL);
    CHECK_INT(code, 401); /* the challenge hands out the nonce */
    return request(STUN_METHOD_ALLOCATE, user, pass, add_transport, NULL);
}

static inline void add_even_port_r(stun_build_t *b, void *arg)
{
    (void)arg;
    add_transport(b, NULL);
    stun_build_even_port(b, 1);
}

/* Allocate with EVEN-PORT R=1 from a fresh 5-tuple (client port `port`). */
static inline int allocate_r1(uint16_t port)
{
    client.sin_port = htons(port);
    CHECK_INT(request(STUN_METHOD_ALLOCATE, NULL, NULL, add_even_port_r, NULL), 401);
    return request(STUN_METHOD_ALLOCATE, "alice", "secret", add_even_port_r, NULL);
}

/* The code of the last answer sent: 0 success, an error code, -1 none. */
static inline int last_code(void)
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

/* A usage-events sink (dispatch_usage_ops_t): the first 16 events, and how many came. */
static usage_event_t events[16];
static int nevents;

static inline void on_usage(void *env, const usage_event_t *ev)
{
    (void)env;
    if (nevents < 16)
        events[nevents] = *ev;
    nevents++;
}

#endif
