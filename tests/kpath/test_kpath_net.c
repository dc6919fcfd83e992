/* test_kpath_net.c - the kernel fast path's TC program (server/kpath/kpath.bpf.c) on real
 * interfaces of a private network namespace where no relay runs in user space: on loopback, from
 * local sockets (CHECKSUM_PARTIAL skbs) and as injected frames with full checksums, and through a
 * veth into a second namespace (bpf_redirect, bpf_redirect_neigh), where a packet capture checks
 * the checksum (or the PARTIAL seed) of every datagram. Needs root (kpt_start: SKIP otherwise). */
#include <arpa/inet.h>
#include <errno.h>
#include <net/if.h>
#include <netinet/in.h>
#include <poll.h>
#include <sched.h>
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

/* ---- on the namespace's loopback, no relay in user space ---- */

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

static int bound_socket(const kpt_ep_t *e)
{
    struct sockaddr_storage ss;
    kpt_to_sa(e, &ss);
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
static ssize_t receive(int rfd, const kpt_ep_t *from, uint8_t *got, size_t cap)
{
    struct sockaddr_storage src, want;
    struct pollfd p = {.fd = rfd, .events = POLLIN};
    if (poll(&p, 1, 1000) != 1)
        return -1;
    socklen_t srcl = sizeof(src);
    ssize_t r = recvfrom(rfd, got, cap, 0, (struct sockaddr *)&src, &srcl);
    kpt_to_sa(from, &want);
    int same = src.ss_family == want.ss_family &&
               (from->family == 4 ? memcmp(&src, &want, sizeof(struct sockaddr_in)) == 0
                                  : memcmp(&((struct sockaddr_in6 *)&src)->sin6_addr,
                                           &((struct sockaddr_in6 *)&want)->sin6_addr, 16) == 0 &&
                                        ((struct sockaddr_in6 *)&src)->sin6_port ==
                                            ((struct sockaddr_in6 *)&want)->sin6_port);
    return same ? r : -3;
}

/* One datagram from `a` (socket fd, or injected when fd < 0) to `to`, received on rfd. */
static ssize_t hop2(int fd, const kpt_ep_t *a, const kpt_ep_t *to, const uint8_t *buf, size_t n,
                    int rfd, const kpt_ep_t *from, uint8_t *got, size_t cap)
{
    if (fd >= 0) {
        struct sockaddr_storage ss;
        kpt_to_sa(to, &ss);
        socklen_t sl = to->family == 4 ? sizeof(struct sockaddr_in) : sizeof(struct sockaddr_in6);
        if (sendto(fd, buf, n, 0, (struct sockaddr *)&ss, sl) != (ssize_t)n)
            return -2;
    } else {
        uint8_t frame[KPT_MAXPKT];
        if (inject(frame, kpt_build(frame, a, to, buf, n, 0)) != 0)
            return -2;
    }
    return receive(rfd, from, got, cap);
}

static void sockets(int family, int injected)
{
    kpt_world_t w = kpt_world(family);
    kpt_clear_maps();
    kpt_slot_reset(KPT_SLOT, 0);
    uint64_t exp = kpt_now_ns() + 60000000000ull;
    int cfd = bound_socket(&w.client), pfd = bound_socket(&w.peer);
    int csend = injected ? -1 : cfd, psend = injected ? -1 : pfd;
    long long err0 = csum_errors();
    uint8_t d[KPT_MAXPKT], pl[KPT_MAXPKT], got[KPT_MAXPKT], want[KPT_MAXPKT];
    size_t bad[4] = {0, 0, 0, 0};
    const size_t max = 1400;
    for (int phase = 0; phase < 2; phase++) {
        /* Phase 0: a channel both ways. Phase 1: Send and Data indications. */
        kpt_clear_maps();
        if (phase == 0) {
            kpt_c2p_set(&w.client, &w.server, 0x4001, &w.relay, &w.peer, KPT_SLOT, exp);
            kpt_p2c_set(&w.relay, &w.peer, &w.client, &w.server, 0x4001, KPT_SLOT, exp);
        } else {
            kpt_c2p_set(&w.client, &w.server, 0, &w.relay, NULL, KPT_SLOT, exp);
            kpt_p2c_set(&w.relay, NULL, &w.client, &w.server, 0, KPT_SLOT, exp);
        }
        kpt_perm_set(KPT_SLOT, &w.peer, exp);
        for (size_t n = 0; n <= max; n++) {
            kpt_fill(d, n, (unsigned)n + 11 * (unsigned)phase);
            size_t pn = phase == 0 ? kpt_channel_data(pl, 0x4001, d, n, 0)
                                   : kpt_send_ind(pl, &w.peer, d, n, 0, 0, 0);
            ssize_t r = hop2(csend, &w.client, &w.server, pl, pn, pfd, &w.relay, got, sizeof(got));
            if (r != (ssize_t)n || memcmp(got, d, n) != 0) {
                if (bad[phase * 2]++ < 3)
                    fprintf(stderr, "v%d %s %s size %zu: peer got %zd\n", family,
                            injected ? "injected" : "socket", phase ? "Send" : "ChannelData", n, r);
            }
            r = hop2(psend, &w.peer, &w.relay, d, n, cfd, &w.server, got, sizeof(got));
            size_t wn = phase == 0 ? kpt_channel_data(want, 0x4001, d, n, 0)
                                   : kpt_data_ind(want, &w.peer, d, n, r >= 20 ? got + 8 : d);
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
    struct kpath_count c = kpt_slot_counts(KPT_SLOT);
    CHECK_INT(c.to_peer_packets, 2 * (max + 1));
    CHECK_INT(c.from_peer_packets, 2 * (max + 1));
    if (injected) {
        /* A corrupted datagram stays corrupted: the peer's stack drops it and counts it. */
        kpt_fill(d, 100, 77);
        size_t pn = kpt_channel_data(pl, 0x4001, d, 100, 0);
        kpt_clear_maps();
        kpt_c2p_set(&w.client, &w.server, 0x4001, &w.relay, &w.peer, KPT_SLOT, exp);
        uint8_t frame[KPT_MAXPKT];
        size_t fn = kpt_build(frame, &w.client, &w.server, pl, pn, 0);
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
    DECLARE_LIBBPF_OPTS(bpf_tc_opts, o, .prog_fd = kpt_prog_fd, .handle = 1,
                        .priority = KPATH_TC_PRIO);
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

/* ---- through a veth to another namespace (bpf_redirect, bpf_redirect_neigh) ---- */

/* In the far namespace: the UDP datagram to `to` captured on kpb, its checksum checked the way
 * its skb says: a CHECKSUM_PARTIAL one (a veth keeps it) must hold the pseudo-header seed, any
 * other the full checksum. 1 ok, 0 bad, -1 not seen. */
static size_t seen_partial, seen_full;

static int capture_check(int cap, const kpt_ep_t *to)
{
    for (int tries = 0; tries < 16; tries++) {
        struct pollfd p = {.fd = cap, .events = POLLIN};
        if (poll(&p, 1, 1000) != 1)
            return -1;
        uint8_t f[KPT_MAXPKT];
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
        if (n < KPT_ETH + 28 || from.sll_pkttype == PACKET_OUTGOING)
            continue;
        int v4 = f[12] == 0x08 && f[13] == 0x00, v6 = f[12] == 0x86 && f[13] == 0xdd;
        if ((to->family == 4 && !v4) || (to->family == 6 && !v6))
            continue;
        size_t iphl = v4 ? 20 : 40;
        const uint8_t *ip = f + KPT_ETH, *uh = ip + iphl;
        if ((v4 ? ip[9] : ip[6]) != 17 || memcmp(v4 ? ip + 16 : ip + 24, to->ip, v4 ? 4 : 16) ||
            (uh[2] << 8 | uh[3]) != to->port)
            continue;
        unsigned status = 0;
        for (struct cmsghdr *c = CMSG_FIRSTHDR(&m); c; c = CMSG_NXTHDR(&m, c))
            if (c->cmsg_level == SOL_PACKET && c->cmsg_type == PACKET_AUXDATA)
                status = ((struct tpacket_auxdata *)(void *)CMSG_DATA(c))->tp_status;
        if (!(status & TP_STATUS_CSUMNOTREADY)) {
            seen_full++;
            return kpt_udp_csum_ok(f, (size_t)n);
        }
        seen_partial++;
        size_t ulen = (size_t)uh[4] << 8 | uh[5];
        uint32_t ps =
            (v4 ? kpt_sum16(ip + 12, 8, 0) : kpt_sum16(ip + 8, 32, 0)) + 17 + (uint32_t)ulen;
        uint16_t seed = (uint16_t)~kpt_fin16(ps);
        return (uh[6] << 8 | uh[7]) == seed;
    }
    return -1;
}

typedef struct {
    kpt_ep_t client, peer, server, relay;
} vworld_t;

static vworld_t vworld(int family)
{
    vworld_t w;
    const char *a = family == 4 ? "198.18.0.1" : "2001:db8::1";
    w.server = kpt_ep(family, a, 3478);
    w.relay = kpt_ep(family, a, 50000);
    w.client = kpt_ep(family, family == 4 ? "198.18.0.2" : "2001:db8::2", 40000);
    w.peer = kpt_ep(family, family == 4 ? "198.18.0.3" : "2001:db8::3", 60000);
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
        kpt_sh("ip link set lo up && ip addr add 198.18.0.2/24 dev kpb && "
               "ip addr add 198.18.0.3/24 dev kpb && ip link set kpb up");
    else
        kpt_sh("ip link set lo up && ip addr add 2001:db8::2/64 dev kpb nodad && "
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
    uint8_t d[KPT_MAXPKT], pl[KPT_MAXPKT], got[KPT_MAXPKT], want[KPT_MAXPKT];
    /* From the sockets (CHECKSUM_PARTIAL), then as frames injected on kpb (full checksums). */
    inject_ifindex = (int)if_nametoindex("kpb");
    inject_fd = -1; /* a packet socket inherited from the parent sends in the parent's namespace */
    for (size_t i = 0; i <= 2 * 1400 + 1 && bad < 6; i++) {
        size_t n = i % 1401;
        int csend = i <= 1400 ? cfd : -1, psend = i <= 1400 ? pfd : -1;
        kpt_fill(d, n, (unsigned)n + 21);
        size_t pn = kpt_channel_data(pl, 0x4001, d, n, 0);
        ssize_t r = hop2(csend, &w.client, &w.server, pl, pn, pfd, &w.relay, got, sizeof(got));
        int ck = capture_check(cap, &w.peer);
        if (r != (ssize_t)n || memcmp(got, d, n) != 0 || ck != 1) {
            bad++;
            fprintf(stderr, "veth v%d to peer, size %zu: got %zd, checksum %d\n", family, n, r, ck);
        }
        r = hop2(psend, &w.peer, &w.relay, d, n, cfd, &w.server, got, sizeof(got));
        size_t wn = kpt_channel_data(want, 0x4001, d, n, 0);
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
    CHECK_INT(kpt_sh("ip link add kpa type veth peer name kpb netns %d", (int)pid), 0);
    CHECK_INT(family == 4
                  ? kpt_sh("ip addr add 198.18.0.1/24 dev kpa && ip link set kpa up")
                  : kpt_sh("ip addr add 2001:db8::1/64 dev kpa nodad && ip link set kpa up"),
              0);
    kpt_write_file(family == 4 ? "/proc/sys/net/ipv4/conf/kpa/forwarding"
                               : "/proc/sys/net/ipv6/conf/kpa/forwarding",
                   "1");
    int ifi = (int)if_nametoindex("kpa");
    DECLARE_LIBBPF_OPTS(bpf_tc_hook, hook, .ifindex = ifi, .attach_point = BPF_TC_INGRESS);
    CHECK_INT(bpf_tc_hook_create(&hook), 0);
    DECLARE_LIBBPF_OPTS(bpf_tc_opts, o, .prog_fd = kpt_prog_fd, .handle = 1,
                        .priority = KPATH_TC_PRIO);
    CHECK_INT(bpf_tc_attach(&hook, &o), 0);
    kpt_clear_maps();
    kpt_slot_reset(KPT_SLOT, 0);
    uint64_t exp = kpt_now_ns() + 60000000000ull;
    kpt_c2p_set(&w.client, &w.server, 0x4001, &w.relay, &w.peer, KPT_SLOT, exp);
    kpt_p2c_set(&w.relay, &w.peer, &w.client, &w.server, 0x4001, KPT_SLOT, exp);
    kpt_perm_set(KPT_SLOT, &w.peer, exp);
    uint64_t f0 = kpt_global(KPATH_G_REDIRECT_FAIL), r0 = kpt_global(KPATH_G_PASS_ROUTE);
    CHECK_INT(write(go[1], "g", 1), 1);
    int st = 0;
    waitpid(pid, &st, 0);
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    struct kpath_count c = kpt_slot_counts(KPT_SLOT);
    CHECK_INT(c.to_peer_packets, 2 * 1401);
    CHECK_INT(c.from_peer_packets, 2 * 1401);
    CHECK_INT(kpt_global(KPATH_G_REDIRECT_FAIL) - f0, 0);
    CHECK_INT(kpt_global(KPATH_G_PASS_ROUTE) - r0, 0);
    close(go[1]);
    kpt_sh("ip link del kpa 2>/dev/null");
}

/* Both legs remote: client and peer in another namespace behind a veth, the relay in ours, so
 * every datagram leaves through bpf_redirect_neigh (first) or bpf_redirect. Their sockets make
 * CHECKSUM_PARTIAL skbs, which a veth keeps: the far side's capture checks the seed the program
 * left. Then frames injected with full checksums: the capture checks the checksum in full. */
UNIT_TEST(veth_v4) { veth(4); }
UNIT_TEST(veth_v6) { veth(6); }

int main(int argc, char **argv)
{
    unit_args(argc, argv);
    kpt_start();
    unit_run();
    kpt_stop();
    return unit_done("test_kpath_net");
}
