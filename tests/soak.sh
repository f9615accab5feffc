#!/bin/bash
# Soak (make soak; not part of make check): SOAK_MINUTES (default 2) of mixed
# load against one daemon — infer clients, route and stats polling, router
# swaps, hostile frames and connect/disconnect churn — then asserts: no valid
# request failed, resident memory stayed bounded (the last third no more than
# 10% above the first third), and the fd count came back to where it started.
. "$top_srcdir/tests/lib.sh"
need_numpy
PY=${PYTHON3:-/usr/bin/python3}
MINUTES=${SOAK_MINUTES:-2}
RAW="$PY $top_srcdir/tests/integration/rawclient.py $SOCK"
$PY -c "import numpy as np; np.save('$TMP/x.npy', np.random.default_rng(1).standard_normal((16, 256)).astype(np.float32))"
start_moed || exit 1
fd0=$(ls /proc/"$MOED_PID"/fd | wc -l)
end=$(( $(date +%s) + MINUTES * 60 ))
rm -f "$TMP/stop"
$PY "$top_srcdir/tests/integration/swapload.py" "$SOCK" "$TMP/x.npy" 1 4 "$TMP/stop" "$TMP/load" &
LOAD=$!
: >"$TMP/rss"
errors=0 rounds=0
while [ "$(date +%s)" -lt $end ]; do
	rounds=$((rounds + 1))
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
assert last <= first * 1.10, "RSS grew"
assert fd1 <= fd0, "fds grew"
PY
stop_moed
finish
