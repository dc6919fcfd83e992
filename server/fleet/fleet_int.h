/* fleet_int.h - what fleet.c and fleet_redis.c share: the key names and the synchronous
 * connection to the master. Not for use outside server/fleet/.
 */
#ifndef UTURN_FLEET_INT_H
#define UTURN_FLEET_INT_H

#include <stddef.h>

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

#endif
