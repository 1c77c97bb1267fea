"""init_params and forward: the whole transformer, one scanned block, interventions as data."""
from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from ffnkv import ffn as ffn_lib
from ffnkv.attention import attention, head_outputs, init_attention, mix, project_out
from ffnkv.errors import FfnkvError
from ffnkv.hooks import Acts, Hooks, apply_heads, apply_site
from ffnkv.norm import init_norm, norm
from ffnkv.readout import unembed


class Output(NamedTuple):
    logits: jax.Array  # [B, T, V], float32
    acts: Acts


def init_params(key, cfg) -> dict:
    """Parameters as a pytree; every block leaf is stacked on a leading layer axis L."""
    k_tok, k_pos, k_blocks, k_out = jax.random.split(key, 4)

    def init_block(k):
        k_attn, k_ffn = jax.random.split(k)
        return {"ln1": init_norm(cfg), "attn": init_attention(k_attn, cfg), "ln2": init_norm(cfg),
                "ffn": ffn_lib.init_ffn(k_ffn, cfg)}

    blocks = jax.vmap(init_block)(jax.random.split(k_blocks, cfg.n_layers))
    has_ffn_L = jnp.asarray(cfg.has_ffn_L())
    blocks["ffn"] = jax.tree.map(lambda w: w * has_ffn_L.reshape((-1,) + (1,) * (w.ndim - 1)), blocks["ffn"])
    params = {"embed": {"tok": 0.02 * jax.random.normal(k_tok, (cfg.vocab_size, cfg.d_model))}, "blocks": blocks}
    if cfg.positional == "learned":
        params["embed"]["pos"] = 0.02 * jax.random.normal(k_pos, (cfg.max_len, cfg.d_model))
    if cfg.embed_norm:
        params["embed_norm"] = init_norm(cfg)
    if cfg.prenorm:
        params["final_norm"] = init_norm(cfg)
    if not cfg.tie_embeddings:
        params["unembed"] = jax.nn.initializers.lecun_normal()(k_out, (cfg.d_model, cfg.vocab_size))
    return params


def _attention_heads(p, h_BTD, hooks: Hooks, cfg, mask_BT, kv_cache, capture: bool):
    """The attention output with the head hooks applied as ``attn + Σ_h (edited_h − z_h W_o[h])`` (ffnkv.hooks),
    the edited head outputs ``[B, T, H, D]`` and, when ``capture``, the pattern ``[B, H, T, S]`` (else None)."""
    z_BTHK = mix(p, h_BTD, cfg, mask_BT, kv_cache, pattern=capture)
    z_BTHK, pattern_BHTS = z_BTHK if capture else (z_BTHK, None)
    attn_BTD = project_out(p, z_BTHK)
    head_BTHD = head_outputs(p, z_BTHK)
    if hooks.has_heads():
        edited_BTHD = apply_heads(head_BTHD, hooks)
        attn_BTD = attn_BTD + (edited_BTHD - head_BTHD).sum(axis=2)
        head_BTHD = edited_BTHD
    return attn_BTD, head_BTHD, pattern_BHTS


def block(p, x_BTD, has_ffn, hooks: Hooks, cfg, mask_BT=None, kv_cache=None, capture_heads: bool = False):
    """One transformer block (pre- or post-norm); returns the block output and its Acts row.
    ``kv_cache``: see ffnkv.attention.attention (a suffix of positions after a cached prefix). Per-head outputs
    are computed only when a head hook is set or ``capture_heads`` (which also fills ``attn_pattern``/``head_out``)."""
    h_BTD = norm(p["ln1"], x_BTD, cfg) if cfg.prenorm else x_BTD
    pattern, heads = None, None
    if capture_heads or hooks.has_heads():
        attn_BTD, heads, pattern = _attention_heads(p["attn"], h_BTD, hooks, cfg, mask_BT, kv_cache, capture_heads)
        heads = heads if capture_heads else None
    else:
        attn_BTD = attention(p["attn"], h_BTD, cfg, mask_BT, kv_cache)
    attn_BTD = apply_site(attn_BTD, hooks, "attn_out")
    mid_BTD = x_BTD + attn_BTD if cfg.prenorm else norm(p["ln1"], x_BTD + attn_BTD, cfg)
    h_BTD = norm(p["ln2"], mid_BTD, cfg) if cfg.prenorm else mid_BTD
    m_BTF = apply_site(ffn_lib.coefficients(p["ffn"], h_BTD, cfg) * has_ffn, hooks, "ffn")
    mlp_BTD = apply_site(ffn_lib.values(p["ffn"], m_BTF, h_BTD, cfg) * has_ffn, hooks, "mlp_out")
    out_BTD = mid_BTD + mlp_BTD if cfg.prenorm else norm(p["ln2"], mid_BTD + mlp_BTD, cfg)
    if hooks.resid_add is not None:
        out_BTD = out_BTD + hooks.resid_add
    out_BTD = apply_site(out_BTD, hooks, "resid_post")
    return out_BTD, Acts(x_BTD, attn_BTD, mid_BTD, m_BTF, mlp_BTD, out_BTD, pattern, heads)


def embed(params, tokens_BT, cfg, hooks: Hooks | None = None):
    x_BTD = params["embed"]["tok"][tokens_BT]
    if cfg.positional == "learned":
        x_BTD = x_BTD + params["embed"]["pos"][: tokens_BT.shape[1]]
    if hooks is not None and hooks.embed_add is not None:
        x_BTD = x_BTD + hooks.embed_add
    return norm(params["embed_norm"], x_BTD, cfg) if cfg.embed_norm else x_BTD


def forward(params, tokens_BT, cfg, hooks: Hooks | None = None, mask_BT=None, *, unroll: bool = False,
            capture_heads: bool = False) -> Output:
    """Logits ``[B, T, V]`` and every block's activations; pure, so jit/vmap/grad apply.

    ``hooks`` holds interventions as arrays (see ffnkv.hooks); ``mask_BT`` marks real tokens for padded
    bidirectional batches. With ``hooks=None`` and identity hooks the logits are identical.
    ``capture_heads=True`` (static) also returns each head's attention pattern and output in ``out.acts``
    (``attn_pattern`` ``[L, B, H, T, T]``, ``head_out`` ``[L, B, T, H, D]``); off by default, as the pattern
    grows with T² and the default Acts costs nothing extra. The logits do not depend on it.
    ``unroll=True`` applies the blocks as straight-line code instead of a ``lax.scan`` (same numbers): XLA then
    keeps no stacked per-layer buffers and drops the Acts nobody reads, which makes training steps much faster
    on CPU; the scan (the default) compiles faster for deep models and big vmapped analyses.
    """
    if tokens_BT.ndim != 2:
        raise FfnkvError(f"tokens must have shape [batch, time], got shape {tokens_BT.shape}.")
    if cfg.positional == "learned" and tokens_BT.shape[1] > cfg.max_len:
        raise FfnkvError(f"sequence length {tokens_BT.shape[1]} exceeds max_len={cfg.max_len}; shorten the input.")
    dtype = jnp.dtype(cfg.dtype)
    params = jax.tree.map(lambda w: w.astype(dtype), params)
    hooks = Hooks() if hooks is None else hooks
    x_BTD = embed(params, tokens_BT, cfg, hooks)
    layer_hooks = hooks.replace(embed_add=None)
    if unroll:
        rows = []
        for layer, has_ffn in enumerate(cfg.has_ffn_L()):
            at = lambda tree: jax.tree.map(lambda a: a[layer], tree)
            x_BTD, acts = block(at(params["blocks"]), x_BTD, dtype.type(has_ffn), at(layer_hooks), cfg, mask_BT,
                                capture_heads=capture_heads)
            rows.append(acts)
        acts = jax.tree.map(lambda *xs: jnp.stack(xs), *rows)
    else:
        def step(x_BTD, xs):
            p, has_ffn, layer_hooks = xs
            return block(p, x_BTD, has_ffn.astype(dtype), layer_hooks, cfg, mask_BT, capture_heads=capture_heads)

        has_ffn_L = jnp.asarray(cfg.has_ffn_L())
        x_BTD, acts = jax.lax.scan(step, x_BTD, (params["blocks"], has_ffn_L, layer_hooks))
    return Output(unembed(params, x_BTD, cfg), acts)
