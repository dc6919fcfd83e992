/* turn_shared.h - what the engine reads of the server-wide state: the config (as at start, and the
 * live snapshot a reload swaps), the nonce secret and the security features it advertises, the peer
 * policy, the draining flag; and the few things workers must agree on, each behind its own lock and
 * touched only when allocations are made or end (never per packet): quotas (quota.h), EVEN-PORT
 * reservations (resv.h), relay and alternate addresses (addrs.h).
 *
 * Built once at start by the daemon (core/shared.c embeds it) or by a test; then shared by every
 * worker's dispatch_t. No libuv: the locks are pthread mutexes.
 */
#ifndef UTURN_TURN_SHARED_H
#define UTURN_TURN_SHARED_H

#include <stdatomic.h>
#include <stdint.h>
#include <sys/socket.h>

#include "addrs.h"
#include "cfg.h"
#include "peer_policy.h"
#include "quota.h"
#include "resv.h"
#include "turn_auth.h"

typedef struct {
    const cfg_t *cfg;            /* as at start (what turn_shared_init built from) */
    _Atomic(const cfg_t *) live; /* the current snapshot for reloadable values (quotas) */
    uint8_t nonce_secret[TURN_NONCE_SECRET_LEN];
    uint32_t nonce_features; /* security feature bits we advertise */
    peer_range_t *allow, *deny;
    peer_policy_t policy;
    _Atomic int draining; /* set once by the server: new allocations get 403 */
    quota_t quota;
    resv_table_t resv;
    addrs_t addrs;
} turn_shared_t;

/* Build from a validated config (which must outlive s) and the listening addresses (relay IPs
 * default to them). Returns 0 or -1 with a message naming the key at fault (nothing half-built
 * survives). Not thread-safe; before any worker starts. */
int turn_shared_init(turn_shared_t *s, const cfg_t *cfg, const struct sockaddr_storage *listen,
                     size_t nlisten, char *err, size_t errlen);
/* Free everything (held reservation sockets closed); after every worker is gone. */
void turn_shared_close(turn_shared_t *s);

#endif
