"""The FFN registry: every kind is ``FF(x) = f(x·K)·V`` split into keys (x -> m) and values (m -> output).

Geva et al. (2021), eq. 2: the coefficients ``m = f(x·K)`` weight the rows of V. Splitting the two halves
lets hooks act on m between them. Every registry kind shares one signature:

    init(key, d_model, d_ff, bias, dtype) -> params
    coefficients(params, x_BTD, cfg) -> m_BTF
    values(params, m_BTF) -> out_BTD

and the module-level ``coefficients(params, x_BTD, cfg)`` / ``values(params, m_BTF, x_BTD, cfg)`` dispatch on
``cfg.ffn`` (``x_BTD`` gives ``none`` the shape of its zero output).
"""
from __future__ import annotations

from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from flax.linen import initializers


class FFNKind(NamedTuple):
    init: Callable
    coefficients: Callable
    values: Callable


def _init_kv(key, d_model, d_ff, bias, dtype, gated=False):
    k_in, k_out, k_gate = jax.random.split(key, 3)
    init = initializers.lecun_normal()
    params = {"W_in": init(k_in, (d_model, d_ff), dtype), "W_out": init(k_out, (d_ff, d_model), dtype)}
    if gated:
        params["W_gate"] = init(k_gate, (d_model, d_ff), dtype)
    elif bias:
        params["b_in"] = jnp.zeros((d_ff,), dtype)
        params["b_out"] = jnp.zeros((d_model,), dtype)
    return params


def dense(x_BTX, W_XY):
    """``x @ W`` as one 2-D matmul over the flattened leading axes (XLA:CPU's weight gradient is ~2× faster
    than contracting over separate batch and time axes)."""
    return (x_BTX.reshape(-1, x_BTX.shape[-1]) @ W_XY).reshape(x_BTX.shape[:-1] + W_XY.shape[-1:])


def _keys(params, x_BTD):
    h_BTF = dense(x_BTD, params["W_in"])
    return h_BTF + params["b_in"] if "b_in" in params else h_BTF


def _values(params, m_BTF):
    out_BTD = dense(m_BTF, params["W_out"])
    return out_BTD + params["b_out"] if "b_out" in params else out_BTD


def gelu(h, approximate: bool = False):
    """GELU (Hendrycks & Gimpel 2016). Exact: ``h·Φ(h) = h/2·(1 + erf(h/√2))``, written with ``erf`` as PyTorch and
    transformers do (``jax.nn.gelu`` uses ``erfc``, whose XLA:CPU lowering is several times slower)."""
    if approximate:
        return jax.nn.gelu(h, approximate=True)
    return h * (0.5 + 0.5 * jax.lax.erf(h * np.asarray(1 / np.sqrt(2), h.dtype)))


def _gelu(params, x_BTD, cfg):
    return gelu(_keys(params, x_BTD), cfg.gelu_approximate)


def _swiglu(params, x_BTD, cfg):
    """Shazeer (2020): m = silu(x·W_gate) ⊙ (x·W_in); W_gate and W_in together play the role of K."""
    return jax.nn.silu(dense(x_BTD, params["W_gate"])) * dense(x_BTD, params["W_in"])


REGISTRY: dict[str, FFNKind] = {
    "relu": FFNKind(_init_kv, lambda p, x, cfg: jax.nn.relu(_keys(p, x)), _values),
    "gelu": FFNKind(_init_kv, _gelu, _values),
    "linear": FFNKind(_init_kv, lambda p, x, cfg: _keys(p, x), _values),
    "swiglu": FFNKind(lambda k, d, f, b, t: _init_kv(k, d, f, False, t, gated=True), _swiglu, _values),
    "softmax": FFNKind(lambda k, d, f, b, t: _init_kv(k, d, f, False, t),
                       lambda p, x, cfg: jax.nn.softmax(_keys(p, x), axis=-1), _values),
}


def init_ffn(key, cfg):
    if cfg.ffn == "none":
        return {}
    return REGISTRY[cfg.ffn].init(key, cfg.d_model, cfg.d_ff, cfg.bias, jnp.float32)


def coefficients(params, x_BTD, cfg):
    if cfg.ffn == "none":
        return jnp.zeros(x_BTD.shape[:-1] + (0,), x_BTD.dtype)
    return REGISTRY[cfg.ffn].coefficients(params, x_BTD, cfg)


def values(params, m_BTF, x_BTD, cfg):
    if cfg.ffn == "none":
        return jnp.zeros_like(x_BTD)
    return REGISTRY[cfg.ffn].values(params, m_BTF)
