/* admin_redis.c - the admin API's own Redis connection: synchronous hiredis, one per process,
 * behind a mutex, with short timeouts.
 *
 * The workers talk to Redis asynchronously on their loops (creds_redis.c); the admin threads may
 * block, so they use hiredis' plain API with a connect and a reply timeout of
 * ADMIN_REDIS_TIMEOUT_MS, reconnecting on the next request after any failure. The settings are the
 * workers' (`redis-userdb`, through creds_shared_redis), AUTH (with an ACL user when given) and
 * SELECT first. Every command goes as argv (redisAppendCommandArgv): user input never reaches a
 * format string (DESIGN.md). Requests queue on the mutex; each one holds it for at most a few
 * round trips.
 *
 * With Redis Sentinel (redis_sentinel.h) each new connection starts by asking the sentinels for
 * the master and checks ROLE on it after AUTH and SELECT, so a server that answers as a replica is
 * never written to. A pipeline that meets READONLY (the master was demoted under us), or whose
 * reused connection turns out to be dead (the master was killed since the last request), is run
 * once more on a fresh connection to whatever the sentinels name now: the admin's commands are
 * idempotent writes (SET, DEL, SADD, SREM, MULTI/EXEC of those), and a READONLY pipeline wrote
 * nothing. A timeout is not retried (it would double the wait of a request that already failed).
 */
#include "admin_int.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

#include <hiredis/hiredis.h>

#include "creds.h"
#include "log.h"
#include "redis_sentinel.h"

struct admin_redis {
    uv_mutex_t lock;
    redisContext *c;
    creds_redis_settings_t cfg; /* strings borrowed from the creds_shared_t, which outlives us */
    int sentinel_next;          /* with Sentinel: the sentinel to ask first */
    char where[300];            /* host:port of c (a host name up to 255 bytes), for messages */
};

admin_redis_t *admin_redis_new(const creds_shared_t *creds)
{
    creds_redis_settings_t cfg;
    if (!creds || creds_shared_redis(creds, &cfg) != 0)
        return NULL;
    admin_redis_t *rd = calloc(1, sizeof(*rd));
    if (!rd)
        return NULL;
    rd->cfg = cfg;
    uv_mutex_init(&rd->lock);
    return rd;
}

void admin_redis_free(admin_redis_t *rd)
{
    if (!rd)
        return;
    if (rd->c)
        redisFree(rd->c);
    uv_mutex_destroy(&rd->lock);
    free(rd);
}

void admin_redis_free_reply(redisReply *rep)
{
    if (rep)
        freeReplyObject(rep);
}

static void drop(admin_redis_t *rd)
{
    if (rd->c)
        redisFree(rd->c);
    rd->c = NULL;
}

/* One command on the raw context; NULL (and err) on failure or an error reply. */
static redisReply *setup_cmd(admin_redis_t *rd, int argc, const char **argv, const char *what,
                             char *err, size_t errlen)
{
    redisReply *rep = redisCommandArgv(rd->c, argc, argv, NULL);
    if (!rep) {
        snprintf(err, errlen, "redis %s: %s", what, rd->c->errstr[0] ? rd->c->errstr : "failed");
        return NULL;
    }
    if (rep->type == REDIS_REPLY_ERROR) {
        snprintf(err, errlen, "redis %s: %.200s", what, rep->str);
        freeReplyObject(rep);
        return NULL;
    }
    return rep;
}

/* With Sentinel: the connection must be to the master (see the top of the file). */
static int check_role(admin_redis_t *rd, char *err, size_t errlen)
{
    const char *av[1] = {"ROLE"};
    redisReply *rep = redisCommandArgv(rd->c, 1, av, NULL);
    if (!rep) {
        snprintf(err, errlen, "redis ROLE: %s", rd->c->errstr[0] ? rd->c->errstr : "failed");
        return -1;
    }
    /* An ACL that refuses ROLE: take the sentinels at their word. */
    int ok = rep->type == REDIS_REPLY_ERROR || redis_sentinel_role_is_master(rep);
    freeReplyObject(rep);
    if (!ok)
        snprintf(err, errlen,
                 "redis at %s is a replica, not the master (the sentinels have not "
                 "caught up yet)",
                 rd->where);
    return ok ? 0 : -1;
}

/* 1 when ensure made a new connection, 0 when it kept the one it had, -1 on failure. */
static int ensure(admin_redis_t *rd, char *err, size_t errlen)
{
    if (rd->c && !rd->c->err)
        return 0;
    drop(rd);
    struct timeval tv = {ADMIN_REDIS_TIMEOUT_MS / 1000, (ADMIN_REDIS_TIMEOUT_MS % 1000) * 1000};
    int ms = rd->cfg.connect_timeout_ms;
    if (ms > 0 && ms < ADMIN_REDIS_TIMEOUT_MS) {
        tv.tv_sec = ms / 1000;
        tv.tv_usec = (ms % 1000) * 1000;
    }
    redis_sentinel_addr_t m;
    const char *host = rd->cfg.host;
    int port = rd->cfg.port;
    if (rd->cfg.sentinel) {
        char why[256];
        int tms = (int)(tv.tv_sec * 1000 + tv.tv_usec / 1000);
        if (redis_sentinel_ask_sync(rd->cfg.sentinel, tms, &rd->sentinel_next, &m, why,
                                    sizeof(why)) != 0) {
            snprintf(err, errlen, "cannot find the Redis master '%s': %s", rd->cfg.sentinel->master,
                     why);
            return -1;
        }
        host = m.ip;
        port = m.port;
    }
    bool v6 = strchr(host, ':') != NULL;
    snprintf(rd->where, sizeof(rd->where), "%s%s%s:%d", v6 ? "[" : "", host, v6 ? "]" : "", port);
    rd->c = redisConnectWithTimeout(host, port, tv);
    if (!rd->c || rd->c->err) {
        snprintf(err, errlen, "cannot reach Redis at %s: %s", rd->where,
                 rd->c ? rd->c->errstr : "out of memory");
        drop(rd);
        return -1;
    }
    tv.tv_sec = ADMIN_REDIS_TIMEOUT_MS / 1000;
    tv.tv_usec = (ADMIN_REDIS_TIMEOUT_MS % 1000) * 1000;
    redisSetTimeout(rd->c, tv);
    redisReply *rep;
    if (rd->cfg.password) {
        const char *av[3] = {"AUTH", rd->cfg.user ? rd->cfg.user : rd->cfg.password,
                             rd->cfg.password};
        if (!(rep = setup_cmd(rd, rd->cfg.user ? 3 : 2, av, "AUTH", err, errlen))) {
            drop(rd);
            return -1;
        }
        freeReplyObject(rep);
    }
    if (rd->cfg.db != 0) {
        char db[16];
        snprintf(db, sizeof(db), "%d", rd->cfg.db);
        const char *av[2] = {"SELECT", db};
        if (!(rep = setup_cmd(rd, 2, av, "SELECT", err, errlen))) {
            drop(rd);
            return -1;
        }
        freeReplyObject(rep);
    }
    if (rd->cfg.sentinel && check_role(rd, err, errlen) != 0) {
        drop(rd);
        return -1;
    }
    return 1;
}

static bool is_readonly(const redisReply *rep)
{
    return rep->type == REDIS_REPLY_ERROR && rep->str && strncmp(rep->str, "READONLY", 8) == 0;
}

/* One attempt under the lock. On -1, *again says whether a fresh connection may succeed where
 * this one failed (Sentinel only: see the top of the file). */
static int run_once(admin_redis_t *rd, int n, const int argc[], const char **const argv[],
                    const size_t *const argvlen[], redisReply **out, bool *again, char *err,
                    size_t errlen)
{
    int got = 0;
    int fresh = ensure(rd, err, errlen);
    *again = false;
    if (fresh < 0)
        goto fail;
    for (int i = 0; i < n; i++)
        if (redisAppendCommandArgv(rd->c, argc[i], argv[i], argvlen[i]) != REDIS_OK) {
            snprintf(err, errlen, "redis: out of memory");
            goto fail;
        }
    for (got = 0; got < n; got++) {
        void *rep = NULL;
        if (redisGetReply(rd->c, &rep) != REDIS_OK || !rep) {
            int e = errno;
            bool timeout = rd->c->err == REDIS_ERR_IO &&
                           (e == EAGAIN || e == EWOULDBLOCK || e == ETIMEDOUT || e == EINTR);
            *again = rd->cfg.sentinel && !fresh && !timeout &&
                     (rd->c->err == REDIS_ERR_EOF || rd->c->err == REDIS_ERR_IO);
            snprintf(err, errlen, "redis at %s: %s", rd->where,
                     rd->c->errstr[0] ? rd->c->errstr : "no reply");
            goto fail;
        }
        out[got] = rep;
    }
    for (int i = 0; rd->cfg.sentinel && i < n; i++)
        if (is_readonly(out[i])) {
            snprintf(err, errlen, "redis at %s: %.160s", rd->where, out[i]->str);
            *again = true;
            goto fail;
        }
    return 0;
fail:
    for (int i = 0; i < got; i++)
        freeReplyObject(out[i]);
    drop(rd); /* a pipeline cut in the middle leaves replies we would misread later */
    return -1;
}

int admin_redis_run(admin_redis_t *rd, int n, const int argc[], const char **const argv[],
                    const size_t *const argvlen[], redisReply **out, char *err, size_t errlen)
{
    bool again;
    uv_mutex_lock(&rd->lock);
    int rc = run_once(rd, n, argc, argv, argvlen, out, &again, err, errlen);
    if (rc != 0 && again) {
        LOGI("admin_redis_master", "admin: %s; asking the sentinels for the master again", err);
        rc = run_once(rd, n, argc, argv, argvlen, out, &again, err, errlen);
    }
    uv_mutex_unlock(&rd->lock);
    return rc;
}

redisReply *admin_redis_cmd(admin_redis_t *rd, int argc, const char **argv, const size_t *argvlen,
                            char *err, size_t errlen)
{
    redisReply *rep = NULL;
    const char **const av[1] = {argv};
    const size_t *const al[1] = {argvlen};
    if (admin_redis_run(rd, 1, &argc, av, al, &rep, err, errlen) != 0)
        return NULL;
    return rep;
}

long admin_redis_ping(admin_redis_t *rd)
{
    char err[256];
    const char *av[1] = {"PING"};
    size_t al[1] = {4};
    uint64_t t0 = uv_hrtime();
    redisReply *rep = admin_redis_cmd(rd, 1, av, al, err, sizeof(err));
    if (!rep)
        return -1;
    long us = (long)((uv_hrtime() - t0) / 1000);
    int ok = rep->type == REDIS_REPLY_STATUS;
    freeReplyObject(rep);
    return ok ? us : -1;
}
