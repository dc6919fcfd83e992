/* alloc_view.h - a read-only view of one worker's allocations: plain copies (alloc_view_t,
 * alloc_detail_t) that the admin formats, so it never sees alloc_t, dispatch_t or worker_t; and the
 * engine's functions that fill them.
 *
 * The functions run on the thread that owns the dispatch_t (a worker, through worker_post: see
 * core/alloc_query.h, which gathers the views of every worker for the admin). Only the types are
 * for other threads. Times in a view are UNIX milliseconds: the engine's monotonic time turned
 * into wall-clock time with the offset between its two clocks (dispatch_clock).
 */
#ifndef UTURN_ALLOC_VIEW_H
#define UTURN_ALLOC_VIEW_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "stun.h"
#include "usage.h"

#define ALLOC_VIEW_USER_MAX STUN_USERNAME_MAX

/* One allocation as the admin shows it. Times are UNIX milliseconds (the worker's loop clock
 * turned into wall-clock time with that worker's offset). Addresses an allocation does not have
 * are zeroed (ss_family AF_UNSPEC). */
typedef struct {
    uint64_t id;           /* owning worker in the top 16 bits */
    int worker;            /* id >> 48 */
    const char *transport; /* "udp", "tcp", "tls", "dtls" (static strings) */
    struct sockaddr_storage client, server;
    int nrelay; /* 0..2 */
    struct sockaddr_storage relay[2], announced[2];
    int64_t created_ms, expires_ms;
    uint16_t ulen;
    char user[ALLOC_VIEW_USER_MAX + 1]; /* ulen bytes, NUL-terminated (may hold any byte) */
    unsigned nperms, nchans;            /* live (unexpired) ones */
    usage_counts_t traffic; /* relayed: to_peer (client -> peer), from_peer (peer -> client);
                             * the kernel path's share included (folded in before the copy) */
    bool kernel;            /* the kernel path carries some of its traffic (kernel-offload) */
} alloc_view_t;

typedef struct {
    uint8_t family; /* AF_INET or AF_INET6 */
    uint8_t ip[16];
    int64_t expires_ms;
} alloc_perm_view_t;

typedef struct {
    uint16_t number;
    struct sockaddr_storage peer;
    int64_t expires_ms;
} alloc_chan_view_t;

/* An allocation with its live permissions and channels (alloc_view_detail, server_alloc_get). */
typedef struct {
    alloc_view_t v;
    alloc_perm_view_t *perms;
    alloc_chan_view_t *chans;
    unsigned nperms, nchans;
} alloc_detail_t;

struct alloc;
struct dispatch;

/* Copy allocation `a` of `d` into *v (live permissions and channels counted, not listed). */
void alloc_view_fill(const struct dispatch *d, const struct alloc *a, alloc_view_t *v);
/* Copy `a` with its live permissions and channels into *out (free with alloc_view_detail_free;
 * out of memory, the lists come back short). */
void alloc_view_detail(const struct dispatch *d, const struct alloc *a, alloc_detail_t *out);
/* Free the lists of a detail (any thread); NULL lists are fine. */
void alloc_view_detail_free(alloc_detail_t *out);

/* Called by alloc_view_foreach for each live allocation; it may end the one it is given
 * (dispatch_alloc_delete). */
typedef void (*alloc_view_each_fn)(struct alloc *a, void *arg);
/* Visit every live allocation of `d`, newest first (ids descending), its traffic brought up to
 * date with the kernel path's (dispatch_alloc_fold) first; _find does the same for the one. */
void alloc_view_foreach(struct dispatch *d, alloc_view_each_fn fn, void *arg);
/* The live allocation `id` of `d`, or NULL. */
struct alloc *alloc_view_find(struct dispatch *d, uint64_t id);

#endif
