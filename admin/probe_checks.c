/* probe_checks.c - the prober's STUN/TURN checks against one target.
 *
 * RFC 8489 §7 (Binding), §9.2 (long-term credentials: the 401 challenge, NONCE cookie and security
 * feature bits, PASSWORD-ALGORITHMS, USERHASH, 438), §14.5-14.6 (MESSAGE-INTEGRITY and -SHA256),
 * Appendix B.1 with erratum 6268 (self-test); RFC 8656 §7 (Allocate, 437, 442, 486), §8 (Refresh),
 * §9-10 (CreatePermission), §11 (Send/Data), §12 (ChannelBind, ChannelData), §5/§19 (441); OWASP
 * ASVS 5.0 V17.1.1 (peer rules: asked with CreatePermission only, nothing is ever sent to those
 * addresses).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <openssl/rand.h>

#include "probe.h"
#include "sockaddr_util.h"
#include "stun.h"
#include "stun_auth.h"
#include "stun_build.h"
#include "stun_msg.h"

#define RFC_LT "RFC 8489 §9.2.4"

/* One client 5-tuple with its long-term credential state. */
typedef struct {
    probe_t *p;
    const probe_target_t *t;
    probe_conn_t c;
    bool open;
    char realm[256];
    char nonce[256];
    uint16_t algs[8];
    size_t nalgs;
    bool has_algs;
    struct sockaddr_storage relayed;
    bool allocated;
    uint8_t resp[4096];
    stun_msg_t msg;
} sess_t;

/* How a request authenticates. */
typedef struct {
    const char *user, *pass;
    int alg;        /* STUN_PASSWORD_ALG_MD5 or _SHA256: which key */
    bool mi256;     /* MESSAGE-INTEGRITY-SHA256 instead of MESSAGE-INTEGRITY */
    bool send_algs; /* PASSWORD-ALGORITHMS + PASSWORD-ALGORITHM (RFC 8489 §9.2.4) */
    bool userhash;  /* USERHASH instead of USERNAME */
    bool bad_nonce; /* alter the nonce (438 check) */
} auth_t;

typedef void (*add_fn)(stun_build_t *b, const void *arg);

static void add_transport(stun_build_t *b, const void *arg)
{
    stun_build_byte_attr(b, STUN_ATTR_REQUESTED_TRANSPORT, *(const uint8_t *)arg);
}

static void add_transport_v6(stun_build_t *b, const void *arg)
{
    (void)arg;
    stun_build_byte_attr(b, STUN_ATTR_REQUESTED_TRANSPORT, STUN_TRANSPORT_UDP);
    stun_build_byte_attr(b, STUN_ATTR_REQUESTED_ADDRESS_FAMILY, STUN_FAMILY_IPV6);
}

static void add_lifetime(stun_build_t *b, const void *arg)
{
    stun_build_u32(b, STUN_ATTR_LIFETIME, *(const uint32_t *)arg);
}

static void add_peer(stun_build_t *b, const void *arg)
{
    stun_build_xor_addr(b, STUN_ATTR_XOR_PEER_ADDRESS, (const struct sockaddr *)arg);
}

typedef struct {
    uint16_t channel;
    const struct sockaddr *peer;
} chan_arg_t;

static void add_channel(stun_build_t *b, const void *arg)
{
    const chan_arg_t *a = arg;
    stun_build_channel(b, a->channel);
    stun_build_xor_addr(b, STUN_ATTR_XOR_PEER_ADDRESS, a->peer);
}

static void key_for(const sess_t *s, const auth_t *a, uint8_t *key, size_t *keylen)
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

static int build_req(sess_t *s, uint16_t method, add_fn add, const void *arg, const auth_t *a,
                     uint8_t *out, size_t cap)
{
    uint8_t tid[STUN_TID_LEN];
    RAND_bytes(tid, sizeof(tid));
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
static void learn(sess_t *s)
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
static int sess_req(sess_t *s, uint16_t method, add_fn add, const void *arg, const auth_t *a,
                    int *code)
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
static const char *resp_integrity(sess_t *s, const auth_t *a)
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

static int sess_open(sess_t *s, probe_t *p, const probe_target_t *t)
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
static int sess_challenge(sess_t *s, int *code)
{
    uint8_t udp = STUN_TRANSPORT_UDP;
    return sess_req(s, STUN_METHOD_ALLOCATE, add_transport, &udp, NULL, code);
}

static void sess_close(sess_t *s)
{
    if (s->allocated) { /* RFC 8656 §8: LIFETIME 0 deletes the allocation */
        uint32_t zero = 0;
        int code;
        auth_t a = {s->p->user, s->p->password, STUN_PASSWORD_ALG_MD5, false, false, false, false};
        sess_req(s, STUN_METHOD_REFRESH, add_lifetime, &zero, &a, &code);
    }
    if (s->open)
        probe_conn_close(&s->c);
    s->open = false;
}

static const char *code_str(int cls, int code, char *buf, size_t cap)
{
    if (cls < 0)
        snprintf(buf, cap, "no answer");
    else if (cls == STUN_CLASS_SUCCESS)
        snprintf(buf, cap, "success");
    else
        snprintf(buf, cap, "error %d", code);
    return buf;
}

/* ---- self-test ---- */

void probe_selftest(probe_t *p)
{
    /* RFC 8489 Appendix B.1 as corrected by erratum 6268: a Binding request with USERHASH, NONCE,
     * REALM, PASSWORD-ALGORITHM (SHA-256) and MESSAGE-INTEGRITY-SHA256. */
    static const uint8_t tid[12] = {0x78, 0xad, 0x34, 0x33, 0xc6, 0xad,
                                    0x72, 0xc0, 0x29, 0xda, 0x41, 0x2e};
    static const uint8_t want_uh[32] = {0x4a, 0x3c, 0xf3, 0x8f, 0xef, 0x69, 0x92, 0xbd,
                                        0xa9, 0x52, 0xc6, 0x78, 0x04, 0x17, 0xda, 0x0f,
                                        0x24, 0x81, 0x94, 0x15, 0x56, 0x9e, 0x60, 0xb2,
                                        0x05, 0xc4, 0x6e, 0x41, 0x40, 0x7f, 0x17, 0x04};
    static const uint8_t want_mi[32] = {0xb5, 0xc7, 0xbf, 0x00, 0x5b, 0x6c, 0x52, 0xa2,
                                        0x1c, 0x51, 0xc5, 0xe8, 0x92, 0xf8, 0x19, 0x24,
                                        0x13, 0x62, 0x96, 0xcb, 0x92, 0x7c, 0x43, 0x14,
                                        0x93, 0x09, 0x27, 0x8c, 0xc6, 0x51, 0x8e, 0x65};
    const char *user = "\xe3\x83\x9e\xe3\x83\x88\xe3\x83\xaa\xe3\x83\x83\xe3\x82\xaf\xe3\x82\xb9";
    const char *raw_pw = "The\xc2\xad"
                         "M\xc2\xaatr\xe2\x85\xa8";
    const char *realm = "example.org", *nonce = "obMatJos2AAACf//499k954d6OL34oL9FSTvy64sA";
    char pw[64];
    int pl = stun_auth_saslprep(raw_pw, strlen(raw_pw), pw, sizeof(pw));
    uint8_t uh[32], key[32], buf[256];
    stun_auth_userhash(user, strlen(user), realm, strlen(realm), uh);
    stun_auth_key_sha256(user, strlen(user), realm, strlen(realm), pw, pl > 0 ? (size_t)pl : 0,
                         key);
    stun_build_t b;
    stun_build_init(&b, buf, sizeof(buf), stun_type(STUN_METHOD_BINDING, STUN_CLASS_REQUEST), tid);
    stun_build_attr(&b, STUN_ATTR_USERHASH, uh, sizeof(uh));
    stun_build_attr(&b, STUN_ATTR_NONCE, nonce, strlen(nonce));
    stun_build_attr(&b, STUN_ATTR_REALM, realm, strlen(realm));
    stun_build_password_alg(&b, STUN_PASSWORD_ALG_SHA256);
    stun_build_integrity_sha256(&b, key, sizeof(key));
    int len = stun_build_finish(&b);
    stun_msg_t m;
    const char *why = NULL;
    if (pl < 0 || strcmp(pw, "TheMatrIX") != 0)
        why = "SASLprep of the password is not \"TheMatrIX\"";
    else if (memcmp(uh, want_uh, 32) != 0)
        why = "USERHASH differs from the vector";
    else if (len != 164 || buf[2] != 0x00 || buf[3] != 0x90)
        why = "message length differs from the vector (164 bytes, header length 0x0090)";
    else if (memcmp(buf + len - 32, want_mi, 32) != 0)
        why = "MESSAGE-INTEGRITY-SHA256 differs from the vector";
    else if (stun_msg_decode(buf, (size_t)len, &m) != 0 ||
             stun_auth_verify_integrity_sha256(&m, key, sizeof(key), 0) != 0)
        why = "our decoder does not verify our own encoding";
    if (why)
        probe_add(p, NULL, "selftest-b1", "RFC 8489 App. B.1, erratum 6268", PROBE_FAIL,
                  "the prober's own crypto is wrong: %s; no other result can be trusted", why);
    else
        probe_add(p, NULL, "selftest-b1", "RFC 8489 App. B.1, erratum 6268", PROBE_PASS,
                  "USERHASH 4a3cf38f..., key SHA-256(user:realm:\"TheMatrIX\"), "
                  "MESSAGE-INTEGRITY-SHA256 b5c7bf00... reproduced byte for byte (164 bytes)");
}

/* ---- Binding ---- */

int probe_binding(probe_t *p, const probe_target_t *t)
{
    probe_conn_t c;
    char err[160];
    if (probe_conn_open(&c, t, p->timeout_ms, err, sizeof(err)) < 0) {
        probe_add(p, t, "binding", "RFC 8489 §7", PROBE_FAIL, "cannot connect: %s", err);
        return -1;
    }
    uint8_t tid[STUN_TID_LEN], req[64], resp[2048];
    RAND_bytes(tid, sizeof(tid));
    stun_build_t b;
    stun_build_init(&b, req, sizeof(req), stun_type(STUN_METHOD_BINDING, STUN_CLASS_REQUEST), tid);
    stun_build_fingerprint(&b);
    int len = stun_build_finish(&b);
    int n = probe_conn_transact(&c, req, (size_t)len, resp, sizeof(resp), p->timeout_ms);
    probe_conn_close(&c);
    stun_msg_t m;
    if (n <= 0) {
        probe_add(p, t, "binding", "RFC 8489 §7", PROBE_FAIL, "no answer within %d ms",
                  p->timeout_ms);
        return -1;
    }
    if (stun_msg_decode(resp, (size_t)n, &m) != 0 || m.cls != STUN_CLASS_SUCCESS) {
        probe_add(p, t, "binding", "RFC 8489 §7", PROBE_FAIL,
                  "answer is not a Binding success response");
        return 0;
    }
    const stun_attr_t *x = stun_msg_find(&m, STUN_ATTR_XOR_MAPPED_ADDRESS);
    struct sockaddr_storage ss;
    char a[SA_STRLEN];
    if (!x || stun_attr_get_xor_addr(&m, x, &ss) != 0)
        probe_add(p, t, "binding", "RFC 8489 §7, §14.2", PROBE_FAIL,
                  "success without a valid XOR-MAPPED-ADDRESS");
    else
        probe_add(p, t, "binding", "RFC 8489 §7, §14.2", PROBE_PASS, "XOR-MAPPED-ADDRESS %s",
                  sa_format((struct sockaddr *)&ss, a, sizeof(a)));
    return 0;
}

/* ---- amplification ---- */

void probe_amplification(probe_t *p, const probe_target_t *t)
{
    const char *rfc = "RFC 8656 §21.2";
    if (t->stream) {
        probe_add(p, t, "amplification", rfc, PROBE_SKIP,
                  "only UDP can be spoofed: measured on turn:...?transport=udp targets");
        return;
    }
    probe_conn_t c;
    char err[160];
    if (probe_conn_open(&c, t, p->timeout_ms, err, sizeof(err)) < 0) {
        probe_add(p, t, "amplification", rfc, PROBE_SKIP, "cannot connect: %s", err);
        return;
    }
    /* A bounded burst: 8 bare Bindings (20 bytes) and 8 bare Allocates (28 bytes, the size a
     * browser's first Allocate has), spaced 20 ms so a server's rate limit is not what we
     * measure. */
    enum { BURST = 8 };
    uint8_t buf[2048];
    int answers = 0;
    for (int i = 0; i < 2 * BURST; i++) {
        uint8_t tid[STUN_TID_LEN], req[64];
        RAND_bytes(tid, sizeof(tid));
        stun_build_t b;
        bool alloc = i % 2 == 1;
        stun_build_init(
            &b, req, sizeof(req),
            stun_type(alloc ? STUN_METHOD_ALLOCATE : STUN_METHOD_BINDING, STUN_CLASS_REQUEST), tid);
        if (alloc)
            stun_build_byte_attr(&b, STUN_ATTR_REQUESTED_TRANSPORT, STUN_TRANSPORT_UDP);
        probe_conn_send(&c, req, (size_t)stun_build_finish(&b));
        while (probe_conn_recv(&c, buf, sizeof(buf), 20) > 0)
            answers++;
    }
    while (probe_conn_recv(&c, buf, sizeof(buf), 500) > 0 && answers < 4 * BURST)
        answers++;
    double ratio = c.tx_bytes ? (double)c.rx_bytes / (double)c.tx_bytes : 0;
    probe_add(p, t, "amplification", rfc, ratio <= 4.0 ? PROBE_PASS : PROBE_WARN,
              "%llu bytes answered / %llu bytes sent = %.2f (%d answers to %d requests; PASS at "
              "<= 4)",
              (unsigned long long)c.rx_bytes, (unsigned long long)c.tx_bytes, ratio, answers,
              2 * BURST);
    probe_conn_close(&c);
}

/* ---- TURN checks ---- */

static int peer_open(const char *ip, struct sockaddr_storage *addr)
{
    if (sa_parse_ip(ip, 0, addr) != 0)
        return -1;
    int fd = socket(addr->ss_family, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    socklen_t sl = sizeof(*addr);
    if (fd < 0 || bind(fd, (struct sockaddr *)addr, sa_len((struct sockaddr *)addr)) < 0 ||
        getsockname(fd, (struct sockaddr *)addr, &sl) < 0) {
        if (fd >= 0)
            close(fd);
        return -1;
    }
    return fd;
}

/* One datagram at the peer within timeout_ms, and where it came from (the relayed address as the
 * peer sees it: behind a NAT or with external-ip it can differ from XOR-RELAYED-ADDRESS). */
static int peer_recv(int fd, uint8_t *buf, size_t cap, int timeout_ms,
                     struct sockaddr_storage *from)
{
    struct pollfd pfd = {.fd = fd, .events = POLLIN};
    if (poll(&pfd, 1, timeout_ms) <= 0)
        return 0;
    socklen_t fl = sizeof(*from);
    ssize_t n = recvfrom(fd, buf, cap, 0, (struct sockaddr *)from, &fl);
    return n < 0 ? 0 : (int)n;
}

/* Wait for a Data indication (RFC 8656 §11) or ChannelData (§12) carrying `want`. */
static bool client_gets(sess_t *s, bool channel, uint16_t chan, const char *want)
{
    size_t wl = strlen(want);
    for (int i = 0; i < 16; i++) {
        int n = probe_conn_recv(&s->c, s->resp, sizeof(s->resp), s->p->timeout_ms);
        if (n <= 0)
            return false;
        if (channel && n >= 4 && s->resp[0] >= 0x40 && s->resp[0] <= 0x7F) {
            size_t dl = (size_t)s->resp[2] << 8 | s->resp[3];
            if (((uint16_t)s->resp[0] << 8 | s->resp[1]) == chan && dl == wl &&
                memcmp(s->resp + 4, want, wl) == 0)
                return true;
            continue;
        }
        stun_msg_t m;
        if (!channel && stun_msg_decode(s->resp, (size_t)n, &m) == 0 &&
            m.method == STUN_METHOD_DATA && m.cls == STUN_CLASS_INDICATION) {
            const stun_attr_t *d = stun_msg_find(&m, STUN_ATTR_DATA);
            if (d && d->len == wl && memcmp(stun_attr_value(&m, d), want, wl) == 0)
                return true;
        }
    }
    return false;
}

static void round_trips(sess_t *s, const auth_t *a)
{
    probe_t *p = s->p;
    const probe_target_t *t = s->t;
    char ip[SA_STRLEN], pa[SA_STRLEN], ra[SA_STRLEN], d[40];
    struct sockaddr_storage local, peer;
    socklen_t sl = sizeof(local);
    const char *peer_ip = p->peer_ip;
    if (!peer_ip) { /* our own address as the server sees it leaving here */
        getsockname(s->c.fd, (struct sockaddr *)&local, &sl);
        peer_ip = sa_format_ip((struct sockaddr *)&local, ip, sizeof(ip));
    }
    int pfd = peer_open(peer_ip, &peer);
    if (pfd < 0) {
        probe_add(p, t, "round-trips", "RFC 8656 §9-12", PROBE_SKIP,
                  "cannot open the prober's UDP peer on %s", peer_ip);
        return;
    }
    sa_format((struct sockaddr *)&peer, pa, sizeof(pa));
    sa_format((struct sockaddr *)&s->relayed, ra, sizeof(ra));
    int code, cls = sess_req(s, STUN_METHOD_CREATE_PERMISSION, add_peer, &peer, a, &code);
    if (cls != STUN_CLASS_SUCCESS) {
        probe_add(p, t, "create-permission", "RFC 8656 §9-10", PROBE_SKIP,
                  "the server refuses the prober's peer %s (%s): the peer round trips are not "
                  "possible from here (a server on loopback must allow the peer, e.g. "
                  "--peer-ip with an address it may relay to)",
                  pa, code_str(cls, code, d, sizeof(d)));
        close(pfd);
        return;
    }
    probe_add(p, t, "create-permission", "RFC 8656 §9-10", PROBE_PASS, "permission for peer %s",
              pa);

    /* Send indication -> peer -> Data indication (RFC 8656 §11). */
    uint8_t buf[2048];
    uint8_t tid[STUN_TID_LEN];
    RAND_bytes(tid, sizeof(tid));
    stun_build_t b;
    stun_build_init(&b, buf, sizeof(buf), stun_type(STUN_METHOD_SEND, STUN_CLASS_INDICATION), tid);
    stun_build_xor_addr(&b, STUN_ATTR_XOR_PEER_ADDRESS, (struct sockaddr *)&peer);
    stun_build_attr(&b, STUN_ATTR_DATA, "uturn-probe-send", 16);
    probe_conn_send(&s->c, buf, (size_t)stun_build_finish(&b));
    struct sockaddr_storage relay_src;
    int n = peer_recv(pfd, buf, sizeof(buf), p->timeout_ms, &relay_src);
    if (n != 16 || memcmp(buf, "uturn-probe-send", 16) != 0) {
        probe_add(p, t, "send-data", "RFC 8656 §11", PROBE_FAIL,
                  "the peer %s got nothing from the relayed address %s", pa, ra);
        close(pfd);
        return;
    }
    /* Answer from the peer to where the data came from (the relayed address, RFC 8656 §11). */
    sa_format((struct sockaddr *)&relay_src, ra, sizeof(ra));
    sendto(pfd, "uturn-probe-data", 16, 0, (struct sockaddr *)&relay_src,
           sa_len((struct sockaddr *)&relay_src));
    if (client_gets(s, false, 0, "uturn-probe-data"))
        probe_add(p, t, "send-data", "RFC 8656 §11", PROBE_PASS,
                  "Send indication reached the peer %s from %s; its answer came back as a Data "
                  "indication",
                  pa, ra);
    else
        probe_add(p, t, "send-data", "RFC 8656 §11", PROBE_FAIL,
                  "Send indication reached the peer, but its answer to %s came back as no Data "
                  "indication",
                  ra);

    /* ChannelBind + ChannelData both ways (RFC 8656 §12). */
    chan_arg_t ca = {0x4001, (struct sockaddr *)&peer};
    cls = sess_req(s, STUN_METHOD_CHANNEL_BIND, add_channel, &ca, a, &code);
    if (cls != STUN_CLASS_SUCCESS) {
        probe_add(p, t, "channel-bind", "RFC 8656 §12", PROBE_FAIL, "ChannelBind 0x4001: %s",
                  code_str(cls, code, d, sizeof(d)));
        close(pfd);
        return;
    }
    probe_add(p, t, "channel-bind", "RFC 8656 §12", PROBE_PASS, "channel 0x4001 bound to %s", pa);
    uint8_t cd[24] = {0x40, 0x01, 0x00, 16};
    memcpy(cd + 4, "uturn-probe-chan", 16);
    probe_conn_send(&s->c, cd, 20);
    struct sockaddr_storage src2;
    n = peer_recv(pfd, buf, sizeof(buf), p->timeout_ms, &src2);
    bool out_ok = n == 16 && memcmp(buf, "uturn-probe-chan", 16) == 0;
    sendto(pfd, "uturn-probe-back", 16, 0, (struct sockaddr *)&relay_src,
           sa_len((struct sockaddr *)&relay_src));
    bool back_ok = client_gets(s, true, 0x4001, "uturn-probe-back");
    probe_add(p, t, "channel-data", "RFC 8656 §12", out_ok && back_ok ? PROBE_PASS : PROBE_FAIL,
              "ChannelData to the peer: %s; the peer's answer as ChannelData: %s",
              out_ok ? "arrived" : "LOST", back_ok ? "arrived" : "LOST");
    close(pfd);
}

/* ASVS V17.1.1: peers a TURN server must refuse. CreatePermission only: nothing is sent there. */
static const struct {
    const char *ip, *what;
} deny_peers[] = {
    {"127.0.0.1", "loopback"},
    {"10.0.0.1", "RFC 1918 private"},
    {"172.16.0.1", "RFC 1918 private"},
    {"192.168.0.1", "RFC 1918 private"},
    {"169.254.169.254", "cloud metadata"},
    {"100.64.0.1", "RFC 6598 shared (CGNAT)"},
    {"0.0.0.0", "this network"},
    {"224.0.0.1", "multicast"},
    {"255.255.255.255", "broadcast"},
    {"198.18.0.1", "RFC 2544 benchmarking"},
    {"::1", "IPv6 loopback"},
    {"::ffff:127.0.0.1", "IPv4-mapped loopback"},
    {"::ffff:169.254.169.254", "IPv4-mapped metadata"},
    {"2002:7f00:1::", "6to4 of 127.0.0.1"},
    {"64:ff9b::a9fe:a9fe", "NAT64 of 169.254.169.254"},
    {"64:ff9b::7f00:1", "NAT64 of 127.0.0.1"},
    {"2001:0:4136:e378:8000:63bf:80ff:fffe", "Teredo, client 127.0.0.1"},
    {"fe80::1", "IPv6 link-local"},
    {"fc00::1", "IPv6 unique local"},
    {"fd00:ec2::254", "cloud metadata (IPv6)"},
};

static void peer_rules(sess_t *s4, sess_t *s6, const char *why4, const char *why6, const auth_t *a)
{
    probe_t *p = s4->p;
    for (size_t i = 0; i < sizeof(deny_peers) / sizeof(deny_peers[0]); i++) {
        struct sockaddr_storage peer;
        char name[48], d[40];
        snprintf(name, sizeof(name), "peer %s", deny_peers[i].ip);
        if (sa_parse_ip(deny_peers[i].ip, 9, &peer) != 0)
            continue;
        /* IPv4 peers go to the IPv4 allocation, IPv6 ones to the IPv6 allocation. IPv4-mapped
         * forms go to the IPv6 one when there is one: a dual-stack relay socket would really
         * send ::ffff:127.0.0.1 to IPv4 loopback. Without an allocation of the family a 443 says
         * nothing about the server's peer rules: SKIP. */
        bool mapped = peer.ss_family == AF_INET6 &&
                      IN6_IS_ADDR_V4MAPPED(&((struct sockaddr_in6 *)&peer)->sin6_addr);
        sess_t *s = peer.ss_family == AF_INET ? s4 : mapped && !s6->allocated ? s4 : s6;
        if (!s->allocated) {
            probe_add(p, s4->t, name, "ASVS V17.1.1, RFC 8656 §21", PROBE_SKIP,
                      "%s: no IPv%c allocation to ask on (%s)", deny_peers[i].what,
                      s == s6 ? '6' : '4', s == s6 ? why6 : why4);
            continue;
        }
        int code, cls = sess_req(s, STUN_METHOD_CREATE_PERMISSION, add_peer, &peer, a, &code);
        /* A mapped address refused with 443 cannot be reached through this allocation either
         * way: a server that unmaps it sees an IPv4 peer on an IPv6 relay, one that does not
         * sees an IPv6 peer on an IPv4 relay. */
        bool family_refusal = mapped && code == STUN_ERR_PEER_ADDRESS_FAMILY_MISMATCH;
        probe_result_t r = cls == STUN_CLASS_SUCCESS                      ? PROBE_FAIL
                           : cls < 0                                      ? PROBE_WARN
                           : code == STUN_ERR_FORBIDDEN || family_refusal ? PROBE_PASS
                                                                          : PROBE_WARN;
        probe_add(p, s->t, name, "ASVS V17.1.1, RFC 8656 §21", r, "%s (%s allocation): %s%s",
                  deny_peers[i].what, s == s6 ? "IPv6" : "IPv4", code_str(cls, code, d, sizeof(d)),
                  r == PROBE_FAIL   ? ": permission GRANTED"
                  : family_refusal  ? ": refused by address family, unreachable from this relay"
                  : r == PROBE_WARN ? ": refused, but not with 403 Forbidden"
                                    : "");
    }
}

/* Bounded 486 search: new 5-tuples until the user's quota answers 486. */
static void quota_check(probe_t *p, const probe_target_t *t, add_fn alloc_attrs, const auth_t *a)
{
    enum { CAP = 64 };
    static sess_t extra[CAP];
    int max = p->max_allocations < CAP ? p->max_allocations : CAP, made = 0, code = 0, cls = -1;
    char d[40];
    for (; made < max; made++) {
        sess_t *s = &extra[made];
        if (sess_open(s, p, t) < 0)
            break;
        uint8_t udp = STUN_TRANSPORT_UDP;
        sess_challenge(s, &code);
        cls = sess_req(s, STUN_METHOD_ALLOCATE, alloc_attrs, &udp, a, &code);
        if (cls != STUN_CLASS_SUCCESS) {
            sess_close(s);
            break;
        }
        s->allocated = true;
    }
    if (cls == STUN_CLASS_ERROR && code == STUN_ERR_ALLOCATION_QUOTA)
        probe_add(p, t, "quota-486", "RFC 8656 §7.2", PROBE_PASS,
                  "486 Allocation Quota Reached after %d more allocations of this user", made);
    else if (made == max)
        probe_add(p, t, "quota-486", "RFC 8656 §7.2", PROBE_SKIP,
                  "no 486 within %d more allocations: the user's quota is larger (raise "
                  "--max-allocations to reach it)",
                  max);
    else
        probe_add(p, t, "quota-486", "RFC 8656 §7.2", PROBE_WARN,
                  "allocation %d refused with %s, not 486", made + 1,
                  code_str(cls, code, d, sizeof(d)));
    for (int i = 0; i < made; i++)
        sess_close(&extra[i]);
}

static void auth_checks(sess_t *s, const auth_t *md5)
{
    probe_t *p = s->p;
    const probe_target_t *t = s->t;
    char d[40];
    int code, cls;
    uint32_t life = 600;
    bool sec = s->has_algs && s->nonce[0] && strncmp(s->nonce, "obMatJos2", 9) == 0;

    /* MESSAGE-INTEGRITY-SHA256 (RFC 8489 §14.6) on a Refresh of the live allocation. */
    bool offers256 = false;
    for (size_t i = 0; i < s->nalgs; i++)
        offers256 |= s->algs[i] == STUN_PASSWORD_ALG_SHA256;
    auth_t a256 = *md5;
    a256.mi256 = true;
    if (offers256 && sec) {
        a256.alg = STUN_PASSWORD_ALG_SHA256;
        a256.send_algs = true;
    }
    cls = sess_req(s, STUN_METHOD_REFRESH, add_lifetime, &life, &a256, &code);
    if (cls == STUN_CLASS_SUCCESS) {
        const char *v = resp_integrity(s, &a256);
        probe_add(p, t, "integrity-sha256", "RFC 8489 §14.6, §9.2.2",
                  strstr(v, "SHA256 verified") ? PROBE_PASS : PROBE_FAIL,
                  "Refresh with MESSAGE-INTEGRITY-SHA256 (%s key) accepted; answer: %s",
                  a256.alg == STUN_PASSWORD_ALG_SHA256 ? "SHA-256" : "MD5", v);
    } else {
        probe_add(p, t, "integrity-sha256", "RFC 8489 §14.6, §9.2.2", PROBE_FAIL,
                  "Refresh with only MESSAGE-INTEGRITY-SHA256 (%s key): %s: the server does not "
                  "take SHA-256 integrity",
                  a256.alg == STUN_PASSWORD_ALG_SHA256 ? "SHA-256" : "MD5",
                  code_str(cls, code, d, sizeof(d)));
    }

    /* USERHASH (RFC 8489 §14.4): only when the nonce's feature bits offer username anonymity. */
    bool anon = false;
    if (strncmp(s->nonce, "obMatJos2", 9) == 0 && strlen(s->nonce) >= 13) {
        static const char b64[] =
            "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        const char *c = strchr(b64, s->nonce[9]), *c2 = strchr(b64, s->nonce[10]);
        if (c && c2 && s->nonce[9] && s->nonce[10]) {
            unsigned bits = (unsigned)(c - b64) << 2 | (unsigned)(c2 - b64) >> 4;
            anon = bits & 0x40; /* bit 1 of the 24-bit set: "Username anonymity" */
        }
    }
    if (!anon) {
        probe_add(p, t, "userhash", "RFC 8489 §14.4, §9.2.3", PROBE_SKIP,
                  "the nonce does not offer username anonymity (security feature bit 1)");
    } else {
        auth_t uh = a256;
        uh.userhash = true;
        cls = sess_req(s, STUN_METHOD_REFRESH, add_lifetime, &life, &uh, &code);
        probe_add(p, t, "userhash", "RFC 8489 §14.4, §9.2.3",
                  cls == STUN_CLASS_SUCCESS ? PROBE_PASS : PROBE_FAIL,
                  "Refresh with USERHASH instead of USERNAME: %s",
                  code_str(cls, code, d, sizeof(d)));
    }

    /* 438 Stale Nonce (RFC 8489 §9.2.4): a nonce the server never issued. */
    auth_t bad = *md5;
    bad.bad_nonce = true;
    cls = sess_req(s, STUN_METHOD_REFRESH, add_lifetime, &life, &bad, &code);
    probe_add(p, t, "stale-nonce-438", RFC_LT,
              cls == STUN_CLASS_SUCCESS ? PROBE_FAIL
              : cls == STUN_CLASS_ERROR && code == STUN_ERR_STALE_NONCE &&
                      stun_msg_find(&s->msg, STUN_ATTR_NONCE)
                  ? PROBE_PASS
                  : PROBE_WARN,
              "Refresh with an altered nonce: %s%s", code_str(cls, code, d, sizeof(d)),
              cls == STUN_CLASS_SUCCESS ? ": a nonce it never issued was accepted" : "");

    /* 441 Wrong Credentials (RFC 8656 §5, §19): another user's request on this allocation. */
    if (!p->user2) {
        probe_add(p, t, "wrong-credentials-441", "RFC 8656 §5", PROBE_SKIP,
                  "needs a second account (--user2/--password2)");
    } else {
        auth_t other = {p->user2, p->password2, STUN_PASSWORD_ALG_MD5, false, false, false, false};
        cls = sess_req(s, STUN_METHOD_REFRESH, add_lifetime, &life, &other, &code);
        probe_add(p, t, "wrong-credentials-441", "RFC 8656 §5",
                  cls == STUN_CLASS_ERROR && code == STUN_ERR_WRONG_CREDENTIALS ? PROBE_PASS
                                                                                : PROBE_FAIL,
                  "Refresh of %s's allocation by %s: %s", p->user, p->user2,
                  code_str(cls, code, d, sizeof(d)));
    }
}

void probe_turn_checks(probe_t *p, const probe_target_t *t)
{
    sess_t s, s6;
    char d[40], ra[SA_STRLEN];
    int code, cls;
    memset(&s6, 0, sizeof(s6));
    if (sess_open(&s, p, t) < 0) {
        probe_add(p, t, "challenge-401", RFC_LT, PROBE_FAIL, "cannot connect");
        return;
    }
    cls = sess_challenge(&s, &code);
    bool realm = stun_msg_find(&s.msg, STUN_ATTR_REALM), nonce = s.nonce[0] != 0;
    if (cls != STUN_CLASS_ERROR || code != STUN_ERR_UNAUTHORIZED || !realm || !nonce) {
        s.allocated = cls == STUN_CLASS_SUCCESS; /* an open server: delete what it gave us */
        probe_add(p, t, "challenge-401", RFC_LT, PROBE_FAIL,
                  "unauthenticated Allocate: %s%s%s (want 401 with REALM and NONCE)",
                  code_str(cls, code, d, sizeof(d)), realm ? "" : ", no REALM",
                  nonce ? "" : ", no NONCE");
        sess_close(&s);
        return;
    }
    probe_add(p, t, "challenge-401", RFC_LT, PROBE_PASS,
              "401 with REALM \"%s\" and NONCE (%zu bytes)", s.realm, strlen(s.nonce));
    bool cookie = strncmp(s.nonce, "obMatJos2", 9) == 0;
    if (!s.has_algs) {
        probe_add(p, t, "password-algorithms", "RFC 8489 §9.2.4, §14.11", PROBE_WARN,
                  "not offered: MD5 keys only, no SHA-256 key (nonce %s the security-feature "
                  "cookie)",
                  cookie ? "has" : "lacks");
    } else {
        char list[64] = "";
        bool has256 = false;
        for (size_t i = 0; i < s.nalgs; i++) {
            size_t l = strlen(list);
            snprintf(list + l, sizeof(list) - l, "%s%s", i ? ", " : "",
                     s.algs[i] == STUN_PASSWORD_ALG_MD5      ? "MD5"
                     : s.algs[i] == STUN_PASSWORD_ALG_SHA256 ? "SHA-256"
                                                             : "?");
            has256 |= s.algs[i] == STUN_PASSWORD_ALG_SHA256;
        }
        probe_add(p, t, "password-algorithms", "RFC 8489 §9.2.4, §14.11",
                  cookie && has256 ? PROBE_PASS : PROBE_WARN,
                  "offered: %s; nonce %s the \"obMatJos2\" security-feature cookie", list,
                  cookie ? "has" : "LACKS");
    }

    auth_t md5 = {p->user, p->password, STUN_PASSWORD_ALG_MD5, false, false, false, false};
    auth_t wrong = md5;
    wrong.pass = "uturn-probe-wrong-password";
    uint8_t udp = STUN_TRANSPORT_UDP, bogus = 99;
    cls = sess_req(&s, STUN_METHOD_ALLOCATE, add_transport, &udp, &wrong, &code);
    probe_add(p, t, "wrong-password", RFC_LT,
              cls == STUN_CLASS_SUCCESS                                  ? PROBE_FAIL
              : cls == STUN_CLASS_ERROR && code == STUN_ERR_UNAUTHORIZED ? PROBE_PASS
                                                                         : PROBE_WARN,
              "Allocate with a wrong password: %s (want 401)", code_str(cls, code, d, sizeof(d)));

    /* 442 before the real allocation: no allocation is made (RFC 8656 §7.2 rule 4/5). */
    cls = sess_req(&s, STUN_METHOD_ALLOCATE, add_transport, &bogus, &md5, &code);
    probe_add(p, t, "unsupported-transport-442", "RFC 8656 §7.2",
              cls == STUN_CLASS_ERROR && code == STUN_ERR_UNSUPPORTED_TRANSPORT ? PROBE_PASS
                                                                                : PROBE_FAIL,
              "Allocate with REQUESTED-TRANSPORT 99: %s", code_str(cls, code, d, sizeof(d)));
    if (cls == STUN_CLASS_SUCCESS) { /* it made one: start over on a new 5-tuple */
        s.allocated = true;
        sess_close(&s);
        if (sess_open(&s, p, t) < 0)
            return;
        sess_challenge(&s, &code);
    }

    /* IPv4 relay by default (RFC 8656 §7.2); a server without one answers 440: ask for IPv6. */
    add_fn fam = add_transport, other_fam = add_transport_v6;
    cls = sess_req(&s, STUN_METHOD_ALLOCATE, fam, &udp, &md5, &code);
    if (cls == STUN_CLASS_ERROR && code == STUN_ERR_ADDRESS_FAMILY_NOT_SUPPORTED) {
        fam = add_transport_v6;
        other_fam = add_transport;
        cls = sess_req(&s, STUN_METHOD_ALLOCATE, fam, &udp, &md5, &code);
    }
    if (cls != STUN_CLASS_SUCCESS) {
        probe_add(p, t, "integrity-sha1", "RFC 8489 §14.5, RFC 8656 §7", PROBE_FAIL,
                  "Allocate with MESSAGE-INTEGRITY (MD5 key) for user %s: %s", p->user,
                  code_str(cls, code, d, sizeof(d)));
        sess_close(&s);
        return;
    }
    s.allocated = true;
    const stun_attr_t *x = stun_msg_find(&s.msg, STUN_ATTR_XOR_RELAYED_ADDRESS);
    if (!x || stun_attr_get_xor_addr(&s.msg, x, &s.relayed) != 0)
        memset(&s.relayed, 0, sizeof(s.relayed));
    const char *v = resp_integrity(&s, &md5);
    probe_add(p, t, "integrity-sha1", "RFC 8489 §14.5, RFC 8656 §7",
              strstr(v, "TY verified") ? PROBE_PASS : PROBE_FAIL,
              "Allocate with MESSAGE-INTEGRITY (MD5 key) succeeded, relayed %s; answer: %s",
              x ? sa_format((struct sockaddr *)&s.relayed, ra, sizeof(ra)) : "MISSING", v);

    /* 437: a second Allocate on the same 5-tuple (RFC 8656 §7.2 rule 2). */
    cls = sess_req(&s, STUN_METHOD_ALLOCATE, fam, &udp, &md5, &code);
    probe_add(p, t, "allocation-mismatch-437", "RFC 8656 §7.2",
              cls == STUN_CLASS_ERROR && code == STUN_ERR_ALLOCATION_MISMATCH ? PROBE_PASS
                                                                              : PROBE_FAIL,
              "second Allocate (new transaction) on the same 5-tuple: %s",
              code_str(cls, code, d, sizeof(d)));

    uint32_t life = 600;
    cls = sess_req(&s, STUN_METHOD_REFRESH, add_lifetime, &life, &md5, &code);
    const stun_attr_t *lt =
        cls == STUN_CLASS_SUCCESS ? stun_msg_find(&s.msg, STUN_ATTR_LIFETIME) : NULL;
    uint32_t got = 0;
    if (lt)
        stun_attr_get_u32(&s.msg, lt, &got);
    probe_add(p, t, "refresh", "RFC 8656 §8", lt ? PROBE_PASS : PROBE_FAIL,
              "Refresh LIFETIME 600: %s%s%u", code_str(cls, code, d, sizeof(d)),
              lt ? ", LIFETIME " : "", lt ? got : 0u);

    auth_checks(&s, &md5);
    round_trips(&s, &md5);

    /* An allocation of the other family for the peer rules (REQUESTED-ADDRESS-FAMILY). */
    sess_t *other = &s6;
    char why[64] = "cannot connect", ok[8] = "";
    if (sess_open(other, p, t) == 0) {
        sess_challenge(other, &code);
        cls = sess_req(other, STUN_METHOD_ALLOCATE, other_fam, &udp, &md5, &code);
        if (cls == STUN_CLASS_SUCCESS)
            other->allocated = true;
        snprintf(why, sizeof(why), "Allocate of IPv%c: %s", fam == add_transport ? '6' : '4',
                 code_str(cls, code, d, sizeof(d)));
    }
    if (fam == add_transport)
        peer_rules(&s, other, ok, why, &md5);
    else
        peer_rules(other, &s, why, ok, &md5);
    sess_close(other);
    quota_check(p, t, fam, &md5);
    sess_close(&s);
}
