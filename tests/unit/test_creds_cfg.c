/* test_creds_cfg.c - the credential settings as the config gives them (server/creds_shared.c,
 * server/creds_redis_cfg.c): static users, REST secrets and every redis-userdb form, accepted and
 * refused, each refusal naming its key and never echoing a password. No loop, no Redis.
 */
#include <stdio.h>
#include <string.h>

#include "creds.h"
#include "creds_kv.h"
#include "creds_redis.h"
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

UNIT_MAIN("test_creds_cfg")
