#!/bin/sh
# Expert placement against an independent Python implementation:
# tests/ref/placement_ref.py writes cases (skewed, replicated, idle front,
# random) with the experts of every rank, copies per expert, rank loads and
# balancedness; tests/unit/test_placement computes them with daemon/placement.c
# and compares.  Skips (77) when the interpreter has no numpy.
set -u
: "${top_srcdir:?run through make check}" "${top_builddir:?}"
PY=${PYTHON3:-/usr/bin/python3}
TMP=$(mktemp -d "${TMPDIR:-/tmp}/moed-placement.XXXXXX")
trap 'rm -rf "$TMP"' EXIT

"$PY" "$top_srcdir/tests/ref/placement_ref.py" "$TMP"
rc=$?
if [ "$rc" -eq 77 ]; then
	echo "SKIP: $PY cannot compute the reference (no numpy)"
	exit 77
fi
[ "$rc" -eq 0 ] || { echo "FAIL: the reference exited $rc"; exit 1; }
MOED_TEST_CASES="$TMP" "$top_builddir/tests/unit/test_placement"
