/* dispatch_binding.c - the Binding method: RFC 8489 §7, and the RFC 5780 NAT behaviour discovery
 * usage (§6, §7) where rfc5780 serves it.
 *
 * With rfc5780 on and a request that arrived on one of the four A x P addresses (Da:Dp), the answer
 * carries MAPPED-ADDRESS and XOR-MAPPED-ADDRESS, RESPONSE-ORIGIN (where it really leaves from) and
 * OTHER-ADDRESS (Ca:Cp); CHANGE-REQUEST picks the source (Table 1 of §6.1), RESPONSE-PORT the
 * destination port, PADDING is echoed. Elsewhere Binding answers XOR-MAPPED-ADDRESS only and
 * dispatch.c refuses the RFC 5780 request attributes with 420.
 *
 * Amplification (RFC 5780 §10, RFC 8656 §21.2). Binding is unauthenticated, so a spoofed source can
 * aim its answers. Our rules:
 *  - every answer passes dispatch_limit_ok (in dispatch_finish), which lets an answer of up to
 *    DISPATCH_UNAUTH_RATIO x its request through and meters the rest; one sent to another port
 *    (RESPONSE-PORT) is metered whole against the source's budget as well;
 *  - PADDING echoes the request's own padding length, rounded up to x4 and capped at
 *    BINDING_PADDING_MAX: RFC 5780 §5 has the client pad to its MTU, so the answer is about the MTU
 *    without ever being much bigger than what the source sent;
 *  - RESPONSE-PORT below 1024 is refused (400): the well-known services (DNS, NTP, chargen) are
 *    what reflection attacks aim at, and a NAT lifetime test (§4.6) targets a NAT-mapped port,
 *    not one of those;
 *  - PADDING together with RESPONSE-PORT is 400 (§6.1, §7.5).
 * CHANGE-REQUEST alone changes only the source, not the size or the destination, so it is not
 * limited.
 *
 * Streams: CHANGE-REQUEST and RESPONSE-PORT mean something only for UDP (a TCP answer can only go
 * back on its connection). Over TCP/TLS we answer on the connection, from Da:Dp, with OTHER-ADDRESS
 * and RESPONSE-ORIGIN, so a client still learns the alternate address.
 */
#include <errno.h>
#include <string.h>

#include "dispatch_int.h"
#include "sockaddr_util.h"

#define BINDING_PADDING_MAX 1200
#define BINDING_MIN_RESPONSE_PORT 1024

/* How one RFC 5780 answer goes out: the turn_conn_t handed to dispatch_finish points here. */
typedef struct {
    dispatch_t *d;
    const turn_conn_t *conn;     /* where the request came from */
    const struct sockaddr *from; /* another of our addresses, or NULL: the request's own socket */
    int redirected;              /* RESPONSE-PORT: the answer goes to another port */
} binding_tx_t;

static int binding_send(void *ctx, const struct sockaddr *to, const uint8_t *buf, size_t len)
{
    binding_tx_t *tx = ctx;
    if (tx->redirected && !dispatch_limit_ok(tx->d, tx->conn, 0, len))
        return -EAGAIN;
    if (!tx->from)
        return tx->conn->send(tx->conn->send_ctx, to, buf, len);
    if (!tx->d->binding.send_from)
        return -EADDRNOTAVAIL;
    return tx->d->binding.send_from(tx->d->binding.env, tx->from, to, buf, len);
}

int dispatch_binding_rfc5780(const dispatch_t *d, const turn_conn_t *conn)
{
    sa_any_t from, other;
    return addrs_rfc5780(&d->shared->addrs, conn->local, 0, 0, &from, &other) == 0;
}

/* The RFC 5780 answer. Returns 0, or the STUN error code to answer instead. */
static int binding_rfc5780(dispatch_t *d, const turn_conn_t *conn, const stun_msg_t *msg)
{
    const stun_attr_t *cr = stun_msg_find(msg, STUN_ATTR_CHANGE_REQUEST);
    const stun_attr_t *rp = stun_msg_find(msg, STUN_ATTR_RESPONSE_PORT);
    const stun_attr_t *pad = stun_msg_find(msg, STUN_ATTR_PADDING);
    uint32_t flags = 0;
    uint16_t rport = 0;
    if (cr && stun_attr_get_u32(msg, cr, &flags) != 0)
        return STUN_ERR_BAD_REQUEST;
    if (rp && pad)
        return STUN_ERR_BAD_REQUEST; /* RFC 5780 §6.1: both together would amplify */
    if (rp &&
        (stun_attr_get_response_port(msg, rp, &rport) != 0 || rport < BINDING_MIN_RESPONSE_PORT))
        return STUN_ERR_BAD_REQUEST;
    int udp = conn->transport == TURN_UDP;
    if (!udp) {
        flags = 0; /* a stream's answer can only leave on its own connection */
        rp = NULL;
    }
    sa_any_t from, other;
    if (addrs_rfc5780(&d->shared->addrs, conn->local, (flags & STUN_CHANGE_IP) != 0,
                      (flags & STUN_CHANGE_PORT) != 0, &from, &other) != 0)
        return STUN_ERR_SERVER_ERROR; /* dispatch_binding checked: cannot happen */
    sa_any_t to;
    memcpy(&to, conn->remote, sa_len(conn->remote));
    if (rp)
        sa_set_port(&to.sa, rport);

    stun_build_t b;
    dispatch_begin(d, &b, msg, STUN_CLASS_SUCCESS);
    stun_build_xor_addr(&b, STUN_ATTR_XOR_MAPPED_ADDRESS, conn->remote);
    stun_build_addr(&b, STUN_ATTR_MAPPED_ADDRESS, conn->remote);
    stun_build_addr(&b, STUN_ATTR_RESPONSE_ORIGIN, &from.sa);
    stun_build_addr(&b, STUN_ATTR_OTHER_ADDRESS, &other.sa);
    if (pad) {
        size_t n = pad->len < BINDING_PADDING_MAX ? pad->len : BINDING_PADDING_MAX;
        n = (n + 3) & ~(size_t)3;
        uint8_t *p = stun_build_attr_reserve(&b, STUN_ATTR_PADDING, n);
        if (p)
            memset(p, 0, n); /* d->out holds an earlier answer: send none of it */
    }
    binding_tx_t tx = {
        .d = d,
        .conn = conn,
        .from = sa_equal(&from.sa, conn->local) ? NULL : &from.sa,
        .redirected = rp != NULL,
    };
    turn_conn_t out = *conn;
    out.remote = &to.sa;
    out.send = binding_send;
    out.send_ctx = &tx;
    (void)dispatch_finish(d, &out, msg, &b, NULL);
    return 0;
}

void dispatch_binding(dispatch_t *d, const turn_conn_t *conn, const stun_msg_t *msg)
{
    stats_inc(&d->stats->stun_binding_requests);
    if (dispatch_binding_rfc5780(d, conn)) {
        int code = binding_rfc5780(d, conn, msg);
        if (code)
            dispatch_error(d, conn, msg, code, NULL);
        return;
    }
    stun_build_t b;
    dispatch_begin(d, &b, msg, STUN_CLASS_SUCCESS);
    stun_build_xor_addr(&b, STUN_ATTR_XOR_MAPPED_ADDRESS, conn->remote);
    (void)dispatch_finish(d, conn, msg, &b, NULL);
}
