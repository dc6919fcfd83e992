/* test_frame.c - unit tests of demultiplexing and stream framing (common/frame.c).
 *
 * RFC 7983 §7 first-byte classes for all 256 values; RFC 8489 §6.2.2 and RFC 8656 §12.5 stream
 * frame lengths (STUN 20 + length, ChannelData 4 + length rounded up to 4, computed without 16-bit
 * wrap), rejection of bytes that cannot start a TURN frame and of frames over the limit; RFC 8656
 * §12.4 ChannelData datagram parsing (short, exact, padded) and header writing.
 */
#include "frame.h"
#include "unit.h"
#include "util.h"

UNIT_TEST(classify)
{
    /* RFC 7983 §7 ranges, with 0x50-0x7F widened to ChannelData as frame.h documents. */
    static const struct {
        int lo, hi;
        enum frame_kind kind;
    } ranges[] = {
        {0, 3, FRAME_STUN},      {4, 15, FRAME_OTHER},    {16, 19, FRAME_OTHER}, /* ZRTP */
        {20, 63, FRAME_DTLS},    {64, 79, FRAME_CHANNEL}, {80, 127, FRAME_CHANNEL},
        {128, 191, FRAME_OTHER}, /* RTP/RTCP */
        {192, 255, FRAME_OTHER},
    };
    int seen[256] = {0};

    for (size_t r = 0; r < ARRAY_SIZE(ranges); r++) {
        for (int b = ranges[r].lo; b <= ranges[r].hi; b++) {
            seen[b]++;
            if (frame_classify((uint8_t)b) != ranges[r].kind)
                fprintf(stderr, "byte %d\n", b);
            CHECK_INT(frame_classify((uint8_t)b), ranges[r].kind);
        }
    }
    for (int b = 0; b < 256; b++)
        CHECK_INT(seen[b], 1); /* the table above covers every byte exactly once */
    CHECK_INT(frame_classify(0x16), FRAME_DTLS); /* a (D)TLS handshake record */
}

UNIT_TEST(stream_len)
{
    static const struct {
        const char *name;
        uint8_t hdr[4];
        size_t avail, max;
        long expect;
    } cases[] = {
        {"nothing", {0}, 0, 4096, 0},
        {"one byte", {0x00}, 1, 4096, 0},
        {"three bytes", {0x00, 0x01, 0x00}, 3, 4096, 0},
        {"stun empty", {0x00, 0x01, 0x00, 0x00}, 4, 4096, 20},
        {"stun 8", {0x01, 0x01, 0x00, 0x08}, 4, 4096, 28},
        {"stun len 6", {0x00, 0x01, 0x00, 0x06}, 4, 4096, -1},
        {"stun len 1", {0x00, 0x01, 0x00, 0x01}, 4, 4096, -1},
        {"stun at max", {0x00, 0x01, 0x0f, 0xec}, 4, 4096, 4096},
        {"stun over max", {0x00, 0x01, 0x0f, 0xf0}, 4, 4096, -1},
        {"stun 65532", {0x00, 0x01, 0xff, 0xfc}, 4, 1 << 20, 65552},
        {"stun first byte 0x3f", {0x3f, 0xff, 0x00, 0x04}, 4, 4096, 24},
        {"channel 0", {0x40, 0x00, 0x00, 0x00}, 4, 4096, 4},
        {"channel 1", {0x40, 0x00, 0x00, 0x01}, 4, 4096, 8},
        {"channel 3", {0x40, 0x00, 0x00, 0x03}, 4, 4096, 8},
        {"channel 4", {0x40, 0x00, 0x00, 0x04}, 4, 4096, 8},
        {"channel 5", {0x4f, 0xff, 0x00, 0x05}, 4, 4096, 12},
        {"channel 65535", {0x40, 0x01, 0xff, 0xff}, 4, 1 << 20, 65540},
        {"channel 65535 over", {0x40, 0x01, 0xff, 0xff}, 4, 65539, -1},
        {"channel 65535 exact", {0x40, 0x01, 0xff, 0xff}, 4, 65540, 65540},
        {"channel 5766 range", {0x7f, 0xff, 0x00, 0x04}, 4, 4096, 8},
        {"channel over max", {0x40, 0x00, 0x10, 0x00}, 4, 4096, -1},
        {"top bits 10", {0x80, 0x00, 0x00, 0x00}, 4, 4096, -1},
        {"top bits 11", {0xc0, 0x00, 0x00, 0x00}, 4, 4096, -1},
        {"0xff", {0xff, 0xff, 0xff, 0xff}, 4, 4096, -1},
        {"rtp", {0x80, 0x60, 0x00, 0x04}, 4, 4096, -1},
    };

    for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
        long got = frame_stream_len(cases[i].hdr, cases[i].avail, cases[i].max);
        if (got != cases[i].expect)
            fprintf(stderr, "case \"%s\"\n", cases[i].name);
        CHECK_INT(got, cases[i].expect);
    }
}

UNIT_TEST(channel_parse)
{
    static const uint8_t exact[] = {0x40, 0x01, 0x00, 0x03, 'a', 'b', 'c'};
    static const uint8_t padded[] = {0x40, 0x01, 0x00, 0x03, 'a', 'b', 'c', 0};
    static const uint8_t empty[] = {0x4f, 0xff, 0x00, 0x00};
    static const uint8_t short_data[] = {0x40, 0x01, 0x00, 0x04, 'a', 'b', 'c'};
    uint16_t ch = 0;
    const uint8_t *data = NULL;
    size_t dlen = 99;

    for (size_t n = 0; n < 4; n++)
        CHECK_INT(frame_channel_parse(exact, n, &ch, &data, &dlen), -1);
    CHECK_INT(frame_channel_parse(exact, sizeof(exact), &ch, &data, &dlen), 0);
    CHECK(ch == 0x4001 && data == exact + 4 && dlen == 3);
    CHECK_INT(frame_channel_parse(exact, sizeof(exact) - 1, &ch, &data, &dlen), -1);
    CHECK_INT(frame_channel_parse(padded, sizeof(padded), &ch, &data, &dlen), 0);
    CHECK(ch == 0x4001 && data == padded + 4 && dlen == 3); /* the pad is not payload */
    CHECK_INT(frame_channel_parse(empty, sizeof(empty), &ch, &data, &dlen), 0);
    CHECK(ch == 0x4fff && dlen == 0);
    CHECK_INT(frame_channel_parse(short_data, sizeof(short_data), &ch, &data, &dlen), -1);
}

UNIT_TEST(channel_header)
{
    uint8_t hdr[4];

    frame_channel_header(hdr, 0x4abc, 0xfffe);
    CHECK_MEM(hdr, "\x4a\xbc\xff\xfe", 4);
    frame_channel_header(hdr, 0x4000, 0);
    CHECK_MEM(hdr, "\x40\x00\x00\x00", 4);
    static const size_t pads[8] = {0, 3, 2, 1, 0, 3, 2, 1};
    for (size_t n = 0; n < 8; n++)
        CHECK_INT(frame_channel_pad(n), pads[n]);
    CHECK_INT(frame_channel_pad(65535), 1);
}

UNIT_MAIN("test_frame")
