/* alloc.h - TURN allocations of one worker: the 5-tuple table, permissions, channel bindings,
 * lifetimes.
 *
 * RFC 8656 §2.2 (an allocation is keyed by its 5-tuple), §7 (lifetime), §9 (permissions: by peer IP
 * only, 300 s, never refreshed by data), §12 (channels 0x4000-0x4FFF, 600 s, a number and a peer
 * transport address bound one-to-one). Everything here is owned by one worker thread: no locks.
 * Time is the caller's clock (the loop's milliseconds), so tests and fuzzers drive expiry with a
 * fake one. Expiry is checked by timestamps when used and by one sweep per worker, never a timer
 * per object.
 */
#ifndef UTURN_ALLOC_H
#define UTURN_ALLOC_H

#include <netinet/in.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "conn.h"
#include "creds_ops.h"
#include "list.h"
#include "siphash.h"
#include "sockaddr_util.h"
#include "stun.h"
#include "usage.h"

#define ALLOC_PERMISSION_MS (300 * 1000) /* RFC 8656 §9: exactly 300 s */
#define ALLOC_CHANNEL_MS (600 * 1000)    /* RFC 8656 §12: 10 minutes */
#define ALLOC_DEFAULT_LIFETIME 600       /* RFC 8656 §7.2 */

typedef struct {
    uint8_t family; /* AF_INET / AF_INET6 */
    uint8_t ip[16];
    uint64_t expires_ms;
} alloc_perm_t;

typedef struct {
    uint16_t number;
    sa_any_t peer;
    uint64_t expires_ms;
} alloc_chan_t;

/* One relayed transport address (two in a dual-stack allocation). `handle` belongs to whoever
 * opened the socket (the worker's libuv relay, or a test's fake). */
typedef struct {
    sa_any_t addr;      /* bound address (relay-ip:port) */
    sa_any_t announced; /* what XOR-RELAYED-ADDRESS says (external-ip mapping applied) */
    void *handle;
} alloc_relay_t;

typedef struct alloc alloc_t;
struct alloc {
    uint64_t id; /* unique per process: worker id in the top bits */
    /* How to reach the client that owns this allocation: a copy of the connection that made it,
     * whose `remote` points at client_addr. */
    turn_conn_t client;
    sa_any_t client_addr;
    alloc_relay_t relay[2];
    int nrelay;
    uint64_t created_ms, expires_ms;
    /* How long a permission and a channel last: 0 is RFC 8656's ALLOC_PERMISSION_MS and
     * ALLOC_CHANNEL_MS; the testing-only permission-lifetime and channel-lifetime set less. */
    uint32_t perm_ms, chan_ms;
    char username[STUN_USERNAME_MAX + 1];
    uint16_t username_len;
    creds_key_t key;    /* the key that authenticated the Allocate */
    bool key_is_sha256; /* answer with MESSAGE-INTEGRITY-SHA256 */
    bool counted_quota;
    bool counted_cluster; /* holds a fleet-wide unit (quota_cluster_ops_t): released with it */
    /* Retransmission cache for the Allocate that created us (RFC 8656 §7.2 / RFC 8489 §6.3.1). */
    uint8_t alloc_tid[12];
    uint8_t *alloc_resp;
    uint16_t alloc_resp_len;
    /* Counts are 32-bit: max-permissions goes to 65535, and a 16-bit capacity doubled past 32768
     * wrapped to 0, so realloc(perms, 0) freed the table in use. */
    alloc_perm_t *perms;
    uint32_t nperms, capperms;
    alloc_chan_t *chans;
    uint32_t nchans, capchans;
    /* max-bps token bucket (bytes), both directions together. */
    double bucket;
    uint64_t bucket_ms;
    /* Relayed traffic (usage.h: to_peer = client -> peer, from_peer = peer -> client). Plain
     * counters: only the owning worker writes them; the admin reads them through that worker
     * (alloc_view.h), so the packet path pays two adds. */
    usage_counts_t traffic;
    uint64_t usage_last_ms;  /* when the last usage event (created, periodic) was made */
    usage_counts_t reported; /* `traffic` as of the last periodic usage event */
    alloc_t *hnext;          /* 5-tuple hash chain */
    list_t link;             /* on alloc_table_t.all, for sweeps and listings */
    bool dead;               /* removed from the table, waiting for its sockets to close */
    bool tcp;                /* RFC 6062 TCP relay: relay[0] is a listening socket */
    void *tcp_state;         /* the worker's RFC 6062 state (peer connections) */
    /* The kernel path's state of this allocation (dispatch_relay_ops_t.offload owns it; NULL:
     * nothing in the kernel), and whether the kernel carries some of its traffic (for views). */
    void *offload;
    bool kernel;
};

typedef struct {
    alloc_t **buckets;
    size_t nbuckets; /* power of two */
    size_t count;
    /* SipHash key: clients choose their addresses and ports, so keep their chains short. */
    uint8_t key[SIPHASH_KEY_LEN];
    list_t all; /* alloc_t.link, newest first */
    uint64_t next_id;
} alloc_table_t;

/* 0 or -ENOMEM. `key` is the table's random hash key; `id_base` is or-ed into allocation ids
 * (worker number << 48). */
int alloc_table_init(alloc_table_t *t, const uint8_t key[SIPHASH_KEY_LEN], uint64_t id_base);
/* Frees every allocation's memory; the caller has closed their sockets. */
void alloc_table_free(alloc_table_t *t);

/* The allocation of a 5-tuple, or NULL. */
alloc_t *alloc_find(const alloc_table_t *t, enum turn_transport transport,
                    const struct sockaddr *remote, const struct sockaddr *local);
/* A new, empty allocation in the table for `client` (copied, its remote address too). NULL on
 * ENOMEM. */
alloc_t *alloc_insert(alloc_table_t *t, const turn_conn_t *client, uint64_t now_ms);
/* Take `a` out of the table (and the list); the caller frees it with alloc_free once its sockets
 * are closed. */
void alloc_remove(alloc_table_t *t, alloc_t *a);
void alloc_free(alloc_t *a);

/* Permissions (RFC 8656 §9). install returns 0, or -ENOSPC past `max` permissions. */
int alloc_perm_install(alloc_t *a, const struct sockaddr *peer, uint64_t now_ms, unsigned max);
/* 0 when installing all `n` peers would fit under `max` (peers already held, expired slots and
 * repeats inside the list counted), else -ENOSPC. For RFC 8656 §10.2's all or nothing: checked
 * before the first install, so a request past the cap leaves the table as it was. */
int alloc_perm_fits(const alloc_t *a, const sa_any_t *peers, int n, uint64_t now_ms, unsigned max);
/* 1 when a live permission covers the peer's IP. */
int alloc_perm_check(const alloc_t *a, const struct sockaddr *peer, uint64_t now_ms);

/* Channels (RFC 8656 §12). */
alloc_chan_t *alloc_chan_by_number(const alloc_t *a, uint16_t number, uint64_t now_ms);
alloc_chan_t *alloc_chan_by_peer(const alloc_t *a, const struct sockaddr *peer, uint64_t now_ms);
/* Bind or refresh. Returns 0, -EINVAL when the number is bound to another peer or the peer to
 * another number (400), -ENOSPC past `max` channels. */
int alloc_chan_bind(alloc_t *a, uint16_t number, const struct sockaddr *peer, uint64_t now_ms,
                    unsigned max);

/* Drop expired permissions and channels; returns 1 when the allocation itself has expired. */
int alloc_expire(alloc_t *a, uint64_t now_ms);

/* Relayed address of a family in `a`, or NULL. */
alloc_relay_t *alloc_relay_for(alloc_t *a, int family);

#endif
