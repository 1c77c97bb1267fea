"""MEMIT: Mass-Editing Memory In a Transformer (Meng et al. 2023, §4 and Algorithm 1).

E facts are written at once into the value matrices of a range of layers ℛ = (l₁ … l_L):

1. For every fact a target hidden state z_i = h_i + δ_i at the last layer l_L, with δ_i optimised like ROME's
   v* (eq. 16) but added to the residual stream after block l_L at the subject's last token. h_i is the hidden
   state of the bare rewrite prompt (``constraint="bare"``, MEMIT's code: ``compute_z`` and ``apply_memit``
   read z and the current hidden state at the bare prompt) or its average over the context prefixes
   (``"mean"``, the key-consistent form: with one layer the residual then equals δ exactly).
2. For each layer l in order: keys K (E×F, averaged over prefixes, under the weights edited so far), the
   remaining residual R = (z − h^{l_L}) / (L − i) spread evenly over the layers still to edit, and the
   update of eq. 14 in row-vector form: ΔW = (λC + KᵀK)⁻¹ Kᵀ R, where C = E[k kᵀ] of the unedited layer.

λ relative to the model: with one fact, one layer's update realises the fraction f = s / (λ + s) of its
residual, s = kᵀC⁻¹k (Sherman–Morrison). For keys drawn like C's, E[kᵀC⁻¹k] = tr(C⁻¹C) = F, so λ = 15000 on
GPT-J (F = 16384) is λ / F = 0.916 (``PAPER_LAMBDA_RATIO``): each layer realises about half of its share. λ and
the band act together: layer i of L gets 1 / (L − i) of what is left and realises f of that, so GPT-J's six
layers (3–8) realise 79% of a fact's residual (``band_realised``), two layers at the same f only 70%. The rule
(``band_lambda_ratio``) keeps the band's total: λ = r_L · s̄, with s̄ the mean kᵀC⁻¹k of the keys being edited
(measured on the model at hand) and r_L the ratio at which an L-layer band realises GPT-J's 79% (r = 0.26,
0.46, 0.61, 0.73 for L = 1 … 4; 0.916 at L = 6). ``relative_lambda`` gives λ for any ratio. The paper's absolute
λ on a 256-wide FFN realises ≈ 2% instead.

The rule rests on E[kᵀC⁻¹k] = F for GPT-J's edit keys, which nobody measured; on SmolLM2 the edit keys give
4.7·F (``SMOLLM2_KEY_SCALE``). Read that way, GPT-J's λ / s̄ is 0.916 / 4.7 and the band's ratio falls (0.078
instead of 0.461 for two layers). ``ratio_readings`` gives both readings, ``ratio_grid`` the ratios between
them that the editing study scores (issue 20).

Defaults are MEMIT's GPT-J hyper-parameters (``MEMIT_HPARAMS``, ``MEMIT_LAMBDA``): Adam lr 0.5, 25 steps,
KL factor 0.0625, weight decay 0.5, clamp factor 0.75, 5 context prefixes of 10 tokens plus the bare prompt
(the reference code's ``get_context_templates``: lengths and counts ``[(10, 5)]``), λ (``mom2_update_weight``)
= 15000.
"""
from __future__ import annotations

import math
from functools import partial

import jax
import jax.numpy as jnp

from analysis.rome import (
    DeltaHParams,
    EditRequest,
    hidden_at,
    keys_at,
    optimise_delta,
    safe_norm,
    value_matrix,
    with_value_matrix,
)
from ffnkv import sharding

MEMIT_HPARAMS = DeltaHParams(lr=0.5, steps=25, clamp_factor=0.75, prefixes=((10, 5),))
MEMIT_LAMBDA = 15000.0
GPTJ_D_FF = 16384
GPTJ_LAYERS = (3, 4, 5, 6, 7, 8)
PAPER_LAMBDA_RATIO = MEMIT_LAMBDA / GPTJ_D_FF


def band_realised(ratio: float, n_layers: int) -> float:
    """Fraction of one fact's residual an ``n_layers`` band realises at λ = ratio · s (module docstring)."""
    f, left = 1.0 / (1.0 + ratio), 1.0
    for i in range(n_layers):
        left -= f * left / (n_layers - i)
    return 1.0 - left


def band_lambda_ratio(n_layers: int, paper_ratio: float = PAPER_LAMBDA_RATIO,
                      paper_layers: int = len(GPTJ_LAYERS)) -> float:
    """The λ / s̄ at which ``n_layers`` layers realise what GPT-J's band realises at λ = 15000 (bisection on
    log λ; ``band_realised`` falls as λ grows)."""
    target, lo, hi = band_realised(paper_ratio, paper_layers), 1e-6, 1e6
    for _ in range(100):
        mid = math.sqrt(lo * hi)
        lo, hi = (mid, hi) if band_realised(mid, n_layers) > target else (lo, mid)
    return math.sqrt(lo * hi)


SMOLLM2_KEY_SCALE = 4.7  # mean kᵀC⁻¹k / d_ff of SmolLM2-135M's edit keys, layers 8–9 (7237 / 1536; docs/editing.md)


def ratio_readings(n_layers: int, key_scale: float = SMOLLM2_KEY_SCALE) -> dict:
    """The band rule's ratio under the two readings of GPT-J's keys: E[kᵀC⁻¹k] = F (``"d_ff"``, the identity
    for keys distributed like C's) and E[kᵀC⁻¹k] = key_scale · F (``"measured"``, as SmolLM2's keys give)."""
    return {"d_ff": band_lambda_ratio(n_layers),
            "measured": band_lambda_ratio(n_layers, PAPER_LAMBDA_RATIO / key_scale), "key_scale": key_scale}


def ratio_grid(n_layers: int, points: int = 6, key_scale: float = SMOLLM2_KEY_SCALE) -> tuple[float, ...]:
    """``points`` ratios, evenly spaced in log r, from the ``"measured"`` reading to the ``"d_ff"`` one."""
    r = ratio_readings(n_layers, key_scale)
    lo, hi = sorted((r["measured"], r["d_ff"]))
    if points < 2:
        return (hi,)
    return tuple(float(lo * (hi / lo) ** (i / (points - 1))) for i in range(points))


def key_mahalanobis(K_EF, C_FF, ridge: float = 0.0):
    """s_i = k_iᵀ C⁻¹ k_i for each row of K (C regularised as in ``memit_update``): [E]."""
    C_FF = C_FF + ridge * jnp.maximum(jnp.mean(jnp.diag(C_FF)), 1e-12) * jnp.eye(C_FF.shape[0])
    return jnp.sum(K_EF * jnp.linalg.solve(C_FF, K_EF.T).T, axis=-1)


def relative_lambda(K_EF, C_FF, ratio: float = PAPER_LAMBDA_RATIO, ridge: float = 0.0) -> tuple[float, float]:
    """λ = ratio · mean_i k_iᵀC⁻¹k_i (see the module docstring); returns (λ, s̄)."""
    s_bar = float(jnp.mean(key_mahalanobis(K_EF, C_FF, ridge)))
    return ratio * s_bar, s_bar


def memit_update(W_FD, K_EF, R_ED, C_FF, lam, ridge: float = 0.0):
    """MEMIT eq. 14: W′ = W + (λC + KᵀK)⁻¹ Kᵀ R — least squares on the new keys, λC guarding the old ones."""
    A_FF = lam * C_FF + K_EF.T @ K_EF
    A_FF = A_FF + ridge * lam * jnp.maximum(jnp.mean(jnp.diag(C_FF)), 1e-12) * jnp.eye(C_FF.shape[0])
    return W_FD + jnp.linalg.solve(A_FF, K_EF.T @ R_ED)


def memit_targets(params, cfg, last: int, reqs: EditRequest, hp: DeltaHParams = MEMIT_HPARAMS, batch_size: int = 16,
                  mesh=None):
    """Step 1 (eq. 16): the target hidden states z_i = h_i + δ_i after block ``last``; returns (z_ED, info).
    It does not depend on λ, so a λ sweep computes it once. ``mesh``: the edits' δ optimisations split over its
    "data" axis (``ffnkv.sharding.sweep``: each device, or process, optimises its share)."""
    if hp.constraint not in ("bare", "mean"):
        raise ValueError(f"constraint {hp.constraint!r} is not 'bare' or 'mean'")
    h0_ED = _hidden(params, cfg, last, reqs, hp, batch_size)
    z_fn = lambda p, l, x: optimise_delta(p, cfg, "resid", l, x[0], safe_norm(x[1]), hp)
    delta_ED, nll_E, steps_E = sharding.sweep(z_fn, (reqs, h0_ED), mesh, batch_size, (params, jnp.int32(last)))
    return h0_ED + delta_ED, {"nll": nll_E, "steps": steps_E, "delta_norm": jnp.linalg.norm(delta_ED, axis=-1)}


def _hidden(params, cfg, last, reqs, hp, batch_size):
    def one(r):
        h_PD = hidden_at(params, cfg, last, r.tokens_PT, r.subject_P)
        return h_PD[0] if hp.constraint == "bare" else h_PD.mean(0)
    return jax.lax.map(one, reqs, batch_size=batch_size)


def memit_spread(params, cfg, layers: tuple, C_LFF, reqs: EditRequest, z_ED, lam, hp: DeltaHParams = MEMIT_HPARAMS,
                 batch_size: int = 16):
    """Step 2 (Algorithm 1, lines 6–13): spread the residuals z − h over ``layers`` at λ; returns (params′, info)."""
    chunked = partial(jax.lax.map, batch_size=batch_size)

    def write(params, x):  # one layer of the band (traced): the program does not grow with the band's width
        i, layer, C_FF = x
        K_EF = chunked(lambda r: keys_at(params, cfg, layer, r.tokens_PT, r.subject_P).mean(0), reqs)
        R_ED = (z_ED - _hidden(params, cfg, layers[-1], reqs, hp, batch_size)) / (len(layers) - i).astype(jnp.float32)
        W_FD = memit_update(value_matrix(params, layer), K_EF, R_ED, C_FF, lam, hp.ridge)
        return with_value_matrix(params, layer, W_FD), jnp.linalg.norm(R_ED, axis=-1).mean()

    band = (jnp.arange(len(layers)), jnp.asarray(layers, jnp.int32), jnp.asarray(C_LFF))
    params, residual_norms = jax.lax.scan(write, params, band)
    final_gap = jnp.linalg.norm(z_ED - _hidden(params, cfg, layers[-1], reqs, hp, batch_size), axis=-1)
    return params, {"residual_norm_per_layer": residual_norms, "final_gap": final_gap}


@partial(jax.jit, static_argnames=("cfg", "layers", "hp", "batch_size"))
def memit_edit(params, cfg, layers: tuple, C_LFF, reqs: EditRequest, hp: DeltaHParams = MEMIT_HPARAMS,
               lam: float = MEMIT_LAMBDA, batch_size: int = 16):
    """Write the E stacked requests ``reqs`` into the layers ``layers`` (C_LFF: one C per layer, same order).

    Per-fact work runs through ``lax.map`` in chunks of ``batch_size`` to bound memory. Returns
    ``(params′, info)``; info has the per-fact target NLL after δ optimisation and the steps taken.
    """
    z_ED, info = memit_targets(params, cfg, layers[-1], reqs, hp, batch_size)
    params, spread = memit_spread(params, cfg, layers, C_LFF, reqs, z_ED, lam, hp, batch_size)
    return params, info | spread
