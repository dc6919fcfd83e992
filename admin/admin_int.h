/* admin_int.h - what the admin_*.c files share: the admin object, one request as a route handler
 * sees it, reply helpers, the synchronous Redis client and the fan-out to workers. Not for use
 * outside admin/.
 *
 * Threading: route handlers run on libmicrohttpd's pool threads, several at once. They read the
 * server through server_stats(), the workers' atomic counters and the immutable config snapshots
 * (shared.turn.live), never a worker's objects; anything about allocations goes through the
 * read-only views of server/core/alloc_query.h (copies made on the owning worker by
 * server/turn/alloc_view.c). The Redis connection is one per
 * admin, behind its own mutex.
 */
#ifndef UTURN_ADMIN_INT_H
#define UTURN_ADMIN_INT_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>
#include <uv.h>

#include "admin.h"
#include "alloc_query.h"
#include "server.h"
#include "stun.h"

#define ADMIN_DEFAULT_PORT 8089
#define ADMIN_MAX_BODY (64 * 1024) /* request bodies above this get 413 */
#define ADMIN_MAX_SEGS 8
#define ADMIN_REALM_MAX 255
#define ADMIN_WORKER_WAIT_MS SERVER_CALL_WAIT_MS /* how long a request waits for the workers */
#define ADMIN_REDIS_TIMEOUT_MS 1000

typedef struct admin_redis admin_redis_t;
typedef struct admin_conn admin_conn_t;
typedef struct admin_history admin_history_t;

typedef struct admin {
    server_t *s;
    struct MHD_Daemon *mhd;
    int fd;
    int family;
    int64_t start_unix_ms;
    uint64_t start_hr;    /* uv_hrtime() at start, for uptime */
    admin_redis_t *redis; /* NULL when redis-userdb is not set */
    char listen_name[64];
    /* The request deadline (admin-request-timeout): every open connection, and a thread that
     * shuts down those still short of a whole request when it passes. */
    uv_mutex_t conns_lock;
    uv_cond_t reaper_wake;
    uv_thread_t reaper;
    bool reaper_running, reaper_stop;
    admin_conn_t *conns; /* under conns_lock */
    uint64_t deadline_ms;
    uint64_t cut;             /* connections shut down at the deadline (under conns_lock) */
    admin_history_t *history; /* NULL when it could not start (out of memory) */
    struct fleet *fleet;      /* NULL without one (fuzzers); fleet_enabled 0 for a node alone */
} admin_t;

enum admin_method {
    ADMIN_GET = 1,
    ADMIN_PUT = 2,
    ADMIN_POST = 4,
    ADMIN_DELETE = 8,
    ADMIN_HEAD = 16
};

/* One request. Handlers read it and answer with exactly one admin_reply_* call. */
typedef struct admin_req {
    admin_t *a;
    struct MHD_Connection *conn;
    int method;
    char *seg[ADMIN_MAX_SEGS]; /* percent-decoded path segments (NUL-terminated, owned) */
    size_t seglen[ADMIN_MAX_SEGS];
    int nseg;
    const struct admin_route *route;
    bool readonly; /* authenticated with a ro: token */
    bool has_body_ctype_error;
    char *body;
    size_t body_len, body_cap;
    bool too_big;
    size_t discarded; /* bytes of an oversized body thrown away */
    json_t *json;     /* the parsed body for routes that take one, else NULL */
    /* The answer. */
    unsigned status;
    char *resp;
    size_t resp_len;
    const char *ctype;
    const char *allow;     /* 405: the Allow header */
    bool www_authenticate; /* 401 */
    bool ui;               /* a dashboard file: with its Content-Security-Policy */
    bool answered;
} admin_req_t;

typedef void (*admin_handler_fn)(admin_req_t *r);

typedef struct admin_route {
    int methods;         /* ADMIN_* bits this handler serves */
    const char *pattern; /* "/api/v1/realms/ * /users" with '*' for one segment */
    unsigned flags;
    admin_handler_fn fn;
} admin_route_t;

enum admin_route_flags {
    ADMIN_R_PUBLIC = 1,  /* no token needed (/healthz) */
    ADMIN_R_RO = 2,      /* a read-only token may call it */
    ADMIN_R_BODY = 4,    /* takes a JSON body (required) */
    ADMIN_R_KEYARG = 8,  /* the token may also come as ?key= (draft-uberti) */
    ADMIN_R_OPTBODY = 16 /* takes an optional JSON body */
};

/* ---- replies (admin_json.c) ---- */

/* Answer with `body` (reference stolen; NULL answers {}), as application/json. */
void admin_reply_json(admin_req_t *r, unsigned status, json_t *body);
/* {"error":{"code":code,"message":...}}. */
void admin_reply_error(admin_req_t *r, unsigned status, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* Any other content type; `text` is copied. */
void admin_reply_text(admin_req_t *r, unsigned status, const char *ctype, const char *text,
                      size_t len);

/* A query argument (percent-decoded, '+' as space) into `out`; NULL when absent. -1 via *bad when
 * it does not fit or holds a NUL. */
const char *admin_query(admin_req_t *r, const char *name, char *out, size_t cap, bool *bad);
/* Integer query argument in [min, max], `def` when absent. 0, or -1 after answering 400. */
int admin_query_int(admin_req_t *r, const char *name, long long def, long long min, long long max,
                    long long *out);
/* Percent-decode s[0..n) into a new string (NUL-terminated, *outlen bytes). NULL on a bad escape
 * or out of memory. `plus_space` turns '+' into ' ' (query strings). */
char *admin_pct_decode(const char *s, size_t n, bool plus_space, size_t *outlen);
/* A user or realm name from a path or body: 1..max bytes, valid UTF-8, no control characters.
 * 0, or -1 after answering 400 naming `field`. */
int admin_check_name(admin_req_t *r, const char *field, const char *v, size_t len, size_t max);
/* A string member of the JSON body; NULL when absent. -1 via *bad after answering 400 when it is
 * present but not a string. */
const char *admin_body_str(admin_req_t *r, const char *field, size_t *len, bool *bad);

/* ISO 8601 UTC ("2025-01-02T03:04:05Z") of UNIX milliseconds into out (cap >= 32). */
void admin_iso8601(int64_t unix_ms, char *out, size_t cap);
int64_t admin_unix_ms(void);

/* ---- the workers (admin_allocs.c) ---- */

/* Answer 503/500 for a failed server_alloc_* call (-ETIMEDOUT, -ESHUTDOWN, -ENOMEM). */
void admin_call_error(admin_req_t *r, int err);

/* ---- Redis (admin_redis.c) ---- */

/* NULL when redis-userdb is not set. */
admin_redis_t *admin_redis_new(const creds_shared_t *creds);
void admin_redis_free(admin_redis_t *rd);

typedef struct redisReply redisReply;
/* Run `n` commands (argv with lengths) as one pipeline under the connection lock, connecting (or
 * reconnecting) first when needed, with ADMIN_REDIS_TIMEOUT_MS for connect and each reply.
 * Returns 0 and the replies in out[0..n) (free each with admin_redis_free_reply), or -1 with a
 * reason in err (the connection is dropped; the caller answers 503). Error replies are replies. */
int admin_redis_run(admin_redis_t *rd, int n, const int argc[], const char **const argv[],
                    const size_t *const argvlen[], redisReply **out, char *err, size_t errlen);
void admin_redis_free_reply(redisReply *rep);
/* One command; same rules. */
redisReply *admin_redis_cmd(admin_redis_t *rd, int argc, const char **argv, const size_t *argvlen,
                            char *err, size_t errlen);
/* Round trip time of a PING in microseconds, or -1 when Redis cannot be reached. */
long admin_redis_ping(admin_redis_t *rd);

/* ---- route handlers ---- */

/* admin_metrics.c */
void admin_h_healthz(admin_req_t *r);
void admin_h_readyz(admin_req_t *r);
void admin_h_metrics(admin_req_t *r);
void admin_h_stats(admin_req_t *r);
void admin_h_drain(admin_req_t *r);
void admin_h_reload(admin_req_t *r);
/* admin_allocs.c */
void admin_h_allocs_list(admin_req_t *r);
void admin_h_alloc_get(admin_req_t *r);
/* GET /api/v1/usage?user=NAME: a user's relayed traffic on this node, live and ended. */
void admin_h_usage(admin_req_t *r);
void admin_h_alloc_delete(admin_req_t *r);
/* DELETE /api/v1/allocations?user=U: end U's allocations on this node and, in a fleet, on every
 * node (the credential caches forget U too). */
void admin_h_allocs_kill_user(admin_req_t *r);
/* Forget `user` in every worker's credential cache (user NULL: the REST secret set) and, with
 * `terminate`, end that user's allocations on this node; then publish the same to the fleet's
 * other nodes (fleet_publish_forget: they apply it within a second). Returns how many ended here,
 * or -1 after answering an error (workers did not answer). */
long admin_forget_user(admin_req_t *r, const char *user, size_t ulen, bool terminate);
/* admin_users.c */
void admin_h_users_list(admin_req_t *r);
void admin_h_user_get(admin_req_t *r);
void admin_h_user_put(admin_req_t *r);
void admin_h_user_delete(admin_req_t *r);
void admin_h_secrets_list(admin_req_t *r);
void admin_h_secret_add(admin_req_t *r);
void admin_h_secret_delete(admin_req_t *r);
/* admin_cluster.c: GET /api/v1/cluster. */
void admin_h_cluster(admin_req_t *r);
/* admin_creds.c */
void admin_h_credentials(admin_req_t *r);
void admin_h_turn_credentials(admin_req_t *r);
void admin_h_credential_revoke(admin_req_t *r);

/* admin_history.c: a thread that samples server_stats() every second into a ring of `cap`
 * entries. NULL when out of memory or no thread. Start and stop on the thread that runs
 * admin_start/admin_stop; stop joins the thread. */
admin_history_t *admin_history_start(admin_t *a, size_t cap);
void admin_history_stop(admin_history_t *h);
void admin_h_history(admin_req_t *r);

/* admin_ui.c and the file scripts/embed-ui.sh generates from admin/ui/ */
typedef struct {
    const char *name; /* "app.js" */
    const unsigned char *data;
    size_t len;
} admin_ui_asset_t;
extern const admin_ui_asset_t admin_ui_assets[];
extern const size_t admin_ui_nassets;
extern const char admin_ui_csp[];
void admin_h_ui(admin_req_t *r);
void admin_h_whoami(admin_req_t *r);

#endif
