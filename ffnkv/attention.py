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


def rope(x_BTHK, theta: float, start=0):
    """Rotary embedding (Su et al. 2021) in the rotate-half convention: pairs are (i, i + K/2); the positions
    are ``start, start + 1, …`` (``start`` > 0 for a suffix after a cached prefix)."""
    T, K = x_BTHK.shape[1], x_BTHK.shape[-1]
    inv_freq = 1.0 / theta ** (jnp.arange(0, K, 2, dtype=jnp.float32) / K)
    angle_TK = jnp.concatenate([jnp.outer(start + jnp.arange(T), inv_freq)] * 2, axis=-1)
    cos, sin = jnp.cos(angle_TK)[:, None, :], jnp.sin(angle_TK)[:, None, :]
    x1, x2 = jnp.split(x_BTHK, 2, axis=-1)
    rotated = jnp.concatenate([-x2, x1], axis=-1)
    return (x_BTHK * cos + rotated * sin).astype(x_BTHK.dtype)


def _project(params, x_BTD, name, heads, head_dim):
    y = dense(x_BTD, params[f"W_{name}"])
    if f"b_{name}" in params:
        y = y + params[f"b_{name}"]
    return y.reshape(x_BTD.shape[:2] + (heads, head_dim))


def keys_values(params, x_BTD, cfg, start=0):
    """The keys (rotated where ``positional == "rope"``) and values ``[B, T, G, d_head]`` of positions
    ``start, start + 1, …`` — what a cache of a prefix stores (ffnkv.prefix)."""
    k_BTGK = _project(params, x_BTD, "k", cfg.kv_heads, cfg.head_dim)
    v_BTGK = _project(params, x_BTD, "v", cfg.kv_heads, cfg.head_dim)
    return (rope(k_BTGK, cfg.rope_theta, start) if cfg.positional == "rope" else k_BTGK), v_BTGK


def attention(params, x_BTD, cfg, mask_BT=None, kv_cache=None):
    """softmax(Q Kᵀ / √d_head) V, then W_o (Vaswani et al. 2017, eq. 1); ``mask_BT`` marks real (non-pad) keys.

    ``kv_cache = (k_BSGK, v_BSGK, start)``: ``x_BTD`` holds positions ``start … start + T − 1`` of a longer
    sequence whose keys/values at every position S are cached; the new ones overwrite theirs and the queries
    attend over all S (``mask_BT`` is then ``[B, S]``; causal models see keys up to their own position).
    """
    q_BTHK = _project(params, x_BTD, "q", cfg.n_heads, cfg.head_dim)
    start = 0 if kv_cache is None else kv_cache[2]
    k_BTGK, v_BTGK = keys_values(params, x_BTD, cfg, start)
    if cfg.positional == "rope":
        q_BTHK = rope(q_BTHK, cfg.rope_theta, start)
    key_mask = None if mask_BT is None else mask_BT[:, None, None, :].astype(bool)
    if kv_cache is None:
        o_BTHK = jax.nn.dot_product_attention(q_BTHK, k_BTGK, v_BTGK, mask=key_mask, is_causal=cfg.causal)
    else:
        k_BSGK = jax.lax.dynamic_update_slice_in_dim(kv_cache[0], k_BTGK.astype(kv_cache[0].dtype), start, 1)
        v_BSGK = jax.lax.dynamic_update_slice_in_dim(kv_cache[1], v_BTGK.astype(kv_cache[1].dtype), start, 1)
        S = k_BSGK.shape[1]
        seen_TS = (jnp.arange(S)[None, :] <= start + jnp.arange(x_BTD.shape[1])[:, None]) | (not cfg.causal)
        mask = seen_TS[None, None] if key_mask is None else seen_TS[None, None] & key_mask
        o_BTHK = jax.nn.dot_product_attention(q_BTHK, k_BSGK, v_BSGK, mask=mask)
    out_BTD = dense(o_BTHK.reshape(x_BTD.shape[:2] + (-1,)), params["W_o"])
    return out_BTD + params["b_o"] if "b_o" in params else out_BTD
