/* resv.h - EVEN-PORT reservations (RFC 8656 §7.2, §14.6 RESERVATION-TOKEN): the socket held on port
 * N+1 under a random token until an Allocate redeems it or reservation-lifetime passes.
 *
 * A RESERVATION-TOKEN may be redeemed from any 5-tuple, so on any worker: the table is shared,
 * behind one pthread mutex taken only when allocations are made or end (never per packet). Time is
 * the caller's wall clock in ms (the engine's unix_ms), so tests drive expiry with a fixed one. Any
 * thread.
 */
#ifndef UTURN_RESV_H
#define UTURN_RESV_H

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "cfg.h"
#include "quota.h"
#include "sockaddr_util.h"

typedef struct resv resv_t;

typedef struct {
    _Atomic(const cfg_t *) *live; /* reservation-lifetime, read at every add */
    quota_t *quota;               /* where a reservation's quota unit goes back */
    pthread_mutex_t lock;
    resv_t *head;
} resv_table_t;

/* An empty table; reservation units are given back to `quota`, the lifetime read from *live (both
 * must outlive t). */
void resv_init(resv_table_t *t, quota_t *quota, _Atomic(const cfg_t *) *live);
/* Close every held socket and free the table without giving quota units back (call it before
 * quota_close). */
void resv_close(resv_table_t *t);

/* Reservations: hold `fd` (bound to `addr`) for reservation-lifetime seconds under a new random
 * token, returned (0 when out of memory: the caller still owns fd). With `user`, the reservation
 * keeps the one quota unit the caller took for it with quota_take (so EVEN-PORT R=1 cannot pin
 * ports past user-quota / total-quota) and gives it back when redeemed or expired. */
uint64_t resv_add(resv_table_t *t, int fd, const struct sockaddr *addr, uint64_t now_unix_ms,
                  const char *user, size_t ulen);
/* Redeem: returns the fd and its address, or -1 when the token is unknown or expired. Releases
 * the reservation's quota unit, if it still has one. */
int resv_take(resv_table_t *t, uint64_t token, sa_any_t *addr, uint64_t now_unix_ms);
/* Before redeeming: when the live reservation `token` holds a quota unit of `user`, hand that unit
 * to the user's new allocation (which then takes none of its own) and return 1; else 0. So a user
 * at its quota can still redeem its own reservation. */
int resv_adopt_unit(resv_table_t *t, uint64_t token, const char *user, size_t ulen,
                    uint64_t now_unix_ms);
/* Close reservations past their time (any worker's sweep may call it), releasing their units. */
void resv_expire(resv_table_t *t, uint64_t now_unix_ms);

#endif
