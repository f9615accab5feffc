# Helpers for the expert-parallel tests (sourced after tests/lib.sh): skip
# without Open MPI or the transport module, start `mpirun -np N moed` on $SOCK
# and wait until the front answers, stop it.  As root (CI) mpirun needs
# --allow-run-as-root; 3 ranks on 2 cores need --oversubscribe.
need_mpi() {
	[ -n "${MPIRUN:-}" ] && [ -x "$MPIRUN" ] ||
		skip "no mpirun (configure found no Open MPI: Debian openmpi-bin, libopenmpi-dev)"
	[ -f "$MOED_TEST_CLUSTER_MODULE" ] ||
		skip "no MPI transport module (configure --with-mpi): $MOED_TEST_CLUSTER_MODULE"
	export MOED_CLUSTER_MODULE="$MOED_TEST_CLUSTER_MODULE"
	export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
	# shared memory only: no network, and quiet about it
	export OMPI_MCA_btl=self,vader OMPI_MCA_btl_vader_single_copy_mechanism=none
	export OMPI_MCA_rmaps_base_oversubscribe=1
	# the sanitizer build: no leak check in MPI jobs.  Open MPI keeps thousands
	# of allocations at MPI_Finalize, and symbolising them against suppressions
	# takes LeakSanitizer minutes per rank; the single-process tests check the
	# same daemon code for leaks.  Address and UB checks stay on.
	export ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0"
}

# The ranks' pids (mpirun's children, recorded by start_cluster) are killed at
# exit too: a rank may outlive a killed mpirun or be stopped by a test.  Only
# processes still running moed on this test's socket.
CLUSTER_PIDS=
cluster_cleanup() {
	local p
	for p in $CLUSTER_PIDS; do
		grep -qF "$SOCK" "/proc/$p/cmdline" 2>/dev/null || continue
		kill -CONT "$p" 2>/dev/null
		kill -KILL "$p" 2>/dev/null
	done
	cleanup
}
trap cluster_cleanup EXIT

# start_cluster N [MPIRUN_ARGS... --] [MOED_ARGS...]
start_cluster() {
	local n=$1 mpi_args=()
	shift
	if printf '%s\n' "$@" | grep -qx -- --; then
		while [ "$1" != -- ]; do mpi_args+=("$1"); shift; done
		shift
	fi
	"$MPIRUN" --oversubscribe -np "$n" "${mpi_args[@]}" "$MOED" --socket "$SOCK" \
		--plugin-dir "$MOED_TEST_PLUGIN_DIR" --state-dir "$TMP" --config /dev/null "$@" \
		>"$TMP/moed.log" 2>&1 &
	MOED_PID=$!
	for _ in $(seq 1 1200); do
		if "$MOECTL" status >/dev/null 2>&1; then
			CLUSTER_PIDS="$CLUSTER_PIDS $(pgrep -P "$MOED_PID" | tr '\n' ' ')"
			return 0
		fi
		if ! kill -0 "$MOED_PID" 2>/dev/null; then
			echo "the job exited during start:"; cat "$TMP/moed.log"
			MOED_PID=
			return 1
		fi
		sleep 0.1
	done
	echo "the front did not answer within 120 s:"; cat "$TMP/moed.log"
	return 1
}

# stop_cluster: SIGUSR2 to mpirun (forwarded: the front drains, then the ranks
# leave), wait; the job must exit 0.
stop_cluster() {
	kill -USR2 "$MOED_PID"
	wait "$MOED_PID"
	local rc=$?
	MOED_PID=
	[ "$rc" -eq 0 ] || fail "the job exited with $rc on SIGUSR2"
}
