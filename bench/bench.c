/* bench.c - helpers shared by the benchmark tools (see bench.h). */
#include "bench.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <net/if.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#define SOCKBUF (8 * 1024 * 1024)

uint64_t bench_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

void bench_sleep_ns(uint64_t ns)
{
    struct timespec ts = {(time_t)(ns / 1000000000ull), (long)(ns % 1000000000ull)};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

void bench_die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "%s: ", program_invocation_short_name);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    exit(2);
}

void bench_addr(const char *s, struct sockaddr_in *out)
{
    char ip[64];
    const char *colon = strrchr(s, ':');
    if (!colon || (size_t)(colon - s) >= sizeof(ip))
        bench_die("bad address '%s' (want IP:PORT)", s);
    memcpy(ip, s, (size_t)(colon - s));
    ip[colon - s] = 0;
    memset(out, 0, sizeof(*out));
    out->sin_family = AF_INET;
    if (inet_pton(AF_INET, ip, &out->sin_addr) != 1)
        bench_die("bad IPv4 address '%s'", ip);
    /* The benchmark never leaves the loopback network. */
    if ((ntohl(out->sin_addr.s_addr) >> 24) != 127)
        bench_die("'%s' is not in 127.0.0.0/8", ip);
    long port = strtol(colon + 1, NULL, 10);
    if (port < 0 || port > 65535)
        bench_die("bad port in '%s'", s);
    out->sin_port = htons((uint16_t)port);
}

const char *bench_addr_str(const struct sockaddr_in *a)
{
    static char buf[64];
    char ip[INET_ADDRSTRLEN];
    inet_ntop(AF_INET, &a->sin_addr, ip, sizeof(ip));
    snprintf(buf, sizeof(buf), "%s:%u", ip, ntohs(a->sin_port));
    return buf;
}

static void big_buffers(int fd)
{
    int sz = SOCKBUF;
    /* FORCE needs CAP_NET_ADMIN; without it the kernel caps at net.core.[rw]mem_max. */
    if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &sz, sizeof(sz)) != 0)
        (void)setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &sz, sizeof(sz));
    if (setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, &sz, sizeof(sz)) != 0)
        (void)setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sz, sizeof(sz));
}

int bench_udp(const struct sockaddr_in *bind_to, int nonblock)
{
    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC | (nonblock ? SOCK_NONBLOCK : 0), 0);
    if (fd < 0)
        bench_die("socket: %s", strerror(errno));
    big_buffers(fd);
    if (bind(fd, (const struct sockaddr *)bind_to, sizeof(*bind_to)) != 0)
        bench_die("bind %s: %s", bench_addr_str(bind_to), strerror(errno));
    return fd;
}

int bench_udp_port_range(struct in_addr ip, int lo, int hi, int nonblock, int wildcard_lo)
{
    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC | (nonblock ? SOCK_NONBLOCK : 0), 0);
    if (fd < 0)
        bench_die("socket: %s", strerror(errno));
    big_buffers(fd);
    if (wildcard_lo) {
        /* A socket that answers for every 127.x.y.z (one client address per TURN session) must be
         * bound to the wildcard; tie it to the loopback device so it never sees other traffic. */
        if (setsockopt(fd, SOL_SOCKET, SO_BINDTODEVICE, "lo", 3) != 0)
            bench_die("SO_BINDTODEVICE lo: %s (the shared client socket needs it)",
                      strerror(errno));
        ip.s_addr = htonl(INADDR_ANY);
    }
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr = ip};
    unsigned seed = (unsigned)(bench_now_ns() ^ (uint64_t)getpid());
    for (int t = 0; t < 200; t++) {
        a.sin_port = htons((uint16_t)(lo + (int)(rand_r(&seed) % (unsigned)(hi - lo + 1))));
        if (bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0)
            return fd;
    }
    bench_die("no free UDP port in %d..%d", lo, hi);
}

uint64_t *bench_counters(const char *path)
{
    size_t len = BENCH_C_N * sizeof(uint64_t);
    if (!path) {
        uint64_t *c = calloc(BENCH_C_N, sizeof(uint64_t));
        if (!c)
            bench_die("out of memory");
        return c;
    }
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0 || ftruncate(fd, (off_t)len) != 0)
        bench_die("%s: %s", path, strerror(errno));
    void *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    close(fd);
    if (p == MAP_FAILED)
        bench_die("mmap %s: %s", path, strerror(errno));
    return p;
}

void bench_deadline(double seconds)
{
    if (seconds <= 0 || seconds > 3600)
        seconds = 3600;
    alarm((unsigned)seconds + 1);
}

const char *bench_opt(int argc, char **argv, const char *name, const char *def)
{
    for (int i = 1; i + 1 < argc; i++)
        if (strcmp(argv[i], name) == 0)
            return argv[i + 1];
    return def;
}

int bench_flag(int argc, char **argv, const char *name)
{
    for (int i = 1; i < argc; i++)
        if (strcmp(argv[i], name) == 0)
            return 1;
    return 0;
}

double bench_optf(int argc, char **argv, const char *name, double def)
{
    const char *v = bench_opt(argc, argv, name, NULL);
    return v ? strtod(v, NULL) : def;
}
