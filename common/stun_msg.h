/* stun_msg.h - decode a STUN message once into a view, then read typed attributes from it.
 *
 * RFC 8489 §5-6 (header, basic checks), §14 (attribute TLVs and padding), §9/§14.5-14.7 (integrity
 * and fingerprint placement). The view borrows the caller's buffer: it is valid as long as the
 * bytes are, and copies nothing. No allocation, no global state; safe from any thread.
 */
#ifndef UTURN_STUN_MSG_H
#define UTURN_STUN_MSG_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "stun.h"

/* Decode results (negative). Each names the first rule the bytes broke. */
enum stun_msg_err {
    STUN_MSG_OK = 0,
    STUN_MSG_E_SHORT = -1,        /* fewer than 20 bytes */
    STUN_MSG_E_NOT_STUN = -2,     /* first two bits not 00 */
    STUN_MSG_E_COOKIE = -3,       /* magic cookie wrong */
    STUN_MSG_E_LENGTH = -4,       /* header length not a multiple of 4, or != bytes given - 20 */
    STUN_MSG_E_ATTR_OVERRUN = -5, /* an attribute runs past the end */
    STUN_MSG_E_TOO_MANY = -6,     /* more than STUN_MAX_ATTRS attributes */
    STUN_MSG_E_FINGERPRINT = -7,  /* FINGERPRINT not last, wrong length, or CRC mismatch */
    STUN_MSG_E_INTEGRITY = -8,    /* MESSAGE-INTEGRITY(-SHA256) of a bad length, or duplicated */
    STUN_MSG_E_TOO_BIG = -9,      /* over STUN_MAX_MSG_LEN */
};

typedef struct {
    uint16_t type;
    uint16_t len;    /* value length, without padding */
    uint16_t offset; /* offset of the value from the start of the message */
} stun_attr_t;

typedef struct {
    const uint8_t *buf; /* the whole message: header + attributes */
    size_t len;         /* 20 + header length */
    uint16_t type;
    uint16_t method;
    enum stun_class cls;
    const uint8_t *tid; /* 12 bytes inside buf */
    /* Attributes in wire order, up to (not including) the ones RFC 8489 §14.5 says to ignore: only
     * MESSAGE-INTEGRITY-SHA256 and FINGERPRINT may follow MESSAGE-INTEGRITY, and only FINGERPRINT
     * may follow MESSAGE-INTEGRITY-SHA256; anything else after them is skipped, never indexed. */
    stun_attr_t attrs[STUN_MAX_ATTRS];
    int nattrs;
    int mi_idx;    /* index in attrs of MESSAGE-INTEGRITY, or -1 */
    int mi256_idx; /* index of MESSAGE-INTEGRITY-SHA256, or -1 */
    int fp_idx;    /* index of FINGERPRINT, or -1 (verified by decode when present) */
} stun_msg_t;

/* Quick check whether the bytes can be a STUN message (RFC 7983: first byte 0..3, cookie present).
 * Needs at least 20 bytes; does not look at attributes. */
int stun_msg_is_stun(const uint8_t *buf, size_t len);

/* Decode `len` bytes (exactly one message) into `msg`. Returns 0 or a negative stun_msg_err. A
 * present FINGERPRINT is verified here (a bad one means the packet is not STUN: RFC 8489 §7.3).
 * Integrity is not verified here: that needs a key (stun_auth.h). */
int stun_msg_decode(const uint8_t *buf, size_t len, stun_msg_t *msg);

/* A short human name for a decode result, for logs and tests. */
const char *stun_msg_strerror(int err);

/* First attribute of `type`, or NULL. */
const stun_attr_t *stun_msg_find(const stun_msg_t *msg, uint16_t type);

/* Pointer to an attribute's value bytes. */
static inline const uint8_t *stun_attr_value(const stun_msg_t *msg, const stun_attr_t *a)
{
    return msg->buf + a->offset;
}

/* Collect comprehension-required attribute types (< 0x8000) that are not in `known` (a sorted or
 * unsorted array of `nknown` types) into `out` (capacity `cap`). Returns how many were found (also
 * when more than `cap`: only the first `cap` are written). Used to answer 420 with
 * UNKNOWN-ATTRIBUTES. */
int stun_msg_unknown_required(const stun_msg_t *msg, const uint16_t *known, size_t nknown,
                              uint16_t *out, size_t cap);

/* Typed getters. Each returns 0 on success, -1 if the attribute is malformed. */

/* XOR-MAPPED-ADDRESS / XOR-PEER-ADDRESS / XOR-RELAYED-ADDRESS: un-XOR with the cookie (and the
 * transaction id for IPv6) into a sockaddr_in or sockaddr_in6. */
int stun_attr_get_xor_addr(const stun_msg_t *msg, const stun_attr_t *a,
                           struct sockaddr_storage *out);
/* MAPPED-ADDRESS / ALTERNATE-SERVER / RESPONSE-ORIGIN / OTHER-ADDRESS (plain form). */
int stun_attr_get_addr(const stun_msg_t *msg, const stun_attr_t *a, struct sockaddr_storage *out);
/* 32-bit values: LIFETIME, CHANGE-REQUEST, CONNECTION-ID, PRIORITY. Value length must be 4. */
int stun_attr_get_u32(const stun_msg_t *msg, const stun_attr_t *a, uint32_t *out);
/* CHANNEL-NUMBER: the 16-bit number (RFFU ignored). */
int stun_attr_get_channel(const stun_msg_t *msg, const stun_attr_t *a, uint16_t *out);
/* REQUESTED-TRANSPORT: the protocol byte. */
int stun_attr_get_transport(const stun_msg_t *msg, const stun_attr_t *a, uint8_t *out);
/* REQUESTED-ADDRESS-FAMILY / ADDITIONAL-ADDRESS-FAMILY: the family byte (0x01/0x02, other values
 * returned as they are for the caller to reject). */
int stun_attr_get_family(const stun_msg_t *msg, const stun_attr_t *a, uint8_t *out);
/* EVEN-PORT: *reserve = 1 when the R bit (0x80) is set. Value length must be >= 1. */
int stun_attr_get_even_port(const stun_msg_t *msg, const stun_attr_t *a, int *reserve);
/* RESERVATION-TOKEN: 8 bytes. */
int stun_attr_get_token(const stun_msg_t *msg, const stun_attr_t *a, uint64_t *out);
/* RESPONSE-PORT: port number. */
int stun_attr_get_response_port(const stun_msg_t *msg, const stun_attr_t *a, uint16_t *out);
/* ERROR-CODE: code (300..699) and a pointer/length for the reason phrase. */
int stun_attr_get_error(const stun_msg_t *msg, const stun_attr_t *a, int *code,
                        const uint8_t **reason, size_t *reason_len);
/* PASSWORD-ALGORITHM: algorithm number (params ignored, length checked). */
int stun_attr_get_password_alg(const stun_msg_t *msg, const stun_attr_t *a, uint16_t *alg);
/* PASSWORD-ALGORITHMS: up to `cap` algorithm numbers into `algs`; *n = how many were listed. Fails
 * on a malformed list. */
int stun_attr_get_password_algs(const stun_msg_t *msg, const stun_attr_t *a, uint16_t *algs,
                                size_t cap, size_t *n);
/* UNKNOWN-ATTRIBUTES: up to `cap` types; *n = how many. */
int stun_attr_get_unknown(const stun_msg_t *msg, const stun_attr_t *a, uint16_t *types, size_t cap,
                          size_t *n);
/* ICMP (RFC 8656 §18.13, byte-aligned type/code): type, code, error data. */
int stun_attr_get_icmp(const stun_msg_t *msg, const stun_attr_t *a, uint8_t *type, uint8_t *code,
                       uint32_t *data);

#endif
