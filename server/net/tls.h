/* tls.h - OpenSSL contexts for TURN over TLS (RFC 8656 §3.1, RFC 7443 ALPN) and DTLS (RFC 7350),
 * shared by every worker, and their reload without restart.
 *
 * A context is built from `cert` (full chain, PEM) and `pkey`; TLS 1.2 is the floor, the server's
 * cipher order wins, `cipher-list` changes the TLS 1.2 list. Reload builds new contexts first and
 * swaps them in only when both load: a bad new file keeps the old certificate. Connections take a
 * reference to the context current when they start, so existing ones keep theirs.
 */
#ifndef UTURN_TLS_H
#define UTURN_TLS_H

#include <openssl/ssl.h>
#include <stdint.h>
#include <uv.h>

#include "cfg.h"

typedef struct {
    uv_mutex_t lock;
    SSL_CTX *tls;      /* NULL when TLS is off */
    SSL_CTX *dtls;     /* NULL when DTLS is off */
    char subject[256]; /* of the current certificate, for logs and reports */
} tls_t;

/* Build the contexts when `cert` and `pkey` are configured (else leave both NULL). Returns 0 or -1
 * with a message naming the file and OpenSSL's reason in `err`. */
int tls_init(tls_t *t, const cfg_t *cfg, char *err, size_t errlen);
/* Drop the server's references to the contexts (connections keep theirs) and the lock, once
 * nothing uses `t` any more (shutdown). */
void tls_close(tls_t *t);

/* Reload from `cfg`'s files the contexts that exist (TLS and/or DTLS, as at start). Returns 0
 * (swapped; t->subject names the new certificate), or -1 with the reason in `err` and the old
 * contexts kept, also when TLS was off at start. Any thread. */
int tls_reload(tls_t *t, const cfg_t *cfg, char *err, size_t errlen);

/* The current context with a reference taken (SSL_CTX_free it when done), or NULL. */
SSL_CTX *tls_get(tls_t *t, int dtls);

/* Stateless DTLS cookies (RFC 6347 §4.2.1): HMAC of the client address under a secret made at
 * start. The SSL's app data must be a `const struct sockaddr *` of the client. */
int tls_cookie_generate(SSL *ssl, unsigned char *cookie, unsigned int *len);
int tls_cookie_verify(SSL *ssl, const unsigned char *cookie, unsigned int len);

/* The OpenSSL error queue as text (and cleared), for logs. */
const char *tls_error_string(char *buf, size_t cap);

#endif
