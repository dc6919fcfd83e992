/* alloc_query.c - the admin's questions about allocations, asked of every worker (alloc_query.h).
 *
 * A call posts a task to each worker concerned (worker_post) and waits, bounded, for their
 * answers. The call object is reference-counted: the caller holds one reference and every posted
 * task one, so a task that runs after the caller gave up (a stalled or stopping worker) still
 * writes into live memory, and whoever drops the last reference frees it. worker_post runs a task
 * exactly once, also while a worker stops; then w->closed is set and the task touches nothing of
 * the worker. On the worker, the engine's view functions (turn/alloc_view.h) make the copies.
 */
#include "alloc_query.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "alloc.h"
#include "dispatch.h"
#include "server.h"
#include "worker.h"

/* ---- asking the workers ---- */

/* Runs on worker `w`'s loop thread (w->closed is 0); writes its answer into `slot`. */
typedef void (*call_fn)(worker_t *w, const void *arg, void *slot);
typedef void (*slot_free_fn)(void *slot);

typedef struct {
    uv_mutex_t lock;
    uv_cond_t cond;
    int refs;    /* the caller's + one per task not yet finished */
    int pending; /* tasks not yet finished */
    int n;
    call_fn fn;
    void *arg;
    size_t slot_size;
    slot_free_fn slot_free;
    uint8_t *slots;
    uint8_t *filled; /* per worker: the task ran on a live worker and wrote its slot */
} call_t;

static void call_unref(call_t *c)
{
    uv_mutex_lock(&c->lock);
    int last = --c->refs == 0;
    uv_mutex_unlock(&c->lock);
    if (!last)
        return;
    for (int i = 0; i < c->n; i++)
        if (c->filled[i] && c->slot_free)
            c->slot_free(c->slots + (size_t)i * c->slot_size);
    uv_cond_destroy(&c->cond);
    uv_mutex_destroy(&c->lock);
    free(c->arg);
    free(c->slots);
    free(c->filled);
    free(c);
}

static void call_task(worker_t *w, void *arg)
{
    call_t *c = arg;
    int i = w->id;
    if (!w->closed && i >= 0 && i < c->n) {
        c->fn(w, c->arg, c->slots + (size_t)i * c->slot_size);
        c->filled[i] = 1;
    }
    uv_mutex_lock(&c->lock);
    c->pending--;
    uv_cond_signal(&c->cond);
    uv_mutex_unlock(&c->lock);
    call_unref(c);
}

/* Post fn(w, arg, slot_i) to every worker (only = -1) or to worker `only`, and wait up to
 * SERVER_CALL_WAIT_MS. `arg` is copied. The call (read slots with call_slot, then call_unref), or
 * NULL with *err. */
static call_t *call_workers(server_t *s, int only, call_fn fn, const void *arg, size_t arg_len,
                            size_t slot_size, slot_free_fn slot_free, int *err)
{
    call_t *c = calloc(1, sizeof(*c));
    *err = -ENOMEM;
    if (!c)
        return NULL;
    c->n = s->nworkers;
    c->fn = fn;
    c->slot_size = slot_size ? slot_size : 1;
    c->slot_free = slot_free;
    c->slots = calloc((size_t)(c->n ? c->n : 1), c->slot_size);
    c->filled = calloc((size_t)(c->n ? c->n : 1), 1);
    c->arg = malloc(arg_len ? arg_len : 1);
    if (!c->slots || !c->filled || !c->arg) {
        free(c->slots);
        free(c->filled);
        free(c->arg);
        free(c);
        return NULL;
    }
    if (arg_len)
        memcpy(c->arg, arg, arg_len);
    uv_mutex_init(&c->lock);
    uv_cond_init(&c->cond);
    c->refs = 1;
    int posted = 0;
    for (int i = 0; i < c->n; i++) {
        if (only >= 0 && i != only)
            continue;
        uv_mutex_lock(&c->lock);
        c->refs++;
        c->pending++;
        uv_mutex_unlock(&c->lock);
        if (worker_post(&s->workers[i], call_task, c) != 0) {
            uv_mutex_lock(&c->lock);
            c->refs--;
            c->pending--;
            uv_mutex_unlock(&c->lock);
            continue;
        }
        posted++;
    }
    if (posted == 0) {
        call_unref(c);
        *err = -ESHUTDOWN;
        return NULL;
    }
    uint64_t deadline = uv_hrtime() + (uint64_t)SERVER_CALL_WAIT_MS * 1000000;
    uv_mutex_lock(&c->lock);
    while (c->pending > 0) {
        uint64_t now = uv_hrtime();
        if (now >= deadline)
            break;
        (void)uv_cond_timedwait(&c->cond, &c->lock, deadline - now);
    }
    int late = c->pending > 0;
    uv_mutex_unlock(&c->lock);
    if (late) {
        call_unref(c);
        *err = -ETIMEDOUT;
        return NULL;
    }
    *err = 0;
    return c;
}

/* Slot of worker i (NULL when that worker was not asked or was already closed). */
static void *call_slot(call_t *c, int i)
{
    if (i < 0 || i >= c->n || !c->filled[i])
        return NULL;
    return c->slots + (size_t)i * c->slot_size;
}

/* ---- on the worker ---- */

static bool user_is(const alloc_t *a, const char *u, size_t ulen)
{
    return a->username_len == ulen && memcmp(a->username, u, ulen) == 0;
}

typedef struct {
    uint64_t before;
    size_t limit;
    bool by_user;
    uint16_t ulen;
    char user[STUN_USERNAME_MAX + 1];
} list_arg_t;

typedef struct {
    alloc_view_t *views;
    size_t n;
    size_t matched;
} list_slot_t;

typedef struct {
    const worker_t *w;
    const list_arg_t *arg;
    list_slot_t *slot;
} list_each_t;

static void list_each(alloc_t *a, void *p)
{
    list_each_t *e = p;
    const list_arg_t *arg = e->arg;
    list_slot_t *slot = e->slot;
    if (arg->by_user && !user_is(a, arg->user, arg->ulen))
        return;
    slot->matched++;
    if ((arg->before && a->id >= arg->before) || slot->n >= arg->limit)
        return;
    if (!slot->views && !(slot->views = malloc(arg->limit * sizeof(alloc_view_t))))
        return; /* out of memory: the listing comes back short */
    alloc_view_fill(&e->w->dispatch, a, &slot->views[slot->n++]);
}

static void list_task(worker_t *w, const void *argp, void *slotp)
{
    list_each_t e = {w, argp, slotp};
    alloc_view_foreach(&w->dispatch, list_each, &e);
}

static void list_free(void *slotp) { free(((list_slot_t *)slotp)->views); }

typedef struct {
    uint64_t id;
} one_arg_t;

typedef struct {
    bool found;
    alloc_detail_t d;
} one_slot_t;

static void get_task(worker_t *w, const void *argp, void *slotp)
{
    const one_arg_t *arg = argp;
    one_slot_t *slot = slotp;
    alloc_t *a = alloc_view_find(&w->dispatch, arg->id);
    if (!a)
        return;
    slot->found = true;
    alloc_view_detail(&w->dispatch, a, &slot->d);
}

static void get_free(void *slotp) { alloc_view_detail_free(&((one_slot_t *)slotp)->d); }

static void kill_task(worker_t *w, const void *argp, void *slotp)
{
    const one_arg_t *arg = argp;
    alloc_t *a = alloc_view_find(&w->dispatch, arg->id);
    if (!a)
        return;
    dispatch_alloc_delete(&w->dispatch, a, DISPATCH_GONE_KILLED);
    *(bool *)slotp = true;
}

typedef struct {
    bool terminate;
    bool has_user; /* false: forget the REST secret set */
    uint16_t ulen;
    char user[STUN_USERNAME_MAX + 1];
} forget_arg_t;

typedef struct {
    worker_t *w;
    const forget_arg_t *arg;
    long *n;
} forget_each_t;

static void forget_each(alloc_t *a, void *p)
{
    forget_each_t *e = p;
    if (user_is(a, e->arg->user, e->arg->ulen)) {
        dispatch_alloc_delete(&e->w->dispatch, a, DISPATCH_GONE_KILLED);
        (*e->n)++;
    }
}

static void forget_task(worker_t *w, const void *argp, void *slotp)
{
    const forget_arg_t *arg = argp;
    creds_forget(w->creds, arg->has_user ? arg->user : NULL, arg->ulen);
    if (!arg->terminate || !arg->has_user)
        return;
    forget_each_t e = {w, arg, slotp};
    alloc_view_foreach(&w->dispatch, forget_each, &e);
}

typedef struct {
    usage_sum_t live, ended;
} usage_slot_t;

static void usage_task(worker_t *w, const void *argp, void *slotp)
{
    const forget_arg_t *arg = argp;
    usage_slot_t *slot = slotp;
    dispatch_usage_user(&w->dispatch, arg->user, arg->ulen, &slot->live, &slot->ended);
}

/* ---- on the caller's thread ---- */

static int cmp_desc(const void *x, const void *y)
{
    const alloc_view_t *a = x, *b = y;
    return a->id < b->id ? 1 : a->id > b->id ? -1 : 0;
}

int server_alloc_foreach(server_t *s, const alloc_filter_t *f, alloc_view_fn fn, void *fnarg,
                         size_t *total)
{
    list_arg_t arg;
    int err;
    memset(&arg, 0, sizeof(arg));
    arg.before = f->before;
    arg.limit = f->limit ? f->limit : 1;
    if (total)
        *total = 0;
    if (f->by_user) {
        if (f->ulen > STUN_USERNAME_MAX)
            return 0; /* no allocation can have such a name */
        arg.by_user = true;
        arg.ulen = (uint16_t)f->ulen;
        memcpy(arg.user, f->user, f->ulen);
    }
    call_t *call =
        call_workers(s, -1, list_task, &arg, sizeof(arg), sizeof(list_slot_t), list_free, &err);
    if (!call)
        return err;
    size_t matched = 0, n = 0;
    for (int i = 0; i < s->nworkers; i++) {
        list_slot_t *sl = call_slot(call, i);
        if (sl) {
            matched += sl->matched;
            n += sl->n;
        }
    }
    alloc_view_t *all = malloc((n ? n : 1) * sizeof(alloc_view_t));
    if (!all) {
        call_unref(call);
        return -ENOMEM;
    }
    size_t k = 0;
    for (int i = 0; i < s->nworkers; i++) {
        list_slot_t *sl = call_slot(call, i);
        if (sl && sl->n) {
            memcpy(all + k, sl->views, sl->n * sizeof(alloc_view_t));
            k += sl->n;
        }
    }
    call_unref(call);
    qsort(all, n, sizeof(alloc_view_t), cmp_desc);
    for (size_t i = 0; i < n; i++)
        fn(&all[i], fnarg);
    free(all);
    if (total)
        *total = matched;
    return 0;
}

/* The worker that owns `id`, or -1. */
static int owner(const server_t *s, uint64_t id)
{
    int w = (int)(id >> 48);
    return w < s->nworkers ? w : -1;
}

int server_alloc_get(server_t *s, uint64_t id, alloc_detail_t *out)
{
    one_arg_t arg = {id};
    int err, worker = owner(s, id);
    memset(out, 0, sizeof(*out));
    if (worker < 0)
        return -ENOENT;
    call_t *call =
        call_workers(s, worker, get_task, &arg, sizeof(arg), sizeof(one_slot_t), get_free, &err);
    if (!call)
        return err;
    one_slot_t *sl = call_slot(call, worker);
    if (!sl || !sl->found) {
        call_unref(call);
        return -ENOENT;
    }
    *out = sl->d; /* the copies move to the caller */
    memset(&sl->d, 0, sizeof(sl->d));
    call_unref(call);
    return 0;
}

void server_alloc_detail_free(alloc_detail_t *d) { alloc_view_detail_free(d); }

int server_alloc_kill(server_t *s, uint64_t id)
{
    one_arg_t arg = {id};
    int err, worker = owner(s, id);
    if (worker < 0)
        return -ENOENT;
    call_t *call = call_workers(s, worker, kill_task, &arg, sizeof(arg), sizeof(bool), NULL, &err);
    if (!call)
        return err;
    bool *found = call_slot(call, worker);
    bool ok = found && *found;
    call_unref(call);
    return ok ? 0 : -ENOENT;
}

long server_forget_user(server_t *s, const char *user, size_t ulen, bool terminate)
{
    forget_arg_t arg;
    int err;
    memset(&arg, 0, sizeof(arg));
    arg.terminate = terminate;
    if (user) {
        if (ulen > STUN_USERNAME_MAX)
            return 0; /* no allocation or cache entry can have such a name */
        arg.has_user = true;
        arg.ulen = (uint16_t)ulen;
        memcpy(arg.user, user, ulen);
    }
    call_t *call = call_workers(s, -1, forget_task, &arg, sizeof(arg), sizeof(long), NULL, &err);
    if (!call)
        return err;
    long n = 0;
    for (int i = 0; i < s->nworkers; i++) {
        long *v = call_slot(call, i);
        if (v)
            n += *v;
    }
    call_unref(call);
    return n;
}

static void sum_add(usage_sum_t *to, const usage_sum_t *s)
{
    to->allocations += s->allocations;
    to->c.to_peer_bytes += s->c.to_peer_bytes;
    to->c.to_peer_packets += s->c.to_peer_packets;
    to->c.from_peer_bytes += s->c.from_peer_bytes;
    to->c.from_peer_packets += s->c.from_peer_packets;
}

int server_usage_user(server_t *s, const char *user, size_t ulen, usage_sum_t *live,
                      usage_sum_t *ended)
{
    forget_arg_t arg;
    int err;
    memset(live, 0, sizeof(*live));
    memset(ended, 0, sizeof(*ended));
    if (ulen > STUN_USERNAME_MAX)
        return 0; /* no allocation can have such a name */
    memset(&arg, 0, sizeof(arg));
    arg.has_user = true;
    arg.ulen = (uint16_t)ulen;
    memcpy(arg.user, user, ulen);
    call_t *call =
        call_workers(s, -1, usage_task, &arg, sizeof(arg), sizeof(usage_slot_t), NULL, &err);
    if (!call)
        return err;
    for (int i = 0; i < s->nworkers; i++) {
        usage_slot_t *sl = call_slot(call, i);
        if (sl) {
            sum_add(live, &sl->live);
            sum_add(ended, &sl->ended);
        }
    }
    call_unref(call);
    return 0;
}
