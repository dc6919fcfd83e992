#!/usr/bin/python3
"""Generate common/peer_policy_iana.h from the IANA special-purpose address registries.

Input: common/iana/iana-ipv4-special-registry.csv and common/iana/iana-ipv6-special-registry.csv,
in the registries' own CSV layout (Address Block, Name, RFC, Allocation Date, Termination Date,
Source, Destination, Forwardable, Globally Reachable, Reserved-by-Protocol); lines starting with '#'
are comments naming the source. Output: one table per family, longest prefix first, giving each
block the peer class common/peer_policy.c denies it under: 0 for a globally reachable block (True),
and for the two "N/A" blocks (Teredo, 6to4) whose embedded IPv4 address peer_policy.c judges
instead; otherwise the class of the block (loopback, private, ...) or PEER_CLASS_SPECIAL. A block
whose "Globally Reachable" is False or empty (a deprecated block) is denied.

Usage: gen-peer-policy-table.py           check that the header is up to date (exit 1 if not)
       gen-peer-policy-table.py --write   rewrite the header
No network: the CSV files are committed.
"""
import csv
import ipaddress
import os
import re
import sys

TOP = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CSV4 = os.path.join(TOP, "common", "iana", "iana-ipv4-special-registry.csv")
CSV6 = os.path.join(TOP, "common", "iana", "iana-ipv6-special-registry.csv")
OUT = os.path.join(TOP, "common", "peer_policy_iana.h")

COLUMNS = ["Address Block", "Name", "RFC", "Allocation Date", "Termination Date", "Source",
           "Destination", "Forwardable", "Globally Reachable", "Reserved-by-Protocol"]

# Blocks that have their own class, so that one opt-in (allow-loopback-peers, allow-private-peers)
# can lift them; every other not-globally-reachable block is PEER_CLASS_SPECIAL.
CLASSES = {
    "0.0.0.0/8": "PEER_CLASS_UNSPECIFIED",
    "0.0.0.0/32": "PEER_CLASS_UNSPECIFIED",
    "::/128": "PEER_CLASS_UNSPECIFIED",
    "127.0.0.0/8": "PEER_CLASS_LOOPBACK",
    "::1/128": "PEER_CLASS_LOOPBACK",
    "169.254.0.0/16": "PEER_CLASS_LINKLOCAL",
    "fe80::/10": "PEER_CLASS_LINKLOCAL",
    "10.0.0.0/8": "PEER_CLASS_PRIVATE",
    "172.16.0.0/12": "PEER_CLASS_PRIVATE",
    "192.168.0.0/16": "PEER_CLASS_PRIVATE",
    "100.64.0.0/10": "PEER_CLASS_CGNAT",
    "240.0.0.0/4": "PEER_CLASS_BROADCAST",
    "255.255.255.255/32": "PEER_CLASS_BROADCAST",
    "fc00::/7": "PEER_CLASS_ULA",
}
# "Globally Reachable: N/A" is only acceptable where peer_policy.c extracts the embedded IPv4.
EMBEDDING = {"2001::/32": "Teredo", "2002::/16": "6to4"}


def strip_note(v):
    return re.sub(r"\s*\[\d+\]", "", v).strip()


def read(path, version):
    with open(path, newline="", encoding="utf-8") as f:
        lines = [ln for ln in f if not ln.startswith("#")]
    rows = list(csv.reader(lines))
    if rows[0] != COLUMNS:
        sys.exit("%s: columns %r, expected %r" % (path, rows[0], COLUMNS))
    out = []
    for row in rows[1:]:
        if not row:
            continue
        rec = dict(zip(COLUMNS, (strip_note(v) for v in row)))
        reach = rec["Globally Reachable"]
        for block in rec["Address Block"].split(","):
            net = ipaddress.ip_network(block.strip())
            if net.version != version:
                sys.exit("%s: %s is not IPv%d" % (path, net, version))
            key = str(net)
            if reach == "True":
                cls = "0"
            elif reach == "N/A":
                if key not in EMBEDDING:
                    sys.exit("%s: %s is N/A but peer_policy.c extracts nothing from it" % (path, key))
                cls = "0"
            elif reach in ("False", ""):
                cls = CLASSES.get(key, "PEER_CLASS_SPECIAL")
            else:
                sys.exit("%s: %s: Globally Reachable %r" % (path, key, reach))
            out.append((net, cls, rec["Name"], reach or "(empty)"))
    # Longest prefix first: the first match is the most specific block.
    out.sort(key=lambda e: (-e[0].prefixlen, int(e[0].network_address)))
    return out


def source_lines(path):
    with open(path, encoding="utf-8") as f:
        return [ln[1:].strip() for ln in f if ln.startswith("# Source:") or ln.startswith("#    ")]


def render():
    v4, v6 = read(CSV4, 4), read(CSV6, 6)
    o = []
    o.append("/* peer_policy_iana.h - GENERATED FILE, do not edit: scripts/gen-peer-policy-table.py --write")
    o.append(" *")
    o.append(" * From the IANA IPv4 and IPv6 Special-Purpose Address Registries (RFC 6890, RFC 8190):")
    for p in (CSV4, CSV6):
        o.append(" *   " + os.path.relpath(p, TOP) + ":")
        for ln in source_lines(p):
            o.append(" *   " + ln)
    o.append(" * Rows as of the registries' 2025 state, written from knowledge of them (no network here),")
    o.append(" * not downloaded.")
    o.append(" * Each block carries the peer class it is denied under; 0 = globally reachable (or Teredo /")
    o.append(" * 6to4, whose embedded IPv4 is judged instead). Longest prefix first, so the first block that")
    o.append(" * matches is the most specific. Included by peer_policy.c only.")
    o.append(" */")
    o.append("#ifndef UTURN_PEER_POLICY_IANA_H")
    o.append("#define UTURN_PEER_POLICY_IANA_H")
    o.append("")
    o.append("static const peer_iana4_t peer_iana4[] = {")
    for net, cls, name, reach in v4:
        o.append("    /* %s %s; reachable: %s */" % (net, name, reach))
        o.append("    {0x%08xu, %d, %s}," % (int(net.network_address), net.prefixlen, cls))
    o.append("};")
    o.append("")
    o.append("static const peer_iana6_t peer_iana6[] = {")
    for net, cls, name, reach in v6:
        a = int(net.network_address)
        o.append("    /* %s %s; reachable: %s */" % (net, name, reach))
        o.append("    {0x%016xu, 0x%016xu, %d, %s},"
                 % (a >> 64, a & ((1 << 64) - 1), net.prefixlen, cls))
    o.append("};")
    o.append("")
    o.append("#endif")
    return "\n".join(o) + "\n"


def main():
    text = render()
    if sys.argv[1:] == ["--write"]:
        with open(OUT, "w", encoding="utf-8") as f:
            f.write(text)
        return 0
    with open(OUT, encoding="utf-8") as f:
        if f.read() != text:
            print("common/peer_policy_iana.h is out of date: run scripts/gen-peer-policy-table.py --write")
            return 1
    print("common/peer_policy_iana.h matches the registry CSV files")
    return 0


if __name__ == "__main__":
    sys.exit(main())
