"""Memory coefficients of a model on a probe set (the shared input of the Rahman et al. 2026 analyses).

A probe set is a dict of numpy arrays in the format of ``CondComp.eval_set``: ``tokens [N, T]``, ``target [N]``
(the answer, predicted by the logits at the last position ``T - 1``) and ``op [N]`` (the op index).
"""
from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp

from ffnkv.model import forward


@partial(jax.jit, static_argnames=("cfg",))
def ffn_coefficients(params, tokens_NT, cfg):
    """``m`` of every layer at every position, ``[L, N, T, F]``, and the answer logits ``[N, V]``."""
    out = forward(params, tokens_NT, cfg)
    return out.acts.ffn, out.logits[:, -1]


def ffn_layers(cfg) -> list[int]:
    """Layers that carry an FFN (the others' coefficients are identically zero and are skipped)."""
    return [int(l) for l in jnp.flatnonzero(jnp.asarray(cfg.has_ffn_L()))] if cfg.width else []
