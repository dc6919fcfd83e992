/* test_notify.c - unit tests of the built-in sd_notify writer (server/notify.c), the path uturnd
 * takes when built without libsystemd: a datagram to a socket path and to an abstract '@' name
 * (sd_notify(3)'s forms), nothing without NOTIFY_SOCKET, refusals of other forms. The integration
 * test test_systemd_notify.py checks the daemon's READY/RELOADING/STOPPING sequence end to end.
 */
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "notify.h"
#include "unit.h"

/* A bound datagram socket at `name` (a path, or '@' + an abstract name); -1 on failure. */
static int listen_at(const char *name)
{
    struct sockaddr_un sun;
    memset(&sun, 0, sizeof(sun));
    sun.sun_family = AF_UNIX;
    size_t len = strlen(name);
    memcpy(sun.sun_path, name, len);
    socklen_t salen = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len);
    if (name[0] == '@')
        sun.sun_path[0] = 0;
    else
        salen++;
    int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0 || bind(fd, (struct sockaddr *)&sun, salen) != 0) {
        perror("bind");
        if (fd >= 0)
            close(fd);
        return -1;
    }
    return fd;
}

static void expect_message(int fd, const char *want)
{
    char buf[256];
    ssize_t n = recv(fd, buf, sizeof(buf) - 1, MSG_DONTWAIT);
    CHECK(n >= 0);
    buf[n < 0 ? 0 : n] = 0;
    CHECK_STR(buf, want);
}

UNIT_TEST(path)
{
    char dir[] = "/tmp/uturn-notify-XXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    char path[128];
    snprintf(path, sizeof(path), "%s/notify", dir);
    int fd = listen_at(path);
    CHECK(fd >= 0);
    CHECK_INT(notify_send_socket(path, "READY=1\nSTATUS=ready"), 1);
    expect_message(fd, "READY=1\nSTATUS=ready");
    CHECK_INT(notify_send_socket(path, "STOPPING=1"), 1);
    expect_message(fd, "STOPPING=1");
    close(fd);
    unlink(path);
    /* Nobody listens any more: an error for the caller to ignore, never a crash or a block. */
    CHECK_INT(notify_send_socket(path, "READY=1"), -ENOENT);
    rmdir(dir);
}

UNIT_TEST(abstract)
{
    char name[64];
    snprintf(name, sizeof(name), "@uturn-notify-unit-%ld", (long)getpid());
    int fd = listen_at(name);
    CHECK(fd >= 0);
    CHECK_INT(notify_send_socket(name, "RELOADING=1\nMONOTONIC_USEC=1"), 1);
    expect_message(fd, "RELOADING=1\nMONOTONIC_USEC=1");
    close(fd);
}

UNIT_TEST(refused_forms)
{
    CHECK_INT(notify_send_socket(NULL, "READY=1"), 0);
    CHECK_INT(notify_send_socket("", "READY=1"), 0);
    CHECK_INT(notify_send_socket("relative/path", "READY=1"), -EINVAL);
    char longp[200];
    memset(longp, 'a', sizeof(longp) - 1);
    longp[0] = '/';
    longp[sizeof(longp) - 1] = 0;
    CHECK_INT(notify_send_socket(longp, "READY=1"), -EINVAL);
}

UNIT_MAIN("test_notify")
