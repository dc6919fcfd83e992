/* stun.h - STUN/TURN wire constants shared by every layer.
 *
 * Methods, classes, attribute types and error codes from RFC 8489 §18, RFC 8656 §18-19, RFC 6062
 * §6, RFC 5780 §7 and the IANA "STUN Parameters" registry. Pure definitions: no code, no state.
 */
#ifndef UTURN_STUN_H
#define UTURN_STUN_H

#include <stdint.h>

#define STUN_HEADER_LEN 20
#define STUN_MAGIC_COOKIE 0x2112A442u
#define STUN_TID_LEN 12
/* Largest message we ever build or accept: a TCP frame is 20 + 65535 bytes at most, but no request
 * we serve needs more than this, and bounding it keeps per-connection buffers small. */
#define STUN_MAX_MSG_LEN 4096
/* Attributes indexed per message; a message with more is rejected (bounded work per packet). */
#define STUN_MAX_ATTRS 48
/* Longest USERNAME value in bytes. RFC 8489 §14.3: "MUST contain a UTF-8-encoded sequence of fewer
 * than 509 bytes" (RFC 5389 said "less than 513 bytes"); we keep 512, the larger legacy bound and
 * coturn's, so no name a deployed client sends is refused. Buffers holding the name as a C string
 * need STUN_USERNAME_MAX + 1. */
#define STUN_USERNAME_MAX 512

/* Message classes (2 bits). */
enum stun_class {
    STUN_CLASS_REQUEST = 0,
    STUN_CLASS_INDICATION = 1,
    STUN_CLASS_SUCCESS = 2,
    STUN_CLASS_ERROR = 3,
};

/* Methods (12 bits). */
enum stun_method {
    STUN_METHOD_BINDING = 0x001,
    STUN_METHOD_ALLOCATE = 0x003,
    STUN_METHOD_REFRESH = 0x004,
    STUN_METHOD_SEND = 0x006,
    STUN_METHOD_DATA = 0x007,
    STUN_METHOD_CREATE_PERMISSION = 0x008,
    STUN_METHOD_CHANNEL_BIND = 0x009,
    STUN_METHOD_CONNECT = 0x00A,
    STUN_METHOD_CONNECTION_BIND = 0x00B,
    STUN_METHOD_CONNECTION_ATTEMPT = 0x00C,
};

/* Attribute types. 0x0000-0x7FFF comprehension-required, 0x8000-0xFFFF optional. */
enum stun_attr_type {
    STUN_ATTR_MAPPED_ADDRESS = 0x0001,
    STUN_ATTR_CHANGE_REQUEST = 0x0003,
    STUN_ATTR_USERNAME = 0x0006,
    STUN_ATTR_MESSAGE_INTEGRITY = 0x0008,
    STUN_ATTR_ERROR_CODE = 0x0009,
    STUN_ATTR_UNKNOWN_ATTRIBUTES = 0x000A,
    STUN_ATTR_CHANNEL_NUMBER = 0x000C,
    STUN_ATTR_LIFETIME = 0x000D,
    STUN_ATTR_XOR_PEER_ADDRESS = 0x0012,
    STUN_ATTR_DATA = 0x0013,
    STUN_ATTR_REALM = 0x0014,
    STUN_ATTR_NONCE = 0x0015,
    STUN_ATTR_XOR_RELAYED_ADDRESS = 0x0016,
    STUN_ATTR_REQUESTED_ADDRESS_FAMILY = 0x0017,
    STUN_ATTR_EVEN_PORT = 0x0018,
    STUN_ATTR_REQUESTED_TRANSPORT = 0x0019,
    STUN_ATTR_DONT_FRAGMENT = 0x001A,
    STUN_ATTR_MESSAGE_INTEGRITY_SHA256 = 0x001C,
    STUN_ATTR_PASSWORD_ALGORITHM = 0x001D,
    STUN_ATTR_USERHASH = 0x001E,
    STUN_ATTR_XOR_MAPPED_ADDRESS = 0x0020,
    STUN_ATTR_RESERVATION_TOKEN = 0x0022,
    STUN_ATTR_PRIORITY = 0x0024,
    STUN_ATTR_USE_CANDIDATE = 0x0025,
    STUN_ATTR_PADDING = 0x0026,
    STUN_ATTR_RESPONSE_PORT = 0x0027,
    STUN_ATTR_CONNECTION_ID = 0x002A,
    STUN_ATTR_ADDITIONAL_ADDRESS_FAMILY = 0x8000,
    STUN_ATTR_ADDRESS_ERROR_CODE = 0x8001,
    STUN_ATTR_PASSWORD_ALGORITHMS = 0x8002,
    STUN_ATTR_ALTERNATE_DOMAIN = 0x8003,
    STUN_ATTR_ICMP = 0x8004,
    STUN_ATTR_SOFTWARE = 0x8022,
    STUN_ATTR_ALTERNATE_SERVER = 0x8023,
    STUN_ATTR_FINGERPRINT = 0x8028,
    STUN_ATTR_ICE_CONTROLLED = 0x8029,
    STUN_ATTR_ICE_CONTROLLING = 0x802A,
    STUN_ATTR_RESPONSE_ORIGIN = 0x802B,
    STUN_ATTR_OTHER_ADDRESS = 0x802C,
};

/* Error codes (RFC 8489 §18.3, RFC 8656 §19, RFC 6062 §6.3). */
enum stun_error_code {
    STUN_ERR_TRY_ALTERNATE = 300,
    STUN_ERR_BAD_REQUEST = 400,
    STUN_ERR_UNAUTHORIZED = 401,
    STUN_ERR_FORBIDDEN = 403,
    STUN_ERR_MOBILITY_FORBIDDEN = 405,
    STUN_ERR_UNKNOWN_ATTRIBUTE = 420,
    STUN_ERR_ALLOCATION_MISMATCH = 437,
    STUN_ERR_STALE_NONCE = 438,
    STUN_ERR_ADDRESS_FAMILY_NOT_SUPPORTED = 440,
    STUN_ERR_WRONG_CREDENTIALS = 441,
    STUN_ERR_UNSUPPORTED_TRANSPORT = 442,
    STUN_ERR_PEER_ADDRESS_FAMILY_MISMATCH = 443,
    STUN_ERR_CONNECTION_ALREADY_EXISTS = 446,
    STUN_ERR_CONNECTION_TIMEOUT = 447,
    STUN_ERR_ALLOCATION_QUOTA = 486,
    STUN_ERR_SERVER_ERROR = 500,
    STUN_ERR_INSUFFICIENT_CAPACITY = 508,
};

/* Address families as carried in address attributes and REQUESTED-ADDRESS-FAMILY. */
#define STUN_FAMILY_IPV4 0x01
#define STUN_FAMILY_IPV6 0x02

/* PASSWORD-ALGORITHM values (RFC 8489 §18.5). */
#define STUN_PASSWORD_ALG_MD5 0x0001
#define STUN_PASSWORD_ALG_SHA256 0x0002

/* REQUESTED-TRANSPORT protocol numbers. */
#define STUN_TRANSPORT_UDP 17
#define STUN_TRANSPORT_TCP 6

/* CHANGE-REQUEST flags (RFC 5780 §7.2). */
#define STUN_CHANGE_IP 0x4u
#define STUN_CHANGE_PORT 0x2u

/* Wire type from method and class (RFC 8489 §5). */
static inline uint16_t stun_type(uint16_t method, enum stun_class cls)
{
    unsigned m = method, c = (unsigned)cls;
    return (uint16_t)((m & 0x000F) | ((m & 0x0070) << 1) | ((m & 0x0F80) << 2) | ((c & 1) << 4) |
                      ((c & 2) << 7));
}

static inline uint16_t stun_type_method(uint16_t type)
{
    return (uint16_t)((type & 0x000F) | ((type & 0x00E0) >> 1) | ((type & 0x3E00) >> 2));
}

static inline enum stun_class stun_type_class(uint16_t type)
{
    return (enum stun_class)(((type >> 4) & 1) | ((type >> 7) & 2));
}

/* The reason phrase we send for a code; "" for codes we do not know. */
const char *stun_error_reason(int code);

#endif
