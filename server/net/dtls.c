/* dtls.c - DTLS sessions on a worker's TLS-port UDP listener (see dtls.h).
 *
 * RFC 7350 (TURN over DTLS), RFC 6347 §4.2.1 (stateless cookie exchange), RFC 7983 (demux). Records
 * are fed to OpenSSL through a memory BIO one datagram at a time; what OpenSSL writes goes through
 * a small BIO of ours straight to the UDP socket, one datagram per record written, so handshake
 * flights are never glued into a datagram bigger than the MTU we set.
 */
#include "dtls.h"

#include <errno.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <stdlib.h>
#include <string.h>

#include "list.h"
#include "log.h"
#include "rand.h"
#include "siphash.h"
#include "sockaddr_util.h"
#include "tls.h"

#define DTLS_BUCKETS 4096
#define DTLS_IP_BUCKETS 1024
#define DTLS_MTU 1200
#define DTLS_PLAIN_MAX 16384

typedef struct dtls_sess dtls_sess_t;
struct dtls_sess {
    SSL *ssl;
    worker_t *w;
    udp_listener_t *l;
    sa_any_t remote;
    uint64_t started_ms, last_ms;
    int established;
    int closing;
    dtls_sess_t *hnext; /* bucket chain */
    list_t link;        /* on dtls_table.all */
};

/* Where our write BIO sends: a session, or (for the cookie exchange) a listener and address. */
typedef struct {
    udp_listener_t *l;
    const struct sockaddr *to;
} dtls_out_t;

/* Sessions per source IP (max-dtls-sessions-per-ip), like TCP's per-IP count: an entry lives while
 * its IP has a session, so their number is bounded by max-dtls-sessions. */
typedef struct dtls_ip dtls_ip_t;
struct dtls_ip {
    sa_any_t ip;
    unsigned count;
    dtls_ip_t *next;
};

struct dtls_table {
    dtls_sess_t *buckets[DTLS_BUCKETS];
    dtls_ip_t *ips[DTLS_IP_BUCKETS];
    list_t all; /* dtls_sess_t.link, newest first */
    unsigned count;
    uint8_t key[SIPHASH_KEY_LEN]; /* both tables are indexed by addresses senders choose */
    uint8_t plain[DTLS_PLAIN_MAX];
};

static BIO_METHOD *out_method;
static uv_once_t out_once = UV_ONCE_INIT;

static int out_write(BIO *b, const char *data, int len)
{
    dtls_out_t *o = BIO_get_data(b);
    if (!o || len <= 0)
        return len;
    uv_buf_t buf = worker_cbuf(data, (size_t)len);
    /* A datagram the kernel will not take now is lost like any other: DTLS retransmits. */
    (void)uv_udp_try_send(&o->l->handle, &buf, 1, o->to);
    return len;
}

static long out_ctrl(BIO *b, int cmd, long num, void *ptr)
{
    (void)b;
    (void)num;
    (void)ptr;
    switch (cmd) {
    case BIO_CTRL_FLUSH:
        return 1;
    case BIO_CTRL_DGRAM_QUERY_MTU:
        return DTLS_MTU;
    case BIO_CTRL_WPENDING:
    case BIO_CTRL_PENDING:
        return 0;
    default:
        return 0;
    }
}

static int out_create(BIO *b)
{
    BIO_set_init(b, 1);
    return 1;
}

static void make_method(void)
{
    out_method = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "uturn-dtls-out");
    BIO_meth_set_write(out_method, out_write);
    BIO_meth_set_ctrl(out_method, out_ctrl);
    BIO_meth_set_create(out_method, out_create);
}

int dtls_init(worker_t *w)
{
    uv_once(&out_once, make_method);
    w->dtls = calloc(1, sizeof(*w->dtls));
    if (!w->dtls || !out_method)
        return -ENOMEM;
    list_init(&w->dtls->all);
    rand_bytes(w->dtls->key, sizeof(w->dtls->key));
    return 0;
}

static size_t bucket(const struct dtls_table *t, const struct sockaddr *sa, const udp_listener_t *l)
{
    uint8_t buf[sizeof(uintptr_t) + 2 + 16];
    size_t iplen;
    const uint8_t *ip = sa_ip_bytes(sa, &iplen);
    uintptr_t lp = (uintptr_t)l;
    uint16_t port = sa_port(sa);
    memcpy(buf, &lp, sizeof(lp));
    memcpy(buf + sizeof(lp), &port, sizeof(port));
    memcpy(buf + sizeof(lp) + sizeof(port), ip, iplen);
    return (size_t)(siphash(t->key, buf, sizeof(lp) + sizeof(port) + iplen) % DTLS_BUCKETS);
}

static dtls_ip_t **ip_slot(struct dtls_table *t, const struct sockaddr *sa)
{
    size_t n;
    const uint8_t *p = sa_ip_bytes(sa, &n);
    dtls_ip_t **pp = &t->ips[siphash(t->key, p, n) % DTLS_IP_BUCKETS];
    while (*pp && !sa_equal_ip(&(*pp)->ip.sa, sa))
        pp = &(*pp)->next;
    return pp; /* the entry for this IP, or the NULL link to append one at */
}

static unsigned ip_sessions(struct dtls_table *t, const struct sockaddr *sa)
{
    dtls_ip_t *e = *ip_slot(t, sa);
    return e ? e->count : 0;
}

static int ip_add(struct dtls_table *t, const struct sockaddr *sa)
{
    dtls_ip_t **pp = ip_slot(t, sa);
    if (!*pp) {
        dtls_ip_t *e = calloc(1, sizeof(*e));
        if (!e)
            return -ENOMEM;
        memcpy(&e->ip, sa, sa_len(sa));
        *pp = e;
    }
    (*pp)->count++;
    return 0;
}

static void ip_del(struct dtls_table *t, const struct sockaddr *sa)
{
    dtls_ip_t **pp = ip_slot(t, sa);
    dtls_ip_t *e = *pp;
    if (e && --e->count == 0) {
        *pp = e->next;
        free(e);
    }
}

static dtls_sess_t *find(struct dtls_table *t, const struct sockaddr *from, const udp_listener_t *l)
{
    for (dtls_sess_t *s = t->buckets[bucket(t, from, l)]; s; s = s->hnext)
        if (s->l == l && sa_equal(&s->remote.sa, from))
            return s;
    return NULL;
}

static int dtls_send(void *ctx, const struct sockaddr *to, const uint8_t *buf, size_t len)
{
    dtls_sess_t *s = ctx;
    (void)to;
    if (s->closing || !s->established)
        return -EPIPE;
    int n = SSL_write(s->ssl, buf, (int)len);
    if (n <= 0) {
        ERR_clear_error();
        return -EIO;
    }
    return 0;
}

static void describe(dtls_sess_t *s, turn_conn_t *c)
{
    c->transport = TURN_DTLS;
    c->remote = &s->remote.sa;
    c->local = (const struct sockaddr *)&s->l->local;
    c->send = dtls_send;
    c->send_ctx = s;
}

static void sess_free(worker_t *w, dtls_sess_t *s, const char *why)
{
    struct dtls_table *t = w->dtls;
    s->closing = 1;
    turn_conn_t c;
    describe(s, &c);
    dispatch_conn_gone(&w->dispatch, &c);
    for (dtls_sess_t **pp = &t->buckets[bucket(t, &s->remote.sa, s->l)]; *pp; pp = &(*pp)->hnext)
        if (*pp == s) {
            *pp = s->hnext;
            break;
        }
    list_remove(&s->link);
    t->count--;
    ip_del(t, &s->remote.sa);
    stats_gauge_add(&w->stats.dtls_sessions, -1);
    if (log_enabled(LOG_DEBUG)) {
        char a[SA_STRLEN];
        LOGD("dtls_close", "%s: %s", sa_format(&s->remote.sa, a, sizeof(a)), why);
    }
    BIO *wb = SSL_get_wbio(s->ssl);
    free(wb ? BIO_get_data(wb) : NULL);
    SSL_free(s->ssl);
    free(s);
}

void dtls_close_all(worker_t *w)
{
    if (!w->dtls)
        return;
    while (!list_empty(&w->dtls->all))
        sess_free(w, LIST_FIRST(&w->dtls->all, dtls_sess_t, link), "shutdown");
    free(w->dtls);
    w->dtls = NULL;
}

/* A fresh SSL reading one datagram from a memory BIO and writing through ours to `out`. */
static SSL *new_ssl(worker_t *w, dtls_out_t *out, const uint8_t *pkt, size_t len)
{
    SSL_CTX *ctx = tls_get(w->tls, 1);
    if (!ctx)
        return NULL;
    SSL *ssl = SSL_new(ctx);
    SSL_CTX_free(ctx);
    if (!ssl)
        return NULL;
    BIO *rb = BIO_new(BIO_s_mem());
    BIO *wb = BIO_new(out_method);
    if (!rb || !wb) {
        BIO_free(rb);
        BIO_free(wb);
        SSL_free(ssl);
        return NULL;
    }
    BIO_set_mem_eof_return(rb, -1);
    BIO_set_data(wb, out);
    SSL_set_bio(ssl, rb, wb);
    SSL_set_options(ssl, SSL_OP_NO_QUERY_MTU);
    DTLS_set_link_mtu(ssl, DTLS_MTU);
    SSL_set_app_data(ssl, out->to);
    BIO_write(rb, pkt, (int)len);
    return ssl;
}

static void established(worker_t *w, dtls_sess_t *s)
{
    s->established = 1;
    stats_inc(&w->stats.dtls_handshakes);
}

/* RFC 6347 §4.2.1: no state until the client proves it receives at its address. */
static void hello(worker_t *w, udp_listener_t *l, const struct sockaddr *from, const uint8_t *pkt,
                  size_t len)
{
    struct dtls_table *t = w->dtls;
    /* The caps are checked before any SSL object exists (not even for the stateless cookie
     * exchange): a source at its cap costs a hash lookup per datagram, and other IPs still get in
     * while the worker is under max-dtls-sessions. */
    if (t->count >= (unsigned)w->cfg->max_dtls_sessions) {
        stats_inc(&w->stats.dtls_refused_total);
        return;
    }
    if (ip_sessions(t, from) >= (unsigned)w->cfg->max_dtls_per_ip) {
        stats_inc(&w->stats.dtls_refused_per_ip);
        return;
    }
    dtls_out_t tmp = {l, from};
    SSL *ssl = new_ssl(w, &tmp, pkt, len);
    if (!ssl)
        return;
    BIO_ADDR *peer = BIO_ADDR_new();
    int rc = peer ? DTLSv1_listen(ssl, peer) : -1;
    BIO_ADDR_free(peer);
    ERR_clear_error();
    if (rc != 1) {
        SSL_free(ssl); /* answered with a HelloVerifyRequest, or not a ClientHello */
        if (rc == 0)
            stats_inc(&w->stats.dtls_hello_verify);
        return;
    }
    dtls_sess_t *s = calloc(1, sizeof(*s));
    dtls_out_t *out = malloc(sizeof(*out));
    if (!s || !out || ip_add(t, from) != 0) {
        free(s);
        free(out);
        SSL_free(ssl);
        return;
    }
    s->ssl = ssl;
    s->w = w;
    s->l = l;
    memcpy(&s->remote, from, sa_len(from));
    out->l = l;
    out->to = &s->remote.sa;
    BIO_set_data(SSL_get_wbio(ssl), out);
    SSL_set_app_data(ssl, &s->remote.sa);
    s->started_ms = s->last_ms = w->dispatch.now_ms;
    size_t b = bucket(t, from, l);
    s->hnext = t->buckets[b];
    t->buckets[b] = s;
    list_insert_head(&t->all, &s->link);
    t->count++;
    stats_gauge_add(&w->stats.dtls_sessions, 1);
    /* The memory BIO cannot peek: the verified ClientHello was consumed by DTLSv1_listen, so feed
     * it again for the handshake proper. */
    BIO_write(SSL_get_rbio(ssl), pkt, (int)len);
    if (SSL_do_handshake(ssl) == 1)
        established(w, s);
    ERR_clear_error();
}

static void read_records(worker_t *w, dtls_sess_t *s)
{
    struct dtls_table *t = w->dtls;
    for (;;) {
        int n = SSL_read(s->ssl, t->plain, sizeof(t->plain));
        if (n <= 0) {
            int e = SSL_get_error(s->ssl, n);
            ERR_clear_error();
            if (e == SSL_ERROR_ZERO_RETURN || e == SSL_ERROR_SSL || e == SSL_ERROR_SYSCALL)
                sess_free(w, s, e == SSL_ERROR_ZERO_RETURN ? "close_notify" : "TLS error");
            return;
        }
        turn_conn_t c;
        describe(s, &c);
        (void)dispatch_message(&w->dispatch, &c, t->plain, (size_t)n);
        if (s->closing)
            return;
    }
}

void dtls_input(worker_t *w, udp_listener_t *l, const struct sockaddr *from, const uint8_t *buf,
                size_t len)
{
    ASSERT_ON_WORKER(w);
    if (!w->dtls)
        return;
    dtls_sess_t *s = find(w->dtls, from, l);
    if (!s) {
        hello(w, l, from, buf, len);
        return;
    }
    s->last_ms = w->dispatch.now_ms;
    BIO_write(SSL_get_rbio(s->ssl), buf, (int)len);
    if (!s->established) {
        int rc = SSL_do_handshake(s->ssl);
        if (rc == 1) {
            established(w, s);
        } else {
            int e = SSL_get_error(s->ssl, rc);
            ERR_clear_error();
            if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE)
                sess_free(w, s, "handshake failed");
            return;
        }
    }
    read_records(w, s);
}

void dtls_sweep(worker_t *w, uint64_t now_ms)
{
    if (!w->dtls)
        return;
    uint64_t stall = (uint64_t)w->cfg->tcp_frame_timeout * 1000;
    uint64_t idle = (uint64_t)w->cfg->tcp_idle_timeout * 1000;
    LIST_FOREACH_SAFE(n, tmp, &w->dtls->all)
    {
        dtls_sess_t *s = container_of(n, dtls_sess_t, link);
        if (!s->established) {
            if (now_ms - s->started_ms >= stall) {
                sess_free(w, s, "handshake timeout");
                continue;
            }
            (void)DTLSv1_handle_timeout(s->ssl); /* retransmit our flight if it is due */
            ERR_clear_error();
            continue;
        }
        turn_conn_t c;
        describe(s, &c);
        if (now_ms - s->last_ms >= idle && !dispatch_has_allocation(&w->dispatch, &c))
            sess_free(w, s, "idle");
    }
}
