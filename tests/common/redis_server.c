/* redis_server.c - see redis_server.h. */
#include "redis_server.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define START_WAIT_MS 10000
#define MAX_ARGS 16

static uint64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

redisContext *redis_server_connect(int port)
{
    struct timeval tv = {1, 0};
    redisContext *r = redisConnectWithTimeout("127.0.0.1", port, tv);
    if (r && r->err) {
        redisFree(r);
        return NULL;
    }
    return r;
}

int redis_server_ok(redisContext *r, int argc, const char *const *argv)
{
    const char *av[MAX_ARGS];
    size_t len[MAX_ARGS];
    if (!r || argc > MAX_ARGS)
        return 0;
    for (int i = 0; i < argc; i++) {
        av[i] = argv[i];
        len[i] = strlen(argv[i]);
    }
    redisReply *rep = redisCommandArgv(r, argc, av, len);
    int ok = rep && rep->type != REDIS_REPLY_ERROR;
    if (!ok)
        fprintf(stderr, "redis %s failed: %s\n", argv[0],
                rep && rep->str ? rep->str
                : r->errstr[0]  ? r->errstr
                                : "?");
    if (rep)
        freeReplyObject(rep);
    return ok;
}

int redis_server_okv(redisContext *r, const char *const *argv)
{
    int n = 0;
    while (argv[n])
        n++;
    return redis_server_ok(r, n, argv);
}

static void spawn_child(int port, const char *pass)
{
    char p[16];
    int fd = open("/dev/null", O_WRONLY);
    /* The server dies with the test, even when the test is killed by a sanitizer. */
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (fd >= 0) {
        dup2(fd, 1);
        dup2(fd, 2);
    }
    snprintf(p, sizeof(p), "%d", port);
    /* execvp wants writable strings: copies (the child execs or exits right away). */
    char *argv[] = {strdup("redis-server"),
                    strdup("--port"),
                    strdup(p),
                    strdup("--bind"),
                    strdup("127.0.0.1"),
                    strdup("--save"),
                    strdup(""),
                    strdup("--appendonly"),
                    strdup("no"),
                    pass ? strdup("--requirepass") : NULL,
                    pass ? strdup(pass) : NULL,
                    NULL};
    execvp(argv[0], argv);
    _exit(127);
}

pid_t redis_server_start(int port, const char *pass)
{
    pid_t pid = fork();
    if (pid == 0)
        spawn_child(port, pass);
    if (pid < 0)
        return -1;
    uint64_t deadline = mono_ms() + START_WAIT_MS;
    while (mono_ms() < deadline) {
        int st;
        if (waitpid(pid, &st, WNOHANG) == pid) {
            fprintf(stderr, "redis-server exited (status %d): is it installed?\n", st);
            return -1;
        }
        redisContext *r = redis_server_connect(port);
        const char *auth[] = {"AUTH", pass ? pass : ""};
        const char *ping[] = {"PING"};
        bool up = r && (!pass || redis_server_ok(r, 2, auth)) && redis_server_ok(r, 1, ping);
        if (r)
            redisFree(r);
        if (up)
            return pid;
        struct timespec ts = {0, 20 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    fprintf(stderr, "redis-server on port %d did not answer within %d ms\n", port, START_WAIT_MS);
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    return -1;
}

void redis_server_kill(pid_t *pid)
{
    if (*pid > 0) {
        kill(*pid, SIGKILL);
        waitpid(*pid, NULL, 0);
    }
    *pid = -1;
}
