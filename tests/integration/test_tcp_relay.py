"""RFC 6062 TCP relaying: turnutils_uclient in TCP-relay mode (two clients connecting through each
other's relayed TCP addresses: Connect and ConnectionAttempt both), over TCP and TLS; our own client
against a real TCP peer in both directions; 446, 447, 400 for a bad CONNECTION-ID; a data connection
that never binds; a peer that stops reading (memory stays bounded, the client is slowed, others go
on)."""
import os
import socket
import struct
import tempfile
import time

from uturn import (A_CONNECTION_ID, A_PEER, M_CONNECT, M_CONNECTION_BIND, TurnClient, Uturnd, attr,
                   check, connection_bind, get_attr, make_cert, run, tcp_allocate, tid, uclient,
                   wait_closed, xor_addr_value, xor_address)

BASE = ["user = alice:alice-pass", "realm = uturn.test", "allow-loopback-peers",
        "min-port = 47000", "max-port = 47999"]


def test_uclient_tcp_relay():
    d = tempfile.mkdtemp()
    cert, key = make_cert(os.path.join(d, "c"), "uturn-tcp-relay")
    with Uturnd(conf=BASE + ["cert = " + cert, "pkey = " + key]) as u:
        for label, flags, port in [("tcp", ["-T"], u.port), ("tls", ["-T", "-S"], u.tls_port)]:
            sent, recv, lost, text = uclient(u, ["-u", "alice", "-w", "alice-pass", "-n", "20", "-m",
                                                 "6", "-l", "500"] + flags, port=port)
            check(sent > 0 and recv == sent and lost == 0,
                  "%s: sent %d received %d lost %d\n%s" % (label, sent, recv, lost, text[-2000:]))
            print("uclient -T over %s: sent %d received %d lost 0" % (label, sent, recv))


def _pipe_both_ways(data_sock, peer_sock, size):
    blob = os.urandom(size)
    data_sock.sendall(blob)
    got = b""
    peer_sock.settimeout(5)
    while len(got) < size:
        chunk = peer_sock.recv(65536)
        check(chunk, "peer connection closed early")
        got += chunk
    check(got == blob, "client->peer bytes differ")
    back = os.urandom(size)
    peer_sock.sendall(back)
    got = b""
    data_sock.settimeout(5)
    while len(got) < size:
        chunk = data_sock.recv(65536)
        check(chunk, "data connection closed early")
        got += chunk
    check(got == back, "peer->client bytes differ")


def test_connect_and_attempt_with_real_tcp_peer():
    with Uturnd(conf=BASE) as u:
        c, relay = tcp_allocate(u)
        srv = socket.socket()
        srv.bind(("127.0.0.1", 0))
        srv.listen(4)
        pport = srv.getsockname()[1]
        # Connect: the server dials the peer from the relayed address.
        txid = tid()
        code, attrs = c.request(M_CONNECT, attr(A_PEER, xor_addr_value("127.0.0.1", pport, txid)), txid=txid)
        check(code == 0, "Connect failed: %s" % code)
        cid = get_attr(attrs, A_CONNECTION_ID)
        peer, paddr = srv.accept()
        check(paddr[1] == relay[1], "peer sees source port %d, relayed port is %d" % (paddr[1], relay[1]))
        # A second Connect to the same peer: 446.
        txid = tid()
        code, _ = c.request(M_CONNECT, attr(A_PEER, xor_addr_value("127.0.0.1", pport, txid)), txid=txid)
        check(code == 446, "duplicate Connect answered %s, not 446" % code)
        d = connection_bind(u, c, cid)
        _pipe_both_ways(d.sock, peer, 300000)
        # Peer-initiated: a permission, then the peer connects to the relayed address.
        p2 = socket.socket()
        p2.bind(("127.0.0.1", 0))
        check(c.create_permission(("127.0.0.1", p2.getsockname()[1]))[0] == 0, "CreatePermission")
        p2.connect(tuple(relay))
        msg = None
        deadline = time.monotonic() + 5
        while msg is None and time.monotonic() < deadline:
            raw = c.stash.pop(0) if c.stash else c.recv_raw(1)
            if raw and raw[0] < 4 and struct.unpack("!H", raw[:2])[0] == 0x001C:
                msg = raw
        check(msg is not None, "no ConnectionAttempt indication")
        from uturn import parse
        _, mtid, mattrs = parse(msg)
        check(xor_address(get_attr(mattrs, A_PEER), mtid)[1] == p2.getsockname()[1], "wrong peer")
        d2 = connection_bind(u, c, get_attr(mattrs, A_CONNECTION_ID))
        _pipe_both_ways(d2.sock, p2, 100000)
        # Closing the peer closes the client's data connection.
        p2.close()
        check(wait_closed(d2.sock, 5), "data connection not closed after the peer closed")


def test_errors_and_unbound_data_connection():
    with Uturnd(conf=BASE + ["tcp-idle-timeout = 5"]) as u:
        c, relay = tcp_allocate(u)
        # 447: nothing listens on the peer port.
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        dead_port = s.getsockname()[1]
        s.close()
        txid = tid()
        code, _ = c.request(M_CONNECT, attr(A_PEER, xor_addr_value("127.0.0.1", dead_port, txid)), txid=txid)
        check(code == 447, "Connect to a closed port answered %s, not 447" % code)
        # 400: a CONNECTION-ID nobody issued.
        d = TurnClient(u, "alice", "alice-pass", transport="tcp")
        d.realm, d.nonce = c.realm, c.nonce
        code, _ = d.request(M_CONNECTION_BIND, attr(A_CONNECTION_ID, b"\x00\x12\x34\x56"), retry=False)
        check(code == 400, "bogus CONNECTION-ID answered %s, not 400" % code)
        # ChannelBind and UDP-only attributes do not belong to TCP allocations.
        check(c.channel_bind(0x4001, "127.0.0.1", 5000)[0] == 400, "ChannelBind on a TCP allocation")
        e = TurnClient(u, "alice", "alice-pass", transport="udp")
        check(e.allocate(transport=6)[0] == 400, "TCP allocation over UDP not 400")
        # A data connection that never binds is closed (tcp-idle-timeout = 5 s).
        idle = socket.create_connection((u.host, u.port), timeout=5)
        start = time.monotonic()
        check(wait_closed(idle, 12), "unbound data connection never closed")
        check(time.monotonic() - start >= 4, "closed too early")


def test_peer_that_stops_reading():
    with Uturnd(conf=BASE) as u:
        c, relay = tcp_allocate(u)
        srv = socket.socket()
        srv.bind(("127.0.0.1", 0))
        srv.listen(1)
        txid = tid()
        code, attrs = c.request(M_CONNECT, attr(A_PEER, xor_addr_value("127.0.0.1", srv.getsockname()[1], txid)),
                                txid=txid)
        check(code == 0, "Connect failed")
        peer, _ = srv.accept()
        peer.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
        d = connection_bind(u, c, get_attr(attrs, A_CONNECTION_ID))
        rss0 = u.rss_kib()
        d.sock.setblocking(False)
        sent, chunk = 0, b"x" * 65536
        deadline = time.monotonic() + 10
        stalled_since = None
        while time.monotonic() < deadline and sent < 200 * 1024 * 1024:
            try:
                sent += d.sock.send(chunk)
                stalled_since = None
            except BlockingIOError:
                stalled_since = stalled_since or time.monotonic()
                if time.monotonic() - stalled_since > 1.0:
                    break  # the client is held back: backpressure reached it
                time.sleep(0.01)
        rss1 = u.rss_kib()
        print("client could send %d KiB before being held back; uturnd RSS %d -> %d KiB"
              % (sent // 1024, rss0, rss1))
        check(sent < 64 * 1024 * 1024, "no backpressure: %d MiB accepted" % (sent >> 20))
        check(rss1 - rss0 < 8 * 1024, "uturnd buffered %d KiB for a stalled peer" % (rss1 - rss0))
        # Others are unaffected: a Binding over UDP is answered at once.
        o = TurnClient(u, "alice", "alice-pass")
        check(o.allocate()[0] == 0, "another client was refused while a peer stalled")


if __name__ == "__main__":
    run()
