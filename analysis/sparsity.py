"""Sparsity of the memory coefficients (Rahman et al. 2026, "extreme sparsity" quantified by the Gini coefficient).

Definitions (Rahman et al. published no protocol; these are ours):

* **Gini coefficient** of a non-negative vector ``a`` of length n (Hurley & Rickard 2009, eq. for G):
  sort ascending ``a_(1) ≤ … ≤ a_(n)``; ``G(a) = Σ_i (2i − n − 1) a_(i) / (n Σ_i a_i)``; ``G = 0`` when
  ``Σ a = 0``. A constant vector has G = 0, a one-hot vector of length n has G = (n − 1)/n.
* **Token Gini** (per layer): G(|m_t|) over the F coefficients of one token t (every position of every probe
  sequence), averaged over tokens. **Neuron Gini**: G over the tokens of one neuron's |m|, averaged over
  neurons that are not dead (dead: |m| = 0 on every token; their fraction is reported apart).
* **Active fraction** (per layer): the mean over tokens of the fraction of the F neurons that are active.
  ``relu``: active iff m > 0. Every other kind: active iff |m| > ``rel_threshold`` · max_j |m_j| of the same
  token (default 0.1). The relative rule is also reported for relu (``active_fraction_rel``), so the kinds
  can be compared under one rule.
* **Baseline**: the same statistics on the untrained parameters ``init_params(key(seed), cfg)``.
"""
from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from analysis.probe import ffn_coefficients, ffn_layers

REL_THRESHOLD = 0.1


def gini(a, axis=-1):
    """Gini coefficient of the non-negative values of ``a`` along ``axis`` (0 for an all-zero vector)."""
    a = jnp.moveaxis(jnp.asarray(a, jnp.float32), axis, -1)
    n = a.shape[-1]
    sorted_ = jnp.sort(a, axis=-1)
    weights_n = 2.0 * jnp.arange(1, n + 1, dtype=jnp.float32) - n - 1
    total = a.sum(-1)
    return jnp.where(total > 0, (sorted_ * weights_n).sum(-1) / (n * jnp.where(total > 0, total, 1.0)), 0.0)


def active_mask(m_NF, kind: str, rel_threshold: float = REL_THRESHOLD):
    """Which coefficients are active: m > 0 for relu, |m| > rel_threshold · max|m| of the token otherwise."""
    if kind == "relu":
        return m_NF > 0
    return relative_active(m_NF, rel_threshold)


def relative_active(m_NF, rel_threshold: float = REL_THRESHOLD):
    a_NF = jnp.abs(m_NF)
    return a_NF > rel_threshold * a_NF.max(-1, keepdims=True)


@partial(jax.jit, static_argnames=("kind", "rel_threshold"))
def layer_sparsity(m_NF, kind: str, rel_threshold: float = REL_THRESHOLD) -> dict:
    """The statistics of the module docstring for one layer's coefficients ``m_NF`` (N tokens, F neurons)."""
    a_NF = jnp.abs(m_NF)
    token_gini_N = gini(a_NF, axis=-1)
    neuron_gini_F = gini(a_NF, axis=0)
    alive_F = a_NF.max(0) > 0
    return {
        "token_gini_mean": token_gini_N.mean(),
        "token_gini_std": token_gini_N.std(),
        "neuron_gini_mean": jnp.where(alive_F, neuron_gini_F, 0.0).sum() / jnp.maximum(alive_F.sum(), 1),
        "dead_fraction": 1.0 - alive_F.mean(),
        "active_fraction": active_mask(m_NF, kind, rel_threshold).mean(),
        "active_fraction_rel": relative_active(m_NF, rel_threshold).mean(),
    }


def model_sparsity(params, cfg, tokens_NT, rel_threshold: float = REL_THRESHOLD) -> dict:
    """Per FFN layer, the sparsity statistics of ``m`` over every position of the probe ``tokens_NT``, and
    ``token_gini_sequences`` [N]: each probe sequence's mean token Gini (the items of the verdict's interval;
    their mean is ``token_gini_mean``, every sequence having T positions)."""
    m_LNTF, _ = ffn_coefficients(params, jnp.asarray(tokens_NT), cfg)
    out = {}
    for layer in ffn_layers(cfg):
        m_NF = m_LNTF[layer].reshape(-1, cfg.width)
        out[str(layer)] = {k: float(v) for k, v in layer_sparsity(m_NF, cfg.ffn, rel_threshold).items()}
        out[str(layer)]["token_gini_sequences"] = np.asarray(gini(jnp.abs(m_LNTF[layer])).mean(-1)).tolist()
    return out


def layer_mean(per_layer: dict, key: str) -> float | None:
    """The mean of one statistic over the FFN layers (None for a model without FFN)."""
    values = [row[key] for row in per_layer.values()]
    return float(np.mean(values)) if values else None
