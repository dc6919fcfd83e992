"""`uturnctl probe` (docs/PROBE.md) against the real uturnd and against coturn's turnserver.

On uturn (users, TLS, USERHASH, an IPv6 relay, one lab peer address 127.0.0.2 allowed by
allowed-peer-ip so the prober's own peer round trip works while 127.0.0.1 and every other special
block stay refused) the report has no FAIL and exit code 0. On coturn (Debian's turnserver on loopback
free ports, lt-cred-mech) the report shows its known gaps, asserted row by row as observed: no
PASSWORD-ALGORITHMS / SHA-256 integrity / USERHASH, 400 instead of 442 for an unknown transport,
private, metadata, CGNAT, multicast and benchmarking peers granted by default, and (only because this
test has to allow loopback for the round trip) loopback. Also the exit codes (0, 1, 2) and that
--json parses. Only 127.0.0.1/127.0.0.2/::1 are used; the peer rules only ask CreatePermission.
"""
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time

from uturn import (BUILDDIR, SANITIZER_PATTERNS, Uturnd, binding_request, check, free_port, make_cert, run, wait_for)

UTURNCTL = os.path.join(BUILDDIR, "uturnctl")
AUTH = ["--user", "alice", "--password", "alice-pass", "--user2", "bob", "--password2", "bob-pass"]
USERS = ["user = alice:alice-pass", "user = bob:bob-pass", "realm = probe.test"]

# IPv4 peers every server must refuse, and the IPv6 / embedded forms (ASVS V17.1.1).
PRIVATE = ["10.0.0.1", "172.16.0.1", "192.168.0.1"]
V6_PEERS = ["::1", "2002:7f00:1::", "64:ff9b::a9fe:a9fe", "64:ff9b::7f00:1",
            "2001:0:4136:e378:8000:63bf:80ff:fffe", "fe80::1", "fc00::1", "fd00:ec2::254"]


def probe(args, timeout=90):
    r = subprocess.run([UTURNCTL, "probe"] + args, capture_output=True, text=True, timeout=timeout)
    # uturnctl is built with the sanitizers too: an ASan error would also exit 1, so read stderr.
    check(not SANITIZER_PATTERNS.search(r.stderr), "sanitizer report from uturnctl:\n" + r.stderr)
    return r.returncode, r.stdout, r.stderr


def probe_json(args):
    rc, out, err = probe(args + ["--json"])
    try:
        rep = json.loads(out)
    except ValueError as e:
        raise AssertionError("--json output does not parse (%s):\n%s\n%s" % (e, out, err))
    check(rep["exit"] == rc, "JSON exit %r != process exit %d" % (rep["exit"], rc))
    rows = {}
    for row in rep["checks"]:
        check(set(row) == {"target", "check", "rfc", "result", "detail"}, "row keys: %r" % row)
        check(row["result"] in ("PASS", "FAIL", "WARN", "SKIP"), "result: %r" % row)
        rows[(row["target"], row["check"])] = row
    counts = {k: sum(1 for r in rep["checks"] if r["result"] == k.upper())
              for k in ("pass", "fail", "warn", "skip")}
    check(counts == rep["summary"], "summary %r, rows say %r" % (rep["summary"], counts))
    return rc, rep, rows, out


def show(rep):
    for r in rep["checks"]:
        print("  %-4s %-26s %s" % (r["result"], r["check"], r["detail"]))


def expect(rows, target, name, result, detail=None):
    row = rows.get((target, name))
    check(row is not None, "no row %s %s in %r" % (target, name, sorted(rows)))
    check(row["result"] == result, "%s: want %s, got %r" % (name, result, row))
    if detail:
        check(detail in row["detail"], "%s: detail %r lacks %r" % (name, row["detail"], detail))


def test_exit_codes():
    rc, _, err = probe([])
    check(rc == 2 and "usage" in err, "no arguments: %d %r" % (rc, err))
    rc, _, err = probe(["http://127.0.0.1:1"] + AUTH)
    check(rc == 2, "bad URI: %d %r" % (rc, err))
    rc, _, err = probe(["turn:127.0.0.1:3478"])
    check(rc == 2, "no credentials: %d" % rc)
    # Nothing listens there: Binding FAIL row, exit 2 (unreachable), still valid JSON.
    port = free_port()
    rc, rep, rows, _ = probe_json(["turn:127.0.0.1:%d" % port] + AUTH + ["--timeout", "300"])
    check(rc == 2, "unreachable: exit %d" % rc)
    expect(rows, "turn:127.0.0.1:%d" % port, "binding", "FAIL", "no answer")
    check(len(rep["checks"]) == 2, "only selftest and binding: %r" % rep["checks"])


def test_uturn_reports_no_fail():
    d = tempfile.mkdtemp()
    cert, key = make_cert(os.path.join(d, "c"), "localhost")
    conf = USERS + ["cert = " + cert, "pkey = " + key, "user-quota = 3", "userhash = true",
                    "relay-ip = 127.0.0.1", "relay-ip = ::1", "allowed-peer-ip = 127.0.0.2"]
    with Uturnd(conf=conf) as u:
        udp, tcp = "turn:127.0.0.1:%d" % u.port, "turn:127.0.0.1:%d?transport=tcp" % u.port
        tls = "turns:127.0.0.1:%d" % u.tls_port
        args = [udp, tcp, tls] + AUTH + ["--ca", cert, "--peer-ip", "127.0.0.2"]
        start = time.monotonic()
        rc, rep, rows, _ = probe_json(args)
        took = time.monotonic() - start
        show(rep)
        fails = [r for r in rep["checks"] if r["result"] == "FAIL"]
        check(rc == 0 and not fails, "uturn: exit %d, FAIL rows %r" % (rc, fails))
        expect(rows, "-", "selftest-b1", "PASS", "b5c7bf00")
        for t in (udp, tcp, tls):
            expect(rows, t, "binding", "PASS", "XOR-MAPPED-ADDRESS 127.0.0.1:")
        for name in ("challenge-401", "password-algorithms", "wrong-password", "integrity-sha1",
                     "integrity-sha256", "userhash", "refresh", "allocation-mismatch-437",
                     "stale-nonce-438", "wrong-credentials-441", "unsupported-transport-442",
                     "quota-486", "create-permission", "send-data", "channel-bind",
                     "channel-data", "amplification"):
            expect(rows, udp, name, "PASS")
        expect(rows, udp, "integrity-sha256", "PASS", "SHA-256 key")
        expect(rows, udp, "quota-486", "PASS", "after 2 more")  # user-quota 3, one already held
        for ip in ["127.0.0.1", "169.254.169.254", "100.64.0.1", "0.0.0.0", "224.0.0.1",
                   "255.255.255.255", "198.18.0.1"] + PRIVATE:
            expect(rows, udp, "peer " + ip, "PASS", "(IPv4 allocation): error 403")
        for ip in V6_PEERS:
            expect(rows, udp, "peer " + ip, "PASS", "(IPv6 allocation): error 403")
        # uturn unmaps ::ffff:a.b.c.d (an IPv4 peer): on the IPv6 allocation that is a 443.
        for ip in ("::ffff:127.0.0.1", "::ffff:169.254.169.254"):
            expect(rows, udp, "peer " + ip, "PASS", "(IPv6 allocation): error 443")
        for v, res in (("1.0", "refused"), ("1.1", "refused"), ("1.2", "negotiated"),
                       ("1.3", "negotiated")):
            expect(rows, tls, "tls-" + v, "PASS", res)
        expect(rows, tls, "tls-cert-name", "PASS")
        expect(rows, tls, "tls-cert-chain", "PASS")
        # make_cert's certificate lives 2 days: the prober warns under 14.
        expect(rows, tls, "tls-cert-validity", "WARN", "under 14")
        print("uturn: %s in %.1fs" % (rep["summary"], took))

        # The table: same verdict, one line per row plus header and summary.
        rc2, table, _ = probe(args)
        check(rc2 == 0, "table run exit %d" % rc2)
        lines = table.strip().splitlines()
        check(lines[0].split()[:4] == ["TARGET", "CHECK", "RFC", "RESULT"], lines[0])
        check(len(lines) == len(rep["checks"]) + 3, "table has %d lines" % len(lines))
        check(" 0 FAIL" in lines[-1], lines[-1])
        u.assert_clean()


def test_uturn_default_peer_rules_skip_round_trip():
    """Without the lab allowance uturn refuses the prober's loopback peer: the round trips are
    reported as not possible (SKIP with the reason), which is no FAIL."""
    with Uturnd(conf=USERS) as u:
        udp = "turn:127.0.0.1:%d" % u.port
        rc, rep, rows, _ = probe_json([udp] + AUTH + ["--max-allocations", "2"])
        check(rc == 0, "exit %d: %r" % (rc, [r for r in rep["checks"] if r["result"] == "FAIL"]))
        expect(rows, udp, "create-permission", "SKIP", "not possible")
        check((udp, "send-data") not in rows, "no send-data row without a permission")
        expect(rows, udp, "peer 127.0.0.1", "PASS", "error 403")
        expect(rows, udp, "quota-486", "SKIP", "within 2 more allocations")


def test_uturn_ipv6_only():
    """A server on ::1 alone has no IPv4 relay: the prober takes the 440 and allocates IPv6, runs
    the IPv6 peer rules there and SKIPs the IPv4 ones with the server's answer."""
    with Uturnd(conf=USERS, host="::1") as u:
        udp = "turn:[::1]:%d" % u.port
        rc, rep, rows, _ = probe_json([udp] + AUTH + ["--max-allocations", "1"])
        check(rc == 0, "exit %d: %r" % (rc, [r for r in rep["checks"] if r["result"] == "FAIL"]))
        expect(rows, udp, "binding", "PASS", "[::1]:")
        expect(rows, udp, "integrity-sha1", "PASS", "relayed [::1]:")
        expect(rows, udp, "peer ::1", "PASS", "(IPv6 allocation): error 403")
        expect(rows, udp, "peer 64:ff9b::7f00:1", "PASS", "(IPv6 allocation): error 403")
        expect(rows, udp, "peer 127.0.0.1", "SKIP", "error 440")


def test_tls_check_can_fail():
    """Negative control for the TLS rows: a TLS listener that still takes TLS 1.0 and 1.1 (openssl
    s_server at security level 0, not a TURN server: its Binding FAILs) gets FAIL rows, so the
    PASS "refused" on uturn and coturn is the server refusing, not the prober unable to offer."""
    d = tempfile.mkdtemp()
    cert, key = make_cert(os.path.join(d, "s"), "localhost")
    port = free_port()
    srv = subprocess.Popen(["openssl", "s_server", "-accept", "127.0.0.1:%d" % port, "-cert", cert,
                            "-key", key, "-cipher", "ALL:@SECLEVEL=0", "-quiet"],
                           stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)
    try:
        def listening():
            with socket.socket() as s:
                return s.connect_ex(("127.0.0.1", port)) == 0
        wait_for(listening, 10, "openssl s_server listening")
        with Uturnd(conf=USERS) as u:
            tls = "turns:127.0.0.1:%d" % port
            rc, rep, rows, _ = probe_json(["turn:127.0.0.1:%d" % u.port, tls] + AUTH +
                                          ["--ca", cert, "--max-allocations", "1",
                                           "--timeout", "1000"])
            check(rc == 1, "exit %d" % rc)
            expect(rows, tls, "binding", "FAIL", "no answer")
            expect(rows, tls, "tls-1.0", "FAIL", "TLS 1.0 negotiated")
            expect(rows, tls, "tls-1.1", "FAIL", "TLS 1.1 negotiated")
            expect(rows, tls, "tls-1.2", "PASS", "negotiated")
            expect(rows, tls, "tls-cert-chain", "PASS")
    finally:
        srv.kill()
        srv.wait(5)
        shutil.rmtree(d, ignore_errors=True)


class Coturn:
    """Debian's turnserver on loopback free ports with a temporary config (no CLI, no DTLS, no
    RFC 5780 port, no other listener), stopped and its directory removed afterwards."""

    def __init__(self, extra=()):
        self.dir = tempfile.mkdtemp(prefix="uturn-coturn-")
        self.cert, key = make_cert(os.path.join(self.dir, "c"), "localhost")
        self.port, self.tls_port = free_port(), free_port()
        conf = ["listening-ip=127.0.0.1", "listening-port=%d" % self.port,
                "tls-listening-port=%d" % self.tls_port, "relay-ip=127.0.0.1",
                "min-port=47000", "max-port=47499", "lt-cred-mech", "user=alice:alice-pass",
                "user=bob:bob-pass", "realm=probe.test", "user-quota=3", "no-cli", "no-dtls",
                "no-rfc5780", "cert=" + self.cert, "pkey=" + key,
                "pidfile=" + os.path.join(self.dir, "pid"),
                "log-file=" + os.path.join(self.dir, "turn.log"), "simple-log",
                "userdb=" + os.path.join(self.dir, "turndb")] + list(extra)
        path = os.path.join(self.dir, "turnserver.conf")
        with open(path, "w") as f:
            f.write("\n".join(conf) + "\n")
        self.proc = subprocess.Popen(["turnserver", "-c", path], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        try:
            wait_for(self._answers, 15, "coturn answering a Binding")
        except Exception:
            self.close()
            raise

    def _answers(self):
        check(self.proc.poll() is None, "turnserver exited at start")
        t, req = binding_request()
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.settimeout(0.2)
            s.sendto(req, ("127.0.0.1", self.port))
            try:
                return s.recv(2048)[8:20] == t
            except OSError:
                return False

    def close(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        shutil.rmtree(self.dir, ignore_errors=True)


def test_coturn_known_gaps():
    if not shutil.which("turnserver"):
        print("SKIP test_coturn_known_gaps: no turnserver (Debian package coturn) installed")
        return
    # allow-loopback-peers: coturn has no narrower way to let the prober's 127.0.0.2 peer in
    # (its allowed-peer-ip does not override the loopback rule: observed), so the round trip
    # needs it, and the loopback peer row reports it.
    c = Coturn(["allow-loopback-peers"])
    try:
        udp = "turn:127.0.0.1:%d" % c.port
        tcp, tls = udp + "?transport=tcp", "turns:127.0.0.1:%d" % c.tls_port
        rc, rep, rows, _ = probe_json([udp, tcp, tls] + AUTH + ["--ca", c.cert,
                                                                  "--peer-ip", "127.0.0.2"])
        show(rep)
        check(rc == 1, "coturn: exit %d (want 1: FAIL rows)" % rc)
        expect(rows, "-", "selftest-b1", "PASS")
        for t in (udp, tcp, tls):
            expect(rows, t, "binding", "PASS")
        for name in ("challenge-401", "wrong-password", "integrity-sha1", "refresh",
                     "allocation-mismatch-437", "stale-nonce-438", "wrong-credentials-441",
                     "quota-486", "create-permission", "send-data", "channel-bind",
                     "channel-data", "amplification"):
            expect(rows, udp, name, "PASS")
        # The gaps. RFC 8489 security features: no PASSWORD-ALGORITHMS, no nonce cookie ...
        expect(rows, udp, "password-algorithms", "WARN", "not offered")
        # ... and MESSAGE-INTEGRITY-SHA256 alone (MD5 key, as RFC 8489 §14.6 allows) gets 401.
        expect(rows, udp, "integrity-sha256", "FAIL", "error 401")
        expect(rows, udp, "userhash", "SKIP")
        # RFC 8656 §7.2: an unknown REQUESTED-TRANSPORT is 442; coturn answers 400.
        expect(rows, udp, "unsupported-transport-442", "FAIL", "error 400")
        # Its default peer rules grant private, metadata, CGNAT, multicast, broadcast and
        # benchmarking peers (denied-peer-ip would have to list them); 0.0.0.0 is refused.
        for ip in PRIVATE + ["169.254.169.254", "100.64.0.1", "224.0.0.1", "255.255.255.255",
                             "198.18.0.1", "127.0.0.1"]:
            expect(rows, udp, "peer " + ip, "FAIL", "GRANTED")
        expect(rows, udp, "peer 0.0.0.0", "PASS", "error 403")
        # IPv4-mapped forms: coturn keeps them IPv6, so its IPv4 allocation answers 443: they
        # cannot be reached through it. No IPv6 relay here (440): the IPv6 rows SKIP.
        expect(rows, udp, "peer ::ffff:127.0.0.1", "PASS", "(IPv4 allocation): error 443")
        for ip in V6_PEERS:
            expect(rows, udp, "peer " + ip, "SKIP", "error 440")
        expect(rows, tls, "tls-1.0", "PASS", "refused")
        expect(rows, tls, "tls-1.1", "PASS", "refused")
        expect(rows, tls, "tls-1.2", "PASS", "negotiated")
        expect(rows, tls, "tls-1.3", "WARN", "refused")
        expect(rows, tls, "tls-cert-name", "PASS")
        print("coturn: %s" % rep["summary"])
    finally:
        c.close()
    # coturn's default (no allow-loopback-peers): loopback refused, so no round trip, but the
    # private and metadata blocks are still granted.
    c = Coturn()
    try:
        udp = "turn:127.0.0.1:%d" % c.port
        rc, rep, rows, _ = probe_json([udp] + AUTH + ["--peer-ip", "127.0.0.2"])
        check(rc == 1, "coturn default: exit %d" % rc)
        expect(rows, udp, "create-permission", "SKIP", "not possible")
        expect(rows, udp, "peer 127.0.0.1", "PASS", "error 403")
        expect(rows, udp, "peer 10.0.0.1", "FAIL", "GRANTED")
        expect(rows, udp, "peer 169.254.169.254", "FAIL", "GRANTED")
    finally:
        c.close()


if __name__ == "__main__":
    run()
