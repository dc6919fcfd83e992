/* creds.c - long-term credential keys for a username: static users, TURN REST secrets and Redis
 * users, with a per-worker cache that keeps auth off the network and off the loop's critical path.
 *
 * RFC 8489 §9.2 (MD5 and SHA-256 long-term keys, SASLprep of the password as RFC 5389 §15.4 does,
 * USERHASH §14.4), draft-uberti-behave-turn-rest-00 with coturn's use-auth-secret rules
 * (username "expiry[:id]", password base64(HMAC-SHA1(secret, username)), several secrets for
 * rotation), coturn's Redis layout (turn/realm/<realm>/user/<user>/key, .../secret) and our keys
 * beside it (SHA-256 keys, revocations, USERHASH index). Static and REST answers are computed at
 * once. A Redis answer is fetched with one pipeline per username (concurrent askers share it) and
 * kept in a bounded cache: 30 s when the user exists, 5 s when not; while Redis is unreachable
 * a known user is served from the cache for up to an hour so established users keep allocating,
 * and a user we know nothing about gets CREDS_UNAVAILABLE rather than a wrong "unknown". The cache
 * is two LRU lists with a bound each, known users and everything else: random names from
 * unauthenticated senders churn only the second, so they cannot evict the users the hour of
 * service is promised to. Lookups waiting for Redis are bounded per source IP and per worker, so
 * one sender cannot take every query slot. Waiters are called from a uv_idle handle, never from
 * inside hiredis, so they may look up, cancel or close.
 */
#include "creds.h"

#include <assert.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <netinet/in.h>

#include <openssl/crypto.h>

#include "creds_int.h"
#include "creds_redis.h"
#include "list.h"
#include "log.h"
#include "rand.h"
#include "siphash.h"
#include "sockaddr_util.h"
#include "stats.h"
#include "stun_auth.h"
#include "turn_auth.h"

#define CACHE_BUCKETS 8192   /* power of two */
#define SRC_BUCKETS 256      /* sources with lookups waiting, power of two */
#define TTL_POS_MS 30000     /* a user Redis knows */
#define TTL_NEG_MS 5000      /* a user Redis does not know (or revoked) */
#define STALE_MAX_MS 3600000 /* how long a known user outlives an unreachable Redis */
#define SECRETS_TTL_MS 10000 /* the realm's REST secret set */
#define FAIL_HOLD_MS 5000    /* after a failed query, answer from what we have for this long */
#define MAX_REDIS_SECRETS CREDS_REDIS_MAX_SECRETS

/* ---- per worker ---- */

/* A source IP with lookups waiting for Redis; exists only while it has some. */
typedef struct src {
    struct src *next;
    uint32_t hash;
    uint32_t nwait;  /* its waiters */
    uint32_t nquery; /* queries it started, still in flight */
    uint8_t len;     /* 4 or 16 */
    uint8_t ip[16];
} src_t;

typedef struct waiter {
    struct waiter *next;
    creds_ready_cb cb;
    void *arg;
    src_t *src; /* charged for it, or NULL */
} waiter_t;

enum { ENT_USER = 0, ENT_HASH = 1 };
/* The two LRU lists: known users never make room for anything but other known users. */
enum { LRU_OTHER = 0, LRU_KNOWN = 1 };

typedef struct {
    list_t order; /* entry_t.lru, oldest first */
    size_t n;
} lru_t;

/* What Redis said about one username (ENT_USER) or one USERHASH (ENT_HASH). */
typedef struct entry {
    struct entry *hnext; /* bucket chain */
    list_t lru;          /* on creds_t.lru[list].order */
    list_t qlink;        /* on creds_t.inflight while a query fills it */
    creds_t *c;
    src_t *qsrc; /* the source charged for the query in flight, or NULL */
    waiter_t *wait_head, **wait_tail;
    uint64_t fetched_ms, failed_ms;
    uint64_t asked_ms; /* the first asker's now_ms: what a reply is stamped with */
    int64_t unix_now;  /* the first asker's clock, for the follow-up of a USERHASH */
    char *alias;       /* ENT_HASH: the username it names, or NULL */
    size_t alias_len;
    creds_key_t rkey; /* ENT_USER: the Redis key(s), if has_rkey */
    uint32_t hash;
    uint8_t kind;
    uint8_t list; /* LRU_OTHER or LRU_KNOWN: the list it is on */
    bool filled, failed, inflight, positive, revoked, has_rkey, with_secrets;
    bool forgotten; /* creds_forget came while in flight: the reply may predate the change */
    size_t klen;
    char key[]; /* the name or the 32-byte hash, NUL-terminated */
} entry_t;

struct creds {
    uv_loop_t *loop;
    const creds_shared_t *sh;
    creds_redis_t *redis;
    creds_stats_t own_stats;
    creds_stats_t *stats; /* own_stats, or the caller's storage (outlives us) */
    uint8_t seed[16];
    entry_t **buckets;
    lru_t lru[2];
    list_t inflight; /* entry_t.qlink */
    size_t ninflight, nwaiters;
    src_t **srcs;      /* SRC_BUCKETS chains */
    creds_asker_t lim; /* the bounds of the current call */
    waiter_t *ready, **ready_tail;
    secret_t rsec[MAX_REDIS_SECRETS]; /* the realm's Redis secret set, as last fetched */
    size_t nrsec;
    bool rsec_filled;
    uint64_t rsec_ms;
    uv_idle_t idle;
    bool closing;
};

/* ---- keys (the candidates; derivation is in creds_keys.c) ---- */

/* Candidates from the Redis answer `e` (may be NULL) and the secrets; returns whether `e` says
 * the user is revoked (then neither Redis nor REST keys count). */
static bool gather(const creds_t *c, const creds_uinfo_t *ui, const entry_t *e, bool rsec_ok,
                   creds_keys_t *out)
{
    bool revoked = e && e->revoked;
    if (revoked)
        return true;
    if (e && e->has_rkey)
        creds_keys_add(out, &e->rkey);
    if (!ui->rest)
        return false;
    for (size_t i = 0; i < c->sh->nsecrets; i++)
        creds_rest_key(c->sh, ui, &c->sh->secrets[i], out);
    for (size_t i = 0; rsec_ok && i < c->nrsec; i++)
        creds_rest_key(c->sh, ui, &c->rsec[i], out);
    return false;
}

/* ---- cache ---- */

/* SipHash-2-4 with a per-worker random key: usernames are chosen by clients, and a predictable
 * hash would let one flood a bucket (hash flooding) and make every lookup a long list walk. */
static uint32_t key_hash(const creds_t *c, int kind, const void *k, size_t n)
{
    uint64_t h = siphash(c->seed, k, n);
    return (uint32_t)(h ^ (h >> 32)) ^ (uint32_t)kind;
}

static entry_t *cache_find(creds_t *c, int kind, const void *k, size_t n)
{
    uint32_t h = key_hash(c, kind, k, n);
    for (entry_t *e = c->buckets[h & (CACHE_BUCKETS - 1)]; e; e = e->hnext)
        if (e->hash == h && e->kind == kind && e->klen == n && memcmp(e->key, k, n) == 0)
            return e;
    return NULL;
}

static void lru_unlink(creds_t *c, entry_t *e)
{
    list_remove(&e->lru);
    c->lru[e->list].n--;
}

static void lru_push(creds_t *c, entry_t *e)
{
    list_insert_tail(&c->lru[e->list].order, &e->lru);
    c->lru[e->list].n++;
}

static void lru_touch(creds_t *c, entry_t *e)
{
    lru_unlink(c, e);
    lru_push(c, e);
}

/* ---- sources with lookups waiting ---- */

static src_t *src_get(creds_t *c, const struct sockaddr *sa)
{
    size_t len;
    const uint8_t *ip = sa_ip_bytes(sa, &len);
    if (!ip)
        return NULL;
    uint32_t h = (uint32_t)siphash(c->seed, ip, len);
    src_t **b = &c->srcs[h & (SRC_BUCKETS - 1)];
    for (src_t *s = *b; s; s = s->next)
        if (s->hash == h && s->len == len && memcmp(s->ip, ip, len) == 0)
            return s;
    src_t *s = calloc(1, sizeof(*s));
    if (!s)
        return NULL;
    s->hash = h;
    s->len = (uint8_t)len;
    memcpy(s->ip, ip, len);
    s->next = *b;
    *b = s;
    return s;
}

/* Free `s` once nothing is charged to it. */
static void src_release(creds_t *c, src_t *s)
{
    if (!s || s->nwait || s->nquery)
        return;
    src_t **pp = &c->srcs[s->hash & (SRC_BUCKETS - 1)];
    while (*pp != s)
        pp = &(*pp)->next;
    *pp = s->next;
    free(s);
}

static void waiter_gone(creds_t *c, waiter_t *w)
{
    c->nwaiters--;
    atomic_store_explicit(&c->stats->pending, c->nwaiters, memory_order_relaxed);
    if (w->src) {
        w->src->nwait--;
        src_release(c, w->src);
    }
    free(w);
}

static void waiters_free(waiter_t *w)
{
    while (w) {
        waiter_t *next = w->next;
        free(w);
        w = next;
    }
}

static void entry_free(entry_t *e)
{
    waiters_free(e->wait_head);
    free(e->alias);
    OPENSSL_cleanse(&e->rkey, sizeof(e->rkey));
    free(e);
}

/* Out of its bucket and its LRU list, and freed. */
static void entry_remove(creds_t *c, entry_t *e)
{
    assert(!e->inflight); /* its query's reply still points at it (cache_drop defers) */
    entry_t **pp = &c->buckets[e->hash & (CACHE_BUCKETS - 1)];
    while (*pp != e)
        pp = &(*pp)->hnext;
    *pp = e->hnext;
    lru_unlink(c, e);
    entry_free(e);
}

/* How many entries `list` may hold. The other list always has room for every query in flight
 * (each new name's entry waits there for its answer). */
static size_t lru_cap(const creds_t *c, int list)
{
    if (list == LRU_KNOWN)
        return c->lim.cache_users;
    size_t need = (size_t)c->lim.pending_max + 1;
    return c->lim.cache_unknown > need ? c->lim.cache_unknown : need;
}

/* Make room in `list` for one more: evict its least recently used entries that no query is
 * filling. False when every one is in flight. */
static bool lru_make_room(creds_t *c, int list)
{
    while (c->lru[list].n >= lru_cap(c, list)) {
        entry_t *victim = NULL;
        LIST_FOREACH(n, &c->lru[list].order)
        {
            entry_t *e = container_of(n, entry_t, lru);
            if (!e->inflight) {
                victim = e;
                break;
            }
        }
        if (!victim)
            return false;
        entry_remove(c, victim);
    }
    return true;
}

/* Move `e` to the list its answer says (known or not), evicting from that list if it is full. */
static void entry_classify(creds_t *c, entry_t *e)
{
    int list = e->positive ? LRU_KNOWN : LRU_OTHER;
    if (e->list == list)
        return;
    lru_unlink(c, e);
    /* A known user displaces the least recently used known user at worst (beyond the cap while
     * all of them are being refreshed: bounded by the queries in flight). */
    (void)lru_make_room(c, list);
    e->list = (uint8_t)list;
    lru_push(c, e);
}

static entry_t *cache_add(creds_t *c, int kind, const void *k, size_t n)
{
    /* A new name is nobody until Redis says otherwise. */
    if (!lru_make_room(c, LRU_OTHER))
        return NULL;
    entry_t *e = calloc(1, sizeof(*e) + n + 1);
    if (!e)
        return NULL;
    e->c = c;
    e->kind = (uint8_t)kind;
    e->list = LRU_OTHER;
    e->klen = n;
    memcpy(e->key, k, n);
    e->hash = key_hash(c, kind, k, n);
    e->wait_tail = &e->wait_head;
    entry_t **b = &c->buckets[e->hash & (CACHE_BUCKETS - 1)];
    e->hnext = *b;
    *b = e;
    lru_push(c, e);
    return e;
}

/* Age of something stamped at `t`: an answer is stamped with the clock of the call that asked for
 * it, and callers' clocks may differ by a little (coalesced askers); never let that wrap. */
static uint64_t age(uint64_t now, uint64_t t) { return now > t ? now - t : 0; }

static bool entry_fresh(const creds_t *c, const entry_t *e, const creds_uinfo_t *ui, uint64_t now)
{
    if (!e->filled || age(now, e->fetched_ms) >= (e->positive ? TTL_POS_MS : TTL_NEG_MS))
        return false;
    /* A REST name also needs the realm's secret set to be current. */
    return !ui || !ui->rest || (c->rsec_filled && age(now, c->rsec_ms) < SECRETS_TTL_MS);
}

/* Usable although stale: Redis cannot be asked, and the data is less than an hour old. */
static const entry_t *entry_stale(const entry_t *e, uint64_t now)
{
    return e && e->filled && age(now, e->fetched_ms) < STALE_MAX_MS ? e : NULL;
}

static bool may_ask(const creds_t *c, const entry_t *e, uint64_t now)
{
    if (!c->redis || creds_redis_state(c->redis) == CREDS_REDIS_DOWN)
        return false;
    /* Right after a failure (timeout, error reply) answer from what we have instead of asking
     * again at once: the waiter that was just told to retry gets a final answer. */
    return !(e && e->failed && age(now, e->failed_ms) < FAIL_HOLD_MS);
}

/* ---- Redis queries ---- */

static void on_user_reply(void *arg, const creds_redis_user_t *u);
static void on_hash_reply(void *arg, int failed, const char *name, size_t len);

/* Join the query in flight for `e`, or start one. NULL when it cannot be sent. */
static entry_t *start_query(creds_t *c, int kind, const void *k, size_t n, entry_t *e,
                            bool with_secrets, uint64_t now, int64_t unix_now)
{
    if (e && e->inflight)
        return e;
    if (c->ninflight >= c->lim.pending_max || (!e && !(e = cache_add(c, kind, k, n))))
        return NULL;
    e->with_secrets = with_secrets;
    e->asked_ms = now;
    e->unix_now = unix_now;
    int rc = kind == ENT_USER ? creds_redis_fetch_user(c->redis, c->sh->realm, e->key, with_secrets,
                                                       on_user_reply, e)
                              : creds_redis_fetch_alias(c->redis, c->sh->realm,
                                                        (const uint8_t *)e->key, on_hash_reply, e);
    if (rc != 0)
        return NULL;
    e->inflight = true;
    list_insert_head(&c->inflight, &e->qlink);
    c->ninflight++;
    stats_inc(&c->stats->redis_queries);
    return e;
}

static void query_done(creds_t *c, entry_t *e)
{
    list_remove(&e->qlink);
    e->inflight = false;
    c->ninflight--;
    if (e->qsrc) {
        e->qsrc->nquery--;
        src_release(c, e->qsrc);
        e->qsrc = NULL;
    }
}

static void on_idle(uv_idle_t *h);

/* Hand `e`'s waiters to the idle handle: they are called after hiredis has returned. */
static void waiters_ready(creds_t *c, entry_t *e)
{
    if (!e->wait_head)
        return;
    *c->ready_tail = e->wait_head;
    c->ready_tail = e->wait_tail;
    e->wait_head = NULL;
    e->wait_tail = &e->wait_head;
    if (!uv_is_active((uv_handle_t *)&c->idle))
        uv_idle_start(&c->idle, on_idle);
}

static void store_secrets(creds_t *c, const creds_redis_user_t *u, uint64_t now)
{
    size_t n = 0;
    for (size_t i = 0; i < c->nrsec; i++)
        creds_secret_clear(&c->rsec[i]);
    for (size_t i = 0; i < u->nsecrets && n < MAX_REDIS_SECRETS; i++) {
        if (!(c->rsec[n].s = malloc(u->secret_len[i] + 1)))
            break;
        memcpy(c->rsec[n].s, u->secret[i], u->secret_len[i]);
        c->rsec[n].s[u->secret_len[i]] = '\0';
        c->rsec[n++].len = u->secret_len[i];
    }
    c->nrsec = n;
    c->rsec_filled = true;
    c->rsec_ms = now;
}

static void on_user_reply(void *arg, const creds_redis_user_t *u)
{
    entry_t *e = arg;
    creds_t *c = e->c;
    /* Stamped with the asker's clock (not the reply's): never fresher than it is, and the
     * asker's second call, made with the same clock, sees it fresh. */
    uint64_t now = e->asked_ms;
    creds_uinfo_t ui;

    query_done(c, e);
    if (e->forgotten) {
        /* Asked before the store changed: drop the answer, the waiters ask again. */
        e->forgotten = false;
        waiters_ready(c, e);
        return;
    }
    if (u) {
        if (u->has_secrets)
            store_secrets(c, u, now);
        e->rkey = u->key;
        e->has_rkey = u->key.has_md5 || u->key.has_sha256;
        e->revoked = u->revoked;
        creds_uinfo_init(c->sh, e->key, e->klen, e->unix_now, &ui);
        e->positive = !e->revoked && (e->has_rkey || ui.rest);
        entry_classify(c, e);
        e->filled = true;
        e->failed = false;
        e->fetched_ms = now;
    } else {
        e->failed = true;
        e->failed_ms = now;
    }
    waiters_ready(c, e);
}

static bool needs_query(const creds_t *c, const creds_uinfo_t *ui, const entry_t *e, uint64_t now)
{
    if (!c->redis || creds_static_find(c->sh, ui->name, ui->len))
        return false;
    if (e && e->inflight)
        return true;
    return !(e && entry_fresh(c, e, ui, now)) && may_ask(c, e, now);
}

/* The USERHASH names a user: fetch that user now as well and make the hash's waiters wait for it,
 * so the asker's second call finds both answers and is final. */
static void hash_follow(creds_t *c, entry_t *e, uint64_t now)
{
    char name[STUN_USERNAME_MAX + 1];
    size_t len = e->alias_len;
    creds_uinfo_t ui;

    memcpy(name, e->alias, len + 1);
    creds_uinfo_init(c->sh, name, len, e->unix_now, &ui);
    entry_t *ue = cache_find(c, ENT_USER, name, len);
    if (!needs_query(c, &ui, ue, now))
        return;
    ue = start_query(c, ENT_USER, name, len, ue, ui.rest, now, e->unix_now);
    if (!ue || !e->wait_head)
        return;
    *ue->wait_tail = e->wait_head;
    ue->wait_tail = e->wait_tail;
    e->wait_head = NULL;
    e->wait_tail = &e->wait_head;
}

static void on_hash_reply(void *arg, int failed, const char *name, size_t len)
{
    entry_t *e = arg;
    creds_t *c = e->c;
    char *alias = NULL;

    if (e->forgotten) {
        e->forgotten = false;
        query_done(c, e);
        waiters_ready(c, e);
        return;
    }
    if (!failed && name && !(alias = malloc(len + 1)))
        failed = 1;
    if (failed) {
        e->failed = true;
        e->failed_ms = e->asked_ms;
    } else {
        if (alias) {
            memcpy(alias, name, len);
            alias[len] = '\0';
        }
        free(e->alias);
        e->alias = alias;
        e->alias_len = alias ? len : 0;
        e->filled = true;
        e->failed = false;
        e->fetched_ms = e->asked_ms;
        e->positive = alias != NULL;
        entry_classify(c, e);
        if (alias) /* while e is still in flight, so that no eviction can take it */
            hash_follow(c, e, e->asked_ms);
    }
    query_done(c, e);
    waiters_ready(c, e);
}

/* ---- lookups ---- */

/* The answer without asking Redis: static users, REST from the secrets we have, and the cached
 * Redis answer `e`: fresh, or up to an hour old when Redis cannot be asked. */
static enum creds_status answer_user(creds_t *c, const creds_uinfo_t *ui, const entry_t *e,
                                     uint64_t now, creds_keys_t *out)
{
    const suser_t *su = creds_static_find(c->sh, ui->name, ui->len);
    bool rsec_fresh = c->rsec_filled && age(now, c->rsec_ms) < SECRETS_TTL_MS;
    bool rsec_old = c->rsec_filled && age(now, c->rsec_ms) < STALE_MAX_MS;

    if (su || !c->redis) {
        if (su)
            creds_keys_add(out, &su->key);
        gather(c, ui, NULL, rsec_fresh, out);
        return creds_verdict(ui, false, out, CREDS_UNKNOWN);
    }
    if (e && entry_fresh(c, e, ui, now)) {
        stats_inc(&c->stats->cache_hits);
        return creds_verdict(ui, gather(c, ui, e, true, out), out, CREDS_UNKNOWN);
    }
    /* Redis cannot be asked. REST names still work from the static secrets (the revocation list
     * is then unchecked: availability over a best-effort extension). */
    return creds_verdict(ui, gather(c, ui, entry_stale(e, now), rsec_old, out), out,
                         CREDS_UNAVAILABLE);
}

/* Park the caller on the query for `e` (joined, or started). Refuse rather than queue: a flood of
 * new names must not grow memory or Redis load, and one source must not take every slot. */
static enum creds_status wait_on(creds_t *c, const creds_asker_t *who, int kind, const void *k,
                                 size_t n, entry_t *e, bool with_secrets, uint64_t now,
                                 int64_t unix_now, creds_ready_cb cb, void *arg)
{
    bool join = e && e->inflight;
    if (c->nwaiters >= c->lim.pending_max || (!join && c->ninflight >= c->lim.pending_max)) {
        stats_inc(&c->stats->refused_total);
        return CREDS_BUSY;
    }
    src_t *s = who && who->addr ? src_get(c, who->addr) : NULL;
    if (s && (s->nwait >= c->lim.pending_per_ip || (!join && s->nquery >= c->lim.pending_per_ip))) {
        src_release(c, s);
        stats_inc(&c->stats->refused_per_ip);
        return CREDS_BUSY;
    }
    waiter_t *w = malloc(sizeof(*w));
    if (!w) {
        src_release(c, s);
        return CREDS_BUSY;
    }
    entry_t *q = start_query(c, kind, k, n, e, with_secrets, now, unix_now);
    if (!q) {
        free(w);
        src_release(c, s);
        return CREDS_UNAVAILABLE; /* the caller answers as if Redis were down */
    }
    if (!join && s) {
        q->qsrc = s;
        s->nquery++;
    }
    w->next = NULL;
    w->cb = cb;
    w->arg = arg;
    w->src = s;
    if (s)
        s->nwait++;
    *q->wait_tail = w;
    q->wait_tail = &w->next;
    c->nwaiters++;
    atomic_store_explicit(&c->stats->pending, c->nwaiters, memory_order_relaxed);
    return CREDS_PENDING;
}

static enum creds_status lookup_name(creds_t *c, const creds_asker_t *who, const char *u, size_t ul,
                                     uint64_t now, int64_t unix_now, creds_keys_t *out,
                                     creds_ready_cb cb, void *arg)
{
    entry_t *e = NULL;
    creds_uinfo_t ui;

    out->n = 0;
    /* A NUL cannot be part of a key name, and no real username is this long. */
    if (ul == 0 || ul > STUN_USERNAME_MAX || memchr(u, '\0', ul))
        return CREDS_UNKNOWN;
    creds_uinfo_init(c->sh, u, ul, unix_now, &ui);
    if (c->redis && (e = cache_find(c, ENT_USER, u, ul)))
        lru_touch(c, e);
    if (needs_query(c, &ui, e, now)) {
        enum creds_status st = wait_on(c, who, ENT_USER, u, ul, e, ui.rest, now, unix_now, cb, arg);
        if (st != CREDS_UNAVAILABLE)
            return st;
    }
    return answer_user(c, &ui, e, now, out);
}

/* The bounds of this call: the caller's, each at least 1 (0 in a config would refuse all). */
static void set_limits(creds_t *c, const creds_asker_t *who)
{
    static const creds_asker_t defaults = {NULL, CREDS_PENDING_PER_IP, CREDS_PENDING_MAX,
                                           CREDS_CACHE_USERS, CREDS_CACHE_UNKNOWN};
    c->lim = who ? *who : defaults;
    c->lim.addr = NULL;
    if (!c->lim.pending_per_ip)
        c->lim.pending_per_ip = 1;
    if (!c->lim.pending_max)
        c->lim.pending_max = 1;
    if (!c->lim.cache_users)
        c->lim.cache_users = 1;
}

enum creds_status creds_lookup(creds_t *c, const creds_asker_t *who, const char *user, size_t ulen,
                               uint64_t now_ms, int64_t unix_now, creds_keys_t *out,
                               creds_ready_cb cb, void *arg)
{
    assert(cb && !c->closing);
    stats_inc(&c->stats->lookups);
    set_limits(c, who);
    return lookup_name(c, who, user, ulen, now_ms, unix_now, out, cb, arg);
}

/* USERHASH to username through Redis. CREDS_FOUND sets *name (valid until the cache changes). */
static enum creds_status hash_to_name(creds_t *c, const creds_asker_t *who, const uint8_t *hash,
                                      uint64_t now, int64_t unix_now, const char **name,
                                      size_t *nlen, creds_ready_cb cb, void *arg)
{
    entry_t *e = cache_find(c, ENT_HASH, hash, STUN_USERHASH_LEN);
    if (e)
        lru_touch(c, e);
    bool fresh = e && entry_fresh(c, e, NULL, now);
    if (!fresh && ((e && e->inflight) || may_ask(c, e, now))) {
        enum creds_status st =
            wait_on(c, who, ENT_HASH, hash, STUN_USERHASH_LEN, e, false, now, unix_now, cb, arg);
        if (st != CREDS_UNAVAILABLE)
            return st;
    }
    if (fresh)
        stats_inc(&c->stats->cache_hits);
    else if (!entry_stale(e, now))
        return CREDS_UNAVAILABLE;
    if (!e->alias)
        return fresh ? CREDS_UNKNOWN : CREDS_UNAVAILABLE;
    *name = e->alias;
    *nlen = e->alias_len;
    return CREDS_FOUND;
}

enum creds_status creds_lookup_userhash(creds_t *c, const creds_asker_t *who,
                                        const uint8_t hash[32], uint64_t now_ms, int64_t unix_now,
                                        char *user, size_t cap, creds_keys_t *out,
                                        creds_ready_cb cb, void *arg)
{
    const suser_t *su = creds_static_find_hash(c->sh, hash);
    const char *name = NULL;
    size_t nlen = 0;

    assert(cb && !c->closing);
    out->n = 0;
    if (cap)
        user[0] = '\0';
    stats_inc(&c->stats->lookups);
    set_limits(c, who);
    if (su) {
        name = su->name;
        nlen = su->len;
    } else if (c->redis) {
        enum creds_status st = hash_to_name(c, who, hash, now_ms, unix_now, &name, &nlen, cb, arg);
        if (st != CREDS_FOUND)
            return st;
    }
    /* A name that does not fit the caller's buffer is answered like one we do not know. */
    if (!name || nlen + 1 > cap)
        return CREDS_UNKNOWN;
    memcpy(user, name, nlen);
    user[nlen] = '\0';
    /* From the caller's copy: looking the name up may evict the entry `name` points into. */
    return lookup_name(c, who, user, nlen, now_ms, unix_now, out, cb, arg);
}

/* ---- waiters and lifecycle ---- */

static void on_idle(uv_idle_t *h)
{
    creds_t *c = h->data;
    uv_idle_stop(h);
    while (!c->closing && c->ready) {
        waiter_t *w = c->ready;
        if (!(c->ready = w->next))
            c->ready_tail = &c->ready;
        creds_ready_cb cb = w->cb;
        void *arg = w->arg;
        waiter_gone(c, w);
        /* It may look up, cancel or close: c stays allocated until the idle handle has closed. */
        cb(arg);
    }
}

static void drop_arg(creds_t *c, waiter_t **head, waiter_t ***tail, const void *arg)
{
    waiter_t **pp = head;
    while (*pp) {
        if ((*pp)->arg == arg) {
            waiter_t *w = *pp;
            *pp = w->next;
            waiter_gone(c, w);
        } else {
            pp = &(*pp)->next;
        }
    }
    *tail = pp;
}

void creds_cancel(creds_t *c, void *arg)
{
    LIST_FOREACH(n, &c->inflight)
    {
        entry_t *e = container_of(n, entry_t, qlink);
        drop_arg(c, &e->wait_head, &e->wait_tail, arg);
    }
    drop_arg(c, &c->ready, &c->ready_tail, arg);
}

/* Take `e` out of the cache now, or, while a query fills it, make that answer count for nothing. */
/* creds_ops_t members: the same calls with the store as `env`. */
static enum creds_status ops_lookup(void *env, const creds_asker_t *who, const char *user,
                                    size_t ulen, uint64_t now_ms, int64_t unix_now,
                                    creds_keys_t *out, creds_ready_cb cb, void *arg)
{
    return creds_lookup(env, who, user, ulen, now_ms, unix_now, out, cb, arg);
}

static enum creds_status ops_lookup_userhash(void *env, const creds_asker_t *who,
                                             const uint8_t hash[32], uint64_t now_ms,
                                             int64_t unix_now, char *user, size_t cap,
                                             creds_keys_t *out, creds_ready_cb cb, void *arg)
{
    return creds_lookup_userhash(env, who, hash, now_ms, unix_now, user, cap, out, cb, arg);
}

static void ops_cancel(void *env, void *arg) { creds_cancel(env, arg); }

void creds_ops(creds_t *c, creds_ops_t *out)
{
    out->lookup = ops_lookup;
    out->lookup_userhash = ops_lookup_userhash;
    out->cancel = ops_cancel;
    out->env = c;
}

static void cache_drop(creds_t *c, entry_t *e)
{
    if (e->inflight) {
        e->forgotten = true;
        e->filled = false;
        return;
    }
    entry_remove(c, e);
}

void creds_forget(creds_t *c, const char *user, size_t ulen)
{
    if (!c || c->closing || !c->buckets)
        return;
    if (!user) {
        c->rsec_filled = false; /* the realm's secret set is fetched again on the next REST name */
        return;
    }
    entry_t *e = cache_find(c, ENT_USER, user, ulen);
    if (e)
        cache_drop(c, e);
    /* USERHASH answers that name the user (at most CACHE_MAX entries: an admin action, not a
     * per-packet one). */
    for (int l = 0; l < 2; l++) {
        LIST_FOREACH_SAFE(n, tmp, &c->lru[l].order)
        {
            e = container_of(n, entry_t, lru);
            if (e->kind == ENT_HASH && e->alias && e->alias_len == ulen &&
                memcmp(e->alias, user, ulen) == 0)
                cache_drop(c, e);
        }
    }
}

int creds_new(uv_loop_t *loop, const creds_shared_t *shared, creds_stats_t *stats, creds_t **out)
{
    creds_t *c = calloc(1, sizeof(*c));
    *out = NULL;
    if (!c || !(c->buckets = calloc(CACHE_BUCKETS, sizeof(*c->buckets))) ||
        !(c->srcs = calloc(SRC_BUCKETS, sizeof(*c->srcs)))) {
        if (c)
            free(c->buckets);
        free(c);
        return -ENOMEM;
    }
    set_limits(c, NULL);
    c->loop = loop;
    c->sh = shared;
    c->stats = stats ? stats : &c->own_stats;
    c->ready_tail = &c->ready;
    list_init(&c->lru[LRU_OTHER].order);
    list_init(&c->lru[LRU_KNOWN].order);
    list_init(&c->inflight);
    rand_bytes(c->seed, sizeof(c->seed)); /* the cache hash's key: hash-flooding resistance */
    atomic_store_explicit(&c->stats->redis_state, -1, memory_order_relaxed);
    if (shared->has_redis) {
        int rc = creds_redis_new(loop, &shared->redis, c->stats, &c->redis);
        if (rc != 0) {
            free(c->buckets);
            free(c->srcs);
            free(c);
            return rc;
        }
    }
    uv_idle_init(loop, &c->idle);
    c->idle.data = c;
    *out = c;
    return 0;
}

static void on_idle_closed(uv_handle_t *h) { free(h->data); }

void creds_close(creds_t *c)
{
    if (!c || c->closing)
        return;
    c->closing = true;
    creds_redis_close(c->redis); /* drops every query in flight without calling back */
    c->redis = NULL;
    for (size_t i = 0; i < CACHE_BUCKETS; i++) {
        entry_t *e = c->buckets[i];
        while (e) {
            entry_t *next = e->hnext;
            entry_free(e);
            e = next;
        }
    }
    free(c->buckets);
    c->buckets = NULL;
    waiters_free(c->ready);
    c->ready = NULL;
    c->ready_tail = &c->ready;
    for (size_t i = 0; i < SRC_BUCKETS; i++) {
        src_t *s = c->srcs[i];
        while (s) {
            src_t *next = s->next;
            free(s);
            s = next;
        }
    }
    free(c->srcs);
    c->srcs = NULL;
    for (size_t i = 0; i < c->nrsec; i++)
        creds_secret_clear(&c->rsec[i]);
    uv_close((uv_handle_t *)&c->idle, on_idle_closed);
}

const creds_stats_t *creds_stats(const creds_t *c) { return c->stats; }
