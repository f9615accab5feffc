#!/bin/bash
# moectl's .npy code against numpy itself: numpy writes the forms moectl must
# read (float32 2-D and 1-D with NaN payloads, -0, subnormals and infinities;
# float64, including values at the float32 overflow boundary; int32; format
# 2.0; an empty batch), `test_npy --copy` reads each and writes it back, and
# numpy checks every copy is a version 1.0 file with 64-byte aligned data,
# 2-D, and bit-identical to the original (float64: to numpy's own float32
# rounding).  Forms moectl refuses (Fortran order, big-endian, float16, int64,
# 3-D, pickled objects) must fail with a reason.
. "$top_srcdir/tests/lib.sh"
need_numpy
PY=${PYTHON3:-/usr/bin/python3}
COPY="$top_builddir/tests/unit/test_npy"
[ -x "$COPY" ] || { fail "$COPY not built"; finish; }
mkdir -p "$TMP/in" "$TMP/bad" "$TMP/copies"

"$PY" - "$TMP" <<'EOF' || fail "numpy could not write the inputs"
import sys
import numpy as np
d = sys.argv[1]
rng = np.random.default_rng(7)
x = rng.standard_normal((7, 33)).astype(np.float32)
x.flat[:8] = [0.0, -0.0, np.inf, -np.inf, 1e-45, -1e-40, 3.4028235e38, np.nan]
x.flat[8] = np.array([0x7FC01234], dtype=np.uint32).view(np.float32)[0]    # NaN payload
np.save(f"{d}/in/f32.npy", x)
np.save(f"{d}/in/row.npy", x[:1])
np.save(f"{d}/in/vector.npy", rng.standard_normal(300).astype(np.float32))
np.save(f"{d}/in/empty.npy", np.zeros((0, 5), np.float32))
big = np.float64(np.finfo(np.float32).max)
edge = [big, big + 2.0 ** 103, np.nextafter(big + 2.0 ** 103, 0), -(big + 2.0 ** 103), 1e300,
        -1e300, 1e-50, 0.1, -0.0, 1.0 / 3.0]
np.save(f"{d}/in/f64.npy", np.array(edge * 3, dtype=np.float64).reshape(5, 6))
i = np.arange(-12, 12, dtype=np.int32).reshape(4, 6)
i.flat[:2] = [np.iinfo(np.int32).min, np.iinfo(np.int32).max]
np.save(f"{d}/in/i32.npy", i)
with open(f"{d}/in/v2.npy", "wb") as f:
    np.lib.format.write_array(f, x, version=(2, 0))
# refused
np.save(f"{d}/bad/fortran.npy", np.asfortranarray(x))
np.save(f"{d}/bad/bigendian.npy", x.astype(">f4"))
with np.errstate(over="ignore"):
    np.save(f"{d}/bad/half.npy", x.astype(np.float16))
np.save(f"{d}/bad/int64.npy", i.astype(np.int64))
np.save(f"{d}/bad/cube.npy", np.zeros((2, 3, 4), np.float32))
np.save(f"{d}/bad/object.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
EOF

for f in "$TMP"/in/*.npy; do
	n=$(basename "$f")
	"$COPY" --copy "$f" "$TMP/copies/$n" 2>"$TMP/err" && ok "read and wrote $n" ||
		fail "$n: $(cat "$TMP/err")"
done
expect_fail 1 "Fortran" "$COPY" --copy "$TMP/bad/fortran.npy" "$TMP/copies/x.npy"
expect_fail 1 "'>f4' is not supported" "$COPY" --copy "$TMP/bad/bigendian.npy" "$TMP/copies/x.npy"
expect_fail 1 "'<f2' is not supported" "$COPY" --copy "$TMP/bad/half.npy" "$TMP/copies/x.npy"
expect_fail 1 "'<i8' is not supported" "$COPY" --copy "$TMP/bad/int64.npy" "$TMP/copies/x.npy"
expect_fail 1 "3 dimensions" "$COPY" --copy "$TMP/bad/cube.npy" "$TMP/copies/x.npy"
expect_fail 1 "'|O' is not supported" "$COPY" --copy "$TMP/bad/object.npy" "$TMP/copies/x.npy"

"$PY" - "$TMP" <<'EOF' || fail "numpy disagrees with the copies"
import os, sys
import numpy as np
d = sys.argv[1]
bad = 0
for name in sorted(os.listdir(f"{d}/in")):
    a = np.load(f"{d}/in/{name}")
    if a.ndim == 1:
        a = a.reshape(1, -1)
    if a.dtype == np.float64:
        with np.errstate(over="ignore"):
            a = a.astype(np.float32)
    with open(f"{d}/copies/{name}", "rb") as f:
        version = np.lib.format.read_magic(f)
        np.lib.format.read_array_header_1_0(f)
        offset = f.tell()
    b = np.load(f"{d}/copies/{name}")
    width = np.uint32 if a.dtype == np.float32 else np.int32
    problems = []
    if version != (1, 0):
        problems.append(f"version {version}")
    if offset % 64:
        problems.append(f"data at offset {offset}, not 64-byte aligned")
    if b.dtype != a.dtype or b.shape != a.shape:
        problems.append(f"{b.dtype}{b.shape}, want {a.dtype}{a.shape}")
    elif not np.array_equal(a.view(width), b.view(width)):
        problems.append("values differ")
    print(f"{'FAIL' if problems else 'ok'}: numpy {name}: {', '.join(problems) or 'identical'}")
    bad += bool(problems)
sys.exit(1 if bad else 0)
EOF
finish
