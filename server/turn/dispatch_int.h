/* dispatch_int.h - helpers shared by the dispatch_*.c files (one file per TURN method family).
 * Not for use outside server/dispatch*.c.
 */
#ifndef UTURN_DISPATCH_INT_H
#define UTURN_DISPATCH_INT_H

#include <stdbool.h>

#include "dispatch.h"
#include "frame.h"
#include "stun.h"
#include "stun_build.h"

/* Result of authenticating a request (RFC 8489 §9.2.4). */
typedef struct {
    creds_key_t key;
    bool alg_sha256; /* PASSWORD-ALGORITHM SHA-256: the 32-byte key */
    bool mi_sha256;  /* the request used MESSAGE-INTEGRITY-SHA256: answer with it too */
    const char *user;
    size_t ulen;
    char userbuf[STUN_USERNAME_MAX + 1]; /* for USERHASH lookups */
} dispatch_auth_t;

enum dispatch_auth_result {
    DISPATCH_AUTH_OK = 0, /* authenticated: go on */
    DISPATCH_AUTH_DONE,   /* answered (401/400/438/441/500) or parked waiting for Redis */
};

/* Authenticate `msg`. With `a` (the 5-tuple's allocation) its stored key is used and a different
 * username gets 441. */
enum dispatch_auth_result dispatch_authenticate(dispatch_t *d, const turn_conn_t *conn,
                                                const stun_msg_t *msg, alloc_t *a,
                                                dispatch_auth_t *out);

/* Start a response of class `cls` to `msg` in d->out. */
void dispatch_begin(dispatch_t *d, stun_build_t *b, const stun_msg_t *msg, enum stun_class cls);
/* Finish (SOFTWARE, integrity with `auth`'s key when given, FINGERPRINT when the request had one)
 * and send. Returns the length sent or -errno. */
int dispatch_finish(dispatch_t *d, const turn_conn_t *conn, const stun_msg_t *msg, stun_build_t *b,
                    const dispatch_auth_t *auth);
/* An error response; unauthenticated ones over UDP pass dispatch_limit_ok (in dispatch_finish). */
void dispatch_error(dispatch_t *d, const turn_conn_t *conn, const stun_msg_t *msg, int code,
                    const dispatch_auth_t *auth);
/* 1 when an unauthenticated answer of `ans_len` bytes to a request of `req_len` bytes may go to
 * conn's source now, and then counted as sent; 0 (dropped and counted) otherwise. UDP only; streams
 * and DTLS always 1. dispatch_finish calls it for every answer without integrity. */
int dispatch_limit_ok(dispatch_t *d, const turn_conn_t *conn, size_t req_len, size_t ans_len);
/* Before building an unauthenticated answer of at least `min_len` bytes to `req_len` bytes: 0
 * (dropped and counted) when dispatch_limit_ok would refuse it anyway, so a flood costs no nonce
 * HMAC; 1 otherwise (dispatch_limit_ok still decides on the real size). */
int dispatch_limit_precheck(dispatch_t *d, const turn_conn_t *conn, size_t req_len, size_t min_len);
/* Plan an unauthenticated error answer `code` to `msg` that takes `len` bytes (header included)
 * besides its ERROR-CODE reason phrase and what dispatch_finish adds. Over UDP *reason becomes ""
 * when the standard phrase would make the answer bigger than the request's own allowance
 * (DISPATCH_UNAUTH_RATIO x its bytes; RFC 8489 §14.8 allows an empty phrase), so that a small first
 * request, like a browser's 28-byte Allocate, gets its 401 however a spoofer uses the source IP's
 * budget; otherwise NULL (the standard phrase). Returns dispatch_limit_precheck's verdict: 0 means
 * drop (counted), build nothing. */
int dispatch_unauth_plan(dispatch_t *d, const turn_conn_t *conn, const stun_msg_t *msg, int code,
                         size_t len, const char **reason);

/* Parking a request until the credential store answers: _new copies it (NULL when too many are
 * parked), the record is the `arg` of the creds lookup, _start links it once the lookup said
 * CREDS_PENDING (else free() it), and dispatch_pending_ready (the creds callback) dispatches it
 * again. */
dispatch_pending_t *dispatch_pending_new(dispatch_t *d, const turn_conn_t *conn,
                                         const stun_msg_t *msg);
void dispatch_pending_start(dispatch_t *d, dispatch_pending_t *p);
/* Free a record that was never started (nor handed to a lookup that answered PENDING). */
void dispatch_pending_discard(dispatch_pending_t *p);
/* Note whose fleet-wide unit a record parked for the quota waits for (copied): 0 or -ENOMEM. */
int dispatch_pending_user(dispatch_pending_t *p, const char *user, size_t ulen);
void dispatch_pending_ready(void *arg);
/* The same for a cluster-wide quota take (quota_cluster_cb): the request is replayed with the
 * fleet's answer in d->cquota_replay; an OK answer the replay did not use is given back. */
void dispatch_pending_quota_ready(void *arg, int answer);

/* Method handlers. */
/* Binding (RFC 8489 §7; RFC 5780 §6 when rfc5780 is on): dispatch_binding.c. */
void dispatch_binding(dispatch_t *d, const turn_conn_t *conn, const stun_msg_t *msg);
/* 1 when RFC 5780 is served on the address `conn` arrived on (its CHANGE-REQUEST, RESPONSE-PORT
 * and PADDING are then understood, not 420). */
int dispatch_binding_rfc5780(const dispatch_t *d, const turn_conn_t *conn);
void dispatch_allocate(dispatch_t *d, const turn_conn_t *conn, const stun_msg_t *msg);
void dispatch_refresh(dispatch_t *d, const turn_conn_t *conn, const stun_msg_t *msg, alloc_t *a);
void dispatch_create_permission(dispatch_t *d, const turn_conn_t *conn, const stun_msg_t *msg,
                                alloc_t *a);
void dispatch_channel_bind(dispatch_t *d, const turn_conn_t *conn, const stun_msg_t *msg,
                           alloc_t *a);
void dispatch_send_indication(dispatch_t *d, const turn_conn_t *conn, const stun_msg_t *msg);
void dispatch_connect(dispatch_t *d, const turn_conn_t *conn, const stun_msg_t *msg, alloc_t *a);
void dispatch_connection_bind(dispatch_t *d, const turn_conn_t *conn, const stun_msg_t *msg);
void dispatch_channel_data(dispatch_t *d, const turn_conn_t *conn, const uint8_t *buf, size_t len);

/* Shared checks for peers: family served by the allocation (443 otherwise), policy (403). Returns 0
 * or the STUN error code. `out` receives the canonical peer address. */
int dispatch_check_peer(dispatch_t *d, alloc_t *a, const stun_msg_t *msg, const stun_attr_t *attr,
                        sa_any_t *out);

/* Highest channel number ChannelBind accepts (RFC 8656 §12 vs RFC 5766 §11). */
static inline uint16_t dispatch_channel_max(const dispatch_t *d)
{
    return d->cfg->strict_channel_numbers ? FRAME_CHANNEL_MAX : FRAME_CHANNEL_MAX_RFC5766;
}

/* Move the current-allocation gauges (by transport and relay family) of `a` by `delta`. */
void dispatch_alloc_gauges(dispatch_t *d, const alloc_t *a, int64_t delta);

/* Hand a usage event of kind `kind` (enum usage_kind) about `a` to d->usage (nothing when no hook
 * is set); `reason` is an enum usage_reason. dispatch_usage.c. */
void dispatch_usage_event(dispatch_t *d, alloc_t *a, int kind, int reason);

/* max-bps: 1 when `bytes` may pass now. */
int dispatch_bps_ok(dispatch_t *d, alloc_t *a, size_t bytes);

#endif
