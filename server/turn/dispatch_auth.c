/* dispatch_auth.c - long-term credential authentication of TURN requests.
 *
 * RFC 8489 §9.2 (long-term credentials: 401 challenge with REALM and NONCE, 400 for missing parts,
 * 438 for a stale nonce, checked after integrity as §9.2.4 orders it so forged requests get no
 * fresh nonce; the nonce cookie and PASSWORD-ALGORITHM(S) negotiation; USERHASH;
 * MESSAGE-INTEGRITY-SHA256), RFC 8656 §5 and §6 (441 for another user's allocation). Nonces are
 * stateless (common/turn_auth.c): nothing is stored for a source before it authenticates.
 */
#include <stdlib.h>
#include <string.h>

#include "dispatch_int.h"
#include "sockaddr_util.h"
#include "stun_auth.h"
#include "turn_auth.h"
#include "util.h"

/* What we offer in PASSWORD-ALGORITHMS, in preference order; a client must echo it exactly. */
static const uint16_t offered_algs[] = {STUN_PASSWORD_ALG_SHA256, STUN_PASSWORD_ALG_MD5};
#define NOFFERED (ARRAY_SIZE(offered_algs))

static void challenge(dispatch_t *d, const turn_conn_t *conn, const stun_msg_t *msg, int code)
{
    /* Its size is known before the nonce is made: a flood that the limit drops costs no HMAC. */
    size_t realm_len = strlen(d->cfg->realm);
    int algs = (d->shared->nonce_features & TURN_NONCE_FEAT_PASSWORD_ALGS) != 0;
    size_t len = STUN_HEADER_LEN + 8 + 4 + ((realm_len + 3) & ~(size_t)3) + 4 +
                 ((d->nonce_len + 3) & ~(size_t)3) + (algs ? 4 + 4 * NOFFERED : 0);
    const char *reason;
    if (!dispatch_unauth_plan(d, conn, msg, code, len, &reason))
        return;
    char nonce[TURN_NONCE_MAX + 1];
    uint32_t expiry = (uint32_t)(d->unix_ms / 1000) + (uint32_t)d->cfg->stale_nonce;
    int nlen = turn_nonce_make(d->shared->nonce_secret, expiry, d->shared->nonce_features,
                               conn->remote, nonce, sizeof(nonce));
    stun_build_t b;
    dispatch_begin(d, &b, msg, STUN_CLASS_ERROR);
    stun_build_error(&b, code, reason);
    stun_build_attr(&b, STUN_ATTR_REALM, d->cfg->realm, realm_len);
    stun_build_attr(&b, STUN_ATTR_NONCE, nonce, nlen > 0 ? (size_t)nlen : 0);
    if (algs)
        stun_build_password_algs(&b, offered_algs, NOFFERED);
    stats_error_sent(d->stats, code);
    (void)dispatch_finish(d, conn, msg, &b, NULL);
}

static void auth_fail_log(dispatch_t *d, const turn_conn_t *conn, const char *why, const char *user,
                          size_t ulen)
{
    if (!log_limit_take(&d->auth_log, d->now_ms, 5.0, 20.0))
        return;
    char addr[SA_STRLEN];
    LOGW("auth_fail", "%s: user '%.*s' from %s", why, (int)(ulen > 64 ? 64 : ulen), user,
         sa_format(conn->remote, addr, sizeof(addr)));
}

/* RFC 8489 §9.2.4 item on PASSWORD-ALGORITHMS: returns 0 and sets *sha256, or -1 (400). */
static int negotiate_alg(const stun_msg_t *msg, uint32_t features, bool *sha256)
{
    const stun_attr_t *algs = stun_msg_find(msg, STUN_ATTR_PASSWORD_ALGORITHMS);
    const stun_attr_t *alg = stun_msg_find(msg, STUN_ATTR_PASSWORD_ALGORITHM);
    *sha256 = false;
    if (!(features & TURN_NONCE_FEAT_PASSWORD_ALGS) || (!algs && !alg))
        return 0; /* RFC 5389 client, or an RFC 8489 one choosing MD5 by saying nothing */
    if (!algs || !alg)
        return -1;
    uint16_t list[8];
    size_t n = 0;
    if (stun_attr_get_password_algs(msg, algs, list, 8, &n) != 0 || n != NOFFERED)
        return -1;
    for (size_t i = 0; i < n; i++)
        if (list[i] != offered_algs[i])
            return -1; /* downgrade protection: the list must be what we sent */
    uint16_t chosen;
    if (stun_attr_get_password_alg(msg, alg, &chosen) != 0)
        return -1;
    if (chosen == STUN_PASSWORD_ALG_SHA256)
        *sha256 = true;
    else if (chosen != STUN_PASSWORD_ALG_MD5)
        return -1;
    return 0;
}

/* Try every candidate key; on success copy it to out->key. */
static int verify_keys(const stun_msg_t *msg, const creds_keys_t *keys, dispatch_auth_t *out)
{
    for (int i = 0; i < keys->n; i++) {
        const creds_key_t *k = &keys->k[i];
        if (out->alg_sha256 ? !k->has_sha256 : !k->has_md5)
            continue;
        const uint8_t *key = out->alg_sha256 ? k->sha256 : k->md5;
        size_t klen = out->alg_sha256 ? sizeof(k->sha256) : sizeof(k->md5);
        int ok = out->mi_sha256 ? stun_auth_verify_integrity_sha256(msg, key, klen, 0)
                                : stun_auth_verify_integrity(msg, key, klen);
        if (ok == 0) {
            out->key = *k;
            return 0;
        }
    }
    return -1;
}

static void no_wait(void *arg) { (void)arg; }

/* Keys for the request's user: from the allocation, or the credential sources. Returns a creds
 * status; CREDS_PENDING means the request was parked (or dropped as busy). */
static enum creds_status lookup(dispatch_t *d, const turn_conn_t *conn, const stun_msg_t *msg,
                                const stun_attr_t *ua, const stun_attr_t *uh, dispatch_auth_t *out,
                                creds_keys_t *keys)
{
    if (!d->creds.lookup || !d->creds.lookup_userhash)
        return CREDS_UNAVAILABLE;
    dispatch_pending_t *p = dispatch_pending_new(d, conn, msg);
    int64_t unix_s = (int64_t)(d->unix_ms / 1000);
    enum creds_status st;
    /* With no room to park, the lookup still runs (static and cached answers need no parking); a
     * pending one is cancelled at once. */
    void (*cb)(void *) = p ? dispatch_pending_ready : no_wait;
    void *arg = p ? (void *)p : (void *)d;
    /* Lookups waiting for Redis are bounded per source IP: unauthenticated senders' names. */
    const creds_asker_t who = {
        conn->remote, (unsigned)d->cfg->redis_pending_per_ip, (unsigned)d->cfg->redis_pending_max,
        (unsigned)d->cfg->redis_cache_users, (unsigned)d->cfg->redis_cache_unknown};
    if (ua) {
        st = d->creds.lookup(d->creds.env, &who, (const char *)stun_attr_value(msg, ua), ua->len,
                             d->now_ms, unix_s, keys, cb, arg);
    } else {
        st = d->creds.lookup_userhash(d->creds.env, &who, stun_attr_value(msg, uh), d->now_ms,
                                      unix_s, out->userbuf, sizeof(out->userbuf), keys, cb, arg);
        if (st == CREDS_FOUND) {
            out->user = out->userbuf;
            out->ulen = strlen(out->userbuf);
        }
    }
    if (st == CREDS_PENDING) {
        if (p) {
            dispatch_pending_start(d, p);
        } else {
            /* No room to park it: the client will retransmit. */
            if (d->creds.cancel)
                d->creds.cancel(d->creds.env, d);
            stats_inc(&d->stats->drop_auth_busy);
        }
        return CREDS_PENDING;
    }
    free(p);
    return st;
}

/* Map a final creds status to the answer; returns 1 when answered. */
static int answer_status(dispatch_t *d, const turn_conn_t *conn, const stun_msg_t *msg,
                         enum creds_status st, const dispatch_auth_t *out)
{
    switch (st) {
    case CREDS_FOUND:
        return 0;
    case CREDS_PENDING:
        return 1;
    case CREDS_BUSY:
        stats_inc(&d->stats->drop_auth_busy);
        return 1;
    case CREDS_UNAVAILABLE:
        stats_inc(&d->stats->auth_unavailable);
        auth_fail_log(d, conn, "credential store unavailable", out->user, out->ulen);
        dispatch_error(d, conn, msg, STUN_ERR_SERVER_ERROR, NULL);
        return 1;
    case CREDS_EXPIRED:
        stats_inc(&d->stats->auth_expired);
        auth_fail_log(d, conn, "expired REST credential", out->user, out->ulen);
        challenge(d, conn, msg, STUN_ERR_UNAUTHORIZED);
        return 1;
    case CREDS_UNKNOWN:
    default:
        stats_inc(&d->stats->auth_unknown_user);
        auth_fail_log(d, conn, "unknown user", out->user, out->ulen);
        challenge(d, conn, msg, STUN_ERR_UNAUTHORIZED);
        return 1;
    }
}

/* The checks before any key is needed. Returns 1 when answered. */
static int precheck(dispatch_t *d, const turn_conn_t *conn, const stun_msg_t *msg,
                    enum turn_nonce_result *nres, dispatch_auth_t *out)
{
    if (msg->mi_idx < 0 && msg->mi256_idx < 0) {
        stats_inc(&d->stats->auth_challenge);
        challenge(d, conn, msg, STUN_ERR_UNAUTHORIZED);
        return 1;
    }
    const stun_attr_t *ua = stun_msg_find(msg, STUN_ATTR_USERNAME);
    const stun_attr_t *uh = stun_msg_find(msg, STUN_ATTR_USERHASH);
    const stun_attr_t *ra = stun_msg_find(msg, STUN_ATTR_REALM);
    const stun_attr_t *na = stun_msg_find(msg, STUN_ATTR_NONCE);
    if ((!ua && !(uh && uh->len == STUN_USERHASH_LEN)) || !ra || !na ||
        (ua && ua->len > STUN_USERNAME_MAX)) {
        stats_inc(&d->stats->auth_bad_request);
        dispatch_error(d, conn, msg, STUN_ERR_BAD_REQUEST, NULL);
        return 1;
    }
    uint32_t features = 0;
    *nres = turn_nonce_check(d->shared->nonce_secret, (const char *)stun_attr_value(msg, na),
                             na->len, (uint32_t)(d->unix_ms / 1000), conn->remote, &features);
    if (*nres == TURN_NONCE_BAD || ra->len != strlen(d->cfg->realm) ||
        memcmp(stun_attr_value(msg, ra), d->cfg->realm, ra->len) != 0) {
        /* Not our nonce, or another realm: start over with a fresh challenge. */
        stats_inc(&d->stats->auth_stale_nonce);
        challenge(d, conn, msg, STUN_ERR_STALE_NONCE);
        return 1;
    }
    if (negotiate_alg(msg, features, &out->alg_sha256) != 0) {
        stats_inc(&d->stats->auth_bad_request);
        dispatch_error(d, conn, msg, STUN_ERR_BAD_REQUEST, NULL);
        return 1;
    }
    out->mi_sha256 = msg->mi256_idx >= 0;
    if (ua) {
        out->user = (const char *)stun_attr_value(msg, ua);
        out->ulen = ua->len;
    } else {
        out->user = "";
        out->ulen = 0;
    }
    return 0;
}

enum dispatch_auth_result dispatch_authenticate(dispatch_t *d, const turn_conn_t *conn,
                                                const stun_msg_t *msg, alloc_t *a,
                                                dispatch_auth_t *out)
{
    memset(out, 0, sizeof(*out));
    enum turn_nonce_result nres;
    if (precheck(d, conn, msg, &nres, out))
        return DISPATCH_AUTH_DONE;
    const stun_attr_t *ua = stun_msg_find(msg, STUN_ATTR_USERNAME);
    const stun_attr_t *uh = ua ? NULL : stun_msg_find(msg, STUN_ATTR_USERHASH);
    creds_keys_t keys;
    int same_user = a && ua && ua->len == a->username_len &&
                    memcmp(stun_attr_value(msg, ua), a->username, ua->len) == 0;
    if (same_user) {
        /* The allocation's own key: a REST credential that expired since keeps its allocation
         * alive (draft-uberti-behave-turn-rest-00 §2.2). */
        keys.n = 1;
        keys.k[0] = a->key;
    } else {
        enum creds_status st = lookup(d, conn, msg, ua, uh, out, &keys);
        if (answer_status(d, conn, msg, st, out))
            return DISPATCH_AUTH_DONE;
    }
    if (verify_keys(msg, &keys, out) != 0) {
        stats_inc(&d->stats->auth_bad_integrity);
        auth_fail_log(d, conn, "bad MESSAGE-INTEGRITY", out->user, out->ulen);
        challenge(d, conn, msg, STUN_ERR_UNAUTHORIZED);
        return DISPATCH_AUTH_DONE;
    }
    if (nres == TURN_NONCE_STALE) {
        stats_inc(&d->stats->auth_stale_nonce);
        challenge(d, conn, msg, STUN_ERR_STALE_NONCE);
        return DISPATCH_AUTH_DONE;
    }
    if (a && !(out->ulen == a->username_len && memcmp(out->user, a->username, out->ulen) == 0)) {
        /* RFC 8656 §6.2: authenticated, but not as the user who owns this allocation. */
        stats_inc(&d->stats->auth_wrong_user);
        dispatch_error(d, conn, msg, STUN_ERR_WRONG_CREDENTIALS, out);
        return DISPATCH_AUTH_DONE;
    }
    stats_inc(&d->stats->auth_ok);
    return DISPATCH_AUTH_OK;
}
