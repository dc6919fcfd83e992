/* creds_redis_int.h - what creds_redis.c (the connection and its pipelines) shares with
 * creds_redis_keys.c (coturn's key layout and ours): the connection's state and the pipeline call.
 * Private to those two files. Loop thread of the owning worker only.
 */
#ifndef UTURN_CREDS_REDIS_INT_H
#define UTURN_CREDS_REDIS_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <hiredis/async.h>
#include <hiredis/hiredis.h>
#include <uv.h>

#include "creds_redis.h"
#include "log.h"
#include "redis_sentinel.h"

#define KEYNAME_MAX 1024 /* "turn/realm/" + realm (<= 255) + "/user/" + name + suffix fits */
#define MAX_ARGS 4
#define HOST_STR_MAX 280 /* "[" host (<= 255) "]:" port, or "master 'NAME'" */

struct creds_redis {
    uv_loop_t *loop;
    const creds_redis_cfg_t *cfg;
    creds_stats_t *stats;
    redisAsyncContext *ac; /* the one live context, or NULL */
    enum creds_redis_state state;
    int logged;     /* last state logged: -1 none yet, 0 down, 1 up */
    bool connected; /* ac's TCP connect finished */
    bool closing;
    bool resolving;         /* gai in flight (it holds a ref) */
    int setup_pending;      /* AUTH/SELECT replies still to come */
    unsigned outstanding;   /* replies still to come on ac */
    uint64_t last_activity; /* loop ms: connect start, first send from idle, last reply */
    uint64_t backoff_ms;
    int refs; /* timers and the gai request: r is freed when the last lets go */
    uv_timer_t watchdog, retry;
    uv_getaddrinfo_t gai;
    log_limit_t lim, data_lim;
    redis_sentinel_t *sent;       /* NULL without Sentinel */
    redis_sentinel_addr_t master; /* with Sentinel: the master connected or being connected to */
    bool master_known;            /* master is set */
    char target[HOST_STR_MAX];    /* the server as logged: host:port, or the sentinels' name */
};

/* One command of a pipeline. Arguments are (pointer, length) pairs so attacker bytes never meet a
 * format string; hiredis copies them into its buffer when the command is queued. */
typedef struct {
    int argc;
    const char *argv[MAX_ARGS];
    size_t len[MAX_ARGS];
} cmd_t;

/* Gets every reply of a pipeline in command order (valid during the call; error replies included),
 * or rep == NULL, n == 0 when the connection failed first, or n == -1 when `r` is closing: then it
 * only releases `arg` and calls nobody. */
typedef void (*done_cb)(void *arg, redisReply *const *rep, int n);

/* Send `n` commands as one pipeline: 0 (cb comes once) or -1 (cb never comes). */
int creds_redis_pipeline(creds_redis_t *r, const cmd_t *cmds, int n, done_cb cb, void *arg);

#endif
