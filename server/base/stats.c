/* stats.c - summing per-worker counters into a snapshot (see stats.h for the threading rules). */
#include "stats.h"

void stats_accumulate(const stats_t *s, stats_snapshot_t *out)
{
#define STATS_SUM(name) out->name += atomic_load_explicit(&s->name, memory_order_relaxed);
    STATS_COUNTERS(STATS_SUM)
#undef STATS_SUM
    out->tcp_connections += atomic_load_explicit(&s->tcp_connections, memory_order_relaxed);
    out->allocations += atomic_load_explicit(&s->allocations, memory_order_relaxed);
    out->relay_sockets += atomic_load_explicit(&s->relay_sockets, memory_order_relaxed);
    out->dtls_sessions += atomic_load_explicit(&s->dtls_sessions, memory_order_relaxed);
#define STATS_GAUGE_SUM(name) out->name += atomic_load_explicit(&s->name, memory_order_relaxed);
    STATS_GAUGES(STATS_GAUGE_SUM)
#undef STATS_GAUGE_SUM
    for (int i = 0; i < STATS_NERR; i++)
        out->errors_by_code[i] += atomic_load_explicit(&s->errors_by_code[i], memory_order_relaxed);
    uint64_t stall = atomic_load_explicit(&s->loop_stall_max_us, memory_order_relaxed);
    if (stall > out->loop_stall_max_us)
        out->loop_stall_max_us = stall;
}

static const int error_codes[] = {
#define STATS_ERR_CODE(c) c,
    STATS_ERROR_CODES(STATS_ERR_CODE)
#undef STATS_ERR_CODE
};

int stats_error_slot(int code)
{
    for (int i = 0; i < STATS_NERR - 1; i++)
        if (error_codes[i] == code)
            return i;
    return STATS_NERR - 1;
}

int stats_error_code(int slot)
{
    return slot >= 0 && slot < STATS_NERR - 1 ? error_codes[slot] : 0;
}

void stats_foreach(const stats_snapshot_t *snap, void (*fn)(const char *, uint64_t, void *),
                   void *arg)
{
#define STATS_EACH(name) fn(#name, snap->name, arg);
    STATS_COUNTERS(STATS_EACH)
#undef STATS_EACH
    fn("tcp_connections", (uint64_t)snap->tcp_connections, arg);
    fn("allocations", (uint64_t)snap->allocations, arg);
    fn("relay_sockets", (uint64_t)snap->relay_sockets, arg);
    fn("dtls_sessions", (uint64_t)snap->dtls_sessions, arg);
#define STATS_GAUGE_EACH(name) fn(#name, (uint64_t)snap->name, arg);
    STATS_GAUGES(STATS_GAUGE_EACH)
#undef STATS_GAUGE_EACH
}
