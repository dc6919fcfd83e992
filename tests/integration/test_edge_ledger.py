"""The resource ledger's rows that no other test file proves at the shipped default: TCP client
connections from one source IP (`max-tcp-connections-per-ip`, 256 per worker), and client TCP
connections in all (`max-tcp-connections`, by default half of RLIMIT_NOFILE). Reaching a cap closes
the extra connections only: another source is still served, and a TURN client still allocates a
relay socket and relays (docs/SECURITY.md, "Resource ledger")."""
import os
import resource
import socket
import subprocess

import uturn

from uturn import (Uturnd, binding_request, check, get_attr, parse, read_frame, run,
                   wait_closed, wait_for, xor_address, TurnClient)

DEFAULT_TCP_PER_IP = 256  # server/base/cfg_table.c: max-tcp-connections-per-ip


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


def _relay_round_trip(c, peer, payload):
    """Allocate with c, permit the peer, and relay payload to it and an answer back."""
    code, _ = c.allocate()
    check(code == 0, "allocate: %s" % code)
    code, _ = c.create_permission(peer.getsockname())
    check(code == 0, "permission: %s" % code)
    c.send_indication(*peer.getsockname(), payload)
    peer.settimeout(3)
    data, relayed = peer.recvfrom(2048)
    check(data == payload, "peer got %r" % data)
    peer.sendto(b"back", relayed)
    got = c.receive_data()
    check(got is not None and got[2] == b"back", "client got %r" % (got,))


def _open_fds(u):
    return len(os.listdir("/proc/%d/fd" % u.proc.pid))


def test_tcp_per_ip_default_cap():
    """One worker, the default cap: 256 connections from 127.0.0.1 are served, the 257th is closed,
    and 127.0.0.2 is served and can relay while 127.0.0.1 holds all of its 256."""
    peer = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    peer.bind(("127.0.0.1", 0))
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
            _relay_round_trip(c, peer, b"ledger-tcp")
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


FD_LIMIT = 256  # RLIMIT_NOFILE for the capped uturnd: max-tcp-connections defaults to half, 128


class FdCappedUturnd(Uturnd):
    """uturnd started with RLIMIT_NOFILE = FD_LIMIT (soft and hard)."""

    def _spawn(self, conf, args, threads):
        real = subprocess.Popen

        def popen(*a, **kw):
            kw["preexec_fn"] = lambda: resource.setrlimit(resource.RLIMIT_NOFILE,
                                                          (FD_LIMIT, FD_LIMIT))
            return real(*a, **kw)
        uturn.subprocess.Popen = popen
        try:
            super()._spawn(conf, args, threads)
        finally:
            uturn.subprocess.Popen = real


def _served(u, src):
    """A connection from src that answers a Binding, or None when it is refused or closed."""
    try:
        s = _conn(u, src)
    except OSError:
        return None
    try:
        _binding_ok(s)
        return s
    except (OSError, uturn.TestFailure):
        s.close()
        return None


def test_tcp_total_default_cap_keeps_fds_for_relays():
    """Two workers, RLIMIT_NOFILE 256: 300 connections from four IPs (75 each, far below the per-IP
    cap) get at most 128 served; a UDP client still allocates a relay socket and relays, and the
    connections are served again once the flood goes."""
    peer = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    peer.bind(("127.0.0.1", 0))
    with FdCappedUturnd(conf=["user = alice:secret", "allow-loopback-peers = true"]) as u:
        base_fds = _open_fds(u)
        held, refused = [], 0
        try:
            for i in range(300):
                s = _served(u, "127.0.0.%d" % (1 + i % 4))
                if s is None:
                    refused += 1
                else:
                    held.append(s)
            print("300 connections: %d served, %d refused; uturnd fds %d -> %d (limit %d)"
                  % (len(held), refused, base_fds, _open_fds(u), FD_LIMIT))
            check(len(held) <= FD_LIMIT // 2,
                  "%d connections served, the default cap is %d" % (len(held), FD_LIMIT // 2))
            check(len(held) >= FD_LIMIT // 2 - 8, "only %d served below the cap" % len(held))
            check("too many TCP connections in all" in u.log(), "no refusal logged")
            c = TurnClient(u, "alice", "secret")
            _relay_round_trip(c, peer, b"ledger-total")
            c.refresh(0)
            c.close()
        finally:
            for s in held:
                s.close()
        wait_for(lambda: _open_fds(u) <= base_fds, 10, "uturnd fds back to %d" % base_fds)
        served = [_served(u, "127.0.0.1") for _ in range(FD_LIMIT // 2)]
        check(all(served), "%d of %d connections served after the flood"
              % (sum(1 for s in served if s), len(served)))
        for s in served:
            s.close()
    peer.close()


if __name__ == "__main__":
    run()
