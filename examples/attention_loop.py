#!/usr/bin/env python3
"""A tiny decoder that uses moed for its MoE layers: the intended use of the
Python client by an attention server.

The model is numpy and random (seeded): a token embedding, then for each of
the served checkpoint's layers RMSNorm -> one causal single-head attention
step (keys and values cached per layer) -> residual, RMSNorm -> the layer's
feed-forward -> residual; the feed-forward of a MoE layer is one
moed.Client.infer call, a dense layer gets a small numpy MLP.  Greedy decoding
over a 256-token vocabulary (a random output head).

It runs a prompt in one prefill pass (one moed call of P tokens per MoE layer),
then decodes token by token (one call of one token per MoE layer), and prints
a timing line: tokens/s for both phases and the share of time spent inside
moed (round trips included).  With --check it also runs the prompt token by
token and exits 1 unless that agrees with the prefill pass (the KV cache and
moed's answers do not depend on how tokens are batched).

    examples/attention_loop.py [--socket PATH] [--prompt 8] [--tokens 16]
                               [--dtype f32|bf16] [--seed 0] [--check]
"""
import argparse
import sys
import time

import numpy as np

import moed

VOCAB = 256


def rmsnorm(x, eps=1e-6):
    return (x / np.sqrt((x * x).mean(-1, keepdims=True) + eps)).astype(np.float32)


class Decoder:
    def __init__(self, client, seed, dtype):
        self.c = client
        self.dtype = dtype
        m = client.model()
        self.H, self.n_layers = m["hidden_size"], m["num_hidden_layers"]
        self.moe = set(m["moe_layers"])
        rng = np.random.default_rng(seed)
        H = self.H
        r = lambda *s: (rng.standard_normal(s) / np.sqrt(s[-1])).astype(np.float32)  # noqa: E731
        self.embed = r(VOCAB, H) * np.float32(np.sqrt(H))
        self.head = r(VOCAB, H)
        self.attn = [tuple(r(H, H) for _ in range(4)) for _ in range(self.n_layers)]
        self.mlp = [None if L in self.moe else (r(2 * H, H), r(H, 2 * H))
                    for L in range(self.n_layers)]
        self.moed_s = 0.0
        self.moed_calls = 0
        self.reset()

    def reset(self):
        self.k = [np.zeros((0, self.H), np.float32) for _ in range(self.n_layers)]
        self.v = [np.zeros((0, self.H), np.float32) for _ in range(self.n_layers)]

    def ffn(self, L, x):
        if L not in self.moe:
            up, down = self.mlp[L]
            return (np.maximum(x @ up.T, 0) @ down.T).astype(np.float32)
        t0 = time.perf_counter()
        if self.dtype == "bf16":
            y = moed.bf16_to_f32(self.c.infer(L, moed.f32_to_bf16(x), dtype="bf16"))
        else:
            y = self.c.infer(L, x)
        self.moed_s += time.perf_counter() - t0
        self.moed_calls += 1
        return y

    def forward(self, tokens):
        """Run new tokens (after those already cached); the last position's logits."""
        h = self.embed[tokens]
        T, past = len(tokens), self.k[0].shape[0]
        for L in range(self.n_layers):
            wq, wk, wv, wo = self.attn[L]
            a = rmsnorm(h)
            q = a @ wq.T
            self.k[L] = np.concatenate([self.k[L], a @ wk.T])
            self.v[L] = np.concatenate([self.v[L], a @ wv.T])
            s = (q @ self.k[L].T) / np.float32(np.sqrt(self.H))
            s[np.arange(T)[:, None] < np.arange(past + T)[None, :] - past] = -np.inf  # causal
            p = np.exp(s - s.max(-1, keepdims=True))
            p /= p.sum(-1, keepdims=True)
            h = (h + (p @ self.v[L]) @ wo.T).astype(np.float32)
            h = (h + self.ffn(L, rmsnorm(h))).astype(np.float32)
        return rmsnorm(h)[-1] @ self.head.T, h


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--socket", default=None, help="moed's socket ($MOED_SOCKET, /run/moed.sock)")
    ap.add_argument("--prompt", type=int, default=8, help="prompt tokens (prefill)")
    ap.add_argument("--tokens", type=int, default=16, help="tokens to decode")
    ap.add_argument("--dtype", choices=("f32", "bf16"), default="f32", help="hidden states on the wire")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--check", action="store_true", help="prefill must equal token-by-token")
    a = ap.parse_args()
    try:
        client = moed.Client(a.socket)
    except moed.Unavailable as e:
        print("attention_loop: %s" % e.message, file=sys.stderr)
        return 2
    with client:
        d = Decoder(client, a.seed, a.dtype)
        prompt = list(np.random.default_rng(a.seed + 1).integers(0, VOCAB, a.prompt))

        t0 = time.perf_counter()
        logits, h_prefill = d.forward(prompt)
        t_prefill, moed_prefill = time.perf_counter() - t0, d.moed_s

        out = []
        t0 = time.perf_counter()
        for _ in range(a.tokens):
            tok = int(np.argmax(logits))
            out.append(tok)
            logits, _ = d.forward([tok])
        t_decode, moed_decode = time.perf_counter() - t0, d.moed_s - moed_prefill

        print("moed %s, %d layers (MoE %s), H %d, hidden states as %s on the wire"
              % (client.server_version, d.n_layers, ",".join(map(str, sorted(d.moe))), d.H,
                 a.dtype))
        print("generated: %s" % " ".join(map(str, out)))
        total = t_prefill + t_decode
        print("prefill %d tokens %.1f ms (%.0f tokens/s), decode %d tokens %.1f ms "
              "(%.1f tokens/s), %d moed calls, %.0f%% of the time inside moed"
              % (a.prompt, 1e3 * t_prefill, a.prompt / t_prefill, a.tokens, 1e3 * t_decode,
                 a.tokens / t_decode if t_decode else 0.0, d.moed_calls,
                 100.0 * (moed_prefill + moed_decode) / total if total else 0.0))

        if a.check:
            d.reset()
            steps = np.concatenate([d.forward([t])[1] for t in prompt])
            # the same last-layer states whether the prompt went in at once or
            # one token at a time (fp32 reassociation only; bf16 rounds twice)
            tol = 2e-2 if a.dtype == "bf16" else 1e-4
            err = float(np.abs(steps - h_prefill).max() / np.abs(h_prefill).max())
            if not err <= tol:
                print("check: prefill and token-by-token differ by %.3g (> %g)" % (err, tol),
                      file=sys.stderr)
                return 1
            print("check: prefill == token by token (max relative difference %.2g)" % err)
    return 0


if __name__ == "__main__":
    sys.exit(main())
