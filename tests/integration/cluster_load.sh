#!/bin/bash
# Expert parallelism under load (issue 16), 3 ranks of one worker each on the
# v3 case of tests/ref/make_cases.py (16 experts, top-4, layers 1 and 2):
#  a. hot swap under load across ranks: 4 clients while the router is swapped
#     40 times; no request fails, every reply equals the numpy reference of
#     its generation's router configuration;
#  c. every routed pair is computed on exactly one rank: the per-rank
#     counters of cluster show, summed, equal the pairs `moectl route` names,
#     and only experts a rank holds count there;
#  b. cluster rebalance under skewed load ([cluster] replicas = 2): the
#     contiguous placement is unbalanced on the skew, clients running through
#     the rebalance see no failure and the reference output; the epoch moves,
#     balancedness rises from "previous", and the hot experts' copies on two
#     ranks both compute (the pairs still sum to the routes); on
#     synthetic:S0 (outputs as before the rebalance) and on the checkpoint
#     (outputs as numpy's);
#  d. six rebalances in a row under load whose skew moves between ranks:
#     each maps and retires experts, no request fails, no output changes.
. "$top_srcdir/tests/lib.sh"
. "$top_srcdir/tests/cluster_lib.sh"
. "$top_srcdir/tests/swap_lib.sh"
need_mpi
need_numpy
PY=${PYTHON3:-/usr/bin/python3}
CHECK="$top_srcdir/tests/integration/cluster_check.py"
$PY "$top_srcdir/tests/ref/make_cases.py" "$TMP/cases" >/dev/null || exit 1
CASE="$TMP/cases/good/v3"
X="$CASE/x_7.npy"
$PY "$top_srcdir/tests/ref/swap_expect.py" "$CASE" 1 "$X" "$TMP/expect" || exit 1

# show NAME: moectl --json cluster show into $TMP/NAME.json
show() {
	"$MOECTL" --json cluster show >"$TMP/$1.json" 2>"$TMP/err" ||
		fail "cluster show exited $?: $(cat "$TMP/err")"
}

# ---- a. hot swap under load across ranks ----
printf '[cluster]\ntimeout_ms = 10000\n' >"$TMP/a.conf"
start_cluster 3 --model "$CASE" --workers 1 --config "$TMP/a.conf" ||
	{ echo "FAIL: the job did not start"; exit 1; }
show a0
$PY "$CHECK" held "$TMP/a0.json" 16 --exclusive && ok "contiguous: every expert on one rank" ||
	fail "contiguous placement: $(cat "$TMP/a0.json")"

swap_under_load "$X" "$TMP/load_a" 10 0.05
[ "$swaps" -eq 40 ] && [ "$swap_fail" -eq 0 ] && ok "40 router swaps under load on 3 ranks" ||
	fail "swaps: $swaps ok, $swap_fail failed"
$PY "$CHECK" replies "$TMP/load_a" --by-generation "$TMP/configs" "$TMP/expect" &&
	ok "hot swap: 0 failed, every reply equals its generation's reference" ||
	fail "replies under hot swap across ranks"
n_gen=$($PY -c 'import json,sys; print(len({o["generation"] for o in json.load(open(sys.argv[1]))["outputs"]}))' \
	"$TMP/load_a/summary.json")
[ "$n_gen" -gt 5 ] && ok "the load spanned $n_gen generations" || fail "load saw only $n_gen generations"

# ---- c. every pair computed on exactly one rank (router back to sigmoid-norm) ----
show c0
specs=()
for spec in "1 x_1000 2" "1 x_7 3" "2 x_1000 1" "2 x_1 4"; do
	set -- $spec
	"$MOECTL" --json route --layer "$1" --input "$CASE/$2.npy" >"$TMP/route_$1_$2.json" ||
		fail "route --layer $1 $2"
	for _ in $(seq 1 "$3"); do
		"$MOECTL" infer --layer "$1" --input "$CASE/$2.npy" --output "$TMP/y.npy" >/dev/null ||
			fail "infer --layer $1 $2"
	done
	$PY "$CHECK" close "$TMP/y.npy" "$CASE/y_$1_${2#x_}.npy" ||
		fail "layer $1 $2: output differs from the reference"
	specs+=("$1:$TMP/route_$1_$2.json:$3")
done
show c1
$PY "$CHECK" computed "$TMP/c0.json" "$TMP/c1.json" "${specs[@]}" &&
	ok "contiguous: per-rank counters sum to the routed pairs" || fail "computed counters (contiguous)"
stop_cluster

# ---- b. cluster rebalance under skewed load, replicas = 2 ----
# job_gone WHAT: the job died; say so with the front's last words
job_gone() {
	local rc
	for _ in $(seq 1 50); do
		kill -0 "$MOED_PID" 2>/dev/null || break
		sleep 0.1
	done
	kill -0 "$MOED_PID" 2>/dev/null && return 1
	wait "$MOED_PID"
	rc=$?
	fail "$1: the job died (exit $rc); its log: $(grep -v '^\[' "$TMP/moed.log" |
		grep -E 'err|warn|signal|rebalanc|Segmentation' | tail -6)"
	MOED_PID=
	return 0
}

# rebalance NAME MODEL XS YS XA: on MODEL, where XS's routes of layer 1 put
# (nearly) all pairs on rank 0 under contiguous placement and YS is the output
# XS must keep: the skew shows, clients through the rebalance see no failure
# and YS, balancedness rises, the hot experts' copies both compute, and the
# pairs of XS and of XA (any input) sum to their routes.
rebalance() {
	local name=$1 model=$2 xs=$3 ys=$4 xa=$5 rc
	rm -f "$TMP"/*.state      # the previous job's model's
	printf '[cluster]\nreplicas = 2\n' >"$TMP/b.conf"
	start_cluster 3 --model "$model" --workers 1 --config "$TMP/b.conf" ||
		{ fail "$name: the job did not start"; return; }
	for _ in 1 2 3 4; do
		"$MOECTL" infer --layer 1 --input "$xs" --output "$TMP/y.npy" >/dev/null || fail "$name: skewed infer"
	done
	$PY "$CHECK" close "$TMP/y.npy" "$ys" || fail "$name: skewed output differs from the expected one"
	show b0
	$PY "$CHECK" balance "$TMP/b0.json" 1 lt 0.5 && ok "$name: contiguous is unbalanced on the skew" ||
		fail "$name: contiguous balancedness on the skew: $(cat "$TMP/b0.json")"
	rm -f "$TMP/stop"
	$PY "$top_srcdir/tests/integration/swapload.py" "$SOCK" "$xs" 1 4 "$TMP/stop" "$TMP/load_$name" &
	LOAD=$!
	sleep 1
	"$MOECTL" --json cluster rebalance >"$TMP/b1.json" 2>"$TMP/err"
	rc=$?
	sleep 1
	touch "$TMP/stop"
	wait $LOAD
	if [ "$rc" -ne 0 ]; then
		fail "$name: cluster rebalance under load exited $rc: $(cat "$TMP/err")"
		job_gone "$name: cluster rebalance" || stop_cluster
		return
	fi
	$PY "$CHECK" replies "$TMP/load_$name" --expect "$ys" &&
		ok "$name: rebalance under load: 0 failed, outputs unchanged" ||
		fail "$name: replies under rebalance"
	$PY - "$TMP/b0.json" "$TMP/b1.json" <<'PY' && ok "$name: rebalance: epoch +1, balancedness rose" ||
import json, sys
b0, b1 = (json.load(open(p)) for p in sys.argv[1:3])
print("epoch %d -> %d; layer 1 balancedness previous %.4f, now %.4f; placement %s"
      % (b0["epoch"], b1["epoch"], b1["previous"]["1"], b1["balancedness"]["1"], b1["placement"]))
assert b1["epoch"] == b0["epoch"] + 1
assert b1["placement"] == "balanced" and b1["replicas"] == 2
assert b1["previous"]["1"] < 0.5 < b1["balancedness"]["1"]
PY
		fail "$name: rebalance answer: $(cat "$TMP/b1.json")"
	show b2
	$PY "$CHECK" held "$TMP/b2.json" 16 && ok "$name: balanced: every expert held" ||
		fail "$name: balanced placement: $(cat "$TMP/b2.json")"
	"$MOECTL" --json route --layer 1 --input "$xs" >"$TMP/route_skew.json" || fail "$name: route"
	for _ in 1 2 3; do
		"$MOECTL" infer --layer 1 --input "$xs" --output "$TMP/y.npy" >/dev/null ||
			fail "$name: skewed infer after the rebalance"
	done
	"$MOECTL" --json route --layer 1 --input "$xa" >"$TMP/route_xa.json" || fail "$name: route"
	"$MOECTL" infer --layer 1 --input "$xa" >/dev/null || fail "$name: infer after the rebalance"
	show b3
	$PY "$CHECK" computed "$TMP/b2.json" "$TMP/b3.json" --split "1:$TMP/route_skew.json:3" \
		"1:$TMP/route_xa.json:1" &&
		ok "$name: replicated experts split over their copies, pairs sum to the routes" ||
		fail "$name: computed counters after the rebalance: $(cat "$TMP/b3.json")"
	stop_cluster
}

# synthetic:S0: two rows of 400 random ones whose routes stay on experts 0..4
# (rank 0's); the output to keep is the one before the rebalance
$PY -c 'import numpy as np, sys
np.save(sys.argv[1], np.random.default_rng(5).standard_normal((400, 256)).astype(np.float32))' "$TMP/x_s0.npy"
start_moed --model synthetic:S0 --workers 1 || exit 1
"$MOECTL" --json route --layer 1 --input "$TMP/x_s0.npy" >"$TMP/route_s0.json" || fail "route S0"
$PY "$CHECK" skewpick "$TMP/route_s0.json" "$TMP/x_s0.npy" 0:5 16 "$TMP/xs_s0.npy" || exit 1
$PY "$CHECK" skewpick "$TMP/route_s0.json" "$TMP/x_s0.npy" 10:16 16 "$TMP/xt_s0.npy" || exit 1
for x in xs xt; do
	"$MOECTL" infer --layer 1 --input "$TMP/${x}_s0.npy" --output "$TMP/y${x#x}_s0.npy" >/dev/null ||
		fail "infer S0"
done
stop_moed
rebalance S0 synthetic:S0 "$TMP/xs_s0.npy" "$TMP/ys_s0.npy" "$TMP/x_s0.npy"

# ---- d. rebalances in a row under a skew that moves ----
# With a 1 s stats window each phase's window holds only its own skew (the
# experts of rank 0's range, then of rank 2's, ...), so every rebalance
# moves experts: ranks map new ones and retire the old epoch's while 4
# clients run.  Every phase: 0 failed, the output unchanged, the epoch +1.
printf '[daemon]\nstats_window_s = 1\n[cluster]\nreplicas = 2\n' >"$TMP/d.conf"
rm -f "$TMP"/*.state
start_cluster 3 --model synthetic:S0 --workers 1 --config "$TMP/d.conf" ||
	{ echo "FAIL: the job did not start"; exit 1; }
show d0
phases=0 moved=0 done_ok=0
for phase in s t s t s t; do
	phases=$((phases + 1))
	rm -f "$TMP/stop"
	$PY "$top_srcdir/tests/integration/swapload.py" "$SOCK" "$TMP/x${phase}_s0.npy" 1 4 "$TMP/stop" \
		"$TMP/load_d$phases" >/dev/null &
	LOAD=$!
	sleep 1.3
	"$MOECTL" --json cluster rebalance >"$TMP/d1.json" 2>"$TMP/err"
	rc=$?
	sleep 0.3
	touch "$TMP/stop"
	wait $LOAD
	if [ "$rc" -ne 0 ]; then
		fail "phase $phases (skew $phase): cluster rebalance exited $rc: $(cat "$TMP/err");" \
			"the log: $(grep -E ' (err|warning): ' "$TMP/moed.log" | tail -3)"
		kill -0 "$MOED_PID" 2>/dev/null && continue
		break
	fi
	done_ok=$((done_ok + 1))
	$PY "$CHECK" replies "$TMP/load_d$phases" --expect "$TMP/y${phase}_s0.npy" >"$TMP/out" 2>&1 ||
		fail "phase $phases (skew $phase): $(cat "$TMP/out")"
	$PY - "$TMP/d0.json" "$TMP/d1.json" >"$TMP/out" 2>&1 <<'PY' || fail "phase $phases: $(cat "$TMP/out")"
import json, sys
b0, b1 = (json.load(open(p)) for p in sys.argv[1:3])
assert b1["epoch"] == b0["epoch"] + 1, "epoch %d -> %d" % (b0["epoch"], b1["epoch"])
experts = lambda j: [r["experts"]["1"] for r in j["ranks"]]
print("moved" if experts(b0) != experts(b1) else "same")
PY
	grep -qx moved "$TMP/out" && moved=$((moved + 1))
	mv "$TMP/d1.json" "$TMP/d0.json"
done
[ "$done_ok" -eq 6 ] && [ "$moved" -ge 5 ] &&
	ok "6 rebalances under a moving skew ($moved moved experts): 0 failed, outputs unchanged" ||
	fail "rebalances under a moving skew: $done_ok of $phases done, $moved moved experts"
if kill -0 "$MOED_PID" 2>/dev/null; then
	show d2
	"$MOECTL" --json route --layer 1 --input "$TMP/x_s0.npy" >"$TMP/route_d.json" || fail "route"
	"$MOECTL" infer --layer 1 --input "$TMP/x_s0.npy" >/dev/null || fail "infer after the rebalances"
	show d3
	$PY "$CHECK" computed "$TMP/d2.json" "$TMP/d3.json" "1:$TMP/route_d.json:1" &&
		ok "after the rebalances: pairs sum to the routes" || fail "computed counters after the rebalances"
	stop_cluster
else
	job_gone "rebalances under a moving skew"
fi

# the v3 checkpoint: rows 440 and 618 of x_1000 route to experts {0,1,2,3}
# and {0,2,3,4} of layer 1 (experts_1_1000.npy); numpy's output to keep.
# Both models: a rebalance maps a checkpoint's new experts from its files
# (checkpoint_add_experts), a synthetic model's are generated.
$PY "$CHECK" skew "$CASE" 1 440,618 16 "$TMP/xs_v3.npy" "$TMP/ys_v3.npy" || exit 1
rebalance v3 "$CASE" "$TMP/xs_v3.npy" "$TMP/ys_v3.npy" "$CASE/x_1000.npy"
finish
