"""Suppressing and amplifying knowledge neurons (Dai et al. 2022, §4.1): p(correct) when a fact's neurons
(``analysis.knowledge_neurons``) are multiplied by a factor (0 = suppress, 2 = amplify), on its own prompts and
on unrelated facts' prompts. Works on any encoded prompts (``analysis.prompt_prob``).
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from analysis.prompt_prob import check_prompts, gold_prob, prompt_mask
from ffnkv.hooks import Hooks


@functools.partial(jax.jit, static_argnames=("cfg", "batch_size", "all_positions"))
def _scaled_probs(params, tokens_NT, pos_N, gold_N, mask_NT, masks_KLF, fact_P, prompt_P, factor, cfg, batch_size,
                  all_positions=False):
    T = tokens_NT.shape[1]

    def one(pair):
        k, n = pair
        pos = pos_N[n]
        hit_T = (jnp.arange(T) == pos) | all_positions
        scale_LTF = jnp.where(hit_T[None, :, None] & masks_KLF[k][:, None, :], factor, 1.0)
        return gold_prob(params, cfg, tokens_NT[n], pos, gold_N[n], Hooks(ffn_scale=scale_LTF), mask_NT[n])

    return jax.lax.map(one, (fact_P, prompt_P), batch_size=batch_size)


def neuron_mask(neurons_by_fact, cfg) -> np.ndarray:
    """Boolean ``[K, L, F]`` masks from per-fact ``[[layer, neuron], …]`` lists."""
    masks = np.zeros((len(neurons_by_fact), cfg.n_layers, cfg.width), bool)
    for k, ns in enumerate(neurons_by_fact):
        for layer, unit in ns:
            masks[k, layer, unit] = True
    return masks


def scaled_probs(params, cfg, enc, masks_KLF, fact_P, prompt_P, factor: float, batch_size: int = 32,
                 all_positions: bool = False) -> np.ndarray:
    """p(gold) of prompt ``prompt_P[j]`` with the neurons of fact ``fact_P[j]`` multiplied by ``factor``
    at the prediction position (Dai et al. 2022, §4.1), or at every position with ``all_positions`` (the
    pretrained-model study's choice: a fact's neurons may act on the subject tokens as well).
    One compiled program for every (fact, prompt) pair and factor."""
    check_prompts(enc, cfg)
    probs = _scaled_probs(params, jnp.asarray(enc["tokens"], jnp.int32), jnp.asarray(enc["predict_pos"], jnp.int32),
                          jnp.asarray(enc["target"], jnp.int32), jnp.asarray(prompt_mask(enc, cfg)),
                          jnp.asarray(masks_KLF),
                          jnp.asarray(fact_P, jnp.int32), jnp.asarray(prompt_P, jnp.int32), jnp.float32(factor), cfg,
                          max(1, min(batch_size, len(fact_P))), bool(all_positions))
    return np.asarray(probs)


def suppression_amplification(params, cfg, enc, neurons_by_fact, own_prompts, unrelated_prompts, prob_N,
                              factors=(0.0, 2.0), batch_size: int = 32, all_positions: bool = False) -> dict:
    """Relative change of p(correct), ``(p' − p) / p``, when a fact's knowledge neurons are scaled.

    ``own_prompts[k]`` / ``unrelated_prompts[k]`` index the rows of ``enc`` for fact k's own prompts and for
    prompts of unrelated facts; ``prob_N`` is the clean p(gold). Returns per-fact means and overall means
    (facts with no knowledge neurons are skipped), for each factor (0 = suppress, 2 = amplify).
    ``all_positions``: see :func:`scaled_probs`.
    """
    masks = neuron_mask(neurons_by_fact, cfg)
    result = {"factors": list(factors), "per_fact": []}
    groups = {"own": own_prompts, "unrelated": unrelated_prompts}
    pairs = {g: (np.concatenate([np.full(len(p), k) for k, p in enumerate(rows)]).astype(np.int32),
                 np.concatenate([np.asarray(p, np.int64) for p in rows]).astype(np.int32))
             for g, rows in groups.items()}
    changes = {}
    for factor in factors:
        for g, (fact_P, prompt_P) in pairs.items():
            p_new = scaled_probs(params, cfg, enc, masks, fact_P, prompt_P, factor, batch_size, all_positions)
            rel = (p_new - prob_N[prompt_P]) / np.maximum(prob_N[prompt_P], 1e-12)
            changes[(factor, g)] = np.array([rel[fact_P == k].mean() if (fact_P == k).any() else np.nan
                                             for k in range(len(neurons_by_fact))])
    has = np.array([len(ns) > 0 for ns in neurons_by_fact])
    for k in range(len(neurons_by_fact)):
        result["per_fact"].append({f"x{f:g}_{g}": float(changes[(f, g)][k]) for f in factors for g in groups})
    result["mean"] = {f"x{f:g}_{g}": float(np.nanmean(changes[(f, g)][has])) if has.any() else None
                      for f in factors for g in groups}
    result["median"] = {f"x{f:g}_{g}": float(np.nanmedian(changes[(f, g)][has])) if has.any() else None
                        for f in factors for g in groups}
    result["n_facts"] = int(has.sum())
    return result
