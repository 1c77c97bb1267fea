"""Necessity of each layer's FFN for each fact: the drop in p(answer) when that layer's memory coefficients are
mean-ablated (a causal ground truth for where recall depends; the layer-level form of the mean ablation of
``analysis.ablation``, as used by Hase et al. 2023's comparison of localisation with editing).

For layer l and prompt n: ``drop[l, n] = p(o | x_n) − p(o | x_n, m_l ← E[m_l])``, where ``m_l`` are layer l's
coefficients at every position and ``E[m_l]`` ``[F]`` is each neuron's mean over the positions of a reference
corpus (:func:`mean_coefficients`). Every layer is one row of a hook array, so the sweep over layers is one
compiled program (``lax.map`` over layers, all prompts of a chunk at once); the ablation values are data, so a
new corpus mean compiles nothing.
"""
from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from ffnkv.hooks import Hooks
from ffnkv.model import forward


@partial(jax.jit, static_argnames=("cfg",))
def mean_coefficients(params, tokens_NT, mask_NT, cfg):
    """``E[m]`` ``[L, F]``: each neuron's mean coefficient over the positions where ``mask_NT`` is true."""
    m_LNTF = forward(params, tokens_NT, cfg).acts.ffn
    w_NT = mask_NT.astype(jnp.float32)
    return jnp.einsum("lntf,nt->lf", m_LNTF, w_NT) / jnp.maximum(w_NT.sum(), 1.0)


def mean_over_batches(params, batches, cfg):
    """``E[m]`` ``[L, F]`` over every unmasked position of ``batches`` (``(tokens, mask)`` pairs): each batch's
    :func:`mean_coefficients` weighted by its positions; ``None`` when no position is unmasked."""
    total, n = None, 0.0
    for tokens_NT, mask_NT in batches:
        w = float(np.asarray(mask_NT).sum())
        if w:
            m_LF = np.asarray(mean_coefficients(params, jnp.asarray(tokens_NT), jnp.asarray(mask_NT), cfg)) * w
            total, n = (m_LF if total is None else total + m_LF), n + w
    return None if total is None else total / n


def _answer_prob(params, cfg, tokens_NT, pos_N, gold_N, hooks):
    logits_NV = forward(params, tokens_NT, cfg, hooks).logits[jnp.arange(tokens_NT.shape[0]), pos_N]
    return jax.nn.softmax(logits_NV, -1)[jnp.arange(tokens_NT.shape[0]), gold_N]


@partial(jax.jit, static_argnames=("cfg", "batch_size"))
def necessity_impl(params, tokens_NT, pos_N, gold_N, mean_LF, cfg, batch_size: int = 1):
    """(``p_clean`` [N], ``p_ablated`` [L, N]) of the module docstring; layers run ``batch_size`` at a time."""
    L = cfg.n_layers

    def ablate(layer):
        mask_L111 = (jnp.arange(L) == layer)[:, None, None, None]
        hooks = Hooks(ffn_patch_mask=mask_L111, ffn_patch_value=mean_LF[:, None, None, :])
        return _answer_prob(params, cfg, tokens_NT, pos_N, gold_N, hooks)

    p_clean_N = _answer_prob(params, cfg, tokens_NT, pos_N, gold_N, None)
    return p_clean_N, jax.lax.map(ablate, jnp.arange(L), batch_size=batch_size)


def necessity(params, cfg, enc, mean_LF, chunk: int = 64) -> dict:
    """Per prompt of ``enc`` (``tokens``, ``predict_pos``, ``target``): ``p_clean`` [N], ``p_ablated`` [L, N]
    and ``drop`` [L, N] (numpy), in chunks of ``chunk`` prompts (one program; the last chunk is padded)."""
    tokens, pos, gold = (np.asarray(enc[k]) for k in ("tokens", "predict_pos", "target"))
    N = len(tokens)
    rows = -(-N // chunk) * chunk if N > chunk else N
    pad = lambda a: np.concatenate([a, np.repeat(a[-1:], rows - N, 0)]) if rows > N else a
    tokens, pos, gold = pad(tokens), pad(pos), pad(gold)
    size = min(chunk, rows)
    clean, ablated = [], []
    for i in range(0, rows, size):
        c, a = necessity_impl(params, jnp.asarray(tokens[i:i + size]), jnp.asarray(pos[i:i + size]),
                              jnp.asarray(gold[i:i + size]), jnp.asarray(mean_LF), cfg)
        clean.append(np.asarray(c))
        ablated.append(np.asarray(a))
    p_clean, p_ablated = np.concatenate(clean)[:N], np.concatenate(ablated, 1)[:, :N]
    return {"p_clean": p_clean, "p_ablated": p_ablated, "drop": p_clean[None] - p_ablated}
