"""Issue 14's NAT-lab proof: uturnd with kernel-offload = on in the lab's "public" namespace relays
for clients behind symmetric NATs, over veth, and ITS kernel counters (kp_global, found by its pid
on srv's eth0: tests/integration/kpath_util.py) show which datagrams the TC program relayed.

    srv 203.0.113.10 (uturnd, kernel-offload = on, 2 workers; TC on eth0's clsact ingress)
     |
    inet 203.0.113.1 ------------------------------ 198.51.100.13/30
     |  198.51.100.5/30      198.51.100.9/30          |
    nata 198.51.100.6       natb 198.51.100.10      peer 198.51.100.14 (no NAT)
     |  (symmetric NAT)      |  (symmetric NAT)
    clia 198.18.1.2         clib 198.18.2.2

(test_nat_scenarios.build, plus the peer host.) Everything reaches srv through its one veth, eth0,
and everything uturnd relays leaves through it again: a datagram the program rewrites is not for
srv itself, so it must be redirected out of eth0 (bpf_fib_lookup, bpf_redirect), not handed to
the local stack.

1. test_nat_client_to_public_peer: a TURN client of our own (uturn.py's TurnClient, its socket
   made in clia) relays to two peer sockets on the peer host: ChannelData both ways (a channel
   bound to peer 1) and Send / Data indications both ways (peer 2: a permission, no channel).
   Every datagram arrives with the right bytes, from the right source (the peer sees the relayed
   address, the client uturnd's address) and, for a Data indication, the right XOR-PEER-ADDRESS;
   the kernel relayed at least 90% of each kind (kp_global's channeldata_in, channeldata_out,
   send_in, data_out). Then coturn's turnutils_uclient in clia to turnutils_peer (an echo peer)
   on the peer host, ChannelData and Send (-s): every message comes back, and the kernel relayed
   at least 90% of them each way; but uclient puts FINGERPRINT in its Send indications, and
   those the data plane leaves to user space (kp_global's pass_unhandled): each of them must be
   relayed by the kernel or counted there.
2. test_relay_only_agents_behind_symmetric_nats: two relay-only aioice agents (as
   test_nat_scenarios.test_symmetric_nats_need_turn): the data arrives. Relay to relay on one
   uturnd, the client -> peer rewrite's destination is uturnd's own relayed address: the program
   runs again on it for the peer -> client hop. The kernel must relay at least 90% each way
   (the rest: ICE checks before the channels exist), drop none, and relay the peer -> client
   half at least as often as the client -> peer half (a rewritten datagram handed to srv's own
   stack off loopback would be a martian).
3. Both: uturnd stops cleanly (its TC filter gone from eth0), and after the lab closes the program
   is freed and no namespace is left.

srv's eth0 keeps forwarding off (checked): the program looks routes up as loopback's, whose
forwarding uturnd turns on, so a TURN server need not be a router for the kernel path.

Needs root (fails without, like every lab test). Skips (exit 77, with the reason) only where the
kernel path cannot run: a uturnd built without it, no bpftool or tc, a kernel that refuses bpf().
uclient's part prints SKIP when coturn's tools are not installed.
"""
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import types

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from lab import PREFIX, Lab, namespaces  # noqa: E402
import test_nat_scenarios as scen  # noqa: E402
from test_nat_scenarios import PASS, PORT, SRV, USER, build, check_relayed, ice  # noqa: E402
from uturn import (A_DATA, A_PEER, M_DATA, TurnClient, check, get_attr, mtype, parse,  # noqa: E402
                   relayed_addresses, run, tests_to_run, wait_for, xor_address)
import kpath_util  # noqa: E402
from kpath_util import diff, from_peer, to_peer  # noqa: E402

PEER = "198.51.100.14"
SHARE = 0.9  # of the traffic, at least, the kernel must have relayed
N = 100  # datagrams of each kind (ChannelData and Send/Data, each way)
CHANNEL = 0x4000


def kp_global(srv, pid):
    """kp_global of srv's uturnd (its filter is on srv's eth0: tc runs in srv, bpftool's ids are
    the machine's)."""
    with srv.netns():
        return kpath_util.kp_global(pid, "eth0")


def tc_ingress(srv):
    return srv.run(["tc", "filter", "show", "dev", "eth0", "ingress"]).stdout


def start(lab, peer_host=False):
    """The lab (symmetric NATs), srv with forwarding on, uturnd with kernel-offload = on. Returns
    (srv, clients, peer host or None, uturnd, its program id)."""
    srv, clients = build(lab, Lab.NAT_SYMMETRIC)
    peer = None
    if peer_host:
        inet = [h for h in lab.hosts if h.name == "inet"][0]
        peer = lab.host("peer")
        lab.link(inet, "198.51.100.13/30", peer, PEER + "/30")
        peer.route("default", "198.51.100.13")
    # A server as operators run one: not a router. The program's route lookups run as
    # loopback's, whose forwarding uturnd turns on (docs/KERNEL.md); eth0's stays off.
    for key in ("net.ipv4.conf.all.forwarding", "net.ipv4.conf.eth0.forwarding"):
        got = srv.run(["sysctl", "-n", key]).stdout.strip()
        check(got == "0", "srv: %s is %s, want 0 (the default)" % (key, got))
    extra = ["kernel-offload = on"] + (["allowed-peer-ip = " + PEER] if peer_host else [])
    u = scen.uturnd(srv, extra)
    with srv.netns():
        prog = kpath_util.prog_id(u.proc.pid, "eth0")
    check(prog is not None, "no %s filter with handle %#x on srv's eth0 ingress:\n%s\n%s"
          % (kpath_util.PROG, u.proc.pid, tc_ingress(srv), u.log()[-2000:]))
    print("srv eth0 ingress: %s" % tc_ingress(srv).strip().replace("\n", " | "), flush=True)
    return srv, clients, peer, u, prog


def stop(srv, u):
    """uturnd stops cleanly and takes its filter off eth0."""
    pid = u.proc.pid
    u.stop_clean()
    with srv.netns():
        check(kpath_util.prog_id(pid, "eth0") is None,
              "uturnd %d's filter is still on srv's eth0 after it stopped:\n%s"
              % (pid, tc_ingress(srv)))


def check_gone(prog):
    """After the lab: the program is freed and no namespace of this process is left."""
    out = subprocess.run(["bpftool", "prog", "show", "id", str(prog)], capture_output=True,
                         text=True, timeout=30)
    check(out.returncode != 0, "program %d still loaded after the lab closed:\n%s"
          % (prog, out.stdout))
    mine = [ns for ns in namespaces() if ns.startswith("%s%d-" % (PREFIX, os.getpid()))]
    check(not mine, "namespaces left behind: %s" % mine)


def payload(tag, n):
    size = 1 + (n * 97) % 1200
    head = b"%s %d " % (tag, n)
    return (head + bytes((n * 13 + i) % 256 for i in range(size)))[:max(size, len(head))]


def recv_from(sock, timeout):
    sock.settimeout(timeout)
    try:
        return sock.recvfrom(65536)
    except socket.timeout:
        return None, None


def client_recv(sock, timeout=2.0):
    """The next ChannelData or Data indication on the client's socket: (source, kind, channel or
    XOR-PEER-ADDRESS, data); None on timeout. Anything else (a stray response) is skipped."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        msg, src = recv_from(sock, max(0.01, deadline - time.monotonic()))
        if msg is None:
            return None
        if msg[0] & 0xC0 == 0x40 and len(msg) >= 4:
            n = int.from_bytes(msg[2:4], "big")
            return src, "channel", int.from_bytes(msg[:2], "big"), msg[4:4 + n]
        if len(msg) >= 20:
            mt, txid, attrs = parse(msg)
            if mt == mtype(M_DATA, 1):
                return src, "data", xor_address(get_attr(attrs, A_PEER), txid), get_attr(attrs,
                                                                                          A_DATA)
    return None


def slots(d, names):
    """The sum of kp_global growth d over "+"-joined slot names; to_peer and from_peer are every
    kind of that direction. A slot the header does not have (yet) counts 0."""
    total = 0
    for name in names.split("+"):
        total += to_peer(d) if name == "to_peer" else from_peer(d) if name == "from_peer" \
            else d.get(name, 0)
    return total


class Kernel:
    """kp_global's growth around one step, checked against what the clients relayed; failures
    are collected so every step runs (and every delivery check with it) whatever the kernel did."""

    def __init__(self, srv, u):
        self.srv, self.u = srv, u
        self.failed = []

    def __call__(self, what, fn):
        before = kp_global(self.srv, self.u.proc.pid)
        expect = fn()
        d = diff(kp_global(self.srv, self.u.proc.pid), before)
        print("%s: kernel relayed %d ChannelData + %d Send client -> peer (%d B), %d ChannelData "
              "+ %d Data peer -> client (%d B); passed up: %d expired, %d unhandled, %d route; "
              "%d redirect failures; the clients relayed %r"
              % (what, d["channeldata_in"], d["send_in"], d["to_peer_bytes"],
                 d["channeldata_out"], d["data_out"], d["from_peer_bytes"], d["pass_expired"],
                 d["pass_unhandled"], d.get("pass_route", 0), d["redirect_fail"], expect),
              flush=True)
        for slot, count in expect.items():
            got = slots(d, slot)
            if got < SHARE * count:
                self.failed.append("%s: the kernel's %s grew by %d, less than %d%% of the %d "
                                   "datagrams relayed (kp_global growth: %s)"
                                   % (what, slot, got, SHARE * 100, count, d))
        if d["redirect_fail"]:
            self.failed.append("%s: %d datagrams rewritten but not sent on (redirect_fail)"
                               % (what, d["redirect_fail"]))
        return d


def _turn_client(srv, cli, lan, peer, kernel):
    """Our TurnClient in cli: ChannelData and Send/Data both ways with two sockets on the peer
    host."""
    with cli.netns():
        tc = TurnClient(types.SimpleNamespace(host=SRV, port=PORT), USER, PASS, local=lan)
    p1, p2 = peer.udp_socket(PEER), peer.udp_socket(PEER)
    try:
        code, _, raw = tc.allocate(raw_response=True)
        check(code == 0, "Allocate from clia: error %s" % code)
        relayed = relayed_addresses(raw)
        check(len(relayed) == 1 and relayed[0][0] == SRV, "relayed addresses %r" % relayed)
        relayed = relayed[0]
        a1, a2 = p1.getsockname(), p2.getsockname()
        check(tc.create_permission(a1)[0] == 0, "CreatePermission for %s" % (a1,))
        check(tc.channel_bind(CHANNEL, *a1)[0] == 0, "ChannelBind %#x to %s" % (CHANNEL, a1))
        server = (SRV, PORT)

        def to_peer_step(kind, psock, paddr, send):
            bad = []
            for n in range(N):
                data = payload(kind.encode(), n)
                send(data)
                got, src = recv_from(psock, 2)
                if got != data or src != relayed:
                    bad.append((n, len(data), None if got is None else len(got), src))
                    if len(bad) == 5:
                        break  # enough to tell; each miss costs a timeout
            check(not bad, "%s client -> peer %s: wrong or missing (n, sent, got, source; want "
                  "source %s): %r" % (kind, paddr, relayed, bad))
            return N

        def to_client_step(kind, psock, want):
            bad = []
            for n in range(N):
                data = payload(kind.encode(), n)
                psock.sendto(data, relayed)
                got = client_recv(tc.sock)
                if got != (server, want[0], want[1], data):
                    bad.append((n, len(data), got and got[:3], got and len(got[3] or b"")))
                    if len(bad) == 5:
                        break
            check(not bad, "%s peer -> client: wrong or missing (n, sent, (source, kind, channel "
                  "or peer), got; want %r): %r" % (kind, (server,) + want, bad))
            return N

        kernel("ChannelData client -> peer", lambda: {"channeldata_in": to_peer_step(
            "ChannelData", p1, a1, lambda d: tc.channel_data(CHANNEL, d))})
        kernel("ChannelData peer -> client", lambda: {"channeldata_out": to_client_step(
            "ChannelData", p1, ("channel", CHANNEL))})
        kernel("Send client -> peer", lambda: {"send_in": to_peer_step(
            "Send", p2, a2, lambda d: tc.send_indication(a2[0], a2[1], d))})
        kernel("Data peer -> client", lambda: {"data_out": to_client_step(
            "Data", p2, ("data", a2))})
        check(tc.refresh(0)[0] == 0, "Refresh 0")
    finally:
        for s in (tc, p1, p2):
            s.close()


def _uclient(cli, peer, kernel):
    """coturn's uclient in cli to turnutils_peer on the peer host, ChannelData and Send."""
    if not (shutil.which("turnutils_uclient") and shutil.which("turnutils_peer")):
        print("SKIP uclient part: turnutils_uclient/turnutils_peer not installed "
              "(apt-get install coturn; scripts/deps.sh test)", flush=True)
        return
    pport = 3480
    peer.start(["turnutils_peer", "-L", PEER, "-p", str(pport)], "peer")
    wait_for(lambda: ":%d " % pport in peer.run(["ss", "-Hluan"]).stdout, 10,
             "turnutils_peer listening on the peer host")
    for label, flags in (("uclient ChannelData", []), ("uclient Send/Data", ["-s"])):
        def step():
            p = cli.run(["turnutils_uclient", "-p", str(PORT), "-u", USER, "-w", PASS, "-e", PEER,
                         "-r", str(pport), "-n", "50", "-m", "2", "-l", "400"] + flags + [SRV],
                        timeout=60, check_rc=False)
            text = p.stdout + p.stderr
            sent, recv, lost = (int(v[-1]) if v else -1 for v in (
                re.findall(r"tot_send_msgs=(\d+)", text), re.findall(r"tot_recv_msgs=(\d+)", text),
                re.findall(r"Total lost packets (\d+)", text)))
            check(sent > 0 and recv == sent and lost == 0,
                  "%s: sent %d received %d lost %d\n%s" % (label, sent, recv, lost, text[-3000:]))
            if flags:
                # uclient's Send indications carry FINGERPRINT, which user space checks when
                # present: the data plane leaves those to user space as "unhandled" (kpath.bpf.c,
                # c2p_send). Each must be one or the other; our own client's Send indications
                # above (no FINGERPRINT) are the kernel's.
                return {"to_peer+pass_unhandled": sent, "from_peer": sent}
            return {"to_peer": sent, "from_peer": sent}
        kernel(label, step)


def test_nat_client_to_public_peer():
    t0 = time.monotonic()
    with Lab() as lab:
        srv, clients, peer, u, prog = start(lab, peer_host=True)
        cli, lan, _ = clients[0]
        kernel = Kernel(srv, u)
        _turn_client(srv, cli, lan, peer, kernel)
        _uclient(cli, peer, kernel)
        check(u.alive(), "uturnd died:\n" + u.log()[-3000:])
        stop(srv, u)
    check_gone(prog)
    print("client behind a symmetric NAT to a public peer: %.1fs" % (time.monotonic() - t0),
          flush=True)
    check(not kernel.failed, "\n".join(kernel.failed))


def test_relay_only_agents_behind_symmetric_nats():
    t0 = time.monotonic()
    with Lab() as lab:
        srv, clients, _, u, prog = start(lab)
        got = srv.run(["sysctl", "-n", "net.ipv4.conf.eth0.forwarding"]).stdout.strip()
        check(got == "0", "srv: eth0 forwarding %s after uturnd started, want 0" % got)
        kernel = Kernel(srv, u)
        res = {}

        # Each agent's ten datagrams and three byes cross uturnd twice: client -> peer into the
        # sender's relay, peer -> client out of the receiver's.
        sent = 2 * 10 + 3

        def step():
            res.update(ice(lab, clients, turn=("udp", False, PORT)))
            # Relay to relay, the rewritten datagram's destination is srv's own relayed address:
            # the program runs again on it (a tail call into itself) for the peer -> client hop,
            # so both hops are the kernel's.
            return {"to_peer": sent, "from_peer": sent}
        d = kernel("aioice relay to relay", step)
        check_relayed(res, "udp")
        print("aioice relay to relay: kernel share of the %d data datagrams: client -> peer %.0f%%,"
              " peer -> client %.0f%%" % (sent, 100.0 * to_peer(d) / sent,
                                         100.0 * from_peer(d) / sent), flush=True)
        # The data plane's promise relay to relay: a client -> peer datagram it rewrote towards our
        # own relayed address is not handed to srv's own stack off loopback (a martian): it is
        # matched again as peer -> client, so the kernel relays that half at least as often.
        if from_peer(d) < to_peer(d):
            kernel.failed.append("aioice: the kernel rewrote %d datagrams client -> peer (relay to "
                                 "relay) but relayed only %d peer -> client: %s"
                                 % (to_peer(d), from_peer(d), d))
        check(u.alive(), "uturnd died:\n" + u.log()[-3000:])
        stop(srv, u)
    check_gone(prog)
    print("relay-only agents behind symmetric NATs: %.1fs" % (time.monotonic() - t0), flush=True)
    check(not kernel.failed, "\n".join(kernel.failed))


if __name__ == "__main__":
    tests_to_run()  # --list and bad names before anything starts
    # Like every lab test, it fails without root (Lab says why); it skips only where the kernel
    # path cannot run (a uturnd built without it, no bpftool/tc, a kernel that refuses bpf()).
    why = kpath_util.kernel_skip_reason() if os.geteuid() == 0 else None
    if why:
        print("SKIP test_kernel_lab.py: %s" % why, flush=True)
        sys.exit(77)
    run()
