/* fuzz_admin.c - libFuzzer target for the admin HTTP API (admin/) through its real entry point:
 * raw request bytes go into libmicrohttpd and through on_access, routing, token authentication,
 * body handling, JSON parsing and the route handlers of a running server (tests/fuzz/admin_env.c:
 * one worker with two live TURN allocations, a real redis-server).
 *
 * Each input is one connection (a socketpair handed over with admin_add_connection): its bytes are
 * written, the write side is shut down, and the answer is read until the admin closes; an admin
 * that has not closed within DEADLINE_MS is a hang and aborts. Input format:
 *   byte 0   bits 0-1: 0 send as is; 1 and 3 add "Authorization: Bearer <full token>"; 2 add the
 *            read-only token; the header goes after the first line, so handlers past
 *            authentication are reached while the fuzzer still owns every other byte
 *            bit 2: the admin runs as if redis-userdb were not set
 *            bit 3: Redis drops the admin's connection first (the admin must reconnect or answer
 *            a clear error)
 *   rest     the raw HTTP request (several for pipelining); every "{id}" becomes the id of the
 *            newest live allocation, so allocation routes find something
 * Oracle, besides the sanitizers and the deadline: the first answer, when it is JSON, parses as a
 * JSON object, and a 2xx one is never {} (what admin_reply_json makes of a json_pack that failed).
 * FUZZ_ADMIN_SHOW=1 in the environment prints every answer (for writing seeds).
 */
#include <errno.h>
#include <linux/sockios.h>
#include <poll.h>
#include <sched.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <jansson.h>

#include "admin_env.h"

#define DEADLINE_MS 5000 /* above ADMIN_WORKER_WAIT_MS: a slow worker answer is not a hang */
#define STALL_MS 100
#define RESP_MAX (1024 * 1024)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

typedef struct {
    char *p;
    size_t len, cap;
} buf_t;

static void put(buf_t *b, const void *s, size_t n)
{
    if (b->len + n > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->len + n)
            cap *= 2;
        if (!(b->p = realloc(b->p, cap)))
            abort();
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
}

/* The request as sent: the auth header after the first line, "{id}" replaced. */
static void build(buf_t *out, const uint8_t *data, size_t size, const char *auth)
{
    const char *id = admin_env_alloc_id();
    bool header_done = auth == NULL;
    out->len = 0;
    for (size_t i = 0; i < size; i++) {
        if (size - i >= 4 && memcmp(data + i, "{id}", 4) == 0) {
            put(out, id, strlen(id));
            i += 3;
            continue;
        }
        put(out, data + i, 1);
        if (!header_done && data[i] == '\n') {
            put(out, "Authorization: Bearer ", 22);
            put(out, auth, strlen(auth));
            put(out, "\r\n", 2);
            header_done = true;
        }
    }
}

/* Bytes we sent that the admin has not read yet. */
static int unread(int fd)
{
    int n = 0;
    return ioctl(fd, SIOCOUTQ, &n) == 0 ? n : 0;
}

/* Write req, shut down our write side once the admin has read it all, read everything until the
 * admin closes. The shutdown waits because libmicrohttpd polls edge-triggered: an end of stream
 * that arrives together with the last bytes of an incomplete request goes unnoticed until its idle
 * timeout (10 s). And it sees an end of stream as an abort, so it must not come before the
 * request has been read and answered (the answer is written in the same pass as the last read).
 * When the admin stops reading for STALL_MS (libmicrohttpd 0.9.75 stalls after it decided to
 * answer 431 to some header lines past CONN_MEMORY) the shutdown comes anyway: its wakeup gets
 * the connection going again. */
static void exchange(const buf_t *req, buf_t *resp)
{
    int fd = admin_env_connect();
    size_t off = 0;
    enum { SENDING, FLUSHING, SHUT } st = req->len ? SENDING : FLUSHING;
    int64_t deadline = admin_env_now_ms() + DEADLINE_MS, progress = admin_env_now_ms();
    int last_unread = -1;
    resp->len = 0;
    for (int spins = 0;; spins++) {
        int64_t now = admin_env_now_ms();
        int u = st == FLUSHING ? unread(fd) : -1;
        if (u != last_unread) {
            last_unread = u;
            progress = now;
        }
        if ((st == FLUSHING && u == 0) || (st != SHUT && now - progress > STALL_MS)) {
            shutdown(fd, SHUT_WR);
            st = SHUT;
        }
        if (now >= deadline) {
            fprintf(stderr, "fuzz_admin: the admin did not close the connection within %d ms\n",
                    DEADLINE_MS);
            abort();
        }
        /* Read while writing: the admin may answer (413, 401) before it has read everything, and
         * it must never stall on a full socket buffer because of us. */
        struct pollfd p = {.fd = fd, .events = (short)(POLLIN | (st == SENDING ? POLLOUT : 0))};
        int wait = st == SHUT ? (int)(deadline - now) : spins < 200 ? 0 : 1;
        if (wait == 0)
            sched_yield();
        if (poll(&p, 1, wait) < 0 && errno != EINTR)
            abort();
        if (st == SENDING && (p.revents & (POLLOUT | POLLERR | POLLHUP))) {
            ssize_t n = send(fd, req->p + off, req->len - off, MSG_NOSIGNAL | MSG_DONTWAIT);
            if (n > 0) {
                off += (size_t)n;
                progress = now;
            }
            if (n < 0 && errno != EAGAIN && errno != EINTR)
                st = SHUT; /* the admin closed its reading side */
            else if (off == req->len)
                st = FLUSHING;
        }
        if (p.revents & (POLLIN | POLLERR | POLLHUP)) {
            char tmp[16384];
            ssize_t n = recv(fd, tmp, sizeof(tmp), MSG_DONTWAIT);
            if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR))
                break;
            if (n > 0 && resp->len + (size_t)n <= RESP_MAX)
                put(resp, tmp, (size_t)n);
            progress = now;
        }
    }
    close(fd);
    admin_env_wait_idle(deadline);
}

/* The first HEAD request has no body to check: its Content-Length describes a GET's. */
static bool starts_with_head(const uint8_t *p, size_t n)
{
    while (n && (*p == '\r' || *p == '\n')) {
        p++;
        n--;
    }
    return n >= 4 && strncasecmp((const char *)p, "HEAD", 4) == 0;
}

static const char *find(const char *p, size_t n, const char *needle)
{
    return memmem(p, n, needle, strlen(needle));
}

/* Whether the header block [h, h+n) says Content-Type: application/json; its Content-Length. */
static bool header_json(const char *h, size_t n, size_t *clen, bool *has_clen)
{
    bool json = false;
    *has_clen = false;
    for (const char *e; n && (e = find(h, n, "\r\n")); n -= (size_t)(e + 2 - h), h = e + 2) {
        size_t l = (size_t)(e - h);
        if (l > 13 && strncasecmp(h, "Content-Type:", 13) == 0)
            json = find(h, l, "application/json") != NULL;
        if (l > 15 && strncasecmp(h, "Content-Length:", 15) == 0) {
            *clen = strtoul(h + 15, NULL, 10);
            *has_clen = true;
        }
    }
    return json;
}

static void check_answer(const buf_t *r)
{
    const char *p = r->p;
    size_t n = r->len;
    /* Skip interim answers (100 Continue). */
    while (n > 12 && memcmp(p, "HTTP/1.1 1", 10) == 0) {
        const char *e = find(p, n, "\r\n\r\n");
        if (!e)
            return;
        n -= (size_t)(e + 4 - p);
        p = e + 4;
    }
    if (n < 12 || memcmp(p, "HTTP/1.", 7) != 0)
        return;
    int status = atoi(p + 9);
    const char *e = find(p, n, "\r\n\r\n");
    size_t clen = 0;
    bool has_clen;
    if (!e || !header_json(p, (size_t)(e + 2 - p), &clen, &has_clen) || !has_clen)
        return;
    const char *body = e + 4;
    if ((size_t)(p + n - body) < clen)
        return; /* cut short (RESP_MAX) */
    json_error_t je;
    json_t *j = json_loadb(body, clen, 0, &je);
    if (!j || !json_is_object(j) || (status / 100 == 2 && json_object_size(j) == 0)) {
        fprintf(stderr, "fuzz_admin: bad JSON answer (status %d): %.*s\n", status, (int)clen, body);
        abort();
    }
    json_decref(j);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static buf_t req, resp;
    if (size < 1)
        return 0;
    admin_env_setup();
    const char *auth = NULL;
    switch (data[0] & 3) {
    case 1:
    case 3:
        auth = ADMIN_ENV_TOKEN;
        break;
    case 2:
        auth = ADMIN_ENV_RO_TOKEN;
        break;
    }
    if (data[0] & 4)
        admin_env_redis(false);
    else if (data[0] & 8)
        admin_env_redis_drop();
    build(&req, data + 1, size - 1, auth);
    exchange(&req, &resp);
    static int show = -1;
    if (show < 0)
        show = getenv("FUZZ_ADMIN_SHOW") != NULL;
    if (show)
        fprintf(stderr, "---- %zu bytes in, %zu out:\n%.*s\n", req.len, resp.len, (int)resp.len,
                resp.p);
    if (!starts_with_head(data + 1, size - 1))
        check_answer(&resp);
    admin_env_reset();
    return 0;
}
