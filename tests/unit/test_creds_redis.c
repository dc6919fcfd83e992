/* test_creds_redis.c - the Redis credential store (server/auth/creds_redis.c with creds.c's cache)
 * against a real redis-server. Static users and REST without Redis are in test_creds.c, the
 * redis-userdb config checks in test_creds_cfg.c.
 *
 * The Redis store in coturn's layout plus our extensions (SHA-256 keys, revocation, USERHASH
 * index). The program starts its own redis-server on a free loopback port at the first test that
 * needs it (killed with us even if we crash: PR_SET_PDEATHSIG), provisions keys with hiredis'
 * blocking API, and drives creds_* on a real libuv loop: the PENDING protocol, the cache,
 * coalescing, cancel, limits, argv safety of hostile usernames, AUTH/SELECT and ACL users, a server
 * that stops answering, Redis down at start, killed and restarted. Every wait polls a condition
 * against a deadline. The tests share one server and one creds_t in file order; each provisions
 * what it reads, so it can also run alone (./test_creds_redis name).
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <hiredis/hiredis.h>

#include "creds_fixture.h"
#include "creds_redis.h"
#include "free_port.h"
#include "redis_server.h"
#include "util.h"

static pid_t redis_pid = -1, redis2_pid = -1;
static int redis_port;
static redisContext *prov; /* provisioning connection to redis_pid */

/* ---- redis-server ---- */

static void kill_all(void)
{
    redis_server_kill(&redis_pid);
    redis_server_kill(&redis2_pid);
}

static void rc_set(const char *key, const char *val)
{
    const char *argv[] = {"SET", key, val};
    CHECK(redis_server_ok(prov, 3, argv));
}

static void rc_sadd(const char *key, const char *member)
{
    const char *argv[] = {"SADD", key, member};
    CHECK(redis_server_ok(prov, 3, argv));
}

/* Provision a coturn-style user: hex MD5 key under turn/realm/<realm>/user/<name>/key. */
static void provision_md5(const char *name, const char *pass)
{
    uint8_t key[16];
    char hex[33], kname[1200];
    stun_auth_key_md5(name, strlen(name), REALM, strlen(REALM), pass, strlen(pass), key);
    stun_auth_hex_encode(key, 16, hex);
    snprintf(kname, sizeof(kname), CREDS_REDIS_KEY_MD5, REALM, name);
    rc_set(kname, hex);
}

static void provision_userhash(const char *name)
{
    uint8_t h[32];
    char hex[65], kname[256];
    stun_auth_userhash(name, strlen(name), REALM, strlen(REALM), h);
    stun_auth_hex_encode(h, 32, hex);
    snprintf(kname, sizeof(kname), CREDS_REDIS_USERHASH, REALM, hex);
    rc_set(kname, name);
}

static char *secrets_key(void)
{
    static char kname[128];
    snprintf(kname, sizeof(kname), CREDS_REDIS_SECRETS, REALM);
    return kname;
}

/* ---- the shared server and store ---- */

static int redis_tried;
static creds_shared_t *the_sh;
static creds_t *the_c;

/* Start the redis-server at the first call. 1 when it is up with a provisioning connection. */
static int redis_up(void)
{
    if (!redis_tried) {
        redis_tried = 1;
        redis_port = test_free_port();
        redis_pid = redis_server_start(redis_port, NULL);
        CHECK(redis_pid > 0);
        prov = redis_pid > 0 ? redis_server_connect(redis_port) : NULL;
    }
    return prov != NULL;
}

/* The store's config: a static user, REST secrets from Redis, the Redis user database. NULL (with
 * a failed check) when Redis or the config is not there. */
static const creds_shared_t *redis_shared(void)
{
    static char db[64];
    if (!redis_up())
        return NULL;
    if (!the_sh) {
        snprintf(db, sizeof(db), "ip=127.0.0.1 port=%d", redis_port);
        const char *kv[] = {
            "realm",        REALM, "user", "alice:wonder land", "use-auth-secret", "true",
            "redis-userdb", db,    NULL};
        the_sh = shared_ok(kv);
    }
    return the_sh;
}

/* The creds_t the tests share, connected to Redis, or NULL (with a failed check). */
static creds_t *redis_creds(void)
{
    if (!redis_shared())
        return NULL;
    if (!the_c) {
        CHECK_INT(creds_new(&loop, the_sh, NULL, &the_c), 0);
        if (the_c)
            CHECK(wait_state(the_c, 1, 5000));
    }
    return the_c;
}

/* ---- helpers ---- */

/* ---- bounds for unauthenticated senders (issue 11, defect 8) ---- */

static enum creds_status look_as(creds_t *c, const creds_asker_t *who, const char *u,
                                 creds_keys_t *out, rec_t *r)
{
    uv_update_time(&loop);
    return creds_lookup(c, who, u, strlen(u), uv_now(&loop), REST_BEFORE, out, on_ready, r);
}

/* Ask, wait for Redis if need be, ask again: the final status. */
static enum creds_status look_as_wait(creds_t *c, const creds_asker_t *who, const char *u,
                                      creds_keys_t *out)
{
    rec_t r = {0};
    enum creds_status st = look_as(c, who, u, out, &r);
    if (st == CREDS_PENDING) {
        CHECK(run_until(&r.calls, 1, 5000));
        st = look_as(c, who, u, out, &r);
        CHECK(st != CREDS_PENDING);
        creds_cancel(c, &r);
    }
    return st;
}

static struct sockaddr_in ip4(const char *a)
{
    struct sockaddr_in sin;
    memset(&sin, 0, sizeof(sin));
    sin.sin_family = AF_INET;
    sin.sin_port = htons(40000);
    inet_pton(AF_INET, a, &sin.sin_addr);
    return sin;
}

static creds_t *creds_for(const char *userdb, creds_shared_t **sh)
{
    const char *kv[] = {"realm", REALM, "redis-userdb", userdb, NULL};
    creds_t *c = NULL;
    *sh = shared_ok(kv);
    if (*sh)
        CHECK_INT(creds_new(&loop, *sh, NULL, &c), 0);
    return c;
}

static void check_userdb(const char *userdb, const char *user, enum creds_status want)
{
    creds_shared_t *sh;
    creds_keys_t k;
    creds_t *c = creds_for(userdb, &sh);
    if (!c)
        return;
    if (want != CREDS_UNAVAILABLE)
        CHECK(wait_state(c, 1, 5000));
    enum creds_status st = look_wait(c, user, REST_BEFORE, &k, NULL);
    if (st != want)
        fprintf(stderr, "redis-userdb \"%s\": %d, want %d\n", userdb, st, want);
    CHECK_INT(st, want);
    if (want == CREDS_UNAVAILABLE) {
        CHECK_INT(redis_state(c), 0);
        CHECK(ctr(&creds_stats(c)->redis_errors) > 0);
    }
    close_creds(c);
    creds_shared_free(sh);
}

/* ---- Redis ---- */

UNIT_TEST(redis_users)
{
    creds_t *c = redis_creds();

    if (!c)
        return;
    creds_keys_t k;
    rec_t r = {0};
    int pending;
    uint8_t md5[16], sha[32];
    char hex[65], kname[256];

    provision_md5("gorst", "hero");
    CHECK_INT(look_wait(c, "gorst", REST_BEFORE, &k, &pending), CREDS_FOUND);
    CHECK_INT(pending, 1);
    CHECK_INT(k.n, 1);
    expect_md5(&k, 0, "7da2270ccfa49786e0115366d3a3d14d");
    CHECK(!k.k[0].has_sha256);
    uint64_t hits = ctr(&creds_stats(c)->cache_hits);
    CHECK_INT(look(c, "gorst", REST_BEFORE, &k, &r), CREDS_FOUND); /* from the cache */
    CHECK_INT(ctr(&creds_stats(c)->cache_hits), hits + 1);
    expect_md5(&k, 0, "7da2270ccfa49786e0115366d3a3d14d");

    /* Our SHA-256 extension beside coturn's MD5 key: one candidate with both. */
    provision_md5("sam", "frodo");
    stun_auth_key_sha256("sam", 3, REALM, strlen(REALM), "frodo", 5, sha);
    stun_auth_hex_encode(sha, 32, hex);
    snprintf(kname, sizeof(kname), CREDS_REDIS_KEY_SHA256, REALM, "sam");
    rc_set(kname, hex);
    CHECK_INT(look_wait(c, "sam", REST_BEFORE, &k, NULL), CREDS_FOUND);
    stun_auth_key_md5("sam", 3, REALM, strlen(REALM), "frodo", 5, md5);
    CHECK(k.n == 1 && k.k[0].has_md5 && k.k[0].has_sha256);
    CHECK_MEM(k.k[0].md5, md5, 16);
    CHECK_MEM(k.k[0].sha256, sha, 32);

    /* Unknown, then from the negative cache, then asked again once that has expired (5 s). */
    CHECK_INT(look_wait(c, "nobody", REST_BEFORE, &k, &pending), CREDS_UNKNOWN);
    CHECK_INT(pending, 1);
    CHECK_INT(look(c, "nobody", REST_BEFORE, &k, &r), CREDS_UNKNOWN);
    CHECK_INT(look_wait_at(c, "nobody", 6000, REST_BEFORE, &k, &pending), CREDS_UNKNOWN);
    CHECK_INT(pending, 1);

    /* A static user is answered at once even with Redis configured. */
    CHECK_INT(look_wait(c, "alice", REST_BEFORE, &k, &pending), CREDS_FOUND);
    CHECK_INT(pending, 0);

    /* A malformed key is ignored; a key of the wrong type is a failure, not "unknown". */
    snprintf(kname, sizeof(kname), CREDS_REDIS_KEY_MD5, REALM, "badhex");
    rc_set(kname, "7da2270ccfa49786e0115366d3a3d14");
    CHECK_INT(look_wait(c, "badhex", REST_BEFORE, &k, NULL), CREDS_UNKNOWN);
    snprintf(kname, sizeof(kname), CREDS_REDIS_KEY_MD5, REALM, "wrongtype");
    rc_sadd(kname, "x");
    uint64_t errors = ctr(&creds_stats(c)->redis_errors);
    CHECK_INT(look_wait(c, "wrongtype", REST_BEFORE, &k, NULL), CREDS_UNAVAILABLE);
    CHECK(ctr(&creds_stats(c)->redis_errors) > errors);
    CHECK_INT(redis_state(c), 1);
}

UNIT_TEST(redis_rest)
{
    creds_t *c = redis_creds();

    if (!c)
        return;
    char kname[128];
    creds_keys_t k;
    int pending;
    uint8_t north[16], south[16];

    snprintf(kname, sizeof(kname), CREDS_REDIS_SECRETS, REALM);
    rc_sadd(kname, "north");
    CHECK_INT(look_wait(c, REST_USER, REST_BEFORE, &k, &pending), CREDS_FOUND);
    CHECK_INT(pending, 1);
    CHECK_INT(k.n, 1);
    expect_md5(&k, 0, "189beda23cf1b5c67dd164d580ac15b0");
    CHECK_INT(look_wait(c, "1000:old", 2000, &k, &pending), CREDS_EXPIRED);
    CHECK_INT(pending, 1); /* Redis might have had a user by that name */
    /* Rotation: both secrets of the set are candidates. */
    rc_sadd(kname, "south");
    CHECK_INT(look_wait(c, "1266890800:rotation", REST_BEFORE, &k, NULL), CREDS_FOUND);
    rest_md5("north", "1266890800:rotation", north);
    rest_md5("south", "1266890800:rotation", south);
    CHECK_INT(k.n, 2);
    CHECK(has_md5(&k, north) && has_md5(&k, south));
}

UNIT_TEST(revoked)
{
    creds_t *c = redis_creds();

    if (!c)
        return;
    rc_sadd(secrets_key(), "north"); /* also when run alone */
    char kname[128];
    creds_keys_t k;

    provision_md5("gorst2", "hero");
    snprintf(kname, sizeof(kname), CREDS_REDIS_REVOKED, REALM, "gorst2");
    rc_set(kname, "1");
    CHECK_INT(look_wait(c, "gorst2", REST_BEFORE, &k, NULL), CREDS_UNKNOWN);
    CHECK_INT(k.n, 0);
    snprintf(kname, sizeof(kname), CREDS_REDIS_REVOKED, REALM, "1266890800:revoked");
    rc_set(kname, "1");
    CHECK_INT(look_wait(c, "1266890800:revoked", REST_BEFORE, &k, NULL), CREDS_UNKNOWN);
    CHECK_INT(look_wait(c, "1266890800:notrevoked", REST_BEFORE, &k, NULL), CREDS_FOUND);
    snprintf(kname, sizeof(kname), CREDS_REDIS_REVOKED, REALM, "alice");
    rc_set(kname, "1"); /* static users are the config's, not the store's */
    CHECK_INT(look_wait(c, "alice", REST_BEFORE, &k, NULL), CREDS_FOUND);
}

UNIT_TEST(userhash_redis)
{
    creds_t *c = redis_creds();

    if (!c)
        return;
    provision_md5("gorst", "hero"); /* also when run alone */
    char name[600];
    creds_keys_t k;
    int pending;
    uint8_t md5[16];

    /* Neither the hash nor the user is cached: the second call must still be final. */
    provision_md5("pippin", "took");
    provision_userhash("pippin");
    CHECK_INT(look_hash(c, "pippin", name, sizeof(name), &k, &pending), CREDS_FOUND);
    CHECK_INT(pending, 1);
    CHECK_STR(name, "pippin");
    stun_auth_key_md5("pippin", 6, REALM, strlen(REALM), "took", 4, md5);
    CHECK(k.n == 1 && memcmp(k.k[0].md5, md5, 16) == 0);
    CHECK_INT(look_hash(c, "pippin", name, sizeof(name), &k, &pending), CREDS_FOUND);
    CHECK_INT(pending, 0);
    provision_userhash("gorst");
    CHECK_INT(look_hash(c, "gorst", name, sizeof(name), &k, &pending), CREDS_FOUND);
    CHECK_STR(name, "gorst");
    expect_md5(&k, 0, "7da2270ccfa49786e0115366d3a3d14d");
    CHECK_INT(look_hash(c, "ghost", name, sizeof(name), &k, &pending), CREDS_UNKNOWN);
    CHECK_INT(pending, 1);
    CHECK_STR(name, "");
    CHECK_INT(look_hash(c, "alice", name, sizeof(name), &k, &pending), CREDS_FOUND);
    CHECK_INT(pending, 0);
}

UNIT_TEST(cancel)
{
    creds_t *c = redis_creds();

    if (!c)
        return;
    rec_t a = {0}, b = {0};
    creds_keys_t k;
    uint64_t q0 = ctr(&creds_stats(c)->redis_queries);

    provision_md5("merry", "brandybuck");
    CHECK_INT(look(c, "merry", REST_BEFORE, &k, &a), CREDS_PENDING);
    CHECK_INT(look(c, "merry", REST_BEFORE, &k, &b), CREDS_PENDING);
    CHECK_INT(ctr(&creds_stats(c)->redis_queries), q0 + 1); /* one query for both */
    creds_cancel(c, &a);
    CHECK(run_until(&b.calls, 1, 5000));
    run_for(30);
    CHECK_INT(a.calls, 0);
    CHECK_INT(b.calls, 1);
    CHECK_INT(look(c, "merry", REST_BEFORE, &k, &a), CREDS_FOUND);
}

UNIT_TEST(hostile_names)
{
    creds_t *c = redis_creds();

    if (!c)
        return;
    provision_md5("gorst", "hero"); /* also when run alone */
    /* Protocol bytes, a format directive, glob characters, spaces, a path-like suffix. */
    static const char *const names[] = {
        "ev il\r\n*1\r\n$8\r\nFLUSHALL\r\n", "%s%s%n%x", "*", "a?[b]c* d", "x/key",
    };
    char big[514];
    creds_keys_t k;
    rec_t r = {0};
    int pending;

    for (size_t i = 0; i < ARRAY_SIZE(names); i++) {
        uint8_t md5[16];
        provision_md5(names[i], "pw");
        CHECK_INT(look_wait(c, names[i], REST_BEFORE, &k, NULL), CREDS_FOUND);
        stun_auth_key_md5(names[i], strlen(names[i]), REALM, strlen(REALM), "pw", 2, md5);
        CHECK(k.n == 1 && memcmp(k.k[0].md5, md5, 16) == 0);
    }
    /* Nothing was executed: the earlier users are all still there. */
    CHECK_INT(look_wait_at(c, "gorst", 40000, REST_BEFORE, &k, NULL), CREDS_FOUND);
    memset(big, 'u', sizeof(big));
    big[513] = '\0';
    CHECK_INT(look(c, big, REST_BEFORE, &k, &r), CREDS_UNKNOWN); /* 513 bytes: nobody */
    big[512] = '\0';
    CHECK_INT(look_wait(c, big, REST_BEFORE, &k, &pending), CREDS_UNKNOWN);
    CHECK_INT(pending, 1);
    uv_update_time(&loop);
    CHECK_INT(creds_lookup(c, NULL, "gor\0st", 6, uv_now(&loop), 0, &k, on_ready, &r),
              CREDS_UNKNOWN);
    CHECK_INT(creds_lookup(c, NULL, "", 0, uv_now(&loop), 0, &k, on_ready, &r), CREDS_UNKNOWN);
    run_for(20);
    CHECK_INT(r.calls, 0);
}

UNIT_TEST(limits)
{
    creds_t *c = redis_creds();

    if (!c)
        return;
    rec_t r = {0}, w = {0};
    creds_keys_t k;
    char name[32];
    int pend = 0, busy = 0;

    for (int i = 0; i < 300; i++) {
        snprintf(name, sizeof(name), "busy%d", i);
        enum creds_status st = look(c, name, REST_BEFORE, &k, &r);
        pend += st == CREDS_PENDING;
        busy += st == CREDS_BUSY;
    }
    CHECK_INT(pend, 256);
    CHECK_INT(busy, 44);
    CHECK(run_until(&r.calls, 256, 10000));
    pend = busy = 0;
    for (int i = 0; i < 1100; i++) {
        enum creds_status st = look(c, "hotuser", REST_BEFORE, &k, &w);
        pend += st == CREDS_PENDING;
        busy += st == CREDS_BUSY;
    }
    CHECK_INT(pend, CREDS_PENDING_MAX); /* waiters on one name count too */
    CHECK_INT(busy, 1100 - CREDS_PENDING_MAX);
    CHECK(run_until(&w.calls, CREDS_PENDING_MAX, 10000));
    run_for(20);
    CHECK_INT(w.calls, CREDS_PENDING_MAX);
}

/* After creds_close nothing is called back, even with a query in flight. */
UNIT_TEST(close_pending)
{
    const creds_shared_t *sh = redis_shared();

    if (!sh)
        return;
    creds_t *c = NULL;
    creds_keys_t k;
    rec_t r = {0};

    CHECK_INT(creds_new(&loop, sh, NULL, &c), 0);
    CHECK(wait_state(c, 1, 5000));
    provision_md5("closeme", "x");
    CHECK_INT(look(c, "closeme", REST_BEFORE, &k, &r), CREDS_PENDING);
    creds_close(c);
    run_for(200);
    CHECK_INT(r.calls, 0);
}

/* Unknown names churn only their own part of the cache: known users outlive 200 of them in a
 * cache of 4 known and 8 unknown, and only a fifth known user evicts the least recent one. */
UNIT_TEST(unknown_cannot_evict)
{
    const creds_shared_t *sh = redis_shared();

    if (!sh)
        return;
    struct sockaddr_in src = ip4("192.0.2.1");
    creds_asker_t who = {(struct sockaddr *)&src, 64, 4, 4, 8};
    creds_t *c = NULL;
    creds_keys_t k;
    char name[32];
    rec_t r = {0};

    CHECK_INT(creds_new(&loop, sh, NULL, &c), 0);
    CHECK(wait_state(c, 1, 5000));
    for (int i = 0; i < 5; i++) {
        snprintf(name, sizeof(name), "known%d", i);
        provision_md5(name, "pw");
    }
    for (int i = 0; i < 4; i++) {
        snprintf(name, sizeof(name), "known%d", i);
        CHECK_INT(look_as_wait(c, &who, name, &k), CREDS_FOUND);
    }
    for (int i = 0; i < 200; i++) {
        snprintf(name, sizeof(name), "nobody%d", i);
        CHECK_INT(look_as_wait(c, &who, name, &k), CREDS_UNKNOWN);
    }
    uint64_t hits = ctr(&creds_stats(c)->cache_hits);
    for (int i = 0; i < 4; i++) { /* still cached: answered at once */
        snprintf(name, sizeof(name), "known%d", i);
        CHECK_INT(look_as(c, &who, name, &k, &r), CREDS_FOUND);
    }
    CHECK_INT(ctr(&creds_stats(c)->cache_hits), hits + 4);
    /* The unknown part holds 8: the oldest unknown names were evicted (asked again). */
    CHECK_INT(look_as(c, &who, "nobody0", &k, &r), CREDS_PENDING);
    CHECK(run_until(&r.calls, 1, 5000));
    /* A fifth known user takes the place of the least recently used one (known0). */
    CHECK_INT(look_as_wait(c, &who, "known4", &k), CREDS_FOUND);
    CHECK_INT(look_as(c, &who, "known1", &k, &r), CREDS_FOUND);
    CHECK_INT(look_as(c, &who, "known0", &k, &r), CREDS_PENDING);
    CHECK(run_until(&r.calls, 2, 5000));
    CHECK_INT(r.calls, 2);
    close_creds(c);
}

/* Lookups waiting for Redis: at most pending_per_ip per source IP (waiters, and queries it
 * started), at most pending_max in all; another source is not refused for the first one. */
UNIT_TEST(pending_bounds)
{
    const creds_shared_t *sh = redis_shared();

    if (!sh)
        return;
    struct sockaddr_in a = ip4("192.0.2.1"), b = ip4("192.0.2.2");
    struct sockaddr_in6 v6;
    creds_asker_t wa = {(struct sockaddr *)&a, 3, 6, 64, 64};
    creds_asker_t wb = wa, w6 = wa;
    creds_t *c = NULL;
    creds_keys_t k;
    char name[32];
    rec_t r = {0};

    memset(&v6, 0, sizeof(v6));
    v6.sin6_family = AF_INET6;
    inet_pton(AF_INET6, "2001:db8::1", &v6.sin6_addr);
    wb.addr = (struct sockaddr *)&b;
    w6.addr = (struct sockaddr *)&v6;
    CHECK_INT(creds_new(&loop, sh, NULL, &c), 0);
    CHECK(wait_state(c, 1, 5000));
    const creds_stats_t *st = creds_stats(c);
    int pend = 0, busy = 0;
    for (int i = 0; i < 5; i++) {
        snprintf(name, sizeof(name), "flood%d", i);
        enum creds_status s = look_as(c, &wa, name, &k, &r);
        pend += s == CREDS_PENDING;
        busy += s == CREDS_BUSY;
    }
    CHECK_INT(pend, 3);
    CHECK_INT(busy, 2);
    CHECK_INT(ctr(&st->refused_per_ip), 2);
    CHECK_INT(ctr(&st->pending), 3);
    /* Joining a query in flight still counts as a waiter of the source. */
    CHECK_INT(look_as(c, &wa, "flood0", &k, &r), CREDS_BUSY);
    /* Another source: its own budget, and it may join A's query. */
    CHECK_INT(look_as(c, &wb, "flood0", &k, &r), CREDS_PENDING);
    CHECK_INT(look_as(c, &wb, "other0", &k, &r), CREDS_PENDING);
    CHECK_INT(look_as(c, &w6, "other1", &k, &r), CREDS_PENDING);
    /* 6 waiting in all: the worker's bound refuses the next, whoever asks. */
    CHECK_INT(ctr(&st->pending), 6);
    CHECK_INT(look_as(c, &w6, "other2", &k, &r), CREDS_BUSY);
    CHECK_INT(ctr(&st->refused_total), 1);
    CHECK(run_until(&r.calls, 6, 5000));
    CHECK_INT(ctr(&st->pending), 0);
    /* Answered: the source may ask again (its charge is gone with the answers). */
    CHECK_INT(look_as(c, &wa, "flood9", &k, &r), CREDS_PENDING);
    CHECK(run_until(&r.calls, 7, 5000));
    /* A cancelled waiter no longer counts, but the query it started does until it is answered. */
    for (int i = 10; i < 13; i++) {
        snprintf(name, sizeof(name), "flood%d", i);
        CHECK_INT(look_as(c, &wa, name, &k, &r), CREDS_PENDING);
    }
    creds_cancel(c, &r);
    CHECK_INT(ctr(&st->pending), 0);
    CHECK_INT(look_as(c, &wa, "flood13", &k, &r), CREDS_BUSY);
    run_for(50);
    CHECK_INT(look_as_wait(c, &wa, "flood13", &k), CREDS_UNKNOWN);
    CHECK_INT(r.calls, 7);
    close_creds(c);
}

/* A server that stops answering: the command times out after 2 s and the lookup fails. */
UNIT_TEST_TIMEOUT(timeout, 120)
{
    creds_t *c = redis_creds();

    if (!c)
        return;
    creds_keys_t k;
    int pending;

    provision_md5("thawed", "x");
    kill(redis_pid, SIGSTOP);
    uint64_t t0 = now_ms();
    CHECK_INT(look_wait(c, "frozen", REST_BEFORE, &k, &pending), CREDS_UNAVAILABLE);
    uint64_t took = now_ms() - t0;
    CHECK(pending == 1 && took >= 1900 && took < 4000);
    if (took < 1900 || took >= 4000)
        fprintf(stderr, "timeout took %llu ms\n", (unsigned long long)took);
    kill(redis_pid, SIGCONT);
    CHECK(wait_state(c, 1, 40000));
    CHECK_INT(look_wait(c, "thawed", REST_BEFORE, &k, NULL), CREDS_FOUND);
}

/* AUTH (password, and an ACL user limited to what we use) and SELECT, on a second server. */
UNIT_TEST(auth_db)
{
    int port = test_free_port();
    char url[128], kname[128];
    uint8_t key[16];
    char hex[33];

    redis2_pid = redis_server_start(port, "s3cret");
    CHECK(redis2_pid > 0);
    redisContext *r = redis2_pid > 0 ? redis_server_connect(port) : NULL;
    if (!r)
        return;
    stun_auth_key_md5("faramir", 7, REALM, strlen(REALM), "gondor", 6, key);
    stun_auth_hex_encode(key, 16, hex);
    snprintf(kname, sizeof(kname), CREDS_REDIS_KEY_MD5, REALM, "faramir");
    const char *auth[] = {"AUTH", "s3cret"}, *sel[] = {"SELECT", "2"}, *set[] = {"SET", kname, hex};
    const char *acl[] = {"ACL",     "SETUSER", "turn",    "on",        ">turnpw",
                         "~turn/*", "+get",    "+exists", "+smembers", "+select"};
    CHECK(redis_server_ok(r, 2, auth) && redis_server_ok(r, 2, sel) && redis_server_ok(r, 3, set) &&
          redis_server_ok(r, 10, acl));
    redisFree(r);

    snprintf(url, sizeof(url), "redis://:s3cret@127.0.0.1:%d/2", port);
    check_userdb(url, "faramir", CREDS_FOUND);
    snprintf(url, sizeof(url), "ip=127.0.0.1 port=%d dbname=2 user=turn password=turnpw", port);
    check_userdb(url, "faramir", CREDS_FOUND);
    snprintf(url, sizeof(url), "redis://turn:turnpw@127.0.0.1:%d", port);
    check_userdb(url, "faramir", CREDS_UNKNOWN); /* db 0 */
    snprintf(url, sizeof(url), "ip=127.0.0.1 port=%d password=wrong", port);
    check_userdb(url, "faramir", CREDS_UNAVAILABLE);
    snprintf(url, sizeof(url), "redis://127.0.0.1:%d/2", port);
    check_userdb(url, "faramir", CREDS_UNAVAILABLE); /* NOAUTH */
    redis_server_kill(&redis2_pid);
}

/* A host name goes through uv_getaddrinfo, not hiredis' blocking resolver. */
UNIT_TEST(hostname)
{
    if (!redis_up())
        return;
    provision_md5("gorst", "hero"); /* also when run alone */
    char db[64];
    snprintf(db, sizeof(db), "host=localhost port=%d", redis_port);
    check_userdb(db, "gorst", CREDS_FOUND);
}

/* Kill Redis under a running worker: cached users keep working (stale up to an hour), new ones
 * are unavailable; restart it on the same port: the worker reconnects by itself. */
UNIT_TEST_TIMEOUT(kill_restart, 120)
{
    creds_t *c = redis_creds();

    if (!c)
        return;
    provision_md5("gorst", "hero"); /* also when run alone */
    rc_sadd(secrets_key(), "north");
    rc_sadd(secrets_key(), "south");
    /* The store has the Redis secrets before Redis goes away. */
    creds_keys_t k;
    rec_t r = {0};
    CHECK_INT(look_wait(c, "1266890800:before", REST_BEFORE, &k, NULL), CREDS_FOUND);
    CHECK_INT(look_wait_at(c, "gorst", 60000, REST_BEFORE, &k, NULL), CREDS_FOUND); /* refresh */
    redis_server_kill(&redis_pid);
    redisFree(prov);
    prov = NULL;
    CHECK(wait_state(c, 0, 5000));
    CHECK_INT(look_at(c, "gorst", 60000, REST_BEFORE, &k, &r), CREDS_FOUND);         /* fresh */
    CHECK_INT(look_wait_at(c, "gorst", 120000, REST_BEFORE, &k, NULL), CREDS_FOUND); /* stale */
    expect_md5(&k, 0, "7da2270ccfa49786e0115366d3a3d14d");
    CHECK_INT(look_wait_at(c, "gorst", 2 * 3600000, REST_BEFORE, &k, NULL), CREDS_UNAVAILABLE);
    CHECK_INT(look_wait(c, "newbie", REST_BEFORE, &k, NULL), CREDS_UNAVAILABLE);
    /* A new REST name still works from the Redis secrets we fetched before it went away. */
    CHECK_INT(look_wait(c, "1266890800:newrest", REST_BEFORE, &k, NULL), CREDS_FOUND);
    CHECK_INT(k.n, 2);
    CHECK_INT(r.calls, 0);

    uint64_t reconnects = ctr(&creds_stats(c)->redis_reconnects);
    redis_pid = redis_server_start(redis_port, NULL);
    CHECK(redis_pid > 0);
    prov = redis_server_connect(redis_port);
    if (!prov)
        return;
    provision_md5("newbie2", "pw");
    CHECK(wait_state(c, 1, 40000));
    CHECK(ctr(&creds_stats(c)->redis_reconnects) > reconnects);
    CHECK_INT(look_wait(c, "newbie2", REST_BEFORE, &k, NULL), CREDS_FOUND);
}

UNIT_TEST(down_at_start)
{
    char db[64];
    snprintf(db, sizeof(db), "ip=127.0.0.1 port=%d", test_free_port());
    const char *kv[] = {"realm",
                        REALM,
                        "user",
                        "alice:wonder land",
                        "use-auth-secret",
                        "true",
                        "static-auth-secret",
                        "north",
                        "redis-userdb",
                        db,
                        NULL};
    creds_shared_t *sh = shared_ok(kv);
    creds_t *c = NULL;
    creds_keys_t k;
    int pending;

    if (!sh)
        return;
    CHECK_INT(creds_new(&loop, sh, NULL, &c), 0); /* Redis down is not a startup failure */
    CHECK_INT(look_wait(c, "gorst", REST_BEFORE, &k, NULL), CREDS_UNAVAILABLE);
    CHECK_INT(look_wait(c, "alice", REST_BEFORE, &k, &pending), CREDS_FOUND);
    CHECK_INT(pending, 0);
    /* REST from a static secret keeps working without Redis (revocations unchecked). */
    CHECK_INT(look_wait(c, REST_USER, REST_BEFORE, &k, NULL), CREDS_FOUND);
    expect_md5(&k, 0, "189beda23cf1b5c67dd164d580ac15b0");
    CHECK_INT(redis_state(c), 0);
    close_creds(c);
    creds_shared_free(sh);
}

int main(int argc, char **argv)
{
    unit_args(argc, argv);
    signal(SIGPIPE, SIG_IGN);
    atexit(kill_all);
    creds_fixture_start();
    unit_run();
    if (the_c) {
        CHECK(ctr(&creds_stats(the_c)->redis_replies) > 0);
        CHECK(ctr(&creds_stats(the_c)->redis_latency_us_sum) > 0);
        close_creds(the_c);
    }
    creds_shared_free(the_sh);
    if (prov)
        redisFree(prov);
    kill_all();
    creds_fixture_end();
    return unit_done("test_creds_redis");
}
