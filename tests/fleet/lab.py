"""The fleet proof lab (issue 13): three uturnd nodes, a Redis master and replica watched by three
redis-sentinel processes, and real clients, each in network namespaces of their own, joined by one
bridge.

    switch (namespace "sw", bridge br0, no address)
      |-- redis   198.18.0.10   redis-server master :6379, replica :6380, sentinels :26379-26381
      |-- a       198.18.0.1    uturnd node-id a (:3478 UDP/TCP, admin :8080)
      |-- b       198.18.0.2    uturnd node-id b
      |-- c       198.18.0.3    uturnd node-id c
      `-- cli     198.18.0.100  the clients, the UDP peers, Chromium, the test's own sockets

Every node gets the same realm and `redis-userdb` in its Sentinel form, no nonce-secret, and
`allowed-peer-ip = 198.18.0.0/24` (the peers and the other nodes' relays are in a special-purpose
range the default peer policy refuses). The namespaces, veths, processes and the one temp dir are
the natlab Lab's (tests/natlab/lab.py, imported, not copied): all removed when the Fleet closes,
also on a failure (the logs are kept then, and their place printed).

A Fleet skips (exit 77, the reason printed) only when this machine cannot build it: not root, no
`ip netns`, no redis-server or redis-sentinel. CI runs as root with all of it installed.
"""
import contextlib
import hashlib
import http.client
import importlib.util
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "integration"))

from uturn import UTURND, TurnClient, check, relayed_addresses, wait_for  # noqa: E402

# tests/natlab/lab.py under a name of its own (this file is lab.py too).
_spec = importlib.util.spec_from_file_location("natlab_lab", os.path.join(HERE, "..", "natlab",
                                                                          "lab.py"))
natlab = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(natlab)

REALM = "fleet.test"
MASTER = "fleetmaster"
TOKEN = "fleet-lab-token-0123456789abcdef"
REDIS_IP = "198.18.0.10"
MASTER_PORT, REPLICA_PORT = 6379, 6380
SENTINEL_PORTS = (26379, 26380, 26381)
NODE_IPS = {"a": "198.18.0.1", "b": "198.18.0.2", "c": "198.18.0.3"}
CLI_IP = "198.18.0.100"
TURN_PORT, ADMIN_PORT = 3478, 8080


def skip(reason):
    print("SKIP: %s" % reason, flush=True)
    sys.exit(77)


def need(*programs):
    """Skip unless every program is on PATH (or an absolute path that exists)."""
    for p in programs:
        if not (os.access(p, os.X_OK) if p.startswith("/") else shutil.which(p)):
            skip("%s is not installed (scripts/deps.sh test)" % p)


def require_machine():
    """Skip, saying why, when this machine cannot run the lab at all."""
    if os.geteuid() != 0:
        skip("the fleet lab needs root (network namespaces); CI runs as root")
    if not shutil.which("ip") or subprocess.run(["ip", "netns", "list"], capture_output=True,
                                                timeout=10).returncode != 0:
        skip("no `ip netns` here (iproute2)")
    need("redis-server", "redis-sentinel", "redis-cli")
    check(os.access(UTURND, os.X_OK), "no uturnd at %s (set UTURN_BUILDDIR)" % UTURND)


class Node:
    """One uturnd of the fleet, as the harness TurnClient wants a server (host, port, tls_port)."""

    def __init__(self, fleet, name):
        self.fleet, self.id = fleet, name
        self.host = NODE_IPS[name]
        self.port = TURN_PORT
        self.tls_port = TURN_PORT + 1  # TurnClient wants one; the lab's nodes have no TLS
        self.admin = (self.host, ADMIN_PORT)
        self.ns = fleet.lab.host(name)
        self.daemon = None

    def conf(self, extra=()):
        sentinels = ",".join("%s:%d" % (REDIS_IP, p) for p in SENTINEL_PORTS)
        return ["listening-ip = " + self.host, "listening-port = %d" % self.port,
                "relay-threads = 2", "realm = " + REALM, "node-id = " + self.id,
                'redis-userdb = "sentinel=%s master=%s"' % (sentinels, MASTER),
                "admin-listen = %s:%d" % self.admin, "admin-token = " + TOKEN,
                "allowed-peer-ip = 198.18.0.0/24", "min-port = 49152", "max-port = 49999"
                ] + list(extra)

    def start(self, extra=()):
        self.daemon = self.ns.uturnd(self.conf(extra))
        return self

    def log(self):
        return self.daemon.log()

    def api(self, method, path, body=None):
        """The admin API from the clients' namespace: (status, parsed JSON or text)."""
        with self.fleet.cli.netns():
            conn = http.client.HTTPConnection(self.admin[0], self.admin[1], timeout=10)
            try:
                headers = {"Authorization": "Bearer " + TOKEN}
                data = None
                if body is not None:
                    data = json.dumps(body).encode()
                    headers["Content-Type"] = "application/json"
                conn.request(method, path, body=data, headers=headers)
                resp = conn.getresponse()
                text = resp.read().decode("utf-8", "replace")
            finally:
                conn.close()
        try:
            return resp.status, json.loads(text)
        except ValueError:
            return resp.status, text

    def cluster_ids(self):
        st, doc = self.api("GET", "/api/v1/cluster")
        check(st == 200, "GET /api/v1/cluster on %s: %d %r" % (self.id, st, doc))
        return sorted(n["id"] for n in doc["nodes"])

    def cluster(self):
        st, doc = self.api("GET", "/api/v1/cluster")
        check(st == 200, "GET /api/v1/cluster on %s: %d %r" % (self.id, st, doc))
        return doc

    def metric(self, name):
        st, text = self.api("GET", "/metrics")
        check(st == 200, "/metrics on %s: %d" % (self.id, st))
        m = re.search(r"^%s ([0-9.e+-]+)$" % re.escape(name), text, re.M)
        return float(m.group(1)) if m else None

    def allocations_of(self, user):
        st, doc = self.api("GET", "/api/v1/allocations?user=" + user)
        check(st == 200, "allocations on %s: %d %r" % (self.id, st, doc))
        return doc["allocations"]


class Fleet:
    """The whole lab. Context manager: everything it made is gone when it closes."""

    def __init__(self, nodes="abc", node_conf=None):
        require_machine()
        self.lab = natlab.Lab()
        try:
            self._build(nodes, node_conf or {})
        except BaseException:
            self.lab.__exit__(*sys.exc_info())
            raise

    def _build(self, names, node_conf):
        lab = self.lab
        self.dir = tempfile.mkdtemp(prefix="utfleet-")
        lab.dirs.append(self.dir)
        sw = lab.host("sw")
        sw.ip(["link", "add", "br0", "type", "bridge"])
        sw.ip(["link", "set", "br0", "up"])
        self.redis = lab.host("redis")
        self.cli = lab.host("cli")
        self.nodes = {n: Node(self, n) for n in names}
        for h, ip in [(self.redis, REDIS_IP), (self.cli, CLI_IP)] + \
                [(n.ns, n.host) for n in self.nodes.values()]:
            _, port = lab.link(h, ip + "/24", sw, None)
            sw.ip(["link", "set", port, "master", "br0"])
        self.procs = {}
        self._redis("master", MASTER_PORT)
        self._redis("replica", REPLICA_PORT, ["--replicaof", REDIS_IP, str(MASTER_PORT)])
        wait_for(lambda: "master_link_status:up" in self.rcli(REPLICA_PORT, "info", "replication"),
                 10, "the replica in sync")
        # Across the bridge: the clients' namespace reaches the replica.
        p = self.cli.run(["redis-cli", "-h", REDIS_IP, "-p", str(REPLICA_PORT), "ping"],
                         timeout=10, check_rc=False)
        check(p.stdout.strip() == "PONG", "redis-cli from the clients' namespace: %r %r"
              % (p.stdout, p.stderr))
        for i, port in enumerate(SENTINEL_PORTS):
            conf = os.path.join(self.dir, "sentinel%d.conf" % i)
            with open(conf, "w") as f:
                f.write("port %d\nbind %s\nprotected-mode no\ndir %s\n" % (port, REDIS_IP, self.dir)
                        + "sentinel monitor %s %s %d 2\n" % (MASTER, REDIS_IP, MASTER_PORT)
                        + "sentinel down-after-milliseconds %s 1000\n" % MASTER
                        + "sentinel failover-timeout %s 4000\n" % MASTER
                        + "sentinel parallel-syncs %s 1\n" % MASTER)
            self.procs["sentinel%d" % i] = self.redis.start(["redis-sentinel", conf],
                                                            "sentinel%d" % i)
        for port in SENTINEL_PORTS:
            wait_for(lambda: self.rcli(port, "sentinel", "ckquorum", MASTER).startswith("OK")
                     and "slave" in self.rcli(port, "sentinel", "replicas", MASTER)
                     and len(re.findall(r"^name$", self.rcli(port, "sentinel", "sentinels", MASTER),
                                        re.M)) == 2,
                     20, "sentinel :%d to know its quorum and the replica" % port, interval=0.1)
        for n in self.nodes.values():
            n.start(node_conf.get(n.id, ()))
        want = sorted(self.nodes)
        for n in self.nodes.values():
            wait_for(lambda: n.cluster_ids() == want, 10, "%s to see %s" % (n.id, want),
                     interval=0.1)

    def _redis(self, name, port, extra=()):
        d = os.path.join(self.dir, name)
        os.mkdir(d)
        self.procs[name] = self.redis.start(
            ["redis-server", "--port", str(port), "--bind", REDIS_IP, "--protected-mode", "no",
             "--save", "", "--appendonly", "no", "--dir", d] + list(extra), name)
        wait_for(lambda: not self.procs[name].alive() or self.rcli(port, "ping") == "PONG", 10,
                 name + " PONG")
        check(self.procs[name].alive(), name + " exited at start:\n" + self.procs[name].log())

    def rcli(self, port, *args):
        """redis-cli against REDIS_IP:port (from the Redis namespace); its stdout, stripped."""
        p = self.redis.run(["redis-cli", "-h", REDIS_IP, "-p", str(port)] + list(args),
                           timeout=10, check_rc=False)
        return p.stdout.strip()

    def master(self):
        """(ip, port) of the master as the first live sentinel names it, or None."""
        for port in SENTINEL_PORTS:
            out = self.rcli(port, "sentinel", "get-master-addr-by-name", MASTER).split("\n")
            if len(out) == 2:
                return out[0], int(out[1])
        return None

    def master_port(self):
        m = self.master()
        check(m is not None, "no sentinel names a master")
        return m[1]

    def add_user(self, user, password, port=None):
        """A long-term-credential user written to the master (the sentinels' one unless port)."""
        key = hashlib.md5(("%s:%s:%s" % (user, REALM, password)).encode()).hexdigest()
        out = self.rcli(port or self.master_port(), "SET",
                        "turn/realm/%s/user/%s/key" % (REALM, user), key)
        check(out == "OK", "SET user %s: %r" % (user, out))

    @contextlib.contextmanager
    def client_ns(self):
        """Sockets made inside belong to the clients' namespace."""
        with self.cli.netns():
            yield

    def client(self, node, user, password, transport="udp"):
        """A harness TurnClient from the clients' namespace to `node` (a Node)."""
        with self.cli.netns():
            return TurnClient(node, user, password, transport=transport, local=CLI_IP)

    def udp_peer(self, rcvbuf=1 << 20):
        """A UDP socket on CLI_IP: a peer of relayed allocations."""
        with self.cli.netns():
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
            s.bind((CLI_IP, 0))
        return s

    def start_streams(self, nodes, user, password, traffic, clients):
        """Start a relay stream for `user` through each of `nodes` (test_redis_sentinel.Traffic: 100
        datagrams a second each way on channel 0x4001, to a UDP peer of its own), recorded in
        `traffic` ({node id: Traffic}) and `clients` as they start, so the caller's cleanup finds
        them; then wait (5 s deadline each) until every stream carries both ways."""
        from test_redis_sentinel import Traffic
        for n in nodes:
            peer = self.udp_peer()
            cl, relay = self.relaying(n, user, password, peer)
            clients.append(cl)
            traffic[n.id] = Traffic(cl, 0x4001, peer, relay)
            traffic[n.id].start()
        for k, t in traffic.items():
            wait_for(lambda t=t: len(t.got_c2p) > 20 and len(t.got_p2c) > 20, 5,
                     "traffic both ways through %s" % k)

    def relaying(self, node, user, password, peer, channel=0x4001):
        """A client with an allocation on node, a permission and a channel to peer. Returns
        (client, relayed (ip, port))."""
        c = self.client(node, user, password)
        c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        code, _, raw = c.allocate(raw_response=True)
        check(code == 0, "%s's Allocate on %s: %s" % (user, node.id, code))
        relay = relayed_addresses(raw)[0]
        check(relay[0] == node.host, "relayed address %r is not node %s's" % (relay, node.id))
        pip, pport = peer.getsockname()
        check(c.create_permission((pip, pport))[0] == 0, "CreatePermission on %s" % node.id)
        check(c.channel_bind(channel, pip, pport)[0] == 0, "ChannelBind on %s" % node.id)
        return c, relay

    def kill(self, name):
        """SIGKILL a Redis process (master, replica, sentinelN) and reap it."""
        d = self.procs[name]
        if d.alive():
            d.proc.send_signal(signal.SIGKILL)
            d.proc.wait(10)

    def close(self, failed):
        # Every uturnd must stop cleanly (no sanitizer report) unless the test killed it.
        errors = []
        for n in self.nodes.values():
            if n.daemon is None:
                continue
            if not n.daemon.alive():
                n.daemon.stderr.close()
                continue
            try:
                n.daemon.stop_clean()
            except Exception as e:  # noqa: BLE001 - stop the others too
                errors.append("node %s: %s" % (n.id, e))
        self.lab.__exit__(*failed)
        if errors and failed[0] is None:
            raise natlab.LabError("; ".join(errors))

    def __enter__(self):
        return self

    def __exit__(self, et, ev, tb):
        self.close((et, ev, tb))
        return False


def traffic_no_loss(traffic):
    """Stop every stream of `traffic` ({node id: test_redis_sentinel.Traffic}), print what each
    sent and received both ways, and check that nothing was lost."""
    for t in traffic.values():
        t.stop()
    for n, t in traffic.items():
        sent_c2p, got_c2p, sent_p2c, got_p2c = t.counts()
        print("node %s: client->peer %d sent, %d received; peer->client %d sent, %d received"
              % (n, sent_c2p, got_c2p, sent_p2c, got_p2c), flush=True)
        check(got_c2p == sent_c2p and got_p2c == sent_p2c,
              "datagrams lost through node %s: client->peer %d/%d, peer->client %d/%d"
              % (n, got_c2p, sent_c2p, got_p2c, sent_p2c))


def traffic_abandon(traffic):
    """On the way out of a test that failed: stop the streams still running (bounded wait)."""
    for t in traffic.values():
        if t.is_alive():
            t.stop_flag.set()
            t.join(10)


def run_fleet(fleet_fn, tests=None, **kw):
    """Build a Fleet, hand it to the script (fleet_fn sets its global), run the script's tests with
    uturn.run(), and exit with their status; the Fleet is closed whatever happened."""
    from uturn import run, tests_to_run
    tests = tests_to_run(tests)
    t0 = time.monotonic()
    code = 1
    with Fleet(**kw) as f:
        print("fleet up in %.1f s" % (time.monotonic() - t0), flush=True)
        fleet_fn(f)
        try:
            run(tests)
        except SystemExit as e:
            code = e.code
    print("fleet lab script took %.1f s" % (time.monotonic() - t0), flush=True)
    raise SystemExit(code)
