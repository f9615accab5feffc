#!/bin/bash
# A compute call that never returns (issue 13, defect 2): stuck-router with
# hang=1 blocks route() forever on one layer.  With [limits] compute_timeout_ms
# = 1000 the infer on that layer is answered DEADLINE_EXCEEDED, the other
# layers keep serving, a second call on the stuck layer is answered too (not a
# hang), status answers, and SIGTERM ends moed within shutdown_timeout_ms with
# a non-zero exit (work was abandoned).  Every call runs under timeout(1).
. "$top_srcdir/tests/lib.sh"
. "$top_srcdir/tests/integration/hostile_lib.sh"
PDIR="$TMP/plugins"
stuck_plugins "$PDIR"
printf '[limits]\ncompute_timeout_ms = 1000\nshutdown_timeout_ms = 3000\n' >"$TMP/stuck.conf"
printf '[limits]\nshutdown_timeout_ms = 3000\n' >"$TMP/base.conf"
usable_conf "$TMP/stuck.conf" "$TMP/base.conf"
start_bounded 30 --plugin-dir "$PDIR" --config "$CONF_USED" || exit 1
read -r L1 L2 <<<"$(T 10 "$MOECTL" model --json | "$PY" -c 'import json, sys; print(*json.load(sys.stdin)["moe_layers"][:2])')"
[ -n "$L2" ] || { fail "model --json lists fewer than 2 MoE layers"; finish; }

# hang=0 routes like mock-router: the plugin itself works
T 10 "$MOECTL" router set stuck-router --param hang=0 --layer "$L1" >"$TMP/out" 2>&1 &&
	T 10 "$MOECTL" infer --layer "$L1" --random 2 >>"$TMP/out" 2>&1 &&
	ok "stuck-router hang=0 serves layer $L1" || fail "stuck-router hang=0: $(cat "$TMP/out")"

T 10 "$MOECTL" router set stuck-router --param hang=1 --layer "$L1" >"$TMP/out" 2>&1 ||
	fail "router set stuck-router hang=1: $(cat "$TMP/out")"
stuck_infer() {
	local t0 rc ms
	t0=$(now_ms)
	T 8 "$MOECTL" infer --layer "$L1" --random 1 >"$TMP/out" 2>&1
	rc=$? ms=$(( $(now_ms) - t0 ))
	if [ $rc -eq 124 ] || [ $rc -eq 137 ]; then
		fail "$1 infer on the stuck layer $L1 still waiting after 8 s (killed)"
	elif [ $rc -ne 1 ]; then
		fail "$1 infer on the stuck layer $L1: exit $rc, want 1: $(cat "$TMP/out")"
	elif ! grep -qE "DEADLINE_EXCEEDED|compute_timeout_ms" "$TMP/out"; then
		fail "$1 infer on the stuck layer $L1 failed without DEADLINE_EXCEEDED/compute_timeout_ms: $(cat "$TMP/out")"
	elif [ $ms -gt 5000 ]; then
		fail "$1 infer on the stuck layer $L1 answered after $ms ms (compute_timeout_ms 1000, want <= 5000)"
	else
		ok "$1 infer on the stuck layer $L1 answered after $ms ms: $(head -c 160 "$TMP/out")"
	fi
}
# another client keeps layer L2 busy while the call on L1 gets stuck and is
# written off: its infers keep being answered, before and after
rm -f "$TMP/bg.stop"
(
	n=0
	while [ ! -e "$TMP/bg.stop" ] && [ $n -lt 2000 ]; do
		n=$((n + 1))
		T 8 "$MOECTL" infer --layer "$L2" --random 16 >/dev/null 2>"$TMP/bg.err" ||
			{ echo "infer $n on layer $L2 exit $?: $(cat "$TMP/bg.err")" >"$TMP/bg.fail"; break; }
	done
	echo $n >"$TMP/bg.n"
) &
bg=$!
sleep 0.3
stuck_infer first
sleep 1
touch "$TMP/bg.stop"
wait $bg
[ -e "$TMP/bg.fail" ] && fail "a concurrent client on layer $L2: $(cat "$TMP/bg.fail")" ||
	ok "a concurrent client on layer $L2 was served throughout ($(cat "$TMP/bg.n") infers)"
T 8 "$MOECTL" infer --layer "$L2" --random 2 >"$TMP/out" 2>&1 && ok "layer $L2 serves next to the stuck one" ||
	fail "infer on layer $L2 next to the stuck layer: exit $?: $(cat "$TMP/out")"
stuck_infer second
T 8 "$MOECTL" status >"$TMP/out" 2>&1 && ok "status answers" || fail "status with a stuck compute call: exit $?"

# shutdown ends within shutdown_timeout_ms (+3 s), non-zero: work was abandoned
stop_bounded 8
if [ "$STOP_RC" = 137 ]; then
	fail "moed still running 8 s after SIGTERM (shutdown_timeout_ms 3000); killed"
elif [ "$STOP_RC" = 0 ]; then
	fail "moed exited 0 after abandoning a stuck compute call (want non-zero)"
elif [ "$STOP_MS" -gt 6000 ]; then
	fail "moed took $STOP_MS ms to exit after SIGTERM (shutdown_timeout_ms 3000)"
else
	ok "SIGTERM: moed exited $STOP_RC after $STOP_MS ms"
fi
finish
