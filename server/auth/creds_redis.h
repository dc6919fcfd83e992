/* creds_redis.h - the `redis-userdb` connection string, one worker's asynchronous Redis connection
 * (hiredis' async API on the worker's libuv loop), and fetching what the store holds for a username
 * or a USERHASH (coturn's key layout plus ours, see creds.h). Used by the credential store
 * (creds.c), and for their own connections by the usage ledger's writer (core/usage_writer.c,
 * creds_redis_command) and the fleet (server/fleet, the connection string only).
 *
 * The connection string is coturn's "ip=... port=... dbname=... password=... connect_timeout=..."
 * or a URL "redis://[[user]:password@]host[:port][/db]", or, for a master that Redis Sentinel
 * watches, "sentinel=IP[:PORT],IP[:PORT],... master=NAME [password=...] [sentinel-password=...]
 * [dbname=N]" or "redis-sentinel://[[user]:password@]IP[:PORT],IP[:PORT],.../NAME[/db]
 * [?sentinel-password=...]" (sentinel ports default to 26379; redis_sentinel.h). The connection
 * authenticates (AUTH, with a user for Redis 6 ACLs) and selects the database before anything
 * else, pipelined (with Sentinel, ROLE follows: a master that turns out to be a replica is left
 * and the sentinels asked again); it times out a connect or a silent server after 2 s and
 * reconnects with exponential backoff (0.5 s .. 30 s), asking the sentinels before each attempt;
 * a +switch-master from the sentinels moves it to the new master at once. Everything here runs on
 * the owning worker's loop thread.
 */
#ifndef UTURN_CREDS_REDIS_H
#define UTURN_CREDS_REDIS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "creds.h"
#include "redis_sentinel.h"

/* Connect and command timeout; coturn's connect_timeout can only lower it. */
#define CREDS_REDIS_TIMEOUT_MS 2000

typedef struct {
    char *host; /* IP literal (IPv6 without brackets) or a name resolved with uv_getaddrinfo;
                 * NULL with Sentinel (the sentinels name the master) */
    int port;   /* 0 with Sentinel */
    int db;
    char *user;     /* ACL user for AUTH, or NULL */
    char *password; /* or NULL: no AUTH */
    int connect_timeout_ms;
    redis_sentinel_cfg_t sentinel; /* sentinel.n > 0: ask these for the master */
} creds_redis_cfg_t;

/* Parse a `redis-userdb` value. Returns 0, or -1 with a message naming the key and the bad part
 * in `err` (passwords are never echoed). `out` owns its strings: creds_redis_cfg_free. */
int creds_redis_cfg_parse(const char *s, creds_redis_cfg_t *out, char *err, size_t errlen);
void creds_redis_cfg_free(creds_redis_cfg_t *cfg);

enum creds_redis_state {
    CREDS_REDIS_DOWN = 0,       /* no connection: waiting for the backoff timer */
    CREDS_REDIS_CONNECTING = 1, /* connecting or authenticating; commands queue behind AUTH */
    CREDS_REDIS_UP = 2,
};

typedef struct creds_redis creds_redis_t;

/* Start connecting (a Redis that is down is not an error: it is retried). `cfg` and `stats` are
 * borrowed and must outlive `r`. Returns 0 or -errno. */
int creds_redis_new(uv_loop_t *loop, const creds_redis_cfg_t *cfg, creds_stats_t *stats,
                    creds_redis_t **out);
/* Drop the connection; no fetch callback runs after this. The memory is released by the loop once
 * the timers have closed, so the loop must run after this call. */
void creds_redis_close(creds_redis_t *r);
enum creds_redis_state creds_redis_state(const creds_redis_t *r);

/* How one command of creds_redis_command ended. */
enum creds_redis_cmd_result {
    CREDS_REDIS_CMD_OK = 0,    /* any reply but an error */
    CREDS_REDIS_CMD_ERROR = 1, /* an error reply (the server refused the command) */
    CREDS_REDIS_CMD_LOST = 2, /* the connection went before the reply: it may or may not have run */
};
/* Called once per command, on the loop thread, with an enum creds_redis_cmd_result; never after
 * creds_redis_close. */
typedef void (*creds_redis_cmd_cb)(void *arg, int result);
/* Send one command (for writers besides the credential store, such as the usage ledger: a second
 * connection of their own made with creds_redis_new). `argv`/`len` are (pointer, length) pairs
 * copied when queued; commands are pipelined in order and their replies come in order. Only while
 * the connection is UP (AUTH, SELECT and ROLE done). Returns 0 (cb comes once later) or -1 (not
 * sent: not up, closing, out of memory; cb never comes). */
int creds_redis_command(creds_redis_t *r, int argc, const char **argv, const size_t *len,
                        creds_redis_cmd_cb cb, void *arg);
/* The same with the reply's value: `value` is an integer reply (else 0); `str`/`len` an error
 * reply's text or a string reply (valid during the call; else NULL, 0). For scripts (EVALSHA, and
 * EVAL after NOSCRIPT). */
typedef void (*creds_redis_int_cb)(void *arg, int result, long long value, const char *str,
                                   size_t len);
int creds_redis_command_int(creds_redis_t *r, int argc, const char **argv, const size_t *len,
                            creds_redis_int_cb cb, void *arg);

/* What Redis holds for one username (coturn's layout and our keys beside it). */
#define CREDS_REDIS_MAX_SECRETS 16
typedef struct {
    creds_key_t key; /* has_md5 / has_sha256: which well-formed keys are stored */
    bool revoked;
    bool has_secrets; /* the realm's secret set was asked for; then: */
    size_t nsecrets;  /* non-empty members, at most CREDS_REDIS_MAX_SECRETS */
    const char *secret[CREDS_REDIS_MAX_SECRETS];
    size_t secret_len[CREDS_REDIS_MAX_SECRETS];
} creds_redis_user_t;

/* Called once, inside hiredis' read handling: with the answer (valid only during the call), or
 * NULL when the connection failed or a reply had the wrong type. It may fetch more, but must not
 * call the owner's user callbacks or close `r`. */
typedef void (*creds_redis_user_cb)(void *arg, const creds_redis_user_t *u);
/* USERHASH: `name` is the username it names (NUL-terminated, valid during the call) or NULL when
 * there is none; `failed` is 1 when Redis could not answer. */
typedef void (*creds_redis_alias_cb)(void *arg, int failed, const char *name, size_t len);

/* Fetch `name` (NUL-terminated, no NUL inside, at most 512 bytes) in `realm`: GET .../key,
 * GET .../key-sha256, EXISTS .../revoked/<name> and, with `with_secrets`, SMEMBERS .../secret, as
 * one pipeline. The name is only ever one argv element. Returns 0 (cb comes once, later) or -1
 * when nothing can be sent now (down, closing, out of memory): then cb is never called. */
int creds_redis_fetch_user(creds_redis_t *r, const char *realm, const char *name, bool with_secrets,
                           creds_redis_user_cb cb, void *arg);
/* GET turn/realm/<realm>/userhash/<hex of hash>. Same return and callback rules. */
int creds_redis_fetch_alias(creds_redis_t *r, const char *realm, const uint8_t hash[32],
                            creds_redis_alias_cb cb, void *arg);

#endif
