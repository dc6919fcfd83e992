/* bench.h - helpers shared by the benchmark tools: clocks, addresses, sockets, the shared-memory
 * counter block the harness reads while a tool runs, and a hard time limit for every tool.
 *
 * The benchmark tools are our own small programs (bench/README.md). They only use 127.0.0.0/8:
 * addresses given on the command line are checked to be loopback, and the shared client socket of
 * turnc.c is tied to the loopback device.
 */
#ifndef UTURN_BENCH_H
#define UTURN_BENCH_H

#include <netinet/in.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

/* CLOCK_MONOTONIC in nanoseconds. */
uint64_t bench_now_ns(void);
void bench_sleep_ns(uint64_t ns);

/* Print "tool: message" to stderr and exit(2). */
void bench_die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

/* Parse "IP:PORT" (IPv4, must be in 127.0.0.0/8). Dies on anything else. */
void bench_addr(const char *s, struct sockaddr_in *out);
const char *bench_addr_str(const struct sockaddr_in *a); /* static buffer */

/* A UDP socket bound to `bind_to` (port 0: any), with big buffers (SO_*BUFFORCE as root, else the
 * sysctl cap). Blocking unless `nonblock`. Dies on failure. */
int bench_udp(const struct sockaddr_in *bind_to, int nonblock);
/* Bind a UDP socket to a random free port of `ip` in [lo, hi]. Dies when none is free. */
int bench_udp_port_range(struct in_addr ip, int lo, int hi, int nonblock, int wildcard_lo);

/* Counters in a small shared file, read by bench/run while the tool runs. Slots are written by the
 * one tool thread (relaxed atomic stores) and read by the harness at the window edges. */
enum {
    BENCH_C_PACKETS,
    BENCH_C_BYTES,
    BENCH_C_STAMP_NS,
    BENCH_C_AUX1,
    BENCH_C_AUX2,
    BENCH_C_N = 8
};
uint64_t *bench_counters(const char *path); /* NULL path: private memory */
static inline void bench_cset(uint64_t *c, int i, uint64_t v)
{
    __atomic_store_n(&c[i], v, __ATOMIC_RELAXED);
}

/* Every tool ends by itself: SIGALRM after `seconds` (default action: terminate). */
void bench_deadline(double seconds);

/* Option helpers: argv scanning "--name value". */
const char *bench_opt(int argc, char **argv, const char *name, const char *def);
int bench_flag(int argc, char **argv, const char *name);
double bench_optf(int argc, char **argv, const char *name, double def);

#endif
