"""Hardening at the edge (issue 11, defects 8 and 10): the credential cache and Redis lookups
against unauthenticated floods, and the admin API against slow and greedy connections.

- A flood of 6,400 random usernames (Allocate with USERNAME, REALM, a valid NONCE and a
  MESSAGE-INTEGRITY from a wrong key, over UDP from 8 source IPs) does not evict a Redis user
  that authenticated before it: with redis-server then killed, that user still allocates (the
  README's hour of service from the cache) instead of getting 500.
- While Redis is paused, one source IP sending 200 unknown names starts at most
  redis-pending-per-ip (32) Redis lookups; the rest are dropped and counted; a Redis user from
  another IP meanwhile waits for Redis and authenticates when it resumes.
- An admin connection that sends one header byte every 2 s is closed by the request deadline
  (admin-request-timeout, 10 s), although every byte restarts libmicrohttpd's idle timeout.
- One source holding 200 admin connections keeps at most admin-connections-per-ip (128); another
  source (127.0.0.2) still gets /healthz and an authenticated answer.
- The deadline covers the request, not the answer: an answer that takes longer to make than the
  deadline (Redis paused under the handler) arrives whole (without the exemption it is cut at the
  deadline), and a half-megabyte user listing read slowly by a client with a 4 KiB receive buffer
  arrives whole.
"""
import http.client
import os
import random
import re
import socket
import string
import struct
import time

from test_turn_redis import Redis, add_user
from uturn import (A_NONCE, A_REALM, A_REQ_TRANSPORT, A_USERNAME, M_ALLOCATE, TurnClient, Uturnd,
                   attr, check, free_port, get_attr, message, mtype, parse, run, tid, wait_closed,
                   wait_for, with_integrity)

REALM = "edge.test"
TOKEN = "edge-admin-token-0123456789abcdef"
MIN_PORT, MAX_PORT = 44000, 44999
SOURCES = ["127.0.0.%d" % i for i in range(11, 19)]  # the flood's source IPs


def conf(redis_port=None, admin_port=None, extra=()):
    c = ["realm = %s" % REALM, "allow-loopback-peers", "min-port = %d" % MIN_PORT,
         "max-port = %d" % MAX_PORT]
    if redis_port:
        c.append('redis-userdb = "ip=127.0.0.1 port=%d dbname=0"' % redis_port)
    if admin_port:
        c += ["admin-listen = 127.0.0.1:%d" % admin_port, "admin-token = %s" % TOKEN]
    return c + list(extra)


def http_get(admin, path, token=TOKEN, source="127.0.0.1", timeout=10):
    conn = http.client.HTTPConnection(admin[0], admin[1], timeout=timeout,
                                      source_address=(source, 0))
    try:
        conn.request("GET", path, headers={"Authorization": "Bearer " + token} if token else {})
        resp = conn.getresponse()
        return resp.status, resp.read().decode("utf-8", "replace")
    finally:
        conn.close()


def metric(admin, name, labels=""):
    """One sample of /metrics (0 when absent)."""
    st, text = http_get(admin, "/metrics")
    check(st == 200, "/metrics: %d" % st)
    m = re.search(r"^%s%s (\d+)" % (re.escape(name), re.escape(labels)), text, re.M)
    return int(m.group(1)) if m else 0


def queries(admin):
    return metric(admin, "uturn_redis_queries_total")


def unknown_answers(admin):
    return metric(admin, "uturn_auth_total", '{result="unknown_user"}')


def busy_drops(admin):
    return metric(admin, "uturn_dropped_total", '{reason="auth_busy"}')


class Flooder:
    """Allocate requests of random users from one UDP socket on `ip`, with a valid nonce (from one
    401 challenge) so each one reaches the credential lookup."""

    def __init__(self, u, ip):
        self.u = u
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((ip, 0))
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 16)
        txid = tid()
        self.sock.sendto(message(mtype(M_ALLOCATE, 0), txid, attr(A_REQ_TRANSPORT, b"\x11\0\0\0")),
                         (u.host, u.port))
        self.sock.settimeout(3)
        while True:
            _, rtx, attrs = parse(self.sock.recvfrom(2048)[0])
            if rtx == txid:
                break
        self.nonce = get_attr(attrs, A_NONCE)
        check(self.nonce, "no NONCE in the challenge to %s" % ip)
        self.sock.setblocking(False)

    def send(self, name):
        txid = tid()
        body = (attr(A_REQ_TRANSPORT, b"\x11\0\0\0") + attr(A_USERNAME, name.encode())
                + attr(A_REALM, REALM.encode()) + attr(A_NONCE, self.nonce))
        data = with_integrity(mtype(M_ALLOCATE, 0), txid, body, os.urandom(16))
        try:
            self.sock.sendto(data, (self.u.host, self.u.port))
        except BlockingIOError:
            pass
        self.drain()

    def drain(self):
        """Throw the 401s away (the socket must not fill up)."""
        try:
            while True:
                self.sock.recvfrom(2048)
        except (BlockingIOError, InterruptedError):
            pass

    def close(self):
        self.sock.close()


def random_name(rng):
    return "x" + "".join(rng.choice(string.ascii_lowercase + string.digits) for _ in range(15))


def client_from(u, user, password, ip):
    """A TurnClient whose UDP socket is bound to `ip`."""
    c = TurnClient(u, user, password)
    c.sock.close()
    c.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    c.sock.bind((ip, 0))
    return c


def allocate(u, user, password, ip="127.0.0.1"):
    c = client_from(u, user, password, ip)
    try:
        return c.allocate()[0]
    finally:
        c.close()


# ---- defect 8: the credential cache and Redis lookups ----

def test_cache_survives_unknown_flood():
    rng = random.Random(8)
    admin_port = free_port()
    admin = ("127.0.0.1", admin_port)
    with Redis() as r:
        add_user(r, "alice", "alice-pass", REALM)
        with Uturnd(conf=conf(r.port, admin_port), threads=1) as u:
            check(allocate(u, "alice", "alice-pass") == 0, "alice cannot allocate")
            flooders = [Flooder(u, ip) for ip in SOURCES]
            try:
                t0 = time.monotonic()
                q0, a0 = queries(admin), unknown_answers(admin)
                sent = 0
                # Batches of 8 x 24 names, each waited for (all answered "unknown"), so none is
                # dropped as busy: every name lands in the cache.
                while sent < 6400:
                    for f in flooders:
                        for _ in range(24):
                            f.send(random_name(rng))
                            sent += 1
                    wait_for(lambda: unknown_answers(admin) - a0 >= sent, 10,
                             "answers to %d names" % sent, interval=0.005)
                for f in flooders:
                    f.drain()
                took = time.monotonic() - t0
                asked = queries(admin) - q0
                print("%d unknown names from %d IPs, %d Redis lookups, in %.1fs"
                      % (sent, len(flooders), asked, took))
                check(asked >= 6400, "only %d of the names reached Redis" % asked)
            finally:
                for f in flooders:
                    f.close()
            r.kill()
            # The hour of service the README promises a known user while Redis is away.
            code = allocate(u, "alice", "alice-pass")
            check(code == 0, "alice after the flood, with Redis down: %d (500: she was evicted)"
                  % code)
            check(allocate(u, "bob", "bob-pass") == 500, "an unknown user with Redis down: not 500")


def test_pending_lookups_per_source():
    rng = random.Random(9)
    admin_port = free_port()
    admin = ("127.0.0.1", admin_port)
    per_ip = 32  # the default of redis-pending-per-ip
    with Redis() as r:
        add_user(r, "carol", "carol-pass", REALM)
        with Uturnd(conf=conf(r.port, admin_port), threads=1) as u:
            f = Flooder(u, "127.0.0.21")
            try:
                q0, b0 = queries(admin), busy_drops(admin)
                # Redis answers nothing for 1.8 s (below the 2 s after which uturnd gives up on
                # the connection): every lookup started now stays pending.
                r.cli("CLIENT", "PAUSE", "1800", "ALL")
                t0 = time.monotonic()
                for _ in range(200):
                    f.send(random_name(rng))
                # Each name either started a lookup (pending: Redis is paused) or was dropped.
                wait_for(lambda: queries(admin) - q0 + busy_drops(admin) - b0 >= 200, 1.5,
                         "200 names looked up or dropped", interval=0.01)
                asked, dropped = queries(admin) - q0, busy_drops(admin) - b0
                print("200 unknown names from one IP while Redis is paused: %d Redis lookups, "
                      "%d dropped (%.2fs)" % (asked, dropped, time.monotonic() - t0))
                check(asked <= per_ip, "one IP started %d Redis lookups (cap %d)" % (asked, per_ip))
                check(dropped >= 200 - per_ip, "dropped %d" % dropped)
                pending = metric(admin, "uturn_redis_pending_lookups")
                refused = metric(admin, "uturn_redis_lookups_refused_total",
                                 '{reason="per_ip_limit"}')
                check(0 < pending <= per_ip, "/metrics: %d lookups pending (cap %d)"
                      % (pending, per_ip))
                check(refused >= 200 - per_ip, "/metrics: %d refused by the per-IP bound" % refused)
                # Another IP's user is not refused: its lookup waits for Redis and succeeds.
                c = client_from(u, "carol", "carol-pass", "127.0.0.22")
                try:
                    code = c.allocate()[0]
                finally:
                    c.close()
                check(code == 0, "carol from another IP: %d" % code)
                check(time.monotonic() - t0 < 3.5, "carol waited %.1fs" % (time.monotonic() - t0))
            finally:
                f.close()


# ---- defect 10: the admin API ----

def test_admin_slowloris_deadline():
    admin_port = free_port()
    with Uturnd(conf=conf(admin_port=admin_port), threads=1) as u:
        s = socket.create_connection(("127.0.0.1", admin_port), timeout=5)
        t0 = time.monotonic()
        closed = False
        try:
            s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ")
            # One byte every 2 s: each restarts libmicrohttpd's idle timeout (10 s).
            while time.monotonic() - t0 < 18:
                try:
                    s.sendall(b"a")
                except (BrokenPipeError, ConnectionResetError):
                    closed = True
                    break
                if wait_closed(s, 2.0):
                    closed = True
                    break
            took = time.monotonic() - t0
        finally:
            s.close()
        check(closed, "a connection sending a byte every 2 s is open after %.1fs" % took)
        check(9 <= took <= 13, "closed after %.1fs, expected the 10 s deadline" % took)
        print("slowloris connection closed after %.1fs" % took)
        check(http_get(("127.0.0.1", admin_port), "/healthz", token=None)[0] == 200, "healthz")
        check(u.alive(), "uturnd died")


def test_admin_per_ip_limit():
    admin_port = free_port()
    admin = ("127.0.0.1", admin_port)
    per_ip = 128  # the default of admin-connections-per-ip
    with Uturnd(conf=conf(admin_port=admin_port), threads=1) as u:
        conns = []
        try:
            for _ in range(200):
                s = socket.create_connection(admin, timeout=5)
                conns.append(s)
                try:
                    s.sendall(b"GET /api/v1/stats HTTP/1.1\r\nHost: x\r\n")
                except OSError:
                    pass  # refused past the cap and already reset: still_open counts it closed

            def still_open():
                n = 0
                for s in conns:
                    s.setblocking(False)
                    try:
                        n += s.recv(1) != b""
                    except BlockingIOError:
                        n += 1
                    except OSError:
                        pass
                return n

            try:
                wait_for(lambda: still_open() <= per_ip, 5, "", interval=0.1)
            except AssertionError:
                pass
            kept = still_open()
            check(kept <= per_ip, "one IP keeps %d admin connections (cap %d)" % (kept, per_ip))
            print("one IP opened 200 admin connections, %d kept" % kept)
            # Another source is served meanwhile.
            st, _ = http_get(admin, "/healthz", token=None, source="127.0.0.2")
            check(st == 200, "/healthz from 127.0.0.2: %d" % st)
            st, body = http_get(admin, "/api/v1/stats", source="127.0.0.2")
            check(st == 200, "authenticated GET from 127.0.0.2: %d %s" % (st, body[:200]))
            # The same source gets in again once its connections are gone.
            for s in conns:
                s.close()
            conns = []
            def healthz_again():
                try:
                    return http_get(admin, "/healthz", token=None)[0] == 200
                except OSError:
                    return False  # a reset while the closed connections drain: ask again
            wait_for(healthz_again, 5, "/healthz from 127.0.0.1 again")
        finally:
            for s in conns:
                s.close()
        check(u.alive(), "uturnd died")


def test_admin_long_answer_not_cut():
    """A client with a small receive buffer that reads a long answer slowly, for well over the
    deadline (1 s here), gets all of it. (The kernel may take the whole answer at once: then this
    checks the end-to-end result; test_admin_slow_answer_not_cut pins the exemption itself.)"""
    admin_port = free_port()
    with Redis() as r:
        # 1,000 Redis users with 400-byte names: one listing answer of about half a megabyte.
        args = []
        for i in range(1000):
            name = "u%04d" % i + "n" * 395
            args += ["turn/realm/%s/user/%s/key" % (REALM, name), "00" * 16]
        r.cli("MSET", *args)
        with Uturnd(conf=conf(r.port, admin_port, extra=["admin-request-timeout = 1"]),
                    threads=1) as u:
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            s.settimeout(5)
            s.connect(("127.0.0.1", admin_port))
            t0 = time.monotonic()
            try:
                s.sendall(("GET /api/v1/realms/%s/users?limit=1000 HTTP/1.1\r\nHost: x\r\n"
                           "Authorization: Bearer %s\r\nConnection: close\r\n\r\n"
                           % (REALM, TOKEN)).encode())
                data = b""
                # The slow reader is the scenario, not a wait for a condition: 8 KiB every
                # 50 ms, bounded in time.
                while time.monotonic() - t0 < 30:
                    chunk = s.recv(8192)
                    if not chunk:
                        break
                    data += chunk
                    time.sleep(0.05)
            finally:
                s.close()
            took = time.monotonic() - t0
            head, _, body = data.partition(b"\r\n\r\n")
            m = re.search(rb"(?im)^content-length: *(\d+)", head)
            check(head.startswith(b"HTTP/1.1 200") and m, "answer: %r" % head[:300])
            want = int(m.group(1))
            print("a %d-byte answer read slowly over %.1fs (deadline 1 s): %d bytes"
                  % (want, took, len(body)))
            check(took > 2, "the answer was read in %.1fs: not slow enough to test" % took)
            check(len(body) == want and body.rstrip().endswith(b"}"),
                  "the answer was cut: %d of %d bytes" % (len(body), want))
            # Also when the kernel holds the rest of the answer: the deadline did not fire.
            check("closed an admin connection" not in u.log(),
                  "the deadline shut down a connection that was being answered")
            check(u.alive(), "uturnd died")


def test_admin_slow_answer_not_cut():
    """An answer that takes longer to make than the deadline (Redis paused while the handler
    lists users) is not cut: the request was whole, the rest is the server's time."""
    admin_port = free_port()
    with Redis() as r:
        add_user(r, "dave", "dave-pass", REALM)
        with Uturnd(conf=conf(r.port, admin_port, extra=["admin-request-timeout = 1"]),
                    threads=1) as u:
            s = socket.create_connection(("127.0.0.1", admin_port), timeout=5)
            t0 = time.monotonic()
            try:
                # The client thinks for half the deadline, then asks; Redis then answers the
                # handler 0.9 s late (below the admin's 1 s Redis timeout), so the answer is
                # ready about 1.4 s after accept, past the 1 s deadline.
                time.sleep(0.5)
                r.cli("CLIENT", "PAUSE", "900", "ALL")
                s.sendall(("GET /api/v1/realms/%s/users HTTP/1.1\r\nHost: x\r\n"
                           "Authorization: Bearer %s\r\nConnection: close\r\n\r\n"
                           % (REALM, TOKEN)).encode())
                data = b""
                while time.monotonic() - t0 < 10:
                    chunk = s.recv(65536)
                    if not chunk:
                        break
                    data += chunk
            finally:
                s.close()
            took = time.monotonic() - t0
            print("answer after %.2fs (deadline 1 s): %r" % (took, data[:40]))
            check(data.startswith(b"HTTP/1.1 200") and b'"dave"' in data,
                  "the slow answer was cut after %.2fs: %r" % (took, data[:300]))
            check(took > 1.2, "the answer came after %.2fs: too early to test" % took)
            check(u.alive(), "uturnd died")


def main():
    run()


if __name__ == "__main__":
    main()
