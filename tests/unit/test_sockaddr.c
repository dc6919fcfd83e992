/* test_sockaddr.c - unit tests of sa_parse_hostport (common/sockaddr_util.c), the one parser of
 * "host:port" config values (alternate-server, tls-alternate-server, admin-listen).
 *
 * Table-driven: every accepted form with the address and port it yields, and every refused form.
 * The rules it pins: PORT is 1-65535 in decimal digits only (no sign, no spaces, nothing after it);
 * brackets hold an IPv6 address only; two or more colons without brackets are a bare IPv6 address
 * with the default port, so "::1:80" is the address ::1:80, not ::1 port 80.
 */
#include <arpa/inet.h>
#include <stdint.h>
#include <string.h>

#include "sockaddr_util.h"
#include "unit.h"

#define DEF 3478

static const struct {
    const char *in;
    const char *addr; /* the address it must yield, for inet_pton */
    int family;
    uint16_t port;
} accepted[] = {
    {"1.2.3.4", "1.2.3.4", AF_INET, DEF},
    {"1.2.3.4:80", "1.2.3.4", AF_INET, 80},
    {"1.2.3.4:1", "1.2.3.4", AF_INET, 1},
    {"1.2.3.4:65535", "1.2.3.4", AF_INET, 65535},
    {"1.2.3.4:00080", "1.2.3.4", AF_INET, 80}, /* leading zeros are still decimal digits */
    {"0.0.0.0:9", "0.0.0.0", AF_INET, 9},
    {"[::1]", "::1", AF_INET6, DEF},
    {"[::1]:80", "::1", AF_INET6, 80},
    {"[2001:db8::7]:65535", "2001:db8::7", AF_INET6, 65535},
    {"::1", "::1", AF_INET6, DEF},
    {"2001:db8::1", "2001:db8::1", AF_INET6, DEF},
    {"::1:80", "::1:80", AF_INET6, DEF}, /* bare IPv6: the ":80" is part of the address */
    {"::ffff:1.2.3.4", "::ffff:1.2.3.4", AF_INET6, DEF},
    {"[::ffff:1.2.3.4]:5", "::ffff:1.2.3.4", AF_INET6, 5},
};

static const char *const refused[] = {
    "",
    " ",
    ":80",
    "1.2.3.4:",
    "1.2.3.4:0",
    "1.2.3.4:65536",
    "1.2.3.4:99999",
    "1.2.3.4:123456",
    "1.2.3.4:000080", /* at most 5 digits, leading zeros included */
    "1.2.3.4:+80",
    "1.2.3.4:-80",
    "1.2.3.4: 80",
    "1.2.3.4:80 ",
    "1.2.3.4 :80",
    " 1.2.3.4:80",
    "1.2.3.4:80x",
    "1.2.3.4:0x50",
    "1.2.3.4:8 0",
    "1.2.3.4:80:81",
    "1.2.3",
    "1.2.3.256",
    "1.2.3.4.5",
    "example.com",
    "example.com:80",
    "localhost:80", /* host names are the caller's business (admin-listen maps "localhost") */
    "[::1]:x",
    "[::1]:",
    "[::1]:0",
    "[::1]:65536",
    "[::1]:+80",
    "[::1]80",
    "[::1] :80",
    "[::1",
    "[::1:80",
    "::1]",
    "[]",
    "[]:80",
    "[1.2.3.4]", /* brackets hold IPv6 only */
    "[1.2.3.4]:80",
    "[::g]",
    "::1 ",
    "[fe80::1%eth0]:80",
    "[0000:0000:0000:0000:0000:0000:0000:0000:0000:0000:0001]:80", /* too long */
};

UNIT_TEST(accepted)
{
    for (size_t i = 0; i < sizeof(accepted) / sizeof(accepted[0]); i++) {
        struct sockaddr_storage ss;
        int rc = sa_parse_hostport(accepted[i].in, DEF, &ss);
        if (rc != 0)
            fprintf(stderr, "refused: '%s'\n", accepted[i].in);
        CHECK_INT(rc, 0);
        CHECK_INT(ss.ss_family, accepted[i].family);
        CHECK_INT(sa_port((struct sockaddr *)&ss), accepted[i].port);
        /* compare bytes: inet_ntop writes ::1:80 as "::0.1.0.128" */
        uint8_t want[16];
        size_t n;
        const uint8_t *got = sa_ip_bytes((struct sockaddr *)&ss, &n);
        CHECK_INT(inet_pton(accepted[i].family, accepted[i].addr, want), 1);
        CHECK(got && memcmp(got, want, n) == 0);
        CHECK_INT(n, accepted[i].family == AF_INET ? 4 : 16);
    }
}

UNIT_TEST(refused)
{
    for (size_t i = 0; i < sizeof(refused) / sizeof(refused[0]); i++) {
        struct sockaddr_storage ss;
        memset(&ss, 0xAB, sizeof(ss));
        int rc = sa_parse_hostport(refused[i], DEF, &ss);
        if (rc != -1)
            fprintf(stderr, "accepted: '%s'\n", refused[i]);
        CHECK_INT(rc, -1);
        CHECK_INT(ss.ss_family, 0); /* zeroed on failure */
    }
}

/* The default port is the caller's. */
UNIT_TEST(default_port)
{
    struct sockaddr_storage ss;
    CHECK_INT(sa_parse_hostport("127.0.0.1", 8089, &ss), 0);
    CHECK_INT(sa_port((struct sockaddr *)&ss), 8089);
    CHECK_INT(sa_parse_hostport("[::1]", 1, &ss), 0);
    CHECK_INT(sa_port((struct sockaddr *)&ss), 1);
}

/* sa_parse_port, also redis-userdb's port rule: counted bytes, digits only. */
UNIT_TEST(parse_port)
{
    uint16_t port = 7;
    CHECK_INT(sa_parse_port("6379/0", 4, &port), 0);
    CHECK_INT(port, 6379);
    CHECK_INT(sa_parse_port("65535", 5, &port), 0);
    CHECK_INT(port, 65535);
    static const char *const bad_ports[] = {"",    "0",   "65536", "+80",   "-1",
                                            " 80", "80 ", "8a",    "000080"};
    for (size_t i = 0; i < sizeof(bad_ports) / sizeof(bad_ports[0]); i++) {
        port = 7;
        CHECK_INT(sa_parse_port(bad_ports[i], strlen(bad_ports[i]), &port), -1);
        CHECK_INT(port, 7); /* untouched on failure */
    }
}

UNIT_MAIN("test_sockaddr")
