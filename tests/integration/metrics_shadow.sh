#!/bin/bash
# Shadow routing.  A shadow of the serving router reports overlap 1, top-1
# agreement 1 and drift 0 on every token; a shadow never changes an answer;
# softmax-topk shadowing the sigmoid (DeepSeek-V3 layout) checkpoint reports
# the overlap, top-1 agreement, both MaxVio and drift percentiles that the
# numpy reference (tests/ref/shadow_check.py over moe_ref.py) computes for the
# same batches; the metrics carry the same numbers; --off removes it; the
# sample fraction bounds the sampled tokens.
. "$top_srcdir/tests/lib.sh"
need_numpy
PY=${PYTHON3:-/usr/bin/python3}
CHECK="$PY $top_srcdir/tests/ref/shadow_check.py"
$PY "$top_srcdir/tests/ref/make_cases.py" "$TMP/cases" >/dev/null || exit 1
CASE="$TMP/cases/good/v3"
$CHECK inputs "$CASE" 1 4 25 11 "$TMP/x" || exit 1
start_moed --model "$CASE" || exit 1
SERVING=$("$MOECTL" --json router show | $PY -c 'import json,sys; print(json.load(sys.stdin)["layers"][0]["router"])')

"$MOECTL" infer --layer 1 --input "$TMP/x/x_000.npy" --output "$TMP/y_plain.npy" >/dev/null || fail "infer"
"$MOECTL" router shadow "$SERVING" --sample 1 >/dev/null || fail "router shadow $SERVING"
for i in 000 001 002; do
	"$MOECTL" infer --layer 1 --input "$TMP/x/x_$i.npy" >/dev/null || fail "infer $i"
done
"$MOECTL" route --layer 2 --input "$TMP/x/x_003.npy" >/dev/null || fail "route"
"$MOECTL" --json stats >"$TMP/self.json" || fail "stats"
$PY - "$TMP/self.json" "$SERVING" <<'PY' && ok "a shadow of the serving router: overlap 1, drift 0" || fail "self shadow"
import json, sys
s = json.load(open(sys.argv[1]))
l1, l2 = s["layers"][0]["shadow"], s["layers"][1]["shadow"]
for sh, n in ((l1, 75), (l2, 25)):
    assert sh["router"] == sys.argv[2], sh
    assert sh["overlap"] == 1.0 and sh["top1_agreement"] == 1.0, sh
    assert sh["drift_p50"] == 0.0 and sh["drift_p99"] == 0.0, sh
    assert sh["tokens"] == n and sh["sampled"] == n, sh
    assert abs(sh["max_vio"] - sh["serving_max_vio"]) < 1e-6, sh
print(l1)
PY

"$MOECTL" router shadow softmax-topk --layer 1 --sample 1 >/dev/null || fail "router shadow softmax-topk"
"$MOECTL" infer --layer 1 --input "$TMP/x/x_000.npy" --output "$TMP/y_shadowed.npy" >/dev/null || fail "infer"
cmp -s "$TMP/y_plain.npy" "$TMP/y_shadowed.npy" && ok "the shadow changes no answer" ||
	fail "an infer answer changed under a shadow"
for i in 001 002 003; do
	"$MOECTL" infer --layer 1 --input "$TMP/x/x_$i.npy" >/dev/null || fail "infer $i"
done
"$MOECTL" --json stats --layer 1 >"$TMP/soft.json" || fail "stats"
"$MOECTL" metrics >"$TMP/m.prom" || fail "metrics"
$CHECK expect "$CASE" 1 "$TMP"/x/x_00[0-3].npy >"$TMP/want.json" || fail "numpy reference"
$PY - "$TMP/soft.json" "$TMP/want.json" "$TMP/m.prom" <<'PY' && ok "softmax-topk shadow equals numpy" || fail "softmax shadow"
import json, sys
from prometheus_client.parser import text_string_to_metric_families
got = json.load(open(sys.argv[1]))["layers"][0]["shadow"]
want = json.load(open(sys.argv[2]))
print("daemon", got)
print("numpy ", want)
assert got["router"] == "softmax-topk" and got["tokens"] == want["tokens"] == 100, got
assert got["sampled"] == 100, got
assert 0 < want["overlap"] < 1, want           # the routers do disagree
for key, tol in (("overlap", 1e-12), ("top1_agreement", 1e-12), ("max_vio", 1e-5),
                 ("serving_max_vio", 1e-5), ("drift_p50", 1e-4), ("drift_p99", 1e-4)):
    assert abs(got[key] - want[key]) <= tol * max(1, abs(want[key])), (key, got[key], want[key])
m = {(s.name, tuple(sorted(s.labels.items()))): s.value
     for f in text_string_to_metric_families(open(sys.argv[3]).read()) for s in f.samples}
assert abs(m[("moed_shadow_overlap", (("layer", "1"), ("router", "softmax-topk")))] - got["overlap"]) < 1e-9
assert m[("moed_shadow_tokens_total", (("layer", "1"),))] == 100
PY

# the default sample fraction, and --sample 0: routing only
"$MOECTL" router shadow softmax-topk >/dev/null || fail "router shadow (default sample)"
"$MOECTL" --json router show | $PY -c '
import json, sys
l = json.load(sys.stdin)["layers"]
assert all(abs(b["shadow_sample"] - 0.02) < 1e-7 and b["shadow"] == "softmax-topk" for b in l), l' &&
	ok "default sample 0.02 on every layer" || fail "default sample"
"$MOECTL" router shadow softmax-topk --layer 2 --sample 0 >/dev/null || fail "router shadow --sample 0"
"$MOECTL" route --layer 2 --input "$TMP/x/x_001.npy" >/dev/null || fail "route"
"$MOECTL" --json stats --layer 2 | $PY -c '
import json, sys
sh = json.load(sys.stdin)["layers"][0]["shadow"]
assert sh["tokens"] == 25 and sh["sampled"] == 0 and sh["drift_p99"] == 0, sh' &&
	ok "--sample 0 routes only" || fail "--sample 0"
expect_fail 2 "--sample" "$MOECTL" router shadow softmax-topk --sample 1.5
expect_fail 1 "not-a-router" "$MOECTL" router shadow not-a-router
"$MOECTL" router shadow --off >/dev/null || fail "router shadow --off"
"$MOECTL" --json stats | $PY -c '
import json, sys
assert all("shadow" not in l for l in json.load(sys.stdin)["layers"])' &&
	ok "--off removes every shadow" || fail "--off"
stop_moed
finish
