#!/bin/sh
# Install dependencies, build, and run the whole test suite (make check).
# Ends with "N passed, N failed" and exits non-zero when anything failed.
cd "$(dirname "$0")/.." || exit 1
tools/deps.sh || exit 1
tools/build.sh || { echo "0 passed, 1 failed"; exit 1; }
make -j"$(nproc)" check >check.out 2>&1
rc=$?
cat check.out
for f in $(find tests -name '*.log' ! -name test-suite.log); do
	grep -q '^:test-result: FAIL\|^:test-result: ERROR' "${f%.log}.trs" 2>/dev/null &&
		{ echo "==== $f"; tail -n 40 "$f"; }
done
pass=$(sed -n 's/^# PASS: *//p' check.out | tail -n 1)
skip=$(sed -n 's/^# SKIP: *//p' check.out | tail -n 1)
fail=$(sed -n 's/^# FAIL: *//p' check.out | tail -n 1)
err=$(sed -n 's/^# ERROR: *//p' check.out | tail -n 1)
fail=$(( ${fail:-0} + ${err:-0} ))
[ "$rc" -ne 0 ] && [ "$fail" -eq 0 ] && fail=1
echo "(${skip:-0} skipped)"
echo "${pass:-0} passed, $fail failed"
[ "$rc" -eq 0 ] && [ "$fail" -eq 0 ]
