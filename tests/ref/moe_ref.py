"""Independent numpy reference of one MoE layer, written from ROUTING.md (not
from moed's C code), plus a minimal safetensors writer.  Used by the test
generators to write checkpoints and the outputs moed must reproduce.

All arithmetic is float32 except where noted; ties are broken by value
descending, then lower expert index (a stable sort on -value)."""
import json
import struct

import numpy as np

F32 = np.float32


def softmax(z):
    z = z.astype(F32)
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return (e / e.sum(axis=-1, keepdims=True)).astype(F32)


def sigmoid(z):
    z = z.astype(F32)
    return (F32(1) / (F32(1) + np.exp(-z))).astype(F32)


def topk_desc(v, k):
    """Indices of the k largest values; ties -> lower index first."""
    return np.argsort(-v, kind="stable")[:k]


def scores(x, gate, cfg):
    logits = (x.astype(F32) @ gate.astype(F32).T).astype(F32)
    return sigmoid(logits) if cfg["scoring"] == "sigmoid" else softmax(logits)


def choice_scores(s, bias, cfg):
    """Biased scores with the groups outside the topk_group best set to -inf."""
    c = s + bias if bias is not None else s.copy()
    G = cfg.get("n_group", 1)
    if G > 1 and cfg.get("topk_group", G) < G:
        per = c.shape[-1] // G
        grp = c.reshape(G, per)
        if bias is not None:
            top2 = np.sort(grp, axis=-1)[:, ::-1][:, :2]
            gs = top2.sum(axis=-1, dtype=F32)
        else:
            gs = grp.max(axis=-1)
        keep = topk_desc(gs, cfg["topk_group"])
        mask = np.full(G, True)
        mask[keep] = False
        grp = grp.copy()
        grp[mask] = -np.inf
        c = grp.reshape(-1)
    return c.astype(F32)


def route(x, gate, bias, cfg):
    """x [T,H] -> (experts [T,k] int32, weights [T,k] float32)."""
    s_all = scores(x, gate, cfg)
    k = cfg["top_k"]
    eps = F32(cfg.get("epsilon", 1e-20))
    idx = np.zeros((x.shape[0], k), np.int32)
    w = np.zeros((x.shape[0], k), F32)
    for t in range(x.shape[0]):
        s = s_all[t]
        c = choice_scores(s, bias, cfg)
        sel = topk_desc(c, k)
        wt = s[sel].astype(F32)                    # unbiased scores weigh
        if cfg["normalise"]:
            wt = (wt / (wt.sum(dtype=F32) + eps)).astype(F32)
        idx[t] = sel
        w[t] = (wt * F32(cfg["scale"])).astype(F32)
    return idx, w


def boundary_gap(x, gate, bias, cfg):
    """Smallest margin (float64) between chosen and rejected candidates, at the
    expert and at the group level; generators resample tokens below a margin so
    the test never depends on float rounding deciding a near-tie."""
    s_all = (x.astype(np.float64) @ gate.astype(np.float64).T)
    if cfg["scoring"] == "sigmoid":
        s_all = 1 / (1 + np.exp(-s_all))
    else:
        s_all = np.exp(s_all - s_all.max(-1, keepdims=True))
        s_all /= s_all.sum(-1, keepdims=True)
    gaps = []
    k = cfg["top_k"]
    for s in s_all:
        c = s + (bias.astype(np.float64) if bias is not None else 0)
        G = cfg.get("n_group", 1)
        if G > 1 and cfg.get("topk_group", G) < G:
            grp = c.reshape(G, -1)
            gs = np.sort(grp, -1)[:, ::-1][:, :2].sum(-1) if bias is not None else grp.max(-1)
            o = np.sort(gs)[::-1]
            gaps.append(o[cfg["topk_group"] - 1] - o[cfg["topk_group"]])
            keep = np.argsort(-gs)[:cfg["topk_group"]]
            masked = np.full(G, True)
            masked[keep] = False
            grp = grp.copy()
            grp[masked] = -np.inf
            c = grp.reshape(-1)
        o = np.sort(c)[::-1]
        if k < len(o) and np.isfinite(o[k]):
            gaps.append(o[k - 1] - o[k])
    return np.array(gaps).reshape(len(s_all), -1).min(-1) if gaps else np.full(len(s_all), 1.0)


def silu(z):
    return (z / (F32(1) + np.exp(-z))).astype(F32)


def ffn(x, g, u, d):
    """SwiGLU: down(silu(gate x) * up x); g, u [I,H], d [H,I]."""
    a = silu((x @ g.T).astype(F32)) * (x @ u.T).astype(F32)
    return (a.astype(F32) @ d.T).astype(F32)


def moe_forward(x, layer, cfg):
    """layer: dict with gate, bias (or None), experts [(g,u,d)], shared (g,u,d) or None."""
    x = x.astype(F32)
    idx, w = route(x, layer["gate"], layer.get("bias"), cfg)
    y = np.zeros_like(x)
    for e, (g, u, d) in enumerate(layer["experts"]):
        rows, slots = np.nonzero(idx == e)
        if len(rows):
            y[rows] += (w[rows, slots][:, None] * ffn(x[rows], g, u, d)).astype(F32)
    if layer.get("shared") is not None:
        sy = ffn(x, *layer["shared"])
        if layer.get("shared_gate") is not None:      # Qwen2-MoE
            sy = (sigmoid(x @ layer["shared_gate"].reshape(-1))[:, None] * sy).astype(F32)
        y += sy
    return y.astype(F32), idx, w


def to_bf16_bits(a):
    """float32 -> bf16 bits, round to nearest even (as torch does)."""
    u = np.ascontiguousarray(a, F32).view(np.uint32).astype(np.uint64)
    r = ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(np.uint16)
    return r


def from_bf16_bits(b):
    return (b.astype(np.uint32) << 16).view(F32)


def as_stored(a, dtype):
    """The float32 values moed will see after loading `a` stored as dtype."""
    if dtype == "BF16":
        return from_bf16_bits(to_bf16_bits(a))
    if dtype == "F16":
        return a.astype(np.float16).astype(F32)
    return a.astype(F32)


# ---- FP8 E4M3 ("e4m3fn"), decoded from its definition: sign, 4 exponent bits
# (bias 7), 3 mantissa bits; exponent 0 is subnormal; 0x7F/0xFF are NaN.

def fp8_table():
    v = np.arange(256)
    e, m = (v >> 3) & 15, v & 7
    mag = np.where(e == 0, m * 2.0 ** -9, (8 + m) * 2.0 ** (e - 10))
    t = np.where(v & 0x80, -mag, mag)
    t[(v & 0x7F) == 0x7F] = np.nan
    return t.astype(F32)


FP8 = fp8_table()


def fp8_encode(a):
    """float32 -> nearest e4m3 codes (uint8), saturating at 448."""
    pos = FP8[:0x7F]                        # codes 0..0x7E, increasing
    mag = np.minimum(np.abs(a), 448.0)
    hi = np.clip(np.searchsorted(pos, mag), 1, 0x7E)
    lo = hi - 1
    code = np.where(mag - pos[lo] <= pos[hi] - mag, lo, hi).astype(np.uint8)
    return np.where((a < 0) & (code != 0), code | 0x80, code).astype(np.uint8)


def fp8_dequant(codes, scale, block):
    """w[r][c] = fp8(codes[r][c]) * scale[r // br][c // bc] in float32."""
    br, bc = block
    s = np.repeat(np.repeat(scale, br, axis=0), bc, axis=1)[:codes.shape[0], :codes.shape[1]]
    return (FP8[codes] * s).astype(F32)


def fp8_quantise(w, rng, block):
    """Block-scaled codes of w: each block's scale is amax/448 times 2^j, j in
    0..4 drawn per block, so neighbouring blocks' scales differ by powers of
    two (a scale applied to the wrong block is off by up to 16x)."""
    br, bc = block
    R, C = w.shape
    sr, sc = -(-R // br), -(-C // bc)
    scale = np.zeros((sr, sc), F32)
    for i in range(sr):
        for j in range(sc):
            amax = np.abs(w[i * br:(i + 1) * br, j * bc:(j + 1) * bc]).max()
            scale[i, j] = F32(amax / 448.0 * 2.0 ** int(rng.integers(0, 5)))
    s = np.repeat(np.repeat(scale, br, axis=0), bc, axis=1)[:R, :C]
    return fp8_encode((w / s).astype(F32)), scale


def tensor_bytes(a, dtype):
    if dtype == "BF16":
        return to_bf16_bits(a).tobytes()
    if dtype == "F16":
        return a.astype("<f2").tobytes()
    if dtype == "F32":
        return a.astype("<f4").tobytes()
    if dtype == "F64":
        return a.astype("<f8").tobytes()
    if dtype == "I64":
        return a.astype("<i8").tobytes()
    if dtype in ("F8_E4M3", "F8_E5M2"):
        return a.astype(np.uint8).tobytes()
    raise ValueError(dtype)


def write_safetensors(path, tensors):
    """tensors: {name: (array, dtype)} -> safetensors file (header + data)."""
    header, blobs, off = {}, [], 0
    for name, (a, dtype) in tensors.items():
        b = tensor_bytes(a, dtype)
        header[name] = {"dtype": dtype, "shape": list(a.shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    header["__metadata__"] = {"format": "pt"}
    h = json.dumps(header).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)


def read_safetensors(path, fp8_codes=False):
    """{name: float32 array} from an F32/BF16/F16 safetensors file (with
    fp8_codes, F8_E4M3 tensors too, as their uint8 codes)."""
    data = open(path, "rb").read()
    n = struct.unpack("<Q", data[:8])[0]
    header = json.loads(data[8:8 + n])
    out = {}
    for name, t in header.items():
        if name == "__metadata__":
            continue
        b = data[8 + n + t["data_offsets"][0]:8 + n + t["data_offsets"][1]]
        if t["dtype"] == "F32":
            a = np.frombuffer(b, "<f4")
        elif t["dtype"] == "F16":
            a = np.frombuffer(b, "<f2").astype(F32)
        elif t["dtype"] == "BF16":
            a = from_bf16_bits(np.frombuffer(b, "<u2"))
        elif t["dtype"] == "F8_E4M3" and fp8_codes:
            out[name] = np.frombuffer(b, np.uint8).reshape(t["shape"])
            continue
        else:
            continue
        out[name] = a.reshape(t["shape"]).astype(F32)
    return out


def deepseek_layer(tensors, L, n_experts):
    """A DeepSeek-named MoE layer from read_safetensors() output."""
    p = "model.layers.%d.mlp." % L
    ex = [tuple(tensors[p + "experts.%d.%s.weight" % (e, n)]
                for n in ("gate_proj", "up_proj", "down_proj")) for e in range(n_experts)]
    sh = None
    if p + "shared_experts.gate_proj.weight" in tensors:
        sh = tuple(tensors[p + "shared_experts.%s.weight" % n]
                   for n in ("gate_proj", "up_proj", "down_proj"))
    return {"gate": tensors[p + "gate.weight"], "bias": tensors.get(p + "gate.e_score_correction_bias"),
            "experts": ex, "shared": sh}
