#!/bin/bash
# End-to-end benchmark of the real daemon against the kernel bench, one run
# (`make bench-e2e`; not part of make check).  For each weight dtype it
#  1. runs bench/expert_bench on the same shape and dtype at T = 1 and 32
#     (cold and hot; no peer), the kernels alone through the plugin API;
#  2. starts moed on the synthetic model with [expert] weights = DTYPE and
#     [daemon] workers = THREADS, and measures with the real moectl:
#     - moectl bench, 1 client x 1 token: round trip p50 and the daemon's
#       compute_us p50 against the kernel bench's T=1 (the ratio is what the
#       daemon adds to the kernels; compute vs kernel is the plugin inside the
#       daemon against the plugin alone);
#     - one whole `moectl infer --input X.npy --output Y.npy` process (start,
#       connect, handshake, .npy read and write), timed by the shell with
#       $EPOCHREALTIME, RUNS times, alternating with `moectl --json infer` of
#       the same input, which reports its own round trip: the median process
#       minus the median round trip is what a one-shot command adds to a T=1
#       call; /bin/true, timed the same way in the same loop, is the floor
#       (what the shell's fork and exec of any program cost here);
#     - 32 concurrent one-token clients against one client sending 32-token
#       requests: aggregate tokens/s ratio (coalescing's cost) and p50/p99;
#       and against the serial one-token client (what coalescing gains).
# Every request carries new random hidden states, so the router picks new
# experts each time (decode reads cold-ish weights, as in a real model).
# Prints a table and writes the figures as JSON (--out).  Timings on a shared
# machine are noisy: quote ratios from one run.
#
#	bench/e2e.sh [--model synthetic:S1] [--weights "fp32 bf16"] [--threads N]
#	             [--duration S] [--runs N] [--out FILE]
#
# synthetic:V3 is held as FP8 as stored: --model synthetic:V3 --weights fp8
# (moed does not quantise S1 to FP8).  Needs moed, moectl, plugins/.libs/cpu.so
# and bench/expert_bench built in the build tree (make bench-e2e builds them).
set -u
builddir=${builddir:-.}
MOED=${MOED:-$builddir/moed}
MOECTL=${MOECTL:-$builddir/moectl}
EXPERT_BENCH=${EXPERT_BENCH:-$builddir/bench/expert_bench}
PLUGIN_DIR=${PLUGIN_DIR:-$builddir/plugins/.libs}
PY=${PYTHON3:-/usr/bin/python3}
MODEL=synthetic:S1
WEIGHTS="fp32 bf16"
THREADS=$(nproc)
DURATION=10
RUNS=30
OUT=bench-e2e.json

while [ $# -gt 0 ]; do
	case $1 in
	--model) MODEL=$2; shift ;;
	--weights) WEIGHTS=$2; shift ;;
	--threads) THREADS=$2; shift ;;
	--duration) DURATION=$2; shift ;;
	--runs) RUNS=$2; shift ;;
	--out) OUT=$2; shift ;;
	*) echo "usage: $0 [--model M] [--weights \"fp32 bf16\"] [--threads N] [--duration S] [--runs N] [--out FILE]" >&2
	   exit 2 ;;
	esac
	shift
done
for f in "$MOED" "$MOECTL" "$EXPERT_BENCH" "$PLUGIN_DIR/cpu.so"; do
	[ -e "$f" ] || { echo "e2e: '$f' is missing: build it first (make bench-e2e does)" >&2; exit 1; }
done
[ "${BASH_VERSINFO[0]}" -ge 5 ] || { echo "e2e: needs bash 5 (\$EPOCHREALTIME)" >&2; exit 1; }

TMP=$(mktemp -d /tmp/moed-e2e.XXXXXX)
SOCK=$TMP/moed.sock
MOED_PID=
cleanup() {
	[ -n "$MOED_PID" ] && kill -TERM "$MOED_PID" 2>/dev/null && wait "$MOED_PID"
	rm -rf "$TMP"
}
trap cleanup EXIT
ctl() { "$MOECTL" --socket "$SOCK" "$@"; }

shape=
case $MODEL in synthetic:*) shape=${MODEL#synthetic:} ;; esac

start_moed() {  # weights
	cat >"$TMP/moed.conf" <<EOF
[daemon]
workers = $THREADS
[model]
path = $MODEL
[expert]
weights = $1
EOF
	"$MOED" --socket "$SOCK" --plugin-dir "$PLUGIN_DIR" --state-dir "$TMP" \
		--config "$TMP/moed.conf" >"$TMP/moed.log" 2>&1 &
	MOED_PID=$!
	# generating S1 (4.6 GB) or V3 (11 GB) takes a while on a small machine
	for _ in $(seq 1 6000); do
		ctl status >/dev/null 2>&1 && return 0
		kill -0 "$MOED_PID" 2>/dev/null || { cat "$TMP/moed.log"; MOED_PID=; return 1; }
		sleep 0.1
	done
	cat "$TMP/moed.log"
	return 1
}

stop_moed() {
	kill -TERM "$MOED_PID"
	wait "$MOED_PID"
	MOED_PID=
}

echo "[]" >"$TMP/all.json"
for w in $WEIGHTS; do
	case $w in fp32) kd=f32 ;; *) kd=$w ;; esac
	echo "== $MODEL, weights $w, $THREADS thread(s)"
	echo "{}" >"$TMP/kernel.json"
	if [ -n "$shape" ]; then
		"$EXPERT_BENCH" -p "$PLUGIN_DIR" -s "$shape" -d "$kd" -t "$THREADS" -T 1,32 -P none \
			-j "$TMP/kernel.json" >"$TMP/kernel.txt" || { cat "$TMP/kernel.txt"; exit 1; }
		sed -n '/T   cold/,$p' "$TMP/kernel.txt"
	fi
	start_moed "$w" || { echo "e2e: moed did not start" >&2; exit 1; }
	ctl --json model >"$TMP/model.json"
	read -r H L < <($PY -c 'import json,sys; m=json.load(open(sys.argv[1])); print(m["hidden_size"], m["moe_layers"][0])' "$TMP/model.json")
	for i in 1 2 3; do ctl infer --layer "$L" --random 1 --seed $i >/dev/null; done
	ctl --json bench --layer "$L" --clients 1 --tokens 1 --duration "$DURATION" >"$TMP/serial1.json"
	ctl --json bench --layer "$L" --clients 1 --tokens 32 --duration "$DURATION" >"$TMP/serial32.json"
	ctl --json bench --layer "$L" --clients 32 --tokens 1 --duration "$DURATION" >"$TMP/conc32.json"
	$PY -c 'import numpy as np,sys; np.save(sys.argv[1], (np.random.default_rng(1).random((1, int(sys.argv[2])), dtype=np.float32) * 2 - 1))' "$TMP/x.npy" "$H"
	: >"$TMP/wall.txt"
	: >"$TMP/spawn.txt"
	rm -f "$TMP"/call.*.json
	for i in $(seq 1 "$RUNS"); do
		t0=$EPOCHREALTIME
		ctl infer --layer "$L" --input "$TMP/x.npy" --output "$TMP/y.npy" >/dev/null || exit 1
		t1=$EPOCHREALTIME
		echo "$t0 $t1" >>"$TMP/wall.txt"
		t0=$EPOCHREALTIME
		/bin/true
		t1=$EPOCHREALTIME
		echo "$t0 $t1" >>"$TMP/spawn.txt"
		ctl --json infer --layer "$L" --input "$TMP/x.npy" >"$TMP/call.$i.json" || exit 1
	done
	stop_moed
	$PY - "$w" "$TMP" "$MODEL" "$THREADS" <<'PY' || exit 1
import glob, json, statistics as st, sys
w, tmp, model, threads = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
load = lambda n: json.load(open("%s/%s" % (tmp, n)))
kern = {r["T"]: r for r in load("kernel.json")} if isinstance(load("kernel.json"), list) else {}
s1, s32, c32 = (load(n) for n in ("serial1.json", "serial32.json", "conc32.json"))
span = lambda n: [(float(b) - float(a)) * 1e3 for a, b in (l.split() for l in open(tmp + n))]
walls, spawns = span("/wall.txt"), span("/spawn.txt")
calls = [json.load(open(f)) for f in glob.glob(tmp + "/call.*.json")]
rt = st.median(c["round_trip_us"] for c in calls) / 1e3
comp = st.median(c["compute_us"] for c in calls) / 1e3
wall = st.median(walls)
p1 = s1["concurrent"]
one32, many = s32["concurrent"], c32["concurrent"]
r = {"model": model, "weights": w, "threads": threads,
     "serial_t1_p50_ms": p1["p50_us"] / 1e3, "serial_t1_compute_p50_ms": p1["compute_p50_us"] / 1e3,
     "infer_process_median_ms": wall, "infer_call_round_trip_median_ms": rt,
     "infer_call_compute_median_ms": comp,
     "infer_process_added_ms": wall - rt,
     "spawn_true_median_ms": st.median(spawns),
     "one_32_token_client_tokens_per_s": one32["tokens_per_s"],
     "one_32_token_client_p50_ms": one32["p50_us"] / 1e3,
     "c32_tokens_per_s": many["tokens_per_s"], "c32_p50_ms": many["p50_us"] / 1e3,
     "c32_p99_ms": many["p99_us"] / 1e3,
     "c32_over_one_32_token_call": many["tokens_per_s"] / one32["tokens_per_s"],
     "c32_over_serial_1_token": many["tokens_per_s"] / p1["tokens_per_s"],
     "c32_p99_over_p50": many["p99_us"] / many["p50_us"],
     "errors": p1["errors"] + one32["errors"] + many["errors"]}
r["t1_outside_compute_fraction"] = 1 - r["serial_t1_compute_p50_ms"] / r["serial_t1_p50_ms"]
print("moectl bench, 1 client x 1 token: round trip p50 %.3f ms, daemon compute p50 %.3f ms"
      " (%.1f%% of the round trip outside compute)" % (r["serial_t1_p50_ms"],
      r["serial_t1_compute_p50_ms"], 100 * r["t1_outside_compute_fraction"]))
for T in (1, 32):
    if T in kern:
        k = kern[T]
        r["kernel_t%d_cold_ms" % T], r["kernel_t%d_hot_ms" % T] = k["ms"], k["hot_ms"]
        r["kernel_t%d_tokens_per_s" % T] = k["tokens_per_s"]
if 1 in kern:
    r["moectl_t1_over_kernel_cold"] = r["serial_t1_p50_ms"] / r["kernel_t1_cold_ms"]
    r["moectl_t1_over_kernel_hot"] = r["serial_t1_p50_ms"] / r["kernel_t1_hot_ms"]
    r["compute_t1_over_kernel_cold"] = r["serial_t1_compute_p50_ms"] / r["kernel_t1_cold_ms"]
    print("  kernel bench T=1: cold %.3f ms, hot %.3f ms; moectl p50 / kernel: %.2f cold, %.2f hot;"
          " daemon compute / kernel cold %.2f" % (r["kernel_t1_cold_ms"], r["kernel_t1_hot_ms"],
          r["moectl_t1_over_kernel_cold"], r["moectl_t1_over_kernel_hot"],
          r["compute_t1_over_kernel_cold"]))
print("moectl infer --input X.npy --output Y.npy, whole process: median %.3f ms over %d runs;"
      " the T=1 call inside it, from moectl --json infer in the same loop: round trip %.3f ms"
      " (compute %.3f): the process adds %.3f ms"
      % (wall, len(walls), rt, comp, r["infer_process_added_ms"]))
print("  the shell starting /bin/true in the same loop: median %.3f ms (the floor of any one-shot"
      " command here)" % r["spawn_true_median_ms"])
print("one client x 32-token requests: %.1f tokens/s (p50 %.3f ms)"
      % (one32["tokens_per_s"], one32["p50_us"] / 1e3), end="")
if 32 in kern:
    r["one_32_token_call_over_kernel"] = one32["tokens_per_s"] / kern[32]["tokens_per_s"]
    print("; kernel bench T=32 cold %.1f tokens/s (%.2f of it)"
          % (kern[32]["tokens_per_s"], r["one_32_token_call_over_kernel"]), end="")
print()
print("32 clients x 1 token: %.1f tokens/s = %.2f of one 32-token client, %.2fx one serial"
      " 1-token client; p50 %.3f ms, p99 %.3f ms (p99/p50 %.2f)" % (many["tokens_per_s"],
      r["c32_over_one_32_token_call"], r["c32_over_serial_1_token"], r["c32_p50_ms"],
      r["c32_p99_ms"], r["c32_p99_over_p50"]))
if r["errors"]:
    print("e2e: %d requests failed" % r["errors"])
    sys.exit(1)
a = json.load(open(tmp + "/all.json"))
a.append(r)
json.dump(a, open(tmp + "/all.json", "w"), indent=1)
PY
done
cp "$TMP/all.json" "$OUT"
echo "figures written to $OUT"
