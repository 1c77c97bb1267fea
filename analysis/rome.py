"""ROME: Rank-One Model Editing of an FFN value matrix (Meng et al. 2022, §3).

The FFN of layer l maps a key k = f(x·K) (the coefficients m, shape [F]) to a value k·W_out (shape [D]).
A fact (s, r, o) is rewritten to (s, r, o*) in three steps:

1. **k*** — the key at the subject's last token, averaged over the rewrite prompt behind N context prefixes
   (ROME eq. 3).
2. **v*** — a vector δ is added to the layer's MLP output at that position in every prompt and optimised
   (ROME eq. 4) to minimise the target NLL −log P(o* | prefix + prompt), plus ``kl_factor`` × the KL divergence
   from the unedited next-token distribution on essence prompts ("{s} is a"), plus
   ``weight_decay`` · ‖δ‖ / ‖v₀‖², with ‖δ‖ clamped to ``clamp_factor`` · ‖v₀‖; v* = v₀ + δ with v₀ = k*·W.
3. **the update** — the closed form of ROME eq. 2 with u = C⁻¹k*:
   W′ = W + u (v* − k_c·W)ᵀ / (uᵀk_c), so k_c·W′ = v*. ``constraint="bare"`` (the default, as ROME's code
   ``compute_v`` does): k_c is the key of the bare rewrite prompt and v* = k_c·W + δ, while u comes from the
   prefix-averaged k*. ``constraint="mean"``: k_c = k* (the key-consistent form of Gupta et al. 2024,
   "Rebuilding ROME"), which keeps long sequences of edits from collapsing the model.

Defaults are ROME's GPT-2 XL hyper-parameters (``ROME_HPARAMS``): Adam, lr 0.5, 20 steps, early stop at a
loss below 0.05, KL factor 0.0625, weight decay 0.5, clamp factor 4, context prefixes 10 of 5 tokens and
10 of 10 tokens plus the bare prompt. ``ridge`` (not in the paper; C is full rank there) adds
``ridge · mean(diag C)`` to C so dead neurons do not make it singular.
"""
from __future__ import annotations

import dataclasses
from functools import partial

import jax
import jax.numpy as jnp
import optax
from flax import struct

from analysis.edit_eval import EditProbe, FactSet, score_single_edits
from ffnkv.hooks import Hooks
from ffnkv.model import forward


@dataclasses.dataclass(frozen=True)
class DeltaHParams:
    """How v* (ROME) or z (MEMIT) is optimised; ``prefixes`` is a tuple of (length, count) context prefixes."""

    lr: float = 0.5
    steps: int = 20
    early_stop: float = 5e-2
    kl_factor: float = 0.0625
    weight_decay: float = 0.5
    clamp_factor: float = 4.0
    prefixes: tuple = ((5, 10), (10, 10))
    ridge: float = 1e-4
    constraint: str = "bare"


ROME_HPARAMS = DeltaHParams()
CONSTRAINTS = ("bare", "mean")


@struct.dataclass
class EditRequest:
    """One edit as arrays (a leading E axis stacks several).

    ``tokens_PT`` are the rewrite prompt behind each context prefix (row 0: no prefix), ``subject_P`` the
    index of the subject's last token, ``predict_P`` the position whose next token should become ``target``.
    ``essence_*`` are the "{s} is a" prompts and the positions whose next-token distribution the KL term keeps.
    """

    tokens_PT: jax.Array
    subject_P: jax.Array
    predict_P: jax.Array
    target: jax.Array
    essence_tokens_MT: jax.Array
    essence_subject_M: jax.Array
    essence_predict_M: jax.Array


def keys_at(params, cfg, layer, tokens_NT, pos_N):
    """The FFN coefficients k (input of W_out) of ``layer`` at position ``pos_N[n]`` of each prompt: [N, F]."""
    m_LNTF = forward(params, tokens_NT, cfg).acts.ffn
    return m_LNTF[layer, jnp.arange(tokens_NT.shape[0]), pos_N]


def hidden_at(params, cfg, layer, tokens_NT, pos_N):
    """The residual stream after block ``layer`` (MEMIT's h^L) at ``pos_N``: [N, D]."""
    h_LNTD = forward(params, tokens_NT, cfg).acts.resid_post
    return h_LNTD[layer, jnp.arange(tokens_NT.shape[0]), pos_N]


def value_matrix(params, layer):
    return params["blocks"]["ffn"]["W_out"][layer]


def with_value_matrix(params, layer, W_FD):
    """``params`` with layer ``layer``'s W_out replaced (a new pytree; the input is untouched)."""
    ffn = dict(params["blocks"]["ffn"], W_out=params["blocks"]["ffn"]["W_out"].at[layer].set(W_FD))
    return dict(params, blocks=dict(params["blocks"], ffn=ffn))


def regularised_inverse(C_FF, ridge):
    """(C + ridge · mean(diag C) · I)⁻¹."""
    scale = ridge * jnp.maximum(jnp.mean(jnp.diag(C_FF)), 1e-12)
    return jnp.linalg.inv(C_FF + scale * jnp.eye(C_FF.shape[0], dtype=C_FF.dtype))


def rank_one_update(W_FD, k_F, v_D, Cinv_FF, k_u_F=None):
    """ROME eq. 2 in closed form: W′ = W + u (v − k·W)ᵀ / (uᵀk) with u = C⁻¹k_u (k_u = k unless given), so
    that k·W′ = v."""
    u_F = Cinv_FF @ (k_F if k_u_F is None else k_u_F)
    return W_FD + jnp.outer(u_F, v_D - k_F @ W_FD) / (u_F @ k_F)


def site_hooks(cfg, site, layer, pos_N, T, delta_D):
    onehot_NT = jax.nn.one_hot(pos_N, T, dtype=jnp.float32)
    add_LNTD = jnp.zeros((cfg.n_layers,) + onehot_NT.shape + delta_D.shape, jnp.float32)
    return Hooks(**{f"{site}_add": add_LNTD.at[layer].set(onehot_NT[..., None] * delta_D)})


def safe_norm(x):
    """‖x‖₂ whose gradient stays finite at x = 0."""
    return jnp.sqrt(jnp.sum(x * x) + 1e-20)


def optimise_delta(params, cfg, site: str, layer: int, req: EditRequest, ref_norm, hp: DeltaHParams):
    """ROME eq. 4 / MEMIT eq. 16: δ added to ``site`` ("mlp_out" or "resid") of ``layer`` at the subject.

    Adam inside a ``lax.while_loop``; stops after ``hp.steps`` steps or once the loss is below
    ``hp.early_stop``. Returns ``(delta_D, final_nll, steps_taken)``.
    """
    N, T = req.tokens_PT.shape
    M, Te = req.essence_tokens_MT.shape
    base_logits = forward(params, req.essence_tokens_MT, cfg).logits[jnp.arange(M), req.essence_predict_M]
    base_logp_MV = jax.lax.stop_gradient(jax.nn.log_softmax(base_logits))

    def loss_fn(delta_D):
        hooks = site_hooks(cfg, site, layer, req.subject_P, T, delta_D)
        logits = forward(params, req.tokens_PT, cfg, hooks).logits[jnp.arange(N), req.predict_P]
        nll = -jnp.mean(jax.nn.log_softmax(logits)[:, req.target])
        hooks_e = site_hooks(cfg, site, layer, req.essence_subject_M, Te, delta_D)
        logits_e = forward(params, req.essence_tokens_MT, cfg, hooks_e).logits[jnp.arange(M), req.essence_predict_M]
        kl = jnp.mean(jnp.sum(jnp.exp(base_logp_MV) * (base_logp_MV - jax.nn.log_softmax(logits_e)), -1))
        decay = hp.weight_decay * safe_norm(delta_D) / ref_norm**2
        return nll + hp.kl_factor * kl + decay, nll

    opt = optax.adam(hp.lr)
    max_norm = hp.clamp_factor * ref_norm
    delta0 = jnp.zeros((cfg.d_model,), jnp.float32)
    loss0, nll0 = loss_fn(delta0)

    def cond(state):
        step, _, _, loss, _ = state
        return (step < hp.steps) & (loss >= hp.early_stop)

    def body(state):
        step, delta, opt_state, _, _ = state
        grad = jax.grad(lambda d: loss_fn(d)[0])(delta)
        updates, opt_state = opt.update(grad, opt_state, delta)
        delta = optax.apply_updates(delta, updates)
        delta = delta * jnp.minimum(1.0, max_norm / safe_norm(delta))
        loss, nll = loss_fn(delta)
        return step + 1, delta, opt_state, loss, nll

    steps, delta, _, _, nll = jax.lax.while_loop(cond, body, (jnp.int32(0), delta0, opt.init(delta0), loss0, nll0))
    return delta, nll, steps


def rome_edit(params, cfg, layer: int, Cinv_FF, req: EditRequest, hp: DeltaHParams = ROME_HPARAMS):
    """One ROME edit, a pure function params -> (params′, info); info has k*, the constrained key k_c, v*,
    the NLL and steps. ``hp.constraint`` picks k_c: the bare prompt's key ("bare") or k* ("mean")."""
    if hp.constraint not in CONSTRAINTS:
        raise ValueError(f"constraint {hp.constraint!r} is not one of {CONSTRAINTS}")
    k_PF = keys_at(params, cfg, layer, req.tokens_PT, req.subject_P)
    k_F = k_PF.mean(0)
    k_c_F = k_PF[0] if hp.constraint == "bare" else k_F
    W_FD = value_matrix(params, layer)
    v0_D = k_c_F @ W_FD
    delta_D, nll, steps = optimise_delta(params, cfg, "mlp_out", layer, req, safe_norm(v0_D), hp)
    v_D = v0_D + delta_D
    new = with_value_matrix(params, layer, rank_one_update(W_FD, k_c_F, v_D, Cinv_FF, k_F))
    return new, {"k_star": k_F, "k_c": k_c_F, "v_star": v_D, "delta_norm": safe_norm(delta_D), "nll": nll,
                 "steps": steps}


@partial(jax.jit, static_argnames=("cfg", "hp"))
def rome_sequential(params, cfg, layer: int, C_FF, reqs: EditRequest, hp: DeltaHParams = ROME_HPARAMS):
    """Apply E stacked requests one after another (``lax.scan``); returns the final params and per-edit info.
    ``layer`` is traced: one program serves every layer."""
    Cinv_FF = regularised_inverse(C_FF, hp.ridge)
    return jax.lax.scan(lambda p, r: rome_edit(p, cfg, layer, Cinv_FF, r, hp), params, reqs)


@partial(jax.jit, static_argnames=("cfg", "hp", "batch_size", "mesh"))
def rome_single_scores(params, cfg, layer, C_FF, reqs: EditRequest, probes: EditProbe, unrelated: FactSet,
                       hp: DeltaHParams = ROME_HPARAMS, batch_size: int = 8, mesh=None):
    """Each of E stacked requests edited by ROME into a fresh copy of ``params`` at ``layer`` and scored as
    CounterFact does (``analysis.edit_eval.score_single_edits``): per-edit scores and infos [E].

    ``layer`` is traced, like ``params`` and ``C_FF``: one compiled program serves every layer of a model of any
    depth (the editing study's layer rule runs ROME at every layer through it). ``mesh``: the edits split over
    its "data" axis (each device, or process, edits its share; ``ffnkv.sharding.sweep``)."""
    Cinv_FF = regularised_inverse(C_FF, hp.ridge)
    edit_fn = lambda p, r, Cinv, l: rome_edit(p, cfg, l, Cinv, r, hp)
    return score_single_edits(params, cfg, edit_fn, reqs, probes, unrelated, batch_size, (Cinv_FF, layer), mesh)


@partial(jax.jit, static_argnames=("cfg", "n", "length", "top_k"))
def sample_prefixes(params, cfg, key, start_token, n: int, length: int, top_k: int = 5):
    """ROME's context prefixes: ``n`` texts of ``length`` tokens sampled from the model itself (top-k) after
    ``start_token``; returns [n, 1 + length] tokens starting with ``start_token``."""
    tokens = jnp.full((n, 1 + length), start_token, jnp.int32)

    def step(t, carry):
        tokens, key = carry
        key, sub = jax.random.split(key)
        logits_NV = forward(params, tokens, cfg).logits[:, t]
        top_NK, idx_NK = jax.lax.top_k(logits_NV, top_k)
        pick_N = jax.random.categorical(sub, top_NK, axis=-1)
        return tokens.at[:, t + 1].set(jnp.take_along_axis(idx_NK, pick_N[:, None], -1)[:, 0]), key

    return jax.lax.fori_loop(0, length, step, (tokens, key))[0]
