/* udp_listener.h - a worker's UDP listening socket (udp_listener.c): datagrams read in batches
 * with recvmmsg, dispatched, answered in place; on the TLS port DTLS records go to dtls.c.
 *
 * Everything here runs on the owning worker's loop thread.
 */
#ifndef UTURN_UDP_LISTENER_H
#define UTURN_UDP_LISTENER_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <uv.h>

typedef struct worker worker_t;

/* Embedded in worker_t.udp (one per listening address and port), owned by that worker. */
typedef struct udp_listener {
    uv_udp_t handle;
    worker_t *w;
    struct sockaddr_storage local;
    int secure; /* the TLS port: DTLS records here go to dtls.c, plain STUN/TURN still works */
    int fd;     /* for batched sends (worker_tx) */
} udp_listener_t;

/* Bind `addr` (SO_REUSEPORT, big socket buffers) into `l` on `w`'s loop and start receiving. The
 * caller sets l->secure afterwards for the TLS port. Returns 0 or -errno / a libuv error; on error
 * nothing is left open (a handle already initialised is closing, its memory still `l`'s). */
int udp_listener_open(worker_t *w, udp_listener_t *l, const struct sockaddr *addr);
/* Stop and close the socket (idempotent). `l` must stay valid until the loop has run the close. */
void udp_listener_close(udp_listener_t *l);
/* dispatch_binding_ops_t.send_from (env: the worker): send from this worker's UDP listener bound
 * to `from` (RFC 5780 CHANGE-REQUEST). 0, -EADDRNOTAVAIL when none is, or the send's -errno. */
int udp_listener_send_from(void *env, const struct sockaddr *from, const struct sockaddr *to,
                           const uint8_t *buf, size_t len);

#endif
