/* kpath_xdp.bpf.h - the kernel fast path's XDP program, uturn_xdp: the hot cases in front of the
 * TC program (kpath.bpf.c includes this file at its end: one object, the same maps). It relays
 * what it can finish on its own and hands everything else on with XDP_PASS, unchanged, so the TC
 * program and user space see it exactly as without XDP (docs/KERNEL.md). What it relays is what
 * the TC program relays, the same way:
 *   client -> peer: ChannelData (RFC 8656 §12.4) on a bound channel loses its 4-byte header (and
 *   up to 3 bytes of padding), a Send indication (§11.2: XOR-PEER-ADDRESS and DATA only) its
 *   framing, and the data leaves from the relayed address to the peer;
 *   peer -> client: a datagram from a peer with a permission (§9) goes to the client as
 *   ChannelData on a bound channel (§12.6, no padding over UDP), else as a Data indication (§11.4,
 *   send_data_indication's bytes but the random transaction id).
 * Same semantics as the TC program: expiry, permission, the max-bps bucket, and the same counters
 * (a datagram counted once, by whichever program relayed it; KPATH_G_XDP_RELAYED says how many of
 * them XDP did). An expired or missing entry, a Send with any other attribute, a route that is
 * not a resolved forward out of an interface running this program (local, unresolved neighbour,
 * no route, over the MTU, out of a bridge or VLAN device), IP options, fragments, extension
 * headers, VLAN tags: XDP_PASS.
 * Checksums: an XDP frame has no checksum state, and a frame from a local socket on the far side
 * of a veth carries only the pseudo-header seed of a CHECKSUM_PARTIAL skb. So the program sums the
 * whole datagram (bpf_csum_diff in fixed-size chunks) and relays only one whose checksum verifies;
 * anything else (a seed, a corrupt datagram, no checksum over IPv4) goes to TC, which has the
 * skb's checksum state (KPATH_G_XDP_PASSED_CSUM). The new checksum is computed fresh from the
 * payload's sum taken during the check (the payload keeps its 16-bit alignment: it moves by 4).
 * Headers move, the payload does not: bpf_xdp_adjust_head by the framing's difference (4, a Send's
 * 24 to 48, a Data indication's 36 or 48), then eth/IP/UDP and the new framing are written whole
 * at the new start, as a Linux UDP socket sends them (DF, id 0, TTL or hop limit 64, TOS and flow
 * label 0), exactly as the TC program writes them; bpf_xdp_adjust_tail trims what followed the
 * data or adds a Data indication's padding. */
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
 * last 0-3 bytes one by one. KPX_BAD if any of it is outside the frame. A global function: the
 * verifier checks it once, not at each of its call sites. */
__attribute__((noinline)) __u64 kpx_sum(struct xdp_md *ctx, __u32 off, __u32 len)
{
    void *data = (void *)(long)ctx->data, *end = (void *)(long)ctx->data_end;
    if (off > 0x1000 || len > 0x1000)
        return KPX_BAD;
    __u64 s = 0;
    /* An odd start (what follows odd-length data): its first byte alone, the rest from even. */
    if ((off & 1) && len > 0) {
        asm volatile("" : "+r"(off)); /* keep the mask: the verifier needs the bound */
        __u8 *p = data + (off & 0x1fff);
        asm volatile("" : "+r"(p));
        if ((void *)(p + 1) > end)
            return KPX_BAD;
        s += (__u64)*p << 8;
        off++;
        len--;
    }
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
        asm volatile("" : "+r"(p));
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
 * does (kpath_common.bpf.h route_lookup(), route_cached(), route_store(): the same lookup as
 * loopback's, the same TTL, until_ns as the sequence number), since both compute the same thing;
 * only its FWD answers are taken here. */
static __always_inline int kpx_route(struct xdp_md *ctx, __u8 family, const __u8 *src,
                                     const __u8 *dst, __u16 sport, __u16 dport, __u32 tot,
                                     struct kpath_route *c, __u64 now, struct kp_scratch *sc)
{
    struct kpath_route *r = &sc->rt;
    const __u32 *sw = (const __u32 *)src;
    int any = (sw[0] | sw[1] | sw[2] | sw[3]) == 0;
    /* Link-local and multicast: "not forwarded" before the routes are looked at (route()). */
    if (family == 6 && (dst[0] == 0xff || (dst[0] == 0xfe && (dst[1] & 0xc0) == 0x80) ||
                        (src[0] == 0xfe && (src[1] & 0xc0) == 0x80)))
        return 0;
    if (!route_cached(c, r, now)) {
        route_lookup(ctx, &sc->fib, family, src, dst, sport, dport, any, r);
        route_store(c, r, now);
    }
    if (r->kind != KPATH_ROUTE_FWD || tot > r->mtu)
        return 0;
    __u32 out = r->ifindex;
    return out == ctx->ingress_ifindex || bpf_map_lookup_elem(&kp_xdp_if, &out) != NULL;
}

/* One relay decided: the new addresses, where the data is, and the framing in front of it. */
struct kpx_out {
    const __u8 *src_ip, *dst_ip; /* 16 bytes; src all zero: the route's source */
    __u16 sport, dport;          /* network order */
    __u32 keep; /* where the data starts in the old UDP payload: 0 (peer), 4 (ChannelData), a
                 * Send indication's DATA value */
    __u32 dlen;
    __u32 hdr; /* framing in front of the data in the new datagram: 0, 4 (ChannelData), 36 or 48
                * (a Data indication) */
    __u32 pad; /* zero bytes after the data in the new datagram (a Data indication's padding) */
    __u32 slot;
    int to_peer;
    int kind;               /* KPATH_G_* of the relay */
    struct kpath_route *rc; /* the entry's route cache */
    const __u8 *frame;      /* the new framing, hdr bytes (the per-CPU scratch's `new`) */
};

/* Verify, rewrite and send. XDP_PASS leaves the frame untouched. */
static __attribute__((noinline)) int kpx_relay(struct xdp_md *ctx, const struct pkt *p,
                                               const struct kpx_out *o, __u64 now)
{
    __u32 iphl = p->family == 4 ? 20 : 40;
    __u32 dlen = o->dlen, keep = o->keep, hdr = o->hdr, pad = o->pad;
    if (dlen > KP_MAX_DATA || keep > 64 || hdr > 48 || (hdr & 1) || pad > 3 ||
        keep + dlen > p->plen)
        return XDP_PASS;
    /* After the data: ChannelData padding, a Send indication's DATA padding and what follows. */
    __u32 rest = p->plen - keep - dlen;
    if (rest > 64)
        return XDP_PASS;
    __u32 ulen = 8 + hdr + dlen + pad;
    /* The TC program's per-CPU scratch (kpath_maps.bpf.h) for the route: XDP and TC run to
     * completion in softirq context (or with BHs off), so neither interrupts the other on a
     * CPU. */
    __u32 zero = 0;
    struct kp_scratch *sc = bpf_map_lookup_elem(&kp_scratch, &zero);
    if (!sc)
        return XDP_PASS;
    struct kpath_route *r = &sc->rt;
    if (!kpx_route(ctx, p->family, o->src_ip, o->dst_ip, o->sport, o->dport, iphl + ulen, o->rc,
                   now, sc))
        return XDP_PASS;
    const __u32 *sw = (const __u32 *)o->src_ip;
    const __u8 *src = (sw[0] | sw[1] | sw[2] | sw[3]) == 0 ? r->src : o->src_ip;

    /* The old datagram's checksum, over all of it: it must verify. The data's own sum is kept
     * for the new one. */
    __u32 at = p->l4 + 8;
    __u64 ds = kpx_sum(ctx, at + keep, dlen);
    __u64 fs = keep ? kpx_sum(ctx, at, keep) : 0;
    __u64 ts = rest ? kpx_sum(ctx, at + keep + dlen, rest) : 0;
    if (ds == KPX_BAD || fs == KPX_BAD || ts == KPX_BAD)
        return XDP_PASS;
    void *data = (void *)(long)ctx->data, *end = (void *)(long)ctx->data_end;
    /* One register for the bound check and the loads (the verifier checks that one). */
    __u16 *uw = data + (p->l4 & 0xff);
    asm volatile("" : "+r"(uw));
    if ((void *)(uw + 4) > end)
        return XDP_PASS;
    __u64 sum = kpx_pseudo(p->family, p->src, p->dst, p->plen + 8) + fs + ds + ts;
#pragma unroll
    for (int i = 0; i < 4; i++)
        sum += uw[i];
    /* 0: no checksum over IPv4 (RFC 768), invalid over IPv6 (RFC 8200 §8.1). */
    if (uw[3] == 0 || fold(sum) != 0xffff) {
        bump(KPATH_G_XDP_PASSED_CSUM, 1);
        return XDP_PASS;
    }

    /* The new one: the tail first (trimmed: padding, what follows a Send's data, an Ethernet
     * trailer; grown: a Data indication's padding), then the headers move (bpf_xdp_adjust_head);
     * the payload stays. A failure of the first leaves the frame as it was: a frame without
     * the tailroom for a Data indication's padding (a veth's large frames, now and then) is TC's.
     */
    __u32 old_len = (__u32)(end - data);
    __u32 hl = ETH_HLEN + iphl + 8;
    __u32 want = hl + hdr + dlen + pad;
    __u32 have = old_len - keep + hdr; /* after the head moves */
    if (have != want && bpf_xdp_adjust_tail(ctx, (int)want - (int)have) != 0)
        return XDP_PASS;
    /* From here on the frame is ours: a failure drops it (counted). */
    if (bpf_xdp_adjust_head(ctx, (int)keep - (int)hdr) != 0)
        goto fail;
    data = (void *)(long)ctx->data;
    end = (void *)(long)ctx->data_end;
    struct ethhdr *eth = data;
    if ((void *)(eth + 1) > end)
        goto fail;
    __builtin_memcpy(eth->h_dest, r->dmac, ETH_ALEN);
    __builtin_memcpy(eth->h_source, r->smac, ETH_ALEN);
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
    /* The framing (padding is zeros: nothing to add). */
    const __u16 *fw = (const __u16 *)o->frame;
#pragma unroll
    for (int i = 0; i < 24; i++)
        if ((__u32)i * 2 < hdr)
            sum += fw[i];
    __u8 *h = (void *)(uh + 1);
    if (hdr == 4) {
        if ((void *)(h + 4) > end)
            goto fail;
        __builtin_memcpy(h, o->frame, 4);
    } else if (hdr == 36) {
        if ((void *)(h + 36) > end)
            goto fail;
        __builtin_memcpy(h, o->frame, 36);
    } else if (hdr == 48) {
        if ((void *)(h + 48) > end)
            goto fail;
        __builtin_memcpy(h, o->frame, 48);
    }
    for (__u32 i = 0; i < pad; i++) {
        __u8 *z = data + ((hl + hdr + dlen + i) & 0x1fff);
        asm volatile("" : "+r"(z));
        if ((void *)(z + 1) > end)
            goto fail;
        *z = 0;
    }
    __u16 ck = (__u16)~fold(sum);
    uh->check = ck ? ck : 0xffff;

    if (!charge(o->slot, dlen, now))
        return XDP_DROP;
    seen(old_len);
    count_slot(o->slot, o->to_peer, dlen, 0);
    bump(o->kind, 1);
    bump(o->to_peer ? KPATH_G_TO_PEER_BYTES : KPATH_G_FROM_PEER_BYTES, dlen);
    bump(KPATH_G_XDP_RELAYED, 1);
    __u32 out = r->ifindex;
    if (out == ctx->ingress_ifindex)
        return XDP_TX;
    return bpf_redirect(out, 0);
fail:
    bump(KPATH_G_REDIRECT_FAIL, 1);
    return XDP_DROP;
}

/* eth/IP/UDP of a frame (parse_frame(); a VLAN tag is not IP). */
static __always_inline int kpx_parse(struct xdp_md *ctx, struct pkt *p)
{
    void *data = (void *)(long)ctx->data, *end = (void *)(long)ctx->data_end;
    return parse_frame(data, end, (__u32)(end - data), p);
}

/* RFC 8656 §11.4 and §12.6, as the TC program's p2c(): a peer's datagram to a relayed address,
 * with a live permission, to the client as ChannelData on a bound channel, else as a Data
 * indication (send_data_indication's bytes but the random transaction id). */
static __attribute__((noinline)) int kpx_p2c(struct xdp_md *ctx, const struct pkt *p, __u64 now)
{
    struct kpath_p2c_val *v = p2c_find(p->family, p->dst, p->dport, p->src, p->sport);
    if (v && (v->channel == 0 || now >= v->expires_ns))
        return XDP_PASS;
    if (!v) {
        v = p2c_find(p->family, p->dst, p->dport, 0, 0);
        if (!v || now >= v->expires_ns)
            return XDP_PASS;
    }
    struct kpath_perm_val *pv;
    if (perm_state(v->slot, p->family, p->src, now, &pv) != 1)
        return XDP_PASS;
    if (p->family == 4 && (!v4_form(v->server_ip) || !v4_form(v->client_ip)))
        return XDP_PASS;
    __u32 dlen = p->plen, zero = 0;
    /* The framing is built in the per-CPU scratch: the stack is short (kpx_relay). */
    struct kp_scratch *sc = bpf_map_lookup_elem(&kp_scratch, &zero);
    if (!sc)
        return XDP_PASS;
    __u8 *h = sc->new;
    struct kpx_out o = {
        .src_ip = v->server_ip,
        .dst_ip = v->client_ip,
        .sport = v->server_port,
        .dport = v->client_port,
        .dlen = dlen,
        .slot = v->slot,
        .to_peer = 0,
        .rc = &v->route,
        .frame = h,
    };
    if (v->channel == 0 && dlen > KP_MAX_DATA)
        return XDP_PASS;
    __u32 pad;
    o.hdr = client_framing(h, p, v->channel, dlen, &pad);
    o.pad = pad;
    o.kind = v->channel != 0 ? KPATH_G_CHANNELDATA_OUT : KPATH_G_DATA_OUT;
    return kpx_relay(ctx, p, &o, now);
}

#define KPX_NOT_OURS 1000 /* not a client's: maybe a peer's datagram */

/* RFC 8656 §12.4: a ChannelData message to one of our listeners, as the TC program's
 * c2p_channel(). `head`: its first 4 bytes (channel, length). The three builders are subprograms
 * of their own: inlined, their stack slots would add up in uturn_xdp's frame past the 512 bytes
 * the verifier allows a call chain. */
static __attribute__((noinline)) int kpx_channel(struct xdp_md *ctx, const struct pkt *p,
                                                 __u32 head, __u64 now)
{
    __u16 ch = (__u16)(head >> 16);
    __u32 dlen = head & 0xffff;
    /* A short datagram is dropped by user space; padding is allowed. */
    if (4 + dlen > p->plen)
        return KPX_NOT_OURS;
    struct kpath_c2p_val *v = c2p_find(p, ch);
    if (!v)
        return KPX_NOT_OURS;
    if (now >= v->expires_ns || ch == 0 || v->peer_port == 0 || p->plen - 4 - dlen > 3 ||
        (p->family == 4 && (!v4_form(v->relay_ip) || !v4_form(v->peer_ip))))
        return XDP_PASS;
    struct kpx_out o = {
        .src_ip = v->relay_ip,
        .dst_ip = v->peer_ip,
        .sport = v->relay_port,
        .dport = v->peer_port,
        .keep = 4,
        .dlen = dlen,
        .slot = v->slot,
        .to_peer = 1,
        .kind = KPATH_G_CHANNELDATA_IN,
        .rc = &v->route,
    };
    return kpx_relay(ctx, p, &o, now);
}

/* RFC 8656 §11.2, as the TC program's c2p_send(): XOR-PEER-ADDRESS and DATA, each once, in either
 * order, nothing else (anything more is user space's). */
static __attribute__((noinline)) int kpx_send(struct xdp_md *ctx, const struct pkt *p, __u64 now)
{
    void *data = (void *)(long)ctx->data, *end = (void *)(long)ctx->data_end;
    __u32 plen = p->plen;
    __u8 *m = data + (p->l4 & 0xff) + 8;
    asm volatile("" : "+r"(m));
    if ((void *)(m + STUN_HDR) > end)
        return KPX_NOT_OURS;
    __u32 hlen = (__u32)m[2] << 8 | m[3];
    if (plen > STUN_MAX_MSG || hlen + STUN_HDR != plen || (hlen & 3))
        return KPX_NOT_OURS;
    __u32 cookie;
    __builtin_memcpy(&cookie, m + 4, 4);
    if (cookie != bpf_htonl(STUN_COOKIE))
        return KPX_NOT_OURS;
    /* The per-CPU scratch holds the transaction id, the attribute and the peer: the stack is
     * short (kpx_relay). */
    __u32 zero = 0;
    struct kp_scratch *sc = bpf_map_lookup_elem(&kp_scratch, &zero);
    if (!sc)
        return XDP_PASS;
    __u32 *tid = (__u32 *)(sc->old + 24);
    __builtin_memcpy(tid, m + 8, 12);
    struct kpath_c2p_val *v = c2p_find(p, 0);
    if (!v)
        return KPX_NOT_OURS;
    if (now >= v->expires_ns || (p->family == 4 && !v4_form(v->relay_ip)))
        return XDP_PASS;
    __u32 off = STUN_HDR, xoff = 0, xlen = 0, doff = 0, dlen = 0;
    for (int i = 0; i < 3; i++) {
        if (off >= plen)
            break;
        __u8 *a = data + ((p->l4 + 8 + off) & 0x1fff);
        asm volatile("" : "+r"(a));
        if ((void *)(a + 4) > end)
            return XDP_PASS;
        __u32 type = (__u32)a[0] << 8 | a[1], alen = (__u32)a[2] << 8 | a[3];
        __u32 padded = (alen + 3) & ~3u;
        if (padded + 4 > plen - off)
            return XDP_PASS;
        if (type == STUN_ATTR_XOR_PEER_ADDRESS && xoff == 0) {
            xoff = off;
            xlen = alen;
        } else if (type == STUN_ATTR_DATA && doff == 0) {
            doff = off;
            dlen = alen;
        } else {
            return XDP_PASS;
        }
        off += 4 + padded;
    }
    if (off != plen || xoff == 0 || doff == 0 || dlen > KP_MAX_DATA ||
        xlen != (p->family == 4 ? 8u : 20u))
        return XDP_PASS;
    /* XOR-PEER-ADDRESS: type(2) len(2) reserved(1) family(1) port(2) address. */
    __u8 *x = sc->old;
    __u8 *xa = data + ((p->l4 + 8 + xoff) & 0x1fff);
    asm volatile("" : "+r"(xa));
    if ((void *)(xa + 24) <= end)
        __builtin_memcpy(x, xa, 24);
    else if (p->family == 4 && (void *)(xa + 12) <= end)
        __builtin_memcpy(x, xa, 12);
    else
        return XDP_PASS;
    if (x[5] != (p->family == 4 ? 0x01 : 0x02))
        return XDP_PASS;
    __u16 port = *(__u16 *)(x + 6) ^ bpf_htons(STUN_COOKIE >> 16);
    if (port == 0)
        return XDP_PASS;
    __u32 *peer = (__u32 *)sc->peer;
    peer[1] = peer[2] = peer[3] = 0;
    peer[0] = *(__u32 *)(x + 8) ^ bpf_htonl(STUN_COOKIE);
    if (p->family == 6) {
        peer[1] = *(__u32 *)(x + 12) ^ tid[0];
        peer[2] = *(__u32 *)(x + 16) ^ tid[1];
        peer[3] = *(__u32 *)(x + 20) ^ tid[2];
        /* An IPv4-mapped peer is canonicalised to IPv4 by user space. */
        if (peer[0] == 0 && peer[1] == 0 && peer[2] == bpf_htonl(0xffff))
            return XDP_PASS;
    }
    struct kpath_perm_val *pv;
    if (perm_state(v->slot, p->family, peer, now, &pv) != 1 || !pv)
        return XDP_PASS;
    struct kpx_out o = {
        .src_ip = v->relay_ip,
        .dst_ip = sc->peer,
        .sport = v->relay_port,
        .dport = port,
        .keep = doff + 4,
        .dlen = dlen,
        .slot = v->slot,
        .to_peer = 1,
        .kind = KPATH_G_SEND_IN,
        .rc = &pv->route, /* the route to the peer's IP, as TC's */
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
        int rc = KPX_NOT_OURS;
        /* RFC 7983 §7: 64-79 is ChannelData (the c2p map decides), 0-3 STUN. */
        if ((h[0] & 0xc0) == 0x40)
            rc = kpx_channel(ctx, &p,
                             (__u32)h[0] << 24 | (__u32)h[1] << 16 | (__u32)h[2] << 8 | h[3], now);
        else if (h[0] == 0 && h[1] == STUN_SEND_INDICATION && p.plen >= STUN_HDR)
            rc = kpx_send(ctx, &p, now);
        if (rc != KPX_NOT_OURS)
            return rc;
    }
    return kpx_p2c(ctx, &p, now);
}

#endif
