"""Write small HuggingFace-layout checkpoints and the outputs moed must produce
for them, computed by moe_ref.py (the independent reference).

usage: make_cases.py OUTDIR

Layout: OUTDIR/good/<case>/ holds config.json, model.safetensors (or shards and
model.safetensors.index.json), inputs x_<T>.npy, and per MoE layer L and input
size T: y_<L>_<T>.npy, experts_<L>_<T>.npy (int32), weights_<L>_<T>.npy.
OUTDIR/good/<case>/layers lists the MoE layers.  OUTDIR/bad/<case>/ are broken
checkpoints, each with expect.txt: a substring moed's refusal must contain.

Input tokens are resampled until every routing decision (expert and group
boundaries) has a margin of at least 1e-4 in float64, so the comparison never
hinges on rounding; the `ties` case makes exact ties on purpose."""
import json
import os
import shutil
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import moe_ref as ref  # noqa: E402

F32 = np.float32


def naming(family):
    if family == "mixtral":
        return ("block_sparse_moe", ("w1", "w3", "w2"))
    return ("mlp", ("gate_proj", "up_proj", "down_proj"))


def make_layer(rng, H, I, E, shared, with_bias, dtype, ties=False):
    gate = (rng.standard_normal((E, H)) / np.sqrt(H)).astype(F32)
    if ties:
        gate[5] = gate[2]          # experts 2 and 5 always tie exactly
        gate[9] = gate[2]
    experts = []
    for _ in range(E):
        g = (rng.standard_normal((I, H)) / np.sqrt(H)).astype(F32)
        u = (rng.standard_normal((I, H)) / np.sqrt(H)).astype(F32)
        d = (rng.standard_normal((H, I)) / np.sqrt(I)).astype(F32)
        experts.append((g, u, d))
    sh = None
    if shared:
        Is = shared * I
        sh = ((rng.standard_normal((Is, H)) / np.sqrt(H)).astype(F32),
              (rng.standard_normal((Is, H)) / np.sqrt(H)).astype(F32),
              (rng.standard_normal((H, Is)) / np.sqrt(Is)).astype(F32))
    bias = (rng.uniform(-0.05, 0.05, E)).astype(F32) if with_bias else None
    return {"gate": gate, "bias": bias, "experts": experts, "shared": sh, "dtype": dtype}


def layer_tensors(L, layer, family):
    """{name: (array, dtype)} as stored; router weights keep the layer dtype too."""
    mlp, (gn, un, dn) = naming(family)
    dt = layer["dtype"]
    t = {"model.layers.%d.%s.gate.weight" % (L, mlp): (layer["gate"], dt)}
    if layer["bias"] is not None:
        t["model.layers.%d.mlp.gate.e_score_correction_bias" % L] = (layer["bias"], "F32")
    for e, (g, u, d) in enumerate(layer["experts"]):
        p = "model.layers.%d.%s.experts.%d." % (L, mlp, e)
        t[p + gn + ".weight"] = (g, dt)
        t[p + un + ".weight"] = (u, dt)
        t[p + dn + ".weight"] = (d, dt)
    if layer["shared"] is not None:
        p = "model.layers.%d.mlp.shared_experts." % L
        for n, a in zip(("gate_proj", "up_proj", "down_proj"), layer["shared"]):
            t[p + n + ".weight"] = (a, dt)
    return t


def as_seen(layer):
    """The layer as moed holds it after loading (dtype rounding applied)."""
    dt = layer["dtype"]
    conv = lambda a: ref.as_stored(a, dt)  # noqa: E731
    return {"gate": conv(layer["gate"]), "bias": layer["bias"],
            "experts": [tuple(conv(a) for a in e) for e in layer["experts"]],
            "shared": tuple(conv(a) for a in layer["shared"]) if layer["shared"] else None}


def clear_inputs(rng, T, H, layers, cfg, margin=1e-4):
    x = rng.standard_normal((T, H)).astype(F32)
    for _ in range(200):
        bad = np.zeros(T, bool)
        for lw in layers.values():
            bad |= ref.boundary_gap(x, lw["gate"], lw["bias"], cfg) < margin
        if not bad.any():
            return x
        x[bad] = rng.standard_normal((bad.sum(), H)).astype(F32)
    raise RuntimeError("could not find well-separated inputs")


def write_case(root, name, hf, cfg, family, H, I, E, layers_idx, shared, with_bias, dtype,
               sizes, shards=1, ties=False, seed=0):
    rng = np.random.default_rng(seed)
    d = os.path.join(root, "good", name)
    os.makedirs(d)
    layers = {L: make_layer(rng, H, I, E, shared, with_bias, dtype, ties) for L in layers_idx}
    with open(os.path.join(d, "config.json"), "w") as f:
        json.dump(hf, f, indent=1)
    tensors = {}
    for L, lw in layers.items():
        tensors.update(layer_tensors(L, lw, family))
    names = list(tensors)
    if shards == 1:
        ref.write_safetensors(os.path.join(d, "model.safetensors"), tensors)
    else:
        wmap = {}
        for s in range(shards):
            fn = "model-%05d-of-%05d.safetensors" % (s + 1, shards)
            part = {n: tensors[n] for n in names[s::shards]}
            ref.write_safetensors(os.path.join(d, fn), part)
            wmap.update({n: fn for n in part})
        json.dump({"metadata": {}, "weight_map": wmap},
                  open(os.path.join(d, "model.safetensors.index.json"), "w"))
    seen = {L: as_seen(lw) for L, lw in layers.items()}
    with open(os.path.join(d, "layers"), "w") as f:
        f.write(" ".join(str(L) for L in layers_idx) + "\n")
    for T in sizes:
        if ties:
            x = rng.standard_normal((T, H)).astype(F32)
        else:
            x = clear_inputs(rng, T, H, seen, cfg)
        np.save(os.path.join(d, "x_%d.npy" % T), x)
        for L, lw in seen.items():
            y, idx, w = ref.moe_forward(x, lw, cfg)
            np.save(os.path.join(d, "y_%d_%d.npy" % (L, T)), y)
            np.save(os.path.join(d, "experts_%d_%d.npy" % (L, T)), idx)
            np.save(os.path.join(d, "weights_%d_%d.npy" % (L, T)), w)
    return d


def deepseek_config(mtype, H, I, E, k, layers, first_dense, groups, keep, shared, scale, norm,
                    scoring, method):
    return {"model_type": mtype, "architectures": ["DeepseekV3ForCausalLM"],
            "num_hidden_layers": layers, "hidden_size": H, "moe_intermediate_size": I,
            "intermediate_size": 4 * I, "n_routed_experts": E, "num_experts_per_tok": k,
            "n_group": groups, "topk_group": keep, "n_shared_experts": shared,
            "routed_scaling_factor": scale, "norm_topk_prob": norm, "scoring_func": scoring,
            "topk_method": method, "first_k_dense_replace": first_dense, "moe_layer_freq": 1}


def good_cases(root):
    H, I, E = 64, 32, 16
    # DeepSeek-V3: sigmoid, bias, 4 groups keep 2, shared expert, scale 2.5; layer 0 dense
    hf = deepseek_config("deepseek_v3", H, I, E, 4, 3, 1, 4, 2, 1, 2.5, True, "sigmoid", "noaux_tc")
    cfg = dict(scoring="sigmoid", top_k=4, n_group=4, topk_group=2, normalise=True, scale=2.5)
    write_case(root, "v3", hf, cfg, "deepseek", H, I, E, [1, 2], 1, True, "F32", [1, 7, 1000],
               seed=1)
    for dt, seed in (("BF16", 2), ("F16", 3)):
        write_case(root, "v3_" + dt.lower(), hf, cfg, "deepseek", H, I, E, [1, 2], 1, True, dt,
                   [1, 33], seed=seed)
    write_case(root, "v3_sharded", hf, cfg, "deepseek", H, I, E, [1, 2], 1, True, "F32", [5],
               shards=3, seed=4)
    # DeepSeek-V2: softmax, no bias, group-limited (group score = max), scale 16, no norm
    hf = deepseek_config("deepseek_v2", H, I, E, 4, 2, 1, 4, 2, 2, 16.0, False, "softmax",
                         "group_limited_greedy")
    cfg = dict(scoring="softmax", top_k=4, n_group=4, topk_group=2, normalise=False, scale=16.0)
    write_case(root, "v2_groups", hf, cfg, "deepseek", H, I, E, [1], 2, False, "F32", [1, 40],
               seed=5)
    # Moonlight: V3 layout, one group
    hf = deepseek_config("deepseek_v3", H, I, E, 3, 2, 0, 1, 1, 1, 2.446, True, "sigmoid",
                         "noaux_tc")
    cfg = dict(scoring="sigmoid", top_k=3, n_group=1, topk_group=1, normalise=True, scale=2.446)
    write_case(root, "moonlight_1group", hf, cfg, "deepseek", H, I, E, [0, 1], 1, True, "F32",
               [1, 40], seed=6)
    # Mixtral: softmax over 8, top-2, renormalised, w1/w3/w2 naming, all layers MoE
    hf = {"model_type": "mixtral", "num_hidden_layers": 2, "hidden_size": H,
          "intermediate_size": 48, "num_local_experts": 8, "num_experts_per_tok": 2}
    cfg = dict(scoring="softmax", top_k=2, normalise=True, scale=1.0)
    write_case(root, "mixtral", hf, cfg, "mixtral", H, 48, 8, [0, 1], 0, False, "F32", [1, 40],
               seed=7)
    # OLMoE naming: softmax, no renormalisation
    hf = {"model_type": "olmoe", "num_hidden_layers": 1, "hidden_size": H,
          "intermediate_size": 32, "num_experts": 8, "num_experts_per_tok": 2,
          "norm_topk_prob": False}
    cfg = dict(scoring="softmax", top_k=2, normalise=False, scale=1.0)
    write_case(root, "olmoe", hf, cfg, "olmoe", H, 32, 8, [0], 0, False, "BF16", [1, 12], seed=8)
    # exact ties: experts 2, 5, 9 have identical router rows; softmax greedy; lower index wins
    hf = deepseek_config("deepseek_v2", H, I, E, 2, 1, 0, 1, 1, 0, 1.0, False, "softmax", "greedy")
    cfg = dict(scoring="softmax", top_k=2, n_group=1, topk_group=1, normalise=False, scale=1.0)
    write_case(root, "ties", hf, cfg, "deepseek", H, I, E, [0], 0, False, "F32", [64], ties=True,
               seed=9)


def bad_cases(root, good):
    src = os.path.join(good, "v3")
    cfg = json.load(open(os.path.join(src, "config.json")))

    def clone(name, expect):
        d = os.path.join(root, "bad", name)
        shutil.copytree(src, d)
        for f in os.listdir(d):
            if f.endswith(".npy") or f == "layers":
                os.remove(os.path.join(d, f))
        with open(os.path.join(d, "expect.txt"), "w") as f:
            f.write(expect)
        return d

    d = clone("no_config", "config.json")
    os.remove(os.path.join(d, "config.json"))
    d = clone("bad_json", "config.json: not a JSON object")
    open(os.path.join(d, "config.json"), "w").write('{"hidden_size": 64,,}')
    d = clone("missing_field", "'hidden_size' missing")
    c = dict(cfg)
    del c["hidden_size"]
    json.dump(c, open(os.path.join(d, "config.json"), "w"))
    d = clone("bad_field", "'n_routed_experts' 16 is not divisible by 'n_group' 3")
    json.dump(dict(cfg, n_group=3), open(os.path.join(d, "config.json"), "w"))

    def rewrite(name, expect, change):
        d = clone(name, expect)
        rng = np.random.default_rng(11)
        t = {}
        for L in (1, 2):
            t.update(layer_tensors(L, make_layer(rng, 64, 32, 16, 1, True, "F32"), "deepseek"))
        change(t)
        ref.write_safetensors(os.path.join(d, "model.safetensors"), t)
        return d

    rewrite("missing_tensor", "missing tensor 'model.layers.2.mlp.experts.3.down_proj.weight'",
            lambda t: t.pop("model.layers.2.mlp.experts.3.down_proj.weight"))
    rewrite("wrong_shape", "tensor 'model.layers.1.mlp.gate.weight' has shape [16, 65], expected [16, 64]",
            lambda t: t.update({"model.layers.1.mlp.gate.weight":
                                (np.zeros((16, 65), F32), "F32")}))
    rewrite("bad_dtype", "tensor 'model.layers.1.mlp.experts.0.up_proj.weight' has dtype I64",
            lambda t: t.update({"model.layers.1.mlp.experts.0.up_proj.weight":
                                (np.zeros((32, 64), np.int64), "I64")}))
    d = clone("truncated", "truncated file")
    p = os.path.join(d, "model.safetensors")
    data = open(p, "rb").read()
    open(p, "wb").write(data[:len(data) - 1000])
    d = clone("header_lies", "shape needs")
    data = bytearray(open(p.replace("truncated", "header_lies"), "rb").read())
    n = int.from_bytes(data[:8], "little")
    h = json.loads(data[8:8 + n])
    name = "model.layers.1.mlp.experts.0.gate_proj.weight"
    h[name]["shape"] = [32, 63]
    hb = json.dumps(h).encode()
    hb += b" " * (n - len(hb)) if len(hb) <= n else b""
    open(os.path.join(d, "model.safetensors"), "wb").write(len(hb).to_bytes(8, "little") + hb +
                                                          bytes(data[8 + n:]))
    d = clone("bad_index", "model-00009-of-00009.safetensors")
    os.remove(os.path.join(d, "model.safetensors"))
    json.dump({"weight_map": {"model.layers.1.mlp.gate.weight": "model-00009-of-00009.safetensors"}},
              open(os.path.join(d, "model.safetensors.index.json"), "w"))


def main():
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    good_cases(out)
    bad_cases(out, os.path.join(out, "good"))


if __name__ == "__main__":
    main()
