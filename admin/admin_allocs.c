/* admin_allocs.c - allocations: list, show, terminate; and ending a user's allocations when the
 * user is deleted or revoked.
 *
 * Every look at an allocation happens on the worker that owns it, in a task (admin_call.c) that
 * copies what the answer needs into the call's memory; the admin thread only formats copies.
 * Allocation ids are 16 hex digits, the owning worker's number in the top 16 bits (alloc.h), so a
 * request about one allocation goes to one worker. Listings run newest first (ids descending per
 * worker, workers in turn) and page with `cursor` = the last id seen: each worker returns at most
 * `limit` records below the cursor, so the memory a listing takes is bounded by limit x workers.
 * Times are the worker's loop clock turned into wall-clock time with the worker's offset, and are
 * given both as ISO 8601 UTC and as UNIX seconds.
 */
#include "admin_int.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sockaddr_util.h"

#define LIST_MAX 1000
#define LIST_DEFAULT 100

typedef struct {
    uint64_t id;
    int transport;
    sa_any_t remote, local;
    int nrelay;
    sa_any_t relay[2], announced[2];
    int64_t created_ms, expires_ms; /* UNIX ms */
    uint16_t ulen;
    char user[ALLOC_MAX_USERNAME + 1];
    unsigned nperms, nchans;
    uint64_t rx_bytes, rx_packets, tx_bytes, tx_packets;
} rec_t;

typedef struct {
    uint8_t family;
    uint8_t ip[16];
    int64_t expires_ms;
} perm_rec_t;

typedef struct {
    uint16_t number;
    sa_any_t peer;
    int64_t expires_ms;
} chan_rec_t;

/* ---- on the worker ---- */

static void copy_rec(const worker_t *w, const alloc_t *a, rec_t *r)
{
    uint64_t now = w->dispatch.now_ms;
    memset(r, 0, sizeof(*r));
    r->id = a->id;
    r->transport = a->client.transport;
    r->remote = a->client.remote;
    if (a->client.local)
        memcpy(&r->local, a->client.local, sa_len(a->client.local));
    r->nrelay = a->nrelay;
    for (int i = 0; i < a->nrelay && i < 2; i++) {
        r->relay[i] = a->relay[i].addr;
        r->announced[i] = a->relay[i].announced;
    }
    r->created_ms = (int64_t)a->created_ms + w->unix_offset_ms;
    r->expires_ms = (int64_t)a->expires_ms + w->unix_offset_ms;
    r->ulen = a->username_len;
    memcpy(r->user, a->username, a->username_len);
    for (unsigned i = 0; i < a->nperms; i++)
        r->nperms += a->perms[i].expires_ms > now;
    for (unsigned i = 0; i < a->nchans; i++)
        r->nchans += a->chans[i].expires_ms > now;
    r->rx_bytes = a->rx_bytes;
    r->rx_packets = a->rx_packets;
    r->tx_bytes = a->tx_bytes;
    r->tx_packets = a->tx_packets;
}

typedef struct {
    uint64_t before; /* 0: from the newest */
    size_t limit;
    bool by_user;
    uint16_t ulen;
    char user[ALLOC_MAX_USERNAME + 1];
} list_arg_t;

typedef struct {
    rec_t *recs;
    size_t n;
    size_t matched;
} list_slot_t;

static bool user_is(const alloc_t *a, const char *u, size_t ulen)
{
    return a->username_len == ulen && memcmp(a->username, u, ulen) == 0;
}

static void list_task(worker_t *w, const void *argp, void *slotp)
{
    const list_arg_t *arg = argp;
    list_slot_t *slot = slotp;
    LIST_FOREACH(n, &w->dispatch.allocs.all)
    {
        const alloc_t *a = container_of(n, alloc_t, link);
        if (a->dead || (arg->by_user && !user_is(a, arg->user, arg->ulen)))
            continue;
        slot->matched++;
        if ((arg->before && a->id >= arg->before) || slot->n >= arg->limit)
            continue;
        if (!slot->recs && !(slot->recs = malloc(arg->limit * sizeof(rec_t))))
            continue; /* out of memory: the listing comes back short */
        copy_rec(w, a, &slot->recs[slot->n++]);
    }
}

static void list_free(void *slotp) { free(((list_slot_t *)slotp)->recs); }

typedef struct {
    uint64_t id;
} one_arg_t;

typedef struct {
    bool found;
    rec_t rec;
    perm_rec_t *perms;
    chan_rec_t *chans;
    unsigned nperms, nchans;
} one_slot_t;

static alloc_t *find_id(worker_t *w, uint64_t id)
{
    LIST_FOREACH(n, &w->dispatch.allocs.all)
    {
        alloc_t *a = container_of(n, alloc_t, link);
        if (a->id == id && !a->dead)
            return a;
    }
    return NULL;
}

static void get_task(worker_t *w, const void *argp, void *slotp)
{
    const one_arg_t *arg = argp;
    one_slot_t *slot = slotp;
    alloc_t *a = find_id(w, arg->id);
    if (!a)
        return;
    uint64_t now = w->dispatch.now_ms;
    slot->found = true;
    copy_rec(w, a, &slot->rec);
    if (a->nperms && (slot->perms = calloc(a->nperms, sizeof(perm_rec_t))))
        for (unsigned i = 0; i < a->nperms; i++) {
            if (a->perms[i].expires_ms <= now)
                continue;
            perm_rec_t *p = &slot->perms[slot->nperms++];
            p->family = a->perms[i].family;
            memcpy(p->ip, a->perms[i].ip, 16);
            p->expires_ms = (int64_t)a->perms[i].expires_ms + w->unix_offset_ms;
        }
    if (a->nchans && (slot->chans = calloc(a->nchans, sizeof(chan_rec_t))))
        for (unsigned i = 0; i < a->nchans; i++) {
            if (a->chans[i].expires_ms <= now)
                continue;
            chan_rec_t *c = &slot->chans[slot->nchans++];
            c->number = a->chans[i].number;
            c->peer = a->chans[i].peer;
            c->expires_ms = (int64_t)a->chans[i].expires_ms + w->unix_offset_ms;
        }
}

static void get_free(void *slotp)
{
    one_slot_t *s = slotp;
    free(s->perms);
    free(s->chans);
}

static void delete_task(worker_t *w, const void *argp, void *slotp)
{
    const one_arg_t *arg = argp;
    alloc_t *a = find_id(w, arg->id);
    if (!a)
        return;
    dispatch_alloc_delete(&w->dispatch, a, 0);
    *(bool *)slotp = true;
}

typedef struct {
    bool terminate;
    bool has_user; /* false: forget the REST secret set */
    uint16_t ulen;
    char user[ALLOC_MAX_USERNAME + 1];
} forget_arg_t;

static void forget_task(worker_t *w, const void *argp, void *slotp)
{
    const forget_arg_t *arg = argp;
    long *n = slotp;
    creds_forget(w->creds, arg->has_user ? arg->user : NULL, arg->ulen);
    if (!arg->terminate || !arg->has_user)
        return;
    LIST_FOREACH_SAFE(node, tmp, &w->dispatch.allocs.all)
    {
        alloc_t *a = container_of(node, alloc_t, link);
        if (!a->dead && user_is(a, arg->user, arg->ulen)) {
            dispatch_alloc_delete(&w->dispatch, a, 0);
            (*n)++;
        }
    }
}

/* ---- on the admin thread ---- */

static const char *transport_name(int t)
{
    switch (t) {
    case DISPATCH_TCP:
        return "tcp";
    case DISPATCH_TLS:
        return "tls";
    case DISPATCH_DTLS:
        return "dtls";
    default:
        return "udp";
    }
}

static json_t *addr_json(const sa_any_t *a)
{
    char buf[SA_STRLEN];
    if (a->sa.sa_family != AF_INET && a->sa.sa_family != AF_INET6)
        return json_null();
    return json_string(sa_format(&a->sa, buf, sizeof(buf)));
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

static json_t *rec_json(const admin_t *adm, const rec_t *r)
{
    char id[20];
    snprintf(id, sizeof(id), "%016" PRIx64, r->id);
    json_t *o = json_object();
    json_t *relayed = json_array();
    for (int i = 0; i < r->nrelay && i < 2; i++)
        json_array_append_new(relayed, json_pack("{s:o,s:o}", "address", addr_json(&r->relay[i]),
                                                 "announced", addr_json(&r->announced[i])));
    json_object_set_new(o, "id", json_string(id));
    json_object_set_new(o, "worker", json_integer((json_int_t)(r->id >> 48)));
    json_object_set_new(o, "transport", json_string(transport_name(r->transport)));
    json_object_set_new(o, "client", addr_json(&r->remote));
    json_object_set_new(o, "server", addr_json(&r->local));
    json_object_set_new(o, "relayed", relayed);
    json_object_set_new(o, "username", name_json(r->user, r->ulen));
    json_object_set_new(o, "realm", json_string(adm->s->cfg->realm ? adm->s->cfg->realm : ""));
    put_time(o, "created", r->created_ms);
    put_time(o, "expires", r->expires_ms);
    json_object_set_new(o, "permissions", json_integer(r->nperms));
    json_object_set_new(o, "channels", json_integer(r->nchans));
    json_object_set_new(o, "client_to_peer",
                        json_pack("{s:I,s:I}", "bytes", (json_int_t)r->rx_bytes, "packets",
                                  (json_int_t)r->rx_packets));
    json_object_set_new(o, "peer_to_client",
                        json_pack("{s:I,s:I}", "bytes", (json_int_t)r->tx_bytes, "packets",
                                  (json_int_t)r->tx_packets));
    return o;
}

static int cmp_desc(const void *x, const void *y)
{
    const rec_t *a = x, *b = y;
    return a->id < b->id ? 1 : a->id > b->id ? -1 : 0;
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

void admin_h_allocs_list(admin_req_t *r)
{
    admin_t *adm = r->a;
    list_arg_t arg;
    char cursor[40], realm[ADMIN_REALM_MAX + 2];
    bool bad = false;
    long long limit;
    memset(&arg, 0, sizeof(arg));
    if (admin_query_int(r, "limit", LIST_DEFAULT, 1, LIST_MAX, &limit) != 0)
        return;
    arg.limit = (size_t)limit;
    const char *u = admin_query(r, "user", arg.user, sizeof(arg.user), &bad);
    if (bad) {
        admin_reply_error(r, 400, "bad_parameter", "'user' is too long or badly escaped");
        return;
    }
    if (u) {
        arg.by_user = true;
        arg.ulen = (uint16_t)strlen(u);
    }
    const char *c = admin_query(r, "cursor", cursor, sizeof(cursor), &bad);
    if (bad || (c && *c && parse_id(c, strlen(c), &arg.before) != 0)) {
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
    int err;
    admin_call_t *call = admin_call_workers(adm, -1, list_task, &arg, sizeof(arg),
                                            sizeof(list_slot_t), list_free, &err);
    if (!call) {
        admin_call_error(r, err);
        return;
    }
    size_t total = 0, n = 0;
    for (int i = 0; i < adm->s->nworkers; i++) {
        list_slot_t *sl = admin_call_slot(call, i);
        if (sl) {
            total += sl->matched;
            n += sl->n;
        }
    }
    rec_t *all = malloc((n ? n : 1) * sizeof(rec_t));
    if (!all) {
        admin_call_release(call);
        admin_reply_error(r, 500, "internal", "out of memory");
        return;
    }
    size_t k = 0;
    for (int i = 0; i < adm->s->nworkers; i++) {
        list_slot_t *sl = admin_call_slot(call, i);
        if (sl && sl->n) {
            memcpy(all + k, sl->recs, sl->n * sizeof(rec_t));
            k += sl->n;
        }
    }
    admin_call_release(call);
    qsort(all, n, sizeof(rec_t), cmp_desc);
    size_t shown = n < arg.limit ? n : arg.limit;
    json_t *list = json_array();
    for (size_t i = 0; i < shown; i++)
        json_array_append_new(list, rec_json(adm, &all[i]));
    json_t *next = json_null();
    if (n > arg.limit) {
        char id[20];
        snprintf(id, sizeof(id), "%016" PRIx64, all[shown - 1].id);
        json_decref(next);
        next = json_string(id);
    }
    free(all);
    admin_reply_json(r, 200,
                     json_pack("{s:o,s:I,s:o}", "allocations", list, "total", (json_int_t)total,
                               "next_cursor", next));
}

/* The allocation id of the path's last segment and its worker; -1 after answering 404. */
static int path_id(admin_req_t *r, uint64_t *id, int *worker)
{
    if (parse_id(r->seg[3], r->seglen[3], id) != 0 || (int)(*id >> 48) >= r->a->s->nworkers) {
        admin_reply_error(r, 404, "not_found", "no allocation '%.40s'", r->seg[3]);
        return -1;
    }
    *worker = (int)(*id >> 48);
    return 0;
}

void admin_h_alloc_get(admin_req_t *r)
{
    one_arg_t arg;
    int worker, err;
    if (path_id(r, &arg.id, &worker) != 0)
        return;
    admin_call_t *call = admin_call_workers(r->a, worker, get_task, &arg, sizeof(arg),
                                            sizeof(one_slot_t), get_free, &err);
    if (!call) {
        admin_call_error(r, err);
        return;
    }
    one_slot_t *sl = admin_call_slot(call, worker);
    if (!sl || !sl->found) {
        admin_call_release(call);
        admin_reply_error(r, 404, "not_found", "no allocation '%.40s'", r->seg[3]);
        return;
    }
    json_t *o = rec_json(r->a, &sl->rec);
    json_t *perms = json_array(), *chans = json_array();
    for (unsigned i = 0; i < sl->nperms; i++) {
        sa_any_t ip;
        memset(&ip, 0, sizeof(ip));
        ip.sa.sa_family = sl->perms[i].family;
        if (ip.sa.sa_family == AF_INET)
            memcpy(&ip.in.sin_addr, sl->perms[i].ip, 4);
        else
            memcpy(&ip.in6.sin6_addr, sl->perms[i].ip, 16);
        char buf[SA_STRLEN];
        json_t *p = json_pack("{s:s}", "peer", sa_format_ip(&ip.sa, buf, sizeof(buf)));
        put_time(p, "expires", sl->perms[i].expires_ms);
        json_array_append_new(perms, p);
    }
    for (unsigned i = 0; i < sl->nchans; i++) {
        json_t *c = json_pack("{s:i,s:o}", "number", sl->chans[i].number, "peer",
                              addr_json(&sl->chans[i].peer));
        put_time(c, "expires", sl->chans[i].expires_ms);
        json_array_append_new(chans, c);
    }
    json_object_set_new(o, "permissions", perms);
    json_object_set_new(o, "channels", chans);
    admin_call_release(call);
    admin_reply_json(r, 200, o);
}

void admin_h_alloc_delete(admin_req_t *r)
{
    one_arg_t arg;
    int worker, err;
    if (path_id(r, &arg.id, &worker) != 0)
        return;
    admin_call_t *call =
        admin_call_workers(r->a, worker, delete_task, &arg, sizeof(arg), sizeof(bool), NULL, &err);
    if (!call) {
        admin_call_error(r, err);
        return;
    }
    bool *found = admin_call_slot(call, worker);
    bool ok = found && *found;
    admin_call_release(call);
    if (!ok) {
        admin_reply_error(r, 404, "not_found", "no allocation '%.40s'", r->seg[3]);
        return;
    }
    /* The id as listings show it, not as written in the path ("1", "00A0..."). */
    char id[20];
    snprintf(id, sizeof(id), "%016" PRIx64, arg.id);
    admin_reply_json(r, 200, json_pack("{s:s,s:b}", "id", id, "terminated", 1));
}

long admin_forget_user(admin_req_t *r, const char *user, size_t ulen, bool terminate)
{
    forget_arg_t arg;
    int err;
    memset(&arg, 0, sizeof(arg));
    arg.terminate = terminate;
    if (user) {
        if (ulen > ALLOC_MAX_USERNAME)
            return 0; /* no allocation or cache entry can have such a name */
        arg.has_user = true;
        arg.ulen = (uint16_t)ulen;
        memcpy(arg.user, user, ulen);
    }
    admin_call_t *call =
        admin_call_workers(r->a, -1, forget_task, &arg, sizeof(arg), sizeof(long), NULL, &err);
    if (!call) {
        admin_call_error(r, err);
        return -1;
    }
    long n = 0;
    for (int i = 0; i < r->a->s->nworkers; i++) {
        long *v = admin_call_slot(call, i);
        if (v)
            n += *v;
    }
    admin_call_release(call);
    return n;
}
