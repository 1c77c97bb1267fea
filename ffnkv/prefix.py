"""Forward from (layer l, position t) over a cached prefix: recompute only what an intervention can change.

In a causal transformer an intervention on the input of block l at position t changes nothing at positions < t
and nothing in blocks < l. So given one run's *cache* — every block's keys and values at every position and
every block's input residual — the run with the intervention is: take the cached residual entering block l at
positions t, t + 1, …, change it, and apply blocks l … L−1 to those positions only, each attending over the
cached keys/values of positions < t (its own keys/values at positions ≥ t are recomputed). Integrated gradients
at the prediction position (one position, blocks ≥ l), a causal-tracing cell (t, l) and an activation-patching
cell cost a fraction of a full forward. ``forward_from`` reuses ffnkv.model.block unchanged;
``forward_entering`` runs rows that enter at different blocks in one pass (integrated gradients of every layer).

Bidirectional models see every position, so for them a suffix must cover the whole sequence (start 0); the
saving over layers remains.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import struct

from ffnkv.attention import keys_values
from ffnkv.errors import FfnkvError
from ffnkv.hooks import Acts, Hooks
from ffnkv.model import Output, block, forward, norm, unembed


@struct.dataclass
class Cache:
    """One run's prefix: keys/values ``k``, ``v`` ``[L, B, T, G, d_head]`` and residuals ``resid`` ``[L + 1, B, T, D]``
    (``resid[l]`` enters block l, ``resid[L]`` leaves the last block); ``mask`` ``[B, T]`` marks real tokens."""

    k: jax.Array
    v: jax.Array
    resid: jax.Array
    mask: jax.Array | None = None


def _cast(params, cfg):
    dtype = jnp.dtype(cfg.dtype)
    return jax.tree.map(lambda w: w.astype(dtype), params)


def cache_from_acts(params, acts: Acts, cfg, mask_BT=None) -> Cache:
    """The cache of a run whose activations are ``acts`` (keys/values recomputed from each block's input)."""
    params = _cast(params, cfg)

    def kv(p, x_BTD):
        return keys_values(p["attn"], norm(p["ln1"], x_BTD, cfg) if cfg.prenorm else x_BTD, cfg)

    k, v = jax.vmap(kv)(params["blocks"], acts.resid_pre)
    return Cache(k, v, jnp.concatenate([acts.resid_pre, acts.resid_post[-1:]]), mask_BT)


def prefix_cache(params, tokens_BT, cfg, hooks: Hooks | None = None, mask_BT=None, unroll: bool = False
                 ) -> tuple[Output, Cache]:
    """``forward(params, tokens_BT, cfg, hooks, mask_BT, unroll=unroll)`` and its :class:`Cache`."""
    out = forward(params, tokens_BT, cfg, hooks, mask_BT, unroll=unroll)
    return out, cache_from_acts(params, out.acts, cfg, mask_BT)


def suffix(cache: Cache, layer, start, length: int):
    """The cached residual entering block ``layer`` at positions ``start … start + length − 1``: ``[B, length, D]``."""
    x_BTD = jax.lax.dynamic_index_in_dim(cache.resid, layer, 0, keepdims=False)
    return jax.lax.dynamic_slice_in_dim(x_BTD, start, length, 1)


def _rows(tree, first: int):
    return jax.tree.map(lambda a: a[first:], tree)


def forward_from(params, cache: Cache, cfg, layer, start, x_BSD, hooks: Hooks | None = None):
    """Blocks ``layer … L−1`` applied to positions ``start … start + S − 1`` whose input to block ``layer`` is
    ``x_BSD``; returns the residual leaving the last block ``[B, S, D]`` (``ffnkv.model.unembed`` reads it).

    ``hooks`` are per-layer rows as in ``forward`` (leading axis L) with the position axis running over the
    S suffix positions. ``layer`` may be a Python int (blocks < layer are not in the program) or traced (they
    are skipped by ``lax.cond``, which stays a branch when the layer is not batched). With ``layer = 0``,
    ``start = 0`` and ``x_BSD`` the embeddings this equals ``forward`` (tests hold it).
    """
    if not cfg.causal and x_BSD.shape[1] != cache.k.shape[2]:
        raise FfnkvError("a bidirectional model sees every position, so forward_from needs the whole sequence "
                         "(start 0, all positions).")
    params = _cast(params, cfg)
    hooks = Hooks() if hooks is None else hooks.replace(embed_add=None)
    dtype = jnp.dtype(cfg.dtype)
    xs = (jnp.arange(cfg.n_layers), params["blocks"], jnp.asarray(cfg.has_ffn_L()), cache.k, cache.v, hooks)

    def apply(p, has_ffn, k, v, layer_hooks, x):
        return block(p, x, has_ffn.astype(dtype), layer_hooks, cfg, cache.mask, (k, v, start))[0]

    if isinstance(layer, int):
        def step(x, row):
            return apply(*row[1:], x), None
        xs = _rows(xs, layer)
    else:
        def step(x, row):
            return jax.lax.cond(row[0] >= layer, lambda y: apply(*row[1:], y), lambda y: y, x), None
    return jax.lax.scan(step, x_BSD.astype(dtype), xs)[0]


def forward_entering(params, cache: Cache, cfg, start, x_LRSD, ffn_scale_LRSF=None):
    """Rows entering at every block in one pass: group l (R rows whose input to block l at positions start …
    start + S − 1 is ``x_LRSD[l]``) runs through blocks l … L−1 over the cached prefix, its FFN coefficients
    scaled by ``ffn_scale_LRSF[l]`` in block l (its entry block) only. Block j applies to groups 0 … j together,
    so the FLOPs are those of L separate :func:`forward_from` calls, in one program of larger matmuls (integrated
    gradients of every layer at once). Returns the residual leaving the last block ``[L, R, S, D]``."""
    params = _cast(params, cfg)
    L = x_LRSD.shape[0]
    x_XSD = x_LRSD[0].astype(jnp.dtype(cfg.dtype))
    ones_RSF = jnp.ones(x_LRSD.shape[1:3] + (cfg.width,), jnp.float32)
    scale_LRSF = jnp.broadcast_to(ones_RSF, (L,) + ones_RSF.shape) if ffn_scale_LRSF is None else ffn_scale_LRSF
    scale_XSF = scale_LRSF[0]
    for layer, has_ffn in enumerate(cfg.has_ffn_L()):
        if layer:
            x_XSD = jnp.concatenate([x_XSD, x_LRSD[layer].astype(x_XSD.dtype)])
            scale_XSF = jnp.concatenate([jnp.ones_like(scale_XSF), scale_LRSF[layer]])
        p = jax.tree.map(lambda a: a[layer], params["blocks"])
        kv = (cache.k[layer], cache.v[layer], start)

        def one(x_SD, s_SF, p=p, kv=kv, has_ffn=has_ffn):
            return block(p, x_SD[None], jnp.asarray(has_ffn, x_SD.dtype), Hooks(ffn_scale=s_SF[None]), cfg,
                         cache.mask, kv)[0][0]

        x_XSD = jax.vmap(one)(x_XSD, scale_XSF)
    return x_XSD.reshape(x_LRSD.shape[:2] + x_XSD.shape[1:])


def logits_at(params, x_BSD, cfg, index):
    """Float32 logits ``[B, V]`` of suffix position ``index`` (traced allowed) of ``forward_from``'s output."""
    return unembed(_cast(params, cfg), jax.lax.dynamic_index_in_dim(x_BSD, index, 1, keepdims=True), cfg)[:, 0]


def suffix_groups(T: int, causal: bool, buckets: int) -> dict[int, list[int]]:
    """Suffix length -> the positions t whose interventions recompute positions [T − length, T): lengths are
    multiples of ⌈T / buckets⌉ (static shapes, few programs); bidirectional models: the whole sequence."""
    if not causal:
        return {T: list(range(T))}
    q = -(-T // max(1, buckets))
    groups: dict[int, list[int]] = {}
    for t in range(T):
        groups.setdefault(min(T, -(-(T - t) // q) * q), []).append(t)
    return groups


def take(tree, n):
    """Item ``n`` (traced allowed) of every leaf of a stacked pytree (e.g. one prompt's Cache of a sweep)."""
    return jax.tree.map(lambda a: jax.lax.dynamic_index_in_dim(a, n, 0, keepdims=False), tree)
