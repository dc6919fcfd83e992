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

/* KEYS: turn/nodes, our hash. ARGV: field, user-quota (0: unlimited), TTL ms, our node-id. Our
 * own count is always included (our registry entry may not be written yet); another node's only
 * while its registry entry lives. Returns the user's new count here, or -1 (refused). */
static const char take_lua[] =
    "local f, q = ARGV[1], tonumber(ARGV[2]) "
    "local n = tonumber(redis.call('HGET', KEYS[2], f) or '0') or 0 "
    "if q > 0 then "
    "for _, id in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do "
    "if id ~= ARGV[4] and redis.call('EXISTS', 'turn/node/' .. id) == 1 then "
    "n = n + (tonumber(redis.call('HGET', 'turn/quota/' .. id, f) or '0') or 0) end end "
    "if n >= q then return -1 end end "
    "local r = redis.call('HINCRBY', KEYS[2], f, 1) "
    "redis.call('PEXPIRE', KEYS[2], ARGV[3]) "
    "return r";
/* KEYS: our hash. ARGV: field. Never below 0 (a Redis that restarted forgot our counts). */
static const char release_lua[] =
    "local n = tonumber(redis.call('HGET', KEYS[1], ARGV[1]) or '0') or 0 "
    "if n <= 1 then redis.call('HDEL', KEYS[1], ARGV[1]) "
    "else redis.call('HINCRBY', KEYS[1], ARGV[1], -1) end return n";

typedef struct cq_req {
    list_t link; /* on inflight (sent, oldest first) or backlog (releases not sent yet) */
    struct cluster_quota *c;
    bool take;
    bool answered; /* the engine has its answer (or cancelled): a late OK is given back */
    bool noscript; /* sent again as EVAL */
    quota_cluster_cb cb;
    void *arg;
    uint64_t sent_ms;
    size_t flen;
    char field[];
} cq_req_t;

struct cluster_quota {
    uv_loop_t *loop;
    const cfg_t *cfg;
    _Atomic(const cfg_t *) *live;
    stats_t *stats;
    creds_redis_cfg_t rcfg;
    creds_stats_t rstats;
    creds_redis_t *redis;
    uv_timer_t timer;
    list_t inflight, backlog;
    size_t nbacklog;
    bool closing;
    bool degraded; /* answering LOCAL since the last logged outage */
    char key[sizeof(CLUSTER_QUOTA_KEY) + 64];
    char id[65];
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

/* The fleet registry's name for this node: node-id, else the host name made valid (the same rule
 * as fleet_default_id, which core cannot include). */
static void node_id(const cfg_t *cfg, char out[65])
{
    if (cfg->node_id) {
        snprintf(out, 65, "%s", cfg->node_id);
        return;
    }
    char h[256] = "";
    if (gethostname(h, sizeof(h) - 1) != 0 || !h[0])
        snprintf(h, sizeof(h), "uturn");
    h[64] = 0;
    for (char *p = h; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
              *p == '.' || *p == '_' || *p == '-'))
            *p = '-';
    snprintf(out, 65, "%s", h);
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

static void on_reply(void *arg, int result, long long value, const char *err);

static int send_req(cluster_quota_t *c, cq_req_t *q)
{
    char quota[24], ttl[16];
    const cfg_t *live = atomic_load(c->live);
    snprintf(quota, sizeof(quota), "%d", live->user_quota);
    snprintf(ttl, sizeof(ttl), "%d", CLUSTER_QUOTA_TTL_MS);
    const char *argv[9];
    size_t len[9];
    int argc;
    if (q->take) {
        argv[0] = q->noscript ? "EVAL" : "EVALSHA";
        argv[1] = q->noscript ? take_lua : c->take_sha;
        argv[2] = "2";
        argv[3] = "turn/nodes";
        argv[4] = c->key;
        argv[5] = q->field;
        argv[6] = quota;
        argv[7] = ttl;
        argv[8] = c->id;
        argc = 9;
    } else {
        argv[0] = q->noscript ? "EVAL" : "EVALSHA";
        argv[1] = q->noscript ? release_lua : c->release_sha;
        argv[2] = "1";
        argv[3] = c->key;
        argv[4] = q->field;
        argc = 5;
    }
    for (int i = 0; i < argc; i++)
        len[i] = i == (q->take ? 5 : 4) ? q->flen : strlen(argv[i]);
    if (creds_redis_command_int(c->redis, argc, argv, len, on_reply, q) != 0)
        return -1;
    q->sent_ms = uv_now(c->loop);
    list_insert_tail(&c->inflight, &q->link);
    return 0;
}

static cq_req_t *req_new(cluster_quota_t *c, bool take, const char *user, size_t ulen)
{
    const char *realm = c->cfg->realm ? c->cfg->realm : "";
    size_t rlen = strlen(realm);
    cq_req_t *q = calloc(1, sizeof(*q) + rlen + 1 + ulen + 1);
    if (!q)
        return NULL;
    q->c = c;
    q->take = take;
    memcpy(q->field, realm, rlen);
    q->field[rlen] = '/';
    memcpy(q->field + rlen + 1, user, ulen);
    q->flen = rlen + 1 + ulen;
    return q;
}

/* A release, or a unit a take got after its answer was given: sent now, else kept for later. */
static void release_field(cluster_quota_t *c, cq_req_t *q)
{
    q->take = false;
    q->noscript = false;
    q->answered = true;
    if (creds_redis_state(c->redis) == CREDS_REDIS_UP && send_req(c, q) == 0)
        return;
    if (c->nbacklog >= CLUSTER_QUOTA_BACKLOG) {
        LOGW("cluster_quota",
             "%zu releases wait for Redis: one dropped (its user stays counted "
             "until this node's hash expires)",
             c->nbacklog);
        free(q);
        return;
    }
    list_insert_tail(&c->backlog, &q->link);
    c->nbacklog++;
}

static void answer(cq_req_t *q, int ans)
{
    if (q->answered)
        return;
    q->answered = true;
    if (q->cb)
        q->cb(q->arg, ans);
}

static void on_reply(void *arg, int result, long long value, const char *err)
{
    cq_req_t *q = arg;
    cluster_quota_t *c = q->c;
    list_remove(&q->link);
    if (result == CREDS_REDIS_CMD_ERROR && err && strncmp(err, "NOSCRIPT", 8) == 0 &&
        !q->noscript) {
        q->noscript = true;
        if (send_req(c, q) == 0)
            return;
    }
    if (!q->take) {
        free(q);
        return;
    }
    if (result != CREDS_REDIS_CMD_OK) {
        /* A lost take may have run: its unit stays counted (the safe side) until our hash goes. */
        if (!q->answered)
            fallback(c, result == CREDS_REDIS_CMD_LOST ? "Redis connection lost"
                                                       : (err ? err : "Redis error"));
        answer(q, QUOTA_CLUSTER_LOCAL);
        free(q);
        return;
    }
    if (c->degraded && !q->answered) {
        c->degraded = false;
        LOGI("cluster_quota", "Redis answers again: user-quota counts the whole fleet");
    }
    if (value < 0) {
        answer(q, QUOTA_CLUSTER_REFUSED);
        free(q);
    } else if (q->answered) {
        release_field(c, q); /* answered LOCAL on the deadline, or cancelled: give it back */
    } else {
        answer(q, QUOTA_CLUSTER_OK);
        free(q);
    }
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
    if (send_req(c, q) != 0) {
        free(q);
        fallback(c, "Redis away");
        return QUOTA_CLUSTER_LOCAL;
    }
    return QUOTA_CLUSTER_PENDING;
}

static void op_release(void *env, const char *user, size_t ulen)
{
    cluster_quota_t *c = env;
    if (c->closing)
        return;
    cq_req_t *q = req_new(c, false, user, ulen);
    if (q)
        release_field(c, q);
}

static void op_cancel(void *env, void *arg)
{
    cluster_quota_t *c = env;
    LIST_FOREACH_SAFE(n, tmp, &c->inflight)
    {
        cq_req_t *q = container_of(n, cq_req_t, link);
        if (q->take && q->arg == arg && !q->answered) {
            q->answered = true; /* its OK, if it comes, is given back */
            q->cb = NULL;
        }
    }
}

/* Every 50 ms: takes past their deadline answer LOCAL; releases kept while Redis was away go. */
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
    while (c->nbacklog && creds_redis_state(c->redis) == CREDS_REDIS_UP) {
        cq_req_t *q = LIST_FIRST(&c->backlog, cq_req_t, link);
        list_remove(&q->link);
        c->nbacklog--;
        if (send_req(c, q) != 0) {
            list_insert_head(&c->backlog, &q->link);
            c->nbacklog++;
            break;
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
    list_init(&c->inflight);
    list_init(&c->backlog);
    node_id(cfg, c->id);
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
    free_list(&c->inflight);
    free_list(&c->backlog);
    creds_redis_cfg_free(&c->rcfg);
    free(c);
}

void cluster_quota_close(cluster_quota_t *c)
{
    if (!c || c->closing)
        return;
    c->closing = true;
    creds_redis_close(c->redis);
    c->redis = NULL;
    uv_close((uv_handle_t *)&c->timer, on_closed);
}
