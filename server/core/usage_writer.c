/* usage_writer.c - one worker's writer of the usage ledger (usage_writer.h): the engine's events
 * into a bounded queue, and from the loop (a uv_check, so after every batch of I/O callbacks) into
 * one Redis Stream, pipelined, over a connection of its own (creds_redis.c's connection machinery:
 * AUTH, SELECT, Sentinel, watchdog, backoff).
 *
 * An event leaves the queue when Redis answered its XADD (any answer: an error reply is counted
 * in uturn_usage_events_failed_total and not retried, since it would fail again). When a
 * connection goes with XADDs unanswered, hiredis answers them NULL in order, after every real
 * answer: they stay at the head of the queue and go again on the next connection (at least once;
 * a consumer that must not count twice keys records on node, alloc, event and ts).
 *
 * A stream entry (field, value), all values text:
 *   node       node-id (cfg "node-id" when the key exists, else the host name)
 *   event      created | refreshed | usage | deleted
 *   reason     deleted | expired | killed (on deleted only; empty otherwise)
 *   alloc      the allocation id, 16 hex digits (the worker in the top 16 bits)
 *   user       the username (REST: "expiry:userid[:tag]")
 *   tag        with use-auth-secret, the third field of a REST username "expiry:userid:tag"
 *              (everything after the second ':'); empty otherwise
 *   realm      the realm
 *   transport  the client's transport: udp | tcp | tls | dtls
 *   client     the client's address IP:PORT ([v6]:PORT)
 *   relayed    relayed addresses as announced, comma-separated
 *   lifetime   seconds left (created, refreshed, usage); 0 on deleted
 *   created    UNIX ms the allocation was made
 *   ts         UNIX ms of the event
 *   to_peer_bytes, to_peer_packets       client -> peer, relayed, since created (payload bytes)
 *   from_peer_bytes, from_peer_packets   peer -> client, relayed, since created (payload bytes)
 */
#include "usage_writer.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "conn.h"
#include "creds.h"
#include "creds_redis.h"
#include "log.h"

#define MAX_INFLIGHT 512 /* XADDs sent and not yet answered, per worker */

struct usage_writer {
    uv_loop_t *loop;
    const cfg_t *cfg;
    stats_t *stats;
    usage_queue_t q;
    size_t inflight; /* the oldest `inflight` queued events are sent, not yet answered */
    creds_redis_cfg_t rcfg;
    creds_stats_t rstats;
    creds_redis_t *redis;
    uv_check_t check;
    bool closing;
    bool rest; /* use-auth-secret: usernames may carry a tag */
    char node[256];
    char maxlen[24];
};

static const char *kind_name(int k)
{
    switch (k) {
    case USAGE_CREATED:
        return "created";
    case USAGE_REFRESHED:
        return "refreshed";
    case USAGE_PERIODIC:
        return "usage";
    default:
        return "deleted";
    }
}

static const char *reason_name(int r)
{
    switch (r) {
    case USAGE_REASON_DELETED:
        return "deleted";
    case USAGE_REASON_EXPIRED:
        return "expired";
    case USAGE_REASON_KILLED:
        return "killed";
    default:
        return "";
    }
}

static const char *transport_name(int t)
{
    switch (t) {
    case TURN_TCP:
        return "tcp";
    case TURN_TLS:
        return "tls";
    case TURN_DTLS:
        return "dtls";
    default:
        return "udp";
    }
}

/* The tag of a REST username "expiry:userid:tag": after the second ':' when the first field is
 * the expiry's digits (the HMAC covers the whole name, so the tag cannot be forged). */
static void rest_tag(const char *u, size_t n, const char **tag, size_t *tlen)
{
    *tag = "";
    *tlen = 0;
    size_t i = 0;
    while (i < n && u[i] >= '0' && u[i] <= '9')
        i++;
    if (i == 0 || i >= n || u[i] != ':')
        return;
    const char *second = memchr(u + i + 1, ':', n - i - 1);
    if (!second)
        return;
    *tag = second + 1;
    *tlen = n - (size_t)(second + 1 - u);
}

int usage_writer_format(const usage_event_t *ev, const char *key, const char *maxlen,
                        const char *node, const char *realm, bool rest, const char **argv,
                        size_t *len, char *scratch)
{
    int n = 0;
    char *p = scratch, *end = scratch + USAGE_WRITER_SCRATCH;
#define PUT(s, l)                                                                                  \
    do {                                                                                           \
        argv[n] = (s);                                                                             \
        len[n] = (l);                                                                              \
        n++;                                                                                       \
    } while (0)
#define STR(s) PUT((s), strlen(s))
#define FIELD(name, s)                                                                             \
    do {                                                                                           \
        STR(name);                                                                                 \
        STR(s);                                                                                    \
    } while (0)
    /* A number or an address formatted into scratch, then named. */
#define FMT(name, ...)                                                                             \
    do {                                                                                           \
        int w_ = snprintf(p, (size_t)(end - p), __VA_ARGS__);                                      \
        if (w_ < 0 || w_ >= end - p)                                                               \
            w_ = 0;                                                                                \
        STR(name);                                                                                 \
        PUT(p, (size_t)w_);                                                                        \
        p += w_ + 1;                                                                               \
    } while (0)
    STR("XADD");
    STR(key);
    STR("MAXLEN");
    STR("~");
    STR(maxlen);
    STR("*");
    FIELD("node", node);
    FIELD("event", kind_name(ev->kind));
    FIELD("reason", reason_name(ev->reason));
    FMT("alloc", "%016" PRIx64, ev->id);
    STR("user");
    PUT(ev->user, ev->ulen);
    const char *tag = "";
    size_t tlen = 0;
    if (rest)
        rest_tag(ev->user, ev->ulen, &tag, &tlen);
    STR("tag");
    PUT(tag, tlen);
    FIELD("realm", realm ? realm : "");
    FIELD("transport", transport_name(ev->transport));
    char a[SA_STRLEN];
    FMT("client", "%s", ev->client.sa.sa_family ? sa_format(&ev->client.sa, a, sizeof(a)) : "");
    char b[SA_STRLEN];
    if (ev->nrelay >= 2)
        FMT("relayed", "%s,%s", sa_format(&ev->relay[0].sa, a, sizeof(a)),
            sa_format(&ev->relay[1].sa, b, sizeof(b)));
    else
        FMT("relayed", "%s", ev->nrelay ? sa_format(&ev->relay[0].sa, a, sizeof(a)) : "");
    FMT("lifetime", "%" PRIu32, ev->lifetime);
    FMT("created", "%" PRId64, ev->created_ms);
    FMT("ts", "%" PRId64, ev->ts_ms);
    FMT("to_peer_bytes", "%" PRIu64, ev->c.to_peer_bytes);
    FMT("to_peer_packets", "%" PRIu64, ev->c.to_peer_packets);
    FMT("from_peer_bytes", "%" PRIu64, ev->c.from_peer_bytes);
    FMT("from_peer_packets", "%" PRIu64, ev->c.from_peer_packets);
#undef PUT
#undef STR
#undef FIELD
#undef FMT
    return n;
}

static void on_event(void *env, const usage_event_t *ev)
{
    usage_writer_t *u = env;
    if (usage_queue_push(&u->q, ev) != 0)
        stats_inc(&u->stats->usage_events_dropped);
}

static void on_reply(void *arg, int result)
{
    usage_writer_t *u = arg;
    if (u->inflight == 0)
        return; /* cannot happen: replies come once per command sent */
    u->inflight--;
    if (result == CREDS_REDIS_CMD_LOST)
        return; /* stays at the head: every later reply of this connection is lost too */
    usage_queue_pop(&u->q, 1);
    if (result == CREDS_REDIS_CMD_OK)
        stats_inc(&u->stats->usage_events_written);
    else
        stats_inc(&u->stats->usage_events_failed);
}

static void drain(usage_writer_t *u)
{
    while (u->inflight < u->q.count && u->inflight < MAX_INFLIGHT) {
        const usage_event_t *ev = usage_queue_peek(&u->q, u->inflight);
        const char *argv[USAGE_WRITER_ARGS];
        size_t len[USAGE_WRITER_ARGS];
        char scratch[USAGE_WRITER_SCRATCH];
        int argc = usage_writer_format(ev, u->cfg->usage_stream, u->maxlen, u->node, u->cfg->realm,
                                       u->rest, argv, len, scratch);
        if (creds_redis_command(u->redis, argc, argv, len, on_reply, u) != 0)
            return; /* not connected: the events wait (up to usage-queue-max) */
        u->inflight++;
    }
}

static void on_check(uv_check_t *c)
{
    usage_writer_t *u = c->data;
    if (!u->closing && u->q.count > u->inflight)
        drain(u);
}

/* The node's name: the fleet's `node-id` key when the table has one and it is set, else the
 * host name. */
static void node_name(const cfg_t *cfg, char *out, size_t cap)
{
    const cfg_entry_t *e = cfg_table_find("node-id");
    if (e && e->type == CFG_STR) {
        const char *v = *(char *const *)(const void *)((const char *)cfg + e->offset);
        if (v && *v) {
            snprintf(out, cap, "%s", v);
            return;
        }
    }
    if (gethostname(out, cap) != 0)
        snprintf(out, cap, "uturn");
    out[cap - 1] = '\0';
}

int usage_writer_new(uv_loop_t *loop, const cfg_t *cfg, stats_t *stats, dispatch_usage_ops_t *ops,
                     usage_writer_t **out, char *err, size_t errlen)
{
    *out = NULL;
    memset(ops, 0, sizeof(*ops));
    const char *db =
        cfg->redis_statsdb && *cfg->redis_statsdb ? cfg->redis_statsdb : cfg->redis_userdb;
    if (!cfg->usage_stream || !*cfg->usage_stream || !db || !*db)
        return 0;
    usage_writer_t *u = calloc(1, sizeof(*u));
    if (!u || usage_queue_init(&u->q, (size_t)cfg->usage_queue_max) != 0) {
        free(u);
        snprintf(err, errlen, "usage ledger: out of memory");
        return -ENOMEM;
    }
    u->loop = loop;
    u->cfg = cfg;
    u->stats = stats;
    u->rest = cfg->use_auth_secret;
    node_name(cfg, u->node, sizeof(u->node));
    snprintf(u->maxlen, sizeof(u->maxlen), "%ld", cfg->usage_stream_maxlen);
    char perr[256];
    if (creds_redis_cfg_parse(db, &u->rcfg, perr, sizeof(perr)) != 0) {
        snprintf(err, errlen, "%s: %s",
                 cfg->redis_statsdb && *cfg->redis_statsdb ? "redis-statsdb" : "redis-userdb",
                 perr);
        usage_queue_free(&u->q);
        free(u);
        return -EINVAL;
    }
    u->rstats.redis_state = -1;
    int rc = creds_redis_new(loop, &u->rcfg, &u->rstats, &u->redis);
    if (rc != 0) {
        snprintf(err, errlen, "usage ledger: %s", strerror(-rc));
        creds_redis_cfg_free(&u->rcfg);
        usage_queue_free(&u->q);
        free(u);
        return rc;
    }
    uv_check_init(loop, &u->check);
    u->check.data = u;
    uv_check_start(&u->check, on_check);
    uv_unref((uv_handle_t *)&u->check);
    ops->event = on_event;
    ops->env = u;
    *out = u;
    return 0;
}

static void on_closed(uv_handle_t *h)
{
    usage_writer_t *u = h->data;
    creds_redis_cfg_free(&u->rcfg);
    usage_queue_free(&u->q);
    free(u);
}

void usage_writer_close(usage_writer_t *u)
{
    if (!u || u->closing)
        return;
    u->closing = true;
    creds_redis_close(u->redis);
    u->redis = NULL;
    uv_close((uv_handle_t *)&u->check, on_closed);
}
