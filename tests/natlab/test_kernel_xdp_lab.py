"""Issue 14's XDP proof in the NAT lab: uturnd with kernel-offload = on and kernel-offload-xdp = on
in the lab's "public" namespace attaches its XDP program (uturn_xdp, native mode) on srv's veth
eth0 in front of its TC program, and relays ChannelData both ways in XDP for a client behind a
symmetric NAT and a peer host (the topology of test_kernel_lab.py):

    srv 203.0.113.10 (uturnd; XDP and TC on eth0)
     |
    inet 203.0.113.1 (an XDP_PASS program on its end of srv's veth) ---- peer 198.51.100.14
     |
    nata (symmetric NAT) --- clia 198.18.1.2 (TurnClient)

Everything reaches srv through eth0 and everything relayed leaves through it again, so the XDP
program sends it back out of the veth it came in on (XDP_TX). A frame XDP_TX sends out of a veth
waits in the far end's ring until that end's NAPI runs, which the kernel schedules for XDP_TX only
when the far end has an XDP program of its own: this test puts an XDP_PASS program there, which is
what kernel-offload-xdp = on asserts (docs/KERNEL.md).

1. Senders as on a real wire (transmit checksum offload off on clia's and the peer's interfaces,
   so every datagram carries its full UDP checksum through the NAT): N ChannelData each way
   arrive byte for byte from the right source, and uturnd's kp_global says XDP relayed at least
   90% of them (xdp_relayed, and channeldata_in / channeldata_out grew as much), with no redirect
   failure.
2. Senders with checksum offload on (a local socket's CHECKSUM_PARTIAL skb keeps only the
   pseudo-header seed across the veths): XDP cannot verify them and leaves them to TC
   (xdp_passed_csum), which relays them; every datagram still arrives byte for byte.
3. SIGKILL: uturnd leaves its XDP program on eth0. A new uturnd with kernel-offload-xdp = auto
   and a second listening address on a bridge (no ports) removes it at start (logged), and leaves
   XDP off on the veth (auto) and on the bridge (no native XDP), one line each saying why; TC
   relays.
   After it stops, no XDP program is on any interface of srv and no tc filter of ours.
4. kernel-offload-xdp = on with that bridge: uturnd refuses to start, naming the config file, line,
   key and interface, and leaves nothing attached.

test_xdp_redirects_between_veths: a peer on a second veth of srv, ChannelData by XDP_REDIRECT
between the two veths; then kernel-offload-xdp = off attaches and loads no XDP program.

test_xdp_relays_ipv6: the proof of 1. over IPv6 in a lab of its own (addresses from 2001:db8::/32,
no DAD, routed, no NAT):

    srv 2001:db8:10::10 (uturnd, listening and relaying on IPv6; XDP and TC on eth0)
     |
    rt 2001:db8:10::1 (an XDP_PASS program on its end of srv's veth; IPv6 forwarding)
     |  2001:db8:11::1          |  2001:db8:12::1
    cli 2001:db8:11::2         peer 2001:db8:12::2

An IPv6 allocation (REQUESTED-ADDRESS-FAMILY), N ChannelData and N Send / Data indications each
way with full checksums, byte for byte from the right source, at least 90% relayed by XDP
(XDP_TX back out of srv's eth0), no redirect failure. Then ChannelData with a UDP checksum of 0
(UDP_NO_CHECK6_TX) each way: invalid over IPv6, so XDP leaves every one to TC (xdp_passed_csum),
none is relayed and none arrives, and a checksummed one after them still does.

Needs root (fails without, like every lab test). Skips (exit 77, with the reason) only where the
kernel path cannot run (kpath_util.kernel_skip_reason), or where the kernel refuses native XDP on
a veth.
"""
import http.client
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
import types

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from lab import Lab  # noqa: E402
import test_nat_scenarios as scen  # noqa: E402
from test_nat_scenarios import PASS, PORT, SRV, USER, build  # noqa: E402
from test_kernel_lab import client_recv, kp_global, recv_from  # noqa: E402
from uturn import (A_REQ_FAMILY, TestFailure, TurnClient, attr, check, relayed_addresses,  # noqa: E402
                   run, tests_to_run, wait_for)
import kpath_util  # noqa: E402
from kpath_util import diff  # noqa: E402

PEER = "198.51.100.14"
SRV_ETH1, PEER2 = "198.51.100.17", "198.51.100.18"  # srv's second veth and a peer behind it
BRIDGE_IP = "198.18.200.1"  # a listening address on srv's bridge br0 (no native XDP)
CHANNEL = 0x4000
N = 60  # ChannelData each way, per phase
SHARE = 0.9


def xdp_of(host, dev):
    """The id of the XDP program attached to host's dev, or None."""
    out = host.ip(["-d", "link", "show", "dev", dev]).stdout
    m = re.search(r"prog/xdp(?:drv)? id (\d+)", out)
    return int(m.group(1)) if m else None


def xdp_anywhere(host):
    """{interface: XDP program id} over every interface of host."""
    out = host.ip(["-d", "-o", "link", "show"]).stdout
    found = {}
    for line in out.splitlines():
        m = re.search(r"prog/xdp(?:drv)? id (\d+)", line)
        if m:
            found[line.split(":")[1].strip().split("@")[0]] = int(m.group(1))
    return found


def payload(tag, n):
    size = 1 + (n * 173) % 1400
    head = b"%s %d " % (tag, n)
    return (head + bytes((n * 7 + i) % 256 for i in range(size)))[:max(size, len(head))]


ADMIN_PORT, TOKEN = 9641, "xdp-lab-admin-token-0123456789"


def start_uturnd(srv, xdp, extra=()):
    return scen.uturnd(srv, ["kernel-offload = on", "kernel-offload-xdp = " + xdp,
                             "allowed-peer-ip = " + PEER,
                             "admin-listen = %s:%d" % (SRV, ADMIN_PORT),
                             "admin-token = " + TOKEN] + list(extra))


def xdp_uturnd_or_skip(start):
    """start() starts a uturnd with kernel-offload-xdp = on in srv. Returns it once its log says
    uturn_xdp is attached on eth0 in native mode; None, with the SKIP line, only when the kernel
    refuses native XDP on a veth (any other failure to start is a failure)."""
    try:
        u = start()
    except TestFailure as e:
        if "cannot be attached in native mode" not in str(e):
            raise
        print("SKIP: the kernel refuses native XDP on a veth: %s" % e, flush=True)
        return None
    log = u.log()
    check("XDP program uturn_xdp attached in native mode on eth0 (driver veth)" in log,
          "no XDP attach line in uturnd's log:\n" + log[-3000:])
    return u


def metric(srv, line_start):
    """The value of the /metrics sample that starts with line_start (uturnd's admin in srv)."""
    with srv.netns():
        c = http.client.HTTPConnection(SRV, ADMIN_PORT, timeout=10)
        c.request("GET", "/metrics", headers={"Authorization": "Bearer " + TOKEN})
        body = c.getresponse().read().decode()
        c.close()
    for line in body.splitlines():
        if line.startswith(line_start + " "):
            return int(float(line.split()[-1]))
    raise TestFailure("no %s in /metrics" % line_start)


def addr(a):
    """(ip, port) of a socket address of either family (IPv6 ones carry flow info and scope)."""
    return None if a is None else tuple(a[:2])


def relay_both_ways(tc, relayed, p1, tag, server=(SRV, PORT)):
    """N ChannelData client -> peer, then N peer -> client; each must arrive byte for byte."""
    a1 = p1.getsockname()
    bad = []
    for n in range(N):
        data = payload(tag + b">", n)
        tc.channel_data(CHANNEL, data)
        got, src = recv_from(p1, 2)
        if got != data or addr(src) != relayed:
            bad.append(("to peer", n, len(data), None if got is None else len(got), src))
            if len(bad) >= 5:
                break
    for n in range(N):
        data = payload(tag + b"<", n)
        p1.sendto(data, relayed)
        got = client_recv(tc.sock)
        if got is None or (addr(got[0]),) + got[1:] != (server, "channel", CHANNEL, data):
            bad.append(("to client", n, len(data), got and got[:3], got and len(got[3] or b"")))
            if len(bad) >= 5:
                break
    check(not bad, "%s: ChannelData with peer %s wrong or missing (direction, n, sent, got, "
          "source): %r" % (tag.decode(), a1, bad))


def indications_both_ways(tc, relayed, p2, tag, server=(SRV, PORT)):
    """N Send indications to p2 (a permission, no channel), then N datagrams from p2, which reach
    the client as Data indications; each byte for byte, from the right source and peer."""
    a2 = addr(p2.getsockname())
    bad = []
    for n in range(N):
        data = payload(tag + b"}", n)
        tc.send_indication(a2[0], a2[1], data)
        got, src = recv_from(p2, 2)
        if got != data or addr(src) != relayed:
            bad.append(("to peer", n, len(data), None if got is None else len(got), src))
            if len(bad) >= 5:
                break
    for n in range(N):
        data = payload(tag + b"{", n)
        p2.sendto(data, relayed)
        got = client_recv(tc.sock)
        if got is None or (addr(got[0]),) + got[1:] != (server, "data", a2, data):
            bad.append(("to client", n, len(data), got and got[:3], got and len(got[3] or b"")))
            if len(bad) >= 5:
                break
    check(not bad, "%s: Send/Data with peer %s wrong or missing (direction, n, sent, got, "
          "source): %r" % (tag.decode(), a2, bad))


PASS_PROG = """
struct xdp_md;
__attribute__((section("xdp"), used)) int xdp_pass(struct xdp_md *ctx) { return 2; /* XDP_PASS */ }
char LICENSE[] __attribute__((section("license"), used)) = "GPL";
"""


def far_end_xdp_pass(lab, host, dev):
    """An XDP program that passes everything on host's dev (clang -target bpf; ip link)."""
    d = tempfile.mkdtemp(prefix="utlab-xdppass-")
    lab.dirs.append(d)
    src, obj = os.path.join(d, "pass.c"), os.path.join(d, "pass.o")
    with open(src, "w") as f:
        f.write(PASS_PROG)
    cc = subprocess.run(["clang", "-target", "bpf", "-O2", "-c", src, "-o", obj],
                        capture_output=True, text=True, timeout=60)
    check(cc.returncode == 0, "clang -target bpf: %s" % cc.stderr)
    host.ip(["link", "set", "dev", dev, "xdpdrv", "obj", obj, "sec", "xdp"])
    check(xdp_of(host, dev) is not None, "no XDP_PASS program on %s %s" % (host.name, dev))


def checksum_offload(host, dev, on):
    host.run(["ethtool", "-K", dev, "tx", "on" if on else "off"])


def veth_xdp_stats(host, dev):
    """A veth's own XDP counters (ethtool -S): {"xdp_tx": n, "xdp_redirect": n}, summed over its
    queues."""
    out = host.run(["ethtool", "-S", dev]).stdout
    got = {"xdp_tx": 0, "xdp_redirect": 0}
    for name, value in re.findall(r"rx_queue_\d+_(xdp_tx|xdp_redirect): (\d+)", out):
        got[name] += int(value)
    return got


def session(cli, lan, peer, peer_ip):
    """A TurnClient in cli with an allocation, a permission and CHANNEL bound to a socket on
    peer: (client, relayed address, peer socket)."""
    with cli.netns():
        tc = TurnClient(types.SimpleNamespace(host=SRV, port=PORT), USER, PASS, local=lan)
    p1 = peer.udp_socket(peer_ip)
    code, _, raw = tc.allocate(raw_response=True)
    check(code == 0, "Allocate from %s: error %s" % (cli.name, code))
    relayed = relayed_addresses(raw)
    check(len(relayed) == 1 and relayed[0][0] == SRV, "relayed addresses %r" % relayed)
    a1 = p1.getsockname()
    check(tc.create_permission(a1)[0] == 0, "CreatePermission for %s" % (a1,))
    check(tc.channel_bind(CHANNEL, *a1)[0] == 0, "ChannelBind %#x" % CHANNEL)
    return tc, relayed[0], p1


def test_xdp_relays_channeldata_through_nat():
    t0 = time.monotonic()
    with Lab() as lab:
        srv, clients = build(lab, Lab.NAT_SYMMETRIC)
        inet = [h for h in lab.hosts if h.name == "inet"][0]
        peer = lab.host("peer")
        lab.link(inet, "198.51.100.13/30", peer, PEER + "/30")
        peer.route("default", "198.51.100.13")
        cli, lan, _ = clients[0]
        # srv's one veth: its far end is inet's eth0 (build's first link). What XDP sends back out
        # of srv's eth0 (XDP_TX) is delivered only when that end runs an XDP program: an XDP_PASS
        # one (docs/KERNEL.md).
        far_end_xdp_pass(lab, inet, "eth0")
        u = xdp_uturnd_or_skip(lambda: start_uturnd(srv, "on"))
        if u is None:
            return
        prog = xdp_of(srv, "eth0")
        check(prog is not None, "no XDP program on srv's eth0:\n%s"
              % srv.ip(["-d", "link", "show", "dev", "eth0"]).stdout)
        pid = u.proc.pid
        tc, relayed, p1 = session(cli, lan, peer, PEER)
        p2 = peer.udp_socket(PEER)
        try:
            check(tc.create_permission(p2.getsockname())[0] == 0, "CreatePermission for p2")
            # 1. Full checksums from the senders (as from a real wire): XDP relays, back out of
            # the veth it came in on (XDP_TX).
            checksum_offload(cli, "eth0", False)
            checksum_offload(peer, "eth0", False)
            before, v0 = kp_global(srv, pid), veth_xdp_stats(srv, "eth0")
            relay_both_ways(tc, relayed, p1, b"wire")
            indications_both_ways(tc, relayed, p2, b"wire")
            d = diff(kp_global(srv, pid), before)
            tx = veth_xdp_stats(srv, "eth0")["xdp_tx"] - v0["xdp_tx"]
            check(tx >= SHARE * 4 * N, "srv eth0 sent %d frames by XDP_TX, want %d" % (tx, 4 * N))
            # What an operator sees: /metrics counts what XDP relayed.
            shown = metric(srv, 'uturn_kernel_xdp_total{result="relayed"}')
            check(shown >= d["xdp_relayed"], "/metrics shows %d relayed by XDP, kp_global %d"
                  % (shown, d["xdp_relayed"]))
            check(d["send_in"] >= SHARE * N and d["data_out"] >= SHARE * N,
                  "the kernel relayed %d Send and %d Data indications of %d each: %s"
                  % (d["send_in"], d["data_out"], N, d))
            print("full checksums: xdp_relayed %d, channeldata in %d out %d, send %d, data %d, "
                  "xdp_passed_csum %d, redirect_fail %d, pass_route %d"
                  % (d["xdp_relayed"], d["channeldata_in"], d["channeldata_out"], d["send_in"],
                     d["data_out"], d["xdp_passed_csum"], d["redirect_fail"], d["pass_route"]),
                  flush=True)
            check(d["xdp_relayed"] >= SHARE * 4 * N and d["channeldata_in"] >= SHARE * N and
                  d["channeldata_out"] >= SHARE * N,
                  "XDP relayed %d of %d datagrams (kp_global growth %s)" % (d["xdp_relayed"],
                                                                           4 * N, d))
            check(d["redirect_fail"] == 0, "redirect failures: %s" % d)

            # 2. Checksum offload on: a CHECKSUM_PARTIAL seed, which XDP leaves to TC.
            checksum_offload(cli, "eth0", True)
            checksum_offload(peer, "eth0", True)
            before = kp_global(srv, pid)
            relay_both_ways(tc, relayed, p1, b"seed")
            d = diff(kp_global(srv, pid), before)
            print("checksum seeds: xdp_relayed %d, xdp_passed_csum %d, channeldata in %d out %d"
                  % (d["xdp_relayed"], d["xdp_passed_csum"], d["channeldata_in"],
                     d["channeldata_out"]), flush=True)
            check(d["xdp_passed_csum"] >= SHARE * 2 * N,
                  "XDP left only %d of %d seeded datagrams to TC: %s" % (d["xdp_passed_csum"],
                                                                        2 * N, d))
            check(d["channeldata_in"] + d["channeldata_out"] >= SHARE * 2 * N,
                  "the kernel (TC) relayed only %d of %d: %s"
                  % (d["channeldata_in"] + d["channeldata_out"], 2 * N, d))
        finally:
            for s in (tc, p1, p2):
                s.close()

        # 3. A crashed uturnd's XDP program: removed by the next one, which (auto) leaves the veth
        # alone and says why.
        u.stop(signal.SIGKILL)
        check(xdp_of(srv, "eth0") == prog, "the killed uturnd's XDP program is not on eth0")
        # A second listening address on an interface without native XDP (a bridge, no ports).
        srv.ip(["link", "add", "br0", "type", "bridge"])
        srv.add_addr("br0", BRIDGE_IP + "/32")
        srv.ip(["link", "set", "br0", "up"])
        u2 = start_uturnd(srv, "auto", ["listening-ip = " + BRIDGE_IP])
        log = u2.log()
        check("removed the XDP program left by uturnd pid %d" % pid in log,
              "no sweep line for pid %d in the new uturnd's log:\n%s" % (pid, log[-3000:]))
        check("kernel-offload-xdp = auto: XDP left off on eth0 (veth)" in log,
              "no line saying why XDP is off on the veth:\n" + log[-3000:])
        for line in log.splitlines():
            if "kernel-offload-xdp" in line or "XDP program left" in line:
                print("uturnd: " + line.strip(), flush=True)
        check("kernel-offload-xdp = auto: XDP left off on br0 (driver bridge)" in log,
              "no line saying why XDP is off on the bridge:\n" + log[-3000:])
        check(not xdp_anywhere(srv), "XDP programs on srv after the sweep: %s" % xdp_anywhere(srv))
        pid2 = u2.proc.pid
        u2.stop_clean()
        with srv.netns():
            check(kpath_util.prog_id(pid2, "eth0") is None, "uturnd's tc filter left on eth0")
            check(kpath_util.prog_id(pid, "eth0") is None, "the killed uturnd's tc filter left")
        check(not xdp_anywhere(srv), "XDP programs on srv after uturnd stopped: %s"
              % xdp_anywhere(srv))

        # on: an interface where the native attach fails refuses the start, naming the key.
        try:
            start_uturnd(srv, "on", ["listening-ip = " + BRIDGE_IP])
            check(False, "uturnd started with kernel-offload-xdp = on and a bridge")
        except TestFailure as e:
            print("uturnd refused: %s" % [x for x in str(e).splitlines() if "start:" in x],
                  flush=True)
            check(re.search(r"uturnd\.conf:\d+: 'kernel-offload-xdp': on, but the XDP program "
                            r"cannot be attached in native mode on br0", str(e)),
                  "uturnd's refusal does not name the file, line, key and interface:\n%s" % e)
        check(not xdp_anywhere(srv), "XDP programs on srv after the refused start: %s"
              % xdp_anywhere(srv))
        check("uturn_ingress" not in srv.run(["tc", "filter", "show", "dev", "eth0",
                                              "ingress"]).stdout,
              "a tc filter left on eth0 after the refused start")
    print("XDP in the NAT lab: %.1fs" % (time.monotonic() - t0), flush=True)


def test_xdp_redirects_between_veths():
    """A peer on a second veth of srv (eth1, a second listening address, so TC and XDP are
    attached there too): ChannelData from the client comes in on eth0 and leaves by eth1, the
    peer's the other way, each a redirect (bpf_redirect, XDP_REDIRECT) between the two veths.
    Then kernel-offload-xdp = off: nothing attached, the XDP program not loaded."""
    t0 = time.monotonic()
    with Lab() as lab:
        srv, clients = build(lab, Lab.NAT_SYMMETRIC)
        inet = [h for h in lab.hosts if h.name == "inet"][0]
        peer = lab.host("peer")
        lab.link(srv, SRV_ETH1 + "/30", peer, PEER2 + "/30")
        peer.route("default", SRV_ETH1)
        cli, lan, _ = clients[0]
        far_end_xdp_pass(lab, inet, "eth0")
        far_end_xdp_pass(lab, peer, "eth0")
        u = start_uturnd(srv, "on", ["listening-ip = " + SRV_ETH1, "relay-ip = " + SRV,
                                     "allowed-peer-ip = " + PEER2])
        log = u.log()
        for dev in ("eth0", "eth1"):
            check("XDP program uturn_xdp attached in native mode on %s (driver veth)" % dev in log,
                  "no XDP attach line for %s in uturnd's log:\n%s" % (dev, log[-3000:]))
        pid = u.proc.pid
        # srv learns the peer's MAC first: a route whose neighbour is unresolved is TC's
        # (bpf_redirect_neigh), and the route cache keeps that answer for 250 ms.
        with srv.netns():
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.sendto(b"arp", (PEER2, 9))
            s.close()
        wait_for(lambda: "lladdr" in srv.ip(["neigh", "show", PEER2]).stdout, 10,
                 "srv resolves the peer's MAC")
        tc, relayed, p1 = session(cli, lan, peer, PEER2)
        try:
            checksum_offload(cli, "eth0", False)
            checksum_offload(peer, "eth0", False)
            before = kp_global(srv, pid)
            v0 = {dev: veth_xdp_stats(srv, dev) for dev in ("eth0", "eth1")}
            relay_both_ways(tc, relayed, p1, b"redirect")
            d = diff(kp_global(srv, pid), before)
            red = {dev: veth_xdp_stats(srv, dev)["xdp_redirect"] - v0[dev]["xdp_redirect"]
                   for dev in ("eth0", "eth1")}
            print("between veths: xdp_relayed %d, channeldata in %d out %d, XDP redirects from "
                  "eth0 %d, from eth1 %d" % (d["xdp_relayed"], d["channeldata_in"],
                                             d["channeldata_out"], red["eth0"], red["eth1"]),
                  flush=True)
            check(d["xdp_relayed"] >= SHARE * 2 * N, "XDP relayed %d of %d (kp_global growth %s)"
                  % (d["xdp_relayed"], 2 * N, d))
            check(red["eth0"] >= SHARE * N and red["eth1"] >= SHARE * N,
                  "XDP redirects eth0 -> eth1 %d, eth1 -> eth0 %d, want %d each"
                  % (red["eth0"], red["eth1"], N))
            check(d["redirect_fail"] == 0, "redirect failures: %s" % d)
        finally:
            for s in (tc, p1):
                s.close()
        u.stop_clean()
        check(not xdp_anywhere(srv), "XDP programs on srv after uturnd stopped: %s"
              % xdp_anywhere(srv))
        # off: TC only, and the XDP program is not even loaded.
        u3 = start_uturnd(srv, "off", ["listening-ip = " + SRV_ETH1, "relay-ip = " + SRV,
                                      "allowed-peer-ip = " + PEER2])
        check(not xdp_anywhere(srv), "XDP attached with kernel-offload-xdp = off: %s"
              % xdp_anywhere(srv))
        with srv.netns():
            ours = set(kpath_util.maps_of(u3.proc.pid, "eth0").values())
        progs = subprocess.run(["bpftool", "-j", "prog", "show"], capture_output=True, text=True,
                               timeout=30)
        xdp_progs = [p for p in json.loads(progs.stdout or "[]") if p.get("name") == "uturn_xdp"
                     and ours & set(p.get("map_ids") or [])]
        check(not xdp_progs, "uturn_xdp loaded with kernel-offload-xdp = off: %s" % xdp_progs)
        u3.stop_clean()
    print("XDP between veths: %.1fs" % (time.monotonic() - t0), flush=True)

# The IPv6 lab: srv and a router on one veth, the client and the peer each on a veth of the router.
SRV6, RT_SRV6 = "2001:db8:10::10", "2001:db8:10::1"
CLI6, RT_CLI6 = "2001:db8:11::2", "2001:db8:11::1"
PEER6, RT_PEER6 = "2001:db8:12::2", "2001:db8:12::1"
UDP_NO_CHECK6_TX = 101  # linux/udp.h: send IPv6 UDP with a zero checksum
ZERO = 10  # zero-checksum datagrams each way


def zero_checksums(tc, p1, relayed, srv, pid):
    """ZERO ChannelData each way with a UDP checksum of 0 (invalid over IPv6, RFC 8200 8.1): XDP
    must leave each one (xdp_passed_csum), none is relayed by XDP or TC, and none arrives; then
    one with a checksum arrives each way (the path itself still works)."""
    before = kp_global(srv, pid)
    for s in (tc.sock, p1):
        s.setsockopt(socket.SOL_UDP, UDP_NO_CHECK6_TX, 1)
    try:
        for n in range(ZERO):
            tc.channel_data(CHANNEL, payload(b"zero>", n))
            p1.sendto(payload(b"zero<", n), relayed)
        # Every one has reached srv (or been lost) when the checksummed ones below come back;
        # anything of the zero ones that arrives is read first.
        got_peer, _ = recv_from(p1, 1)
        got_cli = client_recv(tc.sock, 0.2)
    finally:
        for s in (tc.sock, p1):
            s.setsockopt(socket.SOL_UDP, UDP_NO_CHECK6_TX, 0)
    check(got_peer is None and got_cli is None,
          "a datagram with a zero IPv6 UDP checksum was relayed: to the peer %r, to the client %r"
          % (got_peer and got_peer[:16], got_cli))
    tc.channel_data(CHANNEL, b"checksummed>")
    got, src = recv_from(p1, 2)
    check(got == b"checksummed>" and addr(src) == relayed, "after the zero checksums, the peer got "
          "%r from %s" % (got, src))
    p1.sendto(b"checksummed<", relayed)
    got = client_recv(tc.sock)
    check(got is not None and (addr(got[0]),) + got[1:] == ((SRV6, PORT), "channel", CHANNEL,
                                                          b"checksummed<"),
          "after the zero checksums, the client got %r" % (got,))
    d = diff(kp_global(srv, pid), before)
    print("zero checksums: xdp_passed_csum %d, xdp_relayed %d, channeldata in %d out %d (%d zero "
          "each way, then 1 checksummed)" % (d["xdp_passed_csum"], d["xdp_relayed"],
                                             d["channeldata_in"], d["channeldata_out"], ZERO),
          flush=True)
    check(d["xdp_passed_csum"] >= 2 * ZERO, "XDP left only %d of the %d zero-checksum datagrams "
          "to TC: %s" % (d["xdp_passed_csum"], 2 * ZERO, d))
    check(d["xdp_relayed"] <= 2 and d["channeldata_in"] <= 1 and d["channeldata_out"] <= 1,
          "zero-checksum datagrams relayed by the kernel: %s" % d)


def test_xdp_relays_ipv6():
    """The proof of test_xdp_relays_channeldata_through_nat over IPv6, routed (no NAT):

        srv 2001:db8:10::10 (uturnd, relay on IPv6; XDP and TC on eth0)
         |
        rt 2001:db8:10::1 (an XDP_PASS program on its end of srv's veth; forwarding)
         |  2001:db8:11::1          |  2001:db8:12::1
        cli 2001:db8:11::2         peer 2001:db8:12::2

    An IPv6 allocation (REQUESTED-ADDRESS-FAMILY), a permission and a channel to the peer; with
    full checksums from the senders, N ChannelData and N Send / Data indications each way arrive
    byte for byte from the right source, XDP relays at least 90% (XDP_TX back out of srv's eth0),
    no redirect fails. Then datagrams with a zero UDP checksum each way: XDP relays none."""
    t0 = time.monotonic()
    with Lab() as lab:
        srv, rt = lab.host("srv", ipv6=True), lab.host("rt", ipv6=True)
        cli, peer = lab.host("cli", ipv6=True), lab.host("peer", ipv6=True)
        lab.link(rt, RT_SRV6 + "/64", srv, SRV6 + "/64")
        lab.link(rt, RT_CLI6 + "/64", cli, CLI6 + "/64")
        lab.link(rt, RT_PEER6 + "/64", peer, PEER6 + "/64")
        for host, gw in ((srv, RT_SRV6), (cli, RT_CLI6), (peer, RT_PEER6)):
            host.route("default", gw)
        rt.sysctl("net.ipv6.conf.all.forwarding", 1)
        far_end_xdp_pass(lab, rt, "eth0")
        # As on a real wire: every datagram carries its full checksum.
        checksum_offload(cli, "eth0", False)
        checksum_offload(peer, "eth0", False)
        conf = ["listening-ip = " + SRV6, "listening-port = %d" % PORT, "relay-ip = " + SRV6,
                "user = %s:%s" % (USER, PASS), "realm = uturn.test",
                "min-port = %d" % scen.MIN_PORT, "max-port = %d" % scen.MAX_PORT,
                "relay-threads = 2", "allowed-peer-ip = " + PEER6, "kernel-offload = on",
                "kernel-offload-xdp = on"]
        u = xdp_uturnd_or_skip(lambda: srv.uturnd(conf))
        if u is None:
            return
        check(xdp_of(srv, "eth0") is not None, "no XDP program on srv's eth0")
        got = srv.run(["sysctl", "-n", "net.ipv6.conf.eth0.forwarding"]).stdout.strip()
        check(got == "0", "srv: net.ipv6.conf.eth0.forwarding is %s, want 0" % got)
        pid = u.proc.pid
        with cli.netns():
            tc = TurnClient(types.SimpleNamespace(host=SRV6, port=PORT), USER, PASS, local=CLI6)
        p1, p2 = peer.udp_socket(PEER6), peer.udp_socket(PEER6)
        try:
            code, _, raw = tc.allocate(extra=attr(A_REQ_FAMILY, bytes([2, 0, 0, 0])),
                                       raw_response=True)
            check(code == 0, "IPv6 Allocate: error %s" % code)
            relayed = relayed_addresses(raw)
            check(len(relayed) == 1 and relayed[0][0] == SRV6, "relayed addresses %r" % relayed)
            relayed = relayed[0]
            a1, a2 = addr(p1.getsockname()), addr(p2.getsockname())
            check(tc.create_permission(a1, a2)[0] == 0, "CreatePermission for %s, %s" % (a1, a2))
            check(tc.channel_bind(CHANNEL, *a1)[0] == 0, "ChannelBind %#x" % CHANNEL)
            before, v0 = kp_global(srv, pid), veth_xdp_stats(srv, "eth0")
            relay_both_ways(tc, relayed, p1, b"six", (SRV6, PORT))
            indications_both_ways(tc, relayed, p2, b"six", (SRV6, PORT))
            d = diff(kp_global(srv, pid), before)
            tx = veth_xdp_stats(srv, "eth0")["xdp_tx"] - v0["xdp_tx"]
            print("IPv6: xdp_relayed %d, channeldata in %d out %d, send %d, data %d, XDP_TX %d, "
                  "xdp_passed_csum %d, redirect_fail %d, pass_route %d"
                  % (d["xdp_relayed"], d["channeldata_in"], d["channeldata_out"], d["send_in"],
                     d["data_out"], tx, d["xdp_passed_csum"], d["redirect_fail"],
                     d["pass_route"]), flush=True)
            check(d["xdp_relayed"] >= SHARE * 4 * N and d["channeldata_in"] >= SHARE * N and
                  d["channeldata_out"] >= SHARE * N,
                  "XDP relayed %d of %d IPv6 datagrams (kp_global growth %s)"
                  % (d["xdp_relayed"], 4 * N, d))
            check(d["send_in"] >= SHARE * N and d["data_out"] >= SHARE * N,
                  "the kernel relayed %d Send and %d Data indications of %d each: %s"
                  % (d["send_in"], d["data_out"], N, d))
            check(tx >= SHARE * 4 * N, "srv eth0 sent %d frames by XDP_TX, want %d" % (tx, 4 * N))
            check(d["redirect_fail"] == 0, "redirect failures: %s" % d)
            zero_checksums(tc, p1, relayed, srv, pid)
        finally:
            for s in (tc, p1, p2):
                s.close()
        u.stop_clean()
        check(not xdp_anywhere(srv), "XDP programs on srv after uturnd stopped: %s"
              % xdp_anywhere(srv))
    print("XDP over IPv6: %.1fs" % (time.monotonic() - t0), flush=True)


if __name__ == "__main__":
    tests_to_run()
    why = kpath_util.kernel_skip_reason() if os.geteuid() == 0 else None
    if why:
        print("SKIP test_kernel_xdp_lab.py: %s" % why, flush=True)
        sys.exit(77)
    run()
