"""p(gold | prompt) under hooks, and the checks of encoded prompts: the readout that attribution, neuron scaling,
tracing and patching share.

Encoded prompts (``ffnkv.prompts.Prompts`` or a dict with the same keys): ``tokens`` [N, T] right-padded,
``predict_pos`` [N] (the position whose logits predict the gold token), ``target`` [N] (gold token ids) and,
for bidirectional models, ``lengths`` [N] (the padding mask).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from ffnkv.errors import FfnkvError
from ffnkv.hooks import Hooks
from ffnkv.model import forward


def prob_of(logits_V, gold):
    """softmax(logits)[gold] as exp(logit_gold − logsumexp): one pass over the vocabulary, forward and back."""
    return jnp.exp(jnp.take(logits_V, gold, axis=-1) - jax.nn.logsumexp(logits_V, axis=-1))


def gold_prob(params, cfg, tokens_T, pos, gold, hooks: Hooks, mask_T=None):
    """p(gold | prompt) at position ``pos`` of one prompt under ``hooks``."""
    mask_BT = None if mask_T is None else mask_T[None]
    logits_V = forward(params, tokens_T[None], cfg, hooks, mask_BT).logits[0, pos]
    return prob_of(logits_V, gold)


def prompt_mask(enc, cfg) -> np.ndarray:
    """``[N, T]`` attention mask of the prompts: all True for causal models (right padding is never attended
    before the prediction position), the real tokens (``lengths``) for bidirectional ones."""
    tokens = np.asarray(enc["tokens"])
    if cfg.causal or "lengths" not in enc:
        return np.ones(tokens.shape, bool)
    return np.arange(tokens.shape[1])[None, :] < np.asarray(enc["lengths"])[:, None]


def check_prompts(enc, cfg, width_needed=True) -> None:
    """FfnkvError unless ``enc`` holds consistent encoded prompts (and, with ``width_needed``, the model has an FFN)."""
    if width_needed and cfg.width == 0:
        raise FfnkvError("the model has no FFN (ffn='none'), so it has no FFN neurons to attribute.")
    tokens, pos = np.asarray(enc["tokens"]), np.asarray(enc["predict_pos"])
    if tokens.ndim != 2 or pos.shape != tokens.shape[:1] or np.asarray(enc["target"]).shape != pos.shape:
        raise FfnkvError("encoded prompts need tokens [N, T] with predict_pos [N] and target [N]; check the arrays.")
    if (pos < 0).any() or (pos >= tokens.shape[1]).any():
        raise FfnkvError("predict_pos must lie inside each prompt; re-encode the prompts.")
