"""Hardening at the RFC 6062 edge (issue 11, defects 1 and 3), against the real uturnd under ASan.

ConnectionBind is valid only as the first request on a new data connection (RFC 6062 §4.3, §5.4): on
a control connection, TLS or TCP, naming this worker or another, it is refused with 400 and the
allocation keeps working (it used to hand the connection to another worker and leave the TLS
allocation pointing at freed memory). Peer data connections (accepted from peers and made by
Connect) are capped per allocation (max-peer-connections) and per user across workers
(user-peer-connection-quota): a flood of peers cannot take the process's fds, other users go on,
Connect past a cap gets 508, and a pending peer connection whose peer goes away is freed within a
sweep, not 30 s later.
"""
import os
import signal
import socket
import struct
import tempfile
import time
import http.client

from uturn import (A_CONNECTION_ID, M_CONNECTION_BIND, T_CONNECTION_ATTEMPT, TurnClient, Uturnd,
                   attr, check, connect_peer, connection_bind, get_attr, make_cert, parse, run,
                   tcp_allocate, udp_peer, wait_closed, wait_for)

USERS = ["user = alice:alice-pass", "user = bob:bob-pass", "user = carol:carol-pass"]
BASE = USERS + ["realm = uturn.test", "allow-loopback-peers", "min-port = 48000",
                "max-port = 48999"]
TOKEN = "edge-tcp-admin-token-0123456789"
DEFAULT_MAX_PEER = 64   # max-peer-connections as shipped
DEFAULT_USER_PEER = 256  # user-peer-connection-quota as shipped


# ---- helpers ----

def _crash(u):
    """The start of a sanitizer report (or the exit status) when uturnd died, for failure messages."""
    log = u.log()
    i = log.find("ERROR: AddressSanitizer")
    if i >= 0:
        return "\n" + log[i:i + 1500]
    return "" if u.alive() else "\nuturnd exited (%s):\n%s" % (u.proc.returncode, log[-1500:])


def _fds(u):
    return len(os.listdir("/proc/%d/fd" % u.proc.pid))


def _attempts(c, want, timeout):
    """CONNECTION-IDs of ConnectionAttempt indications on control connection c: read until `want`
    arrived or nothing more came for 1 s (bounded by timeout)."""
    ids = []
    deadline = time.monotonic() + timeout
    quiet = time.monotonic() + 1.0
    while len(ids) < want and time.monotonic() < min(deadline, quiet):
        msg = c.stash.pop(0) if c.stash else c.recv_raw(0.2)
        if msg is None:
            continue
        if msg[0] < 4 and struct.unpack("!H", msg[:2])[0] == T_CONNECTION_ATTEMPT:
            ids.append(get_attr(parse(msg)[2], A_CONNECTION_ID))
            quiet = time.monotonic() + 1.0
    return ids


def _flood(relay, n, timeout=10):
    """n peer connections to the relayed address (non-blocking, bounded in time); returns them."""
    socks = []
    deadline = time.monotonic() + timeout
    for _ in range(n):
        if time.monotonic() > deadline:
            break
        s = socket.socket()
        s.setblocking(False)
        try:
            s.connect(relay)
        except BlockingIOError:
            pass
        socks.append(s)
    return socks


def _metric(admin_port, name):
    conn = http.client.HTTPConnection("127.0.0.1", admin_port, timeout=10)
    conn.request("GET", "/metrics", headers={"Authorization": "Bearer " + TOKEN})
    text = conn.getresponse().read().decode()
    conn.close()
    for line in text.splitlines():
        if line.startswith(name + " "):
            return int(float(line.split()[1]))
    return None


def _others_still_served(u):
    """bob allocates over TCP (TCP relay: Connect and a byte pipe), carol over UDP (a datagram each
    way), while alice is at her caps."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)
    b, _ = tcp_allocate(u, "bob")
    code, cid = connect_peer(b, srv.getsockname()[1])
    check(code == 0, "bob's Connect answered %s while alice was at her cap" % code)
    peer, _ = srv.accept()
    d = connection_bind(u, b, cid)
    d.sock.sendall(b"bob over tcp")
    peer.settimeout(3)
    check(peer.recv(64) == b"bob over tcp", "bob's TCP relay did not carry data")
    e = TurnClient(u, "carol", "carol-pass")
    check(e.allocate()[0] == 0, "carol's UDP Allocate refused while alice was at her cap")
    p = udp_peer()
    check(e.create_permission(p.getsockname())[0] == 0, "carol's CreatePermission failed")
    e.send_indication(*p.getsockname(), b"carol over udp")
    data, src = p.recvfrom(100)
    check(data == b"carol over udp", "carol's UDP relay did not carry data")
    p.sendto(b"back", src)
    got = e.receive_data()
    check(got is not None and got[2] == b"back", "no Data indication for carol: %r" % (got,))
    for s in (srv, peer, p):
        s.close()
    for x in (b, d, e):
        x.close()


# ---- defect 1: ConnectionBind on a connection that is not a new data connection ----

def test_connection_bind_on_control_connection():
    d = tempfile.mkdtemp()
    cert, key = make_cert(os.path.join(d, "c"), "uturn-edge-tcp")
    with Uturnd(conf=BASE + ["cert = " + cert, "pkey = " + key, "user-quota = 1"], threads=2) as u:
        for transport in ("tls", "tcp"):
            c = TurnClient(u, "alice", "alice-pass", transport=transport)
            check(c.allocate()[0] == 0, "%s: Allocate failed" % transport)
            peer = udp_peer()
            check(c.create_permission(peer.getsockname())[0] == 0, "CreatePermission failed")
            # One CONNECTION-ID names worker 0, the other worker 1: one of them is another worker.
            for cid in (b"\x00\x12\x34\x56", b"\x01\x12\x34\x56"):
                code, _ = c.request(M_CONNECTION_BIND, attr(A_CONNECTION_ID, cid), retry=False)
                check(code == 400, "%s: ConnectionBind %s on the control connection answered %s, "
                      "not 400" % (transport, cid.hex(), code))
            # The allocation still lives on this connection: data reaches the client.
            relay = None
            for i in range(3):
                c.send_indication(*peer.getsockname(), b"hello %d" % i)
                try:
                    data, relay = peer.recvfrom(100)
                except socket.timeout:
                    data = None
                check(data == b"hello %d" % i, "%s: client->peer data lost%s" % (transport, _crash(u)))
            for i in range(5):
                peer.sendto(b"datagram %d" % i, relay)
                try:
                    got = c.receive_data()
                except AssertionError as e:
                    got = e
                check(isinstance(got, tuple) and got[2] == b"datagram %d" % i,
                      "%s: Data indication %d not received (%r)%s" % (transport, i, got, _crash(u)))
            check(u.alive(), "uturnd died:\n" + u.log()[-3000:])
            check(c.refresh(600)[0] == 0, "%s: Refresh after the refused ConnectionBind" % transport)
            # Closing the control connection releases the allocation (user-quota = 1: a new one
            # for the same user is possible only then).
            c.close()
            e = TurnClient(u, "alice", "alice-pass", transport=transport)
            wait_for(lambda: e.allocate()[0] == 0, 5, "%s: the allocation of a closed control "
                     "connection to be released" % transport)
            e.close()
            peer.close()
            print("%s: ConnectionBind on the control connection refused (400); allocation intact"
                  % transport)


def test_connection_bind_only_first_on_new_connection():
    with Uturnd(conf=BASE, threads=2) as u:
        c, relay = tcp_allocate(u)
        p = socket.socket()
        p.bind(("127.0.0.1", 0))
        check(c.create_permission(p.getsockname())[0] == 0, "CreatePermission failed")
        p.connect(relay)
        ids = _attempts(c, 1, 5)
        check(len(ids) == 1, "no ConnectionAttempt")
        cid = ids[0]
        # The control connection itself (same worker as the pending peer connection): 400, and it
        # stays a control connection.
        code, _ = c.request(M_CONNECTION_BIND, attr(A_CONNECTION_ID, cid), retry=False)
        check(code == 400, "ConnectionBind of a pending id on the control connection answered %s"
              % code)
        check(c.refresh(600)[0] == 0, "the control connection stopped working")
        # A connection that carried another request first: 400.
        used = TurnClient(u, "alice", "alice-pass", transport="tcp")
        used.realm, used.nonce = c.realm, c.nonce
        check(used.request(0x001, auth=False)[0] == 0, "Binding failed")
        code, _ = used.request(M_CONNECTION_BIND, attr(A_CONNECTION_ID, cid), retry=False)
        check(code == 400, "ConnectionBind after another request answered %s" % code)
        # A new data connection still binds the pending peer connection.
        d = connection_bind(u, c, cid)
        d.sock.sendall(b"to peer")
        p.settimeout(3)
        check(p.recv(64) == b"to peer", "bound data connection does not reach the peer")
        p.sendall(b"to client")
        d.sock.settimeout(3)
        check(d.sock.recv(64) == b"to client", "peer bytes do not reach the data connection")


# ---- defect 3: peer connections bounded per allocation and per user ----

def test_peer_flood_default_cap():
    admin = _free_admin_port()
    conf = BASE + ["user-quota = 1", "admin-listen = 127.0.0.1:%d" % admin,
                   "admin-token = " + TOKEN]
    with Uturnd(conf=conf, threads=2) as u:
        c, relay = tcp_allocate(u)
        check(c.create_permission(("127.0.0.1", 9))[0] == 0, "CreatePermission failed")
        base = _fds(u)
        n = DEFAULT_MAX_PEER + 200

        def dropped():
            return _metric(admin, 'uturn_dropped_total{reason="peer_connection_limit"}') or 0
        # In batches the relayed address's backlog (64) takes whole, each taken in by uturnd (held
        # or closed) before the next: a peer the kernel had to make wait would retry its SYN after
        # seconds and blur the counts.
        start = time.monotonic()
        socks = []
        while len(socks) < n:
            socks += _flood(relay, min(32, n - len(socks)))
            wait_for(lambda: _fds(u) - base + dropped() >= len(socks), 10,
                     "uturnd to take in %d peer connections" % len(socks))
        ids = _attempts(c, n, 5)
        held = _fds(u) - base
        drops = dropped()
        gauge = _metric(admin, "uturn_tcp_peer_connections")
        print("%d peer connections in %.1fs: %d ConnectionAttempts, uturnd holds %d more fds, "
              "%s counted as dropped" % (len(socks), time.monotonic() - start, len(ids), held, drops))
        check(len(ids) == DEFAULT_MAX_PEER, "%d ConnectionAttempts, the cap is %d"
              % (len(ids), DEFAULT_MAX_PEER))
        check(held <= DEFAULT_MAX_PEER + 4, "uturnd holds %d more fds for %d peers" % (held, n))
        check(gauge == DEFAULT_MAX_PEER, "uturn_tcp_peer_connections says %s" % gauge)
        check(drops >= n - DEFAULT_MAX_PEER,
              "%s peer connections counted as dropped for the limit, %d were refused"
              % (drops, n - DEFAULT_MAX_PEER))
        _others_still_served(u)
        for s in socks:
            s.close()
        wait_for(lambda: _metric(admin, "uturn_tcp_peer_connections") == 0, 5,
                 "every peer connection to be freed once the peers closed")


def test_user_default_cap():
    # Five allocations of one user, 64 peers each: 320 would fit the allocations, the user gets 256.
    with Uturnd(conf=BASE + ["user-quota = 5"], threads=2) as u:
        clients = [tcp_allocate(u) for _ in range(5)]
        base = _fds(u)
        socks, total = [], 0
        for c, relay in clients:
            check(c.create_permission(("127.0.0.1", 9))[0] == 0, "CreatePermission failed")
            socks += _flood(relay, DEFAULT_MAX_PEER)
            total += len(_attempts(c, DEFAULT_MAX_PEER, 10))
        held = _fds(u) - base
        print("5 allocations x %d peers: %d ConnectionAttempts, %d more fds"
              % (DEFAULT_MAX_PEER, total, held))
        check(total == DEFAULT_USER_PEER, "%d peer connections for one user, the cap is %d"
              % (total, DEFAULT_USER_PEER))
        check(held <= DEFAULT_USER_PEER + 4, "uturnd holds %d more fds" % held)
        _others_still_served(u)
        for s in socks:
            s.close()


def test_closed_peers_freed_promptly():
    with Uturnd(conf=BASE + ["max-peer-connections = 8"], threads=2) as u:
        c, relay = tcp_allocate(u)
        check(c.create_permission(("127.0.0.1", 9))[0] == 0, "CreatePermission failed")
        base = _fds(u)
        for rnd in range(2):
            socks = _flood(relay, 8)
            check(len(_attempts(c, 8, 5)) == 8, "round %d: not 8 ConnectionAttempts" % rnd)
            check(_fds(u) - base >= 8, "round %d: the peer connections are not held" % rnd)
            for s in socks:
                s.close()
            start = time.monotonic()
            wait_for(lambda: _fds(u) <= base, 5, "fds back to baseline after the peers closed "
                     "(%d above)" % (_fds(u) - base))
            print("round %d: 8 pending peer connections freed %.1fs after their peers closed"
                  % (rnd, time.monotonic() - start))
        # The count went back too: 8 more are accepted.
        socks = _flood(relay, 8)
        check(len(_attempts(c, 8, 5)) == 8, "the cap was not given back")
        for s in socks:
            s.close()
        wait_for(lambda: _fds(u) <= base, 5, "fds back to baseline")
        # A peer that sent bytes and closed before the bind keeps them for the client. Behind it a
        # peer that closes with nothing sent: once a sweep freed that one, it has seen both.
        p = socket.create_connection(relay)
        ids = _attempts(c, 1, 5)
        check(len(ids) == 1, "no ConnectionAttempt for the early-closing peer")
        p.sendall(b"early bytes")
        p.close()
        q = socket.create_connection(relay)
        check(len(_attempts(c, 1, 5)) == 1, "no ConnectionAttempt for the second peer")
        q.close()
        wait_for(lambda: _fds(u) <= base + 1, 5, "the peer that sent nothing to be freed")
        check(_fds(u) == base + 1, "the peer with unread bytes was dropped with them")
        d = connection_bind(u, c, ids[0])
        d.sock.settimeout(3)
        check(d.sock.recv(64) == b"early bytes", "bytes of a peer that closed before the bind lost")
        check(wait_closed(d.sock, 5), "data connection of a closed peer not closed")


def test_connect_beyond_cap():
    conf = BASE + ["max-peer-connections = 3", "user-peer-connection-quota = 5", "user-quota = 2"]
    with Uturnd(conf=conf, threads=2) as u:
        srvs = []
        for _ in range(6):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            s.listen(4)
            srvs.append(s)
        c, relay = tcp_allocate(u)
        for i in range(3):
            code, _ = connect_peer(c, srvs[i].getsockname()[1])
            check(code == 0, "Connect %d answered %s" % (i, code))
        code, _ = connect_peer(c, srvs[3].getsockname()[1])
        check(code == 508, "Connect past max-peer-connections answered %s, not 508" % code)
        # Incoming peers count against the same cap: closed at accept.
        check(c.create_permission(("127.0.0.1", 9))[0] == 0, "CreatePermission failed")
        extra = socket.create_connection(relay)
        check(wait_closed(extra, 5), "incoming peer past the cap not closed")
        check(not _attempts(c, 1, 1.5), "ConnectionAttempt for a peer past the cap")
        # A peer that goes away gives its place back within a sweep.
        conn0, _ = srvs[0].accept()
        conn0.close()
        wait_for(lambda: connect_peer(c, srvs[4].getsockname()[1])[0] == 0, 5,
                 "a Connect once a peer closed")
        # Per user across allocations: the second allocation gets the 2 left of 5.
        c2, _ = tcp_allocate(u)
        for i in (3, 5):
            code, _ = connect_peer(c2, srvs[i].getsockname()[1])
            check(code == 0, "second allocation: Connect to peer %d answered %s" % (i, code))
        code, _ = connect_peer(c2, srvs[1].getsockname()[1])
        check(code == 508, "Connect past user-peer-connection-quota answered %s, not 508" % code)
        # The other user is not affected.
        b, _ = tcp_allocate(u, "bob")
        check(connect_peer(b, srvs[1].getsockname()[1])[0] == 0, "bob's Connect refused")


def test_caps_reload():
    with Uturnd(conf=BASE + ["max-peer-connections = 1", "user-peer-connection-quota = 1"]) as u:
        srvs = []
        for _ in range(3):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            s.listen(1)
            srvs.append(s)
        ports = [s.getsockname()[1] for s in srvs]
        c, _ = tcp_allocate(u)
        check(connect_peer(c, ports[0])[0] == 0, "first Connect failed")
        check(connect_peer(c, ports[1])[0] == 508, "max-peer-connections = 1 not enforced")
        for key, old, new in [("max-peer-connections", 1, 2), ("user-peer-connection-quota", 1, 3)]:
            check(connect_peer(c, ports[1])[0] == 508, "a Connect past the caps before %s grew" % key)
            with open(u.conf_path, "a") as f:
                f.write("%s = %d\n" % (key, new))
            u.proc.send_signal(signal.SIGHUP)
            wait_for(lambda: "%s: %d -> %d" % (key, old, new) in u.log(), 10, "reload report")
        wait_for(lambda: connect_peer(c, ports[1])[0] == 0, 5, "a second Connect after the reload")
        check(connect_peer(c, ports[2])[0] == 508, "max-peer-connections = 2 not enforced")


def _free_admin_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


if __name__ == "__main__":
    run()
