"""Checkpoint cases for the model loader: every case of make_cases.py plus
loader-level cases, each with what moed must make of it.

usage: make_checkpoint.py OUTDIR        (/usr/bin/python3: needs numpy)

Layout (one directory per case; make_cases.py writes the same files for its
cases, this script adds its own cases and expected.json to every good one):

OUTDIR/good/<case>/
    config.json                 HF config
    model.safetensors           or model-0000S-of-0000N.safetensors shards +
                                model.safetensors.index.json ("weight_map")
    layers                      the MoE layer indices, space separated
    x_<T>.npy                   float32 [T, H] inputs, one file per T
    y_<L>_<T>.npy               float32 [T, H] expected output of MoE layer L
    experts_<L>_<T>.npy         int32 [T, k] expected routes of layer L
    weights_<L>_<T>.npy         float32 [T, k] expected route weights
    expected.json               what the loader must produce:
        "model":   the struct moed_model fields, config defaults applied
                   (scoring "sigmoid"/"softmax", default_router, ...)
        "layers":  MoE layer indices; "dense": layer indices that are not MoE
        "has_bias", "has_shared": per case
        "samples": [[field, layer, expert, flat_index, value], ...] with field
                   one of gate bias expert_gate expert_up expert_down
                   shared_gate shared_up shared_down (expert -1 when not an
                   expert tensor); value is the fp32 the daemon must hold,
                   decoded here with numpy, independently of moed's C code.
OUTDIR/bad/<case>/              a broken checkpoint; expect.txt holds a substring
                                moed's refusal must contain
OUTDIR/synthetic.json           synthetic:S0 shape and values recomputed from
                                the PRNG documented in daemon/synthetic.c

Expected outputs are computed by moe_ref.py from the weights as stored (BF16 is
rounded to nearest even from float32, F16 by numpy's float16 cast, and both
are converted back to float32 before the reference runs)."""
import glob
import json
import os
import shutil
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import make_cases as mc  # noqa: E402
import moe_ref as ref  # noqa: E402

F32 = np.float32
H, I, E = 64, 32, 16


# ---- what the loader must report -------------------------------------------------

def family(mtype):
    if mtype == "mixtral":
        return "mixtral"
    if mtype in ("qwen2_moe", "qwen3_moe"):
        return "qwen"
    if mtype == "olmoe":
        return "olmoe"
    return "deepseek"


# HF's config-class defaults per model_type, written again from hfconfig.h's
# comment: (scoring, topk_method, norm, scale, n_group, topk_group, shared, first_dense)
DEFAULTS = {"deepseek_v2": ("softmax", "greedy", False, 1.0, 1, 1, 0, 0),
            "deepseek_v3": ("sigmoid", "noaux_tc", True, 2.5, 8, 4, 1, 3),
            "kimi_k2": ("sigmoid", "noaux_tc", True, 2.5, 8, 4, 1, 3),
            "glm4_moe": ("sigmoid", "noaux_tc", True, 1.0, 1, 1, 1, 1)}


def expected_model(hf):
    """The documented config rules (hfconfig.h), written again here."""
    mt, fam = hf["model_type"], family(hf["model_type"])
    m = {"model_type": mt, "num_hidden_layers": hf["num_hidden_layers"],
         "hidden_size": hf["hidden_size"], "top_k": hf["num_experts_per_tok"],
         "n_group": 1, "topk_group": 1, "n_shared_experts": 0, "scoring": "softmax",
         "topk_method": "greedy", "routed_scaling_factor": 1.0}
    if fam == "deepseek":
        sc, tm, norm, scale, g, tg, sh, _ = DEFAULTS[mt]
        m.update(intermediate_size=hf["moe_intermediate_size"], n_experts=hf["n_routed_experts"],
                 n_group=hf.get("n_group", g), topk_group=hf.get("topk_group", tg),
                 n_shared_experts=hf.get("n_shared_experts", sh),
                 scoring=hf.get("scoring_func", sc),
                 topk_method=hf.get("topk_method", tm),
                 routed_scaling_factor=hf.get("routed_scaling_factor", scale),
                 norm_topk_prob=hf.get("norm_topk_prob", norm))
        if mt == "deepseek_v2" and m["topk_method"] == "greedy":
            m["n_group"] = m["topk_group"] = 1
    elif fam == "mixtral":
        m.update(intermediate_size=hf["intermediate_size"], n_experts=hf["num_local_experts"],
                 norm_topk_prob=True)
    else:
        key = "moe_intermediate_size" if fam == "qwen" else "intermediate_size"
        m.update(intermediate_size=hf[key], n_experts=hf["num_experts"],
                 norm_topk_prob=hf.get("norm_topk_prob", False))
    m["shared_intermediate_size"] = m["n_shared_experts"] * m["intermediate_size"]
    if mt == "qwen2_moe":       # one gated shared expert of its own width
        m["n_shared_experts"] = 1
        m["shared_intermediate_size"] = hf.get("shared_expert_intermediate_size", 5632)
    m["default_router"] = "sigmoid-norm" if m["scoring"] == "sigmoid" else "softmax-topk"
    m["dtype"] = "F32"
    return m


def layer_fields(fam, L, n_experts):
    """{tensor name: (field, expert)} for MoE layer L."""
    mlp, names = mc.naming("mixtral" if fam == "mixtral" else "deepseek")
    p = "model.layers.%d.%s." % (L, mlp)
    f = {p + "gate.weight": ("gate", -1),
         "model.layers.%d.mlp.gate.e_score_correction_bias" % L: ("bias", -1)}
    for e in range(n_experts):
        for field, n in zip(("expert_gate", "expert_up", "expert_down"), names):
            f[p + "experts.%d.%s.weight" % (e, n)] = (field, e)
    for field, n in zip(("shared_gate", "shared_up", "shared_down"),
                        ("gate_proj", "up_proj", "down_proj")):
        f["model.layers.%d.mlp.shared_experts.%s.weight" % (L, n)] = (field, -1)
        f["model.layers.%d.mlp.shared_expert.%s.weight" % (L, n)] = (field, -1)
    return f


def write_expected(d, seed):
    hf = json.load(open(os.path.join(d, "config.json")))
    m = expected_model(hf)
    layers = [int(v) for v in open(os.path.join(d, "layers")).read().split()]
    tensors = {}
    for p in sorted(glob.glob(os.path.join(d, "*.safetensors"))):
        tensors.update(ref.read_safetensors(p, fp8_codes=True))
    block = hf.get("quantization_config", {}).get("weight_block_size", [128, 128])
    for n in [n for n in tensors if tensors[n].dtype == np.uint8]:
        tensors[n] = ref.fp8_dequant(tensors[n], tensors[n + "_scale_inv"], block)
    rng = np.random.default_rng(seed)
    samples, bias, shared = [], False, False
    for L in layers:
        for name, (field, e) in layer_fields(family(m["model_type"]), L, m["n_experts"]).items():
            if name not in tensors:
                continue
            bias |= field == "bias"
            shared |= field.startswith("shared")
            a = tensors[name].reshape(-1)
            for i in sorted({0, a.size - 1, int(rng.integers(a.size))}):
                samples.append([field, L, e, i, float(a[i])])
    exp = {"model": m, "layers": layers,
           "dense": [L for L in range(m["num_hidden_layers"]) if L not in layers],
           "has_bias": bias, "has_shared": shared, "samples": samples}
    dump_expected(os.path.join(d, "expected.json"), exp)


def dump_expected(path, exp):
    """Readable JSON with one sample per line."""
    head = json.dumps({k: v for k, v in exp.items() if k != "samples"}, indent=1)
    rows = ",\n".join("  " + json.dumps(s) for s in exp["samples"])
    with open(path, "w") as f:
        f.write(head[:-2] + ',\n "samples": [\n' + rows + "\n ]\n}\n")


# ---- safetensors editing ---------------------------------------------------------

def read_f32(d):
    """All tensors of a single-file F32 case, as {name: (array, "F32")}."""
    t = ref.read_safetensors(os.path.join(d, "model.safetensors"))
    return {n: (a, "F32") for n, a in t.items()}


def write_raw(path, header, data):
    h = json.dumps(header).encode()
    with open(path, "wb") as f:
        f.write(len(h).to_bytes(8, "little") + h + data)


def read_raw(path):
    data = open(path, "rb").read()
    n = int.from_bytes(data[:8], "little")
    return json.loads(data[8:8 + n]), data[8 + n:]


def append_tensors(path, extra):
    """Add {name: (array, dtype)} to an existing safetensors file."""
    header, data = read_raw(path)
    data = bytearray(data)
    for name, (a, dtype) in extra.items():
        b = ref.tensor_bytes(a, dtype)
        header[name] = {"dtype": dtype, "shape": list(a.shape),
                        "data_offsets": [len(data), len(data) + len(b)]}
        data += b
    write_raw(path, header, bytes(data))


# ---- good cases beyond make_cases.py ---------------------------------------------

def extra_good(root):
    # Qwen3-MoE naming, renormalised softmax
    hf = {"model_type": "qwen3_moe", "num_hidden_layers": 2, "hidden_size": H,
          "moe_intermediate_size": I, "num_experts": 8, "num_experts_per_tok": 2,
          "norm_topk_prob": True, "decoder_sparse_step": 1}
    cfg = dict(scoring="softmax", top_k=2, normalise=True, scale=1.0)
    mc.write_case(root, "qwen3", hf, cfg, "qwen", H, I, 8, [0, 1], 0, False, "F32", [1, 9],
                  seed=21)
    # V2-Lite form: groups in the config but topk_method greedy, which ignores them
    hf = mc.deepseek_config("deepseek_v2", H, I, E, 6, 2, 1, 8, 3, 2, 1.0, False, "softmax",
                            "greedy")
    cfg = dict(scoring="softmax", top_k=6, n_group=1, topk_group=1, normalise=False, scale=1.0)
    mc.write_case(root, "v2_lite_greedy", hf, cfg, "deepseek", H, I, E, [1], 2, False, "F32",
                  [1, 17], seed=22)
    # first_k_dense_replace = 2 with the dense layers' and other modules' tensors present,
    # BF16 weights, and an I64 tensor moed never reads
    hf = mc.deepseek_config("deepseek_v3", H, I, E, 4, 4, 2, 4, 2, 1, 2.5, True, "sigmoid",
                            "noaux_tc")
    cfg = dict(scoring="sigmoid", top_k=4, n_group=4, topk_group=2, normalise=True, scale=2.5)
    d = mc.write_case(root, "dense_first2", hf, cfg, "deepseek", H, I, E, [2, 3], 1, True,
                      "BF16", [1, 11], seed=23)
    rng = np.random.default_rng(24)
    extra = {"model.embed_tokens.weight": (rng.standard_normal((50, H)).astype(F32), "BF16"),
             "model.norm.weight": (np.ones(H, F32), "BF16"),
             "model.layers.2.self_attn.rotary_emb.position_ids": (np.arange(8), "I64")}
    for L in (0, 1):
        p = "model.layers.%d.mlp." % L
        extra[p + "gate_proj.weight"] = (rng.standard_normal((4 * I, H)).astype(F32), "BF16")
        extra[p + "up_proj.weight"] = (rng.standard_normal((4 * I, H)).astype(F32), "BF16")
        extra[p + "down_proj.weight"] = (rng.standard_normal((H, 4 * I)).astype(F32), "F64")
        extra["model.layers.%d.self_attn.q_proj.weight" % L] = (np.eye(H, dtype=F32), "F32")
    append_tensors(os.path.join(d, "model.safetensors"), extra)
    family_cases(root)
    fp8_case(root, "v3_fp8", 200, 144, 8, [128, 128], 2, [1, 6, 50], seed=41)
    fp8_case(root, "v3_fp8_block", 72, 40, 8, [32, 48], 1, [1, 9], seed=42)


def fp8_case(root, name, H, I, E, block, shards, sizes, seed):
    """DeepSeek-V3's release format: experts and shared experts F8_E4M3 with
    fp32 <name>_scale_inv block scales, router BF16, bias F32.  H and I are not
    multiples of the block (partial edge blocks); with shards > 1 every scale
    lives in another shard than its weight.  The reference runs on the weights
    dequantised here in numpy."""
    rng = np.random.default_rng(seed)
    d = os.path.join(root, "good", name)
    os.makedirs(d)
    hf = mc.deepseek_config("deepseek_v3", H, I, E, 4, 3, 1, 4, 2, 1, 2.5, True, "sigmoid",
                            "noaux_tc")
    hf["quantization_config"] = {"activation_scheme": "dynamic", "fmt": "e4m3",
                                 "quant_method": "fp8", "weight_block_size": block}
    if block == [128, 128]:
        del hf["quantization_config"]["weight_block_size"]     # the default
    json.dump(hf, open(os.path.join(d, "config.json"), "w"), indent=1)
    cfg = dict(scoring="sigmoid", top_k=4, n_group=4, topk_group=2, normalise=True, scale=2.5)
    weights, scales, seen = {}, {}, {}
    for L in (1, 2):
        lw = mc.make_layer(rng, H, I, E, 1, True, "F32")
        p = "model.layers.%d.mlp." % L
        weights[p + "gate.weight"] = (lw["gate"], "BF16")
        weights[p + "gate.e_score_correction_bias"] = (lw["bias"], "F32")

        def fp8(tname, w):
            q, s = ref.fp8_quantise(w, rng, block)
            weights[tname] = (q, "F8_E4M3")
            scales[tname + "_scale_inv"] = (s, "F32")
            return ref.fp8_dequant(q, s, block)
        ex = [tuple(fp8(p + "experts.%d.%s.weight" % (e, n), a)
                    for n, a in zip(("gate_proj", "up_proj", "down_proj"), mats))
              for e, mats in enumerate(lw["experts"])]
        sh = tuple(fp8(p + "shared_experts.%s.weight" % n, a)
                   for n, a in zip(("gate_proj", "up_proj", "down_proj"), lw["shared"]))
        seen[L] = {"gate": ref.as_stored(lw["gate"], "BF16"), "bias": lw["bias"],
                   "experts": ex, "shared": sh}
    if shards == 1:
        ref.write_safetensors(os.path.join(d, "model.safetensors"), dict(weights, **scales))
    else:
        files = ["model-%05d-of-%05d.safetensors" % (s + 1, shards) for s in range(shards)]
        ref.write_safetensors(os.path.join(d, files[0]), weights)
        ref.write_safetensors(os.path.join(d, files[1]), scales)
        wmap = dict({n: files[0] for n in weights}, **{n: files[1] for n in scales})
        json.dump({"metadata": {}, "weight_map": wmap},
                  open(os.path.join(d, "model.safetensors.index.json"), "w"))
    with open(os.path.join(d, "layers"), "w") as f:
        f.write("1 2\n")
    for T in sizes:
        x = mc.clear_inputs(rng, T, H, seen, cfg)
        np.save(os.path.join(d, "x_%d.npy" % T), x)
        for L, lw in seen.items():
            y, idx, w = ref.moe_forward(x, lw, cfg)
            np.save(os.path.join(d, "y_%d_%d.npy" % (L, T)), y)
            np.save(os.path.join(d, "experts_%d_%d.npy" % (L, T)), idx)
            np.save(os.path.join(d, "weights_%d_%d.npy" % (L, T)), w)
    # what moed must hold as fp8: one byte per weight, the scales, the fp32 router
    blocks = lambda r, c: -(-r // block[0]) * -(-c // block[1])  # noqa: E731
    per = 2 * (I * H + 4 * blocks(I, H)) + H * I + 4 * blocks(H, I)
    fp8_bytes = 2 * ((E + 1) * per + E * H * 4 + E * 4)
    with open(os.path.join(d, "fp8_bytes"), "w") as f:
        f.write("%d\n" % fp8_bytes)


def qwen2_case(root):
    """Qwen2-MoE: softmax top-k without renormalisation, one shared expert of
    shared_expert_intermediate_size at mlp.shared_expert.*, scaled per token
    by sigmoid(mlp.shared_expert_gate.weight . x); decoder_sparse_step 2 and
    mlp_only_layers [3] leave layers 1 and 5 of 6 MoE."""
    rng = np.random.default_rng(51)
    Is, En = 48, 8
    d = os.path.join(root, "good", "qwen2")
    os.makedirs(d)
    hf = {"model_type": "qwen2_moe", "num_hidden_layers": 6, "hidden_size": H,
          "intermediate_size": 128, "moe_intermediate_size": I, "num_experts": En,
          "num_experts_per_tok": 2, "shared_expert_intermediate_size": Is,
          "decoder_sparse_step": 2, "mlp_only_layers": [3]}
    json.dump(hf, open(os.path.join(d, "config.json"), "w"), indent=1)
    cfg = dict(scoring="softmax", top_k=2, normalise=False, scale=1.0)
    tensors, seen = {}, {}
    for L in (1, 5):
        lw = mc.make_layer(rng, H, I, En, 0, False, "F32")
        p = "model.layers.%d.mlp." % L
        tensors[p + "gate.weight"] = (lw["gate"], "F32")
        for e, mats in enumerate(lw["experts"]):
            for n, a in zip(("gate_proj", "up_proj", "down_proj"), mats):
                tensors[p + "experts.%d.%s.weight" % (e, n)] = (a, "F32")
        sh = ((rng.standard_normal((Is, H)) / np.sqrt(H)).astype(F32),
              (rng.standard_normal((Is, H)) / np.sqrt(H)).astype(F32),
              (rng.standard_normal((H, Is)) / np.sqrt(Is)).astype(F32))
        for n, a in zip(("gate_proj", "up_proj", "down_proj"), sh):
            tensors[p + "shared_expert.%s.weight" % n] = (a, "F32")
        sg = (rng.standard_normal((1, H)) / np.sqrt(H)).astype(F32)
        tensors[p + "shared_expert_gate.weight"] = (sg, "F32")
        seen[L] = dict(lw, shared=sh, shared_gate=sg)
    # the dense layers' MLPs (3 is in mlp_only_layers), which moed must not take for MoE
    for L in (0, 3):
        tensors["model.layers.%d.mlp.gate_proj.weight" % L] = (np.ones((128, H), F32), "F32")
    ref.write_safetensors(os.path.join(d, "model.safetensors"), tensors)
    with open(os.path.join(d, "layers"), "w") as f:
        f.write("1 5\n")
    for T in (1, 13):
        x = mc.clear_inputs(rng, T, H, seen, cfg)
        np.save(os.path.join(d, "x_%d.npy" % T), x)
        for L, lw in seen.items():
            y, idx, w = ref.moe_forward(x, lw, cfg)
            np.save(os.path.join(d, "y_%d_%d.npy" % (L, T)), y)
            np.save(os.path.join(d, "experts_%d_%d.npy" % (L, T)), idx)
            np.save(os.path.join(d, "weights_%d_%d.npy" % (L, T)), w)


def family_cases(root):
    """Configs that leave the router keys to the family's defaults."""
    qwen2_case(root)
    def without(hf, *keys):
        return {k: v for k, v in hf.items() if k not in keys}
    # GLM-4.5: no scoring_func/topk_method; sigmoid + bias + noaux_tc; groups used
    hf = without(mc.deepseek_config("glm4_moe", H, I, E, 4, 3, 1, 4, 2, 1, 2.5, True, "sigmoid",
                                    "noaux_tc"), "scoring_func", "topk_method", "moe_layer_freq")
    hf["architectures"] = ["Glm4MoeForCausalLM"]
    cfg = dict(scoring="sigmoid", top_k=4, n_group=4, topk_group=2, normalise=True, scale=2.5)
    mc.write_case(root, "glm45", hf, cfg, "deepseek", H, I, E, [1, 2], 1, True, "F32", [1, 9],
                  seed=31)
    # deepseek_v3 as HF's DeepseekV3Config writes it: no scoring_func, no topk_method,
    # no norm_topk_prob, no routed_scaling_factor (2.5)
    hf = without(mc.deepseek_config("deepseek_v3", H, I, E, 4, 2, 1, 4, 2, 1, 2.5, True,
                                    "sigmoid", "noaux_tc"),
                 "scoring_func", "topk_method", "norm_topk_prob", "routed_scaling_factor")
    cfg = dict(scoring="sigmoid", top_k=4, n_group=4, topk_group=2, normalise=True, scale=2.5)
    mc.write_case(root, "v3_nokeys", hf, cfg, "deepseek", H, I, E, [1], 1, True, "F32", [1, 9],
                  seed=32)
    # Kimi-K2: the V3 layout under its own model_type
    hf = without(mc.deepseek_config("kimi_k2", H, I, E, 4, 2, 0, 2, 1, 1, 2.827, True,
                                    "sigmoid", "noaux_tc"), "scoring_func", "topk_method")
    cfg = dict(scoring="sigmoid", top_k=4, n_group=2, topk_group=1, normalise=True, scale=2.827)
    mc.write_case(root, "kimi_k2", hf, cfg, "deepseek", H, I, E, [0, 1], 1, True, "F32", [1, 9],
                  seed=33)


# ---- bad cases beyond make_cases.py ----------------------------------------------

def clone(root, src, name, expect):
    d = os.path.join(root, "bad", name)
    shutil.copytree(os.path.join(root, "good", src), d)
    for f in os.listdir(d):
        if f.endswith(".npy") or f in ("layers", "expected.json"):
            os.remove(os.path.join(d, f))
    with open(os.path.join(d, "expect.txt"), "w") as f:
        f.write(expect)
    return d


def edit_config(d, change):
    p = os.path.join(d, "config.json")
    c = json.load(open(p))
    change(c)
    json.dump(c, open(p, "w"))


def bad_config(root, name, expect, change, src="v3"):
    edit_config(clone(root, src, name, expect), change)


def bad_tensors(root, name, expect, change, src="v3"):
    d = clone(root, src, name, expect)
    t = read_f32(d)
    change(t)
    ref.write_safetensors(os.path.join(d, "model.safetensors"), t)
    return d


def bad_bytes(root, name, expect, change):
    """change(header, data) -> bytes of the whole file."""
    d = clone(root, "v3", name, expect)
    p = os.path.join(d, "model.safetensors")
    header, data = read_raw(p)
    open(p, "wb").write(change(header, data))


def framed(header, data):
    h = json.dumps(header).encode()
    return len(h).to_bytes(8, "little") + h + data


def extra_bad(root):
    X = "model.layers.1.mlp."
    bad_config(root, "not_moe_family", "'model_type' 'llama' is not a MoE family",
               lambda c: [c.update(model_type="llama"), c.pop("n_routed_experts")])
    bad_config(root, "unknown_family", "'model_type' 'deepseek_v9' is not a MoE family moed knows (deepseek_v2, deepseek_v3, kimi_k2, glm4_moe, qwen2_moe, qwen3_moe, olmoe, mixtral)",
               lambda c: c.update(model_type="deepseek_v9"))
    fp8_bad(root)
    bad_config(root, "k_too_big", "'num_experts_per_tok' 17 exceeds the 16 experts",
               lambda c: c.update(num_experts_per_tok=17))
    bad_config(root, "topk_group_too_big", "'topk_group' 5 exceeds 'n_group' 4",
               lambda c: c.update(topk_group=5))
    bad_config(root, "string_field", "'hidden_size' must be a positive integer",
               lambda c: c.update(hidden_size="64"))
    bad_config(root, "zero_field", "'num_hidden_layers' must be a positive integer",
               lambda c: c.update(num_hidden_layers=0))
    bad_config(root, "bad_scoring", "'scoring_func' must be softmax or sigmoid",
               lambda c: c.update(scoring_func="relu"))
    bad_config(root, "bad_topk_method", "'topk_method' 'fastest' is not one of",
               lambda c: c.update(topk_method="fastest"))
    bad_config(root, "huge_experts", "'n_routed_experts' 1048576 exceeds moed's limit",
               lambda c: c.update(n_routed_experts=1 << 20))
    bad_tensors(root, "qwen2_no_shared_gate", "missing tensor 'model.layers.1.mlp.shared_expert_gate.weight'",
                lambda t: t.pop("model.layers.1.mlp.shared_expert_gate.weight"), src="qwen2")
    bad_tensors(root, "f64_dtype", "tensor 'model.layers.2.mlp.experts.7.gate_proj.weight' has dtype F64",
                lambda t: t.update({"model.layers.2.mlp.experts.7.gate_proj.weight":
                                    (t["model.layers.2.mlp.experts.7.gate_proj.weight"][0], "F64")}))
    bad_tensors(root, "missing_bias", "missing tensor '" + X + "gate.e_score_correction_bias'",
                lambda t: t.pop(X + "gate.e_score_correction_bias"))
    bad_tensors(root, "bias_shape", "tensor '" + X + "gate.e_score_correction_bias' has shape [15], expected [16]",
                lambda t: t.update({X + "gate.e_score_correction_bias": (np.zeros(15, F32), "F32")}))
    bad_tensors(root, "shared_shape", "tensor '" + X + "shared_experts.down_proj.weight' has shape [64, 31], expected [64, 32]",
                lambda t: t.update({X + "shared_experts.down_proj.weight":
                                    (np.zeros((64, 31), F32), "F32")}))
    bad_tensors(root, "transposed", "tensor '" + X + "experts.0.down_proj.weight' has shape [32, 64], expected [64, 32]",
                lambda t: t.update({X + "experts.0.down_proj.weight":
                                    (np.zeros((32, 64), F32), "F32")}))
    bad_tensors(root, "moe_layer_no_router", "missing tensor 'model.layers.2.mlp.gate.weight'",
                lambda t: t.pop("model.layers.2.mlp.gate.weight"))
    bad_tensors(root, "mixtral_missing_w2", "missing tensor 'model.layers.1.block_sparse_moe.experts.5.w2.weight'",
                lambda t: t.pop("model.layers.1.block_sparse_moe.experts.5.w2.weight"),
                src="mixtral")
    d = bad_tensors(root, "no_moe_layer", "no MoE layer",
                    lambda t: [t.pop(n) for n in list(t) if ".mlp.gate." in n])
    edit_config(d, lambda c: c.update(first_k_dense_replace=3))
    bad_bytes(root, "header_too_long", "header length",
              lambda h, data: (10 ** 9).to_bytes(8, "little") + json.dumps(h).encode() + data)
    bad_bytes(root, "header_not_json", "header is not a JSON object",
              lambda h, data: framed(h, data)[:8] + b"[" + framed(h, data)[9:])
    bad_bytes(root, "header_trailing", "header has bytes after its JSON object",
              lambda h, data: (len(json.dumps(h)) + 3).to_bytes(8, "little") +
              json.dumps(h).encode() + b" x " + data)

    def reversed_offsets(h, data):
        t = h["model.layers.2.mlp.experts.0.up_proj.weight"]
        t["data_offsets"] = t["data_offsets"][::-1]
        return framed(h, data)
    bad_bytes(root, "offsets_reversed", "tensor 'model.layers.2.mlp.experts.0.up_proj.weight': data_offsets",
              reversed_offsets)
    bad_bytes(root, "empty_file", "too short", lambda h, data: b"")
    d = clone(root, "v3", "no_weights", "no model.safetensors or model.safetensors.index.json")
    os.remove(os.path.join(d, "model.safetensors"))
    d = clone(root, "v3_sharded", "index_shard_lacks", "which does not have it")
    p = os.path.join(d, "model.safetensors.index.json")
    idx = json.load(open(p))
    wm = idx["weight_map"]
    name = X + "experts.4.up_proj.weight"
    wm[name] = next(f for f in sorted(set(wm.values())) if f != wm[name])
    json.dump(idx, open(p, "w"))
    d = clone(root, "v3_sharded", "index_not_json", 'not JSON with a "weight_map" object')
    open(os.path.join(d, "model.safetensors.index.json"), "w").write('{"weight_map": [1, 2]}')
    d = clone(root, "v3_sharded", "index_escape", "'../model.safetensors' is not a file name")
    p = os.path.join(d, "model.safetensors.index.json")
    idx = json.load(open(p))
    idx["weight_map"][name] = "../model.safetensors"
    json.dump(idx, open(p, "w"))


def fp8_bad(root):
    """Broken FP8 checkpoints, from v3_fp8_block (one file, blocks 32 x 48)."""
    X = "model.layers.1.mlp.experts.3."

    def edit(name, expect, change):
        d = clone(root, "v3_fp8_block", name, expect)
        p = os.path.join(d, "model.safetensors")
        header, data = read_raw(p)
        data = bytearray(data)
        change(header, data)
        write_raw(p, header, bytes(data))
        return d

    def poke(tname, at, value):
        def change(h, data):
            data[h[tname]["data_offsets"][0] + at] = value
        return change
    edit("fp8_nan", "FP8 tensor '" + X + "up_proj.weight' element 5 is a NaN code (0x7F)",
         poke(X + "up_proj.weight", 5, 0x7F))
    edit("fp8_nan_neg", "FP8 tensor '" + X + "down_proj.weight' element 0 is a NaN code (0xFF)",
         poke(X + "down_proj.weight", 0, 0xFF))

    def rename(old, new):
        def change(h, data):
            h[new] = h.pop(old)
        return change
    edit("fp8_no_scale", "FP8 tensor '" + X + "gate_proj.weight' has no scale tensor '" + X +
         "gate_proj.weight_scale_inv'",
         rename(X + "gate_proj.weight_scale_inv", "unrelated.weight_scale_inv"))

    def reshape(tname, shape):
        def change(h, data):
            h[tname]["shape"] = shape
        return change
    # down [72, 40] in 32 x 48 blocks has [3, 1] scales: [1, 3] (same bytes) is refused
    edit("fp8_scale_shape", "tensor '" + X + "down_proj.weight_scale_inv' has shape [1, 3], expected [3, 1] (the scales of 32x48 blocks",
         reshape(X + "down_proj.weight_scale_inv", [1, 3]))

    def dtype(tname, dt):
        def change(h, data):
            h[tname]["dtype"] = dt
        return change
    edit("fp8_e5m2", "tensor '" + X + "gate_proj.weight' has dtype F8_E5M2; of the FP8 formats only block-scaled F8_E4M3",
         dtype(X + "gate_proj.weight", "F8_E5M2"))
    bad_config(root, "fp8_fmt", "'quantization_config.fmt' 'e5m2': only e4m3",
               lambda c: c["quantization_config"].update(fmt="e5m2"), src="v3_fp8_block")
    bad_config(root, "fp8_block", "'quantization_config.weight_block_size' must be [rows, cols]",
               lambda c: c["quantization_config"].update(weight_block_size=[128]),
               src="v3_fp8_block")


# ---- synthetic:S0 from the documented generator ----------------------------------

M64 = (1 << 64) - 1


def synthetic_values(layer, tensor, expert, fan_in, indices):
    """Elements of one synthetic tensor: splitmix64 seeded with
    0x6d6f6564 ^ layer<<48 ^ tensor<<40 ^ expert<<8, the top 24 bits of each draw
    as u in [0, 1), value (2u - 1) * a with a = 1/sqrt(fan_in) (bias: a = 0.05)."""
    s = 0x6D6F6564 ^ (layer << 48) ^ (tensor << 40) ^ (expert << 8)
    a = F32(0.05) if fan_in == 0 else F32(1) / np.sqrt(F32(fan_in))
    out, want = {}, set(indices)
    for i in range(max(indices) + 1):
        s = (s + 0x9E3779B97F4A7C15) & M64
        z = s
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & M64
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & M64
        z ^= z >> 31
        if i in want:
            u = F32(z >> 40) * F32(1.0 / 16777216.0)
            out[i] = float((F32(2) * u - F32(1)) * a)
    return [out[i] for i in indices]


def write_synthetic(root):
    Hs, Is, Es = 256, 128, 16
    # (field, layer, tensor id, expert, fan_in, size)
    plan = [("gate", 1, 1, 0, Hs, Es * Hs), ("bias", 3, 2, 0, 0, Es),
            ("expert_gate", 2, 3, 0, Hs, Is * Hs), ("expert_up", 1, 4, 9, Hs, Is * Hs),
            ("expert_down", 3, 5, 15, Is, Hs * Is), ("shared_gate", 1, 6, 0, Hs, Is * Hs),
            ("shared_up", 2, 7, 0, Hs, Is * Hs), ("shared_down", 3, 8, 0, Is, Hs * Is)]
    samples = []
    for field, L, tid, e, fan, n in plan:
        idx = [0, 1, 2, n // 3, n - 1]
        for i, v in zip(idx, synthetic_values(L, tid, e, fan, idx)):
            samples.append([field, L, e if field.startswith("expert") else -1, i, v])
    m = {"model_type": "deepseek_v3", "num_hidden_layers": 4, "hidden_size": Hs,
         "intermediate_size": Is, "n_experts": Es, "top_k": 4, "n_group": 4, "topk_group": 2,
         "n_shared_experts": 1, "shared_intermediate_size": Is, "scoring": "sigmoid",
         "topk_method": "noaux_tc", "norm_topk_prob": True, "routed_scaling_factor": 2.5,
         "default_router": "sigmoid-norm", "dtype": "F32"}
    exp = {"model": m, "layers": [1, 2, 3], "dense": [0], "has_bias": True, "has_shared": True,
           "samples": samples}
    dump_expected(os.path.join(root, "synthetic.json"), exp)


def subset_case(root):
    """OUTDIR/subset/v3_layer1: v3 holding only layer 1's tensors (served with
    --layers 1; refused without it, naming layer 2's router weight)."""
    d = os.path.join(root, "subset", "v3_layer1")
    shutil.copytree(os.path.join(root, "good", "v3"), d)
    t = read_f32(d)
    ref.write_safetensors(os.path.join(d, "model.safetensors"),
                          {n: v for n, v in t.items() if not n.startswith("model.layers.2.")})
    for f in os.listdir(d):
        if f.startswith(("y_2_", "experts_2_", "weights_2_")) or f == "expected.json":
            os.remove(os.path.join(d, f))
    open(os.path.join(d, "layers"), "w").write("1\n")
    b = os.path.join(root, "bad", "subset_without_option")
    shutil.copytree(d, b)
    for f in os.listdir(b):
        if f.endswith(".npy") or f == "layers":
            os.remove(os.path.join(b, f))
    open(os.path.join(b, "expect.txt"), "w").write("missing tensor 'model.layers.2.mlp.gate.weight'")


def main():
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    mc.good_cases(out)
    extra_good(out)
    mc.bad_cases(out, os.path.join(out, "good"))
    extra_bad(out)
    subset_case(out)
    for i, d in enumerate(sorted(glob.glob(os.path.join(out, "good", "*")))):
        write_expected(d, 100 + i)
    write_synthetic(out)


if __name__ == "__main__":
    main()
