/* creds_redis_cfg.c - the `redis-userdb` connection string (creds_redis.h): coturn's
 * "ip=... port=... dbname=... password=... connect_timeout=..." (turndb/dbd_redis.c's names, so
 * existing deployments keep their setting) or "redis://[[user]:password@]host[:port][/db]"; and
 * for Redis Sentinel the same fields with "sentinel=IP[:PORT],... master=NAME
 * [sentinel-password=...]" instead of ip/port, or
 * "redis-sentinel://[[user]:password@]IP[:PORT],IP[:PORT],.../NAME[/db][?sentinel-password=...]".
 * Bounded and strict: digits only in numbers, a host of at most 255 bytes, sentinels as IP
 * literals (at most 8), percent-decoding in the URL's user and passwords; errors name the key and
 * the bad part, never a password.
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
#define SENTINEL_ENTRY_MAX 80 /* "[v6]:port" */

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

/* "IP[:PORT],IP[:PORT],..." (bare IPv6 without a port, or [IPv6]:PORT), appended to the list. */
static int set_sentinels(creds_redis_cfg_t *o, const char *v, size_t n, char *err, size_t errlen)
{
    redis_sentinel_cfg_t *sc = &o->sentinel;
    const char *end = v + n;
    while (v <= end) {
        const char *comma = memchr(v, ',', (size_t)(end - v));
        const char *e = comma ? comma : end;
        size_t len = (size_t)(e - v);
        char buf[SENTINEL_ENTRY_MAX];
        struct sockaddr_storage ss;
        if (len == 0)
            return err_set(err, errlen, "'redis-userdb': empty entry in 'sentinel'");
        if (sc->n == REDIS_SENTINEL_MAX)
            return err_set(err, errlen, "'redis-userdb': more than %d sentinels",
                           REDIS_SENTINEL_MAX);
        if (len >= sizeof(buf))
            return err_set(err, errlen, "'redis-userdb': sentinel entry %d is too long", sc->n + 1);
        memcpy(buf, v, len);
        buf[len] = '\0';
        if (sa_parse_hostport(buf, REDIS_SENTINEL_DEFAULT_PORT, &ss) != 0)
            return err_set(err, errlen,
                           "'redis-userdb': sentinel '%s' is not IP[:PORT] or [IPv6]:PORT", buf);
        redis_sentinel_addr_t *a = &sc->addr[sc->n++];
        sa_format_ip((const struct sockaddr *)&ss, a->ip, sizeof(a->ip));
        a->port = sa_port((const struct sockaddr *)&ss);
        if (!comma)
            break;
        v = comma + 1;
    }
    return 0;
}

/* The name the sentinels monitor: 1-128 of [A-Za-z0-9._-] (it goes into the log and, as one
 * argument, to the sentinels). */
static int set_master(creds_redis_cfg_t *o, const char *v, size_t n, char *err, size_t errlen)
{
    bool ok = n > 0 && n <= REDIS_SENTINEL_NAME_MAX;
    for (size_t i = 0; ok && i < n; i++)
        ok = isalnum((unsigned char)v[i]) || v[i] == '.' || v[i] == '_' || v[i] == '-';
    if (!ok)
        return err_set(err, errlen, "'redis-userdb': bad master name (1-%d of A-Z a-z 0-9 . _ -)",
                       REDIS_SENTINEL_NAME_MAX);
    return set_str(&o->sentinel.master, v, n) ? err_set(err, errlen, "out of memory") : 0;
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
    if (field_is(k, kn, "sentinel"))
        return set_sentinels(o, v, vn, err, errlen);
    if (field_is(k, kn, "master"))
        return set_master(o, v, vn, err, errlen);
    if (field_is(k, kn, "sentinel-password"))
        return set_str(&o->sentinel.password, v, vn) ? err_set(err, errlen, "out of memory") : 0;
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

/* redis-sentinel://[[user]:password@]IP[:PORT],.../NAME[/db][?sentinel-password=...]. Passwords
 * are percent-encoded; the query ends the URL at its first '?', the userinfo at its last '@'. */
static int parse_sentinel_url(const char *s, creds_redis_cfg_t *o, char *err, size_t errlen)
{
    const char *rest = s + strlen("redis-sentinel://");
    const char *q = strchr(rest, '?');
    const char *end = q ? q : rest + strlen(rest);
    const char *at = NULL;
    for (const char *p = rest; p < end; p++)
        if (*p == '@')
            at = p;
    if (at && parse_userinfo(rest, (size_t)(at - rest), o, err, errlen) != 0)
        return -1;
    const char *hosts = at ? at + 1 : rest;
    const char *slash = memchr(hosts, '/', (size_t)(end - hosts));
    if (!slash || slash == hosts)
        return err_set(err, errlen,
                       "'redis-userdb': expected redis-sentinel://IP[:PORT],.../MASTER-NAME");
    if (set_sentinels(o, hosts, (size_t)(slash - hosts), err, errlen) != 0)
        return -1;
    const char *name = slash + 1;
    const char *db = memchr(name, '/', (size_t)(end - name));
    if (set_master(o, name, (size_t)((db ? db : end) - name), err, errlen) != 0)
        return -1;
    if (db && db + 1 < end && set_db(o, db + 1, (size_t)(end - db - 1), err, errlen) != 0)
        return -1;
    if (q) {
        static const char key[] = "sentinel-password=";
        if (strncmp(q + 1, key, strlen(key)) != 0)
            return err_set(err, errlen,
                           "'redis-userdb': the only URL parameter is "
                           "'sentinel-password'");
        const char *v = q + 1 + strlen(key);
        if (strchr(v, '&') || set_decoded(&o->sentinel.password, v, strlen(v)) != 0)
            return err_set(err, errlen, "'redis-userdb': bad 'sentinel-password' parameter");
    }
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

/* What the fields say together: Sentinel or one server, never both. */
static int check_mode(creds_redis_cfg_t *o, char *err, size_t errlen)
{
    const redis_sentinel_cfg_t *sc = &o->sentinel;
    if (sc->n == 0 && sc->master)
        return err_set(err, errlen, "'redis-userdb': 'master' needs 'sentinel=IP:PORT,...'");
    if (sc->n == 0 && sc->password)
        return err_set(err, errlen, "'redis-userdb': 'sentinel-password' needs 'sentinel'");
    if (sc->n > 0 && !sc->master)
        return err_set(err, errlen,
                       "'redis-userdb': 'sentinel' needs 'master=NAME' (the name the sentinels "
                       "monitor)");
    if (sc->n > 0 && (o->host || o->port))
        return err_set(err, errlen,
                       "'redis-userdb': 'ip', 'host' and 'port' cannot be used with 'sentinel' "
                       "(the sentinels name the master)");
    if (sc->n > 0)
        return 0;
    if (!o->port)
        o->port = REDIS_DEFAULT_PORT;
    if (!o->host && !(o->host = strdup("127.0.0.1")))
        return err_set(err, errlen, "out of memory");
    return 0;
}

int creds_redis_cfg_parse(const char *s, creds_redis_cfg_t *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof(*out));
    out->connect_timeout_ms = CREDS_REDIS_TIMEOUT_MS;
    int rc;
    if (strncasecmp(s, "rediss://", 9) == 0)
        rc = err_set(err, errlen, "'redis-userdb': rediss:// (TLS) is not supported");
    else if (strncasecmp(s, "redis://", 8) == 0)
        rc = parse_url(s, out, err, errlen);
    else if (strncasecmp(s, "redis-sentinel://", 17) == 0)
        rc = parse_sentinel_url(s, out, err, errlen);
    else if (strstr(s, "://"))
        rc = err_set(err, errlen,
                     "'redis-userdb': only redis:// URLs (and redis-sentinel://) are supported");
    else
        rc = parse_fields(s, out, err, errlen);
    if (rc == 0)
        rc = check_mode(out, err, errlen);
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
    redis_sentinel_cfg_free(&cfg->sentinel);
    memset(cfg, 0, sizeof(*cfg));
}
