/* creds_redis.c - the Redis side of the credential store: one worker's asynchronous connection
 * (hiredis' async API on the worker's own libuv loop, so a lookup never blocks the loop: DESIGN.md
 * "Auth never blocks the loop") and its pipelines; the key layout it reads is creds_redis_keys.c.
 *
 * The connection string is parsed in creds_redis_cfg.c. AUTH and SELECT are queued before any other
 * command, so a lookup made while connecting waits behind them in the same pipeline. The hiredis
 * 0.14 we build against has no timeouts in its async API, so a watchdog timer does it: a connect,
 * or a command with no reply byte for 2 s, drops the connection. A lost connection comes back
 * through a backoff timer (0.5 s doubling to 30 s); state changes are logged once each, not once
 * per attempt. Host names are resolved with uv_getaddrinfo because hiredis would call a blocking
 * getaddrinfo on the loop thread. A username reaches Redis only as one argv element.
 *
 * With Redis Sentinel (redis_sentinel.h) every connect attempt starts by asking the sentinels for
 * the master, and ROLE joins AUTH and SELECT in the setup pipeline: a "master" that answers as a
 * replica (a sentinel not yet caught up, or a demoted master) is left and the sentinels asked again
 * after the backoff. A +switch-master, or a re-ask that names another master, drops the connection
 * and connects to the new master at once; replies lost with the old connection fail their lookups,
 * which the caller answers as it does for any Redis outage (creds.c: cache, then 'unavailable').
 */
#include "creds_redis_int.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <hiredis/adapters/libuv.h>
#include <hiredis/async.h>
#include <hiredis/hiredis.h>
#include <openssl/crypto.h>

#include "log.h"
#include "redis_sentinel.h"
#include "stats.h"
#include "stun.h"
#include "stun_auth.h"

#define BACKOFF_MIN_MS 500
#define BACKOFF_MAX_MS 30000
#define CONNECT_POLL_MS 50 /* how often a connect in progress is checked for failure */

/* ---- connection ---- */

/* A pipeline waiting for its replies. hiredis frees each reply when its callback returns, so the
 * replies are copied until the last one is in. */
typedef struct {
    creds_redis_t *r;
    done_cb cb; /* NULL: nobody wants the result any more */
    void *arg;
    int n, got, pending;
    bool failed;
    uint64_t sent_ns;
    redisReply *rep[];
} batch_t;

static void schedule_retry(creds_redis_t *r);
static void connect_start(creds_redis_t *r);

static void stat_add(_Atomic uint64_t *ctr, uint64_t n) { stats_add(ctr, n); }

static void set_target(creds_redis_t *r, const char *host, int port)
{
    bool v6 = strchr(host, ':') != NULL;
    snprintf(r->target, sizeof(r->target), "%s%s%s:%d", v6 ? "[" : "", host, v6 ? "]" : "", port);
}

static void set_state(creds_redis_t *r, enum creds_redis_state st, const char *why)
{
    const creds_redis_cfg_t *cfg = r->cfg;
    int up = st == CREDS_REDIS_UP;

    r->state = st;
    atomic_store_explicit(&r->stats->redis_state, up, memory_order_relaxed);
    /* One line per change between up and down; attempts while down stay quiet, and a flapping
     * server is held to a few lines a minute. */
    if (st == CREDS_REDIS_CONNECTING || up == r->logged)
        return;
    r->logged = up;
    if (!log_limit_take(&r->lim, uv_now(r->loop), 0.1, 6))
        return;
    if (up)
        LOGI("redis_up", "redis %s db %d: connected", r->target, cfg->db);
    else
        LOGW("redis_down", "redis %s: %s; retrying with backoff", r->target, why ? why : "down");
}

static void unref(creds_redis_t *r)
{
    if (--r->refs == 0)
        free(r);
}

/* The connection is gone (hiredis frees or has freed ac): forget it and try again later. */
static void lost(creds_redis_t *r, const char *why)
{
    r->ac = NULL;
    r->connected = false;
    r->outstanding = 0;
    r->setup_pending = 0;
    uv_timer_stop(&r->watchdog);
    stat_add(&r->stats->redis_errors, 1);
    set_state(r, CREDS_REDIS_DOWN, why);
    if (!r->closing)
        schedule_retry(r);
}

/* Free ac ourselves. Never from inside one of its callbacks: only timers and close call this. */
static void drop(creds_redis_t *r, const char *why)
{
    redisAsyncContext *ac = r->ac;
    lost(r, why);
    /* Its connect/disconnect callbacks, run from inside redisAsyncFree, see that we let it go;
     * pending batches get a NULL reply and fail. */
    ac->data = NULL;
    redisAsyncFree(ac);
}

/* The pending error of a connect in progress, or 0. hiredis 0.14's libuv adapter drops the error
 * status libuv reports for a refused connect (POLLERR), so hiredis would never hear of it and a
 * refused connect would look like a 2 s timeout; we ask the socket ourselves. */
static int connect_error(const creds_redis_t *r)
{
    int e = 0;
    socklen_t len = sizeof(e);
    if (getsockopt(r->ac->c.fd, SOL_SOCKET, SO_ERROR, &e, &len) != 0)
        return errno;
    return e;
}

static void on_watchdog(uv_timer_t *t)
{
    creds_redis_t *r = t->data;
    int e;
    char why[160];

    if (!r->ac)
        return;
    if (!r->connected && (e = connect_error(r)) != 0) {
        snprintf(why, sizeof(why), "connect: %s", strerror(e));
        drop(r, why);
        return;
    }
    bool waiting = !r->connected || r->setup_pending > 0 || r->outstanding > 0;
    if (!waiting)
        return;
    uint64_t limit = r->connected ? CREDS_REDIS_TIMEOUT_MS : (uint64_t)r->cfg->connect_timeout_ms;
    uint64_t idle = uv_now(r->loop) - r->last_activity;
    if (idle >= limit) {
        drop(r, r->connected ? "no reply within 2 s" : "connect timed out");
        return;
    }
    uint64_t next = limit - idle;
    uv_timer_start(t, on_watchdog, !r->connected && next > CONNECT_POLL_MS ? CONNECT_POLL_MS : next,
                   0);
}

static void watchdog_kick(creds_redis_t *r)
{
    if (!uv_is_active((uv_handle_t *)&r->watchdog))
        uv_timer_start(&r->watchdog, on_watchdog, CREDS_REDIS_TIMEOUT_MS, 0);
}

static void note_sent(creds_redis_t *r)
{
    /* The silence that counts starts at the first command sent after a quiet period. */
    if (r->outstanding++ == 0)
        r->last_activity = uv_now(r->loop);
    watchdog_kick(r);
}

static void note_reply(creds_redis_t *r)
{
    if (r->outstanding > 0)
        r->outstanding--;
    r->last_activity = uv_now(r->loop);
}

static void on_retry(uv_timer_t *t)
{
    creds_redis_t *r = t->data;
    stat_add(&r->stats->redis_reconnects, 1);
    connect_start(r);
}

static void schedule_retry(creds_redis_t *r)
{
    uv_timer_start(&r->retry, on_retry, r->backoff_ms, 0);
    r->backoff_ms = r->backoff_ms * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : r->backoff_ms * 2;
}

static void became_up(creds_redis_t *r)
{
    r->backoff_ms = BACKOFF_MIN_MS;
    set_state(r, CREDS_REDIS_UP, NULL);
}

static void on_connect(const redisAsyncContext *ac, int status)
{
    creds_redis_t *r = ac->data;
    if (!r || r->ac != ac)
        return;
    if (status != REDIS_OK) {
        lost(r, ac->c.errstr); /* hiredis frees ac when we return */
        return;
    }
    r->connected = true;
    r->last_activity = uv_now(r->loop);
    /* A server that vanishes while we idle is noticed by the kernel, not at the next lookup. */
    redisEnableKeepAlive(&r->ac->c);
    if (r->setup_pending == 0)
        became_up(r);
}

static void on_disconnect(const redisAsyncContext *ac, int status)
{
    creds_redis_t *r = ac->data;
    if (!r || r->ac != ac)
        return;
    lost(r, status == REDIS_OK ? "connection closed" : ac->c.errstr);
}

static void setup_reply(redisAsyncContext *ac, void *reply, const char *what)
{
    creds_redis_t *r = ac->data;
    const redisReply *rep = reply;
    char why[160];

    if (!r || r->ac != ac)
        return;
    note_reply(r);
    if (!rep) /* the connection failed: on_connect / on_disconnect say so */
        return;
    if (rep->type == REDIS_REPLY_ERROR) {
        /* A wrong password or database is not going to fix itself by retrying at once; close
         * cleanly (allowed inside a callback) and let the backoff pace the attempts. */
        snprintf(why, sizeof(why), "%s refused: %.120s", what, rep->str ? rep->str : "");
        set_state(r, CREDS_REDIS_DOWN, why);
        redisAsyncDisconnect(ac);
        return;
    }
    if (--r->setup_pending == 0 && r->connected)
        became_up(r);
}

static void on_auth_reply(redisAsyncContext *ac, void *reply, void *priv)
{
    (void)priv;
    setup_reply(ac, reply, "AUTH");
}

static void on_select_reply(redisAsyncContext *ac, void *reply, void *priv)
{
    (void)priv;
    setup_reply(ac, reply, "SELECT");
}

/* With Sentinel: the server the sentinels named must say it is the master. One that says otherwise
 * is left (the backoff paces the next question); one that refuses ROLE (an ACL without it) is
 * taken at the sentinels' word. */
static void on_role_reply(redisAsyncContext *ac, void *reply, void *priv)
{
    creds_redis_t *r = ac->data;
    const redisReply *rep = reply;
    (void)priv;

    if (!r || r->ac != ac)
        return;
    note_reply(r);
    if (!rep) /* the connection failed: on_connect / on_disconnect say so */
        return;
    if (rep->type != REDIS_REPLY_ERROR && !redis_sentinel_role_is_master(rep)) {
        set_state(r, CREDS_REDIS_DOWN, "a replica, not the master");
        redisAsyncDisconnect(ac);
        return;
    }
    if (--r->setup_pending == 0 && r->connected)
        became_up(r);
}

/* AUTH and SELECT go first in the pipeline, so every later command runs authenticated. */
static int send_setup(creds_redis_t *r)
{
    const creds_redis_cfg_t *cfg = r->cfg;
    const char *argv[3];
    size_t len[3];
    char db[16];
    int argc = 0;

    if (cfg->password) {
        argv[argc] = "AUTH";
        len[argc++] = 4;
        if (cfg->user) {
            argv[argc] = cfg->user;
            len[argc] = strlen(cfg->user);
            argc++;
        }
        argv[argc] = cfg->password;
        len[argc] = strlen(cfg->password);
        argc++;
        if (redisAsyncCommandArgv(r->ac, on_auth_reply, NULL, argc, argv, len) != REDIS_OK)
            return -1;
        r->setup_pending++;
        note_sent(r);
    }
    if (cfg->db != 0) {
        argv[0] = "SELECT";
        len[0] = 6;
        argv[1] = db;
        len[1] = (size_t)snprintf(db, sizeof(db), "%d", cfg->db);
        if (redisAsyncCommandArgv(r->ac, on_select_reply, NULL, 2, argv, len) != REDIS_OK)
            return -1;
        r->setup_pending++;
        note_sent(r);
    }
    if (r->sent) {
        argv[0] = "ROLE";
        len[0] = 4;
        if (redisAsyncCommandArgv(r->ac, on_role_reply, NULL, 1, argv, len) != REDIS_OK)
            return -1;
        r->setup_pending++;
        note_sent(r);
    }
    return 0;
}

static void connect_failed(creds_redis_t *r, const char *why)
{
    stat_add(&r->stats->redis_errors, 1);
    set_state(r, CREDS_REDIS_DOWN, why);
    schedule_retry(r);
}

static void connect_ip(creds_redis_t *r, const char *ip, int port)
{
    redisAsyncContext *ac = redisAsyncConnect(ip, port);
    char why[160];

    if (!ac || ac->err || redisLibuvAttach(ac, r->loop) != REDIS_OK) {
        snprintf(why, sizeof(why), "%s", ac && ac->c.errstr[0] ? ac->c.errstr : "cannot connect");
        if (ac)
            redisAsyncFree(ac);
        connect_failed(r, why);
        return;
    }
    ac->data = r;
    redisAsyncSetConnectCallback(ac, on_connect);
    redisAsyncSetDisconnectCallback(ac, on_disconnect);
    r->ac = ac;
    r->connected = false;
    r->outstanding = 0;
    r->setup_pending = 0;
    r->last_activity = uv_now(r->loop);
    set_state(r, CREDS_REDIS_CONNECTING, NULL);
    uv_timer_start(&r->watchdog, on_watchdog, CONNECT_POLL_MS, 0);
    if (send_setup(r) != 0)
        drop(r, "out of memory");
}

static void on_resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *res)
{
    creds_redis_t *r = req->data;
    char ip[INET6_ADDRSTRLEN] = "";
    const struct addrinfo *pick = NULL;

    r->resolving = false;
    /* IPv4 first, as hiredis itself does for names: a dual-stack name whose Redis listens on
     * 127.0.0.1 only must not fail on ::1. */
    for (const struct addrinfo *a = status == 0 ? res : NULL; a; a = a->ai_next)
        if (!pick || (a->ai_family == AF_INET && pick->ai_family != AF_INET))
            pick = a;
    if (pick && pick->ai_family == AF_INET)
        uv_ip4_name((const struct sockaddr_in *)(const void *)pick->ai_addr, ip, sizeof(ip));
    else if (pick && pick->ai_family == AF_INET6)
        uv_ip6_name((const struct sockaddr_in6 *)(const void *)pick->ai_addr, ip, sizeof(ip));
    uv_freeaddrinfo(res);
    if (r->closing) {
        unref(r);
        return;
    }
    r->refs--; /* not the last: the timers still hold r */
    if (!ip[0])
        connect_failed(r, status < 0 ? uv_strerror(status) : "host has no address");
    else
        connect_ip(r, ip, r->cfg->port);
}

static void connect_start(creds_redis_t *r)
{
    const char *host = r->cfg->host;
    unsigned char buf[sizeof(struct in6_addr)];
    struct addrinfo hints;

    if (r->sent) {
        /* on_sentinel connects when the answer comes (or schedules the next try). */
        set_state(r, CREDS_REDIS_CONNECTING, NULL);
        redis_sentinel_ask(r->sent);
        return;
    }
    if (inet_pton(AF_INET, host, buf) == 1 || inet_pton(AF_INET6, host, buf) == 1) {
        connect_ip(r, host, r->cfg->port);
        return;
    }
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    r->gai.data = r;
    int rc = uv_getaddrinfo(r->loop, &r->gai, on_resolved, host, NULL, &hints);
    if (rc != 0) {
        connect_failed(r, uv_strerror(rc));
        return;
    }
    r->resolving = true;
    r->refs++;
    set_state(r, CREDS_REDIS_CONNECTING, NULL);
}

static bool same_addr(const redis_sentinel_addr_t *a, const redis_sentinel_addr_t *b)
{
    return a->port == b->port && strcmp(a->ip, b->ip) == 0;
}

/* Connect to `a` now (the sentinels named it), leaving any connection to another server. */
static void connect_master(creds_redis_t *r, const redis_sentinel_addr_t *a, const char *how)
{
    char was[HOST_STR_MAX];
    if (r->ac) /* logged under the server it was connected to */
        drop(r, "the sentinels name another master");
    if (!r->master_known || !same_addr(&r->master, a)) {
        snprintf(was, sizeof(was), "%s", r->master_known ? r->target : "unknown");
        r->master = *a;
        r->master_known = true;
        set_target(r, a->ip, a->port);
        LOGI("redis_master", "redis: master '%s' is %s (was %s; from %s)", r->cfg->sentinel.master,
             r->target, was, how);
    }
    uv_timer_stop(&r->retry);
    r->backoff_ms = BACKOFF_MIN_MS;
    connect_ip(r, a->ip, a->port);
}

/* Called from the sentinels' connections and timers, never from inside one of r->ac's callbacks,
 * so dropping r->ac here is allowed. */
static void on_sentinel(void *arg, enum redis_sentinel_event ev, const redis_sentinel_addr_t *a,
                        const char *why)
{
    creds_redis_t *r = arg;
    if (r->closing)
        return;
    switch (ev) {
    case REDIS_SENTINEL_RESYNC:
        redis_sentinel_ask(r->sent);
        break;
    case REDIS_SENTINEL_FAILED:
        if (!r->ac) /* connected: a re-ask that failed changes nothing */
            connect_failed(r, why);
        break;
    case REDIS_SENTINEL_MASTER:
    case REDIS_SENTINEL_SWITCH:
        if (r->ac && same_addr(&r->master, a))
            break; /* already there (or on the way) */
        connect_master(r, a,
                       ev == REDIS_SENTINEL_SWITCH ? "+switch-master" : "asking the sentinels");
        break;
    }
}

int creds_redis_new(uv_loop_t *loop, const creds_redis_cfg_t *cfg, creds_stats_t *stats,
                    creds_redis_t **out)
{
    creds_redis_t *r = calloc(1, sizeof(*r));
    if (!r)
        return -ENOMEM;
    if (cfg->sentinel.n > 0) {
        int rc = redis_sentinel_new(loop, &cfg->sentinel, cfg->connect_timeout_ms, on_sentinel, r,
                                    &r->sent);
        if (rc != 0) {
            free(r);
            return rc;
        }
        snprintf(r->target, sizeof(r->target), "master '%s'", cfg->sentinel.master);
    } else {
        set_target(r, cfg->host, cfg->port);
    }
    r->loop = loop;
    r->cfg = cfg;
    r->stats = stats;
    r->logged = -1;
    r->backoff_ms = BACKOFF_MIN_MS;
    uv_timer_init(loop, &r->watchdog);
    uv_timer_init(loop, &r->retry);
    r->watchdog.data = r->retry.data = r;
    r->refs = 2;
    atomic_store_explicit(&stats->redis_state, 0, memory_order_relaxed);
    connect_start(r);
    *out = r;
    return 0;
}

static void on_timer_closed(uv_handle_t *h) { unref(h->data); }

void creds_redis_close(creds_redis_t *r)
{
    if (!r)
        return;
    r->closing = true;
    redis_sentinel_close(r->sent);
    r->sent = NULL;
    if (r->resolving)
        uv_cancel((uv_req_t *)&r->gai); /* on_resolved still runs and lets go of r */
    if (r->ac) {
        /* Pending batches get a NULL reply and, r being closed, call nobody. */
        redisAsyncContext *ac = r->ac;
        r->ac = NULL;
        ac->data = NULL;
        redisAsyncFree(ac);
    }
    uv_close((uv_handle_t *)&r->watchdog, on_timer_closed);
    uv_close((uv_handle_t *)&r->retry, on_timer_closed);
}

enum creds_redis_state creds_redis_state(const creds_redis_t *r) { return r->state; }

/* ---- pipelines ---- */

static void reply_free(redisReply *p)
{
    if (!p)
        return;
    for (size_t i = 0; i < p->elements && p->element; i++)
        reply_free(p->element[i]);
    free(p->element);
    free(p->str);
    free(p);
}

static redisReply *reply_copy(const redisReply *s)
{
    redisReply *d = calloc(1, sizeof(*d));
    if (!d)
        return NULL;
    d->type = s->type;
    d->integer = s->integer;
    if (s->str) {
        if (!(d->str = malloc(s->len + 1)))
            goto fail;
        memcpy(d->str, s->str, s->len);
        d->str[s->len] = '\0';
        d->len = s->len;
    }
    if (s->type == REDIS_REPLY_ARRAY && s->elements > 0) {
        if (!(d->element = calloc(s->elements, sizeof(*d->element))))
            goto fail;
        d->elements = s->elements;
        for (size_t i = 0; i < s->elements; i++)
            if (!(d->element[i] = reply_copy(s->element[i])))
                goto fail;
    }
    return d;
fail:
    reply_free(d);
    return NULL;
}

static void batch_finish(batch_t *b)
{
    creds_redis_t *r = b->r;
    if (b->cb && r->closing) {
        b->cb(b->arg, NULL, -1);
    } else if (b->cb && b->failed) {
        b->cb(b->arg, NULL, 0);
    } else if (b->cb) {
        for (int i = 0; i < b->n; i++)
            if (b->rep[i]->type == REDIS_REPLY_ERROR)
                stat_add(&r->stats->redis_errors, 1);
        stat_add(&r->stats->redis_latency_us_sum, (uv_hrtime() - b->sent_ns) / 1000);
        stat_add(&r->stats->redis_replies, 1);
        b->cb(b->arg, b->rep, b->n);
    }
    for (int i = 0; i < b->got; i++)
        reply_free(b->rep[i]);
    free(b);
}

static void on_batch_reply(redisAsyncContext *ac, void *reply, void *priv)
{
    batch_t *b = priv;
    if (ac == b->r->ac)
        note_reply(b->r);
    if (!reply) {
        b->failed = true;
    } else if (!b->failed && b->got < b->n) {
        if (!(b->rep[b->got] = reply_copy(reply)))
            b->failed = true;
        else
            b->got++;
    }
    if (--b->pending == 0)
        batch_finish(b);
}

int creds_redis_pipeline(creds_redis_t *r, const cmd_t *cmds, int n, done_cb cb, void *arg)
{
    if (r->closing || !r->ac || r->state == CREDS_REDIS_DOWN || n <= 0)
        return -1;
    batch_t *b = calloc(1, sizeof(*b) + (size_t)n * sizeof(b->rep[0]));
    if (!b)
        return -1;
    b->r = r;
    b->cb = cb;
    b->arg = arg;
    b->n = n;
    b->sent_ns = uv_hrtime();
    for (int i = 0; i < n; i++) {
        const char *argv[MAX_ARGS];
        memcpy(argv, cmds[i].argv, sizeof(argv));
        if (redisAsyncCommandArgv(r->ac, on_batch_reply, b, cmds[i].argc, argv, cmds[i].len) !=
            REDIS_OK) {
            /* Commands already queued still get their replies; the batch dies with the last. */
            b->cb = NULL;
            if (b->pending == 0)
                free(b);
            return -1;
        }
        b->pending++;
        note_sent(r);
    }
    return 0;
}

/* One command of creds_redis_command(_int): its callback, called with the reply's kind. */
typedef struct {
    creds_redis_t *r;
    creds_redis_cmd_cb cb;
    creds_redis_int_cb int_cb; /* or this, with the reply's value */
    void *arg;
} one_cmd_t;

static void on_cmd_reply(redisAsyncContext *ac, void *reply, void *priv)
{
    one_cmd_t *c = priv;
    if (ac == c->r->ac)
        note_reply(c->r);
    const redisReply *rep = reply;
    if (!c->r->closing && c->int_cb) {
        c->int_cb(c->arg,
                  !rep                             ? CREDS_REDIS_CMD_LOST
                  : rep->type == REDIS_REPLY_ERROR ? CREDS_REDIS_CMD_ERROR
                                                   : CREDS_REDIS_CMD_OK,
                  rep && rep->type == REDIS_REPLY_INTEGER ? rep->integer : 0,
                  rep && (rep->type == REDIS_REPLY_ERROR || rep->type == REDIS_REPLY_STRING ||
                          rep->type == REDIS_REPLY_STATUS)
                      ? rep->str
                      : NULL,
                  rep && rep->str ? rep->len : 0);
    } else if (!c->r->closing && c->cb) {
        c->cb(c->arg, !rep                             ? CREDS_REDIS_CMD_LOST
                      : rep->type == REDIS_REPLY_ERROR ? CREDS_REDIS_CMD_ERROR
                                                       : CREDS_REDIS_CMD_OK);
    }
    free(c);
}

static int send_one(creds_redis_t *r, int argc, const char **argv, const size_t *len,
                    creds_redis_cmd_cb cb, creds_redis_int_cb int_cb, void *arg)
{
    if (r->closing || !r->ac || r->state != CREDS_REDIS_UP || argc <= 0)
        return -1;
    one_cmd_t *c = malloc(sizeof(*c));
    if (!c)
        return -1;
    c->r = r;
    c->cb = cb;
    c->int_cb = int_cb;
    c->arg = arg;
    if (redisAsyncCommandArgv(r->ac, on_cmd_reply, c, argc, argv, len) != REDIS_OK) {
        free(c);
        return -1;
    }
    note_sent(r);
    return 0;
}

int creds_redis_command(creds_redis_t *r, int argc, const char **argv, const size_t *len,
                        creds_redis_cmd_cb cb, void *arg)
{
    return send_one(r, argc, argv, len, cb, NULL, arg);
}

int creds_redis_command_int(creds_redis_t *r, int argc, const char **argv, const size_t *len,
                            creds_redis_int_cb cb, void *arg)
{
    return send_one(r, argc, argv, len, NULL, cb, arg);
}
