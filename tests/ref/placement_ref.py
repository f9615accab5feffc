#!/usr/bin/python3
"""Reference for daemon/placement.c: expert placement on ranks, written apart
from the C code after DeepSeek's EPLB (replicate_experts, balanced_packing),
with moed's two additions: a rank never holds two copies of one expert, and a
copy goes to a rank only if the copies still to place can be placed.  That
last test is a maximum flow here (the C code uses the Gale-Ryser cut
condition instead), so the two agree only if both are right.

    placement_ref.py DIR   writes DIR/placement_cases.txt, one block per case:

    case NAME KIND E N_RANKS REPLICAS
    computes C0 .. C(N-1)
    load L0 .. L(E-1)          ("load -": none given, every expert weighs 1)
    copies N0 .. N(E-1)        copies per expert
    rank R ID...               per rank, its experts in id order
    rank_load R X              per rank, load with each expert split over its copies
    balancedness X             mean / max over the computing ranks
    end

Exits 77 when numpy is missing.
"""
import os
import sys
from collections import deque

try:
    import numpy as np
except ImportError:
    print("SKIP: no numpy")
    sys.exit(77)


def replicate_experts(weight, n_comp, replicas):
    """EPLB's replicate_experts for one layer: each extra copy to the
    expert with the highest load per copy (first one on ties), here only
    among experts with fewer copies than computing ranks."""
    logcnt = np.ones(len(weight), dtype=np.int64)
    for _ in range(replicas):
        per_copy = weight / logcnt
        per_copy[logcnt >= n_comp] = -1.0
        logcnt[int(np.argmax(per_copy))] += 1
    return logcnt


def max_flow_fits(demand, allowed, room):
    """Can each expert i put demand[i] copies on distinct ranks of
    allowed[i], rank r taking at most room[r]?  Edmonds-Karp on
    source -> experts -> ranks -> sink."""
    n_e, n_r = len(demand), len(room)
    src, sink, size = 0, 1 + n_e + n_r, 2 + n_e + n_r
    cap = [[0] * size for _ in range(size)]
    for i, d in enumerate(demand):
        cap[src][1 + i] = d
        for r in allowed[i]:
            cap[1 + i][1 + n_e + r] = 1
    for r, k in enumerate(room):
        cap[1 + n_e + r][sink] = k
    flow, want = 0, sum(demand)
    while flow < want:
        prev = [-1] * size
        prev[src] = src
        q = deque([src])
        while q and prev[sink] < 0:
            u = q.popleft()
            for v in range(size):
                if cap[u][v] > 0 and prev[v] < 0:
                    prev[v] = u
                    q.append(v)
        if prev[sink] < 0:
            return False
        v = sink
        while v != src:
            u = prev[v]
            cap[u][v] -= 1
            cap[v][u] += 1
            v = u
        flow += 1
    return True


def balanced_packing(weight, logcnt, comp):
    """EPLB's balanced_packing over the copies: heaviest copy first (lowest
    expert id on ties), onto the least loaded computing rank (lowest on
    ties) with room left, room = ceil(copies / computing ranks)."""
    n_comp = len(comp)
    n_slots = int(logcnt.sum())
    room = [-(-n_slots // n_comp)] * n_comp
    load = [0.0] * n_comp
    held = [set() for _ in range(n_comp)]
    per_copy = weight / logcnt
    order = sorted(range(len(weight)), key=lambda e: (-per_copy[e], e))
    for pos, e in enumerate(order):
        later = order[pos + 1:]
        for j in range(int(logcnt[e])):
            left = int(logcnt[e]) - j - 1
            for r in sorted(range(n_comp), key=lambda r: (load[r], r)):
                if room[r] == 0 or e in held[r]:
                    continue
                room[r] -= 1
                held[r].add(e)
                others = [r2 for r2 in range(n_comp) if room[r2] > 0]
                mine = [r2 for r2 in others if e not in held[r2]]
                if max_flow_fits([left] + [int(logcnt[f]) for f in later],
                                 [mine] + [others] * len(later), room):
                    break
                room[r] += 1
                held[r].discard(e)
            else:
                raise AssertionError("no rank for a copy of expert %d" % e)
            load[r] += per_copy[e]
    return {comp[i]: held[i] for i in range(n_comp)}


def place(kind, n_experts, computes, load, replicas):
    comp = [r for r, c in enumerate(computes) if c]
    weight = np.ones(n_experts) if load is None else np.array(load, dtype=np.float64)
    held = {r: set() for r in range(len(computes))}
    if kind == "contiguous":
        n = len(comp)
        for i, r in enumerate(comp):
            held[r] = set(range(i * n_experts // n, (i + 1) * n_experts // n))
    else:
        held.update(balanced_packing(weight, replicate_experts(weight, len(comp), replicas), comp))
    copies = [sum(e in held[r] for r in held) for e in range(n_experts)]
    rank_load = []
    for r in range(len(computes)):
        x = 0.0
        for e in sorted(held[r]):
            x += weight[e] / copies[e]
        rank_load.append(float(x))
    computing = [rank_load[r] for r in comp]
    bal = 1.0 if max(computing) == 0 else sum(computing) / len(computing) / max(computing)
    return held, copies, rank_load, bal


def cases():
    rng = np.random.default_rng(16)
    zipf = [int(1000 / (i + 1)) for i in range(16)]
    yield "zipf16-4", "balanced", 16, [1] * 4, zipf, 0
    yield "zipf16-4-r4", "balanced", 16, [1] * 4, zipf, 4
    yield "zipf16-4-contig", "contiguous", 16, [1] * 4, zipf, 4
    yield "zipf16-front-idle", "balanced", 16, [0, 1, 1, 1], zipf, 3
    yield "hot-one", "balanced", 8, [1] * 3, [5000, 10, 10, 10, 10, 10, 10, 10], 2
    yield "equal-null", "balanced", 10, [1] * 3, None, 2
    yield "zeros", "balanced", 6, [1] * 2, [0] * 6, 3
    yield "every-rank", "balanced", 5, [1] * 3, [9, 7, 5, 3, 1], 10
    yield "fewer-experts", "balanced", 2, [1] * 5, [3, 1], 0
    yield "contig-uneven", "contiguous", 10, [1, 0, 1, 1], None, 0
    # the greedy without the placeability test strands copies here (found by
    # a random search over small cases, where it is rare)
    strands = [
        (11, [1, 1, 1, 3, 3, 1, 2, 1, 1, 2]), (11, [3, 2, 1, 1, 1, 1, 2, 1, 1, 3]),
        (12, [3, 3, 1, 2, 1, 3, 1, 1, 1]), (18, [1, 1, 1, 1, 3, 2, 2, 2, 3, 2, 2, 2]),
        (16, [2, 5, 4, 2, 2, 4, 5, 4, 2, 5, 2]), (22, [2, 1, 1, 3, 1, 1, 2, 2, 2, 3, 2, 2, 1, 3]),
        (14, [2, 1, 3, 1, 2, 3, 3, 1, 1, 1]), (10, [1, 2, 1, 4, 1, 5, 1, 1]),
        (12, [1, 1, 1, 2, 1, 2, 3, 2, 3]),
    ]
    for i, (replicas, load) in enumerate(strands):
        yield "strand%d" % i, "balanced", len(load), [1] * 3, load, replicas
    yield "strand-idle-front", "balanced", 10, [0, 1, 1, 1], [1, 1, 1, 3, 3, 1, 2, 1, 1, 2], 11
    for i in range(24):
        n = int(rng.integers(1, 6))
        computes = [1] * n if i % 3 else [0] + [1] * n
        e = int(rng.integers(1, 20))
        if i % 2:
            load = [int(x) for x in np.floor(rng.pareto(1.0, e) * 50)]
        else:
            load = [int(x) for x in rng.integers(0, 6, e)]
        replicas = int(rng.integers(0, e * (n - 1) + 1)) if n > 1 else 0
        yield "random%d" % i, "balanced", e, computes, load, replicas
    yield "v3-like", "balanced", 64, [1] * 4, [int(x) for x in rng.zipf(1.5, 64) % 5000], 8


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: placement_ref.py DIR")
    with open(os.path.join(sys.argv[1], "placement_cases.txt"), "w") as f:
        for name, kind, n_experts, computes, load, replicas in cases():
            held, copies, rank_load, bal = place(kind, n_experts, computes, load, replicas)
            f.write("case %s %s %d %d %d\n" % (name, kind, n_experts, len(computes), replicas))
            f.write("computes %s\n" % " ".join(map(str, computes)))
            f.write("load %s\n" % ("-" if load is None else " ".join(map(str, load))))
            f.write("copies %s\n" % " ".join(map(str, copies)))
            for r in range(len(computes)):
                f.write("rank %d%s\n" % (r, "".join(" %d" % e for e in sorted(held[r]))))
            for r in range(len(computes)):
                f.write("rank_load %d %s\n" % (r, repr(rank_load[r])))
            f.write("balancedness %s\nend\n" % repr(bal))


if __name__ == "__main__":
    main()
