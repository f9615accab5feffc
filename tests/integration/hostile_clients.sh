#!/bin/bash
# Clients that hold memory or lose replies (issue 13, defects 3, 10 and 13).
# With [limits] max_buffered_bytes = 32 MiB and write_timeout_ms = 2000:
# 4 clients pipelining infers and never reading keep the daemon's RSS under its
# start + 32 MiB + 64 MiB slack and are closed within write_timeout_ms + 3 s;
# 16 partial 8 MiB frames are held within the same budget, the excess refused
# with RESOURCE_EXHAUSTED naming max_buffered_bytes; a normal infer succeeds
# meanwhile.  A half-closed client still gets every reply.  Inputs near the
# fp32 limit are refused ("not finite") instead of answered with NaN.
. "$top_srcdir/tests/lib.sh"
. "$top_srcdir/tests/integration/hostile_lib.sh"
need_numpy
export MOECTL
# max_frame_bytes 16 MiB: moed refuses a budget below the largest frame (64
# MiB by default); the 8 MiB frames below stay well inside it
printf '[limits]\nmax_buffered_bytes = 33554432\nwrite_timeout_ms = 2000\nmax_frame_bytes = 16777216\n' >"$TMP/budget.conf"
usable_conf "$TMP/budget.conf" /dev/null
start_bounded 30 --config "$CONF_USED" || exit 1
H=$(T 10 "$MOECTL" model --json | "$PY" -c 'import json, sys; print(json.load(sys.stdin)["hidden_size"])')
BOUND=$(( (32 + 64) * 1024 ))
# AddressSanitizer keeps freed memory in a quarantine (256 MiB by default), which
# the RSS bound would count: measure what moed holds, not what ASan holds back
if ldd "$MOED" 2>/dev/null | grep -q libasan; then
	echo "note: sanitizer build; RSS bound widened by ASan's allocator overhead"
	BOUND=$(( BOUND + 512 * 1024 ))
fi

# (a) 4 clients x 1000 pipelined 64-token infers, never read
if T 120 $HOSTILE "$SOCK" no-read "$MOED_PID" "$H" 4 1000 2000 $BOUND >"$TMP/noread.txt" 2>&1; then
	ok "non-reading clients bounded and dropped: $(grep -E 'RSS|meanwhile' "$TMP/noread.txt" | tr '\n' ';')"
else
	fail "non-reading clients (exit $?): $(tr '\n' ';' <"$TMP/noread.txt")"
fi
T 20 "$MOECTL" infer --layer 1 --random 2 >/dev/null 2>&1 || fail "not serving after the non-reading clients"

# (b) 16 clients x a frame announcing 8 MiB, 4 KiB short of it
if T 120 $HOSTILE "$SOCK" partial "$MOED_PID" 16 8388608 $((8388608 - 4096)) $BOUND >"$TMP/partial.txt" 2>&1; then
	ok "partial frames bounded: $(grep -E 'refused;|meanwhile' "$TMP/partial.txt" | tr '\n' ';')"
else
	fail "partial frames (exit $?): $(tr '\n' ';' <"$TMP/partial.txt")"
fi
T 20 "$MOECTL" infer --layer 1 --random 2 >/dev/null 2>&1 || fail "not serving after the partial frames"

# half-closed client: hello + 3 infers, shutdown(SHUT_WR), 4 replies, then EOF
out=$(T 30 "$PY" "$top_srcdir/tests/integration/rawclient.py" "$SOCK" half-close 2>&1)
want="id=1 status=0 msg= id=101 status=0 msg= id=102 status=0 msg= id=103 status=0 msg= closed"
# replies come in completion order: compare them sorted, "closed" last
got=$(echo "$out" | grep -v '^closed$' | sed 's/^\(id=[0-9]* status=[0-9]*\).*/\1 msg=/' | sort -t= -k2n | tr '\n' ' ')$(echo "$out" | tail -n 1)
[ "$got" = "$want" ] && ok "half-closed client got all 4 replies, then EOF" ||
	fail "half-closed client: got '$(echo "$out" | tr '\n' ' ')', want all 4 replies (status 0) then closed"

# inputs of 3e38: the output overflows; refused, not served as NaN
"$PY" -c "import numpy as np; np.save('$TMP/big.npy', np.full((2, $H), 3e38, dtype=np.float32))"
expect_fail 1 "not finite" T 30 "$MOECTL" infer --layer 1 --input "$TMP/big.npy"
grep -q "OUT_OF_RANGE" "$TMP/err" || fail "3e38 inputs not answered OUT_OF_RANGE: $(cat "$TMP/err")"
T 20 "$MOECTL" infer --layer 1 --random 2 >/dev/null 2>&1 && ok "serving after the 3e38 inputs" ||
	fail "not serving after the 3e38 inputs"
stop_bounded 15
[ "$STOP_RC" = 0 ] || fail "moed exited $STOP_RC on SIGTERM"
finish
