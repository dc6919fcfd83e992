/* sink.c - the peer: count what arrives (and, with --echo, send each datagram back to its source).
 *
 * recvmmsg in batches (blocking, wait for one); the counters live in the --stats file so bench/run
 * reads them at the edges of its measuring window. As an echo peer it answers every datagram to the
 * address it came from (a TURN relayed address), batched with sendmmsg.
 *
 *   sink --listen 127.0.0.1:Q [--echo] [--spin] [--stats FILE] [--seconds S]
 *
 * --spin polls without ever sleeping. On loopback the sender pays for waking the receiver up (an
 * IPI to the other core), so a sleeping sink would charge the server under test for the sink's own
 * wakeups -- a cost a real relay's peer pays on its own host -- and how often that happens depends
 * on scheduling luck between sink and generator. A spinning sink is never asleep: the server pays
 * only for what it sends.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bench.h"

#define BATCH 128
#define SLOT 2048

int main(int argc, char **argv)
{
    if (argc < 2 || bench_flag(argc, argv, "--help")) {
        fprintf(stderr, "usage: sink --listen IP:PORT [--echo] [--stats FILE] [--seconds S]\n");
        return 2;
    }
    struct sockaddr_in addr;
    bench_addr(bench_opt(argc, argv, "--listen", "127.0.0.1:0"), &addr);
    int echo = bench_flag(argc, argv, "--echo");
    int spin = bench_flag(argc, argv, "--spin");
    uint64_t *cnt = bench_counters(bench_opt(argc, argv, "--stats", NULL));
    bench_deadline(bench_optf(argc, argv, "--seconds", 600));
    int fd = bench_udp(&addr, 0);
    printf("ready listen=%s\n", bench_addr_str(&addr));
    fflush(stdout);

    static uint8_t buf[BATCH][SLOT];
    static struct sockaddr_in from[BATCH];
    static struct iovec iov[BATCH];
    static struct mmsghdr m[BATCH];
    uint64_t packets = 0, bytes = 0, echoed = 0, echo_fail = 0;
    for (;;) {
        for (int i = 0; i < BATCH; i++) {
            iov[i] = (struct iovec){buf[i], SLOT};
            m[i].msg_hdr = (struct msghdr){.msg_name = &from[i],
                                           .msg_namelen = sizeof(from[i]),
                                           .msg_iov = &iov[i],
                                           .msg_iovlen = 1};
        }
        int n = recvmmsg(fd, m, BATCH, spin ? MSG_DONTWAIT : MSG_WAITFORONE, NULL);
        if (n < 0) {
            if (errno == EINTR || errno == EAGAIN)
                continue;
            bench_die("recvmmsg: %s", strerror(errno));
        }
        packets += (uint64_t)n;
        for (int i = 0; i < n; i++)
            bytes += m[i].msg_len;
        if (echo) {
            for (int i = 0; i < n; i++)
                iov[i].iov_len = m[i].msg_len;
            for (int off = 0; off < n;) {
                int s = sendmmsg(fd, m + off, (unsigned)(n - off), MSG_DONTWAIT);
                if (s < 0 && errno == EINTR)
                    continue;
                if (s <= 0 && (s == 0 || errno == EAGAIN)) {
                    echo_fail += (uint64_t)(n - off);
                    break;
                }
                if (s < 0) {
                    echo_fail++; /* this one datagram failed; the rest may go */
                    off++;
                    continue;
                }
                echoed += (uint64_t)s;
                off += s;
            }
        }
        bench_cset(cnt, BENCH_C_PACKETS, packets);
        bench_cset(cnt, BENCH_C_BYTES, bytes);
        bench_cset(cnt, BENCH_C_STAMP_NS, bench_now_ns());
        bench_cset(cnt, BENCH_C_AUX1, echoed);
        bench_cset(cnt, BENCH_C_AUX2, echo_fail);
    }
}
