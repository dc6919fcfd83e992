"""STUN over TCP (RFC 8489 §6.2.2, RFC 8656 §12.5 framing): a stream carries many messages; split
and coalesced writes; ChannelData framing keeps the stream in sync; garbage and stalls close only the
offending connection; the per-IP connection cap."""
import socket
import struct
import time

from uturn import (Uturnd, binding_request, check, get_attr, parse, read_frame, run, wait_closed,
                   xor_address)


def _conn(u):
    s = socket.create_connection((u.host, u.port), timeout=5)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


def _expect_binding(s, txid):
    resp = read_frame(s)
    mtype, rtid, attrs = parse(resp)
    check(mtype == 0x0101 and rtid == txid, "type 0x%04x / tid mismatch" % mtype)
    check(xor_address(get_attr(attrs, 0x0020), txid) == s.getsockname()[:2], "bad XOR-MAPPED-ADDRESS")


def test_one_message():
    with Uturnd() as u:
        s = _conn(u)
        txid, req = binding_request(fingerprint=True)
        s.sendall(req)
        _expect_binding(s, txid)


def test_two_messages_one_write():
    with Uturnd() as u:
        s = _conn(u)
        t1, r1 = binding_request()
        t2, r2 = binding_request(fingerprint=True)
        s.sendall(r1 + r2)
        _expect_binding(s, t1)
        _expect_binding(s, t2)


def test_one_message_three_writes():
    with Uturnd() as u:
        s = _conn(u)
        txid, req = binding_request(fingerprint=True)
        # Cut inside the header and inside the body. The pauses only make the kernel send three
        # segments (TCP_NODELAY); correctness must not depend on them.
        for part in (req[:3], req[3:23], req[23:]):
            s.sendall(part)
            time.sleep(0.05)
        _expect_binding(s, txid)
        # And byte by byte, followed at once by a second message in the same write as the last byte.
        t2, r2 = binding_request()
        t3, r3 = binding_request()
        for b in r2[:-1]:
            s.sendall(bytes([b]))
        s.sendall(r2[-1:] + r3)
        _expect_binding(s, t2)
        _expect_binding(s, t3)


def test_channeldata_frames_keep_sync():
    with Uturnd() as u:
        s = _conn(u)
        # ChannelData with 5 bytes of data is padded to 8 on a stream (RFC 8656 §12.5); with no
        # allocation it is dropped, but the next message must still be parsed in sync.
        cd = struct.pack("!HH", 0x4001, 5) + b"hello" + b"\0\0\0"
        txid, req = binding_request()
        s.sendall(cd + req)
        _expect_binding(s, txid)


def test_garbage_closes_only_that_connection():
    with Uturnd() as u:
        good = _conn(u)
        bad = _conn(u)
        bad.sendall(b"\xff\xfe GET / HTTP/1.1\r\n\r\n")
        check(wait_closed(bad, 5), "garbage connection was not closed")
        # A STUN header with a bad magic cookie is garbage too.
        bad2 = _conn(u)
        bad2.sendall(struct.pack("!HHI", 1, 0, 0xdeadbeef) + b"\0" * 12)
        check(wait_closed(bad2, 5), "bad-cookie connection was not closed")
        txid, req = binding_request()
        good.sendall(req)
        _expect_binding(good, txid)


def test_stall_mid_frame_closed_after_bound():
    with Uturnd(conf=["tcp-frame-timeout = 1"]) as u:
        other = _conn(u)
        stalled = _conn(u)
        txid, req = binding_request()
        stalled.sendall(req[:10])
        start = time.monotonic()
        check(wait_closed(stalled, 6), "stalled connection still open after 6 s")
        took = time.monotonic() - start
        check(took >= 0.9, "closed after %.2fs, before the 1 s bound" % took)
        t2, r2 = binding_request()
        other.sendall(r2)
        _expect_binding(other, t2)


def test_idle_connection_closed():
    with Uturnd(conf=["tcp-idle-timeout = 5"]) as u:
        s = _conn(u)
        txid, req = binding_request()
        s.sendall(req)
        _expect_binding(s, txid)
        start = time.monotonic()
        check(wait_closed(s, 10), "idle connection still open after 10 s")
        check(time.monotonic() - start >= 4, "idle connection closed too early")


def test_per_ip_connection_cap():
    with Uturnd(conf=["max-tcp-connections-per-ip = 3"], threads=1) as u:
        conns = [_conn(u) for _ in range(3)]
        for c in conns:
            txid, req = binding_request()
            c.sendall(req)
            _expect_binding(c, txid)
        extra = _conn(u)
        check(wait_closed(extra, 5), "fourth connection from one IP was not refused")
        conns[0].close()
        # Once one closes, a new connection is served again.
        def served():
            c = _conn(u)
            txid, req = binding_request()
            try:
                c.sendall(req)
                _expect_binding(c, txid)
                return c
            except Exception:
                c.close()
                return None
        deadline = time.monotonic() + 5
        c = None
        while c is None and time.monotonic() < deadline:
            c = served()
        check(c is not None, "no connection served after one of the three closed")


if __name__ == "__main__":
    run()
