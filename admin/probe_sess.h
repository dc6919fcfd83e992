/* probe_sess.h - one prober client 5-tuple with its long-term credential state (internal to
 * uturnctl probe).
 *
 * RFC 8489 §9.2 (REALM/NONCE learned from 401/438, the nonce cookie and PASSWORD-ALGORITHMS echo,
 * MD5 or SHA-256 keys, USERHASH), §14.5-14.6 (MESSAGE-INTEGRITY, -SHA256). Single-threaded; a
 * session owns its connection until probe_sess_close.
 */
#ifndef UTURN_PROBE_SESS_H
#define UTURN_PROBE_SESS_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

#include "probe.h"
#include "stun_build.h"
#include "stun_msg.h"

/* One client 5-tuple with its long-term credential state. */
typedef struct {
    probe_t *p;
    const probe_target_t *t;
    probe_conn_t c;
    bool open;
    char realm[256];
    char nonce[256];
    uint16_t algs[8];
    size_t nalgs;
    bool has_algs;
    struct sockaddr_storage relayed;
    bool allocated;
    uint8_t resp[4096];
    stun_msg_t msg;
} probe_sess_t;

/* How a request authenticates. */
typedef struct {
    const char *user, *pass;
    int alg;        /* STUN_PASSWORD_ALG_MD5 or _SHA256: which key */
    bool mi256;     /* MESSAGE-INTEGRITY-SHA256 instead of MESSAGE-INTEGRITY */
    bool send_algs; /* PASSWORD-ALGORITHMS + PASSWORD-ALGORITHM (RFC 8489 §9.2.4) */
    bool userhash;  /* USERHASH instead of USERNAME */
    bool bad_nonce; /* alter the nonce (438 check) */
} probe_sess_auth_t;

typedef void (*probe_sess_add_fn)(stun_build_t *b, const void *arg);

/* ChannelBind arguments. */
typedef struct {
    uint16_t channel;
    const struct sockaddr *peer;
} probe_sess_chan_t;

/* Attribute adders for probe_sess_req: REQUESTED-TRANSPORT (arg: uint8_t protocol), the same plus
 * REQUESTED-ADDRESS-FAMILY IPv6 (arg: uint8_t protocol), LIFETIME (arg: uint32_t), XOR-PEER-ADDRESS
 * (arg: a sockaddr), CHANNEL-NUMBER + XOR-PEER-ADDRESS (arg: probe_sess_chan_t). */
void probe_sess_add_transport(stun_build_t *b, const void *arg);
void probe_sess_add_transport_v6(stun_build_t *b, const void *arg);
void probe_sess_add_lifetime(stun_build_t *b, const void *arg);
void probe_sess_add_peer(stun_build_t *b, const void *arg);
void probe_sess_add_channel(stun_build_t *b, const void *arg);

/* Connect a new 5-tuple to `t`. 0 or -1. */
int probe_sess_open(probe_sess_t *s, probe_t *p, const probe_target_t *t);
/* The unauthenticated Allocate that fetches REALM and NONCE. Returns the answer's class or -1. */
int probe_sess_challenge(probe_sess_t *s, int *code);
/* One request (auth NULL: none) and its answer in s->msg. Returns the answer's class, or -1 without
 * one; *code is its error code. A 438 with a fresh NONCE is retried once (not for a forged nonce).
 */
int probe_sess_req(probe_sess_t *s, uint16_t method, probe_sess_add_fn add, const void *arg,
                   const probe_sess_auth_t *a, int *code);
/* Whether the last answer's integrity verifies with the key of `a` (a sentence for the report). */
const char *probe_sess_integrity(probe_sess_t *s, const probe_sess_auth_t *a);
/* Delete the allocation (LIFETIME 0, RFC 8656 §8) if there is one, and close. */
void probe_sess_close(probe_sess_t *s);
/* A new random transaction id (OpenSSL's CSPRNG); exits the prober if none can be had. */
void probe_tid(uint8_t tid[STUN_TID_LEN]);
/* "success", "error N" or "no answer" for a probe_sess_req result. */
const char *probe_sess_code_str(int cls, int code, char *buf, size_t cap);

#endif
