"""Value → vocabulary projection (Geva et al. 2022, §3): what each FFN value vector promotes.

The sub-update of neuron i in layer l is m_i · v_i; projected to the vocabulary it is r_i = E · v_i
(Geva et al. 2022, eq. 3), with E the output embedding. For pre-norm models the final norm's per-dimension
scale is applied first (the "logit lens" reading of the residual stream); its data-dependent 1/rms factor
is a positive constant per token and does not change the ranking.
"""
from __future__ import annotations

import jax.numpy as jnp


def output_embedding(params, cfg):
    """``[D, V]`` map from a residual direction to logits, including the final norm's scale."""
    W_DV = params["embed"]["tok"].T if cfg.tie_embeddings else params["unembed"]
    if cfg.prenorm:
        W_DV = params["final_norm"]["scale"][:, None] * W_DV
    return W_DV


def value_logits(params, cfg, layer: int, neurons):
    """``[N, V]`` vocabulary scores E·v_i of the value vectors (rows of W_out) of ``neurons`` in ``layer``."""
    V_ND = params["blocks"]["ffn"]["W_out"][layer][jnp.asarray(neurons)]
    return V_ND @ output_embedding(params, cfg)


def top_tokens(params, cfg, layer: int, neurons, k: int = 10):
    """Token ids of the ``k`` highest-scoring tokens of each value, ``[N, k]``."""
    return jnp.argsort(-value_logits(params, cfg, layer, neurons), axis=-1)[:, :k]


def token_rank(params, cfg, layer: int, neurons, token: int):
    """Rank (0 = top) of ``token`` in each value's projection: does the value promote it?"""
    scores_NV = value_logits(params, cfg, layer, neurons)
    return (scores_NV > scores_NV[:, token][:, None]).sum(-1)
