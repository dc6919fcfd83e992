/* notify.c - the sd_notify protocol (READY/RELOADING/STOPPING), through libsystemd when built
 * with it, else through a datagram to $NOTIFY_SOCKET written here (a path, or an abstract name
 * when it starts with '@'; the protocol systemd documents in sd_notify(3)).
 */
#include "notify.h"

#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "config.h"

#ifdef HAVE_SYSTEMD
#include <systemd/sd-daemon.h>
#endif

int notify_send_socket(const char *path, const char *state)
{
    if (!path || !*path)
        return 0;
    struct sockaddr_un sun;
    memset(&sun, 0, sizeof(sun));
    sun.sun_family = AF_UNIX;
    size_t len = strlen(path);
    if ((path[0] != '/' && path[0] != '@') || len >= sizeof(sun.sun_path))
        return -EINVAL;
    memcpy(sun.sun_path, path, len);
    if (path[0] == '@')
        sun.sun_path[0] = 0; /* abstract namespace: the name's length, no terminating NUL */
    int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    socklen_t salen = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len + (path[0] == '/'));
    ssize_t n = sendto(fd, state, strlen(state), MSG_NOSIGNAL, (struct sockaddr *)&sun, salen);
    int e = errno;
    close(fd);
    return n < 0 ? -e : 1;
}

int notify_send(const char *state)
{
#ifdef HAVE_SYSTEMD
    return sd_notify(0, state);
#else
    return notify_send_socket(getenv("NOTIFY_SOCKET"), state);
#endif
}

void notify_ready(const char *status)
{
    char msg[512];
    snprintf(msg, sizeof(msg), "READY=1%s%s", status ? "\nSTATUS=" : "", status ? status : "");
    (void)notify_send(msg);
}

void notify_reloading(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    char msg[96];
    snprintf(msg, sizeof(msg), "RELOADING=1\nMONOTONIC_USEC=%llu",
             (unsigned long long)ts.tv_sec * 1000000ULL + (unsigned long long)ts.tv_nsec / 1000);
    (void)notify_send(msg);
}

void notify_stopping(void) { (void)notify_send("STOPPING=1"); }
