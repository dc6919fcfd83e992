/* relay.h - a worker's relay sockets as the dispatcher's relay ops: UDP relay sockets (relay.c)
 * and, added by tcp_relay_ops, the RFC 6062 TCP relay (tcp_relay.h).
 */
#ifndef UTURN_RELAY_H
#define UTURN_RELAY_H

#include "dispatch.h"

typedef struct worker worker_t;

/* Fill every member of `ops` (open, hold, send, close, the TCP ops, env = `w`) for the dispatcher
 * of worker `w`. The ops run on `w`'s loop thread only; they hold `w` without owning it. */
void relay_ops(worker_t *w, dispatch_relay_ops_t *ops);

#endif
