"""The fleet (issue 13) with real services: one redis-server, three uturnd processes on 127.0.0.1
(node-ids a, b, c; their own ports; the same redis-userdb and realm; no nonce-secret).

- cluster: clients allocate once on a and twice on b; GET /api/v1/cluster on each of the three lists
  a, b and c with 1, 2 and 0 allocations and the totals; `uturnctl cluster` prints the three rows;
  /metrics has uturn_cluster_nodes 3 and the per-node allocation series.
- nonce: no nonce-secret is configured, yet the nonce of node a's 401 is accepted by node b from
  the same client address (the Allocate that carries it succeeds at once, no new 401 or 438), and
  Redis holds the agreed secret.
- revoke: a Redis user with a live allocation on node b is deleted through node c's admin API; the
  allocation on b is gone within 1 s (measured from before the DELETE, printed), and b's own
  Refresh from that client no longer succeeds.
- kill --user: `uturnctl kill --user carol` on node b ends carol's allocations on a and c within
  1 s (measured, printed); carol can allocate again (only allocations were ended).
- redirect: node c drains; its Allocates (UDP, TCP and TLS: TLS to the node's TLS port) get 300
  naming the live node with the fewest allocations (a or b, whichever the view says); loaded past the other, the redirect moves
  to the other within a read period.
- node-id: a bad one is refused by --check-config with FILE:LINE; a second process with node-id b
  makes both log the clash, and its stop leaves b's own entry in place.
- kill: kill -9 node a; it is gone from b's and c's views within 3 s (measured, printed).
- Sentinel: a fleet of two on a master three real sentinels watch; the master is killed, both
  fleet threads follow +switch-master, see each other again through the new master, and a kill
  --user on x ends the user's allocation on y within 1 s (figures printed).
- Redis away: once c has had no fresh view for longer than an entry lives, GET /api/v1/cluster
  lists c alone with redis_ok false and c's 300 names its static alternate-server again.

The tests run in this order on one fleet (kill and Redis away last: they take a and Redis away).
"""
import json
import os
import shutil
import signal
import socket
import struct
import subprocess
import tempfile
import time

from test_admin import api
from test_redis_sentinel import Fleet as SentinelSet
from test_redis_sentinel import MASTER as SENTINEL_MASTER
from test_redis_sentinel import REALM as SENTINEL_REALM
from test_redis_sentinel import add_user as add_sentinel_user
from test_redis_sentinel import cli, sentinel_command
from test_turn_redis import Redis, add_user, userdb
from uturn import (BUILDDIR, UTURND, TurnClient, Uturnd, check, free_port, get_attr, make_cert,
                   run, tests_to_run, wait_for)

A_ALTERNATE_SERVER = 0x8023

REALM = "uturn.test"
TOKEN = "f00dfeed0123456789abcdef00112233"
UTURNCTL = os.path.join(BUILDDIR, "uturnctl")
NODES = {}  # id -> (Uturnd, (admin host, port))
R = None


def cluster(node):
    st, _, doc = api("GET", "/api/v1/cluster", token=TOKEN, server=NODES[node][1])
    check(st == 200, "GET /api/v1/cluster on %s: %d %r" % (node, st, doc))
    return doc


def counts(doc):
    return {n["id"]: n["allocations"] for n in doc["nodes"]}


def ctl(node, *args):
    env = dict(os.environ)
    env["UTURN_URL"] = "http://%s:%d" % NODES[node][1]
    env["UTURN_TOKEN"] = TOKEN
    out = subprocess.run([UTURNCTL] + list(args), capture_output=True, text=True, env=env,
                         timeout=30)
    return out.returncode, out.stdout, out.stderr


def allocated(node, user, password):
    c = TurnClient(NODES[node][0], user, password)
    code, _ = c.allocate()
    check(code == 0, "Allocate on %s as %s: %d" % (node, user, code))
    return c


def test_cluster():
    clients = [allocated("a", "alice", "alice-pass"), allocated("b", "alice", "alice-pass"),
               allocated("b", "carol", "carol-pass")]
    want = {"a": 1, "b": 2, "c": 0}
    try:
        for node in "abc":
            wait_for(lambda: counts(cluster(node)) == want, 5,
                     "%s's view shows %r" % (node, want))
            doc = cluster(node)
            check(doc["fleet"] is True and doc["node"] == node and doc["redis_ok"] is True,
                  "fleet fields on %s: %r" % (node, doc))
            check(doc["totals"] == {"allocations": 3, "nodes": 3, "bps": doc["totals"]["bps"]},
                  "totals on %s: %r" % (node, doc["totals"]))
            for n in doc["nodes"]:
                u = NODES[n["id"]][0]
                check(n["addresses"]["udp"] == ["127.0.0.1:%d" % u.port]
                      and n["addresses"]["tcp"] == ["127.0.0.1:%d" % u.port]
                      and n["addresses"]["tls"] == ["127.0.0.1:%d" % u.tls_port]
                      and n["addresses"]["dtls"] == ["127.0.0.1:%d" % u.tls_port]
                      and n["draining"] is False and isinstance(n["cpu"], float)
                      and 0 <= n["age_ms"] < 3000 and n["version"] and n["started"],
                      "entry of %s as %s sees it: %r" % (n["id"], node, n))
        rc, out, err = ctl("c", "cluster")
        check(rc == 0, "uturnctl cluster: %d %s %s" % (rc, out, err))
        rows = {line.split()[0]: line.split()[1] for line in out.splitlines()[1:4]}
        check(rows == {"a": "1", "b": "2", "c": "0"} and "3 node(s), 3 allocation(s)" in out,
              "uturnctl cluster:\n%s" % out)
        print(out, end="")
        rc, out, err = ctl("b", "--json", "cluster")
        check(rc == 0 and counts(json.loads(out)) == want, "uturnctl --json cluster: %s" % out)
        st, _, metrics = api("GET", "/metrics", token=TOKEN, server=NODES["b"][1])
        check(st == 200 and "\nuturn_cluster_nodes 3\n" in metrics
              and 'uturn_cluster_node_allocations{node="b"} 2\n' in metrics
              and 'uturn_cluster_node_allocations{node="a"} 1\n' in metrics,
              "/metrics cluster series: %s" % [l for l in metrics.splitlines() if "cluster" in l])
    finally:
        for c in clients:
            c.close()


def test_nonce():
    secret = R.cli("GET", "turn/nonce-secret")
    check(len(secret) == 64 and all(ch in "0123456789abcdef" for ch in secret),
          "turn/nonce-secret holds 64 hex digits: %r" % secret)
    a = allocated("a", "alice", "alice-pass")
    b = TurnClient(NODES["b"][0], "alice", "alice-pass")
    try:
        # Node a's nonce, carried from the same client address (a nonce is bound to it) to node b,
        # as a request that lands on another node behind one DNS name would.
        b.sock.close()
        b.sock = a.sock
        b.realm, b.nonce, b.algs = a.realm, a.nonce, a.algs
        code, _ = b.allocate(retry=False)
        check(code == 0, "node b answered %d to node a's nonce (want success, no new challenge)"
              % code)
    finally:
        a.close()


def own_allocs(node):
    st, _, doc = api("GET", "/api/v1/stats", token=TOKEN, server=NODES[node][1])
    check(st == 200, "stats on %s: %d %r" % (node, st, doc))
    return doc["allocations"]["current"]


def allocs_of(node, user):
    st, _, doc = api("GET", "/api/v1/allocations?user=" + user, token=TOKEN, server=NODES[node][1])
    check(st == 200, "allocations on %s: %d %r" % (node, st, doc))
    return doc["allocations"]


def test_revoke():
    add_user(R, "bob", "bob-pass")
    c = allocated("b", "bob", "bob-pass")
    try:
        check(len(allocs_of("b", "bob")) == 1, "bob's allocation is listed on b")
        t0 = time.monotonic()
        st, _, doc = api("DELETE", "/api/v1/realms/%s/users/bob" % REALM, token=TOKEN,
                         server=NODES["c"][1])
        check(st == 200, "DELETE bob on c: %d %r" % (st, doc))
        wait_for(lambda: not allocs_of("b", "bob"), 1.0,
                 "bob's allocation on b ends within 1 s of the DELETE on c")
        took = time.monotonic() - t0
        print("revocation on c -> allocation on b gone in %.0f ms" % (took * 1000))
        check(took < 1.0, "revocation took %.3f s" % took)
        check("forgot user 'bob'; 1 allocation(s) ended" in NODES["b"][0].log(),
              "b's log does not show the fleet event that ended bob's allocation")
        code, _ = c.refresh(600)
        check(code != 0, "bob's Refresh on b succeeded after the revocation")
    finally:
        c.close()


def test_kill_user():
    # Not a credential change: only the allocations, through `uturnctl kill --user` on b, of a
    # user with one on a and one on c.
    held = [allocated("a", "carol", "carol-pass"), allocated("c", "carol", "carol-pass")]
    try:
        wait_for(lambda: allocs_of("a", "carol") and allocs_of("c", "carol"), 3,
                 "carol's allocations listed on a and c")
        t0 = time.monotonic()
        rc, out, err = ctl("b", "kill", "--user", "carol")
        check(rc == 0 and "the other nodes follow" in out, "uturnctl kill --user: %d %s %s"
              % (rc, out, err))
        wait_for(lambda: not allocs_of("a", "carol") and not allocs_of("c", "carol"), 1.0,
                 "carol's allocations on a and c end within 1 s of the kill on b")
        took = time.monotonic() - t0
        print("kill --user on b -> allocations on a and c gone in %.0f ms" % (took * 1000))
        check(took < 1.0, "the kill took %.3f s" % took)
        # The user itself is still there: a new allocation works.
        held.append(allocated("a", "carol", "carol-pass"))
    finally:
        for c in held:
            c.close()


def alternate(node, user="alice", password="alice-pass", transport="udp"):
    """Allocate on `node`; the ALTERNATE-SERVER of its 300 as (ip, port)."""
    c = TurnClient(NODES[node][0], user, password, transport=transport)
    try:
        code, attrs = c.allocate()
        check(code == 300, "Allocate on draining %s over %s: %d, want 300" % (node, transport, code))
        v = get_attr(attrs, A_ALTERNATE_SERVER)
        check(v is not None and len(v) in (8, 20), "300 without ALTERNATE-SERVER: %r" % v)
        fam = socket.AF_INET if v[1] == 1 else socket.AF_INET6
        return socket.inet_ntop(fam, v[4:]), struct.unpack("!H", v[2:4])[0]
    finally:
        c.close()


def test_redirect():
    # c drains: it redirects every Allocate to the live node with the most headroom (the same
    # total-quota everywhere: the fewest allocations), then to the other when that one fills up.
    st, _, doc = api("POST", "/api/v1/drain", token=TOKEN, server=NODES["c"][1])
    check(st == 200, "drain c: %d %r" % (st, doc))
    held = []
    try:
        # The view is up to 1.5 s old (an entry written each second, read each half): wait until
        # c's view agrees with what each node counts itself.
        wait_for(lambda: counts(cluster("c")) == {n: own_allocs(n) for n in "abc"}, 3,
                 "c's view matches every node's own count")
        view = counts(cluster("c"))
        if view["a"] == view["b"]:
            held.append(allocated("b", "alice", "alice-pass"))
            wait_for(lambda: counts(cluster("c"))["b"] == view["b"] + 1, 3, "c sees b's new one")
            view = counts(cluster("c"))
        low, high = sorted("ab", key=lambda n: view[n])
        wait_for(lambda: cluster("c")["nodes"][2]["draining"] is True, 3, "c's entry says draining")
        for transport in ("udp", "tcp", "tls"):
            # A TLS client is sent to the node's TLS port, the others to its UDP/TCP port.
            port = NODES[low][0].tls_port if transport == "tls" else NODES[low][0].port
            got = alternate("c", transport=transport)
            check(got == ("127.0.0.1", port),
                  "c redirected %s to %r, want %s (allocations %r)" % (transport, got, low, view))
        print("draining c redirects to %s (allocations %r)" % (low, view))
        # Load the least-loaded node past the other: the redirect follows within a read period.
        for _ in range(view[high] - view[low] + 1):
            held.append(allocated(low, "alice", "alice-pass"))
        wait_for(lambda: counts(cluster("c"))[low] > view[high], 3, "c sees %s's new load" % low)
        got = alternate("c")
        check(got == ("127.0.0.1", NODES[high][0].port),
              "after loading %s, c redirected to %r, want %s (%r)"
              % (low, got, high, counts(cluster("c"))))
        print("after loading %s: redirects to %s (allocations %r)"
              % (low, high, counts(cluster("c"))))
    finally:
        for c in held:
            c.close()


def test_node_id_checked():
    for bad in ("a b", "x" * 65, "a/b", "b\\u00e9"):
        conf = os.path.join(NODES["a"][0].dir, "bad-node-id.conf")
        with open(conf, "w") as f:
            f.write("realm = %s\n\nnode-id = %s\n" % (REALM, bad))
        p = subprocess.run([UTURND, "-c", conf, "--check-config"], capture_output=True, text=True,
                           timeout=20)
        check(p.returncode == 1 and "%s:3: 'node-id': must be 1 to 64 of" % conf in p.stderr,
              "node-id = %s: exit %d, %r" % (bad, p.returncode, p.stderr))


def test_duplicate_node_id():
    # A second process calling itself b: both log it loudly; b's entry survives its stop.
    dup = Uturnd(conf=["realm = %s" % REALM, "node-id = b", userdb(R.port)], threads=1)
    try:
        what = "node-id 'b' is used by another process too"
        try:
            wait_for(lambda: what in dup.log() and what in NODES["b"][0].log(), 5,
                     "both processes named b log the clash")
        except Exception:
            print("DUP LOG", dup.log()[-3000:])
            print("B LOG", NODES["b"][0].log()[-3000:])
            raise
    finally:
        rc = dup.stop()
        dup.assert_clean()
        check(rc == 0, "the duplicate's exit status %d" % rc)
    wait_for(lambda: "b" in counts(cluster("c")), 3, "b is still in c's view")


def test_kill():
    for node in "bc":
        check(set(counts(cluster(node))) == {"a", "b", "c"}, "a is in %s's view" % node)
    u = NODES["a"][0]
    u.proc.send_signal(signal.SIGKILL)
    t0 = time.monotonic()
    u.proc.wait(10)
    gone = {}
    deadline = t0 + 6
    while len(gone) < 2 and time.monotonic() < deadline:
        for node in "bc":
            if node not in gone and "a" not in counts(cluster(node)):
                gone[node] = time.monotonic() - t0
        time.sleep(0.02)
    print("kill -9 a: gone from b's view in %s ms, from c's in %s ms"
          % tuple("%.0f" % (gone[n] * 1000) if n in gone else "never" for n in "bc"))
    check(len(gone) == 2 and max(gone.values()) < 3.0, "a left the views within 3 s: %r" % gone)
    check(set(counts(cluster("b"))) == {"b", "c"}, "b and c remain")


def test_redis_away_static_alternate():
    # Redis gone: once c's view is older than an entry lives, its 300 falls back to its static
    # alternate-server (alice's key is still in c's credential cache from test_redirect).
    R.kill()
    wait_for(lambda: cluster("c").get("redis_ok") is False, 8, "c notices Redis is away")
    doc = cluster("c")
    check([n["id"] for n in doc["nodes"]] == ["c"] and doc["fleet"] is True,
          "c alone without Redis: %r" % doc)
    got = alternate("c")
    check(got == ("203.0.113.20", 3478), "c's 300 without Redis names %r, want the static one" % (got,))


def test_sentinel_failover():
    # A fleet of two (x, y) on a master that three real sentinels watch: the master is killed, the
    # sentinels promote the replica, both fleet threads follow (+switch-master), the nodes see each
    # other again, and a kill --user on x still ends the user's allocation on y within 1 s.
    binary, _ = sentinel_command()
    if binary is None:
        print("SKIP test_sentinel_failover: no redis-sentinel (scripts/deps.sh test)")
        return
    with SentinelSet() as fl:
        add_sentinel_user(fl.master_port, "erin", "erin-pass")
        sentinels = ",".join("127.0.0.1:%d" % p for p in fl.sentinel_ports)
        nodes = {}
        try:
            for node in "xy":
                admin = ("127.0.0.1", free_port())
                conf = ["realm = %s" % SENTINEL_REALM, "node-id = %s" % node,
                        'redis-userdb = "sentinel=%s master=%s"' % (sentinels, SENTINEL_MASTER),
                        "admin-listen = %s:%d" % admin, "admin-token = %s" % TOKEN]
                nodes[node] = (Uturnd(conf=conf, threads=1), admin)

            def view(node):
                st, _, doc = api("GET", "/api/v1/cluster", token=TOKEN, server=nodes[node][1])
                check(st == 200, "cluster on %s: %d" % (node, st))
                return sorted(n["id"] for n in doc["nodes"])

            wait_for(lambda: view("x") == ["x", "y"] and view("y") == ["x", "y"], 10,
                     "x and y see each other through the master")
            t_kill = time.monotonic()
            fl.kill("master")
            new = ("127.0.0.1", fl.replica_port)
            wait_for(lambda: all(fl.master_of(p) == new for p in fl.sentinel_ports), 25,
                     "the sentinels promote the replica", interval=0.1)
            t_promoted = time.monotonic()
            for node in "xy":
                wait_for(lambda: "+switch-master: following the master to 127.0.0.1:%d"
                         % fl.replica_port in nodes[node][0].log(), 10,
                         "%s's fleet thread follows +switch-master" % node)
            # The entries replicated from the old master are removed: only what x and y write
            # to the new one can bring the views back.
            rc, out = cli(fl.replica_port, "DEL", "turn/nodes", "turn/node/x", "turn/node/y")
            # 0 is possible too: on a slow run the replicated entries (PX 2400) have expired and
            # been pruned before this DEL; either way none of them is left.
            check(rc == 0, "DEL on the new master: %d %r" % (rc, out))
            wait_for(lambda: cli(fl.replica_port, "ZCARD", "turn/nodes")[1] == "2", 3,
                     "x and y registered in the new master again")
            # Views read from the new master after that (each is at most half a second old).
            time_registered = time.monotonic()
            wait_for(lambda: time.monotonic() - time_registered > 0.6 and view("x") == ["x", "y"]
                     and view("y") == ["x", "y"], 3, "x and y see each other again")
            print("sentinel failover: promoted %.1f s after the kill; both nodes registered in "
                  "the new master %.1f s after the promotion"
                  % (t_promoted - t_kill, time_registered - t_promoted))
            c = TurnClient(nodes["y"][0], "erin", "erin-pass")
            try:
                check(c.allocate()[0] == 0, "erin allocates on y after the failover")
                t0 = time.monotonic()
                st, _, doc = api("DELETE", "/api/v1/allocations?user=erin", token=TOKEN,
                                 server=nodes["x"][1])
                check(st == 200 and doc["fleet"] is True, "kill erin on x: %d %r" % (st, doc))

                def gone():
                    st, _, d = api("GET", "/api/v1/allocations?user=erin", token=TOKEN,
                                   server=nodes["y"][1])
                    return st == 200 and d["allocations"] == []
                wait_for(gone, 1.0, "erin's allocation on y ends within 1 s of the kill on x")
                print("after the failover: kill on x -> allocation on y gone in %.0f ms"
                      % ((time.monotonic() - t0) * 1000))
            finally:
                c.close()
        finally:
            for u, _ in nodes.values():
                rc = u.stop()
                u.assert_clean()
                check(rc == 0, "exit status %d" % rc)


def main():
    global R
    tests = tests_to_run()  # before Redis and uturnd: --list, a bad name
    code = 1
    with Redis() as r:
        R = r
        add_user(r, "alice", "alice-pass")
        add_user(r, "carol", "carol-pass")
        servers = []
        tmp = tempfile.mkdtemp(prefix="uturn-fleet-")
        try:
            for node in "abc":
                admin = ("127.0.0.1", free_port())
                conf = ["realm = %s" % REALM, "node-id = %s" % node, userdb(r.port),
                        "allow-loopback-peers", "admin-listen = %s:%d" % admin,
                        "admin-token = %s" % TOKEN]
                if node == "c":
                    conf.append("alternate-server = 203.0.113.20:3478")
                # TLS on every node: a TLS client is redirected to a TLS address.
                cert, key = make_cert(os.path.join(tmp, "cert-" + node), "uturn-" + node)
                conf += ["cert = " + cert, "pkey = " + key]
                u = Uturnd(conf=conf, threads=1)
                servers.append(u)
                NODES[node] = (u, admin)
            wait_for(lambda: all(len(cluster(n)["nodes"]) == 3 for n in "abc"), 10,
                     "every node sees the three")
            try:
                run(tests)
            except SystemExit as e:
                code = e.code
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
            for u in servers:
                killed = u.proc.poll() is not None  # node a after test_kill
                rc = u.stop()
                u.assert_clean()
                check(killed or rc == 0, "uturnd exit status %d:\n%s" % (rc, u.log()[-3000:]))
    raise SystemExit(code)


if __name__ == "__main__":
    main()
