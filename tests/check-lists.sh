#!/bin/sh
# check-lists.sh - every test program and script in the tree is one `make check` runs.
#
# Makefile.am lists its tests by hand (a $(wildcard) would need GNU make, which automake -Wall
# refuses), so a new tests/unit/test_*.c, tests/integration/test_*.py, tests/natlab/test_*.py,
# tests/chaos/test_*.py or tests/fleet/test_*.py left out of those lists would silently never run:
# this fails instead, naming it. Run by `make check` with UTURN_SRCDIR and UTURN_LISTED_TESTS (Makefile.am's lists) set.
: "${UTURN_SRCDIR:?UTURN_SRCDIR not set}"
: "${UTURN_LISTED_TESTS:?UTURN_LISTED_TESTS not set}"

status=0
found=0
for f in "$UTURN_SRCDIR"/tests/unit/test_*.c "$UTURN_SRCDIR"/tests/integration/test_*.py \
    "$UTURN_SRCDIR"/tests/natlab/test_*.py "$UTURN_SRCDIR"/tests/chaos/test_*.py \
    "$UTURN_SRCDIR"/tests/fleet/test_*.py; do
    [ -e "$f" ] || continue
    rel=${f#"$UTURN_SRCDIR"/}
    rel=${rel%.c}
    found=$((found + 1))
    case " $UTURN_LISTED_TESTS " in
    *" $rel "*) ;;
    *)
        echo "not in Makefile.am's test lists, so never run: $rel"
        status=1
        ;;
    esac
done
echo "$found test files checked against the lists"
[ $status -eq 0 ] || echo "add them to UNIT_TESTS, INTEGRATION_TESTS, NATLAB_TESTS, CHAOS_TESTS or FLEET_TESTS"
exit $status
