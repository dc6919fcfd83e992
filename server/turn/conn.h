/* conn.h - the engine's one connection type: the client side of a 5-tuple as a listener saw it, and
 * how to answer on it.
 *
 * A listener hands dispatch_message a turn_conn_t that lives as long as the message (its `remote`
 * borrowed); an allocation keeps a copy of the one that created it (alloc_t.client, whose `remote`
 * points into the allocation). RFC 8656 §2.2: the 5-tuple is transport, remote, local.
 */
#ifndef UTURN_CONN_H
#define UTURN_CONN_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

enum turn_transport {
    TURN_UDP = 0,
    TURN_TCP = 1,
    TURN_TLS = 2,
    TURN_DTLS = 3,
};

/* `local` and `send_ctx` outlive any message (a listener, or a connection that tells
 * dispatch_conn_gone before it goes); `remote` is borrowed for the call it is passed to. */
typedef struct {
    enum turn_transport transport;
    const struct sockaddr *remote;
    const struct sockaddr *local;
    /* Send `len` bytes to `to` on this 5-tuple. Returns 0 or -errno; bytes are copied or sent
     * before it returns. */
    int (*send)(void *ctx, const struct sockaddr *to, const uint8_t *buf, size_t len);
    void *send_ctx; /* udp listener or tcp connection */
} turn_conn_t;

/* "udp", "tcp", "tls" or "dtls": the transport's name in logs, the admin API and usage events. */
static inline const char *turn_transport_name(enum turn_transport t)
{
    switch (t) {
    case TURN_TCP:
        return "tcp";
    case TURN_TLS:
        return "tls";
    case TURN_DTLS:
        return "dtls";
    default:
        return "udp";
    }
}

#endif
