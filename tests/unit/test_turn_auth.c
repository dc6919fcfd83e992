/* test_turn_auth.c - unit tests of stateless nonces, TURN REST credentials and base64
 * (common/turn_auth.c).
 *
 * RFC 4648 §10 vectors for base64 and base64url plus the strictness rules of §3.3 and §3.5; the RFC
 * 8489 §9.2 nonce cookie with its feature bits, known-answer nonces computed independently (Python
 * hmac/base64) so the wire format cannot drift, binding to the client's address and port, expiry
 * and every single-character tamper; the TURN REST vector from the fact sheet (secret "north") and
 * coturn's rules for finding the timestamp in a REST username.
 */
#include <netinet/in.h>

#include "sockaddr_util.h"
#include "turn_auth.h"
#include "unit.h"
#include "util.h"

static const struct {
    const char *raw, *std, *url;
} b64_vectors[] = {
    /* RFC 4648 §10 */
    {"", "", ""},
    {"f", "Zg==", "Zg"},
    {"fo", "Zm8=", "Zm8"},
    {"foo", "Zm9v", "Zm9v"},
    {"foob", "Zm9vYg==", "Zm9vYg"},
    {"fooba", "Zm9vYmE=", "Zm9vYmE"},
    {"foobar", "Zm9vYmFy", "Zm9vYmFy"},
    /* The two characters where the alphabets differ (RFC 4648 §5). */
    {"\xfb\xff", "+/8=", "-_8"},
    {"\xfb\xef\xbe", "++++", "----"},
    {"\xff\xff\xff", "////", "____"},
};

UNIT_TEST(b64_vectors)
{
    char enc[32];
    uint8_t dec[32];

    for (size_t i = 0; i < ARRAY_SIZE(b64_vectors); i++) {
        const uint8_t *raw = (const uint8_t *)b64_vectors[i].raw;
        size_t n = strlen(b64_vectors[i].raw);
        const char *std = b64_vectors[i].std, *url = b64_vectors[i].url;

        CHECK_INT(turn_b64_encode(raw, n, enc, sizeof(enc)), strlen(std));
        CHECK_STR(enc, std);
        CHECK_INT(turn_b64url_encode(raw, n, enc, sizeof(enc)), strlen(url));
        CHECK_STR(enc, url);
        CHECK_INT(turn_b64_decode(std, strlen(std), dec, sizeof(dec)), n);
        CHECK_MEM(dec, raw, n);
        CHECK_INT(turn_b64url_decode(url, strlen(url), dec, sizeof(dec)), n);
        CHECK_MEM(dec, raw, n);
        /* Exactly enough room works; one less fails (the encoders also need the NUL). */
        CHECK_INT(turn_b64_encode(raw, n, enc, strlen(std) + 1), strlen(std));
        CHECK_INT(turn_b64_encode(raw, n, enc, strlen(std)), -1);
        CHECK_INT(turn_b64url_encode(raw, n, enc, strlen(url)), -1);
        CHECK_INT(turn_b64_decode(std, strlen(std), dec, n), n);
        CHECK_INT(turn_b64url_decode(url, strlen(url), dec, n), n);
        if (n > 0) {
            CHECK_INT(turn_b64_decode(std, strlen(std), dec, n - 1), -1);
            CHECK_INT(turn_b64url_decode(url, strlen(url), dec, n - 1), -1);
        }
    }
}

UNIT_TEST(b64_strict)
{
    static const char *const bad_std[] = {
        "Zg=",      /* not whole quanta */
        "Zg",       /* padding is required in base64 */
        "Z===",     /* three pad characters */
        "====",     /* nothing but padding */
        "Zh==",     /* non-zero pad bits (RFC 4648 §3.5) */
        "Zm9=",     /* non-zero pad bits */
        "=Zm9",     /* padding first */
        "Zg==Zg==", /* padding in the middle */
        "Zm=v",     /* padding inside a quantum */
        "Zm9v\n",   /* no line breaks (§3.3) */
        "Zm 9",     /* no spaces */
        "Zm9-",     /* url alphabet */
        "Zm9_",     /* url alphabet */
        "Zm9\x80",  /* not ASCII */
        "Z",        /* one character carries no byte */
        NULL,
    };
    static const char *const bad_url[] = {
        "Zg==",        /* never padded */
        "Zg=",         /* never padded */
        "Z",           /* n % 4 == 1 */
        "Zm9vY", "Zh", /* non-zero pad bits */
        "Zm9",         /* non-zero pad bits */
        "+/8",         /* standard alphabet */
        "Zm 9",        /* no spaces */
        NULL,
    };
    uint8_t dec[16];

    for (const char *const *p = bad_std; *p; p++) {
        memset(dec, 0, sizeof(dec));
        if (turn_b64_decode(*p, strlen(*p), dec, sizeof(dec)) != -1)
            fprintf(stderr, "b64 accepted \"%s\"\n", *p);
        CHECK_INT(turn_b64_decode(*p, strlen(*p), dec, sizeof(dec)), -1);
    }
    for (const char *const *p = bad_url; *p; p++) {
        if (turn_b64url_decode(*p, strlen(*p), dec, sizeof(dec)) != -1)
            fprintf(stderr, "b64url accepted \"%s\"\n", *p);
        CHECK_INT(turn_b64url_decode(*p, strlen(*p), dec, sizeof(dec)), -1);
    }
    /* A failed decode leaves no partial output behind. */
    static const uint8_t zero[16] = {0};
    memset(dec, 0, sizeof(dec));
    CHECK_INT(turn_b64_decode("Zm9vYmFy!AAA", 12, dec, sizeof(dec)), -1);
    CHECK_MEM(dec, zero, sizeof(dec));
    /* Length is the caller's: a NUL inside the range is just a bad character. */
    CHECK_INT(turn_b64_decode("Zm9v\0AAA", 8, dec, sizeof(dec)), -1);
    CHECK_INT(turn_b64_decode("Zm9vYmFy", 4, dec, sizeof(dec)), 3);
    CHECK_MEM(dec, "foo", 3);
    /* An empty input decodes to nothing, even without a buffer. */
    CHECK_INT(turn_b64_decode("", 0, NULL, 0), 0);
    CHECK_INT(turn_b64url_decode("", 0, NULL, 0), 0);
}

static const uint8_t secret[TURN_NONCE_SECRET_LEN] = {
    0,  1,  2,  3,  4,  5,  6,  7,  8,  9,  10, 11, 12, 13, 14, 15,
    16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31,
};

static struct sockaddr_storage addr(const char *s, uint16_t port)
{
    struct sockaddr_storage ss;

    CHECK_INT(sa_parse_ip(s, port, &ss), 0);
    return ss;
}

#define SA(ss) ((const struct sockaddr *)&(ss))

UNIT_TEST(nonce_format)
{
    static const struct {
        uint32_t features;
        const char *cookie;
    } cookies[] = {
        /* RFC 8489 §9.2 cookie values from the fact sheet. */
        {0, "obMatJos2AAAA"},
        {TURN_NONCE_FEAT_PASSWORD_ALGS, "obMatJos2gAAA"},
        {TURN_NONCE_FEAT_USERHASH, "obMatJos2QAAA"},
        {TURN_NONCE_FEAT_PASSWORD_ALGS | TURN_NONCE_FEAT_USERHASH, "obMatJos2wAAA"},
        {0xffffff, "obMatJos2////"},
    };
    struct sockaddr_storage c = addr("192.0.2.1", 54321);
    char nonce[TURN_NONCE_MAX + 1];

    for (size_t i = 0; i < ARRAY_SIZE(cookies); i++) {
        CHECK_INT(
            turn_nonce_make(secret, 1700000000, cookies[i].features, SA(c), nonce, sizeof(nonce)),
            35);
        CHECK_INT(strlen(nonce), 35);
        CHECK_MEM(nonce, cookies[i].cookie, 13);
        uint32_t f = 0xdeadbeef;
        CHECK_INT(turn_nonce_check(secret, nonce, 35, 1700000000 - 10, SA(c), &f), TURN_NONCE_OK);
        CHECK_INT(f, cookies[i].features);
    }

    /* Known answers, computed outside this code base (Python hmac + base64). */
    CHECK_INT(turn_nonce_make(secret, 1700000000, TURN_NONCE_FEAT_PASSWORD_ALGS, SA(c), nonce,
                              sizeof(nonce)),
              35);
    CHECK_STR(nonce, "obMatJos2gAAAZVPxAJUs9O8BZ8rYuCJqEw");
    struct sockaddr_storage c6 = addr("2001:db8::1", 3478);
    CHECK_INT(turn_nonce_make(secret, 1700000000, 0xc00000, SA(c6), nonce, sizeof(nonce)), 35);
    CHECK_STR(nonce, "obMatJos2wAAAZVPxAIjrYfgv4OtCAGmQ3Q");

    /* Room for the nonce and its NUL is required. */
    CHECK_INT(turn_nonce_make(secret, 1, 0, SA(c), nonce, 36), 35);
    CHECK_INT(turn_nonce_make(secret, 1, 0, SA(c), nonce, 35), -1);
    struct sockaddr_storage unix_sa;
    memset(&unix_sa, 0, sizeof(unix_sa));
    unix_sa.ss_family = AF_UNIX;
    CHECK_INT(turn_nonce_make(secret, 1, 0, SA(unix_sa), nonce, sizeof(nonce)), -1);
}

UNIT_TEST(nonce_binding)
{
    const uint32_t now = 1700000000, exp = now + 600;
    struct sockaddr_storage c = addr("192.0.2.1", 54321);
    char nonce[TURN_NONCE_MAX + 1];
    uint32_t f;

    CHECK_INT(
        turn_nonce_make(secret, exp, TURN_NONCE_FEAT_PASSWORD_ALGS, SA(c), nonce, sizeof(nonce)),
        35);
    CHECK_INT(turn_nonce_check(secret, nonce, 35, now, SA(c), &f), TURN_NONCE_OK);
    CHECK_INT(turn_nonce_check(secret, nonce, 35, now, SA(c), NULL), TURN_NONCE_OK);

    /* RFC 8489 §9.2: a nonce is for one source transport address only. The 5-tuple is taken as it
     * is, so even the IPv4-mapped spelling of the same client is another client. */
    static const struct {
        const char *ip;
        uint16_t port;
    } others[] = {
        {"192.0.2.1", 54322},  {"192.0.2.2", 54321},   {"::ffff:192.0.2.1", 54321},
        {"::c000:201", 54321}, {"2001:db8::1", 54321},
    };
    for (size_t i = 0; i < ARRAY_SIZE(others); i++) {
        struct sockaddr_storage o = addr(others[i].ip, others[i].port);
        CHECK_INT(turn_nonce_check(secret, nonce, 35, now, SA(o), &f), TURN_NONCE_BAD);
    }
    struct sockaddr_storage unix_sa;
    memset(&unix_sa, 0, sizeof(unix_sa));
    unix_sa.ss_family = AF_UNIX;
    CHECK_INT(turn_nonce_check(secret, nonce, 35, now, SA(unix_sa), &f), TURN_NONCE_BAD);

    /* Another server secret (another deployment, or a rotated key). */
    uint8_t other[TURN_NONCE_SECRET_LEN];
    memcpy(other, secret, sizeof(other));
    other[31] ^= 1;
    CHECK_INT(turn_nonce_check(other, nonce, 35, now, SA(c), &f), TURN_NONCE_BAD);

    /* Every single-character change is refused, including the feature bits (they are MACed, so a
     * client cannot downgrade away PASSWORD-ALGORITHMS) and the pad bits of the last character. */
    static const char alphabet[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/-_=";
    for (size_t pos = 0; pos < 35; pos++) {
        for (const char *a = alphabet; *a; a++) {
            char t[TURN_NONCE_MAX + 1];
            if (*a == nonce[pos])
                continue;
            memcpy(t, nonce, sizeof(t));
            t[pos] = *a;
            if (turn_nonce_check(secret, t, 35, now, SA(c), &f) != TURN_NONCE_BAD) {
                fprintf(stderr, "tampered nonce accepted: %s\n", t);
                CHECK(0);
            }
        }
    }
    char t[TURN_NONCE_MAX + 1];
    memcpy(t, nonce, sizeof(t));
    memcpy(t + 9, "AAAA", 4);
    CHECK_INT(turn_nonce_check(secret, t, 35, now, SA(c), &f), TURN_NONCE_BAD);

    /* Lengths: one short, one long, empty, over the bound. */
    char longer[200];
    memset(longer, 'A', sizeof(longer));
    memcpy(longer, nonce, 35);
    CHECK_INT(turn_nonce_check(secret, nonce, 34, now, SA(c), &f), TURN_NONCE_BAD);
    CHECK_INT(turn_nonce_check(secret, longer, 36, now, SA(c), &f), TURN_NONCE_BAD);
    CHECK_INT(turn_nonce_check(secret, longer, sizeof(longer), now, SA(c), &f), TURN_NONCE_BAD);
    CHECK_INT(turn_nonce_check(secret, "", 0, now, SA(c), &f), TURN_NONCE_BAD);
    CHECK_INT(turn_nonce_check(secret, NULL, 0, now, SA(c), &f), TURN_NONCE_BAD);
    /* A nonce without the cookie (RFC 5389 style) is not one of ours. */
    CHECK_INT(turn_nonce_check(secret, "f//499k954d6OL34oL9FSTvy64sA", 28, now, SA(c), &f),
              TURN_NONCE_BAD);
}

UNIT_TEST(nonce_expiry)
{
    const uint32_t now = 1700000000;
    struct sockaddr_storage c = addr("2001:db8::7", 5000);
    static const struct {
        int64_t delta; /* expiry - now */
        enum turn_nonce_result want;
    } cases[] = {
        {-1700000000, TURN_NONCE_STALE},
        {-3600, TURN_NONCE_STALE},
        {-1, TURN_NONCE_STALE},
        {0, TURN_NONCE_OK}, /* valid through its expiry second */
        {1, TURN_NONCE_OK},
        {3600, TURN_NONCE_OK},
        {2 * 86400, TURN_NONCE_OK},
        {2 * 86400 + 1, TURN_NONCE_STALE}, /* from the future: not trusted to be fresh */
        {(int64_t)UINT32_MAX - now, TURN_NONCE_STALE},
    };
    char nonce[TURN_NONCE_MAX + 1];

    for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
        uint32_t exp = (uint32_t)(now + cases[i].delta), f = 0;
        CHECK_INT(
            turn_nonce_make(secret, exp, TURN_NONCE_FEAT_USERHASH, SA(c), nonce, sizeof(nonce)),
            35);
        if (turn_nonce_check(secret, nonce, 35, now, SA(c), &f) != cases[i].want)
            fprintf(stderr, "expiry now%+lld\n", (long long)cases[i].delta);
        CHECK_INT(turn_nonce_check(secret, nonce, 35, now, SA(c), &f), cases[i].want);
        /* A stale nonce is still authentic, so its features are reported for the 438 answer. */
        CHECK_INT(f, TURN_NONCE_FEAT_USERHASH);
    }

    /* Near the end of 32-bit time the "too far ahead" window must not wrap. */
    CHECK_INT(turn_nonce_make(secret, UINT32_MAX, 0, SA(c), nonce, sizeof(nonce)), 35);
    CHECK_INT(turn_nonce_check(secret, nonce, 35, UINT32_MAX - 10, SA(c), NULL), TURN_NONCE_OK);
    CHECK_INT(turn_nonce_check(secret, nonce, 35, 0, SA(c), NULL), TURN_NONCE_STALE);
}

UNIT_TEST(rest_password)
{
    char out[64];
    static const char user[] = "1266890800:mbzrxpgjys";

    /* draft-uberti-behave-turn-rest-00 / coturn vector (fact sheet §13). */
    CHECK_INT(turn_rest_password("north", 5, user, strlen(user), out, sizeof(out)), 28);
    CHECK_STR(out, "nbRcrnq5h6xXhyNhlwk+lDLvVVo=");
    CHECK_INT(turn_rest_password("north", 5, user, strlen(user), out, 29), 28);
    CHECK_INT(turn_rest_password("north", 5, user, strlen(user), out, 28), -1);
    /* Empty key and message still give HMAC-SHA1's defined value (computed with Python). */
    CHECK_INT(turn_rest_password("", 0, "", 0, out, sizeof(out)), 28);
    CHECK_STR(out, "+9sdGxiqbAgyS31ktx+3Y3BpDh0=");
    /* The whole username is MACed: dropping the id changes the password. */
    CHECK_INT(turn_rest_password("north", 5, user, 10, out, sizeof(out)), 28);
    CHECK(strcmp(out, "nbRcrnq5h6xXhyNhlwk+lDLvVVo=") != 0);
}

UNIT_TEST(rest_expiry)
{
    static const struct {
        const char *user;
        int rc;
        int64_t expiry;
    } cases[] = {
        {"1266890800:mbzrxpgjys", 0, 1266890800},
        {"alice:1700000000", 0, 1700000000},
        {"1700000000", 0, 1700000000},
        {"1700000000:", 0, 1700000000},
        {":1700000000", 0, 1700000000},
        {"a:b:1700000000", 0, 1700000000}, /* after the last ':' */
        {"1700000000:b:c", 0, 1700000000}, /* before the first ':' */
        {"17:18", 0, 17},
        {"0", 0, 0},
        {"0000000000000000001", 0, 1},         /* 19 digits */
        {"9223372036854775807", 0, INT64_MAX}, /* 19 digits, the largest */
        {"9223372036854775808", -1, 0},        /* overflows int64 */
        {"99999999999999999999", -1, 0},       /* 20 digits */
        {"alice:00000000000000000001", -1, 0}, /* 20 digits */
        {"alice", -1, 0},
        {"", -1, 0},
        {":", -1, 0},
        {"alice:", -1, 0},
        {"12a:bob", -1, 0},
        {"12a:34", 0, 34},
        {"-5", -1, 0},
        {"+5", -1, 0},
        {" 5", -1, 0},
        {"5 ", -1, 0},
        {"alice:-1700000000", -1, 0},
    };

    for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
        int64_t e = -42;
        int rc = turn_rest_expiry(cases[i].user, strlen(cases[i].user), &e);
        if (rc != cases[i].rc)
            fprintf(stderr, "rest expiry \"%s\"\n", cases[i].user);
        CHECK_INT(rc, cases[i].rc);
        if (rc == 0)
            CHECK_INT(e, cases[i].expiry);
    }
    /* The length is the caller's: no NUL needed, and bytes past ulen are never read. */
    int64_t e = 0;
    CHECK_INT(turn_rest_expiry("1700000000xyz", 10, &e), 0);
    CHECK_INT(e, 1700000000);
    CHECK_INT(turn_rest_expiry("17\0"
                               "00",
                               5, &e),
              -1);
    CHECK_INT(turn_rest_expiry(NULL, 0, &e), -1);
}

UNIT_MAIN("test_turn_auth")
