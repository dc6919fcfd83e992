/* dispatch_usage.c - the usage ledger's events as the engine makes them (usage.h): a plain copy
 * of an allocation's identity and counters handed to the owner's hook, and a user's usage on this
 * worker for the admin. No I/O here: the hook queues, the worker writes (core/usage_writer.c).
 */
#include <string.h>

#include "dispatch_int.h"

/* UNIX ms of the engine's monotonic `t`. */
static int64_t unix_of(const dispatch_t *d, uint64_t t)
{
    return (int64_t)t + ((int64_t)d->unix_ms - (int64_t)d->now_ms);
}

void dispatch_usage_event(dispatch_t *d, alloc_t *a, int kind, int reason)
{
    if (kind == USAGE_CREATED || kind == USAGE_PERIODIC)
        a->usage_last_ms = d->now_ms;
    if (!d->usage.event)
        return;
    dispatch_alloc_fold(d, a);
    usage_event_t ev;
    /* Only the fixed part: the name is copied by its length (the queue copies that much too). */
    memset(&ev, 0, offsetof(usage_event_t, user));
    ev.kind = (uint8_t)kind;
    ev.reason = (uint8_t)reason;
    ev.transport = (uint8_t)a->client.transport;
    ev.id = a->id;
    ev.ts_ms = (int64_t)d->unix_ms;
    ev.created_ms = unix_of(d, a->created_ms);
    ev.lifetime = a->expires_ms > d->now_ms && kind != USAGE_DELETED
                      ? (uint32_t)((a->expires_ms - d->now_ms + 999) / 1000)
                      : 0;
    memcpy(&ev.client, &a->client_addr, sizeof(ev.client));
    ev.nrelay = (uint8_t)(a->nrelay < 2 ? a->nrelay : 2);
    for (int i = 0; i < ev.nrelay; i++)
        ev.relay[i] = a->relay[i].announced;
    ev.c = a->traffic;
    ev.delta.to_peer_bytes = a->traffic.to_peer_bytes - a->reported.to_peer_bytes;
    ev.delta.to_peer_packets = a->traffic.to_peer_packets - a->reported.to_peer_packets;
    ev.delta.from_peer_bytes = a->traffic.from_peer_bytes - a->reported.from_peer_bytes;
    ev.delta.from_peer_packets = a->traffic.from_peer_packets - a->reported.from_peer_packets;
    if (kind == USAGE_PERIODIC)
        a->reported = a->traffic;
    ev.ulen = a->username_len;
    memcpy(ev.user, a->username, a->username_len);
    ev.user[ev.ulen] = '\0';
    d->usage.event(d->usage.env, &ev);
}

static void add_counts(usage_sum_t *s, const usage_counts_t *c)
{
    s->allocations++;
    s->c.to_peer_bytes += c->to_peer_bytes;
    s->c.to_peer_packets += c->to_peer_packets;
    s->c.from_peer_bytes += c->from_peer_bytes;
    s->c.from_peer_packets += c->from_peer_packets;
}

void dispatch_usage_user(dispatch_t *d, const char *user, size_t ulen, usage_sum_t *live,
                         usage_sum_t *ended)
{
    memset(live, 0, sizeof(*live));
    LIST_FOREACH(n, &d->allocs.all)
    {
        alloc_t *a = container_of(n, alloc_t, link);
        if (!a->dead && a->username_len == ulen && memcmp(a->username, user, ulen) == 0) {
            dispatch_alloc_fold(d, a);
            add_counts(live, &a->traffic);
        }
    }
    usage_ended_get(&d->ended, user, ulen, ended);
}
