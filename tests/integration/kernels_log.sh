#!/bin/bash
# The cpu backend's notice of what its layers run on ("cpu: kernels: isa ...,
# ... weights, precision ..., GEMM (...) from N tokens"): once for a model
# whose layers agree (S0 has 3 MoE layers), naming the instruction set that
# /proc/cpuinfo's flags say auto must pick (amx_bf16 + amx_tile +
# avx512_bf16: amx; avx512_bf16: avx512bf16; avx512f: avx512; avx2 + fma:
# avx2; else generic); an isa set in the config is named without "(auto)",
# and precision = exact on BF16 weights says so.  Under valgrind (which hides
# AVX-512 from the guest) only the line itself is checked.
. "$top_srcdir/tests/lib.sh"

flags=$(grep -m1 '^flags' /proc/cpuinfo)
has() { case " ${flags#*:} " in *" $1 "*) return 0 ;; esac; return 1; }
if has amx_bf16 && has amx_tile && has avx512_bf16; then want=amx
elif has avx512_bf16; then want=avx512bf16
elif has avx512f; then want=avx512
elif has avx2 && has fma; then want=avx2
else want=generic; fi

# lines CONF: the kernels notices of a daemon started on CONF, into $TMP/lines
lines() {
	start_moed --model synthetic:S0 --config "$1" || { fail "moed on $1"; return 1; }
	"$MOECTL" infer --layer 1 --random 4 >/dev/null || fail "infer on $1"
	stop_moed
	grep -F "cpu: kernels: " "$TMP/moed.log" >"$TMP/lines"
	[ "$(wc -l <"$TMP/lines")" = 1 ] ||
		{ fail "$1: want one kernels notice for 3 agreeing layers: $(cat "$TMP/lines")"; return 1; }
	grep -q "notice: cpu: kernels: isa [a-z0-9]*\( (auto)\)\?, \(F32\|BF16\|FP8 E4M3\) weights, precision \(exact\|bf16\), GEMM (.*) from [0-9]* tokens" "$TMP/lines" ||
		{ fail "$1: the notice does not read as documented: $(cat "$TMP/lines")"; return 1; }
}

printf '[expert]\nweights = bf16\n' >"$TMP/auto.conf"
if lines "$TMP/auto.conf"; then
	if [ -n "${MOED_WRAPPER:-}" ]; then
		ok "under a wrapper: $(cat "$TMP/lines")"
	elif grep -qF "isa $want (auto), BF16 weights" "$TMP/lines"; then
		ok "auto picks $want as the CPU flags say: $(cat "$TMP/lines")"
	else
		fail "want isa $want (auto), BF16 weights: $(cat "$TMP/lines")"
	fi
fi
printf '[expert]\nweights = bf16\nprecision = exact\nisa = generic\n' >"$TMP/generic.conf"
if lines "$TMP/generic.conf"; then
	grep -qF "isa generic, BF16 weights, precision exact, GEMM (OpenBLAS sgemm)" "$TMP/lines" &&
		ok "a configured isa: $(cat "$TMP/lines")" ||
		fail "want isa generic, precision exact, OpenBLAS sgemm: $(cat "$TMP/lines")"
fi
finish
