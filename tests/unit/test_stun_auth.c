/* test_stun_auth.c - unit tests of message integrity and credential keys (common/stun_auth.c).
 *
 * RFC 5769 §2.1-2.4: every vector's MESSAGE-INTEGRITY verifies with its key (the long-term key is
 * computed from the already SASLprep'd password, SASLprep itself is tested in test_saslprep); RFC
 * 8489 §14.6 MESSAGE-INTEGRITY-SHA256 built and verified, truncation refused unless allowed; §9.2.2
 * and §14.4 key and USERHASH vectors; the coturn Redis key and TURN REST vectors from the fact
 * sheet; RFC 8489 Appendix B.1 (erratum 6268); hex encoding of stored keys and the constant-time
 * compare.
 */
#include "stun_auth.h"
#include "stun_build.h"
#include "unit.h"
#include "vectors.h"
#include "util.h"

static void check_hex(const uint8_t *got, size_t n, const char *want_hex)
{
    char hex[2 * STUN_KEY_MAX_LEN + 1];

    stun_auth_hex_encode(got, n, hex);
    CHECK_STR(hex, want_hex);
}

UNIT_TEST(vectors)
{
    stun_msg_t m;
    static const uint8_t wrong[] = "VOkJxbRl1RmTxUk/WvJxBu";

    for (size_t i = 0; i < RFC5769_NVECTORS; i++) {
        const rfc5769_vector_t *v = &rfc5769_vectors[i];
        CHECK_INT(stun_msg_decode(v->bytes, v->len, &m), 0);
        if (stun_auth_verify_integrity(&m, v->key, v->keylen) != 0)
            fprintf(stderr, "vector \"%s\" does not verify\n", v->name);
        CHECK_INT(stun_auth_verify_integrity(&m, v->key, v->keylen), 0);
        CHECK_INT(stun_auth_verify_integrity(&m, wrong, sizeof(wrong) - 1), -1);
        CHECK_INT(stun_auth_verify_integrity(&m, v->key, v->keylen - 1), -1);
        CHECK_INT(stun_auth_verify_integrity_sha256(&m, v->key, v->keylen, 1), -1); /* none */
    }

    /* The long-term key from its parts: MD5("マトリックス:example.org:TheMatrIX"). */
    uint8_t key[STUN_KEY_MD5_LEN];
    stun_auth_key_md5(RFC5769_LONG_USERNAME, strlen(RFC5769_LONG_USERNAME), RFC5769_LONG_REALM,
                      strlen(RFC5769_LONG_REALM), RFC5769_LONG_PASSWORD_PREPPED,
                      strlen(RFC5769_LONG_PASSWORD_PREPPED), key);
    check_hex(key, sizeof(key), "e8ca7ad59d5eb0518e312911d2dab2a9");
    CHECK_INT(stun_msg_decode(rfc5769_req_long, sizeof(rfc5769_req_long), &m), 0);
    CHECK_INT(stun_auth_verify_integrity(&m, key, sizeof(key)), 0);

    /* Any covered byte changed breaks it (2.4 has no FINGERPRINT, so it still decodes). */
    uint8_t b[sizeof(rfc5769_req_long)];
    static const size_t flips[] = {1, 8, 19, 30, 60, 90, 99};
    for (size_t i = 0; i < ARRAY_SIZE(flips); i++) {
        memcpy(b, rfc5769_req_long, sizeof(b));
        b[flips[i]] ^= 0x01;
        CHECK_INT(stun_msg_decode(b, sizeof(b), &m), 0);
        CHECK_INT(stun_auth_verify_integrity(&m, key, sizeof(key)), -1);
    }
    /* The MI value itself. */
    memcpy(b, rfc5769_req_long, sizeof(b));
    b[sizeof(b) - 1] ^= 0x80;
    CHECK_INT(stun_msg_decode(b, sizeof(b), &m), 0);
    CHECK_INT(stun_auth_verify_integrity(&m, key, sizeof(key)), -1);
}

UNIT_TEST(keys)
{
    uint8_t md5[STUN_KEY_MD5_LEN], sha[STUN_KEY_SHA256_LEN], uh[STUN_USERHASH_LEN];

    stun_auth_key_md5("user", 4, "realm", 5, "pass", 4, md5);
    check_hex(md5, sizeof(md5), "8493fbc53ba582fb4c044c456bdc40eb");
    stun_auth_key_sha256("user", 4, "realm", 5, "pass", 4, sha);
    check_hex(sha, sizeof(sha), "07e934117abd40836e7c6329b54731b2b2d2a5f9a71f544922d75e0730d8251b");
    /* coturn's Redis schema example: turn/realm/north.gov/user/gorst/key. */
    stun_auth_key_md5("gorst", 5, "north.gov", 9, "hero", 4, md5);
    check_hex(md5, sizeof(md5), "7da2270ccfa49786e0115366d3a3d14d");
    /* TURN REST: username "1266890800:mbzrxpgjys", password base64(HMAC-SHA1("north", username)).
     */
    static const char rest_user[] = "1266890800:mbzrxpgjys",
                      rest_pass[] = "nbRcrnq5h6xXhyNhlwk+lDLvVVo=";
    stun_auth_key_md5(rest_user, sizeof(rest_user) - 1, "north.gov", 9, rest_pass,
                      sizeof(rest_pass) - 1, md5);
    check_hex(md5, sizeof(md5), "189beda23cf1b5c67dd164d580ac15b0");
    /* Lengths, not NULs, delimit the inputs. */
    stun_auth_key_md5("userX", 4, "realmX", 5, "passX", 4, md5);
    check_hex(md5, sizeof(md5), "8493fbc53ba582fb4c044c456bdc40eb");
    /* RFC 8489 §14.4 USERHASH of the RFC 5769 user and realm. */
    stun_auth_userhash(RFC5769_LONG_USERNAME, strlen(RFC5769_LONG_USERNAME), RFC5769_LONG_REALM,
                       strlen(RFC5769_LONG_REALM), uh);
    check_hex(uh, sizeof(uh), "4a3cf38fef6992bda952c6780417da0f24819415569e60b205c46e41407f1704");
}

static const uint8_t tid[12] = {0xb7, 0xe7, 0xa7, 0x01, 0xbc, 0x34,
                                0xd6, 0x86, 0xfa, 0x87, 0xdf, 0xae};

UNIT_TEST(sha256_roundtrip)
{
    uint8_t buf[256], key[STUN_KEY_SHA256_LEN];
    stun_build_t b;
    stun_msg_t m;

    stun_auth_key_sha256("user", 4, "realm", 5, "pass", 4, key);
    stun_build_init(&b, buf, sizeof(buf), stun_type(STUN_METHOD_ALLOCATE, STUN_CLASS_REQUEST), tid);
    stun_build_attr(&b, STUN_ATTR_USERNAME, "user", 4);
    stun_build_attr(&b, STUN_ATTR_REALM, "realm", 5);
    stun_build_integrity_sha256(&b, key, sizeof(key));
    stun_build_fingerprint(&b);
    int n = stun_build_finish(&b);
    CHECK(n > 0);
    CHECK_INT(stun_msg_decode(buf, (size_t)n, &m), 0);
    CHECK_INT(m.attrs[m.mi256_idx].len, 32);
    CHECK_INT(stun_auth_verify_integrity_sha256(&m, key, sizeof(key), 0), 0);
    CHECK_INT(stun_auth_verify_integrity_sha256(&m, key, 16, 0), -1);
    CHECK_INT(stun_auth_verify_integrity(&m, key, sizeof(key)), -1); /* no MI */

    /* Both integrity attributes and a FINGERPRINT, the full legal tail (RFC 8489 §14.5). */
    stun_build_init(&b, buf, sizeof(buf), stun_type(STUN_METHOD_ALLOCATE, STUN_CLASS_SUCCESS), tid);
    stun_build_u32(&b, STUN_ATTR_LIFETIME, 600);
    stun_build_integrity(&b, key, STUN_KEY_MD5_LEN);
    stun_build_integrity_sha256(&b, key, sizeof(key));
    stun_build_fingerprint(&b);
    n = stun_build_finish(&b);
    CHECK_INT(stun_msg_decode(buf, (size_t)n, &m), 0);
    CHECK_INT(stun_auth_verify_integrity(&m, key, STUN_KEY_MD5_LEN), 0);
    CHECK_INT(stun_auth_verify_integrity_sha256(&m, key, sizeof(key), 0), 0);
}

/* A 16-byte MESSAGE-INTEGRITY-SHA256, built by hand: the builder only makes full-length ones. */
UNIT_TEST(sha256_truncated)
{
    uint8_t buf[128], mac[32], key[4] = {1, 2, 3, 4};
    stun_build_t b;
    stun_msg_t m;

    stun_build_init(&b, buf, sizeof(buf), stun_type(STUN_METHOD_BINDING, STUN_CLASS_REQUEST), tid);
    stun_build_attr(&b, STUN_ATTR_USERNAME, "u", 1);
    uint8_t *p = stun_build_attr_reserve(&b, STUN_ATTR_MESSAGE_INTEGRITY_SHA256, 16);
    CHECK(p != NULL);
    if (!p)
        return;
    CHECK_INT(stun_auth_hmac_msg(1, key, sizeof(key), buf, (size_t)(p - buf) - 4, b.len, mac), 0);
    memcpy(p, mac, 16);
    int n = stun_build_finish(&b);
    CHECK_INT(stun_msg_decode(buf, (size_t)n, &m), 0);
    CHECK_INT(stun_auth_verify_integrity_sha256(&m, key, sizeof(key), 0), -1);
    CHECK_INT(stun_auth_verify_integrity_sha256(&m, key, sizeof(key), 1), 0);
    p[15] ^= 1;
    CHECK_INT(stun_auth_verify_integrity_sha256(&m, key, sizeof(key), 1), -1);
}

/* An empty short-term password is odd but legal: the HMAC key is then empty. */
UNIT_TEST(empty_key)
{
    uint8_t buf[64];
    stun_build_t b;
    stun_msg_t m;

    stun_build_init(&b, buf, sizeof(buf), stun_type(STUN_METHOD_BINDING, STUN_CLASS_REQUEST), tid);
    stun_build_integrity(&b, NULL, 0);
    int n = stun_build_finish(&b);
    CHECK_INT(n, 44);
    CHECK_INT(stun_msg_decode(buf, (size_t)n, &m), 0);
    CHECK_INT(stun_auth_verify_integrity(&m, (const uint8_t *)"", 0), 0);
    CHECK_INT(stun_auth_verify_integrity(&m, (const uint8_t *)"x", 1), -1);
}

UNIT_TEST(hex_and_ct)
{
    uint8_t out[4];
    char hex[9];
    static const uint8_t bytes[4] = {0x00, 0xff, 0x10, 0xab};

    stun_auth_hex_encode(bytes, 4, hex);
    CHECK_STR(hex, "00ff10ab");
    stun_auth_hex_encode(bytes, 0, hex);
    CHECK_STR(hex, "");
    CHECK_INT(stun_auth_hex_decode("00ff10ab", 8, out, 4), 4);
    CHECK(memcmp(out, bytes, 4) == 0);
    CHECK_INT(stun_auth_hex_decode("00FF10AB", 8, out, 4), 4);
    CHECK(memcmp(out, bytes, 4) == 0);
    CHECK_INT(stun_auth_hex_decode("", 0, out, 4), 0);

    static const struct {
        const char *in;
        size_t cap;
    } bad[] = {
        {"0", 4},  {"abc", 4}, {"0g", 4}, {"g0", 4}, {"0:", 4},         {" 0", 4},
        {"0/", 4}, {"@0", 4},  {"0`", 4}, {"0G", 4}, {"0011223344", 4}, {"00", 0},
    };
    for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
        if (stun_auth_hex_decode(bad[i].in, strlen(bad[i].in), out, bad[i].cap) != -1)
            fprintf(stderr, "hex \"%s\" accepted\n", bad[i].in);
        CHECK_INT(stun_auth_hex_decode(bad[i].in, strlen(bad[i].in), out, bad[i].cap), -1);
    }

    CHECK_INT(stun_auth_ct_equal("abcd", "abcd", 4), 0);
    CHECK(stun_auth_ct_equal("abcd", "abce", 4) != 0);
    CHECK(stun_auth_ct_equal("abcd", "Abcd", 4) != 0);
    CHECK_INT(stun_auth_ct_equal("abcd", "abce", 3), 0);
    CHECK_INT(stun_auth_ct_equal("", "x", 0), 0);
}

/* RFC 8489 Appendix B.1 as corrected by erratum 6268: the SHA-256 integrity verifies with the
 * SHA-256 long-term key of the SASLprep'd password, the USERHASH matches, and rebuilding the
 * request from its parts gives the same 164 bytes. */
UNIT_TEST(rfc8489_b1)
{
    stun_msg_t m;
    uint8_t key[STUN_KEY_SHA256_LEN], uh[STUN_USERHASH_LEN], buf[256];
    const char *realm = "example.org", *nonce = "obMatJos2AAACf//499k954d6OL34oL9FSTvy64sA";
    CHECK_INT(stun_msg_decode(rfc8489_b1, sizeof(rfc8489_b1), &m), 0);
    stun_auth_key_sha256(RFC5769_LONG_USERNAME, strlen(RFC5769_LONG_USERNAME), realm, 11,
                         "TheMatrIX", 9, key);
    CHECK_INT(stun_auth_verify_integrity_sha256(&m, key, sizeof(key), 0), 0);
    key[0] ^= 1;
    CHECK_INT(stun_auth_verify_integrity_sha256(&m, key, sizeof(key), 0), -1);
    key[0] ^= 1;
    stun_auth_userhash(RFC5769_LONG_USERNAME, strlen(RFC5769_LONG_USERNAME), realm, 11, uh);
    const stun_attr_t *a = stun_msg_find(&m, STUN_ATTR_USERHASH);
    CHECK(a && a->len == 32 && memcmp(stun_attr_value(&m, a), uh, 32) == 0);
    uint16_t alg = 0;
    a = stun_msg_find(&m, STUN_ATTR_PASSWORD_ALGORITHM);
    CHECK(a && stun_attr_get_password_alg(&m, a, &alg) == 0);
    CHECK_INT(alg, STUN_PASSWORD_ALG_SHA256);

    stun_build_t b;
    stun_build_init(&b, buf, sizeof(buf), stun_type(STUN_METHOD_BINDING, STUN_CLASS_REQUEST),
                    rfc8489_b1 + 8);
    stun_build_attr(&b, STUN_ATTR_USERHASH, uh, sizeof(uh));
    stun_build_attr(&b, STUN_ATTR_NONCE, nonce, strlen(nonce));
    stun_build_attr(&b, STUN_ATTR_REALM, realm, strlen(realm));
    stun_build_password_alg(&b, STUN_PASSWORD_ALG_SHA256);
    stun_build_integrity_sha256(&b, key, sizeof(key));
    CHECK_INT(stun_build_finish(&b), (int)sizeof(rfc8489_b1));
    CHECK(memcmp(buf, rfc8489_b1, sizeof(rfc8489_b1)) == 0);
}

UNIT_MAIN("test_stun_auth")
