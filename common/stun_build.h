/* stun_build.h - encode STUN messages into caller storage.
 *
 * RFC 8489 §5 (header), §14 (attributes, zero padding), §14.5-14.7 (MESSAGE-INTEGRITY,
 * MESSAGE-INTEGRITY-SHA256, FINGERPRINT with the length adjustment). A builder never allocates and
 * never writes past `cap`: an attribute that does not fit sets a sticky error and every later call
 * is a no-op, so callers check once at the end (stun_build_finish).
 */
#ifndef UTURN_STUN_BUILD_H
#define UTURN_STUN_BUILD_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "stun.h"

typedef struct {
    uint8_t *buf;
    size_t cap;
    size_t len; /* bytes written so far, header included; the header length field is kept in step */
    int err;    /* 0, or -ENOBUFS once something did not fit, -EINVAL on a bad argument, -ENOMEM if
                 * the crypto library failed computing an integrity attribute */
} stun_build_t;

/* Start a message of wire type `type` with transaction id `tid` (12 bytes). */
void stun_build_init(stun_build_t *b, uint8_t *buf, size_t cap, uint16_t type, const uint8_t *tid);

/* Raw attribute: value copied and zero-padded to 4 bytes. */
void stun_build_attr(stun_build_t *b, uint16_t type, const void *value, size_t len);
/* Reserve an attribute of `len` value bytes and return a pointer to fill in (padding zeroed), or
 * NULL on overflow. Lets DATA be written straight into the output (one copy, not two). */
uint8_t *stun_build_attr_reserve(stun_build_t *b, uint16_t type, size_t len);
void stun_build_u32(stun_build_t *b, uint16_t type, uint32_t v);
/* Empty-valued attribute (DONT-FRAGMENT, USE-CANDIDATE). */
void stun_build_flag(stun_build_t *b, uint16_t type);
/* XOR-*-ADDRESS from a sockaddr_in/sockaddr_in6 (uses this message's transaction id for IPv6). */
void stun_build_xor_addr(stun_build_t *b, uint16_t type, const struct sockaddr *sa);
/* Plain address form: MAPPED-ADDRESS, ALTERNATE-SERVER, RESPONSE-ORIGIN, OTHER-ADDRESS. */
void stun_build_addr(stun_build_t *b, uint16_t type, const struct sockaddr *sa);
/* ERROR-CODE with `reason` (NULL: the standard phrase for the code). */
void stun_build_error(stun_build_t *b, int code, const char *reason);
/* UNKNOWN-ATTRIBUTES from a list of types. */
void stun_build_unknown(stun_build_t *b, const uint16_t *types, size_t n);
/* CHANNEL-NUMBER (number + zero RFFU). */
void stun_build_channel(stun_build_t *b, uint16_t channel);
/* REQUESTED-TRANSPORT / (REQUESTED|ADDITIONAL)-ADDRESS-FAMILY: one byte + 3 zero bytes. */
void stun_build_byte_attr(stun_build_t *b, uint16_t type, uint8_t v);
/* EVEN-PORT with the R bit as given. */
void stun_build_even_port(stun_build_t *b, int reserve);
/* RESERVATION-TOKEN (8 bytes, network order of v). */
void stun_build_token(stun_build_t *b, uint64_t v);
/* ADDRESS-ERROR-CODE (RFC 8656 §18.12). */
void stun_build_address_error(stun_build_t *b, uint8_t family, int code, const char *reason);
/* PASSWORD-ALGORITHMS list (each with empty params). */
void stun_build_password_algs(stun_build_t *b, const uint16_t *algs, size_t n);
/* PASSWORD-ALGORITHM (empty params). */
void stun_build_password_alg(stun_build_t *b, uint16_t alg);

/* MESSAGE-INTEGRITY: HMAC-SHA1 with `key` over everything so far. Must come after every attribute
 * except MESSAGE-INTEGRITY-SHA256 and FINGERPRINT. */
void stun_build_integrity(stun_build_t *b, const uint8_t *key, size_t keylen);
/* MESSAGE-INTEGRITY-SHA256 (full 32 bytes). */
void stun_build_integrity_sha256(stun_build_t *b, const uint8_t *key, size_t keylen);
/* FINGERPRINT: must be the last attribute. */
void stun_build_fingerprint(stun_build_t *b);

/* The finished length (> 0), or the sticky negative error. */
int stun_build_finish(const stun_build_t *b);

#endif
