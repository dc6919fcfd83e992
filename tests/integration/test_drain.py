"""Drain and ALTERNATE-SERVER (RFC 8489 §10, RFC 8656 §7.2): SIGUSR1 stops new allocations with an
authenticated 300 Try Alternate naming the configured alternate (ALTERNATE-DOMAIN over TLS) while
existing allocations keep relaying; total-quota redirects the same way; with drain-exit uturnd exits
by itself once the last allocation ends; SIGHUP reloads reloadable keys and reports the rest."""
import os
import signal
import socket
import struct
import tempfile

from uturn import (TurnClient, Uturnd, check, get_attr, make_cert, run, verify_integrity, wait_for)

A_ALTERNATE_SERVER, A_ALTERNATE_DOMAIN = 0x8023, 0x8003
BASE = ["user = alice:alice-pass", "realm = uturn.test", "allow-loopback-peers",
        "min-port = 46000", "max-port = 46999", "alternate-server = 203.0.113.20:3478",
        "tls-alternate-server = 203.0.113.20:5349", "alternate-domain = turn2.example.net"]


def _plain_addr(v):
    fam, port = v[1], struct.unpack("!H", v[2:4])[0]
    return socket.inet_ntop(socket.AF_INET if fam == 1 else socket.AF_INET6, v[4:]), port


def _relay_ok(c, peer):
    pip, pport = peer.getsockname()
    c.channel_data(0x4001, b"still-here")
    data, relay = peer.recvfrom(2048)
    check(data == b"still-here", "existing allocation stopped relaying")
    peer.sendto(b"and-back", relay)
    check(c.receive_data() == ("channel", 0x4001, b"and-back"), "no way back")


def test_drain_redirects_and_keeps_existing():
    with Uturnd(conf=BASE) as u:
        c = TurnClient(u, "alice", "alice-pass")
        check(c.allocate()[0] == 0, "Allocate failed")
        peer = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        peer.bind(("127.0.0.1", 0))
        peer.settimeout(3)
        check(c.channel_bind(0x4001, *peer.getsockname())[0] == 0, "ChannelBind failed")
        u.proc.send_signal(signal.SIGUSR1)
        wait_for(lambda: "draining" in u.log(), 5, "drain log line")
        n = TurnClient(u, "alice", "alice-pass")
        code, attrs, raw = n.allocate(raw_response=True)
        check(code == 300, "Allocate while draining answered %s, not 300" % code)
        alt = get_attr(attrs, A_ALTERNATE_SERVER)
        check(alt is not None and _plain_addr(alt) == ("203.0.113.20", 3478), "ALTERNATE-SERVER %r" % alt)
        check(get_attr(attrs, A_ALTERNATE_DOMAIN) is None, "ALTERNATE-DOMAIN sent over plain UDP")
        check(verify_integrity(raw, n.key()), "the 300 is not integrity-protected")
        _relay_ok(c, peer)
        check(c.refresh(600)[0] == 0, "Refresh of an existing allocation refused while draining")


def test_drain_over_tls_names_domain():
    d = tempfile.mkdtemp()
    cert, key = make_cert(os.path.join(d, "c"), "uturn-drain")
    with Uturnd(conf=BASE + ["cert = " + cert, "pkey = " + key]) as u:
        u.proc.send_signal(signal.SIGUSR1)
        wait_for(lambda: "draining" in u.log(), 5, "drain log line")
        t = TurnClient(u, "alice", "alice-pass", transport="tls")
        code, attrs = t.allocate()
        check(code == 300, "TLS Allocate while draining answered %s" % code)
        check(_plain_addr(get_attr(attrs, A_ALTERNATE_SERVER)) == ("203.0.113.20", 5349),
              "TLS clients not sent to tls-alternate-server")
        check(get_attr(attrs, A_ALTERNATE_DOMAIN) == b"turn2.example.net", "ALTERNATE-DOMAIN missing")


def test_total_quota_redirects():
    with Uturnd(conf=BASE + ["total-quota = 1"]) as u:
        a = TurnClient(u, "alice", "alice-pass")
        check(a.allocate()[0] == 0, "first Allocate failed")
        b = TurnClient(u, "alice", "alice-pass")
        check(b.allocate()[0] == 300, "Allocate past total-quota not redirected")


def test_drain_exit_after_last_allocation():
    u = Uturnd(conf=BASE + ["drain-exit"])
    try:
        c = TurnClient(u, "alice", "alice-pass")
        check(c.allocate()[0] == 0, "Allocate failed")
        u.proc.send_signal(signal.SIGUSR1)
        wait_for(lambda: "draining" in u.log(), 5, "drain log line")
        check(u.alive(), "exited while an allocation was still live")
        check(c.refresh(0)[0] == 0, "delete failed")
        wait_for(lambda: u.proc.poll() is not None, 10, "exit after the last allocation")
        check(u.proc.returncode == 0, "exit status %d" % u.proc.returncode)
        check("drained" in u.log(), "no drained log line")
    finally:
        u.stop()
    u.assert_clean()


def test_sighup_reload_report():
    with Uturnd(conf=BASE + ["user-quota = 1"]) as u:
        a = TurnClient(u, "alice", "alice-pass")
        check(a.allocate()[0] == 0, "first Allocate failed")
        b = TurnClient(u, "alice", "alice-pass")
        check(b.allocate()[0] == 486, "user-quota 1 not enforced")
        with open(u.conf_path, "a") as f:
            f.write("user-quota = 2\nmin-port = 46100\n")
        u.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: "user-quota: 1 -> 2" in u.log(), 10, "reload report")
        check("min-port: 46000 -> 46100 (needs a restart: not applied)" in u.log(),
              "non-reloadable change not reported")
        wait_for(lambda: TurnClient(u, "alice", "alice-pass").allocate()[0] == 0, 5,
                 "user-quota 2 in effect after reload")
        # A config that does not validate changes nothing.
        with open(u.conf_path, "a") as f:
            f.write("user-quota = lots\n")
        u.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: "not reloaded" in u.log(), 10, "refused reload log line")


if __name__ == "__main__":
    run()
