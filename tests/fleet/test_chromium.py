"""Chromium follows 300 Try Alternate to the least-loaded fleet node (issue 13's Proof,
tests/fleet/lab.py).

Node a runs with total-quota = 1 and a harness client holds its one allocation; node c holds three
allocations and b none, so the registry's least-loaded node (most headroom: total-quota less
allocations, server/fleet/fleet_local.c) is b. First the harness TurnClient shows a's answer: 300
with ALTERNATE-SERVER = b's address. Then headless Chromium (Debian's /usr/bin/chromium, in the
clients' namespace, driven over the DevTools protocol with tests/integration/test_ui.py's client)
runs two RTCPeerConnections in one page with iceTransportPolicy "relay" and iceServers = node a
only, and a data channel between them. Asserted: the data channel opens and carries a message
both ways; the selected pair's local candidates of both connections are relay candidates with
b's address (libwebrtc allocated on b, which only a's 300 could have told it: a is the only server
it was given); b lists the page's allocations and a lists none of the page's user. Chromium's own
log (libwebrtc's turn_port.cc, --enable-logging --vmodule) must say it redirected; those lines
are printed.
"""
import json
import os
import signal
import socket
import struct
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from lab import need, run_fleet  # noqa: E402
from test_ui import Cdp  # noqa: E402
from uturn import check, get_attr, wait_for  # noqa: E402

F = None
CHROMIUM = "/usr/bin/chromium"
CDP_PORT = 9222
A_ALTERNATE_SERVER = 0x8023

PAGE = """
(async () => {
  const cfg = {iceTransportPolicy: "relay",
               iceServers: [{urls: "turn:%(a)s:%(port)d?transport=udp",
                             username: "chrome", credential: "chrome-pass"}]};
  const p1 = new RTCPeerConnection(cfg), p2 = new RTCPeerConnection(cfg);
  const r = window.fleet = {p1, p2, cands: [], got1: null, got2: null};
  p1.onicecandidate = e => { if (e.candidate) { r.cands.push("p1 " + e.candidate.candidate);
                                                p2.addIceCandidate(e.candidate); } };
  p2.onicecandidate = e => { if (e.candidate) { r.cands.push("p2 " + e.candidate.candidate);
                                                p1.addIceCandidate(e.candidate); } };
  const dc = p1.createDataChannel("fleet");
  dc.onmessage = m => { r.got1 = m.data; };
  p2.ondatachannel = e => { e.channel.onmessage = m => { r.got2 = m.data;
                                                          e.channel.send("pong from p2"); }; };
  dc.onopen = () => dc.send("ping from p1");
  await p1.setLocalDescription();
  await p2.setRemoteDescription(p1.localDescription);
  await p2.setLocalDescription();
  await p1.setRemoteDescription(p2.localDescription);
  return true;
})()
"""

SELECTED = """
(async () => {
  const out = [];
  for (const pc of [window.fleet.p1, window.fleet.p2]) {
    const stats = await pc.getStats();
    let sel = null;
    stats.forEach(s => { if (s.type === "transport" && s.selectedCandidatePairId)
                           sel = stats.get(s.selectedCandidatePairId); });
    if (!sel) { out.push(null); continue; }
    const l = stats.get(sel.localCandidateId), rm = stats.get(sel.remoteCandidateId);
    out.push({local: [l.candidateType, l.address, l.port, l.url || ""],
              remote: [rm.candidateType, rm.address, rm.port]});
  }
  return out;
})()
"""


class Browser:
    """Chromium in the clients' namespace; killed (its whole process group) on close."""

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="utfleet-chromium-")
        F.lab.dirs.append(self.dir)
        self.log_path = os.path.join(self.dir, "stderr.log")
        self.stderr = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            ["ip", "netns", "exec", F.cli.ns, CHROMIUM, "--headless", "--no-sandbox",
             "--disable-gpu", "--no-first-run", "--disable-background-networking",
             "--disable-component-update", "--disable-sync", "--disable-extensions",
             "--disable-dev-shm-usage", "--user-data-dir=" + os.path.join(self.dir, "profile"),
             "--enable-logging=stderr", "--vmodule=*turn_port*=2,*port_allocator*=1",
             "--remote-debugging-address=127.0.0.1", "--remote-debugging-port=%d" % CDP_PORT,
             "about:blank"],
            stdout=subprocess.DEVNULL, stderr=self.stderr, start_new_session=True)

    def page(self):
        import http.client

        def target():
            try:
                with F.client_ns():
                    c = http.client.HTTPConnection("127.0.0.1", CDP_PORT, timeout=2)
                    c.request("GET", "/json/list")
                    pages = [t for t in json.loads(c.getresponse().read()) if t["type"] == "page"]
                    c.close()
                return pages[0]["webSocketDebuggerUrl"] if pages else None
            except OSError:
                check(self.proc.poll() is None, "chromium exited:\n" + self.log()[-3000:])
                return None
        url = wait_for(target, 30, "chromium's DevTools endpoint", interval=0.2)
        with F.client_ns():
            return Cdp(url)

    def log(self):
        with open(self.log_path, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def close(self):
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        self.stderr.close()


def test_chromium_follows_300():
    a, b, c = F.nodes["a"], F.nodes["b"], F.nodes["c"]
    for u in ("filler", "chrome"):
        F.add_user(u, u + "-pass")
    held = []
    browser = None
    try:
        held.append(F.client(a, "filler", "filler-pass"))
        check(held[-1].allocate()[0] == 0, "the filler's allocation on a")
        for _ in range(3):
            held.append(F.client(c, "filler", "filler-pass"))
            check(held[-1].allocate()[0] == 0, "a filler allocation on c")
        want = {"a": 1, "b": 0, "c": 3}
        wait_for(lambda: {n["id"]: n["allocations"] for n in a.cluster()["nodes"]} == want, 5,
                 "a's view shows %r" % want, interval=0.1)

        # Our own client first: a is full and names b.
        t = F.client(a, "chrome", "chrome-pass")
        try:
            code, attrs = t.allocate()
            v = get_attr(attrs, A_ALTERNATE_SERVER)
            check(code == 300 and v is not None and len(v) == 8,
                  "Allocate on full a: %s (ALTERNATE-SERVER %r), want 300" % (code, v))
            alt = (socket.inet_ntop(socket.AF_INET, v[4:]), struct.unpack("!H", v[2:4])[0])
            check(alt == (b.host, b.port), "a's 300 names %r, want b %s:%d" % (alt, b.host, b.port))
            print("harness client: full node a answers 300 naming %s:%d (node b)" % alt, flush=True)
        finally:
            t.close()

        browser = Browser()
        page = browser.page()
        try:
            for d in ("Runtime", "Log"):
                page.call(d + ".enable")
            page.js(PAGE % {"a": a.host, "port": a.port})
            try:
                page.wait_js("window.fleet.got2 === 'ping from p1' && "
                             "window.fleet.got1 === 'pong from p2'", 30,
                             "the data channel between the two relay-only connections")
            finally:
                print("chromium candidates: %s" % page.js("window.fleet.cands"), flush=True)
                turn_lines = [line for line in browser.log().splitlines()
                              if "code=300" in line or "Redirecting from TURN" in line]
                print("chromium's log (libwebrtc turn_port.cc) about the 300:\n%s"
                      % "\n".join(turn_lines[:12]), flush=True)
            # libwebrtc says it redirected (it masks the last octet of addresses in its log).
            check(any("Redirecting from TURN server" in line for line in turn_lines),
                  "chromium's log has no 'Redirecting from TURN server' line")
            sel = page.js(SELECTED)
            print("selected pairs: %r" % sel, flush=True)
            for i, s in enumerate(sel):
                check(s is not None, "p%d has no selected pair" % (i + 1))
                check(s["local"][0] == "relay" and s["local"][1] == b.host,
                      "p%d's selected local candidate %r is not a relay on b (%s)"
                      % (i + 1, s["local"], b.host))
            check(len(b.allocations_of("chrome")) >= 2 and not a.allocations_of("chrome"),
                  "chrome's allocations: on b %d, on a %d" % (len(b.allocations_of("chrome")),
                                                              len(a.allocations_of("chrome"))))
            print("Chromium followed a's 300: both connections relay on b (%d allocations there)"
                  % len(b.allocations_of("chrome")), flush=True)
            page.js("window.fleet.p1.close(), window.fleet.p2.close(), true")
        finally:
            page.close()
    finally:
        if browser is not None:
            browser.close()
        for h in held:
            h.close()


def main():
    need(CHROMIUM)

    def bind(f):
        global F
        F = f
    run_fleet(bind, node_conf={"a": ["total-quota = 1"]})


if __name__ == "__main__":
    main()
