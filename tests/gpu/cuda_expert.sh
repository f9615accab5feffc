#!/bin/sh
# The cuda expert backend against numpy: tests/ref/gen_expert_cases.py writes
# random weights, inputs, routes and the expected outputs (fp32 and bf16
# weights) into a temp folder; tests/gpu/test_cuda_expert dlopens the built
# plugin and compares.  Skips (77) without a CUDA device (the test binary
# checks first, before any case is written) or without numpy.
set -u
: "${top_srcdir:?run through make check}" "${top_builddir:?}" "${MOED_TEST_PLUGIN_DIR:?}"
PY=${PYTHON3:-/usr/bin/python3}
TEST="$top_builddir/tests/gpu/test_cuda_expert"

# no device: let the binary say why and skip, before any case is written
"$TEST" --probe || exit $?
TMP=$(mktemp -d "${TMPDIR:-/tmp}/moed-cuda-expert.XXXXXX")
trap 'rm -rf "$TMP"' EXIT
"$PY" "$top_srcdir/tests/ref/gen_expert_cases.py" "$TMP"
rc=$?
if [ "$rc" -eq 77 ]; then
	echo "SKIP: $PY cannot generate the cases (no numpy)"
	exit 77
fi
[ "$rc" -eq 0 ] || { echo "FAIL: case generation exited $rc"; exit 1; }
MOED_TEST_CASES="$TMP" "$TEST"
