"""Forward from (layer l, position t) over a cached prefix: recompute only what an intervention can change.

In a causal transformer an intervention on the input of block l at position t changes nothing at positions < t
and nothing in blocks < l. So given one run's *cache* — every block's keys and values at every position and
every block's input residual — the run with the intervention is: take the cached residual entering block l at
positions t, t + 1, …, change it, and apply blocks l … L−1 to those positions only, each attending over the
cached keys/values of positions < t (its own keys/values at positions ≥ t are recomputed). Integrated gradients
at the prediction position (one position, blocks ≥ l), a causal-tracing cell (t, l) and an activation-patching
cell cost a fraction of a full forward. ``forward_from`` reuses ffnkv.model.block unchanged;
``forward_entering`` runs rows that enter at different blocks in one pass (integrated gradients of every layer);
``entering_sweep`` maps over items that enter at different blocks in chunks of one entry block each. None of
them holds a per-layer copy of anything: the programs (and their compile time) do not grow with depth.

Bidirectional models see every position, so for them a suffix must cover the whole sequence (start 0); the
saving over layers remains.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from ffnkv import sharding
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


def _rows_at(tree, j):
    return jax.tree.map(lambda a: jax.lax.dynamic_index_in_dim(a, j, 0, keepdims=False), tree)


def forward_from(params, cache, cfg, layer, start, x_BSD, hooks=None, query=None):
    """Blocks ``layer … L−1`` applied to positions ``start … start + S − 1`` whose input to block ``layer`` is
    ``x_BSD``; returns the residual leaving the last block ``[B, S, D]`` (``ffnkv.model.unembed`` reads it).

    ``cache``: a :class:`Cache`, or a function ``j -> (k, v)`` giving block j's cached keys/values
    ``[B, T, G, d_head]`` (read inside the block's step, so a sweep never copies a whole cache per row).
    ``hooks``: per-layer rows as in ``forward`` (leading axis L) with the position axis running over the S
    suffix positions, or a function ``j -> Hooks`` of block j. ``layer`` may be a Python int (blocks < layer are
    not in the program) or traced: one scan over every block, those below ``layer`` skipped by ``lax.cond`` —
    a real branch when ``layer`` is the same for every row (not batched; :func:`entering_sweep`). With
    ``layer = 0``, ``start = 0`` and ``x_BSD`` the embeddings this equals ``forward`` (tests hold it).

    ``query`` (an index into the suffix, traced allowed): only that position's output is wanted, ``[B, 1, D]``.
    The last block then computes the keys and values of every suffix position (what its query attends over) but
    its attention output, FFN and hooks at ``query`` alone: nothing else of the last block reaches it.
    """
    lazy = callable(cache)
    kv = cache if lazy else (lambda j: (cache.k[j], cache.v[j]))
    if not cfg.causal and x_BSD.shape[1] != (kv(0)[0] if lazy else cache.k[0]).shape[1]:
        raise FfnkvError("a bidirectional model sees every position, so forward_from needs the whole sequence "
                         "(start 0, all positions).")
    params = _cast(params, cfg)
    if not callable(hooks):
        rows = Hooks() if hooks is None else hooks.replace(embed_add=None)
        hooks = lambda j: _rows_at(rows, j)
    dtype = jnp.dtype(cfg.dtype)
    has_ffn_L = jnp.asarray(cfg.has_ffn_L()).astype(dtype)
    mask = None if lazy else cache.mask
    L, S = cfg.n_layers, x_BSD.shape[1]

    def apply(j, x):
        k, v = kv(j)
        return block(_rows_at(params["blocks"], j), x, has_ffn_L[j], hooks(j), cfg, mask, (k, v, start))[0]

    def at_query(x):
        return jax.lax.dynamic_slice_in_dim(x, query, 1, 1)

    def last(x):  # block L − 1 for the query position only, over every suffix position's keys and values
        p, (k, v) = _rows_at(params["blocks"], L - 1), kv(L - 1)
        k_new, v_new = keys_values(p["attn"], norm(p["ln1"], x, cfg) if cfg.prenorm else x, cfg, start)
        k = jax.lax.dynamic_update_slice_in_dim(k, k_new.astype(k.dtype), start, 1)
        v = jax.lax.dynamic_update_slice_in_dim(v, v_new.astype(v.dtype), start, 1)
        h = jax.tree.map(lambda a: at_query(a) if a.ndim >= 2 and a.shape[1] == S else a, hooks(L - 1))
        return block(p, at_query(x), has_ffn_L[L - 1], h, cfg, mask, (k, v, start + query))[0]

    stop = L if query is None else L - 1
    x = x_BSD.astype(dtype)
    if isinstance(layer, int):
        def step(x, j):
            return apply(j, x), None
        x = jax.lax.scan(step, x, jnp.arange(layer, stop))[0] if layer < stop else x
        return x if query is None else (last(x) if layer < L else at_query(x))

    def skip(j, x):
        return x

    def step(x, j):
        return jax.lax.cond(j >= layer, apply, skip, j, x), None
    x = jax.lax.scan(step, x, jnp.arange(stop))[0] if stop else x
    return x if query is None else jax.lax.cond(layer < L, last, at_query, x)


ENTERING_STAGES = 4


def stage_bounds(n_layers: int, stages: int = ENTERING_STAGES) -> list[int]:
    """``min(stages, L) + 1`` block boundaries ``0 = b_0 < … < b_P = L`` cutting the layers into near-equal stages."""
    P = max(1, min(stages, n_layers))
    return [round(i * n_layers / P) for i in range(P + 1)]


def forward_entering(params, cache, cfg, start, x_LRSD, ffn_scale_LRSF=None, stages: int = ENTERING_STAGES):
    """Rows entering at every block in one pass: group l (R rows whose input to block l at positions start …
    start + S − 1 is ``x_LRSD[l]``) runs through blocks l … L−1 over the cached prefix, its FFN coefficients
    scaled by ``ffn_scale_LRSF[l]`` in block l (its entry block) only. Returns the residual leaving the last
    block ``[L, R, S, D]``.

    The layers are cut into ``stages`` (:func:`stage_bounds`, a constant, so the program does not grow with
    depth): stage [b, b′) is one ``lax.scan`` over its blocks applied to the groups 0 … b′ − 1 together; a group
    joining inside the stage is held at its input until its entry block. The FLOPs are those of L separate
    :func:`forward_from` calls times at most (P + 1) / P (exactly those when L ≤ P), in larger matmuls
    (integrated gradients of every layer at once)."""
    params = _cast(params, cfg)
    dtype = jnp.dtype(cfg.dtype)
    L, R, S, D = x_LRSD.shape
    scale_LRSF = (jnp.ones((L, R, S, cfg.width), jnp.float32) if ffn_scale_LRSF is None else
                  jnp.broadcast_to(ffn_scale_LRSF, (L, R, S, cfg.width)))
    has_ffn_L = jnp.asarray(cfg.has_ffn_L()).astype(dtype)
    x_XSD = jnp.zeros((0, S, D), dtype)
    s_XSF = jnp.zeros((0, S, cfg.width), scale_LRSF.dtype)
    bounds = stage_bounds(L, stages)
    for lo, hi in zip(bounds[:-1], bounds[1:]):
        x_XSD = jnp.concatenate([x_XSD, x_LRSD[lo:hi].reshape(-1, S, D).astype(dtype)])
        s_XSF = jnp.concatenate([s_XSF, scale_LRSF[lo:hi].reshape(-1, S, cfg.width)])
        entry_X = jnp.asarray(np.repeat(np.arange(hi), R))

        def step(x_XSD, j, s_XSF=s_XSF, entry_X=entry_X):
            p, kv = _rows_at(params["blocks"], j), (cache.k[j], cache.v[j], start)
            scale_XSF = jnp.where((entry_X == j)[:, None, None], s_XSF, 1.0)

            def one(x_SD, s_SF):
                return block(p, x_SD[None], has_ffn_L[j], Hooks(ffn_scale=s_SF[None]), cfg, cache.mask, kv)[0][0]

            y_XSD = jax.vmap(one)(x_XSD, scale_XSF)
            return jnp.where((entry_X <= j)[:, None, None], y_XSD, x_XSD), None

        x_XSD = jax.lax.scan(step, x_XSD, jnp.arange(lo, hi))[0]
    return x_XSD.reshape(L, R, S, D)


def entering_sweep(fn, xs, first_X, chunk: int, mesh=None, consts=()):
    """``fn(*consts, first, x)`` for every item ``x`` of ``xs`` (host arrays, leading axis X), where ``first_X``
    (host ints [X]) is the block each item's rows enter at: items are cut into chunks of ``chunk`` items with
    one ``first``, so ``first`` reaches ``fn`` traced but the same for every row of the chunk and
    :func:`forward_from`'s ``lax.cond`` skips the blocks below it as a real branch. One program whatever the
    depth, with the FLOPs of one program per entry block. Each group is padded to whole chunks (a multiple of
    the "data" size of ``mesh``) with repeats of its first item (computed and dropped); each device gets an equal
    share of every group, in the same order. Returns the results in item order (leading axis X)."""
    first_X = np.asarray(first_X)
    groups = [np.flatnonzero(first_X == f) for f in np.unique(first_X)]
    chunk = max(1, min(int(chunk), max(len(g) for g in groups)))
    d = 1 if mesh is None else mesh.shape["data"]
    order, label = [], []  # per group [d, chunks per device, chunk]: every device meets the groups in one order,
    for g in groups:       # so a branch holding collectives (FSDP weights) runs on all of them at once
        g = np.concatenate([g, np.repeat(g[:1], -len(g) % (chunk * d))])
        order.append(g.reshape(d, -1, chunk))
        label.append(np.full(order[-1].shape[:2], first_X[g[0]], np.int32))
    order_CK = np.concatenate(order, 1).reshape(-1, chunk)
    label_C = np.concatenate(label, 1).reshape(-1)
    chunks = (jnp.asarray(label_C), jax.tree.map(lambda a: jnp.asarray(np.asarray(a)[order_CK]), xs))

    def one_chunk(*args):
        *cs, (first, x_K) = args
        return jax.vmap(lambda x: fn(*cs, first, x))(x_K)

    out = sharding.sweep(one_chunk, chunks, mesh, None, tuple(consts))
    flat = order_CK.reshape(-1)
    where = np.empty(len(first_X), np.int64)
    where[flat[::-1]] = np.arange(len(flat))[::-1]  # the first slot of each item (its padding repeats are dropped)
    return jax.tree.map(lambda a: a.reshape((-1,) + a.shape[2:])[where], out)


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
