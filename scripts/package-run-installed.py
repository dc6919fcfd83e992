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
With DROPIN (the kernel-offload drop-in, etc/uturnd-kernel-offload.conf), it runs the unit as that
drop-in changes it: its ExecStartPre=+ commands first, as root; uturnd with exactly the capabilities
of AmbientCapabilities= and `--kernel-offload on`; the same checks, plus: the TC program attached,
uclient's ChannelData relayed in the kernel (the stats API's kernel counters), every system call
inside the unit's and the drop-in's SystemCallFilter= together; then a SIGKILLed uturnd leaves its
tc filter on lo, and the drop-in's ExecStopPost=+ command, as root, removes it.
Prints one line per check; exits 1 on the first failure.
Usage: package-run-installed.py UNITFILE [DROPIN]   (its files go to a temporary directory in /tmp)
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


def lines(files):
    for f in files:
        for line in open(f):
            yield line


def unit_families(unit):
    fams = set()
    for line in open(unit):
        m = re.match(r"\s*RestrictAddressFamilies=(.*)", line)
        if m:
            fams.update(m.group(1).split())
    return fams


def unit_filter(files):
    """Allowed system calls from the SystemCallFilter= lines of the unit and its drop-ins, in
    order, as systemd applies them to an allow list: a plain entry adds, a ~ entry removes."""
    allowed = set()
    for line in lines(files):
        m = re.match(r"\s*SystemCallFilter=(~?)(.*)", line)
        if not m:
            continue
        names = set()
        for w in m.group(2).split():
            names |= expand(w) if w.startswith("@") else {w}
        if m.group(1):
            allowed -= names
        else:
            allowed |= names
    return allowed


def unit_caps(files):
    """AmbientCapabilities= of the unit and its drop-ins (merged, as systemd does), for setpriv:
    ["bpf", "net_admin", ...]."""
    caps = set()
    for line in lines(files):
        m = re.match(r"\s*AmbientCapabilities=(.*)", line)
        if m:
            caps.update(c.lower().replace("cap_", "", 1) for c in m.group(1).split())
    return sorted(caps)


def unit_exec(files, key):
    """The command lines of ExecStartPre=+ / ExecStopPost=+ (run with full privileges)."""
    out = []
    for line in lines(files):
        m = re.match(r"\s*%s=\+(.*)" % key, line)
        if m:
            out.append(m.group(1).split())
    return out


def lo_filter_handles():
    out = subprocess.run(["tc", "filter", "show", "dev", "lo", "ingress"], capture_output=True,
                         text=True).stdout
    return [int(l.split(" handle ")[1].split()[0], 16) for l in out.splitlines()
            if "uturn_ingress" in l and " handle " in l]


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
    dropin = sys.argv[2] if len(sys.argv) > 2 else None
    # In /tmp, not under the checkout: the "uturn" user must reach the socket, the key and the pid
    # file, and a checkout can sit under a home directory it cannot enter.
    d = tempfile.mkdtemp(prefix="uturn-pkg-run-")
    os.chmod(d, 0o777)
    try:
        run(d, unit, dropin)
    finally:
        shutil.rmtree(d, ignore_errors=True)


def run(d, unit, dropin):
    files = [unit] + ([dropin] if dropin else [])
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
    setpriv = ["setpriv", "--reuid=uturn", "--regid=uturn", "--init-groups", "--inh-caps=-all"]
    extra = []
    if dropin:
        caps = ",".join("+" + c for c in unit_caps(files))
        setpriv = ["setpriv", "--reuid=uturn", "--regid=uturn", "--init-groups",
                   "--inh-caps=-all," + caps, "--ambient-caps=-all," + caps,
                   "--bounding-set=-all," + caps]
        extra = ["--kernel-offload", "on"]
        for c in unit_exec(files, "ExecStartPre"):
            r = subprocess.run(c, capture_output=True, text=True)
            if r.returncode != 0:
                die("ExecStartPre=+%s: %s" % (" ".join(c), r.stderr))
            print("ExecStartPre=+%s (as root)" % " ".join(c))
        print("capabilities from the drop-in: %s" % caps)
    cmd = ["strace", "-f", "-qq", "-o", trace] + setpriv + [
           UTURND, "-c", "/etc/uturn/uturnd.conf", "--listening-ip", "127.0.0.1",
           "--listening-port", str(port), "--tls-listening-port", str(tls_port),
           "--relay-threads", "2", "--pidfile", pidfile, "--user", "%s:%s" % (user, password),
           "--allow-loopback-peers", "--min-port", "41000", "--max-port", "41999",
           "--cert", cert, "--pkey", key, "--admin-listen", "127.0.0.1:%d" % admin_port,
           "--admin-token", token] + extra
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
        if dropin:
            k = stats.get("kernel", {})
            m = k.get("messages", {})
            # uclient's UDP run above: 10 ChannelData messages each way, through the kernel.
            if not (k.get("active") and m.get("channeldata_in", 0) >= 10 and
                    m.get("channeldata_out", 0) >= 10):
                die("kernel path not active or not relaying: %s" % json.dumps(k), p)
            print("kernel path active: %d ChannelData client->peer, %d peer->client in the kernel"
                  % (m["channeldata_in"], m["channeldata_out"]))

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

    allowed = unit_filter(files)
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
    if dropin:
        crash_and_sweep(d, files, setpriv, notify)


def crash_and_sweep(d, files, setpriv, notify):
    """A SIGKILLed uturnd leaves its tc filter on lo; the drop-in's ExecStopPost=+ removes it."""
    port = free_port()
    p = subprocess.Popen(setpriv + [UTURND, "-c", "/etc/uturn/uturnd.conf", "--listening-ip",
                                    "127.0.0.1", "--listening-port", str(port),
                                    "--relay-threads", "1", "--kernel-offload", "on",
                                    "--min-port", "42000", "--max-port", "42099",
                                    "--user", "crash:crash-password-1"],
                         env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
                              "NOTIFY_SOCKET": notify.path}, stderr=subprocess.PIPE)
    try:
        notify.expect("READY=1", p)
        p.kill()
        p.wait(10)
    finally:
        if p.poll() is None:
            p.kill()
    if p.pid not in lo_filter_handles():
        die("a SIGKILLed uturnd (pid %d) should leave its filter on lo: %s"
            % (p.pid, lo_filter_handles()))
    for c in unit_exec(files, "ExecStopPost"):
        r = subprocess.run(c, capture_output=True, text=True)
        if r.returncode != 0:
            die("ExecStopPost=+%s: %s%s" % (" ".join(c), r.stdout, r.stderr))
        print("ExecStopPost=+%s (as root): %s" % (" ".join(c), r.stdout.strip()))
    if p.pid in lo_filter_handles():
        die("the crashed uturnd's filter %#x is still on lo after ExecStopPost" % p.pid)
    print("the SIGKILLed uturnd's tc filter removed by ExecStopPost")


if __name__ == "__main__":
    main()
