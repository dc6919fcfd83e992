/* creds_keys.c - the long-term keys a username has, from what the config and Redis say: TURN REST
 * (draft-uberti-behave-turn-rest-00 with coturn's rules: username "expiry[:id]", accepted while
 * expiry >= now, password base64(HMAC-SHA1(secret, username))), RFC 8489 §9.2 MD5 and SHA-256 keys,
 * and the verdict when no key is found. Pure functions of their arguments; any thread.
 */
#include <string.h>

#include <openssl/crypto.h>

#include "creds_int.h"
#include "stun_auth.h"
#include "turn_auth.h"

void creds_uinfo_init(const creds_shared_t *sh, const char *u, size_t ul, int64_t unix_now,
                      creds_uinfo_t *ui)
{
    int64_t expiry;
    ui->name = u;
    ui->len = ul;
    ui->rest = ui->expired = false;
    if (!sh->rest || turn_rest_expiry(u, ul, &expiry) != 0)
        return;
    /* coturn: accepted while timestamp >= now. */
    if (expiry < unix_now)
        ui->expired = true;
    else
        ui->rest = true;
}

void creds_keys_add(creds_keys_t *out, const creds_key_t *k)
{
    for (int i = 0; i < out->n; i++)
        if (memcmp(&out->k[i], k, sizeof(*k)) == 0)
            return; /* the same secret in the config and in Redis */
    if (out->n < CREDS_MAX_KEYS)
        out->k[out->n++] = *k;
}

void creds_rest_key(const creds_shared_t *sh, const creds_uinfo_t *ui, const secret_t *s,
                    creds_keys_t *out)
{
    char pw[32];
    creds_key_t k;
    int n = turn_rest_password(s->s, s->len, ui->name, ui->len, pw, sizeof(pw));
    if (n < 0)
        return;
    memset(&k, 0, sizeof(k));
    stun_auth_key_md5(ui->name, ui->len, sh->realm, sh->rlen, pw, (size_t)n, k.md5);
    stun_auth_key_sha256(ui->name, ui->len, sh->realm, sh->rlen, pw, (size_t)n, k.sha256);
    k.has_md5 = k.has_sha256 = true;
    creds_keys_add(out, &k);
    OPENSSL_cleanse(pw, sizeof(pw));
    OPENSSL_cleanse(&k, sizeof(k));
}

enum creds_status creds_verdict(const creds_uinfo_t *ui, bool revoked, const creds_keys_t *out,
                                enum creds_status none)
{
    if (out->n > 0)
        return CREDS_FOUND;
    if (ui->expired && !revoked)
        return CREDS_EXPIRED;
    return none;
}
