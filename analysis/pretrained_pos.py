"""Rahman et al. (2026)'s pretrained check: sparse FFN codes, noun- vs verb-specialised neurons, and the effect
of ablating each set on masked-token prediction (a double dissociation).

Definitions (Rahman et al. publish no exact protocol, so these are ours):
* Sparsity: ``analysis.sparsity.layer_sparsity`` per layer (token Gini of |m|, Hurley & Rickard 2009), with
  ``active_fraction`` the share of m > 0 (its ``relu`` rule, used for GELU too).
* Selectivity of neuron (l, i): Welch's t between its coefficients on NOUN and on VERB tokens, two-sided
  (``analysis.stats``), corrected over all L·F neurons (Bonferroni, and Benjamini–Hochberg as the lenient
  variant); effect size Cohen's d with the pooled sd.
  Noun (verb) specialists: Bonferroni-significant with d ≥ d_min (d ≤ −d_min).
* Ablation: every neuron of a set is zeroed (``m = 0``) or set to its mean over the probe tokens; the
  score is the masked-token negative log-likelihood of the gold word, separately for nouns and verbs.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax

from analysis.ablation import mask_sweep
from analysis.stats import benjamini_hochberg, bonferroni, cohens_d, welch_t
from ffnkv.norm import norm


def selectivity(m_noun_NLF, m_verb_MLF, alpha: float = 0.05, d_min: float = 0.5) -> dict:
    """Per-neuron noun-vs-verb test: t, p, Cohen's d, and the specialist masks (all ``[L, F]``)."""
    t, _, p = welch_t(m_noun_NLF, m_verb_MLF)
    d = cohens_d(m_noun_NLF, m_verb_MLF)
    strict = bonferroni(p, alpha)
    return {"t": t, "p": p, "d": d, "bonferroni": strict, "bh": benjamini_hochberg(p, alpha),
            "noun": strict & (np.asarray(d) >= d_min), "verb": strict & (np.asarray(d) <= -d_min)}


def top_k_mask(score_LF, eligible_LF, k: int):
    """The ``k`` eligible neurons with the largest score, as an ``[L, F]`` mask."""
    flat = jnp.where(eligible_LF, score_LF, -jnp.inf).reshape(-1)
    idx = jnp.argsort(-flat)[:k]
    return jnp.zeros(flat.size, bool).at[idx].set(flat[idx] > -jnp.inf).reshape(score_LF.shape)


def random_like_mask(key, mask_LF, n: int):
    """``n`` random masks with the same number of neurons per layer as ``mask_LF``."""
    counts_L = mask_LF.sum(-1)

    def one(k):
        rank_LF = jnp.argsort(jnp.argsort(jax.random.uniform(k, mask_LF.shape), -1), -1)
        return rank_LF < counts_L[:, None]

    return jax.vmap(one)(jax.random.split(key, n))


def mlm_logits(head, E_CD, h_ND, cfg):
    """BERT's MLM head (Devlin et al. 2019) over candidate tokens: LN(gelu(h·W + b)) · E_Cᵀ + bias_C."""
    x = jax.nn.gelu(h_ND @ head["W"] + head["b"], approximate=cfg.gelu_approximate)
    return norm(head["norm"], x, cfg) @ E_CD.T + head["bias"]


def fit_mlm_head(h_ND, target_N, E_CD, cfg, steps: int = 150, lr: float = 1e-3, seed: int = 0, val_fraction=0.2):
    """Fit the MLM head on frozen final hidden states (the decoder stays tied to the word embeddings).

    Early stopping: a first fit on ``1 − val_fraction`` of the examples picks the step count with the lowest
    validation loss; the head is then refitted on all examples for that many steps.
    """
    D, N = h_ND.shape[-1], h_ND.shape[0]
    opt = optax.adamw(lr, weight_decay=0.01)
    init = {"W": jnp.eye(D) + 0.01 * jax.random.normal(jax.random.key(seed), (D, D)), "b": jnp.zeros(D),
            "norm": {"scale": jnp.ones(D), "bias": jnp.zeros(D)}, "bias": jnp.zeros(E_CD.shape[0])}

    def loss(head, h, y):
        return optax.softmax_cross_entropy_with_integer_labels(mlm_logits(head, E_CD, h, cfg), y).mean()

    def val_curve(h, y, h_val, y_val):
        def step(carry, _):
            head, state = carry
            updates, state = opt.update(jax.grad(loss)(head, h, y), state, head)
            head = optax.apply_updates(head, updates)
            return (head, state), loss(head, h_val, y_val)

        return jax.lax.scan(step, (init, opt.init(init)), None, length=steps)[1]

    order = jax.random.permutation(jax.random.key(seed + 1), N)
    n_val = max(1, int(val_fraction * N))
    val, fit = order[:n_val], order[n_val:]
    val_loss = val_curve(h_ND[fit], target_N[fit], h_ND[val], target_N[val])
    best = jnp.argmin(val_loss) + 1

    def step(carry, i):
        head, state = carry
        grad = jax.grad(loss)(head, h_ND, target_N)
        updates, state = opt.update(grad, state, head)
        new = optax.apply_updates(head, updates)
        return jax.tree.map(lambda a, b: jnp.where(i < best, a, b), (new, state), (head, state)), None

    (head, _), _ = jax.lax.scan(step, (init, opt.init(init)), jnp.arange(steps))
    return head, {"val_loss": val_loss, "best_steps": best}


def masked_token_nll(out, aux, cfg):
    """Score for ``analysis.ablation.mask_sweep``: NLL and top-1 correctness of each masked gold token.

    ``aux = (head, E_CD, pos_N, target_N)``: one [MASK] per row at ``pos_N``, ``target_N`` a candidate index.
    """
    head, E_CD, pos_N, target_N = aux
    h_ND = jnp.take_along_axis(out.acts.resid_post[-1], pos_N[:, None, None], axis=1)[:, 0]
    logp = jax.nn.log_softmax(mlm_logits(head, E_CD, h_ND, cfg), -1)
    gold = jnp.take_along_axis(logp, target_N[:, None], -1)[:, 0]
    return -gold, (logp.argmax(-1) == target_N)


def ablation_sweep(params, cfg, head, E_CD, batch, masks_KLF, mean_LF=None, batch_size: int = 4):
    """``masked_token_nll`` with each of K masks ablated (zero, or the mean ``mean_LF``): one compiled sweep.

    ``batch``: tokens [N, T] with one [MASK] per row, ``real`` [N, T], ``pos`` [N], ``target`` [N].
    """
    K, L, F = masks_KLF.shape
    means = jnp.zeros((L, 1, F)) if mean_LF is None else jnp.asarray(mean_LF)[:, None, :]
    use_mean = jnp.full(K, 0.0 if mean_LF is None else 1.0)
    aux = (head, E_CD, batch["pos"], batch["target"])
    return mask_sweep(params, batch["tokens"], masks_KLF, means, use_mean, aux, cfg, masked_token_nll, batch_size,
                      batch["real"])
