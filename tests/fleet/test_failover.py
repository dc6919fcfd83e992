"""Kill the Redis master under a fleet that is relaying (issue 13's Proof, tests/fleet/lab.py).

Three nodes (a, b, c) find the master through three real sentinels. Before the failover:
- the harness TurnClient relays through node b and through node c (ChannelData to a UDP peer in the
  clients' namespace and back, 100 datagrams a second each way, sequence-numbered), and
- coturn's turnutils_uclient (two clients) relays through node b to turnutils_peer (an echo peer).
Then the master is SIGKILLed. The sentinels promote the replica (waited for with a deadline; the
time from the kill is printed). Asserted:
- every live relay lost nothing: each datagram sent either way through b and c arrived (on veths
  inside one host a datagram is lost only to a full receive buffer, i.e. a relay that stopped for
  seconds), and uclient's `Total lost packets` is 0 with all it sent echoed back; uclient was still
  running when the master died (else it proves nothing about the failover);
- every node's two workers log that they moved to the new master and are connected again
  (uturn_redis_connections_up), and a user written to the new master after the failover allocates
  on a, b and c;
- each node's longest worker loop stall (uturn_loop_stall_max_seconds) stays under 250 ms (printed).
UTURN_FLEET_SECONDS keeps the relays running that many seconds after the failover (default 2).
"""
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from lab import (CLI_IP, REDIS_IP, REPLICA_PORT, need, run_fleet, traffic_abandon,  # noqa: E402
                 traffic_no_loss)
from test_redis_sentinel import Traffic  # noqa: E402
from uturn import check, timeout, wait_for  # noqa: E402

F = None
FAILOVER_DEADLINE = 25  # s for the sentinels to promote the replica
FOLLOW_DEADLINE = 15    # s for every node to be connected to the new master
STALL_LIMIT = 0.25      # s
AFTER = float(os.environ.get("UTURN_FLEET_SECONDS", "2"))
UCLIENT_MSGS = 400      # per uclient client: long enough to span the failover


def uclient_start(node, user, password, peer_port):
    cmd = ["ip", "netns", "exec", F.cli.ns, "turnutils_uclient", "-p", str(node.port), "-u", user,
           "-w", password, "-e", CLI_IP, "-r", str(peer_port), "-n", str(UCLIENT_MSGS), "-m", "2",
           "-l", "120", node.host]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def uclient_result(p):
    import re
    out, _ = p.communicate(timeout=120)
    sent = re.findall(r"tot_send_msgs=(\d+)", out)
    recv = re.findall(r"tot_recv_msgs=(\d+)", out)
    lost = re.findall(r"Total lost packets (\d+)", out)
    return (int(sent[-1]) if sent else -1, int(recv[-1]) if recv else -1,
            int(lost[-1]) if lost else -1, out)


@timeout(120)
def test_failover_with_live_relays():
    nodes = F.nodes
    F.add_user("live", "live-pass")
    peer_port = 3480
    F.cli.start(["turnutils_peer", "-L", CLI_IP, "-p", str(peer_port)], "turnutils_peer")
    traffic, clients = {}, []
    uc = None
    try:
        for n in "bc":
            peer = F.udp_peer()
            c, relay = F.relaying(nodes[n], "live", "live-pass", peer)
            clients.append(c)
            traffic[n] = Traffic(c, 0x4001, peer, relay)
            traffic[n].start()
        for n, t in traffic.items():
            wait_for(lambda: len(t.got_c2p) > 20 and len(t.got_p2c) > 20, 5,
                     "traffic both ways through %s before the failover" % n)
        uc = uclient_start(nodes["b"], "live", "live-pass", peer_port)
        # uclient is relaying (its allocations are listed on b) before the master dies.
        wait_for(lambda: len(nodes["b"].allocations_of("live")) >= 3, 10,
                 "uclient's two allocations on b")
        old = F.master()
        t_kill = time.monotonic()
        F.kill("master")
        check(uc.poll() is None, "uclient finished before the master was killed: lengthen it")
        new = (REDIS_IP, REPLICA_PORT)
        wait_for(lambda: F.master() == new, FAILOVER_DEADLINE, "the sentinels promote the replica",
                 interval=0.1)
        t_promoted = time.monotonic()
        # Each node's two workers say they moved to the new master, and are connected.
        moved = "is %s:%d (was %s:%d;" % (REDIS_IP, REPLICA_PORT, old[0], old[1])
        for n in nodes.values():
            wait_for(lambda: n.log().count(moved) >= 2
                     and n.metric("uturn_redis_connections_up") == 2, FOLLOW_DEADLINE,
                     "node %s's two workers connected to the new master" % n.id, interval=0.05)
        t_followed = time.monotonic()
        print("failover: master %s:%d killed; replica promoted (as the sentinels answer) after "
              "%.2f s; every node's workers logged the new master and were up by %.2f s"
              % (old[0], old[1], t_promoted - t_kill, t_followed - t_kill), flush=True)

        # A user who exists only on the new master allocates on every node.
        F.add_user("after", "after-pass", port=REPLICA_PORT)
        for n in nodes.values():
            c = F.client(n, "after", "after-pass")
            try:
                code, _ = c.allocate()
                check(code == 0, "user 'after' (new master only) on node %s: %s" % (n.id, code))
            finally:
                c.close()
        print("user provisioned after the failover allocated on a, b and c", flush=True)

        wait_for(lambda: time.monotonic() - t_followed >= AFTER, AFTER + 1, "the relays to run on")
        traffic_no_loss(traffic)
        sent, recv, lost, text = uclient_result(uc)
        uc = None
        print("turnutils_uclient via b: sent %d, received %d, lost %d" % (sent, recv, lost),
              flush=True)
        check(sent > 0 and recv == sent and lost == 0,
              "uclient via b: sent %d received %d lost %d\n%s" % (sent, recv, lost, text[-3000:]))
        stalls = {n.id: n.metric("uturn_loop_stall_max_seconds") for n in nodes.values()}
        print("longest worker loop stall: %s" % ", ".join(
            "%s %.1f ms" % (k, v * 1000) for k, v in sorted(stalls.items())), flush=True)
        for k, v in stalls.items():
            check(v is not None and v < STALL_LIMIT, "node %s stalled %s s" % (k, v))
    finally:
        traffic_abandon(traffic)
        for c in clients:
            c.close()
        if uc is not None and uc.poll() is None:
            uc.kill()
            uc.wait(10)


def main():
    need("turnutils_uclient", "turnutils_peer")

    def bind(f):
        global F
        F = f
    run_fleet(bind)


if __name__ == "__main__":
    main()
