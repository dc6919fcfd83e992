/* kpath_xdp.bpf.h - the kernel fast path's XDP program, uturn_xdp: the hot cases in front of the
 * TC program (kpath.bpf.c includes this file at its end: one object, the same maps). It relays
 * what it can finish on its own and hands everything else on with XDP_PASS, unchanged, so the TC
 * program and user space see it exactly as without XDP (docs/KERNEL.md):
 *   client -> peer: ChannelData (RFC 8656 §12.4) on a bound channel loses its 4-byte header (and
 *   up to 3 bytes of padding) and leaves from the relayed address to the peer;
 *   peer -> client: a datagram from a peer with a permission (§9) and a bound channel gets the
 *   ChannelData header (§12.6, no padding over UDP) and goes to the client.
 * Same semantics as the TC program: expiry, permission, the max-bps bucket, and the same counters
 * (a datagram counted once, by whichever program relayed it; KPATH_G_XDP_RELAYED says how many of
 * them XDP did). Send and Data indications, an expired or missing entry, a route that is not a
 * resolved forward out of an interface running this program (local, unresolved neighbour, no
 * route, over the MTU, out of a bridge or VLAN device), IP options, fragments, extension headers,
 * VLAN tags: XDP_PASS.
 * Checksums: an XDP frame has no checksum state, and a frame from a local socket on the far side
 * of a veth carries only the pseudo-header seed of a CHECKSUM_PARTIAL skb. So the program sums the
 * whole datagram (bpf_csum_diff in fixed-size chunks) and relays only one whose checksum verifies;
 * anything else (a seed, a corrupt datagram, no checksum over IPv4) goes to TC, which has the
 * skb's checksum state (KPATH_G_XDP_PASSED_CSUM). The new checksum is computed fresh from the
 * payload's sum taken during the check (the payload keeps its 16-bit alignment: it moves by 4).
 * Headers move, the payload does not: bpf_xdp_adjust_head by 4 either way, then eth/IP/UDP are
 * written whole at the new start, as a Linux UDP socket sends them (DF, id 0, TTL or hop limit
 * 64, TOS and flow label 0), exactly as the TC program writes them. */
#ifndef UTURN_KPATH_XDP_BPF_H
#define UTURN_KPATH_XDP_BPF_H

#define KPX_BAD (~0ull) /* kpx_sum: a range outside the frame */

/* The interfaces where uturn_xdp is attached (kpath_xdp.c writes them: ifindex -> 1). A frame is
 * redirected only to one of them: those drivers run native XDP, so they take XDP frames
 * (ndo_xdp_xmit), and a veth among them has a far end that does (kernel-offload-xdp = on). A route
 * out of anything else (a bridge, a VLAN device, a veth left to TC) is TC's: bpf_redirect there
 * would drop the frame. */
struct {
    __uint(type, BPF_MAP_TYPE_HASH);
    __uint(max_entries, 64);
    __type(key, __u32);
    __type(value, __u32);
} kp_xdp_if SEC(".maps");

/* RFC 1071 sum of `len` bytes of the frame at `off`, as 16-bit words loaded from memory (the
 * representation fold() and the checksum field use). An even `off` is a word boundary of the UDP
 * header too (eth + IP is 34 or 54 bytes), so a byte's parity in the frame is its parity in the
 * datagram. bpf_csum_diff takes packet memory of a size the verifier knows: 512-byte chunks, then
 * one of each power of two down to 4 (`off` masked so that the verifier's states merge), then the
 * last 0-3 bytes one by one. KPX_BAD if any of it is outside the frame. */
static __attribute__((noinline)) __u64 kpx_sum(struct xdp_md *ctx, __u32 off, __u32 len)
{
    void *data = (void *)(long)ctx->data, *end = (void *)(long)ctx->data_end;
    if (off > 0x1000 || len > 0x1000)
        return KPX_BAD;
    __u64 s = 0;
    for (int i = 0; i < 8; i++) {
        if (len < 512)
            break;
        off &= 0x1fff;
        __u8 *p = data + off;
        if ((void *)(p + 512) > end)
            return KPX_BAD;
        s = (__u32)bpf_csum_diff(NULL, 0, (__be32 *)p, 512, (__u32)s);
        off += 512;
        len -= 512;
    }
    if (len >= 512)
        return KPX_BAD;
#define KPX_CHUNK(n)                                                                               \
    if (len & (n)) {                                                                               \
        off &= 0x1fff;                                                                             \
        __u8 *p = data + off;                                                                      \
        if ((void *)(p + (n)) > end)                                                               \
            return KPX_BAD;                                                                        \
        s = (__u32)bpf_csum_diff(NULL, 0, (__be32 *)p, (n), (__u32)s);                             \
        off += (n);                                                                                \
    }
    KPX_CHUNK(256)
    KPX_CHUNK(128)
    KPX_CHUNK(64)
    KPX_CHUNK(32)
    KPX_CHUNK(16)
    KPX_CHUNK(8)
    KPX_CHUNK(4)
#undef KPX_CHUNK
    for (__u32 i = 0; i < (len & 3); i++) {
        off &= 0x1fff;
        __u8 *p = data + off;
        if ((void *)(p + 1) > end)
            return KPX_BAD;
        /* Little-endian loads: an even byte is a word's low half. */
        s += (off & 1) ? (__u64)*p << 8 : *p;
        off++;
    }
    return s;
}

/* The pseudo header's sum (RFC 768, RFC 8200 §8.1): addresses, protocol, UDP length. */
static __always_inline __u64 kpx_pseudo(__u8 family, const void *src, const void *dst, __u32 ulen)
{
    const __u16 *s = src, *d = dst;
    __u64 sum = bpf_htons(IPPROTO_UDP) + bpf_htons((__u16)ulen);
#pragma unroll
    for (int i = 0; i < 8; i++)
        if (i < 2 || family == 6)
            sum += (__u64)s[i] + d[i];
    return sum;
}

/* Where the new datagram goes: 1 with *r a resolved forward (KPATH_ROUTE_FWD) it fits, out of the
 * interface it came in on or another one of kp_xdp_if, else 0.
 * The entry's route cache (struct kpath_route) is used while good and refreshed as the TC program
 * does (kpath.bpf.c route() and lookup(): the same lookup as loopback's, the same TTL, until_ns as
 * the sequence number), since both compute the same thing; only its FWD answers are taken here. */
static __always_inline int kpx_route(struct xdp_md *ctx, __u8 family, const __u8 *src,
                                     const __u8 *dst, __u16 sport, __u16 dport, __u32 tot,
                                     struct kpath_route *c, __u64 now, struct kpath_route *r)
{
    const __u32 *sw = (const __u32 *)src;
    int any = (sw[0] | sw[1] | sw[2] | sw[3]) == 0;
    /* Link-local and multicast: "not forwarded" before the routes are looked at (route()). */
    if (family == 6 && (dst[0] == 0xff || (dst[0] == 0xfe && (dst[1] & 0xc0) == 0x80) ||
                        (src[0] == 0xfe && (src[1] & 0xc0) == 0x80)))
        return 0;
    int hit = 0;
    __u64 until = c->until_ns;
    asm volatile("" ::: "memory");
    if (until > now) {
        __builtin_memcpy(r, c, sizeof(*r));
        asm volatile("" ::: "memory");
        hit = c->until_ns == until;
    }
    if (!hit) {
        struct bpf_fib_lookup f;
        __u32 flags = any ? BPF_FIB_LOOKUP_SRC : 0;
        __u32 mtu = 0xffff;
        long rc = 0;
        for (int i = 0; i < 2; i++) {
            __builtin_memset(&f, 0, sizeof(f));
            f.l4_protocol = IPPROTO_UDP;
            f.sport = sport;
            f.dport = dport;
            f.tot_len = (__u16)mtu;
            f.ifindex = KP_LOOPBACK_IFINDEX;
            if (family == 4) {
                f.family = KP_AF_INET;
                __builtin_memcpy(&f.ipv4_src, src, 4);
                __builtin_memcpy(&f.ipv4_dst, dst, 4);
            } else {
                f.family = KP_AF_INET6;
                __builtin_memcpy(f.ipv6_src, src, 16);
                __builtin_memcpy(f.ipv6_dst, dst, 16);
            }
            rc = bpf_fib_lookup(ctx, &f, sizeof(f), flags);
            if (rc != BPF_FIB_LKUP_RET_FRAG_NEEDED || i == 1 || f.mtu_result == 0 ||
                f.mtu_result >= mtu)
                break;
            mtu = f.mtu_result;
        }
        __builtin_memset(r, 0, sizeof(*r));
        r->claims_gen = ~0ull;
        r->mtu = mtu;
        r->kind = KPATH_ROUTE_PASS;
        if (rc == BPF_FIB_LKUP_RET_NOT_FWDED) {
            if (!any)
                r->kind = KPATH_ROUTE_LOCAL;
        } else if (rc == BPF_FIB_LKUP_RET_SUCCESS || rc == BPF_FIB_LKUP_RET_NO_NEIGH) {
            r->kind = rc == BPF_FIB_LKUP_RET_SUCCESS ? KPATH_ROUTE_FWD : KPATH_ROUTE_NEIGH;
            r->ifindex = f.ifindex;
            __builtin_memcpy(r->dmac, f.dmac, 6);
            __builtin_memcpy(r->smac, f.smac, 6);
            if (family == 4)
                __builtin_memcpy(r->src, &f.ipv4_src, 4);
            else
                __builtin_memcpy(r->src, f.ipv6_src, 16);
        }
        r->until_ns = now + KPATH_ROUTE_TTL_NS;
        c->until_ns = 0;
        asm volatile("" ::: "memory");
        c->claims_gen = r->claims_gen;
        c->ifindex = r->ifindex;
        c->mtu = r->mtu;
        c->kind = r->kind;
        __builtin_memcpy(c->dmac, r->dmac, 6);
        __builtin_memcpy(c->smac, r->smac, 6);
        __builtin_memcpy(c->src, r->src, 16);
        asm volatile("" ::: "memory");
        c->until_ns = r->until_ns;
    }
    if (r->kind != KPATH_ROUTE_FWD || tot > r->mtu)
        return 0;
    __u32 out = r->ifindex;
    return out == ctx->ingress_ifindex || bpf_map_lookup_elem(&kp_xdp_if, &out) != NULL;
}

/* One relay decided: the new addresses and the framing in front of the kept data. */
struct kpx_out {
    const __u8 *src_ip, *dst_ip; /* map memory, 16 bytes; src all zero: the route's source */
    __u16 sport, dport;          /* network order */
    __u32 dlen;                  /* the data: at l4 + 8 + 4 (c2p) or l4 + 8 (p2c) */
    __u32 slot;
    int to_peer;            /* 1: strip the ChannelData header; 0: prepend it */
    __u16 channel;          /* p2c: the header to write */
    __u32 tail;             /* c2p: padding bytes after the data (0-3) */
    struct kpath_route *rc; /* the entry's route cache */
};

/* Verify, rewrite and send. XDP_PASS leaves the frame untouched. */
static __attribute__((noinline)) int kpx_relay(struct xdp_md *ctx, const struct pkt *p,
                                               const struct kpx_out *o, __u64 now)
{
    __u32 iphl = p->family == 4 ? 20 : 40;
    __u32 dlen = o->dlen;
    if (dlen > KP_MAX_DATA || o->tail > 3)
        return XDP_PASS;
    __u32 ulen = 8 + (o->to_peer ? 0 : 4) + dlen;
    struct kpath_route r;
    if (!kpx_route(ctx, p->family, o->src_ip, o->dst_ip, o->sport, o->dport, iphl + ulen, o->rc,
                   now, &r))
        return XDP_PASS;
    const __u32 *sw = (const __u32 *)o->src_ip;
    const __u8 *src = (sw[0] | sw[1] | sw[2] | sw[3]) == 0 ? r.src : o->src_ip;

    /* The old datagram's checksum, over all of it: it must verify. */
    void *data = (void *)(long)ctx->data, *end = (void *)(long)ctx->data_end;
    __u32 doff = p->l4 + 8 + (o->to_peer ? 4 : 0);
    __u64 ds = kpx_sum(ctx, doff, dlen);
    __u64 ts = o->tail ? kpx_sum(ctx, doff + dlen, o->tail) : 0;
    data = (void *)(long)ctx->data;
    end = (void *)(long)ctx->data_end;
    if (ds == KPX_BAD || ts == KPX_BAD)
        return XDP_PASS;
    /* One register for the bound check and the loads (the verifier checks that one). */
    __u16 *uw = data + (p->l4 & 0xff);
    asm volatile("" : "+r"(uw));
    if ((void *)(uw + 4) > end)
        return XDP_PASS;
    __u64 sum = kpx_pseudo(p->family, p->src, p->dst, p->plen + 8) + ds + ts;
#pragma unroll
    for (int i = 0; i < 4; i++)
        sum += uw[i];
    if (o->to_peer) {
        if ((void *)(uw + 6) > end)
            return XDP_PASS;
        sum += (__u64)uw[4] + uw[5];
    }
    /* 0: no checksum over IPv4 (RFC 768), invalid over IPv6 (RFC 8200 §8.1). */
    if (uw[3] == 0 || fold(sum) != 0xffff) {
        bump(KPATH_G_XDP_PASSED_CSUM, 1);
        return XDP_PASS;
    }

    /* The new one: headers move by 4 (bpf_xdp_adjust_head), the payload stays. A failure here
     * leaves the frame as it was. */
    __u32 old_len = (__u32)(end - data);
    if (bpf_xdp_adjust_head(ctx, o->to_peer ? 4 : -4) != 0)
        return XDP_PASS;
    /* From here on the frame is ours: a failure drops it (counted). */
    __u32 hl = ETH_HLEN + iphl + 8;
    __u32 want = hl + (o->to_peer ? 0 : 4) + dlen;
    __u32 have = o->to_peer ? old_len - 4 : old_len + 4;
    /* Padding after ChannelData, or an Ethernet trailer: trimmed. */
    if (have > want && bpf_xdp_adjust_tail(ctx, -(int)(have - want)) != 0)
        goto fail;
    if (have < want)
        goto fail;
    data = (void *)(long)ctx->data;
    end = (void *)(long)ctx->data_end;
    struct ethhdr *eth = data;
    if ((void *)(eth + 1) > end)
        goto fail;
    __builtin_memcpy(eth->h_dest, r.dmac, ETH_ALEN);
    __builtin_memcpy(eth->h_source, r.smac, ETH_ALEN);
    struct udphdr *uh;
    if (p->family == 4) {
        eth->h_proto = bpf_htons(ETH_P_IP);
        struct iphdr *ip = (void *)(eth + 1);
        uh = (void *)(ip + 1);
        if ((void *)(uh + 1) > end)
            goto fail;
        __u16 *w = (__u16 *)ip;
        w[0] = bpf_htons(0x4500);
        ip->tot_len = bpf_htons(20 + ulen);
        ip->id = 0;
        ip->frag_off = bpf_htons(0x4000);
        ip->ttl = 64;
        ip->protocol = IPPROTO_UDP;
        ip->check = 0;
        __builtin_memcpy(&ip->saddr, src, 4);
        __builtin_memcpy(&ip->daddr, o->dst_ip, 4);
        __u64 is = 0;
#pragma unroll
        for (int i = 0; i < 10; i++)
            is += w[i];
        ip->check = (__u16)~fold(is);
    } else {
        eth->h_proto = bpf_htons(ETH_P_IPV6);
        struct ipv6hdr *ip6 = (void *)(eth + 1);
        uh = (void *)(ip6 + 1);
        if ((void *)(uh + 1) > end)
            goto fail;
        *(__u32 *)ip6 = bpf_htonl(0x60000000);
        ip6->payload_len = bpf_htons(ulen);
        ip6->nexthdr = IPPROTO_UDP;
        ip6->hop_limit = 64;
        __builtin_memcpy(&ip6->saddr, src, 16);
        __builtin_memcpy(&ip6->daddr, o->dst_ip, 16);
    }
    uh->source = o->sport;
    uh->dest = o->dport;
    uh->len = bpf_htons(ulen);
    uh->check = 0;
    sum = kpx_pseudo(p->family, src, o->dst_ip, ulen) + ds;
    __u16 *nw = (__u16 *)uh;
#pragma unroll
    for (int i = 0; i < 4; i++)
        sum += nw[i];
    if (!o->to_peer) {
        __u8 *h = (void *)(uh + 1);
        if ((void *)(h + 4) > end)
            goto fail;
        h[0] = (__u8)(o->channel >> 8);
        h[1] = (__u8)o->channel;
        h[2] = (__u8)(dlen >> 8);
        h[3] = (__u8)dlen;
        sum += (__u64)nw[4] + nw[5];
    }
    __u16 ck = (__u16)~fold(sum);
    uh->check = ck ? ck : 0xffff;

    int ok = bucket_ok(o->slot, dlen, now);
    if (ok <= 0) {
        if (ok == 0) {
            count_slot(o->slot, 0, 0, 1);
            bump(KPATH_G_DROP_BPS, 1);
        } else {
            bump(KPATH_G_REDIRECT_FAIL, 1);
        }
        return XDP_DROP;
    }
    seen(KPATH_SEEN_PKTS, 1);
    seen(KPATH_SEEN_BYTES, old_len);
    count_slot(o->slot, o->to_peer, dlen, 0);
    bump(o->to_peer ? KPATH_G_CHANNELDATA_IN : KPATH_G_CHANNELDATA_OUT, 1);
    bump(o->to_peer ? KPATH_G_TO_PEER_BYTES : KPATH_G_FROM_PEER_BYTES, dlen);
    bump(KPATH_G_XDP_RELAYED, 1);
    if (r.ifindex == ctx->ingress_ifindex)
        return XDP_TX;
    return bpf_redirect(r.ifindex, 0);
fail:
    bump(KPATH_G_REDIRECT_FAIL, 1);
    return XDP_DROP;
}

/* eth/IP/UDP of a frame, as kpath.bpf.c parse() for an skb: 0, or -1 for anything it does not
 * take (not IP/UDP, a VLAN tag, IP options, fragments, extension headers, a bad IPv4 header
 * checksum, lengths that do not add up). */
static __always_inline int kpx_parse(struct xdp_md *ctx, struct pkt *p)
{
    void *data = (void *)(long)ctx->data, *end = (void *)(long)ctx->data_end;
    struct ethhdr *eth = data;
    if ((void *)(eth + 1) > end)
        return -1;
    struct udphdr *uh;
    __u32 ulen, len = (__u32)(end - data);
    if (eth->h_proto == bpf_htons(ETH_P_IP)) {
        struct iphdr *ip = (void *)(eth + 1);
        if ((void *)(ip + 1) > end)
            return -1;
        if (ip->version != 4 || ip->ihl != 5 || ip->protocol != IPPROTO_UDP ||
            (ip->frag_off & bpf_htons(0x3fff)))
            return -1;
        /* The stack drops a bad header checksum; we rewrite the header, so check it first. */
        __u16 *w = (__u16 *)ip;
        __u64 is = 0;
#pragma unroll
        for (int i = 0; i < 10; i++)
            is += w[i];
        if (fold(is) != 0xffff)
            return -1;
        uh = (void *)(ip + 1);
        if ((void *)(uh + 1) > end)
            return -1;
        __u32 tot = bpf_ntohs(ip->tot_len);
        ulen = bpf_ntohs(uh->len);
        if (ulen < 8 || tot != ulen + 20 || ETH_HLEN + tot > len)
            return -1;
        p->family = 4;
        p->src[0] = ip->saddr;
        p->dst[0] = ip->daddr;
        p->src[1] = p->src[2] = p->src[3] = 0;
        p->dst[1] = p->dst[2] = p->dst[3] = 0;
        p->l4 = ETH_HLEN + 20;
    } else if (eth->h_proto == bpf_htons(ETH_P_IPV6)) {
        struct ipv6hdr *ip6 = (void *)(eth + 1);
        if ((void *)(ip6 + 1) > end)
            return -1;
        if (ip6->version != 6 || ip6->nexthdr != IPPROTO_UDP)
            return -1;
        uh = (void *)(ip6 + 1);
        if ((void *)(uh + 1) > end)
            return -1;
        ulen = bpf_ntohs(uh->len);
        if (ulen < 8 || ulen != bpf_ntohs(ip6->payload_len) || ETH_HLEN + 40 + ulen > len)
            return -1;
        p->family = 6;
        __builtin_memcpy(p->src, &ip6->saddr, 16);
        __builtin_memcpy(p->dst, &ip6->daddr, 16);
        p->l4 = ETH_HLEN + 40;
    } else {
        return -1;
    }
    p->sport = uh->source;
    p->dport = uh->dest;
    p->plen = ulen - 8;
    return 0;
}

/* A peer's datagram to a relayed address on a bound channel, with a live permission (RFC 8656
 * §9, §12.6). Anything else (the allocation entry: a Data indication) is TC's. */
static __always_inline int kpx_p2c(struct xdp_md *ctx, const struct pkt *p, __u64 now)
{
    struct kpath_p2c_key k;
    __builtin_memset(&k, 0, sizeof(k));
    __builtin_memcpy(k.relay_ip, p->dst, 16);
    __builtin_memcpy(k.peer_ip, p->src, 16);
    k.relay_port = p->dport;
    k.peer_port = p->sport;
    k.family = p->family;
    struct kpath_p2c_val *v = bpf_map_lookup_elem(&kp_p2c, &k);
    if (!v || v->channel == 0 || now >= v->expires_ns)
        return XDP_PASS;
    struct kpath_perm_val *pv;
    if (perm_state(v->slot, p->family, p->src, now, &pv) != 1)
        return XDP_PASS;
    if (p->family == 4 && (!v4_form(v->server_ip) || !v4_form(v->client_ip)))
        return XDP_PASS;
    struct kpx_out o = {
        .src_ip = v->server_ip,
        .dst_ip = v->client_ip,
        .sport = v->server_port,
        .dport = v->client_port,
        .dlen = p->plen,
        .slot = v->slot,
        .to_peer = 0,
        .channel = v->channel,
        .rc = &v->route,
    };
    return kpx_relay(ctx, p, &o, now);
}

SEC("xdp")
int uturn_xdp(struct xdp_md *ctx)
{
    struct pkt p;
    if (kpx_parse(ctx, &p) != 0)
        return XDP_PASS;
    __u64 now = bpf_ktime_get_ns();
    void *data = (void *)(long)ctx->data, *end = (void *)(long)ctx->data_end;
    __u8 *h = data + p.l4 + 8;
    if (p.plen >= 4 && (void *)(h + 4) <= end) {
        /* RFC 7983 §7: ChannelData (the c2p map decides, as in TC: no entry, a peer's). */
        if ((h[0] & 0xc0) == 0x40) {
            __u16 ch = (__u16)(h[0] << 8 | h[1]);
            __u32 dlen = (__u32)h[2] << 8 | h[3];
            struct kpath_c2p_val *v = 4 + dlen <= p.plen ? c2p_find(&p, ch) : NULL;
            if (v) {
                if (now >= v->expires_ns || ch == 0 || v->peer_port == 0 ||
                    (p.family == 4 && (!v4_form(v->relay_ip) || !v4_form(v->peer_ip))))
                    return XDP_PASS;
                struct kpx_out o = {
                    .src_ip = v->relay_ip,
                    .dst_ip = v->peer_ip,
                    .sport = v->relay_port,
                    .dport = v->peer_port,
                    .dlen = dlen,
                    .slot = v->slot,
                    .to_peer = 1,
                    .tail = p.plen - 4 - dlen,
                    .rc = &v->route,
                };
                return kpx_relay(ctx, &p, &o, now);
            }
        } else if (h[0] == 0 && h[1] == STUN_SEND_INDICATION) {
            return XDP_PASS; /* Send indications: TC */
        }
    }
    return kpx_p2c(ctx, &p, now);
}

#endif
