#!/bin/sh
# Smoke test of the benchmark harness (bench/expert_bench), structure only, no
# timing asserted: on S0 with the quick limits (-q) and one rep, every
# (dtype, T) row is written to the JSON with its fields; the weight bytes
# equal the formula (distinct experts x 3HI + shared, in the dtype's size, fp8
# with its block scales), the roofline time is max(bytes / bandwidth, FLOPs /
# peak) of the row's own limits and peak choice, and the efficiency is
# roofline / measured.  With torch under $PYTHON3, the fp8 row also runs the
# PyTorch peer on the bf16 dequantisation of the same codes and scales (an
# independent build of the layer): its output must agree with ours.
set -u
: "${top_srcdir:?run through make check}" "${top_builddir:?}" "${MOED_TEST_PLUGIN_DIR:?}"
PY=${PYTHON3:-/usr/bin/python3}
BENCH=$top_builddir/bench/expert_bench
TMP=$(mktemp -d "${TMPDIR:-/tmp}/moed-bench-harness.XXXXXX")
trap 'rm -rf "$TMP"' EXIT
"$PY" -c 'import numpy' 2>/dev/null || { echo "SKIP: $PY has no numpy"; exit 77; }
"$BENCH" -q -p "$MOED_TEST_PLUGIN_DIR" -s S0 -d f32,bf16 -t 1 -T 1,4 -r 1 -H 4 -P none \
	-j "$TMP/a.json" >"$TMP/a.txt" || { cat "$TMP/a.txt"; echo "FAIL: expert_bench exited $?"; exit 1; }
peer=none
"$PY" -c 'import torch' 2>/dev/null && peer=$top_srcdir/bench/torch_peer.py
MOED_BENCH_PYTHON=$PY "$BENCH" -q -p "$MOED_TEST_PLUGIN_DIR" -s S0 -d fp8 -t 1 -T 1,4 -r 1 -H 0 \
	-P "$peer" -j "$TMP/b.json" >"$TMP/b.txt" || { cat "$TMP/b.txt"; echo "FAIL: expert_bench fp8 exited $?"; exit 1; }
"$PY" - "$TMP/a.json" "$TMP/b.json" "$peer" <<'PY'
import json, sys
rows = json.load(open(sys.argv[1])) + json.load(open(sys.argv[2]))
H, I, E, k, shared = 256, 128, 16, 4, 1
size = {"f32": 4, "bf16": 2, "fp8": 1}
assert [(r["dtype"], r["T"]) for r in rows] == [
    ("f32", 1), ("f32", 4), ("bf16", 1), ("bf16", 4), ("fp8", 1), ("fp8", 4)], rows
for r in rows:
    n = (r["experts"] * 3 * H * I + shared * 3 * H * I)
    want = n * size[r["dtype"]] + (n / 128 / 128 * 4 if r["dtype"] == "fp8" else 0)
    assert abs(r["weight_bytes"] - want) <= 1, (r, want)
    assert r["flops"] == r["T"] * (k + shared) * 6 * H * I, r
    assert 1 <= r["experts"] <= min(E, k * r["T"]), r
    # bf16/fp8: the AMX peak where the CPU has it (the plugin's default isa
    # there, no -o isa= in these rows), else vdpbf16ps, else sgemm
    peak = r["sgemm_peak_gflops"] if r["dtype"] == "f32" or r["bf16_peak_gflops"] == 0 \
        else r["amx_peak_gflops"] if r["amx_peak_gflops"] > 0 and "isa=" not in r["params"] \
        else r["bf16_peak_gflops"]
    assert r["dtype_peak_gflops"] == peak, r
    mem = r["weight_bytes"] / (r["read_bw_gb_per_s"] * 1e9)
    cpu = r["flops"] / (peak * 1e9)
    # the JSON has 6 significant digits of each figure
    assert abs(r["roofline_ms"] - max(mem, cpu) * 1e3) <= 1e-4 * r["roofline_ms"], r
    assert r["bound"] == ("mem" if mem >= cpu else "cpu"), r
    eff = r["roofline_ms"] / r["ms"]
    assert r["ms"] > 0 and abs(r["efficiency"] - eff) <= 1e-4 * eff + 1e-4, r
    assert (r["hot_ms"] > 0) == (r["dtype"] != "fp8"), r
fp8 = [r for r in rows if r["dtype"] == "fp8"]
if sys.argv[3] != "none":
    for r in fp8:
        # bf16 activations in the peer: about 1e-2 of a token's largest output
        assert r["peer_ms"] > 0 and 0 <= r["peer_max_rel_err"] < 0.05, r
    print("ok: fp8 against the PyTorch peer on its bf16 dequantisation: %s"
          % [r["peer_max_rel_err"] for r in fp8])
else:
    print("note: no torch under this interpreter, the peer is not checked")
print("ok: %d rows, bytes, FLOPs and roofline as computed here" % len(rows))
PY
