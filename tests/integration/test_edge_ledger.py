"""The resource ledger's rows that no other test file proves at the shipped default: TCP client
connections from one source IP (`max-tcp-connections-per-ip`, 256 per worker). Reaching the cap
from one IP closes that IP's extra connections only: another source is still served, and a TURN
client of that other source still allocates and relays (docs/SECURITY.md, "Resource ledger")."""
import socket

from uturn import (Uturnd, binding_request, check, get_attr, parse, read_frame, run,
                   wait_closed, wait_for, xor_address, TurnClient)

DEFAULT_TCP_PER_IP = 256  # server/cfg_table.c: max-tcp-connections-per-ip


def _conn(u, src):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind((src, 0))
    s.settimeout(5)
    s.connect((u.host, u.port))
    return s


def _binding_ok(s):
    txid, req = binding_request()
    s.sendall(req)
    resp = read_frame(s)
    mtype, rtid, attrs = parse(resp)
    check(mtype == 0x0101 and rtid == txid, "no Binding success (type 0x%04x)" % mtype)
    check(xor_address(get_attr(attrs, 0x0020), txid) == s.getsockname()[:2], "bad XOR-MAPPED-ADDRESS")


def _open_fds(u):
    import os
    return len(os.listdir("/proc/%d/fd" % u.proc.pid))


def test_tcp_per_ip_default_cap():
    """One worker, the default cap: 256 connections from 127.0.0.1 are served, the 257th is closed,
    and 127.0.0.2 is served and can relay while 127.0.0.1 holds all of its 256."""
    peer = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    peer.bind(("127.0.0.1", 0))
    peer_port = peer.getsockname()[1]
    with Uturnd(conf=["user = alice:secret", "allow-loopback-peers = true"], threads=1) as u:
        base_fds = _open_fds(u)
        held = []
        try:
            for _ in range(DEFAULT_TCP_PER_IP):
                s = _conn(u, "127.0.0.1")
                _binding_ok(s)
                held.append(s)
            extra = _conn(u, "127.0.0.1")
            check(wait_closed(extra, 5), "connection %d from one IP was not refused"
                  % (DEFAULT_TCP_PER_IP + 1))
            extra.close()
            # Another source is unaffected: a Binding and a whole TURN/TCP relay round trip.
            other = _conn(u, "127.0.0.2")
            _binding_ok(other)
            other.close()
            c = TurnClient(u, "alice", "secret", transport="tcp")
            c.sock.close()
            c.sock = _conn(u, "127.0.0.2")
            code, _ = c.allocate()
            check(code == 0, "allocate from another IP at the cap: %s" % code)
            code, _ = c.create_permission(("127.0.0.1", peer_port))
            check(code == 0, "permission: %s" % code)
            c.send_indication("127.0.0.1", peer_port, b"ledger-tcp")
            peer.settimeout(3)
            data, relayed = peer.recvfrom(2048)
            check(data == b"ledger-tcp", "peer got %r" % data)
            peer.sendto(b"back", relayed)
            got = c.receive_data()
            check(got is not None and got[2] == b"back", "client got %r" % (got,))
            c.close()
        finally:
            for s in held:
                s.close()
        # Every connection and its count are released: the fds come back.
        wait_for(lambda: _open_fds(u) <= base_fds, 10, "uturnd fds back to %d" % base_fds)
        s = _conn(u, "127.0.0.1")
        _binding_ok(s)
        s.close()
    peer.close()


if __name__ == "__main__":
    run([test_tcp_per_ip_default_cap])
