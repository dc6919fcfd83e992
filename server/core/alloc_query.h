/* alloc_query.h - the admin's questions about allocations and cached credentials, asked of every
 * worker: list, look up and end allocations by id, forget a user.
 *
 * Threading: any thread but a worker's own (the admin's pool threads). An allocation and a
 * worker's credential cache belong to that worker's loop thread alone (DESIGN.md), so every call
 * here posts a task to the worker(s) concerned (worker_post) that copies what the view needs into
 * memory the call owns, and waits on a condition variable up to SERVER_CALL_WAIT_MS for the
 * answers. No lock of a worker is taken and no pointer into a worker leaves it. A task that runs
 * after the caller gave up (a stalled or stopping worker) still writes into live memory: the call
 * is reference-counted and freed by whoever drops it last. Callbacks run on the caller's thread,
 * over copies, after every worker has answered.
 *
 * Errors (negative): -ETIMEDOUT (a worker did not answer within SERVER_CALL_WAIT_MS),
 * -ESHUTDOWN (the workers are stopping), -ENOMEM; -ENOENT where an id names no allocation.
 */
#ifndef UTURN_ALLOC_QUERY_H
#define UTURN_ALLOC_QUERY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "alloc_view.h"

#define SERVER_CALL_WAIT_MS 2000

typedef struct server server_t;

/* Which allocations server_alloc_foreach visits. */
typedef struct {
    uint64_t before; /* only ids below this (a paging cursor); 0: from the newest */
    size_t limit;    /* at most this many copied per worker (>= 1) */
    bool by_user;
    const char *user; /* with by_user: exactly these ulen bytes */
    size_t ulen;
} alloc_filter_t;

typedef void (*alloc_view_fn)(const alloc_view_t *v, void *arg);

/* Called by server_alloc_foreach with each view, on the caller's thread. */
typedef void (*alloc_view_fn)(const alloc_view_t *v, void *arg);

/* Visit, newest first (ids descending), the allocations that match `f`: at most f->limit from each
 * worker, so at most limit x workers calls; the caller shows the first `limit` and pages with the
 * last id shown. *total (may be NULL) receives how many match `f` ignoring `before` and `limit`.
 * 0 or a negative error (then fn was not called). */
int server_alloc_foreach(server_t *s, const alloc_filter_t *f, alloc_view_fn fn, void *arg,
                         size_t *total);
/* The allocation `id` with its permissions and channels into *out (free with
 * server_alloc_detail_free). 0, -ENOENT or another negative error. */
int server_alloc_get(server_t *s, uint64_t id, alloc_detail_t *out);
void server_alloc_detail_free(alloc_detail_t *d);
/* End allocation `id` now (as a DELETE by its client would, without a reply). 0, -ENOENT or
 * another negative error. */
int server_alloc_kill(server_t *s, uint64_t id);
/* Every worker forgets `user` (NULL: the REST secret set) in its credential cache and, with
 * `terminate` and a user, ends that user's allocations. Returns how many ended, or a negative
 * error. */
long server_forget_user(server_t *s, const char *user, size_t ulen, bool terminate);

/* `user`'s usage summed over every worker: its live allocations into *live, and the totals of its
 * ended allocations that the workers' bounded tables still hold (usage-ended-users each, LRU)
 * into *ended. 0 or a negative error. */
int server_usage_user(server_t *s, const char *user, size_t ulen, usage_sum_t *live,
                      usage_sum_t *ended);

#endif
