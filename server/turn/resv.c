/* resv.c - EVEN-PORT reservations shared by every worker (see resv.h): a list behind one lock; the
 * quota unit a reservation holds goes back outside that lock (quota.c takes its own).
 */
#include "resv.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "rand.h"

struct resv {
    uint64_t token;
    int fd; /* the held socket on port N+1, adopted by the redeeming worker */
    sa_any_t addr;
    uint64_t expires_unix_ms;
    /* The user whose quota holds one unit for this reservation until it is redeemed or expires
     * (NULL: none, or the unit passed to the redeeming allocation). */
    char *user;
    size_t ulen;
    resv_t *next;
};

void resv_init(resv_table_t *t, quota_t *quota, _Atomic(const cfg_t *) *live)
{
    memset(t, 0, sizeof(*t));
    t->live = live;
    t->quota = quota;
    pthread_mutex_init(&t->lock, NULL);
}

void resv_close(resv_table_t *t)
{
    if (!t->live)
        return; /* never initialised */
    resv_t *next;
    for (resv_t *r = t->head; r; r = next) {
        next = r->next;
        close(r->fd);
        free(r->user); /* the server is going: nothing to give back */
        free(r);
    }
    pthread_mutex_destroy(&t->lock);
    memset(t, 0, sizeof(*t));
}

uint64_t resv_add(resv_table_t *t, int fd, const struct sockaddr *addr, uint64_t now_unix_ms,
                  const char *user, size_t ulen)
{
    resv_t *r = calloc(1, sizeof(*r));
    if (!r)
        return 0;
    if (user && !(r->user = malloc(ulen ? ulen : 1))) {
        free(r);
        return 0;
    }
    if (user) {
        memcpy(r->user, user, ulen);
        r->ulen = ulen;
    }
    do
        rand_bytes(&r->token, sizeof(r->token));
    while (r->token == 0);
    r->fd = fd;
    memcpy(&r->addr, addr, sa_len(addr));
    r->expires_unix_ms = now_unix_ms + (uint64_t)atomic_load(t->live)->reservation_lifetime * 1000;
    /* Read the token before publishing: once unlocked, another worker may redeem and free r. */
    uint64_t token = r->token;
    pthread_mutex_lock(&t->lock);
    r->next = t->head;
    t->head = r;
    pthread_mutex_unlock(&t->lock);
    return token;
}

/* Free a reservation already unlinked; its quota unit goes back (quota's lock, so never called
 * with t->lock held). */
static void resv_free(resv_table_t *t, resv_t *r, int close_fd)
{
    if (r->user)
        quota_release(t->quota, r->user, r->ulen);
    if (close_fd)
        close(r->fd);
    free(r->user);
    free(r);
}

int resv_take(resv_table_t *t, uint64_t token, sa_any_t *addr, uint64_t now_unix_ms)
{
    int fd = -1;
    resv_t *found = NULL;
    pthread_mutex_lock(&t->lock);
    for (resv_t **pp = &t->head; *pp; pp = &(*pp)->next) {
        resv_t *r = *pp;
        if (r->token == token) {
            if (r->expires_unix_ms > now_unix_ms) {
                fd = r->fd;
                *addr = r->addr;
            }
            *pp = r->next;
            found = r;
            break;
        }
    }
    pthread_mutex_unlock(&t->lock);
    if (found)
        resv_free(t, found, fd < 0);
    return fd;
}

int resv_adopt_unit(resv_table_t *t, uint64_t token, const char *user, size_t ulen,
                    uint64_t now_unix_ms)
{
    int adopted = 0;
    char *unit = NULL;
    pthread_mutex_lock(&t->lock);
    for (resv_t *r = t->head; r; r = r->next)
        if (r->token == token) {
            if (r->expires_unix_ms > now_unix_ms && r->user && r->ulen == ulen &&
                memcmp(r->user, user, ulen) == 0) {
                unit = r->user;
                r->user = NULL;
                adopted = 1;
            }
            break;
        }
    pthread_mutex_unlock(&t->lock);
    free(unit);
    return adopted;
}

void resv_expire(resv_table_t *t, uint64_t now_unix_ms)
{
    resv_t *gone = NULL;
    pthread_mutex_lock(&t->lock);
    for (resv_t **pp = &t->head; *pp;) {
        resv_t *r = *pp;
        if (r->expires_unix_ms <= now_unix_ms) {
            *pp = r->next;
            r->next = gone;
            gone = r;
        } else {
            pp = &r->next;
        }
    }
    pthread_mutex_unlock(&t->lock);
    while (gone) {
        resv_t *next = gone->next;
        resv_free(t, gone, 1);
        gone = next;
    }
}
