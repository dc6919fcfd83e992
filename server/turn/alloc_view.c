/* alloc_view.c - copies of one worker's allocations for the admin (alloc_view.h): on the thread
 * that owns the dispatch_t, nothing shared, no I/O.
 */
#include "alloc_view.h"

#include <stdlib.h>
#include <string.h>

#include "alloc.h"
#include "dispatch.h"
#include "list.h"
#include "sockaddr_util.h"

static void copy_addr(struct sockaddr_storage *out, const struct sockaddr *sa)
{
    if (sa && (sa->sa_family == AF_INET || sa->sa_family == AF_INET6))
        memcpy(out, sa, sa_len(sa));
}

/* Wall-clock ms of the engine's monotonic `t` (the offset between the two clocks it was given). */
static int64_t unix_of(const dispatch_t *d, uint64_t t)
{
    return (int64_t)t + ((int64_t)d->unix_ms - (int64_t)d->now_ms);
}

void alloc_view_fill(const dispatch_t *d, const alloc_t *a, alloc_view_t *v)
{
    uint64_t now = d->now_ms;
    memset(v, 0, sizeof(*v));
    v->id = a->id;
    v->worker = (int)(a->id >> 48);
    v->transport = turn_transport_name(a->client.transport);
    copy_addr(&v->client, a->client.remote);
    copy_addr(&v->server, a->client.local);
    v->nrelay = a->nrelay < 2 ? a->nrelay : 2;
    for (int i = 0; i < v->nrelay; i++) {
        copy_addr(&v->relay[i], &a->relay[i].addr.sa);
        copy_addr(&v->announced[i], &a->relay[i].announced.sa);
    }
    v->created_ms = unix_of(d, a->created_ms);
    v->expires_ms = unix_of(d, a->expires_ms);
    v->ulen = a->username_len;
    memcpy(v->user, a->username, a->username_len);
    for (unsigned i = 0; i < a->nperms; i++)
        v->nperms += a->perms[i].expires_ms > now;
    for (unsigned i = 0; i < a->nchans; i++)
        v->nchans += a->chans[i].expires_ms > now;
    v->traffic = a->traffic;
    v->kernel = a->kernel;
}

void alloc_view_detail(const dispatch_t *d, const alloc_t *a, alloc_detail_t *out)
{
    uint64_t now = d->now_ms;
    memset(out, 0, sizeof(*out));
    alloc_view_fill(d, a, &out->v);
    if (a->nperms && (out->perms = calloc(a->nperms, sizeof(alloc_perm_view_t))))
        for (unsigned i = 0; i < a->nperms; i++) {
            if (a->perms[i].expires_ms <= now)
                continue;
            alloc_perm_view_t *p = &out->perms[out->nperms++];
            p->family = a->perms[i].family;
            memcpy(p->ip, a->perms[i].ip, 16);
            p->expires_ms = unix_of(d, a->perms[i].expires_ms);
        }
    if (a->nchans && (out->chans = calloc(a->nchans, sizeof(alloc_chan_view_t))))
        for (unsigned i = 0; i < a->nchans; i++) {
            if (a->chans[i].expires_ms <= now)
                continue;
            alloc_chan_view_t *c = &out->chans[out->nchans++];
            c->number = a->chans[i].number;
            copy_addr(&c->peer, &a->chans[i].peer.sa);
            c->expires_ms = unix_of(d, a->chans[i].expires_ms);
        }
}

void alloc_view_detail_free(alloc_detail_t *out)
{
    free(out->perms);
    free(out->chans);
    out->perms = NULL;
    out->chans = NULL;
    out->nperms = out->nchans = 0;
}

void alloc_view_foreach(dispatch_t *d, alloc_view_each_fn fn, void *arg)
{
    LIST_FOREACH_SAFE(n, tmp, &d->allocs.all)
    {
        alloc_t *a = container_of(n, alloc_t, link);
        if (a->dead)
            continue;
        dispatch_alloc_fold(d, a); /* what the kernel relayed belongs in the view */
        fn(a, arg);
    }
}

alloc_t *alloc_view_find(dispatch_t *d, uint64_t id)
{
    LIST_FOREACH(n, &d->allocs.all)
    {
        alloc_t *a = container_of(n, alloc_t, link);
        if (a->id == id && !a->dead) {
            dispatch_alloc_fold(d, a);
            return a;
        }
    }
    return NULL;
}
