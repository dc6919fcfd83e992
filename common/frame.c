/* frame.c - first-byte demultiplexing and stream framing on a TURN port.
 *
 * RFC 7983 §7 (first-byte ranges: 0-3 STUN, 20-63 DTLS, 64-79 ChannelData), RFC 8656 §12.4-12.5
 * (ChannelData header; padded to 4 bytes on TCP/TLS, padding optional on UDP) and RFC 8489 §6.2.2
 * (STUN over a stream is self-delimiting: 20 + header length). Pure functions over caller bytes.
 */
#include "frame.h"

enum frame_kind frame_classify(uint8_t first_byte)
{
    if (first_byte <= 3)
        return FRAME_STUN;
    if (first_byte >= 20 && first_byte <= 63)
        return FRAME_DTLS;
    /* RFC 8656 channels are 0x4000-0x4FFF, but RFC 5766 clients may use up to 0x7FFF: treat every
     * 01xxxxxx byte as ChannelData so the dispatcher, not the demux, rejects the reserved numbers.
     */
    if (first_byte >= 0x40 && first_byte <= 0x7F)
        return FRAME_CHANNEL;
    return FRAME_OTHER; /* ZRTP, RTP/RTCP and unassigned ranges: not ours */
}

long frame_stream_len(const uint8_t *buf, size_t avail, size_t max_len)
{
    if (avail < 4)
        return 0;
    /* 32-bit arithmetic: 4 + 65535 rounded up would wrap a uint16_t (coturn issue #1837). */
    uint32_t len = (uint32_t)buf[2] << 8 | buf[3];
    uint32_t total;

    switch (buf[0] >> 6) {
    case 0:
        /* RFC 8489 §5: a STUN length is always a multiple of 4; anything else means we lost
         * sync with the stream (or it was never STUN), and there is no way to resynchronise. */
        if (len & 3)
            return -1;
        total = 20 + len;
        break;
    case 1:
        total = 4 + ((len + 3) & ~3u);
        break;
    default:
        return -1; /* RFC 8656 §12.5: 10 and 11 are never TURN on a stream */
    }
    return total > max_len ? -1 : (long)total;
}

int frame_channel_parse(const uint8_t *buf, size_t len, uint16_t *channel, const uint8_t **data,
                        size_t *data_len)
{
    if (len < 4)
        return -1;
    size_t dlen = (size_t)buf[2] << 8 | buf[3];
    /* RFC 8656 §12.5: trailing bytes (padding) are allowed, a short datagram is dropped. */
    if (len - 4 < dlen)
        return -1;
    *channel = (uint16_t)(buf[0] << 8 | buf[1]);
    *data = buf + 4;
    *data_len = dlen;
    return 0;
}

void frame_channel_header(uint8_t hdr[4], uint16_t channel, uint16_t data_len)
{
    hdr[0] = (uint8_t)(channel >> 8);
    hdr[1] = (uint8_t)channel;
    hdr[2] = (uint8_t)(data_len >> 8);
    hdr[3] = (uint8_t)data_len;
}
