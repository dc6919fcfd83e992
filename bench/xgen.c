/* xgen.c - a load generator for bench/run's sat scenario that costs its own core far less per
 * datagram than gen: prebuilt IPv4/UDP frames injected into the receive path of lo with
 * BPF_PROG_RUN in live-frames mode (BPF_F_TEST_XDP_LIVE_FRAMES, Linux >= 5.18), instead of sent
 * through a socket.
 *
 *   xgen --mode raw  --to DST:PORT    --size N [--rate PPS] [--seconds S] [--stats FILE]
 *   xgen --mode chan --to SERVER:PORT --peer SINK:PORT --user U --pass P --size N ...
 *
 * The options, the counters file (bench.h) and the output lines are gen's. chan first sets up one
 * allocation with a permission and channel 0x4000 for the peer with turnc, from its socket on
 * 127.0.0.1:PORT, keeps that socket open, prints "ready", then injects ChannelData frames
 * 127.0.0.1:PORT -> SERVER:PORT, and deletes the allocation at the end. raw injects N+4 bytes
 * (a ChannelData's weight) from a port it holds open to DST:PORT.
 *
 * How: a two-instruction XDP program that returns XDP_PASS is run over one Ethernet frame (zero
 * MACs: lo's address is zero, so the frame is PACKET_HOST) with ctx ingress_ifindex = lo, `repeat`
 * times per call. The kernel copies the frame into page-pool pages, runs the program, turns every
 * XDP_PASS into an skb of lo and hands the batch to netif_receive_skb_list(): from there on it is a
 * packet lo received. With RPS on lo the skbs are queued to the RPS CPU's backlog right there, so
 * their receive processing (TC ingress, IP, the UDP socket) runs on that CPU, not on ours. The skbs
 * carry no route (as from a NIC) and no checksum state (CHECKSUM_NONE): the UDP checksum is
 * verified in software, so it is computed here, and a destination and source in 127.0.0.0/8
 * received without a route are martians unless lo has route_localnet and accept_local set
 * (bench/run sets both in its own network namespace).
 *
 * Every call also sets up and tears down a page pool, so frames go in calls of up to --batch
 * (default 256; the kernel hands them on in lists of --kbatch, at most 256), one call per
 * --chunk-us (default 1000) of --rate. --hold-dev IF keeps the program attached (driver mode, a
 * bpf_link) to an interface that never receives anything, a veth that is down in bench/run's
 * namespace (generic mode would turn on the generic-XDP check for every packet on the machine):
 * otherwise every call adds the program to the kernel's XDP dispatcher and takes it out again,
 * waiting for an RCU grace period each time (~20 ms a call here). The skbs' truesize is a page
 * each (a page-pool page per frame, as from many NIC drivers), so a receive buffer holds several
 * times fewer of them than of datagrams from a local socket. Needs CAP_BPF and CAP_NET_ADMIN
 * (CAP_SYS_ADMIN on older kernels).
 */
#include <errno.h>
#include <net/if.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <bpf/bpf.h>
#include <linux/bpf.h>
#include <linux/if_link.h>

#include "bench.h"
#include "turnc.h"

#define ETH_LEN 14
#define IP_LEN 20
#define UDP_LEN 8
#define HDRS (ETH_LEN + IP_LEN + UDP_LEN)

static uint32_t sum16(const uint8_t *p, size_t len, uint32_t acc)
{
    for (size_t i = 0; i + 1 < len; i += 2)
        acc += (uint32_t)(p[i] << 8 | p[i + 1]);
    if (len & 1)
        acc += (uint32_t)(p[len - 1] << 8);
    return acc;
}

static uint16_t fold(uint32_t acc)
{
    while (acc >> 16)
        acc = (acc & 0xffff) + (acc >> 16);
    return (uint16_t)~acc;
}

static void put16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
}

/* One Ethernet + IPv4 + UDP frame from `src` to `dst` with `pay` (len bytes) as the UDP payload,
 * both checksums complete (RFC 791 §3.1, RFC 768). Returns the frame length. */
static size_t build_frame(uint8_t *f, const struct sockaddr_in *src, const struct sockaddr_in *dst,
                          const uint8_t *pay, size_t len)
{
    memset(f, 0, HDRS);
    put16(f + 12, 0x0800);
    uint8_t *ip = f + ETH_LEN, *udp = ip + IP_LEN;
    ip[0] = 0x45;
    put16(ip + 2, (uint16_t)(IP_LEN + UDP_LEN + len));
    put16(ip + 6, 0x4000); /* DF, as the stack sends UDP on lo (pmtudisc) */
    ip[8] = 64;
    ip[9] = 17;
    memcpy(ip + 12, &src->sin_addr, 4);
    memcpy(ip + 16, &dst->sin_addr, 4);
    put16(ip + 10, fold(sum16(ip, IP_LEN, 0)));
    memcpy(udp, &src->sin_port, 2);
    memcpy(udp + 2, &dst->sin_port, 2);
    put16(udp + 4, (uint16_t)(UDP_LEN + len));
    memcpy(udp + UDP_LEN, pay, len);
    /* Pseudo-header: addresses, protocol, UDP length; then header and payload. */
    uint32_t acc = sum16(ip + 12, 8, 0) + 17 + (uint32_t)(UDP_LEN + len);
    uint16_t c = fold(sum16(udp, UDP_LEN + len, acc));
    put16(udp + 6, c ? c : 0xffff); /* 0 means "no checksum" in UDP over IPv4 */
    return HDRS + len;
}

/* r0 = XDP_PASS; exit. */
static int load_pass_prog(void)
{
    struct bpf_insn insns[] = {
        {.code = BPF_ALU64 | BPF_MOV | BPF_K, .dst_reg = BPF_REG_0, .imm = XDP_PASS},
        {.code = BPF_JMP | BPF_EXIT},
    };
    char log[256] = "";
    LIBBPF_OPTS(bpf_prog_load_opts, o, .log_buf = log, .log_size = sizeof(log), .log_level = 0);
    int fd = bpf_prog_load(BPF_PROG_TYPE_XDP, "xgen_pass", "GPL", insns, 2, &o);
    if (fd < 0)
        bench_die("loading the XDP program: %s %s", strerror(errno), log);
    return fd;
}

static double cpu_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
    if (argc < 2 || bench_flag(argc, argv, "--help")) {
        fprintf(stderr, "usage: xgen --mode raw|chan --to IP:PORT [--peer IP:PORT] --size N "
                        "[--rate PPS] [--seconds S] [--user U --pass P] [--batch N] [--kbatch N] "
                        "[--chunk-us US] [--hold-dev IF] [--stats FILE]\n");
        return 2;
    }
    const char *mode = bench_opt(argc, argv, "--mode", "raw");
    int m_raw = strcmp(mode, "raw") == 0, m_chan = strcmp(mode, "chan") == 0;
    if (!m_raw && !m_chan)
        bench_die("unknown --mode %s (raw or chan)", mode);
    turnc_gen_opts_t g;
    turnc_gen_opts(argc, argv, 256, 65536, &g);
    int kbatch = (int)bench_optf(argc, argv, "--kbatch", 64);
    if (kbatch < 1 || kbatch > 256)
        bench_die("bad --kbatch");
    int ifindex = (int)if_nametoindex("lo");
    if (!ifindex)
        bench_die("no lo in this network namespace");
    int prog = load_pass_prog();
    const char *hold = bench_opt(argc, argv, "--hold-dev", NULL);
    if (hold) {
        /* BPF_PROG_RUN with repeat > 1 puts the program in the kernel's XDP dispatcher and takes it
         * out again (bpf_prog_change_xdp), and each change waits for an RCU grace period: ~20 ms
         * per call here. While the program is attached to some interface it stays in, and a call
         * costs what its frames cost. Driver mode on a veth that is down runs it on nothing; a
         * link goes away with our process. */
        int hidx = (int)if_nametoindex(hold);
        if (!hidx)
            bench_die("--hold-dev %s: no such interface", hold);
        LIBBPF_OPTS(bpf_link_create_opts, lo_opts, .flags = XDP_FLAGS_DRV_MODE);
        if (bpf_link_create(prog, hidx, BPF_XDP, &lo_opts) < 0)
            bench_die("--hold-dev %s: attaching the XDP program: %s", hold, strerror(errno));
    } else {
        fprintf(stderr, "xgen: no --hold-dev: every call waits for two RCU grace periods\n");
    }

    turnc_pool_t *p;
    int fd = turnc_bench_client(argc, argv, &g.to, &g.peer, m_raw, 1, &p);
    /* The frames come from our socket's address: it stays open (and bound) while we inject. */
    struct sockaddr_in me;
    socklen_t mlen = sizeof(me);
    if (getsockname(fd, (struct sockaddr *)&me, &mlen) != 0)
        bench_die("getsockname: %s", strerror(errno));

    static uint8_t pay[1500], frame[2048];
    size_t len = turnc_chan_data(pay, g.size);
    size_t flen = build_frame(frame, &me, &g.to, pay, len);

    /* With a ctx, the kernel takes the frame's length from data_end. */
    struct xdp_md md = {.data_end = (__u32)flen, .ingress_ifindex = (__u32)ifindex};
    LIBBPF_OPTS(bpf_test_run_opts, o, .data_in = frame, .data_size_in = (__u32)flen, .ctx_in = &md,
                .ctx_size_in = sizeof(md), .flags = BPF_F_TEST_XDP_LIVE_FRAMES,
                .batch_size = (__u32)kbatch);
    /* One frame first, so an unsupported kernel fails with its own words before "ready". */
    o.repeat = 1;
    if (bpf_prog_test_run_opts(prog, &o) != 0)
        bench_die("BPF_PROG_RUN with BPF_F_TEST_XDP_LIVE_FRAMES on lo: %s", strerror(errno));
    printf("ready relayed=%s from=%s frame=%zu\n", p ? bench_addr_str(&p->s[0].relayed) : "-",
           bench_addr_str(&me), flen);
    fflush(stdout);

    uint64_t t0 = bench_now_ns(), end = t0 + (uint64_t)(g.seconds * 1e9);
    uint64_t sent = 1, errors = 0, calls = 0, now = t0;
    double c0 = cpu_s();
    /* Paced: one call per `chunk` frames (what --rate brings in --chunk-us, at least 1, at most
     * --batch), sleeping in between. A call costs a page-pool set-up and tear-down (~20 us here,
     * and a kworker's deferred release of the pool later, on this CPU too) besides its frames, so
     * calls of a few frames would cost the core more than the frames. A NIC hands on its frames
     * in bursts too (a NAPI poll takes up to 64). */
    double chunk_us = bench_optf(argc, argv, "--chunk-us", 1000);
    double chunk = g.rate > 0 ? g.rate * chunk_us / 1e6 : g.batch;
    if (chunk < 1)
        chunk = 1;
    if (chunk > g.batch)
        chunk = g.batch;
    while ((now = bench_now_ns()) < end) {
        int want = g.batch;
        if (g.rate > 0) {
            double due = g.rate * (double)(now - t0) / 1e9 - (double)sent;
            if (due < chunk) {
                bench_sleep_ns((uint64_t)((chunk - due) / g.rate * 1e9));
                continue;
            }
            if (due < want)
                want = (int)due;
        }
        o.repeat = want;
        calls++;
        if (bpf_prog_test_run_opts(prog, &o) != 0) {
            /* -EINTR mid-run leaves an unknown part injected; ENOMEM: none of that batch. */
            errors++;
            bench_sleep_ns(10000);
            continue;
        }
        sent += (uint64_t)want;
        bench_cset(g.cnt, BENCH_C_PACKETS, sent);
        bench_cset(g.cnt, BENCH_C_BYTES, sent * len);
        bench_cset(g.cnt, BENCH_C_STAMP_NS, now);
    }
    double el = (double)(now - t0) / 1e9, cpu = cpu_s() - c0;
    printf("done sent=%llu seconds=%.3f pps=%.0f wire_bytes=%zu send_errors=%llu calls=%llu "
           "cpu_s=%.3f cpu_ns_per_frame=%.0f\n",
           (unsigned long long)sent, el, (double)sent / el, len, (unsigned long long)errors,
           (unsigned long long)calls, cpu, sent ? cpu * 1e9 / (double)sent : 0.0);
    turnc_bench_client_end(p, fd);
    close(prog);
    fflush(stdout);
    return 0;
}
