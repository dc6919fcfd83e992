/* fleet.h - many uturnd nodes as one service, through the Redis of `redis-userdb` (issue 13): a
 * node registry (each node publishes itself every second with a 2.4 s TTL), a cluster view (every
 * live node, read twice a second), fleet-wide revocation (pub/sub events that make every node
 * forget a user and end their allocations), and one nonce secret agreed on in Redis.
 *
 * Redis layout (the database of redis-userdb):
 *   turn/node/<node-id>   STRING  the node's entry (JSON, fleet_node_encode), PX FLEET_TTL_MS
 *   turn/nodes            ZSET    node-id scored by the entry's expiry (UNIX ms); members past it
 *                                 are pruned with ZREMRANGEBYSCORE by every reader
 *   turn/fleet/events     channel events (JSON, fleet_event_encode), at most FLEET_EVENT_MAX bytes
 *   turn/nonce-secret     STRING  64 hex digits, set once with NX by the first node to start
 *
 * One fleet thread per node owns two synchronous hiredis connections to the master (commands, and
 * the SUBSCRIBE), both with timeouts (hiredis' synchronous API: the thread is ours to block, and
 * nothing else waits on it); it waits in poll() on the subscription and a wake-up pipe,
 * so an event is applied as soon as it arrives; the registry is written once a second and read
 * every FLEET_READ_MS.
 * With Sentinel the master is asked of the sentinels (redis_sentinel_ask_sync) at every connect,
 * and its ROLE checked; a third connection, to one sentinel, is subscribed to +switch-master, and
 * a switch for our master makes the thread reconnect at once; a failover that went unheard still
 * breaks the connection (or answers READONLY), and the next connect finds the new master.
 * Reconnects back off from 0.5 s to 5 s; an outage is logged once. Nothing on a worker's path waits
 * for this thread: workers never call it, and what it does to them (server_forget_user) is a posted
 * task like the admin's.
 */
#ifndef UTURN_FLEET_H
#define UTURN_FLEET_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cfg.h"
#include "server.h"

#define FLEET_ID_MAX CFG_NODE_ID_MAX /* node-id: 1-64 of [A-Za-z0-9._-] */
#define FLEET_INSTANCE_LEN 32        /* a process's random instance id: 32 hex digits */
#define FLEET_ADDR_MAX 64            /* one "ip:port" / "[v6]:port", NUL included */
#define FLEET_ADDRS_PER 8            /* addresses per transport in one entry */
#define FLEET_NODES_MAX 256          /* nodes read into one view */
#define FLEET_ENTRY_MAX 4096         /* bytes of one registry entry */
#define FLEET_EVENT_MAX 1024         /* bytes of one event */
#define FLEET_USER_MAX 513           /* bytes of a user name in an event */
#define FLEET_REALM_MAX 255          /* bytes of a realm in an event */
/* A node writes its entry every FLEET_PERIOD_MS with a FLEET_TTL_MS lifetime and reads the others
 * every FLEET_READ_MS: a node that dies leaves every view within TTL + READ = 2.9 s, and a write
 * may come 1.4 s late before the node flaps. */
#define FLEET_TTL_MS 2400
#define FLEET_PERIOD_MS 1000
#define FLEET_READ_MS 500
#define FLEET_NONCE_WAIT_MS 2000

enum fleet_transport { FLEET_UDP, FLEET_TCP, FLEET_TLS, FLEET_DTLS, FLEET_NTRANSPORTS };

/* "udp", "tcp", "tls", "dtls". */
const char *fleet_transport_name(int t);

/* One node's registry entry. */
typedef struct {
    char id[FLEET_ID_MAX + 1];
    char instance[FLEET_INSTANCE_LEN + 1];
    char version[32];
    int64_t allocations;
    int64_t quota; /* total-quota: 0 unlimited (headroom for redirects) */
    int64_t bps;   /* relayed bits per second, both ways, over the last period */
    double cpu;    /* the process's CPU use over the last period, in cores (1.0: one core busy) */
    bool draining;
    int64_t started_ms; /* UNIX ms of the process's start */
    int64_t ts_ms;      /* UNIX ms when the entry was written */
    int naddr[FLEET_NTRANSPORTS];
    char addr[FLEET_NTRANSPORTS][FLEET_ADDRS_PER][FLEET_ADDR_MAX];
} fleet_node_t;

/* 1 when s[0..len) is a valid node-id (1-64 of [A-Za-z0-9._-]), else 0. Pure. */
int fleet_id_valid(const char *s, size_t len);
/* Encode `n` as JSON into out (NUL-terminated). Returns the length, or -1 when it does not fit
 * in `cap`. Pure; any thread. */
int fleet_node_encode(const fleet_node_t *n, char *out, size_t cap);
/* Decode an entry read from Redis (hostile input: bounded to FLEET_ENTRY_MAX, every field checked
 * for type and range). Returns 0 with *out filled, or -1 with one line in err. Pure. */
int fleet_node_decode(const char *s, size_t len, fleet_node_t *out, char *err, size_t errlen);

/* A fleet-wide event: forget `user` (or, without has_user, the REST secret set) in `realm`, and
 * with `terminate` end that user's allocations. */
typedef struct {
    char origin[FLEET_INSTANCE_LEN + 1]; /* the publishing process's instance id */
    char realm[FLEET_REALM_MAX + 1];
    bool has_user;
    char user[FLEET_USER_MAX + 1]; /* NUL-terminated; no NUL inside */
    size_t ulen;
    bool terminate;
} fleet_event_t;

/* Encode `e` as JSON into out; returns the length, or -1 when it does not fit (or is over
 * FLEET_EVENT_MAX). Pure. */
int fleet_event_encode(const fleet_event_t *e, char *out, size_t cap);
/* Decode an event from the channel (hostile: at most FLEET_EVENT_MAX bytes, types, lengths and
 * the NUL-free user checked). Returns 0, or -1 with one line in err. Pure. */
int fleet_event_decode(const char *s, size_t len, fleet_event_t *out, char *err, size_t errlen);

/* Every live node as last read, sorted by id: immutable once published, reference-counted. */
typedef struct {
    _Atomic int refs;
    int64_t read_ms; /* UNIX ms of the read */
    size_t n;
    fleet_node_t nodes[];
} fleet_view_t;

typedef struct fleet fleet_t;

/* This node's entry as the registry would hold it, from the server's config, addresses and
 * counters (bps and cpu 0: they need a period, the fleet thread measures them). Any thread, while
 * the server runs. */
void fleet_local(server_t *s, fleet_node_t *out);

/* The nonce secret the fleet shares: when `cfg` has redis-userdb and no nonce-secret, SET
 * turn/nonce-secret to 32 random bytes (hex) with NX, then GET it, within about timeout_ms in all
 * (a Sentinel lookup first). Returns 0 with 64 hex digits in out, 1 when nothing is to be agreed
 * (no Redis, or nonce-secret is set), -1 with a reason in err (Redis away: the caller keeps a
 * random secret of its own). Blocks: main thread, before server_start. */
int fleet_nonce_agree(const cfg_t *cfg, int timeout_ms, char out[65], char *err, size_t errlen);

/* Start the fleet thread on a started server (main.c: after server_start, before the admin).
 * Without redis-userdb *out is an object with no thread (fleet_enabled 0). Returns 0, or -errno
 * with a message in err (nothing left running). Main thread. */
int fleet_start(server_t *s, fleet_t **out, char *err, size_t errlen);
/* Stop the thread (the connections are closed, in-flight Redis calls end within their timeout)
 * and free. NULL is a no-op. Main thread, before server_close and after the admin stopped. */
void fleet_stop(fleet_t *f);
/* 1 when the fleet runs over Redis, 0 for a node alone (or f NULL). Any thread. */
int fleet_enabled(const fleet_t *f);
/* This node's id (node-id or the host name). Any thread. */
const char *fleet_node_id(const fleet_t *f);
/* Tell every other node to forget `user` (NULL: the REST secret set) of this node's realm and,
 * with `terminate`, end its allocations. The caller applies it locally itself; this only queues
 * the event for the fleet thread (no wait). Dropped, with a warning, when the queue is full
 * (Redis away for long). No-op without the fleet. Any thread. */
void fleet_publish_forget(fleet_t *f, const char *user, size_t ulen, bool terminate);
/* The last cluster view (a reference: fleet_view_put it), or NULL when none was read yet or f is
 * NULL / not enabled. Any thread. */
fleet_view_t *fleet_view_get(fleet_t *f);
/* Drop a reference fleet_view_get gave; the last one frees the view. NULL is a no-op. Any
 * thread. */
void fleet_view_put(fleet_view_t *v);

#endif
