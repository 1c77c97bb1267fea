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


def _project_qkv(params, x_BTD, cfg):
    """Q, K and V ``[B, T, heads, d_head]`` from one matmul against ``[W_q | W_k | W_v]`` (one wide matmul runs
    faster on CPU than three narrow ones, and its input gradient is one matmul instead of three plus adds)."""
    W = jnp.concatenate([params["W_q"], params["W_k"], params["W_v"]], axis=1)
    y = dense(x_BTD, W)
    if "b_q" in params:
        y = y + jnp.concatenate([params["b_q"], params["b_k"], params["b_v"]])
    H, G, K = cfg.n_heads, cfg.kv_heads, cfg.head_dim
    q, k, v = jnp.split(y, [H * K, (H + G) * K], axis=-1)
    return (q.reshape(x_BTD.shape[:2] + (H, K)), k.reshape(x_BTD.shape[:2] + (G, K)),
            v.reshape(x_BTD.shape[:2] + (G, K)))


def keys_values(params, x_BTD, cfg, start=0):
    """The keys (rotated where ``positional == "rope"``) and values ``[B, T, G, d_head]`` of positions
    ``start, start + 1, …`` — what a cache of a prefix stores (ffnkv.prefix)."""
    k_BTGK = _project(params, x_BTD, "k", cfg.kv_heads, cfg.head_dim)
    v_BTGK = _project(params, x_BTD, "v", cfg.kv_heads, cfg.head_dim)
    return (rope(k_BTGK, cfg.rope_theta, start) if cfg.positional == "rope" else k_BTGK), v_BTGK


def _masked_value(dtype):
    """The score of a masked-out key: finite, as in ``jax.nn.dot_product_attention``, so a row with no visible key
    stays a (uniform) distribution instead of NaN."""
    return -0.7 * float(jnp.finfo(dtype).max)


def _heads_major(q_BTHK, k_BSGK, v_BSGK):
    """Query heads grouped by their key/value head, ``[B, G, H/G, T, K]`` (scaled by 1/√K), keys and values
    ``[B, G, S, K]``: the layout whose score matmuls need no further transposes."""
    B, T, H, K = q_BTHK.shape
    G = k_BSGK.shape[2]
    q_BGRTK = (q_BTHK * jnp.asarray(K ** -0.5, q_BTHK.dtype)).reshape(B, T, G, H // G, K).transpose(0, 2, 3, 1, 4)
    return q_BGRTK, k_BSGK.transpose(0, 2, 1, 3), v_BSGK.transpose(0, 2, 1, 3)


def _tokens_major(o_BGRTK):
    B, G, R, T, K = o_BGRTK.shape
    return o_BGRTK.transpose(0, 3, 1, 2, 4).reshape(B, T, G * R, K)


def _attend_heads(q_BGRTK, k_BGSK, v_BGSK, allowed=None, pattern=False):
    s_BGRTS = jnp.einsum("bgrtk,bgsk->bgrts", q_BGRTK, k_BGSK, preferred_element_type=jnp.float32)
    if allowed is not None:
        s_BGRTS = jnp.where(allowed, s_BGRTS, _masked_value(jnp.float32))
    p_BGRTS = jax.nn.softmax(s_BGRTS, axis=-1).astype(v_BGSK.dtype)
    o_BGRTK = jnp.einsum("bgrts,bgsk->bgrtk", p_BGRTS, v_BGSK)
    return (o_BGRTK, p_BGRTS) if pattern else o_BGRTK


def _pattern_heads(p_BGRTS):
    """Attention weights ``[B, H, T, S]`` in query-head order (head n = g · H/G + r, as :func:`_tokens_major`)."""
    B, G, R, T, S = p_BGRTS.shape
    return p_BGRTS.reshape(B, G * R, T, S)


def attend(q_BTHK, k_BSGK, v_BSGK, allowed=None, pattern=False):
    """``softmax(Q Kᵀ / √d_head) V`` (Vaswani et al. 2017, eq. 1) in head-major layout; ``allowed`` (broadcastable
    to ``[B, G, H/G, T, S]``) marks the keys each query may see. Grouped-query attention (Ainslie et al. 2023):
    query head n reads key/value head n // (H/G), as ``jax.nn.dot_product_attention`` does. Scores and softmax in
    float32; returns ``[B, T, H, d_head]`` in the values' dtype (``pattern=True``: also the weights
    ``[B, H, T, S]``)."""
    if not pattern:
        return _tokens_major(_attend_heads(*_heads_major(q_BTHK, k_BSGK, v_BSGK), allowed))
    o_BGRTK, p_BGRTS = _attend_heads(*_heads_major(q_BTHK, k_BSGK, v_BSGK), allowed, pattern=True)
    return _tokens_major(o_BGRTK), _pattern_heads(p_BGRTS)


def causal_attention(q_BTHK, k_BTGK, v_BTGK, key_mask_BT=None, block: int | None = None, pattern=False):
    """Causal :func:`attend` with the queries split into blocks of ``block`` positions, each scored only
    against the keys up to its last position: the score matrix above the block diagonal is never computed
    (for 4 blocks, 10/16 of the full T×T). Same numbers as one masked full-matrix pass. ``block`` defaults to
    a quarter of T (at least 64). ``pattern=True``: also the weights ``[B, H, T, T]`` (zero above the diagonal)."""
    T = q_BTHK.shape[1]
    block = block or max(64, -(-T // 4))
    q_BGRTK, k_BGSK, v_BGSK = _heads_major(q_BTHK, k_BTGK, v_BTGK)
    outs, weights = [], []
    for t0 in range(0, T, block):
        t1 = min(t0 + block, T)
        allowed_TS = jnp.arange(t1)[None, :] <= jnp.arange(t0, t1)[:, None]
        if key_mask_BT is not None:
            allowed_TS = allowed_TS & key_mask_BT[:, None, None, None, :t1].astype(bool)
        out = _attend_heads(q_BGRTK[:, :, :, t0:t1], k_BGSK[:, :, :t1], v_BGSK[:, :, :t1], allowed_TS, pattern)
        if pattern:
            out, p_BGRTS = out
            weights.append(jnp.pad(p_BGRTS, [(0, 0)] * 4 + [(0, T - t1)]))
        outs.append(out)
    o_BTHK = _tokens_major(outs[0] if len(outs) == 1 else jnp.concatenate(outs, axis=3))
    return (o_BTHK, _pattern_heads(jnp.concatenate(weights, axis=3))) if pattern else o_BTHK


def mix(params, x_BTD, cfg, mask_BT=None, kv_cache=None, pattern=False):
    """The heads' mixed values ``z`` ``[B, T, H, d_head]`` = softmax(Q Kᵀ / √d_head) V, before W_o; with
    ``pattern=True`` also the attention weights ``[B, H, T, S]``. Arguments as :func:`attention`."""
    start = 0 if kv_cache is None else kv_cache[2]
    q_BTHK, k_BTGK, v_BTGK = _project_qkv(params, x_BTD, cfg)
    if cfg.positional == "rope":
        q_BTHK, k_BTGK = rope(q_BTHK, cfg.rope_theta, start), rope(k_BTGK, cfg.rope_theta, start)
    if kv_cache is None and cfg.causal:
        return causal_attention(q_BTHK, k_BTGK, v_BTGK, mask_BT, pattern=pattern)
    if kv_cache is None:
        allowed = None if mask_BT is None else mask_BT[:, None, None, None, :].astype(bool)
        return attend(q_BTHK, k_BTGK, v_BTGK, allowed, pattern)
    k_BSGK = jax.lax.dynamic_update_slice_in_dim(kv_cache[0], k_BTGK.astype(kv_cache[0].dtype), start, 1)
    v_BSGK = jax.lax.dynamic_update_slice_in_dim(kv_cache[1], v_BTGK.astype(kv_cache[1].dtype), start, 1)
    S = k_BSGK.shape[1]
    allowed = (jnp.arange(S)[None, :] <= start + jnp.arange(x_BTD.shape[1])[:, None]) | (not cfg.causal)
    if mask_BT is not None:
        allowed = allowed & mask_BT[:, None, None, None, :].astype(bool)
    return attend(q_BTHK, k_BSGK, v_BSGK, allowed, pattern)


def project_out(params, z_BTHK):
    """``z W_o + b_o`` ``[B, T, D]``: the attention output from the heads' mixed values."""
    out_BTD = dense(z_BTHK.reshape(z_BTHK.shape[:2] + (-1,)), params["W_o"])
    return out_BTD + params["b_o"] if "b_o" in params else out_BTD


def head_outputs(params, z_BTHK):
    """Each head's share of the attention output, ``z_h · W_o[h]`` ``[B, T, H, D]`` (W_o's rows h·d_head …
    (h + 1)·d_head): summed over H, plus ``b_o``, it is :func:`project_out` (Elhage et al. 2021, §2.2)."""
    H, K = z_BTHK.shape[2:]
    W_HKD = params["W_o"].reshape(H, K, -1).astype(z_BTHK.dtype)
    return jnp.einsum("bthk,hkd->bthd", z_BTHK, W_HKD)


def attention(params, x_BTD, cfg, mask_BT=None, kv_cache=None):
    """softmax(Q Kᵀ / √d_head) V, then W_o (Vaswani et al. 2017, eq. 1); ``mask_BT`` marks real (non-pad) keys.

    ``kv_cache = (k_BSGK, v_BSGK, start)``: ``x_BTD`` holds positions ``start … start + T − 1`` of a longer
    sequence whose keys/values at every position S are cached; the new ones overwrite theirs and the queries
    attend over all S (``mask_BT`` is then ``[B, S]``; causal models see keys up to their own position).
    """
    return project_out(params, mix(params, x_BTD, cfg, mask_BT, kv_cache))
