"""CounterFact-style scores of fact edits (Meng et al. 2022, §3.3 and Appendix C).

For an edit (s, r, o → o*) with probabilities P(·) of the next token after each prompt:

* ES / EM (efficacy) on the rewrite prompt: the rate of P(o*) > P(o) and the mean of P(o*) − P(o).
* PS / PM (paraphrase / generalisation) on paraphrases of the same fact: the same two quantities.
* NS / NM (neighbourhood / specificity) on prompts of other subjects whose true answer o_n is the fact's own o
  (CounterFact's neighbourhood): the rate of P(o_n) > P(o*) and the mean of P(o_n) − P(o*). Rows of weight 0
  (padding, or a neighbour whose answer's first token is o*'s) are left out.
* S, the harmonic mean of ES, PS and NS; and the top-1 accuracy on facts that were never edited.

Protocols: ``single`` edits every fact into a fresh copy of the model and averages the scores;
``sequential`` and ``batch`` (MEMIT) score every fact on the one model that holds all the edits.
"""
from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from ffnkv import sharding
from ffnkv.model import forward

METRICS = ("ES", "EM", "PS", "PM", "NS", "NM", "unrelated_acc")


@struct.dataclass
class EditProbe:
    """The prompts that score one edit (a leading E axis stacks several)."""

    rewrite_tokens_AT: jax.Array
    rewrite_predict_A: jax.Array
    para_tokens_QT: jax.Array
    para_predict_Q: jax.Array
    para_weight_Q: jax.Array
    neigh_tokens_RT: jax.Array
    neigh_predict_R: jax.Array
    neigh_true_R: jax.Array
    neigh_weight_R: jax.Array
    new: jax.Array
    old: jax.Array


@struct.dataclass
class FactSet:
    """Prompts of facts that are never edited, with their true answers, for the unrelated-fact accuracy."""

    tokens_NT: jax.Array
    predict_N: jax.Array
    answer_N: jax.Array


def next_token_probs(params, cfg, tokens_NT, predict_N):
    """P(next token) at position ``predict_N[n]`` of each prompt: [N, V]."""
    logits = forward(params, tokens_NT, cfg).logits[jnp.arange(tokens_NT.shape[0]), predict_N]
    return jax.nn.softmax(logits, axis=-1)


def probe_scores(params, cfg, probe: EditProbe) -> dict:
    """ES, EM, PS, PM, NS, NM of one edit (scalars)."""
    p_AV = next_token_probs(params, cfg, probe.rewrite_tokens_AT, probe.rewrite_predict_A)
    p_QV = next_token_probs(params, cfg, probe.para_tokens_QT, probe.para_predict_Q)
    p_RV = next_token_probs(params, cfg, probe.neigh_tokens_RT, probe.neigh_predict_R)
    gap_A = p_AV[:, probe.new] - p_AV[:, probe.old]
    gap_Q = p_QV[:, probe.new] - p_QV[:, probe.old]
    gap_R = p_RV[jnp.arange(p_RV.shape[0]), probe.neigh_true_R] - p_RV[:, probe.new]
    w_Q = probe.para_weight_Q / jnp.maximum(probe.para_weight_Q.sum(), 1e-9)
    w_R = probe.neigh_weight_R / jnp.maximum(probe.neigh_weight_R.sum(), 1e-9)
    return {"ES": jnp.mean(gap_A > 0), "EM": jnp.mean(gap_A), "PS": jnp.sum(w_Q * (gap_Q > 0)),
            "PM": jnp.sum(w_Q * gap_Q),
            "NS": jnp.sum(w_R * (gap_R > 0)), "NM": jnp.sum(w_R * gap_R)}


def fact_accuracy(params, cfg, facts: FactSet):
    """Top-1 accuracy of the true answers of ``facts``."""
    p_NV = next_token_probs(params, cfg, facts.tokens_NT, facts.predict_N)
    return jnp.mean(jnp.argmax(p_NV, -1) == facts.answer_N)


@partial(jax.jit, static_argnames=("cfg", "batch_size", "mesh"))
def score_edited(params, cfg, probes: EditProbe, unrelated: FactSet, batch_size: int = 32, mesh=None) -> dict:
    """Scores of every stacked probe on one (edited) model: per-edit arrays [E] plus the unrelated accuracy.
    ``mesh``: the probes split over its "data" axis (``ffnkv.sharding.sweep``)."""
    scores = sharding.sweep(lambda p, pr: probe_scores(p, cfg, pr), probes, mesh, batch_size, (params,))
    return scores | {"unrelated_acc": fact_accuracy(params, cfg, unrelated)}


def score_single_edits(params, cfg, edit_fn, reqs, probes: EditProbe, unrelated: FactSet, batch_size: int = 8,
                       edit_args=(), mesh=None):
    """Each request edited into a fresh copy of ``params`` by ``edit_fn(params, req, *edit_args) -> (params′, info)``.

    Returns per-edit arrays [E] of every metric (the unrelated accuracy measured after each edit) and the
    edit infos. One compiled program: ``lax.map`` over (request, probe) pairs, split over the "data" axis of
    ``mesh`` (``ffnkv.sharding.sweep``: each device, or process, edits its share); ``params`` and ``edit_args``
    are arguments of it, not constants folded into it (a 135M-parameter model would take minutes to compile).
    """

    def one(p, args, facts, x):
        req, probe = x
        edited, info = edit_fn(p, req, *args)
        return probe_scores(edited, cfg, probe) | {"unrelated_acc": fact_accuracy(edited, cfg, facts)}, info

    run = jax.jit(lambda p, args, us, rs, ps: sharding.sweep(one, (rs, ps), mesh, batch_size, (p, args, us)))
    return run(params, tuple(edit_args), unrelated, reqs, probes)


def summarise(scores: dict) -> dict:
    """Means of the per-edit metrics and S = harmonic mean of ES, PS, NS (CounterFact's score); ``per_edit``
    keeps each edit's ES, PS, NS (the items of the verdicts' intervals)."""
    out = {k: float(np.mean(np.asarray(scores[k]))) for k in METRICS if k in scores}
    parts = [out[k] for k in ("ES", "PS", "NS")]
    out["S"] = 0.0 if min(parts) <= 0 else float(len(parts) / sum(1.0 / p for p in parts))
    out["per_edit"] = {k: np.asarray(scores[k], float).ravel().tolist() for k in ("ES", "PS", "NS") if k in scores}
    return out
