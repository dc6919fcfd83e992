/* fwd.c - the limit reference: the plainest fast UDP forwarder this machine can run.
 *
 * One thread, one receiving socket, one connected sending socket: recvmmsg (blocking, wait for one)
 * a batch, drop `--strip` leading bytes of each datagram (4 = a ChannelData header, so it moves the
 * same bytes uturnd moves), and hand the whole batch to sendmmsg. No lookup, no event loop, no
 * copy: what a TURN relay would cost if its lookup and bookkeeping were free.
 *
 *   fwd --listen 127.0.0.1:P --to 127.0.0.1:Q [--strip 4] [--batch 64] [--stats FILE] [--seconds S]
 *       [--unconnected] [--single]
 *
 * --unconnected sends with a destination address per datagram (a route lookup each, as a relay
 * socket serving several peers must), --single sends each datagram with its own sendmsg (as uturnd
 * does today): what those two choices cost, measured the same way.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bench.h"

#define MAXBATCH 256
#define SLOT 2048

int main(int argc, char **argv)
{
    if (argc < 2 || bench_flag(argc, argv, "--help")) {
        fprintf(stderr, "usage: fwd --listen IP:PORT --to IP:PORT [--strip N] [--batch N] "
                        "[--stats FILE] [--seconds S]\n");
        return 2;
    }
    struct sockaddr_in in_addr, to;
    bench_addr(bench_opt(argc, argv, "--listen", "127.0.0.1:0"), &in_addr);
    bench_addr(bench_opt(argc, argv, "--to", "127.0.0.1:9"), &to);
    int strip = (int)bench_optf(argc, argv, "--strip", 0);
    int unconnected = bench_flag(argc, argv, "--unconnected");
    int single = bench_flag(argc, argv, "--single");
    int batch = (int)bench_optf(argc, argv, "--batch", 64);
    if (batch < 1 || batch > MAXBATCH || strip < 0 || strip >= SLOT)
        bench_die("bad --batch or --strip");
    uint64_t *cnt = bench_counters(bench_opt(argc, argv, "--stats", NULL));
    bench_deadline(bench_optf(argc, argv, "--seconds", 600));

    int in = bench_udp(&in_addr, 0);
    struct sockaddr_in out_addr = {.sin_family = AF_INET, .sin_addr = in_addr.sin_addr};
    int out = bench_udp(&out_addr, 0);
    if (!unconnected && connect(out, (struct sockaddr *)&to, sizeof(to)) != 0)
        bench_die("connect %s: %s", bench_addr_str(&to), strerror(errno));
    printf("ready listen=%s\n", bench_addr_str(&in_addr));
    fflush(stdout);

    static uint8_t buf[MAXBATCH][SLOT];
    static struct iovec riov[MAXBATCH], siov[MAXBATCH];
    static struct mmsghdr rm[MAXBATCH], sm[MAXBATCH];
    for (int i = 0; i < batch; i++) {
        riov[i] = (struct iovec){buf[i], SLOT};
        rm[i].msg_hdr = (struct msghdr){.msg_iov = &riov[i], .msg_iovlen = 1};
        sm[i].msg_hdr = (struct msghdr){.msg_iov = &siov[i], .msg_iovlen = 1};
        if (unconnected) {
            sm[i].msg_hdr.msg_name = &to;
            sm[i].msg_hdr.msg_namelen = sizeof(to);
        }
    }
    uint64_t packets = 0, bytes = 0, dropped = 0;
    for (;;) {
        int n = recvmmsg(in, rm, (unsigned)batch, MSG_WAITFORONE, NULL);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            bench_die("recvmmsg: %s", strerror(errno));
        }
        int k = 0;
        for (int i = 0; i < n; i++) {
            size_t len = rm[i].msg_len;
            if (len <= (size_t)strip) {
                dropped++;
                continue;
            }
            siov[k] = (struct iovec){buf[i] + strip, len - (size_t)strip};
            k++;
        }
        for (int off = 0; off < k;) {
            int s = single ? (sendmsg(out, &sm[off].msg_hdr, 0) >= 0 ? 1 : -1)
                           : sendmmsg(out, sm + off, (unsigned)(k - off), 0);
            if (s < 0) {
                if (errno == EINTR)
                    continue;
                /* ECONNREFUSED when the sink is not up yet: count and move on. */
                dropped += (uint64_t)(k - off);
                break;
            }
            for (int i = off; i < off + s; i++)
                bytes += siov[i].iov_len;
            packets += (uint64_t)s;
            off += s;
        }
        bench_cset(cnt, BENCH_C_PACKETS, packets);
        bench_cset(cnt, BENCH_C_BYTES, bytes);
        bench_cset(cnt, BENCH_C_AUX1, dropped);
    }
}
