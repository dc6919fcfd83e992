/* stream.c - the stream deframer behind stream.h (RFC 8656 §12.5, RFC 8489 §6.2.2). */
#include "stream.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "frame.h"

void stream_rx_init(stream_rx_t *rx) { memset(rx, 0, sizeof(*rx)); }

void stream_rx_free(stream_rx_t *rx)
{
    free(rx->buf);
    memset(rx, 0, sizeof(*rx));
}

static int grow(stream_rx_t *rx, size_t want)
{
    if (want <= rx->cap)
        return 0;
    uint8_t *nb = realloc(rx->buf, want);
    if (!nb)
        return -ENOMEM;
    rx->buf = nb;
    rx->cap = want;
    return 0;
}

int stream_rx_space(stream_rx_t *rx, uint8_t **p, size_t *n)
{
    if (rx->len == rx->cap) {
        /* Only reached with no frame length known yet, or before the first read. */
        size_t want = rx->cap ? rx->cap * 2 : STREAM_RX_INITIAL;
        if (want > STREAM_RX_MAX)
            want = STREAM_RX_MAX;
        if (want <= rx->len || grow(rx, want) != 0)
            return -ENOMEM;
    }
    *p = rx->buf + rx->len;
    *n = rx->cap - rx->len;
    return 0;
}

int stream_rx_commit(stream_rx_t *rx, size_t n, stream_frame_cb cb, void *arg)
{
    rx->len += n;
    size_t off = 0;
    for (;;) {
        long flen = frame_stream_len(rx->buf + off, rx->len - off, STREAM_RX_MAX);
        if (flen < 0)
            return -1;
        if (flen == 0 || (size_t)flen > rx->len - off) {
            if (flen > 0 && (size_t)flen > rx->cap - off) {
                /* Make room for exactly the declared frame; move what we have to the front. */
                if (off) {
                    memmove(rx->buf, rx->buf + off, rx->len - off);
                    rx->len -= off;
                    off = 0;
                }
                if (grow(rx, (size_t)flen) != 0)
                    return -1;
            }
            break;
        }
        if (cb(arg, rx->buf + off, (size_t)flen) < 0)
            return -1;
        off += (size_t)flen;
    }
    if (off) {
        memmove(rx->buf, rx->buf + off, rx->len - off);
        rx->len -= off;
    }
    if (rx->len == 0 && rx->cap > STREAM_RX_INITIAL) {
        /* A big frame passed: give the memory back so idle connections stay small. */
        free(rx->buf);
        rx->buf = NULL;
        rx->cap = 0;
    }
    return 0;
}
