"""Hostile input: a barrage of random, truncated and malformed datagrams and TCP junk leaves uturnd
answering Binding for everyone else, with bounded memory and no sanitizer report."""
import os
import random
import socket
import struct
import time

from uturn import (MAGIC, Uturnd, attr, binding_request, check, message, parse, read_frame, run,
                   tid, udp_transact)

SEED = int(os.environ.get("UTURN_TEST_SEED", "0")) or random.randrange(1, 2**31)
DATAGRAMS = int(os.environ.get("UTURN_HOSTILE_DATAGRAMS", "30000"))


def hostile_datagram(rng):
    kind = rng.randrange(8)
    if kind == 0:
        return rng.randbytes(rng.randrange(0, 1500))
    if kind == 1:  # truncated STUN header
        return message(0x0001, tid())[:rng.randrange(0, 20)]
    if kind == 2:  # length field lying
        m = bytearray(message(0x0001, tid(), attr(0x8022, b"x" * 8)))
        struct.pack_into("!H", m, 2, rng.choice([4, 8, 64, 0xfffc, 3]))
        return bytes(m)
    if kind == 3:  # attribute running past the end
        body = struct.pack("!HH", rng.randrange(65536), rng.randrange(8, 65535)) + b"\0" * 4
        return struct.pack("!HHI", 1, len(body), MAGIC) + tid() + body
    if kind == 4:  # many tiny attributes
        n = rng.randrange(1, 200)
        body = b"".join(attr(rng.randrange(0x8000, 0xffff), b"") for _ in range(n))
        return message(0x0001, tid(), body)
    if kind == 5:  # random requests of every method and class
        return message(rng.randrange(0, 0x3fff), tid(), rng.randbytes(rng.randrange(0, 16) * 4))
    if kind == 6:  # ChannelData with lying lengths
        return struct.pack("!HH", rng.randrange(0x4000, 0x8000), rng.randrange(65536)) + rng.randbytes(
            rng.randrange(0, 64))
    return bytes([rng.randrange(0, 4)]) + rng.randbytes(rng.randrange(19, 600))


def test_udp_barrage_then_binding():
    rng = random.Random(SEED)
    with Uturnd(threads=2) as u:
        rss_before = u.rss_kib()
        senders = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(16)]
        deadline = time.monotonic() + 60
        for i in range(DATAGRAMS):
            s = senders[i % len(senders)]
            try:
                s.sendto(hostile_datagram(rng), (u.host, u.port))
            except OSError:
                pass  # our own socket buffer full: the point is the server side
            if time.monotonic() > deadline:
                break
        check(u.alive(), "uturnd died during the barrage (seed %d)" % SEED)
        c = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        txid, req = binding_request(fingerprint=True)
        check(parse(udp_transact(c, (u.host, u.port), req, txid, timeout=10))[0] == 0x0101,
              "no Binding success after the barrage")
        rss_after = u.rss_kib()
        print("seed %d: %d datagrams, RSS %d -> %d KiB" % (SEED, DATAGRAMS, rss_before, rss_after))
        check(rss_after - rss_before < 16 * 1024, "RSS grew by %d KiB" % (rss_after - rss_before))


def test_tcp_junk_then_binding():
    rng = random.Random(SEED + 1)
    with Uturnd(threads=2, conf=["tcp-frame-timeout = 2"]) as u:
        junk = []
        for i in range(100):
            s = socket.create_connection((u.host, u.port), timeout=5)
            kind = i % 4
            try:
                if kind == 0:
                    s.sendall(rng.randbytes(rng.randrange(1, 4096)))
                elif kind == 1:  # a frame header promising a large body that never comes
                    s.sendall(struct.pack("!HH", 0x4000, 65535) + b"x" * 100)
                elif kind == 2:  # a STUN header with a huge length (refused at once)
                    s.sendall(struct.pack("!HHI", 1, 0xfffc, MAGIC) + tid())
                else:  # valid frames followed by junk
                    s.sendall(binding_request()[1] + rng.randbytes(64))
            except OSError:
                pass
            junk.append(s)
        good = socket.create_connection((u.host, u.port), timeout=5)
        txid, req = binding_request()
        good.sendall(req)
        mtype, rtid, _ = parse(read_frame(good))
        check(mtype == 0x0101 and rtid == txid, "no Binding success over TCP amid junk")
        # Everything junk must be closed by the server within the stall bound.
        def all_closed():
            n = 0
            for s in junk:
                s.settimeout(0)
                try:
                    while True:
                        d = s.recv(65536)
                        if not d:
                            n += 1
                            break
                except BlockingIOError:
                    pass
                except OSError:
                    n += 1
            return n == len(junk)
        deadline = time.monotonic() + 10
        while not all_closed():
            check(time.monotonic() < deadline, "junk connections still open after 10 s")
            time.sleep(0.1)
        check(u.alive(), "uturnd died")


if __name__ == "__main__":
    run()
