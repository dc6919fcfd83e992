/* turn_auth.h - stateless nonces and TURN REST ephemeral credentials.
 *
 * Nonces (RFC 8489 §9.2, RFC 8656 §5): the server keeps no state per nonce. A nonce is the RFC 8489
 * cookie "obMatJos2" + 4 base64 characters of security-feature bits, followed by a base64url body
 * of expiry (32-bit seconds) and a truncated HMAC-SHA256 over (expiry, client IP, client port,
 * feature bits) under a server secret; any worker or node holding the secret can check it. TURN
 * REST (draft-uberti-behave-turn-rest-00, coturn's use-auth-secret): username "expiry[:id]",
 * password base64(HMAC-SHA1(secret, username)).
 */
#ifndef UTURN_TURN_AUTH_H
#define UTURN_TURN_AUTH_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#define TURN_NONCE_SECRET_LEN 32
/* Longest nonce we emit, without NUL (well under the 128-character limit of RFC 8489 §14.10). */
#define TURN_NONCE_MAX 64

/* Security feature bits (RFC 8489 §18.1 registry; bit 0 is the MSB of the 24-bit set). */
#define TURN_NONCE_FEAT_PASSWORD_ALGS 0x800000u
#define TURN_NONCE_FEAT_USERHASH 0x400000u

/* Write a NUL-terminated nonce valid until `expiry` (UNIX seconds) for `client` into out (cap >=
 * TURN_NONCE_MAX + 1). Returns its length. */
int turn_nonce_make(const uint8_t secret[TURN_NONCE_SECRET_LEN], uint32_t expiry, uint32_t features,
                    const struct sockaddr *client, char *out, size_t cap);

enum turn_nonce_result {
    TURN_NONCE_OK = 0,
    TURN_NONCE_STALE = 1, /* authentic but expired (or expiry too far in the future) */
    TURN_NONCE_BAD = 2,   /* not one of ours, or for another client address */
};
/* Check a nonce (bytes as received, no NUL needed) for `client` at time `now`. On OK/STALE
 * *features receives the nonce's feature bits. Constant-time MAC compare. */
enum turn_nonce_result turn_nonce_check(const uint8_t secret[TURN_NONCE_SECRET_LEN],
                                        const char *nonce, size_t len, uint32_t now,
                                        const struct sockaddr *client, uint32_t *features);

/* REST password: base64(HMAC-SHA1(secret, username)) into out (cap >= 29), NUL-terminated. Returns
 * its length (28). */
int turn_rest_password(const char *secret, size_t slen, const char *user, size_t ulen, char *out,
                       size_t cap);

/* Expiry timestamp of a REST username, coturn's rules with separator ':': if the part before the
 * first ':' is all digits it is the timestamp; otherwise the part after the last ':' is; with no
 * ':' the whole username must be digits. Returns 0 and sets *expiry, or -1 when there is no
 * timestamp. */
int turn_rest_expiry(const char *user, size_t ulen, int64_t *expiry);

/* Base64 (RFC 4648 §4, with padding) and base64url (§5, no padding). Encoders NUL-terminate and
 * return the length or -1 on overflow; decoders return the byte count or -1. */
int turn_b64_encode(const uint8_t *in, size_t n, char *out, size_t cap);
int turn_b64_decode(const char *in, size_t n, uint8_t *out, size_t cap);
int turn_b64url_encode(const uint8_t *in, size_t n, char *out, size_t cap);
int turn_b64url_decode(const char *in, size_t n, uint8_t *out, size_t cap);

#endif
