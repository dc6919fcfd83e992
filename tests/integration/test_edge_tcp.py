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
import socket
import struct
import tempfile
import time
import http.client

from uturn import (A_PEER, TurnClient, Uturnd, attr, check, get_attr, make_cert, parse,
                   relayed_addresses, run, tid, wait_closed, wait_for, xor_addr_value, xor_address)

A_CONNECTION_ID = 0x002A
M_CONNECT, M_CONNECTION_BIND = 0x00A, 0x00B
T_CONNECTION_ATTEMPT = 0x001C  # indication class of method 0x00C
USERS = ["user = alice:alice-pass", "user = bob:bob-pass"]
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


def _udp_peer():
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    s.settimeout(3)
    return s


def _tcp_alloc(u, user="alice", transport="tcp"):
    c = TurnClient(u, user, user + "-pass", transport=transport)
    code, _, raw = c.allocate(transport=6, raw_response=True)
    check(code == 0, "%s: TCP Allocate failed: %s" % (user, code))
    return c, tuple(relayed_addresses(raw)[0])


def _bind(u, c, cid, expect=0):
    d = TurnClient(u, c.user, c.password, transport="tcp")
    d.realm, d.nonce = c.realm, c.nonce
    code, _ = d.request(M_CONNECTION_BIND, attr(A_CONNECTION_ID, cid), retry=False)
    check(code == expect, "ConnectionBind answered %s, not %s" % (code, expect or "success"))
    return d


def _connect(c, port):
    txid = tid()
    code, attrs = c.request(M_CONNECT, attr(A_PEER, xor_addr_value("127.0.0.1", port, txid)),
                            txid=txid)
    return code, get_attr(attrs, A_CONNECTION_ID)


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
    raise AssertionError("no %s in /metrics" % name)


def _others_still_served(u):
    """bob allocates over TCP (TCP relay: Connect and a byte pipe) and over UDP (a datagram each
    way), while alice is at her caps."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)
    b, _ = _tcp_alloc(u, "bob")
    code, cid = _connect(b, srv.getsockname()[1])
    check(code == 0, "bob's Connect answered %s while alice was at her cap" % code)
    peer, _ = srv.accept()
    d = _bind(u, b, cid)
    d.sock.sendall(b"bob over tcp")
    peer.settimeout(3)
    check(peer.recv(64) == b"bob over tcp", "bob's TCP relay did not carry data")
    e = TurnClient(u, "bob", "bob-pass")
    check(e.allocate()[0] == 0, "bob's UDP Allocate refused while alice was at her cap")
    p = _udp_peer()
    check(e.create_permission(p.getsockname())[0] == 0, "bob's CreatePermission failed")
    e.send_indication(*p.getsockname(), b"bob over udp")
    data, src = p.recvfrom(100)
    check(data == b"bob over udp", "bob's UDP relay did not carry data")
    p.sendto(b"back", src)
    got = e.receive_data()
    check(got is not None and got[2] == b"back", "no Data indication for bob: %r" % (got,))
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
            peer = _udp_peer()
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
                data, relay = peer.recvfrom(100)
                check(data == b"hello %d" % i, "%s: client->peer data lost" % transport)
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
        c, relay = _tcp_alloc(u)
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
        d = _bind(u, c, cid)
        d.sock.sendall(b"to peer")
        p.settimeout(3)
        check(p.recv(64) == b"to peer", "bound data connection does not reach the peer")
        p.sendall(b"to client")
        d.sock.settimeout(3)
        check(d.sock.recv(64) == b"to client", "peer bytes do not reach the data connection")


def _free_admin_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


if __name__ == "__main__":
    run([test_connection_bind_on_control_connection, test_connection_bind_only_first_on_new_connection])
