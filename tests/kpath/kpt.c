/* kpt.c - what the kernel path's test programs (test_kpath_prog, test_kpath_net) share: a
 * private network namespace with the TC program loaded, the maps filled as the workers fill them
 * (kpath_abi.h), and a packet builder and UDP checksum of their own (RFC 768, RFC 8200 §8.1,
 * RFC 1071) to check the program's output against. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <net/if.h>
#include <netinet/in.h>
#include <sched.h>
#include <stdarg.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <time.h>

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <linux/pkt_cls.h>

#include "kpt.h"
#include "stun.h"
#include "stun_build.h"
#include "unit.h"

struct kpath_bpf *kpt_skel;
int kpt_prog_fd;

uint64_t kpt_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* ---- an independent checksum and packet builder (RFC 768, RFC 8200 §8.1, RFC 1071) ---- */

uint32_t kpt_sum16(const uint8_t *p, size_t n, uint32_t s)
{
    for (size_t i = 0; i + 1 < n; i += 2)
        s += (uint32_t)p[i] << 8 | p[i + 1];
    if (n & 1)
        s += (uint32_t)p[n - 1] << 8;
    return s;
}

uint16_t kpt_fin16(uint32_t s)
{
    while (s >> 16)
        s = (s & 0xffff) + (s >> 16);
    return (uint16_t)~s;
}

kpt_ep_t kpt_ep(int family, const char *ip, uint16_t port)
{
    kpt_ep_t e = {.family = family, .port = port};
    inet_pton(family == 4 ? AF_INET : AF_INET6, ip, e.ip);
    return e;
}

/* eth (zero MACs) + IP + UDP + payload. `as_sent`: the header a Linux UDP socket sends (DF, id 0,
 * TTL 64), which is what the program must write; otherwise an arbitrary incoming one. */
size_t kpt_build(uint8_t *o, const kpt_ep_t *s, const kpt_ep_t *d, const uint8_t *pl, size_t n,
                 int as_sent)
{
    memset(o, 0, KPT_ETH);
    size_t iphl = s->family == 4 ? 20 : 40, ulen = 8 + n;
    uint8_t *ip = o + KPT_ETH, *uh = ip + iphl;
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
        uint16_t c = kpt_fin16(kpt_sum16(ip, 20, 0));
        ip[10] = (uint8_t)(c >> 8);
        ip[11] = (uint8_t)c;
        ps = kpt_sum16(s->ip, 4, 0) + kpt_sum16(d->ip, 4, 0) + 17 + (uint32_t)ulen;
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
        ps = kpt_sum16(s->ip, 16, 0) + kpt_sum16(d->ip, 16, 0) + 17 + (uint32_t)ulen;
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
    uint16_t c = kpt_fin16(kpt_sum16(uh, ulen, ps));
    if (c == 0)
        c = 0xffff;
    uh[6] = (uint8_t)(c >> 8);
    uh[7] = (uint8_t)c;
    return KPT_ETH + iphl + ulen;
}

/* Is the UDP checksum of a built packet right? Independent of the builder's bookkeeping. */
int kpt_udp_csum_ok(const uint8_t *pkt, size_t len)
{
    int v4 = pkt[12] == 0x08;
    size_t iphl = v4 ? 20 : 40;
    const uint8_t *ip = pkt + KPT_ETH, *uh = ip + iphl;
    size_t ulen = (size_t)uh[4] << 8 | uh[5];
    if (KPT_ETH + iphl + ulen != len)
        return 0;
    uint32_t ps = v4 ? kpt_sum16(ip + 12, 8, 0) : kpt_sum16(ip + 8, 32, 0);
    ps += 17 + (uint32_t)ulen;
    if (v4 && uh[6] == 0 && uh[7] == 0)
        return 1;
    return kpt_fin16(kpt_sum16(uh, ulen, ps)) == 0;
}

/* ---- the maps, as the workers fill them (kpath_abi.h) ---- */

static struct kpath_c2p_key c2p_key(const kpt_ep_t *client, const kpt_ep_t *server,
                                    uint16_t channel)
{
    struct kpath_c2p_key k;
    memset(&k, 0, sizeof(k));
    size_t al = client->family == 4 ? 4 : 16;
    memcpy(k.client_ip, client->ip, al);
    if (server)
        memcpy(k.server_ip, server->ip, al);
    k.client_port = htons(client->port);
    k.server_port = htons(server ? server->port : 3478);
    k.channel = channel;
    k.family = (uint8_t)client->family;
    return k;
}

/* Where an entry lives, as kpath.c's map_of() decides: IPv4 ones in the maps with short keys
 * (kpath_abi.h), the key in that form in *buf. */
static int c2p_map(const struct kpath_c2p_key *k, struct kpath_c2p4_key *buf, const void **mk)
{
    *mk = k;
    if (k->family != 4)
        return bpf_map__fd(kpt_skel->maps.kp_c2p);
    *buf = kpath_c2p4_key(k);
    *mk = buf;
    return bpf_map__fd(kpt_skel->maps.kp_c2p4);
}

int kpt_c2p_get(const kpt_ep_t *client, const kpt_ep_t *server, uint16_t channel,
                struct kpath_c2p_val *v)
{
    struct kpath_c2p_key k = c2p_key(client, server, channel);
    struct kpath_c2p4_key k4;
    const void *mk;
    int fd = c2p_map(&k, &k4, &mk);
    return bpf_map_lookup_elem(fd, mk, v);
}

int kpt_c2p_put(const kpt_ep_t *client, const kpt_ep_t *server, uint16_t channel,
                const struct kpath_c2p_val *v)
{
    struct kpath_c2p_key k = c2p_key(client, server, channel);
    struct kpath_c2p4_key k4;
    const void *mk;
    int fd = c2p_map(&k, &k4, &mk);
    return bpf_map_update_elem(fd, mk, v, BPF_EXIST);
}

void kpt_c2p_set(const kpt_ep_t *client, const kpt_ep_t *server, uint16_t channel,
                 const kpt_ep_t *relay, const kpt_ep_t *peer, uint32_t slot, uint64_t expires)
{
    struct kpath_c2p_key k = c2p_key(client, server, channel);
    struct kpath_c2p_val v;
    memset(&v, 0, sizeof(v));
    size_t al = client->family == 4 ? 4 : 16;
    v.expires_ns = expires;
    v.slot = slot;
    memcpy(v.relay_ip, relay->ip, al);
    v.relay_port = htons(relay->port);
    if (peer) {
        memcpy(v.peer_ip, peer->ip, al);
        v.peer_port = htons(peer->port);
    }
    struct kpath_c2p4_key k4;
    const void *mk;
    int fd = c2p_map(&k, &k4, &mk);
    CHECK_INT(bpf_map_update_elem(fd, mk, &v, BPF_ANY), 0);
}

void kpt_p2c_set(const kpt_ep_t *relay, const kpt_ep_t *peer, const kpt_ep_t *client,
                 const kpt_ep_t *server, uint16_t channel, uint32_t slot, uint64_t expires)
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
    if (k.family == 4) {
        struct kpath_p2c4_key k4 = kpath_p2c4_key(&k);
        CHECK_INT(bpf_map_update_elem(bpf_map__fd(kpt_skel->maps.kp_p2c4), &k4, &v, BPF_ANY), 0);
    } else {
        CHECK_INT(bpf_map_update_elem(bpf_map__fd(kpt_skel->maps.kp_p2c), &k, &v, BPF_ANY), 0);
    }
    kpt_skel->data->kp_claims_gen++; /* as kpath.c does after a kp_p2c or kp_perm write */
}

void kpt_perm_set(uint32_t slot, const kpt_ep_t *peer, uint64_t expires)
{
    struct kpath_perm_key k;
    memset(&k, 0, sizeof(k));
    k.slot = slot;
    k.family = (uint8_t)peer->family;
    memcpy(k.peer_ip, peer->ip, peer->family == 4 ? 4 : 16);
    struct kpath_perm_val v = {.expires_ns = expires};
    if (k.family == 4) {
        struct kpath_perm4_key k4 = kpath_perm4_key(&k);
        CHECK_INT(bpf_map_update_elem(bpf_map__fd(kpt_skel->maps.kp_perm4), &k4, &v, BPF_ANY), 0);
    } else {
        CHECK_INT(bpf_map_update_elem(bpf_map__fd(kpt_skel->maps.kp_perm), &k, &v, BPF_ANY), 0);
    }
    kpt_skel->data->kp_claims_gen++;
}

void kpt_slot_reset(uint32_t slot, uint64_t bps)
{
    int ncpu = libbpf_num_possible_cpus();
    struct kpath_count *zero = calloc((size_t)ncpu, sizeof(*zero));
    CHECK_INT(bpf_map_update_elem(bpf_map__fd(kpt_skel->maps.kp_count), &slot, zero, BPF_ANY), 0);
    free(zero);
    struct kpath_bucket b;
    memset(&b, 0, sizeof(b));
    b.bps = b.tokens = bps;
    CHECK_INT(bpf_map_update_elem(bpf_map__fd(kpt_skel->maps.kp_bucket), &slot, &b, BPF_F_LOCK), 0);
}

struct kpath_count kpt_slot_counts(uint32_t slot)
{
    int ncpu = libbpf_num_possible_cpus();
    struct kpath_count *v = calloc((size_t)ncpu, sizeof(*v)), sum;
    memset(&sum, 0, sizeof(sum));
    CHECK_INT(bpf_map_lookup_elem(bpf_map__fd(kpt_skel->maps.kp_count), &slot, v), 0);
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

uint64_t kpt_global(uint32_t i)
{
    int ncpu = libbpf_num_possible_cpus();
    uint64_t *v = calloc((size_t)ncpu, sizeof(*v)), sum = 0;
    CHECK_INT(bpf_map_lookup_elem(bpf_map__fd(kpt_skel->maps.kp_global), &i, v), 0);
    for (int c = 0; c < ncpu; c++)
        sum += v[c];
    free(v);
    return sum;
}

void kpt_clear_maps(void)
{
    struct bpf_map *maps[] = {kpt_skel->maps.kp_c2p,  kpt_skel->maps.kp_p2c,
                              kpt_skel->maps.kp_perm, kpt_skel->maps.kp_c2p4,
                              kpt_skel->maps.kp_p2c4, kpt_skel->maps.kp_perm4};
    for (size_t m = 0; m < sizeof(maps) / sizeof(maps[0]); m++) {
        int fd = bpf_map__fd(maps[m]);
        uint8_t key[64], next[64];
        while (bpf_map_get_next_key(fd, NULL, next) == 0) {
            memcpy(key, next, sizeof(key));
            bpf_map_delete_elem(fd, key);
        }
    }
}

/* ---- running the program ---- */

int kpt_run(const uint8_t *in, size_t n, uint8_t *out, size_t *outn)
{
    DECLARE_LIBBPF_OPTS(bpf_test_run_opts, o, .data_in = in, .data_size_in = (uint32_t)n,
                        .data_out = out, .data_size_out = KPT_MAXPKT, .repeat = 1);
    int rc = bpf_prog_test_run_opts(kpt_prog_fd, &o);
    CHECK_INT(rc, 0);
    *outn = o.data_size_out;
    return (int)o.retval;
}

void kpt_check_bytes(const char *what, size_t n, const uint8_t *got, size_t gotn,
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
void kpt_check_passed(const char *what, const uint8_t *in, size_t n)
{
    uint8_t out[KPT_MAXPKT];
    size_t outn = 0;
    int rc = kpt_run(in, n, out, &outn);
    if (rc != TC_ACT_UNSPEC)
        fprintf(stderr, "%s: expected a pass\n", what);
    CHECK_INT(rc, TC_ACT_UNSPEC);
    kpt_check_bytes(what, n, out, outn, in, n);
}

void kpt_fill(uint8_t *p, size_t n, unsigned seed)
{
    for (size_t i = 0; i < n; i++)
        p[i] = (uint8_t)(seed * 131 + i * 7 + (i >> 8));
}

size_t kpt_channel_data(uint8_t *o, uint16_t ch, const uint8_t *d, size_t n, size_t pad)
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

void kpt_to_sa(const kpt_ep_t *e, struct sockaddr_storage *ss)
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
size_t kpt_send_ind(uint8_t *o, const kpt_ep_t *peer, const uint8_t *d, size_t n, int data_first,
                    uint16_t extra, int fp)
{
    uint8_t tid[12];
    kpt_fill(tid, 12, (unsigned)n + 5);
    struct sockaddr_storage ss;
    kpt_to_sa(peer, &ss);
    stun_build_t b;
    stun_build_init(&b, o, KPT_MAXPKT, stun_type(STUN_METHOD_SEND, STUN_CLASS_INDICATION), tid);
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
size_t kpt_data_ind(uint8_t *o, const kpt_ep_t *peer, const uint8_t *d, size_t n,
                    const uint8_t *tid)
{
    struct sockaddr_storage ss;
    kpt_to_sa(peer, &ss);
    stun_build_t b;
    stun_build_init(&b, o, KPT_MAXPKT, stun_type(STUN_METHOD_DATA, STUN_CLASS_INDICATION), tid);
    stun_build_xor_addr(&b, STUN_ATTR_XOR_PEER_ADDRESS, (struct sockaddr *)&ss);
    stun_build_attr(&b, STUN_ATTR_DATA, d, n);
    int len = stun_build_finish(&b);
    return len > 0 ? (size_t)len : 0;
}

kpt_world_t kpt_world(int family)
{
    kpt_world_t w;
    if (family == 4) {
        w.client = kpt_ep(4, "127.0.0.2", 40000);
        w.server = kpt_ep(4, "127.0.0.1", 3478);
        w.relay = kpt_ep(4, "127.0.0.1", 50000);
        w.peer = kpt_ep(4, "127.0.0.3", 60000);
        w.max = 1472;
    } else {
        w.client = kpt_ep(6, "::1", 40000);
        w.server = kpt_ep(6, "::1", 3478);
        w.relay = kpt_ep(6, "::1", 50000);
        w.peer = kpt_ep(6, "::1", 60000);
        w.max = 1452;
    }
    return w;
}

int kpt_write_file(const char *path, const char *s)
{
    int fd = open(path, O_WRONLY);
    if (fd < 0)
        return -errno;
    ssize_t n = write(fd, s, strlen(s));
    close(fd);
    return n == (ssize_t)strlen(s) ? 0 : -EIO;
}

static int kpt_lo_up(void)
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

void kpt_skip(const char *why)
{
    printf("%s: SKIP: %s\n", unit_prog, why);
    exit(77);
}

int kpt_sh(const char *fmt, ...)
{
    char cmd[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof(cmd), fmt, ap);
    va_end(ap);
    return system(cmd);
}

void kpt_start(void)
{
    if (geteuid() != 0)
        kpt_skip(
            "needs root (CAP_BPF, CAP_NET_ADMIN, and unshare for a private network namespace)");
    if (unshare(CLONE_NEWNET) != 0) {
        char why[128];
        snprintf(why, sizeof(why), "unshare(CLONE_NEWNET): %s", strerror(errno));
        kpt_skip(why);
    }
    if (kpt_lo_up() != 0)
        kpt_skip("cannot bring up loopback in the private namespace");
    /* bpf_fib_lookup refuses to route for an interface with forwarding off (docs/KERNEL.md). */
    kpt_write_file("/proc/sys/net/ipv4/conf/lo/forwarding", "1");
    kpt_write_file("/proc/sys/net/ipv6/conf/lo/forwarding", "1");
    /* Frames injected on lo carry no route (a local socket's do): without these, 127/8 and local
     * sources are martians on input. */
    kpt_write_file("/proc/sys/net/ipv4/conf/lo/route_localnet", "1");
    kpt_write_file("/proc/sys/net/ipv4/conf/lo/accept_local", "1");
    /* A routed subnet on a veth whose far end answers nothing (wildcard_to_client). */
    if (kpt_sh(
            "ip link add kpd type veth peer name kpe && ip link set kpe up && ip link set kpd up "
            "&& ip addr add 198.19.0.1/24 dev kpd && ip addr add 2001:db8:1::1/64 dev kpd nodad") !=
        0)
        kpt_skip("cannot create a veth pair (iproute2, CONFIG_VETH)");
    kpt_skel = kpath_bpf__open();
    if (!kpt_skel)
        kpt_skip("cannot open the embedded BPF object");
    int rc = kpath_bpf__load(kpt_skel);
    if (rc == -EPERM || rc == -ENOSYS) {
        char why[160];
        snprintf(why, sizeof(why), "the kernel refused to load BPF programs: %s", strerror(-rc));
        kpt_skip(why);
    }
    if (rc != 0) {
        /* The verifier's log is above: uturnd could not load it either. */
        fprintf(stderr, "%s: loading the program failed: %s\n", unit_prog, strerror(-rc));
        printf("%s: 1 checks, 1 failed\n", unit_prog);
        exit(1);
    }
    kpt_prog_fd = bpf_program__fd(kpt_skel->progs.uturn_ingress);
}

void kpt_stop(void) { kpath_bpf__destroy(kpt_skel); }
