#!/usr/bin/python3
"""Run the INSTALLED uturnd (/usr/sbin/uturnd) the way uturnd.service runs it, and check it works
inside the unit's limits. Called by scripts/package-test after `dpkg -i`, as root.

uturnd starts as the "uturn" user with no capabilities (setpriv), reading the packaged
/etc/uturn/uturnd.conf plus loopback overrides on free ports (and a test user, loopback peers for
the relay check), with a NOTIFY_SOCKET of our own, under strace -f. Then:
  READY=1 arrives; a STUN Binding from coturn's turnutils_stunclient is answered;
  TURN relaying with turnutils_uclient to turnutils_peer over UDP and TCP loses nothing;
  SIGHUP gives RELOADING=1 then READY=1; SIGTERM gives STOPPING=1 and exit status 0;
  every system call uturnd made (after its execve) is one the unit's SystemCallFilter allows:
  @system-service without @privileged and @resources, as systemd-analyze expands them.
Prints one line per check; exits 1 on the first failure.
Usage: package-run-installed.py WORKDIR UNITFILE
"""
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests",
                                "integration"))
from uturn import free_port, start_peer, uclient  # noqa: E402  (the test harness's helpers)

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
    work, unit = sys.argv[1], sys.argv[2]
    d = tempfile.mkdtemp(prefix="run-", dir=work)
    os.chmod(d, 0o777)
    notify = Notify(d)
    pidfile = os.path.join(d, "uturnd.pid")
    trace = os.path.join(d, "strace.txt")
    port, tls_port = free_port(), free_port()
    user, password = "pkgtest", "pkgtest-password-1"
    peer, pport = start_peer()
    cmd = ["strace", "-f", "-qq", "-o", trace,
           "setpriv", "--reuid=uturn", "--regid=uturn", "--init-groups", "--inh-caps=-all",
           UTURND, "-c", "/etc/uturn/uturnd.conf", "--listening-ip", "127.0.0.1",
           "--listening-port", str(port), "--tls-listening-port", str(tls_port),
           "--relay-threads", "2", "--pidfile", pidfile, "--user", "%s:%s" % (user, password),
           "--allow-loopback-peers", "--min-port", "41000", "--max-port", "41999"]
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
    used, seen_exec = set(), False
    for line in open(trace):
        if not seen_exec:
            seen_exec = ('execve("%s"' % UTURND) in line and "= 0" in line
            continue
        m = re.match(r"\d+\s+(?:<\.\.\. )?([a-z0-9_]+)[( ]", line)
        if m and m.group(1) not in ("exited", "killed"):
            used.add(m.group(1))
    if not seen_exec or not used:
        die("no execve of %s in the trace" % UTURND)
    outside = sorted(used - allowed)
    if outside:
        die("system calls outside the unit's SystemCallFilter: %s" % " ".join(outside))
    print("%d distinct system calls, all inside the unit's SystemCallFilter (%d allowed)"
          % (len(used), len(allowed)))


if __name__ == "__main__":
    main()
