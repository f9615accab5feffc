# Helpers shared by tests/integration/hostile_*.sh, sourced after tests/lib.sh:
# every wait is bounded, so a daemon that hangs fails the test instead of
# hanging make check.
#   T SECS CMD...            run CMD under timeout(1); 124 when it ran out
#   start_bounded SECS ARGS  start_moed, but give up (and kill moed) after SECS
#   wait_up SECS             the same wait, for a moed started as $MOED_PID;
#                            START_RC is its exit status when it died instead
#   stop_bounded SECS        SIGTERM, wait at most SECS; sets STOP_RC (137 when
#                            it had to be killed) and STOP_MS (time to exit)
#   usable_conf CONF BASE    CONF_USED=CONF if this moed accepts it, else fail
#                            and CONF_USED=BASE, so the behaviour checks still
#                            run on a daemon that lacks the new keys
#   rss_kib                  VmRSS of the running moed
#   plugin_copy DIR          DIR with copies of the real plugins (no cuda), 0755
#   stuck_plugins DIR        plugin_copy, plus the stuck-router test plugin
PY=${PYTHON3:-/usr/bin/python3}
HOSTILE="$PY $top_srcdir/tests/integration/hostile.py"

T() {
	local secs=$1
	shift
	timeout -k 2 "$secs" "$@"
}

now_ms() { echo $(( $(date +%s%N) / 1000000 )); }

start_bounded() {
	local secs=$1
	shift
	${MOED_WRAPPER:-} "$MOED" --socket "$SOCK" --plugin-dir "$MOED_TEST_PLUGIN_DIR" --state-dir "$TMP" \
		--config /dev/null "$@" >"$TMP/moed.log" 2>&1 &
	MOED_PID=$!
	wait_up "$secs"
}

# wait_up SECS: the moed started as $MOED_PID answers status within SECS.
wait_up() {
	local secs=$1 i
	START_RC=
	for i in $(seq 1 $((secs * 10))); do
		if T 5 "$MOECTL" status >/dev/null 2>&1; then
			return 0
		fi
		if moed_gone "$MOED_PID"; then
			wait "$MOED_PID"
			START_RC=$?
			echo "moed exited with $START_RC during start:"; tail -n 20 "$TMP/moed.log"
			MOED_PID=
			return 1
		fi
		sleep 0.1
	done
	echo "moed did not answer within $secs s:"; tail -n 20 "$TMP/moed.log"
	kill -KILL "$MOED_PID" 2>/dev/null
	wait "$MOED_PID" 2>/dev/null
	MOED_PID=
	return 1
}

# A zombie still answers kill -0: read the state from /proc instead.
moed_gone() {
	local st
	st=$(sed 's/.*) //' /proc/"$1"/stat 2>/dev/null | cut -d' ' -f1)
	[ -z "$st" ] || [ "$st" = Z ]
}

stop_bounded() {
	local secs=$1 t0 i
	STOP_RC= STOP_MS=
	[ -n "$MOED_PID" ] || return 0
	t0=$(now_ms)
	kill -TERM "$MOED_PID" 2>/dev/null
	for i in $(seq 1 $((secs * 10))); do
		moed_gone "$MOED_PID" && break
		sleep 0.1
	done
	if moed_gone "$MOED_PID"; then
		wait "$MOED_PID"
		STOP_RC=$?
	else
		kill -KILL "$MOED_PID" 2>/dev/null
		wait "$MOED_PID" 2>/dev/null
		STOP_RC=137
	fi
	STOP_MS=$(( $(now_ms) - t0 ))
	MOED_PID=
}

usable_conf() {
	local msg
	if msg=$("$MOED" --config "$1" --check-config 2>&1); then
		CONF_USED=$1
	else
		fail "moed refuses $(basename "$1"): $msg (continuing with $(basename "$2"))"
		CONF_USED=$2
	fi
}

rss_kib() { awk '/^VmRSS/ { print $2 }' /proc/"$MOED_PID"/status; }

plugin_copy() {
	local f
	mkdir -p "$1"
	for f in "$MOED_TEST_PLUGIN_DIR"/*.so; do
		case $(basename "$f") in cuda.so) continue ;; esac
		cp "$f" "$1/"
	done
	chmod 0755 "$1" "$1"/*.so
}

stuck_plugins() {
	: "${MOED_TEST_MOCK_DIR:?run through make check}"
	plugin_copy "$1"
	cp "$MOED_TEST_MOCK_DIR/stuck-router.so" "$1/"
	chmod 0755 "$1/stuck-router.so"
}
