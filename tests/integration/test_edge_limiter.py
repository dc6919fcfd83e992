"""The limit on unauthenticated UDP answers (RFC 8656 §21.2) cannot be turned against a victim.

A spoofer that sends requests with a victim's source IP used to drain that IP's answer budget, so
the victim (or every client behind the same NAT) never got its 401. Now each request pays for its
own answer up to K = 4 times its bytes, only the excess is metered per source IP, and every answer
counts against a per-worker budget (max-unauth-answer-bps)."""
import socket
import struct
import threading
import time

from uturn import (A_REQ_TRANSPORT, TurnClient, Uturnd, attr, check, error_code, free_port, parse,
                   run, tid, uclient, start_peer)

K = 4  # DISPATCH_UNAUTH_RATIO in server/turn/dispatch.h
USER, PASS = "victim", "victim-pass"
BASE = ["user = %s:%s" % (USER, PASS), "realm = uturn.test", "allow-loopback-peers",
        "min-port = 47000", "max-port = 47999"]
SHARED_IP = "127.0.0.5"  # the spoofer and the victim (one NAT, or a forged source)


def _allocate(txid, header_only=False):
    """A browser's first Allocate (libwebrtc: REQUESTED-TRANSPORT only, 28 bytes), or a bare 20-byte
    header that costs the most answer per request byte."""
    body = b"" if header_only else attr(A_REQ_TRANSPORT, b"\x11\0\0\0")
    return struct.pack("!HHI", 0x0003, len(body), 0x2112A442) + txid + body


def _binding(txid):
    return struct.pack("!HHI", 0x0001, 0, 0x2112A442) + txid


def _metric(u, port, name, label):
    import urllib.request
    req = urllib.request.Request("http://127.0.0.1:%d/metrics" % port,
                                 headers={"Authorization": "Bearer limiter-token-0123456789"})
    text = urllib.request.urlopen(req, timeout=5).read().decode()
    for line in text.splitlines():
        if line.startswith(name) and label in line:
            return float(line.split()[-1])
    return 0.0


def _drain(sock):
    n = b = 0
    while True:
        try:
            data = sock.recv(4096)
        except (BlockingIOError, socket.timeout):
            return n, b
        n += 1
        b += len(data)


def test_spoofer_cannot_silence_victim():
    admin = free_port()
    conf = BASE + ["admin-listen = 127.0.0.1:%d" % admin, "admin-token = limiter-token-0123456789"]
    with Uturnd(conf=conf, threads=1) as u:
        spoofer = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        spoofer.bind((SHARED_IP, 0))
        spoofer.setblocking(False)
        victim = TurnClient(u, USER, PASS)
        victim.sock.close()
        victim.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        victim.sock.bind((SHARED_IP, 0))
        dest = (u.host, u.port)
        sent = sent_bytes = got = got_bytes = 0
        victim_401 = None
        victim.sock.setblocking(False)
        vtxid = tid()
        tries = [1.0, 1.5, 2.5]  # a real client's first try and retransmissions (RFC 8489 RTO)
        t0 = time.monotonic()
        # 3 s at up to 2,400 requests/s (~50 KB/s): Allocates (the cheapest way to drain a per-IP
        # budget: bare 20-byte headers, whose 401 is the biggest answer per request byte, and
        # browser-like ones) and Bindings. Dense enough that an answer budget per IP is empty
        # within milliseconds of each refill.
        while time.monotonic() - t0 < 3.0 and sent < 8000:
            for i in range(24):
                txid = tid()
                pkt = _allocate(txid, header_only=(i % 6 != 0)) if i < 20 else _binding(txid)
                try:
                    spoofer.sendto(pkt, dest)
                    sent += 1
                    sent_bytes += len(pkt)
                except BlockingIOError:
                    pass
            n, b = _drain(spoofer)
            got, got_bytes = got + n, got_bytes + b
            # The victim's own first Allocate, sent once the flood has run for a second.
            if tries and time.monotonic() - t0 >= tries[0]:
                tries.pop(0)
                victim.sock.sendto(_allocate(vtxid), dest)
            try:
                data = victim.sock.recv(4096)
                mt, rtid, attrs = parse(data)
                if victim_401 is None and rtid == vtxid and error_code(attrs) == 401:
                    victim_401 = (round(time.monotonic() - t0, 2), len(data))
            except BlockingIOError:
                pass
            time.sleep(0.01)
        elapsed = time.monotonic() - t0
        time.sleep(0.2)
        n, b = _drain(spoofer)
        got, got_bytes = got + n, got_bytes + b
        dropped = _metric(u, admin, "uturn_dropped_total", 'reason="amplification"')
        print("spoofer: %d requests (%d bytes, %.0f B/s) from %s in %.1fs; answered %d (%d bytes), "
              "ratio %.2f; %d metered drops; victim's 401 (%s)" %
              (sent, sent_bytes, sent_bytes / elapsed, SHARED_IP, elapsed, got, got_bytes,
               got_bytes / sent_bytes, dropped, victim_401))
        check(sent_bytes / elapsed > 1000, "the flood was too slow to prove anything")
        check(victim_401 is not None, "the victim sharing %s with the spoofer got no 401" % SHARED_IP)
        check(victim_401[1] <= K * 28, "the victim's 401 is %d bytes for a 28-byte Allocate, more than "
              "K = %d times its request" % (victim_401[1], K))
        check(got_bytes <= K * sent_bytes, "answered %d bytes to %d request bytes: more than %dx"
              % (got_bytes, sent_bytes, K))
        check(dropped > 0, "the per-source meter on answers beyond %dx never bit" % K)
        # ... and completes an authenticated Allocate while the meter for its IP is still empty.
        for _ in range(50):
            spoofer.sendto(_allocate(tid(), header_only=True), dest)
        victim.sock.setblocking(True)
        code, _ = victim.allocate()
        check(code == 0, "the victim's authenticated Allocate failed: %d" % code)


def test_real_client_behind_a_flooded_ip():
    """turnutils_uclient from the flooded IP (-L) still allocates and relays."""
    peer, pport = start_peer(SHARED_IP)
    try:
        with Uturnd(conf=BASE, threads=1) as u:
            spoofer = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            spoofer.bind((SHARED_IP, 0))
            done = threading.Event()

            def flood():  # ~400 bare Allocates/s (8 KB/s) until uclient is done, at most 40 s
                end = time.monotonic() + 40
                while not done.is_set() and time.monotonic() < end:
                    for _ in range(4):
                        spoofer.sendto(_allocate(tid(), header_only=True), (u.host, u.port))
                    time.sleep(0.01)

            th = threading.Thread(target=flood)
            th.start()
            try:
                time.sleep(0.5)  # the flood has emptied the meter of SHARED_IP
                sent, recv, lost, text = uclient(u, ["-u", USER, "-w", PASS, "-L", SHARED_IP, "-e",
                                                     SHARED_IP, "-r", str(pport), "-n", "10", "-m",
                                                     "1"], timeout=40)
            finally:
                done.set()
                th.join()
            check(sent > 0 and recv == sent and lost == 0,
                  "turnutils_uclient from %s: sent %d received %d lost %d\n%s"
                  % (SHARED_IP, sent, recv, lost, text[-2000:]))
            print("turnutils_uclient from the flooded IP: sent %d received %d lost %d" % (sent, recv, lost))
    finally:
        peer.terminate()
        peer.wait(10)


def test_global_budget():
    """max-unauth-answer-bps bounds all unauthenticated answers of a worker, counted when it bites."""
    admin = free_port()
    budget = 4096
    conf = BASE + ["admin-listen = 127.0.0.1:%d" % admin, "admin-token = limiter-token-0123456789",
                   "max-unauth-answer-bps = %d" % budget]
    with Uturnd(conf=conf, threads=1) as u:
        socks = []
        for i in range(10, 30):
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.bind(("127.0.0.%d" % i, 0))
            s.setblocking(False)
            socks.append(s)
        t0 = time.monotonic()
        sent = got_bytes = 0
        while time.monotonic() - t0 < 2.0:
            for s in socks:
                s.sendto(_allocate(tid()), (u.host, u.port))
                sent += 1
            for s in socks:
                got_bytes += _drain(s)[1]
            time.sleep(0.005)
        elapsed = time.monotonic() - t0
        time.sleep(0.2)
        for s in socks:
            got_bytes += _drain(s)[1]
        bit = _metric(u, admin, "uturn_dropped_total", 'reason="unauth_budget"')
        print("budget %d B/s: %d Allocates from 20 IPs in %.1fs, %d answer bytes (bound %d), "
              "%d dropped by the budget" % (budget, sent, elapsed, got_bytes,
                                            budget * (elapsed + 1.5), bit))
        check(bit > 0, "the budget never bit")
        check(got_bytes <= budget * (elapsed + 1.5), "answered %d bytes in %.1fs with a budget of %d B/s"
              % (got_bytes, elapsed, budget))


if __name__ == "__main__":
    run()
