#!/bin/bash
# Man pages: lint-clean under mandoc (warnings and worse), and every moectl
# command listed by `moectl --help` is documented in moectl(1), every moed
# option of `moed --help` in moed(8), every moed.conf key in moed.conf(5).
. "$top_srcdir/tests/lib.sh"
command -v mandoc >/dev/null || skip "mandoc not installed (Debian: mandoc)"
for page in "$top_srcdir"/man/*.[1-8]; do
	if mandoc -Tlint -Wwarning "$page" >"$TMP/lint" 2>&1; then ok "lint $(basename "$page")"
	else fail "lint $(basename "$page"): $(cat "$TMP/lint")"; fi
done
for cmd in $("$MOECTL" --help | sed -n 's/^  moectl \([a-z]*\).*/\1/p'); do
	grep -q "^\.It Cm $cmd" "$top_srcdir/man/moectl.1" || fail "moectl(1) lacks command '$cmd'"
	"$MOECTL" "$cmd" --help | grep -q "usage: moectl $cmd" || fail "moectl $cmd --help"
done
# every row of the request table: its moectl command exists and is documented,
# and moed-protocol(7) names its request body
rows=$(sed -n 's/^REQUEST(\([A-Z_]*\), *\([a-z_]*\),.*"\([a-z ]*\)")$/\2:\3/p' \
	"$top_srcdir/proto/requests.def")
[ "$(echo "$rows" | wc -l)" -ge 12 ] || fail "request rows read from proto/requests.def: $rows"
while IFS=: read -r body cmd; do
	[ -n "$body" ] || continue
	grep -q "$body" "$top_srcdir/man/moed-protocol.7" || fail "moed-protocol(7) lacks request '$body'"
	[ -n "$cmd" ] || continue
	"$MOECTL" $cmd --help 2>/dev/null | grep -q "usage: moectl ${cmd%% *}" ||
		fail "request '$body': no moectl command '$cmd'"
	grep -q "^\.It Cm $cmd" "$top_srcdir/man/moectl.1" || fail "moectl(1) lacks '$cmd' (request '$body')"
done <<EOF_ROWS
$(sed -n 's/^REQUEST(\([A-Z_]*\), *\([a-z_]*\),.*"\([a-z ]*\)")$/\2:\3/p' "$top_srcdir/proto/requests.def")
EOF_ROWS
sed 's/\\//g' "$top_srcdir/man/moed.8" >"$TMP/moed.8.plain"
for opt in $("$MOED" --help | grep -o -- '--[a-z-]*' | sort -u); do
	grep -q -- "Fl -${opt#--}" "$TMP/moed.8.plain" || fail "moed(8) lacks $opt"
done
for key in $(sed -n 's/^#\?\([a-z_]*\) = .*/\1/p' "$top_srcdir/etc/moed.conf" | sort -u); do
	case $key in plugin|gamma|update_every|epsilon|path) continue ;; esac
	grep -q "^\.It Cm $key" "$top_srcdir/man/moed.conf.5" || fail "moed.conf(5) lacks '$key'"
done
finish
