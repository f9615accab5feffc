#!/bin/bash
# The service-manager contract without systemd as PID 1: systemd-socket-activate
# hands moed its API and admin sockets by name, and a datagram listener at
# $NOTIFY_SOCKET records what moed says.  Expected, in order: EXTEND_TIMEOUT_USEC
# while loading, READY=1 once serving, WATCHDOG=1 at half of WATCHDOG_USEC,
# RELOADING=1 with MONOTONIC_USEC then READY=1 around a reload, STOPPING=1.
. "$top_srcdir/tests/lib.sh"
PY=${PYTHON3:-/usr/bin/python3}
command -v systemd-socket-activate >/dev/null || skip "systemd-socket-activate not installed (Debian: systemd)"
ASOCK="$TMP/admin.sock"
NOTE="$TMP/notify.sock"
$PY "$top_srcdir/tests/integration/notify.py" "$NOTE" "$TMP/notes" &
LISTENER=$!
trap 'kill $LISTENER 2>/dev/null; cleanup' EXIT
for _ in $(seq 50); do grep -q listening "$TMP/notes" 2>/dev/null && break; sleep 0.1; done

systemd-socket-activate -l "$SOCK" -l "$ASOCK" --fdname=api:admin \
	-E NOTIFY_SOCKET="$NOTE" -E WATCHDOG_USEC=200000 \
	"$MOED" --config /dev/null --plugin-dir "$MOED_TEST_PLUGIN_DIR" --state-dir "$TMP" \
	--socket "$TMP/not-used.sock" >"$TMP/moed.log" 2>&1 &
MOED_PID=$!
for _ in $(seq 100); do grep -q "^READY=1" "$TMP/notes" && break; sleep 0.1; done
"$MOECTL" status >/dev/null && ok "serving on the inherited API socket" || fail "status over the activated socket"
[ -e "$TMP/not-used.sock" ] && fail "bound its own socket although one was handed over"
"$MOECTL" -s "$ASOCK" router set softmax-topk >/dev/null && ok "admin socket accepted" || fail "admin socket"
sleep 0.6
"$MOECTL" -s "$ASOCK" reload >/dev/null || fail "reload"
sleep 0.2
kill -TERM "$MOED_PID"
wait "$MOED_PID"
rc=$?
MOED_PID=
[ $rc -eq 0 ] || fail "exit status $rc after SIGTERM"
sleep 0.2
$PY - "$TMP/notes" <<'PY' && ok "notify sequence" || fail "notify sequence: $(cat "$TMP/notes")"
import re, sys
notes = [l.strip() for l in open(sys.argv[1]) if l.strip() and l.strip() != "listening"]
def first(prefix, after=0):
    for i in range(after, len(notes)):
        if notes[i].startswith(prefix) or ("|" + prefix) in notes[i]:
            return i
    raise AssertionError("no %s after %d in %s" % (prefix, after, notes))
ext = first("EXTEND_TIMEOUT_USEC=")
ready = first("READY=1", ext)
dogs = [i for i, n in enumerate(notes) if n == "WATCHDOG=1"]
assert len([d for d in dogs if d > ready]) >= 3, "too few watchdog pings: %d" % len(dogs)
rel = first("RELOADING=1", ready + 1)
assert re.search(r"MONOTONIC_USEC=\d+", notes[rel]), notes[rel]
ready2 = first("READY=1", rel + 1)
stop = first("STOPPING=1", ready2 + 1)
print("EXTEND %d, READY %d, %d watchdog pings, RELOADING %d, READY %d, STOPPING %d"
      % (ext, ready, len(dogs), rel, ready2, stop))
PY
finish
