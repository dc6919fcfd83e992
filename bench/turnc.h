/* turnc.h - a TURN/UDP client for load generation: many sessions in flight on one socket.
 *
 * RFC 8656 §7 (Allocate, with the 401 challenge of RFC 8489 §9.2: REALM and NONCE, then USERNAME,
 * REALM, NONCE and MESSAGE-INTEGRITY over the long-term key MD5(user:realm:pass)), §8 (Refresh with
 * LIFETIME 0 deletes), §9 (CreatePermission), §12 (ChannelBind), 438 Stale Nonce retried with the
 * new nonce. Responses are matched by transaction id (the session index is in its first 4 bytes)
 * and are not integrity-checked: this is a load generator, not a conformance client.
 *
 * Sessions are either each on the pool's one socket bound to 127.0.0.1 (one session), or, with
 * `shared`, on one wildcard socket tied to the loopback device where session i sends from its own
 * source address 127.a.b.c (IP_PKTINFO) and answers are told apart by their destination address.
 * That gives N distinct client 5-tuples without N sockets, and lets data go out with sendmmsg.
 *
 * Single-threaded: the pool belongs to the thread that polls it.
 */
#ifndef UTURN_BENCH_TURNC_H
#define UTURN_BENCH_TURNC_H

#include <netinet/in.h>
#include <stddef.h>
#include <stdint.h>

enum turnc_state {
    TURNC_IDLE,
    TURNC_ALLOC0,   /* unauthenticated Allocate sent, expecting 401 */
    TURNC_ALLOC,    /* authenticated Allocate sent */
    TURNC_PERM,     /* CreatePermission sent */
    TURNC_CHAN,     /* ChannelBind sent */
    TURNC_READY,    /* allocation (and permission, channel) in place */
    TURNC_REFRESH0, /* Refresh LIFETIME=0 sent */
    TURNC_FAILED,
    TURNC_DONE, /* deleted */
};

enum turnc_op { TURNC_OP_OPEN, TURNC_OP_CLOSE };

typedef struct {
    uint8_t state, tries, nonce_len, stale;
    uint32_t gen;
    uint64_t deadline_ns;
    uint64_t t0_ns; /* when the current operation started */
    struct sockaddr_in relayed;
    uint8_t tid[12];
    char nonce[128];
} turnc_sess_t;

typedef struct turnc_pool turnc_pool_t;
typedef void (*turnc_done_cb)(turnc_pool_t *p, int idx, int op, int code);
typedef void (*turnc_data_cb)(turnc_pool_t *p, int idx, const uint8_t *data, size_t len);

typedef struct {
    struct sockaddr_in server;
    struct sockaddr_in peer; /* permission and channel target */
    const char *user, *pass;
    int want_perm, want_chan;
    uint16_t channel;
    uint32_t lifetime; /* 0: not sent (server default) */
    int rto_ms;        /* first retransmission timeout; doubled per try */
    int max_tries;
    int shared; /* one wildcard socket, a source address per session */
} turnc_cfg_t;

#define TURNC_OUTQ 128
#define TURNC_MSGMAX 1536

struct turnc_pool {
    turnc_cfg_t cfg;
    int fd;
    uint16_t port; /* our port */
    turnc_sess_t *s;
    int n;
    int inflight;
    char realm[128];
    size_t realm_len;
    uint8_t key[16];
    int have_key;
    uint64_t next_scan_ns;
    turnc_done_cb on_done;
    turnc_data_cb on_data;
    void *user;
    /* counters */
    uint64_t requests, retransmits, timeouts, responses, errors, err_401, err_438, err_508,
        err_other, send_errors, data_in;
    int last_err;
    /* outgoing batch */
    int nout;
    struct mmsghdr outm[TURNC_OUTQ];
    struct iovec outv[TURNC_OUTQ];
    struct sockaddr_in outto[TURNC_OUTQ];
    uint8_t outctl[TURNC_OUTQ][32];
    uint8_t outbuf[TURNC_OUTQ][TURNC_MSGMAX];
};

/* A pool of `n` sessions; dies on failure (a benchmark tool has nothing to fall back to). */
turnc_pool_t *turnc_pool_new(const turnc_cfg_t *cfg, int n);
void turnc_pool_free(turnc_pool_t *p);

/* Source address of session idx (its own 127.a.b.c when shared, else 127.0.0.1). */
struct in_addr turnc_src(const turnc_pool_t *p, int idx);
/* Session index of a shared-socket destination address, or -1. */
int turnc_idx_of(const turnc_pool_t *p, struct in_addr dst);

/* Start an allocation (then permission, channel per cfg) / a delete. on_done is called once. */
void turnc_open(turnc_pool_t *p, int idx);
void turnc_close(turnc_pool_t *p, int idx);

/* Queue a datagram from session idx to `to`; sent by turnc_flush or when the queue fills.
 * Returns the buffer to fill (TURNC_MSGMAX bytes) -- call turnc_queue_commit(len) after. */
uint8_t *turnc_queue(turnc_pool_t *p, int idx, const struct sockaddr_in *to);
void turnc_queue_commit(turnc_pool_t *p, size_t len);
void turnc_flush(turnc_pool_t *p);

/* Wait up to timeout_ns for input, process it (and retransmits), flush. Returns datagrams read. */
int turnc_poll(turnc_pool_t *p, uint64_t timeout_ns);

/* Run until no operation is in flight or the deadline passes; returns 0 when all finished. */
int turnc_run(turnc_pool_t *p, uint64_t deadline_ns);

/* The options gen and xgen share: --to (default 127.0.0.1:3478), --peer (127.0.0.1:9), --size
 * (1..1400, default 100), --rate (0: as fast as it goes), --seconds (3), --batch (1..max_batch,
 * default def_batch) and --stats; then the tool's deadline is armed. Dies on a bad value. */
typedef struct {
    struct sockaddr_in to, peer;
    size_t size;
    double rate, seconds;
    int batch;
    uint64_t *cnt;
} turnc_gen_opts_t;
void turnc_gen_opts(int argc, char **argv, int def_batch, int max_batch, turnc_gen_opts_t *o);

/* The one-client setup of gen and xgen: raw (1): a UDP socket on 127.0.0.1, port 40000-48999, *p
 * NULL; else one session to `server` (--user/--pass from argv) with a permission for `peer` and,
 * with want_chan, channel 0x4000, ready within 5 s or the tool dies. Returns the socket. */
int turnc_bench_client(int argc, char **argv, const struct sockaddr_in *server,
                       const struct sockaddr_in *peer, int raw, int want_chan, turnc_pool_t **p);
/* Its end: delete the allocation (when there is one), print "deleted=..." and free; else close
 * the socket. */
void turnc_bench_client_end(turnc_pool_t *p, int fd);

/* Build a Send indication (RFC 8656 §11.1) carrying `len` bytes of zeros-or-whatever already at
 * out + hdrlen; returns the message length. `hdrlen` is written by turnc_send_ind_hdrlen(). */
size_t turnc_send_ind_hdrlen(void);
size_t turnc_send_ind(uint8_t *out, const struct sockaddr_in *peer, size_t len);
/* ChannelData on channel 0x4000 with `size` bytes of 0xab (raw mode sends the same bytes straight
 * to the sink); returns its length, size + 4. */
size_t turnc_chan_data(uint8_t *out, size_t size);

#endif
