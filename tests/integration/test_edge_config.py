"""Config at the edge (issue 11): every value the table allows is one the code can hold
(max-permissions at its maximum past the old 16-bit wrap), safe quotas by default (user-quota 486
while another user still allocates; total-quota's default read back and a small one reached), the
per-allocation caps on permissions and channels at their defaults without cost to other
allocations, and --check-config refusing exactly what the start refuses, with the same
FILE:LINE: 'key' message, exit 1 and no sanitizer report (no leak on a failed start)."""
import os
import socket
import subprocess
import tempfile
import time

from uturn import (A_EVEN_PORT, SANITIZER_PATTERNS, UTURND, TurnClient, Uturnd, attr, check,
                   free_port, make_cert, relayed_addresses, run, wait_for)

USERS = ["user = alice:alice-pass", "user = bob:bob-pass"]
# Peers on loopback need the documented opt-in; nothing else differs from the defaults.
BASE = USERS + ["allow-loopback-peers"]


def _peer():
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    s.settimeout(3)
    return s


def _client(u, user, src_ip="127.0.0.1"):
    """A UDP TurnClient from src_ip (any of 127/8): the 401 challenge is rate-limited per source
    IP, so tests that open hundreds of 5-tuples spread them over several addresses."""
    c = TurnClient(u, user, user + "-pass")
    if src_ip != "127.0.0.1":
        c.sock.close()
        c.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        c.sock.bind((src_ip, 0))
    return c


def _relays(c, peer, payload):
    """c's allocation relays payload to peer (Send indication) and the peer's answer back."""
    pip, pport = peer.getsockname()
    c.send_indication(pip, pport, payload)
    try:
        data, relay = peer.recvfrom(2048)
    except socket.timeout:
        return False
    if data != payload:
        return False
    peer.sendto(b"back:" + payload, relay)
    got = c.receive_data(3)
    return got is not None and got[2] == b"back:" + payload


def _ip(n):
    """The n-th loopback address from 127.1.0.0 on (n < 2**24 - 65536)."""
    n += 1 << 16
    return "127.%d.%d.%d" % (n >> 16 & 255, n >> 8 & 255, n & 255)


# ---- defect 2: max-permissions past the 16-bit capacity ----

def test_max_permissions_at_maximum_past_old_wrap():
    """The table's largest max-permissions, and 2,100 CreatePermission requests of 16 peers each
    (33,600 permissions on one allocation): the old uint16_t capacity doubled to 0 at 32,768 and
    realloc(perms, 0) freed the table in use (ASan: heap-use-after-free)."""
    p = subprocess.run([UTURND, "--help"], capture_output=True, text=True, timeout=20)
    line = [l for l in p.stdout.splitlines() if l.strip().startswith("--max-permissions")]
    check(line, "--help does not list max-permissions")
    bad = subprocess.run([UTURND, "--check-config", "--max-permissions", "65536"],
                         capture_output=True, text=True, timeout=20)
    check(bad.returncode == 1 and "out of range 1..65535" in bad.stderr,
          "max-permissions 65536 not refused as out of range: %r" % bad.stderr)
    with Uturnd(conf=BASE + ["max-permissions = 65535"], threads=1) as u:
        c = _client(u, "alice")
        check(c.allocate()[0] == 0, "Allocate failed")
        n = 0
        deadline = time.monotonic() + 90
        for k in range(2100):
            peers = [(_ip(n + j), 9) for j in range(16)]
            code = c.create_permission(*peers)[0]
            check(code == 0, "CreatePermission #%d (permissions %d..%d) answered %s; uturnd %s" %
                  (k + 1, n + 1, n + 16, code, "alive" if u.alive() else "died:\n" + u.log()[-3000:]))
            n += 16
            check(time.monotonic() < deadline, "too slow: %d requests in 90 s" % (k + 1))
        check(n > 32768, "did not pass the old wrap point")
        # The allocation still works: a real peer, a permission, a round trip.
        peer = _peer()
        check(c.create_permission(peer.getsockname())[0] == 0, "permission for the real peer")
        check(_relays(c, peer, b"after-33600-permissions"), "no relay after 33,600 permissions")
        check(u.alive(), "uturnd died")


def test_even_port_stays_in_a_one_port_range():
    """min-port = max-port = 65535 (both in bounds): an EVEN-PORT Allocate used to take port + 1,
    which wrapped to 0 and bound any port the kernel chose, outside the range. Now 508, while a
    plain Allocate still gets port 65535."""
    with Uturnd(conf=BASE + ["min-port = 65535", "max-port = 65535"]) as u:
        c = _client(u, "alice")
        code, _, raw = c.allocate(extra=attr(A_EVEN_PORT, b"\x00"), raw_response=True)
        ports = [p for _, p in relayed_addresses(raw)] if code == 0 else []
        check(code == 508, "EVEN-PORT with no even port in range: %s, relayed ports %r" %
              (code, ports))
        c2 = _client(u, "bob")
        code, _, raw = c2.allocate(raw_response=True)
        check(code == 0 and [p for _, p in relayed_addresses(raw)] == [65535],
              "plain Allocate in the one-port range: %s" % code)


# ---- defect 6: quotas by default ----

def _dump(conf_text):
    fd, path = tempfile.mkstemp(suffix=".conf")
    with os.fdopen(fd, "w") as f:
        f.write(conf_text)
    try:
        p = subprocess.run([UTURND, "--check-config", "-c", path], capture_output=True, text=True,
                           timeout=20)
    finally:
        os.unlink(path)
    check(p.returncode == 0, "check-config failed: %s" % p.stderr)
    return dict(l.split(" = ", 1) for l in p.stdout.splitlines() if " = " in l)


def test_default_quotas_effective():
    """The defaults, read back as uturnd applies them (its --check-config dump), from an empty file
    and from the shipped etc/uturnd.conf; and 0 is still the explicit opt-out."""
    d = _dump("")
    check(d.get("user-quota") == "256", "default user-quota %r, want 256" % d.get("user-quota"))
    check(d.get("total-quota") == "12000", "default total-quota %r, want 12000" %
          d.get("total-quota"))
    port_span = int(d["max-port"]) - int(d["min-port"]) + 1
    check(int(d["total-quota"]) <= port_span * 3 // 4,
          "total-quota %s leaves no headroom below the %d relay ports" % (d["total-quota"],
                                                                          port_span))
    check(int(d["user-quota"]) * 32 <= port_span, "one user could hold over 1/32 of the ports")
    sample = os.path.join(os.environ.get("UTURN_SRCDIR", "."), "etc", "uturnd.conf")
    with open(sample) as f:
        s = _dump(f.read())
    check(s.get("user-quota") == "256" and s.get("total-quota") == "12000",
          "etc/uturnd.conf does not keep the safe quotas: %r %r" % (s.get("user-quota"),
                                                                    s.get("total-quota")))
    z = _dump("user-quota = 0\ntotal-quota = 0\n")
    check(z.get("user-quota") == "0" and z.get("total-quota") == "0", "0 (unlimited) refused")


def test_default_user_quota_486_others_unaffected():
    """With the default user-quota, alice's 257th allocation is 486; bob (and alice again after
    one of hers ends) still allocates and relays."""
    with Uturnd(conf=BASE) as u:
        held = []
        for i in range(256):
            c = _client(u, "alice", "127.0.%d.%d" % (2 + i // 16, 1 + i % 16))
            code = c.allocate()[0]
            check(code == 0, "alice's allocation #%d: %s" % (i + 1, code))
            held.append(c)
        extra = _client(u, "alice", "127.0.40.1")
        check(extra.allocate()[0] == 486, "alice's 257th allocation not 486 (default user-quota)")
        bob = _client(u, "bob", "127.0.41.1")
        check(bob.allocate()[0] == 0, "bob could not allocate while alice is at her quota")
        peer = _peer()
        check(bob.create_permission(peer.getsockname())[0] == 0, "bob's permission")
        check(_relays(bob, peer, b"bob-relays"), "bob's allocation does not relay")
        check(held[0].refresh(0)[0] == 0, "alice's delete")
        check(extra.allocate()[0] == 0, "alice's quota not given back by a delete")
        for c in held + [extra, bob]:
            c.close()


def test_total_quota_reached_508_and_300():
    """total-quota reached: 508, or 300 Try Alternate with alternate-server (the default, 12000, is
    read back in test_default_quotas_effective; here a configured small value is reached)."""
    with Uturnd(conf=BASE + ["total-quota = 3"]) as u:
        cs = [_client(u, "alice" if i < 2 else "bob") for i in range(4)]
        for c in cs[:3]:
            check(c.allocate()[0] == 0, "allocation below total-quota failed")
        check(cs[3].allocate()[0] == 508, "allocation past total-quota not 508")
    with Uturnd(conf=BASE + ["total-quota = 1", "alternate-server = 127.0.0.1:3479"]) as u:
        a, b = _client(u, "alice"), _client(u, "bob")
        check(a.allocate()[0] == 0, "first allocation failed")
        check(b.allocate()[0] == 300, "past total-quota with alternate-server not 300")


# ---- ledger: permissions and channels per allocation at their defaults ----

def test_default_max_permissions_64_costs_others_nothing():
    with Uturnd(conf=BASE) as u:
        a1 = _client(u, "alice")
        check(a1.allocate()[0] == 0, "Allocate")
        for k in range(4):
            peers = [(_ip(k * 16 + j), 9) for j in range(16 if k < 3 else 15)]
            code = a1.create_permission(*peers)[0]
            check(code == 0, "permissions %d..%d: %s" % (k * 16 + 1, k * 16 + len(peers), code))
        # At 63: two new peers do not fit, and RFC 8656 §10.2 says all or nothing: neither is
        # installed, so one more still fits afterwards.
        code = a1.create_permission((_ip(100), 9), (_ip(101), 9))[0]
        check(code == 508, "two new permissions at 63 of 64 answered %s, want 508" % code)
        code = a1.create_permission((_ip(63), 9))[0]
        check(code == 0, "64th permission after a refused pair: %s (the pair was partly "
              "installed)" % code)
        code = a1.create_permission((_ip(64), 9))[0]
        check(code == 508, "65th permission (default max-permissions 64) answered %s, want 508" % code)
        # Refreshing one it holds still works at the cap.
        check(a1.create_permission((_ip(0), 9))[0] == 0, "refresh of a held permission at the cap")
        for who in ("alice", "bob"):
            c = _client(u, who)
            check(c.allocate()[0] == 0, "%s's other allocation" % who)
            peer = _peer()
            check(c.create_permission(peer.getsockname())[0] == 0, "%s's permission" % who)
            check(_relays(c, peer, who.encode()), "%s's other allocation does not relay" % who)


def test_default_max_channels_64_costs_others_nothing():
    with Uturnd(conf=BASE) as u:
        a1 = _client(u, "alice")
        check(a1.allocate()[0] == 0, "Allocate")
        for i in range(64):
            code = a1.channel_bind(0x4000 + i, "127.0.0.1", 20000 + i)[0]
            check(code == 0, "channel %d: %s" % (i + 1, code))
        code = a1.channel_bind(0x4000 + 64, "127.0.0.1", 20064)[0]
        check(code == 508, "65th channel (default max-channels 64) answered %s, want 508" % code)
        check(a1.channel_bind(0x4000, "127.0.0.1", 20000)[0] == 0, "refresh of a bound channel")
        for who in ("alice", "bob"):
            c = _client(u, who)
            check(c.allocate()[0] == 0, "%s's other allocation" % who)
            peer = _peer()
            pip, pport = peer.getsockname()
            check(c.channel_bind(0x4001, pip, pport)[0] == 0, "%s's channel" % who)
            c.channel_data(0x4001, b"chan-" + who.encode())
            data, relay = peer.recvfrom(2048)
            check(data == b"chan-" + who.encode(), "%s: peer got %r" % (who, data))
            peer.sendto(b"back", relay)
            got = c.receive_data(3)
            check(got == ("channel", 0x4001, b"back"), "%s: ChannelData back %r" % (who, got))


# ---- defect 11: one validation path for --check-config, the start and reload ----

def _write(dirname, name, text, mode="w"):
    path = os.path.join(dirname, name)
    with open(path, mode) as f:
        f.write(text)
    return path


def _bad_files(d):
    """(class, file text as lines, line number at fault, key, reason fragment)."""
    cert, key = make_cert(os.path.join(d, "good"), "uturn.test")
    garbage = _write(d, "garbage.pem", "-----BEGIN CERTIFICATE-----\nnot base64\n"
                     "-----END CERTIFICATE-----\n")
    unreadable = os.path.join(d, "missing.pem")  # tests may run as root: chmod 0 would not do
    return [
        ("bad user", ["user = alice:pw", "user = nocolon"], 2, "user", "missing ':'"),
        ("duplicate user", ["user = a:1", "realm = r", "user = a:2"], 3, "user", "defined twice"),
        ("bad peer range", ["denied-peer-ip = 10.0.0.0/99"], 1, "denied-peer-ip", "is not an IP"),
        ("bad allowed range", ["allowed-peer-ip = 1.2.3.4-x"], 1, "allowed-peer-ip", "is not an IP"),
        ("bad Redis URL", ["redis-userdb = redis://h:99999"], 1, "redis-userdb", "bad port"),
        ("bad alternate-server", ["alternate-server = 127.0.0.1:70000"], 1, "alternate-server",
         "is not IP, IP:PORT"),
        ("signed alternate-server port", ["alternate-server = 127.0.0.1:+80"], 1,
         "alternate-server", "is not IP, IP:PORT"),
        ("bad tls-alternate-server", ["tls-alternate-server = host.example"], 1,
         "tls-alternate-server", "is not IP, IP:PORT"),
        ("short admin token", ["admin-listen = 127.0.0.1:1", "admin-token = short"], 2,
         "admin-token", "at least 16"),
        ("admin-listen without token", ["admin-listen = 127.0.0.1:1"], 1, "admin-listen",
         "needs at least one 'admin-token'"),
        ("bad admin-listen", ["admin-token = 0123456789abcdef", "admin-listen = nowhere:x"], 2,
         "admin-listen", "is not IP[:PORT]"),
        ("admin-listen port 0", ["admin-token = 0123456789abcdef", "admin-listen = [::1]:0"], 2,
         "admin-listen", "is not IP[:PORT]"),
        ("admin per-ip not below total", ["admin-token = 0123456789abcdef",
                                          "admin-listen = 127.0.0.1:1",
                                          "admin-connections-per-ip = 64",
                                          "admin-connections-max = 64"], 3,
         "admin-connections-per-ip", "must be below 'admin-connections-max'"),
        ("REST without a secret", ["use-auth-secret"], 1, "use-auth-secret",
         "needs 'static-auth-secret'"),
        ("garbage certificate", ["cert = " + garbage, "pkey = " + key], 1, "cert", garbage),
        ("unreadable certificate", ["pkey = " + key, "cert = " + unreadable], 2, "cert",
         unreadable),
        ("key of another certificate", ["cert = " + cert, "pkey = " + cert], 2, "pkey", cert),
        ("external-ip matching nothing", ["external-ip = 192.0.2.1/10.9.9.9"], 1, "external-ip",
         "matches no relay address"),
        ("bad redis-statsdb", ['redis-statsdb = "sentinel=127.0.0.1:26379"'], 1, "redis-statsdb",
         "'sentinel' needs 'master=NAME'"),
    ]


def _start(conf_path, args=()):
    env = dict(os.environ)
    env.setdefault("ASAN_OPTIONS", "detect_leaks=1:abort_on_error=0")
    return subprocess.run([UTURND, "-c", conf_path] + list(args), capture_output=True, text=True,
                          timeout=30, env=env)


def _same_refusal(path, lineno, key, why, what):
    want = "%s:%d: '%s': " % (path, lineno, key)
    chk = _start(path, ["--check-config"])
    check(chk.returncode == 1, "%s: --check-config exit %d, want 1:\n%s%s" %
          (what, chk.returncode, chk.stdout, chk.stderr))
    check(want in chk.stderr and why in chk.stderr,
          "%s: --check-config said %r, want %r ... %r" % (what, chk.stderr, want, why))
    msg = chk.stderr[chk.stderr.index(want):].splitlines()[0]
    st = _start(path)
    check(st.returncode == 1, "%s: start exit %d, want 1:\n%s" % (what, st.returncode, st.stderr))
    check(msg in st.stderr, "%s: start said %r, --check-config %r" % (what, st.stderr, msg))
    for p in (chk, st):
        m = SANITIZER_PATTERNS.search(p.stderr)
        check(m is None, "%s: sanitizer report:\n%s" % (what, p.stderr[-4000:]))


def test_check_config_refuses_what_start_refuses():
    d = tempfile.mkdtemp(prefix="uturn-edge-")
    port = free_port()
    head = ["listening-ip = 127.0.0.1", "listening-port = %d" % port,
            "tls-listening-port = %d" % free_port(), "relay-threads = 1"]
    for what, lines, lineno, key, why in _bad_files(d):
        path = _write(d, what.replace(" ", "-") + ".conf", "\n".join(head + lines) + "\n")
        _same_refusal(path, len(head) + lineno, key, why, what)


def test_nul_byte_named_as_such():
    d = tempfile.mkdtemp(prefix="uturn-edge-")
    path = _write(d, "nul.conf", b"listening-port = 3478\nrealm = a\0b\n", "wb")
    for args in (["--check-config"], []):
        p = _start(path, args)
        check(p.returncode == 1, "NUL byte: exit %d" % p.returncode)
        check("%s:2: NUL byte" % path in p.stderr and "longer than" not in p.stderr,
              "NUL byte reported as %r" % p.stderr)
        check(SANITIZER_PATTERNS.search(p.stderr) is None, "sanitizer report: %s" % p.stderr)


def test_reload_refuses_with_file_line():
    """SIGHUP with a file the start would refuse keeps the running config and names FILE:LINE."""
    with Uturnd(conf=BASE + ["user-quota = 3"]) as u:
        with open(u.conf_path, "a") as f:
            f.write("user-quota = 4\nuser = broken\n")
        nlines = len(open(u.conf_path).read().splitlines())
        u.proc.send_signal(1)  # SIGHUP
        want = "%s:%d: 'user': missing ':'" % (u.conf_path, nlines)
        wait_for(lambda: want in u.log(), 10, "reload refusal naming %s" % want)
        check("not reloaded" in u.log(), "reload report: %s" % u.log()[-2000:])
        check("user-quota: 3 -> 4" not in u.log(), "a refused file was partly applied")


if __name__ == "__main__":
    run()
