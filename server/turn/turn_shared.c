/* turn_shared.c - the server-wide state the engine reads (see turn_shared.h): built once from the
 * config, then read by every worker; quotas and reservations behind their own locks.
 */
#include "turn_shared.h"

#include <errno.h>
#include <openssl/sha.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rand.h"

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

static int init(turn_shared_t *s, const cfg_t *cfg, const struct sockaddr_storage *listen,
                size_t nlisten, char *err, size_t errlen)
{
    s->cfg = cfg;
    atomic_store(&s->live, cfg);
    if (quota_init(&s->quota, &s->live) != 0) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    resv_init(&s->resv, &s->quota, &s->live);
    if (cfg->nonce_secret)
        SHA256((const unsigned char *)cfg->nonce_secret, strlen(cfg->nonce_secret),
               s->nonce_secret);
    else if (cfg->nonce_agreed[0]) /* the fleet's (server/fleet/fleet.h), as if configured */
        SHA256((const unsigned char *)cfg->nonce_agreed, strlen(cfg->nonce_agreed),
               s->nonce_secret);
    else
        rand_bytes(s->nonce_secret, sizeof(s->nonce_secret));
    s->nonce_features = TURN_NONCE_FEAT_PASSWORD_ALGS;
    if (cfg->userhash)
        s->nonce_features |= TURN_NONCE_FEAT_USERHASH;
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
    return addrs_init(&s->addrs, cfg, listen, nlisten, err, errlen);
}

int turn_shared_init(turn_shared_t *s, const cfg_t *cfg, const struct sockaddr_storage *listen,
                     size_t nlisten, char *err, size_t errlen)
{
    memset(s, 0, sizeof(*s));
    if (init(s, cfg, listen, nlisten, err, errlen) == 0)
        return 0;
    /* Nothing half-built survives a refused config (LeakSanitizer saw it at every failed start). */
    turn_shared_close(s);
    return -1;
}

void turn_shared_close(turn_shared_t *s)
{
    resv_close(&s->resv); /* before the quota: its units need no giving back */
    quota_close(&s->quota);
    addrs_close(&s->addrs);
    free(s->allow);
    free(s->deny);
    memset(s, 0, sizeof(*s));
}
