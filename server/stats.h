/* stats.h - per-worker counters and a snapshot any thread can take.
 *
 * Each worker owns one stats_t and is its only writer, so a counter moves with a relaxed load and a
 * relaxed store (plain moves on x86/arm64: no lock, no read-modify-write on the packet path). Other
 * threads (admin, tests) read with relaxed loads and sum the workers in stats_snapshot(): a snapshot
 * is a consistent-enough view for monitoring, not a transaction.
 */
#ifndef UTURN_STATS_H
#define UTURN_STATS_H

#include <stdatomic.h>
#include <stdint.h>

/* X-macro so the struct, the snapshot and the names (admin, logs) never drift apart. */
#define STATS_COUNTERS(X)                                                                        \
    X(udp_rx_packets)                                                                            \
    X(udp_rx_bytes)                                                                              \
    X(udp_tx_packets)                                                                            \
    X(udp_tx_bytes)                                                                              \
    X(udp_tx_errors)                                                                             \
    X(tcp_accepted)                                                                              \
    X(tcp_closed)                                                                                \
    X(tcp_rejected_limit)                                                                        \
    X(tcp_closed_garbage)                                                                        \
    X(tcp_closed_stall)                                                                          \
    X(tcp_closed_idle)                                                                           \
    X(tcp_rx_bytes)                                                                              \
    X(tcp_tx_bytes)                                                                              \
    X(stun_binding_requests)                                                                     \
    X(stun_binding_indications)                                                                  \
    X(stun_responses)                                                                            \
    X(stun_error_responses)                                                                      \
    X(drop_malformed)                                                                            \
    X(drop_not_stun)                                                                             \
    X(drop_unsupported)                                                                          \
    X(drop_unknown_attr_indication)

typedef struct {
#define STATS_FIELD(name) _Atomic uint64_t name;
    STATS_COUNTERS(STATS_FIELD)
#undef STATS_FIELD
    _Atomic int64_t tcp_connections; /* current, also single-writer */
} stats_t;

typedef struct {
#define STATS_FIELD(name) uint64_t name;
    STATS_COUNTERS(STATS_FIELD)
#undef STATS_FIELD
    int64_t tcp_connections;
} stats_snapshot_t;

/* Single-writer increment: only the owning worker thread may call these. */
static inline void stats_add(_Atomic uint64_t *c, uint64_t n)
{
    atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + n,
                          memory_order_relaxed);
}

static inline void stats_inc(_Atomic uint64_t *c)
{
    stats_add(c, 1);
}

static inline void stats_gauge_add(_Atomic int64_t *g, int64_t n)
{
    atomic_store_explicit(g, atomic_load_explicit(g, memory_order_relaxed) + n,
                          memory_order_relaxed);
}

/* Add one worker's counters into `out` (any thread). */
void stats_accumulate(const stats_t *s, stats_snapshot_t *out);

/* Names and values in order, for dumps: calls fn(name, value, arg) for every counter. */
void stats_foreach(const stats_snapshot_t *snap, void (*fn)(const char *, uint64_t, void *),
                   void *arg);

#endif
