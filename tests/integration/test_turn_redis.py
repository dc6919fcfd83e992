"""Credentials from a real redis-server, in coturn's layout, with uturnd's failure behaviour:
a Redis user (hex MD5 key) relays with coturn's turnutils_uclient over UDP and TCP; a REST secret
kept in Redis authenticates uclient's -W credentials; uturnd starts with Redis down, serves static
users, answers Redis users 500 and picks Redis up by itself when it appears; when Redis is killed
mid-run existing allocations keep relaying, a cached user can still allocate, a new user gets 500
until Redis is back; a revoked user gets 401.

Each test starts its own redis-server on a free loopback port (no persistence) and provisions it
with redis-cli; the server is killed at the end even when the test fails (and by the kernel if this
script dies: PR_SET_PDEATHSIG).
"""
import base64
import ctypes
import hashlib
import hmac
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time

from uturn import (TurnClient, Uturnd, check, free_port, relayed_addresses, run, start_peer,
                   uclient_modes, wait_for)

REALM = "uturn.test"
STATIC_USER, STATIC_PASS = "static", "static-pass"
MIN_PORT, MAX_PORT = 45000, 45999
REDIS_DEADLINE = 15  # seconds for uturnd to notice Redis is back (backoff 0.5 s doubling)


# ---- redis-server and provisioning ----

def _pdeathsig():
    # Runs in the child between fork and exec: die with the test process.
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


class Redis:
    """A redis-server on 127.0.0.1:port, no persistence. Context manager: killed on exit."""

    def __init__(self, port=None):
        self.port = port or free_port()
        self.dir = tempfile.mkdtemp(prefix="uturn-redis-")
        self.proc = None
        try:
            self.start()
        except BaseException:
            self.__exit__(None, None, None)
            raise

    def start(self):
        check(self.proc is None or self.proc.poll() is not None, "redis-server already running")
        log = open(os.path.join(self.dir, "redis.log"), "ab")
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", self.dir],
            stdout=log, stderr=subprocess.STDOUT, preexec_fn=_pdeathsig)
        log.close()
        wait_for(lambda: self.proc.poll() is not None or self.ping(), 10, "redis-server PONG")
        check(self.proc.poll() is None, "redis-server exited at start:\n" + self.log())

    def log(self):
        with open(os.path.join(self.dir, "redis.log"), "rb") as f:
            return f.read().decode("utf-8", "replace")[-3000:]

    def ping(self):
        out = subprocess.run(["redis-cli", "-h", "127.0.0.1", "-p", str(self.port), "ping"],
                             capture_output=True, text=True, timeout=5)
        return out.stdout.strip() == "PONG"

    def cli(self, *args):
        out = subprocess.run(["redis-cli", "-h", "127.0.0.1", "-p", str(self.port)] + list(args),
                             capture_output=True, text=True, timeout=10)
        check(out.returncode == 0 and not out.stdout.startswith("(error)")
              and not out.stdout.startswith("ERR"),
              "redis-cli %r: rc %d %s%s" % (args, out.returncode, out.stdout, out.stderr))
        return out.stdout.strip()

    def kill(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def __enter__(self):
        return self

    def __exit__(self, et, ev, tb):
        self.kill()
        shutil.rmtree(self.dir, ignore_errors=True)
        return False


def md5_key(user, password, realm=REALM):
    return hashlib.md5(("%s:%s:%s" % (user, realm, password)).encode()).hexdigest()


def add_user(r, user, password, realm=REALM):
    """coturn's layout: turn/realm/<realm>/user/<user>/key = hex MD5(user:realm:password)."""
    r.cli("SET", "turn/realm/%s/user/%s/key" % (realm, user), md5_key(user, password, realm))


def rest_credentials(secret, name, ttl=3600):
    """TURN REST: username EXPIRY:NAME, password base64(HMAC-SHA1(secret, username))."""
    user = "%d:%s" % (int(time.time()) + ttl, name)
    return user, base64.b64encode(hmac.new(secret.encode(), user.encode(), hashlib.sha1).digest()).decode()


def userdb(port):
    return 'redis-userdb = "ip=127.0.0.1 port=%d dbname=0"' % port


def _server(redis_port, extra=(), threads=2):
    conf = ["realm = %s" % REALM, "allow-loopback-peers", "min-port = %d" % MIN_PORT,
            "max-port = %d" % MAX_PORT, userdb(redis_port)] + list(extra)
    return Uturnd(conf=conf, threads=threads)


def _allocate(u, user, password, transport="udp"):
    """A fresh 5-tuple's Allocate: the STUN code (0 for success)."""
    c = TurnClient(u, user, password, transport)
    try:
        return c.allocate()[0]
    finally:
        c.close()


MODES = [
    ("udp channel", []),
    ("udp send-indication", ["-s"]),
    ("tcp channel", ["-t"]),
    ("tcp send-indication", ["-t", "-s"]),
]


def _stop_peer(peer):
    peer.send_signal(signal.SIGTERM)
    peer.wait(10)


# ---- tests ----

def test_redis_user_coturn_layout_relays():
    with Redis() as r:
        add_user(r, "rosa", "rosa-pass-1")
        peer, pport = start_peer()
        try:
            with _server(r.port) as u:
                uclient_modes(u, ["-u", "rosa", "-w", "rosa-pass-1"], pport, MODES)
                check("auth_fail" not in u.log(), "unexpected auth failures:\n" + u.log()[-2000:])
                # The key really came from Redis: a wrong password is refused.
                check(_allocate(u, "rosa", "not-rosa's") == 401, "wrong password not refused")
        finally:
            _stop_peer(peer)


def test_rest_secret_from_redis():
    secret = "redis-kept-rest-secret"
    with Redis() as r:
        r.cli("SADD", "turn/realm/%s/secret" % REALM, "an-older-secret", secret)
        peer, pport = start_peer()
        try:
            with _server(r.port, ["use-auth-secret"]) as u:
                # uclient makes the REST username (timestamp:user) and password itself from -W.
                uclient_modes(u, ["-u", "resty", "-W", secret], pport, MODES[:1] + MODES[2:3])
                name, pw = rest_credentials(secret, "resty2")
                check(_allocate(u, name, pw) == 0, "REST credentials from the Redis secret refused")
                name, pw = rest_credentials("not-in-redis", "resty3")
                check(_allocate(u, name, pw) == 401, "REST credentials from an unknown secret accepted")
        finally:
            _stop_peer(peer)


def _answer_once_redis_is_back(u, user, password, what):
    """Allocate from fresh 5-tuples while uturnd answers 500 (Redis not back yet on the worker
    that got the request: each worker has its own connection and backoff); the first other answer,
    or a failure at the deadline."""
    codes = []

    def answered():
        codes.append(_allocate(u, user, password))
        return codes[-1] != 500

    t0 = time.monotonic()
    wait_for(answered, REDIS_DEADLINE, what, interval=0.25)
    return codes[-1], time.monotonic() - t0


def test_redis_down_at_start_then_up():
    port = free_port()  # nothing listens here yet
    with _server(port, ["user = %s:%s" % (STATIC_USER, STATIC_PASS)]) as u:
        check(_allocate(u, STATIC_USER, STATIC_PASS) == 0, "static user could not allocate "
              "while Redis is down")
        code = _allocate(u, "late", "late-pass")
        check(code == 500, "Redis user while Redis is down: %s, expected 500" % code)
        check(u.alive(), "uturnd died")
        with Redis(port) as r:
            add_user(r, "late", "late-pass")
            code, secs = _answer_once_redis_is_back(u, "late", "late-pass",
                                                    "the Redis user's Allocate once Redis is up")
            check(code == 0, "the Redis user, Redis up: %s, expected success" % code)
            print("Redis user allocated %.1fs after redis-server started" % secs)
            check(_allocate(u, STATIC_USER, STATIC_PASS) == 0, "static user broken after Redis came up")
            code, _ = _answer_once_redis_is_back(u, "late", "wrong", "an answer to a wrong password")
            check(code == 401, "wrong password for the Redis user: %s, expected 401" % code)


def _echo_both_ways(c, peer, relay, channel, tag):
    """Client -> peer over the channel and peer -> client back; checks bytes and addresses."""
    for n in range(5):
        out = b"%s c2p %d " % (tag, n) + os.urandom(64)
        c.channel_data(channel, out)
        data, src = peer.recvfrom(65536)
        check(data == out and src == relay, "%s: peer got %r from %r, expected %r from %r"
              % (tag, data[:24], src, out[:24], relay))
        back = b"%s p2c %d " % (tag, n) + os.urandom(64)
        peer.sendto(back, relay)
        got = c.receive_data(3.0)
        check(got == ("channel", channel, back), "%s: client got %r, expected channel 0x%04x %r"
              % (tag, got and got[:2], channel, back[:24]))
    # And a Send indication, which needs only the permission.
    out = b"%s send-indication" % tag
    c.send_indication(peer.getsockname()[0], peer.getsockname()[1], out)
    data, src = peer.recvfrom(65536)
    check(data == out and src == relay, "%s: Send indication arrived as %r from %r" % (tag, data, src))


def test_redis_killed_mid_run():
    # One worker: the credential cache is per worker, and a new 5-tuple may land on any worker;
    # with one, "cached" is deterministic.
    with Redis() as r:
        add_user(r, "mid", "mid-pass")
        add_user(r, "newbie", "newbie-pass")
        port = r.port
        peer = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        peer.bind(("127.0.0.1", 0))
        peer.settimeout(3)
        pip, pport = peer.getsockname()
        with _server(port, threads=1) as u:
            c = TurnClient(u, "mid", "mid-pass")
            try:
                code, _, raw = c.allocate(raw_response=True)
                check(code == 0, "Redis user could not allocate: %s" % code)
                relay = relayed_addresses(raw)[0]
                check(c.create_permission((pip, pport))[0] == 0, "CreatePermission failed")
                check(c.channel_bind(0x4000, pip, pport)[0] == 0, "ChannelBind failed")
                _echo_both_ways(c, peer, relay, 0x4000, b"before")

                r.kill()
                check(not r.ping(), "redis-server still answers after SIGKILL")
                _echo_both_ways(c, peer, relay, 0x4000, b"redis-dead")
                check(_allocate(u, "mid", "mid-pass") == 0,
                      "a cached Redis user could not allocate from a new 5-tuple while Redis is down")
                code = _allocate(u, "newbie", "newbie-pass")
                check(code == 500, "a never-seen Redis user while Redis is down: %s, expected 500" % code)
                # The existing allocation still takes authenticated requests (cached key).
                check(c.refresh(600)[0] == 0, "Refresh of the existing allocation failed")
                _echo_both_ways(c, peer, relay, 0x4000, b"after-refresh")

                r.start()  # same port, empty: no persistence
                add_user(r, "mid", "mid-pass")
                add_user(r, "newbie", "newbie-pass")
                code, secs = _answer_once_redis_is_back(
                    u, "newbie", "newbie-pass", "the new Redis user's Allocate once Redis is back")
                check(code == 0, "the new Redis user, Redis back: %s, expected success" % code)
                print("new Redis user allocated %.1fs after redis-server restarted" % secs)
                _echo_both_ways(c, peer, relay, 0x4000, b"redis-back")
            finally:
                c.close()
                peer.close()


def test_revoked_user_401():
    with Redis() as r:
        add_user(r, "revoked", "revoked-pass")
        add_user(r, "fine", "fine-pass")
        r.cli("SET", "turn/realm/%s/revoked/revoked" % REALM, "1")
        with _server(r.port) as u:
            check(_allocate(u, "fine", "fine-pass") == 0, "a Redis user beside the revoked one failed")
            for transport in ("udp", "tcp"):
                code = _allocate(u, "revoked", "revoked-pass", transport)
                check(code == 401, "revoked user over %s: %s, expected 401" % (transport, code))
            check("auth_fail" in u.log(), "the refusal was not logged")


if __name__ == "__main__":
    run()
