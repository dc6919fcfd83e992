/* test_creds_cfg.c - the credential settings as the config gives them (server/creds_shared.c,
 * server/creds_redis_cfg.c): static users, REST secrets and every redis-userdb form (one server
 * and Redis Sentinel), accepted and refused, each refusal naming its key and never echoing a
 * password; and the Sentinel answers as redis_sentinel.c reads them. No loop, no Redis.
 */
#include <stdio.h>
#include <string.h>

#include <hiredis/hiredis.h>

#include "creds.h"
#include "creds_kv.h"
#include "creds_redis.h"
#include "redis_sentinel.h"
#include "unit.h"
#include "util.h"

typedef struct {
    const char *kv[9];
    const char *err_part; /* NULL: must succeed */
} shared_case_t;

static const shared_case_t shared_cases[] = {
    {{"user", "nocolon", NULL}, "test: 'user': missing ':'"},
    {{"user", "a:b", "user", ":pw", NULL}, "test: 'user': the name must be"},
    {{"user", "a:", NULL}, "test: 'user': empty password"},
    {{"user", "a:0x00112233445566778899aabbccddeeff00", NULL}, "'user': a 0x key must be 32"},
    {{"user", "a:0x0011223344556677889900aabbccddeg", NULL}, "a 0x key must be 32 hex"},
    {{"user", "a:0xshort", NULL}, NULL}, /* shorter than a key: a password, as coturn */
    {{"user", "a:b", "user", "a:c", NULL}, "'user': 'a' is defined twice"},
    {{"use-auth-secret", "true", NULL}, "test: 'use-auth-secret': needs 'static-auth-secret'"},
    {{"use-auth-secret", "true", "redis-userdb", "ip=127.0.0.1", NULL}, NULL},
    {{"redis-userdb", "ip=127.0.0.1 hots=x", NULL}, "'redis-userdb': unknown field 'hots'"},
    {{"redis-userdb", "ip=127.0.0.1 port=70000", NULL}, "'redis-userdb': bad port '70000'"},
    {{"redis-userdb", "port=0", NULL}, "bad port"},
    {{"redis-userdb", "dbname=x1", NULL}, "bad database number 'x1'"},
    {{"redis-userdb", "ip=1.2.3.4 password", NULL}, "field 2 is not key=value"},
    {{"redis-userdb", "connect_timeout=-1", NULL}, "bad connect_timeout"},
    {{"redis-userdb", "redis://h:99999", NULL}, "bad port '99999'"},
    {{"redis-userdb", "redis://h:6379/abc", NULL}, "bad database number 'abc'"},
    {{"redis-userdb", "redis://::1:6379", NULL}, "needs [brackets]"},
    {{"redis-userdb", "redis://[::1:6379", NULL}, "missing ']'"},
    {{"redis-userdb", "redis://pw@h", NULL}, "expected redis://[user]:password@host"},
    {{"redis-userdb", "redis://:p%zz@h", NULL}, "bad %-escape"},
    {{"redis-userdb", "redis://", NULL}, "missing or too long host"},
    {{"redis-userdb", "rediss://h", NULL}, "TLS) is not supported"},
    {{"redis-userdb", "unix:///tmp/r.sock", NULL}, "only redis:// URLs"},
    {{"redis-userdb", "redis://user:@h", NULL}, "a user needs a password"},
    /* Redis Sentinel */
    {{"redis-userdb", "sentinel=127.0.0.1:26379 master=mymaster", NULL}, NULL},
    {{"redis-userdb", "sentinel=127.0.0.1:26379", NULL}, "'sentinel' needs 'master=NAME'"},
    {{"redis-userdb", "master=mymaster", NULL}, "'master' needs 'sentinel=IP:PORT"},
    {{"redis-userdb", "ip=1.2.3.4 sentinel-password=s3cret", NULL},
     "'sentinel-password' needs 'sentinel'"},
    {{"redis-userdb", "sentinel=127.0.0.1 master=m ip=127.0.0.1", NULL},
     "'ip', 'host' and 'port' cannot be used with 'sentinel'"},
    {{"redis-userdb", "port=6379 sentinel=127.0.0.1 master=m", NULL}, "cannot be used with"},
    {{"redis-userdb", "sentinel=redis.local:26379 master=m", NULL},
     "sentinel 'redis.local:26379' is not IP[:PORT]"},
    {{"redis-userdb", "sentinel=127.0.0.1:0 master=m", NULL}, "sentinel '127.0.0.1:0' is not"},
    {{"redis-userdb", "sentinel=127.0.0.1:26379x master=m", NULL}, "is not IP[:PORT]"},
    {{"redis-userdb", "sentinel=127.0.0.1,,127.0.0.2 master=m", NULL}, "empty entry in 'sentinel'"},
    {{"redis-userdb", "sentinel=127.0.0.1, master=m", NULL}, "empty entry in 'sentinel'"},
    {{"redis-userdb",
      "sentinel=10.0.0.1,10.0.0.2,10.0.0.3,10.0.0.4,10.0.0.5,10.0.0.6,10.0.0.7,10.0.0.8,10.0.0.9 "
      "master=m",
      NULL},
     "more than 8 sentinels"},
    {{"redis-userdb", "sentinel=127.0.0.1 master=my/master", NULL}, "bad master name"},
    {{"redis-userdb", "sentinel=127.0.0.1 master=m sentinel-password=s3cret junk", NULL},
     "field 4 is not key=value"},
    {{"redis-userdb", "redis-sentinel://127.0.0.1", NULL},
     "expected redis-sentinel://IP[:PORT],.../MASTER-NAME"},
    {{"redis-userdb", "redis-sentinel:///m", NULL}, "expected redis-sentinel://"},
    {{"redis-userdb", "redis-sentinel://127.0.0.1:26379/", NULL}, "bad master name"},
    {{"redis-userdb", "redis-sentinel://127.0.0.1/m/x", NULL}, "bad database number 'x'"},
    {{"redis-userdb", "redis-sentinel://h.example/m", NULL}, "sentinel 'h.example' is not"},
    {{"redis-userdb", "redis-sentinel://127.0.0.1/m?foo=1", NULL},
     "the only URL parameter is 'sentinel-password'"},
    {{"redis-userdb", "redis-sentinel://127.0.0.1/m?sentinel-password=s3cret%zz", NULL},
     "bad 'sentinel-password' parameter"},
    {{"redis-userdb", "redis-sentinel://u:@127.0.0.1/m", NULL}, "a user needs a password"},
};

UNIT_TEST(shared_errors)
{
    for (size_t i = 0; i < ARRAY_SIZE(shared_cases); i++) {
        const shared_case_t *t = &shared_cases[i];
        char err[256] = "";
        creds_shared_t *sh = creds_shared_from_kv(t->kv, err, sizeof(err));
        if (!t->err_part) {
            if (!sh)
                fprintf(stderr, "case %zu: unexpected error: %s\n", i, err);
            CHECK(sh != NULL);
        } else {
            CHECK(sh == NULL);
            if (!strstr(err, t->err_part))
                fprintf(stderr, "case %zu: \"%s\" lacks \"%s\"\n", i, err, t->err_part);
            CHECK(strstr(err, t->err_part) != NULL);
            CHECK(strstr(err, "s3cret") == NULL);
        }
        creds_shared_free(sh);
    }
    /* A password is never echoed, even when it is what breaks the line. */
    const char *kv[] = {"redis-userdb", "ip=h password=s3cret junk", NULL};
    char err[256];
    CHECK(creds_shared_from_kv(kv, err, sizeof(err)) == NULL);
    CHECK(strstr(err, "s3cret") == NULL);
}

typedef struct {
    const char *s;
    const char *host;
    int port, db;
    const char *user, *password;
    int timeout_ms;
} url_case_t;

static const url_case_t url_cases[] = {
    {"ip=127.0.0.1 port=6379 dbname=0 password=xxx connect_timeout=30", "127.0.0.1", 6379, 0, NULL,
     "xxx", 2000},
    {"host=redis.local dbname=3 connect_timeout=1", "redis.local", 6379, 3, NULL, NULL, 1000},
    {"  user=turn   password=a=b  ", "127.0.0.1", 6379, 0, "turn", "a=b", 2000},
    {"redis://h", "h", 6379, 0, NULL, NULL, 2000},
    {"redis://:pw@203.0.113.1:7000/5", "203.0.113.1", 7000, 5, NULL, "pw", 2000},
    {"redis://turn:p%40ss%3A@[::1]:6380/2", "::1", 6380, 2, "turn", "p@ss:", 2000},
    {"redis://[fe80::1]", "fe80::1", 6379, 0, NULL, NULL, 2000},
    {"REDIS://h:1/", "h", 1, 0, NULL, NULL, 2000},
};

UNIT_TEST(redis_cfg)
{
    for (size_t i = 0; i < ARRAY_SIZE(url_cases); i++) {
        const url_case_t *t = &url_cases[i];
        creds_redis_cfg_t cfg;
        char err[256] = "";
        int rc = creds_redis_cfg_parse(t->s, &cfg, err, sizeof(err));
        if (rc != 0)
            fprintf(stderr, "url case %zu: %s\n", i, err);
        CHECK_INT(rc, 0);
        if (rc != 0)
            continue;
        CHECK_STR(cfg.host, t->host);
        CHECK_INT(cfg.port, t->port);
        CHECK_INT(cfg.db, t->db);
        CHECK(t->user ? cfg.user && strcmp(cfg.user, t->user) == 0 : cfg.user == NULL);
        CHECK(t->password ? cfg.password && strcmp(cfg.password, t->password) == 0
                          : cfg.password == NULL);
        CHECK_INT(cfg.connect_timeout_ms, t->timeout_ms);
        creds_redis_cfg_free(&cfg);
    }
}

typedef struct {
    const char *s;
    int n;
    const char *addr[3]; /* "ip port" */
    const char *master;
    int db;
    const char *user, *password, *sentinel_password;
} sentinel_case_t;

static const sentinel_case_t sentinel_cases[] = {
    {"sentinel=127.0.0.1:26379,127.0.0.2:26380,[::1]:26381 master=mymaster password=pw "
     "sentinel-password=spw dbname=2",
     3,
     {"127.0.0.1 26379", "127.0.0.2 26380", "::1 26381"},
     "mymaster",
     2,
     NULL,
     "pw",
     "spw"},
    {"sentinel=10.0.0.1,::1 master=a.b_c-d",
     2,
     {"10.0.0.1 26379", "::1 26379"},
     "a.b_c-d",
     0,
     NULL,
     NULL,
     NULL},
    {"sentinel=10.0.0.1 sentinel=10.0.0.2:1 master=m connect_timeout=1",
     2,
     {"10.0.0.1 26379", "10.0.0.2 1"},
     "m",
     0,
     NULL,
     NULL,
     NULL},
    {"redis-sentinel://:p%40w@127.0.0.1:5000,[::1]/mymaster/3?sentinel-password=s%3Dp",
     2,
     {"127.0.0.1 5000", "::1 26379"},
     "mymaster",
     3,
     NULL,
     "p@w",
     "s=p"},
    {"REDIS-SENTINEL://turn:pw@127.0.0.1/m", 1, {"127.0.0.1 26379"}, "m", 0, "turn", "pw", NULL},
    {"redis-sentinel://127.0.0.1/m/", 1, {"127.0.0.1 26379"}, "m", 0, NULL, NULL, NULL},
};

static bool str_eq(const char *got, const char *want)
{
    return want ? got && strcmp(got, want) == 0 : got == NULL;
}

UNIT_TEST(sentinel_cfg)
{
    for (size_t i = 0; i < ARRAY_SIZE(sentinel_cases); i++) {
        const sentinel_case_t *t = &sentinel_cases[i];
        creds_redis_cfg_t cfg;
        char err[256] = "";
        int rc = creds_redis_cfg_parse(t->s, &cfg, err, sizeof(err));
        if (rc != 0)
            fprintf(stderr, "sentinel case %zu: %s\n", i, err);
        CHECK_INT(rc, 0);
        if (rc != 0)
            continue;
        CHECK(cfg.host == NULL); /* the sentinels name the master */
        CHECK_INT(cfg.port, 0);
        CHECK_INT(cfg.sentinel.n, t->n);
        for (int k = 0; k < t->n && k < cfg.sentinel.n; k++) {
            char got[96];
            snprintf(got, sizeof(got), "%s %d", cfg.sentinel.addr[k].ip, cfg.sentinel.addr[k].port);
            CHECK_STR(got, t->addr[k]);
        }
        CHECK_STR(cfg.sentinel.master, t->master);
        CHECK_INT(cfg.db, t->db);
        CHECK(str_eq(cfg.user, t->user));
        CHECK(str_eq(cfg.password, t->password));
        CHECK(str_eq(cfg.sentinel.password, t->sentinel_password));
        creds_redis_cfg_free(&cfg);
    }
}

/* The sentinels' answers (redis_sentinel.c), on replies built by hand. */
UNIT_TEST(sentinel_answers)
{
    char s_ip[] = "127.0.0.1", s_port[] = "6380", s_bad_port[] = "65536", s_err[] = "ERR no";
    char s_host[] = "redis.local", s_master[] = "master", s_slave[] = "slave";
    redisReply ip = {.type = REDIS_REPLY_STRING, .str = s_ip, .len = strlen(s_ip)};
    redisReply port = {.type = REDIS_REPLY_STRING, .str = s_port, .len = strlen(s_port)};
    redisReply *pair[2] = {&ip, &port};
    redisReply arr = {.type = REDIS_REPLY_ARRAY, .elements = 2, .element = pair};
    redisReply nil = {.type = REDIS_REPLY_NIL};
    redisReply e = {.type = REDIS_REPLY_ERROR, .str = s_err, .len = strlen(s_err)};
    redis_sentinel_addr_t a;
    memset(&a, 0, sizeof(a));
    CHECK_INT(redis_sentinel_parse_addr(&arr, &a), 0);
    CHECK_STR(a.ip, "127.0.0.1");
    CHECK_INT(a.port, 6380);
    CHECK_INT(redis_sentinel_parse_addr(&nil, &a), 1);
    CHECK_INT(redis_sentinel_parse_addr(&e, &a), -1);
    redisReply host = {.type = REDIS_REPLY_STRING, .str = s_host, .len = strlen(s_host)};
    pair[0] = &host;
    CHECK_INT(redis_sentinel_parse_addr(&arr, &a), -1); /* IP literals only */
    pair[0] = &ip;
    port.str = s_bad_port;
    port.len = strlen(s_bad_port);
    CHECK_INT(redis_sentinel_parse_addr(&arr, &a), -1);

    static const struct {
        const char *msg;
        int rc;
        const char *ip;
        int port;
    } sw[] = {
        {"mymaster 127.0.0.1 6379 127.0.0.1 6380", 0, "127.0.0.1", 6380},
        {"mymaster ::1 6379 ::1 7000", 0, "::1", 7000},
        {"other 127.0.0.1 6379 127.0.0.1 6380", 1, NULL, 0},
        {"mymaster2 127.0.0.1 6379 127.0.0.1 6380", 1, NULL, 0},
        {"mymaster 127.0.0.1 6379 127.0.0.1", -1, NULL, 0},
        {"mymaster 127.0.0.1 6379 127.0.0.1 6380 extra", -1, NULL, 0},
        {"mymaster 127.0.0.1 6379 not-an-ip 6380", -1, NULL, 0},
        {"mymaster 127.0.0.1 6379 127.0.0.1 0", -1, NULL, 0},
        {"", -1, NULL, 0},
    };
    for (size_t i = 0; i < ARRAY_SIZE(sw); i++) {
        memset(&a, 0, sizeof(a));
        int rc = redis_sentinel_parse_switch(sw[i].msg, strlen(sw[i].msg), "mymaster", &a);
        if (rc != sw[i].rc)
            fprintf(stderr, "switch case %zu: %d, expected %d\n", i, rc, sw[i].rc);
        CHECK_INT(rc, sw[i].rc);
        if (sw[i].rc == 0) {
            CHECK_STR(a.ip, sw[i].ip);
            CHECK_INT(a.port, sw[i].port);
        }
    }

    redisReply role = {.type = REDIS_REPLY_STRING, .str = s_master, .len = strlen(s_master)};
    redisReply *re[1] = {&role};
    redisReply roles = {.type = REDIS_REPLY_ARRAY, .elements = 1, .element = re};
    CHECK_INT(redis_sentinel_role_is_master(&roles), 1);
    role.str = s_slave;
    role.len = strlen(s_slave);
    CHECK_INT(redis_sentinel_role_is_master(&roles), 0);
    CHECK_INT(redis_sentinel_role_is_master(&e), 0);
    CHECK_INT(redis_sentinel_role_is_master(NULL), 0);
}

UNIT_MAIN("test_creds_cfg")
