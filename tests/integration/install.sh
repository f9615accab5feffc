#!/bin/bash
# make install into a staging directory, then prove a third party can write a
# plugin: build plugins/examples/hash-router with only the installed header
# and moed-plugin.pc (its own Makefile, pkg-config), load it into the
# installed moed, and route with it.
. "$top_srcdir/tests/lib.sh"
command -v pkg-config >/dev/null || skip "pkg-config not installed"
DEST="$TMP/dest"
make -s -C "$top_builddir" install DESTDIR="$DEST" >"$TMP/install.log" 2>&1 ||
	{ cat "$TMP/install.log"; fail "make install"; finish; }
PC=$(find "$DEST" -name moed-plugin.pc | head -n 1)
SBIN=$(find "$DEST" -path '*/sbin/moed' | head -n 1)
PDIR=$(find "$DEST" -type d -path '*/moed/plugins' | head -n 1)
[ -n "$PC" ] && [ -n "$SBIN" ] && [ -n "$PDIR" ] && [ -f "$PDIR/cpu.so" ] &&
	[ -n "$(find "$DEST" -path '*/include/moed/plugin.h')" ] && ok "installed layout" ||
	fail "installed layout: $(find "$DEST" -type f)"
ls "$PDIR"/*.la >/dev/null 2>&1 && fail ".la files installed in the plugin directory"
# nothing outside the prefix (units and sysusers included), so a non-root
# ./configure --prefix=$HOME/.local && make install works
PREFIX=$(sed -n 's/^prefix = //p' "$top_builddir/Makefile")
outside=$(cd "$DEST" && find . -type f | sed 's|^\.||' | grep -v "^$PREFIX/")
[ -z "$outside" ] && ok "every installed file is below the prefix $PREFIX" ||
	fail "installed outside the prefix $PREFIX: $outside"
[ -n "$(find "$DEST$PREFIX" -name moed.service)" ] && ok "units installed below the prefix" ||
	fail "no moed.service below $PREFIX"

mkdir -p "$TMP/ex"
PKG_CONFIG_PATH=$(dirname "$PC") PKG_CONFIG_SYSROOT_DIR="$DEST" \
	make -s -C "$TMP/ex" -f "$top_srcdir/plugins/examples/hash-router/Makefile" \
	VPATH="$top_srcdir/plugins/examples/hash-router" >"$TMP/ex.log" 2>&1 ||
	fail "example plugin build: $(cat "$TMP/ex.log")"
cp "$TMP/ex/hash-router.so" "$PDIR/" || fail "no hash-router.so"
MOED="$SBIN" MOED_TEST_PLUGIN_DIR="$PDIR" start_moed --router hash-router || { finish; }
"$MOECTL" --json route --layer 1 --random 8 >"$TMP/route.json" || fail "route with hash-router"
${PYTHON3:-/usr/bin/python3} - "$TMP/route.json" <<'PY' && ok "third-party plugin routes" || fail "hash-router routes"
import json, sys
r = json.load(open(sys.argv[1]))
assert r["router"] == "hash-router", r["router"]
for e, w in zip(r["experts"], r["weights"]):
    assert len(set(e)) == 4 and all(0 <= x < 16 for x in e), e
    assert all(abs(x - 0.25) < 1e-7 for x in w), w
PY
"$MOECTL" infer --layer 1 --random 4 >/dev/null || fail "infer with hash-router"
stop_moed
finish
