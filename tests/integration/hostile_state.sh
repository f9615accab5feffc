#!/bin/bash
# Reload and state-file defects (issue 13, defects 4-9): a reload whose expert
# cannot load changes nothing (moectl reload and SIGHUP); state_save_interval_s
# takes effect on reload; a failed save is reported to the client and logged;
# SIGHUP during model load does not kill moed; stale temporary state files are
# removed at start; a state file that is a FIFO or a directory is ignored with
# a warning; a bias with a valid checksum but a NaN is refused.
. "$top_srcdir/tests/lib.sh"
. "$top_srcdir/tests/integration/hostile_lib.sh"
need_numpy

routers() {
	T 10 "$MOECTL" router show --json | "$PY" -c '
import json, sys
print(" ".join("%d:%s:%d:%s:%d" % (l["layer"], l["router"], l["generation"], l["expert"],
      l["expert_generation"]) for l in json.load(sys.stdin)["layers"]))'
}
# a warning in moed.log that names $1 and matches the regex $2
log_warns() { grep -i "warn" "$TMP/moed.log" | grep -F -- "$1" | grep -qiE -- "$2"; }
state_file() {
	local f
	for f in router.state bias.state; do
		[ -f "$1/$f" ] && { echo "$1/$f"; return 0; }
	done
	return 1
}

# 4: reload is all-or-nothing
: >"$TMP/reload.conf"
start_bounded 30 --config "$TMP/reload.conf" || exit 1
before=$(routers)
printf '[router]\nplugin = softmax-topk\n[expert]\nplugin = no-such-backend\n' >"$TMP/reload.conf"
T 20 "$MOECTL" reload >"$TMP/out" 2>&1
rc=$?
[ $rc -eq 1 ] && ok "reload with a missing expert backend fails: $(head -c 160 "$TMP/out")" ||
	fail "reload with [expert] plugin = no-such-backend: exit $rc, want 1: $(cat "$TMP/out")"
after=$(routers)
[ "$after" = "$before" ] && ok "nothing changed: $after" ||
	fail "a failed reload changed the bindings: '$before' -> '$after'"
kill -HUP "$MOED_PID"
sleep 1
if T 10 "$MOECTL" status >/dev/null 2>&1; then
	after=$(routers)
	[ "$after" = "$before" ] && ok "SIGHUP with the same config: still up, nothing changed" ||
		fail "a failed SIGHUP reload changed the bindings: '$before' -> '$after'"
else
	fail "moed not answering after a failed SIGHUP reload"
fi
stop_bounded 15
[ "$STOP_RC" = 0 ] || fail "moed exited $STOP_RC on SIGTERM"

# 5: state_save_interval_s = 0 -> 1 by reload saves on the timer
S="$TMP/s5"
mkdir "$S"
printf '[daemon]\nstate_save_interval_s = 0\n' >"$TMP/save.conf"
start_bounded 30 --config "$TMP/save.conf" --router bias-balanced --state-dir "$S" || exit 1
for i in 1 2 3; do T 20 "$MOECTL" infer --layer 1 --random 64 >/dev/null 2>&1 || fail "infer $i"; done
printf '[daemon]\nstate_save_interval_s = 1\n' >"$TMP/save.conf"
T 20 "$MOECTL" reload >"$TMP/out" 2>&1 || fail "reload state_save_interval_s = 1: $(cat "$TMP/out")"
# the reload may save once itself: only a save after this counts
rm -f "$S/router.state" "$S/bias.state"
for i in 1 2 3; do T 20 "$MOECTL" infer --layer 1 --random 64 >/dev/null 2>&1 || fail "infer $i"; done
sleep 3
f=$(state_file "$S") && ok "saved on the reloaded 1 s interval: $(basename "$f")" ||
	fail "no router.state (or bias.state) in the state dir 3 s after reloading state_save_interval_s = 1: $(ls -A "$S")"
stop_bounded 15
[ "$STOP_RC" = 0 ] || fail "moed exited $STOP_RC on SIGTERM"

# 6: a failed save is reported to the client and in the log
start_bounded 30 --router bias-balanced --state-dir "$TMP/nope" || exit 1
T 20 "$MOECTL" infer --layer 1 --random 64 >/dev/null 2>&1 || fail "infer with a missing state dir"
T 20 "$MOECTL" bias freeze >"$TMP/out" 2>&1
rc=$?
if grep -qE "state.*not saved|not saved.*state" "$TMP/out"; then
	ok "bias freeze (exit $rc) says: $(grep "not saved" "$TMP/out" | head -n 1)"
else
	fail "bias freeze with state dir '$TMP/nope' (exit $rc) does not say the state was not saved: $(cat "$TMP/out")"
fi
log_warns "" "sav|writ|creat" && ok "moed.log: $(grep -i warn "$TMP/moed.log" | head -n 1)" ||
	fail "no warning about the failed save in moed.log"
stop_bounded 15

# 7: SIGHUP x3 during the model load (synthetic:S4, ~0.7 GB) does not kill moed
"$MOED" --socket "$SOCK" --plugin-dir "$MOED_TEST_PLUGIN_DIR" --state-dir "$TMP" --config /dev/null \
	--model synthetic:S4 >"$TMP/moed.log" 2>&1 &
MOED_PID=$!
# a signal before exec would hit the forked shell, not moed
for i in $(seq 1 100); do
	[ "$(cat /proc/$MOED_PID/comm 2>/dev/null)" = moed ] && break
	sleep 0.01
done
sleep 0.05
for i in 1 2 3; do kill -HUP "$MOED_PID" 2>/dev/null; sleep 0.1; done
[ -S "$SOCK" ] && echo "note: the socket was bound before the last SIGHUP; the load was faster than 0.3 s"
if wait_up 120; then
	ok "3 SIGHUPs during the model load: moed came up"
	stop_bounded 15
	[ "$STOP_RC" = 0 ] || fail "moed exited $STOP_RC on SIGTERM"
else
	fail "3 SIGHUPs during the model load: moed exited ${START_RC:-?} instead of coming up"
fi

# 8: stale temporary files of the atomic save are removed at start
S="$TMP/s8"
mkdir "$S"
: >"$S/.router.state.abc123"
: >"$S/.bias.state.XyZ789"
echo keep >"$S/keep.txt"
start_bounded 30 --state-dir "$S" || exit 1
for f in .router.state.abc123 .bias.state.XyZ789; do
	[ -e "$S/$f" ] && fail "stale temporary $f still there after start" || ok "stale $f removed"
done
[ -f "$S/keep.txt" ] && ok "keep.txt left alone" || fail "start removed the unrelated keep.txt"
stop_bounded 15

# 9a/b: a FIFO or a directory at the state file's path: ignored, with a warning
for name in router.state bias.state; do
	for kind in fifo dir; do
		S="$TMP/s9-$kind-$name"
		mkdir "$S"
		if [ $kind = fifo ]; then mkfifo "$S/$name"; else mkdir "$S/$name"; fi
		if start_bounded 10 --router bias-balanced --state-dir "$S"; then
			ok "$kind at $name: moed started"
			log_warns "$S/$name" "regular|fifo|directory|not a file" &&
				ok "$kind at $name: $(grep -i warn "$TMP/moed.log" | grep -F "$S/$name" | head -n 1)" ||
				fail "$kind at $name: no warning naming '$S/$name' as not a regular file: $(grep -i warn "$TMP/moed.log")"
			stop_bounded 15
		else
			fail "$kind at $S/$name: moed did not answer within 10 s"
		fi
	done
done

# 9c: a bias with a valid checksum and a NaN value is refused
S="$TMP/s9-nan"
mkdir "$S"
start_bounded 30 --router bias-balanced --state-dir "$S" || exit 1
for l in 1 2 3; do T 20 "$MOECTL" infer --layer $l --random 64 >/dev/null 2>&1 || fail "infer on layer $l"; done
T 20 "$MOECTL" bias freeze >/dev/null 2>&1 || fail "bias freeze"
T 20 "$MOECTL" bias show --json >"$TMP/bias.json" 2>&1 || fail "bias show --json"
stop_bounded 15
if f=$(state_file "$S") && T 30 $HOSTILE "$SOCK" nan-state "$f" "$TMP/bias.json"; then
	start_bounded 30 --router bias-balanced --state-dir "$S" || exit 1
	grep -i warn "$TMP/moed.log" | grep -i state | grep -qiE "refus|finite|nan|ignor" &&
		ok "NaN bias refused: $(grep -i warn "$TMP/moed.log" | grep -i state | head -n 1)" ||
		fail "no warning that the state with a NaN bias was refused: $(grep -i "state" "$TMP/moed.log")"
	T 20 "$MOECTL" bias show >"$TMP/out" 2>&1 || fail "bias show after the NaN state"
	grep -qi "nan" "$TMP/out" && fail "a NaN bias is served: $(grep -i nan "$TMP/out" | head -c 200)" ||
		ok "bias show has no NaN"
	stop_bounded 15
else
	fail "no state file to patch in $S: $(ls -A "$S")"
fi
finish
