/* wq.h - the one bounded write queue for a libuv stream: client TCP and TLS connections (TLS
 * ciphertext) and both sides of RFC 6062 pipes.
 *
 * A write goes to the socket at once as far as the kernel takes it (uv_try_write); the rest is
 * copied and queued behind it (uv_write). The queue tells its owner when it passes WQ_HIGH and,
 * after that, when it is back down to WQ_LOW, so a pipe can stop reading the side that feeds it and
 * start again (RFC 6062 pipes are bounded by backpressure, not by dropping bytes). A write that
 * would take the queue past WQ_CAP is refused: the reader is not reading, and the owner closes the
 * stream (a control connection has nothing it could pause, so this is where a client that does not
 * read its answers or its relayed data ends).
 *
 * Everything is on the stream's loop thread. The owner embeds the wq_t beside its stream handle.
 */
#ifndef UTURN_WQ_H
#define UTURN_WQ_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

/* The water marks, in bytes queued (written by us, not yet taken by the kernel).
 *
 * WQ_CAP: what one stream may hold in memory for a reader that does not read; 256 KiB per
 * connection, the limit docs/SECURITY.md states for a control client. It bounds memory, not
 * throughput: the kernel's socket buffer (megabytes with autotuning) sits in front of it.
 *
 * WQ_HIGH: pause the source above this. Once paused, a source adds at most what one read already
 * holds: 64 KiB from a socket (a worker's read buffer), plus under TLS the plaintext of a record
 * begun in an earlier read (16 KiB) and a few hundred bytes of record overhead. WQ_CAP - WQ_HIGH
 * leaves 128 KiB for that, so a paused pipe never reaches the cap.
 *
 * WQ_LOW: resume the source at or below this. Far enough under WQ_HIGH that a pipe does not flip
 * between paused and reading on every write that completes, and high enough that 64 KiB are still
 * queued for the socket while the source's next read comes in, so the sink does not run dry. */
#define WQ_CAP (256 * 1024)
#define WQ_HIGH (128 * 1024)
#define WQ_LOW (64 * 1024)

typedef struct wq wq_t;

/* The queue passed WQ_HIGH (high = 1), or fell back to WQ_LOW after that (high = 0). The two
 * alternate, starting with 1. Called from wq_write (high) and from a write's completion (low). */
typedef void (*wq_water_cb)(wq_t *q, int high);
/* A queued write failed with `status` (a libuv error, never UV_ECANCELED): close the stream. */
typedef void (*wq_error_cb)(wq_t *q, int status);

struct wq {
    uv_stream_t *stream;
    size_t pending; /* bytes in uv_write requests not yet completed */
    int high;       /* passed WQ_HIGH and not yet back to WQ_LOW */
    wq_water_cb on_water;
    wq_error_cb on_error;
    void *data; /* the owner's */
};

/* Start an empty queue on `stream` (opened or not yet). `on_water` may be NULL (nothing to pause).
 * No callback is called once the stream is closing. */
void wq_init(wq_t *q, uv_stream_t *stream, wq_water_cb on_water, wq_error_cb on_error, void *data);

/* Write `len` bytes of `data` (borrowed: what is not written at once is copied). Returns 0 (written
 * or queued), -EPIPE when the stream is closing (nothing written), -ENOBUFS when the bytes left to
 * queue would take the queue past WQ_CAP, -ENOMEM, or the libuv error of the write. After an error
 * nothing of `data` is queued, but some of it may have gone out: the stream is out of step and the
 * caller closes it.
 *
 * Closing: the owner uv_close()s the stream. libuv then calls every queued write back with
 * UV_ECANCELED before the close callback, and each is freed there; so the wq_t must live until the
 * stream's close callback, and nothing else needs freeing. */
int wq_write(wq_t *q, const uint8_t *data, size_t len);

/* Bytes queued and not yet taken by the kernel. */
static inline size_t wq_pending(const wq_t *q) { return q->pending; }

#endif
