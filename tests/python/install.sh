#!/bin/bash
# The Python client installed: `make install` of the package into a staging
# directory puts moed/ (sources and the generated moed_pb2) in $(pythondir),
# and `import moed` from there (PYTHONPATH, not the build tree) talks to the
# real daemon.
. "$top_srcdir/tests/lib.sh"
need_numpy
PY=${PYTHON3:-/usr/bin/python3}
[ -f "$top_builddir/python/moed/moed_pb2.py" ] || skip "the Python client is not built (--enable-python)"
DEST="$TMP/dest"
# only the package's install targets: tests/integration/install.sh runs a full
# make install of its own at the same time
make -s -C "$top_builddir" install-moedpyPYTHON install-nodist_moedpyPYTHON DESTDIR="$DEST" \
	>"$TMP/install.log" 2>&1 || { cat "$TMP/install.log"; fail "make install"; finish; }
PYDIR=$(sed -n 's/^pythondir = //p' "$top_builddir/Makefile")
PREFIX=$(sed -n 's/^prefix = //p' "$top_builddir/Makefile")
PYDIR=${PYDIR//\$\{PYTHON_PREFIX\}/$PREFIX}
PYDIR=${PYDIR//\$\{prefix\}/$PREFIX}
for f in __init__.py client.py aio.py _wire.py errors.py moed_pb2.py; do
	[ -f "$DEST$PYDIR/moed/$f" ] || fail "not installed: $PYDIR/moed/$f ($(find "$DEST" -name '*.py'))"
done
start_moed --model synthetic:S0 || exit 1
env -u PYTHONPATH PYTHONPATH="$DEST$PYDIR" PYTHONDONTWRITEBYTECODE=1 "$PY" - "$DEST$PYDIR" <<'PY' &&
import os, sys
import moed, moed.moed_pb2
root = os.path.realpath(sys.argv[1])
for m in (moed, moed.moed_pb2):
    assert os.path.realpath(m.__file__).startswith(root), m.__file__
with moed.Client() as c:
    assert c.model()["hidden_size"] == 256
print("imported from", os.path.dirname(moed.__file__))
PY
	ok "import moed from $PYDIR after make install" || fail "import moed from the installed copy"
stop_moed
finish
