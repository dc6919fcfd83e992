/* admin_metrics.c - health, readiness, Prometheus metrics, JSON statistics, drain and reload.
 *
 * Prometheus text exposition format 0.0.4: counters end in _total, sizes are bytes and times
 * seconds, every metric has HELP and TYPE, and labels come from fixed sets (transport, family,
 * direction, reason, result) plus `worker`, bounded by relay-threads (at most 256). All figures
 * come from the workers' single-writer counters (server_stats() and server_worker_stats() per
 * worker), so a scrape costs no worker anything.
 */
#include "admin_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "fleet.h"

/* ---- figures ---- */

typedef struct {
    stats_snapshot_t all;
    double uptime_s;
    long ports_total, ports_free;
    int draining;
} figures_t;

static void figures(admin_t *a, figures_t *f)
{
    server_t *s = a->s;
    server_stats(s, &f->all);
    f->uptime_s = (double)(uv_hrtime() - a->start_hr) / 1e9;
    long span = (long)s->cfg->max_port - s->cfg->min_port + 1;
    f->ports_total = span * (s->shared.turn.addrs.nrelay4 + s->shared.turn.addrs.nrelay6);
    f->ports_free = f->ports_total - (long)f->all.relay_sockets;
    if (f->ports_free < 0)
        f->ports_free = 0;
    f->draining = server_draining(s);
}

/* ---- Prometheus text ---- */

typedef struct {
    char *buf;
    size_t len, cap;
    bool oom;
} out_t;

__attribute__((format(printf, 2, 3))) static void put(out_t *o, const char *fmt, ...)
{
    if (o->oom)
        return;
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(o->buf + o->len, o->cap - o->len, fmt, ap);
        va_end(ap);
        if (n < 0) {
            o->oom = true;
            return;
        }
        if ((size_t)n < o->cap - o->len) {
            o->len += (size_t)n;
            return;
        }
        size_t cap = o->cap * 2 + (size_t)n;
        char *b = realloc(o->buf, cap);
        if (!b) {
            o->oom = true;
            return;
        }
        o->buf = b;
        o->cap = cap;
    }
}

static void head(out_t *o, const char *name, const char *type, const char *help)
{
    put(o, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void one(out_t *o, const char *name, const char *type, const char *help, double v)
{
    head(o, name, type, help);
    put(o, "%s %.17g\n", name, v);
}

static void u64(out_t *o, const char *name, const char *type, const char *help, uint64_t v)
{
    head(o, name, type, help);
    put(o, "%s %llu\n", name, (unsigned long long)v);
}

static void lab(out_t *o, const char *name, const char *label, const char *value, uint64_t v)
{
    put(o, "%s{%s=\"%s\"} %llu\n", name, label, value, (unsigned long long)v);
}

static void render_allocs(out_t *o, const figures_t *f)
{
    const stats_snapshot_t *st = &f->all;
    head(o, "uturn_build_info", "gauge", "uturnd version (always 1).");
    put(o, "uturn_build_info{version=\"%s\"} 1\n", PACKAGE_VERSION);
    one(o, "uturn_uptime_seconds", "gauge", "Seconds since the admin API started.", f->uptime_s);
    u64(o, "uturn_workers", "gauge", "Worker threads.", (uint64_t)st->workers);
    u64(o, "uturn_draining", "gauge", "1 while draining (new allocations refused).",
        (uint64_t)f->draining);

    head(o, "uturn_allocations", "gauge", "Current allocations by client transport.");
    lab(o, "uturn_allocations", "transport", "udp", (uint64_t)st->alloc_cur_udp);
    lab(o, "uturn_allocations", "transport", "tcp", (uint64_t)st->alloc_cur_tcp);
    lab(o, "uturn_allocations", "transport", "tls", (uint64_t)st->alloc_cur_tls);
    lab(o, "uturn_allocations", "transport", "dtls", (uint64_t)st->alloc_cur_dtls);
    head(o, "uturn_relayed_addresses", "gauge",
         "Current relayed transport addresses by family (a dual-stack allocation has two).");
    lab(o, "uturn_relayed_addresses", "family", "ipv4", (uint64_t)st->alloc_cur_ipv4);
    lab(o, "uturn_relayed_addresses", "family", "ipv6", (uint64_t)st->alloc_cur_ipv6);
    u64(o, "uturn_allocations_created_total", "counter", "Allocations created.", st->alloc_created);
    u64(o, "uturn_allocations_expired_total", "counter", "Allocations that expired.",
        st->alloc_expired);
    u64(o, "uturn_allocations_deleted_total", "counter",
        "Allocations deleted (Refresh 0, connection closed, admin, revocation).",
        st->alloc_deleted);
    u64(o, "uturn_allocations_failed_total", "counter",
        "Allocate requests that failed after authentication (no port, no family).",
        st->alloc_failed);
}

/* One relay series: `name`{path="user"|"kernel",<labels>} v. */
static void path_line(out_t *o, const char *name, const char *path, const char *labels, uint64_t v)
{
    put(o, "%s{path=\"%s\",%s} %llu\n", name, path, labels, (unsigned long long)v);
}

/* What was relayed, by path: "user" is uturnd's own sockets, "kernel" the kernel fast path
 * (kernel-offload; its own counters, 0 while it is off). Payload bytes either way. */
static void render_relay_paths(out_t *o, const stats_snapshot_t *st)
{
    const stats_kernel_t *k = &st->kernel;
    head(o, "uturn_relay_bytes_total", "counter", "Payload bytes relayed, by path.");
    path_line(o, "uturn_relay_bytes_total", "user", "direction=\"client_to_peer\"",
              st->relay_client_to_peer_bytes);
    path_line(o, "uturn_relay_bytes_total", "user", "direction=\"peer_to_client\"",
              st->relay_peer_to_client_bytes);
    path_line(o, "uturn_relay_bytes_total", "kernel", "direction=\"client_to_peer\"",
              k->to_peer_bytes);
    path_line(o, "uturn_relay_bytes_total", "kernel", "direction=\"peer_to_client\"",
              k->from_peer_bytes);
    head(o, "uturn_relay_packets_total", "counter", "Datagrams relayed, by path.");
    path_line(o, "uturn_relay_packets_total", "user", "direction=\"client_to_peer\"",
              st->relay_client_to_peer_packets);
    path_line(o, "uturn_relay_packets_total", "user", "direction=\"peer_to_client\"",
              st->relay_peer_to_client_packets);
    path_line(o, "uturn_relay_packets_total", "kernel", "direction=\"client_to_peer\"",
              k->channeldata_in + k->send_in);
    path_line(o, "uturn_relay_packets_total", "kernel", "direction=\"peer_to_client\"",
              k->channeldata_out + k->data_out);
    head(o, "uturn_relay_messages_total", "counter",
         "Relayed messages by path and framing: ChannelData or Send/Data indications.");
    static const char *const kinds[4] = {"kind=\"channeldata\",direction=\"client_to_peer\"",
                                         "kind=\"channeldata\",direction=\"peer_to_client\"",
                                         "kind=\"indication\",direction=\"client_to_peer\"",
                                         "kind=\"indication\",direction=\"peer_to_client\""};
    const uint64_t user[4] = {st->relay_channeldata_in, st->relay_channeldata_out,
                              st->relay_send_indications, st->relay_data_indications};
    const uint64_t kern[4] = {k->channeldata_in, k->channeldata_out, k->send_in, k->data_out};
    for (int i = 0; i < 4; i++)
        path_line(o, "uturn_relay_messages_total", "user", kinds[i], user[i]);
    for (int i = 0; i < 4; i++)
        path_line(o, "uturn_relay_messages_total", "kernel", kinds[i], kern[i]);
}

/* The kernel fast path's own state (docs/KERNEL.md). */
static void render_kernel(out_t *o, const stats_snapshot_t *st)
{
    u64(o, "uturn_kernel_offload_active", "gauge",
        "1 when the kernel fast path is attached (kernel-offload), else 0.",
        (uint64_t)st->kernel_active);
    head(o, "uturn_kernel_drops_total", "counter",
         "Datagrams the kernel path dropped, by reason (bps: an allocation's max-bps bucket; "
         "redirect: rewritten but could not be sent on).");
    lab(o, "uturn_kernel_drops_total", "reason", "bps", st->kernel.drop_bps);
    lab(o, "uturn_kernel_drops_total", "reason", "redirect", st->kernel.redirect_fail);
    head(o, "uturn_kernel_passed_total", "counter",
         "Datagrams that matched the kernel path's maps but went to user space, by reason.");
    lab(o, "uturn_kernel_passed_total", "reason", "expired", st->kernel.pass_expired);
    lab(o, "uturn_kernel_passed_total", "reason", "unhandled", st->kernel.pass_unhandled);
    lab(o, "uturn_kernel_passed_total", "reason", "route", st->kernel.pass_route);
    head(o, "uturn_kernel_xdp_total", "counter",
         "The kernel path's XDP program: datagrams it relayed (also in the path=\"kernel\" series) "
         "and ones it left to the TC program because their UDP checksum did not verify.");
    lab(o, "uturn_kernel_xdp_total", "result", "relayed", st->kernel.xdp_relayed);
    lab(o, "uturn_kernel_xdp_total", "result", "passed_checksum", st->kernel.xdp_passed_csum);
    u64(o, "uturn_kernel_slots_in_use", "gauge",
        "Allocations with a slot in the kernel path (their UDP traffic may bypass user space).",
        (uint64_t)st->kpath_slots);
    u64(o, "uturn_kernel_entries", "gauge",
        "Entries installed in the kernel path's maps (allocations, permissions, channels).",
        (uint64_t)st->kpath_entries);
    u64(o, "uturn_kernel_allocations_total", "counter",
        "Allocations given a slot in the kernel path.", st->kpath_allocs);
    head(o, "uturn_kernel_refused_total", "counter",
         "What stayed in user space because the kernel path had no room, by reason (no_slot: "
         "an allocation; map_full: an entry; error: a map write failed).");
    lab(o, "uturn_kernel_refused_total", "reason", "no_slot", st->kpath_refused_slot);
    lab(o, "uturn_kernel_refused_total", "reason", "map_full", st->kpath_refused_full);
    lab(o, "uturn_kernel_refused_total", "reason", "error", st->kpath_errors);
}

static void render_relay(out_t *o, const stats_snapshot_t *st)
{
    render_relay_paths(o, st);
    render_kernel(o, st);
    u64(o, "uturn_relay_send_errors_total", "counter", "Relay sends the kernel refused.",
        st->relay_send_errors);
    u64(o, "uturn_usage_events_written_total", "counter",
        "Usage events appended to the usage stream (Redis answered the XADD).",
        st->usage_events_written);
    u64(o, "uturn_usage_events_failed_total", "counter",
        "Usage events Redis refused with an error reply (not retried).", st->usage_events_failed);
    u64(o, "uturn_usage_events_dropped_total", "counter",
        "Usage events dropped because the worker's queue was full (usage-queue-max).",
        st->usage_events_dropped);
    u64(o, "uturn_cluster_quota_fallbacks_total", "counter",
        "Allocates whose user-quota was decided by this node's own count because Redis was away "
        "or did not answer within 200 ms (cluster-quota).",
        st->cluster_quota_fallbacks);
}

static void render_auth_drops(out_t *o, const stats_snapshot_t *st)
{
    head(o, "uturn_auth_total", "counter", "Authentication outcomes by result.");
    lab(o, "uturn_auth_total", "result", "ok", st->auth_ok);
    lab(o, "uturn_auth_total", "result", "challenge", st->auth_challenge);
    lab(o, "uturn_auth_total", "result", "bad_request", st->auth_bad_request);
    lab(o, "uturn_auth_total", "result", "stale_nonce", st->auth_stale_nonce);
    lab(o, "uturn_auth_total", "result", "unknown_user", st->auth_unknown_user);
    lab(o, "uturn_auth_total", "result", "expired", st->auth_expired);
    lab(o, "uturn_auth_total", "result", "bad_integrity", st->auth_bad_integrity);
    lab(o, "uturn_auth_total", "result", "wrong_user", st->auth_wrong_user);
    lab(o, "uturn_auth_total", "result", "unavailable", st->auth_unavailable);

    head(o, "uturn_dropped_total", "counter", "Messages dropped, by reason.");
    lab(o, "uturn_dropped_total", "reason", "malformed", st->drop_malformed);
    lab(o, "uturn_dropped_total", "reason", "not_stun", st->drop_not_stun);
    lab(o, "uturn_dropped_total", "reason", "unsupported", st->drop_unsupported);
    lab(o, "uturn_dropped_total", "reason", "unknown_attribute", st->drop_unknown_attr_indication);
    lab(o, "uturn_dropped_total", "reason", "no_allocation", st->drop_no_allocation);
    lab(o, "uturn_dropped_total", "reason", "no_permission", st->drop_no_permission);
    lab(o, "uturn_dropped_total", "reason", "no_channel", st->drop_no_channel);
    lab(o, "uturn_dropped_total", "reason", "bps_limit", st->drop_bps_limit);
    lab(o, "uturn_dropped_total", "reason", "amplification", st->drop_amplification);
    lab(o, "uturn_dropped_total", "reason", "unauth_budget", st->drop_unauth_budget);
    lab(o, "uturn_dropped_total", "reason", "peer_policy", st->drop_peer_policy);
    lab(o, "uturn_dropped_total", "reason", "auth_busy", st->drop_auth_busy);
    lab(o, "uturn_dropped_total", "reason", "peer_connection_limit", st->drop_peer_conn_limit);
}

static void render_net(out_t *o, const stats_snapshot_t *st)
{
    u64(o, "uturn_stun_binding_requests_total", "counter", "STUN Binding requests answered.",
        st->stun_binding_requests);
    u64(o, "uturn_stun_binding_indications_total", "counter", "STUN Binding indications.",
        st->stun_binding_indications);
    u64(o, "uturn_stun_responses_total", "counter", "STUN responses sent.", st->stun_responses);
    u64(o, "uturn_stun_error_responses_total", "counter", "STUN error responses sent.",
        st->stun_error_responses);
    head(o, "uturn_stun_errors_total", "counter",
         "STUN error responses sent, by ERROR-CODE (\"other\": a code outside the fixed set).");
    for (int i = 0; i < STATS_NERR; i++) {
        int c = stats_error_code(i);
        put(o, "uturn_stun_errors_total{code=\"%s%.0d\"} %llu\n", c ? "" : "other", c,
            (unsigned long long)st->errors_by_code[i]);
    }
    u64(o, "uturn_turn_requests_total", "counter", "TURN requests.", st->turn_requests);
    u64(o, "uturn_turn_errors_total", "counter", "TURN requests answered with an error.",
        st->turn_errors);
    head(o, "uturn_loop_stall_max_seconds", "gauge",
         "Longest a worker's loop went without polling its sockets, since start.");
    put(o, "uturn_loop_stall_max_seconds %.6f\n", (double)st->loop_stall_max_us / 1e6);

    head(o, "uturn_udp_packets_total", "counter", "Client datagrams on the UDP listeners.");
    lab(o, "uturn_udp_packets_total", "direction", "rx", st->udp_rx_packets);
    lab(o, "uturn_udp_packets_total", "direction", "tx", st->udp_tx_packets);
    head(o, "uturn_udp_bytes_total", "counter", "Client bytes on the UDP listeners.");
    lab(o, "uturn_udp_bytes_total", "direction", "rx", st->udp_rx_bytes);
    lab(o, "uturn_udp_bytes_total", "direction", "tx", st->udp_tx_bytes);
    head(o, "uturn_tcp_bytes_total", "counter", "Client bytes on TCP connections.");
    lab(o, "uturn_tcp_bytes_total", "direction", "rx", st->tcp_rx_bytes);
    lab(o, "uturn_tcp_bytes_total", "direction", "tx", st->tcp_tx_bytes);
    u64(o, "uturn_tcp_connections", "gauge", "Current client TCP connections.",
        (uint64_t)st->tcp_connections);
    u64(o, "uturn_tcp_connections_accepted_total", "counter", "Client TCP connections accepted.",
        st->tcp_accepted);
    u64(o, "uturn_tcp_connections_closed_total", "counter", "Client TCP connections closed.",
        st->tcp_closed);
    head(o, "uturn_tcp_connections_refused_total", "counter",
         "Client TCP connections refused or cut by a limit, by reason.");
    lab(o, "uturn_tcp_connections_refused_total", "reason", "per_ip_limit", st->tcp_rejected_limit);
    lab(o, "uturn_tcp_connections_refused_total", "reason", "total_limit", st->tcp_rejected_total);
    lab(o, "uturn_tcp_connections_refused_total", "reason", "garbage", st->tcp_closed_garbage);
    lab(o, "uturn_tcp_connections_refused_total", "reason", "stall", st->tcp_closed_stall);
    lab(o, "uturn_tcp_connections_refused_total", "reason", "idle", st->tcp_closed_idle);
    u64(o, "uturn_dtls_sessions", "gauge", "Current DTLS sessions.", (uint64_t)st->dtls_sessions);
    head(o, "uturn_dtls_sessions_refused_total", "counter",
         "DTLS ClientHellos dropped before any state was made, by the limit that refused them.");
    lab(o, "uturn_dtls_sessions_refused_total", "reason", "per_ip_limit", st->dtls_refused_per_ip);
    lab(o, "uturn_dtls_sessions_refused_total", "reason", "worker_limit", st->dtls_refused_total);
}

static void render_ports_redis(out_t *o, const figures_t *f)
{
    const stats_snapshot_t *st = &f->all;
    u64(o, "uturn_relay_ports_in_use", "gauge", "Relay sockets open.", (uint64_t)st->relay_sockets);
    u64(o, "uturn_tcp_peer_connections", "gauge",
        "RFC 6062 peer connections held, accepted or made by Connect, pending or bound.",
        (uint64_t)st->peer_connections);
    u64(o, "uturn_relay_ports_free", "gauge",
        "Relay ports free: (max-port - min-port + 1) x relay IPs - in use.",
        (uint64_t)f->ports_free);

    u64(o, "uturn_credential_lookups_total", "counter", "Credential lookups.", st->creds_lookups);
    u64(o, "uturn_credential_cache_hits_total", "counter", "Lookups answered from the cache.",
        st->creds_cache_hits);
    u64(o, "uturn_redis_configured", "gauge", "1 when redis-userdb is set.",
        (uint64_t)st->redis_configured);
    u64(o, "uturn_redis_up", "gauge",
        "1 when Redis is configured and every worker's connection is up.",
        (uint64_t)(st->redis_configured && st->redis_workers_up == st->workers));
    u64(o, "uturn_redis_connections_up", "gauge", "Workers whose Redis connection is up.",
        (uint64_t)st->redis_workers_up);
    u64(o, "uturn_redis_queries_total", "counter", "Redis lookups sent.", st->redis_queries);
    u64(o, "uturn_redis_pending_lookups", "gauge",
        "Credential lookups waiting for Redis now (bounded per source IP and per worker).",
        st->creds_pending);
    head(o, "uturn_redis_lookups_refused_total", "counter",
         "Credential lookups dropped unanswered by a pending bound, by the bound.");
    lab(o, "uturn_redis_lookups_refused_total", "reason", "per_ip_limit", st->creds_refused_per_ip);
    lab(o, "uturn_redis_lookups_refused_total", "reason", "worker_limit", st->creds_refused_total);
    u64(o, "uturn_redis_errors_total", "counter", "Redis failures (timeouts, errors).",
        st->redis_errors);
    u64(o, "uturn_redis_reconnects_total", "counter", "Redis reconnects.", st->redis_reconnects);
    head(o, "uturn_redis_latency_seconds", "summary", "Redis lookup round trip.");
    put(o, "uturn_redis_latency_seconds_sum %.6f\n", (double)st->redis_latency_us_sum / 1e6);
    put(o, "uturn_redis_latency_seconds_count %llu\n", (unsigned long long)st->redis_replies);
}

/* Per worker: one series each, bounded by relay-threads. */
static void render_workers(out_t *o, server_t *s)
{
    stats_snapshot_t *ws = calloc((size_t)s->nworkers, sizeof(*ws));
    if (!ws) {
        o->oom = true;
        return;
    }
    for (int i = 0; i < s->nworkers; i++)
        (void)server_worker_stats(s, i, &ws[i]);
    head(o, "uturn_worker_allocations", "gauge", "Current allocations per worker.");
    for (int i = 0; i < s->nworkers; i++)
        put(o, "uturn_worker_allocations{worker=\"%d\"} %lld\n", i, (long long)ws[i].allocations);
    head(o, "uturn_worker_udp_packets_total", "counter",
         "Client datagrams received per worker (its share of the load).");
    for (int i = 0; i < s->nworkers; i++)
        put(o, "uturn_worker_udp_packets_total{worker=\"%d\"} %llu\n", i,
            (unsigned long long)ws[i].udp_rx_packets);
    head(o, "uturn_worker_relay_packets_total", "counter", "Datagrams relayed per worker.");
    for (int i = 0; i < s->nworkers; i++)
        put(o, "uturn_worker_relay_packets_total{worker=\"%d\"} %llu\n", i,
            (unsigned long long)(ws[i].relay_client_to_peer_packets +
                                 ws[i].relay_peer_to_client_packets));
    free(ws);
}

/* The fleet as this node last read it (server/fleet): one series per live node, bounded by
 * FLEET_NODES_MAX. A node alone counts itself. */
static void render_cluster(out_t *o, admin_t *a)
{
    fleet_view_t *v = fleet_view_get(a->fleet);
    head(o, "uturn_cluster_nodes", "gauge", "Live nodes in the fleet (this one alone without it).");
    put(o, "uturn_cluster_nodes %zu\n", v ? v->n : 1);
    head(o, "uturn_cluster_node_allocations", "gauge", "Current allocations per live node.");
    if (v) {
        for (size_t i = 0; i < v->n; i++)
            put(o, "uturn_cluster_node_allocations{node=\"%s\"} %lld\n", v->nodes[i].id,
                (long long)v->nodes[i].allocations);
    } else {
        fleet_node_t me;
        fleet_local(a->s, &me);
        put(o, "uturn_cluster_node_allocations{node=\"%s\"} %lld\n", me.id,
            (long long)me.allocations);
    }
    fleet_view_put(v);
}

static void render(admin_t *a, out_t *o)
{
    figures_t f;
    figures(a, &f);
    render_allocs(o, &f);
    render_relay(o, &f.all);
    render_auth_drops(o, &f.all);
    render_net(o, &f.all);
    render_ports_redis(o, &f);
    render_workers(o, a->s);
    render_cluster(o, a);
}

void admin_h_metrics(admin_req_t *r)
{
    out_t o = {malloc(16384), 0, 16384, false};
    if (!o.buf) {
        admin_reply_error(r, 500, "internal", "out of memory");
        return;
    }
    render(r->a, &o);
    if (o.oom)
        admin_reply_error(r, 500, "internal", "out of memory");
    else
        admin_reply_text(r, 200, "text/plain; version=0.0.4; charset=utf-8", o.buf, o.len);
    free(o.buf);
}

/* ---- JSON ---- */

static void add_counter(const char *name, uint64_t v, void *arg)
{
    json_object_set_new(arg, name, json_integer((json_int_t)v));
}

/* The kernel fast path (docs/KERNEL.md): "relay" above is user space's share. */
static json_t *kernel_json(const stats_snapshot_t *st)
{
    const stats_kernel_t *k = &st->kernel;
    return json_pack(
        "{s:b,s:{s:I,s:I},s:{s:I,s:I},s:{s:I,s:I,s:I,s:I},s:{s:I,s:I},s:{s:I,s:I,s:I},s:I,s:I,s:I,"
        "s:{s:I,s:I,s:I},s:{s:I,s:I}}",
        "active", st->kernel_active, "bytes", "client_to_peer", (json_int_t)k->to_peer_bytes,
        "peer_to_client", (json_int_t)k->from_peer_bytes, "packets", "client_to_peer",
        (json_int_t)(k->channeldata_in + k->send_in), "peer_to_client",
        (json_int_t)(k->channeldata_out + k->data_out), "messages", "channeldata_in",
        (json_int_t)k->channeldata_in, "channeldata_out", (json_int_t)k->channeldata_out,
        "send_indications", (json_int_t)k->send_in, "data_indications", (json_int_t)k->data_out,
        "drops", "bps", (json_int_t)k->drop_bps, "redirect", (json_int_t)k->redirect_fail, "passed",
        "expired", (json_int_t)k->pass_expired, "unhandled", (json_int_t)k->pass_unhandled, "route",
        (json_int_t)k->pass_route, "slots_in_use", (json_int_t)st->kpath_slots, "entries",
        (json_int_t)st->kpath_entries, "allocations", (json_int_t)st->kpath_allocs, "refused",
        "no_slot", (json_int_t)st->kpath_refused_slot, "map_full",
        (json_int_t)st->kpath_refused_full, "error", (json_int_t)st->kpath_errors, "xdp", "relayed",
        (json_int_t)k->xdp_relayed, "passed_checksum", (json_int_t)k->xdp_passed_csum);
}

void admin_h_stats(admin_req_t *r)
{
    admin_t *a = r->a;
    figures_t f;
    figures(a, &f);
    const stats_snapshot_t *st = &f.all;
    char started[40];
    admin_iso8601(a->start_unix_ms, started, sizeof(started));
    json_t *counters = json_object();
    stats_foreach(st, add_counter, counters);
    json_t *workers = json_array();
    for (int i = 0; i < a->s->nworkers; i++) {
        stats_snapshot_t w;
        (void)server_worker_stats(a->s, i, &w);
        json_array_append_new(workers, json_pack("{s:i,s:I,s:I,s:I}", "worker", i, "allocations",
                                                 (json_int_t)w.allocations, "udp_rx_packets",
                                                 (json_int_t)w.udp_rx_packets, "relay_packets",
                                                 (json_int_t)(w.relay_client_to_peer_packets +
                                                              w.relay_peer_to_client_packets)));
    }
    json_t *o = json_object();
    json_object_set_new(o, "version", json_string(PACKAGE_VERSION));
    json_object_set_new(o, "realm", json_string(a->s->cfg->realm ? a->s->cfg->realm : ""));
    json_object_set_new(o, "started", json_string(started));
    json_object_set_new(o, "uptime_seconds", json_real(f.uptime_s));
    json_object_set_new(o, "workers", json_integer(st->workers));
    json_object_set_new(o, "draining", json_boolean(f.draining));
    json_object_set_new(
        o, "allocations",
        json_pack("{s:I,s:{s:I,s:I,s:I,s:I},s:{s:I,s:I},s:I,s:I,s:I}", "current",
                  (json_int_t)st->allocations, "by_transport", "udp", (json_int_t)st->alloc_cur_udp,
                  "tcp", (json_int_t)st->alloc_cur_tcp, "tls", (json_int_t)st->alloc_cur_tls,
                  "dtls", (json_int_t)st->alloc_cur_dtls, "by_family", "ipv4",
                  (json_int_t)st->alloc_cur_ipv4, "ipv6", (json_int_t)st->alloc_cur_ipv6, "created",
                  (json_int_t)st->alloc_created, "expired", (json_int_t)st->alloc_expired,
                  "deleted", (json_int_t)st->alloc_deleted));
    json_object_set_new(
        o, "relay",
        json_pack("{s:{s:I,s:I},s:{s:I,s:I},s:{s:I,s:I,s:I,s:I},s:{s:I,s:I}}", "bytes",
                  "client_to_peer", (json_int_t)st->relay_client_to_peer_bytes, "peer_to_client",
                  (json_int_t)st->relay_peer_to_client_bytes, "packets", "client_to_peer",
                  (json_int_t)st->relay_client_to_peer_packets, "peer_to_client",
                  (json_int_t)st->relay_peer_to_client_packets, "messages", "channeldata_in",
                  (json_int_t)st->relay_channeldata_in, "channeldata_out",
                  (json_int_t)st->relay_channeldata_out, "send_indications",
                  (json_int_t)st->relay_send_indications, "data_indications",
                  (json_int_t)st->relay_data_indications, "ports", "in_use",
                  (json_int_t)st->relay_sockets, "free", (json_int_t)f.ports_free));
    double lat = st->redis_replies
                     ? (double)st->redis_latency_us_sum / 1e6 / (double)st->redis_replies
                     : 0.0;
    json_object_set_new(o, "redis",
                        json_pack("{s:b,s:i,s:I,s:I,s:f}", "configured", st->redis_configured,
                                  "workers_up", st->redis_workers_up, "queries",
                                  (json_int_t)st->redis_queries, "errors",
                                  (json_int_t)st->redis_errors, "latency_seconds_avg", lat));
    json_t *errs = json_object();
    for (int i = 0; i < STATS_NERR; i++) {
        char code[16];
        int c = stats_error_code(i);
        snprintf(code, sizeof(code), c ? "%d" : "other", c);
        json_object_set_new(errs, code, json_integer((json_int_t)st->errors_by_code[i]));
    }
    json_object_set_new(o, "errors_by_code", errs);
    json_object_set_new(o, "kernel", kernel_json(st));
    json_object_set_new(o, "counters", counters);
    json_object_set_new(o, "per_worker", workers);
    admin_reply_json(r, 200, o);
}

/* ---- health ---- */

void admin_h_healthz(admin_req_t *r)
{
    admin_reply_json(r, 200, json_pack("{s:s}", "status", "ok"));
}

void admin_h_readyz(admin_req_t *r)
{
    stats_snapshot_t st;
    server_stats(r->a->s, &st);
    json_t *reasons = json_array();
    if (st.workers == 0)
        json_array_append_new(reasons, json_string("no worker is running"));
    if (server_draining(r->a->s))
        json_array_append_new(reasons, json_string("draining"));
    if (st.redis_configured && st.redis_workers_up < st.workers) {
        char m[96];
        snprintf(m, sizeof(m), "redis unreachable (%d of %d workers connected)",
                 st.redis_workers_up, st.workers);
        json_array_append_new(reasons, json_string(m));
    }
    bool ok = json_array_size(reasons) == 0;
    admin_reply_json(
        r, ok ? 200 : 503,
        json_pack("{s:s,s:o}", "status", ok ? "ready" : "not_ready", "reasons", reasons));
}

/* ---- actions ---- */

void admin_h_drain(admin_req_t *r)
{
    server_drain(r->a->s);
    stats_snapshot_t st;
    server_stats(r->a->s, &st);
    admin_reply_json(
        r, 200, json_pack("{s:b,s:I}", "draining", 1, "allocations", (json_int_t)st.allocations));
}

void admin_h_reload(admin_req_t *r)
{
    char report[4096];
    int rc = server_reload(r->a->s, report, sizeof(report));
    if (rc != 0) {
        admin_reply_error(r, 409, "reload_failed", "not reloaded: %s", report);
        return;
    }
    json_t *changes = json_array();
    for (char *p = report; *p;) {
        char *e = strstr(p, "; ");
        size_t n = e ? (size_t)(e - p) : strlen(p);
        json_t *c = json_stringn(p, n);
        if (c)
            json_array_append_new(changes, c);
        p += n + (e ? 2 : 0);
    }
    admin_reply_json(r, 200, json_pack("{s:b,s:o}", "reloaded", 1, "changes", changes));
}
