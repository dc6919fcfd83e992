/* dispatch.c - demultiplex a client message and answer STUN requests.
 *
 * RFC 7983 §7 (first-byte demux), RFC 8489 §6.3 (receiving requests and indications: basic checks
 * fail silently, unknown comprehension-required attributes get 420), §7 (Binding: XOR-MAPPED-ADDRESS,
 * FINGERPRINT echoed when the request carried one). Every drop is counted by reason.
 */
#include "dispatch.h"

#include <errno.h>
#include <string.h>

#include "config.h"
#include "frame.h"
#include "log.h"
#include "stun_build.h"
#include "stun_msg.h"

#define SOFTWARE_NAME "uturn/" PACKAGE_VERSION

/* Comprehension-required attributes we understand (RFC 8489 §14, RFC 8656 §18, RFC 5780 §7, ICE
 * PRIORITY/USE-CANDIDATE so ICE-style checks sent to us are not refused). */
static const uint16_t known_required[] = {
    STUN_ATTR_MAPPED_ADDRESS,       STUN_ATTR_USERNAME,
    STUN_ATTR_MESSAGE_INTEGRITY,    STUN_ATTR_ERROR_CODE,
    STUN_ATTR_UNKNOWN_ATTRIBUTES,   STUN_ATTR_CHANNEL_NUMBER,
    STUN_ATTR_LIFETIME,             STUN_ATTR_XOR_PEER_ADDRESS,
    STUN_ATTR_DATA,                 STUN_ATTR_REALM,
    STUN_ATTR_NONCE,                STUN_ATTR_XOR_RELAYED_ADDRESS,
    STUN_ATTR_REQUESTED_ADDRESS_FAMILY, STUN_ATTR_EVEN_PORT,
    STUN_ATTR_REQUESTED_TRANSPORT,  STUN_ATTR_DONT_FRAGMENT,
    STUN_ATTR_MESSAGE_INTEGRITY_SHA256, STUN_ATTR_PASSWORD_ALGORITHM,
    STUN_ATTR_USERHASH,             STUN_ATTR_XOR_MAPPED_ADDRESS,
    STUN_ATTR_RESERVATION_TOKEN,    STUN_ATTR_PRIORITY,
    STUN_ATTR_USE_CANDIDATE,        STUN_ATTR_CONNECTION_ID,
};

void dispatch_init(dispatch_t *d, const cfg_t *cfg, stats_t *stats)
{
    memset(d, 0, sizeof(*d));
    d->cfg = cfg;
    d->stats = stats;
}

static int send_reply(dispatch_t *d, const dispatch_conn_t *conn, stun_build_t *b, int fingerprint)
{
    if (d->cfg->software_attribute)
        stun_build_attr(b, STUN_ATTR_SOFTWARE, SOFTWARE_NAME, strlen(SOFTWARE_NAME));
    if (fingerprint)
        stun_build_fingerprint(b);
    int len = stun_build_finish(b);
    if (len < 0)
        return len; /* our own bug: every reply fits STUN_MAX_MSG_LEN */
    stats_inc(&d->stats->stun_responses);
    return conn->send(conn->send_ctx, b->buf, (size_t)len);
}

/* Error response for `msg` (RFC 8489 §6.3.1.1). */
static int reply_error(dispatch_t *d, const dispatch_conn_t *conn, const stun_msg_t *msg, int code,
                       const uint16_t *unknown, size_t nunknown)
{
    stun_build_t b;
    stun_build_init(&b, d->out, sizeof(d->out), stun_type(msg->method, STUN_CLASS_ERROR), msg->tid);
    stun_build_error(&b, code, NULL);
    if (nunknown)
        stun_build_unknown(&b, unknown, nunknown);
    stats_inc(&d->stats->stun_error_responses);
    return send_reply(d, conn, &b, msg->fp_idx >= 0);
}

static int handle_binding(dispatch_t *d, const dispatch_conn_t *conn, const stun_msg_t *msg)
{
    stun_build_t b;
    stun_build_init(&b, d->out, sizeof(d->out), stun_type(STUN_METHOD_BINDING, STUN_CLASS_SUCCESS),
                    msg->tid);
    stun_build_xor_addr(&b, STUN_ATTR_XOR_MAPPED_ADDRESS, conn->remote);
    return send_reply(d, conn, &b, msg->fp_idx >= 0);
}

static int handle_request(dispatch_t *d, const dispatch_conn_t *conn, const stun_msg_t *msg)
{
    uint16_t unknown[16];
    int n = stun_msg_unknown_required(msg, known_required,
                                      sizeof(known_required) / sizeof(known_required[0]), unknown,
                                      sizeof(unknown) / sizeof(unknown[0]));
    if (n > 0) {
        size_t listed = (size_t)n < sizeof(unknown) / sizeof(unknown[0]) ? (size_t)n : 16;
        return reply_error(d, conn, msg, STUN_ERR_UNKNOWN_ATTRIBUTE, unknown, listed);
    }
    switch (msg->method) {
    case STUN_METHOD_BINDING:
        stats_inc(&d->stats->stun_binding_requests);
        return handle_binding(d, conn, msg);
    default:
        /* TURN methods arrive with the relay core; until then say so rather than time out. */
        stats_inc(&d->stats->drop_unsupported);
        return reply_error(d, conn, msg, STUN_ERR_BAD_REQUEST, NULL, 0);
    }
}

static int handle_stun(dispatch_t *d, const dispatch_conn_t *conn, const uint8_t *buf, size_t len)
{
    stun_msg_t msg;
    int rc = stun_msg_decode(buf, len, &msg);
    if (rc != 0) {
        /* RFC 8489 §6.3: a message failing the basic checks is discarded silently. */
        stats_inc(&d->stats->drop_malformed);
        return (rc == STUN_MSG_E_COOKIE || rc == STUN_MSG_E_NOT_STUN) ? DISPATCH_NOT_TURN
                                                                      : DISPATCH_OK;
    }
    switch (msg.cls) {
    case STUN_CLASS_REQUEST:
        (void)handle_request(d, conn, &msg);
        return DISPATCH_OK;
    case STUN_CLASS_INDICATION:
        if (msg.method == STUN_METHOD_BINDING) {
            /* Keepalive (RFC 8489 §6.3.2 / RFC 8445 §11): accepted, never answered. */
            stats_inc(&d->stats->stun_binding_indications);
            return DISPATCH_OK;
        }
        stats_inc(&d->stats->drop_unsupported);
        return DISPATCH_OK;
    default:
        /* We send no requests, so a response from a client answers nothing. */
        stats_inc(&d->stats->drop_unsupported);
        return DISPATCH_OK;
    }
}

int dispatch_message(dispatch_t *d, const dispatch_conn_t *conn, const uint8_t *buf, size_t len)
{
    if (len == 0) {
        stats_inc(&d->stats->drop_not_stun);
        return DISPATCH_OK;
    }
    switch (frame_classify(buf[0])) {
    case FRAME_STUN:
        if (len < STUN_HEADER_LEN) {
            stats_inc(&d->stats->drop_malformed);
            return conn->transport == DISPATCH_UDP ? DISPATCH_OK : DISPATCH_NOT_TURN;
        }
        return handle_stun(d, conn, buf, len);
    case FRAME_CHANNEL:
        /* ChannelData needs an allocation; the relay core handles it. */
        stats_inc(&d->stats->drop_unsupported);
        return DISPATCH_OK;
    default:
        stats_inc(&d->stats->drop_not_stun);
        return DISPATCH_NOT_TURN;
    }
}
