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

typedef struct worker worker_t; /* worker.h: the server's own; others see none of it */

/* The checks of settings owned by a module above the server (uturnd passes admin_check): 0, or -1
 * with "FILE:LINE: 'key': reason" in `err`. Run first by the start, --check-config and every
 * reload, so the three refuse the same files. */
typedef int (*server_check_fn)(const cfg_t *cfg, char *err, size_t errlen);

typedef struct server {
    const cfg_t *cfg;
    shared_t shared;
    int shared_ready;
    uv_loop_t loop;
    uv_signal_t sig_term, sig_int, sig_hup, sig_usr1;
    uv_timer_t tick;
    worker_t *workers;
    int nworkers;
    struct sockaddr_storage *addrs;
    size_t naddrs;
    int stopping;
    int argc;
    char **argv; /* as given at start: reload reads the same file and options */
    uv_mutex_t reload_lock;
    cfg_t **retired; /* configs replaced by reloads: workers may still read them, freed at exit */
    size_t nretired;
    const cfg_t *live;
    server_check_fn check; /* as given to server_start */
    struct kpath *kpath;   /* the kernel fast path (kpath.h) the workers offload to, or NULL */
} server_t;

/* Resolve listening addresses, create and bind every worker, start their threads; `check` (may be
 * NULL) runs first and is kept for reloads. argc/argv are kept for reloads (they must outlive the
 * server). Returns 0 or -errno with a message in `err` naming what failed (nothing is left running
 * on failure). Signals are not taken yet (server_run does), so the caller can start more
 * listeners (the admin API) in between. */
int server_start(server_t *s, const cfg_t *cfg, server_check_fn check, int argc, char **argv,
                 char *err, size_t errlen);
/* The same, with the kernel fast path `kpath` (kpath_start's; NULL: none) given to the workers,
 * which offload their UDP allocations to it (offload.h). It must outlive server_close. */
int server_start_kpath(server_t *s, const cfg_t *cfg, server_check_fn check, int argc, char **argv,
                       struct kpath *kpath, char *err, size_t errlen);
/* Check a loaded config as far as it can be without binding: `check` (may be NULL) first, then
 * everything shared_init builds from it (users, secrets, Redis settings, peer ranges, alternates,
 * certificates, relay addresses) is built and freed again. The start runs the same code, so
 * --check-config, the start and a reload refuse the same files with the same
 * "FILE:LINE: 'key': reason". 0, or -1 with `err`. */
int server_check(const cfg_t *cfg, server_check_fn check, char *err, size_t errlen);
/* Take SIGTERM/SIGINT (stop), SIGHUP (reload) and SIGUSR1 (drain), start the drain-exit timer, log
 * "ready" and send systemd READY=1: the caller must have bound every other listener (the admin
 * API) by now. Then run until SIGTERM/SIGINT or drain-exit, having asked the workers to stop, and
 * return 0. Main thread, once, after a successful server_start. */
int server_run(server_t *s);
/* Free everything server_start made (after server_run, or after a failed start). Anything that
 * calls into the workers (the admin API) must be stopped before: it may be waiting on a worker,
 * which must still answer. */
void server_close(server_t *s);
/* Sum of every worker's counters (any thread). */
void server_stats(const server_t *s, stats_snapshot_t *out);
/* Worker i's own counters (any thread; single-writer atomics, no lock). 0, or -1 when there is no
 * worker i. */
int server_worker_stats(const server_t *s, int i, stats_snapshot_t *out);

/* Drain: from now on new Allocates are refused (300 Try Alternate with ALTERNATE-SERVER when
 * alternate-server is set, else 508); existing allocations live until they end; with drain-exit the
 * process exits when the last one is gone. Any thread; idempotent. */
void server_drain(server_t *s);
int server_draining(const server_t *s);

/* Reload: re-read the config file given at start (and the certificates), validate everything
 * first, then apply the reloadable keys to every worker at once. `report` receives one line per
 * change ("user-quota: 0 -> 5", "cert: reloaded") or the reason nothing was applied. Returns 0, or
 * -1 (nothing changed). Any thread (SIGHUP on the main loop, the admin API). */
int server_reload(server_t *s, char *report, size_t cap);

#endif
