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
