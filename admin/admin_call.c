/* admin_call.c - ask workers something and wait, bounded, for their answers.
 *
 * A worker's allocations and credential cache belong to its loop thread alone (DESIGN.md: other
 * threads talk to a worker by message, never by shared pointers), so the admin posts a task to
 * each worker (worker_post) and waits on a condition variable with a deadline. The call object is
 * reference-counted: the admin holds one reference and every posted task one, so a task that runs
 * after the admin gave up (a stalled or stopping worker) still writes into live memory, and
 * whoever drops the last reference frees it. worker_post runs a task exactly once, also while a
 * worker stops; then w->closed is set and the task touches nothing of the worker.
 */
#include "admin_int.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

struct admin_call {
    uv_mutex_t lock;
    uv_cond_t cond;
    int refs;    /* the admin's + one per task not yet finished */
    int pending; /* tasks not yet finished */
    int n;
    admin_call_fn fn;
    void *arg;
    size_t slot_size;
    admin_slot_free_fn slot_free;
    uint8_t *slots;
    uint8_t *filled; /* per worker: the task ran on a live worker and wrote its slot */
};

static void call_unref(admin_call_t *c)
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
    admin_call_t *c = arg;
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

admin_call_t *admin_call_workers(admin_t *a, int only, admin_call_fn fn, const void *arg,
                                 size_t arg_len, size_t slot_size, admin_slot_free_fn slot_free,
                                 int *err)
{
    server_t *s = a->s;
    admin_call_t *c = calloc(1, sizeof(*c));
    *err = -ENOMEM;
    if (!c)
        return NULL;
    c->n = s->nworkers;
    c->fn = fn;
    c->slot_size = slot_size ? slot_size : 1;
    c->slot_free = slot_free;
    c->slots = calloc((size_t)c->n, c->slot_size);
    c->filled = calloc((size_t)c->n, 1);
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
    uint64_t deadline = uv_hrtime() + (uint64_t)ADMIN_WORKER_WAIT_MS * 1000000;
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

void *admin_call_slot(admin_call_t *c, int i)
{
    if (i < 0 || i >= c->n || !c->filled[i])
        return NULL;
    return c->slots + (size_t)i * c->slot_size;
}

void admin_call_release(admin_call_t *c)
{
    if (c)
        call_unref(c);
}

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
