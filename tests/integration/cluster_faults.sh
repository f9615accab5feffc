#!/bin/bash
# A cluster job's faults (issue 16), 3 ranks of one worker each on the v3 case
# of tests/ref/make_cases.py:
#  a. kill -9 of rank 2 under load: the job ends within [cluster] timeout_ms
#     (plus slack for mpirun's teardown), the front's log names the lost rank,
#     clients see UNAVAILABLE or a closed connection and never a wrong output;
#  b. a rank that stops answering (SIGSTOP): a request fails UNAVAILABLE
#     within about timeout_ms, then the front ends the job naming the rank;
#  c. bad setups: front_computes = 0 with one rank, a missing transport
#     module: the job exits non-zero saying why.
# (Without mpirun cluster show says "not enabled": tests/integration/cluster_single.sh.)
. "$top_srcdir/tests/lib.sh"
. "$top_srcdir/tests/cluster_lib.sh"
need_mpi
need_numpy
PY=${PYTHON3:-/usr/bin/python3}
CHECK="$top_srcdir/tests/integration/cluster_check.py"
$PY "$top_srcdir/tests/ref/make_cases.py" "$TMP/cases" >/dev/null || exit 1
CASE="$TMP/cases/good/v3"
X="$CASE/x_7.npy"       # its 28 pairs reach every rank (contiguous placement)
SLACK_S=10              # mpirun's teardown on 2 busy cores

# wait_job LIMIT_S: wait for mpirun to end, at most LIMIT_S; prints the
# seconds it took and sets JOB_RC (999 when it did not end)
wait_job() {
	local t0 now
	t0=$(date +%s.%N)
	JOB_RC=999
	while :; do
		if ! kill -0 "$MOED_PID" 2>/dev/null; then
			wait "$MOED_PID"
			JOB_RC=$?
			MOED_PID=
			break
		fi
		now=$(date +%s.%N)
		[ "$(echo "$now - $t0 > $1" | bc)" = 1 ] && break
		sleep 0.1
	done
	JOB_S=$(echo "$(date +%s.%N) - $t0" | bc)
}

# no_leftovers WHAT: no rank of this test's jobs runs any more (5 s grace)
no_leftovers() {
	local p left
	for _ in $(seq 1 50); do
		left=
		for p in $CLUSTER_PIDS; do
			grep -qF "$SOCK" "/proc/$p/cmdline" 2>/dev/null && left="$left $p"
		done
		[ -z "$left" ] && { ok "$1: no rank outlives the job"; return; }
		sleep 0.1
	done
	fail "$1: ranks still running after the job ended:$left ($(ps -o pid,stat,args -p "${left# }" | tail -n +2))"
}

# rank_pid N: the pid of rank N from cluster show
rank_pid() {
	"$MOECTL" --json cluster show >"$TMP/show.json" && $PY "$CHECK" pid "$TMP/show.json" "$1"
}

# ---- a. kill -9 of rank 2 under load ----
printf '[cluster]\ntimeout_ms = 3000\n' >"$TMP/a.conf"
start_cluster 3 --model "$CASE" --workers 1 --config "$TMP/a.conf" ||
	{ echo "FAIL: the job did not start"; exit 1; }
P2=$(rank_pid 2) || { echo "FAIL: no pid for rank 2"; exit 1; }
rm -f "$TMP/stop"
$PY "$top_srcdir/tests/integration/swapload.py" "$SOCK" "$X" 1 4 "$TMP/stop" "$TMP/load_a" &
LOAD=$!
sleep 1.5
kill -KILL "$P2"
wait_job $((3 + SLACK_S))
if [ "$JOB_RC" = 999 ]; then
	fail "the job still runs ${JOB_S} s after rank 2 (pid $P2) was killed"
elif [ "$JOB_RC" -eq 0 ]; then
	fail "the job exited 0 after rank 2 was killed"
else
	ok "the job ended (exit $JOB_RC) ${JOB_S} s after kill -9 of rank 2"
fi
[ "$JOB_RC" = 999 ] || no_leftovers "rank 2 killed"
grep -E "cluster: rank 2 .*lost" "$TMP/moed.log" && ok "the front's log names rank 2 lost" ||
	fail "no 'cluster: rank 2 ... lost' in the log: $(grep cluster: "$TMP/moed.log" | tail -5)"
touch "$TMP/stop"
wait $LOAD
$PY "$CHECK" replies "$TMP/load_a" --expect "$CASE/y_1_7.npy" --faults &&
	ok "clients saw errors, and every OK reply equals the reference" || fail "replies around the lost rank"
expect_fail 3 "cannot connect" "$MOECTL" status

# ---- b. a rank that stops answering ----
printf '[cluster]\ntimeout_ms = 2000\n' >"$TMP/b.conf"
start_cluster 3 --model "$CASE" --workers 1 --config "$TMP/b.conf" ||
	{ echo "FAIL: the job did not start"; exit 1; }
P2=$(rank_pid 2) || { echo "FAIL: no pid for rank 2"; exit 1; }
"$MOECTL" infer --layer 1 --input "$X" >/dev/null || fail "infer before the stop"
kill -STOP "$P2"
t0=$(date +%s.%N)
"$MOECTL" -t 60 infer --layer 1 --input "$X" >"$TMP/out" 2>"$TMP/err"
rc=$?
dt=$(echo "$(date +%s.%N) - $t0" | bc)
if [ "$rc" -eq 1 ] && grep -q "UNAVAILABLE" "$TMP/err" && [ "$(echo "$dt < 2 + $SLACK_S" | bc)" = 1 ]; then
	ok "a request with rank 2 stopped failed after ${dt} s: $(cat "$TMP/err")"
else
	fail "request with rank 2 stopped: exit $rc after ${dt} s: $(cat "$TMP/err")"
fi
wait_job $((2 + SLACK_S))
if [ "$JOB_RC" = 999 ]; then
	fail "the job still runs ${JOB_S} s after the failed request (rank 2 stopped)"
elif [ "$JOB_RC" -eq 0 ]; then
	fail "the job exited 0 with rank 2 stopped"
else
	ok "the job ended (exit $JOB_RC) with rank 2 stopped"
fi
[ "$JOB_RC" = 999 ] || no_leftovers "rank 2 stopped"
grep -E "cluster: rank 2 .*(lost|did not answer)" "$TMP/moed.log" && ok "the front's log names rank 2" ||
	fail "no 'cluster: rank 2' in the log: $(grep cluster: "$TMP/moed.log" | tail -5)"
kill -CONT "$P2" 2>/dev/null

# ---- c. bad setups ----
# start_bad NEEDLE NP CONFIG: the job must exit non-zero, its log saying NEEDLE
start_bad() {
	local needle=$1 np=$2 conf=$3 rc
	timeout 60 "$MPIRUN" --oversubscribe -np "$np" "$MOED" --socket "$SOCK" \
		--plugin-dir "$MOED_TEST_PLUGIN_DIR" --state-dir "$TMP" --config "$conf" \
		--model synthetic:S0 --workers 1 >"$TMP/bad.log" 2>&1
	rc=$?
	if [ "$rc" -eq 0 ] || [ "$rc" -eq 124 ]; then
		fail "$4: the job exited $rc (want non-zero, within 60 s): $(tail -5 "$TMP/bad.log")"
	elif ! grep -qF -- "$needle" "$TMP/bad.log"; then
		fail "$4: the log lacks '$needle': $(tail -5 "$TMP/bad.log")"
	else
		ok "$4: exit $rc, $(grep -F -- "$needle" "$TMP/bad.log" | head -1)"
	fi
}
printf '[cluster]\nfront_computes = 0\n' >"$TMP/c.conf"
start_bad "front_computes = 0 needs at least 2 ranks" 1 "$TMP/c.conf" "front_computes = 0, -np 1"
MOED_CLUSTER_MODULE="$TMP/no-such-mpi.so" start_bad "cannot load the MPI transport" 2 /dev/null \
	"a missing transport module"
finish
