/* tcp_listener.h - a worker's TCP (and TLS) listening socket and the client connections it accepts
 * (tcp_listener.c), and what RFC 6062 needs of those connections: turning one into a pipe to a peer
 * (tcp_relay.c) and handing a new data connection to the worker that owns its peer connection.
 *
 * Everything here runs on the owning worker's loop thread (tcp_conn_adopt: on the adopting one).
 */
#ifndef UTURN_TCP_LISTENER_H
#define UTURN_TCP_LISTENER_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <uv.h>

#include "dispatch.h"

typedef struct worker worker_t;
typedef struct tcp_conn tcp_conn_t; /* a client connection, owned by its worker (worker_t.conns) */
typedef struct tcp_pipe tcp_pipe_t; /* an RFC 6062 peer connection (tcp_relay.h) */

/* Embedded in worker_t.tcp (one per listening address and port), owned by that worker. */
typedef struct tcp_listener {
    uv_tcp_t handle;
    worker_t *w;
    struct sockaddr_storage local;
    int secure; /* TLS */
} tcp_listener_t;

/* Bind `addr` (SO_REUSEPORT) into `l` on `w`'s loop and listen. The caller sets l->secure
 * afterwards for the TLS port. Returns 0 or -errno / a libuv error; on error nothing is left open
 * (a handle already initialised is closing, its memory still `l`'s). */
int tcp_listener_open(worker_t *w, tcp_listener_t *l, const struct sockaddr *addr);
/* Stop listening (idempotent); accepted connections stay. `l` must stay valid until the loop has
 * run the close, and until every connection accepted on it is closed (they point at it). */
void tcp_listener_close(tcp_listener_t *l);
/* Close stalled or idle client connections (called by the worker's sweep timer). */
void tcp_listener_sweep(worker_t *w, uint64_t now_ms);
/* Close every client connection and free the per-IP counts (shutdown). The connections' memory is
 * freed by their close callbacks, when the loop runs. */
void tcp_listener_close_all(worker_t *w);

/* ---- client connections, for RFC 6062 (tcp_relay.c) ---- */

/* A new data connection on its way to another worker (tcp_conn_detach, then tcp_conn_adopt there):
 * it owns `fd`, `ssl` and `rest` until adopted; whoever drops it closes and frees them. */
typedef struct {
    int fd;
    struct ssl_st *ssl; /* TLS state, handshake done; NULL on the plain TCP port */
    int secure;         /* accepted on the TLS port */
    struct sockaddr_storage local, remote;
    uint8_t *rest; /* bytes read behind the ConnectionBind (malloc'd), NULL when none */
    size_t nrest;
} tcp_handoff_t;

/* Make `c` a raw pipe to `p` (after a successful ConnectionBind): from now on its bytes go to
 * tcp_relay_from_client, and bytes already read behind the ConnectionBind are passed on at once.
 * Returns 0. */
int tcp_conn_pipe(tcp_conn_t *c, tcp_pipe_t *p);
/* Send bytes to the client (borrowed; in TLS on the TLS port). Returns 0 (sent or queued), or a
 * negative code: -EPIPE when nothing more can be sent (`c` closing, or its TLS not up); else `c` is
 * now closing: -EIO (TLS), -ENOBUFS (the client does not read: WQ_CAP, wq.h), -ENOMEM, or the
 * socket's error. */
int tcp_conn_write(tcp_conn_t *c, const uint8_t *data, size_t len);
/* `c`'s 5-tuple and send callback as the dispatcher knows it; `out` points into `c`, valid while
 * `c` is. */
void tcp_conn_describe(tcp_conn_t *c, turn_conn_t *out);
/* Stop (pause = 1) or resume (0) reading from the client: RFC 6062 backpressure from the peer side.
 * Does nothing once `c` is closing. */
void tcp_conn_pause(tcp_conn_t *c, int pause);
/* Close `c` (idempotent): tells the dispatcher and its pipe, and frees it after the loop ran the
 * close. `why` is logged (debug). */
void tcp_conn_close(tcp_conn_t *c, const char *why);
/* 1 when `c` is a new data connection (RFC 6062 §4.3): it carried nothing but ConnectionBind
 * requests, holds no allocation and is no pipe yet. Only such a connection may be bound or moved.
 */
int tcp_conn_fresh(tcp_conn_t *c);
/* Give up `c` (its socket, TLS state and unread bytes) for another worker: 0 with `h` filled and
 * `c` closing (its descriptor is a dup in `h`); -EPERM when it is not a new data connection
 * (tcp_conn_fresh), -EBUSY when bytes are still queued for it here, -EIO; on error `c` is as it
 * was. */
int tcp_conn_detach(tcp_conn_t *c, tcp_handoff_t *h);
/* Take over a detached connection on this worker (its thread): the connection, reading; NULL on
 * failure (everything `h` owned is freed). */
tcp_conn_t *tcp_conn_adopt(worker_t *w, tcp_handoff_t *h);

#endif
