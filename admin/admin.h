/* admin.h - the admin HTTP API of uturnd (libmicrohttpd on threads of its own).
 *
 * Routes, status codes and bodies are specified in docs/openapi.yaml; docs/ADMIN.md shows them in
 * use. The admin threads never touch a worker's objects: statistics come from server_stats() and
 * the workers' single-writer counters, allocations are listed and terminated by tasks posted to
 * the owning worker (worker_post) with a bounded wait for the answer, and credentials are written
 * to Redis over a synchronous connection of the admin's own.
 */
#ifndef UTURN_ADMIN_H
#define UTURN_ADMIN_H

#include <stddef.h>

#include "server.h"

struct admin;

/* Start the API on the config's admin-listen address (IP[:PORT], [IPv6][:PORT]; port 8089 when
 * omitted) once the workers run (after server_start, before server_run, which sends READY=1). Needs
 * at least one admin-token. Returns 0 and *out, or -errno with a message naming the setting or
 * address at fault in `err` (nothing is left running). Main thread. `s` must outlive the admin. */
int admin_start(server_t *s, struct admin **out, char *err, size_t errlen);
struct fleet;
/* admin_start for a node in a fleet (server/fleet/fleet.h): GET /api/v1/cluster shows the fleet's
 * view, and credential changes and revocations are also published to the other nodes. `f` (may be
 * NULL: admin_start) must outlive the admin. */
int admin_start_fleet(server_t *s, struct fleet *f, struct admin **out, char *err, size_t errlen);
/* The admin settings' own checks (admin-listen's syntax; admin-token is cfg_validate's), given to
 * server_start and server_check as their server_check_fn so the start, --check-config and every
 * reload run them: 0, or -1 with "FILE:LINE: 'admin-listen': ..." in `err`. Any thread. */
int admin_check(const cfg_t *cfg, char *err, size_t errlen);
/* Stop accepting, wait for requests in progress (each bounded by its own timeouts), free. NULL is
 * a no-op. Main thread, before the workers stop. */
void admin_stop(struct admin *a);

/* Hand an already connected stream socket to the API as if it had been accepted on admin-listen
 * from 127.0.0.1. For tests and fuzzers (tests/fuzz/fuzz_admin.c feeds requests over a socketpair):
 * uturnd never calls it, so nothing on the network reaches it. The admin owns `fd` in every case
 * and closes it. Returns 0, or -errno (out of memory, connection limit). Any thread, between
 * admin_start and admin_stop. */
int admin_add_connection(struct admin *a, int fd);

#endif
