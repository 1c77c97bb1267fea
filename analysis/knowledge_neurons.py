"""Knowledge-neuron selection (Dai et al. 2022, §3.2) from integrated-gradient attributions
(``analysis.integrated_gradients``), and how knowledge neurons are shared within and across relations (§5.1).

Attributions ``attr_NLF`` [N, L, F] of any encoded prompts (real-model prompts too), grouped by fact or relation.
"""
from __future__ import annotations

import numpy as np


def coarse_neurons(attr_NLF, threshold: float = 0.2) -> np.ndarray:
    """Per prompt, the neurons whose attribution exceeds ``threshold`` × that prompt's largest attribution."""
    top_N = attr_NLF.reshape(len(attr_NLF), -1).max(-1)
    return (attr_NLF > threshold * top_N[:, None, None]) & (attr_NLF > 0)


def refine_neurons(coarse_PLF, share: float = 0.7, target: tuple[int, int] = (2, 5), step: float = 0.05,
                   share_bounds: tuple[float, float] = (0.5, 1.0)) -> tuple[np.ndarray, float]:
    """Neurons in at least ``share`` of one fact's prompts; ``share`` moves in ``step``s toward ``target``.

    Dai et al. keep neurons shared by > p% of the fact's prompts and tune p so that facts get 2–5 neurons.
    Here p starts at ``share``; while more than ``target[1]`` survive it rises (up to ``share_bounds[1]``),
    while fewer than ``target[0]`` survive it falls (down to ``share_bounds[0]``). Returns the mask and p.
    """
    freq_LF = coarse_PLF.mean(0)
    lo, hi = share_bounds
    pick = lambda p: freq_LF >= p - 1e-6
    p = share
    while pick(p).sum() > target[1] and p + step <= hi + 1e-6:
        p += step
    while pick(p).sum() < target[0] and p - step >= lo - 1e-6:
        p -= step
    return pick(p), float(p)


def knowledge_neurons(attr_NLF, fact_N, threshold: float = 0.2, share: float = 0.7,
                      target: tuple[int, int] = (2, 5), threshold_step: float = 0.05, exclude_LF=None) -> list[dict]:
    """The knowledge neurons of each fact (prompts grouped by ``fact_N``): ``[{fact, neurons, share, threshold}]``.

    Coarse neurons per prompt (:func:`coarse_neurons`), then :func:`refine_neurons`. Where even p = 1 leaves
    more than ``target[1]`` neurons, the coarse threshold rises in ``threshold_step``s (up to 0.95) — our
    extension of Dai et al.'s p adjustment for models whose prompts share many high-attribution neurons.
    With one prompt per fact the refinement keeps every coarse neuron and only the threshold rule trims.
    ``exclude_LF`` (e.g. :func:`generic_neurons`) marks neurons that are never selected.
    """
    keep_LF = True if exclude_LF is None else ~np.asarray(exclude_LF, bool)
    out = []
    for fact in np.unique(fact_N):
        rows = np.flatnonzero(fact_N == fact)
        t = threshold
        while True:
            coarse = coarse_neurons(attr_NLF[rows], t) & keep_LF
            mask_LF, p = refine_neurons(coarse, share, target)
            if mask_LF.sum() <= target[1] or t + threshold_step > 0.95 + 1e-6:
                break
            t += threshold_step
        layers, units = np.nonzero(mask_LF)
        order = np.argsort(-attr_NLF[rows].mean(0)[layers, units])
        out.append({"fact": int(fact), "share": p, "threshold": float(t),
                    "n_coarse_mean": float(coarse_neurons(attr_NLF[rows], threshold).sum((1, 2)).mean()),
                    "neurons": [[int(layers[i]), int(units[i])] for i in order]})
    return out


def generic_neurons(attr_NLF, relation_N, threshold: float = 0.2, min_relations: int = 3) -> np.ndarray:
    """``[L, F]`` mask of neurons that are coarse neurons for prompts of ≥ ``min_relations`` different relations.

    They express something other than a fact (the answer's position or format); setting them aside is our
    stand-in for Dai et al.'s refinement across paraphrases where a fact has a single prompt.
    """
    coarse_NLF = coarse_neurons(attr_NLF, threshold)
    relation_N = np.asarray(relation_N)
    per_relation = np.stack([coarse_NLF[relation_N == r].any(0) for r in np.unique(relation_N)])
    return per_relation.sum(0) >= min_relations


def relation_sharing(neurons_by_fact: list[list[list[int]]], relation_K, min_share: float = 0.5) -> dict:
    """Neurons shared by facts of one relation, and intra- vs inter-relation overlap (Dai et al. 2022, §5.1).

    For each relation: the neurons in ≥ ``min_share`` of its facts. Overlap: the mean number of knowledge
    neurons two facts share, over pairs of facts with the same relation and with different relations.
    """
    sets = [set(map(tuple, ns)) for ns in neurons_by_fact]
    relation_K = np.asarray(relation_K)
    per_relation = {}
    for rel in np.unique(relation_K):
        idx = np.flatnonzero(relation_K == rel)
        counts: dict = {}
        for k in idx:
            for n in sets[k]:
                counts[n] = counts.get(n, 0) + 1
        shared = sorted((n for n, c in counts.items() if c >= min_share * len(idx)), key=lambda n: -counts[n])
        per_relation[str(rel)] = {"n_facts": int(len(idx)),
                                  "shared": [[int(a), int(b), counts[(a, b)]] for a, b in shared]}
    same, diff = [], []
    for a in range(len(sets)):
        for b in range(a + 1, len(sets)):
            (same if relation_K[a] == relation_K[b] else diff).append(len(sets[a] & sets[b]))
    return {"per_relation": per_relation, "min_share": min_share,
            "intra_relation_overlap": float(np.mean(same)) if same else None,
            "inter_relation_overlap": float(np.mean(diff)) if diff else None}
