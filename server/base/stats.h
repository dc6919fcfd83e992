/* stats.h - per-worker counters and a snapshot any thread can take.
 *
 * Each worker owns one stats_t and is its only writer, so a counter moves with a relaxed load and a
 * relaxed store (plain moves on x86/arm64: no lock, no read-modify-write on the packet path). Other
 * threads (admin, tests) read with relaxed loads and sum the workers in stats_snapshot(): a
 * snapshot is a consistent-enough view for monitoring, not a transaction.
 */
#ifndef UTURN_STATS_H
#define UTURN_STATS_H

#include <stdatomic.h>
#include <stdint.h>

/* X-macro so the struct, the snapshot and the names (admin, logs) never drift apart. */
#define STATS_COUNTERS(X)                                                                          \
    X(udp_rx_packets)                                                                              \
    X(udp_rx_bytes)                                                                                \
    X(udp_tx_packets)                                                                              \
    X(udp_tx_bytes)                                                                                \
    X(udp_tx_errors)                                                                               \
    X(tcp_accepted)                                                                                \
    X(tcp_closed)                                                                                  \
    X(tcp_rejected_limit)                                                                          \
    X(tcp_rejected_total)                                                                          \
    X(tcp_closed_garbage)                                                                          \
    X(tcp_closed_stall)                                                                            \
    X(tcp_closed_idle)                                                                             \
    X(tcp_rx_bytes)                                                                                \
    X(tcp_tx_bytes)                                                                                \
    X(stun_binding_requests)                                                                       \
    X(stun_binding_indications)                                                                    \
    X(stun_responses)                                                                              \
    X(stun_error_responses)                                                                        \
    X(drop_malformed)                                                                              \
    X(drop_not_stun)                                                                               \
    X(drop_unsupported)                                                                            \
    X(drop_unknown_attr_indication)                                                                \
    X(drop_no_allocation)                                                                          \
    X(drop_no_permission)                                                                          \
    X(drop_no_channel)                                                                             \
    X(drop_bps_limit)                                                                              \
    X(drop_amplification)                                                                          \
    X(drop_unauth_budget)                                                                          \
    X(drop_peer_policy)                                                                            \
    X(drop_auth_busy)                                                                              \
    X(drop_peer_conn_limit)                                                                        \
    X(alloc_created)                                                                               \
    X(alloc_deleted)                                                                               \
    X(alloc_expired)                                                                               \
    X(alloc_failed)                                                                                \
    X(alloc_udp)                                                                                   \
    X(alloc_tcp)                                                                                   \
    X(alloc_ipv4)                                                                                  \
    X(alloc_ipv6)                                                                                  \
    X(auth_ok)                                                                                     \
    X(auth_challenge)                                                                              \
    X(auth_bad_request)                                                                            \
    X(auth_stale_nonce)                                                                            \
    X(auth_unknown_user)                                                                           \
    X(auth_expired)                                                                                \
    X(auth_bad_integrity)                                                                          \
    X(auth_wrong_user)                                                                             \
    X(auth_unavailable)                                                                            \
    X(turn_requests)                                                                               \
    X(turn_errors)                                                                                 \
    X(relay_client_to_peer_packets)                                                                \
    X(relay_client_to_peer_bytes)                                                                  \
    X(relay_peer_to_client_packets)                                                                \
    X(relay_peer_to_client_bytes)                                                                  \
    X(relay_channeldata_in)                                                                        \
    X(relay_channeldata_out)                                                                       \
    X(relay_send_indications)                                                                      \
    X(relay_data_indications)                                                                      \
    X(relay_send_errors)                                                                           \
    X(tls_handshakes)                                                                              \
    X(dtls_hello_verify)                                                                           \
    X(dtls_handshakes)                                                                             \
    X(dtls_refused_per_ip)                                                                         \
    X(dtls_refused_total)                                                                          \
    X(usage_events_written)                                                                        \
    X(usage_events_failed)                                                                         \
    X(usage_events_dropped)                                                                        \
    X(cluster_quota_fallbacks)                                                                     \
    X(kpath_allocs)                                                                                \
    X(kpath_refused_slot)                                                                          \
    X(kpath_refused_full)                                                                          \
    X(kpath_errors)

/* Current allocations by client transport and relayed addresses by family (a dual-stack allocation
 * counts in both families); current RFC 6062 peer connections (pending or bound). Gauges,
 * single-writer like the counters. */
#define STATS_GAUGES(X)                                                                            \
    X(alloc_cur_udp)                                                                               \
    X(alloc_cur_tcp)                                                                               \
    X(alloc_cur_tls)                                                                               \
    X(alloc_cur_dtls)                                                                              \
    X(alloc_cur_ipv4)                                                                              \
    X(alloc_cur_ipv6)                                                                              \
    X(peer_connections)                                                                            \
    X(kpath_slots)                                                                                 \
    X(kpath_entries)

/* The kernel path's own counters (kp_global, summed over the CPUs by server_stats): the names of
 * kpath_abi.h's KPATH_G_* in the same order (core/offload.c checks the count). */
#define STATS_KERNEL(X)                                                                            \
    X(channeldata_in)                                                                              \
    X(send_in)                                                                                     \
    X(channeldata_out)                                                                             \
    X(data_out)                                                                                    \
    X(to_peer_bytes)                                                                               \
    X(from_peer_bytes)                                                                             \
    X(drop_bps)                                                                                    \
    X(pass_expired)                                                                                \
    X(pass_unhandled)                                                                              \
    X(redirect_fail)                                                                               \
    X(pass_route)                                                                                  \
    X(xdp_relayed)                                                                                 \
    X(xdp_passed_csum)
#define STATS_KERNEL_ONE(c) +1
enum { STATS_KERNEL_N = 0 STATS_KERNEL(STATS_KERNEL_ONE) };
typedef struct {
#define STATS_KERNEL_FIELD(name) uint64_t name;
    STATS_KERNEL(STATS_KERNEL_FIELD)
#undef STATS_KERNEL_FIELD
} stats_kernel_t;

/* STUN error responses sent, by ERROR-CODE: the codes RFC 8489 §14.8 and RFC 8656 §15 define
 * that uturn sends, and one slot for any other. A fixed set, so the admin API's labels are bounded.
 */
#define STATS_ERROR_CODES(X)                                                                       \
    X(300)                                                                                         \
    X(400)                                                                                         \
    X(401)                                                                                         \
    X(403)                                                                                         \
    X(420)                                                                                         \
    X(437)                                                                                         \
    X(438)                                                                                         \
    X(440)                                                                                         \
    X(441)                                                                                         \
    X(442)                                                                                         \
    X(443)                                                                                         \
    X(446)                                                                                         \
    X(447)                                                                                         \
    X(486)                                                                                         \
    X(500)                                                                                         \
    X(508)
#define STATS_ERR_COUNT_ONE(c) +1
enum { STATS_NERR = 0 STATS_ERROR_CODES(STATS_ERR_COUNT_ONE) + 1 }; /* the last slot: any other */

typedef struct {
#define STATS_FIELD(name) _Atomic uint64_t name;
    STATS_COUNTERS(STATS_FIELD)
#undef STATS_FIELD
    _Atomic int64_t tcp_connections; /* current, also single-writer */
    _Atomic int64_t allocations;     /* current */
    _Atomic int64_t relay_sockets;   /* current */
    _Atomic int64_t dtls_sessions;   /* current */
#define STATS_GAUGE_FIELD(name) _Atomic int64_t name;
    STATS_GAUGES(STATS_GAUGE_FIELD)
#undef STATS_GAUGE_FIELD
    _Atomic uint64_t errors_by_code[STATS_NERR]; /* see stats_error_slot */
    _Atomic uint64_t loop_stall_max_us; /* longest the loop went without polling (worker.c) */
} stats_t;

typedef struct {
#define STATS_FIELD(name) uint64_t name;
    STATS_COUNTERS(STATS_FIELD)
#undef STATS_FIELD
    int64_t tcp_connections;
    int64_t allocations;
    int64_t relay_sockets;
    int64_t dtls_sessions;
#define STATS_GAUGE_FIELD(name) int64_t name;
    STATS_GAUGES(STATS_GAUGE_FIELD)
#undef STATS_GAUGE_FIELD
    uint64_t errors_by_code[STATS_NERR];
    uint64_t loop_stall_max_us; /* the longest of the workers', not a sum */
    /* Credential store (server_stats fills these from each worker's creds_stats). */
    uint64_t creds_lookups, creds_cache_hits, redis_queries, redis_errors, redis_reconnects;
    uint64_t creds_pending, creds_refused_per_ip, creds_refused_total; /* per-source bounds */
    uint64_t redis_replies, redis_latency_us_sum;
    int redis_configured; /* 1 when redis-userdb is set */
    int redis_workers_up; /* workers whose Redis connection is up */
    int workers;
    /* The kernel path (kernel-offload): 1 while its program is attached; its global counters. */
    int kernel_active;
    stats_kernel_t kernel;
} stats_snapshot_t;

/* Single-writer increment: only the owning worker thread may call these. */
static inline void stats_add(_Atomic uint64_t *c, uint64_t n)
{
    atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + n,
                          memory_order_relaxed);
}

static inline void stats_inc(_Atomic uint64_t *c) { stats_add(c, 1); }

static inline void stats_gauge_add(_Atomic int64_t *g, int64_t n)
{
    atomic_store_explicit(g, atomic_load_explicit(g, memory_order_relaxed) + n,
                          memory_order_relaxed);
}

/* The errors_by_code slot of a STUN error code (STATS_NERR - 1 for a code not in the list), and
 * the code of a slot (0 for the last). Any thread. */
int stats_error_slot(int code);
int stats_error_code(int slot);

/* One STUN error response sent with `code`: stun_error_responses and its slot. Owning worker. */
static inline void stats_error_sent(stats_t *s, int code)
{
    stats_inc(&s->stun_error_responses);
    stats_inc(&s->errors_by_code[stats_error_slot(code)]);
}

/* Add one worker's counters into `out` (any thread). */
void stats_accumulate(const stats_t *s, stats_snapshot_t *out);

/* Names and values in order, for dumps: calls fn(name, value, arg) for every counter. */
void stats_foreach(const stats_snapshot_t *snap, void (*fn)(const char *, uint64_t, void *),
                   void *arg);

#endif
