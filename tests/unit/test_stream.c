/* test_stream.c - the stream deframer (server/turn/stream.c): whole STUN messages and ChannelData
 * frames cut out of a TCP/TLS byte stream (RFC 8656 §12.5, RFC 8489 §6.2.2).
 *
 * What stream.h promises: every whole frame reaches the callback once, in order, however the
 * bytes were split between reads; ChannelData on a stream carries its padding to a multiple of 4
 * (the frame handed on includes it, and the next frame starts after it), a STUN message none; the
 * buffer grows only to a length a header declared, never past STREAM_RX_MAX, and shrinks again
 * after a big frame; bytes that are not TURN framing, an oversize frame, or a callback that says
 * stop close the stream (-1), after the frames before them were delivered.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "frame.h"
#include "stream.h"
#include "unit.h"

/* What the callback saw: the frames concatenated, their count and lengths. */
typedef struct {
    uint8_t *bytes;
    size_t len, cap;
    size_t nframes;
    size_t lens[64];
    int stop_at; /* return -1 on this frame (1-based); 0: never */
} sink_t;

static int on_frame(void *arg, const uint8_t *frame, size_t len)
{
    sink_t *s = arg;
    if (s->nframes < sizeof(s->lens) / sizeof(s->lens[0]))
        s->lens[s->nframes] = len;
    s->nframes++;
    if (s->len + len > s->cap) {
        s->cap = (s->len + len) * 2;
        s->bytes = realloc(s->bytes, s->cap);
    }
    memcpy(s->bytes + s->len, frame, len);
    s->len += len;
    return s->stop_at && (int)s->nframes == s->stop_at ? -1 : 0;
}

static void sink_free(sink_t *s) { free(s->bytes); }

/* Feed `len` bytes in reads of at most `chunk` bytes (the first read at most `first`, when > 0),
 * as the listener does: ask for space, copy, commit. Returns the first non-zero commit result. */
static int feed(stream_rx_t *rx, const uint8_t *data, size_t len, size_t first, size_t chunk,
                sink_t *s)
{
    size_t off = 0;
    while (off < len) {
        uint8_t *p;
        size_t room;
        if (stream_rx_space(rx, &p, &room) != 0)
            return -100;
        if (room == 0 || rx->cap > STREAM_RX_MAX)
            return -101;
        size_t n = len - off;
        size_t lim = off == 0 && first ? first : chunk;
        if (n > lim)
            n = lim;
        if (n > room)
            n = room;
        memcpy(p, data + off, n);
        off += n;
        int rc = stream_rx_commit(rx, n, on_frame, s);
        if (rc != 0)
            return rc;
    }
    return 0;
}

/* Append a STUN message of type 0x0001 with a body of `body` bytes (a multiple of 4). */
static size_t put_stun(uint8_t *out, size_t body, uint8_t fill)
{
    out[0] = 0x00;
    out[1] = 0x01;
    out[2] = (uint8_t)(body >> 8);
    out[3] = (uint8_t)body;
    out[4] = 0x21;
    out[5] = 0x12;
    out[6] = 0xA4;
    out[7] = 0x42;
    memset(out + 8, fill, 12 + body);
    return 20 + body;
}

/* Append a ChannelData frame for channel 0x4000+i with `dlen` data bytes and stream padding. */
static size_t put_chan(uint8_t *out, uint16_t dlen, int i, uint8_t fill)
{
    frame_channel_header(out, (uint16_t)(0x4000 + i), dlen);
    memset(out + 4, fill, dlen);
    size_t pad = frame_channel_pad(dlen);
    memset(out + 4 + dlen, 0, pad);
    return 4 + dlen + pad;
}

/* The mixed stream used below: STUN with and without a body, ChannelData of every padding case. */
static size_t mixed_stream(uint8_t *out, size_t *lens, size_t *n)
{
    size_t off = 0;
    *n = 0;
    off += lens[(*n)++] = put_stun(out + off, 8, 0xA1);
    for (uint16_t d = 0; d <= 5; d++)
        off += lens[(*n)++] = put_chan(out + off, d, d, (uint8_t)(0xB0 + d));
    off += lens[(*n)++] = put_stun(out + off, 0, 0xA2);
    off += lens[(*n)++] = put_chan(out + off, 99, 7, 0xC1);
    off += lens[(*n)++] = put_stun(out + off, 44, 0xA3);
    return off;
}

/* Every split of the stream into two reads delivers the same frames, whole and in order. */
UNIT_TEST(split_at_every_byte)
{
    uint8_t data[512];
    size_t lens[16], n;
    size_t len = mixed_stream(data, lens, &n);
    int failures = unit_failures;

    for (size_t k = 0; k <= len; k++) {
        stream_rx_t rx;
        sink_t s = {0};
        stream_rx_init(&rx);
        int rc = feed(&rx, data, len, k ? k : len, len, &s);
        CHECK_INT(rc, 0);
        CHECK_INT(s.nframes, n);
        CHECK_INT(s.len, len);
        if (s.len == len)
            CHECK(memcmp(s.bytes, data, len) == 0);
        for (size_t i = 0; i < n && i < s.nframes; i++)
            CHECK_INT(s.lens[i], lens[i]);
        CHECK_INT(rx.len, 0);
        CHECK(!stream_rx_partial(&rx));
        CHECK(rx.cap <= STREAM_RX_INITIAL);
        if (unit_failures != failures)
            fprintf(stderr, "  split at byte %zu of %zu\n", k, len);
        sink_free(&s);
        stream_rx_free(&rx);
        if (unit_failures != failures)
            break; /* one split's report is enough */
    }
}

/* One byte per read, and a few odd read sizes. */
UNIT_TEST(small_reads)
{
    uint8_t data[512];
    size_t lens[16], n;
    size_t len = mixed_stream(data, lens, &n);
    static const size_t chunks[] = {1, 2, 3, 5, 7, 19, 21, 64};

    for (size_t c = 0; c < sizeof(chunks) / sizeof(chunks[0]); c++) {
        stream_rx_t rx;
        sink_t s = {0};
        stream_rx_init(&rx);
        CHECK_INT(feed(&rx, data, len, 0, chunks[c], &s), 0);
        CHECK_INT(s.nframes, n);
        CHECK(s.len == len && memcmp(s.bytes, data, len) == 0);
        CHECK_INT(rx.len, 0);
        sink_free(&s);
        stream_rx_free(&rx);
    }
}

/* ChannelData on a stream: the frame handed on is 4 + data rounded up to 4, and the data parses out
 * of it with its length (padding ignored, as on UDP where it is optional). Mid-frame, partial. */
UNIT_TEST(channel_padding)
{
    for (uint16_t d = 0; d < 12; d++) {
        uint8_t data[64];
        size_t len = put_chan(data, d, 1, 0x5A);
        len += put_stun(data + len, 0, 0x11);
        stream_rx_t rx;
        sink_t s = {0};
        stream_rx_init(&rx);
        /* All but the last padding byte (when there is padding): nothing yet, partial. */
        size_t frame = 4 + d + frame_channel_pad(d);
        CHECK_INT(frame % 4, 0);
        CHECK_INT(feed(&rx, data, frame - 1, 0, 64, &s), 0);
        CHECK_INT(s.nframes, 0);
        CHECK(stream_rx_partial(&rx));
        CHECK_INT(feed(&rx, data + frame - 1, len - (frame - 1), 0, 64, &s), 0);
        CHECK_INT(s.nframes, 2);
        CHECK_INT(s.lens[0], frame);
        CHECK_INT(s.lens[1], 20);
        uint16_t ch = 0;
        const uint8_t *p = NULL;
        size_t dl = 0;
        CHECK_INT(frame_channel_parse(s.bytes, s.lens[0], &ch, &p, &dl), 0);
        CHECK_INT(ch, 0x4001);
        CHECK_INT(dl, d);
        CHECK(p == s.bytes + 4);
        sink_free(&s);
        stream_rx_free(&rx);
    }
}

/* The largest frames fit exactly: ChannelData with 65535 bytes (65540 with padding) and a STUN
 * message of 20 + 65520. The buffer grows to the declared length, not beyond, and is given back
 * once the frame has passed. */
UNIT_TEST(largest_frames)
{
    uint8_t *data = malloc(2 * STREAM_RX_MAX);
    size_t l1 = put_chan(data, 65535, 2, 0x77);
    CHECK_INT(l1, STREAM_RX_MAX);
    size_t l2 = put_stun(data + l1, 65520, 0x66);
    stream_rx_t rx;
    sink_t s = {0};
    stream_rx_init(&rx);

    /* The header alone: the buffer is made room for exactly that frame. */
    CHECK_INT(feed(&rx, data, 4, 0, 4, &s), 0);
    CHECK_INT(rx.cap, STREAM_RX_MAX);
    CHECK_INT(feed(&rx, data + 4, l1 - 4 + l2, 0, 1000, &s), 0);
    CHECK_INT(s.nframes, 2);
    CHECK_INT(s.lens[0], l1);
    CHECK_INT(s.lens[1], l2);
    CHECK(s.len == l1 + l2 && memcmp(s.bytes, data, l1 + l2) == 0);
    CHECK_INT(rx.len, 0);
    CHECK_INT(rx.cap, 0); /* given back */
    sink_free(&s);
    stream_rx_free(&rx);
    free(data);
}

/* A frame declared past STREAM_RX_MAX closes the stream at its header, before any body is kept;
 * the frames before it were delivered. */
UNIT_TEST(oversize)
{
    uint8_t data[64];
    size_t len = put_stun(data, 4, 0x01);
    /* STUN with a body of 65524: 65544 bytes > STREAM_RX_MAX. */
    data[len] = 0x00;
    data[len + 1] = 0x01;
    data[len + 2] = 0xFF;
    data[len + 3] = 0xF4;
    stream_rx_t rx;
    sink_t s = {0};
    stream_rx_init(&rx);
    CHECK_INT(feed(&rx, data, len + 4, 0, 64, &s), -1);
    CHECK_INT(s.nframes, 1);
    CHECK(rx.cap <= STREAM_RX_INITIAL);
    sink_free(&s);
    stream_rx_free(&rx);

    /* Just inside the bound is a frame to wait for, not an error. */
    data[2] = 0xFF;
    data[3] = 0xF0; /* 20 + 65520 = 65540 */
    stream_rx_init(&rx);
    memset(&s, 0, sizeof(s));
    CHECK_INT(feed(&rx, data, 4, 0, 64, &s), 0);
    CHECK_INT(s.nframes, 0);
    CHECK(stream_rx_partial(&rx));
    sink_free(&s);
    stream_rx_free(&rx);
}

/* Bytes that are not TURN framing close the stream: first bits 10 or 11 (RFC 8656 §12.5), a STUN
 * length that is not a multiple of 4 (lost sync: RFC 8489 §5). Good frames before them are
 * delivered; a split anywhere gives the same answer. */
UNIT_TEST(garbage)
{
    static const uint8_t bad[][4] = {
        {0x80, 0x00, 0x00, 0x00}, {0xC0, 0x01, 0x00, 0x04}, {0xFF, 0xFF, 0xFF, 0xFF},
        {0x00, 0x01, 0x00, 0x05}, {0x01, 0x01, 0x00, 0x02}, {0x00, 0x01, 0xFF, 0xFF},
    };
    for (size_t b = 0; b < sizeof(bad) / sizeof(bad[0]); b++) {
        uint8_t data[64];
        size_t len = put_chan(data, 3, 0, 0x42);
        memcpy(data + len, bad[b], 4);
        len += 4;
        for (size_t k = 1; k <= len; k++) {
            stream_rx_t rx;
            sink_t s = {0};
            stream_rx_init(&rx);
            CHECK_INT(feed(&rx, data, len, k, len, &s), -1);
            CHECK_INT(s.nframes, 1);
            sink_free(&s);
            stream_rx_free(&rx);
        }
    }
    /* Fewer than 4 bytes of anything: nothing can be said yet. */
    stream_rx_t rx;
    sink_t s = {0};
    stream_rx_init(&rx);
    CHECK_INT(feed(&rx, (const uint8_t *)"\xff\xff\xff", 3, 0, 3, &s), 0);
    CHECK(stream_rx_partial(&rx));
    stream_rx_free(&rx);
}

/* A callback that returns < 0 stops delivery there: the frames after it in the same read are not
 * delivered. */
UNIT_TEST(callback_stops)
{
    uint8_t data[512];
    size_t lens[16], n;
    size_t len = mixed_stream(data, lens, &n);
    stream_rx_t rx;
    sink_t s = {0};
    s.stop_at = 2;
    stream_rx_init(&rx);
    CHECK_INT(feed(&rx, data, len, 0, len, &s), -1);
    CHECK_INT(s.nframes, 2);
    sink_free(&s);
    stream_rx_free(&rx);
}

UNIT_MAIN("test_stream")
