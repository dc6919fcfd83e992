/* peer_policy_iana.h - GENERATED FILE, do not edit: scripts/gen-peer-policy-table.py --write
 *
 * From the IANA IPv4 and IPv6 Special-Purpose Address Registries (RFC 6890, RFC 8190):
 *   common/iana/iana-ipv4-special-registry.csv:
 *   Source: https://www.iana.org/assignments/iana-ipv4-special-registry/iana-ipv4-special-registry-1.csv
 *   (https://www.iana.org/assignments/iana-ipv4-special-registry/, RFC 6890, RFC 8190)
 *   common/iana/iana-ipv6-special-registry.csv:
 *   Source: https://www.iana.org/assignments/iana-ipv6-special-registry/iana-ipv6-special-registry-1.csv
 *   (https://www.iana.org/assignments/iana-ipv6-special-registry/, RFC 6890, RFC 8190)
 * Rows as of the registries' 2025 state, written from knowledge of them (no network here),
 * not downloaded.
 * Each block carries the peer class it is denied under; 0 = globally reachable (or Teredo /
 * 6to4, whose embedded IPv4 is judged instead). Longest prefix first, so the first block that
 * matches is the most specific. Included by peer_policy.c only.
 */
#ifndef UTURN_PEER_POLICY_IANA_H
#define UTURN_PEER_POLICY_IANA_H

static const peer_iana4_t peer_iana4[] = {
    /* 0.0.0.0/32 "This host on this network"; reachable: False */
    {0x00000000u, 32, PEER_CLASS_UNSPECIFIED},
    /* 192.0.0.8/32 IPv4 dummy address; reachable: False */
    {0xc0000008u, 32, PEER_CLASS_SPECIAL},
    /* 192.0.0.9/32 Port Control Protocol Anycast; reachable: True */
    {0xc0000009u, 32, 0},
    /* 192.0.0.10/32 Traversal Using Relays around NAT Anycast; reachable: True */
    {0xc000000au, 32, 0},
    /* 192.0.0.170/32 NAT64/DNS64 Discovery; reachable: False */
    {0xc00000aau, 32, PEER_CLASS_SPECIAL},
    /* 192.0.0.171/32 NAT64/DNS64 Discovery; reachable: False */
    {0xc00000abu, 32, PEER_CLASS_SPECIAL},
    /* 192.88.99.2/32 6a44-relay-anycast-address; reachable: False */
    {0xc0586302u, 32, PEER_CLASS_SPECIAL},
    /* 255.255.255.255/32 Limited Broadcast; reachable: False */
    {0xffffffffu, 32, PEER_CLASS_BROADCAST},
    /* 192.0.0.0/29 IPv4 Service Continuity Prefix; reachable: False */
    {0xc0000000u, 29, PEER_CLASS_SPECIAL},
    /* 192.0.0.0/24 IETF Protocol Assignments; reachable: False */
    {0xc0000000u, 24, PEER_CLASS_SPECIAL},
    /* 192.0.2.0/24 Documentation (TEST-NET-1); reachable: False */
    {0xc0000200u, 24, PEER_CLASS_SPECIAL},
    /* 192.31.196.0/24 AS112-v4; reachable: True */
    {0xc01fc400u, 24, 0},
    /* 192.52.193.0/24 AMT; reachable: True */
    {0xc034c100u, 24, 0},
    /* 192.88.99.0/24 Deprecated (6to4 Relay Anycast); reachable: (empty) */
    {0xc0586300u, 24, PEER_CLASS_SPECIAL},
    /* 192.175.48.0/24 Direct Delegation AS112 Service; reachable: True */
    {0xc0af3000u, 24, 0},
    /* 198.51.100.0/24 Documentation (TEST-NET-2); reachable: False */
    {0xc6336400u, 24, PEER_CLASS_SPECIAL},
    /* 203.0.113.0/24 Documentation (TEST-NET-3); reachable: False */
    {0xcb007100u, 24, PEER_CLASS_SPECIAL},
    /* 169.254.0.0/16 Link Local; reachable: False */
    {0xa9fe0000u, 16, PEER_CLASS_LINKLOCAL},
    /* 192.168.0.0/16 Private-Use; reachable: False */
    {0xc0a80000u, 16, PEER_CLASS_PRIVATE},
    /* 198.18.0.0/15 Benchmarking; reachable: False */
    {0xc6120000u, 15, PEER_CLASS_SPECIAL},
    /* 172.16.0.0/12 Private-Use; reachable: False */
    {0xac100000u, 12, PEER_CLASS_PRIVATE},
    /* 100.64.0.0/10 Shared Address Space; reachable: False */
    {0x64400000u, 10, PEER_CLASS_CGNAT},
    /* 0.0.0.0/8 "This network"; reachable: False */
    {0x00000000u, 8, PEER_CLASS_UNSPECIFIED},
    /* 10.0.0.0/8 Private-Use; reachable: False */
    {0x0a000000u, 8, PEER_CLASS_PRIVATE},
    /* 127.0.0.0/8 Loopback; reachable: False */
    {0x7f000000u, 8, PEER_CLASS_LOOPBACK},
    /* 240.0.0.0/4 Reserved; reachable: False */
    {0xf0000000u, 4, PEER_CLASS_BROADCAST},
};

static const peer_iana6_t peer_iana6[] = {
    /* ::/128 Unspecified Address; reachable: False */
    {0x0000000000000000u, 0x0000000000000000u, 128, PEER_CLASS_UNSPECIFIED},
    /* ::1/128 Loopback Address; reachable: False */
    {0x0000000000000000u, 0x0000000000000001u, 128, PEER_CLASS_LOOPBACK},
    /* 2001:1::1/128 Port Control Protocol Anycast; reachable: True */
    {0x2001000100000000u, 0x0000000000000001u, 128, 0},
    /* 2001:1::2/128 Traversal Using Relays around NAT Anycast; reachable: True */
    {0x2001000100000000u, 0x0000000000000002u, 128, 0},
    /* 2001:1::3/128 DNS-SD Service Registration Protocol Anycast Address; reachable: True */
    {0x2001000100000000u, 0x0000000000000003u, 128, 0},
    /* ::ffff:0:0/96 IPv4-mapped Address; reachable: False */
    {0x0000000000000000u, 0x0000ffff00000000u, 96, PEER_CLASS_SPECIAL},
    /* 64:ff9b::/96 IPv4-IPv6 Translat.; reachable: True */
    {0x0064ff9b00000000u, 0x0000000000000000u, 96, 0},
    /* 100::/64 Discard-Only Address Block; reachable: False */
    {0x0100000000000000u, 0x0000000000000000u, 64, PEER_CLASS_SPECIAL},
    /* 100:0:0:1::/64 Dummy IPv6 Prefix; reachable: False */
    {0x0100000000000001u, 0x0000000000000000u, 64, PEER_CLASS_SPECIAL},
    /* 64:ff9b:1::/48 IPv4-IPv6 Translat.; reachable: False */
    {0x0064ff9b00010000u, 0x0000000000000000u, 48, PEER_CLASS_SPECIAL},
    /* 2001:2::/48 Benchmarking; reachable: False */
    {0x2001000200000000u, 0x0000000000000000u, 48, PEER_CLASS_SPECIAL},
    /* 2001:4:112::/48 AS112-v6; reachable: True */
    {0x2001000401120000u, 0x0000000000000000u, 48, 0},
    /* 2620:4f:8000::/48 Direct Delegation AS112 Service; reachable: True */
    {0x2620004f80000000u, 0x0000000000000000u, 48, 0},
    /* 2001::/32 TEREDO; reachable: N/A */
    {0x2001000000000000u, 0x0000000000000000u, 32, 0},
    /* 2001:3::/32 AMT; reachable: True */
    {0x2001000300000000u, 0x0000000000000000u, 32, 0},
    /* 2001:db8::/32 Documentation; reachable: False */
    {0x20010db800000000u, 0x0000000000000000u, 32, PEER_CLASS_SPECIAL},
    /* 2001:10::/28 Deprecated (previously ORCHID); reachable: (empty) */
    {0x2001001000000000u, 0x0000000000000000u, 28, PEER_CLASS_SPECIAL},
    /* 2001:20::/28 ORCHIDv2; reachable: True */
    {0x2001002000000000u, 0x0000000000000000u, 28, 0},
    /* 2001:30::/28 Drone Remote ID Protocol Entity Tags (DETs) Prefix; reachable: True */
    {0x2001003000000000u, 0x0000000000000000u, 28, 0},
    /* 2001::/23 IETF Protocol Assignments; reachable: False */
    {0x2001000000000000u, 0x0000000000000000u, 23, PEER_CLASS_SPECIAL},
    /* 3fff::/20 Documentation; reachable: False */
    {0x3fff000000000000u, 0x0000000000000000u, 20, PEER_CLASS_SPECIAL},
    /* 2002::/16 6to4; reachable: N/A */
    {0x2002000000000000u, 0x0000000000000000u, 16, 0},
    /* 5f00::/16 Segment Routing (SRv6) SIDs; reachable: False */
    {0x5f00000000000000u, 0x0000000000000000u, 16, PEER_CLASS_SPECIAL},
    /* fe80::/10 Link-Local Unicast; reachable: False */
    {0xfe80000000000000u, 0x0000000000000000u, 10, PEER_CLASS_LINKLOCAL},
    /* fc00::/7 Unique-Local; reachable: False */
    {0xfc00000000000000u, 0x0000000000000000u, 7, PEER_CLASS_ULA},
};

#endif
