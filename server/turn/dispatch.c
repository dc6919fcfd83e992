/* dispatch.c - demultiplex a client message, route it to its method, and the plumbing every method
 * shares: replies, the amplification limit, parked requests, the sweep.
 *
 * RFC 7983 §7 (first-byte demux), RFC 8489 §6.3 (basic checks fail silently; unknown
 * comprehension-required attributes get 420), RFC 8656 §4 (every request but Binding
 * and Allocate needs the 5-tuple's allocation: 437 otherwise; indications and ChannelData without
 * one are dropped), §12 (ChannelData).
 */
#include "dispatch.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "dispatch_int.h"
#include "frame.h"
#include "rand.h"
#include "sockaddr_util.h"
#include "stun_build.h"
#include "turn_auth.h"
#include "util.h"

#define SOFTWARE_NAME "uturn/" PACKAGE_VERSION
#define DISPATCH_MAX_PENDING 1024
/* Answer bytes beyond DISPATCH_UNAUTH_RATIO x the request, per source IP bucket: a burst, then a
 * trickle (see dispatch_limit_ok). */
#define LIMIT_EXCESS_BURST 2048.0f
#define LIMIT_EXCESS_PER_S 512.0f

struct dispatch_pending {
    list_t link; /* on dispatch_t.pending */
    dispatch_t *d;
    turn_conn_t conn;
    sa_any_t remote;
    char *quser; /* parked for the fleet's quota: whose unit it is (heap), else NULL */
    size_t qulen;
    size_t len;
    uint8_t data[];
};

/* Comprehension-required attributes we understand (RFC 8489 §14, RFC 8656 §18, RFC 5780 §7, ICE
 * PRIORITY/USE-CANDIDATE so ICE-style checks sent to us are not refused). */
static const uint16_t known_required[] = {
    STUN_ATTR_MAPPED_ADDRESS,
    STUN_ATTR_USERNAME,
    STUN_ATTR_MESSAGE_INTEGRITY,
    STUN_ATTR_ERROR_CODE,
    STUN_ATTR_UNKNOWN_ATTRIBUTES,
    STUN_ATTR_CHANNEL_NUMBER,
    STUN_ATTR_LIFETIME,
    STUN_ATTR_XOR_PEER_ADDRESS,
    STUN_ATTR_DATA,
    STUN_ATTR_REALM,
    STUN_ATTR_NONCE,
    STUN_ATTR_XOR_RELAYED_ADDRESS,
    STUN_ATTR_REQUESTED_ADDRESS_FAMILY,
    STUN_ATTR_EVEN_PORT,
    STUN_ATTR_REQUESTED_TRANSPORT,
    STUN_ATTR_DONT_FRAGMENT,
    STUN_ATTR_MESSAGE_INTEGRITY_SHA256,
    STUN_ATTR_PASSWORD_ALGORITHM,
    STUN_ATTR_USERHASH,
    STUN_ATTR_XOR_MAPPED_ADDRESS,
    STUN_ATTR_RESERVATION_TOKEN,
    STUN_ATTR_PRIORITY,
    STUN_ATTR_USE_CANDIDATE,
    STUN_ATTR_CONNECTION_ID,
};

int dispatch_init(dispatch_t *d, const cfg_t *cfg, turn_shared_t *shared, stats_t *stats,
                  const creds_ops_t *creds, const dispatch_relay_ops_t *relay, uint64_t id_base)
{
    memset(d, 0, sizeof(*d));
    d->cfg = cfg;
    d->shared = shared;
    d->stats = stats;
    if (creds)
        d->creds = *creds;
    if (relay)
        d->relay = *relay;
    list_init(&d->pending);
    d->cquota_replay = -1;
    uint8_t key[SIPHASH_KEY_LEN];
    rand_bytes(key, sizeof(key));
    rand_bytes(&d->limit_seed, sizeof(d->limit_seed));
    rand_bytes(d->limit_key, sizeof(d->limit_key));
    /* Every nonce has one length: known up front, a challenge's size is too (dispatch_auth.c). */
    uint8_t secret[TURN_NONCE_SECRET_LEN] = {0};
    struct sockaddr_in sin = {.sin_family = AF_INET};
    char nonce[TURN_NONCE_MAX + 1];
    int nlen = turn_nonce_make(secret, 0, 0, (const struct sockaddr *)&sin, nonce, sizeof(nonce));
    d->nonce_len = nlen > 0 ? (size_t)nlen : 0;
    uint8_t ukey[SIPHASH_KEY_LEN];
    rand_bytes(ukey, sizeof(ukey));
    usage_ended_init(&d->ended, (size_t)cfg->usage_ended_users, ukey);
    return alloc_table_init(&d->allocs, key, id_base);
}

static void pending_unlink(dispatch_t *d, dispatch_pending_t *p)
{
    list_remove(&p->link);
    d->npending--;
}

static void pending_free(dispatch_t *d, dispatch_pending_t *p)
{
    pending_unlink(d, p);
    if (d->creds.cancel)
        d->creds.cancel(d->creds.env, p);
    if (d->cquota.cancel)
        d->cquota.cancel(d->cquota.env, p);
    free(p->quser);
    free(p);
}

void dispatch_close(dispatch_t *d)
{
    while (!list_empty(&d->pending))
        pending_free(d, LIST_FIRST(&d->pending, dispatch_pending_t, link));
    while (!list_empty(&d->allocs.all))
        dispatch_alloc_delete(d, LIST_FIRST(&d->allocs.all, alloc_t, link), DISPATCH_GONE_KILLED);
    free(d->allocs.buckets);
    d->allocs.buckets = NULL;
    usage_ended_free(&d->ended);
}

void dispatch_begin(dispatch_t *d, stun_build_t *b, const stun_msg_t *msg, enum stun_class cls)
{
    stun_build_init(b, d->out, sizeof(d->out), stun_type(msg->method, cls), msg->tid);
}

static size_t pad4(size_t n) { return (n + 3) & ~(size_t)3; }

/* Bytes dispatch_finish adds to an unauthenticated answer after its attributes. */
static size_t finish_extra(const dispatch_t *d, const stun_msg_t *msg)
{
    size_t n = msg->fp_idx >= 0 ? 8 : 0;
    if (d->cfg->software_attribute)
        n += 4 + pad4(sizeof(SOFTWARE_NAME) - 1);
    return n;
}

int dispatch_unauth_plan(dispatch_t *d, const turn_conn_t *conn, const stun_msg_t *msg, int code,
                         size_t len, const char **reason)
{
    *reason = NULL;
    if (conn->transport != TURN_UDP)
        return 1;
    len += finish_extra(d, msg);
    size_t full = len + pad4(strlen(stun_error_reason(code)));
    if (full <= msg->len * DISPATCH_UNAUTH_RATIO)
        len = full;
    else
        *reason = ""; /* RFC 8489 §14.8: any phrase, the empty one included */
    return dispatch_limit_precheck(d, conn, msg->len, len);
}

int dispatch_finish(dispatch_t *d, const turn_conn_t *conn, const stun_msg_t *msg, stun_build_t *b,
                    const dispatch_auth_t *auth)
{
    if (d->cfg->software_attribute)
        stun_build_attr(b, STUN_ATTR_SOFTWARE, SOFTWARE_NAME, strlen(SOFTWARE_NAME));
    if (auth) {
        const uint8_t *key = auth->alg_sha256 ? auth->key.sha256 : auth->key.md5;
        size_t klen = auth->alg_sha256 ? sizeof(auth->key.sha256) : sizeof(auth->key.md5);
        if (auth->mi_sha256)
            stun_build_integrity_sha256(b, key, klen);
        else
            stun_build_integrity(b, key, klen);
    }
    if (msg->fp_idx >= 0)
        stun_build_fingerprint(b);
    int len = stun_build_finish(b);
    if (len < 0)
        return len; /* our own bug: every reply fits STUN_MAX_MSG_LEN */
    if (!auth && !dispatch_limit_ok(d, conn, msg->len, (size_t)len))
        return -EAGAIN;
    stats_inc(&d->stats->stun_responses);
    int rc = conn->send(conn->send_ctx, conn->remote, b->buf, (size_t)len);
    return rc < 0 ? rc : len;
}

/* Take `n` excess bytes from the source IP's bucket (only look with !take): 1, or 0 when it has
 * too few. */
static int source_take(dispatch_t *d, const struct sockaddr *sa, float n, int take)
{
    size_t iplen;
    const uint8_t *ip = sa_ip_bytes(sa, &iplen);
    uint64_t h = siphash(d->limit_key, ip, iplen);
    dispatch_bucket_t *bk = &d->limits[h % DISPATCH_LIMIT_BUCKETS];
    uint32_t now_s = (uint32_t)(d->now_ms / 1000);
    if (bk->last_s == 0) {
        bk->tokens = LIMIT_EXCESS_BURST;
    } else if (now_s > bk->last_s) {
        bk->tokens += (float)(now_s - bk->last_s) * LIMIT_EXCESS_PER_S;
        if (bk->tokens > LIMIT_EXCESS_BURST)
            bk->tokens = LIMIT_EXCESS_BURST;
    }
    bk->last_s = now_s ? now_s : 1;
    if (bk->tokens < n)
        return 0;
    if (take)
        bk->tokens -= n;
    return 1;
}

/* The worker's max-unauth-answer-bps bucket, with one second of burst. */
static void budget_refill(dispatch_t *d)
{
    double rate = (double)d->cfg->max_unauth_bps;
    if (d->budget_ms == 0 || d->now_ms > d->budget_ms) {
        double got = d->budget_ms ? (double)(d->now_ms - d->budget_ms) * rate / 1000.0 : rate;
        d->budget = d->budget + got > rate ? rate : d->budget + got; /* 1 s of burst */
        d->budget_ms = d->now_ms ? d->now_ms : 1;
    }
}

int dispatch_limit_precheck(dispatch_t *d, const turn_conn_t *conn, size_t req_len, size_t min_len)
{
    if (conn->transport != TURN_UDP)
        return 1;
    budget_refill(d);
    if (d->budget < (double)min_len) {
        stats_inc(&d->stats->drop_unauth_budget);
        return 0;
    }
    size_t room = req_len * DISPATCH_UNAUTH_RATIO;
    if (min_len > room && !source_take(d, conn->remote, (float)(min_len - room), 0)) {
        stats_inc(&d->stats->drop_amplification);
        return 0;
    }
    return 1;
}

/* RFC 8656 §21.2: do not be an amplifier for spoofed sources. The risk is the answer bytes beyond
 * the request bytes, so each request brings its own allowance: an answer of up to
 * DISPATCH_UNAUTH_RATIO x the request's bytes needs nothing else (QUIC bounds an unverified
 * address the same way, at 3x: RFC 9000 §8). A spoofer's requests therefore cannot use up what the
 * victim's own requests are owed; a per-IP budget alone could be drained by anyone able to spoof
 * that IP, silencing the victim's 401s. Only the bytes beyond the ratio are metered per source IP
 * (a fixed table keyed by a secret hash: no state per source), and every unauthenticated answer
 * byte counts against the worker's max-unauth-answer-bps, so the total is bounded as well. */
int dispatch_limit_ok(dispatch_t *d, const turn_conn_t *conn, size_t req_len, size_t ans_len)
{
    if (conn->transport != TURN_UDP)
        return 1; /* a stream's or DTLS session's source address is proven by its handshake */
    budget_refill(d);
    if (d->budget < (double)ans_len) {
        stats_inc(&d->stats->drop_unauth_budget);
        return 0;
    }
    size_t room = req_len * DISPATCH_UNAUTH_RATIO;
    if (ans_len > room && !source_take(d, conn->remote, (float)(ans_len - room), 1)) {
        stats_inc(&d->stats->drop_amplification);
        return 0;
    }
    d->budget -= (double)ans_len;
    return 1;
}

void dispatch_error(dispatch_t *d, const turn_conn_t *conn, const stun_msg_t *msg, int code,
                    const dispatch_auth_t *auth)
{
    const char *reason = NULL;
    if (!auth && !dispatch_unauth_plan(d, conn, msg, code, STUN_HEADER_LEN + 8, &reason))
        return;
    stun_build_t b;
    dispatch_begin(d, &b, msg, STUN_CLASS_ERROR);
    stun_build_error(&b, code, reason);
    stats_error_sent(d->stats, code);
    (void)dispatch_finish(d, conn, msg, &b, auth);
}

static void reply_unknown(dispatch_t *d, const turn_conn_t *conn, const stun_msg_t *msg,
                          const uint16_t *unknown, size_t n)
{
    const char *reason;
    if (!dispatch_unauth_plan(d, conn, msg, STUN_ERR_UNKNOWN_ATTRIBUTE,
                              STUN_HEADER_LEN + 8 + 4 + pad4(2 * n), &reason))
        return;
    stun_build_t b;
    dispatch_begin(d, &b, msg, STUN_CLASS_ERROR);
    stun_build_error(&b, STUN_ERR_UNKNOWN_ATTRIBUTE, reason);
    stun_build_unknown(&b, unknown, n);
    stats_error_sent(d->stats, STUN_ERR_UNKNOWN_ATTRIBUTE);
    (void)dispatch_finish(d, conn, msg, &b, NULL);
}

static void handle_request(dispatch_t *d, const turn_conn_t *conn, const stun_msg_t *msg)
{
    uint16_t unknown[16];
    const uint16_t *known = known_required;
    size_t nknown = ARRAY_SIZE(known_required);
    /* RFC 5780 §6: its request attributes are understood only where the usage is served; elsewhere
     * CHANGE-REQUEST (and RESPONSE-PORT, PADDING) get 420. */
    uint16_t known5780[ARRAY_SIZE(known_required) + 3];
    if (msg->method == STUN_METHOD_BINDING && dispatch_binding_rfc5780(d, conn)) {
        memcpy(known5780, known_required, sizeof(known_required));
        known5780[nknown++] = STUN_ATTR_CHANGE_REQUEST;
        known5780[nknown++] = STUN_ATTR_RESPONSE_PORT;
        known5780[nknown++] = STUN_ATTR_PADDING;
        known = known5780;
    }
    int n = stun_msg_unknown_required(msg, known, nknown, unknown, ARRAY_SIZE(unknown));
    if (n > 0) {
        reply_unknown(d, conn, msg, unknown, n < 16 ? (size_t)n : 16);
        return;
    }
    if (msg->method == STUN_METHOD_BINDING) {
        dispatch_binding(d, conn, msg);
        return;
    }
    stats_inc(&d->stats->turn_requests);
    if (msg->method == STUN_METHOD_ALLOCATE) {
        dispatch_allocate(d, conn, msg);
        return;
    }
    if (msg->method == STUN_METHOD_CONNECTION_BIND) {
        dispatch_connection_bind(d, conn, msg); /* arrives on a new connection: no allocation */
        return;
    }
    alloc_t *a = alloc_find(&d->allocs, conn->transport, conn->remote, conn->local);
    switch (msg->method) {
    case STUN_METHOD_REFRESH:
    case STUN_METHOD_CREATE_PERMISSION:
    case STUN_METHOD_CHANNEL_BIND:
    case STUN_METHOD_CONNECT:
        if (!a) {
            /* RFC 8656 §7.3 etc.: no allocation on this 5-tuple. */
            stats_inc(&d->stats->drop_no_allocation);
            dispatch_error(d, conn, msg, STUN_ERR_ALLOCATION_MISMATCH, NULL);
            return;
        }
        if (msg->method == STUN_METHOD_REFRESH)
            dispatch_refresh(d, conn, msg, a);
        else if (msg->method == STUN_METHOD_CREATE_PERMISSION)
            dispatch_create_permission(d, conn, msg, a);
        else if (msg->method == STUN_METHOD_CHANNEL_BIND)
            dispatch_channel_bind(d, conn, msg, a);
        else
            dispatch_connect(d, conn, msg, a);
        return;
    default:
        /* Unknown methods. */
        stats_inc(&d->stats->drop_unsupported);
        dispatch_error(d, conn, msg, STUN_ERR_BAD_REQUEST, NULL);
    }
}

static int handle_stun(dispatch_t *d, const turn_conn_t *conn, const uint8_t *buf, size_t len)
{
    stun_msg_t msg;
    int rc = stun_msg_decode(buf, len, &msg);
    if (rc != 0) {
        /* RFC 8489 §6.3: a message failing the basic checks is discarded silently. */
        stats_inc(&d->stats->drop_malformed);
        return (rc == STUN_MSG_E_COOKIE || rc == STUN_MSG_E_NOT_STUN) ? DISPATCH_NOT_TURN
                                                                      : DISPATCH_OK;
    }
    switch (msg.cls) {
    case STUN_CLASS_REQUEST:
        handle_request(d, conn, &msg);
        return DISPATCH_OK;
    case STUN_CLASS_INDICATION:
        if (msg.method == STUN_METHOD_BINDING) {
            /* Keepalive (RFC 8489 §6.3.2 / RFC 8445 §11): accepted, never answered. */
            stats_inc(&d->stats->stun_binding_indications);
        } else if (msg.method == STUN_METHOD_SEND) {
            dispatch_send_indication(d, conn, &msg);
        } else {
            stats_inc(&d->stats->drop_unsupported);
        }
        return DISPATCH_OK;
    default:
        /* We send no requests, so a response from a client answers nothing. */
        stats_inc(&d->stats->drop_unsupported);
        return DISPATCH_OK;
    }
}

int dispatch_message(dispatch_t *d, const turn_conn_t *conn, const uint8_t *buf, size_t len)
{
    if (len == 0) {
        stats_inc(&d->stats->drop_not_stun);
        return DISPATCH_OK;
    }
    switch (frame_classify(buf[0])) {
    case FRAME_CHANNEL:
        dispatch_channel_data(d, conn, buf, len);
        return DISPATCH_OK;
    case FRAME_STUN:
        if (len < STUN_HEADER_LEN) {
            stats_inc(&d->stats->drop_malformed);
            return conn->transport == TURN_UDP ? DISPATCH_OK : DISPATCH_NOT_TURN;
        }
        return handle_stun(d, conn, buf, len);
    default:
        stats_inc(&d->stats->drop_not_stun);
        return DISPATCH_NOT_TURN;
    }
}

void dispatch_pending_ready(void *arg)
{
    dispatch_pending_t *p = arg;
    dispatch_t *d = p->d;
    /* Unlink first: dispatching again may park a new record (the cache could have been evicted). */
    pending_unlink(d, p);
    (void)dispatch_message(d, &p->conn, p->data, p->len);
    free(p);
}

void dispatch_pending_quota_ready(void *arg, int answer)
{
    dispatch_pending_t *p = arg;
    dispatch_t *d = p->d;
    pending_unlink(d, p);
    d->cquota_replay = answer;
    (void)dispatch_message(d, &p->conn, p->data, p->len);
    /* The replay may end before it reaches the quota (a retransmission, credentials gone): the
     * unit taken for it must not stay counted in the fleet. */
    if (d->cquota_replay == QUOTA_CLUSTER_OK && d->cquota.release && p->quser)
        d->cquota.release(d->cquota.env, p->quser, p->qulen);
    d->cquota_replay = -1;
    free(p->quser);
    free(p);
}

dispatch_pending_t *dispatch_pending_new(dispatch_t *d, const turn_conn_t *conn,
                                         const stun_msg_t *msg)
{
    if (d->npending >= DISPATCH_MAX_PENDING)
        return NULL;
    dispatch_pending_t *p = malloc(sizeof(*p) + msg->len);
    if (!p)
        return NULL;
    p->d = d;
    p->conn = *conn;
    memcpy(&p->remote, conn->remote, sa_len(conn->remote));
    p->conn.remote = &p->remote.sa;
    p->len = msg->len;
    memcpy(p->data, msg->buf, msg->len);
    p->quser = NULL;
    p->qulen = 0;
    p->link.prev = p->link.next = NULL; /* on no list until dispatch_pending_start */
    return p;
}

void dispatch_pending_discard(dispatch_pending_t *p)
{
    if (p)
        free(p->quser);
    free(p);
}

int dispatch_pending_user(dispatch_pending_t *p, const char *user, size_t ulen)
{
    if (!(p->quser = malloc(ulen ? ulen : 1)))
        return -ENOMEM;
    memcpy(p->quser, user, ulen);
    p->qulen = ulen;
    return 0;
}

void dispatch_pending_start(dispatch_t *d, dispatch_pending_t *p)
{
    list_insert_head(&d->pending, &p->link);
    d->npending++;
}

void dispatch_alloc_gauges(dispatch_t *d, const alloc_t *a, int64_t delta)
{
    stats_t *st = d->stats;
    _Atomic int64_t *g = a->client.transport == TURN_TCP    ? &st->alloc_cur_tcp
                         : a->client.transport == TURN_TLS  ? &st->alloc_cur_tls
                         : a->client.transport == TURN_DTLS ? &st->alloc_cur_dtls
                                                            : &st->alloc_cur_udp;
    stats_gauge_add(g, delta);
    for (int i = 0; i < a->nrelay; i++)
        stats_gauge_add(a->relay[i].addr.sa.sa_family == AF_INET ? &st->alloc_cur_ipv4
                                                                 : &st->alloc_cur_ipv6,
                        delta);
}

void dispatch_alloc_delete(dispatch_t *d, alloc_t *a, int why)
{
    if (a->dead)
        return;
    alloc_remove(&d->allocs, a);
    if (a->counted_quota)
        quota_release(&d->shared->quota, a->username, a->username_len);
    if (a->counted_cluster && d->cquota.release)
        d->cquota.release(d->cquota.env, a->username, a->username_len);
    if (why == DISPATCH_GONE_EXPIRED)
        stats_inc(&d->stats->alloc_expired);
    else if (why == DISPATCH_GONE_DELETED || why == DISPATCH_GONE_KILLED)
        stats_inc(&d->stats->alloc_deleted);
    /* Before the totals: the kernel's last counts belong in them, and no entry may outlive
     * the allocation. */
    if (d->relay.offload)
        d->relay.offload(d->relay.env, a, 1);
    if (why != DISPATCH_GONE_FAILED) {
        usage_ended_add(&d->ended, a->username, a->username_len, &a->traffic);
        dispatch_usage_event(d, a, USAGE_DELETED,
                             why == DISPATCH_GONE_EXPIRED  ? USAGE_REASON_EXPIRED
                             : why == DISPATCH_GONE_KILLED ? USAGE_REASON_KILLED
                                                           : USAGE_REASON_DELETED);
    }
    stats_gauge_add(&d->stats->allocations, -1);
    dispatch_alloc_gauges(d, a, -1);
    if (d->relay.close)
        d->relay.close(d->relay.env, a);
    else
        alloc_free(a);
}

void dispatch_conn_gone(dispatch_t *d, const turn_conn_t *conn)
{
    LIST_FOREACH_SAFE(n, tmp, &d->pending)
    {
        dispatch_pending_t *p = container_of(n, dispatch_pending_t, link);
        if (p->conn.send_ctx == conn->send_ctx)
            pending_free(d, p);
    }
    alloc_t *a = alloc_find(&d->allocs, conn->transport, conn->remote, conn->local);
    if (a)
        dispatch_alloc_delete(d, a, 0);
}

int dispatch_has_allocation(dispatch_t *d, const turn_conn_t *conn)
{
    return alloc_find(&d->allocs, conn->transport, conn->remote, conn->local) != NULL;
}

void dispatch_sweep(dispatch_t *d)
{
    uint64_t interval_ms = (uint64_t)d->cfg->usage_interval * 1000;
    LIST_FOREACH_SAFE(n, tmp, &d->allocs.all)
    {
        alloc_t *a = container_of(n, alloc_t, link);
        uint32_t np = a->nperms, nc = a->nchans;
        if (alloc_expire(a, d->now_ms)) {
            dispatch_alloc_delete(d, a, DISPATCH_GONE_EXPIRED);
            continue;
        }
        if (a->nperms != np || a->nchans != nc)
            dispatch_offload(d, a); /* the kernel drops its copies (their expiry passed too) */
        if (d->usage.event && interval_ms && d->now_ms - a->usage_last_ms >= interval_ms)
            dispatch_usage_event(d, a, USAGE_PERIODIC, USAGE_REASON_NONE);
    }
    resv_expire(&d->shared->resv, d->unix_ms);
}

int dispatch_bps_ok(dispatch_t *d, alloc_t *a, size_t bytes)
{
    long bps = d->cfg->max_bps;
    if (bps <= 0)
        return 1;
    /* An allocation the kernel path carries: its bucket there is the one (both paths together
     * stay within max-bps). */
    if (d->relay.charge && a->offload) {
        int ok = d->relay.charge(d->relay.env, a, bytes);
        if (ok >= 0) {
            if (!ok)
                stats_inc(&d->stats->drop_bps_limit);
            return ok;
        }
    }
    /* Token bucket holding one second of traffic. */
    if (a->bucket_ms == 0) {
        a->bucket = (double)bps;
    } else if (d->now_ms > a->bucket_ms) {
        a->bucket += (double)(d->now_ms - a->bucket_ms) * (double)bps / 1000.0;
        if (a->bucket > (double)bps)
            a->bucket = (double)bps;
    }
    a->bucket_ms = d->now_ms;
    if (a->bucket < (double)bytes) {
        stats_inc(&d->stats->drop_bps_limit);
        return 0;
    }
    a->bucket -= (double)bytes;
    return 1;
}
