/* shared.h - the server-wide state of the daemon, built once at start: what the engine reads
 * (turn_shared_t: config snapshots, nonce secret, peer policy, draining, quotas, EVEN-PORT
 * reservations, relay and alternate addresses), plus what only the daemon needs: the credential
 * sources, the TLS and DTLS contexts, the count of client TCP connections and the registry of RFC
 * 6062 relayed TCP addresses.
 */
#ifndef UTURN_SHARED_H
#define UTURN_SHARED_H

#include <stdatomic.h>
#include <stdint.h>
#include <sys/socket.h>
#include <uv.h>

#include "cfg.h"
#include "creds.h"
#include "sockaddr_util.h"
#include "tls.h"
#include "turn_shared.h"

typedef struct {
    turn_shared_t turn; /* the engine's part: every dispatch_t points at it */
    creds_shared_t *creds;
    /* Client TCP/TLS connections on every worker, against max-tcp-connections (resolved at start:
     * a flood of connections from many sources must leave descriptors for relay sockets). */
    _Atomic long tcp_conns;
    long tcp_conns_max;
    tls_t tls; /* TLS and DTLS contexts; reloaded by server_reload */
    /* RFC 6062 relayed TCP addresses in use: their sockets need SO_REUSEPORT (to connect out from
     * the listening port), so the kernel no longer keeps two allocations apart: we do. */
    uv_mutex_t tcp_lock;
    sa_any_t *tcp_ports;
    size_t ntcp_ports, captcp_ports;
    int ready; /* tcp_lock and tls initialised: shared_close undoes them */
} shared_t;

/* Build from a validated config and the listening addresses (relay IPs default to them). Returns 0
 * or -1 with a message naming the key at fault. */
int shared_init(shared_t *s, const cfg_t *cfg, const struct sockaddr_storage *listen,
                size_t nlisten, char *err, size_t errlen);
void shared_close(shared_t *s);

/* Claim / release a relayed TCP address for one allocation: 0, or -EADDRINUSE. */
int shared_tcp_port_take(shared_t *s, const struct sockaddr *addr);
void shared_tcp_port_release(shared_t *s, const struct sockaddr *addr);

#endif
