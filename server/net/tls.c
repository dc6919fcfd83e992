/* tls.c - building, sharing and reloading the TLS and DTLS contexts (see tls.h).
 *
 * RFC 8656 §3.1 and RFC 7350 (TURN over TLS/DTLS), RFC 7443 (ALPN "stun.turn" and
 * "stun.nat-discovery"), RFC 6347 §4.2.1 (stateless DTLS cookies), RFC 8996 (no TLS below 1.2).
 */
#include "tls.h"

#include <openssl/err.h>
#include <openssl/hmac.h>
#include <openssl/x509.h>
#include <stdio.h>
#include <string.h>

#include "log.h"
#include "rand.h"
#include "sockaddr_util.h"
#include "stun_auth.h"

/* The cookie secret is process-wide: the callbacks have no other way to reach it. Set once in
 * tls_init before any worker runs, read-only after. */
static uint8_t cookie_secret[32];

const char *tls_error_string(char *buf, size_t cap)
{
    unsigned long e = ERR_get_error();
    if (!e) {
        snprintf(buf, cap, "unknown error");
        return buf;
    }
    ERR_error_string_n(e, buf, cap);
    ERR_clear_error();
    return buf;
}

static int alpn_select(SSL *ssl, const unsigned char **out, unsigned char *outlen,
                       const unsigned char *in, unsigned int inlen, void *arg)
{
    static const unsigned char ours[] = "\x09stun.turn\x12stun.nat-discovery";
    (void)ssl;
    (void)arg;
    if (SSL_select_next_proto((unsigned char **)(uintptr_t)out, outlen, ours, sizeof(ours) - 1, in,
                              inlen) == OPENSSL_NPN_NEGOTIATED)
        return SSL_TLSEXT_ERR_OK;
    /* A client offering other protocols only: no ALPN, but no failure either (RFC 7301 allows). */
    return SSL_TLSEXT_ERR_NOACK;
}

int tls_cookie_generate(SSL *ssl, unsigned char *cookie, unsigned int *len)
{
    const struct sockaddr *sa = SSL_get_app_data(ssl);
    if (!sa)
        return 0;
    unsigned char mac[32];
    unsigned int mlen = 0;
    if (!HMAC(EVP_sha256(), cookie_secret, sizeof(cookie_secret), (const unsigned char *)sa,
              sa_len(sa), mac, &mlen))
        return 0;
    memcpy(cookie, mac, 16);
    *len = 16;
    return 1;
}

int tls_cookie_verify(SSL *ssl, const unsigned char *cookie, unsigned int len)
{
    unsigned char want[32];
    unsigned int wlen;
    if (len != 16 || !tls_cookie_generate(ssl, want, &wlen))
        return 0;
    return stun_auth_ct_equal(want, cookie, 16) == 0;
}

static SSL_CTX *build(const cfg_t *cfg, int dtls, char *subject, size_t subjlen, char *err,
                      size_t errlen)
{
    char e[256];
    SSL_CTX *ctx = SSL_CTX_new(dtls ? DTLS_server_method() : TLS_server_method());
    if (!ctx) {
        snprintf(err, errlen, "SSL_CTX_new: %s", tls_error_string(e, sizeof(e)));
        return NULL;
    }
    SSL_CTX_set_min_proto_version(ctx, dtls ? DTLS1_2_VERSION : TLS1_2_VERSION);
    SSL_CTX_set_options(ctx, SSL_OP_CIPHER_SERVER_PREFERENCE | SSL_OP_NO_RENEGOTIATION |
                                 (dtls ? SSL_OP_COOKIE_EXCHANGE : 0));
    SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_RELEASE_BUFFERS);
    if (SSL_CTX_use_certificate_chain_file(ctx, cfg->cert) != 1) {
        cfg_fail(cfg, "cert", 0, err, errlen, "%s: %s", cfg->cert, tls_error_string(e, sizeof(e)));
        goto fail;
    }
    if (SSL_CTX_use_PrivateKey_file(ctx, cfg->pkey, SSL_FILETYPE_PEM) != 1 ||
        SSL_CTX_check_private_key(ctx) != 1) {
        cfg_fail(cfg, "pkey", 0, err, errlen, "%s: %s", cfg->pkey, tls_error_string(e, sizeof(e)));
        goto fail;
    }
    if (cfg->cipher_list && SSL_CTX_set_cipher_list(ctx, cfg->cipher_list) != 1) {
        cfg_fail(cfg, "cipher-list", 0, err, errlen, "'%s': %s", cfg->cipher_list,
                 tls_error_string(e, sizeof(e)));
        goto fail;
    }
    SSL_CTX_set_alpn_select_cb(ctx, alpn_select, NULL);
    if (dtls) {
        SSL_CTX_set_cookie_generate_cb(ctx, tls_cookie_generate);
        SSL_CTX_set_cookie_verify_cb(ctx, tls_cookie_verify);
        SSL_CTX_set_read_ahead(ctx, 1);
    }
    X509 *x = SSL_CTX_get0_certificate(ctx);
    if (x && subject)
        X509_NAME_oneline(X509_get_subject_name(x), subject, (int)subjlen);
    return ctx;
fail:
    SSL_CTX_free(ctx);
    return NULL;
}

static int enabled(const cfg_t *cfg)
{
    return cfg->cert && cfg->pkey && !(cfg->no_tls && cfg->no_dtls);
}

static void new_cookie_secret(void) { rand_bytes(cookie_secret, sizeof(cookie_secret)); }

int tls_init(tls_t *t, const cfg_t *cfg, char *err, size_t errlen)
{
    /* Once per process: a config check at reload (server_check) builds contexts too, and must not
     * change the secret under the DTLS handshakes in progress. */
    static uv_once_t once = UV_ONCE_INIT;
    uv_once(&once, new_cookie_secret);
    memset(t, 0, sizeof(*t));
    uv_mutex_init(&t->lock);
    if (!enabled(cfg))
        return 0;
    if (!cfg->no_tls && !(t->tls = build(cfg, 0, t->subject, sizeof(t->subject), err, errlen)))
        return -1;
    if (!cfg->no_dtls && !(t->dtls = build(cfg, 1, NULL, 0, err, errlen)))
        return -1;
    return 0;
}

void tls_close(tls_t *t)
{
    SSL_CTX_free(t->tls);
    SSL_CTX_free(t->dtls);
    t->tls = t->dtls = NULL;
    uv_mutex_destroy(&t->lock);
}

int tls_reload(tls_t *t, const cfg_t *cfg, char *err, size_t errlen)
{
    if (!enabled(cfg) || (!t->tls && !t->dtls)) {
        snprintf(err, errlen, "TLS is not enabled");
        return -1;
    }
    char subject[256] = "";
    SSL_CTX *tls = NULL, *dtls = NULL;
    if (t->tls && !(tls = build(cfg, 0, subject, sizeof(subject), err, errlen)))
        return -1;
    if (t->dtls && !(dtls = build(cfg, 1, subject, sizeof(subject), err, errlen))) {
        SSL_CTX_free(tls);
        return -1;
    }
    uv_mutex_lock(&t->lock);
    SSL_CTX *old_tls = t->tls, *old_dtls = t->dtls;
    if (tls)
        t->tls = tls;
    if (dtls)
        t->dtls = dtls;
    snprintf(t->subject, sizeof(t->subject), "%s", subject);
    uv_mutex_unlock(&t->lock);
    /* Connections that started with the old contexts hold their own references. */
    if (tls)
        SSL_CTX_free(old_tls);
    if (dtls)
        SSL_CTX_free(old_dtls);
    return 0;
}

SSL_CTX *tls_get(tls_t *t, int dtls)
{
    uv_mutex_lock(&t->lock);
    SSL_CTX *c = dtls ? t->dtls : t->tls;
    if (c)
        SSL_CTX_up_ref(c);
    uv_mutex_unlock(&t->lock);
    return c;
}
