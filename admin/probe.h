/* probe.h - `uturnctl probe`: black-box conformance and security checks against any TURN server.
 *
 * The checks (docs/PROBE.md lists each with its clause): Binding per transport (RFC 8489 §7), the
 * 401 challenge (§9.2.4), MESSAGE-INTEGRITY / MESSAGE-INTEGRITY-SHA256 / USERHASH (§9.2,
 * §14.5-14.6, §14.4) with Appendix B.1 (erratum 6268) as a self-test of our own crypto, the TURN
 * round trips (RFC 8656 §7-12), the classic error codes, the OWASP ASVS 5.0 V17.1.1 peer rules
 * (CreatePermission only: nothing is ever sent to a refused address), the unauthenticated
 * amplification ratio and TLS versions and certificate. Every loop is bounded in count and time.
 * Single-threaded, blocking I/O with poll() deadlines; the prober owns every socket it opens and
 * closes it before returning.
 */
#ifndef UTURN_PROBE_H
#define UTURN_PROBE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include <openssl/ssl.h>

/* Exit codes (documented in docs/PROBE.md and `uturnctl --help`). */
#define PROBE_EXIT_PASS 0  /* no FAIL (WARN and SKIP allowed) */
#define PROBE_EXIT_FAIL 1  /* at least one FAIL */
#define PROBE_EXIT_USAGE 2 /* bad arguments, or the first target did not answer a Binding */

typedef enum { PROBE_PASS, PROBE_FAIL, PROBE_WARN, PROBE_SKIP } probe_result_t;

#define PROBE_MAX_ROWS 96
#define PROBE_MAX_TARGETS 4

typedef struct {
    char target[80];
    char check[48];
    char rfc[48];
    probe_result_t result;
    char detail[240];
} probe_row_t;

typedef struct {
    char uri[300];
    char host[256];
    uint16_t port;
    bool tls;    /* turns: */
    bool stream; /* TCP or TLS */
    struct sockaddr_storage addr;
} probe_target_t;

typedef struct {
    const char *user, *password;
    const char *user2, *password2; /* optional second account: the 441 check */
    const char *ca_file;           /* trust anchors for turns: (default: the system's) */
    const char *peer_ip;           /* where the prober's own UDP peer listens */
    int max_allocations;           /* bound of the 486 check */
    int timeout_ms;                /* per transaction */
    bool json;
    probe_target_t targets[PROBE_MAX_TARGETS];
    int ntargets;
    probe_row_t rows[PROBE_MAX_ROWS];
    int nrows;
} probe_t;

/* Entry point of `uturnctl probe ARGS...` (argv[0] is the first argument after "probe"). Prints the
 * table or JSON on stdout and returns a PROBE_EXIT_* code. */
int probe_main(int argc, char **argv, bool json);

/* Append a result row (printf-style detail). Rows past PROBE_MAX_ROWS are dropped. */
__attribute__((format(printf, 6, 7))) void probe_add(probe_t *p, const probe_target_t *t,
                                                     const char *check, const char *rfc,
                                                     probe_result_t r, const char *fmt, ...);

/* ---- probe_net.c: one connection to a target (UDP, TCP or TLS) ---- */

typedef struct {
    int fd;
    bool stream;
    SSL_CTX *ctx;
    SSL *ssl;
    uint8_t rbuf[8192];
    size_t rlen;
    uint64_t tx_bytes, rx_bytes;
} probe_conn_t;

/* Resolve "host" and port into t->addr (first address). 0 or -1. */
int probe_resolve(probe_target_t *t);
/* Connect to `t` (TLS handshake for turns:, any version >= 1.2, no verification). 0, or -1 with a
 * reason in err. */
int probe_conn_open(probe_conn_t *c, const probe_target_t *t, int timeout_ms, char *err,
                    size_t errcap);
void probe_conn_close(probe_conn_t *c);
int probe_conn_send(probe_conn_t *c, const uint8_t *buf, size_t len);
/* Receive one message (a datagram, or one STUN / ChannelData frame of a stream) within timeout_ms.
 * Returns its length, 0 on timeout, -1 on error or a closed stream. */
int probe_conn_recv(probe_conn_t *c, uint8_t *buf, size_t cap, int timeout_ms);
/* Send a request and wait for the answer with the same transaction id (UDP: retransmitted at 0.5,
 * 1.5 s). Returns the answer length, 0 on timeout, -1 on error. Other messages are skipped. */
int probe_conn_transact(probe_conn_t *c, const uint8_t *req, size_t len, uint8_t *resp, size_t cap,
                        int timeout_ms);

/* ---- probe_tls.c ---- */

/* TLS versions and certificate of a turns: target. */
void probe_tls_checks(probe_t *p, const probe_target_t *t);

/* ---- probe_checks.c ---- */

/* RFC 8489 Appendix B.1 (erratum 6268) recomputed with our own crypto. */
void probe_selftest(probe_t *p);
/* Binding over one target. Returns 0 if it answered, -1 if unreachable. */
int probe_binding(probe_t *p, const probe_target_t *t);
/* Everything that needs credentials, on one target. */
void probe_turn_checks(probe_t *p, const probe_target_t *t);
/* Unauthenticated amplification ratio (UDP targets). */
void probe_amplification(probe_t *p, const probe_target_t *t);

#endif
