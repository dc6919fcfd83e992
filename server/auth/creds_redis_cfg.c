/* creds_redis_cfg.c - the `redis-userdb` connection string (creds_redis.h): coturn's
 * "ip=... port=... dbname=... password=... connect_timeout=..." (turndb/dbd_redis.c's names, so
 * existing deployments keep their setting) or "redis://[[user]:password@]host[:port][/db]".
 * Bounded and strict: digits only in numbers, a host of at most 255 bytes, percent-decoding in the
 * URL's user and password; errors name the key and the bad part, never the password.
 */
#include "creds_redis.h"

#include <ctype.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#include "creds_int.h"
#include "errbuf.h"
#include "sockaddr_util.h"
#include "stun_auth.h"

#define REDIS_DEFAULT_PORT 6379
#define HOST_MAX 255

/* Decimal s[0..n) within [min, max]; digits only (no sign, no spaces). */
static int parse_num(const char *s, size_t n, long min, long max, long *out)
{
    long v = 0;
    if (n == 0 || n > 10)
        return -1;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        v = v * 10 + (s[i] - '0');
    }
    if (v < min || v > max)
        return -1;
    *out = v;
    return 0;
}

static int set_str(char **dst, const char *v, size_t n)
{
    char *s = strndup(v, n);
    if (!s)
        return -1;
    if (*dst)
        OPENSSL_cleanse(*dst, strlen(*dst));
    free(*dst);
    *dst = s;
    return 0;
}

static int set_port(creds_redis_cfg_t *o, const char *v, size_t n, char *err, size_t errlen)
{
    uint16_t p;
    if (sa_parse_port(v, n, &p) != 0) /* the rule of every host:port value */
        return err_set(err, errlen, "'redis-userdb': bad port '%.*s' (1-65535)",
                       (int)(n > 16 ? 16 : n), v);
    o->port = (int)p;
    return 0;
}

static int set_db(creds_redis_cfg_t *o, const char *v, size_t n, char *err, size_t errlen)
{
    long d;
    if (parse_num(v, n, 0, INT_MAX, &d) != 0)
        return err_set(err, errlen, "'redis-userdb': bad database number '%.*s'",
                       (int)(n > 16 ? 16 : n), v);
    o->db = (int)d;
    return 0;
}

static bool field_is(const char *k, size_t kn, const char *name)
{
    return strlen(name) == kn && memcmp(k, name, kn) == 0;
}

/* One coturn-style key=value field. */
static int set_field(creds_redis_cfg_t *o, const char *k, size_t kn, const char *v, size_t vn,
                     char *err, size_t errlen)
{
    long t;
    if (vn == 0)
        return err_set(err, errlen, "'redis-userdb': empty value for '%.*s'", (int)kn, k);
    if (field_is(k, kn, "ip") || field_is(k, kn, "host")) {
        if (vn > HOST_MAX)
            return err_set(err, errlen, "'redis-userdb': host longer than %d bytes", HOST_MAX);
        return set_str(&o->host, v, vn) ? err_set(err, errlen, "out of memory") : 0;
    }
    if (field_is(k, kn, "port"))
        return set_port(o, v, vn, err, errlen);
    if (field_is(k, kn, "dbname") || field_is(k, kn, "db") || field_is(k, kn, "database"))
        return set_db(o, v, vn, err, errlen);
    if (field_is(k, kn, "user") || field_is(k, kn, "username"))
        return set_str(&o->user, v, vn) ? err_set(err, errlen, "out of memory") : 0;
    if (field_is(k, kn, "password"))
        return set_str(&o->password, v, vn) ? err_set(err, errlen, "out of memory") : 0;
    if (field_is(k, kn, "connect_timeout")) {
        if (parse_num(v, vn, 1, 3600, &t) != 0)
            return err_set(err, errlen, "'redis-userdb': bad connect_timeout (1-3600 seconds)");
        o->connect_timeout_ms =
            t * 1000 < CREDS_REDIS_TIMEOUT_MS ? (int)t * 1000 : CREDS_REDIS_TIMEOUT_MS;
        return 0;
    }
    return err_set(err, errlen, "'redis-userdb': unknown field '%.*s'", (int)(kn > 32 ? 32 : kn),
                   k);
}

static int parse_fields(const char *s, creds_redis_cfg_t *o, char *err, size_t errlen)
{
    int field = 0;
    while (*s) {
        while (isspace((unsigned char)*s))
            s++;
        if (!*s)
            break;
        const char *tok = s;
        while (*s && !isspace((unsigned char)*s))
            s++;
        size_t n = (size_t)(s - tok);
        const char *eq = memchr(tok, '=', n);
        field++;
        /* Do not echo the token: it may be half of a password that contained a space. */
        if (!eq || eq == tok)
            return err_set(err, errlen, "'redis-userdb': field %d is not key=value", field);
        size_t kn = (size_t)(eq - tok);
        if (set_field(o, tok, kn, eq + 1, n - kn - 1, err, errlen) != 0)
            return -1;
    }
    return 0;
}

/* URL userinfo parts are percent-encoded (RFC 3986 §2.1). NUL is refused. */
static int set_decoded(char **dst, const char *v, size_t n)
{
    char *s = malloc(n + 1);
    size_t j = 0;
    if (!s)
        return -1;
    for (size_t i = 0; i < n; i++) {
        if (v[i] != '%') {
            s[j++] = v[i];
            continue;
        }
        int hi = i + 2 < n ? stun_auth_hex_digit(v[i + 1]) : -1;
        int lo = hi >= 0 ? stun_auth_hex_digit(v[i + 2]) : -1;
        if (lo < 0 || (hi == 0 && lo == 0)) {
            free(s);
            return -1;
        }
        s[j++] = (char)(hi << 4 | lo);
        i += 2;
    }
    s[j] = '\0';
    free(*dst);
    *dst = j ? s : NULL;
    if (!j)
        free(s);
    return 0;
}

static int parse_userinfo(const char *u, size_t n, creds_redis_cfg_t *o, char *err, size_t errlen)
{
    const char *colon = memchr(u, ':', n);
    if (!colon)
        return err_set(err, errlen, "'redis-userdb': expected redis://[user]:password@host");
    size_t un = (size_t)(colon - u);
    if ((un && set_decoded(&o->user, u, un) != 0) ||
        set_decoded(&o->password, colon + 1, n - un - 1) != 0)
        return err_set(err, errlen, "'redis-userdb': bad %%-escape in the user or password");
    return 0;
}

/* host[:port] or [v6]:port, then optional /db. */
static int parse_hostpart(const char *h, creds_redis_cfg_t *o, char *err, size_t errlen)
{
    const char *end = h + strcspn(h, "/"), *port = NULL, *hs = h, *he;
    if (*h == '[') {
        const char *rb = memchr(h, ']', (size_t)(end - h));
        if (!rb)
            return err_set(err, errlen, "'redis-userdb': missing ']' after the IPv6 host");
        hs = h + 1;
        he = rb;
        if (rb + 1 < end && rb[1] != ':')
            return err_set(err, errlen, "'redis-userdb': unexpected text after ']'");
        port = rb + 1 < end ? rb + 2 : NULL;
    } else {
        const char *colon = memchr(h, ':', (size_t)(end - h));
        if (colon && memchr(colon + 1, ':', (size_t)(end - colon - 1)))
            return err_set(err, errlen, "'redis-userdb': an IPv6 host needs [brackets]");
        he = colon ? colon : end;
        port = colon ? colon + 1 : NULL;
    }
    if (he == hs || he - hs > HOST_MAX)
        return err_set(err, errlen, "'redis-userdb': missing or too long host");
    if (set_str(&o->host, hs, (size_t)(he - hs)) != 0)
        return err_set(err, errlen, "out of memory");
    if (port && set_port(o, port, (size_t)(end - port), err, errlen) != 0)
        return -1;
    if (*end == '/' && end[1] && set_db(o, end + 1, strlen(end + 1), err, errlen) != 0)
        return -1;
    return 0;
}

static int parse_url(const char *s, creds_redis_cfg_t *o, char *err, size_t errlen)
{
    const char *rest = s + strlen("redis://");
    /* The last '@' ends the userinfo: the host and the db cannot contain one. */
    const char *at = strrchr(rest, '@');
    if (at && parse_userinfo(rest, (size_t)(at - rest), o, err, errlen) != 0)
        return -1;
    return parse_hostpart(at ? at + 1 : rest, o, err, errlen);
}

int creds_redis_cfg_parse(const char *s, creds_redis_cfg_t *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof(*out));
    out->port = REDIS_DEFAULT_PORT;
    out->connect_timeout_ms = CREDS_REDIS_TIMEOUT_MS;
    int rc;
    if (strncasecmp(s, "rediss://", 9) == 0)
        rc = err_set(err, errlen, "'redis-userdb': rediss:// (TLS) is not supported");
    else if (strncasecmp(s, "redis://", 8) == 0)
        rc = parse_url(s, out, err, errlen);
    else if (strstr(s, "://"))
        rc = err_set(err, errlen, "'redis-userdb': only redis:// URLs are supported");
    else
        rc = parse_fields(s, out, err, errlen);
    if (rc == 0 && !out->host && !(out->host = strdup("127.0.0.1")))
        rc = err_set(err, errlen, "out of memory");
    if (rc == 0 && out->user && !out->password)
        rc = err_set(err, errlen, "'redis-userdb': a user needs a password");
    if (rc != 0)
        creds_redis_cfg_free(out);
    return rc;
}

void creds_redis_cfg_free(creds_redis_cfg_t *cfg)
{
    if (cfg->password)
        OPENSSL_cleanse(cfg->password, strlen(cfg->password));
    free(cfg->host);
    free(cfg->user);
    free(cfg->password);
    memset(cfg, 0, sizeof(*cfg));
}
