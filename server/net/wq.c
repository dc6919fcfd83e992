/* wq.c - the bounded write queue for streams (see wq.h): try the socket first, queue the rest in
 * one uv_write per call, and report the high and low water marks once per crossing.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "wq.h"

typedef struct {
    uv_write_t req;
    wq_t *q;
    size_t len;
    uint8_t data[];
} wq_req_t;

void wq_init(wq_t *q, uv_stream_t *stream, wq_water_cb on_water, wq_error_cb on_error, void *data)
{
    memset(q, 0, sizeof(*q));
    q->stream = stream;
    q->on_water = on_water;
    q->on_error = on_error;
    q->data = data;
}

static void on_write_done(uv_write_t *req, int status)
{
    wq_req_t *wr = (wq_req_t *)req;
    wq_t *q = wr->q;
    q->pending -= wr->len;
    free(wr);
    /* UV_ECANCELED: the owner closed the stream; it is not to be called again. */
    if (status == UV_ECANCELED || uv_is_closing((uv_handle_t *)q->stream))
        return;
    if (status < 0) {
        q->on_error(q, status);
        return;
    }
    if (q->high && q->pending <= WQ_LOW) {
        q->high = 0;
        if (q->on_water)
            q->on_water(q, 0);
    }
}

int wq_write(wq_t *q, const uint8_t *data, size_t len)
{
    if (uv_is_closing((uv_handle_t *)q->stream))
        return -EPIPE;
    size_t off = 0;
    /* Straight to the socket only when nothing is queued: the bytes must leave in order. */
    if (q->pending == 0) {
        uv_buf_t b = uv_buf_init((char *)(uintptr_t)data, (unsigned)len); /* only read */
        int n = uv_try_write(q->stream, &b, 1);
        if (n > 0)
            off = (size_t)n;
        else if (n != UV_EAGAIN)
            return n;
    }
    if (off == len)
        return 0;
    size_t rest = len - off;
    if (q->pending + rest > WQ_CAP)
        return -ENOBUFS;
    wq_req_t *wr = malloc(sizeof(*wr) + rest);
    if (!wr)
        return -ENOMEM;
    wr->q = q;
    wr->len = rest;
    memcpy(wr->data, data + off, rest);
    uv_buf_t b = uv_buf_init((char *)wr->data, (unsigned)rest);
    int rc = uv_write(&wr->req, q->stream, &b, 1, on_write_done);
    if (rc != 0) {
        free(wr);
        return rc;
    }
    q->pending += rest;
    if (!q->high && q->pending > WQ_HIGH) {
        q->high = 1;
        if (q->on_water)
            q->on_water(q, 1);
    }
    return 0;
}
