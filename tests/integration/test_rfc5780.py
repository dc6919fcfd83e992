"""RFC 5780 NAT behaviour discovery on loopback: uturnd listens on 127.0.0.1 and 127.0.0.2 (A1, A2),
ports P and P+1 (P1, P2), with rfc5780 on.

Our own client checks every rule of RFC 5780 §6.1: MAPPED-ADDRESS and XOR-MAPPED-ADDRESS,
OTHER-ADDRESS = Ca:Cp, RESPONSE-ORIGIN = the real source of the datagram, each CHANGE-REQUEST
combination from each of the four addresses, RESPONSE-PORT delivery to another socket (and no port
below 1024), PADDING echoed (capped), PADDING with RESPONSE-PORT refused with 400, the amplification
limit on redirected answers, TCP answered on its connection, the startup checks, and with rfc5780 off
(the default) 420 for CHANGE-REQUEST and no OTHER-ADDRESS. Then coturn's turnutils_natdiscovery runs
its mapping, filtering and lifetime tests against us: on loopback there is no NAT.
"""
import re
import socket
import struct
import subprocess
import time

from uturn import (UTURND, TestFailure, Uturnd, attr, check, fingerprint_ok, free_ports, get_attr,
                   message, parse, run, tid, udp_transact_from, xor_address)

A1, A2 = "127.0.0.1", "127.0.0.2"
A_MAPPED, A_CHANGE, A_ERROR, A_UNKNOWN, A_XOR_MAPPED = 0x0001, 0x0003, 0x0009, 0x000A, 0x0020
A_PADDING, A_RESPONSE_PORT, A_ORIGIN, A_OTHER = 0x0026, 0x0027, 0x802B, 0x802C
CHANGE_IP, CHANGE_PORT = 0x4, 0x2


def server(conf=(), threads=2):
    p = free_ports((A1, A2), 2)  # the port and the alternate port (port + 1)
    return Uturnd(conf=["listening-ip = %s" % A2, "rfc5780"] + list(conf), port=p, threads=threads)


def plain_addr(value):
    """MAPPED-ADDRESS / RESPONSE-ORIGIN / OTHER-ADDRESS (IPv4) as (ip, port)."""
    check(value is not None and len(value) == 8 and value[1] == 1, "bad address attribute %r" % value)
    return socket.inet_ntoa(value[4:8]), struct.unpack("!H", value[2:4])[0]


def client(ip=A1):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((ip, 0))
    return s


def request(extra=b"", fingerprint=False):
    t = tid()
    return t, message(0x0001, t, extra, fingerprint)


def nothing_arrives(sock, seconds):
    sock.settimeout(seconds)
    try:
        data, src = sock.recvfrom(65536)
    except socket.timeout:
        return True
    raise TestFailure("unexpected datagram from %r: %r" % (src, data[:40]))


def error_of(attrs):
    v = get_attr(attrs, A_ERROR)
    return None if v is None else v[2] * 100 + v[3]


def test_other_address_and_response_origin():
    with server() as u:
        P1, P2 = u.port, u.port + 1
        s = client()
        for da, dp in ((A1, P1), (A2, P1), (A1, P2), (A2, P2)):
            ca, cp = (A2 if da == A1 else A1), (P2 if dp == P1 else P1)
            txid, req = request(fingerprint=True)
            resp, src = udp_transact_from(s, (da, dp), req, txid)
            mtype, _, attrs = parse(resp)
            check(mtype == 0x0101, "type 0x%04x from %s:%d" % (mtype, da, dp))
            me = s.getsockname()
            check(xor_address(get_attr(attrs, A_XOR_MAPPED), txid) == me, "XOR-MAPPED-ADDRESS wrong")
            check(plain_addr(get_attr(attrs, A_MAPPED)) == me,
                  "MAPPED-ADDRESS %r != %r" % (plain_addr(get_attr(attrs, A_MAPPED)), me))
            origin = plain_addr(get_attr(attrs, A_ORIGIN))
            check(origin == (da, dp) == src,
                  "RESPONSE-ORIGIN %r, datagram from %r, sent to %r" % (origin, src, (da, dp)))
            other = plain_addr(get_attr(attrs, A_OTHER))
            check(other == (ca, cp), "OTHER-ADDRESS %r for %s:%d, want %r" % (other, da, dp, (ca, cp)))
            check(fingerprint_ok(resp), "FINGERPRINT does not verify")
            check(get_attr(attrs, A_PADDING) is None, "PADDING without a request for it")


def test_change_request_every_combination():
    with server(threads=3) as u:
        P1, P2 = u.port, u.port + 1
        s = client()
        for da, dp in ((A1, P1), (A2, P1), (A1, P2), (A2, P2)):
            ca, cp = (A2 if da == A1 else A1), (P2 if dp == P1 else P1)
            # RFC 5780 §6.1 Table 1.
            for flags, want in ((0, (da, dp)), (CHANGE_PORT, (da, cp)), (CHANGE_IP, (ca, dp)),
                                (CHANGE_IP | CHANGE_PORT, (ca, cp))):
                txid, req = request(attr(A_CHANGE, struct.pack("!I", flags)))
                resp, src = udp_transact_from(s, (da, dp), req, txid)
                mtype, _, attrs = parse(resp)
                check(mtype == 0x0101, "type 0x%04x, flags %d" % (mtype, flags))
                origin = plain_addr(get_attr(attrs, A_ORIGIN))
                check(src == origin == want, "to %s:%d flags %d: datagram from %r, RESPONSE-ORIGIN %r,"
                      " want %r" % (da, dp, flags, src, origin, want))
                check(plain_addr(get_attr(attrs, A_OTHER)) == (ca, cp),
                      "OTHER-ADDRESS depends on the flags")
        # Malformed CHANGE-REQUEST (2 bytes): 400.
        txid, req = request(attr(A_CHANGE, b"\0\x06"))
        resp, _ = udp_transact_from(s, (A1, P1), req, txid)
        check(error_of(parse(resp)[2]) == 400, "short CHANGE-REQUEST not refused with 400")


def test_response_port():
    with server() as u:
        s, other = client(), client()
        oport = other.getsockname()[1]
        txid, req = request(attr(A_RESPONSE_PORT, struct.pack("!HH", oport, 0)))
        s.sendto(req, (A1, u.port))
        other.settimeout(3)
        resp, src = other.recvfrom(65536)
        mtype, rtid, attrs = parse(resp)
        check(mtype == 0x0101 and rtid == txid, "answer on the RESPONSE-PORT socket: 0x%04x" % mtype)
        check(src == (A1, u.port) == plain_addr(get_attr(attrs, A_ORIGIN)), "source %r" % (src,))
        check(xor_address(get_attr(attrs, A_XOR_MAPPED), txid) == s.getsockname(),
              "mapped address is not the requester's")
        nothing_arrives(s, 0.3)
        # With CHANGE-REQUEST too: from Ca:Cp, to the other port.
        txid, req = request(attr(A_RESPONSE_PORT, struct.pack("!HH", oport, 0)) +
                            attr(A_CHANGE, struct.pack("!I", CHANGE_IP | CHANGE_PORT)))
        s.sendto(req, (A1, u.port))
        resp, src = other.recvfrom(65536)
        check(parse(resp)[1] == txid and src == (A2, u.port + 1), "changed source %r" % (src,))
        # A port below 1024 is refused (reflection towards well-known services), to the requester.
        for bad in (0, 53, 1023):
            txid, req = request(attr(A_RESPONSE_PORT, struct.pack("!HH", bad, 0)))
            resp, _ = udp_transact_from(s, (A1, u.port), req, txid)
            check(error_of(parse(resp)[2]) == 400, "RESPONSE-PORT %d not refused" % bad)


def test_padding():
    with server() as u:
        s = client()
        # natdiscovery -P pads with 1500 bytes: the answer is capped at 1200.
        for asked, want in ((1500, 1200), (100, 100), (101, 104), (0, 0)):
            txid, req = request(attr(A_PADDING, b"\xaa" * asked), fingerprint=True)
            resp, _ = udp_transact_from(s, (A1, u.port), req, txid)
            mtype, _, attrs = parse(resp)
            check(mtype == 0x0101, "type 0x%04x for PADDING %d" % (mtype, asked))
            pad = get_attr(attrs, A_PADDING)
            check(pad is not None and len(pad) == want, "PADDING %s bytes for %d, want %d"
                  % (None if pad is None else len(pad), asked, want))
            check(pad == b"\0" * want, "PADDING content leaks bytes: %r" % pad[:16])
            check(fingerprint_ok(resp), "FINGERPRINT after PADDING does not verify")
            check(get_attr(attrs, A_OTHER) is not None, "no OTHER-ADDRESS with PADDING")


def test_padding_with_response_port_400():
    with server() as u:
        s, other = client(), client()
        extra = attr(A_PADDING, b"x" * 64) + attr(A_RESPONSE_PORT, struct.pack("!HH",
                                                                             other.getsockname()[1], 0))
        txid, req = request(extra)
        resp, src = udp_transact_from(s, (A1, u.port), req, txid)
        mtype, _, attrs = parse(resp)
        check(mtype == 0x0111 and error_of(attrs) == 400, "type 0x%04x error %r, want 400"
              % (mtype, error_of(attrs)))
        check(src == (A1, u.port), "error answered from %r" % (src,))
        nothing_arrives(other, 0.3)


def test_amplification_limit():
    """An answer sent to another port (RESPONSE-PORT) is metered whole against the source IP's budget
    of answer bytes: a burst of 2048 bytes, then 512 a second. A padded answer stays within 4x its
    request (it echoes the request's own padding), which the request pays for itself: not metered.
    Plain Binding answers are not limited."""
    with server() as u:
        s = client()
        # Padding of 1500 (natdiscovery -P) is answered with 1200: smaller than the request.
        for _ in range(40):
            txid, req = request(attr(A_PADDING, b"p" * 1500))
            resp, _ = udp_transact_from(s, (A1, u.port), req, txid)
            check(len(resp) < len(req), "padded answer %d >= request %d" % (len(resp), len(req)))
    for kind in ("RESPONSE-PORT", "PADDING"):
        with server() as u:  # a fresh server: a full bucket
            s, other = client(), client()
            if kind == "RESPONSE-PORT":
                extra, sink = attr(A_RESPONSE_PORT, struct.pack("!HH", other.getsockname()[1], 0)), other
            else:
                extra, sink = attr(A_PADDING, b"p" * 4), s
            start = time.monotonic()
            req_len = 0
            for _ in range(80):
                req = request(extra)[1]
                req_len = len(req)
                s.sendto(req, (A1, u.port))
            elapsed = time.monotonic() - start
            got = ans_len = 0
            sink.settimeout(0.5)
            try:
                while True:
                    ans_len = len(sink.recvfrom(65536)[0])
                    got += 1
            except socket.timeout:
                pass
            if kind == "PADDING":
                check(got == 80 and ans_len <= 4 * req_len,
                      "PADDING: %d of 80 answers of %d bytes to %d" % (got, ans_len, req_len))
            else:
                low, high = 2048 // ans_len, (2048 + 512 * (elapsed + 1.5)) / ans_len + 1
                check(low <= got <= high, "%s: %d of 80 answers of %d bytes went out in %.2fs; want "
                      "%d..%d" % (kind, got, ans_len, elapsed, low, high))
            txid, req = request()
            resp, _ = udp_transact_from(s, (A1, u.port), req, txid)
            check(parse(resp)[0] == 0x0101, "plain Binding limited too")


def test_tcp_answers_on_the_connection():
    with server() as u:
        for da, dp in ((A1, u.port), (A2, u.port + 1)):
            ca, cp = (A2 if da == A1 else A1), (u.port + 1 if dp == u.port else u.port)
            c = socket.create_connection((da, dp), timeout=5)
            txid, req = request(attr(A_CHANGE, struct.pack("!I", CHANGE_IP | CHANGE_PORT)))
            c.sendall(req)
            c.settimeout(3)
            buf = b""
            while len(buf) < 20 or len(buf) < 20 + struct.unpack("!H", buf[2:4])[0]:
                chunk = c.recv(4096)
                check(chunk, "connection closed")
                buf += chunk
            mtype, rtid, attrs = parse(buf)
            check(mtype == 0x0101 and rtid == txid, "TCP answer 0x%04x" % mtype)
            check(plain_addr(get_attr(attrs, A_ORIGIN)) == (da, dp), "TCP RESPONSE-ORIGIN %r"
                  % (plain_addr(get_attr(attrs, A_ORIGIN)),))
            check(plain_addr(get_attr(attrs, A_OTHER)) == (ca, cp), "TCP OTHER-ADDRESS")
            check(plain_addr(get_attr(attrs, A_MAPPED)) == c.getsockname(), "TCP MAPPED-ADDRESS")
            c.close()


def test_off_by_default_420():
    with Uturnd() as u:
        s = client()
        txid, req = request()
        resp, _ = udp_transact_from(s, (A1, u.port), req, txid)
        _, _, attrs = parse(resp)
        check(get_attr(attrs, A_OTHER) is None and get_attr(attrs, A_ORIGIN) is None,
              "OTHER-ADDRESS/RESPONSE-ORIGIN sent with rfc5780 off")
        check(get_attr(attrs, A_MAPPED) is None, "MAPPED-ADDRESS sent with rfc5780 off")
        for t, v in ((A_CHANGE, struct.pack("!I", CHANGE_IP | CHANGE_PORT)),
                     (A_CHANGE, struct.pack("!I", 0)),
                     (A_RESPONSE_PORT, struct.pack("!HH", 40000, 0)),
                     (A_PADDING, b"x" * 64)):
            txid, req = request(attr(t, v), fingerprint=True)
            resp, src = udp_transact_from(s, (A1, u.port), req, txid)
            mtype, _, attrs = parse(resp)
            check(mtype == 0x0111 and error_of(attrs) == 420,
                  "attribute 0x%04x: type 0x%04x error %r, want 420" % (t, mtype, error_of(attrs)))
            check(get_attr(attrs, A_UNKNOWN) == struct.pack("!H", t),
                  "UNKNOWN-ATTRIBUTES %r, want 0x%04x" % (get_attr(attrs, A_UNKNOWN), t))
            check(get_attr(attrs, A_OTHER) is None, "OTHER-ADDRESS in a 420")
            check(src == (A1, u.port) and fingerprint_ok(resp), "420 source or FINGERPRINT wrong")


def test_startup_checks():
    def run_check(args):
        p = subprocess.run([UTURND, "--check-config"] + args, capture_output=True, text=True,
                           timeout=20)
        return p.returncode, p.stdout + p.stderr
    cases = [
        (["--listening-ip", A1, "--rfc5780"], "rfc5780 needs two listening-ip of one family"),
        (["--listening-ip", A1, "--listening-ip", "::1", "--rfc5780"],
         "rfc5780 needs two listening-ip of one family"),
        (["--listening-ip", A1, "--listening-ip", A1, "--rfc5780"],
         "rfc5780 needs two listening-ip of one family"),
        (["--rfc5780"], "rfc5780 needs two listening-ip of one family"),
        (["--listening-ip", A1, "--listening-ip", "0.0.0.0", "--rfc5780"], "is a wildcard"),
        (["--listening-ip", A1, "--listening-ip", A2, "--rfc5780", "--listening-port", "4000",
          "--alt-listening-port", "4000"], "must differ from 'listening-port'"),
        (["--listening-ip", A1, "--listening-ip", A2, "--rfc5780", "--listening-port", "65535"],
         "set 'alt-listening-port'"),
        (["--listening-ip", A1, "--listening-ip", A2, "--rfc5780", "--alt-listening-port", "5349"],
         "is the 'tls-listening-port'"),
    ]
    for args, want in cases:
        rc, out = run_check(args)
        check(rc == 1 and want in out, "%s: exit %d, output %r; want %r" % (args, rc, out, want))
    rc, out = run_check(["--listening-ip", A1, "--listening-ip", A2, "--rfc5780"])
    check(rc == 0, "valid rfc5780 config refused: %s" % out)
    # alt-listening-port set: the server listens there on both addresses.
    p = free_ports((A1, A2), 2)  # the port and the alternate port (port + 1)
    alt = p + 1
    with Uturnd(conf=["listening-ip = %s" % A2, "rfc5780", "alt-listening-port = %d" % alt],
                port=p) as u:
        check("127.0.0.2:%d" % alt in u.log(), "not listening on the alt port:\n" + u.log())
        s = client()
        txid, req = request()
        resp, src = udp_transact_from(s, (A2, alt), req, txid)
        check(plain_addr(get_attr(parse(resp)[2], A_OTHER)) == (A1, p), "OTHER-ADDRESS on alt port")


def natdiscovery(port, *flags):
    """Run natdiscovery against us on loopback. It sends each request once and never retransmits,
    so one datagram lost on a loaded machine would look like a failure: without a NAT nothing may
    time out, so a run that did is retried (at most 3 runs, each one printed)."""
    for attempt in range(3):
        p = subprocess.run(["turnutils_natdiscovery"] + list(flags) + ["-L", A1, "-p", str(port), A1],
                           capture_output=True, text=True, timeout=60)
        check(p.returncode == 0, "natdiscovery exit %d: %s %s" % (p.returncode, p.stdout, p.stderr))
        if "timeout" not in p.stdout:
            break
        print("natdiscovery %s: a request went unanswered, run %d:\n%s" % (flags, attempt + 1,
                                                                            p.stdout))
    return p.stdout


def results(out):
    """The verdict lines natdiscovery frames with ==== lines."""
    return re.findall(r"=+\n([^=\n][^\n]*)\n=+", out)


def test_turnutils_natdiscovery():
    with server() as u:
        out = natdiscovery(u.port, "-m", "-f")
        print(out)
        check(results(out) == ["No NAT! (Endpoint Independent Mapping)",
                               "NAT with Endpoint Independent Mapping!",
                               "No NAT! (Endpoint Independent Mapping)",
                               "NAT with Endpoint Independent Filtering!"],
              "natdiscovery verdicts: %r" % results(out))
        check("ALG detected" not in out and "timeout" not in out, "natdiscovery complained")
        check(len(re.findall(r"RFC 5780 response \d+", out)) == 4, "not 4 RFC 5780 responses")
        check("Other addr: : 127.0.0.2:%d" % (u.port + 1) in out, "OTHER-ADDRESS not shown")
        check("Response origin: : 127.0.0.2:%d" % (u.port + 1) in out,
              "change-IP+port answer not from A2:P2")
        # With 1500 bytes of PADDING (-P): the same verdicts.
        out = natdiscovery(u.port, "-m", "-f", "-P")
        check(results(out)[1::2] == ["NAT with Endpoint Independent Mapping!",
                                     "NAT with Endpoint Independent Filtering!"],
              "natdiscovery -P verdicts: %r" % results(out))
        # Lifetime (-t): the second request, from a new socket, asks with RESPONSE-PORT for the
        # answer on the first socket's port; natdiscovery reads it there.
        out = natdiscovery(u.port, "-t", "-T", "1")
        check(len(re.findall(r"RFC 5780 response \d+", out)) == 2 and "timeout" not in out,
              "lifetime test: RESPONSE-PORT answer not received:\n" + out)


if __name__ == "__main__":
    run()
