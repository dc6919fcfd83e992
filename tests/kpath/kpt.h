/* kpt.h - the kernel path's test fixture (kpt.c), shared by tests/kpath/test_kpath_prog.c and
 * tests/kpath/test_kpath_net.c. Test code: single-threaded, failures reported through unit.h. */
#ifndef UTURN_KPT_H
#define UTURN_KPT_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wcast-qual"
#include "kpath.skel.h"
#pragma GCC diagnostic pop
#include "kpath_abi.h"

enum { KPT_ETH = 14, KPT_MAXPKT = 2048 };
/* The allocation slot the tests use. */
#define KPT_SLOT 7u

/* The loaded program (kpt_start). */
extern struct kpath_bpf *kpt_skel;
extern int kpt_prog_fd;

/* Root, a private network namespace (loopback up, forwarding on it, a routed veth kpd), the
 * program loaded: or the program exits 77 saying why (SKIP), or 1 when the verifier refuses it. */
void kpt_start(void);
void kpt_stop(void);

typedef struct {
    int family; /* 4 or 6 */
    uint8_t ip[16];
    uint16_t port; /* host order */
} kpt_ep_t;

/* The parties. IPv4 on 127/8 (all local on lo), IPv6 on ::1; the namespace routes both locally. */
typedef struct {
    kpt_ep_t client, server, relay, peer;
    size_t max; /* largest UDP payload of a 1500-byte packet */
} kpt_world_t;

uint64_t kpt_now_ns(void);
kpt_ep_t kpt_ep(int family, const char *ip, uint16_t port);
kpt_world_t kpt_world(int family);
void kpt_to_sa(const kpt_ep_t *e, struct sockaddr_storage *ss);

/* RFC 1071 sum of n bytes onto s, and its final complement. */
uint32_t kpt_sum16(const uint8_t *p, size_t n, uint32_t s);
uint16_t kpt_fin16(uint32_t s);
/* eth (zero MACs) + IP + UDP (full checksum) + payload into o; its length. `as_sent`: the header
 * a Linux UDP socket sends (DF, id 0, TTL 64), which is what the program must write. */
size_t kpt_build(uint8_t *o, const kpt_ep_t *s, const kpt_ep_t *d, const uint8_t *pl, size_t n,
                 int as_sent);
/* Is the UDP checksum of a whole frame right (0: none, IPv4)? */
int kpt_udp_csum_ok(const uint8_t *pkt, size_t len);

/* The c2p entry as the program left it (its route cache included), and a rewrite of it as given
 * (kpt_c2p_set writes a fresh one, route cache zero). 0 or -1 (errno). */
int kpt_c2p_get(const kpt_ep_t *client, const kpt_ep_t *server, uint16_t channel,
                struct kpath_c2p_val *v);
int kpt_c2p_put(const kpt_ep_t *client, const kpt_ep_t *server, uint16_t channel,
                const struct kpath_c2p_val *v);
/* The maps. peer NULL: an allocation entry; server NULL: a wildcard listener. */
void kpt_c2p_set(const kpt_ep_t *client, const kpt_ep_t *server, uint16_t channel,
                 const kpt_ep_t *relay, const kpt_ep_t *peer, uint32_t slot, uint64_t expires);
void kpt_p2c_set(const kpt_ep_t *relay, const kpt_ep_t *peer, const kpt_ep_t *client,
                 const kpt_ep_t *server, uint16_t channel, uint32_t slot, uint64_t expires);
void kpt_perm_set(uint32_t slot, const kpt_ep_t *peer, uint64_t expires);
void kpt_slot_reset(uint32_t slot, uint64_t bps);
struct kpath_count kpt_slot_counts(uint32_t slot);
uint64_t kpt_global(uint32_t i);
void kpt_clear_maps(void);

/* One BPF_PROG_TEST_RUN: the program's return value, the output in out (KPT_MAXPKT). */
int kpt_run(const uint8_t *in, size_t n, uint8_t *out, size_t *outn);
void kpt_check_bytes(const char *what, size_t n, const uint8_t *got, size_t gotn,
                     const uint8_t *want, size_t wantn);
/* The input comes back unchanged with TC_ACT_UNSPEC. */
void kpt_check_passed(const char *what, const uint8_t *in, size_t n);

void kpt_fill(uint8_t *p, size_t n, unsigned seed);
/* ChannelData with `pad` trailing bytes (not zeros). */
size_t kpt_channel_data(uint8_t *o, uint16_t ch, const uint8_t *d, size_t n, size_t pad);
/* A Send indication as a client builds it: `data_first` swaps the two attributes, `extra` adds an
 * attribute of that type after them (0: none), `fp` a FINGERPRINT. */
size_t kpt_send_ind(uint8_t *o, const kpt_ep_t *peer, const uint8_t *d, size_t n, int data_first,
                    uint16_t extra, int fp);
/* send_data_indication's bytes (dispatch_data.c) for this peer and data, with `tid`. */
size_t kpt_data_ind(uint8_t *o, const kpt_ep_t *peer, const uint8_t *d, size_t n,
                    const uint8_t *tid);

int kpt_write_file(const char *path, const char *s);
int kpt_sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void kpt_skip(const char *why) __attribute__((noreturn));

#endif
