/* offload.h - the kernel fast path's control plane on a worker (docs/KERNEL.md): the engine's
 * offload and fold hooks (dispatch_relay_ops_t) turned into entries of the kernel path's maps
 * (kpath.h, kpath_abi.h), and the kernel's per-allocation counters folded into the allocations'
 * traffic. Each worker owns one offload_t and its own range of the kernel's allocation slots, so
 * no lock is taken; only the worker's thread calls these. Without a kernel path (kpath_t NULL)
 * no offload_t exists and the hooks stay NULL: the engine pays nothing.
 */
#ifndef UTURN_OFFLOAD_H
#define UTURN_OFFLOAD_H

#include "dispatch.h"
#include "kpath.h"
#include "stats.h"

typedef struct offload offload_t;

/* A worker's offload state: slots [id * KPATH_MAX_SLOTS / n, (id + 1) * KPATH_MAX_SLOTS / n) of
 * `k` (n = nworkers), counters in `stats`. *out = NULL and 0 when k is NULL; else 0 or -ENOMEM.
 * Free with offload_free after every allocation is gone (dispatch_close). */
int offload_new(kpath_t *k, int id, int nworkers, stats_t *stats, offload_t **out);
void offload_free(offload_t *o);

/* The hooks for dispatch_relay_ops_t (ops->env is the worker; the worker's offload_t is found
 * through it). Leaves ops untouched when o is NULL. */
void offload_ops(offload_t *o, dispatch_relay_ops_t *ops);

/* What the hooks do, with the engine's clock (`now_ms`: the worker's loop time, CLOCK_MONOTONIC
 * ms). sync: make the maps say what `a` allows now (gone: remove all of it, fold the last counts
 * and free the state). fold: add the kernel's counts since the last fold to a->traffic. */
void offload_sync(offload_t *o, const cfg_t *cfg, alloc_t *a, uint64_t now_ms, int gone);
void offload_fold(offload_t *o, alloc_t *a);
/* Charge `bytes` relayed in user space to a's kernel bucket (kpath_charge): 1, 0 (over max-bps),
 * or -1 when `a` has no slot or the call failed (counted in kpath_errors): the engine's own
 * bucket decides then. */
int offload_charge(offload_t *o, alloc_t *a, size_t bytes);

#endif
