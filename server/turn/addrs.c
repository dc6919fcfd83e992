/* addrs.c - relay IPs and their external-ip mapping, alternate servers and the RFC 5780 address
 * table (see addrs.h): parsed once from the config, then read by every worker.
 */
#include "addrs.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int add_relay(addrs_t *a, const struct sockaddr *sa)
{
    addrs_relay_ip_t *arr = sa->sa_family == AF_INET ? a->relay4 : a->relay6;
    int *n = sa->sa_family == AF_INET ? &a->nrelay4 : &a->nrelay6;
    for (int i = 0; i < *n; i++)
        if (sa_equal_ip(&arr[i].addr.sa, sa))
            return 0;
    if (*n >= ADDRS_MAX_RELAY_IPS)
        return -1;
    memset(&arr[*n], 0, sizeof(arr[*n]));
    memcpy(&arr[*n].addr, sa, sa_len(sa));
    sa_set_port(&arr[*n].addr.sa, 0);
    arr[*n].announced = arr[*n].addr;
    (*n)++;
    return 0;
}

static int is_wildcard(const struct sockaddr *sa)
{
    static const struct in6_addr any6 = IN6ADDR_ANY_INIT;
    if (sa->sa_family == AF_INET)
        return ((const struct sockaddr_in *)sa)->sin_addr.s_addr == 0;
    return memcmp(&((const struct sockaddr_in6 *)sa)->sin6_addr, &any6, 16) == 0;
}

/* external-ip = PUBLIC (for the only relay IP of that family) or PUBLIC/PRIVATE. */
static int apply_external(addrs_t *a, size_t idx, char *err, size_t errlen)
{
    const char *v = a->cfg->external_ip.v[idx];
    char buf[128];
    snprintf(buf, sizeof(buf), "%s", v);
    char *slash = strchr(buf, '/');
    if (slash)
        *slash++ = 0;
    struct sockaddr_storage pub, priv;
    if (sa_parse_ip(buf, 0, &pub) != 0 || (slash && sa_parse_ip(slash, 0, &priv) != 0))
        goto bad;
    for (int fam = 0; fam < 2; fam++) {
        addrs_relay_ip_t *arr = fam ? a->relay6 : a->relay4;
        int n = fam ? a->nrelay6 : a->nrelay4;
        for (int i = 0; i < n; i++) {
            int match = slash ? sa_equal_ip(&arr[i].addr.sa, (struct sockaddr *)&priv)
                              : (n == 1 && arr[i].addr.sa.sa_family == pub.ss_family);
            if (match) {
                memcpy(&arr[i].announced, &pub, sa_len((struct sockaddr *)&pub));
                return 0;
            }
        }
    }
bad:
    return cfg_fail(a->cfg, "external-ip", idx, err, errlen,
                    "'%s' matches no relay address (use PUBLIC/PRIVATE with PRIVATE one of the "
                    "relay or listening IPs)",
                    v);
}

/* alternate-server = IP, IP:PORT, [IPv6]:PORT or a bare IPv6 address (sa_parse_hostport). */
static int parse_alternate_list(const cfg_t *cfg, const cfg_list_t *l, const char *key,
                                sa_any_t **out, size_t *nout, char *err, size_t errlen)
{
    if (l->n == 0)
        return 0;
    *out = calloc(l->n, sizeof(**out));
    if (!*out) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    for (size_t i = 0; i < l->n; i++) {
        struct sockaddr_storage ss;
        if (sa_parse_hostport(l->v[i], 3478, &ss) != 0)
            return cfg_fail(cfg, key, i, err, errlen,
                            "'%s' is not IP, IP:PORT, [IPv6]:PORT or IPv6 (PORT 1-65535)", l->v[i]);
        memcpy(&(*out)[i], &ss, sa_len((struct sockaddr *)&ss));
        (*nout)++;
    }
    return 0;
}

static int parse_alternates(addrs_t *a, char *err, size_t errlen)
{
    const cfg_t *c = a->cfg;
    return parse_alternate_list(c, &c->alternate_server, "alternate-server", &a->alternates,
                                &a->nalternates, err, errlen) ||
           parse_alternate_list(c, &c->tls_alternate_server, "tls-alternate-server",
                                &a->tls_alternates, &a->ntls_alternates, err, errlen);
}

const struct sockaddr *addrs_alternate(addrs_t *a, int secure)
{
    sa_any_t *list = a->alternates;
    size_t n = a->nalternates;
    if (secure && a->ntls_alternates) {
        list = a->tls_alternates;
        n = a->ntls_alternates;
    }
    if (n == 0)
        return NULL;
    unsigned i = atomic_fetch_add(&a->alternate_next, 1);
    return &list[i % n].sa;
}

void addrs_fleet_set(addrs_t *a, const sa_any_t alt[2][ADDRS_TRANSPORTS],
                     const bool has[2][ADDRS_TRANSPORTS])
{
    if (!a->fleet_lock_ready)
        return;
    pthread_mutex_lock(&a->fleet_lock);
    memcpy(a->fleet_alt, alt, sizeof(a->fleet_alt));
    memcpy(a->fleet_has, has, sizeof(a->fleet_has));
    pthread_mutex_unlock(&a->fleet_lock);
}

int addrs_fleet_alternate(addrs_t *a, int family, int transport, sa_any_t *out)
{
    int f = family == AF_INET6 ? 1 : 0;
    if (!a->fleet_lock_ready || transport < 0 || transport >= ADDRS_TRANSPORTS)
        return -1;
    pthread_mutex_lock(&a->fleet_lock);
    int rc = a->fleet_has[f][transport] ? 0 : -1;
    if (rc == 0)
        *out = a->fleet_alt[f][transport];
    pthread_mutex_unlock(&a->fleet_lock);
    return rc;
}

/* The RFC 5780 pairs: the first two distinct listening IPs of each family (cfg_validate made sure
 * one family has two, none a wildcard). */
static void init_rfc5780(addrs_t *a)
{
    const cfg_t *c = a->cfg;
    if (!c->rfc5780)
        return;
    int n[2] = {0, 0};
    for (size_t i = 0; i < c->listening_ip.n; i++) {
        struct sockaddr_storage ss;
        if (sa_parse_ip(c->listening_ip.v[i], 0, &ss) != 0)
            continue;
        int f = ss.ss_family == AF_INET6;
        if (n[f] == 2 ||
            (n[f] == 1 && sa_equal_ip(&a->rfc5780_ip[f][0].sa, (struct sockaddr *)&ss)))
            continue;
        memcpy(&a->rfc5780_ip[f][n[f]++], &ss, sa_len((struct sockaddr *)&ss));
    }
    for (int f = 0; f < 2; f++)
        a->rfc5780_family_ok[f] = n[f] == 2;
    a->rfc5780_port[0] = (uint16_t)c->listening_port;
    a->rfc5780_port[1] = (uint16_t)cfg_alt_listening_port(c);
}

int addrs_rfc5780(const addrs_t *a, const struct sockaddr *local, int change_ip, int change_port,
                  sa_any_t *from, sa_any_t *other)
{
    if (!a->cfg->rfc5780 || (local->sa_family != AF_INET && local->sa_family != AF_INET6))
        return -1;
    int f = local->sa_family == AF_INET6;
    if (!a->rfc5780_family_ok[f])
        return -1;
    int ai, p;
    if (sa_equal_ip(local, &a->rfc5780_ip[f][0].sa))
        ai = 0;
    else if (sa_equal_ip(local, &a->rfc5780_ip[f][1].sa))
        ai = 1;
    else
        return -1;
    uint16_t port = sa_port(local);
    if (port == a->rfc5780_port[0])
        p = 0;
    else if (port == a->rfc5780_port[1])
        p = 1;
    else
        return -1; /* e.g. the TLS port: no alternate there */
    *other = a->rfc5780_ip[f][!ai];
    sa_set_port(&other->sa, a->rfc5780_port[!p]);
    *from = a->rfc5780_ip[f][change_ip ? !ai : ai];
    sa_set_port(&from->sa, a->rfc5780_port[change_port ? !p : p]);
    return 0;
}

static int init_relays(addrs_t *a, const struct sockaddr_storage *listen, size_t nlisten, char *err,
                       size_t errlen)
{
    const cfg_t *c = a->cfg;
    for (size_t i = 0; i < c->relay_ip.n; i++) {
        struct sockaddr_storage ss;
        if (sa_parse_ip(c->relay_ip.v[i], 0, &ss) != 0 || add_relay(a, (struct sockaddr *)&ss))
            return cfg_fail(c, "relay-ip", i, err, errlen,
                            "'%s' is not usable (an IP; at most %d of a family)", c->relay_ip.v[i],
                            ADDRS_MAX_RELAY_IPS);
    }
    if (c->relay_ip.n == 0)
        for (size_t i = 0; i < nlisten; i++)
            if (!is_wildcard((const struct sockaddr *)&listen[i]))
                (void)add_relay(a, (const struct sockaddr *)&listen[i]);
    for (size_t i = 0; i < c->external_ip.n; i++)
        if (apply_external(a, i, err, errlen) != 0)
            return -1;
    return 0;
}

int addrs_init(addrs_t *a, const cfg_t *cfg, const struct sockaddr_storage *listen, size_t nlisten,
               char *err, size_t errlen)
{
    memset(a, 0, sizeof(*a));
    a->cfg = cfg;
    a->fleet_lock_ready = pthread_mutex_init(&a->fleet_lock, NULL) == 0;
    init_rfc5780(a);
    if (parse_alternates(a, err, errlen) != 0)
        return -1;
    return init_relays(a, listen, nlisten, err, errlen);
}

void addrs_close(addrs_t *a)
{
    free(a->alternates);
    free(a->tls_alternates);
    if (a->fleet_lock_ready)
        pthread_mutex_destroy(&a->fleet_lock);
    memset(a, 0, sizeof(*a));
}
