"""A NAT's UDP timeout: a client that stays idle loses the path uturnd relays its data on; a client
that keeps sending keeps it. Three TURN/UDP clients (the harness's TurnClient, each on a socket in
its own namespace) sit behind one NAT router whose conntrack forgets a UDP mapping after TIMEOUT
seconds without a packet; the peer and uturnd are on the public side.

    srv 198.51.100.1, 203.0.113.10 (uturnd :3478), 203.0.113.20 (the peer, :40000)
     |
    nat 198.51.100.2 (WAN): MASQUERADE --random-fully, home-router firewall, UDP timeout TIMEOUT
     |  198.18.1.1          |  198.18.2.1          |  198.18.3.1
    clia 198.18.1.2       clib 198.18.2.2        clic 198.18.3.2

Each client allocates, binds a channel to the peer, and gets the peer's datagram through the relay.
Then nobody relays anything for longer than TIMEOUT: clia sends nothing, clib sends a STUN Binding
indication (never answered: only outbound packets keep its mapping) and clic a TURN Refresh request
every KEEPALIVE seconds. Checked:
- clia's conntrack entry goes away after TIMEOUT (no earlier), clib's and clic's stay with the same
  public port;
- the peer sends again: clib and clic get it, clia does not, and the firewall's drop counter on the
  NAT shows uturnd's datagrams to clia's old mapping arriving there and being dropped;
- clia then sends again: the NAT gives it a new public port (--random-fully; its Binding answer and
  conntrack agree on it), and from there its allocation, bound to the old 5-tuple, answers 437
  (RFC 8656 §4). Should the NAT draw the old port again (1 in ~64k), the Refresh must succeed.

The timeout: net.netfilter.nf_conntrack_udp_timeout and nf_conntrack_udp_timeout_stream, written in
the nat namespace only. Both are per network namespace on the kernels we run (the test checks that
the host's own values do not move). Both get the same value: an entry that has seen traffic both
ways for 2 s uses the _stream one, and either kind must be forgotten after TIMEOUT.

Needs root and the conntrack tool (scripts/deps.sh test); fails (never skips) without them.
"""
import os
import sys
import time
from types import SimpleNamespace

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from lab import Lab  # noqa: E402
from uturn import (A_RELAYED, A_XOR_MAPPED, M_BINDING, TurnClient, check, get_attr,  # noqa: E402
                   message, mtype, parse, run, tid, wait_for, xor_address)

SRV, PEER, PEER_PORT, PORT = "203.0.113.10", "203.0.113.20", 40000, 3478
NAT_PUBLIC = "198.51.100.2"
USER, PASS = "nat-user", "nat-pass-42"
MIN_PORT, MAX_PORT = 45000, 45999
CHANNEL = 0x4000
TIMEOUT = 10  # seconds: the NAT's UDP timeout
KEEPALIVE = 2  # seconds between clib's and clic's keepalives, well under TIMEOUT
SYSCTLS = ("net.netfilter.nf_conntrack_udp_timeout",
           "net.netfilter.nf_conntrack_udp_timeout_stream")


def host_sysctls():
    """The UDP timeouts of the test's own (the host's) namespace; None where conntrack is absent."""
    vals = []
    for key in SYSCTLS:
        try:
            with open("/proc/sys/" + key.replace(".", "/")) as f:
                vals.append(int(f.read()))
        except FileNotFoundError:
            vals.append(None)
    return vals


class Client(TurnClient):
    """The harness's TurnClient, on a UDP socket made in a client namespace and bound to its LAN
    address (the harness binds to the server's own address, which only works on loopback)."""

    def __init__(self, host, lan):
        self.name, self.lan = host.name, lan
        with host.netns():
            super().__init__(SimpleNamespace(host=lan, port=PORT), USER, PASS)
        self.server = SimpleNamespace(host=SRV, port=PORT)

    def binding(self):
        """A Binding request; returns the public address the NAT gave this socket."""
        code, attrs, raw = self.request(M_BINDING, auth=False, raw_response=True)
        check(code == 0, "%s: Binding answered %d" % (self.name, code))
        return xor_address(get_attr(attrs, A_XOR_MAPPED), parse(raw)[1])

    def keepalive_indication(self):
        """A Binding indication (RFC 8489 §3): no answer, it only goes out through the NAT."""
        self.send_raw(message(mtype(M_BINDING, 1), tid(), fingerprint=True))


def conntrack(nat):
    """The NAT's UDP conntrack entries: {orig source address: (timeout left, orig source port,
    reply destination (public) port)}, for flows to uturnd's port."""
    p = nat.run(["conntrack", "-L", "-p", "udp"], timeout=10)
    found = {}
    for line in p.stdout.splitlines():
        f = line.split()
        if len(f) < 3 or f[0] != "udp":
            continue
        kv = {}
        for x in f[3:]:
            if "=" in x:
                k, v = x.split("=", 1)
                kv.setdefault(k, []).append(v)
        if len(kv.get("src", [])) < 2 or kv["dst"][0] != SRV or kv["dport"][0] != str(PORT):
            continue
        check(kv["src"][0] not in found, "two entries for %s:\n%s" % (kv["src"][0], p.stdout))
        found[kv["src"][0]] = (int(f[2]), int(kv["sport"][0]), int(kv["dport"][1]))
    return found


def firewall_drops(nat):
    """Packets the NAT's INPUT rule dropped as NEW from the WAN (no conntrack entry matched)."""
    out = nat.run(["iptables", "-L", "INPUT", "-v", "-n", "-x"]).stdout
    counts = [int(line.split()[0]) for line in out.splitlines()
              if " DROP " in line and "NEW" in line]
    check(len(counts) == 1, "no single INPUT drop rule:\n" + out)
    return counts[0]


def build(lab):
    srv, nat = lab.host("srv"), lab.host("nat")
    srv_if, nat_wan = lab.link(srv, "198.51.100.1/24", nat, NAT_PUBLIC + "/24")
    srv.add_addr(srv_if, SRV + "/24")
    srv.add_addr(srv_if, PEER + "/24")
    nat.route("203.0.113.0/24", "198.51.100.1")
    clients = []
    for i, name in ((1, "a"), (2, "b"), (3, "c")):
        cli = lab.host("cli" + name)
        lab.link(nat, "198.18.%d.1/24" % i, cli, "198.18.%d.2/24" % i)
        cli.route("default", "198.18.%d.1" % i)
        clients.append((cli, "198.18.%d.2" % i))
    lab.nat(nat, nat_wan, Lab.NAT_SYMMETRIC)
    # A home router's firewall: nothing new comes in from the WAN. A datagram to a forgotten
    # mapping is NEW and addressed to the router itself: INPUT drops it, and counts it.
    for chain in ("INPUT", "FORWARD"):
        nat.run(["iptables", "-A", chain, "-i", nat_wan, "-m", "conntrack", "--ctstate", "NEW",
                 "-j", "DROP"])
    for key in SYSCTLS:
        nat.sysctl(key, TIMEOUT)
        got = nat.run(["sysctl", "-n", key]).stdout.strip()
        check(got == str(TIMEOUT), "nat: %s is %s, want %d" % (key, got, TIMEOUT))
    u = srv.uturnd(["listening-ip = " + SRV, "listening-port = %d" % PORT,
                    "user = %s:%s" % (USER, PASS), "realm = uturn.test",
                    "min-port = %d" % MIN_PORT, "max-port = %d" % MAX_PORT, "relay-threads = 2",
                    # TEST-NET-3 is not globally reachable: the default policy refuses the peer.
                    "allowed-peer-ip = " + PEER])
    return srv, nat, clients, u


def relay_to(peer, clients, tag, want):
    """The peer sends one datagram to each client's relayed address (again each second while
    missing, 3 times at most); every client in `want` must get its own within 5 s. Returns the
    number of datagrams sent to each client."""
    payload = {c.name: b"%s for %s" % (tag, c.name.encode()) for c in clients}
    sent = {c.name: 0 for c in clients}
    got = set()
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and got != {c.name for c in want}:
        for c in clients:
            if c.name not in got and sent[c.name] < 3:
                peer.sendto(payload[c.name], c.relayed)
                sent[c.name] += 1
        resend = time.monotonic() + 1
        for c in want:
            while c.name not in got and time.monotonic() < resend:
                r = c.receive_data(max(0.01, resend - time.monotonic()))
                if r is not None:
                    check(r == ("channel", CHANNEL, payload[c.name]),
                          "%s received %r, want %r" % (c.name, r, payload[c.name]))
                    got.add(c.name)
    for c in want:
        check(c.name in got, "%s: the peer's %r did not arrive through the relay (sent %d times)"
              % (c.name, tag, sent[c.name]))
    return sent


def test_udp_timeout_idle_client_loses_path_keepalive_keeps_it():
    host_before = host_sysctls()
    with Lab() as lab:
        srv, nat, hosts, u = build(lab)
        clients, peer = [], None
        try:
            peer = srv.udp_socket(PEER, PEER_PORT)
            for host, lan in hosts:
                c = Client(host, lan)
                clients.append(c)
                code, attrs, raw = c.allocate(raw_response=True)
                check(code == 0, "%s: Allocate answered %d" % (c.name, code))
                _, txid, _ = parse(raw)
                c.relayed = xor_address(get_attr(attrs, A_RELAYED), txid)
                c.mapped = xor_address(get_attr(attrs, A_XOR_MAPPED), txid)
                check(c.relayed[0] == SRV and MIN_PORT <= c.relayed[1] <= MAX_PORT,
                      "%s: relayed address %r" % (c.name, c.relayed))
                check(c.mapped[0] == NAT_PUBLIC, "%s: mapped address %r is not the NAT's"
                      % (c.name, c.mapped))
                code, _ = c.channel_bind(CHANNEL, PEER, PEER_PORT)
                check(code == 0, "%s: ChannelBind answered %d" % (c.name, code))
            a, b, cc = clients
            relay_to(peer, clients, b"before", want=clients)
            idle_from = time.monotonic()
            # One mapping per client, the one uturnd saw, and the NAT's low timeout is in force.
            ct = conntrack(nat)
            for c in clients:
                check(c.lan in ct, "%s: no conntrack entry: %r" % (c.name, ct))
                left, sport, public = ct[c.lan]
                check(public == c.mapped[1] and sport == c.sock.getsockname()[1],
                      "%s: conntrack %r, mapped %r" % (c.name, ct[c.lan], c.mapped))
                check(left <= TIMEOUT, "%s: conntrack entry has %ds left, the timeout is %ds"
                      % (c.name, left, TIMEOUT))
            print("mappings: %s; timeout %ds" % (
                ", ".join("%s %s:%d" % (c.name, c.lan, ct[c.lan][1]) + " -> %d" % ct[c.lan][2]
                          for c in clients), TIMEOUT), flush=True)

            # Idle. clia sends nothing; clib and clic keep their mappings up by sending. Waits until
            # clia's entry is gone (a deadline past the timeout), polling twice a second.
            refreshes = indications = 0
            next_keepalive = time.monotonic()
            deadline = idle_from + TIMEOUT + 10
            while True:
                now = time.monotonic()
                if now >= next_keepalive:
                    b.keepalive_indication()
                    indications += 1
                    code, _ = cc.refresh()
                    check(code == 0, "clic: Refresh answered %d" % code)
                    refreshes += 1
                    next_keepalive = now + KEEPALIVE
                ct = conntrack(nat)
                if a.lan not in ct:
                    break
                check(now < deadline, "clia's conntrack entry still there %.1fs after its last "
                      "packet (timeout %ds): %r" % (now - idle_from, TIMEOUT, ct[a.lan]))
                time.sleep(0.5)
            idle = time.monotonic() - idle_from
            print("clia's mapping forgotten after %.1fs idle; clib sent %d Binding indications, "
                  "clic %d Refresh requests" % (idle, indications, refreshes), flush=True)
            # Gone because of the timeout, not before it (an entry's clock starts at its last
            # packet, a moment before idle_from; a second of slack for the jiffies).
            check(idle >= TIMEOUT - 1, "clia's entry went after only %.1fs" % idle)
            for c in (b, cc):
                check(c.lan in ct and ct[c.lan][2] == c.mapped[1],
                      "%s: its mapping to public port %d did not survive: %r"
                      % (c.name, c.mapped[1], ct.get(c.lan)))

            # The peer sends again, after the same idle period for all three. clib and clic get
            # it; uturnd sends clia's to the old mapping, where the NAT drops it.
            dropped = firewall_drops(nat)
            quiet = time.monotonic() - idle_from
            sent = relay_to(peer, clients, b"after", want=[b, cc])
            wait_for(lambda: firewall_drops(nat) > dropped, 5,
                     "uturnd's datagram to clia's old mapping at the NAT")
            r = a.receive_data(2)
            check(r is None, "clia received %r through a forgotten mapping" % (r,))
            drops = firewall_drops(nat) - dropped
            check(drops <= sent["clia"], "%d drops for %d datagrams" % (drops, sent["clia"]))
            print("after %.1fs without relayed data: clib and clic got the peer's datagram; clia "
                  "got none, the NAT dropped %d of %d" % (quiet, drops, sent["clia"]), flush=True)

            # clia speaks again: a new mapping, a new public port, and its allocation belongs to the
            # old 5-tuple.
            mapped = a.binding()
            ct = conntrack(nat)
            check(mapped[0] == NAT_PUBLIC and a.lan in ct and ct[a.lan][2] == mapped[1],
                  "clia: new mapping %r, conntrack %r" % (mapped, ct.get(a.lan)))
            code, _ = a.refresh()
            if mapped[1] == a.mapped[1]:
                # --random-fully drew the old port again (1 in ~64k): the old 5-tuple is back.
                check(code == 0, "clia: same public port, Refresh answered %d" % code)
                print("clia: the NAT drew the same port again; Refresh succeeded", flush=True)
            else:
                check(code == 437, "clia from its new port %d: Refresh answered %d, want 437"
                      % (mapped[1], code))
                print("clia: new public port %d (was %d), Refresh answered 437"
                      % (mapped[1], a.mapped[1]), flush=True)
        finally:
            for c in clients:
                c.close()
            if peer is not None:
                peer.close()
        check(u.alive(), "uturnd died:\n" + u.log()[-3000:])
        u.stop_clean()
    check(host_sysctls() == host_before, "the host's UDP timeouts moved: %r, were %r"
          % (host_sysctls(), host_before))


if __name__ == "__main__":
    run()
