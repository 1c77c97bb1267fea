"""LayerNorm (Ba et al. 2016) and RMSNorm (Zhang & Sennrich 2019): the model's one normaliser."""
from __future__ import annotations

import jax
import jax.numpy as jnp


def init_norm(cfg) -> dict:
    params = {"scale": jnp.ones(cfg.d_model)}
    return params | ({"bias": jnp.zeros(cfg.d_model)} if cfg.norm == "layernorm" else {})


def norm(params, x_BTD, cfg):
    """``cfg.norm`` over the last axis, computed in float32 and returned in the input's dtype."""
    x = x_BTD.astype(jnp.float32)
    if cfg.norm == "layernorm":
        x = x - x.mean(-1, keepdims=True)
    x = x * jax.lax.rsqrt((x * x).mean(-1, keepdims=True) + cfg.norm_eps) * params["scale"]
    return (x + params["bias"] if "bias" in params else x).astype(x_BTD.dtype)
