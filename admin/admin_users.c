/* admin_users.c - long-term users and TURN REST secrets in Redis, over the admin API.
 *
 * The key layout is coturn's, so coturn nodes sharing the Redis keep working, plus ours beside it
 * (creds.h): turn/realm/<realm>/user/<user>/key = hex MD5(user:realm:password) (RFC 8489 §9.2.2,
 * coturn's), .../key-sha256 = hex SHA-256 of the same (RFC 8489 §9.2.2 SHA-256 keys), the USERHASH
 * index turn/realm/<realm>/userhash/<hex SHA-256(user:realm)> = user (RFC 8489 §14.4), and
 * turn/realm/<realm>/secret = the set of REST secrets. No password is stored: it is SASLprep'ed
 * as creds.c does (RFC 5389 §15.4) and only the keys are written, in one MULTI/EXEC. Listing uses
 * SCAN (never KEYS) with the realm glob-escaped in MATCH. Deleting or changing a user also makes
 * every worker of this node forget its cached answer and, on delete, ends the user's allocations
 * here, so it takes effect now; other nodes follow within their 30 s cache time.
 */
#include "admin_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/hiredis.h>
#include <openssl/crypto.h>
#include <openssl/sha.h>

#include "rand.h"
#include "stun_auth.h"

#define KEY_MAX 1200
#define SECRET_MIN 16
#define SECRET_MAX 1024
#define PASSWORD_MAX 1024
#define SCAN_ROUNDS 64 /* SCAN calls per listing request, at most */
#define LIST_DEFAULT 100
#define LIST_MAX 1000

/* ---- shared helpers ---- */

static bool need_redis(admin_req_t *r)
{
    if (r->a->redis)
        return true;
    admin_reply_error(r, 503, "redis_not_configured",
                      "this needs the Redis user database: set 'redis-userdb' in uturnd's config");
    return false;
}

static void redis_down(admin_req_t *r, const char *err)
{
    admin_reply_error(r, 503, "redis_unavailable", "%s", err);
}

/* Run NULL-terminated argv lists as one pipeline. 0, or -1 after answering 503. */
static int run(admin_req_t *r, int n, const char *const *cmds[], redisReply **out)
{
    int argc[16];
    const char **argv[16];
    size_t lens[16][8];
    const size_t *argvlen[16];
    char err[256];
    if (n > 16)
        return -1;
    for (int i = 0; i < n; i++) {
        int k = 0;
        while (cmds[i][k]) {
            if (k == 8) {
                admin_reply_error(r, 500, "internal", "too many arguments");
                return -1;
            }
            lens[i][k] = strlen(cmds[i][k]);
            k++;
        }
        argc[i] = k;
        argv[i] = (const char **)(uintptr_t)cmds[i];
        argvlen[i] = lens[i];
    }
    if (admin_redis_run(r->a->redis, n, argc, (const char **const *)argv,
                        (const size_t *const *)argvlen, out, err, sizeof(err)) != 0) {
        redis_down(r, err);
        return -1;
    }
    for (int i = 0; i < n; i++)
        if (out[i]->type == REDIS_REPLY_ERROR) {
            admin_reply_error(r, 503, "redis_error", "redis: %.200s", out[i]->str);
            for (int j = 0; j < n; j++)
                freeReplyObject(out[j]);
            return -1;
        }
    return 0;
}

static void free_replies(redisReply **rep, int n)
{
    for (int i = 0; i < n; i++)
        freeReplyObject(rep[i]);
}

static bool our_realm(const admin_t *a, const char *realm)
{
    return a->s->cfg->realm && strcmp(a->s->cfg->realm, realm) == 0;
}

/* The realm of /api/v1/realms/{realm}/...; NULL after answering 400. */
static const char *path_realm(admin_req_t *r)
{
    if (admin_check_name(r, "realm", r->seg[3], r->seglen[3], ADMIN_REALM_MAX) != 0)
        return NULL;
    /* A '/' would make keys of one realm look like keys of another ("R/user/x" writes
     * turn/realm/R/user/x/user/...). Realms are domain names; user names may hold anything. */
    if (memchr(r->seg[3], '/', r->seglen[3])) {
        admin_reply_error(r, 400, "bad_field", "'realm' may not contain '/'");
        return NULL;
    }
    return r->seg[3];
}

static const char *path_user(admin_req_t *r)
{
    if (admin_check_name(r, "user", r->seg[5], r->seglen[5], STUN_USERNAME_MAX) != 0)
        return NULL;
    return r->seg[5];
}

static void userhash_hex(const char *user, const char *realm, char out[2 * STUN_USERHASH_LEN + 1])
{
    uint8_t h[STUN_USERHASH_LEN];
    stun_auth_userhash(user, strlen(user), realm, strlen(realm), h);
    stun_auth_hex_encode(h, sizeof(h), out);
}

/* Keys of a password, as creds.c derives them for static users. */
static int password_keys(const char *user, const char *realm, const char *pw, size_t plen,
                         char md5hex[33], char shahex[65])
{
    size_t cap = plen * 18 + 16; /* NFKC grows a character at most 18-fold */
    char *prep = malloc(cap);
    uint8_t md5[16], sha[32];
    if (!prep)
        return -1;
    int n = stun_auth_saslprep(pw, plen, prep, cap);
    const char *p = n >= 0 ? prep : pw;
    size_t pl = n >= 0 ? (size_t)n : plen;
    stun_auth_key_md5(user, strlen(user), realm, strlen(realm), p, pl, md5);
    stun_auth_key_sha256(user, strlen(user), realm, strlen(realm), p, pl, sha);
    stun_auth_hex_encode(md5, sizeof(md5), md5hex);
    stun_auth_hex_encode(sha, sizeof(sha), shahex);
    OPENSSL_cleanse(prep, cap);
    OPENSSL_cleanse(md5, sizeof(md5));
    OPENSSL_cleanse(sha, sizeof(sha));
    free(prep);
    return 0;
}

/* ---- users ---- */

void admin_h_user_put(admin_req_t *r)
{
    const char *realm = path_realm(r), *user = realm ? path_user(r) : NULL;
    if (!user)
        return;
    size_t plen = 0;
    bool bad = false;
    const char *pw = admin_body_str(r, "password", &plen, &bad);
    if (bad)
        return;
    if (!pw || plen == 0 || plen > PASSWORD_MAX || memchr(pw, 0, plen)) {
        admin_reply_error(r, 400, "bad_field", "'password' must be a string of 1 to %d bytes",
                          PASSWORD_MAX);
        return;
    }
    if (!need_redis(r))
        return;
    char md5hex[33], shahex[65], uh[65];
    char kmd5[KEY_MAX], ksha[KEY_MAX], khash[KEY_MAX], krev[KEY_MAX];
    if (password_keys(user, realm, pw, plen, md5hex, shahex) != 0) {
        admin_reply_error(r, 500, "internal", "out of memory");
        return;
    }
    userhash_hex(user, realm, uh);
    snprintf(kmd5, sizeof(kmd5), CREDS_REDIS_KEY_MD5, realm, user);
    snprintf(ksha, sizeof(ksha), CREDS_REDIS_KEY_SHA256, realm, user);
    snprintf(khash, sizeof(khash), CREDS_REDIS_USERHASH, realm, uh);
    snprintf(krev, sizeof(krev), CREDS_REDIS_REVOKED, realm, user);
    const char *c0[] = {"EXISTS", kmd5, NULL}, *c1[] = {"MULTI", NULL};
    const char *c2[] = {"SET", kmd5, md5hex, NULL}, *c3[] = {"SET", ksha, shahex, NULL};
    const char *c4[] = {"SET", khash, user, NULL}, *c5[] = {"DEL", krev, NULL};
    const char *c6[] = {"EXEC", NULL};
    const char *const *cmds[] = {c0, c1, c2, c3, c4, c5, c6};
    redisReply *rep[7];
    int rc = run(r, 7, cmds, rep);
    OPENSSL_cleanse(md5hex, sizeof(md5hex));
    OPENSSL_cleanse(shahex, sizeof(shahex));
    if (rc != 0)
        return;
    bool created = rep[0]->type == REDIS_REPLY_INTEGER && rep[0]->integer == 0;
    bool ok = rep[6]->type == REDIS_REPLY_ARRAY && rep[6]->elements == 4;
    free_replies(rep, 7);
    if (!ok) {
        admin_reply_error(r, 503, "redis_error", "redis did not apply the transaction");
        return;
    }
    /* A changed password or a lifted revocation counts now on this node. */
    if (our_realm(r->a, realm) && admin_forget_user(r, user, strlen(user), false) < 0)
        return;
    admin_reply_json(r, created ? 201 : 200,
                     json_pack("{s:s,s:s,s:b,s:[s,s]}", "realm", realm, "user", user, "created",
                               created, "keys", "md5", "sha256"));
}

void admin_h_user_get(admin_req_t *r)
{
    const char *realm = path_realm(r), *user = realm ? path_user(r) : NULL;
    if (!user || !need_redis(r))
        return;
    char kmd5[KEY_MAX], ksha[KEY_MAX], krev[KEY_MAX];
    snprintf(kmd5, sizeof(kmd5), CREDS_REDIS_KEY_MD5, realm, user);
    snprintf(ksha, sizeof(ksha), CREDS_REDIS_KEY_SHA256, realm, user);
    snprintf(krev, sizeof(krev), CREDS_REDIS_REVOKED, realm, user);
    const char *c0[] = {"EXISTS", kmd5, NULL}, *c1[] = {"EXISTS", ksha, NULL};
    const char *c2[] = {"EXISTS", krev, NULL};
    const char *const *cmds[] = {c0, c1, c2};
    redisReply *rep[3];
    if (run(r, 3, cmds, rep) != 0)
        return;
    bool md5 = rep[0]->type == REDIS_REPLY_INTEGER && rep[0]->integer > 0;
    bool sha = rep[1]->type == REDIS_REPLY_INTEGER && rep[1]->integer > 0;
    bool rev = rep[2]->type == REDIS_REPLY_INTEGER && rep[2]->integer > 0;
    free_replies(rep, 3);
    if (!md5 && !sha) {
        admin_reply_error(r, 404, "not_found", "no user '%.100s' in realm '%.100s'", user, realm);
        return;
    }
    admin_reply_json(r, 200,
                     json_pack("{s:s,s:s,s:b,s:b,s:b,s:b}", "realm", realm, "user", user, "exists",
                               1, "md5_key", md5, "sha256_key", sha, "revoked", rev));
}

void admin_h_user_delete(admin_req_t *r)
{
    const char *realm = path_realm(r), *user = realm ? path_user(r) : NULL;
    if (!user || !need_redis(r))
        return;
    char kmd5[KEY_MAX], ksha[KEY_MAX], khash[KEY_MAX], uh[65];
    userhash_hex(user, realm, uh);
    snprintf(kmd5, sizeof(kmd5), CREDS_REDIS_KEY_MD5, realm, user);
    snprintf(ksha, sizeof(ksha), CREDS_REDIS_KEY_SHA256, realm, user);
    snprintf(khash, sizeof(khash), CREDS_REDIS_USERHASH, realm, uh);
    const char *c0[] = {"DEL", kmd5, ksha, khash, NULL};
    const char *const *cmds[] = {c0};
    redisReply *rep[1];
    if (run(r, 1, cmds, rep) != 0)
        return;
    long long deleted = rep[0]->type == REDIS_REPLY_INTEGER ? rep[0]->integer : 0;
    free_replies(rep, 1);
    long ended = 0;
    if (our_realm(r->a, realm) && (ended = admin_forget_user(r, user, strlen(user), true)) < 0)
        return;
    if (deleted == 0 && ended == 0) {
        admin_reply_error(r, 404, "not_found", "no user '%.100s' in realm '%.100s'", user, realm);
        return;
    }
    admin_reply_json(r, 200,
                     json_pack("{s:s,s:s,s:b,s:i}", "realm", realm, "user", user, "deleted", 1,
                               "allocations_terminated", (int)ended));
}

/* "turn/realm/<realm>/user/" with the realm's glob characters escaped for MATCH. */
static void match_pattern(const char *realm, char *out, size_t cap)
{
    size_t o = (size_t)snprintf(out, cap, "turn/realm/");
    for (const char *p = realm; *p && o + 3 < cap; p++) {
        if (strchr("*?[]\\", *p))
            out[o++] = '\\';
        out[o++] = *p;
    }
    out[o] = 0;
    snprintf(out + o, cap - o, "/user/*/key");
}

void admin_h_users_list(admin_req_t *r)
{
    const char *realm = path_realm(r);
    if (!realm || !need_redis(r))
        return;
    long long limit;
    if (admin_query_int(r, "limit", LIST_DEFAULT, 1, LIST_MAX, &limit) != 0)
        return;
    char cursor[32] = "0", count[16], pat[KEY_MAX], prefix[KEY_MAX];
    bool bad = false;
    const char *c = admin_query(r, "cursor", cursor, sizeof(cursor), &bad);
    if (bad || (c && (!*c || strspn(c, "0123456789") != strlen(c)))) {
        admin_reply_error(r, 400, "bad_parameter", "'cursor' must be a next_cursor value");
        return;
    }
    if (!c)
        strcpy(cursor, "0");
    match_pattern(realm, pat, sizeof(pat));
    snprintf(prefix, sizeof(prefix), "turn/realm/%s/user/", realm);
    snprintf(count, sizeof(count), "%lld", limit);
    size_t plen = strlen(prefix);
    json_t *users = json_array();
    for (int round = 0; round < SCAN_ROUNDS && (long long)json_array_size(users) < limit; round++) {
        const char *c0[] = {"SCAN", cursor, "MATCH", pat, "COUNT", count, NULL};
        const char *const *cmds[] = {c0};
        redisReply *rep[1];
        if (run(r, 1, cmds, rep) != 0) {
            json_decref(users);
            return;
        }
        redisReply *x = rep[0];
        if (x->type != REDIS_REPLY_ARRAY || x->elements != 2 ||
            x->element[0]->type != REDIS_REPLY_STRING || x->element[1]->type != REDIS_REPLY_ARRAY ||
            x->element[0]->len >= sizeof(cursor)) {
            free_replies(rep, 1);
            json_decref(users);
            admin_reply_error(r, 503, "redis_error", "unexpected SCAN reply");
            return;
        }
        memcpy(cursor, x->element[0]->str, x->element[0]->len);
        cursor[x->element[0]->len] = 0;
        for (size_t i = 0; i < x->element[1]->elements; i++) {
            redisReply *k = x->element[1]->element[i];
            if (k->type != REDIS_REPLY_STRING || k->len <= plen + 4 ||
                memcmp(k->str, prefix, plen) != 0)
                continue;
            json_t *name = json_stringn(k->str + plen, k->len - plen - 4); /* minus "/key" */
            if (name)
                json_array_append_new(users, name);
        }
        free_replies(rep, 1);
        if (strcmp(cursor, "0") == 0)
            break;
    }
    json_t *next = strcmp(cursor, "0") == 0 ? json_null() : json_string(cursor);
    admin_reply_json(
        r, 200, json_pack("{s:s,s:o,s:o}", "realm", realm, "users", users, "next_cursor", next));
}

/* ---- REST secrets ---- */

static void secret_ids(const char *s, size_t n, char id[9], char fp[40])
{
    uint8_t h[SHA256_DIGEST_LENGTH];
    char hex[2 * SHA256_DIGEST_LENGTH + 1];
    SHA256((const unsigned char *)s, n, h);
    stun_auth_hex_encode(h, sizeof(h), hex);
    memcpy(id, hex, 8);
    id[8] = 0;
    snprintf(fp, 40, "sha256:%.32s", hex);
}

static void add_secret_json(json_t *list, const char *s, size_t n, const char *source)
{
    char id[9], fp[40];
    secret_ids(s, n, id, fp);
    json_array_append_new(
        list, json_pack("{s:s,s:s,s:s}", "id", id, "fingerprint", fp, "source", source));
}

/* SMEMBERS of the realm's secret set; NULL after answering. */
static redisReply *members(admin_req_t *r, const char *realm)
{
    char key[KEY_MAX];
    snprintf(key, sizeof(key), CREDS_REDIS_SECRETS, realm);
    const char *c0[] = {"SMEMBERS", key, NULL};
    const char *const *cmds[] = {c0};
    redisReply *rep[1];
    if (run(r, 1, cmds, rep) != 0)
        return NULL;
    if (rep[0]->type != REDIS_REPLY_ARRAY) {
        free_replies(rep, 1);
        admin_reply_error(r, 503, "redis_error", "unexpected SMEMBERS reply");
        return NULL;
    }
    return rep[0];
}

void admin_h_secrets_list(admin_req_t *r)
{
    const char *realm = path_realm(r);
    if (!realm)
        return;
    const cfg_t *cfg = r->a->s->cfg;
    json_t *list = json_array();
    if (our_realm(r->a, realm) && cfg->use_auth_secret)
        for (size_t i = 0; i < cfg->static_auth_secret.n; i++)
            add_secret_json(list, cfg->static_auth_secret.v[i],
                            strlen(cfg->static_auth_secret.v[i]), "config");
    if (r->a->redis) {
        redisReply *m = members(r, realm);
        if (!m) {
            json_decref(list);
            return;
        }
        for (size_t i = 0; i < m->elements; i++)
            if (m->element[i]->type == REDIS_REPLY_STRING && m->element[i]->len > 0)
                add_secret_json(list, m->element[i]->str, m->element[i]->len, "redis");
        freeReplyObject(m);
    }
    admin_reply_json(r, 200, json_pack("{s:s,s:o}", "realm", realm, "secrets", list));
}

void admin_h_secret_add(admin_req_t *r)
{
    const char *realm = path_realm(r);
    if (!realm)
        return;
    size_t n = 0;
    bool bad = false;
    const char *given = admin_body_str(r, "secret", &n, &bad);
    if (bad)
        return;
    char gen[65];
    if (given) {
        if (n < SECRET_MIN || n > SECRET_MAX || memchr(given, 0, n)) {
            admin_reply_error(r, 400, "bad_field", "'secret' must be %d to %d bytes", SECRET_MIN,
                              SECRET_MAX);
            return;
        }
    } else {
        uint8_t raw[32];
        rand_bytes(raw, sizeof(raw));
        stun_auth_hex_encode(raw, sizeof(raw), gen);
        OPENSSL_cleanse(raw, sizeof(raw));
    }
    if (!need_redis(r))
        return;
    char key[KEY_MAX];
    snprintf(key, sizeof(key), CREDS_REDIS_SECRETS, realm);
    /* The secret goes as one argv element with its length: it may hold any byte but NUL. */
    const char *argv[3] = {"SADD", key, given ? given : gen};
    size_t lens[3] = {4, strlen(key), given ? n : strlen(gen)};
    char err[256];
    redisReply *rep = admin_redis_cmd(r->a->redis, 3, argv, lens, err, sizeof(err));
    if (!rep) {
        redis_down(r, err);
        return;
    }
    bool added = rep->type == REDIS_REPLY_INTEGER && rep->integer == 1;
    bool error = rep->type == REDIS_REPLY_ERROR;
    freeReplyObject(rep);
    if (error) {
        admin_reply_error(r, 503, "redis_error", "redis refused SADD");
        return;
    }
    if (our_realm(r->a, realm) && admin_forget_user(r, NULL, 0, false) < 0)
        return;
    char id[9], fp[40];
    secret_ids(given ? given : gen, given ? n : strlen(gen), id, fp);
    json_t *o = json_pack("{s:s,s:s,s:s,s:b}", "realm", realm, "id", id, "fingerprint", fp,
                          "created", added);
    if (!given) /* shown once: it is not stored anywhere else we could show it from */
        json_object_set_new(o, "secret", json_string(gen));
    OPENSSL_cleanse(gen, sizeof(gen));
    admin_reply_json(r, added ? 201 : 200, o);
}

void admin_h_secret_delete(admin_req_t *r)
{
    const char *realm = path_realm(r);
    if (!realm)
        return;
    const char *want = r->seg[5];
    size_t wlen = r->seglen[5];
    if (wlen < 8 || wlen > 32 || strspn(want, "0123456789abcdef") != wlen) {
        admin_reply_error(r, 404, "not_found", "no secret '%.64s'", want);
        return;
    }
    const cfg_t *cfg = r->a->s->cfg;
    if (our_realm(r->a, realm) && cfg->use_auth_secret)
        for (size_t i = 0; i < cfg->static_auth_secret.n; i++) {
            char id[9], fp[40];
            secret_ids(cfg->static_auth_secret.v[i], strlen(cfg->static_auth_secret.v[i]), id, fp);
            if (strncmp(fp + 7, want, wlen) == 0 || strcmp(id, want) == 0) {
                admin_reply_error(r, 409, "secret_in_config",
                                  "secret %s is a static-auth-secret in the config file: remove "
                                  "it there and reload or restart",
                                  id);
                return;
            }
        }
    if (!need_redis(r))
        return;
    redisReply *m = members(r, realm);
    if (!m)
        return;
    char key[KEY_MAX];
    snprintf(key, sizeof(key), CREDS_REDIS_SECRETS, realm);
    long removed = 0;
    for (size_t i = 0; i < m->elements; i++) {
        redisReply *e = m->element[i];
        if (e->type != REDIS_REPLY_STRING)
            continue;
        char id[9], fp[40];
        secret_ids(e->str, e->len, id, fp);
        if (strncmp(fp + 7, want, wlen) != 0)
            continue;
        const char *argv[3] = {"SREM", key, e->str};
        size_t lens[3] = {4, strlen(key), e->len};
        char err[256];
        redisReply *rep = admin_redis_cmd(r->a->redis, 3, argv, lens, err, sizeof(err));
        if (!rep) {
            freeReplyObject(m);
            redis_down(r, err);
            return;
        }
        if (rep->type == REDIS_REPLY_INTEGER)
            removed += (long)rep->integer;
        freeReplyObject(rep);
    }
    freeReplyObject(m);
    if (removed == 0) {
        admin_reply_error(r, 404, "not_found", "no secret '%.64s' in realm '%.100s'", want, realm);
        return;
    }
    /* Workers hold the secret set for up to 10 s: make them fetch it again now. */
    if (our_realm(r->a, realm) && admin_forget_user(r, NULL, 0, false) < 0)
        return;
    admin_reply_json(r, 200,
                     json_pack("{s:s,s:s,s:b,s:i}", "realm", realm, "id", want, "deleted", 1,
                               "removed", (int)removed));
}
