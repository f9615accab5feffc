"""The numbers a shadow router should report, from the numpy reference
(moe_ref.py), for the shadow routing test.  Subcommands:

inputs CASE LAYER N T SEED OUTDIR
    write N inputs x_<i>.npy of T tokens that are clear of near-ties under both
    the checkpoint's own routing and softmax-topk's (so no float rounding
    decides an expert)
expect CASE LAYER X.npy...
    serve each batch with the checkpoint's routing (sigmoid, bias, groups) and
    shadow it with softmax scoring (the same bias, groups, normalisation and
    scale: what softmax-topk does with this checkpoint); print as JSON the mean
    overlap |A n B| / k, top-1 agreement (largest final weight, first on ties),
    both MaxVio over all the tokens, and the nearest-rank p50 / p99 of the
    relative drift ||y_shadow - y|| / ||y|| over every token"""
import json
import math
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import moe_ref as ref  # noqa: E402

F32 = np.float32


def load(case, L):
    hf = json.load(open(os.path.join(case, "config.json")))
    t = ref.read_safetensors(os.path.join(case, "model.safetensors"))
    layer = ref.deepseek_layer(t, L, hf["n_routed_experts"])
    cfg = dict(scoring=hf["scoring_func"], top_k=hf["num_experts_per_tok"],
               n_group=hf.get("n_group", 1), topk_group=hf.get("topk_group", 1),
               normalise=bool(hf.get("norm_topk_prob", True)),
               scale=float(hf.get("routed_scaling_factor", 1.0)))
    return layer, cfg, dict(cfg, scoring="softmax")


def inputs(case, L, n, T, seed, out):
    layer, serve, shadow = load(case, L)
    rng = np.random.default_rng(seed)
    os.makedirs(out, exist_ok=True)
    H = layer["gate"].shape[1]
    for i in range(n):
        x = rng.standard_normal((T, H)).astype(F32)
        for _ in range(500):
            bad = np.zeros(T, bool)
            for cfg in (serve, shadow):
                bad |= ref.boundary_gap(x, layer["gate"], layer["bias"], cfg) < 1e-4
            if not bad.any():
                break
            x[bad] = rng.standard_normal((bad.sum(), H)).astype(F32)
        else:
            raise RuntimeError("no well-separated inputs")
        np.save(os.path.join(out, "x_%03d.npy" % i), x)


def maxvio(load):
    mean = load.sum() / len(load)
    return float((load.max() - mean) / mean) if mean else 0.0


def nearest_rank(v, p):
    v = sorted(v)
    return v[max(math.ceil(p * len(v)), 1) - 1] if v else 0.0


def expect(case, L, files):
    layer, serve, shadow = load(case, L)
    E = len(layer["experts"])
    k = serve["top_k"]
    overlap, top1, drifts = [], [], []
    load_s, load_c = np.zeros(E, np.int64), np.zeros(E, np.int64)
    for f in files:
        x = np.load(f)
        ys, es, ws = ref.moe_forward(x, layer, serve)
        yc, ec, wc = ref.moe_forward(x, layer, shadow)
        for t in range(x.shape[0]):
            overlap.append(len(set(es[t]) & set(ec[t])) / k)
            top1.append(es[t][np.argmax(ws[t])] == ec[t][np.argmax(wc[t])])
            a, b = ys[t].astype(np.float64), yc[t].astype(np.float64)
            drifts.append(float(np.linalg.norm(b - a) / np.linalg.norm(a)))
        load_s += np.bincount(es.reshape(-1), minlength=E)
        load_c += np.bincount(ec.reshape(-1), minlength=E)
    print(json.dumps({"overlap": float(np.mean(overlap)), "top1_agreement": float(np.mean(top1)),
                      "max_vio": maxvio(load_c), "serving_max_vio": maxvio(load_s),
                      "drift_p50": nearest_rank(drifts, 0.5), "drift_p99": nearest_rank(drifts, 0.99),
                      "tokens": len(overlap)}))


def main():
    cmd = sys.argv[1]
    if cmd == "inputs":
        inputs(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]),
               int(sys.argv[6]), sys.argv[7])
    elif cmd == "expect":
        expect(sys.argv[2], int(sys.argv[3]), sys.argv[4:])
    else:
        sys.exit("unknown subcommand " + cmd)


if __name__ == "__main__":
    main()
