/* turn_auth.c - stateless NONCE values, TURN REST credentials and the base64 codecs they use.
 *
 * A nonce (RFC 8489 §9.2 and §14.10, RFC 8656 §5) is "obMatJos2" + the base64 of the 24-bit
 * security feature set (RFC 8489 §9.2, §18.1) + base64url (RFC 4648 §5, no padding) of a 32-bit
 * expiry and the first 12 bytes of HMAC-SHA256(secret, expiry || features || family || client IP ||
 * client port). Binding the nonce to the client's transport address meets RFC 8489 §9.2's rule that
 * a nonce is never reused for another source, and binding the feature bits stops a downgrade: a
 * client cannot strip "Password algorithms" from a nonce the server issued (RFC 8489 §9.2.1). TURN
 * REST (draft-uberti-behave-turn-rest-00, coturn's use-auth-secret): the password is
 * base64(HMAC-SHA1(secret, username)) and the username carries its expiry. The base64 decoders are
 * strict (RFC 4648 §3.3, §3.5): no whitespace, no stray padding, zero pad bits, so one value has
 * exactly one spelling. Pure functions over caller buffers; no allocation, no state.
 */
#include <assert.h>
#include <limits.h>
#include <netinet/in.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "turn_auth.h"

/* RFC 8489 §9.2: the cookie that tells a client the nonce carries security feature bits. */
#define NONCE_COOKIE "obMatJos2"
#define NONCE_COOKIE_LEN 9
#define NONCE_FEAT_CHARS 4 /* base64 of 3 bytes */
#define NONCE_MAC_LEN 12   /* 96 bits of HMAC-SHA256: forging needs ~2^96 online guesses */
#define NONCE_BODY_LEN (4 + NONCE_MAC_LEN)
#define NONCE_BODY_CHARS 22 /* base64url of 16 bytes, unpadded */
#define NONCE_LEN (NONCE_COOKIE_LEN + NONCE_FEAT_CHARS + NONCE_BODY_CHARS)
/* An authentic nonce claiming a later expiry than this was not made by a sane clock. */
#define NONCE_MAX_AHEAD (2 * 86400)

/* MAC input: expiry(4) features(3) family(1) address(16 max) port(2). */
#define NONCE_MAC_INPUT_MAX (4 + 3 + 1 + 16 + 2)

_Static_assert(NONCE_LEN <= TURN_NONCE_MAX, "nonce longer than TURN_NONCE_MAX");

static const char b64_std[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
static const char b64_url[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/* HMAC with OpenSSL's one-shot API. An empty key is passed as a real pointer: some OpenSSL 3
 * releases treat a NULL key as "no key set" and fail. Returns 0 or -1. */
static int hmac(const EVP_MD *md, const void *key, size_t klen, const uint8_t *data, size_t dlen,
                uint8_t *out, unsigned want)
{
    static const uint8_t empty = 0;
    unsigned olen = 0;

    if (klen > INT_MAX)
        return -1;
    if (!HMAC(md, klen ? key : &empty, (int)klen, dlen ? data : &empty, dlen, out, &olen) ||
        olen != want)
        return -1;
    return 0;
}

static int b64_encode_with(const char *alphabet, int pad, const uint8_t *in, size_t n, char *out,
                           size_t cap)
{
    size_t full = n / 3, rest = n % 3;

    /* The result must fit an int; this also keeps the length arithmetic below from wrapping. */
    if (n > (size_t)(INT_MAX - 4) / 4 * 3)
        return -1;
    size_t len = full * 4 + (rest == 0 ? 0 : pad ? 4 : rest + 1);
    if (!out || cap < len + 1)
        return -1;
    char *o = out;
    for (size_t i = 0; i < full; i++, in += 3) {
        uint32_t v = (uint32_t)in[0] << 16 | (uint32_t)in[1] << 8 | in[2];
        *o++ = alphabet[v >> 18];
        *o++ = alphabet[(v >> 12) & 63];
        *o++ = alphabet[(v >> 6) & 63];
        *o++ = alphabet[v & 63];
    }
    if (rest) {
        uint32_t v = (uint32_t)in[0] << 16 | (rest == 2 ? (uint32_t)in[1] << 8 : 0);
        *o++ = alphabet[v >> 18];
        *o++ = alphabet[(v >> 12) & 63];
        if (rest == 2)
            *o++ = alphabet[(v >> 6) & 63];
        else if (pad)
            *o++ = '=';
        if (pad)
            *o++ = '=';
    }
    *o = '\0';
    return (int)len;
}

/* Value of one character of the alphabet, or -1. */
static int b64_value(int url, char ch)
{
    if (ch >= 'A' && ch <= 'Z')
        return ch - 'A';
    if (ch >= 'a' && ch <= 'z')
        return ch - 'a' + 26;
    if (ch >= '0' && ch <= '9')
        return ch - '0' + 52;
    if (ch == (url ? '-' : '+'))
        return 62;
    if (ch == (url ? '_' : '/'))
        return 63;
    return -1;
}

/* Decodes n characters with no padding left in them (n % 4 != 1). The pad bits of a final partial
 * group must be zero (RFC 4648 §3.5), otherwise "QQ" and "QR" would both decode to "A". */
static int b64_decode_body(int url, const char *in, size_t n, uint8_t *out, size_t cap)
{
    size_t rest = n % 4;

    if (rest == 1 || n > INT_MAX)
        return -1;
    size_t len = n / 4 * 3 + (rest ? rest - 1 : 0);
    if (len > cap || (len > 0 && !out))
        return -1;
    size_t o = 0;
    for (size_t i = 0; i < n; i += 4) {
        size_t k = n - i < 4 ? n - i : 4;
        uint32_t v = 0;
        for (size_t j = 0; j < 4; j++) {
            int d = j < k ? b64_value(url, in[i + j]) : 0;
            if (d < 0)
                goto bad;
            v = v << 6 | (uint32_t)d;
        }
        if ((k == 2 && (v & 0xffff)) || (k == 3 && (v & 0xff)))
            goto bad;
        out[o++] = (uint8_t)(v >> 16);
        if (k > 2)
            out[o++] = (uint8_t)(v >> 8);
        if (k > 3)
            out[o++] = (uint8_t)v;
    }
    return (int)len;
bad:
    /* No partial result: the caller may have passed a buffer it later reads. */
    if (o)
        memset(out, 0, o);
    return -1;
}

int turn_b64_encode(const uint8_t *in, size_t n, char *out, size_t cap)
{
    return b64_encode_with(b64_std, 1, in, n, out, cap);
}

int turn_b64url_encode(const uint8_t *in, size_t n, char *out, size_t cap)
{
    return b64_encode_with(b64_url, 0, in, n, out, cap);
}

int turn_b64_decode(const char *in, size_t n, uint8_t *out, size_t cap)
{
    /* RFC 4648 §4: whole quanta, with one or two '=' only at the very end. */
    if (n % 4 != 0)
        return -1;
    if (n > 0 && in[n - 1] == '=')
        n -= (n > 1 && in[n - 2] == '=') ? 2 : 1;
    return b64_decode_body(0, in, n, out, cap);
}

int turn_b64url_decode(const char *in, size_t n, uint8_t *out, size_t cap)
{
    /* RFC 4648 §5 as used here: never padded, so '=' is just a bad character. */
    return b64_decode_body(1, in, n, out, cap);
}

/* Writes the MAC input for (expiry, features, client) into buf; returns its length, 0 for an
 * unknown family. The family byte keeps an IPv4 client from colliding with an IPv6 one. */
static size_t nonce_mac_input(uint32_t expiry, const uint8_t feat[3], const struct sockaddr *client,
                              uint8_t buf[NONCE_MAC_INPUT_MAX])
{
    const uint8_t *ip, *port;
    uint8_t family;
    size_t iplen;

    if (client->sa_family == AF_INET) {
        const struct sockaddr_in *sin = (const struct sockaddr_in *)client;
        ip = (const uint8_t *)&sin->sin_addr;
        port = (const uint8_t *)&sin->sin_port;
        iplen = 4;
        family = 1; /* STUN address family values (RFC 8489 §14.1) */
    } else if (client->sa_family == AF_INET6) {
        const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)client;
        ip = sin6->sin6_addr.s6_addr;
        port = (const uint8_t *)&sin6->sin6_port;
        iplen = 16;
        family = 2;
    } else {
        return 0;
    }
    buf[0] = (uint8_t)(expiry >> 24);
    buf[1] = (uint8_t)(expiry >> 16);
    buf[2] = (uint8_t)(expiry >> 8);
    buf[3] = (uint8_t)expiry;
    memcpy(buf + 4, feat, 3);
    buf[7] = family;
    memcpy(buf + 8, ip, iplen);
    memcpy(buf + 8 + iplen, port, 2); /* network order, as stored */
    return 8 + iplen + 2;
}

static int nonce_mac(const uint8_t secret[TURN_NONCE_SECRET_LEN], uint32_t expiry,
                     const uint8_t feat[3], const struct sockaddr *client,
                     uint8_t mac[NONCE_MAC_LEN])
{
    uint8_t in[NONCE_MAC_INPUT_MAX], full[32];
    size_t n = nonce_mac_input(expiry, feat, client, in);

    if (n == 0 || hmac(EVP_sha256(), secret, TURN_NONCE_SECRET_LEN, in, n, full, 32) != 0)
        return -1;
    memcpy(mac, full, NONCE_MAC_LEN);
    return 0;
}

int turn_nonce_make(const uint8_t secret[TURN_NONCE_SECRET_LEN], uint32_t expiry, uint32_t features,
                    const struct sockaddr *client, char *out, size_t cap)
{
    uint8_t feat[3], body[NONCE_BODY_LEN];

    /* Only 24 feature bits exist (RFC 8489 §18.1); anything above is a caller bug. */
    assert((features & ~0xffffffu) == 0);
    feat[0] = (uint8_t)(features >> 16);
    feat[1] = (uint8_t)(features >> 8);
    feat[2] = (uint8_t)features;
    body[0] = (uint8_t)(expiry >> 24);
    body[1] = (uint8_t)(expiry >> 16);
    body[2] = (uint8_t)(expiry >> 8);
    body[3] = (uint8_t)expiry;
    if (!out || cap < NONCE_LEN + 1 || nonce_mac(secret, expiry, feat, client, body + 4) != 0)
        return -1;
    memcpy(out, NONCE_COOKIE, NONCE_COOKIE_LEN);
    if (turn_b64_encode(feat, 3, out + NONCE_COOKIE_LEN, cap - NONCE_COOKIE_LEN) !=
            NONCE_FEAT_CHARS ||
        turn_b64url_encode(body, sizeof(body), out + NONCE_COOKIE_LEN + NONCE_FEAT_CHARS,
                           cap - NONCE_COOKIE_LEN - NONCE_FEAT_CHARS) != NONCE_BODY_CHARS)
        return -1;
    return NONCE_LEN;
}

enum turn_nonce_result turn_nonce_check(const uint8_t secret[TURN_NONCE_SECRET_LEN],
                                        const char *nonce, size_t len, uint32_t now,
                                        const struct sockaddr *client, uint32_t *features)
{
    uint8_t feat[3], body[NONCE_BODY_LEN], mac[NONCE_MAC_LEN];

    if (features)
        *features = 0;
    /* Cheap structural checks first: the value is attacker-chosen and up to 763 bytes. */
    if (!nonce || len != NONCE_LEN || memcmp(nonce, NONCE_COOKIE, NONCE_COOKIE_LEN) != 0)
        return TURN_NONCE_BAD;
    if (turn_b64_decode(nonce + NONCE_COOKIE_LEN, NONCE_FEAT_CHARS, feat, sizeof(feat)) != 3 ||
        turn_b64url_decode(nonce + NONCE_COOKIE_LEN + NONCE_FEAT_CHARS, NONCE_BODY_CHARS, body,
                           sizeof(body)) != NONCE_BODY_LEN)
        return TURN_NONCE_BAD;
    uint32_t expiry =
        (uint32_t)body[0] << 24 | (uint32_t)body[1] << 16 | (uint32_t)body[2] << 8 | body[3];
    if (nonce_mac(secret, expiry, feat, client, mac) != 0)
        return TURN_NONCE_BAD;
    /* Constant time, so response timing does not reveal how many MAC bytes a forgery got right. */
    if (CRYPTO_memcmp(mac, body + 4, NONCE_MAC_LEN) != 0)
        return TURN_NONCE_BAD;
    if (features)
        *features = (uint32_t)feat[0] << 16 | (uint32_t)feat[1] << 8 | feat[2];
    /* RFC 8489 §9.2.4 / RFC 8656 §5: an expired nonce is answered 438 so the client retries. One
     * from beyond any expiry we would issue means a clock went backwards; do not trust it either.
     */
    if (expiry < now || (uint64_t)expiry > (uint64_t)now + NONCE_MAX_AHEAD)
        return TURN_NONCE_STALE;
    return TURN_NONCE_OK;
}

int turn_rest_password(const char *secret, size_t slen, const char *user, size_t ulen, char *out,
                       size_t cap)
{
    uint8_t mac[20];

    if (!out || cap < 29 ||
        hmac(EVP_sha1(), secret, slen, (const uint8_t *)user, ulen, mac, sizeof(mac)) != 0)
        return -1;
    return turn_b64_encode(mac, sizeof(mac), out, cap);
}

/* Parses s[0..n) as a decimal timestamp. At most 19 digits, and no int64 overflow. */
static int parse_digits(const char *s, size_t n, int64_t *out)
{
    int64_t v = 0;

    if (n == 0 || n > 19)
        return -1;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        int d = s[i] - '0';
        if (v > (INT64_MAX - d) / 10)
            return -1;
        v = v * 10 + d;
    }
    *out = v;
    return 0;
}

int turn_rest_expiry(const char *user, size_t ulen, int64_t *expiry)
{
    const char *first, *last = NULL;

    if (!user || ulen == 0)
        return -1;
    first = memchr(user, ':', ulen);
    if (!first)
        return parse_digits(user, ulen, expiry);
    /* coturn accepts both "timestamp:id" (the draft's order) and "id:timestamp". */
    if (parse_digits(user, (size_t)(first - user), expiry) == 0)
        return 0;
    for (size_t i = ulen; i > 0; i--) {
        if (user[i - 1] == ':') {
            last = user + i - 1;
            break;
        }
    }
    size_t off = (size_t)(last - user) + 1;
    return parse_digits(last + 1, ulen - off, expiry);
}
