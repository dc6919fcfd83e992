"""Cluster-wide user-quota in the lab (issue 13's Proof, tests/fleet/lab.py: three nodes on Redis
Sentinel, clients in their own namespace, user-quota = 2 on every node).

- refused: a user holding 2 allocations on node a is refused with 486 on node b and on node c (the
  quota counts the user's allocations on every live node, through Redis).
- kill: SIGKILL node a while the user still holds its 2 allocations there; within 3 s of the kill
  (measured, printed) node b accepts that user's Allocate again, because a's share of the count
  leaves with its registry entry; meanwhile clients relaying through b and c (another user, 100
  datagrams a second each way) lose no datagram.
The tests run in this order (kill last: it takes a away).
"""
import os
import signal
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from lab import run_fleet, traffic_abandon, traffic_no_loss  # noqa: E402
from uturn import check, wait_for  # noqa: E402

F = None
QUOTA = 2
USER, PASS = "quota-user", "quota-user-pass"
HELD = []  # the user's allocations on node a, kept for the kill test


def _try_allocate(node):
    """One Allocate as USER from a fresh client on `node`: (0 or the error code, the client or
    None). A refused client is closed here."""
    cl = F.client(node, USER, PASS)
    code = cl.allocate()[0]
    if code != 0:
        cl.close()
        return code, None
    return 0, cl


def test_user_at_quota_on_a_refused_on_b_and_c():
    F.add_user(USER, PASS)
    for i in range(QUOTA):
        code, cl = _try_allocate(F.nodes["a"])
        check(code == 0, "allocation %d of %s on a: %s" % (i + 1, USER, code))
        HELD.append(cl)
    check(len(F.nodes["a"].allocations_of(USER)) == QUOTA, "a lists the user's allocations")
    for n in ("b", "c"):
        code, cl = _try_allocate(F.nodes[n])
        if cl:
            cl.close()
        print("%s at quota on a, Allocate on %s: %s" % (USER, n, code), flush=True)
        check(code == 486, "Allocate on %s with %d held on a: %s, want 486" % (n, QUOTA, code))


def test_kill_9_a_frees_the_quota_within_3s():
    check(len(HELD) == QUOTA, "the previous test holds the user's allocations on a")
    b, c, a = F.nodes["b"], F.nodes["c"], F.nodes["a"]
    F.add_user("steady-q", "steady-q-pass")
    traffic, clients, got = {}, [], []
    try:
        F.start_streams((b, c), "steady-q", "steady-q-pass", traffic, clients)
        a.daemon.proc.send_signal(signal.SIGKILL)
        t0 = time.monotonic()
        a.daemon.proc.wait(10)
        took = None
        while time.monotonic() < t0 + 6:
            code, cl = _try_allocate(b)
            if code == 0:
                took = time.monotonic() - t0
                got.append(cl)
                break
            check(code == 486, "Allocate on b while a's share counts: %s, want 486" % code)
            time.sleep(0.05)
        print("kill -9 a: b accepted %s again %s ms after the kill"
              % (USER, "%.0f" % (took * 1000) if took is not None else "never"), flush=True)
        check(took is not None and took < 3.0, "the quota was not freed within 3 s: %r" % took)
        t1 = time.monotonic()
        wait_for(lambda: time.monotonic() - t1 >= 1.0, 2, "a second more of relaying")
        traffic_no_loss(traffic)
    finally:
        traffic_abandon(traffic)
        for cl in clients + got + HELD:
            cl.close()


def main():
    def bind(f):
        global F
        F = f
    run_fleet(bind, node_conf={n: ["user-quota = %d" % QUOTA] for n in "abc"})


if __name__ == "__main__":
    main()
