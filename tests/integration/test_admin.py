"""The admin HTTP API against a running uturnd and a real redis-server, with curl, uturnctl and
Python's http.client as clients.

What is checked: a user provisioned over REST relays with coturn's turnutils_uclient (lost 0);
deleting the user ends its live allocation (Refresh gets 437) and refuses it (401); allocations are
listed, shown and killed; ephemeral credentials work with aioice (relay-only ICE through uturnd)
and are refused after revocation (401, live allocation ended); REST secrets are listed by id and
fingerprint only; /metrics moves while traffic flows and passes `promtool check metrics`; every
error status (400, 401, 403, 404, 405, 409, 413, 415, 503) with its JSON error body; a 1 MB body
and a chunked one get 413; 1,000 requests from 100 concurrent curl transfers are all answered; slow
(slowloris) connections are closed by the 10 s connection timeout while the API answers and
uturnd keeps relaying; reload reports what changed and drain makes /readyz say so; uturnctl's exit
codes (0 ok, 1 API error, 2 usage, 3 no connection).
"""
import asyncio
import base64
import hashlib
import hmac
import http.client
import json
import os
import re
import signal
import socket
import subprocess
import tempfile
import time
import urllib.parse

from test_turn_redis import Redis
from uturn import (BUILDDIR, TurnClient, Uturnd, check, free_port, relayed_addresses, run, start_peer,
                   tests_to_run, uclient, wait_for)

REALM = "uturn.test"
TOKEN = "f00dfeed0123456789abcdef00112233"
RO_TOKEN = "readonly-0123456789abcdef"
SECRET = "static-rest-secret-0123456789"
MIN_PORT, MAX_PORT = 48000, 48999
UTURNCTL = os.path.join(BUILDDIR, "uturnctl")

# Shared by the tests below: one uturnd with Redis and the admin API (started in main).
R = None
U = None
ADMIN = None  # (host, port)


# ---- clients ----

def api(method, path, body=None, token=TOKEN, ctype="application/json", raw=None, headers=None,
        server=None):
    """One request with http.client: (status, headers dict, parsed JSON or text)."""
    host, port = server or ADMIN
    conn = http.client.HTTPConnection(host, port, timeout=15)
    h = dict(headers or {})
    if token is not None:
        h["Authorization"] = "Bearer " + token
    data = raw
    if body is not None:
        data = json.dumps(body).encode()
    if data is not None:
        h["Content-Type"] = ctype
    conn.request(method, path, body=data, headers=h)
    resp = conn.getresponse()
    text = resp.read().decode("utf-8", "replace")
    hdrs = {k.lower(): v for k, v in resp.getheaders()}
    conn.close()
    try:
        doc = json.loads(text)
    except ValueError:
        doc = text
    return resp.status, hdrs, doc


def expect_error(got, status, code, field=None):
    st, _, doc = got
    check(st == status, "expected %d, got %d: %r" % (status, st, doc))
    check(isinstance(doc, dict) and set(doc) == {"error"} and doc["error"].get("code") == code
          and isinstance(doc["error"].get("message"), str),
          "expected {\"error\":{\"code\":\"%s\",...}}, got %r" % (code, doc))
    if field:
        check("'%s'" % field in doc["error"]["message"],
              "the message does not name '%s': %r" % (field, doc["error"]["message"]))


def ctl(*args, token=TOKEN, url=None, env_extra=None, stdin=None):
    """Run uturnctl; (exit code, stdout, stderr)."""
    env = dict(os.environ)
    env["UTURN_URL"] = url or "http://%s:%d" % ADMIN
    if token is not None:
        env["UTURN_TOKEN"] = token
    env.update(env_extra or {})
    out = subprocess.run([UTURNCTL] + list(args), capture_output=True, text=True, env=env,
                         timeout=30, input=stdin)
    return out.returncode, out.stdout, out.stderr


def ctl_json(*args):
    rc, out, err = ctl("--json", *args)
    check(rc == 0, "uturnctl %s: exit %d: %s%s" % (" ".join(args), rc, out, err))
    return json.loads(out)


def curl(*args):
    out = subprocess.run(["curl", "-s", "-S"] + list(args), capture_output=True, text=True,
                         timeout=120)
    return out.returncode, out.stdout, out.stderr


def url(path):
    return "http://%s:%d%s" % (ADMIN[0], ADMIN[1], path)


def q(s):
    return urllib.parse.quote(s, safe="")


def server_conf(admin_port, redis_port=None, extra=()):
    conf = ["realm = %s" % REALM, "allow-loopback-peers", "min-port = %d" % MIN_PORT,
            "max-port = %d" % MAX_PORT, "admin-listen = 127.0.0.1:%d" % admin_port,
            "admin-token = %s" % TOKEN, "admin-token = ro:%s" % RO_TOKEN]
    if redis_port:
        conf.append('redis-userdb = "ip=127.0.0.1 port=%d dbname=0"' % redis_port)
    return conf + list(extra)


def rest_password(secret, user):
    return base64.b64encode(hmac.new(secret.encode(), user.encode(), hashlib.sha1).digest()).decode()


def allocations(user=None):
    path = "/api/v1/allocations" + ("?user=" + q(user) if user else "")
    st, _, doc = api("GET", path, token=RO_TOKEN)
    check(st == 200, "allocations: %d %r" % (st, doc))
    return doc


def relay_check(user, password, peer_port, extra=()):
    sent, recv, lost, text = uclient(U, ["-u", user, "-w", password, "-e", "127.0.0.1", "-r",
                                         str(peer_port), "-n", "20", "-m", "2", "-l", "120"]
                                     + list(extra))
    check(sent > 0 and recv == sent and lost == 0,
          "uclient as %s: sent %d received %d lost %d\n%s" % (user, sent, recv, lost, text[-2000:]))
    return sent


# ---- tests ----

def test_start_refused_without_token():
    u = Uturnd(conf=["admin-listen = 127.0.0.1:%d" % free_port()], expect_start=False)
    try:
        wait_for(lambda: u.proc.poll() is not None, 10, "uturnd to refuse the config")
        check(u.proc.returncode == 1 and "admin-token" in u.log(),
              "admin-listen without admin-token: rc %s\n%s" % (u.proc.returncode, u.log()))
    finally:
        u.stop()
    u = Uturnd(conf=["admin-listen = 127.0.0.1:%d" % free_port(), "admin-token = short"],
               expect_start=False)
    try:
        wait_for(lambda: u.proc.poll() is not None, 10, "uturnd to refuse the short token")
        check(u.proc.returncode == 1 and "at least 16" in u.log(), "short token: %s" % u.log())
    finally:
        u.stop()


def test_errors_without_redis_or_rest():
    # A node with no Redis and no use-auth-secret: 409 and 503 with clear messages.
    aport = free_port()
    with Uturnd(conf=server_conf(aport)) as u:
        srv = ("127.0.0.1", aport)
        expect_error(api("POST", "/api/v1/credentials", body={"username": "a"}, server=srv), 409,
                     "rest_disabled")
        expect_error(api("DELETE", "/api/v1/credentials/%d:a" % (time.time() + 60), server=srv),
                     503, "redis_not_configured")
        expect_error(api("PUT", "/api/v1/realms/%s/users/a" % REALM, body={"password": "pw"},
                         server=srv), 503, "redis_not_configured")
        st, _, doc = api("GET", "/readyz", server=srv)
        check(st == 200 and doc["status"] == "ready", "readyz without Redis: %d %r" % (st, doc))
        check(u.alive(), "uturnd died")
    # A node whose Redis is unreachable: 503 redis_unavailable, and /readyz says why.
    aport, dead = free_port(), free_port()
    with Uturnd(conf=server_conf(aport, dead)) as u:
        srv = ("127.0.0.1", aport)
        expect_error(api("PUT", "/api/v1/realms/%s/users/a" % REALM, body={"password": "pw"},
                         server=srv), 503, "redis_unavailable")
        expect_error(api("GET", "/api/v1/realms/%s/users" % REALM, server=srv), 503,
                     "redis_unavailable")
        st, _, doc = api("GET", "/readyz", server=srv)
        check(st == 503 and any("redis" in r for r in doc["reasons"]),
              "readyz with Redis down: %d %r" % (st, doc))
        rc, out, err = ctl("ready", url="http://127.0.0.1:%d" % aport)
        check(rc == 1 and "redis" in out + err, "uturnctl ready, Redis down: %d %s %s"
              % (rc, out, err))


def test_auth_and_error_statuses():
    st, _, doc = api("GET", "/healthz", token=None)
    check(st == 200 and doc == {"status": "ok"}, "healthz: %d %r" % (st, doc))
    got = api("GET", "/api/v1/stats", token=None)
    expect_error(got, 401, "unauthorized")
    check(got[1].get("www-authenticate", "").startswith("Bearer"), "401 without WWW-Authenticate")
    expect_error(api("GET", "/api/v1/stats", token="not-a-token-but-long-enough"), 401,
                 "unauthorized")
    expect_error(api("GET", "/api/v1/stats", token=TOKEN[:-1]), 401, "unauthorized")
    # Unknown paths answer 401 without a token: nobody maps the API without one.
    expect_error(api("GET", "/nope", token=None), 401, "unauthorized")
    expect_error(api("GET", "/nope"), 404, "not_found")
    expect_error(api("GET", "/api/v1/allocations/ffff000000000001"), 404, "not_found")
    expect_error(api("GET", "/api/v1/allocations/zz"), 404, "not_found")
    got = api("PUT", "/api/v1/stats", body={})
    expect_error(got, 405, "method_not_allowed")
    check("GET" in got[1].get("allow", ""), "405 without Allow: %r" % got[1])
    # Read-only token: reads yes, changes no.
    check(api("GET", "/api/v1/stats", token=RO_TOKEN)[0] == 200, "ro token cannot read stats")
    check(api("GET", "/metrics", token=RO_TOKEN)[0] == 200, "ro token cannot scrape")
    expect_error(api("POST", "/api/v1/drain", token=RO_TOKEN), 403, "read_only_token")
    expect_error(api("PUT", "/api/v1/realms/%s/users/x" % REALM, body={"password": "p"},
                     token=RO_TOKEN), 403, "read_only_token")
    expect_error(api("POST", "/api/v1/credentials", body={}, token=RO_TOKEN), 403,
                 "read_only_token")
    # Bodies.
    expect_error(api("POST", "/api/v1/credentials", raw=b"{not json"), 400, "bad_json")
    expect_error(api("POST", "/api/v1/credentials", raw=b"[1,2]"), 400, "bad_json")
    expect_error(api("POST", "/api/v1/credentials", raw=b'{"ttl":1,"ttl":2}'), 400, "bad_json")
    expect_error(api("POST", "/api/v1/credentials", body={"ttl": "soon"}), 400, "bad_field", "ttl")
    expect_error(api("POST", "/api/v1/credentials", body={"username": 5}), 400, "bad_field",
                 "username")
    expect_error(api("PUT", "/api/v1/realms/%s/users/x" % REALM, body={}), 400, "bad_field",
                 "password")
    expect_error(api("PUT", "/api/v1/realms/%s/users/x" % REALM), 400, "missing_body")
    expect_error(api("POST", "/api/v1/credentials", raw=b"username=a", ctype="text/plain"), 415,
                 "unsupported_media_type")
    expect_error(api("POST", "/api/v1/drain", raw=b"x", ctype="application/x-www-form-urlencoded"),
                 415, "unsupported_media_type")
    # Names in paths: percent-decoded, then checked.
    expect_error(api("GET", "/api/v1/realms/%s/users/a%%01b" % REALM), 400, "bad_field", "user")
    expect_error(api("GET", "/api/v1/realms/%s/users/a%%zz" % REALM), 400, "bad_path")
    # A '/' in a realm would let one realm's keys pose as another's: refused.
    expect_error(api("PUT", "/api/v1/realms/%s%%2Fuser%%2Fx/users/u" % REALM, body={"password": "p"}),
                 400, "bad_field", "realm")
    expect_error(api("GET", "/api/v1/realms/%s/users/%s" % (REALM, "u" * 600)), 400, "bad_field",
                 "user")
    expect_error(api("GET", "/api/v1/allocations?limit=0"), 400, "bad_parameter", "limit")
    expect_error(api("GET", "/api/v1/turn-credentials?service=ftp&key=" + TOKEN, token=None), 400,
                 "bad_parameter", "service")
    expect_error(api("DELETE", "/api/v1/credentials/alice"), 400, "bad_field", "username")

    # 413: a 1 MB body with curl (Content-Length) and the same chunked; nothing is buffered.
    with tempfile.NamedTemporaryFile(suffix=".json") as f:
        f.write(b'{"password":"' + b"x" * (1 << 20) + b'"}')
        f.flush()
        for extra in ([], ["-H", "Transfer-Encoding: chunked"]):
            rc, out, err = curl("-o", "-", "-w", "\n%{http_code}", "-X", "PUT", "-H",
                                "Authorization: Bearer " + TOKEN, "-H",
                                "Content-Type: application/json", *extra, "--data-binary",
                                "@" + f.name, url("/api/v1/realms/%s/users/big" % REALM))
            body, _, code = out.rpartition("\n")
            check(code == "413", "1 MB body %s: curl rc %d, status %s %s %s"
                  % (extra, rc, code, body[:200], err))
            check(json.loads(body)["error"]["code"] == "body_too_large", "413 body: %r" % body)
    check(U.alive(), "uturnd died")


def test_provision_user_then_relay():
    peer, pport = start_peer()
    try:
        st, _, doc = api("PUT", "/api/v1/realms/%s/users/alice" % REALM, body={"password": "alice-pw"})
        check(st == 201 and doc["created"] is True, "PUT new user: %d %r" % (st, doc))
        md5 = hashlib.md5(("alice:%s:alice-pw" % REALM).encode()).hexdigest()
        check(R.cli("GET", "turn/realm/%s/user/alice/key" % REALM) == md5, "MD5 key not coturn's")
        sha = hashlib.sha256(("alice:%s:alice-pw" % REALM).encode()).hexdigest()
        check(R.cli("GET", "turn/realm/%s/user/alice/key-sha256" % REALM) == sha, "no SHA-256 key")
        uh = hashlib.sha256(("alice:%s" % REALM).encode()).hexdigest()
        check(R.cli("GET", "turn/realm/%s/userhash/%s" % (REALM, uh)) == "alice", "no userhash key")
        dump = R.cli("--scan", "--pattern", "*")
        check("alice-pw" not in dump and all("alice-pw" not in R.cli("GET", k)
                                             for k in dump.split() if "/user/" in k),
              "the password is stored somewhere")
        st, _, doc = api("PUT", "/api/v1/realms/%s/users/alice" % REALM, body={"password": "alice-pw"})
        check(st == 200 and doc["created"] is False, "PUT existing user: %d %r" % (st, doc))
        st, _, doc = api("GET", "/api/v1/realms/%s/users/alice" % REALM, token=RO_TOKEN)
        check(st == 200 and doc["exists"] and doc["md5_key"] and doc["sha256_key"]
              and "key" not in doc and md5 not in json.dumps(doc), "GET user: %r" % doc)
        expect_error(api("GET", "/api/v1/realms/%s/users/nobody" % REALM), 404, "not_found")
        # uturnctl: add with the password on stdin, list, a name that needs escaping.
        rc, out, err = ctl("user", "add", "bob/ü x", "--password", "-", stdin="bob-pw\n")
        check(rc == 0 and "added" in out, "uturnctl user add: %d %s %s" % (rc, out, err))
        check(R.cli("EXISTS", "turn/realm/%s/user/bob/ü x/key" % REALM) == "1", "odd name not stored")
        for i in range(30):
            R.cli("SET", "turn/realm/%s/user/filler%02d/key" % (REALM, i), "00" * 16)
        R.cli("SET", "turn/realm/other/user/stranger/key", "00" * 16)
        names, cursor = set(), None
        for _ in range(50):
            doc = ctl_json("user", "list", "--limit", "7", *(["--cursor", cursor] if cursor else []))
            names.update(doc["users"])
            cursor = doc["next_cursor"]
            if cursor is None:
                break
        check({"alice", "bob/ü x"} <= names and "stranger" not in names and len(names) == 32,
              "paged user list: %r" % sorted(names))
        rc, out, err = ctl("user", "list")
        check(rc == 0 and "alice" in out.split("\n"), "uturnctl user list: %s" % out)
        sent = relay_check("alice", "alice-pw", pport)
        relay_check("bob/ü x", "bob-pw", pport, ["-t"])
        print("provisioned user relayed %d messages over UDP, lost 0" % sent)
    finally:
        peer.send_signal(signal.SIGTERM)
        peer.wait(10)


def test_delete_user_ends_allocation():
    rc, out, err = ctl("user", "add", "carol", "--password", "carol-pw")
    check(rc == 0, "uturnctl user add carol: %s %s" % (out, err))
    clients = [TurnClient(U, "carol", "carol-pw", t) for t in ("udp", "tcp")]
    try:
        for c in clients:
            code, _, raw = c.allocate(raw_response=True)
            check(code == 0, "carol's Allocate: %s" % code)
        doc = ctl_json("allocations", "--user", "carol")
        check(doc["total"] == 2 and len(doc["allocations"]) == 2, "carol's allocations: %r" % doc)
        a = doc["allocations"][0]
        st, _, one = api("GET", "/api/v1/allocations/" + a["id"], token=RO_TOKEN)
        check(st == 200, "GET allocation: %d %r" % (st, one))
        relayed = relayed_addresses(raw)
        check(one["username"] == "carol" and one["realm"] == REALM
              and one["transport"] in ("udp", "tcp") and one["relayed"][0]["address"]
              and isinstance(one["permissions"], list) and isinstance(one["channels"], list)
              and one["expires_unix"] > one["created_unix"] > time.time() - 60
              and re.match(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$", one["created"])
              and "bytes" in one["client_to_peer"] and "packets" in one["peer_to_client"],
              "allocation detail: %r (relayed %r)" % (one, relayed))
        st, _, doc = api("DELETE", "/api/v1/realms/%s/users/carol" % REALM)
        check(st == 200 and doc["allocations_terminated"] == 2, "DELETE user: %d %r" % (st, doc))
        for c in clients:
            code, _ = c.refresh(600)
            check(code == 437, "Refresh after the user was deleted: %s, expected 437" % code)
        check(allocations("carol")["total"] == 0, "carol still has allocations")
        fresh = TurnClient(U, "carol", "carol-pw")
        try:
            code, _ = fresh.allocate()
            check(code == 401, "deleted user's new Allocate: %s, expected 401" % code)
        finally:
            fresh.close()
        expect_error(api("DELETE", "/api/v1/realms/%s/users/carol" % REALM), 404, "not_found")
    finally:
        for c in clients:
            c.close()


def test_kill_allocation():
    api("PUT", "/api/v1/realms/%s/users/dave" % REALM, body={"password": "dave-pw"})
    c = TurnClient(U, "dave", "dave-pw")
    try:
        check(c.allocate()[0] == 0, "dave's Allocate failed")
        aid = allocations("dave")["allocations"][0]["id"]
        rc, out, err = ctl("kill", aid)
        check(rc == 0 and "terminated" in out, "uturnctl kill: %d %s %s" % (rc, out, err))
        check(c.refresh(600)[0] == 437, "Refresh after kill is not 437")
        rc, out, err = ctl("kill", aid)
        check(rc == 1 and "404 not_found" in err, "kill twice: %d %s %s" % (rc, out, err))
    finally:
        c.close()


async def _ice(creds):
    import aioice
    import aioice.ice
    # As in test_turn_aioice: no host addresses, so the relay is the only path.
    aioice.ice.get_host_addresses = lambda use_ipv4, use_ipv6: []
    server = creds["iceServers"][0]
    turn = [u for u in server["urls"] if u.startswith("turn:") and u.endswith("transport=udp")][0]
    host, port = re.match(r"turn:([^:?]+):(\d+)", turn).groups()

    def agent(controlling):
        return aioice.Connection(ice_controlling=controlling, components=1,
                                 turn_server=(host, int(port)), turn_username=server["username"],
                                 turn_password=server["credential"], turn_transport="udp",
                                 use_ipv4=True, use_ipv6=False,
                                 transport_policy=aioice.TransportPolicy.RELAY)
    a, b = agent(True), agent(False)
    try:
        await asyncio.wait_for(asyncio.gather(a.gather_candidates(), b.gather_candidates()), 20)
        for conn in (a, b):
            check(conn.local_candidates and all(c.type == "relay" for c in conn.local_candidates),
                  "no relay candidate: %r" % conn.local_candidates)
        for local, remote in ((a, b), (b, a)):
            local.remote_username = remote.local_username
            local.remote_password = remote.local_password
            for c in remote.local_candidates:
                await local.add_remote_candidate(c)
            await local.add_remote_candidate(None)
        await asyncio.wait_for(asyncio.gather(a.connect(), b.connect()), 20)
        await a.send(b"through uturn with ephemeral credentials")
        got = await asyncio.wait_for(b.recv(), 10)
        check(got == b"through uturn with ephemeral credentials", "ICE data: %r" % got)
    finally:
        await asyncio.wait_for(asyncio.gather(a.close(), b.close()), 20)


def test_ephemeral_credentials_ice():
    st, _, doc = api("POST", "/api/v1/credentials", body={"username": "eve", "ttl": 600})
    check(st == 200, "POST credentials: %d %r" % (st, doc))
    exp, name = doc["username"].split(":", 1)
    check(name == "eve" and abs(int(exp) - time.time() - 600) < 5 and doc["ttl"] == 600,
          "username/ttl: %r" % doc)
    check(doc["password"] == rest_password(SECRET, doc["username"]), "password is not the REST HMAC")
    hp = "127.0.0.1:%d" % U.port
    check(doc["uris"] == ["turn:%s?transport=udp" % hp, "turn:%s?transport=tcp" % hp],
          "uris: %r" % doc["uris"])
    ice = doc["iceServers"]
    check(len(ice) == 1 and ice[0]["username"] == doc["username"]
          and ice[0]["credential"] == doc["password"] and "stun:" + hp in ice[0]["urls"]
          and set(doc["uris"]) <= set(ice[0]["urls"]), "iceServers: %r" % ice)
    asyncio.run(asyncio.wait_for(_ice(doc), 60))
    print("aioice connected relay to relay with %s" % doc["username"])
    # draft-uberti form: GET with ?key=, POST with the Bearer header.
    st, _, d2 = api("GET", "/api/v1/turn-credentials?service=turn&username=frank&key=" + TOKEN,
                    token=None)
    check(st == 200 and d2["username"].endswith(":frank") and d2["ttl"] == 86400
          and d2["password"] == rest_password(SECRET, d2["username"]) and d2["uris"],
          "turn-credentials GET: %d %r" % (st, d2))
    st, _, d3 = api("POST", "/api/v1/turn-credentials?service=turn&ttl=120")
    check(st == 200 and d3["ttl"] == 120 and ":" not in d3["username"], "POST form: %r" % d3)
    expect_error(api("GET", "/api/v1/turn-credentials?service=turn&key=wrong-key-0123456789",
                     token=None), 401, "unauthorized")
    expect_error(api("GET", "/api/v1/turn-credentials?service=turn&key=" + RO_TOKEN, token=None),
                 403, "read_only_token")
    doc = ctl_json("credentials", "gina", "--ttl", "300")
    check(doc["username"].endswith(":gina") and doc["ttl"] == 300, "uturnctl credentials: %r" % doc)


def test_revoke_ephemeral():
    st, _, doc = api("POST", "/api/v1/credentials", body={"username": "henry", "ttl": 3600})
    check(st == 200, "mint: %r" % doc)
    user, pw = doc["username"], doc["password"]
    c = TurnClient(U, user, pw, "tcp")
    try:
        check(c.allocate()[0] == 0, "ephemeral Allocate failed")
        check(allocations(user)["total"] == 1, "the allocation is not listed")
        rc, out, err = ctl("--json", "revoke", user)
        check(rc == 0, "uturnctl revoke: %d %s %s" % (rc, out, err))
        doc = json.loads(out)
        check(doc["revoked"] is True and doc["allocations_terminated"] == 1, "revoke: %r" % doc)
        ttl = int(R.cli("TTL", "turn/realm/%s/revoked/%s" % (REALM, user)))
        check(3600 < ttl <= 3600 + 700, "revocation key TTL %d" % ttl)
        check(c.refresh(600)[0] == 437, "Refresh after revocation is not 437")
    finally:
        c.close()
    for t in ("udp", "tcp"):
        c = TurnClient(U, user, pw, t)
        try:
            code = c.allocate()[0]
            check(code == 401, "revoked ephemeral user over %s: %s, expected 401" % (t, code))
        finally:
            c.close()


def test_rest_secrets():
    doc = ctl_json("secret", "list")
    cfg = [s for s in doc["secrets"] if s["source"] == "config"]
    check(len(cfg) == 1 and SECRET not in json.dumps(doc), "config secret listing: %r" % doc)
    expect_error(api("DELETE", "/api/v1/realms/%s/secrets/%s" % (REALM, cfg[0]["id"])), 409,
                 "secret_in_config")
    rc, out, err = ctl("secret", "add")
    m = re.search(r"generated secret \(shown once\): ([0-9a-f]{64})", out)
    check(rc == 0 and m, "uturnctl secret add: %d %s %s" % (rc, out, err))
    generated = m.group(1)
    st, _, doc = api("POST", "/api/v1/realms/%s/secrets" % REALM,
                     body={"secret": "given-secret-0123456789"})
    check(st == 201 and "secret" not in doc and len(doc["id"]) == 8, "add given secret: %r" % doc)
    given_id = doc["id"]
    expect_error(api("POST", "/api/v1/realms/%s/secrets" % REALM, body={"secret": "short"}), 400,
                 "bad_field", "secret")
    members = R.cli("SMEMBERS", "turn/realm/%s/secret" % REALM).split()
    check(set(members) == {generated, "given-secret-0123456789"}, "Redis set: %r" % members)
    listing = api("GET", "/api/v1/realms/%s/secrets" % REALM, token=RO_TOKEN)[2]
    text = json.dumps(listing)
    check(generated not in text and "given-secret" not in text and len(listing["secrets"]) == 3,
          "secret listing shows a secret or misses one: %r" % listing)
    # A REST name signed with the Redis secret works at once (workers forgot the secret set).
    user = "%d:ivy" % (time.time() + 600)
    c = TurnClient(U, user, rest_password("given-secret-0123456789", user))
    try:
        check(c.allocate()[0] == 0, "REST name signed with a Redis secret refused")
    finally:
        c.close()
    rc, out, err = ctl("secret", "del", given_id)
    check(rc == 0, "uturnctl secret del: %s %s" % (out, err))
    c = TurnClient(U, "%d:ivy2" % (time.time() + 600), "x")
    c.password = rest_password("given-secret-0123456789", c.user)
    try:
        check(c.allocate()[0] == 401, "REST name signed with a deleted secret still accepted")
    finally:
        c.close()
    rc, out, err = ctl("secret", "del", given_id)
    check(rc == 1 and "404" in err, "deleting twice: %d %s" % (rc, err))


def _metrics():
    st, hdrs, text = api("GET", "/metrics", token=RO_TOKEN)
    check(st == 200 and hdrs["content-type"].startswith("text/plain; version=0.0.4"),
          "/metrics: %d %r" % (st, hdrs))
    vals = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            k, v = line.rsplit(" ", 1)
            vals[k] = float(v)
    return text, vals


def test_metrics_move_and_promtool():
    api("PUT", "/api/v1/realms/%s/users/mallory" % REALM, body={"password": "m-pw"})
    text0, m0 = _metrics()
    peer, pport = start_peer()
    try:
        relay_check("mallory", "m-pw", pport)
        relay_check("mallory", "m-pw", pport, ["-s"])
        c = TurnClient(U, "mallory", "m-pw")
        check(c.allocate()[0] == 0, "allocate for the gauge")
        try:
            text1, m1 = _metrics()
            check(m1['uturn_allocations{transport="udp"}'] >= 1
                  and m1['uturn_relayed_addresses{family="ipv4"}'] >= 1, "gauges: %r" % m1)
        finally:
            c.close()
    finally:
        peer.send_signal(signal.SIGTERM)
        peer.wait(10)
    for k in ('uturn_relay_bytes_total{path="user",direction="client_to_peer"}',
              'uturn_relay_bytes_total{path="user",direction="peer_to_client"}',
              'uturn_relay_packets_total{path="user",direction="peer_to_client"}',
              'uturn_relay_messages_total{path="user",kind="channeldata",direction="client_to_peer"}',
              'uturn_relay_messages_total{path="user",kind="indication",direction="client_to_peer"}',
              'uturn_relay_messages_total{path="user",kind="indication",direction="peer_to_client"}',
              "uturn_allocations_created_total", 'uturn_auth_total{result="ok"}',
              'uturn_auth_total{result="challenge"}'):
        check(m1[k] > m0[k], "%s did not move: %s -> %s" % (k, m0[k], m1[k]))
    check(sum(v for k, v in m1.items() if k.startswith("uturn_worker_relay_packets_total"))
          == m1['uturn_relay_packets_total{path="user",direction="client_to_peer"}']
          + m1['uturn_relay_packets_total{path="user",direction="peer_to_client"}'], "per-worker sums differ")
    check(set(m0) == set(m1), "the series changed between scrapes (unbounded labels?)")
    check(m1["uturn_relay_ports_free"] + m1["uturn_relay_ports_in_use"]
          == MAX_PORT - MIN_PORT + 1, "ports in use + free != range")
    check(m1["uturn_redis_up"] == 1, "uturn_redis_up is not 1")
    out = subprocess.run(["promtool", "check", "metrics"], input=text1, capture_output=True,
                         text=True, timeout=30)
    check(out.returncode == 0, "promtool check metrics: %s%s" % (out.stdout, out.stderr))
    doc = ctl_json("stats")
    check(doc["version"] and doc["uptime_seconds"] > 0 and doc["workers"] == 2
          and doc["relay"]["bytes"]["client_to_peer"] >= m1['uturn_relay_bytes_total{path="user",direction="client_to_peer"}']
          and len(doc["per_worker"]) == 2, "stats JSON: %r" % doc)
    # kernel-offload is off here: the kernel path's series exist and say so.
    check(m1["uturn_kernel_offload_active"] == 0
          and m1['uturn_relay_packets_total{path="kernel",direction="client_to_peer"}'] == 0
          and doc["kernel"]["active"] is False, "kernel path series with offload off")
    rc, out, err = ctl("stats")
    check(rc == 0 and "allocations" in out and "relay ports" in out
          and "kernel path    off" in out, "uturnctl stats: %s" % out)
    print("promtool: %d series pass" % len(m1))


def test_thousand_concurrent_requests():
    paths = ["/api/v1/stats", "/metrics", "/api/v1/allocations?limit=5", "/readyz"]
    with tempfile.NamedTemporaryFile("w", suffix=".curl") as cfg:
        for i in range(1000):
            cfg.write('url = "%s"\noutput = "/dev/null"\n' % url(paths[i % len(paths)]))
        cfg.flush()
        t0 = time.monotonic()
        rc, out, err = curl("--parallel", "--parallel-max", "100", "-H",
                            "Authorization: Bearer " + TOKEN, "-w", "%{http_code}\n", "-K",
                            cfg.name)
    took = time.monotonic() - t0
    codes = out.split()
    check(rc == 0 and len(codes) == 1000 and set(codes) == {"200"},
          "1000 requests: rc %d, %d answers, %r %s" % (rc, len(codes), sorted(set(codes)), err[-500:]))
    print("1000 requests, 100 concurrent: all 200 in %.2fs" % took)
    check(U.alive(), "uturnd died")


def test_slowloris_while_relaying():
    slow = []
    for _ in range(20):
        s = socket.create_connection(ADMIN, timeout=5)
        s.sendall(b"GET /api/v1/stats HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ")
        slow.append(s)
    t0 = time.monotonic()
    try:
        peer, pport = start_peer()
        try:
            api("PUT", "/api/v1/realms/%s/users/slowpoke" % REALM, body={"password": "sp"})
            relay_check("slowpoke", "sp", pport)
            check(api("GET", "/api/v1/stats")[0] == 200, "the API stopped answering")
        finally:
            peer.send_signal(signal.SIGTERM)
            peer.wait(10)
        # The idle timeout (10 s) closes every one of them.
        from uturn import wait_closed
        for s in slow:
            check(wait_closed(s, 20), "a slow connection was not closed")
        took = time.monotonic() - t0
        check(8 <= took <= 20, "slow connections closed after %.1fs, expected ~10s" % took)
        print("20 slowloris connections closed after %.1fs; relaying and the API went on" % took)
    finally:
        for s in slow:
            s.close()


def test_uturnctl_exit_codes():
    rc, out, err = ctl()
    check(rc == 2 and "usage" in err, "no command: %d %s" % (rc, err))
    rc, out, err = ctl("frobnicate")
    check(rc == 2, "unknown command: %d" % rc)
    dead = free_port()
    rc, out, err = ctl("stats", url="http://127.0.0.1:%d" % dead)
    check(rc == 3 and "cannot reach" in err, "no server: %d %s" % (rc, err))
    rc, out, err = ctl("stats", token="wrong-token-0123456789")
    check(rc == 1 and "401 unauthorized" in err, "bad token: %d %s" % (rc, err))
    rc, out, err = ctl("drain", token=RO_TOKEN)
    check(rc == 1 and "403 read_only_token" in err, "ro drain: %d %s" % (rc, err))
    # The config file: url and token from it, no environment.
    with tempfile.NamedTemporaryFile("w", suffix=".conf") as f:
        f.write("# uturnctl\nurl = http://%s:%d/\ntoken = %s\n" % (ADMIN[0], ADMIN[1], TOKEN))
        f.flush()
        env = {k: v for k, v in os.environ.items() if not k.startswith("UTURN_")}
        out = subprocess.run([UTURNCTL, "--config", f.name, "--json", "stats"], capture_output=True,
                             text=True, env=env, timeout=30)
        check(out.returncode == 0 and json.loads(out.stdout)["workers"] == 2,
              "uturnctl --config: %d %s" % (out.returncode, out.stderr))


def test_reload_then_drain():
    with open(U.conf_path, "a") as f:
        f.write("user-quota = 7\n")
    rc, out, err = ctl("--json", "reload")
    check(rc == 0, "uturnctl reload: %s %s" % (out, err))
    doc = json.loads(out)
    check(doc["reloaded"] is True and "user-quota: 256 -> 7" in doc["changes"], "reload: %r" % doc)
    st, _, doc = api("GET", "/readyz")
    check(st == 200, "readyz before drain: %d %r" % (st, doc))
    rc, out, err = ctl("drain")
    check(rc == 0 and "draining" in out, "uturnctl drain: %s %s" % (out, err))
    st, _, doc = api("GET", "/readyz", token=RO_TOKEN)
    check(st == 503 and "draining" in doc["reasons"], "readyz while draining: %d %r" % (st, doc))
    c = TurnClient(U, "alice", "alice-pw")
    try:
        code = c.allocate()[0]
        check(code == 508, "Allocate while draining: %s, expected 508" % code)
    finally:
        c.close()
    check(ctl_json("stats")["draining"] is True, "stats does not say draining")


def main():
    global R, U, ADMIN
    tests = tests_to_run()  # before Redis and uturnd: --list, a bad name
    with Redis() as r:
        aport = free_port()
        # The user-space relay's series are what these tests move; the kernel path's are
        # test_kernel_control's (with auto, the default, root would get the kernel path here).
        conf = server_conf(aport, r.port, ["use-auth-secret", "static-auth-secret = " + SECRET,
                                           "kernel-offload = off"])
        with Uturnd(conf=conf) as u:
            R, U, ADMIN = r, u, ("127.0.0.1", aport)
            wait_for(lambda: api("GET", "/readyz")[0] == 200, 15, "uturnd ready with Redis")
            try:
                run(tests)
            except SystemExit as e:
                code = e.code
            else:
                code = 0
            check(u.alive(), "uturnd died:\n" + u.log()[-3000:])
    raise SystemExit(code)


if __name__ == "__main__":
    main()
