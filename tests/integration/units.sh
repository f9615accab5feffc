#!/bin/bash
# The unit files: `systemd-analyze verify` is clean (man page references are
# not checked: the pages are not installed here) and the service's exposure
# score from `systemd-analyze security --offline=yes` is at most 1.5.
. "$top_srcdir/tests/lib.sh"
command -v systemd-analyze >/dev/null || skip "systemd-analyze not installed (Debian: systemd)"
UNITS="$TMP/units"
mkdir -p "$UNITS"
sed -e "s#@sbindir@/moed#$MOED#" -e "s#@bindir@/moectl#$MOECTL#" -e "s#@sysconfdir@#/etc#" \
	"$top_srcdir/etc/moed.service.in" >"$UNITS/moed.service"
cp "$top_srcdir/etc/moed.socket" "$top_srcdir/etc/moed-admin.socket" "$UNITS/"
cd "$UNITS" || exit 1
if systemd-analyze verify --man=no moed.service moed.socket moed-admin.socket >"$TMP/verify" 2>&1 &&
	! grep -q . "$TMP/verify"; then
	ok "systemd-analyze verify is clean"
else
	fail "systemd-analyze verify: $(cat "$TMP/verify")"
fi
score=$(systemd-analyze security --offline=yes moed.service 2>/dev/null |
	sed -n 's/.*Overall exposure level for moed.service: \([0-9.]*\).*/\1/p')
if [ -n "$score" ] && awk "BEGIN { exit !($score <= 1.5) }"; then
	ok "exposure score $score <= 1.5"
else
	fail "exposure score '$score' (want <= 1.5)"
fi
grep -q "^Type=notify" moed.service && grep -q "^WatchdogSec=" moed.service &&
	grep -q "^FileDescriptorName=api" moed.socket && grep -q "^SocketMode=0600" moed-admin.socket &&
	! grep -q "^PrivateUsers=yes" moed.service && ok "unit contract" || fail "unit contract"
finish
