/* probe_tls.c - TLS versions and certificate of a turns: target.
 *
 * RFC 8656 §3.1 and RFC 7525 / BCP 195 (RFC 8996: TLS 1.0 and 1.1 are deprecated and MUST NOT be
 * negotiated; TLS 1.2 MUST be supported; TLS 1.3 SHOULD), RFC 6125 / RFC 9525 (the certificate's
 * names cover the host the client asked for), RFC 5280 §4.1.2.5 (validity). Each handshake is one
 * connection with a deadline.
 */
#include <arpa/inet.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/x509v3.h>

#include "probe.h"

/* Handshake with exactly `version`. Returns 1 when it was negotiated, 0 when refused, -1 when we
 * could not even try (no TCP connection). With `cert_out`, keeps the peer certificate and the
 * chain verification result. */
static int try_version(probe_t *p, const probe_target_t *t, int version, X509 **cert_out,
                       long *verify)
{
    probe_target_t plain = *t;
    plain.tls = false;
    probe_conn_t c;
    char err[160];
    if (probe_conn_open(&c, &plain, p->timeout_ms, err, sizeof(err)) < 0)
        return -1;
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    if (!ctx) {
        probe_conn_close(&c);
        return -1;
    }
    /* Let the old versions out of our side: it is the server that must refuse them. */
    SSL_CTX_set_security_level(ctx, 0);
    SSL_CTX_set_cipher_list(ctx, "ALL:@SECLEVEL=0");
    SSL_CTX_set_min_proto_version(ctx, version);
    SSL_CTX_set_max_proto_version(ctx, version);
    if (cert_out) {
        if (p->ca_file)
            SSL_CTX_load_verify_locations(ctx, p->ca_file, NULL);
        else
            SSL_CTX_set_default_verify_paths(ctx);
    }
    SSL *ssl = SSL_new(ctx);
    SSL_set_fd(ssl, c.fd);
    SSL_set_tlsext_host_name(ssl, t->host);
    int ok = 0;
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    long long deadline = ts.tv_sec * 1000LL + ts.tv_nsec / 1000000 + p->timeout_ms;
    for (int i = 0; i < 64; i++) {
        int r = SSL_connect(ssl);
        if (r == 1) {
            ok = SSL_version(ssl) == version;
            break;
        }
        int e = SSL_get_error(ssl, r);
        if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE)
            break;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        long long left = deadline - (ts.tv_sec * 1000LL + ts.tv_nsec / 1000000);
        struct pollfd pfd = {.fd = c.fd, .events = e == SSL_ERROR_WANT_READ ? POLLIN : POLLOUT};
        if (left <= 0 || poll(&pfd, 1, (int)left) <= 0)
            break;
    }
    if (ok && cert_out) {
        *cert_out = SSL_get1_peer_certificate(ssl);
        *verify = SSL_get_verify_result(ssl);
    }
    ERR_clear_error();
    SSL_free(ssl);
    SSL_CTX_free(ctx);
    probe_conn_close(&c);
    return ok;
}

static void cert_checks(probe_t *p, const probe_target_t *t, X509 *cert, long verify)
{
    const char *rfc = "RFC 5280 §4.1.2.5, RFC 9525";
    int days = 0, secs = 0;
    const ASN1_TIME *na = X509_get0_notAfter(cert);
    ASN1_TIME_diff(&days, &secs, NULL, na);
    if (X509_cmp_current_time(X509_get0_notBefore(cert)) > 0)
        probe_add(p, t, "tls-cert-validity", rfc, PROBE_FAIL, "not valid yet");
    else if (days < 0 || (days == 0 && secs <= 0))
        probe_add(p, t, "tls-cert-validity", rfc, PROBE_FAIL, "EXPIRED %d days ago", -days);
    else
        probe_add(p, t, "tls-cert-validity", rfc, days < 14 ? PROBE_WARN : PROBE_PASS,
                  "expires in %d days%s", days, days < 14 ? " (under 14: renew)" : "");
    unsigned char bin[16];
    int name_ok = (inet_pton(AF_INET, t->host, bin) == 1 || inet_pton(AF_INET6, t->host, bin) == 1)
                      ? X509_check_ip_asc(cert, t->host, 0) == 1
                      : X509_check_host(cert, t->host, 0, 0, NULL) == 1;
    probe_add(p, t, "tls-cert-name", "RFC 9525 §6", name_ok ? PROBE_PASS : PROBE_FAIL,
              "certificate %s %s", name_ok ? "covers" : "does NOT cover", t->host);
    probe_add(p, t, "tls-cert-chain", "RFC 5280 §6", verify == X509_V_OK ? PROBE_PASS : PROBE_WARN,
              "chain verification against %s: %s", p->ca_file ? p->ca_file : "the system's CAs",
              X509_verify_cert_error_string(verify));
}

void probe_tls_checks(probe_t *p, const probe_target_t *t)
{
    static const struct {
        int v;
        const char *name;
        bool want;
    } vers[] = {{TLS1_VERSION, "1.0", false},
                {TLS1_1_VERSION, "1.1", false},
                {TLS1_2_VERSION, "1.2", true},
                {TLS1_3_VERSION, "1.3", true}};
    X509 *cert = NULL;
    long verify = -1;
    for (size_t i = 0; i < 4; i++) {
        char check[24];
        snprintf(check, sizeof(check), "tls-%s", vers[i].name);
        int r = try_version(p, t, vers[i].v, vers[i].want && !cert ? &cert : NULL, &verify);
        if (r < 0) {
            probe_add(p, t, check, "RFC 8996, RFC 9325", PROBE_SKIP, "no TCP connection");
            continue;
        }
        probe_result_t res = r == vers[i].want                             ? PROBE_PASS
                             : vers[i].want && vers[i].v == TLS1_3_VERSION ? PROBE_WARN
                                                                           : PROBE_FAIL;
        probe_add(p, t, check, vers[i].want ? "RFC 9325 §3.1.1" : "RFC 8996 §2-3", res, "TLS %s %s",
                  vers[i].name, r ? "negotiated" : "refused");
    }
    if (cert) {
        cert_checks(p, t, cert, verify);
        X509_free(cert);
    }
}
