/* kpath.bpf.c - the kernel fast path's TC program (clsact ingress on the interfaces of the
 * listening and relay addresses), built with clang -target bpf and embedded in uturnd through a
 * bpftool skeleton (Makefile.am). This first slice relays nothing: it counts what it sees per CPU
 * and passes every packet to the stack unchanged (TC_ACT_OK), so attaching it changes no
 * behaviour. kpath_owner_pid is set by the loader before load; it lets a later uturnd find the
 * filter of one that crashed (docs/KERNEL.md). */
#include <linux/bpf.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>

#include "kpath_abi.h"

/* The loading uturnd's pid (read back from the .rodata map by kpath.c's leftover sweep). */
volatile const __u32 kpath_owner_pid = 0;

struct {
    __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
    __uint(max_entries, KPATH_SEEN_N);
    __type(key, __u32);
    __type(value, __u64);
} kpath_seen SEC(".maps");

/* The relay maps (kpath_abi.h has the layout and what each entry means). Written by the workers
 * (core/offload.c through kpath.h), read here. */
struct {
    __uint(type, BPF_MAP_TYPE_HASH);
    __uint(max_entries, KPATH_MAX_C2P);
    __type(key, struct kpath_c2p_key);
    __type(value, struct kpath_c2p_val);
} kp_c2p SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_HASH);
    __uint(max_entries, KPATH_MAX_P2C);
    __type(key, struct kpath_p2c_key);
    __type(value, struct kpath_p2c_val);
} kp_p2c SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_HASH);
    __uint(max_entries, KPATH_MAX_PERM);
    __type(key, struct kpath_perm_key);
    __type(value, struct kpath_perm_val);
} kp_perm SEC(".maps");

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

static __always_inline void count(__u32 slot, __u64 n)
{
    __u64 *v = bpf_map_lookup_elem(&kpath_seen, &slot);
    if (v)
        *v += n;
}

SEC("tc")
int uturn_ingress(struct __sk_buff *skb)
{
    count(KPATH_SEEN_PKTS, 1);
    count(KPATH_SEEN_BYTES, skb->len);
    /* Not ours: TC_ACT_UNSPEC lets the next filter (another uturnd's, another tool's) see it;
     * the packet is accepted when no filter decides. */
    return TC_ACT_UNSPEC;
}

char LICENSE[] SEC("license") = "GPL";
