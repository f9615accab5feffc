#!/bin/bash
# Regrouping ([limits] coalesce_regroup_us, daemon/batch.c): closed-loop
# clients answered together come back together, and the next batch waits for
# them.  stuck-router with delay_ms=150 makes one layer slow (each call at
# least 150 ms, as a big layer is); 8 moectl bench clients of one token run on
# it for 3 s with regrouping off, then (after a live reload) on.  Off, a batch
# starts as soon as the previous one ends, so the load splits into part
# batches (one request alone, then the other 7, ...); on, every batch holds
# all 8 clients.  Checked through the daemon's own counters (requests and
# engine calls of the layer), not through timings; and a lone client's
# requests still run one per engine call.
. "$top_srcdir/tests/lib.sh"
. "$top_srcdir/tests/integration/hostile_lib.sh"
PDIR="$TMP/plugins"
stuck_plugins "$PDIR"
printf '[limits]\ncoalesce_regroup_us = 0\n' >"$TMP/moed.conf"
start_bounded 30 --plugin-dir "$PDIR" --config "$TMP/moed.conf" || exit 1
L=$(T 10 "$MOECTL" model --json | "$PY" -c 'import json, sys; print(json.load(sys.stdin)["moe_layers"][0])')
T 10 "$MOECTL" router set stuck-router --param delay_ms=150 --layer "$L" >"$TMP/out" 2>&1 ||
	fail "router set stuck-router delay_ms=150: $(cat "$TMP/out")"

# counters of layer L: "requests batches"
counters() {
	T 10 "$MOECTL" --json stats --layer "$L" | "$PY" -c '
import json, sys
d = json.load(sys.stdin)
l = [x for x in d["layers"] if x["layer"] == int(sys.argv[1])][0]
print(l["requests"], l["batches"])' "$L"
}
# mean requests per engine call over `moectl bench --clients N` on layer L
per_batch() {
	local r0 b0 r1 b1
	read -r r0 b0 <<<"$(counters)"
	T 30 "$MOECTL" bench --layer "$L" --clients "$1" --tokens 1 --duration 3 >"$TMP/bench" 2>&1 ||
		fail "moectl bench --clients $1: $(cat "$TMP/bench")"
	read -r r1 b1 <<<"$(counters)"
	"$PY" -c 'import sys; r, b = int(sys.argv[1]), int(sys.argv[2]); print("%.2f" % (r / b if b else 0), r, b)' \
		$((r1 - r0)) $((b1 - b0))
}

read -r off n_off b_off <<<"$(per_batch 8)"
echo "regrouping off: $n_off requests in $b_off engine calls, $off per call"

printf '[limits]\ncoalesce_regroup_us = 20000\n' >"$TMP/moed.conf"
T 10 "$MOECTL" reload --wait >"$TMP/out" 2>&1 || fail "reload: $(cat "$TMP/out")"
read -r on n_on b_on <<<"$(per_batch 8)"
echo "regrouping on (20 ms): $n_on requests in $b_on engine calls, $on per call"

"$PY" -c 'import sys; sys.exit(0 if float(sys.argv[1]) >= 7 else 1)' "$on" &&
	ok "regrouping on: batches hold the 8 clients ($on requests per engine call)" ||
	fail "regrouping on: $on requests per engine call, want >= 7 of the 8 clients"
"$PY" -c 'import sys; sys.exit(0 if float(sys.argv[1]) < float(sys.argv[2]) - 1 else 1)' "$off" "$on" &&
	ok "regrouping off splits the clients ($off per engine call against $on)" ||
	fail "regrouping off: $off requests per engine call, not fewer than on ($on)"

read -r one n_one b_one <<<"$(per_batch 1)"
[ "$n_one" = "$b_one" ] && [ "$n_one" -ge 10 ] &&
	ok "a lone client: $n_one requests in $b_one engine calls (never held)" ||
	fail "a lone client: $n_one requests in $b_one engine calls"

T 10 "$MOECTL" status >/dev/null || fail "status after the runs"
stop_bounded 15
[ "$STOP_RC" -eq 0 ] || fail "moed exited $STOP_RC on SIGTERM"
finish
