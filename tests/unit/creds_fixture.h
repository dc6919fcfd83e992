/* creds_fixture.h - what the credential-store tests share (test_creds.c, test_creds_redis.c):
 * the libuv loop they drive, waits on conditions with deadlines, and lookups that wait out the
 * PENDING protocol (ask, one callback, ask again for the final answer).
 *
 * Header-only (static inline) so each program has its own loop; not a module of the server.
 * Single-threaded: everything runs on the test's main thread and `loop`.
 */
#ifndef UTURN_TEST_CREDS_FIXTURE_H
#define UTURN_TEST_CREDS_FIXTURE_H

#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <uv.h>

#include "creds.h"
#include "creds_kv.h"
#include "log.h"
#include "stun_auth.h"
#include "turn_auth.h"
#include "unit.h"

#define REALM "north.gov"
#define REST_USER "1266890800:mbzrxpgjys"
#define REST_BEFORE 1266890000 /* unix_now before the vector's expiry */
#define REST_AFTER 1266890801

static uv_loop_t loop;
static uv_timer_t guard; /* keeps UV_RUN_ONCE from blocking longer than 10 ms */
/* ---- time and loop ---- */

static inline uint64_t now_ms(void) { return uv_hrtime() / 1000000; }

static inline void on_guard(uv_timer_t *t) { (void)t; }

/* Run the loop until *flag >= want or `ms` pass. Returns 1 when the condition was met. */
static inline int run_until(const int *flag, int want, uint64_t ms)
{
    uint64_t deadline = now_ms() + ms;
    while (*flag < want && now_ms() < deadline)
        uv_run(&loop, UV_RUN_ONCE);
    return *flag >= want;
}

static inline void run_for(uint64_t ms)
{
    int never = 0;
    run_until(&never, 1, ms);
}

static inline int redis_state(const creds_t *c)
{
    return atomic_load(&creds_stats(c)->redis_state);
}

static inline uint64_t ctr(_Atomic const uint64_t *p) { return atomic_load(p); }

/* Run the loop until the creds' Redis state is `want`. */
static inline int wait_state(const creds_t *c, int want, uint64_t ms)
{
    uint64_t deadline = now_ms() + ms;
    while (redis_state(c) != want && now_ms() < deadline)
        uv_run(&loop, UV_RUN_ONCE);
    return redis_state(c) == want;
}

/* ---- creds helpers ---- */

typedef struct {
    int calls;
} rec_t;

static inline void on_ready(void *arg) { ((rec_t *)arg)->calls++; }

static inline creds_shared_t *shared_ok(const char *const *kv)
{
    char err[256] = "";
    creds_shared_t *sh = creds_shared_from_kv(kv, err, sizeof(err));
    if (!sh)
        fprintf(stderr, "creds_shared_new: %s\n", err);
    CHECK(sh != NULL);
    return sh;
}

static inline enum creds_status look_at(creds_t *c, const char *u, uint64_t ahead, int64_t unix_now,
                                        creds_keys_t *out, rec_t *r)
{
    uv_update_time(&loop);
    return creds_lookup(c, NULL, u, strlen(u), uv_now(&loop) + ahead, unix_now, out, on_ready, r);
}

static inline enum creds_status look(creds_t *c, const char *u, int64_t unix_now, creds_keys_t *out,
                                     rec_t *r)
{
    return look_at(c, u, 0, unix_now, out, r);
}

/* Look up (with the clock `ahead` ms in the future); on PENDING wait for the one callback (never
 * synchronous) and ask again, which must give a final answer. *pending: whether Redis was asked. */
static inline enum creds_status look_wait_at(creds_t *c, const char *u, uint64_t ahead,
                                             int64_t unix_now, creds_keys_t *out, int *pending)
{
    rec_t r = {0};
    enum creds_status st = look_at(c, u, ahead, unix_now, out, &r);
    CHECK_INT(r.calls, 0);
    if (pending)
        *pending = st == CREDS_PENDING;
    if (st != CREDS_PENDING)
        return st;
    CHECK(run_until(&r.calls, 1, 5000));
    CHECK_INT(r.calls, 1);
    st = look_at(c, u, ahead, unix_now, out, &r);
    CHECK(st != CREDS_PENDING);
    creds_cancel(c, &r); /* if that failed: r lives on this stack */
    return st;
}

static inline enum creds_status look_wait(creds_t *c, const char *u, int64_t unix_now,
                                          creds_keys_t *out, int *pending)
{
    return look_wait_at(c, u, 0, unix_now, out, pending);
}

static inline enum creds_status look_hash(creds_t *c, const char *name, char *user, size_t cap,
                                          creds_keys_t *out, int *pending)
{
    uint8_t h[32];
    rec_t r = {0};
    stun_auth_userhash(name, strlen(name), REALM, strlen(REALM), h);
    uv_update_time(&loop);
    enum creds_status st =
        creds_lookup_userhash(c, NULL, h, uv_now(&loop), REST_BEFORE, user, cap, out, on_ready, &r);
    *pending = st == CREDS_PENDING;
    if (st != CREDS_PENDING)
        return st;
    CHECK(run_until(&r.calls, 1, 5000));
    CHECK_INT(r.calls, 1);
    st =
        creds_lookup_userhash(c, NULL, h, uv_now(&loop), REST_BEFORE, user, cap, out, on_ready, &r);
    CHECK(st != CREDS_PENDING);
    creds_cancel(c, &r);
    return st;
}

static inline void expect_md5(const creds_keys_t *k, int i, const char *hex)
{
    uint8_t want[16];
    CHECK_INT(stun_auth_hex_decode(hex, 32, want, 16), 16);
    CHECK(i < k->n && k->k[i].has_md5);
    if (i < k->n)
        CHECK_MEM(k->k[i].md5, want, 16);
}

/* Expected REST key for `user` under `secret`. */
static inline void rest_md5(const char *secret, const char *user, uint8_t out[16])
{
    char pw[32];
    int n = turn_rest_password(secret, strlen(secret), user, strlen(user), pw, sizeof(pw));
    CHECK_INT(n, 28);
    stun_auth_key_md5(user, strlen(user), REALM, strlen(REALM), pw, (size_t)n, out);
}

static inline int has_md5(const creds_keys_t *k, const uint8_t md5[16])
{
    for (int i = 0; i < k->n; i++)
        if (k->k[i].has_md5 && memcmp(k->k[i].md5, md5, 16) == 0)
            return 1;
    return 0;
}

static inline void close_creds(creds_t *c)
{
    creds_close(c);
    run_for(50); /* the loop frees the closed handles */
}

/* Set up logging (TEST_CREDS_LOG=1: debug), the loop and its 10 ms guard timer. */
static inline void creds_fixture_start(void)
{
    log_setup(getenv("TEST_CREDS_LOG") ? LOG_DEBUG : LOG_ERROR, LOG_FORMAT_TEXT, NULL);
    uv_loop_init(&loop);
    uv_timer_init(&loop, &guard);
    uv_timer_start(&guard, on_guard, 10, 10);
}

/* Close the guard and the loop (every creds_t must be closed before); checks nothing is left. */
static inline void creds_fixture_end(void)
{
    uv_close((uv_handle_t *)&guard, NULL);
    uv_run(&loop, UV_RUN_DEFAULT);
    CHECK_INT(uv_loop_close(&loop), 0);
    log_close();
}

#endif
