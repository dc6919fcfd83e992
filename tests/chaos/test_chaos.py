"""Stateful chaos test: many seeded clients drive random sequences of real TURN operations against
one real uturnd (2 workers, the build under test, ASan in CI) while peers come and go, the
configuration is reloaded, allocations are killed through the admin API and the node drains.

Per seed: one uturnd (UDP, TCP, TLS, DTLS, admin API), CLIENTS client threads (each with its own
RNG derived from the seed, its own user and its own 127.NET.1.x source address), UDP and TCP peers
on 127.NET.2.x and 127.NET.3.x, and one chaos thread. Invariants, checked as it runs and at the end:
  - uturnd stays alive and its stderr has no sanitizer report;
  - every relayed payload (tagged: seed, sender, receiver, sequence, relayed port) reaches only the
    party it was meant for, from the address it must come from, only with a permission, never
    twice; RFC 6062 streams arrive complete and in order; UDP paths deliver >= MIN_RATIO;
  - a ConnectionBind never hands one user's peer connection to another user;
  - once every client is gone: no allocation left, uturnd's fds back to their baseline and RSS
    within RSS_SLACK_KIB of it.
A failing seed is replayed with the command printed; see tests/chaos/README.md.
"""
import collections
import hashlib
import http.client
import itertools
import json
import os
import queue
import random
import re
import selectors
import signal
import socket
import struct
import sys
import tempfile
import threading
import time
import traceback

from chaosnet import (ChaosConn, Closed, StreamParser, dtls_abandon, make_payload, parse_payload,
                      stream_frame)
from uturn import (A_DATA, A_PEER, M_ALLOCATE, M_CHANNEL, M_DATA, M_PERMISSION, M_REFRESH,
                   SANITIZER_PATTERNS, SRCDIR,
                   TestFailure, Uturnd, attr, error_code, free_port, get_attr, make_cert, message,
                   mtype, parse, relayed_addresses, tid, wait_for, xor_addr_value, xor_address, deadline)

A_CONNECTION_ID = 0x002A
M_CONNECT, M_CONNECTION_BIND, M_CONNECTION_ATTEMPT = 0x00A, 0x00B, 0x00C
TOKEN = "chaos-admin-token-0123456789abcdef"
REALM = "chaos.test"

CLIENTS = int(os.environ.get("UTURN_CHAOS_CLIENTS", "8"))
STEPS = int(os.environ.get("UTURN_CHAOS_STEPS", "300"))  # operations per client per seed
UDP_PEERS, TCP_PEERS = 4, 3
MIN_RATIO = 0.9  # UDP legs on loopback: loss is rare but allowed
FD_SLACK = 2
RSS_SLACK_KIB = 48 * 1024  # ASan's quarantine is capped at 16 MiB below; the rest is heap growth
RSS_WAVE_KIB = 16 * 1024  # growth allowed from the middle wave (the second of three) to the last
WAVES = int(os.environ.get("UTURN_CHAOS_WAVES", "3"))
FD_WAIT = 45  # an unbound RFC 6062 peer connection is kept 30 s
# Each seed's deadline (a seed takes 20-30 s at the defaults): grows with the work asked for, and
# UTURN_CHAOS_SEED_TIMEOUT sets it (0: none). A seed past it fails with its replay line.
SEED_TIMEOUT = float(os.environ.get("UTURN_CHAOS_SEED_TIMEOUT",
                                    300 * max(1.0, CLIENTS * STEPS * WAVES / (8 * 300 * 3))))
SETTLE = 3.0  # seconds to wait for payloads still in flight

OPS = [  # (name, weight): the weights decide the plan, so changing them changes every seed
    ("open", 3), ("allocate", 8), ("refresh", 4), ("delete", 3), ("perm", 7), ("chanbind", 6),
    ("send", 10), ("chandata", 10), ("peer_send", 12), ("peer_unpermitted", 3), ("connect", 6),
    ("peer_connect", 4), ("tcp_data", 10), ("cb_control", 3), ("cb_wrong", 3), ("stale", 2),
    ("truncated", 2), ("vanish", 3), ("binding", 2), ("garbage", 2), ("idle", 2),
    ("spray", 3), ("peer_vanish", 3), ("even_port", 3), ("redeem", 2), ("bad_allocate", 2),
    ("dtls_abandon", 2),
]
OP_NAMES = [o for o, _ in OPS]
# Operations to leave out (comma-separated names), to tell which one a failure needs: the plan stays
# the same, a left-out step only logs "skipped".
SKIP = set(x for x in os.environ.get("UTURN_CHAOS_SKIP", "").split(",") if x)
OP_CUM = list(itertools.accumulate(w for _, w in OPS))


def choose_op(rng):
    x = rng.random() * OP_CUM[-1]
    for name, c in zip(OP_NAMES, OP_CUM):
        if x < c:
            return name
    return OP_NAMES[-1]


class World:
    """Everything the threads of one seed share (under self.lock)."""

    def __init__(self, seed, server, logdir):
        self.seed, self.u, self.logdir = seed, server, logdir
        self.net = 10 + seed % 240
        self.lock = threading.Lock()
        self.violations = []
        self.internal = []
        self.stats = collections.Counter()
        self.codes = collections.Counter()
        self.expected = {}  # (sender, seq) -> (client id, kind, time)
        self.forbidden = set()  # (sender, seq): sent where no permission exists
        self.delivered = set()
        self.relays_ever = collections.defaultdict(set)  # client id -> relayed ports it held
        # client id -> allocation serials whose payloads need not arrive: ended by the admin API, or
        # by the client closing its stream
        self.killed = collections.defaultdict(set)
        self.clients = {}
        self.cids = []  # (connection id bytes, client id)
        self.accepted = {}  # (peer id, relay addr) -> PeerStream
        self.accept_cv = threading.Condition(self.lock)
        self.progress = 0
        self.total_steps = CLIENTS * STEPS
        self.drained = False
        self.peers = {}
        self.seq = collections.Counter()
        self.stats_all = collections.Counter()
        self.wave = 0
        self.transient = {}  # peer id -> UdpPeer that one client made and closes again

    def ip(self, kind, n):
        """The test's loopback addresses: 127.NET.1.N clients, .2.x UDP peers, .3.x TCP peers,
        .4.N abandoned DTLS handshakes. NET comes from the seed, so that a chaos run beside another
        one (other seeds) never shares a peer address, hence a permission, with it."""
        return "127.%d.%d.%d" % (self.net, kind, n)

    def new_wave(self, wave):
        """Per-wave state; sequence numbers and relayed ports stay unique across waves."""
        with self.lock:
            self.wave = wave
            self.violations, self.internal = [], []
            self.stats_all.update(self.stats)
            self.stats = collections.Counter()
            self.expected, self.forbidden, self.delivered = {}, set(), set()
            self.killed, self.cids, self.accepted = collections.defaultdict(set), [], {}
            self.progress = 0
            self.drained = False
        self.t0 = time.monotonic()

    def next_seq(self, sender):
        with self.lock:
            self.seq[sender] += 1
            return self.seq[sender]

    def violation(self, who, what):
        with self.lock:
            self.violations.append("%s: %s" % (who, what))
        print("VIOLATION %s: %s" % (who, what), flush=True)

    def expect(self, sender, seq, client, kind):
        """A payload that must arrive unless the admin API ends the allocation (client.serial)."""
        with self.lock:
            self.expected[(sender, seq)] = (client.id, client.serial, kind)

    def deliver(self, who, sender, seq):
        with self.lock:
            key = (sender, seq)
            if key in self.delivered:
                self.violations.append("%s: payload %s delivered twice" % (who, key))
                return
            self.delivered.add(key)
            if key in self.forbidden:
                self.violations.append("%s: payload %s arrived without a permission" % (who, key))


# ---- peers ----

class UdpPeer:
    def __init__(self, pid, ip):
        self.id = pid
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((ip, 0))
        self.addr = self.sock.getsockname()
        self.kind = "udp"


class TcpPeer:
    def __init__(self, pid, ip):
        self.id = pid
        self.ip = ip
        self.lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.lsock.bind((ip, 0))
        self.lsock.listen(64)
        self.addr = self.lsock.getsockname()
        self.kind = "tcp"


class PeerStream:
    """The peer's end of one RFC 6062 connection: what the client sent that is still to arrive
    here (c2p) and what the peer sent that is still to arrive at the client (p2c)."""

    def __init__(self, peer_id, sock):
        self.peer_id, self.sock = peer_id, sock
        self.remote = sock.getpeername() if sock else None
        self.parser = StreamParser()
        self.c2p = collections.deque()
        self.p2c = collections.deque()
        self.client_id = None
        self.dead = False
        self.disturbed = False


class PeerLoop(threading.Thread):
    """One thread reads every peer socket and checks what arrives."""

    def __init__(self, world):
        super().__init__(daemon=True)
        self.w = world
        self.sel = selectors.DefaultSelector()
        self.cmds = queue.Queue()
        self.stop = threading.Event()

    def add_stream(self, ps):
        self.cmds.put(("add", ps))

    def close_stream(self, ps):
        self.cmds.put(("close", ps))

    def run(self):
        for p in self.w.peers.values():
            if p.kind == "udp":
                self.sel.register(p.sock, selectors.EVENT_READ, ("udp", p))
            else:
                self.sel.register(p.lsock, selectors.EVENT_READ, ("listen", p))
        while not self.stop.is_set():
            while True:
                try:
                    cmd, ps = self.cmds.get_nowait()
                except queue.Empty:
                    break
                if cmd == "add" and not ps.dead:
                    self.sel.register(ps.sock, selectors.EVENT_READ, ("stream", ps))
                elif cmd == "add_udp":
                    self.sel.register(ps.sock, selectors.EVENT_READ, ("udp", ps))
                elif cmd == "close_udp":
                    try:
                        self.sel.unregister(ps.sock)
                    except (KeyError, ValueError):
                        pass
                    ps.sock.close()
                    ps.closed.set()
                elif cmd == "close":
                    self._drop(ps)
            try:
                events = self.sel.select(0.05)
            except (OSError, ValueError):
                continue
            for key, _ in events:
                kind, obj = key.data
                try:
                    if kind == "udp":
                        self._udp(obj)
                    elif kind == "listen":
                        self._accept(obj)
                    else:
                        self._stream(obj)
                except Exception as e:  # noqa: BLE001 - a test-side bug must surface, not hang
                    self.w.internal.append("peer loop: %s\n%s" % (e, traceback.format_exc()))

    def _drop(self, ps):
        if ps.dead:
            return
        ps.dead = True
        try:
            self.sel.unregister(ps.sock)
        except (KeyError, ValueError):
            pass
        try:
            ps.sock.close()
        except OSError:
            pass

    def _udp(self, peer):
        try:
            data, src = peer.sock.recvfrom(65536)
        except (BlockingIOError, ConnectionRefusedError):
            return
        w = self.w
        t = parse_payload(data)
        if t is None:
            w.violation("peer %d" % peer.id, "unknown datagram from %s: %r" % (src, data[:32]))
            return
        seed, sender, receiver, seq, port = t
        if seed != w.seed & 0xFFFFFFFF or receiver != peer.id:
            w.violation("peer %d" % peer.id, "payload %s meant for %d (seed %d) arrived here"
                        % ((sender, seq), receiver, seed))
            return
        if src != (w.u.host, port) or port not in w.relays_ever.get(sender, ()):
            w.violation("peer %d" % peer.id, "payload %s from client %d came from %s, not its "
                        "relayed port %d" % ((sender, seq), sender, src, port))
            return
        w.stats["peer_rx_udp"] += 1
        w.deliver("peer %d" % peer.id, sender, seq)

    def _accept(self, peer):
        try:
            s, src = peer.lsock.accept()
        except BlockingIOError:
            return
        ps = PeerStream(peer.id, s)
        with self.w.accept_cv:
            self.w.accepted[(peer.id, src)] = ps
            self.w.accept_cv.notify_all()
        self.sel.register(s, selectors.EVENT_READ, ("stream", ps))

    def _stream(self, ps):
        try:
            data = ps.sock.recv(65536)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:
            self._drop(ps)
            return
        w = self.w
        try:
            frames = ps.parser.feed(data)
        except TestFailure as e:
            w.violation("peer %d" % ps.peer_id, "%s (from %s)" % (e, ps.remote))
            self._drop(ps)
            return
        for f in frames:
            t = parse_payload(f)
            ok = t is not None and t[2] == ps.peer_id and t[0] == w.seed & 0xFFFFFFFF
            if ok:
                _, sender, _, seq, port = t
                ok = ps.remote == (w.u.host, port) and port in w.relays_ever.get(sender, ())
            if not ok:
                w.violation("peer %d" % ps.peer_id, "stream frame %r not meant for this "
                            "connection from %s" % (t, ps.remote))
                continue
            with w.lock:
                want = ps.c2p.popleft() if ps.c2p else None
            if want != (sender, seq):
                w.violation("peer %d" % ps.peer_id, "stream from %s: got %s, expected %s"
                            % (ps.remote, (sender, seq), want))
            w.stats["peer_rx_tcp"] += 1
            w.deliver("peer %d" % ps.peer_id, sender, seq)


# ---- clients ----

class DataConn:
    """A client's RFC 6062 data connection bound to one peer connection."""

    def __init__(self, conn, ps, cid):
        self.conn, self.ps, self.cid = conn, ps, cid
        self.parser = StreamParser()
        self.dead = False


class Client(threading.Thread):
    def __init__(self, world, idx, peerloop):
        super().__init__(daemon=True)
        self.w, self.idx, self.pl = world, idx, peerloop
        self.id = idx + 1
        self.user, self.password = "c%d" % self.id, "pw-%d" % self.id
        self.src_ip = world.ip(1, self.id)
        self.rng = random.Random("uturn-chaos/%d/%d/%d" % (world.seed, world.wave, idx))
        self.conn = None
        self.alloc = None  # {"kind": "udp"|"tcp", "relay": (ip, port), "perms": set, "chans": {}}
        self.deleted = False  # self.conn's allocation was deleted (requests after delete)
        self.data = []
        self.graveyard = []  # UDP and DTLS 5-tuples left with an allocation (cleaned up at the end)
        self.perm_ips_ever = set()
        self.chans_ever = set()
        self.tokens = []  # (RESERVATION-TOKEN, the even port it reserves the next of)
        self.transient_n = 0
        self.port_n = 0
        self.attempts = []
        self.cb_on_conn = False
        self.serial = 0  # allocations made so far (the admin API's kills are told apart by it)
        with world.lock:
            world.clients[self.id] = self
        self.log = []
        self.plan = []
        self.failed = None

    # -- helpers --
    def next_port(self):
        """Source ports in order, in a window of their own per wave (each client has its own IP)."""
        self.port_n += 1
        return 10000 + ((self.w.wave - 1) * 5000 + self.port_n) % 20000

    def note(self, text):
        now = time.time()
        self.log.append("%s.%03dZ %s" % (time.strftime("%H:%M:%S", time.gmtime(now)), int(now * 1000) % 1000,
                                         text))

    def code(self, op, code):
        self.w.codes[(op, code)] += 1
        return code

    def open_conn(self, p):
        transport = p.choice(["udp", "tcp", "tls", "dtls"])
        self.conn = ChaosConn(self.w.u, self.user, self.password, transport, self.src_ip, self.next_port)
        self.deleted = False
        self.cb_on_conn = False
        self.perm_ips_ever, self.chans_ever = set(), set()
        self.w.stats["open_" + transport] += 1
        self.note("open %s from %s" % (transport, self.conn.local()))

    def drop_conn(self, notify=True, why=""):
        """Our side ends the 5-tuple (stream: the allocation goes with it)."""
        for dc in self.data:
            self.close_data(dc, notify)
        self.data = []
        if self.conn is None:
            return
        if not self.conn.stream() and self.alloc is not None and not self.conn.closed:
            self.graveyard.append(self.conn)  # its allocation lives on: keep the 5-tuple
        else:
            if self.alloc is not None:
                # Closing a stream that the server may not have read to the end (unread data on
                # our side makes close() send RST, which discards the server's receive queue):
                # what we sent last need not be relayed.
                with self.w.lock:
                    self.w.killed[self.id].add(self.serial)
            self.conn.close(notify)
        self.note("drop conn (%s)" % why)
        self.conn, self.alloc = None, None

    def close_data(self, dc, notify=True):
        dc.dead = True
        dc.ps.disturbed = True
        dc.conn.close(notify)
        self.pl.close_stream(dc.ps)

    def lost_alloc(self, why):
        self.note("allocation gone: %s" % why)
        self.alloc = None
        for dc in self.data:
            self.close_data(dc)
        self.data = []

    def ensure_alloc(self, p, kind=None):
        if self.alloc is not None and (kind is None or self.alloc["kind"] == kind):
            return True
        if self.alloc is not None:
            return False
        if self.conn is None or self.deleted:
            if self.conn is not None:
                self.drop_conn(why="fresh 5-tuple")
            self.open_conn(p)
        return self.do_allocate(p, kind)

    def do_allocate(self, p, kind=None):
        c = self.conn
        want = kind or ("tcp" if c.stream() and p.random() < 0.5 else "udp")
        if want == "tcp" and not c.stream():
            return False
        lifetime = p.choice([None, 600, 1800])
        extra = attr(0x000D, struct.pack("!I", lifetime)) if lifetime else b""
        code, attrs, raw = c.allocate(transport=6 if want == "tcp" else 17, extra=extra,
                                      raw_response=True)
        self.code("allocate", code)
        self.note("allocate %s -> %s" % (want, code))
        if code != 0:
            return False
        relay = relayed_addresses(raw)[0]
        self.alloc = {"kind": want, "relay": relay, "perms": set(), "chans": {}}
        with self.w.lock:
            self.serial += 1
            self.w.relays_ever[self.id].add(relay[1])
        self.note("relayed %s" % (relay,))
        return True

    def payload(self, receiver, port, p):
        seq = self.w.next_seq(self.id)
        return seq, make_payload(self.w.seed, self.id, receiver, seq, port, p.randrange(0, 900), p)

    def peers(self, kind):
        return [pe for pe in self.w.peers.values() if pe.kind == kind]

    # -- receiving --
    def pump(self, timeout=0.0):
        """Read what is waiting on the control connection and every data connection."""
        deadline = time.monotonic() + timeout
        while True:
            got = False
            if self.conn is not None:
                try:
                    msg = self.conn.stash.pop(0) if self.conn.stash else self.conn.recv_raw(0.001)
                except Closed as e:
                    self.conn_closed_by_server(str(e))
                    msg = None
                if msg is not None:
                    got = True
                    self.handle(msg)
            for dc in list(self.data):
                if dc.dead:
                    continue
                try:
                    data = dc.conn.recv_bytes(0.001)
                except Closed as e:
                    self.note("data conn %s closed by server: %s" % (dc.cid.hex(), e))
                    self.data.remove(dc)
                    self.close_data(dc)
                    continue
                if data:
                    got = True
                    self.stream_in(dc, data)
            if not got and time.monotonic() >= deadline:
                return

    def conn_closed_by_server(self, why):
        self.note("control connection closed by uturnd: %s" % why)
        self.w.stats["server_closed"] += 1
        self.lost_alloc("connection closed")
        self.conn.close()
        self.conn = None

    def stream_in(self, dc, data):
        w = self.w
        try:
            frames = dc.parser.feed(data)
        except TestFailure as e:
            w.violation(self.user, "data conn %s: %s" % (dc.cid.hex(), e))
            dc.dead = True
            return
        for f in frames:
            t = parse_payload(f)
            ok = t is not None and t[0] == w.seed & 0xFFFFFFFF and t[2] == self.id \
                and t[1] == dc.ps.peer_id
            if not ok:
                w.violation(self.user, "data conn %s got %r, not for it" % (dc.cid.hex(), t))
                continue
            with w.lock:
                want = dc.ps.p2c.popleft() if dc.ps.p2c else None
            if want != (t[1], t[3]):
                w.violation(self.user, "data conn %s: got %s, expected %s" % (dc.cid.hex(), (t[1], t[3]), want))
            w.stats["client_rx_tcp"] += 1
            w.deliver(self.user, t[1], t[3])

    def handle(self, msg):
        w = self.w
        if msg[0] & 0xC0 == 0x40:
            num, n = struct.unpack("!HH", msg[:4])
            self.relayed_in(msg[4:4 + n], ("channel", num))
            return
        try:
            mt, txid, attrs = parse(msg)
        except TestFailure as e:
            w.violation(self.user, "malformed message from uturnd: %s %r" % (e, msg[:40]))
            return
        if mt == mtype(M_DATA, 1):
            peer = get_attr(attrs, A_PEER)
            data = get_attr(attrs, A_DATA)
            if peer is None or data is None:
                w.violation(self.user, "Data indication without XOR-PEER-ADDRESS or DATA")
                return
            self.relayed_in(data, ("data", xor_address(peer, txid)))
        elif mt == mtype(M_CONNECTION_ATTEMPT, 1):
            cid = get_attr(attrs, A_CONNECTION_ID)
            peer = get_attr(attrs, A_PEER)
            self.attempts.append((cid, xor_address(peer, txid) if peer else None))
        # late responses (after a timeout) are dropped

    def relayed_in(self, data, how):
        w = self.w
        t = parse_payload(data)
        who = self.user
        if t is None:
            w.violation(who, "relayed data that is not ours via %s: %r" % (how, data[:32]))
            return
        seed, sender, receiver, seq, port = t
        peer = w.peers.get(sender) or w.transient.get(sender)
        if seed != w.seed & 0xFFFFFFFF or peer is None:
            w.violation(who, "payload %s (seed %d) from no peer of this seed via %s" % ((sender, seq), seed, how))
            return
        if how[0] == "data" and tuple(how[1]) != tuple(peer.addr):
            w.violation(who, "payload from peer %d %s announced as from %s" % (sender, peer.addr, how[1]))
            return
        if how[0] == "channel" and (how[1], tuple(peer.addr)) not in self.chans_ever:
            w.violation(who, "payload from peer %d %s on channel 0x%04x, bound to something else"
                        % (sender, peer.addr, how[1]))
            return
        if peer.addr[0] not in self.perm_ips_ever:
            w.violation(who, "payload from peer %d %s without a permission for its IP" % (sender, peer.addr))
            return
        with w.lock:
            mine = port in w.relays_ever[self.id]
        if not mine:
            w.violation(who, "payload %s aimed at relayed port %d (client %d's) arrived here"
                        % ((sender, seq), port, receiver))
            return
        if receiver != self.id:
            w.stats["port_reuse_delivery"] += 1  # a port we hold now, aimed at its former owner
        w.stats["client_rx_" + how[0]] += 1
        w.deliver(who, sender, seq)

    # -- the run --
    def run(self):
        try:
            for step in range(STEPS):
                if step % 10 == 0 and not self.w.u.alive():
                    self.note("uturnd is gone: stop")
                    break
                op = choose_op(self.rng)
                sub = self.rng.getrandbits(64)
                self.plan.append("%s %016x" % (op, sub))
                p = random.Random(sub)
                self.note("step %d: %s %016x" % (step, op, sub))
                try:
                    out = "skipped" if op in SKIP else getattr(self, "op_" + op)(p)
                    self.note("  -> %s" % (out,))
                except Closed as e:
                    self.note("  -> closed: %s" % e)
                    self.w.stats["closed_in_op"] += 1
                    if self.conn is not None:
                        self.conn.close()
                        self.conn = None
                    self.lost_alloc("closed")
                except TestFailure as e:
                    if "no response within" not in str(e) and "did not finish" not in str(e):
                        raise
                    self.note("  -> timeout: %s" % e)
                    self.w.stats["timeout_" + (self.conn.transport if self.conn else "none")] += 1
                    self.w.stats["timeouts"] += 1
                except OSError as e:
                    self.note("  -> os error: %s" % e)
                    self.w.stats["oserror"] += 1
                    self.drop_conn(notify=False, why="os error")
                try:
                    self.pump(0)
                except Closed:
                    pass
                with self.w.lock:
                    self.w.progress += 1
        except Exception as e:  # noqa: BLE001 - reported by the seed runner
            self.failed = "%s\n%s" % (e, traceback.format_exc())
            self.note("INTERNAL %s" % e)

    # -- operations (each draws only from p, its own RNG) --
    def op_open(self, p):
        if self.conn is not None:
            self.drop_conn(notify=p.random() < 0.5, why="reopen")
        self.open_conn(p)
        return self.conn.transport

    def op_allocate(self, p):
        if self.conn is None:
            self.open_conn(p)
        if self.alloc is not None:
            # A second Allocate on the same 5-tuple: 437 (RFC 8656 §7.2).
            code, _, raw = self.conn.allocate(raw_response=True)
            self.code("allocate_again", code)
            if code == 0:
                # Legitimate only when the admin API ended our allocation behind our back.
                with self.w.lock:
                    killed = self.serial in self.w.killed[self.id]
                if not killed:
                    self.w.violation(self.user, "a second Allocate on a %s 5-tuple %s that has an allocation "
                                     "succeeded%s" % (self.conn.transport, self.conn.local(),
                                                      " (after a ConnectionBind on it)" if self.cb_on_conn else ""))
                self.lost_alloc("a second Allocate succeeded")
                relay = relayed_addresses(raw)[0]
                self.alloc = {"kind": "udp", "relay": relay, "perms": set(), "chans": {}}
                with self.w.lock:
                    self.serial += 1
                    self.w.relays_ever[self.id].add(relay[1])
            return "again %s" % code
        if self.deleted:
            self.drop_conn(why="fresh 5-tuple")
            self.open_conn(p)
        return self.do_allocate(p)

    def op_refresh(self, p):
        if not self.ensure_alloc(p):
            return "no allocation"
        code = self.code("refresh", self.conn.refresh(p.choice([None, 600, 1200]))[0])
        if code == 437:
            self.lost_alloc("437 on Refresh")
        return code

    def op_delete(self, p):
        if not self.ensure_alloc(p):
            return "no allocation"
        code = self.code("delete", self.conn.refresh(0)[0])
        if code in (0, 437):
            self.lost_alloc("deleted")
            self.deleted = True
        return code

    def op_perm(self, p):
        if not self.ensure_alloc(p):
            return "no allocation"
        kind = self.alloc["kind"]
        peers = p.sample(self.peers(kind), p.randint(1, 2))
        addrs = [tuple(pe.addr) for pe in peers]
        for a in addrs:
            self.perm_ips_ever.add(a[0])  # a timeout may still have installed it
        code = self.code("perm", self.conn.create_permission(*addrs)[0])
        if code == 0:
            self.alloc["perms"].update(a[0] for a in addrs)
        elif code == 437:
            self.lost_alloc("437 on CreatePermission")
        return "%s %s" % (addrs, code)

    def op_chanbind(self, p):
        if not self.ensure_alloc(p):
            return "no allocation"
        peer = p.choice(self.peers("udp"))
        chans = self.alloc["chans"]
        bound = [n for n, pe in chans.items() if pe is peer]
        if bound and p.random() < 0.7:
            num = bound[0]  # a refresh of the binding
        else:
            num = 0x4000 + p.randrange(0, 64)
        self.perm_ips_ever.add(peer.addr[0])
        self.chans_ever.add((num, tuple(peer.addr)))
        code = self.code("chanbind_" + self.alloc["kind"], self.conn.channel_bind(num, *peer.addr)[0])
        if code == 0:
            if self.alloc["kind"] != "udp":
                self.w.violation(self.user, "ChannelBind on a TCP allocation succeeded")
            chans[num] = peer
            self.alloc["perms"].add(peer.addr[0])
        elif code == 437:
            self.lost_alloc("437 on ChannelBind")
        return "0x%04x %s %s" % (num, peer.addr, code)

    def _udp_target(self, p, permitted=True):
        if not self.ensure_alloc(p, "udp"):
            return None
        ok = [pe for pe in self.peers("udp") if pe.addr[0] in self.alloc["perms"]]
        if not ok:
            self.op_perm(p)
            if self.alloc is None:
                return None
            ok = [pe for pe in self.peers("udp") if pe.addr[0] in self.alloc["perms"]]
        return p.choice(ok) if ok else None

    def op_send(self, p):
        peer = self._udp_target(p)
        if peer is None:
            return "no target"
        n = p.randint(1, 6)
        for _ in range(n):
            seq, data = self.payload(peer.id, self.alloc["relay"][1], p)
            self.w.expect(self.id, seq, self, "send/" + self.conn.transport)
            self.conn.send_indication(peer.addr[0], peer.addr[1], data)
        return "%d to peer %d" % (n, peer.id)

    def op_chandata(self, p):
        if not self.ensure_alloc(p, "udp"):
            return "no allocation"
        chans = [(n, pe) for n, pe in self.alloc["chans"].items()]
        if not chans:
            return self.op_chanbind(p)
        num, peer = p.choice(sorted(chans, key=lambda x: x[0]))
        n = p.randint(1, 6)
        for _ in range(n):
            seq, data = self.payload(peer.id, self.alloc["relay"][1], p)
            self.w.expect(self.id, seq, self, "chan/" + self.conn.transport)
            self.conn.channel_data(num, data)
        return "%d on 0x%04x" % (n, num)

    def op_peer_send(self, p):
        if self.alloc is not None and self.alloc["kind"] == "tcp":
            return self.op_tcp_data(p)
        peer = self._udp_target(p)
        if peer is None:
            return "no target"
        relay = tuple(self.alloc["relay"])
        n = p.randint(1, 6)
        for _ in range(n):
            seq = self.w.next_seq(peer.id)
            data = make_payload(self.w.seed, peer.id, self.id, seq, relay[1], p.randrange(0, 900), p)
            self.w.expect(peer.id, seq, self, "peer/" + self.conn.transport)
            peer.sock.sendto(data, relay)
        self.pump(0.02)
        return "%d from peer %d" % (n, peer.id)

    def op_peer_unpermitted(self, p):
        if not self.ensure_alloc(p, "udp"):
            return "no allocation"
        others = [pe for pe in self.peers("udp") if pe.addr[0] not in self.perm_ips_ever]
        if not others:
            return "every peer permitted"
        peer = p.choice(others)
        relay = tuple(self.alloc["relay"])
        before = no_permission_drops(self.w)
        n = p.randint(1, 3)
        for _ in range(n):
            seq = self.w.next_seq(peer.id)
            with self.w.lock:
                self.w.forbidden.add((peer.id, seq))
            peer.sock.sendto(make_payload(self.w.seed, peer.id, self.id, seq, relay[1], 40, p), relay)
        # uturnd checks the permission when it reads a datagram, not when the kernel queues it: wait
        # until it has dropped these, so a permission this client installs next cannot let a queued
        # one through (seen once under CI load: two such payloads delivered after a CreatePermission
        # 4 ms later). Other clients' drops may end the wait early; then the race is only narrower.
        deadline = time.monotonic() + 2.0
        while before is not None and time.monotonic() < deadline:
            now = no_permission_drops(self.w)
            if now is None or now >= before + n:
                break
            time.sleep(0.005)
        return "peer %d without permission" % peer.id

    # RFC 6062
    def _tcp_alloc(self, p):
        if self.alloc is not None and self.alloc["kind"] == "tcp":
            return True
        if self.conn is None or not self.conn.stream() or self.alloc is not None or self.deleted:
            if self.conn is not None:
                self.drop_conn(notify=True, why="want a TCP allocation")
            self.conn = ChaosConn(self.w.u, self.user, self.password, p.choice(["tcp", "tls"]),
                                  self.src_ip, self.next_port)
            self.deleted = False
            self.cb_on_conn = False
            self.perm_ips_ever, self.chans_ever = set(), set()
            self.note("open %s from %s" % (self.conn.transport, self.conn.local()))
        return self.do_allocate(p, "tcp")

    def _bind_data(self, cid, ps, p):
        d = ChaosConn(self.w.u, self.user, self.password, self.conn.transport, self.src_ip, self.next_port)
        d.realm, d.nonce = self.conn.realm, self.conn.nonce
        try:
            code = self.code("connection_bind", d.request(M_CONNECTION_BIND, attr(A_CONNECTION_ID, cid))[0])
        except (Closed, TestFailure) as e:
            d.close()
            self.pl.close_stream(ps)
            return "bind failed: %s" % e
        if code != 0:
            d.close()
            self.pl.close_stream(ps)
            return "bind %s" % code
        ps.client_id = self.id
        dc = DataConn(d, ps, cid)
        dc.serial = self.serial
        self.data.append(dc)
        self.w.stats["data_conns"] += 1
        return "bound %s from %s" % (cid.hex(), d.local())

    def op_connect(self, p):
        if not self._tcp_alloc(p):
            return "no TCP allocation"
        peer = p.choice(self.peers("tcp"))
        txid = tid()
        self.note("Connect to peer %d %s on %s %s" % (peer.id, peer.addr, self.conn.transport, self.conn.local()))
        code, attrs = self.conn.request(M_CONNECT, attr(A_PEER, xor_addr_value(peer.addr[0], peer.addr[1], txid)),
                                        txid=txid)
        self.code("connect", code)
        if code == 437:
            self.lost_alloc("437 on Connect")
        if code != 0:
            return "connect %s" % code
        self.perm_ips_ever.add(peer.ip)
        self.alloc["perms"].add(peer.ip)
        cid = get_attr(attrs, A_CONNECTION_ID)
        with self.w.lock:
            self.w.cids.append((cid, self.id))
        key = (peer.id, tuple(self.alloc["relay"]))
        with self.w.accept_cv:
            ok = self.w.accept_cv.wait_for(lambda: key in self.w.accepted, 5)
            ps = self.w.accepted.pop(key, None) if ok else None
        if ps is None:
            self.w.violation(self.user, "Connect %s succeeded but peer %d saw no connection from %s"
                             % (cid.hex(), peer.id, key[1]))
            return "no peer connection"
        if p.random() < 0.1:
            self.pl.close_stream(ps)
            return "connect %s, never bound" % cid.hex()
        return self._bind_data(cid, ps, p)

    def op_peer_connect(self, p):
        if not self._tcp_alloc(p):
            return "no TCP allocation"
        peer = p.choice(self.peers("tcp"))
        if peer.ip not in self.alloc["perms"]:
            self.perm_ips_ever.add(peer.ip)
            code = self.conn.create_permission((peer.ip, 9))[0]
            if code != 0:
                return "permission %s" % code
            self.alloc["perms"].add(peer.ip)
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.bind((peer.ip, 0))
        s.settimeout(3)
        try:
            s.connect(tuple(self.alloc["relay"]))
        except OSError as e:
            s.close()
            return "peer connect: %s" % e
        ps = PeerStream(peer.id, s)
        s.setblocking(False)
        self.pl.add_stream(ps)
        local = s.getsockname()
        deadline = time.monotonic() + 5
        found = None
        while found is None and time.monotonic() < deadline and self.conn is not None:
            self.pump(0.05)
            for a in self.attempts:
                if a[1] is not None and tuple(a[1]) == tuple(local):
                    found = a
        if found is None:
            refused = ps.dead  # uturnd closed the peer's connection: a cap, not a lost attempt
            self.pl.close_stream(ps)
            with self.w.lock:
                killed = self.serial in self.w.killed[self.id]
            if self.conn is None or self.alloc is None or killed:
                return "allocation gone before ConnectionAttempt"
            if refused:
                self.w.stats["peer_conn_refused"] += 1
                return "peer connection refused"
            self.w.violation(self.user, "no ConnectionAttempt for peer connection from %s" % (local,))
            return "no attempt"
        self.attempts.remove(found)
        with self.w.lock:
            self.w.cids.append((found[0], self.id))
        if p.random() < 0.1:
            self.pl.close_stream(ps)
            return "attempt %s, never bound" % found[0].hex()
        return self._bind_data(found[0], ps, p)

    def op_tcp_data(self, p):
        live = [dc for dc in self.data if not dc.dead and not dc.ps.dead]
        if not live:
            return self.op_connect(p)
        dc = p.choice(live)
        out = []
        for _ in range(p.randint(1, 4)):
            seq, data = self.payload(dc.ps.peer_id, self.alloc["relay"][1], p)
            with self.w.lock:
                dc.ps.c2p.append((self.id, seq))
            self.w.expect(self.id, seq, self, "stream")
            dc.conn.send_raw(stream_frame(data))
            out.append(seq)
            seq = self.w.next_seq(dc.ps.peer_id)
            data = make_payload(self.w.seed, dc.ps.peer_id, self.id, seq, self.alloc["relay"][1],
                                p.randrange(0, 3000), p)
            with self.w.lock:
                dc.ps.p2c.append((dc.ps.peer_id, seq))
            self.w.expect(dc.ps.peer_id, seq, self, "stream")
            try:
                dc.ps.sock.sendall(stream_frame(data))
            except (BlockingIOError, OSError):
                dc.ps.disturbed = True
        if p.random() < 0.1:
            # The peer goes away: the client's data connection must close too.
            self.pl.close_stream(dc.ps)
            dc.ps.disturbed = True
            return "data %s; peer vanished" % out
        return "data %s" % out

    # hostile and misordered
    def op_cb_control(self, p):
        """ConnectionBind on a control connection (valid only as the first request on a new data
        connection): with an allocation or not, with an id of another worker, of another client,
        or of nobody."""
        if self.conn is None:
            self.open_conn(p)
        if p.random() < 0.6 and self.alloc is None:
            self.ensure_alloc(p)
            if self.conn is None:
                return "no connection"
        with self.w.lock:
            foreign = [c for c, owner in self.w.cids if owner != self.id]
        which = p.choice(["foreign", "w0", "w1", "w2", "wff"])
        if which == "foreign" and foreign:
            cid = p.choice(foreign)
        else:
            top = {"w0": 0, "w1": 1, "w2": 2, "wff": 0xFF}.get(which, 1)
            cid = struct.pack("!I", (top << 24) | p.randrange(1 << 24))
        self.cb_on_conn = True
        desc = None if self.alloc is None else (self.alloc["kind"], self.alloc["relay"], sorted(self.alloc["perms"]),
                                                sorted("0x%04x" % n for n in self.alloc["chans"]))
        self.note("ConnectionBind %s on control connection %s %s (allocation %s)"
                  % (cid.hex(), self.conn.transport, self.conn.local(), desc))
        code = self.code("cb_control", self.conn.request(M_CONNECTION_BIND, attr(A_CONNECTION_ID, cid))[0])
        if code == 0:
            self.w.violation(self.user, "ConnectionBind on a control connection (%s) succeeded" % cid.hex())
        return "%s %s -> %s" % (which, cid.hex(), code)

    def op_cb_wrong(self, p):
        """A new data connection binding an id that is not ours (another user's, or nobody's)."""
        transport = p.choice(["tcp", "tls"])
        with self.w.lock:
            foreign = [c for c, owner in self.w.cids if owner != self.id]
        if foreign and p.random() < 0.6:
            cid, which = p.choice(foreign), "foreign"
        else:
            cid, which = struct.pack("!I", (p.randrange(3) << 24) | p.randrange(1 << 24)), "random"
        d = ChaosConn(self.w.u, self.user, self.password, transport, self.src_ip, self.next_port)
        try:
            code = self.code("cb_wrong_" + which, d.request(M_CONNECTION_BIND, attr(A_CONNECTION_ID, cid))[0])
        finally:
            d.close(notify=p.random() < 0.5)
        if code == 0:
            self.w.violation(self.user, "ConnectionBind of %s id %s succeeded for another user"
                             % (which, cid.hex()))
        return "%s %s -> %s" % (which, cid.hex(), code)

    def op_stale(self, p):
        """Requests on a 5-tuple whose allocation was deleted: 437."""
        if not self.deleted or self.conn is None:
            return self.op_delete(p)
        method = p.choice([M_REFRESH, M_PERMISSION, M_CHANNEL])
        if method == M_REFRESH:
            code = self.conn.refresh(600)[0]
        elif method == M_PERMISSION:
            code = self.conn.create_permission(tuple(self.peers("udp")[0].addr))[0]
        else:
            code = self.conn.channel_bind(0x4000, *self.peers("udp")[0].addr)[0]
        self.code("stale", code)
        if code == 0:
            self.w.violation(self.user, "method %d after delete succeeded" % method)
        return code

    def op_truncated(self, p):
        if self.conn is None:
            self.open_conn(p)
        t = tid()
        full = message(mtype(M_ALLOCATE, 0), t, attr(0x0019, bytes([17, 0, 0, 0])) + attr(0x8022, b"x" * 40))
        if p.random() < 0.3:
            full = struct.pack("!HH", 0x4001, 200) + b"y" * 200  # ChannelData
        cut = full[:p.randrange(1, len(full))]
        self.conn.send_raw(cut)
        if self.conn.stream():
            if p.random() < 0.5:
                time.sleep(p.uniform(0, 0.1))
            self.drop_conn(notify=p.random() < 0.5, why="mid-frame")
            return "dropped after %d of %d bytes" % (len(cut), len(full))
        return "sent %d of %d bytes" % (len(cut), len(full))

    def op_vanish(self, p):
        if self.conn is None:
            return "nothing to drop"
        self.drop_conn(notify=p.random() < 0.5, why="vanish")
        return "vanished"

    def op_binding(self, p):
        if self.conn is None:
            self.open_conn(p)
        t = tid()
        resp = self.conn.transact(message(0x0001, t, b"", fingerprint=p.random() < 0.5), t)
        code = self.code("binding", error_code(parse(resp)[2]) or 0)
        if code != 0:
            self.w.violation(self.user, "Binding answered %s" % code)
        return code

    def op_garbage(self, p):
        if self.conn is None:
            self.open_conn(p)
        data = p.randbytes(p.randint(1, 200))
        self.conn.send_raw(data)
        if self.conn.stream():
            # The stream is out of sync now: this 5-tuple is done.
            self.drop_conn(notify=False, why="garbage")
        return "%d bytes" % len(data)

    def op_idle(self, p):
        self.pump(p.uniform(0.05, 0.3))
        return "idle"

    # more peers, ports and reservations
    def op_spray(self, p):
        """A peer sends to relayed ports that clients hold or held: stale, killed, abandoned or
        stranded allocations, and ports that now belong to someone else (who may take it only with
        a permission for that peer)."""
        with self.w.lock:
            ports = sorted((cid, port) for cid, ps in self.w.relays_ever.items() for port in ps)
        if not ports:
            return "no ports yet"
        peer = p.choice(self.peers("udp"))
        out = []
        for _ in range(p.randint(1, 4)):
            cid, port = p.choice(ports)
            seq = self.w.next_seq(peer.id)
            peer.sock.sendto(make_payload(self.w.seed, peer.id, cid, seq, port, p.randrange(0, 200), p),
                             (self.w.u.host, port))
            out.append(port)
        return "peer %d to %s" % (peer.id, out)

    def op_peer_vanish(self, p):
        """A UDP peer that appears, gets a permission (or a channel), talks both ways and goes away;
        later sends to it draw ICMP port-unreachable onto the relayed socket."""
        if not self.ensure_alloc(p, "udp"):
            return "no UDP allocation"
        self.transient_n += 1
        pid = 1000 + 100 * self.id + self.transient_n % 100
        peer = UdpPeer(pid, self.w.ip(2, 16 + self.id))
        peer.closed = threading.Event()
        with self.w.lock:
            self.w.transient[pid] = peer
        self.pl.cmds.put(("add_udp", peer))
        self.perm_ips_ever.add(peer.addr[0])
        num = None
        if p.random() < 0.5:
            num = 0x7000 + (self.id << 4) + self.transient_n % 16
            self.chans_ever.add((num, tuple(peer.addr)))
            code = self.conn.channel_bind(num, *peer.addr)[0]
            if code == 0:
                self.alloc["chans"][num] = peer
        else:
            code = self.conn.create_permission(tuple(peer.addr))[0]
        self.code("peer_vanish_setup", code)
        if code != 0:
            self.pl.cmds.put(("close_udp", peer))
            return "setup %s" % code
        self.alloc["perms"].add(peer.addr[0])
        relay = tuple(self.alloc["relay"])
        for _ in range(p.randint(1, 3)):
            seq, data = self.payload(pid, relay[1], p)
            self.conn.send_indication(peer.addr[0], peer.addr[1], data)
            seq = self.w.next_seq(pid)
            peer.sock.sendto(make_payload(self.w.seed, pid, self.id, seq, relay[1], 64, p), relay)
        self.pump(0.02)
        self.pl.cmds.put(("close_udp", peer))
        peer.closed.wait(2)
        for _ in range(p.randint(0, 3)):  # into the void
            seq, data = self.payload(pid, relay[1], p)
            if num is not None and num in self.alloc["chans"]:
                self.conn.channel_data(num, data)
            else:
                self.conn.send_indication(peer.addr[0], peer.addr[1], data)
        return "peer %d %s came and went" % (pid, peer.addr)

    def side_conn(self, p):
        return ChaosConn(self.w.u, self.user, self.password, p.choice(["udp", "tcp", "tls", "dtls"]),
                         self.src_ip, self.next_port)

    def op_even_port(self, p):
        """Allocate with EVEN-PORT on another 5-tuple: an even port; with R=1 (not in the last wave,
        where a reservation would outlive the drain) also a RESERVATION-TOKEN for the next port."""
        reserve = p.random() < 0.6 and self.w.wave < WAVES
        c = self.side_conn(p)
        try:
            code, attrs, raw = c.allocate(extra=attr(0x0018, b"\x80" if reserve else b"\x00"),
                                          raw_response=True)
            self.code("even_port_r%d" % reserve, code)
            if code != 0:
                return "even-port %s" % code
            port = relayed_addresses(raw)[0][1]
            with self.w.lock:
                self.w.relays_ever[self.id].add(port)
            if port % 2:
                self.w.violation(self.user, "EVEN-PORT allocation got the odd port %d" % port)
            tok = get_attr(attrs, 0x0022)
            if reserve and tok is None:
                self.w.violation(self.user, "EVEN-PORT R=1 answered without a RESERVATION-TOKEN")
            if tok is not None:
                self.tokens.append((tok, port))
            c.refresh(0)
            return "even port %d%s" % (port, " token " + tok.hex() if tok else "")
        finally:
            c.close()

    def redeem(self, c, tok, port):
        code, _, raw = c.allocate(extra=attr(0x0022, tok), raw_response=True)
        self.code("redeem", code)
        if code != 0:
            return "redeem %s" % code
        got = relayed_addresses(raw)[0][1]
        with self.w.lock:
            self.w.relays_ever[self.id].add(got)
        if got != port + 1:
            self.w.violation(self.user, "RESERVATION-TOKEN for port %d gave port %d" % (port + 1, got))
        c.refresh(0)
        return "redeemed %d" % got

    def op_redeem(self, p):
        if not self.tokens:
            return self.op_even_port(p)
        tok, port = self.tokens.pop(p.randrange(len(self.tokens)))
        c = self.side_conn(p)
        try:
            if p.random() < 0.2:
                # Twice: the second must fail.
                out = self.redeem(c, tok, port)
                c.close()
                c = self.side_conn(p)
                code = self.code("redeem_twice", c.allocate(extra=attr(0x0022, tok))[0])
                if code == 0:
                    self.w.violation(self.user, "a RESERVATION-TOKEN was redeemed twice")
                    c.refresh(0)
                return out + ", again %s" % code
            return self.redeem(c, tok, port)
        finally:
            c.close()

    def op_bad_allocate(self, p):
        """Allocate requests that must fail: an unknown transport, an unknown address family,
        EVEN-PORT with a RESERVATION-TOKEN, a token nobody issued."""
        which = p.choice(["transport", "family", "both", "token"])
        c = self.side_conn(p)
        try:
            if which == "transport":
                code = c.allocate(transport=p.choice([0, 1, 58, 99, 255]))[0]
            elif which == "family":
                code = c.allocate(extra=attr(0x0017, bytes([p.choice([0, 3, 255]), 0, 0, 0])))[0]
            elif which == "both":
                code = c.allocate(extra=attr(0x0018, b"\x80") + attr(0x0022, p.randbytes(8)))[0]
            else:
                code = c.allocate(extra=attr(0x0022, p.randbytes(8)))[0]
            self.code("bad_allocate_" + which, code)
            if code == 0:
                self.w.violation(self.user, "a bad Allocate (%s) succeeded" % which)
                c.refresh(0)
            return "%s -> %s" % (which, code)
        finally:
            c.close()

    def op_dtls_abandon(self, p):
        # From an address of its own, so that a per-IP cap on DTLS sessions never hits the client.
        n = dtls_abandon(self.w.u.host, self.w.u.tls_port, self.w.ip(4, self.id), p.randint(1, 3),
                         self.next_port)
        return "DTLS client gone after %d flights" % n

    # -- the end --
    def settle(self):
        try:
            self.pump(0.05)
        except Exception:  # noqa: BLE001
            pass

    def cleanup(self):
        """Polite end of everything this client holds (so the baseline check sees no client)."""
        conns = list(self.graveyard)
        if self.conn is not None and self.alloc is not None and not self.conn.closed:
            conns.append(self.conn)
        for c in conns:
            c.timeout = 1.0
            try:
                c.refresh(0)
            except (Closed, TestFailure, OSError):
                pass
        for dc in self.data:
            self.close_data(dc)
        self.data = []
        for c in conns + ([self.conn] if self.conn else []):
            c.close()
        # Reservations nobody redeemed would hold their sockets for 30 s: redeem and delete them.
        for tok, port in self.tokens:
            c = ChaosConn(self.w.u, self.user, self.password, "udp", self.src_ip, self.next_port)
            c.timeout = 1.0
            try:
                self.redeem(c, tok, port)
            except (Closed, TestFailure, OSError):
                pass
            c.close()
        self.tokens = []
        self.conn, self.alloc, self.graveyard = None, None, []


# ---- chaos: reloads, admin kills, drain ----

def no_permission_drops(w):
    """uturn_dropped_total{reason="no_permission"} from /metrics, or None when it cannot be read."""
    try:
        st, text = admin(w, "GET", "/metrics")
    except OSError:
        return None
    m = re.search(r'^uturn_dropped_total\{reason="no_permission"\} (\d+)$', text, re.M) \
        if st == 200 and isinstance(text, str) else None
    return int(m.group(1)) if m else None


def admin(w, method, path):
    conn = http.client.HTTPConnection("127.0.0.1", w.admin_port, timeout=10)
    conn.request(method, path, headers={"Authorization": "Bearer " + TOKEN})
    resp = conn.getresponse()
    text = resp.read().decode("utf-8", "replace")
    conn.close()
    try:
        return resp.status, json.loads(text)
    except ValueError:
        return resp.status, text


class Chaos(threading.Thread):
    def __init__(self, world, drain):
        super().__init__(daemon=True)
        self.w = world
        self.rng = random.Random("uturn-chaos/%d/%d/chaos" % (world.seed, world.wave))
        n = max(2, world.total_steps // 100)
        kinds = ["sighup", "kill", "kill", "admin_read"]
        self.events = sorted((self.rng.uniform(0.05, 0.95), self.rng.choice(kinds)) for _ in range(n))
        drain_at = self.rng.uniform(0.8, 0.92)
        if drain:
            self.events.append((drain_at, "drain"))
        self.events.sort()
        self.stop = threading.Event()
        self.log = []
        self.failed = None

    def run(self):
        w = self.w
        try:
            for frac, kind in self.events:
                while not self.stop.is_set() and w.progress < frac * w.total_steps:
                    time.sleep(0.02)
                if self.stop.is_set():
                    return
                self.log.append("%.3f at %d steps: %s %s" % (time.monotonic() - w.t0, w.progress, kind,
                                                             self.fire(kind)))
        except Exception as e:  # noqa: BLE001
            self.failed = "%s\n%s" % (e, traceback.format_exc())

    def fire(self, kind):
        w = self.w
        pick = self.rng.random()
        if kind == "sighup":
            # Half the reloads change reloadable caps under the clients' feet (lowered below what
            # some allocations already hold, or raised again).
            change = ""
            if pick < 0.5:
                n = self.rng.choice([2, 4, 64])
                with open(w.u.conf_path) as f:
                    lines = [ln for ln in f.read().splitlines()
                             if not ln.startswith(("max-permissions", "max-channels"))]
                lines += ["max-permissions = %d" % n, "max-channels = %d" % n]
                with open(w.u.conf_path, "w") as f:
                    f.write("\n".join(lines) + "\n")
                change = " with max-permissions and max-channels %d" % n
            w.u.proc.send_signal(signal.SIGHUP)
            return "sent" + change
        if kind == "drain":
            st, doc = admin(w, "POST", "/api/v1/drain")
            w.drained = True
            return "%s %s" % (st, doc)
        if kind == "admin_read":
            out = []
            for path in ("/api/v1/stats", "/api/v1/allocations?limit=50", "/metrics"):
                out.append(admin(w, "GET", path)[0])
            return out
        st, doc = admin(w, "GET", "/api/v1/allocations?limit=500")
        if st != 200 or not doc.get("allocations"):
            return "nothing to kill (%s)" % st
        allocs = sorted(doc["allocations"], key=lambda a: a["id"])
        a = allocs[int(pick * len(allocs))]
        cid = int(a["username"][1:]) if a["username"].startswith("c") else None
        with w.lock:
            c = w.clients.get(cid)
            if c is not None:
                # The allocation listed may be the client's current one, one it left behind (a
                # lower serial), or be replaced by a newer one while we ask: mark both.
                w.killed[cid].update((c.serial, c.serial + 1))
        st, _ = admin(w, "DELETE", "/api/v1/allocations/" + a["id"])
        return "%s of %s (%s, worker %s): %s" % (a["id"], a["username"], a["transport"], a["worker"], st)


# ---- one seed ----

def fd_count(pid):
    return len(os.listdir("/proc/%d/fd" % pid))


def server_conf(cert, key, admin_port, log_path):
    users = ["user = c%d:pw-%d" % (i, i) for i in range(1, CLIENTS + 1)]
    # Quotas well above what the clients hold (abandoned UDP and DTLS 5-tuples keep theirs).
    return users + ["realm = " + REALM, "allow-loopback-peers", "min-port = 52000", "max-port = 53999",
                    "user-quota = 1000", "total-quota = 100000",
                    "cert = " + cert, "pkey = " + key, "tcp-idle-timeout = 5", "tcp-frame-timeout = 3",
                    "stale-nonce = 5",  # 438 and a new nonce in the middle of everything
                    "admin-listen = 127.0.0.1:%d" % admin_port, "admin-token = " + TOKEN]


def replay_cmd(seed):
    here = os.path.relpath(os.path.abspath(__file__), SRCDIR)
    skip = "UTURN_CHAOS_SKIP=%s " % ",".join(sorted(SKIP)) if SKIP else ""
    return ("UTURN_CHAOS_SEED=%d UTURN_CHAOS_CLIENTS=%d UTURN_CHAOS_STEPS=%d UTURN_CHAOS_WAVES=%d %s"
            "UTURN_BUILDDIR=%s UTURN_SRCDIR=%s /usr/bin/python3 %s"
            % (seed, CLIENTS, STEPS, WAVES, skip, os.environ.get("UTURN_BUILDDIR", "."), SRCDIR, here))


def stats_current(w):
    try:
        st, doc = admin(w, "GET", "/api/v1/stats")
    except OSError as e:
        return {"current": -1, "error": str(e)}
    return doc["allocations"] if st == 200 else {"current": -1, "status": st}


def run_wave(w, wave, waves, pl, fd_base):
    """One wave of clients against the running uturnd: traffic and chaos, then the delivery checks,
    then every client leaves and uturnd must come back to its baseline. Returns (problems, info)."""
    u = w.u
    problems = []
    w.new_wave(wave)
    clients = [Client(w, i, pl) for i in range(CLIENTS)]
    chaos = Chaos(w, drain=(wave == waves))
    chaos.start()
    t0 = time.monotonic()
    for c in clients:
        c.start()
    for c in clients:
        c.join(900)
        if c.is_alive():
            problems.append("client %s still running after 900 s" % c.user)
    chaos.stop.set()
    chaos.join(30)
    info = {"run_s": time.monotonic() - t0, "ops": sum(len(c.plan) for c in clients),
            "plan": [c.plan for c in clients], "chaos": chaos, "clients": clients}
    # Payloads still in flight: wait for them (bounded), reading as we go.
    deadline = time.monotonic() + SETTLE
    while time.monotonic() < deadline and u.alive():
        for c in clients:
            c.settle()
        with w.lock:
            missing = [k for k in w.expected if k not in w.delivered]
        if not missing:
            break
    alive = u.alive()
    with w.lock:
        exp, dlv, killed = dict(w.expected), set(w.delivered), dict(w.killed)
    udp_total = udp_got = 0
    lost = []
    for key, (cid, serial, kind) in exp.items():
        if kind == "stream" or serial in killed.get(cid, ()):
            continue
        udp_total += 1
        udp_got += key in dlv
        if key not in dlv:
            lost.append("%s (c%d, %s)" % (key, cid, kind))
    if alive:
        for c in clients:
            for dc in c.data:
                if dc.dead or dc.ps.dead or dc.ps.disturbed or dc.serial in killed.get(c.id, ()):
                    continue
                if dc.ps.c2p or dc.ps.p2c:
                    problems.append("%s data conn %s: %d payloads to the peer and %d to the client never "
                                    "arrived" % (c.user, dc.cid.hex(), len(dc.ps.c2p), len(dc.ps.p2c)))
    ratio = udp_got / udp_total if udp_total else 1.0
    with open(os.path.join(w.logdir, "wave%d-undelivered.txt" % wave), "w") as f:
        f.write("\n".join(lost) + "\n")
    info.update(udp_total=udp_total, udp_got=udp_got, ratio=ratio,
                streams=w.stats["peer_rx_tcp"] + w.stats["client_rx_tcp"])
    t_clean = time.monotonic()
    cleaners = [threading.Thread(target=c.cleanup, daemon=True) for c in clients]
    for t in cleaners:
        t.start()
    for t in cleaners:
        t.join(120)
    info["cleanup_s"] = time.monotonic() - t_clean
    # With uturnd dead, what the threads tripped over afterwards is noise: the death is reported.
    for c in clients:
        if c.failed and alive:
            problems.append("client %s: test-side error: %s" % (c.user, c.failed))
    if chaos.failed and alive:
        problems.append("chaos thread: %s" % chaos.failed)
    problems += ["peer loop: " + e for e in w.internal]
    problems += w.violations
    if alive and udp_total >= 20 and ratio < MIN_RATIO:
        problems.append("UDP-path delivery ratio %.3f < %.2f (%d of %d); lost: %s"
                        % (ratio, MIN_RATIO, udp_got, udp_total, ", ".join(lost[:20])))
    if not alive:
        problems.append("uturnd died during the run (exit %s)" % u.proc.poll())
        return problems, info
    t_alloc = time.monotonic()
    try:
        wait_for(lambda: stats_current(w)["current"] == 0, 20, "every allocation gone")
    except TestFailure as e:
        problems.append("after the clients left: %s (%s)" % (e, stats_current(w)))
        info.update(fd_end=fd_count(u.proc.pid), rss_end=u.rss_kib())
        return problems, info  # the fds are held by those allocations: no baseline to come back to
    info["allocs_s"] = time.monotonic() - t_alloc
    info["notes"] = counter_notes(w)
    t_fd = time.monotonic()
    try:
        wait_for(lambda: fd_count(u.proc.pid) <= fd_base + FD_SLACK, FD_WAIT, "fds back to baseline",
                 interval=0.2)
    except TestFailure:
        problems.append("uturnd holds %d fds, baseline %d (+%d allowed), %d s after the clients left:\n%s"
                        % (fd_count(u.proc.pid), fd_base, FD_SLACK, FD_WAIT, fd_list(u.proc.pid)))
    info.update(fd_end=fd_count(u.proc.pid), fd_secs=time.monotonic() - t_fd, rss_end=u.rss_kib())
    return problems, info


def counter_notes(w):
    """The allocation counters must add up: created = current + deleted + expired. Reported, not
    failed (see the README: failed Allocates are also counted as deleted today)."""
    st, text = admin(w, "GET", "/metrics")
    if st != 200:
        return ["/metrics answered %s" % st]
    vals = {}
    for line in text.splitlines():
        for k in ("created", "deleted", "expired", "failed"):
            if line.startswith("uturn_allocations_%s_total " % k):
                vals[k] = int(float(line.split()[1]))
    cur = stats_current(w)["current"]
    if len(vals) == 4 and vals["created"] != cur + vals["deleted"] + vals["expired"]:
        return ["allocation counters do not add up: created %(created)d, deleted %(deleted)d, expired "
                "%(expired)d, failed %(failed)d" % vals + ", current %d" % cur]
    return []


def port_free(port):
    for kind in (socket.SOCK_STREAM, socket.SOCK_DGRAM):
        s = socket.socket(socket.AF_INET, kind)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        finally:
            s.close()
    return True


def server_ports(seed):
    """uturnd's ports from the seed (below the ephemeral range): with the clients' source ports
    also fixed, SO_REUSEPORT spreads connections over the workers the same way on a replay (on the
    same machine: the kernel's hash has a per-boot secret)."""
    for k in range(50):
        base = 30000 + ((seed + 97 * k) % 1000) * 2
        if port_free(base) and port_free(base + 1):
            return base, base + 1
    return free_port(), free_port()


def run_seed(seed, cert, key, logroot):
    t_start = time.monotonic()
    logdir = os.path.join(logroot, "seed-%d" % seed)
    os.makedirs(logdir, exist_ok=True)
    admin_port = free_port()
    port, tls_port = server_ports(seed)
    u = Uturnd(conf=server_conf(cert, key, admin_port, logdir), threads=2, port=port, tls_port=tls_port,
               env={"ASAN_OPTIONS": "quarantine_size_mb=16"})
    w = World(seed, u, logdir)
    w.admin_port = admin_port
    problems, infos = [], []
    pl = None
    fd_base = rss_base = 0
    try:
        wait_for(lambda: admin(w, "GET", "/readyz")[0] == 200, 10, "admin API ready")
        # Warm up every transport once (OpenSSL and the workers allocate lazily), then take the
        # baseline.
        for t in ("udp", "tcp", "tls", "dtls"):
            c = ChaosConn(u, "c1", "pw-1", t, "127.0.0.250")
            code = c.allocate()[0]
            c.refresh(0)
            c.close()
            if code != 0:
                problems.append("warm-up Allocate over %s answered %s" % (t, code))
        wait_for(lambda: stats_current(w)["current"] == 0, 15, "warm-up allocations gone")
        wait_for(lambda: fd_count(u.proc.pid) < 64, 15, "fds settle after warm-up")
        time.sleep(0.2)  # the warm-up's closes finish in the workers' next loop iteration
        fd_base, rss_base = fd_count(u.proc.pid), u.rss_kib()
        for i in range(UDP_PEERS):
            w.peers[100 + i] = UdpPeer(100 + i, w.ip(2, i + 1))
        for i in range(TCP_PEERS):
            w.peers[200 + i] = TcpPeer(200 + i, w.ip(3, i + 1))
        pl = PeerLoop(w)
        pl.start()
        for wave in range(1, WAVES + 1):
            pr, info = run_wave(w, wave, WAVES, pl, fd_base)
            infos.append(info)
            write_logs(w, info["clients"], info["chaos"], logdir, wave)
            problems += ["wave %d: %s" % (wave, x) for x in pr]
            if not u.alive():
                break
        ends = [i["rss_end"] for i in infos if "rss_end" in i]
        if ends and ends[0] - rss_base > RSS_SLACK_KIB:
            problems.append("uturnd RSS %d KiB after the first wave, baseline %d KiB (+%d allowed)"
                            % (ends[0], rss_base, RSS_SLACK_KIB))
        # ASan's quarantine and size-class caches fill over the first waves (RSS rises, then
        # flattens): compare the last wave with the middle one (the first one when there are two).
        ref = (len(ends) - 1) // 2
        if len(ends) > 1 and ends[-1] - ends[ref] > RSS_WAVE_KIB:
            problems.append("uturnd RSS grew %d KiB from wave %d to wave %d (%s KiB; %d allowed): a leak "
                            "that lasts until exit" % (ends[-1] - ends[ref], ref + 1, len(ends), ends,
                                                       RSS_WAVE_KIB))
    except Exception as e:  # noqa: BLE001 - the sanitizer check below still runs
        problems.append("harness: %s\n%s" % (e, traceback.format_exc()))
    finally:
        if pl:
            pl.stop.set()
            pl.join(5)
        for pe in w.peers.values():
            (pe.sock if pe.kind == "udp" else pe.lsock).close()
        rc = u.stop()
        try:
            import shutil
            shutil.copy(u.stderr_path, os.path.join(logdir, "uturnd.stderr"))
        except OSError:
            pass
    log = u.log()
    m = SANITIZER_PATTERNS.search(log)
    if m:
        problems.insert(0, "sanitizer report in uturnd stderr:\n" + log[max(0, m.start() - 300):m.start() + 5000])
    elif rc != 0:
        problems.append("uturnd exit status %s" % rc)
    ops = sum(i["ops"] for i in infos)
    digest = hashlib.sha256(repr([i["plan"] for i in infos]).encode()).hexdigest()[:16]
    for n, i in enumerate(infos, 1):
        print("seed %d wave %d: %d clients, %d operations in %.1f s; UDP-path delivery %d/%d (%.3f); %d stream "
              "payloads; chaos: %s; cleanup %.1f s; fds %d -> %s (%.1f s); RSS %d -> %s KiB"
              % (seed, n, CLIENTS, i["ops"], i["run_s"], i["udp_got"], i["udp_total"], i["ratio"], i["streams"],
                 chaos_summary(i["chaos"].log), i.get("cleanup_s", 0), fd_base,
                 i.get("fd_end", "?"), i.get("fd_secs", 0), rss_base, i.get("rss_end", "?")), flush=True)
    print("seed %d: %d operations (plan %s), %.1f s" % (seed, ops, digest, time.monotonic() - t_start))
    for n, i in enumerate(infos, 1):
        for note in i.get("notes", []):
            print("  NOTE wave %d: %s" % (n, note))
    print("  stats: %s" % dict(sorted((w.stats_all + w.stats).items())), flush=True)
    print("  codes: %s" % ", ".join("%s=%s:%d" % (op, code, n) for (op, code), n in sorted(w.codes.items(),
                                                                                     key=str)), flush=True)
    return problems, ops


def chaos_summary(log):
    kinds = collections.Counter(e.split(": ", 1)[1].split(" ")[0] for e in log)
    return " ".join("%d %s" % (n, k) for k, n in sorted(kinds.items()))


def fd_list(pid):
    out = []
    for fd in sorted(os.listdir("/proc/%d/fd" % pid), key=int):
        try:
            out.append("%s -> %s" % (fd, os.readlink("/proc/%d/fd/%s" % (pid, fd))))
        except OSError:
            pass
    return "  " + "\n  ".join(out[-40:])


def write_logs(w, clients, chaos, logdir, wave):
    for c in clients:
        with open(os.path.join(logdir, "wave%d-client-%d.log" % (wave, c.id)), "w") as f:
            f.write("\n".join(c.log) + "\n")
        with open(os.path.join(logdir, "wave%d-plan-%d.txt" % (wave, c.id)), "w") as f:
            f.write("\n".join(c.plan) + "\n")
    with open(os.path.join(logdir, "wave%d-chaos.log" % wave), "w") as f:
        f.write("\n".join("%.3f %s" % (fr, k) for fr, k in chaos.events) + "\n" + "\n".join(chaos.log) + "\n")


def seeds_to_run():
    if os.environ.get("UTURN_CHAOS_SEED"):
        return [int(s) for s in os.environ["UTURN_CHAOS_SEED"].split(",")], 0
    fixed = [int(s) for s in os.environ.get("UTURN_CHAOS_SEEDS", "1,2,3,4,5").split(",") if s]
    fresh = int.from_bytes(os.urandom(3), "big")
    return fixed + [fresh], float(os.environ.get("UTURN_CHAOS_SECONDS", "0"))


def main():
    seeds, seconds = seeds_to_run()
    logroot = tempfile.mkdtemp(prefix="uturn-chaos-")
    cert, key = make_cert(os.path.join(logroot, "cert"), "uturn-chaos")
    print("chaos: %d clients x %d operations per seed; logs in %s" % (CLIENTS, STEPS, logroot), flush=True)
    start = time.monotonic()
    passed = failed = total_ops = 0
    i = 0
    rng = random.Random()
    while True:
        if i < len(seeds):
            seed = seeds[i]
        elif seconds and time.monotonic() - start < seconds:
            seed = rng.randrange(1 << 24)
        else:
            break
        i += 1
        t0 = time.monotonic()
        try:
            with deadline(SEED_TIMEOUT, "seed %d" % seed):
                problems, ops = run_seed(seed, cert, key, logroot)
        except Exception as e:  # noqa: BLE001 - a seed that breaks the harness still names its replay
            problems, ops = ["%s\n%s" % (e, traceback.format_exc())], 0
        total_ops += ops
        if problems:
            failed += 1
            print("FAIL seed %d (%.1fs): %d problem(s)" % (seed, time.monotonic() - t0, len(problems)))
            for pr in problems[:20]:
                print("  - " + pr.replace("\n", "\n    "))
            print("  replay: " + replay_cmd(seed))
            print("  per-client op logs: %s" % os.path.join(logroot, "seed-%d" % seed), flush=True)
        else:
            passed += 1
            print("PASS seed %d (%.1fs)" % (seed, time.monotonic() - t0), flush=True)
    print("chaos: %d seeds, %d operations, %.0f s" % (passed + failed, total_ops, time.monotonic() - start))
    if not failed:
        import shutil
        shutil.rmtree(logroot, ignore_errors=True)  # the logs are for replaying a failure
    print("%d passed, %d failed" % (passed, failed))
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
