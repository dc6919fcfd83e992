/* dispatch_tcp.c - the STUN side of TCP relaying: Connect, ConnectionBind, ConnectionAttempt.
 *
 * RFC 6062 §5.2 (Connect: XOR-PEER-ADDRESS checked like any peer, 446 when a connection to that
 * peer exists or is being made, 447 when it fails or times out, success with CONNECTION-ID), §5.3
 * (ConnectionAttempt for peers connecting in), §5.4 (ConnectionBind on a new client connection,
 * authenticated with the allocation's credentials). The sockets themselves live in the worker's
 * tcp_relay.c, reached through dispatch_relay_ops_t.
 */
#include <string.h>

#include "dispatch_int.h"
#include "rand.h"
#include "sockaddr_util.h"

size_t dispatch_auth_size(void) { return sizeof(dispatch_auth_t); }

void dispatch_connect(dispatch_t *d, const turn_conn_t *conn, const stun_msg_t *msg, alloc_t *a)
{
    dispatch_auth_t auth;
    if (dispatch_authenticate(d, conn, msg, a, &auth) != DISPATCH_AUTH_OK)
        return;
    const stun_attr_t *pa = stun_msg_find(msg, STUN_ATTR_XOR_PEER_ADDRESS);
    sa_any_t peer;
    int code = 0;
    if (!a->tcp || !pa || !d->relay.tcp_connect)
        code = STUN_ERR_BAD_REQUEST;
    else if ((code = dispatch_check_peer(d, a, msg, pa, &peer)) == 0 && sa_port(&peer.sa) == 0)
        code = STUN_ERR_BAD_REQUEST;
    if (code == 0)
        code = d->relay.tcp_connect(d->relay.env, a, &peer.sa, msg, &auth);
    if (code != 0) {
        stats_inc(&d->stats->turn_errors);
        dispatch_error(d, conn, msg, code, &auth);
    }
}

void dispatch_connection_bind(dispatch_t *d, const turn_conn_t *conn, const stun_msg_t *msg)
{
    const stun_attr_t *ci = stun_msg_find(msg, STUN_ATTR_CONNECTION_ID);
    uint32_t id;
    /* §5.4, and a control connection (a 5-tuple with an allocation) is never a data connection. */
    if ((conn->transport != TURN_TCP && conn->transport != TURN_TLS) || !ci ||
        stun_attr_get_u32(msg, ci, &id) != 0 || !d->relay.tcp_bind ||
        alloc_find(&d->allocs, conn->transport, conn->remote, conn->local)) {
        stats_inc(&d->stats->turn_errors);
        dispatch_error(d, conn, msg, STUN_ERR_BAD_REQUEST, NULL);
        return;
    }
    d->relay.tcp_bind(d->relay.env, conn, msg, id);
}

void dispatch_tcp_connect_done(dispatch_t *d, alloc_t *a, const stun_msg_t *req, const void *auth,
                               uint32_t id, int code)
{
    if (a->dead)
        return;
    if (code != 0) {
        stats_inc(&d->stats->turn_errors);
        dispatch_error(d, &a->client, req, code, auth);
        return;
    }
    stun_build_t b;
    dispatch_begin(d, &b, req, STUN_CLASS_SUCCESS);
    stun_build_u32(&b, STUN_ATTR_CONNECTION_ID, id);
    (void)dispatch_finish(d, &a->client, req, &b, auth);
}

void dispatch_tcp_attempt(dispatch_t *d, alloc_t *a, const struct sockaddr *peer, uint32_t id)
{
    uint8_t tid[12];
    rand_bytes(tid, sizeof(tid));
    stun_build_t b;
    stun_build_init(&b, d->out, sizeof(d->out),
                    stun_type(STUN_METHOD_CONNECTION_ATTEMPT, STUN_CLASS_INDICATION), tid);
    stun_build_xor_addr(&b, STUN_ATTR_XOR_PEER_ADDRESS, peer);
    stun_build_u32(&b, STUN_ATTR_CONNECTION_ID, id);
    int len = stun_build_finish(&b);
    if (len > 0)
        (void)a->client.send(a->client.send_ctx, a->client.remote, d->out, (size_t)len);
}

int dispatch_tcp_bind_check(dispatch_t *d, const turn_conn_t *conn, const stun_msg_t *req,
                            alloc_t *a)
{
    /* The client reuses the nonce of its control connection (RFC 6062 §5.4: "same credentials"),
     * so check the nonce against that 5-tuple's address; answers still go on this connection. */
    turn_conn_t ctl = *conn;
    ctl.remote = a->client.remote;
    dispatch_auth_t auth;
    if (dispatch_authenticate(d, &ctl, req, a, &auth) != DISPATCH_AUTH_OK)
        return -1;
    stun_build_t b;
    dispatch_begin(d, &b, req, STUN_CLASS_SUCCESS);
    return dispatch_finish(d, conn, req, &b, &auth) < 0 ? -1 : 0;
}

void dispatch_tcp_bind_refuse(dispatch_t *d, const turn_conn_t *conn, const stun_msg_t *req,
                              int code)
{
    stats_inc(&d->stats->turn_errors);
    dispatch_error(d, conn, req, code, NULL);
}
