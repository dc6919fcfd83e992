/* free_port.c - see free_port.h. */
#include "free_port.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <unistd.h>

#define PORT_LOW 20000
#define PORT_HIGH 32767 /* the default ephemeral range starts at 32768 */
#define TRIES 2000
#define REMEMBERED 64

/* The ports this process was given: not handed out twice, since none is held until its user
 * binds it. */
static int given[REMEMBERED];
static unsigned n_given;

static bool was_given(int port)
{
    for (unsigned i = 0; i < n_given && i < REMEMBERED; i++)
        if (given[i] == port)
            return true;
    return false;
}

static int give(int port)
{
    given[n_given++ % REMEMBERED] = port;
    return port;
}

/* Bind 127.0.0.1:port (0: any) with `type`; the port bound, or -1. */
static int try_bind(int type, int port)
{
    struct sockaddr_in sin;
    socklen_t len = sizeof(sin);
    int fd = socket(AF_INET, type | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    memset(&sin, 0, sizeof(sin));
    sin.sin_family = AF_INET;
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    sin.sin_port = htons((uint16_t)port);
    int got = -1;
    if (bind(fd, (struct sockaddr *)&sin, sizeof(sin)) == 0 &&
        getsockname(fd, (struct sockaddr *)&sin, &len) == 0)
        got = ntohs(sin.sin_port);
    close(fd);
    return got;
}

static bool free_both(int port)
{
    return !was_given(port) && try_bind(SOCK_STREAM, port) == port &&
           try_bind(SOCK_DGRAM, port) == port;
}

int test_free_port(void)
{
    int high = PORT_HIGH, elo = 0, ehi = 0;
    FILE *f = fopen("/proc/sys/net/ipv4/ip_local_port_range", "r");
    if (f) {
        if (fscanf(f, "%d %d", &elo, &ehi) == 2 && elo - 1 < high)
            high = elo - 1;
        fclose(f);
    }
    if (high - PORT_LOW >= 100) {
        uint32_t r = 0;
        if (getrandom(&r, sizeof(r), 0) != (ssize_t)sizeof(r))
            r = (uint32_t)getpid();
        int span = high - PORT_LOW + 1;
        for (int i = 0; i < TRIES; i++) {
            int port = PORT_LOW + (int)((r + (uint32_t)i) % (uint32_t)span);
            if (free_both(port))
                return give(port);
        }
    }
    for (int i = 0; i < TRIES; i++) { /* no room below the ephemeral range: take one from it */
        int port = try_bind(SOCK_STREAM, 0);
        if (port > 0 && free_both(port))
            return give(port);
    }
    return -1;
}
