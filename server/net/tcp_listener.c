/* tcp_listener.c - a worker's TCP listening socket and the client connections it accepts.
 *
 * RFC 8656 §12.5 / RFC 6062: a TCP client connection carries STUN and ChannelData frames back to
 * back. Hostile peers are bounded here: connections per source IP (per worker), a stall limit for a
 * frame started but never finished, an idle limit for connections doing nothing, a cap on bytes
 * queued for a client that does not read, and garbage closes the connection at once. None of it
 * touches other connections. On the TLS port (RFC 8656 §3.1, RFC 7443) the same frames travel
 * inside TLS: ciphertext goes through memory BIOs so the handshake never blocks the loop, and an
 * unfinished handshake is bounded like an unfinished frame.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

#include "frame.h"
#include "list.h"
#include "log.h"
#include "siphash.h"
#include "sockaddr_util.h"
#include "stream.h"
#include "stun.h"
#include "tcp_listener.h"
#include "tcp_relay.h"
#include "worker.h"
#include "wq.h"

struct tcp_conn {
    uv_tcp_t handle;
    worker_t *w;
    tcp_listener_t *listener;
    struct sockaddr_storage remote;
    stream_rx_t rx;
    uint64_t last_rx_ms;
    uint64_t frame_since_ms; /* when the partial frame in rx began */
    wq_t wq;                 /* bytes for the client (ciphertext on TLS), bounded: wq.h */
    SSL *ssl;                /* TLS connections only */
    int handshake_done;
    tcp_pipe_t *pipe; /* RFC 6062 client data connection: raw bytes to/from this peer */
    size_t frame_end; /* end of the frame being dispatched, inside rx */
    int paused;       /* reading stopped for backpressure */
    int carried;      /* a frame other than ConnectionBind came: not a new data connection */
    int closing;
    int counted; /* in shared->tcp_conns until its handle is closed */
    list_t link; /* on worker_t.conns */
};

struct ip_count {
    struct sockaddr_storage ip;
    unsigned count;
    ip_count_t *next;
};

static unsigned ip_hash(const worker_t *w, const struct sockaddr *sa)
{
    size_t n;
    const uint8_t *p = sa_ip_bytes(sa, &n);
    return (unsigned)(siphash(w->ip_key, p, n) % WORKER_IP_BUCKETS);
}

/* Count one more connection from this IP; returns the new count, or 0 on allocation failure. */
static unsigned ip_count_add(worker_t *w, const struct sockaddr *sa)
{
    ip_count_t **b = &w->ip_counts[ip_hash(w, sa)];
    for (ip_count_t *c = *b; c; c = c->next)
        if (sa_equal_ip((const struct sockaddr *)&c->ip, sa))
            return ++c->count;
    ip_count_t *c = calloc(1, sizeof(*c));
    if (!c)
        return 0;
    memcpy(&c->ip, sa, sa_len(sa));
    c->count = 1;
    c->next = *b;
    *b = c;
    return 1;
}

static void ip_count_del(worker_t *w, const struct sockaddr *sa)
{
    for (ip_count_t **pp = &w->ip_counts[ip_hash(w, sa)]; *pp; pp = &(*pp)->next) {
        ip_count_t *c = *pp;
        if (sa_equal_ip((const struct sockaddr *)&c->ip, sa)) {
            if (--c->count == 0) {
                *pp = c->next;
                free(c);
            }
            return;
        }
    }
}

static void on_conn_closed(uv_handle_t *h)
{
    tcp_conn_t *c = h->data;
    if (c->counted) /* the descriptor is closed now: another connection may have it */
        atomic_fetch_sub(&c->w->shared->tcp_conns, 1);
    SSL_free(c->ssl);
    stream_rx_free(&c->rx);
    free(c);
}

static void conn_describe(tcp_conn_t *c, turn_conn_t *out);

static void conn_close(tcp_conn_t *c, const char *why)
{
    if (c->closing)
        return;
    c->closing = 1;
    worker_t *w = c->w;
    turn_conn_t dc;
    conn_describe(c, &dc);
    dispatch_conn_gone(&w->dispatch, &dc);
    if (c->pipe) {
        tcp_pipe_t *p = c->pipe;
        c->pipe = NULL;
        tcp_relay_client_closed(p);
    }
    list_remove(&c->link);
    ip_count_del(w, (const struct sockaddr *)&c->remote);
    stats_inc(&w->stats.tcp_closed);
    stats_gauge_add(&w->stats.tcp_connections, -1);
    if (log_enabled(LOG_DEBUG)) {
        char name[SA_STRLEN];
        LOGD("tcp_close", "%s: %s", sa_format((struct sockaddr *)&c->remote, name, sizeof(name)),
             why);
    }
    uv_close((uv_handle_t *)&c->handle, on_conn_closed);
}

static void on_wq_error(wq_t *q, int status)
{
    (void)status;
    conn_close(q->data, "write error");
}

/* The client's queue passed high water or drained: a pipe stops or resumes reading its peer. A
 * control connection has nothing to pause; the queue's cap ends a client that does not read. */
static void on_wq_water(wq_t *q, int high)
{
    tcp_conn_t *c = q->data;
    if (c->pipe && !c->closing)
        tcp_relay_client_water(c->pipe, high);
}

/* Write bytes to the socket now as far as it takes them, queue the rest (bounded: wq.h). */
static int raw_send(tcp_conn_t *c, const uint8_t *data, size_t len)
{
    if (c->closing)
        return -EPIPE;
    int rc = wq_write(&c->wq, data, len);
    if (rc != 0) {
        conn_close(c, rc == -ENOBUFS  ? "client not reading"
                      : rc == -ENOMEM ? "out of memory"
                                      : "write error");
        return rc;
    }
    stats_add(&c->w->stats.tcp_tx_bytes, len);
    return 0;
}

/* Move what OpenSSL wrote into the memory BIO onto the socket. */
static int tls_flush(tcp_conn_t *c)
{
    BIO *wb = SSL_get_wbio(c->ssl);
    uint8_t buf[16384];
    int n;
    while ((n = BIO_read(wb, buf, sizeof(buf))) > 0)
        if (raw_send(c, buf, (size_t)n) != 0)
            return -1;
    return 0;
}

/* Send to the client (the dispatcher's callback): in TLS on the TLS port. */
static int tcp_send(void *ctx, const struct sockaddr *to, const uint8_t *data, size_t len)
{
    tcp_conn_t *c = ctx;
    (void)to; /* a connection has one peer */
    if (!c->listener->secure)
        return raw_send(c, data, len);
    if (c->closing || !c->ssl || !c->handshake_done)
        return -EPIPE; /* never plaintext on the TLS port, also once the TLS state moved away */
    /* The contexts allow partial writes (tls.c): SSL_write may take one record (16 KiB of
     * plaintext) and return, so a bigger write (an RFC 6062 pipe's 64 KiB read, a large Data
     * indication) goes record by record, each onto the queue at once. */
    for (size_t off = 0; off < len;) {
        int n = SSL_write(c->ssl, data + off, (int)(len - off));
        if (n <= 0) {
            ERR_clear_error();
            conn_close(c, "TLS write error");
            return -EIO;
        }
        off += (size_t)n;
        if (tls_flush(c) != 0)
            return -EPIPE;
    }
    return 0;
}

/* The 5-tuple as the dispatcher knows it. The transport comes from the listener, never from state
 * that changes (c->ssl leaves with a handed-over connection): closing must find the allocation
 * under the same key the Allocate stored it. */
static void conn_describe(tcp_conn_t *c, turn_conn_t *out)
{
    out->transport = c->listener->secure ? TURN_TLS : TURN_TCP;
    out->remote = (const struct sockaddr *)&c->remote;
    out->local = (const struct sockaddr *)&c->listener->local;
    out->send = tcp_send;
    out->send_ctx = c;
}

/* 1 for a ConnectionBind request (RFC 6062 §4.3: the first request on a new data connection). */
static int is_connection_bind(const uint8_t *frame, size_t len)
{
    return len >= STUN_HEADER_LEN && frame_classify(frame[0]) == FRAME_STUN &&
           ((uint16_t)frame[0] << 8 | frame[1]) ==
               stun_type(STUN_METHOD_CONNECTION_BIND, STUN_CLASS_REQUEST);
}

static int on_frame(void *arg, const uint8_t *frame, size_t len)
{
    tcp_conn_t *c = arg;
    worker_t *w = c->w;
    turn_conn_t conn;
    conn_describe(c, &conn);
    c->frame_end = (size_t)(frame - c->rx.buf) + len;
    /* Marked before dispatching: a request parked for the credential store still counts. A
     * ConnectionBind answered 401/438 (or 400) may be sent again: the connection is still new. */
    if (!is_connection_bind(frame, len))
        c->carried = 1;
    if (dispatch_message(&w->dispatch, &conn, frame, len) == DISPATCH_NOT_TURN)
        return -1;
    /* A ConnectionBind may have made this a pipe (or handed it to another worker): stop framing. */
    return c->closing || c->pipe ? -1 : 0;
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    tcp_conn_t *c = h->data;
    uint8_t *p;
    size_t n;
    (void)suggested;
    if (c->ssl || c->pipe) {
        /* Ciphertext or piped bytes: read into the worker's scratch buffer, passed on at once. */
        *buf = uv_buf_init((char *)c->w->udp_buf, 65536);
        return;
    }
    if (stream_rx_space(&c->rx, &p, &n) != 0) {
        *buf = uv_buf_init(NULL, 0); /* libuv reports UV_ENOBUFS to on_read */
        return;
    }
    *buf = uv_buf_init((char *)p, (unsigned)n);
}

/* Ciphertext in: finish the handshake, then decrypt into the deframer. Returns 0 or -1 (close). */
static int tls_input(tcp_conn_t *c, const uint8_t *data, size_t len)
{
    BIO_write(SSL_get_rbio(c->ssl), data, (int)len);
    if (!c->handshake_done) {
        int rc = SSL_do_handshake(c->ssl);
        if (rc != 1) {
            int e = SSL_get_error(c->ssl, rc);
            ERR_clear_error();
            if (tls_flush(c) != 0 || (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE))
                return -1;
            return 0;
        }
        c->handshake_done = 1;
        c->frame_since_ms = 0;
        stats_inc(&c->w->stats.tls_handshakes);
    }
    for (;;) {
        uint8_t *p;
        size_t room;
        if (c->pipe) {
            uint8_t plain[16384];
            int n = SSL_read(c->ssl, plain, sizeof(plain));
            if (n <= 0) {
                int e = SSL_get_error(c->ssl, n);
                ERR_clear_error();
                if (e == SSL_ERROR_WANT_READ)
                    break;
                return -1;
            }
            tcp_relay_from_client(c->pipe, plain, (size_t)n);
            if (c->closing || !c->pipe)
                return 0;
            continue;
        }
        if (stream_rx_space(&c->rx, &p, &room) != 0)
            return -1;
        int n = SSL_read(c->ssl, p, (int)(room > 16384 ? 16384 : room));
        if (n <= 0) {
            int e = SSL_get_error(c->ssl, n);
            ERR_clear_error();
            if (e == SSL_ERROR_WANT_READ)
                break;
            return -1; /* close_notify or a TLS error */
        }
        if (stream_rx_commit(&c->rx, (size_t)n, on_frame, c) != 0) {
            if (c->pipe && !c->closing)
                continue; /* the rest of the plaintext belongs to the peer */
            return c->closing ? 0 : -1;
        }
    }
    return tls_flush(c);
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    tcp_conn_t *c = s->data;
    worker_t *w = c->w;
    ASSERT_ON_WORKER(w);
    if (nread < 0) {
        conn_close(c, nread == UV_EOF ? "eof" : uv_strerror((int)nread));
        return;
    }
    if (nread == 0)
        return;
    worker_clock(w);
    uint64_t now = w->dispatch.now_ms;
    c->last_rx_ms = now;
    stats_add(&w->stats.tcp_rx_bytes, (uint64_t)nread);
    if (c->pipe && !c->ssl) {
        tcp_relay_from_client(c->pipe, (const uint8_t *)buf->base, (size_t)nread);
        return;
    }
    int was_partial = stream_rx_partial(&c->rx);
    int rc = c->ssl ? tls_input(c, (const uint8_t *)buf->base, (size_t)nread)
                    : stream_rx_commit(&c->rx, (size_t)nread, on_frame, c);
    if (rc != 0 && c->pipe)
        return; /* became an RFC 6062 data connection */
    if (rc != 0) {
        if (!c->closing)
            stats_inc(&w->stats.tcp_closed_garbage);
        conn_close(c, c->ssl ? "TLS error or not TURN framing" : "not TURN framing");
        return;
    }
    if ((c->ssl && !c->handshake_done) || c->pipe || c->closing)
        return; /* the handshake's own clock (set at accept) keeps running; pipes have no frames */
    /* The stall clock runs from the first byte of an unfinished frame, not from the last read, so a
     * client trickling one byte at a time cannot hold a buffer open forever. */
    if (!stream_rx_partial(&c->rx))
        c->frame_since_ms = 0;
    else if (!was_partial || c->frame_since_ms == 0)
        c->frame_since_ms = now;
}

/* A server-side SSL on memory BIOs; the handshake is bounded by tcp-frame-timeout from now. */
static int tls_start(tcp_conn_t *c)
{
    SSL_CTX *ctx = tls_get(c->w->tls, 0);
    if (!ctx)
        return -1;
    c->ssl = SSL_new(ctx);
    SSL_CTX_free(ctx); /* the SSL holds its own reference */
    BIO *rb = BIO_new(BIO_s_mem()), *wb = BIO_new(BIO_s_mem());
    if (!c->ssl || !rb || !wb) {
        BIO_free(rb);
        BIO_free(wb);
        return -1;
    }
    BIO_set_mem_eof_return(rb, -1);
    SSL_set_bio(c->ssl, rb, wb);
    SSL_set_accept_state(c->ssl);
    c->frame_since_ms = c->last_rx_ms ? c->last_rx_ms : 1;
    return 0;
}

/* What a new connection and an adopted one (tcp_conn_adopt) both start with: its worker and
 * listener, its handle on the worker's loop, its write queue and receive buffer. */
static void conn_init(tcp_conn_t *c, worker_t *w, tcp_listener_t *l)
{
    c->w = w;
    c->listener = l;
    uv_tcp_init(&w->loop, &c->handle);
    c->handle.data = c;
    wq_init(&c->wq, (uv_stream_t *)&c->handle, on_wq_water, on_wq_error, c);
    stream_rx_init(&c->rx);
}
static void on_connection(uv_stream_t *server, int status)
{
    tcp_listener_t *l = server->data;
    worker_t *w = l->w;
    ASSERT_ON_WORKER(w);
    if (status < 0) {
        LOGD("tcp_accept", "accept error: %s", uv_strerror(status));
        return;
    }
    tcp_conn_t *c = calloc(1, sizeof(*c));
    if (!c)
        return;
    conn_init(c, w, l);
    int len = sizeof(c->remote);
    if (uv_accept(server, (uv_stream_t *)&c->handle) != 0 ||
        uv_tcp_getpeername(&c->handle, (struct sockaddr *)&c->remote, &len) != 0) {
        c->closing = 1;
        uv_close((uv_handle_t *)&c->handle, on_conn_closed);
        return;
    }
    unsigned n = ip_count_add(w, (const struct sockaddr *)&c->remote);
    long total = atomic_fetch_add(&w->shared->tcp_conns, 1) + 1;
    c->counted = 1;
    list_insert_head(&w->conns, &c->link);
    stats_inc(&w->stats.tcp_accepted);
    stats_gauge_add(&w->stats.tcp_connections, 1);
    if (n == 0 || n > (unsigned)w->cfg->max_tcp_per_ip) {
        stats_inc(&w->stats.tcp_rejected_limit);
        conn_close(c, "too many connections from this IP");
        return;
    }
    if (total > w->shared->tcp_conns_max) {
        stats_inc(&w->stats.tcp_rejected_total);
        conn_close(c, "too many TCP connections in all (max-tcp-connections)");
        return;
    }
    uv_tcp_nodelay(&c->handle, 1);
    c->last_rx_ms = uv_now(&w->loop);
    if (l->secure && tls_start(c) != 0) {
        conn_close(c, "TLS setup failed");
        return;
    }
    if (uv_read_start((uv_stream_t *)&c->handle, on_alloc, on_read) != 0)
        conn_close(c, "read_start failed");
}

int tcp_listener_open(worker_t *w, tcp_listener_t *l, const struct sockaddr *addr)
{
    int fd = worker_bind_socket(addr, SOCK_STREAM);
    if (fd < 0)
        return fd;
    memset(l, 0, sizeof(*l));
    l->w = w;
    memcpy(&l->local, addr, sa_len(addr));
    uv_tcp_init(&w->loop, &l->handle);
    l->handle.data = l;
    int rc = uv_tcp_open(&l->handle, fd);
    if (rc != 0) {
        close(fd);
        uv_close((uv_handle_t *)&l->handle, NULL);
        return rc;
    }
    if ((rc = uv_listen((uv_stream_t *)&l->handle, 1024, on_connection)) != 0) {
        uv_close((uv_handle_t *)&l->handle, NULL);
        return rc;
    }
    return 0;
}

void tcp_listener_close(tcp_listener_t *l)
{
    if (!uv_is_closing((uv_handle_t *)&l->handle))
        uv_close((uv_handle_t *)&l->handle, NULL);
}

static int conn_has_allocation(tcp_conn_t *c)
{
    turn_conn_t dc;
    conn_describe(c, &dc);
    return dispatch_has_allocation(&c->w->dispatch, &dc);
}

void tcp_listener_sweep(worker_t *w, uint64_t now_ms)
{
    ASSERT_ON_WORKER(w);
    uint64_t stall = (uint64_t)w->cfg->tcp_frame_timeout * 1000;
    uint64_t idle = (uint64_t)w->cfg->tcp_idle_timeout * 1000;
    LIST_FOREACH_SAFE(n, tmp, &w->conns)
    {
        tcp_conn_t *c = container_of(n, tcp_conn_t, link);
        if (c->frame_since_ms && now_ms - c->frame_since_ms >= stall) {
            stats_inc(&w->stats.tcp_closed_stall);
            conn_close(c, "stalled mid-frame");
        } else if (!c->pipe && now_ms - c->last_rx_ms >= idle && !conn_has_allocation(c)) {
            stats_inc(&w->stats.tcp_closed_idle);
            conn_close(c, "idle");
        }
    }
}

void tcp_listener_close_all(worker_t *w)
{
    while (!list_empty(&w->conns))
        conn_close(LIST_FIRST(&w->conns, tcp_conn_t, link), "shutdown");
    for (size_t i = 0; i < WORKER_IP_BUCKETS; i++) {
        while (w->ip_counts[i]) {
            ip_count_t *c = w->ip_counts[i];
            w->ip_counts[i] = c->next;
            free(c);
        }
    }
}

/* ---- RFC 6062 client data connections (used by tcp_relay.c) ---- */

int tcp_conn_pipe(tcp_conn_t *c, tcp_pipe_t *p)
{
    c->pipe = p;
    c->frame_since_ms = 0;
    /* Answers queued before the bind (a client may send ConnectionBind again and again without
     * reading them) already took the queue past high water: the peer starts paused. */
    if (c->wq.high)
        tcp_relay_client_water(p, 1);
    /* Bytes the client sent right behind its ConnectionBind belong to the peer. */
    if (c->rx.len > c->frame_end)
        tcp_relay_from_client(p, c->rx.buf + c->frame_end, c->rx.len - c->frame_end);
    c->rx.len = 0;
    c->frame_end = 0;
    stream_rx_free(&c->rx);
    return 0;
}

void tcp_conn_describe(tcp_conn_t *c, turn_conn_t *out) { conn_describe(c, out); }

int tcp_conn_fresh(tcp_conn_t *c)
{
    return !c->carried && !c->pipe && !c->closing && !conn_has_allocation(c);
}

int tcp_conn_write(tcp_conn_t *c, const uint8_t *data, size_t len)
{
    return tcp_send(c, NULL, data, len);
}

void tcp_conn_pause(tcp_conn_t *c, int pause)
{
    if (c->closing || c->paused == pause)
        return;
    c->paused = pause;
    if (pause)
        uv_read_stop((uv_stream_t *)&c->handle);
    else
        uv_read_start((uv_stream_t *)&c->handle, on_alloc, on_read);
}

void tcp_conn_close(tcp_conn_t *c, const char *why) { conn_close(c, why); }

int tcp_conn_detach(tcp_conn_t *c, tcp_handoff_t *h)
{
    /* Only a new data connection may move: anything else has an allocation, parked requests or
     * pipes on this worker that would be left pointing at it. */
    if (!tcp_conn_fresh(c))
        return -EPERM;
    if (wq_pending(&c->wq) || (c->ssl && BIO_ctrl_pending(SSL_get_wbio(c->ssl))))
        return -EBUSY; /* bytes still on their way out through this worker */
    uv_os_fd_t fd;
    if (uv_fileno((uv_handle_t *)&c->handle, &fd) != 0 || (h->fd = dup(fd)) < 0)
        return -EIO;
    uv_read_stop((uv_stream_t *)&c->handle);
    h->ssl = c->ssl;
    c->ssl = NULL; /* the new owner frees it */
    h->secure = c->listener->secure;
    memcpy(&h->local, &c->listener->local, sizeof(h->local));
    memcpy(&h->remote, &c->remote, sizeof(h->remote));
    h->rest = NULL;
    h->nrest = 0;
    size_t from = c->frame_end < c->rx.len ? c->frame_end : c->rx.len;
    if (c->rx.len > from && (h->rest = malloc(c->rx.len - from)) != NULL) {
        memcpy(h->rest, c->rx.buf + from, c->rx.len - from);
        h->nrest = c->rx.len - from;
    }
    conn_close(c, "handed to another worker");
    return 0;
}

tcp_conn_t *tcp_conn_adopt(worker_t *w, tcp_handoff_t *h)
{
    ASSERT_ON_WORKER(w); /* the adopting worker, in the task the old one posted to it */
    tcp_listener_t *l = NULL;
    for (size_t i = 0; i < w->ntcp && !l; i++)
        if (w->tcp[i].secure == h->secure &&
            sa_equal((const struct sockaddr *)&w->tcp[i].local, (const struct sockaddr *)&h->local))
            l = &w->tcp[i];
    tcp_conn_t *c = l ? calloc(1, sizeof(*c)) : NULL;
    if (!c) {
        close(h->fd);
        SSL_free(h->ssl);
        free(h->rest);
        return NULL;
    }
    conn_init(c, w, l);
    memcpy(&c->remote, &h->remote, sizeof(c->remote));
    c->ssl = h->ssl;
    c->handshake_done = h->ssl != NULL;
    if (uv_tcp_open(&c->handle, h->fd) != 0) {
        close(h->fd);
        c->closing = 1;
        uv_close((uv_handle_t *)&c->handle, on_conn_closed);
        free(h->rest);
        return NULL;
    }
    /* Counted, not checked: it was admitted by the worker that accepted it (which let go of it). */
    (void)ip_count_add(w, (const struct sockaddr *)&c->remote);
    atomic_fetch_add(&w->shared->tcp_conns, 1);
    c->counted = 1;
    list_insert_head(&w->conns, &c->link);
    stats_gauge_add(&w->stats.tcp_connections, 1);
    c->last_rx_ms = uv_now(&w->loop);
    uint8_t *p;
    size_t room;
    if (h->nrest && stream_rx_space(&c->rx, &p, &room) == 0 && room >= h->nrest) {
        memcpy(p, h->rest, h->nrest);
        c->rx.len = h->nrest; /* delivered to the peer once the bind makes this a pipe */
        c->frame_end = 0;
    }
    free(h->rest);
    uv_read_start((uv_stream_t *)&c->handle, on_alloc, on_read);
    return c;
}
