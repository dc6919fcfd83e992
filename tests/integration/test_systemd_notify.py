"""systemd's notify protocol (Type=notify in uturnd.service): uturnd sends READY=1 once every
listener answers, RELOADING=1 (with MONOTONIC_USEC) then READY=1 around a SIGHUP reload, refused or
not, and STOPPING=1 when SIGTERM starts the orderly stop. Nothing is sent before the listeners are
bound, and a start that fails sends no READY=1. The test plays the service manager: an AF_UNIX
datagram socket of its own, passed to the real uturnd in $NOTIFY_SOCKET (a path, and an abstract
'@' name)."""
import os
import re
import signal
import socket
import tempfile
import time

from uturn import (BUILDDIR, Uturnd, binding_request, check, free_port, parse, read_frame, run,
                   udp_transact, wait_for)


class Manager:
    """The service manager's end of $NOTIFY_SOCKET."""

    def __init__(self, abstract=False):
        self.dir = tempfile.mkdtemp(prefix="uturn-notify-")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        if abstract:
            name = "uturn-notify-%d-%s" % (os.getpid(), os.urandom(4).hex())
            self.sock.bind("\0" + name)
            self.address = "@" + name
        else:
            self.address = os.path.join(self.dir, "notify")
            self.sock.bind(self.address)

    def env(self):
        return {"NOTIFY_SOCKET": self.address}

    def recv(self, timeout=10.0):
        """The next message as a dict of its KEY=VALUE lines."""
        self.sock.settimeout(timeout)
        try:
            data = self.sock.recv(4096)
        except socket.timeout:
            raise AssertionError("no notification within %.0fs" % timeout) from None
        fields = {}
        for line in data.decode().split("\n"):
            if line:
                k, _, v = line.partition("=")
                fields[k] = v
        return fields

    def pending(self):
        """Messages already queued (none expected)."""
        out = []
        self.sock.setblocking(False)
        try:
            while True:
                out.append(self.sock.recv(4096))
        except BlockingIOError:
            pass
        return out

    def close(self):
        self.sock.close()
        if not self.address.startswith("@"):
            os.unlink(self.address)
        os.rmdir(self.dir)


def _binding_udp(u):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    txid, req = binding_request()
    resp = parse(udp_transact(s, (u.host, u.port), req, txid, timeout=1.0))
    s.close()
    check(resp[0] == 0x0101, "UDP Binding not answered with a success: type 0x%04x" % resp[0])


def _binding_tcp(u):
    c = socket.create_connection((u.host, u.port), timeout=2)
    txid, req = binding_request()
    c.sendall(req)
    resp = parse(read_frame(c, timeout=2))
    c.close()
    check(resp[0] == 0x0101 and resp[1] == txid, "TCP Binding not answered")


def _sequence(abstract):
    m = Manager(abstract=abstract)
    # Not the harness's wait for the log line: the test acts on READY=1 alone, as systemd would.
    u = Uturnd(threads=2, env=m.env(), expect_start=False)
    try:
        ready = m.recv(20)
        # The first message is READY=1, and the listeners answer the moment it arrives.
        check(ready.get("READY") == "1", "first notification is not READY=1: %r" % ready)
        _binding_udp(u)
        _binding_tcp(u)
        check("ready:" in ready.get("STATUS", ""), "no STATUS= with READY=1: %r" % ready)
        check(m.pending() == [], "more than one notification at start")

        # SIGHUP: RELOADING=1 with the monotonic clock now, then READY=1.
        before = time.monotonic()
        u.proc.send_signal(signal.SIGHUP)
        reloading = m.recv()
        after = time.monotonic()
        check(reloading.get("RELOADING") == "1", "not RELOADING=1 after SIGHUP: %r" % reloading)
        usec = int(reloading.get("MONOTONIC_USEC", "-1"))
        check(before * 1e6 - 1000 <= usec <= after * 1e6 + 1000,
              "MONOTONIC_USEC %d outside [%d, %d]" % (usec, before * 1e6, after * 1e6))
        again = m.recv()
        check(again.get("READY") == "1", "not READY=1 after the reload: %r" % again)
        wait_for(lambda: "SIGHUP" in u.log(), 5, "SIGHUP log line")
        _binding_udp(u)

        # A reload the file refuses: the old configuration serves, and the manager hears READY=1.
        with open(u.conf_path, "a") as f:
            f.write("no-such-key = 1\n")
        u.proc.send_signal(signal.SIGHUP)
        check(m.recv().get("RELOADING") == "1", "not RELOADING=1 for a refused reload")
        again = m.recv()
        check(again.get("READY") == "1", "not READY=1 after a refused reload: %r" % again)
        check("refused" in again.get("STATUS", ""), "STATUS does not say refused: %r" % again)
        check("not reloaded" in u.log(), "the refused reload was not logged")
        _binding_udp(u)

        # SIGTERM: STOPPING=1 as the stop begins, then a clean exit.
        u.proc.send_signal(signal.SIGTERM)
        stopping = m.recv()
        check(stopping.get("STOPPING") == "1", "not STOPPING=1 after SIGTERM: %r" % stopping)
        rc = u.proc.wait(20)  # u.stop() would send a second SIGTERM
        u.stderr.close()
        check(rc == 0, "exit status %d" % rc)
        u.assert_clean()
        check(m.pending() == [], "notifications after STOPPING=1")
    finally:
        if u.alive():
            u.stop()
        m.close()


def test_ready_reload_stop_path():
    _sequence(abstract=False)


def test_ready_reload_stop_abstract():
    _sequence(abstract=True)


def test_failed_start_sends_no_ready():
    """A port held by someone else stops the start before any worker runs: no READY=1."""
    holder = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    holder.bind(("127.0.0.1", 0))
    port = holder.getsockname()[1]
    m = Manager()
    try:
        u = Uturnd(port=port, expect_start=False, env=m.env())
        rc = u.proc.wait(20)
        check(rc == 1, "exit status %d with the port taken" % rc)
        check("already in use" in u.log(), "no 'already in use' message:\n" + u.log())
        got = m.pending()
        check(not any(re.search(rb"^READY=1$", g, re.M) for g in got),
              "READY=1 from a start that failed: %r" % got)
        u.stderr.close()
    finally:
        holder.close()
        m.close()


ADMIN_TOKEN = "notify-test-token-0123456789abcdef"


def _admin_conf(admin_port):
    return ["admin-listen = 127.0.0.1:%d" % admin_port, "admin-token = " + ADMIN_TOKEN]


def test_ready_after_admin_bound():
    """main.c binds the admin API between the workers and READY=1: the moment READY=1 arrives,
    the admin's /healthz answers too."""
    m = Manager()
    admin_port = free_port()
    u = Uturnd(env=m.env(), expect_start=False, conf=_admin_conf(admin_port))
    try:
        ready = m.recv(20)
        check(ready.get("READY") == "1", "first notification is not READY=1: %r" % ready)
        c = socket.create_connection(("127.0.0.1", admin_port), timeout=2)
        c.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        c.settimeout(2)
        answer = b""
        while True:
            chunk = c.recv(4096)
            if not chunk:
                break
            answer += chunk
        c.close()
        check(answer.startswith(b"HTTP/1.1 200"), "admin /healthz at READY=1: %r" % answer[:80])
        _binding_udp(u)
        check(u.stop() == 0, "exit status after SIGTERM")
        u.assert_clean()
    finally:
        if u.alive():
            u.stop()
        m.close()


def test_failed_admin_start_sends_no_ready():
    """The admin's port is held: the workers bound, but the start fails at the admin, exits 1 and
    never sends READY=1."""
    holder = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    holder.bind(("127.0.0.1", 0))
    holder.listen(1)
    m = Manager()
    try:
        u = Uturnd(expect_start=False, env=m.env(), conf=_admin_conf(holder.getsockname()[1]))
        rc = u.proc.wait(20)
        check(rc == 1, "exit status %d with the admin port taken:\n%s" % (rc, u.log()))
        check("admin" in u.log(), "no message naming the admin:\n" + u.log())
        got = m.pending()
        check(not any(re.search(rb"^READY=1$", g, re.M) for g in got),
              "READY=1 from a start whose admin failed: %r" % got)
        u.stderr.close()
        u.assert_clean()
    finally:
        holder.close()
        m.close()


if __name__ == "__main__":
    with open(os.path.join(BUILDDIR, "config.h")) as f:
        lib = "libsystemd" if "#define HAVE_SYSTEMD 1" in f.read() else "built-in writer"
    print("sd_notify through the %s" % lib)
    run()
