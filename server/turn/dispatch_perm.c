/* dispatch_perm.c - CreatePermission and ChannelBind.
 *
 * RFC 8656 §9-10 (CreatePermission: every XOR-PEER-ADDRESS in the request, by IP only, 300 s; all
 * or nothing), §12.1-12.2 (ChannelBind: 0x4000-0x4FFF, one number per peer and one peer per number,
 * 600 s, also installs the peer's permission), §21 (peers are checked against the policy: 403).
 */
#include <errno.h>
#include <string.h>

#include "dispatch_int.h"
#include "frame.h"
#include "peer_policy.h"
#include "sockaddr_util.h"

int dispatch_check_peer(dispatch_t *d, alloc_t *a, const stun_msg_t *msg, const stun_attr_t *attr,
                        sa_any_t *out)
{
    struct sockaddr_storage raw, canon;
    if (stun_attr_get_xor_addr(msg, attr, &raw) != 0 ||
        peer_canonicalize((struct sockaddr *)&raw, &canon) != 0)
        return STUN_ERR_BAD_REQUEST;
    if (!alloc_relay_for(a, canon.ss_family))
        return STUN_ERR_PEER_ADDRESS_FAMILY_MISMATCH;
    if (peer_policy_check(&d->shared->policy, (struct sockaddr *)&canon) != 0) {
        stats_inc(&d->stats->drop_peer_policy);
        return STUN_ERR_FORBIDDEN;
    }
    memset(out, 0, sizeof(*out));
    memcpy(out, &canon, sa_len((struct sockaddr *)&canon));
    return 0;
}

#define MAX_PEERS_PER_REQUEST 16

/* CreatePermission and ChannelBind answer alike: an error with `code`, or an empty success. */
static void answer(dispatch_t *d, const turn_conn_t *conn, const stun_msg_t *msg, int code,
                   const dispatch_auth_t *auth)
{
    if (code != 0) {
        stats_inc(&d->stats->turn_errors);
        dispatch_error(d, conn, msg, code, auth);
        return;
    }
    stun_build_t b;
    dispatch_begin(d, &b, msg, STUN_CLASS_SUCCESS);
    (void)dispatch_finish(d, conn, msg, &b, auth);
}

void dispatch_create_permission(dispatch_t *d, const turn_conn_t *conn, const stun_msg_t *msg,
                                alloc_t *a)
{
    dispatch_auth_t auth;
    if (dispatch_authenticate(d, conn, msg, a, &auth) != DISPATCH_AUTH_OK)
        return;
    sa_any_t peers[MAX_PEERS_PER_REQUEST];
    int n = 0, code = 0;
    for (int i = 0; i < msg->nattrs && code == 0; i++) {
        if (msg->attrs[i].type != STUN_ATTR_XOR_PEER_ADDRESS)
            continue;
        if (n == MAX_PEERS_PER_REQUEST)
            code = STUN_ERR_INSUFFICIENT_CAPACITY;
        else
            code = dispatch_check_peer(d, a, msg, &msg->attrs[i], &peers[n++]);
    }
    if (code == 0 && n == 0)
        code = STUN_ERR_BAD_REQUEST;
    /* All or nothing (RFC 8656 §10.2): install only when every peer passed and all of them fit. */
    if (code == 0 &&
        alloc_perm_fits(a, peers, n, d->now_ms, (unsigned)d->cfg->max_permissions) != 0)
        code = STUN_ERR_INSUFFICIENT_CAPACITY;
    int installed = 0;
    for (int i = 0; i < n && code == 0; i++) {
        int rc = alloc_perm_install(a, &peers[i].sa, d->now_ms, (unsigned)d->cfg->max_permissions);
        if (rc != 0)
            code = STUN_ERR_INSUFFICIENT_CAPACITY;
        else
            installed++;
    }
    if (installed)
        dispatch_offload(d, a);
    answer(d, conn, msg, code, &auth);
}

void dispatch_channel_bind(dispatch_t *d, const turn_conn_t *conn, const stun_msg_t *msg,
                           alloc_t *a)
{
    dispatch_auth_t auth;
    if (dispatch_authenticate(d, conn, msg, a, &auth) != DISPATCH_AUTH_OK)
        return;
    const stun_attr_t *cn = stun_msg_find(msg, STUN_ATTR_CHANNEL_NUMBER);
    const stun_attr_t *pa = stun_msg_find(msg, STUN_ATTR_XOR_PEER_ADDRESS);
    uint16_t number = 0;
    sa_any_t peer;
    int code = 0;
    if (a->tcp || !cn || !pa || stun_attr_get_channel(msg, cn, &number) != 0 ||
        number < FRAME_CHANNEL_MIN || number > dispatch_channel_max(d))
        code = STUN_ERR_BAD_REQUEST;
    else
        code = dispatch_check_peer(d, a, msg, pa, &peer);
    if (code == 0) {
        int rc = alloc_chan_bind(a, number, &peer.sa, d->now_ms, (unsigned)d->cfg->max_channels);
        if (rc == -EINVAL)
            code = STUN_ERR_BAD_REQUEST;
        else if (rc != 0 ||
                 alloc_perm_install(a, &peer.sa, d->now_ms, (unsigned)d->cfg->max_permissions) != 0)
            code = STUN_ERR_INSUFFICIENT_CAPACITY;
        if (rc == 0)
            dispatch_offload(d, a); /* the channel, and its permission when that was installed */
    }
    if (code != 0)
        LOGD("channel_bind", "channel 0x%04x refused with %d", number, code);
    answer(d, conn, msg, code, &auth);
}
