"""Orderly stop: SIGTERM and SIGINT close listeners and connections and exit 0; the pid file is
written at start and removed at exit; SIGHUP does not stop the server."""
import os
import signal
import socket

from uturn import Uturnd, binding_request, check, parse, read_frame, run, udp_transact, wait_for


def _serve_once(u):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    txid, req = binding_request()
    check(parse(udp_transact(s, (u.host, u.port), req, txid))[0] == 0x0101, "no answer")


def test_sigterm_with_open_connections():
    u = Uturnd(threads=2)
    conns = []
    for _ in range(10):
        c = socket.create_connection((u.host, u.port), timeout=5)
        txid, req = binding_request()
        c.sendall(req)
        check(parse(read_frame(c))[1] == txid, "no TCP answer")
        conns.append(c)
    conns[0].sendall(req[:7])  # one connection mid-frame
    rc = u.stop(signal.SIGTERM)
    check(rc == 0, "exit status %d after SIGTERM" % rc)
    check("stopped cleanly" in u.log(), "no clean-stop log line")
    u.assert_clean()
    for c in conns:
        c.settimeout(5)
        try:
            check(c.recv(100) == b"", "connection not closed at stop")
        except ConnectionResetError:
            pass


def test_sigint_and_pidfile():
    pidfile = os.path.join("/tmp", "uturnd-test-%d.pid" % os.getpid())
    u = Uturnd(conf=["pidfile = " + pidfile])
    with open(pidfile) as f:
        check(int(f.read()) == u.proc.pid, "pid file does not hold the daemon's pid")
    _serve_once(u)
    u.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: "SIGHUP" in u.log(), 5, "SIGHUP log line")
    _serve_once(u)
    rc = u.stop(signal.SIGINT)
    check(rc == 0, "exit status %d after SIGINT" % rc)
    u.assert_clean()
    check(not os.path.exists(pidfile), "pid file left behind")


if __name__ == "__main__":
    run()
