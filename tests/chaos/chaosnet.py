"""Transports and payload tags for the chaos test (tests/chaos/test_chaos.py).

ChaosConn is the harness's TurnClient over one more transport (DTLS, with pyOpenSSL's memory BIOs
over a UDP socket to the TLS port, where uturnd tells DTLS from STUN by the first byte, RFC 7983),
bound to a chosen loopback source address, and with a buffered stream reader so a read that times
out in the middle of a frame loses nothing (a lost half-frame would look like a server fault).

Every relayed payload carries a tag: the seed, sender id, receiver id, sequence number, and the
relayed port the sender aimed at (or sent from), so whoever receives it can tell whether it was
meant for it.
"""
import errno
import os
import socket
import ssl
import struct
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "integration"))

from uturn import TestFailure, TurnClient  # noqa: E402

TAG = struct.Struct("!4sIHHIH")  # magic, seed, sender, receiver, seq, relayed port
TAG_MAGIC = b"CHX1"
STREAM_HDR = struct.Struct("!4sH")  # magic, length of what follows (tag + body): RFC 6062 data
STREAM_MAGIC = b"CHS1"


def bind_src(sock, src_ip, ports=None):
    """Bind to src_ip and the next free port from ports() (deterministic source ports make the
    kernel's SO_REUSEPORT choice of worker repeat on a replay), or an ephemeral port."""
    if ports is not None:
        if sock.type == socket.SOCK_STREAM:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # past TIME_WAIT
        for _ in range(50):
            try:
                sock.bind((src_ip, ports()))
                return
            except OSError as e:
                if e.errno != errno.EADDRINUSE:
                    raise
    sock.bind((src_ip, 0))


class Closed(Exception):
    """The other end closed the connection (or reset it)."""


def make_payload(seed, sender, receiver, seq, port, body_len, rng):
    return TAG.pack(TAG_MAGIC, seed & 0xFFFFFFFF, sender, receiver, seq, port) + rng.randbytes(body_len)


def parse_payload(data):
    """(seed, sender, receiver, seq, port) or None when the bytes are not one of our payloads."""
    if len(data) < TAG.size or data[:4] != TAG_MAGIC:
        return None
    return TAG.unpack(data[:TAG.size])[1:]


def stream_frame(payload):
    return STREAM_HDR.pack(STREAM_MAGIC, len(payload)) + payload


class StreamParser:
    """Splits an RFC 6062 data stream back into our frames; any other byte is corruption."""

    def __init__(self):
        self.buf = b""

    def feed(self, data):
        self.buf += data
        out = []
        while len(self.buf) >= STREAM_HDR.size:
            magic, n = STREAM_HDR.unpack(self.buf[:STREAM_HDR.size])
            if magic != STREAM_MAGIC:
                raise TestFailure("corrupt TCP relay stream: %r" % self.buf[:32])
            if len(self.buf) < STREAM_HDR.size + n:
                break
            out.append(self.buf[STREAM_HDR.size:STREAM_HDR.size + n])
            self.buf = self.buf[STREAM_HDR.size + n:]
        return out


class Dtls:
    """A DTLS 1.2 client over a connected UDP socket (pyOpenSSL memory BIOs; OpenSSL does the
    cookie exchange and the retransmissions, driven by DTLSv1_handle_timeout)."""

    def __init__(self, host, port, src_ip, timeout=5.0, ports=None):
        from OpenSSL import SSL
        from OpenSSL._util import lib
        self.SSL, self.lib = SSL, lib
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        bind_src(self.sock, src_ip, ports)
        self.sock.connect((host, port))
        ctx = SSL.Context(SSL.DTLS_METHOD)
        ctx.set_verify(SSL.VERIFY_NONE, lambda *a: True)  # a throw-away self-signed certificate
        self.conn = SSL.Connection(ctx, None)
        self.conn.set_connect_state()
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.conn.do_handshake()
                self._flush()
                return
            except SSL.WantReadError:
                self._flush()
            if time.monotonic() > deadline:
                self.sock.close()
                raise TestFailure("DTLS handshake did not finish within %.1fs" % timeout)
            if not self._feed(0.2):
                self.lib.DTLSv1_handle_timeout(self.conn._ssl)
                self._flush()

    def _flush(self):
        while True:
            try:
                data = self.conn.bio_read(65536)
            except self.SSL.WantReadError:
                return
            if not data:
                return
            try:
                self.sock.send(data)
            except (ConnectionRefusedError, BlockingIOError):
                pass

    def _feed(self, timeout):
        self.sock.settimeout(max(0.001, timeout))
        try:
            data = self.sock.recv(65536)
        except socket.timeout:
            return False
        except ConnectionRefusedError:
            return False
        self.conn.bio_write(data)
        return True

    def send(self, data):
        self.conn.send(data)
        self._flush()

    def recv(self, timeout):
        deadline = time.monotonic() + timeout
        while True:
            try:
                return self.conn.recv(65536)
            except self.SSL.WantReadError:
                self._flush()
            except self.SSL.ZeroReturnError:
                raise Closed("DTLS close_notify")
            except self.SSL.Error as e:
                raise Closed("DTLS error %s" % e)
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            if not self._feed(min(left, 0.2)):
                self.lib.DTLSv1_handle_timeout(self.conn._ssl)
                self._flush()

    def close(self, notify=True):
        if notify:
            try:
                self.conn.shutdown()
                self._flush()
            except self.SSL.Error:
                pass
        self.sock.close()


def dtls_abandon(host, port, src_ip, flights, ports=None):
    """A DTLS client that sends `flights` handshake flights (1: ClientHello without a cookie,
    2: with the cookie, 3: the key exchange and Finished) and then vanishes without a word."""
    from OpenSSL import SSL
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    bind_src(sock, src_ip, ports)
    sock.connect((host, port))
    ctx = SSL.Context(SSL.DTLS_METHOD)
    ctx.set_verify(SSL.VERIFY_NONE, lambda *a: True)
    conn = SSL.Connection(ctx, None)
    conn.set_connect_state()
    sent = 0
    try:
        for _ in range(flights):
            try:
                conn.do_handshake()
            except SSL.WantReadError:
                pass
            while True:
                try:
                    data = conn.bio_read(65536)
                except SSL.WantReadError:
                    break
                sock.send(data)
            sent += 1
            sock.settimeout(0.5)
            try:
                conn.bio_write(sock.recv(65536))
                # the server's flight may span several datagrams
                sock.settimeout(0.05)
                while True:
                    conn.bio_write(sock.recv(65536))
            except (socket.timeout, ConnectionRefusedError):
                pass
    except SSL.Error:
        pass
    finally:
        sock.close()
    return sent


class ChaosConn(TurnClient):
    """TurnClient over udp, tcp, tls or dtls from a chosen source address."""

    def __init__(self, server, user, password, transport, src_ip, ports=None):
        self.server = server
        self.user, self.password = user, password
        self.transport = transport
        self.realm = self.nonce = self.algs = None
        self.sha256 = self.userhash = False
        self.stash = []
        self.rbuf = b""
        self.dtls = None
        self.closed = False
        self.timeout = 3.0  # for a response
        if transport == "udp":
            self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            bind_src(self.sock, src_ip, ports)
        elif transport == "dtls":
            self.dtls = Dtls(server.host, server.tls_port, src_ip, ports=ports)
            self.sock = self.dtls.sock
        else:
            raw = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            bind_src(raw, src_ip, ports)
            raw.settimeout(5)
            port = server.tls_port if transport == "tls" else server.port
            raw.connect((server.host, port))
            if transport == "tls":
                ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
                ctx.check_hostname = False
                ctx.verify_mode = ssl.CERT_NONE  # a throw-away self-signed certificate
                ctx.set_alpn_protocols(["stun.turn"])
                raw = ctx.wrap_socket(raw)
            self.sock = raw

    def transact(self, data, txid, timeout=None):
        return TurnClient.transact(self, data, txid, timeout or self.timeout)

    def stream(self):
        return self.transport in ("tcp", "tls")

    def local(self):
        return self.sock.getsockname()

    def close(self, notify=True):
        if self.closed:
            return
        self.closed = True
        if self.dtls:
            self.dtls.close(notify)
            return
        try:
            if not notify and self.stream():
                # An abrupt end: RST instead of FIN (SO_LINGER 0).
                self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.sock.close()
        except OSError:
            pass

    def send_raw(self, data):
        try:
            if self.transport == "udp":
                self.sock.sendto(data, (self.server.host, self.server.port))
            elif self.dtls:
                self.dtls.send(data)
            else:
                self.sock.sendall(data)
        except (BrokenPipeError, ConnectionResetError, ssl.SSLError, socket.timeout) as e:
            raise Closed("send: %s" % e)
        except OSError as e:
            raise Closed("send: %s" % e)

    def recv_bytes(self, timeout):
        """Raw bytes from a stream (after ConnectionBind: the relayed data); b'' never: Closed."""
        if self.rbuf:
            data, self.rbuf = self.rbuf, b""
            return data
        return self._recv_stream(timeout)

    def _recv_stream(self, timeout):
        """One read from the stream socket: bytes, None on timeout; Closed on EOF or error."""
        self.sock.settimeout(max(0.001, timeout))
        try:
            data = self.sock.recv(65536)
        except (socket.timeout, ssl.SSLWantReadError):
            return None
        except (ConnectionResetError, BrokenPipeError, ssl.SSLError, OSError) as e:
            raise Closed("recv: %s" % e)
        if not data:
            raise Closed("EOF")
        return data

    def _frame(self):
        b = self.rbuf
        if len(b) < 4:
            return None
        n = struct.unpack("!H", b[2:4])[0]
        if b[0] & 0xC0 == 0x40:
            total = 4 + ((n + 3) & ~3)
        elif b[0] < 4:
            total = 20 + n
        else:
            raise TestFailure("uturnd sent a stream frame that is neither STUN nor ChannelData: %r"
                              % b[:32])
        if len(b) < total:
            return None
        self.rbuf = b[total:]
        return b[:total]

    def recv_raw(self, timeout=3.0):
        if self.transport == "udp":
            self.sock.settimeout(max(0.001, timeout))
            try:
                return self.sock.recvfrom(65536)[0]
            except socket.timeout:
                return None
            except ConnectionRefusedError:
                return None
        if self.dtls:
            return self.dtls.recv(timeout)
        deadline = time.monotonic() + timeout
        while True:
            f = self._frame()
            if f is not None:
                return f
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            data = self._recv_stream(left)
            if data is None:
                return None
            self.rbuf += data

    def channel_data(self, number, data):
        pad = b"\0" * ((4 - len(data) % 4) % 4) if self.stream() else b""
        self.send_raw(struct.pack("!HH", number, len(data)) + data + pad)
