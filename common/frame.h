/* frame.h - demultiplexing and framing of what arrives on a TURN port.
 *
 * RFC 7983 §7 (first-byte classes), RFC 8656 §12.4-12.5 (ChannelData, padding on streams), RFC 8489
 * §6.2.2 and RFC 8656 §12.5 (messages on a TCP/TLS stream). Pure functions, no state.
 */
#ifndef UTURN_FRAME_H
#define UTURN_FRAME_H

#include <stddef.h>
#include <stdint.h>

enum frame_kind {
    FRAME_STUN,    /* first byte 0..3 */
    FRAME_DTLS,    /* 20..63 */
    FRAME_CHANNEL, /* 64..79 (0x4000-0x4FFF) and, for stream sync, 0x5000-0x7FFF too: see below */
    FRAME_OTHER,   /* anything else: drop */
};

/* Classify by the first byte (RFC 7983). Bytes 0x50..0x7F are reported as FRAME_CHANNEL so a stream
 * stays in sync with RFC 5766 clients; the dispatcher discards their channel numbers as reserved.
 */
enum frame_kind frame_classify(uint8_t first_byte);

#define FRAME_CHANNEL_MIN 0x4000
#define FRAME_CHANNEL_MAX 0x4FFF
/* RFC 5766's range, still used by coturn's and pion's clients (0x5000-0x7FFF reserved by 8656). */
#define FRAME_CHANNEL_MAX_RFC5766 0x7FFF

/* Length of the next whole frame at the start of a stream buffer of `avail` bytes:
 *   > 0  the frame is that many bytes long (it may be more than avail: wait for more);
 *   0    fewer than 4 bytes available: wait;
 *   < 0  the stream is not TURN (bad first bits, STUN length not a multiple of 4, over `max_len`):
 *        close the connection.
 * STUN: 20 + header length. ChannelData: 4 + length rounded up to a multiple of 4 (RFC 8656 §12.5),
 * computed in 32-bit so 65535 cannot wrap. */
long frame_stream_len(const uint8_t *buf, size_t avail, size_t max_len);

/* ChannelData datagram (UDP): on success *channel, *data (inside buf) and *data_len are set and 0
 * is returned; -1 if shorter than 4 + length (extra bytes, such as padding, are ignored). */
int frame_channel_parse(const uint8_t *buf, size_t len, uint16_t *channel, const uint8_t **data,
                        size_t *data_len);

/* Write a ChannelData header for `data_len` bytes into hdr[4]. */
void frame_channel_header(uint8_t hdr[4], uint16_t channel, uint16_t data_len);

/* Padding to add after a ChannelData payload on a stream (0..3). */
static inline size_t frame_channel_pad(size_t data_len) { return (4 - (data_len & 3)) & 3; }

#endif
