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
# UTURN_VALGRIND=1 runs every uturnd under valgrind's memcheck (on demand, with a build that has no
# sanitizers, e.g. `./configure && make`): any memory error or definite/indirect leak makes uturnd
# exit 99, which the exit check reports together with valgrind's log.
VALGRIND = os.environ.get("UTURN_VALGRIND", "") not in ("", "0")
SLOW = 4 if VALGRIND else 1  # start and stop deadlines grow under valgrind

MAGIC = 0x2112A442
SANITIZER_PATTERNS = re.compile(
    r"(ERROR: AddressSanitizer|ERROR: LeakSanitizer|runtime error:|WARNING: ThreadSanitizer|"
    r"SUMMARY: UndefinedBehaviorSanitizer)")


class TestFailure(AssertionError):
    pass


def check(cond, what):
    if not cond:
        raise TestFailure(what)


def make_cert(path_prefix, cn):
    """A throw-away self-signed certificate and key (openssl CLI). Returns (cert, key) paths."""
    cert, key = path_prefix + ".crt", path_prefix + ".key"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                    "-nodes", "-keyout", key, "-out", cert, "-days", "2", "-subj", "/CN=" + cn,
                    "-addext", "subjectAltName=IP:127.0.0.1,IP:::1,DNS:localhost"],
                   check=True, capture_output=True, timeout=30)
    return cert, key


_given_ports = set()
_port_rng = random.SystemRandom()  # not the tests' seeded random: parallel runs must differ


def _control_port_span():
    """Where tests take the ports of their own listeners: from 20000 to just below the kernel's
    ephemeral range (net.ipv4.ip_local_port_range, 32768 by default), where no connect() and no
    bind to port 0 lands, and below every relay range the tests configure (40000 and up). An
    ephemeral port found by binding port 0 and closing can be taken by any connection (the
    daemon's own Redis connections, a client) before the daemon binds it."""
    high = 32767
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            high = min(high, int(f.read().split()[0]) - 1)
    except (OSError, ValueError, IndexError):
        pass
    return 20000, high


def free_ports(hosts=("127.0.0.1",), count=1):
    """P such that P .. P+count-1 are free for both UDP and TCP on every host (the daemon binds
    both), and not handed out before by this process."""
    low, high = _control_port_span()
    for _ in range(2000):
        if high - count + 1 - low >= 100:
            port = _port_rng.randint(low, high - count + 1)
        else:  # no room below the ephemeral range: take one the kernel picks
            s = socket.socket(socket.AF_INET6 if ":" in hosts[0] else socket.AF_INET,
                              socket.SOCK_DGRAM)
            s.bind((hosts[0], 0))
            port = s.getsockname()[1]
            s.close()
            if port + count - 1 > 65535:
                continue
        span = range(port, port + count)
        if any(p in _given_ports for p in span):
            continue
        if all(_bindable(h, p, kind) for h in hosts for p in span
               for kind in (socket.SOCK_STREAM, socket.SOCK_DGRAM)):
            _given_ports.update(span)
            return port
    raise TestFailure("no free port")


def _bindable(host, port, kind):
    s = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, kind)
    try:
        s.bind((host, port))
        return True
    except OSError:
        return False
    finally:
        s.close()


def free_port(host="127.0.0.1"):
    """A port free for both UDP and TCP on host (the daemon binds both)."""
    return free_ports((host,), 1)


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

    def __init__(self, conf=None, args=(), host="127.0.0.1", port=None, threads=2, expect_start=True,
                 tls_port=None, env=None):
        self.host = host
        self.env_extra = env or {}
        self.dir = tempfile.mkdtemp(prefix="uturn-test-")
        self.conf_path = os.path.join(self.dir, "uturnd.conf")
        self.stderr_path = os.path.join(self.dir, "stderr.log")
        # Free ports are only free until someone else takes them (tests run in parallel): when the
        # daemon cannot bind a port we chose, choose again. A port the caller fixed is not retried.
        for attempt in range(5):
            self.port = port or free_port(host)
            self.tls_port = tls_port or free_port(host)
            self._spawn(conf, args, threads)
            if not expect_start:
                return
            wait_for(lambda: self._ready_or_dead(), 20 * SLOW, "uturnd ready line")
            if self.proc.poll() is None:
                return
            if "already in use" not in self.log() or (port and tls_port) or attempt == 4:
                break
            self.stderr.close()
        check(self.proc.poll() is None, "uturnd exited at start:\n" + self.log())

    def _spawn(self, conf, args, threads):
        base = {"listening-ip": self.host, "listening-port": str(self.port),
                "relay-threads": str(threads), "log-level": "debug",
                "tls-listening-port": str(self.tls_port)}
        lines = ["%s = %s" % kv for kv in base.items()]
        for line in (conf or []):
            lines.append(line)
        with open(self.conf_path, "w") as f:
            f.write("\n".join(lines) + "\n")
        self.stderr = open(self.stderr_path, "wb")
        env = dict(os.environ)
        env.setdefault("ASAN_OPTIONS", "detect_leaks=1:abort_on_error=0")
        env.setdefault("UBSAN_OPTIONS", "print_stacktrace=1")
        for k, v in self.env_extra.items():
            env[k] = env[k] + ":" + v if k.endswith("SAN_OPTIONS") and env.get(k) else v
        cmd = [UTURND, "-c", self.conf_path] + list(args)
        if VALGRIND:
            self.valgrind_log = os.path.join(self.dir, "valgrind.log")
            cmd = ["valgrind", "--quiet", "--error-exitcode=99", "--leak-check=full",
                   "--errors-for-leak-kinds=definite,indirect", "--show-leak-kinds=definite,indirect",
                   # freed blocks wait in a queue (20 MB by default) that would look like growth
                   "--freelist-vol=1000000",
                   "--log-file=" + self.valgrind_log] + cmd
        self.proc = subprocess.Popen(cmd,
                                     stdout=subprocess.DEVNULL, stderr=self.stderr, env=env)

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
        timeout *= SLOW
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
        if VALGRIND:
            with open(self.valgrind_log, errors="replace") as f:
                vlog = f.read()
            check(self.proc.returncode != 99, "valgrind found errors or leaks:\n" + vlog[-6000:])

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


def udp_transact_from(sock, addr, data, txid, timeout=3.0):
    """Send a request and return (response, source address) of the answer with the same
    transaction id (retransmits once a second, as a STUN client over UDP would)."""
    deadline = time.monotonic() + timeout
    sock.sendto(data, addr)
    next_send = time.monotonic() + 1.0
    while time.monotonic() < deadline:
        sock.settimeout(max(0.01, min(next_send, deadline) - time.monotonic()))
        try:
            resp, src = sock.recvfrom(65536)
        except socket.timeout:
            if time.monotonic() >= next_send:
                sock.sendto(data, addr)
                next_send = time.monotonic() + 1.0
            continue
        if len(resp) >= 20 and resp[8:20] == txid:
            return resp, src
    raise TestFailure("no response from %s within %.1fs" % (addr, timeout))


def udp_transact(sock, addr, data, txid, timeout=3.0):
    """udp_transact_from without the source address."""
    return udp_transact_from(sock, addr, data, txid, timeout)[0]


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


# ---- running tests: discovered, selectable by name, each under a deadline ----

# Seconds a test may take unless it says otherwise (@timeout): generous beside the slowest today
# (about 30 s, under ASan or TSan), as CI machines are shared. UTURN_TEST_TIMEOUT changes it
# (0: none); under valgrind it grows with the other deadlines.
DEFAULT_TEST_TIMEOUT = float(os.environ.get("UTURN_TEST_TIMEOUT", "300")) * SLOW


class TestTimeout(TestFailure):
    pass


def timeout(seconds):
    """Decorator: this test's deadline is `seconds` instead of DEFAULT_TEST_TIMEOUT (still 0 when
    UTURN_TEST_TIMEOUT=0)."""
    def mark(fn):
        fn.timeout = seconds
        return fn
    return mark


class deadline:
    """Context manager: raise TestTimeout("<what>: ...") in the main thread if the block runs longer
    than `seconds` (SIGALRM; 0 or None: no deadline). Main thread only; not nestable."""

    def __init__(self, seconds, what):
        self.seconds, self.what = seconds, what

    def _expired(self, signum, frame):
        raise TestTimeout("%s: deadline of %.0f s passed" % (self.what, self.seconds))

    def __enter__(self):
        if self.seconds:
            self.old = signal.signal(signal.SIGALRM, self._expired)
            signal.setitimer(signal.ITIMER_REAL, self.seconds)
        return self

    def __exit__(self, et, ev, tb):
        if self.seconds:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, self.old)
        return False


def discover():
    """The test_* functions the running script (__main__) defines, in definition order."""
    mod = sys.modules["__main__"]
    fns = [v for k, v in vars(mod).items()
           if k.startswith("test_") and callable(v) and getattr(v, "__module__", None) == "__main__"]
    return sorted(fns, key=lambda f: f.__code__.co_firstlineno)


def tests_to_run(tests=None):
    """The tests to run: `tests` (default: discover()) narrowed to the names on the command line,
    in definition order. `--list` prints the names and exits 0; an unknown name exits 2. Scripts
    with a fixture call it before starting one, so a bad name costs nothing."""
    tests = discover() if tests is None else list(tests)
    args = sys.argv[1:]
    if "--list" in args:
        for fn in tests:
            print(fn.__name__)
        sys.exit(0)
    by_name = {fn.__name__: fn for fn in tests}
    unknown = [a for a in args if a not in by_name and "test_" + a not in by_name]
    if unknown:
        print("no test named %s in %s (--list shows them)" % (", ".join(unknown), sys.argv[0]),
              file=sys.stderr)
        sys.exit(2)
    if not args:
        return tests
    wanted = set(a if a in by_name else "test_" + a for a in args)
    return [fn for fn in tests if fn.__name__ in wanted]


def _stuck(signum, frame):
    print("still running %.0f s after a test's deadline (a thread it started?): exiting"
          % (60 * SLOW), flush=True)
    os._exit(1)


def run(tests=None):
    """Run the script's tests (discovered unless given; narrowed by the command line) in order, each
    under its deadline; print one line each, then "N passed, M failed", and exit non-zero on any
    failure."""
    tests = tests_to_run(tests)
    failed = 0
    timed_out = False
    for fn in tests:
        start = time.monotonic()
        limit = getattr(fn, "timeout", DEFAULT_TEST_TIMEOUT / SLOW) * SLOW if DEFAULT_TEST_TIMEOUT else 0
        try:
            with deadline(limit, fn.__name__):
                fn()
            print("PASS %s (%.2fs)" % (fn.__name__, time.monotonic() - start), flush=True)
        except Exception as e:  # noqa: BLE001 - report every failure, go on with the next test
            failed += 1
            timed_out |= isinstance(e, TestTimeout)
            import traceback
            traceback.print_exc()
            print("FAIL %s: %s" % (fn.__name__, e), flush=True)
    print("%d passed, %d failed" % (len(tests) - failed, failed), flush=True)
    if timed_out:
        # A test cut off by its deadline may have left a thread running that would keep the
        # interpreter from exiting: give the callers' cleanup a minute, then go.
        signal.signal(signal.SIGALRM, _stuck)
        signal.alarm(60 * SLOW)
    sys.exit(1 if failed else 0)


# ---- real third-party clients ----

def start_peer(host="127.0.0.1"):
    """coturn's turnutils_peer: a UDP echo peer on a free port, checked to answer. Returns (process,
    port)."""
    probe = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_DGRAM)
    probe.bind((host, 0))
    try:
        for _ in range(5):
            port = free_port(host)
            p = subprocess.Popen(["turnutils_peer", "-L", host, "-p", str(port)],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            # The port may have been taken between free_port and the peer's bind: make sure it is
            # this echo peer that answers there.
            deadline = time.monotonic() + 3
            while time.monotonic() < deadline and p.poll() is None:
                probe.sendto(b"uturn-peer-probe", (host, port))
                probe.settimeout(0.1)
                try:
                    if probe.recvfrom(64)[0] == b"uturn-peer-probe":
                        return p, port
                except (socket.timeout, ConnectionRefusedError):
                    pass
            p.kill()
            p.wait()
        raise TestFailure("turnutils_peer did not start")
    finally:
        probe.close()


def uclient_modes(server, auth, peer_port, modes):
    """Run turnutils_uclient once per (label, flags) mode to an echo peer; every packet must come
    back (lost 0)."""
    for label, flags in modes:
        sent, recv, lost, text = uclient(server, auth + ["-e", "127.0.0.1", "-r", str(peer_port),
                                                         "-n", "20", "-m", "2", "-l", "120"] + flags)
        check(sent > 0 and recv == sent and lost == 0,
              "%s: sent %d received %d lost %d\n%s" % (label, sent, recv, lost, text[-3000:]))
        print("%s: sent %d, received %d, lost %d" % (label, sent, recv, lost))


def uclient(server, args, timeout=60, port=None):
    """Run turnutils_uclient against `server` (a Uturnd; `port` overrides its plain port, e.g. the TLS
    port); returns (sent, received, lost, output)."""
    cmd = ["turnutils_uclient", "-p", str(port or server.port)] + list(args) + [server.host]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    text = out.stdout + out.stderr
    sent = re.findall(r"tot_send_msgs=(\d+)", text)
    recv = re.findall(r"tot_recv_msgs=(\d+)", text)
    lost = re.findall(r"Total lost packets (\d+)", text)
    return (int(sent[-1]) if sent else -1, int(recv[-1]) if recv else -1,
            int(lost[-1]) if lost else -1, text)


# ---- a TURN client of our own, for protocol-level checks the real clients cannot make ----

import hashlib
import hmac

A_MAPPED, A_USERNAME, A_MI, A_ERROR, A_UNKNOWN = 0x0001, 0x0006, 0x0008, 0x0009, 0x000A
A_CHANNEL, A_LIFETIME, A_PEER, A_DATA, A_REALM, A_NONCE = 0x000C, 0x000D, 0x0012, 0x0013, 0x0014, 0x0015
A_RELAYED, A_REQ_FAMILY, A_EVEN_PORT, A_REQ_TRANSPORT, A_DF = 0x0016, 0x0017, 0x0018, 0x0019, 0x001A
A_MI256, A_PW_ALG, A_USERHASH, A_XOR_MAPPED, A_TOKEN = 0x001C, 0x001D, 0x001E, 0x0020, 0x0022
A_ADD_FAMILY, A_ADDR_ERROR, A_PW_ALGS, A_SOFTWARE, A_FINGERPRINT = 0x8000, 0x8001, 0x8002, 0x8022, 0x8028

M_BINDING, M_ALLOCATE, M_REFRESH, M_SEND, M_DATA, M_PERMISSION, M_CHANNEL = 1, 3, 4, 6, 7, 8, 9


def mtype(method, cls):
    """cls: 0 request, 1 indication, 2 success, 3 error."""
    return ((method & 0xF) | ((method & 0x70) << 1) | ((method & 0xF80) << 2) | ((cls & 1) << 4)
            | ((cls & 2) << 7))


def xor_addr_value(ip, port, txid):
    if ":" in ip:
        raw = socket.inet_pton(socket.AF_INET6, ip)
        key = struct.pack("!I", MAGIC) + txid
        return struct.pack("!BBH", 0, 2, port ^ (MAGIC >> 16)) + bytes(a ^ b for a, b in zip(raw, key))
    raw = struct.unpack("!I", socket.inet_aton(ip))[0]
    return struct.pack("!BBHI", 0, 1, port ^ (MAGIC >> 16), raw ^ MAGIC)


def with_integrity(mt, txid, body, key, sha256=False, fingerprint=False):
    """Append MESSAGE-INTEGRITY(-SHA256) (and FINGERPRINT) with the RFC 8489 length adjustment."""
    mac_len = 32 if sha256 else 20
    hdr = struct.pack("!HHI", mt, len(body) + 4 + mac_len, MAGIC) + txid
    digest = hmac.new(key, hdr + body, hashlib.sha256 if sha256 else hashlib.sha1).digest()
    body += attr(A_MI256 if sha256 else A_MI, digest)
    if fingerprint:
        hdr = struct.pack("!HHI", mt, len(body) + 8, MAGIC) + txid
        crc = (zlib.crc32(hdr + body) & 0xFFFFFFFF) ^ 0x5354554E
        body += attr(A_FINGERPRINT, struct.pack("!I", crc))
    return struct.pack("!HHI", mt, len(body), MAGIC) + txid + body


def verify_integrity(data, key):
    """True when the response's MESSAGE-INTEGRITY or -SHA256 verifies with key."""
    off = 20
    while off < len(data):
        t, l = struct.unpack("!HH", data[off:off + 4])
        if t in (A_MI, A_MI256):
            hdr = bytearray(data[:20])
            struct.pack_into("!H", hdr, 2, off + 4 + l - 20)
            mac = hmac.new(key, bytes(hdr) + data[20:off],
                           hashlib.sha256 if t == A_MI256 else hashlib.sha1).digest()
            return hmac.compare_digest(mac[:l], data[off + 4:off + 4 + l])
        off += 4 + l + ((4 - l % 4) % 4)
    return False


def error_code(attrs):
    v = get_attr(attrs, A_ERROR)
    return None if v is None else v[2] * 100 + v[3]


class TurnClient:
    """One 5-tuple talking TURN to uturnd over UDP or TCP."""

    def __init__(self, server, user=None, password=None, transport="udp", family=None, local=None):
        """`local`: the address a UDP client binds (default the server's own host: loopback)."""
        self.server = server
        self.user, self.password = user, password
        self.transport = transport
        fam = socket.AF_INET6 if ":" in server.host else socket.AF_INET
        if transport == "udp":
            self.sock = socket.socket(fam, socket.SOCK_DGRAM)
            self.sock.bind((local or server.host, 0))
        elif transport == "tls":
            import ssl
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE  # tests use a throw-away self-signed certificate
            ctx.set_alpn_protocols(["stun.turn"])
            raw = socket.create_connection((server.host, server.tls_port), timeout=5)
            self.sock = ctx.wrap_socket(raw)
        else:
            self.sock = socket.create_connection((server.host, server.port), timeout=5)
        self.realm = self.nonce = None
        self.algs = None
        self.sha256 = False
        self.userhash = False
        self.stash = []  # indications and ChannelData that arrived while waiting for a response

    def key(self):
        data = ("%s:%s:%s" % (self.user, self.realm, self.password)).encode()
        return hashlib.sha256(data).digest() if self.sha256 else hashlib.md5(data).digest()

    def close(self):
        self.sock.close()

    # raw I/O
    def send_raw(self, data):
        if self.transport == "udp":
            self.sock.sendto(data, (self.server.host, self.server.port))
        else:
            self.sock.sendall(data)  # TCP, or TLS

    def recv_raw(self, timeout=3.0):
        """One datagram or one stream frame (STUN or ChannelData); None on timeout."""
        self.sock.settimeout(timeout)
        try:
            if self.transport == "udp":
                return self.sock.recvfrom(65536)[0]
            head = self._read(4)
            if head[0] & 0xC0 == 0x40:
                n = struct.unpack("!H", head[2:4])[0]
                return head + self._read((n + 3) & ~3)
            n = struct.unpack("!H", head[2:4])[0]
            return head + self._read(16 + n)
        except socket.timeout:
            return None

    def _read(self, n):
        buf = b""
        while len(buf) < n:
            chunk = self.sock.recv(n - len(buf))
            check(chunk, "connection closed")
            buf += chunk
        return buf

    def transact(self, data, txid, timeout=3.0):
        """Send and wait for the response with txid (retransmitting over UDP)."""
        deadline = time.monotonic() + timeout
        self.send_raw(data)
        resend = time.monotonic() + 0.5
        while time.monotonic() < deadline:
            msg = self.recv_raw(max(0.01, min(resend, deadline) - time.monotonic()))
            if msg is None:
                if self.transport == "udp" and time.monotonic() >= resend:
                    self.send_raw(data)
                    resend = time.monotonic() + 1.0
                continue
            if len(msg) >= 20 and msg[0] < 4 and msg[8:20] == txid:
                return msg
            self.stash.append(msg)
        raise TestFailure("no response within %.1fs" % timeout)

    def request(self, method, attrs=b"", auth=True, txid=None, fingerprint=False, raw_response=False,
                retry=True):
        """A request; with auth, answers a 401/438 challenge once. Returns (code, attrs, raw)
        where code is 0 for success."""
        for _ in range(3):
            txid = txid or tid()
            mt = mtype(method, 0)
            body = attrs
            if auth and self.nonce is not None:
                if self.userhash:
                    uh = hashlib.sha256(("%s:%s" % (self.user, self.realm)).encode()).digest()
                    body += attr(A_USERHASH, uh)
                else:
                    body += attr(A_USERNAME, self.user.encode())
                body += attr(A_REALM, self.realm.encode()) + attr(A_NONCE, self.nonce)
                if self.sha256:
                    body += attr(A_PW_ALGS, self.algs) + attr(A_PW_ALG, struct.pack("!HH", 2, 0))
                data = with_integrity(mt, txid, body, self.key(), sha256=self.sha256,
                                      fingerprint=fingerprint)
            else:
                data = message(mt, txid, body, fingerprint)
            resp = self.transact(data, txid)
            _, _, rattrs = parse(resp)
            code = error_code(rattrs) or 0
            if code in (401, 438) and get_attr(rattrs, A_NONCE):
                # Learn the realm and nonce from every challenge; answer it only when asked to.
                fresh = self.nonce is None or code == 438
                self.realm = get_attr(rattrs, A_REALM).decode()
                self.nonce = get_attr(rattrs, A_NONCE)
                self.algs = get_attr(rattrs, A_PW_ALGS)
                if auth and retry and fresh:
                    txid = None
                    continue
            return (code, rattrs, resp) if raw_response else (code, rattrs)
        return (code, rattrs, resp) if raw_response else (code, rattrs)

    # TURN methods
    def allocate(self, extra=b"", transport=17, **kw):
        return self.request(M_ALLOCATE, attr(A_REQ_TRANSPORT, bytes([transport, 0, 0, 0])) + extra, **kw)

    def refresh(self, lifetime=None, extra=b"", **kw):
        a = extra
        if lifetime is not None:
            a += attr(A_LIFETIME, struct.pack("!I", lifetime))
        return self.request(M_REFRESH, a, **kw)

    def create_permission(self, *peers):
        # XOR-PEER-ADDRESS for IPv6 depends on the transaction id: build it per request.
        txid = tid()
        body = b"".join(attr(A_PEER, xor_addr_value(ip, port, txid)) for ip, port in peers)
        return self.request(M_PERMISSION, body, txid=txid)

    def channel_bind(self, number, ip, port):
        txid = tid()
        body = attr(A_CHANNEL, struct.pack("!HH", number, 0)) + attr(A_PEER, xor_addr_value(ip, port, txid))
        return self.request(M_CHANNEL, body, txid=txid)

    def send_indication(self, ip, port, data):
        txid = tid()
        body = attr(A_PEER, xor_addr_value(ip, port, txid)) + attr(A_DATA, data)
        self.send_raw(message(mtype(M_SEND, 1), txid, body))

    def channel_data(self, number, data):
        pad = b"\0" * ((4 - len(data) % 4) % 4) if self.transport != "udp" else b""
        self.send_raw(struct.pack("!HH", number, len(data)) + data + pad)

    def receive_data(self, timeout=3.0):
        """Next relayed payload: ('data', (ip, port), bytes) for a Data indication or
        ('channel', number, bytes) for ChannelData; None on timeout."""
        deadline = time.monotonic() + timeout
        while True:
            if self.stash:
                msg = self.stash.pop(0)
            else:
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                msg = self.recv_raw(left)
                if msg is None:
                    return None
            if msg[0] & 0xC0 == 0x40:
                n = struct.unpack("!H", msg[2:4])[0]
                return ("channel", struct.unpack("!H", msg[:2])[0], msg[4:4 + n])
            mt, txid, attrs = parse(msg)
            if mt == mtype(M_DATA, 1):
                return ("data", xor_address(get_attr(attrs, A_PEER), txid), get_attr(attrs, A_DATA))


def relayed_addresses(raw):
    """Every XOR-RELAYED-ADDRESS in a raw Allocate response, as (ip, port)."""
    _, txid, attrs = parse(raw)
    return [xor_address(v, txid) for t, v in attrs if t == A_RELAYED]


# ---- RFC 6062 TCP allocations: Connect, ConnectionBind, peers ----

A_CONNECTION_ID = 0x002A
M_CONNECT, M_CONNECTION_BIND = 0x00A, 0x00B
T_CONNECTION_ATTEMPT = 0x001C  # ConnectionAttempt: method 0x00C, indication class


def tcp_allocate(server, user="alice", transport="tcp"):
    """A control connection over `transport` ("tcp" or "tls") holding a TCP allocation (RFC 6062
    §5.1), as `user` with the tests' password convention (user + "-pass"). Returns (the TurnClient,
    the relayed (ip, port))."""
    c = TurnClient(server, user, user + "-pass", transport=transport)
    code, _, raw = c.allocate(transport=6, raw_response=True)
    check(code == 0, "%s over %s: TCP Allocate failed: %s" % (user, transport, code))
    return c, tuple(relayed_addresses(raw)[0])


def connect_peer(c, port, host="127.0.0.1"):
    """Connect (RFC 6062 §5.2) on control connection c to the TCP peer host:port. Returns (0 or the
    error code, the CONNECTION-ID or None)."""
    txid = tid()
    code, attrs = c.request(M_CONNECT, attr(A_PEER, xor_addr_value(host, port, txid)), txid=txid)
    return code, get_attr(attrs, A_CONNECTION_ID)


def connection_bind(server, c, cid, transport=None, expect=0):
    """A new data connection (over c's transport unless `transport` says) that sends ConnectionBind
    for `cid` with c's credentials, realm and nonce (RFC 6062 §5.4), checked to be answered `expect`
    (0: success). Returns it: after a success its .sock carries the peer's bytes both ways."""
    d = TurnClient(server, c.user, c.password, transport=transport or c.transport)
    d.realm, d.nonce = c.realm, c.nonce
    code, _ = d.request(M_CONNECTION_BIND, attr(A_CONNECTION_ID, cid), retry=False)
    check(code == expect, "ConnectionBind answered %s, not %s" % (code, expect or "success"))
    return d


def tcp_peer_listener(host="127.0.0.1", backlog=4):
    """A listening TCP socket on a free port of host: a peer for Connect to reach."""
    s = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    s.bind((host, 0))
    s.listen(backlog)
    return s


def udp_peer(host="127.0.0.1", timeout=3):
    """A UDP socket on a free port of host, with a receive timeout: a peer of a UDP allocation."""
    s = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((host, 0))
    s.settimeout(timeout)
    return s
