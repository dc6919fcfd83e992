/* sockaddr_util.c - formatting, parsing and comparing IPv4/IPv6 transport addresses.
 *
 * Used wherever TURN keys state by address: the 5-tuple of an allocation (RFC 8656 §2.2),
 * permissions keyed by peer IP only with the port ignored (RFC 8656 §9), channel bindings keyed by
 * IP and port (RFC 8656 §12). Only AF_INET and AF_INET6 are understood; other families format as
 * "?" and never compare equal.
 */
#include <arpa/inet.h>
#include <stdio.h>
#include <string.h>

#include "sockaddr_util.h"

char *sa_format_ip(const struct sockaddr *sa, char *out, size_t cap)
{
    const void *addr = NULL;

    if (cap == 0)
        return out;
    if (sa->sa_family == AF_INET)
        addr = &((const struct sockaddr_in *)sa)->sin_addr;
    else if (sa->sa_family == AF_INET6)
        addr = &((const struct sockaddr_in6 *)sa)->sin6_addr;
    if (!addr || cap > (socklen_t)-1 || !inet_ntop(sa->sa_family, addr, out, (socklen_t)cap))
        snprintf(out, cap, "?");
    return out;
}

char *sa_format(const struct sockaddr *sa, char *out, size_t cap)
{
    char ip[INET6_ADDRSTRLEN];

    if (sa->sa_family == AF_INET6)
        snprintf(out, cap, "[%s]:%u", sa_format_ip(sa, ip, sizeof(ip)), (unsigned)sa_port(sa));
    else if (sa->sa_family == AF_INET)
        snprintf(out, cap, "%s:%u", sa_format_ip(sa, ip, sizeof(ip)), (unsigned)sa_port(sa));
    else if (cap > 0)
        snprintf(out, cap, "?");
    return out;
}

int sa_parse_ip(const char *s, uint16_t port, struct sockaddr_storage *out)
{
    char tmp[INET6_ADDRSTRLEN];
    size_t n = strlen(s);

    memset(out, 0, sizeof(*out));
    /* "[v6]" is how addresses are written next to a port; accept it without the port too. */
    if (n >= 2 && s[0] == '[' && s[n - 1] == ']') {
        if (n - 2 >= sizeof(tmp))
            return -1;
        memcpy(tmp, s + 1, n - 2);
        tmp[n - 2] = '\0';
        struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)out;
        if (inet_pton(AF_INET6, tmp, &sin6->sin6_addr) != 1)
            return -1;
        sin6->sin6_family = AF_INET6;
        sin6->sin6_port = htons(port);
        return 0;
    }
    struct sockaddr_in *sin = (struct sockaddr_in *)out;
    if (inet_pton(AF_INET, s, &sin->sin_addr) == 1) {
        sin->sin_family = AF_INET;
        sin->sin_port = htons(port);
        return 0;
    }
    struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)out;
    if (inet_pton(AF_INET6, s, &sin6->sin6_addr) == 1) {
        sin6->sin6_family = AF_INET6;
        sin6->sin6_port = htons(port);
        return 0;
    }
    memset(out, 0, sizeof(*out));
    return -1;
}

int sa_parse_port(const char *s, size_t n, uint16_t *out)
{
    unsigned long p = 0;
    if (n == 0 || n > 5)
        return -1;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        p = p * 10 + (unsigned long)(s[i] - '0');
    }
    if (p < 1 || p > 65535)
        return -1;
    *out = (uint16_t)p;
    return 0;
}

int sa_parse_hostport(const char *s, uint16_t default_port, struct sockaddr_storage *out)
{
    char host[INET6_ADDRSTRLEN];
    const char *port = NULL;
    size_t hn;
    int v6 = 0;

    memset(out, 0, sizeof(*out));
    if (s[0] == '[') {
        const char *rb = strchr(s, ']');
        if (!rb || (rb[1] && rb[1] != ':'))
            return -1;
        hn = (size_t)(rb - s - 1);
        port = rb[1] == ':' ? rb + 2 : NULL;
        v6 = 1;
        if (hn >= sizeof(host))
            return -1;
        memcpy(host, s + 1, hn);
    } else {
        const char *c = strchr(s, ':');
        if (c && strchr(c + 1, ':')) { /* two or more colons: a bare IPv6 address, no port */
            c = NULL;
            v6 = 1;
        }
        hn = c ? (size_t)(c - s) : strlen(s);
        if (hn >= sizeof(host))
            return -1;
        memcpy(host, s, hn);
        port = c ? c + 1 : NULL;
    }
    host[hn] = '\0';
    uint16_t p = default_port;
    if (port && sa_parse_port(port, strlen(port), &p) != 0)
        return -1;
    int fam = v6 ? AF_INET6 : AF_INET;
    void *dst = v6 ? (void *)&((struct sockaddr_in6 *)out)->sin6_addr
                   : (void *)&((struct sockaddr_in *)out)->sin_addr;
    if (!v6 && inet_pton(AF_INET, host, dst) != 1) {
        /* one colon or none and not IPv4: a bare IPv6 with no colon cannot exist, so refuse */
        memset(out, 0, sizeof(*out));
        return -1;
    }
    if (v6 && inet_pton(AF_INET6, host, dst) != 1) {
        memset(out, 0, sizeof(*out));
        return -1;
    }
    out->ss_family = (sa_family_t)fam;
    sa_set_port((struct sockaddr *)out, p);
    return 0;
}

socklen_t sa_len(const struct sockaddr *sa)
{
    if (sa->sa_family == AF_INET)
        return sizeof(struct sockaddr_in);
    if (sa->sa_family == AF_INET6)
        return sizeof(struct sockaddr_in6);
    return 0;
}

uint16_t sa_port(const struct sockaddr *sa)
{
    if (sa->sa_family == AF_INET)
        return ntohs(((const struct sockaddr_in *)sa)->sin_port);
    if (sa->sa_family == AF_INET6)
        return ntohs(((const struct sockaddr_in6 *)sa)->sin6_port);
    return 0;
}

void sa_set_port(struct sockaddr *sa, uint16_t port)
{
    if (sa->sa_family == AF_INET)
        ((struct sockaddr_in *)sa)->sin_port = htons(port);
    else if (sa->sa_family == AF_INET6)
        ((struct sockaddr_in6 *)sa)->sin6_port = htons(port);
}

/* The IPv6 scope id is deliberately not compared: addresses decoded from STUN attributes never
 * carry one, while the kernel sets it on link-local sources, and a permission must still match. */
const uint8_t *sa_ip_bytes(const struct sockaddr *sa, size_t *n)
{
    if (sa->sa_family == AF_INET) {
        *n = 4;
        return (const uint8_t *)&((const struct sockaddr_in *)sa)->sin_addr;
    }
    if (sa->sa_family == AF_INET6) {
        *n = 16;
        return (const uint8_t *)&((const struct sockaddr_in6 *)sa)->sin6_addr;
    }
    *n = 0;
    return NULL;
}

int sa_equal_ip(const struct sockaddr *a, const struct sockaddr *b)
{
    if (a->sa_family != b->sa_family)
        return 0;
    if (a->sa_family == AF_INET)
        return ((const struct sockaddr_in *)a)->sin_addr.s_addr ==
               ((const struct sockaddr_in *)b)->sin_addr.s_addr;
    if (a->sa_family == AF_INET6)
        return memcmp(&((const struct sockaddr_in6 *)a)->sin6_addr,
                      &((const struct sockaddr_in6 *)b)->sin6_addr, sizeof(struct in6_addr)) == 0;
    return 0;
}

int sa_equal(const struct sockaddr *a, const struct sockaddr *b)
{
    return sa_equal_ip(a, b) && sa_port(a) == sa_port(b);
}
