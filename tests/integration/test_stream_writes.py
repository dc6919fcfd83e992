"""The write path of client streams (server/net/wq.c, tcp_listener.c's TLS writes), against the real
uturnd: what the one bounded write queue promises, seen from outside.

- An RFC 6062 pipe over TLS carries 300,000 bytes each way, in writes up to 128 KiB, complete and in
  order (TLS used to send only the first 16 KiB record of a write bigger than one record).
- UDP datagrams of 16,385 to 60,000 bytes reach a TLS control client whole, as Data indications and
  as ChannelData (the same bug).
- A control client (TCP, TLS) that stops reading while a peer floods its allocation is closed at the
  queue's cap ("client not reading"), within a deadline; another client is answered all along and
  uturnd's memory stays bounded.
- When the client (not the peer) stops reading an RFC 6062 pipe (TCP, TLS), the peer is held back
  (uturnd stops reading it: what the peer could write stays within the sockets' buffers), the pipe
  stays open, and once the client reads again every byte arrives in order.
"""
import hashlib
import os
import re
import select
import socket
import tempfile
import threading
import time

from uturn import (M_BINDING, TestFailure, TurnClient, Uturnd, check, connect_peer, connection_bind,
                   make_cert, relayed_addresses, run, tcp_allocate, tcp_peer_listener, udp_peer)

BASE = ["user = alice:alice-pass", "user = bob:bob-pass", "realm = uturn.test",
        "allow-loopback-peers", "min-port = 54000", "max-port = 54999"]
MIB = 1024 * 1024


def _conf():
    """BASE with a throw-away certificate for the TLS port."""
    cert, key = make_cert(os.path.join(tempfile.mkdtemp(prefix="uturn-streams-"), "c"),
                          "uturn-stream-writes")
    return BASE + ["cert = " + cert, "pkey = " + key]


def _pipe(u, transport):
    """An RFC 6062 pipe: a TCP allocation on a control connection over `transport`, Connect to a
    real TCP peer, ConnectionBind on a data connection over the same transport. Returns (control
    client, data client, the peer's socket)."""
    c, _ = tcp_allocate(u, transport=transport)
    srv = tcp_peer_listener()
    srv.settimeout(5)
    code, cid = connect_peer(c, srv.getsockname()[1])
    check(code == 0, "%s: Connect answered %s" % (transport, code))
    peer, _ = srv.accept()
    srv.close()
    d = connection_bind(u, c, cid)
    return c, d, peer


def _closed_line(u, sock, why=None):
    """The debug line uturnd logs when it closes the client connection `sock` for `why` (None: for
    any reason but a hand-over to another worker, which closes only that worker's handle)."""
    why = re.escape(why) if why is not None else "(?!handed to another worker)"
    pat = re.compile(r"tcp_close: 127\.0\.0\.1:%d: %s" % (sock.getsockname()[1], why))
    return pat.search(u.log())


def _recv_exactly(sock, n, stall, what):
    """Read n bytes from sock (TCP or TLS); fail when nothing comes for `stall` seconds or the
    connection closes first. Returns (bytes, seconds taken)."""
    got = bytearray()
    start = time.monotonic()
    sock.settimeout(stall)
    while len(got) < n:
        try:
            chunk = sock.recv(min(65536, n - len(got)))
        except socket.timeout:
            raise TestFailure("%s: %d of %d bytes, then nothing for %.0f s"
                              % (what, len(got), n, stall)) from None
        check(chunk, "%s: connection closed after %d of %d bytes" % (what, len(got), n))
        got += chunk
    return bytes(got), time.monotonic() - start


def _closed_within(sock, timeout):
    """True when the peer closes sock (EOF, reset or a TLS error) within timeout; reads and drops
    whatever is still queued for it. Bounded by the deadline."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        sock.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            if not sock.recv(65536):
                return True
        except socket.timeout:
            continue
        except OSError:  # reset, or ssl.SSLError for a TLS stream cut without close_notify
            return True
    return False


# Write sizes: one TLS record (16 KiB) and either side of it, a whole 64 KiB socket read, and
# single writes of 70,000 and 128 KiB (more than one read, more than the queue's low water).
WRITES = [70000, 1, 16384, 16385, 65536, 100, 131072, 3]


def _send_in_writes(sock, blob, errors):
    """Thread body: blob in writes of WRITES sizes (cycled), each with sendall."""
    try:
        off, i = 0, 0
        while off < len(blob):
            n = WRITES[i % len(WRITES)]
            sock.sendall(blob[off:off + n])
            off += n
            i += 1
    except Exception as e:  # noqa: BLE001 - reported by the caller
        errors.append(e)


def _one_way(src, dst, size, what):
    """size random bytes written into src (in a thread) arrive at dst complete and in order."""
    blob = os.urandom(size)
    errors = []
    src.settimeout(15)
    t = threading.Thread(target=_send_in_writes, args=(src, blob, errors), daemon=True)
    t.start()
    got, secs = _recv_exactly(dst, size, 5, what)
    t.join(15)
    check(not t.is_alive() and not errors, "%s: the sender failed: %r" % (what, errors))
    check(hashlib.sha256(got).digest() == hashlib.sha256(blob).digest(),
          "%s: %d bytes arrived but they differ from those sent" % (what, size))
    print("%s: %d bytes in %.2f s, identical" % (what, size, secs))


def test_tls_pipe_large_transfers_both_ways():
    with Uturnd(conf=_conf()) as u:
        c, d, peer = _pipe(u, "tls")
        _one_way(d.sock, peer, 300000, "TLS client -> TCP peer")
        _one_way(peer, d.sock, 300000, "TCP peer -> TLS client")
        # Both directions still carry bytes after the big writes.
        _one_way(d.sock, peer, 200, "TLS client -> TCP peer, after")
        _one_way(peer, d.sock, 200, "TCP peer -> TLS client, after")
        for x in (c, d):
            x.close()
        peer.close()


# 30,000 first (the case that was seen to fail), then sizes around TLS records up to near the
# largest UDP payload, and a small one behind them (the stream is still in step).
DATAGRAMS = [30000, 16385, 32769, 45000, 60000, 100]


def test_large_datagrams_to_tls_control_client():
    with Uturnd(conf=_conf()) as u:
        c = TurnClient(u, "alice", "alice-pass", transport="tls")
        code, _, raw = c.allocate(raw_response=True)
        check(code == 0, "Allocate over TLS failed: %s" % code)
        relay = tuple(relayed_addresses(raw)[0])
        p = udp_peer()
        check(c.create_permission(p.getsockname())[0] == 0, "CreatePermission failed")
        for label, want in (("Data indication", "data"), ("ChannelData", "channel")):
            if want == "channel":
                check(c.channel_bind(0x4001, *p.getsockname())[0] == 0, "ChannelBind failed")
            for n in DATAGRAMS:
                blob = os.urandom(n)
                p.sendto(blob, relay)
                got = c.receive_data(timeout=5)
                check(got is not None, "%s: a %d-byte datagram never arrived whole at the TLS "
                      "client" % (label, n))
                check(got[0] == want, "%s: %d bytes came as %s" % (label, n, got[0]))
                check(got[2] == blob, "%s: %d bytes sent, %d different bytes arrived"
                      % (label, n, len(got[2])))
            print("%s over TLS: datagrams of %s bytes arrived whole" % (label, DATAGRAMS))
        c.close()
        p.close()


def _flood_until_closed(u, transport):
    """A control client over `transport` with a UDP allocation stops reading; a peer floods it. It
    must be closed at the cap while another client's requests are answered."""
    other = TurnClient(u, "bob", "bob-pass", transport="tcp")
    check(other.allocate()[0] == 0, "bob's Allocate failed")
    c = TurnClient(u, "alice", "alice-pass", transport=transport)
    code, _, raw = c.allocate(raw_response=True)
    check(code == 0, "%s: Allocate failed: %s" % (transport, code))
    relay = tuple(relayed_addresses(raw)[0])
    p = udp_peer()
    check(c.create_permission(p.getsockname())[0] == 0, "CreatePermission failed")
    # From here alice reads nothing. Each burst is 64 datagrams of 8,000 bytes (512 KB); then
    # bob asks something and must be answered. Bounded: 15 s or 256 MiB.
    rss0 = u.rss_kib()
    payload = os.urandom(8000)
    start = time.monotonic()
    sent = answered = 0
    closed = None
    while time.monotonic() - start < 15 and sent < 256 * MIB:
        for _ in range(64):
            try:
                p.sendto(payload, relay)
            except ConnectionRefusedError:
                pass  # the relayed port went away with the allocation
            sent += len(payload)
        code, _ = other.request(M_BINDING, auth=False)
        check(code == 0, "bob's Binding answered %s while alice was flooded" % code)
        answered += 1
        closed = _closed_line(u, c.sock, "client not reading")
        if closed:
            break
    secs = time.monotonic() - start
    rss1 = u.rss_kib()
    print("%s: peer sent %.1f MiB in %.1f s; alice closed: %s; bob answered %d times; uturnd RSS "
          "%d -> %d KiB" % (transport, sent / MIB, secs, bool(closed), answered, rss0, rss1))
    check(closed, "%s: a control client that does not read was not closed while the peer sent "
          "%.0f MiB in %.1f s" % (transport, sent / MIB, secs))
    check(rss1 - rss0 < 32 * 1024, "%s: uturnd grew by %d KiB for a client that does not read"
          % (transport, rss1 - rss0))
    check(_closed_within(c.sock, 10), "%s: alice's connection was logged closed but is open"
          % transport)
    # bob's control connection and allocation are untouched.
    check(other.refresh(600)[0] == 0, "bob's Refresh failed after alice was closed")
    other.close()
    p.close()


def test_control_client_not_reading_closed_at_cap():
    with Uturnd(conf=_conf()) as u:
        for transport in ("tcp", "tls"):
            _flood_until_closed(u, transport)


def _sysctl_max(name, default):
    """The last field of /proc/sys/net/ipv4/<name> (the most the kernel lets a socket buffer grow
    to), or default."""
    try:
        with open("/proc/sys/net/ipv4/" + name) as f:
            return int(f.read().split()[-1])
    except (OSError, ValueError, IndexError):
        return default


# What a peer may write into a pipe whose client reads nothing, with uturnd holding it back: its
# own send buffer (set to 64 KiB below), uturnd's receive buffer for the peer socket (up to
# tcp_rmem's max: loopback autotuning gets there), uturnd's send buffer towards the client (up to
# tcp_wmem's max), the write queue (WQ_HIGH plus one 64 KiB read, under WQ_CAP: 256 KiB) and the
# client's receive buffer (128 KiB, as it reads nothing): 2 MiB covers the small ones. uturnd has no
# setting for its socket buffers, so the kernel's maxima are the bound. Without backpressure the
# peer writes at loopback speed to the loop's bound (512 MiB), or the pipe is closed at the cap.
HELD_BACK_LIMIT = _sysctl_max("tcp_rmem", 6 * MIB) + _sysctl_max("tcp_wmem", 4 * MIB) + 2 * MIB


def _client_stops_reading(u, transport):
    c, d, peer = _pipe(u, transport)
    peer.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 65536)
    peer.setblocking(False)
    # A random pattern of a prime length, so a byte out of place changes the hash.
    pattern = os.urandom(1000003)
    stream = pattern * 2
    sent_hash = hashlib.sha256()
    sent = 0
    stalled_since = gone = None
    rss0 = u.rss_kib()
    start = time.monotonic()
    # The client reads nothing. Write until the peer has been held back for 1.5 s (bounded: 20 s
    # or 512 MiB).
    while time.monotonic() - start < 20 and sent < 512 * MIB:
        off = sent % len(pattern)
        try:
            n = peer.send(stream[off:off + 65536])
        except BlockingIOError:
            n = 0
        except OSError as e:  # reset or broken pipe: uturnd closed the pipe
            gone = e
            break
        if n:
            sent_hash.update(stream[off:off + n])
            sent += n
            stalled_since = None
            continue
        stalled_since = stalled_since or time.monotonic()
        if time.monotonic() - stalled_since > 1.5:
            break
        select.select([], [peer], [], 0.05)
    held = stalled_since is not None and time.monotonic() - stalled_since > 1.5
    rss1 = u.rss_kib()
    print("%s: the peer wrote %.2f MiB before being held back (%s); uturnd RSS %d -> %d KiB"
          % (transport, sent / MIB, "held" if held else "never held", rss0, rss1))
    check(gone is None, "%s: uturnd closed the pipe after the peer wrote %.1f MiB (%s); its log "
          "says: %s" % (transport, sent / MIB, gone,
                        re.findall(r"(?:tcp_relay|tcp_close): .*", u.log())))
    check(held, "%s: the peer was never held back: %.0f MiB accepted in %.0f s"
          % (transport, sent / MIB, time.monotonic() - start))
    check(sent < HELD_BACK_LIMIT, "%s: %.1f MiB accepted from the peer while the client read "
          "nothing (limit %.0f MiB: the kernel's buffers and uturnd's queue)"
          % (transport, sent / MIB, HELD_BACK_LIMIT / MIB))
    check(rss1 - rss0 < 16 * 1024, "%s: uturnd grew by %d KiB holding a pipe"
          % (transport, rss1 - rss0))
    # The pipe stays open: neither side was closed.
    check(not _closed_line(u, d.sock), "%s: uturnd closed the data connection of a client "
          "that paused" % transport)
    try:
        check(peer.recv(1) != b"", "%s: uturnd closed the peer of a paused client" % transport)
    except BlockingIOError:
        pass
    # The client reads again: every byte the peer wrote arrives, in order; then more still flows.
    got, secs = _recv_exactly(d.sock, sent, 10, "%s: the paused client reading again" % transport)
    check(hashlib.sha256(got).digest() == sent_hash.digest(),
          "%s: %d bytes arrived after the pause but not those the peer sent" % (transport, sent))
    peer.setblocking(True)
    tail = os.urandom(100000)
    peer.settimeout(10)
    peer.sendall(tail)
    more, _ = _recv_exactly(d.sock, len(tail), 10, "%s: bytes written after the resume" % transport)
    check(more == tail, "%s: bytes after the resume differ" % transport)
    print("%s: after resuming, %d bytes arrived in order in %.2f s, and 100,000 more"
          % (transport, sent, secs))
    for x in (c, d):
        x.close()
    peer.close()


def test_client_stops_reading_pipe_backpressure():
    with Uturnd(conf=_conf()) as u:
        for transport in ("tcp", "tls"):
            _client_stops_reading(u, transport)


if __name__ == "__main__":
    run()
