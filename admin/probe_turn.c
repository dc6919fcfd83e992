/* probe_turn.c - the prober's TURN checks on one target: the credential mechanism, the relay
 * round trips and the peer rules.
 *
 * RFC 8489 §9.2.4 (401 challenge, NONCE cookie, PASSWORD-ALGORITHMS, 438), §14.4-14.6 (USERHASH,
 * MESSAGE-INTEGRITY, -SHA256); RFC 8656 §7.2 (Allocate, 437, 440, 442, 486), §8 (Refresh), §9-10
 * (CreatePermission), §11 (Send/Data), §12 (ChannelBind, ChannelData), §5/§19 (441); OWASP ASVS 5.0
 * V17.1.1 (peer rules: asked with CreatePermission only, nothing is ever sent to those addresses).
 */
#include <arpa/inet.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "probe_sess.h"
#include "sockaddr_util.h"
#include "stun.h"
#include "stun_build.h"
#include "util.h"

#define RFC_LT "RFC 8489 §9.2.4"

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
static bool client_gets(probe_sess_t *s, bool channel, uint16_t chan, const char *want)
{
    size_t wl = strlen(want);
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    long long deadline = ts.tv_sec * 1000LL + ts.tv_nsec / 1000000 + s->p->timeout_ms;
    for (int i = 0; i < 16; i++) { /* 16 unrelated messages, or the timeout, whichever first */
        clock_gettime(CLOCK_MONOTONIC, &ts);
        long long left = deadline - (ts.tv_sec * 1000LL + ts.tv_nsec / 1000000);
        int n = left > 0 ? probe_conn_recv(&s->c, s->resp, sizeof(s->resp), (int)left) : 0;
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

/* ChannelBind + ChannelData both ways (RFC 8656 §12), with the peer already permitted. */
static void channel_round_trip(probe_sess_t *s, const probe_sess_auth_t *a, int pfd,
                               const struct sockaddr_storage *peer,
                               const struct sockaddr_storage *relay_src)
{
    probe_t *p = s->p;
    const probe_target_t *t = s->t;
    char pa[SA_STRLEN], d[40];
    uint8_t buf[2048];
    int code, cls, n;
    sa_format((const struct sockaddr *)peer, pa, sizeof(pa));
    probe_sess_chan_t ca = {0x4001, (const struct sockaddr *)peer};
    cls = probe_sess_req(s, STUN_METHOD_CHANNEL_BIND, probe_sess_add_channel, &ca, a, &code);
    if (cls != STUN_CLASS_SUCCESS) {
        probe_add(p, t, "channel-bind", "RFC 8656 §12", PROBE_FAIL, "ChannelBind 0x4001: %s",
                  probe_sess_code_str(cls, code, d, sizeof(d)));
        return;
    }
    probe_add(p, t, "channel-bind", "RFC 8656 §12", PROBE_PASS, "channel 0x4001 bound to %s", pa);
    uint8_t cd[24] = {0x40, 0x01, 0x00, 16};
    memcpy(cd + 4, "uturn-probe-chan", 16);
    probe_conn_send(&s->c, cd, 20);
    struct sockaddr_storage src2;
    n = peer_recv(pfd, buf, sizeof(buf), p->timeout_ms, &src2);
    bool out_ok = n == 16 && memcmp(buf, "uturn-probe-chan", 16) == 0;
    sendto(pfd, "uturn-probe-back", 16, 0, (const struct sockaddr *)relay_src,
           sa_len((const struct sockaddr *)relay_src));
    bool back_ok = client_gets(s, true, 0x4001, "uturn-probe-back");
    probe_add(p, t, "channel-data", "RFC 8656 §12", out_ok && back_ok ? PROBE_PASS : PROBE_FAIL,
              "ChannelData to the peer: %s; the peer's answer as ChannelData: %s",
              out_ok ? "arrived" : "LOST", back_ok ? "arrived" : "LOST");
}

static void round_trips(probe_sess_t *s, const probe_sess_auth_t *a)
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
    int code, cls = probe_sess_req(s, STUN_METHOD_CREATE_PERMISSION, probe_sess_add_peer, &peer, a,
                                   &code);
    if (cls != STUN_CLASS_SUCCESS) {
        probe_add(p, t, "create-permission", "RFC 8656 §9-10", PROBE_SKIP,
                  "the server refuses the prober's peer %s (%s): the peer round trips are not "
                  "possible from here (a server on loopback must allow the peer, e.g. "
                  "--peer-ip with an address it may relay to)",
                  pa, probe_sess_code_str(cls, code, d, sizeof(d)));
        close(pfd);
        return;
    }
    probe_add(p, t, "create-permission", "RFC 8656 §9-10", PROBE_PASS, "permission for peer %s",
              pa);

    /* Send indication -> peer -> Data indication (RFC 8656 §11). */
    uint8_t buf[2048];
    uint8_t tid[STUN_TID_LEN];
    probe_tid(tid);
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

    channel_round_trip(s, a, pfd, &peer, &relay_src);
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

static void peer_rules(probe_sess_t *s4, probe_sess_t *s6, const char *why4, const char *why6,
                       const probe_sess_auth_t *a)
{
    probe_t *p = s4->p;
    for (size_t i = 0; i < ARRAY_SIZE(deny_peers); i++) {
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
        probe_sess_t *s = peer.ss_family == AF_INET ? s4 : mapped && !s6->allocated ? s4 : s6;
        if (!s->allocated) {
            probe_add(p, s4->t, name, "ASVS V17.1.1, RFC 8656 §21", PROBE_SKIP,
                      "%s: no IPv%c allocation to ask on (%s)", deny_peers[i].what,
                      s == s6 ? '6' : '4', s == s6 ? why6 : why4);
            continue;
        }
        int code, cls = probe_sess_req(s, STUN_METHOD_CREATE_PERMISSION, probe_sess_add_peer, &peer,
                                       a, &code);
        /* A mapped address refused with 443 cannot be reached through this allocation either
         * way: a server that unmaps it sees an IPv4 peer on an IPv6 relay, one that does not
         * sees an IPv6 peer on an IPv4 relay. */
        bool family_refusal = mapped && code == STUN_ERR_PEER_ADDRESS_FAMILY_MISMATCH;
        probe_result_t r = cls == STUN_CLASS_SUCCESS                      ? PROBE_FAIL
                           : cls < 0                                      ? PROBE_WARN
                           : code == STUN_ERR_FORBIDDEN || family_refusal ? PROBE_PASS
                                                                          : PROBE_WARN;
        probe_add(p, s->t, name, "ASVS V17.1.1, RFC 8656 §21", r, "%s (%s allocation): %s%s",
                  deny_peers[i].what, s == s6 ? "IPv6" : "IPv4",
                  probe_sess_code_str(cls, code, d, sizeof(d)),
                  r == PROBE_FAIL   ? ": permission GRANTED"
                  : family_refusal  ? ": refused by address family, unreachable from this relay"
                  : r == PROBE_WARN ? ": refused, but not with 403 Forbidden"
                                    : "");
    }
}

/* Bounded 486 search: new 5-tuples until the user's quota answers 486. */
static void quota_check(probe_t *p, const probe_target_t *t, probe_sess_add_fn alloc_attrs,
                        const probe_sess_auth_t *a)
{
    enum { CAP = 64 };
    static probe_sess_t extra[CAP];
    int max = p->max_allocations < CAP ? p->max_allocations : CAP, made = 0, code = 0, cls = -1;
    char d[40];
    for (; made < max; made++) {
        probe_sess_t *s = &extra[made];
        if (probe_sess_open(s, p, t) < 0)
            break;
        uint8_t udp = STUN_TRANSPORT_UDP;
        probe_sess_challenge(s, &code);
        cls = probe_sess_req(s, STUN_METHOD_ALLOCATE, alloc_attrs, &udp, a, &code);
        if (cls != STUN_CLASS_SUCCESS) {
            probe_sess_close(s);
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
                  probe_sess_code_str(cls, code, d, sizeof(d)));
    for (int i = 0; i < made; i++)
        probe_sess_close(&extra[i]);
}

/* 438 for a nonce the server never issued, 441 for another user on this allocation. */
static void nonce_and_user_checks(probe_sess_t *s, const probe_sess_auth_t *md5)
{
    probe_t *p = s->p;
    const probe_target_t *t = s->t;
    char d[40];
    int code, cls;
    uint32_t life = 600;
    /* 438 Stale Nonce (RFC 8489 §9.2.4): a nonce the server never issued. */
    probe_sess_auth_t bad = *md5;
    bad.bad_nonce = true;
    cls = probe_sess_req(s, STUN_METHOD_REFRESH, probe_sess_add_lifetime, &life, &bad, &code);
    probe_add(p, t, "stale-nonce-438", RFC_LT,
              cls == STUN_CLASS_SUCCESS ? PROBE_FAIL
              : cls == STUN_CLASS_ERROR && code == STUN_ERR_STALE_NONCE &&
                      stun_msg_find(&s->msg, STUN_ATTR_NONCE)
                  ? PROBE_PASS
                  : PROBE_WARN,
              "Refresh with an altered nonce: %s%s", probe_sess_code_str(cls, code, d, sizeof(d)),
              cls == STUN_CLASS_SUCCESS ? ": a nonce it never issued was accepted" : "");

    /* 441 Wrong Credentials (RFC 8656 §5, §19): another user's request on this allocation. */
    if (!p->user2) {
        probe_add(p, t, "wrong-credentials-441", "RFC 8656 §5", PROBE_SKIP,
                  "needs a second account (--user2/--password2)");
    } else {
        probe_sess_auth_t other = {p->user2, p->password2, STUN_PASSWORD_ALG_MD5, false, false,
                                   false,    false};
        cls = probe_sess_req(s, STUN_METHOD_REFRESH, probe_sess_add_lifetime, &life, &other, &code);
        probe_add(p, t, "wrong-credentials-441", "RFC 8656 §5",
                  cls == STUN_CLASS_ERROR && code == STUN_ERR_WRONG_CREDENTIALS ? PROBE_PASS
                                                                                : PROBE_FAIL,
                  "Refresh of %s's allocation by %s: %s", p->user, p->user2,
                  probe_sess_code_str(cls, code, d, sizeof(d)));
    }
}

static void auth_checks(probe_sess_t *s, const probe_sess_auth_t *md5)
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
    probe_sess_auth_t a256 = *md5;
    a256.mi256 = true;
    if (offers256 && sec) {
        a256.alg = STUN_PASSWORD_ALG_SHA256;
        a256.send_algs = true;
    }
    cls = probe_sess_req(s, STUN_METHOD_REFRESH, probe_sess_add_lifetime, &life, &a256, &code);
    if (cls == STUN_CLASS_SUCCESS) {
        const char *v = probe_sess_integrity(s, &a256);
        probe_add(p, t, "integrity-sha256", "RFC 8489 §14.6, §9.2.2",
                  strstr(v, "SHA256 verified") ? PROBE_PASS : PROBE_FAIL,
                  "Refresh with MESSAGE-INTEGRITY-SHA256 (%s key) accepted; answer: %s",
                  a256.alg == STUN_PASSWORD_ALG_SHA256 ? "SHA-256" : "MD5", v);
    } else {
        probe_add(p, t, "integrity-sha256", "RFC 8489 §14.6, §9.2.2", PROBE_FAIL,
                  "Refresh with only MESSAGE-INTEGRITY-SHA256 (%s key): %s: the server does not "
                  "take SHA-256 integrity",
                  a256.alg == STUN_PASSWORD_ALG_SHA256 ? "SHA-256" : "MD5",
                  probe_sess_code_str(cls, code, d, sizeof(d)));
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
        probe_sess_auth_t uh = a256;
        uh.userhash = true;
        cls = probe_sess_req(s, STUN_METHOD_REFRESH, probe_sess_add_lifetime, &life, &uh, &code);
        probe_add(p, t, "userhash", "RFC 8489 §14.4, §9.2.3",
                  cls == STUN_CLASS_SUCCESS ? PROBE_PASS : PROBE_FAIL,
                  "Refresh with USERHASH instead of USERNAME: %s",
                  probe_sess_code_str(cls, code, d, sizeof(d)));
    }

    nonce_and_user_checks(s, md5);
}

/* The unauthenticated Allocate: 401 with REALM and NONCE, and what the server offers. Returns
 * false (session closed) when there is no usable challenge. */
static bool challenge(probe_sess_t *s)
{
    probe_t *p = s->p;
    const probe_target_t *t = s->t;
    char d[40];
    int code, cls = probe_sess_challenge(s, &code);
    bool realm = stun_msg_find(&s->msg, STUN_ATTR_REALM), nonce = s->nonce[0] != 0;
    if (cls != STUN_CLASS_ERROR || code != STUN_ERR_UNAUTHORIZED || !realm || !nonce) {
        s->allocated = cls == STUN_CLASS_SUCCESS; /* an open server: delete what it gave us */
        probe_add(p, t, "challenge-401", RFC_LT, PROBE_FAIL,
                  "unauthenticated Allocate: %s%s%s (want 401 with REALM and NONCE)",
                  probe_sess_code_str(cls, code, d, sizeof(d)), realm ? "" : ", no REALM",
                  nonce ? "" : ", no NONCE");
        probe_sess_close(s);
        return false;
    }
    probe_add(p, t, "challenge-401", RFC_LT, PROBE_PASS,
              "401 with REALM \"%s\" and NONCE (%zu bytes)", s->realm, strlen(s->nonce));
    bool cookie = strncmp(s->nonce, "obMatJos2", 9) == 0;
    if (!s->has_algs) {
        probe_add(p, t, "password-algorithms", "RFC 8489 §9.2.4, §14.11", PROBE_WARN,
                  "not offered: MD5 keys only, no SHA-256 key (nonce %s the security-feature "
                  "cookie)",
                  cookie ? "has" : "lacks");
        return true;
    }
    char list[64] = "";
    bool has256 = false;
    for (size_t i = 0; i < s->nalgs; i++) {
        size_t l = strlen(list);
        snprintf(list + l, sizeof(list) - l, "%s%s", i ? ", " : "",
                 s->algs[i] == STUN_PASSWORD_ALG_MD5      ? "MD5"
                 : s->algs[i] == STUN_PASSWORD_ALG_SHA256 ? "SHA-256"
                                                          : "?");
        has256 |= s->algs[i] == STUN_PASSWORD_ALG_SHA256;
    }
    probe_add(p, t, "password-algorithms", "RFC 8489 §9.2.4, §14.11",
              cookie && has256 ? PROBE_PASS : PROBE_WARN,
              "offered: %s; nonce %s the \"obMatJos2\" security-feature cookie", list,
              cookie ? "has" : "LACKS");
    return true;
}

/* Mistakes that must not make an allocation: a wrong password (401) and an unknown transport
 * (442). Returns false when the session could not be reopened after a server made one anyway. */
static bool refused_allocates(probe_sess_t *s, const probe_sess_auth_t *md5)
{
    probe_t *p = s->p;
    const probe_target_t *t = s->t;
    char d[40];
    int code, cls;
    probe_sess_auth_t wrong = *md5;
    wrong.pass = "uturn-probe-wrong-password";
    uint8_t udp = STUN_TRANSPORT_UDP, bogus = 99;
    cls = probe_sess_req(s, STUN_METHOD_ALLOCATE, probe_sess_add_transport, &udp, &wrong, &code);
    probe_add(p, t, "wrong-password", RFC_LT,
              cls == STUN_CLASS_SUCCESS                                  ? PROBE_FAIL
              : cls == STUN_CLASS_ERROR && code == STUN_ERR_UNAUTHORIZED ? PROBE_PASS
                                                                         : PROBE_WARN,
              "Allocate with a wrong password: %s (want 401)",
              probe_sess_code_str(cls, code, d, sizeof(d)));
    bool made = cls == STUN_CLASS_SUCCESS;

    /* RFC 8656 §7.2: any REQUESTED-TRANSPORT other than UDP (TCP: RFC 6062) is 442. */
    cls = probe_sess_req(s, STUN_METHOD_ALLOCATE, probe_sess_add_transport, &bogus, md5, &code);
    probe_add(
        p, t, "unsupported-transport-442", "RFC 8656 §7.2",
        cls == STUN_CLASS_ERROR && code == STUN_ERR_UNSUPPORTED_TRANSPORT ? PROBE_PASS : PROBE_FAIL,
        "Allocate with REQUESTED-TRANSPORT 99: %s", probe_sess_code_str(cls, code, d, sizeof(d)));
    made |= cls == STUN_CLASS_SUCCESS;
    if (!made)
        return true;
    s->allocated = true; /* it made one: start over on a new 5-tuple */
    probe_sess_close(s);
    if (probe_sess_open(s, p, t) < 0)
        return false;
    probe_sess_challenge(s, &code);
    return true;
}

/* The allocation the other checks run on: SHA-1 integrity, then 437 and Refresh on it. Returns
 * the attribute adder of its address family, or NULL (session closed) when there is none. */
static probe_sess_add_fn main_allocation(probe_sess_t *s, const probe_sess_auth_t *md5)
{
    probe_t *p = s->p;
    const probe_target_t *t = s->t;
    char d[40], ra[SA_STRLEN];
    int code, cls;
    uint8_t udp = STUN_TRANSPORT_UDP;
    /* IPv4 relay by default (RFC 8656 §7.2); a server without one answers 440: ask for IPv6. */
    probe_sess_add_fn fam = probe_sess_add_transport;
    cls = probe_sess_req(s, STUN_METHOD_ALLOCATE, fam, &udp, md5, &code);
    if (cls == STUN_CLASS_ERROR && code == STUN_ERR_ADDRESS_FAMILY_NOT_SUPPORTED) {
        fam = probe_sess_add_transport_v6;
        cls = probe_sess_req(s, STUN_METHOD_ALLOCATE, fam, &udp, md5, &code);
    }
    if (cls != STUN_CLASS_SUCCESS) {
        probe_add(p, t, "integrity-sha1", "RFC 8489 §14.5, RFC 8656 §7", PROBE_FAIL,
                  "Allocate with MESSAGE-INTEGRITY (MD5 key) for user %s: %s", p->user,
                  probe_sess_code_str(cls, code, d, sizeof(d)));
        probe_sess_close(s);
        return NULL;
    }
    s->allocated = true;
    const stun_attr_t *x = stun_msg_find(&s->msg, STUN_ATTR_XOR_RELAYED_ADDRESS);
    if (!x || stun_attr_get_xor_addr(&s->msg, x, &s->relayed) != 0)
        memset(&s->relayed, 0, sizeof(s->relayed));
    const char *v = probe_sess_integrity(s, md5);
    probe_add(p, t, "integrity-sha1", "RFC 8489 §14.5, RFC 8656 §7",
              strstr(v, "TY verified") ? PROBE_PASS : PROBE_FAIL,
              "Allocate with MESSAGE-INTEGRITY (MD5 key) succeeded, relayed %s; answer: %s",
              x ? sa_format((struct sockaddr *)&s->relayed, ra, sizeof(ra)) : "MISSING", v);

    /* 437: a second Allocate on the same 5-tuple (RFC 8656 §7.2 rule 2). */
    cls = probe_sess_req(s, STUN_METHOD_ALLOCATE, fam, &udp, md5, &code);
    probe_add(p, t, "allocation-mismatch-437", "RFC 8656 §7.2",
              cls == STUN_CLASS_ERROR && code == STUN_ERR_ALLOCATION_MISMATCH ? PROBE_PASS
                                                                              : PROBE_FAIL,
              "second Allocate (new transaction) on the same 5-tuple: %s",
              probe_sess_code_str(cls, code, d, sizeof(d)));

    uint32_t life = 600;
    cls = probe_sess_req(s, STUN_METHOD_REFRESH, probe_sess_add_lifetime, &life, md5, &code);
    const stun_attr_t *lt =
        cls == STUN_CLASS_SUCCESS ? stun_msg_find(&s->msg, STUN_ATTR_LIFETIME) : NULL;
    uint32_t got = 0;
    if (lt)
        stun_attr_get_u32(&s->msg, lt, &got);
    probe_add(p, t, "refresh", "RFC 8656 §8", lt ? PROBE_PASS : PROBE_FAIL,
              "Refresh LIFETIME 600: %s%s%u", probe_sess_code_str(cls, code, d, sizeof(d)),
              lt ? ", LIFETIME " : "", lt ? got : 0u);
    return fam;
}

/* The peer rules need an allocation of each family: open one of the family `s` is not. */
static void peer_checks(probe_sess_t *s, probe_sess_add_fn fam, const probe_sess_auth_t *md5)
{
    static probe_sess_t other; /* large: its receive buffers */
    bool v4 = fam == probe_sess_add_transport;
    char why[64] = "cannot connect", ok[8] = "", d[40];
    uint8_t udp = STUN_TRANSPORT_UDP;
    int code;
    memset(&other, 0, sizeof(other));
    if (probe_sess_open(&other, s->p, s->t) == 0) {
        probe_sess_challenge(&other, &code);
        int cls = probe_sess_req(&other, STUN_METHOD_ALLOCATE,
                                 v4 ? probe_sess_add_transport_v6 : probe_sess_add_transport, &udp,
                                 md5, &code);
        other.allocated = cls == STUN_CLASS_SUCCESS;
        snprintf(why, sizeof(why), "Allocate of IPv%c: %s", v4 ? '6' : '4',
                 probe_sess_code_str(cls, code, d, sizeof(d)));
    }
    if (v4)
        peer_rules(s, &other, ok, why, md5);
    else
        peer_rules(&other, s, why, ok, md5);
    probe_sess_close(&other);
}

void probe_turn_checks(probe_t *p, const probe_target_t *t)
{
    static probe_sess_t s; /* large: its receive buffers */
    if (probe_sess_open(&s, p, t) < 0) {
        probe_add(p, t, "challenge-401", RFC_LT, PROBE_FAIL, "cannot connect");
        return;
    }
    if (!challenge(&s))
        return;
    probe_sess_auth_t md5 = {p->user, p->password, STUN_PASSWORD_ALG_MD5, false, false,
                             false,   false};
    if (!refused_allocates(&s, &md5))
        return;
    probe_sess_add_fn fam = main_allocation(&s, &md5);
    if (!fam)
        return;
    auth_checks(&s, &md5);
    round_trips(&s, &md5);
    peer_checks(&s, fam, &md5);
    quota_check(p, t, fam, &md5);
    probe_sess_close(&s);
}
