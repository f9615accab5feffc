#!/bin/bash
# What `moectl plugins` and `router set` may load (issue 13, defects 1 and 11):
# a world-writable plugin file is listed with the reason and its code never
# runs (its constructor leaves a mark in $MOCK_TRACE when it does); a
# permitted one is mapped once, and listing it again maps nothing; a link to
# a file another user owns is refused, naming both paths (as root only).
. "$top_srcdir/tests/lib.sh"
PY=${PYTHON3:-/usr/bin/python3}
PDIR="$TMP/plugins"
mkdir -p "$PDIR"
chmod 0755 "$PDIR"
cp "$MOED_TEST_PLUGIN_DIR"/*.so "$PDIR/"
cp "$MOED_TEST_MOCK_DIR/evil.so" "$PDIR/"
chmod 0666 "$PDIR/evil.so"
MOED_TEST_PLUGIN_DIR="$PDIR"
export MOCK_TRACE="$TMP/trace"
: >"$MOCK_TRACE"
start_moed || exit 1

plugin_error() {        # plugin_error NAME: the listing's error for NAME ("" if none)
	"$MOECTL" --json plugins | $PY -c '
import json, sys
d = json.load(sys.stdin)
a = [p for p in d.get("available", []) if p.get("name") == sys.argv[1]]
print(a[0].get("error", "") if a else "MISSING")' "$1"
}
marks() { grep -c evil-constructor "$MOCK_TRACE"; }

err=$(plugin_error evil)
case $err in *"is writable by others"*) ok "refused file listed with the reason" ;;
	*) fail "evil listed as: '$err'" ;; esac
expect_fail 1 "is writable by others" "$MOECTL" router set evil
[ "$(marks)" -eq 0 ] && ok "refused file never mapped" || fail "evil's constructor ran $(marks) times"

chmod 0644 "$PDIR/evil.so"
err=$(plugin_error evil)
[ -z "$err" ] && ok "permitted file listed" || fail "evil after chmod: '$err'"
for _ in 1 2 3; do plugin_error evil >/dev/null; done
[ "$(marks)" -eq 1 ] && ok "listing again maps nothing" || fail "mapped $(marks) times for 4 listings"

if [ "$(id -u)" -eq 0 ]; then
	OTHER="$TMP/other"
	mkdir -p "$OTHER"
	chmod 0755 "$OTHER"
	cp "$MOED_TEST_MOCK_DIR/mock-router.so" "$OTHER/real.so"
	chmod 0755 "$OTHER/real.so"
	chown 65534:65534 "$OTHER/real.so"
	ln -s "$OTHER/real.so" "$PDIR/mock-router.so"
	expect_fail 1 "'$PDIR/mock-router.so' -> '$OTHER/real.so' is owned by uid 65534" \
		"$MOECTL" router set mock-router
	err=$(plugin_error mock-router)
	case $err in *"owned by uid 65534"*) ok "link to another user's file listed as refused" ;;
		*) fail "mock-router listed as: '$err'" ;; esac
else
	echo "not root: the link to another user's file is tested by test_loader only"
fi
"$MOECTL" route --layer 1 --random 2 >/dev/null || fail "route after refusals"
stop_moed
finish
