/* tcp_relay.h - RFC 6062 TCP relaying on a worker (tcp_relay.c): the relayed listening socket of a
 * TCP allocation, peer data connections (Connect and ConnectionAttempt), ConnectionBind, and the
 * byte pipes between a peer and a client data connection (tcp_listener.h).
 *
 * Everything here runs on the owning worker's loop thread.
 */
#ifndef UTURN_TCP_RELAY_H
#define UTURN_TCP_RELAY_H

#include <stddef.h>
#include <stdint.h>

#include "alloc.h"
#include "dispatch.h"
#include "tcp_listener.h"

/* Add tcp_listen, tcp_connect and tcp_bind to the dispatcher's relay ops (relay_ops does). */
void tcp_relay_ops(worker_t *w, dispatch_relay_ops_t *ops);
/* The relay ops' close for a TCP allocation `a`: close its listener and every pipe; `a` is freed
 * (alloc_free) when the last of their handles has closed, or at once when it has none. */
void tcp_relay_close_alloc(worker_t *w, alloc_t *a);
/* Close pipes whose Connect or ConnectionBind is overdue (RFC 6062 §5.2, §5.3: 30 s), and pending
 * ones whose peer went away (the worker's sweep timer). */
void tcp_relay_sweep(worker_t *w, uint64_t now_ms);
/* Close every pipe (shutdown); their memory goes with their close callbacks. */
void tcp_relay_close_all(worker_t *w);

/* ---- from the pipe's client data connection (tcp_listener.c) ---- */

/* Bytes the client sent, for the peer (borrowed for the call). A peer that reads slowly pauses
 * the client (tcp_conn_pause) at WQ_HIGH and resumes it at WQ_LOW (wq.h); a failed write closes the
 * pipe and the client. */
void tcp_relay_from_client(tcp_pipe_t *p, const uint8_t *data, size_t len);
/* The client's write queue passed WQ_HIGH (high = 1: stop reading the peer) or fell back to WQ_LOW
 * (0: read the peer again). */
void tcp_relay_client_water(tcp_pipe_t *p, int high);
/* The client connection is closing: close the peer side too (RFC 6062 §5.5). */
void tcp_relay_client_closed(tcp_pipe_t *p);

#endif
