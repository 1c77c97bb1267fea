"""Op-specialist and generalist neurons (Rahman et al. 2026, "non-overlapping groups of neurons … SUM vs MAX").

Definitions (Rahman et al. published no protocol; these are ours). Activations are the magnitudes
``a = |m|`` of the memory coefficients at the answer position (the last token, whose logits predict the
answer) over a probe set never seen in training; K ops, neuron (l, i), op k, "rest" = the probes of all
other ops pooled.

* **Per-op statistics**: mean ``μ_k``, standard deviation ``s_k`` and active fraction of ``m`` on op k's probes
  (active as in ``analysis.sparsity.active_mask``).
* **Selectivity index**: ``SI_k = (μ_k − μ_rest) / (μ_k + μ_rest)`` ∈ [−1, 1] (0 when both are 0).
* **Significance**: one-sided Welch t-test of ``μ_k > μ_rest`` (``analysis.stats.welch``), with the
  Benjamini–Hochberg correction (1995) over all K · L_ffn · F tests at FDR ``q``.
* **Specialist of op k**: significant after correction and ``SI_k ≥ si_min``. A neuron may specialise in more
  than one op (then the ops' sets overlap).
* **Generalist**: active on at least ``generalist_min_active`` of the probes of *every* op and a specialist
  of none.
* **Overlap**: Jaccard ``|S_a ∩ S_b| / |S_a ∪ S_b|`` between the specialist sets of every pair of ops, per
  layer and over all FFN layers pooled (undefined — null — when both sets are empty).
"""
from __future__ import annotations

import itertools

import jax.numpy as jnp
import numpy as np

from analysis.sparsity import active_mask
from analysis.stats import benjamini_hochberg, welch

Q_FDR = 0.01
SI_MIN = 0.3
GENERALIST_MIN_ACTIVE = 0.5


def op_statistics(m_LNF, op_N, n_ops: int, kind: str) -> dict:
    """Per-op mean/var of |m|, active fraction, and the rest-of-ops mean/var, each ``[K, L, F]``; counts ``[K]``."""
    a_LNF = jnp.abs(jnp.asarray(m_LNF, jnp.float32))
    active_LNF = active_mask(jnp.asarray(m_LNF), kind)
    onehot_KN = jnp.asarray(np.eye(n_ops, dtype=np.float32)[np.asarray(op_N)].T)
    n_K = onehot_KN.sum(1)
    rest_KN = 1.0 - onehot_KN
    n_rest_K = rest_KN.sum(1)

    def moments(w_KN, n_K):
        mean = jnp.einsum("kn,lnf->klf", w_KN, a_LNF) / n_K[:, None, None]
        sq = jnp.einsum("kn,lnf->klf", w_KN, a_LNF ** 2) / n_K[:, None, None]
        return mean, jnp.maximum(sq - mean ** 2, 0.0) * n_K[:, None, None] / jnp.maximum(n_K - 1, 1)[:, None, None]

    mean, var = moments(onehot_KN, n_K)
    mean_rest, var_rest = moments(rest_KN, n_rest_K)
    active = jnp.einsum("kn,lnf->klf", onehot_KN, active_LNF.astype(jnp.float32)) / n_K[:, None, None]
    return {"mean": mean, "var": var, "mean_rest": mean_rest, "var_rest": var_rest, "active": active,
            "n": np.asarray(n_K), "n_rest": np.asarray(n_rest_K)}


def selectivity(mean_KLF, mean_rest_KLF):
    """``SI = (μ_k − μ_rest) / (μ_k + μ_rest)``, 0 where both are 0."""
    total = mean_KLF + mean_rest_KLF
    return jnp.where(total > 0, (mean_KLF - mean_rest_KLF) / jnp.where(total > 0, total, 1.0), 0.0)


def jaccard(a, b) -> float | None:
    union = np.logical_or(a, b).sum()
    return None if union == 0 else float(np.logical_and(a, b).sum() / union)


def specialisation(m_LNF, op_N, ops, kind: str, layers, q: float = Q_FDR, si_min: float = SI_MIN,
                   generalist_min_active: float = GENERALIST_MIN_ACTIVE) -> dict:
    """Specialists, generalists and overlaps from answer-position coefficients ``m_LNF`` (see module docstring).

    ``layers`` lists the FFN layers (tests and masks cover only these; other rows are False). Returns numpy
    arrays: ``si``/``p``/``specialist`` ``[K, L, F]``, ``generalist`` ``[L, F]``, ``mean``/``active`` ``[K, L, F]``,
    and ``jaccard`` {"A|B": {"pooled": x, "<layer>": x}}.
    """
    n_ops = len(ops)
    stats = op_statistics(m_LNF, op_N, n_ops, kind)
    n_K, n_rest_K = stats["n"], stats["n_rest"]
    if (n_K < 2).any():
        raise ValueError("every op needs at least two probes")
    p = np.stack([np.asarray(welch(stats["mean"][k], stats["var"][k], n_K[k], stats["mean_rest"][k],
                                   stats["var_rest"][k], n_rest_K[k], "greater")[2]) for k in range(n_ops)])
    si = np.asarray(selectivity(stats["mean"], stats["mean_rest"]))
    layer_L = np.zeros(p.shape[1], bool)
    layer_L[list(layers)] = True
    reject = np.zeros_like(p, bool)
    reject[:, layer_L] = benjamini_hochberg(p[:, layer_L], q)
    specialist = reject & (si >= si_min)
    active = np.asarray(stats["active"])
    generalist = (active >= generalist_min_active).all(0) & ~specialist.any(0) & layer_L[:, None]
    overlap = {}
    for a, b in itertools.combinations(range(n_ops), 2):
        row = {"pooled": jaccard(specialist[a], specialist[b])}
        row |= {str(l): jaccard(specialist[a, l], specialist[b, l]) for l in layers}
        overlap[f"{ops[a]}|{ops[b]}"] = row
    return {"si": si, "p": p, "specialist": specialist, "generalist": generalist,
            "mean": np.asarray(stats["mean"]), "active": active, "jaccard": overlap, "layers": list(layers)}


def summary(result: dict, ops) -> dict:
    """JSON-ready counts per op and layer, Jaccard overlaps and the distribution of each neuron's max SI."""
    layers = result["layers"]
    spec, gen = result["specialist"], result["generalist"]
    max_si = result["si"][:, layers].max(0).ravel() if layers else np.zeros(0)
    hist, edges = np.histogram(max_si, bins=20, range=(-1.0, 1.0))
    return {
        "n_specialists": {op: {str(l): int(spec[k, l].sum()) for l in layers} for k, op in enumerate(ops)},
        "n_generalists": {str(l): int(gen[l].sum()) for l in layers},
        "n_active_for_every_op": {str(l): int((result["active"][:, l] >= GENERALIST_MIN_ACTIVE).all(0).sum())
                                  for l in layers},
        "n_multi_op_specialists": {str(l): int((spec[:, l].sum(0) > 1).sum()) for l in layers},
        "jaccard": result["jaccard"],
        # per op pair, the specialists (all layers) in both sets and in either: the Jaccard's 0/1 items per neuron
        "overlap": {pair: {"both": int(np.logical_and(spec[a], spec[b]).sum()),
                           "union": int(np.logical_or(spec[a], spec[b]).sum())}
                    for pair, (a, b) in zip(result["jaccard"], itertools.combinations(range(len(ops)), 2))},
        "max_si_histogram": {"counts": hist.tolist(), "edges": edges.tolist()},
        "max_si_mean": float(max_si.mean()) if max_si.size else None,
    }
