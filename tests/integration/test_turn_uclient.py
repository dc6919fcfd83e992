"""TURN relaying with coturn's real clients: turnutils_uclient through uturnd to turnutils_peer
(an echo peer), over UDP and TCP, ChannelData and Send/Data indications, with and without EVEN-PORT
pairs (uclient's RTP/RTCP mode), with a static user and with REST ephemeral credentials. Every
packet sent must come back (lost 0)."""
import signal

from uturn import Uturnd, check, run, start_peer, uclient, uclient_modes

USER, PASS = "alice", "wonderland-42"
SECRET = "rest-secret-for-tests"


def _server(extra=()):
    conf = ["user = %s:%s" % (USER, PASS), "realm = uturn.test", "allow-loopback-peers",
            "min-port = 40000", "max-port = 40999"] + list(extra)
    return Uturnd(conf=conf)


MODES = [
    ("udp channel", []),
    ("udp send-indication", ["-s"]),
    ("udp no-rtcp (no EVEN-PORT)", ["-c"]),
    ("tcp channel", ["-t"]),
    ("tcp send-indication", ["-t", "-s"]),
    ("tcp no-rtcp", ["-t", "-c"]),
]


def test_static_user_all_modes():
    peer, pport = start_peer()
    try:
        with _server() as u:
            uclient_modes(u, ["-u", USER, "-w", PASS], pport, MODES)
            log = u.log()
            check("auth_fail" not in log, "unexpected auth failures:\n" + log[-2000:])
    finally:
        peer.send_signal(signal.SIGTERM)
        peer.wait(10)


def test_rest_credentials():
    peer, pport = start_peer()
    try:
        with _server(["use-auth-secret", "static-auth-secret = old-secret",
                      "static-auth-secret = " + SECRET]) as u:
            # uclient computes the REST username (timestamp:user) and password itself from -W.
            uclient_modes(u, ["-u", "restuser", "-W", SECRET], pport, MODES[:2] + MODES[3:4])
    finally:
        peer.send_signal(signal.SIGTERM)
        peer.wait(10)


def test_wrong_password_relays_nothing():
    peer, pport = start_peer()
    try:
        with _server() as u:
            sent, recv, lost, text = uclient(u, ["-u", USER, "-w", "wrong", "-e", "127.0.0.1", "-r",
                                                 str(pport), "-n", "3"], timeout=60)
            check(recv <= 0, "relayed with a wrong password: %d received" % recv)
            check("auth_fail" in u.log(), "no auth failure logged")
    finally:
        peer.send_signal(signal.SIGTERM)
        peer.wait(10)


if __name__ == "__main__":
    run()
