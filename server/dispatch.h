/* dispatch.h - what uturnd does with one message from a client.
 *
 * The dispatcher sees whole messages (a UDP datagram, or one frame cut from a TCP/TLS stream) and
 * answers through the connection's send callback. It knows nothing of libuv, so the fuzzers and unit
 * tests drive the very same code with a fake send sink and a fixed clock. One dispatch_t per worker;
 * only that worker's thread calls it.
 */
#ifndef UTURN_DISPATCH_H
#define UTURN_DISPATCH_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "cfg.h"
#include "stats.h"
#include "stun.h"

enum dispatch_transport {
    DISPATCH_UDP = 0,
    DISPATCH_TCP = 1,
    DISPATCH_TLS = 2,
    DISPATCH_DTLS = 3,
};

/* The client side of a 5-tuple as the listener saw it. */
typedef struct {
    enum dispatch_transport transport;
    const struct sockaddr *remote;
    const struct sockaddr *local;
    /* Send `len` bytes to the client on this 5-tuple. Returns 0 or -errno; the bytes are copied or
     * sent before it returns. */
    int (*send)(void *ctx, const uint8_t *buf, size_t len);
    void *send_ctx;
} dispatch_conn_t;

typedef struct {
    const cfg_t *cfg;
    stats_t *stats;
    uint64_t now_ms; /* the worker's loop time, set by the caller before each batch */
    uint8_t out[STUN_MAX_MSG_LEN];
} dispatch_t;

void dispatch_init(dispatch_t *d, const cfg_t *cfg, stats_t *stats);

/* Results of dispatch_message. */
enum dispatch_result {
    DISPATCH_OK = 0,        /* handled (answered, or dropped and counted as the RFC says) */
    DISPATCH_NOT_TURN = -1, /* not STUN/ChannelData at all: a stream carrying this should close */
};

/* Handle one whole message. */
int dispatch_message(dispatch_t *d, const dispatch_conn_t *conn, const uint8_t *buf, size_t len);

#endif
