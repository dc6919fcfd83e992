"""TURN over TLS and DTLS (RFC 8656 §3.1, RFC 7350, RFC 7443): real turnutils_uclient over TLS and
DTLS in ChannelData and Send/Data modes, ALPN, the TLS 1.2 floor, certificate reload on SIGHUP while a
TLS client keeps relaying (and a bad new certificate keeping the old one), aioice over TURN/TLS,
and hostile input: TLS garbage, a ClientHello flood, DTLS without a cookie."""
import asyncio
import os
import shutil
import signal
import socket
import ssl
import struct
import subprocess
import tempfile
import time

from uturn import (TurnClient, Uturnd, check, make_cert, run, start_peer, uclient, wait_for,
                   wait_closed)

USER, PASS = "tls-user", "tls-pass-1"


def _server(d, extra=()):
    cert, key = make_cert(os.path.join(d, "cert1"), "uturn-test-1")
    conf = ["user = %s:%s" % (USER, PASS), "realm = uturn.test", "allow-loopback-peers",
            "cert = " + os.path.join(d, "live.crt"), "pkey = " + os.path.join(d, "live.key"),
            "min-port = 45000", "max-port = 45999", "tcp-frame-timeout = 3"] + list(extra)
    shutil.copy(cert, os.path.join(d, "live.crt"))
    shutil.copy(key, os.path.join(d, "live.key"))
    return Uturnd(conf=conf)


def _subject(u, alpn=None, extra=()):
    cmd = ["openssl", "s_client", "-connect", "127.0.0.1:%d" % u.tls_port, "-servername", "x"]
    if alpn:
        cmd += ["-alpn", alpn]
    out = subprocess.run(cmd + list(extra), input="", capture_output=True, text=True, timeout=20)
    return out.returncode, out.stdout + out.stderr


def test_uclient_tls_and_dtls():
    d = tempfile.mkdtemp()
    peer, pport = start_peer()
    try:
        with _server(d) as u:
            for label, flags in [("tls channel", ["-t", "-S"]), ("tls send", ["-t", "-S", "-s"]),
                                 ("dtls channel", ["-S"]), ("dtls send", ["-S", "-s"])]:
                args = ["-u", USER, "-w", PASS, "-e", "127.0.0.1", "-r", str(pport), "-n", "20",
                        "-m", "2"] + flags
                sent, recv, lost, text = uclient(u, args, port=u.tls_port)
                check(sent > 0 and recv == sent and lost == 0,
                      "%s: sent %d received %d lost %d\n%s" % (label, sent, recv, lost, text[-2000:]))
                print("%s: sent %d received %d lost %d" % (label, sent, recv, lost))
    finally:
        peer.send_signal(signal.SIGTERM)
        peer.wait(10)


def test_alpn_and_tls_floor():
    d = tempfile.mkdtemp()
    with _server(d) as u:
        rc, out = _subject(u, alpn="stun.turn")
        check("ALPN protocol: stun.turn" in out, "no stun.turn ALPN:\n" + out[-1500:])
        rc, out = _subject(u, alpn="stun.nat-discovery")
        check("ALPN protocol: stun.nat-discovery" in out, "no stun.nat-discovery ALPN")
        rc, out = _subject(u, alpn="h2")
        check("No ALPN negotiated" in out and "CN = uturn-test-1" in out, "foreign ALPN broke TLS")
        rc, out = _subject(u, extra=["-tls1_1", "-cipher", "DEFAULT:@SECLEVEL=0"])
        check("Cipher is (NONE)" in out or rc != 0, "TLS 1.1 was accepted:\n" + out[-1500:])


def test_cert_reload_keeps_live_client():
    d = tempfile.mkdtemp()
    with _server(d) as u:
        c = TurnClient(u, USER, PASS, transport="tls")
        check(c.allocate()[0] == 0, "TLS Allocate failed")
        peer = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        peer.bind(("127.0.0.1", 0))
        peer.settimeout(3)
        pip, pport = peer.getsockname()
        check(c.channel_bind(0x4001, pip, pport)[0] == 0, "ChannelBind failed")

        def round_trip(tag):
            c.channel_data(0x4001, tag)
            data, relay = peer.recvfrom(2048)
            check(data == tag, "peer got %r" % data)
            peer.sendto(tag + b"-back", relay)
            got = c.receive_data()
            check(got == ("channel", 0x4001, tag + b"-back"), "client got %r" % (got,))

        round_trip(b"before")
        cert2, key2 = make_cert(os.path.join(d, "cert2"), "uturn-test-2")
        shutil.copy(cert2, os.path.join(d, "live.crt"))
        shutil.copy(key2, os.path.join(d, "live.key"))
        u.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: "cert: reloaded" in u.log(), 10, "reload log line")
        round_trip(b"after-reload")  # the connection made with the old certificate goes on
        rc, out = _subject(u)
        check("CN = uturn-test-2" in out, "new connection does not see the new certificate")
        # A broken certificate file: the old one stays, and the reason is logged.
        with open(os.path.join(d, "live.crt"), "w") as f:
            f.write("not a certificate\n")
        u.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: "kept the old certificate" in u.log(), 10, "bad-cert log line")
        rc, out = _subject(u)
        check("CN = uturn-test-2" in out, "bad reload replaced the certificate")
        round_trip(b"after-bad-reload")
        c.close()


def test_aioice_over_turn_tls():
    import aioice
    import aioice.ice
    d = tempfile.mkdtemp()
    with _server(d) as u:
        # aioice verifies the server certificate: trust our throw-away one (it names 127.0.0.1).
        os.environ["SSL_CERT_FILE"] = os.path.join(d, "live.crt")

        async def main():
            orig = aioice.ice.get_host_addresses
            aioice.ice.get_host_addresses = lambda use_ipv4, use_ipv6: []  # loopback only
            try:
                a = aioice.Connection(ice_controlling=True, turn_server=("127.0.0.1", u.tls_port),
                                      turn_username=USER, turn_password=PASS, turn_ssl=True,
                                      turn_transport="tcp", use_ipv6=False,
                                      transport_policy=aioice.TransportPolicy.RELAY)
                b = aioice.Connection(ice_controlling=False, turn_server=("127.0.0.1", u.tls_port),
                                      turn_username=USER, turn_password=PASS, turn_ssl=True,
                                      turn_transport="tcp", use_ipv6=False,
                                      transport_policy=aioice.TransportPolicy.RELAY)
                await asyncio.wait_for(asyncio.gather(a.gather_candidates(), b.gather_candidates()), 20)
                check(a.local_candidates and all(x.type == "relay" for x in a.local_candidates),
                      "non-relay candidates: %r" % a.local_candidates)
                for x, y in ((a, b), (b, a)):
                    for cand in y.local_candidates:
                        await x.add_remote_candidate(cand)
                    await x.add_remote_candidate(None)
                    x.remote_username, x.remote_password = y.local_username, y.local_password
                await asyncio.wait_for(asyncio.gather(a.connect(), b.connect()), 30)
                for i in range(5):
                    await a.sendto(b"ping%d" % i, 1)
                    data, _ = await asyncio.wait_for(b.recvfrom(), 10)
                    check(data == b"ping%d" % i, "got %r" % data)
                    await b.sendto(b"pong%d" % i, 1)
                    data, _ = await asyncio.wait_for(a.recvfrom(), 10)
                    check(data == b"pong%d" % i, "got %r" % data)
                await a.close()
                await b.close()
            finally:
                aioice.ice.get_host_addresses = orig
        asyncio.run(asyncio.wait_for(main(), 90))


def test_hostile_tls_and_dtls():
    d = tempfile.mkdtemp()
    with _server(d, ["max-tcp-connections-per-ip = 20"]) as u:
        # Garbage on the TLS port: closed.
        g = socket.create_connection(("127.0.0.1", u.tls_port), timeout=5)
        g.sendall(b"\x00\x01\x00\x00" + b"GARBAGE" * 20)
        check(wait_closed(g, 5), "TLS garbage connection still open")
        # A ClientHello flood that never finishes its handshakes: bounded by the per-IP cap and the
        # handshake timeout (tcp-frame-timeout = 3 s); a real client still gets through meanwhile.
        flood = []
        for _ in range(40):
            s = socket.create_connection(("127.0.0.1", u.tls_port), timeout=5)
            s.sendall(b"\x16\x03\x01\x00\xc8\x01\x00\x00\xc4\x03\x03")  # a ClientHello's start
            flood.append(s)
        # The per-IP cap counts the flood too: the handshake timeout must clear it.
        check(all(wait_closed(s, 10) for s in flood), "stalled handshakes not closed")
        c = TurnClient(u, USER, PASS, transport="tls")
        check(c.allocate()[0] == 0, "legitimate TLS client refused after the flood")
        # DTLS ClientHello without a cookie from many spoofable sources: each gets a
        # HelloVerifyRequest, and no session is kept.
        for i in range(50):
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.settimeout(2)
            ch = dtls_client_hello()
            s.sendto(ch, ("127.0.0.1", u.tls_port))
            try:
                resp, _ = s.recvfrom(2048)
                check(resp[0] == 22 and resp[13] == 3, "not a HelloVerifyRequest: %r" % resp[:16])
            except socket.timeout:
                raise AssertionError("no HelloVerifyRequest")
            s.close()
        sessions = [l for l in u.log().splitlines() if "dtls_close" in l]
        check(not sessions, "sessions were created for cookie-less hellos: %r" % sessions[:3])
        check(u.alive(), "uturnd died")


def dtls_client_hello():
    """A minimal DTLS 1.2 ClientHello with an empty cookie (enough for a HelloVerifyRequest)."""
    rnd = os.urandom(32)
    suites = struct.pack("!H", 4) + struct.pack("!HH", 0xC02B, 0xC02F)
    exts = b""
    body = (b"\xfe\xfd" + rnd + b"\x00" + b"\x00" + suites + b"\x01\x00" +
            struct.pack("!H", len(exts)) + exts)
    hs = struct.pack("!B", 1) + len(body).to_bytes(3, "big") + b"\x00\x00" + b"\x00\x00\x00" + \
        len(body).to_bytes(3, "big") + body
    return struct.pack("!BHHHIH", 22, 0xfeff, 0, 0, 0, len(hs)) + hs


if __name__ == "__main__":
    run()
