/* stun_build.c - encode STUN messages into caller storage with a sticky error.
 *
 * RFC 8489 §5 (header; the length field is kept in step after every attribute), §14 (TLVs, padding
 * sent as zeros), §14.1-14.2 (plain and XOR address forms), §14.8 (ERROR-CODE, reason < 128
 * characters), §14.5-14.7 (MESSAGE-INTEGRITY, MESSAGE-INTEGRITY-SHA256, FINGERPRINT), RFC 8656 §18
 * (TURN attributes, ADDRESS-ERROR-CODE in §18.12). The first failure is remembered and turns every
 * later call into a no-op, so a handler builds a whole response and checks once; nothing is ever
 * written past `cap`.
 */
#include <errno.h>
#include <string.h>

#include <netinet/in.h>

#include "crc32.h"
#include "stun_auth.h"
#include "stun_build.h"

#define STUN_FINGERPRINT_XOR 0x5354554Eu /* RFC 8489 §14.7 */
#define STUN_REASON_MAX_CHARS 127        /* RFC 8489 §14.8: fewer than 128 characters */

static void put16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
}

static void put32(uint8_t *p, uint32_t v)
{
    put16(p, (uint16_t)(v >> 16));
    put16(p + 2, (uint16_t)v);
}

void stun_build_init(stun_build_t *b, uint8_t *buf, size_t cap, uint16_t type, const uint8_t *tid)
{
    b->buf = buf;
    b->cap = cap;
    b->len = 0;
    b->err = 0;
    if (!buf || !tid || (type & 0xC000) != 0) {
        b->err = -EINVAL;
        return;
    }
    if (cap < STUN_HEADER_LEN) {
        b->err = -ENOBUFS;
        return;
    }
    put16(buf, type);
    put16(buf + 2, 0);
    put32(buf + 4, STUN_MAGIC_COOKIE);
    memcpy(buf + 8, tid, STUN_TID_LEN);
    b->len = STUN_HEADER_LEN;
}

uint8_t *stun_build_attr_reserve(stun_build_t *b, uint16_t type, size_t len)
{
    if (b->err)
        return NULL;
    size_t padded = (len + 3) & ~(size_t)3;
    /* The 16-bit attribute and message lengths bound what can be described at all. */
    if (len > 0xFFFF || b->len - STUN_HEADER_LEN + 4 + padded > 0xFFFF) {
        b->err = -EINVAL;
        return NULL;
    }
    if (b->cap - b->len < 4 + padded) {
        b->err = -ENOBUFS;
        return NULL;
    }
    uint8_t *p = b->buf + b->len;
    put16(p, type);
    put16(p + 2, (uint16_t)len);
    /* RFC 8489 §14: pad with zeros, so no stale buffer bytes leak to the peer. */
    memset(p + 4 + len, 0, padded - len);
    b->len += 4 + padded;
    put16(b->buf + 2, (uint16_t)(b->len - STUN_HEADER_LEN));
    return p + 4;
}

void stun_build_attr(stun_build_t *b, uint16_t type, const void *value, size_t len)
{
    uint8_t *p = stun_build_attr_reserve(b, type, len);

    if (p && len)
        memcpy(p, value, len);
}

void stun_build_u32(stun_build_t *b, uint16_t type, uint32_t v)
{
    uint8_t *p = stun_build_attr_reserve(b, type, 4);

    if (p)
        put32(p, v);
}

void stun_build_flag(stun_build_t *b, uint16_t type) { stun_build_attr_reserve(b, type, 0); }

/* Shared by both address forms (RFC 8489 §14.1-14.2). The XOR mask is the cookie followed by the
 * transaction id, i.e. bytes 4..19 of the header already written. */
static void build_addr(stun_build_t *b, uint16_t type, const struct sockaddr *sa, int use_xor)
{
    const uint8_t *ip;
    uint16_t port;
    size_t iplen;
    uint8_t family;

    if (b->err)
        return;
    if (sa && sa->sa_family == AF_INET) {
        const struct sockaddr_in *sin = (const struct sockaddr_in *)sa;
        ip = (const uint8_t *)&sin->sin_addr;
        port = ntohs(sin->sin_port);
        iplen = 4;
        family = STUN_FAMILY_IPV4;
    } else if (sa && sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)sa;
        ip = (const uint8_t *)&sin6->sin6_addr;
        port = ntohs(sin6->sin6_port);
        iplen = 16;
        family = STUN_FAMILY_IPV6;
    } else {
        b->err = -EINVAL;
        return;
    }
    uint8_t *p = stun_build_attr_reserve(b, type, 4 + iplen);
    if (!p)
        return;
    p[0] = 0;
    p[1] = family;
    put16(p + 2, use_xor ? (uint16_t)(port ^ (STUN_MAGIC_COOKIE >> 16)) : port);
    for (size_t i = 0; i < iplen; i++)
        p[4 + i] = (uint8_t)(ip[i] ^ (use_xor ? b->buf[4 + i] : 0));
}

void stun_build_xor_addr(stun_build_t *b, uint16_t type, const struct sockaddr *sa)
{
    build_addr(b, type, sa, 1);
}

void stun_build_addr(stun_build_t *b, uint16_t type, const struct sockaddr *sa)
{
    build_addr(b, type, sa, 0);
}

/* Byte length of the longest prefix of `s` with at most STUN_REASON_MAX_CHARS UTF-8 characters,
 * never cutting a multi-byte sequence in half. */
static size_t reason_len(const char *s)
{
    size_t i = 0, chars = 0;

    for (; s[i]; i++) {
        /* A byte that is not a continuation byte (10xxxxxx) starts a new character. */
        if (((unsigned char)s[i] & 0xC0) != 0x80 && chars++ == STUN_REASON_MAX_CHARS)
            break;
    }
    return i;
}

/* ERROR-CODE and ADDRESS-ERROR-CODE share the layout: a first byte (reserved, or the family),
 * reserved bits, class (3 bits), number (0..99), reason phrase. */
static void build_error_attr(stun_build_t *b, uint16_t type, uint8_t first, int code,
                             const char *reason)
{
    if (b->err)
        return;
    if (code < 300 || code > 699) {
        b->err = -EINVAL;
        return;
    }
    if (!reason)
        reason = stun_error_reason(code);
    size_t rlen = reason_len(reason);
    uint8_t *p = stun_build_attr_reserve(b, type, 4 + rlen);
    if (!p)
        return;
    p[0] = first;
    p[1] = 0;
    p[2] = (uint8_t)(code / 100);
    p[3] = (uint8_t)(code % 100);
    memcpy(p + 4, reason, rlen);
}

void stun_build_error(stun_build_t *b, int code, const char *reason)
{
    build_error_attr(b, STUN_ATTR_ERROR_CODE, 0, code, reason);
}

void stun_build_address_error(stun_build_t *b, uint8_t family, int code, const char *reason)
{
    build_error_attr(b, STUN_ATTR_ADDRESS_ERROR_CODE, family, code, reason);
}

void stun_build_unknown(stun_build_t *b, const uint16_t *types, size_t n)
{
    if (n > 0xFFFF / 2) {
        if (!b->err)
            b->err = -EINVAL;
        return;
    }
    uint8_t *p = stun_build_attr_reserve(b, STUN_ATTR_UNKNOWN_ATTRIBUTES, 2 * n);
    if (!p)
        return;
    for (size_t i = 0; i < n; i++)
        put16(p + 2 * i, types[i]);
}

void stun_build_channel(stun_build_t *b, uint16_t channel)
{
    stun_build_u32(b, STUN_ATTR_CHANNEL_NUMBER, (uint32_t)channel << 16);
}

void stun_build_byte_attr(stun_build_t *b, uint16_t type, uint8_t v)
{
    stun_build_u32(b, type, (uint32_t)v << 24);
}

void stun_build_even_port(stun_build_t *b, int reserve)
{
    uint8_t v = reserve ? 0x80 : 0x00;

    stun_build_attr(b, STUN_ATTR_EVEN_PORT, &v, 1);
}

void stun_build_token(stun_build_t *b, uint64_t v)
{
    uint8_t *p = stun_build_attr_reserve(b, STUN_ATTR_RESERVATION_TOKEN, 8);

    if (p) {
        put32(p, (uint32_t)(v >> 32));
        put32(p + 4, (uint32_t)v);
    }
}

void stun_build_password_algs(stun_build_t *b, const uint16_t *algs, size_t n)
{
    if (n > 0xFFFF / 4) {
        if (!b->err)
            b->err = -EINVAL;
        return;
    }
    uint8_t *p = stun_build_attr_reserve(b, STUN_ATTR_PASSWORD_ALGORITHMS, 4 * n);
    if (!p)
        return;
    /* RFC 8489 §14.11: both defined algorithms take no parameters. */
    for (size_t i = 0; i < n; i++) {
        put16(p + 4 * i, algs[i]);
        put16(p + 4 * i + 2, 0);
    }
}

void stun_build_password_alg(stun_build_t *b, uint16_t alg)
{
    stun_build_u32(b, STUN_ATTR_PASSWORD_ALGORITHM, (uint32_t)alg << 16);
}

/* Reserve the integrity attribute first: the header length then already ends at its end, which is
 * the value RFC 8489 §14.5-14.6 hash with. */
static void build_hmac(stun_build_t *b, uint16_t type, int sha256, const uint8_t *key,
                       size_t keylen)
{
    size_t maclen = sha256 ? 32 : 20;
    uint8_t mac[32];
    uint8_t *p = stun_build_attr_reserve(b, type, maclen);

    if (!p)
        return;
    size_t off = (size_t)(p - b->buf) - 4;
    if (stun_auth_hmac_msg(sha256, key, keylen, b->buf, off, b->len, mac) < 0) {
        b->err = -ENOMEM; /* the crypto library failed: nothing sensible to send */
        return;
    }
    memcpy(p, mac, maclen);
}

void stun_build_integrity(stun_build_t *b, const uint8_t *key, size_t keylen)
{
    build_hmac(b, STUN_ATTR_MESSAGE_INTEGRITY, 0, key, keylen);
}

void stun_build_integrity_sha256(stun_build_t *b, const uint8_t *key, size_t keylen)
{
    build_hmac(b, STUN_ATTR_MESSAGE_INTEGRITY_SHA256, 1, key, keylen);
}

void stun_build_fingerprint(stun_build_t *b)
{
    uint8_t *p = stun_build_attr_reserve(b, STUN_ATTR_FINGERPRINT, 4);

    /* RFC 8489 §14.7: CRC of everything before the attribute, header length including it. */
    if (p)
        put32(p, crc32_compute(b->buf, (size_t)(p - b->buf) - 4) ^ STUN_FINGERPRINT_XOR);
}

int stun_build_finish(const stun_build_t *b) { return b->err ? b->err : (int)b->len; }
