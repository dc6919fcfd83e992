/* fleet.c - the fleet thread of one node (fleet.h): every FLEET_PERIOD_MS it writes this node's
 * registry entry (SET turn/node/<id> PX FLEET_TTL_MS, ZADD turn/nodes), and every FLEET_READ_MS
 * it reads every live node (ZRANGE turn/nodes, MGET the entries: an expired entry reads nil, so
 * liveness is Redis' own TTL and no clock of ours is compared with another node's); between ticks
 * it waits in poll() on its subscription to turn/fleet/events and applies each event as it arrives
 * (server_forget_user), and on a wake-up pipe through which other threads hand it events to
 * publish.
 */
#include "fleet_int.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include <hiredis/hiredis.h>

#include "alloc_query.h"
#include "cluster_quota.h"
#include "log.h"
#include "rand.h"

#define FLEET_QUEUE_MAX 256   /* events waiting to be published */
#define FLEET_REDIS_MS 1000   /* connect and reply timeout of the fleet's connections */
#define FLEET_BACKOFF_MIN 500 /* reconnect backoff, ms */
#define FLEET_BACKOFF_MAX 5000
#define FLEET_DUP_LOG_MS 10000 /* a node-id used twice is logged at most this often */

struct fleet {
    server_t *s;
    bool enabled;
    char id[FLEET_ID_MAX + 1];
    char instance[FLEET_INSTANCE_LEN + 1];
    int64_t started_ms;
    creds_redis_cfg_t rc;
    bool rc_ready;
    pthread_t thread;
    bool running;
    int wake[2];
    _Atomic int stop;
    pthread_mutex_t lock; /* view and queue */
    fleet_view_t *view;
    char *queue[FLEET_QUEUE_MAX];
    size_t nqueue;
    /* The fleet thread's own. */
    redisContext *cmd, *sub;
    int next_sentinel;
    redisContext *sent; /* with Sentinel: subscribed to +switch-master on one sentinel */
    int sent_next;
    int64_t sent_retry_at;
    bool outage_logged;
    int backoff_ms;
    int64_t retry_at, down_since;
    int64_t prev_ms;
    uint64_t prev_bytes, prev_cpu_us;
    int64_t bps;
    double cpu;
    int64_t dup_logged_ms, bad_logged_ms;
    int clash_seen; /* writes in a row that found another instance's entry under our id */
};

static int64_t mono_ms(void) { return fleet_clock_ms(CLOCK_MONOTONIC); }
static int64_t unix_ms(void) { return fleet_clock_ms(CLOCK_REALTIME); }

int fleet_enabled(const fleet_t *f) { return f && f->enabled; }
const char *fleet_node_id(const fleet_t *f) { return f->id; }

/* ---- the view ---- */

void fleet_view_put(fleet_view_t *v)
{
    if (v && atomic_fetch_sub(&v->refs, 1) == 1)
        free(v);
}

fleet_view_t *fleet_view_get(fleet_t *f)
{
    if (!fleet_enabled(f))
        return NULL;
    pthread_mutex_lock(&f->lock);
    fleet_view_t *v = f->view;
    if (v)
        atomic_fetch_add(&v->refs, 1);
    pthread_mutex_unlock(&f->lock);
    return v;
}

static void view_set(fleet_t *f, fleet_view_t *v)
{
    fleet_pick_alternates(f->s, f->id, v);
    pthread_mutex_lock(&f->lock);
    fleet_view_t *old = f->view;
    f->view = v;
    pthread_mutex_unlock(&f->lock);
    fleet_view_put(old);
}

static int by_id(const void *a, const void *b)
{
    return strcmp(((const fleet_node_t *)a)->id, ((const fleet_node_t *)b)->id);
}

/* ---- the connections ---- */

static void drop(fleet_t *f, const char *reason)
{
    char why[256]; /* `reason` may point into a context freed below */
    snprintf(why, sizeof(why), "%s", reason && *reason ? reason : "connection lost");
    if (f->cmd)
        redisFree(f->cmd);
    if (f->sub)
        redisFree(f->sub);
    f->cmd = f->sub = NULL;
    int64_t now = mono_ms();
    if (!f->outage_logged) {
        LOGW("fleet", "Redis lost: %s (retrying; the registry and revocations wait for it)", why);
        f->outage_logged = true;
        f->down_since = now;
    }
    f->retry_at = now + f->backoff_ms;
    f->backoff_ms = f->backoff_ms * 2 > FLEET_BACKOFF_MAX ? FLEET_BACKOFF_MAX : f->backoff_ms * 2;
}

static int connect_all(fleet_t *f)
{
    char err[256];
    f->cmd = fleet_redis_connect(&f->rc, FLEET_REDIS_MS, &f->next_sentinel, err, sizeof(err));
    if (f->cmd)
        f->sub = fleet_redis_connect(&f->rc, FLEET_REDIS_MS, &f->next_sentinel, err, sizeof(err));
    if (!f->sub) {
        drop(f, err);
        return -1;
    }
    redisReply *rep = redisCommand(f->sub, "SUBSCRIBE %s", FLEET_CHANNEL);
    bool ok = rep && rep->type == REDIS_REPLY_ARRAY;
    if (rep)
        freeReplyObject(rep);
    if (!ok) {
        drop(f, "SUBSCRIBE " FLEET_CHANNEL " failed");
        return -1;
    }
    if (f->outage_logged)
        LOGI("fleet", "Redis back after %lld ms", (long long)(mono_ms() - f->down_since));
    else
        LOGI("fleet", "node '%s' joined the fleet", f->id);
    f->outage_logged = false;
    f->backoff_ms = FLEET_BACKOFF_MIN;
    return 0;
}

/* ---- Sentinel: +switch-master ---- */

/* Subscribe to +switch-master on the first sentinel that answers (from the one after the last
 * that failed), so a failover is followed as soon as the sentinels announce it rather than when
 * the old master's connection breaks. Quiet: the master connection's outage is what is logged. */
static void sentinel_connect(fleet_t *f)
{
    const redis_sentinel_cfg_t *sc = &f->rc.sentinel;
    struct timeval tv = {FLEET_REDIS_MS / 1000, (FLEET_REDIS_MS % 1000) * 1000};
    for (int k = 0; k < sc->n; k++) {
        int i = (f->sent_next + k) % sc->n;
        redisContext *c = redisConnectWithTimeout(sc->addr[i].ip, sc->addr[i].port, tv);
        bool ok = c && !c->err;
        redisReply *r = NULL;
        if (ok) {
            redisSetTimeout(c, tv);
            if (sc->password) {
                const char *argv[2] = {"AUTH", sc->password};
                r = redisCommandArgv(c, 2, argv, NULL);
                ok = r && r->type != REDIS_REPLY_ERROR;
                if (r)
                    freeReplyObject(r);
            }
        }
        if (ok) {
            r = redisCommand(c, "SUBSCRIBE +switch-master");
            ok = r && r->type == REDIS_REPLY_ARRAY;
            if (r)
                freeReplyObject(r);
        }
        if (ok) {
            f->sent = c;
            f->sent_next = i;
            return;
        }
        redisFree(c);
    }
    f->sent_next++;
    f->sent_retry_at = mono_ms() + FLEET_BACKOFF_MAX;
}

static void read_sentinel(fleet_t *f)
{
    if (redisBufferRead(f->sent) != REDIS_OK) {
        redisFree(f->sent);
        f->sent = NULL;
        f->sent_next++; /* another one next time */
        f->sent_retry_at = mono_ms() + FLEET_BACKOFF_MIN;
        return;
    }
    for (int i = 0; i < 64; i++) {
        void *r = NULL;
        if (redisGetReplyFromReader(f->sent, &r) != REDIS_OK || !r)
            return;
        redisReply *rep = r;
        redis_sentinel_addr_t to;
        if (rep->type == REDIS_REPLY_ARRAY && rep->elements == 3 &&
            rep->element[2]->type == REDIS_REPLY_STRING &&
            redis_sentinel_parse_switch(rep->element[2]->str, rep->element[2]->len,
                                        f->rc.sentinel.master, &to) == 0) {
            char buf[REDIS_SENTINEL_IP_MAX + 8];
            LOGI("fleet", "+switch-master: following the master to %s",
                 redis_sentinel_addr_str(&to, buf, sizeof(buf)));
            /* Reconnect now: the sentinels name the new master from here on. */
            if (f->cmd)
                redisFree(f->cmd);
            if (f->sub)
                redisFree(f->sub);
            f->cmd = f->sub = NULL;
            f->retry_at = mono_ms();
            f->backoff_ms = FLEET_BACKOFF_MIN;
        }
        freeReplyObject(rep);
    }
}

/* ---- events ---- */

static void apply_event(fleet_t *f, const char *msg, size_t len)
{
    fleet_event_t e;
    char err[160];
    if (fleet_event_decode(msg, len, &e, err, sizeof(err)) != 0) {
        int64_t now = mono_ms();
        if (now - f->bad_logged_ms > FLEET_DUP_LOG_MS) {
            LOGW("fleet", "ignored a malformed event on %s: %s", FLEET_CHANNEL, err);
            f->bad_logged_ms = now;
        }
        return;
    }
    /* Its origin applied it already, at once (fleet_publish_forget's contract). */
    if (strcmp(e.origin, f->instance) == 0)
        return;
    if (!f->s->cfg->realm || strcmp(e.realm, f->s->cfg->realm) != 0)
        return;
    long n =
        server_forget_user(f->s, e.has_user ? e.user : NULL, e.has_user ? e.ulen : 0, e.terminate);
    LOGI("fleet", "event from instance %.8s: forgot %s%s%s; %ld allocation(s) ended", e.origin,
         e.has_user ? "user '" : "the secret set", e.has_user ? e.user : "", e.has_user ? "'" : "",
         n < 0 ? 0 : n);
}

static void read_sub(fleet_t *f)
{
    if (redisBufferRead(f->sub) != REDIS_OK) {
        drop(f, f->sub->errstr[0] ? f->sub->errstr : "subscription closed");
        return;
    }
    for (int i = 0; i < 1024; i++) {
        void *r = NULL;
        if (redisGetReplyFromReader(f->sub, &r) != REDIS_OK) {
            drop(f, "subscription: protocol error");
            return;
        }
        if (!r)
            return;
        redisReply *rep = r;
        if (rep->type == REDIS_REPLY_ARRAY && rep->elements == 3 &&
            rep->element[0]->type == REDIS_REPLY_STRING &&
            strcmp(rep->element[0]->str, "message") == 0 &&
            rep->element[2]->type == REDIS_REPLY_STRING)
            apply_event(f, rep->element[2]->str, rep->element[2]->len);
        freeReplyObject(rep);
    }
}

static void publish_queued(fleet_t *f)
{
    char *q[FLEET_QUEUE_MAX];
    pthread_mutex_lock(&f->lock);
    size_t n = f->nqueue;
    memcpy(q, f->queue, n * sizeof(q[0]));
    f->nqueue = 0;
    pthread_mutex_unlock(&f->lock);
    for (size_t i = 0; i < n; i++) {
        if (f->cmd) {
            redisReply *rep = redisCommand(f->cmd, "PUBLISH %s %s", FLEET_CHANNEL, q[i]);
            if (!rep || rep->type == REDIS_REPLY_ERROR) {
                LOGW("fleet", "an event was not published (other nodes forget within their cache "
                              "time instead)");
                if (!rep)
                    drop(f, f->cmd->errstr);
            }
            if (rep)
                freeReplyObject(rep);
        }
        free(q[i]);
    }
}

void fleet_publish_forget(fleet_t *f, const char *user, size_t ulen, bool terminate)
{
    if (!fleet_enabled(f))
        return;
    fleet_event_t e = {.has_user = user != NULL, .terminate = terminate && user};
    snprintf(e.origin, sizeof(e.origin), "%s", f->instance);
    snprintf(e.realm, sizeof(e.realm), "%s", f->s->cfg->realm ? f->s->cfg->realm : "");
    if (user) {
        if (ulen > FLEET_USER_MAX || memchr(user, 0, ulen))
            return;
        memcpy(e.user, user, ulen);
        e.user[ulen] = 0;
        e.ulen = ulen;
    }
    char buf[FLEET_EVENT_MAX + 1];
    int n = fleet_event_encode(&e, buf, sizeof(buf));
    char *msg = n > 0 ? strdup(buf) : NULL;
    if (!msg)
        return;
    pthread_mutex_lock(&f->lock);
    bool queued = f->nqueue < FLEET_QUEUE_MAX;
    if (queued)
        f->queue[f->nqueue++] = msg;
    pthread_mutex_unlock(&f->lock);
    if (!queued) {
        free(msg);
        LOGW("fleet", "event queue full: an event was dropped");
        return;
    }
    ssize_t w = write(f->wake[1], "e", 1);
    (void)w; /* a full pipe already wakes the thread */
}

/* ---- the registry ---- */

static void measure(fleet_t *f)
{
    int64_t now = mono_ms();
    stats_snapshot_t st;
    server_stats(f->s, &st);
    /* Both paths: what the kernel path relays (kernel-offload) loads the node too. */
    uint64_t bytes = st.relay_client_to_peer_bytes + st.relay_peer_to_client_bytes +
                     st.kernel.to_peer_bytes + st.kernel.from_peer_bytes;
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    uint64_t cpu_us = (uint64_t)ru.ru_utime.tv_sec * 1000000 + (uint64_t)ru.ru_utime.tv_usec +
                      (uint64_t)ru.ru_stime.tv_sec * 1000000 + (uint64_t)ru.ru_stime.tv_usec;
    int64_t dt = now - f->prev_ms;
    if (f->prev_ms && dt > 0) {
        f->bps =
            bytes >= f->prev_bytes ? (int64_t)((bytes - f->prev_bytes) * 8000 / (uint64_t)dt) : 0;
        double cpu =
            cpu_us >= f->prev_cpu_us ? (double)(cpu_us - f->prev_cpu_us) / (dt * 1000.0) : 0;
        f->cpu = (double)(long long)(cpu * 1000 + 0.5) / 1000; /* a thousandth of a core */
    }
    f->prev_ms = now;
    f->prev_bytes = bytes;
    f->prev_cpu_us = cpu_us;
}

/* Our entry as found just before we write it again: another instance's, two writes in a row,
 * means another live process uses our node-id (once could be our own predecessor's, left by a
 * crash). Logged as an error at most every FLEET_DUP_LOG_MS. */
static void check_clash(fleet_t *f, const redisReply *rep)
{
    fleet_node_t other;
    char err[160];
    if (rep->type != REDIS_REPLY_STRING ||
        fleet_node_decode(rep->str, rep->len, &other, err, sizeof(err)) != 0 ||
        strcmp(other.instance, f->instance) == 0) {
        f->clash_seen = 0;
        return;
    }
    int64_t now = mono_ms();
    if (++f->clash_seen >= 2 && now - f->dup_logged_ms > FLEET_DUP_LOG_MS) {
        LOGE("fleet",
             "node-id '%s' is used by another process too (instance %s, ours %s): give every "
             "node its own node-id",
             f->id, other.instance, f->instance);
        f->dup_logged_ms = now;
    }
}

/* With `write`, write our entry; then read every member of turn/nodes. Returns the ids
 * (freeReplyObject), or NULL (the connection was dropped). */
static redisReply *write_entry(fleet_t *f, bool write)
{
    fleet_node_t me;
    fleet_local(f->s, &me);
    snprintf(me.id, sizeof(me.id), "%s", f->id);
    snprintf(me.instance, sizeof(me.instance), "%s", f->instance);
    me.started_ms = f->started_ms;
    me.bps = f->bps;
    me.cpu = f->cpu;
    char json[FLEET_ENTRY_MAX + 1];
    if (fleet_node_encode(&me, json, sizeof(json)) < 0) {
        LOGW("fleet", "this node's entry does not fit in %d bytes", FLEET_ENTRY_MAX);
        return NULL;
    }
    char key[sizeof(FLEET_KEY_NODE) + FLEET_ID_MAX], ttl[16], exp[24], old[24], max[16];
    snprintf(key, sizeof(key), FLEET_KEY_NODE "%s", f->id);
    snprintf(ttl, sizeof(ttl), "%d", FLEET_TTL_MS);
    int64_t now = unix_ms();
    snprintf(exp, sizeof(exp), "%lld", (long long)(now + FLEET_TTL_MS));
    /* Members whose entries expired are removed by the readers that find them nil; this only
     * sweeps what nobody read for a minute. */
    snprintf(old, sizeof(old), "%lld", (long long)(now - 60000));
    snprintf(max, sizeof(max), "%d", FLEET_NODES_MAX - 1);
    const char *set[5] = {"SET", key, json, "PX", ttl};
    const char *zadd[4] = {"ZADD", FLEET_KEY_NODES, exp, f->id};
    const char *zrem[4] = {"ZREMRANGEBYSCORE", FLEET_KEY_NODES, "-inf", old};
    const char *zrange[4] = {"ZRANGE", FLEET_KEY_NODES, "0", max};
    /* GET before SET: what another process with our node-id wrote since our last write. */
    const char *get[2] = {"GET", key};
    /* The cluster quota's hash of this node (core/cluster_quota.h) lives as long as the entry:
     * a crashed node's share of every user's quota goes with it. */
    char qkey[sizeof(CLUSTER_QUOTA_KEY) + FLEET_ID_MAX];
    snprintf(qkey, sizeof(qkey), CLUSTER_QUOTA_KEY "%s", f->id);
    const char *pexpire[3] = {"PEXPIRE", qkey, ttl};
    int n = 0;
    if (write) {
        redisAppendCommandArgv(f->cmd, 2, get, NULL);
        redisAppendCommandArgv(f->cmd, 5, set, NULL);
        redisAppendCommandArgv(f->cmd, 4, zadd, NULL);
        redisAppendCommandArgv(f->cmd, 4, zrem, NULL);
        redisAppendCommandArgv(f->cmd, 3, pexpire, NULL);
        n = 5;
    }
    redisAppendCommandArgv(f->cmd, 4, zrange, NULL);
    n++;
    redisReply *rep[6] = {0};
    const char *why = NULL;
    for (int i = 0; i < n; i++) {
        void *r = NULL;
        if (redisGetReply(f->cmd, &r) != REDIS_OK) {
            why = f->cmd->errstr[0] ? f->cmd->errstr : "no answer";
            break;
        }
        rep[i] = r;
        if (rep[i]->type == REDIS_REPLY_ERROR && !why)
            why = rep[i]->str; /* READONLY: a demoted master */
    }
    if (!why && write)
        check_clash(f, rep[0]);
    redisReply *ids = NULL;
    if (!why && rep[n - 1]->type == REDIS_REPLY_ARRAY) {
        ids = rep[n - 1];
        rep[n - 1] = NULL;
    }
    char buf[256];
    if (why)
        snprintf(buf, sizeof(buf), "%s", why);
    for (int i = 0; i < 6; i++)
        if (rep[i])
            freeReplyObject(rep[i]);
    if (why)
        drop(f, buf);
    return ids;
}

static void read_view(fleet_t *f, const redisReply *ids)
{
    size_t n = ids->elements;
    const char **argv = calloc(n + 1, sizeof(*argv));
    char(*keys)[sizeof(FLEET_KEY_NODE) + FLEET_ID_MAX + 1] = calloc(n + 1, sizeof(*keys));
    fleet_view_t *v = calloc(1, sizeof(*v) + n * sizeof(fleet_node_t));
    if (!argv || !keys || !v)
        goto out;
    argv[0] = "MGET";
    size_t nk = 0;
    for (size_t i = 0; i < n; i++) {
        const redisReply *e = ids->element[i];
        if (e->type != REDIS_REPLY_STRING || !fleet_id_valid(e->str, e->len))
            continue;
        snprintf(keys[nk], sizeof(keys[nk]), FLEET_KEY_NODE "%s", e->str);
        argv[1 + nk] = keys[nk];
        nk++;
    }
    redisReply *rep = nk ? redisCommandArgv(f->cmd, (int)nk + 1, argv, NULL) : NULL;
    if (nk && !rep) {
        drop(f, f->cmd->errstr);
        goto out;
    }
    atomic_init(&v->refs, 1);
    v->read_ms = unix_ms();
    int64_t now = mono_ms();
    for (size_t i = 0; rep && rep->type == REDIS_REPLY_ARRAY && i < rep->elements && i < nk; i++) {
        const redisReply *e = rep->element[i];
        const char *id = keys[i] + strlen(FLEET_KEY_NODE);
        if (e->type != REDIS_REPLY_STRING) {
            /* Expired: that node is gone. */
            redisReply *z = redisCommand(f->cmd, "ZREM %s %s", FLEET_KEY_NODES, id);
            if (z)
                freeReplyObject(z);
            continue;
        }
        fleet_node_t *node = &v->nodes[v->n];
        char err[160];
        if (fleet_node_decode(e->str, e->len, node, err, sizeof(err)) != 0 ||
            strcmp(node->id, id) != 0) {
            if (now - f->bad_logged_ms > FLEET_DUP_LOG_MS) {
                LOGW("fleet", "ignored the registry entry of '%s': %s", id,
                     strcmp(node->id, id) ? "its id is not its key's" : err);
                f->bad_logged_ms = now;
            }
            continue;
        }
        v->n++;
    }
    if (rep)
        freeReplyObject(rep);
    qsort(v->nodes, v->n, sizeof(v->nodes[0]), by_id);
    view_set(f, v);
    v = NULL;
out:
    free(v);
    free(keys);
    free(argv);
}

static void tick(fleet_t *f, bool write)
{
    if (write)
        measure(f);
    if (!f->cmd) {
        /* No fresh view for longer than an entry lives: the last one would show dead nodes. */
        if (f->outage_logged && mono_ms() - f->down_since > FLEET_TTL_MS)
            view_set(f, NULL);
        return;
    }
    redisReply *ids = write_entry(f, write);
    if (ids) {
        read_view(f, ids);
        freeReplyObject(ids);
    }
}

static void *run(void *arg)
{
    fleet_t *f = arg;
    int64_t next_tick = mono_ms(), next_write = next_tick;
    while (!atomic_load(&f->stop)) {
        int64_t now = mono_ms();
        if (!f->cmd && now >= f->retry_at)
            connect_all(f);
        if (f->rc.sentinel.n > 0 && !f->sent && mono_ms() >= f->sent_retry_at)
            sentinel_connect(f);
        now = mono_ms();
        if (now >= next_tick) {
            /* Half a read period early: ticks drift by the time they take. */
            bool write = now + FLEET_READ_MS / 2 >= next_write;
            tick(f, write);
            next_tick = now + FLEET_READ_MS;
            if (write)
                next_write = now + FLEET_PERIOD_MS;
        }
        publish_queued(f);
        now = mono_ms();
        int64_t until = next_tick;
        if (!f->cmd && f->retry_at < until)
            until = f->retry_at;
        if (f->rc.sentinel.n > 0 && !f->sent && f->sent_retry_at < until)
            until = f->sent_retry_at;
        int timeout = until > now ? (int)(until - now) : 0;
        struct pollfd p[3] = {{.fd = f->wake[0], .events = POLLIN},
                              {.fd = f->sub ? f->sub->fd : -1, .events = POLLIN},
                              {.fd = f->sent ? f->sent->fd : -1, .events = POLLIN}};
        int rc = poll(p, 3, timeout);
        if (rc <= 0)
            continue;
        if (p[0].revents) {
            char b[64];
            while (read(f->wake[0], b, sizeof(b)) > 0) {
            }
        }
        if (f->sub && p[1].revents)
            read_sub(f);
        if (f->sent && p[2].revents)
            read_sentinel(f);
    }
    publish_queued(f);
    if (f->cmd) {
        /* An orderly stop leaves the registry at once, not after the TTL; only the entry that is
         * ours (another process may wrongly share our node-id: its entry stays). */
        static const char lua[] =
            "local v = redis.call('GET', KEYS[1]) "
            "if v and string.find(v, ARGV[1], 1, true) then "
            "redis.call('DEL', KEYS[1], KEYS[3]) redis.call('ZREM', KEYS[2], ARGV[2]) end "
            "return 0";
        char key[sizeof(FLEET_KEY_NODE) + FLEET_ID_MAX];
        snprintf(key, sizeof(key), FLEET_KEY_NODE "%s", f->id);
        char qkey[sizeof(CLUSTER_QUOTA_KEY) + FLEET_ID_MAX];
        snprintf(qkey, sizeof(qkey), CLUSTER_QUOTA_KEY "%s", f->id);
        const char *argv[8] = {"EVAL", lua, "3", key, FLEET_KEY_NODES, qkey, f->instance, f->id};
        redisReply *r = redisCommandArgv(f->cmd, 8, argv, NULL);
        if (r)
            freeReplyObject(r);
    }
    if (f->cmd)
        redisFree(f->cmd);
    if (f->sub)
        redisFree(f->sub);
    if (f->sent)
        redisFree(f->sent);
    f->cmd = f->sub = f->sent = NULL;
    return NULL;
}

int fleet_start(server_t *s, fleet_t **out, char *err, size_t errlen)
{
    fleet_t *f = calloc(1, sizeof(*f));
    if (!f) {
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    f->s = s;
    f->wake[0] = f->wake[1] = -1;
    cfg_node_id(s->cfg, f->id);
    uint8_t inst[FLEET_INSTANCE_LEN / 2];
    rand_bytes(inst, sizeof(inst));
    for (size_t i = 0; i < sizeof(inst); i++)
        snprintf(f->instance + 2 * i, 3, "%02x", inst[i]);
    f->started_ms = unix_ms();
    f->backoff_ms = FLEET_BACKOFF_MIN;
    pthread_mutex_init(&f->lock, NULL);
    *out = f;
    if (!s->cfg->redis_userdb)
        return 0;
    int rc;
    if (creds_redis_cfg_parse(s->cfg->redis_userdb, &f->rc, err, errlen) != 0) {
        rc = -EINVAL;
        goto fail;
    }
    f->rc_ready = true;
    if (pipe2(f->wake, O_NONBLOCK | O_CLOEXEC) != 0) {
        rc = -errno;
        snprintf(err, errlen, "fleet: pipe: %s", strerror(errno));
        goto fail;
    }
    f->enabled = true;
    if ((rc = -pthread_create(&f->thread, NULL, run, f)) != 0) {
        snprintf(err, errlen, "fleet: cannot start its thread: %s", strerror(-rc));
        goto fail;
    }
    f->running = true;
    return 0;
fail:
    *out = NULL;
    f->enabled = false;
    fleet_stop(f);
    return rc;
}

void fleet_stop(fleet_t *f)
{
    if (!f)
        return;
    if (f->running) {
        atomic_store(&f->stop, 1);
        ssize_t w = write(f->wake[1], "s", 1);
        (void)w;
        pthread_join(f->thread, NULL);
        fleet_pick_alternates(f->s, f->id, NULL); /* workers outlive us: the static lists */
    }
    for (size_t i = 0; i < f->nqueue; i++)
        free(f->queue[i]);
    fleet_view_put(f->view);
    if (f->wake[0] >= 0)
        close(f->wake[0]);
    if (f->wake[1] >= 0)
        close(f->wake[1]);
    if (f->rc_ready)
        creds_redis_cfg_free(&f->rc);
    pthread_mutex_destroy(&f->lock);
    free(f);
}
