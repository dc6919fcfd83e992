/* stun.c - reason phrases for STUN error codes.
 *
 * The phrases are the IANA "STUN Error Codes" registry entries (RFC 8489 §18.3, RFC 8656 §19,
 * RFC 6062 §6.3, RFC 8016 §3.3, RFC 8445 §16.1). They are diagnostic only: clients act on the
 * number, so the exact wording never affects interoperability.
 */
#include <stddef.h>

#include "stun.h"
#include "util.h"

static const struct {
    int code;
    const char *reason;
} stun_reasons[] = {
    {STUN_ERR_TRY_ALTERNATE, "Try Alternate"},
    {STUN_ERR_BAD_REQUEST, "Bad Request"},
    /* IANA and RFC 5389 say "Unauthorized"; RFC 8489 renamed it "Unauthenticated". Older clients
     * are the ones that might print it, so keep the registry wording. */
    {STUN_ERR_UNAUTHORIZED, "Unauthorized"},
    {STUN_ERR_FORBIDDEN, "Forbidden"},
    {STUN_ERR_MOBILITY_FORBIDDEN, "Mobility Forbidden"},
    {STUN_ERR_UNKNOWN_ATTRIBUTE, "Unknown Attribute"},
    {STUN_ERR_ALLOCATION_MISMATCH, "Allocation Mismatch"},
    {STUN_ERR_STALE_NONCE, "Stale Nonce"},
    {STUN_ERR_ADDRESS_FAMILY_NOT_SUPPORTED, "Address Family not Supported"},
    {STUN_ERR_WRONG_CREDENTIALS, "Wrong Credentials"},
    /* RFC 8656 §7.4 once says "Unsupported Transport Address"; §19 and IANA use this one. */
    {STUN_ERR_UNSUPPORTED_TRANSPORT, "Unsupported Transport Protocol"},
    {STUN_ERR_PEER_ADDRESS_FAMILY_MISMATCH, "Peer Address Family Mismatch"},
    {STUN_ERR_CONNECTION_ALREADY_EXISTS, "Connection Already Exists"},
    {STUN_ERR_CONNECTION_TIMEOUT, "Connection Timeout or Failure"},
    {STUN_ERR_ALLOCATION_QUOTA, "Allocation Quota Reached"},
    {487, "Role Conflict"},
    {STUN_ERR_SERVER_ERROR, "Server Error"},
    {STUN_ERR_INSUFFICIENT_CAPACITY, "Insufficient Capacity"},
};

const char *stun_error_reason(int code)
{
    for (size_t i = 0; i < ARRAY_SIZE(stun_reasons); i++) {
        if (stun_reasons[i].code == code)
            return stun_reasons[i].reason;
    }
    return "";
}
