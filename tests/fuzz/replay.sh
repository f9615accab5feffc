#!/bin/sh
# Replay every committed fuzz corpus through its target (no libFuzzer needed).
rc=0
for t in frame config safetensors hfconfig npy; do
	bin="$top_builddir/tests/fuzz/replay_$t"
	[ -x "$bin" ] || { echo "FAIL: $bin not built"; rc=1; continue; }
	"$bin" "$top_srcdir/tests/fuzz/corpus/$t" || { echo "FAIL: corpus $t"; rc=1; }
done
exit $rc
