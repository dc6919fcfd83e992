/* turnc.c - a TURN/UDP client for load generation (see turnc.h for the RFC sections). */
#include "turnc.h"

#include <arpa/inet.h>
#include <errno.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bench.h"

#define MAGIC 0x2112A442u
#define M_ALLOCATE 0x0003
#define M_REFRESH 0x0004
#define M_SEND_IND 0x0016
#define M_DATA_IND 0x0017
#define M_PERMISSION 0x0008
#define M_CHANNEL_BIND 0x0009
#define A_USERNAME 0x0006
#define A_MI 0x0008
#define A_ERROR_CODE 0x0009
#define A_CHANNEL_NUMBER 0x000C
#define A_LIFETIME 0x000D
#define A_XOR_PEER 0x0012
#define A_DATA 0x0013
#define A_REALM 0x0014
#define A_NONCE 0x0015
#define A_XOR_RELAYED 0x0016
#define A_REQ_TRANSPORT 0x0019

#define RECV_BATCH 64
#define SCAN_NS 20000000ull /* retransmission scan every 20 ms */
#define SRC_PER_A (254 * 254)

/* ---- message building ---- */

typedef struct {
    uint8_t *b;
    size_t len;
} mb_t;

static void put16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
}

static void put32(uint8_t *p, uint32_t v)
{
    put16(p, (uint16_t)(v >> 16));
    put16(p + 2, (uint16_t)v);
}

static uint16_t get16(const uint8_t *p) { return (uint16_t)(p[0] << 8 | p[1]); }

static void mb_hdr(mb_t *m, uint16_t type, const uint8_t tid[12])
{
    put16(m->b, type);
    put16(m->b + 2, 0);
    put32(m->b + 4, MAGIC);
    memcpy(m->b + 8, tid, 12);
    m->len = 20;
}

static void mb_attr(mb_t *m, uint16_t t, const void *v, size_t l)
{
    put16(m->b + m->len, t);
    put16(m->b + m->len + 2, (uint16_t)l);
    memcpy(m->b + m->len + 4, v, l);
    size_t pad = (4 - l % 4) % 4;
    memset(m->b + m->len + 4 + l, 0, pad);
    m->len += 4 + l + pad;
    put16(m->b + 2, (uint16_t)(m->len - 20));
}

static void xaddr(uint8_t v[8], const struct sockaddr_in *a)
{
    v[0] = 0;
    v[1] = 1; /* IPv4 */
    put16(v + 2, (uint16_t)(ntohs(a->sin_port) ^ (MAGIC >> 16)));
    put32(v + 4, ntohl(a->sin_addr.s_addr) ^ MAGIC);
}

static void mb_u32(mb_t *m, uint16_t t, uint32_t v)
{
    uint8_t b[4];
    put32(b, v);
    mb_attr(m, t, b, 4);
}

/* RFC 8489 §14.5: the length field counts MESSAGE-INTEGRITY itself before the HMAC is taken. */
static void mb_integrity(mb_t *m, const uint8_t key[16])
{
    put16(m->b + 2, (uint16_t)(m->len - 20 + 24));
    unsigned int hl = 20;
    uint8_t mac[EVP_MAX_MD_SIZE];
    HMAC(EVP_sha1(), key, 16, m->b, m->len, mac, &hl);
    mb_attr(m, A_MI, mac, 20);
}

size_t turnc_send_ind_hdrlen(void) { return 20 + 12 + 4; }

size_t turnc_chan_data(uint8_t *out, size_t size)
{
    out[0] = 0x40;
    out[1] = 0x00;
    out[2] = (uint8_t)(size >> 8);
    out[3] = (uint8_t)size;
    memset(out + 4, 0xab, size);
    return size + 4;
}

void turnc_gen_opts(int argc, char **argv, int def_batch, int max_batch, turnc_gen_opts_t *o)
{
    bench_addr(bench_opt(argc, argv, "--to", "127.0.0.1:3478"), &o->to);
    bench_addr(bench_opt(argc, argv, "--peer", "127.0.0.1:9"), &o->peer);
    o->size = (size_t)bench_optf(argc, argv, "--size", 100);
    o->rate = bench_optf(argc, argv, "--rate", 0);
    o->seconds = bench_optf(argc, argv, "--seconds", 3);
    o->batch = (int)bench_optf(argc, argv, "--batch", def_batch);
    if (o->size < 1 || o->size > 1400 || o->batch < 1 || o->batch > max_batch)
        bench_die("bad --size or --batch");
    o->cnt = bench_counters(bench_opt(argc, argv, "--stats", NULL));
    bench_deadline(o->seconds + 15);
}

size_t turnc_send_ind(uint8_t *out, const struct sockaddr_in *peer, size_t len)
{
    static uint32_t seq;
    uint8_t tid[12] = {0xbe, 0x4c};
    seq++;
    memcpy(tid + 8, &seq, 4);
    mb_t m = {out, 0};
    mb_hdr(&m, M_SEND_IND, tid);
    uint8_t v[8];
    xaddr(v, peer);
    mb_attr(&m, A_XOR_PEER, v, 8);
    put16(out + m.len, A_DATA);
    put16(out + m.len + 2, (uint16_t)len);
    size_t pad = (4 - len % 4) % 4;
    memset(out + m.len + 4 + len, 0, pad);
    size_t total = m.len + 4 + len + pad;
    put16(out + 2, (uint16_t)(total - 20));
    return total;
}

/* ---- sessions ---- */

struct in_addr turnc_src(const turnc_pool_t *p, int idx)
{
    struct in_addr a;
    if (!p->cfg.shared) {
        a.s_addr = htonl(0x7f000001);
        return a;
    }
    /* 127.a.b.c with a >= 1 and b, c in 1..254: never 127.0.x.x (servers and relays live there) */
    uint32_t i = (uint32_t)idx;
    uint32_t A = 1 + i / SRC_PER_A, B = 1 + (i / 254) % 254, C = 1 + i % 254;
    a.s_addr = htonl(0x7f000000u | A << 16 | B << 8 | C);
    return a;
}

int turnc_idx_of(const turnc_pool_t *p, struct in_addr dst)
{
    uint32_t h = ntohl(dst.s_addr);
    uint32_t A = (h >> 16) & 0xff, B = (h >> 8) & 0xff, C = h & 0xff;
    if (!p->cfg.shared)
        return p->n > 0 ? 0 : -1;
    if ((h >> 24) != 127 || A < 1 || B < 1 || B > 254 || C < 1 || C > 254)
        return -1;
    long idx = (long)(A - 1) * SRC_PER_A + (long)(B - 1) * 254 + (C - 1);
    return idx < p->n ? (int)idx : -1;
}

turnc_pool_t *turnc_pool_new(const turnc_cfg_t *cfg, int n)
{
    if (n < 1 || n > 200 * SRC_PER_A)
        bench_die("bad session count %d", n);
    turnc_pool_t *p = calloc(1, sizeof(*p));
    if (!p || !(p->s = calloc((size_t)n, sizeof(turnc_sess_t))))
        bench_die("out of memory");
    p->cfg = *cfg;
    if (p->cfg.rto_ms <= 0)
        p->cfg.rto_ms = 500;
    if (p->cfg.max_tries <= 0)
        p->cfg.max_tries = 4;
    p->n = n;
    struct in_addr lo = {htonl(0x7f000001)};
    /* Our ports stay below the relay range (49152+) so we never take a port a server wants. */
    p->fd = bench_udp_port_range(lo, 40000, 48999, 1, cfg->shared);
    struct sockaddr_in me;
    socklen_t ml = sizeof(me);
    getsockname(p->fd, (struct sockaddr *)&me, &ml);
    p->port = ntohs(me.sin_port);
    if (cfg->shared) {
        int one = 1;
        if (setsockopt(p->fd, IPPROTO_IP, IP_PKTINFO, &one, sizeof(one)) != 0)
            bench_die("IP_PKTINFO: %s", strerror(errno));
    }
    for (int i = 0; i < TURNC_OUTQ; i++) {
        p->outv[i].iov_base = p->outbuf[i];
        p->outm[i].msg_hdr.msg_iov = &p->outv[i];
        p->outm[i].msg_hdr.msg_iovlen = 1;
        p->outm[i].msg_hdr.msg_name = &p->outto[i];
        p->outm[i].msg_hdr.msg_namelen = sizeof(p->outto[i]);
    }
    return p;
}

void turnc_pool_free(turnc_pool_t *p)
{
    if (!p)
        return;
    close(p->fd);
    free(p->s);
    free(p);
}

uint8_t *turnc_queue(turnc_pool_t *p, int idx, const struct sockaddr_in *to)
{
    if (p->nout == TURNC_OUTQ)
        turnc_flush(p);
    int k = p->nout;
    p->outto[k] = *to;
    struct msghdr *h = &p->outm[k].msg_hdr;
    if (p->cfg.shared) {
        memset(p->outctl[k], 0, sizeof(p->outctl[k]));
        h->msg_control = p->outctl[k];
        h->msg_controllen = CMSG_SPACE(sizeof(struct in_pktinfo));
        struct cmsghdr *c = CMSG_FIRSTHDR(h);
        c->cmsg_level = IPPROTO_IP;
        c->cmsg_type = IP_PKTINFO;
        c->cmsg_len = CMSG_LEN(sizeof(struct in_pktinfo));
        struct in_pktinfo pi = {.ipi_spec_dst = turnc_src(p, idx)};
        memcpy(CMSG_DATA(c), &pi, sizeof(pi));
    } else {
        h->msg_control = NULL;
        h->msg_controllen = 0;
    }
    return p->outbuf[k];
}

void turnc_queue_commit(turnc_pool_t *p, size_t len)
{
    p->outv[p->nout].iov_len = len;
    p->nout++;
}

void turnc_flush(turnc_pool_t *p)
{
    int off = 0, spins = 0;
    while (off < p->nout) {
        int s = sendmmsg(p->fd, p->outm + off, (unsigned)(p->nout - off), 0);
        if (s > 0) {
            off += s;
            continue;
        }
        if (s < 0 && errno == EINTR)
            continue;
        if (s < 0 && errno == EAGAIN && ++spins < 1000) {
            struct pollfd pf = {p->fd, POLLOUT, 0};
            (void)poll(&pf, 1, 1);
            continue;
        }
        p->send_errors++;
        off++; /* skip the one that failed */
    }
    p->nout = 0;
}

static void new_tid(turnc_pool_t *p, int idx)
{
    turnc_sess_t *s = &p->s[idx];
    s->gen++;
    uint32_t i = (uint32_t)idx;
    memcpy(s->tid, &i, 4);
    memcpy(s->tid + 4, &s->gen, 4);
    uint32_t salt = (uint32_t)(bench_now_ns() * 2654435761u) ^ (uint32_t)getpid();
    memcpy(s->tid + 8, &salt, 4);
}

static void set_key(turnc_pool_t *p, const uint8_t *realm, size_t rlen)
{
    if (p->have_key && rlen == p->realm_len && memcmp(realm, p->realm, rlen) == 0)
        return;
    if (rlen >= sizeof(p->realm))
        rlen = sizeof(p->realm) - 1;
    memcpy(p->realm, realm, rlen);
    p->realm_len = rlen;
    char buf[512];
    int l = snprintf(buf, sizeof(buf), "%s:%.*s:%s", p->cfg.user, (int)rlen, p->realm, p->cfg.pass);
    unsigned int ol = 16;
    EVP_Digest(buf, (size_t)l, p->key, &ol, EVP_md5(), NULL);
    p->have_key = 1;
}

/* (Re)send the request of the session's current state, with its current transaction id. */
static void send_state(turnc_pool_t *p, int idx)
{
    turnc_sess_t *s = &p->s[idx];
    mb_t m = {turnc_queue(p, idx, &p->cfg.server), 0};
    uint16_t method;
    switch (s->state) {
    case TURNC_ALLOC0:
    case TURNC_ALLOC:
        method = M_ALLOCATE;
        break;
    case TURNC_PERM:
        method = M_PERMISSION;
        break;
    case TURNC_CHAN:
        method = M_CHANNEL_BIND;
        break;
    case TURNC_REFRESH0:
        method = M_REFRESH;
        break;
    default:
        return;
    }
    mb_hdr(&m, method, s->tid);
    uint8_t v[8];
    switch (s->state) {
    case TURNC_ALLOC0:
    case TURNC_ALLOC:
        mb_u32(&m, A_REQ_TRANSPORT, 17u << 24); /* UDP */
        if (p->cfg.lifetime)
            mb_u32(&m, A_LIFETIME, p->cfg.lifetime);
        break;
    case TURNC_PERM:
        xaddr(v, &p->cfg.peer);
        mb_attr(&m, A_XOR_PEER, v, 8);
        break;
    case TURNC_CHAN:
        mb_u32(&m, A_CHANNEL_NUMBER, (uint32_t)p->cfg.channel << 16);
        xaddr(v, &p->cfg.peer);
        mb_attr(&m, A_XOR_PEER, v, 8);
        break;
    case TURNC_REFRESH0:
        mb_u32(&m, A_LIFETIME, 0);
        break;
    }
    if (s->state != TURNC_ALLOC0) {
        mb_attr(&m, A_USERNAME, p->cfg.user, strlen(p->cfg.user));
        mb_attr(&m, A_REALM, p->realm, p->realm_len);
        mb_attr(&m, A_NONCE, s->nonce, s->nonce_len);
        mb_integrity(&m, p->key);
    }
    turnc_queue_commit(p, m.len);
    p->requests++;
    s->deadline_ns = bench_now_ns() + (uint64_t)p->cfg.rto_ms * 1000000ull * (1u << s->tries);
}

static void go(turnc_pool_t *p, int idx, int state)
{
    turnc_sess_t *s = &p->s[idx];
    s->state = (uint8_t)state;
    s->tries = 0;
    new_tid(p, idx);
    send_state(p, idx);
}

static void finish(turnc_pool_t *p, int idx, int state, int op, int code)
{
    p->s[idx].state = (uint8_t)state;
    p->inflight--;
    if (p->on_done)
        p->on_done(p, idx, op, code);
}

void turnc_open(turnc_pool_t *p, int idx)
{
    turnc_sess_t *s = &p->s[idx];
    s->t0_ns = bench_now_ns();
    s->stale = 0;
    p->inflight++;
    go(p, idx, TURNC_ALLOC0);
}

void turnc_close(turnc_pool_t *p, int idx)
{
    turnc_sess_t *s = &p->s[idx];
    s->t0_ns = bench_now_ns();
    s->stale = 0;
    p->inflight++;
    go(p, idx, TURNC_REFRESH0);
}

static int after_alloc_state(const turnc_pool_t *p, int from)
{
    if (from == TURNC_ALLOC && p->cfg.want_perm)
        return TURNC_PERM;
    if ((from == TURNC_ALLOC || from == TURNC_PERM) && p->cfg.want_chan)
        return TURNC_CHAN;
    return TURNC_READY;
}

static void on_response(turnc_pool_t *p, int idx, const uint8_t *b, size_t len)
{
    turnc_sess_t *s = &p->s[idx];
    uint16_t type = get16(b);
    int is_err = (type & 0x0110) == 0x0110;
    int code = 0;
    const uint8_t *nonce = NULL, *realm = NULL;
    size_t nonce_len = 0, realm_len = 0;
    for (size_t off = 20; off + 4 <= len;) {
        uint16_t t = get16(b + off), l = get16(b + off + 2);
        const uint8_t *v = b + off + 4;
        if (off + 4 + l > len)
            break;
        if (t == A_ERROR_CODE && l >= 4)
            code = (v[2] & 7) * 100 + v[3];
        else if (t == A_NONCE)
            nonce = v, nonce_len = l;
        else if (t == A_REALM)
            realm = v, realm_len = l;
        else if (t == A_XOR_RELAYED && l >= 8 && v[1] == 1) {
            s->relayed.sin_family = AF_INET;
            s->relayed.sin_port = htons((uint16_t)(get16(v + 2) ^ (MAGIC >> 16)));
            uint32_t ip = ((uint32_t)get16(v + 4) << 16 | get16(v + 6)) ^ MAGIC;
            s->relayed.sin_addr.s_addr = htonl(ip);
        }
        off += 4 + l + ((4 - l % 4) % 4);
    }
    p->responses++;
    if (nonce && nonce_len < sizeof(s->nonce)) {
        memcpy(s->nonce, nonce, nonce_len);
        s->nonce_len = (uint8_t)nonce_len;
    }
    int op = s->state == TURNC_REFRESH0 ? TURNC_OP_CLOSE : TURNC_OP_OPEN;
    if (is_err) {
        p->errors++;
        p->last_err = code;
        if (code == 401 && s->state == TURNC_ALLOC0 && nonce && realm) {
            p->err_401++;
            set_key(p, realm, realm_len);
            go(p, idx, TURNC_ALLOC);
            return;
        }
        if (code == 438 && nonce && s->stale++ < 3) {
            p->err_438++;
            if (realm)
                set_key(p, realm, realm_len);
            go(p, idx, s->state);
            return;
        }
        if (code == 508)
            p->err_508++;
        else
            p->err_other++;
        /* 437 to a delete: the allocation is already gone, which is what we wanted. */
        if (op == TURNC_OP_CLOSE && code == 437)
            finish(p, idx, TURNC_DONE, op, 0);
        else
            finish(p, idx, TURNC_FAILED, op, code ? code : 1);
        return;
    }
    switch (s->state) {
    case TURNC_ALLOC0: /* a server without authentication */
    case TURNC_ALLOC:
    case TURNC_PERM:
    case TURNC_CHAN: {
        int next = after_alloc_state(p, s->state == TURNC_ALLOC0 ? TURNC_ALLOC : s->state);
        if (next == TURNC_READY)
            finish(p, idx, TURNC_READY, op, 0);
        else
            go(p, idx, next);
        break;
    }
    case TURNC_REFRESH0:
        finish(p, idx, TURNC_DONE, op, 0);
        break;
    }
}

static void on_datagram(turnc_pool_t *p, const uint8_t *b, size_t len, struct in_addr dst)
{
    if (len >= 4 && (b[0] & 0xC0) == 0x40) { /* ChannelData (RFC 7983: 64..79, and RFC 5766) */
        p->data_in++;
        if (p->on_data)
            p->on_data(p, turnc_idx_of(p, dst), b, len);
        return;
    }
    if (len < 20 || (b[0] & 0xC0) != 0 || get16(b + 4) != (MAGIC >> 16))
        return;
    uint16_t type = get16(b);
    if (type == M_DATA_IND) {
        p->data_in++;
        if (p->on_data)
            p->on_data(p, turnc_idx_of(p, dst), b, len);
        return;
    }
    if (!(type & 0x0100))
        return; /* a request or another indication: not for a client */
    uint32_t idx;
    memcpy(&idx, b + 8, 4);
    if (idx >= (uint32_t)p->n || memcmp(p->s[idx].tid, b + 8, 12) != 0)
        return; /* a late answer to a retransmitted or finished transaction */
    int st = p->s[idx].state;
    if (st == TURNC_IDLE || st == TURNC_READY || st == TURNC_FAILED || st == TURNC_DONE)
        return;
    on_response(p, (int)idx, b, len);
}

static void scan_timeouts(turnc_pool_t *p, uint64_t now)
{
    if (now < p->next_scan_ns || p->inflight == 0)
        return;
    p->next_scan_ns = now + SCAN_NS;
    for (int i = 0; i < p->n; i++) {
        turnc_sess_t *s = &p->s[i];
        int st = s->state;
        if (st == TURNC_IDLE || st == TURNC_READY || st == TURNC_FAILED || st == TURNC_DONE)
            continue;
        if (now < s->deadline_ns)
            continue;
        if (++s->tries >= p->cfg.max_tries) {
            p->timeouts++;
            finish(p, i, TURNC_FAILED, st == TURNC_REFRESH0 ? TURNC_OP_CLOSE : TURNC_OP_OPEN, -1);
            continue;
        }
        p->retransmits++;
        send_state(p, i);
    }
}

int turnc_poll(turnc_pool_t *p, uint64_t timeout_ns)
{
    static uint8_t buf[RECV_BATCH][TURNC_MSGMAX];
    static struct iovec iov[RECV_BATCH];
    static struct mmsghdr m[RECV_BATCH];
    static uint8_t ctl[RECV_BATCH][64];
    turnc_flush(p);
    struct pollfd pf = {p->fd, POLLIN, 0};
    struct timespec ts = {(time_t)(timeout_ns / 1000000000ull), (long)(timeout_ns % 1000000000ull)};
    int total = 0;
    if (ppoll(&pf, 1, &ts, NULL) > 0) {
        /* Bounded: at most 64 batches per call, so timers and sends get their turn. */
        for (int round = 0; round < 64; round++) {
            for (int i = 0; i < RECV_BATCH; i++) {
                iov[i] = (struct iovec){buf[i], TURNC_MSGMAX};
                m[i].msg_hdr =
                    (struct msghdr){.msg_iov = &iov[i],
                                    .msg_iovlen = 1,
                                    .msg_control = p->cfg.shared ? ctl[i] : NULL,
                                    .msg_controllen = p->cfg.shared ? sizeof(ctl[i]) : 0};
            }
            int n = recvmmsg(p->fd, m, RECV_BATCH, MSG_DONTWAIT, NULL);
            if (n <= 0)
                break;
            for (int i = 0; i < n; i++) {
                struct in_addr dst = {htonl(0x7f000001)};
                if (p->cfg.shared) {
                    for (struct cmsghdr *c = CMSG_FIRSTHDR(&m[i].msg_hdr); c;
                         c = CMSG_NXTHDR(&m[i].msg_hdr, c))
                        if (c->cmsg_level == IPPROTO_IP && c->cmsg_type == IP_PKTINFO) {
                            struct in_pktinfo pi;
                            memcpy(&pi, CMSG_DATA(c), sizeof(pi));
                            dst = pi.ipi_addr;
                        }
                }
                on_datagram(p, buf[i], m[i].msg_len, dst);
            }
            total += n;
            if (p->nout > TURNC_OUTQ / 2)
                turnc_flush(p);
            if (n < RECV_BATCH)
                break;
        }
    }
    scan_timeouts(p, bench_now_ns());
    turnc_flush(p);
    return total;
}

int turnc_run(turnc_pool_t *p, uint64_t deadline_ns)
{
    while (p->inflight > 0) {
        uint64_t now = bench_now_ns();
        if (now >= deadline_ns)
            return -1;
        (void)turnc_poll(p, 5000000ull);
    }
    return 0;
}

int turnc_bench_client(int argc, char **argv, const struct sockaddr_in *server,
                       const struct sockaddr_in *peer, int raw, int want_chan, turnc_pool_t **p)
{
    *p = NULL;
    if (raw) {
        struct in_addr lo = {htonl(0x7f000001)};
        return bench_udp_port_range(lo, 40000, 48999, 1, 0);
    }
    turnc_cfg_t cfg = {
        .server = *server,
        .peer = *peer,
        .user = bench_opt(argc, argv, "--user", "u"),
        .pass = bench_opt(argc, argv, "--pass", "p"),
        .want_perm = 1,
        .want_chan = want_chan,
        .channel = 0x4000,
    };
    turnc_pool_t *pool = turnc_pool_new(&cfg, 1);
    turnc_open(pool, 0);
    if (turnc_run(pool, bench_now_ns() + 5000000000ull) != 0 || pool->s[0].state != TURNC_READY)
        bench_die("TURN setup failed: state %d, last error %d, timeouts %llu", pool->s[0].state,
                  pool->last_err, (unsigned long long)pool->timeouts);
    *p = pool;
    return pool->fd;
}

void turnc_bench_client_end(turnc_pool_t *p, int fd)
{
    if (!p) {
        close(fd);
        return;
    }
    turnc_close(p, 0);
    int rc = turnc_run(p, bench_now_ns() + 3000000000ull);
    printf("deleted=%s state=%d last_error=%d timeouts=%llu retransmits=%llu\n",
           rc == 0 && p->s[0].state == TURNC_DONE ? "yes" : "no", p->s[0].state, p->last_err,
           (unsigned long long)p->timeouts, (unsigned long long)p->retransmits);
    turnc_pool_free(p);
}
