"""Soak: allocate / permission / channel / relay / refresh / delete churn with relayed traffic for a
bounded time (UTURN_SOAK_SECONDS, 90 by default; set it to hours on demand), over UDP and TCP
clients at once. After a warm-up, uturnd's RSS must stay flat and its open file descriptors must
come back to where they were; under ASan (CI) any leak or error fails the run at exit."""
import os
import socket
import threading
import time

from uturn import TurnClient, Uturnd, check, run, timeout

SECONDS = float(os.environ.get("UTURN_SOAK_SECONDS", "90"))


def _fds(pid):
    return len(os.listdir("/proc/%d/fd" % pid))


def _cycle(u, transport, peer, stats):
    c = TurnClient(u, "alice", "alice-pass", transport=transport)
    try:
        if c.allocate()[0] != 0:
            stats["errors"] += 1
            return
        pip, pport = peer.getsockname()
        ok = c.create_permission((pip, pport))[0] == 0 and c.channel_bind(0x4001, pip, pport)[0] == 0
        for i in range(5):
            c.channel_data(0x4001, b"soak-%d" % i)
        ok = ok and c.refresh(700)[0] == 0 and c.refresh(0)[0] == 0
        stats["cycles" if ok else "errors"] += 1
    finally:
        c.close()


@timeout(SECONDS + 300)  # runs for SECONDS by design
def test_churn_with_traffic():
    with Uturnd(conf=["user = alice:alice-pass", "realm = uturn.test", "allow-loopback-peers",
                      "min-port = 52000", "max-port = 52999"],
                # Under ASan, freed memory waits in a quarantine (256 MB by default) and would
                # look like growth: keep it small so RSS measures uturnd, not the sanitizer.
                env={"ASAN_OPTIONS": "quarantine_size_mb=1"}) as u:
        peer = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        peer.bind(("127.0.0.1", 0))
        peer.settimeout(0.2)
        stop = threading.Event()

        def drain():
            n = 0
            while not stop.is_set():
                try:
                    peer.recvfrom(2048)
                    n += 1
                except socket.timeout:
                    pass
            stats["relayed"] = n

        stats = {"cycles": 0, "errors": 0, "relayed": 0}
        t = threading.Thread(target=drain)
        t.start()
        warm = time.monotonic() + min(10, SECONDS / 4)
        while time.monotonic() < warm:
            _cycle(u, "udp", peer, stats)
        rss0, fds0 = u.rss_kib(), _fds(u.proc.pid)
        end = time.monotonic() + SECONDS
        mid = time.monotonic() + SECONDS / 2
        rss_mid = None
        i = 0
        while time.monotonic() < end:
            _cycle(u, "tcp" if i % 3 == 0 else "udp", peer, stats)
            i += 1
            if rss_mid is None and time.monotonic() >= mid:
                rss_mid = u.rss_kib()
        stop.set()
        t.join(5)
        rss1, fds1 = u.rss_kib(), _fds(u.proc.pid)
        print("soak %.0f s: %d cycles, %d errors, %d datagrams relayed; RSS %d -> %d -> %d KiB "
              "(start, middle, end), fds %d -> %d"
              % (SECONDS, stats["cycles"], stats["errors"], stats["relayed"], rss0, rss_mid, rss1,
                 fds0, fds1))
        check(stats["errors"] == 0 and stats["cycles"] > 100, "churn errors: %r" % stats)
        check(stats["relayed"] > 0, "no traffic was relayed during the soak")
        # Flat: the second half may not grow more than a small allowance (allocator caches settle
        # in the first half; a leak of even 1 KiB per cycle would show here).
        check(rss1 - rss_mid < 2 * 1024, "RSS grew %d KiB in the second half" % (rss1 - rss_mid))
        # TCP connections of the last cycles may still be closing: wait briefly for the count.
        deadline = time.monotonic() + 5
        while _fds(u.proc.pid) > fds0 and time.monotonic() < deadline:
            time.sleep(0.1)
        check(_fds(u.proc.pid) <= fds0, "fds grew from %d to %d" % (fds0, _fds(u.proc.pid)))


if __name__ == "__main__":
    run()
