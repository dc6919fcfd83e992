#!/usr/bin/python3
"""The kernel path's control plane (issue 14, docs/KERNEL.md): what the workers write into the
kernel's relay maps (server/core/offload.c) for each step of an allocation's life, read back with
bpftool and decoded per server/kpath/kpath_abi.h.

A real uturnd with kernel-offload = on, on 127.0.0.1, and TurnClients that allocate, create
permissions, bind channels, refresh, delete (Refresh 0), are revoked through the admin API and
let a short lifetime expire; after each step the exact entries of this uturnd's kp_c2p, kp_p2c
and kp_perm are compared with what the allocation allows, expiries within their window of
CLOCK_MONOTONIC (the clock of libuv's loop time and of bpf_ktime_get_ns). A TCP client's
allocation makes no entry; max-bps reaches kp_bucket; /metrics shows path="user" and
path="kernel" series, the kernel path active and the entry gauge matching the maps. Counts the
kernel wrote into an allocation's slot (set here with bpftool, as the program would) are folded
into the allocations API's traffic and a deleted allocation's usage totals exactly once, added
to what user space counted. A wildcard listener (in a netns of its own) gets a zero server
address in the c2p key and the route's source in the p2c value. An IPv6 client with an IPv6
relayed address gets family 6 entries; with an IPv4 relayed address (RFC 6156) none.

The maps are this uturnd's own: found through the bpf-map file descriptors it holds
(/proc/PID/fdinfo map_id), so other uturnds on lo at the same time do not disturb the counts.
Needs root and a uturnd built with the kernel path; otherwise every test prints SKIP and why.
"""
import http.client
import json
import os
import shutil
import socket
import struct
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))
from uturn import BUILDDIR, Uturnd, TurnClient, attr, check, free_port, relayed_addresses, run, wait_for  # noqa: E402
import kpath_util  # noqa: E402
from uturn import A_REQ_FAMILY  # noqa: E402

UTURNCTL = os.path.join(BUILDDIR, "uturnctl")
TOKEN = "kernel-control-token-0123456789"
BPS = 123456
BASE = ["user = alice:alice-pass", "user = bob:bob-pass", "realm = uturn.test",
        "allow-loopback-peers"]
LOOP = bytes([127, 0, 0, 1]) + bytes(12)
ZERO = bytes(16)
WINDOW = 0.05  # s: slack around an expiry's window (the loop clock lags by a tick at most)


def skip_reason():
    return kpath_util.kernel_skip_reason()


def mono():
    return time.clock_gettime(time.CLOCK_MONOTONIC)


# ---- this uturnd's maps, decoded per kpath_abi.h ----

def our_maps(u):
    """{name: map id} of the BPF maps uturnd `u` holds open."""
    ids = set()
    d = "/proc/%d/fdinfo" % u.proc.pid
    for f in os.listdir(d):
        try:
            with open(os.path.join(d, f)) as fh:
                text = fh.read()
        except OSError:
            continue
        for line in text.splitlines():
            if line.startswith("map_id:"):
                ids.add(int(line.split()[1]))
    out = {}
    for i in ids:
        r = subprocess.run(["bpftool", "-j", "map", "show", "id", str(i)], capture_output=True,
                           text=True)
        if r.returncode == 0:
            out[json.loads(r.stdout)["name"]] = i
    return out


def raw_dump(mid):
    r = subprocess.run(["bpftool", "-j", "map", "dump", "id", str(mid)], capture_output=True,
                       text=True, timeout=30)
    check(r.returncode == 0, "bpftool map dump id %d: %s" % (mid, r.stderr))
    return [(bytes(int(x, 16) for x in e["key"]), bytes(int(x, 16) for x in e["value"]))
            for e in json.loads(r.stdout)]


# Every value ends in the program's route cache (kpath_abi.h struct kpath_route): not decoded here,
# since the program writes it as traffic flows.
ROUTE = 56


def c2p(k, v):
    """kp_c2p: key (client ip, server ip, client port, server port, channel, family) -> value
    (expires s, slot, relay ip, relay port, peer ip, peer port). Ports are network order in the
    map, the channel host order."""
    check(len(k) == 40 and len(v) == 48 + ROUTE and k[39] == 0, "c2p sizes/pad %d %d" % (len(k), len(v)))
    key = (k[0:16], k[16:32], struct.unpack("!H", k[32:34])[0], struct.unpack("!H", k[34:36])[0],
           struct.unpack("=H", k[36:38])[0], k[38])
    val = (struct.unpack("=Q", v[0:8])[0] / 1e9, struct.unpack("=I", v[8:12])[0], v[16:32],
           struct.unpack("!H", v[12:14])[0], v[32:48], struct.unpack("!H", v[14:16])[0])
    return key, val


def p2c(k, v):
    """kp_p2c: key (relay ip, relay port, peer ip, peer port, family) -> value (expires s, slot,
    channel, client ip, client port, server ip, server port)."""
    check(len(k) == 40 and len(v) == 56 + ROUTE and k[37:40] == bytes(3) and v[18:24] == bytes(6),
          "p2c sizes/pads")
    key = (k[0:16], struct.unpack("!H", k[32:34])[0], k[16:32], struct.unpack("!H", k[34:36])[0],
           k[36])
    val = (struct.unpack("=Q", v[0:8])[0] / 1e9, struct.unpack("=I", v[8:12])[0],
           struct.unpack("=H", v[12:14])[0], v[24:40], struct.unpack("!H", v[14:16])[0],
           v[40:56], struct.unpack("!H", v[16:18])[0])
    return key, val


def perm(k, v):
    """kp_perm: key (slot, family, peer ip) -> expires s."""
    check(len(k) == 24 and len(v) == 8 + ROUTE and k[5:8] == bytes(3), "perm sizes/pad")
    return (struct.unpack("=I", k[0:4])[0], k[4], k[8:24]), struct.unpack("=Q", v[0:8])[0] / 1e9


# IPv4 entries live in maps of their own with short keys (kpath_abi.h struct kpath_*4_key): they
# are decoded into the long keys' form, IPv4 in the first 4 of 16 bytes and family 4.
def c2p4(k, v):
    """kp_c2p4: key (client ip, server ip, client port, server port, channel, pad)."""
    check(len(k) == 16 and k[14:16] == bytes(2), "c2p4 key size/pad %d" % len(k))
    return c2p(k[0:4] + bytes(12) + k[4:8] + bytes(12) + k[8:14] + b"\x04\x00", v)


def p2c4(k, v):
    """kp_p2c4: key (relay ip, peer ip, relay port, peer port)."""
    check(len(k) == 12, "p2c4 key size %d" % len(k))
    return p2c(k[0:4] + bytes(12) + k[4:8] + bytes(12) + k[8:12] + b"\x04" + bytes(3), v)


def perm4(k, v):
    """kp_perm4: key (slot, peer ip)."""
    check(len(k) == 8, "perm4 key size %d" % len(k))
    return perm(k[0:4] + b"\x04" + bytes(3) + k[4:8] + bytes(12), v)


def entries(u):
    """(c2p dict, p2c dict, perm dict) of uturnd u's maps (both families), decoded."""
    m = our_maps(u)
    names = ("kp_c2p", "kp_p2c", "kp_perm", "kp_c2p4", "kp_p2c4", "kp_perm4", "kp_bucket")
    check(all(n in m for n in names), "uturnd holds the relay maps: %s" % sorted(m))
    return (dict([c2p(k, v) for k, v in raw_dump(m["kp_c2p"])] +
                 [c2p4(k, v) for k, v in raw_dump(m["kp_c2p4"])]),
            dict([p2c(k, v) for k, v in raw_dump(m["kp_p2c"])] +
                 [p2c4(k, v) for k, v in raw_dump(m["kp_p2c4"])]),
            dict([perm(k, v) for k, v in raw_dump(m["kp_perm"])] +
                 [perm4(k, v) for k, v in raw_dump(m["kp_perm4"])]))


def bucket(u, slot):
    """kp_bucket[slot]: (bps, tokens)."""
    mid = our_maps(u)["kp_bucket"]
    key = [str(b) for b in struct.pack("=I", slot)]
    r = subprocess.run(["bpftool", "-j", "map", "lookup", "id", str(mid), "key"] + key,
                       capture_output=True, text=True)
    check(r.returncode == 0, "bpftool map lookup: %s" % r.stderr)
    v = bytes(int(x, 16) for x in json.loads(r.stdout)["value"])
    return struct.unpack("=QQ", v[8:24])


def expires_in(got, lo, hi, what):
    check(lo - WINDOW <= got <= hi + WINDOW,
          "%s expires at %.3f, not within [%.3f, %.3f] (CLOCK_MONOTONIC)" % (what, got, lo, hi))


# ---- one allocation's expected entries ----

class Alloc:
    """A TurnClient's allocation and the monotonic window of each expiry it set."""

    def __init__(self, u, user="alice"):
        self.u = u
        self.c = TurnClient(u, user, user + "-pass")
        t0 = mono()
        code, _, raw = self.c.allocate(raw_response=True)
        check(code == 0, "Allocate: %s" % code)
        self.exp = (t0 + 600, mono() + 600)
        self.relay = relayed_addresses(raw)[0]
        self.port = self.c.sock.getsockname()[1]
        self.perms = {}  # ip bytes -> (lo, hi)
        self.chans = {}  # number -> (peer port, (lo, hi))

    def timed(self, fn, *args):
        t0 = mono()
        code = fn(*args)[0]
        return code, (t0, mono())

    def permit(self, *ports):
        code, (a, b) = self.timed(self.c.create_permission, *[("127.0.0.1", p) for p in ports])
        check(code == 0, "CreatePermission: %s" % code)
        self.perms[LOOP] = (a + 300, b + 300)

    def bind(self, number, port):
        code, (a, b) = self.timed(self.c.channel_bind, number, "127.0.0.1", port)
        check(code == 0, "ChannelBind: %s" % code)
        self.chans[number] = (port, (a + 600, b + 600))
        self.perms[LOOP] = (a + 300, b + 300)

    def refresh(self, lifetime):
        code, (a, b) = self.timed(self.c.refresh, lifetime)
        check(code == 0, "Refresh %d: %s" % (lifetime, code))
        self.exp = (a + lifetime, b + lifetime)

    def mine(self, maps):
        """The entries of maps that belong to this allocation (its client port, its relay)."""
        c, p, pm = maps
        mc = {k: v for k, v in c.items() if k[2] == self.port}
        mp = {k: v for k, v in p.items() if k[1] == self.relay[1]}
        slots = {v[1] for v in list(mc.values()) + list(mp.values())}
        mpm = {k: v for k, v in pm.items() if k[0] in slots}
        return mc, mp, mpm, slots

    def expect(self, maps):
        """Exactly the entries this allocation allows now; returns its slot."""
        mc, mp, mpm, slots = self.mine(maps)
        check(len(slots) == 1, "one slot for the allocation: %s" % slots)
        slot = slots.pop()
        low = lambda w1, w2: (min(w1[0], w2[0]), min(w1[1], w2[1]))  # noqa: E731
        # The allocation: ChannelData channel 0 / peer zero.
        want_c = {(LOOP, LOOP, self.port, self.u.port, 0, 4): self.exp}
        want_p = {(LOOP, self.relay[1], ZERO, 0, 4): (self.exp, 0)}
        for n, (pport, w) in self.chans.items():
            want_c[(LOOP, LOOP, self.port, self.u.port, n, 4)] = low(w, self.exp)
            pw = self.perms.get(LOOP)
            want_p[(LOOP, self.relay[1], LOOP, pport, 4)] = (low(low(w, self.exp), pw), n)
        check(set(mc) == set(want_c), "c2p keys %s, want %s" % (sorted(mc), sorted(want_c)))
        check(set(mp) == set(want_p), "p2c keys %s, want %s" % (sorted(mp), sorted(want_p)))
        for k, (lo, hi) in want_c.items():
            exp, s, rip, rport, pip, pport = mc[k]
            expires_in(exp, lo, hi, "c2p channel %#x" % k[4])
            want_peer = (LOOP, self.chans[k[4]][0]) if k[4] else (ZERO, 0)
            check(s == slot and (rip, rport) == (LOOP, self.relay[1]) and (pip, pport) == want_peer,
                  "c2p value %s" % (mc[k],))
        for k, ((lo, hi), n) in want_p.items():
            exp, s, ch, cip, cport, sip, sport = mp[k]
            expires_in(exp, lo, hi, "p2c peer port %d" % k[3])
            check(s == slot and ch == n and (cip, cport, sip, sport) == (LOOP, self.port, LOOP,
                                                                        self.u.port),
                  "p2c value %s" % (mp[k],))
        want_pm = {(slot, 4, ip): low(w, self.exp) for ip, w in self.perms.items()}
        check(set(mpm) == set(want_pm), "perm keys %s, want %s" % (sorted(mpm), sorted(want_pm)))
        for k, (lo, hi) in want_pm.items():
            expires_in(mpm[k], lo, hi, "permission")
        return slot

    def gone(self, maps):
        mc, mp, mpm, slots = self.mine(maps)
        return not mc and not mp and not mpm


def metrics(port):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=15)
    conn.request("GET", "/metrics", headers={"Authorization": "Bearer " + TOKEN})
    text = conn.getresponse().read().decode()
    conn.close()
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            k, v = line.rsplit(" ", 1)
            out[k] = float(v)
    return out


def api(port, method, path):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=15)
    conn.request(method, path, headers={"Authorization": "Bearer " + TOKEN})
    resp = conn.getresponse()
    doc = json.loads(resp.read().decode())
    conn.close()
    return resp.status, doc


def offload_uturnd(extra=()):
    admin = free_port()
    conf = BASE + ["kernel-offload = on", "max-bps = %d" % BPS,
                   "admin-listen = 127.0.0.1:%d" % admin, "admin-token = %s" % TOKEN] + list(extra)
    return Uturnd(conf=conf), admin


# ---- tests ----

def test_entries_follow_permissions_channels_refresh_and_expiry():
    why = skip_reason()
    if why:
        print("SKIP test_entries_follow_permissions_channels_refresh_and_expiry: %s" % why)
        return
    u, admin = offload_uturnd()
    with u:
        a = Alloc(u)
        slot = a.expect(entries(u))
        check(bucket(u, slot) == (BPS, BPS), "kp_bucket[%d] = %s, want max-bps %d, full" %
              (slot, bucket(u, slot), BPS))
        a.permit(5000)
        a.expect(entries(u))
        a.bind(0x4001, 5001)
        a.expect(entries(u))
        a.bind(0x4002, 5002)  # a second channel (same peer IP, another port)
        a.expect(entries(u))
        a.bind(0x4001, 5001)  # refreshed: only its expiry moves
        a.expect(entries(u))
        a.refresh(1200)
        a.expect(entries(u))
        # The allocations API: the traffic (user space's and the kernel's folded) and the flag.
        code, doc = api(admin, "GET", "/api/v1/allocations")
        mine = [x for x in doc["allocations"] if x.get("kernel") is True]
        check(code == 200 and len(mine) == 1, "one allocation with kernel: true: %s" % doc)
        # A TCP client's allocation stays in user space: no entry, no slot.
        before = entries(u)
        t = TurnClient(u, "alice", "alice-pass", transport="tcp")
        try:
            check(t.allocate()[0] == 0, "TCP Allocate")
            check(t.create_permission(("127.0.0.1", 5003))[0] == 0, "TCP CreatePermission")
            check(entries(u) == before, "a TCP client's allocation made entries")
            code, doc = api(admin, "GET", "/api/v1/allocations")
            flags = sorted(x["transport"] + ":" + str(x["kernel"]) for x in doc["allocations"])
            check(flags == ["tcp:False", "udp:True"], "kernel flags: %s" % flags)
        finally:
            t.close()
        m = metrics(admin)
        c, p, pm = entries(u)
        mc, mp, mpm, _ = a.mine((c, p, pm))
        check(m["uturn_kernel_offload_active"] == 1, "uturn_kernel_offload_active")
        check(m["uturn_kernel_entries"] == len(mc) + len(mp) + len(mpm) == 7,
              "uturn_kernel_entries %s, maps %d" % (m["uturn_kernel_entries"],
                                                    len(mc) + len(mp) + len(mpm)))
        check(m["uturn_kernel_slots_in_use"] == 1, "slots in use")
        env = dict(os.environ, UTURN_URL="http://127.0.0.1:%d" % admin, UTURN_TOKEN=TOKEN)
        out = subprocess.run([UTURNCTL, "stats"], capture_output=True, text=True, env=env,
                             timeout=30).stdout
        check("kernel path    active: 1 allocations in slots, 7 map entries" in out
              and "kernel drops   0 max-bps" in out, "uturnctl stats:\n%s" % out)
        for k in ('uturn_relay_packets_total{path="user",direction="client_to_peer"}',
                  'uturn_relay_packets_total{path="kernel",direction="peer_to_client"}',
                  'uturn_relay_bytes_total{path="kernel",direction="client_to_peer"}',
                  'uturn_relay_messages_total{path="user",kind="channeldata",direction="client_to_peer"}',
                  'uturn_kernel_drops_total{reason="bps"}',
                  'uturn_kernel_refused_total{reason="map_full"}'):
            check(k in m, "/metrics has %s" % k)
        # A short lifetime: every entry's expiry comes down to it, then the sweep removes all.
        a.refresh(2)
        a.expect(entries(u))
        wait_for(lambda: a.gone(entries(u)), 6, "the expired allocation's entries removed")
        wait_for(lambda: metrics(admin)["uturn_kernel_slots_in_use"] == 0, 3, "slot given back")
        check(metrics(admin)["uturn_kernel_entries"] == 0, "entry gauge back to 0")
        a.c.close()


def test_delete_revoke_and_shutdown_remove_entries():
    why = skip_reason()
    if why:
        print("SKIP test_delete_revoke_and_shutdown_remove_entries: %s" % why)
        return
    u, admin = offload_uturnd()
    with u:
        a = Alloc(u)
        a.permit(6000)
        a.bind(0x4010, 6001)
        b = Alloc(u, "bob")
        b.permit(6002)
        b.bind(0x4011, 6003)
        maps = entries(u)
        a.expect(maps)
        b.expect(maps)
        # Refresh 0: alice's go, bob's stay.
        a.refresh(0)
        maps = entries(u)
        check(a.gone(maps), "alice's entries after Refresh 0: %s" % (a.mine(maps)[:3],))
        b.expect(maps)
        # Revocation through the admin API: bob's allocation ends, its entries with it.
        code, doc = api(admin, "DELETE", "/api/v1/allocations?user=bob")
        check(code == 200 and doc.get("terminated") == 1, "DELETE ?user=bob: %s %s" % (code, doc))
        check(b.gone(entries(u)), "bob's entries after revocation")
        check(metrics(admin)["uturn_kernel_entries"] == 0, "entry gauge 0")
        # Shutdown with an allocation holding entries: uturnd removes them and exits cleanly.
        c = Alloc(u)
        c.permit(6004)
        c.expect(entries(u))
        ids = list(our_maps(u).values())
        a.c.close()
        b.c.close()
        c.c.close()
    check("kernel-offload: detached" in u.log(), "detach line:\n%s" % u.log()[-2000:])

    def left():
        return [i for i in ids if subprocess.run(["bpftool", "map", "show", "id", str(i)],
                                                 capture_output=True).returncode == 0]
    # The kernel frees a map after its last reference goes (deferred: RCU).
    wait_for(lambda: not left(), 5, "this uturnd's maps freed after exit")


def set_counts(u, slot, counts):
    """Write kp_count[slot] = counts (to_peer packets, bytes, from_peer packets, bytes) on every
    CPU, as the program would have counted them; returns the number of CPUs (the sum's factor)."""
    mid = our_maps(u)["kp_count"]
    key = [str(b) for b in struct.pack("=I", slot)]
    val = [str(b) for b in struct.pack("=5Q", *counts, 0)]
    r = subprocess.run(["bpftool", "map", "update", "id", str(mid), "key"] + key + ["value"] + val,
                       capture_output=True, text=True)
    check(r.returncode == 0, "bpftool map update kp_count: %s" % r.stderr)
    r = subprocess.run(["bpftool", "-j", "map", "lookup", "id", str(mid), "key"] + key,
                       capture_output=True, text=True)
    return len(json.loads(r.stdout)["values"])


def test_kernel_counts_fold_into_allocation_and_usage():
    why = skip_reason()
    if why:
        print("SKIP test_kernel_counts_fold_into_allocation_and_usage: %s" % why)
        return
    u, admin = offload_uturnd()
    peer = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    peer.bind(("127.0.0.1", 0))
    peer.settimeout(3)
    with u:
        a = Alloc(u)
        a.bind(0x4020, peer.getsockname()[1])
        slot = a.expect(entries(u))
        # What the kernel counted for this slot (written as the program would, on every CPU).
        n = set_counts(u, slot, (3, 300, 5, 500))

        def traffic():
            code, doc = api(admin, "GET", "/api/v1/allocations")
            check(code == 200 and len(doc["allocations"]) == 1, "allocations: %s" % doc)
            x = doc["allocations"][0]
            return (x["to_peer_packets"], x["to_peer_bytes"], x["from_peer_packets"],
                    x["from_peer_bytes"])
        check(traffic() == (3 * n, 300 * n, 5 * n, 500 * n), "folded: %s, %d CPUs" % (traffic(), n))
        check(traffic() == (3 * n, 300 * n, 5 * n, 500 * n), "a second read counts nothing twice")
        # One more datagram, whichever path relays it, adds exactly once.
        a.c.channel_data(0x4020, b"k" * 10)
        check(peer.recvfrom(2048)[0] == b"k" * 10, "the peer got the ChannelData")
        wait_for(lambda: traffic() == (3 * n + 1, 300 * n + 10, 5 * n, 500 * n), 3,
                 "user + kernel counts add up")
        # Deleted: the totals of the ended allocation hold the kernel's share.
        a.refresh(0)
        code, doc = api(admin, "GET", "/api/v1/usage?user=alice")
        e = doc["ended"]
        check(code == 200 and doc["live"]["allocations"] == 0 and e["allocations"] == 1
              and (e["to_peer_packets"], e["to_peer_bytes"], e["from_peer_packets"],
                   e["from_peer_bytes"]) == (3 * n + 1, 300 * n + 10, 5 * n, 500 * n),
              "ended totals: %s" % doc)
        a.c.close()
    peer.close()


def test_ipv6_and_mixed_families():
    """An IPv6 client with an IPv6 relayed address is offloaded (family 6 entries); the same
    client with an IPv4 relayed address (RFC 6156) stays in user space: no entry."""
    why = skip_reason()
    if why:
        print("SKIP test_ipv6_and_mixed_families: %s" % why)
        return
    u = Uturnd(conf=BASE + ["kernel-offload = on", "relay-ip = 127.0.0.1", "relay-ip = ::1"],
               host="::1")
    six = socket.inet_pton(socket.AF_INET6, "::1")
    with u:
        c6 = TurnClient(u, "alice", "alice-pass")
        code, _, raw = c6.allocate(extra=attr(A_REQ_FAMILY, bytes([2, 0, 0, 0])), raw_response=True)
        check(code == 0, "Allocate IPv6: %s" % code)
        relay6 = relayed_addresses(raw)[0]
        check(c6.create_permission(("::1", 7000))[0] == 0, "CreatePermission ::1")
        check(c6.channel_bind(0x4030, "::1", 7001)[0] == 0, "ChannelBind ::1")
        c4 = TurnClient(u, "alice", "alice-pass")
        code, _, raw = c4.allocate(raw_response=True)
        check(code == 0, "Allocate IPv4 relay for an IPv6 client: %s" % code)
        relay4 = relayed_addresses(raw)[0]
        check(c4.create_permission(("127.0.0.1", 7002))[0] == 0, "CreatePermission 127.0.0.1")
        cm, pm, perms = entries(u)
        p6 = c6.sock.getsockname()[1]
        mine_c = sorted((k[4], k[5], k[0] == six, k[1] == six) for k in cm if k[2] == p6)
        check(mine_c == [(0, 6, True, True), (0x4030, 6, True, True)],
              "IPv6 c2p entries: %s" % mine_c)
        mine_p = sorted((k[3], k[4], k[0] == six) for k in pm if k[1] == relay6[1])
        check(mine_p == [(0, 6, True), (7001, 6, True)], "IPv6 p2c entries: %s" % mine_p)
        check(sorted((k[1], k[2] == six) for k in perms) == [(6, True)],
              "IPv6 permission: %s" % perms)
        p4 = c4.sock.getsockname()[1]
        check(not [k for k in cm if k[2] == p4] and not [k for k in pm if k[1] == relay4[1]],
              "an IPv6 client with an IPv4 relayed address made entries")
        c6.close()
        c4.close()


def test_metrics_with_offload_off():
    why = skip_reason()
    if why:
        print("SKIP test_metrics_with_offload_off: %s" % why)
        return
    admin = free_port()
    u = Uturnd(conf=BASE + ["kernel-offload = off", "admin-listen = 127.0.0.1:%d" % admin,
                            "admin-token = %s" % TOKEN])
    with u:
        m = metrics(admin)
        check(m["uturn_kernel_offload_active"] == 0, "active with offload off")
        check('uturn_relay_packets_total{path="user",direction="client_to_peer"}' in m
              and m['uturn_relay_packets_total{path="kernel",direction="client_to_peer"}'] == 0,
              "path labels with offload off")


def wildcard_inner():
    """Runs in a network namespace of its own (test_wildcard_listener): uturnd listens on
    0.0.0.0, so its program is attached on every interface that is up: only this namespace's lo."""
    u = Uturnd(conf=BASE + ["kernel-offload = on", "relay-ip = 127.0.0.1"], host="0.0.0.0")
    with u:
        c = TurnClient(u, "alice", "alice-pass", local="127.0.0.1")
        code, _, raw = c.allocate(raw_response=True)
        check(code == 0, "Allocate: %s" % code)
        relay = relayed_addresses(raw)[0]
        cport = c.sock.getsockname()[1]
        cm, pm, _ = entries(u)
        mine_c = [(k, v) for k, v in cm.items() if k[2] == cport]
        mine_p = [(k, v) for k, v in pm.items() if k[1] == relay[1]]
        # The key matches any local address; the value names the one user space sends from.
        check(len(mine_c) == 1 and mine_c[0][0][1] == ZERO and mine_c[0][0][3] == u.port,
              "c2p key for a wildcard listener: %s" % mine_c)
        check(len(mine_p) == 1 and mine_p[0][1][5] == LOOP and mine_p[0][1][6] == u.port,
              "p2c value's server address: %s" % mine_p)
        c.close()
    print("wildcard: c2p server 0.0.0.0, p2c source 127.0.0.1")


def test_wildcard_listener():
    why = skip_reason() or (None if shutil.which("unshare") and shutil.which("ip")
                            else "unshare and ip needed")
    if why:
        print("SKIP test_wildcard_listener: %s" % why)
        return
    r = subprocess.run(["unshare", "-n", "sh", "-c", "ip link set lo up && exec %s %s --wildcard"
                        % (sys.executable, os.path.abspath(__file__))],
                       capture_output=True, text=True, timeout=60)
    check(r.returncode == 0 and "wildcard: c2p server" in r.stdout,
          "in a netns of its own: rc %d\n%s%s" % (r.returncode, r.stdout[-3000:], r.stderr[-3000:]))


if __name__ == "__main__":
    if sys.argv[1:] == ["--wildcard"]:
        wildcard_inner()
    else:
        run()
