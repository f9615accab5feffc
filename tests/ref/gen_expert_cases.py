#!/usr/bin/python3
"""Cases for the cpu expert backend test (tests/unit/test_cpu_expert.c).

Writes one folder per case under OUTDIR: random weights, inputs and routes as
.npy (float32 / int32, C order) and the expected output y computed here, in
numpy float32, with this script's own SwiGLU:

    y[t] = sum_j w[t][j] * down_e (silu(gate_e x) * up_e x) + shared(x),  e = experts[t][j]

For bf16 cases the weights are rounded to bf16 (round to nearest even) here and
stored as float32 holding bf16 values, so the C test can hand the plugin their
top 16 bits losslessly and the expected output uses exactly the weights the
plugin sees; the two differ only in fp32 summation order.

Each folder holds meta.txt: "E H I Is k T dtype" (dtype f32 or bf16).
Usage: gen_expert_cases.py OUTDIR.  Exit 77 when numpy is missing.
"""
import os
import sys

try:
    import numpy as np
except ImportError as exc:  # the test driver turns 77 into a skip
    print("gen_expert_cases: numpy is not available (%s); Debian: python3-numpy" % exc)
    sys.exit(77)


def bf16_round(a):
    u = np.ascontiguousarray(a, dtype=np.float32).view(np.uint32).astype(np.uint64)
    u = (u + 0x7FFF + ((u >> 16) & 1)) & 0xFFFF0000
    return u.astype(np.uint32).view(np.float32)


def silu(z):
    return z / (np.float32(1) + np.exp(-z))


def swiglu(x, gate, up, down):
    """x [n,H] float32, gate/up [I,H], down [H,I] -> [n,H] float32."""
    a = silu(x @ gate.T) * (x @ up.T)
    return (a @ down.T).astype(np.float32)


def routes(rng, T, E, k, mode):
    """Distinct experts per token; 'hot' puts expert 1 in every token's list,
    'few' only uses experts 0..k+1 so most experts get no tokens."""
    if mode == "few":
        pool = k + 2
    else:
        pool = E
    ex = np.argsort(rng.random((T, pool)), axis=1)[:, :k].astype(np.int32)
    if mode == "hot":
        has = (ex == 1).any(axis=1)
        ex[~has, 0] = 1
    w = rng.random((T, k)).astype(np.float32) + np.float32(0.05)
    w /= w.sum(axis=1, keepdims=True)
    return ex, (w * np.float32(2.5)).astype(np.float32)


def make(outdir, name, E, H, I, Is, k, T, dtype, mode="random", seed=0):
    rng = np.random.default_rng(seed)
    rnd = (lambda *s: rng.standard_normal(s).astype(np.float32))
    sh = H ** -0.5
    si = I ** -0.5
    gate = rnd(E, I, H) * np.float32(sh)
    up = rnd(E, I, H) * np.float32(sh)
    down = rnd(E, H, I) * np.float32(si)
    sg = rnd(Is, H) * np.float32(sh) if Is else None
    su = rnd(Is, H) * np.float32(sh) if Is else None
    sd = rnd(H, Is) * np.float32(Is ** -0.5) if Is else None
    if dtype == "bf16":
        gate, up, down = bf16_round(gate), bf16_round(up), bf16_round(down)
        if Is:
            sg, su, sd = bf16_round(sg), bf16_round(su), bf16_round(sd)
    x = rnd(T, H)
    ex, w = routes(rng, T, E, k, mode)

    y = np.zeros((T, H), dtype=np.float32)
    for e in range(E):
        rows, slots = np.nonzero(ex == e)
        if len(rows):
            out = swiglu(x[rows], gate[e], up[e], down[e])
            np.add.at(y, rows, w[rows, slots][:, None] * out)
    if Is:
        y += swiglu(x, sg, su, sd)

    d = os.path.join(outdir, name)
    os.makedirs(d, exist_ok=True)
    arrays = dict(x=x, experts=ex, weights=w, gate=gate, up=up, down=down, y=y)
    if Is:
        arrays.update(shared_gate=sg, shared_up=su, shared_down=sd)
    for key, a in arrays.items():
        np.save(os.path.join(d, key + ".npy"), np.ascontiguousarray(a))
    with open(os.path.join(d, "meta.txt"), "w") as f:
        f.write("%d %d %d %d %d %d %s\n" % (E, H, I, Is, k, T, dtype))


CASES = [
    # name           E   H    I    Is   k  T     mode
    ("t1",           8,  64,  32,  32,  2, 1,    "random"),
    ("t4",           8,  128, 64,  0,   2, 4,    "random"),
    ("t1000",        8,  256, 128, 128, 2, 1000, "random"),
    ("hot",          16, 128, 64,  64,  4, 200,  "hot"),
    ("few_e64",      64, 128, 96,  0,   2, 9,    "few"),
    ("k1",           8,  96,  48,  0,   1, 37,   "random"),
    ("k8_e64",       64, 256, 128, 256, 8, 64,   "random"),
    ("odd_dims",     8,  65,  33,  17,  3, 40,   "random"),
    # several row slices and column slices per expert, token blocks of sgemm
    ("slices",       4,  300, 700, 520, 2, 600,  "hot"),
]


def main():
    if len(sys.argv) != 2:
        print("usage: gen_expert_cases.py OUTDIR", file=sys.stderr)
        return 2
    seed = 1
    for name, E, H, I, Is, k, T, mode in CASES:
        for dtype in ("f32", "bf16"):
            make(sys.argv[1], "%s_%s" % (name, dtype), E, H, I, Is, k, T, dtype, mode, seed)
            seed += 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
