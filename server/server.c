/* server.c - start the workers on every listening address, handle signals, stop cleanly.
 *
 * With no listening-ip, uturnd binds each interface address on its own rather than the wildcard, so a
 * reply to a client always leaves from the address the client sent to (a wildcard UDP socket would
 * let the kernel pick another source on a multi-homed host, and the client's NAT would drop it).
 */
#include "server.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "log.h"
#include "sockaddr_util.h"

static int add_addr(server_t *s, const struct sockaddr *sa)
{
    for (size_t i = 0; i < s->naddrs; i++)
        if (sa_equal((const struct sockaddr *)&s->addrs[i], sa))
            return 0;
    struct sockaddr_storage *n = realloc(s->addrs, (s->naddrs + 1) * sizeof(*n));
    if (!n)
        return -ENOMEM;
    s->addrs = n;
    memset(&s->addrs[s->naddrs], 0, sizeof(*n));
    memcpy(&s->addrs[s->naddrs], sa, sa_len(sa));
    s->naddrs++;
    return 0;
}

static int interface_addrs(server_t *s, int port)
{
    uv_interface_address_t *ifs;
    int n, rc = 0;
    if (uv_interface_addresses(&ifs, &n) != 0)
        return -EIO;
    for (int i = 0; i < n && rc == 0; i++) {
        struct sockaddr_storage ss;
        memset(&ss, 0, sizeof(ss));
        if (ifs[i].address.address4.sin_family == AF_INET) {
            memcpy(&ss, &ifs[i].address.address4, sizeof(struct sockaddr_in));
        } else if (ifs[i].address.address6.sin6_family == AF_INET6) {
            /* Link-local addresses need a scope per interface and are no use to a relay. */
            if (IN6_IS_ADDR_LINKLOCAL(&ifs[i].address.address6.sin6_addr))
                continue;
            memcpy(&ss, &ifs[i].address.address6, sizeof(struct sockaddr_in6));
            ((struct sockaddr_in6 *)&ss)->sin6_scope_id = 0;
        } else {
            continue;
        }
        sa_set_port((struct sockaddr *)&ss, (uint16_t)port);
        rc = add_addr(s, (struct sockaddr *)&ss);
    }
    uv_free_interface_addresses(ifs, n);
    return rc;
}

static int resolve_addrs(server_t *s, char *err, size_t errlen)
{
    const cfg_t *c = s->cfg;
    int rc = 0;
    for (size_t i = 0; i < c->listening_ip.n && rc == 0; i++) {
        struct sockaddr_storage ss;
        if (sa_parse_ip(c->listening_ip.v[i], (uint16_t)c->listening_port, &ss) != 0) {
            snprintf(err, errlen, "listening-ip '%s' is not an IP address", c->listening_ip.v[i]);
            return -EINVAL;
        }
        rc = add_addr(s, (struct sockaddr *)&ss);
    }
    if (rc == 0 && c->listening_ip.n == 0)
        rc = interface_addrs(s, c->listening_port);
    if (rc != 0 || s->naddrs == 0) {
        snprintf(err, errlen, "no address to listen on");
        return rc ? rc : -EADDRNOTAVAIL;
    }
    return 0;
}

static void on_signal(uv_signal_t *h, int signum)
{
    server_t *s = h->data;
    if (signum == SIGHUP) {
        LOGI("signal", "SIGHUP: nothing to reload in this version");
        return;
    }
    if (s->stopping)
        return;
    s->stopping = 1;
    LOGI("stop", "%s: stopping %d workers", signum == SIGTERM ? "SIGTERM" : "SIGINT", s->nworkers);
    for (int i = 0; i < s->nworkers; i++)
        worker_stop(&s->workers[i]);
    uv_close((uv_handle_t *)&s->sig_term, NULL);
    uv_close((uv_handle_t *)&s->sig_int, NULL);
    uv_close((uv_handle_t *)&s->sig_hup, NULL);
}

static void log_ready(server_t *s)
{
    char list[512] = "";
    size_t used = 0;
    for (size_t i = 0; i < s->naddrs && used + SA_STRLEN + 2 < sizeof(list); i++) {
        char a[SA_STRLEN];
        used += (size_t)snprintf(list + used, sizeof(list) - used, "%s%s", i ? " " : "",
                                 sa_format((struct sockaddr *)&s->addrs[i], a, sizeof(a)));
    }
    LOGI("ready", "uturnd %s ready: %d workers, %s%s on %s", PACKAGE_VERSION, s->nworkers,
         s->cfg->no_udp ? "" : "udp ", s->cfg->no_tcp ? "" : "tcp", list);
}

int server_start(server_t *s, const cfg_t *cfg, char *err, size_t errlen)
{
    memset(s, 0, sizeof(*s));
    s->cfg = cfg;
    int rc = uv_loop_init(&s->loop);
    if (rc != 0) {
        snprintf(err, errlen, "uv_loop_init: %s", uv_strerror(rc));
        return rc;
    }
    if ((rc = resolve_addrs(s, err, errlen)) != 0)
        return rc;
    if (shared_init(&s->shared, cfg, s->addrs, s->naddrs, err, errlen) != 0)
        return -EINVAL;
    s->shared_ready = 1;
    int n = cfg_worker_count(cfg);
    s->workers = calloc((size_t)n, sizeof(*s->workers));
    if (!s->workers) {
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    /* Bind every worker before starting any, so a bad address fails startup with nothing running. */
    for (int i = 0; i < n; i++) {
        s->nworkers = i + 1;
        if ((rc = worker_init(&s->workers[i], i, cfg, &s->shared, s->addrs, s->naddrs, err,
                              errlen)) != 0)
            return rc;
    }
    for (int i = 0; i < n; i++)
        if ((rc = worker_start(&s->workers[i])) != 0) {
            snprintf(err, errlen, "cannot start worker thread: %s", uv_strerror(rc));
            return rc;
        }
    signal(SIGPIPE, SIG_IGN);
    uv_signal_t *sigs[] = {&s->sig_term, &s->sig_int, &s->sig_hup};
    int nums[] = {SIGTERM, SIGINT, SIGHUP};
    for (int i = 0; i < 3; i++) {
        uv_signal_init(&s->loop, sigs[i]);
        sigs[i]->data = s;
        uv_signal_start(sigs[i], on_signal, nums[i]);
    }
    log_ready(s);
    return 0;
}

int server_run(server_t *s)
{
    uv_run(&s->loop, UV_RUN_DEFAULT);
    return 0;
}

void server_close(server_t *s)
{
    for (int i = 0; i < s->nworkers; i++)
        worker_stop(&s->workers[i]);
    for (int i = 0; i < s->nworkers; i++)
        worker_join(&s->workers[i]);
    uv_run(&s->loop, UV_RUN_DEFAULT);
    uv_loop_close(&s->loop);
    if (s->shared_ready)
        shared_close(&s->shared);
    free(s->workers);
    free(s->addrs);
    s->workers = NULL;
    s->addrs = NULL;
}

void server_stats(const server_t *s, stats_snapshot_t *out)
{
    memset(out, 0, sizeof(*out));
    out->workers = s->nworkers;
    for (int i = 0; i < s->nworkers; i++) {
        const worker_t *w = &s->workers[i];
        stats_accumulate(&w->stats, out);
        const creds_stats_t *cs = &w->creds_stats;
#define LOAD(f) atomic_load_explicit(&cs->f, memory_order_relaxed)
        out->creds_lookups += LOAD(lookups);
        out->creds_cache_hits += LOAD(cache_hits);
        out->redis_queries += LOAD(redis_queries);
        out->redis_errors += LOAD(redis_errors);
        out->redis_reconnects += LOAD(redis_reconnects);
        out->redis_replies += LOAD(redis_replies);
        out->redis_latency_us_sum += LOAD(redis_latency_us_sum);
        int st = LOAD(redis_state);
#undef LOAD
        if (st >= 0)
            out->redis_configured = 1;
        if (st == 1)
            out->redis_workers_up++;
    }
}
