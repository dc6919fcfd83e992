/* fuzz_dispatch.c - libFuzzer target for the whole dispatcher of a worker (server/dispatch*.c) with
 * fake relay sockets and a clock the input drives (tests/fuzz/fuzz_env.c).
 *
 * Random bytes alone never get past MESSAGE-INTEGRITY, so the input is a small program: each step
 * is an opcode byte and operands. Requests can be sent signed with the test user's key and the last
 * nonce the server handed out, so allocations, permissions, channels and the relay paths are all
 * reached, and the fuzzer mutates everything around the signature.
 *   0 raw datagram from client c       1 signed request: method + raw attributes
 *   2 advance the clock and sweep      3 datagram from a peer into an allocation's relay
 *   4 ChannelData from client c        5 same as 1 over "TCP" (another transport, same code)
 */
#include <arpa/inet.h>
#include <stdint.h>
#include <string.h>

#include "dispatch.h"
#include "fuzz_env.h"
#include "stun_auth.h"
#include "stun_build.h"
#include "stun_msg.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char nonce[128];
static size_t nonce_len;

/* The sink also learns the nonce from challenges, as a client would. */
static int sink(void *ctx, const struct sockaddr *to, const uint8_t *buf, size_t len)
{
    (void)ctx;
    int rc = fuzz_env_sink(NULL, to, buf, len);
    stun_msg_t m;
    if (len >= 20 && buf[0] < 4 && stun_msg_decode(buf, len, &m) == 0) {
        const stun_attr_t *na = stun_msg_find(&m, STUN_ATTR_NONCE);
        if (na && na->len < sizeof(nonce)) {
            memcpy(nonce, stun_attr_value(&m, na), na->len);
            nonce_len = na->len;
        }
    }
    return rc;
}

typedef struct {
    const uint8_t *p;
    size_t n;
} cursor_t;

static int take(cursor_t *c, size_t n, const uint8_t **out)
{
    if (c->n < n)
        return -1;
    *out = c->p;
    c->p += n;
    c->n -= n;
    return 0;
}

static int take_u8(cursor_t *c, uint8_t *v)
{
    const uint8_t *p;
    if (take(c, 1, &p) != 0)
        return -1;
    *v = *p;
    return 0;
}

static void signed_request(dispatch_t *d, turn_conn_t *conn, uint8_t method, const uint8_t *attrs,
                           size_t alen)
{
    uint8_t buf[2048], tid[12] = {0};
    static uint32_t n;
    n++;
    memcpy(tid, &n, sizeof(n));
    stun_build_t b;
    stun_build_init(&b, buf, sizeof(buf), stun_type((uint16_t)(method & 0x0F), STUN_CLASS_REQUEST),
                    tid);
    /* Raw attribute bytes are copied as they are: the fuzzer shapes TLVs itself. */
    uint8_t *p = stun_build_attr_reserve(&b, STUN_ATTR_SOFTWARE, 0);
    (void)p;
    if (alen && b.len + alen + 200 < sizeof(buf) && (alen & 3) == 0) {
        memcpy(buf + b.len, attrs, alen);
        b.len += alen;
        buf[2] = (uint8_t)((b.len - 20) >> 8);
        buf[3] = (uint8_t)(b.len - 20);
    }
    uint8_t key[16];
    stun_auth_key_md5("fuzz", 4, "uturn", 5, "fuzzpass", 8, key);
    stun_build_attr(&b, STUN_ATTR_USERNAME, "fuzz", 4);
    stun_build_attr(&b, STUN_ATTR_REALM, "uturn", 5);
    stun_build_attr(&b, STUN_ATTR_NONCE, nonce, nonce_len);
    stun_build_integrity(&b, key, sizeof(key));
    int len = stun_build_finish(&b);
    if (len > 0)
        (void)dispatch_message(d, conn, buf, (size_t)len);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    dispatch_t *d = fuzz_env_dispatch();
    struct sockaddr_in clients[2] = {{.sin_family = AF_INET, .sin_port = htons(40000)},
                                     {.sin_family = AF_INET, .sin_port = htons(40001)}};
    inet_pton(AF_INET, "203.0.113.7", &clients[0].sin_addr);
    inet_pton(AF_INET, "203.0.113.8", &clients[1].sin_addr);
    struct sockaddr_in local = {.sin_family = AF_INET, .sin_port = htons(3478)};
    inet_pton(AF_INET, "198.51.100.1", &local.sin_addr);
    nonce_len = 0;
    cursor_t c = {data, size};
    for (int steps = 0; steps < 64; steps++) {
        uint8_t op, who, len;
        const uint8_t *p;
        if (take_u8(&c, &op) != 0 || take_u8(&c, &who) != 0)
            break;
        turn_conn_t conn = {(op % 6) == 5 ? TURN_TCP : TURN_UDP,
                            (struct sockaddr *)&clients[who & 1], (struct sockaddr *)&local, sink,
                            NULL};
        switch (op % 6) {
        case 0:
        case 4:
            if (take_u8(&c, &len) != 0 || take(&c, len, &p) != 0)
                return 0;
            (void)dispatch_message(d, &conn, p, len);
            break;
        case 1:
        case 5:
            if (take_u8(&c, &len) != 0 || take(&c, len & ~3u, &p) != 0)
                return 0;
            if (nonce_len == 0) {
                /* Ask for a challenge first, like any client. */
                uint8_t req[28] = {0, 3, 0, 8, 0x21, 0x12, 0xa4, 0x42};
                memcpy(req + 20, "\x00\x19\x00\x04\x11\x00\x00\x00", 8);
                (void)dispatch_message(d, &conn, req, sizeof(req));
            }
            signed_request(d, &conn, who >> 1, p, len & ~3u);
            break;
        case 2:
            d->now_ms += (uint64_t)who * 5000;
            d->unix_ms += (uint64_t)who * 5000;
            dispatch_sweep(d);
            break;
        case 3: {
            if (take_u8(&c, &len) != 0 || take(&c, len, &p) != 0 || list_empty(&d->allocs.all))
                return 0;
            static uint8_t buf[DISPATCH_HEADROOM + 256 + DISPATCH_TAILROOM];
            memcpy(buf + DISPATCH_HEADROOM, p, len);
            struct sockaddr_in peer = {.sin_family = AF_INET, .sin_port = htons(5000 + (who & 7))};
            peer.sin_addr.s_addr = htonl(0xCB007132u + (who >> 3)); /* 203.0.113.50 + n */
            alloc_t *a = LIST_FIRST(&d->allocs.all, alloc_t, link);
            dispatch_relay_input(d, a, &a->relay[0], (struct sockaddr *)&peer,
                                 buf + DISPATCH_HEADROOM, len);
            break;
        }
        }
    }
    return 0;
}
