#!/usr/bin/python3
"""Issue 14's equivalence proof: the kernel path relays exactly what user space relays.

One scripted scenario of real UDP traffic runs twice against the real uturnd, first with
kernel-offload = off, then with kernel-offload = on. Both runs must hand every party the same
datagrams, byte for byte, in the same order per flow, and end with the same per-allocation
counters (GET /api/v1/allocations) and per-user usage totals (GET /api/v1/usage). Each run also
checks the scenario against RFC 8656 (what must arrive, what must be dropped), so a difference is
named together with which side is right.

Parties: TURN clients on 127.0.0.1 (alice, dave, carol three times) and one on ::1 (bob), both
families' relays (REQUESTED-ADDRESS-FAMILY for ::1, so every allocation is same-family: the kernel
path's case);
peers P1, P2 on 127.0.0.1, P3 on 127.0.0.2, Q1, Q2 on ::1. The scenario:
  0. before any permission: peer -> relay, Send to a peer, ChannelData on a channel not bound yet:
     all dropped;
  1. CreatePermission + ChannelBind: ChannelData both ways (P1, Q1), Send indications to a peer
     with a channel and to one without, Data indications from a peer with a permission but no
     channel (P2, Q2); P3 (127.0.0.2, never permitted) dropped both ways; ChannelData on an
     unbound number dropped; payload sizes 0..1400 with odd sizes (padding);
  2. channel rebinding as RFC 8656 §12.2 allows: the same number to the same peer refreshes (data
     goes on), the number to another peer and the peer to another number are refused (400, data
     keeps its old path), a second number to a peer that had none (P2's data turns from Data
     indications into ChannelData);
  3. Refresh 0 deletes alice's allocation (nothing more relayed either way), a new allocation on
     the same 5-tuple binds the same channel number to another peer (P2): the new binding, never
     the old one, carries the data; bob's allocation is shortened to 1 s by Refresh and expires
     (nothing relayed after it is gone);
  4. expiry (a second uturnd with the testing-only permission-lifetime = 2 and channel-lifetime
     = 4): once the permission has expired, with the channel still bound, peer data and Send are
     dropped (ChannelData from the client: whatever uturnd does, as long as both paths agree);
     once the channel has expired, its ChannelData is dropped; the expired number bound to
     another peer, and a fresh permission, relay again;
  5. max-bps (a third uturnd, max-bps = 5000): a burst of 40 x 1000 B ChannelData, and another
     of 40 x 1000 B from a peer, each sent and relayed in well under 200 ms (the refill stays below
     one datagram): exactly 5 of each delivered; and a third allocation's burst of ChannelData
     alternating with Send indications that carry FINGERPRINT (with offload on, the kernel relays
     the first kind and user space the second): exactly 5 in all, since both paths charge the
     allocation's one bucket.
The datagrams are compared raw, except a Data indication's 12-byte transaction id (each relay
picks its own) and its XOR-PEER-ADDRESS, which depends on that id for IPv6 and is compared
decoded.

With offload on, the kernel must also have done the work: uturnd's own kp_global counters (found
by its pid, tests/integration/kpath_util.py) cover every ChannelData and Send datagram relayed
client -> peer and every datagram relayed peer -> client that the maps allow, the 70 datagrams
over the buckets count as kernel drops, and /metrics' path="kernel" samples, when uturnd has them,
agree.

Needs root and a uturnd built with the kernel path; otherwise it skips (exit 77) with the reason.
uturnd has no test clock: the testing-only keys permission-lifetime and channel-lifetime shorten
RFC 8656's fixed 300 s and 600 s, and the kernel path's entries carry the same expiry.
"""
import http.client
import json
import os
import select
import socket
import struct
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))
from uturn import (A_DATA, A_PEER, A_REQ_FAMILY, M_SEND, TurnClient, Uturnd, attr,  # noqa: E402
                   check, free_port, message, mtype, parse, relayed_addresses, run, tests_to_run,
                   tid, wait_for, xor_addr_value, xor_address)
import kpath_util  # noqa: E402

REALM = "kequiv.test"
TOKEN = "kequiv-token-0123456789abcdef0123"
USERS = ["user = alice:alice-pass", "user = bob:bob-pass", "user = carol:carol-pass",
         "user = dave:dave-pass"]
SIZES = [0, 1, 2, 3, 4, 5, 7, 8, 13, 31, 64, 99, 255, 256, 511, 999, 1000, 1001, 1199, 1399, 1400]
BPS, BURST, BURST_SIZE = 5000, 40, 1000
BPS_DELIVERED = BPS // BURST_SIZE
PERM_S, CHAN_S = 2, 4  # the expiry part's permission-lifetime, channel-lifetime (testing only)
FIELDS = ("to_peer_packets", "to_peer_bytes", "from_peer_packets", "from_peer_bytes")
M_DATA_IND = mtype(7, 1)
STEP = 5.0  # seconds a step may take to deliver what it must

RUNS = {}  # mode -> the run's record (see Run)


def api(port, path):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=15)
    conn.request("GET", path, headers={"Authorization": "Bearer " + TOKEN})
    resp = conn.getresponse()
    text = resp.read().decode()
    conn.close()
    check(resp.status == 200, "GET %s: %d %s" % (path, resp.status, text[:300]))
    return text if path == "/metrics" else json.loads(text)


def addr_key(a):
    ip = a[0].strip("[]").split("%")[0]
    return (ip, int(a[1]))


def rx_queue_empty(relayed):
    """True when no datagram waits in the receive queue of uturnd's socket on `relayed`
    (/proc/net/udp, udp6). A worker reads its relay socket and handles what it read before it
    serves another socket, so once it is empty, those datagrams met the state of that moment: a
    permission installed after this cannot let them through (the fence before one)."""
    port = "%04X" % relayed[1]
    for name in ("/proc/net/udp", "/proc/net/udp6"):
        with open(name) as f:
            for line in f.readlines()[1:]:
                cols = line.split()
                if cols[1].endswith(":" + port):
                    return int(cols[4].split(":")[1], 16) == 0
    return True  # closed: nothing waits


class Endpoint:
    """What TurnClient needs of a server: host and port (here: uturnd's ::1 listener)."""

    def __init__(self, host, port):
        self.host, self.port = host, port


class Run:
    """One pass of the scenario against uturnds with kernel-offload = `mode`."""

    def __init__(self, mode):
        self.mode = mode
        self.names = {}  # (ip, port) -> label, for every socket and relayed address
        self.recv = {}  # party label -> [(flow, normalized datagram)]
        self.want = {}  # party label -> datagrams RFC 8656 says must have arrived by now
        self.socks = {}  # party label -> socket
        self.clients = {}  # party label -> TurnClient
        self.codes = []  # (what, response code) of every request the scenario makes
        self.counters = {}  # snapshot name -> {relay label: counters}
        self.usage = {}
        self.maybe = {}  # party label -> datagrams RFC 8656 leaves open (either way is right)
        # uturnd (part) -> kp_global counts the kernel must reach: what the maps allow
        self.expect_kernel = {}
        self.part = None
        self.kernel = {}  # server label -> kp_global after the scenario
        self.metrics = {}  # server label -> path="kernel" samples
        self.seq = 0
        self.bad_src = []  # datagrams a client got from another address than uturnd's listener

    # ---- parties ----
    def name(self, addr, label):
        self.names[addr_key(addr)] = label

    def label(self, addr):
        return self.names.get(addr_key(addr), "?%s:%d" % addr_key(addr))

    def peer(self, label, host):
        s = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_DGRAM)
        s.bind((host, 0))
        s.setblocking(False)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        self.name(s.getsockname()[:2], label)
        self.socks[label] = s
        self.recv[label], self.want[label], self.maybe[label] = [], 0, 0
        return s

    def client(self, label, server, user, host):
        c = TurnClient(server if host == "127.0.0.1" else Endpoint(host, server.port), user,
                       user + "-pass")
        c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        self.name(c.sock.getsockname()[:2], label)
        self.socks[label] = c.sock
        self.clients[label] = c
        self.recv[label], self.want[label], self.maybe[label] = [], 0, 0
        return c

    def start_part(self, name):
        self.part = name
        self.expect_kernel[name] = dict.fromkeys(
            ("channeldata_in", "send_in", "channeldata_out", "data_out", "to_peer_bytes",
             "from_peer_bytes"), 0)

    def exp(self, slot, bytes_slot, n):
        self.expect_kernel[self.part][slot] += 1
        self.expect_kernel[self.part][bytes_slot] += n

    def code(self, what, code, want):
        """Record a response code (the runs compare them); check it when `want` is not None."""
        self.codes.append((what, code))
        check(want is None or code == want, "%s run: %s answered %s, want %s"
              % (self.mode, what, code, want or "success"))

    def allocate(self, label, relay_label, v6=False):
        c = self.clients[label]
        extra = attr(A_REQ_FAMILY, b"\x02\0\0\0") if v6 else b""
        code, _, raw = c.allocate(extra=extra, raw_response=True)
        self.code("%s Allocate" % label, code, 0)
        relayed = relayed_addresses(raw)[0]
        self.name(relayed, relay_label)
        return relayed

    # ---- traffic ----
    def payload(self, n):
        self.seq += 1
        return bytes((self.seq * 31 + i * 7) & 0xFF for i in range(n))

    def channel_data(self, client, number, n, delivered_to=None, maybe_to=None):
        self.clients[client].channel_data(number, self.payload(n))
        if delivered_to:
            self.want[delivered_to] += 1
            self.exp("channeldata_in", "to_peer_bytes", n)
        if maybe_to:
            self.maybe[maybe_to] += 1

    def send(self, client, peer_addr, n, delivered_to=None):
        self.clients[client].send_indication(peer_addr[0], peer_addr[1], self.payload(n))
        if delivered_to:
            self.want[delivered_to] += 1
            self.exp("send_in", "to_peer_bytes", n)

    def from_peer(self, peer, relayed, n, delivered_to=None, as_channel=True):
        self.socks[peer].sendto(self.payload(n), relayed)
        if delivered_to:
            self.want[delivered_to] += 1
            self.exp("channeldata_out" if as_channel else "data_out", "from_peer_bytes", n)

    # ---- receiving ----
    def normalize(self, party, data, src):
        """(flow, datagram as compared). A peer's flow is its source (a relayed address); a
        client's is the channel number or the Data indication's peer."""
        if party not in self.clients:
            return (self.label(src), data)
        if data and 0x40 <= data[0] <= 0x7F:
            return ("channel %#x" % struct.unpack("!H", data[:2])[0], data)
        try:
            mt, txid, attrs = parse(data)
        except AssertionError as e:
            return ("unparsable", (str(e), data))
        if mt != M_DATA_IND:
            return None  # a late duplicate answer to a retransmitted request: not relayed data
        # Everything but the transaction id, byte for byte; XOR-PEER-ADDRESS decoded (for IPv6 it
        # is XORed with the transaction id).
        peer = None
        blanked = bytearray(data)
        blanked[8:20] = bytes(12)
        off = 20
        for t, v in attrs:
            if t == A_PEER:
                peer = self.label(xor_address(v, txid))
                blanked[off + 4:off + 4 + len(v)] = bytes(len(v))
            off += 4 + len(v) + (-len(v) % 4)
        return ("data from %s" % peer, bytes(blanked))

    def pump(self, timeout):
        """Read whatever arrives within `timeout` (returns at the first quiet poll after some)."""
        for label, c in self.clients.items():
            while c.stash:  # what arrived while a request waited for its answer, in order
                self.record(label, c.stash.pop(0), None)
        by_fd = {s.fileno(): label for label, s in self.socks.items()}
        ready, _, _ = select.select(list(self.socks.values()), [], [], timeout)
        for s in ready:
            label = by_fd[s.fileno()]
            s.setblocking(False)  # TurnClient's requests set a timeout
            while True:
                try:
                    data, src = s.recvfrom(65536)
                except (BlockingIOError, socket.timeout):
                    break
                except ConnectionRefusedError:
                    continue  # an ICMP error for something we sent earlier
                self.record(label, data, src[:2])

    def record(self, label, data, src):
        c = self.clients.get(label)
        if c is not None and src is not None and addr_key(src) != addr_key(
                (c.server.host, c.server.port)):
            # What a client gets comes from the address it sent to (its allocation's 5-tuple),
            # whichever path made it.
            self.bad_src.append("%s got %d bytes from %s, not from uturnd's %s:%d"
                                % (label, len(data), self.label(src), c.server.host,
                                   c.server.port))
        item = self.normalize(label, data, src)
        if item is not None:
            self.recv[label].append(item)

    def settle(self, what):
        """Wait (with a deadline) until every party has what it must have by now; a shortfall is
        recorded, not raised, so the two runs can still be compared."""
        def done():
            self.pump(0.05)
            return all(len(self.recv[p]) >= n for p, n in self.want.items())
        try:
            wait_for(done, STEP, what, interval=0)
        except AssertionError:
            short = {p: "%d/%d" % (len(self.recv[p]), n) for p, n in self.want.items()
                     if len(self.recv[p]) < n}
            print("%s run: after %s, parties short of datagrams: %s" % (self.mode, what, short),
                  flush=True)

    def quiet(self, seconds=0.3):
        """Read until nothing has arrived for `seconds` (at most 2 s): stragglers that should not
        exist show up here."""
        end = time.monotonic() + 2
        while time.monotonic() < end:
            before = sum(len(v) for v in self.recv.values())
            self.pump(seconds)
            if sum(len(v) for v in self.recv.values()) == before:
                return

    def listing(self, admin):
        """{relay label: the allocation's entry in GET /api/v1/allocations}."""
        views = {}
        for a in api(admin, "/api/v1/allocations?limit=1000")["allocations"]:
            ip, port = a["relayed"][0]["address"].rsplit(":", 1)
            views[self.label((ip, port))] = a
        return views

    def snapshot(self, name, admin):
        self.counters[name] = {k: tuple(a[f] for f in FIELDS)
                               for k, a in self.listing(admin).items()}

    def close(self):
        for c in self.clients.values():
            c.close()
        for label, s in self.socks.items():
            if label not in self.clients:
                s.close()
        self.socks, self.clients = {}, {}  # the record outlives the sockets


def server(mode, extra=()):
    admin = free_port()
    conf = USERS + ["realm = " + REALM, "allow-loopback-peers", "listening-ip = ::1",
                    "admin-listen = 127.0.0.1:%d" % admin, "admin-token = " + TOKEN,
                    "kernel-offload = " + mode] + list(extra)
    u = Uturnd(conf=conf, threads=2)
    if mode == "on":
        check(kpath_util.prog_id(u.proc.pid) is not None,
              "kernel-offload = on: no %s filter with handle %#x on lo:\n%s"
              % (kpath_util.PROG, u.proc.pid, u.log()[-2000:]))
    else:
        check(kpath_util.prog_id(u.proc.pid) is None, "kernel-offload = off attached a program")
    return u, admin


def kernel_record(r, name, u, admin):
    if r.mode != "on":
        return
    try:
        r.kernel[name] = kpath_util.kp_global(u.proc.pid)
    except AssertionError as e:
        r.kernel[name] = str(e)
    r.metrics[name] = kpath_util.metrics_kernel(api(admin, "/metrics"))


def scenario(mode):
    r = Run(mode)
    u, admin = server(mode)
    try:
        with u:
            r.start_part("main")
            main_part(r, u, admin)
            kernel_record(r, "main", u, admin)
        e, eadmin = server(mode, ["permission-lifetime = %d" % PERM_S,
                                  "channel-lifetime = %d" % CHAN_S])
        with e:
            r.start_part("expiry")
            expiry_part(r, e, eadmin)
            kernel_record(r, "expiry", e, eadmin)
        b, badmin = server(mode, ["max-bps = %d" % BPS])
        with b:
            r.start_part("bps")
            bps_part(r, b, badmin)
            kernel_record(r, "bps", b, badmin)
    finally:
        r.close()
    return r


def main_part(r, u, admin):
    p1, p2 = r.peer("P1", "127.0.0.1"), r.peer("P2", "127.0.0.1")
    p3 = r.peer("P3", "127.0.0.2")
    q1, q2 = r.peer("Q1", "::1"), r.peer("Q2", "::1")
    a4 = r.client("alice", u, "alice", "127.0.0.1")
    b6 = r.client("bob", u, "bob", "::1")
    P1, P2, P3 = p1.getsockname()[:2], p2.getsockname()[:2], p3.getsockname()[:2]
    Q1, Q2 = q1.getsockname()[:2], q2.getsockname()[:2]
    relay_a = r.allocate("alice", "relay-A")
    relay_b = r.allocate("bob", "relay-B6", v6=True)
    check(":" in relay_b[0] and ":" not in relay_a[0], "families: alice %s, bob %s"
          % (relay_a, relay_b))

    # 0. No permission yet: everything dropped (RFC 8656 §9, §11.2, §12).
    for peer, relayed in (("P1", relay_a), ("Q1", relay_b)):
        for n in (10, 100):
            r.from_peer(peer, relayed, n)
    r.send("alice", P1, 50)
    r.send("bob", Q1, 50)
    r.channel_data("alice", 0x4000, 20)
    r.channel_data("bob", 0x4001, 20)
    # The client's own datagrams come before its CreatePermission on the same socket; the peers'
    # reach other sockets, so wait until uturnd has read them.
    wait_for(lambda: rx_queue_empty(relay_a) and rx_queue_empty(relay_b), STEP,
             "uturnd to read the peers' datagrams")

    # 1. Permissions and channels: everything both ways.
    r.code("alice CreatePermission 127.0.0.1", a4.create_permission(("127.0.0.1", 0))[0], 0)
    r.code("alice ChannelBind 0x4000 P1", a4.channel_bind(0x4000, *P1)[0], 0)
    r.code("bob CreatePermission ::1", b6.create_permission(("::1", 0))[0], 0)
    r.code("bob ChannelBind 0x4001 Q1", b6.channel_bind(0x4001, *Q1)[0], 0)
    for cl, num, chpeer, chaddr, dpeer, daddr, relayed in (
            ("alice", 0x4000, "P1", P1, "P2", P2, relay_a),
            ("bob", 0x4001, "Q1", Q1, "Q2", Q2, relay_b)):
        for n in SIZES:
            r.channel_data(cl, num, n, delivered_to=chpeer)
        for n in SIZES:
            r.from_peer(chpeer, relayed, n, delivered_to=cl)
        for n in SIZES:
            r.send(cl, daddr, n, delivered_to=dpeer)
        for n in SIZES:
            r.from_peer(dpeer, relayed, n, delivered_to=cl, as_channel=False)
        for n in SIZES[::3]:  # Send to a peer that has a channel: allowed, sent plain
            r.send(cl, chaddr, n, delivered_to=chpeer)
        r.channel_data(cl, num + 5, 33)  # unbound number: dropped
        r.settle("step 1 (%s)" % cl)
    # 127.0.0.2 never got a permission: dropped both ways.
    for n in (1, 99, 1400):
        r.from_peer("P3", relay_a, n)
        r.send("alice", P3, n)
    r.settle("step 1")

    # 2. Rebinding (RFC 8656 §12.2).
    r.code("alice ChannelBind 0x4000 P1 again", a4.channel_bind(0x4000, *P1)[0], 0)
    r.code("alice ChannelBind 0x4000 P2 (number taken)", a4.channel_bind(0x4000, *P2)[0], 400)
    r.code("alice ChannelBind 0x4002 P1 (peer bound)", a4.channel_bind(0x4002, *P1)[0], 400)
    for n in (3, 1001):
        r.channel_data("alice", 0x4000, n, delivered_to="P1")
        r.channel_data("alice", 0x4002, n)  # the refused number: dropped
        r.from_peer("P1", relay_a, n, delivered_to="alice")
    r.settle("step 2, refused rebinds")
    r.code("alice ChannelBind 0x4002 P2", a4.channel_bind(0x4002, *P2)[0], 0)
    for n in (0, 5, 1399):
        r.channel_data("alice", 0x4002, n, delivered_to="P2")
        r.from_peer("P2", relay_a, n, delivered_to="alice")  # now ChannelData 0x4002
        r.from_peer("P1", relay_a, n, delivered_to="alice")  # still ChannelData 0x4000
    r.settle("step 2")
    r.quiet()
    r.snapshot("before delete", admin)

    # 3. Refresh 0: alice's allocation and all it holds are gone.
    r.code("alice Refresh 0", a4.refresh(0)[0], 0)
    for n in (7, 700):
        r.channel_data("alice", 0x4000, n)
        r.channel_data("alice", 0x4002, n)
        r.send("alice", P2, n)
        r.from_peer("P1", relay_a, n)
        r.from_peer("P2", relay_a, n)
    # A new allocation on the same 5-tuple: channel 0x4000 now means P2, and only P2.
    relay_a2 = r.allocate("alice", "relay-A2")
    r.code("alice (A2) ChannelBind 0x4000 P2", a4.channel_bind(0x4000, *P2)[0], 0)
    for n in (1, 64, 1400):
        r.channel_data("alice", 0x4000, n, delivered_to="P2")
        r.from_peer("P2", relay_a2, n, delivered_to="alice")
        r.from_peer("P1", relay_a2, n, delivered_to="alice", as_channel=False)  # permission only
        r.from_peer("P1", relay_a, n)  # the deleted relay: nothing
    r.settle("step 3, Refresh 0 and a new allocation")
    # bob's allocation shortened to 1 s, then gone (the server's sweep): nothing relayed after.
    r.code("bob Refresh 1 s", b6.refresh(1)[0], 0)
    wait_for(lambda: not api(admin, "/api/v1/allocations?user=bob")["allocations"], 5,
             "bob's allocation to expire")
    for n in (2, 1200):
        r.channel_data("bob", 0x4001, n)
        r.send("bob", Q2, n)
        r.from_peer("Q1", relay_b, n)
        r.from_peer("Q2", relay_b, n)
    r.quiet()
    r.snapshot("end", admin)
    r.usage = {user: api(admin, "/api/v1/usage?user=%s" % user)["total"]
               for user in ("alice", "bob")}


def expiry_part(r, u, admin):
    """Permission expiry (RFC 8656 §9) with the channel still bound, then channel expiry (§12),
    rebinding the expired number to another peer, and a fresh permission."""
    d = r.client("dave", u, "dave", "127.0.0.1")
    P1, P2 = r.socks["P1"].getsockname()[:2], r.socks["P2"].getsockname()[:2]
    relay = r.allocate("dave", "relay-E")
    aid = r.listing(admin)["relay-E"]["id"]

    def detail():
        return api(admin, "/api/v1/allocations/" + aid)
    r.code("dave CreatePermission 127.0.0.1", d.create_permission(("127.0.0.1", 0))[0], 0)
    r.code("dave ChannelBind 0x4000 P1", d.channel_bind(0x4000, *P1)[0], 0)
    for n in (1, 500, 1400):
        r.channel_data("dave", 0x4000, n, delivered_to="P1")
        r.from_peer("P1", relay, n, delivered_to="dave")
        r.send("dave", P2, n, delivered_to="P2")
        r.from_peer("P2", relay, n, delivered_to="dave", as_channel=False)
    r.settle("expiry part: live permission and channel")
    wait_for(lambda: not detail()["permissions"], PERM_S + 3, "dave's permission to expire")
    check(detail()["channels"], "%s run: dave's channel expired with the permission (the "
          "machine too slow for channel-lifetime = %d?)" % (r.mode, CHAN_S))
    for n in (2, 600):
        r.from_peer("P1", relay, n)  # no permission: dropped, though the channel is bound
        r.from_peer("P2", relay, n)
        r.send("dave", P2, n)  # a Send needs a permission (§11.2)
        # ChannelData on a live channel whose permission expired: RFC 8656 checks permissions on
        # peer data and Send; either answer is accepted here, as long as both paths agree.
        r.channel_data("dave", 0x4000, n, maybe_to="P1")
    r.settle("expiry part: permission expired")
    wait_for(lambda: not detail()["channels"], CHAN_S + 3, "dave's channel to expire")
    for n in (3, 700):
        r.channel_data("dave", 0x4000, n)  # the channel is gone
        r.from_peer("P1", relay, n)
    wait_for(lambda: rx_queue_empty(relay), STEP, "uturnd to read P1's datagrams")
    # The expired number bound again, to another peer: whatever uturnd answers, both runs must
    # answer the same and relay accordingly.
    code = d.channel_bind(0x4000, *P2)[0]
    r.code("dave ChannelBind 0x4000 P2 after expiry", code, None)
    for n in (4, 800):
        r.channel_data("dave", 0x4000, n, delivered_to="P2" if code == 0 else None)
        r.from_peer("P2", relay, n, delivered_to="dave" if code == 0 else None)
    # A fresh permission: Send and Data indications again (P1 has no channel any more).
    r.code("dave CreatePermission again", d.create_permission(("127.0.0.1", 0))[0], 0)
    for n in (5, 900):
        r.send("dave", P1, n, delivered_to="P1")
        r.from_peer("P1", relay, n, delivered_to="dave", as_channel=False)
    r.settle("expiry part: rebound and permitted again")
    r.quiet()
    r.snapshot("expiry", admin)
    r.usage["dave"] = api(admin, "/api/v1/usage?user=dave")["total"]


def bps_part(r, u, admin):
    c1 = r.client("carol-1", u, "carol", "127.0.0.1")
    c2 = r.client("carol-2", u, "carol", "127.0.0.1")
    P1, P2 = r.socks["P1"].getsockname()[:2], r.socks["P2"].getsockname()[:2]
    r.allocate("carol-1", "relay-X")
    relay_y = r.allocate("carol-2", "relay-Y")
    r.code("carol-1 ChannelBind 0x4000 P1", c1.channel_bind(0x4000, *P1)[0], 0)
    r.code("carol-2 ChannelBind 0x4000 P2", c2.channel_bind(0x4000, *P2)[0], 0)
    # Each bucket starts full with BPS bytes and refills BPS per second: a burst handled in well
    # under BURST_SIZE / BPS seconds (200 ms) gets exactly BPS // BURST_SIZE through.
    t0 = time.monotonic()
    for i in range(BURST):
        r.channel_data("carol-1", 0x4000, BURST_SIZE,
                       delivered_to="P1" if i < BPS_DELIVERED else None)
    for i in range(BURST):
        r.from_peer("P2", relay_y, BURST_SIZE,
                    delivered_to="carol-2" if i < BPS_DELIVERED else None)
    took = time.monotonic() - t0
    check(took < 0.15, "the bursts took %.3f s: refill would come near one datagram" % took)
    # One allocation, both paths: ChannelData (the kernel's, with offload on) alternating with
    # Send indications that carry FINGERPRINT (which the kernel leaves to user space). One bucket
    # for the allocation, whichever path relays: BPS_DELIVERED in all, not that many on each path.
    # Which ones get through depends on when uturnd's worker reads its socket, so the payloads are
    # all the same bytes; relay-Z's count is what the runs compare.
    c3 = r.client("carol-3", u, "carol", "127.0.0.1")
    r.allocate("carol-3", "relay-Z")
    r.code("carol-3 ChannelBind 0x4001 P1", c3.channel_bind(0x4001, *P1)[0], 0)
    same = r.payload(BURST_SIZE)
    t0 = time.monotonic()
    for i in range(BURST):
        if i % 2 == 0:
            c3.channel_data(0x4001, same)
        else:
            txid = tid()
            body = attr(A_PEER, xor_addr_value(P1[0], P1[1], txid)) + attr(A_DATA, same)
            c3.send_raw(message(mtype(M_SEND, 1), txid, body, fingerprint=True))
    r.want["P1"] += BPS_DELIVERED
    took = time.monotonic() - t0
    check(took < 0.15, "the mixed burst took %.3f s: refill would come near one datagram" % took)
    r.settle("the max-bps bursts")
    r.quiet()
    r.snapshot("bps", admin)
    r.usage["carol"] = api(admin, "/api/v1/usage?user=carol")["total"]


# ---- the tests ----

def get_run(mode):
    if mode not in RUNS:
        t0 = time.monotonic()
        RUNS[mode] = scenario(mode)
        print("kernel-offload = %s: scenario ran in %.1f s" % (mode, time.monotonic() - t0),
              flush=True)
    return RUNS[mode]


def flows(r, party):
    out = {}
    for flow, item in r.recv[party]:
        out.setdefault(flow, []).append(item)
    return out


def short(item):
    s = repr(item)
    return s if len(s) < 160 else s[:150] + "...(%d)" % len(s)


def check_against_rfc(r):
    """What RFC 8656 says each party gets: the datagram counts (every drop case is in them)."""
    got = {p: len(v) for p, v in r.recv.items()}
    check(all(r.want[p] <= got[p] <= r.want[p] + r.maybe[p] for p in got),
          "kernel-offload = %s: parties got %s datagrams, RFC 8656 says %s (up to %s more)"
          % (r.mode, got, r.want, r.maybe))
    bps = r.counters["bps"]
    check(bps.get("relay-X", (0,))[0] == BPS_DELIVERED and bps.get("relay-Y", (0, 0, 0))[2] ==
          BPS_DELIVERED, "kernel-offload = %s: max-bps counters %s, want %d each way"
          % (r.mode, bps, BPS_DELIVERED))
    z = sum(1 for flow, _ in r.recv["P1"] if flow == "relay-Z")
    check(z == BPS_DELIVERED and bps.get("relay-Z", (0,))[0] == BPS_DELIVERED,
          "kernel-offload = %s: the mixed burst (ChannelData and Send with FINGERPRINT) delivered "
          "%d datagrams to P1 (counters %s), want %d: one max-bps for both paths"
          % (r.mode, z, bps.get("relay-Z"), BPS_DELIVERED))


def test_same_datagrams_counters_and_usage():
    off, on = get_run("off"), get_run("on")
    problems = []
    for party in sorted(off.recv):
        fo, fn = flows(off, party), flows(on, party)
        for flow in sorted(set(fo) | set(fn)):
            a, b = fo.get(flow, []), fn.get(flow, [])
            if a == b:
                continue
            i = next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))
            where = ""
            if i < min(len(a), len(b)) and isinstance(a[i], bytes) and isinstance(b[i], bytes):
                k = next((k for k, (x, y) in enumerate(zip(a[i], b[i])) if x != y),
                         min(len(a[i]), len(b[i])))
                where = " (%d and %d bytes, first different byte at offset %d)" % (
                    len(a[i]), len(b[i]), k)
            problems.append("%s <- %s: off %d datagrams, on %d; first difference at #%d%s: off "
                            "%s, on %s" % (party, flow, len(a), len(b), i, where,
                                           short(a[i]) if i < len(a) else "-",
                                           short(b[i]) if i < len(b) else "-"))
    if off.codes != on.codes:
        problems.append("response codes: off %s, on %s" % (off.codes, on.codes))
    for snap in off.counters:
        if off.counters[snap] != on.counters.get(snap):
            problems.append("allocation counters (%s) %s: off %s, on %s" % (
                snap, "/".join(FIELDS), off.counters[snap], on.counters.get(snap)))
    if off.usage != on.usage:
        problems.append("usage totals: off %s, on %s" % (off.usage, on.usage))
    n = sum(len(v) for v in off.recv.values())
    for party in sorted(off.recv):
        print("  %s got: %s" % (party, ", ".join("%d from %s" % (len(v), f) for f, v in
                                                  sorted(flows(off, party).items()))))
    print("compared %d datagrams to %d parties, %d counter snapshots, usage %s"
          % (n, len(off.recv), len(off.counters), off.usage), flush=True)
    check(not problems, "kernel-offload on and off differ:\n  " + "\n  ".join(problems))
    # Both agree; now both must also be right.
    for r in (off, on):
        check(not r.bad_src, "kernel-offload = %s: %s" % (r.mode, "; ".join(r.bad_src[:5])))
    check_against_rfc(off)
    check_against_rfc(on)
    # The counters say what the parties saw: to_peer = what the peers got from each relay,
    # from_peer = what each user's clients got.
    got = {}
    for party in ("P1", "P2", "P3", "Q1", "Q2"):
        for flow, items in flows(off, party).items():
            g = got.setdefault(flow, [0, 0])
            g[0] += len(items)
            g[1] += sum(len(x) for x in items)
    final = dict(off.counters["before delete"])
    final.update(off.counters["end"])
    final.update(off.counters["bps"])
    final.update(off.counters["expiry"])
    for relay, (pk, by) in got.items():
        if relay == "relay-B6" and relay not in final:
            continue  # expired before the end snapshot: checked through bob's usage below
        check(final.get(relay, (None, None))[:2] == (pk, by),
              "%s: to_peer counters %s, the peers got %d datagrams, %d bytes"
              % (relay, final.get(relay), pk, by))
    b6 = got.get("relay-B6", [0, 0])
    check((off.usage["bob"]["to_peer_packets"], off.usage["bob"]["to_peer_bytes"]) == tuple(b6),
          "bob's usage %s, Q1+Q2 got %s from relay-B6" % (off.usage["bob"], b6))
    for user in ("alice", "bob", "dave"):
        n = len(off.recv[user])
        check(off.usage[user]["from_peer_packets"] == n, "%s's usage %s, the client got %d "
              "datagrams" % (user, off.usage[user], n))


def test_kernel_did_the_work():
    on = get_run("on")
    problems = []
    for name, want in on.expect_kernel.items():
        g = on.kernel.get(name)
        if not isinstance(g, dict):
            problems.append("%s uturnd: kp_global unreadable: %s" % (name, g))
            continue
        print("%s uturnd kp_global: %s (at least %s)" % (name, g, want), flush=True)
        for k, n in want.items():
            if g[k] < n:
                problems.append("%s uturnd: kp_global %s = %d, the scenario relayed %d that the "
                                "maps allow" % (name, k, g[k], n))
        m = on.metrics.get(name) or {}
        if not m:
            print("NOTE: %s uturnd's /metrics has no path=\"kernel\" sample" % name, flush=True)
        else:
            print("%s uturnd /metrics path=\"kernel\": %s" % (name, m), flush=True)
            pk = sum(v for (metric, _), v in m.items() if metric == "uturn_relay_packets_total")
            least = kpath_util.to_peer(want) + kpath_util.from_peer(want)
            if pk < least:
                problems.append("%s uturnd: /metrics uturn_relay_packets_total{path=\"kernel\"} "
                                "sum %d < %d relayed by the kernel" % (name, pk, least))
    # The two bursts' excess, plus the mixed burst's ChannelData over what was left for them: all of
    # them when user space's Sends took the whole bucket, all but BPS_DELIVERED when none did.
    g = on.kernel.get("bps")
    lo = 2 * (BURST - BPS_DELIVERED) + BURST // 2 - BPS_DELIVERED
    hi = 2 * (BURST - BPS_DELIVERED) + BURST // 2
    if isinstance(g, dict) and not lo <= g["drop_bps"] <= hi:
        problems.append("bps uturnd: kp_global drop_bps = %d, want %d..%d (the bursts' excess)"
                        % (g["drop_bps"], lo, hi))
    check(not problems, "the kernel path did not do the work:\n  " + "\n  ".join(problems))


if __name__ == "__main__":
    tests_to_run()  # --list and bad names before anything starts
    why = kpath_util.kernel_skip_reason()
    if why:
        print("SKIP test_kernel_equivalence.py: %s" % why, flush=True)
        sys.exit(77)
    run()
