/* sockaddr_util.h - small helpers over sockaddr_in / sockaddr_in6 shared by every layer.
 *
 * Formatting, parsing, comparing and hashing of transport addresses. No I/O, no state.
 */
#ifndef UTURN_SOCKADDR_UTIL_H
#define UTURN_SOCKADDR_UTIL_H

#include <netinet/in.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

/* Room for either family's transport address, used as its generic view (`.sa`) or by family. */
typedef union {
    struct sockaddr sa;
    struct sockaddr_in in;
    struct sockaddr_in6 in6;
} sa_any_t;

/* Longest "[v6]:port" plus NUL. */
#define SA_STRLEN 64

/* "1.2.3.4:5" or "[::1]:5" into out (SA_STRLEN). Returns out. */
char *sa_format(const struct sockaddr *sa, char *out, size_t cap);
/* Address only, no port. */
char *sa_format_ip(const struct sockaddr *sa, char *out, size_t cap);
/* Parse an IP literal (v4 or v6, optional [brackets]) with the given port. 0 or -1. */
int sa_parse_ip(const char *s, uint16_t port, struct sockaddr_storage *out);
/* Parse a transport address as written in the config: "A.B.C.D", "A.B.C.D:PORT", "[IPv6]",
 * "[IPv6]:PORT" or a bare IPv6 address (no port: "::1:80" is the address ::1:80, never ::1 port 80;
 * write "[::1]:80" for that). PORT is 1-65535 in decimal digits only (no sign, no spaces, nothing
 * after it); default_port is used when there is none. Brackets hold an IPv6 address only. No host
 * names. 0 or -1 (out zeroed on -1). */
int sa_parse_hostport(const char *s, uint16_t default_port, struct sockaddr_storage *out);
/* A port as sa_parse_hostport reads it: s[0..n) is 1 to 5 decimal digits worth 1-65535. 0 or -1. */
int sa_parse_port(const char *s, size_t n, uint16_t *out);
/* Size of the concrete sockaddr for its family (0 for unknown). */
socklen_t sa_len(const struct sockaddr *sa);
uint16_t sa_port(const struct sockaddr *sa);
void sa_set_port(struct sockaddr *sa, uint16_t port);
/* 1 when same family, address and port. */
int sa_equal(const struct sockaddr *a, const struct sockaddr *b);
/* 1 when same family and address (ports ignored). */
int sa_equal_ip(const struct sockaddr *a, const struct sockaddr *b);
/* The address bytes of an AF_INET (4) or AF_INET6 (16) address, their count in *n; NULL (and *n 0)
 * for any other family. Points into `sa`. */
const uint8_t *sa_ip_bytes(const struct sockaddr *sa, size_t *n);

#endif
