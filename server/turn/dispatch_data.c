/* dispatch_data.c - the relay paths: Send indications and ChannelData from the client to peers, and
 * peer datagrams back to the client as ChannelData or Data indications.
 *
 * RFC 8656 §11 (Send and Data indications: never answered, dropped silently when anything is
 * missing), §9 (peer data needs a permission for the peer's IP; data never refreshes anything),
 * §12.5-12.6 (ChannelData: channel bound, length checked, padded to 4 bytes on streams, and a bound
 * channel MUST be used towards the client). This is the packet path: no allocation, no copy of the
 * payload, headers written in place around it.
 */
#include <string.h>

#include "dispatch_int.h"
#include "frame.h"
#include "peer_policy.h"
#include "sockaddr_util.h"

static int is_stream(int transport) { return transport == TURN_TCP || transport == TURN_TLS; }

static void relay_to_peer(dispatch_t *d, alloc_t *a, const struct sockaddr *peer,
                          const uint8_t *data, size_t len)
{
    alloc_relay_t *r = alloc_relay_for(a, peer->sa_family);
    if (!r) {
        stats_inc(&d->stats->drop_peer_policy);
        return;
    }
    if (!dispatch_bps_ok(d, a, len))
        return;
    if (d->relay.send(d->relay.env, r, peer, data, len) != 0) {
        stats_inc(&d->stats->relay_send_errors);
        return;
    }
    a->traffic.to_peer_packets++;
    a->traffic.to_peer_bytes += len;
    stats_inc(&d->stats->relay_client_to_peer_packets);
    stats_add(&d->stats->relay_client_to_peer_bytes, len);
}

void dispatch_channel_data(dispatch_t *d, const turn_conn_t *conn, const uint8_t *buf, size_t len)
{
    uint16_t ch;
    const uint8_t *data;
    size_t dlen;
    if (frame_channel_parse(buf, len, &ch, &data, &dlen) != 0 || ch > dispatch_channel_max(d)) {
        /* Short, or a number we never bind (RFC 8656 §12: reserved ones are discarded). */
        stats_inc(&d->stats->drop_malformed);
        return;
    }
    alloc_t *a = alloc_find(&d->allocs, conn->transport, conn->remote, conn->local);
    if (!a) {
        stats_inc(&d->stats->drop_no_allocation);
        return;
    }
    alloc_chan_t *c = alloc_chan_by_number(a, ch, d->now_ms);
    if (!c) {
        stats_inc(&d->stats->drop_no_channel);
        return;
    }
    stats_inc(&d->stats->relay_channeldata_in);
    relay_to_peer(d, a, &c->peer.sa, data, dlen);
}

void dispatch_send_indication(dispatch_t *d, const turn_conn_t *conn, const stun_msg_t *msg)
{
    alloc_t *a = alloc_find(&d->allocs, conn->transport, conn->remote, conn->local);
    if (!a || a->tcp) {
        stats_inc(&d->stats->drop_no_allocation);
        return;
    }
    const stun_attr_t *pa = stun_msg_find(msg, STUN_ATTR_XOR_PEER_ADDRESS);
    const stun_attr_t *da = stun_msg_find(msg, STUN_ATTR_DATA);
    struct sockaddr_storage raw, peer;
    if (!pa || !da || stun_attr_get_xor_addr(msg, pa, &raw) != 0 ||
        peer_canonicalize((struct sockaddr *)&raw, &peer) != 0 ||
        sa_port((struct sockaddr *)&peer) == 0) {
        stats_inc(&d->stats->drop_malformed);
        return;
    }
    if (!alloc_perm_check(a, (struct sockaddr *)&peer, d->now_ms)) {
        stats_inc(&d->stats->drop_no_permission);
        return;
    }
    stats_inc(&d->stats->relay_send_indications);
    relay_to_peer(d, a, (struct sockaddr *)&peer, stun_attr_value(msg, da), da->len);
}

/* A transaction id for a Data indication: unique enough (RFC 8489 §5 only needs it random for
 * requests), made without a syscall per packet. */
static void indication_tid(dispatch_t *d, uint8_t tid[12])
{
    static const uint64_t k = 0x9e3779b97f4a7c15ULL;
    uint64_t x = (d->limit_seed ^ d->stats->relay_data_indications) * k;
    memcpy(tid, &x, 8);
    uint32_t y = (uint32_t)(x >> 17) ^ (uint32_t)d->now_ms;
    memcpy(tid + 8, &y, 4);
}

static void send_channel_data(dispatch_t *d, alloc_t *a, uint16_t number, uint8_t *data, size_t len)
{
    uint8_t *hdr = data - 4;
    frame_channel_header(hdr, number, (uint16_t)len);
    size_t total = 4 + len;
    if (is_stream(a->client.transport)) {
        /* RFC 8656 §12.5: padded to a multiple of 4 on streams; zeros, never stale bytes. */
        size_t pad = frame_channel_pad(len);
        memset(data + len, 0, pad);
        total += pad;
    }
    if (a->client.send(a->client.send_ctx, a->client.remote, hdr, total) == 0)
        stats_inc(&d->stats->relay_channeldata_out);
}

static void send_data_indication(dispatch_t *d, alloc_t *a, const struct sockaddr *peer,
                                 uint8_t *data, size_t len)
{
    size_t hdr = STUN_HEADER_LEN + 4 + (peer->sa_family == AF_INET ? 8 : 20) + 4;
    uint8_t tid[12];
    indication_tid(d, tid);
    stun_build_t b;
    stun_build_init(&b, data - hdr, hdr + len + DISPATCH_TAILROOM,
                    stun_type(STUN_METHOD_DATA, STUN_CLASS_INDICATION), tid);
    stun_build_xor_addr(&b, STUN_ATTR_XOR_PEER_ADDRESS, peer);
    uint8_t *p = stun_build_attr_reserve(&b, STUN_ATTR_DATA, len);
    int total = stun_build_finish(&b);
    if (!p || total < 0 || p != data)
        return; /* over 64 KiB: cannot be described in one STUN message */
    if (a->client.send(a->client.send_ctx, a->client.remote, data - hdr, (size_t)total) == 0)
        stats_inc(&d->stats->relay_data_indications);
}

void dispatch_relay_input(dispatch_t *d, alloc_t *a, alloc_relay_t *r, const struct sockaddr *peer,
                          uint8_t *data, size_t len)
{
    (void)r;
    if (a->dead)
        return;
    if (!alloc_perm_check(a, peer, d->now_ms)) {
        /* RFC 8656 §9: no permission for this peer IP: silently discard. */
        stats_inc(&d->stats->drop_no_permission);
        return;
    }
    if (!dispatch_bps_ok(d, a, len))
        return;
    a->traffic.from_peer_packets++;
    a->traffic.from_peer_bytes += len;
    stats_inc(&d->stats->relay_peer_to_client_packets);
    stats_add(&d->stats->relay_peer_to_client_bytes, len);
    alloc_chan_t *c = alloc_chan_by_peer(a, peer, d->now_ms);
    if (c)
        send_channel_data(d, a, c->number, data, len);
    else
        send_data_indication(d, a, peer, data, len);
}
