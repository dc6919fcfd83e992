/* stun_auth.h - message integrity and long-term credential keys.
 *
 * RFC 8489 §9.2 (long-term credentials: MD5 and SHA-256 keys, USERHASH, OpaqueString), §14.5-14.6
 * (MESSAGE-INTEGRITY, MESSAGE-INTEGRITY-SHA256 with the length adjustment), RFC 5389 §15.4
 * (SASLprep for the RFC 5769 long-term vector). Compares are constant-time. Thread-safe, no global
 * state.
 */
#ifndef UTURN_STUN_AUTH_H
#define UTURN_STUN_AUTH_H

#include <stddef.h>
#include <stdint.h>

#include "stun_msg.h"

#define STUN_KEY_MD5_LEN 16
#define STUN_KEY_SHA256_LEN 32
#define STUN_KEY_MAX_LEN 32
#define STUN_USERHASH_LEN 32

/* Verify the message's MESSAGE-INTEGRITY (HMAC-SHA1) with `key`. Returns 0 if it verifies, -1 if it
 * does not or the message has none. */
int stun_auth_verify_integrity(const stun_msg_t *msg, const uint8_t *key, size_t keylen);
/* Verify MESSAGE-INTEGRITY-SHA256 (value 16..32 bytes, multiple of 4; we require the full 32 unless
 * `allow_truncated`). Returns 0 or -1. */
int stun_auth_verify_integrity_sha256(const stun_msg_t *msg, const uint8_t *key, size_t keylen,
                                      int allow_truncated);

/* The HMAC both the verifier and the builder compute (RFC 8489 §14.5-14.6): HMAC-SHA1 (`sha256` 0,
 * 20 bytes into `out`) or HMAC-SHA256 (`sha256` 1, 32 bytes) of buf[0..attr_off), where attr_off is
 * where the integrity attribute's TLV starts, with the header length field taken as attr_end - 20
 * (attr_end = end of that attribute). `buf` is not modified. Returns 0, or -1 if the crypto library
 * failed. */
int stun_auth_hmac_msg(int sha256, const uint8_t *key, size_t keylen, const uint8_t *buf,
                       size_t attr_off, size_t attr_end, uint8_t out[32]);

/* Long-term keys: MD5(username ":" realm ":" password) and SHA-256 of the same. The inputs are used
 * as given: callers that need SASLprep/OpaqueString run stun_auth_saslprep first. */
void stun_auth_key_md5(const char *user, size_t ulen, const char *realm, size_t rlen,
                       const char *pass, size_t plen, uint8_t out[STUN_KEY_MD5_LEN]);
void stun_auth_key_sha256(const char *user, size_t ulen, const char *realm, size_t rlen,
                          const char *pass, size_t plen, uint8_t out[STUN_KEY_SHA256_LEN]);
/* USERHASH = SHA-256(username ":" realm). */
void stun_auth_userhash(const char *user, size_t ulen, const char *realm, size_t rlen,
                        uint8_t out[STUN_USERHASH_LEN]);

/* SASLprep (RFC 4013) of a UTF-8 string, as RFC 5389 applies it to passwords: map B.1 characters to
 * nothing, non-ASCII spaces to U+0020, normalise with NFKC, reject prohibited output and bad UTF-8.
 * Writes a NUL-terminated result into `out` (capacity `cap`). Returns the output length, or -1 on
 * invalid/prohibited input or overflow. ASCII printable input maps to itself. */
int stun_auth_saslprep(const char *in, size_t inlen, char *out, size_t cap);

/* Constant-time compare of two equal-length byte strings: 0 when equal. */
int stun_auth_ct_equal(const void *a, const void *b, size_t n);

/* Hex encode/decode of keys ("turn/.../key" values are lower-case hex). decode returns the byte
 * count or -1 on a bad digit/odd length/overflow. */
void stun_auth_hex_encode(const uint8_t *in, size_t n, char *out /* 2n+1 */);
int stun_auth_hex_decode(const char *in, size_t inlen, uint8_t *out, size_t cap);
/* The value of one hex digit (either case), or -1. */
int stun_auth_hex_digit(char c);

#endif
