/* admin_env.c - see admin_env.h. The server is configured from a command line we keep (server_t
 * holds argv for reloads, so POST /api/v1/reload re-reads the same settings and swaps nothing), and
 * started as uturnd's main.c starts it: server_start, then admin_start. server_run never runs
 * here, so the server takes no signals and the fuzzer keeps its own handlers (SIGINT, SIGTERM).
 */
#include "admin_env.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <microhttpd.h>

#include "admin_int.h"
#include "free_port.h"
#include "log.h"
#include "redis_server.h"
#include "server.h"
#include "stun_auth.h"
#include "stun_build.h"
#include "stun_msg.h"
#include "turn_auth.h"
#include "util.h"

#define REALM "fuzz.example"
#define USER "fuzz"
#define PASS "fuzzpass"
#define REST_SECRET "fuzz-rest-secret-0123456789"
#define REFRESH_MS (60 * 1000) /* permissions last 300 s, channels 600 s */
#define TURN_WAIT_MS 2000

static server_t srv;
static struct admin *admin; /* what admin_start gave */
static cfg_t cfg;
static bool started;
static char port_arg[32], admin_arg[48], redis_arg[80];
/* The command line (server_t keeps it for reloads); copied to args[] at start. */
static const char *const arg_text[] = {
    "fuzz_admin",
    "--listening-ip=127.0.0.1",
    port_arg,
    "--no-tcp",
    "--no-tls",
    "--no-dtls",
    "--relay-threads=1",
    "--realm=" REALM,
    "--user=" USER ":" PASS,
    "--use-auth-secret",
    "--static-auth-secret=" REST_SECRET,
    "--allow-loopback-peers",
    admin_arg,
    "--admin-token=" ADMIN_ENV_TOKEN,
    "--admin-token=ro:" ADMIN_ENV_RO_TOKEN,
    "--log-level=error",
    redis_arg,
};
#define NARGS ((int)ARRAY_SIZE(arg_text))
static char *args[NARGS];

/* Redis: users and secrets of our realm, enough users for SCAN to page, a revoked user, a realm
 * with glob characters in its name, and keys of the wrong type. Restored after every input. */
#define U(name) "turn/realm/" REALM "/user/" name "/key"
#define MD5HEX "0123456789abcdef0123456789abcdef"
static const char *const *const redis_init[] = {
    (const char *const[]){"SET", U("alice"), MD5HEX, NULL},
    (const char *const[]){"SET", U("alice") "-sha256", MD5HEX MD5HEX, NULL},
    (const char *const[]){"SET", U("bob"), MD5HEX, NULL},
    (const char *const[]){"SET", "turn/realm/" REALM "/revoked/bob", "1", NULL},
    (const char *const[]){"SET", U("\xc3\xa9l\xc3\xa8ve"), MD5HEX, NULL},
    (const char *const[]){"SET", U("user01"), MD5HEX, NULL},
    (const char *const[]){"SET", U("user02"), MD5HEX, NULL},
    (const char *const[]){"SET", U("user03"), MD5HEX, NULL},
    (const char *const[]){"SET", U("user04"), MD5HEX, NULL},
    (const char *const[]){"SET", U("user05"), MD5HEX, NULL},
    (const char *const[]){"SET", U("user06"), MD5HEX, NULL},
    (const char *const[]){"SET", U("user07"), MD5HEX, NULL},
    (const char *const[]){"SET", U("user08"), MD5HEX, NULL},
    (const char *const[]){"SET", U("user09"), MD5HEX, NULL},
    (const char *const[]){"SET", U("user10"), MD5HEX, NULL},
    (const char *const[]){"SET", "turn/realm/we[ir]d*realm/user/x/key", MD5HEX, NULL},
    (const char *const[]){"SADD", "turn/realm/" REALM "/secret", "redis-secret-0123456789abcdef",
                          "another-secret-0123456789", NULL},
    (const char *const[]){"SET", "turn/realm/wrongtype.example/secret", "not a set", NULL},
    (const char *const[]){"SADD", "turn/realm/wrongtype.example/user/x/key", "a set", NULL},
    NULL,
};
static pid_t redis_pid = -1;
static redisContext *prov;         /* our own connection: database 2, where the admin works */
static admin_redis_t *admin_redis; /* the admin's Redis client, while admin_env_redis hides it */

static int64_t last_refresh_ms;
static char alloc_id[17] = "0000000000000000";

int64_t admin_env_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- TURN clients of our own (RFC 8656 §7-§12, long-term credentials RFC 8489 §9.2) ---- */

/* Two allocations, so listings sort and page: the static user's, and one of a TURN REST user
 * whose name is not UTF-8 (the admin shows such names with U+FFFD). */
typedef struct {
    int fd;
    char user[64];
    size_t ulen;
    uint8_t key[16];
    char nonce[128];
    size_t nonce_len;
} turn_client_t;

static turn_client_t clients[2];
static uint32_t tid_counter;

typedef struct {
    uint16_t method;
    const struct sockaddr *peer;
    uint16_t channel;
    uint32_t lifetime;
} turn_req_t;

static int turn_send(turn_client_t *c, const turn_req_t *q, uint8_t tid[12])
{
    uint8_t buf[512];
    stun_build_t b;
    tid_counter++;
    memset(tid, 0x5a, 12);
    memcpy(tid, &tid_counter, sizeof(tid_counter));
    stun_build_init(&b, buf, sizeof(buf), stun_type(q->method, STUN_CLASS_REQUEST), tid);
    if (q->method == STUN_METHOD_ALLOCATE)
        stun_build_byte_attr(&b, STUN_ATTR_REQUESTED_TRANSPORT, 17);
    if (q->lifetime)
        stun_build_u32(&b, STUN_ATTR_LIFETIME, q->lifetime);
    if (q->channel)
        stun_build_channel(&b, q->channel);
    if (q->peer)
        stun_build_xor_addr(&b, STUN_ATTR_XOR_PEER_ADDRESS, q->peer);
    if (c->nonce_len) {
        stun_build_attr(&b, STUN_ATTR_USERNAME, c->user, c->ulen);
        stun_build_attr(&b, STUN_ATTR_REALM, REALM, strlen(REALM));
        stun_build_attr(&b, STUN_ATTR_NONCE, c->nonce, c->nonce_len);
        stun_build_integrity(&b, c->key, sizeof(c->key));
    }
    int n = stun_build_finish(&b);
    return n > 0 && send(c->fd, buf, (size_t)n, 0) == n ? 0 : -1;
}

/* The answer to `tid`: 0 success, an error code, or -1 (no answer). Learns the nonce. */
static int turn_answer(turn_client_t *c, const uint8_t tid[12])
{
    int64_t deadline = admin_env_now_ms() + TURN_WAIT_MS;
    for (;;) {
        uint8_t buf[1500];
        struct pollfd p = {.fd = c->fd, .events = POLLIN};
        int64_t left = deadline - admin_env_now_ms();
        if (left <= 0 || poll(&p, 1, (int)left) <= 0)
            return -1;
        ssize_t n = recv(c->fd, buf, sizeof(buf), 0);
        stun_msg_t m;
        if (n < 20 || stun_msg_decode(buf, (size_t)n, &m) != 0 || memcmp(buf + 8, tid, 12) != 0)
            continue;
        const stun_attr_t *na = stun_msg_find(&m, STUN_ATTR_NONCE);
        if (na && na->len < sizeof(c->nonce)) {
            memcpy(c->nonce, stun_attr_value(&m, na), na->len);
            c->nonce_len = na->len;
        }
        if (stun_type_class(m.type) == STUN_CLASS_SUCCESS)
            return 0;
        const stun_attr_t *ea = stun_msg_find(&m, STUN_ATTR_ERROR_CODE);
        int code = 0;
        const uint8_t *reason;
        size_t rlen;
        if (!ea || stun_attr_get_error(&m, ea, &code, &reason, &rlen) != 0)
            return 400;
        return code;
    }
}

/* One request, again after a 401 or 438 that brought a (new) nonce. */
static int turn_call(turn_client_t *c, const turn_req_t *q)
{
    int rc = -1;
    for (int attempt = 0; attempt < 3; attempt++) {
        uint8_t tid[12];
        if (turn_send(c, q, tid) != 0)
            return -1;
        rc = turn_answer(c, tid);
        if (rc != 401 && rc != 438)
            break;
    }
    return rc;
}

static void turn_open(turn_client_t *c, const char *user, size_t ulen, const char *pass)
{
    struct sockaddr_in srv_addr;
    memset(&srv_addr, 0, sizeof(srv_addr));
    srv_addr.sin_family = AF_INET;
    srv_addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    srv_addr.sin_port = htons((uint16_t)cfg.listening_port);
    c->fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (c->fd < 0 || connect(c->fd, (struct sockaddr *)&srv_addr, sizeof(srv_addr)) != 0 ||
        ulen >= sizeof(c->user))
        abort();
    memcpy(c->user, user, ulen);
    c->ulen = ulen;
    stun_auth_key_md5(user, ulen, REALM, strlen(REALM), pass, strlen(pass), c->key);
}

static void turn_open_all(void)
{
    /* Expires in 2100; 0xC3 0x28 is not UTF-8. */
    static const char rest_user[] = "4102444800:\xc3\x28"
                                    "fuzz";
    char rest_pass[64];
    turn_open(&clients[0], USER, strlen(USER), PASS);
    if (turn_rest_password(REST_SECRET, strlen(REST_SECRET), rest_user, strlen(rest_user),
                           rest_pass, sizeof(rest_pass)) < 0)
        abort();
    turn_open(&clients[1], rest_user, strlen(rest_user), rest_pass);
}

/* Allocate, or Refresh what exists (437: this 5-tuple has one), and install or refresh a
 * permission and a channel. */
static void turn_setup(turn_client_t *c)
{
    struct sockaddr_in peer;
    memset(&peer, 0, sizeof(peer));
    peer.sin_family = AF_INET;
    peer.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    peer.sin_port = htons(9); /* discard: nothing is sent to it */
    turn_req_t q = {.method = STUN_METHOD_ALLOCATE, .lifetime = 3600};
    int rc = turn_call(c, &q);
    if (rc == 437) {
        q.method = STUN_METHOD_REFRESH;
        rc = turn_call(c, &q);
    }
    turn_req_t perm = {.method = STUN_METHOD_CREATE_PERMISSION, .peer = (struct sockaddr *)&peer};
    turn_req_t chan = {
        .method = STUN_METHOD_CHANNEL_BIND, .peer = (struct sockaddr *)&peer, .channel = 0x4000};
    if (rc == 0)
        rc = turn_call(c, &perm);
    if (rc == 0)
        rc = turn_call(c, &chan);
    static bool said;
    if (rc != 0 && !said) {
        fprintf(stderr, "admin_env: TURN setup for a test allocation failed (%d)\n", rc);
        said = true;
    }
}

/* ---- talking to the admin ---- */

int admin_env_connect(void)
{
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0)
        abort();
    if (admin_add_connection(admin, sv[1]) != 0) {
        fprintf(stderr, "admin_env: admin_add_connection failed\n");
        abort();
    }
    fcntl(sv[0], F_SETFL, fcntl(sv[0], F_GETFL) | O_NONBLOCK);
    return sv[0];
}

void admin_env_wait_idle(int64_t deadline_ms)
{
    for (int spins = 0;; spins++) {
        const union MHD_DaemonInfo *i =
            MHD_get_daemon_info(admin->mhd, MHD_DAEMON_INFO_CURRENT_CONNECTIONS);
        if (!i || i->num_connections == 0)
            return;
        if (admin_env_now_ms() > deadline_ms) {
            fprintf(stderr, "admin_env: the admin still holds %u connections\n",
                    i->num_connections);
            abort();
        }
        if (spins < 1000)
            sched_yield();
        else
            poll(NULL, 0, 1);
    }
}

/* GET /api/v1/allocations and keep the first id. */
static void learn_alloc_id(void)
{
    static const char req[] = "GET /api/v1/allocations HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                              "Authorization: Bearer " ADMIN_ENV_RO_TOKEN "\r\n\r\n";
    int fd = admin_env_connect();
    char buf[65536];
    size_t len = 0;
    int64_t deadline = admin_env_now_ms() + TURN_WAIT_MS * 2;
    if (send(fd, req, sizeof(req) - 1, MSG_NOSIGNAL) != (ssize_t)sizeof(req) - 1)
        abort();
    shutdown(fd, SHUT_WR);
    for (;;) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        int64_t left = deadline - admin_env_now_ms();
        if (left <= 0 || poll(&p, 1, (int)left) <= 0)
            abort();
        ssize_t n = recv(fd, buf + len, sizeof(buf) - 1 - len, 0);
        if (n <= 0)
            break;
        len += (size_t)n;
    }
    close(fd);
    admin_env_wait_idle(deadline);
    buf[len] = 0;
    const char *body = strstr(buf, "\r\n\r\n");
    json_t *j = body ? json_loads(body + 4, 0, NULL) : NULL;
    const char *id = json_string_value(
        json_object_get(json_array_get(json_object_get(j, "allocations"), 0), "id"));
    snprintf(alloc_id, sizeof(alloc_id), "%s", id && strlen(id) == 16 ? id : "0000000000000000");
    json_decref(j);
}

const char *admin_env_alloc_id(void) { return alloc_id; }

/* ---- Redis ---- */

/* Database 2 back to redis_init: FLUSHDB and the commands, pipelined (one round trip). */
static void redis_load(void)
{
    int n = 0;
    redisAppendCommand(prov, "FLUSHDB");
    for (; redis_init[n]; n++) {
        const char *argv[8];
        size_t len[8];
        int argc = 0;
        for (; redis_init[n][argc] && argc < 8; argc++) {
            argv[argc] = redis_init[n][argc];
            len[argc] = strlen(argv[argc]);
        }
        redisAppendCommandArgv(prov, argc, argv, len);
    }
    for (int i = 0; i <= n; i++) {
        redisReply *rep = NULL;
        if (redisGetReply(prov, (void **)&rep) != REDIS_OK || rep->type == REDIS_REPLY_ERROR) {
            fprintf(stderr, "admin_env: loading Redis failed: %s\n",
                    rep && rep->str ? rep->str : prov->errstr);
            abort();
        }
        freeReplyObject(rep);
    }
}

/* A real redis-server on `port`, with the ACL user the admin logs in as (the URL in redis_arg),
 * so AUTH with a user and SELECT run too. */
static void redis_start(int port)
{
    static const char *const acl[] = {"ACL", "SETUSER", USER,    "on", ">" PASS,
                                      "~*",  "&*",      "+@all", NULL};
    static const char *const sel[] = {"SELECT", "2", NULL};
    if ((redis_pid = redis_server_start(port, NULL)) < 0 || !(prov = redis_server_connect(port)) ||
        !redis_server_okv(prov, acl) || !redis_server_okv(prov, sel))
        abort();
    redis_load();
}

/* ---- start, per input, stop ---- */

static void env_close(void)
{
    admin_stop(admin); /* first, as in main.c: a request may be waiting on a worker */
    server_close(&srv);
    if (prov)
        redisFree(prov);
    redis_server_kill(&redis_pid);
    cfg_free(&cfg);
    for (int i = 0; i < NARGS; i++)
        free(args[i]);
    for (int i = 0; i < 2; i++)
        close(clients[i].fd);
}

static void start(void)
{
    char err[512];
    cfg_cli_t cli;
    snprintf(port_arg, sizeof(port_arg), "--listening-port=%d", test_free_port());
    snprintf(admin_arg, sizeof(admin_arg), "--admin-listen=127.0.0.1:%d", test_free_port());
    int redis_port = test_free_port();
    redis_start(redis_port);
    /* With a user, a password and a database, so AUTH and SELECT run too. */
    snprintf(redis_arg, sizeof(redis_arg), "--redis-userdb=redis://fuzz:fuzzpass@127.0.0.1:%d/2",
             redis_port);
    for (int i = 0; i < NARGS; i++)
        if (!(args[i] = strdup(arg_text[i])))
            abort();
    log_setup(LOG_ERROR, LOG_FORMAT_TEXT, NULL);
    if (cfg_load(&cfg, NARGS, args, &cli, err, sizeof(err)) != 0) {
        fprintf(stderr, "admin_env: %s\n", err);
        abort();
    }
    if (server_start(&srv, &cfg, admin_check, NARGS, args, err, sizeof(err)) != 0 ||
        admin_start(&srv, &admin, err, sizeof(err)) != 0) {
        fprintf(stderr, "admin_env: %s\n", err);
        abort();
    }
    atexit(env_close);
    turn_open_all();
}

void admin_env_setup(void)
{
    if (!started) {
        start();
        started = true;
    }
    stats_snapshot_t st;
    server_stats(&srv, &st);
    int64_t now = admin_env_now_ms();
    if (st.allocations < 2 || now - last_refresh_ms > REFRESH_MS) {
        turn_setup(&clients[0]);
        turn_setup(&clients[1]);
        learn_alloc_id();
        last_refresh_ms = now;
    }
}

void admin_env_redis(bool on)
{
    if (!on && admin->redis) {
        admin_redis = admin->redis;
        admin->redis = NULL;
    } else if (on && admin_redis) {
        admin->redis = admin_redis;
        admin_redis = NULL;
    }
}

void admin_env_reset(void)
{
    atomic_store(&srv.shared.turn.draining, 0);
    admin_env_redis(true);
    redis_load();
}

void admin_env_redis_drop(void)
{
    static const char *const kill_fuzz[] = {"CLIENT", "KILL", "USER", USER, NULL};
    if (!redis_server_okv(prov, kill_fuzz))
        abort();
}
