#!/bin/sh
# Configure and build uturn out of tree: scripts/build.sh BUILDDIR [configure flags...]
set -eu
top=$(cd "$(dirname "$0")/.." && pwd)
dir=$1
shift
if [ ! -x "$top/configure" ] || [ "$top/configure.ac" -nt "$top/configure" ] ||
   [ "$top/Makefile.am" -nt "$top/Makefile.in" ]; then
    (cd "$top" && autoreconf -fi >/dev/null)
fi
mkdir -p "$dir"
cd "$dir"
flags="$*"
if [ ! -f config.status ] || [ "$(cat .uturn-flags 2>/dev/null)" != "$flags" ]; then
    # shellcheck disable=SC2086
    "$top/configure" $flags >configure.out 2>&1 || { cat configure.out; exit 1; }
    echo "$flags" >.uturn-flags
fi
make -j"$(nproc)" >make.out 2>&1 || { grep -E 'error|Error' make.out | head -50; tail -20 make.out; exit 1; }
