#!/usr/bin/python3
"""The PyTorch peer of bench/expert_bench: one MoE layer written the way
HuggingFace's DeepSeek / Mixtral MoE blocks run on a CPU -- a loop over the
experts that received tokens, index_select of their tokens, SwiGLU through
F.linear, index_add of the weighted outputs -- plus the shared experts on all
tokens.  Weights, inputs and routes come from the same counter-based generator
as expert_bench.c (splitmix64 of (tensor id << 40) + index), so both sides run
the same layer.

--dtype fp8 builds the bench's E4M3 codes and 128x128 block scales and runs
bf16 on their dequantisation (exact: an e4m3 value times a power of two fits
in bf16), which is what a CPU user of PyTorch does with an FP8 checkpoint.

Driven over stdin/stdout by bench/peer.c: prints "ready" once the weights are
built, then answers "run T K REP" with "ms <time of one forward on rep REP's
routes>" and "check T K FILE" (our output for rep 0, raw float32) with
"err <worst token's max|ours - peer| / max|peer|>", until EOF."""
import argparse
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

M64 = (1 << 64) - 1


def splitmix64(z):
    """Vectorised over a uint64 array (numpy wraps on overflow)."""
    z = z + np.uint64(0x9E3779B97F4A7C15)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def splitmix64_int(z):
    z = (z + 0x9E3779B97F4A7C15) & M64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & M64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & M64
    return z ^ (z >> 31)


def values(tid, n, scale):
    with np.errstate(over="ignore"):
        h = splitmix64(np.uint64(tid << 40) + np.arange(n, dtype=np.uint64))
    f = (h >> np.uint64(40)).astype(np.float32) / np.float32(16777216.0)
    return (f - np.float32(0.5)) * np.float32(scale)


def value_int(tid, i, scale):
    h = splitmix64_int((tid << 40) + i)
    f = np.float32(h >> 40) / np.float32(16777216.0)
    return (f - np.float32(0.5)) * np.float32(scale)


def e4m3_table():
    """The 256 E4M3 values (OCP FP8: bias 7, no infinities; NaN codes unused)."""
    t = np.zeros(256, dtype=np.float32)
    for c in range(256):
        e, m = (c >> 3) & 15, c & 7
        v = m / 8.0 * 2.0 ** -6 if e == 0 else (1 + m / 8.0) * 2.0 ** (e - 7)
        t[c] = -v if c & 0x80 else v
    return t


E4M3 = e4m3_table()


def fp8_scales(tid, rows, cols):
    """Mirror of gen_scales(): block (i, j) scale 2^(-12 + h % 4), row-major."""
    br, bc = -(-rows // 128), -(-cols // 128)
    with np.errstate(over="ignore"):
        h = splitmix64(np.uint64((tid << 40) + (1 << 39)) + np.arange(br * bc, dtype=np.uint64))
    return np.ldexp(np.float32(1), (h % np.uint64(4)).astype(np.int32) - 12).reshape(br, bc)


def weight(tid, rows, cols, dtype):
    f = values(tid, rows * cols, 0.05).reshape(rows, cols)
    if dtype == "f32":
        return torch.from_numpy(f)
    u = f.view(np.uint32)
    if dtype == "fp8":
        codes = ((u >> np.uint32(24)) & np.uint32(0x80)) | ((u >> np.uint32(13)) % np.uint32(0x78))
        s = fp8_scales(tid, rows, cols)
        f = E4M3[codes] * np.repeat(np.repeat(s, 128, 0), 128, 1)[:rows, :cols]
        u = f.astype(np.float32).view(np.uint32)
    h = (u >> np.uint32(16)).astype(np.uint16)
    return torch.from_numpy(h.view(np.int16)).view(torch.bfloat16)


def pick_expert(h, E, zipf):
    """Mirror of expert_bench.c's pick_expert(): same doubles, same order."""
    if zipf == 0:
        return h % E
    u = float(h >> 11) * (1.0 / 9007199254740992.0)
    total = 0.0
    for e in range(E):
        total += float(e + 1) ** -zipf
    acc = 0.0
    for e in range(E):
        acc += float(e + 1) ** -zipf
        if u < acc / total:
            return e
    return E - 1


def routes(E, k, T, zipf, rep):
    rid, r = 3 * E + 4, rep << 32
    ex = np.zeros((T, k), dtype=np.int64)
    w = np.zeros((T, k), dtype=np.float32)
    for t in range(T):
        for j in range(k):
            at = t * k + j
            a = 0
            while True:
                e = pick_expert(splitmix64_int((rid << 40) + r + at * 64 + a), E, zipf)
                if e not in ex[t, :j]:
                    break
                a += 1
            ex[t, j] = e
            w[t, j] = value_int(rid + 1, r + at, 0.4) + np.float32(0.3)
    return torch.from_numpy(ex), torch.from_numpy(w)


def moe(x, ex, w, experts, shared):
    """HF-style: loop over the experts that received tokens."""
    y = torch.zeros_like(x)
    for e in torch.unique(ex).tolist():
        tok, slot = torch.where(ex == e)
        g, u, d = experts[e]
        xe = x.index_select(0, tok)
        out = F.linear(F.silu(F.linear(xe, g)) * F.linear(xe, u), d)
        y.index_add_(0, tok, out * w[tok, slot].unsqueeze(1).to(out.dtype))
    if shared is not None:
        g, u, d = shared
        y += F.linear(F.silu(F.linear(x, g)) * F.linear(x, u), d)
    return y


def main():
    ap = argparse.ArgumentParser()
    for name in ("--H", "--I", "--E", "--shared", "--threads", "--max-tokens"):
        ap.add_argument(name, type=int, required=True)
    ap.add_argument("--dtype", choices=("f32", "bf16", "fp8"), default="f32")
    ap.add_argument("--zipf", type=float, default=0.0)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    d = a.dtype
    dt = torch.float32 if d == "f32" else torch.bfloat16
    experts = [(weight(3 * e, a.I, a.H, d), weight(3 * e + 1, a.I, a.H, d),
                weight(3 * e + 2, a.H, a.I, d)) for e in range(a.E)]
    Is = a.shared * a.I
    shared = None
    if Is:
        shared = (weight(3 * a.E, Is, a.H, d), weight(3 * a.E + 1, Is, a.H, d),
                  weight(3 * a.E + 2, a.H, Is, d))
    xall = torch.from_numpy(values(3 * a.E + 3, a.max_tokens * a.H, 0.05).reshape(-1, a.H))
    cache = {}
    print("ready 1", flush=True)
    with torch.no_grad():
        for line in sys.stdin:
            cmd = line.split()
            T, k = int(cmd[1]), int(cmd[2])
            rep = int(cmd[3]) if cmd[0] == "run" and len(cmd) > 3 else 0
            if (T, k, rep) not in cache:
                cache[(T, k, rep)] = routes(a.E, k, T, a.zipf, rep)
            ex, w = cache[(T, k, rep)]
            x = xall[:T].to(dt)
            if cmd[0] == "run":
                t0 = time.perf_counter()
                moe(x, ex, w, experts, shared)
                print("ms %.4f" % ((time.perf_counter() - t0) * 1e3), flush=True)
            elif cmd[0] == "check":
                ours = np.fromfile(cmd[3], dtype=np.float32).reshape(T, a.H)
                ref = moe(x, ex, w, experts, shared).float().numpy()
                err = np.abs(ours - ref).max(axis=1) / np.maximum(np.abs(ref).max(axis=1),
                                                                  1e-30)
                print("err %.3g" % err.max(), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
