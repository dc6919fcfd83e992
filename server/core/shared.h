/* shared.h - state every worker reads, built once at start: credentials, the nonce secret, the peer
 * policy, relay addresses; plus the few things workers must agree on, each behind its own lock and
 * touched only when allocations are made or end (never per packet): per-user and total quotas, and
 * EVEN-PORT reservations (RFC 8656 §7.2: a RESERVATION-TOKEN may be redeemed from any 5-tuple, so
 * on any worker).
 */
#ifndef UTURN_SHARED_H
#define UTURN_SHARED_H

#include <stdatomic.h>
#include <stdint.h>
#include <sys/socket.h>
#include <uv.h>

#include "alloc.h"
#include "cfg.h"
#include "creds.h"
#include "peer_policy.h"
#include "siphash.h"
#include "tls.h"
#include "turn_auth.h"

#define SHARED_MAX_RELAY_IPS 64

typedef struct {
    sa_any_t addr;      /* bind here */
    sa_any_t announced; /* report this (external-ip mapping), port filled per allocation */
} shared_relay_ip_t;

typedef struct shared_user_count shared_user_count_t;

typedef struct shared_reservation {
    uint64_t token;
    int fd; /* the held socket on port N+1, adopted by the redeeming worker */
    sa_any_t addr;
    uint64_t expires_unix_ms;
    /* The user whose quota holds one unit for this reservation until it is redeemed or expires
     * (NULL: none, or the unit passed to the redeeming allocation). */
    char *user;
    size_t ulen;
    struct shared_reservation *next;
} shared_reservation_t;

typedef struct {
    const cfg_t *cfg;            /* as at start (what shared_init built from) */
    _Atomic(const cfg_t *) live; /* the current snapshot for reloadable values (quotas) */
    creds_shared_t *creds;
    uint8_t nonce_secret[TURN_NONCE_SECRET_LEN];
    uint32_t nonce_features; /* security feature bits we advertise */
    peer_range_t *allow, *deny;
    peer_policy_t policy;
    shared_relay_ip_t relay4[SHARED_MAX_RELAY_IPS];
    int nrelay4;
    shared_relay_ip_t relay6[SHARED_MAX_RELAY_IPS];
    int nrelay6;
    sa_any_t *alternates; /* alternate-server, in order; picked round-robin */
    size_t nalternates;
    sa_any_t *tls_alternates; /* tls-alternate-server */
    size_t ntls_alternates;
    _Atomic unsigned alternate_next;
    /* RFC 5780 (rfc5780 on): per family ([0] IPv4, [1] IPv6) the first two listening IPs A1, A2
     * (port 0), when that family has two; and the ports P1 (listening-port), P2 (alt). */
    sa_any_t rfc5780_ip[2][2];
    int rfc5780_family_ok[2];
    uint16_t rfc5780_port[2];
    /* Quotas. */
    uv_mutex_t quota_lock;
    shared_user_count_t **user_counts; /* hash buckets */
    size_t user_buckets;
    uint8_t user_key[SIPHASH_KEY_LEN]; /* keys the hash of user_counts and peer_counts */
    _Atomic long total_allocs;
    /* Client TCP/TLS connections on every worker, against max-tcp-connections (resolved at start:
     * a flood of connections from many sources must leave descriptors for relay sockets). */
    _Atomic long tcp_conns;
    long tcp_conns_max;
    _Atomic int draining;
    tls_t tls; /* TLS and DTLS contexts; reloaded by server_reload */
    /* RFC 6062 relayed TCP addresses in use: their sockets need SO_REUSEPORT (to connect out from
     * the listening port), so the kernel no longer keeps two allocations apart: we do. */
    uv_mutex_t tcp_lock;
    sa_any_t *tcp_ports;
    size_t ntcp_ports, captcp_ports;
    /* Reservations. */
    uv_mutex_t resv_lock;
    shared_reservation_t *resv;
    /* RFC 6062 peer connections per user (user-peer-connection-quota), a table of their own: they
     * come and go without allocations doing so, and may outlive their allocation's quota entry. */
    uv_mutex_t peer_lock;
    shared_user_count_t **peer_counts; /* hash buckets, user_buckets of them */
} shared_t;

/* Build from a validated config and the listening addresses (relay IPs default to them). Returns 0
 * or -1 with a message naming the key at fault. */
int shared_init(shared_t *s, const cfg_t *cfg, const struct sockaddr_storage *listen,
                size_t nlisten, char *err, size_t errlen);
void shared_close(shared_t *s);

/* The next alternate server (round-robin) for a client over TLS/DTLS (`secure`) or not, or NULL
 * when none is configured. */
const struct sockaddr *shared_alternate(shared_t *s, int secure);

/* RFC 5780 §6.1 for a Binding request that arrived on `local` (Da:Dp): into `from` the address to
 * answer from for the CHANGE-REQUEST flags (Ca instead of Da with change_ip, Cp instead of Dp with
 * change_port), into `other` OTHER-ADDRESS (Ca:Cp). Returns 0, or -1 when rfc5780 is off or `local`
 * is not one of the four A x P addresses: the usage is then unsupported on that address (no
 * OTHER-ADDRESS, 420 for CHANGE-REQUEST). Pure lookup; any thread. */
int shared_rfc5780_addrs(const shared_t *s, const struct sockaddr *local, int change_ip,
                         int change_port, sa_any_t *from, sa_any_t *other);

/* Quotas (RFC 8656 §7.2: 486 per user, 508 when the server is full). Returns 0 and counts the
 * allocation, or -EDQUOT (user-quota) / -ENOSPC (total-quota). */
int shared_quota_take(shared_t *s, const char *user, size_t ulen);
void shared_quota_release(shared_t *s, const char *user, size_t ulen);

/* Count one RFC 6062 peer connection (accepted or made by Connect) for `user`, on any worker:
 * 0, -EDQUOT when the user holds user-peer-connection-quota of them already, or -ENOMEM. */
int shared_peer_conn_take(shared_t *s, const char *user, size_t ulen);
void shared_peer_conn_release(shared_t *s, const char *user, size_t ulen);

/* Reservations: hold `fd` (bound to `addr`) for reservation-lifetime seconds under a new random
 * token, returned (0 when out of memory: the caller still owns fd). With `user`, the reservation
 * keeps the one quota unit the caller took for it with shared_quota_take (so EVEN-PORT R=1 cannot
 * pin ports past user-quota / total-quota) and gives it back when redeemed or expired. */
uint64_t shared_resv_add(shared_t *s, int fd, const struct sockaddr *addr, uint64_t now_unix_ms,
                         const char *user, size_t ulen);
/* Redeem: returns the fd and its address, or -1 when the token is unknown or expired. Releases
 * the reservation's quota unit, if it still has one. */
int shared_resv_take(shared_t *s, uint64_t token, sa_any_t *addr, uint64_t now_unix_ms);
/* Before redeeming: when the live reservation `token` holds a quota unit of `user`, hand that unit
 * to the user's new allocation (which then takes none of its own) and return 1; else 0. So a user
 * at its quota can still redeem its own reservation. */
int shared_resv_adopt_unit(shared_t *s, uint64_t token, const char *user, size_t ulen,
                           uint64_t now_unix_ms);
/* Close reservations past their time (any worker's sweep may call it), releasing their units. */
void shared_resv_expire(shared_t *s, uint64_t now_unix_ms);

/* Claim / release a relayed TCP address for one allocation: 0, or -EADDRINUSE. */
int shared_tcp_port_take(shared_t *s, const struct sockaddr *addr);
void shared_tcp_port_release(shared_t *s, const struct sockaddr *addr);

#endif
