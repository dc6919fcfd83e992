#!/usr/bin/python3
"""Run the INSTALLED uturnd (/usr/sbin/uturnd) the way uturnd.service runs it, and check it works
inside the unit's limits. Called by scripts/package-test after `dpkg -i`, as root.

uturnd starts as the "uturn" user with no capabilities (setpriv), reading the packaged
/etc/uturn/uturnd.conf plus loopback overrides on free ports (and a test user, loopback peers for
the relay check), with a NOTIFY_SOCKET of our own, under strace -f. Then:
  READY=1 arrives; a STUN Binding from coturn's turnutils_stunclient is answered;
  TURN relaying with turnutils_uclient to turnutils_peer over UDP and TCP loses nothing;
  a STUN Binding over TLS (a throw-away certificate) and the admin API's /api/v1/stats answer;
  SIGHUP gives RELOADING=1 then READY=1; SIGTERM gives STOPPING=1 and exit status 0;
  every system call uturnd made (after its execve) is one the unit's SystemCallFilter allows:
  @system-service without @privileged and @resources, as systemd-analyze expands them, and every
  socket it opened is of a family in the unit's RestrictAddressFamilies.
Prints one line per check; exits 1 on the first failure.
Usage: package-run-installed.py UNITFILE   (its files go to a temporary directory in /tmp)
"""
import json
import os
import pwd
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests",
                                "integration"))
from uturn import (binding_request, free_port, make_cert, parse, read_frame,  # noqa: E402
                   start_peer, uclient)  # the test harness's helpers

UTURND = "/usr/sbin/uturnd"


def die(msg, proc=None):
    if proc and proc.poll() is None:
        proc.kill()
    print("FAILED: " + msg)
    sys.exit(1)


def expand(group, seen=None):
    """The system calls of a systemd-analyze syscall-filter group, nested groups expanded."""
    seen = seen if seen is not None else set()
    if group in seen:
        return set()
    seen.add(group)
    out = subprocess.run(["systemd-analyze", "syscall-filter", group], capture_output=True,
                         text=True, check=True).stdout
    names = set()
    for line in out.splitlines()[1:]:
        w = line.strip()
        if not w or w.startswith("#"):
            continue
        names |= expand(w, seen) if w.startswith("@") else {w}
    return names


def unit_families(unit):
    fams = set()
    for line in open(unit):
        m = re.match(r"\s*RestrictAddressFamilies=(.*)", line)
        if m:
            fams.update(m.group(1).split())
    return fams


def unit_filter(unit):
    """Allowed system calls from the unit's SystemCallFilter= lines (allow list, then ~ denials)."""
    allowed, denied = set(), set()
    for line in open(unit):
        m = re.match(r"\s*SystemCallFilter=(~?)(.*)", line)
        if not m:
            continue
        names = set()
        for w in m.group(2).split():
            names |= expand(w) if w.startswith("@") else {w}
        (denied if m.group(1) else allowed).update(names)
    return allowed - denied


class Notify:
    def __init__(self, d):
        self.path = os.path.join(d, "notify")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        os.chmod(self.path, 0o777)  # uturnd runs as "uturn"

    def expect(self, key, proc):
        self.sock.settimeout(20)
        try:
            msg = self.sock.recv(4096).decode()
        except socket.timeout:
            die("no %s within 20 s" % key, proc)
        if key not in msg.split("\n"):
            die("expected %s, got %r" % (key, msg), proc)
        print("notify: " + msg.replace("\n", " | "))


def main():
    unit = sys.argv[1]
    # In /tmp, not under the checkout: the "uturn" user must reach the socket, the key and the pid
    # file, and a checkout can sit under a home directory it cannot enter.
    d = tempfile.mkdtemp(prefix="uturn-pkg-run-")
    os.chmod(d, 0o777)
    try:
        run(d, unit)
    finally:
        shutil.rmtree(d, ignore_errors=True)


def run(d, unit):
    notify = Notify(d)
    pidfile = os.path.join(d, "uturnd.pid")
    trace = os.path.join(d, "strace.txt")
    port, tls_port = free_port(), free_port()
    user, password = "pkgtest", "pkgtest-password-1"
    admin_port, token = free_port(), "pkgtest-admin-token-0123456789"
    cert, key = make_cert(os.path.join(d, "tls"), "localhost")
    uid = pwd.getpwnam("uturn")
    os.chown(key, uid.pw_uid, uid.pw_gid)  # as an admin would give the service its key
    peer, pport = start_peer()
    cmd = ["strace", "-f", "-qq", "-o", trace,
           "setpriv", "--reuid=uturn", "--regid=uturn", "--init-groups", "--inh-caps=-all",
           UTURND, "-c", "/etc/uturn/uturnd.conf", "--listening-ip", "127.0.0.1",
           "--listening-port", str(port), "--tls-listening-port", str(tls_port),
           "--relay-threads", "2", "--pidfile", pidfile, "--user", "%s:%s" % (user, password),
           "--allow-loopback-peers", "--min-port", "41000", "--max-port", "41999",
           "--cert", cert, "--pkey", key, "--admin-listen", "127.0.0.1:%d" % admin_port,
           "--admin-token", token]
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "NOTIFY_SOCKET": notify.path}
    p = subprocess.Popen(cmd, env=env, stderr=subprocess.PIPE)
    try:
        notify.expect("READY=1", p)
        r = subprocess.run(["turnutils_stunclient", "-p", str(port), "127.0.0.1"],
                           capture_output=True, text=True, timeout=20)
        if "UDP reflexive addr: 127.0.0.1:" not in r.stdout:
            die("no Binding answer:\n" + r.stdout + r.stderr, p)
        print("STUN Binding answered (turnutils_stunclient)")

        srv = type("S", (), {"host": "127.0.0.1", "port": port})
        for label, flags in (("udp", []), ("tcp", ["-t"])):
            sent, recv, lost, text = uclient(srv, ["-u", user, "-w", password, "-e", "127.0.0.1",
                                                   "-r", str(pport), "-n", "10", "-m", "1",
                                                   "-l", "120"] + flags)
            if not (sent > 0 and recv == sent and lost == 0):
                die("TURN %s: sent %d received %d lost %d\n%s" % (label, sent, recv, lost,
                                                                  text[-2000:]), p)
            print("TURN relay over %s (turnutils_uclient): sent %d, received %d" % (label, sent,
                                                                                    recv))
        ctx = ssl.create_default_context()
        ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
        with ctx.wrap_socket(socket.create_connection(("127.0.0.1", tls_port), timeout=10)) as t:
            txid, req = binding_request()
            t.sendall(req)
            resp = parse(read_frame(t, timeout=10))
            if resp[0] != 0x0101 or resp[1] != txid:
                die("no TLS Binding answer", p)
            print("STUN Binding over %s answered" % t.version())
        rq = urllib.request.Request("http://127.0.0.1:%d/api/v1/stats" % admin_port,
                                    headers={"Authorization": "Bearer " + token})
        with urllib.request.urlopen(rq, timeout=10) as r:
            stats = json.load(r)
        print("admin API /api/v1/stats answered (%d keys)" % len(stats))

        with open(pidfile) as f:
            pid = int(f.read())
        os.kill(pid, signal.SIGHUP)
        notify.expect("RELOADING=1", p)
        notify.expect("READY=1", p)
        os.kill(pid, signal.SIGTERM)
        notify.expect("STOPPING=1", p)
        rc = p.wait(30)
        log = p.stderr.read().decode()
        if rc != 0 or "stopped cleanly" not in log:
            die("exit status %d:\n%s" % (rc, log[-2000:]))
        print("exit status 0, stopped cleanly")
    finally:
        if p.poll() is None:
            p.kill()
        peer.kill()
        peer.wait()

    allowed = unit_filter(unit)
    used, families, seen_exec = set(), set(), False
    for line in open(trace):
        if not seen_exec:
            seen_exec = ('execve("%s"' % UTURND) in line and "= 0" in line
            continue
        m = re.match(r"\d+\s+(?:<\.\.\. )?([a-z0-9_]+)[( ]", line)
        if m and m.group(1) not in ("exited", "killed"):
            used.add(m.group(1))
        f = re.match(r"\d+\s+socket\((AF_[A-Z0-9]+)", line)
        if f:
            families.add(f.group(1))
    if not seen_exec or not used:
        die("no execve of %s in the trace" % UTURND)
    outside = sorted(used - allowed)
    if outside:
        die("system calls outside the unit's SystemCallFilter: %s" % " ".join(outside))
    fams_outside = sorted(families - unit_families(unit))
    if fams_outside:
        die("sockets outside the unit's RestrictAddressFamilies: %s" % " ".join(fams_outside))
    print("%d distinct system calls, all inside the unit's SystemCallFilter (%d allowed); "
          "socket families %s, all allowed" % (len(used), len(allowed), " ".join(sorted(families))))


if __name__ == "__main__":
    main()
