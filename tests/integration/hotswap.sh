#!/bin/bash
# Hot swap under load: 4 clients send infer requests without pause while the
# router of every layer is swapped 100 times, alternating plugins and
# parameters.  No request may fail; every reply's output must equal the
# reference output (numpy) of the router configuration of the generation it
# names; every replaced generation must be finalised exactly once.  Then: an
# updated plugin file on disk really runs as new code after a swap, and a
# plugin that fails to load leaves the current generation serving.
. "$top_srcdir/tests/lib.sh"
. "$top_srcdir/tests/swap_lib.sh"
need_numpy
PY=${PYTHON3:-/usr/bin/python3}
$PY "$top_srcdir/tests/ref/make_cases.py" "$TMP/cases" >/dev/null || exit 1
CASE="$TMP/cases/good/v3"
X="$CASE/x_7.npy"
$PY "$top_srcdir/tests/ref/swap_expect.py" "$CASE" 1 "$X" "$TMP/expect" || exit 1

# a private plugin directory: the real plugins plus the versioned test router
PDIR="$TMP/plugins"
mkdir -p "$PDIR"
cp "$MOED_TEST_PLUGIN_DIR"/*.so "$PDIR/"
cp "$MOED_TEST_MOCK_DIR/versioned-v1.so" "$PDIR/versioned.so"
MOED_TEST_PLUGIN_DIR="$PDIR"
start_moed --model "$CASE" --workers 2 -v || exit 1

swap_under_load "$X" "$TMP/load" 25
[ "$swaps" -eq 100 ] && [ "$swap_fail" -eq 0 ] && ok "100 swaps under load" ||
	fail "swaps: $swaps ok, $swap_fail failed"

$PY - "$TMP/load" "$TMP/configs" "$TMP/expect" <<'PY' && ok "every reply matches its generation's reference" || fail "replies under swap"
import json, os, sys
import numpy as np
load, configs, expect = sys.argv[1:4]
s = json.load(open(os.path.join(load, "summary.json")))
gens = dict(line.split() for line in open(configs))
print("load: %d ok, %d failed, %d (generation, output) pairs, %d generations seen"
      % (s["ok"], s["failed"], len(s["outputs"]), len({o["generation"] for o in s["outputs"]})))
assert s["failed"] == 0, s["errors"]
assert s["ok"] > 100, "too few requests under load"
bad = 0
for o in s["outputs"]:
    cfg = gens.get(str(o["generation"]))
    y = np.load(os.path.join(load, o["file"]))
    want = np.load(os.path.join(expect, cfg + ".npy"))
    err = np.abs(y - want).max() / np.abs(want).max()
    if err > 1e-5:
        bad += 1
        print("generation %d (%s, router %s): rel err %.2e" % (o["generation"], cfg, o["router"], err))
assert len({o["generation"] for o in s["outputs"]}) > 10, "load did not span the swaps"
assert bad == 0
PY

# concurrent requests were coalesced: fewer engine calls than requests
"$MOECTL" --json stats --layer 1 >"$TMP/stats.json" || fail "stats"
$PY - "$TMP/stats.json" <<'PY' && ok "coalescing under load" || fail "no coalescing under load"
import json, sys
l = json.load(open(sys.argv[1]))["layers"][0]
print("layer 1: %d requests in %d engine calls" % (l["requests"], l["batches"]))
assert 0 < l["batches"] < l["requests"]
PY

# each replaced generation finalised exactly once; the current one not yet
$PY - "$TMP/moed.log" "$TMP/configs" <<'PY' && ok "old generations finalised once each" || fail "generation release"
import collections, re, sys
released = collections.Counter(re.findall(r"generation (\d+) released", open(sys.argv[1]).read()))
gens = [line.split()[0] for line in open(sys.argv[2])]
current = gens[-1]
missing = [g for g in gens[:-1] if released[g] != 1]
assert not missing, "released counts: %s" % {g: released[g] for g in missing}
assert released[current] == 0
PY

# a replaced file on disk is new code after a swap
"$MOECTL" router set versioned >/dev/null || fail "swap to versioned v1"
"$MOECTL" --json route --layer 1 --input "$X" | grep -q '"experts":\[\[0,1,2,3\]' ||
	"$MOECTL" --json route --layer 1 --input "$X" | tr -d ' \n' | grep -q '"experts":\[\[0,1,2,3\]' ||
	fail "v1 routes"
cp "$MOED_TEST_MOCK_DIR/versioned-v2.so" "$PDIR/versioned.so"
"$MOECTL" router set versioned >/dev/null || fail "swap to versioned v2"
"$MOECTL" --json route --layer 1 --input "$X" | tr -d ' \n' | grep -q '"experts":\[\[15,14,13,12\]' &&
	ok "updated plugin file runs as new code" || fail "v2 routes: $("$MOECTL" route --layer 1 --input "$X")"

# broken candidates leave the current generation serving
gen_before=$("$MOECTL" --json router show | tr -d ' \n')
cp "$MOED_TEST_MOCK_DIR/bad-abi.so" "$MOED_TEST_MOCK_DIR/failing-init.so" "$PDIR/"
expect_fail 1 "ABI 999, want 1" "$MOECTL" router set bad-abi
expect_fail 1 "init failed" "$MOECTL" router set failing-init
expect_fail 1 "not valid" "$MOECTL" router set ../plugins/cpu
expect_fail 1 "unknown parameter 'gama'" "$MOECTL" router set bias-balanced --param gama=1
# expert backends swap too: a new generation with other parameters computes the
# same layer; one that cannot take the weights says so and nothing changes
"$MOECTL" router set sigmoid-norm >/dev/null || fail "back to sigmoid-norm"
"$MOECTL" expert set cpu --param kernel=gemm >/dev/null || fail "expert set cpu kernel=gemm"
"$MOECTL" infer --layer 1 --input "$X" --output "$TMP/y_gemm.npy" >/dev/null || fail "infer after expert swap"
$PY -c "
import numpy as np, sys
y = np.load('$TMP/y_gemm.npy'); want = np.load('$TMP/expect/sigmoid-norm.npy')
err = np.abs(y - want).max() / np.abs(want).max()
print('expert generation with kernel=gemm: rel err %.2e' % err)
sys.exit(0 if err <= 1e-5 else 1)" && ok "swapped expert backend matches the reference" || fail "expert swap output"
bind_before=$("$MOECTL" --json router show | tr -d ' \n')
expect_fail 1 "'kernel' = 'bogus'" "$MOECTL" expert set cpu --param kernel=bogus
expect_fail 1 "is a router plugin, want expert" "$MOECTL" expert set softmax-topk
[ "$("$MOECTL" --json router show | tr -d ' \n')" = "$bind_before" ] && ok "failed expert swaps change nothing" ||
	fail "bindings changed by a failed expert swap"
gen_before=$bind_before

# a plugin file or directory others may write is refused, naming the path
chmod o+w "$PDIR/softmax-topk.so"
expect_fail 1 "plugin file '$PDIR/softmax-topk.so' is writable by others" "$MOECTL" router set softmax-topk
chmod o-w "$PDIR/softmax-topk.so"
chmod g+w "$PDIR"
expect_fail 1 "plugin directory '$PDIR' is writable by its group" "$MOECTL" router set softmax-topk
chmod g-w "$PDIR"
[ "$("$MOECTL" --json router show | tr -d ' \n')" = "$gen_before" ] && ok "bindings unchanged" ||
	fail "bindings changed by a failed swap"
"$MOECTL" infer --layer 1 --input "$X" >/dev/null || fail "infer after failed swaps"
stop_moed
finish
