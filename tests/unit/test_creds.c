/* test_creds.c - the credential store without Redis (server/auth/creds.c, creds_keys.c): static
 * users and TURN REST from static secrets. The Redis store is in test_creds_redis.c, the config
 * checks in test_creds_cfg.c.
 *
 * Static users (RFC 8489 §9.2 keys, SASLprep, coturn's 0x key form, USERHASH §14.4) and TURN REST
 * (draft-uberti-behave-turn-rest-00 vector, expiry, rotation between two secrets), driven through
 * creds_* on a real libuv loop: every answer is final at once (never PENDING).
 */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "creds_fixture.h"

/* ---- static users and REST, no Redis ---- */

UNIT_TEST(static)
{
    /* U+00A0 (no-break space) in the password: SASLprep maps it to U+0020. */
    const char *kv[] = {"realm", REALM,
                        "user",  "alice:wonder land",
                        "user",  "bob:0x7da2270ccfa49786e0115366d3a3d14d",
                        "user",  "carol:x\xc2\xa0y",
                        NULL};
    creds_shared_t *sh = shared_ok(kv);
    creds_t *c = NULL;
    creds_keys_t k;
    uint8_t md5[16], sha[32];
    char name[64];
    int pending;

    if (!sh)
        return;
    CHECK_INT(creds_shared_any(sh), 1);
    CHECK_INT(creds_new(&loop, sh, NULL, &c), 0);
    CHECK_INT(redis_state(c), -1);
    CHECK_INT(look_wait(c, "alice", 0, &k, &pending), CREDS_FOUND);
    CHECK_INT(pending, 0);
    CHECK_INT(k.n, 1);
    stun_auth_key_md5("alice", 5, REALM, strlen(REALM), "wonder land", 11, md5);
    stun_auth_key_sha256("alice", 5, REALM, strlen(REALM), "wonder land", 11, sha);
    CHECK(k.k[0].has_md5 && k.k[0].has_sha256);
    CHECK_MEM(k.k[0].md5, md5, 16);
    CHECK_MEM(k.k[0].sha256, sha, 32);

    CHECK_INT(look_wait(c, "bob", 0, &k, NULL), CREDS_FOUND);
    expect_md5(&k, 0, "7da2270ccfa49786e0115366d3a3d14d");
    CHECK(!k.k[0].has_sha256);

    CHECK_INT(look_wait(c, "carol", 0, &k, NULL), CREDS_FOUND);
    stun_auth_key_md5("carol", 5, REALM, strlen(REALM), "x y", 3, md5);
    CHECK_MEM(k.k[0].md5, md5, 16);

    CHECK_INT(look_wait(c, "mallory", 0, &k, NULL), CREDS_UNKNOWN);
    CHECK_INT(k.n, 0);
    CHECK_INT(look_wait(c, "alic", 0, &k, NULL), CREDS_UNKNOWN);
    CHECK_INT(look_wait(c, "1266890800:mbzrxpgjys", REST_BEFORE, &k, NULL), CREDS_UNKNOWN);

    CHECK_INT(look_hash(c, "alice", name, sizeof(name), &k, &pending), CREDS_FOUND);
    CHECK_INT(pending, 0);
    CHECK_STR(name, "alice");
    CHECK_INT(k.n, 1);
    CHECK_INT(look_hash(c, "alice", name, 5, &k, &pending), CREDS_UNKNOWN); /* no room */
    CHECK_INT(look_hash(c, "nobody", name, sizeof(name), &k, &pending), CREDS_UNKNOWN);
    CHECK_INT(ctr(&creds_stats(c)->lookups), 9);
    close_creds(c);
    creds_shared_free(sh);

    const char *none[] = {NULL};
    sh = shared_ok(none);
    CHECK(sh && creds_shared_any(sh) == 0);
    creds_shared_free(sh);
}

UNIT_TEST(rest_static)
{
    const char *kv[] = {"realm",
                        REALM,
                        "use-auth-secret",
                        "true",
                        "static-auth-secret",
                        "north",
                        "static-auth-secret",
                        "south",
                        NULL};
    creds_shared_t *sh = shared_ok(kv);
    creds_t *c = NULL;
    creds_keys_t k;
    uint8_t north[16], south[16];

    if (!sh)
        return;
    CHECK_INT(creds_new(&loop, sh, NULL, &c), 0);
    CHECK_INT(look_wait(c, REST_USER, REST_BEFORE, &k, NULL), CREDS_FOUND);
    /* Two secrets, two keys (rotation); the vector's key from the first. */
    CHECK_INT(k.n, 2);
    expect_md5(&k, 0, "189beda23cf1b5c67dd164d580ac15b0");
    rest_md5("north", REST_USER, north);
    rest_md5("south", REST_USER, south);
    CHECK(has_md5(&k, north) && has_md5(&k, south));
    CHECK(k.k[0].has_sha256 && k.k[1].has_sha256);
    /* Still valid at the expiry second itself; expired one second later. */
    CHECK_INT(look_wait(c, REST_USER, 1266890800, &k, NULL), CREDS_FOUND);
    CHECK_INT(look_wait(c, REST_USER, REST_AFTER, &k, NULL), CREDS_EXPIRED);
    CHECK_INT(k.n, 0);
    CHECK_INT(look_wait(c, "mbzrxpgjys:1266890800", REST_BEFORE, &k, NULL), CREDS_FOUND);
    CHECK_INT(look_wait(c, "plainuser", REST_BEFORE, &k, NULL), CREDS_UNKNOWN);
    close_creds(c);
    creds_shared_free(sh);
}

int main(int argc, char **argv)
{
    unit_args(argc, argv);
    creds_fixture_start();
    unit_run();
    creds_fixture_end();
    return unit_done("test_creds");
}
