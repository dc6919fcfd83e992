/* worker.c - a worker thread's lifecycle: loop, listeners, the sweep timer, orderly shutdown.
 *
 * Each worker binds its own sockets with SO_REUSEPORT so the kernel spreads client 5-tuples across
 * workers and every later packet of a 5-tuple reaches the same worker: allocations need no locks.
 * Expiry and stall checks run from one 1-second sweep timer per worker, not a timer per object.
 */
#include "worker.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "cluster_quota.h"
#include "dtls.h"
#include "log.h"
#include "offload.h"
#include "rand.h"
#include "relay.h"
#include "sockaddr_util.h"
#include "tcp_listener.h"
#include "tcp_relay.h"
#include "udp_listener.h"
#include "usage_writer.h"

#define SWEEP_MS 1000

int worker_bind_socket(const struct sockaddr *addr, int type)
{
    int fd = socket(addr->sa_family, type | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    int one = 1;
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0 ||
        setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) != 0)
        goto fail;
    if (addr->sa_family == AF_INET6 &&
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one)) != 0)
        goto fail;
    if (bind(fd, addr, sa_len(addr)) != 0)
        goto fail;
    return fd;
fail:;
    int e = errno;
    close(fd);
    return -e;
}

static int64_t wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void worker_clock(worker_t *w)
{
    uint64_t now = uv_now(&w->loop);
    dispatch_clock(&w->dispatch, now, (uint64_t)((int64_t)now + w->unix_offset_ms));
}

static void on_sweep(uv_timer_t *t)
{
    worker_t *w = t->data;
    ASSERT_ON_WORKER(w);
    uv_update_time(&w->loop);
    w->unix_offset_ms = wall_ms() - (int64_t)uv_now(&w->loop);
    worker_clock(w);
    dispatch_sweep(&w->dispatch);
    tcp_listener_sweep(w, uv_now(&w->loop));
    dtls_sweep(w, uv_now(&w->loop));
    tcp_relay_sweep(w, uv_now(&w->loop));
}

/* Runs just before every poll. The time since the previous one, less what that poll waited, is
 * how long the loop went without looking at its sockets: a callback that blocked (a synchronous
 * Redis call would show here), a burst that took long, or the thread not being scheduled. */
static void on_stall_prepare(uv_prepare_t *p)
{
    worker_t *w = p->data;
    uint64_t now = uv_hrtime(), idle = uv_metrics_idle_time(&w->loop);
    if (w->stall_last_ns) {
        uint64_t span = now - w->stall_last_ns, waited = idle - w->stall_idle_ns;
        uint64_t busy_us = span > waited ? (span - waited) / 1000 : 0;
        if (busy_us > atomic_load_explicit(&w->stats.loop_stall_max_us, memory_order_relaxed))
            atomic_store_explicit(&w->stats.loop_stall_max_us, busy_us, memory_order_relaxed);
    }
    w->stall_last_ns = now;
    w->stall_idle_ns = idle;
}

static void close_all(worker_t *w)
{
    if (w->closed)
        return;
    w->closed = 1;
    worker_tx_flush(w); /* before any socket it names is closed */
    for (size_t i = 0; i < w->nudp; i++)
        udp_listener_close(&w->udp[i]);
    for (size_t i = 0; i < w->ntcp; i++)
        tcp_listener_close(&w->tcp[i]);
    tcp_listener_close_all(w);
    tcp_relay_close_all(w);
    dtls_close_all(w);
    dispatch_close(&w->dispatch); /* every allocation's kernel entries go with it */
    offload_free(w->offload);
    w->offload = NULL;
    usage_writer_close(w->usage);
    w->usage = NULL;
    cluster_quota_close(w->cquota); /* after dispatch_close, whose releases it drops */
    w->cquota = NULL;
    if (w->creds) {
        creds_close(w->creds);
        w->creds = NULL;
    }
    worker_tx_flush(w);
    if (!uv_is_closing((uv_handle_t *)&w->tx_check))
        uv_close((uv_handle_t *)&w->tx_check, NULL);
    if (!uv_is_closing((uv_handle_t *)&w->sweep))
        uv_close((uv_handle_t *)&w->sweep, NULL);
    if (!uv_is_closing((uv_handle_t *)&w->stall_prep))
        uv_close((uv_handle_t *)&w->stall_prep, NULL);
    if (!uv_is_closing((uv_handle_t *)&w->wakeup))
        uv_close((uv_handle_t *)&w->wakeup, NULL);
}

int worker_tx(worker_t *w, int fd, const struct sockaddr *to, const uint8_t *data, size_t len)
{
    ASSERT_ON_WORKER(w);
    if (data < w->udp_buf || data + len > w->udp_buf + WORKER_UDP_BUF) {
        /* Bytes that may not outlive this call (a reply buffer, a stream): send now. */
        ssize_t n = sendto(fd, data, len, 0, to, sa_len(to));
        return n < 0 ? -errno : 0;
    }
    if (w->ntx == WORKER_TX_MAX)
        worker_tx_flush(w);
    int i = w->ntx++;
    memcpy(&w->tx_addr[i], to, sa_len(to));
    w->tx_iov[i].iov_base = (void *)(uintptr_t)data;
    w->tx_iov[i].iov_len = len;
    struct msghdr *h = &w->tx_msgs[i].msg_hdr;
    memset(h, 0, sizeof(*h));
    h->msg_name = &w->tx_addr[i];
    h->msg_namelen = sa_len(to);
    h->msg_iov = &w->tx_iov[i];
    h->msg_iovlen = 1;
    w->tx_fd[i] = fd;
    return 0;
}

void worker_tx_flush(worker_t *w)
{
    int i = 0;
    while (i < w->ntx) {
        int j = i + 1;
        while (j < w->ntx && w->tx_fd[j] == w->tx_fd[i])
            j++;
        /* One sendmmsg for a run of datagrams on one socket; what the kernel refuses (a full
         * buffer) is lost like any UDP datagram, and counted. */
        int sent = 0;
        while (sent < j - i) {
            int n = sendmmsg(w->tx_fd[i], &w->tx_msgs[i + sent], (unsigned)(j - i - sent), 0);
            if (n <= 0) {
                if (n < 0 && errno == EINTR)
                    continue;
                stats_add(&w->stats.udp_tx_errors, (uint64_t)(j - i - sent));
                break;
            }
            sent += n;
        }
        i = j;
    }
    w->ntx = 0;
}

static void on_tx_check(uv_check_t *c)
{
    /* Safety net: nothing stays queued past a loop iteration. */
    worker_tx_flush(c->data);
}

/* Run every queued task. uv_async_send coalesces, so one wakeup may stand for many posts. */
static void run_tasks(worker_t *w)
{
    uv_mutex_lock(&w->task_lock);
    worker_task_t *t = w->tasks;
    w->tasks = NULL;
    w->tasks_tail = &w->tasks;
    uv_mutex_unlock(&w->task_lock);
    while (t) {
        worker_task_t *next = t->next;
        worker_clock(w);
        t->fn(w, t->arg);
        free(t);
        t = next;
    }
}

int worker_post(worker_t *w, worker_task_fn fn, void *arg)
{
    worker_task_t *t = malloc(sizeof(*t));
    if (!t)
        return -ENOMEM;
    t->fn = fn;
    t->arg = arg;
    t->next = NULL;
    uv_mutex_lock(&w->task_lock);
    if (w->tasks_closed) {
        uv_mutex_unlock(&w->task_lock);
        free(t);
        return -ESHUTDOWN;
    }
    *w->tasks_tail = t;
    w->tasks_tail = &t->next;
    uv_mutex_unlock(&w->task_lock);
    uv_async_send(&w->wakeup);
    return 0;
}

static void on_wakeup(uv_async_t *a)
{
    worker_t *w = a->data;
    ASSERT_ON_WORKER(w);
    run_tasks(w);
    /* The flag, not the number of wakeups, says whether to stop. */
    if (atomic_load(&w->stop_requested))
        close_all(w);
}

/* TLS (TCP) and DTLS (UDP) listeners on tls-listening-port of every distinct listening IP. */
static int open_secure(worker_t *w, const struct sockaddr_storage *addrs, size_t naddrs, char *err,
                       size_t errlen)
{
    tls_t *t = &w->shared->tls;
    w->tls = t;
    if (!t->tls && !t->dtls)
        return 0;
    if (t->dtls && dtls_init(w) != 0) {
        snprintf(err, errlen, "worker %d: out of memory", w->id);
        return -ENOMEM;
    }
    for (size_t i = 0; i < naddrs; i++) {
        int dup = 0;
        for (size_t j = 0; j < i && !dup; j++)
            dup =
                sa_equal_ip((const struct sockaddr *)&addrs[j], (const struct sockaddr *)&addrs[i]);
        if (dup)
            continue;
        sa_any_t sa;
        memcpy(&sa, &addrs[i], sa_len((const struct sockaddr *)&addrs[i]));
        sa_set_port(&sa.sa, (uint16_t)w->cfg->tls_listening_port);
        char name[SA_STRLEN];
        sa_format(&sa.sa, name, sizeof(name));
        int rc;
        if (t->tls) {
            if ((rc = tcp_listener_open(w, &w->tcp[w->ntcp], &sa.sa)) != 0) {
                snprintf(err, errlen, "cannot listen on tls %s: %s", name, strerror(-rc));
                return rc;
            }
            w->tcp[w->ntcp++].secure = 1;
        }
        if (t->dtls) {
            if ((rc = udp_listener_open(w, &w->udp[w->nudp], &sa.sa)) != 0) {
                snprintf(err, errlen, "cannot listen on dtls %s: %s", name, strerror(-rc));
                return rc;
            }
            w->udp[w->nudp++].secure = 1;
        }
    }
    return 0;
}

int worker_init(worker_t *w, int id, const cfg_t *cfg, shared_t *shared,
                const struct sockaddr_storage *addrs, size_t naddrs, struct kpath *kpath,
                int nworkers, char *err, size_t errlen)
{
    memset(w, 0, sizeof(*w));
    w->id = id;
    w->cfg = cfg;
    w->shared = shared;
    list_init(&w->conns);
    list_init(&w->pipes);
    rand_bytes(w->ip_key, sizeof(w->ip_key));
    int rc = uv_loop_init(&w->loop);
    if (rc != 0) {
        snprintf(err, errlen, "worker %d: uv_loop_init: %s", id, uv_strerror(rc));
        return rc;
    }
    w->loop_ready = 1;
    uv_mutex_init(&w->task_lock);
    w->tasks_tail = &w->tasks;
    uv_async_init(&w->loop, &w->wakeup, on_wakeup);
    w->wakeup.data = w;
    uv_timer_init(&w->loop, &w->sweep);
    w->sweep.data = w;
    uv_timer_start(&w->sweep, on_sweep, SWEEP_MS, SWEEP_MS);
    uv_check_init(&w->loop, &w->tx_check);
    w->tx_check.data = w;
    uv_check_start(&w->tx_check, on_tx_check);
    uv_unref((uv_handle_t *)&w->tx_check);
    /* The loop's idle time (what a poll waited) makes the stall measure: see on_stall_prepare. */
    uv_loop_configure(&w->loop, UV_METRICS_IDLE_TIME);
    uv_prepare_init(&w->loop, &w->stall_prep);
    w->stall_prep.data = w;
    uv_prepare_start(&w->stall_prep, on_stall_prepare);
    uv_unref((uv_handle_t *)&w->stall_prep);
    w->unix_offset_ms = wall_ms() - (int64_t)uv_now(&w->loop);
    if ((rc = creds_new(&w->loop, shared->creds, &w->creds_stats, &w->creds)) != 0) {
        snprintf(err, errlen, "worker %d: credential store: %s", id, strerror(-rc));
        return rc;
    }
    dispatch_relay_ops_t ops;
    memset(&ops, 0, sizeof(ops)); /* members nobody sets (offload without a kernel path): NULL */
    relay_ops(w, &ops);
    if ((rc = offload_new(kpath, id, nworkers, &w->stats, &w->offload)) != 0) {
        snprintf(err, errlen, "worker %d: out of memory", id);
        return rc;
    }
    offload_ops(w->offload, &ops);
    creds_ops_t cops;
    creds_ops(w->creds, &cops);
    if ((rc = dispatch_init(&w->dispatch, cfg, &shared->turn, &w->stats, &cops, &ops,
                            (uint64_t)id << 48)) != 0) {
        snprintf(err, errlen, "worker %d: out of memory", id);
        return rc;
    }
    w->dispatch.binding.send_from = udp_listener_send_from;
    w->dispatch.binding.env = w;
    if ((rc = usage_writer_new(&w->loop, cfg, &w->stats, &w->dispatch.usage, &w->usage, err,
                               errlen)) != 0)
        return rc;
    if ((rc = cluster_quota_new(&w->loop, cfg, &shared->turn.live, &w->stats, &w->dispatch.cquota,
                                &w->cquota, err, errlen)) != 0)
        return rc;
    worker_clock(w);

    /* Room for a plain and a TLS/DTLS listener per address. */
    w->udp = calloc(naddrs ? 2 * naddrs : 1, sizeof(*w->udp));
    w->tcp = calloc(naddrs ? 2 * naddrs : 1, sizeof(*w->tcp));
    w->udp_buf = malloc(WORKER_UDP_BUF);
    if (!w->udp || !w->tcp || !w->udp_buf) {
        snprintf(err, errlen, "worker %d: out of memory", id);
        return -ENOMEM;
    }
    for (size_t i = 0; i < naddrs; i++) {
        const struct sockaddr *sa = (const struct sockaddr *)&addrs[i];
        char name[SA_STRLEN];
        sa_format(sa, name, sizeof(name));
        if (!cfg->no_udp) {
            rc = udp_listener_open(w, &w->udp[w->nudp], sa);
            if (rc != 0) {
                snprintf(err, errlen, "cannot listen on udp %s: %s", name, strerror(-rc));
                return rc;
            }
            w->nudp++;
        }
        if (!cfg->no_tcp) {
            rc = tcp_listener_open(w, &w->tcp[w->ntcp], sa);
            if (rc != 0) {
                snprintf(err, errlen, "cannot listen on tcp %s: %s", name, strerror(-rc));
                return rc;
            }
            w->ntcp++;
        }
    }
    return open_secure(w, addrs, naddrs, err, errlen);
}

static void worker_main(void *arg)
{
    worker_t *w = arg;
    w->owner = uv_thread_self();
    w->owned = 1;
    uv_run(&w->loop, UV_RUN_DEFAULT);
}

int worker_start(worker_t *w)
{
    int rc = uv_thread_create(&w->thread, worker_main, w);
    if (rc == 0)
        w->thread_started = 1;
    return rc;
}

void worker_stop(worker_t *w)
{
    if (!w->loop_ready)
        return;
    atomic_store(&w->stop_requested, 1);
    uv_async_send(&w->wakeup);
}

void worker_join(worker_t *w)
{
    if (!w->loop_ready)
        return;
    if (w->thread_started) {
        uv_thread_join(&w->thread);
        w->thread_started = 0;
        w->owned = 0; /* joined: the joining thread holds the worker now */
    } else {
        /* Never started (startup failed): close handles and drain the loop here. */
        close_all(w);
        uv_run(&w->loop, UV_RUN_DEFAULT);
    }
    /* Tasks posted while the loop was ending still run, once, so posters never wait forever. */
    uv_mutex_lock(&w->task_lock);
    w->tasks_closed = 1;
    uv_mutex_unlock(&w->task_lock);
    run_tasks(w);
    uv_mutex_destroy(&w->task_lock);
    int rc = uv_loop_close(&w->loop);
    if (rc != 0)
        LOGW("worker", "worker %d: loop closed with handles open: %s", w->id, uv_strerror(rc));
    free(w->udp);
    free(w->tcp);
    free(w->udp_buf);
    w->udp = NULL;
    w->tcp = NULL;
    w->udp_buf = NULL;
}
