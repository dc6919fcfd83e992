/* dispatch.h - what uturnd does with one message from a client, and with one datagram from a peer.
 *
 * The dispatcher sees whole messages (a UDP datagram, or one frame cut from a TCP/TLS stream) and
 * answers through the connection's send callback. It reaches the world only through ops tables:
 * relay sockets (dispatch_relay_ops_t), RFC 5780 sends (dispatch_binding_ops_t) and credentials
 * (creds_ops_t); its clock is the caller's (dispatch_clock). It knows nothing of libuv or libssl
 * (server/turn is built without them: Makefile.am, server/poison/), so the fuzzers and tests
 * drive the very same code with fake sinks, fake relays, static credentials and a fixed clock.
 * One dispatch_t per worker; only that worker's thread calls it.
 */
#ifndef UTURN_DISPATCH_H
#define UTURN_DISPATCH_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "alloc.h"
#include "cfg.h"
#include "conn.h"
#include "creds_ops.h"
#include "list.h"
#include "log.h"
#include "siphash.h"
#include "stats.h"
#include "stun.h"
#include "stun_msg.h"
#include "turn_shared.h"
#include "usage.h"

/* Relay sockets, as the worker (libuv) or a test provides them. */
typedef struct {
    /* Open the UDP relay socket of `r` (r->addr holds IP and port). With fd >= 0, adopt that
     * already-bound socket (a redeemed reservation) instead. `dont_fragment` asks for DF on IPv4.
     * Returns 0, -EADDRINUSE (try another port), or another -errno. Sets r->handle. */
    int (*open)(void *env, alloc_t *a, alloc_relay_t *r, int fd, int dont_fragment);
    /* Bind and hold a socket on `addr` for an EVEN-PORT reservation: the fd, or -errno. */
    int (*hold)(void *env, const struct sockaddr *addr);
    /* Send one datagram from relay `r` to `peer`. 0 or -errno. */
    int (*send)(void *env, alloc_relay_t *r, const struct sockaddr *peer, const uint8_t *buf,
                size_t len);
    /* Close every relay socket of `a`, then alloc_free(a) (now or from a close callback). */
    void (*close)(void *env, alloc_t *a);
    /* RFC 6062 (NULL members: TCP relaying not offered). Listen on r->addr for peers: 0,
     * -EADDRINUSE or -errno. */
    int (*tcp_listen)(void *env, alloc_t *a, alloc_relay_t *r);
    /* Start a TCP connection from the relayed address to `peer`; the answer to the Connect comes
     * later through dispatch_tcp_connect_done. `req` is the request (copied by the callee). 0 or a
     * STUN error code to answer now (446). */
    int (*tcp_connect)(void *env, alloc_t *a, const struct sockaddr *peer, const stun_msg_t *req,
                       const void *auth);
    /* A ConnectionBind arrived on the client connection behind `conn` (not yet authenticated). The
     * callee answers it, possibly on another worker. */
    void (*tcp_bind)(void *env, const turn_conn_t *conn, const stun_msg_t *req,
                     uint32_t connection_id);
    /* The kernel fast path (NULL members: none, and the engine pays nothing; the worker gives
     * core/offload.c). offload: what the kernel must know about `a` changed: it was created, its
     * lifetime refreshed, a permission or channel installed or refreshed (ChannelBind's implied
     * permission included), or the sweep expired some of them. The callee diffs `a` against what
     * it installed, keeping its state in a->offload. gone = 1: `a` is being deleted (any reason:
     * Refresh 0, expiry, the admin, revocation, shutdown), called once, before the final usage
     * event and the ended totals are made: the callee removes everything and folds the kernel's
     * last counts into a->traffic. */
    void (*offload)(void *env, alloc_t *a, int gone);
    /* Add the kernel's counts of `a` since the last fold to a->traffic (dispatch_alloc_fold),
     * before anything reads it: usage events, the admin's views, a user's usage. */
    void (*fold)(void *env, alloc_t *a);
    /* Charge `bytes` that user space relays for `a` to the kernel path's max-bps bucket of `a`, so
     * both paths share one limit (dispatch_bps_ok): 1 taken, 0 over the limit, -1 `a` has no
     * kernel bucket (then the engine's own bucket decides). */
    int (*charge)(void *env, alloc_t *a, size_t bytes);
    void *env;
} dispatch_relay_ops_t;

/* RFC 5780 answers that leave from another of our listening addresses (CHANGE-REQUEST), as the
 * worker (libuv) or a test provides them. */
typedef struct {
    /* Send one datagram from our UDP listening address `from` to `to`. Returns 0 or -errno
     * (-EADDRNOTAVAIL when nothing listens on `from`). The bytes are copied or sent before it
     * returns. */
    int (*send_from)(void *env, const struct sockaddr *from, const struct sockaddr *to,
                     const uint8_t *buf, size_t len);
    void *env;
} dispatch_binding_ops_t;

typedef struct dispatch_pending dispatch_pending_t;

/* Unauthenticated answers over UDP (amplification, dispatch_limit_ok): an answer of up to
 * DISPATCH_UNAUTH_RATIO x its request's bytes is paid by the request itself; bytes beyond that are
 * metered per source IP in a fixed table of token buckets indexed by a keyed hash (no state per
 * source), and all of them against the worker's max-unauth-answer-bps. */
#define DISPATCH_UNAUTH_RATIO 4
#define DISPATCH_LIMIT_BUCKETS 4096
typedef struct {
    float tokens;
    uint32_t last_s;
} dispatch_bucket_t;

/* Headroom the relay receive path leaves before peer data so a Data indication header can be built
 * in place (20 header + 24 XOR-PEER-ADDRESS (IPv6) + 4 DATA header), and tailroom for padding. */
#define DISPATCH_HEADROOM 48
#define DISPATCH_TAILROOM 4

typedef struct dispatch {
    const cfg_t *cfg;
    turn_shared_t *shared;
    stats_t *stats;
    creds_ops_t creds; /* where keys come from (NULL members: none; every lookup is 500) */
    alloc_table_t allocs;
    dispatch_relay_ops_t relay;
    dispatch_binding_ops_t binding; /* set by the owner after dispatch_init; NULL send_from: a
                                     * CHANGE-REQUEST that needs another source is dropped */
    dispatch_usage_ops_t usage; /* set by the owner after dispatch_init; NULL event: no events */
    quota_cluster_ops_t cquota; /* cluster-wide user-quota, set by the owner after dispatch_init;
                                 * NULL take: the node's own count only */
    int cquota_replay;          /* the fleet's answer for the request being replayed, or -1 */
    usage_ended_t ended;        /* totals of ended allocations per user (usage-ended-users) */
    /* The engine's clock (dispatch_clock): it never reads one itself. */
    uint64_t now_ms;  /* monotonic ms: expiry of allocations, permissions, channels; rates */
    uint64_t unix_ms; /* wall clock in ms since 1970: nonces, REST expiry, reservations */
    list_t pending;   /* requests waiting for credentials or the fleet's quota, newest first */
    unsigned npending;
    uint64_t limit_seed;                /* seeds Data indication transaction ids */
    uint8_t limit_key[SIPHASH_KEY_LEN]; /* keys the hash of `limits` (chosen source IPs) */
    dispatch_bucket_t limits[DISPATCH_LIMIT_BUCKETS];
    size_t nonce_len; /* the length of every nonce we make */
    double budget;    /* bytes of unauthenticated answers that may go now (max-unauth-answer-bps) */
    uint64_t budget_ms; /* when it was last refilled; 0: never */
    log_limit_t auth_log;
    uint8_t out[STUN_MAX_MSG_LEN];
} dispatch_t;

/* 0 or -ENOMEM. `shared` outlives d; `creds` and `relay` are copied (NULL: none; credentials then
 * answer 500, see creds_ops_t). `id_base` tags allocation ids with the worker. */
int dispatch_init(dispatch_t *d, const cfg_t *cfg, turn_shared_t *shared, stats_t *stats,
                  const creds_ops_t *creds, const dispatch_relay_ops_t *relay, uint64_t id_base);
/* Delete every allocation (closing their relays) and drop pending work. */
void dispatch_close(dispatch_t *d);

/* Set the engine's clock; the caller does so before each batch of calls (a loop callback, a
 * test step), and nothing in the engine reads a clock of its own, so tests and fuzzers drive
 * every expiry with a fixed one. `now_ms` is monotonic (any epoch; it never goes back: the
 * worker's loop time), `unix_ms` the wall clock in ms since 1970 (it may jump; only compared with
 * timestamps that travel, like nonce and REST expiry, and with reservation deadlines). Randomness
 * is the other input from outside: rand_bytes (base/rand.h). */
static inline void dispatch_clock(dispatch_t *d, uint64_t now_ms, uint64_t unix_ms)
{
    d->now_ms = now_ms;
    d->unix_ms = unix_ms;
}

enum dispatch_result {
    DISPATCH_OK = 0,        /* handled (answered, or dropped and counted as the RFC says) */
    DISPATCH_NOT_TURN = -1, /* not STUN/ChannelData at all: a stream carrying this should close */
};

/* Handle one whole message from a client. */
int dispatch_message(dispatch_t *d, const turn_conn_t *conn, const uint8_t *buf, size_t len);

/* A datagram from `peer` arrived on relay `r` of `a`. `data` must have DISPATCH_HEADROOM writable
 * bytes before it and DISPATCH_TAILROOM after it: the ChannelData or Data indication for the client
 * is built in place (RFC 8656 §11.3, §12.6), no copy. */
void dispatch_relay_input(dispatch_t *d, alloc_t *a, alloc_relay_t *r, const struct sockaddr *peer,
                          uint8_t *data, size_t len);

/* The connection behind `send_ctx` (a TCP/TLS client) is closing: delete the allocation of its
 * 5-tuple (RFC 8656 §3.1: the allocation lives as long as the connection) and forget its pending
 * requests. */
void dispatch_conn_gone(dispatch_t *d, const turn_conn_t *conn);
/* 1 when the 5-tuple has an allocation (a stream with one is not idle). */
int dispatch_has_allocation(dispatch_t *d, const turn_conn_t *conn);

/* Expire permissions, channels and allocations (the worker's 1 s sweep), and make the periodic
 * usage events (usage-interval). */
void dispatch_sweep(dispatch_t *d);

/* RFC 6062 answers from the worker's TCP relay (dispatch_tcp.c). `req`/`auth` are what tcp_connect
 * got. code 0: success with CONNECTION-ID `id`. */
void dispatch_tcp_connect_done(dispatch_t *d, alloc_t *a, const stun_msg_t *req, const void *auth,
                               uint32_t id, int code);
/* ConnectionAttempt indication on the allocation's control connection (RFC 6062 §5.3). */
void dispatch_tcp_attempt(dispatch_t *d, alloc_t *a, const struct sockaddr *peer, uint32_t id);
/* Authenticate a ConnectionBind against allocation `a` and answer on `conn`. Returns 0 when it
 * succeeded (the caller turns the connection into a pipe), or -1 (answered with an error). */
int dispatch_tcp_bind_check(dispatch_t *d, const turn_conn_t *conn, const stun_msg_t *req,
                            alloc_t *a);
/* Refuse a ConnectionBind (400 when its CONNECTION-ID is not pending, 500 when it could not be
 * handed to its worker). */
void dispatch_tcp_bind_refuse(dispatch_t *d, const turn_conn_t *conn, const stun_msg_t *req,
                              int code);
/* Size of the authentication context tcp_connect receives. */
size_t dispatch_auth_size(void);

/* Why an allocation goes, for the counters and the usage events: deleted (Refresh 0, its
 * connection closed), expired, never created (its relay could not be opened: counted as failed,
 * not deleted, and no event), or killed (the admin, or shutdown: counted as deleted). */
enum {
    DISPATCH_GONE_DELETED = 0,
    DISPATCH_GONE_EXPIRED = 1,
    DISPATCH_GONE_FAILED = 2,
    DISPATCH_GONE_KILLED = 3,
};
/* Bring a->traffic up to date with the kernel path's counts (relay ops' fold; nothing without
 * one). Owning thread. */
static inline void dispatch_alloc_fold(dispatch_t *d, alloc_t *a)
{
    if (d->relay.fold && a->offload)
        d->relay.fold(d->relay.env, a);
}

/* Tell the kernel path (relay ops' offload) that what it must know about `a` changed. */
static inline void dispatch_offload(dispatch_t *d, alloc_t *a)
{
    if (d->relay.offload)
        d->relay.offload(d->relay.env, a, 0);
}

/* Delete an allocation now; `why` one of DISPATCH_GONE_*. */
void dispatch_alloc_delete(dispatch_t *d, alloc_t *a, int why);

/* `user`'s usage on this worker: its live allocations summed into *live, and the totals of its
 * ended ones the table still holds into *ended. Owning thread only. */
void dispatch_usage_user(dispatch_t *d, const char *user, size_t ulen, usage_sum_t *live,
                         usage_sum_t *ended);

#endif
