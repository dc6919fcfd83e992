/* test_usage.c - the usage ledger's engine side (server/turn/usage.c): the bounded event queue a
 * worker drains into Redis, and the bounded table of ended allocations' totals per user.
 *
 * What usage.h promises: the queue keeps order (oldest first) across the ring's wrap, holds at
 * most `cap` events, refuses the newest past that and counts each refusal in `dropped`, copies the
 * name by its length; the ended table sums per user, holds at most `cap` users and drops the one
 * updated longest ago (LRU), counting evictions; with cap 0 it keeps nothing.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "unit.h"
#include "usage.h"

static usage_event_t ev_of(uint64_t id, const char *user)
{
    usage_event_t ev;
    memset(&ev, 0, sizeof(ev));
    ev.id = id;
    ev.kind = USAGE_CREATED;
    ev.ulen = (uint16_t)strlen(user);
    memcpy(ev.user, user, ev.ulen);
    return ev;
}

UNIT_TEST(queue_bounds_and_overflow)
{
    usage_queue_t q;
    CHECK_INT(usage_queue_init(&q, 4), 0);
    CHECK(usage_queue_peek(&q, 0) == NULL);
    for (uint64_t i = 1; i <= 4; i++) {
        usage_event_t ev = ev_of(i, "alice");
        CHECK_INT(usage_queue_push(&q, &ev), 0);
    }
    CHECK_INT((long)q.count, 4);
    /* Full: the newest is refused and counted, the queued ones stay as they were. */
    for (uint64_t i = 5; i <= 7; i++) {
        usage_event_t ev = ev_of(i, "bob");
        CHECK_INT(usage_queue_push(&q, &ev), -ENOSPC);
    }
    CHECK_INT((long)q.dropped, 3);
    CHECK_INT((long)q.count, 4);
    for (size_t i = 0; i < 4; i++)
        CHECK_INT((long)usage_queue_peek(&q, i)->id, (long)i + 1);
    CHECK(usage_queue_peek(&q, 4) == NULL);
    /* Pop two, push three: the ring wraps and order holds. */
    usage_queue_pop(&q, 2);
    for (uint64_t i = 8; i <= 10; i++) {
        usage_event_t ev = ev_of(i, "carol");
        int rc = usage_queue_push(&q, &ev);
        CHECK_INT(rc, i <= 9 ? 0 : -ENOSPC);
    }
    CHECK_INT((long)q.dropped, 4);
    const uint64_t want[] = {3, 4, 8, 9};
    for (size_t i = 0; i < 4; i++)
        CHECK_INT((long)usage_queue_peek(&q, i)->id, (long)want[i]);
    const usage_event_t *e = usage_queue_peek(&q, 2);
    CHECK_INT(e->ulen, 5);
    CHECK_STR(e->user, "carol");
    /* Popping more than is queued empties it. */
    usage_queue_pop(&q, 99);
    CHECK_INT((long)q.count, 0);
    usage_event_t ev = ev_of(11, "dave");
    CHECK_INT(usage_queue_push(&q, &ev), 0);
    CHECK_INT((long)usage_queue_peek(&q, 0)->id, 11);
    usage_queue_free(&q);
}

UNIT_TEST(queue_long_name_copied_whole)
{
    usage_queue_t q;
    CHECK_INT(usage_queue_init(&q, 2), 0);
    usage_event_t ev;
    memset(&ev, 0, sizeof(ev));
    ev.ulen = STUN_USERNAME_MAX;
    memset(ev.user, 'x', STUN_USERNAME_MAX);
    CHECK_INT(usage_queue_push(&q, &ev), 0);
    const usage_event_t *e = usage_queue_peek(&q, 0);
    CHECK_INT(e->ulen, STUN_USERNAME_MAX);
    CHECK_INT(e->user[STUN_USERNAME_MAX - 1], 'x');
    CHECK_INT(e->user[STUN_USERNAME_MAX], 0);
    usage_queue_free(&q);
}

static const uint8_t KEY[SIPHASH_KEY_LEN] = {9, 8, 7, 6, 5, 4, 3, 2, 1, 0, 1, 2, 3, 4, 5, 6};

static void add(usage_ended_t *t, const char *user, uint64_t bytes)
{
    usage_counts_t c = {bytes, 1, 2 * bytes, 2};
    usage_ended_add(t, user, strlen(user), &c);
}

UNIT_TEST(ended_sums_and_lru)
{
    usage_ended_t t;
    usage_sum_t s;
    usage_ended_init(&t, 3, KEY);
    CHECK(!usage_ended_get(&t, "alice", 5, &s));
    add(&t, "alice", 100);
    add(&t, "alice", 50);
    add(&t, "bob", 7);
    add(&t, "carol", 1);
    CHECK(usage_ended_get(&t, "alice", 5, &s));
    CHECK_INT((long)s.allocations, 2);
    CHECK_INT((long)s.c.to_peer_bytes, 150);
    CHECK_INT((long)s.c.to_peer_packets, 2);
    CHECK_INT((long)s.c.from_peer_bytes, 300);
    CHECK_INT((long)s.c.from_peer_packets, 4);
    /* Full (3 users): bob is the least recently updated once alice and carol are touched. */
    add(&t, "alice", 1);
    add(&t, "dave", 9);
    CHECK_INT((long)t.evicted, 1);
    CHECK_INT((long)t.count, 3);
    CHECK(!usage_ended_get(&t, "bob", 3, &s));
    CHECK_INT((long)s.allocations, 0);
    CHECK(usage_ended_get(&t, "carol", 5, &s) && s.c.to_peer_bytes == 1);
    CHECK(usage_ended_get(&t, "dave", 4, &s) && s.c.to_peer_bytes == 9);
    CHECK(usage_ended_get(&t, "alice", 5, &s) && s.allocations == 3);
    /* Names are bytes: a prefix is another user. */
    CHECK(!usage_ended_get(&t, "alic", 4, &s));
    usage_ended_free(&t);
}

UNIT_TEST(ended_many_users_bounded)
{
    usage_ended_t t;
    usage_sum_t s;
    usage_ended_init(&t, 100, KEY);
    char name[32];
    for (int i = 0; i < 1000; i++) {
        snprintf(name, sizeof(name), "user-%d", i);
        add(&t, name, (uint64_t)i);
    }
    CHECK_INT((long)t.count, 100);
    CHECK_INT((long)t.evicted, 900);
    /* The newest 100 stay, the older ones went. */
    CHECK(usage_ended_get(&t, "user-999", 8, &s) && s.c.to_peer_bytes == 999);
    CHECK(usage_ended_get(&t, "user-900", 8, &s));
    CHECK(!usage_ended_get(&t, "user-899", 8, &s));
    usage_ended_free(&t);
}

UNIT_TEST(ended_cap_zero_keeps_nothing)
{
    usage_ended_t t;
    usage_sum_t s;
    usage_ended_init(&t, 0, KEY);
    add(&t, "alice", 5);
    CHECK(!usage_ended_get(&t, "alice", 5, &s));
    CHECK_INT((long)t.count, 0);
    usage_ended_free(&t);
    /* A zeroed table (never initialised) frees cleanly. */
    usage_ended_t z;
    memset(&z, 0, sizeof(z));
    usage_ended_free(&z);
}

UNIT_MAIN("test_usage")
