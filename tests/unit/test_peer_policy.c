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

static void test_canonicalize(void)
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

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
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

static void test_embedded(void)
{
    static const struct {
        const char *in;
        size_t n;
        const char *a, *b;
    } cases[] = {
        {"2002:7f00:1::1", 1, "127.0.0.1", NULL},
        {"2002:cb00:7109::", 1, "203.0.113.9", NULL},
        {"64:ff9b::7f00:1", 1, "127.0.0.1", NULL},
        {"64:ff9b::a00:1", 1, "10.0.0.1", NULL},
        {"64:ff9b:1::a9fe:a9fe", 1, "169.254.169.254", NULL}, /* RFC 8215 local-use prefix */
        {"2001:0:4136:e378:8000:63bf:80ff:fffe", 2, "65.54.227.120", "127.0.0.1"},
        {"2001:0:4136:e378:8000:63bf:3fff:fdd2", 2, "65.54.227.120", "192.0.2.45"},
        {"2001:db8::1", 0, NULL, NULL},           /* documentation, not Teredo */
        {"2001:1::7f00:1", 0, NULL, NULL},        /* 2001:1::/32 is not 2001:0::/32 */
        {"64:ff9b:0:0:1::7f00:1", 0, NULL, NULL}, /* outside 64:ff9b::/96 */
        {"64:ff9a::7f00:1", 0, NULL, NULL},
        {"2003:7f00:1::", 0, NULL, NULL},
        {"::1", 0, NULL, NULL},
        {"127.0.0.1", 0, NULL, NULL}, /* IPv4 embeds nothing */
    };
    char buf[SA_STRLEN];

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct sockaddr_storage in = addr(cases[i].in, 1), out[4];
        size_t n = peer_embedded_ipv4((const struct sockaddr *)&in, out, 4);
        if (n != cases[i].n)
            fprintf(stderr, "embedded in %s\n", cases[i].in);
        CHECK_INT(n, cases[i].n);
        if (n >= 1 && cases[i].a)
            CHECK_STR(sa_format_ip((const struct sockaddr *)&out[0], buf, sizeof(buf)), cases[i].a);
        if (n >= 2 && cases[i].b)
            CHECK_STR(sa_format_ip((const struct sockaddr *)&out[1], buf, sizeof(buf)), cases[i].b);
        for (size_t k = 0; k < n; k++)
            CHECK_INT(sa_port((const struct sockaddr *)&out[k]), 0);
    }

    /* A short output array is never overrun, and the count says what was written. */
    struct sockaddr_storage teredo = addr("2001:0:4136:e378:8000:63bf:80ff:fffe", 1), one[1];
    CHECK_INT(peer_embedded_ipv4((const struct sockaddr *)&teredo, one, 1), 1);
    CHECK_INT(peer_embedded_ipv4((const struct sockaddr *)&teredo, NULL, 0), 0);
}

static void test_classify(void)
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
        {"203.0.113.5", 0},
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
        {"2001:db8::1", 0},
        {"2606:4700::1111", 0},
    };

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct sockaddr_storage in = addr(cases[i].in, 1);
        unsigned got = peer_classify((const struct sockaddr *)&in);
        if (got != cases[i].classes)
            fprintf(stderr, "classify %s\n", cases[i].in);
        CHECK_INT(got, cases[i].classes);
    }
}

static void test_range_parse(void)
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

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
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

static void test_range_contains(void)
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
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
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

static void test_policy_default(void)
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
        NULL,
    };
    static const char *const allowed[] = {
        "203.0.113.5",
        "198.51.100.7",
        "2001:db8::1", /* 2001:db8::/32 is documentation space, not Teredo */
        "8.8.8.8",
        "::ffff:8.8.8.8",
        "2606:4700:4700::1111",
        "2002:cb00:7105::1",                    /* 6to4 of 203.0.113.5 */
        "64:ff9b::cb00:7105",                   /* NAT64 of 203.0.113.5 */
        "2001:0:4136:e378:8000:63bf:3fff:fdd2", /* Teredo, public server and client */
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

static void test_policy_rules(void)
{
    peer_range_t allow[2], deny[2];

    /* An operator allows 127.0.0.1 (a test rig): that address in any direct spelling passes, but
     * neither the rest of 127/8 nor the tunnelled forms do. */
    CHECK_INT(peer_range_parse("127.0.0.1", &allow[0]), 0);
    peer_policy_t p = {.allow = allow, .nallow = 1, .deny_classes = PEER_CLASS_DENY_DEFAULT};
    static const char *const d1[] = {"127.0.0.2",       "::1",     "2002:7f00:1::1",
                                     "64:ff9b::7f00:1", "0.0.0.0", NULL};
    static const char *const a1[] = {"127.0.0.1", "::ffff:127.0.0.1", "::127.0.0.1", "203.0.113.5",
                                     NULL};
    check_table(&p, "allow 127.0.0.1", d1, a1);

    /* The allow-loopback-peers opt-in removes one class; the others still hold. */
    peer_policy_t lo = {.deny_classes = PEER_CLASS_DENY_DEFAULT & ~PEER_CLASS_LOOPBACK};
    static const char *const d2[] = {"0.0.0.0", "::", "10.0.0.1", "169.254.169.254", NULL};
    static const char *const a2[] = {"127.0.0.1",        "127.9.9.9",      "::1",
                                     "::ffff:127.0.0.1", "2002:7f00:1::1", NULL};
    check_table(&lo, "allow loopback class", d2, a2);

    /* The private-relay opt-ins: RFC 1918 and CGNAT allowed, metadata still not. */
    peer_policy_t priv = {.deny_classes =
                              PEER_CLASS_DENY_DEFAULT & ~(PEER_CLASS_PRIVATE | PEER_CLASS_CGNAT)};
    static const char *const d3[] = {"100.100.100.200", "169.254.169.254", "127.0.0.1", NULL};
    static const char *const a3[] = {"10.1.2.3", "192.168.1.1", "100.64.0.1", "64:ff9b::a00:1",
                                     NULL};
    check_table(&priv, "allow private", d3, a3);

    /* Explicit deny ranges catch every spelling of the destination too. */
    CHECK_INT(peer_range_parse("203.0.113.0/24", &deny[0]), 0);
    CHECK_INT(peer_range_parse("198.51.100.10-198.51.100.20", &deny[1]), 0);
    peer_policy_t dp = {.deny = deny, .ndeny = 2, .deny_classes = PEER_CLASS_DENY_DEFAULT};
    static const char *const d4[] = {"203.0.113.9",
                                     "203.0.113.0",
                                     "203.0.113.255",
                                     "::ffff:203.0.113.9",
                                     "2002:cb00:7109::1", /* 6to4 of 203.0.113.9 */
                                     "64:ff9b::cb00:7109",
                                     "198.51.100.10",
                                     "198.51.100.15",
                                     "198.51.100.20",
                                     NULL};
    static const char *const a4[] = {"203.0.114.1",   "203.0.112.255", "198.51.100.9",
                                     "198.51.100.21", "2001:db8::1",   NULL};
    check_table(&dp, "deny ranges", d4, a4);

    /* An allow rule beats both explicit denies and classes. */
    CHECK_INT(peer_range_parse("203.0.113.9", &allow[0]), 0);
    CHECK_INT(peer_range_parse("10.0.0.0/8", &allow[1]), 0);
    peer_policy_t both = {.allow = allow,
                          .nallow = 2,
                          .deny = deny,
                          .ndeny = 2,
                          .deny_classes = PEER_CLASS_DENY_DEFAULT};
    static const char *const d5[] = {"203.0.113.8", "192.168.0.1", "64:ff9b::a00:1", NULL};
    static const char *const a5[] = {"203.0.113.9", "::ffff:203.0.113.9", "10.2.3.4", NULL};
    check_table(&both, "allow over deny", d5, a5);

    /* No classes at all: only explicit rules deny. */
    peer_policy_t none = {.deny_classes = 0};
    static const char *const d6[] = {NULL};
    static const char *const a6[] = {"127.0.0.1", "::", "ff02::1", NULL};
    check_table(&none, "no classes", d6, a6);
}

int main(void)
{
    test_canonicalize();
    test_embedded();
    test_classify();
    test_range_parse();
    test_range_contains();
    test_policy_default();
    test_policy_rules();
    return unit_done("test_peer_policy");
}
