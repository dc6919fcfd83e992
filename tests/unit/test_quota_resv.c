/* test_quota_resv.c - the quotas (turn/quota.c) and EVEN-PORT reservations (turn/resv.c) that every
 * worker shares: RFC 8656 §7.2's 486 (user-quota) and 508 (total-quota) paths, release, limits
 * read from the live config snapshot (a reload), RFC 6062 peer connections per user; reservations
 * added, redeemed, refused once expired, expired by the sweep with their socket closed and their
 * quota unit given back, and a unit adopted by the user's own redeeming allocation. A fixed clock
 * and no loop: the engine's tables alone.
 */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "cfg.h"
#include "quota.h"
#include "resv.h"
#include "unit.h"

#define T0 1700000000000ULL /* the wall clock (ms) the reservations see */

static cfg_t cfg, cfg2;
static _Atomic(const cfg_t *) live;
static quota_t q;
static resv_table_t rt;

static void setup(int user_quota, int total_quota, int peer_quota)
{
    cfg_init(&cfg);
    cfg.user_quota = user_quota;
    cfg.total_quota = total_quota;
    cfg.user_peer_conn_quota = peer_quota;
    cfg.reservation_lifetime = 30;
    atomic_store(&live, &cfg);
    CHECK_INT(quota_init(&q, &live), 0);
    resv_init(&rt, &q, &live);
}

static void teardown(void)
{
    resv_close(&rt);
    quota_close(&q);
    cfg_free(&cfg);
}

/* A descriptor to hold (what relay ops' hold would give): a UDP socket. */
static int held_fd(void)
{
    int fd = socket(AF_INET, SOCK_DGRAM, 0);
    CHECK(fd >= 0);
    return fd;
}

static int fd_open(int fd) { return fcntl(fd, F_GETFD) != -1; }

static struct sockaddr_in relay_addr(uint16_t port)
{
    struct sockaddr_in a;
    memset(&a, 0, sizeof(a));
    a.sin_family = AF_INET;
    a.sin_port = htons(port);
    a.sin_addr.s_addr = htonl(0xC6336401); /* 198.51.100.1 */
    return a;
}

static void test_user_quota(void)
{
    setup(2, 0, 0);
    CHECK_INT(quota_take(&q, "alice", 5), 0);
    CHECK_INT(quota_take(&q, "alice", 5), 0);
    CHECK_INT(quota_take(&q, "alice", 5), -EDQUOT); /* 486 */
    CHECK_INT(quota_take(&q, "alic", 4), 0);        /* another name, not a prefix match */
    CHECK_INT(quota_take(&q, "bob", 3), 0);
    CHECK_INT(quota_total(&q), 4);
    quota_release(&q, "alice", 5);
    CHECK_INT(quota_total(&q), 3);
    CHECK_INT(quota_take(&q, "alice", 5), 0); /* the released unit is free again */
    CHECK_INT(quota_take(&q, "alice", 5), -EDQUOT);
    quota_release(&q, "carol", 5); /* never counted: nothing changes */
    CHECK_INT(quota_total(&q), 4);
    /* Down to zero, the entry goes; counting starts again from 0. */
    quota_release(&q, "bob", 3);
    CHECK_INT(quota_take(&q, "bob", 3), 0);
    CHECK_INT(quota_take(&q, "bob", 3), 0);
    CHECK_INT(quota_take(&q, "bob", 3), -EDQUOT);
    teardown(); /* alice's and bob's units still counted: quota_close frees them (LeakSanitizer) */
}

static void test_total_quota(void)
{
    setup(0, 3, 0); /* user-quota 0: unlimited per user */
    CHECK_INT(quota_take(&q, "a", 1), 0);
    CHECK_INT(quota_take(&q, "a", 1), 0);
    CHECK_INT(quota_take(&q, "b", 1), 0);
    CHECK_INT(quota_take(&q, "c", 1), -ENOSPC); /* 508, also for a user holding nothing */
    CHECK_INT(quota_take(&q, "a", 1), -ENOSPC);
    CHECK_INT(quota_total(&q), 3);
    quota_release(&q, "a", 1);
    CHECK_INT(quota_take(&q, "c", 1), 0);
    CHECK_INT(quota_total(&q), 3);
    teardown();
}

static void test_reload(void)
{
    setup(1, 0, 0);
    CHECK_INT(quota_take(&q, "alice", 5), 0);
    CHECK_INT(quota_take(&q, "alice", 5), -EDQUOT);
    /* A reload swaps the snapshot: the next take reads the new limits. */
    cfg_init(&cfg2);
    cfg2.user_quota = 3;
    cfg2.total_quota = 0;
    atomic_store(&live, &cfg2);
    CHECK_INT(quota_take(&q, "alice", 5), 0);
    CHECK_INT(quota_take(&q, "alice", 5), 0);
    CHECK_INT(quota_take(&q, "alice", 5), -EDQUOT);
    /* Lowered below what a user holds: nothing is taken away, no new unit until under it. */
    cfg2.total_quota = 2;
    CHECK_INT(quota_take(&q, "bob", 3), -ENOSPC);
    cfg2.total_quota = 0;
    cfg2.user_quota = 2;
    quota_release(&q, "alice", 5);
    CHECK_INT(quota_take(&q, "alice", 5), -EDQUOT); /* holds 2 of 2 */
    quota_release(&q, "alice", 5);
    CHECK_INT(quota_take(&q, "alice", 5), 0);
    atomic_store(&live, &cfg);
    cfg_free(&cfg2);
    teardown();
}

static void test_peer_connections(void)
{
    setup(1, 1, 2);
    /* Counted apart from allocations: a user at its allocation quota still gets them. */
    CHECK_INT(quota_take(&q, "alice", 5), 0);
    CHECK_INT(quota_peer_conn_take(&q, "alice", 5), 0);
    CHECK_INT(quota_peer_conn_take(&q, "alice", 5), 0);
    CHECK_INT(quota_peer_conn_take(&q, "alice", 5), -EDQUOT);
    CHECK_INT(quota_peer_conn_take(&q, "bob", 3), 0);
    CHECK_INT(quota_total(&q), 1); /* peer connections are not allocations */
    /* They may outlive the allocation's quota entry. */
    quota_release(&q, "alice", 5);
    CHECK_INT(quota_peer_conn_take(&q, "alice", 5), -EDQUOT);
    quota_peer_conn_release(&q, "alice", 5);
    CHECK_INT(quota_peer_conn_take(&q, "alice", 5), 0);
    quota_peer_conn_release(&q, "nobody", 6); /* harmless */
    /* 0 = unlimited, read at the next take. */
    cfg.user_peer_conn_quota = 0;
    for (int i = 0; i < 100; i++)
        CHECK_INT(quota_peer_conn_take(&q, "bob", 3), 0);
    teardown();
}

static void test_resv_take(void)
{
    setup(2, 0, 0);
    struct sockaddr_in a = relay_addr(50001);
    int fd = held_fd();
    /* R=1: the caller took a second unit for the reservation, which keeps it. */
    CHECK_INT(quota_take(&q, "alice", 5), 0);
    CHECK_INT(quota_take(&q, "alice", 5), 0);
    uint64_t tok = resv_add(&rt, fd, (struct sockaddr *)&a, T0, "alice", 5);
    CHECK(tok != 0);
    CHECK_INT(quota_take(&q, "alice", 5), -EDQUOT); /* the reservation pins a unit */
    sa_any_t got;
    CHECK_INT(resv_take(&rt, tok ^ 1, &got, T0), -1); /* unknown token */
    CHECK_INT(quota_total(&q), 2);
    /* Redeemed before it expires: the fd and address come back, the unit is released. */
    CHECK_INT(resv_take(&rt, tok, &got, T0 + 29999), fd);
    CHECK(sa_equal(&got.sa, (struct sockaddr *)&a));
    CHECK(fd_open(fd)); /* the caller owns it now */
    CHECK_INT(quota_total(&q), 1);
    CHECK_INT(resv_take(&rt, tok, &got, T0), -1); /* once only */
    CHECK_INT(quota_total(&q), 1);
    close(fd);
    /* Without a user nothing is counted. */
    fd = held_fd();
    tok = resv_add(&rt, fd, (struct sockaddr *)&a, T0, NULL, 0);
    CHECK(tok != 0);
    CHECK_INT(quota_total(&q), 1);
    CHECK_INT(resv_take(&rt, tok, &got, T0), fd);
    CHECK_INT(quota_total(&q), 1);
    close(fd);
    teardown();
}

static void test_resv_expired(void)
{
    setup(2, 0, 0);
    struct sockaddr_in a = relay_addr(50003);
    int fd = held_fd();
    CHECK_INT(quota_take(&q, "alice", 5), 0);
    uint64_t tok = resv_add(&rt, fd, (struct sockaddr *)&a, T0, "alice", 5);
    /* reservation-lifetime 30 s: at T0 + 30 s exactly it is gone. The token is refused, and the
     * reservation still goes: its socket closed, its unit back. */
    sa_any_t got;
    CHECK_INT(resv_take(&rt, tok, &got, T0 + 30000), -1);
    CHECK(!fd_open(fd));
    CHECK_INT(quota_total(&q), 0);
    CHECK_INT(resv_take(&rt, tok, &got, T0), -1); /* and is forgotten */
    teardown();
}

static void test_resv_sweep(void)
{
    setup(3, 0, 0);
    struct sockaddr_in a = relay_addr(50005);
    int fd1 = held_fd(), fd2 = held_fd();
    CHECK_INT(quota_take(&q, "alice", 5), 0);
    uint64_t t1 = resv_add(&rt, fd1, (struct sockaddr *)&a, T0, "alice", 5);
    CHECK_INT(quota_take(&q, "alice", 5), 0);
    uint64_t t2 = resv_add(&rt, fd2, (struct sockaddr *)&a, T0 + 10000, "alice", 5);
    CHECK(t1 != t2);
    CHECK_INT(quota_take(&q, "alice", 5), 0);
    CHECK_INT(quota_take(&q, "alice", 5), -EDQUOT);
    resv_expire(&rt, T0 + 29999); /* neither is due */
    CHECK(fd_open(fd1) && fd_open(fd2));
    CHECK_INT(quota_total(&q), 3);
    resv_expire(&rt, T0 + 30000); /* the first is */
    CHECK(!fd_open(fd1));
    CHECK(fd_open(fd2));
    CHECK_INT(quota_total(&q), 2);
    CHECK_INT(quota_take(&q, "alice", 5), 0); /* its unit is free again */
    /* A reload shortens the lifetime of reservations made after it, not of those held. */
    cfg.reservation_lifetime = 1;
    int fd3 = held_fd();
    uint64_t t3 = resv_add(&rt, fd3, (struct sockaddr *)&a, T0 + 10000, NULL, 0);
    resv_expire(&rt, T0 + 11000);
    CHECK(!fd_open(fd3));
    CHECK(fd_open(fd2));
    sa_any_t got;
    CHECK_INT(resv_take(&rt, t3, &got, T0 + 10500), -1);
    CHECK_INT(resv_take(&rt, t2, &got, T0 + 39999), fd2);
    close(fd2);
    teardown();
}

static void test_resv_adopt_unit(void)
{
    setup(1, 0, 0);
    struct sockaddr_in a = relay_addr(50007);
    int fd = held_fd();
    /* alice's whole quota (1) sits in her reservation. */
    CHECK_INT(quota_take(&q, "alice", 5), 0);
    uint64_t tok = resv_add(&rt, fd, (struct sockaddr *)&a, T0, "alice", 5);
    CHECK_INT(quota_take(&q, "alice", 5), -EDQUOT);
    /* Not hers, a wrong token or too late: no unit changes hands. */
    CHECK_INT(resv_adopt_unit(&rt, tok, "bob", 3, T0), 0);
    CHECK_INT(resv_adopt_unit(&rt, tok ^ 1, "alice", 5, T0), 0);
    CHECK_INT(resv_adopt_unit(&rt, tok, "alice", 5, T0 + 30000), 0);
    /* Hers: the unit passes to the new allocation, so redeeming releases none. */
    CHECK_INT(resv_adopt_unit(&rt, tok, "alice", 5, T0 + 1000), 1);
    CHECK_INT(resv_adopt_unit(&rt, tok, "alice", 5, T0 + 1000), 0); /* once only */
    sa_any_t got;
    CHECK_INT(resv_take(&rt, tok, &got, T0 + 1000), fd);
    CHECK_INT(quota_total(&q), 1); /* held by the allocation now */
    CHECK_INT(quota_take(&q, "alice", 5), -EDQUOT);
    quota_release(&q, "alice", 5); /* the allocation ends */
    CHECK_INT(quota_total(&q), 0);
    close(fd);
    /* An adopted reservation that then expires gives nothing back (its unit is gone). */
    fd = held_fd();
    CHECK_INT(quota_take(&q, "alice", 5), 0);
    tok = resv_add(&rt, fd, (struct sockaddr *)&a, T0, "alice", 5);
    CHECK_INT(resv_adopt_unit(&rt, tok, "alice", 5, T0), 1);
    resv_expire(&rt, T0 + 30000);
    CHECK(!fd_open(fd));
    CHECK_INT(quota_total(&q), 1);
    quota_release(&q, "alice", 5);
    teardown();
}

static void test_resv_close(void)
{
    setup(2, 0, 0);
    struct sockaddr_in a = relay_addr(50009);
    int fd = held_fd();
    CHECK_INT(quota_take(&q, "alice", 5), 0);
    CHECK(resv_add(&rt, fd, (struct sockaddr *)&a, T0, "alice", 5) != 0);
    resv_close(&rt); /* shutdown: the held socket is closed */
    CHECK(!fd_open(fd));
    quota_close(&q);
    cfg_free(&cfg);
}

int main(void)
{
    test_user_quota();
    test_total_quota();
    test_reload();
    test_peer_connections();
    test_resv_take();
    test_resv_expired();
    test_resv_sweep();
    test_resv_adopt_unit();
    test_resv_close();
    return unit_done("test_quota_resv");
}
