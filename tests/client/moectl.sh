#!/bin/bash
# moectl against the real moed and against a misbehaving fake (fake_moed.py):
# exit codes (0 ok, 1 server error with "STATUS: message", 2 usage, 3
# unreachable/protocol/timeout) each with a one-line reason; --help per
# command; --json before or after the command; the HF names of `model --json`;
# infer/route output shapes; input files refused before a round trip; and the
# documented --random generator, recomputed here in Python and sent with
# --input: the daemon must answer both byte for byte the same.
. "$top_srcdir/tests/lib.sh"
PY=${PYTHON3:-/usr/bin/python3}
FAKE="$top_srcdir/tests/client/fake_moed.py"
have_py=1
"$PY" -c 'import json, struct' 2>/dev/null || have_py=0

# npy FILE DESCR FORTRAN SHAPE DATA: a version 1.0 .npy written by hand
npy() {
	local dict="{'descr': '$2', 'fortran_order': $3, 'shape': $4, }" hlen
	hlen=$(( (10 + ${#dict} + 1 + 63) / 64 * 64 - 10 ))
	{
		printf '\x93NUMPY\x01\x00'
		printf "\\x$(printf %02x $((hlen & 255)))\\x$(printf %02x $((hlen >> 8)))"
		printf '%s%*s\n' "$dict" $((hlen - ${#dict} - 1)) ''
		cat "$5"
	} >"$1"
}

# json_check FILE PYTHON-EXPRESSION: the expression over `j` holds
json_check() {
	[ "$have_py" = 1 ] || return 0
	"$PY" -c 'import json, sys; j = json.load(open(sys.argv[1])); sys.exit(0 if eval("(" + sys.argv[2] + ")") else 1)' \
		"$1" "$2" || fail "$1: not true: $2 ($(head -c 300 "$1"))"
}

# ---- without a daemon: usage and unreachable ----
expect_fail 2 "Usage: moectl" "$MOECTL"
expect_fail 2 "unknown command 'frobnicate'" "$MOECTL" frobnicate
expect_fail 2 "--timeout" "$MOECTL" -t soon status
expect_fail 2 "unexpected argument" "$MOECTL" status extra
"$MOECTL" --version | grep -q "^moectl [0-9]" || fail "moectl --version"
"$MOECTL" --help >"$TMP/help" || fail "moectl --help exits 0"
for cmd in status plugins model infer route; do
	grep -q "^  moectl $cmd" "$TMP/help" || fail "--help lacks $cmd"
	"$MOECTL" "$cmd" --help | grep -q "^usage: moectl $cmd" || fail "moectl $cmd --help"
done
long=$TMP/$(printf 'x%.0s' $(seq 1 110)).sock
expect_fail 2 "too long" "$MOECTL" -s "$long" status
expect_fail 3 "cannot connect to moed at '$TMP/none.sock'" "$MOECTL" -s "$TMP/none.sock" status
MOED_SOCKET="$TMP/env.sock" expect_fail 3 "'$TMP/env.sock'" "$MOECTL" status
expect_fail 2 "--layer is required" "$MOECTL" infer --random 2
expect_fail 2 "exactly one of" "$MOECTL" infer --layer 1
expect_fail 2 "exactly one of" "$MOECTL" route --layer 1 --random 2 --input "$TMP/x.npy"
expect_fail 2 "--output is for infer" "$MOECTL" route --layer 1 --random 1 --output "$TMP/y.npy"
expect_fail 2 "--random needs at least 1" "$MOECTL" infer --layer 1 --random 0
# the input file is read before connecting: a bad file is a usage error even with no daemon
expect_fail 2 "missing.npy: No such file" "$MOECTL" -s "$TMP/none.sock" infer --layer 1 \
	--input "$TMP/missing.npy"

# ---- inputs moectl refuses itself ----
head -c 1024 /dev/zero >"$TMP/zeros"
printf '\x00\x00\x80\x3f\x00\x00\x80\x3f\x00\x00\xc0\x7f\x00\x00\x00\x00' >"$TMP/nan"
npy "$TMP/nan.npy" '<f4' False '(2, 2)' "$TMP/nan"
npy "$TMP/empty.npy" '<f4' False '(0, 256)' /dev/null
npy "$TMP/fortran.npy" '<f4' True '(4, 64)' "$TMP/zeros"
npy "$TMP/int.npy" '<i4' False '(1, 256)' "$TMP/zeros"
npy "$TMP/half.npy" '<f2' False '(2, 256)' "$TMP/zeros"
npy "$TMP/short.npy" '<f4' False '(2, 256)' "$TMP/zeros"
expect_fail 2 "input[1][0] is not finite" "$MOECTL" -s "$TMP/none.sock" infer --layer 1 --input "$TMP/nan.npy"
expect_fail 2 "empty" "$MOECTL" -s "$TMP/none.sock" route --layer 1 --input "$TMP/empty.npy"
expect_fail 2 "Fortran" "$MOECTL" -s "$TMP/none.sock" infer --layer 1 --input "$TMP/fortran.npy"
expect_fail 2 "must be float32" "$MOECTL" -s "$TMP/none.sock" infer --layer 1 --input "$TMP/int.npy"
expect_fail 2 "'<f2' is not supported" "$MOECTL" -s "$TMP/none.sock" infer --layer 1 --input "$TMP/half.npy"
expect_fail 2 "does not match" "$MOECTL" -s "$TMP/none.sock" infer --layer 1 --input "$TMP/short.npy"

# ---- a daemon that misbehaves: exit 3 with a reason, within the timeout ----
fake() {        # fake MODE EXIT NEEDLE: run moectl -t 2 status against fake_moed.py MODE
	local sock="$TMP/fake-$1.sock" pid start
	"$PY" "$FAKE" "$sock" "$1" &
	pid=$!
	for _ in $(seq 1 100); do [ -S "$sock" ] && break; sleep 0.05; done
	start=$(date +%s)
	expect_fail "$2" "$3" "$MOECTL" -s "$sock" -t 2 status
	[ $(($(date +%s) - start)) -le 8 ] || fail "fake $1: moectl took $(($(date +%s) - start)) s with -t 2"
	kill "$pid" 2>/dev/null
	wait "$pid" 2>/dev/null
}
if [ "$have_py" = 1 ]; then
	fake silent 3 "no reply from moed"
	fake garbage 3 "protocol error: undecodable reply"
	fake version 3 "speaks protocol 2"
	fake nobody 3 "protocol error"
	fake stall 3 "within 2000 ms"
	# the hello is pipelined with the first request: a refused one still
	# means unreachable, and a reply that overtakes it is not lost
	fake refused 3 "fake: no hello today"
	fake reorder 1 "fake: answered before the hello"
else
	echo "SKIP part: no $PY for the fake daemon"
fi

# ---- the real daemon (synthetic S0: H 256, MoE layers 1-3, top-4 of 16) ----
start_moed || { fail "moed did not start"; finish; }

"$MOECTL" status >"$TMP/status" || fail "status"
grep -q "moed " "$TMP/status" && grep -q "generation" "$TMP/status" || fail "status output: $(cat "$TMP/status")"
"$MOECTL" plugins >"$TMP/plugins" || fail "plugins"
grep -q "^loaded:" "$TMP/plugins" && grep -q "router" "$TMP/plugins" || fail "plugins output"
"$MOECTL" model | grep -q "H 256" || fail "model human output"

"$MOECTL" --json model >"$TMP/model.json" || fail "model --json"
"$MOECTL" model --json >"$TMP/model2.json" || fail "model --json after the command"
cmp -s "$TMP/model.json" "$TMP/model2.json" || fail "--json before and after the command differ"
json_check "$TMP/model.json" 'all(k in j for k in ("hidden_size", "moe_intermediate_size",
	"n_routed_experts", "num_experts_per_tok", "n_group", "topk_group", "n_shared_experts",
	"scoring_func", "topk_method", "routed_scaling_factor", "norm_topk_prob",
	"num_hidden_layers", "moe_layers", "dtype", "weight_bytes", "source", "model_type"))'
json_check "$TMP/model.json" 'j["hidden_size"] == 256 and j["moe_layers"] == [1, 2, 3]'
"$MOECTL" status --json >"$TMP/status.json" || fail "status --json"
json_check "$TMP/status.json" 'j["model"]["hidden_size"] == 256 and "uptime_ms" in j and
	"requests_served" in j and all("generation" in p for p in j["plugins"])'
"$MOECTL" --json plugins >"$TMP/plugins.json" || fail "plugins --json"
json_check "$TMP/plugins.json" 'all({"name", "kind", "abi_version"} <= set(p)
	for p in j["loaded"] + j["available"]) and len(j["loaded"]) >= 2'

"$MOECTL" infer --layer 1 --random 3 >"$TMP/infer" || fail "infer"
grep -q "3 tokens x 256" "$TMP/infer" && grep -q "round trip" "$TMP/infer" ||
	fail "infer summary: $(cat "$TMP/infer")"
"$MOECTL" infer --json --layer 2 --random 5 --seed 9 >"$TMP/infer.json" || fail "infer --json"
json_check "$TMP/infer.json" 'j["tokens"] == 5 and j["hidden_size"] == 256 and j["layer"] == 2
	and j["l2_norm"] > 0 and j["router"] and j["generation"] >= 1'
"$MOECTL" --json route --layer 3 --random 6 --seed 1 >"$TMP/route.json" || fail "route --json"
json_check "$TMP/route.json" 'len(j["experts"]) == 6 and all(len(e) == 4 and
	all(isinstance(i, int) and 0 <= i < 16 for i in e) for e in j["experts"]) and
	[len(w) for w in j["weights"]] == [4] * 6 and j["layer"] == 3 and j["router"] and
	j["generation"] >= 1'
"$MOECTL" route --layer 3 --random 2 | grep -c "^token" | grep -qx 2 || fail "route human output"
"$MOECTL" --json route --layer 3 --random 6 --seed 1 | cmp -s - "$TMP/route.json" ||
	fail "route --random is not reproducible"
"$MOECTL" --json route --layer 3 --random 6 --seed 2 | cmp -s - "$TMP/route.json" &&
	fail "--seed 1 and 2 route the same"

# the daemon's refusals: STATUS: message, exit 1, daemon keeps serving
expect_fail 1 "NOT_FOUND: " "$MOECTL" infer --layer 9 --random 1
head -c 1020 /dev/zero >"$TMP/zeros255"
npy "$TMP/wrongH.npy" '<f4' False '(1, 255)' "$TMP/zeros255"
expect_fail 1 "INVALID_ARGUMENT: hidden size 255" "$MOECTL" infer --layer 1 --input "$TMP/wrongH.npy"
expect_fail 1 "INVALID_ARGUMENT: " "$MOECTL" route --layer 1 --input "$TMP/wrongH.npy"
# over the daemon's 64 MiB frame limit: it says so before closing, moectl shows it
expect_fail 1 "RESOURCE_EXHAUSTED: " "$MOECTL" infer --layer 1 --random 70000
"$MOECTL" status >/dev/null || fail "daemon not serving after refused requests"

# --random is the documented generator: recomputed here, sent as --input
if [ "$have_py" = 1 ]; then
	"$PY" - "$TMP/rand.npy" <<'EOF' || fail "writing the reference input"
import struct, sys
T, H, seed, M = 7, 256, 12345, (1 << 64) - 1
s, vals = seed, []
for _ in range(T * H):
    s = (s + 0x9E3779B97F4A7C15) & M
    z = s
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & M
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & M
    z ^= z >> 31
    vals.append((z >> 40) / 2.0 ** 23 - 1.0)     # exact in float32
d = "{'descr': '<f4', 'fortran_order': False, 'shape': (%d, %d), }" % (T, H)
d += " " * (-(10 + len(d) + 1) % 64) + "\n"
with open(sys.argv[1], "wb") as f:
    f.write(b"\x93NUMPY\x01\x00" + struct.pack("<H", len(d)) + d.encode())
    f.write(struct.pack("<%df" % len(vals), *vals))
EOF
	"$MOECTL" infer --layer 2 --input "$TMP/rand.npy" --output "$TMP/y_input.npy" >/dev/null ||
		fail "infer --input"
	"$MOECTL" infer --layer 2 --random 7 --seed 12345 --output "$TMP/y_random.npy" >/dev/null ||
		fail "infer --random --output"
	cmp -s "$TMP/y_input.npy" "$TMP/y_random.npy" &&
		ok "--random 7 --seed 12345 is the documented splitmix64 input" ||
		fail "--random differs from the documented generator"
	"$MOECTL" --json route --layer 2 --input "$TMP/rand.npy" >"$TMP/r1.json"
	"$MOECTL" --json route --layer 2 --random 7 --seed 12345 >"$TMP/r2.json"
	cmp -s "$TMP/r1.json" "$TMP/r2.json" || fail "route --random differs from --input"
	if "$PY" -c 'import numpy' 2>/dev/null; then
		"$PY" -c 'import numpy as np, sys
y = np.load(sys.argv[1])
assert y.dtype == np.float32 and y.shape == (7, 256) and np.isfinite(y).all(), (y.dtype, y.shape)' \
			"$TMP/y_input.npy" || fail "numpy cannot read infer --output"
	fi
fi

stop_moed
expect_fail 3 "cannot connect" "$MOECTL" status
finish
