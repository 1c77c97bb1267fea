"""The verdict rules of studies.verdicts on hand-made results: each rule's outcome follows from our own
chance baselines, not from the paper's numbers."""
from __future__ import annotations

import pytest

from studies import verdicts as V


def _mem(agreement, baseline, sd, zero, zero_shuffled):
    L = len(agreement)
    return {"agreement": {"agreement": agreement, "baseline": baseline, "baseline_sd": sd},
            "composition": {"zero_agreement": zero, "zero_agreement_shuffled": zero_shuffled,
                            "refinement": {"residual": [0.6] * L, "ffn": [0.1] * L, "both": [0.1] * L, "neither": [0.2] * L}},
            "removal": {"last": {"mean_relative_change": [-0.5] * L}, "first": {"mean_relative_change": [-0.1] * L}}}


def test_agreement_needs_to_clear_the_shuffled_baseline_by_two_sd():
    holds = V.geva_memories(_mem([0.01, 0.01, 0.05, 0.06], [0.0, 0.0, 0.01, 0.01], [0.0, 0.0, 0.005, 0.005],
                                 [0.5] * 4, [0.6] * 4), "m")[0]
    assert holds["verdict"] == "holds"
    noisy = V.geva_memories(_mem([0.01, 0.01, 0.05, 0.06], [0.0, 0.0, 0.01, 0.01], [0.0, 0.0, 0.03, 0.03],
                                 [0.5] * 4, [0.6] * 4), "m")[0]
    assert noisy["verdict"] == "fails"
    flat = V.geva_memories(_mem([0.08, 0.08, 0.05, 0.05], [0.0] * 4, [0.001] * 4, [0.5] * 4, [0.6] * 4), "m")[0]
    assert flat["verdict"] == "partial"


@pytest.mark.parametrize("zero, chance, verdict", [(0.12, 0.15, "holds"), (0.12, 0.30, "partial"), (0.12, 0.9, "fails")])
def test_zero_agreement_is_judged_relative_to_shuffled_values(zero, chance, verdict):
    row = V.geva_memories(_mem([0.0] * 4, [0.0] * 4, [0.0] * 4, [zero] * 4, [chance] * 4), "m")[2]
    assert row["verdict"] == verdict
    assert "shuffled-values chance level" in row["ours"]


def test_promotion_uses_the_models_uniform_rate():
    promo = {"top_n": 10, "uniform": 0.01, "dominant_fraction": [[0.06], [0.03]], "values_ever_in_top_n": [0.5, 0.5]}
    assert V.geva_promotion(promo, 1000)["verdict"] == "partial"
    assert V.geva_promotion(promo | {"uniform": 0.005}, 1000)["verdict"] == "holds"


def _attr(layer_counts, mass, effects):
    return {"summary": {"layer_counts": layer_counts, "mean_neurons_per_fact": 3.0, "effects_mean": effects,
                        "layer_baselines": {"neuron_count": [0.25] * 4, "attribution_mass": mass}}}


GOOD = {"x0_own": -0.4, "x2_own": 0.5, "x0_unrelated": -0.01, "x2_unrelated": 0.01, "x0_random": -0.02, "x2_random": 0.02}


def test_dai_effects_against_random_neurons():
    assert V.dai(_attr([1, 1, 1, 1], [0.25] * 4, GOOD), 4)[0]["verdict"] == "holds"
    random_as_strong = GOOD | {"x0_random": -0.5, "x2_random": 0.6}
    assert V.dai(_attr([1, 1, 1, 1], [0.25] * 4, random_as_strong), 4)[0]["verdict"] == "partial"
    wrong_sign = GOOD | {"x0_own": 0.1}
    assert V.dai(_attr([1, 1, 1, 1], [0.25] * 4, wrong_sign), 4)[0]["verdict"] == "partial"
    unspecific = wrong_sign | {"x0_unrelated": -0.3, "x2_unrelated": 0.6}
    assert V.dai(_attr([1, 1, 1, 1], [0.25] * 4, unspecific), 4)[0]["verdict"] == "fails"


def test_dai_layers_against_neuron_count_and_attribution_mass():
    assert V.dai(_attr([0, 1, 5, 5], [0.1, 0.1, 0.4, 0.4], GOOD), 4)[1]["verdict"] == "holds"
    assert V.dai(_attr([9, 1, 0, 1], [0.1, 0.2, 0.3, 0.4], GOOD), 4)[1]["verdict"] == "partial"
    assert V.dai(_attr([9, 1, 0, 1], [0.7, 0.1, 0.1, 0.1], GOOD), 4)[1]["verdict"] == "fails"


def _trace(last_subject, ci, further, te):
    row = lambda m, c: {"mean": m, "ci": [c] * len(m)}  # noqa: E731
    return {"config": {"window": 10},
            "known_facts": {"total_effect": {"mean": te},
                            "mlp": {"first_subject": row([0.0, 0.0], 0.01), "last_subject": row(last_subject, ci),
                                    "further": row(further, 0.01), "last": row([0.5, 0.2], 0.05)}}}


def test_meng_early_site_must_beat_later_tokens_and_total_effect():
    assert V.meng_tracing(_trace([0.3, 0.1], 0.05, [0.02, 0.0], 0.8))["verdict"] == "holds"
    assert V.meng_tracing(_trace([0.05, 0.01], 0.01, [0.0, 0.0], 0.8))["verdict"] == "partial"
    assert V.meng_tracing(_trace([0.05, 0.01], 0.01, [0.045, 0.0], 0.8))["verdict"] == "fails"
    assert V.meng_tracing(_trace([0.05, 0.01], 0.06, [0.0, 0.0], 0.8))["verdict"] == "fails"


# editing (Meng et al. 2022, 2023)
def _score(es, ps=None, ns=None, s=None):
    ps, ns, s = es if ps is None else ps, es if ns is None else ns, es if s is None else s
    return {"ES": es, "PS": ps, "NS": ns, "S": s}


def _edit(rome, memit, seq=_score(0.2), ceiling=1.0, base_ns=1.0):
    return {"rome_single": rome, "memit": memit, "rome_sequential": seq, "n_edits": 10, "layer": 1,
            "memit_layers": [0, 1], "delta_check": {"flip_rate": ceiling}, "unedited": _score(0.0, ns=base_ns),
            "memit_lambda_rule": {"lambda": 240.0, "ratio": 0.916, "mean_key_mahalanobis": 262.0}}


def verdicts(edit):
    return [c["verdict"] for c in V.meng_edits(edit)]


def test_meng_edits_rules():
    assert verdicts(_edit(_score(0.95, s=0.9), _score(0.9))) == ["holds", "holds", "holds"]
    assert verdicts(_edit(_score(0.95, 0.3, 1.0, 0.5), _score(0.6))) == ["partial", "partial", "holds"]
    assert verdicts(_edit(_score(0.2), _score(0.1), seq=_score(0.3))) == ["fails", "fails", "fails"]


def test_meng_edits_are_judged_against_our_baselines():
    # a testbed where even an unconstrained δ cannot flip the facts cannot judge ROME
    assert verdicts(_edit(_score(0.1), _score(0.1), ceiling=0.5))[0] == "testbed cannot show"
    # ES 0.85 with a ceiling of 0.9 is at the ceiling (≥ 0.9 × 0.9)
    assert verdicts(_edit(_score(0.85, 0.9, 0.95, 0.9), _score(0.9), ceiling=0.9))[0] == "holds"
    # specificity is relative to the unedited model's own NS
    assert verdicts(_edit(_score(1.0, 1.0, 0.7, 0.9), _score(0.9, ns=0.7), base_ns=1.0))[:2] == ["partial", "partial"]
    assert verdicts(_edit(_score(1.0, 1.0, 0.7, 0.9), _score(0.9, ns=0.7), base_ns=0.8))[:2] == ["holds", "holds"]


def test_meng_edits_without_sequential_or_check():
    edit = _edit(_score(0.95, s=0.85), _score(0.55))
    del edit["rome_sequential"], edit["delta_check"]
    assert verdicts(edit) == ["holds", "partial"]
