#!/bin/bash
# Numerics end to end: small HF checkpoints written by tests/ref/make_checkpoint.py
# (the cases of make_cases.py: DeepSeek-V3 with groups and bias, V2 softmax
# groups, Moonlight one group, Mixtral, OLMoE, exact ties, BF16/F16 weights,
# shards, T = 1..1000; plus Qwen3-MoE, V2-Lite greedy, dense layers present,
# GLM-4.5 and DeepSeek-V3/Kimi-K2 configs without the router keys, FP8 e4m3
# block-scaled experts with scales in another shard)
# are first loaded in-process by tests/unit/test_model, which compares config
# values and tensor elements with expected.json; then each is served by the
# real moed and queried with the real moectl, and outputs and routes must equal
# the independent numpy reference (the BF16 and FP8 V3 cases also with
# precision = bf16 and prepack = on, to the bf16 rounding of the activations).
# Broken checkpoints must be refused, by the
# loader and by moed at start, with a message naming the file, field or tensor.
. "$top_srcdir/tests/lib.sh"
need_numpy
PY=${PYTHON3:-/usr/bin/python3}
CASES="$TMP/cases"
$PY "$top_srcdir/tests/ref/make_checkpoint.py" "$CASES" || { echo "case generation failed"; exit 1; }

if "$top_builddir/tests/unit/test_model" "$CASES" >"$TMP/test_model.log" 2>&1; then
	ok "loader: $(grep -E '^[0-9]+ cases' "$TMP/test_model.log")"
else
	cat "$TMP/test_model.log"
	fail "loader unit test on the generated cases"
fi

# the reference keeps activations in fp32: BF16 and FP8 cases run the cpu
# backend's exact path (precision = bf16 is checked in tests/unit/test_cpu_expert)
printf '[expert]\nprecision = exact\n' >"$TMP/exact.conf"
# every layer and input of case $1 through the running daemon into $2
query_case() {
	local case=$1 out=$2 name L x T
	name=$(basename "$case")
	mkdir -p "$out"
	for L in $(cat "$case/layers"); do
		for x in "$case"/x_*.npy; do
			T=$(basename "$x" .npy); T=${T#x_}
			"$MOECTL" infer --layer "$L" --input "$x" --output "$out/got_y_${L}_$T.npy" >/dev/null ||
				fail "$name: infer layer $L T=$T"
			"$MOECTL" --json route --layer "$L" --input "$x" >"$out/route_${L}_$T.json" ||
				fail "$name: route layer $L T=$T"
		done
	done
}
for case in "$CASES"/good/*; do
	name=$(basename "$case")
	out="$TMP/out-$name"
	start_moed --model "$case" --config "$TMP/exact.conf" || { fail "$name: moed did not start"; continue; }
	query_case "$case" "$out"
	if [ "$name" = v3 ]; then
		# the daemon names the router the model asks for, and reports the model in HF terms
		"$MOECTL" --json model >"$out/model.json"
		$PY - "$out/model.json" <<'PY' && ok "v3: model --json" || fail "v3: model --json"
import json, sys
m = json.load(open(sys.argv[1]))
want = dict(hidden_size=64, moe_intermediate_size=32, n_routed_experts=16, num_experts_per_tok=4,
            n_group=4, topk_group=2, n_shared_experts=1, scoring_func="sigmoid", moe_layers=[1, 2],
            num_hidden_layers=3)
bad = {k: (m.get(k), v) for k, v in want.items() if m.get(k) != v}
assert not bad, bad
PY
		expect_fail 1 "layer 0 is a dense layer" "$MOECTL" infer --layer 0 --input "$case/x_1.npy"
		expect_fail 1 "not in this model" "$MOECTL" infer --layer 7 --input "$case/x_1.npy"
		$PY -c "import numpy as np; np.save('$TMP/wrongH.npy', np.ones((2, 65), np.float32))"
		expect_fail 1 "hidden size 65, the model's is 64" "$MOECTL" infer --layer 1 --input "$TMP/wrongH.npy"
		$PY -c "import numpy as np; a=np.ones((2, 64), np.float32); a[1,3]=np.nan; np.save('$TMP/nan.npy', a)"
		expect_fail 2 "input[1][3] is not finite" "$MOECTL" infer --layer 1 --input "$TMP/nan.npy"
		$PY -c "import numpy as np; np.save('$TMP/empty.npy', np.ones((0, 64), np.float32))"
		expect_fail 2 "empty" "$MOECTL" infer --layer 1 --input "$TMP/empty.npy"
		"$MOECTL" status >/dev/null || fail "daemon not serving after bad inputs"
	fi
	stop_moed
	if $PY "$top_srcdir/tests/ref/compare.py" "$case" "$out"; then ok "$name matches the reference"
	else fail "$name differs from the reference"; fi
done

# precision = bf16 with prepack = on (experts packed at load for the bf16
# GEMM): the same routes, outputs within the bf16 rounding of the activations
# (a CPU without AVX512-BF16, or valgrind's, which has no AVX-512, has
# no bf16 GEMM to pack for: the setting must then say it changes nothing; nor
# has one with AMX tiles)
printf '[expert]\nprecision = bf16\nprepack = on\n' >"$TMP/prepack.conf"
packs=0
grep -q avx512_bf16 /proc/cpuinfo && [ -z "${MOED_WRAPPER:-}" ] && packs=1
for name in v3_bf16 v3_fp8; do
	start_moed --model "$CASES/good/$name" --config "$TMP/prepack.conf" ||
		{ fail "$name prepack: moed did not start"; continue; }
	if [ $packs = 1 ]; then
		# on AMX (isa = amx, the default there) the tile GEMM reads the
		# weights as stored, and says so
		grep -q "prepack = on: .* MiB of packed panels" "$TMP/moed.log" ||
			grep -q "prepack = on has no effect with isa = amx" "$TMP/moed.log" ||
			fail "$name prepack: no packed panels logged: $(grep -i prepack "$TMP/moed.log")"
	else
		grep -q "prepack = on has no effect here" "$TMP/moed.log" ||
			fail "$name prepack: without AVX512-BF16 neither packed nor said why"
	fi
	query_case "$CASES/good/$name" "$TMP/out-$name-prepack"
	stop_moed
	if $PY "$top_srcdir/tests/ref/compare.py" "$CASES/good/$name" "$TMP/out-$name-prepack" 1e-2; then
		ok "$name with prepack = on matches the reference (bf16 activations)"
	else fail "$name with prepack = on differs from the reference"; fi
done

# [expert] weights: bf16 checkpoints are held as stored (bf16), others on request
for pair in "v3_bf16:none:BF16" "v3:bf16:BF16" "v3_bf16:fp32:F32" "v3_fp8:none:F8_E4M3" \
	    "v3_fp8:fp8:F8_E4M3" "v3_fp8:bf16:BF16" "v3_fp8_block:fp32:F32"; do
	IFS=: read -r name weights want <<<"$pair"
	if [ "$weights" = none ]; then : >"$TMP/w.conf"; else printf '[expert]\nweights = %s\n' "$weights" >"$TMP/w.conf"; fi
	start_moed --model "$CASES/good/$name" --config "$TMP/w.conf" || { fail "$name weights=$weights"; continue; }
	got=$("$MOECTL" --json model | $PY -c 'import json,sys; print(json.load(sys.stdin)["dtype"])')
	[ "$got" = "$want" ] && ok "$name with weights=$weights held as $got" || fail "$name weights=$weights: $got, want $want"
	if [ "$want" = F8_E4M3 ]; then
		# one byte per weight plus the scales: not 2x or 4x
		held=$("$MOECTL" --json model | $PY -c 'import json,sys; print(json.load(sys.stdin)["weight_bytes"])')
		[ "$held" = "$(cat "$CASES/good/$name/fp8_bytes")" ] && ok "$name: $held bytes held (fp8 + scales + fp32 router)" ||
			fail "$name: $held bytes held, want $(cat "$CASES/good/$name/fp8_bytes")"
	fi
	"$MOECTL" infer --layer 1 --random 3 >/dev/null || fail "$name weights=$weights: infer"
	stop_moed
done
printf '[expert]\nweights = fp8\n' >"$TMP/w.conf"
expect_fail 1 "FP8 weights (weights = fp8) need an FP8 checkpoint" "$MOED" --socket "$SOCK" \
	--config "$TMP/w.conf" --plugin-dir "$MOED_TEST_PLUGIN_DIR" --model "$CASES/good/v3_bf16"
printf '[expert]\nweights = fp16\n' >"$TMP/w.conf"
expect_fail 1 "weights must be bf16, fp32 or fp8" "$MOED" --config "$TMP/w.conf" --check-config

# layer subsets: a checkpoint holding layer 1 only, served with --layers 1
sub="$CASES/subset/v3_layer1"
mkdir -p "$TMP/out-subset"
if start_moed --model "$sub" --layers 1 --config "$TMP/exact.conf"; then
	for x in "$sub"/x_*.npy; do
		T=$(basename "$x" .npy); T=${T#x_}
		"$MOECTL" infer --layer 1 --input "$x" --output "$TMP/out-subset/got_y_1_$T.npy" >/dev/null ||
			fail "subset: infer layer 1 T=$T"
		"$MOECTL" --json route --layer 1 --input "$x" >"$TMP/out-subset/route_1_$T.json" ||
			fail "subset: route layer 1 T=$T"
	done
	"$MOECTL" --json model | $PY -c 'import json,sys; m=json.load(sys.stdin); assert m["served_layers"] == [1] and m["moe_layers"] == [1, 2], m' &&
		ok "subset: served_layers [1] of moe_layers [1, 2]" || fail "subset: model --json"
	expect_fail 1 "layer 2 is not served here; served layers: 1" "$MOECTL" infer --layer 2 --input "$sub/x_1.npy"
	expect_fail 1 "layer 0 is a dense layer; served layers: 1" "$MOECTL" infer --layer 0 --input "$sub/x_1.npy"
	stop_moed
	$PY "$top_srcdir/tests/ref/compare.py" "$sub" "$TMP/out-subset" && ok "subset matches the reference" ||
		fail "subset differs from the reference"
else
	fail "moed --layers 1 did not start on a one-layer checkpoint"
fi
printf '[model]\nlayers = 2\n' >"$TMP/l.conf"
start_moed --model "$CASES/good/v3" --config "$TMP/l.conf" &&
	"$MOECTL" --json model | $PY -c 'import json,sys; assert json.load(sys.stdin)["served_layers"] == [2]' &&
	ok "[model] layers = 2 serves layer 2 only" || fail "[model] layers = 2"
stop_moed
expect_fail 1 "layers: layer 0 is a dense layer" "$MOED" --socket "$SOCK" --config /dev/null \
	--plugin-dir "$MOED_TEST_PLUGIN_DIR" --model "$CASES/good/v3" --layers 0-1
expect_fail 1 "layers '1-x': want layer indices and ranges" "$MOED" --config /dev/null \
	--model "$CASES/good/v3" --layers 1-x --check-config

for case in "$CASES"/bad/*; do
	name=$(basename "$case")
	expect_fail 1 "$(cat "$case/expect.txt")" "$MOED" --socket "$SOCK" --config /dev/null \
		--plugin-dir "$MOED_TEST_PLUGIN_DIR" --model "$case"
done
finish
