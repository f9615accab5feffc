#!/bin/bash
# Soak (make soak; not part of make check): SOAK_MINUTES (default 2) of mixed
# load against one daemon — infer clients, route and stats polling, router
# swaps, hostile frames and connect/disconnect churn — then asserts: no valid
# request failed, resident memory stayed bounded (the last third no more than
# 10% above the first third), and the fd count came back to where it started.
# Between rounds, in turn, the attacks of issue 13 (tests/integration/hostile_*.sh
# test each once): listing plugins next to a world-writable evil.so (its
# constructor must never run), a half-closed client, 3e38 inputs, partial 8 MiB
# frames and non-reading clients against max_buffered_bytes, and (3 times) a
# route() stuck forever against compute_timeout_ms; each must get its answer.
. "$top_srcdir/tests/lib.sh"
. "$top_srcdir/tests/integration/hostile_lib.sh"
need_numpy
: "${MOED_TEST_MOCK_DIR:?run through make soak}"
MINUTES=${SOAK_MINUTES:-2}
RAW="$PY $top_srcdir/tests/integration/rawclient.py $SOCK"
$PY -c "import numpy as np; np.save('$TMP/x.npy', np.random.default_rng(1).standard_normal((16, 256)).astype(np.float32))"
$PY -c "import numpy as np; np.save('$TMP/big.npy', np.full((2, 256), 3e38, dtype=np.float32))"
PDIR="$TMP/plugins"
plugin_copy "$PDIR"
cp "$MOED_TEST_MOCK_DIR/evil-marker.so" "$PDIR/evil.so"
cp "$MOED_TEST_MOCK_DIR/stuck-router.so" "$PDIR/"
chmod 0755 "$PDIR/stuck-router.so"
chmod 0757 "$PDIR/evil.so"
export MOED_EVIL_MARKER="$TMP/evil-ran" MOECTL
printf '[daemon]\nstate_save_interval_s = 1\n[limits]\nshutdown_timeout_ms = 5000\n' >"$TMP/base.conf"
cat "$TMP/base.conf" - >"$TMP/soak.conf" <<'CONF'
compute_timeout_ms = 1000
max_buffered_bytes = 33554432
write_timeout_ms = 2000
max_frame_bytes = 16777216
CONF
usable_conf "$TMP/soak.conf" "$TMP/base.conf"
start_moed --plugin-dir "$PDIR" --config "$CONF_USED" || exit 1

# attack N: one of the issue-13 attacks; 0 when it got the answer it must get
stuck_runs=0
attack() {
	case $1 in
	0) T 60 "$MOECTL" plugins >"$TMP/a.out" 2>&1 && T 60 "$MOECTL" plugins --json >>"$TMP/a.out" 2>&1 &&
	   grep -q "evil.*writable" "$TMP/a.out" && [ ! -e "$MOED_EVIL_MARKER" ] ;;
	1) T 30 $RAW half-close >"$TMP/a.out" 2>&1; [ "$(grep -c 'status=0' "$TMP/a.out")" = 4 ] ;;
	2) T 30 "$MOECTL" infer --layer 2 --input "$TMP/big.npy" >"$TMP/a.out" 2>&1
	   [ $? = 1 ] && grep -q "not finite" "$TMP/a.out" ;;
	3) T 60 $HOSTILE "$SOCK" partial "$MOED_PID" 6 8388608 $((8388608 - 4096)) $((96 * 1024)) >"$TMP/a.out" 2>&1 ;;
	4) T 60 $HOSTILE "$SOCK" no-read "$MOED_PID" 256 2 200 2000 $((96 * 1024)) >"$TMP/a.out" 2>&1 ;;
	5) [ $stuck_runs -lt 3 ] || return 0
	   stuck_runs=$((stuck_runs + 1))
	   T 10 "$MOECTL" router set stuck-router --param hang=1 --layer 3 >"$TMP/a.out" 2>&1 || return 1
	   T 10 "$MOECTL" infer --layer 3 --random 1 >"$TMP/a.out" 2>&1
	   local rc=$?
	   T 10 "$MOECTL" router set sigmoid-norm --layer 3 >/dev/null 2>&1 &&
	   [ $rc = 1 ] && grep -q "DEADLINE_EXCEEDED" "$TMP/a.out" ;;
	esac
}
attacks=0 attack_errors=0
run_attack() {
	attacks=$((attacks + 1))
	attack "$1" && return 0
	attack_errors=$((attack_errors + 1))
	[ $attack_errors -le 10 ] &&
		echo "attack $1 failed: $(tr '\n' ' ' <"$TMP/a.out" 2>/dev/null | head -c 200) ... $(tr '\n' ' ' <"$TMP/a.out" 2>/dev/null | tail -c 300)"
}
fd0=$(ls /proc/"$MOED_PID"/fd | wc -l)
rm -f "$TMP/stop"
$PY "$top_srcdir/tests/integration/swapload.py" "$SOCK" "$TMP/x.npy" 1 4 "$TMP/stop" "$TMP/load" &
LOAD=$!
# one of each attack before RSS is sampled: the heap reaches the high-water
# mark of the budgeted attacks here, so "flat" compares like with like
for a in 0 1 2 3 4 5; do run_attack $a; done
end=$(( $(date +%s) + MINUTES * 60 ))
: >"$TMP/rss"
errors=0 rounds=0
while [ "$(date +%s)" -lt $end ]; do
	rounds=$((rounds + 1))
	run_attack $(( (rounds - 1) % 6 ))
	case $((rounds % 4)) in
	0) "$MOECTL" router set bias-balanced --param gamma=0.001 >/dev/null || errors=$((errors + 1)) ;;
	1) "$MOECTL" router set sigmoid-norm >/dev/null || errors=$((errors + 1)) ;;
	2) $RAW garbage >/dev/null; $RAW oversize >/dev/null; $RAW truncated >/dev/null ;;
	3) "$MOECTL" --json stats >/dev/null || errors=$((errors + 1))
	   "$MOECTL" route --layer 2 --random 32 >/dev/null || errors=$((errors + 1)) ;;
	esac
	$PY -c "
import socket
for i in range(50):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM); s.connect('$SOCK'); s.close()"
	awk '/VmRSS/ { print $2 }' /proc/"$MOED_PID"/status >>"$TMP/rss"
	sleep 0.2
done
touch "$TMP/stop"
wait $LOAD
sleep 1
fd1=$(ls /proc/"$MOED_PID"/fd | wc -l)
[ $errors -eq 0 ] && ok "$rounds admin/stats/hostile rounds, no valid request failed" ||
	fail "$errors valid admin/stats/route requests failed"
[ $attack_errors -eq 0 ] && ok "$attacks issue-13 attacks ($stuck_runs stuck route() calls), each answered as it must be" ||
	fail "$attack_errors of $attacks issue-13 attacks were not answered as they must be"
[ -e "$MOED_EVIL_MARKER" ] && fail "evil.so's constructor ran during the soak"
$PY - "$TMP/load/summary.json" "$TMP/rss" "$fd0" "$fd1" <<'PY' && ok "soak figures" || fail "soak figures"
import json, sys
s = json.load(open(sys.argv[1]))
rss = [int(x) for x in open(sys.argv[2]) if x.strip()]
third = max(len(rss) // 3, 1)
first, last = sum(rss[:third]) / third, sum(rss[-third:]) / third
fd0, fd1 = int(sys.argv[3]), int(sys.argv[4])
print("infer: %d ok, %d failed; RSS first third %.0f KiB, last third %.0f KiB (max %d); fds %d -> %d"
      % (s["ok"], s["failed"], first, last, max(rss), fd0, fd1))
assert s["failed"] == 0, s["errors"]
assert s["ok"] > 0, "no infer succeeded"
assert last <= first * 1.10, "RSS grew"
assert fd1 <= fd0, "fds grew"
PY
# abandoned stuck calls make the exit non-zero, within shutdown_timeout_ms
stop_bounded 10
if [ $stuck_runs -gt 0 ]; then
	[ "$STOP_RC" != 0 ] && [ "$STOP_RC" != 137 ] && ok "SIGTERM after $stuck_runs stuck calls: exit $STOP_RC in $STOP_MS ms" ||
		fail "SIGTERM after $stuck_runs stuck calls: exit $STOP_RC in $STOP_MS ms (want non-zero within 8 s)"
else
	[ "$STOP_RC" = 0 ] || fail "moed exited $STOP_RC on SIGTERM"
fi
finish
