"""DTLS sessions are bounded per source IP and per worker (max-dtls-sessions-per-ip,
max-dtls-sessions), refused before any SSL object exists, and sessions that never finish their
handshake or never allocate go away (tcp-frame-timeout, tcp-idle-timeout).

The DTLS client is our own: pyOpenSSL's DTLS_METHOD over memory BIOs and a UDP socket (OpenSSL
does the cookie exchange), so one process can hold hundreds of sessions from many ports."""
import os
import selectors
import socket
import struct
import tempfile
import time
import urllib.request

from OpenSSL import SSL

from uturn import (A_XOR_MAPPED, Uturnd, check, free_port, get_attr, make_cert, parse,
                   run, tid, wait_for, xor_address)

TOKEN = "dtls-edge-token-0123456789"
USER, PASS = "dtls-user", "dtls-pass"


class DtlsClient:
    """One DTLS client: a UDP socket from `local_ip` and an OpenSSL connection on memory BIOs."""

    def __init__(self, server, local_ip="127.0.0.1"):
        self.server = server
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((local_ip, 0))
        self.sock.setblocking(False)
        ctx = SSL.Context(SSL.DTLS_METHOD)
        ctx.set_verify(SSL.VERIFY_NONE, lambda *a: True)  # a throw-away self-signed certificate
        self.conn = SSL.Connection(ctx, None)
        self.conn.set_connect_state()
        self.done = False

    def flush(self):
        while True:
            try:
                data = self.conn.bio_read(65536)
            except SSL.WantReadError:
                return
            if not data:
                return
            self.sock.sendto(data, self.server)

    def step(self, data=None):
        """Feed one datagram (or none: start) and go on with the handshake; True once it is done."""
        if data is not None:
            self.conn.bio_write(data)
        try:
            self.conn.do_handshake()
            self.done = True
        except SSL.WantReadError:
            pass
        self.flush()
        return self.done

    def send(self, data):
        self.conn.send(data)
        self.flush()

    def recv(self, timeout=3.0):
        deadline = time.monotonic() + timeout
        while True:
            try:
                return self.conn.recv(65536)
            except SSL.WantReadError:
                pass
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            self.sock.settimeout(left)
            try:
                self.conn.bio_write(self.sock.recv(65536))
            except socket.timeout:
                return None
            finally:
                self.sock.setblocking(False)

    def close(self):
        try:
            self.conn.shutdown()  # close_notify
            self.flush()
        except SSL.Error:
            pass
        self.sock.close()


def handshakes(server, n, local_ip="127.0.0.1", timeout=2.0, stop_after_cookie=False):
    """Start n clients from local_ip at once and drive them until each is done or the deadline.
    With stop_after_cookie each stops once it has sent its ClientHello with the cookie (the point
    where the server makes a session). Returns the clients (c.done says who finished)."""
    clients = [DtlsClient(server, local_ip) for _ in range(n)]
    sel = selectors.DefaultSelector()
    for c in clients:
        c.step()
        sel.register(c.sock, selectors.EVENT_READ, c)
    pending = n
    deadline = time.monotonic() + timeout
    while pending and time.monotonic() < deadline:
        for key, _ in sel.select(0.1):
            c = key.data
            try:
                data = c.sock.recv(65536)
            except BlockingIOError:
                continue
            if stop_after_cookie:
                c.step(data)  # the HelloVerifyRequest: answered with the cookie, then silence
                sel.unregister(c.sock)
                pending -= 1
            elif c.step(data):
                sel.unregister(c.sock)
                pending -= 1
    sel.close()
    return clients


def _server(extra=()):
    d = tempfile.mkdtemp()
    cert, key = make_cert(os.path.join(d, "cert"), "uturn-test")
    admin = free_port()
    conf = ["user = %s:%s" % (USER, PASS), "realm = uturn.test", "cert = " + cert, "pkey = " + key,
            "admin-listen = 127.0.0.1:%d" % admin, "admin-token = " + TOKEN] + list(extra)
    u = Uturnd(conf=conf, threads=1)
    u.admin = admin
    return u


def _metric(u, name, label=""):
    req = urllib.request.Request("http://127.0.0.1:%d/metrics" % u.admin,
                                 headers={"Authorization": "Bearer " + TOKEN})
    for line in urllib.request.urlopen(req, timeout=5).read().decode().splitlines():
        if line.startswith(name + ("{" if label else " ")) and label in line:
            return float(line.split()[-1])
    return 0.0


def _binding_over_dtls(u, local_ip):
    c = handshakes((u.host, u.tls_port), 1, local_ip)[0]
    check(c.done, "DTLS handshake from %s failed" % local_ip)
    txid = tid()
    c.send(struct.pack("!HHI", 0x0001, 0, 0x2112A442) + txid)
    resp = c.recv()
    check(resp is not None, "no Binding answer over DTLS from %s" % local_ip)
    mt, rtid, attrs = parse(resp)
    check(mt == 0x0101 and rtid == txid, "Binding over DTLS from %s: type %#x" % (local_ip, mt))
    mapped = xor_address(get_attr(attrs, A_XOR_MAPPED), txid)
    check(mapped == c.sock.getsockname(), "XOR-MAPPED-ADDRESS %r, want %r" % (mapped, c.sock.getsockname()))
    return c


def test_sessions_per_ip_capped_at_default():
    """500 handshakes from the ports of one IP: the default cap (64 per worker) holds, nothing is
    created beyond it, another IP still gets a session and a Binding answer, RSS stays bounded."""
    with _server() as u:
        server = (u.host, u.tls_port)
        first = _binding_over_dtls(u, "127.0.0.1")  # warm up: the first session's one-time costs
        rss0 = u.rss_kib()
        t0 = time.monotonic()
        flood = handshakes(server, 500, "127.0.0.1")
        done = sum(c.done for c in flood)
        held = _metric(u, "uturn_dtls_sessions")
        refused = _metric(u, "uturn_dtls_sessions_refused_total", 'reason="per_ip_limit"')
        other = _binding_over_dtls(u, "127.0.0.2")
        rss1 = u.rss_kib()
        print("500 DTLS handshakes from 127.0.0.1 in %.1fs: %d completed, %d sessions held "
              "(1 from before, 1 from 127.0.0.2 after), %d ClientHellos refused; RSS +%d KiB"
              % (time.monotonic() - t0, done, held, refused, rss1 - rss0))
        check(done == 63, "%d of 500 handshakes from one IP completed; the default cap is 64 with one "
              "session already held" % done)
        check(held == 64, "%d sessions held, want 64" % held)
        check(refused > 0, "no refused ClientHello counted in /metrics")
        # A session costs ~48 KiB in a release build, several times that under ASan (with its
        # quarantine of freed handshake memory): 500 sessions would be 100+ MiB here.
        check(rss1 - rss0 < 64 * 1024, "RSS grew %d KiB" % (rss1 - rss0))
        for c in flood + [first, other]:
            c.close()
        wait_for(lambda: _metric(u, "uturn_dtls_sessions") == 0, 5, "sessions closed by close_notify")


def test_worker_cap_and_other_ips():
    """max-dtls-sessions bounds a worker's sessions from all IPs; a small per-IP cap leaves room for
    other IPs; once sessions go, new ones get in."""
    with _server(["max-dtls-sessions-per-ip = 10", "max-dtls-sessions = 25"]) as u:
        server = (u.host, u.tls_port)
        a = handshakes(server, 40, "127.0.0.3")
        b = handshakes(server, 40, "127.0.0.4")
        check(sum(c.done for c in a) == 10 and sum(c.done for c in b) == 10,
              "per-IP cap 10: %d and %d sessions" % (sum(c.done for c in a), sum(c.done for c in b)))
        other = _binding_over_dtls(u, "127.0.0.2")  # 21 held: a third IP still gets in
        c = handshakes(server, 40, "127.0.0.6")
        d = handshakes(server, 40, "127.0.0.7")
        held = _metric(u, "uturn_dtls_sessions")
        per_ip = _metric(u, "uturn_dtls_sessions_refused_total", 'reason="per_ip_limit"')
        total = _metric(u, "uturn_dtls_sessions_refused_total", 'reason="worker_limit"')
        print("caps 10 per IP, 25 per worker: %d sessions held; refused %d by the per-IP cap, %d by "
              "the worker cap" % (held, per_ip, total))
        check(held == 25 and sum(x.done for x in c + d) == 4, "%d sessions held, want 25" % held)
        check(per_ip > 0 and total > 0, "refusals not counted: %d per IP, %d worker" % (per_ip, total))
        for x in a + b:
            x.close()
        wait_for(lambda: _metric(u, "uturn_dtls_sessions") <= 5, 5, "sessions closed")
        _binding_over_dtls(u, "127.0.0.8").close()
        other.close()


def test_unfinished_and_idle_sessions_expire():
    """A session whose handshake stops after the cookie goes after tcp-frame-timeout; an established
    one that never allocates goes after tcp-idle-timeout, and with it its place under the cap."""
    with _server(["tcp-frame-timeout = 1", "tcp-idle-timeout = 5", "max-dtls-sessions-per-ip = 8"]) as u:
        server = (u.host, u.tls_port)
        stalled = handshakes(server, 8, "127.0.0.1", timeout=3, stop_after_cookie=True)
        wait_for(lambda: _metric(u, "uturn_dtls_sessions") == 8, 3, "8 half-open sessions")
        t0 = time.monotonic()
        wait_for(lambda: _metric(u, "uturn_dtls_sessions") == 0, 4, "half-open sessions to expire")
        print("8 half-open DTLS sessions gone after %.1fs (tcp-frame-timeout = 1)" % (time.monotonic() - t0))
        idle = handshakes(server, 8, "127.0.0.1")
        check(all(c.done for c in idle), "the cap was not freed by the handshake timeout")
        t0 = time.monotonic()
        wait_for(lambda: _metric(u, "uturn_dtls_sessions") == 0, 9, "idle sessions to expire")
        print("8 idle DTLS sessions without an allocation gone after %.1fs (tcp-idle-timeout = 5)"
              % (time.monotonic() - t0))
        for c in stalled + idle:
            c.sock.close()


if __name__ == "__main__":
    run()
