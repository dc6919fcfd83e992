"""A small internet in network namespaces, for tests that need real NATs between a client and uturnd.

A Lab creates hosts (one network namespace each), joins them with veth pairs made directly inside
the namespaces (nothing is attached to the host's own interfaces), turns a host into a NAT router
with a chosen behaviour (iptables MASQUERADE), runs commands and daemons inside hosts, lends the
test's own thread to a host for making sockets there (Host.netns), and removes every process and
namespace it made on close, also when a test fails. Addresses come only from the
documentation and benchmarking ranges: 203.0.113.0/24, 198.51.100.0/24 and 198.18.0.0/15, and
2001:db8::/32 for IPv6. A host is IPv4 only unless made with lab.host(name, ipv6=True): then its
IPv6 addresses skip duplicate address detection (usable at once) and it neither sends router
solicitations nor accepts advertisements.

    with Lab() as lab:
        srv = lab.host("srv")
        nat = lab.host("nat")
        cli = lab.host("cli")
        lab.link(srv, "198.51.100.1/24", nat, "198.51.100.2/24")
        lab.link(nat, "198.18.0.1/24", cli, "198.18.0.2/24")
        cli.route("default", "198.18.0.1")
        lab.nat(nat, "eth0", Lab.NAT_SYMMETRIC)
        print(cli.run(["ping", "-c1", "198.51.100.1"]).stdout)

Needs root (CI runs as root). Anything that cannot be set up raises LabError: a lab test must fail
loudly, never skip. Every command runs with a timeout.
"""
import contextlib
import ctypes
import ipaddress
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "integration"))

from uturn import SANITIZER_PATTERNS, UTURND, TestFailure, check, wait_for  # noqa: E402

CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)

PREFIX = "utlab-"  # every namespace a Lab makes is PREFIX + "<pid>-<host>"
ALLOWED = [ipaddress.ip_network(n) for n in ("203.0.113.0/24", "198.51.100.0/24", "198.18.0.0/15",
                                             "2001:db8::/32")]


class LabError(TestFailure):
    pass


def _sh(cmd, timeout=30, check_rc=True, input=None):
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, input=input)
    except subprocess.TimeoutExpired:
        raise LabError("timed out after %ds: %s" % (timeout, " ".join(cmd)))
    except OSError as e:
        raise LabError("cannot run %s: %s" % (cmd[0], e))
    if check_rc and p.returncode != 0:
        raise LabError("%s: exit %d: %s%s" % (" ".join(cmd), p.returncode, p.stdout, p.stderr))
    return p


def _setns(fd):
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        e = ctypes.get_errno()
        raise LabError("setns: %s" % os.strerror(e))


def _check_allowed(cidr):
    iface = ipaddress.ip_interface(cidr)
    if not any(iface.ip in n for n in ALLOWED):
        raise LabError("%s is outside the lab ranges %s" % (cidr, ", ".join(map(str, ALLOWED))))
    return iface


def _pid_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _kill_ns(ns):
    """Kill whatever still runs in namespace ns, then delete it."""
    p = _sh(["ip", "netns", "pids", ns], timeout=10, check_rc=False)
    for pid in p.stdout.split():
        try:
            os.kill(int(pid), signal.SIGKILL)
        except (ProcessLookupError, ValueError):
            pass
    deadline = time.monotonic() + 5
    while _sh(["ip", "netns", "pids", ns], timeout=10, check_rc=False).stdout.strip():
        if time.monotonic() > deadline:
            break
        time.sleep(0.05)
    _sh(["ip", "netns", "del", ns], timeout=10, check_rc=False)


def namespaces():
    p = _sh(["ip", "netns", "list"], timeout=10)
    return [line.split()[0] for line in p.stdout.splitlines() if line.strip()]


def cleanup_leftovers():
    """Remove lab namespaces whose creating process is gone (a killed test run). Namespaces of a
    lab that is still running (another test in parallel) are left alone."""
    for ns in namespaces():
        if not ns.startswith(PREFIX):
            continue
        try:
            owner = int(ns[len(PREFIX):].split("-", 1)[0])
        except ValueError:
            owner = None
        if owner is None or not _pid_alive(owner):
            _kill_ns(ns)


class Daemon:
    """A process started in a host; stderr goes to a file."""

    def __init__(self, host, cmd, name):
        self.host = host
        self.dir = tempfile.mkdtemp(prefix="utlab-%s-" % name)
        host.lab.dirs.append(self.dir)
        self.stderr_path = os.path.join(self.dir, "stderr.log")
        self.stderr = open(self.stderr_path, "wb")
        env = dict(os.environ)
        env.setdefault("ASAN_OPTIONS", "detect_leaks=1:abort_on_error=0")
        env.setdefault("UBSAN_OPTIONS", "print_stacktrace=1")
        # `ip netns exec` execs the command: proc.pid is the daemon itself.
        self.proc = subprocess.Popen(["ip", "netns", "exec", host.ns] + list(cmd),
                                     stdout=subprocess.DEVNULL, stderr=self.stderr, env=env)

    def log(self):
        with open(self.stderr_path, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def alive(self):
        return self.proc.poll() is None

    def stop(self, sig=signal.SIGTERM, timeout=20):
        """Signal and wait (bounded); returns the exit status (SIGKILL after the timeout)."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
                self.stderr.close()
                raise LabError("%s did not stop within %ds" % (self.proc.args, timeout))
        self.stderr.close()
        return self.proc.returncode


class Uturnd(Daemon):
    """The real uturnd in a host, with a generated config; waits for its ready line."""

    def __init__(self, host, conf, name="uturnd"):
        self.dir0 = tempfile.mkdtemp(prefix="utlab-conf-")
        host.lab.dirs.append(self.dir0)
        path = os.path.join(self.dir0, "uturnd.conf")
        with open(path, "w") as f:
            f.write("\n".join(conf) + "\n")
        super().__init__(host, [UTURND, "-c", path], name)
        wait_for(lambda: not self.alive() or " ready: " in self.log(), 20, "uturnd ready line")
        check(self.alive(), "uturnd exited at start:\n" + self.log())

    def stop_clean(self):
        """SIGTERM; fail on a non-zero exit or a sanitizer report."""
        rc = self.stop()
        log = self.log()
        m = SANITIZER_PATTERNS.search(log)
        check(m is None, "sanitizer report in uturnd stderr:\n" + log[-6000:])
        check(rc == 0, "uturnd exit status %d, log:\n%s" % (rc, log[-4000:]))


class Host:
    """One network namespace."""

    def __init__(self, lab, name, ipv6=False):
        self.lab = lab
        self.name = name
        self.ns = "%s%d-%s" % (PREFIX, os.getpid(), name)
        self.nifs = 0
        _sh(["ip", "netns", "add", self.ns], timeout=10)
        lab.hosts.append(self)
        self.ip(["link", "set", "lo", "up"])
        if ipv6:
            # Static addresses only, usable at once (no DAD, link-local ones included), no
            # router discovery: nothing but what the test sends, and neighbour discovery.
            for conf in ("all", "default"):
                self.sysctl("net.ipv6.conf.%s.accept_dad" % conf, 0)
                self.sysctl("net.ipv6.conf.%s.accept_ra" % conf, 0)
                self.sysctl("net.ipv6.conf.%s.router_solicitations" % conf, 0)
        else:
            # IPv4 only: no router solicitations or DAD delays, nothing but what the test sends.
            self.sysctl("net.ipv6.conf.all.disable_ipv6", 1)
            self.sysctl("net.ipv6.conf.default.disable_ipv6", 1)

    def __repr__(self):
        return "Host(%s)" % self.name

    def run(self, cmd, timeout=30, check_rc=True, input=None):
        """Run cmd in this host and wait (bounded). Returns the CompletedProcess."""
        return _sh(["ip", "netns", "exec", self.ns] + list(cmd), timeout=timeout, check_rc=check_rc,
                   input=input)

    def ip(self, args, **kw):
        return _sh(["ip", "-n", self.ns] + list(args), **kw)

    def sysctl(self, key, value):
        self.run(["sysctl", "-qw", "%s=%s" % (key, value)])

    def add_addr(self, ifname, cidr):
        iface = _check_allowed(cidr)
        self.ip(["addr", "add", cidr, "dev", ifname] + (["nodad"] if iface.version == 6 else []))

    def route(self, dest, via):
        """A route to dest ("default" or a CIDR) through the gateway via."""
        gw = _check_allowed(via)
        if dest != "default":
            _check_allowed(dest)
        self.ip(["-%d" % gw.version, "route", "replace", dest, "via", via])

    def start(self, cmd, name="proc"):
        """Start a process in this host; the lab stops it on close."""
        d = Daemon(self, cmd, name)
        self.lab.daemons.append(d)
        return d

    def uturnd(self, conf):
        d = Uturnd(self, conf)
        self.lab.daemons.append(d)
        return d

    @contextlib.contextmanager
    def netns(self):
        """Run the block with the calling thread (only it) in this host's network namespace, and
        return it to its own namespace after, also on an exception. A socket made inside belongs to
        this host for good: the test keeps using it from its own namespace, with no helper process
        in between."""
        own = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
        try:
            target = os.open("/run/netns/" + self.ns, os.O_RDONLY)
            try:
                _setns(target)
            finally:
                os.close(target)
            try:
                yield self
            finally:
                _setns(own)
        finally:
            os.close(own)


    def udp_socket(self, ip, port=0):
        """A UDP socket bound to ip:port (0: any) in this host's namespace, where it stays."""
        with self.netns():
            s = socket.socket(socket.AF_INET6 if ":" in ip else socket.AF_INET, socket.SOCK_DGRAM)
            try:
                s.bind((ip, port))
            except OSError:
                s.close()
                raise
        return s


class Lab:
    NAT_NONE = "none"
    NAT_ENDPOINT_INDEPENDENT = "endpoint-independent"
    NAT_FULL_CONE = "full-cone"
    NAT_SYMMETRIC = "symmetric"

    def __init__(self):
        if os.geteuid() != 0:
            raise LabError("the NAT lab needs root (network namespaces, iptables); CI runs as root")
        self.hosts = []
        self.daemons = []
        self.dirs = []  # logs and configs: removed when the lab closes without a failure
        cleanup_leftovers()

    def host(self, name, ipv6=False):
        return Host(self, name, ipv6)

    def link(self, a, a_cidr, b, b_cidr):
        """A veth pair between hosts a and b with an address on each end (None: no address).
        Returns the interface names (in a, in b)."""
        for c in (a_cidr, b_cidr):
            if c:
                _check_allowed(c)
        ia, ib = "eth%d" % a.nifs, "eth%d" % b.nifs
        a.nifs += 1
        b.nifs += 1
        # Both ends are created inside the namespaces: the host's own network never sees them.
        a.ip(["link", "add", ia, "type", "veth", "peer", "name", ib, "netns", b.ns])
        for h, i, c in ((a, ia, a_cidr), (b, ib, b_cidr)):
            if c:
                h.add_addr(i, c)
            h.ip(["link", "set", i, "up"])
        for h, i in ((a, ia), (b, ib)):
            wait_for(lambda: "LOWER_UP" in h.ip(["link", "show", "dev", i]).stdout, 10,
                     "%s %s carrier" % (h.name, i))
        return ia, ib

    def nat(self, router, out_ifname, behaviour, inside=None):
        """Make router a NAPT: forward, and masquerade what leaves through out_ifname.

        NAT_ENDPOINT_INDEPENDENT: plain MASQUERADE. Linux keeps the source port when it is free, so
        a client's port maps to the same public port whatever the destination (endpoint-independent
        mapping, RFC 4787); conntrack lets in only replies from the exact address and port a packet
        went to (address- and port-dependent filtering).
        NAT_SYMMETRIC: MASQUERADE --random-fully: every new destination gets a fresh random port
        (address- and port-dependent mapping), same filtering.
        NAT_FULL_CONE: plain MASQUERADE, and any other UDP arriving on out_ifname goes to the LAN
        address `inside` at the same port (endpoint-independent mapping and filtering, for one
        client).
        NAT_NONE: plain routing, no translation (a control).
        """
        router.sysctl("net.ipv4.ip_forward", 1)
        if behaviour == self.NAT_NONE:
            return
        rule = ["iptables", "-t", "nat", "-A", "POSTROUTING", "-o", out_ifname, "-j", "MASQUERADE"]
        if behaviour == self.NAT_SYMMETRIC:
            rule.append("--random-fully")
        elif behaviour == self.NAT_FULL_CONE:
            _check_allowed(inside + "/32")
            router.run(["iptables", "-t", "nat", "-A", "PREROUTING", "-i", out_ifname, "-p", "udp",
                        "-j", "DNAT", "--to-destination", inside])
        elif behaviour != self.NAT_ENDPOINT_INDEPENDENT:
            raise LabError("unknown NAT behaviour %r" % behaviour)
        router.run(rule)

    def close(self):
        errors = []
        for d in reversed(self.daemons):
            try:
                if d.alive():
                    d.stop(timeout=10)
            except Exception as e:  # noqa: BLE001 - keep cleaning up
                errors.append(str(e))
        self.daemons = []
        for h in reversed(self.hosts):
            _kill_ns(h.ns)
        self.hosts = []
        mine = [ns for ns in namespaces() if ns.startswith("%s%d-" % (PREFIX, os.getpid()))]
        if mine:
            errors.append("namespaces left behind: %s" % mine)
        if errors:
            raise LabError("; ".join(errors))

    def __enter__(self):
        return self

    def __exit__(self, et, ev, tb):
        try:
            self.close()
        except LabError:
            if et is None:
                raise
            return False
        if et is None:
            for d in self.dirs:
                shutil.rmtree(d, ignore_errors=True)
        else:
            print("lab logs kept in: %s" % " ".join(self.dirs), flush=True)
        return False
