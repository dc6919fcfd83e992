/* bare_rewrite.c - loads bare_rewrite.bpf.c (the kernel-path limit of bench/run's kcpu and sat
 * scenarios) on clsact ingress of one interface, waits, and takes it away again.
 *
 *   bare_rewrite --dev lo --match 127.0.0.1:P --from 127.0.0.2:R --to 127.0.0.1:Q --strip 0|4
 *                [--prio N] [--seconds S] [--run-stats]
 *   bare_rewrite --stats-only [--seconds S]
 *
 * Datagrams to --match leave TC as datagrams from --from to --to (with --strip 4, the first 4
 * payload bytes, a ChannelData header, are removed). It prints "ready" once attached, and at the
 * end (SIGTERM, SIGINT or --seconds) it removes its filter and prints what the program did. The
 * --run-stats turns on the kernel's BPF run-time statistics (BPF_ENABLE_STATS: run_time_ns and
 * run_cnt of every program, `bpftool prog show`) for as long as it runs; --stats-only does only
 * that, so bench/run can time uturnd's program the same way. The statistics cost every BPF program
 * on the machine two clock reads per run while they are on. The clsact qdisc is shared and left in
 * place (bench/run runs this in a network namespace of its own, which takes the qdisc with it).
 * Addresses must be in 127.0.0.0/8. Needs CAP_BPF + CAP_NET_ADMIN.
 */
#include <errno.h>
#include <net/if.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include "bare_rewrite.skel.h"
#include "bench.h"

static volatile sig_atomic_t stop_now;

static void on_signal(int sig)
{
    (void)sig;
    stop_now = 1;
}

static int print_libbpf(enum libbpf_print_level level, const char *fmt, va_list ap)
{
    if (level == LIBBPF_DEBUG)
        return 0;
    return vfprintf(stderr, fmt, ap);
}

static void sum_counts(int fd, __u64 out[3])
{
    int ncpu = libbpf_num_possible_cpus();
    __u64 *v = calloc((size_t)(ncpu > 0 ? ncpu : 1), sizeof(__u64));
    for (__u32 k = 0; k < 3 && v; k++) {
        out[k] = 0;
        if (bpf_map_lookup_elem(fd, &k, v) == 0)
            for (int c = 0; c < ncpu; c++)
                out[k] += v[c];
    }
    free(v);
}

int main(int argc, char **argv)
{
    if (argc < 2 || bench_flag(argc, argv, "--help")) {
        fprintf(stderr, "usage: bare_rewrite --dev IF --match IP:PORT --from IP:PORT --to IP:PORT "
                        "--strip 0|4 [--no-csum] [--prio N] [--seconds S]\n");
        return 2;
    }
    struct sockaddr_in match, from, to;
    const char *dev = bench_opt(argc, argv, "--dev", "lo");
    bench_addr(bench_opt(argc, argv, "--match", "127.0.0.1:0"), &match);
    bench_addr(bench_opt(argc, argv, "--from", "127.0.0.2:0"), &from);
    bench_addr(bench_opt(argc, argv, "--to", "127.0.0.1:0"), &to);
    int strip = (int)bench_optf(argc, argv, "--strip", 4);
    int prio = (int)bench_optf(argc, argv, "--prio", 0x6262);
    if (strip != 0 && strip != 4)
        bench_die("--strip is 0 or 4");
    int ifindex = (int)if_nametoindex(dev);
    if (!ifindex)
        bench_die("no interface %s", dev);
    bench_deadline(bench_optf(argc, argv, "--seconds", 600));
    libbpf_set_print(print_libbpf);
    signal(SIGTERM, on_signal);
    signal(SIGINT, on_signal);
    signal(SIGALRM, on_signal);
    int stats_fd = -1;
    if (bench_flag(argc, argv, "--run-stats") || bench_flag(argc, argv, "--stats-only")) {
        stats_fd = bpf_enable_stats(BPF_STATS_RUN_TIME);
        if (stats_fd < 0)
            bench_die("BPF_ENABLE_STATS: %s", strerror(-stats_fd));
    }
    if (bench_flag(argc, argv, "--stats-only")) {
        printf("ready stats=on\n");
        fflush(stdout);
        while (!stop_now)
            pause();
        printf("done\n");
        return 0;
    }

    struct bare_rewrite_bpf *skel = bare_rewrite_bpf__open();
    if (!skel)
        bench_die("opening the BPF object: %s", strerror(errno));
    skel->rodata->cfg_match_ip = match.sin_addr.s_addr;
    skel->rodata->cfg_match_port = match.sin_port;
    skel->rodata->cfg_src_ip = from.sin_addr.s_addr;
    skel->rodata->cfg_src_port = from.sin_port;
    skel->rodata->cfg_dst_ip = to.sin_addr.s_addr;
    skel->rodata->cfg_dst_port = to.sin_port;
    skel->rodata->cfg_strip = (__u32)strip;
    skel->rodata->cfg_no_csum = bench_flag(argc, argv, "--no-csum") ? 1 : 0;
    int rc = bare_rewrite_bpf__load(skel);
    if (rc)
        bench_die("loading the BPF program: %s", strerror(-rc));

    DECLARE_LIBBPF_OPTS(bpf_tc_hook, hook, .ifindex = ifindex, .attach_point = BPF_TC_INGRESS);
    rc = bpf_tc_hook_create(&hook);
    if (rc && rc != -EEXIST)
        bench_die("clsact on %s: %s", dev, strerror(-rc));
    DECLARE_LIBBPF_OPTS(bpf_tc_opts, opts, .prog_fd = bpf_program__fd(skel->progs.bare_rewrite),
                        .handle = (__u32)getpid(), .priority = (__u32)prio);
    rc = bpf_tc_attach(&hook, &opts);
    if (rc)
        bench_die("attaching on %s: %s", dev, strerror(-rc));
    struct bpf_prog_info info;
    __u32 ilen = sizeof(info);
    memset(&info, 0, sizeof(info));
    (void)bpf_obj_get_info_by_fd(opts.prog_fd, &info, &ilen);
    printf("ready dev=%s strip=%d prio=%d handle=%d prog_id=%u\n", dev, strip, prio, (int)getpid(),
           info.id);
    fflush(stdout);
    while (!stop_now)
        pause();
    __u64 run_ns = 0, run_cnt = 0;
    ilen = sizeof(info);
    memset(&info, 0, sizeof(info));
    if (bpf_obj_get_info_by_fd(bpf_program__fd(skel->progs.bare_rewrite), &info, &ilen) == 0) {
        run_ns = info.run_time_ns;
        run_cnt = info.run_cnt;
    }
    opts.prog_fd = opts.prog_id = opts.flags = 0;
    rc = bpf_tc_detach(&hook, &opts);
    __u64 c[3] = {0, 0, 0};
    sum_counts(bpf_map__fd(skel->maps.bare_count), c);
    printf("done rewritten=%llu passed_gso=%llu passed_other=%llu run_ns=%llu run_cnt=%llu "
           "detached=%s\n",
           (unsigned long long)c[0], (unsigned long long)c[1], (unsigned long long)c[2],
           (unsigned long long)run_ns, (unsigned long long)run_cnt, rc ? strerror(-rc) : "yes");
    fflush(stdout);
    bare_rewrite_bpf__destroy(skel);
    if (stats_fd >= 0)
        close(stats_fd);
    return rc ? 1 : 0;
}
