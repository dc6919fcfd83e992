"""Redis Sentinel: uturnd finds the Redis master through real redis-sentinel processes and follows a
failover without stopping its relays.

On 127.0.0.1 (free ports): a redis-server master, a replica of it (replicaof), and three
redis-sentinel processes monitoring it (quorum 2, down-after-milliseconds 1000). uturnd (two
workers) and its admin API get `redis-userdb = "sentinel=... master=mymaster"`.

- The first sentinel in the list is dead: the questions go on to the next one.
- A user provisioned in the master allocates, and its allocation relays both ways (ChannelData to a
  UDP peer and back) while a background thread keeps 100 datagrams a second flowing each way.
- SIGKILL the sentinel the workers subscribed to: both subscribe to another.
- SIGKILL the master: the two sentinels left promote the replica (waited for with a deadline on
  SENTINEL get-master-addr-by-name); uturnd logs that it followed the switch (a "redis_master"
  line naming the new master) and every worker's connection is up again (/metrics).
- The live allocation relays through and after the failover: every datagram sent either way after
  the allocation arrived. On loopback a UDP datagram is lost only when a receive buffer overflows,
  and at this rate that takes a relay that stops for seconds; so "none lost" is what a relay that
  never waited for Redis gives, and a loss fails the test.
- A user written to the new master after the failover allocates (from fresh 5-tuples, so both
  workers' connections are exercised); a user provisioned through the admin REST API after the
  failover is in the new master (read back there with redis-cli) and allocates.
- uturnd's longest worker loop stall (uturn_loop_stall_max_seconds, when it exports it) stays under
  250 ms across the whole run.

A second test puts a stand-in sentinel (a few lines of RESP in this file) in front of a real
master and replica, to make happen on cue what real sentinels only do in race windows: the
sentinel names the replica (both workers see ROLE say so, are not up, ask again and connect to the
master once it is named); the master is demoted under the admin API's open connection (its next
write meets READONLY, and it asks again and writes to the new master); a +switch-master moves both
workers (and the fleet thread, server/fleet) at once.

Everything started is killed and its directory removed even when the test fails (and killed by the
kernel if this script dies: PR_SET_PDEATHSIG). Without /usr/bin/redis-sentinel the test falls back
to `redis-server CONF --sentinel`; without either it skips, saying why.
"""
import ctypes
import hashlib
import http.client
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time

from uturn import TurnClient, Uturnd, check, free_port, relayed_addresses, run, wait_for

REALM = "sentinel.test"
MASTER = "mymaster"
TOKEN = "sentinel-admin-token-0123456789abcdef"
MIN_PORT, MAX_PORT = 46000, 46999
FAILOVER_DEADLINE = 25  # seconds for the sentinels to promote the replica
FOLLOW_DEADLINE = 15    # seconds for uturnd to be connected to the new master
STALL_LIMIT = 0.25      # seconds: the longest a worker loop may go without polling
RATE = 100              # datagrams a second each way


def _pdeathsig():
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def sentinel_command():
    """The argv prefix that runs a sentinel from a config file, or None."""
    if os.access("/usr/bin/redis-sentinel", os.X_OK):
        return ["/usr/bin/redis-sentinel"], None
    server = shutil.which("redis-server")
    if server:
        return [server], "--sentinel"
    return None, None


def cli(port, *args, timeout=5):
    out = subprocess.run(["redis-cli", "-h", "127.0.0.1", "-p", str(port)] + list(args),
                         capture_output=True, text=True, timeout=timeout)
    return out.returncode, out.stdout.strip()


class Fleet:
    """redis-server master + replica and (unless told not to) three sentinels, each in one temp
    dir. Context manager: every process is killed and the dir removed on exit, whatever
    happened."""

    def __init__(self, sentinels=True):
        self.dir = tempfile.mkdtemp(prefix="uturn-sentinel-")
        self.procs = {}
        try:
            self._start(sentinels)
        except BaseException:
            self.close()
            raise

    def _spawn(self, name, argv):
        log = open(os.path.join(self.dir, name + ".log"), "ab")
        self.procs[name] = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT,
                                            preexec_fn=_pdeathsig, cwd=self.dir)
        log.close()

    def log(self, name):
        try:
            with open(os.path.join(self.dir, name + ".log"), "rb") as f:
                return f.read().decode("utf-8", "replace")[-3000:]
        except OSError:
            return ""

    def _server(self, name, port, extra=()):
        d = os.path.join(self.dir, name)
        os.mkdir(d)
        self._spawn(name, ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                           "--appendonly", "no", "--dir", d] + list(extra))
        wait_for(lambda: self.procs[name].poll() is not None or cli(port, "ping")[1] == "PONG", 10,
                 name + " PONG")
        check(self.procs[name].poll() is None, name + " exited at start:\n" + self.log(name))

    def _start(self, sentinels):
        binary, flag = sentinel_command()
        self.master_port, self.replica_port = free_port(), free_port()
        self._server("master", self.master_port)
        self._server("replica", self.replica_port,
                     ["--replicaof", "127.0.0.1", str(self.master_port)])
        wait_for(lambda: "master_link_status:up" in cli(self.replica_port, "info", "replication")[1],
                 10, "the replica in sync")
        self.sentinel_ports = []
        if not sentinels:
            return
        for i in range(3):
            port = free_port()
            conf = os.path.join(self.dir, "sentinel%d.conf" % i)
            with open(conf, "w") as f:
                f.write("port %d\nbind 127.0.0.1\ndir %s\n" % (port, self.dir)
                        + "sentinel monitor %s 127.0.0.1 %d 2\n" % (MASTER, self.master_port)
                        + "sentinel down-after-milliseconds %s 1000\n" % MASTER
                        + "sentinel failover-timeout %s 4000\n" % MASTER
                        + "sentinel parallel-syncs %s 1\n" % MASTER)
            self._spawn("sentinel%d" % i, binary + [conf] + ([flag] if flag else []))
            self.sentinel_ports.append(port)
        for i, port in enumerate(self.sentinel_ports):
            wait_for(lambda: self.procs["sentinel%d" % i].poll() is not None
                     or cli(port, "ping")[1] == "PONG", 10, "sentinel %d PONG" % i)
            check(self.procs["sentinel%d" % i].poll() is None,
                  "sentinel %d exited:\n%s" % (i, self.log("sentinel%d" % i)))
        # Ready for a failover: each sentinel sees the other two and the replica.
        for port in self.sentinel_ports:
            wait_for(lambda: cli(port, "sentinel", "ckquorum", MASTER)[1].startswith("OK")
                     and "slave" in cli(port, "sentinel", "replicas", MASTER)[1]
                     and len(re.findall(r"^name$", cli(port, "sentinel", "sentinels", MASTER)[1],
                                        re.M)) == 2,
                     20, "sentinel %d to know its quorum and the replica" % port, interval=0.1)

    def master_of(self, sentinel_port):
        rc, out = cli(sentinel_port, "sentinel", "get-master-addr-by-name", MASTER)
        lines = out.split("\n")
        return (lines[0], int(lines[1])) if rc == 0 and len(lines) == 2 else None

    def kill(self, name):
        p = self.procs.get(name)
        if p and p.poll() is None:
            p.send_signal(signal.SIGKILL)
            p.wait(10)

    def close(self):
        for name in list(self.procs):
            self.kill(name)
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, et, ev, tb):
        self.close()
        return False


class FakeSentinel:
    """A stand-in sentinel (RESP over TCP on 127.0.0.1) whose answers the test sets: real sentinels
    never name a replica on purpose, so this is how a replica named as the master, a demotion
    under a live connection, and a +switch-master are made to happen exactly when the test wants.
    It answers AUTH, PING, SENTINEL get-master-addr-by-name (self.master) and SUBSCRIBE, and
    counts the questions."""

    def __init__(self):
        self.lock = threading.Lock()
        self.master = None
        self.asked = 0
        self.subscribers = []
        self.conns = []
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(16)
        self.port = self.listener.getsockname()[1]
        self.closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while not self.closed:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            with self.lock:
                self.conns.append(conn)
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    @staticmethod
    def _bulk(s):
        b = s.encode() if isinstance(s, str) else s
        return b"$%d\r\n%s\r\n" % (len(b), b)

    def _serve(self, conn):
        f = conn.makefile("rb")
        try:
            while True:
                line = f.readline()
                if not line.startswith(b"*"):
                    return
                args = []
                for _ in range(int(line[1:])):
                    n = int(f.readline()[1:])
                    args.append(f.read(n + 2)[:n].decode())
                verb = args[0].upper()
                if verb == "AUTH":
                    conn.sendall(b"+OK\r\n")
                elif verb == "PING":
                    conn.sendall(b"+PONG\r\n")
                elif verb == "SENTINEL" and args[1].lower() == "get-master-addr-by-name":
                    with self.lock:
                        self.asked += 1
                        m = self.master
                    conn.sendall(b"*2\r\n" + self._bulk(m[0]) + self._bulk(str(m[1])) if m
                                 else b"*-1\r\n")
                elif verb == "SUBSCRIBE":
                    with self.lock:
                        conn.sendall(b"*3\r\n" + self._bulk("subscribe") + self._bulk(args[1])
                                     + b":1\r\n")
                        self.subscribers.append(conn)
                else:
                    conn.sendall(b"-ERR unknown command\r\n")
        except (OSError, ValueError, IndexError):
            return
        finally:
            f.close()

    def switch(self, old, new):
        """Publish +switch-master to every subscriber; returns how many got it."""
        msg = "%s %s %d %s %d" % (MASTER, old[0], old[1], new[0], new[1])
        frame = (b"*3\r\n" + self._bulk("message") + self._bulk("+switch-master")
                 + self._bulk(msg))
        n = 0
        with self.lock:
            for c in self.subscribers:
                try:
                    c.sendall(frame)
                    n += 1
                except OSError:
                    pass
        return n

    def close(self):
        self.closed = True
        self.listener.close()
        with self.lock:
            for c in self.conns:
                try:
                    c.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                c.close()


def md5_key(user, password):
    return hashlib.md5(("%s:%s:%s" % (user, REALM, password)).encode()).hexdigest()


def add_user(port, user, password):
    rc, out = cli(port, "SET", "turn/realm/%s/user/%s/key" % (REALM, user), md5_key(user, password))
    check(rc == 0 and out == "OK", "SET on %d: %s" % (port, out))


def allocate(u, user, password):
    c = TurnClient(u, user, password)
    try:
        return c.allocate()[0]
    finally:
        c.close()


def api(admin, method, path, body=None):
    conn = http.client.HTTPConnection(admin[0], admin[1], timeout=15)
    try:
        data = json.dumps(body).encode() if body is not None else None
        headers = {"Authorization": "Bearer " + TOKEN}
        if data is not None:
            headers["Content-Type"] = "application/json"
        conn.request(method, path, body=data, headers=headers)
        resp = conn.getresponse()
        return resp.status, resp.read().decode("utf-8", "replace")
    finally:
        conn.close()


def metric(admin, name):
    st, text = api(admin, "GET", "/metrics")
    check(st == 200, "/metrics: %d" % st)
    m = re.search(r"^%s ([0-9.e+-]+)$" % re.escape(name), text, re.M)
    return float(m.group(1)) if m else None


class Traffic(threading.Thread):
    """Sequence-numbered datagrams both ways through one allocation's channel, RATE a second each
    way, until stopped; counts what arrived."""

    def __init__(self, client, channel, peer, relay):
        super().__init__(daemon=True)
        self.c, self.channel, self.peer, self.relay = client, channel, peer, relay
        self.stop_flag = threading.Event()
        self.sent_c2p = self.sent_p2c = 0
        self.got_c2p, self.got_p2c = set(), set()
        self.error = None

    def run(self):
        try:
            self.peer.setblocking(False)
            nxt = time.monotonic()
            while not self.stop_flag.is_set():
                self.c.channel_data(self.channel, b"c2p %08d" % self.sent_c2p)
                self.sent_c2p += 1
                self.peer.sendto(b"p2c %08d" % self.sent_p2c, self.relay)
                self.sent_p2c += 1
                nxt += 1.0 / RATE
                self._drain(max(0.0, nxt - time.monotonic()))
            # What is still on the way: a short grace, then count.
            self._drain(0.5)
        except Exception as e:  # noqa: BLE001 - reported by the main thread
            self.error = e

    def _drain(self, wait):
        deadline = time.monotonic() + wait
        while True:
            while True:
                try:
                    data, src = self.peer.recvfrom(2048)
                except (BlockingIOError, InterruptedError):
                    break
                if src == self.relay and data.startswith(b"c2p "):
                    self.got_c2p.add(int(data[4:]))
            got = self.c.receive_data(0.002)
            while got is not None:
                if got[0] == "channel" and got[1] == self.channel and got[2].startswith(b"p2c "):
                    self.got_p2c.add(int(got[2][4:]))
                got = self.c.receive_data(0.0)
            if time.monotonic() >= deadline:
                return

    def stop(self):
        self.stop_flag.set()
        self.join(10)
        check(not self.is_alive(), "the traffic thread did not stop")
        check(self.error is None, "traffic thread: %r" % self.error)

    def counts(self):
        return (self.sent_c2p, len(self.got_c2p), self.sent_p2c, len(self.got_p2c))


def test_failover_followed():
    binary, _ = sentinel_command()
    if binary is None:
        print("SKIP test_failover_followed: neither /usr/bin/redis-sentinel nor redis-server "
              "(install Debian's redis-sentinel: scripts/deps.sh test)")
        return
    t_start = time.monotonic()
    with Fleet() as fl:
        add_user(fl.master_port, "before", "before-pass")
        admin_port = free_port()
        # The first sentinel listed is dead (nothing listens there): each question, the workers'
        # and the admin's, must go on to the next.
        sentinels = ",".join("127.0.0.1:%d" % p for p in [free_port()] + fl.sentinel_ports)
        conf = ["realm = %s" % REALM, "allow-loopback-peers", "min-port = %d" % MIN_PORT,
                "max-port = %d" % MAX_PORT,
                'redis-userdb = "sentinel=%s master=%s"' % (sentinels, MASTER),
                "admin-listen = 127.0.0.1:%d" % admin_port, "admin-token = %s" % TOKEN]
        admin = ("127.0.0.1", admin_port)
        peer = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        peer.bind(("127.0.0.1", 0))
        peer.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        pip, pport = peer.getsockname()
        traffic = None
        with Uturnd(conf=conf, threads=2) as u:
            c = TurnClient(u, "before", "before-pass")
            # Room for seconds of traffic should the test itself be slow to read (CI load).
            c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
            try:
                wait_for(lambda: metric(admin, "uturn_redis_connections_up") == 2, 10,
                         "both workers connected to the master")
                check("127.0.0.1:%d" % fl.master_port in u.log(),
                      "uturnd did not log the master the sentinels named:\n" + u.log()[-2000:])
                code, _, raw = c.allocate(raw_response=True)
                check(code == 0, "the user in the master could not allocate: %s" % code)
                relay = relayed_addresses(raw)[0]
                check(c.create_permission((pip, pport))[0] == 0, "CreatePermission failed")
                check(c.channel_bind(0x4001, pip, pport)[0] == 0, "ChannelBind failed")
                traffic = Traffic(c, 0x4001, peer, relay)
                traffic.start()
                wait_for(lambda: len(traffic.got_c2p) > 20 and len(traffic.got_p2c) > 20, 5,
                         "traffic both ways before the failover")

                # The sentinel the workers listen to (the first live one) dies: they must listen
                # to another before the failover, or they would only learn of it by failing.
                fl.kill("sentinel0")
                others = "|".join(str(p) for p in fl.sentinel_ports[1:])
                wait_for(lambda: len(re.findall(r"redis_sentinel_up: redis sentinel 127\.0\.0\.1:"
                                                r"(%s):" % others, u.log())) >= 2, 10,
                         "both workers to follow another sentinel")
                live = fl.sentinel_ports[1:]

                # The failover (two sentinels of three left: still a quorum and a majority).
                t_kill = time.monotonic()
                at_kill = traffic.sent_c2p, traffic.sent_p2c
                fl.kill("master")
                new = ("127.0.0.1", fl.replica_port)
                wait_for(lambda: all(fl.master_of(p) == new for p in live),
                         FAILOVER_DEADLINE, "the sentinels to promote the replica", interval=0.05)
                t_promoted = time.monotonic()
                wait_for(lambda: re.search(r"redis_master: .* is 127\.0\.0\.1:%d " % fl.replica_port,
                                           u.log()) is not None,
                         FOLLOW_DEADLINE, "uturnd's log line about the new master")
                wait_for(lambda: metric(admin, "uturn_redis_connections_up") == 2, FOLLOW_DEADLINE,
                         "both workers connected to the new master")
                t_followed = time.monotonic()
                at_followed = traffic.sent_c2p, traffic.sent_p2c
                lines = [ln for ln in u.log().splitlines() if "redis_" in ln]
                print("uturnd: " + "\n        ".join(lines[-12:]))

                # A user provisioned after the failover, in the new master, from fresh 5-tuples.
                add_user(fl.replica_port, "after", "after-pass")
                for i in range(6):
                    code = allocate(u, "after", "after-pass")
                    check(code == 0, "the user written after the failover (try %d): %s" % (i, code))
                # And through the admin REST API: the write lands in the new master.
                st, body = api(admin, "PUT", "/api/v1/realms/%s/users/restuser" % REALM,
                                {"password": "rest-pass"})
                check(st in (200, 201), "admin PUT user after the failover: %d %s" % (st, body))
                rc, key = cli(fl.replica_port, "GET", "turn/realm/%s/user/restuser/key" % REALM)
                check(rc == 0 and key == md5_key("restuser", "rest-pass"),
                      "the admin API's user is not in the new master: %r" % key)
                check(allocate(u, "restuser", "rest-pass") == 0,
                      "the admin API's user could not allocate")
                t_end_writes = time.monotonic()
                # Keep relaying a little after everything, then count.
                time.sleep(0.5)
                traffic.stop()
                sc, gc, sp, gp = traffic.counts()
                print("failover: promoted %.2fs after SIGKILL, uturnd on the new master %.2fs "
                      "after SIGKILL; writes done %.2fs after SIGKILL"
                      % (t_promoted - t_kill, t_followed - t_kill, t_end_writes - t_kill))
                print("datagrams client->peer: sent %d received %d; peer->client: sent %d "
                      "received %d; of them sent between SIGKILL and uturnd on the new master: "
                      "%d and %d" % (sc, gc, sp, gp, at_followed[0] - at_kill[0],
                                     at_followed[1] - at_kill[1]))
                check(gc == sc, "client->peer: %d of %d datagrams lost across the failover "
                      "(missing %s)" % (sc - gc, sc, sorted(set(range(sc)) - traffic.got_c2p)[:20]))
                check(gp == sp, "peer->client: %d of %d datagrams lost across the failover "
                      "(missing %s)" % (sp - gp, sp, sorted(set(range(sp)) - traffic.got_p2c)[:20]))
                stall = metric(admin, "uturn_loop_stall_max_seconds")
                if stall is None:
                    print("uturn_loop_stall_max_seconds not exported: loop stall not measured")
                else:
                    print("longest worker loop stall: %.1f ms" % (stall * 1000))
                    check(stall < STALL_LIMIT, "a worker loop stalled %.3f s (limit %.3f s)"
                          % (stall, STALL_LIMIT))
            finally:
                if traffic is not None and traffic.is_alive():
                    traffic.stop_flag.set()
                    traffic.join(5)
                c.close()
                peer.close()
    print("test took %.1fs" % (time.monotonic() - t_start))


def test_replica_left_readonly_retried_switch_followed():
    """With a stand-in sentinel over real redis-servers: a sentinel that names the replica is
    caught by ROLE and asked again (both workers); the admin API, whose connection to the master
    sees that master demoted under it, gets READONLY, asks again and writes to the new master;
    a +switch-master moves both workers and the fleet thread at once."""
    with Fleet(sentinels=False) as fl:
        fake = FakeSentinel()
        try:
            M, R = ("127.0.0.1", fl.master_port), ("127.0.0.1", fl.replica_port)
            fake.master = R  # wrong on purpose: a replica
            admin_port = free_port()
            conf = ["realm = %s" % REALM, "allow-loopback-peers", "min-port = %d" % MIN_PORT,
                    "max-port = %d" % MAX_PORT,
                    'redis-userdb = "redis-sentinel://127.0.0.1:%d/%s"' % (fake.port, MASTER),
                    "admin-listen = 127.0.0.1:%d" % admin_port, "admin-token = %s" % TOKEN]
            admin = ("127.0.0.1", admin_port)
            with Uturnd(conf=conf, threads=2) as u:
                wait_for(lambda: u.log().count("a replica, not the master") >= 2, 10,
                         "both workers to find that the named master is a replica")
                check(metric(admin, "uturn_redis_connections_up") == 0,
                      "a worker is up on a replica")
                asked = fake.asked
                fake.master = M
                wait_for(lambda: metric(admin, "uturn_redis_connections_up") == 2, 10,
                         "both workers on the real master after asking again")
                check(fake.asked > asked, "the workers did not ask the sentinel again")
                check(re.search(r"redis_up: redis 127\.0\.0\.1:%d " % M[1], u.log()),
                      "no redis_up for the master:\n" + u.log()[-2000:])
                add_user(M[1], "one", "one-pass")
                check(allocate(u, "one", "one-pass") == 0, "the user in the master was refused")
                st, body = api(admin, "PUT", "/api/v1/realms/%s/users/adm1" % REALM,
                               {"password": "adm1-pass"})
                check(st in (200, 201), "admin PUT: %d %s" % (st, body))
                check(cli(M[1], "GET", "turn/realm/%s/user/adm1/key" % REALM)[1]
                      == md5_key("adm1", "adm1-pass"), "the admin's user is not in the master")

                # Swap the roles under the live connections: R becomes the master, M its replica.
                check(cli(R[1], "REPLICAOF", "NO", "ONE")[1] == "OK", "REPLICAOF NO ONE")
                check(cli(M[1], "REPLICAOF", R[0], str(R[1]))[1] == "OK", "REPLICAOF R")
                wait_for(lambda: cli(M[1], "ROLE")[1].split("\n")[0] == "slave", 10,
                         "the old master to be a replica")
                fake.master = R
                st, body = api(admin, "PUT", "/api/v1/realms/%s/users/adm2" % REALM,
                               {"password": "adm2-pass"})
                check(st in (200, 201), "admin PUT after the demotion: %d %s" % (st, body))
                check("READONLY" in u.log() and "admin_redis_master" in u.log(),
                      "the admin did not meet READONLY and ask again (its connection was not "
                      "reused?):\n" + u.log()[-2000:])
                check(cli(R[1], "GET", "turn/realm/%s/user/adm2/key" % REALM)[1]
                      == md5_key("adm2", "adm2-pass"), "the admin's user is not in the new master")

                # +switch-master: both workers move now, not at their next failure; so does the
                # fleet thread (server/fleet). Each worker has three connections that follow the
                # sentinels: the credential store's, the usage ledger's (usage-stream is on by
                # default with Redis) and the cluster quota's (cluster-quota, on by default); the
                # fleet thread is the seventh subscriber.
                check(fake.switch(M, R) == 7,
                      "the workers' connections and the fleet thread are not all subscribed")
                wait_for(lambda: "+switch-master: following the master to 127.0.0.1:%d" % R[1]
                         in u.log(), 10, "the fleet thread to follow +switch-master")
                wait_for(lambda: len(re.findall(r"redis_master.*127\.0\.0\.1:%d.*\+switch-master"
                                                % R[1], u.log())) == 6, 10,
                         "both workers' connections to follow +switch-master")
                wait_for(lambda: metric(admin, "uturn_redis_connections_up") == 2, 10,
                         "both workers on the new master")
                add_user(R[1], "two", "two-pass")
                for i in range(4):
                    check(allocate(u, "two", "two-pass") == 0,
                          "the user in the new master was refused (try %d)" % i)
                print("sentinel questions answered: %d" % fake.asked)
        finally:
            fake.close()


if __name__ == "__main__":
    run()
