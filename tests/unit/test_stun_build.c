/* test_stun_build.c - unit tests of the STUN encoder (common/stun_build.c).
 *
 * Re-encodes the four RFC 5769 vectors (§2.1-2.4) byte for byte; exercises every attribute writer
 * against its RFC 8489 §14 / RFC 8656 §18 layout and round-trips it through the decoder's getters;
 * checks the sticky error, that nothing is written past `cap` (canary bytes), zero padding, the
 * ERROR-CODE encoding and reason truncation (RFC 8489 §14.8), and argument validation.
 */
#include <arpa/inet.h>
#include <errno.h>

#include "sockaddr_util.h"
#include "stun_auth.h"
#include "stun_build.h"
#include "stun_msg.h"
#include "unit.h"
#include "vectors.h"
#include "util.h"

static const uint8_t tid_5769[12] = {0xb7, 0xe7, 0xa7, 0x01, 0xbc, 0x34,
                                     0xd6, 0x86, 0xfa, 0x87, 0xdf, 0xae};

static void body_req_short(stun_build_t *b)
{
    static const uint8_t ice_controlled[8] = {0x93, 0x2f, 0xf9, 0xb1, 0x51, 0x26, 0x3b, 0x36};

    stun_build_init(b, b->buf, b->cap, 0x0001, tid_5769);
    stun_build_attr(b, STUN_ATTR_SOFTWARE, RFC5769_SOFTWARE_REQ, strlen(RFC5769_SOFTWARE_REQ));
    stun_build_u32(b, STUN_ATTR_PRIORITY, 0x6e0001ff);
    stun_build_attr(b, STUN_ATTR_ICE_CONTROLLED, ice_controlled, 8);
    stun_build_attr(b, STUN_ATTR_USERNAME, RFC5769_SHORT_USERNAME, strlen(RFC5769_SHORT_USERNAME));
}

static void body_resp(stun_build_t *b, const char *ip)
{
    struct sockaddr_storage ss;

    sa_parse_ip(ip, 32853, &ss);
    stun_build_init(b, b->buf, b->cap, 0x0101, tid_5769);
    stun_build_attr(b, STUN_ATTR_SOFTWARE, RFC5769_SOFTWARE_RESP, strlen(RFC5769_SOFTWARE_RESP));
    stun_build_xor_addr(b, STUN_ATTR_XOR_MAPPED_ADDRESS, (struct sockaddr *)&ss);
}

static void body_resp_ipv4(stun_build_t *b) { body_resp(b, "192.0.2.1"); }

static void body_resp_ipv6(stun_build_t *b)
{
    body_resp(b, "2001:db8:1234:5678:11:2233:4455:6677");
}

static void body_req_long(stun_build_t *b)
{
    static const uint8_t tid[12] = {0x78, 0xad, 0x34, 0x33, 0xc6, 0xad,
                                    0x72, 0xc0, 0x29, 0xda, 0x41, 0x2e};

    stun_build_init(b, b->buf, b->cap, 0x0001, tid);
    stun_build_attr(b, STUN_ATTR_USERNAME, RFC5769_LONG_USERNAME, strlen(RFC5769_LONG_USERNAME));
    stun_build_attr(b, STUN_ATTR_NONCE, RFC5769_LONG_NONCE, strlen(RFC5769_LONG_NONCE));
    stun_build_attr(b, STUN_ATTR_REALM, RFC5769_LONG_REALM, strlen(RFC5769_LONG_REALM));
}

/* Same order as rfc5769_vectors[]. */
static void (*const vector_bodies[])(stun_build_t *) = {
    body_req_short,
    body_resp_ipv4,
    body_resp_ipv6,
    body_req_long,
};

static void finish_vector(stun_build_t *b, const rfc5769_vector_t *v)
{
    stun_build_integrity(b, v->key, v->keylen);
    if (v->has_fingerprint)
        stun_build_fingerprint(b);
}

/* The builder pads with zeros (RFC 8489 §14) while three vectors pad with 0x20, and the padding is
 * covered by MESSAGE-INTEGRITY and FINGERPRINT, so a zero-padded build cannot equal the vector. We
 * therefore check, per vector: (1) the attributes before MESSAGE-INTEGRITY equal the vector at
 * every byte except padding, and the padding is zero; (2) that zero-padded message, finished by the
 * builder, decodes and verifies with the vector's key; (3) after copying the vector's padding bytes
 * into the builder's buffer, the builder's MESSAGE-INTEGRITY and FINGERPRINT make the whole message
 * byte-identical to the vector. */
UNIT_TEST(reencode_vectors)
{
    for (size_t i = 0; i < RFC5769_NVECTORS; i++) {
        const rfc5769_vector_t *v = &rfc5769_vectors[i];
        uint8_t buf[256], zbuf[256];
        stun_build_t b = {.buf = buf, .cap = sizeof(buf)};
        stun_msg_t vm, zm;

        CHECK_INT(stun_msg_decode(v->bytes, v->len, &vm), 0);
        vector_bodies[i](&b);
        size_t mi_off = vm.attrs[vm.mi_idx].offset - 4u;
        CHECK_INT(b.len, mi_off);
        if (b.len != mi_off)
            continue;
        /* Header length as the builder keeps it: up to here. */
        uint8_t expect[256];
        memcpy(expect, v->bytes, mi_off);
        expect[2] = (uint8_t)((mi_off - 20) >> 8), expect[3] = (uint8_t)(mi_off - 20);
        for (int j = 0; j < vm.mi_idx; j++) {
            const stun_attr_t *a = &vm.attrs[j];
            size_t end = a->offset + (size_t)((a->len + 3) & ~3);
            for (size_t k = a->offset + a->len; k < end; k++)
                expect[k] = 0;
        }
        CHECK_MEM(buf, expect, mi_off);

        memcpy(zbuf, buf, mi_off);
        stun_build_t zb = b;
        zb.buf = zbuf;
        finish_vector(&zb, v);
        CHECK_INT(stun_build_finish(&zb), v->len);
        CHECK_INT(stun_msg_decode(zbuf, zb.len, &zm), 0);
        CHECK_INT(stun_auth_verify_integrity(&zm, v->key, v->keylen), 0);

        for (int j = 0; j < vm.mi_idx; j++) {
            const stun_attr_t *a = &vm.attrs[j];
            size_t end = a->offset + (size_t)((a->len + 3) & ~3);
            memcpy(buf + a->offset + a->len, v->bytes + a->offset + a->len,
                   end - a->offset - a->len);
        }
        finish_vector(&b, v);
        CHECK_INT(stun_build_finish(&b), v->len);
        CHECK_MEM(buf, v->bytes, v->len);
    }
}

/* Build a message with one of everything; used for the overflow and round-trip tests. */
static void build_everything(stun_build_t *b, uint8_t *buf, size_t cap)
{
    static const uint8_t tid[12] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12};
    static const uint16_t algs[2] = {STUN_PASSWORD_ALG_SHA256, STUN_PASSWORD_ALG_MD5};
    static const uint16_t unknown[3] = {0x0099, 0x7fff, 0x001a};
    struct sockaddr_storage v4, v6;

    sa_parse_ip("203.0.113.7", 49152, &v4);
    sa_parse_ip("2001:db8::42", 65535, &v6);
    stun_build_init(b, buf, cap, stun_type(STUN_METHOD_ALLOCATE, STUN_CLASS_ERROR), tid);
    stun_build_error(b, STUN_ERR_UNKNOWN_ATTRIBUTE, NULL);
    stun_build_unknown(b, unknown, 3);
    stun_build_xor_addr(b, STUN_ATTR_XOR_RELAYED_ADDRESS, (struct sockaddr *)&v4);
    stun_build_xor_addr(b, STUN_ATTR_XOR_RELAYED_ADDRESS, (struct sockaddr *)&v6);
    stun_build_addr(b, STUN_ATTR_OTHER_ADDRESS, (struct sockaddr *)&v6);
    stun_build_u32(b, STUN_ATTR_LIFETIME, 3600);
    stun_build_channel(b, 0x4abc);
    stun_build_byte_attr(b, STUN_ATTR_REQUESTED_TRANSPORT, STUN_TRANSPORT_UDP);
    stun_build_byte_attr(b, STUN_ATTR_REQUESTED_ADDRESS_FAMILY, STUN_FAMILY_IPV6);
    stun_build_even_port(b, 1);
    stun_build_token(b, 0x0123456789abcdefull);
    stun_build_address_error(b, STUN_FAMILY_IPV6, STUN_ERR_INSUFFICIENT_CAPACITY, "full");
    stun_build_password_algs(b, algs, 2);
    stun_build_password_alg(b, STUN_PASSWORD_ALG_SHA256);
    stun_build_flag(b, STUN_ATTR_DONT_FRAGMENT);
    uint8_t *data = stun_build_attr_reserve(b, STUN_ATTR_DATA, 5);
    if (data)
        memcpy(data, "hello", 5);
    stun_build_integrity(b, (const uint8_t *)"key", 3);
    stun_build_integrity_sha256(b, (const uint8_t *)"key", 3);
    stun_build_fingerprint(b);
}

UNIT_TEST(roundtrip)
{
    uint8_t buf[512];
    stun_build_t b;
    stun_msg_t m;
    struct sockaddr_storage ss;
    char s[SA_STRLEN];

    build_everything(&b, buf, sizeof(buf));
    int n = stun_build_finish(&b);
    CHECK(n > 0);
    CHECK_INT(stun_msg_decode(buf, (size_t)n, &m), 0);
    CHECK_INT(m.cls, STUN_CLASS_ERROR);
    CHECK_INT(m.method, STUN_METHOD_ALLOCATE);
    CHECK_INT(m.nattrs, 19);
    CHECK_INT(stun_auth_verify_integrity(&m, (const uint8_t *)"key", 3), 0);
    CHECK_INT(stun_auth_verify_integrity_sha256(&m, (const uint8_t *)"key", 3, 0), 0);

    int code = 0, reserve = 0, i = 0;
    const uint8_t *reason = NULL;
    size_t rlen = 0, cnt = 0;
    CHECK_INT(stun_attr_get_error(&m, &m.attrs[i++], &code, &reason, &rlen), 0);
    CHECK_INT(code, 420);
    CHECK(rlen == 17 && memcmp(reason, "Unknown Attribute", 17) == 0);
    uint16_t types[4];
    CHECK_INT(stun_attr_get_unknown(&m, &m.attrs[i++], types, 4, &cnt), 0);
    CHECK(cnt == 3 && types[0] == 0x0099 && types[1] == 0x7fff && types[2] == 0x001a);
    CHECK_INT(stun_attr_get_xor_addr(&m, &m.attrs[i++], &ss), 0);
    CHECK_STR(sa_format((struct sockaddr *)&ss, s, sizeof(s)), "203.0.113.7:49152");
    CHECK_INT(stun_attr_get_xor_addr(&m, &m.attrs[i++], &ss), 0);
    CHECK_STR(sa_format((struct sockaddr *)&ss, s, sizeof(s)), "[2001:db8::42]:65535");
    CHECK_INT(stun_attr_get_addr(&m, &m.attrs[i++], &ss), 0);
    CHECK_STR(sa_format((struct sockaddr *)&ss, s, sizeof(s)), "[2001:db8::42]:65535");
    uint32_t u32 = 0;
    CHECK_INT(stun_attr_get_u32(&m, &m.attrs[i++], &u32), 0);
    CHECK_INT(u32, 3600);
    uint16_t u16 = 0;
    CHECK_INT(stun_attr_get_channel(&m, &m.attrs[i++], &u16), 0);
    CHECK_INT(u16, 0x4abc);
    uint8_t u8 = 0;
    CHECK_INT(stun_attr_get_transport(&m, &m.attrs[i++], &u8), 0);
    CHECK_INT(u8, 17);
    CHECK_INT(stun_attr_get_family(&m, &m.attrs[i++], &u8), 0);
    CHECK_INT(u8, 2);
    CHECK_INT(stun_attr_get_even_port(&m, &m.attrs[i++], &reserve), 0);
    CHECK_INT(reserve, 1);
    uint64_t tok = 0;
    CHECK_INT(stun_attr_get_token(&m, &m.attrs[i++], &tok), 0);
    CHECK(tok == 0x0123456789abcdefull);
    const stun_attr_t *a = &m.attrs[i++];
    CHECK(a->type == STUN_ATTR_ADDRESS_ERROR_CODE && a->len == 8);
    CHECK_MEM(stun_attr_value(&m, a),
              "\x02\x00\x05\x08"
              "full",
              8);
    CHECK_INT(stun_attr_get_password_algs(&m, &m.attrs[i++], types, 4, &cnt), 0);
    CHECK(cnt == 2 && types[0] == 2 && types[1] == 1);
    CHECK_INT(stun_attr_get_password_alg(&m, &m.attrs[i++], &u16), 0);
    CHECK_INT(u16, 2);
    a = &m.attrs[i++];
    CHECK(a->type == STUN_ATTR_DONT_FRAGMENT && a->len == 0);
    a = &m.attrs[i++];
    CHECK(a->type == STUN_ATTR_DATA && a->len == 5 &&
          memcmp(stun_attr_value(&m, a), "hello", 5) == 0);
    CHECK_INT(m.mi_idx, i);
    CHECK_INT(m.mi256_idx, i + 1);
    CHECK_INT(m.fp_idx, i + 2);
}

/* Every capacity short of the full size fails with -ENOBUFS and leaves the bytes past `cap` alone;
 * the exact size succeeds with the same bytes. */
UNIT_TEST(overflow)
{
    uint8_t full[512], buf[512 + 16];
    stun_build_t b;

    build_everything(&b, full, sizeof(full));
    int n = stun_build_finish(&b);
    CHECK(n > 0);
    for (size_t cap = 0; cap <= (size_t)n; cap++) {
        memset(buf, 0xa5, sizeof(buf));
        build_everything(&b, buf, cap);
        int rc = stun_build_finish(&b);
        int canary_ok = 1;
        for (size_t k = cap; k < sizeof(buf); k++)
            canary_ok &= buf[k] == 0xa5;
        if (!canary_ok)
            fprintf(stderr, "cap %zu: write past cap\n", cap);
        CHECK(canary_ok);
        CHECK_INT(rc, cap == (size_t)n ? n : -ENOBUFS);
        CHECK(b.len <= cap);
    }
    CHECK_MEM(buf, full, (size_t)n);

    /* Sticky: once full, a smaller attribute that would fit is not written. */
    static const uint8_t tid[12];
    stun_build_init(&b, buf, 28, 0x0001, tid);
    stun_build_attr(&b, STUN_ATTR_DATA, "12345", 5);
    CHECK_INT(b.err, -ENOBUFS);
    stun_build_flag(&b, STUN_ATTR_DONT_FRAGMENT);
    CHECK_INT(b.len, 20);
    CHECK(stun_build_attr_reserve(&b, STUN_ATTR_DATA, 0) == NULL);
    CHECK_INT(stun_build_finish(&b), -ENOBUFS);
}

UNIT_TEST(layout)
{
    uint8_t buf[64];
    stun_build_t b;
    static const uint8_t tid[12] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12};

    memset(buf, 0xee, sizeof(buf));
    stun_build_init(&b, buf, sizeof(buf), 0x0113, tid);
    CHECK_MEM(buf,
              "\x01\x13\x00\x00\x21\x12\xa4\x42\x01\x02\x03\x04\x05\x06\x07\x08\x09\x0a\x0b\x0c",
              20);
    stun_build_attr(&b, STUN_ATTR_DATA, "x", 1); /* padding is zeros, not stale 0xee */
    CHECK_MEM(buf, "\x01\x13\x00\x08", 4);
    CHECK_MEM(buf + 20, "\x00\x13\x00\x01x\x00\x00\x00", 8);
    stun_build_error(&b, STUN_ERR_STALE_NONCE, NULL);
    CHECK_MEM(buf + 2, "\x00\x1c", 2);
    CHECK_MEM(buf + 28, "\x00\x09\x00\x0f\x00\x00\x04\x26Stale Nonce\x00", 20);
    stun_build_even_port(&b, 0);
    CHECK_MEM(buf + 48, "\x00\x18\x00\x01\x00\x00\x00\x00", 8);
    stun_build_channel(&b, 0x4001);
    CHECK_MEM(buf + 56, "\x00\x0c\x00\x04\x40\x01\x00\x00", 8);
    CHECK_INT(stun_build_finish(&b), 64);
    CHECK_MEM(buf + 2, "\x00\x2c", 2);
}

UNIT_TEST(error_reason)
{
    uint8_t buf[1024];
    char reason[400];
    stun_build_t b;
    stun_msg_t m;
    static const uint8_t tid[12];
    const uint8_t *r;
    size_t rlen;
    int code;

    /* 200 ASCII characters: cut to 127 (RFC 8489 §14.8, fewer than 128 characters). */
    memset(reason, 'a', 200);
    reason[200] = '\0';
    stun_build_init(&b, buf, sizeof(buf), 0x0111, tid);
    stun_build_error(&b, 499, reason);
    CHECK_INT(stun_msg_decode(buf, (size_t)stun_build_finish(&b), &m), 0);
    CHECK_INT(stun_attr_get_error(&m, &m.attrs[0], &code, &r, &rlen), 0);
    CHECK_INT(code, 499);
    CHECK_INT(rlen, 127);

    /* 150 two-byte characters (U+00E9): 127 characters = 254 bytes, never half a character. */
    for (int i = 0; i < 150; i++)
        reason[2 * i] = (char)0xc3, reason[2 * i + 1] = (char)0xa9;
    reason[300] = '\0';
    stun_build_init(&b, buf, sizeof(buf), 0x0111, tid);
    stun_build_error(&b, 500, reason);
    CHECK_INT(stun_msg_decode(buf, (size_t)stun_build_finish(&b), &m), 0);
    CHECK_INT(stun_attr_get_error(&m, &m.attrs[0], &code, &r, &rlen), 0);
    CHECK_INT(rlen, 254);

    /* Exactly 127 is kept whole; an unknown code with NULL gets an empty phrase. */
    memset(reason, 'b', 127);
    reason[127] = '\0';
    stun_build_init(&b, buf, sizeof(buf), 0x0111, tid);
    stun_build_error(&b, 300, reason);
    stun_build_error(&b, 699, NULL);
    CHECK_INT(stun_msg_decode(buf, (size_t)stun_build_finish(&b), &m), 0);
    CHECK_INT(stun_attr_get_error(&m, &m.attrs[0], &code, &r, &rlen), 0);
    CHECK(code == 300 && rlen == 127);
    CHECK_INT(stun_attr_get_error(&m, &m.attrs[1], &code, &r, &rlen), 0);
    CHECK(code == 699 && rlen == 0);

    static const int codes[] = {400, 401, 403, 420, 437, 438, 440, 441, 442, 443, 486, 500, 508};
    for (size_t i = 0; i < ARRAY_SIZE(codes); i++)
        CHECK(strlen(stun_error_reason(codes[i])) > 0);
    CHECK_STR(stun_error_reason(401), "Unauthorized");
    CHECK_STR(stun_error_reason(442), "Unsupported Transport Protocol");
    CHECK_STR(stun_error_reason(123), "");
}

UNIT_TEST(bad_arguments)
{
    uint8_t buf[64];
    stun_build_t b;
    static const uint8_t tid[12];
    struct sockaddr_storage ss;

    stun_build_init(&b, buf, sizeof(buf), 0x0001, tid);
    stun_build_error(&b, 299, NULL);
    CHECK_INT(stun_build_finish(&b), -EINVAL);
    stun_build_init(&b, buf, sizeof(buf), 0x0001, tid);
    stun_build_error(&b, 700, "x");
    CHECK_INT(stun_build_finish(&b), -EINVAL);
    stun_build_init(&b, buf, sizeof(buf), 0xc001, tid); /* top bits must be 00 */
    CHECK_INT(stun_build_finish(&b), -EINVAL);
    stun_build_init(&b, buf, sizeof(buf), 0x0001, NULL);
    CHECK_INT(stun_build_finish(&b), -EINVAL);
    stun_build_init(&b, buf, 19, 0x0001, tid);
    CHECK_INT(stun_build_finish(&b), -ENOBUFS);
    stun_build_init(&b, buf, sizeof(buf), 0x0001, tid);
    memset(&ss, 0, sizeof(ss));
    ss.ss_family = AF_UNIX;
    stun_build_xor_addr(&b, STUN_ATTR_XOR_PEER_ADDRESS, (struct sockaddr *)&ss);
    CHECK_INT(stun_build_finish(&b), -EINVAL);
    CHECK_INT(b.len, 20);
    stun_build_init(&b, buf, sizeof(buf), 0x0001, tid);
    CHECK(stun_build_attr_reserve(&b, STUN_ATTR_DATA, 0x10000) == NULL);
    CHECK_INT(stun_build_finish(&b), -EINVAL);
    /* The first error sticks: later a different one does not replace it. */
    stun_build_init(&b, buf, 24, 0x0001, tid);
    stun_build_u32(&b, STUN_ATTR_LIFETIME, 1);
    stun_build_error(&b, 1, NULL);
    CHECK_INT(stun_build_finish(&b), -ENOBUFS);
}

UNIT_MAIN("test_stun_build")
