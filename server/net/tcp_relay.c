/* tcp_relay.c - RFC 6062 TCP relaying on a worker: the relayed listening socket, peer data
 * connections made by Connect or accepted from peers, ConnectionBind (also when the client's data
 * connection landed on another worker), and the byte pipes with backpressure.
 *
 * RFC 6062 §5.1-5.5: connections to or from peers need a permission for the peer's IP; a Connect
 * that does not complete in 30 s is 447; a peer connection not bound within 30 s is closed; data is
 * not read from a peer until its client data connection is bound (the peer's TCP window fills
 * instead); closing either side closes the other; the allocation going closes them all. A side
 * whose outgoing queue passes WQ_HIGH stops the other side's reading until it is back to WQ_LOW
 * (wq.h), so a slow reader never makes us buffer without bound. Peer connections, pending or bound,
 * are capped per allocation (max-peer-connections) and per user on all workers
 * (user-peer-connection-quota): past a cap a peer connecting in is closed at accept and a Connect
 * gets 508, so a flood of peers cannot take the process's file descriptors. A pending peer that
 * goes away with nothing unread is freed by the next sweep, not when its 30 s are up.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "dispatch.h"
#include "log.h"
#include "rand.h"
#include "sockaddr_util.h"
#include "stun_msg.h"
#include "tcp_relay.h"
#include "worker.h"
#include "wq.h"

#define TCP_CONNECT_MS (30 * 1000) /* RFC 6062 §5.2: at least 30 s */
#define TCP_BIND_MS (30 * 1000)    /* RFC 6062 §5.3 */

enum pipe_state { PIPE_CONNECTING, PIPE_WAIT_BIND, PIPE_OPEN, PIPE_CLOSING };

typedef struct {
    uv_tcp_t listener;
    worker_t *w;
    alloc_t *a;
    int open_handles; /* listener + pipes still to be closed before the allocation is freed */
    int npeers;       /* pipes counted against max-peer-connections (not yet closing) */
} tcp_rel_t;

struct tcp_pipe {
    uv_tcp_t peer;
    uv_connect_t creq;
    worker_t *w;
    tcp_rel_t *rel;
    uint32_t id;
    sa_any_t peer_addr;
    enum pipe_state state;
    uint64_t since_ms;
    uint8_t *req; /* the Connect request, answered when the connection is made */
    size_t req_len;
    void *auth;
    tcp_conn_t *client;
    wq_t peer_wq; /* bytes for the peer, bounded: wq.h */
    int peer_paused;
    int counted; /* holds a place in rel->npeers and in the user's peer count */
    list_t link; /* on worker_t.pipes */
};

static void pipe_close(tcp_pipe_t *p, const char *why);
static void on_peer_wq_water(wq_t *q, int high);
static void on_peer_wq_error(wq_t *q, int status);

/* Take a place for one more peer connection of `rel`: 0, or -ENOSPC past max-peer-connections,
 * -EDQUOT past the user's user-peer-connection-quota (counted on every worker). */
static int peer_admit(worker_t *w, tcp_rel_t *rel)
{
    if (rel->npeers >= w->cfg->max_peer_connections)
        return -ENOSPC;
    int rc = quota_peer_conn_take(&w->shared->turn.quota, rel->a->username, rel->a->username_len);
    if (rc != 0)
        return rc;
    rel->npeers++;
    stats_gauge_add(&w->stats.peer_connections, 1);
    return 0;
}

/* Give the place back (the allocation stays until the last pipe's close callback: rel_release). */
static void peer_unadmit(worker_t *w, tcp_rel_t *rel)
{
    rel->npeers--;
    stats_gauge_add(&w->stats.peer_connections, -1);
    quota_peer_conn_release(&w->shared->turn.quota, rel->a->username, rel->a->username_len);
}

static void rel_release(tcp_rel_t *rel)
{
    if (--rel->open_handles > 0)
        return;
    alloc_t *a = rel->a;
    shared_tcp_port_release(rel->w->shared, &a->relay[0].addr.sa);
    stats_gauge_add(&rel->w->stats.relay_sockets, -1);
    free(rel);
    a->tcp_state = NULL;
    alloc_free(a);
}

static void on_pipe_closed(uv_handle_t *h)
{
    tcp_pipe_t *p = h->data;
    tcp_rel_t *rel = p->rel;
    free(p->req);
    free(p->auth);
    free(p);
    rel_release(rel);
}

static void answer_connect(tcp_pipe_t *p, int code)
{
    stun_msg_t m;
    worker_t *w = p->w;
    if (!p->req || stun_msg_decode(p->req, p->req_len, &m) != 0)
        return;
    worker_clock(w);
    dispatch_tcp_connect_done(&w->dispatch, p->rel->a, &m, p->auth, p->id, code);
    free(p->req);
    p->req = NULL;
}

static void pipe_close(tcp_pipe_t *p, const char *why)
{
    if (p->state == PIPE_CLOSING)
        return;
    if (p->state == PIPE_CONNECTING)
        answer_connect(p, STUN_ERR_CONNECTION_TIMEOUT);
    p->state = PIPE_CLOSING;
    if (p->counted) {
        p->counted = 0;
        peer_unadmit(p->w, p->rel); /* uv_close below closes the socket at once */
    }
    list_remove(&p->link);
    LOGD("tcp_relay", "connection 0x%08x closed: %s", (unsigned)p->id, why);
    if (p->client) {
        tcp_conn_t *c = p->client;
        p->client = NULL;
        tcp_conn_close(c, "peer side closed");
    }
    uv_close((uv_handle_t *)&p->peer, on_pipe_closed);
}

static tcp_pipe_t *pipe_new(worker_t *w, tcp_rel_t *rel, const struct sockaddr *peer)
{
    tcp_pipe_t *p = calloc(1, sizeof(*p));
    if (!p)
        return NULL;
    p->w = w;
    p->rel = rel;
    memcpy(&p->peer_addr, peer, sa_len(peer));
    p->since_ms = uv_now(&w->loop);
    /* The id names the worker that owns the pipe: a ConnectionBind landing elsewhere finds it. */
    do {
        uint32_t r;
        rand_bytes(&r, sizeof(r));
        p->id = ((uint32_t)w->id << 24) | (r & 0xFFFFFF);
        LIST_FOREACH(n, &w->pipes)
        {
            if (container_of(n, tcp_pipe_t, link)->id == p->id)
                p->id = 0;
        }
    } while ((p->id & 0xFFFFFF) == 0);
    uv_tcp_init(&w->loop, &p->peer);
    p->peer.data = p;
    wq_init(&p->peer_wq, (uv_stream_t *)&p->peer, on_peer_wq_water, on_peer_wq_error, p);
    rel->open_handles++;
    list_insert_head(&w->pipes, &p->link);
    return p;
}

/* ---- peer side ---- */

static void peer_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    tcp_pipe_t *p = h->data;
    (void)suggested;
    *buf = uv_buf_init((char *)p->w->udp_buf, 65536);
}

static void peer_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    tcp_pipe_t *p = s->data;
    ASSERT_ON_WORKER(p->w);
    if (nread < 0) {
        pipe_close(p, nread == UV_EOF ? "peer eof" : uv_strerror((int)nread));
        return;
    }
    if (nread == 0 || !p->client)
        return;
    stats_add(&p->w->stats.relay_peer_to_client_bytes, (uint64_t)nread);
    if (p->state == PIPE_OPEN) {
        /* The usage ledger counts a stream's reads as its packets (turn/usage.h). */
        p->rel->a->traffic.from_peer_bytes += (uint64_t)nread;
        p->rel->a->traffic.from_peer_packets++;
    }
    /* A client that does not read pauses us (tcp_relay_client_water) before its cap is reached. */
    if (tcp_conn_write(p->client, (const uint8_t *)buf->base, (size_t)nread) != 0)
        pipe_close(p, "client write failed");
}

/* The peer reads slowly: stop reading the client above high water, resume at low water. */
static void on_peer_wq_water(wq_t *q, int high)
{
    tcp_pipe_t *p = q->data;
    if (p->state == PIPE_OPEN && p->client)
        tcp_conn_pause(p->client, high);
}

static void on_peer_wq_error(wq_t *q, int status)
{
    (void)status;
    pipe_close(q->data, "peer write failed");
}

void tcp_relay_from_client(tcp_pipe_t *p, const uint8_t *data, size_t len)
{
    if (p->state != PIPE_OPEN || len == 0)
        return;
    stats_add(&p->w->stats.relay_client_to_peer_bytes, len);
    p->rel->a->traffic.to_peer_bytes += len;
    p->rel->a->traffic.to_peer_packets++;
    int rc = wq_write(&p->peer_wq, data, len);
    if (rc != 0)
        pipe_close(p, rc == -ENOBUFS  ? "peer not reading"
                      : rc == -ENOMEM ? "out of memory"
                                      : "peer write failed");
}

void tcp_relay_client_water(tcp_pipe_t *p, int high)
{
    if (p->state != PIPE_OPEN || p->peer_paused == high)
        return;
    p->peer_paused = high;
    if (high)
        uv_read_stop((uv_stream_t *)&p->peer);
    else
        uv_read_start((uv_stream_t *)&p->peer, peer_alloc, peer_read);
}

void tcp_relay_client_closed(tcp_pipe_t *p)
{
    p->client = NULL;
    pipe_close(p, "client data connection closed");
}

/* ---- Connect (client asks us to connect out) ---- */

static void on_connected(uv_connect_t *req, int status)
{
    tcp_pipe_t *p = req->data;
    if (p->state != PIPE_CONNECTING)
        return;
    if (status < 0) {
        pipe_close(p, uv_strerror(status)); /* answers 447 */
        return;
    }
    p->state = PIPE_WAIT_BIND;
    p->since_ms = uv_now(&p->w->loop);
    answer_connect(p, 0);
}

/* A socket bound to the relayed address (SO_REUSEPORT: the listener holds the same port). */
static int relay_tcp_socket(const struct sockaddr *addr)
{
    int fd = socket(addr->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    int one = 1;
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0 ||
        setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) != 0 ||
        (addr->sa_family == AF_INET6 &&
         setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one)) != 0) ||
        bind(fd, addr, sa_len(addr)) != 0) {
        int e = errno;
        close(fd);
        return -e;
    }
    return fd;
}

static int tcp_connect(void *env, alloc_t *a, const struct sockaddr *peer, const stun_msg_t *req,
                       const void *auth)
{
    worker_t *w = env;
    tcp_rel_t *rel = a->tcp_state;
    /* RFC 6062 §5.2: one connection per peer address at a time. */
    LIST_FOREACH(n, &w->pipes)
    {
        tcp_pipe_t *q = container_of(n, tcp_pipe_t, link);
        if (q->rel == rel && sa_equal(&q->peer_addr.sa, peer))
            return STUN_ERR_CONNECTION_ALREADY_EXISTS;
    }
    if (peer_admit(w, rel) != 0) {
        /* 508: a capacity limit, as for Allocate (RFC 8656 §7.2). */
        stats_inc(&w->stats.drop_peer_conn_limit);
        return STUN_ERR_INSUFFICIENT_CAPACITY;
    }
    tcp_pipe_t *p = pipe_new(w, rel, peer);
    if (!p) {
        peer_unadmit(w, rel);
        return STUN_ERR_SERVER_ERROR;
    }
    p->counted = 1;
    if (!alloc_perm_check(a, peer, w->dispatch.now_ms))
        alloc_perm_install(a, peer, w->dispatch.now_ms, (unsigned)w->cfg->max_permissions);
    p->req = malloc(req->len);
    p->auth = malloc(dispatch_auth_size());
    if (!p->req || !p->auth) {
        pipe_close(p, "out of memory");
        return 0; /* pipe_close answered 447 */
    }
    memcpy(p->req, req->buf, req->len);
    p->req_len = req->len;
    memcpy(p->auth, auth, dispatch_auth_size());
    int fd = relay_tcp_socket(&a->relay[0].addr.sa);
    if (fd < 0 || uv_tcp_open(&p->peer, fd) != 0) {
        if (fd >= 0)
            close(fd);
        pipe_close(p, "socket failed");
        return 0;
    }
    p->creq.data = p;
    if (uv_tcp_connect(&p->creq, &p->peer, peer, on_connected) != 0)
        pipe_close(p, "connect failed");
    return 0;
}

/* ---- peers connecting in ---- */

static void on_peer(uv_stream_t *server, int status)
{
    tcp_rel_t *rel = server->data;
    worker_t *w = rel->w;
    if (status < 0 || rel->a->dead)
        return;
    sa_any_t peer;
    memset(&peer, 0, sizeof(peer));
    peer.sa.sa_family = rel->a->relay[0].addr.sa.sa_family;
    tcp_pipe_t *p = pipe_new(w, rel, &peer.sa);
    if (!p)
        return;
    p->state = PIPE_WAIT_BIND;
    int len = sizeof(p->peer_addr);
    worker_clock(w);
    if (uv_accept(server, (uv_stream_t *)&p->peer) != 0 ||
        uv_tcp_getpeername(&p->peer, &p->peer_addr.sa, &len) != 0) {
        pipe_close(p, "accept failed");
        return;
    }
    if (!alloc_perm_check(rel->a, &p->peer_addr.sa, w->dispatch.now_ms)) {
        stats_inc(&w->stats.drop_no_permission); /* RFC 6062 §5.3: no permission, close */
        pipe_close(p, "no permission");
        return;
    }
    if (peer_admit(w, rel) != 0) {
        /* Accepted only to be closed: left in the backlog it would be offered again and again. */
        stats_inc(&w->stats.drop_peer_conn_limit);
        pipe_close(p, "peer connection limit");
        return;
    }
    p->counted = 1;
    dispatch_tcp_attempt(&w->dispatch, rel->a, &p->peer_addr.sa, p->id);
}

static int tcp_listen(void *env, alloc_t *a, alloc_relay_t *r)
{
    worker_t *w = env;
    if (shared_tcp_port_take(w->shared, &r->addr.sa) != 0)
        return -EADDRINUSE;
    int fd = relay_tcp_socket(&r->addr.sa);
    tcp_rel_t *rel = fd >= 0 ? calloc(1, sizeof(*rel)) : NULL;
    if (!rel) {
        shared_tcp_port_release(w->shared, &r->addr.sa);
        if (fd >= 0)
            close(fd);
        return fd < 0 ? fd : -ENOMEM;
    }
    rel->w = w;
    rel->a = a;
    rel->open_handles = 1;
    uv_tcp_init(&w->loop, &rel->listener);
    rel->listener.data = rel;
    int rc = uv_tcp_open(&rel->listener, fd);
    if (rc == 0)
        rc = uv_listen((uv_stream_t *)&rel->listener, 64, on_peer);
    if (rc != 0) {
        if (rc != 0)
            close(fd);
        shared_tcp_port_release(w->shared, &r->addr.sa);
        uv_close((uv_handle_t *)&rel->listener, (uv_close_cb)free);
        return rc;
    }
    r->handle = rel;
    a->tcp_state = rel;
    stats_gauge_add(&w->stats.relay_sockets, 1);
    return 0;
}

static void on_listener_closed(uv_handle_t *h) { rel_release(h->data); }

void tcp_relay_close_alloc(worker_t *w, alloc_t *a)
{
    ASSERT_ON_WORKER(w);
    tcp_rel_t *rel = a->tcp_state;
    if (!rel) {
        alloc_free(a);
        return;
    }
    LIST_FOREACH_SAFE(n, tmp, &w->pipes)
    {
        tcp_pipe_t *p = container_of(n, tcp_pipe_t, link);
        if (p->rel == rel)
            pipe_close(p, "allocation ended");
    }
    uv_close((uv_handle_t *)&rel->listener, on_listener_closed);
}

/* ---- ConnectionBind ---- */

static void bind_here(worker_t *w, tcp_conn_t *c, const uint8_t *req, size_t len, uint32_t id,
                      const turn_conn_t *conn)
{
    stun_msg_t m;
    if (stun_msg_decode(req, len, &m) != 0)
        return;
    worker_clock(w);
    tcp_pipe_t *p = NULL;
    LIST_FOREACH(n, &w->pipes)
    {
        tcp_pipe_t *q = container_of(n, tcp_pipe_t, link);
        if (q->id == id && q->state == PIPE_WAIT_BIND) {
            p = q;
            break;
        }
    }
    if (!p) {
        dispatch_tcp_bind_refuse(&w->dispatch, conn, &m, STUN_ERR_BAD_REQUEST); /* §5.4 */
        return;
    }
    if (dispatch_tcp_bind_check(&w->dispatch, conn, &m, p->rel->a) != 0)
        return;
    p->client = c;
    p->state = PIPE_OPEN;
    tcp_conn_pipe(c, p);
    if (p->state == PIPE_OPEN && !p->peer_paused)
        uv_read_start((uv_stream_t *)&p->peer, peer_alloc, peer_read);
}

typedef struct {
    tcp_handoff_t h;
    uint32_t id;
    size_t len;
    uint8_t req[];
} bind_task_t;

static void bind_task(worker_t *w, void *arg)
{
    bind_task_t *t = arg;
    if (w->closed) {
        close(t->h.fd);
        SSL_free(t->h.ssl);
        free(t->h.rest);
        free(t);
        return;
    }
    tcp_conn_t *c = tcp_conn_adopt(w, &t->h);
    if (c) {
        turn_conn_t conn;
        tcp_conn_describe(c, &conn);
        bind_here(w, c, t->req, t->len, t->id, &conn);
    }
    free(t);
}

static void tcp_bind(void *env, const turn_conn_t *conn, const stun_msg_t *req, uint32_t id)
{
    worker_t *w = env;
    tcp_conn_t *c = conn->send_ctx;
    int owner = (int)(id >> 24);
    if (!tcp_conn_fresh(c)) {
        /* RFC 6062 §4.3, §5.4: ConnectionBind comes first on a new data connection. On a control
         * connection it would turn the allocation's own connection into a pipe, or move it (and
         * with it what the allocation points at) to another worker. The connection stays as it
         * was: a 400 is an answer, not a reason to end the allocation. */
        dispatch_tcp_bind_refuse(&w->dispatch, conn, req, STUN_ERR_BAD_REQUEST);
        return;
    }
    if (owner == w->id) {
        bind_here(w, c, req->buf, req->len, id, conn);
        return;
    }
    worker_t *ow = owner < w->nsiblings ? &w->siblings[owner] : NULL;
    bind_task_t *t = ow ? malloc(sizeof(*t) + req->len) : NULL;
    if (!t) {
        dispatch_tcp_bind_refuse(&w->dispatch, conn, req, STUN_ERR_BAD_REQUEST);
        return;
    }
    t->id = id;
    t->len = req->len;
    memcpy(t->req, req->buf, req->len);
    /* The connection moves to the worker that owns the peer connection (and its allocation). */
    if (tcp_conn_detach(c, &t->h) != 0 || worker_post(ow, bind_task, t) != 0) {
        free(t);
        dispatch_tcp_bind_refuse(&w->dispatch, conn, req, STUN_ERR_SERVER_ERROR);
    }
}

/* 1 when the peer of a pending connection has closed or reset it and left nothing unread: nobody
 * can get anything from it any more. Bytes still queued stay for the client's ConnectionBind (RFC
 * 6062 §5.4: data received before the bind is delivered), within the 30 s. We do not read before
 * the bind, so EOF shows only to a peek. */
static int peer_gone(tcp_pipe_t *p)
{
    uv_os_fd_t fd;
    if (uv_fileno((uv_handle_t *)&p->peer, &fd) != 0)
        return 0;
    char b;
    ssize_t n = recv(fd, &b, 1, MSG_PEEK | MSG_DONTWAIT);
    return n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR);
}

void tcp_relay_sweep(worker_t *w, uint64_t now_ms)
{
    LIST_FOREACH_SAFE(n, tmp, &w->pipes)
    {
        tcp_pipe_t *p = container_of(n, tcp_pipe_t, link);
        if (p->state == PIPE_CONNECTING && now_ms - p->since_ms >= TCP_CONNECT_MS)
            pipe_close(p, "connect timeout"); /* answers 447 */
        else if (p->state == PIPE_WAIT_BIND && now_ms - p->since_ms >= TCP_BIND_MS)
            pipe_close(p, "no ConnectionBind within 30 s");
        else if (p->state == PIPE_WAIT_BIND && peer_gone(p))
            pipe_close(p, "peer closed before the ConnectionBind");
    }
}

void tcp_relay_close_all(worker_t *w)
{
    while (!list_empty(&w->pipes))
        pipe_close(LIST_FIRST(&w->pipes, tcp_pipe_t, link), "shutdown");
}

void tcp_relay_ops(worker_t *w, dispatch_relay_ops_t *ops)
{
    (void)w;
    ops->tcp_listen = tcp_listen;
    ops->tcp_connect = tcp_connect;
    ops->tcp_bind = tcp_bind;
}
