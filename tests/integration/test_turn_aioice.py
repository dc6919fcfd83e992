"""ICE through uturnd with a real third-party ICE agent: two aioice agents (the ICE stack under
aiortc) restricted to relay candidates gather through uturnd over TURN/UDP and over TURN/TCP,
exchange candidates in-process, run connectivity checks relay to relay, nominate a pair and
exchange datagrams both ways. Every local candidate must be uturnd's relayed address, and the
selected pair on both sides must be relay <-> relay: with only relay candidates every check and
every datagram went through uturnd's relays (ChannelBind + ChannelData, which is what aioice uses).
"""
import asyncio

import aioice
import aioice.ice

from uturn import Uturnd, check, run

USER, PASS = "ice-user", "ice-pass-42"
MIN_PORT, MAX_PORT = 44000, 44999
TIMEOUT = 20  # seconds for each asyncio step (gathering, connecting, one round of data)

# aioice binds a host socket on every non-loopback interface address even under
# TransportPolicy.RELAY (it only leaves those out of the advertised candidates) and pairs them with
# the remote candidates. Tests stay on loopback: no host addresses, so the TURN relay is the only
# socket each agent has and the only path between them.
aioice.ice.get_host_addresses = lambda use_ipv4, use_ipv6: []


def _server():
    conf = ["user = %s:%s" % (USER, PASS), "realm = uturn.test", "allow-loopback-peers",
            "min-port = %d" % MIN_PORT, "max-port = %d" % MAX_PORT]
    return Uturnd(conf=conf)


def _agent(u, controlling, transport):
    return aioice.Connection(ice_controlling=controlling, components=1,
                             turn_server=(u.host, u.port), turn_username=USER,
                             turn_password=PASS, turn_transport=transport, use_ipv4=True,
                             use_ipv6=False, transport_policy=aioice.TransportPolicy.RELAY)


def _check_candidates(name, conn):
    cands = conn.local_candidates
    check(len(cands) >= 1, "%s gathered no candidate" % name)
    for c in cands:
        check(c.type == "relay", "%s: non-relay local candidate %r" % (name, c))
        check(c.host == "127.0.0.1" and MIN_PORT <= c.port <= MAX_PORT,
              "%s: relay candidate %s:%d is not uturnd's relay range 127.0.0.1:%d-%d"
              % (name, c.host, c.port, MIN_PORT, MAX_PORT))
    return cands


def _selected_pair(conn):
    # aioice 0.8.0 has no public accessor for the selected pair; Connection._nominated maps a
    # component to its nominated CandidatePair (what sendto() itself uses to pick the socket).
    return conn._nominated.get(1)


async def _ice(u, transport):
    a = _agent(u, True, transport)
    b = _agent(u, False, transport)
    try:
        await asyncio.wait_for(asyncio.gather(a.gather_candidates(), b.gather_candidates()),
                               TIMEOUT)
        ca = _check_candidates("controlling agent", a)
        cb = _check_candidates("controlled agent", b)
        check({(c.host, c.port) for c in ca}.isdisjoint({(c.host, c.port) for c in cb}),
              "both agents got the same relayed address: %r %r" % (ca, cb))

        # Signalling, in-process: credentials, candidates, end-of-candidates.
        for local, remote, rcands in ((a, b, cb), (b, a, ca)):
            local.remote_username = remote.local_username
            local.remote_password = remote.local_password
            for c in rcands:
                await local.add_remote_candidate(c)
            await local.add_remote_candidate(None)

        await asyncio.wait_for(asyncio.gather(a.connect(), b.connect()), TIMEOUT)

        for name, conn, mine, theirs in (("controlling", a, ca, cb), ("controlled", b, cb, ca)):
            pair = _selected_pair(conn)
            check(pair is not None, "%s agent: no selected pair after connect()" % name)
            check(pair.local_candidate.type == "relay" and pair.remote_candidate.type == "relay",
                  "%s agent: selected pair %r is not relay <-> relay (%s -> %s)"
                  % (name, pair, pair.local_candidate.type, pair.remote_candidate.type))
            check(pair.local_addr in {(c.host, c.port) for c in mine},
                  "%s agent: selected local %r is not one of its relayed candidates" % (name, pair))
            check(pair.remote_addr in {(c.host, c.port) for c in theirs},
                  "%s agent: selected remote %r is not the peer's relayed candidate" % (name, pair))
            print("TURN/%s %s agent: selected %s" % (transport.upper(), name, pair))

        # Datagrams both ways, several of each, various sizes, checked byte for byte.
        for n in range(10):
            ab = b"a->b %d " % n + bytes(range(256)) * (n + 1)
            ba = b"b->a %d " % n + bytes(range(255, -1, -1)) * (2 * n + 1)
            await a.send(ab)
            got = await asyncio.wait_for(b.recv(), TIMEOUT)
            check(got == ab, "controlled agent received %r... (%d bytes), expected %d bytes"
                  % (got[:16], len(got), len(ab)))
            await b.send(ba)
            got = await asyncio.wait_for(a.recv(), TIMEOUT)
            check(got == ba, "controlling agent received %r... (%d bytes), expected %d bytes"
                  % (got[:16], len(got), len(ba)))
        # A burst in each direction before reading: the relay keeps order and loses nothing on
        # loopback.
        burst = [b"burst %d " % n + b"x" * (100 + n) for n in range(20)]
        for m in burst:
            await a.send(m)
            await b.send(m[::-1])
        got_b = [await asyncio.wait_for(b.recv(), TIMEOUT) for _ in burst]
        got_a = [await asyncio.wait_for(a.recv(), TIMEOUT) for _ in burst]
        check(sorted(got_b) == sorted(burst), "controlled agent's burst differs")
        check(sorted(got_a) == sorted(m[::-1] for m in burst), "controlling agent's burst differs")
    finally:
        await asyncio.wait_for(asyncio.gather(a.close(), b.close()), TIMEOUT)


def _run(transport):
    with _server() as u:
        asyncio.run(asyncio.wait_for(_ice(u, transport), 90))
        check(u.alive(), "uturnd died:\n" + u.log()[-3000:])


def test_ice_relay_over_turn_udp():
    _run("udp")


def test_ice_relay_over_turn_tcp():
    _run("tcp")


if __name__ == "__main__":
    run()
