#!/bin/bash
# moectl bench against the real daemon: the JSON report has its fields, no
# request failed, the request count equals what the daemon itself counted, and
# argument errors exit 2.  (No timing thresholds: speed is measured, not tested.)
. "$top_srcdir/tests/lib.sh"
PY=${PYTHON3:-/usr/bin/python3}
start_moed || exit 1
"$MOECTL" --json bench --clients 4 --tokens 2 --duration 2 --compare --output "$TMP/bench.json" \
	>"$TMP/out.json" || fail "bench exited $?"
"$MOECTL" --json stats >"$TMP/stats.json" || fail "stats"
$PY - "$TMP/out.json" "$TMP/bench.json" "$TMP/stats.json" <<'PY' && ok "bench report" || fail "bench report"
import json, sys
b = json.load(open(sys.argv[1]))
assert json.load(open(sys.argv[2])) == b, "--output differs from stdout"
s = json.load(open(sys.argv[3]))
for phase, clients in (("serial", 1), ("concurrent", 4)):
    p = b[phase]
    assert p["clients"] == clients and p["errors"] == 0 and p["requests"] > 0, p
    assert p["tokens"] == 2 * p["requests"] and p["tokens_per_s"] > 0
    assert 0 < p["p50_us"] <= p["p90_us"] <= p["p99_us"], p
served = sum(l["requests"] for l in s["layers"])
made = b["serial"]["requests"] + b["concurrent"]["requests"]
print("bench made %d requests, the daemon served %d; speedup %.2f" % (made, served, b["speedup"]))
assert served == made, (served, made)
assert b["layer"] == 1 and b["tokens_per_request"] == 2
PY
"$MOECTL" --json bench --clients 2 --tokens 3 --duration 1 --dtype bf16 >"$TMP/bf16.json" ||
	fail "bench --dtype bf16 exited $?"
$PY - "$TMP/bf16.json" <<'PY' && ok "bench --dtype bf16 report" || fail "bench --dtype bf16 report"
import json, sys
b = json.load(open(sys.argv[1]))
p = b["concurrent"]
assert b["dtype"] == "bf16" and p["errors"] == 0 and p["requests"] > 0, b
# the daemon's compute time is part of each round trip
assert 0 < p["compute_p50_us"] <= p["p50_us"] and p["compute_p50_us"] <= p["compute_p99_us"], p
PY
expect_fail 2 "want f32 or bf16" "$MOECTL" bench --dtype fp16
expect_fail 2 "--clients must be" "$MOECTL" bench --clients 0
expect_fail 2 "--duration must be" "$MOECTL" bench --duration 0
expect_fail 2 "unexpected argument" "$MOECTL" bench extra
stop_moed
finish
