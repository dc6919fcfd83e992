/* fleet_local.c - what this node says of itself in the registry (its id, client-facing addresses
 * per transport with external-ip applied, allocations, quota, draining, version) and what it
 * makes of the others' entries for the engine: the 300 Try Alternate target per client family
 * and transport (addrs_fleet_set), the live node with the most headroom.
 */
#include "fleet_int.h"

#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "addrs.h"
#include "config.h"
#include "sockaddr_util.h"

/* What clients reach for `sa`: external-ip's PUBLIC for PUBLIC/PRIVATE naming it, or a bare
 * PUBLIC of the same family. */
static void external(const cfg_t *cfg, sa_any_t *sa)
{
    for (size_t i = 0; i < cfg->external_ip.n; i++) {
        char buf[128];
        snprintf(buf, sizeof(buf), "%s", cfg->external_ip.v[i]);
        char *slash = strchr(buf, '/');
        struct sockaddr_storage pub, priv;
        if (slash)
            *slash = 0;
        if (sa_parse_ip(buf, sa_port(&sa->sa), &pub) != 0 || pub.ss_family != sa->sa.sa_family)
            continue;
        if (slash && (sa_parse_ip(slash + 1, 0, &priv) != 0 ||
                      !sa_equal_ip((struct sockaddr *)&priv, &sa->sa)))
            continue;
        memcpy(sa, &pub, sa_len((struct sockaddr *)&pub));
        return;
    }
}

static void add_addr(fleet_node_t *n, int t, const struct sockaddr *ip, int port, const cfg_t *cfg)
{
    if (n->naddr[t] >= FLEET_ADDRS_PER || port <= 0)
        return;
    sa_any_t sa;
    memcpy(&sa, ip, sa_len(ip));
    sa_set_port(&sa.sa, (uint16_t)port);
    external(cfg, &sa);
    char buf[SA_STRLEN];
    sa_format(&sa.sa, buf, sizeof(buf));
    for (int i = 0; i < n->naddr[t]; i++)
        if (strcmp(n->addr[t][i], buf) == 0)
            return;
    snprintf(n->addr[t][n->naddr[t]++], FLEET_ADDR_MAX, "%s", buf);
}

void fleet_local(server_t *s, fleet_node_t *out)
{
    const cfg_t *c = s->cfg;
    memset(out, 0, sizeof(*out));
    cfg_node_id(c, out->id);
    snprintf(out->version, sizeof(out->version), "%s", PACKAGE_VERSION);
    stats_snapshot_t st;
    server_stats(s, &st);
    out->allocations = st.allocations > 0 ? (int64_t)st.allocations : 0;
    out->quota = atomic_load(&s->shared.turn.live)->total_quota;
    out->draining = server_draining(s) != 0;
    out->ts_ms = fleet_clock_ms(CLOCK_REALTIME);
    for (size_t i = 0; i < s->naddrs; i++) {
        const struct sockaddr *ip = (const struct sockaddr *)&s->addrs[i];
        if (!c->no_udp)
            add_addr(out, FLEET_UDP, ip, c->listening_port, c);
        if (!c->no_tcp)
            add_addr(out, FLEET_TCP, ip, c->listening_port, c);
        if (s->shared.tls.tls)
            add_addr(out, FLEET_TLS, ip, c->tls_listening_port, c);
        if (s->shared.tls.dtls)
            add_addr(out, FLEET_DTLS, ip, c->tls_listening_port, c);
    }
}

/* The engine's 300 Try Alternate names, per client family and transport, the live node with the
 * most headroom (total-quota less allocations; no quota counts as FLEET_ROOM_UNLIMITED), this
 * one and draining ones left out; ties go to the lowest id. No view: none (the static lists). */
#define FLEET_ROOM_UNLIMITED 1000000000
void fleet_pick_alternates(server_t *s, const char *self, const fleet_view_t *v)
{
    sa_any_t alt[2][ADDRS_TRANSPORTS];
    bool has[2][ADDRS_TRANSPORTS];
    int64_t best[2][ADDRS_TRANSPORTS];
    memset(alt, 0, sizeof(alt));
    memset(has, 0, sizeof(has));
    memset(best, 0, sizeof(best));
    /* FLEET_UDP..FLEET_DTLS are the engine's TURN_UDP..TURN_DTLS, in order. */
    for (size_t i = 0; v && i < v->n; i++) {
        const fleet_node_t *n = &v->nodes[i];
        int64_t room = (n->quota > 0 ? n->quota : FLEET_ROOM_UNLIMITED) - n->allocations;
        if (strcmp(n->id, self) == 0 || n->draining || room <= 0)
            continue;
        for (int t = 0; t < FLEET_NTRANSPORTS && t < ADDRS_TRANSPORTS; t++) {
            for (int k = 0; k < n->naddr[t]; k++) {
                struct sockaddr_storage ss;
                size_t nb;
                if (sa_parse_hostport(n->addr[t][k], 0, &ss) != 0)
                    continue;
                const uint8_t *b = sa_ip_bytes((struct sockaddr *)&ss, &nb);
                size_t zero = 0;
                while (b && zero < nb && b[zero] == 0)
                    zero++;
                if (!b || zero == nb || sa_port((struct sockaddr *)&ss) == 0)
                    continue; /* a wildcard or no port names nobody */
                int fi = ss.ss_family == AF_INET6 ? 1 : 0;
                if (!has[fi][t] || room > best[fi][t]) {
                    memcpy(&alt[fi][t], &ss, sa_len((struct sockaddr *)&ss));
                    has[fi][t] = true;
                    best[fi][t] = room;
                }
            }
        }
    }
    addrs_fleet_set(&s->shared.turn.addrs, (const sa_any_t(*)[ADDRS_TRANSPORTS])alt,
                    (const bool(*)[ADDRS_TRANSPORTS])has);
}
