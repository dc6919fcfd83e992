/* test_dispatch_hooks.c - the dispatcher's hooks to the world outside the engine, driven with
 * fakes (dispatch_fixture.h): the fleet's cluster-wide user-quota (quota_cluster_ops_t) and the
 * kernel path's offload and fold (dispatch_relay_ops_t). */
#include "dispatch_fixture.h"

/* Cluster-wide user-quota through quota_cluster_ops_t (issue 13), with a fake fleet: an Allocate
 * that must wait is parked and replayed with the answer; a refusal is 486; every unit the fleet
 * gave is given back once: Refresh 0, expiry, a failed Allocate, a replay that no longer needs
 * it, and a parked request whose connection goes is cancelled. */
static int cq_mode; /* what take answers: an enum quota_cluster_answer */
static int cq_takes, cq_releases, cq_cancels;
static quota_cluster_cb cq_cb;
static void *cq_arg;

static int cq_take(void *env, const char *user, size_t ulen, quota_cluster_cb cb, void *arg)
{
    (void)env;
    CHECK(ulen == 5 && memcmp(user, "alice", 5) == 0);
    cq_takes++;
    cq_cb = cb;
    cq_arg = arg;
    return cq_mode;
}

static void cq_release(void *env, const char *user, size_t ulen)
{
    (void)env;
    CHECK(ulen == 5 && memcmp(user, "alice", 5) == 0);
    cq_releases++;
}

static void cq_cancel(void *env, void *arg)
{
    (void)env;
    cq_cancels += arg == cq_arg;
}

/* The parked Allocate gets the fleet's `answer`: the code of what the replay sent. */
static int cq_answer(int answer)
{
    last_len = 0;
    quota_cluster_cb cb = cq_cb;
    cq_cb = NULL;
    CHECK(cb != NULL);
    if (cb)
        cb(cq_arg, answer);
    return last_code();
}

UNIT_TEST(cluster_quota)
{
    static const char *const extra[] = {"user-quota", "2", NULL};
    uint32_t zero = 0;
    env_setup(extra);
    d.cquota = (quota_cluster_ops_t){cq_take, cq_release, cq_cancel, NULL};
    cq_takes = cq_releases = cq_cancels = 0;
    /* Pending, then OK: parked (no answer yet), replayed with the unit; Refresh 0 gives it back. */
    cq_mode = QUOTA_CLUSTER_PENDING;
    CHECK_INT(allocate("alice", "secret"), -1);
    CHECK_INT((int)d.npending, 1);
    CHECK_INT((int)quota_total(&shared.quota), 0); /* a parked request holds no local unit */
    CHECK_INT(cq_answer(QUOTA_CLUSTER_OK), 0);
    CHECK_INT((int)d.npending, 0);
    CHECK_INT(cq_takes, 1); /* the replay used the answer: no second take */
    CHECK_INT((int)quota_total(&shared.quota), 1);
    CHECK_INT(request(STUN_METHOD_REFRESH, "alice", "secret", add_lifetime, &zero), 0);
    CHECK_INT(cq_releases, 1);
    CHECK_INT((int)quota_total(&shared.quota), 0);
    /* Pending, then refused: 486, nothing held anywhere. */
    client.sin_port = htons(40201);
    CHECK_INT(allocate("alice", "secret"), -1);
    CHECK_INT(cq_answer(QUOTA_CLUSTER_REFUSED), 486);
    CHECK_INT((int)quota_total(&shared.quota), 0);
    CHECK_INT(cq_releases, 1);
    /* Refused at once: 486. LOCAL (Redis away): the node's own count decides, nothing to give
     * back when the allocation goes (here by expiry). */
    cq_mode = QUOTA_CLUSTER_REFUSED;
    client.sin_port = htons(40202);
    CHECK_INT(allocate("alice", "secret"), 486);
    cq_mode = QUOTA_CLUSTER_LOCAL;
    client.sin_port = htons(40203);
    CHECK_INT(allocate("alice", "secret"), 0);
    advance(601 * 1000);
    CHECK_INT((int)quota_total(&shared.quota), 0);
    CHECK_INT(cq_releases, 1);
    /* OK at once, then expiry: given back. */
    cq_mode = QUOTA_CLUSTER_OK;
    client.sin_port = htons(40204);
    CHECK_INT(allocate("alice", "secret"), 0);
    advance(601 * 1000);
    CHECK_INT(cq_releases, 2);
    /* A failed Allocate (no relay port) after the unit was taken: given back. */
    open_fails = 1;
    client.sin_port = htons(40205);
    CHECK(allocate("alice", "secret") > 0);
    open_fails = 0;
    CHECK_INT(cq_releases, 3);
    /* A parked request whose connection goes: cancelled (the owner gives a late unit back). */
    cq_mode = QUOTA_CLUSTER_PENDING;
    client.sin_port = htons(40211);
    CHECK_INT(allocate("alice", "secret"), -1);
    CHECK_INT((int)d.npending, 1);
    turn_conn_t conn = {transport, (struct sockaddr *)&client, (struct sockaddr *)&local, sink,
                        NULL};
    dispatch_conn_gone(&d, &conn);
    CHECK_INT((int)d.npending, 0);
    CHECK_INT(cq_cancels, 1);
    cq_mode = QUOTA_CLUSTER_OK;
    /* The local quota first: at user-quota here, the fleet is not asked. */
    client.sin_port = htons(40206);
    CHECK_INT(allocate("alice", "secret"), 0);
    client.sin_port = htons(40207);
    CHECK_INT(allocate("alice", "secret"), 0);
    int takes = cq_takes;
    client.sin_port = htons(40208);
    CHECK_INT(allocate("alice", "secret"), 486);
    CHECK_INT(cq_takes, takes);
    /* A replay that no longer needs its unit (the node filled up meanwhile): 486, given back. */
    client.sin_port = htons(40207);
    /* A nonce is bound to the client's address: this 5-tuple's own first (438 hands it out). */
    CHECK_INT(request(STUN_METHOD_REFRESH, "alice", "secret", add_lifetime, &zero), 438);
    CHECK_INT(request(STUN_METHOD_REFRESH, "alice", "secret", add_lifetime, &zero), 0);
    CHECK_INT(cq_releases, 4);
    cq_mode = QUOTA_CLUSTER_PENDING;
    client.sin_port = htons(40209);
    CHECK_INT(allocate("alice", "secret"), -1);
    quota_cluster_cb parked_cb = cq_cb;
    void *parked_arg = cq_arg;
    cq_mode = QUOTA_CLUSTER_OK;
    client.sin_port = htons(40210);
    CHECK_INT(allocate("alice", "secret"), 0); /* alice at 2 on this node again */
    client.sin_port = htons(40209);
    cq_cb = parked_cb;
    cq_arg = parked_arg;
    CHECK_INT(cq_answer(QUOTA_CLUSTER_OK), 486);
    CHECK_INT(cq_releases, 5);
    /* Teardown deletes alice's two allocations: both units go back. */
    int before = cq_releases;
    env_teardown();
    CHECK_INT(cq_releases - before, 2);
}

/* The kernel path's hook (dispatch_relay_ops_t.offload/fold) with a fake that records the calls:
 * every change the kernel must know of makes one call, a refused request none, and each deletion,
 * whatever its reason, one gone=1 call before the final usage event, whose totals include what the
 * fake "kernel" counted. */
static int off_calls, off_gone, off_folds;
static int off_state; /* what a->offload points at */

static void fake_offload(void *env, alloc_t *a, int gone)
{
    (void)env;
    if (gone) {
        CHECK(a->dead); /* out of the table already: nothing can reach it again */
        off_gone++;
        if (a->offload) {
            a->traffic.to_peer_packets += 1000; /* the kernel's last counts */
            a->traffic.to_peer_bytes += 100000;
        }
        a->offload = NULL;
        a->kernel = false;
        return;
    }
    off_calls++;
    a->offload = &off_state;
    a->kernel = true;
}

static void fake_fold(void *env, alloc_t *a)
{
    (void)env;
    CHECK(a->offload == &off_state);
    off_folds++;
    a->traffic.from_peer_packets += 1;
    a->traffic.from_peer_bytes += 10;
}

static int off_expect(int calls, int gone)
{
    int ok = off_calls == calls && off_gone == gone;
    if (!ok)
        fprintf(stderr, "offload calls %d (want %d), gone %d (want %d)\n", off_calls, calls,
                off_gone, gone);
    return ok;
}

UNIT_TEST(offload_hook)
{
    static const char *const extra[] = {"usage-interval", "10", NULL};
    env_setup(extra);
    nevents = 0;
    off_calls = off_gone = off_folds = 0;
    d.relay.offload = fake_offload;
    d.relay.fold = fake_fold;
    d.usage.event = on_usage;
    open_fails = 1;
    CHECK(allocate("alice", "secret") != 0);
    open_fails = 0;
    CHECK(off_expect(0, 1)); /* a failed Allocate: nothing installed, the one gone call */
    CHECK_INT(allocate("alice", "secret"), 0);
    CHECK(off_expect(1, 1)); /* created */
    alloc_t *a = LIST_FIRST(&d.allocs.all, alloc_t, link);
    if (!a)
        return;
    CHECK(a->kernel);
    struct sockaddr_in p1 = peer_addr("203.0.113.50", 5000);
    struct sockaddr_in p2 = peer_addr("203.0.113.51", 5001);
    CHECK_INT(request(STUN_METHOD_CREATE_PERMISSION, "alice", "secret", add_peer, &p1), 0);
    CHECK(off_expect(2, 1)); /* permission installed */
    advance(1000);
    CHECK_INT(request(STUN_METHOD_CREATE_PERMISSION, "alice", "secret", add_peer, &p1), 0);
    CHECK(off_expect(3, 1)); /* refreshed */
    chan_arg_t ch = {0x4001, &p2};
    CHECK_INT(request(STUN_METHOD_CHANNEL_BIND, "alice", "secret", add_channel, &ch), 0);
    CHECK(off_expect(4, 1)); /* channel bound (and its permission) */
    CHECK_INT(request(STUN_METHOD_CHANNEL_BIND, "alice", "secret", add_channel, &ch), 0);
    CHECK(off_expect(5, 1)); /* refreshed */
    chan_arg_t other = {0x4001, &p1};
    CHECK_INT(request(STUN_METHOD_CHANNEL_BIND, "alice", "secret", add_channel, &other), 400);
    struct sockaddr_in bad = peer_addr("10.0.0.1", 5000);
    CHECK_INT(request(STUN_METHOD_CREATE_PERMISSION, "alice", "secret", add_peer, &bad), 403);
    CHECK(off_expect(5, 1)); /* refused requests change nothing */
    uint32_t lt = 900;
    CHECK_INT(request(STUN_METHOD_REFRESH, "alice", "secret", add_lifetime, &lt), 0);
    CHECK(off_expect(6, 1)); /* lifetime refreshed */
    /* The usage events fold the kernel's counts first: created (0), refreshed (1). */
    CHECK_INT(nevents, 2);
    CHECK_INT(events[1].kind, USAGE_REFRESHED);
    CHECK_INT((long)events[1].c.from_peer_packets, (long)off_folds);
    advance(5000);
    CHECK(off_expect(6, 1)); /* a sweep that expires nothing says nothing */
    advance(295 * 1000);     /* p1 (refreshed at +1 s) and p2 (bound at +1 s): 300 s */
    CHECK(!alloc_perm_check(a, (struct sockaddr *)&p1, d.now_ms));
    CHECK(off_expect(7, 1)); /* the sweep expired both permissions: one call */
    advance(300 * 1000);
    CHECK(alloc_chan_by_number(a, 0x4001, d.now_ms) == NULL);
    CHECK(off_expect(8, 1)); /* the channel expired */
    /* The admin's views fold before they copy. */
    int folds = off_folds;
    CHECK(alloc_view_find(&d, a->id) == a);
    CHECK_INT(off_folds, folds + 1);
    alloc_view_t v;
    alloc_view_fill(&d, a, &v);
    CHECK(v.kernel);
    CHECK_INT((long)v.traffic.from_peer_packets, (long)off_folds);
    usage_sum_t live, ended;
    dispatch_usage_user(&d, "alice", 5, &live, &ended);
    CHECK_INT(off_folds, folds + 2);
    CHECK_INT((long)live.c.from_peer_packets, (long)off_folds);
    /* Refresh 0: one gone call, before the deleted event, whose totals hold its last counts. */
    uint32_t zero = 0;
    CHECK_INT(request(STUN_METHOD_REFRESH, "alice", "secret", add_lifetime, &zero), 438);
    CHECK(off_expect(8, 1)); /* a stale nonce (600 s) changes nothing */
    CHECK_INT(request(STUN_METHOD_REFRESH, "alice", "secret", add_lifetime, &zero), 0);
    CHECK(off_expect(8, 2));
    CHECK_INT(events[nevents - 1].kind, USAGE_DELETED);
    CHECK_INT((long)events[nevents - 1].c.to_peer_packets, 1000);
    CHECK_INT((long)events[nevents - 1].c.from_peer_packets, (long)off_folds);
    dispatch_usage_user(&d, "alice", 5, &live, &ended);
    CHECK_INT((long)ended.c.to_peer_packets, 1000);
    /* Expiry, the admin's kill, and shutdown: one gone call each. */
    client.sin_port = htons(40300);
    CHECK_INT(allocate("alice", "secret"), 0);
    advance(601 * 1000);
    CHECK(off_expect(9, 3));
    CHECK_INT(events[nevents - 1].reason, USAGE_REASON_EXPIRED);
    CHECK_INT((long)events[nevents - 1].c.to_peer_packets, 1000);
    client.sin_port = htons(40301);
    CHECK_INT(allocate("alice", "secret"), 0);
    a = LIST_FIRST(&d.allocs.all, alloc_t, link);
    if (a)
        dispatch_alloc_delete(&d, a, DISPATCH_GONE_KILLED);
    CHECK(off_expect(10, 4));
    CHECK_INT(events[nevents - 1].reason, USAGE_REASON_KILLED);
    client.sin_port = htons(40302);
    CHECK_INT(allocate("alice", "secret"), 0);
    CHECK(off_expect(11, 4));
    dispatch_close(&d);
    CHECK(off_expect(11, 5));
    turn_shared_close(&shared);
    cfg_free(&cfg);
}

/* Without the hook (no kernel path) nothing changes: the existing tests above run that way. */

UNIT_MAIN("test_dispatch_hooks")
