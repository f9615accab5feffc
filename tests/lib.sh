# Shared helpers for the shell tests: a private temp dir, starting the real moed
# on a temp socket and waiting until it answers, and assertions that print what
# was expected.  Sourced by tests/*/*.sh; `make check` exports MOED, MOECTL,
# MOED_TEST_PLUGIN_DIR, MOED_TEST_MOCK_DIR, PYTHON3, top_srcdir, top_builddir.
set -u

: "${MOED:?run through make check}" "${MOECTL:?}" "${MOED_TEST_PLUGIN_DIR:?}"
TMP=$(mktemp -d "${TMPDIR:-/tmp}/moed-test.XXXXXX")
SOCK="$TMP/moed.sock"
export MOED_SOCKET="$SOCK"
MOED_PID=
failures=0

cleanup() {
	if [ -n "$MOED_PID" ] && kill -0 "$MOED_PID" 2>/dev/null; then
		kill -KILL "$MOED_PID" 2>/dev/null
	fi
	rm -rf "$TMP"
}
trap cleanup EXIT

fail() { echo "FAIL: $*"; failures=$((failures + 1)); }
ok() { echo "ok: $*"; }
skip() { echo "SKIP: $*"; exit 77; }

need_numpy() {
	"${PYTHON3:-/usr/bin/python3}" -c 'import numpy' 2>/dev/null ||
		skip "${PYTHON3:-/usr/bin/python3} has no numpy (Debian: python3-numpy)"
}

# start_moed [ARGS...]: run moed on $SOCK with the in-tree plugins; wait for it.
# $MOED_WRAPPER (e.g. "prlimit --nofile=48 --" or valgrind) runs in front of it.
start_moed() {
	${MOED_WRAPPER:-} "$MOED" --socket "$SOCK" --plugin-dir "$MOED_TEST_PLUGIN_DIR" --state-dir "$TMP" \
		--config /dev/null "$@" >"$TMP/moed.log" 2>&1 &
	MOED_PID=$!
	for _ in $(seq 1 600); do
		if "$MOECTL" status >/dev/null 2>&1; then
			return 0
		fi
		if ! kill -0 "$MOED_PID" 2>/dev/null; then
			echo "moed exited during start:"; cat "$TMP/moed.log"
			MOED_PID=
			return 1
		fi
		sleep 0.1
	done
	echo "moed did not answer within 60 s:"; cat "$TMP/moed.log"
	return 1
}

# stop_moed: SIGTERM, wait, and check the exit status is 0.
stop_moed() {
	kill -TERM "$MOED_PID"
	wait "$MOED_PID"
	local rc=$?
	MOED_PID=
	[ "$rc" -eq 0 ] || fail "moed exited with $rc on SIGTERM"
}

# expect_fail CODE NEEDLE CMD...: CMD exits with CODE and says NEEDLE on stderr.
expect_fail() {
	local code=$1 needle=$2 rc
	shift 2
	"$@" >"$TMP/out" 2>"$TMP/err"
	rc=$?
	if [ "$rc" -ne "$code" ]; then
		fail "'$*' exited $rc, want $code; stderr: $(cat "$TMP/err")"
	elif ! grep -qF -- "$needle" "$TMP/err"; then
		fail "'$*' stderr lacks '$needle': $(cat "$TMP/err")"
	else
		ok "'$*' refused: $(head -c 200 "$TMP/err")"
	fi
}

finish() {
	if [ "$failures" -ne 0 ]; then
		echo "$failures check(s) failed"; [ -f "$TMP/moed.log" ] && tail -n 30 "$TMP/moed.log"
		exit 1
	fi
	exit 0
}
