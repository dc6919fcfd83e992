/* fuzz_peer_range.c - libFuzzer target for peer rules, nonces, REST usernames and base64.
 *
 * Every text a TURN server takes from a config file or a client and parses in common/ without the
 * STUN codec: the input, NUL-terminated, as a peer allow/deny rule (peer_range_parse, RFC 8656
 * §21), the raw bytes as a NONCE (RFC 8489 §9.2, turn_nonce_check), as a TURN REST username
 * (turn_rest_expiry) and as base64 / base64url (RFC 4648 §4-5). Oracles beyond the sanitizers: a
 * parsed range is ordered, contains both ends and survives the policy check; a forged nonce is
 * never accepted while a nonce made from input-chosen parameters always is; a REST expiry is
 * non-negative; and because the decoders are strict, whatever decodes re-encodes to the exact
 * input. Built as a libFuzzer binary with --enable-fuzzers, and replayed over the committed corpus
 * by replay_main.c on every `make check`.
 */
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "peer_policy.h"
#include "turn_auth.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FUZZ_ASSERT(cond)                                                                          \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "fuzz_peer_range: %s:%d: %s\n", __FILE__, __LINE__, #cond);            \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

static const uint8_t fuzz_secret[TURN_NONCE_SECRET_LEN] = "uturn-fuzz-nonce-secret-32bytes";
/* A fixed clock and client, so a committed corpus file means the same thing on every run. */
#define FUZZ_NOW 1700000000u

static void fuzz_client(struct sockaddr_storage *ss)
{
    struct sockaddr_in *sin = (struct sockaddr_in *)ss;

    memset(ss, 0, sizeof(*ss));
    sin->sin_family = AF_INET;
    sin->sin_port = htons(54321);
    sin->sin_addr.s_addr = htonl(0xc0000201); /* 192.0.2.1 */
}

/* The range's endpoint `b` (4 or 16 bytes) as a sockaddr. */
static void range_end(const peer_range_t *r, const uint8_t *b, struct sockaddr_storage *ss)
{
    memset(ss, 0, sizeof(*ss));
    if (r->family == AF_INET) {
        struct sockaddr_in *sin = (struct sockaddr_in *)ss;
        sin->sin_family = AF_INET;
        memcpy(&sin->sin_addr, b, 4);
    } else {
        struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)ss;
        sin6->sin6_family = AF_INET6;
        memcpy(&sin6->sin6_addr, b, 16);
    }
}

static void fuzz_range(const uint8_t *data, size_t size)
{
    char text[256];
    peer_range_t r, canon_check;
    size_t n = size < sizeof(text) - 1 ? size : sizeof(text) - 1;

    memcpy(text, data, n);
    text[n] = '\0';
    if (peer_range_parse(text, &r) != 0)
        return;
    FUZZ_ASSERT(r.family == AF_INET || r.family == AF_INET6);
    size_t alen = r.family == AF_INET ? 4 : 16;
    FUZZ_ASSERT(memcmp(r.lo, r.hi, alen) <= 0);

    struct sockaddr_storage lo, hi, c, emb[PEER_EMBEDDED_MAX];
    range_end(&r, r.lo, &lo);
    range_end(&r, r.hi, &hi);
    /* Ranges are stored canonical, so an endpoint is itself canonical and inside the range. Not
     * quite for a v6 range holding mapped addresses at its ends (e.g. "::fffe:0:0/95"), whose end
     * canonicalises to IPv4: then the canonical form must be outside the v6 range. */
    for (int k = 0; k < 2; k++) {
        const struct sockaddr *sa = (const struct sockaddr *)(k ? &hi : &lo);
        FUZZ_ASSERT(peer_canonicalize(sa, &c) == 0);
        if (c.ss_family == r.family)
            FUZZ_ASSERT(peer_range_contains(&r, sa) == 1);
        else
            FUZZ_ASSERT(peer_range_contains(&r, sa) == 0);
        /* A deny rule is honoured whatever the classes say; an allow rule overrides them. */
        peer_policy_t deny = {.deny = &r, .ndeny = 1, .deny_classes = 0};
        peer_policy_t allow = {.allow = &r, .nallow = 1, .deny_classes = PEER_CLASS_DENY_DEFAULT};
        if (c.ss_family == r.family) {
            FUZZ_ASSERT(peer_policy_check(&deny, sa) == -1);
            FUZZ_ASSERT(peer_policy_check(&allow, sa) == 0);
        }
        (void)peer_classify(sa);
        size_t ne = peer_embedded_ipv4((const struct sockaddr *)&c, emb, PEER_EMBEDDED_MAX);
        FUZZ_ASSERT(ne <= PEER_EMBEDDED_MAX);
        for (size_t i = 0; i < ne; i++)
            FUZZ_ASSERT(emb[i].ss_family == AF_INET);
    }
    /* Parsing is deterministic and total over its own output's family. */
    FUZZ_ASSERT(peer_range_parse(text, &canon_check) == 0);
    FUZZ_ASSERT(memcmp(&canon_check, &r, sizeof(r)) == 0);
}

static void fuzz_nonce(const uint8_t *data, size_t size)
{
    struct sockaddr_storage client;
    uint32_t features = 0;
    uint8_t body[16];
    char nonce[TURN_NONCE_MAX + 1];

    fuzz_client(&client);
    const struct sockaddr *csa = (const struct sockaddr *)&client;
    enum turn_nonce_result res =
        turn_nonce_check(fuzz_secret, (const char *)data, size, FUZZ_NOW, csa, &features);
    FUZZ_ASSERT(res == TURN_NONCE_OK || res == TURN_NONCE_STALE || res == TURN_NONCE_BAD);
    if (res != TURN_NONCE_BAD) {
        /* Only a nonce this secret made for this client passes: re-making it from its own expiry
         * and features must give the same bytes. */
        FUZZ_ASSERT(size >= 13 && features <= 0xffffff);
        FUZZ_ASSERT(turn_b64url_decode((const char *)data + 13, size - 13, body, sizeof(body)) ==
                    16);
        uint32_t exp =
            (uint32_t)body[0] << 24 | (uint32_t)body[1] << 16 | (uint32_t)body[2] << 8 | body[3];
        int len = turn_nonce_make(fuzz_secret, exp, features, csa, nonce, sizeof(nonce));
        FUZZ_ASSERT(len > 0 && (size_t)len == size && memcmp(nonce, data, size) == 0);
    }

    /* Round trip with input-chosen expiry, features and client port. */
    if (size >= 9) {
        uint32_t exp =
            (uint32_t)data[0] << 24 | (uint32_t)data[1] << 16 | (uint32_t)data[2] << 8 | data[3];
        uint32_t feat = (uint32_t)data[4] << 16 | (uint32_t)data[5] << 8 | data[6];
        ((struct sockaddr_in *)&client)->sin_port = (uint16_t)(data[7] << 8 | data[8]);
        int len = turn_nonce_make(fuzz_secret, exp, feat, csa, nonce, sizeof(nonce));
        FUZZ_ASSERT(len > 0 && len <= TURN_NONCE_MAX && (size_t)len == strlen(nonce));
        res = turn_nonce_check(fuzz_secret, nonce, (size_t)len, exp, csa, &features);
        FUZZ_ASSERT(res == TURN_NONCE_OK && features == feat);
    }
}

static void fuzz_rest(const uint8_t *data, size_t size)
{
    int64_t expiry = -1;
    char pass[32];

    if (turn_rest_expiry((const char *)data, size, &expiry) == 0)
        FUZZ_ASSERT(expiry >= 0);
    FUZZ_ASSERT(turn_rest_password("fuzz", 4, (const char *)data, size, pass, sizeof(pass)) == 28);
}

static void fuzz_b64(const uint8_t *data, size_t size)
{
    uint8_t dec[1024];
    char enc[1400];
    const char *in = (const char *)data;

    if (size > 1024)
        return;
    int n = turn_b64_decode(in, size, dec, sizeof(dec));
    if (n >= 0) {
        /* Strict decoding means one spelling per value: re-encoding gives the input back. */
        FUZZ_ASSERT(turn_b64_encode(dec, (size_t)n, enc, sizeof(enc)) == (int)size);
        FUZZ_ASSERT(memcmp(enc, in, size) == 0);
    }
    n = turn_b64url_decode(in, size, dec, sizeof(dec));
    if (n >= 0) {
        FUZZ_ASSERT(turn_b64url_encode(dec, (size_t)n, enc, sizeof(enc)) == (int)size);
        FUZZ_ASSERT(memcmp(enc, in, size) == 0);
    }
    /* Encoding anything decodes back to it. */
    int m = turn_b64_encode(data, size, enc, sizeof(enc));
    FUZZ_ASSERT(m >= 0);
    FUZZ_ASSERT(turn_b64_decode(enc, (size_t)m, dec, sizeof(dec)) == (int)size);
    FUZZ_ASSERT(memcmp(dec, data, size) == 0);
    m = turn_b64url_encode(data, size, enc, sizeof(enc));
    FUZZ_ASSERT(m >= 0);
    FUZZ_ASSERT(turn_b64url_decode(enc, (size_t)m, dec, sizeof(dec)) == (int)size);
    FUZZ_ASSERT(memcmp(dec, data, size) == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_range(data, size);
    fuzz_nonce(data, size);
    fuzz_rest(data, size);
    fuzz_b64(data, size);
    return 0;
}
