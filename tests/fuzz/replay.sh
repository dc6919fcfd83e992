#!/bin/sh
# replay.sh - replay the committed fuzz corpora through the non-libFuzzer builds of the targets.
#
# Run by `make check` with UTURN_BUILDDIR and UTURN_SRCDIR set (Makefile.am AM_TESTS_ENVIRONMENT).
# Every tests/fuzz/corpus/NAME/ is replayed by tests/fuzz/replay_NAME; a corpus without its replay
# binary is a failure, so a new target cannot be forgotten. All run, so one failure does not hide
# another.
: "${UTURN_BUILDDIR:?UTURN_BUILDDIR not set}"
: "${UTURN_SRCDIR:?UTURN_SRCDIR not set}"

status=0
for dir in "$UTURN_SRCDIR"/tests/fuzz/corpus/*/; do
    name=$(basename "$dir")
    bin="$UTURN_BUILDDIR/tests/fuzz/replay_$name"
    if [ ! -x "$bin" ]; then
        echo "no replay binary for corpus $name ($bin)"
        status=1
        continue
    fi
    "$bin" "$dir" || status=1
done
exit $status
