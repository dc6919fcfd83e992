/* test_wq.c - unit tests of the bounded write queue (server/net/wq.c) on a real libuv loop: a
 * socketpair whose reading end nobody reads fills the queue; the high-water callback fires once
 * when it passes WQ_HIGH; a write that would pass WQ_CAP is refused with -ENOBUFS and queues
 * nothing; reading drains it, the low-water callback fires once at or below WQ_LOW and every byte
 * arrives once and in order; a failed write is reported once and never as UV_ECANCELED; closing the
 * stream with writes queued refuses further writes and frees the queued ones (ASan's leak check at
 * exit). The integration tests
 * test_tcp_relay.py (a peer that stops reading) and test_tls.py drive the same queue in uturnd.
 */
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <uv.h>

#include "unit.h"
#include "wq.h"

#define CHUNK 16384 /* not a multiple of the pattern's period: a lost or repeated chunk shows */
#define MAX_TURNS 100000

typedef struct {
    uv_loop_t loop;
    uv_pipe_t a, b; /* a: the writer's end, behind the queue; b: the reader's end */
    wq_t q;
    int highs, lows, errors, last_error;
    size_t pending_at_high, pending_at_low;
    size_t written; /* bytes wq_write accepted */
    size_t got;     /* bytes read at b */
    int mismatch;   /* a byte read was not the one written there */
    int closes;
} fx_t;

static uint8_t pattern(size_t i) { return (uint8_t)(i % 251); }

static void on_water(wq_t *q, int high)
{
    fx_t *f = q->data;
    if (high) {
        f->highs++;
        f->pending_at_high = wq_pending(q);
    } else {
        f->lows++;
        f->pending_at_low = wq_pending(q);
    }
}

/* As an owner does: close the stream on a write error. */
static void on_error(wq_t *q, int status)
{
    fx_t *f = q->data;
    f->errors++;
    f->last_error = status;
    if (!uv_is_closing((uv_handle_t *)&f->a))
        uv_close((uv_handle_t *)&f->a, NULL);
}

static void fx_init(fx_t *f, wq_water_cb water)
{
    memset(f, 0, sizeof(*f));
    int sv[2];
    CHECK_INT(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    int small = 16384; /* the kernel takes little, so the queue fills after a few writes */
    (void)setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &small, sizeof(small));
    (void)setsockopt(sv[1], SOL_SOCKET, SO_RCVBUF, &small, sizeof(small));
    CHECK_INT(uv_loop_init(&f->loop), 0);
    CHECK_INT(uv_pipe_init(&f->loop, &f->a, 0), 0);
    CHECK_INT(uv_pipe_init(&f->loop, &f->b, 0), 0);
    CHECK_INT(uv_pipe_open(&f->a, sv[0]), 0);
    CHECK_INT(uv_pipe_open(&f->b, sv[1]), 0);
    f->a.data = f->b.data = f;
    wq_init(&f->q, (uv_stream_t *)&f->a, water, on_error, f);
}

static void on_closed(uv_handle_t *h)
{
    fx_t *f = h->data;
    f->closes++;
}

/* Close both ends and everything still queued; the loop must end with no handle left. */
static void fx_close(fx_t *f)
{
    if (!uv_is_closing((uv_handle_t *)&f->a))
        uv_close((uv_handle_t *)&f->a, on_closed);
    else
        f->closes++; /* closed by on_error */
    if (!uv_is_closing((uv_handle_t *)&f->b))
        uv_close((uv_handle_t *)&f->b, on_closed);
    else
        f->closes++;
    CHECK_INT(uv_run(&f->loop, UV_RUN_DEFAULT), 0);
    CHECK_INT(f->closes, 2);
    CHECK_INT(uv_loop_close(&f->loop), 0);
}

/* Write CHUNK-byte pieces of the pattern until the queue refuses one; returns that refusal. */
static int fill(fx_t *f)
{
    uint8_t buf[CHUNK];
    for (int i = 0; i < MAX_TURNS; i++) {
        for (size_t k = 0; k < CHUNK; k++)
            buf[k] = pattern(f->written + k);
        size_t before = wq_pending(&f->q);
        int rc = wq_write(&f->q, buf, CHUNK);
        if (rc != 0) {
            CHECK_INT(wq_pending(&f->q), before); /* nothing of a refused write is queued */
            return rc;
        }
        f->written += CHUNK;
        CHECK(wq_pending(&f->q) <= WQ_CAP);
        /* The loop does not run here, so the queue only grows: the high callback has fired
         * exactly when it is past WQ_HIGH (fill starts drained, the callbacks balanced). */
        CHECK_INT(f->highs - f->lows, (wq_pending(&f->q) > WQ_HIGH ? 1 : 0));
    }
    return 0;
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    static char space[65536];
    (void)h;
    (void)suggested;
    *buf = uv_buf_init(space, sizeof(space));
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    fx_t *f = s->data;
    for (ssize_t i = 0; i < nread; i++)
        if ((uint8_t)buf->base[i] != pattern(f->got + (size_t)i))
            f->mismatch++;
    if (nread > 0)
        f->got += (size_t)nread;
}

/* Run the loop until `done` holds (bounded in turns; main's alarm bounds the time). */
static int run_until(fx_t *f, int (*done)(fx_t *))
{
    for (int i = 0; i < MAX_TURNS && !done(f); i++)
        uv_run(&f->loop, UV_RUN_ONCE);
    return done(f);
}

static int all_read(fx_t *f) { return f->got == f->written && wq_pending(&f->q) == 0; }

static int errored(fx_t *f) { return f->errors > 0; }

/* A reader that does not read: high water once, then the cap; reading drains it, low water once,
 * every byte once and in order. A second fill crosses high water again. */
static void test_fill_refuse_drain(void)
{
    fx_t f;
    fx_init(&f, on_water);
    CHECK_INT(fill(&f), -ENOBUFS);
    CHECK_INT(f.highs, 1);
    CHECK_INT(f.lows, 0);
    CHECK_INT(f.errors, 0);
    CHECK(f.pending_at_high > WQ_HIGH);
    CHECK(wq_pending(&f.q) + CHUNK > WQ_CAP); /* refused only because it would pass the cap */
    CHECK(wq_pending(&f.q) <= WQ_CAP);

    CHECK_INT(uv_read_start((uv_stream_t *)&f.b, on_alloc, on_read), 0);
    CHECK(run_until(&f, all_read));
    CHECK_INT(f.highs, 1);
    CHECK_INT(f.lows, 1);
    CHECK(f.pending_at_low <= WQ_LOW);
    CHECK_INT(f.got, f.written);
    CHECK_INT(f.mismatch, 0);
    CHECK_INT(f.errors, 0);

    /* The marks alternate: once drained, passing high water again is reported again. */
    CHECK_INT(uv_read_stop((uv_stream_t *)&f.b), 0);
    CHECK_INT(fill(&f), -ENOBUFS);
    CHECK_INT(f.highs, 2);
    CHECK_INT(f.lows, 1);
    CHECK_INT(uv_read_start((uv_stream_t *)&f.b, on_alloc, on_read), 0);
    CHECK(run_until(&f, all_read));
    CHECK_INT(f.lows, 2);
    CHECK_INT(f.mismatch, 0);
    printf("fill/refuse/drain: %zu bytes through; high water reported at %zu bytes queued, low "
           "water at %zu\n",
           f.written, f.pending_at_high, f.pending_at_low);
    fx_close(&f);
}

/* With nothing queued, one write bigger than the cap goes out as far as the kernel takes it; the
 * rest is refused and nothing queued. A queue without a water callback (a control connection). */
static void test_oversized_write(void)
{
    fx_t f;
    fx_init(&f, NULL);
    size_t n = WQ_CAP + 1024 * 1024; /* far more than the small socket buffer takes at once */
    uint8_t *big = malloc(n);
    CHECK(big != NULL);
    if (!big)
        return;
    memset(big, 'z', n);
    CHECK_INT(wq_write(&f.q, big, n), -ENOBUFS);
    CHECK_INT(wq_pending(&f.q), 0);
    /* A small write still fits afterwards (the caller would have closed; the queue itself is
     * sound). */
    CHECK_INT(wq_write(&f.q, big, 100), 0);
    CHECK_INT(f.highs + f.lows + f.errors, 0);
    free(big);
    fx_close(&f);
}

/* The reader goes away with writes queued: one error callback (the owner closes), and the writes
 * cancelled by the close are neither reported nor leaked. */
static void test_write_error(void)
{
    fx_t f;
    fx_init(&f, on_water);
    CHECK_INT(fill(&f), -ENOBUFS);
    CHECK(wq_pending(&f.q) > 0);
    uv_close((uv_handle_t *)&f.b, on_closed);
    CHECK(run_until(&f, errored));
    CHECK_INT(f.errors, 1);
    CHECK(f.last_error < 0 && f.last_error != UV_ECANCELED);
    printf("write error reported once: %s\n", uv_err_name(f.last_error));
    CHECK_INT(uv_run(&f.loop, UV_RUN_DEFAULT), 0);
    CHECK_INT(f.errors, 1);
    CHECK_INT(wq_pending(&f.q), 0);
    CHECK_INT(f.closes, 1); /* b; a was closed by on_error without a callback */
    CHECK_INT(uv_loop_close(&f.loop), 0);
}

/* Closing the stream with writes queued: a write is refused at once, every queued one is called
 * back (UV_ECANCELED, not reported) and freed; ASan reports a leak otherwise. */
static void test_close_with_queue(void)
{
    fx_t f;
    fx_init(&f, on_water);
    CHECK_INT(fill(&f), -ENOBUFS);
    CHECK(wq_pending(&f.q) > WQ_HIGH);
    int highs = f.highs;
    uv_close((uv_handle_t *)&f.a, NULL);
    CHECK_INT(wq_write(&f.q, (const uint8_t *)"x", 1), -EPIPE); /* closing: nothing more */
    fx_close(&f);
    CHECK_INT(wq_pending(&f.q), 0);
    CHECK_INT(f.errors, 0);
    CHECK_INT(f.lows, 0); /* no callback once the stream is closing */
    CHECK_INT(f.highs, highs);
}

int main(void)
{
    /* As uturnd does: a write to a closed socket is an error, not death. */
    signal(SIGPIPE, SIG_IGN);
    /* A loop that never finishes fails the test instead of hanging it. */
    alarm(60);
    test_fill_refuse_drain();
    test_oversized_write();
    test_write_error();
    test_close_with_queue();
    return unit_done("test_wq");
}
