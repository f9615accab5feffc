#!/bin/bash
# moectl cluster show / rebalance against the real moed started without
# mpirun: both say the cluster is not enabled, in text and as JSON, and
# rebalance (an admin request) is answered the same way to an admin peer.
# Then against tests/client/fake_moed.py answering a three-rank job, encoded
# there by hand: the JSON keys and values issue 16 fixes, and the text table.
. "$top_srcdir/tests/lib.sh"
PY=${PYTHON3:-/usr/bin/python3}

start_moed --model synthetic:S0 || { echo "FAIL: moed did not start"; exit 1; }
for op in show rebalance; do
	if "$MOECTL" cluster $op >"$TMP/out" 2>"$TMP/err"; then
		if [ "$(cat "$TMP/out")" = "cluster: not enabled (single process)" ]; then
			ok "cluster $op: not enabled"
		else
			fail "cluster $op said: $(cat "$TMP/out")"
		fi
	else
		fail "cluster $op exited $?: $(cat "$TMP/err")"
	fi
	"$MOECTL" cluster $op --json >"$TMP/json" 2>"$TMP/err" ||
		fail "cluster $op --json exited $?: $(cat "$TMP/err")"
	if "$PY" -c 'import json, sys
j = json.load(open(sys.argv[1]))
ok = j["enabled"] is False and j["ranks"] == [] and j["balancedness"] == {} and j["placement"] is None
ok = ok and (("previous" in j) == (sys.argv[2] == "rebalance"))
sys.exit(0 if ok else 1)' "$TMP/json" "$op"; then
		ok "cluster $op --json: enabled false, no ranks"
	else
		fail "cluster $op --json: $(cat "$TMP/json")"
	fi
done
expect_fail 2 "want 'show' or 'rebalance'" "$MOECTL" cluster
expect_fail 2 "want 'show' or 'rebalance'" "$MOECTL" cluster frobnicate
expect_fail 2 "unexpected argument" "$MOECTL" cluster show extra
stop_moed

# fake_cluster OP ARGS...: moectl cluster OP ARGS against one fake answer, into $TMP/out
fake_cluster() {
	local sock="$TMP/fake.sock" pid
	rm -f "$sock"
	"$PY" "$top_srcdir/tests/client/fake_moed.py" "$sock" cluster &
	pid=$!
	for _ in $(seq 1 100); do [ -S "$sock" ] && break; sleep 0.05; done
	"$MOECTL" -s "$sock" -t 10 cluster "$@" >"$TMP/out" 2>"$TMP/err" ||
		fail "cluster $* against the fake exited $?: $(cat "$TMP/err")"
	kill "$pid" 2>/dev/null
	wait "$pid" 2>/dev/null
}
for op in show rebalance; do
	fake_cluster $op --json
	if "$PY" -c 'import json, sys
j = json.load(open(sys.argv[1]))
r = j["ranks"]
checks = [
    j["enabled"] is True, j["placement"] == "balanced", j["replicas"] == 1, j["epoch"] == 4,
    j["front_computes"] is False, j["timeout_ms"] == 10000, len(r) == 3,
    [x["rank"] for x in r] == [0, 1, 2], r[0]["front"] is True, r[0]["experts"] == {},
    r[1]["host"] == "node-a", r[1]["pid"] == 4001, r[1]["front"] is False,
    r[1]["experts"] == {"3": [0, 1, 2]}, r[1]["computed"] == {"3": [300, 20, 7]},
    r[1]["bytes"] == 1610612736, r[1]["window_tokens"] == 327, r[1]["dispatches"] == 11,
    r[2]["experts"] == {"3": [2, 3]}, r[2]["window_tokens"] == 13,
    j["balancedness"] == {"3": 0.9},
    j.get("previous") == ({"3": 0.6} if sys.argv[2] == "rebalance" else None),
]
bad = [i for i, c in enumerate(checks) if not c]
sys.exit("failed checks %s" % bad if bad else 0)' "$TMP/out" "$op" 2>"$TMP/err"; then
		ok "cluster $op --json of a three-rank job"
	else
		fail "cluster $op --json: $(cat "$TMP/err"): $(cat "$TMP/out")"
	fi
done
fake_cluster rebalance
before=$failures
grep -qx "placement balanced  replicas 1  epoch 4  front_computes no  timeout_ms 10000" "$TMP/out" ||
	fail "cluster rebalance header: $(cat "$TMP/out")"
grep -Eq "^1 +node-a +4001 +3 +1.5 GiB +327 +11$" "$TMP/out" ||
	fail "cluster rebalance: no row for rank 1: $(cat "$TMP/out")"
grep -Eq "^0\* +front.example " "$TMP/out" || fail "cluster rebalance: front not marked: $(cat "$TMP/out")"
grep -Eq "^3 +0.9000 +0.6000$" "$TMP/out" ||
	fail "cluster rebalance: layer 3 balancedness 0.9 after, 0.6 before: $(cat "$TMP/out")"
[ "$failures" = "$before" ] && ok "cluster rebalance text of a three-rank job"
finish
