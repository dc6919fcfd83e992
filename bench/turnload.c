/* turnload.c - many TURN allocations from one process, for the allocation, memory and call
 * scenarios. Every session has its own client address 127.a.b.c on one shared socket (turnc.h).
 *
 *   turnload burst --server S --n N [--window W] [--perm] [--chan --peer P]
 *       allocate N as fast as the server answers (W in flight), then delete them all; prints rates.
 *   turnload churn --server S --rate R --seconds T [--window W] [--slots M]
 *       start R allocations per second, delete each as soon as it is granted; a line per second.
 *   turnload hold --server S --n N --perm --chan --peer P [--hold T]
 *       set up N allocations, print "ready", wait for a line on stdin (or T seconds), delete them.
 *   turnload calls --server S --peer ECHO --n N [--pps 50] [--size 170] [--seconds T] [--no-echo]
 *       N allocations with a channel to an echo peer, each sending pps datagrams of `size` bytes;
 *       counts what comes back and the round-trip times. The echo peer is a socket of this
 *       process bound to ECHO (--no-echo: run `sink --echo` there instead); --stats FILE gets its
 *       counters.
 *
 * Common: --user U --pass P (long-term credentials), --rto MS. Output is `key=value` lines.
 */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bench.h"
#include "turnc.h"

#define HIST_US 10
#define HIST_N 100000 /* 10 us buckets up to 1 s */

typedef struct {
    int window;
    uint64_t ok, fail, e508, eother, etimeout;
    uint64_t del_ok, del_fail;
    uint64_t t_last_done;
    uint32_t *lat_us; /* per session: last open latency */
    /* churn */
    int churn;
    uint64_t cycles;
    /* calls */
    uint64_t sent, received, misrouted, short_pkts;
    uint32_t *hist;
    uint64_t rtt_max_ns;
} load_t;

static load_t L;

static void on_done(turnc_pool_t *p, int idx, int op, int code)
{
    uint64_t now = bench_now_ns();
    L.t_last_done = now;
    if (op == TURNC_OP_OPEN) {
        if (code == 0) {
            L.ok++;
            L.lat_us[idx] = (uint32_t)((now - p->s[idx].t0_ns) / 1000);
            if (L.churn)
                turnc_close(p, idx);
        } else {
            L.fail++;
            if (code == 508)
                L.e508++;
            else if (code < 0)
                L.etimeout++;
            else
                L.eother++;
        }
    } else {
        if (code == 0) {
            L.del_ok++;
            if (L.churn)
                L.cycles++;
        } else {
            L.del_fail++;
        }
    }
}

static void on_data(turnc_pool_t *p, int idx, const uint8_t *b, size_t len)
{
    (void)p;
    if (len < 4 + 16 || (b[0] & 0xC0) != 0x40) {
        L.short_pkts++;
        return;
    }
    uint64_t ts;
    uint32_t who;
    memcpy(&ts, b + 4, 8);
    memcpy(&who, b + 12, 4);
    if ((int)who != idx)
        L.misrouted++;
    L.received++;
    uint64_t rtt = bench_now_ns() - ts;
    if (rtt > L.rtt_max_ns)
        L.rtt_max_ns = rtt;
    uint64_t b_ = rtt / 1000 / HIST_US;
    L.hist[b_ < HIST_N ? b_ : HIST_N - 1]++;
}

static double hist_pct(double pct)
{
    uint64_t total = 0, acc = 0;
    for (int i = 0; i < HIST_N; i++)
        total += L.hist[i];
    if (!total)
        return 0;
    for (int i = 0; i < HIST_N; i++) {
        acc += L.hist[i];
        if ((double)acc >= pct / 100.0 * (double)total)
            return (double)(i + 1) * HIST_US;
    }
    return (double)HIST_N * HIST_US;
}

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

static void lat_report(turnc_pool_t *p, const char *prefix)
{
    uint32_t *v = malloc((size_t)p->n * sizeof(*v));
    int k = 0;
    for (int i = 0; i < p->n; i++)
        if (p->s[i].state == TURNC_READY)
            v[k++] = L.lat_us[i];
    if (k) {
        qsort(v, (size_t)k, sizeof(*v), cmp_u32);
        printf(" %slat_p50_us=%u %slat_p99_us=%u %slat_max_us=%u", prefix, v[k / 2], prefix,
               v[(size_t)k * 99 / 100], prefix, v[k - 1]);
    }
    free(v);
}

/* Open sessions [0, n), at most `window` in flight; returns seconds elapsed to the last done. */
static double open_all(turnc_pool_t *p, int n, uint64_t deadline)
{
    uint64_t t0 = bench_now_ns();
    int next = 0;
    L.t_last_done = t0;
    while ((next < n || p->inflight > 0) && bench_now_ns() < deadline) {
        while (next < n && p->inflight < L.window)
            turnc_open(p, next++);
        (void)turnc_poll(p, 2000000ull);
    }
    return (double)(L.t_last_done - t0) / 1e9;
}

static double close_all(turnc_pool_t *p, int n, uint64_t deadline)
{
    uint64_t t0 = bench_now_ns();
    int next = 0;
    L.t_last_done = t0;
    while ((next < n || p->inflight > 0) && bench_now_ns() < deadline) {
        while (next < n && p->inflight < L.window) {
            if (p->s[next].state == TURNC_READY)
                turnc_close(p, next);
            next++;
        }
        (void)turnc_poll(p, 2000000ull);
    }
    return (double)(L.t_last_done - t0) / 1e9;
}

static void counters(turnc_pool_t *p)
{
    printf(" requests=%llu retransmits=%llu responses=%llu e401=%llu e438=%llu send_errors=%llu",
           (unsigned long long)p->requests, (unsigned long long)p->retransmits,
           (unsigned long long)p->responses, (unsigned long long)p->err_401,
           (unsigned long long)p->err_438, (unsigned long long)p->send_errors);
}

static int cmd_burst(turnc_pool_t *p, int n)
{
    double el = open_all(p, n, bench_now_ns() + 60000000000ull);
    printf("burst n=%d ok=%llu e508=%llu eother=%llu timeouts=%llu seconds=%.4f rate=%.0f", n,
           (unsigned long long)L.ok, (unsigned long long)L.e508, (unsigned long long)L.eother,
           (unsigned long long)L.etimeout, el, el > 0 ? (double)L.ok / el : 0);
    lat_report(p, "");
    printf("\n");
    fflush(stdout);
    double del = close_all(p, n, bench_now_ns() + 60000000000ull);
    printf("delete ok=%llu failed=%llu seconds=%.4f rate=%.0f", (unsigned long long)L.del_ok,
           (unsigned long long)L.del_fail, del, del > 0 ? (double)L.del_ok / del : 0);
    counters(p);
    printf("\n");
    return 0;
}

static int cmd_churn(turnc_pool_t *p, double rate, double seconds)
{
    L.churn = 1;
    uint64_t t0 = bench_now_ns(), end = t0 + (uint64_t)(seconds * 1e9),
             next_tick = t0 + 1000000000ull;
    uint64_t started = 0;
    int cursor = 0, tick = 0;
    uint64_t last_cycles = 0;
    for (;;) {
        uint64_t now = bench_now_ns();
        if (now >= end)
            break;
        double due = rate * (double)(now - t0) / 1e9 - (double)started;
        /* Start what is due, unless the window is full (then the server is not keeping up). */
        for (int k = 0; k < (int)due && p->inflight < L.window; k++) {
            int tries = 0;
            while (tries++ < p->n) {
                int st = p->s[cursor].state;
                if (st == TURNC_IDLE || st == TURNC_DONE || st == TURNC_FAILED)
                    break;
                cursor = (cursor + 1) % p->n;
            }
            turnc_open(p, cursor);
            cursor = (cursor + 1) % p->n;
            started++;
        }
        (void)turnc_poll(p, 500000ull);
        if (now >= next_tick) {
            tick++;
            printf("tick t=%d started=%llu cycles=%llu cycles_per_s=%llu inflight=%d e508=%llu "
                   "eother=%llu timeouts=%llu\n",
                   tick, (unsigned long long)started, (unsigned long long)L.cycles,
                   (unsigned long long)(L.cycles - last_cycles), p->inflight,
                   (unsigned long long)L.e508, (unsigned long long)L.eother,
                   (unsigned long long)L.etimeout);
            fflush(stdout);
            last_cycles = L.cycles;
            next_tick += 1000000000ull;
        }
    }
    double el = (double)(bench_now_ns() - t0) / 1e9;
    uint64_t cycles_in_time = L.cycles;
    (void)turnc_run(p, bench_now_ns() + 5000000000ull);
    printf(
        "churn seconds=%.2f target=%.0f started=%llu cycles=%llu rate=%.0f e508=%llu eother=%llu "
        "timeouts=%llu del_fail=%llu left_inflight=%d",
        el, rate, (unsigned long long)started, (unsigned long long)L.cycles,
        (double)cycles_in_time / el, (unsigned long long)L.e508, (unsigned long long)L.eother,
        (unsigned long long)L.etimeout, (unsigned long long)L.del_fail, p->inflight);
    counters(p);
    printf("\n");
    return 0;
}

static int cmd_hold(turnc_pool_t *p, int n, double hold)
{
    double el = open_all(p, n, bench_now_ns() + 120000000000ull);
    printf("ready n=%d ok=%llu e508=%llu eother=%llu timeouts=%llu seconds=%.3f\n", n,
           (unsigned long long)L.ok, (unsigned long long)L.e508, (unsigned long long)L.eother,
           (unsigned long long)L.etimeout, el);
    fflush(stdout);
    struct pollfd pf = {0, POLLIN, 0};
    uint64_t end = bench_now_ns() + (uint64_t)(hold * 1e9);
    /* Keep answering the socket (nothing should come) until told to go on, or the hold ends. */
    while (bench_now_ns() < end) {
        if (poll(&pf, 1, 100) > 0)
            break;
        (void)turnc_poll(p, 0);
    }
    double del = close_all(p, n, bench_now_ns() + 60000000000ull);
    printf("deleted ok=%llu failed=%llu seconds=%.3f", (unsigned long long)L.del_ok,
           (unsigned long long)L.del_fail, del);
    counters(p);
    printf("\n");
    return 0;
}

/* The echo peer of `calls`, in this process: one socket, read and answered in batches at the same
 * cadence as the client side, so the load core spends its time on packets and not on wakeups. */
#define ECHO_BATCH 64
static uint64_t echo_rx, echo_tx, echo_fail;

static void echo_io(int fd, uint64_t *cnt)
{
    static uint8_t buf[ECHO_BATCH][2048];
    static struct sockaddr_in from[ECHO_BATCH];
    static struct iovec iov[ECHO_BATCH];
    static struct mmsghdr m[ECHO_BATCH];
    for (int round = 0; round < 64; round++) {
        for (int i = 0; i < ECHO_BATCH; i++) {
            iov[i] = (struct iovec){buf[i], sizeof(buf[i])};
            m[i].msg_hdr = (struct msghdr){.msg_name = &from[i],
                                           .msg_namelen = sizeof(from[i]),
                                           .msg_iov = &iov[i],
                                           .msg_iovlen = 1};
        }
        int n = recvmmsg(fd, m, ECHO_BATCH, MSG_DONTWAIT, NULL);
        if (n <= 0)
            break;
        echo_rx += (uint64_t)n;
        for (int i = 0; i < n; i++)
            iov[i].iov_len = m[i].msg_len;
        for (int off = 0; off < n;) {
            int s = sendmmsg(fd, m + off, (unsigned)(n - off), MSG_DONTWAIT);
            if (s > 0) {
                echo_tx += (uint64_t)s;
                off += s;
            } else if (s < 0 && errno == EINTR) {
                continue;
            } else {
                echo_fail++;
                off++;
            }
        }
        if (n < ECHO_BATCH)
            break;
    }
    bench_cset(cnt, BENCH_C_PACKETS, echo_rx);
    bench_cset(cnt, BENCH_C_AUX1, echo_tx);
    bench_cset(cnt, BENCH_C_AUX2, echo_fail);
}

/* Sleep until the client or the echo socket has input (or `ns` passes), then serve both. */
static void calls_wait(turnc_pool_t *p, int echo_fd, uint64_t ns, uint64_t *cnt)
{
    turnc_flush(p);
    if (echo_fd >= 0) {
        struct pollfd pf[2] = {{p->fd, POLLIN, 0}, {echo_fd, POLLIN, 0}};
        struct timespec ts = {0, (long)ns};
        (void)ppoll(pf, 2, &ts, NULL);
        echo_io(echo_fd, cnt);
        (void)turnc_poll(p, 0);
    } else {
        (void)turnc_poll(p, ns);
    }
}

static int cmd_calls(turnc_pool_t *p, int n, double pps, size_t size, double seconds, int echo_fd,
                     uint64_t *cnt)
{
    double el = open_all(p, n, bench_now_ns() + 60000000000ull);
    printf("ready n=%d ok=%llu failed=%llu seconds=%.3f\n", n, (unsigned long long)L.ok,
           (unsigned long long)L.fail, el);
    fflush(stdout);
    if (size < 16)
        size = 16;
    uint64_t t0 = bench_now_ns(), end = t0 + (uint64_t)(seconds * 1e9);
    uint64_t c = 0; /* packets scheduled so far, in session order round after round */
    double per_ns = (double)n * pps / 1e9;
    for (;;) {
        uint64_t now = bench_now_ns();
        if (now >= end)
            break;
        uint64_t due = (uint64_t)((double)(now - t0) * per_ns) + 1;
        for (; c < due; c++) {
            int idx = (int)(c % (uint64_t)n);
            if (p->s[idx].state != TURNC_READY)
                continue;
            uint8_t *b = turnc_queue(p, idx, &p->cfg.server);
            b[0] = (uint8_t)(0x40 | (p->cfg.channel >> 8 & 0x3f));
            b[1] = (uint8_t)p->cfg.channel;
            b[2] = (uint8_t)(size >> 8);
            b[3] = (uint8_t)size;
            uint64_t ts = bench_now_ns();
            uint32_t who = (uint32_t)idx, seq = (uint32_t)(c / (uint64_t)n);
            memcpy(b + 4, &ts, 8);
            memcpy(b + 12, &who, 4);
            memcpy(b + 16, &seq, 4);
            memset(b + 20, 0x5a, size - 16);
            turnc_queue_commit(p, 4 + size);
            L.sent++;
        }
        calls_wait(p, echo_fd, 300000ull, cnt);
    }
    /* Let what is in flight come back: a round trip on loopback is well under this. */
    uint64_t drain_end = bench_now_ns() + 500000000ull;
    while (bench_now_ns() < drain_end)
        calls_wait(p, echo_fd, 1000000ull, cnt);
    double loss = L.sent ? 1.0 - (double)L.received / (double)L.sent : 0;
    printf("calls n=%d ready=%llu seconds=%.2f sent=%llu received=%llu loss=%.6f misrouted=%llu "
           "rtt_p50_us=%.0f rtt_p99_us=%.0f rtt_p999_us=%.0f rtt_max_us=%.0f\n",
           n, (unsigned long long)L.ok, seconds, (unsigned long long)L.sent,
           (unsigned long long)L.received, loss, (unsigned long long)L.misrouted, hist_pct(50),
           hist_pct(99), hist_pct(99.9), (double)L.rtt_max_ns / 1000.0);
    fflush(stdout);
    L.window = 256;
    double del = close_all(p, n, bench_now_ns() + 60000000000ull);
    printf("deleted ok=%llu failed=%llu seconds=%.3f", (unsigned long long)L.del_ok,
           (unsigned long long)L.del_fail, del);
    counters(p);
    printf("\n");
    return 0;
}

int main(int argc, char **argv)
{
    if (argc < 2 || argv[1][0] == '-') {
        fprintf(stderr, "usage: turnload burst|churn|hold|calls --server IP:PORT [options] "
                        "(see the comment at the top of turnload.c)\n");
        return 2;
    }
    const char *cmd = argv[1];
    int n = (int)bench_optf(argc, argv, "--n", 1000);
    double seconds = bench_optf(argc, argv, "--seconds", 5);
    double rate = bench_optf(argc, argv, "--rate", 1000);
    double hold = bench_optf(argc, argv, "--hold", 60);
    L.window = (int)bench_optf(argc, argv, "--window", 256);
    turnc_cfg_t cfg = {
        .user = bench_opt(argc, argv, "--user", "u"),
        .pass = bench_opt(argc, argv, "--pass", "p"),
        .want_perm = bench_flag(argc, argv, "--perm"),
        .want_chan = bench_flag(argc, argv, "--chan"),
        .channel = 0x4000,
        .rto_ms = (int)bench_optf(argc, argv, "--rto", 500),
        .max_tries = 4,
        .shared = 1,
    };
    bench_addr(bench_opt(argc, argv, "--server", "127.0.0.1:3478"), &cfg.server);
    bench_addr(bench_opt(argc, argv, "--peer", "127.0.0.1:9"), &cfg.peer);
    int slots = n;
    if (strcmp(cmd, "churn") == 0) {
        slots = (int)bench_optf(argc, argv, "--slots", 60000);
        L.window = (int)bench_optf(argc, argv, "--window", 4000);
        bench_deadline(seconds + 30);
    } else if (strcmp(cmd, "calls") == 0) {
        cfg.want_perm = 1;
        cfg.want_chan = 1;
        bench_deadline(seconds + 150);
    } else if (strcmp(cmd, "hold") == 0) {
        bench_deadline(hold + 250);
    } else if (strcmp(cmd, "burst") == 0) {
        bench_deadline(150);
    } else {
        bench_die("unknown command %s", cmd);
    }
    turnc_pool_t *p = turnc_pool_new(&cfg, slots);
    p->on_done = on_done;
    p->on_data = on_data;
    L.lat_us = calloc((size_t)slots, sizeof(uint32_t));
    L.hist = calloc(HIST_N, sizeof(uint32_t));
    if (!L.lat_us || !L.hist)
        bench_die("out of memory");
    int rc;
    if (strcmp(cmd, "burst") == 0)
        rc = cmd_burst(p, n);
    else if (strcmp(cmd, "churn") == 0)
        rc = cmd_churn(p, rate, seconds);
    else if (strcmp(cmd, "hold") == 0)
        rc = cmd_hold(p, n, hold);
    else {
        /* The echo peer lives at --peer: bound here, unless --no-echo (an external one). */
        int echo_fd = bench_flag(argc, argv, "--no-echo") ? -1 : bench_udp(&cfg.peer, 1);
        uint64_t *cnt = bench_counters(bench_opt(argc, argv, "--stats", NULL));
        rc = cmd_calls(p, n, bench_optf(argc, argv, "--pps", 50),
                       (size_t)bench_optf(argc, argv, "--size", 170), seconds, echo_fd, cnt);
    }
    fflush(stdout);
    turnc_pool_free(p);
    return rc;
}
