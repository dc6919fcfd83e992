/* kpath.h - the kernel fast path's lifecycle (docs/KERNEL.md): per kernel-offload, load the TC
 * program embedded in uturnd, create its maps, attach it on clsact ingress of the interfaces that
 * hold the listening and relay addresses (all interfaces for a wildcard), with its XDP program in
 * front where kernel-offload-xdp allows (kpath_xdp.c), and remove filters, XDP programs,
 * programs and maps at exit. Before attaching, it removes what a crashed uturnd left (its filters,
 * found through the owner pid the program carries). This slice relays nothing in the kernel: the
 * program counts and passes every packet. Called by main.c only, on the main thread, before the
 * workers start and after they stop; the engine (server/turn) never sees it. */
#ifndef UTURN_KPATH_H
#define UTURN_KPATH_H

#include <stddef.h>
#include <stdint.h>

#include "cfg.h"

typedef struct kpath kpath_t;

/* Start the kernel path as cfg->kernel_offload says. off: *out = NULL, nothing touched, 0. auto:
 * 0 with *out set when attached, else *out = NULL after ONE warning log line giving the reason.
 * on: 0 with *out set, or -1 with `err` naming the config file, line and key and the reason
 * (built without libbpf, missing capability, libbpf's load or attach error), or naming
 * kernel-offload-xdp when it is on and the XDP program cannot be attached. The caller owns
 * *out and frees it with kpath_stop. Main thread. */
int kpath_start(const cfg_t *cfg, kpath_t **out, char *err, size_t errlen);

/* --check-config's part: -1 with `err` naming the file, line and key when kernel-offload = on
 * and this uturnd was built without the kernel path; 0 otherwise. Capabilities and the kernel are
 * not checked (a check may run unprivileged): the start does that. Any thread. */
int kpath_check(const cfg_t *cfg, char *err, size_t errlen);
/* Remove the tc filters (with their programs and maps) of uturnds that are gone, as every start
 * does: `uturnd --kernel-offload-sweep`. The number removed, or -1 with err set. */
int kpath_sweep(char *err, size_t errlen);

/* Detach every filter this process attached and free the program and its maps. NULL is a no-op.
 * Main thread, after the workers have stopped. */
void kpath_stop(kpath_t *k);

/* Sum of the per-CPU counters: packets and bytes the program saw. 0 or -errno. */
int kpath_seen(const kpath_t *k, uint64_t *pkts, uint64_t *bytes);

/* The relay maps (kpath_abi.h: layouts and meaning), for the workers (core/offload.c). Any
 * thread; each call is one bpf() system call. k == NULL or a uturnd built without the kernel
 * path: -ENOSYS. set: 0, -E2BIG when the map is full (the caller leaves that traffic in user
 * space), or another -errno. del: 0 or -ENOENT. */
struct kpath_c2p_key;
struct kpath_c2p_val;
struct kpath_p2c_key;
struct kpath_p2c_val;
struct kpath_perm_key;
struct kpath_count;
int kpath_c2p_set(kpath_t *k, const struct kpath_c2p_key *key, const struct kpath_c2p_val *val);
int kpath_c2p_del(kpath_t *k, const struct kpath_c2p_key *key);
int kpath_p2c_set(kpath_t *k, const struct kpath_p2c_key *key, const struct kpath_p2c_val *val);
int kpath_p2c_del(kpath_t *k, const struct kpath_p2c_key *key);
int kpath_perm_set(kpath_t *k, const struct kpath_perm_key *key, uint64_t expires_ns);
int kpath_perm_del(kpath_t *k, const struct kpath_perm_key *key);
/* Make `slot` (< KPATH_MAX_SLOTS) a new allocation's: zero its counters on every CPU and fill its
 * bucket (bps 0: no limit). Call before any entry names the slot. 0 or -errno. */
int kpath_slot_reset(kpath_t *k, uint32_t slot, uint64_t bps);
/* Charge `bytes` that user space relays for the allocation in `slot` to its max-bps bucket, the one
 * the kernel path charges (kpath_abi.h struct kpath_charge): 1 within the limit (taken), 0 over
 * it, or -errno (-ENOENT: no such slot). One bpf() system call. */
int kpath_charge(kpath_t *k, uint32_t slot, uint64_t bytes);
/* The slot's counters summed over the CPUs. 0 or -errno. */
int kpath_slot_counts(kpath_t *k, uint32_t slot, struct kpath_count *sum);
/* kp_global summed over the CPUs into out[KPATH_G_N]. 0 or -errno. */
int kpath_global(kpath_t *k, uint64_t *out);

#endif
