#!/bin/sh
# The README's test command: install dependencies, build, and run the whole
# test suite three ways —
#   1. make check in the source tree,
#   2. make check of a copy built with --enable-sanitizers (ASan + UBSan),
#   3. make distcheck (the release tarball builds, passes and installs cleanly),
#   4. make check-valgrind (the daemon under memcheck through the integration tests),
#   5. a build --with-libsystemd=no: its own sd_notify and socket activation code
#      through the systemd contract test and the daemon test.
# Ends with "N passed, N failed" over all of them; exits non-zero on any failure.
# MOED_TEST_QUICK=1 runs only the first.
cd "$(dirname "$0")/.." || exit 1
umask 022        # build outputs must not be group-writable: moed refuses such plugins
top=$(pwd)
tools/deps.sh || exit 1
pass=0 fail=0 skip=0

# count DIR LOG RC: add the automake summary of LOG to the totals
count() {
	p=$(sed -n 's/^# PASS: *//p' "$2" | tail -n 1)
	s=$(sed -n 's/^# SKIP: *//p' "$2" | tail -n 1)
	f=$(sed -n 's/^# FAIL: *//p' "$2" | tail -n 1)
	e=$(sed -n 's/^# ERROR: *//p' "$2" | tail -n 1)
	f=$(( ${f:-0} + ${e:-0} ))
	[ "$3" -ne 0 ] && [ "$f" -eq 0 ] && f=1
	pass=$((pass + ${p:-0})) fail=$((fail + f)) skip=$((skip + ${s:-0}))
	for log in $(find "$1" -name '*.trs' 2>/dev/null); do
		grep -q '^:test-result: \(FAIL\|ERROR\)' "$log" && { echo "==== ${log%.trs}.log"; tail -n 40 "${log%.trs}.log"; }
	done
}

# suite NAME CONFIGURE_FLAGS TESTS: copy the tracked tree to build-NAME, build it
# with the flags, run make check there (all tests when TESTS is empty)
suite() {
	rm -rf "build-$1" && mkdir "build-$1"
	git ls-files -z | tar --null -T - -cf - | tar -xf - -C "build-$1"
	if (cd "build-$1" && autoreconf -fi && ./configure -q $2 && make -j"$(nproc)") \
		>"build-$1.out" 2>&1; then
		if [ -n "$3" ]; then
			(cd "build-$1" && make -j"$(nproc)" check TESTS="$3")
		else
			(cd "build-$1" && make -j"$(nproc)" check)
		fi >"check-$1.out" 2>&1
		rc=$?
		grep -E '^(PASS|FAIL|SKIP|ERROR|#)' "check-$1.out"
		count "$top/build-$1/tests" "check-$1.out" $rc
	else
		tail -n 40 "build-$1.out"
		fail=$((fail + 1))
	fi
}

echo "== 1. build and make check"
if tools/build.sh >build.out 2>&1; then
	make -j"$(nproc)" check >check.out 2>&1
	rc=$?
	cat check.out
	count "$top/tests" check.out $rc
else
	cat build.out
	fail=$((fail + 1))
fi

if [ -z "$MOED_TEST_QUICK" ]; then
	echo "== 2. sanitizer build (ASan + UBSan) and make check"
	suite asan --enable-sanitizers ""

	echo "== 3. make distcheck"
	if make -j"$(nproc)" distcheck >distcheck.out 2>&1; then
		echo "distcheck: ok"
		pass=$((pass + 1))
	else
		tail -n 60 distcheck.out
		fail=$((fail + 1))
	fi

	echo "== 4. valgrind memcheck (make check-valgrind)"
	make check-valgrind >valgrind.out 2>&1
	rc=$?
	grep -E '^(PASS|FAIL|SKIP|ERROR|#)|valgrind' valgrind.out
	count "$top/tests" valgrind.out $rc

	echo "== 5. build without libsystemd"
	suite nosd --with-libsystemd=no "tests/integration/systemd.sh tests/integration/daemon.sh"
fi
echo "($skip skipped)"
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
