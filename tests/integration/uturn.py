"""Integration-test harness: start the real uturnd on free loopback ports and talk STUN to it.

Every test starts its own uturnd with a generated config, waits for its "ready" log line with a
deadline, and on stop checks the exit status and that stderr has no sanitizer report. The STUN helpers
here are a small client of our own (RFC 8489 encoding with zlib's CRC-32), used alongside the real
third-party clients (turnutils_*), never instead of them.
"""
import os
import random
import re
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
import zlib

BUILDDIR = os.environ.get("UTURN_BUILDDIR", os.path.abspath(os.path.join(os.path.dirname(__file__), "../..")))
SRCDIR = os.environ.get("UTURN_SRCDIR", os.path.abspath(os.path.join(os.path.dirname(__file__), "../..")))
UTURND = os.path.join(BUILDDIR, "uturnd")

MAGIC = 0x2112A442
SANITIZER_PATTERNS = re.compile(
    r"(ERROR: AddressSanitizer|ERROR: LeakSanitizer|runtime error:|WARNING: ThreadSanitizer|"
    r"SUMMARY: UndefinedBehaviorSanitizer)")


class TestFailure(AssertionError):
    pass


def check(cond, what):
    if not cond:
        raise TestFailure(what)


def free_port(host="127.0.0.1"):
    """A port free for both UDP and TCP on host (the daemon binds both)."""
    fam = socket.AF_INET6 if ":" in host else socket.AF_INET
    for _ in range(200):
        t = socket.socket(fam, socket.SOCK_STREAM)
        t.bind((host, 0))
        port = t.getsockname()[1]
        u = socket.socket(fam, socket.SOCK_DGRAM)
        try:
            u.bind((host, port))
        except OSError:
            t.close()
            u.close()
            continue
        t.close()
        u.close()
        return port
    raise TestFailure("no free port")


def wait_for(cond, timeout, what, interval=0.02):
    """Poll cond() until it is truthy or the deadline passes."""
    deadline = time.monotonic() + timeout
    while True:
        v = cond()
        if v:
            return v
        if time.monotonic() > deadline:
            raise TestFailure("timed out after %.1fs waiting for %s" % (timeout, what))
        time.sleep(interval)


class Uturnd:
    """A running uturnd. Use as a context manager: stops it and checks its stderr on exit."""

    def __init__(self, conf=None, args=(), host="127.0.0.1", port=None, threads=2, expect_start=True):
        self.host = host
        self.port = port or free_port(host)
        self.dir = tempfile.mkdtemp(prefix="uturn-test-")
        self.conf_path = os.path.join(self.dir, "uturnd.conf")
        base = {"listening-ip": host, "listening-port": str(self.port), "relay-threads": str(threads),
                "log-level": "debug"}
        lines = ["%s = %s" % kv for kv in base.items()]
        for line in (conf or []):
            lines.append(line)
        with open(self.conf_path, "w") as f:
            f.write("\n".join(lines) + "\n")
        self.stderr_path = os.path.join(self.dir, "stderr.log")
        self.stderr = open(self.stderr_path, "wb")
        env = dict(os.environ)
        env.setdefault("ASAN_OPTIONS", "detect_leaks=1:abort_on_error=0")
        env.setdefault("UBSAN_OPTIONS", "print_stacktrace=1")
        self.proc = subprocess.Popen([UTURND, "-c", self.conf_path] + list(args),
                                     stdout=subprocess.DEVNULL, stderr=self.stderr, env=env)
        if expect_start:
            wait_for(lambda: self._ready_or_dead(), 20, "uturnd ready line")
            check(self.proc.poll() is None, "uturnd exited at start:\n" + self.log())

    def _ready_or_dead(self):
        return self.proc.poll() is not None or " ready: " in self.log()

    def log(self):
        with open(self.stderr_path, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def rss_kib(self):
        with open("/proc/%d/status" % self.proc.pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        return 0

    def alive(self):
        return self.proc.poll() is None

    def stop(self, sig=signal.SIGTERM, timeout=20):
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise TestFailure("uturnd did not stop within %ds of signal %d" % (timeout, sig))
        self.stderr.close()
        return self.proc.returncode

    def assert_clean(self):
        log = self.log()
        m = SANITIZER_PATTERNS.search(log)
        check(m is None, "sanitizer report in uturnd stderr:\n" + log[-6000:])

    def __enter__(self):
        return self

    def __exit__(self, et, ev, tb):
        rc = self.stop()
        if et is None:
            self.assert_clean()
            check(rc == 0, "uturnd exit status %d, log:\n%s" % (rc, self.log()[-4000:]))
        return False


# ---- a small STUN client of our own ----

def tid():
    return os.urandom(12)


def attr(t, value):
    pad = (4 - len(value) % 4) % 4
    return struct.pack("!HH", t, len(value)) + value + b"\0" * pad


def message(mtype, txid, attrs=b"", fingerprint=False):
    body = attrs
    if fingerprint:
        hdr = struct.pack("!HHI", mtype, len(body) + 8, MAGIC) + txid
        crc = (zlib.crc32(hdr + body) & 0xFFFFFFFF) ^ 0x5354554E
        body += attr(0x8028, struct.pack("!I", crc))
    return struct.pack("!HHI", mtype, len(body), MAGIC) + txid + body


def parse(data):
    """Decode a STUN message into (type, txid, [(attr_type, value)]); raises on bad framing."""
    check(len(data) >= 20, "short STUN message (%d bytes)" % len(data))
    mtype, length, cookie = struct.unpack("!HHI", data[:8])
    check(cookie == MAGIC, "bad cookie")
    check(length + 20 == len(data), "length %d != %d" % (length + 20, len(data)))
    attrs, off = [], 20
    while off < len(data):
        t, l = struct.unpack("!HH", data[off:off + 4])
        attrs.append((t, data[off + 4:off + 4 + l]))
        off += 4 + l + ((4 - l % 4) % 4)
    return mtype, data[8:20], attrs


def get_attr(attrs, t):
    for at, v in attrs:
        if at == t:
            return v
    return None


def xor_address(value, txid):
    fam = value[1]
    port = struct.unpack("!H", value[2:4])[0] ^ (MAGIC >> 16)
    if fam == 1:
        ip = struct.unpack("!I", value[4:8])[0] ^ MAGIC
        return socket.inet_ntop(socket.AF_INET, struct.pack("!I", ip)), port
    key = struct.pack("!I", MAGIC) + txid
    raw = bytes(a ^ b for a, b in zip(value[4:20], key))
    return socket.inet_ntop(socket.AF_INET6, raw), port


def fingerprint_ok(data):
    check(len(data) >= 28, "too short for FINGERPRINT")
    t, l = struct.unpack("!HH", data[-8:-4])
    if t != 0x8028:
        return False
    crc = (zlib.crc32(data[:-8]) & 0xFFFFFFFF) ^ 0x5354554E
    return struct.unpack("!I", data[-4:])[0] == crc


def binding_request(fingerprint=False, extra=b""):
    t = tid()
    return t, message(0x0001, t, extra, fingerprint)


def udp_transact(sock, addr, data, txid, timeout=3.0):
    """Send a request and return the response with the same transaction id (retransmits once a
    second, as a STUN client over UDP would)."""
    deadline = time.monotonic() + timeout
    sock.sendto(data, addr)
    next_send = time.monotonic() + 1.0
    while time.monotonic() < deadline:
        sock.settimeout(max(0.01, min(next_send, deadline) - time.monotonic()))
        try:
            resp, _ = sock.recvfrom(65536)
        except socket.timeout:
            if time.monotonic() >= next_send:
                sock.sendto(data, addr)
                next_send = time.monotonic() + 1.0
            continue
        if len(resp) >= 20 and resp[8:20] == txid:
            return resp
    raise TestFailure("no response within %.1fs" % timeout)


def read_frame(sock, timeout=3.0):
    """Read one STUN message from a stream (20-byte header, then the body)."""
    sock.settimeout(timeout)
    buf = b""
    while len(buf) < 20:
        chunk = sock.recv(20 - len(buf))
        check(chunk, "connection closed while reading a header")
        buf += chunk
    length = struct.unpack("!H", buf[2:4])[0]
    while len(buf) < 20 + length:
        chunk = sock.recv(20 + length - len(buf))
        check(chunk, "connection closed while reading a body")
        buf += chunk
    return buf


def wait_closed(sock, timeout):
    """True when the peer closes the connection (EOF or reset) within timeout."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        sock.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            data = sock.recv(65536)
        except socket.timeout:
            continue
        except (ConnectionResetError, BrokenPipeError):
            return True
        if not data:
            return True
    return False


def run(tests):
    """Run test functions in order; print one line each and exit non-zero on any failure."""
    failed = 0
    for fn in tests:
        start = time.monotonic()
        try:
            fn()
            print("PASS %s (%.2fs)" % (fn.__name__, time.monotonic() - start), flush=True)
        except Exception as e:  # noqa: BLE001 - report every failure, go on with the next test
            failed += 1
            import traceback
            traceback.print_exc()
            print("FAIL %s: %s" % (fn.__name__, e), flush=True)
    print("%d passed, %d failed" % (len(tests) - failed, failed))
    sys.exit(1 if failed else 0)
