"""FFN updates as sums of token-promoting sub-updates (Geva et al. 2022).

The FFN output is ``Σ_i m_i v_i`` (eq. 3); each term is a sub-update whose effect on the vocabulary is
``m_i (v_i·E)``: it promotes the tokens at the top of ``v_i·E`` (§3). Sub-updates are ranked per position by
``m_i ‖v_i‖`` (§4.1, signed, largest first). Implemented here:

* ``top_sub_updates``: the top-n sub-updates at each position of a batch (which value, its score);
* ``dominance``: over a streamed corpus, how often each value is among a position's top-n sub-updates;
* ``promoted_tokens``: the top tokens of every value's projection (memories.value_top_tokens);
* ``cluster_values``: spherical k-means on the values of a layer (cosine, Lloyd iterations in JAX), each
  cluster described by its centroid's projection and its members' most common top tokens.
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from analysis.memories import value_top_tokens, value_vectors
from analysis.stream import stream
from ffnkv.model import forward
from ffnkv.readout import logit_lens

promoted_tokens = value_top_tokens


def sub_update_scores(m_LBTF, V_LFD):
    """``m_i ‖v_i‖`` for every sub-update (Geva et al. 2022, §4.1): ``[L, B, T, F]``."""
    return m_LBTF * jnp.linalg.norm(V_LFD, axis=-1)[:, None, None, :]


@functools.partial(jax.jit, static_argnames=("cfg", "n"))
def top_sub_updates(params, cfg, tokens_BT, n: int = 10):
    """The ``n`` highest-scoring sub-updates per position: values' indices and scores, ``[L, B, T, n]`` each."""
    m_LBTF = forward(params, tokens_BT, cfg).acts.ffn.astype(jnp.float32)
    scores, index = jax.lax.top_k(sub_update_scores(m_LBTF, value_vectors(params, cfg)), n)
    return {"index": index, "score": scores}


@functools.partial(jax.jit, static_argnames=("cfg", "n"), donate_argnums=(0,))
def _dominance_step(state, params, tokens_BT, mask_BT, offset, cfg, n):
    top = top_sub_updates(params, cfg, tokens_BT, n)["index"]
    hits_LF = jax.vmap(lambda idx: jnp.zeros(cfg.width).at[idx.reshape(-1)].add(
        jnp.broadcast_to(mask_BT[..., None], idx.shape).reshape(-1).astype(jnp.float32)))(top)
    block = (offset // tokens_BT.size) % state["blocks"].shape[0]
    return {"count": state["count"] + hits_LF, "blocks": state["blocks"].at[block].add(hits_LF),
            "n": state["n"].at[block].add(mask_BT.sum().astype(jnp.float32))}


def dominance_blocks(params, cfg, tokens_NT, mask_NT=None, n: int = 10, batch_size: int = 32, progress=False,
                     n_blocks: int = 64) -> dict:
    """``fraction`` ``[L, F]``: the fraction of positions at which each value is among the top-``n`` sub-updates;
    ``blocks`` ``[n_blocks, L, F]`` and ``n`` ``[n_blocks]``: the same counts and the positions per block of token
    rows (chunk i goes to block i mod ``n_blocks``; rows of one sequence stay together), the items of the
    verdicts' bootstrap intervals."""
    value_vectors(params, cfg)
    state = {"count": jnp.zeros((cfg.n_layers, cfg.width)), "blocks": jnp.zeros((n_blocks, cfg.n_layers, cfg.width)),
             "n": jnp.zeros(n_blocks)}
    step = lambda s, tok, mask, off: _dominance_step(s, params, tok, mask, off, cfg, n)
    out = stream(step, state, tokens_NT, mask_NT, batch_size, progress)
    n_pos = int(np.asarray(mask_NT).sum()) if mask_NT is not None else int(np.prod(tokens_NT.shape))
    return {"fraction": np.asarray(out["count"]) / max(n_pos, 1), "blocks": np.asarray(out["blocks"]),
            "n": np.asarray(out["n"])}


def dominance(params, cfg, tokens_NT, mask_NT=None, n: int = 10, batch_size: int = 32, progress=False):
    """``[L, F]``: the fraction of positions at which each value is among the top-``n`` sub-updates."""
    return dominance_blocks(params, cfg, tokens_NT, mask_NT, n, batch_size, progress)["fraction"]


@functools.partial(jax.jit, static_argnames=("n_clusters", "iters"))
def kmeans(x_ND, key, n_clusters: int, iters: int = 50):
    """Spherical k-means (cosine): rows normalised, centroids the normalised member means, k-means++ seeding
    (Arthur & Vassilvitskii 2007, with ‖a − b‖² = 2(1 − cos)); returns ``(assign_N, C_KD)``."""
    x = x_ND / (jnp.linalg.norm(x_ND, axis=-1, keepdims=True) + 1e-9)
    keys = jax.random.split(key, n_clusters)
    first = jax.random.randint(keys[0], (), 0, x.shape[0])

    def seed(i, carry):
        c_KD, dist_N = carry
        p = jnp.maximum(dist_N, 0.0) + 1e-12
        pick = jax.random.choice(keys[i], x.shape[0], p=p / p.sum())
        return c_KD.at[i].set(x[pick]), jnp.minimum(dist_N, 1.0 - x @ x[pick])

    init = (jnp.zeros((n_clusters, x.shape[1]), x.dtype).at[0].set(x[first]), 1.0 - x @ x[first])
    centroids = jax.lax.fori_loop(1, n_clusters, seed, init)[0]

    def lloyd(_, c_KD):
        assign = jnp.argmax(x @ c_KD.T, -1)
        one_hot = jax.nn.one_hot(assign, n_clusters, dtype=x.dtype)
        sums = one_hot.T @ x
        new = sums / (jnp.linalg.norm(sums, axis=-1, keepdims=True) + 1e-9)
        return jnp.where(one_hot.sum(0)[:, None] > 0, new, c_KD)

    centroids = jax.lax.fori_loop(0, iters, lloyd, centroids)
    return jnp.argmax(x @ centroids.T, -1), centroids


def cluster_values(params, cfg, layer: int, n_clusters: int, key, final_norm: bool = False, k: int = 10):
    """Clusters of layer ``layer``'s values: sizes, and per cluster the centroid's top tokens and its members'
    most common top-1 tokens (with counts)."""
    V_FD = value_vectors(params, cfg)[layer]
    n_clusters = min(n_clusters, V_FD.shape[0])
    assign, centroids = kmeans(V_FD, key, n_clusters)
    norms = jnp.linalg.norm(V_FD, axis=-1).mean()
    centroid_top = np.asarray(jax.lax.top_k(logit_lens(params, centroids * norms, cfg, final_norm), k)[1])
    member_top1 = np.asarray(jnp.argmax(logit_lens(params, V_FD, cfg, final_norm), -1))
    assign = np.asarray(assign)
    clusters = []
    for c in range(n_clusters):
        members = np.flatnonzero(assign == c)
        tokens, counts = np.unique(member_top1[members], return_counts=True)
        order = np.argsort(-counts)[:k]
        clusters.append({"size": int(len(members)), "centroid_top_tokens": centroid_top[c].tolist(),
                         "member_top1": tokens[order].tolist(), "member_top1_counts": counts[order].tolist(),
                         "members": members.tolist()})
    return clusters
