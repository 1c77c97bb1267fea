"""Knowledge neurons (Dai et al. 2022) on a real model: integrated gradients over FFN coefficients.

Attribution of neuron (l, i) for prompt x and gold token y (Dai et al. 2022, eq. 3), with a zero baseline
and all layers' coefficients at the last position set together to α·m̄ (m̄: their clean values) along one
straight path (Dai et al. run one layer at a time; one joint path costs L times less and keeps completeness):
    Attr(l, i) = m̄_li · (1/n) Σ_{k=1..n} ∂p(y | α_k m̄) / ∂m_li,   α_k = (k − ½)/n   (midpoint Riemann rule).
Completeness: Σ Attr ≈ p(y | m̄) − p(y | 0). Candidates: attribution > 0.2 × the prompt's maximum; knowledge
neurons: the candidates that are not generic (see ``split_generic``), at most ``max_neurons``. Their effect:
scale them by 0 (suppress) or 2 (amplify) at every position.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from ffnkv.hooks import Hooks
from ffnkv.model import forward


def _patch_last(cfg, T, m_LF):
    """Set every layer's coefficients at the last position to ``m_LF`` (a straight path in coefficient space)."""
    mask_LT = jnp.broadcast_to((jnp.arange(T) == T - 1)[None, :], (cfg.n_layers, T))
    return Hooks(ffn_patch_mask=mask_LT[:, None, :, None], ffn_patch_value=m_LF[:, None, None, :])


def integrated_gradients(params, cfg, tokens_T, target, steps: int = 20) -> dict:
    """``[L, F]`` attributions of p(target) to the last position's coefficients, with the completeness check."""
    T = tokens_T.shape[0]
    m_LF = forward(params, tokens_T[None], cfg).acts.ffn[:, 0, -1]

    def prob(m_LF):
        logits = forward(params, tokens_T[None], cfg, _patch_last(cfg, T, m_LF)).logits
        return jax.nn.softmax(logits[0, -1])[target]

    alphas = (jnp.arange(steps) + 0.5) / steps
    grads_SLF = jax.lax.map(lambda a: jax.grad(prob)(a * m_LF), alphas)
    attr_LF = m_LF * grads_SLF.mean(0)
    p1, p0 = prob(m_LF), prob(jnp.zeros_like(m_LF))
    return {"attr_LF": attr_LF, "p_full": p1, "p_baseline": p0,
            "completeness_error": jnp.abs(attr_LF.sum() - (p1 - p0)) / (jnp.abs(p1 - p0) + 1e-12)}


def candidate_neurons(attr_LF, threshold: float = 0.2, limit: int = 20):
    """(layer, neuron) pairs with attribution above ``threshold`` × max (Dai et al.'s coarse step), strongest first."""
    flat = attr_LF.reshape(-1)
    order = jnp.argsort(-flat)[:limit]
    keep = flat[order] > threshold * flat.max()
    F = attr_LF.shape[-1]
    return [(int(i) // F, int(i) % F) for i, k in zip(order.tolist(), keep.tolist()) if k]


def split_generic(candidates, relations, min_relations: int = 3, max_neurons: int = 5):
    """Knowledge neurons per fact, and the generic neurons that are candidates for facts of ≥ ``min_relations``
    different relations (they express something other than the fact, e.g. the answer's position or format —
    our stand-in for Dai et al.'s refinement across paraphrases, which needs several prompts per fact)."""
    seen: dict[tuple, set] = {}
    for cands, rel in zip(candidates, relations):
        for n in cands:
            seen.setdefault(n, set()).add(rel)
    generic = sorted(n for n, rels in seen.items() if len(rels) >= min_relations)
    specific = [[n for n in cands if n not in generic][:max_neurons] for cands in candidates]
    return specific, generic


def neuron_scale(cfg, neurons, factor: float):
    """``[L, F]`` scale that multiplies the (layer, neuron) pairs in ``neurons`` by ``factor``."""
    scale_LF = jnp.ones((cfg.n_layers, cfg.width))
    if neurons:
        layers, idx = zip(*neurons)
        scale_LF = scale_LF.at[jnp.asarray(layers), jnp.asarray(idx)].set(factor)
    return scale_LF


def scaled_probs(params, cfg, tokens_NT, lengths_N, targets_N, scale_LF):
    """p(target) of each (right-padded, causal) prompt with the coefficients scaled by ``scale_LF`` everywhere."""
    logits = forward(params, tokens_NT, cfg, Hooks(ffn_scale=scale_LF)).logits
    last_NV = jnp.take_along_axis(logits, (lengths_N - 1)[:, None, None], axis=1)[:, 0]
    return jnp.take_along_axis(jax.nn.softmax(last_NV, -1), targets_N[:, None], -1)[:, 0]
