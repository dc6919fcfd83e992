/* admin_allocs.c - allocations: list, show, terminate; and ending a user's allocations when the
 * user is deleted or revoked.
 *
 * Every look at an allocation goes through server/alloc_view.h: the owning worker copies what the
 * answer needs, and this file only formats the copies (it never sees alloc_t or worker_t).
 * Allocation ids are 16 hex digits, the owning worker's number in the top 16 bits, so a request
 * about one allocation goes to one worker. Listings run newest first (ids descending) and page
 * with `cursor` = the last id seen: each worker returns at most `limit` records below the cursor,
 * so the memory a listing takes is bounded by limit x workers. Times are given both as ISO 8601
 * UTC and as UNIX seconds.
 */
#include "admin_int.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fleet.h"
#include "sockaddr_util.h"

#define LIST_MAX 1000
#define LIST_DEFAULT 100

void admin_call_error(admin_req_t *r, int err)
{
    if (err == -ETIMEDOUT)
        admin_reply_error(r, 503, "workers_busy", "a worker did not answer within %d ms",
                          ADMIN_WORKER_WAIT_MS);
    else if (err == -ESHUTDOWN)
        admin_reply_error(r, 503, "shutting_down", "uturnd is stopping");
    else
        admin_reply_error(r, 500, "internal", "out of memory");
}

static json_t *addr_json(const struct sockaddr_storage *a)
{
    char buf[SA_STRLEN];
    if (a->ss_family != AF_INET && a->ss_family != AF_INET6)
        return json_null();
    return json_string(sa_format((const struct sockaddr *)a, buf, sizeof(buf)));
}

/* A name as JSON text: bytes that are not UTF-8 become U+FFFD. */
static json_t *name_json(const char *s, size_t n)
{
    json_t *j = json_stringn(s, n);
    if (j)
        return j;
    char *t = malloc(n * 3 + 1);
    size_t o = 0;
    if (!t)
        return json_null();
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c < 0x80) {
            t[o++] = (char)c;
        } else {
            t[o++] = (char)0xEF;
            t[o++] = (char)0xBF;
            t[o++] = (char)0xBD;
        }
    }
    j = json_stringn(t, o);
    free(t);
    return j ? j : json_null();
}

static void put_time(json_t *o, const char *key, int64_t unix_ms)
{
    char iso[40], k[48];
    admin_iso8601(unix_ms, iso, sizeof(iso));
    json_object_set_new(o, key, json_string(iso));
    snprintf(k, sizeof(k), "%s_unix", key);
    json_object_set_new(o, k, json_integer(unix_ms / 1000));
}

static json_t *view_json(const admin_t *adm, const alloc_view_t *r)
{
    char id[20];
    snprintf(id, sizeof(id), "%016" PRIx64, r->id);
    json_t *o = json_object();
    json_t *relayed = json_array();
    for (int i = 0; i < r->nrelay && i < 2; i++)
        json_array_append_new(relayed, json_pack("{s:o,s:o}", "address", addr_json(&r->relay[i]),
                                                 "announced", addr_json(&r->announced[i])));
    json_object_set_new(o, "id", json_string(id));
    json_object_set_new(o, "worker", json_integer((json_int_t)r->worker));
    json_object_set_new(o, "transport", json_string(r->transport));
    json_object_set_new(o, "client", addr_json(&r->client));
    json_object_set_new(o, "server", addr_json(&r->server));
    json_object_set_new(o, "relayed", relayed);
    json_object_set_new(o, "username", name_json(r->user, r->ulen));
    json_object_set_new(o, "realm", json_string(adm->s->cfg->realm ? adm->s->cfg->realm : ""));
    put_time(o, "created", r->created_ms);
    put_time(o, "expires", r->expires_ms);
    json_object_set_new(o, "permissions", json_integer(r->nperms));
    json_object_set_new(o, "channels", json_integer(r->nchans));
    /* The traffic relayed so far (turn/usage.h names the directions from the client's side). */
    json_object_set_new(o, "client_to_peer",
                        json_pack("{s:I,s:I}", "bytes", (json_int_t)r->traffic.to_peer_bytes,
                                  "packets", (json_int_t)r->traffic.to_peer_packets));
    json_object_set_new(o, "peer_to_client",
                        json_pack("{s:I,s:I}", "bytes", (json_int_t)r->traffic.from_peer_bytes,
                                  "packets", (json_int_t)r->traffic.from_peer_packets));
    json_object_set_new(o, "to_peer_bytes", json_integer((json_int_t)r->traffic.to_peer_bytes));
    json_object_set_new(o, "to_peer_packets", json_integer((json_int_t)r->traffic.to_peer_packets));
    json_object_set_new(o, "from_peer_bytes", json_integer((json_int_t)r->traffic.from_peer_bytes));
    json_object_set_new(o, "from_peer_packets",
                        json_integer((json_int_t)r->traffic.from_peer_packets));
    /* The traffic above includes what the kernel path relayed (kernel-offload); this says
     * whether it carries some of this allocation's. */
    json_object_set_new(o, "kernel", json_boolean(r->kernel));
    return o;
}

/* "0001000000000002": 1 to 16 hex digits. */
static int parse_id(const char *s, size_t n, uint64_t *id)
{
    uint64_t v = 0;
    if (n == 0 || n > 16)
        return -1;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        int d = c >= '0' && c <= '9'   ? c - '0'
                : c >= 'a' && c <= 'f' ? c - 'a' + 10
                : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                       : -1;
        if (d < 0)
            return -1;
        v = (v << 4) | (uint64_t)d;
    }
    *id = v;
    return 0;
}

/* One page of a listing: the first `limit` views (newest first) as JSON. */
typedef struct {
    const admin_t *adm;
    json_t *list;
    size_t limit, seen;
    uint64_t last_shown;
} page_t;

static void page_add(const alloc_view_t *v, void *arg)
{
    page_t *p = arg;
    if (p->seen++ >= p->limit)
        return;
    json_array_append_new(p->list, view_json(p->adm, v));
    p->last_shown = v->id;
}

void admin_h_allocs_list(admin_req_t *r)
{
    admin_t *adm = r->a;
    alloc_filter_t f;
    char user[ALLOC_VIEW_USER_MAX + 1], cursor[40], realm[ADMIN_REALM_MAX + 2];
    bool bad = false;
    long long limit;
    memset(&f, 0, sizeof(f));
    if (admin_query_int(r, "limit", LIST_DEFAULT, 1, LIST_MAX, &limit) != 0)
        return;
    f.limit = (size_t)limit;
    const char *u = admin_query(r, "user", user, sizeof(user), &bad);
    if (bad) {
        admin_reply_error(r, 400, "bad_parameter", "'user' is too long or badly escaped");
        return;
    }
    if (u) {
        f.by_user = true;
        f.user = u;
        f.ulen = strlen(u);
    }
    const char *c = admin_query(r, "cursor", cursor, sizeof(cursor), &bad);
    if (bad || (c && *c && parse_id(c, strlen(c), &f.before) != 0)) {
        admin_reply_error(r, 400, "bad_parameter", "'cursor' must be an allocation id (hex)");
        return;
    }
    const char *rl = admin_query(r, "realm", realm, sizeof(realm), &bad);
    if (bad) {
        admin_reply_error(r, 400, "bad_parameter", "'realm' is too long or badly escaped");
        return;
    }
    const char *ours = adm->s->cfg->realm ? adm->s->cfg->realm : "";
    if (rl && strcmp(rl, ours) != 0) {
        /* One realm per node: another realm has no allocations here. */
        admin_reply_json(r, 200,
                         json_pack("{s:[],s:i,s:n}", "allocations", "total", 0, "next_cursor"));
        return;
    }
    page_t p = {adm, json_array(), f.limit, 0, 0};
    size_t total = 0;
    int err = server_alloc_foreach(adm->s, &f, page_add, &p, &total);
    if (err != 0) {
        json_decref(p.list);
        admin_call_error(r, err);
        return;
    }
    json_t *next = json_null();
    if (p.seen > p.limit) {
        char id[20];
        snprintf(id, sizeof(id), "%016" PRIx64, p.last_shown);
        json_decref(next);
        next = json_string(id);
    }
    admin_reply_json(r, 200,
                     json_pack("{s:o,s:I,s:o}", "allocations", p.list, "total", (json_int_t)total,
                               "next_cursor", next));
}

/* The allocation id of the path's last segment; -1 after answering 404. */
static int path_id(admin_req_t *r, uint64_t *id)
{
    if (parse_id(r->seg[3], r->seglen[3], id) != 0 || (int)(*id >> 48) >= r->a->s->nworkers) {
        admin_reply_error(r, 404, "not_found", "no allocation '%.40s'", r->seg[3]);
        return -1;
    }
    return 0;
}

void admin_h_alloc_get(admin_req_t *r)
{
    uint64_t id;
    alloc_detail_t d;
    if (path_id(r, &id) != 0)
        return;
    int err = server_alloc_get(r->a->s, id, &d);
    if (err == -ENOENT) {
        admin_reply_error(r, 404, "not_found", "no allocation '%.40s'", r->seg[3]);
        return;
    }
    if (err != 0) {
        admin_call_error(r, err);
        return;
    }
    json_t *o = view_json(r->a, &d.v);
    json_t *perms = json_array(), *chans = json_array();
    for (unsigned i = 0; i < d.nperms; i++) {
        struct sockaddr_storage ip;
        memset(&ip, 0, sizeof(ip));
        ip.ss_family = d.perms[i].family;
        if (ip.ss_family == AF_INET)
            memcpy(&((struct sockaddr_in *)&ip)->sin_addr, d.perms[i].ip, 4);
        else
            memcpy(&((struct sockaddr_in6 *)&ip)->sin6_addr, d.perms[i].ip, 16);
        char buf[SA_STRLEN];
        json_t *p =
            json_pack("{s:s}", "peer", sa_format_ip((struct sockaddr *)&ip, buf, sizeof(buf)));
        put_time(p, "expires", d.perms[i].expires_ms);
        json_array_append_new(perms, p);
    }
    for (unsigned i = 0; i < d.nchans; i++) {
        json_t *c = json_pack("{s:i,s:o}", "number", d.chans[i].number, "peer",
                              addr_json(&d.chans[i].peer));
        put_time(c, "expires", d.chans[i].expires_ms);
        json_array_append_new(chans, c);
    }
    json_object_set_new(o, "permissions", perms);
    json_object_set_new(o, "channels", chans);
    server_alloc_detail_free(&d);
    admin_reply_json(r, 200, o);
}

void admin_h_alloc_delete(admin_req_t *r)
{
    uint64_t id;
    if (path_id(r, &id) != 0)
        return;
    int err = server_alloc_kill(r->a->s, id);
    if (err == -ENOENT) {
        admin_reply_error(r, 404, "not_found", "no allocation '%.40s'", r->seg[3]);
        return;
    }
    if (err != 0) {
        admin_call_error(r, err);
        return;
    }
    /* The id as listings show it, not as written in the path ("1", "00A0..."). */
    char id_s[20];
    snprintf(id_s, sizeof(id_s), "%016" PRIx64, id);
    admin_reply_json(r, 200, json_pack("{s:s,s:b}", "id", id_s, "terminated", 1));
}

void admin_h_allocs_kill_user(admin_req_t *r)
{
    char user[ALLOC_VIEW_USER_MAX + 1];
    bool bad = false;
    const char *u = admin_query(r, "user", user, sizeof(user), &bad);
    if (bad || !u) {
        admin_reply_error(r, 400, "bad_parameter",
                          bad ? "'user' is too long or badly escaped" : "'user' is required");
        return;
    }
    if (admin_check_name(r, "user", u, strlen(u), ALLOC_VIEW_USER_MAX) != 0)
        return;
    long n = admin_forget_user(r, u, strlen(u), true);
    if (n < 0)
        return;
    admin_reply_json(r, 200,
                     json_pack("{s:s,s:I,s:b}", "user", u, "terminated", (json_int_t)n, "fleet",
                               fleet_enabled(r->a->fleet)));
}

long admin_forget_user(admin_req_t *r, const char *user, size_t ulen, bool terminate)
{
    /* The other nodes first: their round trip through Redis overlaps ours to the workers. */
    fleet_publish_forget(r->a->fleet, user, ulen, terminate);
    long n = server_forget_user(r->a->s, user, ulen, terminate);
    if (n < 0) {
        admin_call_error(r, (int)n);
        return -1;
    }
    return n;
}

static json_t *sum_json(const usage_sum_t *u)
{
    return json_pack("{s:I,s:I,s:I,s:I,s:I}", "allocations", (json_int_t)u->allocations,
                     "to_peer_bytes", (json_int_t)u->c.to_peer_bytes, "to_peer_packets",
                     (json_int_t)u->c.to_peer_packets, "from_peer_bytes",
                     (json_int_t)u->c.from_peer_bytes, "from_peer_packets",
                     (json_int_t)u->c.from_peer_packets);
}

void admin_h_usage(admin_req_t *r)
{
    char user[ALLOC_VIEW_USER_MAX + 1];
    bool bad = false;
    const char *u = admin_query(r, "user", user, sizeof(user), &bad);
    if (bad || !u) {
        admin_reply_error(r, 400, "bad_parameter",
                          "'user' is required (and at most 512 bytes, well escaped)");
        return;
    }
    usage_sum_t live, ended, total;
    int err = server_usage_user(r->a->s, u, strlen(u), &live, &ended);
    if (err != 0) {
        admin_call_error(r, err);
        return;
    }
    total = ended;
    total.allocations += live.allocations;
    total.c.to_peer_bytes += live.c.to_peer_bytes;
    total.c.to_peer_packets += live.c.to_peer_packets;
    total.c.from_peer_bytes += live.c.from_peer_bytes;
    total.c.from_peer_packets += live.c.from_peer_packets;
    const char *realm = r->a->s->cfg->realm ? r->a->s->cfg->realm : "";
    admin_reply_json(r, 200,
                     json_pack("{s:o,s:s,s:o,s:o,s:o}", "user", name_json(u, strlen(u)), "realm",
                               realm, "live", sum_json(&live), "ended", sum_json(&ended), "total",
                               sum_json(&total)));
}
