"""STUN Binding over UDP (RFC 8489 §7): the real turnutils_stunclient, then our own client for the
details: XOR-MAPPED-ADDRESS, FINGERPRINT echo, 420 for unknown comprehension-required attributes,
silent Binding indications, SOFTWARE only when asked, IPv6, and every worker answering."""
import re
import socket
import struct
import subprocess

from uturn import (Uturnd, attr, binding_request, check, fingerprint_ok, get_attr, message, parse,
                   run, tid, udp_transact, xor_address)


def test_turnutils_stunclient():
    with Uturnd() as u:
        out = subprocess.run(["turnutils_stunclient", "-p", str(u.port), "127.0.0.1"],
                             capture_output=True, text=True, timeout=30)
        check(out.returncode == 0, "turnutils_stunclient failed: %s %s" % (out.stdout, out.stderr))
        m = re.search(r"UDP reflexive addr: 127\.0\.0\.1:(\d+)", out.stdout)
        check(m is not None, "no reflexive address in: %r" % out.stdout)
        check(0 < int(m.group(1)) < 65536, "bad port %s" % m.group(1))


def _client(u):
    s = socket.socket(socket.AF_INET6 if ":" in u.host else socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((u.host, 0))
    return s


def test_xor_mapped_and_fingerprint():
    with Uturnd() as u:
        s = _client(u)
        for fp in (False, True):
            txid, req = binding_request(fingerprint=fp)
            resp = udp_transact(s, (u.host, u.port), req, txid)
            mtype, rtid, attrs = parse(resp)
            check(mtype == 0x0101, "type 0x%04x, want Binding success" % mtype)
            check(rtid == txid, "transaction id not echoed")
            xma = get_attr(attrs, 0x0020)
            check(xma is not None, "no XOR-MAPPED-ADDRESS")
            check(xor_address(xma, txid) == s.getsockname()[:2],
                  "mapped %r != %r" % (xor_address(xma, txid), s.getsockname()))
            has_fp = get_attr(attrs, 0x8028) is not None
            check(has_fp == fp, "FINGERPRINT present=%s, request had one=%s" % (has_fp, fp))
            if fp:
                check(fingerprint_ok(resp), "FINGERPRINT does not verify")
            check(get_attr(attrs, 0x8022) is None, "SOFTWARE sent though off by default")


def test_unknown_required_attribute_420():
    with Uturnd() as u:
        s = _client(u)
        extra = attr(0x7777, b"abcd") + attr(0x0024, struct.pack("!I", 1)) + attr(0x0025, b"")
        extra += attr(0xC001, b"optional")
        txid = tid()
        resp = udp_transact(s, (u.host, u.port), message(0x0001, txid, extra, True), txid)
        mtype, _, attrs = parse(resp)
        check(mtype == 0x0111, "type 0x%04x, want Binding error" % mtype)
        err = get_attr(attrs, 0x0009)
        check(err is not None and err[2] == 4 and err[3] == 20, "ERROR-CODE %r, want 420" % err)
        unk = get_attr(attrs, 0x000A)
        check(unk == struct.pack("!H", 0x7777), "UNKNOWN-ATTRIBUTES %r, want only 0x7777" % unk)
        check(fingerprint_ok(resp), "420 lacks a valid FINGERPRINT though the request had one")
        # ICE attributes alone (PRIORITY, USE-CANDIDATE, ICE-CONTROLLING) are understood.
        extra = attr(0x0024, struct.pack("!I", 1)) + attr(0x0025, b"") + attr(0x802A, b"\0" * 8)
        txid = tid()
        resp = udp_transact(s, (u.host, u.port), message(0x0001, txid, extra), txid)
        check(parse(resp)[0] == 0x0101, "ICE-style Binding not answered with success")


def test_indication_not_answered():
    with Uturnd() as u:
        s = _client(u)
        ind_tid = tid()
        s.sendto(message(0x0011, ind_tid), (u.host, u.port))
        # The next request's answer must be the first thing that arrives: the indication got none.
        txid, req = binding_request()
        s.sendto(req, (u.host, u.port))
        s.settimeout(3)
        first, _ = s.recvfrom(2048)
        check(first[8:20] == txid, "something answered the Binding indication")
        # Responses and unknown methods from a client are dropped or refused, never crash it.
        s.sendto(message(0x0101, tid()), (u.host, u.port))
        txid, req = binding_request()
        check(parse(udp_transact(s, (u.host, u.port), req, txid))[0] == 0x0101, "not answering")


def test_software_attribute_opt_in():
    with Uturnd(conf=["software-attribute"]) as u:
        s = _client(u)
        txid, req = binding_request()
        _, _, attrs = parse(udp_transact(s, (u.host, u.port), req, txid))
        sw = get_attr(attrs, 0x8022)
        check(sw is not None and sw.startswith(b"uturn/"), "SOFTWARE %r" % sw)


def test_ipv6():
    try:
        probe = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
        probe.bind(("::1", 0))
        probe.close()
    except OSError:
        print("no ::1 on this machine; IPv6 test not run")
        raise
    with Uturnd(host="::1") as u:
        s = _client(u)
        txid, req = binding_request(fingerprint=True)
        resp = udp_transact(s, ("::1", u.port), req, txid)
        _, _, attrs = parse(resp)
        check(xor_address(get_attr(attrs, 0x0020), txid) == s.getsockname()[:2], "IPv6 mapping wrong")


def test_many_sources_every_worker_answers():
    with Uturnd(threads=2) as u:
        socks = [_client(u) for _ in range(64)]
        for s in socks:
            txid, req = binding_request()
            _, _, attrs = parse(udp_transact(s, (u.host, u.port), req, txid))
            check(xor_address(get_attr(attrs, 0x0020), txid) == s.getsockname()[:2], "bad mapping")
        for s in socks:
            s.close()


if __name__ == "__main__":
    run()
