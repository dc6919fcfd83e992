"""ICE through real Linux NATs: two aioice 0.8.0 agents, each a separate /usr/bin/python3 process in
its own client namespace behind its own NAT router, connect to each other with the real uturnd in a
"public" namespace as STUN server or TURN relay. Credentials and candidates go through the agents'
stdin/stdout (JSON lines), relayed by this test; each agent only knows its lab LAN address.

    srv 203.0.113.10 (uturnd)
     |
    inet 203.0.113.1, 198.51.100.1/30, 198.51.100.5/30
     |                                   |
    nata 198.51.100.2 (WAN)             natb 198.51.100.6 (WAN)
     |  198.18.1.1                       |  198.18.2.1
    clia 198.18.1.2                     clib 198.18.2.2

Each NAT router also firewalls its WAN like a home router: what arrives there and is not part of a
connection from the inside (conntrack state NEW) is dropped, in INPUT and FORWARD.

Scenarios:
1. symmetric NATs (MASQUERADE --random-fully) on both sides: STUN alone (server-reflexive
   candidates) fails to connect in a bounded time; uturnd as TURN/UDP relay (relay-only) connects
   relay <-> relay and carries datagrams both ways.
2. port-restricted cone NATs (plain MASQUERADE): STUN alone connects through the server-reflexive
   addresses, no relay involved.
3. all UDP forwarding dropped by both routers (checked: a STUN request over UDP gets no answer):
   TURN/TCP on 3478 and TURN/TLS on 443 still connect relay <-> relay. aioice verifies uturnd's
   throw-away certificate (IP SAN 203.0.113.10) against SSL_CERT_FILE; trusting another
   certificate instead, it refuses to gather.
4. double NAT (a carrier-grade NAT 198.19.x in front of each home NAT 198.18.x): TURN/UDP connects.

The relayed addresses are uturnd's own "public" address (203.0.113.10). TEST-NET-3 is not globally
reachable, so the default peer policy refuses it: `allowed-peer-ip` opts in to that one address,
and no allow-*-peers option is set.

Needs root; fails (never skips) without it.
"""
import json
import os
import queue
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from lab import Lab, LabError  # noqa: E402
from uturn import check, make_cert, run  # noqa: E402

PYTHON = "/usr/bin/python3"
SRV = "203.0.113.10"
PORT, TLS_PORT = 3478, 443
USER, PASS = "nat-user", "nat-pass-42"
MIN_PORT, MAX_PORT = 45000, 45999
STEP = 20  # seconds for one step of an agent (gathering, candidates, connect, data)

AGENT = r'''
import asyncio, json, logging, os, sys
import aioice, aioice.ice

if os.environ.get("UTLAB_AGENT_DEBUG"):
    logging.basicConfig(level=logging.DEBUG)

cfg = json.loads(sys.argv[1])
# Only the lab LAN address of this client: nothing else exists in the namespace anyway.
aioice.ice.get_host_addresses = lambda use_ipv4, use_ipv6: [cfg["host"]]


def out(**kw):
    sys.stdout.write(json.dumps(kw) + "\n")
    sys.stdout.flush()


async def readline():
    line = await asyncio.get_event_loop().run_in_executor(None, sys.stdin.readline)
    return json.loads(line)


def payload(tag, n):
    return (b"%s %d " % (tag, n)) + bytes((n * 7 + i) % 256 for i in range(100 + 50 * n))


def cand(c):
    return {"type": c.type, "host": c.host, "port": c.port, "transport": c.transport}


async def main():
    kw = dict(ice_controlling=cfg["controlling"], components=1, use_ipv4=True, use_ipv6=False)
    if cfg.get("stun"):
        kw["stun_server"] = tuple(cfg["stun"])
    if cfg.get("turn"):
        kw.update(turn_server=tuple(cfg["turn"]), turn_username=cfg["user"],
                  turn_password=cfg["password"], turn_transport=cfg["transport"],
                  turn_ssl=cfg["ssl"], transport_policy=aioice.TransportPolicy.RELAY)
    conn = aioice.Connection(**kw)
    try:
        try:
            await asyncio.wait_for(conn.gather_candidates(), cfg["step"])
        except Exception as e:
            out(event="gather-failed", error=repr(e))
            return
        out(event="local", ufrag=conn.local_username, pwd=conn.local_password,
            sdp=[c.to_sdp() for c in conn.local_candidates],
            candidates=[cand(c) for c in conn.local_candidates])
        remote = await asyncio.wait_for(readline(), cfg["step"])
        conn.remote_username = remote["ufrag"]
        conn.remote_password = remote["pwd"]
        for s in remote["sdp"]:
            await conn.add_remote_candidate(aioice.Candidate.from_sdp(s))
        await conn.add_remote_candidate(None)
        t0 = asyncio.get_event_loop().time()
        try:
            await asyncio.wait_for(conn.connect(), cfg["connect_timeout"])
        except (ConnectionError, asyncio.TimeoutError) as e:
            out(event="failed", error=repr(e), after=asyncio.get_event_loop().time() - t0)
            return
        pair = conn._nominated.get(1)
        out(event="connected", local=cand(pair.local_candidate), remote=cand(pair.remote_candidate),
            local_addr=list(pair.local_addr), remote_addr=list(pair.remote_addr))
        if cfg["controlling"]:
            # Ping-pong: each a->b datagram is answered by its b->a counterpart (resent if lost).
            answered = 0
            for n in range(10):
                for attempt in range(5):
                    await conn.send(payload(b"a->b", n))
                    try:
                        got = await asyncio.wait_for(conn.recv(), 2)
                    except asyncio.TimeoutError:
                        continue
                    if got == payload(b"b->a", n):
                        answered += 1
                        break
            for _ in range(3):
                await conn.send(b"bye")
            await asyncio.sleep(1)  # let the byes through before the allocation goes
            out(event="done", answered=answered)
        else:
            seen, bad = set(), 0
            loop = asyncio.get_event_loop()
            deadline = loop.time() + cfg["step"] * 2
            while loop.time() < deadline:
                # Done at "bye", or once all ten came and nothing (no resend) follows for 3 s.
                wait = deadline - loop.time()
                if len(seen) == 10:
                    wait = min(wait, 3)
                try:
                    got = await asyncio.wait_for(conn.recv(), max(0.1, wait))
                except asyncio.TimeoutError:
                    break
                if os.environ.get("UTLAB_AGENT_DEBUG"):
                    sys.stderr.write("RECV %r at %.3f\n" % (got[:8], loop.time()))
                if got == b"bye":
                    break
                n = int(got.split(b" ")[1])
                if got != payload(b"a->b", n):
                    bad += 1
                    continue
                seen.add(n)
                await conn.send(payload(b"b->a", n))
            out(event="done", received=sorted(seen), bad=bad)
    finally:
        await asyncio.wait_for(conn.close(), 10)


asyncio.run(main())
'''


class Agent:
    """One aioice agent process in a client namespace; JSON lines on stdin/stdout."""

    def __init__(self, lab, host, name, cfg, env=None):
        self.name = name
        d = tempfile.mkdtemp(prefix="utlab-agent-%s-" % name)
        lab.dirs.append(d)
        script = os.path.join(d, "agent.py")
        with open(script, "w") as f:
            f.write(AGENT)
        self.stderr_path = os.path.join(d, "stderr.log")
        self.stderr = open(self.stderr_path, "wb")
        e = dict(os.environ)
        e.update(env or {})
        self.proc = subprocess.Popen(["ip", "netns", "exec", host.ns, PYTHON, script,
                                      json.dumps(cfg)],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=self.stderr, env=e, text=True)
        self.lines = queue.Queue()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self):
        for line in self.proc.stdout:
            self.lines.put(line)
        self.lines.put(None)

    def log(self):
        with open(self.stderr_path, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def event(self, timeout):
        try:
            line = self.lines.get(timeout=timeout)
        except queue.Empty:
            raise LabError("agent %s: no output within %ds; stderr:\n%s"
                           % (self.name, timeout, self.log()[-3000:]))
        if line is not None:
            print("agent %s: %s" % (self.name, line.rstrip()[:600]), flush=True)
        if line is None:
            raise LabError("agent %s exited (%s); stderr:\n%s"
                           % (self.name, self.proc.poll(), self.log()[-3000:]))
        return json.loads(line)

    def send(self, obj):
        self.proc.stdin.write(json.dumps(obj) + "\n")
        self.proc.stdin.flush()

    def close(self):
        if self.proc.poll() is None:
            self.proc.kill()
        try:
            self.proc.wait(10)
        finally:
            self.stderr.close()
            self.proc.stdout.close()
            self.proc.stdin.close()


def build(lab, behaviour, double=False, block_udp=False):
    """The topology above. Returns (srv, [(client host, LAN address, WAN address seen by srv)])."""
    inet, srv = lab.host("inet"), lab.host("srv")
    lab.link(inet, "203.0.113.1/24", srv, SRV + "/24")
    srv.route("default", "203.0.113.1")
    inet.sysctl("net.ipv4.ip_forward", 1)
    clients = []
    for i, name in ((1, "a"), (2, "b")):
        up = "198.51.100.%d" % (4 * i + 1)
        wan = "198.51.100.%d" % (4 * i + 2)
        outer = lab.host("nat" + name)
        _, outer_wan = lab.link(inet, up + "/30", outer, wan + "/30")
        outer.route("default", up)
        routers = [(outer, outer_wan)]
        if double:
            # outer is the carrier-grade NAT; the home NAT sits in its 198.19.i.0/24.
            home = lab.host("home" + name)
            _, home_wan = lab.link(outer, "198.19.%d.1/24" % i, home, "198.19.%d.2/24" % i)
            home.route("default", "198.19.%d.1" % i)
            routers.append((home, home_wan))
        last = routers[-1][0]
        cli = lab.host("cli" + name)
        lan = "198.18.%d.2" % i
        lab.link(last, "198.18.%d.1/24" % i, cli, lan + "/24")
        cli.route("default", "198.18.%d.1" % i)
        for router, wan_if in routers:
            lab.nat(router, wan_if, behaviour)
            # A home router's firewall: nothing new comes in from the WAN. (Dropping before the
            # conntrack entry is confirmed also keeps an early inbound probe from taking the
            # tuple a later outbound mapping needs.)
            for chain in ("INPUT", "FORWARD"):
                router.run(["iptables", "-A", chain, "-i", wan_if, "-m", "conntrack",
                            "--ctstate", "NEW", "-j", "DROP"])
            if block_udp:
                router.run(["iptables", "-I", "FORWARD", "-p", "udp", "-j", "DROP"])
        clients.append((cli, lan, wan))
    return srv, clients


def uturnd(srv, extra=()):
    conf = ["listening-ip = " + SRV, "listening-port = %d" % PORT, "user = %s:%s" % (USER, PASS),
            "realm = uturn.test", "min-port = %d" % MIN_PORT, "max-port = %d" % MAX_PORT,
            "relay-threads = 2", "allowed-peer-ip = " + SRV] + list(extra)
    return srv.uturnd(conf)


def ice(lab, clients, stun=False, turn=None, connect_timeout=STEP, env=None):
    """Run a controlling agent in the first client and a controlled one in the second. turn is None
    or (transport, ssl, port). Returns {name: {"local": ..., "result": ..., "done": ...}}."""
    agents = []
    try:
        for (cli, lan, _), name, controlling in zip(clients, ("a", "b"), (True, False)):
            cfg = {"host": lan, "controlling": controlling, "step": STEP,
                   "connect_timeout": connect_timeout}
            if stun:
                cfg["stun"] = [SRV, PORT]
            if turn:
                transport, ssl, port = turn
                cfg.update(turn=[SRV, port], user=USER, password=PASS, transport=transport,
                           ssl=ssl)
            agents.append(Agent(lab, cli, name, cfg, env))
        res = {a.name: {"local": a.event(STEP + 10)} for a in agents}
        for a in agents:
            check(res[a.name]["local"]["event"] == "local", "agent %s: %r" % (a.name, res[a.name]))
        a, b = agents
        a.send(res["b"]["local"])
        b.send(res["a"]["local"])
        for x in agents:
            res[x.name]["result"] = x.event(connect_timeout + 15)
        for x in agents:
            if res[x.name]["result"]["event"] == "connected":
                res[x.name]["done"] = x.event(3 * STEP)
        for x in agents:
            x.proc.wait(15)
        return res
    finally:
        for x in agents:
            x.close()


def gather_only(lab, client, turn, env=None):
    """One agent that only gathers; returns its first event."""
    cli, lan, _ = client
    transport, ssl, port = turn
    cfg = {"host": lan, "controlling": True, "step": STEP, "connect_timeout": STEP,
           "turn": [SRV, port], "user": USER, "password": PASS, "transport": transport, "ssl": ssl}
    a = Agent(lab, cli, "g", cfg, env)
    try:
        return a.event(STEP + 10)
    finally:
        a.close()


def check_relayed(res, transport):
    """Both agents gathered only uturnd relay candidates, connected relay <-> relay, and every
    datagram went both ways."""
    relays = {}
    for name, r in res.items():
        cands = r["local"]["candidates"]
        check(len(cands) >= 1, "agent %s gathered nothing" % name)
        for c in cands:
            check(c["type"] == "relay" and c["host"] == SRV and MIN_PORT <= c["port"] <= MAX_PORT,
                  "agent %s: %r is not a uturnd relayed address" % (name, c))
        relays[name] = {(c["host"], c["port"]) for c in cands}
    check(relays["a"].isdisjoint(relays["b"]), "both agents got the same relayed address")
    for name, other in (("a", "b"), ("b", "a")):
        r = res[name]["result"]
        check(r["event"] == "connected", "TURN/%s: agent %s did not connect: %r"
              % (transport, name, r))
        check(r["local"]["type"] == "relay" and r["remote"]["type"] == "relay",
              "agent %s: selected pair is not relay <-> relay: %r" % (name, r))
        check(tuple(r["local_addr"]) in relays[name], "agent %s: local %r" % (name, r))
        check(tuple(r["remote_addr"]) in relays[other], "agent %s: remote %r" % (name, r))
    check_data(res)


def check_data(res):
    check(res["a"]["done"].get("answered") == 10,
          "controlling agent got %r of 10 answers" % res["a"]["done"])
    check(res["b"]["done"].get("received") == list(range(10)) and res["b"]["done"]["bad"] == 0,
          "controlled agent received %r" % res["b"]["done"])


def test_symmetric_nats_need_turn():
    t0 = time.monotonic()
    with Lab() as lab:
        srv, clients = build(lab, Lab.NAT_SYMMETRIC)
        u = uturnd(srv)
        # STUN only: each agent learns a server-reflexive address, useless to the other side.
        res = ice(lab, clients, stun=True, connect_timeout=10)
        for (_, lan, wan), name in zip(clients, ("a", "b")):
            srflx = [c for c in res[name]["local"]["candidates"] if c["type"] == "srflx"]
            check(len(srflx) == 1 and srflx[0]["host"] == wan,
                  "agent %s: server-reflexive candidates %r, want one on %s" % (name, srflx, wan))
            check(res[name]["result"]["event"] == "failed",
                  "agent %s connected through symmetric NATs with STUN only: %r"
                  % (name, res[name]["result"]))
        print("STUN only through symmetric NATs: failed, as it must (%.1fs)"
              % (time.monotonic() - t0), flush=True)
        # TURN/UDP, relay only: connects.
        res = ice(lab, clients, turn=("udp", False, PORT))
        check_relayed(res, "udp")
        check(u.alive(), "uturnd died:\n" + u.log()[-3000:])
        u.stop_clean()


def test_port_restricted_cone_nats_stun_only():
    with Lab() as lab:
        srv, clients = build(lab, Lab.NAT_ENDPOINT_INDEPENDENT)
        u = uturnd(srv)
        res = ice(lab, clients, stun=True)
        wans = {"a": clients[0][2], "b": clients[1][2]}
        for name, other in (("a", "b"), ("b", "a")):
            cands = res[name]["local"]["candidates"]
            check(all(c["type"] in ("host", "srflx") for c in cands), "agent %s: %r" % (name, cands))
            check([c["host"] for c in cands if c["type"] == "srflx"] == [wans[name]],
                  "agent %s: server-reflexive candidates %r" % (name, cands))
            r = res[name]["result"]
            check(r["event"] == "connected", "agent %s did not connect with STUN: %r" % (name, r))
            # The peer is reached at its NAT's public address, the one STUN told it.
            check(r["remote_addr"][0] == wans[other] and r["remote"]["type"] == "srflx",
                  "agent %s: selected remote %r is not the peer's server-reflexive address"
                  % (name, r))
        check_data(res)
        u.stop_clean()


def _udp_blocked(cli):
    """A STUN Binding request over UDP from cli to uturnd gets no answer."""
    code = ("import os,socket\ns=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\n"
            "s.settimeout(2)\n"
            "s.sendto(bytes.fromhex('000100002112a442')+os.urandom(12),('%s',%d))\n"
            "try:\n s.recvfrom(2048)\n print('answered')\n"
            "except socket.timeout:\n print('timeout')\n" % (SRV, PORT))
    return cli.run([PYTHON, "-c", code], timeout=15).stdout.strip() == "timeout"


def test_udp_blocked_turn_tcp_and_tls():
    with Lab() as lab:
        srv, clients = build(lab, Lab.NAT_ENDPOINT_INDEPENDENT, block_udp=True)
        d = tempfile.mkdtemp(prefix="utlab-cert-")
        lab.dirs.append(d)
        cert, key = os.path.join(d, "srv.crt"), os.path.join(d, "srv.key")
        subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                        "ec_paramgen_curve:P-256", "-nodes", "-keyout", key, "-out", cert, "-days",
                        "2", "-subj", "/CN=" + SRV, "-addext", "subjectAltName=IP:" + SRV],
                       check=True, capture_output=True, timeout=30)
        u = uturnd(srv, ["tls-listening-port = %d" % TLS_PORT, "cert = " + cert, "pkey = " + key])
        # Control: the firewall really drops UDP (uturnd answers the same request from srv).
        for cli, _, _ in clients:
            check(_udp_blocked(cli), "%s: UDP to uturnd is not blocked" % cli.name)
        res = ice(lab, clients, turn=("tcp", False, PORT))
        check_relayed(res, "tcp")
        # TURN/TLS on 443; aioice verifies the certificate (for the IP it dials) against
        # SSL_CERT_FILE, which holds only our throw-away certificate.
        res = ice(lab, clients, turn=("tcp", True, TLS_PORT), env={"SSL_CERT_FILE": cert})
        check_relayed(res, "tls")
        # Control: the certificate really is verified. Trusting another CA, the agent refuses it.
        other, _ = make_cert(os.path.join(d, "other"), "other")
        r = gather_only(lab, clients[0], ("tcp", True, TLS_PORT), env={"SSL_CERT_FILE": other})
        check(r["event"] == "gather-failed" and "CERTIFICATE_VERIFY_FAILED" in r["error"],
              "TLS with an untrusted certificate: %r" % r)
        check(u.alive(), "uturnd died:\n" + u.log()[-3000:])
        u.stop_clean()


def test_double_nat_turn():
    with Lab() as lab:
        srv, clients = build(lab, Lab.NAT_SYMMETRIC, double=True)
        u = uturnd(srv)
        res = ice(lab, clients, turn=("udp", False, PORT))
        check_relayed(res, "udp")
        # Both layers translated the clients' traffic: each MASQUERADE rule has counted packets.
        for name in ("nata", "homea", "natb", "homeb"):
            router = [h for h in lab.hosts if h.name == name][0]
            out = router.run(["iptables", "-t", "nat", "-L", "POSTROUTING", "-v", "-n", "-x"]).stdout
            counts = [int(line.split()[0]) for line in out.splitlines() if "MASQUERADE" in line]
            check(counts and all(c > 0 for c in counts),
                  "%s: MASQUERADE translated nothing:\n%s" % (name, out))
        u.stop_clean()


if __name__ == "__main__":
    run()
