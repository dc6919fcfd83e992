/* creds_redis_keys.c - the key layout the credential store reads in Redis: coturn's
 * turn/realm/<realm>/user/<user>/key (hex MD5 key, RFC 8489 §9.2) and .../secret (TURN REST
 * secrets), with our key-sha256, revoked/<user> and userhash/<hex> (RFC 8489 §14.4) beside it; each
 * lookup one pipeline on the worker's connection (creds_redis.c). A username reaches Redis only as
 * one argv element; what comes back is checked before it is used.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#include "creds_redis_int.h"
#include "stun.h"
#include "stun_auth.h"

typedef struct {
    creds_redis_t *r;
    bool with_secrets;
    union {
        creds_redis_user_cb user;
        creds_redis_alias_cb alias;
    } cb;
    void *arg;
} fetch_t;

static void warn_data(creds_redis_t *r, const char *what)
{
    if (log_limit_take(&r->data_lim, uv_now(r->loop), 0.2, 5))
        LOGW("redis_data", "redis %s: %s", r->target, what);
}

static bool cmd_key(cmd_t *cmd, const char *verb, const char *key, int n)
{
    if (n < 0 || n >= KEYNAME_MAX)
        return false;
    cmd->argc = 2;
    cmd->argv[0] = verb;
    cmd->len[0] = strlen(verb);
    cmd->argv[1] = key;
    cmd->len[1] = (size_t)n;
    return true;
}

/* A GET of a hex key: absent, or exactly 2n hex digits (anything else is ignored, loudly: coturn
 * stores lower-case hex of the 16-byte MD5 key). */
static int get_hex(creds_redis_t *r, const redisReply *rep, uint8_t *out, size_t n, bool *has)
{
    *has = false;
    if (rep->type == REDIS_REPLY_NIL)
        return 0;
    if (rep->type != REDIS_REPLY_STRING)
        return -1;
    if (rep->len == 2 * n && stun_auth_hex_decode(rep->str, rep->len, out, n) == (int)n) {
        *has = true;
        return 0;
    }
    memset(out, 0, n);
    warn_data(r, n == 16 ? "a user key is not 32 hex digits; ignored"
                         : "a user key-sha256 is not 64 hex digits; ignored");
    return 0;
}

static int get_secrets(creds_redis_t *r, const redisReply *rep, creds_redis_user_t *u)
{
    if (rep->type != REDIS_REPLY_ARRAY)
        return -1;
    u->has_secrets = true;
    for (size_t i = 0; i < rep->elements; i++) {
        const redisReply *m = rep->element[i];
        /* An empty HMAC key would let anyone mint credentials. */
        if (m->type != REDIS_REPLY_STRING || m->len == 0) {
            warn_data(r, "an empty or non-string REST secret; ignored");
        } else if (u->nsecrets == CREDS_REDIS_MAX_SECRETS) {
            warn_data(r, "more than 16 REST secrets in the realm; the rest are ignored");
            break;
        } else {
            u->secret[u->nsecrets] = m->str;
            u->secret_len[u->nsecrets++] = m->len;
        }
    }
    return 0;
}

static void on_user_batch(void *arg, redisReply *const *rep, int n)
{
    fetch_t *f = arg;
    creds_redis_user_t u;
    const creds_redis_user_t *res = NULL;

    if (n < 0) {
        free(f);
        return;
    }
    memset(&u, 0, sizeof(u));
    if (rep && n >= 3 && get_hex(f->r, rep[0], u.key.md5, 16, &u.key.has_md5) == 0 &&
        get_hex(f->r, rep[1], u.key.sha256, 32, &u.key.has_sha256) == 0 &&
        rep[2]->type == REDIS_REPLY_INTEGER &&
        (!f->with_secrets || (n >= 4 && get_secrets(f->r, rep[3], &u) == 0))) {
        u.revoked = rep[2]->integer > 0;
        res = &u;
    }
    f->cb.user(f->arg, res);
    OPENSSL_cleanse(&u.key, sizeof(u.key));
    free(f);
}

int creds_redis_fetch_user(creds_redis_t *r, const char *realm, const char *name, bool with_secrets,
                           creds_redis_user_cb cb, void *arg)
{
    char kmd5[KEYNAME_MAX], ksha[KEYNAME_MAX], krev[KEYNAME_MAX], ksec[KEYNAME_MAX];
    cmd_t cmd[4];
    int n = 3;

    /* The name is an argument of snprintf, never its format, and then one whole argv element:
     * no quoting and no protocol injection, whatever bytes it holds. */
    if (strlen(name) > STUN_USERNAME_MAX ||
        !cmd_key(&cmd[0], "GET", kmd5,
                 snprintf(kmd5, sizeof(kmd5), CREDS_REDIS_KEY_MD5, realm, name)) ||
        !cmd_key(&cmd[1], "GET", ksha,
                 snprintf(ksha, sizeof(ksha), CREDS_REDIS_KEY_SHA256, realm, name)) ||
        !cmd_key(&cmd[2], "EXISTS", krev,
                 snprintf(krev, sizeof(krev), CREDS_REDIS_REVOKED, realm, name)))
        return -1;
    if (with_secrets && !cmd_key(&cmd[n++], "SMEMBERS", ksec,
                                 snprintf(ksec, sizeof(ksec), CREDS_REDIS_SECRETS, realm)))
        return -1;
    fetch_t *f = calloc(1, sizeof(*f));
    if (!f)
        return -1;
    f->r = r;
    f->with_secrets = with_secrets;
    f->cb.user = cb;
    f->arg = arg;
    if (creds_redis_pipeline(r, cmd, n, on_user_batch, f) != 0) {
        free(f);
        return -1;
    }
    return 0;
}

static void on_alias_batch(void *arg, redisReply *const *rep, int n)
{
    fetch_t *f = arg;
    const redisReply *a = rep && n == 1 ? rep[0] : NULL;

    if (n < 0)
        ; /* closing: call nobody */
    else if (!a || (a->type != REDIS_REPLY_NIL && a->type != REDIS_REPLY_STRING)) {
        f->cb.alias(f->arg, 1, NULL, 0);
    } else if (a->type == REDIS_REPLY_NIL) {
        f->cb.alias(f->arg, 0, NULL, 0);
    } else if (a->len == 0 || a->len > STUN_USERNAME_MAX || memchr(a->str, '\0', a->len)) {
        warn_data(f->r, "a userhash entry names an invalid username; ignored");
        f->cb.alias(f->arg, 0, NULL, 0);
    } else {
        f->cb.alias(f->arg, 0, a->str, a->len);
    }
    free(f);
}

int creds_redis_fetch_alias(creds_redis_t *r, const char *realm, const uint8_t hash[32],
                            creds_redis_alias_cb cb, void *arg)
{
    char hex[65], key[KEYNAME_MAX];
    cmd_t cmd;

    stun_auth_hex_encode(hash, 32, hex);
    if (!cmd_key(&cmd, "GET", key, snprintf(key, sizeof(key), CREDS_REDIS_USERHASH, realm, hex)))
        return -1;
    fetch_t *f = calloc(1, sizeof(*f));
    if (!f)
        return -1;
    f->r = r;
    f->cb.alias = cb;
    f->arg = arg;
    if (creds_redis_pipeline(r, &cmd, 1, on_alias_batch, f) != 0) {
        free(f);
        return -1;
    }
    return 0;
}
