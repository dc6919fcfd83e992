/* fleet_int.h - what the fleet's files share: the key names, the synchronous connection to the
 * master (fleet_redis.c), this node's entry and the redirect choice (fleet_local.c). Not for use
 * outside server/fleet/.
 */
#ifndef UTURN_FLEET_INT_H
#define UTURN_FLEET_INT_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "creds_redis.h"
#include "fleet.h"

#define FLEET_KEY_NODE "turn/node/" /* + node-id */
#define FLEET_KEY_NODES "turn/nodes"
#define FLEET_CHANNEL "turn/fleet/events"
#define FLEET_KEY_NONCE "turn/nonce-secret"

typedef struct redisContext redisContext;

/* Connect to the master `rc` names (asking its sentinels first, starting at *next, when it has
 * some), each step bounded by timeout_ms; AUTH, SELECT, and with Sentinel ROLE must say master.
 * Returns the connection (commands then time out after timeout_ms too; redisFree it) or NULL with
 * a reason in err. Blocks: never on a worker's loop. */
redisContext *fleet_redis_connect(const creds_redis_cfg_t *rc, int timeout_ms, int *next, char *err,
                                  size_t errlen);

/* CLOCK_MONOTONIC or CLOCK_REALTIME in milliseconds. */
static inline int64_t fleet_clock_ms(clockid_t id)
{
    struct timespec ts;
    clock_gettime(id, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Give the engine (addrs_fleet_set) the 300 Try Alternate targets from view `v`: per client
 * family and transport the live node with the most headroom, `self` and draining nodes left out;
 * v NULL: none (the static lists serve). Any thread. */
void fleet_pick_alternates(server_t *s, const char *self, const fleet_view_t *v);

#endif
