"""The dashboard (/ui/) in headless Chromium against a real uturnd with real traffic, and the
history behind its charts (/api/v1/history).

Chromium is driven over the Chrome DevTools Protocol with a WebSocket client of our own (RFC 6455,
below). What is checked: /ui/ is served without a token under the strict Content-Security-Policy,
and loads nothing from outside this origin (every network request, every performance entry) and
breaks none of its own policy (no CSP report in the console); after the token is typed in, the
page's allocation count, allocation rows, user list, REST secrets and errors by code match the API;
filter and sort work; a user added on the page relays and deleted there loses its allocation
(437); a REST secret generated on the page is the one stored, and is removed there; a Kill clicked
on the page and confirmed in its dialog ends the allocation
(the API no longer lists it, the client's Refresh gets 437); minting shows an iceServers snippet
that verifies against the REST secret; reload and drain only act after confirmation; a read-only
token's view has no write control in the DOM. /api/v1/history: JSON shape, bounds of `seconds` and
`since`, 1 s spacing, the ring wrapping at admin-history samples, and rates that add up to the
relayed byte counter. Screenshots go to BUILDDIR/ui-artifacts/.

Skips (exit 77, automake's skip) with the reason printed when Chromium is not installed.
"""
import base64
import hashlib
import hmac
import http.client
import json
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse

from test_turn_redis import Redis
from uturn import (BUILDDIR, TurnClient, Uturnd, check, free_port, run, start_peer, tests_to_run,
                   wait_for)

REALM = "ui.test"
TOKEN = "dashboard-full-0123456789abcdef"
RO_TOKEN = "dashboard-ro-0123456789abcdef"
SECRET = "ui-static-rest-secret-0123456789"
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
       "img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'; form-action 'none'")
ARTIFACTS = os.path.join(BUILDDIR, "ui-artifacts")
HISTORY_CAP = 10  # the second uturnd's admin-history: small enough to wrap during the test

U = None
ADMIN = None
HIST = None  # (uturnd, (host, port)) with admin-history = HISTORY_CAP
CLIENTS = {}  # user -> TurnClient
B = None  # the browser page (Cdp)
PEER_PORT = None
EARLY = None  # the history of the small ring when the first test read it


def chromium_path():
    for name in ("chromium", "chromium-browser"):
        p = shutil.which(name)
        if p:
            return p
    return None


# ---- admin API ----

def api(method, path, body=None, token=TOKEN, server=None):
    host, port = server or ADMIN
    conn = http.client.HTTPConnection(host, port, timeout=15)
    h = {}
    if token is not None:
        h["Authorization"] = "Bearer " + token
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        h["Content-Type"] = "application/json"
    conn.request(method, path, body=data, headers=h)
    resp = conn.getresponse()
    raw = resp.read()
    hdrs = {k.lower(): v for k, v in resp.getheaders()}
    conn.close()
    try:
        doc = json.loads(raw)
    except ValueError:
        doc = raw
    return resp.status, hdrs, doc


def get(path, server=None):
    st, _, doc = api("GET", path, token=RO_TOKEN, server=server)
    check(st == 200, "GET %s: %d %r" % (path, st, doc))
    return doc


def api_users():
    return sorted(get("/api/v1/realms/%s/users?limit=1000" % REALM)["users"])


# ---- a WebSocket client (RFC 6455) and the DevTools protocol over it ----

class WebSocket:
    def __init__(self, url, timeout=10):
        u = urllib.parse.urlparse(url)
        self.sock = socket.create_connection((u.hostname, u.port), timeout=timeout)
        key = base64.b64encode(os.urandom(16)).decode()
        req = ("GET %s HTTP/1.1\r\nHost: %s:%d\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
               "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n"
               % (u.path, u.hostname, u.port, key))
        self.sock.sendall(req.encode())
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = self.sock.recv(4096)
            check(chunk, "WebSocket handshake: connection closed")
            head += chunk
        head, self.buf = head.split(b"\r\n\r\n", 1)
        want = base64.b64encode(hashlib.sha1((key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11")
                                             .encode()).digest()).decode()
        check(head.startswith(b"HTTP/1.1 101") and want.encode() in head,
              "WebSocket handshake: %r" % head[:300])

    def send(self, text):
        data = text.encode()
        n = len(data)
        hdr = bytes([0x81])  # FIN, text
        if n < 126:
            hdr += bytes([0x80 | n])
        elif n < 65536:
            hdr += bytes([0x80 | 126]) + struct.pack("!H", n)
        else:
            hdr += bytes([0x80 | 127]) + struct.pack("!Q", n)
        mask = os.urandom(4)  # a client masks every frame (§5.3)
        self.sock.sendall(hdr + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(data)))

    def _read(self, n):
        while len(self.buf) < n:
            chunk = self.sock.recv(1 << 16)
            check(chunk, "WebSocket closed by the browser")
            self.buf += chunk
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def recv(self, timeout):
        """The next whole text message, or None on timeout."""
        self.sock.settimeout(timeout)
        msg = b""
        try:
            while True:
                b0, b1 = self._read(2)
                n = b1 & 0x7F
                if n == 126:
                    n = struct.unpack("!H", self._read(2))[0]
                elif n == 127:
                    n = struct.unpack("!Q", self._read(8))[0]
                mask = self._read(4) if b1 & 0x80 else None
                data = self._read(n)
                if mask:
                    data = bytes(b ^ mask[i % 4] for i, b in enumerate(data))
                op = b0 & 0x0F
                if op == 0x9:  # ping: answer with pong
                    self.sock.sendall(bytes([0x8A, 0x80 | len(data)]) + b"\0\0\0\0" + data)
                    continue
                if op == 0x8:
                    raise ConnectionError("WebSocket closed by the browser")
                msg += data
                if b0 & 0x80:
                    return msg.decode()
        except socket.timeout:
            return None

    def close(self):
        self.sock.close()


class Cdp:
    """One page target: call(method, **params) waits for its answer; events are kept in order."""

    def __init__(self, ws_url):
        self.ws = WebSocket(ws_url)
        self.next_id = 0
        self.events = []

    def call(self, method, timeout=15, **params):
        self.next_id += 1
        mid = self.next_id
        self.ws.send(json.dumps({"id": mid, "method": method, "params": params}))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            text = self.ws.recv(max(0.01, deadline - time.monotonic()))
            if text is None:
                break
            m = json.loads(text)
            if m.get("id") == mid:
                check("error" not in m, "CDP %s: %r" % (method, m.get("error")))
                return m["result"]
            if "method" in m:
                self.events.append(m)
        raise AssertionError("CDP %s: no answer in %ds" % (method, timeout))

    def js(self, expr):
        """Evaluate in the page (promises awaited); the value, JSON-serialised by the browser."""
        r = self.call("Runtime.evaluate", expression=expr, returnByValue=True, awaitPromise=True)
        check("exceptionDetails" not in r, "JS %s threw: %r" % (expr, r.get("exceptionDetails")))
        return r["result"].get("value")

    def wait_js(self, expr, timeout, what):
        return wait_for(lambda: self.js(expr), timeout, what, interval=0.1)

    def screenshot(self, name):
        png = base64.b64decode(self.call("Page.captureScreenshot", format="png")["data"])
        os.makedirs(ARTIFACTS, exist_ok=True)
        with open(os.path.join(ARTIFACTS, name), "wb") as f:
            f.write(png)
        check(png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000, "screenshot %s: %d bytes"
              % (name, len(png)))

    def close(self):
        self.ws.close()


class Chromium:
    def __init__(self, path):
        self.dir = tempfile.mkdtemp(prefix="uturn-chromium-")
        self.port = free_port()
        self.stderr = open(os.path.join(self.dir, "stderr.log"), "wb")
        self.proc = subprocess.Popen(
            [path, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
             "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             "--disable-extensions", "--disable-default-apps", "--mute-audio",
             "--disable-dev-shm-usage",
             "--user-data-dir=" + self.dir, "--remote-debugging-address=127.0.0.1",
             "--remote-debugging-port=%d" % self.port, "--window-size=1280,1320", "about:blank"],
            stdout=subprocess.DEVNULL, stderr=self.stderr, start_new_session=True)

    def page_ws(self):
        def target():
            try:
                c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
                c.request("GET", "/json/list")
                pages = [t for t in json.loads(c.getresponse().read()) if t["type"] == "page"]
                c.close()
                return pages[0]["webSocketDebuggerUrl"] if pages else None
            except OSError:
                check(self.proc.poll() is None, "chromium exited: " + self.log())
                return None
        return wait_for(target, 30, "chromium's DevTools endpoint", interval=0.2)

    def log(self):
        with open(os.path.join(self.dir, "stderr.log"), "rb") as f:
            return f.read().decode("utf-8", "replace")[-2000:]

    def close(self):
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)  # chromium and the children it started
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.stderr.close()
        shutil.rmtree(self.dir, ignore_errors=True)


# ---- helpers on the page ----

def origin():
    return "http://%s:%d" % ADMIN


def login(token):
    """Open /ui/ with an empty sessionStorage and type the token in, as an operator would."""
    B.call("Page.navigate", url=origin() + "/ui/")
    B.wait_js("document.readyState === 'complete' && !!document.getElementById('token')", 15,
              "the page loaded")
    B.js("sessionStorage.clear()")
    B.call("Page.reload")
    B.wait_js("document.readyState === 'complete' && !document.getElementById('login').hidden", 15,
              "the token prompt")
    B.js("document.getElementById('token').value = %s; document.getElementById('token-use').click()"
         % json.dumps(token))
    B.wait_js("Number(document.body.dataset.polls || 0) >= 1", 15, "the first poll")
    check(B.js("sessionStorage.getItem('uturn-admin-token')") == token,
          "the token is not kept in sessionStorage")


USERS_COLUMN = "[...document.querySelectorAll('#allocs tbody tr')].map(r => r.cells[1].textContent)"


def page_polls():
    return int(B.js("Number(document.body.dataset.polls || 0)"))


def after_next_poll():
    n = page_polls()
    wait_for(lambda: page_polls() >= n + 2, 15, "two more polls of the page", interval=0.1)


def page_alloc_ids():
    return sorted(B.js("[...document.querySelectorAll('#allocs tbody tr')].map(r => r.dataset.id)"))


def relay_traffic(n=100):
    """ChannelData through alice's allocation to the echo peer and back."""
    c = CLIENTS["alice"]
    got = 0
    for i in range(n):
        c.channel_data(0x4000, b"x" * 400)
        r = c.receive_data(2)
        if r and r[0] == "channel":
            got += 1
    check(got >= n * 0.9, "relayed %d of %d ChannelData messages" % (got, n))
    return got


# ---- tests ----

def test_page_headers_without_token():
    st, h, body = api("GET", "/ui/", token=None)
    check(st == 200 and h.get("content-type", "").startswith("text/html")
          and b"/ui/app.js" in body, "GET /ui/: %d %r" % (st, h))
    check(h.get("content-security-policy") == CSP, "CSP: %r" % h.get("content-security-policy"))
    check(h.get("x-content-type-options") == "nosniff", "nosniff missing: %r" % h)
    check(b"<script>" not in body and b"style=" not in body, "inline script or style in the page")
    for path, ctype in (("/ui/app.js", "text/javascript"), ("/ui/app.css", "text/css"),
                        ("/ui", "text/html")):
        st, h, _ = api("GET", path, token=None)
        check(st == 200 and h.get("content-type", "").startswith(ctype)
              and h.get("content-security-policy") == CSP, "GET %s: %d %r" % (path, st, h))
    for path in ("/ui/nope.js", "/ui/app.js%00", "/ui/..%2Fadmin.c"):
        st, _, _ = api("GET", path, token=None)
        check(st == 404, "GET %s: %d, expected 404" % (path, st))
    st, _, doc = api("GET", "/api/v1/whoami", token=None)
    check(st == 401, "whoami without a token: %d" % st)
    check(api("GET", "/api/v1/whoami")[2] == {"access": "full", "write": True}, "whoami (full)")
    check(api("GET", "/api/v1/whoami", token=RO_TOKEN)[2]
          == {"access": "read-only", "write": False},
          "whoami (read-only)")


def test_history_shape_and_bounds():
    global EARLY
    srv = HIST[1]
    doc = wait_for(lambda: (lambda d: d if d["samples"] else None)(
        get("/api/v1/history", server=srv)), 5, "a first sample")
    EARLY = doc["samples"]
    check(set(doc) == {"interval_seconds", "capacity", "now", "fields", "samples"}
          and doc["interval_seconds"] == 1 and doc["capacity"] == HISTORY_CAP
          and doc["fields"] == ["t", "allocations", "tcp_connections", "relay_bits_per_second",
                                "relay_packets_per_second", "requests_per_second",
                                "errors_per_second"], "history shape: %r" % doc)
    for row in doc["samples"]:
        check(len(row) == len(doc["fields"]) and all(isinstance(v, int) and v >= 0 for v in row),
              "history row: %r" % row)
    for q, field in (("seconds=0", "seconds"), ("seconds=%d" % (HISTORY_CAP + 1), "seconds"),
                     ("since=-1", "since"), ("seconds=x", "seconds")):
        st, _, err = api("GET", "/api/v1/history?" + q, token=RO_TOKEN, server=srv)
        check(st == 400 and err["error"]["code"] == "bad_parameter"
              and "'%s'" % field in err["error"]["message"], "history?%s: %d %r" % (q, st, err))
    check(api("GET", "/api/v1/history", token=None, server=srv)[0] == 401, "history without token")


def test_page_matches_api():
    relay_traffic()
    login(TOKEN)
    B.screenshot("login-done.png")
    api_ids = sorted(a["id"] for a in get("/api/v1/allocations")["allocations"])
    check(len(api_ids) == 3, "the API lists %d allocations, expected 3" % len(api_ids))
    wait_for(lambda: page_alloc_ids() == api_ids, 15, "the page's allocation rows to be the API's")
    wait_for(lambda: B.js("document.getElementById('n-allocs').textContent")
             == str(get("/api/v1/stats")["allocations"]["current"]) == "3", 15,
             "the allocation count on the page to match /api/v1/stats")
    users = api_users()
    check(users == ["alice", "bob", "carol", "dave"], "API users: %r" % users)
    wait_for(lambda: sorted(B.js("[...document.querySelectorAll('#users li .user-name')]"
                                   ".map(l => l.textContent)"))
             == users, 15, "the page's user list to be the API's")
    check(B.js("document.getElementById('n-active-users').textContent") == "3", "active users")
    secrets = get("/api/v1/realms/%s/secrets" % REALM)["secrets"]
    page_secrets = B.js("[...document.querySelectorAll('#secrets tbody tr td:first-child')]"
                        ".map(t => t.textContent)")
    check(sorted(page_secrets) == sorted(s["id"] for s in secrets) and secrets,
          "secrets: page %r, API %r" % (page_secrets, secrets))
    # Errors by code: the 401 challenges of the clients' first Allocates.
    errs = get("/api/v1/stats")["errors_by_code"]
    check(errs["401"] >= 3, "errors_by_code: %r" % errs)
    wait_for(lambda: B.js("[...document.querySelectorAll('#errors tbody tr')].map(r => "
                          "[r.cells[0].textContent, Number(r.cells[1].textContent)])")
             == [[k, v] for k, v in get("/api/v1/stats")["errors_by_code"].items() if v], 15,
             "the page's errors by code to be the API's")
    workers = B.js("document.querySelectorAll('#workers tbody tr').length")
    check(workers == get("/api/v1/stats")["workers"] == 2, "per-worker rows: %r" % workers)
    # The charts have data: the relayed rate card shows bits and the canvas is not blank.
    wait_for(lambda: B.js("state.history.some(r => "
                          "r[state.fields.indexOf('relay_bits_per_second')] > 0)"),
             15, "a sample with relayed bits in the page's history")
    check(B.js("(() => { const c = document.getElementById('c-bps'); const d = c.getContext('2d')"
               ".getImageData(0, 0, c.width, c.height).data; let n = 0;"
               "for (let i = 3; i < d.length;"
               " i += 4) if (d[i]) n++; return n; })()") > 500, "the bit-rate chart is blank")
    # Filter and sort.
    B.js("{ const f = document.getElementById('filter'); f.value = 'carol';"
         "f.dispatchEvent(new Event('input')); }")
    rows = B.js(USERS_COLUMN)
    check(rows == ["carol"], "filter 'carol': %r" % rows)
    B.js("{ const f = document.getElementById('filter'); f.value = '';"
         "f.dispatchEvent(new Event('input')); }")
    B.js("document.querySelector('#allocs th[data-key=username]').click()")
    rows = B.js(USERS_COLUMN)
    check(rows == ["alice", "bob", "carol"], "sorted by user: %r" % rows)
    B.js("document.querySelector('#allocs th[data-key=username]').click()")
    rows = B.js(USERS_COLUMN)
    check(rows == ["carol", "bob", "alice"], "sorted by user, descending: %r" % rows)
    # Traffic while the page polls, so the screenshot shows live rates: about 200 messages a
    # second until stopped (at most 3000).
    stop, got = threading.Event(), []

    def paced():
        c = CLIENTS["alice"]
        for _ in range(3000):
            if stop.wait(0.005):
                break
            c.channel_data(0x4000, b"y" * 600)
            r = c.receive_data(2)
            got.append(bool(r and r[0] == "channel"))
    t = threading.Thread(target=paced)
    t.start()
    try:
        after_next_poll()
        wait_for(lambda: B.js("document.getElementById('n-bps').textContent").split()[1:2]
                 in (["kbit/s"], ["Mbit/s"]), 10, "a live bit rate on the page")
        B.call("Emulation.setDeviceMetricsOverride", width=1280, height=1320, deviceScaleFactor=1,
               mobile=False)
        B.screenshot("dashboard.png")
    finally:
        stop.set()
        t.join()
    check(len(got) > 100 and sum(got) >= 0.9 * len(got), "paced traffic: %d of %d echoed"
          % (sum(got), len(got)))


def test_kill_from_page():
    bob = [a for a in get("/api/v1/allocations?user=bob")["allocations"]]
    check(len(bob) == 1, "bob's allocations: %r" % bob)
    aid = bob[0]["id"]
    check(B.js("!!document.querySelector('button.kill[data-id=\"%s\"]')" % aid), "no Kill for bob")
    B.js("document.querySelector('button.kill[data-id=\"%s\"]').click()" % aid)
    check(B.js("!document.getElementById('modal').hidden"), "Kill asked for no confirmation")
    B.screenshot("confirm-kill.png")
    # Cancel first: nothing happens.
    B.js("document.getElementById('modal-cancel').click()")
    after_next_poll()
    check(aid in [a["id"] for a in get("/api/v1/allocations")["allocations"]],
          "the allocation ended although the dialog was cancelled")
    B.js("document.querySelector('button.kill[data-id=\"%s\"]').click()" % aid)
    B.js("document.getElementById('modal-ok').click()")
    wait_for(lambda: aid not in [a["id"] for a in get("/api/v1/allocations")["allocations"]], 10,
             "the killed allocation to leave the API's list")
    code, _ = CLIENTS["bob"].refresh(600)
    check(code == 437, "bob's Refresh after the kill: %s, expected 437" % code)
    wait_for(lambda: aid not in page_alloc_ids() and len(page_alloc_ids()) == 2, 10,
             "the killed allocation to leave the page")
    wait_for(lambda: B.js("document.getElementById('n-allocs').textContent")
             == str(get("/api/v1/stats")["allocations"]["current"]) == "2", 10,
             "the count on the page after the kill")


def test_users_and_secrets_from_page():
    B.js("document.getElementById('user-name').value = 'erin';"
         "document.getElementById('user-password').value = 'erin-pw';"
         "document.getElementById('user-add').click()")
    wait_for(lambda: "erin" in api_users(), 10, "the user added on the page in the API")
    c = TurnClient(U, "erin", "erin-pw")
    try:
        check(c.allocate()[0] == 0, "the user added on the page cannot allocate")
        B.wait_js("!!document.querySelector('button.user-delete[data-user=erin]')", 15,
                  "erin's Delete on the page")
        B.js("document.querySelector('button.user-delete[data-user=erin]').click()")
        check(B.js("!document.getElementById('modal').hidden"), "Delete user asked nothing")
        B.js("document.getElementById('modal-ok').click()")
        wait_for(lambda: "erin" not in api_users(), 10, "the user deleted on the page to go")
        check(c.refresh(600)[0] == 437, "the deleted user's allocation lives on")
    finally:
        c.close()
    path = "/api/v1/realms/%s/secrets" % REALM
    B.js("document.getElementById('secret-add').click()")
    new = B.wait_js("document.getElementById('secret-new').textContent", 10, "the new secret")
    ours = wait_for(lambda: [s for s in get(path)["secrets"] if s["source"] == "redis"], 10,
                    "the secret added on the page in the API")
    check(len(ours) == 1 and ours[0]["id"] == hashlib.sha256(new.encode()).hexdigest()[:8],
          "the secret shown is not the one stored: %r" % ours)
    B.wait_js("!!document.querySelector('button.secret-delete[data-id=\"%s\"]')" % ours[0]["id"],
              10, "Remove for the new secret")
    check(B.js("document.querySelectorAll('button.secret-delete').length") == 1,
          "a Remove for the config file's secret")
    B.js("document.querySelector('button.secret-delete').click()")
    B.js("document.getElementById('modal-ok').click()")
    wait_for(lambda: [s["source"] for s in get(path)["secrets"]] == ["config"], 10,
             "the secret removed on the page to go")


def test_mint_reload_drain():
    B.js("document.getElementById('mint-user').value = 'webrtc-user';"
         "document.getElementById('mint-ttl').value = '600';"
         "document.getElementById('mint').click()")
    text = B.wait_js("document.getElementById('mint-out').textContent", 10,
                     "the iceServers snippet")
    ice = json.loads(text)["iceServers"]
    turn = [s for s in ice if any(u.startswith("turn:") for u in s["urls"])]
    check(turn, "no turn: URI in %r" % ice)
    user, cred = turn[0]["username"], turn[0]["credential"]
    expiry, name = user.split(":", 1)
    want = base64.b64encode(hmac.new(SECRET.encode(), user.encode(), hashlib.sha1).digest())
    want = want.decode()
    check(name == "webrtc-user" and 0 < int(expiry) - time.time() <= 610 and cred == want,
          "minted %r / %r" % (user, cred))
    check(B.js("!document.getElementById('mint-copy').hidden"), "no Copy button")
    c = TurnClient(U, user, cred)
    try:
        check(c.allocate()[0] == 0, "the minted credentials are refused")
    finally:
        c.close()
    # Reload: confirmed, answered.
    B.js("document.getElementById('reload').click()")
    check(B.js("!document.getElementById('modal').hidden"), "Reload asked for no confirmation")
    B.js("document.getElementById('modal-ok').click()")
    B.wait_js("document.getElementById('status').textContent.startsWith('reloaded')", 10,
              "the reload's answer on the page")
    # Drain: cancelled does nothing, confirmed drains.
    B.js("document.getElementById('drain').click()")
    B.js("document.getElementById('modal-cancel').click()")
    after_next_poll()
    check(get("/api/v1/stats")["draining"] is False, "drained although cancelled")
    B.js("document.getElementById('drain').click()")
    B.js("document.getElementById('modal-ok').click()")
    wait_for(lambda: get("/api/v1/stats")["draining"] is True, 10, "the node to drain")
    B.wait_js("!document.getElementById('draining').hidden", 10, "the draining badge")


def test_read_only_view():
    login(RO_TOKEN)
    api_ids = sorted(a["id"] for a in get("/api/v1/allocations")["allocations"])
    wait_for(lambda: page_alloc_ids() == api_ids and api_ids, 15,
             "the API's allocations in the read-only view")
    check(B.js("document.getElementById('access').textContent") == "read-only", "access badge")
    n = B.js("document.querySelectorAll('button.kill, #drain, #reload, #mint, #mint-copy, "
             "#mint-user, #mint-ttl, button.user-delete, button.secret-delete, #user-add, "
             "#user-name, #user-password, #secret-add').length")
    check(n == 0, "%d write controls in the read-only view" % n)
    buttons = B.js("[...document.querySelectorAll('button')].map(b => b.id || b.textContent)")
    check(set(buttons) <= {"logout", "token-use", "modal-ok", "modal-cancel"},
          "buttons in the read-only view: %r" % buttons)
    B.screenshot("readonly.png")


def test_nothing_from_outside():
    """Every request the page made went to its own origin; the CSP was never violated."""
    urls = [e["params"]["request"]["url"] for e in B.events
            if e["method"] == "Network.requestWillBeSent"]
    check(urls and any(u.endswith("/ui/app.js") for u in urls), "no requests seen: %r" % urls[:5])
    outside = [u for u in urls if not u.startswith(origin() + "/")]
    check(not outside, "requests outside the origin: %r" % outside)
    docs = [e["params"]["response"] for e in B.events if e["method"] == "Network.responseReceived"
            and e["params"]["response"]["url"].rstrip("/").endswith("/ui")]
    check(docs and all({k.lower(): v for k, v in d["headers"].items()}
                       .get("content-security-policy") == CSP for d in docs),
          "the page's CSP as the browser saw it: %r" % [d["headers"] for d in docs][:1])
    entries = B.js("performance.getEntriesByType('resource').map(e => e.name)")
    check(entries and all(e.startswith(origin() + "/") for e in entries),
          "performance entries: %r" % entries)
    msgs = [json.dumps(e["params"]) for e in B.events
            if e["method"] in ("Log.entryAdded", "Runtime.consoleAPICalled",
                               "Runtime.exceptionThrown")]
    bad = [m for m in msgs if "Content Security Policy" in m or "exceptionDetails" in m
           or '"level": "error"' in m and "401" not in m]
    check(not bad, "console errors or CSP reports: %r" % bad[:5])


def test_history_rates_add_up():
    """The relayed bit rates times their intervals, summed over the samples, are the relay byte
    counter's growth (the traffic ran well after the sampler started, and is over now)."""
    st = get("/api/v1/stats")
    t_read = time.time() * 1000
    total = st["relay"]["bytes"]["client_to_peer"] + st["relay"]["bytes"]["peer_to_client"]
    # "relay" is user space's share; with the kernel path (auto, root) the rest is "kernel"'s, and
    # the history's rate counts both.
    kb = st.get("kernel", {}).get("bytes", {})
    total += kb.get("client_to_peer", 0) + kb.get("peer_to_client", 0)
    doc = wait_for(lambda: (lambda d: d if d["samples"][-1:] and d["samples"][-1][0] > t_read + 20
                            else None)(get("/api/v1/history")), 5,
                   "a sample after the counter read")
    col = doc["fields"].index("relay_bits_per_second")
    rows = doc["samples"]
    # A sample's rate covers the interval since the one before; the first's, the first tick (1 s).
    dts = [1000] + [b[0] - a[0] for a, b in zip(rows, rows[1:])]
    summed = sum(r[col] / 8 * dt / 1000 for r, dt in zip(rows, dts))
    check(total > 50000 and abs(summed - total) <= 0.1 * total + 2000,
          "rates sum to %.0f bytes, the counter says %d (%d samples over %d ms)"
          % (summed, total, len(rows), rows[-1][0] - rows[0][0]))
    print("relayed %d bytes; the history's rates times their intervals sum to %.0f"
          % (total, summed))


def test_history_ring_wraps():
    srv = HIST[1]
    first = EARLY[0]  # the oldest sample near the start of this file's tests
    full = wait_for(lambda: (lambda d: d if len(d["samples"]) == HISTORY_CAP
                             and d["samples"][0][0] > first[0] + 1500 else None)(
        get("/api/v1/history", server=srv)), 3 * HISTORY_CAP, "the ring to wrap")
    ts = [r[0] for r in full["samples"]]
    gaps = [b - a for a, b in zip(ts, ts[1:])]
    # One a second on a fixed cadence; a loaded machine may delay one tick, never drift.
    check(all(500 <= g <= 2500 for g in gaps) and 850 <= sum(gaps) / len(gaps) <= 1250,
          "sample spacing (ms): %r" % gaps)
    check(first[0] not in ts and ts[-1] <= full["now"], "the oldest sample was not overwritten")
    last3 = get("/api/v1/history?seconds=3", server=srv)["samples"]
    check(1 <= len(last3) <= 4 and all(r[0] > full["now"] - 3000 - 200 for r in last3),
          "seconds=3: %r" % last3)
    mid = ts[4]
    newer = get("/api/v1/history?since=%d" % mid, server=srv)["samples"]
    check(newer and all(r[0] > mid for r in newer) and newer[0][0] == ts[5],
          "since=%d: %r (had %r)" % (mid, newer, ts))
    none = get("/api/v1/history?since=%d" % (full["now"] + 60000), server=srv)["samples"]
    check(none == [], "since in the future: %r" % none)


def main():
    global U, ADMIN, HIST, B, PEER_PORT
    tests = tests_to_run()  # before the browser and servers: --list, a bad name
    path = chromium_path()
    if not path:
        print("SKIP: chromium is not installed (apt-get install chromium; scripts/deps.sh test)")
        sys.exit(77)
    hport = free_port()
    with Redis() as r, Uturnd(conf=["realm = other.test", "admin-listen = 127.0.0.1:%d" % hport,
                                    "admin-token = ro:" + RO_TOKEN,
                                    "admin-history = %d" % HISTORY_CAP]) as hu:
        HIST = (hu, ("127.0.0.1", hport))
        aport = free_port()
        conf = ["realm = " + REALM, "allow-loopback-peers", "min-port = 49000", "max-port = 49999",
                "admin-listen = 127.0.0.1:%d" % aport, "admin-token = " + TOKEN,
                "admin-token = ro:" + RO_TOKEN,
                'redis-userdb = "ip=127.0.0.1 port=%d dbname=0"' % r.port,
                "use-auth-secret", "static-auth-secret = " + SECRET]
        peer, PEER_PORT = start_peer()
        browser = Chromium(path)
        try:
            with Uturnd(conf=conf) as u:
                U, ADMIN = u, ("127.0.0.1", aport)
                wait_for(lambda: api("GET", "/readyz")[0] == 200, 15, "uturnd ready")
                for name in ("alice", "bob", "carol", "dave"):
                    st, _, doc = api("PUT", "/api/v1/realms/%s/users/%s" % (REALM, name),
                                     body={"password": name + "-pw"})
                    check(st == 201, "PUT %s: %d %r" % (name, st, doc))
                for name, tr in (("alice", "udp"), ("bob", "udp"), ("carol", "tcp")):
                    c = TurnClient(u, name, name + "-pw", tr)
                    CLIENTS[name] = c
                    check(c.allocate()[0] == 0, "%s's Allocate" % name)
                    check(c.create_permission(("127.0.0.1", PEER_PORT))[0] == 0, "%s's permission"
                          % name)
                check(CLIENTS["alice"].channel_bind(0x4000, "127.0.0.1", PEER_PORT)[0] == 0,
                      "alice's ChannelBind")
                B = Cdp(browser.page_ws())
                for domain in ("Page", "Network", "Runtime", "Log"):
                    B.call(domain + ".enable")
                try:
                    run(tests)
                except SystemExit as e:
                    code = e.code
                else:
                    code = 0
                finally:
                    B.close()
                    for c in CLIENTS.values():
                        c.close()
                check(u.alive(), "uturnd died:\n" + u.log()[-3000:])
        finally:
            browser.close()
            peer.send_signal(signal.SIGTERM)
            peer.wait(10)
    raise SystemExit(code)


if __name__ == "__main__":
    main()
