/* shared.c - the server-wide state behind shared.h: built once, then read by every worker; quotas
 * and reservations behind their own locks, taken only when allocations start or end.
 */
#include "shared.h"

#include <errno.h>
#include <openssl/sha.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "log.h"
#include "rand.h"
#include "sockaddr_util.h"

struct shared_user_count {
    char *user;
    size_t ulen;
    long count;
    shared_user_count_t *next;
};

#define USER_BUCKETS 4096

static int parse_ranges(const cfg_t *c, const cfg_list_t *l, const char *key, peer_range_t **out,
                        char *err, size_t errlen)
{
    *out = NULL;
    if (l->n == 0)
        return 0;
    *out = calloc(l->n, sizeof(**out));
    if (!*out) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    for (size_t i = 0; i < l->n; i++)
        if (peer_range_parse(l->v[i], &(*out)[i]) != 0)
            return cfg_fail(c, key, i, err, errlen, "'%s' is not an IP, IP/PREFIX or IP-IP range",
                            l->v[i]);
    return 0;
}

static int add_relay(shared_t *s, const struct sockaddr *sa)
{
    shared_relay_ip_t *arr = sa->sa_family == AF_INET ? s->relay4 : s->relay6;
    int *n = sa->sa_family == AF_INET ? &s->nrelay4 : &s->nrelay6;
    for (int i = 0; i < *n; i++)
        if (sa_equal_ip(&arr[i].addr.sa, sa))
            return 0;
    if (*n >= SHARED_MAX_RELAY_IPS)
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
static int apply_external(shared_t *s, size_t idx, char *err, size_t errlen)
{
    const char *v = s->cfg->external_ip.v[idx];
    char buf[128];
    snprintf(buf, sizeof(buf), "%s", v);
    char *slash = strchr(buf, '/');
    if (slash)
        *slash++ = 0;
    struct sockaddr_storage pub, priv;
    if (sa_parse_ip(buf, 0, &pub) != 0 || (slash && sa_parse_ip(slash, 0, &priv) != 0))
        goto bad;
    for (int fam = 0; fam < 2; fam++) {
        shared_relay_ip_t *arr = fam ? s->relay6 : s->relay4;
        int n = fam ? s->nrelay6 : s->nrelay4;
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
    return cfg_fail(s->cfg, "external-ip", idx, err, errlen,
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

static int parse_alternates(shared_t *s, char *err, size_t errlen)
{
    const cfg_t *c = s->cfg;
    return parse_alternate_list(c, &c->alternate_server, "alternate-server", &s->alternates,
                                &s->nalternates, err, errlen) ||
           parse_alternate_list(c, &c->tls_alternate_server, "tls-alternate-server",
                                &s->tls_alternates, &s->ntls_alternates, err, errlen);
}

const struct sockaddr *shared_alternate(shared_t *s, int secure)
{
    sa_any_t *list = s->alternates;
    size_t n = s->nalternates;
    if (secure && s->ntls_alternates) {
        list = s->tls_alternates;
        n = s->ntls_alternates;
    }
    if (n == 0)
        return NULL;
    unsigned i = atomic_fetch_add(&s->alternate_next, 1);
    return &list[i % n].sa;
}

/* The RFC 5780 pairs: the first two distinct listening IPs of each family (cfg_validate made sure
 * one family has two, none a wildcard). */
static void init_rfc5780(shared_t *s)
{
    const cfg_t *c = s->cfg;
    if (!c->rfc5780)
        return;
    int n[2] = {0, 0};
    for (size_t i = 0; i < c->listening_ip.n; i++) {
        struct sockaddr_storage ss;
        if (sa_parse_ip(c->listening_ip.v[i], 0, &ss) != 0)
            continue;
        int f = ss.ss_family == AF_INET6;
        if (n[f] == 2 ||
            (n[f] == 1 && sa_equal_ip(&s->rfc5780_ip[f][0].sa, (struct sockaddr *)&ss)))
            continue;
        memcpy(&s->rfc5780_ip[f][n[f]++], &ss, sa_len((struct sockaddr *)&ss));
    }
    for (int f = 0; f < 2; f++)
        s->rfc5780_family_ok[f] = n[f] == 2;
    s->rfc5780_port[0] = (uint16_t)c->listening_port;
    s->rfc5780_port[1] = (uint16_t)cfg_alt_listening_port(c);
}

int shared_rfc5780_addrs(const shared_t *s, const struct sockaddr *local, int change_ip,
                         int change_port, sa_any_t *from, sa_any_t *other)
{
    if (!s->cfg->rfc5780 || (local->sa_family != AF_INET && local->sa_family != AF_INET6))
        return -1;
    int f = local->sa_family == AF_INET6;
    if (!s->rfc5780_family_ok[f])
        return -1;
    int a, p;
    if (sa_equal_ip(local, &s->rfc5780_ip[f][0].sa))
        a = 0;
    else if (sa_equal_ip(local, &s->rfc5780_ip[f][1].sa))
        a = 1;
    else
        return -1;
    uint16_t port = sa_port(local);
    if (port == s->rfc5780_port[0])
        p = 0;
    else if (port == s->rfc5780_port[1])
        p = 1;
    else
        return -1; /* e.g. the TLS port: no alternate there */
    *other = s->rfc5780_ip[f][!a];
    sa_set_port(&other->sa, s->rfc5780_port[!p]);
    *from = s->rfc5780_ip[f][change_ip ? !a : a];
    sa_set_port(&from->sa, s->rfc5780_port[change_port ? !p : p]);
    return 0;
}

static int init_relays(shared_t *s, const struct sockaddr_storage *listen, size_t nlisten,
                       char *err, size_t errlen)
{
    const cfg_t *c = s->cfg;
    for (size_t i = 0; i < c->relay_ip.n; i++) {
        struct sockaddr_storage ss;
        if (sa_parse_ip(c->relay_ip.v[i], 0, &ss) != 0 || add_relay(s, (struct sockaddr *)&ss))
            return cfg_fail(c, "relay-ip", i, err, errlen,
                            "'%s' is not usable (an IP; at most %d of a family)", c->relay_ip.v[i],
                            SHARED_MAX_RELAY_IPS);
    }
    if (c->relay_ip.n == 0)
        for (size_t i = 0; i < nlisten; i++)
            if (!is_wildcard((const struct sockaddr *)&listen[i]))
                (void)add_relay(s, (const struct sockaddr *)&listen[i]);
    for (size_t i = 0; i < c->external_ip.n; i++)
        if (apply_external(s, i, err, errlen) != 0)
            return -1;
    return 0;
}

/* max-tcp-connections, or half the descriptors this process may open: client connections from
 * any number of sources then never take the descriptors that relay sockets (and the peer
 * connections, the admin API and Redis) need. */
static long tcp_conns_max(const cfg_t *cfg)
{
    if (cfg->max_tcp_connections > 0)
        return cfg->max_tcp_connections;
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur == RLIM_INFINITY || rl.rlim_cur > 2000000)
        return 1000000;
    return rl.rlim_cur / 2 > 0 ? (long)(rl.rlim_cur / 2) : 1;
}

static int init(shared_t *s, const cfg_t *cfg, const struct sockaddr_storage *listen,
                size_t nlisten, char *err, size_t errlen)
{
    s->cfg = cfg;
    atomic_store(&s->live, cfg);
    uv_mutex_init(&s->quota_lock);
    uv_mutex_init(&s->resv_lock);
    uv_mutex_init(&s->tcp_lock);
    uv_mutex_init(&s->peer_lock);
    s->tcp_conns_max = tcp_conns_max(cfg);
    s->user_buckets = USER_BUCKETS;
    rand_bytes(s->user_key, sizeof(s->user_key));
    s->user_counts = calloc(USER_BUCKETS, sizeof(*s->user_counts));
    if (!s->user_counts) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    /* Right after user_counts: shared_close closes tls whenever user_counts is set. */
    if (tls_init(&s->tls, cfg, err, errlen) != 0)
        return -1;
    s->peer_counts = calloc(USER_BUCKETS, sizeof(*s->peer_counts));
    if (!s->peer_counts) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    if (creds_shared_new(cfg, &s->creds, err, errlen) != 0)
        return -1;
    if (cfg->nonce_secret)
        SHA256((const unsigned char *)cfg->nonce_secret, strlen(cfg->nonce_secret),
               s->nonce_secret);
    else
        rand_bytes(s->nonce_secret, sizeof(s->nonce_secret));
    s->nonce_features = TURN_NONCE_FEAT_PASSWORD_ALGS;
    if (cfg->userhash)
        s->nonce_features |= TURN_NONCE_FEAT_USERHASH;
    init_rfc5780(s);
    if (parse_ranges(cfg, &cfg->allowed_peer_ip, "allowed-peer-ip", &s->allow, err, errlen) != 0 ||
        parse_ranges(cfg, &cfg->denied_peer_ip, "denied-peer-ip", &s->deny, err, errlen) != 0)
        return -1;
    s->policy.allow = s->allow;
    s->policy.nallow = cfg->allowed_peer_ip.n;
    s->policy.deny = s->deny;
    s->policy.ndeny = cfg->denied_peer_ip.n;
    s->policy.deny_classes = PEER_CLASS_DENY_DEFAULT;
    if (cfg->allow_loopback_peers)
        s->policy.deny_classes &= ~(unsigned)PEER_CLASS_LOOPBACK;
    if (cfg->allow_private_peers)
        s->policy.deny_classes &= ~(unsigned)(PEER_CLASS_PRIVATE | PEER_CLASS_CGNAT);
    if (parse_alternates(s, err, errlen) != 0)
        return -1;
    return init_relays(s, listen, nlisten, err, errlen);
}

int shared_init(shared_t *s, const cfg_t *cfg, const struct sockaddr_storage *listen,
                size_t nlisten, char *err, size_t errlen)
{
    memset(s, 0, sizeof(*s));
    if (init(s, cfg, listen, nlisten, err, errlen) == 0)
        return 0;
    /* Nothing half-built survives a refused config (LeakSanitizer saw it at every failed start). */
    shared_close(s);
    return -1;
}

/* A per-user count table (quotas, peer connections) and every entry in it; NULL is fine. */
static void free_counts(shared_user_count_t **buckets, size_t n)
{
    for (size_t i = 0; buckets && i < n; i++) {
        shared_user_count_t *next;
        for (shared_user_count_t *u = buckets[i]; u; u = next) {
            next = u->next;
            free(u->user);
            free(u);
        }
    }
    free(buckets);
}

void shared_close(shared_t *s)
{
    if (s->user_counts) {
        tls_close(&s->tls);
        free_counts(s->user_counts, s->user_buckets);
        free_counts(s->peer_counts, s->user_buckets);
        uv_mutex_destroy(&s->peer_lock);
        uv_mutex_destroy(&s->quota_lock);
        uv_mutex_destroy(&s->resv_lock);
        uv_mutex_destroy(&s->tcp_lock);
        free(s->tcp_ports);
    }
    shared_reservation_t *next;
    for (shared_reservation_t *r = s->resv; r; r = next) {
        next = r->next;
        close(r->fd);
        free(r->user); /* the quota tables are gone: nothing to give back */
        free(r);
    }
    if (s->creds)
        creds_shared_free(s->creds);
    free(s->allow);
    free(s->deny);
    free(s->alternates);
    free(s->tls_alternates);
    memset(s, 0, sizeof(*s));
}

static size_t user_bucket(const shared_t *s, const char *user, size_t ulen)
{
    return siphash(s->user_key, user, ulen) % s->user_buckets;
}

int shared_quota_take(shared_t *s, const char *user, size_t ulen)
{
    const cfg_t *c = atomic_load(&s->live);
    if (c->total_quota > 0 && atomic_load(&s->total_allocs) >= c->total_quota)
        return -ENOSPC;
    int rc = 0;
    uv_mutex_lock(&s->quota_lock);
    shared_user_count_t **b = &s->user_counts[user_bucket(s, user, ulen)];
    shared_user_count_t *u = *b;
    while (u && !(u->ulen == ulen && memcmp(u->user, user, ulen) == 0))
        u = u->next;
    if (c->user_quota > 0 && u && u->count >= c->user_quota) {
        rc = -EDQUOT;
    } else if (!u) {
        u = calloc(1, sizeof(*u));
        if (u && (u->user = malloc(ulen ? ulen : 1))) {
            memcpy(u->user, user, ulen);
            u->ulen = ulen;
            u->next = *b;
            *b = u;
        } else {
            free(u);
            u = NULL;
            rc = -ENOMEM;
        }
    }
    if (rc == 0) {
        u->count++;
        atomic_fetch_add(&s->total_allocs, 1);
    }
    uv_mutex_unlock(&s->quota_lock);
    return rc;
}

void shared_quota_release(shared_t *s, const char *user, size_t ulen)
{
    uv_mutex_lock(&s->quota_lock);
    for (shared_user_count_t **pp = &s->user_counts[user_bucket(s, user, ulen)]; *pp;
         pp = &(*pp)->next) {
        shared_user_count_t *u = *pp;
        if (u->ulen == ulen && memcmp(u->user, user, ulen) == 0) {
            if (--u->count <= 0) {
                *pp = u->next;
                free(u->user);
                free(u);
            }
            atomic_fetch_sub(&s->total_allocs, 1);
            break;
        }
    }
    uv_mutex_unlock(&s->quota_lock);
}

uint64_t shared_resv_add(shared_t *s, int fd, const struct sockaddr *addr, uint64_t now_unix_ms,
                         const char *user, size_t ulen)
{
    shared_reservation_t *r = calloc(1, sizeof(*r));
    if (!r)
        return 0;
    if (user && !(r->user = malloc(ulen ? ulen : 1))) {
        free(r);
        return 0;
    }
    if (user) {
        memcpy(r->user, user, ulen);
        r->ulen = ulen;
    }
    do
        rand_bytes(&r->token, sizeof(r->token));
    while (r->token == 0);
    r->fd = fd;
    memcpy(&r->addr, addr, sa_len(addr));
    r->expires_unix_ms = now_unix_ms + (uint64_t)atomic_load(&s->live)->reservation_lifetime * 1000;
    /* Read the token before publishing: once unlocked, another worker may redeem and free r. */
    uint64_t token = r->token;
    uv_mutex_lock(&s->resv_lock);
    r->next = s->resv;
    s->resv = r;
    uv_mutex_unlock(&s->resv_lock);
    return token;
}

/* Free a reservation already unlinked; its quota unit goes back (quota_lock, so never called with
 * resv_lock held). */
static void resv_free(shared_t *s, shared_reservation_t *r, int close_fd)
{
    if (r->user)
        shared_quota_release(s, r->user, r->ulen);
    if (close_fd)
        close(r->fd);
    free(r->user);
    free(r);
}

int shared_resv_take(shared_t *s, uint64_t token, sa_any_t *addr, uint64_t now_unix_ms)
{
    int fd = -1;
    shared_reservation_t *found = NULL;
    uv_mutex_lock(&s->resv_lock);
    for (shared_reservation_t **pp = &s->resv; *pp; pp = &(*pp)->next) {
        shared_reservation_t *r = *pp;
        if (r->token == token) {
            if (r->expires_unix_ms > now_unix_ms) {
                fd = r->fd;
                *addr = r->addr;
            }
            *pp = r->next;
            found = r;
            break;
        }
    }
    uv_mutex_unlock(&s->resv_lock);
    if (found)
        resv_free(s, found, fd < 0);
    return fd;
}

int shared_resv_adopt_unit(shared_t *s, uint64_t token, const char *user, size_t ulen,
                           uint64_t now_unix_ms)
{
    int adopted = 0;
    char *unit = NULL;
    uv_mutex_lock(&s->resv_lock);
    for (shared_reservation_t *r = s->resv; r; r = r->next)
        if (r->token == token) {
            if (r->expires_unix_ms > now_unix_ms && r->user && r->ulen == ulen &&
                memcmp(r->user, user, ulen) == 0) {
                unit = r->user;
                r->user = NULL;
                adopted = 1;
            }
            break;
        }
    uv_mutex_unlock(&s->resv_lock);
    free(unit);
    return adopted;
}

void shared_resv_expire(shared_t *s, uint64_t now_unix_ms)
{
    shared_reservation_t *gone = NULL;
    uv_mutex_lock(&s->resv_lock);
    for (shared_reservation_t **pp = &s->resv; *pp;) {
        shared_reservation_t *r = *pp;
        if (r->expires_unix_ms <= now_unix_ms) {
            *pp = r->next;
            r->next = gone;
            gone = r;
        } else {
            pp = &r->next;
        }
    }
    uv_mutex_unlock(&s->resv_lock);
    while (gone) {
        shared_reservation_t *next = gone->next;
        resv_free(s, gone, 1);
        gone = next;
    }
}

int shared_tcp_port_take(shared_t *s, const struct sockaddr *addr)
{
    int rc = 0;
    uv_mutex_lock(&s->tcp_lock);
    for (size_t i = 0; i < s->ntcp_ports && rc == 0; i++)
        if (sa_equal(&s->tcp_ports[i].sa, addr))
            rc = -EADDRINUSE;
    if (rc == 0 && s->ntcp_ports == s->captcp_ports) {
        size_t cap = s->captcp_ports ? s->captcp_ports * 2 : 16;
        sa_any_t *n = realloc(s->tcp_ports, cap * sizeof(*n));
        if (n) {
            s->tcp_ports = n;
            s->captcp_ports = cap;
        } else {
            rc = -ENOMEM;
        }
    }
    if (rc == 0) {
        memset(&s->tcp_ports[s->ntcp_ports], 0, sizeof(sa_any_t));
        memcpy(&s->tcp_ports[s->ntcp_ports++], addr, sa_len(addr));
    }
    uv_mutex_unlock(&s->tcp_lock);
    return rc;
}

void shared_tcp_port_release(shared_t *s, const struct sockaddr *addr)
{
    uv_mutex_lock(&s->tcp_lock);
    for (size_t i = 0; i < s->ntcp_ports; i++)
        if (sa_equal(&s->tcp_ports[i].sa, addr)) {
            s->tcp_ports[i] = s->tcp_ports[--s->ntcp_ports];
            break;
        }
    uv_mutex_unlock(&s->tcp_lock);
}

/* The link that points at `user`'s entry in a count table, or the chain's last link (NULL). */
static shared_user_count_t **count_link(const shared_t *s, shared_user_count_t **buckets,
                                        const char *user, size_t ulen)
{
    shared_user_count_t **pp = &buckets[user_bucket(s, user, ulen)];
    while (*pp && !((*pp)->ulen == ulen && memcmp((*pp)->user, user, ulen) == 0))
        pp = &(*pp)->next;
    return pp;
}

int shared_peer_conn_take(shared_t *s, const char *user, size_t ulen)
{
    const cfg_t *c = atomic_load(&s->live);
    int rc = 0;
    uv_mutex_lock(&s->peer_lock);
    shared_user_count_t **pp = count_link(s, s->peer_counts, user, ulen);
    if (*pp && c->user_peer_conn_quota > 0 && (*pp)->count >= c->user_peer_conn_quota) {
        rc = -EDQUOT;
    } else if (!*pp) {
        shared_user_count_t *u = calloc(1, sizeof(*u));
        if (u && (u->user = malloc(ulen ? ulen : 1))) {
            memcpy(u->user, user, ulen);
            u->ulen = ulen;
            *pp = u;
        } else {
            free(u);
            rc = -ENOMEM;
        }
    }
    if (rc == 0)
        (*pp)->count++;
    uv_mutex_unlock(&s->peer_lock);
    return rc;
}

void shared_peer_conn_release(shared_t *s, const char *user, size_t ulen)
{
    uv_mutex_lock(&s->peer_lock);
    shared_user_count_t **pp = count_link(s, s->peer_counts, user, ulen);
    shared_user_count_t *u = *pp;
    if (u && --u->count <= 0) {
        *pp = u->next;
        free(u->user);
        free(u);
    }
    uv_mutex_unlock(&s->peer_lock);
}
