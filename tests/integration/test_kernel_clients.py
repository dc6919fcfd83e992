#!/usr/bin/python3
"""Issue 14's real clients with kernel-offload = on: third-party TURN clients relay through the real
uturnd on loopback (the TC program on lo), and the kernel counters of THAT uturnd (kp_global, found
by its pid: tests/integration/kpath_util.py) show the traffic went through the kernel path.

- coturn's turnutils_uclient (UDP, -e peer: ChannelData, then Send indications with -s) to
  turnutils_peer, an echo peer: every message comes back, and the kernel relayed at least 90% of
  the datagrams each way (client -> peer and peer -> client);
- two aioice agents (the ICE stack under aiortc), relay-only through uturnd over TURN/UDP,
  connectivity checks and 60 datagrams relay to relay: all arrive byte for byte, and the kernel
  relayed at least 90% of them each way;
- headless Chromium (/usr/bin/chromium, driven over the DevTools protocol with test_ui.py's
  client): two RTCPeerConnections with iceTransportPolicy "relay" and uturnd as their only ICE
  server, a data channel carrying 100 messages of 1000 bytes each way: all arrive, and the kernel
  relayed at least 90% of those bytes each way.

Needs root and a uturnd built with the kernel path (otherwise the file skips, exit 77, with the
reason); each client's test prints SKIP with the reason when its tool is not installed
(scripts/deps.sh test installs coturn, python3-aioice and chromium).
"""
import asyncio
import os
import shutil
import signal
import sys

sys.path.insert(0, os.path.dirname(__file__))
from uturn import Uturnd, check, run, start_peer, tests_to_run, uclient  # noqa: E402
import kpath_util  # noqa: E402
from kpath_util import diff, from_peer, kp_global, to_peer  # noqa: E402

USER, PASS = "kclient", "kclient-pass-42"
SHARE = 0.9  # of the traffic, at least, the kernel must have relayed


def server():
    conf = ["user = %s:%s" % (USER, PASS), "realm = uturn.test", "allow-loopback-peers",
            "kernel-offload = on"]
    u = Uturnd(conf=conf, threads=2)
    check(kpath_util.prog_id(u.proc.pid) is not None, "no %s filter with handle %#x on lo:\n%s"
          % (kpath_util.PROG, u.proc.pid, u.log()[-2000:]))
    return u


RELAY_TO_RELAY = (" (relay to relay on one uturnd: the datagram the kernel rewrote client -> peer "
                  "must itself be matched as peer -> client: kpath.bpf.c's tail call into itself)")


def check_kernel(what, d, packets_each_way, bytes_each_way=0, hint=""):
    """d: kp_global's growth. The kernel relayed at least SHARE of `packets_each_way` datagrams
    (and `bytes_each_way` payload bytes) client -> peer and peer -> client."""
    print("%s: kernel relayed %d datagrams client -> peer (%d B), %d peer -> client (%d B); "
          "passed up: %d expired, %d unhandled; the clients relayed %d each way"
          % (what, to_peer(d), d["to_peer_bytes"], from_peer(d), d["from_peer_bytes"],
             d["pass_expired"], d["pass_unhandled"], packets_each_way), flush=True)
    check(to_peer(d) >= SHARE * packets_each_way and from_peer(d) >= SHARE * packets_each_way,
          "%s: the kernel relayed %d client -> peer and %d peer -> client datagrams, less than "
          "%d%% of the %d each way: %s%s" % (what, to_peer(d), from_peer(d), SHARE * 100,
                                             packets_each_way, d,
                                             hint if to_peer(d) >= SHARE * packets_each_way
                                             else ""))
    if bytes_each_way:
        check(d["to_peer_bytes"] >= SHARE * bytes_each_way and
              d["from_peer_bytes"] >= SHARE * bytes_each_way,
              "%s: the kernel relayed %d bytes client -> peer and %d peer -> client, less than "
              "%d%% of %d each way" % (what, d["to_peer_bytes"], d["from_peer_bytes"],
                                       SHARE * 100, bytes_each_way))


# ---- turnutils_uclient ----

def test_uclient_channel_and_send():
    if not (shutil.which("turnutils_uclient") and shutil.which("turnutils_peer")):
        print("SKIP test_uclient_channel_and_send: turnutils_uclient/turnutils_peer not installed "
              "(apt-get install coturn; scripts/deps.sh test)")
        return
    peer, pport = start_peer()
    failed = []
    try:
        with server() as u:
            for label, flags in (("uclient ChannelData", []), ("uclient Send/Data", ["-s"])):
                before = kp_global(u.proc.pid)
                sent, recv, lost, text = uclient(u, ["-u", USER, "-w", PASS, "-e", "127.0.0.1",
                                                     "-r", str(pport), "-n", "50", "-m", "2",
                                                     "-l", "400"] + flags)
                check(sent > 0 and recv == sent and lost == 0,
                      "%s: sent %d received %d lost %d\n%s" % (label, sent, recv, lost,
                                                               text[-3000:]))
                d = diff(kp_global(u.proc.pid), before)
                try:  # both modes run, whichever fails
                    if flags:
                        # uclient's Send indications carry FINGERPRINT, which the program leaves
                        # to user space (docs/KERNEL.md: it does not compute CRC-32): each must be
                        # counted there, and the Data indications back are the kernel's.
                        print("%s: kernel relayed %d Data indications, passed %d Send indications "
                              "up (unhandled) of %d" % (label, d["data_out"], d["pass_unhandled"],
                                                        sent), flush=True)
                        check(d["pass_unhandled"] >= sent and d["send_in"] == 0,
                              "%s: %d Send indications with FINGERPRINT passed up, %d relayed in "
                              "the kernel; want all %d passed up" % (label, d["pass_unhandled"],
                                                                    d["send_in"], sent))
                        check(from_peer(d) >= SHARE * sent,
                              "%s: the kernel relayed %d peer -> client datagrams of %d: %s"
                              % (label, from_peer(d), sent, d))
                    else:
                        check_kernel(label, d, sent)
                except AssertionError as e:
                    failed.append(str(e))
    finally:
        peer.send_signal(signal.SIGTERM)
        peer.wait(10)
    check(not failed, "\n".join(failed))


# ---- aioice ----

async def _ice(u, aioice):
    def agent(controlling):
        return aioice.Connection(ice_controlling=controlling, components=1,
                                 turn_server=(u.host, u.port), turn_username=USER,
                                 turn_password=PASS, turn_transport="udp", use_ipv4=True,
                                 use_ipv6=False, transport_policy=aioice.TransportPolicy.RELAY)
    a, b = agent(True), agent(False)
    sent = 0
    try:
        await asyncio.wait_for(asyncio.gather(a.gather_candidates(), b.gather_candidates()), 20)
        for local, remote in ((a, b), (b, a)):
            check(local.local_candidates and all(c.type == "relay" for c in local.local_candidates),
                  "non-relay candidates: %r" % local.local_candidates)
            local.remote_username = remote.local_username
            local.remote_password = remote.local_password
            for c in remote.local_candidates:
                await local.add_remote_candidate(c)
            await local.add_remote_candidate(None)
        await asyncio.wait_for(asyncio.gather(a.connect(), b.connect()), 20)
        for n in range(30):
            ab = b"a->b %d " % n + bytes(range(256)) * (n % 5 + 1)
            ba = b"b->a %d " % n + bytes(range(255, -1, -1)) * (n % 3 + 1)
            await a.send(ab)
            got = await asyncio.wait_for(b.recv(), 10)
            check(got == ab, "agent b got %d bytes, a sent %d" % (len(got), len(ab)))
            await b.send(ba)
            got = await asyncio.wait_for(a.recv(), 10)
            check(got == ba, "agent a got %d bytes, b sent %d" % (len(got), len(ba)))
            sent += 1
    finally:
        await asyncio.wait_for(asyncio.gather(a.close(), b.close()), 20)
    return sent


def test_aioice_relay_only():
    try:
        import aioice
        import aioice.ice
    except ImportError as e:
        print("SKIP test_aioice_relay_only: aioice not importable (%s; apt-get install "
              "python3-aioice)" % e)
        return
    # Loopback only: no host addresses, so the relays are the agents' only path
    # (test_turn_aioice.py says why).
    aioice.ice.get_host_addresses = lambda use_ipv4, use_ipv6: []
    with server() as u:
        before = kp_global(u.proc.pid)
        rounds = asyncio.run(asyncio.wait_for(_ice(u, aioice), 90))
        # Each round is one datagram a -> b and one b -> a; each crosses uturnd once client ->
        # peer (into the sender's relay) and once peer -> client (out of the receiver's).
        check_kernel("aioice", diff(kp_global(u.proc.pid), before), 2 * rounds,
                     hint=RELAY_TO_RELAY)


# ---- headless Chromium ----

N_MSG, MSG_BYTES = 100, 1000

PAGE = """
(async () => {
  const cfg = {iceTransportPolicy: "relay",
               iceServers: [{urls: "turn:127.0.0.1:%(port)d?transport=udp",
                             username: "%(user)s", credential: "%(pw)s"}]};
  const p1 = new RTCPeerConnection(cfg), p2 = new RTCPeerConnection(cfg);
  const r = window.kt = {p1, p2, cands: [], got1: 0, got2: 0, bad: 0, open: false};
  p1.onicecandidate = e => { if (e.candidate) { r.cands.push("p1 " + e.candidate.candidate);
                                                p2.addIceCandidate(e.candidate); } };
  p2.onicecandidate = e => { if (e.candidate) { r.cands.push("p2 " + e.candidate.candidate);
                                                p1.addIceCandidate(e.candidate); } };
  const msg = "x".repeat(%(size)d);
  const dc1 = p1.createDataChannel("kt", {ordered: true});
  dc1.onmessage = m => { if (m.data === msg) r.got1++; else r.bad++; };
  p2.ondatachannel = e => { const dc2 = e.channel; r.dc2 = dc2;
    dc2.onmessage = m => { if (m.data === msg) r.got2++; else r.bad++; }; };
  dc1.onopen = () => { r.open = true; r.dc1 = dc1; };
  await p1.setLocalDescription();
  await p2.setRemoteDescription(p1.localDescription);
  await p2.setLocalDescription();
  await p1.setRemoteDescription(p2.localDescription);
  return true;
})()
"""

SEND = """
(() => { const r = window.kt, msg = "x".repeat(%(size)d);
  for (let i = 0; i < %(n)d; i++) { r.dc1.send(msg); r.dc2.send(msg); } return true; })()
"""


def test_chromium_data_channel_relay_only():
    try:
        from test_ui import Cdp, Chromium, chromium_path
    except ImportError as e:
        print("SKIP test_chromium_data_channel_relay_only: test_ui.py's CDP client: %s" % e)
        return
    path = chromium_path()
    if not path:
        print("SKIP test_chromium_data_channel_relay_only: chromium is not installed "
              "(apt-get install chromium; scripts/deps.sh test)")
        return
    with server() as u:
        browser = Chromium(path)
        page = None
        try:
            page = Cdp(browser.page_ws())
            page.call("Runtime.enable")
            page.js(PAGE % {"port": u.port, "user": USER, "pw": PASS, "size": MSG_BYTES})
            try:
                page.wait_js("window.kt.open && !!window.kt.dc2 && window.kt.dc2.readyState === "
                             "'open'", 30, "the data channel between two relay-only connections")
            finally:
                print("chromium candidates: %s" % page.js("window.kt.cands"), flush=True)
            before = kp_global(u.proc.pid)
            page.js(SEND % {"size": MSG_BYTES, "n": N_MSG})
            page.wait_js("window.kt.got1 >= %d && window.kt.got2 >= %d" % (N_MSG, N_MSG), 30,
                         "%d messages each way" % N_MSG)
            check(page.js("window.kt.bad") == 0, "a message arrived changed")
            after = kp_global(u.proc.pid)
            # Each message crosses uturnd twice (into one relay, out of the other): 2 N datagrams
            # each way at least (SCTP over DTLS adds its headers and SACKs).
            check_kernel("chromium", diff(after, before), 2 * N_MSG, 2 * N_MSG * MSG_BYTES,
                         hint=RELAY_TO_RELAY)
            page.js("window.kt.p1.close(), window.kt.p2.close(), true")
        finally:
            if page is not None:
                page.close()
            browser.close()


if __name__ == "__main__":
    tests_to_run()  # --list and bad names before anything starts
    why = kpath_util.kernel_skip_reason()
    if why:
        print("SKIP test_kernel_clients.py: %s" % why, flush=True)
        sys.exit(77)
    run()
