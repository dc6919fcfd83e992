"""Configuration: bad keys and values stop startup with a message naming the key, the file and line,
and the reason; the sample config and --check-config work; --help lists every key; JSON logs are
one valid JSON object per line."""
import json
import os
import subprocess
import tempfile

from uturn import SRCDIR, UTURND, Uturnd, binding_request, check, parse, run, udp_transact
import socket


def _run(args, conf=None, timeout=20):
    path = None
    if conf is not None:
        fd, path = tempfile.mkstemp(suffix=".conf")
        with os.fdopen(fd, "w") as f:
            f.write(conf)
        args = ["-c", path] + args
    p = subprocess.run([UTURND] + args, capture_output=True, text=True, timeout=timeout)
    if path:
        os.unlink(path)
    return p, path


def test_unknown_key_names_file_and_line():
    p, path = _run([], "# comment\nlistening-port = 3478\n\nfrobnicate = 1\n")
    check(p.returncode == 1, "exit %d, want 1" % p.returncode)
    check("%s:4" % path in p.stderr and "'frobnicate'" in p.stderr and "unknown key" in p.stderr,
          "message does not name file:line, key and reason: %r" % p.stderr)


def test_bad_values():
    cases = [
        ("listening-port = 70000", "listening-port", "out of range"),
        ("listening-port = abc", "listening-port", "not a whole number"),
        ("no-udp = maybe", "no-udp", "true/false"),
        ("log-level = loud", "log-level", "not one of"),
        ("listening-ip = 999.1.1.1", "listening-ip", "not an IPv4 or IPv6 address"),
        ("min-port = 60000\nmax-port = 50000", "min-port", "above"),
        ("realm =", "realm", "needs a value"),
        ("cert = /tmp/x.pem", "cert", "pkey"),
    ]
    for line, key, why in cases:
        p, _ = _run(["--check-config"], line + "\n")
        check(p.returncode == 1, "%r: exit %d, want 1" % (line, p.returncode))
        check(key in p.stderr and why in p.stderr, "%r: message %r lacks %r/%r" % (line, p.stderr, key, why))


def test_command_line_errors_and_override():
    p, _ = _run(["--listening-port", "0"])
    check(p.returncode == 1 and "command line" in p.stderr and "listening-port" in p.stderr, p.stderr)
    p, _ = _run(["stray"])
    check(p.returncode == 1 and "unexpected argument 'stray'" in p.stderr, p.stderr)
    p, _ = _run(["-c", "/nonexistent/uturnd.conf"])
    check(p.returncode == 1 and "/nonexistent/uturnd.conf" in p.stderr and "cannot open" in p.stderr,
          p.stderr)
    # The command line wins over the file; --key=value and bare booleans both work.
    p, _ = _run(["--check-config", "--listening-port=4000", "--no-tcp", "--realm", "example.org"],
                "listening-port = 3478\nrealm = file.example\n")
    check(p.returncode == 0, p.stderr)
    check("listening-port = 4000" in p.stdout and "no-tcp = true" in p.stdout and
          "realm = example.org" in p.stdout, "override not applied:\n" + p.stdout)


def test_sample_config_and_help():
    p, _ = _run(["-c", os.path.join(SRCDIR, "etc", "uturnd.conf"), "--check-config"])
    check(p.returncode == 0 and "configuration OK" in p.stdout, p.stdout + p.stderr)
    h, _ = _run(["--help"])
    check(h.returncode == 0, "help failed")
    for key in ("listening-ip", "listening-port", "min-port", "realm", "user", "log-format",
                "static-auth-secret", "redis-userdb", "relay-threads"):
        check("--" + key in h.stdout, "--help does not list %s" % key)
    # coturn lines that describe our defaults are accepted.
    p, _ = _run(["--check-config"], "fingerprint\nlt-cred-mech\nno-cli\nno-multicast-peers\n")
    check(p.returncode == 0, p.stderr)


def test_json_log_lines():
    with Uturnd(conf=["log-format = json"]) as u:
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        txid, req = binding_request()
        udp_transact(s, (u.host, u.port), req, txid)
    lines = [l for l in u.log().splitlines() if l.strip()]
    check(len(lines) >= 2, "too few log lines")
    for l in lines:
        obj = json.loads(l)
        check({"ts", "level", "event", "msg"} <= set(obj), "fields missing in %r" % l)


def test_unbindable_address_fails_clearly():
    # 203.0.113.1 (TEST-NET-3) is not on this machine: bind fails, no packet is sent anywhere.
    p, _ = _run(["--listening-ip", "203.0.113.1", "--listening-port", "3478"])
    check(p.returncode == 1, "exit %d, want 1" % p.returncode)
    check("cannot listen on udp 203.0.113.1:3478" in p.stderr, "message: %r" % p.stderr)


def test_second_instance_refused_and_restart_after_tcp():
    with Uturnd() as u:
        # SO_REUSEPORT would let a second daemon share the port and split clients: refused.
        p, _ = _run(["--listening-ip", "127.0.0.1", "--listening-port", str(u.port)])
        check(p.returncode == 1 and "is already in use" in p.stderr, "second instance: %r" % p.stderr)
        c = socket.create_connection((u.host, u.port), timeout=5)
        txid, req = binding_request()
        c.sendall(req)
        c.recv(100)
        port = u.port
    c.close()
    # The same port again right after a stop that closed a TCP connection (TIME_WAIT on our side).
    with Uturnd(port=port) as u2:
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        txid, req = binding_request()
        check(parse(udp_transact(s, (u2.host, u2.port), req, txid))[0] == 0x0101, "no answer")


if __name__ == "__main__":
    run()
