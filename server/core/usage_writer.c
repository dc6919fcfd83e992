/* usage_writer.c - one worker's writer of the usage ledger (usage_writer.h): the engine's events
 * into a bounded queue, and from the loop (a uv_check, so after every batch of I/O callbacks) into
 * one Redis Stream, pipelined, over a connection of its own (creds_redis.c's connection machinery:
 * AUTH, SELECT, Sentinel, watchdog, backoff).
 *
 * An event leaves the queue when Redis answered all its commands (any answer: an error reply is
 * counted in uturn_usage_events_failed_total and not retried, since it would fail again). When a
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
 *
 * With `redis-statsdb` set, coturn's layout is written too (turndb/schema.stats.redis), so its
 * consumers keep working; K = turn/realm/<realm>/user/<user>/allocation/<id as %018 decimal>:
 *   created    SET K/status "new lifetime=N" EX N, PUBLISH K/status "new lifetime=N"
 *   refreshed  SET K/status "refreshed lifetime=N" EX N, PUBLISH K/status "refreshed lifetime=N"
 *   usage      PUBLISH K/traffic "rcvp=.., rcvb=.., sentp=.., sentb=.." (since the previous one;
 *              every usage-interval, where coturn reports every 2048 packets)
 *   deleted    DEL K/status, PUBLISH K/status "deleted", PUBLISH K/total_traffic "rcvp=.., ..."
 * rcv is what the client sent (to_peer), sent what it was sent (from_peer).
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
    size_t sent;      /* the oldest `sent` queued events have all their commands sent */
    size_t inflight;  /* commands sent and not yet answered */
    int acked;        /* commands of the head event answered so far */
    bool lost;        /* a connection went with commands in flight: wait for all their replies */
    bool head_failed; /* a command of the head event got an error reply */
    creds_redis_cfg_t rcfg;
    creds_stats_t rstats;
    creds_redis_t *redis;
    uv_check_t check;
    bool closing;
    bool rest; /* use-auth-secret: usernames may carry a tag */
    char node[CFG_NODE_ID_MAX + 1];
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
    FIELD("transport", turn_transport_name((enum turn_transport)ev->transport));
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

static int event_ncmds(const usage_writer_t *u, const usage_event_t *ev);

static void on_event(void *env, const usage_event_t *ev)
{
    usage_writer_t *u = env;
    if (event_ncmds(u, ev) == 0)
        return; /* nothing to write (a quiet period with only the statsdb layout on) */
    if (usage_queue_push(&u->q, ev) != 0)
        stats_inc(&u->stats->usage_events_dropped);
}

/* ---- coturn's redis-statsdb layout ---- */

#define KEY_MAX 1100 /* "turn/realm/" realm "/user/" name (<= 512) "/allocation/" id suffix */
#define VAL_MAX 128

/* The commands of one event: the stream's XADD, then coturn's keys and channels. */
typedef struct {
    int argc;
    const char *argv[USAGE_WRITER_ARGS];
    size_t len[USAGE_WRITER_ARGS];
} wcmd_t;

typedef struct {
    wcmd_t cmd[4];
    int n;
    char scratch[USAGE_WRITER_SCRATCH];
    char key[3][KEY_MAX];
    char val[3][VAL_MAX];
    char ex[24];
} wbatch_t;

static bool statsdb_on(const usage_writer_t *u)
{
    return u->cfg->redis_statsdb && *u->cfg->redis_statsdb;
}

static bool stream_on(const usage_writer_t *u)
{
    return u->cfg->usage_stream && *u->cfg->usage_stream;
}

static bool quiet(const usage_counts_t *c)
{
    return c->to_peer_packets == 0 && c->from_peer_packets == 0;
}

/* Commands one event takes (the queue pops an event once all of them are answered). */
static int event_ncmds(const usage_writer_t *u, const usage_event_t *ev)
{
    int n = stream_on(u) ? 1 : 0;
    if (statsdb_on(u))
        /* coturn publishes traffic only when some moved */
        n += ev->kind == USAGE_PERIODIC  ? (quiet(&ev->delta) ? 0 : 1)
             : ev->kind == USAGE_DELETED ? 3
                                         : 2;
    return n;
}

/* coturn's key for `what` ("status", "traffic", "total_traffic") of this allocation. */
static size_t statsdb_key(const usage_writer_t *u, const usage_event_t *ev, const char *what,
                          char *out)
{
    const char *realm = u->cfg->realm ? u->cfg->realm : "";
    int n;
    if (*realm)
        n = snprintf(out, KEY_MAX, "turn/realm/%s/user/%.*s/allocation/%018" PRIu64 "/%s", realm,
                     (int)ev->ulen, ev->user, ev->id, what);
    else
        n = snprintf(out, KEY_MAX, "turn/user/%.*s/allocation/%018" PRIu64 "/%s", (int)ev->ulen,
                     ev->user, ev->id, what);
    return n < 0 ? 0 : (size_t)n >= KEY_MAX ? KEY_MAX - 1 : (size_t)n;
}

static void cmd3(wcmd_t *c, const char *verb, const char *key, size_t klen, const char *val)
{
    c->argc = val ? 3 : 2;
    c->argv[0] = verb;
    c->len[0] = strlen(verb);
    c->argv[1] = key;
    c->len[1] = klen;
    if (val) {
        c->argv[2] = val;
        c->len[2] = strlen(val);
    }
}

/* coturn: received = from the client (relayed to peers), sent = to the client. */
static void traffic_val(const usage_counts_t *c, char *out)
{
    snprintf(out, VAL_MAX, "rcvp=%" PRIu64 ", rcvb=%" PRIu64 ", sentp=%" PRIu64 ", sentb=%" PRIu64,
             c->to_peer_packets, c->to_peer_bytes, c->from_peer_packets, c->from_peer_bytes);
}

static void build(const usage_writer_t *u, const usage_event_t *ev, wbatch_t *b)
{
    b->n = 0;
    if (stream_on(u)) {
        wcmd_t *c = &b->cmd[b->n++];
        c->argc = usage_writer_format(ev, u->cfg->usage_stream, u->maxlen, u->node, u->cfg->realm,
                                      u->rest, c->argv, c->len, b->scratch);
    }
    if (!statsdb_on(u))
        return;
    if (ev->kind == USAGE_CREATED || ev->kind == USAGE_REFRESHED) {
        /* SET with the lifetime as its TTL (a crashed node's keys go by themselves), then the
         * same text on the channel of that name. */
        size_t k = statsdb_key(u, ev, "status", b->key[0]);
        snprintf(b->val[0], VAL_MAX, "%s lifetime=%" PRIu32,
                 ev->kind == USAGE_CREATED ? "new" : "refreshed", ev->lifetime);
        snprintf(b->ex, sizeof(b->ex), "%" PRIu32, ev->lifetime ? ev->lifetime : 1);
        wcmd_t *c = &b->cmd[b->n++];
        cmd3(c, "SET", b->key[0], k, b->val[0]);
        c->argv[3] = "EX";
        c->len[3] = 2;
        c->argv[4] = b->ex;
        c->len[4] = strlen(b->ex);
        c->argc = 5;
        cmd3(&b->cmd[b->n++], "PUBLISH", b->key[0], k, b->val[0]);
    } else if (ev->kind == USAGE_PERIODIC) {
        if (quiet(&ev->delta))
            return;
        size_t k = statsdb_key(u, ev, "traffic", b->key[0]);
        traffic_val(&ev->delta, b->val[0]);
        cmd3(&b->cmd[b->n++], "PUBLISH", b->key[0], k, b->val[0]);
    } else {
        size_t k = statsdb_key(u, ev, "status", b->key[0]);
        cmd3(&b->cmd[b->n++], "DEL", b->key[0], k, NULL);
        cmd3(&b->cmd[b->n++], "PUBLISH", b->key[0], k, "deleted");
        size_t t = statsdb_key(u, ev, "total_traffic", b->key[1]);
        traffic_val(&ev->c, b->val[1]);
        cmd3(&b->cmd[b->n++], "PUBLISH", b->key[1], t, b->val[1]);
    }
}

/* ---- writing ---- */

static void on_reply(void *arg, int result)
{
    usage_writer_t *u = arg;
    if (u->inflight == 0)
        return; /* cannot happen: replies come once per command sent */
    u->inflight--;
    if (result == CREDS_REDIS_CMD_LOST || u->lost) {
        /* Every later reply of this connection is lost too: once they are all in, what was
         * sent goes again from the head of the queue. */
        u->lost = true;
        if (u->inflight == 0) {
            u->lost = false;
            u->sent = 0;
            u->acked = 0;
            u->head_failed = false;
        }
        return;
    }
    if (result == CREDS_REDIS_CMD_ERROR)
        u->head_failed = true;
    const usage_event_t *head = usage_queue_peek(&u->q, 0);
    if (head && ++u->acked >= event_ncmds(u, head)) {
        stats_inc(u->head_failed ? &u->stats->usage_events_failed
                                 : &u->stats->usage_events_written);
        usage_queue_pop(&u->q, 1);
        u->sent--;
        u->acked = 0;
        u->head_failed = false;
    }
}

static void drain(usage_writer_t *u)
{
    while (!u->lost && u->sent < u->q.count && u->inflight < MAX_INFLIGHT) {
        const usage_event_t *ev = usage_queue_peek(&u->q, u->sent);
        wbatch_t b;
        build(u, ev, &b);
        for (int i = 0; i < b.n; i++) {
            if (creds_redis_command(u->redis, b.cmd[i].argc, b.cmd[i].argv, b.cmd[i].len, on_reply,
                                    u) != 0) {
                /* Not connected: the events wait (up to usage-queue-max). Half an event sent:
                 * its commands in flight come back lost, and it goes again whole. */
                if (i > 0)
                    u->lost = true;
                return;
            }
            u->inflight++;
        }
        u->sent++;
    }
}

static void on_check(uv_check_t *c)
{
    usage_writer_t *u = c->data;
    if (!u->closing && u->q.count > u->sent)
        drain(u);
}

int usage_writer_new(uv_loop_t *loop, const cfg_t *cfg, stats_t *stats, dispatch_usage_ops_t *ops,
                     usage_writer_t **out, char *err, size_t errlen)
{
    *out = NULL;
    memset(ops, 0, sizeof(*ops));
    const char *db =
        cfg->redis_statsdb && *cfg->redis_statsdb ? cfg->redis_statsdb : cfg->redis_userdb;
    bool stream = cfg->usage_stream && *cfg->usage_stream;
    bool statsdb = cfg->redis_statsdb && *cfg->redis_statsdb;
    if (!(stream || statsdb) || !db || !*db)
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
    cfg_node_id(cfg, u->node);
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
