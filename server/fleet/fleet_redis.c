/* fleet_redis.c - the fleet's synchronous connections to the Redis master of `redis-userdb`: ask
 * the sentinels when there are some (redis_sentinel_ask_sync, then ROLE to be sure the answer is
 * the master), connect with a timeout, AUTH and SELECT; and the one-off agreement on the nonce
 * secret at start (SET NX, then GET). Used by the fleet thread and, before the server starts, by
 * the main thread; never on a worker's loop.
 */
#include "fleet_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/hiredis.h>

#include "rand.h"

static redisReply *cmd(redisContext *c, int argc, const char **argv, char *err, size_t errlen,
                       const char *what)
{
    redisReply *rep = redisCommandArgv(c, argc, argv, NULL);
    if (!rep) {
        snprintf(err, errlen, "%s: %s", what, c->errstr[0] ? c->errstr : "no answer");
        return NULL;
    }
    if (rep->type == REDIS_REPLY_ERROR) {
        snprintf(err, errlen, "%s: %.200s", what, rep->str);
        freeReplyObject(rep);
        return NULL;
    }
    return rep;
}

redisContext *fleet_redis_connect(const creds_redis_cfg_t *rc, int timeout_ms, int *next, char *err,
                                  size_t errlen)
{
    char host[REDIS_SENTINEL_IP_MAX];
    int port;
    if (rc->sentinel.n > 0) {
        redis_sentinel_addr_t a;
        if (redis_sentinel_ask_sync(&rc->sentinel, timeout_ms, next, &a, err, errlen) != 0)
            return NULL;
        snprintf(host, sizeof(host), "%s", a.ip);
        port = a.port;
    } else {
        snprintf(host, sizeof(host), "%s", rc->host);
        port = rc->port;
    }
    int ms = rc->connect_timeout_ms > 0 && rc->connect_timeout_ms < timeout_ms
                 ? rc->connect_timeout_ms
                 : timeout_ms;
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
    redisContext *c = redisConnectWithTimeout(host, port, tv);
    if (!c || c->err) {
        snprintf(err, errlen, "connect %s:%d: %s", host, port, c ? c->errstr : "out of memory");
        redisFree(c);
        return NULL;
    }
    redisSetTimeout(c, tv);
    redisReply *rep;
    if (rc->password) {
        const char *argv[3] = {"AUTH", rc->user ? rc->user : rc->password, rc->password};
        if (!(rep = cmd(c, rc->user ? 3 : 2, argv, err, errlen, "AUTH")))
            goto fail;
        freeReplyObject(rep);
    }
    if (rc->db) {
        char db[16];
        snprintf(db, sizeof(db), "%d", rc->db);
        const char *argv[2] = {"SELECT", db};
        if (!(rep = cmd(c, 2, argv, err, errlen, "SELECT")))
            goto fail;
        freeReplyObject(rep);
    }
    if (rc->sentinel.n > 0) {
        /* A sentinel may still name a demoted master for a moment. */
        const char *argv[1] = {"ROLE"};
        if (!(rep = cmd(c, 1, argv, err, errlen, "ROLE")))
            goto fail;
        int master = redis_sentinel_role_is_master(rep);
        freeReplyObject(rep);
        if (!master) {
            snprintf(err, errlen, "%s:%d is not the master (yet)", host, port);
            goto fail;
        }
    }
    return c;
fail:
    redisFree(c);
    return NULL;
}

static int hex_ok(const char *s, size_t n)
{
    if (n != 64)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
            return 0;
    return 1;
}

int fleet_nonce_agree(const cfg_t *cfg, int timeout_ms, char out[65], char *err, size_t errlen)
{
    if (!cfg->redis_userdb || cfg->nonce_secret)
        return 1;
    creds_redis_cfg_t rc;
    if (creds_redis_cfg_parse(cfg->redis_userdb, &rc, err, errlen) != 0)
        return -1;
    int next = 0;
    /* Each connect and reply is bounded; a Sentinel lookup tries each sentinel once. */
    redisContext *c = fleet_redis_connect(&rc, rc.sentinel.n > 0 ? timeout_ms / 2 : timeout_ms,
                                          &next, err, errlen);
    int ret = -1;
    if (c) {
        uint8_t b[32];
        char hex[65];
        rand_bytes(b, sizeof(b));
        for (size_t i = 0; i < sizeof(b); i++)
            snprintf(hex + 2 * i, 3, "%02x", b[i]);
        const char *set[5] = {"SET", FLEET_KEY_NONCE, hex, "NX"};
        const char *get[2] = {"GET", FLEET_KEY_NONCE};
        redisReply *rep = cmd(c, 4, set, err, errlen, "SET NX");
        if (rep) {
            freeReplyObject(rep);
            rep = cmd(c, 2, get, err, errlen, "GET");
        }
        if (rep && rep->type == REDIS_REPLY_STRING && hex_ok(rep->str, rep->len)) {
            memcpy(out, rep->str, 64);
            out[64] = 0;
            ret = 0;
        } else if (rep) {
            snprintf(err, errlen, "%s does not hold 64 hex digits", FLEET_KEY_NONCE);
        }
        if (rep)
            freeReplyObject(rep);
        redisFree(c);
    }
    creds_redis_cfg_free(&rc);
    return ret;
}
