/* fuzz_stream.c - libFuzzer target for the TCP/TLS stream path: the deframer (server/stream.c)
 * cutting arbitrary chunks into frames, and every frame through the real dispatcher with a fake
 * send sink and a fixed clock, exactly as tcp_listener.c drives them.
 *
 * Input layout: the first byte picks how the rest is chunked (simulating reads of different sizes);
 * the remainder is the byte stream.
 */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <netinet/in.h>

#include "dispatch.h"
#include "fuzz_env.h"
#include "stream.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

typedef struct {
    dispatch_t *d;
    turn_conn_t *conn;
} fuzz_ctx_t;

static int on_frame(void *arg, const uint8_t *frame, size_t len)
{
    fuzz_ctx_t *f = arg;
    return dispatch_message(f->d, f->conn, frame, len) == DISPATCH_NOT_TURN ? -1 : 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    size_t chunk = (size_t)(data[0] % 64) + 1;
    data++;
    size--;

    dispatch_t *d = fuzz_env_dispatch();

    struct sockaddr_in remote = {.sin_family = AF_INET, .sin_port = htons(40000)};
    remote.sin_addr.s_addr = htonl(0xC0000201); /* 192.0.2.1 */
    struct sockaddr_in local = {.sin_family = AF_INET, .sin_port = htons(3478)};
    local.sin_addr.s_addr = htonl(0xC6336401); /* 198.51.100.1 */
    fuzz_ctx_t f = {d, NULL};
    turn_conn_t conn = {TURN_TCP, (struct sockaddr *)&remote, (struct sockaddr *)&local,
                        fuzz_env_sink, NULL};
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
