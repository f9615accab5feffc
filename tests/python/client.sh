#!/bin/bash
# The Python client against the real moed: moectl's bf16 .npy path (--dtype
# bf16, '<u2' files) checked with numpy, then the pytest suite
# tests/python/test_client.py (every method and error; numbers from numpy).
# pytest's "no tests collected" (exit 5) and an all-skipped run fail here.
. "$top_srcdir/tests/lib.sh"
need_numpy
PY=${PYTHON3:-/usr/bin/python3}
"$PY" -c 'import google.protobuf, pytest' 2>/dev/null ||
	skip "$PY lacks google.protobuf or pytest (Debian: python3-protobuf python3-pytest)"
[ -f "$top_builddir/python/moed/moed_pb2.py" ] || skip "the Python client is not built (--enable-python)"
export PYTHONPATH="$top_builddir/python:$top_srcdir/python${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONDONTWRITEBYTECODE=1
"$PY" "$top_srcdir/tests/ref/make_cases.py" "$TMP/cases" >/dev/null || exit 1
CASE="$TMP/cases/good/v3"
cat >"$TMP/moed.conf" <<CONF
[limits]
max_tokens_per_request = 1000
max_inflight_per_conn = 4
CONF
start_moed --model "$CASE" --config "$TMP/moed.conf" || exit 1

# moectl: a bf16 input as '<u2' bits, a float input rounded by moectl, the
# output written as '<u2'; compared with numpy's rounding of the fp32 answer
"$PY" - "$CASE/x_7.npy" "$TMP" <<'PY' || fail "writing the bf16 input"
import sys, numpy as np
sys.path.insert(0, __import__("os").environ["top_srcdir"] + "/tests/ref")
import moe_ref as ref
x = np.load(sys.argv[1])
b = ref.to_bf16_bits(x)
np.save(sys.argv[2] + "/xb.npy", b.astype("<u2"))
np.save(sys.argv[2] + "/xr.npy", ref.from_bf16_bits(b))
PY
"$MOECTL" --json infer --layer 1 --input "$TMP/xb.npy" --dtype bf16 --output "$TMP/yb.npy" \
	>"$TMP/infer.json" || fail "moectl infer --dtype bf16"
"$MOECTL" infer --layer 1 --input "$TMP/xr.npy" --output "$TMP/yr.npy" >/dev/null ||
	fail "moectl infer of the widened input"
"$MOECTL" infer --layer 1 --input "$CASE/x_7.npy" --dtype bf16 --output "$TMP/yx.npy" >/dev/null ||
	fail "moectl infer --dtype bf16 of a float32 input"
"$PY" - "$TMP" <<'PY' && ok "moectl --dtype bf16: '<u2' in and out, the fp32 answer rounded to nearest even" || fail "moectl bf16 output"
import json, os, sys, numpy as np
sys.path.insert(0, os.environ["top_srcdir"] + "/tests/ref")
import moe_ref as ref
d = sys.argv[1]
yb, yr, yx = np.load(d + "/yb.npy"), np.load(d + "/yr.npy"), np.load(d + "/yx.npy")
assert yb.dtype == np.dtype("<u2") and yb.shape == (7, 64), (yb.dtype, yb.shape)
assert np.array_equal(yb, ref.to_bf16_bits(yr))
assert np.array_equal(yx, yb)      # moectl's rounding of the float input is numpy's
j = json.load(open(d + "/infer.json"))
assert j["dtype"] == "bf16" and j["tokens"] == 7, j
PY
expect_fail 2 "give --dtype bf16" "$MOECTL" infer --layer 1 --input "$TMP/xb.npy"
expect_fail 2 "want f32 or bf16" "$MOECTL" infer --layer 1 --random 1 --dtype f16

# the pytest suite
MOED_TEST_CASE="$CASE" "$PY" -m pytest -q -p no:cacheprovider -rs \
	"$top_srcdir/tests/python/test_client.py" >"$TMP/pytest.out" 2>&1
rc=$?
cat "$TMP/pytest.out"
if [ "$rc" -eq 5 ]; then
	fail "pytest collected no tests"
elif [ "$rc" -ne 0 ]; then
	fail "pytest exited $rc"
elif ! tail -n 1 "$TMP/pytest.out" | grep -q " passed" ||
	tail -n 1 "$TMP/pytest.out" | grep -q "skipped"; then
	fail "pytest: not every test ran: $(tail -n 1 "$TMP/pytest.out")"
else
	ok "pytest: $(tail -n 1 "$TMP/pytest.out")"
fi
"$MOECTL" status >/dev/null || fail "moed not serving after the suite"
stop_moed
finish
