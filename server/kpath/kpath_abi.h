/* kpath_abi.h - what the kernel program (kpath.bpf.c) and its loader and map writers (kpath.c)
 * agree on: the program's name, the tc filter priority every uturnd attaches at (the handle is the
 * owner's pid, so a crashed uturnd's filter can be found and removed at the next start), and the
 * layout of every map. Plain C with fixed-width types, every field naturally aligned and every pad
 * explicit (keys are hashed as bytes: pads are always zero): compiled by clang -target bpf and by
 * the host compiler.
 *
 * The maps (docs/KERNEL.md has the picture):
 *   kp_c2p    hash  client -> peer. Key: the client's UDP 5-tuple on one of our listeners, plus a
 *                   channel number. channel != 0: a bound channel (value: relayed address, peer,
 *                   the channel's expiry). channel == 0: the allocation itself, for Send
 *                   indications (value: relayed address, the allocation's expiry; the peer comes
 *                   from XOR-PEER-ADDRESS and needs a kp_perm entry).
 *   kp_p2c    hash  peer -> client. Key: relayed address and peer transport address. peer port
 *                   and IP non-zero: a bound channel (value: client 5-tuple, channel, expiry).
 *                   peer all zero: the allocation (value: client 5-tuple, channel 0, the
 *                   allocation's expiry), used for a Data indication when kp_perm has the peer IP.
 *   kp_perm   hash  (slot, peer IP) -> the permission's expiry.
 *   kp_c2p4, kp_p2c4, kp_perm4: the same for IPv4, with short keys (struct kpath_*4_key).
 *   kp_bucket array slot -> max-bps token bucket (spin lock; bps 0: no limit).
 *   kp_count  percpu array slot -> per-allocation packets and bytes both ways (summed on read).
 *   kp_global percpu array KPATH_G_* -> what the program did, for /metrics.
 * Only same-family entries exist: a client on IPv4 with an IPv6 relayed address (RFC 6156) stays
 * in user space. Every expiry is CLOCK_MONOTONIC ns (libuv's loop time is the same clock in ms);
 * the program reads the coarse clock plus a tick (kpath.bpf.c), so an entry stops relaying up to
 * 10 ms before its expiry and never after, even if user space lags. */
#ifndef UTURN_KPATH_ABI_H
#define UTURN_KPATH_ABI_H

#include <linux/types.h>

/* The program's name as the kernel lists it (bpftool prog show, tc filter show): at most 15
 * characters. */
#define KPATH_PROG_NAME "uturn_ingress"
/* The XDP program in front of it (kpath_xdp.bpf.h), same object and maps. */
#define KPATH_XDP_NAME "uturn_xdp"
/* tc priority of our clsact ingress filters; each uturnd's filter has handle = its pid. */
#define KPATH_TC_PRIO 0x7574u

/* The one value of the per-CPU map kpath_seen: packets and bytes the program saw on ingress (one
 * lookup a packet). */
struct kpath_seen {
    __u64 pkts;
    __u64 bytes;
};

/* Capacities: what the kernel path can carry at once. An allocation that finds no slot, or an entry
 * that finds its map full, stays in user space (counted, never an error to the client). */
#define KPATH_MAX_SLOTS 65536u /* allocations */
#define KPATH_MAX_C2P 262144u  /* channels + allocations */
#define KPATH_MAX_P2C 262144u  /* channels + allocations */
#define KPATH_MAX_PERM 262144u /* permissions */

/* Addresses: IPv4 in the first 4 bytes of ip[16], the rest zero. Ports in network byte order,
 * as on the wire. family: 4 or 6 (not AF_*: the same on both compilers). */
/* A route lookup (bpf_fib_lookup) the program keeps in the entry it was made for (a channel's
 * kp_c2p and kp_p2c entries, an allocation's kp_p2c entry, a permission for Send indications), so
 * that a datagram costs no lookup: good for KPATH_ROUTE_TTL_NS, so a route or neighbour change is
 * seen within that time. Written by the program only: user space writes it zero (nothing cached)
 * with every entry it (re)writes. until_ns doubles as a sequence number: the program zeroes it,
 * writes the rest, then sets it, and a reader that sees it change while it copies looks up
 * again. */
#define KPATH_ROUTE_TTL_NS 250000000ull
enum {
    KPATH_ROUTE_PASS = 1,  /* nothing the program can take: user space relays */
    KPATH_ROUTE_LOCAL = 2, /* a local destination */
    KPATH_ROUTE_FWD = 3,   /* out of ifindex, with these MACs */
    KPATH_ROUTE_NEIGH = 4, /* out of ifindex, neighbour unresolved (bpf_redirect_neigh) */
};
struct kpath_route {
    __u64 until_ns;   /* CLOCK_MONOTONIC; 0: nothing cached */
    __u64 claims_gen; /* KPATH_ROUTE_LOCAL, client -> peer: kp_claims_gen when no kp_p2c entry
                       * claimed the destination (relay to relay); ~0: ask again */
    __u32 ifindex;
    __u32 mtu; /* the route's MTU: a longer IP packet is passed */
    __u8 kind; /* KPATH_ROUTE_* */
    __u8 pad[3];
    __u8 dmac[6];
    __u8 smac[6];
    __u8 src[16]; /* the source the route chose, for a wildcard listener */
};

struct kpath_c2p_key {
    __u8 client_ip[16];
    __u8 server_ip[16]; /* the listener's address; all zero for a wildcard listener */
    __u16 client_port;  /* network order */
    __u16 server_port;  /* network order */
    __u16 channel;      /* host order; 0: the allocation (Send indications) */
    __u8 family;        /* 4 or 6 */
    __u8 pad;
};

struct kpath_c2p_val {
    __u64 expires_ns; /* CLOCK_MONOTONIC; past it the entry relays nothing */
    __u32 slot;       /* the allocation's kp_bucket / kp_count index */
    __u16 relay_port; /* network order */
    __u16 peer_port;  /* network order; 0 in an allocation entry */
    __u8 relay_ip[16];
    __u8 peer_ip[16];         /* zero in an allocation entry */
    struct kpath_route route; /* a channel's (the program's; zero from user space) */
};

struct kpath_p2c_key {
    __u8 relay_ip[16];
    __u8 peer_ip[16]; /* zero: the allocation entry */
    __u16 relay_port; /* network order */
    __u16 peer_port;  /* network order; zero: the allocation entry */
    __u8 family;
    __u8 pad[3];
};

struct kpath_p2c_val {
    __u64 expires_ns;
    __u32 slot;
    __u16 channel;     /* host order; 0 in the allocation entry (Data indications) */
    __u16 client_port; /* network order */
    __u16 server_port; /* network order */
    __u16 pad;
    __u32 pad2;
    __u8 client_ip[16];
    __u8 server_ip[16]; /* the source of what we send the client (the listener's address); zero
                         * for a wildcard listener: kpath.bpf.c decides (docs/KERNEL.md) */
    struct kpath_route route; /* the program's; zero from user space */
};

struct kpath_perm_key {
    __u32 slot;
    __u8 family;
    __u8 pad[3];
    __u8 peer_ip[16];
};

struct kpath_perm_val {
    __u64 expires_ns;
    struct kpath_route route; /* to the peer, for Send indications (the program's; zero from user
                               * space) */
};

/* IPv4 entries live in maps of their own with short keys (kp_c2p4, kp_p2c4, kp_perm4): the kernel
 * hashes and compares the whole key on every lookup, and a 40-byte key costs several times a
 * 12-byte one. Writers and readers use the keys above; kpath_*4_key() turn an IPv4 one (family 4)
 * into its short form, which holds the same fields. Values are the same. */
struct kpath_c2p4_key {
    __u32 client_ip;
    __u32 server_ip; /* zero for a wildcard listener */
    __u16 client_port;
    __u16 server_port;
    __u16 channel;
    __u16 pad;
};

struct kpath_p2c4_key {
    __u32 relay_ip;
    __u32 peer_ip; /* zero: the allocation entry */
    __u16 relay_port;
    __u16 peer_port; /* zero: the allocation entry */
};

struct kpath_perm4_key {
    __u32 slot;
    __u32 peer_ip;
};

static inline struct kpath_c2p4_key kpath_c2p4_key(const struct kpath_c2p_key *k)
{
    struct kpath_c2p4_key s;
    __builtin_memset(&s, 0, sizeof(s));
    __builtin_memcpy(&s.client_ip, k->client_ip, 4);
    __builtin_memcpy(&s.server_ip, k->server_ip, 4);
    s.client_port = k->client_port;
    s.server_port = k->server_port;
    s.channel = k->channel;
    return s;
}

static inline struct kpath_p2c4_key kpath_p2c4_key(const struct kpath_p2c_key *k)
{
    struct kpath_p2c4_key s;
    __builtin_memset(&s, 0, sizeof(s));
    __builtin_memcpy(&s.relay_ip, k->relay_ip, 4);
    __builtin_memcpy(&s.peer_ip, k->peer_ip, 4);
    s.relay_port = k->relay_port;
    s.peer_port = k->peer_port;
    return s;
}

static inline struct kpath_perm4_key kpath_perm4_key(const struct kpath_perm_key *k)
{
    struct kpath_perm4_key s;
    s.slot = k->slot;
    __builtin_memcpy(&s.peer_ip, k->peer_ip, 4);
    return s;
}

/* User space's share of an allocation's bucket (kpath.h kpath_charge): the datagrams an offloaded
 * allocation still relays in user space (the shapes the program passes) are charged to the same
 * kp_bucket by the uturn_charge program, run with BPF_PROG_TEST_RUN on a frame that carries this
 * after its Ethernet header. It returns KPATH_CHARGE_*. */
struct kpath_charge {
    __u32 slot;
    __u32 pad;
    __u64 bytes;
};
enum { KPATH_CHARGE_DROP = 0, KPATH_CHARGE_OK = 1, KPATH_CHARGE_NO_SLOT = 2 };

/* One allocation's max-bps bucket, both directions together (as user space's dispatch_bps_ok):
 * holds up to bps bytes, refilled at bps bytes per second, starts full. bps 0: no limit. */
#ifdef __bpf__
#define KPATH_SPIN_LOCK struct bpf_spin_lock
#else
#define KPATH_SPIN_LOCK                                                                            \
    struct {                                                                                       \
        __u32 val;                                                                                 \
    }
#endif
struct kpath_bucket {
    KPATH_SPIN_LOCK lock; /* the program's; user space writes the value whole (BPF_F_LOCK) */
    __u32 pad;
    __u64 bps;
    __u64 tokens; /* bytes */
    __u64 last_ns;
};

/* One allocation's traffic on the kernel path, per CPU (user space sums the CPUs). Payload bytes,
 * as user space counts them (usage.h): to_peer = client -> peer, from_peer = peer -> client. */
struct kpath_count {
    __u64 to_peer_packets;
    __u64 to_peer_bytes;
    __u64 from_peer_packets;
    __u64 from_peer_bytes;
    __u64 drop_bps; /* datagrams dropped by the bucket */
};

/* kp_global slots (per CPU, summed on read): what the program did with what it saw. */
enum {
    KPATH_G_CHANNELDATA_IN = 0, /* ChannelData relayed client -> peer */
    KPATH_G_SEND_IN,            /* Send indications relayed client -> peer */
    KPATH_G_CHANNELDATA_OUT,    /* peer datagrams sent to the client as ChannelData */
    KPATH_G_DATA_OUT,           /* peer datagrams sent to the client as Data indications */
    KPATH_G_TO_PEER_BYTES,
    KPATH_G_FROM_PEER_BYTES,
    KPATH_G_DROP_BPS,       /* dropped by a bucket */
    KPATH_G_PASS_EXPIRED,   /* matched an expired entry: passed to user space */
    KPATH_G_PASS_UNHANDLED, /* looked like ours but the program does not handle it (IP
                             * options, fragments, FINGERPRINT, ...): passed */
    KPATH_G_REDIRECT_FAIL,  /* rewritten but could not be sent on: dropped */
    KPATH_G_PASS_ROUTE,     /* ours, but bpf_fib_lookup gave no route the program can take
                             * (forwarding off on the interface, MTU, unreachable, a local
                             * destination off loopback): passed unchanged */
    /* Of the relayed ones above, those the XDP program relayed (kpath_xdp.bpf.h). */
    KPATH_G_XDP_RELAYED,
    /* Ours, but the XDP program left it to TC because its UDP checksum did not verify (a local
     * sender's CHECKSUM_PARTIAL seed, corruption) or was 0. */
    KPATH_G_XDP_PASSED_CSUM,
    KPATH_G_N
};

#endif
