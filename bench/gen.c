/* gen.c - the load generator: datagrams, ChannelData or Send indications at a fixed size, at a
 * fixed rate or as fast as sendmmsg goes.
 *
 *   gen --mode raw  --to FWD:PORT    --size N [--rate PPS] [--seconds S] [--stats FILE]
 *   gen --mode chan --to SERVER:PORT --peer SINK:PORT --user U --pass P --size N ...
 *   gen --mode send --to SERVER:PORT --peer SINK:PORT --user U --pass P --size N ...
 *
 * raw sends N+4 bytes (what a ChannelData of N bytes weighs; run fwd with --strip 4). chan and send
 * first set up one allocation with a permission (and channel 0x4000) for the peer with turnc, print
 * "ready", blast, and delete the allocation at the end. --size is always the payload the peer gets.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <netinet/udp.h>
#include <unistd.h>

#include "bench.h"
#include "turnc.h"

#define MAXBATCH 256

int main(int argc, char **argv)
{
    if (argc < 2 || bench_flag(argc, argv, "--help")) {
        fprintf(stderr, "usage: gen --mode raw|chan|send --to IP:PORT [--peer IP:PORT] --size N "
                        "[--rate PPS] [--seconds S] [--user U --pass P] [--batch N] "
                        "[--stats FILE]\n");
        return 2;
    }
    const char *mode = bench_opt(argc, argv, "--mode", "raw");
    int m_raw = strcmp(mode, "raw") == 0, m_chan = strcmp(mode, "chan") == 0,
        m_send = strcmp(mode, "send") == 0;
    if (!m_raw && !m_chan && !m_send)
        bench_die("unknown --mode %s", mode);
    turnc_gen_opts_t g;
    turnc_gen_opts(argc, argv, 32, MAXBATCH, &g);

    turnc_pool_t *p;
    int fd = turnc_bench_client(argc, argv, &g.to, &g.peer, m_raw, m_chan, &p);
    if (connect(fd, (struct sockaddr *)&g.to, sizeof(g.to)) != 0)
        bench_die("connect: %s", strerror(errno));
    printf("ready relayed=%s\n", p ? bench_addr_str(&p->s[0].relayed) : "-");
    fflush(stdout);

    /* One datagram, sent `batch` times per sendmmsg. */
    static uint8_t pkt[65536];
    size_t len;
    if (m_send) {
        size_t h = turnc_send_ind_hdrlen();
        memset(pkt + h, 0xab, g.size);
        len = turnc_send_ind(pkt, &g.peer, g.size);
    } else {
        len = turnc_chan_data(pkt, g.size);
    }
    /* --gso K: one sendmmsg slot carries K datagrams that the kernel cuts (UDP_SEGMENT), so the
     * generator spends less of the shared core on system calls. */
    int gso = (int)bench_optf(argc, argv, "--gso", 1);
    if (gso < 1 || gso > 64 || (size_t)gso * len > 65000)
        gso = 1;
    if (gso > 1) {
        int seg = (int)len;
        if (setsockopt(fd, SOL_UDP, UDP_SEGMENT, &seg, sizeof(seg)) != 0)
            bench_die("UDP_SEGMENT: %s", strerror(errno));
        for (int k = 1; k < gso; k++)
            memcpy(pkt + (size_t)k * len, pkt, len);
    }
    static struct iovec iov[MAXBATCH];
    static struct mmsghdr mm[MAXBATCH];
    for (int i = 0; i < g.batch; i++) {
        iov[i] = (struct iovec){pkt, len * (size_t)gso};
        mm[i].msg_hdr = (struct msghdr){.msg_iov = &iov[i], .msg_iovlen = 1};
    }

    uint64_t t0 = bench_now_ns(), end = t0 + (uint64_t)(g.seconds * 1e9);
    uint64_t sent = 0, errors = 0, now = t0;
    while ((now = bench_now_ns()) < end) {
        int want = g.batch;
        if (g.rate > 0) {
            double due = (g.rate * (double)(now - t0) / 1e9 - (double)sent) / gso;
            if (due < 1) {
                bench_sleep_ns(20000);
                continue;
            }
            if (due < want)
                want = (int)due;
        }
        int s = sendmmsg(fd, mm, (unsigned)want, 0);
        if (s < 0) {
            if (errno == EAGAIN || errno == ENOBUFS)
                bench_sleep_ns(10000);
            else if (errno != EINTR)
                errors++; /* ECONNREFUSED: nothing listening (yet) */
            continue;
        }
        sent += (uint64_t)s * (uint64_t)gso;
        bench_cset(g.cnt, BENCH_C_PACKETS, sent);
        bench_cset(g.cnt, BENCH_C_BYTES, sent * len);
        bench_cset(g.cnt, BENCH_C_STAMP_NS, now);
    }
    double el = (double)(now - t0) / 1e9;
    printf("done sent=%llu seconds=%.3f pps=%.0f wire_bytes=%zu send_errors=%llu\n",
           (unsigned long long)sent, el, (double)sent / el, len, (unsigned long long)errors);
    if (p) {
        /* Unconnect (AF_UNSPEC) so the server's answer to the delete is read like any other. */
        struct sockaddr un = {.sa_family = AF_UNSPEC};
        (void)connect(fd, &un, sizeof(un));
    }
    turnc_bench_client_end(p, fd);
    fflush(stdout);
    return 0;
}
