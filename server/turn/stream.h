/* stream.h - cut whole TURN messages out of a byte stream (TCP, and TLS after decryption).
 *
 * RFC 8656 §12.5 / RFC 8489 §6.2.2: a stream carries STUN messages and ChannelData back to back,
 * with no other framing. The receive buffer starts small and grows only to the length a frame
 * header has declared, up to a hard maximum, so a connection costs little until it carries big
 * frames and can never make us buffer more than one frame. No libuv here: the TCP listener and the
 * stream fuzzer drive the same code.
 */
#ifndef UTURN_STREAM_H
#define UTURN_STREAM_H

#include <stddef.h>
#include <stdint.h>

#define STREAM_RX_INITIAL 2048
/* Largest frame: ChannelData with 65535 bytes of data, padded (4 + 65536). */
#define STREAM_RX_MAX (4 + 65536)

typedef struct {
    uint8_t *buf;
    size_t len; /* bytes buffered, starting at buf[0] */
    size_t cap;
} stream_rx_t;

/* Called with each whole frame; returns 0 to go on or < 0 to stop and close the stream. */
typedef int (*stream_frame_cb)(void *arg, const uint8_t *frame, size_t len);

void stream_rx_init(stream_rx_t *rx);
void stream_rx_free(stream_rx_t *rx);

/* Where the next read should write, and how much room (> 0). Returns -ENOMEM on failure. */
int stream_rx_space(stream_rx_t *rx, uint8_t **p, size_t *n);

/* `n` bytes were written at the space: deliver every whole frame to `cb`. Returns 0, or -1 when the
 * stream must close: the bytes are not TURN framing, or `cb` asked to stop. */
int stream_rx_commit(stream_rx_t *rx, size_t n, stream_frame_cb cb, void *arg);

/* 1 when part of a frame is buffered (used to bound stalls mid-frame). */
static inline int stream_rx_partial(const stream_rx_t *rx) { return rx->len > 0; }

#endif
