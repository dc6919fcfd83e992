/* usage_writer.h - one worker's writer of the usage ledger: it takes the engine's allocation
 * events (turn/usage.h, through dispatch_usage_ops_t), keeps them in a bounded queue and appends
 * them from the worker's loop to one Redis Stream (`usage-stream`, XADD MAXLEN ~ N), over an
 * asynchronous connection of its own to `redis-statsdb` (or `redis-userdb`), Sentinel included
 * (auth/creds_redis.h); with `redis-statsdb` set, coturn's status keys and PUBLISH channels as
 * well (usage_writer.c). Nothing on the packet path waits for Redis: while Redis is away, events
 * queue up to `usage-queue-max` and newer ones are then dropped and counted
 * (uturn_usage_events_dropped_total). Delivery is at least once: events whose replies were lost
 * with a connection are sent again.
 *
 * Loop thread of the owning worker only.
 */
#ifndef UTURN_USAGE_WRITER_H
#define UTURN_USAGE_WRITER_H

#include <stddef.h>

#include <uv.h>

#include "cfg.h"
#include "stats.h"
#include "usage.h"

typedef struct usage_writer usage_writer_t;

/* A writer on `loop` for `cfg` (borrowed, outlives it), counting in `stats` (the worker's). With
 * nothing to write (usage-stream empty and no redis-statsdb, or no Redis at all) *out is NULL and
 * 0 is returned.
 * Otherwise fills *ops with the hook for dispatch_t.usage. Returns 0, -EINVAL (a bad connection
 * string: `err` says why) or -ENOMEM. */
int usage_writer_new(uv_loop_t *loop, const cfg_t *cfg, stats_t *stats, dispatch_usage_ops_t *ops,
                     usage_writer_t **out, char *err, size_t errlen);
/* Stop: what is still queued is dropped (not counted). The memory goes once the loop has run the
 * close callbacks. NULL is ignored. */
void usage_writer_close(usage_writer_t *u);

/* The stream fields of one event, for tests and docs: fills up to `max` (name, value) pairs into
 * `argv`/`len` after "XADD key MAXLEN ~ N *", formatting numbers into `scratch` (at least
 * USAGE_WRITER_SCRATCH bytes). Returns the number of argv slots used. `node` and `realm` are
 * borrowed. Any thread. */
#define USAGE_WRITER_SCRATCH 1024
#define USAGE_WRITER_ARGS 48
int usage_writer_format(const usage_event_t *ev, const char *key, const char *maxlen,
                        const char *node, const char *realm, bool rest, const char **argv,
                        size_t *len, char *scratch);

#endif
