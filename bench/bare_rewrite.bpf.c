/* bare_rewrite.bpf.c - the kernel-path limit for bench/run's kcpu and sat scenarios: a TC (clsact
 * ingress) program that turns one UDP flow into another with no lookup at all, so the generator's
 * datagrams reach the sink through TC only. Built with clang -target bpf and loaded by
 * bare_rewrite.c (its bpftool skeleton); not part of uturnd.
 *
 * It matches IPv4 UDP to one address and port (set by the loader before load) and rewrites the
 * datagram to come from "the relayed address" and go to "the peer" (the sink). Two variants, chosen
 * by the loader:
 *   strip 0: addresses and ports only, incremental checksum updates (bpf_l3/l4_csum_replace):
 *            the least a relaying program can do.
 *   strip 4: what a client->peer ChannelData relay must do: pop 4 bytes (the ChannelData
 *            header) with bpf_skb_adjust_room, write fresh IPv4 and UDP headers, and compute the
 *            full UDP checksum over the payload (a datagram sent by a local socket arrives
 *            CHECKSUM_PARTIAL; after the pop the receiver checks the checksum itself), then
 *            bpf_csum_level(RESET) so the receiver checks it.
 *   strip 4, no checksum (--no-csum): the same, but the datagram goes on with a UDP checksum of 0
 *            (none, RFC 768), as uturn does for a local sender's datagram to a local destination
 *            (docs/KERNEL.md): the least a stripping relay does for local delivery over IPv4.
 * Everything else (other flows, IP options, fragments, GSO trains) gets TC_ACT_UNSPEC: the next
 * filter and then the stack see it unchanged. One per-CPU counter per outcome, as any relaying
 * program keeps. */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/pkt_cls.h>
#include <linux/udp.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

/* Set by the loader before load (all in network byte order); the verifier drops the branch of the
 * variant not chosen. */
volatile const __u32 cfg_match_ip = 0;
volatile const __u16 cfg_match_port = 0;
volatile const __u32 cfg_src_ip = 0;
volatile const __u16 cfg_src_port = 0;
volatile const __u32 cfg_dst_ip = 0;
volatile const __u16 cfg_dst_port = 0;
volatile const __u32 cfg_strip = 0;   /* 0 or 4 */
volatile const __u32 cfg_no_csum = 0; /* strip 4: send with no UDP checksum (0) instead */

enum { BARE_REWRITTEN = 0, BARE_PASSED_GSO, BARE_PASSED_SHORT, BARE_N };

struct {
    __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
    __uint(max_entries, BARE_N);
    __type(key, __u32);
    __type(value, __u64);
} bare_count SEC(".maps");

#define IP_OFF sizeof(struct ethhdr)
#define UDP_OFF (IP_OFF + sizeof(struct iphdr))
#define IP_CSUM_OFF (IP_OFF + __builtin_offsetof(struct iphdr, check))
#define UDP_CSUM_OFF (UDP_OFF + __builtin_offsetof(struct udphdr, check))
#define MAX_UDP 1500

static __always_inline void count(__u32 slot)
{
    __u64 *v = bpf_map_lookup_elem(&bare_count, &slot);
    if (v)
        *v += 1;
}

static __always_inline __u16 fold(__u64 s)
{
    s = (s & 0xffffffff) + (s >> 32);
    s = (s & 0xffffffff) + (s >> 32);
    s = (s & 0xffff) + (s >> 16);
    s = (s & 0xffff) + (s >> 16);
    return (__u16)s;
}

static __always_inline int rewrite_addr(struct __sk_buff *skb, struct iphdr *ip, struct udphdr *udp)
{
    __u32 os = ip->saddr, od = ip->daddr;
    __u16 osp = udp->source, odp = udp->dest;
    ip->saddr = cfg_src_ip;
    ip->daddr = cfg_dst_ip;
    udp->source = cfg_src_port;
    udp->dest = cfg_dst_port;
    /* The helpers know CHECKSUM_PARTIAL: there only the pseudo-header part moves. */
    bpf_l3_csum_replace(skb, IP_CSUM_OFF, os, cfg_src_ip, 4);
    bpf_l3_csum_replace(skb, IP_CSUM_OFF, od, cfg_dst_ip, 4);
    bpf_l4_csum_replace(skb, UDP_CSUM_OFF, os, cfg_src_ip,
                        BPF_F_PSEUDO_HDR | BPF_F_MARK_MANGLED_0 | 4);
    bpf_l4_csum_replace(skb, UDP_CSUM_OFF, od, cfg_dst_ip,
                        BPF_F_PSEUDO_HDR | BPF_F_MARK_MANGLED_0 | 4);
    bpf_l4_csum_replace(skb, UDP_CSUM_OFF, osp, cfg_src_port, BPF_F_MARK_MANGLED_0 | 2);
    bpf_l4_csum_replace(skb, UDP_CSUM_OFF, odp, cfg_dst_port, BPF_F_MARK_MANGLED_0 | 2);
    return TC_ACT_OK;
}

static __always_inline int rewrite_strip(struct __sk_buff *skb, __u32 ulen)
{
    __u32 plen = ulen - 12; /* UDP header + ChannelData header */
    if (bpf_skb_adjust_room(skb, -4, BPF_ADJ_ROOM_NET, 0) != 0)
        return TC_ACT_UNSPEC;
    if (bpf_skb_pull_data(skb, skb->len) != 0)
        return TC_ACT_SHOT;
    void *data = (void *)(long)skb->data, *end = (void *)(long)skb->data_end;
    struct iphdr *ip = data + IP_OFF;
    struct udphdr *udp = data + UDP_OFF;
    if ((void *)(udp + 1) > end)
        return TC_ACT_SHOT;
    __u16 ulen_new = (__u16)(plen + 8);
    ip->saddr = cfg_src_ip;
    ip->daddr = cfg_dst_ip;
    ip->tot_len = bpf_htons((__u16)(ulen_new + 20));
    ip->check = 0;
    __u64 s = 0;
    __u16 *w16 = (__u16 *)ip;
#pragma unroll
    for (int i = 0; i < 10; i++)
        s += w16[i];
    ip->check = (__u16)~fold(s);
    udp->source = cfg_src_port;
    udp->dest = cfg_dst_port;
    udp->len = bpf_htons(ulen_new);
    udp->check = 0;
    if (cfg_no_csum)
        return TC_ACT_OK;
    /* The full UDP checksum: pseudo-header, then header and payload, summed in memory order. */
    s = (__u64)cfg_src_ip + cfg_dst_ip + bpf_htons(IPPROTO_UDP) + bpf_htons(ulen_new);
    __u32 off = 0;
    void *u = udp;
    for (int i = 0; i < MAX_UDP / 256; i++) {
        if (off + 256 > ulen_new)
            break;
        void *p = u + (off & 0x7ff);
        if (p + 256 > end)
            return TC_ACT_SHOT;
        s += (__u32)bpf_csum_diff(0, 0, p, 256, 0);
        off += 256;
    }
    for (int i = 0; i < 64; i++) {
        if (off + 4 > ulen_new)
            break;
        __u32 *p = u + (off & 0x7ff);
        if ((void *)(p + 1) > end)
            return TC_ACT_SHOT;
        s += *p;
        off += 4;
    }
    __u8 *b = u + (off & 0x7ff);
    __u32 left = ulen_new - off;
    if (left >= 2) {
        if ((void *)(b + 2) > end)
            return TC_ACT_SHOT;
        s += *(__u16 *)b;
        b += 2;
        left -= 2;
    }
    if (left == 1) {
        if ((void *)(b + 1) > end)
            return TC_ACT_SHOT;
        s += *b; /* the high-order byte of a big-endian word: the low byte in memory order */
    }
    __u16 c = (__u16)~fold(s);
    udp->check = c ? c : 0xffff;
    bpf_csum_level(skb, BPF_CSUM_LEVEL_RESET);
    return TC_ACT_OK;
}

SEC("tc")
int bare_rewrite(struct __sk_buff *skb)
{
    void *data = (void *)(long)skb->data, *end = (void *)(long)skb->data_end;
    struct ethhdr *eth = data;
    if ((void *)(eth + 1) > end || eth->h_proto != bpf_htons(ETH_P_IP))
        return TC_ACT_UNSPEC;
    struct iphdr *ip = (void *)(eth + 1);
    if ((void *)(ip + 1) > end || ip->ihl != 5 || ip->protocol != IPPROTO_UDP ||
        (ip->frag_off & bpf_htons(0x3fff)))
        return TC_ACT_UNSPEC;
    struct udphdr *udp = (void *)(ip + 1);
    if ((void *)(udp + 1) > end || ip->daddr != cfg_match_ip || udp->dest != cfg_match_port)
        return TC_ACT_UNSPEC;
    if (skb->gso_segs > 1) { /* a UDP_SEGMENT train: the stack cuts it apart */
        count(BARE_PASSED_GSO);
        return TC_ACT_UNSPEC;
    }
    __u32 ulen = bpf_ntohs(udp->len);
    if (cfg_strip) {
        if (ulen < 13 || ulen > MAX_UDP || ulen != skb->len - UDP_OFF) {
            count(BARE_PASSED_SHORT);
            return TC_ACT_UNSPEC;
        }
        count(BARE_REWRITTEN);
        return rewrite_strip(skb, ulen);
    }
    count(BARE_REWRITTEN);
    return rewrite_addr(skb, ip, udp);
}

char LICENSE[] SEC("license") = "GPL";
