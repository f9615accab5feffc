#!/bin/bash
# Man pages: lint-clean under mandoc (warnings and worse), and every moectl
# command listed by `moectl --help` is documented in moectl(1), every moed
# option of `moed --help` in moed(8).  moed.conf(5) against the config key
# table (`moed --list-config-keys`): every key is documented in its section
# with its default and its reload policy, the page documents no key the table
# lacks, and etc/moed.conf shows every key in its section.
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

# the table: from the daemon once it has the flag, else from the test helper
"$MOED" --list-config-keys >"$TMP/keys" || fail "moed --list-config-keys failed"
[ "$(wc -l <"$TMP/keys")" -ge 30 ] || fail "config key table has $(wc -l <"$TMP/keys") rows"
# moed.conf(5) as "section key<TAB>entry text": one line per `.It Cm key` entry,
# up to the next .It or .El, roff escapes removed
awk '/^\.Ss \[/ { sec = $2; gsub(/[][]/, "", sec); next }
	function flush() { if (key != "") print sec " " key "\t" text; key = "" }
	/^\.It Cm / { flush(); key = $3; text = ""; next }
	/^\.(It|El)/ { flush(); next }
	key != "" { text = text " " $0 }
	END { flush() }' "$top_srcdir/man/moed.conf.5" | sed 's/\\&//g; s/\\-/-/g' >"$TMP/entries"
while read -r sec key type def policy _; do
	entry=$(grep "^$sec $key	" "$TMP/entries" | cut -f2)
	if [ -z "$entry" ]; then fail "moed.conf(5) lacks [$sec] $key"; continue; fi
	printf '%s\n' "$entry" | grep -qi "default" || fail "moed.conf(5) [$sec] $key: no default"
	if [ "$def" != - ]; then
		printf '%s\n' "$entry" | grep -qwF -- "$def" ||
			fail "moed.conf(5) [$sec] $key: default '$def' not shown"
	fi
	case $policy in
	live) want=Reload other=Restart ;;
	restart) want=Restart other=Reload ;;
	*) fail "[$sec] $key: policy '$policy'"; continue ;;
	esac
	printf '%s\n' "$entry" | grep -qw "$want" && ! printf '%s\n' "$entry" | grep -qw "$other" ||
		fail "moed.conf(5) [$sec] $key: want '$want' (the table says $policy)"
done <"$TMP/keys"
cut -f1 "$TMP/entries" | while read -r sec key; do
	grep -q "^$sec $key " "$TMP/keys" || echo "moed.conf(5) documents [$sec] $key, which is no key"
done >"$TMP/extra"
[ -s "$TMP/extra" ] && fail "$(cat "$TMP/extra")"
# etc/moed.conf as "section key", commented-out keys included; [router] and
# [expert] may show plugin parameters besides their keys
awk '/^\[/ { sec = $1; gsub(/[][]/, "", sec); next }
	/^#?[a-z_]+ =( |$)/ { k = $1; sub(/^#/, "", k); print sec " " k }' \
	"$top_srcdir/etc/moed.conf" >"$TMP/example"
while read -r sec key _; do
	grep -qx "$sec $key" "$TMP/example" || fail "etc/moed.conf lacks [$sec] $key"
done <"$TMP/keys"
while read -r sec key; do
	case $sec in router|expert) continue ;; esac
	grep -q "^$sec $key " "$TMP/keys" || fail "etc/moed.conf shows [$sec] $key, which is no key"
done <"$TMP/example"
ok "moed.conf(5) and etc/moed.conf against $(wc -l <"$TMP/keys") config keys"
finish
