/* admin_env.h - a running uturnd core with its admin API, for fuzz targets and tests of the admin:
 * the real server_start with one worker on a free loopback UDP port, the admin on a free loopback
 * port with two tokens (full and read-only), a REST secret, a static user, and a real redis-server
 * (tests/common/redis_server.c) holding a few users and secrets. TURN clients of our own keep two
 * allocations (each with a permission and a channel) alive, so the allocation routes have something
 * to list, page, show and delete. Call everything from one thread (the fuzzer's).
 */
#ifndef UTURN_ADMIN_ENV_H
#define UTURN_ADMIN_ENV_H

#include <stdbool.h>
#include <stdint.h>

#define ADMIN_ENV_TOKEN "fuzz-admin-token-0123456789abcdef"
#define ADMIN_ENV_RO_TOKEN "fuzz-readonly-token-0123456789ab"

/* Start everything on first use (abort when that fails); afterwards make sure both allocations
 * exist and their permissions and channels are fresh. Call before each input. */
void admin_env_setup(void);
/* Undo what an input may have changed for the next ones: a drain (POST /api/v1/drain) is lifted,
 * Redis gets its initial data back, admin_env_redis(false) is undone. A reload re-reads the same
 * command line, so it changes nothing; a deleted allocation is made again by admin_env_setup. */
void admin_env_reset(void);
/* false: until the next reset the admin behaves as if redis-userdb were not set (its Redis client
 * is hidden from it). Only while the admin has no connection. */
void admin_env_redis(bool on);

/* Redis drops every connection of the user the admin logs in as (CLIENT KILL USER), so the
 * next Redis command of the admin meets a closed connection. */
void admin_env_redis_drop(void);

/* A new connection to the admin: our end of a socketpair (non-blocking) whose other end the admin
 * serves as if accepted from 127.0.0.1. The caller closes it. */
int admin_env_connect(void);
/* Wait until the admin has no connection left (libmicrohttpd frees a connection on its own thread
 * after closing it); abort past `deadline_ms` (admin_env_now_ms clock). */
void admin_env_wait_idle(int64_t deadline_ms);

/* The newest live allocation's id (16 hex digits), or "0000000000000000" when there is none. */
const char *admin_env_alloc_id(void);
/* Monotonic milliseconds. */
int64_t admin_env_now_ms(void);

#endif
