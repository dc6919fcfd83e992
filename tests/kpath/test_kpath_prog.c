/* test_kpath_prog.c - the kernel fast path's TC program (server/kpath/kpath.bpf.c) against the
 * user-space relay it mirrors (server/turn/dispatch_data.c). Needs root (CAP_BPF, CAP_NET_ADMIN):
 * otherwise it says why and exits 77 (SKIP). It moves itself into a private network namespace
 * (unshare), so loopback, routes, sysctls and the tc filter it attaches are its own and vanish
 * with it.
 *
 * Part one runs the program on crafted eth/IP/UDP packets (BPF_PROG_TEST_RUN) with the maps filled
 * as kpath_abi.h says, and compares the output byte for byte with packets built here: addresses,
 * headers, the UDP checksum (computed independently here, RFC 1071), the Data indication against
 * common/stun_build.c. Test-run skbs are CHECKSUM_NONE, so the full incremental checksum is
 * checked there. Part two attaches the program on the namespace's loopback and sends real
 * datagrams where no user-space relay exists: local senders make CHECKSUM_PARTIAL skbs, the other
 * checksum path, and /proc/net/snmp{,6} must show no checksum error. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <net/if.h>
#include <netinet/in.h>
#include <poll.h>
#include <sched.h>
#include <stdarg.h>
#include <sys/wait.h>
#include <stdint.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <time.h>

#include <linux/if_ether.h>
#include <linux/if_packet.h>

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <linux/pkt_cls.h>

#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wcast-qual"
#include "kpath.skel.h"
#pragma GCC diagnostic pop
#include "kpath_abi.h"
#include "stun.h"
#include "stun_build.h"
#include "unit.h"

static struct kpath_bpf *skel;
static int prog_fd;

enum { ETH = 14, MAXPKT = 2048 };

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* ---- an independent checksum and packet builder (RFC 768, RFC 8200 §8.1, RFC 1071) ---- */

static uint32_t sum16(const uint8_t *p, size_t n, uint32_t s)
{
    for (size_t i = 0; i + 1 < n; i += 2)
        s += (uint32_t)p[i] << 8 | p[i + 1];
    if (n & 1)
        s += (uint32_t)p[n - 1] << 8;
    return s;
}

static uint16_t fin16(uint32_t s)
{
    while (s >> 16)
        s = (s & 0xffff) + (s >> 16);
    return (uint16_t)~s;
}

typedef struct {
    int family; /* 4 or 6 */
    uint8_t ip[16];
    uint16_t port; /* host order */
} ep_t;

static ep_t ep(int family, const char *ip, uint16_t port)
{
    ep_t e = {.family = family, .port = port};
    inet_pton(family == 4 ? AF_INET : AF_INET6, ip, e.ip);
    return e;
}

/* eth (zero MACs) + IP + UDP + payload. `as_sent`: the header a Linux UDP socket sends (DF, id 0,
 * TTL 64), which is what the program must write; otherwise an arbitrary incoming one. */
static size_t build(uint8_t *o, const ep_t *s, const ep_t *d, const uint8_t *pl, size_t n,
                    int as_sent)
{
    memset(o, 0, ETH);
    size_t iphl = s->family == 4 ? 20 : 40, ulen = 8 + n;
    uint8_t *ip = o + ETH, *uh = ip + iphl;
    o[12] = s->family == 4 ? 0x08 : 0x86;
    o[13] = s->family == 4 ? 0x00 : 0xdd;
    uint32_t ps = 0;
    if (s->family == 4) {
        memset(ip, 0, 20);
        ip[0] = 0x45;
        ip[1] = as_sent ? 0 : 0xb8;
        ip[2] = (uint8_t)((20 + ulen) >> 8);
        ip[3] = (uint8_t)(20 + ulen);
        ip[4] = as_sent ? 0 : 0x42;
        ip[5] = as_sent ? 0 : 0x42;
        ip[6] = as_sent ? 0x40 : 0;
        ip[8] = as_sent ? 64 : 61;
        ip[9] = 17;
        memcpy(ip + 12, s->ip, 4);
        memcpy(ip + 16, d->ip, 4);
        uint16_t c = fin16(sum16(ip, 20, 0));
        ip[10] = (uint8_t)(c >> 8);
        ip[11] = (uint8_t)c;
        ps = sum16(s->ip, 4, 0) + sum16(d->ip, 4, 0) + 17 + (uint32_t)ulen;
    } else {
        memset(ip, 0, 40);
        ip[0] = 0x60;
        if (!as_sent) {
            ip[1] = 0x0a;
            ip[3] = 0x77;
        }
        ip[4] = (uint8_t)(ulen >> 8);
        ip[5] = (uint8_t)ulen;
        ip[6] = 17;
        ip[7] = as_sent ? 64 : 33;
        memcpy(ip + 8, s->ip, 16);
        memcpy(ip + 24, d->ip, 16);
        ps = sum16(s->ip, 16, 0) + sum16(d->ip, 16, 0) + 17 + (uint32_t)ulen;
    }
    uh[0] = (uint8_t)(s->port >> 8);
    uh[1] = (uint8_t)s->port;
    uh[2] = (uint8_t)(d->port >> 8);
    uh[3] = (uint8_t)d->port;
    uh[4] = (uint8_t)(ulen >> 8);
    uh[5] = (uint8_t)ulen;
    uh[6] = uh[7] = 0;
    if (n)
        memcpy(uh + 8, pl, n);
    uint16_t c = fin16(sum16(uh, ulen, ps));
    if (c == 0)
        c = 0xffff;
    uh[6] = (uint8_t)(c >> 8);
    uh[7] = (uint8_t)c;
    return ETH + iphl + ulen;
}

/* Is the UDP checksum of a built packet right? Independent of the builder's bookkeeping. */
static int udp_csum_ok(const uint8_t *pkt, size_t len)
{
    int v4 = pkt[12] == 0x08;
    size_t iphl = v4 ? 20 : 40;
    const uint8_t *ip = pkt + ETH, *uh = ip + iphl;
    size_t ulen = (size_t)uh[4] << 8 | uh[5];
    if (ETH + iphl + ulen != len)
        return 0;
    uint32_t ps = v4 ? sum16(ip + 12, 8, 0) : sum16(ip + 8, 32, 0);
    ps += 17 + (uint32_t)ulen;
    if (v4 && uh[6] == 0 && uh[7] == 0)
        return 1;
    return fin16(sum16(uh, ulen, ps)) == 0;
}

/* ---- the maps, as the workers fill them (kpath_abi.h) ---- */

static void c2p_set(const ep_t *client, const ep_t *server, uint16_t channel, const ep_t *relay,
                    const ep_t *peer, uint32_t slot, uint64_t expires)
{
    struct kpath_c2p_key k;
    struct kpath_c2p_val v;
    memset(&k, 0, sizeof(k));
    memset(&v, 0, sizeof(v));
    size_t al = client->family == 4 ? 4 : 16;
    memcpy(k.client_ip, client->ip, al);
    if (server)
        memcpy(k.server_ip, server->ip, al);
    k.client_port = htons(client->port);
    k.server_port = htons(server ? server->port : 3478);
    k.channel = channel;
    k.family = (uint8_t)client->family;
    v.expires_ns = expires;
    v.slot = slot;
    memcpy(v.relay_ip, relay->ip, al);
    v.relay_port = htons(relay->port);
    if (peer) {
        memcpy(v.peer_ip, peer->ip, al);
        v.peer_port = htons(peer->port);
    }
    CHECK_INT(bpf_map_update_elem(bpf_map__fd(skel->maps.kp_c2p), &k, &v, BPF_ANY), 0);
}

static void p2c_set(const ep_t *relay, const ep_t *peer, const ep_t *client, const ep_t *server,
                    uint16_t channel, uint32_t slot, uint64_t expires)
{
    struct kpath_p2c_key k;
    struct kpath_p2c_val v;
    memset(&k, 0, sizeof(k));
    memset(&v, 0, sizeof(v));
    size_t al = relay->family == 4 ? 4 : 16;
    memcpy(k.relay_ip, relay->ip, al);
    k.relay_port = htons(relay->port);
    if (peer) {
        memcpy(k.peer_ip, peer->ip, al);
        k.peer_port = htons(peer->port);
    }
    k.family = (uint8_t)relay->family;
    v.expires_ns = expires;
    v.slot = slot;
    v.channel = channel;
    memcpy(v.client_ip, client->ip, al);
    v.client_port = htons(client->port);
    memcpy(v.server_ip, server->ip, al);
    v.server_port = htons(server->port);
    CHECK_INT(bpf_map_update_elem(bpf_map__fd(skel->maps.kp_p2c), &k, &v, BPF_ANY), 0);
}

static void perm_set(uint32_t slot, const ep_t *peer, uint64_t expires)
{
    struct kpath_perm_key k;
    memset(&k, 0, sizeof(k));
    k.slot = slot;
    k.family = (uint8_t)peer->family;
    memcpy(k.peer_ip, peer->ip, peer->family == 4 ? 4 : 16);
    struct kpath_perm_val v = {.expires_ns = expires};
    CHECK_INT(bpf_map_update_elem(bpf_map__fd(skel->maps.kp_perm), &k, &v, BPF_ANY), 0);
}

static void slot_reset(uint32_t slot, uint64_t bps)
{
    int ncpu = libbpf_num_possible_cpus();
    struct kpath_count *zero = calloc((size_t)ncpu, sizeof(*zero));
    CHECK_INT(bpf_map_update_elem(bpf_map__fd(skel->maps.kp_count), &slot, zero, BPF_ANY), 0);
    free(zero);
    struct kpath_bucket b;
    memset(&b, 0, sizeof(b));
    b.bps = b.tokens = bps;
    CHECK_INT(bpf_map_update_elem(bpf_map__fd(skel->maps.kp_bucket), &slot, &b, BPF_F_LOCK), 0);
}

static struct kpath_count slot_counts(uint32_t slot)
{
    int ncpu = libbpf_num_possible_cpus();
    struct kpath_count *v = calloc((size_t)ncpu, sizeof(*v)), sum;
    memset(&sum, 0, sizeof(sum));
    CHECK_INT(bpf_map_lookup_elem(bpf_map__fd(skel->maps.kp_count), &slot, v), 0);
    for (int c = 0; c < ncpu; c++) {
        sum.to_peer_packets += v[c].to_peer_packets;
        sum.to_peer_bytes += v[c].to_peer_bytes;
        sum.from_peer_packets += v[c].from_peer_packets;
        sum.from_peer_bytes += v[c].from_peer_bytes;
        sum.drop_bps += v[c].drop_bps;
    }
    free(v);
    return sum;
}

static uint64_t global(uint32_t i)
{
    int ncpu = libbpf_num_possible_cpus();
    uint64_t *v = calloc((size_t)ncpu, sizeof(*v)), sum = 0;
    CHECK_INT(bpf_map_lookup_elem(bpf_map__fd(skel->maps.kp_global), &i, v), 0);
    for (int c = 0; c < ncpu; c++)
        sum += v[c];
    free(v);
    return sum;
}

static void clear_maps(void)
{
    struct bpf_map *maps[] = {skel->maps.kp_c2p, skel->maps.kp_p2c, skel->maps.kp_perm};
    for (size_t m = 0; m < 3; m++) {
        int fd = bpf_map__fd(maps[m]);
        uint8_t key[64], next[64];
        while (bpf_map_get_next_key(fd, NULL, next) == 0) {
            memcpy(key, next, sizeof(key));
            bpf_map_delete_elem(fd, key);
        }
    }
}

/* ---- running the program ---- */

static int run(const uint8_t *in, size_t n, uint8_t *out, size_t *outn)
{
    DECLARE_LIBBPF_OPTS(bpf_test_run_opts, o, .data_in = in, .data_size_in = (uint32_t)n,
                        .data_out = out, .data_size_out = MAXPKT, .repeat = 1);
    int rc = bpf_prog_test_run_opts(prog_fd, &o);
    CHECK_INT(rc, 0);
    *outn = o.data_size_out;
    return (int)o.retval;
}

static void check_bytes(const char *what, size_t n, const uint8_t *got, size_t gotn,
                        const uint8_t *want, size_t wantn)
{
    unit_checks++;
    if (gotn == wantn && memcmp(got, want, wantn) == 0)
        return;
    unit_failures++;
    fprintf(stderr, "%s, size %zu: output differs (got %zu bytes, want %zu)\n", what, n, gotn,
            wantn);
    for (size_t i = 0; i < gotn && i < wantn; i++)
        if (got[i] != want[i]) {
            fprintf(stderr, "  first difference at byte %zu: got %02x want %02x\n", i, got[i],
                    want[i]);
            break;
        }
}

/* The input comes back unchanged with TC_ACT_UNSPEC. */
static void check_passed(const char *what, const uint8_t *in, size_t n)
{
    uint8_t out[MAXPKT];
    size_t outn = 0;
    int rc = run(in, n, out, &outn);
    if (rc != TC_ACT_UNSPEC)
        fprintf(stderr, "%s: expected a pass\n", what);
    CHECK_INT(rc, TC_ACT_UNSPEC);
    check_bytes(what, n, out, outn, in, n);
}

static void fill(uint8_t *p, size_t n, unsigned seed)
{
    for (size_t i = 0; i < n; i++)
        p[i] = (uint8_t)(seed * 131 + i * 7 + (i >> 8));
}

static size_t channel_data(uint8_t *o, uint16_t ch, const uint8_t *d, size_t n, size_t pad)
{
    o[0] = (uint8_t)(ch >> 8);
    o[1] = (uint8_t)ch;
    o[2] = (uint8_t)(n >> 8);
    o[3] = (uint8_t)n;
    memcpy(o + 4, d, n);
    for (size_t i = 0; i < pad; i++)
        o[4 + n + i] = (uint8_t)(0xa0 + i); /* trailing bytes: user space ignores their value */
    return 4 + n + pad;
}

static void to_sa(const ep_t *e, struct sockaddr_storage *ss)
{
    memset(ss, 0, sizeof(*ss));
    if (e->family == 4) {
        struct sockaddr_in *s = (struct sockaddr_in *)ss;
        s->sin_family = AF_INET;
        s->sin_port = htons(e->port);
        memcpy(&s->sin_addr, e->ip, 4);
    } else {
        struct sockaddr_in6 *s = (struct sockaddr_in6 *)ss;
        s->sin6_family = AF_INET6;
        s->sin6_port = htons(e->port);
        memcpy(&s->sin6_addr, e->ip, 16);
    }
}

/* A Send indication as a client builds it; `data_first` swaps the two attributes; `extra` adds
 * one more attribute (type) after them (0: none); `fp`: FINGERPRINT last. */
static size_t send_ind(uint8_t *o, const ep_t *peer, const uint8_t *d, size_t n, int data_first,
                       uint16_t extra, int fp)
{
    uint8_t tid[12];
    fill(tid, 12, (unsigned)n + 5);
    struct sockaddr_storage ss;
    to_sa(peer, &ss);
    stun_build_t b;
    stun_build_init(&b, o, MAXPKT, stun_type(STUN_METHOD_SEND, STUN_CLASS_INDICATION), tid);
    if (!data_first)
        stun_build_xor_addr(&b, STUN_ATTR_XOR_PEER_ADDRESS, (struct sockaddr *)&ss);
    stun_build_attr(&b, STUN_ATTR_DATA, d, n);
    if (data_first)
        stun_build_xor_addr(&b, STUN_ATTR_XOR_PEER_ADDRESS, (struct sockaddr *)&ss);
    if (extra)
        stun_build_u32(&b, extra, 0x01020304);
    if (fp)
        stun_build_fingerprint(&b);
    int len = stun_build_finish(&b);
    CHECK(len > 0);
    return len > 0 ? (size_t)len : 0;
}

/* send_data_indication's bytes for this peer and data, with the transaction id `tid`. */
static size_t data_ind(uint8_t *o, const ep_t *peer, const uint8_t *d, size_t n, const uint8_t *tid)
{
    struct sockaddr_storage ss;
    to_sa(peer, &ss);
    stun_build_t b;
    stun_build_init(&b, o, MAXPKT, stun_type(STUN_METHOD_DATA, STUN_CLASS_INDICATION), tid);
    stun_build_xor_addr(&b, STUN_ATTR_XOR_PEER_ADDRESS, (struct sockaddr *)&ss);
    stun_build_attr(&b, STUN_ATTR_DATA, d, n);
    int len = stun_build_finish(&b);
    return len > 0 ? (size_t)len : 0;
}

/* The parties. IPv4 on 127/8 (all local on lo), IPv6 on ::1; the namespace routes both locally. */
typedef struct {
    ep_t client, server, relay, peer;
    size_t max; /* largest UDP payload of a 1500-byte packet */
} world_t;

static world_t world(int family)
{
    world_t w;
    if (family == 4) {
        w.client = ep(4, "127.0.0.2", 40000);
        w.server = ep(4, "127.0.0.1", 3478);
        w.relay = ep(4, "127.0.0.1", 50000);
        w.peer = ep(4, "127.0.0.3", 60000);
        w.max = 1472;
    } else {
        w.client = ep(6, "::1", 40000);
        w.server = ep(6, "::1", 3478);
        w.relay = ep(6, "::1", 50000);
        w.peer = ep(6, "::1", 60000);
        w.max = 1452;
    }
    return w;
}

static const uint32_t SLOT = 7;

/* ---- part one: BPF_PROG_TEST_RUN ---- */

static void channel_to_peer(int family)
{
    world_t w = world(family);
    clear_maps();
    slot_reset(SLOT, 0);
    c2p_set(&w.client, &w.server, 0x4001, &w.relay, &w.peer, SLOT, now_ns() + 60000000000ull);
    uint64_t g0 = global(KPATH_G_CHANNELDATA_IN), b0 = global(KPATH_G_TO_PEER_BYTES);
    uint8_t d[MAXPKT], pl[MAXPKT], in[MAXPKT], out[MAXPKT], want[MAXPKT];
    uint64_t pkts = 0, bytes = 0;
    for (size_t n = 0; n + 4 <= w.max; n++) {
        fill(d, n, (unsigned)n);
        /* UDP may carry padding after ChannelData (RFC 8656 §12.5): odd sizes get it. */
        size_t pad = (n & 1) ? (4 - (n & 3)) & 3 : 0;
        if (4 + n + pad > w.max)
            pad = 0;
        size_t pn = channel_data(pl, 0x4001, d, n, pad);
        size_t inn = build(in, &w.client, &w.server, pl, pn, 0);
        size_t outn = 0;
        int rc = run(in, inn, out, &outn);
        size_t wn = build(want, &w.relay, &w.peer, d, n, 1);
        if (rc != TC_ACT_OK)
            fprintf(stderr, "channel_to_peer v%d size %zu: rc %d\n", family, n, rc);
        CHECK_INT(rc, TC_ACT_OK);
        check_bytes(family == 4 ? "ChannelData v4 to peer" : "ChannelData v6 to peer", n, out, outn,
                    want, wn);
        CHECK(udp_csum_ok(out, outn));
        pkts++;
        bytes += n;
    }
    struct kpath_count c = slot_counts(SLOT);
    CHECK_INT(c.to_peer_packets, pkts);
    CHECK_INT(c.to_peer_bytes, bytes);
    CHECK_INT(c.from_peer_packets, 0);
    CHECK_INT(global(KPATH_G_CHANNELDATA_IN) - g0, pkts);
    CHECK_INT(global(KPATH_G_TO_PEER_BYTES) - b0, bytes);
}

UNIT_TEST(channel_to_peer_v4) { channel_to_peer(4); }
UNIT_TEST(channel_to_peer_v6) { channel_to_peer(6); }

static void to_client(int family, int channel)
{
    world_t w = world(family);
    clear_maps();
    slot_reset(SLOT, 0);
    uint64_t exp = now_ns() + 60000000000ull;
    p2c_set(&w.relay, NULL, &w.client, &w.server, 0, SLOT, exp);
    if (channel)
        p2c_set(&w.relay, &w.peer, &w.client, &w.server, 0x4abc, SLOT, exp);
    perm_set(SLOT, &w.peer, exp);
    uint32_t kind = channel ? KPATH_G_CHANNELDATA_OUT : KPATH_G_DATA_OUT;
    uint64_t g0 = global(kind);
    size_t hdr = channel ? 4 : (family == 4 ? 36 : 48);
    uint8_t d[MAXPKT], pl[MAXPKT], in[MAXPKT], out[MAXPKT], want[MAXPKT];
    uint64_t pkts = 0, bytes = 0;
    for (size_t n = 0; n + hdr + 3 <= w.max; n++) {
        fill(d, n, (unsigned)n + 9);
        size_t inn = build(in, &w.peer, &w.relay, d, n, 0);
        size_t outn = 0;
        int rc = run(in, inn, out, &outn);
        if (rc != TC_ACT_OK)
            fprintf(stderr, "to_client v%d ch %d size %zu: rc %d\n", family, channel, n, rc);
        CHECK_INT(rc, TC_ACT_OK);
        size_t pn;
        if (channel) {
            pn = channel_data(pl, 0x4abc, d, n, 0);
        } else {
            /* The transaction id is random: take it from the output. */
            size_t off = ETH + (family == 4 ? 20 : 40) + 8 + 8;
            pn = data_ind(pl, &w.peer, d, n, outn >= off + 12 ? out + off : d);
        }
        size_t wn = build(want, &w.server, &w.client, pl, pn, 1);
        check_bytes(channel ? "ChannelData to client" : "Data indication to client", n, out, outn,
                    want, wn);
        CHECK(udp_csum_ok(out, outn));
        pkts++;
        bytes += n;
    }
    struct kpath_count c = slot_counts(SLOT);
    CHECK_INT(c.from_peer_packets, pkts);
    CHECK_INT(c.from_peer_bytes, bytes);
    CHECK_INT(c.to_peer_packets, 0);
    CHECK_INT(global(kind) - g0, pkts);
}

UNIT_TEST(channel_to_client_v4) { to_client(4, 1); }
UNIT_TEST(channel_to_client_v6) { to_client(6, 1); }
UNIT_TEST(data_indication_v4) { to_client(4, 0); }
UNIT_TEST(data_indication_v6) { to_client(6, 0); }

static void send_to_peer(int family)
{
    world_t w = world(family);
    clear_maps();
    slot_reset(SLOT, 0);
    uint64_t exp = now_ns() + 60000000000ull;
    c2p_set(&w.client, &w.server, 0, &w.relay, NULL, SLOT, exp);
    perm_set(SLOT, &w.peer, exp);
    uint64_t g0 = global(KPATH_G_SEND_IN);
    uint8_t d[MAXPKT], pl[MAXPKT], in[MAXPKT], out[MAXPKT], want[MAXPKT];
    uint64_t pkts = 0;
    size_t hdr = family == 4 ? 36 : 48;
    for (size_t n = 0; n + hdr + 3 <= w.max; n++) {
        fill(d, n, (unsigned)n + 3);
        size_t pn = send_ind(pl, &w.peer, d, n, (int)(n % 3 == 1), 0, 0);
        size_t inn = build(in, &w.client, &w.server, pl, pn, 0);
        size_t outn = 0;
        int rc = run(in, inn, out, &outn);
        if (rc != TC_ACT_OK)
            fprintf(stderr, "send_to_peer v%d size %zu: rc %d\n", family, n, rc);
        CHECK_INT(rc, TC_ACT_OK);
        size_t wn = build(want, &w.relay, &w.peer, d, n, 1);
        check_bytes("Send indication to peer", n, out, outn, want, wn);
        CHECK(udp_csum_ok(out, outn));
        pkts++;
    }
    CHECK_INT(slot_counts(SLOT).to_peer_packets, pkts);
    CHECK_INT(global(KPATH_G_SEND_IN) - g0, pkts);
}

UNIT_TEST(send_to_peer_v4) { send_to_peer(4); }
UNIT_TEST(send_to_peer_v6) { send_to_peer(6); }

/* What the program must leave to user space, unchanged. */
static void passes(int family)
{
    world_t w = world(family);
    clear_maps();
    slot_reset(SLOT, 0);
    uint64_t exp = now_ns() + 60000000000ull, past = now_ns() - 1;
    uint8_t d[200], pl[MAXPKT], in[MAXPKT];
    fill(d, sizeof(d), 1);
    size_t pn, inn;

    /* No entry at all: not ours. */
    pn = channel_data(pl, 0x4001, d, 100, 0);
    inn = build(in, &w.client, &w.server, pl, pn, 0);
    check_passed("unbound channel", in, inn);
    inn = build(in, &w.peer, &w.relay, d, 100, 0);
    check_passed("peer without allocation", in, inn);

    /* Expired channel: counted, passed. */
    c2p_set(&w.client, &w.server, 0x4001, &w.relay, &w.peer, SLOT, past);
    uint64_t e0 = global(KPATH_G_PASS_EXPIRED);
    pn = channel_data(pl, 0x4001, d, 100, 0);
    inn = build(in, &w.client, &w.server, pl, pn, 0);
    check_passed("expired channel", in, inn);
    CHECK_INT(global(KPATH_G_PASS_EXPIRED) - e0, 1);
    /* Another channel number on the same 5-tuple is unbound. */
    c2p_set(&w.client, &w.server, 0x4001, &w.relay, &w.peer, SLOT, exp);
    pn = channel_data(pl, 0x4002, d, 100, 0);
    inn = build(in, &w.client, &w.server, pl, pn, 0);
    check_passed("other channel", in, inn);
    /* A short ChannelData (length past the datagram): user space drops it as malformed. */
    pn = channel_data(pl, 0x4001, d, 100, 0);
    inn = build(in, &w.client, &w.server, pl, pn - 1, 0);
    check_passed("short ChannelData", in, inn);
    /* More trailing bytes than padding. */
    pn = channel_data(pl, 0x4001, d, 100, 8);
    inn = build(in, &w.client, &w.server, pl, pn, 0);
    check_passed("long trailer", in, inn);

    /* Send: no allocation entry, no permission, expired permission, unknown attribute,
     * FINGERPRINT, two DATA. */
    pn = send_ind(pl, &w.peer, d, 100, 0, 0, 0);
    inn = build(in, &w.client, &w.server, pl, pn, 0);
    check_passed("Send without allocation", in, inn);
    c2p_set(&w.client, &w.server, 0, &w.relay, NULL, SLOT, exp);
    check_passed("Send without permission", in, inn);
    perm_set(SLOT, &w.peer, past);
    check_passed("Send with an expired permission", in, inn);
    perm_set(SLOT, &w.peer, exp);
    pn = send_ind(pl, &w.peer, d, 100, 0, 0x8030, 0); /* an unknown optional attribute */
    inn = build(in, &w.client, &w.server, pl, pn, 0);
    check_passed("Send with an unknown attribute", in, inn);
    pn = send_ind(pl, &w.peer, d, 100, 0, 0x0024, 0); /* PRIORITY: comprehension-required */
    inn = build(in, &w.client, &w.server, pl, pn, 0);
    check_passed("Send with another attribute", in, inn);
    pn = send_ind(pl, &w.peer, d, 100, 0, 0, 1);
    inn = build(in, &w.client, &w.server, pl, pn, 0);
    check_passed("Send with FINGERPRINT", in, inn);
    pn = send_ind(pl, &w.peer, d, 100, 0, STUN_ATTR_DATA, 0);
    inn = build(in, &w.client, &w.server, pl, pn, 0);
    check_passed("Send with two DATA", in, inn);
    pn = send_ind(pl, &w.peer, d, 100, 0, 0, 0);
    pl[3] ^= 4; /* message length no longer matches the datagram */
    inn = build(in, &w.client, &w.server, pl, pn, 0);
    check_passed("Send with a bad length", in, inn);
    ep_t zero_port = w.peer;
    zero_port.port = 0;
    perm_set(SLOT, &zero_port, exp);
    pn = send_ind(pl, &w.peer, d, 100, 0, 0, 0);
    pn = send_ind(pl, &zero_port, d, 100, 0, 0, 0);
    inn = build(in, &w.client, &w.server, pl, pn, 0);
    check_passed("Send to port 0", in, inn);

    /* Peer side: allocation but no permission; expired permission; expired channel. */
    clear_maps();
    p2c_set(&w.relay, NULL, &w.client, &w.server, 0, SLOT, exp);
    inn = build(in, &w.peer, &w.relay, d, 100, 0);
    check_passed("peer without permission", in, inn);
    perm_set(SLOT, &w.peer, past);
    check_passed("peer with an expired permission", in, inn);
    perm_set(SLOT, &w.peer, exp);
    p2c_set(&w.relay, &w.peer, &w.client, &w.server, 0x4001, SLOT, past);
    check_passed("expired channel to client", in, inn);
    p2c_set(&w.relay, &w.peer, &w.client, &w.server, 0x4001, SLOT, exp);
    p2c_set(&w.relay, NULL, &w.client, &w.server, 0, SLOT, past);
    ep_t other = w.peer;
    other.port = 60001; /* no channel: the (expired) allocation entry */
    inn = build(in, &other, &w.relay, d, 100, 0);
    check_passed("expired allocation", in, inn);

    /* IP shapes: with an entry that would match. */
    clear_maps();
    c2p_set(&w.client, &w.server, 0x4001, &w.relay, &w.peer, SLOT, exp);
    pn = channel_data(pl, 0x4001, d, 100, 0);
    inn = build(in, &w.client, &w.server, pl, pn, 0);
    uint8_t x[MAXPKT];
    if (family == 4) {
        memcpy(x, in, inn);
        x[ETH + 6] = 0x20; /* MF: a first fragment */
        check_passed("fragment", x, inn);
        memcpy(x, in, inn);
        x[ETH + 7] = 0x10; /* offset */
        check_passed("later fragment", x, inn);
        /* IP options: ihl 6 with a NOP word. */
        memcpy(x, in, ETH + 20);
        x[ETH] = 0x46;
        memset(x + ETH + 20, 1, 4);
        memcpy(x + ETH + 24, in + ETH + 20, inn - ETH - 20);
        x[ETH + 3] += 4;
        check_passed("IP options", x, inn + 4);
    } else {
        /* A hop-by-hop extension header in front of UDP. */
        memcpy(x, in, ETH + 40);
        x[ETH + 6] = 0; /* next header: hop-by-hop */
        uint8_t hbh[8] = {17, 0, 1, 4, 0, 0, 0, 0};
        memcpy(x + ETH + 40, hbh, 8);
        memcpy(x + ETH + 48, in + ETH + 40, inn - ETH - 40);
        x[ETH + 5] += 8;
        check_passed("extension header", x, inn + 8);
    }
    if (family == 6) {
        /* A link-local peer: the IPv6 route lookup would call it local. */
        ep_t ll = ep(6, "fe80::1", 60000);
        c2p_set(&w.client, &w.server, 0x4002, &w.relay, &ll, SLOT, exp);
        pn = channel_data(pl, 0x4002, d, 100, 0);
        size_t ln = build(x, &w.client, &w.server, pl, pn, 0);
        check_passed("link-local peer", x, ln);
    } else {
        /* An entry whose addresses are not in IPv4 form (a family mismatch). */
        c2p_set(&w.client, &w.server, 0x4002, &w.relay, &w.peer, SLOT, exp);
        struct kpath_c2p_key k;
        struct kpath_c2p_val v;
        memset(&k, 0, sizeof(k));
        memcpy(k.client_ip, w.client.ip, 4);
        memcpy(k.server_ip, w.server.ip, 4);
        k.client_port = htons(w.client.port);
        k.server_port = htons(w.server.port);
        k.channel = 0x4002;
        k.family = 4;
        int fd = bpf_map__fd(skel->maps.kp_c2p);
        CHECK_INT(bpf_map_lookup_elem(fd, &k, &v), 0);
        v.peer_ip[8] = 1;
        CHECK_INT(bpf_map_update_elem(fd, &k, &v, BPF_EXIST), 0);
        pn = channel_data(pl, 0x4002, d, 100, 0);
        size_t ln = build(x, &w.client, &w.server, pl, pn, 0);
        check_passed("family mismatch", x, ln);
    }
    /* Over the 2048 bytes the program copies. */
    {
        static uint8_t big[2100], bigpl[2200], bigin[2300];
        fill(big, sizeof(big), 8);
        size_t bn = channel_data(bigpl, 0x4001, big, sizeof(big), 0);
        size_t bin = build(bigin, &w.client, &w.server, bigpl, bn, 0);
        DECLARE_LIBBPF_OPTS(bpf_test_run_opts, t, .data_in = bigin, .data_size_in = (uint32_t)bin,
                            .repeat = 1);
        CHECK_INT(bpf_prog_test_run_opts(prog_fd, &t), 0);
        CHECK_INT((int)t.retval, TC_ACT_UNSPEC);
    }
    /* TCP to the same port. */
    memcpy(x, in, inn);
    x[ETH + (family == 4 ? 9 : 6)] = 6;
    check_passed("TCP", x, inn);
}

UNIT_TEST(passes_v4) { passes(4); }
UNIT_TEST(passes_v6) { passes(6); }

/* max-bps: bps 2500 and 1000-byte payloads: two pass, the third is dropped and counted. */
UNIT_TEST(bucket)
{
    world_t w = world(4);
    clear_maps();
    slot_reset(SLOT, 2500);
    c2p_set(&w.client, &w.server, 0x4001, &w.relay, &w.peer, SLOT, now_ns() + 60000000000ull);
    uint64_t g0 = global(KPATH_G_DROP_BPS);
    uint8_t d[1000], pl[MAXPKT], in[MAXPKT], out[MAXPKT];
    fill(d, sizeof(d), 2);
    size_t pn = channel_data(pl, 0x4001, d, sizeof(d), 0);
    size_t inn = build(in, &w.client, &w.server, pl, pn, 0), outn;
    CHECK_INT(run(in, inn, out, &outn), TC_ACT_OK);
    CHECK_INT(run(in, inn, out, &outn), TC_ACT_OK);
    CHECK_INT(run(in, inn, out, &outn), TC_ACT_SHOT);
    struct kpath_count c = slot_counts(SLOT);
    CHECK_INT(c.to_peer_packets, 2);
    CHECK_INT(c.to_peer_bytes, 2000);
    CHECK_INT(c.drop_bps, 1);
    CHECK_INT(global(KPATH_G_DROP_BPS) - g0, 1);
    /* The bucket refills at 2500 B/s: 1000 bytes take 0.4 s. */
    struct timespec ts = {0, 450000000};
    nanosleep(&ts, NULL);
    CHECK_INT(run(in, inn, out, &outn), TC_ACT_OK);
    CHECK_INT(run(in, inn, out, &outn), TC_ACT_SHOT);
    /* bps 0: no limit. */
    slot_reset(SLOT, 0);
    for (int i = 0; i < 10; i++)
        CHECK_INT(run(in, inn, out, &outn), TC_ACT_OK);
}

/* A wildcard listener's entries carry no server address either way. Towards a remote client the
 * source is the route's preferred source (BPF_FIB_LOOKUP_SRC, Linux 6.8), as the kernel picks it
 * for user space's wildcard socket; towards a local client it stays in user space. The remote
 * client sits behind a veth. */
static void wildcard_to_client(int family)
{
    world_t w = world(family);
    ep_t client = ep(family, family == 4 ? "198.19.0.2" : "2001:db8:1::2", 40000);
    ep_t routed = ep(family, family == 4 ? "198.19.0.1" : "2001:db8:1::1", 3478);
    ep_t any = w.server;
    memset(any.ip, 0, 16);
    clear_maps();
    slot_reset(SLOT, 0);
    uint64_t exp = now_ns() + 60000000000ull;
    p2c_set(&w.relay, &w.peer, &client, &any, 0x4001, SLOT, exp);
    perm_set(SLOT, &w.peer, exp);
    uint8_t d[77], pl[MAXPKT], in[MAXPKT], out[MAXPKT], want[MAXPKT];
    fill(d, sizeof(d), 9);
    size_t inn = build(in, &w.peer, &w.relay, d, sizeof(d), 0), outn;
    int rc = run(in, inn, out, &outn);
    if (rc == TC_ACT_UNSPEC) {
        printf("wildcard_to_client v%d: passed to user space (a kernel before 6.8 has no "
               "BPF_FIB_LOOKUP_SRC)\n",
               family);
        check_bytes("wildcard, old kernel", sizeof(d), out, outn, in, inn);
        return;
    }
    CHECK_INT(rc, TC_ACT_REDIRECT);
    size_t pn = channel_data(pl, 0x4001, d, sizeof(d), 0);
    size_t wn = build(want, &routed, &client, pl, pn, 1);
    /* The MACs are the route's: compare from the EtherType on. */
    check_bytes("wildcard listener, remote client", sizeof(d), out + 12, outn - 12, want + 12,
                wn - 12);
    /* A local client: the source would be the local route's, which the lookup does not give. */
    p2c_set(&w.relay, &w.peer, &w.client, &any, 0x4001, SLOT, exp);
    check_passed("wildcard listener, local client", in, inn);
}

UNIT_TEST(wildcard_to_client_v4) { wildcard_to_client(4); }
UNIT_TEST(wildcard_to_client_v6) { wildcard_to_client(6); }

/* RFC 768: an IPv4 datagram may carry no checksum (0). It is relayed with none: the program never
 * sums the payload, and 0 is not a checksum to update. */
UNIT_TEST(no_checksum_v4)
{
    world_t w = world(4);
    clear_maps();
    slot_reset(SLOT, 0);
    uint64_t exp = now_ns() + 60000000000ull;
    c2p_set(&w.client, &w.server, 0x4001, &w.relay, &w.peer, SLOT, exp);
    p2c_set(&w.relay, NULL, &w.client, &w.server, 0, SLOT, exp);
    perm_set(SLOT, &w.peer, exp);
    uint8_t d[101], pl[MAXPKT], in[MAXPKT], out[MAXPKT], want[MAXPKT];
    fill(d, sizeof(d), 6);
    size_t pn = channel_data(pl, 0x4001, d, sizeof(d), 0);
    size_t inn = build(in, &w.client, &w.server, pl, pn, 0), outn;
    in[ETH + 20 + 6] = in[ETH + 20 + 7] = 0;
    CHECK_INT(run(in, inn, out, &outn), TC_ACT_OK);
    size_t wn = build(want, &w.relay, &w.peer, d, sizeof(d), 1);
    want[ETH + 20 + 6] = want[ETH + 20 + 7] = 0;
    check_bytes("no checksum, to peer", sizeof(d), out, outn, want, wn);
    /* The other way, as a Data indication. */
    inn = build(in, &w.peer, &w.relay, d, sizeof(d), 0);
    in[ETH + 20 + 6] = in[ETH + 20 + 7] = 0;
    CHECK_INT(run(in, inn, out, &outn), TC_ACT_OK);
    CHECK(outn > ETH + 28 + 20 && out[ETH + 20 + 6] == 0 && out[ETH + 20 + 7] == 0);
    size_t hn = data_ind(pl, &w.peer, d, sizeof(d), out + ETH + 28 + 8);
    wn = build(want, &w.server, &w.client, pl, hn, 1);
    want[ETH + 20 + 6] = want[ETH + 20 + 7] = 0;
    check_bytes("no checksum, to client", sizeof(d), out, outn, want, wn);
}

/* A wildcard listener's entries carry no server address: the program retries with zeros. */
UNIT_TEST(wildcard_listener)
{
    world_t w = world(4);
    clear_maps();
    slot_reset(SLOT, 0);
    c2p_set(&w.client, NULL, 0x4001, &w.relay, &w.peer, SLOT, now_ns() + 60000000000ull);
    uint8_t d[64], pl[MAXPKT], in[MAXPKT], out[MAXPKT], want[MAXPKT];
    fill(d, sizeof(d), 4);
    size_t pn = channel_data(pl, 0x4001, d, sizeof(d), 0);
    size_t inn = build(in, &w.client, &w.server, pl, pn, 0), outn;
    CHECK_INT(run(in, inn, out, &outn), TC_ACT_OK);
    size_t wn = build(want, &w.relay, &w.peer, d, sizeof(d), 1);
    check_bytes("wildcard listener", sizeof(d), out, outn, want, wn);
}

static int write_file(const char *path, const char *s);

/* bpf_fib_lookup refuses to route for an interface with forwarding off: the packet then stays in
 * user space, unchanged and counted (docs/KERNEL.md). IPv4 only: an IPv6 lookup of ::1 answers
 * "local" before it looks at forwarding. */
UNIT_TEST(forwarding_off)
{
    for (int family = 4; family <= 4; family += 2) {
        world_t w = world(family);
        clear_maps();
        slot_reset(SLOT, 0);
        c2p_set(&w.client, &w.server, 0x4001, &w.relay, &w.peer, SLOT, now_ns() + 60000000000ull);
        const char *path = family == 4 ? "/proc/sys/net/ipv4/conf/lo/forwarding"
                                       : "/proc/sys/net/ipv6/conf/lo/forwarding";
        CHECK_INT(write_file(path, "0"), 0);
        uint64_t g0 = global(KPATH_G_PASS_ROUTE);
        uint8_t d[64], pl[MAXPKT], in[MAXPKT];
        fill(d, sizeof(d), 5);
        size_t pn = channel_data(pl, 0x4001, d, sizeof(d), 0);
        size_t inn = build(in, &w.client, &w.server, pl, pn, 0);
        check_passed("forwarding off", in, inn);
        CHECK_INT(global(KPATH_G_PASS_ROUTE) - g0, 1);
        CHECK_INT(slot_counts(SLOT).to_peer_packets, 0);
        CHECK_INT(write_file(path, "1"), 0);
    }
}

/* The program's own cost under BPF_PROG_TEST_RUN (repeat: KPATH_BENCH_REPEAT, default 1000). A
 * test run keeps one skb across repeats, so the maps make it a ping-pong: ChannelData from the
 * client is stripped and sent to the peer, and that datagram (a "peer" datagram to a "relayed
 * address") gets its ChannelData header back, addressed to where the first one came from. The
 * figure is the mean of the two directions, eth to fib lookup included. */
static void bench(size_t n)
{
    world_t w = world(4);
    clear_maps();
    slot_reset(SLOT, 0);
    uint64_t exp = now_ns() + 3600000000000ull;
    c2p_set(&w.client, &w.server, 0x4001, &w.relay, &w.peer, SLOT, exp);
    /* The way back: the peer's address as the relayed address, the client's as the server's. */
    p2c_set(&w.peer, &w.relay, &w.server, &w.client, 0x4001, SLOT, exp);
    perm_set(SLOT, &w.relay, exp);
    uint8_t d[MAXPKT], pl[MAXPKT], in[MAXPKT], out[MAXPKT], want[MAXPKT];
    fill(d, n, 3);
    size_t pn = channel_data(pl, 0x4001, d, n, 0);
    size_t inn = build(in, &w.client, &w.server, pl, pn, 0);
    const char *env = getenv("KPATH_BENCH_REPEAT");
    uint32_t repeat = env ? (uint32_t)strtoul(env, NULL, 10) : 1000;
    repeat += repeat & 1; /* even: the output is a client datagram again */
    DECLARE_LIBBPF_OPTS(bpf_test_run_opts, o, .data_in = in, .data_size_in = (uint32_t)inn,
                        .data_out = out, .data_size_out = MAXPKT, .repeat = repeat);
    CHECK_INT(bpf_prog_test_run_opts(prog_fd, &o), 0);
    CHECK_INT(o.retval, TC_ACT_OK);
    size_t wn = build(want, &w.client, &w.server, pl, pn, 1);
    check_bytes("ping-pong", n, out, o.data_size_out, want, wn);
    struct kpath_count c = slot_counts(SLOT);
    CHECK_INT(c.to_peer_packets, repeat / 2);
    CHECK_INT(c.from_peer_packets, repeat / 2);
    printf("bench: %zu B ChannelData, %u runs: %u ns per run\n", n, repeat, o.duration);
}

UNIT_TEST(bench_test_run)
{
    struct bpf_prog_info info;
    uint32_t len = sizeof(info);
    memset(&info, 0, sizeof(info));
    CHECK_INT(bpf_obj_get_info_by_fd(prog_fd, &info, &len), 0);
    printf("bench: program: %u bytes xlated (%u instructions), %u bytes jited\n",
           info.xlated_prog_len, info.xlated_prog_len / 8, info.jited_prog_len);
    bench(100);
    bench(1000);
}

/* ---- part two: real datagrams on the namespace's loopback, no relay in user space ---- */

/* Udp InCsumErrors + Udp6InCsumErrors. */
static long long csum_errors(void)
{
    long long total = 0;
    char line[1024], names[1024] = "";
    FILE *f = fopen("/proc/net/snmp", "r");
    while (f && fgets(line, sizeof(line), f)) {
        if (strncmp(line, "Udp: ", 5) != 0)
            continue;
        if (!names[0]) {
            memcpy(names, line, sizeof(names));
            continue;
        }
        /* The second "Udp:" line holds the values, in the order of the first. */
        char *ns = NULL, *vs = NULL;
        char *n = strtok_r(names, " \n", &ns), *v = strtok_r(line, " \n", &vs);
        while (n && v) {
            if (strcmp(n, "InCsumErrors") == 0)
                total += atoll(v);
            n = strtok_r(NULL, " \n", &ns);
            v = strtok_r(NULL, " \n", &vs);
        }
    }
    if (f)
        fclose(f);
    f = fopen("/proc/net/snmp6", "r");
    while (f && fgets(line, sizeof(line), f)) {
        char name[64];
        long long v;
        if (sscanf(line, "%63s %lld", name, &v) == 2 && strcmp(name, "Udp6InCsumErrors") == 0)
            total += v;
    }
    if (f)
        fclose(f);
    return total;
}

static int bound_socket(const ep_t *e)
{
    struct sockaddr_storage ss;
    to_sa(e, &ss);
    int fd = socket(e->family == 4 ? AF_INET : AF_INET6, SOCK_DGRAM, 0);
    CHECK(fd >= 0);
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    socklen_t sl = e->family == 4 ? sizeof(struct sockaddr_in) : sizeof(struct sockaddr_in6);
    CHECK_INT(bind(fd, (struct sockaddr *)&ss, sl), 0);
    return fd;
}

/* Send a whole frame on lo through a packet socket: the skb then arrives CHECKSUM_NONE, with the
 * checksum the frame carries, and the receiver verifies it in full. */
static int inject_ifindex = 1, inject_fd = -1;

static int inject(const uint8_t *frame, size_t n)
{
    int fd = inject_fd;
    if (fd < 0) {
        fd = inject_fd = socket(AF_PACKET, SOCK_RAW, 0);
        if (fd < 0)
            return -errno;
    }
    struct sockaddr_ll sll;
    memset(&sll, 0, sizeof(sll));
    sll.sll_family = AF_PACKET;
    sll.sll_ifindex = inject_ifindex;
    sll.sll_halen = 6;
    return sendto(fd, frame, n, 0, (struct sockaddr *)&sll, sizeof(sll)) == (ssize_t)n ? 0 : -errno;
}

/* Wait up to 1 s for a datagram on fd from `from`; its length, or -1/-3. */
static ssize_t receive(int rfd, const ep_t *from, uint8_t *got, size_t cap)
{
    struct sockaddr_storage src, want;
    struct pollfd p = {.fd = rfd, .events = POLLIN};
    if (poll(&p, 1, 1000) != 1)
        return -1;
    socklen_t srcl = sizeof(src);
    ssize_t r = recvfrom(rfd, got, cap, 0, (struct sockaddr *)&src, &srcl);
    to_sa(from, &want);
    int same = src.ss_family == want.ss_family &&
               (from->family == 4 ? memcmp(&src, &want, sizeof(struct sockaddr_in)) == 0
                                  : memcmp(&((struct sockaddr_in6 *)&src)->sin6_addr,
                                           &((struct sockaddr_in6 *)&want)->sin6_addr, 16) == 0 &&
                                        ((struct sockaddr_in6 *)&src)->sin6_port ==
                                            ((struct sockaddr_in6 *)&want)->sin6_port);
    return same ? r : -3;
}

/* One datagram from `a` (socket fd, or injected when fd < 0) to `to`, received on rfd. */
static ssize_t hop2(int fd, const ep_t *a, const ep_t *to, const uint8_t *buf, size_t n, int rfd,
                    const ep_t *from, uint8_t *got, size_t cap)
{
    if (fd >= 0) {
        struct sockaddr_storage ss;
        to_sa(to, &ss);
        socklen_t sl = to->family == 4 ? sizeof(struct sockaddr_in) : sizeof(struct sockaddr_in6);
        if (sendto(fd, buf, n, 0, (struct sockaddr *)&ss, sl) != (ssize_t)n)
            return -2;
    } else {
        uint8_t frame[MAXPKT];
        if (inject(frame, build(frame, a, to, buf, n, 0)) != 0)
            return -2;
    }
    return receive(rfd, from, got, cap);
}

static void sockets(int family, int injected)
{
    world_t w = world(family);
    clear_maps();
    slot_reset(SLOT, 0);
    uint64_t exp = now_ns() + 60000000000ull;
    int cfd = bound_socket(&w.client), pfd = bound_socket(&w.peer);
    int csend = injected ? -1 : cfd, psend = injected ? -1 : pfd;
    long long err0 = csum_errors();
    uint8_t d[MAXPKT], pl[MAXPKT], got[MAXPKT], want[MAXPKT];
    size_t bad[4] = {0, 0, 0, 0};
    const size_t max = 1400;
    for (int phase = 0; phase < 2; phase++) {
        /* Phase 0: a channel both ways. Phase 1: Send and Data indications. */
        clear_maps();
        if (phase == 0) {
            c2p_set(&w.client, &w.server, 0x4001, &w.relay, &w.peer, SLOT, exp);
            p2c_set(&w.relay, &w.peer, &w.client, &w.server, 0x4001, SLOT, exp);
        } else {
            c2p_set(&w.client, &w.server, 0, &w.relay, NULL, SLOT, exp);
            p2c_set(&w.relay, NULL, &w.client, &w.server, 0, SLOT, exp);
        }
        perm_set(SLOT, &w.peer, exp);
        for (size_t n = 0; n <= max; n++) {
            fill(d, n, (unsigned)n + 11 * (unsigned)phase);
            size_t pn = phase == 0 ? channel_data(pl, 0x4001, d, n, 0)
                                   : send_ind(pl, &w.peer, d, n, 0, 0, 0);
            ssize_t r = hop2(csend, &w.client, &w.server, pl, pn, pfd, &w.relay, got, sizeof(got));
            if (r != (ssize_t)n || memcmp(got, d, n) != 0) {
                if (bad[phase * 2]++ < 3)
                    fprintf(stderr, "v%d %s %s size %zu: peer got %zd\n", family,
                            injected ? "injected" : "socket", phase ? "Send" : "ChannelData", n, r);
            }
            r = hop2(psend, &w.peer, &w.relay, d, n, cfd, &w.server, got, sizeof(got));
            size_t wn = phase == 0 ? channel_data(want, 0x4001, d, n, 0)
                                   : data_ind(want, &w.peer, d, n, r >= 20 ? got + 8 : d);
            if (r != (ssize_t)wn || memcmp(got, want, wn) != 0) {
                if (bad[phase * 2 + 1]++ < 3)
                    fprintf(stderr, "v%d %s %s size %zu: client got %zd\n", family,
                            injected ? "injected" : "socket",
                            phase ? "Data indication" : "ChannelData", n, r);
            }
            if (bad[phase * 2] + bad[phase * 2 + 1] > 6)
                break; /* each miss waits a second: enough to see what is wrong */
        }
    }
    CHECK_INT(bad[0], 0);
    CHECK_INT(bad[1], 0);
    CHECK_INT(bad[2], 0);
    CHECK_INT(bad[3], 0);
    CHECK_INT(csum_errors() - err0, 0);
    /* Every datagram went through the program: nothing else relays here. */
    struct kpath_count c = slot_counts(SLOT);
    CHECK_INT(c.to_peer_packets, 2 * (max + 1));
    CHECK_INT(c.from_peer_packets, 2 * (max + 1));
    if (injected) {
        /* A corrupted datagram stays corrupted: the peer's stack drops it and counts it. */
        fill(d, 100, 77);
        size_t pn = channel_data(pl, 0x4001, d, 100, 0);
        clear_maps();
        c2p_set(&w.client, &w.server, 0x4001, &w.relay, &w.peer, SLOT, exp);
        uint8_t frame[MAXPKT];
        size_t fn = build(frame, &w.client, &w.server, pl, pn, 0);
        frame[fn - 1] ^= 0x5a;
        CHECK_INT(inject(frame, fn), 0);
        CHECK_INT(receive(pfd, &w.relay, got, sizeof(got)), -1);
        CHECK_INT(csum_errors() - err0, 1);
    }
    close(cfd);
    close(pfd);
}

static void attach_lo(void)
{
    DECLARE_LIBBPF_OPTS(bpf_tc_hook, hook, .ifindex = 1, .attach_point = BPF_TC_INGRESS);
    int rc = bpf_tc_hook_create(&hook);
    CHECK(rc == 0 || rc == -EEXIST);
    DECLARE_LIBBPF_OPTS(bpf_tc_opts, o, .prog_fd = prog_fd, .handle = 1, .priority = KPATH_TC_PRIO);
    CHECK_INT(bpf_tc_attach(&hook, &o), 0);
}

static void detach_lo(void)
{
    DECLARE_LIBBPF_OPTS(bpf_tc_hook, hook, .ifindex = 1, .attach_point = BPF_TC_INGRESS);
    DECLARE_LIBBPF_OPTS(bpf_tc_opts, o, .handle = 1, .priority = KPATH_TC_PRIO);
    CHECK_INT(bpf_tc_detach(&hook, &o), 0);
}

/* Local senders (CHECKSUM_PARTIAL skbs), then frames injected with full checksums (NONE). */
UNIT_TEST(sockets_v4)
{
    attach_lo();
    sockets(4, 1);
    sockets(4, 0);
    detach_lo();
}

UNIT_TEST(sockets_v6)
{
    attach_lo();
    sockets(6, 1);
    sockets(6, 0);
    detach_lo();
}

/* ---- part three: through a veth to another namespace (bpf_redirect, bpf_redirect_neigh) ---- */

/* In the far namespace: the UDP datagram to `to` captured on kpb, its checksum checked the way
 * its skb says: a CHECKSUM_PARTIAL one (a veth keeps it) must hold the pseudo-header seed, any
 * other the full checksum. 1 ok, 0 bad, -1 not seen. */
static size_t seen_partial, seen_full;

static int capture_check(int cap, const ep_t *to)
{
    for (int tries = 0; tries < 16; tries++) {
        struct pollfd p = {.fd = cap, .events = POLLIN};
        if (poll(&p, 1, 1000) != 1)
            return -1;
        uint8_t f[MAXPKT];
        char ctl[256];
        struct sockaddr_ll from;
        struct iovec iov = {f, sizeof(f)};
        struct msghdr m = {.msg_name = &from,
                           .msg_namelen = sizeof(from),
                           .msg_iov = &iov,
                           .msg_iovlen = 1,
                           .msg_control = ctl,
                           .msg_controllen = sizeof(ctl)};
        ssize_t n = recvmsg(cap, &m, 0);
        if (n < ETH + 28 || from.sll_pkttype == PACKET_OUTGOING)
            continue;
        int v4 = f[12] == 0x08 && f[13] == 0x00, v6 = f[12] == 0x86 && f[13] == 0xdd;
        if ((to->family == 4 && !v4) || (to->family == 6 && !v6))
            continue;
        size_t iphl = v4 ? 20 : 40;
        const uint8_t *ip = f + ETH, *uh = ip + iphl;
        if ((v4 ? ip[9] : ip[6]) != 17 || memcmp(v4 ? ip + 16 : ip + 24, to->ip, v4 ? 4 : 16) ||
            (uh[2] << 8 | uh[3]) != to->port)
            continue;
        unsigned status = 0;
        for (struct cmsghdr *c = CMSG_FIRSTHDR(&m); c; c = CMSG_NXTHDR(&m, c))
            if (c->cmsg_level == SOL_PACKET && c->cmsg_type == PACKET_AUXDATA)
                status = ((struct tpacket_auxdata *)(void *)CMSG_DATA(c))->tp_status;
        if (!(status & TP_STATUS_CSUMNOTREADY)) {
            seen_full++;
            return udp_csum_ok(f, (size_t)n);
        }
        seen_partial++;
        size_t ulen = (size_t)uh[4] << 8 | uh[5];
        uint32_t ps = (v4 ? sum16(ip + 12, 8, 0) : sum16(ip + 8, 32, 0)) + 17 + (uint32_t)ulen;
        uint16_t seed = (uint16_t)~fin16(ps);
        return (uh[6] << 8 | uh[7]) == seed;
    }
    return -1;
}

static int sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int sh(const char *fmt, ...)
{
    char cmd[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof(cmd), fmt, ap);
    va_end(ap);
    return system(cmd);
}

typedef struct {
    ep_t client, peer, server, relay;
} vworld_t;

static vworld_t vworld(int family)
{
    vworld_t w;
    const char *a = family == 4 ? "198.18.0.1" : "2001:db8::1";
    w.server = ep(family, a, 3478);
    w.relay = ep(family, a, 50000);
    w.client = ep(family, family == 4 ? "198.18.0.2" : "2001:db8::2", 40000);
    w.peer = ep(family, family == 4 ? "198.18.0.3" : "2001:db8::3", 60000);
    return w;
}

/* The far namespace: client and peer on kpb; ChannelData both ways, 0..1400 bytes. Returns the
 * number of failures. */
static int veth_far(int family, int go)
{
    vworld_t w = vworld(family);
    char c;
    if (read(go, &c, 1) != 1)
        return 100;
    if (family == 4)
        sh("ip link set lo up && ip addr add 198.18.0.2/24 dev kpb && "
           "ip addr add 198.18.0.3/24 dev kpb && ip link set kpb up");
    else
        sh("ip link set lo up && ip addr add 2001:db8::2/64 dev kpb nodad && "
           "ip addr add 2001:db8::3/64 dev kpb nodad && ip link set kpb up");
    int cfd = bound_socket(&w.client), pfd = bound_socket(&w.peer);
    int cap = socket(AF_PACKET, SOCK_RAW, htons(ETH_P_ALL));
    int one = 1;
    setsockopt(cap, SOL_PACKET, PACKET_AUXDATA, &one, sizeof(one));
    struct sockaddr_ll sll;
    memset(&sll, 0, sizeof(sll));
    sll.sll_family = AF_PACKET;
    sll.sll_protocol = htons(ETH_P_ALL);
    sll.sll_ifindex = (int)if_nametoindex("kpb");
    bind(cap, (struct sockaddr *)&sll, sizeof(sll));
    long long err0 = csum_errors();
    int bad = 0;
    uint8_t d[MAXPKT], pl[MAXPKT], got[MAXPKT], want[MAXPKT];
    /* From the sockets (CHECKSUM_PARTIAL), then as frames injected on kpb (full checksums). */
    inject_ifindex = (int)if_nametoindex("kpb");
    inject_fd = -1; /* a packet socket inherited from the parent sends in the parent's namespace */
    for (size_t i = 0; i <= 2 * 1400 + 1 && bad < 6; i++) {
        size_t n = i % 1401;
        int csend = i <= 1400 ? cfd : -1, psend = i <= 1400 ? pfd : -1;
        fill(d, n, (unsigned)n + 21);
        size_t pn = channel_data(pl, 0x4001, d, n, 0);
        ssize_t r = hop2(csend, &w.client, &w.server, pl, pn, pfd, &w.relay, got, sizeof(got));
        int ck = capture_check(cap, &w.peer);
        if (r != (ssize_t)n || memcmp(got, d, n) != 0 || ck != 1) {
            bad++;
            fprintf(stderr, "veth v%d to peer, size %zu: got %zd, checksum %d\n", family, n, r, ck);
        }
        r = hop2(psend, &w.peer, &w.relay, d, n, cfd, &w.server, got, sizeof(got));
        size_t wn = channel_data(want, 0x4001, d, n, 0);
        ck = capture_check(cap, &w.client);
        if (r != (ssize_t)wn || memcmp(got, want, wn) != 0 || ck != 1) {
            bad++;
            fprintf(stderr, "veth v%d to client, size %zu: got %zd, checksum %d\n", family, n, r,
                    ck);
        }
    }
    if (csum_errors() != err0) {
        fprintf(stderr, "veth v%d: checksum errors in the far namespace\n", family);
        bad++;
    }
    /* Both kinds must have been seen for the test to mean what it says. */
    printf("veth v%d: %zu datagrams arrived CHECKSUM_PARTIAL (seed checked), %zu with a full "
           "checksum\n",
           family, seen_partial, seen_full);
    return bad;
}

static void veth(int family)
{
    int go[2];
    CHECK_INT(pipe(go), 0);
    pid_t pid = fork();
    if (pid == 0) {
        close(go[1]);
        if (unshare(CLONE_NEWNET) != 0)
            _exit(101);
        /* The parent sees the new namespace in /proc, moves kpb into it, then says go. */
        _exit(veth_far(family, go[0]) == 0 ? 0 : 1);
    }
    close(go[0]);
    /* The child's unshare is quick; wait until its namespace differs from ours. */
    char mine[64] = "", theirs[64] = "", path[64];
    ssize_t ml = readlink("/proc/self/ns/net", mine, sizeof(mine) - 1);
    snprintf(path, sizeof(path), "/proc/%d/ns/net", (int)pid);
    for (int i = 0; i < 200; i++) {
        memset(theirs, 0, sizeof(theirs));
        if (readlink(path, theirs, sizeof(theirs) - 1) > 0 && ml > 0 && strcmp(mine, theirs) != 0)
            break;
        struct timespec ts = {0, 10000000};
        nanosleep(&ts, NULL);
    }
    vworld_t w = vworld(family);
    CHECK_INT(sh("ip link add kpa type veth peer name kpb netns %d", (int)pid), 0);
    CHECK_INT(family == 4 ? sh("ip addr add 198.18.0.1/24 dev kpa && ip link set kpa up")
                          : sh("ip addr add 2001:db8::1/64 dev kpa nodad && ip link set kpa up"),
              0);
    write_file(family == 4 ? "/proc/sys/net/ipv4/conf/kpa/forwarding"
                           : "/proc/sys/net/ipv6/conf/kpa/forwarding",
               "1");
    int ifi = (int)if_nametoindex("kpa");
    DECLARE_LIBBPF_OPTS(bpf_tc_hook, hook, .ifindex = ifi, .attach_point = BPF_TC_INGRESS);
    CHECK_INT(bpf_tc_hook_create(&hook), 0);
    DECLARE_LIBBPF_OPTS(bpf_tc_opts, o, .prog_fd = prog_fd, .handle = 1, .priority = KPATH_TC_PRIO);
    CHECK_INT(bpf_tc_attach(&hook, &o), 0);
    clear_maps();
    slot_reset(SLOT, 0);
    uint64_t exp = now_ns() + 60000000000ull;
    c2p_set(&w.client, &w.server, 0x4001, &w.relay, &w.peer, SLOT, exp);
    p2c_set(&w.relay, &w.peer, &w.client, &w.server, 0x4001, SLOT, exp);
    perm_set(SLOT, &w.peer, exp);
    uint64_t f0 = global(KPATH_G_REDIRECT_FAIL), r0 = global(KPATH_G_PASS_ROUTE);
    CHECK_INT(write(go[1], "g", 1), 1);
    int st = 0;
    waitpid(pid, &st, 0);
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    struct kpath_count c = slot_counts(SLOT);
    CHECK_INT(c.to_peer_packets, 2 * 1401);
    CHECK_INT(c.from_peer_packets, 2 * 1401);
    CHECK_INT(global(KPATH_G_REDIRECT_FAIL) - f0, 0);
    CHECK_INT(global(KPATH_G_PASS_ROUTE) - r0, 0);
    close(go[1]);
    sh("ip link del kpa 2>/dev/null");
}

/* Both legs remote: client and peer in another namespace behind a veth, the relay in ours, so
 * every datagram leaves through bpf_redirect_neigh (first) or bpf_redirect. Their sockets make
 * CHECKSUM_PARTIAL skbs, which a veth keeps: the far side's capture checks the seed the program
 * left. Then frames injected with full checksums: the capture checks the checksum in full. */
UNIT_TEST(veth_v4) { veth(4); }
UNIT_TEST(veth_v6) { veth(6); }

/* ---- setup ---- */

static int write_file(const char *path, const char *s)
{
    int fd = open(path, O_WRONLY);
    if (fd < 0)
        return -errno;
    ssize_t n = write(fd, s, strlen(s));
    close(fd);
    return n == (ssize_t)strlen(s) ? 0 : -EIO;
}

static int lo_up(void)
{
    int fd = socket(AF_INET, SOCK_DGRAM, 0);
    if (fd < 0)
        return -errno;
    struct ifreq ifr;
    memset(&ifr, 0, sizeof(ifr));
    snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "lo");
    int rc = ioctl(fd, SIOCGIFFLAGS, &ifr);
    if (rc == 0) {
        ifr.ifr_flags |= IFF_UP;
        rc = ioctl(fd, SIOCSIFFLAGS, &ifr);
    }
    close(fd);
    return rc == 0 ? 0 : -errno;
}

static void skip(const char *why)
{
    printf("test_kpath_prog: SKIP: %s\n", why);
    exit(77);
}

int main(int argc, char **argv)
{
    unit_args(argc, argv);
    if (geteuid() != 0)
        skip("needs root (CAP_BPF, CAP_NET_ADMIN, and unshare for a private network namespace)");
    if (unshare(CLONE_NEWNET) != 0) {
        char why[128];
        snprintf(why, sizeof(why), "unshare(CLONE_NEWNET): %s", strerror(errno));
        skip(why);
    }
    if (lo_up() != 0)
        skip("cannot bring up loopback in the private namespace");
    /* bpf_fib_lookup refuses to route for an interface with forwarding off (docs/KERNEL.md). */
    write_file("/proc/sys/net/ipv4/conf/lo/forwarding", "1");
    write_file("/proc/sys/net/ipv6/conf/lo/forwarding", "1");
    /* Frames injected on lo carry no route (a local socket's do): without these, 127/8 and local
     * sources are martians on input. */
    write_file("/proc/sys/net/ipv4/conf/lo/route_localnet", "1");
    write_file("/proc/sys/net/ipv4/conf/lo/accept_local", "1");
    /* A routed subnet on a veth whose far end answers nothing (wildcard_to_client). */
    if (sh("ip link add kpd type veth peer name kpe && ip link set kpe up && ip link set kpd up "
           "&& ip addr add 198.19.0.1/24 dev kpd && ip addr add 2001:db8:1::1/64 dev kpd nodad") !=
        0)
        skip("cannot create a veth pair (iproute2, CONFIG_VETH)");
    skel = kpath_bpf__open();
    if (!skel)
        skip("cannot open the embedded BPF object");
    int rc = kpath_bpf__load(skel);
    if (rc == -EPERM || rc == -ENOSYS) {
        char why[160];
        snprintf(why, sizeof(why), "the kernel refused to load BPF programs: %s", strerror(-rc));
        skip(why);
    }
    if (rc != 0) {
        /* The verifier's log is above: uturnd could not load it either. */
        fprintf(stderr, "test_kpath_prog: loading the program failed: %s\n", strerror(-rc));
        printf("test_kpath_prog: 1 checks, 1 failed\n");
        return 1;
    }
    prog_fd = bpf_program__fd(skel->progs.uturn_ingress);
    unit_run();
    kpath_bpf__destroy(skel);
    return unit_done("test_kpath_prog");
}
