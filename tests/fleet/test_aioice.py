"""aioice (Debian's python3-aioice, the ICE stack under aiortc) through the fleet (issue 13's Proof,
tests/fleet/lab.py): two agents in the clients' namespace, restricted to relay candidates, one
gathering through node b and one through node c, over TURN/UDP. Asserted: each agent's candidates
are relayed addresses of its node only; ICE connects relay <-> relay (the nominated pair on both
sides joins b's relay to c's); datagrams cross both ways, byte for byte. So a real third-party
ICE agent allocates on a fleet node found by Sentinel and relays from one node to another.
"""
import asyncio
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from lab import run_fleet, skip  # noqa: E402
from uturn import check  # noqa: E402

try:
    import aioice
    import aioice.ice
except ImportError:
    aioice = None

F = None
TIMEOUT = 20


def _agent(node, controlling, user):
    return aioice.Connection(ice_controlling=controlling, components=1,
                             turn_server=(node.host, node.port), turn_username=user,
                             turn_password=user + "-pass", turn_transport="udp", use_ipv4=True,
                             use_ipv6=False, transport_policy=aioice.TransportPolicy.RELAY)


async def _ice():
    b, c = F.nodes["b"], F.nodes["c"]
    x = _agent(b, True, "ice-x")
    y = _agent(c, False, "ice-y")
    try:
        await asyncio.wait_for(asyncio.gather(x.gather_candidates(), y.gather_candidates()),
                               TIMEOUT)
        for name, conn, node in (("agent on b", x, b), ("agent on c", y, c)):
            check(conn.local_candidates, "%s gathered nothing" % name)
            for cand in conn.local_candidates:
                check(cand.type == "relay" and cand.host == node.host,
                      "%s: candidate %r is not node %s's relay" % (name, cand, node.id))
            print("%s: %s" % (name, ", ".join("%s %s:%d" % (k.type, k.host, k.port)
                                              for k in conn.local_candidates)), flush=True)
        for local, remote in ((x, y), (y, x)):
            local.remote_username = remote.local_username
            local.remote_password = remote.local_password
            for cand in remote.local_candidates:
                await local.add_remote_candidate(cand)
            await local.add_remote_candidate(None)
        await asyncio.wait_for(asyncio.gather(x.connect(), y.connect()), TIMEOUT)
        for name, conn, mine, theirs in (("agent on b", x, b, c), ("agent on c", y, c, b)):
            # aioice 0.8 keeps the nominated pair in Connection._nominated (what sendto uses).
            pair = conn._nominated.get(1)
            check(pair is not None, "%s: no nominated pair" % name)
            check(pair.local_candidate.type == "relay" and pair.remote_candidate.type == "relay"
                  and pair.local_addr[0] == mine.host and pair.remote_addr[0] == theirs.host,
                  "%s: pair %r is not %s's relay <-> %s's relay" % (name, pair, mine.id, theirs.id))
            print("%s: nominated %s" % (name, pair), flush=True)
        for n in range(10):
            xy = b"x->y %d " % n + bytes(range(256)) * (n + 1)
            yx = b"y->x %d " % n + bytes(range(255, -1, -1)) * (2 * n + 1)
            await x.send(xy)
            got = await asyncio.wait_for(y.recv(), TIMEOUT)
            check(got == xy, "y received %d bytes, want %d" % (len(got), len(xy)))
            await y.send(yx)
            got = await asyncio.wait_for(x.recv(), TIMEOUT)
            check(got == yx, "x received %d bytes, want %d" % (len(got), len(yx)))
        print("10 datagrams each way through b's and c's relays, byte for byte", flush=True)
    finally:
        await asyncio.wait_for(asyncio.gather(x.close(), y.close()), TIMEOUT)


def test_aioice_relay_through_fleet():
    for u in ("ice-x", "ice-y"):
        F.add_user(u, u + "-pass")
    # Every socket aioice makes (the TURN clients' too) is made by this thread, in the clients'
    # namespace.
    with F.client_ns():
        asyncio.run(asyncio.wait_for(_ice(), 90))


def main():
    if aioice is None:
        skip("python3-aioice is not installed (scripts/deps.sh test)")
    # aioice binds a host socket on every interface address even under TransportPolicy.RELAY and
    # pairs them with the remote candidates: with none, the relays are the only path.
    aioice.ice.get_host_addresses = lambda use_ipv4, use_ipv6: []

    def bind(f):
        global F
        F = f
    run_fleet(bind)


if __name__ == "__main__":
    main()
