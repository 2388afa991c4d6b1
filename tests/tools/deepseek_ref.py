"""Float64 NumPy reference forward pass of the deepseek2 (DeepSeek-V2/V3, Kimi K2) architecture.

Written from the Hugging Face transformers DeepseekV3 definition as described in
spec/model-deepseek2.md (sections 2-5), independently of k2's C code:

* weights are read from a GGUF with the `gguf` package and dequantized exactly
  (gguf.quants.dequantize), then held in float64;
* attention is computed in the *non-absorbed* form (spec 4.6): per-head keys and values are
  decompressed from the latent with kv_b_proj (rebuilt from attn_k_b/attn_v_b or taken from a
  legacy attn_kv_b), so it cross-checks an absorbed engine;
* RoPE follows transformers' `rope_interleave` path: de-interleave the rope dims, then
  rotate_half with YaRN inverse frequencies (`_compute_yarn_parameters`);
* routing follows DeepseekV3TopkRouter (selection on biased scores, weights unbiased, renormalised,
  scaled) with llama.cpp's -inf group masking and top-2 group score (spec 5, M4).

Usage as a library: `m = Model(path); logits = m.forward(tokens)` -> [T, V] float64.
Command line: `deepseek_ref.py MODEL.gguf 1,2,3 [OUT.f32]` writes all rows as float32.
"""
import math
import sys

import numpy as np
import gguf
from gguf import quants

ARCH = "deepseek2"


class Model:
    def __init__(self, path, beta_fast=None, beta_slow=None):
        self.reader = r = gguf.GGUFReader(path)
        self.path = path
        arch = self._meta("general.architecture")
        if arch != ARCH:
            raise ValueError(f"{path}: general.architecture is {arch!r}, expected {ARCH!r}")
        self.tensors = {t.name: t for t in r.tensors}

        def hp(key, default=None):
            return self._meta(f"{ARCH}.{key}", default)

        self.d = hp("embedding_length")
        self.n_layer = hp("block_count") - hp("nextn_predict_layers", 0)
        self.n_dense = hp("leading_dense_block_count", 0)
        self.H = hp("attention.head_count")
        self.d_c = hp("attention.kv_lora_rank")
        self.d_r = hp("rope.dimension_count")
        self.is_mla = bool(hp("attention.key_length_mla", 0)) and bool(hp("attention.value_length_mla", 0))
        if self.is_mla:
            self.d_k = hp("attention.key_length_mla")
            self.d_v = hp("attention.value_length_mla")
        else:
            self.d_k = hp("attention.key_length")
            self.d_v = hp("attention.value_length")
        self.d_n = self.d_k - self.d_r
        self.eps = hp("attention.layer_norm_rms_epsilon")
        self.E = hp("expert_count", 0)
        self.K = hp("expert_used_count", 0)
        self.G = hp("expert_group_count", 0)
        self.G_k = hp("expert_group_used_count", 0)
        self.scale = hp("expert_weights_scale", 0.0)
        self.norm_w = hp("expert_weights_norm", False)
        self.gating = hp("expert_gating_func", 0) or 1
        self.q_lora = hp("attention.q_lora_rank", 0) > 0 and "blk.0.attn_q_a.weight" in self.tensors
        self.vocab = len(r.fields["tokenizer.ggml.tokens"].data)

        # RoPE / YaRN (spec 4.3, 4.4), transformers semantics.
        base = hp("rope.freq_base", 10000.0)
        rtype = hp("rope.scaling.type", "none")
        factor = hp("rope.scaling.factor", 0.0) or 1.0
        dim = self.d_r
        inv_freq = 1.0 / (base ** (np.arange(0, dim, 2, dtype=np.float64) / dim))
        self.tau = 1.0 / math.sqrt(self.d_k)
        self.rope_mag = 1.0
        if rtype == "yarn":
            L0 = hp("rope.scaling.original_context_length", hp("context_length"))
            bf = hp("rope.scaling.yarn_beta_fast", 32.0) if beta_fast is None else beta_fast
            bs = hp("rope.scaling.yarn_beta_slow", 1.0) if beta_slow is None else beta_slow

            def corr_dim(nrot):
                return (dim * math.log(L0 / (nrot * 2 * math.pi))) / (2 * math.log(base))

            lo = max(math.floor(corr_dim(bf)), 0)
            hi = min(math.ceil(corr_dim(bs)), dim - 1)
            if lo == hi:
                hi += 0.001
            ramp = np.clip((np.arange(dim // 2, dtype=np.float64) - lo) / (hi - lo), 0, 1)
            extrap = 1.0 - ramp
            inv_freq = (inv_freq / factor) * (1 - extrap) + inv_freq * extrap

            def g(s, x):
                return 1.0 if s <= 1 else 0.1 * x * math.log(s) + 1.0

            logmul = hp("rope.scaling.yarn_log_multiplier", None)
            if logmul is not None:
                mu = logmul / 0.1           # mscale_all_dim (spec 2.2 / 4.4)
                # mscale is not stored in GGUF: every known model has mscale == mscale_all_dim.
                self.rope_mag = g(factor, mu) / g(factor, mu) if mu else g(factor, 1.0)
                if mu:
                    self.tau *= g(factor, mu) ** 2
            else:
                # transformers defaults: mscale 1, mscale_all_dim 0 (spec 7.4 item 6).
                self.rope_mag = g(factor, 1.0)
        elif rtype == "linear" and factor != 1.0:
            inv_freq = inv_freq / factor
        self.inv_freq = inv_freq
        self._cache = {}

    # ---- GGUF access ----
    def _meta(self, key, default=None):
        f = self.reader.fields.get(key)
        if f is None:
            return default
        v = f.contents()
        return v

    def has(self, name):
        return name in self.tensors

    def w(self, name):
        """Dequantized tensor in numpy order ([ne2, ne1, ne0]) as float64."""
        if name not in self._cache:
            t = self.tensors[name]
            a = quants.dequantize(t.data, t.tensor_type)
            shape = tuple(int(x) for x in reversed(t.shape))
            self._cache[name] = np.asarray(a, dtype=np.float64).reshape(shape)
        return self._cache[name]

    # ---- primitives ----
    def rmsnorm(self, x, g):
        return g * (x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + self.eps))

    @staticmethod
    def silu(x):
        return x / (1.0 + np.exp(-x))

    def rope(self, x, pos):
        """transformers apply_rotary_pos_emb with rope_interleave: x [..., T, d_r]."""
        T = x.shape[-2]
        x = x.reshape(*x.shape[:-1], self.d_r // 2, 2)
        x = np.concatenate([x[..., 0], x[..., 1]], axis=-1)   # de-interleave
        freqs = np.outer(pos.astype(np.float64), self.inv_freq)  # [T, d_r/2]
        emb = np.concatenate([freqs, freqs], axis=-1)
        cos = np.cos(emb) * self.rope_mag
        sin = np.sin(emb) * self.rope_mag
        half = self.d_r // 2
        rot = np.concatenate([-x[..., half:], x[..., :half]], axis=-1)
        assert cos.shape[0] == T
        return x * cos + rot * sin

    # ---- blocks ----
    def attention(self, l, h, pos):
        T = h.shape[0]
        H, d_n, d_r, d_v, d_c = self.H, self.d_n, self.d_r, self.d_v, self.d_c
        p = f"blk.{l}."
        if self.q_lora:
            cq = h @ self.w(p + "attn_q_a.weight").T
            cq = self.rmsnorm(cq, self.w(p + "attn_q_a_norm.weight"))
            q = cq @ self.w(p + "attn_q_b.weight").T
        else:
            q = h @ self.w(p + "attn_q.weight").T
        q = q.reshape(T, H, self.d_k).transpose(1, 0, 2)          # [H, T, d_k]
        q_nope, q_rope = q[..., :d_n], q[..., d_n:]
        a = h @ self.w(p + "attn_kv_a_mqa.weight").T                 # [T, d_c + d_r]
        c = self.rmsnorm(a[:, :d_c], self.w(p + "attn_kv_a_norm.weight"))
        k_rope = a[:, d_c:]
        # kv_b_proj [H*(d_n+d_v), d_c] as in the HF checkpoint (spec 3.2)
        if self.has(p + "attn_kv_b.weight"):
            kvb = self.w(p + "attn_kv_b.weight").reshape(H, d_n + d_v, d_c)
            w_uk, w_uv = kvb[:, :d_n, :], kvb[:, d_n:, :]
        else:
            w_uk = self.w(p + "attn_k_b.weight").transpose(0, 2, 1)  # [H, d_n, d_c]
            w_uv = self.w(p + "attn_v_b.weight")                     # [H, d_v, d_c]
        k_nope = np.einsum("hnc,tc->htn", w_uk, c)
        v = np.einsum("hvc,tc->htv", w_uv, c)
        q_rope = self.rope(q_rope, pos)
        k_rope = self.rope(k_rope[None], pos)                        # [1, T, d_r]
        # both q and k rope parts are de-interleaved the same way: dot products unchanged
        qf = np.concatenate([q_nope, q_rope], axis=-1)
        kf = np.concatenate([k_nope, np.broadcast_to(k_rope, (H, T, d_r))], axis=-1)
        s = np.einsum("hqd,hkd->hqk", qf, kf) * self.tau
        mask = np.triu(np.ones((T, T), dtype=bool), 1)
        s = np.where(mask[None], -np.inf, s)
        s = s - s.max(axis=-1, keepdims=True)
        pr = np.exp(s)
        pr /= pr.sum(axis=-1, keepdims=True)
        o = np.einsum("hqk,hkv->qhv", pr, v).reshape(T, H * d_v)
        y = o @ self.w(p + "attn_output.weight").T
        if self.has(p + "attn_output.scale"):
            y = y * self.w(p + "attn_output.scale").reshape(-1)
        return y

    def mlp(self, x, wg, wu, wd):
        return (self.silu(x @ wg.T) * (x @ wu.T)) @ wd.T

    def route(self, logits, bias):
        """One token: returns (expert ids, weights). spec 5, M2-M8."""
        E, K = self.E, self.K
        if self.gating == 1:
            e = np.exp(logits - logits.max())
            probs = e / e.sum()
        elif self.gating == 2:
            probs = 1.0 / (1.0 + np.exp(-logits))
        elif self.gating == 3:
            probs = logits.copy()
        elif self.gating == 4:
            probs = np.sqrt(np.logaddexp(0.0, logits))
        else:
            raise ValueError(f"unknown expert_gating_func {self.gating}")
        choice = probs + bias if bias is not None else probs.copy()
        if self.G > 1:
            gs = choice.reshape(self.G, E // self.G)
            gscore = np.sort(gs, axis=1)[:, -2:].sum(axis=1)
            keep = np.argsort(-gscore, kind="stable")[: self.G_k]
            m = np.full(self.G, True)
            m[keep] = False
            choice = choice.copy().reshape(self.G, E // self.G)
            choice[m] = -np.inf
            choice = choice.reshape(E)
        sel = np.argsort(-choice, kind="stable")[:K]   # ties: lowest index first
        w = probs[sel]
        if self.gating == 3:
            w = np.exp(w - w.max())
            w /= w.sum()
        if self.norm_w:
            w = w / max(w.sum(), 2.0 ** -14)
        if self.scale not in (0.0, 1.0):
            w = w * self.scale
        return sel, w

    def moe(self, l, x):
        p = f"blk.{l}."
        logits = x @ self.w(p + "ffn_gate_inp.weight").T
        bias = self.w(p + "exp_probs_b.bias") if self.has(p + "exp_probs_b.bias") else None
        if self.has(p + "ffn_gate_up_exps.weight"):
            gu = self.w(p + "ffn_gate_up_exps.weight")
            f = gu.shape[1] // 2
            g_exps, u_exps = gu[:, :f, :], gu[:, f:, :]
        else:
            g_exps = self.w(p + "ffn_gate_exps.weight")
            u_exps = self.w(p + "ffn_up_exps.weight")
        d_exps = self.w(p + "ffn_down_exps.weight")
        y = np.zeros_like(x)
        self.last_experts = []
        for t in range(x.shape[0]):
            sel, wts = self.route(logits[t], bias)
            self.last_experts.append(sel)
            for e, wt in zip(sel, wts):
                y[t] += wt * self.mlp(x[t], g_exps[e], u_exps[e], d_exps[e])
        y += self.mlp(x, self.w(p + "ffn_gate_shexp.weight"), self.w(p + "ffn_up_shexp.weight"),
                      self.w(p + "ffn_down_shexp.weight"))
        return y

    def forward(self, tokens):
        tokens = np.asarray(tokens, dtype=np.int64)
        pos = np.arange(len(tokens))
        x = self.w("token_embd.weight")[tokens].copy()
        for l in range(self.n_layer):
            p = f"blk.{l}."
            x = x + self.attention(l, self.rmsnorm(x, self.w(p + "attn_norm.weight")), pos)
            h = self.rmsnorm(x, self.w(p + "ffn_norm.weight"))
            if l < self.n_dense:
                x = x + self.mlp(h, self.w(p + "ffn_gate.weight"), self.w(p + "ffn_up.weight"),
                                 self.w(p + "ffn_down.weight"))
            else:
                x = x + self.moe(l, h)
        z = self.rmsnorm(x, self.w("output_norm.weight"))
        out = self.w("output.weight") if self.has("output.weight") else self.w("token_embd.weight")
        return z @ out.T


def main(argv):
    if len(argv) < 3:
        print(__doc__)
        return 2
    m = Model(argv[1])
    toks = [int(t) for t in argv[2].split(",")]
    lg = m.forward(toks)
    if len(argv) > 3:
        lg.astype("<f4").tofile(argv[3])
    else:
        print(" ".join(str(int(i)) for i in lg.argmax(axis=1)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
