/* kpath.bpf.c - the kernel fast path's TC program (clsact ingress on the interfaces of the
 * listening and relay addresses), built with clang -target bpf and embedded in uturnd through a
 * bpftool skeleton (Makefile.am). It relays UDP TURN traffic the maps describe (kpath_abi.h), the
 * way server/turn/dispatch_data.c does in user space:
 *   client -> peer: ChannelData (RFC 8656 §12) and Send indications (§11) to one of our listeners
 *   lose their framing and leave from the relayed address to the peer;
 *   peer -> client: a datagram to a relayed address, from a peer with a permission (§9), goes to
 *   the client as ChannelData when a channel is bound to that peer, else as a Data indication
 *   (§11.4) with XOR-PEER-ADDRESS, byte for byte what send_data_indication builds but the
 *   transaction id.
 * Everything it is not sure about (not ours, IP options, fragments, extension headers, GSO, an
 * attribute user space might treat differently, an expired entry, a route it cannot take) goes on
 * unchanged with TC_ACT_UNSPEC, so user space (or another uturnd's filter) decides as before.
 * Checksums (docs/KERNEL.md): the UDP header stays where it was and the payload moves, so a
 * CHECKSUM_PARTIAL skb (local senders) keeps a valid csum_start; bpf_l4_csum_replace then updates
 * the pseudo-header seed (PARTIAL) or the full checksum (anything else) incrementally, without
 * reading the payload. kpath_owner_pid is set by the loader before load; it lets a later uturnd
 * find the filter of one that crashed. */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/pkt_cls.h>
#include <linux/udp.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

#include "kpath_abi.h"
#include "kpath_maps.bpf.h"
#include "kpath_common.bpf.h"

/* The loading uturnd's pid (read back from the .rodata map by kpath.c's leftover sweep). */
volatile const __u32 kpath_owner_pid = 0;

static __always_inline int parse(struct __sk_buff *skb, struct pkt *p)
{
    if (parse_frame((void *)(long)skb->data, (void *)(long)skb->data_end, skb->len, p) != 0)
        return -1;
    /* A zero UDP checksum is invalid over IPv6: the stack drops it, as it would unchanged. */
    if (p->family == 6 && p->ucheck == 0)
        return -1;
    return 0;
}

/* Copy the payload between the packet and the scratch (store: into the packet). The verifier must
 * see the bound checked on the very register handed to the helper: hence the barrier and a 64-bit
 * length (a 32-bit one leaves the compiler a zero-extended twin it may pass instead). */
static __always_inline long copy_data(struct __sk_buff *skb, __u32 off, __u8 *buf, __u64 n,
                                      int store)
{
    asm volatile("" : "+r"(n));
    if (n == 0)
        return 0;
    if (n > KP_MAX_DATA)
        return -1;
    return store ? bpf_skb_store_bytes(skb, off, buf, n, 0) : bpf_skb_load_bytes(skb, off, buf, n);
}

enum { ROUTE_PASS = 0, ROUTE_LOCAL, ROUTE_AGAIN, ROUTE_REDIRECT, ROUTE_NEIGH };

/* Where the rewritten datagram goes, decided before anything is changed so that a route we cannot
 * take leaves the packet to user space untouched. The route comes from the entry's cache while it
 * is good (kpath_abi.h), else from route_lookup(), and then goes into the cache. A local
 * destination: on loopback the stack delivers it after TC_ACT_OK; received elsewhere, our own
 * address as its source would be a martian, so it stays in user space - unless it is a client ->
 * peer hop to a relayed address of ours that a peer -> client entry claims (relay to relay on one
 * uturnd: a WebRTC call with both sides on us): then the program's work runs again on the rewritten
 * datagram (uturn_ingress's loop, up to KP_HOPS) for the second hop, wherever it came in. A claim
 * is looked for on every datagram, except that a channel's cache may remember that none existed at
 * the current kp_claims_gen (no entry has been written since). */
static __always_inline int route(struct __sk_buff *skb, struct kp_scratch *s, const struct pkt *p,
                                 const struct out *o, __u32 tot_len, __u64 now)
{
    const __u32 *sw = (const __u32 *)o->src_ip;
    int any = (sw[0] | sw[1] | sw[2] | sw[3]) == 0;
    if (p->family == 6) {
        /* The IPv6 lookup answers "not forwarded" for link-local and multicast addresses before
         * it looks at the routes, as for a local one: those stay in user space. */
        const __u8 *d = o->dst_ip, *sa = o->src_ip;
        if (d[0] == 0xff || (d[0] == 0xfe && (d[1] & 0xc0) == 0x80) ||
            (sa[0] == 0xfe && (sa[1] & 0xc0) == 0x80))
            return ROUTE_PASS;
    }
    struct kpath_route *c = o->rc, *r = &s->rt;
    if (!c || !route_cached(c, r, now)) {
        route_lookup(skb, &s->fib, p->family, o->src_ip, o->dst_ip, o->sport, o->dport, any, r);
        if (c)
            route_store(c, r, now);
        else
            r->until_ns = now + KPATH_ROUTE_TTL_NS;
    }
    if (r->kind == KPATH_ROUTE_LOCAL) {
        if (o->to_peer) {
            __u64 gen = *(volatile __u64 *)&kp_claims_gen;
            if (!o->claims_cache || r->claims_gen != gen) {
                if (p2c_claims(p->family, o->dst_ip, o->dport, o->src_ip, o->sport, now))
                    return ROUTE_AGAIN;
                if (c && o->claims_cache)
                    c->claims_gen = gen;
            }
        }
        return skb->ifindex == KP_LOOPBACK_IFINDEX ? ROUTE_LOCAL : ROUTE_PASS;
    }
    if ((r->kind != KPATH_ROUTE_FWD && r->kind != KPATH_ROUTE_NEIGH) || tot_len > r->mtu)
        return ROUTE_PASS;
    if (any)
        __builtin_memcpy(s->src, r->src, 16);
    return r->kind == KPATH_ROUTE_FWD ? ROUTE_REDIRECT : ROUTE_NEIGH;
}

/* Does the IPv4 UDP checksum field hold only the pseudo-header seed, as a local socket's
 * CHECKSUM_PARTIAL datagram does (udp4_hwcsum: the folded sum of addresses, protocol and length)?
 * A full checksum equals it only if the rest sums to zero (1 in 65535 datagrams; those lose a
 * checksum that says nothing the seed did not). */
static __always_inline int seed_only(const struct pkt *p)
{
    __u64 s = (__u64)p->src[0] + p->dst[0] + bpf_htons(IPPROTO_UDP) + bpf_htons(p->plen + 8);
    return p->ucheck == fold(s);
}

/* IPv4 ChannelData from a local client to a local destination (a peer, or a media server, on
 * this host), received on loopback with a checksum field that holds just the pseudo-header seed
 * (CHECKSUM_PARTIAL: what a local UDP socket sends; the payload was never summed): the headers
 * move forward over the 4-byte ChannelData header (bpf_skb_adjust_room) instead of the payload
 * moving back, and the datagram goes on without a UDP checksum (0, RFC 768), so the payload is
 * never read. Right only for a datagram this host receives: the stack takes a zero IPv4 UDP
 * checksum as none, and the skb's csum_start, now 4 bytes before its UDP header, is never used (a
 * device would use it, so nothing that leaves comes here). A datagram with a real checksum (an
 * injected frame: it may be corrupt, and must stay detectably so) and IPv6 (a checksum is
 * mandatory) take the general path. The caller checked the rest (local_ok()); v is the channel's
 * kp_c2p entry, with a relayed address (not a wildcard). */
static __attribute__((noinline)) int
local_strip(struct __sk_buff *skb, const struct kpath_c2p_val *v, __u32 dlen, __u64 now)
{
    __u32 ulen = 8 + dlen;
    if (!charge(v->slot, dlen, now))
        return TC_ACT_SHOT;
    if (bpf_skb_adjust_room(skb, -4, BPF_ADJ_ROOM_NET, 0) != 0)
        return pass(KPATH_G_PASS_UNHANDLED); /* unchanged */
    void *data = (void *)(long)skb->data, *end = (void *)(long)skb->data_end;
    struct iphdr *ip = data + ETH_HLEN;
    struct udphdr *uh = (void *)(ip + 1);
    if ((void *)(uh + 1) > end) {
        bump(KPATH_G_REDIRECT_FAIL, 1);
        return TC_ACT_SHOT;
    }
    write_ip4(ip, 20 + ulen, v->relay_ip, v->peer_ip);
    uh->source = v->relay_port;
    uh->dest = v->peer_port;
    uh->len = bpf_htons(ulen);
    uh->check = 0;
    count_slot(v->slot, 1, dlen, 0);
    bump(KPATH_G_CHANNELDATA_IN, 1);
    bump(KPATH_G_TO_PEER_BYTES, dlen);
    return TC_ACT_OK;
}

/* May the channel's datagram take local_strip() (given that its route is local and unclaimed)?
 * IPv4, no padding, received on loopback, a relayed address of its own, a seed checksum. */
static __always_inline int local_ok(struct __sk_buff *skb, const struct pkt *p,
                                    const struct kpath_c2p_val *v, __u32 tail)
{
    return p->family == 4 && tail == 0 && skb->ifindex == KP_LOOPBACK_IFINDEX &&
           *(const __u32 *)v->relay_ip != 0 && seed_only(p);
}

/* Rewrite the datagram as `o` says and send it on. The caller filled s->old + 8 (framing that
 * disappears) and s->new + 8 (framing written, o->hdr bytes). Not inlined: one copy for the four
 * callers keeps the program half the size. */
static __attribute__((noinline)) int relay(struct __sk_buff *skb, struct kp_scratch *s,
                                           const struct pkt *p, const struct out *o, __u64 now)
{
    __u32 iphl = p->family == 4 ? 20 : 40;
    __u32 ulen = 8 + o->hdr + o->dlen + o->pad;
    __u32 tot = p->family == 4 ? iphl + ulen : ulen;
    int where = route(skb, s, p, o, iphl + ulen, now);
    if (where == ROUTE_PASS)
        return pass(KPATH_G_PASS_ROUTE);
    const __u32 *sw = (const __u32 *)o->src_ip;
    const __u8 *src = (sw[0] | sw[1] | sw[2] | sw[3]) == 0 ? s->src : o->src_ip;
    /* The caller takes local_strip() (from its own frame: the stack of four nested calls would
     * pass the verifier's 512 bytes); nothing has changed yet. */
    if (where == ROUTE_LOCAL && o->cv && local_ok(skb, p, o->cv, o->olen - 4))
        return KP_LOCAL;

    /* The checksum's change, worked out before the packet changes. The pseudo header's (source,
     * destination, length) as a one's complement sum of 32-bit words, the old ones complemented
     * (what bpf_csum_diff does, without the buffers); the rest (ports, length, and the framing
     * that goes and comes, s->old / s->new) with bpf_csum_diff over the bytes used. */
    __u32 olen = p->plen + 8;
    __u64 ps = (__u32)~bpf_htonl(olen) + (__u64)bpf_htonl(ulen);
    const __u32 *ns = (const __u32 *)src, *nd = (const __u32 *)o->dst_ip;
    if (p->family == 4) {
        ps += (__u32)~p->src[0] + (__u64)(__u32)~p->dst[0] + ns[0] + nd[0];
    } else {
#pragma unroll
        for (int i = 0; i < 4; i++)
            ps += (__u32)~p->src[i] + (__u64)(__u32)~p->dst[i] + ns[i] + nd[i];
    }
    ps = (ps & 0xffffffff) + (ps >> 32);
    ps = (ps & 0xffffffff) + (ps >> 32);
    __s64 d_ps = (__s64)(__u32)ps;
    __u16 *ow = (__u16 *)s->old, *nw = (__u16 *)s->new;
    ow[0] = p->sport;
    ow[1] = p->dport;
    ow[2] = bpf_htons(olen);
    ow[3] = 0;
    nw[0] = o->sport;
    nw[1] = o->dport;
    nw[2] = bpf_htons(ulen);
    nw[3] = 0;
    __u64 on = 8 + o->olen, nn = 8 + o->nlen;
    asm volatile("" : "+r"(on), "+r"(nn));
    if (on > sizeof(s->old) || nn > sizeof(s->new) || (on & 3) || (nn & 3))
        return pass(KPATH_G_PASS_UNHANDLED);
    __s64 d_rest = bpf_csum_diff((__be32 *)s->old, on, (__be32 *)s->new, nn, 0);
    if (d_rest < 0)
        return pass(KPATH_G_PASS_UNHANDLED);

    __u32 dlen = o->dlen;
    __u32 at = p->l4 + 8;
    if (dlen > KP_MAX_DATA || copy_data(skb, at + o->keep, s->data, dlen, 0) != 0)
        return pass(KPATH_G_PASS_UNHANDLED);
    /* Trim or grow to the new length. It also turns CHECKSUM_COMPLETE into NONE (the stack then
     * checks the UDP checksum written below) and keeps PARTIAL's csum_start, since nothing in
     * front of the payload moves. Failure leaves the packet as it was. */
    if (bpf_skb_change_tail(skb, ETH_HLEN + iphl + ulen, 0) != 0)
        return pass(KPATH_G_PASS_UNHANDLED);

    /* From here on the packet is ours: a failure drops it (counted). */
    if (!charge(o->slot, dlen, now))
        return TC_ACT_SHOT;
    if (copy_data(skb, at + o->hdr, s->data, dlen, 1) != 0)
        goto fail;
    __u64 hl = o->hdr;
    asm volatile("" : "+r"(hl));
    if (hl > 48)
        goto fail;
    if (hl != 0 && bpf_skb_store_bytes(skb, at, s->new + 8, hl, 0) != 0)
        goto fail;
    if (o->pad != 0) {
        __u8 zero = 0;
        __u32 end = at + o->hdr + dlen;
#pragma unroll
        for (__u32 i = 0; i < 3; i++)
            if (i < o->pad && bpf_skb_store_bytes(skb, end + i, &zero, 1, 0) != 0)
                goto fail;
    }

    void *data = (void *)(long)skb->data, *end = (void *)(long)skb->data_end;
    if (p->family == 4) {
        struct iphdr *ip = data + ETH_HLEN;
        struct udphdr *uh = (void *)(ip + 1);
        if ((void *)(uh + 1) > end)
            goto fail;
        write_ip4(ip, tot, src, o->dst_ip);
        uh->source = o->sport;
        uh->dest = o->dport;
        uh->len = bpf_htons(ulen);
    } else {
        struct ipv6hdr *ip6 = data + ETH_HLEN;
        struct udphdr *uh = (void *)(ip6 + 1);
        if ((void *)(uh + 1) > end)
            goto fail;
        *(__u32 *)ip6 = bpf_htonl(0x60000000); /* traffic class 0, flow label 0 */
        ip6->payload_len = bpf_htons(ulen);
        ip6->hop_limit = 64;
        __builtin_memcpy(&ip6->saddr, src, 16);
        __builtin_memcpy(&ip6->daddr, o->dst_ip, 16);
        uh->source = o->sport;
        uh->dest = o->dport;
        uh->len = bpf_htons(ulen);
    }
    /* The checksum field still holds the old value: update it in place. With BPF_F_PSEUDO_HDR the
     * kernel changes a CHECKSUM_PARTIAL seed; without it, only a full checksum. A zero IPv4
     * checksum (none) stays zero; a result of zero is sent as 0xffff. */
    __u64 mm = BPF_F_MARK_MANGLED_0 | (p->family == 6 ? BPF_F_MARK_ENFORCE : 0);
    if (bpf_l4_csum_replace(skb, p->l4 + 6, 0, d_ps, BPF_F_PSEUDO_HDR | mm) != 0 ||
        bpf_l4_csum_replace(skb, p->l4 + 6, 0, d_rest, mm) != 0)
        goto fail;

    count_slot(o->slot, o->to_peer, dlen, 0);
    bump(o->kind, 1);
    bump(o->to_peer ? KPATH_G_TO_PEER_BYTES : KPATH_G_FROM_PEER_BYTES, dlen);
    if (where == ROUTE_LOCAL)
        return TC_ACT_OK;
    if (where == ROUTE_AGAIN)
        return KP_AGAIN;
    if (where == ROUTE_NEIGH)
        return bpf_redirect_neigh(s->rt.ifindex, 0, 0, 0);
    data = (void *)(long)skb->data;
    end = (void *)(long)skb->data_end;
    struct ethhdr *eth = data;
    if ((void *)(eth + 1) > end)
        goto fail;
    __builtin_memcpy(eth->h_dest, s->rt.dmac, ETH_ALEN);
    __builtin_memcpy(eth->h_source, s->rt.smac, ETH_ALEN);
    return bpf_redirect(s->rt.ifindex, 0);
fail:
    bump(KPATH_G_REDIRECT_FAIL, 1);
    return TC_ACT_SHOT;
}

/* Trailing bytes (ChannelData padding, DATA padding): at most 3, placed at their parity. */
static __always_inline int load_tail(struct __sk_buff *skb, __u32 off, __u8 *slot4, __u32 parity,
                                     __u32 n)
{
    if (n > 3)
        return -1;
    /* A byte at a time: a constant size the verifier accepts whatever the compiler merges. */
    __u8 *to = slot4 + (parity & 1);
#pragma unroll
    for (__u32 i = 0; i < 3; i++)
        if (i < n && bpf_skb_load_bytes(skb, off + i, to + i, 1) != 0)
            return -1;
    return 0;
}

/* RFC 8656 §12.4: a ChannelData message to one of our listeners. */
static __always_inline int c2p_channel(struct __sk_buff *skb, struct kp_scratch *s,
                                       const struct pkt *p, const __u8 *h, __u64 now)
{
    __u16 ch = (__u16)(h[0] << 8 | h[1]);
    __u32 dlen = (__u32)h[2] << 8 | h[3];
    /* frame_channel_parse: a short datagram is dropped by user space, padding is allowed. */
    if (4 + dlen > p->plen)
        return NOT_OURS;
    struct kpath_c2p_val *v = c2p_find(p, ch);
    if (!v)
        return NOT_OURS;
    if (now >= v->expires_ns)
        return pass(KPATH_G_PASS_EXPIRED);
    if (ch == 0 || v->peer_port == 0 || dlen > KP_MAX_DATA ||
        (p->family == 4 && (!v4_form(v->relay_ip) || !v4_form(v->peer_ip))))
        return pass(KPATH_G_PASS_UNHANDLED);
    __u32 tail = p->plen - 4 - dlen;
    /* The common case of a client and a peer on this host, with the channel's route cached: no
     * struct out, no route(), straight to the local path. */
    if (local_ok(skb, p, v, tail) && local_cached(&v->route, now))
        return local_strip(skb, v, dlen, now);
    __builtin_memcpy(s->old + 8, h, 4);
    if (tail) {
        *(__u32 *)(s->old + 12) = 0;
        if (load_tail(skb, p->l4 + 8 + 4 + dlen, s->old + 12, dlen, tail) != 0)
            return pass(KPATH_G_PASS_UNHANDLED);
    }
    struct out o = {
        .src_ip = v->relay_ip,
        .dst_ip = v->peer_ip,
        .sport = v->relay_port,
        .dport = v->peer_port,
        .keep = 4,
        .olen = tail ? 8 : 4,
        .dlen = dlen,
        .slot = v->slot,
        .to_peer = 1,
        .kind = KPATH_G_CHANNELDATA_IN,
        .rc = &v->route,
        .claims_cache = 1,
        .cv = v,
    };
    int rc = relay(skb, s, p, &o, now);
    return rc == KP_LOCAL ? local_strip(skb, v, dlen, now) : rc;
}

/* RFC 8656 §11.2 as dispatch_send_indication: XOR-PEER-ADDRESS and DATA, each once, in either
 * order, nothing else (user space ignores FINGERPRINT's absence but checks it when present, and
 * other attributes could change what it does: all of that stays there). */
static __always_inline int c2p_send(struct __sk_buff *skb, struct kp_scratch *s,
                                    const struct pkt *p, const __u8 *h, __u64 now)
{
    __u32 plen = p->plen;
    __u32 hlen = (__u32)h[2] << 8 | h[3];
    if (plen > STUN_MAX_MSG || hlen + STUN_HDR != plen || (hlen & 3))
        return NOT_OURS;
    __u8 cookie[4];
    if (bpf_skb_load_bytes(skb, p->l4 + 8 + 4, cookie, 4) != 0 ||
        *(__u32 *)cookie != bpf_htonl(STUN_COOKIE))
        return NOT_OURS;
    struct kpath_c2p_val *v = c2p_find(p, 0);
    if (!v)
        return NOT_OURS;
    if (now >= v->expires_ns)
        return pass(KPATH_G_PASS_EXPIRED);
    if (p->family == 4 && !v4_form(v->relay_ip))
        return pass(KPATH_G_PASS_UNHANDLED);

    __u32 off = STUN_HDR, xoff = 0, xlen = 0, doff = 0, dlen = 0;
    for (int i = 0; i < 3; i++) {
        if (off >= plen)
            break;
        __u8 ah[4];
        if (off + 4 > plen || bpf_skb_load_bytes(skb, p->l4 + 8 + off, ah, 4) != 0)
            return pass(KPATH_G_PASS_UNHANDLED);
        __u32 type = (__u32)ah[0] << 8 | ah[1], alen = (__u32)ah[2] << 8 | ah[3];
        __u32 padded = (alen + 3) & ~3u;
        if (padded + 4 > plen - off)
            return pass(KPATH_G_PASS_UNHANDLED);
        if (type == STUN_ATTR_XOR_PEER_ADDRESS && xoff == 0) {
            xoff = off;
            xlen = alen;
        } else if (type == STUN_ATTR_DATA && doff == 0) {
            doff = off;
            dlen = alen;
        } else {
            return pass(KPATH_G_PASS_UNHANDLED);
        }
        off += 4 + padded;
    }
    if (off != plen || xoff == 0 || doff == 0 || dlen > KP_MAX_DATA ||
        xlen != (p->family == 4 ? 8u : 20u))
        return pass(KPATH_G_PASS_UNHANDLED);

    /* The framing that disappears: header, XOR-PEER-ADDRESS, DATA's header and padding. Every
     * attribute starts on a 4-byte boundary, so only the padding's position matters. */
    __builtin_memset(s->old, 0, sizeof(s->old));
    __u8 *x = s->old + 8 + STUN_HDR;
    if (bpf_skb_load_bytes(skb, p->l4 + 8, s->old + 8, STUN_HDR) != 0 ||
        bpf_skb_load_bytes(skb, p->l4 + 8 + xoff, x, 4 + (xlen & 31)) != 0 ||
        bpf_skb_load_bytes(skb, p->l4 + 8 + doff, s->old + 8 + 20 + 24, 4) != 0 ||
        load_tail(skb, p->l4 + 8 + doff + 4 + dlen, s->old + 8 + 20 + 24 + 4, dlen,
                  ((dlen + 3) & ~3u) - dlen) != 0)
        return pass(KPATH_G_PASS_UNHANDLED);
    /* x: type(2) len(2) reserved(1) family(1) port(2) address. */
    if (x[5] != (p->family == 4 ? 0x01 : 0x02))
        return pass(KPATH_G_PASS_UNHANDLED);
    __u16 port = *(__u16 *)(x + 6) ^ bpf_htons(STUN_COOKIE >> 16);
    if (port == 0)
        return pass(KPATH_G_PASS_UNHANDLED);
    /* The peer: XOR with the cookie, then (IPv6) the transaction id. */
    __u32 peer[4] = {0, 0, 0, 0};
    peer[0] = *(__u32 *)(x + 8) ^ bpf_htonl(STUN_COOKIE);
    if (p->family == 6) {
        const __u32 *tid = (const __u32 *)(s->old + 8 + 8);
        peer[1] = *(__u32 *)(x + 12) ^ tid[0];
        peer[2] = *(__u32 *)(x + 16) ^ tid[1];
        peer[3] = *(__u32 *)(x + 20) ^ tid[2];
        /* An IPv4-mapped peer is canonicalised to IPv4 by user space (peer_canonicalize). */
        if (peer[0] == 0 && peer[1] == 0 && peer[2] == bpf_htonl(0xffff))
            return pass(KPATH_G_PASS_UNHANDLED);
    }
    struct kpath_perm_val *pv;
    int perm = perm_state(v->slot, p->family, peer, now, &pv);
    if (perm < 0 || !pv)
        return TC_ACT_UNSPEC; /* no permission: user space drops it, counted there */
    if (perm == 0)
        return pass(KPATH_G_PASS_EXPIRED);
    __builtin_memcpy(s->peer, peer, 16);
    struct out o = {
        .src_ip = v->relay_ip,
        .dst_ip = s->peer,
        .sport = v->relay_port,
        .dport = port,
        .keep = doff + 4,
        .olen = 20 + 24 + 4 + 4, /* header, XOR-PEER-ADDRESS's room, DATA's header, padding */
        .dlen = dlen,
        .slot = v->slot,
        .to_peer = 1,
        .kind = KPATH_G_SEND_IN,
        .rc = &pv->route, /* the route to the peer's IP (any port: no claim is remembered) */
    };
    return relay(skb, s, p, &o, now);
}

/* RFC 8656 §11.4 and §12.6, as dispatch_relay_input: a datagram from a peer to a relayed address.
 */
static __always_inline int p2c(struct __sk_buff *skb, struct kp_scratch *s, const struct pkt *p,
                               __u64 now)
{
    struct kpath_p2c_val *v = p2c_find(p->family, p->dst, p->dport, p->src, p->sport);
    if (v && (now >= v->expires_ns || v->channel == 0))
        return pass(KPATH_G_PASS_EXPIRED); /* a stale channel: user space decides */
    if (!v) {
        v = p2c_find(p->family, p->dst, p->dport, 0, 0);
        if (!v)
            return TC_ACT_UNSPEC;
        if (now >= v->expires_ns)
            return pass(KPATH_G_PASS_EXPIRED);
    }
    /* User space checks the permission first (RFC 8656 §9), then looks for a channel. */
    struct kpath_perm_val *pv;
    int perm = perm_state(v->slot, p->family, p->src, now, &pv);
    if (perm < 0)
        return TC_ACT_UNSPEC;
    if (perm == 0)
        return pass(KPATH_G_PASS_EXPIRED);
    __u32 dlen = p->plen;
    /* A wildcard listener (server_ip zero): route() finds the source. */
    if (dlen > KP_MAX_DATA ||
        (p->family == 4 && (!v4_form(v->server_ip) || !v4_form(v->client_ip))))
        return pass(KPATH_G_PASS_UNHANDLED);

    __u8 *h = s->new + 8;
    struct out o = {
        .src_ip = v->server_ip,
        .dst_ip = v->client_ip,
        .sport = v->server_port,
        .dport = v->client_port,
        .keep = 0,
        .dlen = dlen,
        .slot = v->slot,
        .to_peer = 0,
        .rc = &v->route,
    };
    __u32 pad;
    o.hdr = client_framing(h, p, v->channel, dlen, &pad);
    o.nlen = o.hdr; /* every byte written; the zero padding adds nothing */
    o.pad = pad;
    o.kind = v->channel != 0 ? KPATH_G_CHANNELDATA_OUT : KPATH_G_DATA_OUT;
    return relay(skb, s, p, &o, now);
}

static __attribute__((noinline)) int ingress(struct __sk_buff *skb)
{
    seen(skb->len);
    /* A GSO/GRO skb carries several datagrams behind one header: user space (the stack splits). */
    if (skb->gso_segs > 1 || skb->gso_size != 0)
        return TC_ACT_UNSPEC;
    /* A VLAN tag held outside the frame would follow a redirect to the wrong link. */
    if (skb->vlan_present)
        return TC_ACT_UNSPEC;
    /* The headers we read (eth, IPv6, UDP, a STUN header) in the linear part; no content change. */
    __u32 lin = skb->data_end - skb->data;
    if (lin < skb->len && lin < 128)
        bpf_skb_pull_data(skb, skb->len < 128 ? skb->len : 128);

    struct pkt p;
    if (parse(skb, &p) != 0)
        return TC_ACT_UNSPEC;
    __u32 key = 0;
    struct kp_scratch *s = bpf_map_lookup_elem(&kp_scratch, &key);
    if (!s)
        return TC_ACT_UNSPEC;
    /* The coarse clock (CLOCK_MONOTONIC as of the last tick) costs a fraction of the full one;
     * it lags by up to a tick, so a tick's worth is added: `now` is never earlier than
     * CLOCK_MONOTONIC, and an entry stops relaying up to KP_CLOCK_SLACK_NS before its expiry,
     * never after (user space takes those datagrams, and decides as before). */
    __u64 now = bpf_ktime_get_coarse_ns() + KP_CLOCK_SLACK_NS;
    if (p.plen >= 4) {
        __u8 h[4];
        /* In the linear part after parse() (pulled above): read in place. */
        const __u8 *data = (void *)(long)skb->data, *end = (void *)(long)skb->data_end;
        const __u8 *at = data + (p.l4 & 0x7f) + 8;
        if (at + 4 <= end)
            __builtin_memcpy(h, at, 4);
        else if (bpf_skb_load_bytes(skb, p.l4 + 8, h, 4) != 0)
            return TC_ACT_UNSPEC;
        int rc = NOT_OURS;
        /* RFC 7983 §7: 64-79 is ChannelData (RFC 5766 numbers up to 0x7fff included: the map
         * decides), 0-3 STUN. */
        if ((h[0] & 0xc0) == 0x40)
            rc = c2p_channel(skb, s, &p, h, now);
        else if (h[0] == 0 && h[1] == STUN_SEND_INDICATION && p.plen >= STUN_HDR)
            rc = c2p_send(skb, s, &p, h, now);
        if (rc != NOT_OURS)
            return rc;
    }
    return p2c(skb, s, &p, now);
}

SEC("tc")
int uturn_ingress(struct __sk_buff *skb)
{
    /* A datagram relayed to a relayed address of ours (route(): relay to relay) takes that
     * relay's peer -> client hop at once: the same work again on the rewritten datagram. A
     * subprogram called in a bounded loop, not a tail call through a program array holding the
     * program itself: such a self reference outlived a crashed uturnd on Linux 6.18 (the array's
     * deferred clearing, raced by anyone who opened and closed it, leaked the array). */
    for (int hop = 0; hop < KP_HOPS; hop++) {
        int rc = ingress(skb);
        if (rc != KP_AGAIN)
            return rc;
    }
    /* A longer chain of our own relays: loopback delivers it to that relay's socket and user
     * space takes the hop; elsewhere the source would be a martian. */
    if (skb->ifindex == KP_LOOPBACK_IFINDEX)
        return TC_ACT_OK;
    bump(KPATH_G_REDIRECT_FAIL, 1);
    return TC_ACT_SHOT;
}

/* User space's side of an allocation's max-bps bucket (kpath_abi.h struct kpath_charge): a datagram
 * user space relays for an offloaded allocation is charged to the bucket the kernel path charges,
 * so the two paths share one max-bps, as one relay would (not one each). Never attached: run by
 * kpath_charge() with BPF_PROG_TEST_RUN, with the same clock as uturn_ingress. */
SEC("tc")
int uturn_charge(struct __sk_buff *skb)
{
    struct kpath_charge c;
    if (bpf_skb_load_bytes(skb, ETH_HLEN, &c, sizeof(c)) != 0)
        return KPATH_CHARGE_NO_SLOT;
    int ok = bucket_ok(c.slot, c.bytes, bpf_ktime_get_coarse_ns() + KP_CLOCK_SLACK_NS);
    return ok > 0 ? KPATH_CHARGE_OK : ok == 0 ? KPATH_CHARGE_DROP : KPATH_CHARGE_NO_SLOT;
}

char LICENSE[] SEC("license") = "GPL";
#include "kpath_xdp.bpf.h"
