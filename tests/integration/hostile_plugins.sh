#!/bin/bash
# Plugin files moed must not run (issue 13, defects 1 and 11).  Listing plugins
# never loads a file the loader refuses: a world-writable evil.so, whose
# constructor would create $MOED_EVIL_MARKER, is listed with the reason and its
# constructor never runs, in moed or in any helper it starts.  Listing does not
# stall the other clients while a slow constructor (slow.so, 3 s) is probed.
# A plugin reached through a symlink is refused unless the file it resolves to
# and that file's directory are owned by root or the daemon's user.
. "$top_srcdir/tests/lib.sh"
. "$top_srcdir/tests/integration/hostile_lib.sh"
: "${MOED_TEST_MOCK_DIR:?run through make check}"
need_numpy
PDIR="$TMP/plugins"
plugin_copy "$PDIR"
cp "$MOED_TEST_MOCK_DIR/evil-marker.so" "$PDIR/evil.so"
chmod 0757 "$PDIR/evil.so"
export MOED_EVIL_MARKER="$TMP/evil-ran"
start_bounded 30 --plugin-dir "$PDIR" || exit 1
[ -e "$MOED_EVIL_MARKER" ] && fail "evil.so's constructor ran during start"

# the listing names the refused file and why, without loading it
T 30 "$MOECTL" plugins >"$TMP/plugins.txt" 2>&1 || fail "moectl plugins: $(cat "$TMP/plugins.txt")"
if [ -e "$MOED_EVIL_MARKER" ]; then
	fail "moectl plugins ran the constructor of world-writable evil.so"
else
	ok "moectl plugins did not run evil.so's constructor"
fi
if grep -q "evil.*writable" "$TMP/plugins.txt"; then
	ok "listing: $(grep "evil" "$TMP/plugins.txt" | head -n 1 | sed 's/  */ /g')"
else
	fail "listing has no line naming evil with a reason containing 'writable': $(grep evil "$TMP/plugins.txt")"
fi
rm -f "$MOED_EVIL_MARKER"
T 30 "$MOECTL" plugins --json >"$TMP/plugins.json" 2>&1 || fail "moectl plugins --json"
[ -e "$MOED_EVIL_MARKER" ] && fail "moectl plugins --json ran evil.so's constructor" ||
	ok "moectl plugins --json did not run evil.so's constructor"
# some object in the reply names evil and carries a reason with "writable"
"$PY" - "$TMP/plugins.json" <<'PY' && ok "json listing: evil refused as writable" || fail "json listing"
import json, sys
doc = json.load(open(sys.argv[1]))
def objects(v):
    if isinstance(v, dict):
        yield v
        v = list(v.values())
    if isinstance(v, list):
        for x in v:
            yield from objects(x)
hits = [o for o in objects(doc)
        if any(isinstance(x, str) and "evil" in x for x in o.values())
        and any(isinstance(x, str) and "writable" in x for x in o.values())]
assert hits, "no object names evil with a 'writable' reason: %s" % json.dumps(doc)[:600]
PY
rm -f "$MOED_EVIL_MARKER"
expect_fail 1 "writable" T 30 "$MOECTL" router set evil
[ -e "$MOED_EVIL_MARKER" ] && fail "router set evil ran evil.so's constructor"

# a constructor that takes 3 s does not stall another client's infer
cp "$MOED_TEST_MOCK_DIR/slow.so" "$PDIR/slow.so"
chmod 0755 "$PDIR/slow.so"
if [ -n "${MOED_WRAPPER:-}" ]; then
	echo "SKIP: listing liveness under MOED_WRAPPER ($MOED_WRAPPER)"
else
	( T 60 "$MOECTL" plugins >/dev/null 2>&1; T 60 "$MOECTL" plugins >"$TMP/slow.txt" 2>&1 ) &
	lister=$!
	sleep 0.5
	t0=$(now_ms)
	T 30 "$MOECTL" infer --layer 1 --random 1 >"$TMP/out" 2>&1
	rc=$? ms=$(( $(now_ms) - t0 ))
	if [ $rc -eq 0 ] && [ $ms -lt 1500 ]; then
		ok "infer took $ms ms while another client listed plugins with slow.so"
	else
		fail "infer while another client listed plugins with slow.so: exit $rc after $ms ms (want 0, < 1500 ms)"
	fi
	wait $lister
	grep -q "slow" "$TMP/slow.txt" || fail "slow.so not listed: $(cat "$TMP/slow.txt")"
fi
[ -e "$MOED_EVIL_MARKER" ] && fail "evil.so's constructor ran while listing with slow.so"
stop_bounded 15
[ "$STOP_RC" = 0 ] || fail "moed exited $STOP_RC on SIGTERM"

# ownership: the file a plugin name resolves to, and its directory, must be
# owned by root or the daemon's user
if [ "$(id -u)" -ne 0 ]; then
	echo "SKIP: plugin ownership checks need root (chown to nobody)"
else
	ODIR="$TMP/owned"
	plugin_copy "$ODIR"
	# the file is nobody's (in a directory that is nobody's too)
	mkdir -m 0755 "$TMP/nobody"
	cp "$MOED_TEST_PLUGIN_DIR/softmax-topk.so" "$TMP/nobody/"
	chmod 0755 "$TMP/nobody/softmax-topk.so"
	chown -R nobody "$TMP/nobody"
	ln -sf "$TMP/nobody/softmax-topk.so" "$ODIR/softmax-topk.so"
	# the file is root's, its directory nobody's (who may replace the file)
	mkdir -m 0755 "$TMP/nobody-dir"
	cp "$MOED_TEST_PLUGIN_DIR/bias-balanced.so" "$TMP/nobody-dir/"
	chmod 0755 "$TMP/nobody-dir/bias-balanced.so"
	chown nobody "$TMP/nobody-dir"
	ln -sf "$TMP/nobody-dir/bias-balanced.so" "$ODIR/bias-balanced.so"
	# control: root's file in root's directory, through a symlink, serves
	mkdir -m 0755 "$TMP/rootdir"
	cp "$MOED_TEST_PLUGIN_DIR/sigmoid-norm.so" "$TMP/rootdir/"
	chmod 0755 "$TMP/rootdir/sigmoid-norm.so"
	ln -sf "$TMP/rootdir/sigmoid-norm.so" "$ODIR/sigmoid-norm.so"
	start_bounded 30 --plugin-dir "$ODIR" || exit 1
	for name in softmax-topk bias-balanced; do
		T 30 "$MOECTL" router set $name >"$TMP/out" 2>&1
		rc=$?
		if [ $rc -ne 1 ]; then
			fail "router set $name -> $(readlink "$ODIR/$name.so") (owner $(stat -c %U "$(readlink "$ODIR/$name.so")"), directory $(stat -c %U "$(dirname "$(readlink "$ODIR/$name.so")")")): exit $rc, want 1: $(cat "$TMP/out")"
		elif ! grep -qiE "owne|nobody|65534" "$TMP/out"; then
			fail "router set $name refused without naming the owner: $(cat "$TMP/out")"
		else
			ok "router set $name refused: $(head -c 200 "$TMP/out")"
		fi
	done
	T 30 "$MOECTL" router set sigmoid-norm --layer 1 >"$TMP/out" 2>&1 &&
		ok "a symlink to root's file in root's directory loads" ||
		fail "router set sigmoid-norm through a root-owned symlink target: $(cat "$TMP/out")"
	T 30 "$MOECTL" infer --layer 1 --random 2 >/dev/null 2>&1 || fail "not serving after the ownership checks"
	stop_bounded 15
	[ "$STOP_RC" = 0 ] || fail "moed exited $STOP_RC on SIGTERM"
fi
finish
