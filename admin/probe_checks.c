/* probe_checks.c - the prober's checks that need no credentials: its own crypto, Binding, and the
 * unauthenticated amplification ratio.
 *
 * RFC 8489 §7 (Binding), Appendix B.1 with erratum 6268 (self-test of our USERHASH, SHA-256 key
 * and MESSAGE-INTEGRITY-SHA256), RFC 8656 §21.2 (the server must not be an amplifier).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "probe.h"
#include "probe_sess.h"
#include "sockaddr_util.h"
#include "stun.h"
#include "stun_auth.h"
#include "stun_build.h"
#include "stun_msg.h"

/* ---- self-test ---- */

void probe_selftest(probe_t *p)
{
    /* RFC 8489 Appendix B.1 as corrected by erratum 6268: a Binding request with USERHASH, NONCE,
     * REALM, PASSWORD-ALGORITHM (SHA-256) and MESSAGE-INTEGRITY-SHA256. */
    static const uint8_t tid[12] = {0x78, 0xad, 0x34, 0x33, 0xc6, 0xad,
                                    0x72, 0xc0, 0x29, 0xda, 0x41, 0x2e};
    static const uint8_t want_uh[32] = {0x4a, 0x3c, 0xf3, 0x8f, 0xef, 0x69, 0x92, 0xbd,
                                        0xa9, 0x52, 0xc6, 0x78, 0x04, 0x17, 0xda, 0x0f,
                                        0x24, 0x81, 0x94, 0x15, 0x56, 0x9e, 0x60, 0xb2,
                                        0x05, 0xc4, 0x6e, 0x41, 0x40, 0x7f, 0x17, 0x04};
    static const uint8_t want_mi[32] = {0xb5, 0xc7, 0xbf, 0x00, 0x5b, 0x6c, 0x52, 0xa2,
                                        0x1c, 0x51, 0xc5, 0xe8, 0x92, 0xf8, 0x19, 0x24,
                                        0x13, 0x62, 0x96, 0xcb, 0x92, 0x7c, 0x43, 0x14,
                                        0x93, 0x09, 0x27, 0x8c, 0xc6, 0x51, 0x8e, 0x65};
    const char *user = "\xe3\x83\x9e\xe3\x83\x88\xe3\x83\xaa\xe3\x83\x83\xe3\x82\xaf\xe3\x82\xb9";
    const char *raw_pw = "The\xc2\xad"
                         "M\xc2\xaatr\xe2\x85\xa8";
    const char *realm = "example.org", *nonce = "obMatJos2AAACf//499k954d6OL34oL9FSTvy64sA";
    char pw[64];
    int pl = stun_auth_saslprep(raw_pw, strlen(raw_pw), pw, sizeof(pw));
    uint8_t uh[32], key[32], buf[256];
    stun_auth_userhash(user, strlen(user), realm, strlen(realm), uh);
    stun_auth_key_sha256(user, strlen(user), realm, strlen(realm), pw, pl > 0 ? (size_t)pl : 0,
                         key);
    stun_build_t b;
    stun_build_init(&b, buf, sizeof(buf), stun_type(STUN_METHOD_BINDING, STUN_CLASS_REQUEST), tid);
    stun_build_attr(&b, STUN_ATTR_USERHASH, uh, sizeof(uh));
    stun_build_attr(&b, STUN_ATTR_NONCE, nonce, strlen(nonce));
    stun_build_attr(&b, STUN_ATTR_REALM, realm, strlen(realm));
    stun_build_password_alg(&b, STUN_PASSWORD_ALG_SHA256);
    stun_build_integrity_sha256(&b, key, sizeof(key));
    int len = stun_build_finish(&b);
    stun_msg_t m;
    const char *why = NULL;
    if (pl < 0 || strcmp(pw, "TheMatrIX") != 0)
        why = "SASLprep of the password is not \"TheMatrIX\"";
    else if (memcmp(uh, want_uh, 32) != 0)
        why = "USERHASH differs from the vector";
    else if (len != 164 || buf[2] != 0x00 || buf[3] != 0x90)
        why = "message length differs from the vector (164 bytes, header length 0x0090)";
    else if (memcmp(buf + len - 32, want_mi, 32) != 0)
        why = "MESSAGE-INTEGRITY-SHA256 differs from the vector";
    else if (stun_msg_decode(buf, (size_t)len, &m) != 0 ||
             stun_auth_verify_integrity_sha256(&m, key, sizeof(key), 0) != 0)
        why = "our decoder does not verify our own encoding";
    if (why)
        probe_add(p, NULL, "selftest-b1", "RFC 8489 App. B.1, erratum 6268", PROBE_FAIL,
                  "the prober's own crypto is wrong: %s; no other result can be trusted", why);
    else
        probe_add(p, NULL, "selftest-b1", "RFC 8489 App. B.1, erratum 6268", PROBE_PASS,
                  "USERHASH 4a3cf38f..., key SHA-256(user:realm:\"TheMatrIX\"), "
                  "MESSAGE-INTEGRITY-SHA256 b5c7bf00... reproduced byte for byte (164 bytes)");
}

/* ---- Binding ---- */

int probe_binding(probe_t *p, const probe_target_t *t)
{
    probe_conn_t c;
    char err[160];
    if (probe_conn_open(&c, t, p->timeout_ms, err, sizeof(err)) < 0) {
        probe_add(p, t, "binding", "RFC 8489 §7", PROBE_FAIL, "cannot connect: %s", err);
        return -1;
    }
    uint8_t tid[STUN_TID_LEN], req[64], resp[2048];
    probe_tid(tid);
    stun_build_t b;
    stun_build_init(&b, req, sizeof(req), stun_type(STUN_METHOD_BINDING, STUN_CLASS_REQUEST), tid);
    stun_build_fingerprint(&b);
    int len = stun_build_finish(&b);
    int n = probe_conn_transact(&c, req, (size_t)len, resp, sizeof(resp), p->timeout_ms);
    probe_conn_close(&c);
    stun_msg_t m;
    if (n <= 0) {
        probe_add(p, t, "binding", "RFC 8489 §7", PROBE_FAIL, "no answer within %d ms",
                  p->timeout_ms);
        return -1;
    }
    if (stun_msg_decode(resp, (size_t)n, &m) != 0 || m.cls != STUN_CLASS_SUCCESS) {
        probe_add(p, t, "binding", "RFC 8489 §7", PROBE_FAIL,
                  "answer is not a Binding success response");
        return 0;
    }
    const stun_attr_t *x = stun_msg_find(&m, STUN_ATTR_XOR_MAPPED_ADDRESS);
    struct sockaddr_storage ss;
    char a[SA_STRLEN];
    if (!x || stun_attr_get_xor_addr(&m, x, &ss) != 0)
        probe_add(p, t, "binding", "RFC 8489 §7, §14.2", PROBE_FAIL,
                  "success without a valid XOR-MAPPED-ADDRESS");
    else
        probe_add(p, t, "binding", "RFC 8489 §7, §14.2", PROBE_PASS, "XOR-MAPPED-ADDRESS %s",
                  sa_format((struct sockaddr *)&ss, a, sizeof(a)));
    return 0;
}

/* ---- amplification ---- */

void probe_amplification(probe_t *p, const probe_target_t *t)
{
    const char *rfc = "RFC 8656 §21.2";
    if (t->stream) {
        probe_add(p, t, "amplification", rfc, PROBE_SKIP,
                  "only UDP can be spoofed: measured on turn:...?transport=udp targets");
        return;
    }
    probe_conn_t c;
    char err[160];
    if (probe_conn_open(&c, t, p->timeout_ms, err, sizeof(err)) < 0) {
        probe_add(p, t, "amplification", rfc, PROBE_SKIP, "cannot connect: %s", err);
        return;
    }
    /* A bounded burst: 8 bare Bindings (20 bytes) and 8 bare Allocates (28 bytes, the size a
     * browser's first Allocate has), spaced 20 ms so a server's rate limit is not what we
     * measure. */
    enum { BURST = 8 };
    uint8_t buf[2048];
    int answers = 0;
    for (int i = 0; i < 2 * BURST; i++) {
        uint8_t tid[STUN_TID_LEN], req[64];
        probe_tid(tid);
        stun_build_t b;
        bool alloc = i % 2 == 1;
        stun_build_init(
            &b, req, sizeof(req),
            stun_type(alloc ? STUN_METHOD_ALLOCATE : STUN_METHOD_BINDING, STUN_CLASS_REQUEST), tid);
        if (alloc)
            stun_build_byte_attr(&b, STUN_ATTR_REQUESTED_TRANSPORT, STUN_TRANSPORT_UDP);
        probe_conn_send(&c, req, (size_t)stun_build_finish(&b));
        while (answers < 4 * BURST && probe_conn_recv(&c, buf, sizeof(buf), 20) > 0)
            answers++; /* a server that keeps sending cannot hold us: 4 per request at most */
    }
    while (answers < 4 * BURST && probe_conn_recv(&c, buf, sizeof(buf), 500) > 0)
        answers++;
    double ratio = c.tx_bytes ? (double)c.rx_bytes / (double)c.tx_bytes : 0;
    probe_add(p, t, "amplification", rfc, ratio <= 4.0 ? PROBE_PASS : PROBE_WARN,
              "%llu bytes answered / %llu bytes sent = %.2f (%d answers to %d requests; PASS at "
              "<= 4)",
              (unsigned long long)c.rx_bytes, (unsigned long long)c.tx_bytes, ratio, answers,
              2 * BURST);
    probe_conn_close(&c);
}
