/* worker.h - one worker thread: its own libuv loop, its own listening sockets (SO_REUSEPORT), and
 * everything that belongs to the clients the kernel hashes to it.
 *
 * Nothing a worker owns is touched by another thread. Other threads talk to it only through
 * worker_post() and worker_stop() (uv_async) and read its counters through stats (see stats.h).
 * Its sockets are declared by their own modules: udp_listener.h, tcp_listener.h (client
 * connections), tcp_relay.h (RFC 6062), relay.h (UDP relays), dtls.h.
 */
#ifndef UTURN_WORKER_H
#define UTURN_WORKER_H

#include <assert.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/uio.h>
#include <sys/socket.h>
#include <uv.h>

#include "cfg.h"
#include "creds.h"
#include "dispatch.h"
#include "list.h"
#include "shared.h"
#include "siphash.h"
#include "tls.h"
#include "stats.h"

typedef struct worker worker_t;
typedef struct udp_listener udp_listener_t; /* udp_listener.h */
typedef struct tcp_listener tcp_listener_t; /* tcp_listener.h */
struct kpath;                               /* kpath.h: the kernel fast path */

/* A task another thread hands to a worker (worker_post). */
typedef void (*worker_task_fn)(worker_t *w, void *arg);
typedef struct worker_task {
    worker_task_fn fn;
    void *arg;
    struct worker_task *next;
} worker_task_t;

/* Connections from one client IP (tcp_listener.c), for max-tcp-per-ip. */
typedef struct ip_count ip_count_t;

/* Outgoing datagrams whose bytes live in the receive buffer are queued and sent with one sendmmsg
 * per socket at the end of the receive batch (worker_tx). */
#define WORKER_TX_MAX 64

/* UDP receive buffer: libuv's recvmmsg path takes 64 KiB per datagram slot. */
#define WORKER_UDP_SLOTS 20 /* libuv 1.44 reads at most 20 datagrams per recvmmsg */
#define WORKER_UDP_BUF (WORKER_UDP_SLOTS * 65536)
#define WORKER_IP_BUCKETS 1024

struct worker {
    int id;
    const cfg_t *cfg;
    shared_t *shared;
    creds_t *creds;
    creds_stats_t creds_stats; /* the credential store's counters, readable by any thread */
    tls_t *tls;                /* the server's contexts (NULL members when TLS/DTLS are off) */
    struct dtls_table *dtls;   /* this worker's DTLS sessions */
    list_t pipes;              /* tcp_pipe_t: RFC 6062 peer data connections of its allocations */
    worker_t *siblings;        /* every worker (by id), for handing connections over */
    int nsiblings;             /* entries in siblings */
    int64_t unix_offset_ms;    /* wall clock minus loop clock, refreshed by the sweep */
    uv_loop_t loop;
    uv_thread_t thread;
    uv_async_t wakeup;
    uv_timer_t sweep;
    uv_prepare_t stall_prep; /* measures the loop's longest stretch without polling */
    uint64_t stall_last_ns;  /* uv_hrtime at the last prepare callback (0: none yet) */
    uint64_t stall_idle_ns;  /* uv_metrics_idle_time then */
    _Atomic int stop_requested;
    uv_mutex_t task_lock;
    worker_task_t *tasks, **tasks_tail;
    int tasks_closed; /* after the loop ended: worker_post refuses */
    int closed;       /* close_all ran: listeners, connections and allocations are gone */
    int loop_ready;
    int thread_started;
    /* The loop's thread, written by that thread (worker_main) and cleared by worker_join after the
     * join: ASSERT_ON_WORKER reads it. While unset (before start, after join, or when the worker
     * never started) the one thread holding the worker is its owner. */
    uv_thread_t owner;
    int owned;
    stats_t stats;
    dispatch_t dispatch;
    struct usage_writer *usage;   /* the usage ledger's writer (usage_writer.h), or NULL */
    struct cluster_quota *cquota; /* cluster-wide user-quota (cluster_quota.h), or NULL */
    struct offload *offload;      /* the kernel path's control plane (offload.h), or NULL */
    udp_listener_t *udp;          /* nudp listeners (udp_listener.h) */
    size_t nudp;
    tcp_listener_t *tcp; /* ntcp listeners (tcp_listener.h) */
    size_t ntcp;
    list_t conns; /* tcp_conn_t: every client TCP connection, for sweeps and shutdown */
    ip_count_t *ip_counts[WORKER_IP_BUCKETS];
    uint8_t ip_key[SIPHASH_KEY_LEN]; /* keys the hash of ip_counts (client-chosen addresses) */
    uint8_t *udp_buf;
    /* The send batch (worker_tx): entries point into udp_buf, valid until the next read. */
    struct mmsghdr tx_msgs[WORKER_TX_MAX];
    struct iovec tx_iov[WORKER_TX_MAX];
    sa_any_t tx_addr[WORKER_TX_MAX];
    int tx_fd[WORKER_TX_MAX];
    int ntx;
    uv_check_t tx_check;
};

/* uv_buf_t has no const variant; libuv's send paths only read the bytes. */
static inline uv_buf_t worker_cbuf(const void *p, size_t n)
{
    return uv_buf_init((char *)(uintptr_t)p, (unsigned)n);
}

/* Whether the calling thread may touch the worker's objects (see worker_t.owner). */
static inline bool worker_on_thread(const worker_t *w)
{
    uv_thread_t self = uv_thread_self();
    return !w->owned || uv_thread_equal(&self, &w->owner);
}

/* At entry points that only the worker's own thread may use ("nothing a worker owns is touched by
 * another thread", above): a call from another thread is a programmer error, and without this
 * check it is a data race that only TSan would see. */
#define ASSERT_ON_WORKER(w) assert(worker_on_thread(w))

/* Create the loop and bind a UDP and/or TCP listener on every address (on the calling thread; the
 * loop is not running yet). Returns 0 or -errno with `err` naming the address that failed. */
/* `kpath` (NULL: none) is the kernel fast path the worker's allocations are offloaded to
 * (offload.h); the worker owns its share of the slots (id of nworkers). */
int worker_init(worker_t *w, int id, const cfg_t *cfg, shared_t *shared,
                const struct sockaddr_storage *addrs, size_t naddrs, struct kpath *kpath,
                int nworkers, char *err, size_t errlen);
/* Run the loop on a new thread. 0 or -errno. */
int worker_start(worker_t *w);
/* Run fn(w, arg) on the worker's loop thread, soon (any thread). fn is called exactly once when
 * this returns 0, also when the worker is stopping: then it may run after the worker closed its
 * objects (w->closed set: touch nothing but the task's own data), possibly on the thread that joins
 * the worker. -ESHUTDOWN (fn never called) once the worker is joined, -ENOMEM. */
int worker_post(worker_t *w, worker_task_fn fn, void *arg);

/* Ask the worker to close everything and let its loop end (any thread). */
void worker_stop(worker_t *w);
/* Wait for the thread and free the loop (main thread, after worker_stop). */
void worker_join(worker_t *w);

/* Send a datagram on `fd` to `to`: queued when the bytes are inside the worker's receive buffer
 * (sent by worker_tx_flush at the end of the receive batch), sent at once otherwise. Returns 0 or
 * -errno (at once) like a send. */
int worker_tx(worker_t *w, int fd, const struct sockaddr *to, const uint8_t *data, size_t len);
/* Send everything queued (sendmmsg per run of one socket). Must run before udp_buf is reused. */
void worker_tx_flush(worker_t *w);

/* Bring the dispatcher's clocks up to date (call at the top of every loop callback). */
void worker_clock(worker_t *w);

/* A socket of `type` bound to `addr` with SO_REUSEPORT (and IPV6_V6ONLY for IPv6), non-blocking.
 * Returns the fd or -errno. */
int worker_bind_socket(const struct sockaddr *addr, int type);

#endif
