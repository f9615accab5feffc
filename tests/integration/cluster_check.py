"""Checks for the expert-parallel tests (cluster_load.sh, cluster_faults.sh),
on what `moectl --json cluster show`, `moectl --json route` and swapload.py
wrote.  Expected numbers come from the routes and the numpy reference
outputs (tests/ref), never from the daemon's own counters.

usage:
  cluster_check.py pid SHOW.json RANK
      print the pid of RANK
  cluster_check.py held SHOW.json E [--exclusive]
      every layer's experts 0..E-1 are held by at least one rank (exactly one
      with --exclusive), none twice on one rank, computed parallel to experts
  cluster_check.py computed BEFORE.json AFTER.json [--split] LAYER:ROUTE.json:TIMES...
      between the two shows, the pairs computed per (layer, expert), summed
      over the ranks, equal the pairs the routes sent to it (TIMES infer
      calls of each route's input); only held experts count; with --split
      every copy of an expert held on several ranks computed some of them
  cluster_check.py replies LOADDIR (--expect Y.npy | --by-generation CONFIGS EXPECTDIR)
                   [--faults]
      every OK reply swapload.py saw equals the expected output (1e-5
      relative); none failed, or with --faults: some failed, and only with
      UNAVAILABLE (14) or a lost connection
  cluster_check.py skew CASE LAYER ROWS REPEAT X.npy Y.npy
      X = rows ROWS (comma list) of CASE's x_1000 repeated REPEAT times, and
      its reference output from y_LAYER_1000
  cluster_check.py skewpick ROUTE.json X.npy LO:HI REPEAT XOUT.npy
      XOUT = the two rows of X whose routes have the most experts in
      [LO, HI), repeated REPEAT times
  cluster_check.py close Y.npy WANT.npy
      Y equals WANT within 1e-5 relative (of WANT's largest magnitude)
  cluster_check.py balance SHOW.json LAYER OP BOUND
      balancedness of LAYER compared (lt, gt) with BOUND"""
import collections
import json
import os
import sys

import numpy as np

UNAVAILABLE = 14


def load(path):
    with open(path) as f:
        return json.load(f)


def counts(show):
    """{(layer, expert): {rank: computed}} and {(layer, expert): [ranks]}."""
    done, held = collections.defaultdict(dict), collections.defaultdict(list)
    for r in show["ranks"]:
        for layer, ids in r["experts"].items():
            comp = r["computed"].get(layer, [])
            if len(comp) != len(ids):
                sys.exit("rank %d layer %s: %d experts, %d computed counters"
                         % (r["rank"], layer, len(ids), len(comp)))
            if len(set(ids)) != len(ids):
                sys.exit("rank %d layer %s holds an expert twice: %s" % (r["rank"], layer, ids))
            for e, n in zip(ids, comp):
                done[(int(layer), e)][r["rank"]] = n
                held[(int(layer), e)].append(r["rank"])
    return done, held


def cmd_pid(show, rank):
    for r in load(show)["ranks"]:
        if r["rank"] == int(rank):
            print(r["pid"])
            return 0
    sys.exit("no rank %s" % rank)


def cmd_held(show, E, *opts):
    s = load(show)
    _, held = counts(s)
    layers = {int(layer) for r in s["ranks"] for layer in r["experts"]}
    if not layers:
        sys.exit("no rank holds any expert")
    for layer in sorted(layers):
        for e in range(int(E)):
            n = len(held.get((layer, e), []))
            if n == 0 or ("--exclusive" in opts and n != 1):
                sys.exit("layer %d expert %d held by ranks %s" % (layer, e, held.get((layer, e))))
    extra = [k for k in held if k[1] >= int(E)]
    if extra:
        sys.exit("experts beyond %s held: %s" % (E, extra))
    print("%d layers: every expert held%s" % (len(layers), " once" if "--exclusive" in opts else ""))
    return 0


def cmd_computed(before, after, *specs):
    split = "--split" in specs
    b, _ = counts(load(before))
    a, held = counts(load(after))
    want = collections.Counter()
    for spec in specs:
        if spec == "--split":
            continue
        layer, route, times = spec.split(":")
        r = load(route)
        if r["layer"] != int(layer):
            sys.exit("%s is a route of layer %s" % (route, r["layer"]))
        for tok in r["experts"]:
            for e in tok:
                want[(int(layer), e)] += int(times)
    bad, splits = [], []
    for key in set(want) | set(a):
        per_rank = {rk: n - b.get(key, {}).get(rk, 0) for rk, n in a.get(key, {}).items()}
        if any(d < 0 for d in per_rank.values()):
            bad.append("%s: a counter went down: %s -> %s" % (key, b.get(key), a.get(key)))
        got = sum(per_rank.values())
        if got != want[key]:
            bad.append("layer %d expert %d: computed %d (per rank %s), routed %d"
                       % (key[0], key[1], got, per_rank, want[key]))
        if key in want and key not in held:
            bad.append("layer %d expert %d routed but held by no rank" % key)
        if split and len(held.get(key, [])) > 1 and want[key]:
            splits.append((key, per_rank))
            if min(per_rank.values()) == 0:
                bad.append("layer %d expert %d has copies on ranks %s but computed %s"
                           % (key[0], key[1], held[key], per_rank))
    for key, per_rank in sorted(splits):
        print("layer %d expert %d split over its copies: %s" % (key[0], key[1], per_rank))
    if split and not splits:
        bad.append("no routed expert has more than one copy")
    if bad:
        sys.exit("\n".join(sorted(bad)))
    print("%d pairs over %d (layer, expert): each computed once, on ranks holding it"
          % (sum(want.values()), len(want)))
    return 0


def cmd_replies(loaddir, *opts):
    opts = list(opts)
    s = load(os.path.join(loaddir, "summary.json"))
    if "--expect" in opts:
        fixed = np.load(opts[opts.index("--expect") + 1])
        gens = None
    else:
        i = opts.index("--by-generation")
        with open(opts[i + 1]) as f:
            gens = dict(line.split() for line in f)
        expdir = opts[i + 2]
    print("load: %d ok, %d failed, %d distinct (generation, output) pairs"
          % (s["ok"], s["failed"], len(s["outputs"])))
    bad = 0
    for o in s["outputs"]:
        if gens is None:
            want = fixed
        else:
            cfg = gens.get(str(o["generation"]))
            if cfg is None:
                print("a reply names generation %d, never recorded" % o["generation"])
                bad += 1
                continue
            want = np.load(os.path.join(expdir, cfg + ".npy"))
        y = np.load(os.path.join(loaddir, o["file"]))
        err = np.abs(y - want).max() / np.abs(want).max()
        if err > 1e-5:
            bad += 1
            print("generation %d (router %s): rel err %.2e" % (o["generation"], o["router"], err))
    if bad:
        sys.exit("%d wrong outputs" % bad)
    if "--faults" in opts:
        if s["failed"] == 0:
            sys.exit("no client saw an error")
        odd = [e for e in s["errors"]
               if not e.startswith("status %d:" % UNAVAILABLE) and not e.startswith("connection")]
        if odd:
            sys.exit("errors other than UNAVAILABLE or a lost connection: %s" % odd)
        print("errors seen: %s" % sorted(set(e[:90] for e in s["errors"])))
    elif s["failed"]:
        sys.exit("failed requests: %s" % s["errors"])
    if s["ok"] == 0 and "--faults" not in opts:
        sys.exit("no request succeeded")
    return 0


def cmd_skew(case, layer, rows, repeat, xout, yout):
    idx = [int(r) for r in rows.split(",")] * int(repeat)
    x = np.load(os.path.join(case, "x_1000.npy"))[idx]
    y = np.load(os.path.join(case, "y_%s_1000.npy" % layer))[idx]
    np.save(xout, x)
    np.save(yout, y)
    return 0


def cmd_skewpick(route, xfile, lohi, repeat, xout):
    routes = load(route)["experts"]
    lo, hi = (int(v) for v in lohi.split(":"))
    best = sorted(range(len(routes)),
                  key=lambda i: (-sum(lo <= e < hi for e in routes[i]), i))[:2]
    print("rows %s route to %s" % (best, [routes[i] for i in best]))
    np.save(xout, np.load(xfile)[best * int(repeat)])
    return 0


def cmd_close(yfile, wantfile):
    y, want = np.load(yfile), np.load(wantfile)
    if y.shape != want.shape:
        sys.exit("shape %s, want %s" % (y.shape, want.shape))
    err = np.abs(y - want).max() / np.abs(want).max()
    if err > 1e-5:
        sys.exit("%s: rel err %.2e against %s" % (yfile, err, wantfile))
    return 0


def cmd_balance(show, layer, op, bound):
    x = load(show)["balancedness"][layer]
    good = x < float(bound) if op == "lt" else x > float(bound)
    print("layer %s balancedness %.4f (want %s %s)" % (layer, x, op, bound))
    return 0 if good else 1


def main():
    cmds = {"pid": cmd_pid, "held": cmd_held, "computed": cmd_computed, "replies": cmd_replies,
            "skew": cmd_skew, "skewpick": cmd_skewpick, "close": cmd_close, "balance": cmd_balance}
    if len(sys.argv) < 2 or sys.argv[1] not in cmds:
        sys.exit(__doc__)
    return cmds[sys.argv[1]](*sys.argv[2:])


if __name__ == "__main__":
    sys.exit(main())
