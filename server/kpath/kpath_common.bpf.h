/* kpath_common.bpf.h - what the kernel path's two programs share (kpath.bpf.c, the TC program,
 * and kpath_xdp.bpf.h, the XDP program): the constants, the counters, the max-bps bucket, the
 * entry lookups, the relay-to-relay claim, the route lookup and its cache in the entries
 * (kpath_abi.h struct kpath_route), and the rewritten IPv4 header. Nothing here touches a packet
 * through its context, so both program types can use it. Included by kpath.bpf.c only. */
#ifndef UTURN_KPATH_COMMON_BPF_H
#define UTURN_KPATH_COMMON_BPF_H

#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/udp.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

#include "kpath_abi.h"
#include "kpath_maps.bpf.h"

#define KP_AF_INET 2
#define KP_AF_INET6 10
#define KP_LOOPBACK_IFINDEX 1
#define STUN_COOKIE 0x2112A442u
#define STUN_HDR 20
#define STUN_ATTR_XOR_PEER_ADDRESS 0x0012
#define STUN_ATTR_DATA 0x0013
#define STUN_SEND_INDICATION 0x0016
#define STUN_DATA_INDICATION 0x0017
#define STUN_MAX_MSG 4096 /* common/stun.h STUN_MAX_MSG_LEN: user space drops longer ones */
#define NOT_OURS 1000     /* internal: keep looking (never returned to tc) */
#define KP_AGAIN 1001     /* internal: rewritten to a relayed address of ours: run again */
#define KP_LOCAL 1002     /* internal (relay()): the channel's datagram takes local_strip() */
#define KP_CLOCK_SLACK_NS 10000000ull /* the longest tick (HZ=100) */
#define KP_HOPS 3                     /* relay-to-relay hops taken in one run (uturn_ingress) */

static __always_inline void bump(__u32 key, __u64 n)
{
    __u64 *v = bpf_map_lookup_elem(&kp_global, &key);
    if (v)
        *v += n;
}

static __always_inline void seen(__u64 bytes)
{
    __u32 key = 0;
    struct kpath_seen *v = bpf_map_lookup_elem(&kpath_seen, &key);
    if (v) {
        v->pkts++;
        v->bytes += bytes;
    }
}

static __always_inline int pass(__u32 why)
{
    bump(why, 1);
    return TC_ACT_UNSPEC;
}

/* An IPv4 value must hold zeros past its 4 bytes: anything else is a family mismatch. */
static __always_inline int v4_form(const void *ip)
{
    const __u32 *w = ip;
    return (w[1] | w[2] | w[3]) == 0;
}

/* max-bps, exactly as dispatch_bps_ok: up to bps bytes, refilled at bps per second, full at the
 * first packet, bps 0 = no limit. Only whole bytes are credited: last_ns advances by the time they
 * took, so the remainder is kept even at high packet rates. 1 = pass, 0 = drop, -1 = no slot. */
static __always_inline int bucket_ok(__u32 slot, __u64 bytes, __u64 now)
{
    struct kpath_bucket *b = bpf_map_lookup_elem(&kp_bucket, &slot);
    if (!b)
        return -1;
    /* No limit: no lock (user space writes the value whole; an aligned 8-byte read is atomic). */
    if (b->bps == 0)
        return 1;
    int ok = 1;
    bpf_spin_lock(&b->lock);
    __u64 bps = b->bps;
    /* Above 2^34 B/s (137 Gbit/s) elapsed * bps could overflow: no limit in practice. */
    if (bps != 0 && bps < (1ULL << 34)) {
        /* `now` was read before the lock: another CPU may have moved last_ns past it, which
         * is no time elapsed, never a refill. */
        if (b->last_ns == 0) {
            b->last_ns = now;
        } else if (now > b->last_ns) {
            __u64 elapsed = now - b->last_ns;
            __u64 add = elapsed >= 1000000000ULL ? bps : elapsed * bps / 1000000000ULL;
            if (add != 0) {
                b->tokens += add;
                if (b->tokens >= bps) {
                    b->tokens = bps;
                    b->last_ns = now;
                } else {
                    b->last_ns += add * 1000000000ULL / bps;
                }
            }
        }
        if (b->tokens < bytes)
            ok = 0;
        else
            b->tokens -= bytes;
    }
    bpf_spin_unlock(&b->lock);
    return ok;
}

static __always_inline void count_slot(__u32 slot, int to_peer, __u64 bytes, int dropped);

/* Charge `bytes` to the slot's bucket: 1, or 0 with the drop counted (over max-bps, or no slot). */
static __always_inline int charge(__u32 slot, __u64 bytes, __u64 now)
{
    int ok = bucket_ok(slot, bytes, now);
    if (ok > 0)
        return 1;
    if (ok == 0) {
        count_slot(slot, 0, 0, 1);
        bump(KPATH_G_DROP_BPS, 1);
    } else {
        bump(KPATH_G_REDIRECT_FAIL, 1);
    }
    return 0;
}

static __always_inline void count_slot(__u32 slot, int to_peer, __u64 bytes, int dropped)
{
    struct kpath_count *c = bpf_map_lookup_elem(&kp_count, &slot);
    if (!c)
        return;
    if (dropped) {
        c->drop_bps++;
    } else if (to_peer) {
        c->to_peer_packets++;
        c->to_peer_bytes += bytes;
    } else {
        c->from_peer_packets++;
        c->from_peer_bytes += bytes;
    }
}

static __always_inline __u16 fold(__u64 s)
{
    s = (s & 0xffffffff) + (s >> 32);
    s = (s & 0xffff) + (s >> 16);
    s = (s & 0xffff) + (s >> 16);
    s = (s & 0xffff) + (s >> 16);
    return (__u16)s;
}

/* The eth/IP/UDP headers of a packet of `len` bytes whose first bytes are at data..end (the TC
 * program's skb may hold more than its linear part; XDP's frame is all there), for both programs:
 * 0 with p filled, or -1 for anything left to the stack unchanged: not IP/UDP, IP options or
 * fragments (the stack reassembles), IPv6 extension headers, lengths that do not add up, and an
 * IPv4 header whose checksum is wrong (the stack would drop it; the rewrite writes a fresh
 * checksum, which would hide the damage). */
static __always_inline int parse_frame(void *data, void *end, __u32 len, struct pkt *p)
{
    struct ethhdr *eth = data;
    if ((void *)(eth + 1) > end)
        return -1;
    struct udphdr *uh;
    __u32 ulen;
    if (eth->h_proto == bpf_htons(ETH_P_IP)) {
        struct iphdr *ip = (void *)(eth + 1);
        if ((void *)(ip + 1) > end)
            return -1;
        if (ip->version != 4 || ip->ihl != 5 || ip->protocol != IPPROTO_UDP ||
            (ip->frag_off & bpf_htons(0x3fff)))
            return -1;
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
    p->ucheck = uh->check;
    p->plen = ulen - 8;
    return 0;
}

/* Does a peer -> client entry claim a datagram from `peer` to `relay` (a live channel or allocation
 * entry and a live permission for the peer's IP)? Only asked when a client -> peer hop's
 * destination is local. */
static __always_inline struct kpath_p2c_val *
p2c_find(__u8 family, const void *relay, __u16 relay_port, const void *peer, __u16 peer_port);
static __always_inline int perm_state(__u32 slot, __u8 family, const void *ip, __u64 now,
                                      struct kpath_perm_val **pv);

static __always_inline int p2c_claims(__u8 family, const __u8 *relay, __u16 relay_port,
                                      const __u8 *peer, __u16 peer_port, __u64 now)
{
    struct kpath_p2c_val *v = p2c_find(family, relay, relay_port, peer, peer_port);
    if (!v)
        v = p2c_find(family, relay, relay_port, 0, 0);
    if (!v || now >= v->expires_ns)
        return 0;
    struct kpath_perm_val *pv;
    return perm_state(v->slot, family, peer, now, &pv) == 1;
}

/* Look the route from src to dst up into r (kpath_abi.h struct kpath_route), for the TC and the
 * XDP program alike (ctx: either's). The lookup runs as loopback's (ifindex 1), as for a datagram
 * a local socket sends: bpf_fib_lookup checks forwarding on the interface it is given, and
 * loopback's is the one uturnd turns on (kpath.c), so an interface's own forwarding setting never
 * matters. The first lookup asks for a 64 KiB packet: a route with a smaller MTU answers
 * FRAG_NEEDED with its MTU, and the second asks again with that length for the interface and
 * neighbour. any: no source (a wildcard listener): the route's preferred source, as the kernel
 * picks it for user space's wildcard socket (kernels before 6.8 refuse the flag: PASS). */
static __always_inline void route_lookup(void *ctx, struct bpf_fib_lookup *f, __u8 family,
                                         const __u8 *src, const __u8 *dst, __u16 sport, __u16 dport,
                                         int any, struct kpath_route *r)
{
    __u32 flags = any ? BPF_FIB_LOOKUP_SRC : 0;
    __u32 mtu = 0xffff;
    long rc = 0;
    for (int i = 0; i < 2; i++) {
        __builtin_memset(f, 0, sizeof(*f));
        f->l4_protocol = IPPROTO_UDP;
        f->sport = sport;
        f->dport = dport;
        f->tot_len = (__u16)mtu;
        f->ifindex = KP_LOOPBACK_IFINDEX;
        if (family == 4) {
            f->family = KP_AF_INET;
            __builtin_memcpy(&f->ipv4_src, src, 4);
            __builtin_memcpy(&f->ipv4_dst, dst, 4);
        } else {
            f->family = KP_AF_INET6;
            __builtin_memcpy(f->ipv6_src, src, 16);
            __builtin_memcpy(f->ipv6_dst, dst, 16);
        }
        rc = bpf_fib_lookup(ctx, f, sizeof(*f), flags);
        if (rc != BPF_FIB_LKUP_RET_FRAG_NEEDED || i == 1 || f->mtu_result == 0 ||
            f->mtu_result >= mtu)
            break;
        mtu = f->mtu_result;
    }
    __builtin_memset(r, 0, sizeof(*r));
    r->claims_gen = ~0ull;
    r->mtu = mtu;
    r->kind = KPATH_ROUTE_PASS; /* forwarding off on loopback, unreachable, MTU, ... */
    if (rc == BPF_FIB_LKUP_RET_NOT_FWDED) {
        if (!any)
            r->kind = KPATH_ROUTE_LOCAL;
    } else if (rc == BPF_FIB_LKUP_RET_SUCCESS || rc == BPF_FIB_LKUP_RET_NO_NEIGH) {
        r->kind = rc == BPF_FIB_LKUP_RET_SUCCESS ? KPATH_ROUTE_FWD : KPATH_ROUTE_NEIGH;
        r->ifindex = f->ifindex;
        __builtin_memcpy(r->dmac, f->dmac, 6);
        __builtin_memcpy(r->smac, f->smac, 6);
        if (family == 4)
            __builtin_memcpy(r->src, &f->ipv4_src, 4);
        else
            __builtin_memcpy(r->src, f->ipv6_src, 16);
    }
}

/* An entry's cached route into r if it is good at `now`: 1, else 0. until_ns is the sequence
 * number (kpath_abi.h): read before and after the copy, a change means another CPU rewrote it. */
static __always_inline int route_cached(const struct kpath_route *c, struct kpath_route *r,
                                        __u64 now)
{
    __u64 until = c->until_ns;
    asm volatile("" ::: "memory");
    if (until <= now)
        return 0;
    __builtin_memcpy(r, c, sizeof(*r));
    asm volatile("" ::: "memory");
    return c->until_ns == until;
}

/* Does the entry's cache say, at `now`, that its destination is local and that no kp_p2c entry
 * claimed it as of the current kp_claims_gen (route(): a client -> peer hop that is not relay to
 * relay)? The fields read directly, between two reads of until_ns as in route_cached(). */
static __always_inline int local_cached(const struct kpath_route *c, __u64 now)
{
    __u64 until = c->until_ns;
    asm volatile("" ::: "memory");
    if (until <= now)
        return 0;
    int ok = c->kind == KPATH_ROUTE_LOCAL && c->claims_gen == *(volatile __u64 *)&kp_claims_gen;
    asm volatile("" ::: "memory");
    return ok && c->until_ns == until;
}

/* r (fresh from route_lookup) into the entry's cache, good for KPATH_ROUTE_TTL_NS: until_ns
 * zeroed first and set last. */
static __always_inline void route_store(struct kpath_route *c, struct kpath_route *r, __u64 now)
{
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

/* The rewritten IPv4 header, as a Linux UDP socket sends it: DF, id 0 (with DF), TTL 64, TOS 0,
 * no options; its checksum is the one's complement sum of those fields, worked out from them (the
 * 16-bit words as they lie in memory) instead of read back from the header. */
static __always_inline void write_ip4(struct iphdr *ip, __u32 tot, const __u8 *src, const __u8 *dst)
{
    __u32 s4, d4;
    __builtin_memcpy(&s4, src, 4);
    __builtin_memcpy(&d4, dst, 4);
    __u16 len = bpf_htons(tot);
    *(__u16 *)ip = bpf_htons(0x4500); /* version 4, 5 words, TOS 0 */
    ip->tot_len = len;
    ip->id = 0;
    ip->frag_off = bpf_htons(0x4000);
    ip->ttl = 64;
    ip->protocol = IPPROTO_UDP;
    ip->saddr = s4;
    ip->daddr = d4;
    __u64 sum = (__u64)bpf_htons(0x4500) + len + bpf_htons(0x4000) +
                bpf_htons(0x4000 | IPPROTO_UDP) + (s4 & 0xffff) + (s4 >> 16) + (d4 & 0xffff) +
                (d4 >> 16);
    ip->check = (__u16)~fold(sum);
}

/* The kp_p2c / kp_p2c4 entry of relayed address -> peer (peer NULL: the allocation's, peer zero).
 * Addresses: 16 bytes, IPv4 in the first 4. */
static __always_inline struct kpath_p2c_val *
p2c_find(__u8 family, const void *relay, __u16 relay_port, const void *peer, __u16 peer_port)
{
    if (family == 4) {
        struct kpath_p2c4_key k;
        k.relay_ip = *(const __u32 *)relay;
        k.peer_ip = peer ? *(const __u32 *)peer : 0;
        k.relay_port = relay_port;
        k.peer_port = peer_port;
        return bpf_map_lookup_elem(&kp_p2c4, &k);
    }
    struct kpath_p2c_key k;
    __builtin_memset(&k, 0, sizeof(k));
    __builtin_memcpy(k.relay_ip, relay, 16);
    if (peer)
        __builtin_memcpy(k.peer_ip, peer, 16);
    k.relay_port = relay_port;
    k.peer_port = peer_port;
    k.family = family;
    return bpf_map_lookup_elem(&kp_p2c, &k);
}

static __always_inline struct kpath_c2p_val *c2p_find(const struct pkt *p, __u16 channel)
{
    struct kpath_c2p_val *v;
    if (p->family == 4) {
        struct kpath_c2p4_key k;
        k.client_ip = p->src[0];
        k.server_ip = p->dst[0];
        k.client_port = p->sport;
        k.server_port = p->dport;
        k.channel = channel;
        k.pad = 0;
        v = bpf_map_lookup_elem(&kp_c2p4, &k);
        if (v)
            return v;
        /* A wildcard listener: its entries carry no server address. */
        k.server_ip = 0;
        return bpf_map_lookup_elem(&kp_c2p4, &k);
    }
    struct kpath_c2p_key k;
    __builtin_memset(&k, 0, sizeof(k));
    __builtin_memcpy(k.client_ip, p->src, 16);
    __builtin_memcpy(k.server_ip, p->dst, 16);
    k.client_port = p->sport;
    k.server_port = p->dport;
    k.channel = channel;
    k.family = p->family;
    v = bpf_map_lookup_elem(&kp_c2p, &k);
    if (v)
        return v;
    __builtin_memset(k.server_ip, 0, 16);
    return bpf_map_lookup_elem(&kp_c2p, &k);
}

/* The permission of `slot` for a peer IP: 1 live, 0 expired, -1 none; *pv the entry. */
static __always_inline int perm_state(__u32 slot, __u8 family, const void *ip, __u64 now,
                                      struct kpath_perm_val **pv)
{
    struct kpath_perm_val *v;
    if (family == 4) {
        struct kpath_perm4_key k4 = {.slot = slot, .peer_ip = *(const __u32 *)ip};
        v = bpf_map_lookup_elem(&kp_perm4, &k4);
    } else {
        struct kpath_perm_key k;
        __builtin_memset(&k, 0, sizeof(k));
        k.slot = slot;
        k.family = family;
        __builtin_memcpy(k.peer_ip, ip, 16);
        v = bpf_map_lookup_elem(&kp_perm, &k);
    }
    *pv = v;
    if (!v)
        return -1;
    return now < v->expires_ns ? 1 : 0;
}

/* What goes to the client before a peer's `dlen` bytes, written at h (the TC and the XDP program
 * alike): a ChannelData header for a bound channel (RFC 8656 §12.5: no padding over UDP), else a
 * Data indication as send_data_indication builds it (§11.4: header with a random transaction id,
 * XOR-PEER-ADDRESS of the datagram's source, DATA's header), whose zero padding to 4 bytes
 * (*pad) the caller writes after the data. Returns the bytes written: 4, 36 (IPv4) or 48. */
static __always_inline __u32 client_framing(__u8 *h, const struct pkt *p, __u16 channel, __u32 dlen,
                                            __u32 *pad)
{
    *pad = 0;
    if (channel != 0) {
        h[0] = (__u8)(channel >> 8);
        h[1] = (__u8)channel;
        h[2] = (__u8)(dlen >> 8);
        h[3] = (__u8)dlen;
        return 4;
    }
    __u32 alen = p->family == 4 ? 8 : 20;
    __u32 padded = (dlen + 3) & ~3u;
    __u32 mlen = 4 + alen + 4 + padded;
    __u32 tid[3] = {bpf_get_prandom_u32(), bpf_get_prandom_u32(), bpf_get_prandom_u32()};
    h[0] = 0;
    h[1] = STUN_DATA_INDICATION;
    h[2] = (__u8)(mlen >> 8);
    h[3] = (__u8)mlen;
    *(__u32 *)(h + 4) = bpf_htonl(STUN_COOKIE);
    __builtin_memcpy(h + 8, tid, 12);
    h[20] = 0;
    h[21] = STUN_ATTR_XOR_PEER_ADDRESS;
    h[22] = 0;
    h[23] = (__u8)alen;
    h[24] = 0;
    h[25] = p->family == 4 ? 0x01 : 0x02;
    *(__u16 *)(h + 26) = p->sport ^ bpf_htons(STUN_COOKIE >> 16);
    *(__u32 *)(h + 28) = p->src[0] ^ bpf_htonl(STUN_COOKIE);
    __u8 *d = h + 32;
    if (p->family == 6) {
        *(__u32 *)(h + 32) = p->src[1] ^ tid[0];
        *(__u32 *)(h + 36) = p->src[2] ^ tid[1];
        *(__u32 *)(h + 40) = p->src[3] ^ tid[2];
        d = h + 44;
    }
    d[0] = 0;
    d[1] = STUN_ATTR_DATA;
    d[2] = (__u8)(dlen >> 8);
    d[3] = (__u8)dlen;
    *pad = padded - dlen;
    return p->family == 4 ? 36 : 48;
}

#endif
