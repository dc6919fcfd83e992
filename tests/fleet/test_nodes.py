"""Fleet-wide revocation, the usage stream across nodes, and a node killed with SIGKILL (issue 13's
Proof, tests/fleet/lab.py: three nodes on Redis Sentinel, clients in their own namespace).

- revoke: a user with a live allocation on node b is deleted through node c's admin API; the
  allocation on b is gone within 1 s of the DELETE (measured, printed).
- usage: two users relay known byte counts through a, b and c (payer on a and b, payee on b and c),
  each datagram of a known size each way through a UDP peer, then delete their allocations
  (Refresh 0); XRANGE turn/usage on the master (the one the sentinels name) holds one `deleted`
  event per allocation, from the node it was on, whose to_peer_bytes/from_peer_bytes (and packets)
  add up, per user, to exactly what the clients sent and the peers sent back.
- kill: SIGKILL node a; it leaves b's and c's GET /api/v1/cluster within 3 s (measured, printed)
  while clients relaying through b and c lose no datagram (100 a second each way, counted).
The tests run in this order (kill last: it takes a away).
"""
import json
import os
import signal
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from lab import REALM, run_fleet, traffic_abandon, traffic_no_loss  # noqa: E402
from uturn import check, wait_for  # noqa: E402

F = None


def test_revoke_on_c_ends_allocation_on_b():
    F.add_user("revokee", "revokee-pass")
    b, c = F.nodes["b"], F.nodes["c"]
    cl = F.client(b, "revokee", "revokee-pass")
    try:
        check(cl.allocate()[0] == 0, "revokee allocates on b")
        check(len(b.allocations_of("revokee")) == 1, "revokee's allocation is listed on b")
        t0 = time.monotonic()
        st, doc = c.api("DELETE", "/api/v1/realms/%s/users/revokee" % REALM)
        check(st == 200, "DELETE revokee on c: %d %r" % (st, doc))
        wait_for(lambda: not b.allocations_of("revokee"), 1.0,
                 "revokee's allocation on b ends within 1 s of the DELETE on c", interval=0.01)
        took = time.monotonic() - t0
        print("revoke on c -> allocation on b gone in %.0f ms" % (took * 1000), flush=True)
        check(took < 1.0, "revocation took %.3f s" % took)
        check(cl.refresh(600)[0] != 0, "revokee's Refresh on b succeeded after the revocation")
    finally:
        cl.close()


def _exchange(node, user, peer, n, c2p_size, p2c_size):
    """n datagrams of c2p_size bytes from user's client on node to peer, and n of p2c_size back,
    all checked to arrive (lock-step); then Refresh 0. Returns (bytes to peer, bytes from peer)."""
    c, relay = F.relaying(node, user, user + "-pass", peer)
    try:
        for i in range(n):
            c.channel_data(0x4001, bytes([i % 256]) * c2p_size)
            data, src = peer.recvfrom(65536)
            check(src == relay and len(data) == c2p_size,
                  "peer got %d bytes from %r" % (len(data), src))
            peer.sendto(bytes([i % 256]) * p2c_size, relay)
            got = c.receive_data(3)
            check(got is not None and len(got[2]) == p2c_size,
                  "client on %s got %r" % (node.id, got and len(got[2])))
        check(c.refresh(0)[0] == 0, "%s's Refresh 0 on %s" % (user, node.id))
    finally:
        c.close()
    return n * c2p_size, n * p2c_size


def test_usage_stream_totals_across_nodes():
    plan = [("payer", "a", 20, 100, 300), ("payer", "b", 30, 1000, 50),
            ("payee", "b", 10, 7, 1200), ("payee", "c", 25, 640, 64)]
    for u in ("payer", "payee"):
        F.add_user(u, u + "-pass")
    peer = F.udp_peer()
    peer.settimeout(3)
    want = {}
    for user, node, n, up, down in plan:
        to_peer, from_peer = _exchange(F.nodes[node], user, peer, n, up, down)
        w = want.setdefault(user, {"to_peer_bytes": 0, "from_peer_bytes": 0, "to_peer_packets": 0,
                                   "from_peer_packets": 0, "nodes": []})
        w["to_peer_bytes"] += to_peer
        w["from_peer_bytes"] += from_peer
        w["to_peer_packets"] += n
        w["from_peer_packets"] += n
        w["nodes"].append(node)
    peer.close()

    def deleted():
        events = usage_events(F.rcli(F.master_port(), "--json", "XRANGE", "turn/usage", "-", "+"))
        return [e for e in events if e.get("event") == "deleted" and e.get("user") in want]
    wait_for(lambda: len(deleted()) == len(plan), 5, "%d deleted events in turn/usage" % len(plan),
             interval=0.1)
    got = {}
    for e in deleted():
        g = got.setdefault(e["user"], {"to_peer_bytes": 0, "from_peer_bytes": 0,
                                       "to_peer_packets": 0, "from_peer_packets": 0, "nodes": []})
        for k in ("to_peer_bytes", "from_peer_bytes", "to_peer_packets", "from_peer_packets"):
            g[k] += int(e[k])
        g["nodes"].append(e["node"])
        check(e["reason"] == "deleted" and e["realm"] == REALM, "event %r" % e)
    for user in want:
        got[user]["nodes"].sort()
        want[user]["nodes"].sort()
        print("%s: clients sent %d bytes (%d datagrams) and received %d; turn/usage deleted events "
              "on nodes %s total %d and %d" % (user, want[user]["to_peer_bytes"],
                                               want[user]["to_peer_packets"],
                                               want[user]["from_peer_bytes"],
                                               ",".join(got[user]["nodes"]),
                                               got[user]["to_peer_bytes"],
                                               got[user]["from_peer_bytes"]), flush=True)
    check(got == want, "turn/usage totals per user %r, want %r" % (got, want))


def usage_events(text):
    """XRANGE as redis-cli --json prints it ([[id, [field, value, ...]], ...]): a dict each."""
    events = []
    for entry_id, flat in json.loads(text or "[]"):
        e = dict(zip(flat[0::2], flat[1::2]))
        e["id"] = entry_id
        events.append(e)
    return events


def test_kill_9_node_a():
    b, c, a = F.nodes["b"], F.nodes["c"], F.nodes["a"]
    F.add_user("steady", "steady-pass")
    for n in (b, c):
        check(n.cluster_ids() == ["a", "b", "c"], "a is in %s's view" % n.id)
    traffic, clients = {}, []
    try:
        F.start_streams((b, c), "steady", "steady-pass", traffic, clients)
        a.daemon.proc.send_signal(signal.SIGKILL)
        t0 = time.monotonic()
        a.daemon.proc.wait(10)
        gone = {}
        while len(gone) < 2 and time.monotonic() < t0 + 6:
            for n in (b, c):
                if n.id not in gone and "a" not in n.cluster_ids():
                    gone[n.id] = time.monotonic() - t0
            time.sleep(0.02)
        print("kill -9 a: gone from b's view in %s ms, from c's in %s ms"
              % tuple("%.0f" % (gone[k] * 1000) if k in gone else "never" for k in "bc"),
              flush=True)
        check(len(gone) == 2 and max(gone.values()) < 3.0, "a left the views within 3 s: %r" % gone)
        check(b.cluster_ids() == ["b", "c"] and c.cluster_ids() == ["b", "c"], "b and c remain")
        # A second of relaying after a's departure, then count.
        t1 = time.monotonic()
        wait_for(lambda: time.monotonic() - t1 >= 1.0, 2, "a second more of relaying")
        traffic_no_loss(traffic)
    finally:
        traffic_abandon(traffic)
        for cl in clients:
            cl.close()


def main():
    def bind(f):
        global F
        F = f
    run_fleet(bind)


if __name__ == "__main__":
    main()
