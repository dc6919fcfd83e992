/* redis_sentinel.c - the Redis master as Redis Sentinel names it (redis_sentinel.h): the answers'
 * formats, the admin API's blocking question, and one worker's asynchronous question and
 * +switch-master subscription on its libuv loop.
 *
 * The asynchronous side uses hiredis' async API like creds_redis.c and for the same reasons has its
 * own watchdog: hiredis 0.14 has no async timeouts, and its libuv adapter drops the error status of
 * a refused connect, so a connect in progress is checked (SO_ERROR) every 50 ms and given up after
 * the timeout. A context is only ever freed outside its own callbacks (from a timer or close);
 * inside them it is let go with redisAsyncDisconnect. Every callback checks that its context is
 * still the one we hold, so a context being torn down never reaches the owner.
 */
#include "redis_sentinel.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>

#include <hiredis/adapters/libuv.h>
#include <hiredis/async.h>
#include <hiredis/hiredis.h>
#include <openssl/crypto.h>

#include "errbuf.h"
#include "log.h"
#include "sockaddr_util.h"

#define CONNECT_POLL_MS 50
#define SUB_BACKOFF_MIN_MS 250
#define SUB_BACKOFF_MAX_MS 5000 /* the subscription is what makes a failover quick: keep trying */
#define WHY_MAX 200

static const char SWITCH_CHANNEL[] = "+switch-master";

/* ---- pure helpers ---- */

void redis_sentinel_cfg_free(redis_sentinel_cfg_t *cfg)
{
    if (cfg->password)
        OPENSSL_cleanse(cfg->password, strlen(cfg->password));
    free(cfg->password);
    free(cfg->master);
    memset(cfg, 0, sizeof(*cfg));
}

const char *redis_sentinel_addr_str(const redis_sentinel_addr_t *a, char *buf, size_t cap)
{
    bool v6 = strchr(a->ip, ':') != NULL;
    snprintf(buf, cap, "%s%s%s:%d", v6 ? "[" : "", a->ip, v6 ? "]" : "", a->port);
    return buf;
}

/* An IP literal and a port as the sentinels send them. 0 or -1. */
static int set_addr(const char *ip, size_t iplen, const char *port, size_t plen,
                    redis_sentinel_addr_t *out)
{
    char buf[REDIS_SENTINEL_IP_MAX];
    unsigned char bin[sizeof(struct in6_addr)];
    uint16_t p;

    if (iplen == 0 || iplen >= sizeof(buf) || sa_parse_port(port, plen, &p) != 0)
        return -1;
    memcpy(buf, ip, iplen);
    buf[iplen] = '\0';
    if (inet_pton(AF_INET, buf, bin) != 1 && inet_pton(AF_INET6, buf, bin) != 1)
        return -1;
    memcpy(out->ip, buf, iplen + 1);
    out->port = p;
    return 0;
}

int redis_sentinel_parse_addr(const redisReply *rep, redis_sentinel_addr_t *out)
{
    if (rep->type == REDIS_REPLY_NIL)
        return 1;
    if (rep->type != REDIS_REPLY_ARRAY || rep->elements != 2 ||
        rep->element[0]->type != REDIS_REPLY_STRING || rep->element[1]->type != REDIS_REPLY_STRING)
        return -1;
    return set_addr(rep->element[0]->str, rep->element[0]->len, rep->element[1]->str,
                    rep->element[1]->len, out);
}

int redis_sentinel_parse_switch(const char *msg, size_t len, const char *master,
                                redis_sentinel_addr_t *out)
{
    const char *tok[5];
    size_t tlen[5];
    size_t i = 0;
    int n = 0;

    while (i < len) {
        if (msg[i] == ' ') {
            i++;
            continue;
        }
        if (n == 5)
            return -1;
        tok[n] = msg + i;
        while (i < len && msg[i] != ' ')
            i++;
        tlen[n] = (size_t)(msg + i - tok[n]);
        n++;
    }
    if (n != 5)
        return -1;
    redis_sentinel_addr_t a;
    if (set_addr(tok[3], tlen[3], tok[4], tlen[4], &a) != 0)
        return -1;
    if (tlen[0] != strlen(master) || memcmp(tok[0], master, tlen[0]) != 0)
        return 1;
    *out = a;
    return 0;
}

int redis_sentinel_role_is_master(const redisReply *rep)
{
    return rep && rep->type == REDIS_REPLY_ARRAY && rep->elements >= 1 &&
           rep->element[0]->type == REDIS_REPLY_STRING && rep->element[0]->len == 6 &&
           memcmp(rep->element[0]->str, "master", 6) == 0;
}

/* ---- synchronous ---- */

static int sync_one(redisContext *c, const redis_sentinel_cfg_t *cfg, const char *where,
                    redis_sentinel_addr_t *out, char *err, size_t errlen)
{
    redisReply *rep;
    if (cfg->password) {
        const char *av[2] = {"AUTH", cfg->password};
        rep = redisCommandArgv(c, 2, av, NULL);
        if (!rep || rep->type == REDIS_REPLY_ERROR) {
            err_set(err, errlen, "sentinel %s: AUTH: %.120s", where,
                    rep            ? rep->str
                    : c->errstr[0] ? c->errstr
                                   : "no reply");
            if (rep)
                freeReplyObject(rep);
            return -1;
        }
        freeReplyObject(rep);
    }
    const char *av[3] = {"SENTINEL", "get-master-addr-by-name", cfg->master};
    rep = redisCommandArgv(c, 3, av, NULL);
    if (!rep)
        return err_set(err, errlen, "sentinel %s: %s", where,
                       c->errstr[0] ? c->errstr : "no reply");
    int rc = redis_sentinel_parse_addr(rep, out);
    if (rc == 1)
        err_set(err, errlen, "sentinel %s does not know master '%s'", where, cfg->master);
    else if (rc < 0)
        err_set(err, errlen, "sentinel %s: unexpected answer%s%.120s", where,
                rep->type == REDIS_REPLY_ERROR ? ": " : "",
                rep->type == REDIS_REPLY_ERROR ? rep->str : "");
    freeReplyObject(rep);
    return rc == 0 ? 0 : -1;
}

int redis_sentinel_ask_sync(const redis_sentinel_cfg_t *cfg, int timeout_ms, int *next,
                            redis_sentinel_addr_t *out, char *err, size_t errlen)
{
    struct timeval tv = {timeout_ms / 1000, (timeout_ms % 1000) * 1000};
    char where[REDIS_SENTINEL_IP_MAX + 8];

    err_set(err, errlen, "no sentinel configured");
    for (int k = 0; k < cfg->n; k++) {
        int i = (*next + k) % cfg->n;
        redis_sentinel_addr_str(&cfg->addr[i], where, sizeof(where));
        redisContext *c = redisConnectWithTimeout(cfg->addr[i].ip, cfg->addr[i].port, tv);
        if (!c || c->err) {
            err_set(err, errlen, "sentinel %s: %s", where, c ? c->errstr : "out of memory");
            if (c)
                redisFree(c);
            continue;
        }
        redisSetTimeout(c, tv);
        int rc = sync_one(c, cfg, where, out, err, errlen);
        redisFree(c);
        if (rc == 0) {
            *next = i;
            return 0;
        }
    }
    return -1;
}

/* ---- asynchronous ---- */

struct redis_sentinel {
    uv_loop_t *loop;
    const redis_sentinel_cfg_t *cfg;
    int timeout_ms;
    redis_sentinel_cb cb;
    void *arg;
    bool closing;
    int refs; /* the two timers: freed when both have closed */

    /* The question: one sentinel at a time, each given timeout_ms. */
    redisAsyncContext *qac;
    bool asking, qconnected;
    int qnext, qidx, qtried;
    uint64_t qstart;
    char qerr[WHY_MAX]; /* what the current sentinel said before we let it go */
    char qwhy[WHY_MAX]; /* what the last one tried said */
    uv_timer_t qtimer;

    /* The +switch-master subscription. */
    redisAsyncContext *sac;
    bool sconnected, subscribed;
    int snext;
    uint64_t sstart, sbackoff;
    int slogged; /* -1 never, 0 lost logged, 1 up logged */
    uv_timer_t stimer;
    log_limit_t lim;
};

static int so_error(const redisAsyncContext *ac)
{
    int e = 0;
    socklen_t len = sizeof(e);
    if (getsockopt(ac->c.fd, SOL_SOCKET, SO_ERROR, &e, &len) != 0)
        return errno;
    return e;
}

/* A context of ours whose callbacks must no longer reach us. Not from inside its callbacks. */
static void ctx_free(redisAsyncContext *ac)
{
    if (!ac)
        return;
    ac->data = NULL;
    redisAsyncFree(ac);
}

static redisAsyncContext *ctx_open(redis_sentinel_t *s, const redis_sentinel_addr_t *a,
                                   redisConnectCallback *on_conn, redisDisconnectCallback *on_disc,
                                   char *why, size_t whylen)
{
    redisAsyncContext *ac = redisAsyncConnect(a->ip, a->port);
    if (!ac || ac->err || redisLibuvAttach(ac, s->loop) != REDIS_OK) {
        snprintf(why, whylen, "%s", ac && ac->c.errstr[0] ? ac->c.errstr : "cannot connect");
        if (ac)
            redisAsyncFree(ac);
        return NULL;
    }
    ac->data = s;
    redisAsyncSetConnectCallback(ac, on_conn);
    redisAsyncSetDisconnectCallback(ac, on_disc);
    return ac;
}

static int send_auth(redis_sentinel_t *s, redisAsyncContext *ac, redisCallbackFn *fn)
{
    if (!s->cfg->password)
        return 0;
    const char *av[2] = {"AUTH", s->cfg->password};
    return redisAsyncCommandArgv(ac, fn, NULL, 2, av, NULL) == REDIS_OK ? 0 : -1;
}

/* -- the question -- */

static void q_start_one(redis_sentinel_t *s);

static void q_fail_one(redis_sentinel_t *s, const char *why)
{
    char where[REDIS_SENTINEL_IP_MAX + 8];
    snprintf(s->qwhy, sizeof(s->qwhy), "sentinel %s: %s",
             redis_sentinel_addr_str(&s->cfg->addr[s->qidx], where, sizeof(where)), why);
    if (s->qtried < s->cfg->n) {
        q_start_one(s);
        return;
    }
    s->asking = false;
    uv_timer_stop(&s->qtimer);
    s->cb(s->arg, REDIS_SENTINEL_FAILED, NULL, s->qwhy);
}

static void on_q_deferred(uv_timer_t *t)
{
    redis_sentinel_t *s = t->data;
    q_fail_one(s, s->qerr);
}

static void on_q_watchdog(uv_timer_t *t)
{
    redis_sentinel_t *s = t->data;
    char why[WHY_MAX];
    int e;

    if (!s->qac)
        return;
    if (!s->qconnected && (e = so_error(s->qac)) != 0) {
        snprintf(why, sizeof(why), "connect: %s", strerror(e));
    } else {
        uint64_t idle = uv_now(s->loop) - s->qstart;
        if (idle < (uint64_t)s->timeout_ms) {
            uint64_t left = (uint64_t)s->timeout_ms - idle;
            uv_timer_start(t, on_q_watchdog, left > CONNECT_POLL_MS ? CONNECT_POLL_MS : left, 0);
            return;
        }
        snprintf(why, sizeof(why), "no answer within %d ms", s->timeout_ms);
    }
    ctx_free(s->qac);
    s->qac = NULL;
    q_fail_one(s, why);
}

static void q_on_connect(const redisAsyncContext *ac, int status)
{
    redis_sentinel_t *s = ac->data;
    if (!s || s->qac != ac)
        return;
    if (status != REDIS_OK) {
        s->qac = NULL; /* hiredis frees it when we return */
        q_fail_one(s, ac->c.errstr);
        return;
    }
    s->qconnected = true;
}

static void q_on_disconnect(const redisAsyncContext *ac, int status)
{
    redis_sentinel_t *s = ac->data;
    if (!s || s->qac != ac)
        return;
    s->qac = NULL;
    q_fail_one(s, s->qerr[0] ? s->qerr : status == REDIS_OK ? "connection closed" : ac->c.errstr);
}

static void q_on_auth(redisAsyncContext *ac, void *reply, void *priv)
{
    redis_sentinel_t *s = ac->data;
    const redisReply *rep = reply;
    (void)priv;
    if (!s || s->qac != ac || !rep || rep->type != REDIS_REPLY_ERROR)
        return;
    snprintf(s->qerr, sizeof(s->qerr), "AUTH refused: %.120s", rep->str);
    redisAsyncDisconnect(ac);
}

static void q_on_answer(redisAsyncContext *ac, void *reply, void *priv)
{
    redis_sentinel_t *s = ac->data;
    const redisReply *rep = reply;
    redis_sentinel_addr_t addr;
    (void)priv;

    if (!s || s->qac != ac || !rep || s->qerr[0])
        return;
    int rc = redis_sentinel_parse_addr(rep, &addr);
    if (rc == 0) {
        /* Let the connection go before telling anyone: the callee may ask again at once. */
        s->qac = NULL;
        ac->data = NULL;
        redisAsyncDisconnect(ac);
        s->qnext = s->qidx; /* start there next time */
        s->asking = false;
        uv_timer_stop(&s->qtimer);
        s->cb(s->arg, REDIS_SENTINEL_MASTER, &addr, NULL);
        return;
    }
    if (rc == 1)
        snprintf(s->qerr, sizeof(s->qerr), "does not know master '%s'", s->cfg->master);
    else
        snprintf(s->qerr, sizeof(s->qerr), "unexpected answer%s%.120s",
                 rep->type == REDIS_REPLY_ERROR ? ": " : "",
                 rep->type == REDIS_REPLY_ERROR ? rep->str : "");
    redisAsyncDisconnect(ac); /* q_on_disconnect tries the next one */
}

static void q_start_one(redis_sentinel_t *s)
{
    s->qidx = s->qnext;
    s->qnext = (s->qnext + 1) % s->cfg->n;
    s->qtried++;
    s->qerr[0] = '\0';
    s->qconnected = false;
    s->qstart = uv_now(s->loop);
    s->qac = ctx_open(s, &s->cfg->addr[s->qidx], q_on_connect, q_on_disconnect, s->qerr,
                      sizeof(s->qerr));
    const char *av[3] = {"SENTINEL", "get-master-addr-by-name", s->cfg->master};
    if (s->qac && (send_auth(s, s->qac, q_on_auth) != 0 ||
                   redisAsyncCommandArgv(s->qac, q_on_answer, NULL, 3, av, NULL) != REDIS_OK)) {
        ctx_free(s->qac);
        s->qac = NULL;
        snprintf(s->qerr, sizeof(s->qerr), "out of memory");
    }
    if (!s->qac) {
        /* Never call back from inside redis_sentinel_ask: go on from the loop. */
        uv_timer_start(&s->qtimer, on_q_deferred, 0, 0);
        return;
    }
    uv_timer_start(&s->qtimer, on_q_watchdog, CONNECT_POLL_MS, 0);
}

void redis_sentinel_ask(redis_sentinel_t *s)
{
    if (s->closing || s->asking)
        return;
    s->asking = true;
    s->qtried = 0;
    q_start_one(s);
}

/* -- the subscription -- */

static void s_start(redis_sentinel_t *s);

static void on_s_retry(uv_timer_t *t) { s_start(t->data); }

static void s_lost(redis_sentinel_t *s, const char *why)
{
    char where[REDIS_SENTINEL_IP_MAX + 8];
    s->sac = NULL;
    s->sconnected = s->subscribed = false;
    if (s->slogged != 0 && log_limit_take(&s->lim, uv_now(s->loop), 0.1, 6)) {
        s->slogged = 0;
        LOGW("redis_sentinel_down", "redis sentinel %s: %s; following another",
             redis_sentinel_addr_str(&s->cfg->addr[s->snext], where, sizeof(where)), why);
    }
    s->snext = (s->snext + 1) % s->cfg->n;
    uv_timer_start(&s->stimer, on_s_retry, s->sbackoff, 0);
    s->sbackoff = s->sbackoff * 2 > SUB_BACKOFF_MAX_MS ? SUB_BACKOFF_MAX_MS : s->sbackoff * 2;
}

static void on_s_watchdog(uv_timer_t *t)
{
    redis_sentinel_t *s = t->data;
    char why[WHY_MAX];
    int e;

    if (!s->sac || s->subscribed)
        return;
    if (!s->sconnected && (e = so_error(s->sac)) != 0) {
        snprintf(why, sizeof(why), "connect: %s", strerror(e));
    } else {
        uint64_t idle = uv_now(s->loop) - s->sstart;
        if (idle < (uint64_t)s->timeout_ms) {
            uint64_t left = (uint64_t)s->timeout_ms - idle;
            uv_timer_start(t, on_s_watchdog, left > CONNECT_POLL_MS ? CONNECT_POLL_MS : left, 0);
            return;
        }
        snprintf(why, sizeof(why), "no answer within %d ms", s->timeout_ms);
    }
    ctx_free(s->sac);
    s_lost(s, why);
}

static void s_on_connect(const redisAsyncContext *ac, int status)
{
    redis_sentinel_t *s = ac->data;
    if (!s || s->sac != ac)
        return;
    if (status != REDIS_OK) {
        s_lost(s, ac->c.errstr); /* hiredis frees ac when we return */
        return;
    }
    s->sconnected = true;
    /* A sentinel that vanishes while we listen is noticed by the kernel. */
    redisEnableKeepAlive(&s->sac->c);
}

static void s_on_disconnect(const redisAsyncContext *ac, int status)
{
    redis_sentinel_t *s = ac->data;
    if (!s || s->sac != ac)
        return;
    s_lost(s, status == REDIS_OK ? "connection closed" : ac->c.errstr);
}

static void s_on_auth(redisAsyncContext *ac, void *reply, void *priv)
{
    redis_sentinel_t *s = ac->data;
    const redisReply *rep = reply;
    (void)priv;
    if (!s || s->sac != ac || !rep || rep->type != REDIS_REPLY_ERROR)
        return;
    if (log_limit_take(&s->lim, uv_now(s->loop), 0.1, 6))
        LOGW("redis_sentinel_auth", "redis sentinel: AUTH refused: %.120s", rep->str);
    redisAsyncDisconnect(ac);
}

static void s_on_message(redisAsyncContext *ac, void *reply, void *priv)
{
    redis_sentinel_t *s = ac->data;
    const redisReply *rep = reply;
    redis_sentinel_addr_t addr;
    char where[REDIS_SENTINEL_IP_MAX + 8];
    (void)priv;

    if (!s || s->sac != ac || !rep || rep->type != REDIS_REPLY_ARRAY || rep->elements != 3 ||
        rep->element[0]->type != REDIS_REPLY_STRING)
        return;
    const redisReply *kind = rep->element[0], *payload = rep->element[2];
    if (kind->len == 9 && memcmp(kind->str, "subscribe", 9) == 0) {
        s->subscribed = true;
        s->sbackoff = SUB_BACKOFF_MIN_MS;
        uv_timer_stop(&s->stimer);
        if (s->slogged != 1) {
            s->slogged = 1;
            LOGI("redis_sentinel_up", "redis sentinel %s: following master '%s'",
                 redis_sentinel_addr_str(&s->cfg->addr[s->snext], where, sizeof(where)),
                 s->cfg->master);
        }
        s->cb(s->arg, REDIS_SENTINEL_RESYNC, NULL, NULL);
    } else if (kind->len == 7 && memcmp(kind->str, "message", 7) == 0 &&
               payload->type == REDIS_REPLY_STRING &&
               redis_sentinel_parse_switch(payload->str, payload->len, s->cfg->master, &addr) ==
                   0) {
        s->cb(s->arg, REDIS_SENTINEL_SWITCH, &addr, NULL);
    }
}

static void s_start(redis_sentinel_t *s)
{
    char why[WHY_MAX];
    const char *av[2] = {"SUBSCRIBE", SWITCH_CHANNEL};

    s->sconnected = s->subscribed = false;
    s->sstart = uv_now(s->loop);
    s->sac = ctx_open(s, &s->cfg->addr[s->snext], s_on_connect, s_on_disconnect, why, sizeof(why));
    if (!s->sac) {
        s_lost(s, why);
        return;
    }
    if (send_auth(s, s->sac, s_on_auth) != 0 ||
        redisAsyncCommandArgv(s->sac, s_on_message, NULL, 2, av, NULL) != REDIS_OK) {
        ctx_free(s->sac);
        s_lost(s, "out of memory");
        return;
    }
    uv_timer_start(&s->stimer, on_s_watchdog, CONNECT_POLL_MS, 0);
}

int redis_sentinel_new(uv_loop_t *loop, const redis_sentinel_cfg_t *cfg, int timeout_ms,
                       redis_sentinel_cb cb, void *arg, redis_sentinel_t **out)
{
    redis_sentinel_t *s = calloc(1, sizeof(*s));
    if (!s)
        return -ENOMEM;
    s->loop = loop;
    s->cfg = cfg;
    s->timeout_ms = timeout_ms;
    s->cb = cb;
    s->arg = arg;
    s->slogged = -1;
    s->sbackoff = SUB_BACKOFF_MIN_MS;
    uv_timer_init(loop, &s->qtimer);
    uv_timer_init(loop, &s->stimer);
    s->qtimer.data = s->stimer.data = s;
    s->refs = 2;
    s_start(s);
    *out = s;
    return 0;
}

static void on_timer_closed(uv_handle_t *h)
{
    redis_sentinel_t *s = h->data;
    if (--s->refs == 0)
        free(s);
}

void redis_sentinel_close(redis_sentinel_t *s)
{
    if (!s)
        return;
    s->closing = true;
    ctx_free(s->qac);
    s->qac = NULL;
    ctx_free(s->sac);
    s->sac = NULL;
    uv_close((uv_handle_t *)&s->qtimer, on_timer_closed);
    uv_close((uv_handle_t *)&s->stimer, on_timer_closed);
}
