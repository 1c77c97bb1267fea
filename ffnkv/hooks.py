"""Interventions as data (Hooks) and captured activations (Acts).

Every per-layer Hooks field has a leading layer axis L; row l is broadcast against the site's
``[B, T, X]`` activation of layer l, so ``[L, F]``, ``[L, T, F]``, ``[L, 1, T, 1]`` or ``[L, B, T, F]`` all work.
A field left ``None`` adds no operation. Because values are arrays, many interventions are one compiled
program: ``jax.vmap`` over a batch of Hooks, or differentiate with respect to them.

At each site the order is: ``x -> x * scale + add -> where(patch_mask, patch_value, x)``.

Attention heads: the site ``head`` is each head's output ``z_h · W_O[h]`` ``[B, T, H, D]`` (its contribution to
``attn_out``; the sum over H plus the output bias is ``attn_out``). ``head_scale`` and ``head_patch_mask`` act on
whole heads, so their rows broadcast against ``[B, T, H]`` (e.g. ``[L, H]``, ``[L, 1, T, H]``); ``head_add`` and
``head_patch_value`` are vectors, broadcast against ``[B, T, H, D]`` (e.g. ``[L, H, D]``, ``acts.head_out``). The
edited attention output is ``attn_out + Σ_h (edited_h − z_h)``: identity head hooks leave the logits bit-identical,
and with every head field None the head outputs are not computed at all.
"""
from __future__ import annotations

from typing import Optional

import jax
import jax.numpy as jnp
from flax import struct

SITES = ("ffn", "attn_out", "mlp_out", "resid_post", "head_out")
HEAD_FIELDS = ("head_scale", "head_add", "head_patch_mask", "head_patch_value")


@struct.dataclass
class Acts:
    """Activations of every block, stacked on the layer axis: ``[L, B, T, D]`` (``ffn``: ``[L, B, T, F]``).

    ``attn_pattern`` ``[L, B, H, T, S]`` (each head's attention weights, query t over key s) and ``head_out``
    ``[L, B, T, H, D]`` (each head's output after any head hook) are captured only when asked
    (``forward(..., capture_heads=True)``): the pattern is L·H·T² numbers per prompt. Otherwise they are None.
    """

    resid_pre: jax.Array
    attn_out: jax.Array
    resid_mid: jax.Array
    ffn: jax.Array
    mlp_out: jax.Array
    resid_post: jax.Array
    attn_pattern: Optional[jax.Array] = None
    head_out: Optional[jax.Array] = None


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
    # each attention head's output [L, B, T, H, D]: scale and patch mask per head [L, .., H],
    # add and value [L, .., H, D]
    head_scale: Optional[jax.Array] = None
    head_add: Optional[jax.Array] = None
    head_patch_mask: Optional[jax.Array] = None
    head_patch_value: Optional[jax.Array] = None

    def has_heads(self) -> bool:
        """Whether any head field is set (only then does the block compute per-head outputs)."""
        return any(getattr(self, name) is not None for name in HEAD_FIELDS)

    def merge(self, other: "Hooks") -> "Hooks":
        """Fields of ``other`` that are set replace those of ``self``."""
        return self.replace(**{k: v for k, v in vars(other).items() if v is not None})


def apply_site(x, hooks: Hooks | None, site: str):
    """Apply the scale/add/patch fields of ``site`` (already sliced to one layer) to ``x``."""
    if hooks is None:
        return x
    get = lambda name: getattr(hooks, f"{site}_{name}", None)
    if get("scale") is not None:
        x = x * get("scale")
    if get("add") is not None:
        x = x + get("add")
    if get("patch_mask") is not None:
        x = jnp.where(get("patch_mask"), get("patch_value"), x)
    return x


def apply_heads(z_BTHD, hooks: Hooks):
    """The head fields (already sliced to one layer) applied to the head outputs ``z_BTHD``: scale and mask are
    per head (a trailing D axis is added), add and value per head and dimension."""
    if hooks.head_scale is not None:
        z_BTHD = z_BTHD * jnp.asarray(hooks.head_scale)[..., None]
    if hooks.head_add is not None:
        z_BTHD = z_BTHD + hooks.head_add
    if hooks.head_patch_mask is not None:
        z_BTHD = jnp.where(jnp.asarray(hooks.head_patch_mask)[..., None], hooks.head_patch_value, z_BTHD)
    return z_BTHD


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


def ablate_heads(cfg, layer, heads, mean_HD=None) -> Hooks:
    """Zero-ablate attention ``heads`` (index array or scalar) of ``layer``; with ``mean_HD`` (the layer's mean head
    outputs ``[H, D]``, e.g. ``acts.head_out[layer].mean((0, 1))``) mean-ablate them."""
    scale_LH = jnp.ones((cfg.n_layers, cfg.n_heads), jnp.float32).at[layer, heads].set(0.0)
    if mean_HD is None:
        return Hooks(head_scale=scale_LH)
    add_HD = jnp.zeros((cfg.n_heads, cfg.d_model), jnp.float32).at[heads].set(jnp.asarray(mean_HD)[heads])
    return Hooks(head_scale=scale_LH, head_add=_layer_rows(cfg.n_layers, layer, add_HD))


def patch_from(acts: Acts, site: str, layers_L, positions_T, heads_H=None) -> Hooks:
    """Patch ``site`` with the cached ``acts`` where ``layers_L[l] & positions_T[t]`` (boolean masks); for
    ``site="head_out"`` (``acts`` captured with ``capture_heads=True``) also where ``heads_H[h]`` (default all)."""
    if site not in SITES:
        raise ValueError(f"site must be one of {SITES}")
    mask_LT = jnp.asarray(layers_L)[:, None] & jnp.asarray(positions_T)[None, :]
    if site != "head_out":
        return Hooks(**{f"{site}_patch_mask": mask_LT[:, None, :, None], f"{site}_patch_value": getattr(acts, site)})
    if acts.head_out is None:
        raise ValueError("patching heads needs acts captured with forward(..., capture_heads=True)")
    heads_H = jnp.ones(acts.head_out.shape[3], bool) if heads_H is None else jnp.asarray(heads_H)
    return Hooks(head_patch_mask=(mask_LT[:, :, None] & heads_H)[:, None], head_patch_value=acts.head_out)


def add_vector(cfg, site: str, layer, positions_T, vec_D) -> Hooks:
    """Add ``vec_D`` to ``mlp_out`` or ``resid`` (block output) of ``layer`` at the positions where ``positions_T``."""
    if site not in ("mlp_out", "resid"):
        raise ValueError("add_vector site must be 'mlp_out' or 'resid'")
    row_TD = jnp.asarray(positions_T, jnp.float32)[:, None] * jnp.asarray(vec_D)[None, :]
    return Hooks(**{f"{site}_add": _layer_rows(cfg.n_layers, layer, row_TD)})
