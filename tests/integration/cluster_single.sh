#!/bin/bash
# moectl cluster show / rebalance against the real moed started without
# mpirun: both say the cluster is not enabled, in text and as JSON, and
# rebalance (an admin request) is answered the same way to an admin peer.
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
finish
