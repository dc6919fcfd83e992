/* creds_shared.c - the read-only half of the credential store, built once from the config: static
 * users (MD5 and SHA-256 long-term keys of name:realm:SASLprep(password), RFC 8489 §9.2 and RFC
 * 5389 §15.4, or coturn's "name:0xKEY" form, and their USERHASH, RFC 8489 §14.4), the TURN REST
 * shared secrets (draft-uberti-behave-turn-rest-00, coturn's use-auth-secret) and the parsed
 * redis-userdb settings. Every worker reads it without locks once it is built.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#include "creds_int.h"
#include "errbuf.h"
#include "log.h"
#include "turn_auth.h"

void creds_secret_clear(secret_t *s)
{
    if (s->s) {
        OPENSSL_cleanse(s->s, s->len);
        free(s->s);
    }
    s->s = NULL;
    s->len = 0;
}

/* ---- static users ---- */

static int name_cmp(const char *a, size_t alen, const char *b, size_t blen)
{
    int r = memcmp(a, b, alen < blen ? alen : blen);
    return r ? r : (alen > blen) - (alen < blen);
}

static int suser_cmp(const void *a, const void *b)
{
    const suser_t *x = a, *y = b;
    return name_cmp(x->name, x->len, y->name, y->len);
}

static int hash_cmp(const void *a, const void *b)
{
    const suser_t *const *x = a, *const *y = b;
    return memcmp((*x)->hash, (*y)->hash, STUN_USERHASH_LEN);
}

const suser_t *creds_static_find(const creds_shared_t *sh, const char *u, size_t ul)
{
    size_t lo = 0, hi = sh->nusers;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int r = name_cmp(u, ul, sh->users[mid].name, sh->users[mid].len);
        if (r == 0)
            return &sh->users[mid];
        if (r < 0)
            hi = mid;
        else
            lo = mid + 1;
    }
    return NULL;
}

const suser_t *creds_static_find_hash(const creds_shared_t *sh, const uint8_t *hash)
{
    size_t lo = 0, hi = sh->nusers;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int r = memcmp(hash, sh->by_hash[mid]->hash, STUN_USERHASH_LEN);
        if (r == 0)
            return sh->by_hash[mid];
        if (r < 0)
            hi = mid;
        else
            lo = mid + 1;
    }
    return NULL;
}

/* Long-term key of a password (RFC 5389 §15.4 applies SASLprep to it; a password SASLprep
 * rejects is used as written, which is what a client that skips SASLprep computes). */
static int password_key(const creds_shared_t *sh, suser_t *u, const char *pw, size_t plen)
{
    size_t cap = plen * 18 + 16; /* NFKC grows a character at most 18-fold */
    char *prep = malloc(cap);
    if (!prep)
        return -1;
    int n = stun_auth_saslprep(pw, plen, prep, cap);
    const char *p = n >= 0 ? prep : pw;
    size_t pl = n >= 0 ? (size_t)n : plen;
    stun_auth_key_md5(u->name, u->len, sh->realm, sh->rlen, p, pl, u->key.md5);
    stun_auth_key_sha256(u->name, u->len, sh->realm, sh->rlen, p, pl, u->key.sha256);
    u->key.has_md5 = u->key.has_sha256 = true;
    OPENSSL_cleanse(prep, cap);
    free(prep);
    return 0;
}

/* "name:password", or "name:0x<32 hex>" (coturn's stored MD5 key: no SHA-256 key can be made). */
static int parse_user(creds_shared_t *sh, const cfg_t *cfg, size_t i, char *err, size_t errlen)
{
    const char *line = cfg->user.v[i];
    const char *colon = strchr(line, ':');
    if (!colon)
        return cfg_fail(cfg, "user", i, err, errlen, "missing ':' (NAME:PASSWORD)");
    size_t nlen = (size_t)(colon - line);
    const char *pw = colon + 1;
    size_t plen = strlen(pw);
    if (nlen == 0 || nlen > STUN_USERNAME_MAX)
        return cfg_fail(cfg, "user", i, err, errlen, "the name must be 1 to %d bytes",
                        STUN_USERNAME_MAX);
    if (plen == 0)
        return cfg_fail(cfg, "user", i, err, errlen, "empty password");
    suser_t *u = &sh->users[sh->nusers];
    if (!(u->name = strndup(line, nlen)))
        return err_set(err, errlen, "out of memory");
    u->len = nlen;
    sh->nusers++;
    /* As coturn: "0x" and at least 32 more characters is a key, anything shorter a password. */
    if (plen >= 34 && pw[0] == '0' && pw[1] == 'x') {
        if (plen != 34 || stun_auth_hex_decode(pw + 2, 32, u->key.md5, 16) != 16)
            return cfg_fail(cfg, "user", i, err, errlen, "a 0x key must be 32 hex digits (MD5)");
        u->key.has_md5 = true;
    } else if (password_key(sh, u, pw, plen) != 0) {
        return err_set(err, errlen, "out of memory");
    }
    stun_auth_userhash(u->name, nlen, sh->realm, sh->rlen, u->hash);
    return 0;
}

/* The second value of `user` that names `u` (for the message about it). */
static size_t second_definition(const cfg_t *cfg, const suser_t *u)
{
    int seen = 0;
    for (size_t i = 0; i < cfg->user.n; i++) {
        const char *v = cfg->user.v[i];
        if (strncmp(v, u->name, u->len) == 0 && v[u->len] == ':' && seen++)
            return i;
    }
    return 0;
}

static int parse_users(creds_shared_t *sh, const cfg_t *cfg, char *err, size_t errlen)
{
    const cfg_list_t *list = &cfg->user;
    if (list->n == 0)
        return 0;
    sh->users = calloc(list->n, sizeof(*sh->users));
    sh->by_hash = calloc(list->n, sizeof(*sh->by_hash));
    if (!sh->users || !sh->by_hash)
        return err_set(err, errlen, "out of memory");
    for (size_t i = 0; i < list->n; i++)
        if (parse_user(sh, cfg, i, err, errlen) != 0)
            return -1;
    qsort(sh->users, sh->nusers, sizeof(*sh->users), suser_cmp);
    for (size_t i = 0; i < sh->nusers; i++) {
        if (i > 0 && suser_cmp(&sh->users[i - 1], &sh->users[i]) == 0)
            return cfg_fail(cfg, "user", second_definition(cfg, &sh->users[i]), err, errlen,
                            "'%.*s' is defined twice",
                            (int)(sh->users[i].len > 64 ? 64 : sh->users[i].len),
                            sh->users[i].name);
        sh->by_hash[i] = &sh->users[i];
    }
    qsort(sh->by_hash, sh->nusers, sizeof(*sh->by_hash), hash_cmp);
    return 0;
}

static int parse_secrets(creds_shared_t *sh, const cfg_t *cfg, char *err, size_t errlen)
{
    const cfg_list_t *list = &cfg->static_auth_secret;
    if (list->n == 0)
        return 0;
    if (!(sh->secrets = calloc(list->n, sizeof(*sh->secrets))))
        return err_set(err, errlen, "out of memory");
    for (size_t i = 0; i < list->n; i++) {
        /* An empty HMAC key would let anyone mint credentials. */
        if (!list->v[i][0])
            return cfg_fail(cfg, "static-auth-secret", i, err, errlen, "empty secret");
        if (!(sh->secrets[i].s = strdup(list->v[i])))
            return err_set(err, errlen, "out of memory");
        sh->secrets[i].len = strlen(list->v[i]);
        sh->nsecrets++;
    }
    return 0;
}

int creds_shared_new(const cfg_t *cfg, creds_shared_t **out, char *err, size_t errlen)
{
    creds_shared_t *sh = calloc(1, sizeof(*sh));
    *out = NULL;
    if (!sh || !(sh->realm = strdup(cfg->realm ? cfg->realm : "")))
        goto oom;
    sh->rlen = strlen(sh->realm);
    bool any = cfg->user.n || cfg->use_auth_secret || (cfg->redis_userdb && *cfg->redis_userdb);
    if (any && (sh->rlen == 0 || sh->rlen > REALM_MAX)) {
        cfg_fail(cfg, "realm", 0, err, errlen, "must be 1 to %d bytes for long-term credentials",
                 REALM_MAX);
        goto bad;
    }
    if (parse_users(sh, cfg, err, errlen) != 0)
        goto bad;
    sh->rest = cfg->use_auth_secret;
    if (!sh->rest && cfg->static_auth_secret.n)
        LOGW("config", "'static-auth-secret' is ignored without 'use-auth-secret'");
    if (sh->rest && parse_secrets(sh, cfg, err, errlen) != 0)
        goto bad;
    if (cfg->redis_userdb && *cfg->redis_userdb) {
        char why[256];
        if (creds_redis_cfg_parse(cfg->redis_userdb, &sh->redis, why, sizeof(why)) != 0) {
            /* Its messages start with "'redis-userdb': " and never show the password. */
            const char *p = strncmp(why, "'redis-userdb': ", 16) == 0 ? why + 16 : why;
            cfg_fail(cfg, "redis-userdb", 0, err, errlen, "%s", p);
            goto bad;
        }
        sh->has_redis = true;
    }
    /* The usage ledger's own database (core/usage_writer.c connects to it) takes the same forms:
     * checked here too, so a start, --check-config and a reload refuse it with its key. */
    if (cfg->redis_statsdb && *cfg->redis_statsdb) {
        char why[256];
        creds_redis_cfg_t stats_db;
        if (creds_redis_cfg_parse(cfg->redis_statsdb, &stats_db, why, sizeof(why)) != 0) {
            const char *p = strncmp(why, "'redis-userdb': ", 16) == 0 ? why + 16 : why;
            cfg_fail(cfg, "redis-statsdb", 0, err, errlen, "%s", p);
            goto bad;
        }
        creds_redis_cfg_free(&stats_db);
    }
    if (sh->rest && !sh->nsecrets && !sh->has_redis) {
        cfg_fail(cfg, "use-auth-secret", 0, err, errlen,
                 "needs 'static-auth-secret' (the REST API shared secret) or 'redis-userdb'");
        goto bad;
    }
    *out = sh;
    return 0;
oom:
    err_set(err, errlen, "out of memory");
bad:
    creds_shared_free(sh);
    return -1;
}

void creds_shared_free(creds_shared_t *s)
{
    if (!s)
        return;
    for (size_t i = 0; i < s->nusers; i++) {
        OPENSSL_cleanse(&s->users[i].key, sizeof(s->users[i].key));
        free(s->users[i].name);
    }
    for (size_t i = 0; i < s->nsecrets; i++)
        creds_secret_clear(&s->secrets[i]);
    if (s->has_redis)
        creds_redis_cfg_free(&s->redis);
    free(s->users);
    free(s->by_hash);
    free(s->secrets);
    free(s->realm);
    free(s);
}

int creds_shared_any(const creds_shared_t *s)
{
    return s->nusers > 0 || (s->rest && s->nsecrets > 0) || s->has_redis;
}

int creds_shared_redis(const creds_shared_t *s, creds_redis_settings_t *out)
{
    memset(out, 0, sizeof(*out));
    if (!s->has_redis)
        return -1;
    out->host = s->redis.host;
    out->port = s->redis.port;
    out->db = s->redis.db;
    out->user = s->redis.user;
    out->password = s->redis.password;
    out->connect_timeout_ms = s->redis.connect_timeout_ms;
    out->sentinel = s->redis.sentinel.n > 0 ? &s->redis.sentinel : NULL;
    return 0;
}
