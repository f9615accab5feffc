#!/bin/bash
# CI step (run by .ci/run, not part of make check): the Debian packages, from
# a clean copy of the tracked tree.  It installs debian/control's
# Build-Depends (apt-get build-dep), builds with dpkg-buildpackage -us -uc -b
# (dh_auto_test runs make check unless MOED_PKG_BUILD_OPTIONS or
# DEB_BUILD_OPTIONS says nocheck), checks the result with lintian (errors
# fail), installs the packages with apt-get, runs the installed moed the way
# moed.service does (--check-config, then socket-activated with the units'
# socket paths, answering /usr/bin/moectl status and the Python client,
# saving its router state in /var/lib/moed), upgrades to a repacked higher
# version over an edited config and that state (both must survive), and
# purges: nothing of the packages may be left except what debian/README.Debian
# says stays (the moed group).  Prints PASS:/FAIL:/SKIP: lines and
# "N passed, N failed"; exits non-zero on a failure.  Needs root: it
# installs packages on this machine (and refuses when moed is already
# installed, so it never purges somebody's installation).
cd "$(dirname "$0")/.." || exit 1
umask 022
top=$(pwd)
W="$top/build-deb"
pass=0 fail=0 skip=0
PASS() { echo "PASS: $*"; pass=$((pass + 1)); }
FAIL() { echo "FAIL: $*"; fail=$((fail + 1)); }
SKIP() { echo "SKIP: $*"; skip=$((skip + 1)); }
summary() {
	echo "($skip skipped)"
	echo "$pass passed, $fail failed"
	[ "$fail" -eq 0 ]
	exit
}
apt_get() {
	DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 -y -q \
		--no-install-recommends "$@"
}

echo "== 6. Debian packages"
[ "$(id -u)" -eq 0 ] || { SKIP "packages: not root (the test installs and purges packages)"; summary; }
for t in git apt-get dpkg-buildpackage lintian; do
	command -v "$t" >/dev/null ||
		{ SKIP "packages: $t not installed (Debian: git apt dpkg-dev lintian; tools/deps.sh)"; summary; }
done
if dpkg-query -W -f='${Status}\n' moed 2>/dev/null | grep -q ' installed$'; then
	SKIP "packages: moed is already installed here; not touching it"
	summary
fi
git ls-files --error-unmatch debian/control >/dev/null 2>&1 || { FAIL "debian/control is not tracked"; summary; }

# ---- build from a clean copy (tracked files only, as tools/test.sh's suites) ----
rm -rf "$W" && mkdir -p "$W/moed"
git ls-files -z | tar --null -T - -cf - | tar -xf - -C "$W/moed"
if (cd "$W/moed" && apt_get build-dep ./) >"$W/build-dep.log" 2>&1 ||
	{ apt_get update >>"$W/build-dep.log" 2>&1 &&
	  (cd "$W/moed" && apt_get build-dep ./) >>"$W/build-dep.log" 2>&1; }; then
	PASS "build dependencies installed (apt-get build-dep ./)"
else
	tail -n 30 "$W/build-dep.log"
	FAIL "apt-get build-dep ./"
	summary
fi
opts=${MOED_PKG_BUILD_OPTIONS-${DEB_BUILD_OPTIONS:-}}
start=$(date +%s)
if (cd "$W/moed" && DEB_BUILD_OPTIONS="$opts" dpkg-buildpackage -us -uc -b) >"$W/build.log" 2>&1; then
	PASS "dpkg-buildpackage -us -uc -b (DEB_BUILD_OPTIONS='$opts', $(( $(date +%s) - start )) s)"
else
	grep -B2 -A40 '^# FAIL:  *[1-9]\|^FAIL:\|^ERROR:' "$W/build.log" | head -n 80
	tail -n 60 "$W/build.log"
	FAIL "dpkg-buildpackage -us -uc -b (log: $W/build.log)"
	summary
fi
if grep -q '^# TOTAL:' "$W/build.log"; then
	echo "dh_auto_test: $(grep -E '^# (TOTAL|PASS|SKIP|FAIL|ERROR):' "$W/build.log" | tr -s ' ' | tr '\n' ' ')"
fi
debs=$(ls "$W"/*.deb | grep -v -- '-dbgsym_')
names=$(for d in $debs; do dpkg-deb -f "$d" Package; done | sort | tr '\n' ' ')
missing=
for p in moed moed-plugin-dev python3-moed; do
	case " $names " in *" $p "*) ;; *) missing="$missing $p";; esac
done
[ -z "$missing" ] && PASS "packages built: $names" || FAIL "not built:$missing (built: $names)"

# ---- lintian ----
lintian --fail-on error -I "$W"/*.changes >"$W/lintian.log" 2>&1
rc=$?
grep -E '^[EW]: ' "$W/lintian.log"
counts=$(for l in E W I; do printf '%s=%s ' "$l" "$(grep -c "^$l: " "$W/lintian.log")"; done)
[ "$rc" -eq 0 ] && PASS "lintian: no errors ($counts)" || FAIL "lintian (exit $rc): $counts"

# ---- install ----
# what the packages put on the disk, to check after the purge
for d in $debs; do dpkg-deb -c "$d"; done | awk '{ print $6 }' | sed 's|^\./|/|; s|/$||' |
	grep -v '^$' | sort -u >"$W/files.list"
installed=
trap 'rm -f "${api:-}" "${admin:-}" 2>/dev/null; if [ -n "$installed" ]; then [ -n "${MOED_PID:-}" ] && kill -KILL "$MOED_PID" 2>/dev/null; apt_get purge $names >/dev/null 2>&1; fi' EXIT
if apt_get install $debs >"$W/install.log" 2>&1; then
	installed=yes
	PASS "apt-get install $(echo $debs | sed "s|$W/|./|g")"
else
	tail -n 30 "$W/install.log"
	FAIL "apt-get install of the packages"
	summary
fi
dpkg-query -W -f='${Conffiles}\n' moed | grep -q '^ */etc/moed/moed.conf ' &&
	PASS "/etc/moed/moed.conf is a conffile" || FAIL "/etc/moed/moed.conf is not a conffile"
getent group moed >/dev/null && PASS "systemd-sysusers made the group moed" || FAIL "no group moed after install"
off=
for u in sockets.target.wants/moed.socket sockets.target.wants/moed-admin.socket \
	multi-user.target.wants/moed.service; do
	[ -L "/etc/systemd/system/$u" ] || off="$off $u"
done
[ -z "$off" ] && PASS "moed.socket, moed-admin.socket and moed.service enabled" || FAIL "not enabled:$off"
PDIR=$(pkg-config --variable=plugindir moed-plugin 2>/dev/null)
n=0
for p in softmax-topk sigmoid-norm bias-balanced cpu; do [ -f "$PDIR/$p.so" ] && n=$((n + 1)); done
[ "$n" -eq 4 ] && PASS "plugins in $PDIR (the directory moed-plugin.pc names)" ||
	FAIL "plugins in '$PDIR': $(ls "$PDIR" 2>&1)"

case " $names " in *" moed-mpi "*)
	# the MPI module beside (not inside) moed, its unit installed but disabled
	mpi=$(dirname "$PDIR")/cluster/mpi.so
	if [ -f "$mpi" ] && [ -f /lib/systemd/system/moed-mpi.service ] &&
		! [ -e /etc/systemd/system/multi-user.target.wants/moed-mpi.service ] &&
		! objdump -p /usr/sbin/moed | grep -q 'NEEDED.*libmpi'; then
		PASS "moed-mpi: $mpi and a disabled moed-mpi.service; moed itself does not link MPI"
	else
		FAIL "moed-mpi: $(ls -l "$mpi" /lib/systemd/system/moed-mpi.service /etc/systemd/system/*/moed-mpi.service 2>&1 | tr '\n' ' ')"
	fi
esac
if /usr/sbin/moed --check-config >"$W/check-config.log" 2>&1; then
	PASS "/usr/sbin/moed --check-config ($(head -c 120 "$W/check-config.log" | tr '\n' ' '))"
else
	FAIL "/usr/sbin/moed --check-config: $(cat "$W/check-config.log")"
fi

# ---- the installed binary as moed.service runs it ----
UNITS=/lib/systemd/system
exec_start=$(sed -n 's/^ExecStart=//p' "$UNITS/moed.service")
api=$(sed -n 's/^ListenStream=//p' "$UNITS/moed.socket")
admin=$(sed -n 's/^ListenStream=//p' "$UNITS/moed-admin.socket")
if [ -d /run/systemd/system ]; then
	# systemd runs the units itself: take the sockets back for this test
	systemctl stop moed.service moed.socket moed-admin.socket >/dev/null 2>&1
fi
# a socket file nobody answers on is left from an earlier run: clear it
for s in "$api" "$admin"; do
	[ -S "$s" ] && ! /usr/bin/moectl -s "$s" status >/dev/null 2>&1 && rm -f "$s"
done
MOED_PID=
if ! command -v systemd-socket-activate >/dev/null; then
	SKIP "socket-activated start: systemd-socket-activate not installed (Debian: systemd)"
elif [ -e "$api" ] || [ -e "$admin" ]; then
	FAIL "socket-activated start: $api or $admin is in use"
else
	# what StateDirectory=moed with DynamicUser=yes makes
	# (/var/lib/private itself is systemd's: removed at the end when made here)
	[ -d /var/lib/private ] || made_private=yes
	[ -e /var/lib/moed ] || { mkdir -p -m 0700 /var/lib/private && mkdir -p /var/lib/private/moed &&
		ln -s private/moed /var/lib/moed; }
	(unset MOED_SOCKET; exec systemd-socket-activate -l "$api" -l "$admin" --fdname=api:admin \
		$exec_start) >"$W/moed.log" 2>&1 &
	MOED_PID=$!
	ok=
	for _ in $(seq 1 300); do
		env -u MOED_SOCKET /usr/bin/moectl status >"$W/status.out" 2>&1 && { ok=yes; break; }
		kill -0 "$MOED_PID" 2>/dev/null || break
		sleep 0.1
	done
	if [ -n "$ok" ]; then
		PASS "socket-activated $exec_start answers /usr/bin/moectl status on $api"
	else
		FAIL "socket-activated moed: $(cat "$W/status.out"; tail -n 20 "$W/moed.log")"
	fi
	env -u MOED_SOCKET /usr/bin/moectl -s "$admin" router set bias-balanced >/dev/null 2>&1 &&
		env -u MOED_SOCKET /usr/bin/moectl route --layer 1 --random 16 >/dev/null 2>&1 &&
		PASS "admin socket: router set bias-balanced, then route" || FAIL "router set over $admin"
	(cd / && env -u PYTHONPATH -u MOED_SOCKET PYTHONDONTWRITEBYTECODE=1 /usr/bin/python3 -c '
import moed
assert moed.__file__.startswith("/usr/lib/python3/dist-packages/moed/"), moed.__file__
with moed.Client() as c:
    assert c.status()
') >"$W/python.log" 2>&1 && PASS "python3-moed: import moed from dist-packages, status" ||
		FAIL "python3-moed: $(tail -n 5 "$W/python.log")"
	kill -TERM "$MOED_PID"
	wait "$MOED_PID"
	rc=$?
	MOED_PID=
	rm -f "$api" "$admin"     # systemd-socket-activate leaves the files behind
	[ "$rc" -eq 0 ] && PASS "SIGTERM: exit 0" || FAIL "moed exited $rc on SIGTERM: $(tail -n 10 "$W/moed.log")"
	[ -n "$(ls -A /var/lib/moed/ 2>/dev/null)" ] && PASS "router state saved in /var/lib/moed ($(ls /var/lib/moed/ | tr '\n' ' '))" ||
		FAIL "nothing saved in /var/lib/moed"
fi

# ---- the plugin SDK: build the example against the installed header and .pc ----
EX=/usr/share/doc/moed-plugin-dev/examples/hash-router
mkdir -p "$W/example"
if make -s -C "$W/example" -f "$EX/Makefile" VPATH="$EX" >"$W/example.log" 2>&1 &&
	[ -f "$W/example/hash-router.so" ]; then
	PASS "moed-plugin-dev: the example plugin builds from $EX"
	# and the installed moed loads it (next to a copy of the packaged cpu backend)
	mkdir -p "$W/plugins" "$W/state"
	cp "$W/example/hash-router.so" "$PDIR/cpu.so" "$W/plugins/"
	/usr/sbin/moed --socket "$W/ex.sock" --plugin-dir "$W/plugins" --state-dir "$W/state" \
		--config /dev/null --router hash-router >"$W/moed-ex.log" 2>&1 &
	MOED_PID=$!
	for _ in $(seq 1 300); do
		/usr/bin/moectl -s "$W/ex.sock" status >/dev/null 2>&1 && break
		kill -0 "$MOED_PID" 2>/dev/null || break
		sleep 0.1
	done
	/usr/bin/moectl -s "$W/ex.sock" --json route --layer 1 --random 4 >"$W/ex-route.json" 2>&1 &&
		grep -q '"router": *"hash-router"' "$W/ex-route.json" &&
		PASS "the installed moed routes with the example plugin" ||
		FAIL "example plugin in the installed moed: $(head -c 300 "$W/ex-route.json"; tail -n 5 "$W/moed-ex.log")"
	kill -TERM "$MOED_PID" 2>/dev/null
	wait "$MOED_PID"
	MOED_PID=
else
	FAIL "moed-plugin-dev example: $(tail -n 10 "$W/example.log")"
fi

# ---- an upgrade keeps the edited config and the router state ----
ver=$(dpkg-query -W -f='${Version}' moed)
new="$ver+pkgtest1"
echo "# edited by tests/package.sh" >>/etc/moed/moed.conf
state_before=$(cd /var/lib/moed 2>/dev/null && find . -type f -exec md5sum {} + | sort)
rm -rf "$W/up" && mkdir -p "$W/up"
up=
for d in $debs; do
	p=$(dpkg-deb -f "$d" Package)
	dpkg-deb -R "$d" "$W/up/$p" &&
		sed -i -e "s/^Version: .*/Version: $new/" -e "s/(= $ver)/(= $new)/g" "$W/up/$p/DEBIAN/control" &&
		dpkg-deb -b "$W/up/$p" "$W/up/${p}_up.deb" >/dev/null && up="$up $W/up/${p}_up.deb"
done
if DEBIAN_FRONTEND=noninteractive dpkg -i $up >"$W/upgrade.log" 2>&1 &&
	[ "$(dpkg-query -W -f='${Version}' moed)" = "$new" ]; then
	PASS "upgrade $ver -> $new (dpkg -i)"
else
	FAIL "upgrade to $new: $(tail -n 10 "$W/upgrade.log")"
fi
grep -q '^# edited by tests/package.sh$' /etc/moed/moed.conf && [ ! -e /etc/moed/moed.conf.dpkg-new ] &&
	PASS "upgrade kept the edited /etc/moed/moed.conf" || FAIL "upgrade lost the edit of /etc/moed/moed.conf"
state_after=$(cd /var/lib/moed 2>/dev/null && find . -type f -exec md5sum {} + | sort)
[ -n "$state_before" ] && [ "$state_before" = "$state_after" ] && PASS "upgrade kept /var/lib/moed" ||
	FAIL "upgrade changed /var/lib/moed: before '$state_before' after '$state_after'"

# ---- purge: nothing left but the group (debian/README.Debian) ----
if apt_get purge $names >"$W/purge.log" 2>&1; then
	installed=
	PASS "apt-get purge $names"
else
	tail -n 20 "$W/purge.log"
	FAIL "apt-get purge"
fi
left=
while read -r f; do
	[ -e "$f" ] || [ -L "$f" ] || continue
	# a directory other packages still own (/usr/share/doc, /lib/systemd/system...)
	[ -d "$f" ] && dpkg-query -S "$f" >/dev/null 2>&1 && continue
	left="$left $f"
done <"$W/files.list"
for f in /etc/moed /var/lib/moed /var/lib/private/moed \
	$(find /etc/systemd/system /var/lib/systemd/deb-systemd-helper-enabled \
		/var/lib/systemd/deb-systemd-helper-masked -name 'moed*' 2>/dev/null); do
	{ [ -e "$f" ] || [ -L "$f" ]; } && left="$left $f"
done
left="$left $(dpkg-query -W -f='${Package} ${Status}\n' $names 2>/dev/null | grep -v 'not-installed$' | tr '\n' ' ')"
left=$(echo $left)
[ -n "${made_private:-}" ] && rmdir /var/lib/private 2>/dev/null
[ -z "$left" ] && PASS "purge left nothing (the moed group stays, as debian/README.Debian says)" ||
	FAIL "left after purge: $left"
summary
