/* static_creds.c - see static_creds.h: the keys are computed at each lookup from the config's user
 * lines (tests have a handful of users, so a scan is fine).
 */
#include "static_creds.h"

#include <stdlib.h>
#include <string.h>

#include "stun.h"
#include "stun_auth.h"

/* Keys of the `i`th user line into `out` and its name into name/nlen; -1 when the line is no
 * "name:password". */
static int user_keys(const cfg_t *cfg, size_t i, const char **name, size_t *nlen, creds_key_t *out)
{
    const char *line = cfg->user.v[i];
    const char *colon = strchr(line, ':');
    if (!colon)
        return -1;
    const char *pw = colon + 1;
    size_t plen = strlen(pw);
    char prep[512];
    int n = stun_auth_saslprep(pw, plen, prep, sizeof(prep));
    const char *p = n >= 0 ? prep : pw;
    size_t pl = n >= 0 ? (size_t)n : plen;
    *name = line;
    *nlen = (size_t)(colon - line);
    const char *realm = cfg->realm ? cfg->realm : "";
    memset(out, 0, sizeof(*out));
    stun_auth_key_md5(line, *nlen, realm, strlen(realm), p, pl, out->md5);
    stun_auth_key_sha256(line, *nlen, realm, strlen(realm), p, pl, out->sha256);
    out->has_md5 = out->has_sha256 = true;
    return 0;
}

static enum creds_status lookup(void *env, const creds_asker_t *who, const char *user, size_t ulen,
                                uint64_t now_ms, int64_t unix_now, creds_keys_t *out,
                                creds_ready_cb cb, void *arg)
{
    const cfg_t *cfg = env;
    (void)who, (void)now_ms, (void)unix_now, (void)cb, (void)arg;
    out->n = 0;
    for (size_t i = 0; i < cfg->user.n; i++) {
        const char *name;
        size_t nlen;
        creds_key_t k;
        if (user_keys(cfg, i, &name, &nlen, &k) == 0 && nlen == ulen &&
            memcmp(name, user, ulen) == 0) {
            out->k[out->n++] = k;
            return CREDS_FOUND;
        }
    }
    return CREDS_UNKNOWN;
}

static enum creds_status lookup_userhash(void *env, const creds_asker_t *who,
                                         const uint8_t hash[32], uint64_t now_ms, int64_t unix_now,
                                         char *user, size_t cap, creds_keys_t *out,
                                         creds_ready_cb cb, void *arg)
{
    const cfg_t *cfg = env;
    const char *realm = cfg->realm ? cfg->realm : "";
    out->n = 0;
    if (cap)
        user[0] = '\0';
    for (size_t i = 0; i < cfg->user.n; i++) {
        const char *name = cfg->user.v[i];
        const char *colon = strchr(name, ':');
        uint8_t h[STUN_USERHASH_LEN];
        if (!colon)
            continue;
        size_t nlen = (size_t)(colon - name);
        stun_auth_userhash(name, nlen, realm, strlen(realm), h);
        if (memcmp(h, hash, sizeof(h)) != 0)
            continue;
        if (nlen + 1 > cap)
            return CREDS_UNKNOWN;
        memcpy(user, name, nlen);
        user[nlen] = '\0';
        return lookup(env, who, user, nlen, now_ms, unix_now, out, cb, arg);
    }
    return CREDS_UNKNOWN;
}

static void cancel(void *env, void *arg) { (void)env, (void)arg; }

void static_creds_ops(const cfg_t *cfg, creds_ops_t *out)
{
    out->lookup = lookup;
    out->lookup_userhash = lookup_userhash;
    out->cancel = cancel;
    out->env = (void *)(uintptr_t)cfg;
}
