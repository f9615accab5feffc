#!/bin/bash
# The daemon's memory report: `moectl status` backend_bytes and the
# moed_memory_bytes metric.  With the cpu backend's prepack = on (BF16 weights,
# precision = bf16, AVX512-BF16), the backend holds a packed copy of every
# expert: at least the experts' bf16 bytes, computed here from `moectl model`'s
# shape (not from the daemon's own figure), and at most 10% more (the panels
# pad rows to 32 or 64).  Without it, only scratch, which grows on the first
# infer.  The metric and the status report agree, and the weights part is the
# model's weight_bytes.
. "$top_srcdir/tests/lib.sh"
PY=${PYTHON3:-/usr/bin/python3}

# report FILE: backend_bytes, weight_bytes from `moectl --json status`, and the
# three moed_memory_bytes parts, one line
report() {
	"$MOECTL" --json status >"$TMP/st.json" || { fail "moectl --json status"; return 1; }
	"$MOECTL" metrics >"$TMP/m.prom" || { fail "moectl metrics"; return 1; }
	$PY - "$TMP/st.json" "$TMP/m.prom" >"$1" <<'PY'
import json, re, sys
st = json.load(open(sys.argv[1]))
parts = dict(re.findall(r'^moed_memory_bytes\{part="(\w+)"\} (\d+)$', open(sys.argv[2]).read(), re.M))
print(st["backend_bytes"], st["model"]["weight_bytes"], parts.get("weights", -1),
      parts.get("mapped", -1), parts.get("backend", -1))
PY
}

# experts' bytes in bf16: every MoE layer's routed and shared experts
experts_bf16() {
	"$MOECTL" --json model | $PY -c '
import json, sys
m = json.load(sys.stdin)
H, I, E, S = m["hidden_size"], m["moe_intermediate_size"], m["n_routed_experts"], m["n_shared_experts"]
print(len(m["served_layers"] or m["moe_layers"]) * 3 * H * I * (E + S) * 2)'
}

# the packed copy is the vdpbf16ps GEMM's: on AMX CPUs (whose tile GEMM
# reads the weights as stored, so prepack does nothing there) ask for it
isa=
grep -q avx512_bf16 /proc/cpuinfo && [ -z "${MOED_WRAPPER:-}" ] && isa='isa = avx512bf16\n'
for pp in off on; do
	printf "[expert]\nweights = bf16\nprecision = bf16\n${isa}prepack = %s\n" "$pp" >"$TMP/$pp.conf"
	start_moed --model synthetic:S0 --config "$TMP/$pp.conf" || { fail "moed prepack=$pp"; continue; }
	report "$TMP/$pp.before" || continue
	"$MOECTL" infer --layer 1 --random 64 >/dev/null || fail "infer prepack=$pp"
	report "$TMP/$pp.after" || continue
	read -r b w mw mm mb <"$TMP/$pp.after"
	[ "$b" = "$mb" ] || fail "prepack=$pp: status backend_bytes $b, metric backend $mb"
	[ "$w" = "$mw" ] || fail "prepack=$pp: weight_bytes $w, metric weights $mw"
	[ "$mm" = 0 ] || fail "prepack=$pp: a synthetic model maps nothing, metric mapped $mm"
	read -r b0 _ <"$TMP/$pp.before"
	[ "$b" -gt "$b0" ] || fail "prepack=$pp: scratch not counted: $b0 before the infer, $b after"
	eval "backend_$pp=$b0"
	[ "$pp" = on ] && packed_note=$(grep -c "MiB of packed panels" "$TMP/moed.log")
	[ "$pp" = on ] && ebytes=$(experts_bf16)
	stop_moed
done

if [ "${packed_note:-0}" -gt 0 ]; then
	extra=$((backend_on - backend_off))
	[ "$extra" -ge "$ebytes" ] ||
		fail "prepack = on adds $extra bytes, less than the experts' $ebytes bf16 bytes"
	[ "$extra" -le $((ebytes + ebytes / 10)) ] ||
		fail "prepack = on adds $extra bytes, over 1.1x the experts' $ebytes"
	ok "prepack = on: backend $backend_on bytes, off $backend_off; experts in bf16 $ebytes"
else
	grep -q "has no effect here" "$TMP/moed.log" 2>/dev/null
	echo "prepack had no effect on this CPU (no AVX512-BF16): packed copy not checked"
fi
finish
