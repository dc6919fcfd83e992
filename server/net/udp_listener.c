/* udp_listener.c - a worker's UDP listening socket: receive in batches, dispatch, answer in place.
 *
 * Datagrams are read with recvmmsg (libuv's UV_UDP_RECVMMSG) into the worker's one receive buffer,
 * handed to the dispatcher without a copy, and answered with uv_udp_try_send: nothing is queued or
 * allocated per packet. A reply the kernel will not take right now is dropped and counted, as UDP
 * would lose it anyway.
 */
#include <errno.h>
#include <string.h>
#include <unistd.h>

#include "dtls.h"
#include "frame.h"
#include "log.h"
#include "sockaddr_util.h"
#include "udp_listener.h"
#include "worker.h"

/* Ask for big socket buffers so a burst does not overflow before the loop comes round. */
#define UDP_SOCKBUF (4 * 1024 * 1024)

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    udp_listener_t *l = h->data;
    (void)suggested;
    worker_tx_flush(l->w); /* queued sends point into the buffer about to be reused */
    /* One buffer per worker is enough: every datagram is dispatched before the next read. */
    *buf = uv_buf_init((char *)l->w->udp_buf, WORKER_UDP_BUF);
}

static int udp_send(void *ctx, const struct sockaddr *to, const uint8_t *data, size_t len)
{
    udp_listener_t *l = ctx;
    stats_t *st = &l->w->stats;
    int rc = worker_tx(l->w, l->fd, to, data, len);
    if (rc < 0) {
        stats_inc(&st->udp_tx_errors);
        return rc;
    }
    stats_inc(&st->udp_tx_packets);
    stats_add(&st->udp_tx_bytes, len);
    return 0;
}

static void on_recv(uv_udp_t *h, ssize_t nread, const uv_buf_t *buf, const struct sockaddr *addr,
                    unsigned flags)
{
    udp_listener_t *l = h->data;
    worker_t *w = l->w;
    ASSERT_ON_WORKER(w);
    if (flags & UV_UDP_MMSG_FREE) {
        worker_tx_flush(w); /* the end of a recvmmsg batch: send what it produced */
        return;
    }
    if (nread < 0) {
        LOGD("udp_recv", "recv error: %s", uv_strerror((int)nread));
        return;
    }
    if (!addr)
        return; /* nothing more to read this round */
    if (flags & UV_UDP_PARTIAL) {
        /* Bigger than a STUN/ChannelData datagram can be for us. */
        stats_inc(&w->stats.drop_malformed);
        return;
    }
    stats_inc(&w->stats.udp_rx_packets);
    stats_add(&w->stats.udp_rx_bytes, (uint64_t)nread);
    if (l->secure && nread > 0 && frame_classify(((const uint8_t *)buf->base)[0]) == FRAME_DTLS) {
        worker_clock(w);
        dtls_input(w, l, addr, (const uint8_t *)buf->base, (size_t)nread);
        return;
    }
    turn_conn_t conn = {
        .transport = TURN_UDP,
        .remote = addr,
        .local = (const struct sockaddr *)&l->local,
        .send = udp_send,
        .send_ctx = l,
    };
    worker_clock(w);
    (void)dispatch_message(&w->dispatch, &conn, (const uint8_t *)buf->base, (size_t)nread);
}

int udp_listener_send_from(void *env, const struct sockaddr *from, const struct sockaddr *to,
                           const uint8_t *buf, size_t len)
{
    worker_t *w = env;
    /* A handful of listeners (addresses x ports), and only RFC 5780 answers come here. */
    for (size_t i = 0; i < w->nudp; i++)
        if (sa_equal((const struct sockaddr *)&w->udp[i].local, from))
            return udp_send(&w->udp[i], to, buf, len);
    return -EADDRNOTAVAIL;
}

int udp_listener_open(worker_t *w, udp_listener_t *l, const struct sockaddr *addr)
{
    int fd = worker_bind_socket(addr, SOCK_DGRAM);
    if (fd < 0)
        return fd;
    int sz = UDP_SOCKBUF;
    /* Best effort: the kernel caps these at net.core.[rw]mem_max. */
    (void)setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &sz, sizeof(sz));
    (void)setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sz, sizeof(sz));

    memset(l, 0, sizeof(*l));
    l->w = w;
    memcpy(&l->local, addr, sa_len(addr));
    int rc = uv_udp_init_ex(&w->loop, &l->handle, AF_UNSPEC | UV_UDP_RECVMMSG);
    if (rc != 0) {
        close(fd);
        return rc;
    }
    l->handle.data = l;
    l->fd = fd;
    if ((rc = uv_udp_open(&l->handle, fd)) != 0) {
        close(fd);
        uv_close((uv_handle_t *)&l->handle, NULL);
        return rc;
    }
    if ((rc = uv_udp_recv_start(&l->handle, on_alloc, on_recv)) != 0) {
        uv_close((uv_handle_t *)&l->handle, NULL);
        return rc;
    }
    return 0;
}

void udp_listener_close(udp_listener_t *l)
{
    if (!uv_is_closing((uv_handle_t *)&l->handle))
        uv_close((uv_handle_t *)&l->handle, NULL);
}
