"""Issue 11, defects 7 and 9, against the real uturnd.

Defect 7: every block the IANA IPv4 and IPv6 Special-Purpose Address Registries mark not globally
reachable is refused by default (CreatePermission and ChannelBind get 403), including the RFC 6052
layouts of the NAT64 local-use prefix 64:ff9b:1::/48, 6to4 and ISATAP spellings of such addresses,
while the globally reachable blocks inside them (192.0.0.10, TURN anycast) stay allowed, and
allowed-peer-ip opts in to any of them. No datagram is sent to any of these addresses: a permission
is only a promise.

Defect 9: an EVEN-PORT R=1 reservation counts against the quota of the user who made it until it
is redeemed (RESERVATION-TOKEN) or expires, so Allocate(R=1) + delete cannot pin relay ports past
user-quota; another user still gets relay ports.
"""
import struct

from uturn import (A_ADD_FAMILY, A_EVEN_PORT, A_TOKEN, TurnClient, Uturnd, attr, check, get_attr,
                   relayed_addresses, run, wait_for)

USERS = ["user = alice:alice-pass", "user = bob:bob-pass"]
BASE = USERS + ["realm = uturn.test", "relay-ip = 127.0.0.1", "relay-ip = ::1"]

# Not globally reachable, one or more spellings each; all must get 403 by default.
DENIED = [
    "192.0.0.192",                      # in 192.0.0.0/24, a cloud metadata address
    "192.0.0.8",                        # IPv4 dummy address
    "198.18.0.1", "198.19.255.254",     # benchmarking
    "192.0.2.1", "198.51.100.1", "203.0.113.5",  # TEST-NET-1/2/3
    "192.88.99.1",                      # deprecated 6to4 relay anycast
    "::ffff:198.18.0.1",                # IPv4-mapped
    "64:ff9b:1:0:7f:0:100:0",           # NAT64 local-use, /64 layout: 127.0.0.1
    "64:ff9b:1:a9fe:a9:fe00:800:0",     # NAT64 local-use, /48 layout: 169.254.169.254
    "64:ff9b::c000:c0",                 # NAT64 well-known prefix of 192.0.0.192
    "2002:c000:c0::1",                  # 6to4 of 192.0.0.192
    "2001:0:808:808:8000:63bf:34ff:8ef6",  # Teredo, client 203.0.113.9
    "2606:4700:1:2:200:5efe:7f00:1",    # ISATAP id 0200:5efe, 127.0.0.1
    "2606:4700:1:2:0:5efe:c000:c0",     # ISATAP id 0000:5efe, 192.0.0.192
    "100::1", "2001:2::1", "2001:10::1", "2001:db8::1", "3fff::1", "5f00::1",
    "2001:1::4",                        # 2001::/23 outside its globally reachable sub-blocks
]
# Globally reachable blocks inside denied ones.
ALLOWED = ["192.0.0.10", "192.0.0.9", "2001:1::2", "2001:3::1", "2001:20::1"]


def test_registry_blocks_403():
    with Uturnd(conf=BASE + ["min-port = 47000", "max-port = 47099"]) as u:
        c = TurnClient(u, "alice", "alice-pass")
        code, _, raw = c.allocate(extra=attr(A_ADD_FAMILY, b"\x02\0\0\0"), raw_response=True)
        check(code == 0 and len(relayed_addresses(raw)) == 2, "dual-stack Allocate: %s" % code)
        for ip in DENIED:
            code, _ = c.create_permission((ip, 5000))
            check(code == 403, "CreatePermission to %s answered %s, not 403" % (ip, code))
        for ip in DENIED[:6] + DENIED[9:14]:
            code, _ = c.channel_bind(0x4001, ip, 5000)
            check(code == 403, "ChannelBind to %s answered %s, not 403" % (ip, code))
        for ip in ALLOWED:
            code, _ = c.create_permission((ip, 5000))
            check(code == 0, "CreatePermission to %s (globally reachable) answered %s" % (ip, code))


def test_allowed_peer_ip_opts_in():
    conf = BASE + ["min-port = 47100", "max-port = 47199",
                   "allowed-peer-ip = 198.18.0.0/15", "allowed-peer-ip = 203.0.113.0/24",
                   "allowed-peer-ip = 2001:db8::/32", "allowed-peer-ip = 192.0.0.192",
                   "allowed-peer-ip = 64:ff9b:1::/48"]
    with Uturnd(conf=conf) as u:
        c = TurnClient(u, "alice", "alice-pass")
        check(c.allocate(extra=attr(A_ADD_FAMILY, b"\x02\0\0\0"))[0] == 0, "dual-stack Allocate failed")
        for ip in ["198.18.1.2", "198.19.0.1", "203.0.113.10", "::ffff:203.0.113.10",
                   "2001:db8::10", "192.0.0.192", "64:ff9b:1::cb00:710a"]:
            code, _ = c.create_permission((ip, 5000))
            check(code == 0, "CreatePermission to opted-in %s answered %s" % (ip, code))
        check(c.channel_bind(0x4002, "198.18.1.2", 5000)[0] == 0, "ChannelBind to 198.18.1.2")
        # Only what was named: the rest stays denied, and so do tunnelled forms of the named.
        for ip in ["198.51.100.1", "192.0.2.1", "192.0.0.191", "3fff::1", "2002:cb00:710a::",
                   "64:ff9b::cb00:710a"]:
            code, _ = c.create_permission((ip, 5000))
            check(code == 403, "CreatePermission to %s answered %s, not 403" % (ip, code))


R1 = attr(A_EVEN_PORT, b"\x80")  # EVEN-PORT with R=1: reserve port N+1 too
QUOTA = ["user-quota = 2"]


def _r1(u, user="alice"):
    """Allocate(EVEN-PORT R=1) from a new 5-tuple: (code, client, token)."""
    c = TurnClient(u, user, user + "-pass")
    code, attrs = c.allocate(extra=R1)
    return code, c, get_attr(attrs, A_TOKEN) if code == 0 else None


def test_even_port_reservations_count_against_quota():
    # 20 relay ports. Before the fix each Allocate(R=1) + delete left port N+1 reserved for 30 s
    # and cost the user nothing: alice (user-quota 2) pinned one port per round, all 10 rounds.
    conf = BASE + QUOTA + ["min-port = 47200", "max-port = 47219"]
    with Uturnd(conf=conf) as u:
        tokens, codes = [], []
        for _ in range(10):
            code, c, token = _r1(u)
            codes.append(code)
            if code != 0:
                break
            tokens.append(token)
            check(c.refresh(0)[0] == 0, "delete failed")
            c.close()
        print("alice: %d reservations pinned in %d rounds, answers %r" % (len(tokens), len(codes), codes))
        check(len(tokens) == 1 and codes[-1] == 486,
              "reservations escape user-quota: %d pinned, answers %r" % (len(tokens), codes))
        # The held reservation is one unit: one plain allocation still fits in 2, a second not.
        a = TurnClient(u, "alice", "alice-pass")
        check(a.allocate()[0] == 0, "alice's plain Allocate beside one reservation refused")
        check(TurnClient(u, "alice", "alice-pass").allocate()[0] == 486,
              "alice's reservation + allocation did not fill user-quota 2")
        # Another user is not affected: relay ports, and a reservation of its own.
        b = TurnClient(u, "bob", "bob-pass")
        code, attrs, raw = b.allocate(extra=R1, raw_response=True)
        check(code == 0 and get_attr(attrs, A_TOKEN), "bob refused: %s" % code)
        check(47200 <= relayed_addresses(raw)[0][1] <= 47219, "bob's relay %r" % relayed_addresses(raw))


def test_redeemed_reservation_releases_its_unit():
    conf = BASE + QUOTA + ["min-port = 47300", "max-port = 47349"]
    with Uturnd(conf=conf) as u:
        code, c1, token = _r1(u)
        check(code == 0 and token, "Allocate(R=1): %s" % code)
        # RFC 8656 §7.2: the usual pair, both allocations live. Redeeming her own reservation
        # uses its unit, so alice at user-quota 2 still gets port N+1.
        c2 = TurnClient(u, "alice", "alice-pass")
        code, _, raw = c2.allocate(extra=attr(A_TOKEN, token), raw_response=True)
        check(code == 0, "alice could not redeem her own reservation at her quota: %s" % code)
        check(TurnClient(u, "alice", "alice-pass").allocate()[0] == 486, "a third allocation fit")
        check(c1.refresh(0)[0] == 0 and c2.refresh(0)[0] == 0, "delete failed")
        # Nothing left counted: a new R=1 needs both units again.
        code, c3, token = _r1(u)
        check(code == 0, "units leaked after the redeemed pair was deleted: %s" % code)
        check(c3.refresh(0)[0] == 0, "delete failed")
        # Bob redeems alice's reservation: bob pays for the allocation, alice gets her unit back.
        b = TurnClient(u, "bob", "bob-pass")
        check(b.allocate(extra=attr(A_TOKEN, token))[0] == 0, "bob could not redeem")
        code, _, _ = _r1(u)
        check(code == 0, "alice's unit not released when bob redeemed her reservation: %s" % code)


def test_expired_reservation_releases_its_unit():
    # reservation-lifetime (default 30 s, RFC 8656 §7.2) is short here so the test is quick.
    conf = BASE + QUOTA + ["min-port = 47400", "max-port = 47449", "reservation-lifetime = 2"]
    with Uturnd(conf=conf) as u:
        code, c, token = _r1(u)
        check(code == 0 and token, "Allocate(R=1): %s" % code)
        check(c.refresh(0)[0] == 0, "delete failed")
        check(_r1(u)[0] == 486, "R=1 fit beside a held reservation at user-quota 2")
        got = wait_for(lambda: _r1(u)[0] == 0, 15, "alice's unit back after the reservation expired",
                       interval=0.5)
        check(got, "unreachable")
        b = TurnClient(u, "bob", "bob-pass")
        check(b.allocate(extra=attr(A_TOKEN, token))[0] == 508, "an expired token was redeemed")


if __name__ == "__main__":
    run()
