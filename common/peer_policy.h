/* peer_policy.h - which peer addresses a TURN allocation may talk to.
 *
 * RFC 8656 §21 (security: relaying into private or internal networks), the IANA IPv4 and IPv6
 * Special-Purpose Address Registries (RFC 6890, RFC 8190; every block they mark not globally
 * reachable is denied, longest prefix first, from the generated common/peer_policy_iana.h), RFC
 * 4291 §2.5.5 (IPv4-mapped/-compatible), RFC 3056 (6to4), RFC 6052 and RFC 8215 (NAT64), RFC 4380
 * (Teredo), RFC 5214 (ISATAP). An address is canonicalised once: IPv4-mapped and IPv4-compatible
 * IPv6 addresses really are IPv4 destinations and become sockaddr_in. Deny rules are then checked
 * against the canonical address and against every IPv4 address embedded in it (6to4, NAT64,
 * Teredo, ISATAP), so "::ffff:127.0.0.1", "2002:7f00:1::" or "64:ff9b::7f00:1" cannot bypass a rule
 * written for 127.0.0.1. No I/O, no global state.
 */
#ifndef UTURN_PEER_POLICY_H
#define UTURN_PEER_POLICY_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

/* Classes of special addresses (bit set). */
enum peer_class {
    PEER_CLASS_LOOPBACK = 1 << 0,    /* 127/8, ::1 */
    PEER_CLASS_UNSPECIFIED = 1 << 1, /* 0.0.0.0/8 (this network), :: */
    PEER_CLASS_LINKLOCAL = 1 << 2,   /* 169.254/16, fe80::/10 */
    PEER_CLASS_MULTICAST = 1 << 3,   /* 224/4, ff00::/8 */
    PEER_CLASS_BROADCAST = 1 << 4,   /* 255.255.255.255, 240/4 reserved */
    PEER_CLASS_ULA = 1 << 5,         /* fc00::/7 */
    PEER_CLASS_METADATA = 1 << 6,    /* 169.254.169.254, fd00:ec2::254, 100.100.100.200 */
    PEER_CLASS_PRIVATE = 1 << 7,     /* 10/8, 172.16/12, 192.168/16 (RFC 1918) */
    PEER_CLASS_CGNAT = 1 << 8,       /* 100.64/10 (RFC 6598) */
    PEER_CLASS_SITELOCAL = 1 << 9,   /* fec0::/10 (deprecated) */
    /* Every other block the IANA special-purpose registries mark not globally reachable:
     * 192.0.0.0/24 (but 192.0.0.9 and .10), TEST-NET-1/2/3, 198.18.0.0/15, 100::/64, 2001::/23 (but
     * its globally reachable sub-blocks), 2001:db8::/32, 3fff::/20, 5f00::/16, 64:ff9b:1::/48 ...
     */
    PEER_CLASS_SPECIAL = 1 << 10,
};

/* Classes denied unless an allow rule matches. PRIVATE and CGNAT are a documented opt-in: denied by
 * default too (relaying into an operator's own network is the classic TURN abuse). SPECIAL has no
 * opt-in of its own: allowed-peer-ip names the blocks a deployment (or a test lab) really uses. */
#define PEER_CLASS_DENY_DEFAULT                                                                    \
    (PEER_CLASS_LOOPBACK | PEER_CLASS_UNSPECIFIED | PEER_CLASS_LINKLOCAL | PEER_CLASS_MULTICAST |  \
     PEER_CLASS_BROADCAST | PEER_CLASS_ULA | PEER_CLASS_METADATA | PEER_CLASS_PRIVATE |            \
     PEER_CLASS_CGNAT | PEER_CLASS_SITELOCAL | PEER_CLASS_SPECIAL)

/* Most IPv4 addresses one IPv6 address can carry (Teredo's two plus ISATAP, or NAT64 local-use's
 * four layouts plus ISATAP). */
#define PEER_EMBEDDED_MAX 6

/* Canonicalise: IPv4-mapped (::ffff:a.b.c.d) and IPv4-compatible (::a.b.c.d, except :: and ::1)
 * become a sockaddr_in with the same port; anything else is copied (scope id cleared). Returns 0,
 * or -1 for an unknown family. This is the address to send to. */
int peer_canonicalize(const struct sockaddr *in, struct sockaddr_storage *out);

/* IPv4 addresses embedded in a canonical IPv6 address: 6to4 (2002:AABB:CCDD::/16), NAT64 well-known
 * prefix (64:ff9b::/96, last 32 bits), NAT64 local-use prefix (64:ff9b:1::/48, RFC 8215: the
 * operator picks a /48, /56, /64 or /96 inside it, so the IPv4 address of each RFC 6052 §2.2 layout
 * is reported), Teredo (2001:0::/32: server at bits 32-63, client at bits 96-127 XOR 0xffffffff),
 * ISATAP (RFC 5214 §6.1: any prefix with interface id 0000:5efe, 0200:5efe, or the same with the
 * group bit, 0100:5efe / 0300:5efe, followed by the IPv4 address). Writes up to `cap` sockaddr_in
 * (port 0) and returns how many were written (at most PEER_EMBEDDED_MAX). */
size_t peer_embedded_ipv4(const struct sockaddr *sa, struct sockaddr_storage *out, size_t cap);

/* Classes of an already canonical address (0 for an ordinary public unicast address, or for a
 * globally reachable block of the special-purpose registries). */
unsigned peer_classify(const struct sockaddr *sa);

/* An inclusive address range of one family. */
typedef struct {
    uint8_t family;         /* AF_INET or AF_INET6 */
    uint8_t lo[16], hi[16]; /* network order; IPv4 uses the first 4 bytes */
} peer_range_t;

/* Parse "IP", "IP/prefix" or "IP-IP" (same family, lo <= hi). IPv4-mapped forms are canonicalised.
 * Returns 0 or -1 (with no partial result). */
int peer_range_parse(const char *s, peer_range_t *out);
/* 1 when the (canonical) address is inside the range. */
int peer_range_contains(const peer_range_t *r, const struct sockaddr *sa);

typedef struct {
    const peer_range_t *allow; /* checked first: a match allows */
    size_t nallow;
    const peer_range_t *deny; /* then explicit denies */
    size_t ndeny;
    unsigned deny_classes; /* then these classes (PEER_CLASS_DENY_DEFAULT minus opt-ins) */
} peer_policy_t;

/* 0 when relaying to `sa` is allowed, -1 when denied. Canonicalises first; an allow rule matching
 * the canonical address allows; otherwise a deny rule or a denied class matching the canonical
 * address or any embedded IPv4 address denies. A port of 0 is not judged here (CreatePermission
 * ignores ports); callers that send must refuse port 0 themselves. */
int peer_policy_check(const peer_policy_t *p, const struct sockaddr *sa);

#endif
