/* admin_creds.c - ephemeral TURN credentials for ICE: minting and revoking.
 *
 * draft-uberti-behave-turn-rest-00 §2 (the request: service, username, ttl, key) and §2.2 (the
 * answer: username "<expiry>:<name>", password base64(HMAC-SHA1(secret, username)), ttl, uris),
 * coturn's use-auth-secret. The secret is the first static-auth-secret, else the realm's Redis
 * secret that sorts first. The answer also carries `iceServers`, ready for
 * `new RTCPeerConnection({iceServers})` (W3C WebRTC §4.2.1, RTCIceServer). URIs follow RFC 7064 /
 * RFC 7065 and list every enabled transport at the public address: the first external-ip, else
 * the first relay-ip, else the first listening address. Revocation writes
 * turn/realm/<realm>/revoked/<username> with an expiry past the name's own, so every node that
 * reads the same Redis refuses it (401), then ends its allocations on this node.
 */
#include "admin_int.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/hiredis.h>
#include <openssl/crypto.h>

#include "sockaddr_util.h"
#include "turn_auth.h"

#define TTL_DEFAULT 86400
#define TTL_MIN 60
#define TTL_MAX (7 * 86400)
#define NAME_MAX_REST 400
#define REVOKE_MARGIN_S 600 /* revocation outlives the name by this much (clock skew) */
#define KEY_MAX 1200

/* ---- URIs ---- */

/* The host clients should use, bracketed when IPv6. */
static void public_host(const admin_t *a, char *out, size_t cap)
{
    const cfg_t *c = a->s->cfg;
    char ip[64] = "";
    if (c->external_ip.n) {
        const char *v = c->external_ip.v[0];
        size_t n = strcspn(v, "/");
        snprintf(ip, sizeof(ip), "%.*s", (int)(n < sizeof(ip) - 1 ? n : sizeof(ip) - 1), v);
    } else if (c->relay_ip.n) {
        snprintf(ip, sizeof(ip), "%s", c->relay_ip.v[0]);
    } else if (c->listening_ip.n) {
        snprintf(ip, sizeof(ip), "%s", c->listening_ip.v[0]);
    } else if (a->s->naddrs) {
        sa_format_ip((const struct sockaddr *)&a->s->addrs[0], ip, sizeof(ip));
    }
    if (strchr(ip, ':') && ip[0] != '[')
        snprintf(out, cap, "[%s]", ip);
    else
        snprintf(out, cap, "%s", ip);
}

static json_t *uris(const admin_t *a, bool with_stun)
{
    const cfg_t *c = a->s->cfg;
    char host[80], u[160];
    json_t *list = json_array();
    public_host(a, host, sizeof(host));
    if (with_stun && (!c->no_udp || !c->no_tcp)) {
        snprintf(u, sizeof(u), "stun:%s:%d", host, c->listening_port);
        json_array_append_new(list, json_string(u));
    }
    if (!c->no_udp) {
        snprintf(u, sizeof(u), "turn:%s:%d?transport=udp", host, c->listening_port);
        json_array_append_new(list, json_string(u));
    }
    if (!c->no_tcp) {
        snprintf(u, sizeof(u), "turn:%s:%d?transport=tcp", host, c->listening_port);
        json_array_append_new(list, json_string(u));
    }
    /* TLS listens only with a certificate (RFC 7065 turns: over TLS/TCP; browsers have no
     * TURN over DTLS, so that transport is not listed). */
    if (!c->no_tls && c->cert && *c->cert) {
        snprintf(u, sizeof(u), "turns:%s:%d?transport=tcp", host, c->tls_listening_port);
        json_array_append_new(list, json_string(u));
    }
    return list;
}

/* ---- the secret ---- */

/* The signing secret into *out (malloc'd, *len bytes). 0, or -1 after answering. */
static int signing_secret(admin_req_t *r, char **out, size_t *len)
{
    const cfg_t *c = r->a->s->cfg;
    if (!c->use_auth_secret) {
        admin_reply_error(r, 409, "rest_disabled",
                          "ephemeral credentials need 'use-auth-secret' (with 'static-auth-secret' "
                          "or secrets in Redis) in uturnd's config");
        return -1;
    }
    if (c->static_auth_secret.n) {
        *len = strlen(c->static_auth_secret.v[0]);
        *out = strdup(c->static_auth_secret.v[0]);
        if (!*out) {
            admin_reply_error(r, 500, "internal", "out of memory");
            return -1;
        }
        return 0;
    }
    if (!r->a->redis) {
        admin_reply_error(r, 409, "no_secret", "no REST secret is configured");
        return -1;
    }
    char key[KEY_MAX], err[256];
    snprintf(key, sizeof(key), CREDS_REDIS_SECRETS, c->realm ? c->realm : "");
    const char *argv[2] = {"SMEMBERS", key};
    size_t lens[2] = {8, strlen(key)};
    redisReply *rep = admin_redis_cmd(r->a->redis, 2, argv, lens, err, sizeof(err));
    if (!rep) {
        admin_reply_error(r, 503, "redis_unavailable", "%s", err);
        return -1;
    }
    const redisReply *best = NULL;
    for (size_t i = 0; rep->type == REDIS_REPLY_ARRAY && i < rep->elements; i++) {
        const redisReply *e = rep->element[i];
        if (e->type != REDIS_REPLY_STRING || e->len == 0 || memchr(e->str, 0, e->len))
            continue;
        if (!best || strcmp(e->str, best->str) < 0)
            best = e;
    }
    if (!best) {
        freeReplyObject(rep);
        admin_reply_error(r, 409, "no_secret",
                          "no REST secret: add one with POST /api/v1/realms/{realm}/secrets");
        return -1;
    }
    *len = best->len;
    *out = malloc(best->len + 1);
    if (*out)
        memcpy(*out, best->str, best->len + 1);
    freeReplyObject(rep);
    if (!*out) {
        admin_reply_error(r, 500, "internal", "out of memory");
        return -1;
    }
    return 0;
}

/* Mint for `name` (may be NULL) valid `ttl` seconds; the body of the answer or NULL after
 * answering an error. */
static json_t *mint(admin_req_t *r, const char *name, long long ttl, bool ice)
{
    char *secret = NULL;
    size_t slen = 0;
    if (signing_secret(r, &secret, &slen) != 0)
        return NULL;
    int64_t expiry = admin_unix_ms() / 1000 + ttl;
    char user[NAME_MAX_REST + 32], pw[64];
    if (name && *name)
        snprintf(user, sizeof(user), "%lld:%s", (long long)expiry, name);
    else
        snprintf(user, sizeof(user), "%lld", (long long)expiry);
    int n = turn_rest_password(secret, slen, user, strlen(user), pw, sizeof(pw));
    OPENSSL_cleanse(secret, slen);
    free(secret);
    if (n < 0) {
        admin_reply_error(r, 500, "internal", "cannot compute the password");
        return NULL;
    }
    json_t *o = json_pack("{s:s,s:s,s:I,s:o}", "username", user, "password", pw, "ttl",
                          (json_int_t)ttl, "uris", uris(r->a, false));
    if (ice) {
        char iso[40];
        admin_iso8601(expiry * 1000, iso, sizeof(iso));
        json_object_set_new(o, "expires", json_string(iso));
        json_object_set_new(o, "expires_unix", json_integer(expiry));
        json_object_set_new(o, "realm",
                            json_string(r->a->s->cfg->realm ? r->a->s->cfg->realm : ""));
        json_object_set_new(o, "iceServers",
                            json_pack("[{s:o,s:s,s:s}]", "urls", uris(r->a, true), "username", user,
                                      "credential", pw));
    }
    OPENSSL_cleanse(pw, sizeof(pw));
    return o;
}

/* ---- routes ---- */

void admin_h_credentials(admin_req_t *r)
{
    size_t nlen = 0;
    bool bad = false;
    const char *name = admin_body_str(r, "username", &nlen, &bad);
    if (bad)
        return;
    if (name && admin_check_name(r, "username", name, nlen, NAME_MAX_REST) != 0)
        return;
    long long ttl = TTL_DEFAULT;
    json_t *t = json_object_get(r->json, "ttl");
    if (t) {
        if (!json_is_integer(t) || json_integer_value(t) < TTL_MIN ||
            json_integer_value(t) > TTL_MAX) {
            admin_reply_error(r, 400, "bad_field", "'ttl' must be an integer from %d to %d seconds",
                              TTL_MIN, TTL_MAX);
            return;
        }
        ttl = json_integer_value(t);
    }
    json_t *o = mint(r, name, ttl, true);
    if (o)
        admin_reply_json(r, 200, o);
}

void admin_h_turn_credentials(admin_req_t *r)
{
    char service[16], name[NAME_MAX_REST + 1];
    bool bad = false;
    const char *svc = admin_query(r, "service", service, sizeof(service), &bad);
    if (bad || !svc || strcmp(svc, "turn") != 0) {
        admin_reply_error(r, 400, "bad_parameter", "'service' must be 'turn'");
        return;
    }
    const char *u = admin_query(r, "username", name, sizeof(name), &bad);
    if (bad) {
        admin_reply_error(r, 400, "bad_parameter", "'username' is too long or badly escaped");
        return;
    }
    if (u && *u && admin_check_name(r, "username", u, strlen(u), NAME_MAX_REST) != 0)
        return;
    long long ttl;
    if (admin_query_int(r, "ttl", TTL_DEFAULT, TTL_MIN, TTL_MAX, &ttl) != 0)
        return;
    json_t *o = mint(r, u, ttl, false);
    if (o)
        admin_reply_json(r, 200, o);
}

void admin_h_credential_revoke(admin_req_t *r)
{
    const char *user = r->seg[3];
    size_t ulen = r->seglen[3];
    int64_t expiry;
    if (admin_check_name(r, "username", user, ulen, STUN_USERNAME_MAX) != 0)
        return;
    if (turn_rest_expiry(user, ulen, &expiry) != 0) {
        admin_reply_error(r, 400, "bad_field",
                          "'username' is not an ephemeral username (EXPIRY or EXPIRY:NAME)");
        return;
    }
    if (!r->a->redis) {
        admin_reply_error(r, 503, "redis_not_configured",
                          "revoking ephemeral credentials needs 'redis-userdb': the revocation "
                          "list lives in Redis so every node sees it");
        return;
    }
    const char *realm = r->a->s->cfg->realm ? r->a->s->cfg->realm : "";
    int64_t now = admin_unix_ms() / 1000;
    long long ttl = (expiry > now ? expiry - now : 0) + REVOKE_MARGIN_S;
    char key[KEY_MAX], ex[24], err[256];
    snprintf(key, sizeof(key), CREDS_REDIS_REVOKED, realm, user);
    snprintf(ex, sizeof(ex), "%lld", ttl);
    const char *argv[5] = {"SET", key, "1", "EX", ex};
    size_t lens[5] = {3, strlen(key), 1, 2, strlen(ex)};
    redisReply *rep = admin_redis_cmd(r->a->redis, 5, argv, lens, err, sizeof(err));
    if (!rep) {
        admin_reply_error(r, 503, "redis_unavailable", "%s", err);
        return;
    }
    bool ok = rep->type == REDIS_REPLY_STATUS;
    freeReplyObject(rep);
    if (!ok) {
        admin_reply_error(r, 503, "redis_error", "redis refused the revocation");
        return;
    }
    long ended = admin_forget_user(r, user, ulen, true);
    if (ended < 0)
        return;
    char iso[40];
    admin_iso8601((now + ttl) * 1000, iso, sizeof(iso));
    admin_reply_json(r, 200,
                     json_pack("{s:s,s:b,s:s,s:i}", "username", user, "revoked", 1, "revoked_until",
                               iso, "allocations_terminated", (int)ended));
}
