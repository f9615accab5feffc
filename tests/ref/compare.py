"""Compare what moed produced (via moectl) for a case with the reference files
written by make_cases.py.  usage: compare.py CASE_DIR OUT_DIR [OUTPUT_TOL]

OUT_DIR has got_y_<L>_<T>.npy (moectl infer --output) and route_<L>_<T>.json
(moectl --json route).  Routes must match exactly, route weights to 1e-6
relative, outputs to OUTPUT_TOL (default 1e-5; precision = bf16 rounds the
activations, 1e-2) relative to the output's largest magnitude.  Prints
one line per comparison; exit 1 on any mismatch."""
import json
import os
import sys

import numpy as np


def main():
    case, out = sys.argv[1], sys.argv[2]
    tol = float(sys.argv[3]) if len(sys.argv) > 3 else 1e-5
    layers = open(os.path.join(case, "layers")).read().split()
    sizes = sorted(int(f[2:-4]) for f in os.listdir(case) if f.startswith("x_"))
    bad = 0
    for L in layers:
        for T in sizes:
            tag = "%s layer %s T=%d" % (os.path.basename(case), L, T)
            y_ref = np.load(os.path.join(case, "y_%s_%d.npy" % (L, T)))
            y = np.load(os.path.join(out, "got_y_%s_%d.npy" % (L, T)))
            scale = max(float(np.abs(y_ref).max()), 1e-30)
            err = float(np.abs(y - y_ref).max()) / scale if y.shape == y_ref.shape else np.inf
            r = json.load(open(os.path.join(out, "route_%s_%d.json" % (L, T))))
            e_ref = np.load(os.path.join(case, "experts_%s_%d.npy" % (L, T)))
            w_ref = np.load(os.path.join(case, "weights_%s_%d.npy" % (L, T)))
            e = np.array(r["experts"], np.int32)
            w = np.array(r["weights"], np.float32)
            routes_ok = e.shape == e_ref.shape and (e == e_ref).all()
            w_err = float(np.abs(w - w_ref).max() / max(np.abs(w_ref).max(), 1e-30)) \
                if w.shape == w_ref.shape else np.inf
            ok = routes_ok and w_err <= 1e-6 and err <= tol
            bad += not ok
            print("%s %s: routes %s, weight rel err %.2e, output rel err %.2e"
                  % ("ok" if ok else "FAIL", tag, "equal" if routes_ok else "DIFFER", w_err, err))
            if not routes_ok and e.shape == e_ref.shape:
                t = int(np.nonzero((e != e_ref).any(1))[0][0])
                print("   first differing token %d: got %s want %s" % (t, e[t], e_ref[t]))
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
