/* probe_sess.c - the prober's requests: build, authenticate, send, match the answer.
 *
 * RFC 8489 §9.2.4 (the server's REALM, NONCE and PASSWORD-ALGORITHMS are learned from 401/438; a
 * request with the security feature echoes PASSWORD-ALGORITHMS and names its PASSWORD-ALGORITHM),
 * §9.2.2 (MD5 and SHA-256 long-term keys over the SASLprep'd password), §14.4 (USERHASH),
 * §14.5-14.6 (MESSAGE-INTEGRITY, MESSAGE-INTEGRITY-SHA256), RFC 8656 §8 (LIFETIME 0 deletes).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/rand.h>

#include "probe_sess.h"
#include "stun.h"
#include "stun_auth.h"

void probe_sess_add_transport(stun_build_t *b, const void *arg)
{
    stun_build_byte_attr(b, STUN_ATTR_REQUESTED_TRANSPORT, *(const uint8_t *)arg);
}

void probe_sess_add_transport_v6(stun_build_t *b, const void *arg)
{
    (void)arg;
    stun_build_byte_attr(b, STUN_ATTR_REQUESTED_TRANSPORT, STUN_TRANSPORT_UDP);
    stun_build_byte_attr(b, STUN_ATTR_REQUESTED_ADDRESS_FAMILY, STUN_FAMILY_IPV6);
}

void probe_sess_add_lifetime(stun_build_t *b, const void *arg)
{
    stun_build_u32(b, STUN_ATTR_LIFETIME, *(const uint32_t *)arg);
}

void probe_sess_add_peer(stun_build_t *b, const void *arg)
{
    stun_build_xor_addr(b, STUN_ATTR_XOR_PEER_ADDRESS, (const struct sockaddr *)arg);
}

void probe_sess_add_channel(stun_build_t *b, const void *arg)
{
    const probe_sess_chan_t *a = arg;
    stun_build_channel(b, a->channel);
    stun_build_xor_addr(b, STUN_ATTR_XOR_PEER_ADDRESS, a->peer);
}

static void key_for(const probe_sess_t *s, const probe_sess_auth_t *a, uint8_t *key, size_t *keylen)
{
    char pw[512];
    if (stun_auth_saslprep(a->pass, strlen(a->pass), pw, sizeof(pw)) < 0)
        snprintf(pw, sizeof(pw), "%s", a->pass);
    if (a->alg == STUN_PASSWORD_ALG_SHA256) {
        stun_auth_key_sha256(a->user, strlen(a->user), s->realm, strlen(s->realm), pw, strlen(pw),
                             key);
        *keylen = STUN_KEY_SHA256_LEN;
    } else {
        stun_auth_key_md5(a->user, strlen(a->user), s->realm, strlen(s->realm), pw, strlen(pw),
                          key);
        *keylen = STUN_KEY_MD5_LEN;
    }
}

void probe_tid(uint8_t tid[STUN_TID_LEN])
{
    if (RAND_bytes(tid, STUN_TID_LEN) != 1) {
        fprintf(stderr, "uturnctl probe: no random bytes for a transaction id\n");
        exit(2);
    }
}

static int build_req(probe_sess_t *s, uint16_t method, probe_sess_add_fn add, const void *arg,
                     const probe_sess_auth_t *a, uint8_t *out, size_t cap)
{
    uint8_t tid[STUN_TID_LEN];
    probe_tid(tid);
    stun_build_t b;
    stun_build_init(&b, out, cap, stun_type(method, STUN_CLASS_REQUEST), tid);
    if (add)
        add(&b, arg);
    if (a) {
        if (a->userhash) {
            uint8_t uh[STUN_USERHASH_LEN];
            stun_auth_userhash(a->user, strlen(a->user), s->realm, strlen(s->realm), uh);
            stun_build_attr(&b, STUN_ATTR_USERHASH, uh, sizeof(uh));
        } else {
            stun_build_attr(&b, STUN_ATTR_USERNAME, a->user, strlen(a->user));
        }
        stun_build_attr(&b, STUN_ATTR_REALM, s->realm, strlen(s->realm));
        char nonce[256];
        snprintf(nonce, sizeof(nonce), "%s", s->nonce);
        size_t nl = strlen(nonce);
        if (a->bad_nonce && nl > 0) /* a nonce the server never issued */
            nonce[nl - 1] = nonce[nl - 1] == 'A' ? 'B' : 'A';
        stun_build_attr(&b, STUN_ATTR_NONCE, nonce, nl);
        if (a->send_algs && s->has_algs) {
            stun_build_password_algs(&b, s->algs, s->nalgs);
            stun_build_password_alg(&b, (uint16_t)a->alg);
        }
        uint8_t key[STUN_KEY_MAX_LEN];
        size_t kl;
        key_for(s, a, key, &kl);
        if (a->mi256)
            stun_build_integrity_sha256(&b, key, kl);
        else
            stun_build_integrity(&b, key, kl);
    }
    return stun_build_finish(&b);
}

/* Keep REALM, NONCE and PASSWORD-ALGORITHMS from a 401/438 answer. */
static void learn(probe_sess_t *s)
{
    const stun_attr_t *r = stun_msg_find(&s->msg, STUN_ATTR_REALM);
    const stun_attr_t *n = stun_msg_find(&s->msg, STUN_ATTR_NONCE);
    const stun_attr_t *pa = stun_msg_find(&s->msg, STUN_ATTR_PASSWORD_ALGORITHMS);
    if (r && r->len < sizeof(s->realm))
        snprintf(s->realm, sizeof(s->realm), "%.*s", (int)r->len,
                 (const char *)stun_attr_value(&s->msg, r));
    if (n && n->len < sizeof(s->nonce))
        snprintf(s->nonce, sizeof(s->nonce), "%.*s", (int)n->len,
                 (const char *)stun_attr_value(&s->msg, n));
    if (pa && stun_attr_get_password_algs(&s->msg, pa, s->algs, 8, &s->nalgs) == 0) {
        s->has_algs = true;
        if (s->nalgs > 8)
            s->nalgs = 8;
    }
}

/* One request/answer. Returns the answer's class, or -1 without one; *code is its error code. A
 * 438 with a fresh NONCE is retried once with it (RFC 8489 §9.2.4), unless we forged the nonce. */
int probe_sess_req(probe_sess_t *s, uint16_t method, probe_sess_add_fn add, const void *arg,
                   const probe_sess_auth_t *a, int *code)
{
    *code = 0;
    for (int attempt = 0; attempt < 2; attempt++) {
        uint8_t req[1500];
        int len = build_req(s, method, add, arg, a, req, sizeof(req));
        if (len < 0)
            return -1;
        int n = probe_conn_transact(&s->c, req, (size_t)len, s->resp, sizeof(s->resp),
                                    s->p->timeout_ms);
        if (n <= 0 || stun_msg_decode(s->resp, (size_t)n, &s->msg) != 0)
            return -1;
        if (s->msg.cls == STUN_CLASS_ERROR) {
            const stun_attr_t *e = stun_msg_find(&s->msg, STUN_ATTR_ERROR_CODE);
            const uint8_t *reason;
            size_t rl;
            if (!e || stun_attr_get_error(&s->msg, e, code, &reason, &rl) != 0)
                *code = 0;
            if (*code == STUN_ERR_UNAUTHORIZED || *code == STUN_ERR_STALE_NONCE)
                learn(s);
            if (*code == STUN_ERR_STALE_NONCE && a && !a->bad_nonce && attempt == 0)
                continue;
        }
        return (int)s->msg.cls;
    }
    return (int)s->msg.cls;
}

/* Does the answer carry integrity that verifies with the request's key? */
const char *probe_sess_integrity(probe_sess_t *s, const probe_sess_auth_t *a)
{
    uint8_t key[STUN_KEY_MAX_LEN];
    size_t kl;
    key_for(s, a, key, &kl);
    if (s->msg.mi256_idx >= 0)
        return stun_auth_verify_integrity_sha256(&s->msg, key, kl, 1) == 0
                   ? "MESSAGE-INTEGRITY-SHA256 verified"
                   : "MESSAGE-INTEGRITY-SHA256 does NOT verify";
    if (s->msg.mi_idx >= 0)
        return stun_auth_verify_integrity(&s->msg, key, kl) == 0
                   ? "MESSAGE-INTEGRITY verified"
                   : "MESSAGE-INTEGRITY does NOT verify";
    return "no integrity attribute";
}

int probe_sess_open(probe_sess_t *s, probe_t *p, const probe_target_t *t)
{
    memset(s, 0, sizeof(*s));
    s->p = p;
    s->t = t;
    char err[160];
    if (probe_conn_open(&s->c, t, p->timeout_ms, err, sizeof(err)) < 0)
        return -1;
    s->open = true;
    return 0;
}

/* The unauthenticated Allocate that fetches REALM and NONCE. Returns the class or -1. */
int probe_sess_challenge(probe_sess_t *s, int *code)
{
    uint8_t udp = STUN_TRANSPORT_UDP;
    return probe_sess_req(s, STUN_METHOD_ALLOCATE, probe_sess_add_transport, &udp, NULL, code);
}

void probe_sess_close(probe_sess_t *s)
{
    if (s->allocated) { /* RFC 8656 §8: LIFETIME 0 deletes the allocation */
        uint32_t zero = 0;
        int code;
        probe_sess_auth_t a = {s->p->user, s->p->password, STUN_PASSWORD_ALG_MD5, false, false,
                               false,      false};
        probe_sess_req(s, STUN_METHOD_REFRESH, probe_sess_add_lifetime, &zero, &a, &code);
    }
    if (s->open)
        probe_conn_close(&s->c);
    s->open = false;
}

const char *probe_sess_code_str(int cls, int code, char *buf, size_t cap)
{
    if (cls < 0)
        snprintf(buf, cap, "no answer");
    else if (cls == STUN_CLASS_SUCCESS)
        snprintf(buf, cap, "success");
    else
        snprintf(buf, cap, "error %d", code);
    return buf;
}
