/* server.h - the whole daemon: configuration in, workers started, signals handled, orderly exit.
 *
 * The main thread runs a small libuv loop of its own for signals; it never touches a worker's
 * objects, only asks workers to stop and reads their counters.
 */
#ifndef UTURN_SERVER_H
#define UTURN_SERVER_H

#include <sys/socket.h>
#include <uv.h>

#include "cfg.h"
#include "shared.h"
#include "stats.h"
#include "worker.h"

typedef struct {
    const cfg_t *cfg;
    shared_t shared;
    int shared_ready;
    uv_loop_t loop;
    uv_signal_t sig_term, sig_int, sig_hup;
    worker_t *workers;
    int nworkers;
    struct sockaddr_storage *addrs;
    size_t naddrs;
    int stopping;
} server_t;

/* Resolve listening addresses, create and bind every worker, start their threads. Returns 0 or
 * -errno with a message in `err` naming what failed (nothing is left running on failure). */
int server_start(server_t *s, const cfg_t *cfg, char *err, size_t errlen);
/* Run until SIGTERM/SIGINT, then stop the workers and return 0. */
int server_run(server_t *s);
/* Free everything server_start made (after server_run, or after a failed start). */
void server_close(server_t *s);
/* Sum of every worker's counters (any thread). */
void server_stats(const server_t *s, stats_snapshot_t *out);

#endif
