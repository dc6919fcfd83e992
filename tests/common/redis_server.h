/* redis_server.h - a real redis-server for the C tests and fuzz targets that need one: started on
 * a loopback port with persistence off, waited for with a deadline, and killed with the test
 * process even when a sanitizer aborts it (PR_SET_PDEATHSIG). Commands go through hiredis'
 * blocking API with every argument as one argv element (binary-safe).
 */
#ifndef UTURN_TEST_REDIS_SERVER_H
#define UTURN_TEST_REDIS_SERVER_H

#include <sys/types.h>

#include <hiredis/hiredis.h>

/* Start redis-server on 127.0.0.1:`port` (with `--requirepass pass` unless pass is NULL) and wait
 * up to 10 s until it answers PING. Returns its pid, or -1 with the reason on stderr. */
pid_t redis_server_start(int port, const char *pass);
/* SIGKILL and reap; sets *pid to -1. No-op for a pid <= 0. */
void redis_server_kill(pid_t *pid);
/* A blocking connection (1 s timeout), or NULL. */
redisContext *redis_server_connect(int port);
/* Run one command (`argc` arguments); 1 when the reply is not an error, else 0 with the reason on
 * stderr. `r` may be NULL (0). */
int redis_server_ok(redisContext *r, int argc, const char *const *argv);
/* The same with a NULL-terminated argv. */
int redis_server_okv(redisContext *r, const char *const *argv);

#endif
