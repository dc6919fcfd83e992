/* fuzz_stream.c - libFuzzer target for the TCP/TLS stream path: the deframer (server/stream.c) cutting
 * arbitrary chunks into frames, and every frame through the real dispatcher with a fake send sink and
 * a fixed clock, exactly as tcp_listener.c drives them.
 *
 * Input layout: the first byte picks how the rest is chunked (simulating reads of different sizes);
 * the remainder is the byte stream.
 */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <netinet/in.h>

#include "cfg.h"
#include "dispatch.h"
#include "stream.h"
#include "stun_msg.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

typedef struct {
    dispatch_t *d;
    dispatch_conn_t *conn;
    size_t replies;
} fuzz_ctx_t;

static int sink(void *ctx, const uint8_t *buf, size_t len)
{
    fuzz_ctx_t *f = ctx;
    /* Every reply we send must itself be a well-formed STUN message. */
    stun_msg_t m;
    if (stun_msg_decode(buf, len, &m) != 0)
        __builtin_trap();
    f->replies++;
    return 0;
}

static int on_frame(void *arg, const uint8_t *frame, size_t len)
{
    fuzz_ctx_t *f = arg;
    return dispatch_message(f->d, f->conn, frame, len) == DISPATCH_NOT_TURN ? -1 : 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static cfg_t cfg;
    static int cfg_ready;
    if (!cfg_ready) {
        cfg_init(&cfg);
        cfg.software_attribute = true;
        cfg_ready = 1;
    }
    if (size < 1)
        return 0;
    size_t chunk = (size_t)(data[0] % 64) + 1;
    data++;
    size--;

    static stats_t stats;
    static dispatch_t d;
    dispatch_init(&d, &cfg, &stats);
    d.now_ms = 1000000;

    struct sockaddr_in remote = {.sin_family = AF_INET, .sin_port = htons(40000)};
    remote.sin_addr.s_addr = htonl(0xC0000201); /* 192.0.2.1 */
    struct sockaddr_in local = {.sin_family = AF_INET, .sin_port = htons(3478)};
    local.sin_addr.s_addr = htonl(0xC6336401); /* 198.51.100.1 */
    fuzz_ctx_t f = {&d, NULL, 0};
    dispatch_conn_t conn = {DISPATCH_TCP, (struct sockaddr *)&remote, (struct sockaddr *)&local, sink,
                            &f};
    f.conn = &conn;

    stream_rx_t rx;
    stream_rx_init(&rx);
    size_t off = 0;
    while (off < size) {
        uint8_t *p;
        size_t room;
        if (stream_rx_space(&rx, &p, &room) != 0)
            break;
        size_t n = size - off;
        if (n > chunk)
            n = chunk;
        if (n > room)
            n = room;
        memcpy(p, data + off, n);
        off += n;
        if (stream_rx_commit(&rx, n, on_frame, &f) != 0)
            break;
        /* The deframer must never hold more than one maximal frame. */
        if (rx.cap > STREAM_RX_MAX)
            __builtin_trap();
    }
    stream_rx_free(&rx);
    return 0;
}
