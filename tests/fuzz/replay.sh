#!/bin/sh
# replay.sh - replay the committed fuzz corpora through the non-libFuzzer builds of the targets.
#
# Run by `make check` with UTURN_BUILDDIR and UTURN_SRCDIR set (Makefile.am AM_TESTS_ENVIRONMENT).
# Both targets always run so one failure does not hide another; any failure fails the test.
: "${UTURN_BUILDDIR:?UTURN_BUILDDIR not set}"
: "${UTURN_SRCDIR:?UTURN_SRCDIR not set}"

status=0
"$UTURN_BUILDDIR/tests/fuzz/replay_stun_decode" "$UTURN_SRCDIR/tests/fuzz/corpus/stun_decode" ||
    status=1
"$UTURN_BUILDDIR/tests/fuzz/replay_stream" "$UTURN_SRCDIR/tests/fuzz/corpus/stream" || status=1
exit $status
