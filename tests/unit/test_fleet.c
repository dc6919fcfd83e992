/* test_fleet.c - unit tests of the fleet's JSON forms (server/fleet/fleet_json.c): a registry
 * entry and a revocation event, encoded and decoded back, and the decoders against what a hostile
 * client of the same Redis could write (oversize, wrong types, missing fields, bad alphabets,
 * embedded NULs, duplicate keys).
 */
#include <stdio.h>
#include <string.h>

#include "fleet.h"
#include "unit.h"

static const char INST[] = "0123456789abcdef0123456789abcdef";

static fleet_node_t sample_node(void)
{
    fleet_node_t n;
    memset(&n, 0, sizeof(n));
    snprintf(n.id, sizeof(n.id), "node-a.1_x");
    snprintf(n.instance, sizeof(n.instance), "%s", INST);
    snprintf(n.version, sizeof(n.version), "0.9.0");
    n.allocations = 42;
    n.quota = 1000;
    n.bps = 123456789;
    n.cpu = 0.25;
    n.draining = true;
    n.started_ms = 1700000000000;
    n.ts_ms = 1700000001000;
    n.naddr[FLEET_UDP] = 2;
    snprintf(n.addr[FLEET_UDP][0], FLEET_ADDR_MAX, "192.0.2.1:3478");
    snprintf(n.addr[FLEET_UDP][1], FLEET_ADDR_MAX, "[2001:db8::1]:3478");
    n.naddr[FLEET_TLS] = 1;
    snprintf(n.addr[FLEET_TLS][0], FLEET_ADDR_MAX, "192.0.2.1:5349");
    return n;
}

UNIT_TEST(node_round_trip)
{
    fleet_node_t n = sample_node(), back;
    char buf[FLEET_ENTRY_MAX + 1], err[160] = "";
    int len = fleet_node_encode(&n, buf, sizeof(buf));
    CHECK(len > 0);
    CHECK_INT(fleet_node_decode(buf, (size_t)len, &back, err, sizeof(err)), 0);
    CHECK_STR(err, "");
    CHECK_STR(back.id, n.id);
    CHECK_STR(back.instance, INST);
    CHECK_STR(back.version, "0.9.0");
    CHECK_INT(back.allocations, 42);
    CHECK_INT(back.quota, 1000);
    CHECK_INT(back.bps, 123456789);
    CHECK(back.cpu > 0.249 && back.cpu < 0.251);
    CHECK_INT(back.draining, 1);
    CHECK_INT(back.started_ms, 1700000000000);
    CHECK_INT(back.ts_ms, 1700000001000);
    CHECK_INT(back.naddr[FLEET_UDP], 2);
    CHECK_STR(back.addr[FLEET_UDP][1], "[2001:db8::1]:3478");
    CHECK_INT(back.naddr[FLEET_TCP], 0);
    CHECK_INT(back.naddr[FLEET_TLS], 1);
    CHECK_STR(back.addr[FLEET_TLS][0], "192.0.2.1:5349");
    /* A buffer too small is refused, not truncated. */
    CHECK_INT(fleet_node_encode(&n, buf, 20), -1);
}

/* The entry below with one field replaced (or removed: repl NULL). */
static const char GOOD[] =
    "{\"id\":\"b\",\"instance\":\"0123456789abcdef0123456789abcdef\",\"version\":\"1\","
    "\"allocations\":3,\"bps\":0,\"cpu\":0.5,\"draining\":false,\"started\":1,\"ts\":2,"
    "\"addresses\":{\"udp\":[\"127.0.0.1:3478\"]}}";

UNIT_TEST(node_hostile)
{
    fleet_node_t n;
    char err[160];
    CHECK_INT(fleet_node_decode(GOOD, strlen(GOOD), &n, err, sizeof(err)), 0);
    CHECK_INT(n.allocations, 3);
    CHECK_INT(n.quota, 0); /* optional: unlimited when absent */
    static const char *const bad[] = {
        "",
        "[]",
        "\"x\"",
        "{",
        "{}",
        /* wrong types */
        "{\"id\":1,\"instance\":\"0123456789abcdef0123456789abcdef\",\"version\":\"1\","
        "\"allocations\":3,\"bps\":0,\"cpu\":0.5,\"draining\":false,\"started\":1,\"ts\":2,"
        "\"addresses\":{}}",
        "{\"id\":\"b\",\"instance\":\"0123456789abcdef0123456789abcdef\",\"version\":\"1\","
        "\"allocations\":\"3\",\"bps\":0,\"cpu\":0.5,\"draining\":false,\"started\":1,\"ts\":2,"
        "\"addresses\":{}}",
        "{\"id\":\"b\",\"instance\":\"0123456789abcdef0123456789abcdef\",\"version\":\"1\","
        "\"allocations\":3,\"bps\":0,\"cpu\":\"x\",\"draining\":false,\"started\":1,\"ts\":2,"
        "\"addresses\":{}}",
        "{\"id\":\"b\",\"instance\":\"0123456789abcdef0123456789abcdef\",\"version\":\"1\","
        "\"allocations\":3,\"bps\":0,\"cpu\":0.5,\"draining\":0,\"started\":1,\"ts\":2,"
        "\"addresses\":{}}",
        "{\"id\":\"b\",\"instance\":\"0123456789abcdef0123456789abcdef\",\"version\":\"1\","
        "\"allocations\":3,\"bps\":0,\"cpu\":0.5,\"draining\":false,\"started\":1,\"ts\":2,"
        "\"addresses\":[]}",
        "{\"id\":\"b\",\"instance\":\"0123456789abcdef0123456789abcdef\",\"version\":\"1\","
        "\"allocations\":3,\"bps\":0,\"cpu\":0.5,\"draining\":false,\"started\":1,\"ts\":2,"
        "\"addresses\":{\"udp\":[7]}}",
        "{\"id\":\"b\",\"instance\":\"0123456789abcdef0123456789abcdef\",\"version\":\"1\","
        "\"allocations\":3,\"quota\":\"many\",\"bps\":0,\"cpu\":0.5,\"draining\":false,"
        "\"started\":1,\"ts\":2,\"addresses\":{}}",
        /* missing fields */
        "{\"instance\":\"0123456789abcdef0123456789abcdef\",\"version\":\"1\","
        "\"allocations\":3,\"bps\":0,\"cpu\":0.5,\"draining\":false,\"started\":1,\"ts\":2,"
        "\"addresses\":{}}",
        "{\"id\":\"b\",\"instance\":\"0123456789abcdef0123456789abcdef\",\"version\":\"1\","
        "\"bps\":0,\"cpu\":0.5,\"draining\":false,\"started\":1,\"ts\":2,\"addresses\":{}}",
        "{\"id\":\"b\",\"instance\":\"0123456789abcdef0123456789abcdef\",\"version\":\"1\","
        "\"allocations\":3,\"bps\":0,\"cpu\":0.5,\"draining\":false,\"started\":1,\"ts\":2}",
        /* out of range, bad alphabets */
        "{\"id\":\"b\",\"instance\":\"0123456789abcdef0123456789abcdef\",\"version\":\"1\","
        "\"allocations\":-1,\"bps\":0,\"cpu\":0.5,\"draining\":false,\"started\":1,\"ts\":2,"
        "\"addresses\":{}}",
        "{\"id\":\"b/../x\",\"instance\":\"0123456789abcdef0123456789abcdef\",\"version\":\"1\","
        "\"allocations\":3,\"bps\":0,\"cpu\":0.5,\"draining\":false,\"started\":1,\"ts\":2,"
        "\"addresses\":{}}",
        "{\"id\":\"b\",\"instance\":\"0123456789ABCDEF0123456789abcdef\",\"version\":\"1\","
        "\"allocations\":3,\"bps\":0,\"cpu\":0.5,\"draining\":false,\"started\":1,\"ts\":2,"
        "\"addresses\":{}}",
        "{\"id\":\"b\",\"instance\":\"0123456789abcdef0123456789abcdef\",\"version\":\"1\","
        "\"allocations\":3,\"bps\":0,\"cpu\":0.5,\"draining\":false,\"started\":1,\"ts\":2,"
        "\"addresses\":{\"udp\":[\"evil.example:3478\"]}}",
        "{\"id\":\"b\",\"instance\":\"0123456789abcdef0123456789abcdef\",\"version\":\"1\","
        "\"allocations\":3,\"bps\":0,\"cpu\":0.5,\"draining\":false,\"started\":1,\"ts\":2,"
        "\"addresses\":{\"udp\":[\"1:1\",\"1:1\",\"1:1\",\"1:1\",\"1:1\",\"1:1\",\"1:1\",\"1:1\","
        "\"1:1\"]}}",
        /* the same field twice, a NUL inside a string */
        "{\"id\":\"b\",\"id\":\"c\",\"instance\":\"0123456789abcdef0123456789abcdef\","
        "\"version\":\"1\",\"allocations\":3,\"bps\":0,\"cpu\":0.5,\"draining\":false,"
        "\"started\":1,\"ts\":2,\"addresses\":{}}",
        "{\"id\":\"b\\u0000c\",\"instance\":\"0123456789abcdef0123456789abcdef\",\"version\":\"1\","
        "\"allocations\":3,\"bps\":0,\"cpu\":0.5,\"draining\":false,\"started\":1,\"ts\":2,"
        "\"addresses\":{}}",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        err[0] = 0;
        int rc = fleet_node_decode(bad[i], strlen(bad[i]), &n, err, sizeof(err));
        if (rc != -1)
            printf("accepted bad entry %zu: %s\n", i, bad[i]);
        CHECK_INT(rc, -1);
        CHECK(err[0] != 0);
    }
    /* Oversize: refused before parsing, whatever it holds. */
    static char big[FLEET_ENTRY_MAX + 2];
    memset(big, ' ', sizeof(big) - 1);
    memcpy(big, GOOD, strlen(GOOD));
    CHECK_INT(fleet_node_decode(big, sizeof(big) - 1, &n, err, sizeof(err)), -1);
    CHECK(strstr(err, "at most") != NULL);
    /* A 65-byte id. */
    char id65[400];
    snprintf(id65, sizeof(id65),
             "{\"id\":\"%065d\",\"instance\":\"%s\",\"version\":\"1\",\"allocations\":3,"
             "\"bps\":0,\"cpu\":0.5,\"draining\":false,\"started\":1,\"ts\":2,\"addresses\":{}}",
             0, INST);
    CHECK_INT(fleet_node_decode(id65, strlen(id65), &n, err, sizeof(err)), -1);
}

UNIT_TEST(id_valid)
{
    CHECK_INT(fleet_id_valid("a", 1), 1);
    CHECK_INT(fleet_id_valid("A-z_0.9", 7), 1);
    CHECK_INT(fleet_id_valid("", 0), 0);
    CHECK_INT(fleet_id_valid("a b", 3), 0);
    CHECK_INT(fleet_id_valid("a/b", 3), 0);
    char s[66];
    memset(s, 'x', sizeof(s));
    CHECK_INT(fleet_id_valid(s, 64), 1);
    CHECK_INT(fleet_id_valid(s, 65), 0);
}

UNIT_TEST(event_round_trip)
{
    fleet_event_t e = {.has_user = true, .terminate = true}, back;
    snprintf(e.origin, sizeof(e.origin), "%s", INST);
    snprintf(e.realm, sizeof(e.realm), "example.org");
    snprintf(e.user, sizeof(e.user), "1700000000:al\xc3\xa9\"x");
    e.ulen = strlen(e.user);
    char buf[FLEET_EVENT_MAX + 1], err[160] = "";
    int len = fleet_event_encode(&e, buf, sizeof(buf));
    CHECK(len > 0);
    CHECK_INT(fleet_event_decode(buf, (size_t)len, &back, err, sizeof(err)), 0);
    CHECK_STR(err, "");
    CHECK_STR(back.origin, INST);
    CHECK_STR(back.realm, "example.org");
    CHECK_INT(back.has_user, 1);
    CHECK_STR(back.user, e.user);
    CHECK_INT(back.ulen, e.ulen);
    CHECK_INT(back.terminate, 1);
    /* The secret set: no user. */
    fleet_event_t s = {.has_user = false};
    snprintf(s.origin, sizeof(s.origin), "%s", INST);
    snprintf(s.realm, sizeof(s.realm), "r");
    len = fleet_event_encode(&s, buf, sizeof(buf));
    CHECK(len > 0);
    CHECK_INT(fleet_event_decode(buf, (size_t)len, &back, err, sizeof(err)), 0);
    CHECK_INT(back.has_user, 0);
    CHECK_INT(back.terminate, 0);
    /* The longest user fits in one event. */
    memset(e.user, 'u', FLEET_USER_MAX);
    e.user[FLEET_USER_MAX] = 0;
    e.ulen = FLEET_USER_MAX;
    len = fleet_event_encode(&e, buf, sizeof(buf));
    CHECK(len > 0);
    CHECK_INT(fleet_event_decode(buf, (size_t)len, &back, err, sizeof(err)), 0);
    CHECK_INT(back.ulen, FLEET_USER_MAX);
}

UNIT_TEST(event_hostile)
{
    fleet_event_t e;
    char err[160];
#define EV(body)                                                                                   \
    "{\"v\":1,\"type\":\"forget\",\"origin\":\"0123456789abcdef0123456789abcdef\"," body "}"
    static const char *const good = EV("\"realm\":\"r\",\"user\":\"u\",\"terminate\":true");
    CHECK_INT(fleet_event_decode(good, strlen(good), &e, err, sizeof(err)), 0);
    static const char *const bad[] = {
        "",
        "null",
        "[1]",
        "{\"v\":2,\"type\":\"forget\",\"origin\":\"0123456789abcdef0123456789abcdef\","
        "\"realm\":\"r\",\"user\":\"u\",\"terminate\":true}",
        "{\"v\":1,\"type\":\"flush\",\"origin\":\"0123456789abcdef0123456789abcdef\","
        "\"realm\":\"r\",\"user\":\"u\",\"terminate\":true}",
        "{\"v\":1,\"type\":\"forget\",\"origin\":\"xyz\",\"realm\":\"r\",\"user\":\"u\","
        "\"terminate\":true}",
        EV("\"user\":\"u\",\"terminate\":true"),                         /* no realm */
        EV("\"realm\":\"r\",\"terminate\":true"),                        /* no user (null needed) */
        EV("\"realm\":\"r\",\"user\":\"u\""),                            /* no terminate */
        EV("\"realm\":\"r\",\"user\":5,\"terminate\":true"),             /* wrong type */
        EV("\"realm\":\"r\",\"user\":\"u\",\"terminate\":1"),            /* wrong type */
        EV("\"realm\":7,\"user\":\"u\",\"terminate\":true"),             /* wrong type */
        EV("\"realm\":\"r\",\"user\":\"\",\"terminate\":true"),          /* empty user */
        EV("\"realm\":\"r\",\"user\":null,\"terminate\":true"),          /* ending "every" user */
        EV("\"realm\":\"r\",\"user\":\"a\\u0000b\",\"terminate\":true"), /* NUL inside */
        EV("\"realm\":\"r\",\"user\":\"u\",\"user\":\"v\",\"terminate\":true"), /* twice */
    };
#undef EV
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        err[0] = 0;
        int rc = fleet_event_decode(bad[i], strlen(bad[i]), &e, err, sizeof(err));
        if (rc != -1)
            printf("accepted bad event %zu: %s\n", i, bad[i]);
        CHECK_INT(rc, -1);
        CHECK(err[0] != 0);
    }
    /* A user longer than FLEET_USER_MAX, and an event past FLEET_EVENT_MAX. */
    static char buf[FLEET_EVENT_MAX * 2];
    int n = snprintf(buf, sizeof(buf),
                     "{\"v\":1,\"type\":\"forget\",\"origin\":\"%s\",\"realm\":\"r\",\"user\":\"",
                     INST);
    memset(buf + n, 'u', FLEET_USER_MAX + 1);
    snprintf(buf + n + FLEET_USER_MAX + 1, sizeof(buf) - (size_t)n - FLEET_USER_MAX - 1,
             "\",\"terminate\":true}");
    CHECK_INT(fleet_event_decode(buf, strlen(buf), &e, err, sizeof(err)), -1);
    memset(buf, ' ', sizeof(buf));
    memcpy(buf, good, strlen(good));
    CHECK_INT(fleet_event_decode(buf, FLEET_EVENT_MAX + 1, &e, err, sizeof(err)), -1);
    CHECK(strstr(err, "at most") != NULL);
}

UNIT_MAIN("test_fleet")
