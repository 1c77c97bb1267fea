"""The readout: residual stream -> vocabulary. One definition of the unembedding, used by ``forward`` and
every analysis that reads a vector as a distribution over tokens.

* ``unembedding_DV``: the output embedding ``W_DV`` — the token embedding transposed when tied (GPT-2, BERT,
  tied llama), ``params["unembed"]`` otherwise.
* ``unembed``: the model's own logits from the last block's output: the final norm (pre-norm models), BERT's
  MLM transform when the checkpoint has one (``params["head"]``), ``W_DV`` and the optional output bias.
* ``logit_lens``: the vocabulary reading of any residual-space vector ``x`` (a hidden state, an FFN output or a
  value vector): ``LN_f(x) · W_DV``, the final norm applied in full (centring, 1/rms, scale and bias) then the
  output embedding, with no MLM transform and no output bias.

Why the full final norm (Geva et al. 2022, §3, "promoting concepts"): a value's sub-update is read as
``p_i = softmax(E · v_i)``, with E the output embedding; the paper drops the final layer norm from its
notation for brevity, and its reference code (``project_value_to_vocab``) reads ``lm_head(ln_f(v_i))``. For
RMSNorm models (llama, SmolLM2) this ranks tokens exactly as the scale-only reading ``(g ⊙ v) · E`` (1/rms is a
positive constant per vector), and for LayerNorm models (GPT-2) the centring and bias are part of what the
model would do with the vector. ``final_norm=False`` gives the raw ``x · E`` that Geva et al. (2021, §4) use.
Post-norm models (BERT) have no final norm: the lens is ``x · W_DV`` either way. The output bias and the MLM
transform are left out because they are not part of the vector's direction in vocabulary space (the bias is a
constant shift shared by every vector; the transform is non-linear).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from ffnkv.ffn import dense
from ffnkv.norm import norm


def unembedding_DV(params, cfg):
    """The output embedding ``[D, V]``."""
    return params["embed"]["tok"].T if cfg.tie_embeddings else params["unembed"]


def apply_final_norm(params, x_ND, cfg):
    """The final norm of a pre-norm model; post-norm models (BERT) have none and return ``x`` unchanged."""
    return norm(params["final_norm"], x_ND, cfg) if cfg.prenorm else x_ND


def mlm_head(params, x_ND, cfg):
    """BERT's MLM transform ``LayerNorm(gelu(x·W + b))`` (Devlin et al. 2019) when ``params`` has one."""
    if "head" not in params:
        return x_ND
    h = params["head"]
    return norm(h["norm"], jax.nn.gelu(x_ND @ h["W"] + h["b"], approximate=cfg.gelu_approximate), cfg)


def unembed(params, x_BTD, cfg):
    """The model's logits (float32) from the last block's output ``[..., D]``."""
    logits = dense(mlm_head(params, apply_final_norm(params, x_BTD, cfg), cfg), unembedding_DV(params, cfg))
    if "unembed_bias" in params:
        logits = logits + params["unembed_bias"]
    return logits.astype(jnp.float32)


def logit_lens(params, x_ND, cfg, final_norm: bool = True):
    """Vocabulary logits (float32) of any residual-space vectors ``[..., D]``: ``LN_f(x) · W_DV`` (module
    docstring; Geva et al. 2022, §3), or the raw ``x · W_DV`` with ``final_norm=False`` (Geva et al. 2021, §4)."""
    if final_norm:
        x_ND = apply_final_norm(params, x_ND, cfg)
    return (x_ND @ unembedding_DV(params, cfg)).astype(jnp.float32)
