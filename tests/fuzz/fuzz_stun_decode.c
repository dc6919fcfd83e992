/* fuzz_stun_decode.c - libFuzzer target for the STUN codec in common/.
 *
 * Feeds arbitrary bytes to the RFC 7983 demux and stream framing (frame.c), the decoder
 * (stun_msg_decode, RFC 8489 §5-6, §14), every typed getter on every indexed attribute regardless
 * of its type (a getter must survive any length), MESSAGE-INTEGRITY / -SHA256 verification with a
 * fixed key (RFC 8489 §14.5-14.6), and then re-encodes a response from what it decoded into a
 * buffer whose size the input chooses, so the builder's overflow paths run too. Oracles beyond the
 * sanitizers: a decoded message's stream frame length is its size, and whatever the builder
 * finishes must decode and verify. Built as a libFuzzer binary with --enable-fuzzers, and replayed
 * over the committed corpus by replay_main.c on every `make check`.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "frame.h"
#include "stun_auth.h"
#include "stun_build.h"
#include "stun_msg.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The RFC 5769 short-term password, so the vectors in the corpus reach the "verifies" paths. */
static const uint8_t fuzz_key[] = "VOkJxbRl1RmTxUk/WvJxBt";
#define FUZZ_KEYLEN (sizeof(fuzz_key) - 1)

/* Keeps getter results observable so the calls cannot be optimised away. */
static volatile uint64_t fuzz_sink;

#define FUZZ_ASSERT(cond)                                                                          \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "fuzz_stun_decode: %s:%d: %s\n", __FILE__, __LINE__, #cond);           \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

static void walk_scalar_getters(const stun_msg_t *m, const stun_attr_t *a)
{
    uint32_t u32;
    uint16_t u16;
    uint8_t u8, t, c;
    uint64_t u64;
    int i;

    if (stun_attr_get_u32(m, a, &u32) == 0)
        fuzz_sink += u32;
    if (stun_attr_get_channel(m, a, &u16) == 0)
        fuzz_sink += u16;
    if (stun_attr_get_transport(m, a, &u8) == 0)
        fuzz_sink += u8;
    if (stun_attr_get_family(m, a, &u8) == 0)
        fuzz_sink += u8;
    if (stun_attr_get_even_port(m, a, &i) == 0)
        fuzz_sink += (uint64_t)i;
    if (stun_attr_get_token(m, a, &u64) == 0)
        fuzz_sink += u64;
    if (stun_attr_get_response_port(m, a, &u16) == 0)
        fuzz_sink += u16;
    if (stun_attr_get_password_alg(m, a, &u16) == 0)
        fuzz_sink += u16;
    if (stun_attr_get_icmp(m, a, &t, &c, &u32) == 0)
        fuzz_sink += t + c + u32;
}

static void walk_getters(const stun_msg_t *m)
{
    struct sockaddr_storage ss;
    uint16_t list[8];
    const uint8_t *reason;
    size_t n, rlen;
    int code;

    for (int k = 0; k < m->nattrs; k++) {
        const stun_attr_t *a = &m->attrs[k];
        FUZZ_ASSERT(a->offset >= 24 && (size_t)a->offset + a->len <= m->len);
        walk_scalar_getters(m, a);
        if (stun_attr_get_xor_addr(m, a, &ss) == 0)
            fuzz_sink += ss.ss_family;
        if (stun_attr_get_addr(m, a, &ss) == 0)
            fuzz_sink += ss.ss_family;
        if (stun_attr_get_error(m, a, &code, &reason, &rlen) == 0) {
            FUZZ_ASSERT(code >= 300 && code <= 699 && reason + rlen <= m->buf + m->len);
            fuzz_sink += (uint64_t)code + rlen;
        }
        if (stun_attr_get_password_algs(m, a, list, 8, &n) == 0)
            fuzz_sink += n;
        if (stun_attr_get_unknown(m, a, list, 8, &n) == 0)
            fuzz_sink += n;
    }
}

/* A response to `m` with its attributes copied back, plus the typed writers fed from whatever the
 * getters could read. */
static void build_response(const stun_msg_t *m, stun_build_t *b, uint8_t *out, size_t cap)
{
    struct sockaddr_storage ss;
    uint16_t list[8];
    char reason[130];
    const uint8_t *r;
    size_t n, rlen;
    int code, copied = 0;

    enum stun_class cls = (m->tid[0] & 1) ? STUN_CLASS_ERROR : STUN_CLASS_SUCCESS;
    stun_build_init(b, out, cap, stun_type(m->method, cls), m->tid);
    for (int k = 0; k < m->nattrs && copied < 30; k++) {
        const stun_attr_t *a = &m->attrs[k];
        if (k == m->mi_idx || k == m->mi256_idx || k == m->fp_idx)
            continue;
        if (stun_attr_get_xor_addr(m, a, &ss) == 0)
            stun_build_xor_addr(b, STUN_ATTR_XOR_MAPPED_ADDRESS, (struct sockaddr *)&ss);
        else if (stun_attr_get_addr(m, a, &ss) == 0)
            stun_build_addr(b, STUN_ATTR_MAPPED_ADDRESS, (struct sockaddr *)&ss);
        else if (stun_attr_get_error(m, a, &code, &r, &rlen) == 0) {
            /* The reason is borrowed bytes, possibly with NULs: the builder takes a C string. */
            rlen = rlen < sizeof(reason) - 1 ? rlen : sizeof(reason) - 1;
            memcpy(reason, r, rlen);
            reason[rlen] = '\0';
            stun_build_error(b, code, (m->tid[1] & 1) ? reason : NULL);
        } else if (stun_attr_get_unknown(m, a, list, 8, &n) == 0)
            stun_build_unknown(b, list, n < 8 ? n : 8);
        else
            stun_build_attr(b, a->type, stun_attr_value(m, a), a->len);
        copied++;
    }
    stun_build_integrity(b, fuzz_key, FUZZ_KEYLEN);
    if (m->mi256_idx >= 0)
        stun_build_integrity_sha256(b, fuzz_key, FUZZ_KEYLEN);
    stun_build_fingerprint(b);
}

static void rebuild(const stun_msg_t *m)
{
    /* The input picks the capacity; an exact-size heap buffer makes any write past it an ASan
     * report rather than a silent stack scribble. */
    size_t cap = (size_t)m->tid[11] * 2 + (m->tid[10] & 3);
    uint8_t *out = malloc(cap ? cap : 1);
    stun_build_t b;
    stun_msg_t back;

    if (!out)
        return;
    build_response(m, &b, out, cap);
    int rc = stun_build_finish(&b);
    FUZZ_ASSERT(b.len <= cap);
    if (rc > 0) {
        /* Whatever the builder finishes is a well-formed, authenticated message. */
        FUZZ_ASSERT(stun_msg_decode(out, (size_t)rc, &back) == 0);
        FUZZ_ASSERT(back.fp_idx >= 0 && back.mi_idx >= 0);
        FUZZ_ASSERT(stun_auth_verify_integrity(&back, fuzz_key, FUZZ_KEYLEN) == 0);
        if (m->mi256_idx >= 0)
            FUZZ_ASSERT(stun_auth_verify_integrity_sha256(&back, fuzz_key, FUZZ_KEYLEN, 0) == 0);
    } else {
        FUZZ_ASSERT(rc == -ENOBUFS || rc == -EINVAL);
    }
    free(out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const uint16_t known[] = {STUN_ATTR_USERNAME, STUN_ATTR_REALM, STUN_ATTR_NONCE,
                                     STUN_ATTR_LIFETIME, STUN_ATTR_REQUESTED_TRANSPORT};
    uint16_t unknown[4];
    const uint8_t *payload;
    size_t plen;
    uint16_t ch;
    stun_msg_t m;

    fuzz_sink += frame_classify(size ? data[0] : 0);
    long flen = frame_stream_len(data, size, STUN_MAX_MSG_LEN);
    if (frame_channel_parse(data, size, &ch, &payload, &plen) == 0)
        FUZZ_ASSERT(payload + plen <= data + size);
    fuzz_sink += (uint64_t)stun_msg_is_stun(data, size);

    int rc = stun_msg_decode(data, size, &m);
    fuzz_sink += strlen(stun_msg_strerror(rc));
    if (rc != 0)
        return 0;
    FUZZ_ASSERT(flen == (long)size); /* a whole message frames as exactly itself */
    FUZZ_ASSERT(m.nattrs <= STUN_MAX_ATTRS);
    walk_getters(&m);
    fuzz_sink += (uint64_t)stun_auth_verify_integrity(&m, fuzz_key, FUZZ_KEYLEN);
    fuzz_sink += (uint64_t)stun_auth_verify_integrity_sha256(&m, fuzz_key, FUZZ_KEYLEN, 0);
    fuzz_sink += (uint64_t)stun_auth_verify_integrity_sha256(&m, fuzz_key, FUZZ_KEYLEN, 1);
    fuzz_sink += (uint64_t)stun_msg_unknown_required(&m, known, 5, unknown, 4);
    rebuild(&m);
    return 0;
}
