/* admin_history.c - the last hour of a few figures, for GET /api/v1/history and the dashboard's
 * charts (/ui/).
 *
 * A thread of the admin's own takes server_stats() once a second (the same snapshot /metrics
 * reads, so sampling costs the workers nothing) and keeps the figures the charts draw in a ring
 * of admin-history entries (3600 by default: an hour) allocated once at start. Rates are the
 * difference between two snapshots over the time between them, so a late tick still gives the
 * right rate. The ring is behind a mutex held for a copy only; a request renders outside it.
 */
#include "admin_int.h"
#include "util.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define HISTORY_TICK_MS 1000

/* One sample. Rates are per second over the interval since the previous sample. */
typedef struct {
    int64_t t_ms; /* UNIX milliseconds */
    int64_t allocations, tcp_connections;
    uint64_t relay_bps, relay_pps, requests_ps, errors_ps;
} sample_t;

/* The cumulative counters a rate is computed from. */
typedef struct {
    uint64_t hr_ns;
    uint64_t relay_bytes, relay_packets, requests, errors;
} totals_t;

struct admin_history {
    admin_t *a;
    uv_mutex_t lock;
    uv_cond_t wake;
    uv_thread_t thread;
    bool stop;
    sample_t *ring; /* cap entries; the newest at (head + n - 1) % cap */
    size_t cap, head, n;
    totals_t prev;
};

static void totals(admin_t *a, totals_t *t, stats_snapshot_t *st)
{
    server_stats(a->s, st);
    t->hr_ns = uv_hrtime();
    /* User space's and the kernel path's (kernel-offload) relaying together. */
    const stats_kernel_t *k = &st->kernel;
    t->relay_bytes = st->relay_client_to_peer_bytes + st->relay_peer_to_client_bytes +
                     k->to_peer_bytes + k->from_peer_bytes;
    t->relay_packets = st->relay_client_to_peer_packets + st->relay_peer_to_client_packets +
                       k->channeldata_in + k->send_in + k->channeldata_out + k->data_out;
    t->requests = st->stun_binding_requests + st->turn_requests;
    t->errors = st->stun_error_responses;
}

static uint64_t rate(uint64_t now, uint64_t before, uint64_t dt_ns)
{
    if (now < before || dt_ns == 0)
        return 0; /* counters only grow; a worker gone would make them fall */
    return (uint64_t)((double)(now - before) * 1e9 / (double)dt_ns + 0.5);
}

static void take_sample(admin_history_t *h)
{
    stats_snapshot_t st;
    totals_t t;
    totals(h->a, &t, &st);
    uint64_t dt = t.hr_ns - h->prev.hr_ns;
    sample_t s = {
        .t_ms = admin_unix_ms(),
        .allocations = st.allocations,
        .tcp_connections = st.tcp_connections,
        .relay_bps = 8 * rate(t.relay_bytes, h->prev.relay_bytes, dt),
        .relay_pps = rate(t.relay_packets, h->prev.relay_packets, dt),
        .requests_ps = rate(t.requests, h->prev.requests, dt),
        .errors_ps = rate(t.errors, h->prev.errors, dt),
    };
    h->prev = t;
    uv_mutex_lock(&h->lock);
    if (h->n < h->cap) {
        h->ring[(h->head + h->n) % h->cap] = s;
        h->n++;
    } else {
        h->ring[h->head] = s; /* the oldest goes */
        h->head = (h->head + 1) % h->cap;
    }
    uv_mutex_unlock(&h->lock);
}

static void sampler(void *arg)
{
    admin_history_t *h = arg;
    uint64_t next = uv_hrtime() + (uint64_t)HISTORY_TICK_MS * 1000000u;
    uv_mutex_lock(&h->lock);
    while (!h->stop) {
        uint64_t now = uv_hrtime();
        if (now >= next) {
            uv_mutex_unlock(&h->lock);
            take_sample(h);
            uv_mutex_lock(&h->lock);
            /* A fixed cadence, not drift: and after a long stall (a suspended VM) skip ahead rather
             * than take a burst of samples. */
            next += (uint64_t)HISTORY_TICK_MS * 1000000u;
            if (next <= now)
                next = now + (uint64_t)HISTORY_TICK_MS * 1000000u;
            continue;
        }
        (void)uv_cond_timedwait(&h->wake, &h->lock, next - now);
    }
    uv_mutex_unlock(&h->lock);
}

admin_history_t *admin_history_start(admin_t *a, size_t cap)
{
    admin_history_t *h = calloc(1, sizeof(*h));
    if (!h)
        return NULL;
    h->ring = calloc(cap, sizeof(*h->ring));
    if (!h->ring) {
        free(h);
        return NULL;
    }
    h->a = a;
    h->cap = cap;
    stats_snapshot_t st;
    totals(a, &h->prev, &st);
    uv_mutex_init(&h->lock);
    uv_cond_init(&h->wake);
    if (uv_thread_create(&h->thread, sampler, h) != 0) {
        uv_cond_destroy(&h->wake);
        uv_mutex_destroy(&h->lock);
        free(h->ring);
        free(h);
        return NULL;
    }
    return h;
}

void admin_history_stop(admin_history_t *h)
{
    if (!h)
        return;
    uv_mutex_lock(&h->lock);
    h->stop = true;
    uv_cond_signal(&h->wake);
    uv_mutex_unlock(&h->lock);
    uv_thread_join(&h->thread);
    uv_cond_destroy(&h->wake);
    uv_mutex_destroy(&h->lock);
    free(h->ring);
    free(h);
}

static const char *const fields[] = {
    "t",
    "allocations",
    "tcp_connections",
    "relay_bits_per_second",
    "relay_packets_per_second",
    "requests_per_second",
    "errors_per_second",
};

void admin_h_history(admin_req_t *r)
{
    admin_history_t *h = r->a->history;
    if (!h) {
        admin_reply_error(r, 503, "unavailable", "the history sampler is not running");
        return;
    }
    long long since, seconds;
    if (admin_query_int(r, "since", 0, 0, INT64_MAX, &since) != 0 ||
        admin_query_int(r, "seconds", (long long)h->cap, 1, (long long)h->cap, &seconds) != 0)
        return;
    /* Copy the wanted tail under the lock, newest last; render outside it. */
    int64_t from = admin_unix_ms() - (int64_t)seconds * 1000;
    sample_t *copy = malloc(h->cap * sizeof(*copy));
    if (!copy) {
        admin_reply_error(r, 500, "internal", "out of memory");
        return;
    }
    size_t n = 0;
    uv_mutex_lock(&h->lock);
    for (size_t i = 0; i < h->n; i++) {
        const sample_t *s = &h->ring[(h->head + i) % h->cap];
        if (s->t_ms > since && s->t_ms > from)
            copy[n++] = *s;
    }
    size_t cap = h->cap;
    uv_mutex_unlock(&h->lock);
    json_t *names = json_array();
    for (size_t i = 0; i < ARRAY_SIZE(fields); i++)
        json_array_append_new(names, json_string(fields[i]));
    json_t *rows = json_array();
    for (size_t i = 0; i < n; i++) {
        const sample_t *s = &copy[i];
        json_array_append_new(rows,
                              json_pack("[I,I,I,I,I,I,I]", (json_int_t)s->t_ms,
                                        (json_int_t)s->allocations, (json_int_t)s->tcp_connections,
                                        (json_int_t)s->relay_bps, (json_int_t)s->relay_pps,
                                        (json_int_t)s->requests_ps, (json_int_t)s->errors_ps));
    }
    free(copy);
    admin_reply_json(r, 200,
                     json_pack("{s:i,s:I,s:I,s:o,s:o}", "interval_seconds", HISTORY_TICK_MS / 1000,
                               "capacity", (json_int_t)cap, "now", (json_int_t)admin_unix_ms(),
                               "fields", names, "samples", rows));
}
