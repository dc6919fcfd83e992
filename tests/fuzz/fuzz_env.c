/* fuzz_env.c - see fuzz_env.h. Fake relay ops: sockets that "bind" every port, send nowhere and
 * close at once; the clock advances a little on every call so expiry paths run too.
 */
#include "fuzz_env.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "frame.h"
#include "static_creds.h"
#include "stun_msg.h"

static int fake_open(void *env, alloc_t *a, alloc_relay_t *r, int fd, int df)
{
    (void)env;
    (void)a;
    (void)fd;
    (void)df;
    r->handle = r;
    return 0;
}

static int fake_hold(void *env, const struct sockaddr *addr)
{
    (void)env;
    (void)addr;
    return -EADDRINUSE;
}

static int fake_send(void *env, alloc_relay_t *r, const struct sockaddr *peer, const uint8_t *buf,
                     size_t len)
{
    (void)env;
    (void)r;
    (void)peer;
    (void)buf;
    (void)len;
    return 0;
}

static void fake_close(void *env, alloc_t *a)
{
    (void)env;
    alloc_free(a);
}

int fuzz_env_sink(void *ctx, const struct sockaddr *to, const uint8_t *buf, size_t len)
{
    (void)ctx;
    (void)to;
    if (len >= 4 && frame_classify(buf[0]) == FRAME_CHANNEL)
        return 0;
    stun_msg_t m;
    if (stun_msg_decode(buf, len, &m) != 0)
        __builtin_trap(); /* we sent something that is not STUN */
    return 0;
}

dispatch_t *fuzz_env_dispatch(void)
{
    static cfg_t cfg;
    static turn_shared_t shared;
    static stats_t stats;
    static creds_ops_t creds;
    static dispatch_t d;
    static int ready;
    static uint64_t clock_ms = 1000000;
    if (!ready) {
        char err[256];
        cfg_init(&cfg);
        cfg.software_attribute = true;
        cfg.allow_loopback_peers = true;
        (void)cfg_set(&cfg, "user", "fuzz:fuzzpass", "fuzz", err, sizeof(err));
        (void)cfg_set(&cfg, "relay-ip", "198.51.100.1", "fuzz", err, sizeof(err));
        (void)cfg_set(&cfg, "relay-ip", "2001:db8::1", "fuzz", err, sizeof(err));
        /* The corpus names documentation peers (not globally reachable): keep them relayable. */
        (void)cfg_set(&cfg, "allowed-peer-ip", "203.0.113.0/24", "fuzz", err, sizeof(err));
        (void)cfg_set(&cfg, "allowed-peer-ip", "2001:db8::/32", "fuzz", err, sizeof(err));
        (void)cfg_set(&cfg, "nonce-secret", "fuzz", "fuzz", err, sizeof(err));
        if (turn_shared_init(&shared, &cfg, NULL, 0, err, sizeof(err)) != 0)
            abort();
        static_creds_ops(&cfg, &creds);
        ready = 1;
    } else {
        dispatch_close(&d);
    }
    dispatch_relay_ops_t ops = {
        .open = fake_open, .hold = fake_hold, .send = fake_send, .close = fake_close};
    if (dispatch_init(&d, &cfg, &shared, &stats, &creds, &ops, 0) != 0)
        abort();
    clock_ms += 7000;
    dispatch_clock(&d, clock_ms, 1700000000000ULL + clock_ms);
    return &d;
}
