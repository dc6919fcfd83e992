/* dtls.h - TURN over DTLS (RFC 7350) on a worker's UDP listener for the TLS port.
 *
 * Datagrams whose first byte is 20..63 (RFC 7983) on that port are DTLS; others are plain STUN/TURN
 * and go to the dispatcher as usual. A ClientHello is answered statelessly (HelloVerifyRequest with
 * an HMAC cookie, RFC 6347 §4.2.1) and a session object exists only after the cookie came back, so
 * a spoofed flood costs no memory. A session costs about 48 KiB (OpenSSL's record buffers and
 * handshake state), so a worker holds at most max-dtls-sessions of them and at most
 * max-dtls-sessions-per-ip from one IP; a ClientHello beyond either is dropped before any SSL
 * object exists and counted. A handshake unfinished after tcp-frame-timeout, or a session idle
 * for tcp-idle-timeout without an allocation, is closed. Sessions belong to the worker; the
 * dispatcher sees them as TURN_DTLS connections.
 */
#ifndef UTURN_DTLS_H
#define UTURN_DTLS_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "udp_listener.h"
#include "worker.h"

/* Per-worker session table. 0 or -ENOMEM. */
int dtls_init(worker_t *w);
/* Free every session (worker shutdown). */
void dtls_close_all(worker_t *w);
/* A DTLS datagram arrived on listener `l` from `from`. */
void dtls_input(worker_t *w, udp_listener_t *l, const struct sockaddr *from, const uint8_t *buf,
                size_t len);
/* Handshake retransmission timers, handshake and idle bounds (the worker's 1 s sweep). */
void dtls_sweep(worker_t *w, uint64_t now_ms);

#endif
