"""RFC 5780 behaviour discovery through real Linux NATs: coturn's turnutils_natdiscovery, in a
client namespace behind a NAT router, against the real uturnd (rfc5780 on, listening on 203.0.113.10
and 203.0.113.11, ports 3478 and 3479) in a "public" namespace. Each NAT must be reported as what it
is:

  NAT behaviour (lab.py)   mapping (RFC 4787)                  filtering
  none (routing only)      No NAT (endpoint independent)        endpoint independent
  endpoint-independent     endpoint independent (port kept)     address and port dependent
  full-cone                endpoint independent                 endpoint independent
  symmetric (random-fully) address and port dependent           address and port dependent

The filtering verdicts need our CHANGE-REQUEST answers (from 203.0.113.11:3479 and from
203.0.113.10:3479) to really leave from those addresses: a NAT lets them in or not by their source.

    srv 198.51.100.1, 203.0.113.10, 203.0.113.11
     |
    nat 198.51.100.2 (public) --- MASQUERADE --- 198.18.0.1 (LAN)
     |
    cli 198.18.0.2

Needs root; fails (never skips) without it.
"""
import os
import re
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from lab import Lab  # noqa: E402
from uturn import check, run  # noqa: E402

A1, A2, PORT = "203.0.113.10", "203.0.113.11", 3478
NAT_PUBLIC, CLIENT = "198.51.100.2", "198.18.0.2"


def build(lab, behaviour):
    srv, nat, cli = lab.host("srv"), lab.host("nat"), lab.host("cli")
    srv_if, nat_wan = lab.link(srv, "198.51.100.1/24", nat, NAT_PUBLIC + "/24")
    srv.add_addr(srv_if, A1 + "/24")
    srv.add_addr(srv_if, A2 + "/24")
    lab.link(nat, "198.18.0.1/24", cli, CLIENT + "/24")
    nat.route("203.0.113.0/24", "198.51.100.1")
    cli.route("default", "198.18.0.1")
    if behaviour == Lab.NAT_NONE:
        srv.route("198.18.0.0/15", NAT_PUBLIC)  # plain routing: the server sees the client itself
    lab.nat(nat, nat_wan, behaviour, inside=CLIENT)
    u = srv.uturnd(["listening-ip = " + A1, "listening-ip = " + A2, "listening-port = %d" % PORT,
                    "rfc5780", "relay-threads = 2", "log-level = debug"])
    return srv, nat, cli, u


def natdiscovery(cli, *flags, want=None):
    """Run natdiscovery in the client. It sends each request once, never retransmitting, so a
    datagram lost on a loaded machine looks like filtering: when the verdicts are not `want`, it
    runs again (at most 3 runs, each printed) before the caller's checks fail."""
    for attempt in range(3):
        start = time.monotonic()
        p = cli.run(["turnutils_natdiscovery"] + list(flags) + ["-L", CLIENT, "-p", str(PORT), A1],
                    timeout=90, check_rc=False)
        out = p.stdout + p.stderr
        print("---- natdiscovery %s, run %d (%.1fs)\n%s" % (" ".join(flags), attempt + 1,
                                                          time.monotonic() - start, out), flush=True)
        check(p.returncode == 0, "natdiscovery exit %d" % p.returncode)
        if want is None or verdicts(out) == want:
            break
    return out


def verdicts(out):
    """natdiscovery's result lines, framed by ==== lines."""
    return re.findall(r"=+\n([^=\n][^\n]*)\n=+", out)


def responses(out, part):
    """(response origin, reflexive address, local address) of each RFC 5780 response natdiscovery
    printed in `part` ("Mapping" or "Filtering")."""
    m = re.search(r"-= %s Behavior Discovery =-(.*?)(?=-= |\Z)" % part, out, re.S)
    check(m is not None, "no %s part in natdiscovery's output" % part)
    found = []
    for block in re.split(r"RFC 5780 response \d+", m.group(1))[1:]:
        def addr(label):
            a = re.search(label + r":(?: :)? (\d+\.\d+\.\d+\.\d+):(\d+)", block)
            check(a is not None, "no %r in %r" % (label, block))
            return a.group(1), int(a.group(2))
        found.append((addr("Response origin"), addr("UDP reflexive addr"), addr("Local addr")))
    return found


def scenario(behaviour, mapping, filtering, mapped_ip):
    """Run natdiscovery -m -f behind a `behaviour` NAT; check its verdicts and what it saw. Returns
    (mapping responses, filtering responses, output)."""
    with Lab() as lab:
        srv, nat, cli, u = build(lab, behaviour)
        want = [mapping, filtering]
        if behaviour == Lab.NAT_NONE:
            # No NAT: test I already shows local == mapped, in both runs.
            want = ["No NAT! (Endpoint Independent Mapping)", mapping,
                    "No NAT! (Endpoint Independent Mapping)", filtering]
        out = natdiscovery(cli, "-m", "-f", want=want)
        v = verdicts(out)
        check(v == want, "%s NAT: natdiscovery said %r, want %r" % (behaviour, v, want))
        check("ALG detected" not in out, "MAPPED-ADDRESS and XOR-MAPPED-ADDRESS differ")
        m, f = responses(out, "Mapping"), responses(out, "Filtering")
        for origin, refl, local in m + f:
            check(refl[0] == mapped_ip, "reflexive address %r, want %s" % (refl, mapped_ip))
            check(local[0] == CLIENT, "local address %r" % (local,))
        # Mapping test I goes to A1:P1 and test II to A2:P1, both answered from where they went.
        check([o for o, _, _ in m[:2]] == [(A1, PORT), (A2, PORT)],
              "mapping answers came from %r" % ([o for o, _, _ in m],))
        if len(m) == 3:
            # Test III goes to test II's OTHER-ADDRESS: A1:P2 (Ca:Cp of A2:P1).
            check(m[2][0] == (A1, PORT + 1), "mapping test III answered from %r" % (m[2][0],))
        check(f[0][0] == (A1, PORT), "filtering test I answered from %r" % (f[0][0],))
        u.stop_clean()
        return m, f, out


def test_no_nat_control():
    m, f, out = scenario(Lab.NAT_NONE, "NAT with Endpoint Independent Mapping!",
                         "NAT with Endpoint Independent Filtering!", CLIENT)
    check(len(f) == 2 and f[1][0] == (A2, PORT + 1),
          "change-IP+port answer: %r, want from %s:%d" % (f[1:], A2, PORT + 1))
    check("timeout" not in out, "a test timed out without a NAT")


def test_endpoint_independent_nat():
    m, f, out = scenario(Lab.NAT_ENDPOINT_INDEPENDENT, "NAT with Endpoint Independent Mapping!",
                         "NAT with Address and Port Dependent Filtering!", NAT_PUBLIC)
    # Linux MASQUERADE keeps the client's port: the same mapping towards both server addresses.
    check(len(m) == 2 and m[0][1] == m[1][1] and m[0][1][1] == m[0][2][1],
          "mapping not endpoint independent and port preserving: %r" % (m,))
    # The change-IP+port and change-port answers were filtered out: natdiscovery waited for each.
    check(len(f) == 1 and out.count("STUN receive timeout") == 2,
          "filtering tests did not time out twice: %d responses" % len(f))


def test_full_cone_nat():
    m, f, out = scenario(Lab.NAT_FULL_CONE, "NAT with Endpoint Independent Mapping!",
                         "NAT with Endpoint Independent Filtering!", NAT_PUBLIC)
    check(len(f) == 2 and f[1][0] == (A2, PORT + 1),
          "change-IP+port answer: %r, want from %s:%d" % (f[1:], A2, PORT + 1))
    check("timeout" not in out, "a test timed out through a full-cone NAT")


def test_symmetric_nat():
    m, f, out = scenario(Lab.NAT_SYMMETRIC, "NAT with Address and Port Dependent Mapping!",
                         "NAT with Address and Port Dependent Filtering!", NAT_PUBLIC)
    ports = [refl[1] for _, refl, _ in m]
    check(len(ports) == 3 and len(set(ports)) == 3, "symmetric NAT reused a port: %r" % ports)
    check(len(f) == 1 and out.count("STUN receive timeout") == 2,
          "filtering tests did not time out twice: %d responses" % len(f))


if __name__ == "__main__":
    run()
