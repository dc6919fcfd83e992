/* cluster_quota.h - one worker's side of the cluster-wide user-quota (issue 13): the
 * quota_cluster_ops_t (turn/quota.h) the engine asks before it makes an allocation, answered over
 * an asynchronous Redis connection of the worker's own (auth/creds_redis.h, Sentinel included) on
 * its loop.
 *
 * Redis layout (the database of redis-userdb):
 *   turn/quota/<node-id>  HASH  field "<realm>/<user>" = allocations this node holds for the user;
 *                               PEXPIRE CLUSTER_QUOTA_TTL_MS at every take and by the fleet thread
 *                               with its registry entry (server/fleet), so it goes with the node.
 * A take runs in a Lua script (EVALSHA; EVAL after NOSCRIPT): the user's count in our hash plus
 * in the hash of every member of turn/nodes whose turn/node/<id> still exists (a crashed node
 * stops counting when its entry expires, not when its hash does); below user-quota it HINCRBYs
 * ours. A release is another script (HINCRBY -1, HDEL at 1), fire-and-forget, queued while Redis
 * is away. The takes (and releases) queued in one loop iteration go as one call of up to 256.
 *
 * Degrade: Redis down, or no answer within CLUSTER_QUOTA_WAIT_MS, answers QUOTA_CLUSTER_LOCAL
 * (the node's own count decides), counted in stats cluster_quota_fallbacks and logged once per
 * outage per worker. A late OK after such an answer is given back at once.
 *
 * Loop thread of the owning worker only.
 */
#ifndef UTURN_CLUSTER_QUOTA_H
#define UTURN_CLUSTER_QUOTA_H

#include <stdatomic.h>
#include <stddef.h>

#include <uv.h>

#include "cfg.h"
#include "quota.h"
#include "stats.h"

#define CLUSTER_QUOTA_KEY "turn/quota/" /* + node-id */
#define CLUSTER_QUOTA_TTL_MS 2400       /* FLEET_TTL_MS: the hash lives as the registry entry */
#define CLUSTER_QUOTA_WAIT_MS 200       /* longest an Allocate waits for the fleet's answer */
#define CLUSTER_QUOTA_BACKLOG 4096      /* releases kept while Redis is away (then dropped) */

typedef struct cluster_quota cluster_quota_t;

/* A cluster quota on `loop` for `cfg` (borrowed; outlives it; user-quota is read from *live at
 * every take, so a reload applies), counting in `stats`. With cluster-quota off or no
 * redis-userdb, *out is NULL, *ops zeroed and 0 returned. Otherwise fills *ops for
 * dispatch_t.cquota. Returns 0, -EINVAL (a bad connection string: `err` says why) or -ENOMEM. */
int cluster_quota_new(uv_loop_t *loop, const cfg_t *cfg, _Atomic(const cfg_t *) *live,
                      stats_t *stats, quota_cluster_ops_t *ops, cluster_quota_t **out, char *err,
                      size_t errlen);
/* Stop: no callback comes after this; takes in flight are dropped (the engine's parked requests
 * were dropped before, by dispatch_close). Memory goes once the loop ran the close callbacks. NULL
 * is ignored. */
void cluster_quota_close(cluster_quota_t *c);

#endif
