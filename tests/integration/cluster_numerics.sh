#!/bin/bash
# Expert parallelism, numerics: the checkpoints of tests/ref/make_checkpoint.py
# (DeepSeek-V3 with groups, bias and a shared expert; Mixtral; Qwen2-MoE with
# its shared-expert gate; FP8 block-scaled V3; Kimi-K2) served by a 3-rank
# `mpirun moed` job must route exactly as the independent numpy reference and
# produce its outputs (tests/ref/compare.py), and equal a single-process
# moed's outputs within fp32 summation order (1e-6 of the largest magnitude).
# The same with the front holding no routed experts (front_computes = 0) and
# with a balanced placement with replicas, whose tokens are split between
# copies.  The per-rank counters must show every routed pair computed on
# exactly one rank, one that holds the expert.
. "$top_srcdir/tests/lib.sh"
. "$top_srcdir/tests/cluster_lib.sh"
need_numpy
need_mpi
PY=${PYTHON3:-/usr/bin/python3}
CASES="$TMP/cases"
$PY "$top_srcdir/tests/ref/make_checkpoint.py" "$CASES" >/dev/null || { echo "case generation failed"; exit 1; }

# query NAME OUT: infer + route every layer and input of case NAME into OUT
query() {
	local case=$CASES/good/$1 out=$2 L x T
	mkdir -p "$out"
	for L in $(cat "$case/layers"); do
		for x in "$case"/x_*.npy; do
			T=$(basename "$x" .npy); T=${T#x_}
			"$MOECTL" infer --layer "$L" --input "$x" --output "$out/got_y_${L}_$T.npy" >/dev/null ||
				fail "$1: infer layer $L T=$T"
			"$MOECTL" --json route --layer "$L" --input "$x" >"$out/route_${L}_$T.json" ||
				fail "$1: route layer $L T=$T"
		done
	done
}

# counters OUT CASE: cluster show after query(): every pair on one rank that holds it
counters() {
	"$MOECTL" --json cluster show >"$1/cluster.json" || { fail "cluster show"; return; }
	$PY - "$1" "$2" <<'PY'
import glob, json, os, sys
import numpy as np
out, case = sys.argv[1:3]
cl = json.load(open(os.path.join(out, "cluster.json")))
assert cl["enabled"] and len(cl["ranks"]) == 3, cl
want = {}
for f in glob.glob(os.path.join(out, "route_*.json")):
    L = os.path.basename(f).split("_")[1]
    e = np.array(json.load(open(f))["experts"]).ravel()
    c = want.setdefault(L, {})
    for x in e:
        c[int(x)] = c.get(int(x), 0) + 1
for L, c in want.items():
    got = {}
    for r in cl["ranks"]:
        ids, n = r["experts"][L], r["computed"][L]
        assert len(ids) == len(n), (L, r["rank"])
        assert len(set(ids)) == len(ids), ("two copies on one rank", L, r["rank"])
        for i, k in zip(ids, n):
            got[i] = got.get(i, 0) + k
    # each infer ran once per route: the counters count the infers' pairs
    bad = {e: (got.get(e, 0), k) for e, k in c.items() if got.get(e, 0) != k}
    extra = {e: k for e, k in got.items() if k and e not in c}
    assert not bad and not extra, (L, bad, extra)
print("counters: every pair computed once, on a rank holding its expert")
PY
}

# the cpu backend's exact path: the reference is fp32 (bf16 activations are
# checked in tests/unit/test_cpu_expert)
printf '[expert]\nprecision = exact\n' >"$TMP/exact.conf"

# single-process outputs of the v3 case, for the summation-order comparison
start_moed --model "$CASES/good/v3" --workers 1 --config "$TMP/exact.conf" || exit 1
query v3 "$TMP/single"
stop_moed

for name in v3 mixtral qwen2 v3_fp8 kimi_k2; do
	out="$TMP/out-$name"
	start_cluster 3 --model "$CASES/good/$name" --workers 1 --config "$TMP/exact.conf" ||
		{ fail "$name: the job did not start"; continue; }
	query "$name" "$out"
	counters "$out" "$CASES/good/$name" && ok "$name: per-rank counters" || fail "$name: per-rank counters"
	if [ "$name" = v3 ] && [ -f "$top_builddir/python/moed/moed_pb2.py" ]; then
		# the Python client reads the same placement as moectl
		PYTHONPATH="$top_builddir/python:$top_srcdir/python" $PY - "$SOCK" "$out/cluster.json" <<'PY' &&
import json, sys
import moed
got = moed.Client(sys.argv[1]).cluster()
want = json.load(open(sys.argv[2]))
for k in ("enabled", "placement", "epoch", "front_computes", "timeout_ms"):
    assert got[k] == want[k], (k, got[k], want[k])
assert [r["experts"] for r in got["ranks"]] == [r["experts"] for r in want["ranks"]]
assert [r["pid"] for r in got["ranks"]] == [r["pid"] for r in want["ranks"]]
PY
			ok "python client: cluster()" || fail "python client: cluster()"
	fi
	if [ "$name" = v3 ]; then
		# the cluster's counters in the metrics: well formed, 3 ranks, bytes sent
		"$MOECTL" metrics >"$TMP/m.prom" || fail "metrics"
		grep -qx 'moed_cluster_ranks 3' "$TMP/m.prom" &&
			grep -q '^moed_cluster_bytes_total{rank="2",direction="out"} [1-9]' "$TMP/m.prom" &&
			ok "metrics: moed_cluster_*" || fail "metrics: moed_cluster_* missing"
		if command -v promtool >/dev/null; then
			promtool check metrics <"$TMP/m.prom" >"$TMP/promtool" 2>&1 &&
				ok "promtool accepts the cluster metrics" ||
				{ cat "$TMP/promtool"; fail "promtool check metrics"; }
		fi
	fi
	stop_cluster
	if $PY "$top_srcdir/tests/ref/compare.py" "$CASES/good/$name" "$out" >"$TMP/cmp" 2>&1; then
		ok "$name through 3 ranks matches the reference"
	else
		cat "$TMP/cmp"; fail "$name through 3 ranks differs from the reference"
	fi
done

# against one process: summation order only
$PY - "$TMP/single" "$TMP/out-v3" <<'PY' && ok "3 ranks equal one process within 1e-6" || fail "3 ranks vs one process"
import glob, os, sys
import numpy as np
a_dir, b_dir = sys.argv[1:3]
worst = 0.0
for f in glob.glob(os.path.join(a_dir, "got_y_*.npy")):
    a, b = np.load(f), np.load(os.path.join(b_dir, os.path.basename(f)))
    worst = max(worst, float(np.abs(a - b).max()) / max(float(np.abs(a).max()), 1e-30))
print("largest difference / largest magnitude: %.3g" % worst)
assert worst <= 1e-6, worst
PY

# the front holds no routed experts; balanced placement with replicas
printf '[expert]\nprecision = exact\n[cluster]\nfront_computes = 0\n' >"$TMP/nofront.conf"
printf '[expert]\nprecision = exact\n[cluster]\nplacement = balanced\nreplicas = 5\n' >"$TMP/replicas.conf"
for variant in nofront replicas; do
	out="$TMP/out-v3-$variant"
	start_cluster 3 --model "$CASES/good/v3" --workers 1 --config "$TMP/$variant.conf" ||
		{ fail "$variant: the job did not start"; continue; }
	query v3 "$out"
	counters "$out" "$CASES/good/v3" && ok "$variant: per-rank counters" || fail "$variant: per-rank counters"
	"$MOECTL" --json cluster show >"$TMP/$variant.json"
	$PY - "$TMP/$variant.json" "$variant" <<'PY' && ok "$variant: placement as configured" || fail "$variant: placement"
import json, sys
cl, variant = json.load(open(sys.argv[1])), sys.argv[2]
if variant == "nofront":
    assert cl["front_computes"] is False
    assert all(not ids for ids in cl["ranks"][0]["experts"].values()), cl["ranks"][0]
else:
    assert cl["placement"] == "balanced" and cl["replicas"] == 5, cl
    for L in cl["ranks"][0]["experts"]:
        n = sum(len(r["experts"][L]) for r in cl["ranks"])
        assert n == 16 + 5, (L, n)          # the v3 case has 16 experts
PY
	stop_cluster
	$PY "$top_srcdir/tests/ref/compare.py" "$CASES/good/v3" "$out" >"$TMP/cmp" 2>&1 &&
		ok "$variant matches the reference" || { cat "$TMP/cmp"; fail "$variant differs from the reference"; }
done
finish
