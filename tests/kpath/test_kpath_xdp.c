/* test_kpath_xdp.c - the kernel fast path's XDP program (server/kpath/kpath_xdp.bpf.h) under
 * BPF_PROG_TEST_RUN, in a private network namespace (kpt_start: root, SKIP otherwise). Parties on
 * kpt's veth kpd (198.19.0.1/24, 2001:db8:1::1/64) with permanent neighbours, so that every route
 * is a resolved forward (KPATH_ROUTE_FWD), the only kind XDP takes. ChannelData both ways, both
 * families, every payload size, compared byte for byte with frames kpt_build makes (its own
 * checksum), MACs from the route; then what XDP must leave to TC unchanged (XDP_PASS): a checksum
 * seed, a corrupt or missing checksum, IP options, fragments, VLAN, extension headers, an expired
 * or missing entry, Send and Data indications, routes that are not a resolved forward; the max-bps
 * bucket; the counters; and the program's cost. */
#include <arpa/inet.h>
#include <errno.h>
#include <net/if.h>
#include <stdint.h>
#include <sys/ioctl.h>
#include <sys/socket.h>

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <linux/bpf.h>

#include "kpt.h"
#include "stun.h"
#include "unit.h"

static int xdp_fd;
static uint8_t kpd_mac[6];
static int kpd_index;
/* The permanent neighbours' MACs: peer, client, server (bench). */
static const uint8_t mac_peer[6] = {0x02, 0x00, 0x00, 0x00, 0x00, 0x02};
static const uint8_t mac_client[6] = {0x02, 0x00, 0x00, 0x00, 0x00, 0x03};
static const uint8_t mac_server[6] = {0x02, 0x00, 0x00, 0x00, 0x00, 0x04};

/* kpt_world()'s parties, on the veth's subnet (kpt_start: kpd) instead of loopback, so that a
 * relay is a forward, the only route XDP takes. */
static kpt_world_t world(int family)
{
    kpt_world_t w;
    if (family == 4) {
        w.client = kpt_ep(4, "198.19.0.3", 40000);
        w.server = kpt_ep(4, "198.19.0.1", 3478);
        w.relay = kpt_ep(4, "198.19.0.1", 50000);
        w.peer = kpt_ep(4, "198.19.0.2", 60000);
        w.max = 1472;
    } else {
        w.client = kpt_ep(6, "2001:db8:1::3", 40000);
        w.server = kpt_ep(6, "2001:db8:1::1", 3478);
        w.relay = kpt_ep(6, "2001:db8:1::1", 50000);
        w.peer = kpt_ep(6, "2001:db8:1::2", 60000);
        w.max = 1452;
    }
    return w;
}

/* One test run of uturn_xdp; ingress 0: the test run's own (loopback). */
static int xrun(const uint8_t *in, size_t n, uint8_t *out, size_t *outn, int ingress)
{
    struct xdp_md ctx;
    memset(&ctx, 0, sizeof(ctx));
    ctx.data_end = (uint32_t)n;
    ctx.ingress_ifindex = (uint32_t)ingress;
    DECLARE_LIBBPF_OPTS(bpf_test_run_opts, o, .data_in = in, .data_size_in = (uint32_t)n,
                        .data_out = out, .data_size_out = KPT_MAXPKT, .repeat = 1);
    if (ingress) {
        o.ctx_in = &ctx;
        o.ctx_size_in = sizeof(ctx);
    }
    int rc = bpf_prog_test_run_opts(xdp_fd, &o);
    CHECK_INT(rc, 0);
    *outn = o.data_size_out;
    return (int)o.retval;
}

/* XDP_PASS with the frame unchanged. */
static void check_pass(const char *what, const uint8_t *in, size_t n)
{
    uint8_t out[KPT_MAXPKT];
    size_t outn = 0;
    int rc = xrun(in, n, out, &outn, 0);
    if (rc != XDP_PASS)
        fprintf(stderr, "%s: expected XDP_PASS, got %d\n", what, rc);
    CHECK_INT(rc, XDP_PASS);
    kpt_check_bytes(what, n, out, outn, in, n);
}

/* kpt_build's frame with the MACs a route out of kpd to `dmac` gives. */
static size_t want_frame(uint8_t *o, const kpt_ep_t *s, const kpt_ep_t *d, const uint8_t *pl,
                         size_t n, const uint8_t *dmac)
{
    size_t len = kpt_build(o, s, d, pl, n, 1);
    memcpy(o, dmac, 6);
    memcpy(o + 6, kpd_mac, 6);
    return len;
}

static uint64_t exp_ns(void) { return kpt_now_ns() + 60000000000ull; }

static void to_peer(int family)
{
    kpt_world_t w = world(family);
    kpt_clear_maps();
    kpt_slot_reset(KPT_SLOT, 0);
    kpt_c2p_set(&w.client, &w.server, 0x4001, &w.relay, &w.peer, KPT_SLOT, exp_ns());
    uint64_t g0 = kpt_global(KPATH_G_CHANNELDATA_IN), b0 = kpt_global(KPATH_G_TO_PEER_BYTES);
    uint64_t x0 = kpt_global(KPATH_G_XDP_RELAYED);
    uint8_t d[KPT_MAXPKT], pl[KPT_MAXPKT], in[KPT_MAXPKT], out[KPT_MAXPKT], want[KPT_MAXPKT];
    uint64_t pkts = 0, bytes = 0;
    for (size_t n = 0; n <= w.max; n++) {
        kpt_fill(d, n, (unsigned)n);
        /* UDP may carry padding after ChannelData (RFC 8656 §12.5): odd sizes get it. */
        size_t pad = (n & 1) ? (4 - (n & 3)) & 3 : 0;
        size_t pn = kpt_channel_data(pl, 0x4001, d, n, pad);
        size_t inn = kpt_build(in, &w.client, &w.server, pl, pn, 0), outn = 0;
        int rc = xrun(in, inn, out, &outn, 0);
        if (rc != XDP_REDIRECT)
            fprintf(stderr, "to_peer v%d size %zu: rc %d\n", family, n, rc);
        CHECK_INT(rc, XDP_REDIRECT);
        size_t wn = want_frame(want, &w.relay, &w.peer, d, n, mac_peer);
        kpt_check_bytes(family == 4 ? "XDP ChannelData v4 to peer" : "XDP ChannelData v6 to peer",
                        n, out, outn, want, wn);
        pkts++;
        bytes += n;
    }
    struct kpath_count c = kpt_slot_counts(KPT_SLOT);
    CHECK_INT(c.to_peer_packets, pkts);
    CHECK_INT(c.to_peer_bytes, bytes);
    CHECK_INT(c.from_peer_packets, 0);
    CHECK_INT(kpt_global(KPATH_G_CHANNELDATA_IN) - g0, pkts);
    CHECK_INT(kpt_global(KPATH_G_TO_PEER_BYTES) - b0, bytes);
    CHECK_INT(kpt_global(KPATH_G_XDP_RELAYED) - x0, pkts);
    struct kpath_c2p_val v;
    CHECK_INT(kpt_c2p_get(&w.client, &w.server, 0x4001, &v), 0);
    CHECK_INT(v.route.kind, KPATH_ROUTE_FWD);
    CHECK_INT(v.route.ifindex, kpd_index);
}

UNIT_TEST(channel_to_peer_v4) { to_peer(4); }
UNIT_TEST(channel_to_peer_v6) { to_peer(6); }

static void to_client(int family)
{
    kpt_world_t w = world(family);
    kpt_clear_maps();
    kpt_slot_reset(KPT_SLOT, 0);
    uint64_t exp = exp_ns();
    kpt_p2c_set(&w.relay, NULL, &w.client, &w.server, 0, KPT_SLOT, exp);
    kpt_p2c_set(&w.relay, &w.peer, &w.client, &w.server, 0x4abc, KPT_SLOT, exp);
    kpt_perm_set(KPT_SLOT, &w.peer, exp);
    uint64_t g0 = kpt_global(KPATH_G_CHANNELDATA_OUT), b0 = kpt_global(KPATH_G_FROM_PEER_BYTES);
    uint64_t x0 = kpt_global(KPATH_G_XDP_RELAYED);
    uint8_t d[KPT_MAXPKT], pl[KPT_MAXPKT], in[KPT_MAXPKT], out[KPT_MAXPKT], want[KPT_MAXPKT];
    uint64_t pkts = 0, bytes = 0;
    for (size_t n = 0; n + 4 <= w.max; n++) {
        kpt_fill(d, n, (unsigned)n + 9);
        size_t inn = kpt_build(in, &w.peer, &w.relay, d, n, 0), outn = 0;
        int rc = xrun(in, inn, out, &outn, 0);
        if (rc != XDP_REDIRECT)
            fprintf(stderr, "to_client v%d size %zu: rc %d\n", family, n, rc);
        CHECK_INT(rc, XDP_REDIRECT);
        size_t pn = kpt_channel_data(pl, 0x4abc, d, n, 0);
        size_t wn = want_frame(want, &w.server, &w.client, pl, pn, mac_client);
        kpt_check_bytes(family == 4 ? "XDP ChannelData v4 to client"
                                    : "XDP ChannelData v6 to client",
                        n, out, outn, want, wn);
        pkts++;
        bytes += n;
    }
    struct kpath_count c = kpt_slot_counts(KPT_SLOT);
    CHECK_INT(c.from_peer_packets, pkts);
    CHECK_INT(c.from_peer_bytes, bytes);
    CHECK_INT(c.to_peer_packets, 0);
    CHECK_INT(kpt_global(KPATH_G_CHANNELDATA_OUT) - g0, pkts);
    CHECK_INT(kpt_global(KPATH_G_FROM_PEER_BYTES) - b0, bytes);
    CHECK_INT(kpt_global(KPATH_G_XDP_RELAYED) - x0, pkts);
}

UNIT_TEST(channel_to_client_v4) { to_client(4); }
UNIT_TEST(channel_to_client_v6) { to_client(6); }

/* Send indications (RFC 8656 §11.2), the attributes in either order: the data leaves for the peer
 * the Send names, every size. */
static void send_to_peer(int family)
{
    kpt_world_t w = world(family);
    kpt_clear_maps();
    kpt_slot_reset(KPT_SLOT, 0);
    uint64_t exp = exp_ns();
    kpt_c2p_set(&w.client, &w.server, 0, &w.relay, NULL, KPT_SLOT, exp);
    kpt_perm_set(KPT_SLOT, &w.peer, exp);
    uint64_t g0 = kpt_global(KPATH_G_SEND_IN), x0 = kpt_global(KPATH_G_XDP_RELAYED);
    uint8_t d[KPT_MAXPKT], pl[KPT_MAXPKT], in[KPT_MAXPKT], out[KPT_MAXPKT], want[KPT_MAXPKT];
    uint64_t pkts = 0, bytes = 0;
    size_t hdr = family == 4 ? 36 : 48;
    for (size_t n = 0; n + hdr + 3 <= w.max; n++) {
        kpt_fill(d, n, (unsigned)n + 3);
        size_t pn = kpt_send_ind(pl, &w.peer, d, n, (int)(n % 3 == 1), 0, 0);
        size_t inn = kpt_build(in, &w.client, &w.server, pl, pn, 0), outn = 0;
        int rc = xrun(in, inn, out, &outn, 0);
        if (rc != XDP_REDIRECT)
            fprintf(stderr, "send_to_peer v%d size %zu: rc %d\n", family, n, rc);
        CHECK_INT(rc, XDP_REDIRECT);
        size_t wn = want_frame(want, &w.relay, &w.peer, d, n, mac_peer);
        kpt_check_bytes("XDP Send indication to peer", n, out, outn, want, wn);
        pkts++;
        bytes += n;
    }
    struct kpath_count c = kpt_slot_counts(KPT_SLOT);
    CHECK_INT(c.to_peer_packets, pkts);
    CHECK_INT(c.to_peer_bytes, bytes);
    CHECK_INT(kpt_global(KPATH_G_SEND_IN) - g0, pkts);
    CHECK_INT(kpt_global(KPATH_G_XDP_RELAYED) - x0, pkts);
}

UNIT_TEST(send_to_peer_v4) { send_to_peer(4); }
UNIT_TEST(send_to_peer_v6) { send_to_peer(6); }

/* Data indications (RFC 8656 §11.4): a peer with a permission and no channel; the bytes
 * send_data_indication builds (common/stun_build.c, through kpt_data_ind) but the random
 * transaction id, taken from the output. Every size, so every padding. */
static void data_indication(int family)
{
    kpt_world_t w = world(family);
    kpt_clear_maps();
    kpt_slot_reset(KPT_SLOT, 0);
    uint64_t exp = exp_ns();
    kpt_p2c_set(&w.relay, NULL, &w.client, &w.server, 0, KPT_SLOT, exp);
    kpt_perm_set(KPT_SLOT, &w.peer, exp);
    uint64_t g0 = kpt_global(KPATH_G_DATA_OUT), x0 = kpt_global(KPATH_G_XDP_RELAYED);
    uint8_t d[KPT_MAXPKT], pl[KPT_MAXPKT], in[KPT_MAXPKT], out[KPT_MAXPKT], want[KPT_MAXPKT];
    uint64_t pkts = 0, bytes = 0;
    size_t hdr = family == 4 ? 36 : 48, tid = KPT_ETH + (family == 4 ? 20 : 40) + 8 + 8;
    for (size_t n = 0; n + hdr + 3 <= w.max; n++) {
        kpt_fill(d, n, (unsigned)n + 9);
        size_t inn = kpt_build(in, &w.peer, &w.relay, d, n, 0), outn = 0;
        int rc = xrun(in, inn, out, &outn, 0);
        if (rc != XDP_REDIRECT)
            fprintf(stderr, "data_indication v%d size %zu: rc %d\n", family, n, rc);
        CHECK_INT(rc, XDP_REDIRECT);
        size_t pn = kpt_data_ind(pl, &w.peer, d, n, outn >= tid + 12 ? out + tid : d);
        size_t wn = want_frame(want, &w.server, &w.client, pl, pn, mac_client);
        kpt_check_bytes("XDP Data indication to client", n, out, outn, want, wn);
        pkts++;
        bytes += n;
    }
    struct kpath_count c = kpt_slot_counts(KPT_SLOT);
    CHECK_INT(c.from_peer_packets, pkts);
    CHECK_INT(c.from_peer_bytes, bytes);
    CHECK_INT(kpt_global(KPATH_G_DATA_OUT) - g0, pkts);
    CHECK_INT(kpt_global(KPATH_G_XDP_RELAYED) - x0, pkts);
}

UNIT_TEST(data_indication_v4) { data_indication(4); }
UNIT_TEST(data_indication_v6) { data_indication(6); }

/* Out of the interface it came in on: XDP_TX, same bytes. An Ethernet trailer (a short frame
 * padded to 60 bytes by a NIC) is trimmed. */
UNIT_TEST(tx_and_trailer)
{
    kpt_world_t w = world(4);
    kpt_clear_maps();
    kpt_slot_reset(KPT_SLOT, 0);
    kpt_c2p_set(&w.client, &w.server, 0x4001, &w.relay, &w.peer, KPT_SLOT, exp_ns());
    uint8_t d[8], pl[64], in[KPT_MAXPKT], out[KPT_MAXPKT], want[KPT_MAXPKT];
    kpt_fill(d, sizeof(d), 3);
    size_t pn = kpt_channel_data(pl, 0x4001, d, sizeof(d), 0);
    size_t inn = kpt_build(in, &w.client, &w.server, pl, pn, 0), outn;
    size_t wn = want_frame(want, &w.relay, &w.peer, d, sizeof(d), mac_peer);
    CHECK_INT(xrun(in, inn, out, &outn, kpd_index), XDP_TX);
    kpt_check_bytes("XDP_TX", sizeof(d), out, outn, want, wn);
    memset(in + inn, 0, 60 - inn); /* 46 bytes: padded to 60 */
    CHECK_INT(xrun(in, 60, out, &outn, 0), XDP_REDIRECT);
    kpt_check_bytes("trailer trimmed", sizeof(d), out, outn, want, wn);
}

/* What the checksum check leaves to TC: a CHECKSUM_PARTIAL seed (the pseudo header's sum, as a
 * local sender's frame holds it), a corrupt datagram, none (IPv4 0), 0 over IPv6. Counted in
 * KPATH_G_XDP_PASSED_CSUM. TC itself would relay the seed and the corrupt one (it updates the
 * checksum incrementally), so the receiver decides as without XDP. */
static void checksums(int family)
{
    kpt_world_t w = world(family);
    kpt_clear_maps();
    kpt_slot_reset(KPT_SLOT, 0);
    uint64_t exp = exp_ns();
    kpt_c2p_set(&w.client, &w.server, 0x4001, &w.relay, &w.peer, KPT_SLOT, exp);
    kpt_p2c_set(&w.relay, &w.peer, &w.client, &w.server, 0x4abc, KPT_SLOT, exp);
    kpt_perm_set(KPT_SLOT, &w.peer, exp);
    size_t iphl = family == 4 ? 20 : 40, ck = KPT_ETH + iphl + 6;
    uint8_t d[300], pl[KPT_MAXPKT], in[KPT_MAXPKT];
    kpt_fill(d, sizeof(d), 11);
    uint64_t c0 = kpt_global(KPATH_G_XDP_PASSED_CSUM), x0 = kpt_global(KPATH_G_XDP_RELAYED);
    int passed = 0;
    for (int dir = 0; dir < 2; dir++) {
        for (size_t n = 1; n < sizeof(d); n += 37) {
            size_t pn = dir ? n : kpt_channel_data(pl, 0x4001, d, n, 0);
            const kpt_ep_t *s = dir ? &w.peer : &w.client, *t = dir ? &w.relay : &w.server;
            size_t inn = kpt_build(in, s, t, dir ? d : pl, pn, 0);
            /* The seed: the pseudo header's sum, not complemented (CHECKSUM_PARTIAL). */
            uint32_t ps = kpt_sum16(s->ip, family == 4 ? 4 : 16, 0) +
                          kpt_sum16(t->ip, family == 4 ? 4 : 16, 0) + 17 + (uint32_t)(8 + pn);
            uint16_t seed = (uint16_t)~kpt_fin16(ps);
            in[ck] = (uint8_t)(seed >> 8);
            in[ck + 1] = (uint8_t)seed;
            check_pass("checksum seed", in, inn);
            kpt_build(in, s, t, dir ? d : pl, pn, 0);
            in[inn - 1] ^= 0x40; /* corrupt */
            check_pass("corrupt datagram", in, inn);
            kpt_build(in, s, t, dir ? d : pl, pn, 0);
            in[ck] = in[ck + 1] = 0;
            check_pass(family == 4 ? "no checksum (IPv4)" : "zero checksum (IPv6)", in, inn);
            passed += 3;
        }
    }
    /* A Send indication whose framing is corrupt where only the checksum can tell: a byte of
     * the DATA padding (after the data, both attribute orders), the transaction id (IPv4: it is
     * not part of the peer's address). */
    kpt_c2p_set(&w.client, &w.server, 0, &w.relay, NULL, KPT_SLOT, exp);
    for (int first = 0; first < 2; first++) {
        size_t pn = kpt_send_ind(pl, &w.peer, d, 101, first, 0, 0);
        size_t pos = first ? 20 + 4 + 101 : 20 + (family == 4 ? 12 : 24) + 4 + 101;
        size_t inn = kpt_build(in, &w.client, &w.server, pl, pn, 0);
        in[KPT_ETH + iphl + 8 + pos] ^= 0x11;
        check_pass("Send, corrupt padding", in, inn);
        passed++;
        if (family == 4) {
            inn = kpt_build(in, &w.client, &w.server, pl, pn, 0);
            in[KPT_ETH + iphl + 8 + 9] ^= 0x11;
            check_pass("Send, corrupt transaction id", in, inn);
            passed++;
        }
    }
    CHECK_INT(kpt_global(KPATH_G_XDP_PASSED_CSUM) - c0, passed);
    CHECK_INT(kpt_global(KPATH_G_XDP_RELAYED) - x0, 0);
    struct kpath_count c = kpt_slot_counts(KPT_SLOT);
    CHECK_INT(c.to_peer_packets + c.from_peer_packets, 0);
}

UNIT_TEST(checksums_v4) { checksums(4); }
UNIT_TEST(checksums_v6) { checksums(6); }

/* Shapes and entries XDP leaves to TC, unchanged and without counting (TC counts what it passes
 * on to user space, so each datagram is counted once). */
static void passes(int family)
{
    kpt_world_t w = world(family);
    kpt_clear_maps();
    kpt_slot_reset(KPT_SLOT, 0);
    uint64_t exp = exp_ns(), past = kpt_now_ns() - 1;
    uint8_t d[200], pl[KPT_MAXPKT], in[KPT_MAXPKT], x[KPT_MAXPKT];
    kpt_fill(d, sizeof(d), 1);
    size_t pn, inn;
    uint64_t g[KPATH_G_N];
    for (uint32_t i = 0; i < KPATH_G_N; i++)
        g[i] = kpt_global(i);

    pn = kpt_channel_data(pl, 0x4001, d, 100, 0);
    inn = kpt_build(in, &w.client, &w.server, pl, pn, 0);
    check_pass("unbound channel", in, inn);
    kpt_c2p_set(&w.client, &w.server, 0x4001, &w.relay, &w.peer, KPT_SLOT, past);
    check_pass("expired channel", in, inn);
    kpt_c2p_set(&w.client, &w.server, 0x4001, &w.relay, &w.peer, KPT_SLOT, exp);
    pn = kpt_channel_data(pl, 0x4001, d, 100, 8);
    inn = kpt_build(in, &w.client, &w.server, pl, pn, 0);
    check_pass("long trailer", in, inn);
    pn = kpt_channel_data(pl, 0x4001, d, 100, 0);
    inn = kpt_build(in, &w.client, &w.server, pl, pn, 0);

    /* IP shapes, with an entry that would match. */
    if (family == 4) {
        memcpy(x, in, inn);
        x[KPT_ETH + 6] = 0x20; /* MF */
        x[KPT_ETH + 10] = x[KPT_ETH + 11] = 0;
        uint16_t c = kpt_fin16(kpt_sum16(x + KPT_ETH, 20, 0));
        x[KPT_ETH + 10] = (uint8_t)(c >> 8);
        x[KPT_ETH + 11] = (uint8_t)c;
        check_pass("fragment", x, inn);
        memcpy(x, in, inn);
        x[KPT_ETH + 11] ^= 1; /* IP header checksum */
        check_pass("bad IP header checksum", x, inn);
        memcpy(x, in, KPT_ETH + 20);
        x[KPT_ETH] = 0x46;
        memset(x + KPT_ETH + 20, 1, 4);
        memcpy(x + KPT_ETH + 24, in + KPT_ETH + 20, inn - KPT_ETH - 20);
        x[KPT_ETH + 3] += 4;
        check_pass("IP options", x, inn + 4);
    } else {
        memcpy(x, in, KPT_ETH + 40);
        x[KPT_ETH + 6] = 0; /* hop-by-hop */
        uint8_t hbh[8] = {17, 0, 1, 4, 0, 0, 0, 0};
        memcpy(x + KPT_ETH + 40, hbh, 8);
        memcpy(x + KPT_ETH + 48, in + KPT_ETH + 40, inn - KPT_ETH - 40);
        x[KPT_ETH + 5] += 8;
        check_pass("extension header", x, inn + 8);
    }
    /* An 802.1Q tag in the frame. */
    memcpy(x, in, 12);
    x[12] = 0x81;
    x[13] = 0x00;
    x[14] = 0;
    x[15] = 5;
    memcpy(x + 16, in + 12, inn - 12);
    check_pass("VLAN tag", x, inn + 4);
    memcpy(x, in, inn);
    x[KPT_ETH + (family == 4 ? 9 : 6)] = 6;
    check_pass("TCP", x, inn);
    check_pass("truncated frame", in, inn - 1);

    /* Send indications: no permission, an expired one, anything but XOR-PEER-ADDRESS and DATA
     * once each (user space checks FINGERPRINT, and other attributes could change what it does),
     * a bad length, port 0. */
    kpt_c2p_set(&w.client, &w.server, 0, &w.relay, NULL, KPT_SLOT, exp);
    pn = kpt_send_ind(pl, &w.peer, d, 100, 0, 0, 0);
    inn = kpt_build(in, &w.client, &w.server, pl, pn, 0);
    check_pass("Send without permission", in, inn);
    kpt_perm_set(KPT_SLOT, &w.peer, past);
    check_pass("Send with an expired permission", in, inn);
    kpt_perm_set(KPT_SLOT, &w.peer, exp);
    pn = kpt_send_ind(pl, &w.peer, d, 100, 0, 0x8030, 0);
    inn = kpt_build(in, &w.client, &w.server, pl, pn, 0);
    check_pass("Send with an unknown attribute", in, inn);
    pn = kpt_send_ind(pl, &w.peer, d, 100, 0, 0, 1);
    inn = kpt_build(in, &w.client, &w.server, pl, pn, 0);
    check_pass("Send with FINGERPRINT", in, inn);
    pn = kpt_send_ind(pl, &w.peer, d, 100, 0, STUN_ATTR_DATA, 0);
    inn = kpt_build(in, &w.client, &w.server, pl, pn, 0);
    check_pass("Send with two DATA", in, inn);
    pn = kpt_send_ind(pl, &w.peer, d, 100, 0, 0, 0);
    pl[3] ^= 4;
    inn = kpt_build(in, &w.client, &w.server, pl, pn, 0);
    check_pass("Send with a bad length", in, inn);
    kpt_ep_t zero_port = w.peer;
    zero_port.port = 0;
    kpt_perm_set(KPT_SLOT, &zero_port, exp);
    pn = kpt_send_ind(pl, &zero_port, d, 100, 0, 0, 0);
    inn = kpt_build(in, &w.client, &w.server, pl, pn, 0);
    check_pass("Send to port 0", in, inn);
    kpt_c2p_set(&w.client, &w.server, 0, &w.relay, NULL, KPT_SLOT, past);
    pn = kpt_send_ind(pl, &w.peer, d, 100, 0, 0, 0);
    inn = kpt_build(in, &w.client, &w.server, pl, pn, 0);
    check_pass("Send, expired allocation", in, inn);

    /* Peer side: the allocation entry without a permission, expired, an expired channel. */
    kpt_clear_maps();
    inn = kpt_build(in, &w.peer, &w.relay, d, 100, 0);
    kpt_p2c_set(&w.relay, NULL, &w.client, &w.server, 0, KPT_SLOT, exp);
    check_pass("peer without permission", in, inn);
    kpt_perm_set(KPT_SLOT, &w.peer, exp);
    kpt_p2c_set(&w.relay, NULL, &w.client, &w.server, 0, KPT_SLOT, past);
    check_pass("expired allocation", in, inn);
    kpt_clear_maps();
    kpt_p2c_set(&w.relay, &w.peer, &w.client, &w.server, 0x4abc, KPT_SLOT, exp);
    check_pass("channel without permission", in, inn);
    kpt_perm_set(KPT_SLOT, &w.peer, past);
    check_pass("channel, expired permission", in, inn);
    kpt_perm_set(KPT_SLOT, &w.peer, exp);
    kpt_p2c_set(&w.relay, &w.peer, &w.client, &w.server, 0x4abc, KPT_SLOT, past);
    check_pass("expired channel to client", in, inn);
    /* Over the 2048 bytes of data the programs relay. */
    {
        kpt_p2c_set(&w.relay, &w.peer, &w.client, &w.server, 0x4abc, KPT_SLOT, exp);
        static uint8_t big[2100], bigin[2300];
        kpt_fill(big, sizeof(big), 8);
        size_t bin = kpt_build(bigin, &w.peer, &w.relay, big, sizeof(big), 0);
        DECLARE_LIBBPF_OPTS(bpf_test_run_opts, t, .data_in = bigin, .data_size_in = (uint32_t)bin,
                            .repeat = 1);
        CHECK_INT(bpf_prog_test_run_opts(xdp_fd, &t), 0);
        CHECK_INT((int)t.retval, XDP_PASS);
    }
    for (uint32_t i = 0; i < KPATH_G_N; i++)
        if (kpt_global(i) != g[i])
            fprintf(stderr, "passes v%d: kp_global[%u] moved by %llu\n", family, i,
                    (unsigned long long)(kpt_global(i) - g[i]));
    for (uint32_t i = 0; i < KPATH_G_N; i++)
        CHECK_INT(kpt_global(i) - g[i], 0);
    struct kpath_count c = kpt_slot_counts(KPT_SLOT);
    CHECK_INT(c.to_peer_packets + c.from_peer_packets + c.drop_bps, 0);
}

UNIT_TEST(passes_v4) { passes(4); }
UNIT_TEST(passes_v6) { passes(6); }

/* Routes XDP does not take, each left to TC unchanged: a local destination (TC delivers it on
 * loopback or tail-calls itself relay to relay), an unresolved neighbour (TC's
 * bpf_redirect_neigh), an unreachable route, and a datagram over the route's MTU. The cache keeps
 * what the lookup found, as TC's would. */
UNIT_TEST(routes)
{
    kpt_world_t w = world(4);
    kpt_ep_t local = kpt_ep(4, "127.0.0.3", 60000), unresolved = kpt_ep(4, "198.19.0.9", 60000);
    kpt_ep_t nowhere = kpt_ep(4, "198.18.99.9", 60000), small = kpt_ep(4, "198.19.0.77", 60000);
    CHECK_INT(kpt_sh("ip route add 198.19.0.77/32 dev kpd mtu lock 600 && "
                     "ip route add unreachable 198.18.99.0/24 && "
                     "ip neigh replace 198.19.0.77 lladdr 02:00:00:00:00:77 dev kpd nud permanent"),
              0);
    kpt_clear_maps();
    kpt_slot_reset(KPT_SLOT, 0);
    uint64_t exp = exp_ns();
    kpt_c2p_set(&w.client, &w.server, 0x4001, &w.relay, &local, KPT_SLOT, exp);
    kpt_c2p_set(&w.client, &w.server, 0x4002, &w.relay, &unresolved, KPT_SLOT, exp);
    kpt_c2p_set(&w.client, &w.server, 0x4003, &w.relay, &nowhere, KPT_SLOT, exp);
    kpt_c2p_set(&w.client, &w.server, 0x4004, &w.relay, &small, KPT_SLOT, exp);
    uint8_t d[700], pl[KPT_MAXPKT], in[KPT_MAXPKT], out[KPT_MAXPKT];
    kpt_fill(d, sizeof(d), 4);
    const uint8_t kinds[] = {KPATH_ROUTE_LOCAL, KPATH_ROUTE_NEIGH, KPATH_ROUTE_PASS};
    for (uint16_t ch = 0x4001; ch <= 0x4003; ch++) {
        size_t pn = kpt_channel_data(pl, ch, d, 100, 0);
        size_t inn = kpt_build(in, &w.client, &w.server, pl, pn, 0);
        check_pass("route XDP does not take", in, inn);
        check_pass("route XDP does not take, cached", in, inn);
        struct kpath_c2p_val v;
        CHECK_INT(kpt_c2p_get(&w.client, &w.server, ch, &v), 0);
        CHECK_INT(v.route.kind, kinds[ch - 0x4001]);
        CHECK(v.route.until_ns > kpt_now_ns());
    }
    /* 572 B of payload: 600 B as IPv4; 573: one too many; the cache keeps the MTU. */
    size_t sizes[] = {572, 573, 100, 700, 572};
    int fits[] = {1, 0, 1, 0, 1};
    for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
        size_t pn = kpt_channel_data(pl, 0x4004, d, sizes[i], 0);
        size_t inn = kpt_build(in, &w.client, &w.server, pl, pn, 0), outn;
        if (fits[i]) {
            CHECK_INT(xrun(in, inn, out, &outn, 0), XDP_REDIRECT);
            CHECK_INT(outn, KPT_ETH + 20 + 8 + sizes[i]);
        } else {
            check_pass("over the route MTU", in, inn);
        }
    }
    struct kpath_c2p_val v;
    CHECK_INT(kpt_c2p_get(&w.client, &w.server, 0x4004, &v), 0);
    CHECK_INT(v.route.mtu, 600);
    CHECK_INT(kpt_slot_counts(KPT_SLOT).to_peer_packets, 3);
    /* Out of an interface without the program (not in kp_xdp_if: a bridge, a VLAN device, a veth
     * left to TC): TC's, since a redirect there would drop the frame; out of the one it came in
     * on: XDP_TX all the same. */
    uint32_t key = (uint32_t)kpd_index;
    int mfd = bpf_map__fd(kpt_skel->maps.kp_xdp_if);
    CHECK_INT(bpf_map_delete_elem(mfd, &key), 0);
    size_t pn = kpt_channel_data(pl, 0x4004, d, 100, 0);
    size_t inn = kpt_build(in, &w.client, &w.server, pl, pn, 0), outn;
    check_pass("egress without XDP", in, inn);
    CHECK_INT(xrun(in, inn, out, &outn, kpd_index), XDP_TX);
    uint32_t one = 1;
    CHECK_INT(bpf_map_update_elem(mfd, &key, &one, BPF_ANY), 0);
    CHECK_INT(xrun(in, inn, out, &outn, 0), XDP_REDIRECT);
    kpt_sh("ip route del 198.19.0.77/32 dev kpd; ip route del unreachable 198.18.99.0/24");
}

/* max-bps: bps 2500 and 1000-byte payloads: two relayed, the third dropped and counted. */
UNIT_TEST(bucket)
{
    kpt_world_t w = world(6);
    kpt_clear_maps();
    kpt_slot_reset(KPT_SLOT, 2500);
    uint64_t exp = exp_ns();
    kpt_p2c_set(&w.relay, &w.peer, &w.client, &w.server, 0x4abc, KPT_SLOT, exp);
    kpt_perm_set(KPT_SLOT, &w.peer, exp);
    uint64_t g0 = kpt_global(KPATH_G_DROP_BPS);
    uint8_t d[1000], in[KPT_MAXPKT], out[KPT_MAXPKT];
    kpt_fill(d, sizeof(d), 2);
    size_t inn = kpt_build(in, &w.peer, &w.relay, d, sizeof(d), 0), outn;
    CHECK_INT(xrun(in, inn, out, &outn, 0), XDP_REDIRECT);
    CHECK_INT(xrun(in, inn, out, &outn, 0), XDP_REDIRECT);
    CHECK_INT(xrun(in, inn, out, &outn, 0), XDP_DROP);
    struct kpath_count c = kpt_slot_counts(KPT_SLOT);
    CHECK_INT(c.from_peer_packets, 2);
    CHECK_INT(c.from_peer_bytes, 2000);
    CHECK_INT(c.drop_bps, 1);
    CHECK_INT(kpt_global(KPATH_G_DROP_BPS) - g0, 1);
}

/* A wildcard listener: the source towards the client is the route's (BPF_FIB_LOOKUP_SRC). */
UNIT_TEST(wildcard_listener)
{
    kpt_world_t w = world(4);
    kpt_ep_t any = w.server;
    memset(any.ip, 0, 16);
    kpt_clear_maps();
    kpt_slot_reset(KPT_SLOT, 0);
    uint64_t exp = exp_ns();
    kpt_p2c_set(&w.relay, &w.peer, &w.client, &any, 0x4abc, KPT_SLOT, exp);
    kpt_perm_set(KPT_SLOT, &w.peer, exp);
    uint8_t d[77], pl[KPT_MAXPKT], in[KPT_MAXPKT], out[KPT_MAXPKT], want[KPT_MAXPKT];
    kpt_fill(d, sizeof(d), 9);
    size_t inn = kpt_build(in, &w.peer, &w.relay, d, sizeof(d), 0), outn;
    int rc = xrun(in, inn, out, &outn, 0);
    if (rc == XDP_PASS) {
        printf("wildcard_listener: passed (a kernel before 6.8 has no BPF_FIB_LOOKUP_SRC)\n");
        return;
    }
    CHECK_INT(rc, XDP_REDIRECT);
    size_t pn = kpt_channel_data(pl, 0x4abc, d, sizeof(d), 0);
    size_t wn = want_frame(want, &w.server, &w.client, pl, pn, mac_client);
    kpt_check_bytes("wildcard listener", sizeof(d), out, outn, want, wn);
}

/* The program's cost under BPF_PROG_TEST_RUN (repeat: KPATH_BENCH_REPEAT, default 1000), as
 * test_kpath_prog's bench: one frame kept across repeats, ChannelData stripped to the peer, then
 * given back its header towards where it came from (every party a resolved neighbour on kpd, so
 * both hops are XDP's). Checksum check, route cache, bucket and counters included. */
static void bench(size_t n)
{
    kpt_ep_t client = kpt_ep(4, "198.19.0.3", 40000), server = kpt_ep(4, "198.19.0.4", 3478);
    kpt_ep_t relay = kpt_ep(4, "198.19.0.5", 50000), peer = kpt_ep(4, "198.19.0.2", 60000);
    kpt_clear_maps();
    kpt_slot_reset(KPT_SLOT, 0);
    uint64_t exp = kpt_now_ns() + 3600000000000ull;
    kpt_c2p_set(&client, &server, 0x4001, &relay, &peer, KPT_SLOT, exp);
    kpt_p2c_set(&peer, &relay, &server, &client, 0x4001, KPT_SLOT, exp);
    kpt_perm_set(KPT_SLOT, &relay, exp);
    uint8_t d[KPT_MAXPKT], pl[KPT_MAXPKT], in[KPT_MAXPKT], out[KPT_MAXPKT], want[KPT_MAXPKT];
    kpt_fill(d, n, 3);
    size_t pn = kpt_channel_data(pl, 0x4001, d, n, 0);
    size_t inn = kpt_build(in, &client, &server, pl, pn, 0);
    const char *env = getenv("KPATH_BENCH_REPEAT");
    uint32_t repeat = env ? (uint32_t)strtoul(env, NULL, 10) : 1000;
    repeat += repeat & 1;
    DECLARE_LIBBPF_OPTS(bpf_test_run_opts, o, .data_in = in, .data_size_in = (uint32_t)inn,
                        .data_out = out, .data_size_out = KPT_MAXPKT, .repeat = repeat);
    CHECK_INT(bpf_prog_test_run_opts(xdp_fd, &o), 0);
    CHECK_INT(o.retval, XDP_REDIRECT);
    size_t wn = want_frame(want, &client, &server, pl, pn, mac_server);
    kpt_check_bytes("XDP ping-pong", n, out, o.data_size_out, want, wn);
    struct kpath_count c = kpt_slot_counts(KPT_SLOT);
    CHECK_INT(c.to_peer_packets, repeat / 2);
    CHECK_INT(c.from_peer_packets, repeat / 2);
    printf("bench: XDP %zu B ChannelData, %u runs: %u ns per run\n", n, repeat, o.duration);
}

UNIT_TEST(bench_test_run)
{
    struct bpf_prog_info info;
    uint32_t len = sizeof(info);
    memset(&info, 0, sizeof(info));
    CHECK_INT(bpf_obj_get_info_by_fd(xdp_fd, &info, &len), 0);
    printf("bench: uturn_xdp: %u bytes xlated (%u instructions), %u bytes jited\n",
           info.xlated_prog_len, info.xlated_prog_len / 8, info.jited_prog_len);
    bench(100);
    bench(1000);
}

/* sysfs shows the namespace that mounted it, not ours: ask the interface itself. */
static void read_mac(const char *ifname, uint8_t *mac)
{
    struct ifreq ifr;
    memset(&ifr, 0, sizeof(ifr));
    snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", ifname);
    int fd = socket(AF_INET, SOCK_DGRAM, 0);
    int rc = fd >= 0 ? ioctl(fd, SIOCGIFHWADDR, &ifr) : -1;
    if (fd >= 0)
        close(fd);
    if (rc != 0)
        kpt_skip("cannot read kpd's MAC address (SIOCGIFHWADDR)");
    memcpy(mac, ifr.ifr_hwaddr.sa_data, 6);
}

int main(int argc, char **argv)
{
    unit_args(argc, argv);
    kpt_start();
    xdp_fd = bpf_program__fd(kpt_skel->progs.uturn_xdp);
    kpd_index = (int)if_nametoindex("kpd");
    read_mac("kpd", kpd_mac);
    /* Resolved neighbours: every route out of kpd is a forward XDP takes. */
    if (kpt_sh("ip neigh add 198.19.0.2 lladdr 02:00:00:00:00:02 dev kpd nud permanent && "
               "ip neigh add 198.19.0.3 lladdr 02:00:00:00:00:03 dev kpd nud permanent && "
               "ip neigh add 198.19.0.4 lladdr 02:00:00:00:00:04 dev kpd nud permanent && "
               "ip neigh add 2001:db8:1::2 lladdr 02:00:00:00:00:02 dev kpd nud permanent && "
               "ip neigh add 2001:db8:1::3 lladdr 02:00:00:00:00:03 dev kpd nud permanent") != 0)
        kpt_skip("cannot add neighbours on kpd (iproute2)");
    /* As kpath_xdp.c does where it attaches the program: kpd may be redirected to. */
    uint32_t key = (uint32_t)kpd_index, one = 1;
    if (bpf_map_update_elem(bpf_map__fd(kpt_skel->maps.kp_xdp_if), &key, &one, BPF_ANY) != 0)
        kpt_skip("cannot write kp_xdp_if");
    unit_run();
    kpt_stop();
    return unit_done("test_kpath_xdp");
}
