"""The usage ledger with real services: a real redis-server and uturnd with 2 workers.

Clients (the harness TurnClient over UDP and TCP) relay known numbers of bytes both ways through a
Python UDP peer that counts what it receives and sends; on loopback nothing is lost, so the live
counters of GET /api/v1/allocations must equal the peer's figures exactly, and GET /api/v1/usage
must sum them per user (live, then ended). The Redis Stream turn/usage must hold created,
refreshed, periodic (usage-interval = 1) and deleted events whose totals equal what was relayed,
readable by XREADGROUP from a consumer group. With Redis away, each worker queues up to
usage-queue-max events and counts every further one in uturn_usage_events_dropped_total (exactly),
relaying goes on, and the queued ones reach the stream when Redis is back. A REST credential
"expiry:userid:tag" puts its tag in every event. With redis-statsdb, coturn's status keys and
PUBLISH channels carry the same figures to a PSUBSCRIBE consumer. RFC 6062 TCP peer connections
count in their allocation's counters.
"""
import base64
import hashlib
import hmac
import http.client
import json
import socket
import time

from test_turn_redis import Redis
from uturn import TurnClient, Uturnd, check, free_port, relayed_addresses, run, wait_for

REALM = "usage.test"
TOKEN = "usage-token-0123456789abcdef0123"
MIN_PORT, MAX_PORT = 46000, 46999
STREAM = "turn/usage"


# ---- a tiny RESP client (redis-cli's text output loses structure) ----

class Resp:
    def __init__(self, port):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.buf = b""

    def close(self):
        self.sock.close()

    def _line(self):
        while b"\r\n" not in self.buf:
            chunk = self.sock.recv(65536)
            check(chunk, "redis closed the connection")
            self.buf += chunk
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def _exact(self, n):
        while len(self.buf) < n + 2:
            chunk = self.sock.recv(65536)
            check(chunk, "redis closed the connection")
            self.buf += chunk
        data, self.buf = self.buf[:n], self.buf[n + 2:]
        return data

    def _reply(self):
        line = self._line()
        t, rest = line[:1], line[1:]
        if t == b"+":
            return rest.decode()
        if t == b"-":
            raise AssertionError("redis error: %s" % rest.decode())
        if t == b":":
            return int(rest)
        if t == b"$":
            n = int(rest)
            return None if n < 0 else self._exact(n).decode("utf-8", "replace")
        if t == b"*":
            n = int(rest)
            return None if n < 0 else [self._reply() for _ in range(n)]
        raise AssertionError("bad RESP line %r" % line)

    def cmd(self, *args):
        out = b"*%d\r\n" % len(args)
        for a in args:
            a = a if isinstance(a, bytes) else str(a).encode()
            out += b"$%d\r\n%s\r\n" % (len(a), a)
        self.sock.sendall(out)
        return self._reply()


def entries(r):
    """XRANGE turn/usage - + as a list of (id, dict of fields)."""
    c = Resp(r.port)
    try:
        rows = c.cmd("XRANGE", STREAM, "-", "+")
    finally:
        c.close()
    return [(eid, dict(zip(kv[0::2], kv[1::2]))) for eid, kv in rows]


# ---- the admin API ----

def api(u_admin, method, path):
    conn = http.client.HTTPConnection("127.0.0.1", u_admin, timeout=15)
    conn.request(method, path, headers={"Authorization": "Bearer " + TOKEN})
    resp = conn.getresponse()
    text = resp.read().decode()
    conn.close()
    try:
        return resp.status, json.loads(text)
    except ValueError:
        return resp.status, text


def metric(admin_port, name):
    st, text = api(admin_port, "GET", "/metrics")
    check(st == 200, "/metrics: %s" % st)
    for line in text.splitlines():
        if line.startswith(name + " "):
            return int(float(line.split()[1]))
    raise AssertionError("no %s in /metrics" % name)


def server(redis_port, extra=()):
    admin = free_port()
    conf = ["realm = %s" % REALM, "allow-loopback-peers", "min-port = %d" % MIN_PORT,
            "max-port = %d" % MAX_PORT, 'redis-userdb = "ip=127.0.0.1 port=%d dbname=0"' % redis_port,
            "admin-listen = 127.0.0.1:%d" % admin, "admin-token = %s" % TOKEN] + list(extra)
    return Uturnd(conf=conf, threads=2), admin


# ---- a counting peer ----

class Peer:
    """A UDP socket on loopback counting bytes and datagrams per source (a relayed address)."""

    def __init__(self):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.got = {}  # (ip, port) -> [bytes, packets]

    def drain(self, want_packets, timeout=5):
        deadline = time.monotonic() + timeout
        while sum(v[1] for v in self.got.values()) < want_packets:
            left = deadline - time.monotonic()
            check(left > 0, "peer got %d of %d datagrams" %
                  (sum(v[1] for v in self.got.values()), want_packets))
            self.sock.settimeout(left)
            try:
                data, src = self.sock.recvfrom(65536)
            except socket.timeout:
                continue
            v = self.got.setdefault(src, [0, 0])
            v[0] += len(data)
            v[1] += 1

    def send(self, to, data):
        self.sock.sendto(data, to)

    def close(self):
        self.sock.close()


def open_alloc(u, user, password, transport, peer):
    c = TurnClient(u, user, password, transport)
    code, _, raw = c.allocate(raw_response=True)
    check(code == 0, "%s Allocate over %s: %s" % (user, transport, code))
    relayed = relayed_addresses(raw)[0]
    check(c.create_permission(("127.0.0.1", peer.port))[0] == 0, "CreatePermission")
    return c, relayed


def relay(c, peer, relayed, sizes_out, sizes_back, channel=None):
    """Send sizes_out payloads to the peer (ChannelData when `channel`, else Send indications) and
    sizes_back payloads from the peer to the client; returns (to_peer bytes, from_peer bytes)."""
    for i, n in enumerate(sizes_out):
        data = bytes([i % 251]) * n
        if channel:
            c.channel_data(channel, data)
        else:
            c.send_indication("127.0.0.1", peer.port, data)
    for i, n in enumerate(sizes_back):
        peer.send(relayed, bytes([(i + 7) % 251]) * n)
    got = 0
    for _ in sizes_back:
        m = c.receive_data(5)
        check(m is not None, "client did not receive all relayed data")
        got += len(m[2])
    check(got == sum(sizes_back), "client got %d bytes, peer sent %d" % (got, sum(sizes_back)))
    return sum(sizes_out), sum(sizes_back)


def view_by_relay(admin, user):
    st, doc = api(admin, "GET", "/api/v1/allocations?user=%s&limit=1000" % user)
    check(st == 200, "allocations: %s %s" % (st, doc))
    out = {}
    for a in doc["allocations"]:
        ip, port = a["relayed"][0]["address"].rsplit(":", 1)
        out[(ip, int(port))] = a
    return out


def usage(admin, user):
    st, doc = api(admin, "GET", "/api/v1/usage?user=%s" % user)
    check(st == 200, "usage: %s %s" % (st, doc))
    return doc


FIELDS = ("to_peer_bytes", "to_peer_packets", "from_peer_bytes", "from_peer_packets")


# ---- tests ----

def test_live_counters_user_usage_and_stream():
    with Redis() as r:
        u, admin = server(r.port, ["usage-interval = 1", "user = alice:alice-pass",
                                   "user = bob:bob-pass"])
        peer = Peer()
        clients = []
        try:
            with u:
                # alice: one UDP (Send indications), one TCP (ChannelData); bob: one UDP channel.
                plan = [("alice", "alice-pass", "udp", None, [100, 200, 1200, 37], [64, 500, 3]),
                        ("alice", "alice-pass", "tcp", 0x4001, [10, 20, 30, 999, 1], [1000, 11]),
                        ("bob", "bob-pass", "udp", 0x4002, [1400] * 5, [700] * 4)]
                expect = {}  # relayed -> (user, to_peer bytes/packets, from_peer bytes/packets)
                for user, pw, tr, ch, out, back in plan:
                    c, rel = open_alloc(u, user, pw, tr, peer)
                    clients.append((c, rel, user))
                    if ch:
                        check(c.channel_bind(ch, "127.0.0.1", peer.port)[0] == 0, "ChannelBind")
                    relay(c, peer, rel, out, back, ch)
                    expect[rel] = (user, sum(out), len(out), sum(back), len(back))
                peer.drain(sum(e[2] for e in expect.values()))
                for rel, (user, tb, tp, fb, fp) in expect.items():
                    check(peer.got.get(rel, [0, 0]) == [tb, tp],
                          "peer got %s from %s, client sent %d/%d" % (peer.got.get(rel), rel, tb, tp))
                # Live counters in the listing equal what the peer received and sent, exactly.
                for user in ("alice", "bob"):
                    views = view_by_relay(admin, user)
                    mine = {k: v for k, v in expect.items() if v[0] == user}
                    check(set(views) == set(mine), "%s's allocations: %s" % (user, sorted(views)))
                    for rel, (_, tb, tp, fb, fp) in mine.items():
                        got = tuple(views[rel][f] for f in FIELDS)
                        check(got == (tb, tp, fb, fp), "%s %s counters %s, relayed %s" %
                              (user, rel, got, (tb, tp, fb, fp)))
                        check(views[rel]["client_to_peer"] == {"bytes": tb, "packets": tp},
                              "client_to_peer %s" % views[rel]["client_to_peer"])
                        # The detail view carries the same figures.
                        st, d = api(admin, "GET", "/api/v1/allocations/" + views[rel]["id"])
                        check(st == 200 and tuple(d[f] for f in FIELDS) == got, "detail %s" % d)
                    print("%s live: %s" % (user, [tuple(views[k][f] for f in FIELDS) for k in views]))
                # Per-user usage sums the live allocations across both workers.
                def sums(user):
                    mine = [v for v in expect.values() if v[0] == user]
                    return {"allocations": len(mine), "to_peer_bytes": sum(m[1] for m in mine),
                            "to_peer_packets": sum(m[2] for m in mine),
                            "from_peer_bytes": sum(m[3] for m in mine),
                            "from_peer_packets": sum(m[4] for m in mine)}
                zero = dict.fromkeys(["allocations"] + list(FIELDS), 0)
                a = usage(admin, "alice")
                check(a["live"] == sums("alice") and a["ended"] == zero and a["total"] == a["live"],
                      "alice usage %s, expected live %s" % (a, sums("alice")))
                ids = {rel: view_by_relay(admin, user)[rel]["id"] for rel, (user, *_r) in expect.items()}
                # A periodic record comes within usage-interval (1 s) plus the 1 s sweep.
                wait_for(lambda: {e["alloc"] for _, e in entries(r) if e["event"] == "usage"}
                         >= set(ids.values()), 10, "a periodic usage record for every allocation")
                # Refresh one, delete one by Refresh 0, kill one through the admin API.
                (ca, rel_a, _), (ct, rel_t, _), (cb, rel_b, _) = clients
                check(ca.refresh(600)[0] == 0, "Refresh")
                check(ca.refresh(0)[0] == 0, "Refresh 0")
                st, _ = api(admin, "DELETE", "/api/v1/allocations/" + ids[rel_t])
                check(st == 200, "DELETE allocation: %s" % st)
                check(cb.refresh(0)[0] == 0, "bob Refresh 0")
                a = usage(admin, "alice")
                check(a["live"] == zero and a["ended"] == sums("alice"),
                      "alice after delete: %s, expected ended %s" % (a, sums("alice")))
                b = usage(admin, "bob")
                check(b["ended"] == sums("bob") and b["total"] == sums("bob"), "bob: %s" % b)
                # The stream: created, refreshed, usage and deleted with the relayed totals.
                want_reason = {rel_a: "deleted", rel_t: "killed", rel_b: "deleted"}

                def deleted_all():
                    return {e["alloc"] for _, e in entries(r) if e["event"] == "deleted"} >= set(ids.values())
                wait_for(deleted_all, 10, "deleted events in the stream")
                rows = entries(r)
                node = socket.gethostname()
                for rel, (user, tb, tp, fb, fp) in expect.items():
                    mine = [e for _, e in rows if e["alloc"] == ids[rel]]
                    kinds = [e["event"] for e in mine]
                    check(kinds[0] == "created" and kinds[-1] == "deleted" and "usage" in kinds,
                          "%s events %s" % (rel, kinds))
                    check(kinds.count("created") == 1 and kinds.count("deleted") == 1,
                          "%s events %s" % (rel, kinds))
                    last = mine[-1]
                    got = tuple(int(last[f]) for f in FIELDS)
                    check(got == (tb, tp, fb, fp), "%s deleted totals %s, relayed %s" %
                          (rel, got, (tb, tp, fb, fp)))
                    check(last["reason"] == want_reason[rel], "reason %s" % last["reason"])
                    for e in mine:
                        check(e["user"] == user and e["realm"] == REALM and e["node"] == node
                              and e["relayed"] == "%s:%d" % rel and e["tag"] == "",
                              "event fields %s" % e)
                    check(mine[0]["transport"] == ("tcp" if rel == rel_t else "udp"), "transport")
                    print("%s %s: %s, deleted totals %s" % (user, rel, kinds, got))
                check([e["event"] for _, e in rows if e["alloc"] == ids[rel_a]].count("refreshed") == 1,
                      "one refreshed event for the refreshed allocation")
                # Per user, the deleted totals sum to what the user relayed.
                for user in ("alice", "bob"):
                    tot = [0, 0, 0, 0]
                    for _, e in rows:
                        if e["event"] == "deleted" and e["user"] == user:
                            tot = [t + int(e[f]) for t, f in zip(tot, FIELDS)]
                    s = sums(user)
                    check(tot == [s[f] for f in FIELDS], "%s stream totals %s, relayed %s" % (user, tot, s))
                # A billing consumer reads them with a consumer group.
                c = Resp(r.port)
                try:
                    check(c.cmd("XGROUP", "CREATE", STREAM, "billing", "0") == "OK", "XGROUP CREATE")
                    got = c.cmd("XREADGROUP", "GROUP", "billing", "c1", "COUNT", "10000",
                                "STREAMS", STREAM, ">")
                    n = len(got[0][1])
                    check(n == c.cmd("XLEN", STREAM) and n == len(rows), "XREADGROUP read %d of %d" %
                          (n, len(rows)))
                finally:
                    c.close()
                print("stream entries %d, written %d" % (len(rows), metric(admin, "uturn_usage_events_written_total")))
                check(metric(admin, "uturn_usage_events_dropped_total") == 0, "no drops")
        finally:
            for c, _, _ in clients:
                c.close()
            peer.close()


def test_redis_away_drops_counted_and_relaying_goes_on():
    port = free_port()
    cap = 16
    u, admin = server(port, ["usage-interval = 0", "usage-queue-max = %d" % cap,
                             "user = carol:carol-pass"])
    peer = Peer()
    clients = []
    try:
        with u:
            per_worker = {}
            for i in range(14):
                c, rel = open_alloc(u, "carol", "carol-pass", "udp", peer)
                clients.append((c, rel))
                check(c.refresh(600)[0] == 0, "Refresh")
            views = view_by_relay(admin, "carol")
            for rel, v in views.items():
                w = v["worker"]
                per_worker[w] = per_worker.get(w, 0) + 1
            # Relaying goes on while events are dropped.
            c, rel = clients[0]
            tb, fb = relay(c, peer, rel, [300, 301], [302])
            peer.drain(2)
            for c, _ in clients:
                check(c.refresh(0)[0] == 0, "Refresh 0")
            events = {w: 3 * n for w, n in per_worker.items()}  # created, refreshed, deleted
            want = sum(max(0, n - cap) for n in events.values())
            wait_for(lambda: metric(admin, "uturn_usage_events_dropped_total") >= want, 5,
                     "drops counted")
            got = metric(admin, "uturn_usage_events_dropped_total")
            check(got == want, "dropped %d, expected %d (events per worker %s, cap %d)" %
                  (got, want, events, cap))
            print("events per worker %s, cap %d: dropped %d" % (events, cap, got))
            # Redis comes back: what each worker queued reaches the stream, in order.
            with Redis(port) as r:
                queued = sum(min(cap, n) for n in events.values())
                wait_for(lambda: len(entries(r)) >= queued, 40, "queued events written")
                rows = entries(r)
                check(len(rows) == queued, "stream holds %d, queued %d" % (len(rows), queued))
                check(all(e["event"] == "created" or e["event"] == "refreshed" or e["event"] == "deleted"
                          for _, e in rows), "kinds")
                print("written after Redis came back: %d" % len(rows))
    finally:
        for c, _ in clients:
            c.close()
        peer.close()


def rest(secret, name):
    user = "%d:%s" % (int(time.time()) + 3600, name)
    return user, base64.b64encode(hmac.new(secret.encode(), user.encode(), hashlib.sha1).digest()).decode()


def test_rest_tag_in_every_event():
    secret = "usage-rest-secret"
    with Redis() as r:
        u, admin = server(r.port, ["use-auth-secret", "static-auth-secret = %s" % secret,
                                   "usage-interval = 1"])
        peer = Peer()
        try:
            with u:
                tagged, pw = rest(secret, "dave:acme-42")
                plain, pw2 = rest(secret, "erin")
                c, rel = open_alloc(u, tagged, pw, "udp", peer)
                c2, rel2 = open_alloc(u, plain, pw2, "udp", peer)
                relay(c, peer, rel, [123], [45])
                ids = {a["username"]: a["id"] for a in
                       api(admin, "GET", "/api/v1/allocations")[1]["allocations"]}
                wait_for(lambda: any(e["event"] == "usage" and e["alloc"] == ids[tagged]
                                     for _, e in entries(r)), 10, "a periodic record")
                check(c.refresh(600)[0] == 0 and c.refresh(0)[0] == 0, "Refresh, Refresh 0")
                check(c2.refresh(0)[0] == 0, "Refresh 0")
                wait_for(lambda: sum(e["event"] == "deleted" for _, e in entries(r)) == 2, 10,
                         "deleted events")
                mine = [e for _, e in entries(r) if e["alloc"] == ids[tagged]]
                kinds = [e["event"] for e in mine]
                check({"created", "refreshed", "usage", "deleted"} <= set(kinds), "kinds %s" % kinds)
                check(all(e["tag"] == "acme-42" and e["user"] == tagged for e in mine),
                      "tag in every event: %s" % [(e["event"], e["tag"]) for e in mine])
                check(int(mine[-1]["to_peer_bytes"]) == 123 and int(mine[-1]["from_peer_bytes"]) == 45,
                      "totals %s" % mine[-1])
                other = [e for _, e in entries(r) if e["alloc"] == ids[plain]]
                check(other and all(e["tag"] == "" for e in other), "plain REST name has no tag")
                print("tagged events: %s" % kinds)
                c.close()
                c2.close()
        finally:
            peer.close()


def test_coturn_statsdb_layout():
    """redis-statsdb: coturn's status keys (SET ... EX lifetime) and PUBLISH channels, as a
    consumer written for coturn subscribes to them."""
    with Redis() as r:
        u, admin = server(r.port, ['redis-statsdb = "ip=127.0.0.1 port=%d dbname=0"' % r.port,
                                   "usage-interval = 1", "user = frank:frank-pass"])
        sub = Resp(r.port)
        peer = Peer()
        try:
            check(sub.cmd("PSUBSCRIBE", "turn/realm/*/user/*/allocation/*") ==
                  ["psubscribe", "turn/realm/*/user/*/allocation/*", 1], "PSUBSCRIBE")
            msgs = []

            def until(pred, what, timeout=10, whole=None):
                deadline = time.monotonic() + timeout
                while not (whole(msgs) if whole else any(pred(ch, data) for ch, data in msgs)):
                    left = deadline - time.monotonic()
                    check(left > 0, "no %s; got %s" % (what, msgs))
                    sub.sock.settimeout(left)
                    try:
                        m = sub._reply()
                    except socket.timeout:
                        continue
                    check(m[0] == "pmessage", "message %r" % (m,))
                    msgs.append((m[2], m[3]))

            with u:
                c, rel = open_alloc(u, "frank", "frank-pass", "udp", peer)
                aid = int(view_by_relay(admin, "frank")[rel]["id"], 16)
                base = "turn/realm/%s/user/frank/allocation/%018d/" % (REALM, aid)
                until(lambda ch, d: ch == base + "status" and d == "new lifetime=600", "new status")
                probe = Resp(r.port)
                try:
                    check(probe.cmd("GET", base + "status") == "new lifetime=600", "status key")
                    ttl = probe.cmd("TTL", base + "status")
                    check(0 < ttl <= 600, "status TTL %s" % ttl)
                    tb, fb = relay(c, peer, rel, [100, 23], [7, 8, 9])
                    peer.drain(2)
                    def traffic_sum(ms):
                        # Deltas since the previous record: a sweep between the two directions
                        # may split them over two records.
                        t = [0, 0, 0, 0]
                        for ch, d in ms:
                            if ch == base + "traffic":
                                vals = [int(kv.split("=")[1]) for kv in d.split(", ")]
                                t = [a + b for a, b in zip(t, vals)]
                        return t
                    until(None, "traffic records summing to what was relayed",
                          whole=lambda ms: traffic_sum(ms) == [2, 123, 3, 24])
                    check(c.refresh(300)[0] == 0, "Refresh")
                    until(lambda ch, d: ch == base + "status" and d == "refreshed lifetime=300",
                          "refreshed status")
                    check(probe.cmd("GET", base + "status") == "refreshed lifetime=300", "refreshed key")
                    check(c.refresh(0)[0] == 0, "Refresh 0")
                    until(lambda ch, d: ch == base + "status" and d == "deleted", "deleted status")
                    until(lambda ch, d: ch == base + "total_traffic", "total_traffic")
                    total = [d for ch, d in msgs if ch == base + "total_traffic"][0]
                    traffic = [d for ch, d in msgs if ch == base + "traffic"]
                    check(len(traffic) <= 2 and all(not d.startswith("rcvp=0, rcvb=0, sentp=0,")
                                                    for d in traffic),
                          "traffic records (coturn publishes none for a quiet period): %s" % traffic)
                    check(total == "rcvp=2, rcvb=123, sentp=3, sentb=24", "total_traffic %r" % total)
                    check(probe.cmd("EXISTS", base + "status") == 0, "status key deleted")
                finally:
                    probe.close()
                print("statsdb messages: %s" % [(ch[len(base):], d) for ch, d in msgs])
                c.close()
        finally:
            sub.close()
            peer.close()


def test_rfc6062_tcp_relay_counted():
    """RFC 6062: what a TCP peer connection carries counts in the allocation's counters (bytes
    exactly; a packet is one read)."""
    from test_tcp_relay import _pipe_both_ways
    from uturn import connect_peer, connection_bind, tcp_allocate, tcp_peer_listener
    with Redis() as r:
        u, admin = server(r.port, ["user = alice:alice-pass", "usage-interval = 0"])
        with u:
            c, relay_addr = tcp_allocate(u)
            srv = tcp_peer_listener()
            code, cid = connect_peer(c, srv.getsockname()[1])
            check(code == 0, "Connect: %s" % code)
            peer, _ = srv.accept()
            d = connection_bind(u, c, cid)
            _pipe_both_ways(d.sock, peer, 200000)
            v = view_by_relay(admin, "alice")[tuple(relay_addr)]
            check(v["to_peer_bytes"] == 200000 and v["from_peer_bytes"] == 200000,
                  "RFC 6062 counters %s" % {f: v[f] for f in FIELDS})
            check(v["to_peer_packets"] >= 1 and v["from_peer_packets"] >= 1, "reads counted")
            print("RFC 6062 counters: %s" % {f: v[f] for f in FIELDS})
            for s_ in (d.sock, peer, srv):
                s_.close()
            c.close()


if __name__ == "__main__":
    run()
