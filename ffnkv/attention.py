"""Multi-head self-attention (causal or bidirectional, grouped-query) and rotary positions."""
from __future__ import annotations

import jax
import jax.numpy as jnp
from flax.linen import initializers

from ffnkv.ffn import dense


def init_attention(key, cfg):
    kq, kk, kv, ko = jax.random.split(key, 4)
    init = initializers.lecun_normal()
    D, H, G, dh = cfg.d_model, cfg.n_heads, cfg.kv_heads, cfg.head_dim
    params = {
        "W_q": init(kq, (D, H * dh)), "W_k": init(kk, (D, G * dh)),
        "W_v": init(kv, (D, G * dh)), "W_o": init(ko, (H * dh, D)),
    }
    if cfg.bias:
        params |= {"b_q": jnp.zeros(H * dh), "b_k": jnp.zeros(G * dh), "b_v": jnp.zeros(G * dh), "b_o": jnp.zeros(D)}
    return params


def rope(x_BTHK, theta: float):
    """Rotary embedding (Su et al. 2021) in the rotate-half convention: pairs are (i, i + K/2)."""
    T, K = x_BTHK.shape[1], x_BTHK.shape[-1]
    inv_freq = 1.0 / theta ** (jnp.arange(0, K, 2, dtype=jnp.float32) / K)
    angle_TK = jnp.concatenate([jnp.outer(jnp.arange(T), inv_freq)] * 2, axis=-1)
    cos, sin = jnp.cos(angle_TK)[:, None, :], jnp.sin(angle_TK)[:, None, :]
    x1, x2 = jnp.split(x_BTHK, 2, axis=-1)
    rotated = jnp.concatenate([-x2, x1], axis=-1)
    return (x_BTHK * cos + rotated * sin).astype(x_BTHK.dtype)


def _project(params, x_BTD, name, heads, head_dim):
    y = dense(x_BTD, params[f"W_{name}"])
    if f"b_{name}" in params:
        y = y + params[f"b_{name}"]
    return y.reshape(x_BTD.shape[:2] + (heads, head_dim))


def attention(params, x_BTD, cfg, mask_BT=None):
    """softmax(Q Kᵀ / √d_head) V, then W_o (Vaswani et al. 2017, eq. 1); ``mask_BT`` marks real (non-pad) keys."""
    q_BTHK = _project(params, x_BTD, "q", cfg.n_heads, cfg.head_dim)
    k_BTGK = _project(params, x_BTD, "k", cfg.kv_heads, cfg.head_dim)
    v_BTGK = _project(params, x_BTD, "v", cfg.kv_heads, cfg.head_dim)
    if cfg.positional == "rope":
        q_BTHK, k_BTGK = rope(q_BTHK, cfg.rope_theta), rope(k_BTGK, cfg.rope_theta)
    key_mask = None if mask_BT is None else mask_BT[:, None, None, :].astype(bool)
    o_BTHK = jax.nn.dot_product_attention(q_BTHK, k_BTGK, v_BTGK, mask=key_mask, is_causal=cfg.causal)
    out_BTD = dense(o_BTHK.reshape(x_BTD.shape[:2] + (-1,)), params["W_o"])
    return out_BTD + params["b_o"] if "b_o" in params else out_BTD
