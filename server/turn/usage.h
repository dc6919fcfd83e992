/* usage.h - the usage ledger's engine side: allocation events (created, refreshed, a periodic
 * usage record, deleted with its totals) handed out through an ops hook, the bounded queue a worker
 * keeps them in until it writes them out, and the bounded table of the totals of ended allocations
 * per user (for the admin's per-user usage).
 *
 * No I/O: the engine calls dispatch_usage_ops_t.event with a plain copy (usage_event_t) and goes
 * on; whoever installed the hook (the worker: core/usage_writer.c) queues it and writes it to Redis
 * from its loop. Everything here belongs to one thread (the worker that owns the dispatch_t).
 *
 * Directions are named from the client's side of the relay: `to_peer` counts what the client sent
 * that was relayed to a peer (ChannelData and Send indications, payload bytes), `from_peer` what
 * peers sent that was relayed to the client (payload bytes, before ChannelData or Data indication
 * framing). A datagram is counted once the relay socket accepted it (to_peer) or once it passed
 * the permission and max-bps checks (from_peer).
 */
#ifndef UTURN_USAGE_H
#define UTURN_USAGE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "list.h"
#include "siphash.h"
#include "sockaddr_util.h"
#include "stun.h"

enum usage_kind {
    USAGE_CREATED = 0,   /* the Allocate succeeded */
    USAGE_REFRESHED = 1, /* a Refresh with a lifetime above 0 */
    USAGE_PERIODIC = 2,  /* every usage-interval seconds of an allocation's life */
    USAGE_DELETED = 3,   /* the allocation ended; `reason` says why */
};

enum usage_reason {
    USAGE_REASON_NONE = 0,    /* not a deletion */
    USAGE_REASON_DELETED = 1, /* Refresh 0, or its TCP/TLS connection closed */
    USAGE_REASON_EXPIRED = 2, /* its lifetime ran out */
    USAGE_REASON_KILLED = 3, /* ended by the admin (DELETE, user revoked or deleted), or shutdown */
};

/* Counters of traffic, both ways. */
typedef struct {
    uint64_t to_peer_bytes, to_peer_packets;     /* client -> peer, relayed */
    uint64_t from_peer_bytes, from_peer_packets; /* peer -> client, relayed */
} usage_counts_t;

/* One event: a copy of everything a record needs, so it outlives the allocation. */
typedef struct {
    uint8_t kind;         /* enum usage_kind */
    uint8_t reason;       /* enum usage_reason */
    uint8_t transport;    /* enum turn_transport of the client's connection */
    uint8_t nrelay;       /* 0..2 */
    uint64_t id;          /* the allocation id (worker in the top 16 bits) */
    int64_t ts_ms;        /* UNIX ms of the event */
    int64_t created_ms;   /* UNIX ms the allocation was made */
    uint32_t lifetime;    /* seconds left (created/refreshed: the granted lifetime) */
    sa_any_t client;      /* the client's address */
    sa_any_t relay[2];    /* relayed addresses (as announced) */
    usage_counts_t c;     /* totals since the allocation was made */
    usage_counts_t delta; /* since the previous periodic event (or creation) */
    uint16_t ulen;
    char user[STUN_USERNAME_MAX + 1]; /* ulen bytes, NUL-terminated */
} usage_event_t;

/* The hook through which the engine hands out events (dispatch_t.usage). NULL event: none made.
 * Called on the dispatch_t's thread; `ev` is valid during the call only; the callee must not call
 * back into the engine. */
typedef struct {
    void (*event)(void *env, const usage_event_t *ev);
    void *env;
} dispatch_usage_ops_t;

/* ---- the bounded event queue ---- */

/* A ring of at most `cap` events. On overflow the NEWEST event is dropped (usage_queue_push fails
 * and counts it in `dropped`): what is queued keeps its order, so a consumer never sees a deleted
 * before its created from one worker. */
typedef struct {
    usage_event_t *ring;
    size_t cap, head, count;
    uint64_t dropped; /* events refused because the queue was full */
} usage_queue_t;

/* 0 or -ENOMEM. cap >= 1. */
int usage_queue_init(usage_queue_t *q, size_t cap);
void usage_queue_free(usage_queue_t *q);
/* Copy `ev` in. 0, or -ENOSPC when full (then q->dropped is incremented). */
int usage_queue_push(usage_queue_t *q, const usage_event_t *ev);
/* The i-th oldest queued event (i < count), or NULL. */
const usage_event_t *usage_queue_peek(const usage_queue_t *q, size_t i);
/* Forget the `n` oldest events (n <= count). */
void usage_queue_pop(usage_queue_t *q, size_t n);

/* ---- the totals of ended allocations, per user ---- */

typedef struct {
    uint64_t allocations; /* ended allocations summed here */
    usage_counts_t c;
} usage_sum_t;

typedef struct usage_ended_ent usage_ended_ent_t;

/* At most `cap` users; when a new user finds it full, the user whose totals were updated longest
 * ago is dropped (LRU) and counted in `evicted`. */
typedef struct {
    usage_ended_ent_t **buckets;
    size_t nbuckets, count, cap;
    list_t lru; /* most recently updated first */
    uint8_t key[SIPHASH_KEY_LEN];
    uint64_t evicted;
} usage_ended_t;

/* An empty table for at most `cap` users (0: keep nothing); memory is taken on the first add.
 * `key` keys the hash (users choose their names). */
void usage_ended_init(usage_ended_t *t, size_t cap, const uint8_t key[SIPHASH_KEY_LEN]);
void usage_ended_free(usage_ended_t *t);
/* Add one ended allocation's totals to `user`'s. Out of memory, nothing is kept. */
void usage_ended_add(usage_ended_t *t, const char *user, size_t ulen, const usage_counts_t *c);
/* `user`'s totals; false (and *out zeroed) when the table has none. */
bool usage_ended_get(const usage_ended_t *t, const char *user, size_t ulen, usage_sum_t *out);

#endif
