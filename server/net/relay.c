/* relay.c - a worker's UDP relay sockets, behind dispatch_relay_ops_t.
 *
 * RFC 8656 §7.2 (one relayed transport address per allocation and family), §14 (DONT-FRAGMENT: DF
 * set on IPv4 when the Allocate asked for it). Relay sockets are bound without SO_REUSEADDR/PORT so
 * the kernel refuses a port that another allocation (or anything else) holds; the dispatcher then
 * tries another random port. Peer datagrams are read with recvmmsg into the worker's buffer, behind
 * DISPATCH_HEADROOM bytes, so the answer to the client is framed in place.
 */
#include <errno.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "dispatch.h"
#include "relay.h"
#include "sockaddr_util.h"
#include "tcp_relay.h"
#include "worker.h"

typedef struct {
    uv_udp_t handle;
    worker_t *w;
    alloc_t *a;
    alloc_relay_t *r;
    int fd;
} relay_sock_t;

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    relay_sock_t *rs = h->data;
    (void)suggested;
    worker_tx_flush(rs->w); /* queued sends point into the buffer about to be reused */
    /* Datagrams land DISPATCH_HEADROOM bytes in, each in its own 64 KiB recvmmsg slot, so every
     * datagram has room before it (the tail of a slot already handled) and after it. */
    *buf = uv_buf_init((char *)rs->w->udp_buf + DISPATCH_HEADROOM,
                       WORKER_UDP_BUF - DISPATCH_HEADROOM - DISPATCH_TAILROOM);
}

static void on_recv(uv_udp_t *h, ssize_t nread, const uv_buf_t *buf, const struct sockaddr *addr,
                    unsigned flags)
{
    relay_sock_t *rs = h->data;
    worker_t *w = rs->w;
    ASSERT_ON_WORKER(w);
    if (flags & UV_UDP_MMSG_FREE) {
        worker_tx_flush(w); /* the end of a recvmmsg batch */
        return;
    }
    if (nread < 0 || !addr || !rs->a)
        return;
    if (flags & UV_UDP_PARTIAL) {
        stats_inc(&w->stats.drop_malformed);
        return;
    }
    worker_clock(w);
    dispatch_relay_input(&w->dispatch, rs->a, rs->r, addr, (uint8_t *)buf->base, (size_t)nread);
}

static int relay_socket(const struct sockaddr *addr)
{
    int fd = socket(addr->sa_family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    int one = 1;
    if (addr->sa_family == AF_INET6)
        (void)setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
    if (bind(fd, addr, sa_len(addr)) != 0) {
        int e = errno;
        close(fd);
        return -e;
    }
    return fd;
}

static int relay_open(void *env, alloc_t *a, alloc_relay_t *r, int fd, int dont_fragment)
{
    worker_t *w = env;
    if (fd < 0 && (fd = relay_socket(&r->addr.sa)) < 0)
        return fd;
    if (dont_fragment && r->addr.sa.sa_family == AF_INET) {
        int v = IP_PMTUDISC_DO;
        (void)setsockopt(fd, IPPROTO_IP, IP_MTU_DISCOVER, &v, sizeof(v));
    }
    relay_sock_t *rs = calloc(1, sizeof(*rs));
    if (!rs) {
        close(fd);
        return -ENOMEM;
    }
    rs->w = w;
    rs->a = a;
    rs->r = r;
    int rc = uv_udp_init_ex(&w->loop, &rs->handle, AF_UNSPEC | UV_UDP_RECVMMSG);
    if (rc != 0) {
        free(rs);
        close(fd);
        return rc;
    }
    rs->handle.data = rs;
    rs->fd = fd;
    if ((rc = uv_udp_open(&rs->handle, fd)) != 0)
        close(fd);
    else
        rc = uv_udp_recv_start(&rs->handle, on_alloc, on_recv);
    if (rc != 0) {
        rs->a = NULL;
        uv_close((uv_handle_t *)&rs->handle, (uv_close_cb)free);
        return rc;
    }
    r->handle = rs;
    stats_gauge_add(&w->stats.relay_sockets, 1);
    return 0;
}

static int relay_hold(void *env, const struct sockaddr *addr)
{
    (void)env;
    return relay_socket(addr);
}

static int relay_send(void *env, alloc_relay_t *r, const struct sockaddr *peer, const uint8_t *buf,
                      size_t len)
{
    (void)env;
    relay_sock_t *rs = r->handle;
    return worker_tx(rs->w, rs->fd, peer, buf, len);
}

static void on_closed(uv_handle_t *h)
{
    relay_sock_t *rs = h->data;
    alloc_t *a = rs->a;
    stats_gauge_add(&rs->w->stats.relay_sockets, -1);
    free(rs);
    /* The allocation goes with its last socket: nothing can reach it after that. */
    if (a && --a->nrelay == 0)
        alloc_free(a);
}

static void relay_close(void *env, alloc_t *a)
{
    /* uv_close closes the fd at once: datagrams still queued for this socket (worker_tx) must
     * leave first, or they would be lost, or sent by whatever socket reuses the fd number. */
    worker_tx_flush(env);
    if (a->tcp) {
        tcp_relay_close_alloc(env, a);
        return;
    }
    if (a->nrelay == 0) {
        alloc_free(a);
        return;
    }
    for (int i = 0; i < a->nrelay; i++) {
        relay_sock_t *rs = a->relay[i].handle;
        if (rs && !uv_is_closing((uv_handle_t *)&rs->handle))
            uv_close((uv_handle_t *)&rs->handle, on_closed);
    }
}

void relay_ops(worker_t *w, dispatch_relay_ops_t *ops)
{
    ops->open = relay_open;
    ops->hold = relay_hold;
    ops->send = relay_send;
    ops->close = relay_close;
    ops->env = w;
    tcp_relay_ops(w, ops);
}
