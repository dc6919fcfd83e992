/* redis_sentinel.h - finding the Redis master through Redis Sentinel, for every client of the
 * credential store: the workers (asynchronously, hiredis' async API on the worker's libuv loop) and
 * the admin API (synchronously, on its own threads).
 *
 * The sentinels are asked in turn `SENTINEL get-master-addr-by-name NAME` (the first that answers
 * names the master; the next question starts at the one that last answered). The asynchronous side
 * also keeps one subscription to `+switch-master` on a sentinel, so a failover is followed within a
 * round trip of the sentinels announcing it, and re-asks whenever that subscription is
 * (re)established, so a switch announced while nobody listened is not missed. What the sentinels
 * name is only a candidate: its user checks ROLE on the master before trusting it (a sentinel may
 * still name a demoted master for a moment), and asks again when it finds a replica or READONLY.
 * Sentinels are given as IP literals (what the sentinels themselves announce), so nothing here
 * resolves a name.
 */
#ifndef UTURN_REDIS_SENTINEL_H
#define UTURN_REDIS_SENTINEL_H

#include <stdbool.h>
#include <stddef.h>

#include <uv.h>

#define REDIS_SENTINEL_MAX 8              /* sentinels in one redis-userdb */
#define REDIS_SENTINEL_DEFAULT_PORT 26379 /* Redis Sentinel's registered port */
#define REDIS_SENTINEL_NAME_MAX 128       /* master name: 1-128 of [A-Za-z0-9._-] */
#define REDIS_SENTINEL_IP_MAX 64          /* an IP literal as text, NUL included */

typedef struct {
    char ip[REDIS_SENTINEL_IP_MAX];
    int port;
} redis_sentinel_addr_t;

/* The Sentinel part of `redis-userdb` (creds_redis_cfg.c parses it). n == 0: no Sentinel. */
typedef struct redis_sentinel_cfg {
    int n;
    redis_sentinel_addr_t addr[REDIS_SENTINEL_MAX];
    char *master;   /* the monitored master's name (owned) */
    char *password; /* AUTH on the sentinels (`sentinel-password`), or NULL; owned */
} redis_sentinel_cfg_t;

/* Free the strings of `cfg` (the password is cleansed first) and zero it. */
void redis_sentinel_cfg_free(redis_sentinel_cfg_t *cfg);

/* "ip:port" or "[v6]:port" into buf (at least REDIS_SENTINEL_IP_MAX + 8 bytes); returns buf. */
const char *redis_sentinel_addr_str(const redis_sentinel_addr_t *a, char *buf, size_t cap);

typedef struct redisReply redisReply;

/* The answer to SENTINEL get-master-addr-by-name: a two-string array "ip", "port". Returns 0 with
 * the address in `out`, 1 for a nil answer (the sentinel does not know the name), -1 for anything
 * else (an error reply, a malformed answer). Pure; any thread. */
int redis_sentinel_parse_addr(const redisReply *rep, redis_sentinel_addr_t *out);
/* A +switch-master message "<name> <old-ip> <old-port> <new-ip> <new-port>" (`msg[0..len)`, not
 * NUL-terminated). Returns 0 with the new master in `out` when it is about `master`, 1 when it is
 * about another master, -1 when it is malformed. Pure; any thread. */
int redis_sentinel_parse_switch(const char *msg, size_t len, const char *master,
                                redis_sentinel_addr_t *out);
/* 1 when a ROLE reply says "master", 0 otherwise (a replica, a sentinel, an error). Pure. */
int redis_sentinel_role_is_master(const redisReply *rep);

/* ---- synchronous (admin threads) ---- */

/* Ask the sentinels of `cfg` in turn, starting at *next (updated to the one that answered), each
 * with a connect and reply timeout of `timeout_ms`. Returns 0 with the master in `out`, or -1 with
 * one line in `err` saying what the last sentinel tried said (never a password). Blocks for at most
 * n * 2 * timeout_ms; call it only off the workers' loops. */
int redis_sentinel_ask_sync(const redis_sentinel_cfg_t *cfg, int timeout_ms, int *next,
                            redis_sentinel_addr_t *out, char *err, size_t errlen);

/* ---- asynchronous (one worker's loop) ---- */

enum redis_sentinel_event {
    REDIS_SENTINEL_MASTER, /* the answer to redis_sentinel_ask: `addr` names the master */
    REDIS_SENTINEL_FAILED, /* no sentinel answered redis_sentinel_ask: `why` says what went wrong */
    REDIS_SENTINEL_SWITCH, /* +switch-master for our name: `addr` is the new master */
    REDIS_SENTINEL_RESYNC, /* the subscription is (re)established: ask again, a switch may have
                            * gone unheard */
};

/* `addr` and `why` are valid during the call only. Called from the loop (a hiredis or timer
 * callback), never from inside redis_sentinel_ask or redis_sentinel_close. The callee may call
 * redis_sentinel_ask, but must not close the redis_sentinel_t. */
typedef void (*redis_sentinel_cb)(void *arg, enum redis_sentinel_event ev,
                                  const redis_sentinel_addr_t *addr, const char *why);

typedef struct redis_sentinel redis_sentinel_t;

/* Start following the sentinels of `cfg` on `loop` (the +switch-master subscription starts at
 * once; sentinels that are down are retried with backoff, quietly). `cfg` is borrowed and must
 * outlive the object; `timeout_ms` bounds each connect and answer. Returns 0 or -ENOMEM. Loop
 * thread only. */
int redis_sentinel_new(uv_loop_t *loop, const redis_sentinel_cfg_t *cfg, int timeout_ms,
                       redis_sentinel_cb cb, void *arg, redis_sentinel_t **out);
/* Ask the sentinels for the master: cb comes once later with MASTER or FAILED. A question already
 * in flight is not repeated (its answer serves both). */
void redis_sentinel_ask(redis_sentinel_t *s);
/* Stop: no callback after this. The memory is released by the loop once the timers have closed,
 * so the loop must run after this call. NULL is ignored. */
void redis_sentinel_close(redis_sentinel_t *s);

#endif
