#!/bin/sh
# The cpu expert backend against numpy: tests/ref/gen_expert_cases.py writes
# random weights, inputs, routes and the expected outputs (fp32, bf16 and,
# with --fp8, block-scaled FP8 E4M3 weights) into a temp folder; tests/unit/test_cpu_expert dlopens the built
# plugin and compares.  Skips (77) when the interpreter has no numpy.
set -u
: "${top_srcdir:?run through make check}" "${top_builddir:?}" "${MOED_TEST_PLUGIN_DIR:?}"
PY=${PYTHON3:-/usr/bin/python3}
TMP=$(mktemp -d "${TMPDIR:-/tmp}/moed-cpu-expert.XXXXXX")
trap 'rm -rf "$TMP"' EXIT

"$PY" "$top_srcdir/tests/ref/gen_expert_cases.py" "$TMP" --fp8
rc=$?
if [ "$rc" -eq 77 ]; then
	echo "SKIP: $PY cannot generate the cases (no numpy)"
	exit 77
fi
[ "$rc" -eq 0 ] || { echo "FAIL: case generation exited $rc"; exit 1; }
MOED_TEST_CASES="$TMP" "$top_builddir/tests/unit/test_cpu_expert"
