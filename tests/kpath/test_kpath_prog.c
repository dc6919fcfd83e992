/* test_kpath_prog.c - the kernel fast path's TC program (server/kpath/kpath.bpf.c) against the
 * user-space relay it mirrors (server/turn/dispatch_data.c), under BPF_PROG_TEST_RUN: crafted
 * eth/IP/UDP packets with the maps filled as kpath_abi.h says, the output compared byte for byte
 * with packets built here (addresses, headers, the UDP checksum computed independently) and Data
 * indications with common/stun_build.c. Test-run skbs are CHECKSUM_NONE, so the full incremental
 * checksum is what is checked; test_kpath_net covers CHECKSUM_PARTIAL. Needs root (kpt_start:
 * SKIP otherwise) and runs in a private network namespace. */
#include <arpa/inet.h>
#include <errno.h>
#include <net/if.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <linux/if_ether.h>
#include <linux/if_packet.h>
#include <linux/pkt_cls.h>

#include "kpt.h"
#include "stun.h"
#include "unit.h"

/* ---- BPF_PROG_TEST_RUN ---- */

static void channel_to_peer(int family)
{
    kpt_world_t w = kpt_world(family);
    kpt_clear_maps();
    kpt_slot_reset(KPT_SLOT, 0);
    kpt_c2p_set(&w.client, &w.server, 0x4001, &w.relay, &w.peer, KPT_SLOT,
                kpt_now_ns() + 60000000000ull);
    uint64_t g0 = kpt_global(KPATH_G_CHANNELDATA_IN), b0 = kpt_global(KPATH_G_TO_PEER_BYTES);
    uint8_t d[KPT_MAXPKT], pl[KPT_MAXPKT], in[KPT_MAXPKT], out[KPT_MAXPKT], want[KPT_MAXPKT];
    uint64_t pkts = 0, bytes = 0;
    for (size_t n = 0; n + 4 <= w.max; n++) {
        kpt_fill(d, n, (unsigned)n);
        /* UDP may carry padding after ChannelData (RFC 8656 §12.5): odd sizes get it. */
        size_t pad = (n & 1) ? (4 - (n & 3)) & 3 : 0;
        if (4 + n + pad > w.max)
            pad = 0;
        size_t pn = kpt_channel_data(pl, 0x4001, d, n, pad);
        size_t inn = kpt_build(in, &w.client, &w.server, pl, pn, 0);
        size_t outn = 0;
        int rc = kpt_run(in, inn, out, &outn);
        size_t wn = kpt_build(want, &w.relay, &w.peer, d, n, 1);
        if (rc != TC_ACT_OK)
            fprintf(stderr, "channel_to_peer v%d size %zu: rc %d\n", family, n, rc);
        CHECK_INT(rc, TC_ACT_OK);
        kpt_check_bytes(family == 4 ? "ChannelData v4 to peer" : "ChannelData v6 to peer", n, out,
                        outn, want, wn);
        CHECK(kpt_udp_csum_ok(out, outn));
        pkts++;
        bytes += n;
    }
    struct kpath_count c = kpt_slot_counts(KPT_SLOT);
    CHECK_INT(c.to_peer_packets, pkts);
    CHECK_INT(c.to_peer_bytes, bytes);
    CHECK_INT(c.from_peer_packets, 0);
    CHECK_INT(kpt_global(KPATH_G_CHANNELDATA_IN) - g0, pkts);
    CHECK_INT(kpt_global(KPATH_G_TO_PEER_BYTES) - b0, bytes);
}

/* A local sender's datagram on loopback (CHECKSUM_PARTIAL) carries only the pseudo-header seed in
 * its UDP checksum: kpath.bpf.c local_strip() then moves the headers instead of the payload and
 * sends the IPv4 datagram to a local destination without a checksum (0). Every size, byte for
 * byte but the checksum, which must be 0. A full checksum (channel_to_peer) takes the general
 * path and comes out whole. */
UNIT_TEST(channel_to_local_peer_seed_v4)
{
    kpt_world_t w = kpt_world(4);
    kpt_clear_maps();
    kpt_slot_reset(KPT_SLOT, 0);
    kpt_c2p_set(&w.client, &w.server, 0x4001, &w.relay, &w.peer, KPT_SLOT,
                kpt_now_ns() + 60000000000ull);
    uint8_t d[KPT_MAXPKT], pl[KPT_MAXPKT], in[KPT_MAXPKT], out[KPT_MAXPKT], want[KPT_MAXPKT];
    uint64_t pkts = 0, bytes = 0;
    const size_t udp = KPT_ETH + 20;
    for (size_t n = 0; n + 4 <= w.max; n++) {
        kpt_fill(d, n, (unsigned)n + 5);
        size_t pn = kpt_channel_data(pl, 0x4001, d, n, 0);
        size_t inn = kpt_build(in, &w.client, &w.server, pl, pn, 0), outn = 0;
        /* The seed: the folded pseudo-header sum, not complemented (udp4_hwcsum). */
        uint32_t ps =
            kpt_sum16(w.client.ip, 4, 0) + kpt_sum16(w.server.ip, 4, 0) + 17 + (uint32_t)(8 + pn);
        uint16_t seed = (uint16_t)~kpt_fin16(ps);
        in[udp + 6] = (uint8_t)(seed >> 8);
        in[udp + 7] = (uint8_t)seed;
        CHECK_INT(kpt_run(in, inn, out, &outn), TC_ACT_OK);
        size_t wn = kpt_build(want, &w.relay, &w.peer, d, n, 1);
        want[udp + 6] = want[udp + 7] = 0;
        kpt_check_bytes("ChannelData v4 to a local peer, seed checksum", n, out, outn, want, wn);
        pkts++;
        bytes += n;
    }
    struct kpath_count c = kpt_slot_counts(KPT_SLOT);
    CHECK_INT(c.to_peer_packets, pkts);
    CHECK_INT(c.to_peer_bytes, bytes);
}

UNIT_TEST(channel_to_peer_v4) { channel_to_peer(4); }
UNIT_TEST(channel_to_peer_v6) { channel_to_peer(6); }

static void to_client(int family, int channel)
{
    kpt_world_t w = kpt_world(family);
    kpt_clear_maps();
    kpt_slot_reset(KPT_SLOT, 0);
    uint64_t exp = kpt_now_ns() + 60000000000ull;
    kpt_p2c_set(&w.relay, NULL, &w.client, &w.server, 0, KPT_SLOT, exp);
    if (channel)
        kpt_p2c_set(&w.relay, &w.peer, &w.client, &w.server, 0x4abc, KPT_SLOT, exp);
    kpt_perm_set(KPT_SLOT, &w.peer, exp);
    uint32_t kind = channel ? KPATH_G_CHANNELDATA_OUT : KPATH_G_DATA_OUT;
    uint64_t g0 = kpt_global(kind);
    size_t hdr = channel ? 4 : (family == 4 ? 36 : 48);
    uint8_t d[KPT_MAXPKT], pl[KPT_MAXPKT], in[KPT_MAXPKT], out[KPT_MAXPKT], want[KPT_MAXPKT];
    uint64_t pkts = 0, bytes = 0;
    for (size_t n = 0; n + hdr + 3 <= w.max; n++) {
        kpt_fill(d, n, (unsigned)n + 9);
        size_t inn = kpt_build(in, &w.peer, &w.relay, d, n, 0);
        size_t outn = 0;
        int rc = kpt_run(in, inn, out, &outn);
        if (rc != TC_ACT_OK)
            fprintf(stderr, "to_client v%d ch %d size %zu: rc %d\n", family, channel, n, rc);
        CHECK_INT(rc, TC_ACT_OK);
        size_t pn;
        if (channel) {
            pn = kpt_channel_data(pl, 0x4abc, d, n, 0);
        } else {
            /* The transaction id is random: take it from the output. */
            size_t off = KPT_ETH + (family == 4 ? 20 : 40) + 8 + 8;
            pn = kpt_data_ind(pl, &w.peer, d, n, outn >= off + 12 ? out + off : d);
        }
        size_t wn = kpt_build(want, &w.server, &w.client, pl, pn, 1);
        kpt_check_bytes(channel ? "ChannelData to client" : "Data indication to client", n, out,
                        outn, want, wn);
        CHECK(kpt_udp_csum_ok(out, outn));
        pkts++;
        bytes += n;
    }
    struct kpath_count c = kpt_slot_counts(KPT_SLOT);
    CHECK_INT(c.from_peer_packets, pkts);
    CHECK_INT(c.from_peer_bytes, bytes);
    CHECK_INT(c.to_peer_packets, 0);
    CHECK_INT(kpt_global(kind) - g0, pkts);
}

UNIT_TEST(channel_to_client_v4) { to_client(4, 1); }
UNIT_TEST(channel_to_client_v6) { to_client(6, 1); }
UNIT_TEST(data_indication_v4) { to_client(4, 0); }
UNIT_TEST(data_indication_v6) { to_client(6, 0); }

static void send_to_peer(int family)
{
    kpt_world_t w = kpt_world(family);
    kpt_clear_maps();
    kpt_slot_reset(KPT_SLOT, 0);
    uint64_t exp = kpt_now_ns() + 60000000000ull;
    kpt_c2p_set(&w.client, &w.server, 0, &w.relay, NULL, KPT_SLOT, exp);
    kpt_perm_set(KPT_SLOT, &w.peer, exp);
    uint64_t g0 = kpt_global(KPATH_G_SEND_IN);
    uint8_t d[KPT_MAXPKT], pl[KPT_MAXPKT], in[KPT_MAXPKT], out[KPT_MAXPKT], want[KPT_MAXPKT];
    uint64_t pkts = 0;
    size_t hdr = family == 4 ? 36 : 48;
    for (size_t n = 0; n + hdr + 3 <= w.max; n++) {
        kpt_fill(d, n, (unsigned)n + 3);
        size_t pn = kpt_send_ind(pl, &w.peer, d, n, (int)(n % 3 == 1), 0, 0);
        size_t inn = kpt_build(in, &w.client, &w.server, pl, pn, 0);
        size_t outn = 0;
        int rc = kpt_run(in, inn, out, &outn);
        if (rc != TC_ACT_OK)
            fprintf(stderr, "send_to_peer v%d size %zu: rc %d\n", family, n, rc);
        CHECK_INT(rc, TC_ACT_OK);
        size_t wn = kpt_build(want, &w.relay, &w.peer, d, n, 1);
        kpt_check_bytes("Send indication to peer", n, out, outn, want, wn);
        CHECK(kpt_udp_csum_ok(out, outn));
        pkts++;
    }
    CHECK_INT(kpt_slot_counts(KPT_SLOT).to_peer_packets, pkts);
    CHECK_INT(kpt_global(KPATH_G_SEND_IN) - g0, pkts);
}

UNIT_TEST(send_to_peer_v4) { send_to_peer(4); }
UNIT_TEST(send_to_peer_v6) { send_to_peer(6); }

/* What the program must leave to user space, unchanged. */
/* Write the IPv4 header checksum of frame x (a header of hl bytes) afresh. */
static void ip4_fix(uint8_t *x, size_t hl)
{
    x[KPT_ETH + 10] = x[KPT_ETH + 11] = 0;
    uint16_t c = kpt_fin16(kpt_sum16(x + KPT_ETH, hl, 0));
    x[KPT_ETH + 10] = (uint8_t)(c >> 8);
    x[KPT_ETH + 11] = (uint8_t)c;
}

static void passes(int family)
{
    kpt_world_t w = kpt_world(family);
    kpt_clear_maps();
    kpt_slot_reset(KPT_SLOT, 0);
    uint64_t exp = kpt_now_ns() + 60000000000ull, past = kpt_now_ns() - 1;
    uint8_t d[200], pl[KPT_MAXPKT], in[KPT_MAXPKT];
    kpt_fill(d, sizeof(d), 1);
    size_t pn, inn;

    /* No entry at all: not ours. */
    pn = kpt_channel_data(pl, 0x4001, d, 100, 0);
    inn = kpt_build(in, &w.client, &w.server, pl, pn, 0);
    kpt_check_passed("unbound channel", in, inn);
    inn = kpt_build(in, &w.peer, &w.relay, d, 100, 0);
    kpt_check_passed("peer without allocation", in, inn);

    /* Expired channel: counted, passed. */
    kpt_c2p_set(&w.client, &w.server, 0x4001, &w.relay, &w.peer, KPT_SLOT, past);
    uint64_t e0 = kpt_global(KPATH_G_PASS_EXPIRED);
    pn = kpt_channel_data(pl, 0x4001, d, 100, 0);
    inn = kpt_build(in, &w.client, &w.server, pl, pn, 0);
    kpt_check_passed("expired channel", in, inn);
    CHECK_INT(kpt_global(KPATH_G_PASS_EXPIRED) - e0, 1);
    /* Another channel number on the same 5-tuple is unbound. */
    kpt_c2p_set(&w.client, &w.server, 0x4001, &w.relay, &w.peer, KPT_SLOT, exp);
    pn = kpt_channel_data(pl, 0x4002, d, 100, 0);
    inn = kpt_build(in, &w.client, &w.server, pl, pn, 0);
    kpt_check_passed("other channel", in, inn);
    /* A short ChannelData (length past the datagram): user space drops it as malformed. */
    pn = kpt_channel_data(pl, 0x4001, d, 100, 0);
    inn = kpt_build(in, &w.client, &w.server, pl, pn - 1, 0);
    kpt_check_passed("short ChannelData", in, inn);
    /* More trailing bytes than padding. */
    pn = kpt_channel_data(pl, 0x4001, d, 100, 8);
    inn = kpt_build(in, &w.client, &w.server, pl, pn, 0);
    kpt_check_passed("long trailer", in, inn);

    /* Send: no allocation entry, no permission, expired permission, unknown attribute,
     * FINGERPRINT, two DATA. */
    pn = kpt_send_ind(pl, &w.peer, d, 100, 0, 0, 0);
    inn = kpt_build(in, &w.client, &w.server, pl, pn, 0);
    kpt_check_passed("Send without allocation", in, inn);
    kpt_c2p_set(&w.client, &w.server, 0, &w.relay, NULL, KPT_SLOT, exp);
    kpt_check_passed("Send without permission", in, inn);
    kpt_perm_set(KPT_SLOT, &w.peer, past);
    kpt_check_passed("Send with an expired permission", in, inn);
    kpt_perm_set(KPT_SLOT, &w.peer, exp);
    pn = kpt_send_ind(pl, &w.peer, d, 100, 0, 0x8030, 0); /* an unknown optional attribute */
    inn = kpt_build(in, &w.client, &w.server, pl, pn, 0);
    kpt_check_passed("Send with an unknown attribute", in, inn);
    pn = kpt_send_ind(pl, &w.peer, d, 100, 0, 0x0024, 0); /* PRIORITY: comprehension-required */
    inn = kpt_build(in, &w.client, &w.server, pl, pn, 0);
    kpt_check_passed("Send with another attribute", in, inn);
    pn = kpt_send_ind(pl, &w.peer, d, 100, 0, 0, 1);
    inn = kpt_build(in, &w.client, &w.server, pl, pn, 0);
    kpt_check_passed("Send with FINGERPRINT", in, inn);
    pn = kpt_send_ind(pl, &w.peer, d, 100, 0, STUN_ATTR_DATA, 0);
    inn = kpt_build(in, &w.client, &w.server, pl, pn, 0);
    kpt_check_passed("Send with two DATA", in, inn);
    pn = kpt_send_ind(pl, &w.peer, d, 100, 0, 0, 0);
    pl[3] ^= 4; /* message length no longer matches the datagram */
    inn = kpt_build(in, &w.client, &w.server, pl, pn, 0);
    kpt_check_passed("Send with a bad length", in, inn);
    kpt_ep_t zero_port = w.peer;
    zero_port.port = 0;
    kpt_perm_set(KPT_SLOT, &zero_port, exp);
    pn = kpt_send_ind(pl, &w.peer, d, 100, 0, 0, 0);
    pn = kpt_send_ind(pl, &zero_port, d, 100, 0, 0, 0);
    inn = kpt_build(in, &w.client, &w.server, pl, pn, 0);
    kpt_check_passed("Send to port 0", in, inn);

    /* Peer side: allocation but no permission; expired permission; expired channel. */
    kpt_clear_maps();
    kpt_p2c_set(&w.relay, NULL, &w.client, &w.server, 0, KPT_SLOT, exp);
    inn = kpt_build(in, &w.peer, &w.relay, d, 100, 0);
    kpt_check_passed("peer without permission", in, inn);
    kpt_perm_set(KPT_SLOT, &w.peer, past);
    kpt_check_passed("peer with an expired permission", in, inn);
    kpt_perm_set(KPT_SLOT, &w.peer, exp);
    kpt_p2c_set(&w.relay, &w.peer, &w.client, &w.server, 0x4001, KPT_SLOT, past);
    kpt_check_passed("expired channel to client", in, inn);
    kpt_p2c_set(&w.relay, &w.peer, &w.client, &w.server, 0x4001, KPT_SLOT, exp);
    kpt_p2c_set(&w.relay, NULL, &w.client, &w.server, 0, KPT_SLOT, past);
    kpt_ep_t other = w.peer;
    other.port = 60001; /* no channel: the (expired) allocation entry */
    inn = kpt_build(in, &other, &w.relay, d, 100, 0);
    kpt_check_passed("expired allocation", in, inn);

    /* IP shapes: with an entry that would match. */
    kpt_clear_maps();
    kpt_c2p_set(&w.client, &w.server, 0x4001, &w.relay, &w.peer, KPT_SLOT, exp);
    pn = kpt_channel_data(pl, 0x4001, d, 100, 0);
    inn = kpt_build(in, &w.client, &w.server, pl, pn, 0);
    uint8_t x[KPT_MAXPKT];
    if (family == 4) {
        /* Each shape with a good header checksum, so that the shape is what is refused. */
        memcpy(x, in, inn);
        x[KPT_ETH + 6] = 0x20; /* MF: a first fragment */
        ip4_fix(x, 20);
        kpt_check_passed("fragment", x, inn);
        memcpy(x, in, inn);
        x[KPT_ETH + 7] = 0x10; /* offset */
        ip4_fix(x, 20);
        kpt_check_passed("later fragment", x, inn);
        /* IP options: ihl 6 with a NOP word. */
        memcpy(x, in, KPT_ETH + 20);
        x[KPT_ETH] = 0x46;
        memset(x + KPT_ETH + 20, 1, 4);
        memcpy(x + KPT_ETH + 24, in + KPT_ETH + 20, inn - KPT_ETH - 20);
        x[KPT_ETH + 3] += 4;
        ip4_fix(x, 24);
        kpt_check_passed("IP options", x, inn + 4);
        /* A damaged IPv4 header: the stack drops it; a rewrite's fresh checksum would hide it. */
        memcpy(x, in, inn);
        x[KPT_ETH + 11] ^= 1;
        kpt_check_passed("bad IP header checksum", x, inn);
    } else {
        /* A hop-by-hop extension header in front of UDP. */
        memcpy(x, in, KPT_ETH + 40);
        x[KPT_ETH + 6] = 0; /* next header: hop-by-hop */
        uint8_t hbh[8] = {17, 0, 1, 4, 0, 0, 0, 0};
        memcpy(x + KPT_ETH + 40, hbh, 8);
        memcpy(x + KPT_ETH + 48, in + KPT_ETH + 40, inn - KPT_ETH - 40);
        x[KPT_ETH + 5] += 8;
        kpt_check_passed("extension header", x, inn + 8);
    }
    if (family == 6) {
        /* A link-local peer: the IPv6 route lookup would call it local. */
        kpt_ep_t ll = kpt_ep(6, "fe80::1", 60000);
        kpt_c2p_set(&w.client, &w.server, 0x4002, &w.relay, &ll, KPT_SLOT, exp);
        pn = kpt_channel_data(pl, 0x4002, d, 100, 0);
        size_t ln = kpt_build(x, &w.client, &w.server, pl, pn, 0);
        kpt_check_passed("link-local peer", x, ln);
    } else {
        /* An entry whose addresses are not in IPv4 form (a family mismatch). */
        kpt_c2p_set(&w.client, &w.server, 0x4002, &w.relay, &w.peer, KPT_SLOT, exp);
        struct kpath_c2p_val v;
        CHECK_INT(kpt_c2p_get(&w.client, &w.server, 0x4002, &v), 0);
        v.peer_ip[8] = 1;
        CHECK_INT(kpt_c2p_put(&w.client, &w.server, 0x4002, &v), 0);
        pn = kpt_channel_data(pl, 0x4002, d, 100, 0);
        size_t ln = kpt_build(x, &w.client, &w.server, pl, pn, 0);
        kpt_check_passed("family mismatch", x, ln);
    }
    /* Over the 2048 bytes the program copies. */
    {
        static uint8_t big[2100], bigpl[2200], bigin[2300];
        kpt_fill(big, sizeof(big), 8);
        size_t bn = kpt_channel_data(bigpl, 0x4001, big, sizeof(big), 0);
        size_t bin = kpt_build(bigin, &w.client, &w.server, bigpl, bn, 0);
        DECLARE_LIBBPF_OPTS(bpf_test_run_opts, t, .data_in = bigin, .data_size_in = (uint32_t)bin,
                            .repeat = 1);
        CHECK_INT(bpf_prog_test_run_opts(kpt_prog_fd, &t), 0);
        CHECK_INT((int)t.retval, TC_ACT_UNSPEC);
    }
    /* TCP to the same port. */
    memcpy(x, in, inn);
    x[KPT_ETH + (family == 4 ? 9 : 6)] = 6;
    kpt_check_passed("TCP", x, inn);
}

UNIT_TEST(passes_v4) { passes(4); }
UNIT_TEST(passes_v6) { passes(6); }

/* max-bps: bps 2500 and 1000-byte payloads: two pass, the third is dropped and counted. */
UNIT_TEST(bucket)
{
    kpt_world_t w = kpt_world(4);
    kpt_clear_maps();
    kpt_slot_reset(KPT_SLOT, 2500);
    kpt_c2p_set(&w.client, &w.server, 0x4001, &w.relay, &w.peer, KPT_SLOT,
                kpt_now_ns() + 60000000000ull);
    uint64_t g0 = kpt_global(KPATH_G_DROP_BPS);
    uint8_t d[1000], pl[KPT_MAXPKT], in[KPT_MAXPKT], out[KPT_MAXPKT];
    kpt_fill(d, sizeof(d), 2);
    size_t pn = kpt_channel_data(pl, 0x4001, d, sizeof(d), 0);
    size_t inn = kpt_build(in, &w.client, &w.server, pl, pn, 0), outn;
    CHECK_INT(kpt_run(in, inn, out, &outn), TC_ACT_OK);
    CHECK_INT(kpt_run(in, inn, out, &outn), TC_ACT_OK);
    CHECK_INT(kpt_run(in, inn, out, &outn), TC_ACT_SHOT);
    struct kpath_count c = kpt_slot_counts(KPT_SLOT);
    CHECK_INT(c.to_peer_packets, 2);
    CHECK_INT(c.to_peer_bytes, 2000);
    CHECK_INT(c.drop_bps, 1);
    CHECK_INT(kpt_global(KPATH_G_DROP_BPS) - g0, 1);
    /* The bucket refills at 2500 B/s: 1000 bytes take 0.4 s. */
    struct timespec ts = {0, 450000000};
    nanosleep(&ts, NULL);
    CHECK_INT(kpt_run(in, inn, out, &outn), TC_ACT_OK);
    CHECK_INT(kpt_run(in, inn, out, &outn), TC_ACT_SHOT);
    /* bps 0: no limit. */
    kpt_slot_reset(KPT_SLOT, 0);
    for (int i = 0; i < 10; i++)
        CHECK_INT(kpt_run(in, inn, out, &outn), TC_ACT_OK);
}

/* uturn_charge as kpath_charge() runs it: the KPATH_CHARGE_* it returns for `bytes` of `slot`. */
static int charge(uint32_t slot, uint64_t bytes)
{
    uint8_t frame[14 + sizeof(struct kpath_charge)];
    memset(frame, 0, sizeof(frame));
    frame[12] = 0x88;
    frame[13] = 0xb5;
    struct kpath_charge c = {.slot = slot, .bytes = bytes};
    memcpy(frame + 14, &c, sizeof(c));
    DECLARE_LIBBPF_OPTS(bpf_test_run_opts, o, .data_in = frame, .data_size_in = sizeof(frame),
                        .repeat = 1);
    CHECK_INT(bpf_prog_test_run_opts(bpf_program__fd(kpt_skel->progs.uturn_charge), &o), 0);
    return (int)o.retval;
}

/* User space's datagrams of an offloaded allocation and the kernel path's take from one bucket:
 * together they stay within max-bps. */
UNIT_TEST(charge_shares_the_bucket)
{
    kpt_world_t w = kpt_world(4);
    kpt_clear_maps();
    kpt_slot_reset(KPT_SLOT, 2500); /* 2500 B, refilled at 2.5 B/ms */
    kpt_c2p_set(&w.client, &w.server, 0x4001, &w.relay, &w.peer, KPT_SLOT,
                kpt_now_ns() + 60000000000ull);
    uint8_t d[1000], pl[KPT_MAXPKT], in[KPT_MAXPKT], out[KPT_MAXPKT];
    kpt_fill(d, sizeof(d), 2);
    size_t pn = kpt_channel_data(pl, 0x4001, d, sizeof(d), 0);
    size_t inn = kpt_build(in, &w.client, &w.server, pl, pn, 0), outn;
    CHECK_INT(charge(KPT_SLOT, 1200), KPATH_CHARGE_OK); /* user space: 1300 left */
    CHECK_INT(kpt_run(in, inn, out, &outn), TC_ACT_OK); /* the kernel: 300 left */
    CHECK_INT(kpt_run(in, inn, out, &outn), TC_ACT_SHOT);
    CHECK_INT(charge(KPT_SLOT, 1000), KPATH_CHARGE_DROP);
    CHECK_INT(charge(KPT_SLOT, 250), KPATH_CHARGE_OK);
    struct kpath_count c = kpt_slot_counts(KPT_SLOT);
    CHECK_INT(c.to_peer_packets, 1);
    CHECK_INT(c.drop_bps, 1); /* the kernel's own drops only: user space counts its own */
    CHECK_INT(charge(KPATH_MAX_SLOTS, 1), KPATH_CHARGE_NO_SLOT);
    kpt_slot_reset(KPT_SLOT, 0); /* no limit */
    for (int i = 0; i < 3; i++)
        CHECK_INT(charge(KPT_SLOT, 1000000), KPATH_CHARGE_OK);
}

/* A wildcard listener's entries carry no server address either way. Towards a remote client the
 * source is the route's preferred source (BPF_FIB_LOOKUP_SRC, Linux 6.8), as the kernel picks it
 * for user space's wildcard socket; towards a local client it stays in user space. The remote
 * client sits behind a veth. */
static void wildcard_to_client(int family)
{
    kpt_world_t w = kpt_world(family);
    kpt_ep_t client = kpt_ep(family, family == 4 ? "198.19.0.2" : "2001:db8:1::2", 40000);
    kpt_ep_t routed = kpt_ep(family, family == 4 ? "198.19.0.1" : "2001:db8:1::1", 3478);
    kpt_ep_t any = w.server;
    memset(any.ip, 0, 16);
    kpt_clear_maps();
    kpt_slot_reset(KPT_SLOT, 0);
    uint64_t exp = kpt_now_ns() + 60000000000ull;
    kpt_p2c_set(&w.relay, &w.peer, &client, &any, 0x4001, KPT_SLOT, exp);
    kpt_perm_set(KPT_SLOT, &w.peer, exp);
    uint8_t d[77], pl[KPT_MAXPKT], in[KPT_MAXPKT], out[KPT_MAXPKT], want[KPT_MAXPKT];
    kpt_fill(d, sizeof(d), 9);
    size_t inn = kpt_build(in, &w.peer, &w.relay, d, sizeof(d), 0), outn;
    int rc = kpt_run(in, inn, out, &outn);
    if (rc == TC_ACT_UNSPEC) {
        printf("wildcard_to_client v%d: passed to user space (a kernel before 6.8 has no "
               "BPF_FIB_LOOKUP_SRC)\n",
               family);
        kpt_check_bytes("wildcard, old kernel", sizeof(d), out, outn, in, inn);
        return;
    }
    CHECK_INT(rc, TC_ACT_REDIRECT);
    size_t pn = kpt_channel_data(pl, 0x4001, d, sizeof(d), 0);
    size_t wn = kpt_build(want, &routed, &client, pl, pn, 1);
    /* The MACs are the route's: compare from the EtherType on. */
    kpt_check_bytes("wildcard listener, remote client", sizeof(d), out + 12, outn - 12, want + 12,
                    wn - 12);
    /* A local client: the source would be the local route's, which the lookup does not give. */
    kpt_p2c_set(&w.relay, &w.peer, &w.client, &any, 0x4001, KPT_SLOT, exp);
    kpt_check_passed("wildcard listener, local client", in, inn);
}

UNIT_TEST(wildcard_to_client_v4) { wildcard_to_client(4); }
UNIT_TEST(wildcard_to_client_v6) { wildcard_to_client(6); }

/* RFC 768: an IPv4 datagram may carry no checksum (0). It is relayed with none: the program never
 * sums the payload, and 0 is not a checksum to update. */
UNIT_TEST(no_checksum_v4)
{
    kpt_world_t w = kpt_world(4);
    kpt_clear_maps();
    kpt_slot_reset(KPT_SLOT, 0);
    uint64_t exp = kpt_now_ns() + 60000000000ull;
    kpt_c2p_set(&w.client, &w.server, 0x4001, &w.relay, &w.peer, KPT_SLOT, exp);
    kpt_p2c_set(&w.relay, NULL, &w.client, &w.server, 0, KPT_SLOT, exp);
    kpt_perm_set(KPT_SLOT, &w.peer, exp);
    uint8_t d[101], pl[KPT_MAXPKT], in[KPT_MAXPKT], out[KPT_MAXPKT], want[KPT_MAXPKT];
    kpt_fill(d, sizeof(d), 6);
    size_t pn = kpt_channel_data(pl, 0x4001, d, sizeof(d), 0);
    size_t inn = kpt_build(in, &w.client, &w.server, pl, pn, 0), outn;
    in[KPT_ETH + 20 + 6] = in[KPT_ETH + 20 + 7] = 0;
    CHECK_INT(kpt_run(in, inn, out, &outn), TC_ACT_OK);
    size_t wn = kpt_build(want, &w.relay, &w.peer, d, sizeof(d), 1);
    want[KPT_ETH + 20 + 6] = want[KPT_ETH + 20 + 7] = 0;
    kpt_check_bytes("no checksum, to peer", sizeof(d), out, outn, want, wn);
    /* The other way, as a Data indication. */
    inn = kpt_build(in, &w.peer, &w.relay, d, sizeof(d), 0);
    in[KPT_ETH + 20 + 6] = in[KPT_ETH + 20 + 7] = 0;
    CHECK_INT(kpt_run(in, inn, out, &outn), TC_ACT_OK);
    CHECK(outn > KPT_ETH + 28 + 20 && out[KPT_ETH + 20 + 6] == 0 && out[KPT_ETH + 20 + 7] == 0);
    size_t hn = kpt_data_ind(pl, &w.peer, d, sizeof(d), out + KPT_ETH + 28 + 8);
    wn = kpt_build(want, &w.server, &w.client, pl, hn, 1);
    want[KPT_ETH + 20 + 6] = want[KPT_ETH + 20 + 7] = 0;
    kpt_check_bytes("no checksum, to client", sizeof(d), out, outn, want, wn);
}

/* A wildcard listener's entries carry no server address: the program retries with zeros. */
UNIT_TEST(wildcard_listener)
{
    kpt_world_t w = kpt_world(4);
    kpt_clear_maps();
    kpt_slot_reset(KPT_SLOT, 0);
    kpt_c2p_set(&w.client, NULL, 0x4001, &w.relay, &w.peer, KPT_SLOT,
                kpt_now_ns() + 60000000000ull);
    uint8_t d[64], pl[KPT_MAXPKT], in[KPT_MAXPKT], out[KPT_MAXPKT], want[KPT_MAXPKT];
    kpt_fill(d, sizeof(d), 4);
    size_t pn = kpt_channel_data(pl, 0x4001, d, sizeof(d), 0);
    size_t inn = kpt_build(in, &w.client, &w.server, pl, pn, 0), outn;
    CHECK_INT(kpt_run(in, inn, out, &outn), TC_ACT_OK);
    size_t wn = kpt_build(want, &w.relay, &w.peer, d, sizeof(d), 1);
    kpt_check_bytes("wildcard listener", sizeof(d), out, outn, want, wn);
}

/* bpf_fib_lookup refuses to route for an interface with forwarding off: the packet then stays in
 * user space, unchanged and counted (docs/KERNEL.md). IPv4 only: an IPv6 lookup of ::1 answers
 * "local" before it looks at forwarding. */
UNIT_TEST(forwarding_off)
{
    for (int family = 4; family <= 4; family += 2) {
        kpt_world_t w = kpt_world(family);
        kpt_clear_maps();
        kpt_slot_reset(KPT_SLOT, 0);
        kpt_c2p_set(&w.client, &w.server, 0x4001, &w.relay, &w.peer, KPT_SLOT,
                    kpt_now_ns() + 60000000000ull);
        const char *path = family == 4 ? "/proc/sys/net/ipv4/conf/lo/forwarding"
                                       : "/proc/sys/net/ipv6/conf/lo/forwarding";
        CHECK_INT(kpt_write_file(path, "0"), 0);
        uint64_t g0 = kpt_global(KPATH_G_PASS_ROUTE);
        uint8_t d[64], pl[KPT_MAXPKT], in[KPT_MAXPKT];
        kpt_fill(d, sizeof(d), 5);
        size_t pn = kpt_channel_data(pl, 0x4001, d, sizeof(d), 0);
        size_t inn = kpt_build(in, &w.client, &w.server, pl, pn, 0);
        kpt_check_passed("forwarding off", in, inn);
        CHECK_INT(kpt_global(KPATH_G_PASS_ROUTE) - g0, 1);
        CHECK_INT(kpt_slot_counts(KPT_SLOT).to_peer_packets, 0);
        CHECK_INT(kpt_write_file(path, "1"), 0);
    }
}

/* The route cache (kpath_abi.h struct kpath_route): the first datagram looks the route up and
 * leaves it in the channel's entry; later ones use it while it is good, so a route change (here
 * loopback's forwarding turned off) is seen when it runs out or when user space rewrites the
 * entry. */
UNIT_TEST(route_cache)
{
    kpt_world_t w = kpt_world(4);
    kpt_clear_maps();
    kpt_slot_reset(KPT_SLOT, 0);
    uint64_t exp = kpt_now_ns() + 60000000000ull;
    kpt_c2p_set(&w.client, &w.server, 0x4001, &w.relay, &w.peer, KPT_SLOT, exp);
    uint8_t d[64], pl[KPT_MAXPKT], in[KPT_MAXPKT], out[KPT_MAXPKT];
    kpt_fill(d, sizeof(d), 6);
    size_t pn = kpt_channel_data(pl, 0x4001, d, sizeof(d), 0);
    size_t inn = kpt_build(in, &w.client, &w.server, pl, pn, 0), outn;
    uint64_t t0 = kpt_now_ns();
    CHECK_INT(kpt_run(in, inn, out, &outn), TC_ACT_OK);
    uint64_t t1 = kpt_now_ns();
    struct kpath_c2p_val v;
    CHECK_INT(kpt_c2p_get(&w.client, &w.server, 0x4001, &v), 0);
    CHECK_INT(v.route.kind, KPATH_ROUTE_LOCAL);
    /* The program's clock: the coarse one plus a tick (kpath.bpf.c), within 10 ms of ours. */
    CHECK(v.route.until_ns >= t0 + KPATH_ROUTE_TTL_NS &&
          v.route.until_ns <= t1 + KPATH_ROUTE_TTL_NS + 10000000ull);
    /* Nobody claims the peer: remembered at the current generation. */
    CHECK_INT(v.route.claims_gen, kpt_skel->data->kp_claims_gen);

    const char *fwd = "/proc/sys/net/ipv4/conf/lo/forwarding";
    CHECK_INT(kpt_write_file(fwd, "0"), 0);
    uint64_t g0 = kpt_global(KPATH_G_PASS_ROUTE);
    CHECK_INT(kpt_run(in, inn, out, &outn), TC_ACT_OK); /* the cached route: no lookup */
    CHECK_INT(kpt_global(KPATH_G_PASS_ROUTE) - g0, 0);
    /* The cache runs out: the next datagram looks up, is passed, and the answer is cached. */
    CHECK_INT(kpt_c2p_get(&w.client, &w.server, 0x4001, &v), 0);
    v.route.until_ns = kpt_now_ns() - 1;
    CHECK_INT(kpt_c2p_put(&w.client, &w.server, 0x4001, &v), 0);
    kpt_check_passed("cache run out, forwarding off", in, inn);
    CHECK_INT(kpt_global(KPATH_G_PASS_ROUTE) - g0, 1);
    CHECK_INT(kpt_c2p_get(&w.client, &w.server, 0x4001, &v), 0);
    CHECK_INT(v.route.kind, KPATH_ROUTE_PASS);
    kpt_check_passed("cached: no route", in, inn);
    CHECK_INT(kpt_global(KPATH_G_PASS_ROUTE) - g0, 2);
    /* Forwarding back on and the entry rewritten (its cache zero): relayed again. */
    CHECK_INT(kpt_write_file(fwd, "1"), 0);
    kpt_c2p_set(&w.client, &w.server, 0x4001, &w.relay, &w.peer, KPT_SLOT, exp);
    CHECK_INT(kpt_run(in, inn, out, &outn), TC_ACT_OK);
    CHECK_INT(kpt_slot_counts(KPT_SLOT).to_peer_packets, 3);
}

/* A route's MTU is kept with it: a datagram longer than the route takes is passed to user space
 * even when the route comes from the cache. The route is a /32 on the veth with `mtu lock 600`
 * (bpf_fib_lookup, as forwarding, honours a route MTU only when locked; otherwise the device's). */
UNIT_TEST(route_cache_mtu)
{
    kpt_world_t w = kpt_world(4);
    kpt_ep_t peer = kpt_ep(4, "198.19.0.77", 60000);
    CHECK_INT(kpt_sh("ip route add 198.19.0.77/32 dev kpd mtu lock 600"), 0);
    kpt_clear_maps();
    kpt_slot_reset(KPT_SLOT, 0);
    kpt_c2p_set(&w.client, &w.server, 0x4001, &w.relay, &peer, KPT_SLOT,
                kpt_now_ns() + 60000000000ull);
    uint8_t d[700], pl[KPT_MAXPKT], in[KPT_MAXPKT], out[KPT_MAXPKT];
    kpt_fill(d, sizeof(d), 8);
    /* 572 B of payload: 600 B as IPv4; 573: one too many. */
    size_t sizes[] = {572, 573, 100, 700, 572};
    int want[] = {1, 0, 1, 0, 1};
    uint64_t g0 = kpt_global(KPATH_G_PASS_ROUTE);
    int passed = 0;
    for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
        size_t pn = kpt_channel_data(pl, 0x4001, d, sizes[i], 0);
        size_t inn = kpt_build(in, &w.client, &w.server, pl, pn, 0), outn;
        int rc = kpt_run(in, inn, out, &outn);
        if (want[i]) {
            CHECK_INT(rc, TC_ACT_REDIRECT);
            CHECK_INT(outn, 14 + 20 + 8 + sizes[i]);
        } else {
            CHECK_INT(rc, TC_ACT_UNSPEC);
            passed++;
        }
    }
    CHECK_INT(kpt_global(KPATH_G_PASS_ROUTE) - g0, (uint64_t)passed);
    struct kpath_c2p_val v;
    CHECK_INT(kpt_c2p_get(&w.client, &w.server, 0x4001, &v), 0);
    CHECK_INT(v.route.mtu, 600);
    CHECK(v.route.kind == KPATH_ROUTE_FWD || v.route.kind == KPATH_ROUTE_NEIGH);
    CHECK_INT(kpt_slot_counts(KPT_SLOT).to_peer_packets, 3);
    kpt_sh("ip route del 198.19.0.77/32 dev kpd");
}

/* Relay to relay on one uturnd (kpath.bpf.c route()): a channel to a relayed address of ours that
 * no peer -> client entry claims is delivered on loopback (user space takes the second hop), and
 * its entry remembers that at the current kp_claims_gen. Once the other allocation's entry and
 * permission are written (the generation moves), the next datagram takes the second hop in the
 * kernel too (uturn_ingress runs its work again), and out comes the other client's ChannelData. */
UNIT_TEST(relay_to_relay)
{
    kpt_world_t w = kpt_world(4);
    kpt_ep_t relay2 = kpt_ep(4, "127.0.0.4", 50002), client2 = kpt_ep(4, "127.0.0.5", 40002);
    kpt_clear_maps();
    kpt_slot_reset(KPT_SLOT, 0);
    kpt_slot_reset(KPT_SLOT + 1, 0);
    uint64_t exp = kpt_now_ns() + 60000000000ull;
    kpt_c2p_set(&w.client, &w.server, 0x4001, &w.relay, &relay2, KPT_SLOT, exp);
    uint8_t d[50], pl[KPT_MAXPKT], in[KPT_MAXPKT], out[KPT_MAXPKT], want[KPT_MAXPKT];
    kpt_fill(d, sizeof(d), 2);
    size_t pn = kpt_channel_data(pl, 0x4001, d, sizeof(d), 0);
    size_t inn = kpt_build(in, &w.client, &w.server, pl, pn, 0), outn;
    CHECK_INT(kpt_run(in, inn, out, &outn), TC_ACT_OK);
    size_t wn = kpt_build(want, &w.relay, &relay2, d, sizeof(d), 1);
    kpt_check_bytes("unclaimed: one hop", sizeof(d), out, outn, want, wn);
    struct kpath_c2p_val v;
    CHECK_INT(kpt_c2p_get(&w.client, &w.server, 0x4001, &v), 0);
    CHECK_INT(v.route.claims_gen, kpt_skel->data->kp_claims_gen);

    kpt_p2c_set(&relay2, &w.relay, &client2, &w.server, 0x4002, KPT_SLOT + 1, exp);
    kpt_perm_set(KPT_SLOT + 1, &w.relay, exp);
    CHECK_INT(kpt_run(in, inn, out, &outn), TC_ACT_OK);
    size_t p2n = kpt_channel_data(pl, 0x4002, d, sizeof(d), 0);
    wn = kpt_build(want, &w.server, &client2, pl, p2n, 1);
    kpt_check_bytes("claimed: both hops", sizeof(d), out, outn, want, wn);
    CHECK_INT(kpt_slot_counts(KPT_SLOT).to_peer_packets, 2);
    CHECK_INT(kpt_slot_counts(KPT_SLOT + 1).from_peer_packets, 1);
}

/* The program's own cost under BPF_PROG_TEST_RUN (repeat: KPATH_BENCH_REPEAT, default 1000). The
 * maps make each run a round trip: ChannelData from the client is stripped and sent to the "peer",
 * which is a relayed address of ours that a peer -> client entry claims (relay to relay), so the
 * same run gives it its ChannelData header back, addressed to where the first one came from, and
 * the next run (a test run keeps one skb across repeats) starts over. The figure is per hop: the
 * mean of the two directions, eth to route included. */
static void bench(size_t n)
{
    kpt_world_t w = kpt_world(4);
    kpt_clear_maps();
    kpt_slot_reset(KPT_SLOT, 0);
    uint64_t exp = kpt_now_ns() + 3600000000000ull;
    kpt_c2p_set(&w.client, &w.server, 0x4001, &w.relay, &w.peer, KPT_SLOT, exp);
    /* The way back: the peer's address as the relayed address, the client's as the server's. */
    kpt_p2c_set(&w.peer, &w.relay, &w.server, &w.client, 0x4001, KPT_SLOT, exp);
    kpt_perm_set(KPT_SLOT, &w.relay, exp);
    uint8_t d[KPT_MAXPKT], pl[KPT_MAXPKT], in[KPT_MAXPKT], out[KPT_MAXPKT], want[KPT_MAXPKT];
    kpt_fill(d, n, 3);
    size_t pn = kpt_channel_data(pl, 0x4001, d, n, 0);
    size_t inn = kpt_build(in, &w.client, &w.server, pl, pn, 0);
    const char *env = getenv("KPATH_BENCH_REPEAT");
    uint32_t repeat = env ? (uint32_t)strtoul(env, NULL, 10) : 1000;
    if (repeat == 0)
        repeat = 1;
    DECLARE_LIBBPF_OPTS(bpf_test_run_opts, o, .data_in = in, .data_size_in = (uint32_t)inn,
                        .data_out = out, .data_size_out = KPT_MAXPKT, .repeat = repeat);
    CHECK_INT(bpf_prog_test_run_opts(kpt_prog_fd, &o), 0);
    CHECK_INT(o.retval, TC_ACT_OK);
    size_t wn = kpt_build(want, &w.client, &w.server, pl, pn, 1);
    kpt_check_bytes("ping-pong", n, out, o.data_size_out, want, wn);
    struct kpath_count c = kpt_slot_counts(KPT_SLOT);
    CHECK_INT(c.to_peer_packets, repeat);
    CHECK_INT(c.from_peer_packets, repeat);
    printf("bench: %zu B ChannelData relay to relay, %u runs of 2 hops: %u ns per hop\n", n, repeat,
           o.duration / 2);
}

/* The common path on its own: ChannelData from the client to a local peer that no peer -> client
 * entry claims, one datagram per test run (a fresh skb each time), `calls` runs; the mean of the
 * kernel's per-run times. The route comes from the channel's cache after the first. */
static void bench_one_way(size_t n)
{
    kpt_world_t w = kpt_world(4);
    kpt_clear_maps();
    kpt_slot_reset(KPT_SLOT, 0);
    uint64_t exp = kpt_now_ns() + 3600000000000ull;
    kpt_c2p_set(&w.client, &w.server, 0x4001, &w.relay, &w.peer, KPT_SLOT, exp);
    uint8_t d[KPT_MAXPKT], pl[KPT_MAXPKT], in[KPT_MAXPKT], out[KPT_MAXPKT];
    kpt_fill(d, n, 3);
    size_t pn = kpt_channel_data(pl, 0x4001, d, n, 0);
    size_t inn = kpt_build(in, &w.client, &w.server, pl, pn, 0);
    const char *env = getenv("KPATH_BENCH_REPEAT");
    uint32_t calls = env ? (uint32_t)strtoul(env, NULL, 10) / 4 : 250;
    uint64_t ns = 0;
    uint32_t ok = 0;
    for (uint32_t i = 0; i < calls; i++) {
        DECLARE_LIBBPF_OPTS(bpf_test_run_opts, o, .data_in = in, .data_size_in = (uint32_t)inn,
                            .data_out = out, .data_size_out = KPT_MAXPKT, .repeat = 1);
        if (bpf_prog_test_run_opts(kpt_prog_fd, &o) == 0 && o.retval == TC_ACT_OK)
            ok++;
        ns += o.duration;
    }
    CHECK_INT(ok, calls);
    CHECK_INT(kpt_slot_counts(KPT_SLOT).to_peer_packets, calls);
    printf("bench: %zu B ChannelData one way, %u runs: %llu ns per run\n", n, calls,
           (unsigned long long)(calls ? ns / calls : 0));
}

UNIT_TEST(bench_test_run)
{
    struct bpf_prog_info info;
    uint32_t len = sizeof(info);
    memset(&info, 0, sizeof(info));
    CHECK_INT(bpf_obj_get_info_by_fd(kpt_prog_fd, &info, &len), 0);
    printf("bench: program: %u bytes xlated (%u instructions), %u bytes jited\n",
           info.xlated_prog_len, info.xlated_prog_len / 8, info.jited_prog_len);
    bench(100);
    bench(1000);
    bench_one_way(100);
    bench_one_way(1000);
}

int main(int argc, char **argv)
{
    unit_args(argc, argv);
    kpt_start();
    unit_run();
    kpt_stop();
    return unit_done("test_kpath_prog");
}
