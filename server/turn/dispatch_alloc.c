/* dispatch_alloc.c - Allocate and Refresh.
 *
 * RFC 8656 §7 (Allocate: checks in the RFC's order, relayed ports from min-port..max-port picked
 * with the CSPRNG, EVEN-PORT and RESERVATION-TOKEN, REQUESTED-/ADDITIONAL-ADDRESS-FAMILY for IPv6
 * and dual-stack allocations, 437/440/442/486/508), §8 (Refresh, LIFETIME 0 deletes), RFC 8489
 * §6.3.1 (a retransmitted Allocate gets the original answer again, not a second allocation).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "dispatch_int.h"
#include "rand.h"
#include "sockaddr_util.h"

#define PORT_TRIES 64

static uint32_t lifetime_for(const dispatch_t *d, const stun_msg_t *msg, int refresh)
{
    const stun_attr_t *la = stun_msg_find(msg, STUN_ATTR_LIFETIME);
    uint32_t req;
    if (!la || stun_attr_get_u32(msg, la, &req) != 0)
        return ALLOC_DEFAULT_LIFETIME;
    if (req == 0 && refresh)
        return 0;
    uint32_t max = (uint32_t)d->cfg->max_allocate_lifetime;
    uint32_t l = req < max ? req : max;
    /* RFC 8656 §7.2: an Allocate never gets less than the default; §8.2 lets Refresh shorten. */
    if (!refresh && l < ALLOC_DEFAULT_LIFETIME)
        l = ALLOC_DEFAULT_LIFETIME;
    return l ? l : ALLOC_DEFAULT_LIFETIME;
}

static uint16_t random_port(const cfg_t *c, int even)
{
    uint32_t r;
    rand_bytes(&r, sizeof(r));
    uint32_t span = (uint32_t)(c->max_port - c->min_port + 1);
    uint16_t p = (uint16_t)(c->min_port + r % span);
    /* Stay inside the range: min-port = max-port = 65535 made p + 1 wrap to port 0 (any port). A
     * range without an even port leaves p odd, and open_relay gives up (508). */
    if (even && (p & 1) && p > c->min_port)
        p--;
    else if (even && (p & 1) && p < c->max_port)
        p++;
    return p;
}

/* Open a relay of `family` on a free port; with `token` set, also hold port+1 and return its
 * reservation token (0 if none could be made), which keeps the quota unit the caller took for it
 * (a->username). Returns 0, -EAFNOSUPPORT (no relay IP: 440) or another -errno (508). */
static int open_relay(dispatch_t *d, alloc_t *a, int family, int even, uint64_t *token, int df)
{
    const turn_shared_t *sh = d->shared;
    const addrs_relay_ip_t *ips = family == AF_INET ? sh->addrs.relay4 : sh->addrs.relay6;
    int nips = family == AF_INET ? sh->addrs.nrelay4 : sh->addrs.nrelay6;
    if (nips == 0)
        return -EAFNOSUPPORT;
    const cfg_t *c = d->cfg;
    if (token && c->max_port - c->min_port < 1)
        return -ENOSPC;
    int start = 0;
    for (int i = 0; i < nips; i++)
        if (sa_equal_ip(&ips[i].addr.sa, a->client.local))
            start = i;
    alloc_relay_t *r = &a->relay[a->nrelay];
    for (int t = 0; t < PORT_TRIES; t++) {
        const addrs_relay_ip_t *ip = &ips[(start + t) % nips];
        uint16_t port = random_port(c, even || token);
        if ((token && port + 1 > c->max_port) || ((even || token) && (port & 1)))
            continue;
        memset(r, 0, sizeof(*r));
        r->addr = ip->addr;
        sa_set_port(&r->addr.sa, port);
        r->announced = ip->announced;
        sa_set_port(&r->announced.sa, port);
        int held = -1;
        if (token) {
            sa_any_t next = r->addr;
            sa_set_port(&next.sa, (uint16_t)(port + 1));
            held = d->relay.hold(d->relay.env, &next.sa);
            if (held < 0)
                continue;
        }
        int rc = d->relay.open(d->relay.env, a, r, -1, df);
        if (rc == 0) {
            a->nrelay++;
            if (token) {
                sa_any_t next = r->addr;
                sa_set_port(&next.sa, (uint16_t)(port + 1));
                *token = resv_add(&d->shared->resv, held, &next.sa, d->unix_ms, a->username,
                                  a->username_len);
                if (*token == 0)
                    close(held); /* out of memory: the allocation goes on without a reservation */
            }
            return 0;
        }
        if (held >= 0)
            close(held);
        if (rc != -EADDRINUSE && rc != -EACCES)
            return rc;
    }
    return -EADDRINUSE;
}

/* Redeem a RESERVATION-TOKEN (RFC 8656 §7.2): the held socket becomes this allocation's relay. */
static int open_reserved(dispatch_t *d, alloc_t *a, uint64_t token, int df)
{
    sa_any_t addr;
    int fd = resv_take(&d->shared->resv, token, &addr, d->unix_ms);
    if (fd < 0)
        return -ENOENT;
    alloc_relay_t *r = &a->relay[0];
    memset(r, 0, sizeof(*r));
    r->addr = addr;
    r->announced = addr;
    const addrs_relay_ip_t *ips =
        addr.sa.sa_family == AF_INET ? d->shared->addrs.relay4 : d->shared->addrs.relay6;
    int nips = addr.sa.sa_family == AF_INET ? d->shared->addrs.nrelay4 : d->shared->addrs.nrelay6;
    for (int i = 0; i < nips; i++)
        if (sa_equal_ip(&ips[i].addr.sa, &addr.sa)) {
            r->announced = ips[i].announced;
            sa_set_port(&r->announced.sa, sa_port(&addr.sa));
        }
    int rc = d->relay.open(d->relay.env, a, r, fd, df);
    if (rc == 0)
        a->nrelay = 1;
    else
        close(fd);
    return rc;
}

/* Which families to allocate (RFC 8656 §7.2 checks 5-8). Returns 0 or a STUN error code. */
static int pick_families(const stun_msg_t *msg, int *fam1, int *fam2)
{
    const stun_attr_t *raf = stun_msg_find(msg, STUN_ATTR_REQUESTED_ADDRESS_FAMILY);
    const stun_attr_t *aaf = stun_msg_find(msg, STUN_ATTR_ADDITIONAL_ADDRESS_FAMILY);
    const stun_attr_t *ep = stun_msg_find(msg, STUN_ATTR_EVEN_PORT);
    const stun_attr_t *tok = stun_msg_find(msg, STUN_ATTR_RESERVATION_TOKEN);
    uint8_t f;
    *fam1 = AF_INET;
    *fam2 = 0;
    if (tok && (ep || raf || aaf))
        return STUN_ERR_BAD_REQUEST;
    if (raf && aaf)
        return STUN_ERR_BAD_REQUEST;
    if (raf) {
        if (stun_attr_get_family(msg, raf, &f) != 0)
            return STUN_ERR_BAD_REQUEST;
        if (f == STUN_FAMILY_IPV6)
            *fam1 = AF_INET6;
        else if (f != STUN_FAMILY_IPV4)
            return STUN_ERR_ADDRESS_FAMILY_NOT_SUPPORTED;
    }
    if (aaf) {
        int reserve = 0;
        if (stun_attr_get_family(msg, aaf, &f) != 0 || f != STUN_FAMILY_IPV6)
            return STUN_ERR_BAD_REQUEST;
        if (ep && stun_attr_get_even_port(msg, ep, &reserve) == 0 && reserve)
            return STUN_ERR_BAD_REQUEST;
        *fam2 = AF_INET6;
    }
    return 0;
}

static void cache_response(alloc_t *a, const stun_msg_t *msg, const uint8_t *resp, int len)
{
    memcpy(a->alloc_tid, msg->tid, sizeof(a->alloc_tid));
    free(a->alloc_resp);
    a->alloc_resp = NULL;
    if (len > 0 && (a->alloc_resp = malloc((size_t)len)) != NULL) {
        memcpy(a->alloc_resp, resp, (size_t)len);
        a->alloc_resp_len = (uint16_t)len;
    }
}

static void count_new(dispatch_t *d, alloc_t *a)
{
    stats_inc(&d->stats->alloc_created);
    stats_gauge_add(&d->stats->allocations, 1);
    dispatch_alloc_gauges(d, a, 1);
    stats_inc(a->client.transport == TURN_UDP || a->client.transport == TURN_DTLS
                  ? &d->stats->alloc_udp
                  : &d->stats->alloc_tcp);
    for (int i = 0; i < a->nrelay; i++)
        stats_inc(a->relay[i].addr.sa.sa_family == AF_INET ? &d->stats->alloc_ipv4
                                                           : &d->stats->alloc_ipv6);
}

/* Checks of RFC 8656 §7.2 and RFC 6062 §5.1 that need no resources. Returns 0 or the error code
 * to answer; *tcp says a TCP relay was asked for. */
static int allocate_checks(const dispatch_t *d, const turn_conn_t *conn, const stun_msg_t *msg,
                           int *fam1, int *fam2, int *tcp)
{
    const stun_attr_t *rt = stun_msg_find(msg, STUN_ATTR_REQUESTED_TRANSPORT);
    uint8_t proto;
    *tcp = 0;
    if (!rt || stun_attr_get_transport(msg, rt, &proto) != 0)
        return STUN_ERR_BAD_REQUEST;
    if (proto == STUN_TRANSPORT_TCP) {
        /* RFC 6062 §5.1: only over a TCP/TLS control connection, without UDP-only attributes. */
        if (conn->transport != TURN_TCP && conn->transport != TURN_TLS)
            return STUN_ERR_BAD_REQUEST;
        if (stun_msg_find(msg, STUN_ATTR_DONT_FRAGMENT) ||
            stun_msg_find(msg, STUN_ATTR_EVEN_PORT) ||
            stun_msg_find(msg, STUN_ATTR_RESERVATION_TOKEN) ||
            stun_msg_find(msg, STUN_ATTR_ADDITIONAL_ADDRESS_FAMILY))
            return STUN_ERR_BAD_REQUEST;
        if (d->cfg->no_tcp_relay || !d->relay.tcp_listen)
            return STUN_ERR_UNSUPPORTED_TRANSPORT;
        *tcp = 1;
    } else if (proto != STUN_TRANSPORT_UDP || d->cfg->no_udp_relay) {
        return STUN_ERR_UNSUPPORTED_TRANSPORT;
    }
    return pick_families(msg, fam1, fam2);
}

/* A TCP relayed address: a listening socket on a free port of the family's relay IPs. */
static int open_tcp_relay(dispatch_t *d, alloc_t *a, int family)
{
    const turn_shared_t *sh = d->shared;
    const addrs_relay_ip_t *ips = family == AF_INET ? sh->addrs.relay4 : sh->addrs.relay6;
    int nips = family == AF_INET ? sh->addrs.nrelay4 : sh->addrs.nrelay6;
    if (nips == 0)
        return STUN_ERR_ADDRESS_FAMILY_NOT_SUPPORTED;
    alloc_relay_t *r = &a->relay[0];
    for (int t = 0; t < PORT_TRIES; t++) {
        const addrs_relay_ip_t *ip = &ips[t % nips];
        uint16_t port = random_port(d->cfg, 0);
        memset(r, 0, sizeof(*r));
        r->addr = ip->addr;
        sa_set_port(&r->addr.sa, port);
        r->announced = ip->announced;
        sa_set_port(&r->announced.sa, port);
        int rc = d->relay.tcp_listen(d->relay.env, a, r);
        if (rc == 0) {
            a->nrelay = 1;
            a->tcp = true;
            return 0;
        }
        if (rc != -EADDRINUSE && rc != -EACCES)
            break;
    }
    return STUN_ERR_INSUFFICIENT_CAPACITY;
}

/* Open the relays; returns 0 or the error code (the allocation is then deleted by the caller). */
static int allocate_relays(dispatch_t *d, const stun_msg_t *msg, alloc_t *a, int fam1, int fam2,
                           uint64_t *token, int *addr_err)
{
    int df = stun_msg_find(msg, STUN_ATTR_DONT_FRAGMENT) != NULL;
    const stun_attr_t *tok = stun_msg_find(msg, STUN_ATTR_RESERVATION_TOKEN);
    const stun_attr_t *ep = stun_msg_find(msg, STUN_ATTR_EVEN_PORT);
    int rc;
    *addr_err = 0;
    if (tok) {
        uint64_t t;
        if (stun_attr_get_token(msg, tok, &t) != 0)
            return STUN_ERR_BAD_REQUEST;
        return open_reserved(d, a, t, df) == 0 ? 0 : STUN_ERR_INSUFFICIENT_CAPACITY;
    }
    int even = 0, reserve = 0;
    if (ep && stun_attr_get_even_port(msg, ep, &reserve) != 0)
        return STUN_ERR_BAD_REQUEST;
    even = ep != NULL;
    rc = open_relay(d, a, fam1, even, reserve ? token : NULL, df);
    if (rc == -EAFNOSUPPORT)
        return STUN_ERR_ADDRESS_FAMILY_NOT_SUPPORTED;
    if (rc != 0)
        return STUN_ERR_INSUFFICIENT_CAPACITY;
    if (fam2) {
        rc = open_relay(d, a, fam2, 0, NULL, df);
        /* RFC 8656 §7.2: a dual allocation that gets one family succeeds, with ADDRESS-ERROR-CODE
         * saying why the other is missing. */
        if (rc != 0)
            *addr_err = rc == -EAFNOSUPPORT ? STUN_ERR_ADDRESS_FAMILY_NOT_SUPPORTED
                                            : STUN_ERR_INSUFFICIENT_CAPACITY;
    }
    return 0;
}

static void allocate_success(dispatch_t *d, const turn_conn_t *conn, const stun_msg_t *msg,
                             alloc_t *a, uint32_t lifetime, uint64_t token, int addr_err,
                             const dispatch_auth_t *auth)
{
    stun_build_t b;
    dispatch_begin(d, &b, msg, STUN_CLASS_SUCCESS);
    for (int i = 0; i < a->nrelay; i++)
        stun_build_xor_addr(&b, STUN_ATTR_XOR_RELAYED_ADDRESS, &a->relay[i].announced.sa);
    if (addr_err)
        stun_build_address_error(&b, STUN_FAMILY_IPV6, addr_err, NULL);
    stun_build_u32(&b, STUN_ATTR_LIFETIME, lifetime);
    if (token)
        stun_build_token(&b, token);
    stun_build_xor_addr(&b, STUN_ATTR_XOR_MAPPED_ADDRESS, conn->remote);
    int len = dispatch_finish(d, conn, msg, &b, auth);
    cache_response(a, msg, d->out, len);
}

/* 1 when the Allocate asks for an EVEN-PORT reservation (R=1). */
static int wants_reservation(const stun_msg_t *msg)
{
    const stun_attr_t *ep = stun_msg_find(msg, STUN_ATTR_EVEN_PORT);
    int reserve = 0;
    return ep && stun_attr_get_even_port(msg, ep, &reserve) == 0 && reserve;
}

/* The quota units an Allocate needs (RFC 8656 §7.2 486/508). A held EVEN-PORT reservation pins a
 * port as surely as an allocation, so it counts as one: R=1 takes a second unit (*resv_unit = 1),
 * which the reservation keeps until redeemed or expired. Redeeming the user's own reservation
 * takes that reservation's unit instead of a new one. Returns 0, -EDQUOT or -ENOSPC. */
static int take_units(dispatch_t *d, const stun_msg_t *msg, const dispatch_auth_t *auth,
                      int *resv_unit)
{
    const stun_attr_t *tok = stun_msg_find(msg, STUN_ATTR_RESERVATION_TOKEN);
    uint64_t t;
    *resv_unit = 0;
    if (tok && stun_attr_get_token(msg, tok, &t) == 0 &&
        resv_adopt_unit(&d->shared->resv, t, auth->user, auth->ulen, d->unix_ms))
        return 0;
    int q = quota_take(&d->shared->quota, auth->user, auth->ulen);
    if (q != 0 || !wants_reservation(msg))
        return q;
    q = quota_take(&d->shared->quota, auth->user, auth->ulen);
    if (q != 0) {
        quota_release(&d->shared->quota, auth->user, auth->ulen);
        return q;
    }
    *resv_unit = 1;
    return 0;
}

/* The fleet-wide unit for a new allocation (cluster-wide user-quota, quota_cluster_ops_t): the
 * answer a replayed request carries, else the owner's. Returns 0 (*counted: a unit to give back),
 * -EDQUOT (486), or 1: the request is parked until the fleet answers (or dropped, counted, when
 * too many are parked: a UDP client retransmits, as for a credential lookup). */
static int cluster_take(dispatch_t *d, const turn_conn_t *conn, const stun_msg_t *msg,
                        const dispatch_auth_t *auth, bool *counted)
{
    *counted = false;
    int ans = d->cquota_replay;
    d->cquota_replay = -1;
    if (ans < 0) {
        if (!d->cquota.take)
            return 0;
        dispatch_pending_t *p = dispatch_pending_new(d, conn, msg);
        if (!p || dispatch_pending_user(p, auth->user, auth->ulen) != 0) {
            dispatch_pending_discard(p);
            stats_inc(&d->stats->drop_auth_busy);
            return 1;
        }
        ans =
            d->cquota.take(d->cquota.env, auth->user, auth->ulen, dispatch_pending_quota_ready, p);
        if (ans == QUOTA_CLUSTER_PENDING) {
            dispatch_pending_start(d, p);
            return 1;
        }
        dispatch_pending_discard(p);
    }
    if (ans == QUOTA_CLUSTER_REFUSED)
        return -EDQUOT;
    *counted = ans == QUOTA_CLUSTER_OK;
    return 0;
}

static void cluster_release(dispatch_t *d, const dispatch_auth_t *auth, bool counted)
{
    if (counted && d->cquota.release)
        d->cquota.release(d->cquota.env, auth->user, auth->ulen);
}

/* RFC 8489 §10 / RFC 8656 §7.2: a full or draining server redirects authenticated Allocates with
 * 300 Try Alternate; the answer carries integrity, so the client can trust the redirect. In a
 * fleet the alternate is the live node with the most headroom (server/fleet keeps it in addrs). */
static int try_alternate(dispatch_t *d, const turn_conn_t *conn, const stun_msg_t *msg,
                         const dispatch_auth_t *auth)
{
    int secure = conn->transport == TURN_TLS || conn->transport == TURN_DTLS;
    /* The fleet's least-loaded live node first (same family and transport), else the static
     * alternate-server / tls-alternate-server list (a node alone, or Redis away). */
    sa_any_t pick;
    const struct sockaddr *alt = addrs_fleet_alternate(&d->shared->addrs, conn->remote->sa_family,
                                                       (int)conn->transport, &pick) == 0
                                     ? &pick.sa
                                     : addrs_alternate(&d->shared->addrs, secure);
    if (!alt)
        return 0;
    stun_build_t b;
    dispatch_begin(d, &b, msg, STUN_CLASS_ERROR);
    stun_build_error(&b, STUN_ERR_TRY_ALTERNATE, NULL);
    stun_build_addr(&b, STUN_ATTR_ALTERNATE_SERVER, alt);
    /* RFC 8489 §14.16: over (D)TLS the client verifies the alternate's certificate by this name. */
    const char *domain = d->cfg->alternate_domain ? d->cfg->alternate_domain : d->cfg->server_name;
    if (secure && domain)
        stun_build_attr(&b, STUN_ATTR_ALTERNATE_DOMAIN, domain, strlen(domain));
    stats_error_sent(d->stats, STUN_ERR_TRY_ALTERNATE);
    (void)dispatch_finish(d, conn, msg, &b, auth);
    return 1;
}

void dispatch_allocate(dispatch_t *d, const turn_conn_t *conn, const stun_msg_t *msg)
{
    alloc_t *a = alloc_find(&d->allocs, conn->transport, conn->remote, conn->local);
    if (a && a->alloc_resp && memcmp(a->alloc_tid, msg->tid, sizeof(a->alloc_tid)) == 0) {
        /* Retransmission: the same answer again. */
        (void)conn->send(conn->send_ctx, conn->remote, a->alloc_resp, a->alloc_resp_len);
        return;
    }
    dispatch_auth_t auth;
    if (dispatch_authenticate(d, conn, msg, a, &auth) != DISPATCH_AUTH_OK)
        return;
    int fam1, fam2, code, tcp = 0;
    if (a)
        code = STUN_ERR_ALLOCATION_MISMATCH;
    else
        code = allocate_checks(d, conn, msg, &fam1, &fam2, &tcp);
    if (code == 0 && atomic_load_explicit(&d->shared->draining, memory_order_relaxed)) {
        if (try_alternate(d, conn, msg, &auth))
            return;
        code = STUN_ERR_INSUFFICIENT_CAPACITY;
    }
    int resv_unit = 0;
    bool cq = false;
    if (code == 0) {
        /* The node's own count first: a refusal it can give costs the fleet no round trip. Not
         * for a request that redeems a reservation: the user's own reservation brings its unit
         * (take_units), so a user at the quota may still redeem it (RFC 8656 §7.2's pair). */
        int q = stun_msg_find(msg, STUN_ATTR_RESERVATION_TOKEN)
                    ? 0
                    : quota_check(&d->shared->quota, auth.user, auth.ulen);
        if (q == 0 && (q = cluster_take(d, conn, msg, &auth, &cq)) == 1)
            return;
        if (q == 0 && (q = take_units(d, msg, &auth, &resv_unit)) != 0) {
            cluster_release(d, &auth, cq);
            cq = false;
        }
        if (q == -ENOSPC && try_alternate(d, conn, msg, &auth))
            return;
        code = q == -EDQUOT ? STUN_ERR_ALLOCATION_QUOTA
               : q != 0     ? STUN_ERR_INSUFFICIENT_CAPACITY
                            : 0;
    }
    if (code != 0) {
        stats_inc(&d->stats->turn_errors);
        dispatch_error(d, conn, msg, code, &auth);
        return;
    }
    a = alloc_insert(&d->allocs, conn, d->now_ms);
    if (!a) {
        cluster_release(d, &auth, cq);
        quota_release(&d->shared->quota, auth.user, auth.ulen);
        if (resv_unit)
            quota_release(&d->shared->quota, auth.user, auth.ulen);
        dispatch_error(d, conn, msg, STUN_ERR_SERVER_ERROR, &auth);
        return;
    }
    a->counted_quota = true;
    a->counted_cluster = cq;
    memcpy(a->username, auth.user, auth.ulen);
    a->username_len = (uint16_t)auth.ulen;
    a->key = auth.key;
    a->key_is_sha256 = auth.alg_sha256;
    stats_gauge_add(&d->stats->allocations, 1); /* dispatch_alloc_delete undoes it on failure */
    uint64_t token = 0;
    int addr_err = 0;
    code = tcp ? open_tcp_relay(d, a, fam1)
               : allocate_relays(d, msg, a, fam1, fam2, &token, &addr_err);
    /* The unit taken for an EVEN-PORT reservation now belongs to the reservation; none made, the
     * unit goes back. */
    if (resv_unit && token == 0)
        quota_release(&d->shared->quota, auth.user, auth.ulen);
    if (code != 0) {
        stats_inc(&d->stats->alloc_failed);
        dispatch_alloc_gauges(d, a, 1); /* dispatch_alloc_delete takes them back */
        dispatch_alloc_delete(d, a, DISPATCH_GONE_FAILED);
        stats_inc(&d->stats->turn_errors);
        dispatch_error(d, conn, msg, code, &auth);
        return;
    }
    stats_gauge_add(&d->stats->allocations, -1);
    count_new(d, a);
    uint32_t lifetime = lifetime_for(d, msg, 0);
    a->expires_ms = d->now_ms + (uint64_t)lifetime * 1000;
    a->perm_ms = (uint32_t)d->cfg->permission_lifetime * 1000; /* 0 (a zeroed cfg): RFC's */
    a->chan_ms = (uint32_t)d->cfg->channel_lifetime * 1000;
    dispatch_offload(d, a);
    dispatch_usage_event(d, a, USAGE_CREATED, USAGE_REASON_NONE);
    allocate_success(d, conn, msg, a, lifetime, token, addr_err, &auth);
}

void dispatch_refresh(dispatch_t *d, const turn_conn_t *conn, const stun_msg_t *msg, alloc_t *a)
{
    dispatch_auth_t auth;
    if (dispatch_authenticate(d, conn, msg, a, &auth) != DISPATCH_AUTH_OK)
        return;
    const stun_attr_t *raf = stun_msg_find(msg, STUN_ATTR_REQUESTED_ADDRESS_FAMILY);
    uint8_t f;
    if (raf && (stun_attr_get_family(msg, raf, &f) != 0 ||
                !alloc_relay_for(a, f == STUN_FAMILY_IPV6 ? AF_INET6 : AF_INET))) {
        /* RFC 8656 §8.2: a family the allocation does not have. */
        stats_inc(&d->stats->turn_errors);
        dispatch_error(d, conn, msg, STUN_ERR_PEER_ADDRESS_FAMILY_MISMATCH, &auth);
        return;
    }
    uint32_t lifetime = lifetime_for(d, msg, 1);
    stun_build_t b;
    dispatch_begin(d, &b, msg, STUN_CLASS_SUCCESS);
    stun_build_u32(&b, STUN_ATTR_LIFETIME, lifetime);
    /* Build the answer before a delete: `a` is gone after it. */
    if (lifetime == 0)
        dispatch_alloc_delete(d, a, 0);
    else {
        a->expires_ms = d->now_ms + (uint64_t)lifetime * 1000;
        dispatch_offload(d, a);
        dispatch_usage_event(d, a, USAGE_REFRESHED, USAGE_REASON_NONE);
    }
    (void)dispatch_finish(d, conn, msg, &b, &auth);
}
