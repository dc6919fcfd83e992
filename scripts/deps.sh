#!/bin/sh
# Install the Debian packages uturn needs, only if some are missing.
#   scripts/deps.sh build   - what building uturnd needs
#   scripts/deps.sh test    - that plus the real services and clients the tests run
set -eu
BUILD="build-essential autoconf automake libtool pkg-config libuv1-dev libssl-dev libhiredis-dev libmicrohttpd-dev libjansson-dev libcurl4-openssl-dev libsystemd-dev libbpf-dev bpftool clang"
TEST="python3 clang-format coturn redis-server redis-sentinel prometheus python3-aioice python3-aiortc curl clang libclang-rt-dev iproute2 procps iptables conntrack ethtool chromium debhelper dpkg-dev lintian systemd strace"
case "${1:-build}" in
build) want="$BUILD" ;;
test) want="$BUILD $TEST" ;;
*) echo "usage: $0 build|test" >&2; exit 2 ;;
esac
missing=""
for p in $want; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"
echo "installing:$missing"
$SUDO apt-get update -qq
# Services such as redis-server must not start on install: the tests run their own on free ports.
DEBIAN_FRONTEND=noninteractive RUNLEVEL=1 $SUDO apt-get install -y -qq --no-install-recommends $missing >/dev/null
