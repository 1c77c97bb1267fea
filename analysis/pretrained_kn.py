"""Knowledge neurons (Dai et al. 2022) on a real model, one prompt per fact: ranked candidates and the
generic-neuron split.

Attributions come from ``analysis.attribution.integrated_gradients(..., path="joint")`` (all layers' coefficients
at the last position on one straight path; see that module) and the suppress / amplify effect from
``attribution.suppression_amplification(..., all_positions=True)``. What is specific to this study: with a
single prompt per fact, Dai et al.'s refinement across paraphrases cannot run, so the candidates of each
prompt (coarse neurons, attribution > 0.2 × the prompt's maximum) are ranked, neurons that are candidates for
facts of several relations are set aside as *generic*, and at most ``max_neurons`` remain per fact.
"""
from __future__ import annotations

import numpy as np

from analysis.attribution import coarse_neurons


def candidate_neurons(attr_LF, threshold: float = 0.2, limit: int = 20) -> list[tuple[int, int]]:
    """The coarse neurons of one prompt (Dai et al.'s §3.2 threshold, :func:`coarse_neurons`) as
    (layer, neuron) pairs, strongest attribution first, at most ``limit``."""
    attr_LF = np.asarray(attr_LF)
    layers, units = np.nonzero(coarse_neurons(attr_LF[None], threshold)[0])
    order = np.argsort(-attr_LF[layers, units], kind="stable")[:limit]
    return [(int(layers[i]), int(units[i])) for i in order]


def split_generic(candidates, relations, min_relations: int = 3, max_neurons: int = 5):
    """Knowledge neurons per fact, and the generic neurons that are candidates for facts of ≥ ``min_relations``
    different relations (they express something other than the fact, e.g. the answer's position or format —
    our stand-in for Dai et al.'s refinement across paraphrases, which needs several prompts per fact)."""
    seen: dict[tuple, set] = {}
    for cands, rel in zip(candidates, relations):
        for n in cands:
            seen.setdefault(n, set()).add(rel)
    generic = sorted(n for n, rels in seen.items() if len(rels) >= min_relations)
    specific = [[n for n in cands if n not in generic][:max_neurons] for cands in candidates]
    return specific, generic
