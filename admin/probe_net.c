/* probe_net.c - the prober's connections: UDP, TCP and TLS to one TURN server.
 *
 * Streams carry STUN messages and ChannelData back to back (RFC 8656 §12.5: ChannelData padded to
 * 4 bytes over TCP/TLS), so a frame's length comes from its own header. Every wait is a poll() with
 * a deadline; a UDP request is retransmitted at most twice (RFC 8489 §6.2.1, shortened).
 */
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>

#include "probe.h"
#include "sockaddr_util.h"
#include "stun.h"

static long long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int probe_resolve(probe_target_t *t)
{
    struct addrinfo hints = {.ai_socktype = SOCK_DGRAM}, *res = NULL;
    char port[8];
    snprintf(port, sizeof(port), "%u", t->port);
    if (getaddrinfo(t->host, port, &hints, &res) != 0 || !res)
        return -1;
    memset(&t->addr, 0, sizeof(t->addr));
    memcpy(&t->addr, res->ai_addr, res->ai_addrlen);
    freeaddrinfo(res);
    return 0;
}

static int wait_fd(int fd, short ev, int timeout_ms)
{
    struct pollfd pfd = {.fd = fd, .events = ev};
    int r;
    do
        r = poll(&pfd, 1, timeout_ms);
    while (r < 0 && errno == EINTR);
    return r;
}

static int tcp_connect(const probe_target_t *t, int timeout_ms, char *err, size_t errcap)
{
    const struct sockaddr *sa = (const struct sockaddr *)&t->addr;
    int fd = socket(sa->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        snprintf(err, errcap, "socket: %s", strerror(errno));
        return -1;
    }
    if (connect(fd, sa, sa_len(sa)) < 0 && errno != EINPROGRESS) {
        snprintf(err, errcap, "connect: %s", strerror(errno));
        close(fd);
        return -1;
    }
    int soerr = 0;
    socklen_t sl = sizeof(soerr);
    if (wait_fd(fd, POLLOUT, timeout_ms) <= 0 ||
        getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) < 0 || soerr) {
        snprintf(err, errcap, "connect: %s", soerr ? strerror(soerr) : "timed out");
        close(fd);
        return -1;
    }
    return fd;
}

/* Drive a non-blocking SSL call to completion within the deadline. */
static int ssl_wait(SSL *ssl, int fd, int r, long long deadline)
{
    int e = SSL_get_error(ssl, r);
    long long left = deadline - now_ms();
    if (left <= 0)
        return -1;
    if (e == SSL_ERROR_WANT_READ)
        return wait_fd(fd, POLLIN, (int)left) > 0 ? 0 : -1;
    if (e == SSL_ERROR_WANT_WRITE)
        return wait_fd(fd, POLLOUT, (int)left) > 0 ? 0 : -1;
    return -1;
}

int probe_conn_open(probe_conn_t *c, const probe_target_t *t, int timeout_ms, char *err,
                    size_t errcap)
{
    memset(c, 0, sizeof(*c));
    c->fd = -1;
    const struct sockaddr *sa = (const struct sockaddr *)&t->addr;
    if (!t->stream) {
        c->fd = socket(sa->sa_family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (c->fd < 0 || connect(c->fd, sa, sa_len(sa)) < 0) {
            snprintf(err, errcap, "udp: %s", strerror(errno));
            probe_conn_close(c);
            return -1;
        }
        return 0;
    }
    c->stream = true;
    c->fd = tcp_connect(t, timeout_ms, err, errcap);
    if (c->fd < 0)
        return -1;
    if (!t->tls)
        return 0;
    c->ctx = SSL_CTX_new(TLS_client_method());
    if (!c->ctx || !SSL_CTX_set_min_proto_version(c->ctx, TLS1_2_VERSION) ||
        !(c->ssl = SSL_new(c->ctx))) {
        snprintf(err, errcap, "tls: cannot initialise OpenSSL");
        probe_conn_close(c);
        return -1;
    }
    SSL_set_fd(c->ssl, c->fd);
    SSL_set_tlsext_host_name(c->ssl, t->host);
    long long deadline = now_ms() + timeout_ms;
    int r;
    while ((r = SSL_connect(c->ssl)) != 1) {
        if (ssl_wait(c->ssl, c->fd, r, deadline) < 0) {
            unsigned long e = ERR_get_error();
            snprintf(err, errcap, "tls handshake failed: %s",
                     e ? ERR_reason_error_string(e) : "timeout or closed");
            ERR_clear_error();
            probe_conn_close(c);
            return -1;
        }
    }
    return 0;
}

void probe_conn_close(probe_conn_t *c)
{
    if (c->ssl) {
        SSL_shutdown(c->ssl);
        SSL_free(c->ssl);
    }
    if (c->ctx)
        SSL_CTX_free(c->ctx);
    if (c->fd >= 0)
        close(c->fd);
    c->ssl = NULL;
    c->ctx = NULL;
    c->fd = -1;
}

int probe_conn_send(probe_conn_t *c, const uint8_t *buf, size_t len)
{
    c->tx_bytes += len;
    if (!c->ssl) {
        size_t off = 0;
        long long deadline = now_ms() + 3000;
        while (off < len) {
            ssize_t n = send(c->fd, buf + off, len - off, MSG_NOSIGNAL);
            if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
                if (wait_fd(c->fd, POLLOUT, (int)(deadline - now_ms())) <= 0)
                    return -1;
                continue;
            }
            if (n < 0)
                return -1;
            if (!c->stream)
                return 0;
            off += (size_t)n;
        }
        return 0;
    }
    long long deadline = now_ms() + 3000;
    int r;
    while ((r = SSL_write(c->ssl, buf, (int)len)) <= 0)
        if (ssl_wait(c->ssl, c->fd, r, deadline) < 0)
            return -1;
    return 0;
}

/* Length of the first whole frame in rbuf, or 0 if more bytes are needed. */
static size_t frame_len(const uint8_t *b, size_t n)
{
    if (n < 4)
        return 0;
    size_t need;
    if (b[0] >= 0x40 && b[0] <= 0x7F) /* ChannelData: padded to 4 on streams */
        need = 4 + (((size_t)b[2] << 8 | b[3]) + 3) / 4 * 4;
    else
        need = STUN_HEADER_LEN + ((size_t)b[2] << 8 | b[3]);
    return n >= need ? need : 0;
}

int probe_conn_recv(probe_conn_t *c, uint8_t *buf, size_t cap, int timeout_ms)
{
    long long deadline = now_ms() + timeout_ms;
    if (!c->stream) {
        for (;;) {
            long long left = deadline - now_ms();
            if (left <= 0 || wait_fd(c->fd, POLLIN, (int)left) <= 0)
                return 0;
            ssize_t n = recv(c->fd, buf, cap, 0);
            if (n < 0 && (errno == EAGAIN || errno == EINTR))
                continue;
            if (n < 0) /* ICMP port unreachable from an earlier send: not answered */
                return errno == ECONNREFUSED ? 0 : -1;
            c->rx_bytes += (uint64_t)n;
            return (int)n;
        }
    }
    for (;;) {
        size_t fl = frame_len(c->rbuf, c->rlen);
        if (fl) {
            if (fl > cap)
                return -1;
            memcpy(buf, c->rbuf, fl);
            memmove(c->rbuf, c->rbuf + fl, c->rlen - fl);
            c->rlen -= fl;
            c->rx_bytes += fl;
            return (int)fl;
        }
        if (c->rlen == sizeof(c->rbuf))
            return -1; /* a frame larger than we ever ask for */
        long long left = deadline - now_ms();
        if (left <= 0)
            return 0;
        if (!c->ssl || SSL_pending(c->ssl) == 0)
            if (wait_fd(c->fd, POLLIN, (int)left) <= 0)
                return 0;
        ssize_t n;
        if (c->ssl) {
            int r = SSL_read(c->ssl, c->rbuf + c->rlen, (int)(sizeof(c->rbuf) - c->rlen));
            if (r <= 0) {
                int e = SSL_get_error(c->ssl, r);
                if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
                    continue;
                return -1;
            }
            n = r;
        } else {
            n = recv(c->fd, c->rbuf + c->rlen, sizeof(c->rbuf) - c->rlen, 0);
            if (n < 0 && (errno == EAGAIN || errno == EINTR))
                continue;
            if (n <= 0)
                return -1;
        }
        c->rlen += (size_t)n;
    }
}

int probe_conn_transact(probe_conn_t *c, const uint8_t *req, size_t len, uint8_t *resp, size_t cap,
                        int timeout_ms)
{
    /* UDP: send at 0, 1/6 and 1/2 of the budget (0.5 s and 1.5 s of the default 3 s). */
    int sends = c->stream ? 1 : 3;
    long long start = now_ms(), deadline = start + timeout_ms;
    for (int i = 0; i < sends; i++) {
        if (probe_conn_send(c, req, len) < 0)
            return -1;
        long long until =
            i + 1 < sends ? start + (long long)timeout_ms * (i == 0 ? 1 : 3) / 6 : deadline;
        for (int skipped = 0; skipped < 64; skipped++) {
            long long left = until - now_ms();
            if (left <= 0)
                break;
            int n = probe_conn_recv(c, resp, cap, (int)left);
            if (n < 0)
                return -1;
            if (n == 0)
                break;
            if (n >= STUN_HEADER_LEN && resp[0] < 0x40 && memcmp(resp + 8, req + 8, 12) == 0)
                return n;
        }
    }
    return 0;
}
