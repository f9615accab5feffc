#!/bin/bash
# One prepared run of the cuda expert backend on a host with an NVIDIA GPU and
# the CUDA toolkit: copy the tree to a scratch folder, configure with
# --with-cuda=yes, build, run the GPU tests (tests/gpu/*: numerics against
# numpy, concurrency, refusals) and the benchmark (bench/cuda_bench: S1-S3,
# fp32 and bf16, T = 1..4096, against the measured copy bandwidth and GEMM
# peaks).  When configure cannot run (the daemon's other dependencies are
# missing), it builds just the plugin, the GPU test and the benchmark with nvcc
# and gcc directly.  A few minutes in all; everything printed is also written
# to $OUT/run-on-device.log (or the scratch folder).
#
# Environment: CUDA_HOME (default /usr/local/cuda), NVCC_GENCODE (default
# -arch=native: only this GPU, to build fast), BENCH_SHAPES, BENCH_SECONDS,
# BENCH_PARAMS (see bench/cuda_bench.c), WORK (scratch folder).
set -u
SRC=$(cd "$(dirname "$0")/../.." && pwd)
CUDA_HOME=${CUDA_HOME:-/usr/local/cuda}
export NVCC_GENCODE=${NVCC_GENCODE:--arch=native}
export BENCH_SECONDS=${BENCH_SECONDS:-0.2}
WORK=${WORK:-$(mktemp -d "${TMPDIR:-/tmp}/moed-gpu.XXXXXX")}
LOG=${OUT:-$WORK}/run-on-device.log
JOBS=$(nproc 2>/dev/null || echo 4)
PY=${PYTHON3:-/usr/bin/python3}
mkdir -p "$(dirname "$LOG")"
exec > >(tee "$LOG") 2>&1
status=0

step() { echo; echo "==== $* ($(date +%T))"; }

step "host"
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm,clocks.max.mem \
	--format=csv 2>/dev/null || echo "nvidia-smi not available"
"$CUDA_HOME/bin/nvcc" --version | tail -2 || { echo "no nvcc in $CUDA_HOME/bin"; exit 1; }
echo "source $SRC, scratch $WORK, NVCC_GENCODE=$NVCC_GENCODE"

step "copy the tree"
mkdir -p "$WORK/src"
(cd "$SRC" && tar --exclude=.git --exclude=autom4te.cache -cf - .) | (cd "$WORK/src" && tar xf -)
cd "$WORK/src" || exit 1
[ -f Makefile ] && make distclean >/dev/null 2>&1

step "configure --with-cuda=yes"
if autoreconf -fi >autoreconf.log 2>&1 &&
	./configure --with-cuda="$CUDA_HOME" NVCC_GENCODE="$NVCC_GENCODE" >configure.log 2>&1; then
	step "build"
	make -j"$JOBS" >make.log 2>&1 || { tail -40 make.log; exit 1; }
	make -j"$JOBS" tests/gpu/test_cuda_expert tests/gpu/test_cuda_nodevice bench/cuda_bench \
		>>make.log 2>&1 ||
		{ tail -40 make.log; exit 1; }
	step "GPU tests"
	make check TESTS="tests/gpu/test_cuda_nodevice tests/gpu/daemon_nodevice.sh tests/gpu/cuda_expert.sh" \
		>check.log 2>&1 || status=1
	grep -E '^(PASS|SKIP|FAIL|ERROR|XPASS)' check.log
	for f in tests/gpu/cuda_expert.log tests/gpu/test_cuda_nodevice.log; do
		echo "--- $f"; grep -E '^(ok|not ok|SKIP|Bail)' "$f" | grep -v '^ok' || true
		grep -cE '^ok' "$f" | sed 's/^/checks passed: /'
	done
	grep -E 'rel err' tests/gpu/cuda_expert.log | sort -t' ' -k7 -g | tail -5
	BENCH=./bench/cuda_bench
	PLUGINS=plugins/.libs
else
	echo "configure failed (tail of the logs below); building the plugin, test and benchmark directly"
	tail -5 autoreconf.log configure.log 2>/dev/null
	FB=$WORK/direct
	mkdir -p "$FB/plugins"
	step "direct build"
	"$CUDA_HOME/bin/nvcc" -std=c++17 -O3 $NVCC_GENCODE -I. -Iinclude \
		-Xcompiler -fPIC,-fvisibility=hidden,-fno-exceptions,-fno-threadsafe-statics \
		-c plugins/cuda/kernels.cu -o "$FB/kernels.o" || exit 1
	gcc -std=gnu11 -O2 -fPIC -fvisibility=hidden -shared -Wall -Wextra -Wno-unused-parameter \
		-I. -I"$CUDA_HOME/include" plugins/cuda/cuda.c plugins/common/params.c "$FB/kernels.o" \
		-L"$CUDA_HOME/lib64" -Wl,-rpath,"$CUDA_HOME/lib64" -Wl,-z,defs \
		-lcublas -lcudart -ldl -lpthread -lm -o "$FB/plugins/cuda.so" || exit 1
	for t in test_cuda_expert test_cuda_nodevice; do
		gcc -std=gnu11 -O2 -I. -I"$CUDA_HOME/include" "tests/gpu/$t.c" -L"$CUDA_HOME/lib64" \
			-Wl,-rpath,"$CUDA_HOME/lib64" -lcudart -ldl -lpthread -lm -o "$FB/$t" || exit 1
	done
	gcc -std=gnu11 -O2 -I. -I"$CUDA_HOME/include" bench/cuda_bench.c -L"$CUDA_HOME/lib64" \
		-Wl,-rpath,"$CUDA_HOME/lib64" -lcublas -lcudart -ldl -lm -o "$FB/cuda_bench" || exit 1
	step "GPU tests"
	MOED_TEST_PLUGIN_DIR=$FB/plugins "$FB/test_cuda_nodevice" | tail -3 || status=1
	if "$PY" tests/ref/gen_expert_cases.py "$FB/cases"; then
		MOED_TEST_CASES=$FB/cases MOED_TEST_PLUGIN_DIR=$FB/plugins "$FB/test_cuda_expert" \
			>"$FB/test.log" 2>&1 || status=1
		grep -vE '^ok|^  \[' "$FB/test.log"; grep -cE '^ok' "$FB/test.log" | sed 's/^/checks passed: /'
		grep -E 'rel err' "$FB/test.log" | sort -t' ' -k7 -g | tail -5
	else
		echo "no numpy for $PY: numerics not checked"; status=1
	fi
	BENCH=$FB/cuda_bench
	PLUGINS=$FB/plugins
fi

step "benchmark"
timeout 420 "$BENCH" "$PLUGINS" || status=1
step "done: status $status (log: $LOG)"
exit $status
