"""Expected outputs of one layer of a DeepSeek-V3-form checkpoint under several
router configurations, for the hot-swap test.  usage:
swap_expect.py CASE_DIR LAYER X.npy OUTDIR -> OUTDIR/<config>.npy for each of
  sigmoid-norm        the model's own routing (epsilon 1e-20)
  sigmoid-norm-eps    sigmoid-norm with epsilon=0.5 (visibly different weights)
  softmax-topk        softmax scores, same groups/bias/normalise/scale
  bias-balanced-g0    bias-balanced with gamma=0: the bias never moves"""
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import moe_ref as ref  # noqa: E402


def main():
    case, L, xfile, out = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
    hf = json.load(open(os.path.join(case, "config.json")))
    layer = ref.deepseek_layer(ref.read_safetensors(os.path.join(case, "model.safetensors")), L,
                               hf["n_routed_experts"])
    x = np.load(xfile)
    base = dict(top_k=hf["num_experts_per_tok"], n_group=hf["n_group"],
                topk_group=hf["topk_group"], normalise=True,
                scale=hf["routed_scaling_factor"])
    configs = {
        "sigmoid-norm": dict(base, scoring="sigmoid"),
        "sigmoid-norm-eps": dict(base, scoring="sigmoid", epsilon=0.5),
        "softmax-topk": dict(base, scoring="softmax", normalise=hf["norm_topk_prob"]),
        "bias-balanced-g0": dict(base, scoring="sigmoid"),
    }
    os.makedirs(out, exist_ok=True)
    for name, cfg in configs.items():
        y, _, _ = ref.moe_forward(x, layer, cfg)
        np.save(os.path.join(out, name + ".npy"), y)


if __name__ == "__main__":
    main()
