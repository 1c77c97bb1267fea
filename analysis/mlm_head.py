"""A masked LM's prediction of a masked word, for ablations on an encoder checkpoint that may lack its MLM head
(Rahman et al. 2026's pretrained check, ``studies.pos_specialisation``).

* ``fit_mlm_head``: BERT's MLM head (Devlin et al. 2019) fitted on frozen final hidden states, its decoder tied
  to the word embeddings of the candidate tokens, with early stopping on a held-out fifth.
* ``masked_token_nll``: the score of ``analysis.ablation.mask_sweep`` for a masked word: NLL and top-1
  correctness of the gold token.
* ``ablation_sweep``: that score under every intervention of ``analysis.ablation.intervention_sets`` (zero or
  mean ablation per row): one compiled program.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

from analysis.ablation import mask_sweep
from ffnkv.norm import norm


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


def ablation_sweep(params, cfg, head, E_CD, batch, masks_SLF, use_mean_S, mean_LF=None, batch_size: int = 4):
    """``masked_token_nll`` with the neurons of each ``masks_SLF[s]`` ablated: zeroed, or set to their mean
    ``mean_LF`` where ``use_mean_S[s]`` = 1 (rows as ``analysis.ablation.intervention_sets`` gives them).

    ``batch``: tokens [N, T] with one [MASK] per row, ``real`` [N, T], ``pos`` [N], ``target`` [N].
    """
    S, L, F = masks_SLF.shape
    means = jnp.zeros((L, 1, F)) if mean_LF is None else jnp.asarray(mean_LF)[:, None, :]
    aux = (head, E_CD, batch["pos"], batch["target"])
    return mask_sweep(params, batch["tokens"], jnp.asarray(masks_SLF), means, jnp.asarray(use_mean_S, jnp.float32),
                      aux, cfg, masked_token_nll, batch_size, batch["real"])
