/* kpath_maps.bpf.h - the maps and working structures of kpath.bpf.c (the TC program): the relay
 * maps kpath_abi.h describes, the per-CPU counters, and the per-CPU scratch the rewrite uses.
 * Included by kpath.bpf.c only (clang -target bpf). */
#ifndef UTURN_KPATH_MAPS_BPF_H
#define UTURN_KPATH_MAPS_BPF_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#include "kpath_abi.h"

/* The largest payload (DATA value, ChannelData data) the program relays; bigger ones go to user
 * space. It only bounds the per-CPU copy buffer: the route's MTU is checked per packet. */
#define KP_MAX_DATA 2048

struct {
    __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
    __uint(max_entries, 1);
    __type(key, __u32);
    __type(value, struct kpath_seen);
} kpath_seen SEC(".maps");

/* The relay maps (kpath_abi.h has the layout and what each entry means). Written by the workers
 * (core/offload.c through kpath.h), read here. IPv6 entries in kp_c2p, kp_p2c, kp_perm; IPv4 ones
 * in the maps with short keys. Not preallocated: an entry takes memory when it is written (six
 * preallocated maps of this size would hold about 300 MB of kernel memory from the start). */
#define KP_HASH(name, key_t, val_t, n)                                                             \
    struct {                                                                                       \
        __uint(type, BPF_MAP_TYPE_HASH);                                                           \
        __uint(max_entries, n);                                                                    \
        __uint(map_flags, BPF_F_NO_PREALLOC);                                                      \
        __type(key, key_t);                                                                        \
        __type(value, val_t);                                                                      \
    } name SEC(".maps")

KP_HASH(kp_c2p, struct kpath_c2p_key, struct kpath_c2p_val, KPATH_MAX_C2P);
KP_HASH(kp_p2c, struct kpath_p2c_key, struct kpath_p2c_val, KPATH_MAX_P2C);
KP_HASH(kp_perm, struct kpath_perm_key, struct kpath_perm_val, KPATH_MAX_PERM);
KP_HASH(kp_c2p4, struct kpath_c2p4_key, struct kpath_c2p_val, KPATH_MAX_C2P);
KP_HASH(kp_p2c4, struct kpath_p2c4_key, struct kpath_p2c_val, KPATH_MAX_P2C);
KP_HASH(kp_perm4, struct kpath_perm4_key, struct kpath_perm_val, KPATH_MAX_PERM);

struct {
    __uint(type, BPF_MAP_TYPE_ARRAY);
    __uint(max_entries, KPATH_MAX_SLOTS);
    __type(key, __u32);
    __type(value, struct kpath_bucket);
} kp_bucket SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
    __uint(max_entries, KPATH_MAX_SLOTS);
    __type(key, __u32);
    __type(value, struct kpath_count);
} kp_count SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
    __uint(max_entries, KPATH_G_N);
    __type(key, __u32);
    __type(value, __u64);
} kp_global SEC(".maps");

/* Per-CPU working memory, too big for the 512-byte stack. A tc program runs to completion on its
 * CPU in softirq context (or with BHs off), so nothing else uses this CPU's copy meanwhile. */
struct kp_scratch {
    struct bpf_fib_lookup fib;
    struct kpath_route rt; /* the route this datagram takes (a copy of the entry's, or fresh) */
    /* Summed words that change outside the pseudo header, aligned as in the datagram (the moved
     * payload keeps its 16-bit alignment, so it never enters the sum): the UDP ports and length
     * (checksum field as zero), then the framing removed (old) or written (new). */
    __u8 old[8 + 60];
    __u8 new[8 + 48];
    __u8 peer[16]; /* a Send indication's peer address */
    __u8 src[16];  /* the source the route chose, for a wildcard listener */
    __u8 data[KP_MAX_DATA];
};

struct {
    __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
    __uint(max_entries, 1);
    __type(key, __u32);
    __type(value, struct kp_scratch);
} kp_scratch SEC(".maps");

/* A parsed eth/IP/UDP datagram. Addresses as in the maps: IPv4 in the first 4 bytes. */
struct pkt {
    __u32 l4;   /* offset of the UDP header */
    __u32 plen; /* UDP payload length */
    __u32 src[4];
    __u32 dst[4];
    __u16 sport, dport; /* network order */
    __u16 ucheck;       /* the UDP checksum field as received */
    __u8 family;        /* 4 or 6 */
};

/* What to write: the new addresses, the bytes kept (at `keep` in the old payload) and the framing
 * in front of them (s->new + 8, `hdr` bytes). */
struct out {
    const __u8 *src_ip, *dst_ip; /* map memory, 16 bytes */
    __u16 sport, dport;          /* network order */
    __u32 keep, dlen, hdr, pad;
    __u32 olen, nlen; /* bytes of s->old + 8 and s->new + 8 that count (multiples of 4) */
    __u32 slot;
    int to_peer;
    int kind;               /* KPATH_G_* of the relay */
    struct kpath_route *rc; /* the entry's route cache (kpath_abi.h), or NULL */
    int claims_cache;       /* rc may remember that no kp_p2c entry claims the destination */
    const struct kpath_c2p_val *cv; /* a channel's kp_c2p entry (local_strip()), or NULL */
};

/* Bumped by user space after every kp_p2c or kp_perm write (kpath.c), so that a local
 * destination the program found unclaimed (struct kpath_route.claims_gen) is asked about again
 * once an entry that could claim it exists. */
__u64 kp_claims_gen = 1;

#endif
