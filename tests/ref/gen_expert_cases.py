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

FP8 cases (--fp8) quantise the weights to e4m3 codes with float32 block
scales of 128x128 (partial blocks at the edges; the scales of neighbouring
blocks differ by powers of two, so a misapplied scale is loud, and the larger
ones push many codes into the subnormals).  The codes are stored as int32
.npy (gate.npy ...), the scales as gate_scale.npy [E][ceil(R/128)][ceil(C/128)]
(shared_gate_scale.npy ...), and the expected output uses the weights
dequantised here: e4m3 value (decoded from its bits below) * scale in float32.

Each folder holds meta.txt: "E H I Is k T dtype" (dtype f32, bf16 or fp8).
Usage: gen_expert_cases.py OUTDIR [--fp8].  Exit 77 when numpy is missing.
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


def e4m3_values():
    """float32 value of each e4m3 code (NaN for 0x7f and 0xff)."""
    v = np.zeros(256, dtype=np.float64)
    for c in range(256):
        e, m = (c >> 3) & 15, c & 7
        f = (8 + m) * 2.0 ** (e - 10) if e else m * 2.0 ** -9
        v[c] = -f if c & 0x80 else f
    v[0x7F] = v[0xFF] = np.nan
    return v.astype(np.float32)


E4M3 = e4m3_values()
BLOCK = 128


def fp8_quantise(rng, w, base):
    """w [..., R, C] float32 -> (codes int32, scales float32 [..., ceil(R/B), ceil(C/B)],
    dequantised float32)."""
    R, C = w.shape[-2:]
    rb, cb = -(-R // BLOCK), -(-C // BLOCK)
    scale = (np.float32(base) * np.exp2(rng.integers(0, 8, w.shape[:-2] + (rb, cb)))
             ).astype(np.float32)
    full = np.repeat(np.repeat(scale, BLOCK, axis=-2), BLOCK, axis=-1)[..., :R, :C]
    finite = np.array([c for c in range(256) if (c & 0x7F) != 0x7F])
    order = np.argsort(E4M3[finite])
    vals, codes_sorted = E4M3[finite][order], finite[order]
    t = np.clip(w / full, vals[0], vals[-1])
    i = np.clip(np.searchsorted(vals, t), 1, len(vals) - 1)
    i -= (t - vals[i - 1]) < (vals[i] - t)
    codes = codes_sorted[i].astype(np.int32)
    return codes, scale, (E4M3[codes] * full).astype(np.float32)


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
    stored = {}
    if dtype == "fp8":
        mats = dict(gate=gate, up=up, down=down)
        if Is:
            mats.update(shared_gate=sg, shared_up=su, shared_down=sd)
        for key, a in mats.items():
            codes, scale, deq = fp8_quantise(rng, a, float(np.abs(a).max()) / 448)
            stored[key], stored[key + "_scale"], mats[key] = codes, scale, deq
        gate, up, down = mats["gate"], mats["up"], mats["down"]
        if Is:
            sg, su, sd = mats["shared_gate"], mats["shared_up"], mats["shared_down"]
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
    arrays.update(stored)
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


# the cases also run with FP8 weights (--fp8)
FP8_CASES = ("t1", "hot", "k8_e64", "odd_dims", "slices")


def main():
    args = [a for a in sys.argv[1:] if a != "--fp8"]
    if len(args) != 1:
        print("usage: gen_expert_cases.py OUTDIR [--fp8]", file=sys.stderr)
        return 2
    seed = 1
    for name, E, H, I, Is, k, T, mode in CASES:
        dtypes = ("f32", "bf16", "fp8") if "--fp8" in sys.argv and name in FP8_CASES else \
            ("f32", "bf16")
        for dtype in dtypes:
            # fp8 cases take seeds of their own: the others stay as without --fp8
            make(args[0], "%s_%s" % (name, dtype), E, H, I, Is, k, T, dtype, mode,
                 seed + 1000 if dtype == "fp8" else seed)
            seed += dtype != "fp8"
    return 0


if __name__ == "__main__":
    sys.exit(main())
