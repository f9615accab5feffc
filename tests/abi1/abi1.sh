#!/bin/bash
# A router built against the frozen ABI-1 header (tests/abi1) serves from the
# real daemon: moed starts with it, `moectl route` shows its choices and
# `moectl infer` runs the cpu backend behind it; `moectl plugins` lists it as
# ABI 1.  The expected experts, (offset + t + j) mod E, are computed here.
. "$top_srcdir/tests/lib.sh"
PY=${PYTHON3:-/usr/bin/python3}
PDIR="$TMP/plugins"
mkdir -p "$PDIR"
cp "$MOED_TEST_PLUGIN_DIR"/*.so "$PDIR/"
cp "$MOED_TEST_MOCK_DIR/abi1-router.so" "$PDIR/"
MOED_TEST_PLUGIN_DIR="$PDIR"
printf '[router]\nplugin = abi1-router\noffset = 5\n' >"$TMP/moed.conf"
start_moed --config "$TMP/moed.conf" || exit 1

"$MOECTL" --json router show >"$TMP/show.json" || fail "router show"
"$MOECTL" --json status >"$TMP/status.json" || fail "status"
layer=$($PY -c 'import json,sys; print(json.load(open(sys.argv[1]))["layers"][0]["layer"])' "$TMP/show.json")
grep -q '"abi1-router"' "$TMP/show.json" && ok "moed serves the ABI-1 router" || fail "router show: $(cat "$TMP/show.json")"
"$MOECTL" --json route --layer "$layer" --random 4 --seed 3 >"$TMP/route.json" || fail "route"
$PY - "$TMP/route.json" "$TMP/status.json" <<'PY' && ok "ABI-1 router's routes" || fail "routes: $(head -c 400 "$TMP/route.json")"
import json, sys
r = json.load(open(sys.argv[1]))
st = json.load(open(sys.argv[2]))
def find(d, key):
    if isinstance(d, dict):
        if key in d:
            return d[key]
        for v in d.values():
            x = find(v, key)
            if x is not None:
                return x
    if isinstance(d, list):
        for v in d:
            x = find(v, key)
            if x is not None:
                return x
E = st["model"]["n_routed_experts"]
ex = r["experts"]
k = len(ex[0])
for t, row in enumerate(ex):
    want = [(5 + t + j) % E for j in range(k)]
    if row != want:
        print("token %d: %s, want %s" % (t, row, want)); sys.exit(1)
for t, row in enumerate(r["weights"]):
    if any(abs(w - 1.0 / k) > 1e-6 for w in row):
        print("weights", row); sys.exit(1)
PY
"$MOECTL" infer --layer "$layer" --random 4 --seed 3 >/dev/null && ok "infer through the ABI-1 router" || fail "infer"
"$MOECTL" --json plugins >"$TMP/plugins.json" || fail "plugins"
$PY -c '
import json, sys
d = json.load(open(sys.argv[1]))
a = [p for p in d.get("available", []) if p.get("name") == "abi1-router"]
sys.exit(0 if a and a[0].get("abi_version") == 1 and not a[0].get("error") else 1)' "$TMP/plugins.json" &&
	ok "listed as ABI 1" || fail "plugins: $(head -c 600 "$TMP/plugins.json")"
stop_moed
finish
