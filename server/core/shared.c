/* shared.c - the daemon's server-wide state behind shared.h: the engine's part (turn_shared.c), the
 * credential sources, TLS contexts, and the registry of relayed TCP addresses behind its own lock.
 */
#include "shared.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

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
    uv_mutex_init(&s->tcp_lock);
    s->tcp_conns_max = tcp_conns_max(cfg);
    s->ready = 1; /* shared_close closes tls even after a failed tls_init (half-built contexts) */
    if (tls_init(&s->tls, cfg, err, errlen) != 0)
        return -1;
    if (creds_shared_new(cfg, &s->creds, err, errlen) != 0)
        return -1;
    return turn_shared_init(&s->turn, cfg, listen, nlisten, err, errlen);
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

void shared_close(shared_t *s)
{
    turn_shared_close(&s->turn);
    if (s->ready) {
        tls_close(&s->tls);
        uv_mutex_destroy(&s->tcp_lock);
        free(s->tcp_ports);
    }
    if (s->creds)
        creds_shared_free(s->creds);
    memset(s, 0, sizeof(*s));
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
