"""A hand-built transformer whose op-specialist and generalist neurons are known by construction.

Toy task: tokens ``[OP_k, x, =]``, answer ``(x + k) mod P``. Token embeddings are one-hot; layer 0's attention
averages the three positions uniformly (W_q = W_k = 0), so the last position sees the op and the operand.
FFN neuron (k, v) of the specialist layer fires on every probe of op k (most strongly when x = v) and
writes the answer direction of ``(v + k) mod P``; it is silent on the other ops. Generalist neurons fire
equally on every probe. In the two-layer variant, layer 0 holds ``n_gate`` generalists that write a gate
direction which the layer-1 specialists need to fire; its other neurons write nothing.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

import ffnkv

P, K = 6, 3
ALPHA, BETA, GAMMA, GATE_W = 5.0, 1.0, 1.0, 12.0


def probe_set(repeats: int = 2) -> dict:
    op_N = np.repeat(np.arange(K), P)
    x_N = np.tile(np.arange(P), K)
    tokens = np.stack([P + op_N, x_N, np.full_like(x_N, P + K)], 1).astype(np.int32)
    probe = {"tokens": tokens, "target": ((x_N + op_N) % P).astype(np.int32), "op": op_N.astype(np.int32)}
    return {k: np.concatenate([v] * repeats) for k, v in probe.items()}


def _rms(x, eps=1e-5):
    return x / np.sqrt((x * x).mean() + eps)


def _ffn_input(params, cfg, layer):
    """The normalised FFN input of ``layer`` at the last position of probe ``[OP_0, 0, =]`` (numpy, no jit)."""
    emb = params["embed"]["tok"][[P, 0, P + K]]
    x = emb[-1] + np.mean([_rms(e) for e in emb], axis=0)  # layer 0: uniform attention, W_v = W_o = I
    if layer == 1:
        ffn = jax.tree.map(lambda w: w[0], params["blocks"]["ffn"])
        x = x + np.maximum(_rms(x) @ ffn["W_in"] + ffn["b_in"], 0) @ ffn["W_out"] + ffn["b_out"]
    return _rms(x)[None]


def _zero_params(cfg) -> dict:
    L, D, F = cfg.n_layers, cfg.d_model, cfg.d_ff
    z = lambda *shape: np.zeros(shape, np.float32)
    ones = lambda: {"scale": np.ones((L, D), np.float32)}
    attn = {"W_q": z(L, D, D), "W_k": z(L, D, D), "W_v": z(L, D, D), "W_o": z(L, D, D)}
    attn |= {"b_q": z(L, D), "b_k": z(L, D), "b_v": z(L, D), "b_o": z(L, D)}
    ffn = {"W_in": z(L, D, F), "W_out": z(L, F, D), "b_in": z(L, F), "b_out": z(L, D)}
    return {"embed": {"tok": z(cfg.vocab_size, D)}, "blocks": {"attn": attn, "ffn": ffn, "ln1": ones(), "ln2": ones()},
            "final_norm": {"scale": np.ones(D, np.float32)}, "unembed": z(D, cfg.vocab_size)}


def build(n_layers: int = 1, n_generalists: int = 2, n_dead: int = 4, n_gate: int = 3, n_rare: int = P):
    """Returns (params, cfg, specialist_KLF, generalist_LF) with the known neuron roles."""
    V = P + K + 1
    ans, gate = V, V + P
    D = V + P + 1
    F = K * P + n_generalists + n_dead + (n_gate + 1 + n_rare if n_layers == 2 else 0)
    cfg = ffnkv.ModelConfig(vocab_size=V, d_model=D, n_layers=n_layers, n_heads=1, d_ff=F, ffn="relu", max_len=3,
                            positional="none", norm="rmsnorm", tie_embeddings=False)
    params = _zero_params(cfg)
    params["embed"]["tok"] = np.eye(V, D, dtype=np.float32)
    params["unembed"] = np.zeros((D, V), np.float32)
    params["unembed"][ans + np.arange(P), np.arange(P)] = 1.0
    blocks = params["blocks"]
    blocks["attn"]["W_v"][0] = np.eye(D)
    blocks["attn"]["W_o"][0] = np.eye(D)
    blocks["ffn"]["b_in"][:] = -1.0
    spec_layer = n_layers - 1
    specialist = np.zeros((K, n_layers, F), bool)
    generalist = np.zeros((n_layers, F), bool)
    ffn = blocks["ffn"]
    if n_layers == 2:
        h = _ffn_input(params, cfg, 0)
        base = K * P + n_generalists + n_dead
        for i in range(n_gate + 1):
            ffn["W_in"][0, :, base + i] = np.eye(D)[P + K] / h[0, P + K]
            ffn["b_in"][0, base + i] = 0.0
            if i < n_gate:
                ffn["W_out"][0, base + i, gate] = 0.3
            generalist[0, base + i] = True
        for v in range(n_rare):
            ffn["W_in"][0, :, base + n_gate + 1 + v] = np.eye(D)[v] / h[0, 0]
            ffn["b_in"][0, base + n_gate + 1 + v] = -0.5
    h = _ffn_input(params, cfg, spec_layer)
    c_op, c_x = h[0, P], h[0, 0]
    for k in range(K):
        for v in range(P):
            n = k * P + v
            ffn["W_in"][spec_layer, P + k, n] = ALPHA / c_op
            ffn["W_in"][spec_layer, v, n] = BETA / c_x
            ffn["b_in"][spec_layer, n] = GAMMA - ALPHA
            if n_layers == 2:
                ffn["W_in"][spec_layer, gate, n] = GATE_W / h[0, gate]
                ffn["b_in"][spec_layer, n] -= GATE_W
            ffn["W_out"][spec_layer, n, ans + (v + k) % P] = 1.0
            specialist[k, spec_layer, n] = True
    for g in range(n_generalists):
        ffn["W_in"][spec_layer, P + K, K * P + g] = 1.0 / h[0, P + K]
        ffn["b_in"][spec_layer, K * P + g] = 0.0
        generalist[spec_layer, K * P + g] = True
    return jax.tree.map(jnp.asarray, params), cfg, specialist, generalist
