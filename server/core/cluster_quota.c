/* cluster_quota.c - the worker's side of the cluster-wide user-quota: two Lua scripts over its
 * own Redis connection, a 200 ms answer deadline, and the local fallback (see cluster_quota.h).
 */
#include "cluster_quota.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "creds_redis.h"
#include "list.h"
#include "log.h"
#include "util.h"

/* KEYS: turn/nodes, our hash. ARGV: user-quota (0: unlimited), TTL ms, our node-id, then one
 * field per take (a loop iteration's takes go as one call). Our own count is always included (our
 * registry entry may not be written yet); another node's only while its registry entry lives.
 * Returns one character per field: '1' taken, '0' refused. */
static const char take_lua[] =
    "local q = tonumber(ARGV[1]) local others, out = {}, {} "
    "if q > 0 then "
    "for _, id in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do "
    "if id ~= ARGV[3] and redis.call('EXISTS', 'turn/node/' .. id) == 1 then "
    "others[#others + 1] = 'turn/quota/' .. id end end end "
    "for i = 4, #ARGV do "
    "local f = ARGV[i] "
    "local n = tonumber(redis.call('HGET', KEYS[2], f) or '0') or 0 "
    "for _, k in ipairs(others) do n = n + (tonumber(redis.call('HGET', k, f) or '0') or 0) end "
    "if q > 0 and n >= q then out[#out + 1] = '0' "
    "else redis.call('HINCRBY', KEYS[2], f, 1) out[#out + 1] = '1' end end "
    "redis.call('PEXPIRE', KEYS[2], ARGV[2]) "
    "return table.concat(out)";
/* KEYS: our hash. ARGV: one field per release. Never below 0 (a Redis that restarted forgot our
 * counts). */
static const char release_lua[] =
    "for i = 1, #ARGV do "
    "local n = tonumber(redis.call('HGET', KEYS[1], ARGV[i]) or '0') or 0 "
    "if n <= 1 then redis.call('HDEL', KEYS[1], ARGV[i]) "
    "else redis.call('HINCRBY', KEYS[1], ARGV[i], -1) end end return 0";

/* Fields in one script call: bounds the argv and the time Redis spends in one script. */
#define CQ_BATCH_MAX 256

typedef struct cq_req {
    list_t link; /* on takes/releases (queued), or inflight (sent, oldest first) */
    bool take;
    bool answered; /* the engine has its answer (or cancelled): a late unit is given back */
    quota_cluster_cb cb;
    void *arg;
    uint64_t sent_ms;
    size_t flen;
    char field[];
} cq_req_t;

/* One script call: the requests it carries (each also on inflight, for the deadline). */
typedef struct {
    list_t link; /* on batches until its reply (freed at close: no reply comes after it) */
    struct cluster_quota *c;
    bool take;
    bool noscript; /* sent again as EVAL */
    size_t n;
    cq_req_t *r[];
} cq_batch_t;

struct cluster_quota {
    uv_loop_t *loop;
    const cfg_t *cfg;
    _Atomic(const cfg_t *) *live;
    stats_t *stats;
    creds_redis_cfg_t rcfg;
    creds_stats_t rstats;
    creds_redis_t *redis;
    uv_timer_t timer;
    uv_check_t check; /* sends what this loop iteration queued, as one call per kind */
    list_t takes, releases, inflight;
    list_t batches;   /* cq_batch_t sent, reply not in yet */
    size_t nreleases; /* queued: kept while Redis is away, up to CLUSTER_QUOTA_BACKLOG */
    bool closing;
    bool degraded; /* answering LOCAL since the last logged outage */
    char key[sizeof(CLUSTER_QUOTA_KEY) + 64];
    char id[CFG_NODE_ID_MAX + 1];
    char take_sha[41], release_sha[41];
};

static void sha1_hex(const char *s, char out[41])
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int n = 0;
    if (EVP_Digest(s, strlen(s), md, &n, EVP_sha1(), NULL) != 1 || n != 20) {
        out[0] = '\0'; /* EVALSHA of "" answers NOSCRIPT: EVAL then */
        return;
    }
    for (unsigned i = 0; i < n; i++)
        snprintf(out + 2 * i, 3, "%02x", md[i]);
}

static void fallback(cluster_quota_t *c, const char *why)
{
    stats_inc(&c->stats->cluster_quota_fallbacks);
    if (!c->degraded) {
        c->degraded = true;
        LOGW("cluster_quota",
             "%s: user-quota counts this node's allocations only until Redis answers again", why);
    }
}

static void answer(cq_req_t *q, int ans)
{
    if (q->answered)
        return;
    q->answered = true;
    if (q->cb)
        q->cb(q->arg, ans);
}

/* A unit to give back (a release, or a take answered before its unit came): queued for the next
 * call, kept while Redis is away, up to a bound. */
static void queue_release(cluster_quota_t *c, cq_req_t *q)
{
    if (c->nreleases >= CLUSTER_QUOTA_BACKLOG) {
        LOGW("cluster_quota",
             "%zu releases wait for Redis: one dropped (its user stays counted until this "
             "node's hash expires)",
             c->nreleases);
        free(q);
        return;
    }
    q->take = false;
    q->answered = true;
    list_insert_tail(&c->releases, &q->link);
    c->nreleases++;
}

static void on_reply(void *arg, int result, long long value, const char *str, size_t len);

static int send_batch(cluster_quota_t *c, cq_batch_t *b)
{
    char quota[24], ttl[16];
    snprintf(quota, sizeof(quota), "%d", atomic_load(c->live)->user_quota);
    snprintf(ttl, sizeof(ttl), "%d", CLUSTER_QUOTA_TTL_MS);
    const char *argv[CQ_BATCH_MAX + 7];
    size_t len[CQ_BATCH_MAX + 7];
    int argc = 0;
    argv[argc++] = b->noscript ? "EVAL" : "EVALSHA";
    if (b->take) {
        argv[argc++] = b->noscript ? take_lua : c->take_sha;
        argv[argc++] = "2";
        argv[argc++] = "turn/nodes";
        argv[argc++] = c->key;
        argv[argc++] = quota;
        argv[argc++] = ttl;
        argv[argc++] = c->id;
    } else {
        argv[argc++] = b->noscript ? release_lua : c->release_sha;
        argv[argc++] = "1";
        argv[argc++] = c->key;
    }
    for (int i = 0; i < argc; i++)
        len[i] = strlen(argv[i]);
    for (size_t i = 0; i < b->n; i++) {
        argv[argc] = b->r[i]->field;
        len[argc++] = b->r[i]->flen;
    }
    return creds_redis_command_int(c->redis, argc, argv, len, on_reply, b);
}

/* Up to CQ_BATCH_MAX queued requests of `from` as one call. Returns 0, or -1 (nothing sent: they
 * stay queued). */
static int flush_one(cluster_quota_t *c, list_t *from, bool take)
{
    cq_batch_t *b = malloc(sizeof(*b) + CQ_BATCH_MAX * sizeof(cq_req_t *));
    if (!b)
        return -1;
    b->c = c;
    b->take = take;
    b->noscript = false;
    b->n = 0;
    b->link.prev = b->link.next = NULL; /* on no list yet */
    list_t *n = from->next;
    while (n != from && b->n < CQ_BATCH_MAX) {
        b->r[b->n++] = container_of(n, cq_req_t, link);
        n = n->next;
    }
    if (send_batch(c, b) != 0) {
        free(b);
        return -1;
    }
    list_insert_tail(&c->batches, &b->link);
    uint64_t now = uv_now(c->loop);
    for (size_t i = 0; i < b->n; i++) {
        list_remove(&b->r[i]->link);
        b->r[i]->sent_ms = now;
        list_insert_tail(&c->inflight, &b->r[i]->link);
    }
    if (!take)
        c->nreleases -= b->n;
    return 0;
}

/* Every loop iteration: what it queued goes out. Takes that cannot go answer LOCAL now (never
 * from inside take); releases wait for Redis. */
static void on_check(uv_check_t *h)
{
    cluster_quota_t *c = h->data;
    bool up = creds_redis_state(c->redis) == CREDS_REDIS_UP;
    while (!list_empty(&c->takes)) {
        if (up && flush_one(c, &c->takes, true) == 0)
            continue;
        /* Answering replays requests, which may queue takes: detach the list first. */
        list_t now;
        list_init(&now);
        while (!list_empty(&c->takes)) {
            list_t *n = c->takes.next;
            list_remove(n);
            list_insert_tail(&now, n);
        }
        while (!list_empty(&now)) {
            cq_req_t *q = LIST_FIRST(&now, cq_req_t, link);
            list_remove(&q->link);
            if (!q->answered)
                fallback(c, "Redis away");
            answer(q, QUOTA_CLUSTER_LOCAL);
            free(q);
        }
        up = creds_redis_state(c->redis) == CREDS_REDIS_UP;
    }
    while (up && !list_empty(&c->releases) && flush_one(c, &c->releases, false) == 0) {
    }
}

static void on_reply(void *arg, int result, long long value, const char *str, size_t len)
{
    (void)value;
    cq_batch_t *b = arg;
    cluster_quota_t *c = b->c;
    list_remove(&b->link);
    if (result == CREDS_REDIS_CMD_ERROR && str && strncmp(str, "NOSCRIPT", 8) == 0 &&
        !b->noscript) {
        b->noscript = true;
        if (send_batch(c, b) == 0) {
            list_insert_tail(&c->batches, &b->link);
            return;
        }
    }
    bool ok = result == CREDS_REDIS_CMD_OK && b->take && str && len == b->n;
    const char *why = result == CREDS_REDIS_CMD_LOST           ? "Redis connection lost"
                      : result == CREDS_REDIS_CMD_ERROR && str ? str
                                                               : "Redis answered nonsense";
    if (ok && c->degraded) {
        c->degraded = false;
        LOGI("cluster_quota", "Redis answers again: user-quota counts the whole fleet");
    }
    for (size_t i = 0; i < b->n; i++) {
        cq_req_t *q = b->r[i];
        list_remove(&q->link);
        if (!b->take) {
            free(q);
        } else if (!ok) {
            /* A lost take may have run: its unit stays counted (the safe side) until our hash
             * goes. */
            if (!q->answered)
                fallback(c, why);
            answer(q, QUOTA_CLUSTER_LOCAL);
            free(q);
        } else if (str[i] != '1') {
            answer(q, QUOTA_CLUSTER_REFUSED);
            free(q);
        } else if (q->answered) {
            queue_release(c, q); /* answered LOCAL on the deadline, or cancelled */
        } else {
            answer(q, QUOTA_CLUSTER_OK);
            free(q);
        }
    }
    free(b);
}

static cq_req_t *req_new(cluster_quota_t *c, bool take, const char *user, size_t ulen)
{
    const char *realm = c->cfg->realm ? c->cfg->realm : "";
    size_t rlen = strlen(realm);
    cq_req_t *q = calloc(1, sizeof(*q) + rlen + 1 + ulen + 1);
    if (!q)
        return NULL;
    q->take = take;
    memcpy(q->field, realm, rlen);
    q->field[rlen] = '/';
    memcpy(q->field + rlen + 1, user, ulen);
    q->flen = rlen + 1 + ulen;
    return q;
}

static int op_take(void *env, const char *user, size_t ulen, quota_cluster_cb cb, void *arg)
{
    cluster_quota_t *c = env;
    if (c->closing)
        return QUOTA_CLUSTER_LOCAL;
    if (creds_redis_state(c->redis) != CREDS_REDIS_UP) {
        fallback(c, "Redis away");
        return QUOTA_CLUSTER_LOCAL;
    }
    cq_req_t *q = req_new(c, true, user, ulen);
    if (!q)
        return QUOTA_CLUSTER_LOCAL;
    q->cb = cb;
    q->arg = arg;
    list_insert_tail(&c->takes, &q->link);
    return QUOTA_CLUSTER_PENDING;
}

static void op_release(void *env, const char *user, size_t ulen)
{
    cluster_quota_t *c = env;
    if (c->closing)
        return;
    cq_req_t *q = req_new(c, false, user, ulen);
    if (q)
        queue_release(c, q);
}

static void cancel_in(list_t *l, void *arg)
{
    LIST_FOREACH(n, l)
    {
        cq_req_t *q = container_of(n, cq_req_t, link);
        if (q->take && q->arg == arg && !q->answered) {
            q->answered = true; /* its unit, if it comes, is given back */
            q->cb = NULL;
        }
    }
}

static void op_cancel(void *env, void *arg)
{
    cluster_quota_t *c = env;
    cancel_in(&c->takes, arg);
    cancel_in(&c->inflight, arg);
}

/* Every 50 ms: takes past their deadline answer LOCAL (their unit, if it comes, goes back). */
static void on_timer(uv_timer_t *t)
{
    cluster_quota_t *c = t->data;
    uint64_t now = uv_now(c->loop);
    LIST_FOREACH_SAFE(n, tmp, &c->inflight)
    {
        cq_req_t *q = container_of(n, cq_req_t, link);
        if (now - q->sent_ms < CLUSTER_QUOTA_WAIT_MS)
            break; /* oldest first */
        if (q->take && !q->answered) {
            fallback(c, "Redis slow (no answer within 200 ms)");
            answer(q, QUOTA_CLUSTER_LOCAL);
        }
    }
}

int cluster_quota_new(uv_loop_t *loop, const cfg_t *cfg, _Atomic(const cfg_t *) *live,
                      stats_t *stats, quota_cluster_ops_t *ops, cluster_quota_t **out, char *err,
                      size_t errlen)
{
    *out = NULL;
    memset(ops, 0, sizeof(*ops));
    if (!cfg->cluster_quota || !cfg->redis_userdb || !*cfg->redis_userdb)
        return 0;
    cluster_quota_t *c = calloc(1, sizeof(*c));
    if (!c) {
        snprintf(err, errlen, "cluster quota: out of memory");
        return -ENOMEM;
    }
    c->loop = loop;
    c->cfg = cfg;
    c->live = live;
    c->stats = stats;
    list_init(&c->takes);
    list_init(&c->releases);
    list_init(&c->inflight);
    list_init(&c->batches);
    cfg_node_id(cfg, c->id);
    snprintf(c->key, sizeof(c->key), CLUSTER_QUOTA_KEY "%s", c->id);
    sha1_hex(take_lua, c->take_sha);
    sha1_hex(release_lua, c->release_sha);
    char perr[256];
    if (creds_redis_cfg_parse(cfg->redis_userdb, &c->rcfg, perr, sizeof(perr)) != 0) {
        snprintf(err, errlen, "redis-userdb: %s", perr);
        free(c);
        return -EINVAL;
    }
    c->rstats.redis_state = -1;
    int rc = creds_redis_new(loop, &c->rcfg, &c->rstats, &c->redis);
    if (rc != 0) {
        snprintf(err, errlen, "cluster quota: %s", strerror(-rc));
        creds_redis_cfg_free(&c->rcfg);
        free(c);
        return rc;
    }
    uv_timer_init(loop, &c->timer);
    c->timer.data = c;
    uv_timer_start(&c->timer, on_timer, 50, 50);
    uv_unref((uv_handle_t *)&c->timer);
    uv_check_init(loop, &c->check);
    c->check.data = c;
    uv_check_start(&c->check, on_check);
    uv_unref((uv_handle_t *)&c->check);
    ops->take = op_take;
    ops->release = op_release;
    ops->cancel = op_cancel;
    ops->env = c;
    *out = c;
    return 0;
}

static void free_list(list_t *l)
{
    while (!list_empty(l)) {
        cq_req_t *q = LIST_FIRST(l, cq_req_t, link);
        list_remove(&q->link);
        free(q);
    }
}

static void on_closed(uv_handle_t *h)
{
    cluster_quota_t *c = h->data;
    free_list(&c->takes);
    free_list(&c->releases);
    free_list(&c->inflight);
    while (!list_empty(&c->batches)) {
        cq_batch_t *b = LIST_FIRST(&c->batches, cq_batch_t, link);
        list_remove(&b->link);
        free(b);
    }
    creds_redis_cfg_free(&c->rcfg);
    free(c);
}

/* The check first, then the timer: the memory goes in the last close callback. */
static void on_check_closed(uv_handle_t *h)
{
    cluster_quota_t *c = h->data;
    uv_close((uv_handle_t *)&c->timer, on_closed);
}

void cluster_quota_close(cluster_quota_t *c)
{
    if (!c || c->closing)
        return;
    c->closing = true;
    creds_redis_close(c->redis);
    c->redis = NULL;
    uv_close((uv_handle_t *)&c->check, on_check_closed);
}
