/* stun_auth.c - MESSAGE-INTEGRITY(-SHA256) computation and checks, long-term keys, USERHASH.
 *
 * RFC 8489 §14.5-14.6 (HMAC-SHA1 / HMAC-SHA256 over the message with the header length adjusted to
 * end at the integrity attribute), §9.2.2 and §18.5 (MD5 and SHA-256 long-term keys), §14.4
 * (USERHASH), RFC 5389 §15.4. SASLprep lives in saslprep.c. The received buffer is const and
 * shared, so instead of patching its length field in place we hash a patched copy of the 20-byte
 * header and then the rest of the bytes straight from the buffer. Every compare of secret-derived
 * bytes is constant-time (CRYPTO_memcmp) so a forger learns nothing from response timing.
 */
#include <stdlib.h>
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/params.h>

#include "stun_auth.h"

int stun_auth_hmac_msg(int sha256, const uint8_t *key, size_t keylen, const uint8_t *buf,
                       size_t attr_off, size_t attr_end, uint8_t out[32])
{
    /* OpenSSL wants a non-NULL key pointer even for an empty (legal, if odd) short-term password.
     */
    static const uint8_t empty_key[1];
    char sha1_name[] = "SHA1", sha256_name[] = "SHA256";
    uint8_t hdr[STUN_HEADER_LEN];
    size_t outlen = 0, want = sha256 ? 32 : 20;
    int rc = -1;

    if (attr_off < STUN_HEADER_LEN || attr_end < attr_off || attr_end - STUN_HEADER_LEN > 0xFFFF)
        return -1;
    memcpy(hdr, buf, STUN_HEADER_LEN);
    hdr[2] = (uint8_t)((attr_end - STUN_HEADER_LEN) >> 8);
    hdr[3] = (uint8_t)(attr_end - STUN_HEADER_LEN);

    /* Fetching the MAC on every call costs a provider lookup per packet; common/ keeps no global
     * state, so a cached EVP_MAC would have to come from the caller. Revisit if profiles show it.
     */
    EVP_MAC *mac = EVP_MAC_fetch(NULL, "HMAC", NULL);
    EVP_MAC_CTX *ctx = mac ? EVP_MAC_CTX_new(mac) : NULL;
    OSSL_PARAM params[2] = {
        OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, sha256 ? sha256_name : sha1_name,
                                         0),
        OSSL_PARAM_construct_end(),
    };
    if (ctx && EVP_MAC_init(ctx, keylen ? key : empty_key, keylen, params) &&
        EVP_MAC_update(ctx, hdr, sizeof(hdr)) &&
        EVP_MAC_update(ctx, buf + STUN_HEADER_LEN, attr_off - STUN_HEADER_LEN) &&
        EVP_MAC_final(ctx, out, &outlen, 32) && outlen == want)
        rc = 0;
    EVP_MAC_CTX_free(ctx);
    EVP_MAC_free(mac);
    return rc;
}

/* Compare the first `n` bytes of the HMAC with the attribute value at attribute index `idx`. */
static int verify_at(const stun_msg_t *msg, int idx, int sha256, size_t n, const uint8_t *key,
                     size_t keylen)
{
    const stun_attr_t *a = &msg->attrs[idx];
    uint8_t mac[32];

    if (stun_auth_hmac_msg(sha256, key, keylen, msg->buf, a->offset - 4u,
                           a->offset + (size_t)a->len, mac) < 0)
        return -1;
    return CRYPTO_memcmp(mac, stun_attr_value(msg, a), n) == 0 ? 0 : -1;
}

int stun_auth_verify_integrity(const stun_msg_t *msg, const uint8_t *key, size_t keylen)
{
    if (msg->mi_idx < 0 || msg->attrs[msg->mi_idx].len != 20)
        return -1;
    return verify_at(msg, msg->mi_idx, 0, 20, key, keylen);
}

int stun_auth_verify_integrity_sha256(const stun_msg_t *msg, const uint8_t *key, size_t keylen,
                                      int allow_truncated)
{
    if (msg->mi256_idx < 0)
        return -1;
    size_t n = msg->attrs[msg->mi256_idx].len;
    /* RFC 8489 §14.6: 16..32 in steps of 4, and the full 32 unless the usage allows truncation
     * (neither TURN nor plain STUN does). decode already checked the range; re-check so a
     * hand-made stun_msg_t cannot make us compare past the MAC. */
    if (n < 16 || n > 32 || (n & 3) != 0 || (!allow_truncated && n != 32))
        return -1;
    return verify_at(msg, msg->mi256_idx, 1, n, key, keylen);
}

/* Hash the concatenation of `n` byte strings. Failure here means the crypto library is broken or
 * out of memory; a void caller cannot report it, and handing back a predictable key would let
 * anyone authenticate, so stop. */
static void digest_parts(const EVP_MD *md, const void *const *parts, const size_t *lens, size_t n,
                         uint8_t *out)
{
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    int ok = ctx && EVP_DigestInit_ex(ctx, md, NULL);

    for (size_t i = 0; ok && i < n; i++)
        ok = EVP_DigestUpdate(ctx, parts[i], lens[i]);
    ok = ok && EVP_DigestFinal_ex(ctx, out, NULL);
    EVP_MD_CTX_free(ctx);
    if (!ok)
        abort();
}

/* user ":" realm ":" pass (RFC 8489 §9.2.2). */
static void digest_key(const EVP_MD *md, const char *user, size_t ulen, const char *realm,
                       size_t rlen, const char *pass, size_t plen, uint8_t *out)
{
    const void *parts[5] = {user, ":", realm, ":", pass};
    size_t lens[5] = {ulen, 1, rlen, 1, plen};

    digest_parts(md, parts, lens, 5, out);
}

void stun_auth_key_md5(const char *user, size_t ulen, const char *realm, size_t rlen,
                       const char *pass, size_t plen, uint8_t out[STUN_KEY_MD5_LEN])
{
    digest_key(EVP_md5(), user, ulen, realm, rlen, pass, plen, out);
}

void stun_auth_key_sha256(const char *user, size_t ulen, const char *realm, size_t rlen,
                          const char *pass, size_t plen, uint8_t out[STUN_KEY_SHA256_LEN])
{
    digest_key(EVP_sha256(), user, ulen, realm, rlen, pass, plen, out);
}

void stun_auth_userhash(const char *user, size_t ulen, const char *realm, size_t rlen,
                        uint8_t out[STUN_USERHASH_LEN])
{
    /* RFC 8489 §14.4: SHA-256(username ":" realm), both already OpaqueString-processed. */
    const void *parts[3] = {user, ":", realm};
    size_t lens[3] = {ulen, 1, rlen};

    digest_parts(EVP_sha256(), parts, lens, 3, out);
}

int stun_auth_ct_equal(const void *a, const void *b, size_t n)
{
    return CRYPTO_memcmp(a, b, n) == 0 ? 0 : 1;
}

void stun_auth_hex_encode(const uint8_t *in, size_t n, char *out)
{
    static const char digits[] = "0123456789abcdef";

    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[in[i] >> 4];
        out[2 * i + 1] = digits[in[i] & 0x0F];
    }
    out[2 * n] = '\0';
}

int stun_auth_hex_digit(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

int stun_auth_hex_decode(const char *in, size_t inlen, uint8_t *out, size_t cap)
{
    if ((inlen & 1) != 0 || inlen / 2 > cap)
        return -1;
    for (size_t i = 0; i < inlen / 2; i++) {
        int hi = stun_auth_hex_digit(in[2 * i]), lo = stun_auth_hex_digit(in[2 * i + 1]);
        if (hi < 0 || lo < 0)
            return -1;
        out[i] = (uint8_t)(hi << 4 | lo);
    }
    return (int)(inlen / 2);
}
