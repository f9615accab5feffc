#!/bin/bash
# `moectl metrics`: the exposition parses with prometheus_client's parser (text
# 0.0.4 and OpenMetrics), passes `promtool check metrics`, has every (layer,
# expert) series with the counters `moectl --json stats` reports, and its
# request and token counters match the traffic sent.
. "$top_srcdir/tests/lib.sh"
PY=${PYTHON3:-/usr/bin/python3}
$PY -c 'import prometheus_client' 2>/dev/null ||
	skip "$PY has no prometheus_client (Debian: python3-prometheus-client)"
start_moed --model synthetic:S0 || exit 1

"$MOECTL" metrics >"$TMP/idle.prom" || fail "moectl metrics (idle)"
for i in 1 2 3; do
	"$MOECTL" infer --layer 1 --random 7 --seed $i >/dev/null || fail "infer $i"
done
"$MOECTL" route --layer 2 --random 5 --seed 9 >/dev/null || fail "route"
"$MOECTL" infer --layer 0 --random 1 >/dev/null 2>&1 && fail "infer on the dense layer 0"
"$MOECTL" metrics >"$TMP/m.prom" || fail "moectl metrics"
"$MOECTL" metrics --openmetrics >"$TMP/m.om" || fail "moectl metrics --openmetrics"
"$MOECTL" --json stats >"$TMP/stats.json" || fail "moectl --json stats"
"$MOECTL" --json model >"$TMP/model.json" || fail "moectl --json model"

$PY - "$TMP/m.prom" "$TMP/m.om" "$TMP/stats.json" "$TMP/model.json" "$TMP/idle.prom" <<'PY' &&
import json, sys
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.openmetrics.parser import text_string_to_metric_families as om_families

def samples(fams):
    out = {}
    for f in fams:
        for s in f.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out

text, om = open(sys.argv[1]).read(), open(sys.argv[2]).read()
stats, model = json.load(open(sys.argv[3])), json.load(open(sys.argv[4]))
m = samples(text_string_to_metric_families(text))
o = samples(om_families(om))
idle = samples(text_string_to_metric_families(open(sys.argv[5]).read()))
E = model["n_routed_experts"]
layers = [l for l in stats["layers"]]
assert layers, stats
for l in layers:
    for e in range(E):
        key = ("moed_expert_tokens_total", (("expert", str(e)), ("layer", str(l["layer"]))))
        assert key in m, key
        assert m[key] == l["load"][e], (key, m[key], l["load"][e])
        assert key in o and o[key] == l["load"][e], key
        assert key in idle and idle[key] == 0, key
    assert m[("moed_compute_duration_seconds_count", (("layer", str(l["layer"])),))] == l["requests"]
n_series = sum(1 for k in m if k[0] == "moed_expert_tokens_total")
assert n_series == E * len(layers), n_series
def req(kind, status="ok"):
    return m[("moed_requests_total", (("kind", kind), ("status", status)))]
assert req("infer") == 3 and req("route") == 1, (req("infer"), req("route"))
# every kind is counted by its status, not only infer and route
assert req("infer", "not_found") == 1, req("infer", "not_found")
assert req("hello") >= 6 and req("metrics") >= 1 and req("model") >= 4, (req("hello"), req("model"))
assert m[("moed_tokens_total", ())] == 3 * 7 + 5
assert sum(l["tokens"] for l in layers) == 26
assert m[("moed_queued_tokens", ())] == 0
assert m[("moed_connections", ())] >= 1
assert any(k[0] == "moed_build_info" for k in m)
assert any(k[0] == "moed_plugin_info" and dict(k[1])["kind"] == "router" for k in m)
for l in layers:
    for w in ("recent", "total"):
        v = m[("moed_layer_max_violation", (("layer", str(l["layer"])), ("window", w)))]
        want = l["max_vio"] if w == "recent" else l["max_vio_total"]
        assert abs(v - want) < 1e-5, (v, want)
print("%d expert series over %d layers equal moectl --json stats" % (n_series, len(layers)))
PY
	ok "exposition parses (0.0.4 and OpenMetrics) and equals moectl --json stats" ||
	fail "exposition content"

if command -v promtool >/dev/null; then
	promtool check metrics <"$TMP/m.prom" >"$TMP/promtool" 2>&1 &&
		ok "promtool check metrics" || fail "promtool: $(cat "$TMP/promtool")"
else
	echo "promtool not installed (Debian: prometheus): lint not run"
fi
expect_fail 2 "unexpected argument" "$MOECTL" metrics extra
stop_moed
finish
