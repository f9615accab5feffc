#!/bin/bash
# examples/attention_loop.py against the real moed on synthetic:S0: prefill
# and token-by-token decoding through moed.Client, fp32 and bf16 on the wire;
# --check makes the example compare the two passes itself.  The timing line is
# printed, not asserted.
. "$top_srcdir/tests/lib.sh"
need_numpy
PY=${PYTHON3:-/usr/bin/python3}
"$PY" -c 'import google.protobuf' 2>/dev/null || skip "$PY lacks google.protobuf (Debian: python3-protobuf)"
[ -f "$top_builddir/python/moed/moed_pb2.py" ] || skip "the Python client is not built (--enable-python)"
export PYTHONPATH="$top_builddir/python:$top_srcdir/python${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONDONTWRITEBYTECODE=1
start_moed --model synthetic:S0 || exit 1
for dt in f32 bf16; do
	if "$PY" "$top_srcdir/examples/attention_loop.py" --prompt 6 --tokens 8 --dtype "$dt" --check \
		>"$TMP/out.$dt" 2>&1; then
		ok "attention_loop --dtype $dt: $(grep '^prefill' "$TMP/out.$dt")"
	else
		fail "attention_loop --dtype $dt: $(cat "$TMP/out.$dt")"
	fi
	grep -q "tokens/s.*inside moed" "$TMP/out.$dt" || fail "no timing line: $(cat "$TMP/out.$dt")"
	grep -q "^generated: \([0-9]* \)\{7\}[0-9]*$" "$TMP/out.$dt" || fail "not 8 tokens generated"
done
# the MoE layers were served: 3 MoE layers x (6-token prefill + 8 decode steps
# + 6 check steps) x 2 runs
"$MOECTL" --json stats >"$TMP/stats.json" || fail "moectl stats"
"$PY" - "$TMP/stats.json" <<'PY' && ok "moed served every MoE layer of every step" || fail "stats after the example"
import json, sys
s = json.load(open(sys.argv[1]))
assert [l["layer"] for l in s["layers"]] == [1, 2, 3], s
for l in s["layers"]:
    assert l["requests"] == 2 * (1 + 8 + 6) and l["tokens"] == 2 * (6 + 8 + 6), l
PY
# moed gone: the example says so and exits 2
stop_moed
"$PY" "$top_srcdir/examples/attention_loop.py" >"$TMP/out" 2>&1
rc=$?
[ "$rc" -eq 2 ] && grep -q "cannot connect" "$TMP/out" && ok "no daemon: exit 2, $(head -c 120 "$TMP/out")" ||
	fail "no daemon: exit $rc: $(cat "$TMP/out")"
finish
