"""Interventions as data (Hooks) and captured activations (Acts).

Every per-layer Hooks field has a leading layer axis L; row l is broadcast against the site's
``[B, T, X]`` activation of layer l, so ``[L, F]``, ``[L, T, F]``, ``[L, 1, T, 1]`` or ``[L, B, T, F]`` all work.
A field left ``None`` adds no operation. Because values are arrays, many interventions are one compiled
program: ``jax.vmap`` over a batch of Hooks, or differentiate with respect to them.

At each site the order is: ``x -> x * scale + add -> where(patch_mask, patch_value, x)``.
"""
from __future__ import annotations

from typing import Optional

import jax
import jax.numpy as jnp
from flax import struct

SITES = ("ffn", "attn_out", "mlp_out", "resid_post")


@struct.dataclass
class Acts:
    """Activations of every block, stacked on the layer axis: ``[L, B, T, D]`` (``ffn``: ``[L, B, T, F]``)."""

    resid_pre: jax.Array
    attn_out: jax.Array
    resid_mid: jax.Array
    ffn: jax.Array
    mlp_out: jax.Array
    resid_post: jax.Array


@struct.dataclass
class Hooks:
    # the token embeddings [B, T, D] (causal tracing's noise)
    embed_add: Optional[jax.Array] = None
    # the memory coefficients m [L, B, T, F]: scale then add (ablate, amplify, IG's α, a gradient site), patch
    ffn_scale: Optional[jax.Array] = None
    ffn_add: Optional[jax.Array] = None
    ffn_patch_mask: Optional[jax.Array] = None
    ffn_patch_value: Optional[jax.Array] = None
    # the attention output [L, B, T, D]
    attn_out_patch_mask: Optional[jax.Array] = None
    attn_out_patch_value: Optional[jax.Array] = None
    # the FFN output [L, B, T, D] (ROME/MEMIT's δ is an add)
    mlp_out_add: Optional[jax.Array] = None
    mlp_out_patch_mask: Optional[jax.Array] = None
    mlp_out_patch_value: Optional[jax.Array] = None
    # the block output, the residual stream [L, B, T, D]
    resid_add: Optional[jax.Array] = None
    resid_post_patch_mask: Optional[jax.Array] = None
    resid_post_patch_value: Optional[jax.Array] = None

    def merge(self, other: "Hooks") -> "Hooks":
        """Fields of ``other`` that are set replace those of ``self``."""
        return self.replace(**{k: v for k, v in vars(other).items() if v is not None})


def apply_site(x, hooks: Hooks | None, site: str):
    """Apply the scale/add/patch fields of ``site`` (already sliced to one layer) to ``x``."""
    if hooks is None:
        return x
    get = lambda name: getattr(hooks, f"{site}_{name}", None)  # noqa: E731
    if get("scale") is not None:
        x = x * get("scale")
    if get("add") is not None:
        x = x + get("add")
    if get("patch_mask") is not None:
        x = jnp.where(get("patch_mask"), get("patch_value"), x)
    return x


def _layer_rows(n_layers: int, layer, row):
    """An ``[L, ...]`` array that is ``row`` at ``layer`` (a Python or traced int) and zero elsewhere."""
    return jnp.zeros((n_layers,) + jnp.shape(row), jnp.result_type(row)).at[layer].set(row)


def scale_neurons(cfg, layer, neurons, factor) -> Hooks:
    """Multiply neurons ``neurons`` (index array or scalar) of ``layer`` by ``factor`` (Dai et al. 2022, §3.3)."""
    scale_LF = jnp.ones((cfg.n_layers, cfg.width), jnp.float32).at[layer, neurons].set(factor)
    return Hooks(ffn_scale=scale_LF)


def ablate_neurons(cfg, layer, neurons, mean_F=None) -> Hooks:
    """Zero-ablate ``neurons`` of ``layer``; with ``mean_F`` (the layer's mean coefficients) mean-ablate them."""
    hooks = scale_neurons(cfg, layer, neurons, 0.0)
    if mean_F is None:
        return hooks
    add_F = jnp.zeros((cfg.width,), jnp.float32).at[neurons].set(jnp.asarray(mean_F)[neurons])
    return hooks.replace(ffn_add=_layer_rows(cfg.n_layers, layer, add_F))


def neuron_mask_hooks(mask_LF, mean_LF=None) -> Hooks:
    """Ablate every neuron where the boolean ``mask_LF`` is true (zero, or its mean from ``mean_LF``)."""
    scale_LF = 1.0 - mask_LF.astype(jnp.float32)
    add_LF = None if mean_LF is None else jnp.where(mask_LF, mean_LF, 0.0)
    return Hooks(ffn_scale=scale_LF, ffn_add=add_LF)


def patch_from(acts: Acts, site: str, layers_L, positions_T) -> Hooks:
    """Patch ``site`` with the cached ``acts`` where ``layers_L[l] & positions_T[t]`` (boolean masks)."""
    if site not in SITES:
        raise ValueError(f"site must be one of {SITES}")
    mask_LT = jnp.asarray(layers_L)[:, None] & jnp.asarray(positions_T)[None, :]
    return Hooks(**{f"{site}_patch_mask": mask_LT[:, None, :, None], f"{site}_patch_value": getattr(acts, site)})


def add_vector(cfg, site: str, layer, positions_T, vec_D) -> Hooks:
    """Add ``vec_D`` to ``mlp_out`` or ``resid`` (block output) of ``layer`` at the positions where ``positions_T``."""
    if site not in ("mlp_out", "resid"):
        raise ValueError("add_vector site must be 'mlp_out' or 'resid'")
    row_TD = jnp.asarray(positions_T, jnp.float32)[:, None] * jnp.asarray(vec_D)[None, :]
    return Hooks(**{f"{site}_add": _layer_rows(cfg.n_layers, layer, row_TD)})
