/* peer_policy.c - canonicalisation, classification and allow/deny ranges for TURN peer addresses.
 *
 * RFC 8656 §21 (security considerations) warns that a relay can be turned into a tool for reaching
 * hosts behind the server's firewall; this file decides which peers a CreatePermission, ChannelBind
 * or Send may name. Special-purpose blocks come from the IANA IPv4 and IPv6 Special-Purpose Address
 * Registries (RFC 6890, RFC 8190), generated into peer_policy_iana.h from their CSV data
 * (common/iana/): every block not globally reachable is denied, the most specific block deciding,
 * so a globally reachable block inside a denied one (192.0.0.10/32 TURN anycast in 192.0.0.0/24)
 * stays allowed. On top: multicast (RFC 4291 §2.7, 224/4), site-local (RFC 3879) and the cloud
 * metadata endpoints. An IPv6 address that carries an IPv4 destination reaches that IPv4 host
 * through the kernel (mapped/compatible) or a translator or tunnel on the path (6to4 RFC 3056,
 * NAT64 RFC 6052/8215, Teredo RFC 4380 §4, ISATAP RFC 5214 §6.1), so the deny rules look at those
 * embedded addresses too. Pure functions: no I/O, no allocation, no state.
 */
#include <arpa/inet.h>
#include <assert.h>
#include <netinet/in.h>
#include <string.h>

#include "peer_policy.h"
#include "sockaddr_util.h"

/* peer_range_parse refuses anything longer: a rule is at most "[v6]/128" or "v6-v6" with spaces. */
#define PEER_RANGE_MAXLEN 128

/* ::ffff:0:0/96 (RFC 4291 §2.5.5.2). */
static const uint8_t v4mapped_prefix[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
/* ::/96, the deprecated IPv4-compatible block (RFC 4291 §2.5.5.1). */
static const uint8_t v4compat_prefix[12] = {0};
/* 64:ff9b::/96 (RFC 6052 §2.1) and 64:ff9b:1::/48 (RFC 8215). */
static const uint8_t nat64_wkp[12] = {0, 0x64, 0xff, 0x9b, 0, 0, 0, 0, 0, 0, 0, 0};
static const uint8_t nat64_local[6] = {0, 0x64, 0xff, 0x9b, 0, 1};

/* One block of the generated registry table: `cls` is the class it is denied under, 0 when it is
 * globally reachable. */
typedef struct {
    uint32_t net; /* host order */
    uint8_t bits;
    unsigned cls;
} peer_iana4_t;

typedef struct {
    uint64_t hi, lo; /* the network, host order halves */
    uint8_t bits;
    unsigned cls;
} peer_iana6_t;

#include "peer_policy_iana.h"
#include "util.h"
/* fd00:ec2::254, the AWS instance metadata service over IPv6. */
static const uint8_t aws_metadata6[16] = {0xfd, 0, 0x0e, 0xc2, 0, 0, 0,    0,
                                          0,    0, 0,    0,    0, 0, 0x02, 0x54};

/* Does the 16-byte IPv6 address carry an IPv4 destination the kernel sends to directly? :: and ::1
 * are excluded from the compatible block because they are the IPv6 unspecified and loopback
 * addresses, not 0.0.0.0 and 0.0.0.1. */
static int v6_is_v4(const uint8_t a[16])
{
    if (memcmp(a, v4mapped_prefix, 12) == 0)
        return 1;
    if (memcmp(a, v4compat_prefix, 12) != 0)
        return 0;
    return !(a[12] == 0 && a[13] == 0 && a[14] == 0 && a[15] <= 1);
}

static void set_v4(struct sockaddr_storage *out, const uint8_t ip[4], uint16_t port_net)
{
    struct sockaddr_in *sin = (struct sockaddr_in *)out;

    memset(out, 0, sizeof(*out));
    sin->sin_family = AF_INET;
    sin->sin_port = port_net;
    memcpy(&sin->sin_addr, ip, 4);
}

int peer_canonicalize(const struct sockaddr *in, struct sockaddr_storage *out)
{
    /* Work on a copy so `in` may point into `out`. */
    struct sockaddr_storage tmp;

    if (in->sa_family == AF_INET) {
        const struct sockaddr_in *sin = (const struct sockaddr_in *)in;
        set_v4(&tmp, (const uint8_t *)&sin->sin_addr, sin->sin_port); /* drops sin_zero junk */
        *out = tmp;
        return 0;
    }
    if (in->sa_family != AF_INET6) {
        memset(out, 0, sizeof(*out));
        return -1;
    }
    struct sockaddr_in6 sin6;
    memcpy(&sin6, in, sizeof(sin6));
    const uint8_t *a = sin6.sin6_addr.s6_addr;
    if (v6_is_v4(a)) {
        set_v4(out, a + 12, sin6.sin6_port);
        return 0;
    }
    /* A scope id would let a peer address pick an interface; STUN attributes never carry one. */
    sin6.sin6_scope_id = 0;
    memset(&tmp, 0, sizeof(tmp));
    memcpy(&tmp, &sin6, sizeof(sin6));
    *out = tmp;
    return 0;
}

/* Appends one embedded IPv4 address when there is room; returns the new count. */
static size_t add_v4(struct sockaddr_storage *out, size_t cap, size_t n, const uint8_t ip[4])
{
    if (n < cap)
        set_v4(&out[n], ip, 0);
    return n + 1;
}

/* ISATAP interface identifier (RFC 5214 §6.1): 0000:5efe or 0200:5efe (the u bit says whether the
 * IPv4 address is global), also with the g bit (0100 / 0300), then the IPv4 address. */
static int is_isatap(const uint8_t a[16])
{
    return (a[8] & 0xfc) == 0 && a[9] == 0 && a[10] == 0x5e && a[11] == 0xfe;
}

size_t peer_embedded_ipv4(const struct sockaddr *sa, struct sockaddr_storage *out, size_t cap)
{
    size_t n = 0;

    if (sa->sa_family != AF_INET6)
        return 0;
    const uint8_t *a = ((const struct sockaddr_in6 *)sa)->sin6_addr.s6_addr;
    if (a[0] == 0x20 && a[1] == 0x02) {
        /* 6to4 (RFC 3056 §2): 2002:V4ADDR::/48. */
        n = add_v4(out, cap, n, a + 2);
    } else if (memcmp(a, nat64_wkp, 12) == 0) {
        /* NAT64 well-known prefix (RFC 6052 §2.1): always a /96, the last 32 bits. */
        n = add_v4(out, cap, n, a + 12);
    } else if (memcmp(a, nat64_local, 6) == 0) {
        /* NAT64 local-use prefix (RFC 8215): the /48 or any longer prefix inside it, so every RFC
         * 6052 §2.2 layout that fits. Bits 64-71 (a[8], "u") never carry address bits. */
        const uint8_t l48[4] = {a[6], a[7], a[9], a[10]};
        const uint8_t l56[4] = {a[7], a[9], a[10], a[11]};
        n = add_v4(out, cap, n, l48);
        n = add_v4(out, cap, n, l56);
        n = add_v4(out, cap, n, a + 9);  /* /64 */
        n = add_v4(out, cap, n, a + 12); /* /96 */
    } else if (a[0] == 0x20 && a[1] == 0x01 && a[2] == 0 && a[3] == 0) {
        /* Teredo (RFC 4380 §4): 2001:0000:SERVER:flags:port:~CLIENT. Exactly 2001:0::/32, so
         * 2001:db8::/32 (documentation) and other 2001::/16 space are left alone. */
        uint8_t client[4];
        for (int i = 0; i < 4; i++)
            client[i] = (uint8_t)(a[12 + i] ^ 0xff);
        n = add_v4(out, cap, n, a + 4);
        n = add_v4(out, cap, n, client);
    }
    /* ISATAP works under any /64 prefix (a 6to4 or Teredo one too). */
    if (is_isatap(a))
        n = add_v4(out, cap, n, a + 12);
    /* Callers iterate over what was written, so never report more than that. */
    return n < cap ? n : cap;
}

/* The class of the most specific registry block holding the address (the table is sorted longest
 * prefix first), 0 when that block is globally reachable or none holds it. */
static unsigned iana4(uint32_t a)
{
    for (size_t i = 0; i < ARRAY_SIZE(peer_iana4); i++) {
        const peer_iana4_t *e = &peer_iana4[i];
        uint32_t mask = e->bits ? 0xffffffffu << (32 - e->bits) : 0;
        if ((a & mask) == e->net)
            return e->cls;
    }
    return 0;
}

static uint64_t mask64(unsigned bits)
{
    return bits == 0 ? 0 : bits >= 64 ? ~(uint64_t)0 : ~(uint64_t)0 << (64 - bits);
}

static unsigned iana6(const uint8_t a[16])
{
    uint64_t hi = 0, lo = 0;
    for (int i = 0; i < 8; i++) {
        hi = hi << 8 | a[i];
        lo = lo << 8 | a[8 + i];
    }
    for (size_t i = 0; i < ARRAY_SIZE(peer_iana6); i++) {
        const peer_iana6_t *e = &peer_iana6[i];
        unsigned lo_bits = e->bits > 64 ? e->bits - 64u : 0;
        if ((hi & mask64(e->bits)) == e->hi && (lo & mask64(lo_bits)) == e->lo)
            return e->cls;
    }
    return 0;
}

static unsigned classify4(const uint8_t ip[4])
{
    uint32_t a = (uint32_t)ip[0] << 24 | (uint32_t)ip[1] << 16 | (uint32_t)ip[2] << 8 | ip[3];
    unsigned c = iana4(a);

    /* Not in the special-purpose registry: multicast (RFC 5771) and the metadata services. */
    if ((a & 0xf0000000u) == 0xe0000000u)
        c |= PEER_CLASS_MULTICAST;
    if (a == 0xa9fea9feu || a == 0x646464c8u) /* 169.254.169.254, 100.100.100.200 */
        c |= PEER_CLASS_METADATA;
    return c;
}

static unsigned classify6(const uint8_t a[16])
{
    unsigned c = iana6(a);

    /* Not in the special-purpose registry: site-local, multicast, the AWS metadata service. */
    if (a[0] == 0xfe && (a[1] & 0xc0) == 0xc0)
        c |= PEER_CLASS_SITELOCAL;
    if (memcmp(a, aws_metadata6, 16) == 0)
        c |= PEER_CLASS_METADATA;
    if (a[0] == 0xff)
        c |= PEER_CLASS_MULTICAST;
    return c;
}

unsigned peer_classify(const struct sockaddr *sa)
{
    struct sockaddr_storage c;

    /* Canonicalising again is cheap and keeps a caller that forgot from classifying
     * ::ffff:127.0.0.1 as an ordinary IPv6 address. */
    if (peer_canonicalize(sa, &c) != 0)
        return 0;
    if (c.ss_family == AF_INET)
        return classify4((const uint8_t *)&((const struct sockaddr_in *)&c)->sin_addr);
    return classify6(((const struct sockaddr_in6 *)&c)->sin6_addr.s6_addr);
}

static int is_ws(char ch)
{
    return ch == ' ' || ch == '\t' || ch == '\r' || ch == '\n' || ch == '\v' || ch == '\f';
}

/* Copies s[0..n) without surrounding whitespace into buf (NUL-terminated). -1 when empty. */
static int trim_copy(const char *s, size_t n, char *buf, size_t cap)
{
    while (n > 0 && is_ws(s[0])) {
        s++;
        n--;
    }
    while (n > 0 && is_ws(s[n - 1]))
        n--;
    if (n == 0 || n >= cap)
        return -1;
    memcpy(buf, s, n);
    buf[n] = '\0';
    return 0;
}

/* One address of a rule, in canonical form: family and its 4 or 16 bytes. */
typedef struct {
    uint8_t family;
    uint8_t b[16];
} peer_ip_t;

static int parse_ip(const char *s, size_t n, peer_ip_t *ip)
{
    char buf[PEER_RANGE_MAXLEN + 1];
    struct sockaddr_storage ss;

    if (trim_copy(s, n, buf, sizeof(buf)) != 0 || sa_parse_ip(buf, 0, &ss) != 0)
        return -1;
    /* A rule must name the address peer_policy_check will see, so canonicalise it the same way. */
    if (peer_canonicalize((const struct sockaddr *)&ss, &ss) != 0)
        return -1;
    memset(ip, 0, sizeof(*ip));
    ip->family = (uint8_t)ss.ss_family;
    if (ss.ss_family == AF_INET)
        memcpy(ip->b, &((const struct sockaddr_in *)&ss)->sin_addr, 4);
    else
        memcpy(ip->b, ((const struct sockaddr_in6 *)&ss)->sin6_addr.s6_addr, 16);
    return 0;
}

static int parse_prefix(const char *s, size_t n, unsigned max, unsigned *out)
{
    char buf[8];
    unsigned v = 0;

    if (trim_copy(s, n, buf, sizeof(buf)) != 0 || strlen(buf) > 3)
        return -1;
    for (const char *p = buf; *p; p++) {
        if (*p < '0' || *p > '9')
            return -1;
        v = v * 10 + (unsigned)(*p - '0');
    }
    if (v > max)
        return -1;
    *out = v;
    return 0;
}

/* "IP/prefix": the prefix applies to the address as written, then the range is canonicalised.
 * Only a range lying wholly inside ::ffff:0:0/96 can become IPv4; a wider IPv6 prefix stays IPv6
 * and, since peer addresses are canonical, never matches an IPv4 destination. */
static int parse_cidr(const char *s, size_t slash, size_t n, peer_range_t *r)
{
    char buf[PEER_RANGE_MAXLEN + 1];
    struct sockaddr_storage ss;
    unsigned bits;
    size_t alen;

    if (trim_copy(s, slash, buf, sizeof(buf)) != 0 || sa_parse_ip(buf, 0, &ss) != 0)
        return -1;
    if (ss.ss_family == AF_INET) {
        alen = 4;
        memcpy(r->lo, &((const struct sockaddr_in *)&ss)->sin_addr, 4);
    } else {
        alen = 16;
        memcpy(r->lo, ((const struct sockaddr_in6 *)&ss)->sin6_addr.s6_addr, 16);
    }
    if (parse_prefix(s + slash + 1, n - slash - 1, (unsigned)alen * 8, &bits) != 0)
        return -1;
    for (size_t i = 0; i < alen; i++) {
        unsigned keep = bits >= 8 * (i + 1) ? 8 : bits > 8 * i ? bits - 8 * (unsigned)i : 0;
        uint8_t mask = (uint8_t)(0xff00u >> keep);
        r->lo[i] &= mask; /* host bits beyond the prefix are ignored, as in "10.1.2.3/8" */
        r->hi[i] = (uint8_t)(r->lo[i] | (uint8_t)~mask);
    }
    r->family = (uint8_t)ss.ss_family;
    /* A single address follows peer_canonicalize's rule exactly; a wider range converts only when
     * all of it is IPv4-mapped. */
    if (alen == 16 &&
        ((memcmp(r->lo, r->hi, 16) == 0 && v6_is_v4(r->lo)) ||
         (memcmp(r->lo, v4mapped_prefix, 12) == 0 && memcmp(r->hi, v4mapped_prefix, 12) == 0))) {
        memmove(r->lo, r->lo + 12, 4);
        memmove(r->hi, r->hi + 12, 4);
        memset(r->lo + 4, 0, 12);
        memset(r->hi + 4, 0, 12);
        r->family = AF_INET;
    }
    return 0;
}

int peer_range_parse(const char *s, peer_range_t *out)
{
    peer_range_t r;
    peer_ip_t lo, hi;
    size_t n = strnlen(s, PEER_RANGE_MAXLEN + 1);

    if (n > PEER_RANGE_MAXLEN)
        return -1;
    memset(&r, 0, sizeof(r));
    const char *slash = memchr(s, '/', n);
    const char *dash = memchr(s, '-', n);
    if (slash && dash)
        return -1;
    if (slash) {
        if (parse_cidr(s, (size_t)(slash - s), n, &r) != 0)
            return -1;
    } else if (dash) {
        size_t d = (size_t)(dash - s);
        if (parse_ip(s, d, &lo) != 0 || parse_ip(dash + 1, n - d - 1, &hi) != 0 ||
            lo.family != hi.family)
            return -1;
        size_t alen = lo.family == AF_INET ? 4 : 16;
        if (memcmp(lo.b, hi.b, alen) > 0) /* network byte order compares as numbers */
            return -1;
        r.family = lo.family;
        memcpy(r.lo, lo.b, alen);
        memcpy(r.hi, hi.b, alen);
    } else {
        if (parse_ip(s, n, &lo) != 0)
            return -1;
        r.family = lo.family;
        memcpy(r.lo, lo.b, 16);
        memcpy(r.hi, lo.b, 16);
    }
    *out = r;
    return 0;
}

int peer_range_contains(const peer_range_t *r, const struct sockaddr *sa)
{
    struct sockaddr_storage c;
    const uint8_t *a;
    size_t alen;

    if (peer_canonicalize(sa, &c) != 0 || c.ss_family != r->family)
        return 0;
    if (c.ss_family == AF_INET) {
        a = (const uint8_t *)&((const struct sockaddr_in *)&c)->sin_addr;
        alen = 4;
    } else {
        a = ((const struct sockaddr_in6 *)&c)->sin6_addr.s6_addr;
        alen = 16;
    }
    return memcmp(a, r->lo, alen) >= 0 && memcmp(a, r->hi, alen) <= 0;
}

static int denied(const peer_policy_t *p, const struct sockaddr *sa)
{
    if (peer_classify(sa) & p->deny_classes)
        return 1;
    for (size_t i = 0; i < p->ndeny; i++)
        if (peer_range_contains(&p->deny[i], sa))
            return 1;
    return 0;
}

int peer_policy_check(const peer_policy_t *p, const struct sockaddr *sa)
{
    struct sockaddr_storage c, emb[PEER_EMBEDDED_MAX];

    assert(p != NULL && sa != NULL);
    if (peer_canonicalize(sa, &c) != 0)
        return -1;
    const struct sockaddr *cs = (const struct sockaddr *)&c;
    /* An allow rule names a destination, so it matches the canonical address only: allowing
     * 127.0.0.1 for a test rig must not let 2002:7f00:1:: through as well. */
    for (size_t i = 0; i < p->nallow; i++)
        if (peer_range_contains(&p->allow[i], cs))
            return 0;
    if (denied(p, cs))
        return -1;
    /* RFC 8656 §21: a translator or tunnel on the path would deliver to the embedded IPv4
     * host, so judge it as if it had been named directly. */
    size_t n = peer_embedded_ipv4(cs, emb, ARRAY_SIZE(emb));
    for (size_t i = 0; i < n; i++)
        if (denied(p, (const struct sockaddr *)&emb[i]))
            return -1;
    return 0;
}
