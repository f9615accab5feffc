#!/usr/bin/python3
"""The PyTorch peer of bench/expert_bench: one MoE layer written the way
HuggingFace's DeepSeek / Mixtral MoE blocks run on a CPU -- a loop over the
experts that received tokens, index_select of their tokens, SwiGLU through
F.linear, index_add of the weighted outputs -- plus the shared experts on all
tokens.  Weights, inputs and routes come from the same counter-based generator
as expert_bench.c (splitmix64 of (tensor id << 40) + index), so both sides run
the same layer.

Driven over stdin/stdout by bench/peer.c: prints "ready" once the weights are
built, then answers "run T K" with "ms <time of one forward>" and
"check T K FILE" (our output, raw float32) with "err <worst token's
max|ours - peer| / max|peer|>", until EOF."""
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


def weight(tid, rows, cols, bf16):
    f = values(tid, rows * cols, 0.05).reshape(rows, cols)
    if not bf16:
        return torch.from_numpy(f)
    u = (f.view(np.uint32) >> np.uint32(16)).astype(np.uint16)
    return torch.from_numpy(u.view(np.int16)).view(torch.bfloat16)


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


def routes(E, k, T, zipf):
    rid = 3 * E + 4
    ex = np.zeros((T, k), dtype=np.int64)
    w = np.zeros((T, k), dtype=np.float32)
    for t in range(T):
        for j in range(k):
            at = t * k + j
            a = 0
            while True:
                e = pick_expert(splitmix64_int((rid << 40) + at * 64 + a), E, zipf)
                if e not in ex[t, :j]:
                    break
                a += 1
            ex[t, j] = e
            w[t, j] = value_int(rid + 1, at, 0.4) + np.float32(0.3)
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
    ap.add_argument("--dtype", choices=("f32", "bf16"), default="f32")
    ap.add_argument("--zipf", type=float, default=0.0)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    bf16 = a.dtype == "bf16"
    dt = torch.bfloat16 if bf16 else torch.float32
    experts = [(weight(3 * e, a.I, a.H, bf16), weight(3 * e + 1, a.I, a.H, bf16),
                weight(3 * e + 2, a.H, a.I, bf16)) for e in range(a.E)]
    Is = a.shared * a.I
    shared = None
    if Is:
        shared = (weight(3 * a.E, Is, a.H, bf16), weight(3 * a.E + 1, Is, a.H, bf16),
                  weight(3 * a.E + 2, a.H, Is, bf16))
    xall = torch.from_numpy(values(3 * a.E + 3, a.max_tokens * a.H, 0.05).reshape(-1, a.H))
    cache = {}
    print("ready 1", flush=True)
    with torch.no_grad():
        for line in sys.stdin:
            cmd = line.split()
            T, k = int(cmd[1]), int(cmd[2])
            if (T, k) not in cache:
                cache[(T, k)] = routes(a.E, k, T, a.zipf)
            ex, w = cache[(T, k)]
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
