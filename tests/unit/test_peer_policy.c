/* test_peer_policy.c - unit tests of peer address canonicalisation and policy
 * (common/peer_policy.c).
 *
 * RFC 8656 §21 relay abuse: every known way of spelling a loopback, internal or metadata address
 * (IPv4-mapped and -compatible per RFC 4291 §2.5.5, 6to4 RFC 3056, NAT64 RFC 6052/8215, Teredo RFC
 * 4380 §4) must be denied by the default class set, ordinary public addresses allowed, and the
 * operator's allow/deny ranges must match the canonical address. Also the rule parser, good and bad
 * inputs. Addresses here are only parsed, never contacted.
 */
#include <arpa/inet.h>
#include <netinet/in.h>

#include "peer_policy.h"
#include "sockaddr_util.h"
#include "unit.h"
#include "util.h"

/* Parses an address literal; a typo in a table is a test bug, so it aborts the check loudly. */
static struct sockaddr_storage addr(const char *s, uint16_t port)
{
    struct sockaddr_storage ss;

    if (sa_parse_ip(s, port, &ss) != 0)
        fprintf(stderr, "test bug: cannot parse \"%s\"\n", s);
    CHECK_INT(ss.ss_family == AF_INET || ss.ss_family == AF_INET6, 1);
    return ss;
}

static const char *fmt(const struct sockaddr_storage *ss, char *buf)
{
    return sa_format((const struct sockaddr *)ss, buf, SA_STRLEN);
}

UNIT_TEST(canonicalize)
{
    static const struct {
        const char *in, *out; /* formatted with port */
    } cases[] = {
        {"1.2.3.4", "1.2.3.4:3478"},
        {"::ffff:1.2.3.4", "1.2.3.4:3478"},
        {"::ffff:127.0.0.1", "127.0.0.1:3478"},
        {"::1.2.3.4", "1.2.3.4:3478"}, /* IPv4-compatible */
        {"::127.0.0.1", "127.0.0.1:3478"},
        {"::2", "0.0.0.2:3478"}, /* compatible too: only :: and ::1 are excluded */
        {"::", "[::]:3478"},
        {"::1", "[::1]:3478"},
        {"::ffff:0:0", "0.0.0.0:3478"},
        {"2001:db8::1", "[2001:db8::1]:3478"},
        {"::fffe:1.2.3.4", "[::fffe:102:304]:3478"},
        {"0:0:0:1::1.2.3.4", "[::1:0:0:102:304]:3478"},
        {"2002:7f00:1::1", "[2002:7f00:1::1]:3478"}, /* 6to4 stays IPv6: a relay sends it there */
    };
    char buf[SA_STRLEN];

    for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
        struct sockaddr_storage in = addr(cases[i].in, 3478), out;
        CHECK_INT(peer_canonicalize((const struct sockaddr *)&in, &out), 0);
        CHECK_STR(fmt(&out, buf), cases[i].out);
        /* Canonical is a fixed point, and canonicalising in place works. */
        CHECK_INT(peer_canonicalize((const struct sockaddr *)&out, &out), 0);
        CHECK_STR(fmt(&out, buf), cases[i].out);
    }

    /* The scope id is dropped; the rest of the address and the port stay. */
    struct sockaddr_storage ll = addr("fe80::1", 9), out;
    ((struct sockaddr_in6 *)&ll)->sin6_scope_id = 7;
    CHECK_INT(peer_canonicalize((const struct sockaddr *)&ll, &out), 0);
    CHECK_INT(((struct sockaddr_in6 *)&out)->sin6_scope_id, 0);
    CHECK_STR(fmt(&out, buf), "[fe80::1]:9");

    struct sockaddr_storage unix_sa;
    memset(&unix_sa, 0, sizeof(unix_sa));
    unix_sa.ss_family = AF_UNIX;
    CHECK_INT(peer_canonicalize((const struct sockaddr *)&unix_sa, &out), -1);
    CHECK_INT(peer_classify((const struct sockaddr *)&unix_sa), 0);
}

UNIT_TEST(embedded)
{
    static const struct {
        const char *in;
        size_t n;
        const char *v4[PEER_EMBEDDED_MAX]; /* in the order reported */
    } cases[] = {
        {"2002:7f00:1::1", 1, {"127.0.0.1"}},
        {"2002:cb00:7109::", 1, {"203.0.113.9"}},
        {"64:ff9b::7f00:1", 1, {"127.0.0.1"}},
        {"64:ff9b::a00:1", 1, {"10.0.0.1"}},
        /* RFC 8215 local-use prefix: each RFC 6052 §2.2 layout (/48, /56, /64, /96). */
        {"64:ff9b:1::a9fe:a9fe", 4, {"0.0.0.0", "0.0.0.0", "0.0.0.169", "169.254.169.254"}},
        {"64:ff9b:1:0:7f:0:100:0", 4, {"0.0.127.0", "0.127.0.0", "127.0.0.1", "1.0.0.0"}},
        {"64:ff9b:1:a9fe:a9:fe00:800:0",
         4,
         {"169.254.169.254", "254.169.254.0", "169.254.0.8", "8.0.0.0"}},
        {"64:ff9b:1:c0:a8:100:0:0", 4, {"0.192.168.1", "192.168.1.0", "168.1.0.0", "0.0.0.0"}},
        {"2001:0:4136:e378:8000:63bf:80ff:fffe", 2, {"65.54.227.120", "127.0.0.1"}},
        {"2001:0:4136:e378:8000:63bf:3fff:fdd2", 2, {"65.54.227.120", "192.0.2.45"}},
        /* ISATAP (RFC 5214 §6.1) under any prefix, u and g bits in any state. */
        {"2606:4700:1:2:0:5efe:7f00:1", 1, {"127.0.0.1"}},
        {"2606:4700:1:2:200:5efe:c000:c0", 1, {"192.0.0.192"}},
        {"2606:4700:1:2:100:5efe:a9fe:a9fe", 1, {"169.254.169.254"}},
        {"2606:4700:1:2:300:5efe:a00:1", 1, {"10.0.0.1"}},
        {"fe80::5efe:c0a8:101", 1, {"192.168.1.1"}},
        {"2002:808:808:1:0:5efe:a00:1", 2, {"8.8.8.8", "10.0.0.1"}}, /* 6to4 and ISATAP */
        {"2606:4700:1:2:400:5efe:7f00:1", 0, {NULL}},                /* not an ISATAP id */
        {"2606:4700:1:2:0:5eff:7f00:1", 0, {NULL}},
        {"2001:db8::1", 0, {NULL}},           /* documentation, not Teredo */
        {"2001:1::7f00:1", 0, {NULL}},        /* 2001:1::/32 is not 2001:0::/32 */
        {"64:ff9b:0:0:1::7f00:1", 0, {NULL}}, /* outside 64:ff9b::/96 */
        {"64:ff9b:2::7f00:1", 0, {NULL}},     /* outside 64:ff9b:1::/48 */
        {"64:ff9a::7f00:1", 0, {NULL}},
        {"2003:7f00:1::", 0, {NULL}},
        {"::1", 0, {NULL}},
        {"127.0.0.1", 0, {NULL}}, /* IPv4 embeds nothing */
    };
    char buf[SA_STRLEN];

    for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
        struct sockaddr_storage in = addr(cases[i].in, 1), out[PEER_EMBEDDED_MAX];
        size_t n = peer_embedded_ipv4((const struct sockaddr *)&in, out, PEER_EMBEDDED_MAX);
        if (n != cases[i].n)
            fprintf(stderr, "embedded in %s\n", cases[i].in);
        CHECK_INT(n, cases[i].n);
        for (size_t k = 0; k < n && k < PEER_EMBEDDED_MAX; k++) {
            if (!cases[i].v4[k])
                continue;
            CHECK_STR(sa_format_ip((const struct sockaddr *)&out[k], buf, sizeof(buf)),
                      cases[i].v4[k]);
            CHECK_INT(sa_port((const struct sockaddr *)&out[k]), 0);
        }
    }

    /* A short output array is never overrun, and the count says what was written. */
    struct sockaddr_storage teredo = addr("2001:0:4136:e378:8000:63bf:80ff:fffe", 1), one[1];
    CHECK_INT(peer_embedded_ipv4((const struct sockaddr *)&teredo, one, 1), 1);
    CHECK_INT(peer_embedded_ipv4((const struct sockaddr *)&teredo, NULL, 0), 0);
    struct sockaddr_storage local = addr("64:ff9b:1:0:7f:0:100:0", 1), two[2];
    CHECK_INT(peer_embedded_ipv4((const struct sockaddr *)&local, two, 2), 2);
}

UNIT_TEST(classify)
{
    static const struct {
        const char *in;
        unsigned classes;
    } cases[] = {
        {"0.0.0.0", PEER_CLASS_UNSPECIFIED},
        {"0.255.255.255", PEER_CLASS_UNSPECIFIED},
        {"1.0.0.0", 0},
        {"126.255.255.255", 0},
        {"127.0.0.0", PEER_CLASS_LOOPBACK},
        {"127.255.255.255", PEER_CLASS_LOOPBACK},
        {"128.0.0.0", 0},
        {"169.253.255.255", 0},
        {"169.254.0.1", PEER_CLASS_LINKLOCAL},
        {"169.254.169.254", PEER_CLASS_LINKLOCAL | PEER_CLASS_METADATA},
        {"169.255.0.0", 0},
        {"100.63.255.255", 0},
        {"100.64.0.0", PEER_CLASS_CGNAT},
        {"100.127.255.255", PEER_CLASS_CGNAT},
        {"100.128.0.0", 0},
        {"100.100.100.200", PEER_CLASS_CGNAT | PEER_CLASS_METADATA},
        {"9.255.255.255", 0},
        {"10.0.0.0", PEER_CLASS_PRIVATE},
        {"10.255.255.255", PEER_CLASS_PRIVATE},
        {"11.0.0.0", 0},
        {"172.15.255.255", 0},
        {"172.16.0.0", PEER_CLASS_PRIVATE},
        {"172.31.255.255", PEER_CLASS_PRIVATE},
        {"172.32.0.0", 0},
        {"192.167.255.255", 0},
        {"192.168.0.0", PEER_CLASS_PRIVATE},
        {"192.168.255.255", PEER_CLASS_PRIVATE},
        {"192.169.0.0", 0},
        {"223.255.255.255", 0},
        {"224.0.0.0", PEER_CLASS_MULTICAST},
        {"239.255.255.255", PEER_CLASS_MULTICAST},
        {"240.0.0.0", PEER_CLASS_BROADCAST},
        {"255.255.255.255", PEER_CLASS_BROADCAST},
        {"203.0.113.5", PEER_CLASS_SPECIAL},
        {"8.8.8.8", 0},
        {"192.0.0.192", PEER_CLASS_SPECIAL},
        {"192.0.0.10", 0}, /* TURN anycast: globally reachable inside 192.0.0.0/24 */
        {"198.19.255.255", PEER_CLASS_SPECIAL},
        {"::", PEER_CLASS_UNSPECIFIED},
        {"::1", PEER_CLASS_LOOPBACK},
        {"::ffff:127.0.0.1", PEER_CLASS_LOOPBACK}, /* classify canonicalises defensively */
        {"fe80::", PEER_CLASS_LINKLOCAL},
        {"febf:ffff::1", PEER_CLASS_LINKLOCAL},
        {"fec0::1", PEER_CLASS_SITELOCAL},
        {"feff::1", PEER_CLASS_SITELOCAL},
        {"fe7f::1", 0},
        {"fbff::1", 0},
        {"fc00::1", PEER_CLASS_ULA},
        {"fdff:ffff::1", PEER_CLASS_ULA},
        {"fd00:ec2::254", PEER_CLASS_ULA | PEER_CLASS_METADATA},
        {"fd00:ec2::253", PEER_CLASS_ULA},
        {"ff02::1", PEER_CLASS_MULTICAST},
        {"ff0e::1", PEER_CLASS_MULTICAST},
        {"2001:db8::1", PEER_CLASS_SPECIAL},
        {"64:ff9b:1::1", PEER_CLASS_SPECIAL},
        {"64:ff9b::808:808", 0},
        {"5f00::1", PEER_CLASS_SPECIAL},
        {"2001:1::2", 0},
        {"2606:4700::1111", 0},
    };

    for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
        struct sockaddr_storage in = addr(cases[i].in, 1);
        unsigned got = peer_classify((const struct sockaddr *)&in);
        if (got != cases[i].classes)
            fprintf(stderr, "classify %s\n", cases[i].in);
        CHECK_INT(got, cases[i].classes);
    }
}

UNIT_TEST(range_parse)
{
    static const struct {
        const char *in;
        int rc, family;
        const char *lo, *hi;
    } cases[] = {
        {"1.2.3.4", 0, AF_INET, "1.2.3.4", "1.2.3.4"},
        {" \t1.2.3.4 \n", 0, AF_INET, "1.2.3.4", "1.2.3.4"},
        {"10.1.2.3/8", 0, AF_INET, "10.0.0.0", "10.255.255.255"},
        {"10.1.2.3 / 8", 0, AF_INET, "10.0.0.0", "10.255.255.255"},
        {"172.16.0.0/12", 0, AF_INET, "172.16.0.0", "172.31.255.255"},
        {"192.0.2.130/25", 0, AF_INET, "192.0.2.128", "192.0.2.255"},
        {"0.0.0.0/0", 0, AF_INET, "0.0.0.0", "255.255.255.255"},
        {"1.2.3.4/32", 0, AF_INET, "1.2.3.4", "1.2.3.4"},
        {"1.2.3.4/31", 0, AF_INET, "1.2.3.4", "1.2.3.5"},
        {"198.51.100.10-198.51.100.20", 0, AF_INET, "198.51.100.10", "198.51.100.20"},
        {"198.51.100.10 - 198.51.100.10", 0, AF_INET, "198.51.100.10", "198.51.100.10"},
        {"::1", 0, AF_INET6, "::1", "::1"},
        {"[::1]", 0, AF_INET6, "::1", "::1"},
        {"::/0", 0, AF_INET6, "::", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"},
        {"2001:db8::/32", 0, AF_INET6, "2001:db8::", "2001:db8:ffff:ffff:ffff:ffff:ffff:ffff"},
        {"[2001:db8:1:2::5]/63", 0, AF_INET6, "2001:db8:1:2::", "2001:db8:1:3:ffff:ffff:ffff:ffff"},
        {"2001:db8::1/127", 0, AF_INET6, "2001:db8::", "2001:db8::1"},
        {"2001:db8::1-2001:db8::ff", 0, AF_INET6, "2001:db8::1", "2001:db8::ff"},
        {"[2001:db8::1] - [2001:db8::ff]", 0, AF_INET6, "2001:db8::1", "2001:db8::ff"},
        {"fe80::1/10", 0, AF_INET6, "fe80::", "febf:ffff:ffff:ffff:ffff:ffff:ffff:ffff"},
        /* IPv4-mapped rules become IPv4, so they match the canonical peer address. */
        {"::ffff:1.2.3.4", 0, AF_INET, "1.2.3.4", "1.2.3.4"},
        {"[::ffff:1.2.3.4]", 0, AF_INET, "1.2.3.4", "1.2.3.4"},
        {"::ffff:10.0.0.0/104", 0, AF_INET, "10.0.0.0", "10.255.255.255"},
        {"::ffff:0:0/96", 0, AF_INET, "0.0.0.0", "255.255.255.255"},
        {"::ffff:1.2.3.4/128", 0, AF_INET, "1.2.3.4", "1.2.3.4"},
        {"::ffff:1.2.3.4-::ffff:1.2.3.9", 0, AF_INET, "1.2.3.4", "1.2.3.9"},
        {"::ffff:0:0/95", 0, AF_INET6, "::fffe:0:0", "::ffff:255.255.255.255"},
        {"::1.2.3.4", 0, AF_INET, "1.2.3.4", "1.2.3.4"}, /* compatible, like peer_canonicalize */
        {"::", 0, AF_INET6, "::", "::"},
        /* Bad. */
        {"1.2.3.4/33", -1, 0, NULL, NULL},
        {"::/129", -1, 0, NULL, NULL},
        {"1.2.3.4/1000", -1, 0, NULL, NULL},
        {"1.2.3.4/", -1, 0, NULL, NULL},
        {"/24", -1, 0, NULL, NULL},
        {"1.2.3.4/-1", -1, 0, NULL, NULL},
        {"1.2.3.4/+8", -1, 0, NULL, NULL},
        {"1.2.3.4/8 8", -1, 0, NULL, NULL},
        {"1.2.3.4/8/8", -1, 0, NULL, NULL},
        {"1.2.3.4-::1", -1, 0, NULL, NULL},
        {"::ffff:1.2.3.4-::1", -1, 0, NULL, NULL},
        {"5.5.5.5-1.1.1.1", -1, 0, NULL, NULL},
        {"::ffff:1.2.3.4-1.2.3.3", -1, 0, NULL, NULL},
        {"2001:db8::2-2001:db8::1", -1, 0, NULL, NULL},
        {"1.2.3.4-", -1, 0, NULL, NULL},
        {"-1.2.3.4", -1, 0, NULL, NULL},
        {"1.2.3.4-1.2.3.5-1.2.3.6", -1, 0, NULL, NULL},
        {"1.2.3.4/8-1.2.3.5", -1, 0, NULL, NULL},
        {"", -1, 0, NULL, NULL},
        {"   ", -1, 0, NULL, NULL},
        {"abc", -1, 0, NULL, NULL},
        {"1.2.3", -1, 0, NULL, NULL},
        {"1.2.3.4.5", -1, 0, NULL, NULL},
        {"256.1.1.1", -1, 0, NULL, NULL},
        {"1.2.3.4 5", -1, 0, NULL, NULL},
        {"[1.2.3.4]", -1, 0, NULL, NULL},
        {"[::1", -1, 0, NULL, NULL},
        {"::1]", -1, 0, NULL, NULL},
        {"fe80::1%eth0", -1, 0, NULL, NULL},
        {"localhost", -1, 0, NULL, NULL},
    };
    char buf[INET6_ADDRSTRLEN];

    for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
        peer_range_t r;
        memset(&r, 0xaa, sizeof(r));
        int rc = peer_range_parse(cases[i].in, &r);
        if (rc != cases[i].rc)
            fprintf(stderr, "parse \"%s\"\n", cases[i].in);
        CHECK_INT(rc, cases[i].rc);
        if (rc != 0) {
            CHECK_INT(r.family, 0xaa); /* no partial result */
            continue;
        }
        CHECK_INT(r.family, cases[i].family);
        CHECK_STR(inet_ntop(r.family, r.lo, buf, sizeof(buf)), cases[i].lo);
        CHECK_STR(inet_ntop(r.family, r.hi, buf, sizeof(buf)), cases[i].hi);
    }

    /* The length bound: 128 characters parse, 129 do not, whatever they hold. */
    char s[200];
    memset(s, ' ', sizeof(s));
    memcpy(s + 128 - 7, "1.2.3.4", 7);
    s[128] = '\0';
    peer_range_t r;
    CHECK_INT(peer_range_parse(s, &r), 0);
    memmove(s + 1, s, 129);
    s[0] = ' ';
    CHECK_INT(peer_range_parse(s, &r), -1);
    memset(s, '1', sizeof(s) - 1);
    s[sizeof(s) - 1] = '\0';
    CHECK_INT(peer_range_parse(s, &r), -1);
}

UNIT_TEST(range_contains)
{
    peer_range_t v4, v6;

    CHECK_INT(peer_range_parse("198.51.100.10-198.51.100.20", &v4), 0);
    CHECK_INT(peer_range_parse("2001:db8::/32", &v6), 0);
    static const struct {
        const char *in;
        int in_v4, in_v6;
    } cases[] = {
        {"198.51.100.9", 0, 0},
        {"198.51.100.10", 1, 0},
        {"198.51.100.15", 1, 0},
        {"198.51.100.20", 1, 0},
        {"198.51.100.21", 0, 0},
        {"::ffff:198.51.100.15", 1, 0}, /* the canonical address is what matches */
        {"2001:db8::1", 0, 1},
        {"2001:db8:ffff:ffff:ffff:ffff:ffff:ffff", 0, 1},
        {"2001:db9::", 0, 0},
        {"2001:db7:ffff::", 0, 0},
    };
    for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
        struct sockaddr_storage a = addr(cases[i].in, 1);
        if (peer_range_contains(&v4, (const struct sockaddr *)&a) != cases[i].in_v4 ||
            peer_range_contains(&v6, (const struct sockaddr *)&a) != cases[i].in_v6)
            fprintf(stderr, "contains %s\n", cases[i].in);
        CHECK_INT(peer_range_contains(&v4, (const struct sockaddr *)&a), cases[i].in_v4);
        CHECK_INT(peer_range_contains(&v6, (const struct sockaddr *)&a), cases[i].in_v6);
    }
}

/* 0 allowed, -1 denied, under the policy given. */
static int check(const peer_policy_t *p, const char *s)
{
    struct sockaddr_storage a = addr(s, 3478);
    return peer_policy_check(p, (const struct sockaddr *)&a);
}

static void check_table(const peer_policy_t *p, const char *name, const char *const *denied,
                        const char *const *allowed)
{
    for (; *denied; denied++) {
        if (check(p, *denied) != -1)
            fprintf(stderr, "%s: %s should be denied\n", name, *denied);
        CHECK_INT(check(p, *denied), -1);
    }
    for (; *allowed; allowed++) {
        if (check(p, *allowed) != 0)
            fprintf(stderr, "%s: %s should be allowed\n", name, *allowed);
        CHECK_INT(check(p, *allowed), 0);
    }
}

UNIT_TEST(policy_default)
{
    /* Every spelling of an internal destination we know of. */
    static const char *const denied[] = {
        "127.0.0.1",
        "127.1.2.3",
        "::ffff:127.0.0.1",
        "::127.0.0.1", /* IPv4-compatible */
        "0.0.0.0",
        "0.1.2.3",
        "::",
        "::1",
        "[::1]",
        "::ffff:0.0.0.0",
        "2002:7f00:0001::1",                    /* 6to4 of loopback */
        "2002:a9fe:a9fe::",                     /* 6to4 of the metadata service */
        "64:ff9b::7f00:1",                      /* NAT64 */
        "64:ff9b::a00:1",                       /* NAT64 of 10.0.0.1 */
        "64:ff9b:1::c0a8:101",                  /* RFC 8215 local-use NAT64 of 192.168.1.1 */
        "2001:0:4136:e378:8000:63bf:80ff:fffe", /* Teredo, client 127.0.0.1 */
        "2001:0:a00:1:8000:63bf:3fff:fdd2",     /* Teredo, server 10.0.0.1 */
        "169.254.169.254",
        "::ffff:169.254.169.254",
        "100.100.100.200",
        "fd00:ec2::254",
        "169.254.1.1",
        "224.0.0.1",
        "239.255.255.250",
        "ff02::1",
        "ff05::1:3",
        "255.255.255.255",
        "240.0.0.1",
        "fe80::1",
        "fec0::1",
        "fc00::1",
        "fd12:3456::1",
        "10.1.2.3",
        "172.16.0.1",
        "172.31.255.254",
        "192.168.1.1",
        "::ffff:192.168.1.1",
        "100.64.0.1",
        /* Not globally reachable per the IANA registries (issue 11, defect 7). */
        "203.0.113.5",
        "198.51.100.7",
        "192.0.2.1",
        "198.18.0.1",
        "192.0.0.192", /* a cloud metadata address inside 192.0.0.0/24 */
        "2001:db8::1",
        "2002:cb00:7105::1",                    /* 6to4 of 203.0.113.5 */
        "64:ff9b::cb00:7105",                   /* NAT64 of 203.0.113.5 */
        "2001:0:4136:e378:8000:63bf:3fff:fdd2", /* Teredo, client 192.0.2.45 */
        /* NAT64 local-use, RFC 6052 /64 and /48 layouts (the /48 is denied whole anyway). */
        "64:ff9b:1:0:7f:0:100:0",       /* 127.0.0.1 */
        "64:ff9b:1:a9fe:a9:fe00:800:0", /* 169.254.169.254 */
        "64:ff9b:1::808:808",           /* even a public IPv4 address: not globally reachable */
        NULL,
    };
    static const char *const allowed[] = {
        "8.8.8.8",
        "::ffff:8.8.8.8",
        "2606:4700:4700::1111",
        "2002:808:808::1",                      /* 6to4 of 8.8.8.8 */
        "64:ff9b::808:808",                     /* NAT64 of 8.8.8.8 */
        "2001:0:4136:e378:8000:63bf:f7f7:fbfb", /* Teredo, public server and client 8.8.4.4 */
        "192.0.0.9",                            /* PCP anycast */
        "192.0.0.10",                           /* TURN anycast */
        "172.32.0.1",
        "100.128.0.1",
        "11.0.0.1",
        NULL,
    };
    peer_policy_t p = {.deny_classes = PEER_CLASS_DENY_DEFAULT};

    check_table(&p, "default", denied, allowed);

    /* An unknown family is never relayed to. */
    struct sockaddr_storage unix_sa;
    memset(&unix_sa, 0, sizeof(unix_sa));
    unix_sa.ss_family = AF_UNIX;
    CHECK_INT(peer_policy_check(&p, (const struct sockaddr *)&unix_sa), -1);
}

UNIT_TEST(policy_rules)
{
    peer_range_t allow[2], deny[2];

    /* An operator allows 127.0.0.1 (a test rig): that address in any direct spelling passes, but
     * neither the rest of 127/8 nor the tunnelled forms do. */
    CHECK_INT(peer_range_parse("127.0.0.1", &allow[0]), 0);
    peer_policy_t p = {.allow = allow, .nallow = 1, .deny_classes = PEER_CLASS_DENY_DEFAULT};
    static const char *const d1[] = {"127.0.0.2",       "::1",     "2002:7f00:1::1",
                                     "64:ff9b::7f00:1", "0.0.0.0", NULL};
    static const char *const a1[] = {"127.0.0.1", "::ffff:127.0.0.1", "::127.0.0.1", "8.8.8.8",
                                     NULL};
    check_table(&p, "allow 127.0.0.1", d1, a1);

    /* The allow-loopback-peers opt-in removes one class; the others still hold. */
    peer_policy_t lo = {.deny_classes = PEER_CLASS_DENY_DEFAULT & ~PEER_CLASS_LOOPBACK};
    static const char *const d2[] = {"0.0.0.0",         "::",        "10.0.0.1",
                                     "169.254.169.254", "192.0.2.1", NULL};
    static const char *const a2[] = {"127.0.0.1",        "127.9.9.9",      "::1",
                                     "::ffff:127.0.0.1", "2002:7f00:1::1", NULL};
    check_table(&lo, "allow loopback class", d2, a2);

    /* The private-relay opt-ins: RFC 1918 and CGNAT allowed, metadata still not. */
    peer_policy_t priv = {.deny_classes =
                              PEER_CLASS_DENY_DEFAULT & ~(PEER_CLASS_PRIVATE | PEER_CLASS_CGNAT)};
    static const char *const d3[] = {"100.100.100.200", "169.254.169.254", "127.0.0.1",
                                     "198.18.0.1", NULL};
    static const char *const a3[] = {"10.1.2.3", "192.168.1.1", "100.64.0.1", "64:ff9b::a00:1",
                                     NULL};
    check_table(&priv, "allow private", d3, a3);

    /* Explicit deny ranges catch every spelling of the destination too. */
    CHECK_INT(peer_range_parse("8.8.8.0/24", &deny[0]), 0);
    CHECK_INT(peer_range_parse("1.1.1.10-1.1.1.20", &deny[1]), 0);
    peer_policy_t dp = {.deny = deny, .ndeny = 2, .deny_classes = PEER_CLASS_DENY_DEFAULT};
    static const char *const d4[] = {
        "8.8.8.9",          "8.8.8.0",
        "8.8.8.255",        "::ffff:8.8.8.9",
        "2002:808:809::1",                                    /* 6to4 of 8.8.8.9 */
        "64:ff9b::808:809", "2606:4700:1:2:200:5efe:808:809", /* ISATAP of 8.8.8.9 */
        "1.1.1.10",         "1.1.1.15",
        "1.1.1.20",         NULL};
    static const char *const a4[] = {
        "8.8.9.1", "8.8.7.255", "1.1.1.9", "1.1.1.21", "2606:4700:4700::1111", NULL};
    check_table(&dp, "deny ranges", d4, a4);

    /* An allow rule beats both explicit denies and classes. */
    CHECK_INT(peer_range_parse("8.8.8.9", &allow[0]), 0);
    CHECK_INT(peer_range_parse("10.0.0.0/8", &allow[1]), 0);
    peer_policy_t both = {.allow = allow,
                          .nallow = 2,
                          .deny = deny,
                          .ndeny = 2,
                          .deny_classes = PEER_CLASS_DENY_DEFAULT};
    static const char *const d5[] = {"8.8.8.8", "192.168.0.1", "64:ff9b::a00:1", NULL};
    static const char *const a5[] = {"8.8.8.9", "::ffff:8.8.8.9", "10.2.3.4", NULL};
    check_table(&both, "allow over deny", d5, a5);

    /* No classes at all: only explicit rules deny. */
    peer_policy_t none = {.deny_classes = 0};
    static const char *const d6[] = {NULL};
    static const char *const a6[] = {"127.0.0.1", "::", "ff02::1", NULL};
    check_table(&none, "no classes", d6, a6);
}

/* Formats the first or last address of a CIDR block written in a table below. */
static const char *block_end(const char *cidr, int last, char *buf, size_t cap)
{
    peer_range_t r;

    if (peer_range_parse(cidr, &r) != 0)
        fprintf(stderr, "test bug: cannot parse \"%s\"\n", cidr);
    CHECK_INT(r.family == AF_INET || r.family == AF_INET6, 1);
    return inet_ntop(r.family, last ? r.hi : r.lo, buf, (socklen_t)cap);
}

/* Every block of the IANA IPv4 and IPv6 Special-Purpose Address Registries, written here by hand
 * (not read from the generated table, so a generator bug shows): the first and last address of
 * each not-globally-reachable block is denied, of each globally reachable block inside one
 * allowed. */
UNIT_TEST(registry_blocks)
{
    static const char *const denied[] = {
        "0.0.0.0/8",      "0.0.0.0/32",     "10.0.0.0/8",         "100.64.0.0/10",
        "127.0.0.0/8",    "169.254.0.0/16", "172.16.0.0/12",      "192.0.0.0/24",
        "192.0.0.0/29",   "192.0.0.8/32",   "192.0.0.11/32",      "192.0.0.170/32",
        "192.0.0.171/32", "192.0.0.192/32", "192.0.2.0/24",       "192.88.99.0/24",
        "192.88.99.2/32", "192.168.0.0/16", "198.18.0.0/15",      "198.51.100.0/24",
        "203.0.113.0/24", "240.0.0.0/4",    "255.255.255.255/32", "::1/128",
        "::/128",         "::ffff:0:0/96",  "64:ff9b:1::/48",     "100::/64",
        "100:0:0:1::/64", "2001::/23",      "2001:1::/128",       "2001:1::4/128",
        "2001:2::/48",    "2001:10::/28",   "2001:db8::/32",      "3fff::/20",
        "5f00::/16",      "fc00::/7",       "fe80::/10",          NULL,
    };
    static const char *const allowed[] = {
        "192.0.0.9/32",
        "192.0.0.10/32",
        "192.31.196.0/24",
        "192.52.193.0/24",
        "192.175.48.0/24",
        "2001:1::1/128",
        "2001:1::2/128",
        "2001:1::3/128",
        "2001:3::/32",
        "2001:4:112::/48",
        "2001:20::/28",
        "2001:30::/28",
        "2620:4f:8000::/48",
        /* Just outside denied blocks. */
        "198.17.255.255/32",
        "198.20.0.0/32",
        "192.0.1.255/32",
        "192.0.3.0/32",
        "198.51.99.255/32",
        "198.51.101.0/32",
        "203.0.112.255/32",
        "203.0.114.0/32",
        "2001:200::/32",
        "2001:db7:ffff::/48",
        "2001:db9::/32",
        "3fff:1000::/20",
        "5eff:ffff::/32",
        "5f01::/16",
        "100:0:0:2::/64",
        "64:ff9b:2::/48",
        NULL,
    };
    peer_policy_t p = {.deny_classes = PEER_CLASS_DENY_DEFAULT};
    char buf[INET6_ADDRSTRLEN];

    for (const char *const *b = denied; *b; b++)
        for (int last = 0; last < 2; last++) {
            const char *a = block_end(*b, last, buf, sizeof(buf));
            if (check(&p, a) != -1)
                fprintf(stderr, "registry: %s (of %s) should be denied\n", a, *b);
            CHECK_INT(check(&p, a), -1);
        }
    for (const char *const *b = allowed; *b; b++)
        for (int last = 0; last < 2; last++) {
            const char *a = block_end(*b, last, buf, sizeof(buf));
            if (check(&p, a) != 0)
                fprintf(stderr, "registry: %s (of %s) should be allowed\n", a, *b);
            CHECK_INT(check(&p, a), 0);
        }

    /* 64:ff9b::/96, 6to4 and Teredo are judged by the IPv4 address they carry; so is ISATAP. The
     * IPv4-mapped and -compatible forms are that IPv4 address. */
    static const char *const d[] = {
        "64:ff9b::c000:c0",                     /* NAT64 of 192.0.0.192 */
        "64:ff9b::c612:1",                      /* NAT64 of 198.18.0.1 */
        "64:ff9b::",                            /* 0.0.0.0 */
        "2002:c000:c0::1",                      /* 6to4 of 192.0.0.192 */
        "2002:c612:1::",                        /* 6to4 of 198.18.0.1 */
        "2002:c633:6401::",                     /* 6to4 of 198.51.100.1 */
        "2001:0:808:808:8000:63bf:34ff:8ef6",   /* Teredo, client 203.0.113.9 */
        "2001:0:c633:6401:8000:63bf:f7f7:f7f7", /* Teredo, server 198.51.100.1 */
        "2606:4700:1:2:0:5efe:c000:c0",         /* ISATAP 0000:5efe of 192.0.0.192 */
        "2606:4700:1:2:200:5efe:7f00:1",        /* ISATAP 0200:5efe of 127.0.0.1 */
        "2606:4700:1:2:100:5efe:a9fe:a9fe",     /* ISATAP 0100:5efe of 169.254.169.254 */
        "2606:4700:1:2:300:5efe:a00:1",         /* ISATAP 0300:5efe of 10.0.0.1 */
        "2606:4700:1:2:200:5efe:cb00:7109",     /* ISATAP of 203.0.113.9 */
        "::ffff:192.0.0.192",
        "::ffff:198.18.0.1",
        "::ffff:203.0.113.5",
        "::198.18.0.1",
        NULL,
    };
    static const char *const a[] = {
        "64:ff9b::c000:a",                    /* NAT64 of 192.0.0.10 (TURN anycast) */
        "2002:c000:a::",                      /* 6to4 of 192.0.0.10 */
        "2001:0:808:808:8000:63bf:f7f7:fbfb", /* Teredo 8.8.8.8 / 8.8.4.4 */
        "2606:4700:1:2:200:5efe:808:808",     /* ISATAP of 8.8.8.8 */
        "2606:4700:1:2:400:5efe:7f00:1",      /* 0400:5efe is not an ISATAP id */
        "::ffff:192.0.0.10",
        NULL,
    };
    check_table(&p, "embedded", d, a);
}

/* allowed-peer-ip can opt in to any of the registry blocks (a test lab in 198.18.0.0/15 and
 * TEST-NET-3, documentation IPv6, even the local-use NAT64 prefix); the rest stays denied, and so
 * do tunnelled forms of the allowed addresses. An allow rule names destinations the operator
 * trusts as written: allowing 64:ff9b:1::/48 (their own NAT64) allows all of it, whatever IPv4
 * address its translator would reach, as allowing 64:ff9b::/96 always did. */
UNIT_TEST(policy_optin)
{
    static const char *const rules[] = {"198.18.0.0/15", "203.0.113.0/24", "2001:db8::/32",
                                        "64:ff9b:1::/48", "192.0.0.192"};
    peer_range_t allow[5];

    for (size_t i = 0; i < 5; i++)
        CHECK_INT(peer_range_parse(rules[i], &allow[i]), 0);
    peer_policy_t p = {.allow = allow, .nallow = 5, .deny_classes = PEER_CLASS_DENY_DEFAULT};
    static const char *const d[] = {"198.51.100.1", "192.0.2.1",        "192.0.0.191",
                                    "3fff::1",      "2002:cb00:710a::", "64:ff9b::cb00:710a",
                                    "127.0.0.1",    "10.0.0.1",         NULL};
    static const char *const a[] = {"198.18.1.2",
                                    "198.19.255.255",
                                    "203.0.113.10",
                                    "::ffff:203.0.113.10",
                                    "2001:db8::1",
                                    "64:ff9b:1::808:808",
                                    "64:ff9b:1:0:7f:0:100:0",
                                    "192.0.0.192",
                                    "8.8.8.8",
                                    NULL};
    check_table(&p, "allowed-peer-ip opt-in", d, a);
}

UNIT_MAIN("test_peer_policy")
