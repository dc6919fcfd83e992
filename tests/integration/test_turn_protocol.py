"""TURN protocol rules (RFC 8656, RFC 8489 auth) checked with our own client against the real
uturnd: the 401 challenge, wrong password, stale and foreign nonces, 437/441/442/486/508,
retransmitted Allocate, every deny-list bypass form answered 403, SHA-256 integrity and USERHASH,
data through permissions and channels over UDP and TCP, Refresh and deletion, amplification limit."""
import socket
import struct
import time

from uturn import (tid, A_ADD_FAMILY, A_EVEN_PORT, A_LIFETIME, A_MI, A_MI256, A_NONCE, A_PW_ALGS,
                   A_REALM, A_RELAYED, A_TOKEN, A_XOR_MAPPED, M_ALLOCATE, TurnClient, Uturnd, attr,
                   check, get_attr, parse, relayed_addresses, run, verify_integrity, wait_for,
                   xor_address)

USERS = ["user = alice:alice-pass", "user = bob:bob-pass"]
BASE = USERS + ["realm = uturn.test", "allow-loopback-peers", "min-port = 41000",
                "max-port = 41999"]


def _peer():
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    s.settimeout(3)
    return s


def test_challenge_and_wrong_password():
    with Uturnd(conf=BASE) as u:
        c = TurnClient(u, "alice", "alice-pass")
        code, attrs = c.allocate(auth=False)
        check(code == 401, "unauthenticated Allocate: %s" % code)
        check(get_attr(attrs, A_REALM) == b"uturn.test", "REALM %r" % get_attr(attrs, A_REALM))
        nonce = get_attr(attrs, A_NONCE)
        check(nonce and nonce.startswith(b"obMatJos2"), "nonce lacks the RFC 8489 cookie: %r" % nonce)
        check(get_attr(attrs, A_PW_ALGS) is not None, "no PASSWORD-ALGORITHMS in the 401")
        check(get_attr(attrs, A_MI) is None, "a 401 carries MESSAGE-INTEGRITY")
        bad = TurnClient(u, "alice", "nope")
        check(bad.allocate()[0] == 401, "wrong password not refused")
        check(bad.refresh(600)[0] == 437, "a failed Allocate left an allocation behind")
        nobody = TurnClient(u, "mallory", "x")
        check(nobody.allocate()[0] == 401, "unknown user not refused")
        code, attrs, raw = c.allocate(raw_response=True)
        check(code == 0, "Allocate failed: %s" % code)
        check(verify_integrity(raw, c.key()), "success response integrity does not verify")
        relay = relayed_addresses(raw)
        check(len(relay) == 1 and relay[0][0] == "127.0.0.1" and 41000 <= relay[0][1] <= 41999,
              "relayed %r" % relay)
        check(xor_address(get_attr(attrs, A_XOR_MAPPED), raw[8:20]) == c.sock.getsockname()[:2],
              "XOR-MAPPED-ADDRESS wrong")
        check(struct.unpack("!I", get_attr(attrs, A_LIFETIME))[0] == 600, "default lifetime not 600")
        check("auth_fail" in u.log(), "auth failures were not logged")


def test_stale_and_foreign_nonce():
    with Uturnd(conf=BASE + ["stale-nonce = 2"]) as u:
        c = TurnClient(u, "alice", "alice-pass")
        check(c.allocate()[0] == 0, "Allocate failed")
        # Another 5-tuple may not use this client's nonce: 438 (and a nonce of its own).
        other = TurnClient(u, "alice", "alice-pass")
        other.realm, other.nonce = c.realm, c.nonce
        code, attrs = other.allocate(retry=False)
        check(code == 438 and get_attr(attrs, A_NONCE) != c.nonce, "foreign nonce answered %s" % code)
        # After stale-nonce seconds the nonce is stale: 438, then success with the new one.
        wait_for(lambda: c.refresh(600, retry=False)[0] == 438, 10, "438 after stale-nonce = 2 s",
                 interval=0.5)
        check(c.refresh(600)[0] == 0, "Refresh with the fresh nonce failed")


def test_mismatch_and_retransmission():
    with Uturnd(conf=BASE) as u:
        c = TurnClient(u, "alice", "alice-pass")
        check(c.allocate()[0] == 0, "first Allocate failed")
        check(c.allocate()[0] == 437, "second Allocate on the 5-tuple not 437")
        # A retransmission (same transaction id) gets the very same bytes back.
        d = TurnClient(u, "alice", "alice-pass")
        d.allocate(auth=False)
        txid = b"R" * 12
        code1, _, raw1 = d.request(M_ALLOCATE, attr(0x0019, b"\x11\0\0\0"), txid=txid,
                                   raw_response=True)
        code2, _, raw2 = d.request(M_ALLOCATE, attr(0x0019, b"\x11\0\0\0"), txid=txid,
                                   raw_response=True)
        check(code1 == 0 and raw1 == raw2, "retransmitted Allocate got a different answer")
        # 441: bob authenticates fine but on alice's allocation.
        b = TurnClient(u, "bob", "bob-pass")
        b.sock.close()
        b.sock = c.sock
        b.realm, b.nonce = c.realm, c.nonce
        check(b.refresh(600)[0] == 441, "another user's Refresh not 441")
        # 442: a transport protocol nobody relays; 400: a TCP relay asked for over UDP (RFC 6062).
        e = TurnClient(u, "alice", "alice-pass")
        check(e.allocate(transport=99)[0] == 442, "REQUESTED-TRANSPORT 99 not 442")
        check(e.allocate(transport=6)[0] == 400, "TCP allocation over UDP not 400")
        # No allocation: 437.
        f = TurnClient(u, "alice", "alice-pass")
        f.allocate(auth=False)
        check(f.refresh(600)[0] == 437, "Refresh without allocation not 437")


def test_quota_and_capacity():
    with Uturnd(conf=BASE[:3] + ["allow-loopback-peers", "user-quota = 2", "min-port = 42000",
                                 "max-port = 42002", "total-quota = 3"]) as u:
        clients = [TurnClient(u, "alice", "alice-pass") for _ in range(3)]
        check(clients[0].allocate()[0] == 0 and clients[1].allocate()[0] == 0, "quota too small")
        check(clients[2].allocate()[0] == 486, "third allocation of a user-quota 2 user not 486")
        b1 = TurnClient(u, "bob", "bob-pass")
        check(b1.allocate()[0] == 0, "bob could not allocate")
        b2 = TurnClient(u, "bob", "bob-pass")
        check(b2.allocate()[0] == 508, "allocation past total-quota not 508")
        # Delete one: its port and quota are free again at once.
        check(clients[0].refresh(0)[0] == 0, "Refresh 0 failed")
        check(b2.allocate()[0] == 0, "a port freed by a delete was not reusable at once")


def test_ports_exhausted_508():
    with Uturnd(conf=BASE[:3] + ["allow-loopback-peers", "min-port = 43000", "max-port = 43001"]) as u:
        c = [TurnClient(u, "alice", "alice-pass") for _ in range(3)]
        check(c[0].allocate()[0] == 0 and c[1].allocate()[0] == 0, "two ports, two allocations")
        check(c[2].allocate()[0] == 508, "no port left but not 508")
        check(c[0].refresh(0)[0] == 0, "delete failed")
        check(c[2].allocate()[0] == 0, "freed port not reused")


BYPASS = ["127.0.0.1", "127.1.2.3", "::ffff:127.0.0.1", "0.0.0.0", "::", "::1", "2002:7f00:1::1",
          "64:ff9b::7f00:1", "169.254.169.254", "10.0.0.1", "192.168.1.1", "224.0.0.1",
          "255.255.255.255", "fe80::1", "fc00::1"]


def test_deny_list_bypass_forms_403():
    # TEST-NET-3 is not globally reachable (IANA registry): relaying to it needs an opt-in.
    conf = USERS + ["realm = uturn.test", "relay-ip = 127.0.0.1", "relay-ip = ::1",
                    "min-port = 44000", "max-port = 44999", "allowed-peer-ip = 203.0.113.0/24"]
    with Uturnd(conf=conf) as u:
        c = TurnClient(u, "alice", "alice-pass")
        code, attrs, raw = c.allocate(extra=attr(A_ADD_FAMILY, b"\x02\0\0\0"), raw_response=True)
        check(code == 0, "dual-stack Allocate failed: %s" % code)
        fams = sorted(":" in ip for ip, _ in relayed_addresses(raw))
        check(fams == [False, True], "not a dual allocation: %r" % relayed_addresses(raw))
        for ip in BYPASS:
            code, _ = c.create_permission((ip, 5000))
            check(code == 403, "CreatePermission to %s answered %s, not 403" % (ip, code))
            code, _ = c.channel_bind(0x4001, ip, 5000)
            check(code == 403, "ChannelBind to %s answered %s, not 403" % (ip, code))
        check(c.create_permission(("203.0.113.9", 5000))[0] == 0, "an allowed peer was refused")
        check(c.create_permission(("198.51.100.9", 5000))[0] == 403, "TEST-NET-2 was not refused")


def test_sha256_and_userhash():
    with Uturnd(conf=BASE + ["userhash"]) as u:
        c = TurnClient(u, "alice", "alice-pass")
        c.allocate(auth=False)
        check(c.algs is not None, "no PASSWORD-ALGORITHMS offered")
        c.sha256 = True
        code, attrs, raw = c.allocate(raw_response=True)
        check(code == 0, "SHA-256 Allocate failed: %s" % code)
        check(get_attr(attrs, A_MI256) is not None, "answer lacks MESSAGE-INTEGRITY-SHA256")
        check(verify_integrity(raw, c.key()), "MESSAGE-INTEGRITY-SHA256 does not verify")
        h = TurnClient(u, "bob", "bob-pass")
        h.allocate(auth=False)
        h.userhash = True
        code, attrs, raw = h.allocate(raw_response=True)
        check(code == 0, "USERHASH Allocate failed: %s" % code)
        check(verify_integrity(raw, h.key()), "USERHASH answer integrity does not verify")
        # Tampered PASSWORD-ALGORITHMS (a downgrade attempt) is a 400.
        t = TurnClient(u, "alice", "alice-pass")
        t.allocate(auth=False)
        t.sha256 = True
        t.algs = struct.pack("!HHHH", 1, 0, 2, 0)
        check(t.allocate()[0] == 400, "altered PASSWORD-ALGORITHMS not refused")


def _relay_both_ways(c, transport):
    peer = _peer()
    pip, pport = peer.getsockname()
    # Without a permission, nothing passes either way.
    c.send_indication(pip, pport, b"no-permission")
    check(c.create_permission((pip, pport))[0] == 0, "CreatePermission failed")
    c.send_indication(pip, pport, b"via-send")
    data, relay = peer.recvfrom(2048)
    check(data == b"via-send", "peer got %r first (the unpermitted send leaked?)" % data)
    peer.sendto(b"back-as-data", relay)
    got = c.receive_data()
    check(got == ("data", (pip, pport), b"back-as-data"), "Data indication: %r" % (got,))
    check(c.channel_bind(0x4123, pip, pport)[0] == 0, "ChannelBind failed")
    c.channel_data(0x4123, b"via-channel")
    data, _ = peer.recvfrom(2048)
    check(data == b"via-channel", "peer got %r" % data)
    peer.sendto(b"x" * 13, relay)  # odd length: padding on streams
    got = c.receive_data()
    check(got == ("channel", 0x4123, b"x" * 13), "ChannelData: %r" % (got,))
    # A peer with no permission (another loopback address) is dropped, silently.
    stranger = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    stranger.bind(("127.0.0.2", 0))
    stranger.sendto(b"stranger", relay)
    peer.sendto(b"after-stranger", relay)
    got = c.receive_data()
    check(got == ("channel", 0x4123, b"after-stranger"), "unpermitted peer got through: %r" % (got,))


def test_relay_udp_and_tcp_clients():
    with Uturnd(conf=BASE) as u:
        for transport in ("udp", "tcp"):
            c = TurnClient(u, "alice", "alice-pass", transport=transport)
            check(c.allocate()[0] == 0, "%s Allocate failed" % transport)
            _relay_both_ways(c, transport)
            c.close()


def test_refresh_lifetimes_and_delete():
    with Uturnd(conf=BASE + ["max-allocate-lifetime = 1200"]) as u:
        c = TurnClient(u, "alice", "alice-pass")
        code, attrs = c.allocate(extra=attr(A_LIFETIME, struct.pack("!I", 99999)))
        check(struct.unpack("!I", get_attr(attrs, A_LIFETIME))[0] == 1200, "lifetime not capped")
        code, attrs = c.refresh(700)
        check(code == 0 and struct.unpack("!I", get_attr(attrs, A_LIFETIME))[0] == 700, "refresh 700")
        code, attrs = c.refresh(0)
        check(code == 0 and struct.unpack("!I", get_attr(attrs, A_LIFETIME))[0] == 0, "delete")
        check(c.refresh(600)[0] == 437, "allocation still there after LIFETIME 0")


def test_even_port_reservation():
    with Uturnd(conf=BASE) as u:
        c = TurnClient(u, "alice", "alice-pass")
        code, attrs, raw = c.allocate(extra=attr(A_EVEN_PORT, b"\x80"), raw_response=True)
        check(code == 0, "EVEN-PORT R Allocate failed: %s" % code)
        port = relayed_addresses(raw)[0][1]
        token = get_attr(attrs, A_TOKEN)
        check(port % 2 == 0 and token is not None and len(token) == 8, "port %d token %r" % (port, token))
        d = TurnClient(u, "alice", "alice-pass")
        code, attrs, raw = d.allocate(extra=attr(A_TOKEN, token), raw_response=True)
        check(code == 0 and relayed_addresses(raw)[0][1] == port + 1,
              "token redeemed for %r, want port %d" % (relayed_addresses(raw), port + 1))
        e = TurnClient(u, "alice", "alice-pass")
        check(e.allocate(extra=attr(A_TOKEN, token))[0] == 508, "a token redeemed twice")


def test_amplification_limit():
    # RFC 8656 §21.2, in bytes: an unauthenticated answer may be up to K = 4 times its request (the
    # request pays for it, so a spoofer cannot spend a victim's share: test_edge_limiter.py); bytes
    # beyond that are metered per source IP (a burst of 2048, then 512/s).
    with Uturnd(conf=BASE) as u:
        c = TurnClient(u, "alice", "alice-pass")
        for label, body in (("28-byte Allocates", attr(0x0019, b"\x11\0\0\0")),
                            ("bare 20-byte Allocates", b"")):
            sent, sent_bytes, got, got_bytes = 200, 0, 0, 0
            t0 = time.monotonic()
            for i in range(sent):
                txid = struct.pack("!I", i) + b"A" * 8
                pkt = struct.pack("!HHI", 3, len(body), 0x2112A442) + txid + body
                c.send_raw(pkt)
                sent_bytes += len(pkt)
            while True:
                r = c.recv_raw(0.5)
                if r is None:
                    break
                got, got_bytes = got + 1, got_bytes + len(r)
            bound = 4 * sent_bytes + 2048 + 512 * (time.monotonic() - t0 + 1)
            print("%s: %d answers, %d bytes to %d request bytes (bound %d)" %
                  (label, got, got_bytes, sent_bytes, bound))
            check(0 < got and got_bytes <= bound, "%s: %d answer bytes to %d request bytes" %
                  (label, got_bytes, sent_bytes))
            if not body:
                check(got < sent, "answers beyond 4x their request were not metered: %d of %d"
                      % (got, sent))


def test_data_right_before_delete_is_relayed():
    # ChannelData and the Refresh(0) that deletes the allocation often arrive in one receive batch:
    # the datagram must still leave (sends are batched; the relay socket closes on delete).
    with Uturnd(conf=BASE, threads=1) as u:
        peer = _peer()
        pip, pport = peer.getsockname()
        for i in range(20):
            c = TurnClient(u, "alice", "alice-pass")
            check(c.allocate()[0] == 0 and c.channel_bind(0x4001, pip, pport)[0] == 0, "setup")
            txid = tid()
            body = attr(0x000D, b"\0\0\0\0")
            from uturn import with_integrity, mtype, A_USERNAME, A_REALM, A_NONCE
            body += attr(A_USERNAME, b"alice") + attr(A_REALM, c.realm.encode()) + attr(A_NONCE, c.nonce)
            delete = with_integrity(mtype(4, 0), txid, body, c.key())
            c.send_raw(struct.pack("!HH", 0x4001, 7) + b"last-%02d" % i + b"\0")
            c.send_raw(delete)
            data, _ = peer.recvfrom(64)
            check(data == b"last-%02d" % i, "datagram sent right before the delete lost: %r" % data)
            c.close()


if __name__ == "__main__":
    run()
