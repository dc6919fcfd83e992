/* server.c - start the workers on every listening address, handle signals, stop cleanly.
 *
 * With no listening-ip, uturnd binds each interface address on its own rather than the wildcard, so
 * a reply to a client always leaves from the address the client sent to (a wildcard UDP socket
 * would let the kernel pick another source on a multi-homed host, and the client's NAT would drop
 * it).
 */
#include "server.h"

#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "kpath.h"
#include "kpath_abi.h"
#include "log.h"
#include "notify.h"
#include "sockaddr_util.h"
#include "worker.h"

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
    /* rfc5780: every listening IP on both ports (RFC 5780 §6: the same two ports on each address),
     * so an answer can leave from any of the four A x P combinations. */
    int ports[2] = {c->listening_port, cfg_alt_listening_port(c)};
    for (int p = 0; p < (c->rfc5780 ? 2 : 1); p++)
        for (size_t i = 0; i < c->listening_ip.n && rc == 0; i++) {
            struct sockaddr_storage ss;
            if (sa_parse_ip(c->listening_ip.v[i], (uint16_t)ports[p], &ss) != 0) {
                snprintf(err, errlen, "listening-ip '%s' is not an IP address",
                         c->listening_ip.v[i]);
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

int server_check(const cfg_t *cfg, server_check_fn check, char *err, size_t errlen)
{
    server_t s; /* only cfg and addrs are used */
    memset(&s, 0, sizeof(s));
    s.cfg = cfg;
    if (check && check(cfg, err, errlen) != 0)
        return -1;
    int rc = resolve_addrs(&s, err, errlen);
    shared_t *sh = rc == 0 ? malloc(sizeof(*sh)) : NULL;
    if (rc == 0 && !sh) {
        snprintf(err, errlen, "out of memory");
        rc = -ENOMEM;
    }
    if (sh && shared_init(sh, cfg, s.addrs, s.naddrs, err, errlen) == 0)
        shared_close(sh);
    else if (sh)
        rc = -EINVAL;
    free(sh);
    free(s.addrs);
    return rc ? -1 : 0;
}

static void stop_all(server_t *s, const char *why)
{
    if (s->stopping)
        return;
    s->stopping = 1;
    notify_stopping();
    LOGI("stop", "%s: stopping %d workers", why, s->nworkers);
    for (int i = 0; i < s->nworkers; i++)
        worker_stop(&s->workers[i]);
    uv_close((uv_handle_t *)&s->sig_term, NULL);
    uv_close((uv_handle_t *)&s->sig_int, NULL);
    uv_close((uv_handle_t *)&s->sig_hup, NULL);
    uv_close((uv_handle_t *)&s->sig_usr1, NULL);
    uv_close((uv_handle_t *)&s->tick, NULL);
}

/* drain-exit: once draining and the last allocation has ended, stop like SIGTERM. */
static void on_tick(uv_timer_t *t)
{
    server_t *s = t->data;
    const cfg_t *live =
        atomic_load(&s->shared.turn.live); /* a reload may swap it from another thread */
    if (live->drain_exit && server_draining(s) && atomic_load(&s->shared.turn.quota.total) == 0)
        stop_all(s, "drained");
}

/* Workers bind with SO_REUSEPORT, which would let a second uturnd (or a stale one) share our ports
 * silently and split clients between the two. Bind each address once without it first: a port
 * someone holds fails here, with a clear message. */
static int probe_port(const struct sockaddr *sa, int type, char *err, size_t errlen)
{
    int fd = socket(sa->sa_family, type | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return 0;
    int one = 1;
    if (sa->sa_family == AF_INET6)
        (void)setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
    /* TCP: SO_REUSEADDR so TIME_WAIT leftovers of our last run do not count; a listener does. */
    if (type == SOCK_STREAM)
        (void)setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    int rc = bind(fd, sa, sa_len(sa));
    int e = errno;
    close(fd);
    if (rc == 0 || e != EADDRINUSE)
        return 0; /* other errors are reported by the real bind */
    char name[SA_STRLEN];
    snprintf(err, errlen, "%s %s is already in use (another uturnd or another server?)",
             type == SOCK_STREAM ? "tcp" : "udp", sa_format(sa, name, sizeof(name)));
    return -EADDRINUSE;
}

static int probe_ports(server_t *s, char *err, size_t errlen)
{
    for (size_t i = 0; i < s->naddrs; i++) {
        const struct sockaddr *sa = (const struct sockaddr *)&s->addrs[i];
        if ((!s->cfg->no_udp && probe_port(sa, SOCK_DGRAM, err, errlen)) ||
            (!s->cfg->no_tcp && probe_port(sa, SOCK_STREAM, err, errlen)))
            return -EADDRINUSE;
    }
    return 0;
}

static void on_signal(uv_signal_t *h, int signum)
{
    server_t *s = h->data;
    if (signum == SIGUSR1) {
        server_drain(s);
        return;
    }
    if (signum == SIGHUP) {
        /* systemd's ExecReload sends SIGHUP: RELOADING=1 first, READY=1 after, applied or not
         * (a refused file leaves the old configuration serving, which is ready). */
        notify_reloading();
        char report[1024];
        int rc = server_reload(s, report, sizeof(report));
        if (rc == 0)
            LOGI("reload", "SIGHUP: %s", report[0] ? report : "nothing changed");
        else
            LOGW("reload", "SIGHUP: not reloaded: %s", report);
        notify_ready(rc == 0 ? "reloaded" : "reload refused: the old configuration serves");
        return;
    }
    stop_all(s, signum == SIGTERM ? "SIGTERM" : "SIGINT");
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
    char status[256];
    snprintf(status, sizeof(status), "ready: %d workers, %zu addresses", s->nworkers, s->naddrs);
    LOGI("ready", "uturnd %s ready: %d workers, %s%s on %s", PACKAGE_VERSION, s->nworkers,
         s->cfg->no_udp ? "" : "udp ", s->cfg->no_tcp ? "" : "tcp", list);
    /* Every listener (the workers' here, the admin's by main before server_run) is bound and every
     * worker thread runs: a request sent now is queued in a bound socket and answered. */
    notify_ready(status);
}

int server_start(server_t *s, const cfg_t *cfg, server_check_fn check, int argc, char **argv,
                 char *err, size_t errlen)
{
    return server_start_kpath(s, cfg, check, argc, argv, NULL, err, errlen);
}

int server_start_kpath(server_t *s, const cfg_t *cfg, server_check_fn check, int argc, char **argv,
                       struct kpath *kpath, char *err, size_t errlen)
{
    memset(s, 0, sizeof(*s));
    s->kpath = kpath;
    s->cfg = cfg;
    s->check = check;
    s->argc = argc;
    s->argv = argv;
    s->live = cfg;
    uv_mutex_init(&s->reload_lock);
    int rc = uv_loop_init(&s->loop);
    if (rc != 0) {
        snprintf(err, errlen, "uv_loop_init: %s", uv_strerror(rc));
        return rc;
    }
    /* The checks of server_check, in the same order and words (shared_init below is the rest). */
    if (check && check(cfg, err, errlen) != 0)
        return -EINVAL;
    if ((rc = resolve_addrs(s, err, errlen)) != 0 || (rc = probe_ports(s, err, errlen)) != 0)
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
    /* Bind every worker before starting any: a bad address fails startup with nothing running. */
    for (int i = 0; i < n; i++) {
        s->nworkers = i + 1;
        if ((rc = worker_init(&s->workers[i], i, cfg, &s->shared, s->addrs, s->naddrs, kpath, n,
                              err, errlen)) != 0)
            return rc;
    }
    for (int i = 0; i < n; i++) {
        s->workers[i].siblings = s->workers;
        s->workers[i].nsiblings = n;
    }
    for (int i = 0; i < n; i++)
        if ((rc = worker_start(&s->workers[i])) != 0) {
            snprintf(err, errlen, "cannot start worker thread: %s", uv_strerror(rc));
            return rc;
        }
    signal(SIGPIPE, SIG_IGN);
    return 0;
}

int server_run(server_t *s)
{
    uv_signal_t *sigs[] = {&s->sig_term, &s->sig_int, &s->sig_hup, &s->sig_usr1};
    int nums[] = {SIGTERM, SIGINT, SIGHUP, SIGUSR1};
    for (int i = 0; i < 4; i++) {
        uv_signal_init(&s->loop, sigs[i]);
        sigs[i]->data = s;
        uv_signal_start(sigs[i], on_signal, nums[i]);
    }
    uv_timer_init(&s->loop, &s->tick);
    s->tick.data = s;
    uv_timer_start(&s->tick, on_tick, 1000, 1000);
    log_ready(s);
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
    for (size_t i = 0; i < s->nretired; i++) {
        cfg_free(s->retired[i]);
        free(s->retired[i]);
    }
    free(s->retired);
    s->retired = NULL;
    s->nretired = 0;
    uv_mutex_destroy(&s->reload_lock);
    free(s->workers);
    free(s->addrs);
    s->workers = NULL;
    s->addrs = NULL;
}

int server_worker_stats(const server_t *s, int i, stats_snapshot_t *out)
{
    memset(out, 0, sizeof(*out));
    if (i < 0 || i >= s->nworkers)
        return -1;
    stats_accumulate(&s->workers[i].stats, out);
    return 0;
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
        out->creds_pending += LOAD(pending);
        out->creds_refused_per_ip += LOAD(refused_per_ip);
        out->creds_refused_total += LOAD(refused_total);
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
    /* The kernel path's own counters (kp_global): one bpf() read per CPU-summed slot. */
    uint64_t g[KPATH_G_N];
    _Static_assert(sizeof(out->kernel) == sizeof(g), "STATS_KERNEL lists every KPATH_G_*");
    if (s->kpath && kpath_global(s->kpath, g) == 0) {
        out->kernel_active = 1;
        memcpy(&out->kernel, g, sizeof(g));
    }
}

void server_drain(server_t *s)
{
    if (atomic_exchange(&s->shared.turn.draining, 1) == 0)
        LOGI("drain", "draining: new allocations are refused, existing ones live on");
}

int server_draining(const server_t *s)
{
    return atomic_load(&((server_t *)(uintptr_t)s)->shared.turn.draining);
}

static void apply_cfg(worker_t *w, void *arg)
{
    if (w->closed)
        return;
    w->cfg = arg;
    w->dispatch.cfg = arg;
}

/* "key: old -> new" for every changed setting; *blocked when one of them needs a restart. */
static size_t diff_cfg(const cfg_t *a, const cfg_t *b, char *out, size_t cap, int *blocked)
{
    size_t n = 0;
    *blocked = 0;
    for (size_t i = 0; i < cfg_table_len; i++) {
        const cfg_entry_t *e = &cfg_table[i];
        if (e->flags & CFG_F_NOOP)
            continue;
        char va[256], vb[256];
        cfg_format_value(a, e, va, sizeof(va));
        cfg_format_value(b, e, vb, sizeof(vb));
        if (strcmp(va, vb) == 0)
            continue;
        int reloadable = (e->flags & CFG_F_RELOAD) != 0;
        if (!reloadable)
            *blocked = 1;
        if (n < cap)
            n += (size_t)snprintf(out + n, cap - n, "%s%s: %s -> %s%s", n ? "; " : "", e->name,
                                  (e->flags & CFG_F_SECRET) ? "****" : va,
                                  (e->flags & CFG_F_SECRET) ? "****" : vb,
                                  reloadable ? "" : " (needs a restart: not applied)");
    }
    return n;
}

/* Certificates are re-read on every reload: renewals usually keep the same file names. */
static int reload_certs(server_t *s, const cfg_t *c, char *report, size_t cap)
{
    tls_t *t = &s->shared.tls;
    if (!t->tls && !t->dtls)
        return 0;
    char err[512];
    size_t n = strlen(report);
    if (tls_reload(t, c, err, sizeof(err)) != 0) {
        snprintf(report + n, cap - n, "%scert: kept the old certificate: %s", n ? "; " : "", err);
        return -1;
    }
    snprintf(report + n, cap - n, "%scert: reloaded (%s)", n ? "; " : "", t->subject);
    return 0;
}

int server_reload(server_t *s, char *report, size_t cap)
{
    report[0] = 0;
    cfg_t *next = calloc(1, sizeof(*next));
    if (!next) {
        snprintf(report, cap, "out of memory");
        return -1;
    }
    cfg_cli_t cli;
    char err[512];
    /* The start's checks too (server_check): a file the next start would refuse is refused now,
     * with the same FILE:LINE, and nothing of it is applied. */
    if (cfg_load(next, s->argc, s->argv, &cli, err, sizeof(err)) != 0 ||
        server_check(next, s->check, err, sizeof(err)) != 0) {
        snprintf(report, cap, "%s (nothing applied%s)", err,
                 s->shared.tls.tls || s->shared.tls.dtls ? "; kept the old certificate" : "");
        cfg_free(next);
        free(next);
        return -1;
    }
    uv_mutex_lock(&s->reload_lock);
    int blocked;
    size_t n = diff_cfg(s->live, next, report, cap, &blocked);
    if (n == 0 || (blocked && cfg_keep_unreloadable(next, s->live) != 0)) {
        /* Nothing to swap (or no memory to do it): the running snapshot stays. */
        cfg_free(next);
        free(next);
        next = NULL;
    }
    cfg_t **r = next ? realloc(s->retired, (s->nretired + 1) * sizeof(*r)) : NULL;
    if (next && !r) {
        cfg_free(next);
        free(next);
        next = NULL;
    }
    if (next) {
        s->retired = r;
        s->retired[s->nretired++] = next; /* freed at exit: a worker may hold the old one */
        s->live = next;
        atomic_store(&s->shared.turn.live, next);
        log_set_level((enum log_level)next->log_level);
        for (int i = 0; i < s->nworkers; i++)
            (void)worker_post(&s->workers[i], apply_cfg, next);
    }
    int rc = reload_certs(s, s->live, report, cap);
    uv_mutex_unlock(&s->reload_lock);
    return rc;
}
