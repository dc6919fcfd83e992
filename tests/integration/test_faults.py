"""Faults and load: file descriptors capped with RLIMIT_NOFILE (clear errors, no crash, recovery),
SIGHUP reloads and a SIGUSR1 drain while traffic flows (no packet lost on live allocations), and a
flood of unauthenticated Allocates from many source addresses while a legitimate client keeps
relaying (the per-source limit shows in /metrics)."""
import resource
import signal
import socket
import struct
import threading
import time
import urllib.request

from uturn import (TurnClient, Uturnd, attr, binding_request, check, free_port, parse, read_frame,
                   run, start_peer, tid, uclient, wait_closed, wait_for)

BASE = ["user = alice:alice-pass", "realm = uturn.test", "allow-loopback-peers",
        "min-port = 49000", "max-port = 49999"]
TOKEN = "faults-test-token-0123456789"


def _cap_fds():
    resource.setrlimit(resource.RLIMIT_NOFILE, (64, 64))


class CappedUturnd(Uturnd):
    def _spawn(self, conf, args, threads):
        import os
        import subprocess
        import uturn
        base = {"listening-ip": self.host, "listening-port": str(self.port),
                "relay-threads": str(threads), "log-level": "info",
                "tls-listening-port": str(self.tls_port)}
        lines = ["%s = %s" % kv for kv in base.items()] + list(conf or [])
        with open(self.conf_path, "w") as f:
            f.write("\n".join(lines) + "\n")
        self.stderr = open(self.stderr_path, "wb")
        self.proc = subprocess.Popen([uturn.UTURND, "-c", self.conf_path], stdout=subprocess.DEVNULL,
                                     stderr=self.stderr, preexec_fn=_cap_fds, env=dict(os.environ))


def test_fd_cap():
    with CappedUturnd(conf=BASE, threads=1) as u:
        # Allocations until descriptors run out: then 508, never a crash.
        clients, codes = [], []
        for _ in range(80):
            c = TurnClient(u, "alice", "alice-pass")
            codes.append(c.allocate()[0])
            clients.append(c)
        check(codes.count(0) > 10 and 508 in codes and set(codes) <= {0, 508},
              "answers under the fd cap: %r" % sorted(set(codes)))
        # TCP connections past the cap: refused or closed, the daemon lives.
        conns = []
        for _ in range(40):
            try:
                conns.append(socket.create_connection((u.host, u.port), timeout=2))
            except OSError:
                pass
        check(u.alive(), "uturnd died at the fd cap")
        for c in clients:
            c.refresh(0)  # 0 for the allocated ones, 437 for the refused: both fine here
            c.close()
        for s in conns:
            s.close()
        # Recovery: once descriptors are back, TCP Binding and new allocations work again.
        def works():
            try:
                s = socket.create_connection((u.host, u.port), timeout=2)
                txid, req = binding_request()
                s.sendall(req)
                ok = parse(read_frame(s, 2))[1] == txid
                s.close()
                return ok and TurnClient(u, "alice", "alice-pass").allocate()[0] == 0
            except Exception:
                return False
        wait_for(works, 15, "recovery after the fd cap", interval=0.5)


def test_reload_and_drain_during_traffic():
    peer, pport = start_peer()
    try:
        with Uturnd(conf=BASE) as u:
            result = {}

            def traffic():
                result["r"] = uclient(u, ["-u", "alice", "-w", "alice-pass", "-e", "127.0.0.1",
                                          "-r", str(pport), "-n", "150", "-z", "20", "-m", "2"])
            t = threading.Thread(target=traffic)
            t.start()
            # Let the clients allocate and start sending, so the signals land mid-traffic. Not a
            # correctness wait: the assertion (nothing lost) holds whenever they land.
            time.sleep(1.0)
            for _ in range(5):
                u.proc.send_signal(signal.SIGHUP)
                time.sleep(0.2)
            u.proc.send_signal(signal.SIGUSR1)
            t.join(120)
            sent, recv, lost, text = result["r"]
            check(sent > 0 and recv == sent and lost == 0,
                  "reload/drain during traffic: sent %d received %d lost %d" % (sent, recv, lost))
            check("draining" in u.log() and u.log().count("SIGHUP") >= 5, "signals not seen")
            print("5 reloads and a drain during traffic: sent %d, received %d, lost 0" % (sent, recv))
    finally:
        peer.send_signal(signal.SIGTERM)
        peer.wait(10)


def _metric(u, admin_port, name, label):
    req = urllib.request.Request("http://127.0.0.1:%d/metrics" % admin_port,
                                 headers={"Authorization": "Bearer " + TOKEN})
    body = urllib.request.urlopen(req, timeout=5).read().decode()
    for line in body.splitlines():
        if line.startswith(name) and label in line:
            return float(line.split()[-1])
    return 0.0


def test_unauthenticated_flood_from_many_sources():
    admin_port = free_port()
    # Each 28-byte Allocate pays for its own 401 (up to 4x its bytes), so what bounds a flood from
    # many sources is the per-worker budget on unauthenticated answers, set low here to see it bite.
    budget = 65536
    conf = BASE + ["admin-listen = 127.0.0.1:%d" % admin_port, "admin-token = " + TOKEN,
                   "max-unauth-answer-bps = %d" % budget]
    with Uturnd(conf=conf) as u:
        good = TurnClient(u, "alice", "alice-pass")
        check(good.allocate()[0] == 0, "legitimate Allocate failed")
        peer = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        peer.bind(("127.0.0.1", 0))
        peer.settimeout(3)
        check(good.channel_bind(0x4001, *peer.getsockname())[0] == 0, "ChannelBind failed")
        rss0 = u.rss_kib()
        stop = time.monotonic() + 4
        flooders = []
        for i in range(2, 42):  # 40 source addresses, 127.0.0.2 .. 127.0.0.41
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.bind(("127.0.0.%d" % i, 0))
            s.setblocking(False)
            flooders.append(s)
        req = struct.pack("!HHI", 3, 8, 0x2112A442)
        sent = relayed = 0
        while time.monotonic() < stop and sent < 200000:
            for s in flooders:
                try:
                    s.sendto(req + tid() + attr(0x0019, b"\x11\0\0\0"), (u.host, u.port))
                    sent += 1
                except BlockingIOError:
                    pass
            if sent % 2000 < 40:
                good.channel_data(0x4001, b"during-flood")
                try:
                    if peer.recvfrom(64)[0] == b"during-flood":
                        relayed += 1
                except socket.timeout:
                    pass
        time.sleep(0.5)  # uturnd answers what its socket still holds
        elapsed = time.monotonic() - stop + 4
        answered = answered_bytes = 0
        for s in flooders:
            while True:
                try:
                    answered_bytes += len(s.recvfrom(2048)[0])
                    answered += 1
                except BlockingIOError:
                    break
        dropped = _metric(u, admin_port, "uturn_dropped_total", 'reason="unauth_budget"')
        bound = 2 * budget * (elapsed + 1)  # two workers, each with 1 s of burst
        print("flood: %d unauthenticated Allocates (%d bytes) from 40 addresses in %.1fs, %d answered "
              "(%d bytes, bound %d), %d dropped by the budget; legitimate ChannelData relayed %d times"
              % (sent, sent * 28, elapsed, answered, answered_bytes, bound, dropped, relayed))
        check(relayed >= 3, "the legitimate client was starved during the flood")
        check(dropped > 0 and answered < sent / 2, "no budget on unauthenticated answers in /metrics")
        check(answered_bytes <= bound, "%d answer bytes over the budget's bound %d" % (answered_bytes, bound))
        check(u.alive(), "uturnd died")
        rss1 = u.rss_kib()
        check(rss1 - rss0 < 8 * 1024, "RSS grew %d KiB during the flood" % (rss1 - rss0))


if __name__ == "__main__":
    run()
