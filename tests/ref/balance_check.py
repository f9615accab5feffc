"""Checks for the online balancing test.  Subcommands:

skewed CASE LAYER N T SEED OUTDIR
    write N inputs x_<i>.npy of T tokens that sigmoid-norm routes mostly to a
    few experts (hidden states pulled towards their router rows)
expect-bias CASE LAYER GAMMA UPDATE_EVERY ROUTES... > bias.json
    apply the balancing rule b_i += gamma * sign(mean - load_i) (every
    UPDATE_EVERY tokens, checked after each request) to the routes the daemon
    reported, in order, starting from the checkpoint's bias (float32, as
    specified in ROUTING.md); print the expected bias
maxvio E ROUTES...
    MaxVio of each route reply, one per line
checkpoint-bias CASE LAYER
    the checkpoint's e_score_correction_bias as a JSON list
    (MaxVio = (max load - mean load) / mean load)"""
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import moe_ref as ref  # noqa: E402

F32 = np.float32


def layer_of(case, L):
    hf = json.load(open(os.path.join(case, "config.json")))
    t = ref.read_safetensors(os.path.join(case, "model.safetensors"))
    return hf, ref.deepseek_layer(t, L, hf["n_routed_experts"])


def skewed(case, L, n, T, seed, out):
    hf, layer = layer_of(case, L)
    rng = np.random.default_rng(seed)
    g = layer["gate"]
    hot = g[[0, 1, 2]].sum(0)
    hot = hot / np.linalg.norm(hot)
    os.makedirs(out, exist_ok=True)
    for i in range(n):
        x = rng.standard_normal((T, g.shape[1])).astype(F32) * F32(0.3) + F32(4.0) * hot
        np.save(os.path.join(out, "x_%03d.npy" % i), x.astype(F32))


def loads(route_file, E):
    e = np.array(json.load(open(route_file))["experts"]).reshape(-1)
    return np.bincount(e, minlength=E)


def expect_bias(case, L, gamma, every, routes):
    hf, layer = layer_of(case, L)
    E = hf["n_routed_experts"]
    b = layer["bias"].astype(F32).copy()
    load = np.zeros(E, np.int64)
    counted = 0
    for r in routes:
        e = np.array(json.load(open(r))["experts"])
        load += np.bincount(e.reshape(-1), minlength=E)
        counted += e.shape[0]
        if counted >= every:
            mean = load.sum() / E
            b = (b + F32(gamma) * np.sign(mean - load).astype(F32)).astype(F32)
            load[:] = 0
            counted = 0
    print(json.dumps([float(v) for v in b]))


def maxvio(E, routes):
    for r in routes:
        lo = loads(r, E)
        print("%.4f" % ((lo.max() - lo.mean()) / lo.mean()))


def main():
    cmd = sys.argv[1]
    if cmd == "skewed":
        skewed(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6]),
               sys.argv[7])
    elif cmd == "expect-bias":
        expect_bias(sys.argv[2], int(sys.argv[3]), float(sys.argv[4]), int(sys.argv[5]), sys.argv[6:])
    elif cmd == "checkpoint-bias":
        print(json.dumps([float(v) for v in layer_of(sys.argv[2], int(sys.argv[3]))[1]["bias"]]))
    elif cmd == "maxvio":
        maxvio(int(sys.argv[2]), sys.argv[3:])


if __name__ == "__main__":
    main()
