#!/bin/bash
# Foundation integration test: the real moed on a temp socket, driven by the
# real moectl and by a raw protocol client for what moectl would never send.
# Checks status/plugins output, the handshake, pipelining, hostile frames (the
# daemon answers or closes and keeps serving), clear startup errors, a second
# daemon on a live socket refused, and a clean SIGTERM exit.
. "$top_srcdir/tests/lib.sh"
RAW="${PYTHON3:-/usr/bin/python3} $top_srcdir/tests/integration/rawclient.py $SOCK"

start_moed || exit 1

"$MOECTL" status >"$TMP/status" 2>&1 || fail "moectl status: $(cat "$TMP/status")"
grep -q "sigmoid-norm" "$TMP/status" && ok "status names the router" ||
	fail "status lacks the router: $(cat "$TMP/status")"
grep -q "cpu" "$TMP/status" && ok "status names the expert backend" || fail "status lacks cpu"

"$MOECTL" --json status >"$TMP/status.json" || fail "moectl --json status"
"${PYTHON3:-/usr/bin/python3}" - "$TMP/status.json" <<'PY' && ok "status --json" || fail "status --json content"
import json, sys
d = json.load(open(sys.argv[1]))
assert isinstance(d, dict), d
text = json.dumps(d)
for word in ("sigmoid-norm", "cpu", "0.1.0"):
    assert word in text, word
PY

"$MOECTL" plugins >"$TMP/plugins" || fail "moectl plugins"
for p in softmax-topk sigmoid-norm bias-balanced cpu; do
	grep -q -- "$p" "$TMP/plugins" || fail "plugins lacks $p"
done
ok "plugins lists all four"

# handshake and hostile frames; after each, the daemon still answers
check_raw() {
	local scenario=$1 want=$2 out
	out=$($RAW "$scenario" 2>&1 | tr "\n" " ")
	if echo "$out" | grep -qE -- "$want"; then ok "raw $scenario: $(echo $out | head -c 160)"
	else fail "raw $scenario: got '$out', want /$want/"; fi
	"$MOECTL" status >/dev/null 2>&1 || fail "daemon not serving after $scenario"
}
check_raw no-hello "id=7 status=9 .*hello"
check_raw bad-version "id=3 status=9 .*version 99"
check_raw garbage "id=0 status=3 .*decode"
check_raw oversize "status=8 .*exceeds.*closed"
check_raw zero "status=3 .*zero-length.*closed"
check_raw truncated "closed"
check_raw unknown-type "id=5 status=12"
out=$($RAW pipeline)
for id in 101 102 103; do
	echo "$out" | grep -q "id=$id status=0" || fail "pipelined request $id: $out"
done
ok "pipelined requests all answered"

# a second daemon on the same live socket is refused, the first keeps serving
"$MOED" --socket "$SOCK" --plugin-dir "$MOED_TEST_PLUGIN_DIR" --config /dev/null >"$TMP/second" 2>&1
[ $? -ne 0 ] && grep -q "another daemon is listening" "$TMP/second" && ok "second daemon refused" ||
	fail "second daemon: $(cat "$TMP/second")"
"$MOECTL" status >/dev/null || fail "first daemon gone after second attempt"

stop_moed
[ -e "$SOCK" ] && fail "socket file left behind"
expect_fail 3 "" "$MOECTL" status

# startup errors: clear message, non-zero exit
printf '[daemon]\nworkers = many\n' >"$TMP/bad.conf"
expect_fail 1 "bad.conf:2:" "$MOED" --config "$TMP/bad.conf" --check-config
printf '[daemon]\nworkers = 2\n' >"$TMP/good.conf"
"$MOED" --config "$TMP/good.conf" --check-config >/dev/null || fail "--check-config on a good file"
# plugin parameters are checked against what the plugins declare, with file:line
printf '[daemon]\nworkers = 2\n[router]\ngama = 1\n' >"$TMP/typo.conf"
expect_fail 1 "typo.conf:4: [router] sigmoid-norm: unknown parameter 'gama'" \
	"$MOED" --config "$TMP/typo.conf" --plugin-dir "$MOED_TEST_PLUGIN_DIR" --check-config
printf '[router]\nplugin = bias-balanced\n\ngamma = -3\n' >"$TMP/range.conf"
expect_fail 1 "range.conf:4: [router] bias-balanced: parameter 'gamma'" \
	"$MOED" --config "$TMP/range.conf" --plugin-dir "$MOED_TEST_PLUGIN_DIR" --check-config
printf '[expert]\nsplit_min_kb = lots\n' >"$TMP/expert.conf"
expect_fail 1 "expert.conf:2: [expert] cpu: parameter 'split_min_kb'" \
	"$MOED" --config "$TMP/expert.conf" --plugin-dir "$MOED_TEST_PLUGIN_DIR" --check-config
printf '[router]\nplugin = bias-balanced\ngamma = 0.01\n[expert]\nsplit_min_kb = 64\n' >"$TMP/params.conf"
"$MOED" --config "$TMP/params.conf" --plugin-dir "$MOED_TEST_PLUGIN_DIR" --check-config >/dev/null &&
	ok "--check-config accepts declared parameters in range" || fail "--check-config on good parameters"
"$MOED" --list-config-keys | grep -q "^limits compute_timeout_ms u32.* 60000 live" &&
	ok "--list-config-keys lists the table" || fail "--list-config-keys: $("$MOED" --list-config-keys | head -3)"
expect_fail 1 "plugin 'no-such-router'" "$MOED" --socket "$SOCK" --config /dev/null \
	--plugin-dir "$MOED_TEST_PLUGIN_DIR" --router no-such-router
expect_fail 1 "ABI 999" "$MOED" --socket "$SOCK" --config /dev/null \
	--plugin-dir "$MOED_TEST_MOCK_DIR" --router bad-abi
expect_fail 1 "synthetic" "$MOED" --socket "$SOCK" --config /dev/null \
	--plugin-dir "$MOED_TEST_PLUGIN_DIR" --model synthetic:S9
expect_fail 2 "" "$MOED" --no-such-flag
finish
