/* main.c - uturnd's entry point and composition root: load the configuration, set up logging and
 * the pid file, start the server and then the admin API on top of it, run until SIGTERM/SIGINT (or
 * drain-exit), stop them in the reverse order, exit 0 on an orderly stop and 1 on a startup error
 * (the message names the key or address at fault). Only this file knows both server/ and admin/:
 * the admin reaches the server through server.h, and the server never calls up into the admin.
 * With redis-userdb the node also joins its fleet (server/fleet): the nonce secret is agreed on
 * before the workers start (so their first 401 already carries the fleet's), the fleet thread
 * starts after the server and before the admin (which publishes revocations through it), and
 * stops after the admin and before the server.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "admin.h"
#include "cfg.h"
#include "config.h"
#include "fleet.h"
#include "kpath.h"
#include "log.h"
#include "server.h"

static int write_pidfile(const char *path)
{
    FILE *f = fopen(path, "w");
    if (!f)
        return -errno;
    fprintf(f, "%ld\n", (long)getpid());
    return fclose(f) == 0 ? 0 : -errno;
}

int main(int argc, char **argv)
{
    cfg_t cfg;
    cfg_cli_t cli;
    char err[512];
    if (cfg_load(&cfg, argc, argv, &cli, err, sizeof(err)) != 0) {
        fprintf(stderr, "uturnd: %s\n", err);
        cfg_free(&cfg);
        return 1;
    }
    if (cli.help) {
        cfg_print_help(stdout, "uturnd");
        cfg_free(&cfg);
        return 0;
    }
    if (cli.version) {
        printf("uturnd %s\n", PACKAGE_VERSION);
        cfg_free(&cfg);
        return 0;
    }
    if (cli.kernel_offload_sweep) {
        /* No config needed: what is swept is found by the owners' pids (docs/KERNEL.md). */
        int n = kpath_sweep(err, sizeof(err));
        cfg_free(&cfg);
        if (n < 0) {
            fprintf(stderr, "uturnd: --kernel-offload-sweep: %s\n", err);
            return 1;
        }
        printf("uturnd: --kernel-offload-sweep: %d tc filter(s) of uturnds that are gone removed\n",
               n);
        return 0;
    }
    if (cli.check_config) {
        /* The start's own checks (server_check), short of binding: a file that passes here is
         * one the start accepts. */
        if (server_check(&cfg, admin_check, err, sizeof(err)) != 0 ||
            kpath_check(&cfg, err, sizeof(err)) != 0) {
            fprintf(stderr, "uturnd: %s\n", err);
            cfg_free(&cfg);
            return 1;
        }
        printf("uturnd: configuration OK\n");
        cfg_dump(&cfg, stdout);
        cfg_free(&cfg);
        return 0;
    }
    int rc =
        log_setup((enum log_level)cfg.log_level, (enum log_format)cfg.log_format, cfg.log_file);
    if (rc != 0) {
        fprintf(stderr, "uturnd: %s: 'log-file': %s: %s\n", cfg_where(&cfg, "log-file", 0),
                cfg.log_file, strerror(-rc));
        cfg_free(&cfg);
        return 1;
    }
    if (cfg.pidfile && (rc = write_pidfile(cfg.pidfile)) != 0) {
        fprintf(stderr, "uturnd: %s: 'pidfile': %s: %s\n", cfg_where(&cfg, "pidfile", 0),
                cfg.pidfile, strerror(-rc));
        cfg_free(&cfg);
        return 1;
    }
    /* Before any worker can answer a 401: a nonce made on one node validates on the others. */
    int nrc = fleet_nonce_agree(&cfg, FLEET_NONCE_WAIT_MS, cfg.nonce_agreed, err, sizeof(err));
    if (nrc == 0)
        LOGI("fleet", "nonce secret: the fleet's (from Redis)");
    else if (nrc < 0)
        LOGW("fleet",
             "nonce secret: a random one of this node's (Redis: %s); set nonce-secret "
             "on every node for nonces that validate fleet-wide",
             err);
    /* Before the workers: a kernel path that cannot start with kernel-offload = on stops here. */
    kpath_t *kpath = NULL;
    if (kpath_start(&cfg, &kpath, err, sizeof(err)) != 0) {
        LOGE("start", "%s", err);
        if (cfg.pidfile)
            unlink(cfg.pidfile);
        log_close();
        cfg_free(&cfg);
        return 1;
    }
    server_t srv;
    struct admin *admin = NULL;
    fleet_t *fleet = NULL;
    int status = 0;
    /* The admin binds after the workers and before server_run, which sends systemd READY=1: READY
     * comes only once every listener, the admin's included, is bound. */
    if (server_start_kpath(&srv, &cfg, admin_check, argc, argv, kpath, err, sizeof(err)) != 0 ||
        fleet_start(&srv, &fleet, err, sizeof(err)) != 0 ||
        (cfg.admin_listen && admin_start_fleet(&srv, fleet, &admin, err, sizeof(err)) != 0)) {
        LOGE("start", "%s", err);
        status = 1;
    } else {
        server_run(&srv);
    }
    /* The admin first: a request in progress may be waiting on a worker, which must still
     * answer. */
    admin_stop(admin);
    fleet_stop(fleet);
    server_close(&srv);
    kpath_stop(kpath);
    if (status == 0)
        LOGI("exit", "stopped cleanly");
    if (cfg.pidfile)
        unlink(cfg.pidfile);
    log_close();
    cfg_free(&cfg);
    return status;
}
